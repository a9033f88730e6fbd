/* compiled_helpers.h — what the compiled-code tests share (t_compiled: the CPU
 * backend against the interpreter; t_cuda: the GPU against the CPU): loading
 * a graph through autodiff, compiling it for the CPU in memory (ORC JIT),
 * typed buffers, and deterministic random inputs. The comparison rule itself
 * (each tensor at its own scale) is compare_rule.h. */
#ifndef JM_COMPILED_HELPERS_H
#define JM_COMPILED_HELPERS_H
#include "helpers.h"
#include "grad.h"
#include "simplify.h"
#include "batch.h"
#include "lower.h"
#include "plan.h"
#include "cpu_target.h"
#include "engine/rt_exec.h"
#include "compare_rule.h"
#include <math.h>

typedef struct {
    jt_unit u;
    jm_plan plan;
    jm_cpu_jit *jit;
    jm_kernel_fn *fns;
    int ok;
} jc_module;

static uint64_t rng_state = 88172645463325252ull;
static inline double urand(void) {
    rng_state ^= rng_state << 13; rng_state ^= rng_state >> 7; rng_state ^= rng_state << 17;
    return (double)(rng_state >> 11) / 9007199254740992.0;
}

/* set: jc_load batches twin evaluations (compiler/batch.h) before autodiff, as --batch-twins=on */
static int jc_batch_twins = 0;

static inline jm_module *jc_load(jt_unit *u, const char *text, const char *file, const char *const *defs, int ndefs) {
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
    if (u->m && (jm_simplify(u->m, &u->d, 0) != 0 || (jc_batch_twins && jm_batch_twins(u->m, &u->d, NULL, NULL) != 0) ||
                 jm_autodiff(u->m, &u->d) != 0 || jm_simplify(u->m, &u->d, 1) != 0)) u->m = NULL;
    fflush(u->errf);
    return u->m;
}

/* The rest of jc_compile for a module already in c->u (loaded, through autodiff):
   lowering, the plan, and the JIT. */
static inline int jc_finish(jc_module *c, const char *file) {
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

static inline int jc_compile(jc_module *c, const char *text, const char *file, const char *const *defs, int ndefs) {
    memset(c, 0, sizeof *c);
    if (!jc_load(&c->u, text, file, defs, ndefs)) return -1;
    return jc_finish(c, file);
}

static inline void jc_free(jc_module *c) {
    if (c->jit) { jm_cpu_jit_free(c->jit); free(c->fns); }
    jt_unload(&c->u);
}

static inline void jc_to_typed(const jm_tensor *t, int dt, void *dst) {
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

/* The worst errors of one run over its tensors, and where. With
   JEMC_TEST_REPORT set in the environment every tensor's errors are printed as
   diagnostics (how the tolerances were measured). */
typedef struct {
    double value, vtol, change, rms, rtol;   /* the value error and rms change nearest their tensor's bounds, the worst max change */
    const char *vname, *cname, *rname;
    int64_t vat, cat;
} jc_worst;
/* error / tolerance, where a tolerance of 0 (bitwise) makes any error infinitely bad
   (e / 0 against 0 / 0 = NaN compares false: a bitwise case could not fail) */
static inline double jc_ratio(double e, double tol) { return tol > 0 ? e / tol : e > 0 ? INFINITY : 0; }
static inline void jc_note_value(jc_worst *w, const char *label, const char *name, double e, double tol, int64_t at) {
    if (jc_ratio(e, tol) > jc_ratio(w->value, w->vtol) || isnan(e)) { w->value = e; w->vtol = tol; w->vname = name; w->vat = at; }
    if (getenv("JEMC_TEST_REPORT")) printf("# report %s %s value %.3g\n", label, name, e);
}
static inline void jc_note_change(jc_worst *w, const char *label, const char *name, double e, int64_t at, double rms, double rtol) {
    if (e > w->change) { w->change = e; w->cname = name; w->cat = at; }
    if (jc_ratio(rms, rtol) > jc_ratio(w->rms, w->rtol) || isnan(rms)) { w->rms = rms; w->rtol = rtol; w->rname = name; }
    if (getenv("JEMC_TEST_REPORT")) printf("# report %s %s change %.3g rms %.3g\n", label, name, e, rms);
}

static inline void jc_fill_inputs(jm_module *m, int p, jm_tensor *in, double lo, double hi, int64_t classes) {
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
