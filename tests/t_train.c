/* t_train.c — the generated executable's train / sample / eval / plot commands
 * on a tiny JEM (tests/train/tiny.graph, 8x8 images, 4 classes) and synthetic
 * IDX data written here: exact resume, checkpoints surviving kill -9 mid-write,
 * recovery from an injected NaN, giving up cleanly, run-time settings (knobs)
 * in the executable and the interpreter, bad data files, and a jemc checkpoint
 * loaded into PyTorch with load_state_dict. */
#include "train_helpers.h"
#include "tap.h"
#include <signal.h>
#include <stdint.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

static char dir[256], exe[320];

static void test_resume(void) {
    /* 12 iterations straight vs 6 + resume + 6: bitwise-identical state */
    int a = run("%s train --data %s/train-images-idx3-ubyte --iters 12 --out %s/straight --seed 3 --no-progress --noise 0.03 --crop 1 --flip", exe, dir, dir);
    ok(a == 0, "train 12 iterations (exit %d)", a);
    if (a) tap_diag("%s", out);
    int b = run("%s train --data %s/train-images-idx3-ubyte --iters 6 --out %s/half --seed 3 --no-progress --noise 0.03 --crop 1 --flip", exe, dir, dir);
    int c = run("%s train --data %s/train-images-idx3-ubyte --iters 12 --out %s/half --resume %s/half/last.safetensors --no-progress --noise 0.03 --crop 1 --flip",
                exe, dir, dir, dir);
    ok(b == 0 && c == 0, "train 6, then resume to 12 (exit %d, %d)", b, c);
    if (c) tap_diag("%s", out);
    char why[600] = "", p1[512], p2[512], buf[64];
    snprintf(p1, sizeof p1, "%s/straight/last.safetensors", dir);
    snprintf(p2, sizeof p2, "%s/half/last.safetensors", dir);
    ok(same_tensors(p1, p2, why, sizeof why), "N straight == N/2 + resume + N/2: every parameter, moment, buffer chain and counter bitwise (%s)", why);
    is_str(meta(p2, "jemc.train.iterations", buf, sizeof buf), "12", "the resumed checkpoint records 12 iterations");
    const char *rs = meta(p1, "jemc.rng_call", buf, sizeof buf), *rr = meta(p2, "jemc.rng_call", why, sizeof why);
    if (!ok(rs && rr && strcmp(rs, rr) == 0, "and the same random-number position (jemc.rng_call %s)", rr ? rr : "missing"))
        tap_diag("straight: %s, resumed: %s", rs ? rs : "(no jemc.rng_call)", rr ? rr : "(no jemc.rng_call)");
    /* the metrics of the resumed run continue the file */
    snprintf(p1, sizeof p1, "%s/half/metrics.jsonl", dir);
    FILE *f = fopen(p1, "r");
    int lines = 0, ch;
    while (f && (ch = fgetc(f)) != EOF) lines += ch == '\n';
    if (f) fclose(f);
    ok(lines >= 2, "metrics.jsonl keeps both halves (%d lines)", lines);
}

static void test_kill9(void) {
    /* every checkpoint write pauses 1.5 s halfway; kill -9 during the second one */
    char ck[512], data[512], k9[512], logp[512];
    snprintf(ck, sizeof ck, "%s/k9/last.safetensors", dir);
    snprintf(data, sizeof data, "%s/train-images-idx3-ubyte", dir);
    snprintf(k9, sizeof k9, "%s/k9", dir);
    snprintf(logp, sizeof logp, "%s/k9.log", dir);
    fflush(stdout);
    pid_t pid = fork();     /* the trainer itself is our child (no shell between): SIGKILL goes to exactly it */
    if (pid == 0) {
        setenv("JEMC_TEST_WRITE_PAUSE_MS", "1500", 1);
        int fd = open(logp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd >= 0) { dup2(fd, 1); dup2(fd, 2); close(fd); }
        execl(exe, exe, "train", "--data", data, "--iters", "100", "--ckpt-every", "2", "--out", k9, "--no-progress", (char *)NULL);
        _exit(127);
    }
    /* wait for the first checkpoint, then for the second write's temporary file */
    int seen_tmp = 0;
    for (int i = 0; i < 400 && !seen_tmp; i++) {
        usleep(50000);
        struct stat st;
        if (stat(ck, &st) != 0) continue;
        char tmpl[1024];
        snprintf(tmpl, sizeof tmpl, "ls %s/k9/ | grep -q 'last.safetensors.tmp'", dir);
        seen_tmp = system(tmpl) == 0;
    }
    ok(seen_tmp, "a second checkpoint is being written (temporary file present)");
    int killed = pid > 0 && kill(pid, SIGKILL) == 0;
    int st = 0;
    if (pid > 0) waitpid(pid, &st, 0);
    ok(killed && WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL, "the trainer (pid %d, this test's child) died of that SIGKILL", (int)pid);
    char buf[64];
    const char *its = meta(ck, "jemc.train.iterations", buf, sizeof buf);
    ok(its && strcmp(its, "2") == 0, "after kill -9 mid-write, last.safetensors is the complete previous checkpoint (iterations %s)", its ? its : "unreadable");
    int r = run("%s train --data %s/train-images-idx3-ubyte --iters 4 --out %s/k9 --resume %s --no-progress", exe, dir, dir, ck);
    ok(r == 0, "and training resumes from it (exit %d)", r);
}

