/* t_samplers.c — graphs/lib/samplers.graph (JEM++'s PYLD, SADA-JEM's clipped
 * SGLD, MALA with a fixed or adapted step, HMC) against PyTorch, against exact
 * Gaussian facts, and compiled against the interpreter.
 *
 * 1. Parity (tests/parity/samplers.graph, an MLP energy with weights 4x
 *    PyTorch's init so that the gradient clip engages on ~half the elements):
 *    tests/parity/torch_samplers.py runs the official loops (JEM++'s inner
 *    Hamiltonian ascent by autograd at every inner step, not collapsed;
 *    SADA-JEM's sample_q; VERA's utils/hmc.py MALA with Normal log-densities
 *    and get_ebm_samples' HMC move; VERA's step rule) with jemc's Philox draws
 *    read from the IR's stream ids, and every output of the five programs must
 *    match: interpreter f64 within 1e-9, compiled (JIT, --target cpu) f32
 *    within 1e-4, each tensor at its own scale (max |got - want| / max |want|).
 *    Per-chain accept flags are outputs: one flipped decision is an error of 1.
 *    PyTorch reports that both MALA and HMC accept some chains and reject
 *    others, that the clip engages and that PYLD's noise leaves [-1, 1].
 * 2. Gaussian energy (tests/parity/samplers_gauss.graph, E = |x|^2 / (2 s^2),
 *    20,000 chains of 4 dimensions started from the target): the acceptance
 *    of one MALA step / HMC move against torch_samplers.py --mode gauss
 *    (double, 4e6 draws); the chains' variance after 20 steps must stay s^2
 *    (a correct Metropolis-Hastings chain leaves its target invariant;
 *    without the test it would be 1.44 s^2 for MALA, 1.23 s^2 for HMC, with the
 *    reverse density dropped 1.32 s^2) and their mean 0; the same at temp 2.5 with
 *    the steps scaled (the same acceptance, variance 2.5 s^2; seen red with
 *    the proposal's energy not divided by temp: 0.12, 0.42); mala_adapt must reach
 *    57% acceptance, its step then frozen at rate 0 exactly. Bounds are 5
 *    standard errors. Interpreter and compiled code both.
 * 3. Compiled against the interpreter in memory (compiled_helpers.h), every
 *    program of samplers.graph with the graph's own initial weights: outputs
 *    within 1e-4 at their scale, accept flags equal.
 * 4. Fusion: PYLD's unrolled inner steps are one kernel (as many kernels with
 *    5 inner steps as with 1).
 * Each part was seen red with the sampler broken (docs/samplers.md lists the
 * breaks). JM_SMP_SEED=N varies PyTorch's weights and jemc's seed; JM_SMP_ROOT=DIR
 * runs on a copy (DIR/graphs, DIR/tests/parity); JM_SMP_KEEP=1 keeps the files. */
#include "tap.h"
#include "helpers.h"
#include "st_helpers.h"
#include "compiled_helpers.h"
#include <unistd.h>

static char tmpdir[256];

static const char *jemc(void) { return jt_env("JEMC", "build/jemc"); }
static int seed(void) { return atoi(jt_env("JM_SMP_SEED", "0")); }
static const char *root(void) { return jt_env("JM_SMP_ROOT", "."); }



/* a scalar output of a jemc --out file (NaN when absent) */
static double scalar(const jm_st_file *f, const char *name) {
    const jm_st_tensor *t = jm_st_find(f, name);
    return t && numel(t) == 1 ? el(t, 0) : NAN;
}

static const char *programs[] = { "pyld_run", "sada_run", "mala_run", "mala_adapt_run", "hmc_run" };
#define NPROG 5

