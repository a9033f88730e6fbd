/* t_cli.c — the `jemc` command line as a user meets it: every shipped graph
 * checks, `info` reports the published parameter counts and MACs, `run` binds
 * files by name, and every bad input (state, inputs, options, files) ends in a
 * clear message that names the file and the tensor, exit status 1, and no
 * output file. */
#include "tap.h"
#include "helpers.h"
#include "engine/safetensors.h"
#include <unistd.h>

static char dir[256];
static const char *jemc;

/* Runs jemc with args; returns the exit status and the combined output. */
static int J(char *out, size_t cap, const char *fmt, ...) {
    char args[4096], cmd[5000];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    snprintf(cmd, sizeof cmd, "%s %s", jemc, args);
    return jt_run(cmd, out, cap);
}

static void expect_fail(const char *name, const char *needle, const char *fmt, ...) {
    char args[4096], cmd[5000], out[8192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    snprintf(cmd, sizeof cmd, "%s %s", jemc, args);
    int rc = jt_run(cmd, out, sizeof out);
    if (!ok(rc == 1 && strstr(out, needle) != NULL, "%s", name))
        tap_diag("command: %s\nexit %d, output:\n%s\nexpected to contain: %s", cmd, rc, out, needle);
}

/* 1 when none of dir/<fmt % 1..n> exists; names the ones that do */
static int no_files(const char *fmt, int n) {
    int none = 1;
    for (int i = 1; i <= n; i++) {
        char name[128], path[512];
        snprintf(name, sizeof name, fmt, i);
        snprintf(path, sizeof path, "%s/%s", dir, name);
        if (access(path, F_OK) == 0) { tap_diag("%s exists", path); none = 0; }
    }
    return none;
}

static void write_file(const char *name, const char *text) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    fputs(text, f);
    fclose(f);
}