static void test_guard(void) {
    int r = run("JEMC_TEST_INJECT_NAN=5 %s train --data %s/train-images-idx3-ubyte --iters 12 --guard-every 3 --out %s/nan --no-progress", exe, dir, dir);
    ok(r == 0, "a NaN injected at iteration 5: the run recovers and finishes (exit %d)", r);
    ok(strstr(out, "not finite") && strstr(out, "rolled back from iteration 4 to 3"), "it says what happened and where it rolled back to");
    if (!strstr(out, "rolled back")) tap_diag("%s", out);
    char p[512];
    snprintf(p, sizeof p, "%s/nan/last.safetensors", dir);
    ok(all_finite(p, NULL, 0), "the final checkpoint is finite");
    snprintf(p, sizeof p, "grep -c '\"event\": \"rollback\"' %s/nan/metrics.jsonl", dir);
    char cnt[64];
    jt_run(p, cnt, sizeof cnt);
    ok(atoi(cnt) == 1, "metrics.jsonl logs one rollback event (%d)", atoi(cnt));
    char buf[64];
    snprintf(p, sizeof p, "%s/nan/last.safetensors", dir);
    ok(meta(p, "jemc.train.lr_scale", buf, sizeof buf) && atof(buf) == 0.5, "the learning rate was halved (scale %s)", buf);
    /* samples that always blow up: sgld_lr = 1e30 -> infinite energies, no rollback helps */
    r = run("%s train --data %s/train-images-idx3-ubyte --iters 12 --max-rollbacks 2 --set sgld_lr=1e30 --set reinit=1 --out %s/boom --no-progress", exe, dir, dir);
    ok(r == 3, "a run that keeps diverging gives up with exit 3 (got %d)", r);
    ok(strstr(out, "giving up after 2 rollbacks") != NULL, "with a clear message");
    if (!strstr(out, "giving up")) tap_diag("%s", out);
}

