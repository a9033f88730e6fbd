/* t_vera_train.c — the executable's train and sample commands on a VERA graph
 * (tests/train/tiny_vera.graph: the EBM of tiny.graph, a dense generator, a
 * learned sigma and posterior width, three optimizers with their own learning
 * rates lr, glr and post_lr) and synthetic IDX data written here:
 *
 *   1. train --program train_step_vera resumes bitwise (N straight == N/2 +
 *      resume + N/2 past a decay milestone, every tensor: both networks,
 *      sigma, the posterior width, three optimizers' moments and steps);
 *   2. every scalar output, each optimizer's gradient norm and each learning
 *      rate is logged; the schedule (--decay-epochs) and the guard's cuts
 *      (--lr-drop) apply to all three rates;
 *   3. a NaN in the generator or in the EBM rolls back to a state from which
 *      the run goes on as the run that never diverged: the final checkpoint is
 *      bitwise the same;
 *   4. the guard watches every optimizer's gradient norm: the generator's alone
 *      overflowing (loss finite, parameters finite) rolls back;
 *   5. train_step_vera_unsup (x alone) trains and resumes bitwise;
 *   6. sample --from generator, with and without MALA, class-conditional with
 *      --class: PNG sizes, acceptance in (0, 1], the step size's adaptation,
 *      determinism in --seed; missing programs and bad options are named. */
#include "train_helpers.h"
#include "tap.h"
#include <sys/stat.h>
#include <unistd.h>

static char dir[256], exe[320], data[320], tiny[320];

#define COMMON "--no-progress --seed 3"

/* the checkpoint of run directory d */
static const char *ck(const char *d) {
    static char p[4][512];
    static int k;
    k = (k + 1) % 4;
    snprintf(p[k], sizeof p[k], "%s/%s/last.safetensors", dir, d);
    return p[k];
}

/* the float at `key` of the metrics line of iteration `step` in run d (NAN when absent) */
static double metric(const char *d, long step, const char *key) {
    char p[512], want[64], k[96];
    snprintf(p, sizeof p, "%s/%s/metrics.jsonl", dir, d);
    snprintf(want, sizeof want, "{\"step\": %ld, \"epoch\"", step);
    snprintf(k, sizeof k, "\"%s\": ", key);
    char *text = slurp(p, NULL);
    double v = NAN;
    for (char *line = text; line && *line;) {
        char *nl = strchr(line, '\n');
        if (nl) *nl = 0;
        const char *at;
        if (strncmp(line, want, strlen(want)) == 0 && (at = strstr(line, k))) v = strtod(at + strlen(k), NULL);
        line = nl ? nl + 1 : NULL;
    }
    free(text);
    return v;
}

/* the f32 scalar `name` of a checkpoint, or NAN */
static double ck_scalar(const char *path, const char *name) {
    jm_st_file f;
    char err[512];
    memset(&f, 0, sizeof f);
    if (jm_st_read(path, &f, err, sizeof err) != 0) return NAN;
    const jm_st_tensor *t = jm_st_find(&f, name);
    double v = t && t->dtype == JM_ST_F32 && t->nbytes == 4 ? *(const float *)t->data : NAN;
    jm_st_free(&f);
    return v;
}

/* a copy of checkpoint `from` at `to` with f32 scalar `name` set to v; 0 ok */
static int ck_with(const char *from, const char *to, const char *name, float v) {
    jm_st_file f;
    char err[512];
    memset(&f, 0, sizeof f);
    if (jm_st_read(from, &f, err, sizeof err) != 0) return -1;
    int rc = -1;
    for (int i = 0; i < f.n; i++)
        if (strcmp(f.t[i].name, name) == 0 && f.t[i].dtype == JM_ST_F32 && f.t[i].nbytes == 4) { *(float *)f.t[i].data = v; rc = 0; }
    if (rc == 0) rc = jm_st_write(to, &f, err, sizeof err);
    jm_st_free(&f);
    return rc;
}

