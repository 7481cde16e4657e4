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
    return PyModule_Create(&fold_module);
}
