/* t_parity.c — jemc's interpreter against PyTorch on the same weights and inputs.
 *
 * tests/parity/torch_ref.py (Debian's python3-torch, run with /usr/bin/python3)
 * builds each model of graphs/ in PyTorch, initialises it, draws inputs and
 * writes weights, inputs and expected outputs as safetensors. `jemc run` then
 * evaluates the programs `logits`, `energy`, `sgld_grad` (d/dx sum logsumexp f)
 * `jem_loss` (loss, loss_ce, loss_px and the gradient of every parameter) and
 * `jem_loss_gp` (the loss plus a penalty on ||d/dx E||^2: parameter gradients by
 * double backward, against PyTorch's create_graph=True) from the same files.
 * Tolerances: float64 max |jemc - torch| <= 1e-9 * max |torch| (the issue asks
 * for 1e-5; both sides compute in double, so far tighter holds); float32
 * <= 1e-4 * max |torch| (PyTorch accumulates in float, jemc rounds once per op). */
#include "tap.h"
#include "helpers.h"
#include "engine/safetensors.h"
#include <math.h>
#include <unistd.h>

static char tmpdir[256];

static double max_rel_err(const jm_st_tensor *got, const jm_st_tensor *want, char *why) {
    if (got->rank != want->rank || got->dtype != want->dtype || got->nbytes != want->nbytes) {
        sprintf(why, "shape or dtype differs (%s vs %s, %zu vs %zu bytes)", jm_st_dtype_name(got->dtype),
                jm_st_dtype_name(want->dtype), got->nbytes, want->nbytes);
        return INFINITY;
    }
    size_t n = got->nbytes / jm_st_dtype_size(got->dtype);
    double maxd = 0, maxw = 0;
    for (size_t i = 0; i < n; i++) {
        double g = got->dtype == JM_ST_F64 ? ((double *)got->data)[i] : ((float *)got->data)[i];
        double w = want->dtype == JM_ST_F64 ? ((double *)want->data)[i] : ((float *)want->data)[i];
        /* a NaN or infinity on either side fails (fmax would skip a NaN difference) */
        if (!isfinite(g) || !isfinite(w)) { sprintf(why, "element %zu is %g, torch %g", i, g, w); return INFINITY; }
        maxd = fmax(maxd, fabs(g - w));
        maxw = fmax(maxw, fabs(w));
    }
    sprintf(why, "max abs diff %.3g, max |torch| %.3g", maxd, maxw);
    return maxw > 0 ? maxd / maxw : maxd;
}