/* the checkpoint holds every tensor named in `names` (NULL-terminated); missing: the first absent */
static int ck_has(const char *path, const char *const *names, const char **missing) {
    jm_st_file f;
    char err[512];
    memset(&f, 0, sizeof f);
    *missing = "(unreadable)";
    if (jm_st_read(path, &f, err, sizeof err) != 0) return 0;
    int all = 1;
    for (int i = 0; names[i] && all; i++)
        if (!jm_st_find(&f, names[i])) { all = 0; *missing = names[i]; }
    jm_st_free(&f);
    return all;
}

static void test_resume(void) {
    const char *opts = "--program train_step_vera --decay-epochs 1 --decay-rate 0.5 " COMMON;
    int a = run("%s train --data %s --iters 20 --out %s/straight %s", exe, data, dir, opts);
    ok(a == 0, "train_step_vera: 20 iterations (exit %d)", a);
    if (a) tap_diag("%s", out);
    /* the half is past the milestone (epoch 1 = iteration 8): the resumed run
       must take the rates' bases from the checkpoint, not the decayed knobs */
    int b = run("%s train --data %s --iters 10 --out %s/half %s", exe, data, dir, opts);
    int c = run("%s train --iters 20 --resume %s --no-progress", exe, ck("half"));
    ok(b == 0 && c == 0, "10, then a bare --resume to 20 (exit %d, %d)", b, c);
    if (c) tap_diag("%s", out);
    char why[600], b1[64], b2[64];
    ok(same_tensors(ck("straight"), ck("half"), why, sizeof why), "20 straight == 10 + resume + 10, the rates decayed at 8: every tensor bitwise (%s)", why);
    const char *r1 = meta(ck("straight"), "jemc.rng_call", b1, sizeof b1), *r2 = meta(ck("half"), "jemc.rng_call", b2, sizeof b2);
    ok(r1 && r2 && strcmp(r1, r2) == 0, "and the same random-number position (%s, %s)", r1 ? r1 : "none", r2 ? r2 : "none");
    /* what the checkpoint holds: both networks, sigma, the posterior width, three optimizers' state */
    static const char *const held[] = { "conv1.weight", "linear.bias", "g1.weight", "g1.bias", "gen_sigma.log_sigma", "post.post_logsigma",
                                        "opt.m.conv1.weight", "opt.v.linear.bias", "opt.step", "opt_g.m.g1.weight", "opt_g.v.gen_sigma.log_sigma",
                                        "opt_g.step", "opt_post.m.post.post_logsigma", "opt_post.v.post.post_logsigma", "opt_post.step",
                                        "config.lr", "config.glr", "config.post_lr", NULL };
    const char *missing = "";
    ok(ck_has(ck("half"), held, &missing), "the checkpoint holds the EBM, the generator, sigma, the posterior width and the three optimizers' moments and steps (missing: %s)",
       missing);
    /* each optimizer updates its own parameters only (params=): no generator moments in the EBM's optimizer */
    static const char *const foreign[] = { "opt.m.g1.weight", NULL };
    ok(!ck_has(ck("half"), foreign, &missing), "the EBM's optimizer holds no generator moments (params=f)");
}

