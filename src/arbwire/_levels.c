/* Venue level arrays scanned in C: the decoders' fast paths (okx_levels, htx_levels).
 *
 * Each reads a JSON array of levels straight into (price text, size text) tuples, or
 * returns None when it is unsure of anything, and the venue's Python path (the
 * reference) decides; so a result, when there is one, is the Python one by construction.
 * Texts is the bounded text cache OKX's scanner hands repeated texts back from.
 * The book itself is held in C by arbwire._book.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

typedef struct {
    PyTypeObject *texts_type; /* Texts */
} levels_state;

static inline levels_state *
get_state(PyObject *module)
{
    return (levels_state *)PyModule_GetState(module);
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
    {"htx_levels", (PyCFunction)(void (*)(void))htx_levels, METH_FASTCALL, htx_levels_doc},
    {"okx_levels", (PyCFunction)(void (*)(void))okx_levels, METH_FASTCALL, okx_levels_doc},
    {NULL, NULL, 0, NULL},
};

static int
levels_exec(PyObject *module)
{
    levels_state *st = get_state(module);
    st->texts_type = (PyTypeObject *)PyType_FromModuleAndSpec(module, &texts_type_spec, NULL);
    if (st->texts_type == NULL || PyModule_AddType(module, st->texts_type) < 0)
        return -1;
    return 0;
}

static int
levels_traverse(PyObject *module, visitproc visit, void *arg)
{
    levels_state *st = get_state(module);
    if (st == NULL)
        return 0;
    Py_VISIT(st->texts_type);
    return 0;
}

static int
levels_clear(PyObject *module)
{
    levels_state *st = get_state(module);
    if (st == NULL)
        return 0;
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
    .m_doc = "Venue level arrays scanned in C (the OKX and HTX decoders' fast paths).",
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
