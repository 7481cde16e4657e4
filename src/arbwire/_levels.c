/* The per-level loop of arbwire.book.L2Book.apply, in C (plain CPython C API).
 *
 * It works on the very dict/list objects of a BookSide (sizes, texts, order) and
 * the book's price cache, exactly as the pure-Python loop in book.py does, so the
 * Python objects stay the only state: everything else reads them unchanged.
 *
 * Price text -> exact scaled int (SCALE_DIGITS = 18): plain ASCII "digits[.digits]"
 * of at most 19 digits is parsed here into the same Python int arbwire.numbers
 * .to_units returns; any other text (exponent, sign, spaces, non-ASCII, more than
 * 18 decimals, very long) is handed to to_units itself, so its result or its
 * exception (NumberError) is the Python one by construction.
 *
 * okx_checksum reads the same objects for OKX's CRC32 of the top levels (see below).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#define SCALE_DIGITS 18
#define PRICE_CACHE_MAX (1 << 16) /* arbwire.book._PRICE_CACHE_MAX */

typedef struct {
    PyObject *to_units; /* arbwire.numbers.to_units */
    PyObject *pow10[SCALE_DIGITS + 1]; /* pow10[k] = 10**k */
    PyObject *strip_chars; /* "0." */
    PyObject *crc32; /* zlib.crc32 */
    PyTypeObject *texts_type; /* Texts */
} levels_state;

static inline levels_state *
get_state(PyObject *module)
{
    return (levels_state *)PyModule_GetState(module);
}

/* New reference to the scaled int of `price`, or NULL with an exception set. */
static PyObject *
price_units(levels_state *st, PyObject *price)
{
#if PY_VERSION_HEX < 0x030C0000
    if (PyUnicode_Check(price) && PyUnicode_READY(price) < 0)
        return NULL;
#endif
    if (PyUnicode_Check(price) && PyUnicode_IS_ASCII(price)) {
        Py_ssize_t n = PyUnicode_GET_LENGTH(price);
        const unsigned char *s = PyUnicode_1BYTE_DATA(price);
        unsigned long long v = 0;
        Py_ssize_t dot = -1, ndigits = 0;
        int plain = n > 0;
        for (Py_ssize_t i = 0; i < n; i++) {
            unsigned char c = s[i];
            if (c >= '0' && c <= '9') {
                if (++ndigits > 19) {
                    plain = 0; /* may not fit in 64 bits: let Python do it */
                    break;
                }
                v = v * 10 + (unsigned long long)(c - '0');
            }
            else if (c == '.' && dot < 0) {
                dot = i;
            }
            else {
                plain = 0;
                break;
            }
        }
        if (plain && ndigits > 0) {
            Py_ssize_t decimals = dot < 0 ? 0 : n - dot - 1;
            if (decimals <= SCALE_DIGITS) {
                PyObject *mant = PyLong_FromUnsignedLongLong(v);
                if (mant == NULL)
                    return NULL;
                PyObject *units = PyNumber_Multiply(mant, st->pow10[SCALE_DIGITS - decimals]);
                Py_DECREF(mant);
                return units;
            }
        }
    }
    return PyObject_CallOneArg(st->to_units, price);
}

/* 1 when the size text deletes its level (size.strip("0.") is empty), 0 if not, -1 on error. */
static int
size_is_zero(levels_state *st, PyObject *size)
{
#if PY_VERSION_HEX < 0x030C0000
    if (PyUnicode_Check(size) && PyUnicode_READY(size) < 0)
        return -1;
#endif
    if (PyUnicode_Check(size)) {
        Py_ssize_t n = PyUnicode_GET_LENGTH(size);
        int kind = PyUnicode_KIND(size);
        const void *data = PyUnicode_DATA(size);
        for (Py_ssize_t i = 0; i < n; i++) {
            Py_UCS4 c = PyUnicode_READ(kind, data, i);
            if (c != '0' && c != '.')
                return 0;
        }
        return 1;
    }
    PyObject *rest = PyObject_CallMethod(size, "strip", "O", st->strip_chars);
    if (rest == NULL)
        return -1;
    int truth = PyObject_IsTrue(rest);
    Py_DECREF(rest);
    return truth < 0 ? -1 : !truth;
}

/* a < b for the keys of `order`: exact ints, compared through the int type's own slot
 * (the generic RichCompareBool dispatch costs as much as the compare). -1 on error. */
static inline int
less_than(PyObject *a, PyObject *b)
{
    if (PyLong_CheckExact(a) && PyLong_CheckExact(b)) {
        PyObject *r = PyLong_Type.tp_richcompare(a, b, Py_LT);
        if (r == NULL)
            return -1;
        int lt = r == Py_True;
        Py_DECREF(r);
        return lt;
    }
    return PyObject_RichCompareBool(a, b, Py_LT);
}