static void test_schedule(void) {
    int r = run("%s train --data %s --iters 16 --log-every 8 --program train_step_vera --decay-epochs 1 --decay-rate 0.5 --out %s/sched " COMMON,
                exe, data, dir);
    ok(r == 0, "16 iterations, rates halved at epoch 1 (exit %d)", r);
    if (r) tap_diag("%s", out);
    static const char *const keys[] = { "loss", "loss_ce", "loss_g", "e_data", "e_sample", "acc", "entropy", "sigma",
                                        "grad_norm.opt", "grad_norm.opt_g", "grad_norm.opt_post", "lr", "lr.glr", "lr.post_lr", NULL };
    int all = 1;
    for (int i = 0; keys[i]; i++)
        if (!isfinite(metric("sched", 8, keys[i]))) { all = 0; tap_diag("metrics line 8 has no %s", keys[i]); }
    ok(all, "every scalar output, each optimizer's gradient norm and each learning rate is logged");
    /* the knobs are f32: compare at their own precision */
    const char *rates[3] = { "lr", "lr.glr", "lr.post_lr" };
    const double base[3] = { 0.001, 0.002, 0.003 };
    int sched = 1;
    for (int k = 0; k < 3; k++) {
        double e0 = metric("sched", 8, rates[k]), e1 = metric("sched", 16, rates[k]);
        if (!(fabs(e0 - base[k]) <= 1e-6 * base[k]) || !(fabs(e1 - base[k] / 2) <= 1e-6 * base[k])) {
            sched = 0;
            tap_diag("%s: epoch 0 %.9g (want %g), epoch 1 %.9g (want %g)", rates[k], e0, base[k], e1, base[k] / 2);
        }
    }
    ok(sched, "--decay-epochs 1 --decay-rate 0.5 halves lr, glr and post_lr alike");
    double g = ck_scalar(ck("sched"), "config.glr");
    ok(fabs(g - 0.001) < 1e-9, "the checkpoint's config.glr is the scheduled 0.001 (%.9g)", g);
    char buf[64];
    ok(meta(ck("sched"), "jemc.train.lr_base.glr", buf, sizeof buf) && fabs(atof(buf) - 0.002) < 1e-9
       && meta(ck("sched"), "jemc.train.lr_base.post_lr", buf, sizeof buf) && fabs(atof(buf) - 0.003) < 1e-9,
       "and each rate's base (jemc.train.lr_base.glr, .post_lr)");
}

/* schedule=0: an optimizer whose rate the schedule leaves alone (VERA's
   posterior-width Adam); the other two rates still decay */
static void test_unscheduled(void) {
    int r = run("%s compile tests/train/tiny_vera.graph -D post_schedule=0 -o %s/fixed && %s/fixed train --data %s --iters 16 --log-every 8 "
                "--program train_step_vera --decay-epochs 1 --decay-rate 0.5 --out %s/fixedrun " COMMON, jemc, dir, dir, data, dir);
    ok(r == 0, "schedule=0 on opt_post: 16 iterations, rates halved at epoch 1 (exit %d)", r);
    if (r) { tap_diag("%s", out); return; }
    double lr = metric("fixedrun", 16, "lr"), glr = metric("fixedrun", 16, "lr.glr"), post = metric("fixedrun", 16, "lr.post_lr");
    ok(fabs(lr - 0.0005) <= 1e-9 && fabs(glr - 0.001) <= 1e-9 && isnan(post),
       "lr and glr halved (%.9g, %.9g), post_lr not a scheduled rate (lr.post_lr %.9g)", lr, glr, post);
    char p[512];
    snprintf(p, sizeof p, "%s/fixedrun/last.safetensors", dir);
    double v = ck_scalar(p, "config.post_lr");
    ok(fabs(v - 0.003) <= 1e-9, "config.post_lr keeps its 0.003 after the milestone (%.9g)", v);
}

