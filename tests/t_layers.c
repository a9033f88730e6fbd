/* t_layers.c — the layer library (graphs/lib/norm.graph), conv_transpose2d and
 * upsample against PyTorch: BatchNorm2d in training mode twice in one program
 * (outputs and the running statistics it leaves), in eval mode, GroupNorm, a
 * grouped, strided transposed convolution, and nearest upsampling x2 and x3 with
 * its gradient. The interpreter in float64, tolerance 1e-9 relative to the
 * largest expected value; upsample also compiled for the CPU (float32), within
 * 1e-6 (the inputs' rounding to float32 and a float32 sum of at most 9 terms).
 * xavier_uniform's initial values against PyTorch's bound (check_xavier). */
#include "tap.h"
#include "helpers.h"
#include "engine/safetensors.h"
#include <math.h>
#include <unistd.h>

static double diff(const jm_st_tensor *a, const jm_st_tensor *b) {
    if (!a || !b || a->nbytes / jm_st_dtype_size(a->dtype) != b->nbytes / jm_st_dtype_size(b->dtype)) return INFINITY;
    size_t n = a->nbytes / jm_st_dtype_size(a->dtype);
    double d = 0, mx = 0;
    for (size_t i = 0; i < n; i++) {
        double x = a->dtype == JM_ST_I64 ? (double)((int64_t *)a->data)[i]
                   : a->dtype == JM_ST_F32 ? (double)((float *)a->data)[i] : ((double *)a->data)[i];
        double y = b->dtype == JM_ST_I64 ? (double)((int64_t *)b->data)[i] : ((double *)b->data)[i];
        d = fmax(d, fabs(x - y));
        mx = fmax(mx, fabs(y));
    }
    return mx > 0 ? d / mx : d;
}

static void compare(const char *got_path, const char *want_path, const char *const *names, int n, double tol) {
    jm_st_file got, want;
    char err[512];
    memset(&got, 0, sizeof got);
    memset(&want, 0, sizeof want);
    if (jm_st_read(got_path, &got, err, sizeof err) || jm_st_read(want_path, &want, err, sizeof err)) {
        ok(0, "read %s and %s", got_path, want_path);
        tap_diag("%s", err);
        return;
    }
    for (int i = 0; i < n; i++) {
        double e = diff(jm_st_find(&got, names[i]), jm_st_find(&want, names[i]));
        ok(e <= tol, "%s matches PyTorch (rel err %.2g <= %g)", names[i], e, tol);
    }
    jm_st_free(&got);
    jm_st_free(&want);
}

/* Every tensor of `want` whose name starts with `prefix` is in `got` with the same bytes. */
static void same_tensors(const char *got_path, const char *want_path, const char *prefix, const char *what) {
    jm_st_file got, want;
    char err[512];
    memset(&got, 0, sizeof got);
    memset(&want, 0, sizeof want);
    int n = 0, bad = 0;
    if (jm_st_read(got_path, &got, err, sizeof err) || jm_st_read(want_path, &want, err, sizeof err)) bad = 1;
    for (int i = 0; !bad && i < want.n; i++) {
        if (strncmp(want.t[i].name, prefix, strlen(prefix)) != 0) continue;
        const jm_st_tensor *g = jm_st_find(&got, want.t[i].name);
        n++;
        if (!g || g->nbytes != want.t[i].nbytes || memcmp(g->data, want.t[i].data, g->nbytes) != 0) {
            bad = 1;
            snprintf(err, sizeof err, "%s differs", want.t[i].name);
        }
    }
    if (!ok(!bad && n > 0, "%s (%d tensors)", what, n)) tap_diag("%s", err);
    jm_st_free(&got);
    jm_st_free(&want);
}

/* xavier_uniform: every value of each parameter within PyTorch's bound b (one float32
   rounding above it at most), the largest |value| within 20/N of b (a smaller bound
   fails; a uniform sample misses that by chance with probability e^-20), and the mean
   and mean square within 5 standard errors of 0 and b^2/3. */
static void check_xavier(const char *got_path, const char *bounds_path) {
    jm_st_file got, want;
    char err[512];
    memset(&got, 0, sizeof got);
    memset(&want, 0, sizeof want);
    if (jm_st_read(got_path, &got, err, sizeof err) || jm_st_read(bounds_path, &want, err, sizeof err)) {
        ok(0, "read %s and %s", got_path, bounds_path);
        tap_diag("%s", err);
        return;
    }
    int n = 0;
    for (int i = 0; i < want.n; i++) {
        const jm_st_tensor *w = &want.t[i], *g = jm_st_find(&got, w->name);
        if (!ok(g && g->dtype == JM_ST_F32, "xavier: %s initialised (f32)", w->name)) continue;
        double b = *(const double *)w->data, mx = 0, s1 = 0, s2 = 0;
        size_t N = g->nbytes / 4;
        for (size_t k = 0; k < N; k++) {
            double v = ((const float *)g->data)[k];
            mx = fmax(mx, fabs(v));
            s1 += v;
            s2 += v * v;
        }
        double mean = s1 / (double)N, msq = s2 / (double)N / (b * b / 3);
        ok(mx <= b * (1 + 0x1p-24) && mx >= b * (1 - 20.0 / (double)N),
           "xavier: %s (%zu values) lies in PyTorch's bound %.9g, reaching %.9g", w->name, N, b, mx);
        ok(fabs(mean) <= 5 * b / sqrt(3.0 * (double)N) && fabs(msq - 1) <= 5 * sqrt(0.8 / (double)N),
           "xavier: %s has mean %.3g b and mean square %.4f b^2/3 (uniform: 0 and 1 within 5 standard errors)", w->name, mean / b, msq);
        n++;
    }
    ok(n == 7, "xavier: 7 parameters checked");
    /* conv_xavier's and dense_xavier's biases start at zero */
    for (int i = 0; i < 2; i++) {
        const char *name = i ? "dx.bias" : "cx.bias";
        const jm_st_tensor *g = jm_st_find(&got, name);
        int zero = g && g->dtype == JM_ST_F32 && g->nbytes == (i ? 5u : 6u) * 4;
        for (size_t k = 0; zero && k < g->nbytes / 4; k++) zero = ((const float *)g->data)[k] == 0;
        ok(zero, "xavier: %s is zero", name);
    }
    jm_st_free(&got);
    jm_st_free(&want);
}

