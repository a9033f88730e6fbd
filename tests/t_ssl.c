/* t_ssl.c — the semi-supervised tabular graph (graphs/ssl_tabular.graph,
 * graphs/lib/vat.graph) against PyTorch, and its compiled code against the
 * interpreter.
 *
 * tests/parity/torch_ssl.py implements VERA's code (utils/vat.py VATLoss,
 * train.py's --vat, --jem_baseline and VERA E-step with labels_per_class > 0,
 * models/mlp.py large_mlp_ebm) on the same weights and inputs:
 *
 * 1. pieces (tests/parity/ssl_pieces.graph, the draws as inputs): the VAT
 *    step's loss (clf_weight CE on the labelled batch + clf_ent_weight mean
 *    entropy of p(y|x) + vat_weight LDS on the unlabelled batch), its parts,
 *    the adversarial direction after the power iteration, and the gradients of
 *    the loss and of the LDS alone with respect to every parameter; the EBM
 *    loss that train_step_jem (SGLD negatives) and train_step_vera (generator
 *    negatives) minimise, with the gradient penalty (double backward), the
 *    energy penalties and the classifier-entropy term, its log p(x) of data
 *    and negatives, and the gradients of the loss and of the entropy term.
 *    Small widths (6 -> 16 -> 12 -> 12 -> 8 -> 8 -> 8 -> 3) with every weight
 *    set apart from 1 (clf_weight 2, clf_ent_weight 0.5, vat_weight 1.5,
 *    p_control 0.2, n_control 0.3), and the shipped widths
 *    (15 -> 1000 -> 500 -> 500 -> 250 -> 250 -> 250 -> 2, shipped weights).
 *    The labelled batch (4 rows) differs from the unlabelled one (5 rows).
 * 2. one whole train_step_vat, train_step_jem and train_step_vera: their
 *    draws are jemc's Philox, reproduced by torch_ssl.py from the stream ids
 *    of `jemc compile ... --dump=ir` (VAT's random start; JEM's buffer
 *    indices, restart test, fresh chains and SGLD noise; VERA's latents,
 *    output noise, posterior draws); every output, parameter, Adam moment,
 *    step and grad norm of each optimizer after the step, JEM's replay
 *    buffer, VERA's generator batch-norm statistics and log sigma.
 * 3. every program of graphs/ssl_tabular.graph (small widths) compiled for the
 *    CPU against the interpreter, both float32, from the same state and seed:
 *    every output and every global after the run (the four training steps:
 *    parameters, moments, the replay buffer, the generator's batch-norm
 *    statistics).
 * 4. `jemc info`: each optimizer takes the parameters it should (f's 14
 *    tensors, the generator's 12 with log sigma, the posterior width).
 * 5. the executable of a shrunk graph: each training program runs under
 *    `train --labels-per-class` on a small table written here (the input
 *    names train feeds), logs its metrics, eval reads a checkpoint; a program
 *    of x_lab without --labels-per-class is refused.
 *
 * Tolerances, each tensor at its own scale (max|got - want| / max|want|):
 * interpreter f64 1e-9; compiled f32 1e-4. The EBM's weights are PyTorch's
 * initialisation times --gain (2 small, 1.5 shipped): at PyTorch's own
 * initialisation the shipped network's logits are ~1e-2 apart and the LDS is
 * a KL of 3e-6 between nearly equal distributions, a difference float32 holds
 * to ~1e-2 (measured 1.7e-2 for glds.logp_net.5.weight; PyTorch's float32
 * shares the cancellation); a trained classifier is the case that matters.
 * Measured worst errors: tests/parity/README.md. JM_SSL_SEED=N varies the
 * weights and data; JM_SSL_KEEP=1 keeps the temporary directory;
 * JM_SSL_ROOT=DIR takes DIR/graphs and DIR/tests/parity (mutation checks). */
#include "tap.h"
#include "helpers.h"
#include "engine/safetensors.h"
#include "st_helpers.h"
#include <math.h>
#include "mpi_helpers.h"
#include <unistd.h>

static char tmpdir[256];

static const char *jemc(void) { return jt_env("JEMC", "build/jemc"); }
static int seed(void) { return atoi(jt_env("JM_SSL_SEED", "0")); }
static const char *root(void) { return jt_env("JM_SSL_ROOT", "."); }