/* Writes a safetensors file of f64 tensors, all filled with `fill`. */
static void write_st(const char *name, int n, const char *const *names, const int *ranks, const int64_t (*shapes)[4],
                     const jm_st_dtype *dtypes, double fill) {
    jm_st_file f;
    memset(&f, 0, sizeof f);
    f.n = n;
    f.t = calloc((size_t)n, sizeof(jm_st_tensor));
    for (int i = 0; i < n; i++) {
        jm_st_tensor *t = &f.t[i];
        t->name = (char *)names[i];
        t->dtype = dtypes[i];
        t->rank = ranks[i];
        size_t numel = 1;
        for (int k = 0; k < ranks[i]; k++) { t->shape[k] = shapes[i][k]; numel *= (size_t)shapes[i][k]; }
        t->nbytes = numel * jm_st_dtype_size(t->dtype);
        t->data = calloc(1, t->nbytes + 8);
        for (size_t k = 0; k < numel; k++) {
            if (t->dtype == JM_ST_F64) ((double *)t->data)[k] = fill;
            else if (t->dtype == JM_ST_F32) ((float *)t->data)[k] = (float)fill;
            else if (t->dtype == JM_ST_I64) ((int64_t *)t->data)[k] = (int64_t)fill;
            else if (t->dtype == JM_ST_I32) ((int32_t *)t->data)[k] = (int32_t)fill;
        }
    }
    char path[512], err[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    if (jm_st_write(path, &f, err, sizeof err) != 0) tap_diag("write_st: %s", err);
    for (int i = 0; i < n; i++) free(f.t[i].data);
    free(f.t);
}

int main(void) {
    char out[16384], cmd_buf[4096];
    jemc = jt_env("JEMC", "build/jemc");
    snprintf(dir, sizeof dir, "/tmp/jemc_cli_XXXXXX");
    if (!mkdtemp(dir)) skip_all("cannot create a temporary directory");

    /* shipped graphs */
    const char *graphs[] = { "graphs/jem_mnist.graph", "graphs/jem_wrn28.graph", "graphs/mlp_tabular.graph" };
    for (int i = 0; i < 3; i++) {
        int rc = J(out, sizeof out, "check %s", graphs[i]);
        if (!ok(rc == 0 && strstr(out, ": ok ("), "jemc check %s", graphs[i])) tap_diag("%s", out);
    }
    J(out, sizeof out, "info graphs/jem_mnist.graph");
    ok(strstr(out, "parameters: 155402 in 8 tensors") != NULL, "jem_mnist has 155,402 parameters");
    ok(strstr(out, "program logits: ") && strstr(out, "(0.007514 GMAC per example, batch 64)"), "jem_mnist logits: 7.514 MMAC per image");
    J(out, sizeof out, "info graphs/jem_wrn28.graph");
    ok(strstr(out, "parameters: 36471338 in 58 tensors") != NULL, "WRN-28-10 has 36,471,338 parameters");
    ok(strstr(out, "(5.951118 GMAC per example, batch 64)") != NULL, "WRN-28-10 forward is 5.951 GMAC per 32x32 image");
    J(out, sizeof out, "info graphs/jem_wrn28.graph -D widen=2");
    ok(strstr(out, "parameters: 1466026 in 58 tensors") != NULL, "WRN-28-2 (-D widen=2) has 1,466,026 parameters");
    J(out, sizeof out, "info graphs/jem_wrn28.graph -D depth=16 -D widen=4 -D batch=8");
    ok(strstr(out, "batch 8)") != NULL && strstr(out, "parameters: 2747530") != NULL, "-D changes depth, width and batch (WRN-16-4: 2,747,530 parameters, as PyTorch counts)");
    /* info lists each optimizer's params= set (language §4.10) */
    {
        char gpath[600];
        snprintf(gpath, sizeof gpath, "%s/opts.graph", dir);
        FILE *gf = fopen(gpath, "w");
        if (gf) {
            fputs("model f(x: f32[2]) -> f32[] {\n param w: f32[2] = 1\n return sum(w * x)\n}\n"
                  "model g(x: f32[2]) -> f32[] {\n param v: f32[3, 2] = 2\n return sum(v * x)\n}\n"
                  "optimizer o1 = sgd(params=[f, g])\noptimizer o2 = adam(params=\"gen\")\noptimizer o3 = adam()\n"
                  "program p(x: f32[2]) {\n minimize f(x) * g(x) as gen with o1\n minimize g(x) as gen with o2\n"
                  " minimize f(x) with o3\n}\n", gf);
            fclose(gf);
        }
        J(out, sizeof out, "info %s", gpath);
        ok(strstr(out, "optimizer o1: params=[f, g]: 8 parameters in 2 tensors\n") && strstr(out, "optimizer o2: params=\"gen\": 6 parameters in 1 tensors\n") &&
           !strstr(out, "optimizer o3"), "info lists the parameters of each optimizer's params= set");
        if (!strstr(out, "optimizer o2")) tap_diag("%s", out);
    }
    int rc = J(out, sizeof out, "compile graphs/jem_mnist.graph logits --dump=ir -D batch=2");
    ok(rc == 0 && strstr(out, "program logits(x: f32[2,1,28,28]) {") && strstr(out, "conv2d") &&
       strstr(out, "param \"conv1.weight\"") && strstr(out, "output logits = %"),
       "compile --dump=ir prints a program with its named parameters");
    rc = J(out, sizeof out, "compile graphs/jem_mnist.graph sample --dump=ir -D batch=2");
    ok(rc == 0 && strstr(out, "program sample(") && strstr(out, "body g") && strstr(out, " = grad "),
       "compile --dump=ir shows a sampler as a loop with its body, before autodiff");
    rc = J(out, sizeof out, "compile graphs/jem_mnist.graph");
    ok(rc == 1 && strstr(out, "give the output file with -o FILE"), "compile without -o asks for the output file");
    rc = J(out, sizeof out, "compile graphs/jem_mnist.graph logits --dump=fused");
    ok(rc == 0 && strstr(out, "program logits: 5 steps (1 kernels, 4 runtime ops)") && strstr(out, "conv2d") && strstr(out, "+ epilogue jk_logits_0"),
       "--dump=fused lists the steps, with bias + leaky_relu as the convolutions' epilogues");
    rc = J(out, sizeof out, "compile graphs/jem_mnist.graph jem_loss --dump=plan");
    ok(rc == 0 && strstr(out, "program jem_loss: scratch peak ") && strstr(out, " offset "), "--dump=plan prints the buffers and the peak");

    /* a small graph for run */
    write_file("g.graph",
               "config { batch = 2 }\n"
               "block lin(x) {\n"
               "    param weight: f32[3, 4] = uniform(-0.5, 0.5)\n"
               "    param bias: f32[3] = 0\n"
               "    return linear(x, weight, bias)\n"
               "}\n"
               "state count: i64[] = 0\n"
               "program fwd(x: f32[batch, 4], y: i64[batch]) {\n"
               "    logits = lin(x) as head\n"
               "    count = count + 1\n"
               "    output logits\n"
               "    output loss = cross_entropy(logits, y)\n"
               "}\n");
    const char *pn[] = { "head.weight", "head.bias" };
    int pr[] = { 2, 1 };
    const int64_t ps[][4] = { { 3, 4 }, { 3 } };
    const jm_st_dtype pd[] = { JM_ST_F32, JM_ST_F32 };
    write_st("w.safetensors", 2, pn, pr, ps, pd, 0.25);
    const char *in_n[] = { "x", "y" };
    int in_r[] = { 2, 1 };
    const int64_t in_s[][4] = { { 2, 4 }, { 2 } };
    const jm_st_dtype in_d[] = { JM_ST_F32, JM_ST_I64 }, in_d32[] = { JM_ST_F64, JM_ST_I32 };
    write_st("in.safetensors", 2, in_n, in_r, in_s, in_d, 1);
    write_st("in32.safetensors", 2, in_n, in_r, in_s, in_d32, 1);

    rc = J(out, sizeof out, "run %s/g.graph fwd --state %s/w.safetensors --in %s/in.safetensors --out %s/o.safetensors --state-out %s/s.safetensors",
           dir, dir, dir, dir, dir);
    if (!ok(rc == 0, "jemc run writes outputs")) tap_diag("%s", out);
    jm_st_file f;
    memset(&f, 0, sizeof f);
    char path[600], err[512];
    snprintf(path, sizeof path, "%s/o.safetensors", dir);
    int rr = jm_st_read(path, &f, err, sizeof err);
    const jm_st_tensor *lg = rr == 0 ? jm_st_find(&f, "logits") : NULL;
    const jm_st_tensor *ls = rr == 0 ? jm_st_find(&f, "loss") : NULL;
    /* logits = 4 * 0.25 * 1 + 0.25 = 1.25 everywhere; loss = log 3 */
    ok(lg && lg->dtype == JM_ST_F32 && lg->rank == 2 && ((float *)lg->data)[0] == 1.25f, "output 'logits' is f32[2,3] with the expected values");
    ok(ls && ls->rank == 0 && fabs(((float *)ls->data)[0] - 1.0986123f) < 1e-6, "output 'loss' is a scalar equal to log 3");
    ok(jm_st_meta_get(&f, "program") && strcmp(jm_st_meta_get(&f, "program"), "fwd") == 0, "the output file records the program");
    jm_st_free(&f);
    snprintf(path, sizeof path, "%s/s.safetensors", dir);
    rr = jm_st_read(path, &f, err, sizeof err);
    const jm_st_tensor *cnt = rr == 0 ? jm_st_find(&f, "count") : NULL;
    ok(cnt && cnt->dtype == JM_ST_I64 && ((int64_t *)cnt->data)[0] == 1 && jm_st_find(&f, "head.weight"),
       "--state-out saves parameters and the updated state");
    jm_st_free(&f);
    rc = J(out, sizeof out, "run %s/g.graph fwd --state %s/w.safetensors --in %s/in32.safetensors", dir, dir, dir);
    ok(rc == 0 && strstr(out, "logits: f32[2,3] = 1.25 1.25 1.25"), "inputs accept f64 for f32 and i32 for i64; without --out values are printed");
    rc = J(out, sizeof out, "run %s/g.graph fwd --state %s/s.safetensors --in %s/in.safetensors --precision f64", dir, dir, dir);
    ok(rc == 0 && strstr(out, "logits: f64[2,3]"), "--precision f64 evaluates in double (and state files load back)");

    /* errors: every one names what is wrong, exits 1 and writes nothing */
    const char *bn[] = { "head.weight" };
    write_st("missing.safetensors", 1, bn, pr, ps, pd, 0.25);
    expect_fail("a missing parameter is named", "missing.safetensors: missing parameter 'head.bias' (f32[3])",
                "run %s/g.graph fwd --state %s/missing.safetensors --in %s/in.safetensors --out %s/bad1.safetensors", dir, dir, dir, dir);
    const char *xn[] = { "head.weight", "head.bias", "head.bais" };
    int xr[] = { 2, 1, 1 };
    const int64_t xs[][4] = { { 3, 4 }, { 3 }, { 3 } };
    const jm_st_dtype xd[] = { JM_ST_F32, JM_ST_F32, JM_ST_F32 };
    write_st("extra.safetensors", 3, xn, xr, xs, xd, 0.25);
    expect_fail("an extra tensor is named, with a suggestion", "unexpected tensor 'head.bais': the graph has no parameter or state of that name (did you mean 'head.bias'?)",
                "run %s/g.graph fwd --state %s/extra.safetensors --in %s/in.safetensors", dir, dir, dir);
    const int64_t ws[][4] = { { 4, 3 }, { 3 } };
    write_st("shape.safetensors", 2, pn, pr, ws, pd, 0.25);
    expect_fail("a mis-shaped parameter is named with both shapes", "parameter 'head.weight' has shape [4,3], expected f32[3,4]",
                "run %s/g.graph fwd --state %s/shape.safetensors --in %s/in.safetensors", dir, dir, dir);
    const jm_st_dtype id[] = { JM_ST_I64, JM_ST_F32 };
    write_st("dtype.safetensors", 2, pn, pr, ps, id, 1);
    expect_fail("an integer tensor for a float parameter is refused", "parameter 'head.weight' has dtype I64, expected f32[3,4]",
                "run %s/g.graph fwd --state %s/dtype.safetensors --in %s/in.safetensors", dir, dir, dir);
    const jm_st_dtype bd[] = { JM_ST_F32, JM_ST_F32 };
    write_st("floaty.safetensors", 2, in_n, in_r, in_s, bd, 1);
    expect_fail("float labels for an integer input are refused", "input 'y' has dtype F32, expected i64[2]",
                "run %s/g.graph fwd --state %s/w.safetensors --in %s/floaty.safetensors --out %s/bad3.safetensors", dir, dir, dir, dir);
    write_st("onlyx.safetensors", 1, in_n, in_r, in_s, in_d, 1);
    expect_fail("a missing input is named", "missing input 'y' of program fwd",
                "run %s/g.graph fwd --state %s/w.safetensors --in %s/onlyx.safetensors", dir, dir, dir);
    expect_fail("inputs are required", "program fwd takes inputs (x...); give them with --in FILE.safetensors",
                "run %s/g.graph fwd --state %s/w.safetensors", dir, dir);
    write_file("trunc.safetensors", "\x10\x00\x00\x00\x00\x00\x00\x00{\"a\":");
    expect_fail("a truncated state file is refused, naming the file", "trunc.safetensors:",
                "run %s/g.graph fwd --state %s/trunc.safetensors --in %s/in.safetensors --out %s/bad2.safetensors", dir, dir, dir, dir);
    expect_fail("an unknown program gets a suggestion", "has no program 'fwdd'; did you mean 'fwd'?",
                "run %s/g.graph fwdd --state %s/w.safetensors", dir, dir);
    expect_fail("a bad --precision is refused", "--precision must be f32 or f64, got 'f16'",
                "run %s/g.graph fwd --precision f16 --state %s/w.safetensors --in %s/in.safetensors", dir, dir, dir);
    expect_fail("run --target cuda points to the compiled executable", "--target cuda is not available here",
                "run %s/g.graph fwd --target cuda --state %s/w.safetensors --in %s/in.safetensors", dir, dir, dir);
    expect_fail("a missing graph file is named", "cannot read 'nonexistent.graph': No such file or directory", "check nonexistent.graph");
    expect_fail("a directory is not a graph file", "it is a directory", "check %s", dir);
    expect_fail("an unknown option is refused", "unknown option '--frobnicate'", "check graphs/jem_mnist.graph --frobnicate");
    expect_fail("an unknown command is refused", "unknown command 'frob'", "frob graphs/jem_mnist.graph");
    expect_fail("-D needs name=value", "-D needs name=value", "check graphs/jem_mnist.graph -D batch");
    expect_fail("-D twice is refused", "-D batch given twice", "check graphs/jem_mnist.graph -D batch=2 -D batch=3");
    expect_fail("-D of an unknown constant gets a suggestion", "-D bath: no config constant named 'bath'; did you mean 'batch'?",
                "check graphs/jem_mnist.graph -D bath=2");
    rc = J(out, sizeof out, "run graphs/mlp_tabular.graph sgld_grad -D batch=2 -D features=4 --in %s/in.safetensors", dir);
    ok(rc == 0 && strstr(out, "sgld_grad_x: f32[2,4] ="), "programs with grad run (autodiff expands them)");
    rc = J(out, sizeof out, "compile graphs/jem_mnist.graph sgld_grad --dump=grad -D batch=2");
    ok(rc == 0 && strstr(out, "conv2d_bwd_data") && !strstr(out, " = grad "), "--dump=grad shows the differentiated graph, with no grad node left");
    rc = J(out, sizeof out, "compile graphs/jem_mnist.graph --dump=dp -D batch=2");
    ok(rc == 0 && strstr(out, "program train_step: data-parallel") && strstr(out, "rows of all shards") &&
       strstr(out, "per-example draw  %7 rng_uniform f32[2,1,28,28] (graphs/jem_mnist.graph:69:25)") &&
       strstr(out, "program train_step_ce: data-parallel") && strstr(out, "10 means, 0 row scatters, 0 per-example draws") &&
       strstr(out, "program logits: no collectives"),
       "--dump=dp: the training steps' means, row scatters and per-example draws (the replay buffer's noise, not the parameters)");
    /* --fuse=off: every elementwise op its own kernel, no convolution epilogue */
    {
        static char off[1 << 16];
        int r1 = J(out, sizeof out, "compile graphs/jem_mnist.graph sgld_grad --dump=fused -D batch=2");
        int on_epi = 0, off_epi = 0, on_k = -1, off_k = -1;
        for (const char *p = out; (p = strstr(p, "+ epilogue")); p++) on_epi++;
        sscanf(out, "program sgld_grad: %*d steps (%d kernels", &on_k);
        int r2 = J(off, sizeof off, "compile graphs/jem_mnist.graph sgld_grad --dump=fused --fuse=off -D batch=2");
        for (const char *p = off; (p = strstr(p, "+ epilogue")); p++) off_epi++;
        sscanf(off, "program sgld_grad: %*d steps (%d kernels", &off_k);
        ok(r1 == 0 && r2 == 0 && on_epi == 3 && off_epi == 0 && off_k > 2 * on_k,
           "--fuse=off: sgld_grad's %d kernels and %d convolution epilogues become %d kernels and %d epilogues", on_k, on_epi, off_k, off_epi);
        /* the fused-samplers guide's example (docs/fused-samplers.md) compiles, its loops as the guide shows them */
        int r4 = J(off, sizeof off, "compile examples/fused_samplers/sgld_variants.graph sample_momentum --dump=fused -D batch=2");
        ok(r4 == 0 && strstr(off, "loop 20 times") && strstr(off, "[draws its noise inline]") && !strstr(off, "rng_normal") &&
           strstr(off, "+ epilogue"),
           "examples/fused_samplers/sgld_variants.graph compiles; sample_momentum is a loop of 20 steps with its draw fused into the update, and fused epilogues");
        int r3 = J(off, sizeof off, "compile graphs/jem_mnist.graph --fuse=maybe -o %s/nofuse", dir);
        ok(r3 != 0 && strstr(off, "--fuse must be on or off, got 'maybe'"), "--fuse takes on or off, and says so");
        /* twin batching (compiler/batch.h): off by default on the CPU, on when asked; --dump=batch and --dump=fused say so */
        int r5 = J(off, sizeof off, "compile graphs/jem_mnist.graph jem_loss --dump=batch -D batch=2");
        ok(r5 == 0 && strstr(off, "twin batching is off for target cpu"), "--dump=batch: twin batching is off by default on the CPU");
        int r6 = J(off, sizeof off, "compile graphs/jem_mnist.graph jem_loss --dump=batch --batch-twins=on -D batch=2");
        ok(r6 == 0 && strstr(off, "program jem_loss: 11 pairs of ops batched") && strstr(off, "conv2d -> one at batch 4"),
           "--dump=batch --batch-twins=on: jem_loss's 11 pairs, the convolutions at batch 4");
        int r7 = J(off, sizeof off, "compile graphs/jem_mnist.graph jem_loss --dump=fused --batch-twins=on -D batch=2");
        ok(r7 == 0 && strstr(off, "twin batching: 11 pairs"), "--dump=fused names the twin batching of jem_loss");
        int r8 = J(off, sizeof off, "compile graphs/jem_mnist.graph --batch-twins=yes -o %s/nobatch", dir);
        ok(r8 != 0 && strstr(off, "--batch-twins must be on, off or auto, got 'yes'"), "--batch-twins takes on, off or auto, and says so");
    }
    /* --dump=plan: when each mean is final (overlap starts its exchange there):
       the backward pass finishes the classifier's last layer before its first */
    rc = J(out, sizeof out, "compile graphs/jem_mnist.graph train_step_ce --dump=plan -D batch=2");
    {
        /* conv1.weight (1152 bytes) and the dense layer's bias (40) */
        int first = -1, last = -1, end = -1, means = 0;
        for (const char *p = out; (p = strstr(p, "mean before phase 1:")); p++) {
            long long bytes = 0, off = 0;
            int s = -1, a = -1, b = -1;
            if (sscanf(p, "mean before phase 1: %lld bytes f32 at offset %lld, final after step %d of phase 0's [%d, %d)", &bytes, &off, &s, &a, &b) != 5) continue;
            if (bytes == 1152) first = s;
            if (bytes == 40) last = s;
            end = b;
            means++;
        }
        ok(rc == 0 && means == 10 && first > last && first <= end && strstr(out, "phases: [0, "),
           "--dump=plan: the 10 means of train_step_ce, each final at its step of phase 0 (the first layer's weight at %d, the last layer's bias at %d, of %d)",
           first, last, end);
    }
    /* the failed runs above named --out files in dir (a bad state file, a truncated one, bad inputs); o.safetensors
       shows that --out does write there when the run succeeds */
    snprintf(path, sizeof path, "%s/o.safetensors", dir);
    ok(access(path, F_OK) == 0 && no_files("bad%d.safetensors", 3), "failed runs leave no output file where --out pointed");
    /* the compiled executable: the same files and messages as jemc run */
    rc = J(out, sizeof out, "compile %s/g.graph -o %s/g", dir, dir);
    if (!ok(rc == 0, "jemc compile -o writes an executable")) tap_diag("%s", out);
    char exe[600];
    snprintf(exe, sizeof exe, "%s/g", dir);
    snprintf(cmd_buf, sizeof cmd_buf, "%s exec fwd --state %s/w.safetensors --in %s/in.safetensors --out %s/eo.safetensors --state-out %s/es.safetensors",
             exe, dir, dir, dir, dir);
    rc = jt_run(cmd_buf, out, sizeof out);
    if (!ok(rc == 0, "EXE exec writes outputs")) tap_diag("%s", out);
    snprintf(path, sizeof path, "%s/eo.safetensors", dir);
    rr = jm_st_read(path, &f, err, sizeof err);
    lg = rr == 0 ? jm_st_find(&f, "logits") : NULL;
    ls = rr == 0 ? jm_st_find(&f, "loss") : NULL;
    ok(lg && lg->dtype == JM_ST_F32 && lg->rank == 2 && ((float *)lg->data)[0] == 1.25f && ls && fabs(((float *)ls->data)[0] - 1.0986123f) < 1e-6,
       "EXE exec computes what jemc run does (logits 1.25, loss log 3)");
    jm_st_free(&f);
    snprintf(path, sizeof path, "%s/es.safetensors", dir);
    rr = jm_st_read(path, &f, err, sizeof err);
    cnt = rr == 0 ? jm_st_find(&f, "count") : NULL;
    ok(cnt && cnt->dtype == JM_ST_I64 && ((int64_t *)cnt->data)[0] == 1 && jm_st_meta_get(&f, "jemc.rng_call"),
       "EXE exec --state-out saves the updated state and the RNG position");
    jm_st_free(&f);
    snprintf(cmd_buf, sizeof cmd_buf, "%s exec fwd --state %s/es.safetensors --in %s/in32.safetensors", exe, dir, dir);
    rc = jt_run(cmd_buf, out, sizeof out);
    ok(rc == 0 && strstr(out, "logits: f32[2,3] = 1.25 1.25 1.25"), "EXE exec prints outputs like jemc run, and loads its own state files");
    const struct { const char *args, *needle, *what; } bad[] = {
        { "exec fwd --state %s/missing.safetensors --in %s/in.safetensors", "missing.safetensors: missing parameter 'head.bias' (f32[3])", "a missing parameter" },
        { "exec fwd --state %s/extra.safetensors --in %s/in.safetensors", "(did you mean 'head.bias'?)", "an extra tensor, with a suggestion" },
        { "exec fwd --state %s/shape.safetensors --in %s/in.safetensors", "parameter 'head.weight' has shape [4,3], expected f32[3,4]", "a mis-shaped parameter" },
        { "exec fwd --state %s/w.safetensors --in %s/floaty.safetensors", "input 'y' has dtype F32, expected i64[2]", "float labels" },
        { "exec fwd --state %s/w.safetensors --in %s/onlyx.safetensors", "missing input 'y' of program fwd", "a missing input" },
        { "exec fwd --state %s/trunc.safetensors --in %s/in.safetensors", "trunc.safetensors:", "a truncated state file" },
        { "exec fwdd --state %s/w.safetensors --in %s", "has no program 'fwdd'; it has: fwd", "an unknown program" },
        { "exec --state %s/w.safetensors --in %s", "missing the program name; the graph has: fwd", "no program name" },
        { "exec fwd --frobnicate %s %s", "unknown option '--frobnicate'", "an unknown option" },
        { "exec fwd --threads x %s %s", "--threads needs a non-negative integer", "a bad --threads" },
        { "frob %s %s", "unknown command 'frob'", "an unknown command" },
    };
    const int nbad = (int)(sizeof bad / sizeof bad[0]);
    for (int i = 0; i < nbad; i++) {
        char args[1024];
        snprintf(args, sizeof args, bad[i].args, dir, dir);
        snprintf(cmd_buf, sizeof cmd_buf, "%s %s --out %s/ebad%d.safetensors", exe, args, dir, i + 1);
        rc = jt_run(cmd_buf, out, sizeof out);
        if (!ok(rc == 1 && strstr(out, bad[i].needle), "EXE: %s is refused with a clear message", bad[i].what))
            tap_diag("%s\nexit %d:\n%s", cmd_buf, rc, out);
    }
    snprintf(path, sizeof path, "%s/eo.safetensors", dir);
    ok(access(path, F_OK) == 0 && no_files("ebad%d.safetensors", nbad), "EXE: failed runs leave no output file where --out pointed");
    snprintf(cmd_buf, sizeof cmd_buf, "%s info", exe);
    rc = jt_run(cmd_buf, out, sizeof out);
    ok(rc == 0 && strstr(out, "program fwd") && strstr(out, "in  y: i64[2]") && strstr(out, "out loss: f32[]") && strstr(out, "15 parameters"),
       "EXE info lists programs, inputs, outputs and the parameter count");
    snprintf(cmd_buf, sizeof cmd_buf, "%s --version", exe);
    rc = jt_run(cmd_buf, out, sizeof out);
    ok(rc == 0 && strstr(out, "program table version 3") && strstr(out, "CPU "), "EXE --version names the table version and the CPU");
    rc = J(out, sizeof out, "compile %s/g.graph -o %s/g3 --cpu x86-64-v3", dir, dir);
    snprintf(cmd_buf, sizeof cmd_buf, "%s/g3 exec fwd --state %s/w.safetensors --in %s/in.safetensors", dir, dir, dir);
    int rc2 = jt_run(cmd_buf, out, sizeof out);
    ok(rc == 0 && rc2 == 0 && strstr(out, "logits: f32[2,3] = 1.25"), "--cpu x86-64-v3 builds a portable executable that runs");
    rc = J(out, sizeof out, "compile %s/g.graph -o %s/g.ll --emit=llvm", dir, dir);
    snprintf(path, sizeof path, "%s/g.ll", dir);
    FILE *ll = fopen(path, "r");
    char llbuf[65536] = "";
    if (ll) { size_t n = fread(llbuf, 1, sizeof llbuf - 1, ll); llbuf[n] = 0; fclose(ll); }
    ok(rc == 0 && strstr(llbuf, "define void @jk_fwd_") && strstr(llbuf, "jm_table_words"), "--emit=llvm writes the kernels' LLVM IR and the program table");
    rc = J(out, sizeof out, "compile %s/g.graph -o %s/g.s --emit=asm", dir, dir);
    snprintf(path, sizeof path, "%s/g.s", dir);
    ok(rc == 0 && access(path, R_OK) == 0, "--emit=asm writes assembly");
    rc = J(out, sizeof out, "compile %s/g.graph -o %s/g.o --emit=obj", dir, dir);
    snprintf(path, sizeof path, "%s/g.o", dir);
    FILE *ob = fopen(path, "rb");
    char magic[4] = { 0 };
    if (ob) { size_t n = fread(magic, 1, 4, ob); (void)n; fclose(ob); }
    ok(rc == 0 && memcmp(magic, "\x7f" "ELF", 4) == 0, "--emit=obj writes an ELF object");
    expect_fail("a bad --emit is refused", "--emit must be exe, obj, asm or llvm, got 'wasm'", "compile %s/g.graph -o %s/g.w --emit=wasm", dir, dir);
    rc = J(out, sizeof out, "run %s/g.graph fwd --target cpu --state %s/w.safetensors --in %s/in.safetensors", dir, dir, dir);
    ok(rc == 0 && strstr(out, "logits: f32[2,3] = 1.25 1.25 1.25"), "jemc run --target cpu runs the compiled code (JIT)");
    expect_fail("--target cpu refuses --precision f64", "--precision f64 needs --target interp",
                "run %s/g.graph fwd --target cpu --precision f64 --state %s/w.safetensors --in %s/in.safetensors", dir, dir, dir);

    rc = J(out, sizeof out, "--version");
    ok(rc == 0 && strstr(out, "jemc 0.") && strstr(out, "LLVM 19.") && strstr(out, "host CPU"), "--version reports the linked LLVM 19 and the host CPU");
    rc = J(out, sizeof out, "--help");
    ok(rc == 0 && strstr(out, "jemc run"), "--help prints usage and exits 0");
    snprintf(path, sizeof path, "rm -rf %s", dir);
    jt_run(path, out, sizeof out);
    return tap_done();
}
