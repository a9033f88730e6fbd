/* t_convert.c — tools/convert_pt.py: checkpoints of the official JEM code into jemc and back.
 *
 * tests/parity/torch_convert.py builds the official CCF (tests/parity/jem_official.py,
 * a faithful copy of wgrathwohl/JEM's Wide_ResNet, F and CCF) as WRN-10-1 with 10
 * classes and random weights, and saves it in the official layout {"model_state_dict",
 * "replay_buffer"} (also as saved from DataParallel, keys "module.*", and in JEM++'s /
 * SADA-JEM's layout, whose Wide_ResNet has no f.linear). Then:
 * 1. convert_pt.py converts it; jem_wrn28 compiled with the printed -D flags runs `exec
 *    logits` and `exec energy` on fixed inputs with the converted file as --state: both
 *    match PyTorch's float64 evaluation of the .pt within 1e-4 of each tensor's largest
 *    value; the replay buffer arrives bit for bit as jemc's `replay`.
 * 2. `eval accuracy --ckpt` on a CIFAR-10 file of 16 images labelled so that PyTorch's
 *    accuracy is 0.5: the same accuracy, and mean loss and energy within 1e-4.
 * 3. The reverse (--to-pt) of a checkpoint jemc wrote (with its Adam state and knobs)
 *    loads into CCF with load_state_dict(strict=True) and gives the same logits, energy
 *    and buffer; with --layout jempp, into JEM++'s CCF.
 * 4. Refused, exit 1, naming the problem: a missing key, a wrong shape, an unknown key,
 *    a batch-norm model, a file that is not a .pt, a --to-pt input that is not safetensors.
 * 5. VERA (tests/parity/vera_official.py, a faithful copy of wgrathwohl/VERA's Wide_ResNet,
 *    JEM and generator classes): a checkpoint as VERA's train.py saves it ({"model":
 *    {"logp_net", "g"}, "optimizer", "scheduler", ...}) converts; exec logits/energy match
 *    JEM(Wide_ResNet) within 1e-4; --to-pt --layout vera loads strictly into VERA's JEM and
 *    gives the same logits; refused naming the key: a --norm batch model, no model.logp_net,
 *    a key of another VERA EBM, and a file whose unpickling would run code (it does not run).
 * Skips (TAP SKIP) when /usr/bin/python3 has no torch. ~10 s on 2 cores. */
#include "tap.h"
#include "helpers.h"
#include "engine/safetensors.h"
#include <math.h>
#include <unistd.h>

static char tmpdir[256];
#define PY "/usr/bin/python3 "
#define DEFS "-D depth=10 -D widen=1 -D batch=8 -D buffer_size=20"

/* max |got - want| / max |want|; a shape difference or NaN is infinite */
static double rel_err(const jm_st_tensor *got, const jm_st_tensor *want, char *why) {
    size_t gs = jm_st_dtype_size(got->dtype), ws = jm_st_dtype_size(want->dtype);
    if (!gs || !ws || got->nbytes / gs != want->nbytes / ws) {
        sprintf(why, "element counts differ");
        return INFINITY;
    }
    size_t n = got->nbytes / gs;
    double maxd = 0, maxw = 0;
    for (size_t i = 0; i < n; i++) {
        double g = jm_st_value(got, (int64_t)i), w = jm_st_value(want, (int64_t)i);
        if (!isfinite(g) || !isfinite(w)) { sprintf(why, "element %zu is %g, torch %g", i, g, w); return INFINITY; }
        maxd = fmax(maxd, fabs(g - w));
        maxw = fmax(maxw, fabs(w));
    }
    sprintf(why, "max abs diff %.3g, scale %.3g", maxd, maxw);
    return maxw > 0 ? maxd / maxw : maxd;
}

