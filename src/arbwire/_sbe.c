/* arbwire._sbe: Binance SBE market-data messages (schema 1) decoded in one C call.
 *
 * The reference is arbwire.venues.binance_sbe.decode_py: the same layout read with
 * `struct`, the same results and the same ValueError texts (tests compare the two on
 * every real frame and on arbitrary bytes). Why C: a message's decimals arrive as
 * mantissa x 10^exponent, and the book, the quotes and the recordings keep the venue's
 * decimal text; building that text in Python costs ~0.5 us a number, 30 us for a
 * 30-level diff, which would make the binary feed slower than msgspec on the JSON one.
 *
 * decode(buf) -> one tuple per template:
 *   10000 trades:     (10000, event_us, transact_us, [(id, price, qty, buyer_is_maker), ...], symbol)
 *   10001 best b/a:   (10001, event_us, update_id, bid, bid_qty, ask, ask_qty, symbol)
 *   10002 depth20:    (10002, event_us, update_id, bids, asks, symbol)
 *   10003 depth diff: (10003, event_us, first_id, last_id, bids, asks, symbol)
 * with bids/asks lists of (price text, qty text). Every length is checked against the
 * buffer; fields are read at the schema's offsets and each block is skipped by its own
 * blockLength, so later schema versions that append fields still decode.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#define SCHEMA_ID 1
#define HEADER_LEN 8

enum { T_TRADES = 10000, T_BEST = 10001, T_DEPTH20 = 10002, T_DIFF = 10003 };

static inline uint16_t rd_u16(const unsigned char *p) { return (uint16_t)(p[0] | (p[1] << 8)); }

static inline uint32_t
rd_u32(const unsigned char *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

static inline int64_t
rd_i64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return (int64_t)v;
}

/* "need N bytes at offset O, the message has L" as the Python reference words it */
static PyObject *
truncated(const char *what, Py_ssize_t at, Py_ssize_t need, Py_ssize_t len)
{
    PyErr_Format(PyExc_ValueError, "truncated %s: needs %zd bytes at offset %zd, message has %zd",
                 what, need, at, len);
    return NULL;
}