/* jemc's results: up to two files (outputs, state) searched in order */
static const jm_st_tensor *find2(const jm_st_file *a, const jm_st_file *b, const char *name) {
    const jm_st_tensor *t = a ? jm_st_find(a, name) : NULL;
    return t ? t : b ? jm_st_find(b, name) : NULL;
}

/* an Adam at its first step: its name, rate (warm-up applied), 1 - beta1,
   1 - beta2; the step its moments m, v give */
typedef struct { const char *name; double lr_t, c1, c2; } js_adam;
static double adam_delta(const js_adam *a, double m, double v) { return -a->lr_t * (m / a->c1) / (sqrt(v / a->c2) + 1e-8); }

/* Every tensor of `want` against jemc's (outputs `go`, state `gs`): the value at
   the tensor's scale; where `before` has the tensor, also its update at the
   scale of the largest update. For a parameter with moments of one of `adams`
   (OPT.m.P, OPT.v.P; NULL-terminated by name) the difference of the steps that the two sides' moments give is
   allowed (with beta1 = 0 the first step is about lr sign(g): a gradient at
   rounding level flips it; the moments themselves are compared), and in f32
   one spacing of the stored value. Returns the failures. */
static int compare(const char *what, const jm_st_file *go, const jm_st_file *gs, const jm_st_file *want,
                   const jm_st_file *before, int f32, const js_adam *adams, double tol) {
    double worst_v = 0, worst_u = 0;
    char wv[160] = "", wu[160] = "";
    int bad = 0, missing = 0, updated = 0;
    for (int k = 0; k < want->n; k++) {
        const jm_st_tensor *w = &want->t[k], *g = find2(go, gs, w->name);
        if (!g) { tap_diag("%s: jemc wrote no '%s'", what, w->name); missing++; continue; }
        if (!same_shape(g, w)) { tap_diag("%s: '%s' has another shape", what, w->name); bad++; continue; }
        size_t n = numel(w);
        const jm_st_tensor *b = before ? jm_st_find(before, w->name) : NULL;
        if (b && !same_shape(b, w)) b = NULL;
        const js_adam *ad = NULL;
        const jm_st_tensor *mg = NULL, *vg = NULL, *mw = NULL, *vw = NULL;
        for (int j = 0; b && adams && adams[j].name && !ad; j++) {
            char mname[300], vname[300];
            snprintf(mname, sizeof mname, "%s.m.%s", adams[j].name, w->name);
            snprintf(vname, sizeof vname, "%s.v.%s", adams[j].name, w->name);
            mg = find2(go, gs, mname), vg = find2(go, gs, vname), mw = jm_st_find(want, mname), vw = jm_st_find(want, vname);
            if (mg && vg && mw && vw && same_shape(mg, w) && same_shape(vg, w) && same_shape(mw, w) && same_shape(vw, w)) ad = &adams[j];
        }
        double maxw = 0, maxd = 0;
        for (size_t i = 0; i < n; i++) {
            double gi = el(g, i), wi = el(w, i);
            if (!isfinite(gi) || !isfinite(wi)) { maxd = INFINITY; break; }
            double e = fabs(gi - wi);
            if (ad) e = fmax(0, e - (f32 ? ulp32(wi) : 0) - fabs(adam_delta(ad, el(mg, i), el(vg, i)) - adam_delta(ad, el(mw, i), el(vw, i))));
            maxd = fmax(maxd, e);
            maxw = fmax(maxw, fabs(wi));
        }
        double ev = maxw > 0 ? maxd / maxw : maxd;
        if (!(ev <= tol)) { tap_diag("%s: %s: max|jemc - torch| %.3g, max|torch| %.3g (rel %.3g)", what, w->name, maxd, maxw, ev); bad++; }
        if (ev >= worst_v) { worst_v = ev; snprintf(wv, sizeof wv, "%s", w->name); }
        if (!b) continue;
        updated++;
        double maxu = 0, maxe = 0;
        for (size_t i = 0; i < n; i++) maxu = fmax(maxu, fabs(el(w, i) - el(b, i)));
        for (size_t i = 0; i < n; i++) {
            double gi = el(g, i), wi = el(w, i), bi = el(b, i);
            double e = fabs((gi - bi) - (wi - bi));
            if (f32) e -= ulp32(wi);
            if (ad) e -= fabs(adam_delta(ad, el(mg, i), el(vg, i)) - adam_delta(ad, el(mw, i), el(vw, i)));
            maxe = fmax(maxe, isfinite(gi) ? fmax(e, 0) : INFINITY);
        }
        double eu = maxu > 0 ? maxe / maxu : maxe;
        if (!(eu <= tol)) { tap_diag("%s: %s: update error %.3g of the largest update %.3g (rel %.3g)", what, w->name, maxe, maxu, eu); bad++; }
        if (eu >= worst_u) { worst_u = eu; snprintf(wu, sizeof wu, "%s", w->name); }
    }
    ok(missing == 0 && want->n > 0, "%s: all %d tensors present (%d updated)", what, want->n, updated);
    ok(bad == 0, "%s: every tensor within %g (worst value %.2g: %s; worst update %.2g: %s)", what, tol, worst_v, wv, worst_u, wu);
    return bad + missing;
}

