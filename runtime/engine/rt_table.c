/* rt_table.c — see rt_table.h. The serialised form is a flat array of int64
 * words: integers as they are, doubles by their bit pattern, strings as a
 * length word followed by the bytes packed little-endian into words. */
#include "rt_table.h"
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

size_t jm_rt_dtype_size(int dt) {
    switch (dt) {
    case JM_DT_F32: case JM_DT_I32: return 4;
    case JM_DT_F64: case JM_DT_I64: return 8;
    case JM_DT_BOOL: return 1;
    default: return 0;
    }
}

const char *jm_rt_dtype_name(int dt) {
    static const char *names[] = { "f32", "f64", "i32", "i64", "bool" };
    return dt >= 0 && dt <= JM_DT_BOOL ? names[dt] : "?";
}

const char *jm_lib_name(int op) {
    static const char *names[JM_LIB_COUNT] = {
        "?", "matmul", "conv2d", "conv2d_bwd_data", "conv2d_bwd_filter", "avgpool2d", "maxpool2d",
        "avgpool2d_bwd", "maxpool2d_bwd", "rng_uniform", "rng_normal", "rng_randint", "rng_bernoulli",
        "gather", "scatter", "index_add", "onehot", "concat", "extern" };
    return op > 0 && op < JM_LIB_COUNT ? names[op] : "?";
}

/* ---- writing ------------------------------------------------------------- */

typedef struct { int64_t *w; int64_t n, cap; int oom; } jm_words;

static void jm_w_put(jm_words *b, int64_t v) {
    if (b->n == b->cap) {
        int64_t cap = b->cap ? 2 * b->cap : 1024;
        int64_t *w = realloc(b->w, sizeof(int64_t) * (size_t)cap);
        if (!w) { b->oom = 1; return; }
        b->w = w;
        b->cap = cap;
    }
    b->w[b->n++] = v;
}
static void jm_w_f64(jm_words *b, double v) { int64_t x; memcpy(&x, &v, 8); jm_w_put(b, x); }
static void jm_w_str(jm_words *b, const char *s) {
    size_t len = s ? strlen(s) : 0;
    jm_w_put(b, (int64_t)len);
    for (size_t i = 0; i < len; i += 8) {
        int64_t x = 0;
        memcpy(&x, s + i, len - i < 8 ? len - i : 8);
        jm_w_put(b, x);
    }
}
static void jm_w_desc(jm_words *b, const jm_tdesc *d) {
    jm_w_str(b, d->name);
    jm_w_put(b, d->dtype);
    jm_w_put(b, d->rank);
    for (int i = 0; i < JM_TABLE_MAX_RANK; i++) jm_w_put(b, d->dim[i]);
    jm_w_put(b, d->ref);
}

