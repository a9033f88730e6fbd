/* t_compiled.c — the CPU backend against the reference interpreter.
 *
 * How results are compared (compiled_helpers.h): every output and every global
 * at its OWN scale, error = max |got - want| / max |want| of that tensor (not
 * of max(1, ...): a tensor of 1e-8s is held to 1e-8s); and for every global,
 * the CHANGE a run makes to it against the change the interpreter's run makes
 * (each from its own state before the run), relative to the largest change:
 * in the max norm less one float32 spacing of the stored value per element
 * (<= JC_TOL_CHANGE) and in the 2-norm (<= JC_TOL_CHANGE_RMS). A global left
 * alone must stay bitwise; a parameter that one step moves by 1e-7 (Adam,
 * lr 1e-4 in warm-up) must move by that 1e-7, so a train_step that skips its
 * parameter update, its moment update or its buffer write fails. Before a
 * program's first run, every global must be bitwise what the interpreter
 * initialises (same seed).
 *
 * 1. One small graph per op (forward, and the gradient where the op has one,
 *    which exercises the gradient ops: conv2d_bwd_*, pool bwd, index_add, ...):
 *    compiled through lowering, fusion, the memory plan, LLVM and the OpenMP
 *    executor (JIT), run on the same inputs as the interpreter. Value
 *    tolerance per case:
 *      0      movement, integer and boolean ops, random draws (bitwise equal)
 *      2e-6   elementwise float32 (own exp/log/tanh polynomials: a few ulp)
 *      2e-5   reductions, matrix products, convolutions (summation order differs)
 * 2. Every program of every shipped graph (small configurations), outputs and
 *    state after the run (train_step twice: the state and RNG position carry).
 *    Tolerances, from the worst errors measured (JEMC_TEST_REPORT=1 prints
 *    every tensor's), with margin:
 *      values           1e-4   worst 4.3e-6 (samples of jem_wrn28's sample_cond)
 *      ill-conditioned  2e-2   worst 3.0e-3 (jem_mnist sgld_grad_x): what a
 *        (JC_TOL_ILL)          backward pass computes (names with "grad",
 *                              opt.m.*, opt.v.*), where a leaky_relu
 *                              pre-activation within rounding of 0 takes the
 *                              other slope (with slope 1: 5e-7), and loss_px,
 *                              two energies near -2.3 cancelling to ~1e-3
 *      changes, max     0.5    worst 0.037 (conv3.weight); 0.084 was seen on the
 *                              fake GPU. Adam's first step moves an element by
 *                              lr * g / (|g| + eps): where |g| is near eps (1e-8)
 *                              the gradient's float32 error moves it by a part of lr
 *      changes, rms     2e-3   worst 3.0e-4 (conv3.weight); ill-conditioned
 *                              globals 2e-2 (worst 2.5e-6 here)
 *    opt.grad_norm is recomputed each step, not updated: its change is not
 *    compared (its value is). Skipping a write gives errors of 1.
 *    tests/mutations/run.sh (make mutations) checks that these catch a
 *    train_step whose parameter, moment or buffer writes are dropped.
 * 3. Results are bitwise identical for 1, 2 and 3 threads.
 * 4. Kernel counts of reference programs are pinned (a fusion regression fails),
 *    and no two live buffers of any plan overlap (full-size graphs). */
#include "tap.h"
#include "helpers.h"
#include "grad.h"
#include "simplify.h"
#include "lower.h"
#include "plan.h"
#include "cpu_target.h"
#include "engine/rt_exec.h"
#include <math.h>

#include "compiled_helpers.h"

/* Tolerances for the changes a run makes to the globals (compiled_helpers.h
   says how they are measured; see the header for the measurements). */
#define JC_TOL_CHANGE     0.5
#define JC_TOL_CHANGE_RMS 2e-3

/* Runs program `name` in both and compares outputs and globals `runs` times in
   a row: every value at its tensor's own scale within tol, every global's
   change across the run within JC_TOL_CHANGE (max) and JC_TOL_CHANGE_RMS;
   before the first run, the globals as both initialise them, bitwise. */
