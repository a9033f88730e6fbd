/* safetensors.c — see safetensors.h.
 *
 * Reading is done in three steps so that a hostile file costs little and never leaves
 * partial results behind:
 *   1. the 8-byte length prefix is checked against the file size and the header limit;
 *   2. the header is checked as JSON (syntax, UTF-8, nesting depth) without allocating,
 *      then walked a second time against the safetensors schema, building the tensor list;
 *   3. only when every entry, name and byte range is valid are tensor bytes copied out.
 * Every error is reported once, by the function that finds it, and propagated as -1. */
#include "safetensors.h"
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Tensor bytes are copied verbatim between the file (little-endian by definition) and
   memory, which is only right on a little-endian host. */
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "safetensors.c assumes a little-endian host"
#endif

/* ------------------------------------------------------------------ dtypes */

static const struct { const char *name; size_t size; } st_dtypes[JM_ST_NDTYPES] = {
    [JM_ST_F32] = {"F32", 4},   [JM_ST_F64] = {"F64", 8},   [JM_ST_I32] = {"I32", 4},
    [JM_ST_I64] = {"I64", 8},   [JM_ST_U8] = {"U8", 1},     [JM_ST_I8] = {"I8", 1},
    [JM_ST_I16] = {"I16", 2},   [JM_ST_U16] = {"U16", 2},   [JM_ST_F16] = {"F16", 2},
    [JM_ST_BF16] = {"BF16", 2}, [JM_ST_BOOL] = {"BOOL", 1}, [JM_ST_U32] = {"U32", 4},
    [JM_ST_U64] = {"U64", 8},
};

/* The enum's underlying type is implementation-defined, so range checks go through int. */
static int st_dtype_ok(jm_st_dtype d) { return (int)d >= 0 && (int)d < JM_ST_NDTYPES; }

size_t jm_st_dtype_size(jm_st_dtype d) { return st_dtype_ok(d) ? st_dtypes[d].size : 0; }

const char *jm_st_dtype_name(jm_st_dtype d) { return st_dtype_ok(d) ? st_dtypes[d].name : NULL; }

int jm_st_dtype_parse(const char *s, jm_st_dtype *out) {
    if (!s) return -1;
    for (int k = 0; k < JM_ST_NDTYPES; k++) {
        if (strcmp(s, st_dtypes[k].name) == 0) {
            if (out) *out = (jm_st_dtype)k;
            return 0;
        }
    }
    return -1;
}

/* ------------------------------------------------------------------ errors */

typedef struct {
    const char *path;   /* only for messages */
    char *err;
    size_t errlen;
} st_ctx;

static st_ctx st_ctx_make(const char *path, char *err, size_t errlen) {
    st_ctx c = {path ? path : "(memory)", err, errlen};
    if (err && errlen) err[0] = 0;
    return c;
}