/* the small widths, in jemc's -D and torch_ssl.py's options */
#define SMALL_D "-D batch=5 -D lab_batch=4 -D features=6 -D classes=3 -D hidden1=16 -D hidden2=12 -D hidden3=12 " \
                "-D hidden4=8 -D hidden5=8 -D hidden6=8 -D noise_dim=4 -D g_hidden=8"
#define SMALL_R "--batch 5 --lab-batch 4 --features 6 --classes 3 --hidden 16,12,12,8,8,8 --noise-dim 4 --g-hidden 8"

typedef struct { const char *label, *defs, *ref; } js_case;

/* 1. the losses and their gradients, interpreter f64 and compiled f32 */
static void pieces_case(const js_case *c) {
    char dir[300], cmd[8000], out[16384];
    snprintf(dir, sizeof dir, "%s/pieces_%s", tmpdir, c->label);
    snprintf(cmd, sizeof cmd, "mkdir -p %s && /usr/bin/python3 tests/parity/torch_ssl.py --mode pieces %s --seed %d --out %s", dir, c->ref, seed(), dir);
    if (!ok(jt_run(cmd, out, sizeof out) == 0, "pieces %s: PyTorch computed", c->label)) { tap_diag("%s\n%s", cmd, out); return; }
    jm_st_file want;
    char pw[600];
    snprintf(pw, sizeof pw, "%s/expected.safetensors", dir);
    if (readf(pw, &want) != 0) { ok(0, "pieces %s: files read", c->label); return; }
    for (int t = 0; t < 2; t++) {
        char what[200], po[400];
        snprintf(what, sizeof what, "pieces %s %s", c->label, t == 0 ? "interp f64" : "cpu f32");
        snprintf(po, sizeof po, "%s/out_%d.safetensors", dir, t);
        snprintf(cmd, sizeof cmd, "%s run %s/tests/parity/ssl_pieces.graph ssl_pieces %s --target %s --precision %s --state %s/state.safetensors "
                 "--in %s/inputs.safetensors --out %s",
                 jemc(), root(), c->defs, t == 0 ? "interp" : "cpu", t == 0 ? "f64" : "f32", dir, dir, po);
        if (!ok(jt_run(cmd, out, sizeof out) == 0, "%s: jemc ran", what)) { tap_diag("%s\n%s", cmd, out); continue; }
        jm_st_file go;
        if (readf(po, &go) != 0) { ok(0, "%s: files read", what); continue; }
        compare(what, &go, NULL, &want, NULL, t == 1, NULL, t == 0 ? 1e-9 : 1e-4);
        jm_st_free(&go);
    }
    jm_st_free(&want);
}