/* bisect on the list of keys; right=1 gives bisect_right (insort), 0 bisect_left. -1 on error. */
static Py_ssize_t
bisect(PyObject *order, PyObject *key, int right)
{
    Py_ssize_t lo = 0, hi = PyList_GET_SIZE(order);
    while (lo < hi) {
        Py_ssize_t mid = lo + (hi - lo) / 2;
        PyObject *item = PyList_GET_ITEM(order, mid);
        int lt;
        /* right: key < item -> hi = mid; left: item < key -> lo = mid + 1 */
        if (PyLong_CheckExact(item) && PyLong_CheckExact(key)) {
            /* comparing two ints runs no Python code: the borrowed item stays valid */
            lt = right ? less_than(key, item) : less_than(item, key);
        }
        else {
            Py_INCREF(item);
            lt = right ? less_than(key, item) : less_than(item, key);
            Py_DECREF(item);
        }
        if (lt < 0)
            return -1;
        if (right ? lt : !lt)
            hi = mid;
        else
            lo = mid + 1;
        if (hi > PyList_GET_SIZE(order))
            hi = PyList_GET_SIZE(order); /* defensive: only if a compare ran Python code */
    }
    return lo;
}

/* Unpack one level into new references *price, *size (like `for price, size in levels`). */
static int
unpack_level(PyObject *item, PyObject **price, PyObject **size)
{
    if ((PyTuple_CheckExact(item) && PyTuple_GET_SIZE(item) == 2)) {
        *price = PyTuple_GET_ITEM(item, 0);
        *size = PyTuple_GET_ITEM(item, 1);
        Py_INCREF(*price);
        Py_INCREF(*size);
        return 0;
    }
    if (PyList_CheckExact(item) && PyList_GET_SIZE(item) == 2) {
        *price = PyList_GET_ITEM(item, 0);
        *size = PyList_GET_ITEM(item, 1);
        Py_INCREF(*price);
        Py_INCREF(*size);
        return 0;
    }
    if (Py_TYPE(item)->tp_iter == NULL && !PySequence_Check(item)) {
        PyErr_Format(PyExc_TypeError, "cannot unpack non-iterable %.200s object",
                     Py_TYPE(item)->tp_name);
        return -1;
    }
    PyObject *it = PyObject_GetIter(item);
    if (it == NULL)
        return -1;
    PyObject *vals[2] = {NULL, NULL};
    for (int i = 0; i < 2; i++) {
        vals[i] = PyIter_Next(it);
        if (vals[i] == NULL) {
            if (!PyErr_Occurred())
                PyErr_Format(PyExc_ValueError,
                             "not enough values to unpack (expected 2, got %d)", i);
            goto fail;
        }
    }
    PyObject *extra = PyIter_Next(it);
    if (extra != NULL) {
        Py_DECREF(extra);
        PyErr_SetString(PyExc_ValueError, "too many values to unpack (expected 2)");
        goto fail;
    }
    if (PyErr_Occurred())
        goto fail;
    Py_DECREF(it);
    *price = vals[0];
    *size = vals[1];
    return 0;
fail:
    Py_XDECREF(vals[0]);
    Py_XDECREF(vals[1]);
    Py_DECREF(it);
    return -1;
}

/* Apply one (price, size) level. Returns 1 if a level was inserted, 0 if not, -1 on error.
 * Every dict and `order` hold the side's signed key (units, -units on the ask side): the
 * side's `cache` maps price text straight to it, so no key is ever negated here. */
static int
apply_level(levels_state *st, PyObject *price, PyObject *size, PyObject *sizes,
            PyObject *texts, PyObject *order, int negate, PyObject *cache)
{
    int inserted = 0;
    PyObject *key = PyDict_GetItemWithError(cache, price);
    if (key != NULL) {
        Py_INCREF(key);
    }
    else {
        if (PyErr_Occurred())
            return -1;
        PyObject *units = price_units(st, price);
        if (units == NULL)
            return -1;
        if (negate) {
            key = PyNumber_Negative(units);
            Py_DECREF(units);
            if (key == NULL)
                return -1;
        }
        else {
            key = units;
        }
        if (PyDict_GET_SIZE(cache) >= PRICE_CACHE_MAX)
            PyDict_Clear(cache);
        if (PyDict_SetItem(cache, price, key) < 0)
            goto fail;
    }
    int zero = size_is_zero(st, size);
    if (zero < 0)
        goto fail;
    if (!zero) {
        /* `if sizes.get(key) is None: insort(order, key); texts[key] = price` then
         * `sizes[key] = size`. A value of `sizes` is never None (it is a size text whose
         * strip("0.") was non-empty), so "is None" is "not in": one dict write tells. */
        Py_ssize_t before = PyDict_GET_SIZE(sizes);
        if (PyDict_SetItem(sizes, key, size) < 0)
            goto fail;
        if (PyDict_GET_SIZE(sizes) != before) {
            Py_ssize_t i = bisect(order, key, 1);
            if (i < 0 || PyList_Insert(order, i, key) < 0 || PyDict_SetItem(texts, key, price) < 0) {
                /* leave the side as the Python loop would: no size without its order key */
                PyObject *exc_type, *exc_value, *exc_tb;
                PyErr_Fetch(&exc_type, &exc_value, &exc_tb);
                if (PyDict_DelItem(sizes, key) < 0)
                    PyErr_Clear();
                PyErr_Restore(exc_type, exc_value, exc_tb);
                goto fail;
            }
            inserted = 1;
        }
    }
    else {
        /* `sizes.pop(key, None) is not None`: "is in", as above */
        PyObject *old = PyDict_GetItemWithError(sizes, key);
        if (old == NULL) {
            if (PyErr_Occurred())
                goto fail;
        }
        else {
            if (PyDict_DelItem(sizes, key) < 0 || PyDict_DelItem(texts, key) < 0)
                goto fail;
            Py_ssize_t i = bisect(order, key, 0);
            if (i < 0)
                goto fail;
            if (i >= PyList_GET_SIZE(order)) {
                PyErr_SetString(PyExc_IndexError, "list assignment index out of range");
                goto fail;
            }
            if (PyList_SetSlice(order, i, i + 1, NULL) < 0)
                goto fail;
        }
    }
    Py_DECREF(key);
    return inserted;
fail:
    Py_DECREF(key);
    return -1;
}