/* The decimal text of mantissa * 10**exponent, as Binance writes it ("2600.12000000"). */
static PyObject *
decimal_text(int64_t m, int e)
{
    char digits[24], buf[96];
    if (m == INT64_MIN) {
        PyErr_SetString(PyExc_ValueError, "null decimal");
        return NULL;
    }
    if (e > 18 || e < -30) {
        PyErr_Format(PyExc_ValueError, "decimal exponent %d out of range", e);
        return NULL;
    }
    int neg = m < 0;
    uint64_t u = neg ? (uint64_t)(-(m + 1)) + 1 : (uint64_t)m;
    int nd = 0;
    do {
        digits[nd++] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    char *p = buf;
    if (neg)
        *p++ = '-';
    if (e >= 0) {
        for (int i = nd - 1; i >= 0; i--)
            *p++ = digits[i];
        if (!(nd == 1 && digits[0] == '0'))
            for (int i = 0; i < e; i++)
                *p++ = '0';
    }
    else {
        int frac = -e, whole = nd - frac;
        if (whole <= 0) {
            *p++ = '0';
            *p++ = '.';
            for (int i = 0; i < -whole; i++)
                *p++ = '0';
            for (int i = nd - 1; i >= 0; i--)
                *p++ = digits[i];
        }
        else {
            for (int i = nd - 1; i >= frac; i--)
                *p++ = digits[i];
            *p++ = '.';
            for (int i = frac - 1; i >= 0; i--)
                *p++ = digits[i];
        }
    }
    Py_ssize_t len = p - buf;
    PyObject *text = PyUnicode_New(len, 127);
    if (text == NULL)
        return NULL;
    memcpy(PyUnicode_1BYTE_DATA(text), buf, (size_t)len);
    return text;
}

/* One message, its structure checked: every block inside the buffer, the symbol last. */
typedef struct {
    int template_id;
    const unsigned char *root;
    int pe, qe; /* price and qty exponents */
    const unsigned char *g[2]; /* group entries: trades, or bids and asks */
    Py_ssize_t g_block[2], g_count[2];
    const unsigned char *sym;
    Py_ssize_t sym_len;
} sbe_msg;

/* A depth group (u16 numInGroup) at *pos into m->g[i]; 0, or -1 with ValueError. */
static int
parse_levels(const unsigned char *b, Py_ssize_t len, Py_ssize_t *pos, sbe_msg *m, int i, const char *what)
{
    Py_ssize_t at = *pos;
    if (len - at < 4)
        return truncated(what, at, 4, len), -1;
    Py_ssize_t block = rd_u16(b + at), count = rd_u16(b + at + 2);
    at += 4;
    if (block < 16) {
        PyErr_Format(PyExc_ValueError, "%s entries of %zd bytes, expected at least 16", what, block);
        return -1;
    }
    if (len - at < block * count)
        return truncated(what, at, block * count, len), -1;
    m->g[i] = b + at;
    m->g_block[i] = block;
    m->g_count[i] = count;
    *pos = at + block * count;
    return 0;
}

static int
parse(const unsigned char *b, Py_ssize_t len, sbe_msg *m)
{
    if (len < HEADER_LEN)
        return truncated("header", 0, HEADER_LEN, len), -1;
    Py_ssize_t block = rd_u16(b);
    int template_id = rd_u16(b + 2), schema = rd_u16(b + 4);
    if (schema != SCHEMA_ID) {
        PyErr_Format(PyExc_ValueError, "schema id %d, expected %d", schema, SCHEMA_ID);
        return -1;
    }
    Py_ssize_t minimum, exps;
    switch (template_id) {
    case T_TRADES: minimum = 18; exps = 16; break;
    case T_BEST: minimum = 50; exps = 16; break;
    case T_DEPTH20: minimum = 18; exps = 16; break;
    case T_DIFF: minimum = 26; exps = 24; break;
    default:
        PyErr_Format(PyExc_ValueError, "unknown template id %d", template_id);
        return -1;
    }
    if (block < minimum) {
        PyErr_Format(PyExc_ValueError, "template %d root block of %zd bytes, expected at least %zd",
                     template_id, block, minimum);
        return -1;
    }
    if (len - HEADER_LEN < block)
        return truncated("root block", HEADER_LEN, block, len), -1;
    m->template_id = template_id;
    m->root = b + HEADER_LEN;
    m->pe = (int8_t)m->root[exps];
    m->qe = (int8_t)m->root[exps + 1];
    Py_ssize_t pos = HEADER_LEN + block;
    if (template_id == T_TRADES) {
        if (len - pos < 6)
            return truncated("trades", pos, 6, len), -1;
        Py_ssize_t entry = rd_u16(b + pos), count = (Py_ssize_t)rd_u32(b + pos + 2);
        pos += 6;
        if (entry < 25) {
            PyErr_Format(PyExc_ValueError, "trades entries of %zd bytes, expected at least 25", entry);
            return -1;
        }
        if ((len - pos) / entry < count)
            return truncated("trades", pos, entry * count, len), -1;
        m->g[0] = b + pos;
        m->g_block[0] = entry;
        m->g_count[0] = count;
        pos += entry * count;
    }
    else if (template_id != T_BEST) {
        if (parse_levels(b, len, &pos, m, 0, "bids") < 0 || parse_levels(b, len, &pos, m, 1, "asks") < 0)
            return -1;
    }
    if (len - pos < 1)
        return truncated("symbol", pos, 1, len), -1;
    Py_ssize_t n = b[pos];
    if (len - pos - 1 < n)
        return truncated("symbol", pos + 1, n, len), -1;
    if (len - pos - 1 > n) {
        PyErr_Format(PyExc_ValueError, "%zd bytes after the symbol", len - pos - 1 - n);
        return -1;
    }
    m->sym = b + pos + 1;
    m->sym_len = n;
    int bad = m->pe > 18 || m->pe < -30 ? m->pe : (m->qe > 18 || m->qe < -30 ? m->qe : 0);
    if (bad) {
        PyErr_Format(PyExc_ValueError, "decimal exponent %d out of range", bad);
        return -1;
    }
    return 0;
}

/* Texts already built, by (mantissa, exponent): prices repeat from message to message
 * (4k distinct prices in the 107k levels of the real ETHUSDT capture) and half of all
 * diff levels carry the same zero size, so most texts are found here for an incref
 * instead of being built. One table per session, of fixed size: a slot is overwritten
 * on collision, so memory stays bounded. */
#define TEXT_CACHE 4096 /* a power of two */

typedef struct {
    int64_t m;
    int e;
    PyObject *text;
} text_slot;

static PyObject *
text_of(text_slot *cache, int64_t m, int e)
{
    if (cache == NULL)
        return decimal_text(m, e);
    uint64_t h = ((uint64_t)m ^ ((uint64_t)(uint8_t)e << 56)) * 0x9E3779B97F4A7C15ull;
    text_slot *slot = &cache[h >> (64 - 12)];
    if (slot->text != NULL && slot->m == m && slot->e == e) {
        Py_INCREF(slot->text);
        return slot->text;
    }
    PyObject *text = decimal_text(m, e);
    if (text == NULL)
        return NULL;
    Py_INCREF(text);
    Py_XSETREF(slot->text, text);
    slot->m = m;
    slot->e = e;
    return text;
}

/* Group i of a depth message as a list of (price text, qty text). */
static PyObject *
levels(const sbe_msg *m, int i, text_slot *cache)
{
    Py_ssize_t count = m->g_count[i], block = m->g_block[i];
    const unsigned char *e = m->g[i];
    PyObject *out = PyList_New(count);
    if (out == NULL)
        return NULL;
    for (Py_ssize_t k = 0; k < count; k++, e += block) {
        PyObject *px = text_of(cache, rd_i64(e), m->pe);
        PyObject *qty = px ? text_of(cache, rd_i64(e + 8), m->qe) : NULL;
        PyObject *level = qty ? PyTuple_New(2) : NULL;
        if (level == NULL) {
            Py_XDECREF(px);
            Py_XDECREF(qty);
            Py_DECREF(out);
            return NULL;
        }
        PyTuple_SET_ITEM(level, 0, px);
        PyTuple_SET_ITEM(level, 1, qty);
        PyList_SET_ITEM(out, k, level);
    }
    return out;
}

/* The best bid/ask decimals as four new texts in out[]; 0, or -1 (nothing left owned). */
static int
best_texts(const sbe_msg *m, PyObject **out, text_slot *cache)
{
    for (int k = 0; k < 4; k++) {
        out[k] = text_of(cache, rd_i64(m->root + 18 + 8 * k), k % 2 ? m->qe : m->pe);
        if (out[k] == NULL) {
            while (k--)
                Py_DECREF(out[k]);
            return -1;
        }
    }
    return 0;
}

/* Trade k of a trades message: (id, price text, qty text, buyer is maker). */
static PyObject *
trade_item(const sbe_msg *m, Py_ssize_t k)
{
    const unsigned char *e = m->g[0] + k * m->g_block[0];
    PyObject *px = decimal_text(rd_i64(e + 8), m->pe);
    if (px == NULL)
        return NULL;
    PyObject *qty = decimal_text(rd_i64(e + 16), m->qe);
    if (qty == NULL) {
        Py_DECREF(px);
        return NULL;
    }
    return Py_BuildValue("(LNNO)", (long long)rd_i64(e), px, qty, e[24] ? Py_True : Py_False);
}

static PyObject *
decode_buffer(const unsigned char *b, Py_ssize_t len)
{
    sbe_msg m;
    if (parse(b, len, &m) < 0)
        return NULL;
    const unsigned char *r = m.root;
    PyObject *sym = PyUnicode_DecodeUTF8((const char *)m.sym, m.sym_len, "strict");
    if (sym == NULL)
        return NULL;
    if (m.template_id == T_BEST) {
        PyObject *t[4];
        if (best_texts(&m, t, NULL) < 0) {
            Py_DECREF(sym);
            return NULL;
        }
        return Py_BuildValue("(iLLNNNNN)", T_BEST, (long long)rd_i64(r), (long long)rd_i64(r + 8),
                             t[0], t[1], t[2], t[3], sym);
    }
    if (m.template_id == T_TRADES) {
        PyObject *trades = PyList_New(m.g_count[0]);
        if (trades == NULL) {
            Py_DECREF(sym);
            return NULL;
        }
        for (Py_ssize_t k = 0; k < m.g_count[0]; k++) {
            PyObject *item = trade_item(&m, k);
            if (item == NULL) {
                Py_DECREF(trades);
                Py_DECREF(sym);
                return NULL;
            }
            PyList_SET_ITEM(trades, k, item);
        }
        return Py_BuildValue("(iLLNN)", T_TRADES, (long long)rd_i64(r), (long long)rd_i64(r + 8), trades, sym);
    }
    PyObject *bids = levels(&m, 0, NULL);
    PyObject *asks = bids ? levels(&m, 1, NULL) : NULL;
    if (asks == NULL) {
        Py_XDECREF(bids);
        Py_DECREF(sym);
        return NULL;
    }
    if (m.template_id == T_DIFF)
        return Py_BuildValue("(iLLLNNN)", T_DIFF, (long long)rd_i64(r), (long long)rd_i64(r + 8),
                             (long long)rd_i64(r + 16), bids, asks, sym);
    return Py_BuildValue("(iLLNNN)", T_DEPTH20, (long long)rd_i64(r), (long long)rd_i64(r + 8), bids, asks, sym);
}

/* -- Events: the session's whole per-message path --------------------------------------
 * Events(venue, symbols, seen, Quote, BookUpdate, Trade, BUY, SELL), then
 * events(buf, recv_ns) -> [event, ...], or None for a symbol not in `symbols` (wire name
 * as bytes -> our symbol) or a template the session does not route (depth20). The events
 * are the ones arbwire.venues.binance_sbe.BinanceSbeSession._events_py builds from
 * decode_py; the symbol goes into `seen`, as the JSON session does. */
typedef struct {
    PyObject_HEAD
    PyObject *venue, *symbols, *seen, *quote, *book_update, *trade, *buy, *sell, *minus_one;
    text_slot *texts; /* TEXT_CACHE slots */
} EventsObject;

static void
Events_dealloc(EventsObject *self)
{
    Py_XDECREF(self->venue);
    Py_XDECREF(self->symbols);
    Py_XDECREF(self->seen);
    Py_XDECREF(self->quote);
    Py_XDECREF(self->book_update);
    Py_XDECREF(self->trade);
    Py_XDECREF(self->buy);
    Py_XDECREF(self->sell);
    Py_XDECREF(self->minus_one);
    if (self->texts != NULL) {
        for (int i = 0; i < TEXT_CACHE; i++)
            Py_XDECREF(self->texts[i].text);
        PyMem_Free(self->texts);
    }
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *
Events_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *names[] = {"venue", "symbols", "seen", "Quote", "BookUpdate", "Trade", "BUY", "SELL", NULL};
    PyObject *o[8];
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "UO!O!OOOOO", names, &o[0], &PyDict_Type, &o[1], &PySet_Type,
                                     &o[2], &o[3], &o[4], &o[5], &o[6], &o[7]))
        return NULL;
    EventsObject *self = (EventsObject *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    PyObject **slots[8] = {&self->venue, &self->symbols, &self->seen, &self->quote,
                           &self->book_update, &self->trade, &self->buy, &self->sell};
    for (int i = 0; i < 8; i++) {
        Py_INCREF(o[i]);
        *slots[i] = o[i];
    }
    self->minus_one = PyLong_FromLong(-1);
    self->texts = PyMem_Calloc(TEXT_CACHE, sizeof(text_slot));
    if (self->minus_one == NULL || self->texts == NULL) {
        Py_DECREF(self);
        return NULL;
    }
    return (PyObject *)self;
}

