/* Folding buffered latency samples into an HdrHistogram's counts, in C.
 *
 * arbwire.latency.Recorder appends raw samples to an array('q') on the hot path and
 * folds them into the histogram off it. The fold runs on the event loop, so its
 * length is a pause every frame that arrives meanwhile waits out: in Python it
 * costs ~0.5 us a sample (~0.3 ms per fold at 10k msg/s). Here it is a few ns a
 * sample. The bucket index is hdrh's own formula, the same one the Python fold in
 * latency.py computes (tests/test_latency.py holds both to record_value).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>

/* Number of significant bits of x, like int.bit_length(). */
static inline int
bit_length(uint64_t x)
{
    return x ? 64 - __builtin_clzll(x) : 0;
}

/* fold(samples, counts, mask, unit_magnitude, half_count_magnitude, half_count, top[, offset])
 *   -> (recorded, negative, raw_min, min_recorded, max_recorded)
 *
 * samples: a buffer of int64 (array('q')); counts: the histogram's writable counts
 * buffer (ctypes array of 4- or 8-byte unsigned ints). `offset` (default 0) is added to
 * every sample first (a venue clock's offset, arbwire.clock). Negative samples are
 * counted, not recorded; samples above `top` are recorded as `top`. raw_min is the
 * smallest sample, negatives included; the two others are None when nothing was recorded.
 */
static PyObject *
fold(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 7 && nargs != 8) {
        PyErr_SetString(PyExc_TypeError, "fold() takes 7 or 8 arguments");
        return NULL;
    }
    long long mask = PyLong_AsLongLong(args[2]);
    long long unit = PyLong_AsLongLong(args[3]);
    long long half_mag = PyLong_AsLongLong(args[4]);
    long long half = PyLong_AsLongLong(args[5]);
    long long top = PyLong_AsLongLong(args[6]);
    long long offset = nargs == 8 ? PyLong_AsLongLong(args[7]) : 0;
    if (PyErr_Occurred())
        return NULL;
    if (mask < 0 || unit < 0 || unit > 62 || half_mag < 0 || half_mag > 62 || half < 0 || top < 0) {
        PyErr_SetString(PyExc_ValueError, "fold(): histogram geometry out of range");
        return NULL;
    }
    Py_buffer sv, cv;
    if (PyObject_GetBuffer(args[0], &sv, PyBUF_FORMAT | PyBUF_C_CONTIGUOUS) < 0)
        return NULL;
    if (sv.itemsize != 8 || sv.format == NULL || (sv.format[0] != 'q' && sv.format[0] != 'l')) {
        PyBuffer_Release(&sv);
        PyErr_SetString(PyExc_TypeError, "fold(): samples must be an array('q')");
        return NULL;
    }
    if (PyObject_GetBuffer(args[1], &cv, PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS) < 0) {
        PyBuffer_Release(&sv);
        return NULL;
    }
    if (cv.itemsize != 4 && cv.itemsize != 8) {
        PyBuffer_Release(&sv);
        PyBuffer_Release(&cv);
        PyErr_SetString(PyExc_TypeError, "fold(): counts must be 4- or 8-byte integers");
        return NULL;
    }
    const int64_t *s = (const int64_t *)sv.buf;
    Py_ssize_t n = sv.len / 8;
    Py_ssize_t ncounts = cv.len / cv.itemsize;
    int shift = (int)(unit + half_mag + 1);
    long long recorded = 0, negative = 0;
    int64_t raw_min = 0, lo = 0, hi = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        int64_t v = s[i] + offset;
        if (i == 0 || v < raw_min)
            raw_min = v;
        if (v < 0) {
            negative++;
            continue;
        }
        if (v > top)
            v = top;
        int b = bit_length((uint64_t)v | (uint64_t)mask) - shift;
        long long index = (((long long)b + 1) << half_mag) + (v >> (b + unit)) - half;
        if (index < 0 || index >= ncounts) {
            PyBuffer_Release(&sv);
            PyBuffer_Release(&cv);
            PyErr_Format(PyExc_ValueError, "fold(): sample %lld outside the histogram", (long long)v);
            return NULL;
        }
        if (cv.itemsize == 4)
            ((uint32_t *)cv.buf)[index] += 1;
        else
            ((uint64_t *)cv.buf)[index] += 1;
        if (recorded == 0 || v < lo)
            lo = v;
        if (recorded == 0 || v > hi)
            hi = v;
        recorded++;
    }
    PyBuffer_Release(&sv);
    PyBuffer_Release(&cv);
    if (n == 0)
        return Py_BuildValue("(LLOOO)", recorded, negative, Py_None, Py_None, Py_None);
    if (recorded == 0)
        return Py_BuildValue("(LLLOO)", recorded, negative, (long long)raw_min, Py_None, Py_None);
    return Py_BuildValue("(LLLLL)", recorded, negative, (long long)raw_min, (long long)lo, (long long)hi);
}