/* BookSide.trim: drop the worst levels beyond max_depth (keys are the dicts' own). */
static int
trim(PyObject *sizes, PyObject *texts, PyObject *order, Py_ssize_t max_depth)
{
    Py_ssize_t excess = PyList_GET_SIZE(order) - max_depth;
    if (excess <= 0)
        return 0;
    PyObject *worst = PyList_GetSlice(order, 0, excess);
    if (worst == NULL)
        return -1;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(worst); i++) {
        PyObject *key = PyList_GET_ITEM(worst, i);
        if (PyDict_DelItem(sizes, key) < 0 || PyDict_DelItem(texts, key) < 0) {
            Py_DECREF(worst);
            return -1;
        }
    }
    Py_DECREF(worst);
    return PyList_SetSlice(order, 0, excess, NULL);
}

PyDoc_STRVAR(apply_side_doc,
"apply_side(levels, sizes, texts, order, negate, cache, max_depth) -> None\n"
"\n"
"Set each (price text, size text) level on one book side: a zero size deletes the\n"
"level. The side's key of a price is its units, ``-units`` when ``negate`` (asks);\n"
"``sizes``/``texts`` map keys to size/price text, ``order`` is the ascending list of\n"
"keys, ``cache`` maps price text to key. When a level was inserted and the side is\n"
"deeper than ``max_depth``, the worst levels are dropped.");

static PyObject *
apply_side(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 7) {
        PyErr_Format(PyExc_TypeError, "apply_side expected 7 arguments, got %zd", nargs);
        return NULL;
    }
    PyObject *levels = args[0], *sizes = args[1], *texts = args[2], *order = args[3];
    PyObject *cache = args[5];
    if (!PyDict_Check(sizes) || !PyDict_Check(texts) || !PyDict_Check(cache) || !PyList_Check(order)) {
        PyErr_SetString(PyExc_TypeError, "apply_side: sizes, texts, cache must be dicts and order a list");
        return NULL;
    }
    int negate = PyObject_IsTrue(args[4]);
    if (negate < 0)
        return NULL;
    Py_ssize_t max_depth = PyLong_AsSsize_t(args[6]);
    if (max_depth == -1 && PyErr_Occurred())
        return NULL;
    levels_state *st = get_state(module);
    int inserted = 0;

    if (PyList_CheckExact(levels) || PyTuple_CheckExact(levels)) {
        int is_list = PyList_CheckExact(levels);
        for (Py_ssize_t i = 0;; i++) {
            Py_ssize_t n = is_list ? PyList_GET_SIZE(levels) : PyTuple_GET_SIZE(levels);
            if (i >= n)
                break;
            PyObject *item = is_list ? PyList_GET_ITEM(levels, i) : PyTuple_GET_ITEM(levels, i);
            PyObject *price, *size;
            Py_INCREF(item);
            int rc = unpack_level(item, &price, &size);
            Py_DECREF(item);
            if (rc < 0)
                return NULL;
            rc = apply_level(st, price, size, sizes, texts, order, negate, cache);
            Py_DECREF(price);
            Py_DECREF(size);
            if (rc < 0)
                return NULL;
            inserted |= rc;
        }
    }
    else {
        PyObject *it = PyObject_GetIter(levels);
        if (it == NULL)
            return NULL;
        PyObject *item;
        while ((item = PyIter_Next(it)) != NULL) {
            PyObject *price, *size;
            int rc = unpack_level(item, &price, &size);
            Py_DECREF(item);
            if (rc == 0) {
                rc = apply_level(st, price, size, sizes, texts, order, negate, cache);
                Py_DECREF(price);
                Py_DECREF(size);
            }
            if (rc < 0) {
                Py_DECREF(it);
                return NULL;
            }
            inserted |= rc;
        }
        Py_DECREF(it);
        if (PyErr_Occurred())
            return NULL;
    }
    if (inserted && PyList_GET_SIZE(order) > max_depth
        && trim(sizes, texts, order, max_depth) < 0)
        return NULL;
    Py_RETURN_NONE;
}

