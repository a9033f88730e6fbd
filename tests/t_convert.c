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
 *    a file that is not a .pt, a --to-pt input that is not safetensors.
 * 5. VERA (tests/parity/vera_official.py, a faithful copy of wgrathwohl/VERA's Wide_ResNet,
 *    JEM and generator classes): a checkpoint as VERA's train.py saves it ({"model":
 *    {"logp_net", "g"}, "optimizer", "scheduler", ...}) converts; exec logits/energy match
 *    JEM(Wide_ResNet) within 1e-4; --to-pt --layout vera loads strictly into VERA's JEM and
 *    gives the same logits; refused naming the key: a --norm batch model, no model.logp_net,
 *    a key of another VERA EBM, and a file whose unpickling would run code (it does not run).
 * 6. VERA's generator too (vera_generator below): vera_wrn28 takes both networks; exec
 *    generate's mean matches ResNetGenerator in both batch-norm modes within 1e-4; the reverse
 *    writes model.g, which VERAGenerator loads strictly; a generator key missing is refused.
 * 7. --norm batch checkpoints of JEM, JEM++ and SADA-JEM (batch_norm below) into jem_wrn28
 *    -D norm=1 and back.
 * The reverse checks (3, 5, 6, 7) share reverse(). Seen red: with to_jemc_name swapping
 * layer1.0's bn1 and bn2 running_mean (the same shape at WRN-10-1), 12 points went red: every
 * batch-norm exec logits (0.5 to 1.5 of the largest logit) and energy (0.006 to 0.02) compare
 * and every reverse's logits and energy.
 * Skips (TAP SKIP) when /usr/bin/python3 has no torch. ~35 s on 2 cores (three compiles) plus
 * ~25 s of CPU for 7 (Python runs, a -O0 compile). */
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

/* forward conversion of `pt`, then the compiled model on the converted file; exe NULL:
 * the graph cannot take it yet, the exec points are skipped with `why` */
static void forward_to(const char *pt, const char *tag, const char *conv_args, const char *exe, const char *expected,
                       const char *flags, int has_buffer, const char *why) {
    char cmd[2048], out[8192], conv[512];
    snprintf(conv, sizeof conv, "%s/%s.safetensors", tmpdir, tag);
    snprintf(cmd, sizeof cmd, PY "tools/convert_pt.py %s %s/%s.pt -o %s", conv_args, tmpdir, pt, conv);
    int rc = jt_run(cmd, out, sizeof out);
    if (!ok(rc == 0 && strstr(out, flags),
            "%s: converted, the compile flags printed", pt))
        tap_diag("%s\n%s", cmd, out);
    const char *progs[2] = { "logits", "energy" };
    for (int p = 0; p < 2 && !exe; p++) skip(3, why);
    for (int p = 0; p < 2 && exe; p++) {
        char res[600], want[600];
        snprintf(res, sizeof res, "%s/%s_%s.safetensors", tmpdir, tag, progs[p]);
        snprintf(want, sizeof want, "%s/%s", tmpdir, expected);
        snprintf(cmd, sizeof cmd, "%s exec %s --state %s --in %s/inputs.safetensors --out %s", exe, progs[p], conv, tmpdir, res);
        if (!ok(jt_run(cmd, out, sizeof out) == 0, "%s: exec %s --state converted", tag, progs[p])) { tap_diag("%s\n%s", cmd, out); continue; }
        char what[128];
        snprintf(what, sizeof what, "%s: exec %s vs PyTorch", tag, progs[p]);
        compare(res, progs[p], want, progs[p], 1e-4, what);
    }
    if (!has_buffer) return;
    char want[600];
    snprintf(want, sizeof want, "%s/%s", tmpdir, expected);
    compare(conv, "replay", want, "replay_buffer", 0, pt);
}

static void forward(const char *pt, const char *exe) {
    forward_to(pt, pt, "", exe, "expected.safetensors", "-D depth=10 -D widen=1 -D classes=10 -D buffer_size=20", 1, NULL);
}