/* Writes "PATH: message" into the caller's buffer; always returns -1. */
static int st_fail(st_ctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int st_fail(st_ctx *c, const char *fmt, ...) {
    if (!c->err || !c->errlen) return -1;
    int k = snprintf(c->err, c->errlen, "%s: ", c->path);
    if (k >= 0 && (size_t)k < c->errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(c->err + k, c->errlen - (size_t)k, fmt, ap);
        va_end(ap);
    }
    return -1;
}

/* Length of the well-formed UTF-8 sequence at s (at most n bytes readable), 0 if it is
   ill-formed. Follows Unicode table 3-7: no overlong forms, no UTF-16 surrogates
   (ED A0..BF), nothing above U+10FFFF. Continuation bytes are checked in order, so on a
   NUL-terminated string the scan stops at the NUL and n may safely be given as 4. */
static size_t st_utf8_len(const uint8_t *s, size_t n) {
    if (n == 0) return 0;
    uint8_t b = s[0], lo = 0x80, hi = 0xBF;
    size_t len;
    if (b < 0x80) return 1;
    if (b >= 0xC2 && b <= 0xDF) {
        len = 2;
    } else if (b >= 0xE0 && b <= 0xEF) {
        len = 3;
        if (b == 0xE0) lo = 0xA0;       /* below: overlong */
        if (b == 0xED) hi = 0x9F;       /* above: surrogates */
    } else if (b >= 0xF0 && b <= 0xF4) {
        len = 4;
        if (b == 0xF0) lo = 0x90;       /* below: overlong */
        if (b == 0xF4) hi = 0x8F;       /* above: beyond U+10FFFF */
    } else {
        return 0;                       /* continuation byte, C0, C1 or F5..FF */
    }
    if (n < 2 || s[1] < lo || s[1] > hi) return 0;
    for (size_t k = 2; k < len; k++)
        if (k >= n || s[k] < 0x80 || s[k] > 0xBF) return 0;
    return len;
}

static int st_utf8_valid(const char *s) {
    const uint8_t *p = (const uint8_t *)s;
    while (*p) {
        size_t k = st_utf8_len(p, 4);
        if (!k) return 0;
        p += k;
    }
    return 1;
}

/* A name as shown inside an error message: one printable line of bounded length.
   Control bytes and invalid UTF-8 become \xNN, so a hostile name cannot split the
   one-line message or flood it; long names are cut (at a character boundary) with "...". */
#define ST_QMAX 96
typedef struct { char s[ST_QMAX + 16]; } st_qbuf;

static const char *st_q(const char *s, st_qbuf *b) {
    const uint8_t *p = (const uint8_t *)(s ? s : "(null)");
    size_t o = 0;
    while (*p && o < ST_QMAX) {
        size_t k = st_utf8_len(p, 4);
        if (k == 0 || *p < 0x20 || *p == 0x7f) {
            o += (size_t)snprintf(b->s + o, sizeof b->s - o, "\\x%02x", *p);
            p++;
        } else {
            memcpy(b->s + o, p, k);
            o += k;
            p += k;
        }
    }
    if (*p) { memcpy(b->s + o, "...", 3); o += 3; }
    b->s[o] = 0;
    return b->s;
}

/* "[32,1,3,3]"; the buffer fits JM_ST_MAX_RANK 20-digit dimensions. */
typedef struct { char s[JM_ST_MAX_RANK * 21 + 4]; } st_shapebuf;

static const char *st_shape_str(const int64_t *shape, int rank, st_shapebuf *b) {
    size_t o = 0;
    b->s[o++] = '[';
    for (int k = 0; k < rank && k < JM_ST_MAX_RANK; k++)
        o += (size_t)snprintf(b->s + o, sizeof b->s - o, k ? ",%" PRId64 : "%" PRId64, shape[k]);
    b->s[o++] = ']';
    b->s[o] = 0;
    return b->s;
}

/* Byte size of a tensor, or -1 if it does not fit in size_t. */
static int st_nbytes(const int64_t *shape, int rank, size_t esize, uint64_t *out) {
    /* A zero dimension makes the tensor empty however large the other dimensions are, so
       it is looked for first: [2^62, 4, 0] is a valid empty tensor, not an overflow. */
    for (int k = 0; k < rank; k++) {
        if (shape[k] == 0) { *out = 0; return 0; }
    }
    /* All factors are >= 1, so partial products only grow: checking each step suffices. */
    uint64_t total = esize;
    for (int k = 0; k < rank; k++) {
        uint64_t d = (uint64_t)shape[k];
        if (total > UINT64_MAX / d) return -1;
        total *= d;
    }
    if (total > SIZE_MAX) return -1;
    *out = total;
    return 0;
}

/* Owned tensor memory: JM_ST_ALIGN-aligned, never NULL for a valid size (aligned_alloc
   wants a size that is a multiple of the alignment, which also gives empty tensors a real
   buffer), and the rounding slack is zeroed so vector loops that overrun read zeros. */
static void *st_alloc_data(size_t nbytes) {
    if (nbytes > SIZE_MAX - JM_ST_ALIGN) return NULL;
    size_t cap = nbytes ? (nbytes + JM_ST_ALIGN - 1) / JM_ST_ALIGN * JM_ST_ALIGN : JM_ST_ALIGN;
    uint8_t *p = aligned_alloc(JM_ST_ALIGN, cap);
    if (p) memset(p + nbytes, 0, cap - nbytes);
    return p;
}

/* Sorts the strings and reports the first one that occurs twice (1), none (0). */
static int st_cmp_str(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int st_find_dup(const char **names, int n, const char **dup) {
    if (n < 2) return 0;   /* also keeps a possibly-NULL array away from qsort */
    qsort(names, (size_t)n, sizeof *names, st_cmp_str);
    for (int k = 1; k < n; k++) {
        if (strcmp(names[k - 1], names[k]) == 0) { *dup = names[k]; return 1; }
    }
    return 0;
}

/* ------------------------------------------------------------------ JSON */

typedef struct {
    st_ctx *c;
    const uint8_t *s;   /* the header text */
    size_t n, i;        /* its length and the cursor */
} st_json;

static int js_peek(const st_json *j) { return j->i < j->n ? j->s[j->i] : -1; }

static int js_isdigit(int ch) { return ch >= '0' && ch <= '9'; }

static void js_ws(st_json *j) {
    while (j->i < j->n) {
        uint8_t ch = j->s[j->i];
        if (ch != ' ' && ch != '\t' && ch != '\n' && ch != '\r') break;
        j->i++;
    }
}

static int js_syntax(st_json *j, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int js_syntax(st_json *j, const char *fmt, ...) {
    char what[160];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    return st_fail(j->c, "header is not valid JSON: %s at header byte %zu", what, j->i);
}

/* "expected X, found Y" with Y the byte at the cursor. */
static int js_unexpected(st_json *j, const char *expected) {
    int ch = js_peek(j);
    if (ch < 0) return js_syntax(j, "%s, found the end of the header", expected);
    if (ch > 0x20 && ch < 0x7f) return js_syntax(j, "%s, found '%c'", expected, ch);
    return js_syntax(j, "%s, found byte 0x%02x", expected, ch);
}

static int js_expect(st_json *j, int ch) {
    if (js_peek(j) != ch) {
        char what[16];
        snprintf(what, sizeof what, "expected '%c'", ch);
        return js_unexpected(j, what);
    }
    j->i++;
    return 0;
}

/* A short description of the (syntactically valid) JSON value at the cursor. */
static const char *js_kind(const st_json *j) {
    switch (js_peek(j)) {
    case '{': return "an object";
    case '[': return "a list";
    case '"': return "a string";
    case 't': case 'f': return "a boolean";
    case 'n': return "null";
    case -1: return "nothing";
    default: return "a number";
    }
}

static int js_hex4(const uint8_t *s, size_t n, size_t at, unsigned *v) {
    if (at > n || n - at < 4) return -1;
    unsigned x = 0;
    for (size_t k = at; k < at + 4; k++) {
        uint8_t ch = s[k];
        unsigned d;
        if (ch >= '0' && ch <= '9') d = ch - '0';
        else if (ch >= 'a' && ch <= 'f') d = ch - 'a' + 10u;
        else if (ch >= 'A' && ch <= 'F') d = ch - 'A' + 10u;
        else return -1;
        x = x * 16 + d;
    }
    *v = x;
    return 0;
}

/* Encodes a code point (a scalar value, never a surrogate) as UTF-8; dst may be NULL
   to only count. */
static size_t js_put_utf8(uint8_t *dst, uint32_t cp) {
    uint8_t b[4];
    size_t len;
    if (cp < 0x80) { b[0] = (uint8_t)cp; len = 1; }
    else if (cp < 0x800) { b[0] = (uint8_t)(0xC0 | cp >> 6); b[1] = (uint8_t)(0x80 | (cp & 0x3F)); len = 2; }
    else if (cp < 0x10000) {
        b[0] = (uint8_t)(0xE0 | cp >> 12); b[1] = (uint8_t)(0x80 | (cp >> 6 & 0x3F));
        b[2] = (uint8_t)(0x80 | (cp & 0x3F)); len = 3;
    } else {
        b[0] = (uint8_t)(0xF0 | cp >> 18); b[1] = (uint8_t)(0x80 | (cp >> 12 & 0x3F));
        b[2] = (uint8_t)(0x80 | (cp >> 6 & 0x3F)); b[3] = (uint8_t)(0x80 | (cp & 0x3F)); len = 4;
    }
    if (dst) memcpy(dst, b, len);
    return len;
}

/* Scans the JSON string whose opening quote is at the cursor and leaves the cursor after
   its closing quote. With dst non-NULL the decoded UTF-8 is stored there; *dlen gets the
   decoded length and *nul whether a \u0000 occurred. On error the cursor is left at the
   offending byte, for the message. */
static int js_scan_string(st_json *j, uint8_t *dst, size_t *dlen, int *nul) {
    const uint8_t *s = j->s;
    size_t n = j->n, i = j->i + 1, o = 0;
    *nul = 0;
    for (;;) {
        if (i >= n) { j->i = i; return js_syntax(j, "unterminated string"); }
        uint8_t b = s[i];
        if (b == '"') { i++; break; }
        /* JSON forbids raw control characters inside strings; they must be escaped. */
        if (b < 0x20) { j->i = i; return js_syntax(j, "raw control character 0x%02x in a string", b); }
        if (b != '\\') {
            size_t k = st_utf8_len(s + i, n - i);
            if (!k) { j->i = i; return js_syntax(j, "invalid UTF-8 in a string"); }
            if (dst) memcpy(dst + o, s + i, k);
            o += k;
            i += k;
            continue;
        }
        if (i + 1 >= n) { j->i = i; return js_syntax(j, "unterminated string"); }
        uint32_t cp;
        switch (s[i + 1]) {
        case '"': cp = '"'; i += 2; break;
        case '\\': cp = '\\'; i += 2; break;
        case '/': cp = '/'; i += 2; break;
        case 'b': cp = '\b'; i += 2; break;
        case 'f': cp = '\f'; i += 2; break;
        case 'n': cp = '\n'; i += 2; break;
        case 'r': cp = '\r'; i += 2; break;
        case 't': cp = '\t'; i += 2; break;
        case 'u': {
            unsigned u, lo;
            if (js_hex4(s, n, i + 2, &u)) { j->i = i; return js_syntax(j, "\\u not followed by 4 hex digits"); }
            /* \u escapes are UTF-16 code units: a high surrogate (D800-DBFF) must be followed
               at once by an escaped low surrogate (DC00-DFFF), the pair encoding one code
               point above U+FFFF. A surrogate on its own has no UTF-8 form: an error. */
            if (u >= 0xD800 && u <= 0xDBFF) {
                if (i + 7 < n && s[i + 6] == '\\' && s[i + 7] == 'u' && js_hex4(s, n, i + 8, &lo) == 0 &&
                    lo >= 0xDC00 && lo <= 0xDFFF) {
                    cp = 0x10000 + ((uint32_t)(u - 0xD800) << 10) + (lo - 0xDC00);
                    i += 12;
                } else {
                    j->i = i;
                    return js_syntax(j, "unpaired UTF-16 surrogate \\u%04X", u);
                }
            } else if (u >= 0xDC00 && u <= 0xDFFF) {
                j->i = i;
                return js_syntax(j, "unpaired UTF-16 surrogate \\u%04X", u);
            } else {
                cp = u;
                i += 6;
            }
            break;
        }
        default:
            j->i = i;
            return js_syntax(j, "invalid escape sequence in a string");
        }
        if (cp == 0) *nul = 1;
        o += js_put_utf8(dst ? dst + o : NULL, cp);
    }
    j->i = i;
    *dlen = o;
    return 0;
}

/* Checks the string at the cursor and, with out non-NULL, returns it decoded in a new
   NUL-terminated buffer. Decoded strings become C strings (names, keys, values), so an
   embedded \u0000 — valid JSON — is refused there rather than silently truncated. */
static int js_string(st_json *j, char **out) {
    size_t start = j->i, dlen;
    int nul;
    if (js_peek(j) != '"') return js_unexpected(j, "expected a string");
    if (js_scan_string(j, NULL, &dlen, &nul)) return -1;
    if (!out) return 0;
    if (nul) {
        return st_fail(j->c, "string at header byte %zu contains \\u0000, which names and metadata cannot hold",
                       start);
    }
    char *p = malloc(dlen + 1);
    if (!p) return st_fail(j->c, "out of memory");
    size_t end = j->i;
    j->i = start;
    js_scan_string(j, (uint8_t *)p, &dlen, &nul);   /* validated above: cannot fail */
    j->i = end;
    p[dlen] = 0;
    *out = p;
    return 0;
}

typedef struct {
    int is_int;         /* no fraction and no exponent */
    int neg;            /* had a '-' sign */
    int big;            /* magnitude above INT64_MAX */
    uint64_t mag;       /* magnitude when is_int && !big */
    size_t start, end;  /* the number's text in the header */
} js_num;

/* Parses a JSON number: -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)? */
static int js_number(st_json *j, js_num *v) {
    const uint8_t *s = j->s;
    size_t n = j->n, i = j->i;
    memset(v, 0, sizeof *v);
    v->is_int = 1;
    v->start = i;
    if (i < n && s[i] == '-') { v->neg = 1; i++; }
    if (i >= n || !js_isdigit(s[i])) { j->i = i; return js_syntax(j, "number without digits"); }
    if (s[i] == '0') {
        i++;
        if (i < n && js_isdigit(s[i])) { j->i = i - 1; return js_syntax(j, "number with a leading zero"); }
    } else {
        for (; i < n && js_isdigit(s[i]); i++) {
            unsigned d = s[i] - '0';
            /* mag * 10 + d <= INT64_MAX  <=>  mag <= (INT64_MAX - d) / 10 */
            if (v->big || v->mag > ((uint64_t)INT64_MAX - d) / 10) v->big = 1;
            else v->mag = v->mag * 10 + d;
        }
    }
    if (i < n && s[i] == '.') {
        v->is_int = 0;
        i++;
        if (i >= n || !js_isdigit(s[i])) { j->i = i; return js_syntax(j, "number without digits after '.'"); }
        while (i < n && js_isdigit(s[i])) i++;
    }
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        v->is_int = 0;
        i++;
        if (i < n && (s[i] == '+' || s[i] == '-')) i++;
        if (i >= n || !js_isdigit(s[i])) { j->i = i; return js_syntax(j, "number without exponent digits"); }
        while (i < n && js_isdigit(s[i])) i++;
    }
    v->end = i;
    j->i = i;
    return 0;
}

static int js_literal(st_json *j, const char *word) {
    size_t len = strlen(word);
    if (j->n - j->i < len || memcmp(j->s + j->i, word, len) != 0) return js_unexpected(j, "expected a value");
    j->i += len;
    return 0;
}

/* Pass 1: checks that one JSON value starts at the cursor and skips it. Allocates
   nothing; depth counts the enclosing containers so that nesting is bounded. */
static int js_check_value(st_json *j, int depth) {
    int ch = js_peek(j);
    if (ch == '{' || ch == '[') {
        int close = ch == '{' ? '}' : ']';
        if (depth > JM_ST_MAX_DEPTH) return js_syntax(j, "nesting deeper than %d levels", JM_ST_MAX_DEPTH);
        j->i++;
        js_ws(j);
        if (js_peek(j) == close) { j->i++; return 0; }
        for (;;) {
            if (close == '}') {
                if (js_peek(j) != '"') return js_unexpected(j, "expected a string key");
                if (js_string(j, NULL)) return -1;
                js_ws(j);
                if (js_expect(j, ':')) return -1;
                js_ws(j);
            }
            if (js_check_value(j, depth + 1)) return -1;
            js_ws(j);
            ch = js_peek(j);
            if (ch == ',') { j->i++; js_ws(j); continue; }
            if (ch == close) { j->i++; return 0; }
            return js_unexpected(j, close == '}' ? "expected ',' or '}'" : "expected ',' or ']'");
        }
    }
    if (ch == '"') return js_string(j, NULL);
    if (ch == 't') return js_literal(j, "true");
    if (ch == 'f') return js_literal(j, "false");
    if (ch == 'n') return js_literal(j, "null");
    if (ch == '-' || js_isdigit(ch)) {
        js_num v;
        return js_number(j, &v);
    }
    return js_unexpected(j, "expected a value");
}

/* ------------------------------------------------------------------ schema */

typedef struct {
    uint64_t begin, end;
    int idx;            /* index into jm_st_file.t */
} st_span;

/* Pass 2 reads a list of non-negative integers (a shape or data_offsets) into v[];
   more than max elements fails with the message too_many. Shapes and offsets are sizes,
   so fractions, exponents (even 1e2), negatives and values over 2^63-1 are refused. */
static int st_int_list(st_json *j, const char *qn, const char *field, int64_t *v, int max, int *count,
                       const char *too_many) {
    *count = 0;
    if (js_peek(j) != '[') {
        return st_fail(j->c, "tensor '%s': %s must be a list of non-negative integers, found %s", qn, field,
                       js_kind(j));
    }
    j->i++;
    js_ws(j);
    if (js_peek(j) == ']') { j->i++; return 0; }
    for (int k = 0;; k++) {
        if (js_peek(j) != '-' && !js_isdigit(js_peek(j))) {
            return st_fail(j->c, "tensor '%s': %s element %d must be a non-negative integer, found %s", qn, field,
                           k, js_kind(j));
        }
        js_num num;
        if (js_number(j, &num)) return -1;
        int tl = (int)(num.end - num.start < 40 ? num.end - num.start : 40);
        const char *text = (const char *)j->s + num.start;
        if (!num.is_int)
            return st_fail(j->c, "tensor '%s': %s element %d (%.*s) is not an integer", qn, field, k, tl, text);
        if (num.neg && (num.big || num.mag))
            return st_fail(j->c, "tensor '%s': %s element %d (%.*s) is negative", qn, field, k, tl, text);
        if (num.big)
            return st_fail(j->c, "tensor '%s': %s element %d (%.*s) is larger than 2^63-1", qn, field, k, tl, text);
        if (k >= max) return st_fail(j->c, "tensor '%s': %s", qn, too_many);
        v[k] = (int64_t)num.mag;
        *count = k + 1;
        js_ws(j);
        if (js_peek(j) == ',') { j->i++; js_ws(j); continue; }
        return js_expect(j, ']');
    }
}

/* Pass 2 reads one tensor entry {"dtype", "shape", "data_offsets"} into t and sp. Each
   field must appear exactly once; anything else is an error that names the field. */
static int st_parse_entry(st_json *j, jm_st_tensor *t, st_span *sp) {
    st_qbuf qb;
    const char *qn = st_q(t->name, &qb);
    if (js_peek(j) != '{') {
        return st_fail(j->c, "tensor '%s': entry must be an object with dtype, shape and data_offsets, found %s",
                       qn, js_kind(j));
    }
    j->i++;
    js_ws(j);
    int have_dtype = 0, have_shape = 0, have_offsets = 0;
    while (js_peek(j) != '}') {
        char *field = NULL;
        if (js_string(j, &field)) return -1;
        js_ws(j);
        if (js_expect(j, ':')) { free(field); return -1; }
        js_ws(j);
        st_qbuf qf;
        int r = 0, *seen = NULL;
        if (strcmp(field, "dtype") == 0) seen = &have_dtype;
        else if (strcmp(field, "shape") == 0) seen = &have_shape;
        else if (strcmp(field, "data_offsets") == 0) seen = &have_offsets;
        if (!seen) {
            r = st_fail(j->c, "tensor '%s': unknown field '%s' (expected dtype, shape, data_offsets)", qn,
                        st_q(field, &qf));
        } else if (*seen) {
            r = st_fail(j->c, "tensor '%s': duplicate field '%s'", qn, field);
        } else if (seen == &have_dtype) {
            char *dt = NULL;
            if (js_peek(j) != '"') {
                r = st_fail(j->c, "tensor '%s': dtype must be a string, found %s", qn, js_kind(j));
            } else if ((r = js_string(j, &dt)) == 0 && jm_st_dtype_parse(dt, &t->dtype) != 0) {
                r = st_fail(j->c, "tensor '%s': unknown dtype '%s'", qn, st_q(dt, &qf));
            }
            free(dt);
        } else if (seen == &have_shape) {
            r = st_int_list(j, qn, "shape", t->shape, JM_ST_MAX_RANK, &t->rank,
                            "shape has more than 8 dimensions (rank limit JM_ST_MAX_RANK)");
        } else {
            int64_t off[2];
            int cnt;
            const char *msg = "data_offsets must be two integers [begin, end]";
            r = st_int_list(j, qn, "data_offsets", off, 2, &cnt, msg);
            if (r == 0 && cnt != 2) r = st_fail(j->c, "tensor '%s': %s, found %d", qn, msg, cnt);
            if (r == 0) { sp->begin = (uint64_t)off[0]; sp->end = (uint64_t)off[1]; }
        }
        free(field);
        if (r) return -1;
        if (seen) *seen = 1;
        js_ws(j);
        if (js_peek(j) == ',') { j->i++; js_ws(j); continue; }
        if (js_peek(j) != '}') return js_unexpected(j, "expected ',' or '}'");
    }
    j->i++;
    if (!have_dtype) return st_fail(j->c, "tensor '%s': missing field 'dtype'", qn);
    if (!have_shape) return st_fail(j->c, "tensor '%s': missing field 'shape'", qn);
    if (!have_offsets) return st_fail(j->c, "tensor '%s': missing field 'data_offsets'", qn);
    return 0;
}

/* Checks that an entry's byte range agrees with its dtype and shape and lies inside the
   data buffer; sets t->nbytes. */
static int st_check_entry(st_ctx *c, jm_st_tensor *t, const st_span *sp, uint64_t data_len) {
    st_qbuf qb;
    st_shapebuf sb;
    const char *qn = st_q(t->name, &qb), *dn = jm_st_dtype_name(t->dtype);
    uint64_t nb;
    if (st_nbytes(t->shape, t->rank, jm_st_dtype_size(t->dtype), &nb)) {
        return st_fail(c, "tensor '%s': dtype %s and shape %s give a byte size that overflows", qn, dn,
                       st_shape_str(t->shape, t->rank, &sb));
    }
    if (sp->begin > sp->end) {
        return st_fail(c, "tensor '%s': data_offsets [%" PRIu64 ", %" PRIu64 ") have begin > end", qn, sp->begin,
                       sp->end);
    }
    if (sp->end - sp->begin != nb) {
        return st_fail(c, "tensor '%s': data_offsets [%" PRIu64 ", %" PRIu64 ") do not match dtype %s and shape %s (%"
                       PRIu64 " bytes)", qn, sp->begin, sp->end, dn, st_shape_str(t->shape, t->rank, &sb), nb);
    }
    if (sp->end > data_len) {
        return st_fail(c, "tensor '%s': data_offsets [%" PRIu64 ", %" PRIu64 ") run past the end of the data buffer (%"
                       PRIu64 " bytes)", qn, sp->begin, sp->end, data_len);
    }
    t->nbytes = (size_t)nb;
    return 0;
}

/* Pass 2 reads the "__metadata__" object: string keys to string values. */
static int st_parse_meta(st_json *j, jm_st_file *out, int *cap) {
    if (js_peek(j) != '{')
        return st_fail(j->c, "__metadata__ must be an object of string values, found %s", js_kind(j));
    j->i++;
    js_ws(j);
    while (js_peek(j) != '}') {
        char *k = NULL, *v = NULL;
        st_qbuf qb;
        if (js_string(j, &k)) return -1;
        js_ws(j);
        if (js_expect(j, ':')) { free(k); return -1; }
        js_ws(j);
        if (js_peek(j) != '"') {
            st_fail(j->c, "__metadata__: value of '%s' must be a string, found %s", st_q(k, &qb), js_kind(j));
            free(k);
            return -1;
        }
        if (js_string(j, &v)) { free(k); return -1; }
        if (out->nmeta == *cap) {
            int nc = *cap ? (*cap > INT_MAX / 2 ? INT_MAX : *cap * 2) : 8;
            jm_st_meta *m = nc > out->nmeta ? realloc(out->meta, (size_t)nc * sizeof *m) : NULL;
            if (!m) { free(k); free(v); return st_fail(j->c, "out of memory (or too many metadata entries)"); }
            out->meta = m;
            *cap = nc;
        }
        out->meta[out->nmeta].key = k;
        out->meta[out->nmeta].value = v;
        out->nmeta++;
        js_ws(j);
        if (js_peek(j) == ',') { j->i++; js_ws(j); continue; }
        if (js_peek(j) != '}') return js_unexpected(j, "expected ',' or '}'");
    }
    j->i++;
    return 0;
}

/* Orders spans by begin, then end. */
static int st_cmp_span(const void *a, const void *b) {
    const st_span *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return x->idx < y->idx ? -1 : x->idx > y->idx;
}

/* Names and metadata keys must be unique; tensors' byte ranges must be disjoint. */
static int st_check_file(st_ctx *c, const jm_st_file *f, st_span *sp) {
    int most = f->n > f->nmeta ? f->n : f->nmeta;
    const char **names = malloc((size_t)(most ? most : 1) * sizeof *names);
    const char *dup;
    st_qbuf qa, qb;
    if (!names) return st_fail(c, "out of memory");
    for (int k = 0; k < f->n; k++) names[k] = f->t[k].name;
    if (st_find_dup(names, f->n, &dup)) {
        free(names);
        return st_fail(c, "duplicate tensor name '%s'", st_q(dup, &qa));
    }
    for (int k = 0; k < f->nmeta; k++) names[k] = f->meta[k].key;
    if (st_find_dup(names, f->nmeta, &dup)) {
        free(names);
        return st_fail(c, "__metadata__: duplicate key '%s'", st_q(dup, &qa));
    }
    free(names);

    /* Two ranges overlap when they share a byte. Sorted by begin, a non-empty range
       overlaps an earlier one exactly when it begins before the previous non-empty range
       ends. Empty tensors hold no bytes, so they may sit anywhere inside the buffer. */
    if (f->n > 1) qsort(sp, (size_t)f->n, sizeof *sp, st_cmp_span);
    const st_span *prev = NULL;
    for (int k = 0; k < f->n; k++) {
        if (sp[k].begin == sp[k].end) continue;
        if (prev && sp[k].begin < prev->end) {
            return st_fail(c, "tensors '%s' [%" PRIu64 ", %" PRIu64 ") and '%s' [%" PRIu64 ", %" PRIu64 ") overlap",
                           st_q(f->t[prev->idx].name, &qa), prev->begin, prev->end,
                           st_q(f->t[sp[k].idx].name, &qb), sp[k].begin, sp[k].end);
        }
        prev = &sp[k];
    }
    return 0;
}

/* Parses and validates the header against a data buffer of data_len bytes. On success
   out holds every tensor (without data) in header order and *spans their byte ranges
   sorted by begin; on failure out is freed and zeroed. */
static int st_parse_header(st_ctx *c, const uint8_t *hdr, size_t hlen, uint64_t data_len, jm_st_file *out,
                           st_span **spans) {
    st_json j = {c, hdr, hlen, 0};
    st_span *sp = NULL;
    int cap = 0, mcap = 0, have_meta = 0;
    *spans = NULL;

    /* Pass 1: plain JSON, so that syntax errors are reported as such, before any
       schema complaint about an earlier part of a broken header. */
    js_ws(&j);
    if (j.i == j.n) return st_fail(c, "header is empty (expected a JSON object)");
    int first = js_peek(&j);
    if (js_check_value(&j, 1)) return -1;
    if (first != '{') {
        j.i = 0;
        js_ws(&j);
        return st_fail(c, "header is not a JSON object (it is %s)", js_kind(&j));
    }
    js_ws(&j);
    /* Whitespace may follow the object (writers pad with spaces); nothing else may. */
    if (j.i < j.n) return st_fail(c, "trailing garbage after the JSON object at header byte %zu", j.i);

    /* Pass 2: the schema. */
    j.i = 0;
    js_ws(&j);
    if (js_expect(&j, '{')) goto fail;
    js_ws(&j);
    while (js_peek(&j) != '}') {
        char *key = NULL;
        if (js_string(&j, &key)) goto fail;
        js_ws(&j);
        if (js_expect(&j, ':')) { free(key); goto fail; }
        js_ws(&j);
        if (strcmp(key, "__metadata__") == 0) {
            free(key);
            if (have_meta) { st_fail(c, "duplicate __metadata__ entry"); goto fail; }
            have_meta = 1;
            if (st_parse_meta(&j, out, &mcap)) goto fail;
        } else {
            if (out->n == cap) {
                int nc = cap ? (cap > INT_MAX / 2 ? INT_MAX : cap * 2) : 16;
                jm_st_tensor *t = nc > out->n ? realloc(out->t, (size_t)nc * sizeof *t) : NULL;
                if (t) out->t = t;
                st_span *s = t ? realloc(sp, (size_t)nc * sizeof *s) : NULL;
                if (!s) {
                    free(key);
                    st_fail(c, "out of memory (or too many tensors)");
                    goto fail;
                }
                sp = s;
                cap = nc;
            }
            /* The entry joins the file before it is parsed, so that its name is freed
               with the file if the entry turns out to be bad. */
            jm_st_tensor *t = &out->t[out->n];
            memset(t, 0, sizeof *t);
            t->name = key;
            st_span *s = &sp[out->n];
            s->idx = out->n;
            out->n++;
            if (st_parse_entry(&j, t, s) || st_check_entry(c, t, s, data_len)) goto fail;
        }
        js_ws(&j);
        if (js_peek(&j) == ',') { j.i++; js_ws(&j); continue; }
        if (js_peek(&j) != '}') { js_unexpected(&j, "expected ',' or '}'"); goto fail; }
    }
    if (st_check_file(c, out, sp)) goto fail;
    *spans = sp;
    return 0;
fail:
    free(sp);
    jm_st_free(out);
    return -1;
}

/* Checks the 8-byte length prefix against the size of the whole file. */
static int st_check_prefix(st_ctx *c, const uint8_t *buf, uint64_t file_len, uint64_t *hlen) {
    if (file_len < 8)
        return st_fail(c, "file is %" PRIu64 " bytes, shorter than the 8-byte header length", file_len);
    uint64_t n = 0;
    for (int k = 7; k >= 0; k--) n = n << 8 | buf[k];   /* little-endian */
    if (n > JM_ST_MAX_HEADER)
        return st_fail(c, "header length %" PRIu64 " is absurd (limit %u bytes)", n, JM_ST_MAX_HEADER);
    if (n > file_len - 8) {
        return st_fail(c, "header length %" PRIu64 " exceeds the %" PRIu64 " bytes that follow the length prefix", n,
                       file_len - 8);
    }
    *hlen = n;
    return 0;
}

int jm_st_parse(const char *path, const uint8_t *buf, size_t len, jm_st_file *out, char *err, size_t errlen) {
    st_ctx c = st_ctx_make(path, err, errlen);
    if (!out) return st_fail(&c, "no output struct");
    memset(out, 0, sizeof *out);
    if (!buf && len) return st_fail(&c, "no buffer");
    uint64_t hlen;
    st_span *sp;
    if (st_check_prefix(&c, buf, len, &hlen)) return -1;
    if (st_parse_header(&c, buf + 8, (size_t)hlen, len - 8 - hlen, out, &sp)) return -1;
    const uint8_t *data = buf + 8 + hlen;
    for (int k = 0; k < out->n; k++) {
        jm_st_tensor *t = &out->t[sp[k].idx];
        t->data = st_alloc_data(t->nbytes);
        if (!t->data) {
            st_qbuf qb;
            st_fail(&c, "out of memory for tensor '%s' (%zu bytes)", st_q(t->name, &qb), t->nbytes);
            free(sp);
            jm_st_free(out);
            return -1;
        }
        if (t->nbytes) memcpy(t->data, data + sp[k].begin, t->nbytes);
    }
    free(sp);
    return 0;
}

/* pread all n bytes at off: 0 ok, 1 the file ended first, -1 an error (errno set). */
static int st_pread(int fd, void *buf, size_t n, uint64_t off) {
    uint8_t *p = buf;
    while (n) {
        ssize_t r = pread(fd, p, n, (off_t)off);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) return -1;
        if (r == 0) return 1;
        p += r;
        n -= (size_t)r;
        off += (uint64_t)r;
    }
    return 0;
}

static int st_read_fail(st_ctx *c, int r, const char *what) {
    if (r > 0) return st_fail(c, "file ended while reading %s (was it truncated meanwhile?)", what);
    return st_fail(c, "read error in %s: %s", what, strerror(errno));
}

/* Reads the prefix and header, then each tensor straight into its own buffer, so a large
   file is never held twice in memory. */
int jm_st_read(const char *path, jm_st_file *out, char *err, size_t errlen) {
    st_ctx c = st_ctx_make(path, err, errlen);
    if (!out) return st_fail(&c, "no output struct");
    memset(out, 0, sizeof *out);
    if (!path) return st_fail(&c, "no path");
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return st_fail(&c, "cannot open: %s", strerror(errno));
    uint8_t pre[8], *hdr = NULL;
    st_span *sp = NULL;
    uint64_t hlen, flen;
    struct stat sb;
    int r;
    if (fstat(fd, &sb) != 0) { st_fail(&c, "cannot stat: %s", strerror(errno)); goto fail; }
    /* The size checks below rely on st_size, which only a regular file has. */
    if (!S_ISREG(sb.st_mode)) { st_fail(&c, "not a regular file"); goto fail; }
    flen = (uint64_t)sb.st_size;
    if (flen >= 8 && (r = st_pread(fd, pre, 8, 0)) != 0) { st_read_fail(&c, r, "the header length"); goto fail; }
    if (st_check_prefix(&c, pre, flen, &hlen)) goto fail;
    hdr = malloc(hlen ? (size_t)hlen : 1);
    if (!hdr) { st_fail(&c, "out of memory for a %" PRIu64 "-byte header", hlen); goto fail; }
    if ((r = st_pread(fd, hdr, (size_t)hlen, 8)) != 0) { st_read_fail(&c, r, "the header"); goto fail; }
    if (st_parse_header(&c, hdr, (size_t)hlen, flen - 8 - hlen, out, &sp)) goto fail;
    free(hdr);
    hdr = NULL;
    for (int k = 0; k < out->n; k++) {
        jm_st_tensor *t = &out->t[sp[k].idx];
        st_qbuf qb;
        t->data = st_alloc_data(t->nbytes);
        if (!t->data) {
            st_fail(&c, "out of memory for tensor '%s' (%zu bytes)", st_q(t->name, &qb), t->nbytes);
            goto fail;
        }
        if (t->nbytes && (r = st_pread(fd, t->data, t->nbytes, 8 + hlen + sp[k].begin)) != 0) {
            char what[ST_QMAX + 32];
            snprintf(what, sizeof what, "tensor '%s'", st_q(t->name, &qb));
            st_read_fail(&c, r, what);
            goto fail;
        }
    }
    free(sp);
    close(fd);
    return 0;
fail:
    free(hdr);
    free(sp);
    jm_st_free(out);
    close(fd);
    return -1;
}

/* ------------------------------------------------------------------ writing */

typedef struct { char *p; size_t len, cap; int oom; } st_sb;

static void sb_add(st_sb *b, const void *s, size_t n) {
    if (b->oom) return;
    if (n > SIZE_MAX / 2 - b->len) { b->oom = 1; return; }
    if (b->len + n + 1 > b->cap) {
        size_t nc = b->cap ? b->cap : 256;
        while (nc < b->len + n + 1) nc *= 2;
        char *p = realloc(b->p, nc);
        if (!p) { b->oom = 1; return; }
        b->p = p;
        b->cap = nc;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = 0;
}

static void sb_str(st_sb *b, const char *s) { sb_add(b, s, strlen(s)); }

static void sb_u64(st_sb *b, uint64_t v) {
    char num[24];
    sb_add(b, num, (size_t)snprintf(num, sizeof num, "%" PRIu64, v));
}

/* A JSON string literal. The input is valid UTF-8 (checked by the caller) and is kept as
   is; only '"', '\' and control characters need escapes. */
static void sb_json(st_sb *b, const char *s) {
    sb_add(b, "\"", 1);
    for (const char *p = s; *p; p++) {
        unsigned char ch = (unsigned char)*p;
        char esc[8];
        if (ch == '"') sb_add(b, "\\\"", 2);
        else if (ch == '\\') sb_add(b, "\\\\", 2);
        else if (ch == '\n') sb_add(b, "\\n", 2);
        else if (ch == '\r') sb_add(b, "\\r", 2);
        else if (ch == '\t') sb_add(b, "\\t", 2);
        else if (ch == '\b') sb_add(b, "\\b", 2);
        else if (ch == '\f') sb_add(b, "\\f", 2);
        else if (ch < 0x20) sb_add(b, esc, (size_t)snprintf(esc, sizeof esc, "\\u%04x", ch));
        else sb_add(b, p, 1);
    }
    sb_add(b, "\"", 1);
}

/* Everything the writer must refuse, so that every file it writes reads back. */
static int st_check_for_write(st_ctx *c, const jm_st_file *f) {
    st_qbuf qb;
    st_shapebuf shb;
    for (int k = 0; k < f->n; k++) {
        const jm_st_tensor *t = &f->t[k];
        if (!t->name) return st_fail(c, "tensor %d has no name", k);
        const char *qn = st_q(t->name, &qb);
        if (!st_utf8_valid(t->name)) return st_fail(c, "tensor %d ('%s'): name is not valid UTF-8", k, qn);
        if (strcmp(t->name, "__metadata__") == 0)
            return st_fail(c, "tensor %d: the name '__metadata__' is reserved for metadata", k);
        if (!st_dtype_ok(t->dtype)) return st_fail(c, "tensor '%s': invalid dtype %d", qn, (int)t->dtype);
        if (t->rank < 0 || t->rank > JM_ST_MAX_RANK)
            return st_fail(c, "tensor '%s': rank %d is outside 0..%d", qn, t->rank, JM_ST_MAX_RANK);
        for (int d = 0; d < t->rank; d++) {
            if (t->shape[d] < 0)
                return st_fail(c, "tensor '%s': shape dimension %d is negative (%" PRId64 ")", qn, d, t->shape[d]);
        }
        uint64_t nb;
        const char *dn = jm_st_dtype_name(t->dtype);
        if (st_nbytes(t->shape, t->rank, jm_st_dtype_size(t->dtype), &nb)) {
            return st_fail(c, "tensor '%s': dtype %s and shape %s give a byte size that overflows", qn, dn,
                           st_shape_str(t->shape, t->rank, &shb));
        }
        if (nb != t->nbytes) {
            return st_fail(c, "tensor '%s': nbytes %zu does not match dtype %s and shape %s (%" PRIu64 " bytes)", qn,
                           t->nbytes, dn, st_shape_str(t->shape, t->rank, &shb), nb);
        }
        if (t->nbytes && !t->data) return st_fail(c, "tensor '%s': data is NULL", qn);
    }
    for (int k = 0; k < f->nmeta; k++) {
        const jm_st_meta *m = &f->meta[k];
        if (!m->key) return st_fail(c, "metadata entry %d has no key", k);
        const char *qk = st_q(m->key, &qb);
        if (!m->value) return st_fail(c, "metadata '%s' has no value", qk);
        if (!st_utf8_valid(m->key)) return st_fail(c, "metadata key '%s' is not valid UTF-8", qk);
        if (!st_utf8_valid(m->value)) return st_fail(c, "metadata value of '%s' is not valid UTF-8", qk);
    }
    /* The same uniqueness rules as the reader (no spans: the writer lays data out itself). */
    int most = f->n > f->nmeta ? f->n : f->nmeta;
    const char **names = malloc((size_t)(most ? most : 1) * sizeof *names);
    const char *dup;
    if (!names) return st_fail(c, "out of memory");
    for (int k = 0; k < f->n; k++) names[k] = f->t[k].name;
    if (st_find_dup(names, f->n, &dup)) {
        free(names);
        return st_fail(c, "duplicate tensor name '%s'", st_q(dup, &qb));
    }
    for (int k = 0; k < f->nmeta; k++) names[k] = f->meta[k].key;
    if (st_find_dup(names, f->nmeta, &dup)) {
        free(names);
        return st_fail(c, "duplicate metadata key '%s'", st_q(dup, &qb));
    }
    free(names);
    return 0;
}

/* The header: {"__metadata__":{...},"name":{"dtype":..,"shape":[..],"data_offsets":[b,e]},...}
   padded with spaces to a multiple of 8, so that the data buffer (at 8 + N) starts
   8-byte aligned; JSON allows trailing whitespace and other writers pad the same way. */
static int st_build_header(st_ctx *c, const jm_st_file *f, st_sb *h) {
    uint64_t off = 0;
    sb_add(h, "{", 1);
    if (f->nmeta > 0) {
        sb_str(h, "\"__metadata__\":{");
        for (int k = 0; k < f->nmeta; k++) {
            if (k) sb_add(h, ",", 1);
            sb_json(h, f->meta[k].key);
            sb_add(h, ":", 1);
            sb_json(h, f->meta[k].value);
        }
        sb_add(h, "}", 1);
    }
    for (int k = 0; k < f->n; k++) {
        const jm_st_tensor *t = &f->t[k];
        if (k || f->nmeta > 0) sb_add(h, ",", 1);
        sb_json(h, t->name);
        sb_str(h, ":{\"dtype\":\"");
        sb_str(h, jm_st_dtype_name(t->dtype));
        sb_str(h, "\",\"shape\":[");
        for (int d = 0; d < t->rank; d++) {
            if (d) sb_add(h, ",", 1);
            sb_u64(h, (uint64_t)t->shape[d]);
        }
        sb_str(h, "],\"data_offsets\":[");
        sb_u64(h, off);
        sb_add(h, ",", 1);
        if (t->nbytes > UINT64_MAX - off) return st_fail(c, "total tensor data size overflows");
        off += t->nbytes;
        sb_u64(h, off);
        sb_str(h, "]}");
        if (h->len > JM_ST_MAX_HEADER) break;   /* too long already: reported below */
    }
    sb_add(h, "}", 1);
    while (!h->oom && h->len % 8) sb_add(h, " ", 1);
    if (h->oom) return st_fail(c, "out of memory building the header");
    if (h->len > JM_ST_MAX_HEADER)
        return st_fail(c, "header would exceed the %u-byte limit readers accept", JM_ST_MAX_HEADER);
    return 0;
}

/* Makes the rename durable by syncing the directory that holds the entry. Where the
   directory cannot be opened for reading (EACCES: write+search permission only) or the
   file system cannot sync directories (EINVAL), the rename has still happened and
   nothing better can be done, so that is not reported as a failure. */
static int st_sync_dir(st_ctx *c, const char *path) {
    const char *slash = strrchr(path, '/');
    char *dir = !slash ? strdup(".") : slash == path ? strdup("/") : strndup(path, (size_t)(slash - path));
    if (!dir) return st_fail(c, "written, but out of memory syncing its directory");
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC), rc = 0;
    if (fd < 0) {
        if (errno != EACCES)
            rc = st_fail(c, "written, but cannot open directory %s to sync it: %s", dir, strerror(errno));
    } else {
        if (fsync(fd) != 0 && errno != EINVAL)
            rc = st_fail(c, "written, but syncing directory %s failed: %s", dir, strerror(errno));
        close(fd);
    }
    free(dir);
    return rc;
}

int jm_st_write(const char *path, const jm_st_file *f, char *err, size_t errlen) {
    st_ctx c = st_ctx_make(path, err, errlen);
    if (!path || !*path) return st_fail(&c, "no output path");
    if (!f) return st_fail(&c, "no file to write");
    if (f->n < 0 || (f->n > 0 && !f->t)) return st_fail(&c, "invalid tensor list (n = %d)", f->n);
    if (f->nmeta < 0 || (f->nmeta > 0 && !f->meta)) return st_fail(&c, "invalid metadata list (nmeta = %d)", f->nmeta);
    if (st_check_for_write(&c, f)) return -1;
    st_sb h = {0};
    if (st_build_header(&c, f, &h)) { free(h.p); return -1; }

    /* PATH.tmp.<pid> sits in the same directory as PATH, so the rename cannot cross file
       systems. "wb" truncates a stale temp file that a crashed earlier process with the
       same pid may have left (pids repeat, in containers especially). */
    size_t tl = strlen(path) + 32;
    char *tmp = malloc(tl);
    if (!tmp) { free(h.p); return st_fail(&c, "out of memory"); }
    snprintf(tmp, tl, "%s.tmp.%ld", path, (long)getpid());
    FILE *fp = fopen(tmp, "wb");
    if (!fp) {
        st_fail(&c, "cannot create temporary file %s: %s", tmp, strerror(errno));
        free(tmp);
        free(h.p);
        return -1;
    }
    uint8_t pre[8];
    errno = 0;   /* stdio may fail without setting errno; then EIO is reported */
    for (int k = 0; k < 8; k++) pre[k] = (uint8_t)((uint64_t)h.len >> (8 * k));   /* little-endian */
    int wrote = fwrite(pre, 1, 8, fp) == 8 && fwrite(h.p, 1, h.len, fp) == h.len;
    for (int k = 0; wrote && k < f->n; k++) {
        wrote = f->t[k].nbytes == 0 || fwrite(f->t[k].data, 1, f->t[k].nbytes, fp) == f->t[k].nbytes;
        /* Test hook (tests/t_train.c): JEMC_TEST_WRITE_PAUSE_MS pauses halfway
           through the tensors, with part of the file written, so that a test can
           kill -9 the process mid-write and check that PATH is intact. */
        const char *pause = k == f->n / 2 ? getenv("JEMC_TEST_WRITE_PAUSE_MS") : NULL;
        if (pause && wrote) {
            fflush(fp);
            usleep((useconds_t)(atoi(pause) * 1000));
        }
    }
    /* fflush moves stdio's buffer to the kernel, fsync the kernel's to the disk; only
       then may the rename make the new contents visible under PATH. */
    wrote = wrote && fflush(fp) == 0 && fsync(fileno(fp)) == 0;
    int e = errno;
    if (fclose(fp) != 0 && wrote) { wrote = 0; e = errno; }
    int rc = 0;
    if (!wrote) rc = st_fail(&c, "cannot write temporary file %s: %s", tmp, strerror(e ? e : EIO));
    else if (rename(tmp, path) != 0) rc = st_fail(&c, "cannot rename %s over it: %s", tmp, strerror(errno));
    if (rc) unlink(tmp);   /* PATH itself was never touched */
    free(tmp);
    free(h.p);
    return rc ? rc : st_sync_dir(&c, path);
}

/* ------------------------------------------------------------------ lookups */

const jm_st_tensor *jm_st_find(const jm_st_file *f, const char *name) {
    if (!f || !name || !f->t) return NULL;
    for (int k = 0; k < f->n; k++) {
        if (f->t[k].name && strcmp(f->t[k].name, name) == 0) return &f->t[k];
    }
    return NULL;
}

const char *jm_st_meta_get(const jm_st_file *f, const char *key) {
    if (!f || !key || !f->meta) return NULL;
    for (int k = 0; k < f->nmeta; k++) {
        if (f->meta[k].key && strcmp(f->meta[k].key, key) == 0) return f->meta[k].value;
    }
    return NULL;
}

void jm_st_free(jm_st_file *f) {
    if (!f) return;
    if (f->t) {
        for (int k = 0; k < f->n; k++) {
            free(f->t[k].name);
            free(f->t[k].data);
        }
    }
    if (f->meta) {
        for (int k = 0; k < f->nmeta; k++) {
            free(f->meta[k].key);
            free(f->meta[k].value);
        }
    }
    free(f->t);
    free(f->meta);
    memset(f, 0, sizeof *f);
}

int jm_st_dtype_is_float(jm_st_dtype d) { return d == JM_ST_F32 || d == JM_ST_F64; }
int jm_st_dtype_is_int(jm_st_dtype d) { return d == JM_ST_I32 || d == JM_ST_I64 || d == JM_ST_U8 || d == JM_ST_I8 || d == JM_ST_I16 || d == JM_ST_U16 || d == JM_ST_U32; }

double jm_st_value(const jm_st_tensor *t, int64_t i) {
    const unsigned char *p = t->data;
    switch (t->dtype) {
    case JM_ST_F32: { float v; memcpy(&v, p + 4 * i, 4); return v; }
    case JM_ST_F64: { double v; memcpy(&v, p + 8 * i, 8); return v; }
    case JM_ST_I32: { int32_t v; memcpy(&v, p + 4 * i, 4); return v; }
    case JM_ST_I64: { int64_t v; memcpy(&v, p + 8 * i, 8); return (double)v; }
    case JM_ST_U8: case JM_ST_BOOL: return p[i];
    case JM_ST_I8: return (int8_t)p[i];
    case JM_ST_I16: { int16_t v; memcpy(&v, p + 2 * i, 2); return v; }
    case JM_ST_U16: { uint16_t v; memcpy(&v, p + 2 * i, 2); return v; }
    case JM_ST_U32: { uint32_t v; memcpy(&v, p + 4 * i, 4); return v; }
    default: return 0;
    }
}