static void jc_compare(const char *label, jm_module *mi, jc_module *c, const char *name, double lo, double hi,
                       int64_t classes, double tol, int runs) {
    int pi = jm_module_find_program(mi, name), pc = jm_table_find_program(&c->plan.table, name);
    if (!ok(pi >= 0 && pc >= 0, "%s: program %s exists in both", label, name)) return;
    const jm_tprogram *tp = &c->plan.table.programs[pc];
    const jm_table *t = &c->plan.table;
    jm_tensor in[8];
    memset(in, 0, sizeof in);
    jc_fill_inputs(mi, pi, in, lo, hi, classes);
    jm_interp I;
    jm_rt rt;
    jm_interp_init(&I, mi, 5);
    jm_rt_open(&rt, t, c->fns, 5);
    void *tin[8], *tout[64];
    for (int i = 0; i < tp->ninputs; i++) {
        tin[i] = malloc((size_t)jm_rt_desc_numel(&tp->inputs[i]) * 8 + 8);
        jc_to_typed(&in[i], tp->inputs[i].dtype, tin[i]);
    }
    for (int i = 0; i < tp->noutputs; i++) tout[i] = malloc((size_t)jm_rt_desc_numel(&tp->outputs[i]) * 8 + 8);
    /* the state before each run, both sides (the interpreter's in double) */
    void **gb = calloc((size_t)mi->nglobals + 1, sizeof *gb);
    double **ib = calloc((size_t)mi->nglobals + 1, sizeof *ib);
    const char *init_diff = NULL;
    for (int g = 0; g < mi->nglobals; g++) {
        int64_t n = jm_rt_desc_numel(&t->globals[g].t);
        size_t bytes = (size_t)n * jm_rt_dtype_size(t->globals[g].t.dtype);
        gb[g] = malloc(bytes + 8);
        ib[g] = malloc((size_t)n * sizeof(double) + 8);
        jc_to_typed(&I.globals[g], t->globals[g].t.dtype, gb[g]);
        if (!init_diff && (n != jm_type_numel(&I.globals[g].type) || memcmp(gb[g], jm_rt_global(&rt, g), bytes) != 0))
            init_diff = mi->globals[g].name;
    }
    if (mi->nglobals > 0)
        ok(!init_diff, "%s: %s: all %d globals start bitwise as the interpreter initialises them%s%s", label, name, mi->nglobals,
           init_diff ? "; not " : "", init_diff ? init_diff : "");
    for (int r = 0; r < runs; r++) {
        for (int g = 0; g < mi->nglobals; g++) {
            memcpy(gb[g], jm_rt_global(&rt, g), (size_t)jm_rt_desc_numel(&t->globals[g].t) * jm_rt_dtype_size(t->globals[g].t.dtype));
            memcpy(ib[g], I.globals[g].data, (size_t)jm_type_numel(&I.globals[g].type) * sizeof(double));
        }
        jm_tensor *out = NULL;
        int ri = jm_interp_run(&I, pi, in, &out);
        int rc = jm_rt_run(&rt, pc, (const void *const *)tin, tout);
        if (!ok(ri == 0 && rc == 0, "%s: %s run %d in both", label, name, r + 1)) {
            tap_diag("interp: %s; compiled: %s", ri ? I.err : "ok", rc ? rt.err : "ok");
            break;
        }
        jc_worst w = { 0, tol, 0, 0, JC_TOL_CHANGE_RMS, "", "", "", 0, 0 };
        for (int i = 0; i < tp->noutputs; i++) {
            int64_t at = 0;
            double e = jc_value_err(tout[i], tp->outputs[i].dtype, out[i].data, JM_DT_F64, jm_type_numel(&out[i].type), &at);
            jc_note_value(&w, label, tp->outputs[i].name, e, jc_value_tol(tp->outputs[i].name, tol), at);
        }
        for (int g = 0; g < mi->nglobals; g++) {
            int64_t at = 0, n = jm_type_numel(&I.globals[g].type);
            int dt = t->globals[g].t.dtype;
            const void *now = jm_rt_global(&rt, g);
            jc_note_value(&w, label, mi->globals[g].name, jc_value_err(now, dt, I.globals[g].data, JM_DT_F64, n, &at), jc_value_tol(mi->globals[g].name, tol), at);
            if (jc_fresh_global(mi->globals[g].name)) continue;
            double rms = 0, e = jc_change_err(now, gb[g], dt, I.globals[g].data, ib[g], JM_DT_F64, dt, n, &at, &rms);
            jc_note_change(&w, label, mi->globals[g].name, e, at, rms, jc_value_tol(mi->globals[g].name, JC_TOL_CHANGE_RMS));
        }
        if (!ok(w.value <= w.vtol && w.change <= JC_TOL_CHANGE && w.rms <= w.rtol,
                "%s: %s run %d matches the interpreter (values %.2g <= %g%s%s; changes %.2g <= %g%s%s, rms %.2g <= %g%s%s)", label,
                name, r + 1, w.value, w.vtol, *w.vname ? " in " : "", w.vname, w.change, JC_TOL_CHANGE, *w.cname ? " in " : "", w.cname,
                w.rms, w.rtol, *w.rname ? " in " : "", w.rname))
            tap_diag("worst value at %s element %lld; worst change at %s element %lld", w.vname, (long long)w.vat, w.cname,
                     (long long)w.cat);
        for (int i = 0; i < tp->noutputs; i++) jm_tensor_free(&out[i]);
        free(out);
    }
    for (int g = 0; g < mi->nglobals; g++) { free(gb[g]); free(ib[g]); }
    free(gb);
    free(ib);
    for (int i = 0; i < tp->ninputs; i++) { free(tin[i]); jm_tensor_free(&in[i]); }
    for (int i = 0; i < tp->noutputs; i++) free(tout[i]);
    jm_interp_free(&I);
    jm_rt_close(&rt);
}

