/* One side of an exact L2 book, held in C: arbwire.book.CBookSide's core.
 *
 * The reference is arbwire.book.BookSide (a dict of size text and a dict of price text
 * per exact scaled-int key, plus the sorted key list); this type keeps the same state
 * in two parallel arrays sorted by key, best level last:
 *
 *   keys  the level's key as a 128-bit int: price units, negated on the ask side
 *   lv    the price text as first received for that key (OKX checksums it) and the
 *         size text as last received
 *
 * and the best key as a Python int, made when first asked for (the detector asks on
 * every check). Finding a level is a branch-free binary search over 16-byte keys that
 * sit next to each other, where the dict version hashed, probed and compared Python
 * ints scattered over the heap; price text becomes a key by parsing it (plain
 * ASCII "digits[.digits]" of up to 19 digits) or, for any other text, by
 * arbwire.numbers.to_units itself, so the key and every NumberError are the Python
 * ones by construction. A price whose units do not fit 127 bits (above ~1.7e20) is
 * refused with the NumberError the Python side raises for it too.
 *
 * okx_checksum reads the arrays directly for OKX's CRC32 of the top levels.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

#define SCALE_DIGITS 18
#define BOOK_API 1 /* arbwire.book checks it: a stale build is not used */

typedef __int128 i128;

typedef struct {
    PyObject *to_units;     /* arbwire.numbers.to_units */
    PyObject *number_error; /* arbwire.numbers.NumberError */
    PyObject *strip_chars;  /* "0." */
    PyObject *crc32;        /* zlib.crc32 */
    PyTypeObject *side_type;
    i128 pow10[SCALE_DIGITS + 1];
} book_state;

static struct PyModuleDef book_module;

typedef struct {
    PyObject *px; /* price text */
    PyObject *sz; /* size text */
} level_t;

typedef struct {
    PyObject_HEAD
    book_state *st;
    PyObject *module; /* keeps st alive */
    int sign;
    Py_ssize_t n, cap;
    i128 *keys;  /* ascending: best level last */
    level_t *lv; /* the texts of keys[i] */
    PyObject *best_obj; /* keys[n - 1] as a Python int when best_key says so, else NULL */
    i128 best_key;
} Side;

static inline book_state *
get_state(PyObject *module)
{
    return (book_state *)PyModule_GetState(module);
}

/* -- 128-bit keys <-> Python ints ---------------------------------------------------------- */

static PyObject *
i128_to_long(i128 v)
{
    if (v >= (i128)LLONG_MIN && v <= (i128)LLONG_MAX)
        return PyLong_FromLongLong((long long)v);
#if PY_VERSION_HEX >= 0x030D0000
    return PyLong_FromNativeBytes(&v, sizeof v, Py_ASNATIVEBYTES_NATIVE_ENDIAN);
#else
    return _PyLong_FromByteArray((const unsigned char *)&v, sizeof v, PY_LITTLE_ENDIAN, 1);
#endif
}

/* 0 with *out set; 1 when `v` does not fit 128 bits; -1 on another error. */
static int
long_to_i128(PyObject *v, i128 *out)
{
    int overflow = 0;
    long long x = PyLong_AsLongLongAndOverflow(v, &overflow);
    if (!overflow) {
        if (x == -1 && PyErr_Occurred())
            return -1;
        *out = x;
        return 0;
    }
#if PY_VERSION_HEX >= 0x030D0000
    Py_ssize_t need = PyLong_AsNativeBytes(v, out, sizeof *out, Py_ASNATIVEBYTES_NATIVE_ENDIAN);
    if (need < 0)
        return -1;
    return need > (Py_ssize_t)sizeof *out;
#else
    if (_PyLong_AsByteArray((PyLongObject *)v, (unsigned char *)out, sizeof *out, PY_LITTLE_ENDIAN, 1) < 0) {
        if (!PyErr_ExceptionMatches(PyExc_OverflowError))
            return -1;
        PyErr_Clear();
        return 1;
    }
    return 0;
#endif
}

/* The largest units a key may hold: 2**127 - 1 (keys are negated on the ask side). */
#define UNITS_MAX ((i128)(((unsigned __int128)1 << 127) - 1))