static void parity(const char *label, const char *graph, const char *defs, const char *ref_args, const char *dtype, double tol,
                   const char *target) {
    char dir[512], cmd[4096], out[8192];
    snprintf(dir, sizeof dir, "%s/%s_%s_%s", tmpdir, label, dtype, target);
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 tests/parity/torch_ref.py %s --dtype %s --seed 3 --out %s", ref_args, dtype, dir);
    int rc = jt_run(cmd, out, sizeof out);
    if (!ok(rc == 0, "%s %s %s: PyTorch reference generated", label, dtype, target)) { tap_diag("%s", out); return; }
    /* every output jemc writes must match PyTorch's tensor of the same name */
    const char *programs[] = { "logits", "energy", "sgld_grad", "jem_loss", "jem_loss_gp" };
    for (int p = 0; p < 5; p++) {
        snprintf(cmd, sizeof cmd, "%s run %s %s %s --target %s --precision %s --state %s/weights.safetensors --in %s/inputs.safetensors --out %s/jemc_%s.safetensors",
                 jt_env("JEMC", "build/jemc"), graph, programs[p], defs, target, strcmp(dtype, "float64") == 0 ? "f64" : "f32",
                 dir, dir, dir, programs[p]);
        rc = jt_run(cmd, out, sizeof out);
        if (!ok(rc == 0, "%s %s %s: jemc run %s", label, dtype, target, programs[p])) { tap_diag("%s\n%s", cmd, out); continue; }
        char path[600], err[512];
        jm_st_file got, want, weights;
        memset(&got, 0, sizeof got);
        memset(&want, 0, sizeof want);
        memset(&weights, 0, sizeof weights);
        snprintf(path, sizeof path, "%s/jemc_%s.safetensors", dir, programs[p]);
        int r1 = jm_st_read(path, &got, err, sizeof err);
        snprintf(path, sizeof path, "%s/expected.safetensors", dir);
        int r2 = r1 == 0 ? jm_st_read(path, &want, err, sizeof err) : -1;
        snprintf(path, sizeof path, "%s/weights.safetensors", dir);
        int r3 = r2 == 0 ? jm_st_read(path, &weights, err, sizeof err) : -1;
        if (!ok(r3 == 0, "%s %s %s %s: result files read", label, dtype, target, programs[p])) { tap_diag("%s", err); continue; }
        double worst = 0;
        char worst_name[128] = "", why[256] = "";
        int missing = 0, grads = 0;
        for (int i = 0; i < got.n; i++) {
            const jm_st_tensor *w = jm_st_find(&want, got.t[i].name);
            if (!w) { missing++; tap_diag("PyTorch has no '%s'", got.t[i].name); continue; }
            grads += strncmp(got.t[i].name, "grad.", 5) == 0;
            char whyi[256];
            double e = max_rel_err(&got.t[i], w, whyi);
            if (e >= worst) { worst = e; snprintf(worst_name, sizeof worst_name, "%s", got.t[i].name); snprintf(why, sizeof why, "%s", whyi); }
        }
        int want_outputs = p == 3 ? 3 + weights.n : p == 4 ? 2 + weights.n : 1;
        for (int i = 0; i < got.n; i++) grads += strncmp(got.t[i].name, "grad_gp.", 8) == 0;
        if (!ok(missing == 0 && got.n == want_outputs && (p < 3 || grads == weights.n),
                "%s %s %s %s: %d outputs, one gradient per parameter", label, dtype, target, programs[p], got.n))
            tap_diag("%d outputs, %d gradients for %d parameters", got.n, grads, weights.n);
        if (!ok(worst <= tol, "%s %s %s %s: every output matches PyTorch (worst rel err %.2g <= %g, %s)", label, dtype,
                target, programs[p], worst, tol, worst_name))
            tap_diag("%s: %s", worst_name, why);
        jm_st_free(&got);
        jm_st_free(&want);
        jm_st_free(&weights);
    }
}

int main(void) {
    char out[4096];
    if (jt_run("/usr/bin/python3 -c 'import torch, numpy'", out, sizeof out) != 0)
        skip_all("Debian's python3-torch is not installed (make deps installs it)");
    snprintf(tmpdir, sizeof tmpdir, "/tmp/jemc_parity_XXXXXX");
    if (!mkdtemp(tmpdir)) skip_all("cannot create a temporary directory");
    /* the interpreter in float64 and float32, and the compiled CPU code (float32) */
    const char *types[] = { "float64", "float32", "float32" };
    const char *targets[] = { "interp", "interp", "cpu" };
    const double tols[] = { 1e-9, 1e-4, 1e-4 };
    for (int t = 0; t < 3; t++) {
        parity("mnist", "graphs/jem_mnist.graph", "-D batch=3", "--model mnist --batch 3", types[t], tols[t], targets[t]);
        parity("wrn28-2", "graphs/jem_wrn28.graph", "-D batch=2 -D widen=2", "--model wrn --depth 28 --widen 2 --batch 2", types[t], tols[t], targets[t]);
        parity("wrn10-1", "graphs/jem_wrn28.graph", "-D batch=2 -D depth=10 -D widen=1 -D classes=5",
               "--model wrn --depth 10 --widen 1 --classes 5 --batch 2", types[t], tols[t], targets[t]);
        parity("mlp", "graphs/mlp_tabular.graph", "-D batch=5", "--model mlp --mlp-in 8 --mlp-hidden 64,64 --classes 2 --batch 5", types[t], tols[t], targets[t]);
    }
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    jt_run(cmd, out, sizeof out);
    return tap_done();
}
