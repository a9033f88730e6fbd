/* compiled_helpers.h — what the compiled-code tests share (t_compiled: the CPU
 * backend against the interpreter; t_cuda: the GPU against the CPU): loading
 * a graph through autodiff, compiling it for the CPU in memory (ORC JIT),
 * typed buffers, and deterministic random inputs. */
#ifndef JM_COMPILED_HELPERS_H
#define JM_COMPILED_HELPERS_H
#include "helpers.h"
#include "grad.h"
#include "simplify.h"
#include "lower.h"
#include "plan.h"
#include "cpu_target.h"
#include "engine/rt_exec.h"

typedef struct {
    jt_unit u;
    jm_plan plan;
    jm_cpu_jit *jit;
    jm_kernel_fn *fns;
    int ok;
} jc_module;

static uint64_t rng_state = 88172645463325252ull;
static double urand(void) {
    rng_state ^= rng_state << 13; rng_state ^= rng_state >> 7; rng_state ^= rng_state << 17;
    return (double)(rng_state >> 11) / 9007199254740992.0;
}

static jm_module *jc_load(jt_unit *u, const char *text, const char *file, const char *const *defs, int ndefs) {
    memset(u, 0, sizeof *u);
    u->errf = open_memstream(&u->errors, &u->errlen);
    jm_diag_init(&u->d, &u->arena, u->errf);
    jm_define dv[8];
    for (int i = 0; i < ndefs; i++) {
        const char *eq = strchr(defs[i], '=');
        dv[i].name = jm_arena_strndup(&u->arena, defs[i], (size_t)(eq - defs[i]));
        dv[i].value = eq + 1;
    }
    u->m = text ? jm_frontend_load_text(&u->d, "test.graph", text, strlen(text), dv, ndefs) : jm_frontend_load(&u->d, file, dv, ndefs);
    if (u->m && (jm_simplify(u->m, &u->d, 0) != 0 || jm_autodiff(u->m, &u->d) != 0 || jm_simplify(u->m, &u->d, 1) != 0)) u->m = NULL;
    fflush(u->errf);
    return u->m;
}

static int jc_compile(jc_module *c, const char *text, const char *file, const char *const *defs, int ndefs) {
    memset(c, 0, sizeof *c);
    if (!jc_load(&c->u, text, file, defs, ndefs)) return -1;
    if (jm_lower(c->u.m, &c->u.d) != 0 || jm_simplify(c->u.m, &c->u.d, 1) != 0 || jm_plan_build(c->u.m, &c->plan, &c->u.d) != 0) {
        fflush(c->u.errf);
        return -1;
    }
    c->plan.table.graph = file ? file : "test.graph";
    c->plan.table.cpu = "host";
    jm_cpu_opts o = { .opt = 3, .threads = 1 };
    char err[1024];
    c->jit = jm_cpu_jit_create(&c->plan, &o, &c->fns, err, sizeof err);
    if (!c->jit) { fprintf(c->u.errf, "%s\n", err); fflush(c->u.errf); return -1; }
    c->ok = 1;
    return 0;
}

static void jc_free(jc_module *c) {
    if (c->jit) { jm_cpu_jit_free(c->jit); free(c->fns); }
    jt_unload(&c->u);
}

static void jc_to_typed(const jm_tensor *t, int dt, void *dst) {
    int64_t n = jm_type_numel(&t->type);
    for (int64_t i = 0; i < n; i++)
        switch (dt) {
        case JM_DT_F32: ((float *)dst)[i] = (float)t->data[i]; break;
        case JM_DT_F64: ((double *)dst)[i] = t->data[i]; break;
        case JM_DT_I32: ((int32_t *)dst)[i] = (int32_t)t->data[i]; break;
        case JM_DT_I64: ((int64_t *)dst)[i] = (int64_t)t->data[i]; break;
        default: ((unsigned char *)dst)[i] = t->data[i] != 0; break;
        }
}
static double jc_get(const void *p, int dt, int64_t i) {
    switch (dt) {
    case JM_DT_F32: return ((const float *)p)[i];
    case JM_DT_F64: return ((const double *)p)[i];
    case JM_DT_I32: return ((const int32_t *)p)[i];
    case JM_DT_I64: return (double)((const int64_t *)p)[i];
    default: return ((const unsigned char *)p)[i];
    }
}

static void jc_fill_inputs(jm_module *m, int p, jm_tensor *in, double lo, double hi, int64_t classes) {
    jm_program *pr = &m->programs[p];
    for (int i = 0; i < pr->ninputs; i++) {
        jm_tensor_alloc(&in[i], &m->graphs[pr->graph].node[pr->inputs[i].node].type);
        int64_t n = jm_type_numel(&in[i].type);
        for (int64_t k = 0; k < n; k++) {
            if (jm_dtype_is_int(in[i].type.dtype)) in[i].data[k] = (double)((k * 7 + 1) % classes);
            else if (in[i].type.dtype == JM_BOOL) in[i].data[k] = urand() < 0.5;
            else in[i].data[k] = lo + (hi - lo) * urand();
        }
    }
}

#endif