/* -- OKX checksum ---------------------------------------------------------------------------
 * OKX's signed CRC32 over the top levels of both sides as the venue's own text; the
 * reference is arbwire.venues.okx.okx_checksum over BookSide.text_levels. The same strings
 * are read from the same dicts in the same order, joined into one bytes object exactly as
 * ":".join(fields).encode() would, and handed to zlib.crc32 itself. Linking zlib here saved
 * ~30 ns a call, but would make building this extension need the zlib headers, and a
 * failed build (it is optional) loses the C level loop for every venue. */

#define CRC_STACK_FIELDS 128 /* 32 levels a side: no allocation at OKX's depth of 25 */

typedef struct {
    const char *s;
    Py_ssize_t n;
} utf8_text;

/* Owned (price text, size text) refs of one side into out[0..2n), looked up as
 * BookSide.text_levels does (texts[key] then sizes[key]); `keys` are the side's top `n`
 * order keys, best first: the dicts' own key objects, so each lookup is an identity hit.
 * Returns how many refs were stored: fewer than 2n with an exception set on error. */
static Py_ssize_t
side_texts(PyObject *sizes, PyObject *texts, PyObject *const *keys, Py_ssize_t n, PyObject **out)
{
    Py_ssize_t stored = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *dicts[2] = {texts, sizes};
        for (int d = 0; d < 2; d++) {
            PyObject *value = PyDict_GetItemWithError(dicts[d], keys[i]);
            if (value == NULL) {
                if (!PyErr_Occurred())
                    PyErr_SetObject(PyExc_KeyError, keys[i]);
                return stored;
            }
            Py_INCREF(value);
            out[stored++] = value;
        }
    }
    return stored;
}

/* The UTF-8 of each field, with str.encode()'s strict errors; -1 on error. A field is
 * checked to be a str before any is encoded, as join runs before encode. */
static int
fields_utf8(PyObject *const *fields, Py_ssize_t nf, utf8_text *out)
{
    for (Py_ssize_t k = 0; k < nf; k++) {
        if (!PyUnicode_Check(fields[k])) {
            PyErr_Format(PyExc_TypeError, "sequence item %zd: expected str instance, %.80s found",
                         k, Py_TYPE(fields[k])->tp_name);
            return -1;
        }
    }
    for (Py_ssize_t k = 0; k < nf; k++) {
        PyObject *f = fields[k];
        if (PyUnicode_IS_COMPACT_ASCII(f)) {
            out[k].s = (const char *)PyUnicode_DATA(f);
            out[k].n = PyUnicode_GET_LENGTH(f);
        }
        else if ((out[k].s = PyUnicode_AsUTF8AndSize(f, &out[k].n)) == NULL) {
            return -1;
        }
    }
    return 0;
}

/* zlib.crc32 of the fields joined by ':' as a signed 32-bit int (OKX's form). */
static PyObject *
joined_crc(levels_state *st, const utf8_text *texts, Py_ssize_t nf)
{
    Py_ssize_t total = nf > 0 ? nf - 1 : 0;
    for (Py_ssize_t k = 0; k < nf; k++)
        total += texts[k].n;
    PyObject *joined = PyBytes_FromStringAndSize(NULL, total);
    if (joined == NULL)
        return NULL;
    char *w = PyBytes_AS_STRING(joined);
    for (Py_ssize_t k = 0; k < nf; k++) {
        if (k)
            *w++ = ':';
        memcpy(w, texts[k].s, texts[k].n);
        w += texts[k].n;
    }
    PyObject *value = PyObject_CallOneArg(st->crc32, joined);
    Py_DECREF(joined);
    if (value == NULL)
        return NULL;
    unsigned long crc = PyLong_AsUnsignedLong(value);
    Py_DECREF(value);
    if (crc == (unsigned long)-1 && PyErr_Occurred())
        return NULL;
    long long signed_crc = (long long)crc;
    if (signed_crc >= 0x80000000LL)
        signed_crc -= 0x100000000LL;
    return PyLong_FromLongLong(signed_crc);
}

PyDoc_STRVAR(okx_checksum_doc,
"okx_checksum(bid_sizes, bid_texts, bid_order, ask_sizes, ask_texts, ask_order, depth) -> int\n"
"\n"
"OKX's signed CRC32 of ``bid1px:bid1sz:ask1px:ask1sz:...`` over the top ``depth``\n"
"levels of each side of an arbwire.book.L2Book (the deeper side's remaining levels\n"
"follow): the value of ``arbwire.venues.okx.okx_checksum(bids.text_levels(depth),\n"
"asks.text_levels(depth))``, read from the same objects.");

