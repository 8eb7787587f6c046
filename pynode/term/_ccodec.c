/*
 * pynode.term._ccodec: the compiled twin of pynode.term._codec_py.
 *
 * The same API and the same behaviour as the pure-Python codec: the same bytes out of
 * encode, the same values (of the very same Python classes, imported from
 * pynode.term.types at module init) out of decode, and the same exceptions (DecodeError
 * with its offset, EncodeError) with the same messages.  The tests in tests/term run
 * against both; tests/term/test_ccodec.py compares the two directly.
 *
 * Safety rules kept throughout:
 *  - every length read from the input is checked against what is left of the input
 *    before anything is allocated for it, and nothing is read past the end;
 *  - the input is read through the buffer protocol (bytes directly, anything else as a
 *    locked C-contiguous view, released on every path);
 *  - nesting is bounded three ways: the caller's max_depth (checked exactly where the
 *    Python codec checks it), Py_EnterRecursiveCall (the interpreter's recursion limit,
 *    which is what bounds the Python codec too, counted once every eight levels), and
 *    MAX_NEST, a hard cap on this module's own C recursion whatever the recursion limit;
 *  - items of mutable containers (and fields read from records) are held by a reference
 *    of ours while they are encoded, since conversions of builtin subclasses can run
 *    arbitrary Python code.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <zlib.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <string.h>

/* ---------------------------------------------------------------------------------------- */
/* tags */

#define VERSION 131
#define NEW_FLOAT_EXT 70
#define BIT_BINARY_EXT 77
#define COMPRESSED 80
#define ATOM_CACHE_REF 82

/* The pure codec's DEFAULT_MAX_DEPTH and DEFAULT_MAX_UNCOMPRESSED (a test checks they agree) */
#define DEFAULT_MAX_DEPTH 512
#define DEFAULT_MAX_UNCOMPRESSED (256LL * 1024 * 1024)
#define NEW_PID_EXT 88
#define NEW_PORT_EXT 89
#define NEWER_REFERENCE_EXT 90
#define SMALL_INTEGER_EXT 97
#define INTEGER_EXT 98
#define FLOAT_EXT 99
#define ATOM_EXT 100
#define REFERENCE_EXT 101
#define PORT_EXT 102
#define PID_EXT 103
#define SMALL_TUPLE_EXT 104
#define LARGE_TUPLE_EXT 105
#define NIL_EXT 106
#define STRING_EXT 107
#define LIST_EXT 108
#define BINARY_EXT 109
#define SMALL_BIG_EXT 110
#define LARGE_BIG_EXT 111
#define NEW_FUN_EXT 112
#define EXPORT_EXT 113
#define NEW_REFERENCE_EXT 114
#define SMALL_ATOM_EXT 115
#define MAP_EXT 116
#define ATOM_UTF8_EXT 118
#define SMALL_ATOM_UTF8_EXT 119
#define V4_PORT_EXT 120
#define LOCAL_EXT 121

/* Hard cap on this module's own recursion (containers, funs, compressed terms), whatever
 * sys.setrecursionlimit says: a level costs about 300 bytes of C stack at most (gcc -O2,
 * x86-64), so this stays under 2 MB.  Past it: RecursionError, which encode and decode
 * turn into "nested too deeply" like the Python codec's own RecursionError. */
#define MAX_NEST 5000

/* max_depth is clamped into this range, so that decrementing it never overflows. */
#define DEPTH_MAX ((long long)1 << 60)
#define DEPTH_MIN (-((long long)1 << 60))

#if defined(__GNUC__) || defined(__clang__)
#define NOINLINE __attribute__((noinline))
#else
#define NOINLINE
#endif

#if PY_VERSION_HEX >= 0x030B0000
#define PACK8(x, p) PyFloat_Pack8((x), (char *)(p), 0)
#define UNPACK8(p) PyFloat_Unpack8((const char *)(p), 0)
#else
#define PACK8(x, p) _PyFloat_Pack8((x), (unsigned char *)(p), 0)
#define UNPACK8(p) _PyFloat_Unpack8((const unsigned char *)(p), 0)
#endif

/* ---------------------------------------------------------------------------------------- */
/* module globals, set once at init */

static PyTypeObject *T_Atom, *T_Pid, *T_Port, *T_Ref, *T_Improper, *T_Bits, *T_Fun,
    *T_Export, *T_FList, *T_FMap, *T_Struct;
static PyObject *O_check_dups; /* _codec_py's, imported when first needed (see check_dups) */
static PyObject *O_freeze, *O_ErlFloatKey, *E_Decode, *E_Encode, *E_struct, *E_zlib;
static PyObject *O_atom_true, *O_atom_false, *O_struct_key;
static PyObject *O_default_max_depth, *O_default_max_unc;
static PyObject *S_items, *O_struct_pack;

/* A slot of one of the record classes: its offset in the object, and its name for the
 * generic getattr fallback. */
typedef struct {
    Py_ssize_t off;
    PyObject *name;
} Field;

static Field F_pid_node, F_pid_id, F_pid_serial, F_pid_creation;
static Field F_port_node, F_port_id, F_port_creation;
static Field F_ref_node, F_ref_creation, F_ref_ids;
static Field F_il_items, F_il_tail;
static Field F_bs_data, F_bs_bits;
static Field F_fun_module, F_fun_arity, F_fun_uniq, F_fun_index, F_fun_old_index,
    F_fun_old_uniq, F_fun_pid, F_fun_free_vars;
static Field F_ex_module, F_ex_function, F_ex_arity;
static Field F_fm_d, F_fm_h;

/* A new reference to field f of o: straight from the slot when o is exactly of type t,
 * else (or when the slot is empty) by getattr, which raises what Python would. */
static PyObject *
field(PyObject *o, PyTypeObject *t, const Field *f)
{
    if (Py_TYPE(o) == t) {
        PyObject *v = *(PyObject **)((char *)o + f->off);
        if (v != NULL) {
            Py_INCREF(v);
            return v;
        }
    }
    return PyObject_GetAttr(o, f->name);
}

#define SET_SLOT(o, f, v) (*(PyObject **)((char *)(o) + (f).off) = (v))

/* ---------------------------------------------------------------------------------------- */
/* small helpers */

static inline uint16_t
be16(const unsigned char *p)
{
    return (uint16_t)((p[0] << 8) | p[1]);
}

