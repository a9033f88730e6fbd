/* t_vera.c — VERA (graphs/lib/vera.graph, graphs/vera_mnist.graph) against PyTorch.
 *
 * tests/parity/torch_vera.py implements VERA from the official code's semantics
 * (models/generator.py's VERAGenerator: sample, logq_joint, entropy_obj with its
 * posterior-width ELBO; train.py's E-step loss and iteration; utils/hmc.py's
 * MALA) on vera_mnist's models, and jemc runs the same weights and draws:
 *
 * 1. pieces (tests/parity/vera_pieces.graph, the draws as inputs): the entropy
 *    surrogate, its detached score and its gradient with respect to every
 *    generator parameter (g.* and g.logsigma); the posterior width's -ELBO and
 *    its gradients; the EBM loss with p_control, n_control and the gradient
 *    penalty (double backward) and its gradients; the generator's batch-norm
 *    running statistics after the three training-mode forwards; one latent
 *    MALA step, unconditional and class-conditional (next state, acceptance,
 *    samples, log a). Twice: with a 4-d latent, sigma 0.3 and posterior width
 *    0.05, where the importance weights are far from one-hot (jem-spec 7.3a.10:
 *    PyTorch's effective sample size is checked to be >= 1.5 of K = 5), and at
 *    the shipped sizes (128-d latent, K = 20, sigma 0.01: one-hot weights).
 *    Also VERA's tabular generator (tests/parity/vera_mlp.graph) in its three
 *    batch-norm modes with its parameter gradients and running statistics.
 * 2. one whole train_step_vera (and train_step_vera_unsup) as shipped: the draws
 *    are jemc's Philox, reproduced by torch_vera.py from the stream ids of
 *    `jemc compile GRAPH PROGRAM --dump=ir` (t_iteration checks that Philox);
 *    every output, every parameter, every moment and step of the three Adams,
 *    their grad norms and the batch norms' buffers after the step. Cases: the
 *    shipped hyperparameters at batch 4; a small latent with ent_weight 1, the
 *    energy penalties on, and sigma starting at its upper bound 0.3, where the
 *    entropy pushes log sigma up and the clamp to [log 0.01, log 0.3] must hold
 *    it (PyTorch reports that its clamp engaged); unsupervised.
 * 3. compiled CPU code against the interpreter (both f32) for generate,
 *    mala_latent and mala_latent_cond, which draw their own noise.
 *
 * Tolerances (every tensor at its own scale, max|got - want| / max|want|):
 * interpreter f64 1e-9; compiled f32 1e-4 against PyTorch's f64 where the
 * computation is well conditioned in float32 (the small pieces, the small
 * clamp step); where it is not (sigma 0.01, whose 1/sigma^2 = 1e4 amplifies
 * float32 rounding into the score, and scalar gradients that cancel) 1e-3 or
 * 1e-2, each with its measured errors in main (JM_VERA_SEED varies the draws).
 * Updated
 * tensors are also compared by their update (after - before) at the scale of
 * the largest update; for f32, per element, one float32 spacing of the stored
 * value and the change of Adam's step that jemc's own (separately checked)
 * moments explain are allowed (jem-spec 7.3a.11: with beta1 = 0 the first
 * step is lr * g / (|g| + eps), about lr * sign(g) where g is at rounding
 * level). Measured worst errors are in tests/parity/README.md.
 * JM_VERA_KEEP=1 keeps the temporary directory; JM_VERA_ROOT=DIR runs on a copy
 * (DIR/graphs, DIR/tests/parity/vera_pieces.graph) for mutation checks. */
#include "tap.h"
#include "helpers.h"
#include "engine/safetensors.h"
#include "st_helpers.h"
#include <float.h>
#include <math.h>
#include <unistd.h>

static char tmpdir[256];


/* an Adam's first step: learning rate (warm-up applied), 1 - beta1, 1 - beta2 */
typedef struct { const char *name; double lr_t, c1, c2; } jv_adam;

