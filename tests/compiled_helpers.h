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
#include <math.h>

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

/* ---- results against expected results: every tensor at its own scale -------------
 * value error of a tensor: max_i |got_i - want_i| / S, S = max_i |want_i| over
 *   that tensor's finite elements (floor 1e-30). A tensor of 1e-8s (Adam's
 *   second moments) is held to its own size, not to 1.
 * change error of a global across one run: what the run did to it, d_got =
 *   got_after - got_before against d_want = want_after - want_before (each side
 *   from its own state before the run), in two norms:
 *     max:  max_i max(0, |d_got_i - d_want_i| - u_i) / max_i |d_want_i|, u_i one
 *           spacing of the stored type at max(|got_after_i|, |want_after_i|)
 *           (each side rounds what it stores, and a float32 parameter near 0.1
 *           moved by 1e-7 moves by only ~14 spacings);
 *     rms:  ||d_got - d_want||_2 / ||d_want||_2.
 *   Floors 1e-30: a global the run leaves alone must stay exactly as it was,
 *   and a parameter that moves by 1e-7 must move by that 1e-7, not 0.
 * NaN matches only NaN, an infinity only the same infinity (else the error is
 * infinite; the change of such an element is not compared). */
static double jc_ulp(double x, int dt) {
    x = fabs(x);
    if (!isfinite(x)) return 0;
    if (dt == JM_DT_F32) return (double)nextafterf((float)x, INFINITY) - (double)(float)x;
    if (dt == JM_DT_F64) return nextafter(x, INFINITY) - x;
    return 0;
}
static double jc_value_err(const void *got, int gdt, const void *want, int wdt, int64_t n, int64_t *at) {
    double scale = 0, worst = 0;
    for (int64_t i = 0; i < n; i++) { double w = jc_get(want, wdt, i); if (isfinite(w)) scale = fmax(scale, fabs(w)); }
    scale = fmax(scale, 1e-30);
    for (int64_t i = 0; i < n; i++) {
        double g = jc_get(got, gdt, i), w = jc_get(want, wdt, i), e;
        if (isnan(g) || isnan(w)) e = isnan(g) && isnan(w) ? 0 : INFINITY;
        else if (isinf(g) || isinf(w)) e = g == w ? 0 : INFINITY;
        else e = fabs(g - w) / scale;
        if (e > worst || isnan(e)) { worst = e; *at = i; }
    }
    return worst;
}
/* sdt: the type the state is stored in (for u_i); returns the max form, *rms the other */
static double jc_change_err(const void *got1, const void *got0, int gdt, const void *want1, const void *want0, int wdt, int sdt,
                            int64_t n, int64_t *at, double *rms) {
    double scale = 0, worst = 0, sd = 0, se = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = jc_get(want1, wdt, i) - jc_get(want0, wdt, i);
        if (isfinite(d)) scale = fmax(scale, fabs(d)), sd += d * d;
    }
    scale = fmax(scale, 1e-30);
    for (int64_t i = 0; i < n; i++) {
        double g1 = jc_get(got1, gdt, i), g0 = jc_get(got0, gdt, i), w1 = jc_get(want1, wdt, i), w0 = jc_get(want0, wdt, i);
        if (!isfinite(g1) || !isfinite(g0) || !isfinite(w1) || !isfinite(w0)) continue;
        double d = fabs((g1 - g0) - (w1 - w0)), e = fmax(0, d - jc_ulp(fmax(fabs(g1), fabs(w1)), sdt)) / scale;
        se += d * d;
        if (e > worst) { worst = e; *at = i; }
    }
    *rms = sqrt(se) / fmax(sqrt(sd), 1e-30);
    return worst;
}

/* Globals whose new value a run computes afresh rather than from the old one
   (the optimizer's gradient-norm record): their change between two nearby
   values is ill-conditioned, so only their value is compared. */
static int jc_fresh_global(const char *name) {
    size_t n = strlen(name);
    return n >= 10 && strcmp(name + n - 10, ".grad_norm") == 0;
}

/* Tensors of the shipped graphs that are ill-conditioned in float32, held to
   JC_TOL_ILL at their own scale instead of the comparison's tolerance:
   - everything computed through a backward pass (names with "grad": grad.P,
     grad_gp.P, sgld_grad_x, ce_grad_x; every Adam's moments OPT.m.P and
     OPT.v.P, VERA's opt_g and opt_post as JEM's opt):
     where a leaky_relu pre-activation is within rounding of 0 the two sides
     take different slopes, a discrete change of a few elements downstream
     (with slope 1 these errors are ~1e-6);
   - loss_px = E(data) - E(samples): two energies near -2.3 that cancel to ~1e-3.
   The rms of such a global's change is held to JC_TOL_ILL too (the max of the
   change already is: see the comparisons). */
#define JC_TOL_ILL 2e-2
static int jc_adam_moment(const char *name) {
    const char *dot = strchr(name, '.');
    return dot && (dot[1] == 'm' || dot[1] == 'v') && dot[2] == '.';
}
static double jc_value_tol(const char *name, double tol) {
    if (strstr(name, "grad") || jc_adam_moment(name) || strcmp(name, "loss_px") == 0)
        return fmax(tol, JC_TOL_ILL);
    return tol;
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
static double jc_ratio(double e, double tol) { return tol > 0 ? e / tol : e > 0 ? INFINITY : 0; }
static void jc_note_value(jc_worst *w, const char *label, const char *name, double e, double tol, int64_t at) {
    if (jc_ratio(e, tol) > jc_ratio(w->value, w->vtol) || isnan(e)) { w->value = e; w->vtol = tol; w->vname = name; w->vat = at; }
    if (getenv("JEMC_TEST_REPORT")) printf("# report %s %s value %.3g\n", label, name, e);
}
static void jc_note_change(jc_worst *w, const char *label, const char *name, double e, int64_t at, double rms, double rtol) {
    if (e > w->change) { w->change = e; w->cname = name; w->cat = at; }
    if (jc_ratio(rms, rtol) > jc_ratio(w->rms, w->rtol) || isnan(rms)) { w->rms = rms; w->rtol = rtol; w->rname = name; }
    if (getenv("JEMC_TEST_REPORT")) printf("# report %s %s change %.3g rms %.3g\n", label, name, e, rms);
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