static void test_rollback(void) {
    const char *opts = "--program train_step_vera --iters 14 --guard-every 6 --ckpt-every 0 " COMMON;
    int a = run("%s train --data %s --out %s/never %s", exe, data, dir, opts);
    /* a NaN in the generator's weights before iteration 10: back to the state at 6 */
    int b = run("JEMC_TEST_INJECT_NAN=10 JEMC_TEST_INJECT_NAN_GLOBAL=g1.weight %s train --data %s --out %s/nan_g --lr-drop 1 %s", exe, data, dir, opts);
    ok(a == 0 && b == 0 && strstr(out, "rolled back from iteration 9 to 6"), "a NaN in the generator before iteration 10 rolls back to 6 (exit %d, %d)", a, b);
    if (!strstr(out, "rolled back")) tap_diag("%s", out);
    char why[600], b1[64], b2[64];
    ok(same_tensors(ck("never"), ck("nan_g"), why, sizeof why),
       "with --lr-drop 1 the run ends bitwise as the run that never diverged: both networks and all optimizer state restored (%s)", why);
    meta_text(ck("never"), "jemc.rng_call", b1, sizeof b1);
    meta_text(ck("nan_g"), "jemc.rng_call", b2, sizeof b2);
    ok(strcmp(b1, b2) == 0, "at the same random-number position (%s, %s)", b1, b2);
    b = run("JEMC_TEST_INJECT_NAN=10 JEMC_TEST_INJECT_NAN_GLOBAL=conv1.weight %s train --data %s --out %s/nan_f --lr-drop 1 %s", exe, data, dir, opts);
    ok(b == 0 && strstr(out, "rolled back from iteration 9 to 6") && same_tensors(ck("never"), ck("nan_f"), why, sizeof why),
       "the same for a NaN in the EBM's weights (%s)", why);
    /* with the default --lr-drop 0.5 every rate is halved from the rollback on */
    b = run("JEMC_TEST_INJECT_NAN=10 JEMC_TEST_INJECT_NAN_GLOBAL=g1.weight %s train --data %s --out %s/halved --log-every 1 %s", exe, data, dir, opts);
    int halved = b == 0;
    const char *rates[3] = { "lr", "lr.glr", "lr.post_lr" };
    for (int k = 0; k < 3; k++) {
        double before = metric("halved", 6, rates[k]), after = metric("halved", 14, rates[k]);
        if (!(fabs(after - before / 2) <= 1e-6 * before)) { halved = 0; tap_diag("%s: %.9g before the rollback, %.9g after", rates[k], before, after); }
    }
    ok(halved, "the guard's cut halves lr, glr and post_lr alike");
    ok(all_finite(ck("halved"), why, sizeof why), "and the final checkpoint is finite (%s)", why);
}

static void test_grad_guard(void) {
    /* g_scale multiplies the generator's loss before its minimize only: its
       gradient's squared norm overflows to inf while the losses, the EBM's
       gradient and (Adam divides by sqrt(v) = inf) the parameters stay finite */
    int r = run("%s train --data %s --program train_step_vera --iters 6 --set g_scale=1e30 --max-rollbacks 1 --out %s/gn " COMMON, exe, data, dir);
    ok(r == 3 && strstr(out, "the gradient is not finite (opt_g.grad_norm)"), "the generator's gradient norm alone overflowing: the guard sees it and gives up (exit %d)", r);
    if (r != 3) tap_diag("%s", out);
    ok(strstr(out, "rolled back from iteration 0 to 0") && strstr(out, "--set lr=, glr=, post_lr=, sgld_lr="),
       "it rolled back first, and the hint names every learning rate");
}

static void test_unsup(void) {
    const char *opts = "--program train_step_vera_unsup " COMMON;
    int a = run("%s train --data %s --iters 8 --log-every 4 --out %s/unsup %s", exe, data, dir, opts);
    ok(a == 0, "train_step_vera_unsup (no labels) trains (exit %d)", a);
    if (a) tap_diag("%s", out);
    ok(isfinite(metric("unsup", 8, "loss_g")) && isfinite(metric("unsup", 8, "entropy")) && isnan(metric("unsup", 8, "acc")),
       "its metrics have loss_g and entropy, no accuracy");
    int b = run("%s train --data %s --iters 4 --out %s/unsup_half %s", exe, data, dir, opts);
    int c = run("%s train --iters 8 --resume %s --no-progress", exe, ck("unsup_half"));
    char why[600];
    ok(b == 0 && c == 0 && same_tensors(ck("unsup"), ck("unsup_half"), why, sizeof why), "and resumes bitwise (%s)", why);
    /* a training program with an input train cannot give */
    char g[512];
    snprintf(g, sizeof g, "%s/z.graph", dir);
    FILE *f = fopen(g, "w");
    fprintf(f, "model f(x: f32[8, 1, 8, 8]) -> f32[8] {\n    param w: f32[] = 1\n    return sum(reshape(x, [8, 64]), axis=1) * w\n}\n"
               "optimizer opt = adam(lr=0.1)\n"
               "program train_step(x: f32[8, 1, 8, 8], z: f32[8]) {\n    loss = mean(f(x) * z)\n    minimize loss with opt\n    output loss\n}\n");
    fclose(f);
    int r = run("%s compile %s -o %s/z && %s/z train --data %s --out %s/zrun --no-progress", jemc, g, dir, dir, data, dir);
    ok(r == 2 && strstr(out, "takes input 'z'"), "a training program with another input (z) is refused, naming it (exit %d)", r);
    if (r != 2) tap_diag("%s", out);
}