static double adam_delta(const jv_adam *a, double m, double v) { return -a->lr_t * (m / a->c1) / (sqrt(v / a->c2) + 1e-8); }

/* jemc's results: up to three files (outputs, state, ...) searched in order */
typedef struct { const jm_st_file *f[3]; } jv_pair;
static const jm_st_tensor *find2(jv_pair p, const char *name) {
    for (int i = 0; i < 3; i++) {
        const jm_st_tensor *t = p.f[i] ? jm_st_find(p.f[i], name) : NULL;
        if (t) return t;
    }
    return NULL;
}

/* Every tensor of `want` against jemc's (got), and every tensor that was in
   `before` by its update. adams: the optimizers whose moments explain a
   parameter's f32 update (NULL-terminated by name). Returns the failures. */
static int compare(const char *what, jv_pair got, const jm_st_file *want, const jm_st_file *before, int f32,
                   const jv_adam *adams, double tol) {
    double worst_v = 0, worst_u = 0;
    char wv[160] = "", wu[160] = "";
    int bad = 0, missing = 0, updated = 0;
    for (int k = 0; k < want->n; k++) {
        const jm_st_tensor *w = &want->t[k], *g = find2(got, w->name);
        if (!g) { tap_diag("%s: jemc wrote no '%s'", what, w->name); missing++; continue; }
        if (!same_shape(g, w)) { tap_diag("%s: '%s' has another shape", what, w->name); bad++; continue; }
        size_t n = numel(w);
        const jm_st_tensor *b = before ? jm_st_find(before, w->name) : NULL;
        if (b && !same_shape(b, w)) b = NULL;
        /* the Adam (if any) whose moments of this tensor explain an f32 update */
        const jv_adam *ad = NULL;
        const jm_st_tensor *mg = NULL, *vg = NULL, *mw = NULL, *vw = NULL;
        for (int a = 0; b && adams && adams[a].name && !ad; a++) {
            char mname[300], vname[300];
            snprintf(mname, sizeof mname, "%s.m.%s", adams[a].name, w->name);
            snprintf(vname, sizeof vname, "%s.v.%s", adams[a].name, w->name);
            mg = find2(got, mname), vg = find2(got, vname), mw = jm_st_find(want, mname), vw = jm_st_find(want, vname);
            if (mg && vg && mw && vw && same_shape(mg, w) && same_shape(vg, w) && same_shape(mw, w) && same_shape(vw, w)) ad = &adams[a];
        }
        /* value error; for an f32 Adam-updated parameter less the step difference
           that the moments explain (7.3a.11: a gradient at rounding level flips
           sign(g) and the first step by 2 lr), which the moments are checked for */
        double maxw = 0, maxd = 0;
        for (size_t i = 0; i < n; i++) {
            double gi = el(g, i), wi = el(w, i);
            if (!isfinite(gi) || !isfinite(wi)) { maxd = INFINITY; break; }
            double e = fabs(gi - wi);
            if (ad) e = fmax(0, e - (f32 ? ulp32(wi) : 0) - fabs(adam_delta(ad, el(mg, i), el(vg, i)) - adam_delta(ad, el(mw, i), el(vw, i))));
            maxd = fmax(maxd, e);
            maxw = fmax(maxw, fabs(wi));
        }
        /* the EBM's loss without the classifier's term is a difference of two
           energies that nearly cancel for an untrained f: held to their scale */
        if (strcmp(w->name, "loss") == 0)
            for (int j = 0; j < 2; j++) {
                const jm_st_tensor *part = jm_st_find(want, j ? "e_sample" : "e_data");
                if (part && numel(part) == 1) maxw = fmax(maxw, fabs(el(part, 0)));
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
            /* f32: one spacing of the stored value; both: the step change that
               the (separately checked) moments explain */
            if (f32) e -= ulp32(wi);
            if (ad) e -= fabs(adam_delta(ad, el(mg, i), el(vg, i)) - adam_delta(ad, el(mw, i), el(vw, i)));
            e = fmax(e, 0);
            maxe = fmax(maxe, isfinite(gi) ? e : INFINITY);
        }
        double eu = maxu > 0 ? maxe / maxu : maxe;
        if (!(eu <= tol)) { tap_diag("%s: %s: update error %.3g of the largest update %.3g (rel %.3g)", what, w->name, maxe, maxu, eu); bad++; }
        if (eu >= worst_u) { worst_u = eu; snprintf(wu, sizeof wu, "%s", w->name); }
    }
    ok(missing == 0 && want->n > 0, "%s: all %d tensors present (%d updated)", what, want->n, updated);
    ok(bad == 0, "%s: every tensor within %g (worst value %.2g: %s; worst update %.2g: %s)", what, tol, worst_v, wv, worst_u, wu);
    return bad + missing;
}