static inline uint32_t
be32(const unsigned char *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

static inline uint64_t
be64(const unsigned char *p)
{
    return ((uint64_t)be32(p) << 32) | be32(p + 4);
}

/* The value of an int (any int subclass) when it fits in one digit, without a call. */
static inline int
long_small(PyObject *o, long *out)
{
#if PY_VERSION_HEX >= 0x030C0000
    if (PyUnstable_Long_IsCompact((PyLongObject *)o)) {
        *out = (long)PyUnstable_Long_CompactValue((PyLongObject *)o);
        return 1;
    }
    return 0;
#else
    Py_ssize_t s = Py_SIZE(o);
    if (s == 0) {
        *out = 0;
        return 1;
    }
    if (s == 1) {
        *out = (long)((PyLongObject *)o)->ob_digit[0];
        return 1;
    }
    if (s == -1) {
        *out = -(long)((PyLongObject *)o)->ob_digit[0];
        return 1;
    }
    return 0;
#endif
}

/* One more level of this module's recursion.  Every eighth level also counts against the
 * interpreter's recursion limit (Py_EnterRecursiveCall costs as much as decoding a small
 * list, so it is not paid on every level); MAX_NEST bounds the C stack either way. */
static int
nest_enter(int *nest)
{
    if (*nest >= MAX_NEST) {
        PyErr_SetString(PyExc_RecursionError,
                        "maximum recursion depth exceeded while handling an Erlang term");
        return -1;
    }
    if ((*nest & 7) == 0 && Py_EnterRecursiveCall(" while handling an Erlang term"))
        return -1;
    ++*nest;
    return 0;
}

static inline void
nest_leave(int *nest)
{
    if ((--*nest & 7) == 0)
        Py_LeaveRecursiveCall();
}

static void
struct_error(const char *msg)
{
    PyErr_SetString(E_struct, msg);
}

/* The very struct.error that struct.pack(fmt, o) raises (its wording varies across Python
 * versions); ``fallback`` should it not raise. */
static void
struct_error_of(const char *fmt, PyObject *o, const char *fallback)
{
    PyObject *r = PyObject_CallFunction(O_struct_pack, "sO", fmt, o);
    if (r != NULL) {
        Py_DECREF(r);
        struct_error(fallback);
    }
}

/* Convert o the way struct.pack does for an unsigned format of at most max: 0 ok, -1 an
 * exception raised by o's __index__ (left set), or one of the struct.error cases below
 * (nothing raised: the callers say which error that is). */
#define PU_RANGE 1    /* "'I' format requires 0 <= number <= 4294967295" */
#define PU_NOT_INT 2  /* "required argument is not an integer" */
#define PU_OVERFLOW 3 /* "argument out of range" */

static int
pack_uint(PyObject *o, unsigned long long max, unsigned long long *out)
{
    PyObject *v;
    if (PyLong_Check(o)) {
        v = o;
        Py_INCREF(v);
    }
    else if (PyIndex_Check(o)) {
        v = PyNumber_Index(o);
        if (v == NULL)
            return -1;
    }
    else
        return PU_NOT_INT;
    unsigned long long x = PyLong_AsUnsignedLongLong(v);
    Py_DECREF(v);
    if (x == (unsigned long long)-1 && PyErr_Occurred()) {
        if (!PyErr_ExceptionMatches(PyExc_OverflowError))
            return -1;
        PyErr_Clear();
        return PU_OVERFLOW;
    }
    if (x > max)
        return PU_RANGE;
    *out = x;
    return 0;
}

static const char *const pack_messages[] = {
    NULL,
    "'I' format requires 0 <= number <= 4294967295",
    "required argument is not an integer",
    "argument out of range",
};

/* max_depth as the Python codec uses it (``depth <= 0`` checks, minus one per level). */
static int
depth_arg(PyObject *o, long long *out)
{
    if (PyLong_Check(o)) {
        int overflow;
        long long v = PyLong_AsLongLongAndOverflow(o, &overflow);
        if (v == -1 && PyErr_Occurred())
            return -1;
        if (overflow > 0 || v > DEPTH_MAX)
            v = DEPTH_MAX;
        else if (overflow < 0 || v < DEPTH_MIN)
            v = DEPTH_MIN;
        *out = v;
        return 0;
    }
    if (PyFloat_Check(o)) {
        /* d, d-1, d-2... stays above 0 for ceil(d) levels; NaN never compares <= 0 */
        double v = PyFloat_AS_DOUBLE(o);
        if (isnan(v) || v >= (double)DEPTH_MAX)
            *out = DEPTH_MAX;
        else if (v <= (double)DEPTH_MIN)
            *out = DEPTH_MIN;
        else
            *out = (long long)ceil(v);
        return 0;
    }
    PyErr_Format(PyExc_TypeError, "'<=' not supported between instances of '%.200s' and 'int'",
                 Py_TYPE(o)->tp_name);
    return -1;
}

/* max_uncompressed (``size > limit``): the largest size allowed. */
static int
limit_arg(PyObject *o, long long *out)
{
    if (PyLong_Check(o)) {
        int overflow;
        long long v = PyLong_AsLongLongAndOverflow(o, &overflow);
        if (v == -1 && PyErr_Occurred())
            return -1;
        if (overflow > 0)
            v = LLONG_MAX;
        else if (overflow < 0)
            v = -1;
        *out = v;
        return 0;
    }
    if (PyFloat_Check(o)) {
        double v = PyFloat_AS_DOUBLE(o);
        if (isnan(v) || v >= 9.2e18)
            *out = LLONG_MAX;
        else if (v < -1.0)
            *out = -1;
        else
            *out = (long long)floor(v);
        return 0;
    }
    PyErr_Format(PyExc_TypeError, "'>' not supported between instances of 'int' and '%.200s'",
                 Py_TYPE(o)->tp_name);
    return -1;
}

/* Keyword parsing for METH_FASTCALL | METH_KEYWORDS, with Python's own error messages. */
typedef struct {
    const char *fname;
    int nparams;
    int max_pos;  /* how many may be given positionally */
    int n_req;    /* how many are required (the first ones) */
    const char *names[8];
    PyObject *inames[8];
} ArgSpec;

static int
parse_args(ArgSpec *spec, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames,
           PyObject **out)
{
    int i;
    for (i = 0; i < spec->nparams; i++)
        out[i] = NULL;
    if (nargs > spec->max_pos) {
        if (spec->max_pos == spec->n_req)
            PyErr_Format(PyExc_TypeError,
                         "%s() takes %d positional argument%s but %zd were given", spec->fname,
                         spec->max_pos, spec->max_pos == 1 ? "" : "s", nargs);
        else
            PyErr_Format(PyExc_TypeError,
                         "%s() takes from %d to %d positional arguments but %zd were given",
                         spec->fname, spec->n_req, spec->max_pos, nargs);
        return -1;
    }
    for (i = 0; i < nargs; i++)
        out[i] = args[i];
    if (kwnames != NULL) {
        Py_ssize_t nkw = PyTuple_GET_SIZE(kwnames), k;
        for (k = 0; k < nkw; k++) {
            PyObject *key = PyTuple_GET_ITEM(kwnames, k);
            int idx = -1;
            for (i = 0; i < spec->nparams; i++) {
                if (key == spec->inames[i]) {
                    idx = i;
                    break;
                }
            }
            if (idx < 0) {
                for (i = 0; i < spec->nparams; i++) {
                    if (PyUnicode_Compare(key, spec->inames[i]) == 0) {
                        idx = i;
                        break;
                    }
                }
                if (PyErr_Occurred())
                    return -1;
            }
            if (idx < 0) {
                PyErr_Format(PyExc_TypeError, "%s() got an unexpected keyword argument '%S'",
                             spec->fname, key);
                return -1;
            }
            if (out[idx] != NULL) {
                PyErr_Format(PyExc_TypeError, "%s() got multiple values for argument '%s'",
                             spec->fname, spec->names[idx]);
                return -1;
            }
            out[idx] = args[nargs + k];
        }
    }
    for (i = 0; i < spec->n_req; i++) {
        if (out[i] == NULL) {
            PyErr_Format(PyExc_TypeError, "%s() missing 1 required positional argument: '%s'",
                         spec->fname, spec->names[i]);
            return -1;
        }
    }
    return 0;
}

/* ---------------------------------------------------------------------------------------- */
/* UTF-8 of a str, surrogates written as they are (the "surrogatepass" of the Python codec) */

static Py_ssize_t
utf8_size(int kind, const void *data, Py_ssize_t n, int *surrogates)
{
    Py_ssize_t size = n, i;
    if (kind == PyUnicode_1BYTE_KIND) {
        const Py_UCS1 *s = (const Py_UCS1 *)data;
        for (i = 0; i < n; i++)
            size += s[i] >> 7;
    }
    else if (kind == PyUnicode_2BYTE_KIND) {
        const Py_UCS2 *s = (const Py_UCS2 *)data;
        for (i = 0; i < n; i++) {
            Py_UCS2 c = s[i];
            if (c >= 0x80) {
                size += c < 0x800 ? 1 : 2;
                if (c >= 0xD800 && c <= 0xDFFF)
                    *surrogates = 1;
            }
        }
    }
    else {
        const Py_UCS4 *s = (const Py_UCS4 *)data;
        for (i = 0; i < n; i++) {
            Py_UCS4 c = s[i];
            if (c >= 0x80) {
                size += c < 0x800 ? 1 : c < 0x10000 ? 2 : 3;
                if (c >= 0xD800 && c <= 0xDFFF)
                    *surrogates = 1;
            }
        }
    }
    return size;
}

#define UTF8_PUT(p, c)                                                                      \
    do {                                                                                    \
        Py_UCS4 c_ = (c);                                                                   \
        if (c_ < 0x80)                                                                      \
            *p++ = (unsigned char)c_;                                                       \
        else if (c_ < 0x800) {                                                              \
            *p++ = (unsigned char)(0xC0 | (c_ >> 6));                                       \
            *p++ = (unsigned char)(0x80 | (c_ & 0x3F));                                     \
        }                                                                                   \
        else if (c_ < 0x10000) {                                                            \
            *p++ = (unsigned char)(0xE0 | (c_ >> 12));                                      \
            *p++ = (unsigned char)(0x80 | ((c_ >> 6) & 0x3F));                              \
            *p++ = (unsigned char)(0x80 | (c_ & 0x3F));                                     \
        }                                                                                   \
        else {                                                                              \
            *p++ = (unsigned char)(0xF0 | (c_ >> 18));                                      \
            *p++ = (unsigned char)(0x80 | ((c_ >> 12) & 0x3F));                             \
            *p++ = (unsigned char)(0x80 | ((c_ >> 6) & 0x3F));                              \
            *p++ = (unsigned char)(0x80 | (c_ & 0x3F));                                     \
        }                                                                                   \
    } while (0)

static unsigned char *
utf8_write(int kind, const void *data, Py_ssize_t n, unsigned char *p)
{
    Py_ssize_t i;
    if (kind == PyUnicode_1BYTE_KIND) {
        const Py_UCS1 *s = (const Py_UCS1 *)data;
        for (i = 0; i < n; i++) {
            Py_UCS1 c = s[i];
            if (c < 0x80)
                *p++ = c;
            else {
                *p++ = (unsigned char)(0xC0 | (c >> 6));
                *p++ = (unsigned char)(0x80 | (c & 0x3F));
            }
        }
    }
    else if (kind == PyUnicode_2BYTE_KIND) {
        const Py_UCS2 *s = (const Py_UCS2 *)data;
        for (i = 0; i < n; i++)
            UTF8_PUT(p, s[i]);
    }
    else {
        const Py_UCS4 *s = (const Py_UCS4 *)data;
        for (i = 0; i < n; i++)
            UTF8_PUT(p, s[i]);
    }
    return p;
}

/* ---------------------------------------------------------------------------------------- */
/* encoding */

#define ENC_STACK 1024
/* erts ERTS_ATOM_CACHE_SIZE: 8 segments of 256 entries, indexed by 3 + 8 bits */
#define ATOM_CACHE_SIZE 2048
/* NumberOfAtomCacheRefs is one byte (erts ERTS_MAX_INTERNAL_ATOM_CACHE_ENTRIES, 255) */
#define MAX_CACHE_REFS 255
/* the payload's tuples whose atoms go through the cache: ``{Pid, {tag, ...}}`` (enc_spine) */
#define PAYLOAD_SPINE 2
/* encode_dist_packet's parts: a bytes object this big or bigger is a part of its own, not
 * copied (the pure codec's _BIG_BINARY, which it likewise keeps apart while it encodes) */
#define IOV_MIN 65536

typedef struct {
    unsigned char *p; /* the buffer: the stack array below, or the data of ``bytes`` */
    Py_ssize_t len, cap;
    PyObject *bytes;
    int nest;
    /* while set (encode_dist_packet's atom_cache, for the atoms on a message's spine),
     * an atom becomes ATOM_CACHE_REF to one of this message's refs: the connection's
     * outgoing cache slots (a list, updated once the message is whole) and the refs */
    PyObject *acache;
    int nrefs;
    int frozen; /* the refs are the header's, written already: an atom without one is inline */
    int nogrow;   /* past the stack buffer, enc_grow fails and sets overflow */
    int overflow;
    /* while set (encode_dist_packet's parts), a list: a bytes object of IOV_MIN bytes or
     * more goes in as itself, after the bytes encoded before it (enc_bin_ref) */
    PyObject *iov;
    uint16_t rslot[MAX_CACHE_REFS];
    unsigned char rnew[MAX_CACHE_REFS];
    PyObject *ratom[MAX_CACHE_REFS]; /* strong references */
    unsigned char stack[ENC_STACK];
} Enc;

static void
enc_init(Enc *e)
{
    e->p = e->stack;
    e->len = 0;
    e->cap = ENC_STACK;
    e->bytes = NULL;
    e->nest = 0;
    e->acache = NULL;
    e->nrefs = 0;
    e->frozen = 0;
    e->nogrow = 0;
    e->overflow = 0;
    e->iov = NULL;
}

/* after a failed encode: its buffer freed, a RecursionError told as an encode error */
static void
enc_failed(Enc *e)
{
    Py_CLEAR(e->bytes);
    Py_CLEAR(e->iov);
    if (PyErr_ExceptionMatches(PyExc_RecursionError)) {
        PyErr_Clear();
        PyErr_SetString(E_Encode, "term nested too deeply for the Python stack");
    }
}

/* a first try in the stack buffer (e->nogrow) ends here: it outgrew the buffer, or met a
 * term whose encoding may run Python code (run once, in the second try, as in the pure
 * codec) */
static int
enc_bail(Enc *e)
{
    e->overflow = 1;
    PyErr_SetString(PyExc_MemoryError, "a first try in the stack buffer ended");
    return -1;
}

static int
enc_grow(Enc *e, Py_ssize_t need)
{
    if (need > PY_SSIZE_T_MAX - e->len) {
        PyErr_NoMemory();
        return -1;
    }
    if (e->nogrow)
        return enc_bail(e);
    Py_ssize_t want = e->len + need;
    Py_ssize_t cap = e->cap <= PY_SSIZE_T_MAX / 2 ? e->cap * 2 : PY_SSIZE_T_MAX;
    if (cap < want)
        cap = want;
    if (e->bytes == NULL) {
        PyObject *b = PyBytes_FromStringAndSize(NULL, cap);
        if (b == NULL)
            return -1;
        memcpy(PyBytes_AS_STRING(b), e->p, (size_t)e->len);
        e->bytes = b;
    }
    else if (_PyBytes_Resize(&e->bytes, cap) < 0) {
        return -1; /* e->bytes is NULL now */
    }
    e->p = (unsigned char *)PyBytes_AS_STRING(e->bytes);
    e->cap = cap;
    return 0;
}

#define ENSURE(e, n)                                                                        \
    do {                                                                                    \
        if ((e)->cap - (e)->len < (Py_ssize_t)(n) && enc_grow((e), (Py_ssize_t)(n)) < 0)    \
            return -1;                                                                      \
    } while (0)

static inline void
w8(Enc *e, unsigned int v)
{
    e->p[e->len++] = (unsigned char)v;
}

static inline void
w16(Enc *e, unsigned int v)
{
    e->p[e->len] = (unsigned char)(v >> 8);
    e->p[e->len + 1] = (unsigned char)v;
    e->len += 2;
}

static inline void
w32(Enc *e, uint32_t v)
{
    unsigned char *p = e->p + e->len;
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
    e->len += 4;
}

static inline void
w64(Enc *e, uint64_t v)
{
    w32(e, (uint32_t)(v >> 32));
    w32(e, (uint32_t)v);
}

static inline void
wmem(Enc *e, const void *src, Py_ssize_t n)
{
    if (n > 0)
        memcpy(e->p + e->len, src, (size_t)n);
    e->len += n;
}

static int enc(Enc *e, PyObject *x, long long depth);

static int
enc_error(PyObject *msg)
{
    if (msg == NULL)
        return -1;
    PyErr_SetObject(E_Encode, msg);
    Py_DECREF(msg);
    return -1;
}

static int
too_deep(void)
{
    PyErr_SetString(E_Encode, "term nested too deeply");
    return -1;
}

#define U32_RANGE "'I' format requires 0 <= number <= 4294967295"

/* 1 when atoms ``a`` and ``b`` have the same text, 0 when not, -1 on error */
static int
same_atom(PyObject *a, PyObject *b)
{
    if (a == b)
        return 1;
    if (!PyUnicode_Check(b))
        return 0; /* an empty slot (None) */
    int c = PyUnicode_Compare(a, b);
    if (c == -1 && PyErr_Occurred())
        return -1;
    return c == 0;
}

/* ``a`` (valid, its UTF-8 under 256 bytes) as ATOM_CACHE_REF to one of this message's
 * refs: 0 when written, 1 when it must go inline (its slot is another atom's in this
 * message, or the message has MAX_CACHE_REFS refs already), -1 on error. The slot is the
 * atom's hash: erts too picks a slot from the atom itself (atom index modulo the size). */
static int
enc_atom_ref(Enc *e, PyObject *a)
{
    Py_hash_t h = PyObject_Hash(a);
    if (h == -1)
        return -1;
    unsigned int slot = (unsigned int)((size_t)h & (ATOM_CACHE_SIZE - 1));
    int i, same;
    for (i = 0; i < e->nrefs; i++) {
        if (e->rslot[i] == slot) {
            same = same_atom(a, e->ratom[i]);
            if (same < 0)
                return -1;
            if (!same)
                return 1;
            goto write;
        }
    }
    if (e->nrefs == MAX_CACHE_REFS || e->frozen || slot >= (unsigned int)PyList_GET_SIZE(e->acache))
        return 1; /* (the list's size was checked before: this guards against a change since) */
    same = same_atom(a, PyList_GET_ITEM(e->acache, slot));
    if (same < 0)
        return -1;
    i = e->nrefs++;
    e->rslot[i] = (uint16_t)slot;
    e->rnew[i] = (unsigned char)!same;
    Py_INCREF(a);
    e->ratom[i] = a;
write:
    ENSURE(e, 2);
    w8(e, ATOM_CACHE_REF);
    w8(e, (unsigned int)i);
    return 0;
}

/* an atom: any str, strict UTF-8 like str.encode() */
static int
enc_atom(Enc *e, PyObject *a)
{
    if (!PyUnicode_Check(a)) {
        if (PyObject_Hash(a) == -1)
            return -1;
        PyErr_Format(PyExc_AttributeError, "'%.100s' object has no attribute 'encode'",
                     Py_TYPE(a)->tp_name);
        return -1;
    }
#if PY_VERSION_HEX < 0x030C0000
    if (PyUnicode_READY(a) < 0)
        return -1;
#endif
    Py_ssize_t nch = PyUnicode_GET_LENGTH(a), nb;
    int kind = PyUnicode_KIND(a);
    const void *data = PyUnicode_DATA(a);
    int ascii = PyUnicode_IS_ASCII(a);
    if (ascii)
        nb = nch;
    else {
        int sur = 0;
        nb = utf8_size(kind, data, nch, &sur);
        if (sur) { /* the genuine UnicodeEncodeError of a.encode("utf-8") */
            PyObject *t = PyUnicode_AsUTF8String(a);
            if (t == NULL)
                return -1;
            Py_DECREF(t);
        }
    }
    if (nch > 255) {
        PyObject *head = PyUnicode_Substring(a, 0, 40);
        if (head == NULL)
            return -1;
        PyObject *msg = PyUnicode_FromFormat(
            "atom too long (%zd characters, the limit is 255): %R...", nch, head);
        Py_DECREF(head);
        return enc_error(msg);
    }
    if (e->acache != NULL && nb < 256) {
        int r = enc_atom_ref(e, a);
        if (r <= 0)
            return r;
    }
    if (nb < 256) {
        ENSURE(e, 2 + nb);
        w8(e, SMALL_ATOM_UTF8_EXT);
        w8(e, (unsigned int)nb);
    }
    else {
        ENSURE(e, 3 + nb);
        w8(e, ATOM_UTF8_EXT);
        w16(e, (unsigned int)nb);
    }
    if (ascii)
        wmem(e, data, nb);
    else {
        utf8_write(kind, data, nch, e->p + e->len);
        e->len += nb;
    }
    return 0;
}

/* a tag and a 4-byte count (LIST_EXT, LARGE_TUPLE_EXT, MAP_EXT, BINARY_EXT's head) */
static int
enc_head32(Enc *e, unsigned int tag, Py_ssize_t n)
{
    if ((unsigned long long)n > 0xFFFFFFFFULL) {
        struct_error(U32_RANGE);
        return -1;
    }
    ENSURE(e, 5);
    w8(e, tag);
    w32(e, (uint32_t)n);
    return 0;
}

static int
enc_bin(Enc *e, const void *data, Py_ssize_t n)
{
    if ((unsigned long long)n > 0xFFFFFFFFULL) {
        struct_error(U32_RANGE);
        return -1;
    }
    ENSURE(e, 5 + n);
    w8(e, BINARY_EXT);
    w32(e, (uint32_t)n);
    wmem(e, data, n);
    return 0;
}

/* encode_dist_packet's parts: the bytes encoded so far become a part of their own (the
 * grown buffer itself, or a copy of the stack buffer) and the buffer starts again */
static int
enc_flush(Enc *e)
{
    PyObject *seg;
    if (e->bytes != NULL) {
        seg = e->bytes;
        e->bytes = NULL;
        if (_PyBytes_Resize(&seg, e->len) < 0)
            return -1;
    }
    else if ((seg = PyBytes_FromStringAndSize((const char *)e->stack, e->len)) == NULL)
        return -1;
    e->p = e->stack;
    e->cap = ENC_STACK;
    e->len = 0;
    int r = PyList_Append(e->iov, seg);
    Py_DECREF(seg);
    return r;
}

/* a big bytes object as a binary whose data is the object itself, a part of its own: not
 * copied (erl's dist encoder likewise hands a big binary to writev by reference) */
static int
enc_bin_ref(Enc *e, PyObject *b)
{
    if (enc_head32(e, BINARY_EXT, PyBytes_GET_SIZE(b)) < 0 || enc_flush(e) < 0)
        return -1;
    return PyList_Append(e->iov, b);
}

/* a str as a UTF-8 binary */
static int
enc_str(Enc *e, PyObject *s)
{
#if PY_VERSION_HEX < 0x030C0000
    if (PyUnicode_READY(s) < 0)
        return -1;
#endif
    Py_ssize_t nch = PyUnicode_GET_LENGTH(s);
    if (PyUnicode_IS_ASCII(s))
        return enc_bin(e, PyUnicode_DATA(s), nch);
    int kind = PyUnicode_KIND(s), sur = 0;
    const void *data = PyUnicode_DATA(s);
    if (nch <= 65536) {
        /* one pass: room for the longest UTF-8 (2, 3 or 4 bytes a character, by kind),
         * then the length written in front */
        Py_ssize_t most = (kind == PyUnicode_1BYTE_KIND ? 2 : kind == PyUnicode_2BYTE_KIND ? 3 : 4);
        ENSURE(e, 5 + most * nch);
        unsigned char *head = e->p + e->len, *p = head + 5, *q = utf8_write(kind, data, nch, p);
        head[0] = BINARY_EXT;
        uint32_t nb = (uint32_t)(q - p);
        head[1] = (unsigned char)(nb >> 24);
        head[2] = (unsigned char)(nb >> 16);
        head[3] = (unsigned char)(nb >> 8);
        head[4] = (unsigned char)nb;
        e->len += 5 + (Py_ssize_t)nb;
        return 0;
    }
    Py_ssize_t nb = utf8_size(kind, data, nch, &sur);
    if ((unsigned long long)nb > 0xFFFFFFFFULL) {
        struct_error(U32_RANGE);
        return -1;
    }
    ENSURE(e, 5 + nb);
    w8(e, BINARY_EXT);
    w32(e, (uint32_t)nb);
    utf8_write(kind, data, nch, e->p + e->len);
    e->len += nb;
    return 0;
}

static int
enc_float(Enc *e, PyObject *f)
{
    double v = PyFloat_AS_DOUBLE(f);
    if (!isfinite(v))
        return enc_error(PyUnicode_FromFormat("Erlang has no float %R", f));
    ENSURE(e, 9);
    w8(e, NEW_FLOAT_EXT);
    if (PACK8(v, e->p + e->len) < 0)
        return -1;
    e->len += 8;
    return 0;
}

static int
enc_magnitude(Enc *e, unsigned long long mag, int sign)
{
    int n = 0;
    unsigned long long m = mag;
    while (m) {
        n++;
        m >>= 8;
    }
    ENSURE(e, 3 + n);
    w8(e, SMALL_BIG_EXT);
    w8(e, (unsigned int)n);
    w8(e, (unsigned int)sign);
    while (mag) {
        w8(e, (unsigned int)(mag & 0xFF));
        mag >>= 8;
    }
    return 0;
}

/* an int (any int subclass, by its value) */
static int
enc_int(Enc *e, PyObject *x)
{
    long v;
    if (long_small(x, &v)) {
        if (v >= 0 && v < 256) {
            ENSURE(e, 2);
            w8(e, SMALL_INTEGER_EXT);
            w8(e, (unsigned int)v);
            return 0;
        }
        if (v >= -2147483648L && v <= 2147483647L) {
            ENSURE(e, 5);
            w8(e, INTEGER_EXT);
            w32(e, (uint32_t)(int32_t)v);
            return 0;
        }
    }
    int overflow;
    long long ll = PyLong_AsLongLongAndOverflow(x, &overflow);
    if (ll == -1 && PyErr_Occurred())
        return -1;
    if (!overflow) {
        if (ll >= 0 && ll < 256) {
            ENSURE(e, 2);
            w8(e, SMALL_INTEGER_EXT);
            w8(e, (unsigned int)ll);
            return 0;
        }
        if (ll >= -2147483648LL && ll <= 2147483647LL) {
            ENSURE(e, 5);
            w8(e, INTEGER_EXT);
            w32(e, (uint32_t)(int32_t)ll);
            return 0;
        }
        if (ll < 0)
            return enc_magnitude(e, (unsigned long long)(-(ll + 1)) + 1ULL, 1);
        return enc_magnitude(e, (unsigned long long)ll, 0);
    }
    int sign = overflow < 0;
    PyObject *a = sign ? PyNumber_Negative(x) : (Py_INCREF(x), x);
    if (a == NULL)
        return -1;
    size_t nbits = _PyLong_NumBits(a);
    if (nbits == (size_t)-1 && PyErr_Occurred()) {
        Py_DECREF(a);
        return -1;
    }
    size_t n = (nbits + 7) >> 3;
    if (n > 0xFFFFFFFFULL || n > (size_t)(PY_SSIZE_T_MAX - 16)) {
        Py_DECREF(a);
        struct_error(U32_RANGE);
        return -1;
    }
    if (n < 256) {
        if (e->cap - e->len < (Py_ssize_t)(3 + n) && enc_grow(e, (Py_ssize_t)(3 + n)) < 0)
            goto fail;
        w8(e, SMALL_BIG_EXT);
        w8(e, (unsigned int)n);
    }
    else {
        if (e->cap - e->len < (Py_ssize_t)(6 + n) && enc_grow(e, (Py_ssize_t)(6 + n)) < 0)
            goto fail;
        w8(e, LARGE_BIG_EXT);
        w32(e, (uint32_t)n);
    }
    w8(e, (unsigned int)sign);
#if PY_VERSION_HEX >= 0x030D0000
    if (_PyLong_AsByteArray((PyLongObject *)a, e->p + e->len, n, 1, 0, 1) < 0)
        goto fail;
#else
    if (_PyLong_AsByteArray((PyLongObject *)a, e->p + e->len, n, 1, 0) < 0)
        goto fail;
#endif
    e->len += (Py_ssize_t)n;
    Py_DECREF(a);
    return 0;
fail:
    Py_DECREF(a);
    return -1;
}

/* what _enc_int does with something that is not an int (ExportFun arity, fun indexes) */
static int
enc_int_field(Enc *e, PyObject *x)
{
    if (PyLong_Check(x))
        return enc_int(e, x);
    PyErr_Format(PyExc_TypeError, "'<=' not supported between instances of 'int' and '%.200s'",
                 Py_TYPE(x)->tp_name);
    return -1;
}

/* list or FrozenList body (``depth`` is already the elements' depth) */
static int
enc_list_body(Enc *e, PyObject *seq, int is_list, long long depth)
{
    Py_ssize_t n = Py_SIZE(seq), i;
    if (n == 0) {
        ENSURE(e, 1);
        w8(e, NIL_EXT);
        return 0;
    }
    PyObject **items = is_list ? ((PyListObject *)seq)->ob_item : ((PyTupleObject *)seq)->ob_item;
    if (n < 65536 && Py_TYPE(items[0]) == &PyLong_Type) {
        long v = 0;
        for (i = 0; i < n; i++) {
            PyObject *it = items[i];
            if (Py_TYPE(it) != &PyLong_Type || !long_small(it, &v) || v < 0 || v > 255)
                break;
        }
        if (i == n) {
            ENSURE(e, 3 + n);
            w8(e, STRING_EXT);
            w16(e, (unsigned int)n);
            for (i = 0; i < n; i++) {
                long_small(items[i], &v);
                e->p[e->len++] = (unsigned char)v;
            }
            return 0;
        }
    }
    if (enc_head32(e, LIST_EXT, n) < 0)
        return -1;
    if (nest_enter(&e->nest) < 0)
        return -1;
    for (i = 0; i < Py_SIZE(seq); i++) {
        PyObject *it = is_list ? PyList_GET_ITEM(seq, i) : PyTuple_GET_ITEM(seq, i);
        Py_INCREF(it);
        int r = enc(e, it, depth);
        Py_DECREF(it);
        if (r < 0) {
            nest_leave(&e->nest);
            return -1;
        }
    }
    nest_leave(&e->nest);
    ENSURE(e, 1);
    w8(e, NIL_EXT);
    return 0;
}

static int
enc_tuple(Enc *e, PyObject *t, long long depth)
{
    if (depth <= 0)
        return too_deep();
    Py_ssize_t n = PyTuple_GET_SIZE(t), i;
    if (n < 256) {
        ENSURE(e, 2);
        w8(e, SMALL_TUPLE_EXT);
        w8(e, (unsigned int)n);
    }
    else if (enc_head32(e, LARGE_TUPLE_EXT, n) < 0)
        return -1;
    if (n == 0)
        return 0;
    if (nest_enter(&e->nest) < 0)
        return -1;
    for (i = 0; i < n; i++) {
        if (enc(e, PyTuple_GET_ITEM(t, i), depth - 1) < 0) {
            nest_leave(&e->nest);
            return -1;
        }
    }
    nest_leave(&e->nest);
    return 0;
}

static int
enc_dict(Enc *e, PyObject *d, long long depth)
{
    if (depth <= 0)
        return too_deep();
    Py_ssize_t n = PyDict_GET_SIZE(d), pos = 0;
    PyObject *k, *v;
    if (enc_head32(e, MAP_EXT, n) < 0)
        return -1;
    if (n == 0)
        return 0;
    if (nest_enter(&e->nest) < 0)
        return -1;
    while (PyDict_Next(d, &pos, &k, &v)) {
        Py_INCREF(k);
        Py_INCREF(v);
        int r = enc(e, k, depth - 1);
        if (r == 0)
            r = enc(e, v, depth - 1);
        Py_DECREF(k);
        Py_DECREF(v);
        if (r == 0 && PyDict_GET_SIZE(d) != n) {
            PyErr_SetString(PyExc_RuntimeError, "dictionary changed size during iteration");
            r = -1;
        }
        if (r < 0) {
            nest_leave(&e->nest);
            return -1;
        }
    }
    nest_leave(&e->nest);
    return 0;
}

static int
enc_pid(Enc *e, PyObject *p)
{
    unsigned long long v[3];
    int i, bad = 0;
    PyObject *node = field(p, T_Pid, &F_pid_node);
    if (node == NULL)
        return -1;
    ENSURE(e, 1);
    w8(e, NEW_PID_EXT);
    int r = enc_atom(e, node);
    Py_DECREF(node);
    if (r < 0)
        return -1;
    const Field *fs[3] = {&F_pid_id, &F_pid_serial, &F_pid_creation};
    PyObject *o[3] = {NULL, NULL, NULL};
    for (i = 0; i < 3; i++) {
        o[i] = field(p, T_Pid, fs[i]);
        if (o[i] == NULL)
            goto fail;
    }
    for (i = 0; i < 3 && !bad; i++) {
        r = pack_uint(o[i], 0xFFFFFFFFULL, &v[i]);
        if (r < 0)
            goto fail;
        bad = r;
    }
    for (i = 0; i < 3; i++)
        Py_CLEAR(o[i]);
    if (bad)
        return enc_error(PyUnicode_FromFormat("pid fields out of range: %R", p));
    ENSURE(e, 12);
    for (i = 0; i < 3; i++)
        w32(e, (uint32_t)v[i]);
    return 0;
fail:
    for (i = 0; i < 3; i++)
        Py_XDECREF(o[i]);
    return -1;
}

static int
enc_port(Enc *e, PyObject *p)
{
    unsigned long long id = 0, cr = 0;
    PyObject *node = field(p, T_Port, &F_port_node);
    if (node == NULL)
        return -1;
    ENSURE(e, 1);
    w8(e, V4_PORT_EXT);
    int r = enc_atom(e, node);
    Py_DECREF(node);
    if (r < 0)
        return -1;
    PyObject *oid = field(p, T_Port, &F_port_id);
    if (oid == NULL)
        return -1;
    PyObject *ocr = field(p, T_Port, &F_port_creation);
    if (ocr == NULL) {
        Py_DECREF(oid);
        return -1;
    }
    r = pack_uint(oid, 0xFFFFFFFFFFFFFFFFULL, &id);
    if (r == 0)
        r = pack_uint(ocr, 0xFFFFFFFFULL, &cr);
    Py_DECREF(oid);
    Py_DECREF(ocr);
    if (r < 0)
        return -1;
    if (r > 0)
        return enc_error(PyUnicode_FromFormat("port fields out of range: %R", p));
    ENSURE(e, 12);
    w64(e, id);
    w32(e, (uint32_t)cr);
    return 0;
}

static int
enc_ref(Enc *e, PyObject *ref)
{
    unsigned long long vals[6];
    PyObject *ids = field(ref, T_Ref, &F_ref_ids);
    if (ids == NULL)
        return -1;
    Py_ssize_t n = PyObject_Size(ids), i;
    if (n < 0)
        goto fail_ids;
    if (n < 1 || n > 5) {
        Py_DECREF(ids);
        return enc_error(
            PyUnicode_FromFormat("a reference has 1 to 5 ids, not %zd: %R", n, ref));
    }
    ENSURE(e, 3);
    w8(e, NEWER_REFERENCE_EXT);
    w16(e, (unsigned int)n);
    PyObject *node = field(ref, T_Ref, &F_ref_node);
    if (node == NULL)
        goto fail_ids;
    int r = enc_atom(e, node);
    Py_DECREF(node);
    if (r < 0)
        goto fail_ids;
    PyObject *cr = field(ref, T_Ref, &F_ref_creation);
    if (cr == NULL)
        goto fail_ids;
    PyObject *tup = PySequence_Tuple(ids);
    Py_DECREF(ids);
    if (tup == NULL) {
        Py_DECREF(cr);
        return -1;
    }
    r = pack_uint(cr, 0xFFFFFFFFULL, &vals[0]);
    Py_DECREF(cr);
    if (r == 0 && PyTuple_GET_SIZE(tup) != n)
        r = 1; /* "pack expected n items" */
    for (i = 0; i < n && r == 0; i++)
        r = pack_uint(PyTuple_GET_ITEM(tup, i), 0xFFFFFFFFULL, &vals[i + 1]);
    Py_DECREF(tup);
    if (r < 0)
        return -1;
    if (r > 0)
        return enc_error(PyUnicode_FromFormat("reference fields out of range: %R", ref));
    ENSURE(e, 4 + 4 * n);
    for (i = 0; i <= n; i++)
        w32(e, (uint32_t)vals[i]);
    return 0;
fail_ids:
    Py_DECREF(ids);
    return -1;
}

/* the bytes of a bytes-like field (``out += x`` in the Python codec) */
static int
enc_buffer_raw(Enc *e, PyObject *o)
{
    Py_buffer view;
    if (PyObject_GetBuffer(o, &view, PyBUF_SIMPLE) < 0) {
        if (PyErr_ExceptionMatches(PyExc_TypeError)) {
            PyErr_Clear();
            PyErr_Format(PyExc_TypeError, "can't concat %.100s to bytearray",
                         Py_TYPE(o)->tp_name);
        }
        return -1;
    }
    if (e->cap - e->len < view.len && enc_grow(e, view.len) < 0) {
        PyBuffer_Release(&view);
        return -1;
    }
    wmem(e, view.buf, view.len);
    PyBuffer_Release(&view);
    return 0;
}

NOINLINE static int
enc_improper(Enc *e, PyObject *x, long long depth)
{
    if (depth <= 0)
        return too_deep();
    PyObject *items = field(x, T_Improper, &F_il_items);
    if (items == NULL)
        return -1;
    PyObject *tail = NULL, *seq = NULL;
    Py_ssize_t n = PyObject_Size(items), i;
    if (n < 0)
        goto fail;
    if ((unsigned long long)n > 0xFFFFFFFFULL) {
        struct_error(U32_RANGE);
        goto fail;
    }
    if (e->cap - e->len < 5 && enc_grow(e, 5) < 0)
        goto fail;
    w8(e, LIST_EXT);
    w32(e, (uint32_t)n);
    seq = PySequence_Tuple(items);
    if (seq == NULL)
        goto fail;
    if (nest_enter(&e->nest) < 0)
        goto fail;
    for (i = 0; i < PyTuple_GET_SIZE(seq); i++) {
        if (enc(e, PyTuple_GET_ITEM(seq, i), depth - 1) < 0)
            goto fail_nested;
    }
    tail = field(x, T_Improper, &F_il_tail);
    if (tail == NULL || enc(e, tail, depth - 1) < 0)
        goto fail_nested;
    nest_leave(&e->nest);
    Py_DECREF(items);
    Py_DECREF(seq);
    Py_DECREF(tail);
    return 0;
fail_nested:
    nest_leave(&e->nest);
fail:
    Py_DECREF(items);
    Py_XDECREF(seq);
    Py_XDECREF(tail);
    return -1;
}

static int
enc_bits(Enc *e, PyObject *x)
{
    PyObject *data = field(x, T_Bits, &F_bs_data);
    if (data == NULL)
        return -1;
    PyObject *bits = field(x, T_Bits, &F_bs_bits);
    if (bits == NULL) {
        Py_DECREF(data);
        return -1;
    }
    unsigned long long b = 0;
    int r = -1;
    Py_ssize_t n = PyObject_Size(data);
    if (n < 0)
        goto done;
    if ((unsigned long long)n > 0xFFFFFFFFULL) {
        struct_error(U32_RANGE);
        goto done;
    }
    {
        int pr = pack_uint(bits, 255, &b);
        if (pr < 0)
            goto done;
        if (pr > 0) {
            struct_error_of(">B", bits, "ubyte format requires 0 <= number <= 255");
            goto done;
        }
    }
    if (e->cap - e->len < 6 && enc_grow(e, 6) < 0)
        goto done;
    w8(e, BIT_BINARY_EXT);
    w32(e, (uint32_t)n);
    w8(e, (unsigned int)b);
    r = enc_buffer_raw(e, data);
done:
    Py_DECREF(data);
    Py_DECREF(bits);
    return r;
}

static int
enc_export(Enc *e, PyObject *x)
{
    ENSURE(e, 1);
    w8(e, EXPORT_EXT);
    const Field *fs[2] = {&F_ex_module, &F_ex_function};
    for (int i = 0; i < 2; i++) {
        PyObject *a = field(x, T_Export, fs[i]);
        if (a == NULL)
            return -1;
        int r = enc_atom(e, a);
        Py_DECREF(a);
        if (r < 0)
            return -1;
    }
    PyObject *ar = field(x, T_Export, &F_ex_arity);
    if (ar == NULL)
        return -1;
    int r = enc_int_field(e, ar);
    Py_DECREF(ar);
    return r;
}

/* enc_fun's work: its Size is written after its body, at an offset in the buffer */
static int
enc_fun_at(Enc *e, PyObject *f, long long depth)
{
    PyObject *o = NULL, *fv = NULL, *seq = NULL;
    Py_ssize_t size_at, body_at, i, nfree;
    unsigned long long index;
    long arity;
    ENSURE(e, 5);
    w8(e, NEW_FUN_EXT);
    size_at = e->len;
    e->len += 4; /* Size, written at the end */
    body_at = e->len;
    /* arity: body.append(f.arity) */
    o = field(f, T_Fun, &F_fun_arity);
    if (o == NULL)
        return -1;
    {
        int overflow; /* as bytearray.append: any __index__ object, then the range */
        arity = PyLong_AsLongAndOverflow(o, &overflow);
        if (arity == -1 && PyErr_Occurred())
            goto fail;
        if (overflow)
            arity = -1;
    }
    if (arity < 0 || arity > 255) {
        PyErr_SetString(PyExc_ValueError, "byte must be in range(0, 256)");
        goto fail;
    }
    Py_CLEAR(o);
    if (e->cap - e->len < 1 && enc_grow(e, 1) < 0)
        goto fail;
    w8(e, (unsigned int)arity);
    /* uniq */
    o = field(f, T_Fun, &F_fun_uniq);
    if (o == NULL || enc_buffer_raw(e, o) < 0)
        goto fail;
    Py_CLEAR(o);
    /* index, len(free_vars) */
    o = field(f, T_Fun, &F_fun_index);
    if (o == NULL)
        goto fail;
    fv = field(f, T_Fun, &F_fun_free_vars);
    if (fv == NULL)
        goto fail;
    nfree = PyObject_Size(fv);
    if (nfree < 0)
        goto fail;
    {
        int r = pack_uint(o, 0xFFFFFFFFULL, &index);
        if (r < 0)
            goto fail;
        if (r > 0) {
            struct_error_of(">I", o, pack_messages[r]);
            goto fail;
        }
        if ((unsigned long long)nfree > 0xFFFFFFFFULL) {
            struct_error(U32_RANGE);
            goto fail;
        }
    }
    Py_CLEAR(o);
    if (e->cap - e->len < 8 && enc_grow(e, 8) < 0)
        goto fail;
    w32(e, (uint32_t)index);
    w32(e, (uint32_t)nfree);
    /* module, old_index, old_uniq, pid */
    o = field(f, T_Fun, &F_fun_module);
    if (o == NULL || enc_atom(e, o) < 0)
        goto fail;
    Py_CLEAR(o);
    o = field(f, T_Fun, &F_fun_old_index);
    if (o == NULL || enc_int_field(e, o) < 0)
        goto fail;
    Py_CLEAR(o);
    o = field(f, T_Fun, &F_fun_old_uniq);
    if (o == NULL || enc_int_field(e, o) < 0)
        goto fail;
    Py_CLEAR(o);
    o = field(f, T_Fun, &F_fun_pid);
    if (o == NULL || enc_pid(e, o) < 0)
        goto fail;
    Py_CLEAR(o);
    /* free variables, one level down (the fun itself is not a checked level) */
    seq = PySequence_Tuple(fv);
    if (seq == NULL)
        goto fail;
    if (PyTuple_GET_SIZE(seq) > 0) {
        if (nest_enter(&e->nest) < 0)
            goto fail;
        for (i = 0; i < PyTuple_GET_SIZE(seq); i++) {
            if (enc(e, PyTuple_GET_ITEM(seq, i), depth - 1) < 0) {
                nest_leave(&e->nest);
                goto fail;
            }
        }
        nest_leave(&e->nest);
    }
    Py_DECREF(seq);
    Py_DECREF(fv);
    {
        Py_ssize_t size = e->len - body_at + 4;
        if ((unsigned long long)size > 0xFFFFFFFFULL) {
            struct_error(U32_RANGE);
            return -1;
        }
        unsigned char *p = e->p + size_at;
        p[0] = (unsigned char)(size >> 24);
        p[1] = (unsigned char)(size >> 16);
        p[2] = (unsigned char)(size >> 8);
        p[3] = (unsigned char)size;
    }
    return 0;
fail:
    Py_XDECREF(o);
    Py_XDECREF(fv);
    Py_XDECREF(seq);
    return -1;
}

/* a fun: its free variables are copied into its body, not kept apart as parts (an offset
 * into the buffer must hold till its Size is written) */
NOINLINE static int
enc_fun(Enc *e, PyObject *f, long long depth)
{
    PyObject *iov = e->iov;
    e->iov = NULL;
    int r = enc_fun_at(e, f, depth);
    e->iov = iov;
    return r;
}

static int
enc_memoryview(Enc *e, PyObject *m)
{
    Py_buffer view;
    if (PyObject_GetBuffer(m, &view, PyBUF_FULL_RO) < 0)
        return -1;
    if (!PyBuffer_IsContiguous(&view, 'C')) {
        int plain = view.ndim == 1 && view.format != NULL && strcmp(view.format, "B") == 0;
        PyBuffer_Release(&view);
        if (plain) /* no cast: ``out += b`` refuses it */
            PyErr_SetString(PyExc_TypeError, "can't concat memoryview to bytearray");
        else
            PyErr_SetString(PyExc_TypeError,
                            "memoryview: casts are restricted to C-contiguous views");
        return -1;
    }
    int r = enc_bin(e, view.buf, view.len);
    PyBuffer_Release(&view);
    return r;
}

/* enc() on the result of a conversion (str(x), tuple(x)...), one guarded level down */
static int
enc_converted(Enc *e, PyObject *conv, long long depth)
{
    if (conv == NULL)
        return -1;
    int r = -1;
    if (nest_enter(&e->nest) == 0) {
        r = enc(e, conv, depth);
        nest_leave(&e->nest);
    }
    Py_DECREF(conv);
    return r;
}

NOINLINE static int
enc_other(Enc *e, PyObject *x, PyTypeObject *t, long long depth)
{
    if (e->nogrow)
        return enc_bail(e);
    if (t == T_Port)
        return enc_port(e, x);
    if (t == T_Improper)
        return enc_improper(e, x, depth);
    if (t == T_Bits)
        return enc_bits(e, x);
    if (t == T_FList) {
        if (depth <= 0)
            return too_deep();
        return enc_list_body(e, x, 0, depth - 1);
    }
    if (t == T_FMap) {
        PyObject *d = field(x, T_FMap, &F_fm_d);
        if (d == NULL)
            return -1;
        int r;
        if (PyDict_CheckExact(d))
            r = enc_dict(e, d, depth);
        else { /* dict(x.items()) */
            PyObject *items = PyObject_CallMethodNoArgs(x, S_items);
            PyObject *dd = items ? PyObject_CallOneArg((PyObject *)&PyDict_Type, items) : NULL;
            Py_XDECREF(items);
            r = enc_converted(e, dd, depth);
        }
        Py_DECREF(d);
        return r;
    }
    if (t == T_Struct) { /* its own key order: a decoded struct encodes as erl encoded it */
        PyObject *d = field(x, T_Struct, &F_fm_d);
        if (d == NULL)
            return -1;
        int r = PyDict_CheckExact(d) ? enc_dict(e, d, depth) : enc_converted(e, PyObject_CallOneArg((PyObject *)&PyDict_Type, d), depth);
        Py_DECREF(d);
        return r;
    }
    if (t == T_Export)
        return enc_export(e, x);
    if (t == T_Fun)
        return enc_fun(e, x, depth);
    if (t == &PyMemoryView_Type)
        return enc_memoryview(e, x);
    /* subclasses of the builtins (IntEnum, str enums, NamedTuple, OrderedDict, ...) */
    if (PyBool_Check(x)) {
        const char *s = x == Py_True ? "\x77\x04true" : "\x77\x05" "false";
        Py_ssize_t n = x == Py_True ? 6 : 7;
        ENSURE(e, n);
        wmem(e, s, n);
        return 0;
    }
    if (PyObject_TypeCheck(x, T_Atom))
        return enc_atom(e, x);
    if (PyLong_Check(x)) {
        PyObject *v = PyObject_CallOneArg((PyObject *)&PyLong_Type, x);
        if (v == NULL)
            return -1;
        int r = enc_int(e, v);
        Py_DECREF(v);
        return r;
    }
    if (PyFloat_Check(x)) {
        PyObject *v = PyObject_CallOneArg((PyObject *)&PyFloat_Type, x);
        if (v == NULL)
            return -1;
        int r = enc_float(e, v);
        Py_DECREF(v);
        return r;
    }
    if (PyUnicode_Check(x))
        return enc_converted(e, PyObject_CallOneArg((PyObject *)&PyUnicode_Type, x), depth);
    if (PyBytes_Check(x) || PyByteArray_Check(x)) {
        PyObject *v = PyObject_CallOneArg((PyObject *)&PyBytes_Type, x);
        if (v == NULL)
            return -1;
        int r = enc_bin(e, PyBytes_AS_STRING(v), PyBytes_GET_SIZE(v));
        Py_DECREF(v);
        return r;
    }
    if (PyTuple_Check(x))
        return enc_converted(e, PyObject_CallOneArg((PyObject *)&PyTuple_Type, x), depth);
    if (PyList_Check(x))
        return enc_converted(e, PyObject_CallOneArg((PyObject *)&PyList_Type, x), depth);
    if (PyDict_Check(x))
        return enc_converted(e, PyObject_CallOneArg((PyObject *)&PyDict_Type, x), depth);
    PyObject *name = PyObject_GetAttrString((PyObject *)t, "__name__");
    if (name == NULL)
        return -1;
    PyObject *msg =
        PyUnicode_FromFormat("cannot encode %S object as an Erlang term: %.80R", name, x);
    Py_DECREF(name);
    return enc_error(msg);
}

static int
enc(Enc *e, PyObject *x, long long depth)
{
    PyTypeObject *t = Py_TYPE(x);
    if (t == &PyLong_Type)
        return enc_int(e, x);
    if (t == T_Atom)
        return enc_atom(e, x);
    if (t == &PyTuple_Type)
        return enc_tuple(e, x, depth);
    if (t == &PyList_Type) {
        if (depth <= 0)
            return too_deep();
        return enc_list_body(e, x, 1, depth - 1);
    }
    if (t == &PyBytes_Type) {
        if (e->iov != NULL && PyBytes_GET_SIZE(x) >= IOV_MIN)
            return enc_bin_ref(e, x);
        return enc_bin(e, PyBytes_AS_STRING(x), PyBytes_GET_SIZE(x));
    }
    if (t == &PyUnicode_Type)
        return enc_str(e, x);
    if (t == &PyFloat_Type)
        return enc_float(e, x);
    if (t == &PyDict_Type)
        return enc_dict(e, x, depth);
    if (t == &PyBool_Type) {
        if (x == Py_True) {
            ENSURE(e, 6);
            wmem(e, "\x77\x04true", 6);
        }
        else {
            ENSURE(e, 7);
            wmem(e, "\x77\x05" "false", 7);
        }
        return 0;
    }
    if (x == Py_None) {
        ENSURE(e, 11);
        wmem(e, "\x77\x09undefined", 11);
        return 0;
    }
    if (t == T_Pid)
        return enc_pid(e, x);
    if (t == T_Ref)
        return enc_ref(e, x);
    if (t == &PyByteArray_Type)
        return enc_bin(e, PyByteArray_AS_STRING(x), PyByteArray_GET_SIZE(x));
    return enc_other(e, x, t, depth);
}

static PyObject *
zlib_message(z_stream *zs, int err, const char *what)
{
    const char *zmsg = NULL;
    if (err == Z_VERSION_ERROR)
        zmsg = "library version mismatch";
    if (zmsg == NULL)
        zmsg = zs->msg;
    if (zmsg == NULL) {
        switch (err) {
        case Z_BUF_ERROR:
            zmsg = "incomplete or truncated stream";
            break;
        case Z_STREAM_ERROR:
            zmsg = "inconsistent stream state";
            break;
        case Z_DATA_ERROR:
            zmsg = "invalid input data";
            break;
        }
    }
    if (zmsg == NULL)
        return PyUnicode_FromFormat("Error %d %s", err, what);
    return PyUnicode_FromFormat("Error %d %s: %.200s", err, what, zmsg);
}

/* The encoded bytes, compressed when that is smaller (by more than the 5 header bytes),
 * as zlib.compress(raw, level) would compress them. */
static PyObject *
enc_compress(Enc *e, int versioned, int level)
{
    z_stream zs;
    memset(&zs, 0, sizeof(zs));
    int err = deflateInit(&zs, level);
    if (err == Z_MEM_ERROR) {
        PyErr_SetString(PyExc_MemoryError, "Out of memory while compressing data");
        return NULL;
    }
    if (err == Z_STREAM_ERROR) {
        PyErr_SetString(E_zlib, "Bad compression level");
        return NULL;
    }
    if (err != Z_OK) {
        PyObject *m = zlib_message(&zs, err, "while compressing data");
        deflateEnd(&zs);
        if (m) {
            PyErr_SetObject(E_zlib, m);
            Py_DECREF(m);
        }
        return NULL;
    }
    Py_ssize_t start = versioned ? 1 : 0, rawlen = e->len - start;
    if (rawlen <= 6) { /* 5 header bytes plus a stream of at least one byte: never smaller */
        deflateEnd(&zs);
        return PyBytes_FromStringAndSize((const char *)e->p, e->len);
    }
    Py_ssize_t hdr = start + 5, zcap = rawlen - 6;
    PyObject *out = PyBytes_FromStringAndSize(NULL, hdr + zcap);
    if (out == NULL) {
        deflateEnd(&zs);
        return NULL;
    }
    unsigned char *in = e->p + start, *op = (unsigned char *)PyBytes_AS_STRING(out) + hdr;
    size_t in_left = (size_t)rawlen, out_left = (size_t)zcap;
    int big = rawlen > 65536;
    for (;;) {
        if (zs.avail_in == 0 && in_left) {
            uInt c = in_left > UINT_MAX ? UINT_MAX : (uInt)in_left;
            zs.next_in = in;
            zs.avail_in = c;
            in += c;
            in_left -= c;
        }
        if (zs.avail_out == 0) {
            if (out_left == 0)
                break; /* not smaller */
            uInt c = out_left > UINT_MAX ? UINT_MAX : (uInt)out_left;
            zs.next_out = op;
            zs.avail_out = c;
            op += c;
            out_left -= c;
        }
        if (big) {
            Py_BEGIN_ALLOW_THREADS
            err = deflate(&zs, in_left ? Z_NO_FLUSH : Z_FINISH);
            Py_END_ALLOW_THREADS
        }
        else
            err = deflate(&zs, in_left ? Z_NO_FLUSH : Z_FINISH);
        if (err == Z_STREAM_END)
            break;
        if (err != Z_OK && err != Z_BUF_ERROR) {
            PyObject *m = zlib_message(&zs, err, "while compressing data");
            deflateEnd(&zs);
            Py_DECREF(out);
            if (m) {
                PyErr_SetObject(E_zlib, m);
                Py_DECREF(m);
            }
            return NULL;
        }
        if (err == Z_BUF_ERROR && zs.avail_out != 0 && zs.avail_in == 0 && in_left == 0)
            break; /* cannot happen with Z_FINISH; never loop on it */
    }
    if (err != Z_STREAM_END) {
        deflateEnd(&zs);
        Py_DECREF(out);
        return PyBytes_FromStringAndSize((const char *)e->p, e->len);
    }
    Py_ssize_t zlen = (Py_ssize_t)(op - ((unsigned char *)PyBytes_AS_STRING(out) + hdr)) -
                      (Py_ssize_t)zs.avail_out;
    deflateEnd(&zs);
    if ((unsigned long long)rawlen > 0xFFFFFFFFULL) {
        Py_DECREF(out);
        struct_error(U32_RANGE);
        return NULL;
    }
    unsigned char *p = (unsigned char *)PyBytes_AS_STRING(out);
    if (versioned)
        *p++ = VERSION;
    *p++ = COMPRESSED;
    p[0] = (unsigned char)(rawlen >> 24);
    p[1] = (unsigned char)(rawlen >> 16);
    p[2] = (unsigned char)(rawlen >> 8);
    p[3] = (unsigned char)rawlen;
    if (_PyBytes_Resize(&out, hdr + zlen) < 0)
        return NULL;
    return out;
}

static ArgSpec encode_spec = {
    "encode", 4, 1, 1, {"term", "compressed", "versioned", "max_depth"}, {NULL}};

static PyObject *
py_encode(PyObject *module, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    PyObject *a[4];
    long long depth = 10000;
    int versioned = 1;
    (void)module;
    if (parse_args(&encode_spec, args, nargs, kwnames, a) < 0)
        return NULL;
    if (a[2] != NULL && (versioned = PyObject_IsTrue(a[2])) < 0)
        return NULL;
    if (a[3] != NULL && depth_arg(a[3], &depth) < 0)
        return NULL;

    Enc e;
    enc_init(&e);
    if (versioned)
        w8(&e, VERSION);
    if (enc(&e, a[0], depth) < 0) {
        enc_failed(&e);
        return NULL;
    }
    PyObject *result;
    if (a[1] != NULL && a[1] != Py_False) {
        long level = 6;
        if (a[1] != Py_True) {
            PyObject *lv = PyNumber_Long(a[1]);
            if (lv == NULL) {
                Py_XDECREF(e.bytes);
                return NULL;
            }
            int overflow;
            level = PyLong_AsLongAndOverflow(lv, &overflow);
            Py_DECREF(lv);
            if (overflow || level > INT_MAX || level < INT_MIN) {
                Py_XDECREF(e.bytes);
                PyErr_SetString(PyExc_OverflowError, "Python int too large to convert to C int");
                return NULL;
            }
        }
        result = enc_compress(&e, versioned, (int)level);
        Py_XDECREF(e.bytes);
        return result;
    }
    if (e.bytes == NULL)
        return PyBytes_FromStringAndSize((const char *)e.stack, e.len);
    result = e.bytes;
    if (_PyBytes_Resize(&result, e.len) < 0)
        return NULL;
    return result;
}

/* ---------------------------------------------------------------------------------------- */
/* decoding */

typedef struct {
    const unsigned char *buf;
    Py_ssize_t end;
    PyObject *atom_cache; /* borrowed; NULL for None */
    PyObject *const *refs; /* the refs of a distribution header (used when not NULL) */
    Py_ssize_t nrefs;
    long long max_unc;
    PyObject *max_unc_obj; /* borrowed, for the message */
    int nest;
} Dec;

NOINLINE static PyObject *
dec_err(Py_ssize_t off, const char *fmt, ...)
{
    va_list va;
    va_start(va, fmt);
    PyObject *msg = PyUnicode_FromFormatV(fmt, va);
    va_end(va);
    if (msg == NULL)
        return NULL;
    PyObject *exc = PyObject_CallFunction(E_Decode, "On", msg, off);
    Py_DECREF(msg);
    if (exc != NULL) {
        PyErr_SetObject((PyObject *)Py_TYPE(exc), exc);
        Py_DECREF(exc);
    }
    return NULL;
}

static PyObject *
truncated(Py_ssize_t pos)
{
    return dec_err(pos, "unexpected end of input");
}

/* Atoms decoded before, by their UTF-8 bytes: a direct-mapped cache. */
#define ACACHE_SIZE 4096
typedef struct {
    uint64_t h;
    PyObject *key; /* bytes */
    PyObject *atom;
} AEnt;
static AEnt acache[ACACHE_SIZE];

static inline uint64_t
hash_raw(const unsigned char *p, Py_ssize_t n)
{
    uint64_t h = 1469598103934665603ULL ^ (uint64_t)n;
    for (Py_ssize_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 1099511628211ULL;
    }
    return h;
}

NOINLINE static PyObject *
mk_atom(const unsigned char *raw, Py_ssize_t n, Py_ssize_t pos, int latin1)
{
    if (n == 4 && memcmp(raw, "true", 4) == 0)
        Py_RETURN_TRUE;
    if (n == 5 && memcmp(raw, "false", 5) == 0)
        Py_RETURN_FALSE;
    if (latin1) {
        Py_ssize_t i;
        for (i = 0; i < n && raw[i] < 0x80; i++)
            ;
        if (i == n)
            latin1 = 0; /* ASCII: the same text either way */
    }
    AEnt *ent = NULL;
    uint64_t h = 0;
    if (!latin1) {
        h = hash_raw(raw, n);
        ent = &acache[h & (ACACHE_SIZE - 1)];
        if (ent->atom != NULL && ent->h == h && PyBytes_GET_SIZE(ent->key) == n &&
            memcmp(PyBytes_AS_STRING(ent->key), raw, (size_t)n) == 0) {
            Py_INCREF(ent->atom);
            return ent->atom;
        }
    }
    PyObject *text = latin1 ? PyUnicode_DecodeLatin1((const char *)raw, n, NULL)
                            : PyUnicode_DecodeUTF8((const char *)raw, n, NULL);
    if (text == NULL) {
        if (PyErr_ExceptionMatches(PyExc_UnicodeDecodeError)) {
            PyErr_Clear();
            return dec_err(pos, "atom is not valid UTF-8");
        }
        return NULL;
    }
    Py_ssize_t len = PyUnicode_GET_LENGTH(text);
    if (len > 255) {
        Py_DECREF(text);
        return dec_err(pos, "atom longer than 255 characters (%zd)", len);
    }
    if (len == 4 && PyUnicode_CompareWithASCIIString(text, "true") == 0) {
        Py_DECREF(text);
        Py_RETURN_TRUE;
    }
    if (len == 5 && PyUnicode_CompareWithASCIIString(text, "false") == 0) {
        Py_DECREF(text);
        Py_RETURN_FALSE;
    }
    PyObject *atom = PyObject_CallOneArg((PyObject *)T_Atom, text);
    Py_DECREF(text);
    if (atom == NULL)
        return NULL;
    if (ent != NULL) {
        PyObject *key = PyBytes_FromStringAndSize((const char *)raw, n);
        if (key == NULL) {
            Py_DECREF(atom);
            return NULL;
        }
        PyObject *old_key = ent->key, *old_atom = ent->atom;
        ent->h = h;
        ent->key = key;
        Py_INCREF(atom);
        ent->atom = atom;
        Py_XDECREF(old_key);
        Py_XDECREF(old_atom);
    }
    return atom;
}

static PyObject *dec(Dec *d, Py_ssize_t *ppos, long long depth);

NOINLINE static PyObject *
dec_cache_ref(Dec *d, Py_ssize_t *ppos)
{
    Py_ssize_t pos = *ppos;
    if (pos + 1 > d->end)
        return truncated(pos);
    unsigned int i = d->buf[pos];
    PyObject *cache = d->atom_cache, *a = NULL;
    if (d->refs != NULL) {
        if ((Py_ssize_t)i >= d->nrefs)
            return dec_err(pos - 1, "ATOM_CACHE_REF %u is not in the atom cache", i);
        a = d->refs[i];
        Py_INCREF(a);
        if (Py_TYPE(a) == T_Atom || Py_TYPE(a) == &PyBool_Type) {
            *ppos = pos + 1;
            return a;
        }
        goto convert;
    }
    if (cache == NULL)
        return dec_err(pos - 1, "ATOM_CACHE_REF without an atom cache");
    Py_ssize_t n = PyObject_Size(cache);
    if (n < 0)
        return NULL;
    if ((Py_ssize_t)i < n) {
        PyObject *key = PyLong_FromLong((long)i);
        if (key == NULL)
            return NULL;
        a = PyObject_GetItem(cache, key);
        Py_DECREF(key);
        if (a == NULL)
            return NULL;
    }
    if (a == NULL || a == Py_None) {
        Py_XDECREF(a);
        return dec_err(pos - 1, "ATOM_CACHE_REF %u is not in the atom cache", i);
    }
convert:
    if (Py_TYPE(a) != T_Atom && Py_TYPE(a) != &PyBool_Type) {
        PyObject *s = PyObject_Str(a);
        Py_DECREF(a);
        if (s == NULL)
            return NULL;
        PyObject *raw = PyUnicode_AsUTF8String(s);
        Py_DECREF(s);
        if (raw == NULL)
            return NULL;
        a = mk_atom((const unsigned char *)PyBytes_AS_STRING(raw), PyBytes_GET_SIZE(raw), pos, 0);
        Py_DECREF(raw);
        if (a == NULL)
            return NULL;
    }
    *ppos = pos + 1;
    return a;
}

/* An atom in any of its encodings (node names, fun modules...): true and false come back
 * as Atom('true') and Atom('false'), a cache reference as what the cache holds. */
static PyObject *
dec_atom_any(Dec *d, Py_ssize_t *ppos)
{
    const unsigned char *buf = d->buf;
    Py_ssize_t end = d->end, pos = *ppos, n;
    if (pos + 1 > end)
        return truncated(pos);
    int tag = buf[pos++];
    if (tag == SMALL_ATOM_UTF8_EXT || tag == SMALL_ATOM_EXT) {
        if (pos + 1 > end)
            return truncated(pos);
        n = buf[pos];
        pos += 1;
    }
    else if (tag == ATOM_UTF8_EXT || tag == ATOM_EXT) {
        if (pos + 2 > end)
            return truncated(pos);
        n = be16(buf + pos);
        pos += 2;
    }
    else if (tag == ATOM_CACHE_REF) {
        *ppos = pos;
        return dec_cache_ref(d, ppos);
    }
    else
        return dec_err(pos - 1, "expected an atom, found tag %d", tag);
    if (pos + n > end)
        return dec_err(pos, "atom of %zd bytes is longer than the input", n);
    PyObject *a = mk_atom(buf + pos, n, pos, tag == SMALL_ATOM_EXT || tag == ATOM_EXT);
    if (a == NULL)
        return NULL;
    if (a == Py_True || a == Py_False) {
        PyObject *b = a == Py_True ? O_atom_true : O_atom_false;
        Py_DECREF(a);
        Py_INCREF(b);
        a = b;
    }
    *ppos = pos + n;
    return a;
}

/* node as Pid/Port/Reference.__init__ store it (an Atom whatever they are given) */
static PyObject *
as_atom(PyObject *node)
{
    if (Py_TYPE(node) == T_Atom)
        return node;
    PyObject *a = PyObject_CallOneArg((PyObject *)T_Atom, node);
    Py_DECREF(node);
    return a;
}

static PyObject *
mk_pid(PyObject *node, uint32_t id, uint32_t serial, uint32_t creation)
{
    /* steals node */
    PyObject *i = NULL, *s = NULL, *c = NULL, *p;
    if ((node = as_atom(node)) == NULL)
        return NULL;
    if ((i = PyLong_FromUnsignedLong(id)) == NULL ||
        (s = PyLong_FromUnsignedLong(serial)) == NULL ||
        (c = PyLong_FromUnsignedLong(creation)) == NULL ||
        (p = T_Pid->tp_alloc(T_Pid, 0)) == NULL) {
        Py_DECREF(node);
        Py_XDECREF(i);
        Py_XDECREF(s);
        Py_XDECREF(c);
        return NULL;
    }
    SET_SLOT(p, F_pid_node, node);
    SET_SLOT(p, F_pid_id, i);
    SET_SLOT(p, F_pid_serial, s);
    SET_SLOT(p, F_pid_creation, c);
    return p;
}

static PyObject *
mk_port(PyObject *node, unsigned long long id, uint32_t creation)
{
    PyObject *i = NULL, *c = NULL, *p;
    if ((node = as_atom(node)) == NULL)
        return NULL;
    if ((i = PyLong_FromUnsignedLongLong(id)) == NULL ||
        (c = PyLong_FromUnsignedLong(creation)) == NULL ||
        (p = T_Port->tp_alloc(T_Port, 0)) == NULL) {
        Py_DECREF(node);
        Py_XDECREF(i);
        Py_XDECREF(c);
        return NULL;
    }
    SET_SLOT(p, F_port_node, node);
    SET_SLOT(p, F_port_id, i);
    SET_SLOT(p, F_port_creation, c);
    return p;
}

/* ids: n big-endian words at p */
static PyObject *
mk_ref(PyObject *node, uint32_t creation, const unsigned char *p, Py_ssize_t n)
{
    PyObject *c = NULL, *ids = NULL, *r;
    Py_ssize_t i;
    if ((node = as_atom(node)) == NULL)
        return NULL;
    if ((c = PyLong_FromUnsignedLong(creation)) == NULL || (ids = PyTuple_New(n)) == NULL)
        goto fail;
    for (i = 0; i < n; i++) {
        PyObject *v = PyLong_FromUnsignedLong(be32(p + 4 * i));
        if (v == NULL)
            goto fail;
        PyTuple_SET_ITEM(ids, i, v);
    }
    if ((r = T_Ref->tp_alloc(T_Ref, 0)) == NULL)
        goto fail;
    SET_SLOT(r, F_ref_node, node);
    SET_SLOT(r, F_ref_creation, c);
    SET_SLOT(r, F_ref_ids, ids);
    return r;
fail:
    Py_DECREF(node);
    Py_XDECREF(c);
    Py_XDECREF(ids);
    return NULL;
}

static PyObject *
dec_pid_body(Dec *d, int tag, Py_ssize_t *ppos)
{
    Py_ssize_t pos = *ppos;
    PyObject *node = dec_atom_any(d, &pos);
    if (node == NULL)
        return NULL;
    const unsigned char *b = d->buf + pos;
    if (tag == NEW_PID_EXT) {
        if (pos + 12 > d->end) {
            Py_DECREF(node);
            return truncated(pos);
        }
        *ppos = pos + 12;
        return mk_pid(node, be32(b), be32(b + 4), be32(b + 8));
    }
    if (pos + 9 > d->end) {
        Py_DECREF(node);
        return truncated(pos);
    }
    *ppos = pos + 9;
    return mk_pid(node, be32(b), be32(b + 4), b[8]);
}

/* decode one whole term that must be an int (EXPORT_EXT arity, fun indexes) */
static PyObject *
dec_int_any(Dec *d, Py_ssize_t *ppos, long long depth)
{
    if (nest_enter(&d->nest) < 0)
        return NULL;
    PyObject *v = dec(d, ppos, depth);
    nest_leave(&d->nest);
    if (v != NULL && Py_TYPE(v) != &PyLong_Type) {
        Py_DECREF(v);
        return dec_err(*ppos, "expected an integer");
    }
    return v;
}

/* An Elixir struct (a map with an atom __struct__) wraps the map m, stolen; else m itself.
 * As Struct._from_map: no copy, erl's key order kept. */
static PyObject *
struct_of(PyObject *m)
{
    PyObject *mod = PyDict_GetItemWithError(m, O_struct_key); /* borrowed */
    if (mod == NULL) {
        if (PyErr_Occurred()) {
            Py_DECREF(m);
            return NULL;
        }
        return m;
    }
    if (Py_TYPE(mod) != T_Atom)
        return m;
    PyObject *s = T_Struct->tp_alloc(T_Struct, 0);
    if (s == NULL) {
        Py_DECREF(m);
        return NULL;
    }
    SET_SLOT(s, F_fm_d, m);
    Py_INCREF(Py_None);
    SET_SLOT(s, F_fm_h, Py_None);
    return s;
}

/* the map of the n keys and values that alternate in items (a list), as _map_of */
static PyObject *
distinct_key(PyObject *k)
{
    if (Py_TYPE(k) == &PyBool_Type) {
        PyObject *a = k == Py_True ? O_atom_true : O_atom_false;
        Py_INCREF(a);
        return a;
    }
    if (Py_TYPE(k) == &PyFloat_Type)
        return PyObject_CallOneArg(O_ErlFloatKey, k);
    if (PyObject_Hash(k) == -1) {
        if (!PyErr_ExceptionMatches(PyExc_TypeError))
            return NULL;
        PyErr_Clear();
        return PyObject_CallOneArg(O_freeze, k);
    }
    Py_INCREF(k);
    return k;
}

/* The pure codec's _check_duplicate_keys (which tells the keys apart by their encoding). The
 * twin imports _codec_py only here, on the first map with a duplicate key: importing it at
 * start costs the pynode command milliseconds. */
static PyObject *
check_dups(PyObject *items, Py_ssize_t n, Py_ssize_t offset)
{
    if (O_check_dups == NULL) {
        PyObject *fn, *py = PyImport_ImportModule("pynode.term._codec_py");
        if (py == NULL)
            return NULL;
        fn = PyObject_GetAttrString(py, "_check_duplicate_keys");
        Py_DECREF(py);
        if (fn == NULL)
            return NULL;
        if (O_check_dups == NULL) /* the import may have let another thread store it */
            O_check_dups = fn;
        else
            Py_DECREF(fn);
    }
    return PyObject_CallFunction(O_check_dups, "Onn", items, n, offset);
}

NOINLINE static PyObject *
map_of(PyObject *items, Py_ssize_t n, Py_ssize_t offset)
{
    Py_ssize_t i;
    PyObject **it = ((PyListObject *)items)->ob_item;
    PyObject *m = PyDict_New();
    if (m == NULL)
        return NULL;
    for (i = 0; i < n; i++) {
        if (PyDict_SetItem(m, it[2 * i], it[2 * i + 1]) < 0)
            goto unhashable;
    }
    if (PyDict_GET_SIZE(m) == n)
        return m;
    goto distinct;
unhashable: /* a list or map as a key: frozen */
    Py_CLEAR(m);
    if (!PyErr_ExceptionMatches(PyExc_TypeError))
        return NULL;
    PyErr_Clear();
    for (i = 0; i < n; i++) {
        PyObject *k = PyList_GET_ITEM(items, 2 * i);
        if (PyObject_Hash(k) == -1) {
            if (!PyErr_ExceptionMatches(PyExc_TypeError))
                return NULL;
            PyErr_Clear();
            PyObject *f = PyObject_CallOneArg(O_freeze, k);
            if (f == NULL)
                return NULL;
            PyList_SET_ITEM(items, 2 * i, f);
            Py_DECREF(k);
        }
    }
    it = ((PyListObject *)items)->ob_item;
    m = PyDict_New();
    if (m == NULL)
        return NULL;
    for (i = 0; i < n; i++) {
        if (PyDict_SetItem(m, it[2 * i], it[2 * i + 1]) < 0) {
            Py_DECREF(m);
            return NULL;
        }
    }
    if (PyDict_GET_SIZE(m) == n)
        return m;
distinct: /* keys Python treats as equal but Erlang does not (1, 1.0, true) */
    Py_DECREF(m);
    m = PyDict_New();
    if (m == NULL)
        return NULL;
    for (i = 0; i < n; i++) {
        PyObject *k = distinct_key(PyList_GET_ITEM(items, 2 * i));
        if (k == NULL || PyDict_SetItem(m, k, PyList_GET_ITEM(items, 2 * i + 1)) < 0) {
            Py_XDECREF(k);
            Py_DECREF(m);
            return NULL;
        }
        Py_DECREF(k);
    }
    if (PyDict_GET_SIZE(m) != n) { /* the same key twice: erts says badarg */
        PyObject *r = check_dups(items, n, offset);
        if (r == NULL) {
            Py_DECREF(m);
            return NULL;
        }
        Py_DECREF(r);
    }
    return m;
}

NOINLINE static PyObject *
dec_compressed(Dec *d, Py_ssize_t *ppos, long long depth)
{
    Py_ssize_t pos = *ppos;
    if (pos + 4 > d->end)
        return truncated(pos);
    uint32_t size = be32(d->buf + pos);
    if ((long long)size > d->max_unc)
        return dec_err(pos, "compressed term claims %lu bytes, over the limit of %S",
                       (unsigned long)size, d->max_unc_obj);
    z_stream zs;
    memset(&zs, 0, sizeof(zs));
    int err = inflateInit(&zs);
    if (err != Z_OK) {
        if (err == Z_MEM_ERROR)
            PyErr_SetString(PyExc_MemoryError, "Can't allocate memory for decompression object");
        else {
            PyObject *m = zlib_message(&zs, err, "while creating decompression object");
            if (m) {
                PyErr_SetObject(E_zlib, m);
                Py_DECREF(m);
            }
        }
        inflateEnd(&zs);
        return NULL;
    }
    const unsigned char *in = d->buf + pos + 4, *in0 = in;
    size_t in_left = (size_t)(d->end - pos - 4);
    size_t limit = (size_t)size + 1; /* decompress(data, max_length=size + 1) */
    size_t cap = limit < 65536 ? limit : 65536;
    unsigned char *out = PyMem_Malloc(cap), *tmp;
    PyObject *v = NULL;
    if (out == NULL) {
        inflateEnd(&zs);
        return PyErr_NoMemory();
    }
    zs.next_out = out;
    zs.avail_out = (uInt)cap;
    int big = size > 65536;
    for (;;) {
        if (zs.avail_in == 0 && in_left) {
            uInt c = in_left > UINT_MAX ? UINT_MAX : (uInt)in_left;
            zs.next_in = (Bytef *)in;
            zs.avail_in = c;
            in += c;
            in_left -= c;
        }
        if (zs.avail_out == 0) {
            if (cap == limit)
                break;
            size_t ncap = cap * 2 < limit ? cap * 2 : limit;
            if ((tmp = PyMem_Realloc(out, ncap)) == NULL) {
                PyErr_NoMemory();
                goto done;
            }
            out = tmp;
            zs.next_out = out + cap;
            zs.avail_out = (uInt)(ncap - cap);
            cap = ncap;
        }
        if (big) {
            Py_BEGIN_ALLOW_THREADS
            err = inflate(&zs, Z_SYNC_FLUSH);
            Py_END_ALLOW_THREADS
        }
        else
            err = inflate(&zs, Z_SYNC_FLUSH);
        if (err == Z_STREAM_END)
            break;
        if (err != Z_OK && err != Z_BUF_ERROR) {
            PyObject *m = zlib_message(&zs, err, "while decompressing data");
            if (m) {
                dec_err(pos, "bad compressed data: %U", m);
                Py_DECREF(m);
            }
            goto done;
        }
        if (zs.avail_out != 0 && zs.avail_in == 0 && in_left == 0)
            break; /* the input is used up */
        if (err == Z_BUF_ERROR && zs.avail_out != 0)
            break; /* no progress possible */
    }
    {
        size_t got = (size_t)(zs.next_out - out);
        if (got != size || err != Z_STREAM_END) {
            dec_err(pos, "compressed term is not the %lu bytes its header claims",
                    (unsigned long)size);
            goto done;
        }
        size_t used = (size_t)((const unsigned char *)zs.next_in - in0);
        Dec inner = *d;
        inner.buf = out;
        inner.end = (Py_ssize_t)size;
        Py_ssize_t ipos = 0;
        if (nest_enter(&d->nest) < 0)
            goto done;
        inner.nest = d->nest;
        v = dec(&inner, &ipos, depth);
        nest_leave(&d->nest);
        if (v != NULL && ipos != (Py_ssize_t)size) {
            Py_CLEAR(v);
            dec_err(pos, "trailing bytes inside compressed term");
        }
        if (v != NULL)
            *ppos = pos + 4 + (Py_ssize_t)used;
    }
done:
    inflateEnd(&zs);
    PyMem_Free(out);
    return v;
}

NOINLINE static PyObject *
dec_fun(Dec *d, Py_ssize_t *ppos, long long depth)
{
    const unsigned char *buf = d->buf;
    Py_ssize_t end = d->end, pos = *ppos, start = pos, i;
    PyObject *uniq = NULL, *module = NULL, *old_index = NULL, *old_uniq = NULL, *pid = NULL,
             *free = NULL, *r = NULL;
    if (pos + 29 > end)
        return truncated(pos);
    uint32_t size = be32(buf + pos);
    if (size < 4 || (Py_ssize_t)size > end - start)
        return dec_err(pos, "fun of %lu bytes is longer than the input", (unsigned long)size);
    unsigned int arity = buf[pos + 4];
    uint32_t index = be32(buf + pos + 21), nfree = be32(buf + pos + 25);
    uniq = PyBytes_FromStringAndSize((const char *)buf + pos + 5, 16);
    if (uniq == NULL)
        return NULL;
    pos += 29;
    if ((Py_ssize_t)nfree > end - pos) {
        Py_DECREF(uniq);
        return dec_err(pos, "fun with %lu free variables is longer than the input",
                       (unsigned long)nfree);
    }
    if (nest_enter(&d->nest) < 0) {
        Py_DECREF(uniq);
        return NULL;
    }
    if ((module = dec_atom_any(d, &pos)) == NULL)
        goto done;
    if ((old_index = dec_int_any(d, &pos, depth)) == NULL)
        goto done;
    if ((old_uniq = dec_int_any(d, &pos, depth)) == NULL)
        goto done;
    if (pos + 1 > end) {
        truncated(pos);
        goto done;
    }
    {
        int ptag = buf[pos];
        if (ptag != NEW_PID_EXT && ptag != PID_EXT) {
            dec_err(pos, "expected a pid, found tag %d", ptag);
            goto done;
        }
        pos += 1;
        if ((pid = dec_pid_body(d, ptag, &pos)) == NULL)
            goto done;
    }
    if ((free = PyList_New(nfree)) == NULL)
        goto done;
    for (i = 0; i < (Py_ssize_t)nfree; i++) {
        PyObject *v = dec(d, &pos, depth - 1);
        if (v == NULL)
            goto done;
        PyList_SET_ITEM(free, i, v);
    }
    if (pos != start + (Py_ssize_t)size) {
        dec_err(start, "fun size does not match its contents");
        goto done;
    }
    {
        PyObject *ar = PyLong_FromLong((long)arity), *ix = PyLong_FromUnsignedLong(index);
        if (ar != NULL && ix != NULL)
            r = PyObject_CallFunctionObjArgs((PyObject *)T_Fun, module, ar, uniq, ix, old_index,
                                             old_uniq, pid, free, NULL);
        Py_XDECREF(ar);
        Py_XDECREF(ix);
    }
    if (r != NULL)
        *ppos = pos;
done:
    nest_leave(&d->nest);
    Py_XDECREF(uniq);
    Py_XDECREF(module);
    Py_XDECREF(old_index);
    Py_XDECREF(old_uniq);
    Py_XDECREF(pid);
    Py_XDECREF(free);
    return r;
}

static PyObject *
dec_bignum(const unsigned char *p, Py_ssize_t n, int sign)
{
    if (n <= 8) {
        unsigned long long mag = 0;
        for (Py_ssize_t i = n - 1; i >= 0; i--)
            mag = (mag << 8) | p[i];
        if (!sign)
            return PyLong_FromUnsignedLongLong(mag);
        if (mag <= (unsigned long long)LLONG_MAX)
            return PyLong_FromLongLong(-(long long)mag);
        PyObject *v = PyLong_FromUnsignedLongLong(mag);
        if (v == NULL)
            return NULL;
        PyObject *neg = PyNumber_Negative(v);
        Py_DECREF(v);
        return neg;
    }
    PyObject *v = _PyLong_FromByteArray(p, (size_t)n, 1, 0);
    if (v == NULL || !sign)
        return v;
    PyObject *neg = PyNumber_Negative(v);
    Py_DECREF(v);
    return neg;
}

NOINLINE static PyObject *
dec_rare(Dec *d, int tag, Py_ssize_t *ppos, long long depth)
{
    const unsigned char *buf = d->buf;
    Py_ssize_t end = d->end, pos = *ppos, n, i;
    switch (tag) {
    case ATOM_UTF8_EXT:
    case ATOM_EXT:
    case SMALL_ATOM_EXT: {
        pos -= 1;
        PyObject *a = dec_atom_any(d, &pos);
        if (a == NULL)
            return NULL;
        if (a == O_atom_true || a == O_atom_false) {
            PyObject *b = a == O_atom_true ? Py_True : Py_False;
            Py_DECREF(a);
            Py_INCREF(b);
            a = b;
        }
        *ppos = pos;
        return a;
    }
    case ATOM_CACHE_REF:
        return dec_cache_ref(d, ppos);
    case SMALL_BIG_EXT:
    case LARGE_BIG_EXT: {
        if (tag == SMALL_BIG_EXT) {
            if (pos + 2 > end)
                return truncated(pos);
            n = buf[pos];
            pos += 1;
        }
        else {
            if (pos + 5 > end)
                return truncated(pos);
            n = (Py_ssize_t)be32(buf + pos);
            pos += 4;
        }
        int sign = buf[pos] != 0;
        pos += 1;
        if (n > end - pos)
            return dec_err(pos, "bignum of %zd bytes is longer than the input", n);
        PyObject *v = dec_bignum(buf + pos, n, sign);
        if (v != NULL)
            *ppos = pos + n;
        return v;
    }
    case LARGE_TUPLE_EXT: {
        if (pos + 4 > end)
            return truncated(pos);
        n = (Py_ssize_t)be32(buf + pos);
        pos += 4;
        if (depth <= 0)
            return dec_err(pos, "term nested too deeply");
        if (n > end - pos)
            return dec_err(pos, "tuple of %zd elements is longer than the input", n);
        PyObject *t = PyTuple_New(n);
        if (t == NULL || n == 0) {
            if (t != NULL)
                *ppos = pos;
            return t;
        }
        if (nest_enter(&d->nest) < 0) {
            Py_DECREF(t);
            return NULL;
        }
        for (i = 0; i < n; i++) {
            PyObject *v = dec(d, &pos, depth - 1);
            if (v == NULL) {
                nest_leave(&d->nest);
                Py_DECREF(t);
                return NULL;
            }
            PyTuple_SET_ITEM(t, i, v);
        }
        nest_leave(&d->nest);
        *ppos = pos;
        return t;
    }
    case NEW_PID_EXT:
    case PID_EXT:
        return dec_pid_body(d, tag, ppos);
    case NEWER_REFERENCE_EXT:
    case NEW_REFERENCE_EXT: {
        if (pos + 2 > end)
            return truncated(pos);
        n = be16(buf + pos);
        if (n < 1 || n > 5)
            return dec_err(pos, "reference with %zd ids (1 to 5 allowed)", n);
        pos += 2;
        PyObject *node = dec_atom_any(d, &pos);
        if (node == NULL)
            return NULL;
        if (tag == NEWER_REFERENCE_EXT) {
            if (pos + 4 + 4 * n > end) {
                Py_DECREF(node);
                return truncated(pos);
            }
            *ppos = pos + 4 + 4 * n;
            return mk_ref(node, be32(buf + pos), buf + pos + 4, n);
        }
        if (pos + 1 + 4 * n > end) {
            Py_DECREF(node);
            return truncated(pos);
        }
        *ppos = pos + 1 + 4 * n;
        return mk_ref(node, buf[pos], buf + pos + 1, n);
    }
    case REFERENCE_EXT: {
        PyObject *node = dec_atom_any(d, &pos);
        if (node == NULL)
            return NULL;
        if (pos + 5 > end) {
            Py_DECREF(node);
            return truncated(pos);
        }
        *ppos = pos + 5;
        return mk_ref(node, buf[pos + 4], buf + pos, 1);
    }
    case NEW_PORT_EXT:
    case V4_PORT_EXT:
    case PORT_EXT: {
        PyObject *node = dec_atom_any(d, &pos);
        if (node == NULL)
            return NULL;
        Py_ssize_t need = tag == NEW_PORT_EXT ? 8 : tag == V4_PORT_EXT ? 12 : 5;
        if (pos + need > end) {
            Py_DECREF(node);
            return truncated(pos);
        }
        *ppos = pos + need;
        if (tag == NEW_PORT_EXT)
            return mk_port(node, be32(buf + pos), be32(buf + pos + 4));
        if (tag == V4_PORT_EXT)
            return mk_port(node, be64(buf + pos), be32(buf + pos + 8));
        return mk_port(node, be32(buf + pos), buf[pos + 4]);
    }
    case BIT_BINARY_EXT: {
        if (pos + 5 > end)
            return truncated(pos);
        n = (Py_ssize_t)be32(buf + pos);
        unsigned int bits = buf[pos + 4];
        pos += 5;
        if (n > end - pos)
            return dec_err(pos, "bitstring of %zd bytes is longer than the input", n);
        if (n == 0) {
            if (bits != 0 && bits != 8)
                return dec_err(pos, "empty bitstring with non-zero bit count");
            *ppos = pos;
            return PyBytes_FromStringAndSize(NULL, 0);
        }
        if (bits < 1 || bits > 8)
            return dec_err(pos, "bitstring with %u bits in its last byte", bits);
        PyObject *data = PyBytes_FromStringAndSize((const char *)buf + pos, n);
        if (data == NULL || bits == 8) {
            if (data != NULL)
                *ppos = pos + n;
            return data;
        }
        PyObject *r = PyObject_CallFunction((PyObject *)T_Bits, "Ni", data, (int)bits);
        if (r != NULL)
            *ppos = pos + n;
        return r;
    }
    case FLOAT_EXT: {
        if (pos + 31 > end)
            return truncated(pos);
        const unsigned char *z = memchr(buf + pos, 0, 31);
        Py_ssize_t len = z ? (Py_ssize_t)(z - (buf + pos)) : 31;
        PyObject *f = NULL, *s = PyUnicode_DecodeASCII((const char *)buf + pos, len, NULL);
        if (s != NULL) {
            f = PyFloat_FromString(s);
            Py_DECREF(s);
        }
        if (f == NULL) {
            if (!PyErr_ExceptionMatches(PyExc_ValueError))
                return NULL;
            PyErr_Clear();
            PyObject *text = PyBytes_FromStringAndSize((const char *)buf + pos, len);
            if (text == NULL)
                return NULL;
            dec_err(pos, "bad FLOAT_EXT text %R", text);
            Py_DECREF(text);
            return NULL;
        }
        if (!isfinite(PyFloat_AS_DOUBLE(f))) { /* "nan", "inf": erts makes none */
            Py_DECREF(f);
            PyObject *text = PyBytes_FromStringAndSize((const char *)buf + pos, len);
            if (text == NULL)
                return NULL;
            dec_err(pos, "bad FLOAT_EXT text %R", text);
            Py_DECREF(text);
            return NULL;
        }
        *ppos = pos + 31;
        return f;
    }
    case EXPORT_EXT: {
        PyObject *m = dec_atom_any(d, &pos), *f = NULL, *a = NULL, *r = NULL;
        if (m == NULL)
            return NULL;
        if ((f = dec_atom_any(d, &pos)) != NULL && (a = dec_int_any(d, &pos, depth)) != NULL)
            r = PyObject_CallFunctionObjArgs((PyObject *)T_Export, m, f, a, NULL);
        Py_DECREF(m);
        Py_XDECREF(f);
        Py_XDECREF(a);
        if (r != NULL)
            *ppos = pos;
        return r;
    }
    case NEW_FUN_EXT:
        return dec_fun(d, ppos, depth);
    case COMPRESSED:
        return dec_compressed(d, ppos, depth);
    case LOCAL_EXT:
        return dec_err(pos - 1, "LOCAL_EXT is node-local and cannot be decoded here");
    default:
        return dec_err(pos - 1, "unknown tag %d", tag);
    }
}

static PyObject *
dec(Dec *d, Py_ssize_t *ppos, long long depth)
{
    const unsigned char *buf = d->buf;
    Py_ssize_t end = d->end, pos = *ppos, n, i;
    if (pos >= end)
        return truncated(pos);
    int tag = buf[pos++];
    switch (tag) {
    case SMALL_INTEGER_EXT:
        if (pos >= end)
            return truncated(pos);
        *ppos = pos + 1;
        return PyLong_FromLong(buf[pos]);
    case SMALL_ATOM_UTF8_EXT: {
        if (pos >= end)
            return truncated(pos);
        n = buf[pos];
        if (pos + 1 + n > end)
            return truncated(pos);
        PyObject *a = mk_atom(buf + pos + 1, n, pos, 0);
        if (a != NULL)
            *ppos = pos + 1 + n;
        return a;
    }
    case BINARY_EXT: {
        if (pos + 4 > end)
            return truncated(pos);
        n = (Py_ssize_t)be32(buf + pos);
        if (n > end - pos - 4)
            return dec_err(pos, "binary of %zd bytes is longer than the input", n);
        PyObject *b = PyBytes_FromStringAndSize((const char *)buf + pos + 4, n);
        if (b != NULL)
            *ppos = pos + 4 + n;
        return b;
    }
    case SMALL_TUPLE_EXT: {
        if (pos >= end)
            return truncated(pos);
        n = buf[pos];
        pos += 1;
        if (depth <= 0)
            return dec_err(pos, "term nested too deeply");
        if (n > end - pos)
            return dec_err(pos, "tuple of %zd elements is longer than the input", n);
        PyObject *t = PyTuple_New(n);
        if (t == NULL || n == 0) {
            if (t != NULL)
                *ppos = pos;
            return t;
        }
        if (nest_enter(&d->nest) < 0) {
            Py_DECREF(t);
            return NULL;
        }
        for (i = 0; i < n; i++) {
            PyObject *v = dec(d, &pos, depth - 1);
            if (v == NULL) {
                nest_leave(&d->nest);
                Py_DECREF(t);
                return NULL;
            }
            PyTuple_SET_ITEM(t, i, v);
        }
        nest_leave(&d->nest);
        *ppos = pos;
        return t;
    }
    case NIL_EXT:
        *ppos = pos;
        return PyList_New(0);
    case INTEGER_EXT:
        if (pos + 4 > end)
            return truncated(pos);
        *ppos = pos + 4;
        return PyLong_FromLong((long)(int32_t)be32(buf + pos));
    case NEW_FLOAT_EXT: {
        if (pos + 8 > end)
            return truncated(pos);
        double v = UNPACK8(buf + pos);
        if (v == -1.0 && PyErr_Occurred())
            return NULL;
        if (!isfinite(v)) /* NaN or an infinity: erts refuses them (binary_to_term badarg) */
            return dec_err(pos, "NEW_FLOAT_EXT is not a finite float");
        *ppos = pos + 8;
        return PyFloat_FromDouble(v);
    }
    case LIST_EXT: {
        if (pos + 4 > end)
            return truncated(pos);
        n = (Py_ssize_t)be32(buf + pos);
        pos += 4;
        if (depth <= 0)
            return dec_err(pos, "term nested too deeply");
        if (n >= end - pos)
            return dec_err(pos, "list of %zd elements is longer than the input", n);
        depth -= 1;
        PyObject *lst = PyList_New(n), *tail, *r;
        if (lst == NULL)
            return NULL;
        if (nest_enter(&d->nest) < 0) {
            Py_DECREF(lst);
            return NULL;
        }
        for (i = 0; i < n; i++) {
            PyObject *v = dec(d, &pos, depth);
            if (v == NULL) {
                nest_leave(&d->nest);
                Py_DECREF(lst);
                return NULL;
            }
            PyList_SET_ITEM(lst, i, v);
        }
        if (pos < end && buf[pos] == NIL_EXT) {
            nest_leave(&d->nest);
            *ppos = pos + 1;
            return lst;
        }
        tail = dec(d, &pos, depth);
        nest_leave(&d->nest);
        if (tail == NULL) {
            Py_DECREF(lst);
            return NULL;
        }
        if (Py_TYPE(tail) == &PyList_Type && PyList_GET_SIZE(tail) == 0) {
            Py_DECREF(tail);
            *ppos = pos;
            return lst;
        }
        if (n == 0) { /* a LIST_EXT of no elements: erts reads it as its tail alone */
            Py_DECREF(lst);
            *ppos = pos;
            return tail;
        }
        r = PyObject_CallFunctionObjArgs((PyObject *)T_Improper, lst, tail, NULL);
        Py_DECREF(lst);
        Py_DECREF(tail);
        if (r != NULL)
            *ppos = pos;
        return r;
    }
    case STRING_EXT: {
        if (pos + 2 > end)
            return truncated(pos);
        n = be16(buf + pos);
        if (pos + 2 + n > end)
            return dec_err(pos, "string of %zd bytes is longer than the input", n);
        PyObject *lst = PyList_New(n);
        if (lst == NULL)
            return NULL;
        for (i = 0; i < n; i++) {
            PyObject *v = PyLong_FromLong(buf[pos + 2 + i]);
            if (v == NULL) {
                Py_DECREF(lst);
                return NULL;
            }
            PyList_SET_ITEM(lst, i, v);
        }
        *ppos = pos + 2 + n;
        return lst;
    }
    case MAP_EXT: {
        if (pos + 4 > end)
            return truncated(pos);
        n = (Py_ssize_t)be32(buf + pos);
        pos += 4;
        if (depth <= 0)
            return dec_err(pos, "term nested too deeply");
        if (2 * n > end - pos)
            return dec_err(pos, "map of %zd pairs is longer than the input", n);
        if (n == 0) {
            *ppos = pos;
            return PyDict_New();
        }
        PyObject *items = PyList_New(2 * n), *m;
        if (items == NULL)
            return NULL;
        if (nest_enter(&d->nest) < 0) {
            Py_DECREF(items);
            return NULL;
        }
        for (i = 0; i < 2 * n; i++) {
            PyObject *v = dec(d, &pos, depth - 1);
            if (v == NULL) {
                nest_leave(&d->nest);
                Py_DECREF(items);
                return NULL;
            }
            PyList_SET_ITEM(items, i, v);
        }
        nest_leave(&d->nest);
        m = map_of(items, n, pos);
        Py_DECREF(items);
        if (m != NULL) {
            *ppos = pos;
            m = struct_of(m);
        }
        return m;
    }
    case NEW_PID_EXT:
        *ppos = pos;
        return dec_pid_body(d, tag, ppos);
    case ATOM_CACHE_REF:
        *ppos = pos;
        return dec_cache_ref(d, ppos);
    default:
        *ppos = pos;
        return dec_rare(d, tag, ppos, depth);
    }
}

/* The input as bytes: bytes directly, anything else the way memoryview(data).cast("B")
 * takes it.  *view is to be released when view->obj is set. */
static int
get_input(PyObject *data, Py_buffer *view, const unsigned char **buf, Py_ssize_t *len)
{
    view->obj = NULL;
    if (PyBytes_CheckExact(data)) {
        *buf = (const unsigned char *)PyBytes_AS_STRING(data);
        *len = PyBytes_GET_SIZE(data);
        return 0;
    }
    if (!PyObject_CheckBuffer(data)) {
        PyErr_Format(PyExc_TypeError, "memoryview: a bytes-like object is required, not '%.200s'",
                     Py_TYPE(data)->tp_name);
        return -1;
    }
    if (PyObject_GetBuffer(data, view, PyBUF_FULL_RO) < 0) {
        view->obj = NULL;
        return -1;
    }
    if (!PyBuffer_IsContiguous(view, 'C')) {
        PyBuffer_Release(view);
        view->obj = NULL;
        PyErr_SetString(PyExc_TypeError, "memoryview: casts are restricted to C-contiguous views");
        return -1;
    }
    *buf = (const unsigned char *)view->buf;
    *len = view->len;
    return 0;
}

/* What decode/decode_from turn a RecursionError or an IndexError into. */
static void
convert_decode_error(Py_ssize_t pos)
{
    if (PyErr_ExceptionMatches(PyExc_RecursionError)) {
        PyErr_Clear();
        dec_err(pos, "term nested too deeply for the Python stack");
    }
    else if (PyErr_ExceptionMatches(PyExc_IndexError)) {
        PyObject *type, *value, *tb;
        PyErr_Fetch(&type, &value, &tb);
        PyErr_NormalizeException(&type, &value, &tb);
        if (value != NULL)
            dec_err(pos, "malformed term: %S", value);
        Py_XDECREF(type);
        Py_XDECREF(value);
        Py_XDECREF(tb);
    }
}

static int
dec_options(Dec *d, PyObject *atom_cache, PyObject *max_unc, PyObject *max_depth,
            long long *depth)
{
    d->atom_cache = atom_cache == NULL || atom_cache == Py_None ? NULL : atom_cache;
    d->refs = NULL;
    d->nrefs = 0;
    d->max_unc_obj = max_unc != NULL ? max_unc : O_default_max_unc;
    d->nest = 0;
    if (limit_arg(d->max_unc_obj, &d->max_unc) < 0)
        return -1;
    return depth_arg(max_depth != NULL ? max_depth : O_default_max_depth, depth);
}

static ArgSpec decode_spec = {
    "decode", 4, 1, 1, {"data", "atom_cache", "max_depth", "max_uncompressed"}, {NULL}};

static PyObject *
py_decode(PyObject *module, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    PyObject *a[4], *v;
    Py_buffer view;
    Dec d;
    long long depth;
    (void)module;
    if (parse_args(&decode_spec, args, nargs, kwnames, a) < 0)
        return NULL;
    if (get_input(a[0], &view, &d.buf, &d.end) < 0)
        return NULL;
    if (dec_options(&d, a[1], a[3], a[2], &depth) < 0) {
        v = NULL;
        goto done;
    }
    if (d.end == 0) {
        v = truncated(0);
        goto done;
    }
    if (d.buf[0] != VERSION) {
        v = dec_err(0, "expected version byte 131, found %d", d.buf[0]);
        goto done;
    }
    Py_ssize_t pos = 1;
    v = dec(&d, &pos, depth);
    if (v == NULL)
        convert_decode_error(1);
    else if (pos != d.end) {
        Py_CLEAR(v);
        dec_err(pos, "%zd trailing bytes after the term", d.end - pos);
    }
done:
    if (view.obj != NULL)
        PyBuffer_Release(&view);
    return v;
}

static ArgSpec decode_from_spec = {
    "decode_from",
    6,
    2,
    1,
    {"data", "offset", "versioned", "atom_cache", "max_depth", "max_uncompressed"},
    {NULL}};

static PyObject *
py_decode_from(PyObject *module, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    PyObject *a[6], *v = NULL, *result = NULL;
    Py_buffer view;
    Dec d;
    long long depth;
    Py_ssize_t pos = 0;
    int versioned = 1;
    (void)module;
    if (parse_args(&decode_from_spec, args, nargs, kwnames, a) < 0)
        return NULL;
    if (get_input(a[0], &view, &d.buf, &d.end) < 0)
        return NULL;
    if (dec_options(&d, a[3], a[5], a[4], &depth) < 0)
        goto done;
    if (a[2] != NULL && (versioned = PyObject_IsTrue(a[2])) < 0)
        goto done;
    if (a[1] != NULL) {
        PyObject *off = PyNumber_Index(a[1]);
        if (off == NULL)
            goto done;
        {
            int overflow;
            long long o = PyLong_AsLongLongAndOverflow(off, &overflow);
            if (o == -1 && PyErr_Occurred()) {
                Py_DECREF(off);
                goto done;
            }
            if (overflow > 0 || o >= (long long)PY_SSIZE_T_MAX)
                pos = PY_SSIZE_T_MAX;
            else if (overflow < 0 || o < 0)
                pos = -1;
            else
                pos = (Py_ssize_t)o;
        }
        if (pos < 0) {
            dec_err(pos, "offset %S is negative", off);
            Py_DECREF(off);
            goto done;
        }
        if (pos == PY_SSIZE_T_MAX) {
            PyObject *exc = PyObject_CallFunction(E_Decode, "sO", "unexpected end of input", off);
            if (exc != NULL) {
                PyErr_SetObject((PyObject *)Py_TYPE(exc), exc);
                Py_DECREF(exc);
            }
            Py_DECREF(off);
            goto done;
        }
        Py_DECREF(off);
    }
    if (versioned) {
        if (pos >= d.end) {
            truncated(pos);
            goto done;
        }
        if (d.buf[pos] != VERSION) {
            dec_err(pos, "expected version byte 131, found %d", d.buf[pos]);
            goto done;
        }
        pos += 1;
    }
    {
        Py_ssize_t start = pos;
        v = dec(&d, &pos, depth);
        if (v == NULL) {
            convert_decode_error(start);
            goto done;
        }
    }
    {
        PyObject *p = PyLong_FromSsize_t(pos);
        if (p != NULL)
            result = PyTuple_Pack(2, v, p);
        Py_XDECREF(p);
        Py_DECREF(v);
    }
done:
    if (view.obj != NULL)
        PyBuffer_Release(&view);
    return result;
}

/* ---------------------------------------------------------------------------------------- */
/* distribution packets (erl_ext_dist.md "Distribution Header"; erts dist.c, external.c)
 *
 * One call per received packet: the atom cache header is applied to the connection's
 * cache entries, and the control message and the payload are decoded with the refs it
 * names.  Offsets in errors count from the start of ``data``, as in decode_from. */

#define DIST_PASS_THROUGH 112
#define DIST_HEADER 68

static long long default_depth, default_max_unc;

static int
check_entries(PyObject *entries)
{
    if (!PyList_CheckExact(entries)) {
        PyErr_Format(PyExc_TypeError, "cache_entries must be a list, not %.200s",
                     Py_TYPE(entries)->tp_name);
        return -1;
    }
    if (PyList_GET_SIZE(entries) != ATOM_CACHE_SIZE) {
        PyErr_Format(PyExc_ValueError, "cache_entries must have %d slots, not %zd",
                     ATOM_CACHE_SIZE, PyList_GET_SIZE(entries));
        return -1;
    }
    return 0;
}

/* data as bytes plus the [start, end) of the part to decode (None for end: all of it). */
static int
dist_input(PyObject *data, PyObject *start_obj, PyObject *end_obj, Py_buffer *view,
           const unsigned char **buf, Py_ssize_t *start, Py_ssize_t *end)
{
    Py_ssize_t n;
    if (get_input(data, view, buf, &n) < 0)
        return -1;
    *start = 0;
    *end = n;
    if (start_obj != NULL) {
        *start = PyNumber_AsSsize_t(start_obj, NULL); /* clamped: then out of bounds */
        if (*start == -1 && PyErr_Occurred())
            goto fail;
    }
    if (end_obj != NULL && end_obj != Py_None) {
        *end = PyNumber_AsSsize_t(end_obj, NULL);
        if (*end == -1 && PyErr_Occurred())
            goto fail;
    }
    if (*start < 0 || *start > *end || *end > n) {
        PyErr_Format(PyExc_ValueError, "bounds %zd:%zd outside data of %zd bytes", *start, *end,
                     n);
        goto fail;
    }
    return 0;
fail:
    if (view->obj != NULL) {
        PyBuffer_Release(view);
        view->obj = NULL;
    }
    return -1;
}

/* ``NumberOfAtomCacheRefs | Flags | AtomCacheRefs`` at *ppos: new entries are stored in
 * ``entries`` (a list of ATOM_CACHE_SIZE slots), refs[0..*nrefs) get new references to the
 * atoms this message refers to, in order. */
static int
read_cache_header(const unsigned char *buf, Py_ssize_t end, Py_ssize_t *ppos, PyObject *entries,
                  PyObject **refs, int *nrefs)
{
    Py_ssize_t pos = *ppos;
    int i = 0, count;
    *nrefs = 0;
    if (pos >= end) {
        dec_err(pos, "distribution header truncated before the atom count");
        return -1;
    }
    count = buf[pos++];
    if (count == 0) {
        *ppos = pos;
        return 0;
    }
    Py_ssize_t flen = count / 2 + 1;
    if (flen > end - pos) {
        dec_err(pos, "distribution header truncated inside the atom cache flags");
        return -1;
    }
    const unsigned char *flags = buf + pos;
    pos += flen;
    /* the nibble after the last reference's carries LongAtoms in its low bit */
    int long_atoms = (flags[count >> 1] >> ((count & 1) << 2)) & 1;
    for (i = 0; i < count; i++) {
        int nibble = flags[i >> 1] >> ((i & 1) << 2);
        if (pos >= end) {
            dec_err(pos, "distribution header truncated inside the atom cache");
            goto fail;
        }
        Py_ssize_t key = ((Py_ssize_t)(nibble & 7) << 8) | buf[pos++];
        PyObject *atom;
        if (nibble & 8) { /* NewCacheEntryFlag: the atom text follows */
            Py_ssize_t len;
            if (long_atoms) {
                if (end - pos < 2) {
                    dec_err(pos, "distribution header truncated inside the atom cache");
                    goto fail;
                }
                len = be16(buf + pos);
                pos += 2;
            }
            else {
                if (pos >= end) {
                    dec_err(pos, "distribution header truncated inside the atom cache");
                    goto fail;
                }
                len = buf[pos++];
            }
            if (len > end - pos) {
                dec_err(pos, "distribution header truncated inside an atom");
                goto fail;
            }
            atom = mk_atom(buf + pos, len, pos, 0);
            if (atom == NULL)
                goto fail;
            pos += len;
            /* mk_atom may run Python code (Atom()): look at the list again */
            if (PyList_GET_SIZE(entries) != ATOM_CACHE_SIZE) {
                Py_DECREF(atom);
                check_entries(entries);
                goto fail;
            }
            Py_INCREF(atom);
            PyObject *old = PyList_GET_ITEM(entries, key);
            PyList_SET_ITEM(entries, key, atom);
            Py_DECREF(old);
        }
        else {
            atom = PyList_GET_ITEM(entries, key);
            if (atom == Py_None) {
                dec_err(pos - 1, "atom cache reference to empty slot %d:%d", (int)(key >> 8),
                        (int)(key & 255));
                goto fail;
            }
            Py_INCREF(atom);
        }
        refs[i] = atom;
    }
    *nrefs = count;
    *ppos = pos;
    return 0;
fail:
    while (i-- > 0)
        Py_DECREF(refs[i]);
    return -1;
}

/* One term at *ppos (after a 131 version byte when ``versioned``), as decode_from does. */
static PyObject *
dist_term(Dec *d, Py_ssize_t *ppos, int versioned)
{
    Py_ssize_t pos = *ppos;
    if (versioned) {
        if (pos >= d->end)
            return truncated(pos);
        if (d->buf[pos] != VERSION)
            return dec_err(pos, "expected version byte 131, found %d", d->buf[pos]);
        pos += 1;
    }
    Py_ssize_t start = pos;
    PyObject *v = dec(d, &pos, default_depth);
    if (v == NULL) {
        convert_decode_error(start);
        return NULL;
    }
    *ppos = pos;
    return v;
}

static PyObject *plain_send_to(PyObject *ctl);

/* The last plain send's control message, kept to be handed out again: a stream of messages
 * from one process to one mailbox repeats its control bytes packet after packet, and
 * decoding them made a tuple and a Pid per message, then freed them (about a tenth of
 * pynode's CPU per message with erl streaming small messages to it, benchmarks/
 * recv_place.py, 2026-12-05). An encoded term ends where its bytes say, so a packet whose
 * bytes begin like the kept ones, under a header whose refs are the same objects, holds the
 * same control message there. The refs are held, so that none of those addresses can be
 * another object's while it is kept. Only for distribution headers (refs, no atom_cache),
 * and only plain sends (2, 6, 22) made of pids and atoms, which nobody can change.
 * CTL_MEMO_BYTES and CTL_MEMO_REFS are no protocol limits: a REG_SEND under a header is
 * about 30 bytes with 2-4 refs; longer ones are decoded each time as before. */
#define CTL_MEMO_BYTES 96
#define CTL_MEMO_REFS 16
static struct {
    PyObject *ctl; /* NULL: nothing kept */
    Py_ssize_t len, nrefs;
    PyObject *refs[CTL_MEMO_REFS];
    unsigned char bytes[CTL_MEMO_BYTES];
} ctl_memo;

/* Emptied before anything is released: a release may run Python code (a finalizer). */
static void
ctl_memo_clear(void)
{
    PyObject *ctl = ctl_memo.ctl, *refs[CTL_MEMO_REFS];
    Py_ssize_t n = ctl_memo.nrefs;
    memcpy(refs, ctl_memo.refs, (size_t)n * sizeof(PyObject *));
    ctl_memo.ctl = NULL;
    ctl_memo.nrefs = ctl_memo.len = 0;
    Py_XDECREF(ctl);
    while (n > 0)
        Py_DECREF(refs[--n]);
}

/* Whether ``ctl`` may be handed out again: a plain send whose unused part is an atom (erl
 * sends ''), so that none of its parts can be changed by whoever gets it (a list there, say,
 * would be one list for every packet). */
static int
ctl_memo_immutable(PyObject *ctl)
{
    if (plain_send_to(ctl) == NULL)
        return 0;
    Py_ssize_t n = PyTuple_GET_SIZE(ctl);
    long op = PyLong_AsLong(PyTuple_GET_ITEM(ctl, 0));
    if (op == 22)
        return 1;  /* {22, From, To}: pids */
    return Py_IS_TYPE(PyTuple_GET_ITEM(ctl, n == 3 ? 1 : 2), T_Atom);
}

/* The kept control message (a new reference) when buf[pos:] begins with its bytes under
 * the same refs, and then *ppos moved past it; else NULL, no error set. */
static inline PyObject *
ctl_memo_find(Dec *d, Py_ssize_t *ppos)
{
    Py_ssize_t pos = *ppos, len = ctl_memo.len;
    if (ctl_memo.ctl == NULL || d->atom_cache != NULL || d->nrefs != ctl_memo.nrefs ||
        len > d->end - pos || memcmp(d->buf + pos, ctl_memo.bytes, (size_t)len) != 0)
        return NULL;
    for (Py_ssize_t i = 0; i < d->nrefs; i++)
        if (d->refs[i] != ctl_memo.refs[i])
            return NULL;
    *ppos = pos + len;
    Py_INCREF(ctl_memo.ctl);
    return ctl_memo.ctl;
}

/* Keep ``ctl``, decoded from buf[start:end], when it is a plain send that fits. */
static void
ctl_memo_keep(Dec *d, PyObject *ctl, Py_ssize_t start, Py_ssize_t end)
{
    if (d->atom_cache != NULL || d->nrefs > CTL_MEMO_REFS || end - start > CTL_MEMO_BYTES ||
        !ctl_memo_immutable(ctl))
        return;
    ctl_memo_clear();
    for (Py_ssize_t i = 0; i < d->nrefs; i++)
        ctl_memo.refs[i] = Py_NewRef(d->refs[i]);
    ctl_memo.nrefs = d->nrefs;
    memcpy(ctl_memo.bytes, d->buf + start, (size_t)(end - start));
    ctl_memo.len = end - start;
    ctl_memo.ctl = Py_NewRef(ctl);
}

/* ``Control | [Payload]`` from pos to d->end: the tuple (control, payload or missing). */
static PyObject *
dist_terms(Dec *d, Py_ssize_t pos, int versioned, PyObject *missing)
{
    PyObject *ctl, *pay, *res;
    ctl = versioned ? NULL : ctl_memo_find(d, &pos);
    if (ctl == NULL) {
        Py_ssize_t start = pos;
        ctl = dist_term(d, &pos, versioned);
        if (ctl == NULL)
            return NULL;
        if (!versioned)
            ctl_memo_keep(d, ctl, start, pos);
    }
    if (pos < d->end) {
        pay = dist_term(d, &pos, versioned);
        if (pay == NULL) {
            Py_DECREF(ctl);
            return NULL;
        }
        if (pos != d->end) {
            Py_DECREF(ctl);
            Py_DECREF(pay);
            return dec_err(pos, "%zd bytes after the payload of a distribution message",
                           d->end - pos);
        }
    }
    else {
        pay = missing;
        Py_INCREF(pay);
    }
    res = PyTuple_New(2);
    if (res == NULL) {
        Py_DECREF(ctl);
        Py_DECREF(pay);
        return NULL;
    }
    PyTuple_SET_ITEM(res, 0, ctl);
    PyTuple_SET_ITEM(res, 1, pay);
    return res;
}

static void
dist_dec_init(Dec *d, const unsigned char *buf, Py_ssize_t end)
{
    d->buf = buf;
    d->end = end;
    d->atom_cache = NULL;
    d->refs = NULL;
    d->nrefs = 0;
    d->max_unc = default_max_unc;
    d->max_unc_obj = O_default_max_unc;
    d->nest = 0;
}

static ArgSpec decode_dist_packet_spec = {
    "decode_dist_packet", 5, 5, 3, {"data", "cache_entries", "missing", "start", "end"}, {NULL}};

/* The packet body buf[pos:end] (after its 4-byte length) as (control, payload or missing). */
static PyObject *
dist_packet_body(const unsigned char *buf, Py_ssize_t pos, Py_ssize_t end, PyObject *entries,
                 PyObject *missing)
{
    PyObject *result = NULL, *refs[MAX_CACHE_REFS];
    int nrefs = 0;
    Dec d;
    dist_dec_init(&d, buf, end);
    if (pos >= end)
        return truncated(pos);
    if (buf[pos] == VERSION) {
        if (pos + 1 >= end)
            return truncated(pos + 1);
        if (buf[pos + 1] != DIST_HEADER)
            return dec_err(pos, "packet starts with 131 %d, not 112 or 131 68", buf[pos + 1]);
        pos += 2;
        if (read_cache_header(buf, end, &pos, entries, refs, &nrefs) < 0)
            return NULL;
        if (nrefs) {
            d.refs = refs;
            d.nrefs = nrefs;
        }
        result = dist_terms(&d, pos, 0, missing);
        while (nrefs > 0)
            Py_DECREF(refs[--nrefs]);
        return result;
    }
    if (buf[pos] == DIST_PASS_THROUGH)
        return dist_terms(&d, pos + 1, 1, missing);
    return dec_err(pos, "packet starts with %d, not 112 or 131 68", buf[pos]);
}

static PyObject *
py_decode_dist_packet(PyObject *module, PyObject *const *args, Py_ssize_t nargs,
                      PyObject *kwnames)
{
    PyObject *a[5], *result;
    Py_buffer view;
    const unsigned char *buf;
    Py_ssize_t pos, end;
    (void)module;
    if (parse_args(&decode_dist_packet_spec, args, nargs, kwnames, a) < 0)
        return NULL;
    if (check_entries(a[1]) < 0)
        return NULL;
    if (dist_input(a[0], a[3], a[4], &view, &buf, &pos, &end) < 0)
        return NULL;
    result = dist_packet_body(buf, pos, end, a[1], a[2]);
    if (view.obj != NULL)
        PyBuffer_Release(&view);
    return result;
}

/* The recipient of a plain send's control tuple, shaped as the framing's from_term accepts
 * it: {2, _, To} and {22, From, To} with pids, {6, From, _, ToName} with a pid and an atom;
 * NULL (no error set) for anything else. A borrowed reference. */
static PyObject *
plain_send_to(PyObject *ctl)
{
    if (!PyTuple_CheckExact(ctl))
        return NULL;
    Py_ssize_t n = PyTuple_GET_SIZE(ctl);
    if (n != 3 && n != 4)
        return NULL;
    PyObject *op = PyTuple_GET_ITEM(ctl, 0);
    if (!PyLong_CheckExact(op))
        return NULL;
    int overflow;
    long v = PyLong_AsLongAndOverflow(op, &overflow);
    if (n == 3 && (v == 22 || v == 2) && Py_IS_TYPE(PyTuple_GET_ITEM(ctl, 2), T_Pid) &&
        (v == 2 || Py_IS_TYPE(PyTuple_GET_ITEM(ctl, 1), T_Pid)))
        return PyTuple_GET_ITEM(ctl, 2);
    if (n == 4 && v == 6 && Py_IS_TYPE(PyTuple_GET_ITEM(ctl, 1), T_Pid) &&
        Py_IS_TYPE(PyTuple_GET_ITEM(ctl, 3), T_Atom))
        return PyTuple_GET_ITEM(ctl, 3);
    return NULL;
}

/* On an error inside decode_dist_sends (a bad packet, or deliver raised): the exception
 * carries where the caller goes on (the failing packet's start) and how many messages went
 * to deliver before it, so none is delivered twice. */
static void
note_progress(Py_ssize_t pos, Py_ssize_t count)
{
#if PY_VERSION_HEX >= 0x030C0000
    PyObject *exc = PyErr_GetRaisedException();
#else
    PyObject *type, *exc, *tb;
    PyErr_Fetch(&type, &exc, &tb);
    PyErr_NormalizeException(&type, &exc, &tb);
    if (exc != NULL && tb != NULL)
        PyException_SetTraceback(exc, tb);
#endif
    if (exc != NULL) {
        PyObject *p = PyLong_FromSsize_t(pos), *c = PyLong_FromSsize_t(count);
        if (p == NULL || c == NULL || PyObject_SetAttrString(exc, "dist_pos", p) < 0 ||
            PyObject_SetAttrString(exc, "dist_delivered", c) < 0)
            PyErr_Clear(); /* an exception that takes no attributes: the caller cannot resume */
        Py_XDECREF(p);
        Py_XDECREF(c);
    }
#if PY_VERSION_HEX >= 0x030C0000
    PyErr_SetRaisedException(exc);
#else
    PyErr_Restore(type, exc, tb);
#endif
}

/* hook(x, y): 1 when it took the packet (a true answer), 0 when not, -1 on an error */
static int
hook_takes(PyObject *hook, PyObject *x, PyObject *y)
{
    PyObject *callargs[2] = {x, y};
    PyObject *r = PyObject_Vectorcall(hook, callargs, 2, NULL);
    if (r == NULL)
        return -1;
    int taken = PyObject_IsTrue(r);
    Py_DECREF(r);
    return taken;
}

static ArgSpec decode_dist_sends_spec = {
    "decode_dist_sends", 8, 8, 6,
    {"data", "cache_entries", "missing", "start", "max_packet", "deliver", "deliver_signal",
     "sinks"},
    {NULL}};

static PyTypeObject *T_deque;    /* collections.deque */
static PyObject *O_deque_append; /* its append, called with the queue and the message */

/* A slot of a pid made by the decoder (its own type: no attribute lookup), borrowed. */
#define PID_SLOT(o, f) (*(PyObject **)((char *)(o) + (f).off))

/* The queue ``sinks`` (decode_dist_sends) has for recipient ``to``, when it takes one more
 * message: a borrowed deque, or NULL (no error set) when the send goes to deliver. Keys: a
 * registered name's Atom, with (queue, limit); a pid's id | serial << 32, with (queue,
 * limit, node, creation), taken only for that node and creation. */
static PyObject *
sink_for(PyObject *sinks, PyObject *to)
{
    PyObject *key, *entry;
    int is_pid = Py_IS_TYPE(to, T_Pid);
    if (is_pid) {
        PyObject *id = PID_SLOT(to, F_pid_id), *serial = PID_SLOT(to, F_pid_serial);
        if (id == NULL || serial == NULL || !PyLong_CheckExact(id) || !PyLong_CheckExact(serial))
            return NULL;
        unsigned long long i = PyLong_AsUnsignedLongLong(id);
        unsigned long long sr = PyLong_AsUnsignedLongLong(serial);
        if (PyErr_Occurred() || i > 0xFFFFFFFFULL || sr > 0xFFFFFFFFULL) {
            PyErr_Clear(); /* not a pid of this node's making */
            return NULL;
        }
        if ((key = PyLong_FromUnsignedLongLong(i | (sr << 32))) == NULL) {
            PyErr_Clear();
            return NULL;
        }
        entry = PyDict_GetItemWithError(sinks, key);
        Py_DECREF(key);
    }
    else
        entry = PyDict_GetItemWithError(sinks, to);
    if (entry == NULL) {
        PyErr_Clear();
        return NULL;
    }
    if (!PyTuple_CheckExact(entry) || PyTuple_GET_SIZE(entry) != (is_pid ? 4 : 2))
        return NULL;
    PyObject *queue = PyTuple_GET_ITEM(entry, 0), *limit = PyTuple_GET_ITEM(entry, 1);
    if (!Py_IS_TYPE(queue, T_deque) || !PyLong_CheckExact(limit))
        return NULL;
    Py_ssize_t lim = PyLong_AsSsize_t(limit), len = PyObject_Size(queue);
    if (lim == -1 || len < 0) {
        PyErr_Clear();
        return NULL;
    }
    if (len >= lim)
        return NULL;
    if (is_pid) {
        PyObject *node = PID_SLOT(to, F_pid_node), *creation = PID_SLOT(to, F_pid_creation);
        if (node == NULL || creation == NULL)
            return NULL;
        int same = PyObject_RichCompareBool(PyTuple_GET_ITEM(entry, 2), node, Py_EQ);
        if (same == 1)
            same = PyObject_RichCompareBool(PyTuple_GET_ITEM(entry, 3), creation, Py_EQ);
        if (same != 1) {
            PyErr_Clear();
            return NULL;
        }
    }
    return queue;
}

static PyObject *
py_decode_dist_sends(PyObject *module, PyObject *const *args, Py_ssize_t nargs,
                     PyObject *kwnames)
{
    PyObject *a[8], *result = NULL, *body = NULL, *ctl, *pay, *signal, *sinks;
    Py_buffer view;
    const unsigned char *buf;
    Py_ssize_t pos, n, max_packet, count = 0;
    (void)module;
    if (parse_args(&decode_dist_sends_spec, args, nargs, kwnames, a) < 0)
        return NULL;
    signal = a[6] == Py_None ? NULL : a[6];
    sinks = a[7] == Py_None ? NULL : a[7];
    if (sinks != NULL && !PyDict_CheckExact(sinks)) {
        PyErr_SetString(PyExc_TypeError, "decode_dist_sends: sinks must be a dict or None");
        return NULL;
    }
    if (check_entries(a[1]) < 0)
        return NULL;
    max_packet = PyNumber_AsSsize_t(a[4], NULL); /* clamped, as any size beyond is no limit */
    if (max_packet == -1 && PyErr_Occurred())
        return NULL;
    if (dist_input(a[0], a[3], NULL, &view, &buf, &pos, &n) < 0)
        return NULL;
    /* while the view is held a bytearray cannot be resized, so deliver cannot pull the
     * bytes from under the loop */
    ctl = pay = a[2];
    for (;;) {
        if (n - pos <= 4)
            break;
        Py_ssize_t size = ((Py_ssize_t)buf[pos] << 24) | ((Py_ssize_t)buf[pos + 1] << 16) |
                          ((Py_ssize_t)buf[pos + 2] << 8) | (Py_ssize_t)buf[pos + 3];
        Py_ssize_t end = pos + 4 + size;
        if (size == 0 || size > max_packet || end > n)
            break;
        unsigned char first = buf[pos + 4];
        if (!(first == DIST_PASS_THROUGH ||
              (first == VERSION && size > 1 && buf[pos + 5] == DIST_HEADER)))
            break;
        /* again before each packet: deliver may have changed the list */
        if (count && check_entries(a[1]) < 0)
            goto fail;
        body = dist_packet_body(buf, pos + 4, end, a[1], a[2]);
        if (body == NULL)
            goto fail;
        PyObject *c = PyTuple_GET_ITEM(body, 0), *p = PyTuple_GET_ITEM(body, 1);
        PyObject *to = p == a[2] ? NULL : plain_send_to(c);
        if (to != NULL && sinks != NULL) {
            PyObject *queue = sink_for(sinks, to);
            if (queue != NULL) {
                PyObject *callargs[2] = {queue, p};
                PyObject *r = PyObject_Vectorcall(O_deque_append, callargs, 2, NULL);
                if (r == NULL)
                    goto fail;
                Py_DECREF(r);
                Py_CLEAR(body);
                count++;
                pos = end;
                continue;
            }
        }
        if (to != NULL) {
            int taken = hook_takes(a[5], to, p);
            if (taken < 0)
                goto fail;
            if (taken) {
                Py_CLEAR(body);
                count++;
                pos = end;
                continue;
            }
        }
        if (signal != NULL) {
            /* consumed, whatever the hook does: a signal is never handed twice */
            pos = end;
            int taken = hook_takes(signal, c, p);
            if (taken < 0)
                goto fail;
            if (taken) {
                Py_CLEAR(body);
                count++;
                continue;
            }
        }
        /* decoded but taken by neither hook: the caller makes an event of it */
        ctl = c;
        pay = p;
        pos = end;
        break;
    }
    result = Py_BuildValue("(nnOO)", pos, count, ctl, pay);
    goto done;
fail:
    note_progress(pos, count);
done:
    Py_XDECREF(body);
    if (view.obj != NULL)
        PyBuffer_Release(&view);
    return result;
}

/* make_pid / make_ref: the runtime's own pids and refs, one C call each (a pid or two refs
 * per rpc, where the slots' setters from Python cost about a microsecond a ref). */
/* make_pid's and make_ref's arguments: `want` of them, an Atom and then ints (-1: TypeError) */
static int
atom_then_ints(const char *fn, const char *ints, PyObject *const *args, Py_ssize_t nargs,
               Py_ssize_t want)
{
    if (nargs != want) {
        PyErr_Format(PyExc_TypeError, "%s() takes %zd arguments (%zd given)", fn, want, nargs);
        return -1;
    }
    if (Py_TYPE(args[0]) != T_Atom) {
        PyErr_Format(PyExc_TypeError, "%s: node must be an Atom", fn);
        return -1;
    }
    for (Py_ssize_t i = 1; i < want; i++)
        if (!PyLong_Check(args[i])) {
            PyErr_Format(PyExc_TypeError, "%s: %s must be ints", fn, ints);
            return -1;
        }
    return 0;
}

static PyObject *
py_make_pid(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    if (atom_then_ints("make_pid", "id, serial and creation", args, nargs, 4) < 0)
        return NULL;
    PyObject *p = T_Pid->tp_alloc(T_Pid, 0);
    if (p == NULL)
        return NULL;
    SET_SLOT(p, F_pid_node, Py_NewRef(args[0]));
    SET_SLOT(p, F_pid_id, Py_NewRef(args[1]));
    SET_SLOT(p, F_pid_serial, Py_NewRef(args[2]));
    SET_SLOT(p, F_pid_creation, Py_NewRef(args[3]));
    return p;
}

static PyObject *O_fifty; /* 50: the shift of make_ref's third word */

static PyObject *
py_make_ref(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    if (atom_then_ints("make_ref", "creation and counter", args, nargs, 3) < 0)
        return NULL;
    /* the low 64 bits as Python's & sees them (two's complement), and n >> 50 likewise */
    unsigned long long lo = PyLong_AsUnsignedLongLongMask(args[2]);
    if (lo == (unsigned long long)-1 && PyErr_Occurred())
        return NULL;
    PyObject *shifted = PyNumber_Rshift(args[2], O_fifty);
    if (shifted == NULL)
        return NULL;
    unsigned long long hi = PyLong_AsUnsignedLongLongMask(shifted);
    Py_DECREF(shifted);
    if (hi == (unsigned long long)-1 && PyErr_Occurred())
        return NULL;
    unsigned long words[3] = {(unsigned long)(lo & 0x3FFFF),
                              (unsigned long)((lo >> 18) & 0xFFFFFFFF),
                              (unsigned long)(hi & 0xFFFFFFFF)};
    PyObject *ids = PyTuple_New(3);
    if (ids == NULL)
        return NULL;
    for (int i = 0; i < 3; i++) {
        PyObject *w = PyLong_FromUnsignedLong(words[i]);
        if (w == NULL) {
            Py_DECREF(ids);
            return NULL;
        }
        PyTuple_SET_ITEM(ids, i, w);
    }
    PyObject *r = T_Ref->tp_alloc(T_Ref, 0);
    if (r == NULL) {
        Py_DECREF(ids);
        return NULL;
    }
    SET_SLOT(r, F_ref_node, Py_NewRef(args[0]));
    SET_SLOT(r, F_ref_creation, Py_NewRef(args[1]));
    SET_SLOT(r, F_ref_ids, ids);
    return r;
}

static ArgSpec peek_dist_packets_spec = {
    "peek_dist_packets", 5, 5, 5, {"data", "cache_entries", "missing", "start", "max_packet"},
    {NULL}};

/* Whether the dist header of the packet body at buf[body:end] (131 68 first) brings new
 * atom cache entries: NewCacheEntryFlag is bit 3 of each flags half byte. */
static int
brings_new_entries(const unsigned char *buf, Py_ssize_t body, Py_ssize_t end)
{
    if (end - body < 3 || buf[body + 2] == 0)
        return 0;
    Py_ssize_t flags = body + 3, stop = flags + buf[body + 2] / 2 + 1;
    if (stop > end)
        return 0; /* (the decode reports the truncated header) */
    for (Py_ssize_t i = flags; i < stop; i++)
        if (buf[i] & 0x88)
            return 1;
    return 0;
}

/* The whole packets of buf[pos:n] decoded, as a new list of (control, payload) in *got, and
 * where the packets left out begin in *at: 1; 0 where peek_dist_packets answers None (a tick,
 * a packet over max_packet, a fragment, a later packet's new atom cache entries); -1 on an
 * error (a bad packet). */
static int
peek_packets(const unsigned char *buf, Py_ssize_t pos, Py_ssize_t n, PyObject *entries,
             PyObject *missing, Py_ssize_t max_packet, PyObject **got, Py_ssize_t *at)
{
    PyObject *list = PyList_New(0);
    if (list == NULL)
        return -1;
    while (n - pos >= 4) {
        Py_ssize_t size = ((Py_ssize_t)buf[pos] << 24) | ((Py_ssize_t)buf[pos + 1] << 16) |
                          ((Py_ssize_t)buf[pos + 2] << 8) | (Py_ssize_t)buf[pos + 3];
        if (size == 0 || size > max_packet)
            goto none;
        Py_ssize_t body = pos + 4, end = body + size;
        if (end > n)
            break;
        if (buf[body] == VERSION && size > 1 && buf[body + 1] == DIST_HEADER) {
            if (pos && brings_new_entries(buf, body, end))
                goto none;
        }
        else if (buf[body] != DIST_PASS_THROUGH)
            goto none;
        PyObject *packet = dist_packet_body(buf, body, end, entries, missing);
        if (packet == NULL) {
            Py_DECREF(list);
            return -1;
        }
        int failed = PyList_Append(list, packet);
        Py_DECREF(packet);
        if (failed < 0) {
            Py_DECREF(list);
            return -1;
        }
        pos = end;
    }
    *got = list;
    *at = pos;
    return 1;
none:
    Py_DECREF(list);
    return 0;
}

static PyObject *
py_peek_dist_packets(PyObject *module, PyObject *const *args, Py_ssize_t nargs,
                     PyObject *kwnames)
{
    PyObject *a[5], *got = NULL, *result = NULL;
    Py_buffer view;
    const unsigned char *buf;
    Py_ssize_t pos, n, max_packet, at;
    (void)module;
    if (parse_args(&peek_dist_packets_spec, args, nargs, kwnames, a) < 0)
        return NULL;
    if (check_entries(a[1]) < 0)
        return NULL;
    max_packet = PyNumber_AsSsize_t(a[4], NULL);
    if (max_packet == -1 && PyErr_Occurred())
        return NULL;
    if (dist_input(a[0], a[3], NULL, &view, &buf, &pos, &n) < 0)
        return NULL;
    int r = peek_packets(buf, pos, n, a[1], a[2], max_packet, &got, &at);
    if (r > 0)
        result = Py_BuildValue("(nN)", at, got);
    else if (r == 0)
        result = Py_NewRef(Py_None);
    if (view.obj != NULL)
        PyBuffer_Release(&view);
    return result;
}

/* o is the int v */
static int
is_int(PyObject *o, long v)
{
    if (!PyLong_CheckExact(o))
        return 0;
    int overflow;
    long x = PyLong_AsLongAndOverflow(o, &overflow);
    return !overflow && x == v;
}

/* A spawn request's answer, as erpc:call waits for it: the SPAWN_REPLY (31) of request req
 * to box, with the monitor flag (2) and the new process's pid, then that monitor's exit,
 * PAYLOAD_MONITOR_P_EXIT (28, the reason as payload) or MONITOR_P_EXIT (21); or a
 * SPAWN_REPLY with an atom, the reason the spawn failed. 1 when packets (a list of (control,
 * payload)) are that answer and nothing else, with *pid (NULL for a failed spawn) and
 * *reason borrowed from them; 0 when they are its beginning (or none); -1 when anything else
 * came; -2 on an error. */
static int
spawn_answer(PyObject *packets, PyObject *missing, PyObject *req, PyObject *box, PyObject **pid,
             PyObject **reason)
{
    Py_ssize_t count = PyList_GET_SIZE(packets);
    PyObject *p = NULL;
    int done = 0;
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *item = PyList_GET_ITEM(packets, i);
        PyObject *ctl = PyTuple_GET_ITEM(item, 0), *payload = PyTuple_GET_ITEM(item, 1);
        if (done || !PyTuple_CheckExact(ctl))
            return -1; /* (more after the answer: the connection takes it all) */
        Py_ssize_t n = PyTuple_GET_SIZE(ctl);
        PyObject *const *c = &PyTuple_GET_ITEM(ctl, 0);
        PyObject *r = NULL;
        int same;
        if (p == NULL) { /* {31, Req, Box, Flags, Pid or Reason} */
            if (n != 5 || !is_int(c[0], 31) || payload != missing)
                return -1;
            same = PyObject_RichCompareBool(c[1], req, Py_EQ);
            if (same == 1)
                same = PyObject_RichCompareBool(c[2], box, Py_EQ);
            if (same != 1)
                return same < 0 ? -2 : -1;
            if (Py_TYPE(c[4]) == T_Atom) { /* the spawn failed (the flags say nothing then) */
                *pid = NULL;
                *reason = c[4];
                done = 1;
            }
            else if (Py_TYPE(c[4]) == T_Pid && is_int(c[3], 2))
                p = c[4];
            else
                return -1;
            continue;
        }
        /* {28, Pid, Box, Req} with the reason, or {21, Pid, Box, Req, Reason} */
        if (n == 4 && is_int(c[0], 28) && payload != missing)
            r = payload;
        else if (n == 5 && is_int(c[0], 21) && payload == missing)
            r = c[4];
        else
            return -1;
        same = PyObject_RichCompareBool(c[1], p, Py_EQ);
        if (same == 1)
            same = PyObject_RichCompareBool(c[2], box, Py_EQ);
        if (same == 1)
            same = PyObject_RichCompareBool(c[3], req, Py_EQ);
        if (same != 1)
            return same < 0 ? -2 : -1;
        *pid = p;
        *reason = r;
        done = 1;
    }
    return done;
}