int jm_table_serialize(const jm_table *t, int64_t **words, int64_t *nwords) {
    jm_words b = { 0 };
    jm_w_put(&b, (int64_t)JM_TABLE_MAGIC);
    jm_w_put(&b, JM_TABLE_VERSION);
    jm_w_put(&b, 0);                                   /* total length, patched below */
    jm_w_put(&b, (int64_t)t->graph_hash);
    jm_w_str(&b, t->graph);
    jm_w_str(&b, t->cpu);
    jm_w_put(&b, t->state_bytes);
    jm_w_put(&b, t->nglobals);
    for (int i = 0; i < t->nglobals; i++) {
        const jm_tglobal *g = &t->globals[i];
        jm_w_desc(&b, &g->t);
        jm_w_put(&b, g->kind);
        jm_w_put(&b, g->init);
        jm_w_f64(&b, g->a);
        jm_w_f64(&b, g->b);
    }
    jm_w_put(&b, t->nprograms);
    for (int p = 0; p < t->nprograms; p++) {
        const jm_tprogram *pr = &t->programs[p];
        jm_w_str(&b, pr->name);
        jm_w_put(&b, pr->scratch_bytes);
        jm_w_put(&b, pr->ninputs);
        for (int i = 0; i < pr->ninputs; i++) jm_w_desc(&b, &pr->inputs[i]);
        jm_w_put(&b, pr->noutputs);
        for (int i = 0; i < pr->noutputs; i++) jm_w_desc(&b, &pr->outputs[i]);
        jm_w_put(&b, pr->nwrites);
        for (int i = 0; i < pr->nwrites; i++) {
            jm_w_put(&b, pr->writes[i].global);
            jm_w_put(&b, pr->writes[i].src);
            jm_w_put(&b, pr->writes[i].bytes);
        }
        jm_w_put(&b, pr->nsteps);
        for (int s = 0; s < pr->nsteps; s++) {
            const jm_step *st = &pr->steps[s];
            jm_w_put(&b, st->kind); jm_w_put(&b, st->op); jm_w_put(&b, st->nbuf); jm_w_put(&b, st->nint);
            jm_w_put(&b, st->n); jm_w_put(&b, st->body); jm_w_put(&b, st->epi); jm_w_put(&b, st->epi_items);
            jm_w_put(&b, st->dtype); jm_w_f64(&b, st->fat[0]); jm_w_f64(&b, st->fat[1]); jm_w_put(&b, st->cost);
            jm_w_str(&b, st->where);
            for (int i = 0; i < st->nbuf; i++) jm_w_put(&b, st->buf[i]);
            for (int i = 0; i < st->nint; i++) jm_w_put(&b, st->iat[i]);
        }
        /* a table built without phases (by hand: tests/fuzz) has one */
        if (!pr->phase_start) { jm_w_put(&b, 1); jm_w_put(&b, 0); jm_w_put(&b, pr->nsteps); }
        else {
            jm_w_put(&b, pr->nphases);
            for (int k = 0; k <= pr->nphases; k++) jm_w_put(&b, pr->phase_start[k]);
        }
        jm_w_str(&b, pr->dp_why ? pr->dp_why : "");
        jm_w_put(&b, pr->ncolls);
        for (int i = 0; i < pr->ncolls; i++) {
            const jm_tcoll *c = &pr->colls[i];
            jm_w_put(&b, c->kind); jm_w_put(&b, c->dtype); jm_w_put(&b, c->step);
            for (int k = 0; k < 2; k++) { jm_w_put(&b, c->ref[k]); jm_w_put(&b, c->bytes[k]); }
            jm_w_put(&b, c->phase);
        }
    }
    jm_w_put(&b, t->nkernels);
    for (int i = 0; i < t->nkernels; i++) jm_w_str(&b, t->kernels[i]);
    jm_w_put(&b, t->nexterns);
    for (int i = 0; i < t->nexterns; i++) {
        const jm_textern *x = &t->externs[i];
        jm_w_str(&b, x->name);
        jm_w_str(&b, x->library);
        jm_w_put(&b, x->nparams);
        for (int k = 0; k < x->nparams; k++) jm_w_desc(&b, &x->params[k]);
        jm_w_desc(&b, &x->ret);
    }
    if (b.oom) { free(b.w); return -1; }
    b.w[2] = b.n;
    *words = b.w;
    *nwords = b.n;
    return 0;
}

/* ---- reading ------------------------------------------------------------- */

typedef struct {
    const int64_t *w; int64_t n, pos;
    char *heap; size_t used, cap;           /* bump allocator for the parsed structures */
    char *err; size_t errlen; int failed;
} jm_reader;

static void jm_r_fail(jm_reader *r, const char *fmt, ...) {
    if (r->failed) return;
    r->failed = 1;
    va_list ap;
    va_start(ap, fmt);
    if (r->err) vsnprintf(r->err, r->errlen, fmt, ap);
    va_end(ap);
    /* one line: a damaged table's names may hold any bytes */
    for (char *c = r->err; r->err && *c; c++)
        if ((unsigned char)*c < 0x20 || *c == 0x7f) *c = '?';
}
static int64_t jm_r_get(jm_reader *r) {
    if (r->pos >= r->n) { jm_r_fail(r, "program table: truncated at word %lld", (long long)r->pos); return 0; }
    return r->w[r->pos++];
}
static int64_t jm_r_count(jm_reader *r, int64_t max, const char *what) {
    int64_t v = jm_r_get(r);
    if (v < 0 || v > max) { jm_r_fail(r, "program table: %s count %lld is out of range", what, (long long)v); return 0; }
    return v;
}
static double jm_r_f64(jm_reader *r) { int64_t x = jm_r_get(r); double v; memcpy(&v, &x, 8); return v; }
static void *jm_r_alloc(jm_reader *r, size_t bytes) {
    bytes = (bytes + 15) & ~(size_t)15;
    if (r->failed || bytes > r->cap - r->used) { jm_r_fail(r, "program table: larger than its words allow"); return NULL; }
    void *p = r->heap + r->used;
    r->used += bytes;
    memset(p, 0, bytes);
    return p;
}
static const char *jm_r_str(jm_reader *r) {
    int64_t len = jm_r_count(r, (r->n - r->pos) * 8, "string length");
    char *s = jm_r_alloc(r, (size_t)len + 1);
    if (!s) return "";
    for (int64_t i = 0; i < len; i += 8) {
        int64_t x = jm_r_get(r);
        memcpy(s + i, &x, (size_t)(len - i < 8 ? len - i : 8));
    }
    s[len] = 0;
    return s;
}
static void jm_r_desc(jm_reader *r, jm_tdesc *d) {
    d->name = jm_r_str(r);
    d->dtype = (int32_t)jm_r_count(r, JM_DT_BOOL, "dtype");
    d->rank = (int32_t)jm_r_count(r, JM_TABLE_MAX_RANK, "rank");
    for (int i = 0; i < JM_TABLE_MAX_RANK; i++) d->dim[i] = jm_r_count(r, INT64_C(1) << 40, "dimension");
    d->ref = jm_r_get(r);
}