static PyObject *
okx_checksum(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 7) {
        PyErr_Format(PyExc_TypeError, "okx_checksum expected 7 arguments, got %zd", nargs);
        return NULL;
    }
    PyObject *bid_order = args[2], *ask_order = args[5];
    if (!PyDict_Check(args[0]) || !PyDict_Check(args[1]) || !PyList_Check(bid_order)
        || !PyDict_Check(args[3]) || !PyDict_Check(args[4]) || !PyList_Check(ask_order)) {
        PyErr_SetString(PyExc_TypeError, "okx_checksum: sizes and texts must be dicts and order a list");
        return NULL;
    }
    Py_ssize_t depth = PyLong_AsSsize_t(args[6]);
    if (depth == -1 && PyErr_Occurred())
        return NULL;
    if (depth < 1) {
        PyErr_SetString(PyExc_ValueError, "okx_checksum: depth must be at least 1");
        return NULL;
    }
    Py_ssize_t nb = Py_MIN(depth, PyList_GET_SIZE(bid_order));
    Py_ssize_t na = Py_MIN(depth, PyList_GET_SIZE(ask_order));
    Py_ssize_t nf = 2 * (nb + na);

    PyObject *stack_keys[CRC_STACK_FIELDS / 2], *stack_fields[CRC_STACK_FIELDS];
    PyObject *stack_joined[CRC_STACK_FIELDS];
    utf8_text stack_texts[CRC_STACK_FIELDS];
    PyObject **keys = stack_keys, **fields = stack_fields, **joined = stack_joined;
    utf8_text *texts = stack_texts;
    Py_ssize_t nkeys = 0, nfields = 0;
    PyObject *result = NULL;
    if (nf > CRC_STACK_FIELDS) {
        keys = PyMem_New(PyObject *, nf / 2);
        fields = PyMem_New(PyObject *, nf);
        joined = PyMem_New(PyObject *, nf);
        texts = PyMem_New(utf8_text, nf);
        if (keys == NULL || fields == NULL || joined == NULL || texts == NULL) {
            PyErr_NoMemory();
            goto done;
        }
    }
    /* owned top keys before any lookup, as text_levels slices `order` first */
    for (Py_ssize_t i = 0; i < nb; i++, nkeys++) {
        keys[nkeys] = PyList_GET_ITEM(bid_order, PyList_GET_SIZE(bid_order) - 1 - i);
        Py_INCREF(keys[nkeys]);
    }
    for (Py_ssize_t i = 0; i < na; i++, nkeys++) {
        keys[nkeys] = PyList_GET_ITEM(ask_order, PyList_GET_SIZE(ask_order) - 1 - i);
        Py_INCREF(keys[nkeys]);
    }
    /* fields: the bid pairs, then the ask pairs */
    nfields = side_texts(args[0], args[1], keys, nb, fields);
    if (nfields < 2 * nb)
        goto done;
    nfields += side_texts(args[3], args[4], keys + nb, na, fields + nfields);
    if (nfields < nf)
        goto done;
    /* the join's order: bid, ask, bid, ask, ..., then the deeper side's remaining levels */
    Py_ssize_t k = 0;
    for (Py_ssize_t i = 0; i < Py_MAX(nb, na); i++) {
        if (i < nb) {
            joined[k++] = fields[2 * i];
            joined[k++] = fields[2 * i + 1];
        }
        if (i < na) {
            joined[k++] = fields[2 * (nb + i)];
            joined[k++] = fields[2 * (nb + i) + 1];
        }
    }
    if (fields_utf8(joined, nf, texts) == 0)
        result = joined_crc(get_state(module), texts, nf);
done:
    for (Py_ssize_t i = 0; i < nfields; i++)
        Py_DECREF(fields[i]);
    for (Py_ssize_t i = 0; i < nkeys; i++)
        Py_DECREF(keys[i]);
    if (keys != stack_keys) {
        PyMem_Free(keys);
        PyMem_Free(fields);
        PyMem_Free(joined);
        PyMem_Free(texts);
    }
    return result;
}

/* -- HTX level arrays -------------------------------------------------------------------
 * htx_levels(data, texts) -> list of (price text, size text), or None.
 *
 * The fast path of arbwire.venues.htx._levels for the common shape: `data` is exactly
 * [[number,number],...] (JSON whitespace allowed), every number a JSON number literal.
 * A literal with no sign, no exponent and at most 19 characters is its own text (an
 * integer literal too: JSON forbids leading zeros, so it is what str(int) prints);
 * any other literal is looked up in `texts` (the module's literal -> text table that
 * _levels' msgspec hook fills). Anything else, a literal missing from the table
 * included, returns None and the Python path decides, words every error and fills the
 * table; so the result, when there is one, is the Python path's by construction
 * (tests/test_htx_levels.py compares them on arbitrary input). */
static inline const char *
skip_ws(const char *p, const char *end)
{
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
        p++;
    return p;
}

/* Reads one level at *pp (its '['): 1 with the pair held and *pp at the level's ']',
 * 0 when unsure, -1 on error; nothing held unless 1. */
typedef int (*read_level)(const char **pp, const char *end, PyObject *pair[2], void *arg);

/* The level array both venues send, [level,level,...] with JSON whitespace between
 * tokens, each level read by `read`: the list of (price, size) tuples, None when unsure
 * of anything (the caller's reference path decides), NULL with an exception on error. */
