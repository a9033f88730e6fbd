/* rt_state.c — see rt_state.h. */
#include "rt_state.h"
#include "names.h"
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void jm_desc_str(const jm_tdesc *d, char *buf, size_t n) {
    size_t used = (size_t)snprintf(buf, n, "%s[", jm_rt_dtype_name(d->dtype));
    for (int i = 0; i < d->rank && used < n; i++) used += (size_t)snprintf(buf + used, n - used, "%s%" PRId64, i ? "," : "", d->dim[i]);
    if (used < n) snprintf(buf + used, n - used, "]");
}

/* A file's tensor name for a message: control bytes as \xNN (one line whatever the
   file holds), cut after 96 bytes. */
typedef struct { char s[96 * 4 + 8]; } jm_qname;
static const char *jm_state_q(const char *name, jm_qname *q) {
    size_t o = 0;
    const unsigned char *p = (const unsigned char *)name;
    for (; *p && o < 96 * 4; p++) {
        if (*p < 0x20 || *p == 0x7f) o += (size_t)snprintf(q->s + o, sizeof q->s - o, "\\x%02x", *p);
        else q->s[o++] = (char)*p;
    }
    if (*p) { memcpy(q->s + o, "...", 3); o += 3; }
    q->s[o] = 0;
    return q->s;
}

/* Converts file tensor st into dst (the table's type), as tensorio.c does for the interpreter. */
int jm_state_convert(const char *path, const char *what, const jm_st_tensor *st, const jm_tdesc *want, void *dst,
                      char *err, size_t errlen) {
    char tb[160];
    jm_qname qn;
    jm_desc_str(want, tb, sizeof tb);
    int ok = st->rank == want->rank;
    for (int i = 0; ok && i < st->rank; i++) ok = st->shape[i] == want->dim[i];
    if (!ok) {
        char got[200];
        size_t n = (size_t)snprintf(got, sizeof got, "[");
        for (int i = 0; i < st->rank && n < sizeof got; i++) n += (size_t)snprintf(got + n, sizeof got - n, "%s%" PRId64, i ? "," : "", st->shape[i]);
        if (n < sizeof got) snprintf(got + n, sizeof got - n, "]");
        snprintf(err, errlen, "%s: %s '%s' has shape %s, expected %s", path, what, jm_state_q(st->name, &qn), got, tb);
        return -1;
    }
    int fl = want->dtype == JM_DT_F32 || want->dtype == JM_DT_F64, in = want->dtype == JM_DT_I32 || want->dtype == JM_DT_I64;
    int kind_ok = fl ? jm_st_dtype_is_float(st->dtype) : in ? jm_st_dtype_is_int(st->dtype) : (st->dtype == JM_ST_BOOL || st->dtype == JM_ST_U8);
    if (!kind_ok) {
        snprintf(err, errlen, "%s: %s '%s' has dtype %s, expected %s", path, what, jm_state_q(st->name, &qn), jm_st_dtype_name(st->dtype), tb);
        return -1;
    }
    int64_t N = jm_rt_desc_numel(want);
    for (int64_t i = 0; i < N; i++) {
        double v = jm_st_value(st, i);
        switch (want->dtype) {
        case JM_DT_F32: ((float *)dst)[i] = (float)v; break;
        case JM_DT_F64: ((double *)dst)[i] = v; break;
        case JM_DT_I32:
            /* an I64 or U32 file's value may not fit */
            if (!(v >= -2147483648.0 && v <= 2147483647.0)) {
                snprintf(err, errlen, "%s: %s '%s': element %" PRId64 " is %.17g, which an i32 cannot hold", path, what,
                         jm_state_q(st->name, &qn), i, v);
                return -1;
            }
            ((int32_t *)dst)[i] = (int32_t)v;
            break;
        case JM_DT_I64:
            /* exact for 64-bit integer files */
            ((int64_t *)dst)[i] = st->dtype == JM_ST_I64 ? ((const int64_t *)st->data)[i] : (int64_t)v;
            break;
        default: ((unsigned char *)dst)[i] = v != 0; break;
        }
    }
    return 0;
}

static const char *jm_closest(const char *name, const jm_table *t) {
    const char **names = malloc(sizeof(char *) * (size_t)(t->nglobals + 1));
    if (!names) return NULL;
    for (int g = 0; g < t->nglobals; g++) names[g] = t->globals[g].t.name;
    const char *best = jm_closest_name(name, names, t->nglobals);
    free(names);
    return best;
}

