/* t_bn_grad.c — parameter gradients through train-mode batch norm, compiled
 * CPU code in float32 against the interpreter in float64, on the network of
 * tests/t_recipes.c (lib/wrn.graph's WRN-10-1, -D norm=1: BatchNorm2d with
 * batch statistics before every LeakyReLU(0.2), strided 3x3 convs, 1x1
 * shortcuts, residual adds, 32x32 -> 16x16 -> 8x8 maps, batch 4), program
 * `grads` of tests/bn_grad.graph: grad(sum logsumexp f(x), params).
 *
 * Why it exists: t_recipes measured compiled f32 gradients off by 1.7e-2 of
 * their scale (layer2.0.conv1.weight) where PyTorch f32 was not. The cause is
 * not batch norm's backward, a reduction or a rewrite: one LeakyReLU
 * pre-activation (layer2.0.bn2's output, channel 13) lay 4.6e-7 from the kink
 * (7.7e-8 of the tensor's scale), the compiled forward (error 7.7e-7 of scale,
 * PyTorch f32's 6.5e-7: the same rounding) put it at -6.7e-8, and the
 * gradient of that one element took slope 0.2 instead of 1: layer2.0.bn2.bias
 * [13] off by exactly 0.8 g (2.778e-5; every other channel within 4.5e-9),
 * then everything before it in the network. Moving that bias by 1e-6 either
 * way brings every compiled gradient within 2.8e-6.
 *
 * Points, each tensor at its own scale (max|got - want| / max|want|):
 *  seed 1 (no pre-activation within the compiled rounding of 0):
 *   - the hand-written copy of the network (program preact) is f_mode: its
 *     logits equal f_mode's in f64, so its pre-activations are the network's;
 *   - no LeakyReLU pre-activation changes sign in compiled f32;
 *   - every parameter gradient within 1e-4 (measured 4.5e-6); the conv biases
 *     that feed only train-mode batch norms have gradient 0 exactly (f64 below
 *     1e-12 of the largest): compiled within 1e-5 of the largest gradient;
 *  seed 4 (a pre-activation 2e-8 of its scale from 0, in layer2.0.bn2's output):
 *   - the data have that element; if compiled f32 puts it on the other side
 *     (it does today: layer2.0.conv1.weight off by 8.7e-3), the gradients of
 *     the parameters after it (layer2.0.conv2, layer2.0.shortcut.0, layer3.*,
 *     bn1, linear) stay within 1e-4: the error is the kink's, confined to the
 *     parameters before it; if it does not, every gradient is within 1e-4.
 * Seen red: jm_emit_reduce (codegen/kernel_body.c) summing one element less
 * per reduced run (loop bound len - 1): the seed-1 gradients off by 1.1 to 16
 * of their scale and seed-1 pre-activations changed sign. Batch norm's
 * variance as E[x^2] - E[x]^2 (lib/norm.graph) stays green here (worst 1.2e-5:
 * the batch means are small), so it could not have made t_recipes' 1.7e-2. */
#include "tap.h"
#include "helpers.h"
#include "st_helpers.h"
#include <math.h>
#include <unistd.h>

#define TOL_GRAD 1e-4
#define TOL_ZERO 1e-5

static char tmpdir[256];
static const char *pre_names[] = { "a1", "a2", "a3", "a4", "a5", "a6", "a7" };
#define NPRE 7

/* jemc run PROGRAM at SEED on TARGET (interp f64 or cpu f32) into DIR/PROGRAM_TARGET_SEED.st */
static int run(const char *program, const char *target, int seed, jm_st_file *f) {
    char cmd[2048], out[8192], path[600];
    snprintf(path, sizeof path, "%s/%s_%s_%d.st", tmpdir, program, target, seed);
    snprintf(cmd, sizeof cmd, "%s run tests/bn_grad.graph %s -D norm=1 --seed %d --target %s --precision %s --out %s",
             jt_env("JEMC", "build/jemc"), program, seed, target, strcmp(target, "cpu") == 0 ? "f32" : "f64", path);
    if (jt_run(cmd, out, sizeof out) != 0) { tap_diag("%s\n%s", cmd, out); return -1; }
    return readf(path, f);
}

static double max_abs(const jm_st_tensor *t) {
    double m = 0;
    for (size_t i = 0; i < numel(t); i++) m = fmax(m, fabs(el(t, i)));
    return m;
}

static double rel_err(const jm_st_tensor *g, const jm_st_tensor *w) {
    double d = 0, m = max_abs(w);
    for (size_t i = 0; i < numel(w); i++) {
        double e = fabs(el(g, i) - el(w, i));
        d = isfinite(e) ? fmax(d, e) : INFINITY;
    }
    return m > 0 ? d / m : d;
}

/* parameters after layer2.0.bn2's LeakyReLU in the network: their gradients do
   not pass through that LeakyReLU's backward */
static int after_layer2_bn2(const char *grad_name) {
    const char *n = grad_name + 5; /* "grad." */
    return strncmp(n, "layer2.0.conv2.", 15) == 0 || strncmp(n, "layer2.0.shortcut.", 18) == 0 || strncmp(n, "layer3.", 7) == 0 ||
           strncmp(n, "bn1.", 4) == 0 || strncmp(n, "linear.", 7) == 0;
}