/* the float after `key` in a JSON file, NAN when absent or null */
static double json_num(const char *path, const char *key) {
    char *js = slurp(path, NULL), k[64];
    snprintf(k, sizeof k, "\"%s\": ", key);
    const char *at = js ? strstr(js, k) : NULL;
    double v = at && strncmp(at + strlen(k), "null", 4) != 0 ? strtod(at + strlen(k), NULL) : NAN;
    free(js);
    return v;
}

static void test_sample(void) {
    const char *c = ck("straight");
    char j[512], p1[512], p2[512], p3[512];
    int r = run("%s sample --ckpt %s --from generator --n 10 --nrow 5 --scale 1 --out %s/g0.png --json %s/g0.json", exe, c, dir, dir);
    ok(r == 0 && strstr(out, "10 samples from the generator"), "sample --from generator (exit %d)", r);
    if (r) tap_diag("%s", out);
    /* 5 x 2 cells of 8x8 with 2-pixel borders */
    ok(png_width(dir, "g0.png") == 52 && png_height(dir, "g0.png") == 22, "a 5 x 2 grid of 8x8 samples (%d x %d pixels, want 52 x 22)",
       png_width(dir, "g0.png"), png_height(dir, "g0.png"));
    snprintf(j, sizeof j, "%s/g0.json", dir);
    ok(isnan(json_num(j, "accept")) && isfinite(json_num(j, "energy")), "without MALA: no acceptance, the samples' mean energy");
    /* the latents are keyed by --seed: the same seed gives the same grid, another a different one */
    r = run("%s sample --ckpt %s --from generator --n 10 --nrow 5 --scale 1 --out %s/g0b.png && "
            "%s sample --ckpt %s --from generator --n 10 --nrow 5 --scale 1 --seed 1 --out %s/g0c.png", exe, c, dir, exe, c, dir);
    snprintf(p1, sizeof p1, "%s/g0.png", dir);
    snprintf(p2, sizeof p2, "%s/g0b.png", dir);
    snprintf(p3, sizeof p3, "%s/g0c.png", dir);
    size_t l1 = 0, l2 = 0, l3 = 0;
    char *x1 = slurp(p1, &l1), *x2 = slurp(p2, &l2), *x3 = slurp(p3, &l3);
    ok(r == 0 && x1 && x2 && x3 && l1 == l2 && memcmp(x1, x2, l1) == 0 && (l1 != l3 || memcmp(x1, x3, l1) != 0),
       "the same --seed draws the same samples, --seed 1 others");
    free(x1); free(x2); free(x3);
    /* with sigma = e^-30 a sample is G(h): grids from --seed 0 and 1 differ by
       the runtime's latents h alone (eps inside generate is multiplied away) */
    char sig[512];
    snprintf(sig, sizeof sig, "%s/nosigma.safetensors", dir);
    r = ck_with(c, sig, "gen_sigma.log_sigma", -30) != 0 ? -1
      : run("%s sample --ckpt %s --from generator --n 10 --scale 1 --out %s/h0.png && %s sample --ckpt %s --from generator --n 10 --scale 1 --seed 1 --out %s/h1.png",
            exe, sig, dir, exe, sig, dir);
    snprintf(p1, sizeof p1, "%s/h0.png", dir);
    snprintf(p2, sizeof p2, "%s/h1.png", dir);
    x1 = slurp(p1, &l1);
    x2 = slurp(p2, &l2);
    ok(r == 0 && x1 && x2 && (l1 != l2 || memcmp(x1, x2, l1) != 0), "the latents h are keyed by --seed (sigma ~ 0: G(h) alone differs)");
    if (r) tap_diag("%s", out);
    free(x1); free(x2);
    /* MALA: acceptance in (0, 1], the step size from 1/noise_dim adapted */
    r = run("%s sample --ckpt %s --from generator --n 10 --mala-steps 12 --out %s/g1.png --json %s/g1.json", exe, c, dir, dir);
    snprintf(j, sizeof j, "%s/g1.json", dir);
    double acc = json_num(j, "accept"), e0 = json_num(j, "eta_start"), e1 = json_num(j, "eta");
    ok(r == 0 && strstr(out, "12 steps, mean acceptance") && acc > 0 && acc <= 1, "--mala-steps 12: mean acceptance %g in (0, 1] (exit %d)", acc, r);
    if (r) tap_diag("%s", out);
    ok(e0 == 0.25 && isfinite(e1) && e1 != e0, "the step size starts at 1/noise_dim = 0.25 and adapts (-> %g)", e1);
    /* the acceptance is the program's: a step size of 10 is never accepted, 1e-4 always */
    r = run("%s sample --ckpt %s --from generator --n 8 --mala-steps 2 --mala-eta 10 --out %s/g3.png --json %s/g3.json", exe, c, dir, dir);
    snprintf(j, sizeof j, "%s/g3.json", dir);
    double a_big = json_num(j, "accept");
    r |= run("%s sample --ckpt %s --from generator --n 8 --mala-steps 2 --mala-eta 1e-4 --out %s/g3.png --json %s/g3.json", exe, c, dir, dir);
    double a_small = json_num(j, "accept");
    ok(r == 0 && a_big < 0.2 && a_small > 0.8, "the acceptance is the proposals': %g with a step size of 10, %g with 1e-4", a_big, a_small);
    /* one step: eta' = eta + 0.02 (accept - 0.57) eta exactly (the acceptance of that step is the mean) */
    r = run("%s sample --ckpt %s --from generator --n 8 --mala-steps 1 --mala-eta 0.1 --out %s/g2.png --json %s/g2.json", exe, c, dir, dir);
    snprintf(j, sizeof j, "%s/g2.json", dir);
    acc = json_num(j, "accept");
    e0 = json_num(j, "eta_start");
    e1 = json_num(j, "eta");
    double want = 0.1 + 0.02 * (acc - 0.57) * 0.1;
    ok(r == 0 && e0 == 0.1 && fabs(e1 - want) <= 1e-6 * want, "--mala-eta 0.1, one step at acceptance %g: eta %.7g = 0.1 + 0.02 (%g - 0.57) 0.1 = %.7g", acc, e1, acc, want);
}