static PyObject *
py_peek_spawn_answer(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    PyObject *got = NULL, *outcome, *pid = NULL, *reason = NULL;
    Py_buffer view;
    const unsigned char *buf;
    Py_ssize_t n, max_packet, at;
    (void)module;
    if (nargs != 7) {
        PyErr_Format(PyExc_TypeError, "peek_spawn_answer() takes 7 arguments (%zd given)", nargs);
        return NULL;
    }
    PyObject *entries = args[0], *missing = args[1], *req = args[3], *box = args[4],
             *found = args[5];
    if (!PyList_CheckExact(found)) {
        PyErr_SetString(PyExc_TypeError, "peek_spawn_answer: found must be a list");
        return NULL;
    }
    if (check_entries(entries) < 0)
        return NULL;
    max_packet = PyNumber_AsSsize_t(args[2], NULL);
    if (max_packet == -1 && PyErr_Occurred())
        return NULL;
    if (get_input(args[6], &view, &buf, &n) < 0)
        return NULL;
    int r = peek_packets(buf, 0, n, entries, missing, max_packet, &got, &at);
    if (view.obj != NULL)
        PyBuffer_Release(&view);
    if (r > 0) {
        r = spawn_answer(got, missing, req, box, &pid, &reason);
        if (r == 0) { /* its beginning: more to read */
            Py_DECREF(got);
            Py_RETURN_FALSE;
        }
    }
    else if (r == 0)
        r = -1; /* what peek_dist_packets answers None for: the connection's */
    if (r < -1 || (r == -1 && PyErr_Occurred())) {
        /* a bad packet (or a failed comparison) is the connection's to report, as it reads
         * the same bytes again; only what is no Exception (KeyboardInterrupt) goes up */
        if (!PyErr_ExceptionMatches(PyExc_Exception)) {
            Py_XDECREF(got);
            return NULL;
        }
        PyErr_Clear();
        r = -1;
    }
    if (r > 0)
        outcome = Py_BuildValue("(nOO)", at, pid != NULL ? pid : Py_None, reason);
    else
        outcome = Py_NewRef(Py_None);
    Py_XDECREF(got);
    if (outcome == NULL)
        return NULL;
    int failed = PyList_Append(found, outcome);
    Py_DECREF(outcome);
    if (failed < 0)
        return NULL;
    Py_RETURN_TRUE;
}