typedef struct {
    const char *name, *decl, *xtype, *wtype, *expr;
    double lo, hi;
    const char *extra;
    double tol;
    int grad;              /* also compare grad(sum(expr * w), x) */
} jc_case;

static void jc_op_case(const jc_case *k) {
    char text[4096];
    int n = snprintf(text, sizeof text, "%s\nprogram f(x: %s%s%s) {\n    output y = %s\n}\n", k->decl ? k->decl : "", k->xtype,
                     k->extra ? ", " : "", k->extra ? k->extra : "", k->expr);
    if (k->grad)
        snprintf(text + n, sizeof text - (size_t)n, "program g(x: %s, w: %s%s%s) {\n    output gx = grad(sum((%s) * w), x)\n}\n",
                 k->xtype, k->wtype, k->extra ? ", " : "", k->extra ? k->extra : "", k->expr);
    jt_unit ui;
    jc_module c;
    jm_module *mi = jc_load(&ui, text, NULL, NULL, 0);
    int rc = jc_compile(&c, text, NULL, NULL, 0);
    if (!ok(mi && rc == 0, "%s: compiles", k->name)) {
        tap_diag("%s\n%s%s", text, ui.errors ? ui.errors : "", c.u.errors ? c.u.errors : "");
    } else {
        jc_compare(k->name, mi, &c, "f", k->lo, k->hi, 3, k->tol, 1);
        if (k->grad) jc_compare(k->name, mi, &c, "g", k->lo, k->hi, 3, k->tol < 2e-5 ? 2e-5 : k->tol, 1);
    }
    jc_free(&c);
    jt_unload(&ui);
}

static void jc_graph(const char *label, const char *file, const char *const *defs, int ndefs, int64_t classes) {
    jt_unit ui;
    jc_module c;
    jm_module *mi = jc_load(&ui, NULL, file, defs, ndefs);
    int rc = jc_compile(&c, NULL, file, defs, ndefs);
    if (ok(mi && rc == 0, "%s: compiles", label)) {
        for (int p = 0; p < mi->nprograms; p++) {
            const char *name = mi->programs[p].name;
            /* train_step twice: the second run starts from the first's state and RNG position */
            int runs = strcmp(name, "train_step") == 0 ? 2 : 1;
            jc_compare(label, mi, &c, name, -1, 1, classes, 1e-4, runs);
        }
    } else {
        tap_diag("%s%s", ui.errors ? ui.errors : "", c.u.errors ? c.u.errors : "");
    }
    jc_free(&c);
    jt_unload(&ui);
}