int jm_state_load(jm_rt *rt, const char *path, int seed_given, jm_st_file *keep, char *err, size_t errlen) {
    const jm_table *t = rt->t;
    jm_st_file f;
    memset(&f, 0, sizeof f);
    if (jm_st_read(path, &f, err, errlen) != 0) return -1;
    int rc = 0;
    for (int i = 0; i < f.n && rc == 0; i++) {
        int gi = -1;
        for (int g = 0; g < t->nglobals; g++) if (strcmp(t->globals[g].t.name, f.t[i].name) == 0) gi = g;
        if (gi < 0) {
            const char *best = jm_closest(f.t[i].name, t);
            jm_qname qn;
            snprintf(err, errlen, "%s: unexpected tensor '%s': the graph has no parameter or state of that name%s%s%s",
                     path, jm_state_q(f.t[i].name, &qn), best ? " (did you mean '" : "", best ? best : "", best ? "'?)" : "");
            rc = -1;
            break;
        }
        /* convert into a temporary first: a failure leaves the state untouched */
        size_t bytes = (size_t)jm_rt_desc_numel(&t->globals[gi].t) * jm_rt_dtype_size(t->globals[gi].t.dtype);
        void *tmp = malloc(bytes ? bytes : 1);
        if (!tmp) { snprintf(err, errlen, "out of memory"); rc = -1; break; }
        rc = jm_state_convert(path, t->globals[gi].kind == JM_GKIND_PARAM ? "parameter" : "state", &f.t[i], &t->globals[gi].t, tmp, err, errlen);
        if (rc == 0) memcpy(jm_rt_global(rt, gi), tmp, bytes);
        free(tmp);
    }
    const char *call = jm_st_meta_get(&f, "jemc.rng_call"), *seed = jm_st_meta_get(&f, "jemc.rng_seed");
    if (rc == 0 && call) rt->call = (uint32_t)strtoul(call, NULL, 10);
    if (rc == 0 && seed && !seed_given) rt->seed = strtoull(seed, NULL, 10);
    for (int gi = 0; gi < t->nglobals && rc == 0; gi++) {
        if (t->globals[gi].kind != JM_GKIND_PARAM) continue;
        int found = 0;
        for (int i = 0; i < f.n && !found; i++) found = strcmp(f.t[i].name, t->globals[gi].t.name) == 0;
        if (found) continue;
        char tb[160];
        jm_desc_str(&t->globals[gi].t, tb, sizeof tb);
        snprintf(err, errlen, "%s: missing parameter '%s' (%s)", path, t->globals[gi].t.name, tb);
        rc = -1;
    }
    if (keep && rc == 0) *keep = f;     /* the caller reads the metadata, then frees */
    else jm_st_free(&f);
    return rc;
}

static jm_st_dtype jm_st_of(int dt) {
    switch (dt) {
    case JM_DT_F32: return JM_ST_F32;
    case JM_DT_F64: return JM_ST_F64;
    case JM_DT_I32: return JM_ST_I32;
    case JM_DT_I64: return JM_ST_I64;
    default: return JM_ST_BOOL;
    }
}

/* Writes named tensors (data borrowed) atomically. */
int jm_state_write_tensors(const char *path, const jm_tdesc *d, void *const *data, int n, const char *const *meta, int nmeta,
                    char *err, size_t errlen) {
    jm_st_file f;
    memset(&f, 0, sizeof f);
    f.n = n;
    f.t = calloc((size_t)(n ? n : 1), sizeof(jm_st_tensor));
    f.nmeta = nmeta;
    f.meta = calloc((size_t)(nmeta ? nmeta : 1), sizeof(jm_st_meta));
    for (int i = 0; i < nmeta; i++) { f.meta[i].key = (char *)meta[2 * i]; f.meta[i].value = (char *)meta[2 * i + 1]; }
    for (int i = 0; i < n; i++) {
        jm_st_tensor *s = &f.t[i];
        s->name = (char *)d[i].name;
        s->rank = d[i].rank;
        for (int k = 0; k < s->rank; k++) s->shape[k] = d[i].dim[k];
        s->dtype = jm_st_of(d[i].dtype);
        s->nbytes = (size_t)jm_rt_desc_numel(&d[i]) * jm_rt_dtype_size(d[i].dtype);
        s->data = data[i];
    }
    int rc = jm_st_write(path, &f, err, errlen);
    free(f.t);
    free(f.meta);
    return rc;
}

int jm_state_save(jm_rt *rt, const char *path, const char *const *extra, int nextra, char *err, size_t errlen) {
    const jm_table *t = rt->t;
    jm_tdesc *d = malloc(sizeof(jm_tdesc) * (size_t)(t->nglobals + 1));
    void **data = malloc(sizeof(void *) * (size_t)(t->nglobals + 1));
    for (int i = 0; i < t->nglobals; i++) { d[i] = t->globals[i].t; data[i] = (void *)jm_rt_global_read(rt, i); }
    char call[32], seed[32];
    snprintf(call, sizeof call, "%u", rt->call);
    snprintf(seed, sizeof seed, "%llu", (unsigned long long)rt->seed);
    char hash[32];
    snprintf(hash, sizeof hash, "%016llx", (unsigned long long)t->graph_hash);
    const char **meta = malloc(sizeof(char *) * (size_t)(2 * nextra + 12));
    if (!d || !data || !meta) { free(d); free(data); free(meta); snprintf(err, errlen, "out of memory"); return -1; }
    int nm = 0;
    const char *fixed[] = { "jemc.rng_call", call, "jemc.rng_seed", seed, "jemc.graph", t->graph, "jemc.graph_hash", hash, "format", "pt" };
    for (int i = 0; i < 10; i++) meta[nm++] = fixed[i];
    for (int i = 0; i < 2 * nextra; i++) meta[nm++] = extra[i];
    int rc = jm_state_write_tensors(path, d, data, t->nglobals, meta, nm / 2, err, errlen);
    free(meta);
    free(d);
    free(data);
    return rc;
}