/* The signed key of `price` into *key; -1 with an exception set. */
static int
price_key(book_state *st, PyObject *price, int sign, i128 *key)
{
#if PY_VERSION_HEX < 0x030C0000
    if (PyUnicode_Check(price) && PyUnicode_READY(price) < 0)
        return -1;
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
                i128 units = (i128)v * st->pow10[SCALE_DIGITS - decimals];
                *key = sign < 0 ? -units : units;
                return 0;
            }
        }
    }
    /* the reference looks the text up in a dict first: an unhashable price fails there */
    if (!PyUnicode_Check(price) && PyObject_Hash(price) == -1)
        return -1;
    PyObject *units = PyObject_CallOneArg(st->to_units, price);
    if (units == NULL)
        return -1;
    if (!PyLong_Check(units)) {
        PyErr_Format(PyExc_TypeError, "to_units returned %.80s, not int", Py_TYPE(units)->tp_name);
        Py_DECREF(units);
        return -1;
    }
    i128 u;
    int rc = long_to_i128(units, &u);
    Py_DECREF(units);
    if (rc < 0)
        return -1;
    if (rc > 0 || u > UNITS_MAX || u < -UNITS_MAX) {
        PyErr_Format(st->number_error, "too large for a price: %R", price);
        return -1;
    }
    *key = sign < 0 ? -u : u;
    return 0;
}

/* 1 when the size text deletes its level (size.strip("0.") is empty), 0 if not, -1 on error. */
static int
size_is_zero(book_state *st, PyObject *size)
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

/* -- the arrays ---------------------------------------------------------------------------- */

/* First index whose key is >= key, without a branch per step: where a level lands is
 * random to the branch predictor, and a mispredicted step costs more than the compare. */
static inline Py_ssize_t
lower_bound(const i128 *keys, Py_ssize_t n, i128 key)
{
    if (n == 0)
        return 0;
    const i128 *base = keys;
    Py_ssize_t len = n;
    while (len > 1) {
        Py_ssize_t half = len / 2;
        /* arithmetic, not a conditional: compilers keep a branch for a 128-bit compare */
        base += half & -(Py_ssize_t)(base[half - 1] < key);
        len -= half;
    }
    return (base - keys) + (*base < key);
}

static int
side_reserve(Side *self, Py_ssize_t need)
{
    if (need <= self->cap)
        return 0;
    Py_ssize_t cap = self->cap ? self->cap : 16;
    while (cap < need)
        cap *= 2;
    i128 *keys = PyMem_Realloc(self->keys, (size_t)cap * sizeof(i128));
    if (keys == NULL)
        goto fail;
    self->keys = keys;
    level_t *lv = PyMem_Realloc(self->lv, (size_t)cap * sizeof(level_t));
    if (lv == NULL)
        goto fail;
    self->lv = lv;
    self->cap = cap;
    return 0;
fail:
    PyErr_NoMemory();
    return -1;
}

/* Drop levels [i, i + count): the arrays first, then the references, so a finalizer that
 * runs on a decref sees a consistent side. */
static void
side_remove(Side *self, Py_ssize_t i, Py_ssize_t count)
{
    if (count <= 0)
        return;
    level_t stack[16];
    level_t *gone = count <= 16 ? stack : PyMem_New(level_t, count);
    if (gone != NULL) {
        memcpy(gone, self->lv + i, (size_t)count * sizeof(level_t));
    }
    else {
        /* no memory for the copy: release in place (strings run no code on release) */
        for (Py_ssize_t k = i; k < i + count; k++) {
            Py_CLEAR(self->lv[k].px);
            Py_CLEAR(self->lv[k].sz);
        }
    }
    Py_ssize_t tail = self->n - i - count;
    memmove(self->keys + i, self->keys + i + count, (size_t)tail * sizeof(i128));
    memmove(self->lv + i, self->lv + i + count, (size_t)tail * sizeof(level_t));
    self->n -= count;
    if (gone != NULL) {
        for (Py_ssize_t k = 0; k < count; k++) {
            Py_XDECREF(gone[k].px);
            Py_XDECREF(gone[k].sz);
        }
        if (gone != stack)
            PyMem_Free(gone);
    }
}

/* One parsed level: 1 if a level was inserted, 0 if not, -1 on error (no memory). The
 * steps are BookSide.apply's: set, insert or delete. */