static PyObject *
scan_levels(const char *p, const char *end, read_level read, void *arg)
{
    PyObject *out = PyList_New(0);
    if (out == NULL)
        return NULL;
    p = skip_ws(p, end);
    if (p >= end || *p != '[')
        goto unsure;
    p = skip_ws(p + 1, end);
    if (p < end && *p == ']') {
        if (skip_ws(p + 1, end) != end)
            goto unsure;
        return out;
    }
    for (;;) {
        if (p >= end || *p != '[')
            goto unsure;
        PyObject *pair[2];
        int rc = read(&p, end, pair, arg);
        if (rc == 0)
            goto unsure;
        PyObject *level = rc < 0 ? NULL : PyTuple_New(2);
        if (level == NULL) {
            if (rc > 0) {
                Py_DECREF(pair[0]);
                Py_DECREF(pair[1]);
            }
            Py_DECREF(out);
            return NULL;
        }
        PyTuple_SET_ITEM(level, 0, pair[0]);
        PyTuple_SET_ITEM(level, 1, pair[1]);
        int failed = PyList_Append(out, level);
        Py_DECREF(level);
        if (failed) {
            Py_DECREF(out);
            return NULL;
        }
        p = skip_ws(p + 1, end); /* past ']' */
        if (p < end && *p == ',') {
            p = skip_ws(p + 1, end);
            continue;
        }
        if (p < end && *p == ']' && skip_ws(p + 1, end) == end)
            return out;
        goto unsure;
    }
unsure:
    Py_DECREF(out);
    Py_RETURN_NONE;
}

/* End of the JSON number literal at p, or NULL when it is not one; *plain says whether it
 * is its own text (no '-', no exponent, at most 19 characters). */
static const char *
number_end(const char *p, const char *end, int *plain)
{
    const char *start = p;
    int simple = 1;
    if (p < end && *p == '-') {
        simple = 0;
        p++;
    }
    if (p >= end)
        return NULL;
    if (*p == '0')
        p++;
    else if (*p >= '1' && *p <= '9')
        while (p < end && *p >= '0' && *p <= '9')
            p++;
    else
        return NULL;
    if (p < end && *p == '.') {
        p++;
        if (p >= end || *p < '0' || *p > '9')
            return NULL;
        while (p < end && *p >= '0' && *p <= '9')
            p++;
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        simple = 0;
        p++;
        if (p < end && (*p == '+' || *p == '-'))
            p++;
        if (p >= end || *p < '0' || *p > '9')
            return NULL;
        while (p < end && *p >= '0' && *p <= '9')
            p++;
    }
    *plain = simple && (p - start) <= 19;
    return p;
}

/* New reference to the text of the literal [p, q), or NULL: *fallback set when the
 * table lacks it, an exception set on a real error. */
static PyObject *
literal_text(const char *p, const char *q, int plain, PyObject *texts, int *fallback)
{
    PyObject *lit = PyUnicode_New(q - p, 127);
    if (lit == NULL)
        return NULL;
    memcpy(PyUnicode_1BYTE_DATA(lit), p, (size_t)(q - p));
    if (plain)
        return lit;
    PyObject *text = PyDict_GetItemWithError(texts, lit); /* borrowed; no __missing__ */
    Py_DECREF(lit);
    if (text == NULL) {
        if (!PyErr_Occurred())
            *fallback = 1;
        return NULL;
    }
    Py_INCREF(text);
    return text;
}

/* One HTX level at *pp ('['): [number,number] into pair. 1 with *pp at its ']', 0 when
 * unsure (nothing held), -1 on error (exception set, nothing held). */
static int
htx_level(const char **pp, const char *end, PyObject *pair[2], void *texts)
{
    const char *p = *pp;
    int fallback = 0;
    for (int k = 0; k < 2; k++) {
        p = skip_ws(p + 1, end); /* past '[' or ',' */
        int plain;
        const char *q = number_end(p, end, &plain);
        pair[k] = q == NULL ? NULL : literal_text(p, q, plain, (PyObject *)texts, &fallback);
        if (pair[k] == NULL) {
            if (k)
                Py_DECREF(pair[0]);
            return q == NULL || fallback ? 0 : -1;
        }
        p = skip_ws(q, end);
        if (p >= end || *p != (k ? ']' : ',')) {
            Py_DECREF(pair[k]);
            if (k)
                Py_DECREF(pair[0]);
            return 0;
        }
    }
    *pp = p;
    return 1;
}

static PyObject *
htx_levels(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2 || !PyBytes_Check(args[0]) || !PyDict_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "htx_levels(data: bytes, texts: dict)");
        return NULL;
    }
    const char *p = PyBytes_AS_STRING(args[0]);
    return scan_levels(p, p + PyBytes_GET_SIZE(args[0]), htx_level, args[1]);
}

static const char htx_levels_doc[] =
    "htx_levels(data, texts) -> [(price, size), ...] or None: HTX level arrays, see the source.";


/* -- OKX level arrays -------------------------------------------------------------------
 * okx_levels(data, texts) -> list of (price text, size text), or None.
 *
 * The fast path of arbwire.venues.okx for a books/bbo-tbt side: `data` (bytes or any
 * buffer, e.g. msgspec.Raw) is exactly [["px","sz",...],...]: every level an array of two
 * or more JSON strings of printable ASCII without escapes, of which the first two are
 * kept (OKX sends [px, sz, "0", orderCount]). JSON whitespace is allowed between tokens.
 * Anything else returns None and msgspec decides and words the error, so a result, when
 * there is one, is msgspec's by construction (tests/test_okx_levels.py compares them).
 *
 * `texts` is a Texts cache: prices and sizes repeat from update to update, and handing
 * back the same str object skips its allocation and, since a str keeps its hash, the
 * hashing of every later lookup of it (the book's price cache, its dicts). */

