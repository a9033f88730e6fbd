/* t_gpu_bundle.c — the GPU machine's run plan, rehearsed here without a GPU.
 *
 *   1. bench/gpu/st_compare (the comparison that runs on the GPU machine, built
 *      without LLVM) applies tests/compare_rule.h: each tensor at its own scale,
 *      ill-conditioned tensors at 2e-2, the change of a state tensor (a GPU that
 *      drops a state write fails), missing tensors, the random-number position.
 *   2. bench/gpu/prepare.sh --small-only builds the bundle of t_cuda's small
 *      configurations with CPU references; nothing carried links libLLVM, and
 *      the host code is for x86-64-v3.
 *   3. bench/gpu/check.sh runs its probes and every program (eager, then CUDA
 *      graphs over three runs) against tests/fake_cuda.c, the CPU stand-in for
 *      the driver, cuBLAS and cuDNN (the executables are linked with -rdynamic
 *      so that it finds their CPU kernels): every check passes.
 *   4. One float changed in a reference file makes check.sh report FAIL naming
 *      that tensor and element, and only the checks that read it fail. */
#include "tap.h"
#include "helpers.h"
#include "gpu_target.h"
#include "engine/safetensors.h"
#include <sys/stat.h>
#include <unistd.h>

static const char *jemc, *build;
static char dir[256], out[1 << 17];