/* --to-pt --layout `layout` of jemc checkpoint `src`, then `loader` (a PyTorch script that loads
 * the .pt into the official class with load_state_dict(strict=True) and writes its outputs,
 * given --pt and --out); each of `names` bit for bit against the same tensor of `want` */
static void reverse(const char *src, const char *layout, const char *loader, const char *tag, const char *want,
                    const char *const *names, int n, const char *what) {
    char cmd[2048], out[8192], back[600], exp[600];
    snprintf(back, sizeof back, "%s/%s.safetensors", tmpdir, tag);
    snprintf(exp, sizeof exp, "%s/%s", tmpdir, want);
    snprintf(cmd, sizeof cmd, PY "tools/convert_pt.py --to-pt --layout %s %s/%s -o %s/%s.pt && " PY "%s --pt %s/%s.pt --out %s",
             layout, tmpdir, src, tmpdir, tag, loader, tmpdir, tag, back);
    if (!ok(jt_run(cmd, out, sizeof out) == 0, "%s: the official class loads it with strict=True", what)) {
        tap_diag("%s\n%s", cmd, out);
        return;
    }
    for (int i = 0; i < n; i++) compare(back, names[i], exp, names[i], 0, what);
}

/* `eval accuracy --ckpt CKPT` on the 16-image CIFAR-10 file against PyTorch's
   evaluation in EXPECTED (its accuracy exactly, mean cross-entropy and energy
   within 1e-4); `prefix` starts every point's name, `acc_what` names the accuracy */
static void eval_accuracy(const char *exe, const char *ckpt, const char *expected, const char *prefix, const char *acc_what) {
    char json[600], exp[600], cmd[2048], out[8192];
    snprintf(json, sizeof json, "%s/%seval.json", tmpdir, *prefix ? "bn_" : "");
    snprintf(exp, sizeof exp, "%s/%s", tmpdir, expected);
    snprintf(cmd, sizeof cmd, "%s eval accuracy --ckpt %s/%s --data %s/test.bin --format cifar10 --json %s",
             exe, tmpdir, ckpt, tmpdir, json);
    if (!ok(jt_run(cmd, out, sizeof out) == 0, "%seval accuracy --ckpt converted", prefix)) {
        tap_diag("%s\n%s", cmd, out);
        return;
    }
    FILE *f = fopen(json, "r");
    char text[4096] = "";
    if (f) { size_t n = fread(text, 1, sizeof text - 1, f); text[n] = 0; fclose(f); }
    char what[300];
    snprintf(what, sizeof what, "%seval accuracy: %s", prefix, acc_what);
    is_near(json_num(text, "accuracy"), st_scalar(exp, "accuracy"), 1e-9, what);
    snprintf(what, sizeof what, "%seval accuracy: mean cross-entropy within 1e-4", prefix);
    is_near(json_num(text, "loss"), st_scalar(exp, "loss"), 1e-4, what);
    snprintf(what, sizeof what, "%seval accuracy: mean energy within 1e-4", prefix);
    is_near(json_num(text, "energy"), st_scalar(exp, "energy"), 1e-4, what);
}

/* 6. VERA with its generator: vera_wrn28 compiled with the printed flags (g_feats 16, batch 8)
 * takes both networks; exec logits/energy as in 5; exec generate's `mean` on fixed latent rows
 * h against VERA's ResNetGenerator in float64: with the graph's sample_mode (gen_batch, batch
 * statistics: VERA never puts its generator in eval mode when sampling) against train() mode,
 * and compiled with -D sample_mode=0 (gen_eval, running statistics) against eval() mode, which
 * reads the converted running_mean/running_var. The reverse of the checkpoint jemc wrote
 * loads into VERA's JEM and VERAGenerator with strict=True and gives the same outputs, logsigma
 * and post_logsigma, bit for bit. */
