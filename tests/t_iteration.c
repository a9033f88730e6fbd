/* t_iteration.c — whole JEM training iterations against PyTorch.
 *
 * One `train_step` (replay buffer draw with restarts, K SGLD steps kept in
 * [-1, 1], buffer write-back, CE + E(data) - E(samples), backward, Adam with
 * warm-up) and one `train_step_ce` of the SHIPPED graphs (graphs/jem_mnist.graph
 * and graphs/jem_wrn28.graph -D depth=10 -D widen=1) from the same weights,
 * data and replay buffer as tests/parity/torch_iteration.py, a PyTorch
 * implementation of the official JEM iteration (jem-spec.md sections 2-4).
 *
 * The random draws are shared by reproducing them: torch_iteration.py carries
 * jemc's Philox4x32-10 and reads each draw's stream id from
 * `jemc compile GRAPH train_step --dump=ir`, so jemc runs the shipped program
 * unchanged and PyTorch uses the same buffer indices, restart mask, restart
 * values and SGLD noise. The first check proves that Philox against jemc's
 * draws (tests/parity/iteration_draws.graph, in the interpreter and compiled).
 *
 * Every output and every state tensor after the step (parameters, opt.m.*,
 * opt.v.*, opt.step, opt.grad_norm, replay) is compared at its own scale,
 * max|got - want| / max|want|, and every updated tensor (parameters, replay)
 * also by its update: max|(got - before) - (want - before)| / max|want - before|
 * (an Adam step at warm-up moves a weight of 0.3 by 1e-7; that update must be
 * right, not hidden by the weight's scale).
 *   interpreter, --precision f64: both <= 1e-9 (measured ~1e-11 and below);
 *   compiled CPU code (jemc run --target cpu), f32: values <= 1e-4; updates:
 *   per element the error beyond what float32 can hold is <= 1e-4 of the
 *   largest update, where "what f32 can hold" is 1 ulp of the stored value
 *   (a weight of 0.3 has an ulp of 3e-8, 30% of a 1e-7 update) plus, for a
 *   parameter, the change of Adam's step explained by jemc's own (separately
 *   checked) moments: |A(m_got, v_got) - A(m_want, v_want)|, A the Adam update
 *   (it matters where |g| is near eps, where the step is g / (|g| + eps)).
 * JM_ITER_GRAPHS=DIR takes jem_mnist.graph and jem_wrn28.graph from DIR (for
 * mutation checks: a copy of graphs/ with a planted error must fail here).
 * The 50-iteration loss curve is bench/iteration_curve.sh. */
#include "tap.h"
#include "helpers.h"
#include "engine/safetensors.h"
#include "st_helpers.h"
#include <float.h>
#include <math.h>
#include <unistd.h>

static char tmpdir[256];


typedef struct {
    int f32;                          /* compiled float32 run: the allowances above */
    double lr_t, c1, c2, eps;         /* Adam's first step: lr_t, 1 - beta1, 1 - beta2 */
} jt_mode;

static double adam_delta(const jt_mode *m, double mm, double vv) {
    return -m->lr_t * (mm / m->c1) / (sqrt(vv / m->c2) + m->eps);
}

typedef struct { const jm_st_file *a, *b; } jt_pair;
static const jm_st_tensor *find2(jt_pair p, const char *name) {
    const jm_st_tensor *t = jm_st_find(p.a, name);
    return t ? t : p.b ? jm_st_find(p.b, name) : NULL;
}

/* Compares jemc's results (outputs and state-out) with PyTorch's expected tensors.
   Returns 0 when every tensor is within tol. */