static int
side_set(Side *self, i128 key, PyObject *price, PyObject *size, int zero)
{
    Py_ssize_t n = self->n;
    Py_ssize_t i;
    /* most changes are at or near the best level, the end */
    if (n && self->keys[n - 1] == key)
        i = n - 1;
    else
        i = lower_bound(self->keys, n, key);
    int found = i < n && self->keys[i] == key;
    if (zero) {
        if (found)
            side_remove(self, i, 1);
        return 0;
    }
    if (found) {
        Py_INCREF(size);
        Py_SETREF(self->lv[i].sz, size);
        return 0;
    }
    if (side_reserve(self, n + 1) < 0)
        return -1;
    Py_ssize_t tail = n - i;
    memmove(self->keys + i + 1, self->keys + i, (size_t)tail * sizeof(i128));
    memmove(self->lv + i + 1, self->lv + i, (size_t)tail * sizeof(level_t));
    self->keys[i] = key;
    Py_INCREF(price);
    self->lv[i].px = price;
    Py_INCREF(size);
    self->lv[i].sz = size;
    self->n = n + 1;
    return 1;
}

/* A level of an update, parsed: its key, its texts (owned) and whether it deletes. */
typedef struct {
    i128 key;
    PyObject *px;
    PyObject *sz;
    int zero;
} change_t;

#define MERGE_MIN 8 /* fewer changes than this are set one by one */
#define MERGE_STACK 512 /* scratch levels kept on the stack (16 KB of keys, 8 KB of texts) */

/* First index in [from, n) whose key is >= key, galloping up from `from`: the changes
 * of one update come sorted, so the next one is usually a few levels further. */
static inline Py_ssize_t
gallop(const i128 *keys, Py_ssize_t from, Py_ssize_t n, i128 key)
{
    Py_ssize_t lo = from, step = 1;
    while (from + step - 1 < n && keys[from + step - 1] < key) {
        lo = from + step;
        step <<= 1;
    }
    Py_ssize_t hi = Py_MIN(from + step - 1, n);
    return lo + lower_bound(keys + lo, hi - lo, key);
}

/* Apply changes c[0..m), sorted by key (ascending when step is 1, descending when -1)
 * and distinct, in one pass: the runs of untouched levels between changes are copied
 * as blocks into a scratch buffer with the changes merged in, and written back once,
 * where setting them one by one shifts every level above each insert or delete
 * (a 600-level update into a 1100-level side moved megabytes). The same side as
 * setting them one by one. 1 if a level was inserted, 0 if not, -1 on error (no
 * memory; nothing changed). */