typedef struct {
    PyObject_HEAD
    Py_ssize_t mask;
    PyObject **slots; /* exact str objects, NULL when empty */
    Py_ssize_t hits, misses;
} Texts;

static int
texts_init(Texts *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"size", NULL};
    Py_ssize_t size = 4096;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|n:Texts", kwlist, &size))
        return -1;
    if (size < 1 || size > (1 << 24) || (size & (size - 1))) {
        PyErr_SetString(PyExc_ValueError, "Texts size must be a power of two up to 2**24");
        return -1;
    }
    if (self->slots != NULL) {
        for (Py_ssize_t i = 0; i <= self->mask; i++)
            Py_CLEAR(self->slots[i]);
        PyMem_Free(self->slots);
    }
    self->slots = PyMem_Calloc((size_t)size, sizeof(PyObject *));
    if (self->slots == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    self->mask = size - 1;
    self->hits = self->misses = 0;
    return 0;
}

static int
texts_clear(Texts *self)
{
    if (self->slots != NULL)
        for (Py_ssize_t i = 0; i <= self->mask; i++)
            Py_CLEAR(self->slots[i]);
    return 0;
}

static int
texts_traverse(Texts *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    return 0; /* the slots hold only str objects: no cycles through them */
}

static void
texts_dealloc(Texts *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    texts_clear(self);
    PyMem_Free(self->slots);
    tp->tp_free((PyObject *)self);
    Py_DECREF(tp);
}

static PyObject *
texts_stats(Texts *self, PyObject *Py_UNUSED(ignored))
{
    return Py_BuildValue("{s:n,s:n,s:n}", "size", self->mask + 1, "hits", self->hits, "misses", self->misses);
}

static PyMethodDef texts_methods[] = {
    {"stats", (PyCFunction)texts_stats, METH_NOARGS, "{'size', 'hits', 'misses'}"},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot texts_type_slots[] = {
    {Py_tp_doc, "Texts(size=4096): a cache of short ASCII str objects keyed by their bytes, for okx_levels."},
    {Py_tp_init, texts_init},
    {Py_tp_dealloc, texts_dealloc},
    {Py_tp_traverse, texts_traverse},
    {Py_tp_clear, texts_clear},
    {Py_tp_methods, texts_methods},
    {Py_tp_new, PyType_GenericNew},
    {0, NULL},
};

static PyType_Spec texts_type_spec = {
    .name = "arbwire._levels.Texts",
    .basicsize = sizeof(Texts),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .slots = texts_type_slots,
};

/* New reference to the str of the ASCII bytes [p, p + n), from the cache when it holds them. */
static PyObject *
cached_text(Texts *cache, const char *p, Py_ssize_t n)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (Py_ssize_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)p[i]) * 16777619u;
    PyObject **slot = &cache->slots[(Py_ssize_t)h & cache->mask];
    PyObject *text = *slot;
    if (text != NULL && PyUnicode_GET_LENGTH(text) == n && memcmp(PyUnicode_1BYTE_DATA(text), p, (size_t)n) == 0) {
        cache->hits++;
        Py_INCREF(text);
        return text;
    }
    cache->misses++;
    text = PyUnicode_New(n, 127);
    if (text == NULL)
        return NULL;
    memcpy(PyUnicode_1BYTE_DATA(text), p, (size_t)n);
    Py_XSETREF(*slot, text);
    Py_INCREF(text);
    return text;
}

/* End of the plain JSON string at p (just past its closing quote), or NULL when it is not
 * one: printable ASCII only, no escapes. */
static inline const char *
plain_string_end(const char *p, const char *end)
{
    if (p >= end || *p != '"')
        return NULL;
    for (p++; p < end; p++) {
        unsigned char c = (unsigned char)*p;
        if (c == '"')
            return p + 1;
        if (c == '\\' || c < 0x20 || c > 0x7e)
            return NULL;
    }
    return NULL;
}

/* One OKX level at *pp ('['): two or more plain strings, the first two into pair. 1 with
 * *pp at its ']', 0 when unsure, -1 on error; nothing held unless 1. */
static int
okx_level(const char **pp, const char *end, PyObject *pair[2], void *cache)
{
    const char *p = *pp;
    pair[0] = pair[1] = NULL;
    int k = 0;
    for (;;) {
        p = skip_ws(p + 1, end); /* past '[' or ',' */
        const char *q = plain_string_end(p, end);
        if (q == NULL)
            break;
        if (k < 2 && (pair[k] = cached_text((Texts *)cache, p + 1, q - p - 2)) == NULL) {
            Py_XDECREF(pair[0]);
            return -1;
        }
        k++;
        p = skip_ws(q, end);
        if (p < end && *p == ',')
            continue;
        if (p < end && *p == ']' && k >= 2) {
            *pp = p;
            return 1;
        }
        break;
    }
    Py_XDECREF(pair[0]);
    Py_XDECREF(pair[1]);
    return 0;
}