static void vera_generator(void) {
    const char *flags = "-D depth=10 -D widen=1 -D classes=10 -D g_feats=16 -D noise_dim=128";
    char cmd[2048], out[8192], vexe[2][400];
    const char *modes[2] = { "", " -D sample_mode=0" }, *want[2] = { "mean_batch", "mean_eval" };
    for (int m = 0; m < 2; m++) {
        snprintf(vexe[m], sizeof vexe[m], "%s/vera_wrn10_g%d", tmpdir, m);
        snprintf(cmd, sizeof cmd, "%s compile graphs/vera_wrn28.graph %s -D batch=8%s -o %s", jt_env("JEMC", "build/jemc"),
                 flags, modes[m], vexe[m]);
        if (!ok(jt_run(cmd, out, sizeof out) == 0, "vera_wrn28 compiled with the printed flags%s", modes[m])) {
            tap_diag("%s\n%s", cmd, out);
            return;
        }
    }
    char fl[256];
    snprintf(fl, sizeof fl, "compile graphs/vera_wrn28.graph %s -o", flags);
    forward_to("vera", "vera_g", "", vexe[0], "expected_vera.safetensors", fl, 0, NULL);
    for (int m = 0; m < 2; m++) {
        char res[600], exp[600], what[160];
        snprintf(res, sizeof res, "%s/gen_%d.safetensors", tmpdir, m);
        snprintf(exp, sizeof exp, "%s/expected_vera.safetensors", tmpdir);
        char so[400] = "";
        if (!m) snprintf(so, sizeof so, " --state-out %s/vera_g_ckpt.safetensors", tmpdir);   /* gen_batch writes no state */
        char gcmd[4096];
        snprintf(gcmd, sizeof gcmd, "%s exec generate --state %s/vera_g.safetensors --in %s/gen_inputs.safetensors --out %s%s",
                 vexe[m], tmpdir, tmpdir, res, so);
        if (!ok(jt_run(gcmd, out, sizeof out) == 0, "vera_g: exec generate --state converted%s", modes[m])) {
            tap_diag("%s\n%s", gcmd, out);
            continue;
        }
        snprintf(what, sizeof what, "vera_g: exec generate%s vs ResNetGenerator %s", modes[m], m ? "eval()" : "train()");
        compare(res, "mean", exp, want[m], 1e-4, what);
    }
    const char *names[6] = { "logits", "energy", "mean_batch", "mean_eval", "logsigma", "post_logsigma" };
    reverse("vera_g_ckpt.safetensors", "vera", "tests/parity/torch_convert.py back --layout vera --g-feats 16", "back_vera_g",
            "expected_vera.safetensors", names, 6, "--to-pt --layout vera with model.g (JEM and VERAGenerator)");
}

static void refuse(const char *cmd_args, const char *needle, const char *what) {
    char cmd[2048], out[4096];
    snprintf(cmd, sizeof cmd, PY "tools/convert_pt.py %s", cmd_args);
    int rc = jt_run(cmd, out, sizeof out);
    if (!ok(rc == 1 && strstr(out, needle), "refused, exit 1, naming %s: %s", needle, what)) tap_diag("rc %d\n%s", rc, out);
}

/* 7. --norm batch (JEM++'s and SADA-JEM's recipes): tests/parity/jem_official.py make-bn writes a
 * CCF(norm="batch") with trained-looking running statistics in JEM's layout, JEM++'s (no
 * f.linear) and SADA-JEM's saved from DataParallel ("module.*"). Each converts, printing
 * -D norm=1; jem_wrn28 -D norm=1 runs exec logits / energy on the converted file, compared with
 * the class's eval() (running statistics) in float64 within 1e-4; the buffer arrives bit for
 * bit; JEM's `eval accuracy --ckpt` on test.bin gives eval()'s accuracy, mean loss and energy. The reverse of the converted file loads strict into the class with norm="batch" and
 * gives the same logits, energy, buffer and every num_batches_tracked bit for bit (JEM++'s
 * and SADA-JEM's); JEM's is the reverse of the checkpoint jemc writes (exec --state-out, its
 * SGD states left out), or of the converted file while jemc lacks -D norm=1. Refused: an
 * instance-norm and an act-norm model, a batch norm without its running_var, and --to-pt
 * --layout vera of a batch-norm checkpoint (VERA's layer1.0 skips bn1). The exec points are
 * skipped while graphs/lib/wrn.graph has no config constant `norm`. The executable is
 * compiled at -O0 (0.6 s instead of 9 s; what is tested is the mapping of names, and the
 * kernels' numerics are the same code at any level). */