static int compare(const char *what, jt_pair got, const jm_st_file *want, const jm_st_file *before, const jt_mode *mode,
                   double tol) {
    double worst_v = 0, worst_u = 0;
    char wv[160] = "", wu[160] = "";
    int bad = 0, missing = 0, updated = 0;
    for (int k = 0; k < want->n; k++) {
        const jm_st_tensor *w = &want->t[k], *g = find2(got, w->name);
        if (!g) { tap_diag("%s: jemc wrote no '%s'", what, w->name); missing++; continue; }
        if (!same_shape(g, w)) { tap_diag("%s: '%s' has another shape", what, w->name); bad++; continue; }
        size_t n = numel(w);
        double maxw = 0, maxd = 0;
        for (size_t i = 0; i < n; i++) {
            double gi = el(g, i), wi = el(w, i);
            if (!isfinite(gi)) { maxd = INFINITY; break; }
            maxd = fmax(maxd, fabs(gi - wi));
            maxw = fmax(maxw, fabs(wi));
        }
        double ev = maxw > 0 ? maxd / maxw : maxd;
        if (!(ev <= tol)) { tap_diag("%s: %s: max|jemc - torch| %.3g, max|torch| %.3g (rel %.3g)", what, w->name, maxd, maxw, ev); bad++; }
        if (ev >= worst_v) { worst_v = ev; snprintf(wv, sizeof wv, "%s", w->name); }
        /* the update of a tensor that was in the starting state (parameters, replay) */
        const jm_st_tensor *b = jm_st_find(before, w->name);
        if (!b || !same_shape(b, w)) continue;
        updated++;
        char mname[300], vname[300];
        snprintf(mname, sizeof mname, "opt.m.%s", w->name);
        snprintf(vname, sizeof vname, "opt.v.%s", w->name);
        const jm_st_tensor *mg = find2(got, mname), *vg = find2(got, vname), *mw = jm_st_find(want, mname), *vw = jm_st_find(want, vname);
        int adam = mg && vg && mw && vw && same_shape(mg, w) && same_shape(vg, w) && same_shape(mw, w) && same_shape(vw, w);
        double maxu = 0, maxe = 0;
        for (size_t i = 0; i < n; i++) maxu = fmax(maxu, fabs(el(w, i) - el(b, i)));
        for (size_t i = 0; i < n; i++) {
            double gi = el(g, i), wi = el(w, i), bi = el(b, i);
            double e = fabs((gi - bi) - (wi - bi));
            if (mode->f32) {
                e -= ulp32(wi);
                if (adam) e -= fabs(adam_delta(mode, el(mg, i), el(vg, i)) - adam_delta(mode, el(mw, i), el(vw, i)));
                e = fmax(e, 0);
            }
            maxe = fmax(maxe, isfinite(gi) ? e : INFINITY);
        }
        double eu = maxu > 0 ? maxe / maxu : maxe;
        if (!(eu <= tol)) { tap_diag("%s: %s: update error %.3g of the largest update %.3g (rel %.3g)", what, w->name, maxe, maxu, eu); bad++; }
        if (eu >= worst_u) { worst_u = eu; snprintf(wu, sizeof wu, "%s", w->name); }
    }
    /* jemc's state must hold nothing PyTorch lacks (but the run-time settings) */
    int extra = 0;
    const jm_st_file *files[2] = { got.a, got.b };
    for (int f = 0; f < 2; f++)
        for (int k = 0; files[f] && k < files[f]->n; k++)
            /* train_step and train_step_ce step `opt` */
            if (!st_reference_may_lack(&files[f]->t[k], "opt") && !jm_st_find(want, files[f]->t[k].name)) {
                tap_diag("%s: PyTorch has no '%s'", what, files[f]->t[k].name);
                extra++;
            }
    ok(missing == 0 && extra == 0 && want->n > 0, "%s: all %d tensors present on both sides (%d updated)", what, want->n, updated);
    return ok(bad == 0, "%s: every tensor within %g (worst value %.2g: %s; worst update %.2g: %s)", what, tol, worst_v, wv, worst_u, wu)
               ? 0 : -1;
}

static int read3(const char *p1, jm_st_file *f1, const char *p2, jm_st_file *f2, const char *p3, jm_st_file *f3) {
    char err[512];
    memset(f1, 0, sizeof *f1);
    if (f2) memset(f2, 0, sizeof *f2);
    if (f3) memset(f3, 0, sizeof *f3);
    if (jm_st_read(p1, f1, err, sizeof err) != 0 || (p2 && jm_st_read(p2, f2, err, sizeof err) != 0) ||
        (p3 && jm_st_read(p3, f3, err, sizeof err) != 0)) {
        tap_diag("%s", err);
        return -1;
    }
    return 0;
}