static void test_sample_class(void) {
    const char *c = ck("straight");
    char j[512];
    int r = run("%s sample --ckpt %s --from generator --n 4 --class 2 --mala-steps 5 --scale 1 --out %s/c2.png --json %s/c2.json", exe, c, dir, dir);
    snprintf(j, sizeof j, "%s/c2.json", dir);
    double m = json_num(j, "class_match"), acc = json_num(j, "accept");
    ok(r == 0 && strstr(out, "classifies") && m >= 0 && m <= 1 && acc > 0 && acc <= 1,
       "--class 2 --mala-steps 5: class-conditional MALA runs, acceptance %g, %g classified as class 2 (exit %d)", acc, m, r);
    if (r) tap_diag("%s", out);
    r = run("%s sample --ckpt %s --from generator --n 4 --mala-steps 5 --scale 1 --out %s/u2.png", exe, c, dir);
    char p1[512], p2[512];
    snprintf(p1, sizeof p1, "%s/c2.png", dir);
    snprintf(p2, sizeof p2, "%s/u2.png", dir);
    size_t l1 = 0, l2 = 0;
    char *x1 = slurp(p1, &l1), *x2 = slurp(p2, &l2);
    ok(r == 0 && x1 && x2 && (l1 != l2 || memcmp(x1, x2, l1) != 0), "its samples are not the unconditional chain's (same seed and latents)");
    free(x1); free(x2);
    r = run("%s sample --ckpt %s --from generator --n 3 --class all --mala-steps 2 --scale 1 --out %s/call.png", exe, c, dir);
    int h = png_height(dir, "call.png"), w = png_width(dir, "call.png");
    ok(r == 0 && h == 4 * 10 + 2 && w > 3 * 10 + 2, "--class all: a captioned row of 3 per class (%d x %d pixels)", w, h);
    r = run("%s sample --ckpt %s --from generator --class 1", exe, c);
    ok(r == 2 && strstr(out, "give --mala-steps N"), "--class without --mala-steps is refused: class-conditional samples need MALA");
    r = run("%s sample --ckpt %s --from generator --class 7 --mala-steps 2", exe, c);
    ok(r == 2 && strstr(out, "classes 0..3"), "--class 7 on a 4-class model is refused");
    r = run("%s sample --ckpt %s --from generator --steps 5", exe, c);
    ok(r == 2 && strstr(out, "--steps is for SGLD chains"), "--steps with --from generator is refused");
    r = run("%s sample --ckpt %s --mala-steps 5", exe, c);
    ok(r == 2 && strstr(out, "add --from generator"), "--mala-steps without --from generator is refused");
}