static ArgSpec decode_dist_header_spec = {
    "decode_dist_header", 3, 3, 2, {"data", "cache_entries", "offset"}, {NULL}};

static PyObject *
py_decode_dist_header(PyObject *module, PyObject *const *args, Py_ssize_t nargs,
                      PyObject *kwnames)
{
    PyObject *a[3], *result = NULL, *refs[MAX_CACHE_REFS], *list = NULL, *p;
    Py_buffer view;
    const unsigned char *buf;
    Py_ssize_t pos, end;
    int nrefs = 0, i;
    (void)module;
    if (parse_args(&decode_dist_header_spec, args, nargs, kwnames, a) < 0)
        return NULL;
    if (check_entries(a[1]) < 0)
        return NULL;
    if (dist_input(a[0], a[2], NULL, &view, &buf, &pos, &end) < 0)
        return NULL;
    if (read_cache_header(buf, end, &pos, a[1], refs, &nrefs) < 0)
        goto done;
    if (nrefs == 0) {
        list = Py_None;
        Py_INCREF(list);
    }
    else {
        list = PyList_New(nrefs);
        if (list == NULL) {
            while (nrefs > 0)
                Py_DECREF(refs[--nrefs]);
            goto done;
        }
        for (i = 0; i < nrefs; i++)
            PyList_SET_ITEM(list, i, refs[i]); /* steals */
    }
    p = PyLong_FromSsize_t(pos);
    if (p != NULL) {
        result = PyTuple_Pack(2, list, p);
        Py_DECREF(p);
    }
    Py_DECREF(list);
done:
    if (view.obj != NULL)
        PyBuffer_Release(&view);
    return result;
}