/* bytes of a tensor description; -1 when absurd */
static int64_t jm_desc_bytes(const jm_tdesc *d) {
    int64_t n = 1;
    for (int i = 0; i < d->rank; i++) {
        if (d->dim[i] && n > (INT64_C(1) << 40) / d->dim[i]) return -1;
        n *= d->dim[i];
    }
    return n * (int64_t)jm_rt_dtype_size(d->dtype);
}

/* A tensor's reference must be aligned to its elements (the compiler aligns every
   buffer to 64 bytes; the runtime reads and writes them as typed arrays). */
static void jm_r_check_align(jm_reader *r, const jm_tdesc *d, const char *what) {
    int64_t size = (int64_t)jm_rt_dtype_size(d->dtype);
    if (!r->failed && size > 1 && jm_ref_offset(d->ref) % size != 0)
        jm_r_fail(r, "program table: %s '%s' at offset %lld is not aligned to its %lld-byte elements", what, d->name,
                  (long long)jm_ref_offset(d->ref), (long long)size);
}

/* An integer global's initialiser must give values its type holds (the runtime
   converts a + (b - a) * uniform or a + b * normal, |normal| < 7, to the type). */
static int jm_init_fits(const jm_tglobal *g) {
    if (g->t.dtype != JM_DT_I32 && g->t.dtype != JM_DT_I64) return 1;
    double lim = g->t.dtype == JM_DT_I32 ? 2147483647.0 : 9.2e18;
    switch (g->init) {
    case JM_GINIT_CONST: return fabs(g->a) <= lim;
    case JM_GINIT_UNIFORM: return fabs(g->a) <= lim && fabs(g->b) <= lim;
    case JM_GINIT_NORMAL: return fabs(g->a) + 64 * fabs(g->b) <= lim;
    default: return 1;
    }
}

/* A reference must lie in its region with room for `bytes`. */
static void jm_r_check_ref(jm_reader *r, jm_ref ref, int64_t bytes, int64_t state, int64_t scratch, const char *what) {
    int64_t off = jm_ref_offset(ref), size = jm_ref_region(ref) == JM_REGION_STATE ? state : scratch;
    if (off < 0 || bytes < 0 || off > size || bytes > size - off)
        jm_r_fail(r, "program table: %s [%lld, +%lld) lies outside its region (%lld bytes)", what,
                  (long long)off, (long long)bytes, (long long)size);
}

/* An EXTERN step: a known extern, one buffer per parameter plus the result,
   valid element types, and every buffer inside its region at its full size. */
static void jm_r_check_extern(jm_reader *r, const jm_table *t, const jm_tprogram *pr, int s) {
    const jm_step *st = &pr->steps[s];
    if (st->nint < 2 || st->iat[0] < 0 || st->iat[0] >= t->nexterns) {
        jm_r_fail(r, "program table: step %d of %s names an unknown extern", s, pr->name);
        return;
    }
    const jm_textern *x = &t->externs[st->iat[0]];
    if (st->nbuf != x->nparams + 1 || st->nint != st->nbuf + 1) {
        jm_r_fail(r, "program table: step %d of %s calls extern %s with %d buffers", s, pr->name, x->name, st->nbuf);
        return;
    }
    for (int k = 0; k < st->nbuf && !r->failed; k++) {
        int64_t dt = st->iat[1 + k];
        if (dt < JM_DT_F32 || dt > JM_DT_BOOL) { jm_r_fail(r, "program table: step %d of %s: bad element type", s, pr->name); return; }
        jm_tdesc d = k == 0 ? x->ret : x->params[k - 1];
        d.dtype = (int32_t)dt;
        jm_r_check_ref(r, st->buf[k], jm_desc_bytes(&d), t->state_bytes, pr->scratch_bytes, "extern argument");
    }
}