/* a graph without the generator's programs: each missing one is named */
static void test_missing(void) {
    int h = run("%s", exe);
    ok(h == 1 && strstr(out, "(this graph: --program train_step_vera (VERA))") && strstr(out, "(this graph: --from generator (VERA))"),
       "the executable's usage points a VERA graph's train and sample to their programs");
    int r = run("%s sample --from generator --out %s/m.png", tiny, dir);
    ok(r == 2 && strstr(out, "no program 'generate'") && strstr(out, "need program generate"), "no generate: named (exit %d)", r);
    if (r != 2) tap_diag("%s", out);
    r = run("%s sample --from generator --mala-steps 3 --out %s/m.png", tiny, dir);
    ok(r == 2 && strstr(out, "no program 'mala_latent'"), "no mala_latent: named");
    r = run("%s sample --from generator --mala-steps 3 --class 1 --out %s/m.png", tiny, dir);
    ok(r == 2 && strstr(out, "no program 'mala_latent_cond'"), "no mala_latent_cond: named");
    r = run("%s train --data %s --program train_step_vera --out %s/m --no-progress", tiny, data, dir);
    ok(r == 2 && strstr(out, "no program 'train_step_vera'") && strstr(out, "train_step_ce"), "train --program train_step_vera on a JEM graph: named, the programs listed");
    /* a step size without steps would be ignored; one float32 cannot hold would give NaN samples */
    r = run("%s sample --from generator --mala-eta 0.1 --out %s/m.png", exe, dir);
    ok(r == 2 && strstr(out, "--mala-eta is the step size of --mala-steps N"), "--mala-eta without --mala-steps: refused (exit %d)", r);
    r = run("%s sample --from generator --mala-steps 2 --mala-eta 1e39 --out %s/m.png", exe, dir);
    ok(r == 2 && strstr(out, "--mala-eta"), "--mala-eta 1e39 (past float32): refused (exit %d)", r);
}

int main(void) {
    jemc = jt_env("JEMC", "build/jemc");
    snprintf(dir, sizeof dir, "/tmp/jemc_vera.XXXXXX");
    if (!mkdtemp(dir)) { skip_all("mkdtemp failed"); return 0; }
    char lb[512];
    snprintf(data, sizeof data, "%s/train-images-idx3-ubyte", dir);
    snprintf(lb, sizeof lb, "%s/train-labels-idx1-ubyte", dir);
    write_idx(data, lb, 64, 0);
    snprintf(exe, sizeof exe, "%s/tiny_vera", dir);
    snprintf(tiny, sizeof tiny, "%s/tiny", dir);
    int r = run("%s compile tests/train/tiny_vera.graph -o %s && %s compile tests/train/tiny.graph -o %s", jemc, exe, jemc, tiny);
    ok(r == 0, "compile tests/train/tiny_vera.graph and tiny.graph");
    if (r) { tap_diag("%s", out); return tap_done(); }
    test_resume();
    test_schedule();
    test_unscheduled();
    test_rollback();
    test_grad_guard();
    test_unsup();
    test_sample();
    test_sample_class();
    test_missing();
    char rm[300];
    snprintf(rm, sizeof rm, "rm -rf %s", dir);
    if (system(rm) != 0) tap_diag("could not remove %s", dir);
    return tap_done();
}