static ArgSpec decode_dist_body_spec = {
    "decode_dist_body", 5, 5, 3, {"data", "refs", "missing", "start", "end"}, {NULL}};

static PyObject *
py_decode_dist_body(PyObject *module, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    PyObject *a[5], *result = NULL;
    Py_buffer view;
    const unsigned char *buf;
    Py_ssize_t pos, end;
    Dec d;
    (void)module;
    if (parse_args(&decode_dist_body_spec, args, nargs, kwnames, a) < 0)
        return NULL;
    if (dist_input(a[0], a[3], a[4], &view, &buf, &pos, &end) < 0)
        return NULL;
    dist_dec_init(&d, buf, end);
    d.atom_cache = a[1] == Py_None ? NULL : a[1];
    result = dist_terms(&d, pos, 0, a[2]);
    if (view.obj != NULL)
        PyBuffer_Release(&view);
    return result;
}

/* A whole distribution packet in ``e`` (its first 4 bytes left for the length): fill in
 * the length and return the bytes; NULL (``e``'s buffer freed) when it is too long. */
static PyObject *
dist_packet_finish(Enc *e)
{
    if ((unsigned long long)(e->len - 4) > 0xFFFFFFFFULL) {
        PyErr_Format(E_Encode, "distribution packet of %zd bytes is too long for its 4-byte length",
                     e->len - 4);
        Py_CLEAR(e->bytes);
        return NULL;
    }
    uint32_t n = (uint32_t)(e->len - 4);
    e->p[0] = (unsigned char)(n >> 24);
    e->p[1] = (unsigned char)(n >> 16);
    e->p[2] = (unsigned char)(n >> 8);
    e->p[3] = (unsigned char)n;
    if (e->bytes == NULL)
        return PyBytes_FromStringAndSize((const char *)e->stack, e->len);
    PyObject *result = e->bytes;
    e->bytes = NULL;
    if (_PyBytes_Resize(&result, e->len) < 0)
        return NULL;
    return result;
}

