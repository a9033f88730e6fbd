/* tensorio.c — see tensorio.h. */
#include "tensorio.h"
#include "engine/safetensors.h"
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Converts file tensor `st` into `out` of type `want`; the element kinds must agree
   (floats for float tensors, integers for integer tensors). */
static int jm_tio_convert(const char *path, const char *what, const jm_st_tensor *st, const jm_type *want,
                          jm_tensor *out, char *err, size_t errlen) {
    char tb[128];
    int shape_ok = st->rank == want->rank;
    for (int i = 0; shape_ok && i < st->rank; i++) shape_ok = st->shape[i] == want->dim[i];
    if (!shape_ok) {
        char got[256];
        size_t n = (size_t)snprintf(got, sizeof got, "[");
        for (int i = 0; i < st->rank && n < sizeof got; i++) n += (size_t)snprintf(got + n, sizeof got - n, "%s%" PRId64, i ? "," : "", st->shape[i]);
        if (n < sizeof got) snprintf(got + n, sizeof got - n, "]");
        snprintf(err, errlen, "%s: %s '%s' has shape %s, expected %s", path, what, st->name, got, jm_type_str(want, tb, sizeof tb));
        return -1;
    }
    int kind_ok = jm_dtype_is_float(want->dtype) ? jm_st_dtype_is_float(st->dtype)
                : jm_dtype_is_int(want->dtype) ? jm_st_dtype_is_int(st->dtype)
                : (st->dtype == JM_ST_BOOL || st->dtype == JM_ST_U8);
    if (!kind_ok) {
        snprintf(err, errlen, "%s: %s '%s' has dtype %s, expected %s", path, what, st->name, jm_st_dtype_name(st->dtype),
                 jm_type_str(want, tb, sizeof tb));
        return -1;
    }
    if (jm_tensor_alloc(out, want)) { snprintf(err, errlen, "out of memory"); return -1; }
    int64_t N = jm_type_numel(want);
    for (int64_t i = 0; i < N; i++) {
        double v = jm_st_value(st, i);
        if (want->dtype == JM_F32) v = (double)(float)v;
        out->data[i] = v;
    }
    return 0;
}

int jm_tio_load_state(jm_interp *I, const char *path, char *err, size_t errlen) {
    jm_st_file f;
    memset(&f, 0, sizeof f);
    if (jm_st_read(path, &f, err, errlen) != 0) return -1;
    jm_module *m = I->m;
    int rc = 0;
    for (int i = 0; i < f.n && rc == 0; i++) {
        int gi = jm_module_find_global(m, f.t[i].name);
        if (gi < 0) {
            int np = 0;
            const char **names = malloc(sizeof(char *) * (size_t)(m->nglobals + 1));
            for (int k = 0; k < m->nglobals; k++) names[np++] = m->globals[k].name;
            const char *best = jm_diag_closest(f.t[i].name, names, np);
            snprintf(err, errlen, "%s: unexpected tensor '%s': the graph has no parameter or state of that name%s%s%s",
                     path, f.t[i].name, best ? " (did you mean '" : "", best ? best : "", best ? "'?)" : "");
            free(names);
            rc = -1;
            break;
        }
        jm_tensor t;
        if (jm_tio_convert(path, m->globals[gi].kind == JM_GLOBAL_PARAM ? "parameter" : "state", &f.t[i],
                           &m->globals[gi].type, &t, err, errlen) != 0) { rc = -1; break; }
        jm_tensor_free(&I->globals[gi]);
        I->globals[gi] = t;
    }
    /* the random-number position travels with the state, so a run continued from a
       saved state draws new numbers rather than repeating the previous run's */
    const char *call = jm_st_meta_get(&f, "jemc.rng_call"), *seed = jm_st_meta_get(&f, "jemc.rng_seed");
    if (call) I->call = (uint32_t)strtoul(call, NULL, 10);
    if (seed && !I->seed_given) I->seed = strtoull(seed, NULL, 10);
    for (int gi = 0; gi < m->nglobals && rc == 0; gi++) {
        if (m->globals[gi].kind != JM_GLOBAL_PARAM || jm_st_find(&f, m->globals[gi].name)) continue;
        char tb[128];
        snprintf(err, errlen, "%s: missing parameter '%s' (%s)", path, m->globals[gi].name,
                 jm_type_str(&m->globals[gi].type, tb, sizeof tb));
        rc = -1;
    }
    jm_st_free(&f);
    return rc;
}