static int
side_merge(Side *self, const change_t *c, Py_ssize_t m, int step)
{
    Py_ssize_t n = self->n;
    const change_t *first = step > 0 ? c : c + m - 1; /* the lowest key */
    Py_ssize_t lo = lower_bound(self->keys, n, first->key);
    Py_ssize_t room = (n - lo) + m;
    if (side_reserve(self, n + m) < 0)
        return -1;
    /* scratch on the stack for the common sizes (a few hundred levels touched) */
    i128 stack_keys[MERGE_STACK];
    level_t stack_lv[MERGE_STACK];
    PyObject *stack_gone[MERGE_STACK];
    int on_heap = room > MERGE_STACK || 2 * m > MERGE_STACK;
    i128 *out_keys = on_heap ? PyMem_New(i128, room) : stack_keys;
    level_t *out_lv = on_heap ? PyMem_New(level_t, room) : stack_lv;
    PyObject **gone = on_heap ? PyMem_New(PyObject *, 2 * m) : stack_gone;
    if (out_keys == NULL || out_lv == NULL || gone == NULL) {
        PyMem_Free(out_keys);
        PyMem_Free(out_lv);
        PyMem_Free(gone);
        PyErr_NoMemory();
        return -1;
    }
    i128 *keys = self->keys;
    level_t *lv = self->lv;
    Py_ssize_t pos = lo, w = 0, ngone = 0;
    int inserted = 0;
    for (Py_ssize_t j = 0; j < m; j++) {
        const change_t *ch = step > 0 ? c + j : c + m - 1 - j;
        Py_ssize_t p = gallop(keys, pos, n, ch->key);
        Py_ssize_t run = p - pos; /* untouched levels below this change */
        memcpy(out_keys + w, keys + pos, (size_t)run * sizeof(i128));
        memcpy(out_lv + w, lv + pos, (size_t)run * sizeof(level_t));
        w += run;
        if (p < n && keys[p] == ch->key) {
            if (ch->zero) {
                gone[ngone++] = lv[p].px;
                gone[ngone++] = lv[p].sz;
            }
            else {
                out_keys[w] = ch->key;
                out_lv[w].px = lv[p].px;
                Py_INCREF(ch->sz);
                out_lv[w++].sz = ch->sz;
                gone[ngone++] = lv[p].sz;
            }
            pos = p + 1;
        }
        else {
            if (!ch->zero) {
                out_keys[w] = ch->key;
                Py_INCREF(ch->px);
                Py_INCREF(ch->sz);
                out_lv[w].px = ch->px;
                out_lv[w++].sz = ch->sz;
                inserted = 1;
            }
            pos = p;
        }
    }
    /* levels above the last change keep their order: one shift, then the merged run */
    Py_ssize_t tail = n - pos;
    memmove(keys + lo + w, keys + pos, (size_t)tail * sizeof(i128));
    memmove(lv + lo + w, lv + pos, (size_t)tail * sizeof(level_t));
    memcpy(keys + lo, out_keys, (size_t)w * sizeof(i128));
    memcpy(lv + lo, out_lv, (size_t)w * sizeof(level_t));
    self->n = lo + w + tail;
    if (on_heap) {
        PyMem_Free(out_keys);
        PyMem_Free(out_lv);
    }
    /* references released once the side is whole again */
    for (Py_ssize_t k = 0; k < ngone; k++)
        Py_DECREF(gone[k]);
    if (on_heap)
        PyMem_Free(gone);
    return inserted;
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
        PyErr_Format(PyExc_TypeError, "cannot unpack non-iterable %.200s object", Py_TYPE(item)->tp_name);
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
                PyErr_Format(PyExc_ValueError, "not enough values to unpack (expected 2, got %d)", i);
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

/* Parse one level into *ch (owning its texts): key first, then the zero test, as the
 * reference does. -1 with an exception set, nothing held. */
static int
parse_change(Side *self, PyObject *item, change_t *ch)
{
    if (unpack_level(item, &ch->px, &ch->sz) < 0)
        return -1;
    if (price_key(self->st, ch->px, self->sign, &ch->key) < 0 || (ch->zero = size_is_zero(self->st, ch->sz)) < 0) {
        Py_DECREF(ch->px);
        Py_DECREF(ch->sz);
        return -1;
    }
    return 0;
}

/* -- methods ------------------------------------------------------------------------------- */

PyDoc_STRVAR(side_apply_doc,
"apply(levels, max_depth)\n"
"\n"
"Set each (price text, size text) level: a zero size deletes the level. When a level\n"
"was inserted and the side is deeper than ``max_depth``, the worst levels are dropped.");

#define CHANGE_STACK 64

static PyObject *
side_apply(Side *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_Format(PyExc_TypeError, "apply expected 2 arguments, got %zd", nargs);
        return NULL;
    }
    Py_ssize_t max_depth = PyLong_AsSsize_t(args[1]);
    if (max_depth == -1 && PyErr_Occurred())
        return NULL;
    /* the levels as a list or tuple: any other iterable is read to its end first, and an
     * error while reading it is raised after the levels read before it are applied */
    PyObject *levels = args[0], *seq;
    PyObject *exc_type = NULL, *exc_value = NULL, *exc_tb = NULL;
    if (PyList_CheckExact(levels) || PyTuple_CheckExact(levels)) {
        Py_INCREF(levels);
        seq = levels;
    }
    else {
        PyObject *it = PyObject_GetIter(levels);
        if (it == NULL)
            return NULL;
        seq = PyList_New(0);
        if (seq == NULL) {
            Py_DECREF(it);
            return NULL;
        }
        PyObject *item;
        while ((item = PyIter_Next(it)) != NULL) {
            int appended = PyList_Append(seq, item);
            Py_DECREF(item);
            if (appended < 0)
                break;
        }
        Py_DECREF(it);
        if (PyErr_Occurred())
            PyErr_Fetch(&exc_type, &exc_value, &exc_tb);
    }
    Py_ssize_t m = PySequence_Fast_GET_SIZE(seq);
    change_t stack[CHANGE_STACK];
    change_t *c = m <= CHANGE_STACK ? stack : PyMem_New(change_t, m);
    if (c == NULL) {
        Py_DECREF(seq);
        Py_XDECREF(exc_type);
        Py_XDECREF(exc_value);
        Py_XDECREF(exc_tb);
        return PyErr_NoMemory();
    }
    /* 1: parse every level; the first that fails stops here, and its error is the one
     * raised (the reference never reads past it) */
    Py_ssize_t parsed = 0;
    int ascending = 1, descending = 1;
    for (; parsed < m && parsed < PySequence_Fast_GET_SIZE(seq); parsed++) {
        PyObject *item = PySequence_Fast_GET_ITEM(seq, parsed);
        Py_INCREF(item);
        int rc = parse_change(self, item, c + parsed);
        Py_DECREF(item);
        if (rc < 0) {
            Py_XDECREF(exc_type);
            Py_XDECREF(exc_value);
            Py_XDECREF(exc_tb);
            PyErr_Fetch(&exc_type, &exc_value, &exc_tb);
            break;
        }
        if (parsed) {
            ascending &= c[parsed - 1].key < c[parsed].key;
            descending &= c[parsed - 1].key > c[parsed].key;
        }
    }
    int failed = exc_type != NULL;
    /* 2: apply what parsed, in order: in one merge when it is a sorted run of distinct
     * prices (venues send each side best first), else one by one; then the error, if any */
    int inserted = 0, rc = 0;
    if (parsed >= MERGE_MIN && (ascending || descending)) {
        rc = side_merge(self, c, parsed, ascending ? 1 : -1);
        inserted = rc > 0;
    }
    else {
        for (Py_ssize_t k = 0; k < parsed && rc >= 0; k++) {
            rc = side_set(self, c[k].key, c[k].px, c[k].sz, c[k].zero);
            inserted |= rc > 0;
        }
    }
    for (Py_ssize_t k = 0; k < parsed; k++) {
        Py_DECREF(c[k].px);
        Py_DECREF(c[k].sz);
    }
    if (c != stack)
        PyMem_Free(c);
    Py_DECREF(seq);
    if (rc < 0) { /* no memory: that error wins */
        Py_XDECREF(exc_type);
        Py_XDECREF(exc_value);
        Py_XDECREF(exc_tb);
        return NULL;
    }
    if (failed) {
        PyErr_Restore(exc_type, exc_value, exc_tb);
        return NULL;
    }
    if (inserted && self->n > max_depth)
        side_remove(self, 0, self->n - Py_MAX(max_depth, 0)); /* a negative depth keeps nothing, as in Python */
    Py_RETURN_NONE;
}

