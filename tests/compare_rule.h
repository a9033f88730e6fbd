/* compare_rule.h — how the tests compare computed tensors with expected ones,
 * each tensor at its own scale: t_compiled (the CPU backend against the
 * interpreter), t_cuda (the GPU against the CPU) and bench/gpu/st_compare.c
 * (a GPU machine's output files against CPU reference files) share it.
 * Needs only the runtime's element types (engine/rt_table.h) and libm. */
#ifndef JM_COMPARE_RULE_H
#define JM_COMPARE_RULE_H
#include "engine/rt_table.h"
#include <math.h>
#include <stdint.h>
#include <string.h>

/* element i of a typed buffer (JM_DT_*) as a double */
static inline double jc_get(const void *p, int dt, int64_t i) {
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
static inline double jc_ulp(double x, int dt) {
    x = fabs(x);
    if (!isfinite(x)) return 0;
    if (dt == JM_DT_F32) return (double)nextafterf((float)x, INFINITY) - (double)(float)x;
    if (dt == JM_DT_F64) return nextafter(x, INFINITY) - x;
    return 0;
}
static inline double jc_value_err(const void *got, int gdt, const void *want, int wdt, int64_t n, int64_t *at) {
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
static inline double jc_change_err(const void *got1, const void *got0, int gdt, const void *want1, const void *want0, int wdt, int sdt,
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
static inline int jc_fresh_global(const char *name) {
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
static inline int jc_adam_moment(const char *name) {
    const char *dot = strchr(name, '.');
    return dot && (dot[1] == 'm' || dot[1] == 'v') && dot[2] == '.';
}
static inline double jc_value_tol(const char *name, double tol) {
    if (strstr(name, "grad") || jc_adam_moment(name) || strcmp(name, "loss_px") == 0)
        return fmax(tol, JC_TOL_ILL);
    return tol;
}

#endif