int jm_tio_load_inputs(jm_module *m, int p, const char *path, jm_tensor *inputs, char *err, size_t errlen) {
    jm_program *pr = &m->programs[p];
    jm_graph *g = &m->graphs[pr->graph];
    if (pr->ninputs == 0) return 0;
    jm_st_file f;
    memset(&f, 0, sizeof f);
    if (!path) {
        snprintf(err, errlen, "program %s takes inputs (%s...); give them with --in FILE.safetensors", pr->name, pr->inputs[0].name);
        return -1;
    }
    if (jm_st_read(path, &f, err, errlen) != 0) return -1;
    int rc = 0, loaded = 0;
    for (int i = 0; i < pr->ninputs && rc == 0; i++) {
        const jm_st_tensor *st = jm_st_find(&f, pr->inputs[i].name);
        if (!st) {
            snprintf(err, errlen, "%s: missing input '%s' of program %s", path, pr->inputs[i].name, pr->name);
            rc = -1;
            break;
        }
        rc = jm_tio_convert(path, "input", st, &g->node[pr->inputs[i].node].type, &inputs[i], err, errlen);
        if (rc == 0) loaded++;
    }
    /* Tensors that are not inputs of this program are ignored: one file may hold
       the inputs of several programs. */
    if (rc) for (int i = 0; i < loaded; i++) jm_tensor_free(&inputs[i]);
    jm_st_free(&f);
    return rc;
}

int jm_tio_write(const char *path, const char *const *names, const jm_tensor *t, int n,
                 const char *const *meta_kv, int nmeta, char *err, size_t errlen) {
    jm_st_file f;
    memset(&f, 0, sizeof f);
    f.n = n;
    f.t = calloc((size_t)(n ? n : 1), sizeof(jm_st_tensor));
    f.nmeta = nmeta;
    f.meta = calloc((size_t)(nmeta ? nmeta : 1), sizeof(jm_st_meta));
    for (int i = 0; i < nmeta; i++) { f.meta[i].key = (char *)meta_kv[2 * i]; f.meta[i].value = (char *)meta_kv[2 * i + 1]; }
    int rc = 0;
    for (int i = 0; i < n; i++) {
        jm_st_tensor *s = &f.t[i];
        s->name = (char *)names[i];
        s->rank = t[i].type.rank;
        for (int k = 0; k < s->rank; k++) s->shape[k] = t[i].type.dim[k];
        int64_t N = jm_type_numel(&t[i].type);
        switch (t[i].type.dtype) {
        case JM_F32: s->dtype = JM_ST_F32; break;
        case JM_F64: s->dtype = JM_ST_F64; break;
        case JM_I32: s->dtype = JM_ST_I32; break;
        case JM_I64: s->dtype = JM_ST_I64; break;
        default: s->dtype = JM_ST_BOOL; break;
        }
        s->nbytes = (size_t)N * jm_st_dtype_size(s->dtype);
        unsigned char *buf = malloc(s->nbytes ? s->nbytes : 1);
        for (int64_t k = 0; k < N; k++) {
            double v = t[i].data[k];
            switch (s->dtype) {
            case JM_ST_F32: { float x = (float)v; memcpy(buf + 4 * k, &x, 4); break; }
            case JM_ST_F64: memcpy(buf + 8 * k, &v, 8); break;
            case JM_ST_I32: { int32_t x = (int32_t)v; memcpy(buf + 4 * k, &x, 4); break; }
            case JM_ST_I64: { int64_t x = (int64_t)v; memcpy(buf + 8 * k, &x, 8); break; }
            default: buf[k] = v != 0; break;
            }
        }
        s->data = buf;
    }
    rc = jm_st_write(path, &f, err, errlen);
    for (int i = 0; i < n; i++) free(f.t[i].data);
    free(f.t);
    free(f.meta);
    return rc;
}

int jm_tio_save_state(jm_interp *I, const char *path, char *err, size_t errlen) {
    jm_module *m = I->m;
    const char **names = malloc(sizeof(char *) * (size_t)(m->nglobals + 1));
    for (int i = 0; i < m->nglobals; i++) names[i] = m->globals[i].name;
    char call[32], seed[32];
    snprintf(call, sizeof call, "%u", I->call);
    snprintf(seed, sizeof seed, "%llu", (unsigned long long)I->seed);
    const char *meta[] = { "jemc.rng_call", call, "jemc.rng_seed", seed };
    int rc = jm_tio_write(path, names, I->globals, m->nglobals, meta, 2, err, errlen);
    free(names);
    return rc;
}