static PyObject *
side_trim(Side *self, PyObject *arg)
{
    Py_ssize_t max_depth = PyLong_AsSsize_t(arg);
    if (max_depth == -1 && PyErr_Occurred())
        return NULL;
    if (self->n > max_depth)
        side_remove(self, 0, self->n - Py_MAX(max_depth, 0)); /* a negative depth keeps nothing, as in Python */
    Py_RETURN_NONE;
}

static PyObject *
side_clear_levels(Side *self, PyObject *Py_UNUSED(ignored))
{
    side_remove(self, 0, self->n);
    Py_RETURN_NONE;
}

static PyObject *
side_best(Side *self, PyObject *Py_UNUSED(ignored))
{
    if (!self->n)
        Py_RETURN_NONE;
    i128 key = self->keys[self->n - 1];
    return i128_to_long(self->sign < 0 ? -key : key);
}

/* New reference to the key of level i; the best one is made once per best level. */
static PyObject *
key_object(Side *self, Py_ssize_t i)
{
    if (i != self->n - 1)
        return i128_to_long(self->keys[i]);
    i128 key = self->keys[i];
    if (self->best_obj == NULL || self->best_key != key) {
        PyObject *k = i128_to_long(key);
        if (k == NULL)
            return NULL;
        Py_XSETREF(self->best_obj, k);
        self->best_key = key;
    }
    Py_INCREF(self->best_obj);
    return self->best_obj;
}

PyDoc_STRVAR(side_level_doc,
"level(rank) -> (price units, size text) of the rank-th best level (0 is the best).");

static PyObject *
side_level(Side *self, PyObject *arg)
{
    Py_ssize_t rank = PyLong_AsSsize_t(arg);
    if (rank == -1 && PyErr_Occurred())
        return NULL;
    if (rank < 0 || rank >= self->n) {
        PyErr_SetString(PyExc_IndexError, "level rank out of range");
        return NULL;
    }
    Py_ssize_t i = self->n - 1 - rank;
    i128 key = self->keys[i];
    PyObject *units = i128_to_long(self->sign < 0 ? -key : key);
    if (units == NULL)
        return NULL;
    PyObject *out = PyTuple_Pack(2, units, self->lv[i].sz);
    Py_DECREF(units);
    return out;
}