/* 1. every output of every program against PyTorch's official loops */
static void parity(void) {
    char dir[300], cmd[8000], out[16384], graph[400];
    snprintf(graph, sizeof graph, "%s/tests/parity/samplers.graph", root());
    snprintf(dir, sizeof dir, "%s/parity", tmpdir);
    int n = snprintf(cmd, sizeof cmd, "mkdir -p %s", dir);
    for (int p = 0; p < NPROG; p++)
        n += snprintf(cmd + n, sizeof cmd - (size_t)n, " && %s compile %s %s --dump=ir > %s/%s.ir", jemc(), graph, programs[p], dir, programs[p]);
    snprintf(cmd + n, sizeof cmd - (size_t)n, " && /usr/bin/python3 %s/tests/parity/torch_samplers.py --mode parity --ir-dir %s --out %s --seed %d --jemc-seed %d",
             root(), dir, dir, seed(), seed() + 3);
    if (!ok(jt_run(cmd, out, sizeof out) == 0, "parity: PyTorch ran the official loops on jemc's draws")) { tap_diag("%s\n%s", cmd, out); return; }
    double ma = json_num(out, "mala_accept"), ha = json_num(out, "hmc_accept"), cl = json_num(out, "clipped"), po = json_num(out, "pyld_outside");
    ok(ma > 0 && ma < 1 && ha > 0 && ha < 1 && cl > 0 && cl < 1 && po > 0,
       "parity: MALA (%.2f) and HMC (%.2f) accept some chains and reject others, the clip engages on %.0f%%, PYLD's noise leaves [-1, 1] (%.0f%%)",
       ma, ha, 100 * cl, 100 * po);
    jm_st_file want;
    char pw[400];
    snprintf(pw, sizeof pw, "%s/expected.safetensors", dir);
    if (readf(pw, &want) != 0) { ok(0, "parity: expected read"); return; }
    int seen = 0;
    for (int t = 0; t < 2; t++) {
        const char *tg = t ? "cpu" : "interp";
        double tol = t ? 1e-4 : 1e-9;
        for (int p = 0; p < NPROG; p++) {
            char po_[400];
            snprintf(po_, sizeof po_, "%s/%s_%s.safetensors", dir, programs[p], tg);
            snprintf(cmd, sizeof cmd, "%s run %s %s --target %s --precision %s --seed %d --state %s/state.safetensors --in %s/inputs.safetensors --out %s",
                     jemc(), graph, programs[p], tg, t ? "f32" : "f64", seed() + 3, dir, dir, po_);
            if (!ok(jt_run(cmd, out, sizeof out) == 0, "parity: %s runs (%s)", programs[p], tg)) { tap_diag("%s\n%s", cmd, out); continue; }
            jm_st_file got;
            if (readf(po_, &got) != 0) { ok(0, "parity: %s %s read", programs[p], tg); continue; }
            double worst = 0;
            const char *wname = "";
            int bad = 0;
            for (int k = 0; k < got.n; k++) {
                const jm_st_tensor *g = &got.t[k], *w = jm_st_find(&want, g->name);
                if (!w || !same_shape(g, w)) { tap_diag("%s: PyTorch has no '%s' of its shape", programs[p], g->name); bad++; continue; }
                if (t == 0) seen++;
                double maxd = 0, maxw = 0;
                for (size_t i = 0; i < numel(w); i++) {
                    double d = fabs(el(g, i) - el(w, i));
                    maxd = isfinite(d) ? fmax(maxd, d) : INFINITY;
                    maxw = fmax(maxw, fabs(el(w, i)));
                }
                double e = maxw > 0 ? maxd / maxw : maxd;
                if (!(e <= tol)) { tap_diag("%s %s: %s off by %.3g of its scale %.3g", programs[p], tg, g->name, e, maxw); bad++; }
                if (e >= worst) { worst = e; wname = g->name; }
            }
            ok(bad == 0 && got.n > 0, "parity: %s %s %s: %d outputs within %g of PyTorch (worst %.2g: %s)", programs[p], tg,
               t ? "f32" : "f64", got.n, tol, worst, wname);
            jm_st_free(&got);
        }
    }
    ok(seen == want.n, "parity: jemc wrote all %d tensors PyTorch computed (%d)", want.n, seen);
    jm_st_free(&want);
}

/* 2. MALA and HMC on a Gaussian: acceptance against double Monte Carlo,
   the target's variance kept, mala_adapt at its target acceptance */