/* 2. one whole training step (train_step_vat, train_step_jem), its draws reproduced */
static void step_case(const char *program, const char *extra_d, const char *extra_r, const js_adam *adams) {
    char dir[300], cmd[8000], out[16384], graph[400];
    /* ten times the rate and no warm-up, so that the step is ~1e-3 */
    char defs[1000];
    snprintf(defs, sizeof defs, SMALL_D " -D warmup=1 -D lr=0.001 %s", extra_d);
    snprintf(graph, sizeof graph, "%s/graphs/ssl_tabular.graph", root());
    snprintf(dir, sizeof dir, "%s/%s", tmpdir, program);
    snprintf(cmd, sizeof cmd, "mkdir -p %s && %s compile %s %s --dump=ir %s > %s/ir.txt && "
             "/usr/bin/python3 tests/parity/torch_ssl.py --mode step --program %s " SMALL_R " --gain 2 --warmup 1 --lr 0.001 %s --ir %s/ir.txt "
             "--seed %d --jemc-seed %d --out %s",
             dir, jemc(), graph, program, defs, dir, program, extra_r, dir, seed(), seed() + 7, dir);
    if (!ok(jt_run(cmd, out, sizeof out) == 0, "%s: PyTorch step computed", program)) { tap_diag("%s\n%s", cmd, out); return; }
    jm_st_file want, before;
    char pw[600], pb[600];
    snprintf(pw, sizeof pw, "%s/expected.safetensors", dir);
    snprintf(pb, sizeof pb, "%s/state.safetensors", dir);
    if (readf(pw, &want) != 0 || readf(pb, &before) != 0) { ok(0, "%s: files read", program); return; }
    for (int t = 0; t < 2; t++) {
        char what[200], po[400], ps[400];
        snprintf(what, sizeof what, "%s %s", program, t == 0 ? "interp f64" : "cpu f32");
        snprintf(po, sizeof po, "%s/out_%d.safetensors", dir, t);
        snprintf(ps, sizeof ps, "%s/state_%d.safetensors", dir, t);
        snprintf(cmd, sizeof cmd, "%s run %s %s %s --target %s --precision %s --seed %d --state %s --in %s/inputs.safetensors --out %s --state-out %s",
                 jemc(), graph, program, defs, t == 0 ? "interp" : "cpu", t == 0 ? "f64" : "f32", seed() + 7, pb, dir, po, ps);
        if (!ok(jt_run(cmd, out, sizeof out) == 0, "%s: jemc ran", what)) { tap_diag("%s\n%s", cmd, out); continue; }
        jm_st_file go, gs;
        if (readf(po, &go) != 0 || readf(ps, &gs) != 0) { ok(0, "%s: files read", what); continue; }
        compare(what, &go, &gs, &want, &before, t == 1, adams, t == 0 ? 1e-9 : 1e-4);
        jm_st_free(&go);
        jm_st_free(&gs);
    }
    jm_st_free(&want);
    jm_st_free(&before);
}

/* max|a - b| / max|b| per tensor of b, which must all be in a. With `before`
   (the state both runs started from), a tensor it holds is also compared by
   its change, at the scale of the largest change, less one float32 spacing per
   element (each side rounds what it stores); tensors whose name starts with
   one of `moved` (NULL-terminated) must have changed. */
static int same_files(const char *what, const jm_st_file *a, const jm_st_file *b, const jm_st_file *before,
                      const char *const *moved, double tol) {
    int bad = 0, changed = 0;
    double worst = 0, worst_c = 0;
    char wn[160] = "", wc[160] = "";
    for (int k = 0; k < b->n; k++) {
        const jm_st_tensor *w = &b->t[k], *g = jm_st_find(a, w->name);
        if (!g || !same_shape(g, w)) { tap_diag("%s: '%s' missing or of another shape", what, w->name); bad++; continue; }
        double maxw = 0, maxd = 0;
        for (size_t i = 0; i < numel(w); i++) {
            double gi = el(g, i), wi = el(w, i);
            maxd = fmax(maxd, isfinite(gi) && isfinite(wi) ? fabs(gi - wi) : INFINITY);
            maxw = fmax(maxw, fabs(wi));
        }
        double e = maxw > 0 ? maxd / maxw : maxd;
        if (!(e <= tol)) { tap_diag("%s: %s: rel %.3g", what, w->name, e); bad++; }
        if (e >= worst) { worst = e; snprintf(wn, sizeof wn, "%s", w->name); }
        const jm_st_tensor *o = before ? jm_st_find(before, w->name) : NULL;
        if (!o || !same_shape(o, w)) continue;
        /* moved: by more than the float32 rounding of a float64 start */
        double maxu = 0, maxe = 0;
        int moved_here = 0;
        for (size_t i = 0; i < numel(w); i++) {
            maxu = fmax(maxu, fabs(el(w, i) - el(o, i)));
            moved_here |= fabs(el(w, i) - el(o, i)) > ulp32(el(o, i));
        }
        for (size_t i = 0; i < numel(w); i++)
            maxe = fmax(maxe, fmax(0, fabs(el(g, i) - el(w, i)) - ulp32(el(w, i))));
        double eu = maxu > 0 ? maxe / maxu : maxe;
        if (!(eu <= tol)) { tap_diag("%s: %s: change error %.3g of the largest change %.3g (rel %.3g)", what, w->name, maxe, maxu, eu); bad++; }
        if (eu >= worst_c) { worst_c = eu; snprintf(wc, sizeof wc, "%s", w->name); }
        int want_move = 0;
        for (int m = 0; moved && moved[m]; m++) want_move |= strncmp(w->name, moved[m], strlen(moved[m])) == 0;
        if (want_move && !moved_here) { tap_diag("%s: %s did not change", what, w->name); bad++; }
        changed += moved_here;
    }
    ok(bad == 0 && a->n == b->n, "%s: %d tensors within %g (worst %.2g: %s; worst change %.2g: %s; %d changed)", what, b->n, tol, worst, wn,
       worst_c, wc, changed);
    return bad;
}