static PyObject *
okx_levels(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    PyTypeObject *texts_type = get_state(module)->texts_type;
    if (nargs != 2 || !PyObject_TypeCheck(args[1], texts_type)) {
        PyErr_SetString(PyExc_TypeError, "okx_levels(data: bytes-like, texts: Texts)");
        return NULL;
    }
    if (PyBytes_CheckExact(args[0])) {
        const char *p = PyBytes_AS_STRING(args[0]);
        return scan_levels(p, p + PyBytes_GET_SIZE(args[0]), okx_level, args[1]);
    }
    Py_buffer view;
    if (PyObject_GetBuffer(args[0], &view, PyBUF_SIMPLE) < 0)
        return NULL;
    const char *p = (const char *)view.buf;
    PyObject *result = scan_levels(p, p + view.len, okx_level, args[1]);
    PyBuffer_Release(&view);
    return result;
}

static const char okx_levels_doc[] =
    "okx_levels(data, texts) -> [(price, size), ...] or None: OKX level arrays, see the source.";

static PyMethodDef levels_methods[] = {
    {"apply_side", (PyCFunction)(void (*)(void))apply_side, METH_FASTCALL, apply_side_doc},
    {"okx_checksum", (PyCFunction)(void (*)(void))okx_checksum, METH_FASTCALL, okx_checksum_doc},
    {"htx_levels", (PyCFunction)(void (*)(void))htx_levels, METH_FASTCALL, htx_levels_doc},
    {"okx_levels", (PyCFunction)(void (*)(void))okx_levels, METH_FASTCALL, okx_levels_doc},
    {NULL, NULL, 0, NULL},
};

static int
levels_exec(PyObject *module)
{
    levels_state *st = get_state(module);
    PyObject *numbers = PyImport_ImportModule("arbwire.numbers");
    if (numbers == NULL)
        return -1;
    st->to_units = PyObject_GetAttrString(numbers, "to_units");
    PyObject *scale = PyObject_GetAttrString(numbers, "SCALE_DIGITS");
    Py_DECREF(numbers);
    if (st->to_units == NULL || scale == NULL) {
        Py_XDECREF(scale);
        return -1;
    }
    long scale_digits = PyLong_AsLong(scale);
    Py_DECREF(scale);
    if (scale_digits != SCALE_DIGITS) {
        if (!PyErr_Occurred())
            PyErr_Format(PyExc_ImportError,
                         "arbwire._levels was built for SCALE_DIGITS=%d, numbers has %ld",
                         SCALE_DIGITS, scale_digits);
        return -1;
    }
    unsigned long long p = 1;
    for (int k = 0; k <= SCALE_DIGITS; k++, p *= 10) {
        st->pow10[k] = PyLong_FromUnsignedLongLong(p);
        if (st->pow10[k] == NULL)
            return -1;
    }
    st->strip_chars = PyUnicode_FromString("0.");
    if (st->strip_chars == NULL)
        return -1;
    PyObject *zlib = PyImport_ImportModule("zlib");
    if (zlib == NULL)
        return -1;
    st->crc32 = PyObject_GetAttrString(zlib, "crc32");
    Py_DECREF(zlib);
    if (st->crc32 == NULL)
        return -1;
    st->texts_type = (PyTypeObject *)PyType_FromModuleAndSpec(module, &texts_type_spec, NULL);
    if (st->texts_type == NULL || PyModule_AddType(module, st->texts_type) < 0)
        return -1;
    /* the sides' dicts are keyed by the signed key (-units on the ask side): 1 since then */
    if (PyModule_AddIntConstant(module, "SIGNED_KEYS", 1) < 0)
        return -1;
    return PyModule_AddIntConstant(module, "PRICE_CACHE_MAX", PRICE_CACHE_MAX);
}

static int
levels_traverse(PyObject *module, visitproc visit, void *arg)
{
    levels_state *st = get_state(module);
    if (st == NULL)
        return 0;
    Py_VISIT(st->to_units);
    Py_VISIT(st->crc32);
    Py_VISIT(st->texts_type);
    return 0;
}

static int
levels_clear(PyObject *module)
{
    levels_state *st = get_state(module);
    if (st == NULL)
        return 0;
    Py_CLEAR(st->to_units);
    for (int k = 0; k <= SCALE_DIGITS; k++)
        Py_CLEAR(st->pow10[k]);
    Py_CLEAR(st->strip_chars);
    Py_CLEAR(st->crc32);
    Py_CLEAR(st->texts_type);
    return 0;
}

static void
levels_free(void *module)
{
    levels_clear((PyObject *)module);
}

static PyModuleDef_Slot levels_slots[] = {
    {Py_mod_exec, levels_exec},
    {0, NULL},
};

static struct PyModuleDef levels_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "arbwire._levels",
    .m_doc = "C level loop for arbwire.book (see book.py; the pure-Python loop is the reference).",
    .m_size = sizeof(levels_state),
    .m_methods = levels_methods,
    .m_slots = levels_slots,
    .m_traverse = levels_traverse,
    .m_clear = levels_clear,
    .m_free = levels_free,
};

PyMODINIT_FUNC
PyInit__levels(void)
{
    return PyModuleDef_Init(&levels_module);
}