static void test_commands(void) {
    char ck[512];
    snprintf(ck, sizeof ck, "%s/straight/last.safetensors", dir);
    int r = run("%s sample --ckpt %s --n 8 --steps 4 --out %s/s.png --gif %s/s.gif --gif-every 2", exe, ck, dir, dir);
    ok(r == 0 && strstr(out, "mean energy"), "sample writes a grid and a GIF and reports energies (exit %d)", r);
    if (r) tap_diag("%s", out);
    char p[512];
    snprintf(p, sizeof p, "%s/s.gif", dir);
    struct stat st;
    ok(stat(p, &st) == 0 && st.st_size > 100, "the GIF exists");
    r = run("%s sample --ckpt %s --class all --n 2 --steps 2 --out %s/c.png", exe, ck, dir);
    ok(r == 0, "sample --class all (a row per class)");
    /* --class-names: the captions widen the grid; too few names are refused before any chain runs */
    snprintf(p, sizeof p, "%s/names.txt", dir);
    FILE *nf = fopen(p, "w");
    fprintf(nf, "north-west quadrant\nnorth-east quadrant\n\nsouth-west quadrant\nsouth-east quadrant\n");
    fclose(nf);
    r = run("%s sample --ckpt %s --class all --n 2 --steps 2 --class-names %s --out %s/cn.png", exe, ck, p, dir);
    int wn = png_width(dir, "cn.png"), wc = png_width(dir, "c.png");
    ok(r == 0 && wn > wc && wc > 0, "--class-names captions the rows (grid %d pixels wide, %d with 'class c')", wn, wc);
    nf = fopen(p, "w");
    fprintf(nf, "one\ntwo\n");
    fclose(nf);
    r = run("%s sample --ckpt %s --class all --class-names %s --out %s/cn.png", exe, ck, p, dir);
    ok(r == 1 && strstr(out, "names 2 classes; the model has 4"), "--class-names with too few names is refused");
    r = run("%s sample --ckpt %s --class 9 --out %s/c.png", exe, ck, dir);
    ok(r != 0 && strstr(out, "classes 0..3"), "sample --class 9 on a 4-class model is refused");
    r = run("%s sample --ckpt %s --from buffer --steps 0 --out %s/b.png", exe, ck, dir);
    ok(r == 0, "sample from the checkpoint's replay buffer");
    /* --at: the same chains snapshotted after 0, 2 and 5 steps. The 0-step row is
       the starting noise and the last row the final samples, so their energies
       must equal those of the starting points and of the samples exactly. */
    r = run("%s sample --ckpt %s --n 3 --at 0,2,5 --out %s/at.png --json %s/at.json --plot %s/at_e.png", exe, ck, dir, dir, dir);
    ok(r == 0 && strstr(out, "after       2 steps: mean energy"), "sample --at prints the mean energy after each step count (exit %d)", r);
    if (r) tap_diag("%s", out);
    char js[2048] = "";
    snprintf(p, sizeof p, "%s/at.json", dir);
    FILE *jf = fopen(p, "r");
    if (jf) { size_t got = fread(js, 1, sizeof js - 1, jf); js[got] = 0; fclose(jf); }
    double e_end = NAN, e_start = NAN, e0 = NAN, e5 = NAN;
    const char *k;
    if ((k = strstr(js, "\"energy\": "))) e_end = atof(k + 10);
    if ((k = strstr(js, "\"energy_start\": "))) e_start = atof(k + 16);
    if ((k = strstr(js, "{\"steps\": 0, \"energy\": "))) e0 = atof(k + 23);
    if ((k = strstr(js, "{\"steps\": 5, \"energy\": "))) e5 = atof(k + 23);
    ok(strstr(js, "\"steps\": 5, \"from\": \"noise\"") && strstr(js, "{\"steps\": 2, ") && isfinite(e0) && e0 == e_start && e5 == e_end && e0 != e5,
       "at.json: the 0-step row is the starting noise (E %g = %g), the 5-step row the samples (E %g = %g)", e0, e_start, e5, e_end);
    if (!isfinite(e0)) tap_diag("%s", js);
    snprintf(p, sizeof p, "%s/at_e.png", dir);
    ok(stat(p, &st) == 0 && st.st_size > 1000, "--plot draws the energy along the chains");
    r = run("%s sample --ckpt %s --n 3 --at 0,5 --out %s/at2.png", exe, ck, dir);
    r |= run("%s sample --ckpt %s --n 3 --at 5 --out %s/at1.png", exe, ck, dir);
    int h3 = png_height(dir, "at.png"), h2 = png_height(dir, "at2.png"), h1 = png_height(dir, "at1.png");
    ok(r == 0 && h1 > 0 && h2 > h1 && h3 - h2 == h2 - h1, "a grid row per step count (1, 2, 3 rows: %d, %d, %d pixels)", h1, h2, h3);
    /* --program: 10 chains at batch 8 are two runs, the second with 2 real
       chains and 6 copies; the per-chain energies the program outputs must
       average, over the real chains only, to the energy `sample` computes of
       the same samples, and a one-value output to its value */
    r = run("%s sample --ckpt %s --program sample_scored --n 10 --steps 2 --out %s/sc.png --json %s/sc.json", exe, ck, dir, dir);
    snprintf(p, sizeof p, "%s/sc.json", dir);
    js[0] = 0;
    jf = fopen(p, "r");
    if (jf) { size_t got = fread(js, 1, sizeof js - 1, jf); js[got] = 0; fclose(jf); }
    double e_all = NAN, e_prog = NAN, width = NAN, sps = NAN;
    if ((k = strstr(js, "\"energy\": "))) e_all = atof(k + 10);
    if ((k = strstr(js, "\"e\": "))) e_prog = atof(k + 5);
    if ((k = strstr(js, "\"width\": "))) width = atof(k + 9);
    if ((k = strstr(js, "\"seconds_per_step\": "))) sps = atof(k + 20);
    ok(r == 0 && strstr(out, "after 2 sample_scored steps") && strstr(js, "\"program\": \"sample_scored\"") && width == 8 && sps > 0 &&
       fabs(e_prog - e_all) <= 1e-5 * fabs(e_all) && e_all != 0,
       "sample --program: per-chain output e averages to the samples' energy over the real chains (%.7g vs %.7g), width %g, %g s a step", e_prog, e_all, width, sps);
    if (r || !(width == 8)) tap_diag("%s\n%s", out, js);
    r = run("%s sample --ckpt %s --program sample_cond --out %s/x.png", exe, ck, dir);
    ok(r == 2 && strstr(out, "give --class C"), "sample --program of a class-conditional program without --class is refused");
    r = run("%s sample --ckpt %s --program no_such --out %s/x.png", exe, ck, dir);
    ok(r == 2 && strstr(out, "no_such"), "sample --program with an unknown program names it (exit %d)", r);
    r = run("%s sample --ckpt %s --at 5,2", exe, ck);
    ok(r == 2 && strstr(out, "increasing step counts"), "--at must increase");
    r = run("%s sample --ckpt %s --at 2,5 --steps 20", exe, ck);
    ok(r == 2 && strstr(out, "leave out --steps"), "--at and a different --steps disagree: refused");
    r = run("%s eval accuracy --ckpt %s --data %s/train-images-idx3-ubyte --json %s/acc.json", exe, ck, dir, dir);
    ok(r == 0 && strstr(out, "accuracy"), "eval accuracy (exit %d)", r);
    r = run("%s eval accuracy --ckpt %s --data %s/train-images-idx3-ubyte --limit 10", exe, ck, dir);
    ok(r == 0 && strstr(out, ": 10 records: accuracy"), "eval --limit 10 scores the first 10 records");
    r = run("%s eval calibration --ckpt %s --data %s/train-images-idx3-ubyte --bins 10 --report %s/rep", exe, ck, dir, dir);
    ok(r == 0 && strstr(out, "expected calibration error"), "eval calibration prints the ECE (exit %d)", r);
    if (r) tap_diag("%s", out);
    char q[600];
    snprintf(q, sizeof q, "%s/rep/reliability.png", dir);
    snprintf(p, sizeof p, "%s/rep/calibration.json", dir);
    ok(stat(q, &st) == 0 && stat(p, &st) == 0, "and writes the reliability diagram and calibration.json");
    r = run("%s eval ood --ckpt %s --data %s/train-images-idx3-ubyte --ood-data %s/bad-images-idx3-ubyte --report %s/rep", exe, ck, dir, dir, dir);
    ok(r == 1 && strstr(out, "bad-images-idx3-ubyte"), "eval ood with a damaged OOD file names it");
    r = run("%s eval ood --ckpt %s --data %s/train-images-idx3-ubyte --ood-noise --report %s/rep", exe, ck, dir, dir);
    ok(r == 0 && strstr(out, "AUROC") && strstr(out, "noise"), "eval ood against noise prints the AUROC of each score (exit %d)", r);
    if (r) tap_diag("%s", out);
    snprintf(p, sizeof p, "%s/rep/ood.json", dir);
    snprintf(q, sizeof q, "%s/rep/ood_logpx.png", dir);
    ok(stat(q, &st) == 0 && stat(p, &st) == 0, "and writes ood.json and the score histograms");
    /* an OOD set of another shape: 6 CIFAR-10 records (3x32x32) scored by the 1x8x8 model */
    snprintf(p, sizeof p, "%s/other.bin", dir);
    FILE *cf = fopen(p, "wb");
    for (int i = 0; i < 6 * 3073; i++) fputc(i % 3073 == 0 ? i / 3073 : (i * 31) % 251, cf);
    fclose(cf);
    r = run("%s eval ood --ckpt %s --data %s/train-images-idx3-ubyte --ood-data %s --report %s/rep", exe, ck, dir, p, dir);
    ok(r == 0 && strstr(out, "made 1x8x8 like the data") && strstr(out, "AUROC"), "eval ood fits a 3x32x32 set to the 1x8x8 model, with a note (exit %d)", r);
    if (r) tap_diag("%s", out);
    char many[400] = "";
    for (int i = 0; i < 33; i++) strcat(many, " --eps 0.1");
    r = run("%s eval robust --ckpt %s --data %s/train-images-idx3-ubyte%s", exe, ck, dir, many);
    ok(r == 2 && strstr(out, "--eps given more than 32 times"), "33 --eps radii are refused (the option lists hold 32), not written past the end");
    r = run("%s eval fid --ckpt %s --data %s/train-images-idx3-ubyte", exe, ck, dir);
    ok(r == 2 && strstr(out, "Inception-v3"), "eval fid says why it is not computed");
    r = run("%s eval ood --ckpt %s --data %s/train-images-idx3-ubyte", exe, ck, dir);
    ok(r == 2 && strstr(out, "--ood-data"), "eval ood without a set is a usage error");
    r = run("%s eval robustness --data %s/train-images-idx3-ubyte", exe, dir);
    ok(r == 2 && strstr(out, "accuracy, calibration, ood"), "an unknown evaluation lists the known ones");
    r = run("%s plot --metrics %s/straight/metrics.jsonl", exe, dir);
    ok(r == 0 && strstr(out, "loss.png"), "plot draws the loss curves (exit %d)", r);
    r = run("%s train --help", exe);
    ok(r == 0 && strstr(out, "--resume") && strstr(out, "--set"), "train --help lists the options");
    /* the top-level help: every command with a line, and the way to its own help */
    const char *const cmds[] = { "train ", "sample ", "eval ", "plot ", "exec ", "info " };
    const char *const forms[] = { "", " --help", " help" };
    for (int f = 0; f < 3; f++) {
        r = run("%s%s", exe, forms[f]);
        int all = 1;
        for (int i = 0; i < 6; i++) all &= strstr(out, cmds[i]) != NULL;
        ok(r == (f == 0 ? 1 : 0) && all && strstr(out, "COMMAND --help"), "`EXE%s` lists every command and the way to its help (exit %d)", forms[f], r);
    }
    r = run("%s help exec", exe);
    ok(r == 0 && strstr(out, "--repeat") && strstr(out, "--state-out"), "help exec shows exec's options");
    r = run("%s info --help", exe);
    ok(r == 0 && strstr(out, "usage:") && !strstr(out, "program "), "info --help explains info instead of running it");
    r = run("%s help train", exe);
    ok(r == 0 && strstr(out, "--resume"), "help train is train --help");
    r = run("%s help trian", exe);
    ok(r == 1 && strstr(out, "no command 'trian'"), "help of an unknown command says so");
    r = run("%s train --data %s/train-images-idx3-ubyte --set batch=4 --out %s/x", exe, dir, dir);
    ok(r != 0 && strstr(out, "compiled in") && strstr(out, "sgld_lr"), "--set batch=4: batch shapes the program; the message lists the settings");
    r = run("%s train --data %s/train-images-idx3-ubyte --set sgld_lrr=2 --out %s/x", exe, dir, dir);
    ok(r != 0 && strstr(out, "did you mean 'sgld_lr'"), "--set with a typo suggests the setting");
    r = run("%s train --data %s/train-images-idx3-ubyte --lrr 3", exe, dir);
    ok(r == 2 && strstr(out, "unknown option '--lrr'"), "an unknown option is an error");
    r = run("%s train --data %s/bad-images-idx3-ubyte --out %s/x", exe, dir, dir);
    ok(r == 1 && strstr(out, "bad-images-idx3-ubyte") && strstr(out, "record"), "a truncated IDX file: the error names the file and the record");
    if (!strstr(out, "record")) tap_diag("%s", out);
    r = run("%s train --data %s/nothing-here --out %s/x", exe, dir, dir);
    ok(r == 1 && strstr(out, "nothing-here"), "a missing data file is named");
    snprintf(p, sizeof p, "%s/straight/metrics.jsonl", dir);
    r = run("%s train --data %s/train-images-idx3-ubyte --resume %s --out %s/x", exe, dir, p, dir);
    ok(r == 1, "resuming from a file that is not a checkpoint fails cleanly");
}