static void gauss(void) {
    const double chains = 20000, dims = 4, s = 0.7;
    char dir[300], cmd[8000], out[16384], graph[400];
    snprintf(graph, sizeof graph, "%s/tests/parity/samplers_gauss.graph", root());
    snprintf(dir, sizeof dir, "%s/gauss", tmpdir);
    const char *gp[] = { "mala_gauss", "hmc_gauss", "mala_adapt_gauss", "mala_temp_gauss", "hmc_temp_gauss" };
    jm_st_file f[2][5];
    int okf = 1;
    for (int t = 0; t < 2; t++)
        for (int p = 0; p < 5; p++) {
            const char *tg = t ? "cpu" : "interp";
            snprintf(cmd, sizeof cmd, "mkdir -p %s && %s run %s %s --target %s --seed %d --out %s/%s_%s.safetensors", dir, jemc(), graph, gp[p], tg,
                     seed() + 11, dir, gp[p], tg);
            if (!ok(jt_run(cmd, out, sizeof out) == 0, "gauss: %s runs (%s)", gp[p], tg)) { tap_diag("%s\n%s", cmd, out); okf = 0; continue; }
            char path[400];
            snprintf(path, sizeof path, "%s/%s_%s.safetensors", dir, gp[p], tg);
            if (readf(path, &f[t][p]) != 0) okf = 0;
        }
    if (!okf) { ok(0, "gauss: outputs read"); return; }
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 %s/tests/parity/torch_samplers.py --mode gauss --dims 4 --s 0.7 --eta 0.3 --eps 0.6 --leapfrog 5 --eta-adapted %.9g --seed %d",
             root(), scalar(&f[0][2], "eta_adapted"), seed());
    if (!ok(jt_run(cmd, out, sizeof out) == 0, "gauss: the double-precision references computed")) { tap_diag("%s\n%s", cmd, out); return; }
    double var_tol = 5 * sqrt(2 / (chains * dims)), mean_tol = 5 / sqrt(chains * dims);
    for (int t = 0; t < 2; t++) {
        const char *tg = t ? "cpu" : "interp";
        /* 3, 4: the tempered chains (temp 2.5, steps scaled) are the same chains in units of
           sqrt(T) s: the same references, the variance T s^2 */
        const char *name[] = { "mala", "hmc", NULL, "mala at temp 2.5", "hmc at temp 2.5" };
        for (int p = 0; p < 5; p++) {
            if (p == 2) continue;
            double ref = json_num(out, p % 3 ? "hmc" : "mala"), se = json_num(out, p % 3 ? "hmc_se" : "mala_se");
            double a = scalar(&f[t][p], "accept1"), tol = 5 * sqrt(ref * (1 - ref) / chains) + 5 * se;
            ok(fabs(a - ref) <= tol, "gauss %s: %s accepts %.4f of chains at the target, the double reference %.4f (within %.4f)", tg, name[p], a, ref, tol);
            double v = scalar(&f[t][p], "var"), m = scalar(&f[t][p], "mean");
            ok(fabs(v - 1) <= var_tol && fabs(m) <= mean_tol * s,
               "gauss %s: %s keeps the target after 20 steps: variance %.4f s^2 (1 within %.3f), mean %.4f (0 within %.3f)", tg, name[p], v, var_tol, m, mean_tol * s);
        }
        double ea = scalar(&f[t][2], "eta_adapted"), ef = scalar(&f[t][2], "eta_frozen"), af = scalar(&f[t][2], "accept_frozen");
        double ra = json_num(out, "mala_adapted"), rse = json_num(out, "mala_adapted_se");
        double atol = 5 * sqrt(0.25 / chains) + 5 * rse;
        ok(ea == ef && ea > 0.3 && ea < 0.6, "gauss %s: mala_adapt moved the step from 2.0 to %.4f, and rate 0 froze it exactly", tg, ea);
        ok(fabs(af - 0.57) <= 0.02 && fabs(af - ra) <= atol,
           "gauss %s: at the adapted step MALA accepts %.4f (target 0.57 within 0.02; double reference at that step %.4f within %.4f)", tg, af, ra, atol);
        ok(fabs(scalar(&f[t][2], "var") - 1) <= var_tol, "gauss %s: mala_adapt's frozen chains keep the target (variance %.4f s^2)", tg,
           scalar(&f[t][2], "var"));
    }
    for (int t = 0; t < 2; t++)
        for (int p = 0; p < 5; p++) jm_st_free(&f[t][p]);
}