/* Python's Philox against jemc's draws: top level and in a sampler loop. */
static void draws_check(void) {
    char cmd[4096], out[16384], dir[400];
    const char *jemc = jt_env("JEMC", "build/jemc");
    snprintf(dir, sizeof dir, "%s/draws", tmpdir);
    snprintf(cmd, sizeof cmd, "mkdir -p %s && %s compile tests/parity/iteration_draws.graph draws --dump=ir > %s/ir.txt && "
             "/usr/bin/python3 tests/parity/torch_iteration.py --draws %s/ir.txt --jemc-seed 5 --out %s > /dev/null",
             dir, jemc, dir, dir, dir);
    if (!ok(jt_run(cmd, out, sizeof out) == 0, "draws: PyTorch side's Philox ran")) { tap_diag("%s\n%s", cmd, out); return; }
    const char *targets[] = { "interp", "cpu" };
    for (int t = 0; t < 2; t++) {
        snprintf(cmd, sizeof cmd, "%s run tests/parity/iteration_draws.graph draws --seed 5 --target %s --precision %s --out %s/%s.safetensors",
                 jemc, targets[t], t == 0 ? "f64" : "f32", dir, targets[t]);
        if (!ok(jt_run(cmd, out, sizeof out) == 0, "draws: jemc run --target %s", targets[t])) { tap_diag("%s\n%s", cmd, out); continue; }
        char pg[600], pw[600];
        snprintf(pg, sizeof pg, "%s/%s.safetensors", dir, targets[t]);
        snprintf(pw, sizeof pw, "%s/%s.safetensors", dir, t == 0 ? "draws" : "draws_f32");   /* float32 normals: philox_core.h */
        jm_st_file g, w, none;
        if (read3(pg, &g, pw, &w, NULL, &none) != 0) { ok(0, "draws: files read"); continue; }
        double worst = 0;
        int n = 0;
        for (int k = 0; k < w.n; k++) {
            const jm_st_tensor *gt = jm_st_find(&g, w.t[k].name);
            if (!gt || !same_shape(gt, &w.t[k])) { worst = INFINITY; tap_diag("draws: no '%s' of the right shape", w.t[k].name); continue; }
            for (size_t i = 0; i < numel(gt); i++) {
                double a = el(gt, i), b = el(&w.t[k], i);
                worst = fmax(worst, fabs(a - b) / fmax(1, fabs(b)));
            }
            n++;
        }
        /* f64: identical up to libm; f32: the draw rounded to float */
        ok(n == 5 && worst <= (t == 0 ? 1e-15 : 1e-7), "draws: %d draws of jemc (%s) are torch_iteration.py's Philox (worst %.2g)", n,
           targets[t], worst);
        jm_st_free(&g);
        jm_st_free(&w);
    }
}

typedef struct {
    const char *label, *graph, *defs, *ref;
    int seed;                         /* jemc --seed: chosen so that the draws restart chains and repeat an index */
} jt_case;