/* knobs: a config constant used as a tensor is a run-time setting; one that
   shapes the program is compiled in */
static void test_knobs(void) {
    char g[512], st[512], in[512];
    snprintf(g, sizeof g, "%s/k.graph", dir);
    FILE *f = fopen(g, "w");
    fprintf(f, "config {\n    n = 3\n    k = 2.0\n    steps = 2\n}\n"
               "sampler walk(x, steps=steps) {\n    x = x + k\n}\n"
               "program p(x: f32[n]) {\n    output y = x * k\n    output z = walk(x)\n}\n");
    fclose(f);
    int r = run("%s compile %s -o %s/k", jemc, g, dir);
    ok(r == 0, "compile a graph with knobs");
    /* a state file that sets config.k = 5 and config.steps = 4 */
    snprintf(st, sizeof st, "%s/kstate.safetensors", dir);
    snprintf(in, sizeof in, "%s/kin.safetensors", dir);
    float kv = 5, xv[3] = { 1, 2, 3 };
    int64_t sv = 4;
    jm_st_tensor ts[2] = { { .name = "config.k", .dtype = JM_ST_F32, .rank = 0, .data = &kv, .nbytes = 4 },
                           { .name = "config.steps", .dtype = JM_ST_I64, .rank = 0, .data = &sv, .nbytes = 8 } };
    jm_st_file sf = { .n = 2, .t = ts };
    char err[256];
    jm_st_write(st, &sf, err, sizeof err);
    jm_st_tensor ti = { .name = "x", .dtype = JM_ST_F32, .rank = 1, .shape = { 3 }, .data = xv, .nbytes = 12 };
    jm_st_file fi = { .n = 1, .t = &ti };
    jm_st_write(in, &fi, err, sizeof err);
    r = run("%s/k exec p --in %s", dir, in);
    ok(r == 0 && strstr(out, "y: f32[3] = 2 4 6") && strstr(out, "z: f32[3] = 5 6 7"), "defaults: y = 2x, z = x + 2*2");
    if (!strstr(out, "= 2 4 6")) tap_diag("%s", out);
    r = run("%s/k exec p --in %s --state %s", dir, in, st);
    ok(r == 0 && strstr(out, "y: f32[3] = 5 10 15") && strstr(out, "z: f32[3] = 21 22 23"), "compiled: config.k = 5 and config.steps = 4 from the state file");
    if (!strstr(out, "5 10 15")) tap_diag("%s", out);
    r = run("%s run %s p --in %s --state %s", jemc, g, in, st);
    ok(r == 0 && strstr(out, "5 10 15") && strstr(out, "21 22 23"), "the interpreter reads the same knobs");
    if (!strstr(out, "5 10 15")) tap_diag("%s", out);
    r = run("%s/k info", dir);
    ok(r == 0 && strstr(out, "settings: k=2 steps=2") && !strstr(out, "n=3"), "info lists the settings (k, steps; not n, which shapes x)");
    if (!strstr(out, "settings")) tap_diag("%s", out);
}