/* jemc's state must hold nothing PyTorch lacks (but the settings config.*) */
static void no_extra(const char *what, const jm_st_file *got, const jm_st_file *want) {
    int extra = 0;
    for (int k = 0; k < got->n; k++)
        if (strncmp(got->t[k].name, "config.", 7) != 0 && !jm_st_find(want, got->t[k].name)) {
            tap_diag("%s: PyTorch has no '%s'", what, got->t[k].name);
            extra++;
        }
    ok(extra == 0, "%s: jemc's state holds nothing PyTorch's lacks", what);
}



static const char *jemc(void) { return jt_env("JEMC", "build/jemc"); }
/* JM_VERA_SEED=N: PyTorch's seed (weights, data) N and jemc's N + 7 instead of
   0 and 7, to see how the errors vary with the draws */
static int seed(void) { return atoi(jt_env("JM_VERA_SEED", "0")); }
/* JM_VERA_ROOT=DIR takes DIR/graphs/ and DIR/tests/parity/vera_pieces.graph (which
   imports ../../graphs/vera_mnist.graph) instead of the checkout's: for mutation
   checks, a copy with a planted error must fail here */
static const char *root(void) { return jt_env("JM_VERA_ROOT", "."); }

typedef struct {
    const char *label, *defs, *ref;   /* jemc -D settings; torch_vera.py options (the same model and weights) */
    double min_ess;                   /* pieces: PyTorch's mean effective sample size must reach this (0: no check) */
    double f32_tol;                   /* compiled f32 against PyTorch (0: 1e-4) */
} jv_case;

