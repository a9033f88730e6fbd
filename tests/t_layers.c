/* t_layers.c — the layer library (graphs/lib/norm.graph), conv_transpose2d and
 * upsample against PyTorch: BatchNorm2d in training mode twice in one program
 * (outputs and the running statistics it leaves), in eval mode, GroupNorm, a
 * grouped, strided transposed convolution, and nearest upsampling x2 and x3 with
 * its gradient. The interpreter in float64, tolerance 1e-9 relative to the
 * largest expected value; upsample also compiled for the CPU (float32), within
 * 1e-6 (the inputs' rounding to float32 and a float32 sum of at most 9 terms). */
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
    snprintf(cmd, sizeof cmd, "%s run tests/parity/layers.graph bn_eval --precision f64 --state %s/state.safetensors "
             "--in %s/inputs.safetensors --out %s/eval.safetensors", jemc, dir, dir, dir);
    if (!ok(jt_run(cmd, out, sizeof out) == 0, "jemc run bn_eval")) tap_diag("%s", out);
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
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    jt_run(cmd, out, sizeof out);
    return tap_done();
}