/* the same program with 1, 2 and 3 threads: every output and global bitwise equal */
static void jc_threads(const char *label, const char *file, const char *const *defs, int ndefs, const char *program) {
    jc_module c;
    if (!ok(jc_compile(&c, NULL, file, defs, ndefs) == 0, "%s: compiles", label)) { jc_free(&c); return; }
    int p = jm_table_find_program(&c.plan.table, program);
    const jm_tprogram *tp = &c.plan.table.programs[p];
    jm_tensor in[8];
    memset(in, 0, sizeof in);
    jc_fill_inputs(c.u.m, jm_module_find_program(c.u.m, program), in, -1, 1, 2);
    void *tin[8];
    for (int i = 0; i < tp->ninputs; i++) {
        tin[i] = malloc((size_t)jm_rt_desc_numel(&tp->inputs[i]) * 8 + 8);
        jc_to_typed(&in[i], tp->inputs[i].dtype, tin[i]);
    }
    unsigned char *ref = NULL;
    size_t refn = 0;
    int same = 1;
    for (int th = 1; th <= 3; th++) {
        jm_rt rt;
        jm_rt_open(&rt, &c.plan.table, c.fns, 9);
        rt.threads = th;
        void *tout[64];
        size_t total = 0;
        for (int i = 0; i < tp->noutputs; i++) total += (size_t)jm_rt_desc_numel(&tp->outputs[i]) * jm_rt_dtype_size(tp->outputs[i].dtype);
        unsigned char *all = malloc(total + (size_t)c.plan.table.state_bytes + 1), *q = all;
        for (int i = 0; i < tp->noutputs; i++) { tout[i] = q; q += (size_t)jm_rt_desc_numel(&tp->outputs[i]) * jm_rt_dtype_size(tp->outputs[i].dtype); }
        int rc = jm_rt_run(&rt, p, (const void *const *)tin, tout);
        ok(rc == 0, "%s: %s runs with %d thread%s", label, program, th, th == 1 ? "" : "s");
        memcpy(q, rt.state, (size_t)c.plan.table.state_bytes);
        size_t n = total + (size_t)c.plan.table.state_bytes;
        if (!ref) { ref = all; refn = n; }
        else { same &= n == refn && memcmp(ref, all, n) == 0; free(all); }
        jm_rt_close(&rt);
    }
    ok(same, "%s: %s gives bitwise identical outputs and state with 1, 2 and 3 threads", label, program);
    free(ref);
    for (int i = 0; i < tp->ninputs; i++) { free(tin[i]); jm_tensor_free(&in[i]); }
    jc_free(&c);
}

static void jc_pin_kernels(const char *file, const char *const *defs, int ndefs, const char *program, int want_kernels, int want_lib) {
    jc_module c;
    memset(&c, 0, sizeof c);
    if (!jc_load(&c.u, NULL, file, defs, ndefs) || jm_lower(c.u.m, &c.u.d) != 0 || jm_simplify(c.u.m, &c.u.d, 1) != 0 ||
        jm_plan_build(c.u.m, &c.plan, &c.u.d) != 0) {
        ok(0, "%s %s plans", file, program);
        jt_unload(&c.u);
        return;
    }
    const jm_tprogram *tp = &c.plan.table.programs[jm_table_find_program(&c.plan.table, program)];
    int nk = 0, nl = 0;
    for (int s = 0; s < tp->nsteps; s++) nk += tp->steps[s].kind == JM_STEP_KERNEL, nl += tp->steps[s].kind == JM_STEP_LIB;
    ok(nk == want_kernels && nl == want_lib, "%s %s: %d kernels and %d runtime ops (pinned %d and %d)", file, program, nk, nl,
       want_kernels, want_lib);
    jt_unload(&c.u);
}

static void jc_memory(const char *file, const char *const *defs, int ndefs) {
    jc_module c;
    memset(&c, 0, sizeof c);
    if (!jc_load(&c.u, NULL, file, defs, ndefs) || jm_lower(c.u.m, &c.u.d) != 0 || jm_simplify(c.u.m, &c.u.d, 1) != 0 ||
        jm_plan_build(c.u.m, &c.plan, &c.u.d) != 0) {
        ok(0, "%s plans", file);
        jt_unload(&c.u);
        return;
    }
    int bad = jm_plan_check_memory(&c.plan, stderr);
    int64_t peak = 0, naive = 0;
    for (int p = 0; p < c.plan.table.nprograms; p++) { peak += c.plan.mem[p].peak; naive += c.plan.mem[p].naive; }
    ok(bad == 0, "%s: no two live buffers overlap in any of %d programs", file, c.plan.table.nprograms);
    ok(peak < naive, "%s: the memory plan reuses memory (%.1f MiB of scratch instead of %.1f)", file, peak / 1048576.0, naive / 1048576.0);
    jt_unload(&c.u);
}

/* Two optimizers in one program, compiled (language §13.3, §4.10): the second
   loss reads f after the first update; o1 updates only model f, o2 only scope
   "gen"; u is in neither. The numbers are t_interp's, worked out by hand:
   x = (1, 2), two runs. Then the same program against the interpreter. */