/* 1. the pieces: vera_pieces (state-writing: BN buffers) and vera_mala_pieces */
static void pieces_case(const jv_case *c) {
    char dir[300], cmd[8000], out[16384], graph[400];
    snprintf(graph, sizeof graph, "%s/tests/parity/vera_pieces.graph", root());
    snprintf(dir, sizeof dir, "%s/pieces_%s", tmpdir, c->label);
    snprintf(cmd, sizeof cmd, "mkdir -p %s && /usr/bin/python3 tests/parity/torch_vera.py --mode pieces %s --seed %d --out %s", dir, c->ref, seed(), dir);
    if (!ok(jt_run(cmd, out, sizeof out) == 0, "pieces %s: PyTorch computed", c->label)) { tap_diag("%s\n%s", cmd, out); return; }
    if (c->min_ess > 0) {
        double ess = json_num(out, "ess_mean"), wmax = json_num(out, "w_max");
        ok(ess >= c->min_ess && wmax < 0.99, "pieces %s: the importance weights are not one-hot (ESS %.2f, largest weight %.3f)", c->label, ess, wmax);
    }
    jm_st_file want, before;
    char pw[600], pb[600];
    snprintf(pw, sizeof pw, "%s/expected.safetensors", dir);
    snprintf(pb, sizeof pb, "%s/state.safetensors", dir);
    if (readf(pw, &want) != 0 || readf(pb, &before) != 0) { ok(0, "pieces %s: files read", c->label); return; }
    const char *targets[] = { "interp", "cpu" };
    for (int t = 0; t < 2; t++) {
        char what[200], po[400], ps[400], pm[400];
        snprintf(what, sizeof what, "pieces %s %s %s", c->label, targets[t], t == 0 ? "f64" : "f32");
        snprintf(po, sizeof po, "%s/out_%s.safetensors", dir, targets[t]);
        snprintf(ps, sizeof ps, "%s/state_%s.safetensors", dir, targets[t]);
        snprintf(pm, sizeof pm, "%s/mala_%s.safetensors", dir, targets[t]);
        snprintf(cmd, sizeof cmd, "%s run %s vera_pieces %s --target %s --precision %s --state %s --in %s/inputs.safetensors --out %s --state-out %s && "
                 "%s run %s vera_mala_pieces %s --target %s --precision %s --state %s --in %s/inputs.safetensors --out %s",
                 jemc(), graph, c->defs, targets[t], t == 0 ? "f64" : "f32", pb, dir, po, ps,
                 jemc(), graph, c->defs, targets[t], t == 0 ? "f64" : "f32", pb, dir, pm);
        if (!ok(jt_run(cmd, out, sizeof out) == 0, "%s: jemc ran", what)) { tap_diag("%s\n%s", cmd, out); continue; }
        jm_st_file go, gs, gm;
        if (readf(po, &go) != 0 || readf(ps, &gs) != 0 || readf(pm, &gm) != 0) { ok(0, "%s: files read", what); continue; }
        /* the outputs of both programs and the buffers the first one wrote */
        compare(what, (jv_pair){ { &go, &gm, &gs } }, &want, NULL, t == 1, NULL, t == 0 ? 1e-9 : c->f32_tol > 0 ? c->f32_tol : 1e-4);
        /* every other global must come back as it was (no minimize here): the
           parameters as the file gave them (rounded to f32 in f32), the other
           programs' optimizer state at its initial zeros */
        int bad = 0;
        for (int k = 0; k < gs.n; k++) {
            const jm_st_tensor *g = &gs.t[k], *b = jm_st_find(&before, g->name);
            if (strncmp(g->name, "config.", 7) == 0 || jm_st_find(&want, g->name)) continue;
            if (b && !same_shape(b, g)) { tap_diag("%s: state '%s' has another shape than PyTorch's", what, g->name); bad++; continue; }
            for (size_t i = 0; i < numel(g); i++) {
                double w0 = b ? el(b, i) : 0;
                if (fabs(el(g, i) - w0) > (t == 0 ? 0 : ulp32(w0))) { tap_diag("%s: %s[%zu] changed", what, g->name, i); bad++; break; }
            }
        }
        ok(bad == 0, "%s: the parameters come back unchanged (%d state tensors)", what, gs.n);
        jm_st_free(&go);
        jm_st_free(&gs);
        jm_st_free(&gm);
    }
    jm_st_free(&want);
    jm_st_free(&before);
}