static void iteration_case(const jt_case *c, const char *program) {
    char dir[400], cmd[4096], out[16384], graph[512];
    const char *jemc = jt_env("JEMC", "build/jemc");
    const char *gdir = getenv("JM_ITER_GRAPHS");
    snprintf(graph, sizeof graph, "%s/%s", gdir && *gdir ? gdir : "graphs", c->graph);
    snprintf(dir, sizeof dir, "%s/%s_%s", tmpdir, c->label, program);
    snprintf(cmd, sizeof cmd, "mkdir -p %s && %s compile %s train_step --dump=ir %s > %s/ir.txt && "
             "/usr/bin/python3 tests/parity/torch_iteration.py %s --program %s --ir %s/ir.txt --seed 3 --jemc-seed %d --out %s",
             dir, jemc, graph, c->defs, dir, c->ref, program, dir, c->seed, dir);
    if (!ok(jt_run(cmd, out, sizeof out) == 0, "%s %s: PyTorch iteration computed", c->label, program)) { tap_diag("%s\n%s", cmd, out); return; }
    if (strstr(out, "first_draws")) tap_diag("%s %s: %s", c->label, program, strtok(out, "\n"));
    const char *targets[] = { "interp", "cpu" };
    for (int t = 0; t < 2; t++) {
        char what[200];
        snprintf(what, sizeof what, "%s %s %s %s", c->label, program, targets[t], t == 0 ? "f64" : "f32");
        snprintf(cmd, sizeof cmd, "%s run %s %s %s --target %s --precision %s --seed %d --state %s/state.safetensors "
                 "--in %s/inputs.safetensors --out %s/out_%s.safetensors --state-out %s/state_%s.safetensors",
                 jemc, graph, program, c->defs, targets[t], t == 0 ? "f64" : "f32", c->seed, dir, dir, dir, targets[t], dir, targets[t]);
        if (!ok(jt_run(cmd, out, sizeof out) == 0, "%s: jemc run", what)) { tap_diag("%s\n%s", cmd, out); continue; }
        char po[600], ps[600], pw[600], pb[600];
        snprintf(po, sizeof po, "%s/out_%s.safetensors", dir, targets[t]);
        snprintf(ps, sizeof ps, "%s/state_%s.safetensors", dir, targets[t]);
        snprintf(pw, sizeof pw, "%s/expected.safetensors", dir);
        snprintf(pb, sizeof pb, "%s/state.safetensors", dir);
        jm_st_file go, gs, want, before;
        if (read3(po, &go, ps, &gs, pw, &want) != 0 || read3(pb, &before, NULL, NULL, NULL, NULL) != 0) { ok(0, "%s: files read", what); continue; }
        /* the first Adam step of the shipped graphs: lr 1e-4, warm-up 1000, betas (0.9, 0.999), eps 1e-8 */
        jt_mode mode = { t == 1, 1e-4 * 1.0 / 1000.0, 1 - 0.9, 1 - 0.999, 1e-8 };
        compare(what, (jt_pair){ &go, &gs }, &want, &before, &mode, t == 0 ? 1e-9 : 1e-4);
        jm_st_free(&go);
        jm_st_free(&gs);
        jm_st_free(&want);
        jm_st_free(&before);
    }
}

int main(void) {
    char out[4096];
    if (jt_run("/usr/bin/python3 -c 'import torch, numpy'", out, sizeof out) != 0)
        skip_all("Debian's python3-torch is not installed (make deps installs it)");
    snprintf(tmpdir, sizeof tmpdir, "/tmp/jemc_iteration_XXXXXX");
    if (!mkdtemp(tmpdir)) skip_all("cannot create a temporary directory");
    draws_check();
    /* batch 4, a 16-entry buffer, 3 SGLD steps, half the chains restarted (so both
       paths of the where() run); WRN-10-1 also weighs the terms (JEM's --p_x_weight
       0.5) and adds the energy regulariser of lib/jem.graph */
    const jt_case cases[] = {
        { "mnist", "jem_mnist.graph", "-D batch=4 -D buffer_size=16 -D sgld_steps=3 -D reinit=0.5",
          "--model mnist --batch 4 --steps 3 --buffer 16 --reinit 0.5", 2 },
        { "wrn10-1", "jem_wrn28.graph",
          "-D batch=4 -D depth=10 -D widen=1 -D buffer_size=16 -D sgld_steps=3 -D reinit=0.5 -D px_weight=0.5 -D energy_reg=0.1",
          "--model wrn --depth 10 --widen 1 --batch 4 --steps 3 --buffer 16 --reinit 0.5 --px-weight 0.5 --energy-reg 0.1", 8 },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        iteration_case(&cases[i], "train_step");
        iteration_case(&cases[i], "train_step_ce");
    }
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    if (!getenv("JM_ITER_KEEP")) jt_run(cmd, out, sizeof out);
    return tap_done();
}