PyDoc_STRVAR(side_text_levels_doc,
"text_levels(depth) -> [(price text, size text), ...], the top ``depth`` levels, best first.");

static PyObject *
side_text_levels(Side *self, PyObject *arg)
{
    Py_ssize_t depth = PyLong_AsSsize_t(arg);
    if (depth == -1 && PyErr_Occurred())
        return NULL;
    Py_ssize_t count = depth < 0 ? 0 : Py_MIN(depth, self->n);
    PyObject *out = PyList_New(count);
    if (out == NULL)
        return NULL;
    for (Py_ssize_t r = 0; r < count; r++) {
        Py_ssize_t i = self->n - 1 - r;
        PyObject *pair = PyTuple_Pack(2, self->lv[i].px, self->lv[i].sz);
        if (pair == NULL) {
            Py_DECREF(out);
            return NULL;
        }
        PyList_SET_ITEM(out, r, pair);
    }
    return out;
}

PyDoc_STRVAR(side_crosses_doc,
"crosses(asks) -> bool: this (bid) side's best level at or above the best ask.");

static PyObject *
side_crosses(Side *self, PyObject *other)
{
    if (!PyObject_TypeCheck(other, self->st->side_type)) {
        PyErr_SetString(PyExc_TypeError, "crosses: the ask side must be a SideCore");
        return NULL;
    }
    Side *asks = (Side *)other;
    if (!self->n || !asks->n)
        Py_RETURN_FALSE;
    /* bid units >= ask units; the ask key is -units */
    return PyBool_FromLong(self->keys[self->n - 1] >= -asks->keys[asks->n - 1]);
}

static PyObject *
side_sizeof(Side *self, PyObject *Py_UNUSED(ignored))
{
    size_t per_level = sizeof(i128) + sizeof(level_t);
    return PyLong_FromSize_t((size_t)Py_TYPE(self)->tp_basicsize + (size_t)self->cap * per_level);
}

static PyObject *
side_get_order(Side *self, void *Py_UNUSED(closure))
{
    Py_INCREF(self);
    return (PyObject *)self;
}

static PyObject *
side_get_sign(Side *self, void *Py_UNUSED(closure))
{
    return PyLong_FromLong(self->sign);
}

static Py_ssize_t
side_length(Side *self)
{
    return self->n;
}

static PyObject *
side_item(Side *self, Py_ssize_t i)
{
    if (i < 0 || i >= self->n) {
        PyErr_SetString(PyExc_IndexError, "side index out of range");
        return NULL;
    }
    return key_object(self, i);
}

static PyObject *
side_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    int sign;
    static char *kwlist[] = {"sign", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "i", kwlist, &sign))
        return NULL;
    if (sign != 1 && sign != -1) {
        PyErr_SetString(PyExc_ValueError, "sign must be 1 (bids) or -1 (asks)");
        return NULL;
    }
    PyObject *module = PyType_GetModuleByDef(type, &book_module);
    if (module == NULL)
        return NULL;
    Side *self = (Side *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    self->st = get_state(module);
    Py_INCREF(module);
    self->module = module;
    self->sign = sign;
    return (PyObject *)self;
}

static void
side_dealloc(Side *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    side_remove(self, 0, self->n);
    PyMem_Free(self->keys);
    PyMem_Free(self->lv);
    Py_XDECREF(self->best_obj);
    Py_XDECREF(self->module);
    tp->tp_free((PyObject *)self);
    Py_DECREF(tp);
}