static PyObject *
one(PyObject *event)
{
    if (event == NULL)
        return NULL;
    PyObject *out = PyList_New(1);
    if (out == NULL) {
        Py_DECREF(event);
        return NULL;
    }
    PyList_SET_ITEM(out, 0, event);
    return out;
}

static PyObject *
build_events(EventsObject *self, const sbe_msg *m, PyObject *recv)
{
    PyObject *key = PyBytes_FromStringAndSize((const char *)m->sym, m->sym_len);
    if (key == NULL)
        return NULL;
    PyObject *symbol = PyDict_GetItemWithError(self->symbols, key); /* borrowed */
    Py_DECREF(key);
    if (symbol == NULL) {
        if (PyErr_Occurred())
            return NULL;
        Py_RETURN_NONE;
    }
    if (m->template_id == T_DEPTH20)
        Py_RETURN_NONE;
    if (PySet_Add(self->seen, symbol) < 0)
        return NULL;
    const unsigned char *r = m->root;
    int64_t when = rd_i64(r + (m->template_id == T_TRADES ? 8 : 0));
    PyObject *ts;
    if (when <= INT64_MAX / 1000 && when >= INT64_MIN / 1000) {
        ts = PyLong_FromLongLong((long long)when * 1000);
    }
    else { /* a time no venue sends, but the event says what the message said */
        PyObject *us = PyLong_FromLongLong((long long)when), *k = PyLong_FromLong(1000);
        ts = us && k ? PyNumber_Multiply(us, k) : NULL;
        Py_XDECREF(us);
        Py_XDECREF(k);
    }
    if (ts == NULL)
        return NULL;
    PyObject *out = NULL;
    if (m->template_id == T_BEST) {
        PyObject *t[4];
        PyObject *uid = PyLong_FromLongLong((long long)rd_i64(r + 8));
        if (uid != NULL && best_texts(m, t, self->texts) == 0) {
            PyObject *a[9] = {self->venue, symbol, t[0], t[1], t[2], t[3], uid, ts, recv};
            out = one(PyObject_Vectorcall(self->quote, a, 9, NULL));
            for (int k = 0; k < 4; k++)
                Py_DECREF(t[k]);
        }
        Py_XDECREF(uid);
    }
    else if (m->template_id == T_DIFF) {
        PyObject *bids = levels(m, 0, self->texts);
        PyObject *asks = bids ? levels(m, 1, self->texts) : NULL;
        PyObject *first = asks ? PyLong_FromLongLong((long long)rd_i64(r + 8)) : NULL;
        PyObject *last = first ? PyLong_FromLongLong((long long)rd_i64(r + 16)) : NULL;
        if (last != NULL) {
            PyObject *a[11] = {self->venue, symbol, bids, asks, first, last, self->minus_one, Py_False, Py_None, ts, recv};
            out = one(PyObject_Vectorcall(self->book_update, a, 11, NULL));
        }
        Py_XDECREF(bids);
        Py_XDECREF(asks);
        Py_XDECREF(first);
        Py_XDECREF(last);
    }
    else { /* trades: one Trade per entry */
        Py_ssize_t count = m->g_count[0];
        out = PyList_New(count);
        for (Py_ssize_t k = 0; out != NULL && k < count; k++) {
            const unsigned char *e = m->g[0] + k * m->g_block[0];
            PyObject *px = text_of(self->texts, rd_i64(e + 8), m->pe);
            PyObject *qty = px ? text_of(self->texts, rd_i64(e + 16), m->qe) : NULL;
            PyObject *tid = qty ? PyUnicode_FromFormat("%lld", (long long)rd_i64(e)) : NULL;
            PyObject *event = NULL;
            if (tid != NULL) {
                PyObject *a[8] = {self->venue, symbol, px, qty, e[24] ? self->sell : self->buy, tid, ts, recv};
                event = PyObject_Vectorcall(self->trade, a, 8, NULL);
            }
            Py_XDECREF(px);
            Py_XDECREF(qty);
            Py_XDECREF(tid);
            if (event == NULL)
                Py_CLEAR(out);
            else
                PyList_SET_ITEM(out, k, event);
        }
    }
    Py_DECREF(ts);
    return out;
}