/* PGD on a linear two-class model against the closed form: with logits
   z = W x, the attack lowers the margin (w_y - w_o).x by eps * |w_y - w_o|_1
   (L-inf) or eps * |w_y - w_o|_2 (L2), so an example stays right iff its
   margin exceeds that (no clamping: the inputs sit inside [-1, 1]). */
static void test_pgd_linear(void) {
    char g[512], im[512], lb[512], st[512];
    snprintf(g, sizeof g, "%s/lin.graph", dir);
    FILE *f = fopen(g, "w");
    fprintf(f, "config {\n    batch = 4\n}\n"
               "model f(x: f32[batch, 1, 1, 2]) -> f32[batch, 2] {\n"
               "    param weight: f32[2, 2] = 0\n"
               "    return matmul(reshape(x, [batch, 2]), transpose(weight, 0, 1))\n}\n"
               "program evaluate(x: f32[batch, 1, 1, 2], y: i64[batch]) {\n    output logits = f(x)\n}\n"
               "program ce_grad(x: f32[batch, 1, 1, 2], y: i64[batch]) {\n    output ce_grad_x = grad(cross_entropy(f(x), y), x)\n}\n");
    fclose(f);
    int r = run("%s compile %s -o %s/lin", jemc, g, dir);
    ok(r == 0, "compile a linear two-class model");
    if (r) { tap_diag("%s", out); skip(4, "no model"); return; }
    unsigned char px[8][2] = { { 200, 100 }, { 150, 120 }, { 60, 200 }, { 100, 130 }, { 140, 110 }, { 128, 128 }, { 90, 150 }, { 170, 90 } };
    int64_t lab[8] = { 0, 0, 1, 1, 0, 1, 1, 0 };
    snprintf(im, sizeof im, "%s/lin-images-idx3-ubyte", dir);
    snprintf(lb, sizeof lb, "%s/lin-labels-idx1-ubyte", dir);
    f = fopen(im, "wb");
    put_be32(f, 0x803); put_be32(f, 8); put_be32(f, 1); put_be32(f, 2);
    for (int i = 0; i < 8; i++) fwrite(px[i], 1, 2, f);
    fclose(f);
    f = fopen(lb, "wb");
    put_be32(f, 0x801); put_be32(f, 8);
    for (int i = 0; i < 8; i++) fputc((int)lab[i], f);
    fclose(f);
    float w[4] = { 1, -2, -1, 2 };     /* rows: class 0, class 1 */
    jm_st_tensor tw = { .name = "weight", .dtype = JM_ST_F32, .rank = 2, .shape = { 2, 2 }, .data = w, .nbytes = 16 };
    jm_st_file sf = { .n = 1, .t = &tw };
    char err[256];
    snprintf(st, sizeof st, "%s/lin.safetensors", dir);
    jm_st_write(st, &sf, err, sizeof err);
    const double l1 = 6, l2 = sqrt(20.0);     /* |w_1 - w_0| = |(-2, 4)| */
    const double eps_pix[3] = { 0.0, 0.02, 0.06 };
    for (int norm = 0; norm < 2; norm++) {
        int all = 1;
        for (int e = 0; e < 3; e++) {
            int right = 0;
            for (int i = 0; i < 8; i++) {
                double x1 = px[i][0] / 255.0 * 2 - 1, x2 = px[i][1] / 255.0 * 2 - 1;
                double m = (w[0] - w[2]) * x1 + (w[1] - w[3]) * x2;
                if (lab[i] == 1) m = -m;
                right += m - 2 * eps_pix[e] * (norm ? l2 : l1) > 0;
            }
            r = run("%s/lin eval robust --ckpt %s --data %s --labels %s --norm %s --eps %g --pgd-steps 40 --step-size %g --report %s/linrep",
                    dir, st, im, lb, norm ? "l2" : "linf", eps_pix[e], eps_pix[e] / 8 + 1e-9, dir);
            char want[64];
            snprintf(want, sizeof want, "accuracy %.4f", right / 8.0);
            if (r != 0 || !strstr(out, want)) { all = 0; tap_diag("%s eps %g: expected %s; got:\n%s", norm ? "l2" : "linf", eps_pix[e], want, out); }
        }
        ok(all, "%s PGD on a linear model matches the closed form at eps 0, 0.02, 0.06", norm ? "L2" : "L-inf");
    }
}