/* 3. every program compiled against the interpreter, both f32 */
static void compiled_case(void) {
    char dir[300], cmd[8000], out[16384], graph[400];
    snprintf(graph, sizeof graph, "%s/graphs/ssl_tabular.graph", root());
    snprintf(dir, sizeof dir, "%s/compiled", tmpdir);
    snprintf(cmd, sizeof cmd, "mkdir -p %s && /usr/bin/python3 tests/parity/torch_ssl.py --mode pieces " SMALL_R " --sigma 0.2 --seed %d --out %s", dir, seed(), dir);
    if (!ok(jt_run(cmd, out, sizeof out) == 0, "compiled: state and inputs written")) { tap_diag("%s\n%s", cmd, out); return; }
    /* VERA's sigma at 0.2, where float32 is well conditioned (at 0.01 the
       entropy's 1/sigma^2 amplifies rounding: t_vera), a small replay buffer,
       warm-up off so that the training steps move the parameters by lr */
    const char *defs = SMALL_D " -D buffer_size=50 -D sgld_steps=5 -D warmup=1 -D post_samples=5";
    const char *programs[] = { "train_step_ce", "train_step_vat", "train_step_jem", "train_step_vera", "logits", "energy",
                               "evaluate", "sgld_grad", "ce_grad", "sample", "generate" };
    /* what each training step must move: f (all four), the generator, its log
       sigma and the posterior width (VERA); the other programs nothing */
    static const char *const f_only[] = { "logp_net.", NULL }, *const vera[] = { "logp_net.", "g.", "post_logsigma", NULL };
    const char *const *moves[] = { f_only, f_only, f_only, vera };
    jm_st_file before;
    char pb[600];
    snprintf(pb, sizeof pb, "%s/state.safetensors", dir);
    if (readf(pb, &before) != 0) { ok(0, "compiled: state read"); return; }
    for (int p = 0; p < 11; p++) {
        jm_st_file f[2][2];
        int okf = 1;
        for (int t = 0; t < 2; t++) {
            const char *tg = t ? "cpu" : "interp";
            snprintf(cmd, sizeof cmd, "%s run %s %s %s --target %s --precision f32 --seed %d --state %s/state.safetensors --in %s/inputs.safetensors "
                     "--out %s/%s_%s.safetensors --state-out %s/%s_%s_state.safetensors",
                     jemc(), graph, programs[p], defs, tg, seed() + 3, dir, dir, dir, programs[p], tg, dir, programs[p], tg);
            if (!ok(jt_run(cmd, out, sizeof out) == 0, "compiled: %s runs (%s)", programs[p], tg)) { tap_diag("%s\n%s", cmd, out); okf = 0; continue; }
            char po[600], ps[600];
            snprintf(po, sizeof po, "%s/%s_%s.safetensors", dir, programs[p], tg);
            snprintf(ps, sizeof ps, "%s/%s_%s_state.safetensors", dir, programs[p], tg);
            if (readf(po, &f[t][0]) != 0 || readf(ps, &f[t][1]) != 0) okf = 0;
        }
        if (!okf) { ok(0, "compiled: %s files read", programs[p]); continue; }
        char what[200];
        snprintf(what, sizeof what, "compiled %s against the interpreter (f32): outputs", programs[p]);
        same_files(what, &f[1][0], &f[0][0], NULL, NULL, 1e-4);
        snprintf(what, sizeof what, "compiled %s against the interpreter (f32): state after the run", programs[p]);
        same_files(what, &f[1][1], &f[0][1], &before, p < 4 ? moves[p] : NULL, 1e-4);
        for (int t = 0; t < 2; t++) { jm_st_free(&f[t][0]); jm_st_free(&f[t][1]); }
    }
    jm_st_free(&before);
}