/* tensor `gname` of file `got` against `wname` of file `want` */
static void compare(const char *got, const char *gname, const char *want, const char *wname, double tol, const char *what) {
    jm_st_file g, w;
    char err[512], why[256];
    memset(&g, 0, sizeof g);
    memset(&w, 0, sizeof w);
    if (jm_st_read(got, &g, err, sizeof err) != 0 || jm_st_read(want, &w, err, sizeof err) != 0) {
        ok(0, "%s: files read", what);
        tap_diag("%s", err);
        return;
    }
    const jm_st_tensor *a = jm_st_find(&g, gname), *b = jm_st_find(&w, wname);
    if (!ok(a && b, "%s: '%s' and '%s' present", what, gname, wname)) goto done;
    double e = rel_err(a, b, why);
    if (!ok(e <= tol, "%s: %s within %g (%.2g)", what, gname, tol, e)) tap_diag("%s", why);
done:
    jm_st_free(&g);
    jm_st_free(&w);
}

static double json_num(const char *text, const char *key) {
    char k[64];
    snprintf(k, sizeof k, "\"%s\": ", key);
    const char *p = strstr(text, k);
    return p ? strtod(p + strlen(k), NULL) : NAN;
}

static double st_scalar(const char *path, const char *name) {
    jm_st_file f;
    char err[512];
    memset(&f, 0, sizeof f);
    if (jm_st_read(path, &f, err, sizeof err) != 0) return NAN;
    const jm_st_tensor *t = jm_st_find(&f, name);
    double v = t ? jm_st_value(t, 0) : NAN;
    jm_st_free(&f);
    return v;
}

/* forward conversion of `pt`, then the compiled model on the converted file */
static void forward_to(const char *pt, const char *exe, const char *expected, const char *flags, int has_buffer) {
    char cmd[2048], out[8192], conv[512];
    snprintf(conv, sizeof conv, "%s/%s.safetensors", tmpdir, pt);
    snprintf(cmd, sizeof cmd, PY "tools/convert_pt.py %s/%s.pt -o %s", tmpdir, pt, conv);
    int rc = jt_run(cmd, out, sizeof out);
    if (!ok(rc == 0 && strstr(out, flags),
            "%s: converted, the compile flags printed", pt))
        tap_diag("%s\n%s", cmd, out);
    const char *progs[2] = { "logits", "energy" };
    for (int p = 0; p < 2; p++) {
        char res[600], want[600];
        snprintf(res, sizeof res, "%s/%s_%s.safetensors", tmpdir, pt, progs[p]);
        snprintf(want, sizeof want, "%s/%s", tmpdir, expected);
        snprintf(cmd, sizeof cmd, "%s exec %s --state %s --in %s/inputs.safetensors --out %s", exe, progs[p], conv, tmpdir, res);
        if (!ok(jt_run(cmd, out, sizeof out) == 0, "%s: exec %s --state converted", pt, progs[p])) { tap_diag("%s\n%s", cmd, out); continue; }
        char what[128];
        snprintf(what, sizeof what, "%s: exec %s vs PyTorch", pt, progs[p]);
        compare(res, progs[p], want, progs[p], 1e-4, what);
    }
    if (!has_buffer) return;
    char want[600];
    snprintf(want, sizeof want, "%s/%s", tmpdir, expected);
    compare(conv, "replay", want, "replay_buffer", 0, pt);
}

static void forward(const char *pt, const char *exe) {
    forward_to(pt, exe, "expected.safetensors", "-D depth=10 -D widen=1 -D classes=10 -D buffer_size=20", 1);
}

static void refuse(const char *cmd_args, const char *needle, const char *what) {
    char cmd[2048], out[4096];
    snprintf(cmd, sizeof cmd, PY "tools/convert_pt.py %s", cmd_args);
    int rc = jt_run(cmd, out, sizeof out);
    if (!ok(rc == 1 && strstr(out, needle), "refused, exit 1, naming %s: %s", needle, what)) tap_diag("rc %d\n%s", rc, out);
}