/* a jemc checkpoint of graphs/jem_mnist.graph loads into the PyTorch model */
static void test_torch(void) {
    if (system("/usr/bin/python3 -c 'import torch' >/dev/null 2>&1") != 0) { skip(2, "no PyTorch (/usr/bin/python3 -c 'import torch')"); return; }
    int r = run("%s compile graphs/jem_mnist.graph -o %s/mnist", jemc, dir);
    /* 28x28 records for one training iteration */
    char im[512], lb[512];
    snprintf(im, sizeof im, "%s/m28-images-idx3-ubyte", dir);
    snprintf(lb, sizeof lb, "%s/m28-labels-idx1-ubyte", dir);
    FILE *f = fopen(im, "wb");
    put_be32(f, 0x803); put_be32(f, 64); put_be32(f, 28); put_be32(f, 28);
    for (int i = 0; i < 64 * 784; i++) fputc((i * 37) % 256, f);
    fclose(f);
    f = fopen(lb, "wb");
    put_be32(f, 0x801); put_be32(f, 64);
    for (int i = 0; i < 64; i++) fputc(i % 10, f);
    fclose(f);
    if (r == 0) r = run("%s/mnist train --data %s --iters 1 --out %s/m28 --no-progress", dir, im, dir);
    ok(r == 0, "one JEM iteration of jem_mnist (exit %d)", r);
    if (r) { tap_diag("%s", out); skip(1, "no checkpoint"); return; }
    r = run("/usr/bin/python3 tests/train/torch_load.py %s/m28/last.safetensors %s/mnist %s", dir, dir, dir);
    ok(r == 0 && strstr(out, "load_state_dict(strict=True) ok"), "PyTorch load_state_dict(strict=True) takes the checkpoint and its logits match the executable's");
    if (r) tap_diag("%s", out);
}

/* max over the float tensors of two checkpoints of max |a - b| / max |b|, each
   tensor at its own scale (Adam's second moments are ~1e-8: a scale of 1 would
   hide them); other tensors must be byte-identical */
static double ckpt_diff(const char *a, const char *b, char *worst, size_t n) {
    jm_st_file fa, fb;
    char err[512];
    memset(&fa, 0, sizeof fa);
    memset(&fb, 0, sizeof fb);
    if (jm_st_read(a, &fa, err, sizeof err) || jm_st_read(b, &fb, err, sizeof err)) { snprintf(worst, n, "%s", err); return INFINITY; }
    double w = fa.n == fb.n ? 0 : INFINITY;
    for (int i = 0; i < fa.n; i++) {
        const jm_st_tensor *t = jm_st_find(&fb, fa.t[i].name);
        if (!t || t->nbytes != fa.t[i].nbytes) { w = INFINITY; snprintf(worst, n, "%s missing", fa.t[i].name); break; }
        if (t->dtype != JM_ST_F32) { if (memcmp(t->data, fa.t[i].data, t->nbytes)) { w = INFINITY; snprintf(worst, n, "%s", t->name); } continue; }
        const float *x = (const float *)fa.t[i].data, *y = (const float *)t->data;
        size_t k = t->nbytes / 4;
        double scale = 1e-30, e = 0;
        for (size_t j = 0; j < k; j++) scale = fmax(scale, fabs(y[j]));
        for (size_t j = 0; j < k; j++) {
            double dj = x[j] == y[j] || (isnan(x[j]) && isnan(y[j])) ? 0 : fabs((double)x[j] - y[j]) / scale;
            e = isnan(dj) ? INFINITY : fmax(e, dj);   /* NaN on one side only */
        }
        if (!(e <= w)) { w = e; snprintf(worst, n, "%s", t->name); }
    }
    jm_st_free(&fa);
    jm_st_free(&fb);
    return w;
}