/* 4. the optimizers' parameter sets as `jemc info` reports them */
static void info_case(void) {
    char cmd[1000], out[16384];
    snprintf(cmd, sizeof cmd, "%s info %s/graphs/ssl_tabular.graph", jemc(), root());
    int rc = jt_run(cmd, out, sizeof out);
    ok(rc == 0 && strstr(out, "optimizer opt: params=\"logp_net\": 1018252 parameters in 14 tensors"),
       "info: opt trains f's 7 layers (14 tensors, 1,018,252 parameters at the shipped widths)");
    ok(rc == 0 && strstr(out, "optimizer opt_g: params=\"g\": 574516 parameters in 12 tensors"),
       "info: opt_g trains the generator's 4 linear layers, 3 batch norms and log sigma (12 tensors)");
    ok(rc == 0 && strstr(out, "optimizer opt_post: params=\"post_logsigma\": 128 parameters in 1 tensors"),
       "info: opt_post trains the posterior width alone");
    if (rc != 0 || !strstr(out, "1018252")) tap_diag("%s", out);
}

/* 5. the executable: each training program trains under `train
   --labels-per-class` on a small table (the inputs x, x_lab, y_lab are the
   names train feeds), logs its own metrics, and eval reads the checkpoint */
static void dp_case(const char *exe, const char *csv, const char *dir);
static void e2e_case(void) {
    char dir[300], cmd[8000], out[16384], exe[400], csv[400];
    snprintf(dir, sizeof dir, "%s/e2e", tmpdir);
    snprintf(exe, sizeof exe, "%s/ssl", dir);
    snprintf(csv, sizeof csv, "%s/t.csv", dir);
    snprintf(cmd, sizeof cmd, "mkdir -p %s", dir);
    jt_run(cmd, out, sizeof out);
    /* 60 records, 6 features, 3 classes: the label is the largest of the first three */
    FILE *f = fopen(csv, "w");
    if (!ok(f != NULL, "e2e: table written")) return;
    fprintf(f, "f0,f1,f2,f3,f4,f5,label\n");
    for (int r = 0; r < 60; r++) {
        double v[6];
        for (int c = 0; c < 6; c++) v[c] = sin(1.7 * r + 2.3 * c + 0.1 * r * c);
        int y = v[1] > v[0] ? (v[2] > v[1] ? 2 : 1) : (v[2] > v[0] ? 2 : 0);
        fprintf(f, "%.5f,%.5f,%.5f,%.5f,%.5f,%.5f,%d\n", v[0], v[1], v[2], v[3], v[4], v[5], y);
    }
    fclose(f);
    snprintf(cmd, sizeof cmd, "%s compile %s/graphs/ssl_tabular.graph -D batch=8 -D lab_batch=6 -D features=6 -D classes=3 -D hidden1=16 "
             "-D hidden2=12 -D hidden3=12 -D hidden4=8 -D hidden5=8 -D hidden6=8 -D noise_dim=4 -D g_hidden=8 -D buffer_size=50 "
             "-D sgld_steps=3 -D post_samples=5 -o %s", jemc(), root(), exe);
    if (!ok(jt_run(cmd, out, sizeof out) == 0, "e2e: the shrunk graph compiles to an executable")) { tap_diag("%s\n%s", cmd, out); return; }
    /* each program and the metrics only it writes */
    const char *progs[][3] = { { "train_step_ce", "\"loss_ce\"", "\"acc\"" }, { "train_step_vat", "\"vat\"", "\"clf_entropy\"" },
                               { "train_step_jem", "\"e_sample\"", "\"clf_entropy\"" }, { "train_step_vera", "\"loss_g\"", "\"sigma\"" } };
    for (int p = 0; p < 4; p++) {
        snprintf(cmd, sizeof cmd, "(%s train --data %s --labels-per-class 3 --program %s --iters 4 --log-every 2 --threads 1 --no-progress "
                 "--out %s/run_%s && cat %s/run_%s/metrics.jsonl)", exe, csv, progs[p][0], dir, progs[p][0], dir, progs[p][0]);
        int rc = jt_run(cmd, out, sizeof out);
        ok(rc == 0 && strstr(out, progs[p][1]) && strstr(out, progs[p][2]) && !strstr(out, "nan"),
           "e2e: train --labels-per-class 3 --program %s runs and logs %s and %s", progs[p][0], progs[p][1], progs[p][2]);
        if (rc != 0 || !strstr(out, progs[p][1])) tap_diag("%s\n%s", cmd, out);
    }
    snprintf(cmd, sizeof cmd, "%s eval accuracy --ckpt %s/run_train_step_vera/last.safetensors --data %s", exe, dir, csv);
    ok(jt_run(cmd, out, sizeof out) == 0 && strstr(out, "60 records: accuracy"), "e2e: eval accuracy reads the VERA checkpoint");
    snprintf(cmd, sizeof cmd, "%s train --data %s --program train_step_vat --iters 2 --no-progress --out %s/run_refused", exe, csv, dir);
    ok(jt_run(cmd, out, sizeof out) == 2 && strstr(out, "--labels-per-class"), "e2e: a program of x_lab without --labels-per-class is refused (exit 2)");
    dp_case(exe, csv, dir);
}