static int sh(const char *fmt, ...) {
    char cmd[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    return jt_run(cmd, out, sizeof out);
}

static int count(const char *hay, const char *needle) {
    int n = 0;
    for (const char *p = hay; (p = strstr(p, needle)); p += strlen(needle)) n++;
    return n;
}

/* writes a file of float32 vectors: names[i] holds vals[i][0..lens[i]) */
static void write_f32(const char *path, int n, const char *const *names, const float *const *vals, const int *lens, const char *rng) {
    jm_st_file f;
    memset(&f, 0, sizeof f);
    jm_st_tensor t[8];
    memset(t, 0, sizeof t);
    for (int i = 0; i < n; i++) {
        t[i].name = (char *)names[i];
        t[i].dtype = JM_ST_F32;
        t[i].rank = 1;
        t[i].shape[0] = lens[i];
        t[i].nbytes = (size_t)lens[i] * 4;
        t[i].data = (void *)vals[i];
    }
    jm_st_meta m = { "jemc.rng_call", (char *)rng };
    f.n = n;
    f.t = t;
    f.nmeta = rng ? 1 : 0;
    f.meta = &m;
    char err[512];
    if (jm_st_write(path, &f, err, sizeof err) != 0) tap_diag("%s", err);
}

static void st_compare_rule(void) {
    char cmp[600], p[6][400];
    snprintf(cmp, sizeof cmp, "%s/st_compare", build);
    if (!ok(access(cmp, X_OK) == 0, "st_compare is built (%s)", cmp)) { skip(6, "no st_compare"); return; }
    const char *names[] = { "a", "grad.b" };
    float a[] = { 1, 2, 3, 4 }, b[] = { 1, 1 }, a_off[] = { 1, 2, 3.01f, 4 }, b_ill[] = { 1, 1.01f }, a_moved[] = { 1.0001f, 2, 3, 4 };
    const int lens[] = { 4, 2 };
    for (int i = 0; i < 6; i++) snprintf(p[i], sizeof p[i], "%s/c%d.safetensors", dir, i);
    write_f32(p[0], 2, names, (const float *[]){ a, b }, lens, "7");          /* want */
    write_f32(p[1], 2, names, (const float *[]){ a_off, b }, lens, "7");      /* a[2] off by 2.5e-3 of a's scale */
    write_f32(p[2], 2, names, (const float *[]){ a, b_ill }, lens, "7");      /* grad.b off by 1e-2: ill-conditioned */
    write_f32(p[3], 2, names, (const float *[]){ a_moved, b }, lens, "7");    /* a moved by the run (want after) */
    write_f32(p[4], 1, names, (const float *[]){ a }, lens, "7");             /* grad.b missing */
    write_f32(p[5], 2, names, (const float *[]){ a, b }, lens, "8");          /* another random-number position */
    int rc = sh("%s %s %s", cmp, p[0], p[0]);
    ok(rc == 0 && strstr(out, "PASS (2 tensors)"), "st_compare: a file against itself passes");
    rc = sh("%s %s %s", cmp, p[1], p[0]);
    if (!ok(rc == 1 && strstr(out, "FAIL (1 of 2 tensors off): value 0.0025 > 0.001 in a[2] (got 3.00999999, want 3)"),
            "st_compare: an element 2.5e-3 off at its tensor's scale fails, naming tensor, element, got and want"))
        tap_diag("%s", out);
    rc = sh("%s %s %s", cmp, p[2], p[0]);
    ok(rc == 0 && strstr(out, "value 0.01 <= 0.02 in grad.b[1]"), "st_compare: a gradient 1e-2 off is within the ill-conditioned bound 2e-2");
    /* the run moved a[0] by 1e-4 (2.5e-5 of its scale); a GPU that kept the old value is within
       the value bound but not the change bound */
    rc = sh("%s --before %s %s %s", cmp, p[0], p[0], p[3]);
    if (!ok(rc == 1 && strstr(out, "> 0.5 in a[0] (got 0, want 0.0001"), "st_compare --before: a state tensor the GPU left unchanged fails its change"))
        tap_diag("%s", out);
    rc = sh("%s %s %s", cmp, p[4], p[0]);
    ok(rc == 1 && strstr(out, "grad.b: missing from"), "st_compare: a missing tensor fails, named");
    int r1 = sh("%s %s %s", cmp, p[5], p[0]);
    int has = strstr(out, "metadata jemc.rng_call: got 8, want 7") != NULL;
    int r2 = sh("%s --no-meta %s %s", cmp, p[5], p[0]);
    ok(r1 == 1 && has && r2 == 0, "st_compare: the random-number position must match (--no-meta: not compared)");
}

/* adds 1% of the tensor's largest magnitude to element k of a float32 tensor of a file */
static int plant(const char *path, const char *name, int64_t k) {
    jm_st_file f;
    char err[512];
    if (jm_st_read(path, &f, err, sizeof err) != 0) { tap_diag("%s", err); return -1; }
    jm_st_tensor *t = NULL;
    for (int i = 0; i < f.n; i++) if (strcmp(f.t[i].name, name) == 0) t = &f.t[i];
    int rc = -1;
    if (t && t->dtype == JM_ST_F32 && (int64_t)(t->nbytes / 4) > k) {
        float *v = t->data, s = 0;
        for (size_t i = 0; i < t->nbytes / 4; i++) s = fmaxf(s, fabsf(v[i]));
        v[k] += 0.01f * s;
        rc = jm_st_write(path, &f, err, sizeof err);
    }
    jm_st_free(&f);
    return rc;
}

/* the lines of the summary that start with `prefix` */
static int lines_with(const char *text, const char *prefix) {
    int n = 0;
    for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
        if (strncmp(p, prefix, strlen(prefix)) == 0) n++;
    return n;
}

static void rehearsal(void) {
    char fake[600], cc[400], bundle[400];
    snprintf(fake, sizeof fake, "%s/tests/libfakecuda.so", build);
    if (access(fake, R_OK) != 0) { skip(10, "the CPU stand-in for CUDA (libfakecuda.so) is not built"); return; }
    snprintf(cc, sizeof cc, "%s/cc-rdynamic", dir);
    FILE *f = fopen(cc, "w");
    if (f) { fprintf(f, "#!/bin/sh\nexec cc -rdynamic \"$@\"\n"); fclose(f); }
    chmod(cc, 0755);
    snprintf(bundle, sizeof bundle, "%s/gpu-bench", dir);
    /* PTX only (JEMC_PTXAS empty): the stand-in reads PTX, not cubins, and ptxas is slow */
    int rc = sh("JEMC=%s JEMC_PTXAS= JEMC_CC=%s bench/gpu/prepare.sh --small-only --out %s", jemc, cc, bundle);
    if (!ok(rc == 0 && strstr(out, "carry ") && strstr(out, ".tar.gz"), "prepare.sh --small-only builds the bundle and its tarball")) {
        tap_diag("%s", out);
        skip(9, "no bundle");
        return;
    }
    tap_diag("%s", strstr(out, "prepare.sh: ") ? strstr(out, "prepare.sh: ") : out);
    /* every executable or library carried: ldd must not name libLLVM (jemc itself does: the check sees it) */
    rc = sh("n=0; for f in $(find %s -type f \\( -perm -u+x -o -name '*.so*' \\)); do n=$((n+1)); "
            "ldd \"$f\" 2>/dev/null | grep -q libLLVM && echo \"LLVM: $f\"; done; echo \"checked $n\"", bundle);
    int checked = 0;
    const char *c = strstr(out, "checked ");
    if (c) checked = atoi(c + 8);
    int llvm = strstr(out, "LLVM: ") != NULL;
    if (llvm) tap_diag("%s", out);
    int jemc_llvm = sh("ldd %s | grep -c libLLVM", jemc) == 0 && atoi(out) > 0;
    ok(checked >= 5 && !llvm && jemc_llvm, "no carried file links libLLVM (%d executables and libraries; jemc itself does, and ldd shows it)", checked);
    rc = sh("for e in %s/small/*/jem; do $e --version; done", bundle);
    ok(rc == 0 && count(out, "CPU x86-64-v3 (") == 4 && count(out, "GPU sm_90") == 4, "the four executables' host code is for x86-64-v3, their GPU code sm_90");
    /* the manifest says how many checks there are: eager runs, plus one graphs check per program */
    char path[600];
    snprintf(path, sizeof path, "%s/small/MANIFEST", bundle);
    FILE *mf = fopen(path, "r");
    int nprog = 0, nruns = 0;
    char cfg[64], prog[64], st[16], o3[16];
    int runs;
    while (mf && fscanf(mf, "%63s %63s %d %15s %15s", cfg, prog, &runs, st, o3) == 5) { nprog++; nruns += runs; }
    if (mf) fclose(mf);
    ok(nprog == 60 && nruns == 63, "the manifest lists the 60 programs of the four graphs (%d), %d eager runs (train_step and train_step_vera twice)", nprog, nruns);

    char env[2000];
    snprintf(env, sizeof env, "JEMC_LIBCUDA=%s JEMC_LIBCUBLAS=%s JEMC_LIBCUDNN=%s", fake, fake, fake);
    /* no deadline: check.sh's 480 s fits a device call, not the stand-in under
       ASan on 2 slow cores (an AVX2 EPYC reached it at 47 of the 60 graphs checks) */
    rc = sh("%s bench/gpu/check.sh -b %s.tar.gz --skip sanitizer --deadline 100000 %s/log", env, bundle, dir);
    static char summary[1 << 17];
    snprintf(path, sizeof path, "%s/log/summary.txt", dir);
    FILE *sf = fopen(path, "r");
    size_t got = sf ? fread(summary, 1, sizeof summary - 1, sf) : 0;
    summary[got] = 0;
    if (sf) fclose(sf);
    int eager = lines_with(summary, "PASS eager "), graphs = lines_with(summary, "PASS graphs "), fails = lines_with(summary, "FAIL ");
    if (!ok(rc == 0 && fails == 0 && eager == nruns && graphs == nprog,
            "check.sh on the CPU stand-in: every program's outputs and state match the CPU references, eager (%d of %d) and with graphs (%d of %d)",
            eager, nruns, graphs, nprog))
        tap_diag("%s", out);
    ok(lines_with(summary, "PASS probe.libraries: libcuda ") && lines_with(summary, "PASS probe.ldd: 5 executables") &&
       lines_with(summary, "PASS probe.cpu: 4 executables") && lines_with(summary, "PASS probe.gpu: jem_mnist/logits ran on jemc fake GPU"),
       "the probes pass: libraries, ldd, the CPU, one program on the (stand-in) GPU");
    ok(lines_with(summary, "SKIP sanitizer: --skip") && lines_with(summary, "SKIP timing: no benchmark executables") &&
       strstr(summary, "check.sh: ") && strstr(out, "check.sh: "), "the skipped steps say why; the summary file holds what was printed");
    snprintf(path, sizeof path, "%s/log/eager/jem_mnist/train_step.run1.log", dir);
    ok(access(path, R_OK) == 0, "each run's log is under LOGDIR");

    /* one float wrong in two references: only the checks that read them fail, naming tensor and element */
    char ref[600];
    snprintf(ref, sizeof ref, "%s/small/jem_mnist/train_step/ref1.state.safetensors", bundle);
    int p1 = plant(ref, "conv1.weight", 5);
    snprintf(ref, sizeof ref, "%s/small/jem_mnist/logits/ref1.out.safetensors", bundle);
    int p2 = plant(ref, "logits", 3);
    rc = sh("%s bench/gpu/check.sh -b %s --skip probe,sanitizer,timing --only jem_mnist/train_step,jem_mnist/logits %s/log2", env, bundle, dir);
    const char *ls = strstr(out, "FAIL eager jem_mnist/train_step run 1: state (1 of 67 tensors off): value ");
    const char *lo = strstr(out, "FAIL eager jem_mnist/logits run 1: outputs (1 of 1 tensors off): value ");
    int fail_state = ls && strstr(ls, "> 0.001 in conv1.weight[5] (got ") && strchr(ls, '\n') > strstr(ls, "conv1.weight[5]");
    int fail_out = lo && strstr(lo, "> 0.001 in logits[3] (got ") && strchr(lo, '\n') > strstr(lo, "logits[3]");
    if (!ok(p1 == 0 && p2 == 0 && rc == 1 && fail_state && fail_out, "a planted wrong reference: check.sh reports FAIL naming the tensor and element"))
        tap_diag("%s", out);
    /* run 2 starts from the planted state, graphs/logits reads the planted ref1 outputs;
       graphs/train_step (ref3) does not read them */
    if (!ok(lines_with(out, "FAIL ") == 4 && lines_with(out, "PASS graphs jem_mnist/train_step 3 runs") == 1,
            "only the checks that read the planted files fail (4), graphs/train_step passes"))
        tap_diag("%s", out);
}

int main(void) {
    jemc = jt_env("JEMC", "build/jemc");
    build = jt_env("JM_BUILD", "build");
    snprintf(dir, sizeof dir, "/tmp/jemc_gpu_bundle_XXXXXX");
    if (!mkdtemp(dir)) skip_all("cannot create a temporary directory");
    st_compare_rule();
    char tools[400], buf[600];
    snprintf(tools, sizeof tools, "%s/cuda-tools", build);
    if (!jm_gpu_find_libdevice(NULL, tools, buf, sizeof buf))
        skip(10, "CUDA's libdevice is not installed (make deps-cuda fetches it): no GPU executable can be built here");
    else
        rehearsal();
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0) tap_diag("could not remove %s", dir);
    return tap_done();
}