/* compiled gradients against f64; only_after: compare just the parameters after layer2.0.bn2 */
static void compare_grads(int seed, const jm_st_file *got, const jm_st_file *want, int only_after, const char *what) {
    double largest = 0;
    for (int k = 0; k < want->n; k++)
        if (strncmp(want->t[k].name, "grad.", 5) == 0) largest = fmax(largest, max_abs(&want->t[k]));
    int bad = 0, n = 0, nzero = 0;
    double worst = 0, worst_zero = 0;
    char wn[200] = "";
    for (int k = 0; k < want->n; k++) {
        const jm_st_tensor *w = &want->t[k], *g = jm_st_find(got, w->name);
        if (strncmp(w->name, "grad.", 5) != 0 || (only_after && !after_layer2_bn2(w->name))) continue;
        if (!g || !same_shape(g, w)) { tap_diag("seed %d: compiled '%s' missing or mis-shaped", seed, w->name); bad++; continue; }
        n++;
        if (max_abs(w) < 1e-12 * largest) {
            /* a conv bias feeding only train-mode batch norms: 0 in exact arithmetic */
            double e = max_abs(g) / largest;
            nzero++;
            worst_zero = fmax(worst_zero, e);
            if (!(e <= TOL_ZERO)) { tap_diag("seed %d: %s (exactly 0) is %.3g of the largest gradient", seed, w->name, e); bad++; }
            continue;
        }
        double e = rel_err(g, w);
        if (!(e <= TOL_GRAD)) { tap_diag("seed %d: %s off by %.3g of its scale", seed, w->name, e); bad++; }
        if (e >= worst) { worst = e; snprintf(wn, sizeof wn, "%s", w->name); }
    }
    ok(bad == 0 && n > 0, "seed %d: %s: %d gradients within %g of their scale (worst %.2g: %s), %d exact zeros within %g of the largest (worst %.2g)",
       seed, what, n - nzero, TOL_GRAD, worst, wn, nzero, TOL_ZERO, worst_zero);
}

/* pre-activations that change sign from f64 to compiled f32; *closest: the
   smallest |f64 value| at its tensor's scale */
static int sign_flips(const jm_st_file *c, const jm_st_file *r, double *closest, int *flips_a4) {
    int flips = 0;
    *closest = INFINITY;
    *flips_a4 = 0;
    for (int k = 0; k < NPRE; k++) {
        const jm_st_tensor *g = jm_st_find(c, pre_names[k]), *w = jm_st_find(r, pre_names[k]);
        if (!g || !w || !same_shape(g, w)) return -1;
        double s = max_abs(w);
        for (size_t i = 0; i < numel(w); i++) {
            *closest = fmin(*closest, fabs(el(w, i)) / s);
            if ((el(g, i) > 0) != (el(w, i) > 0)) {
                flips++;
                if (k == 3) (*flips_a4)++;
                tap_diag("%s[%zu]: f64 %.3g, compiled f32 %.3g (scale %.3g)", pre_names[k], i, el(w, i), el(g, i), s);
            }
        }
    }
    return flips;
}

int main(void) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/jemc_bn_grad_XXXXXX");
    if (!mkdtemp(tmpdir)) skip_all("cannot create a temporary directory");
    jm_st_file pr[2], pc[2], gr[2], gc[2];
    const int seeds[2] = { 1, 4 };
    int have[2];
    for (int s = 0; s < 2; s++) {
        have[s] = run("preact", "interp", seeds[s], &pr[s]) == 0 && run("preact", "cpu", seeds[s], &pc[s]) == 0 &&
                  run("grads", "interp", seeds[s], &gr[s]) == 0 && run("grads", "cpu", seeds[s], &gc[s]) == 0;
        ok(have[s], "seed %d: preact and grads run in the interpreter (f64) and compiled (f32)", seeds[s]);
    }
    if (have[0]) {
        const jm_st_tensor *a = jm_st_find(&pr[0], "copy"), *b = jm_st_find(&pr[0], "logits");
        ok(a && b && same_shape(a, b) && rel_err(a, b) <= 1e-12, "seed 1: preact's copy of the network gives f_mode's logits (f64)");
        double closest;
        int f4, flips = sign_flips(&pc[0], &pr[0], &closest, &f4);
        ok(flips == 0, "seed 1: no LeakyReLU pre-activation changes sign in compiled f32 (closest to 0: %.2g of its scale)", closest);
        compare_grads(1, &gc[0], &gr[0], 0, "every parameter");
    } else skip(3, "seed 1 did not run");
    if (have[1]) {
        double closest;
        int f4, flips = sign_flips(&pc[1], &pr[1], &closest, &f4);
        ok(flips >= 0 && closest < 1e-7, "seed 4: a pre-activation lies within %.2g of its scale of the kink", closest);
        if (flips > 0 && flips == f4) {
            tap_diag("seed 4: compiled f32 puts %d pre-activation(s) of layer2.0.bn2's output on the other side of 0", flips);
            compare_grads(4, &gc[1], &gr[1], 1, "after the flipped LeakyReLU");
            const jm_st_tensor *g = jm_st_find(&gc[1], "grad.layer2.0.conv1.weight"), *w = jm_st_find(&gr[1], "grad.layer2.0.conv1.weight");
            if (g && w && same_shape(g, w)) tap_diag("seed 4: before it, layer2.0.conv1.weight's gradient is off by %.2g", rel_err(g, w));
        } else if (flips == 0) {
            compare_grads(4, &gc[1], &gr[1], 0, "every parameter (no sign change)");
        } else ok(0, "seed 4: sign changes outside layer2.0.bn2's output (%d of %d)", flips - f4, flips);
    } else skip(2, "seed 4 did not run");
    for (int s = 0; s < 2; s++)
        if (have[s]) {
            jm_st_free(&pr[s]);
            jm_st_free(&pc[s]);
            jm_st_free(&gr[s]);
            jm_st_free(&gc[s]);
        }
    char cmd[600], out[512];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    jt_run(cmd, out, sizeof out);
    return tap_done();
}