/* 2. one train_step_vera (or _unsup) as shipped, the draws reproduced */
static void step_case(const jv_case *c, const char *program, const jv_adam *adams, int want_clamp) {
    char dir[300], cmd[8000], out[16384], graph[400];
    snprintf(graph, sizeof graph, "%s/graphs/vera_mnist.graph", root());
    snprintf(dir, sizeof dir, "%s/%s_%s", tmpdir, program, c->label);
    snprintf(cmd, sizeof cmd, "mkdir -p %s && %s compile %s %s --dump=ir %s > %s/ir.txt && "
             "/usr/bin/python3 tests/parity/torch_vera.py --mode step --program %s %s --ir %s/ir.txt --seed %d --jemc-seed %d --out %s",
             dir, jemc(), graph, program, c->defs, dir, program, c->ref, dir, seed(), seed() + 7, dir);
    if (!ok(jt_run(cmd, out, sizeof out) == 0, "%s %s: PyTorch step computed", program, c->label)) { tap_diag("%s\n%s", cmd, out); return; }
    if (want_clamp)
        ok(strstr(out, "\"clamped\": true") != NULL, "%s %s: PyTorch's clamp of log sigma engaged", program, c->label);
    jm_st_file want, before;
    char pw[600], pb[600];
    snprintf(pw, sizeof pw, "%s/expected.safetensors", dir);
    snprintf(pb, sizeof pb, "%s/state.safetensors", dir);
    if (readf(pw, &want) != 0 || readf(pb, &before) != 0) { ok(0, "%s %s: files read", program, c->label); return; }
    const char *targets[] = { "interp", "cpu" };
    for (int t = 0; t < 2; t++) {
        char what[200], po[400], ps[400];
        snprintf(what, sizeof what, "%s %s %s %s", program, c->label, targets[t], t == 0 ? "f64" : "f32");
        snprintf(po, sizeof po, "%s/out_%s.safetensors", dir, targets[t]);
        snprintf(ps, sizeof ps, "%s/state_%s.safetensors", dir, targets[t]);
        snprintf(cmd, sizeof cmd, "%s run %s %s %s --target %s --precision %s --seed %d --state %s --in %s/inputs.safetensors --out %s --state-out %s",
                 jemc(), graph, program, c->defs, targets[t], t == 0 ? "f64" : "f32", seed() + 7, pb, dir, po, ps);
        if (!ok(jt_run(cmd, out, sizeof out) == 0, "%s: jemc ran", what)) { tap_diag("%s\n%s", cmd, out); continue; }
        jm_st_file go, gs;
        if (readf(po, &go) != 0 || readf(ps, &gs) != 0) { ok(0, "%s: files read", what); continue; }
        compare(what, (jv_pair){ { &go, &gs, NULL } }, &want, &before, t == 1, adams, t == 0 ? 1e-9 : c->f32_tol > 0 ? c->f32_tol : 1e-4);
        no_extra(what, &gs, &want);
        jm_st_free(&go);
        jm_st_free(&gs);
    }
    jm_st_free(&want);
    jm_st_free(&before);
}

/* VERA's tabular generator (mlp_generator) in its three batch-norm modes */
static void mlp_case(void) {
    char dir[300], cmd[8000], out[16384];
    snprintf(dir, sizeof dir, "%s/mlp", tmpdir);
    snprintf(cmd, sizeof cmd, "mkdir -p %s && /usr/bin/python3 tests/parity/torch_vera.py --mode mlp --batch 6 --noise-dim 5 --seed %d --out %s", dir, seed(), dir);
    if (!ok(jt_run(cmd, out, sizeof out) == 0, "mlp generator: PyTorch computed")) { tap_diag("%s\n%s", cmd, out); return; }
    jm_st_file want;
    char pw[400];
    snprintf(pw, sizeof pw, "%s/expected.safetensors", dir);
    if (readf(pw, &want) != 0) { ok(0, "mlp generator: files read"); return; }
    for (int t = 0; t < 2; t++) {
        char what[200], po[400], ps[400];
        snprintf(what, sizeof what, "mlp generator %s", t == 0 ? "interp f64" : "cpu f32");
        snprintf(po, sizeof po, "%s/out_%d.safetensors", dir, t);
        snprintf(ps, sizeof ps, "%s/state_%d.safetensors", dir, t);
        snprintf(cmd, sizeof cmd, "%s run %s/tests/parity/vera_mlp.graph mlp_pieces --target %s --precision %s --state %s/state.safetensors "
                 "--in %s/inputs.safetensors --out %s --state-out %s",
                 jemc(), root(), t == 0 ? "interp" : "cpu", t == 0 ? "f64" : "f32", dir, dir, po, ps);
        if (!ok(jt_run(cmd, out, sizeof out) == 0, "%s: jemc ran", what)) { tap_diag("%s\n%s", cmd, out); continue; }
        jm_st_file go, gs;
        if (readf(po, &go) != 0 || readf(ps, &gs) != 0) { ok(0, "%s: files read", what); continue; }
        compare(what, (jv_pair){ { &go, &gs, NULL } }, &want, NULL, t == 1, NULL, t == 0 ? 1e-9 : 1e-4);
        jm_st_free(&go);
        jm_st_free(&gs);
    }
    jm_st_free(&want);
}