int main(void) {
    char out[8192], cmd[2048];
    if (jt_run(PY "-c 'import torch'", out, sizeof out) != 0)
        skip_all("/usr/bin/python3 has no torch (Debian's python3-torch; make deps installs it)");
    snprintf(tmpdir, sizeof tmpdir, "/tmp/jemc_convert_XXXXXX");
    if (!mkdtemp(tmpdir)) skip_all("cannot create a temporary directory");
    snprintf(cmd, sizeof cmd, PY "tests/parity/torch_convert.py make --depth 10 --widen 1 --classes 10 --buffer 20 --batch 8 "
             "--records 16 --out %s", tmpdir);
    if (!ok(jt_run(cmd, out, sizeof out) == 0, "official-layout checkpoints written by the PyTorch reference")) {
        tap_diag("%s", out);
        return tap_done();
    }
    char exe[400];
    snprintf(exe, sizeof exe, "%s/jem_wrn10", tmpdir);
    snprintf(cmd, sizeof cmd, "%s compile graphs/jem_wrn28.graph " DEFS " -o %s", jt_env("JEMC", "build/jemc"), exe);
    if (!ok(jt_run(cmd, out, sizeof out) == 0, "jem_wrn28 compiled as WRN-10-1")) { tap_diag("%s\n%s", cmd, out); return tap_done(); }

    /* 1. plain and DataParallel layouts */
    forward("official", exe);
    forward("official_dp", exe);
    forward("official_jempp", exe);

    /* 2. eval accuracy on a CIFAR-10 file */
    char json[600], exp[600];
    snprintf(json, sizeof json, "%s/eval.json", tmpdir);
    snprintf(exp, sizeof exp, "%s/expected_eval.safetensors", tmpdir);
    snprintf(cmd, sizeof cmd, "%s eval accuracy --ckpt %s/official.safetensors --data %s/test.bin --format cifar10 --json %s",
             exe, tmpdir, tmpdir, json);
    if (ok(jt_run(cmd, out, sizeof out) == 0, "eval accuracy --ckpt converted")) {
        FILE *f = fopen(json, "r");
        char text[4096] = "";
        if (f) { size_t n = fread(text, 1, sizeof text - 1, f); text[n] = 0; fclose(f); }
        is_near(json_num(text, "accuracy"), st_scalar(exp, "accuracy"), 1e-9, "eval accuracy: PyTorch's accuracy (0.5)");
        is_near(json_num(text, "loss"), st_scalar(exp, "loss"), 1e-4, "eval accuracy: mean cross-entropy within 1e-4");
        is_near(json_num(text, "energy"), st_scalar(exp, "energy"), 1e-4, "eval accuracy: mean energy within 1e-4");
    } else {
        tap_diag("%s\n%s", cmd, out);
    }

    /* 3. reverse, from a checkpoint jemc wrote (parameters, replay, Adam state, knobs) */
    snprintf(cmd, sizeof cmd, "%s exec logits --state %s/official.safetensors --in %s/inputs.safetensors --state-out %s/jemc_ckpt.safetensors",
             exe, tmpdir, tmpdir, tmpdir);
    ok(jt_run(cmd, out, sizeof out) == 0, "a jemc checkpoint written by exec --state-out");
    snprintf(cmd, sizeof cmd, PY "tools/convert_pt.py --to-pt %s/jemc_ckpt.safetensors -o %s/back.pt && " PY
             "tests/parity/torch_convert.py back --pt %s/back.pt --out %s/back.safetensors", tmpdir, tmpdir, tmpdir, tmpdir);
    if (ok(jt_run(cmd, out, sizeof out) == 0, "--to-pt: CCF.load_state_dict(strict=True) takes it")) {
        char back[600], want[600];
        snprintf(back, sizeof back, "%s/back.safetensors", tmpdir);
        snprintf(want, sizeof want, "%s/expected.safetensors", tmpdir);
        compare(back, "logits", want, "logits", 0, "--to-pt");
        compare(back, "energy", want, "energy", 0, "--to-pt");
        compare(back, "replay_buffer", want, "replay_buffer", 0, "--to-pt");
    } else {
        tap_diag("%s\n%s", cmd, out);
    }
    snprintf(cmd, sizeof cmd, PY "tools/convert_pt.py --to-pt --layout jempp %s/jemc_ckpt.safetensors -o %s/back_pp.pt && " PY
             "tests/parity/torch_convert.py back --layout jempp --pt %s/back_pp.pt --out %s/back_pp.safetensors", tmpdir, tmpdir, tmpdir, tmpdir);
    if (ok(jt_run(cmd, out, sizeof out) == 0, "--to-pt --layout jempp: JEM++'s CCF.load_state_dict(strict=True) takes it")) {
        char back[600], want[600];
        snprintf(back, sizeof back, "%s/back_pp.safetensors", tmpdir);
        snprintf(want, sizeof want, "%s/expected.safetensors", tmpdir);
        compare(back, "logits", want, "logits", 0, "--to-pt --layout jempp");
    } else {
        tap_diag("%s\n%s", cmd, out);
    }

    /* 5. VERA: forward, reverse, refusals */
    forward_to("vera", exe, "expected_vera.safetensors", "-D depth=10 -D widen=1 -D classes=10 -o", 0);
    snprintf(cmd, sizeof cmd, PY "tools/convert_pt.py --to-pt --layout vera %s/vera.safetensors -o %s/back_vera.pt && " PY
             "tests/parity/torch_convert.py back --layout vera --pt %s/back_vera.pt --out %s/back_vera.safetensors",
             tmpdir, tmpdir, tmpdir, tmpdir);
    if (ok(jt_run(cmd, out, sizeof out) == 0, "--to-pt --layout vera: VERA's JEM.load_state_dict(strict=True) takes it")) {
        char back[600], want[600];
        snprintf(back, sizeof back, "%s/back_vera.safetensors", tmpdir);
        snprintf(want, sizeof want, "%s/expected_vera.safetensors", tmpdir);
        compare(back, "logits", want, "logits", 0, "--to-pt --layout vera");
        compare(back, "energy", want, "energy", 0, "--to-pt --layout vera");
    } else {
        tap_diag("%s\n%s", cmd, out);
    }
    char va[1024];
    snprintf(va, sizeof va, "%s/bad_vera_norm.pt -o %s/x.safetensors", tmpdir, tmpdir);
    refuse(va, "'logp_net.layer1.0.bn1.weight' is a normalisation layer", "a VERA --norm batch model");
    snprintf(va, sizeof va, "%s/bad_vera_nologp.pt -o %s/x.safetensors", tmpdir, tmpdir);
    refuse(va, "no 'model.logp_net'", "a VERA checkpoint without its EBM");
    snprintf(va, sizeof va, "%s/bad_vera_key.pt -o %s/x.safetensors", tmpdir, tmpdir);
    refuse(va, "'logp_net.output_linear.weight' is not a key of VERA's Wide_ResNet", "a VERA key of another EBM");
    snprintf(va, sizeof va, "%s/bad_vera_code.pt -o %s/x.safetensors", tmpdir, tmpdir);
    refuse(va, "it would build posix.system", "a VERA file whose unpickling would run code");
    snprintf(va, sizeof va, "%s/pwned", tmpdir);
    ok(access(va, F_OK) != 0, "that code did not run (no %s)", va);

    /* 4. what cannot be converted */
    char a[1024];
    snprintf(a, sizeof a, "%s/bad_missing.pt -o %s/x.safetensors", tmpdir, tmpdir);
    refuse(a, "missing key 'f.layer2.0.conv2.bias'", "a missing key");
    snprintf(a, sizeof a, "%s/bad_shape.pt -o %s/x.safetensors", tmpdir, tmpdir);
    refuse(a, "'f.layer1.0.conv2.weight' has shape [16, 16, 5, 5]", "a wrong shape");
    snprintf(a, sizeof a, "%s/bad_key.pt -o %s/x.safetensors", tmpdir, tmpdir);
    refuse(a, "'f.layer3.0.extra.weight' has no place", "an unknown key");
    snprintf(a, sizeof a, "%s/bad_norm.pt -o %s/x.safetensors", tmpdir, tmpdir);
    refuse(a, "'f.layer1.0.bn1.weight' is a normalisation layer", "a --norm batch model");
    snprintf(a, sizeof a, "%s/not_a_pt.pt -o %s/x.safetensors", tmpdir, tmpdir);
    refuse(a, "not a PyTorch .pt file", "a text file");
    snprintf(a, sizeof a, "--to-pt %s/not_a_pt.pt -o %s/x.pt", tmpdir, tmpdir);
    refuse(a, "not a safetensors file", "--to-pt of a text file");

    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    jt_run(cmd, out, sizeof out);
    return tap_done();
}