static void jc_two_optimizers(void) {
    static const char text[] =
        "model f(x: f32[2]) -> f32[] {\n param w: f32[2] = 1\n return sum(w * x)\n}\n"
        "model g(x: f32[2]) -> f32[] {\n param v: f32[2] = 2\n return sum(v * x)\n}\n"
        "block other(x) {\n param u: f32[2] = 3\n return sum(u * x)\n}\n"
        "optimizer o1 = sgd(lr=0.05, params=f)\noptimizer o2 = sgd(lr=0.5, momentum=0.9, params=\"gen\")\n"
        "program step(x: f32[2]) {\n l1 = f(x) * g(x) as gen + other(x) as o\n minimize l1 with o1\n"
        " l2 = f(x) * g(x) as gen + other(x) as o\n minimize l2 with o2\n output l1\n output l2\n}\n";
    static const struct { const char *name; float want[2][2]; } w[] = {
        { "w", { { 0.7f, 0.4f }, { 0.5875f, 0.175f } } },
        { "gen.v", { { 1.25f, 0.5f }, { 0.10625f, -1.7875f } } },
        { "o.u", { { 3, 3 }, { 3, 3 } } },
        { "o2.momentum.gen.v", { { 1.5f, 3 }, { 2.2875f, 4.575f } } },
    };
    static const float l_want[2][2] = { { 27, 18 }, { 12.375f, 11.109375f } };
    jc_module c;
    if (!ok(jc_compile(&c, text, NULL, NULL, 0) == 0, "two optimizers: compiles")) {
        tap_diag("%s", c.u.errors ? c.u.errors : "");
        jc_free(&c);
        return;
    }
    jm_rt rt;
    jm_rt_open(&rt, &c.plan.table, c.fns, 5);
    float x[2] = { 1, 2 }, l1 = 0, l2 = 0;
    const void *in[1] = { x };
    void *out[2] = { &l1, &l2 };
    for (int r = 0; r < 2; r++) {
        int good = jm_rt_run(&rt, jm_table_find_program(&c.plan.table, "step"), in, out) == 0;
        double err = fmax(fabs(l1 - l_want[r][0]) / l_want[r][0], fabs(l2 - l_want[r][1]) / l_want[r][1]);
        for (size_t k = 0; good && k < sizeof w / sizeof w[0]; k++) {
            int gi = jm_module_find_global(c.u.m, w[k].name);
            if (gi < 0) { good = 0; tap_diag("no global %s", w[k].name); continue; }
            const float *v = jm_rt_global_read(&rt, gi);
            double scale = fmax(fabs(w[k].want[r][0]), fabs(w[k].want[r][1]));
            for (int i = 0; i < 2; i++) err = fmax(err, fabs(v[i] - w[k].want[r][i]) / scale);
        }
        good = good && jm_module_find_global(c.u.m, "o2.momentum.o.u") < 0 && jm_module_find_global(c.u.m, "o2.momentum.w") < 0;
        ok(good && err <= 1e-6, "two optimizers, compiled, run %d: parameters, momentum and losses as worked out by hand (error %.2g <= 1e-6)",
           r + 1, err);
    }
    jm_rt_close(&rt);
    jt_unit ui;
    jm_module *mi = jc_load(&ui, text, NULL, NULL, 0);
    if (ok(mi != NULL, "two optimizers: loads for the interpreter")) jc_compare("two optimizers", mi, &c, "step", 1, 2, 2, 2e-6, 2);
    jt_unload(&ui);
    jc_free(&c);
    /* a bounded parameter (§5.4): inputs in [1, 2], sgd lr 1 from -1 pushes every
       element below -2, so after a run ls is exactly -2 (and stays there) */
    static const char bounded[] =
        "block s(x) {\n param ls: f32[3] = -1 in [-2, 0.5]\n return sum(ls * x)\n}\n"
        "optimizer o = sgd(lr=1)\nprogram step(x: f32[3]) {\n l = s(x) as g\n minimize l with o\n output l\n}\n";
    mi = jc_load(&ui, bounded, NULL, NULL, 0);
    if (ok(mi && jc_compile(&c, bounded, NULL, NULL, 0) == 0, "bounded parameter: compiles")) {
        jc_compare("bounded parameter", mi, &c, "step", 1, 2, 2, 2e-6, 2);
        int gi = jm_module_find_global(c.u.m, "g.ls");
        jm_rt rt2;
        jm_rt_open(&rt2, &c.plan.table, c.fns, 5);
        float x3[3] = { 1, 1.5f, 2 }, l = 0;
        const void *in3[1] = { x3 };
        void *out3[1] = { &l };
        int good = gi >= 0 && jm_rt_run(&rt2, jm_table_find_program(&c.plan.table, "step"), in3, out3) == 0;
        const float *v = good ? jm_rt_global_read(&rt2, gi) : NULL;
        ok(good && v[0] == -2 && v[1] == -2 && v[2] == -2, "bounded parameter, compiled: the update is clamped to the lower bound");
        jm_rt_close(&rt2);
    }
    jt_unload(&ui);
    jc_free(&c);
}