/* 3. compiled against the interpreter, both f32, for the sampling programs */
static void compiled_case(const char *defs, const char *ref) {
    char dir[300], cmd[8000], out[16384], graph[400];
    snprintf(graph, sizeof graph, "%s/graphs/vera_mnist.graph", root());
    snprintf(dir, sizeof dir, "%s/compiled", tmpdir);
    snprintf(cmd, sizeof cmd, "mkdir -p %s && /usr/bin/python3 tests/parity/torch_vera.py --mode pieces %s --seed %d --out %s", dir, ref, seed(), dir);
    if (!ok(jt_run(cmd, out, sizeof out) == 0, "compiled: state and inputs written")) { tap_diag("%s\n%s", cmd, out); return; }
    const char *programs[] = { "generate", "mala_latent", "mala_latent_cond" };
    for (int p = 0; p < 3; p++) {
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
        snprintf(what, sizeof what, "compiled %s against the interpreter (f32)", programs[p]);
        /* outputs at 1e-4 of their scale; the state, which these programs must not
           write, bitwise */
        compare(what, (jv_pair){ { &f[1][0], NULL, NULL } }, &f[0][0], NULL, 0, NULL, 1e-4);
        int same = f[0][1].n == f[1][1].n;
        for (int k = 0; same && k < f[0][1].n; k++) {
            const jm_st_tensor *a = &f[0][1].t[k], *b = jm_st_find(&f[1][1], a->name);
            same = b && a->nbytes == b->nbytes && memcmp(a->data, b->data, a->nbytes) == 0;
        }
        ok(same, "compiled: %s leaves the same state as the interpreter, bitwise", programs[p]);
        /* the accept flags are 0 or 1, the samples finite */
        const jm_st_tensor *acc = jm_st_find(&f[1][0], "accept");
        if (acc) {
            int flags = 1;
            for (size_t i = 0; i < numel(acc); i++) flags &= el(acc, i) == 0 || el(acc, i) == 1;
            ok(flags, "compiled: %s's accept is 0 or 1 per chain", programs[p]);
        }
        for (int t = 0; t < 2; t++) { jm_st_free(&f[t][0]); jm_st_free(&f[t][1]); }
    }
}