/* metric `key` logged at iteration `step` of a run's metrics.jsonl, or NAN */
static double logged_metric(const char *run, int step, const char *key) {
    char path[600], want[40], k[64], line[4096];
    snprintf(path, sizeof path, "%s/metrics.jsonl", run);
    snprintf(want, sizeof want, "{\"step\": %d,", step);
    snprintf(k, sizeof k, "\"%s\": ", key);
    FILE *f = fopen(path, "r");
    double v = NAN;
    while (f && fgets(line, sizeof line, f))
        if (strncmp(line, want, strlen(want)) == 0 && strstr(line, k)) v = strtod(strstr(line, k) + strlen(k), NULL);
    if (f) fclose(f);
    return v;
}
static double logged_loss(const char *run, int step) { return logged_metric(run, step, "loss"); }

/* Data parallelism with a labelled batch (docs/data-parallel.md): the JEM step
   at unlabelled 4 + labelled 3 with --accumulate 2 follows 8 + 6 within float
   rounding; VERA's two minimizes are refused with the reason. */
static void dp_case(const char *exe, const char *csv, const char *dir) {
    char cmd[6000], out[8192], half[600];
    snprintf(half, sizeof half, "%s_half", exe);
    snprintf(cmd, sizeof cmd, "%s compile %s/graphs/ssl_tabular.graph -D batch=4 -D lab_batch=3 -D features=6 -D classes=3 -D hidden1=16 "
             "-D hidden2=12 -D hidden3=12 -D hidden4=8 -D hidden5=8 -D hidden6=8 -D noise_dim=4 -D g_hidden=8 -D buffer_size=50 "
             "-D sgld_steps=3 -D post_samples=5 -o %s", jemc(), root(), half);
    if (!ok(jt_run(cmd, out, sizeof out) == 0, "dp: the graph at half the batches compiles")) { tap_diag("%s", out); return; }
    snprintf(cmd, sizeof cmd, "%s train --data %s --labels-per-class 3 --program train_step_jem --iters 6 --log-every 1 --threads 1 --no-progress "
             "--out %s/dp_whole && %s train --data %s --labels-per-class 3 --program train_step_jem --iters 6 --log-every 1 --threads 1 --no-progress "
             "--accumulate 2 --out %s/dp_acc", exe, csv, dir, half, csv, dir);
    int rc = jt_run(cmd, out, sizeof out);
    ok(rc == 0, "dp: train_step_jem at 8 + 6, and at 4 + 3 with --accumulate 2");
    if (rc) tap_diag("%s", out);
    char a[600], b[600];
    snprintf(a, sizeof a, "%s/dp_whole", dir);
    snprintf(b, sizeof b, "%s/dp_acc", dir);
    double worst = 0;
    for (int st = 1; st <= 6; st++) {
        double x = logged_loss(a, st), y = logged_loss(b, st), rel = fabs(x - y) / fmax(fabs(x), 1e-3);
        if (!(rel <= worst)) worst = isnan(rel) ? INFINITY : rel;
    }
    ok(worst <= 1e-5, "dp: the 6 iterations' losses agree within 1e-5 relative (worst %.3g): both batches are split", worst);
    snprintf(cmd, sizeof cmd, "%s train --data %s --labels-per-class 3 --program train_step_vera --iters 2 --threads 1 --no-progress --accumulate 2 --out %s/dp_vera",
             half, csv, dir);
    ok(jt_run(cmd, out, sizeof out) != 0 && strstr(out, "exchanges 2 times per step"),
       "dp: VERA's step (two minimizes: two exchanges) is refused with --accumulate, saying why");
    /* over 2 processes VERA runs: its generator's step after the EBM's */
    char why[1300], mpi[1024];
    if (!jt_mpi_usable(why, sizeof why)) { skip(2, why); return; }
    jt_mpi_prefix(mpi, sizeof mpi, 2, 1);
    snprintf(cmd, sizeof cmd, "%s train --data %s --labels-per-class 3 --program train_step_vera --iters 6 --log-every 1 --threads 1 --no-progress "
             "--out %s/dp_vera_whole && %s %s train --data %s --labels-per-class 3 --program train_step_vera --iters 6 --log-every 1 --no-progress "
             "--out %s/dp_vera_np2", exe, csv, dir, mpi, half, csv, dir);
    rc = jt_run(cmd, out, sizeof out);
    ok(rc == 0, "dp: VERA at 8 + 6 on one process, and at 4 + 3 on 2 processes");
    if (rc) tap_diag("%s", out);
    snprintf(a, sizeof a, "%s/dp_vera_whole", dir);
    snprintf(b, sizeof b, "%s/dp_vera_np2", dir);
    /* VERA's generator couples the batch (its batch norm, the entropy
       estimate over the batch's samples): shards are not the whole batch
       there (docs/data-parallel.md). Its first step's classifier terms are:
       the same data split and the same parameters on both sides */
    double x1 = logged_metric(a, 1, "loss_ce"), y1 = logged_metric(b, 1, "loss_ce");
    double x2 = logged_metric(a, 1, "e_data"), y2 = logged_metric(b, 1, "e_data");
    ok(fabs(x1 - y1) <= 1e-5 * fabs(x1) && fabs(x2 - y2) <= 1e-5 * fabs(x2) && isfinite(logged_metric(b, 6, "loss")),
       "dp: VERA over 2 processes: the first step's cross-entropy %.8g / %.8g and E(data) %.8g / %.8g agree; 6 steps finite", x1, y1, x2, y2);
}