/* "energy" and "energy_start" of a `sample --json` file into e[0], e[1]; 0 when either is absent */
static int json_energies(const char *path, double e[2]) {
    char js[2048] = "";
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    size_t got = fread(js, 1, sizeof js - 1, f);
    js[got] = 0;
    fclose(f);
    const char *keys[2] = { "\"energy\": ", "\"energy_start\": " };
    for (int i = 0; i < 2; i++) {
        const char *k = strstr(js, keys[i]);
        char *end;
        if (!k) return 0;
        e[i] = strtod(k + strlen(keys[i]), &end);
        if (end == k + strlen(keys[i])) return 0;
    }
    return 1;
}

/* The commands on the GPU runtime, run against tests/fake_cuda.c (a CPU
   stand-in for the driver, cuBLAS and cuDNN): training, resuming, the NaN
   guard's rollback, sampling from the replay buffer and evaluation move the
   state between host and device correctly. The executable is linked with
   -rdynamic so the stand-in can run its CPU kernels for the PTX entries. */
static void test_fake_gpu(void) {
    char fake[512], cc[400], gexe[400];
    snprintf(fake, sizeof fake, "%s/tests/libfakecuda.so", jt_env("JM_BUILD", "build"));
    if (access(fake, R_OK) != 0) { skip(7, "the CPU stand-in for CUDA is not built"); return; }
    snprintf(cc, sizeof cc, "%s/cc-rdynamic", dir);
    FILE *f = fopen(cc, "w");
    if (f) { fprintf(f, "#!/bin/sh\nexec cc -rdynamic \"$@\"\n"); fclose(f); }
    chmod(cc, 0755);
    snprintf(gexe, sizeof gexe, "%s/tiny_gpu", dir);
    int r = run("JEMC_PTXAS= JEMC_CC=%s %s compile tests/train/tiny.graph --target cuda -o %s", cc, jemc, gexe);
    if (r && strstr(out, "libdevice")) { skip(7, "CUDA's libdevice is not installed (make deps-cuda fetches it)"); return; }
    ok(r == 0, "compile tests/train/tiny.graph --target cuda");
    if (r) { tap_diag("%s", out); skip(6, "no GPU executable"); return; }
    char env[1600];
    snprintf(env, sizeof env, "JEMC_LIBCUDA=%s JEMC_LIBCUBLAS=%s JEMC_LIBCUDNN=%s", fake, fake, fake);
    r = run("%s %s train --data %s/train-images-idx3-ubyte --iters 12 --out %s/gpu --seed 3 --no-progress --noise 0.03 --crop 1 --flip",
            env, gexe, dir, dir);
    ok(r == 0, "train 12 iterations on the (stand-in) GPU (exit %d)", r);
    if (r) tap_diag("%s", out);
    char p1[512], p2[512], why[600] = "";
    snprintf(p1, sizeof p1, "%s/gpu/last.safetensors", dir);
    snprintf(p2, sizeof p2, "%s/straight/last.safetensors", dir);
    double d = ckpt_diff(p1, p2, why, sizeof why);
    /* worst measured 5.2e-7 (opt.m.linear.bias); 12 steps at lr 1e-3 move the
       parameters by 1e-2 of their size, so a GPU that drops a state write is far off */
    ok(d < 1e-5, "its checkpoint matches the CPU run's, every tensor at its own scale (worst %.2g in %s)", d, why);
    int b = run("%s %s train --data %s/train-images-idx3-ubyte --iters 6 --out %s/ghalf --seed 3 --no-progress --noise 0.03 --crop 1 --flip",
                env, gexe, dir, dir);
    int c = run("%s %s train --data %s/train-images-idx3-ubyte --iters 12 --out %s/ghalf --resume %s/ghalf/last.safetensors --no-progress --noise 0.03 --crop 1 --flip",
                env, gexe, dir, dir, dir);
    snprintf(p2, sizeof p2, "%s/ghalf/last.safetensors", dir);
    why[0] = 0;
    ok(b == 0 && c == 0 && same_tensors(p1, p2, why, sizeof why), "on the GPU, 6 + resume + 6 == 12 straight, bitwise (%s)", why);
    /* exactly the CPU's one rollback (test_guard): a restore that the device's
       stale copy undid would roll back again, and give up at --max-rollbacks 1 */
    r = run("JEMC_TEST_INJECT_NAN=5 %s %s train --data %s/train-images-idx3-ubyte --iters 12 --guard-every 3 --max-rollbacks 1 --out %s/gnan --no-progress",
            env, gexe, dir, dir);
    snprintf(p2, sizeof p2, "%s/gnan/last.safetensors", dir);
    char cmd[700], cnt[64] = "";
    snprintf(cmd, sizeof cmd, "grep -c '\"event\": \"rollback\"' %s/gnan/metrics.jsonl", dir);
    static char gout[sizeof out];
    snprintf(gout, sizeof gout, "%s", out);
    jt_run(cmd, cnt, sizeof cnt);
    ok(r == 0 && strstr(gout, "rolled back from iteration 4 to 3") && all_finite(p2, NULL, 0) && atoi(cnt) == 1,
       "on the GPU, a NaN written into a parameter is caught and rolled back once, as on the CPU (exit %d, %d rollbacks)", r, atoi(cnt));
    if (r || atoi(cnt) != 1) tap_diag("%s", gout);
    r = run("%s %s sample --ckpt %s --from buffer --steps 2 --n 8 --out %s/gb.png --json %s/gb.json", env, gexe, p1, dir, dir);
    static char cpu_out[sizeof out];
    snprintf(cpu_out, sizeof cpu_out, "%s", out);
    int r2 = run("%s sample --ckpt %s --from buffer --steps 2 --n 8 --out %s/cb.png --json %s/cb.json", exe, p1, dir, dir);
    /* the energies from --json (%.6g): equal to float32 rounding plus that printing (1e-5 relative), both finite */
    double eg[2] = { NAN, NAN }, ec[2] = { NAN, NAN };
    char gj[600], cj[600];
    snprintf(gj, sizeof gj, "%s/gb.json", dir);
    snprintf(cj, sizeof cj, "%s/cb.json", dir);
    int got = json_energies(gj, eg) && json_energies(cj, ec);
    double worst = 0;
    for (int i = 0; i < 2; i++) worst = fmax(worst, fabs(eg[i] - ec[i]) / fmax(1, fmax(fabs(eg[i]), fabs(ec[i]))));
    ok(r == 0 && r2 == 0 && got && isfinite(eg[0]) && isfinite(eg[1]) && isfinite(ec[0]) && isfinite(ec[1]) && worst <= 1e-5,
       "sample --from buffer on the GPU reports the CPU's energies (samples %.6g vs %.6g, starting points %.6g vs %.6g)", eg[0], ec[0], eg[1], ec[1]);
    if (r || r2 || !got) tap_diag("GPU:\n%s\nCPU:\n%s", cpu_out, out);
}