int main(void) {
    char out[4096];
    if (jt_run("/usr/bin/python3 -c 'import torch, numpy'", out, sizeof out) != 0)
        skip_all("Debian's python3-torch is not installed (make deps installs it)");
    snprintf(tmpdir, sizeof tmpdir, "/tmp/jemc_vera_XXXXXX");
    if (!mkdtemp(tmpdir)) skip_all("cannot create a temporary directory");
    /* the small case: a 4-d latent, K = 5, sigma 0.3, posterior width 0.05 (softmax
       far from one-hot); MALA with eta 0.2 and the prior, so that log a ~ -2 */
    const jv_case small = { "small",
        "-D batch=4 -D noise_dim=4 -D post_samples=5 -D g_feats=8 -D p_control=0.2 -D n_control=0.3 -D mala_prior=0.5",
        "--batch 4 --noise-dim 4 --K 5 --g-feats 8 --sigma 0.3 --post-sigma 0.05 --p-control 0.2 --n-control 0.3 --eta 0.2 --mala-prior 0.5", 1.5, 0 };
    /* the shipped sizes; MALA as in the small case (without the prior an
       untrained f gives |log a| ~ 1e-3, a difference float32 holds to ~3%).
       Compiled f32 at 1e-3: at sigma 0.01 the score (x - G(h'))/sigma^2 turns
       G's float32 rounding (~2e-7 absolute, GEMM and batch-norm sums in f32)
       into ~2e-3 absolute, and the last layer's bias gradient sums it over the
       image with ~100x cancellation: measured 2.4e-4 for gent.g.first.6.bias
       (PyTorch's own float32 1.3e-5, the interpreter's f32, which sums in
       double, 5e-6); the small case, sigma 0.3, holds 1e-4. */
    const jv_case shipped = { "shipped", "-D batch=4 -D mala_prior=0.5", "--batch 4 --eta 0.2 --mala-prior 0.5", 0, 1e-3 };
    pieces_case(&small);
    pieces_case(&shipped);
    mlp_case();
    /* train_step_vera's optimizers at their first step: the shipped rates with
       warm-up 1000 for opt and opt_g, none for opt_post */
    const jv_adam adams[] = { { "opt", 1e-4 / 1000, 1, 0.1 }, { "opt_g", 2e-4 / 1000, 1, 0.1 }, { "opt_post", 1e-4, 0.1, 0.001 }, { NULL, 0, 0, 0 } };
    /* compiled f32 at 1e-2: at sigma 0.01 the G-step's gradients carry the
       score's 1/sigma^2 amplification, and a scalar such as the last layer's bias
       gradient sums it with cancellation; measured over JM_VERA_SEED 0-5: worst
       2.9e-3 (opt_g.v.g.first.6.bias; PyTorch's own float32 2e-4 there) */
    step_case(&(jv_case){ "shipped", "-D batch=4", "--batch 4", 0, 1e-2 }, "train_step_vera", adams, 0);
    /* ten times the rates and no warm-up, so that the E-step moves f by ~1e-3 and a
       G-step that read the old f would show in float32 too */
    const jv_adam fast[] = { { "opt", 1e-3, 1, 0.1 }, { "opt_g", 2e-3, 1, 0.1 }, { "opt_post", 1e-3, 0.1, 0.001 }, { NULL, 0, 0, 0 } };
    const char *fast_d = "-D warmup=1 -D lr=0.001 -D glr=0.002 -D post_lr=0.001", *fast_r = "--warmup 1 --lr 0.001 --glr 0.002 --post-lr 0.001";
    char d1[600], r1[600], d2[600], r2[600];
    snprintf(d1, sizeof d1, "-D batch=4 -D noise_dim=4 -D post_samples=5 -D g_feats=8 -D p_control=0.2 -D n_control=0.3 -D ent_weight=1.0 %s", fast_d);
    snprintf(r1, sizeof r1, "--batch 4 --noise-dim 4 --K 5 --g-feats 8 --sigma 0.3 --post-sigma 0.05 --p-control 0.2 --n-control 0.3 --ent-weight 1 %s", fast_r);
    step_case(&(jv_case){ "small_clamp", d1, r1, 0, 0 }, "train_step_vera", fast, 1);
    snprintf(d2, sizeof d2, "-D batch=4 -D noise_dim=4 -D post_samples=5 -D g_feats=8 %s", fast_d);
    snprintf(r2, sizeof r2, "--batch 4 --noise-dim 4 --K 5 --g-feats 8 --sigma 0.2 --post-sigma 0.05 --ent-weight 1 %s", fast_r);
    /* compiled f32 at 3e-3: with ent_weight 1 the last layer's bias gradient
       nearly cancels: measured 3.8e-4 (opt_g.v.g.first.6.bias, seed 0; jemc's
       interpreter in f32 1.2e-4, PyTorch's float32 2.9e-5), <= 7.4e-5 for seeds
       1-5, on an AVX-512 machine; 1.7e-3 on an AVX2 one (AMD EPYC: the sums'
       partial sums 8 lanes wide, not 16, round differently) */
    step_case(&(jv_case){ "unsup", d2, r2, 0, 3e-3 }, "train_step_vera_unsup", fast, 0);
    compiled_case("-D batch=4 -D noise_dim=4 -D g_feats=8", "--batch 4 --noise-dim 4 --K 5 --g-feats 8 --sigma 0.3 --post-sigma 0.05");
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    if (!getenv("JM_VERA_KEEP")) jt_run(cmd, out, sizeof out);
    return tap_done();
}