int main(void) {
    char out[4096];
    if (jt_run("/usr/bin/python3 -c 'import torch, numpy'", out, sizeof out) != 0)
        skip_all("Debian's python3-torch is not installed (make deps installs it)");
    snprintf(tmpdir, sizeof tmpdir, "/tmp/jemc_ssl_XXXXXX");
    if (!mkdtemp(tmpdir)) skip_all("cannot create a temporary directory");
    info_case();
    pieces_case(&(js_case){ "small", SMALL_D " -D p_control=0.2 -D n_control=0.3 -D clf_weight=2.0 -D clf_ent_weight=0.5 -D vat_weight=1.5",
                            SMALL_R " --gain 2 --p-control 0.2 --n-control 0.3 --clf-weight 2 --clf-ent-weight 0.5 --vat-weight 1.5" });
    pieces_case(&(js_case){ "shipped", "-D batch=5 -D lab_batch=4",
                            "--batch 5 --lab-batch 4 --features 15 --hidden 1000,500,500,250,250,250 --classes 2 --noise-dim 128 --g-hidden 500 --gain 1.5" });
    /* the steps' Adams at lr 1e-3 (glr 2e-3) without warm-up; the posterior
       width's with PyTorch's default betas (0.9, 0.999) */
    const js_adam adams[] = { { "opt", 1e-3, 1, 0.1 }, { "opt_g", 2e-3, 1, 0.1 }, { "opt_post", 1e-3, 0.1, 0.001 }, { NULL, 0, 0, 0 } };
    step_case("train_step_vat", "", "", adams);
    /* JEM: a 50-chain buffer (PyTorch's, in the state), 5 SGLD steps of 1.0 */
    step_case("train_step_jem", "-D buffer_size=50 -D sgld_steps=5", "--buffer-size 50 --sgld-steps 5", adams);
    /* VERA: K = 5 posterior draws, sigma 0.2 (float32 well conditioned: at
       0.01 the score's 1/sigma^2 amplifies rounding, t_vera) */
    step_case("train_step_vera", "-D glr=0.002 -D post_lr=0.001 -D post_samples=5", "--glr 0.002 --post-lr 0.001 --sigma 0.2", adams);
    compiled_case();
    e2e_case();
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    if (!getenv("JM_SSL_KEEP")) jt_run(cmd, out, sizeof out);
    return tap_done();
}