/* dist_packet_finish, or with parts (e->iov) that took a bytes object: the last bytes
 * encoded become the last part, and the length goes into the first */
static PyObject *
dist_parts_finish(Enc *e)
{
    if (e->iov == NULL || PyList_GET_SIZE(e->iov) == 0) {
        Py_CLEAR(e->iov);
        return dist_packet_finish(e);
    }
    if (e->len && enc_flush(e) < 0)
        return NULL;
    PyObject *iov = e->iov;
    Py_ssize_t total = 0, i, n = PyList_GET_SIZE(iov);
    for (i = 0; i < n; i++)
        total += PyBytes_GET_SIZE(PyList_GET_ITEM(iov, i));
    if ((unsigned long long)(total - 4) > 0xFFFFFFFFULL) {
        PyErr_Format(E_Encode, "distribution packet of %zd bytes is too long for its 4-byte length",
                     total - 4);
        return NULL;
    }
    /* the first part is ours (made by enc_flush, seen by no one yet): its length is set */
    unsigned char *p = (unsigned char *)PyBytes_AS_STRING(PyList_GET_ITEM(iov, 0));
    uint32_t len = (uint32_t)(total - 4);
    p[0] = (unsigned char)(len >> 24);
    p[1] = (unsigned char)(len >> 16);
    p[2] = (unsigned char)(len >> 8);
    p[3] = (unsigned char)len;
    e->iov = NULL;
    return iov;
}