static PyMethodDef side_methods[] = {
    {"apply", (PyCFunction)(void (*)(void))side_apply, METH_FASTCALL, side_apply_doc},
    {"trim", (PyCFunction)side_trim, METH_O, "trim(max_depth): drop the worst levels beyond max_depth."},
    {"clear", (PyCFunction)side_clear_levels, METH_NOARGS, "clear(): drop every level."},
    {"best", (PyCFunction)side_best, METH_NOARGS, "best() -> best price in units, or None."},
    {"level", (PyCFunction)side_level, METH_O, side_level_doc},
    {"text_levels", (PyCFunction)side_text_levels, METH_O, side_text_levels_doc},
    {"crosses", (PyCFunction)side_crosses, METH_O, side_crosses_doc},
    {"__sizeof__", (PyCFunction)side_sizeof, METH_NOARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef side_getset[] = {
    {"order", (getter)side_get_order, NULL,
     "The keys, ascending (best level last), as a sequence: the side itself.", NULL},
    {"sign", (getter)side_get_sign, NULL, "+1 for bids, -1 for asks.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot side_slots[] = {
    {Py_tp_doc, "SideCore(sign): one book side held in C; see arbwire.book.CBookSide."},
    {Py_tp_new, side_new},
    {Py_tp_dealloc, side_dealloc},
    {Py_tp_methods, side_methods},
    {Py_tp_getset, side_getset},
    {Py_sq_length, side_length},
    {Py_sq_item, side_item},
    {0, NULL},
};

static PyType_Spec side_spec = {
    .name = "arbwire._book.SideCore",
    .basicsize = sizeof(Side),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .slots = side_slots,
};

/* -- OKX checksum -------------------------------------------------------------------------
 * OKX's signed CRC32 of "bid1px:bid1sz:ask1px:ask1sz:..." over the top levels as the
 * venue's own text; the reference is arbwire.venues.okx.okx_checksum over
 * BookSide.text_levels. The bytes are the ones ":".join(fields).encode() gives, handed to
 * zlib.crc32 (linking zlib would make the build need its headers, and a failed build
 * loses the C book for every venue). */

#define CRC_STACK_BYTES 4096

/* UTF-8 of a field with str.encode()'s strict errors, as join then encode would. */
static const char *
field_utf8(PyObject *f, Py_ssize_t index, Py_ssize_t *n)
{
    if (!PyUnicode_Check(f)) {
        PyErr_Format(PyExc_TypeError, "sequence item %zd: expected str instance, %.80s found", index,
                     Py_TYPE(f)->tp_name);
        return NULL;
    }
    if (PyUnicode_IS_COMPACT_ASCII(f)) {
        *n = PyUnicode_GET_LENGTH(f);
        return (const char *)PyUnicode_DATA(f);
    }
    return PyUnicode_AsUTF8AndSize(f, n);
}

PyDoc_STRVAR(okx_checksum_doc,
"okx_checksum(bids, asks, depth) -> int\n"
"\n"
"OKX's signed CRC32 of ``bid1px:bid1sz:ask1px:ask1sz:...`` over the top ``depth`` levels\n"
"of two SideCore objects (the deeper side's remaining levels follow): the value of\n"
"``arbwire.venues.okx.okx_checksum(bids.text_levels(depth), asks.text_levels(depth))``.");

static PyObject *
okx_checksum(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    book_state *st = get_state(module);
    if (nargs != 3 || !PyObject_TypeCheck(args[0], st->side_type) || !PyObject_TypeCheck(args[1], st->side_type)) {
        PyErr_SetString(PyExc_TypeError, "okx_checksum(bids: SideCore, asks: SideCore, depth: int)");
        return NULL;
    }
    Side *bids = (Side *)args[0], *asks = (Side *)args[1];
    Py_ssize_t depth = PyLong_AsSsize_t(args[2]);
    if (depth == -1 && PyErr_Occurred())
        return NULL;
    if (depth < 1) {
        PyErr_SetString(PyExc_ValueError, "okx_checksum: depth must be at least 1");
        return NULL;
    }
    Py_ssize_t nb = Py_MIN(depth, bids->n), na = Py_MIN(depth, asks->n);
    Py_ssize_t levels = Py_MAX(nb, na);
    /* the fields in join order: bid, ask, bid, ask, ..., the deeper side's rest */
    char stack[CRC_STACK_BYTES];
    char *buf = stack;
    Py_ssize_t cap = CRC_STACK_BYTES, used = 0, k = 0;
    PyObject *result = NULL;
    for (Py_ssize_t r = 0; r < levels; r++) {
        for (int s = 0; s < 2; s++) {
            Side *side = s ? asks : bids;
            if (r >= (s ? na : nb))
                continue;
            Py_ssize_t i = side->n - 1 - r;
            PyObject *pair[2] = {side->lv[i].px, side->lv[i].sz};
            for (int f = 0; f < 2; f++, k++) {
                Py_ssize_t len;
                const char *text = field_utf8(pair[f], k, &len);
                if (text == NULL)
                    goto done;
                if (used + len + 1 > cap) {
                    Py_ssize_t grown_cap = Py_MAX(2 * cap, used + len + 1);
                    char *grown = buf == stack ? PyMem_Malloc((size_t)grown_cap)
                                               : PyMem_Realloc(buf, (size_t)grown_cap);
                    if (grown == NULL) {
                        PyErr_NoMemory();
                        goto done;
                    }
                    if (buf == stack)
                        memcpy(grown, stack, (size_t)used);
                    buf = grown;
                    cap = grown_cap;
                }
                if (k)
                    buf[used++] = ':';
                memcpy(buf + used, text, (size_t)len);
                used += len;
            }
        }
    }
    PyObject *joined = PyBytes_FromStringAndSize(buf, used);
    if (joined == NULL)
        goto done;
    PyObject *value = PyObject_CallOneArg(st->crc32, joined);
    Py_DECREF(joined);
    if (value == NULL)
        goto done;
    unsigned long crc = PyLong_AsUnsignedLong(value);
    Py_DECREF(value);
    if (crc == (unsigned long)-1 && PyErr_Occurred())
        goto done;
    long long signed_crc = (long long)crc;
    if (signed_crc >= 0x80000000LL)
        signed_crc -= 0x100000000LL;
    result = PyLong_FromLongLong(signed_crc);
done:
    if (buf != stack)
        PyMem_Free(buf);
    return result;
}

/* -- module -------------------------------------------------------------------------------- */

static PyMethodDef book_methods[] = {
    {"okx_checksum", (PyCFunction)(void (*)(void))okx_checksum, METH_FASTCALL, okx_checksum_doc},
    {NULL, NULL, 0, NULL},
};

static int
book_exec(PyObject *module)
{
    book_state *st = get_state(module);
    PyObject *numbers = PyImport_ImportModule("arbwire.numbers");
    if (numbers == NULL)
        return -1;
    st->to_units = PyObject_GetAttrString(numbers, "to_units");
    st->number_error = PyObject_GetAttrString(numbers, "NumberError");
    PyObject *scale = PyObject_GetAttrString(numbers, "SCALE_DIGITS");
    Py_DECREF(numbers);
    if (st->to_units == NULL || st->number_error == NULL || scale == NULL) {
        Py_XDECREF(scale);
        return -1;
    }
    long scale_digits = PyLong_AsLong(scale);
    Py_DECREF(scale);
    if (scale_digits != SCALE_DIGITS) {
        if (!PyErr_Occurred())
            PyErr_Format(PyExc_ImportError, "arbwire._book was built for SCALE_DIGITS=%d, numbers has %ld",
                         SCALE_DIGITS, scale_digits);
        return -1;
    }
    i128 p = 1;
    for (int k = 0; k <= SCALE_DIGITS; k++, p *= 10)
        st->pow10[k] = p;
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
    st->side_type = (PyTypeObject *)PyType_FromModuleAndSpec(module, &side_spec, NULL);
    if (st->side_type == NULL || PyModule_AddType(module, st->side_type) < 0)
        return -1;
    return PyModule_AddIntConstant(module, "BOOK_API", BOOK_API);
}

static int
book_traverse(PyObject *module, visitproc visit, void *arg)
{
    book_state *st = get_state(module);
    if (st == NULL)
        return 0;
    Py_VISIT(st->to_units);
    Py_VISIT(st->number_error);
    Py_VISIT(st->crc32);
    Py_VISIT(st->side_type);
    return 0;
}

static int
book_clear(PyObject *module)
{
    book_state *st = get_state(module);
    if (st == NULL)
        return 0;
    Py_CLEAR(st->to_units);
    Py_CLEAR(st->number_error);
    Py_CLEAR(st->strip_chars);
    Py_CLEAR(st->crc32);
    Py_CLEAR(st->side_type);
    return 0;
}

static void
book_free(void *module)
{
    book_clear((PyObject *)module);
}

static PyModuleDef_Slot book_slots[] = {
    {Py_mod_exec, book_exec},
    {0, NULL},
};

static struct PyModuleDef book_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "arbwire._book",
    .m_doc = "One exact L2 book side held in C (arbwire.book.CBookSide; BookSide is the reference).",
    .m_size = sizeof(book_state),
    .m_methods = book_methods,
    .m_slots = book_slots,
    .m_traverse = book_traverse,
    .m_clear = book_clear,
    .m_free = book_free,
};

PyMODINIT_FUNC
PyInit__book(void)
{
    return PyModuleDef_Init(&book_module);
}