/* stats(counts, half_count_magnitude, half_count, unit_magnitude, quantiles)
 *   -> (total, mean, [value at each quantile])
 *
 * What arbwire.latency.stats_of computes in Python (its reference), in one pass over the
 * counts buffer (array of 4- or 8-byte unsigned ints laid out like the histogram):
 * each quantile q is the highest equivalent value of the first bucket whose running
 * total reaches max(1, int(q * total + 0.5)) (the last bucket if none does), and the
 * mean weighs each bucket by the middle of its range, as hdrh does. Values are in the
 * histogram's unit; the caller scales them. A five-venue summary is 15 of these: in
 * Python ~0.7 ms each on the event loop, here a few µs. */
static PyObject *
stats(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 5) {
        PyErr_SetString(PyExc_TypeError, "stats() takes 5 arguments");
        return NULL;
    }
    long long half_mag = PyLong_AsLongLong(args[1]);
    long long half = PyLong_AsLongLong(args[2]);
    long long unit = PyLong_AsLongLong(args[3]);
    if (PyErr_Occurred())
        return NULL;
    if (unit < 0 || unit > 62 || half_mag < 0 || half_mag > 62 || half <= 0) {
        PyErr_SetString(PyExc_ValueError, "stats(): histogram geometry out of range");
        return NULL;
    }
    PyObject *qs = PySequence_Fast(args[4], "stats(): quantiles must be a sequence");
    if (qs == NULL)
        return NULL;
    Py_ssize_t nq = PySequence_Fast_GET_SIZE(qs);
    double qv[16];
    if (nq > 16) {
        Py_DECREF(qs);
        PyErr_SetString(PyExc_ValueError, "stats(): at most 16 quantiles");
        return NULL;
    }
    for (Py_ssize_t j = 0; j < nq; j++) {
        qv[j] = PyFloat_AsDouble(PySequence_Fast_GET_ITEM(qs, j));
        if (qv[j] == -1.0 && PyErr_Occurred()) {
            Py_DECREF(qs);
            return NULL;
        }
    }
    Py_DECREF(qs);
    Py_buffer cv;
    if (PyObject_GetBuffer(args[0], &cv, PyBUF_C_CONTIGUOUS) < 0)
        return NULL;
    if (cv.itemsize != 4 && cv.itemsize != 8) {
        PyBuffer_Release(&cv);
        PyErr_SetString(PyExc_TypeError, "stats(): counts must be 4- or 8-byte integers");
        return NULL;
    }
    Py_ssize_t n = cv.len / cv.itemsize;
    const uint32_t *c32 = (const uint32_t *)cv.buf;
    const uint64_t *c64 = (const uint64_t *)cv.buf;
#define COUNT(i) (cv.itemsize == 4 ? (uint64_t)c32[i] : c64[i])
    uint64_t total = 0;
    for (Py_ssize_t i = 0; i < n; i++)
        total += COUNT(i);
    PyObject *values = PyList_New(nq);
    if (values == NULL) {
        PyBuffer_Release(&cv);
        return NULL;
    }
    uint64_t targets[16];
    int64_t found[16];
    for (Py_ssize_t j = 0; j < nq; j++) {
        double t = qv[j] * (double)total + 0.5;
        uint64_t target = t < 1.0 ? 1 : (uint64_t)t; /* int() truncates; t >= 1 here */
        targets[j] = target;
        found[j] = -1;
    }
    double weighted = 0.0;
    uint64_t running = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        uint64_t count = COUNT(i);
        if (!count)
            continue;
        long long bucket = ((long long)i >> half_mag) - 1;
        long long sub = ((long long)i & (half - 1)) + half;
        if (bucket < 0) {
            sub -= half;
            bucket = 0;
        }
        double low = (double)((unsigned long long)sub << (bucket + unit));
        double size = (double)(1ULL << (bucket + unit));
        weighted += (double)count * (low + size / 2.0);
        running += count;
        for (Py_ssize_t j = 0; j < nq; j++)
            if (found[j] < 0 && running >= targets[j])
                found[j] = i;
    }