static PyObject *
Events_events(EventsObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "events(buf, recv_ns) takes two arguments");
        return NULL;
    }
    sbe_msg m;
    if (PyBytes_CheckExact(args[0])) {
        if (parse((const unsigned char *)PyBytes_AS_STRING(args[0]), PyBytes_GET_SIZE(args[0]), &m) < 0)
            return NULL;
        return build_events(self, &m, args[1]);
    }
    Py_buffer view;
    if (PyObject_GetBuffer(args[0], &view, PyBUF_SIMPLE) < 0)
        return NULL;
    PyObject *out = parse((const unsigned char *)view.buf, view.len, &m) < 0 ? NULL : build_events(self, &m, args[1]);
    PyBuffer_Release(&view);
    return out;
}

static PyMethodDef Events_methods[] = {
    {"events", (PyCFunction)(void (*)(void))Events_events, METH_FASTCALL,
     "events(buf, recv_ns) -> list of events, or None (symbol not subscribed, depth20)"},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject EventsType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "arbwire._sbe.Events",
    .tp_basicsize = sizeof(EventsObject),
    .tp_dealloc = (destructor)Events_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "One session's SBE messages straight into its events.",
    .tp_methods = Events_methods,
    .tp_new = Events_new,
};

static PyObject *
sbe_decode(PyObject *module, PyObject *arg)
{
    if (PyBytes_CheckExact(arg))
        return decode_buffer((const unsigned char *)PyBytes_AS_STRING(arg), PyBytes_GET_SIZE(arg));
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0)
        return NULL;
    PyObject *out = decode_buffer((const unsigned char *)view.buf, view.len);
    PyBuffer_Release(&view);
    return out;
}

static PyObject *
sbe_decimal_text(PyObject *module, PyObject *args)
{
    long long m;
    int e;
    if (!PyArg_ParseTuple(args, "Li", &m, &e))
        return NULL;
    return decimal_text((int64_t)m, e);
}

static PyMethodDef sbe_methods[] = {
    {"decode", sbe_decode, METH_O, "decode(buf) -> tuple: one Binance SBE market-data message (schema 1)."},
    {"decimal_text", sbe_decimal_text, METH_VARARGS, "decimal_text(mantissa, exponent) -> str"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef sbe_module = {
    PyModuleDef_HEAD_INIT, "arbwire._sbe", "Binance SBE market-data decoding in C.", 0, sbe_methods,
};

PyMODINIT_FUNC
PyInit__sbe(void)
{
    if (PyType_Ready(&EventsType) < 0)
        return NULL;
    PyObject *module = PyModule_Create(&sbe_module);
    if (module == NULL)
        return NULL;
    Py_INCREF(&EventsType);
    if (PyModule_AddObject(module, "Events", (PyObject *)&EventsType) < 0) {
        Py_DECREF(&EventsType);
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