int main(void) {
    char out[8192], cmd[2048], dir[] = "/tmp/jemc_layers_XXXXXX";
    if (jt_run("/usr/bin/python3 -c 'import torch'", out, sizeof out) != 0)
        skip_all("Debian's python3-torch is not installed (make deps installs it)");
    if (!mkdtemp(dir)) skip_all("cannot create a temporary directory");
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 tests/parity/layers_ref.py %s", dir);
    if (!ok(jt_run(cmd, out, sizeof out) == 0, "PyTorch reference generated")) tap_diag("%s", out);
    const char *jemc = jt_env("JEMC", "build/jemc");
    snprintf(cmd, sizeof cmd, "%s run tests/parity/layers.graph layers --precision f64 --state %s/state.safetensors "
             "--in %s/inputs.safetensors --out %s/out.safetensors --state-out %s/state_after.safetensors", jemc, dir, dir, dir, dir);
    if (!ok(jt_run(cmd, out, sizeof out) == 0, "jemc run layers")) tap_diag("%s", out);
    char a[600], b[600];
    snprintf(a, sizeof a, "%s/out.safetensors", dir);
    snprintf(b, sizeof b, "%s/expected.safetensors", dir);
    const char *outs[] = { "convt", "bn1", "bn2", "gn" };
    compare(a, b, outs, 4, 1e-9);
    snprintf(a, sizeof a, "%s/state_after.safetensors", dir);
    snprintf(b, sizeof b, "%s/expected_state.safetensors", dir);
    const char *st[] = { "bn.running_mean", "bn.running_var", "bn.num_batches_tracked", "bn.weight" };
    compare(a, b, st, 4, 1e-9);
    snprintf(cmd, sizeof cmd, "%s run tests/parity/layers.graph bn_running --precision f64 --state %s/state.safetensors "
             "--in %s/inputs.safetensors --out %s/eval.safetensors", jemc, dir, dir, dir);
    if (!ok(jt_run(cmd, out, sizeof out) == 0, "jemc run bn_running")) tap_diag("%s", out);
    snprintf(a, sizeof a, "%s/eval.safetensors", dir);
    snprintf(b, sizeof b, "%s/expected.safetensors", dir);
    const char *ev[] = { "bn" };
    compare(a, b, ev, 1, 1e-9);
    /* upsample: the interpreter in float64, the compiled CPU code in float32 */
    const char *up[] = { "up2", "up3", "up_grad" };
    const char *how[] = { "--precision f64", "--target cpu" };
    for (int k = 0; k < 2; k++) {
        snprintf(cmd, sizeof cmd, "%s run tests/parity/layers.graph upsampling %s --in %s/inputs.safetensors --out %s/up%d.safetensors",
                 jemc, how[k], dir, dir, k);
        if (!ok(jt_run(cmd, out, sizeof out) == 0, "jemc run upsampling %s", how[k])) tap_diag("%s", out);
        snprintf(a, sizeof a, "%s/up%d.safetensors", dir, k);
        compare(a, b, up, 3, k == 0 ? 1e-9 : 1e-6);
    }
    /* xavier_uniform: the interpreter's initial values against PyTorch's bound; the
       compiled CPU code must start from the same values, bitwise */
    for (int k = 0; k < 2; k++) {
        snprintf(cmd, sizeof cmd, "%s run tests/parity/xavier.graph xavier %s --in %s/inputs.safetensors --state-out %s/xavier%d.safetensors",
                 jemc, k ? "--target cpu" : "", dir, dir, k);
        if (!ok(jt_run(cmd, out, sizeof out) == 0, "jemc run xavier%s", k ? " --target cpu" : "")) tap_diag("%s", out);
    }
    snprintf(a, sizeof a, "%s/xavier0.safetensors", dir);
    snprintf(b, sizeof b, "%s/xavier_bounds.safetensors", dir);
    check_xavier(a, b);
    snprintf(a, sizeof a, "%s/xavier1.safetensors", dir);
    snprintf(b, sizeof b, "%s/xavier0.safetensors", dir);
    same_tensors(a, b, "", "xavier: the compiled code's initial parameters are the interpreter's, bitwise");
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    jt_run(cmd, out, sizeof out);
    return tap_done();
}