#undef COUNT
    PyBuffer_Release(&cv);
    for (Py_ssize_t j = 0; j < nq; j++) {
        Py_ssize_t i = found[j] < 0 ? (n ? n - 1 : 0) : (Py_ssize_t)found[j];
        long long bucket = ((long long)i >> half_mag) - 1;
        long long sub = ((long long)i & (half - 1)) + half;
        if (bucket < 0) {
            sub -= half;
            bucket = 0;
        }
        unsigned long long high = ((unsigned long long)sub << (bucket + unit)) + (1ULL << (bucket + unit)) - 1;
        PyObject *v = PyLong_FromUnsignedLongLong(high);
        if (v == NULL) {
            Py_DECREF(values);
            return NULL;
        }
        PyList_SET_ITEM(values, j, v);
    }
    return Py_BuildValue("(KdN)", (unsigned long long)total, total ? weighted / (double)total : 0.0, values);
}

/* -- Samples: the hot path's sample buffer ---------------------------------------------
 *
 * A Recorder's samples wait here until they are folded. add() is one C call, against
 * ~180 ns for a Python method that appends to an array('q') and checks its length
 * (two samples per quote frame). The buffer is bounded: the add that fills it calls
 * on_full() (the Recorder's fold), which reads it through the buffer protocol and
 * clears it. It grows by doubling up to its capacity, so an idle recorder stays small. */

typedef struct {
    PyObject_HEAD
    long long *data;
    Py_ssize_t n, alloc, capacity;
    Py_ssize_t exports; /* buffer views open: no resizing meanwhile */
    PyObject *on_full;
} Samples;

static int
samples_grow(Samples *self)
{
    Py_ssize_t alloc = self->alloc ? Py_MIN(2 * self->alloc, self->capacity) : Py_MIN(64, self->capacity);
    long long *data = PyMem_Realloc(self->data, (size_t)alloc * sizeof(long long));
    if (data == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    self->data = data;
    self->alloc = alloc;
    return 0;
}

static PyObject *
samples_add(Samples *self, PyObject *value)
{
    long long v = PyLong_AsLongLong(value);
    if (v == -1 && PyErr_Occurred())
        return NULL;
    if (self->n >= self->alloc) {
        if (self->exports) {
            PyErr_SetString(PyExc_BufferError, "Samples: cannot add while a view is open");
            return NULL;
        }
        if (self->n >= self->capacity) { /* on_full did not drain it: make room by calling it again */
            PyObject *r = PyObject_CallNoArgs(self->on_full);
            if (r == NULL)
                return NULL;
            Py_DECREF(r);
            if (self->n >= self->capacity) {
                PyErr_SetString(PyExc_RuntimeError, "Samples: on_full left the buffer full");
                return NULL;
            }
        }
        if (self->n >= self->alloc && samples_grow(self) < 0)
            return NULL;
    }
    self->data[self->n++] = v;
    if (self->n >= self->capacity) {
        PyObject *r = PyObject_CallNoArgs(self->on_full);
        if (r == NULL)
            return NULL;
        Py_DECREF(r);
    }
    Py_RETURN_NONE;
}

static PyObject *
samples_clear(Samples *self, PyObject *Py_UNUSED(ignored))
{
    if (self->exports) {
        PyErr_SetString(PyExc_BufferError, "Samples: cannot clear while a view is open");
        return NULL;
    }
    self->n = 0;
    Py_RETURN_NONE;
}

static PyObject *
samples_tolist(Samples *self, PyObject *Py_UNUSED(ignored))
{
    PyObject *out = PyList_New(self->n);
    if (out == NULL)
        return NULL;
    for (Py_ssize_t i = 0; i < self->n; i++) {
        PyObject *v = PyLong_FromLongLong(self->data[i]);
        if (v == NULL) {
            Py_DECREF(out);
            return NULL;
        }
        PyList_SET_ITEM(out, i, v);
    }
    return out;
}

static Py_ssize_t
samples_len(Samples *self)
{
    return self->n;
}

static PyObject *
samples_item(Samples *self, Py_ssize_t i)
{
    if (i < 0 || i >= self->n) {
        PyErr_SetString(PyExc_IndexError, "Samples index out of range");
        return NULL;
    }
    return PyLong_FromLongLong(self->data[i]);
}

static int
samples_getbuffer(Samples *self, Py_buffer *view, int flags)
{
    static long long empty;
    if (PyBuffer_FillInfo(view, (PyObject *)self, self->data ? (void *)self->data : (void *)&empty,
                          self->n * (Py_ssize_t)sizeof(long long), 1, flags) < 0)
        return -1;
    view->itemsize = sizeof(long long);
    view->format = (flags & PyBUF_FORMAT) ? "q" : NULL;
    if (flags & PyBUF_ND) {
        view->ndim = 1;
        view->shape = &self->n;
    }
    if ((flags & PyBUF_STRIDES) == PyBUF_STRIDES)
        view->strides = &view->itemsize;
    self->exports++;
    return 0;
}

static void
samples_releasebuffer(Samples *self, Py_buffer *Py_UNUSED(view))
{
    self->exports--;
}

static PyObject *
samples_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    Py_ssize_t capacity;
    PyObject *on_full;
    static char *kwlist[] = {"capacity", "on_full", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "nO", kwlist, &capacity, &on_full))
        return NULL;
    if (capacity < 1 || !PyCallable_Check(on_full)) {
        PyErr_SetString(PyExc_ValueError, "Samples(capacity >= 1, on_full: callable)");
        return NULL;
    }
    Samples *self = (Samples *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    self->capacity = capacity;
    Py_INCREF(on_full);
    self->on_full = on_full;
    return (PyObject *)self;
}