/* tools/compare_samplers.sh on tests/train/tiny.graph (which imports
   graphs/lib/compare_samplers.graph): every sampler runs at the budget's steps
   (20 gradient evaluations: SGLD, PYLD, SADA 20 steps, MALA 10, HMC 4), the
   table has a row each, and the acceptance rates are rates (within [0, 100]%) */
static void test_compare_samplers(void) {
    char ck[512];
    snprintf(ck, sizeof ck, "%s/straight/last.safetensors", dir);
    int r = run("JEMC=%s GRAPH=tests/train/tiny.graph N=12 THREADS=1 DATA=%s/train-images-idx3-ubyte LABELS=%s/train-labels-idx1-ubyte "
                "tools/compare_samplers.sh mnist %s %s/cmp", jemc, dir, dir, ck, dir);
    ok(r == 0, "tools/compare_samplers.sh runs on tiny.graph (exit %d)", r);
    if (r) { tap_diag("%s", out); return; }
    char p[600];
    snprintf(p, sizeof p, "%s/cmp/table.md", dir);
    char *t = slurp(p, NULL);
    const char *rows[] = { "| sample | 20 | 20 |", "| sample_pyld | 20 | 20 |", "| sample_sada | 20 | 20 |", "| sample_mala | 10 | 20 |", "| sample_hmc | 4 | 20 |" };
    int all = t != NULL;
    for (int i = 0; t && i < 5; i++) all &= strstr(t, rows[i]) != NULL;
    ok(all, "the table has every sampler at 20 gradient evaluations");
    int rates = 0;
    for (const char *q = t; q && (q = strstr(q, "%")); q++) {
        const char *b = q;
        while (b > t && b[-1] != ' ') b--;
        double v = atof(b);
        rates += v >= 0 && v <= 100;
    }
    ok(rates == 2, "MALA's and HMC's acceptance are rates in [0, 100]%% (%d found)", rates);
    if (!all || rates != 2) tap_diag("%s", t ? t : "(no table)");
    free(t);
    r = run("JEMC=%s tools/compare_samplers.sh cifar10 %s", jemc, ck);
    ok(r == 2 && strstr(out, "mnist or cifar"), "an unknown model kind is refused");
}

int main(void) {
    jemc = jt_env("JEMC", "build/jemc");
    snprintf(dir, sizeof dir, "/tmp/jemc_train.XXXXXX");
    if (!mkdtemp(dir)) { skip_all("mkdtemp failed"); return 0; }
    char im[512], lb[512];
    snprintf(im, sizeof im, "%s/train-images-idx3-ubyte", dir);
    snprintf(lb, sizeof lb, "%s/train-labels-idx1-ubyte", dir);
    write_idx(im, lb, 64, 0);
    snprintf(im, sizeof im, "%s/bad-images-idx3-ubyte", dir);
    snprintf(lb, sizeof lb, "%s/bad-labels-idx1-ubyte", dir);
    write_idx(im, lb, 64, 3);
    snprintf(exe, sizeof exe, "%s/tiny", dir);
    int r = run("%s compile tests/train/tiny.graph -o %s", jemc, exe);
    ok(r == 0, "compile tests/train/tiny.graph");
    if (r) { tap_diag("%s", out); return tap_done(); }
    test_resume();
    test_kill9();
    test_guard();
    test_commands();
    test_compare_samplers();
    test_knobs();
    test_pgd_linear();
    test_torch();
    test_fake_gpu();
    char rm[300];
    snprintf(rm, sizeof rm, "rm -rf %s", dir);
    if (system(rm) != 0) tap_diag("could not remove %s", dir);
    return tap_done();
}