int main(void) {
    static const jc_case cases[] = {
        { "neg", 0, "f32[5,7]", "f32[5,7]", "-x", -1, 1, 0, 0, 1 },
        { "exp", 0, "f32[5,7]", "f32[5,7]", "exp(x)", -9, 9, 0, 2e-6, 1 },
        { "exp extremes", 0, "f32[4,50]", "f32[4,50]", "exp(x)", -110, 110, 0, 2e-6, 0 },
        { "log", 0, "f32[5,7]", "f32[5,7]", "log(x)", 1e-6, 50, 0, 2e-6, 1 },
        { "log of negatives and zero", 0, "f32[3,5]", "f32[3,5]", "log(x * 0.0) + log(x - 2.0)", -1, 1, 0, 2e-6, 0 },
        { "sqrt, rsqrt", 0, "f32[5,7]", "f32[5,7]", "sqrt(x) + rsqrt(x)", 0.1, 4, 0, 2e-6, 1 },
        { "abs", 0, "f32[5,7]", "f32[5,7]", "abs(x)", -1, 1, 0, 0, 1 },
        { "tanh", 0, "f32[5,7]", "f32[5,7]", "tanh(x)", -4, 4, 0, 2e-6, 1 },
        { "tanh near 0", 0, "f32[5,7]", "f32[5,7]", "tanh(x)", -0.7, 0.7, 0, 2e-6, 1 },
        { "sigmoid", 0, "f32[5,7]", "f32[5,7]", "sigmoid(x)", -20, 20, 0, 2e-6, 1 },
        { "log1p", 0, "f32[5,7]", "f32[5,7]", "log1p(x)", -0.9, 5, 0, 2e-6, 1 },
        { "softplus", 0, "f32[5,7]", "f32[5,7]", "softplus(x)", -30, 30, 0, 2e-6, 1 },
        { "relu", 0, "f32[5,7]", "f32[5,7]", "relu(x)", -1, 1, 0, 0, 1 },
        /* the slope multiplies in float32 (as PyTorch); the interpreter rounds x * 0.2 computed in double */
        { "leaky_relu", 0, "f32[5,7]", "f32[5,7]", "leaky_relu(x, 0.2)", -1, 1, 0, 2e-7, 1 },
        { "recip, div", 0, "f32[5,7]", "f32[5,7]", "recip(x) + x / (x * x + 1.0)", 0.5, 2, 0, 2e-6, 1 },
        { "pow", 0, "f32[5,7]", "f32[5,7]", "x ** x + pow(x, 3.0) + pow(x, 2.0) + pow(x, 0.5)", 0.5, 1.5, 0, 2e-6, 1 },
        { "max, min, clamp", 0, "f32[5,7]", "f32[5,7]", "max(x, 0.1) + min(x * 2.0, -0.3) + clamp(x, -0.5, 0.5)", -1, 1, 0, 0, 1 },
        { "where and comparisons", 0, "f32[5,7]", "f32[5,7]", "where(x > 0, x * x, -x * 3.0) + where(x <= 0.5, 1.0, 2.0)", -1, 1, 0, 0, 1 },
        { "integer arithmetic", 0, "i64[5]", 0, "(x * 3 + 1) / 2 - x", 0, 0, 0, 0, 0 },
        { "casts", 0, "f32[6]", 0, "cast(cast(x * 10.0, \"i32\"), \"f32\") + cast(x > 0, \"f32\")", -1, 1, 0, 0, 0 },
        { "sum over an axis", 0, "f32[4,5,6]", "f32[4,6]", "sum(x * x, axis=1)", -1, 1, 0, 2e-5, 1 },
        { "sum over all", 0, "f32[64,33]", "f32[]", "sum(x)", -1, 1, 0, 2e-5, 1 },
        { "mean with keepdims", 0, "f32[4,5]", "f32[4,5]", "x - mean(x, axis=1, keepdims=true)", -1, 1, 0, 2e-5, 1 },
        { "sum over axes 0, 2, 3", 0, "f32[3,4,5,6]", "f32[4]", "sum(x, axis=[0, 2, 3])", -1, 1, 0, 2e-5, 1 },
        { "max, min reductions", 0, "f32[6,7]", "f32[6]", "max(x, axis=1) + min(x, axis=1)", -1, 1, 0, 0, 1 },
        { "logsumexp", 0, "f32[6,7]", "f32[6]", "logsumexp(x * 3.0, axis=1)", -1, 1, 0, 2e-5, 1 },
        { "softmax, log_softmax", 0, "f32[6,7]", "f32[6,7]", "softmax(x, axis=1) + log_softmax(x, axis=0)", -2, 2, 0, 2e-5, 1 },
        { "cross_entropy", 0, "f32[6,3]", "f32[]", "cross_entropy(x, y, smoothing=0.1)", -2, 2, "y: i64[6]", 2e-5, 1 },
        { "reshape and flatten", 0, "f32[2,3,4]", "f32[2,12]", "flatten(x) * reshape(x * x, [2, 12])", -1, 1, 0, 0, 1 },
        { "permute", 0, "f32[2,3,4]", "f32[4,2,3]", "permute(x, [2, 0, 1]) + permute(exp(x), [2, 0, 1])", -1, 1, 0, 2e-6, 1 },
        { "broadcast", 0, "f32[3,1]", "f32[2,3,4]", "x + zeros([2, 3, 4]) * exp(x)", -1, 1, 0, 2e-6, 1 },
        { "slice and index", 0, "f32[6,5]", "f32[2,2]", "x[1:3, 0:2] * x[2:4, 1:3] + x[3, 2:4]", -1, 1, 0, 0, 1 },
        { "pad", 0, "f32[2,3]", "f32[4,6]", "pad(x, [1, 1, 2, 1], value=0.5)", -1, 1, 0, 0, 1 },
        { "concat", 0, "f32[2,3]", "f32[2,6]", "concat([x, x * x], axis=1)", -1, 1, 0, 0, 1 },
        { "gather rows", 0, "f32[3,4]", "f32[5,4]", "x[i]", -1, 1, "i: i64[5]", 0, 1 },
        { "onehot", 0, "i64[7]", 0, "onehot(x, 3)", 0, 0, 0, 0, 0 },
        { "matmul", 0, "f32[5,9]", "f32[5,7]", "matmul(x, b)", -1, 1, "b: f32[9,7]", 2e-5, 1 },
        { "matmul, batched left", 0, "f32[9,7]", "f32[2,5,7]", "matmul(a, x)", -1, 1, "a: f32[2,5,9]", 2e-5, 1 },
        { "linear (transposed weight)", 0, "f32[6,9]", "f32[4,6]", "linear(a, x, b)", -1, 1, "a: f32[4,9], b: f32[6]", 2e-5, 1 },
        { "conv2d (stride 2, padding 1)", 0, "f32[2,3,7,6]", "f32[2,4,4,3]", "conv2d(x, k, stride=2, padding=1)", -1, 1, "k: f32[4,3,3,3]", 2e-5, 1 },
        { "conv2d (dilation 2, groups 2)", 0, "f32[2,4,7,7]", "f32[2,4,5,5]", "conv2d(x, k, dilation=2, padding=1, groups=2)", -1, 1, "k: f32[4,2,3,3]", 2e-5, 1 },
        { "conv2d weight gradient", 0, "f32[4,3,3,3]", "f32[2,4,5,5]", "conv2d(a, x, padding=1)", -1, 1, "a: f32[2,3,5,5]", 2e-5, 1 },
        { "conv2d + bias + leaky_relu (epilogue)", 0, "f32[2,3,6,6]", "f32[2,4,6,6]",
          "leaky_relu(conv2d(x, k, padding=1) + reshape(b, [1, 4, 1, 1]), 0.2)", -1, 1, "k: f32[4,3,3,3], b: f32[4]", 2e-5, 1 },
        { "conv_transpose2d", 0, "f32[1,4,3,3]", "f32[1,6,6,6]", "conv_transpose2d(x, k, stride=2, padding=1, output_padding=1, groups=2)",
          -1, 1, "k: f32[4,3,3,3]", 2e-5, 1 },
        { "avg_pool2d", 0, "f32[2,3,6,6]", "f32[2,3,3,3]", "avg_pool2d(x, 2)", -1, 1, 0, 2e-6, 1 },
        { "upsample (alone: a copy kernel)", 0, "f32[2,3,3,5]", "f32[2,3,6,10]", "upsample(x, 2)", -1, 1, 0, 0, 1 },
        { "upsample fused into its reader", 0, "f32[2,3,3,5]", "f32[2,3,9,15]", "relu(upsample(exp(x), 3)) * 2.0", -1, 1, 0, 2e-6, 1 },
        { "xavier_uniform parameters (start bitwise alike)", "block xl(x) {\n param weight: f32[5, 3, 3, 3] = xavier_uniform(2)\n"
          " param w2: f32[4, 5] = xavier_uniform()\n return sum(conv2d(x, weight, padding=1), axis=[2, 3]) + sum(w2)\n}\n",
          "f32[2,3,4,4]", "f32[2,5]", "xl(x) as c", -1, 1, 0, 2e-5, 1 },
        { "upsample between convolutions", 0, "f32[2,3,4,3]", "f32[2,2,8,6]", "conv2d(upsample(conv2d(x, k, padding=1), 2), k2, padding=1)",
          -1, 1, "k: f32[4,3,3,3], k2: f32[2,4,3,3]", 2e-5, 1 },
        { "max_pool2d", 0, "f32[2,3,6,6]", "f32[2,3,3,3]", "max_pool2d(x, 2)", -1, 1, 0, 0, 1 },
        { "batch_norm (training statistics)", "import \"graphs/lib/norm.graph\"\n", "f32[4,3,2,2]", "f32[4,3,2,2]",
          "batch_norm(x, 3, true) as bn", -1, 1, 0, 2e-5, 1 },
        { "random draws", 0, "f32[300]", 0, "x * 0.0 + uniform([300], -1, 2) + normal([300], 1, 2) + cast(randint([300], 0, 9), \"f32\")"
          " + cast(bernoulli([300], 0.3), \"f32\")", -1, 1, 0, 0, 0 },
        { "sampler loop with noise", "sampler s(x, c, steps=4) {\n x = x * 0.5 + c + normal(x)\n}\n", "f32[3,5]", 0,
          "s(x, x * 2.0)", -1, 1, 0, 2e-6, 0 },
        { "nested samplers", "sampler inner(x, steps=3) {\n x = x + uniform(x) * x\n}\nsampler outer(x, steps=2) {\n x = inner(x) * 0.5\n}\n",
          "f32[4]", 0, "outer(x)", -1, 1, 0, 2e-6, 0 },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) jc_op_case(&cases[i]);
    jc_two_optimizers();

    const char *mnist[] = { "batch=3", "buffer_size=20", "sgld_steps=3" };
    const char *wrn[] = { "batch=2", "depth=10", "widen=1", "classes=5", "buffer_size=10", "sgld_steps=2" };
    const char *mlp[] = { "batch=5", "sgld_steps=3" };
    jc_graph("jem_mnist", "graphs/jem_mnist.graph", mnist, 3, 2);
    jc_graph("jem_wrn28 (depth 10)", "graphs/jem_wrn28.graph", wrn, 6, 2);
    jc_graph("mlp_tabular", "graphs/mlp_tabular.graph", mlp, 2, 2);

    jc_threads("jem_mnist", "graphs/jem_mnist.graph", mnist, 3, "train_step");
    jc_threads("jem_wrn28 (depth 10)", "graphs/jem_wrn28.graph", wrn, 6, "jem_loss");

    /* fusion pins (batch 64, the shipped defaults) */
    jc_pin_kernels("graphs/jem_mnist.graph", NULL, 0, "logits", 1, 4);
    jc_pin_kernels("graphs/jem_mnist.graph", NULL, 0, "jem_loss", 32, 23);
    /* 85: the gradients' means over data-parallel shards (compiler/dp.h) are
       buffers of their own between the phases, which costs 4 small kernels;
       86 and 34: the chains' draws are fused (no runtime step; the restart
       mask is a kernel of 64 elements, not a draw per pixel) */
    jc_pin_kernels("graphs/jem_mnist.graph", NULL, 0, "train_step", 86, 34);
    const char *wrn2[] = { "widen=2" };
    jc_pin_kernels("graphs/jem_wrn28.graph", wrn2, 1, "logits", 7, 30);

    jc_memory("graphs/jem_mnist.graph", NULL, 0);
    jc_memory("graphs/jem_wrn28.graph", wrn2, 1);
    jc_memory("graphs/mlp_tabular.graph", NULL, 0);
    return tap_done();
}