static int
samples_traverse(Samples *self, visitproc visit, void *arg)
{
    Py_VISIT(self->on_full);
    return 0;
}

static int
samples_tp_clear(Samples *self)
{
    Py_CLEAR(self->on_full);
    return 0;
}

static void
samples_dealloc(Samples *self)
{
    PyObject_GC_UnTrack(self);
    samples_tp_clear(self);
    PyMem_Free(self->data);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMethodDef samples_methods[] = {
    {"add", (PyCFunction)samples_add, METH_O, "add(value): append one int64 sample; a full buffer calls on_full()."},
    {"clear", (PyCFunction)samples_clear, METH_NOARGS, "clear(): drop every sample."},
    {"tolist", (PyCFunction)samples_tolist, METH_NOARGS, "tolist() -> the samples as a list of ints."},
    {NULL, NULL, 0, NULL},
};

static PySequenceMethods samples_as_sequence = {
    .sq_length = (lenfunc)samples_len,
    .sq_item = (ssizeargfunc)samples_item,
};

static PyBufferProcs samples_as_buffer = {
    .bf_getbuffer = (getbufferproc)samples_getbuffer,
    .bf_releasebuffer = (releasebufferproc)samples_releasebuffer,
};

static PyTypeObject SamplesType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "arbwire._fold.Samples",
    .tp_doc = "Samples(capacity, on_full): a bounded int64 sample buffer; see the module source.",
    .tp_basicsize = sizeof(Samples),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_new = samples_new,
    .tp_dealloc = (destructor)samples_dealloc,
    .tp_traverse = (traverseproc)samples_traverse,
    .tp_clear = (inquiry)samples_tp_clear,
    .tp_methods = samples_methods,
    .tp_as_sequence = &samples_as_sequence,
    .tp_as_buffer = &samples_as_buffer,
};

static PyMethodDef fold_methods[] = {
    {"fold", (PyCFunction)(void (*)(void))fold, METH_FASTCALL,
     "Fold int64 samples into HdrHistogram counts; see the module source."},
    {"stats", (PyCFunction)(void (*)(void))stats, METH_FASTCALL,
     "Count, mean and quantile values of HdrHistogram counts; see the module source."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef fold_module = {
    PyModuleDef_HEAD_INIT, "arbwire._fold", "Latency sample folding in C.", 0, fold_methods,
};

PyMODINIT_FUNC
PyInit__fold(void)
{
    if (PyType_Ready(&SamplesType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&fold_module);
    if (m == NULL)
        return NULL;
    if (PyModule_AddType(m, &SamplesType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