int jm_table_parse(const int64_t *words, int64_t nwords, jm_table *t, char *err, size_t errlen) {
    memset(t, 0, sizeof *t);
    jm_reader r = { words, nwords, 0, NULL, 0, 0, err, errlen, 0 };
    if (nwords < 3 || words[0] != (int64_t)JM_TABLE_MAGIC) {
        jm_r_fail(&r, "program table: bad magic (not a jemc program table)");
        return -1;
    }
    if (words[1] != JM_TABLE_VERSION) {
        jm_r_fail(&r, "program table: version %lld, this runtime reads version %d", (long long)words[1], JM_TABLE_VERSION);
        return -1;
    }
    if (words[2] != nwords) { jm_r_fail(&r, "program table: length %lld, expected %lld", (long long)words[2], (long long)nwords); return -1; }
    r.pos = 3;
    r.cap = (size_t)nwords * 8 * 4 + 4096;
    r.heap = malloc(r.cap);
    if (!r.heap) { jm_r_fail(&r, "program table: out of memory"); return -1; }
    t->owned = r.heap;
    t->graph_hash = (uint64_t)jm_r_get(&r);
    t->graph = jm_r_str(&r);
    t->cpu = jm_r_str(&r);
    t->state_bytes = jm_r_count(&r, INT64_C(1) << 42, "state bytes");
    t->nglobals = (int32_t)jm_r_count(&r, nwords, "global");
    t->globals = jm_r_alloc(&r, sizeof(jm_tglobal) * (size_t)t->nglobals);
    for (int i = 0; i < t->nglobals && !r.failed; i++) {
        jm_tglobal *g = &t->globals[i];
        jm_r_desc(&r, &g->t);
        g->kind = (int32_t)jm_r_count(&r, JM_GKIND_CONFIG, "global kind");
        g->init = (int32_t)jm_r_count(&r, JM_GINIT_NORMAL, "initialiser");
        g->a = jm_r_f64(&r);
        g->b = jm_r_f64(&r);
        if (jm_ref_region(g->t.ref) != JM_REGION_STATE) jm_r_fail(&r, "program table: global '%s' is not in the state region", g->t.name);
        jm_r_check_ref(&r, g->t.ref, jm_desc_bytes(&g->t), t->state_bytes, 0, g->t.name);
        jm_r_check_align(&r, &g->t, "global");
        /* a knob (train --set NAME=V) is read and written as one value */
        if (!r.failed && g->kind == JM_GKIND_CONFIG && jm_desc_bytes(&g->t) != (int64_t)jm_rt_dtype_size(g->t.dtype))
            jm_r_fail(&r, "program table: setting '%s' holds %lld bytes, not one value", g->t.name, (long long)jm_desc_bytes(&g->t));
        if (!r.failed && !jm_init_fits(g))
            jm_r_fail(&r, "program table: global '%s' (%s): initialiser parameters %g, %g do not fit its type", g->t.name,
                      jm_rt_dtype_name(g->t.dtype), g->a, g->b);
    }
    t->nprograms = (int32_t)jm_r_count(&r, nwords, "program");
    t->programs = jm_r_alloc(&r, sizeof(jm_tprogram) * (size_t)t->nprograms);
    for (int p = 0; p < t->nprograms && !r.failed; p++) {
        jm_tprogram *pr = &t->programs[p];
        pr->name = jm_r_str(&r);
        pr->scratch_bytes = jm_r_count(&r, INT64_C(1) << 42, "scratch bytes");
        int64_t S = t->state_bytes, X = pr->scratch_bytes;
        pr->ninputs = (int32_t)jm_r_count(&r, nwords, "input");
        pr->inputs = jm_r_alloc(&r, sizeof(jm_tdesc) * (size_t)pr->ninputs);
        for (int i = 0; i < pr->ninputs && !r.failed; i++) {
            jm_r_desc(&r, &pr->inputs[i]);
            jm_r_check_ref(&r, pr->inputs[i].ref, jm_desc_bytes(&pr->inputs[i]), S, X, pr->inputs[i].name);
            jm_r_check_align(&r, &pr->inputs[i], "input");
        }
        pr->noutputs = (int32_t)jm_r_count(&r, nwords, "output");
        pr->outputs = jm_r_alloc(&r, sizeof(jm_tdesc) * (size_t)pr->noutputs);
        for (int i = 0; i < pr->noutputs && !r.failed; i++) {
            jm_r_desc(&r, &pr->outputs[i]);
            jm_r_check_ref(&r, pr->outputs[i].ref, jm_desc_bytes(&pr->outputs[i]), S, X, pr->outputs[i].name);
            jm_r_check_align(&r, &pr->outputs[i], "output");
        }
        pr->nwrites = (int32_t)jm_r_count(&r, nwords, "write");
        pr->writes = jm_r_alloc(&r, sizeof(jm_twrite) * (size_t)pr->nwrites);
        for (int i = 0; i < pr->nwrites && !r.failed; i++) {
            jm_twrite *w = &pr->writes[i];
            w->global = (int32_t)jm_r_count(&r, t->nglobals - 1, "written global");
            w->src = jm_r_get(&r);
            w->bytes = jm_r_get(&r);
            if (r.failed) break;
            if (w->bytes != jm_desc_bytes(&t->globals[w->global].t)) jm_r_fail(&r, "program table: write to '%s' has the wrong size", t->globals[w->global].t.name);
            jm_r_check_ref(&r, w->src, w->bytes, S, X, "state write");
        }
        pr->nsteps = (int32_t)jm_r_count(&r, nwords, "step");
        pr->steps = jm_r_alloc(&r, sizeof(jm_step) * (size_t)pr->nsteps);
        for (int s = 0; s < pr->nsteps && !r.failed; s++) {
            jm_step *st = &pr->steps[s];
            st->kind = (int32_t)jm_r_count(&r, JM_STEP_LOOP, "step kind");
            st->op = (int32_t)jm_r_count(&r, nwords, "step op");
            st->nbuf = (int32_t)jm_r_count(&r, 4096, "buffer");
            st->nint = (int32_t)jm_r_count(&r, 4096, "attribute");
            st->n = jm_r_count(&r, INT64_C(1) << 42, "step size");
            st->body = (int32_t)jm_r_count(&r, pr->nsteps - s - 1, "loop body");
            st->epi = (int32_t)jm_r_get(&r);
            st->epi_items = jm_r_count(&r, INT64_C(1) << 42, "epilogue items");
            st->dtype = (int32_t)jm_r_count(&r, JM_DT_BOOL, "step dtype");
            st->fat[0] = jm_r_f64(&r);
            st->fat[1] = jm_r_f64(&r);
            st->cost = jm_r_get(&r);
            st->where = jm_r_str(&r);
            st->buf = jm_r_alloc(&r, sizeof(jm_ref) * (size_t)st->nbuf);
            st->iat = jm_r_alloc(&r, sizeof(int64_t) * (size_t)st->nint);
            for (int i = 0; i < st->nbuf && !r.failed; i++) {
                st->buf[i] = jm_r_get(&r);
                jm_r_check_ref(&r, st->buf[i], 0, S, X, "step buffer");
            }
            for (int i = 0; i < st->nint && !r.failed; i++) st->iat[i] = jm_r_get(&r);
            if (st->kind == JM_STEP_LIB && (st->op <= 0 || st->op >= JM_LIB_COUNT)) jm_r_fail(&r, "program table: unknown runtime operation %d", st->op);
            /* a loop counted by a knob: an i64 scalar global */
            if (st->kind == JM_STEP_LOOP && st->nint > 0 && !r.failed
                && (st->nint != 1 || st->iat[0] < 0 || st->iat[0] >= t->nglobals || t->globals[st->iat[0]].t.dtype != JM_DT_I64
                    || t->globals[st->iat[0]].t.rank != 0))
                jm_r_fail(&r, "program table: loop step %d of %s counts with a bad global", s, pr->name);
            /* (after a failure st->buf may be NULL: nothing more is checked) */
            /* a scatter a device may run in place (plan.c): into the state its
               write commits, from that state, with the write's source as its
               result, and rows that fit the global */
            if (st->kind == JM_STEP_LIB && st->op == JM_LIB_SCATTER && st->nint > 5 && st->iat[5] != 0 && !r.failed) {
                int64_t w = st->iat[5] - 1, esz = st->dtype >= JM_DT_F32 && st->dtype <= JM_DT_BOOL ? (int64_t)jm_rt_dtype_size(st->dtype) : 0;
                if (w < 0 || w >= pr->nwrites || st->nbuf < 4 || st->iat[0] < 0 || st->iat[1] < 0 || esz == 0 ||
                    st->buf[1] != t->globals[pr->writes[w].global].t.ref || st->buf[0] != pr->writes[w].src ||
                    pr->writes[w].bytes != st->iat[0] * st->iat[1] * esz)
                    jm_r_fail(&r, "program table: step %d of %s: a bad in-place scatter", s, pr->name);
            }
            if (st->kind == JM_STEP_COPY && !r.failed) {
                if (st->nbuf != 2) jm_r_fail(&r, "program table: step %d of %s: a copy needs 2 buffers, has %d", s, pr->name, st->nbuf);
                else for (int i = 0; i < 2; i++) jm_r_check_ref(&r, st->buf[i], st->n, S, X, "copy");
            }
        }
        pr->nphases = (int32_t)jm_r_count(&r, 64, "phase");
        pr->phase_start = jm_r_alloc(&r, sizeof(int32_t) * (size_t)(pr->nphases + 1));
        for (int k = 0; k <= pr->nphases && !r.failed; k++) {
            pr->phase_start[k] = (int32_t)jm_r_count(&r, pr->nsteps, "phase start");
            /* phases in order, the first at step 0, the last ending at the last step */
            if ((k == 0 && pr->phase_start[k] != 0) || (k > 0 && pr->phase_start[k] < pr->phase_start[k - 1]) ||
                (k == pr->nphases && pr->phase_start[k] != pr->nsteps))
                jm_r_fail(&r, "program table: %s's phases are out of order", pr->name);
        }
        if (!r.failed && pr->nphases < 1) jm_r_fail(&r, "program table: %s has no phase", pr->name);
        /* an in-place scatter runs in the last phase (its write is committed there) */
        for (int s = 0; s < pr->nsteps && !r.failed; s++) {
            const jm_step *st = &pr->steps[s];
            if (st->kind == JM_STEP_LIB && st->op == JM_LIB_SCATTER && st->nint > 5 && st->iat[5] != 0 && s < pr->phase_start[pr->nphases - 1])
                jm_r_fail(&r, "program table: step %d of %s scatters in place before the last phase", s, pr->name);
        }
        pr->dp_why = jm_r_str(&r);
        pr->ncolls = (int32_t)jm_r_count(&r, nwords, "collective");
        pr->colls = jm_r_alloc(&r, sizeof(jm_tcoll) * (size_t)pr->ncolls);
        for (int i = 0; i < pr->ncolls && !r.failed; i++) {
            jm_tcoll *c = &pr->colls[i];
            c->kind = (int32_t)jm_r_count(&r, JM_COLL_ROWS, "collective kind");
            c->dtype = (int32_t)jm_r_count(&r, JM_DT_BOOL, "collective dtype");
            c->step = (int32_t)jm_r_get(&r);
            for (int k = 0; k < 2; k++) { c->ref[k] = jm_r_get(&r); c->bytes[k] = jm_r_count(&r, INT64_C(1) << 42, "collective bytes"); }
            c->phase = (int32_t)jm_r_count(&r, pr->nphases - 1, "collective phase");
            if (r.failed) break;
            if (c->phase < 1) jm_r_fail(&r, "program table: collective %d of %s comes before phase 0", i, pr->name);
            /* the buffers live in scratch (a mean is written in place between the phases) */
            for (int k = 0; k < 2; k++) {
                if (c->bytes[k] > 0 && jm_ref_region(c->ref[k]) != JM_REGION_SCRATCH) jm_r_fail(&r, "program table: collective %d of %s is not in scratch", i, pr->name);
                else jm_r_check_ref(&r, c->ref[k], c->bytes[k], S, X, "collective");
            }
            if (c->kind == JM_COLL_MEAN && c->dtype != JM_DT_F32 && c->dtype != JM_DT_F64) jm_r_fail(&r, "program table: collective %d of %s averages a non-float", i, pr->name);
            /* a mean's step: its operand is final after that many steps (-1: at the end of the phase before) */
            if (c->kind == JM_COLL_MEAN && c->phase >= 1 && c->step != -1 && (c->step < pr->phase_start[c->phase - 1] || c->step > pr->phase_start[c->phase]))
                jm_r_fail(&r, "program table: collective %d of %s is ready outside the phase before it", i, pr->name);
            if (c->kind == JM_COLL_ROWS && (c->phase < 1 || c->step < pr->phase_start[c->phase] || c->step >= pr->nsteps || pr->steps[c->step].kind != JM_STEP_LIB ||
                                            pr->steps[c->step].op != JM_LIB_SCATTER || pr->steps[c->step].nint < 5 || pr->steps[c->step].iat[4] != i))
                jm_r_fail(&r, "program table: collective %d of %s names a bad scatter step", i, pr->name);
            else if (c->kind == JM_COLL_ROWS) {
                /* the gathered rows are read with the step's shape: the sizes must agree */
                const jm_step *st = &pr->steps[c->step];
                int64_t k = st->iat[2], row = st->iat[1];
                if (st->iat[3] < JM_DT_F32 || st->iat[3] > JM_DT_BOOL || k < 0 || row < 0 || c->dtype != st->dtype ||
                    c->bytes[0] != k * (int64_t)jm_rt_dtype_size((int)st->iat[3]) || c->bytes[1] != k * row * (int64_t)jm_rt_dtype_size(st->dtype))
                    jm_r_fail(&r, "program table: collective %d of %s does not match its scatter's shape", i, pr->name);
            }
        }
    }
    t->nkernels = (int32_t)jm_r_count(&r, nwords, "kernel");
    t->kernels = jm_r_alloc(&r, sizeof(char *) * (size_t)t->nkernels);
    for (int i = 0; i < t->nkernels && !r.failed; i++) t->kernels[i] = jm_r_str(&r);
    t->nexterns = (int32_t)jm_r_count(&r, nwords, "extern");
    t->externs = jm_r_alloc(&r, sizeof(jm_textern) * (size_t)t->nexterns);
    for (int i = 0; i < t->nexterns && !r.failed; i++) {
        jm_textern *x = &t->externs[i];
        x->name = jm_r_str(&r);
        x->library = jm_r_str(&r);
        x->nparams = (int32_t)jm_r_count(&r, 4096, "extern parameter");
        x->params = jm_r_alloc(&r, sizeof(jm_tdesc) * (size_t)x->nparams);
        for (int k = 0; k < x->nparams && !r.failed; k++) {
            jm_r_desc(&r, &x->params[k]);
            if (jm_desc_bytes(&x->params[k]) < 0) jm_r_fail(&r, "program table: extern %s: parameter %d is too large", x->name, k + 1);
        }
        jm_r_desc(&r, &x->ret);
        if (!r.failed && (!x->name[0] || !x->library[0] || jm_desc_bytes(&x->ret) < 0))
            jm_r_fail(&r, "program table: extern %d is malformed", i);
    }
    for (int p = 0; p < t->nprograms && !r.failed; p++)
        for (int s = 0; s < t->programs[p].nsteps; s++) {
            jm_step *st = &t->programs[p].steps[s];
            if ((st->kind == JM_STEP_KERNEL && st->op >= t->nkernels) || st->epi >= t->nkernels)
                jm_r_fail(&r, "program table: step %d of %s names kernel %d of %d", s, t->programs[p].name, st->op, t->nkernels);
            if (st->kind == JM_STEP_LIB && st->op == JM_LIB_EXTERN) jm_r_check_extern(&r, t, &t->programs[p], s);
        }
    if (!r.failed && r.pos != nwords) jm_r_fail(&r, "program table: %lld trailing words", (long long)(nwords - r.pos));
    if (r.failed) { jm_table_free(t); return -1; }
    return 0;
}

void jm_table_free(jm_table *t) {
    free(t->owned);
    memset(t, 0, sizeof *t);
}

int jm_table_find_program(const jm_table *t, const char *name) {
    for (int i = 0; i < t->nprograms; i++)
        if (strcmp(t->programs[i].name, name) == 0) return i;
    return -1;
}