static ArgSpec encode_dist_packet_spec = {
    "encode_dist_packet", 6, 6, 3,
    {"control", "payload", "missing", "pass_through", "atom_cache", "parts"}, {NULL}};

static void
enc_drop_refs(Enc *e)
{
    for (int i = 0; i < e->nrefs; i++)
        Py_DECREF(e->ratom[i]);
    e->nrefs = 0;
}

/* A term whose atoms, and the nodes of whose pids, refs and ports, go through the atom cache
 * (e->acache while they are encoded) where they stand on its tuple spine: the term itself,
 * and down ``levels`` tuples of at most 255 elements; what else it nests is inline. The
 * control message's elements take levels 0, the payload 2 (``{Pid, {tag, ...}}``), as erl
 * puts all of a message's atoms in the cache. */
static int
enc_spine(Enc *e, PyObject *x, PyObject *cache, int levels, int depth)
{
    PyTypeObject *t = Py_TYPE(x);
    if (t == T_Atom || t == T_Pid || t == T_Ref || t == T_Port) {
        e->acache = cache;
        int r = enc(e, x, depth);
        e->acache = NULL;
        return r;
    }
    if (levels > 0 && t == &PyTuple_Type && PyTuple_GET_SIZE(x) <= 255) {
        Py_ssize_t n = PyTuple_GET_SIZE(x), i;
        ENSURE(e, 2);
        w8(e, SMALL_TUPLE_EXT);
        w8(e, (unsigned int)n);
        for (i = 0; i < n; i++)
            if (enc_spine(e, PyTuple_GET_ITEM(x, i), cache, levels - 1, depth - 1) < 0)
                return -1;
        return 0;
    }
    return enc(e, x, depth);
}

/* enc_spine's refs without its bytes: what the spine's atoms add to ``e``'s refs (each
 * encoded and then dropped), so that the header can be written before the term. */
static int
spine_refs(Enc *e, PyObject *x, PyObject *cache, int levels, int depth)
{
    PyTypeObject *t = Py_TYPE(x);
    if (t == T_Atom || t == T_Pid || t == T_Ref || t == T_Port) {
        Py_ssize_t len = e->len;
        e->acache = cache;
        int r = enc(e, x, depth);
        e->acache = NULL;
        e->len = len;
        return r;
    }
    if (levels > 0 && t == &PyTuple_Type && PyTuple_GET_SIZE(x) <= 255) {
        Py_ssize_t n = PyTuple_GET_SIZE(x), i;
        for (i = 0; i < n; i++)
            if (spine_refs(e, PyTuple_GET_ITEM(x, i), cache, levels - 1, depth - 1) < 0)
                return -1;
    }
    return 0;
}

/* The control message: its own atoms and the nodes of its own pids, refs and ports through
 * the atom cache; what it nests is inline, as everything is outside a tuple of at most 255
 * elements. */
static int
enc_control_cached(Enc *e, PyObject *ctl, PyObject *cache)
{
    if (!PyTuple_CheckExact(ctl) || PyTuple_GET_SIZE(ctl) > 255)
        return enc(e, ctl, 10000);
    Py_ssize_t n = PyTuple_GET_SIZE(ctl), i;
    ENSURE(e, 2);
    w8(e, SMALL_TUPLE_EXT);
    w8(e, (unsigned int)n);
    for (i = 0; i < n; i++)
        if (enc_spine(e, PyTuple_GET_ITEM(ctl, i), cache, 0, 9999) < 0)
            return -1;
    return 0;
}

/* encode_dist_packet with an atom cache: ``Length:4 | 131 68 NumberOfAtomCacheRefs Flags
 * AtomCacheRefs | Control | [Payload]``; the slots of the refs marked new are set in
 * ``cache`` once the message is whole (the peer sets its own as it reads the header). The
 * control message is encoded first, on its own, and a payload that fits the stack buffer
 * after it; a bigger one's spine adds its refs first (spine_refs), so the header is known
 * before the payload is built after it: a big payload is not copied. */
static PyObject *
encode_dist_packet_cached(PyObject *ctl, PyObject *payload, PyObject *missing, PyObject *cache,
                          int parts)
{
    PyObject *result = NULL;
    if (!PyList_CheckExact(cache) || PyList_GET_SIZE(cache) != ATOM_CACHE_SIZE) {
        PyErr_Format(PyExc_TypeError, "atom_cache must be a list of %d slots", ATOM_CACHE_SIZE);
        return NULL;
    }
    Enc c, e; /* the control message (and a small payload), then the packet */
    enc_init(&c);
    enc_init(&e);
    if (enc_control_cached(&c, ctl, cache) < 0)
        goto fail;
    /* the payload: 0 none; 1 in c after the control (it fit the stack buffer); 2 into e
     * after the header, its refs found first (spine_refs); 3 into e inline (it fails) */
    int how = 0;
    if (payload != missing) {
        int nctl = c.nrefs;
        Py_ssize_t clen = c.len;
        if (c.bytes == NULL) {
            c.nogrow = 1;
            int r = enc_spine(&c, payload, cache, PAYLOAD_SPINE, 10000);
            c.nogrow = 0;
            if (r == 0)
                how = 1;
            else if (!c.overflow)
                goto fail; /* the payload's own error, the first in its order */
            else {
                PyErr_Clear();
                c.overflow = 0;
                while (c.nrefs > nctl) /* (spine_refs finds them again) */
                    Py_DECREF(c.ratom[--c.nrefs]);
            }
        }
        if (how == 0) { /* a big payload is not copied: built in e, after the header */
            how = 2;
            c.len = clen;
            if (spine_refs(&c, payload, cache, PAYLOAD_SPINE, 10000) < 0) {
                /* it fails: encoded inline below, it raises its first error in order */
                PyErr_Clear();
                while (c.nrefs > nctl)
                    Py_DECREF(c.ratom[--c.nrefs]);
                how = 3;
            }
        }
    }
    int n = c.nrefs, i;
    const char *text[MAX_CACHE_REFS];
    Py_ssize_t tlen[MAX_CACHE_REFS];
    Py_ssize_t head = 7; /* Length:4 131 68 NumberOfAtomCacheRefs */
    if (n) {
        head += n / 2 + 1; /* a half byte of flags per ref, and one for LongAtoms */
        for (i = 0; i < n; i++) {
            head += 1; /* InternalSegmentIndex */
            if (c.rnew[i]) {
                text[i] = PyUnicode_AsUTF8AndSize(c.ratom[i], &tlen[i]);
                if (text[i] == NULL)
                    goto fail;
                head += 1 + tlen[i]; /* Length (1 byte: no LongAtoms), AtomText */
            }
        }
    }
    Py_ssize_t total = head + c.len;
    unsigned char *p;
    if (how == 1) { /* the packet is the header and c: written straight into the result */
        if ((result = PyBytes_FromStringAndSize(NULL, total)) == NULL)
            goto fail;
        p = (unsigned char *)PyBytes_AS_STRING(result);
        uint32_t len = (uint32_t)(total - 4); /* a header (under 70 KB) and the stack buffer */
        p[0] = (unsigned char)(len >> 24);
        p[1] = (unsigned char)(len >> 16);
        p[2] = (unsigned char)(len >> 8);
        p[3] = (unsigned char)len;
    }
    else {
        if (e.cap < total && enc_grow(&e, total) < 0)
            goto fail;
        p = e.p;
    }
    p[4] = VERSION;
    p[5] = DIST_HEADER;
    p[6] = (unsigned char)n;
    if (n) {
        unsigned char *f = p + 7, *r = f + n / 2 + 1;
        memset(f, 0, (size_t)(n / 2 + 1)); /* LongAtoms 0: every text here is under 256 bytes */
        for (i = 0; i < n; i++) {
            unsigned int half = (c.rnew[i] ? 8u : 0u) | (unsigned int)(c.rslot[i] >> 8);
            f[i / 2] |= (unsigned char)(i % 2 ? half << 4 : half);
            *r++ = (unsigned char)(c.rslot[i] & 0xFF);
            if (c.rnew[i]) {
                *r++ = (unsigned char)tlen[i];
                memcpy(r, text[i], (size_t)tlen[i]);
                r += tlen[i];
            }
        }
    }
    memcpy(p + head, c.p, (size_t)c.len);
    Py_CLEAR(c.bytes);
    if (how != 1) {
        e.len = total;
        if (parts && (e.iov = PyList_New(0)) == NULL)
            goto fail;
        if (how == 2) { /* the refs are c's (borrowed): e finds them, and adds none */
            memcpy(e.rslot, c.rslot, sizeof(c.rslot[0]) * (size_t)n);
            memcpy(e.ratom, c.ratom, sizeof(c.ratom[0]) * (size_t)n);
            e.nrefs = n;
            e.frozen = 1;
            int r = enc_spine(&e, payload, cache, PAYLOAD_SPINE, 10000);
            e.nrefs = 0;
            if (r < 0)
                goto fail;
        }
        else if (how == 3 && enc(&e, payload, 10000) < 0)
            goto fail;
        if ((result = dist_parts_finish(&e)) == NULL)
            goto fail;
    }
    if (result != NULL) {
        for (i = 0; i < n; i++) {
            if (c.rnew[i]) {
                Py_INCREF(c.ratom[i]);
                if (PyList_SetItem(cache, c.rslot[i], c.ratom[i]) < 0) { /* takes the reference */
                    Py_CLEAR(result);
                    break;
                }
            }
        }
    }
    enc_drop_refs(&c);
    return result;
fail:
    Py_XDECREF(result);
    enc_drop_refs(&c);
    Py_XDECREF(c.bytes);
    enc_failed(&e);
    return NULL;
}

static PyObject *
py_encode_dist_packet(PyObject *module, PyObject *const *args, Py_ssize_t nargs,
                      PyObject *kwnames)
{
    PyObject *a[6];
    int pass = 0, parts = 0;
    (void)module;
    if (parse_args(&encode_dist_packet_spec, args, nargs, kwnames, a) < 0)
        return NULL;
    if (a[3] != NULL && (pass = PyObject_IsTrue(a[3])) < 0)
        return NULL;
    if (a[5] != NULL && (parts = PyObject_IsTrue(a[5])) < 0)
        return NULL;
    if (a[4] != NULL && a[4] != Py_None) {
        if (pass) {
            PyErr_SetString(PyExc_ValueError, "a pass-through packet has no atom cache refs");
            return NULL;
        }
        return encode_dist_packet_cached(a[0], a[1], a[2], a[4], parts);
    }
    Enc e;
    enc_init(&e);
    if (parts && (e.iov = PyList_New(0)) == NULL)
        return NULL;
    w32(&e, 0); /* the length, filled in below */
    if (pass) {
        w8(&e, DIST_PASS_THROUGH);
        w8(&e, VERSION);
    }
    else {
        w8(&e, VERSION);
        w8(&e, DIST_HEADER);
        w8(&e, 0); /* no atom cache refs */
    }
    if (enc(&e, a[0], 10000) < 0)
        goto fail;
    if (a[1] != a[2]) {
        if (pass) {
            if (e.cap - e.len < 1 && enc_grow(&e, 1) < 0)
                goto fail;
            w8(&e, VERSION);
        }
        if (enc(&e, a[1], 10000) < 0)
            goto fail;
    }
    PyObject *result = dist_parts_finish(&e);
    if (result == NULL)
        goto fail;
    return result;
fail:
    enc_failed(&e);
    return NULL;
}