static void batch_norm(void) {
    char cmd[2048], out[8192], exe[400], loader[2][600];
    snprintf(cmd, sizeof cmd, PY "tests/parity/jem_official.py make-bn --depth 10 --widen 1 --classes 10 --buffer 20 "
             "--inputs %s/inputs.safetensors --test %s/test.bin --out %s", tmpdir, tmpdir, tmpdir);
    if (!ok(jt_run(cmd, out, sizeof out) == 0, "--norm batch checkpoints written by jem_official.py make-bn")) {
        tap_diag("%s\n%s", cmd, out);
        return;
    }
    snprintf(exe, sizeof exe, "%s/jem_wrn10_bn", tmpdir);
    snprintf(cmd, sizeof cmd, "%s compile graphs/jem_wrn28.graph " DEFS " -D norm=1 -O0 -o %s", jt_env("JEMC", "build/jemc"), exe);
    int rc = jt_run(cmd, out, sizeof out);
    const char *why = "jem_wrn28 has no -D norm=1 yet (batch norm in graphs/lib/wrn.graph)";
    int have = rc == 0;
    if (strstr(out, "no config constant named 'norm'")) skip(1, why);
    else if (!ok(have, "jem_wrn28 compiled as WRN-10-1 with -D norm=1")) tap_diag("%s\n%s", cmd, out);
    for (int i = 0; i < 2; i++)
        snprintf(loader[i], sizeof loader[i], "tests/parity/jem_official.py back-bn --layout %s --inputs %s/inputs.safetensors",
                 i ? "jempp" : "jem", tmpdir);
    const char *layouts[3] = { "jem", "jempp", "sada" };
    const char *names[4] = { "logits", "energy", "num_batches_tracked", "replay_buffer" };
    for (int l = 0; l < 3; l++) {
        char pt[64], exp[96], src[96], tag[96], what[192];
        snprintf(pt, sizeof pt, "bn_%s", layouts[l]);
        snprintf(exp, sizeof exp, "bn_expected_%s.safetensors", layouts[l]);
        forward_to(pt, pt, "", have ? exe : NULL, exp, "-D depth=10 -D widen=1 -D classes=10 -D norm=1 -D buffer_size=20", 1, why);
        if (!l && have) continue;       /* JEM's: from the checkpoint jemc writes, below */
        snprintf(src, sizeof src, "%s.safetensors", pt);
        snprintf(tag, sizeof tag, "bn_back_%s", layouts[l]);
        snprintf(what, sizeof what, "--to-pt --layout %s of converted %s", l ? "jempp" : "jem", pt);
        reverse(src, l ? "jempp" : "jem", loader[l ? 1 : 0], tag, exp, names, 4, what);
    }
    if (have) {         /* eval accuracy --ckpt: the evaluate program, in eval mode too */
        eval_accuracy(exe, "bn_jem.safetensors", "bn_expected_eval.safetensors", "bn_jem: ", "PyTorch eval()'s accuracy");
        snprintf(cmd, sizeof cmd, "%s exec logits --state %s/bn_jem.safetensors --in %s/inputs.safetensors "
                 "--state-out %s/bn_jemc_ckpt.safetensors", exe, tmpdir, tmpdir, tmpdir);
        if (ok(jt_run(cmd, out, sizeof out) == 0, "a -D norm=1 checkpoint written by exec --state-out"))
            reverse("bn_jemc_ckpt.safetensors", "jem", loader[0], "bn_back_jemc", "bn_expected_jem.safetensors", names, 4,
                    "--to-pt of jemc's -D norm=1 checkpoint");
        else
            tap_diag("%s\n%s", cmd, out);
    } else {
        skip(5, why);
    }
    char a[1024];
    snprintf(a, sizeof a, "%s/bn_bad_instance.pt -o %s/x.safetensors", tmpdir, tmpdir);
    refuse(a, "'f.layer1.0.bn1.weight' is a normalisation layer without running statistics", "a --norm instance model");
    snprintf(a, sizeof a, "%s/bn_bad_act.pt -o %s/x.safetensors", tmpdir, tmpdir);
    refuse(a, "'f.layer1.0.bn1.loc' is an ActNorm tensor", "a --norm act model");
    snprintf(a, sizeof a, "%s/bn_bad_missing.pt -o %s/x.safetensors", tmpdir, tmpdir);
    refuse(a, "missing key 'f.layer2.0.bn2.running_var'", "a batch norm without its running variance");
    snprintf(a, sizeof a, "--to-pt --layout vera %s/bn_jem.safetensors -o %s/x.pt", tmpdir, tmpdir);
    refuse(a, "VERA's Wide_ResNet skips layer1.0's bn1", "--to-pt --layout vera of a batch-norm checkpoint");
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
    eval_accuracy(exe, "official.safetensors", "expected_eval.safetensors", "", "PyTorch's accuracy (0.5)");

    /* 3. reverse, from a checkpoint jemc wrote (parameters, replay, Adam state, knobs) */
    snprintf(cmd, sizeof cmd, "%s exec logits --state %s/official.safetensors --in %s/inputs.safetensors --state-out %s/jemc_ckpt.safetensors",
             exe, tmpdir, tmpdir, tmpdir);
    ok(jt_run(cmd, out, sizeof out) == 0, "a jemc checkpoint written by exec --state-out");
    const char *three[3] = { "logits", "energy", "replay_buffer" };
    reverse("jemc_ckpt.safetensors", "jem", "tests/parity/torch_convert.py back --layout jem", "back", "expected.safetensors",
            three, 3, "--to-pt (CCF)");
    reverse("jemc_ckpt.safetensors", "jempp", "tests/parity/torch_convert.py back --layout jempp", "back_pp",
            "expected.safetensors", three, 1, "--to-pt --layout jempp (JEM++'s CCF)");

    /* 5. VERA: forward, reverse, refusals; --ebm-only: the EBM alone, for jem_wrn28 */
    forward_to("vera", "vera", "--ebm-only", exe, "expected_vera.safetensors", "-D depth=10 -D widen=1 -D classes=10 -o", 0, NULL);
    reverse("vera.safetensors", "vera", "tests/parity/torch_convert.py back --layout vera", "back_vera",
            "expected_vera.safetensors", three, 2, "--to-pt --layout vera (VERA's JEM)");
    vera_generator();
    char va[1024];
    snprintf(va, sizeof va, "%s/bad_vera_gmissing.pt -o %s/x.safetensors", tmpdir, tmpdir);
    refuse(va, "missing key 'model.g.g.output_bn.running_var'", "a VERA generator without a running variance");
    snprintf(va, sizeof va, "%s/bad_vera_norm.pt -o %s/x.safetensors", tmpdir, tmpdir);
    refuse(va, "'logp_net.layer1.0.bn1.weight' is a normalisation layer (VERA trained with --norm): VERA's layer1.0 skips",
           "a VERA --norm batch model");
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
    snprintf(a, sizeof a, "%s/not_a_pt.pt -o %s/x.safetensors", tmpdir, tmpdir);
    refuse(a, "not a PyTorch .pt file", "a text file");
    snprintf(a, sizeof a, "--to-pt %s/not_a_pt.pt -o %s/x.pt", tmpdir, tmpdir);
    refuse(a, "not a safetensors file", "--to-pt of a text file");

    batch_norm();

    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    jt_run(cmd, out, sizeof out);
    return tap_done();
}