/* 3. compiled code against the interpreter, in memory, the graph's own weights */
static void compiled(void) {
    char graph[400];
    snprintf(graph, sizeof graph, "%s/tests/parity/samplers.graph", root());
    jt_unit ui;
    jc_module c;
    jm_module *mi = jc_load(&ui, NULL, graph, NULL, 0);
    if (!ok(mi && jc_compile(&c, NULL, graph, NULL, 0) == 0, "compiled: samplers.graph compiles")) {
        tap_diag("%s%s", ui.errors ? ui.errors : "", c.u.errors ? c.u.errors : "");
        jc_free(&c);
        jt_unload(&ui);
        return;
    }
    for (int p = 0; p < NPROG; p++) {
        int pi = jm_module_find_program(mi, programs[p]), pc = jm_table_find_program(&c.plan.table, programs[p]);
        if (!ok(pi >= 0 && pc >= 0, "compiled: %s in both", programs[p])) continue;
        const jm_tprogram *tp = &c.plan.table.programs[pc];
        jm_tensor in[4];
        memset(in, 0, sizeof in);
        jc_fill_inputs(mi, pi, in, -1, 1, 3);
        for (int i = 0; i < tp->ninputs; i++)
            if (strcmp(tp->inputs[i].name, "eta0") == 0) in[i].data[0] = 0.8;
        void *tin[4], *tout[8];
        for (int i = 0; i < tp->ninputs; i++) {
            tin[i] = malloc((size_t)jm_rt_desc_numel(&tp->inputs[i]) * 8 + 8);
            jc_to_typed(&in[i], tp->inputs[i].dtype, tin[i]);
        }
        for (int i = 0; i < tp->noutputs; i++) tout[i] = malloc((size_t)jm_rt_desc_numel(&tp->outputs[i]) * 8 + 8);
        jm_interp I;
        jm_rt rt;
        jm_interp_init(&I, mi, 5);
        jm_rt_open(&rt, &c.plan.table, c.fns, 5);
        jm_tensor *o = NULL;
        int ri = jm_interp_run(&I, pi, in, &o), rc = jm_rt_run(&rt, pc, (const void *const *)tin, tout);
        if (ok(ri == 0 && rc == 0, "compiled: %s runs in both", programs[p])) {
            jc_worst w = { .vtol = 1e-4, .vname = "" };
            for (int i = 0; i < tp->noutputs; i++) {
                int64_t at = 0;
                double e = jc_value_err(tout[i], tp->outputs[i].dtype, o[i].data, JM_DT_F64, jm_type_numel(&o[i].type), &at);
                jc_note_value(&w, programs[p], tp->outputs[i].name, e, 1e-4, at);
            }
            ok(w.value <= w.vtol, "compiled: %s: %d outputs match the interpreter within 1e-4 (worst %.2g: %s)", programs[p], tp->noutputs, w.value, w.vname);
            for (int i = 0; i < tp->noutputs; i++) jm_tensor_free(&o[i]);
            free(o);
        } else {
            tap_diag("interp: %s; compiled: %s", ri ? I.err : "ok", rc ? rt.err : "ok");
        }
        jm_interp_free(&I);
        jm_rt_close(&rt);
        for (int i = 0; i < tp->ninputs; i++) { free(tin[i]); jm_tensor_free(&in[i]); }
        for (int i = 0; i < tp->noutputs; i++) free(tout[i]);
    }
    jc_free(&c);
    jt_unload(&ui);
}

/* the kernel count of pyld_run (first line of --dump=fused), -1 on failure */
static int pyld_kernels(int inner) {
    char cmd[1000], out[4096];
    snprintf(cmd, sizeof cmd, "%s compile %s/tests/parity/samplers.graph pyld_run --dump=fused -D inner=%d | head -1", jemc(), root(), inner);
    if (jt_run(cmd, out, sizeof out) != 0) return -1;
    const char *k = strstr(out, "steps (");
    return k ? atoi(k + 7) : -1;
}

int main(void) {
    (void)jc_note_change;   /* shared helpers this test has no use for */
    (void)ulp32;
    char out[4096];
    if (jt_run("/usr/bin/python3 -c 'import torch, numpy'", out, sizeof out) != 0)
        skip_all("Debian's python3-torch is not installed (make deps installs it)");
    snprintf(tmpdir, sizeof tmpdir, "/tmp/jemc_samplers_XXXXXX");
    if (!mkdtemp(tmpdir)) skip_all("cannot create a temporary directory");
    parity();
    gauss();
    compiled();
    int k1 = pyld_kernels(1), k5 = pyld_kernels(5);
    ok(k1 > 0 && k1 == k5, "fusion: PYLD's inner steps are one kernel (%d kernels with 1 inner step, %d with 5)", k1, k5);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    if (!getenv("JM_SMP_KEEP")) jt_run(cmd, out, sizeof out);
    return tap_done();
}