/* ---------------------------------------------------------------------------------------- */
/* module */

PyDoc_STRVAR(encode_doc,
"encode(term, *, compressed=False, versioned=True, max_depth=10000) -> bytes\n\n"
"Encode ``term`` as external term format bytes (with the 131 version byte by default).\n\n"
"``compressed`` is True for zlib level 6 or a level 0-9, like term_to_binary's option;\n"
"erl stores the compressed form only when it is smaller, and so do we.");

PyDoc_STRVAR(decode_doc,
"decode(data, *, atom_cache=None, max_depth=DEFAULT_MAX_DEPTH,\n"
"       max_uncompressed=DEFAULT_MAX_UNCOMPRESSED)\n\n"
"Decode a whole buffer holding exactly one versioned term (binary_to_term/1).");

PyDoc_STRVAR(decode_from_doc,
"decode_from(data, offset=0, *, versioned=True, atom_cache=None, max_depth=DEFAULT_MAX_DEPTH,\n"
"            max_uncompressed=DEFAULT_MAX_UNCOMPRESSED) -> (term, end)\n\n"
"Decode one term starting at ``offset``; return it and the offset just past it.\n\n"
"``versioned`` expects the 131 version byte first (False for terms inside a dist header).\n"
"``atom_cache`` resolves ATOM_CACHE_REF indexes (the per-message list from the dist header).");

PyDoc_STRVAR(decode_dist_packet_doc,
"decode_dist_packet(data, cache_entries, missing, start=0, end=None) -> (control, payload)\n\n"
"Decode one distribution packet body ``data[start:end]`` (after the 4-byte length):\n"
"``112 | 131 Control | [131 Payload]`` or ``131 68 | AtomCacheHeader | Control | [Payload]``.\n"
"New atom cache entries are stored in ``cache_entries`` (the connection's list of 2048\n"
"slots); ``missing`` is returned as the payload when none follows.");

PyDoc_STRVAR(peek_dist_packets_doc,
"peek_dist_packets(data, cache_entries, missing, start, max_packet)\n"
"--\n\n"
"The whole packets of data[start:] decoded, none handed anywhere: (pos, [(control,\n"
"payload), ...]), or None for a tick, a packet over max_packet, a fragment, or a later\n"
"packet with new atom cache entries (see the pure codec's docstring).");

PyDoc_STRVAR(peek_spawn_answer_doc,
"peek_spawn_answer(cache_entries, missing, max_packet, req, box, found, data) -> bool\n"
"--\n\n"
"Whether data (bytes read from a connection) holds the answer to spawn request req from\n"
"box, as erpc:call waits for it, or something else: then True, and found gets (pos, pid,\n"
"reason) for the answer (pid None for a failed spawn; pos where the packets after it begin)\n"
"or None for anything else. False while data holds only the answer's beginning. See the\n"
"pure codec's docstring.");

PyDoc_STRVAR(decode_dist_sends_doc,
"decode_dist_sends(data, cache_entries, missing, start, max_packet, deliver,\n"
"                  deliver_signal=None, sinks=None) -> (pos, delivered, control, payload)\n\n"
"Decode whole packets (4-byte length, then a body as decode_dist_packet takes) from\n"
"``data[start:]`` while each is a plain send (SEND, SEND_SENDER, REG_SEND) that\n"
"``deliver(to, payload)`` takes (returns true), or any other packet that\n"
"``deliver_signal(control, payload)`` takes, when given. A plain send whose recipient\n"
"``sinks`` (a dict) has a queue for goes to it instead of ``deliver``: a name (Atom) maps\n"
"to ``(deque, limit)``, a pid's ``id | serial << 32`` to ``(deque, limit, node,\n"
"creation)`` (for that node and creation only); appended while ``len(deque) < limit``,\n"
"else left to ``deliver``. Stops before a packet it leaves\n"
"to the caller (incomplete, a tick, over ``max_packet``, a fragment), with ``control``\n"
"and ``payload`` both ``missing``; or after one it decoded but neither hook took,\n"
"returned as ``control`` and ``payload``. ``pos`` is where the caller goes on. An\n"
"exception (a bad packet, or from a hook) carries ``dist_pos`` and ``dist_delivered``\n"
"(packets taken before it): ``dist_pos`` is the failing packet's start, or its end when\n"
"deliver_signal raised (the packet is consumed).");

PyDoc_STRVAR(decode_dist_header_doc,
"decode_dist_header(data, cache_entries, offset=0) -> (refs, end)\n\n"
"Parse ``NumberOfAtomCacheRefs | Flags | AtomCacheRefs`` at ``offset``, store new entries in\n"
"``cache_entries``; return the message's list of atoms (None without refs) and the offset\n"
"after the header.");

PyDoc_STRVAR(decode_dist_body_doc,
"decode_dist_body(data, refs, missing, start=0, end=None) -> (control, payload)\n\n"
"Decode ``Control | [Payload]`` (no version bytes) in ``data[start:end]``, ATOM_CACHE_REF\n"
"resolved through ``refs`` (from decode_dist_header); for reassembled fragments.");

PyDoc_STRVAR(encode_dist_packet_doc,
"encode_dist_packet(control, payload, missing, pass_through=False, atom_cache=None,\n"
"                   parts=False) -> bytes | list[bytes]\n\n"
"One whole distribution packet, its 4-byte length included: ``131 68 0 | Control |\n"
"[Payload]`` (a header without atom cache refs), or ``112 | 131 Control | [131 Payload]``\n"
"with ``pass_through``; no payload when ``payload`` is ``missing``. With ``atom_cache``\n"
"(the connection's 2048 outgoing slots, a list) the control message's own atoms and the\n"
"nodes of its own pids, refs and ports become refs in the header, and so do those on the\n"
"payload's tuple spine (the payload, and two tuples down); the slots are set. With\n"
"``parts``, a packet that holds a bytes object of 64 KiB or more may be a list of parts,\n"
"that object one of them (not copied), the length in the first: their concatenation\n"
"(which big binaries are kept apart, and so whether a list comes back, differs between\n"
"the twins: this one keeps none in the control or in a fun).");

static PyObject *py_type_slots(PyObject *self, PyObject *arg);

static PyMethodDef methods[] = {
    {"type_slots", py_type_slots, METH_O,
     "type_slots(on) -> bool: C hash and ==/!= on Pid and Reference (same values as their "
     "methods) or not; whether they were on."},
    {"encode", (PyCFunction)(void (*)(void))py_encode, METH_FASTCALL | METH_KEYWORDS,
     encode_doc},
    {"decode", (PyCFunction)(void (*)(void))py_decode, METH_FASTCALL | METH_KEYWORDS,
     decode_doc},
    {"decode_from", (PyCFunction)(void (*)(void))py_decode_from, METH_FASTCALL | METH_KEYWORDS,
     decode_from_doc},
    {"decode_dist_packet", (PyCFunction)(void (*)(void))py_decode_dist_packet,
     METH_FASTCALL | METH_KEYWORDS, decode_dist_packet_doc},
    {"decode_dist_sends", (PyCFunction)(void (*)(void))py_decode_dist_sends,
     METH_FASTCALL | METH_KEYWORDS, decode_dist_sends_doc},
    {"peek_dist_packets", (PyCFunction)(void (*)(void))py_peek_dist_packets,
     METH_FASTCALL | METH_KEYWORDS, peek_dist_packets_doc},
    {"peek_spawn_answer", (PyCFunction)(void (*)(void))py_peek_spawn_answer, METH_FASTCALL,
     peek_spawn_answer_doc},
    {"make_pid", (PyCFunction)(void (*)(void))py_make_pid, METH_FASTCALL,
     "make_pid(node, id, serial, creation) -> Pid: node an Atom, the rest ints, unchecked."},
    {"make_ref", (PyCFunction)(void (*)(void))py_make_ref, METH_FASTCALL,
     "make_ref(node, creation, counter) -> Reference: erts' layout, 18 then 32 then 32 bits\n"
     "of the counter (node an Atom)."},
    {"decode_dist_header", (PyCFunction)(void (*)(void))py_decode_dist_header,
     METH_FASTCALL | METH_KEYWORDS, decode_dist_header_doc},
    {"decode_dist_body", (PyCFunction)(void (*)(void))py_decode_dist_body,
     METH_FASTCALL | METH_KEYWORDS, decode_dist_body_doc},
    {"encode_dist_packet", (PyCFunction)(void (*)(void))py_encode_dist_packet,
     METH_FASTCALL | METH_KEYWORDS, encode_dist_packet_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef moduledef = {
    PyModuleDef_HEAD_INIT,
    "pynode.term._ccodec",
    "The compiled twin of pynode.term._codec_py: the same API, the same behaviour.",
    -1,
    methods,
    NULL,
    NULL,
    NULL,
    NULL,
};

static int
get_type(PyObject *mod, const char *name, PyTypeObject **out)
{
    PyObject *t = PyObject_GetAttrString(mod, name);
    if (t == NULL)
        return -1;
    if (!PyType_Check(t)) {
        PyErr_Format(PyExc_TypeError, "pynode.term.types.%s is not a class", name);
        Py_DECREF(t);
        return -1;
    }
    *out = (PyTypeObject *)t;
    return 0;
}

/* The offset of slot ``name`` of class t, from its member descriptor. */
static int
init_field(PyTypeObject *t, const char *name, Field *f)
{
    PyObject *descr = PyObject_GetAttrString((PyObject *)t, name);
    if (descr == NULL)
        return -1;
    if (!Py_IS_TYPE(descr, &PyMemberDescr_Type) ||
        ((PyMemberDescrObject *)descr)->d_member->type != T_OBJECT_EX) {
        PyErr_Format(PyExc_TypeError, "%s.%s is not a __slots__ member", t->tp_name, name);
        Py_DECREF(descr);
        return -1;
    }
    f->off = ((PyMemberDescrObject *)descr)->d_member->offset;
    Py_DECREF(descr);
    f->name = PyUnicode_InternFromString(name);
    return f->name == NULL ? -1 : 0;
}

/* ---------------------------------------------------------------------------------------- */
/* Pid and Reference: hash and equality in C. They key the runtime's tables (a message to a
 * pid, a call's ref: several lookups each), where the classes' Python __hash__ and __eq__
 * cost a Python frame per lookup. These slots give the same values as those methods (a
 * table filled before they were put on still finds its keys); an instance with an empty
 * slot, a subclass, or an operator other than == and != goes to the class's own. */

#define SLOT(o, f) (*(PyObject **)((char *)(o) + (f).off))

static hashfunc py_pid_hash, py_ref_hash;
static richcmpfunc py_pid_compare, py_ref_compare;
static PyObject *S_Pid;

static Py_hash_t
pid_hash(PyObject *self)
{
    if (Py_TYPE(self) != T_Pid)
        return py_pid_hash(self);
    PyObject *node = SLOT(self, F_pid_node), *id = SLOT(self, F_pid_id),
             *serial = SLOT(self, F_pid_serial), *creation = SLOT(self, F_pid_creation);
    if (!node || !id || !serial || !creation)
        return py_pid_hash(self);
    /* hash(("Pid", (node, id, serial, creation))), as Pid.__hash__ */
    PyObject *inner = PyTuple_Pack(4, node, id, serial, creation);
    if (inner == NULL)
        return -1;
    PyObject *outer = PyTuple_Pack(2, S_Pid, inner);
    Py_DECREF(inner);
    if (outer == NULL)
        return -1;
    Py_hash_t h = PyObject_Hash(outer);
    Py_DECREF(outer);
    return h;
}

static Py_hash_t
ref_hash(PyObject *self)
{
    PyObject *ids = Py_TYPE(self) == T_Ref ? SLOT(self, F_ref_ids) : NULL;
    if (ids == NULL)
        return py_ref_hash(self);
    return PyObject_Hash(ids);  /* as Reference.__hash__ */
}

/* 1 when every field of a equals b's (== then truth, as the Python methods do: no identity
 * shortcut), 0 when not, -1 on an error, -2 when a field's __eq__ emptied a slot */
static int
fields_equal(PyObject *a, PyObject *b, const Field *const *fs, int n)
{
    for (int i = 0; i < n; i++) {
        PyObject *x = SLOT(a, *fs[i]), *y = SLOT(b, *fs[i]);
        if (x == NULL || y == NULL)
            return -2;
        Py_INCREF(x);
        Py_INCREF(y);
        PyObject *res = PyObject_RichCompare(x, y, Py_EQ);
        Py_DECREF(x);
        Py_DECREF(y);
        if (res == NULL)
            return -1;
        int r = res == Py_True ? 1 : res == Py_False ? 0 : PyObject_IsTrue(res);
        Py_DECREF(res);
        if (r != 1)
            return r;
    }
    return 1;
}

static int
all_set(PyObject *o, const Field *const *fs, int n)
{
    for (int i = 0; i < n; i++)
        if (SLOT(o, *fs[i]) == NULL)
            return 0;
    return 1;
}

static PyObject *
fast_compare(PyObject *a, PyObject *b, int op, PyTypeObject *t, const Field *const *fs, int n,
             richcmpfunc fallback)
{
    if ((op != Py_EQ && op != Py_NE) || Py_TYPE(a) != t || Py_TYPE(b) != t || !all_set(a, fs, n) ||
        !all_set(b, fs, n))
        return fallback(a, b, op);
    int r = fields_equal(a, b, fs, n);
    if (r == -2)
        return fallback(a, b, op);
    if (r < 0)
        return NULL;
    return PyBool_FromLong(op == Py_EQ ? r : !r);
}

/* in Pid.__eq__'s and Reference.__eq__'s order */
static const Field *const pid_fields[] = {&F_pid_id, &F_pid_serial, &F_pid_node, &F_pid_creation};
static const Field *const ref_fields[] = {&F_ref_ids, &F_ref_node, &F_ref_creation};

static PyObject *
pid_compare(PyObject *a, PyObject *b, int op)
{
    return fast_compare(a, b, op, T_Pid, pid_fields, 4, py_pid_compare);
}

static PyObject *
ref_compare(PyObject *a, PyObject *b, int op)
{
    return fast_compare(a, b, op, T_Ref, ref_fields, 3, py_ref_compare);
}

/* Put our slots on t (saving its own), or give its own back; only ours are replaced */
static void
swap_slots(PyTypeObject *t, int on, hashfunc hash, richcmpfunc compare, hashfunc *saved_hash,
           richcmpfunc *saved_compare)
{
    if (on && t->tp_hash != hash) {
        *saved_hash = t->tp_hash;
        *saved_compare = t->tp_richcompare;
        t->tp_hash = hash;
        t->tp_richcompare = compare;
        PyType_Modified(t);
    } else if (!on && t->tp_hash == hash) {
        t->tp_hash = *saved_hash;
        if (t->tp_richcompare == compare)
            t->tp_richcompare = *saved_compare;
        PyType_Modified(t);
    }
}

/* Put the C slots on Pid and Reference (on: true) or give the classes their own back;
 * returns whether they were on. A method assigned to a class in Python meanwhile stays.
 * pynode.term turns them on when it picks this codec. */
static PyObject *
py_type_slots(PyObject *self, PyObject *arg)
{
    (void)self;
    int on = PyObject_IsTrue(arg);
    if (on < 0)
        return NULL;
    int was = T_Pid->tp_hash == pid_hash && T_Ref->tp_hash == ref_hash;
    if (on && S_Pid == NULL && (S_Pid = PyUnicode_InternFromString("Pid")) == NULL)
        return NULL;
    swap_slots(T_Pid, on, pid_hash, pid_compare, &py_pid_hash, &py_pid_compare);
    swap_slots(T_Ref, on, ref_hash, ref_compare, &py_ref_hash, &py_ref_compare);
    return PyBool_FromLong(was);
}

static int
init_spec(ArgSpec *spec)
{
    for (int i = 0; i < spec->nparams; i++) {
        spec->inames[i] = PyUnicode_InternFromString(spec->names[i]);
        if (spec->inames[i] == NULL)
            return -1;
    }
    return 0;
}

PyMODINIT_FUNC
PyInit__ccodec(void)
{
    PyObject *m = NULL, *types = NULL, *errors = NULL, *mod = NULL;
    m = PyModule_Create(&moduledef);
    if (m == NULL)
        return NULL;
    if ((types = PyImport_ImportModule("pynode.term.types")) == NULL ||
        (errors = PyImport_ImportModule("pynode.term.errors")) == NULL ||
        (mod = PyImport_ImportModule("struct")) == NULL)
        goto fail;
    if ((E_struct = PyObject_GetAttrString(mod, "error")) == NULL ||
        (O_struct_pack = PyObject_GetAttrString(mod, "pack")) == NULL)
        goto fail;
    Py_CLEAR(mod);
    if ((mod = PyImport_ImportModule("zlib")) == NULL ||
        (E_zlib = PyObject_GetAttrString(mod, "error")) == NULL)
        goto fail;
    Py_CLEAR(mod);
    /* collections.deque, from the C module under it: collections itself costs the cold
     * start of `pynode rpc` about 3 ms (tests/test_cli.py keeps it out) */
    if ((mod = PyImport_ImportModule("_collections")) == NULL ||
        get_type(mod, "deque", &T_deque) < 0 ||
        (O_deque_append = PyObject_GetAttrString((PyObject *)T_deque, "append")) == NULL)
        goto fail;
    Py_CLEAR(mod);
    if (get_type(types, "Atom", &T_Atom) < 0 || get_type(types, "Pid", &T_Pid) < 0 ||
        get_type(types, "Port", &T_Port) < 0 || get_type(types, "Reference", &T_Ref) < 0 ||
        get_type(types, "ImproperList", &T_Improper) < 0 ||
        get_type(types, "BitString", &T_Bits) < 0 || get_type(types, "Fun", &T_Fun) < 0 ||
        get_type(types, "ExportFun", &T_Export) < 0 ||
        get_type(types, "FrozenList", &T_FList) < 0 ||
        get_type(types, "FrozenMap", &T_FMap) < 0 ||
        get_type(types, "Struct", &T_Struct) < 0)
        goto fail;
    if ((O_freeze = PyObject_GetAttrString(types, "freeze")) == NULL ||
        (E_Decode = PyObject_GetAttrString(errors, "DecodeError")) == NULL ||
        (E_Encode = PyObject_GetAttrString(errors, "EncodeError")) == NULL ||
        (O_ErlFloatKey = PyObject_GetAttrString(types, "ErlFloatKey")) == NULL ||
        (O_default_max_depth = PyLong_FromLong(DEFAULT_MAX_DEPTH)) == NULL ||
        (O_fifty = PyLong_FromLong(50)) == NULL ||
        (O_default_max_unc = PyLong_FromLongLong(DEFAULT_MAX_UNCOMPRESSED)) == NULL ||
        (S_items = PyUnicode_InternFromString("items")) == NULL)
        goto fail;
    if ((O_atom_true = PyObject_CallFunction((PyObject *)T_Atom, "s", "true")) == NULL ||
        (O_atom_false = PyObject_CallFunction((PyObject *)T_Atom, "s", "false")) == NULL ||
        (O_struct_key = PyObject_GetAttrString(types, "STRUCT_KEY")) == NULL)
        goto fail;
    if (init_field(T_Pid, "node", &F_pid_node) < 0 || init_field(T_Pid, "id", &F_pid_id) < 0 ||
        init_field(T_Pid, "serial", &F_pid_serial) < 0 ||
        init_field(T_Pid, "creation", &F_pid_creation) < 0 ||
        init_field(T_Port, "node", &F_port_node) < 0 ||
        init_field(T_Port, "id", &F_port_id) < 0 ||
        init_field(T_Port, "creation", &F_port_creation) < 0 ||
        init_field(T_Ref, "node", &F_ref_node) < 0 ||
        init_field(T_Ref, "creation", &F_ref_creation) < 0 ||
        init_field(T_Ref, "ids", &F_ref_ids) < 0 ||
        init_field(T_Improper, "items", &F_il_items) < 0 ||
        init_field(T_Improper, "tail", &F_il_tail) < 0 ||
        init_field(T_Bits, "data", &F_bs_data) < 0 ||
        init_field(T_Bits, "bits", &F_bs_bits) < 0 ||
        init_field(T_Fun, "module", &F_fun_module) < 0 ||
        init_field(T_Fun, "arity", &F_fun_arity) < 0 ||
        init_field(T_Fun, "uniq", &F_fun_uniq) < 0 ||
        init_field(T_Fun, "index", &F_fun_index) < 0 ||
        init_field(T_Fun, "old_index", &F_fun_old_index) < 0 ||
        init_field(T_Fun, "old_uniq", &F_fun_old_uniq) < 0 ||
        init_field(T_Fun, "pid", &F_fun_pid) < 0 ||
        init_field(T_Fun, "free_vars", &F_fun_free_vars) < 0 ||
        init_field(T_Export, "module", &F_ex_module) < 0 ||
        init_field(T_Export, "function", &F_ex_function) < 0 ||
        init_field(T_Export, "arity", &F_ex_arity) < 0 ||
        init_field(T_FMap, "_d", &F_fm_d) < 0 || init_field(T_FMap, "_h", &F_fm_h) < 0)
        goto fail;
    if (init_spec(&encode_spec) < 0 || init_spec(&decode_spec) < 0 ||
        init_spec(&decode_from_spec) < 0 || init_spec(&decode_dist_packet_spec) < 0 ||
        init_spec(&decode_dist_sends_spec) < 0 || init_spec(&peek_dist_packets_spec) < 0 ||
        init_spec(&decode_dist_header_spec) < 0 || init_spec(&decode_dist_body_spec) < 0 ||
        init_spec(&encode_dist_packet_spec) < 0)
        goto fail;
    if (depth_arg(O_default_max_depth, &default_depth) < 0 ||
        limit_arg(O_default_max_unc, &default_max_unc) < 0)
        goto fail;
    if (PyModule_AddObjectRef(m, "ErlFloatKey", O_ErlFloatKey) < 0 ||
        PyModule_AddObjectRef(m, "DEFAULT_MAX_DEPTH", O_default_max_depth) < 0 ||
        PyModule_AddObjectRef(m, "DEFAULT_MAX_UNCOMPRESSED", O_default_max_unc) < 0 ||
        PyModule_AddIntConstant(m, "ATOM_CACHE_SIZE", ATOM_CACHE_SIZE) < 0)
        goto fail;
    {
        PyObject *all = Py_BuildValue("[sssssssssssss]", "encode", "decode", "decode_from",
                                      "decode_dist_packet", "decode_dist_sends",
                                      "peek_dist_packets", "peek_spawn_answer", "make_pid",
                                      "make_ref",
                                      "decode_dist_header",
                                      "decode_dist_body", "encode_dist_packet", "ErlFloatKey");
        if (all == NULL || PyModule_AddObject(m, "__all__", all) < 0) {
            Py_XDECREF(all);
            goto fail;
        }
    }
    Py_DECREF(types);
    Py_DECREF(errors);
    return m;
fail:
    Py_XDECREF(types);
    Py_XDECREF(errors);
    Py_XDECREF(mod);
    Py_DECREF(m);
    return NULL;
}
