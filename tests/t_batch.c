/* t_batch.c — twin batching (compiler/batch.h; issue 19, item 3): two
 * evaluations of one model in a program run as one of twice the batch.
 *
 *   1. a small JEM loss (f on x and on x_q, with a gradient): the pass pairs
 *      both convolutions and the matrix product with what lies between, so
 *      the forward graph holds 2 conv2d nodes instead of 4; the reference
 *      interpreter gives the same outputs, parameter gradients included,
 *      within 2e-6 of each tensor's own scale;
 *   2. an op that mixes rows (a mean over the batch axis between the layers)
 *      stays one per half: the pass batches around it and the results, a
 *      gradient with respect to an input included, are unchanged; also when
 *      the batch sum lands on axis 0 with the batch's own size; a gradient
 *      with respect to an activation of one half (which must stay a node of
 *      its own, read by the batched layer above it);
 *   3. a model applied to its own output (the second evaluation depends on
 *      the first) is left alone;
 *   4. every program the pass changes in jem_mnist, jem_wrn28 (depth 10; and
 *      with batch norm's training statistics, which stay per half),
 *      mlp_tabular, vera_mnist and ssl_tabular: the interpreter's outputs and
 *      globals after the run within 1e-5 of each tensor's scale;
 *   5. jem_mnist (batch 8) compiled for the CPU with and without the pass:
 *      jem_loss and train_step agree within 1e-5 of each tensor's scale (the
 *      filter gradients add the two halves in one reduction), and the batched
 *      train_step is bitwise identical with 1 and 2 threads. */
#include "tap.h"
#include "compiled_helpers.h"

#define CONV_BLOCK                                                                   \
    "block conv(x, cin, cout, stride=1) {\n"                                        \
    "    param weight: f32[cout, cin, 3, 3] = uniform(-0.4, 0.4)\n"                 \
    "    param bias: f32[cout] = uniform(-0.4, 0.4)\n"                              \
    "    return conv2d(x, weight, stride=stride, padding=1) + reshape(bias, [1, cout, 1, 1])\n" \
    "}\n"

static const char *jem_text = CONV_BLOCK
    "model f(x: f32[6, 2, 8, 8]) -> f32[6, 5] {\n"
    "    h = leaky_relu(conv(x, 2, 4) as c1, 0.2)\n"
    "    h = leaky_relu(conv(h, 4, 8, stride=2) as c2, 0.2)\n"
    "    param w: f32[5, 128] = uniform(-0.1, 0.1)\n"
    "    param b: f32[5] = uniform(-0.1, 0.1)\n"
    "    return linear(flatten(h), w, b)\n"
    "}\n"
    "program loss(x: f32[6, 2, 8, 8], y: i64[6], x_q: f32[6, 2, 8, 8]) {\n"
    "    l = cross_entropy(f(x), y) + mean(logsumexp(f(x_q), axis=1)) - mean(logsumexp(f(x), axis=1))\n"
    "    output l\n"
    "    output e_q = logsumexp(f(x_q), axis=1)\n"
    "    output g = grad(l, params)\n"
    "}\n";

static const char *mix_text = CONV_BLOCK
    "model g(x: f32[6, 2, 8, 8]) -> f32[6] {\n"
    "    h = leaky_relu(conv(x, 2, 4) as d1, 0.2)\n"
    "    h = h - mean(h, axis=0)\n"
    "    return sum(conv(h, 4, 3) as d2, axis=[1, 2, 3])\n"
    "}\n"
    "model k(x: f32[6, 2, 8, 8]) -> f32[6, 2, 8, 8] {\n"
    "    return conv(x, 2, 2) as k1\n"
    "}\n"
    "program mixed(x: f32[6, 2, 8, 8], x_q: f32[6, 2, 8, 8]) {\n"
    "    l = sum(g(x) * g(x)) - sum(g(x_q))\n"
    "    output l\n"
    "    output gx = grad(l, x_q)\n"
    "}\n"
    "model r(x: f32[6, 2, 8, 8]) -> f32[6] {\n"
    "    s = reshape(sum(conv(x, 2, 6) as e1, axis=0), [6, 1, 8, 8])\n"
    "    return sum(conv(s, 1, 2) as e2, axis=[1, 2, 3])\n"
    "}\n"
    "program folded(x: f32[6, 2, 8, 8], x_q: f32[6, 2, 8, 8]) {\n"
    "    output o = r(x) - r(x_q)\n"
    "    output go = grad(sum(r(x) * r(x_q)), x)\n"
    "}\n"
    "model u(x: f32[6, 2, 8, 8]) -> f32[6, 4, 8, 8] {\n"
    "    return leaky_relu(conv(x, 2, 4) as u1, 0.2)\n"
    "}\n"
    "model v(h: f32[6, 4, 8, 8]) -> f32[6] {\n"
    "    return sum(conv(h, 4, 2) as v1, axis=[1, 2, 3])\n"
    "}\n"
    "program inner(x: f32[6, 2, 8, 8], x_q: f32[6, 2, 8, 8]) {\n"
    "    h = u(x)\n"
    "    output gh = grad(sum(v(h) * v(u(x_q))), h)\n"
    "}\n"
    "program chain(x: f32[6, 2, 8, 8]) {\n"
    "    output z = k(k(x))\n"
    "}\n";

/* nodes of op in program p's graph (batch_axis: only reductions over axis 0 alone) */
static int count_ops(jm_module *m, int p, jm_op op, int batch_axis) {
    const jm_graph *g = &m->graphs[m->programs[p].graph];
    int n = 0;
    for (int i = 0; i < g->nnode; i++)
        n += g->node[i].op == op && (!batch_axis || (g->node[i].attr.ni == 1 && g->node[i].attr.i[0] == 0));
    return n;
}

/* elaborates and simplifies text (no autodiff yet) */
static jm_module *front(jt_unit *u, const char *text) {
    jt_load(u, text);
    if (u->m && jm_simplify(u->m, &u->d, 0) != 0) u->m = NULL;
    fflush(u->errf);
    return u->m;
}

static int finish(jt_unit *u) {
    int rc = u->m && jm_autodiff(u->m, &u->d) == 0 && jm_simplify(u->m, &u->d, 1) == 0;
    fflush(u->errf);
    return rc;
}

/* max |a - b| / max |a| over n values */
static double rel_diff(const double *a, const double *b, int64_t n) {
    double big = 0, err = 0;
    for (int64_t i = 0; i < n; i++) big = fmax(big, fabs(a[i])), err = fmax(err, fabs(a[i] - b[i]));
    return big > 0 ? err / big : err;
}

/* With batch norm after a convolution, the convolution's bias has a gradient
   that is zero in exact arithmetic (the norm subtracts the channel's mean): the
   computed one is rounding noise, about 1e-4 of the weights' gradients, that
   any change in the order of additions changes. Its optimizer state is left out. */
static int bias_before_norm(const char *name, int norm) {
    size_t n = strlen(name);
    return norm && n > 5 && strcmp(name + n - 5, ".bias") == 0 && (strstr(name, "conv") || strstr(name, "shortcut"));
}

/* Program p of a and b in the interpreter (same seed, same inputs drawn from
   in_seed): the worst max |a - b| / max |a| over the outputs and, with
   `globals`, over every global after the run (parameters after an optimizer
   step, moments, replay buffers); -1 when a run fails. *what names the worst. */
static double interp_compare(jm_module *a, jm_module *b, int p, uint64_t in_seed, int64_t classes, int globals, int norm,
                             const char **what) {
    jm_tensor in[8];
    memset(in, 0, sizeof in);
    rng_state = in_seed;
    jc_fill_inputs(a, p, in, -1, 1, classes);
    jm_interp Ia, Ib;
    jm_interp_init(&Ia, a, 4);
    jm_interp_init(&Ib, b, 4);
    jm_tensor *oa = NULL, *ob = NULL;
    double worst = -1;
    const char *report = getenv("JEMC_TEST_REPORT");
    if (jm_interp_run(&Ia, p, in, &oa) == 0 && jm_interp_run(&Ib, p, in, &ob) == 0) {
        worst = 0;
        for (int k = 0; k < a->programs[p].noutputs; k++) {
            double e = rel_diff(oa[k].data, ob[k].data, jm_type_numel(&oa[k].type));
            if (report) printf("# report %s %s %.3g\n", a->programs[p].name, a->programs[p].outputs[k].name, e);
            if (e > worst || isnan(e)) worst = e, *what = a->programs[p].outputs[k].name;
        }
        for (int gl = 0; globals && gl < a->nglobals; gl++) {
            if (bias_before_norm(a->globals[gl].name, norm) && a->globals[gl].kind == JM_GLOBAL_STATE) continue;
            double e = rel_diff(Ia.globals[gl].data, Ib.globals[gl].data, jm_type_numel(&Ia.globals[gl].type));
            if (report && e > 1e-6) printf("# report %s %s %.3g\n", a->programs[p].name, a->globals[gl].name, e);
            if (e > worst || isnan(e)) worst = e, *what = a->globals[gl].name;
        }
    } else {
        tap_diag("%s: interpreter: %s / %s", a->programs[p].name, Ia.err, Ib.err);
    }
    for (int k = 0; oa && k < a->programs[p].noutputs; k++) jm_tensor_free(&oa[k]);
    for (int k = 0; ob && k < b->programs[p].noutputs; k++) jm_tensor_free(&ob[k]);
    free(oa), free(ob);
    jm_interp_free(&Ia), jm_interp_free(&Ib);
    for (int i = 0; i < a->programs[p].ninputs; i++) jm_tensor_free(&in[i]);
    return worst;
}

/* every output of program `name` of a and b: the worst relative difference */
static double interp_diff(jm_module *a, jm_module *b, const char *name, int *nout) {
    const char *what = "";
    int p = jm_module_find_program(a, name);
    *nout = a->programs[p].noutputs;
    return interp_compare(a, b, p, 7, 5, 0, 0, &what);
}

static void check_small(void) {
    jt_unit ua, ub;
    jm_module *a = front(&ua, jem_text), *b = front(&ub, jem_text);
    if (!ok(a && b, "the small JEM graph loads")) { tap_diag("%s", ua.errors); return; }
    int p = jm_module_find_program(b, "loss");
    int before = count_ops(b, p, JM_OP_CONV2D, 0);
    ok(jm_batch_twins(b, &ub.d, NULL, NULL) == 0, "the pass runs");
    ok(b->programs[p].twins >= 8 && count_ops(b, p, JM_OP_CONV2D, 0) == 2 && before == 4 && count_ops(b, p, JM_OP_MATMUL, 0) == 1,
       "loss: %d pairs; conv2d %d -> %d, matmul %d (want >= 8 pairs, 4 -> 2 convolutions, 1 matmul)",
       b->programs[p].twins, before, count_ops(b, p, JM_OP_CONV2D, 0), count_ops(b, p, JM_OP_MATMUL, 0));
    if (ok(finish(&ua) && finish(&ub), "autodiff differentiates the batched graph")) {
        int no;
        double e = interp_diff(a, b, "loss", &no);
        ok(e >= 0 && e <= 2e-6, "loss: %d outputs (loss, energies, 6 parameter gradients) equal the unbatched ones within 2e-6 of their scale (worst %.2g)", no, e);
    } else {
        tap_diag("%s%s", ua.errors, ub.errors);
    }
    jt_unload(&ua), jt_unload(&ub);
}

static void check_mixed(void) {
    jt_unit ua, ub;
    jm_module *a = front(&ua, mix_text), *b = front(&ub, mix_text);
    if (!ok(a && b, "the graph with a batch mean loads")) { tap_diag("%s", ua.errors); return; }
    int pm = jm_module_find_program(b, "mixed"), pc = jm_module_find_program(b, "chain");
    int means = count_ops(b, pm, JM_OP_SUM, 1);
    ok(jm_batch_twins(b, &ub.d, NULL, NULL) == 0, "the pass runs");
    ok(b->programs[pm].twins > 0 && count_ops(b, pm, JM_OP_CONV2D, 0) == 2 && count_ops(b, pm, JM_OP_SUM, 1) == means && means >= 2,
       "mixed: both convolutions batched (%d conv2d), the means over the batch axis stay one per half (%d, was %d)",
       count_ops(b, pm, JM_OP_CONV2D, 0), count_ops(b, pm, JM_OP_SUM, 1), means);
    ok(b->programs[pc].twins == 0 && count_ops(b, pc, JM_OP_CONV2D, 0) == 2,
       "chain: k(k(x)) is not batched (the second evaluation reads the first; %d pairs)", b->programs[pc].twins);
    if (ok(finish(&ua) && finish(&ub), "autodiff differentiates the batched graph")) {
        int no;
        double e = interp_diff(a, b, "mixed", &no);
        ok(e >= 0 && e <= 2e-6, "mixed: the loss and its gradient in x_q equal the unbatched ones within 2e-6 of their scale (worst %.2g)", e);
        e = interp_diff(a, b, "folded", &no);
        ok(e >= 0 && e <= 2e-6, "folded: a sum over the batch axis of size B, reshaped back to [B, ...], stays one per half (worst %.2g)", e);
        e = interp_diff(a, b, "inner", &no);
        ok(e >= 0 && e <= 2e-6, "inner: a gradient with respect to an activation of one half equals the unbatched one (worst %.2g)", e);
        e = interp_diff(a, b, "chain", &no);
        ok(e == 0, "chain: unchanged, bitwise (%.2g)", e);
    } else {
        tap_diag("%s%s", ua.errors, ub.errors);
    }
    jt_unload(&ua), jt_unload(&ub);
}

/* runs program `name` once with `threads`; returns outputs then state, concatenated */
static unsigned char *run_compiled(jc_module *c, const char *name, int threads, size_t *len) {
    int p = jm_table_find_program(&c->plan.table, name);
    const jm_tprogram *tp = &c->plan.table.programs[p];
    jm_tensor in[8];
    memset(in, 0, sizeof in);
    rng_state = 11;
    jc_fill_inputs(c->u.m, jm_module_find_program(c->u.m, name), in, -1, 1, 10);
    void *tin[8], *tout[64];
    for (int i = 0; i < tp->ninputs; i++) {
        tin[i] = malloc((size_t)jm_rt_desc_numel(&tp->inputs[i]) * 8 + 8);
        jc_to_typed(&in[i], tp->inputs[i].dtype, tin[i]);
    }
    size_t total = 0;
    for (int i = 0; i < tp->noutputs; i++) total += (size_t)jm_rt_desc_numel(&tp->outputs[i]) * jm_rt_dtype_size(tp->outputs[i].dtype);
    unsigned char *all = malloc(total + (size_t)c->plan.table.state_bytes + 1), *q = all;
    for (int i = 0; i < tp->noutputs; i++) { tout[i] = q; q += (size_t)jm_rt_desc_numel(&tp->outputs[i]) * jm_rt_dtype_size(tp->outputs[i].dtype); }
    jm_rt rt;
    jm_rt_open(&rt, &c->plan.table, c->fns, 9);
    rt.threads = threads;
    int rc = jm_rt_run(&rt, p, (const void *const *)tin, tout);
    memcpy(q, rt.state, (size_t)c->plan.table.state_bytes);
    jm_rt_close(&rt);
    for (int i = 0; i < tp->ninputs; i++) { free(tin[i]); jm_tensor_free(&in[i]); }
    *len = total + (size_t)c->plan.table.state_bytes;
    if (rc != 0) { free(all); return NULL; }
    return all;
}

/* the worst relative difference over the float32 outputs (each at its own
   scale) and over the parameters of the state */
static double compiled_diff(jc_module *a, jc_module *b, const char *name, const unsigned char *ra, const unsigned char *rb) {
    const jm_tprogram *tp = &a->plan.table.programs[jm_table_find_program(&a->plan.table, name)];
    double worst = 0;
    size_t off = 0;
    for (int i = 0; i < tp->noutputs; i++) {
        int64_t n = jm_rt_desc_numel(&tp->outputs[i]);
        if (tp->outputs[i].dtype == JM_DT_F32) {
            const float *x = (const float *)(ra + off), *y = (const float *)(rb + off);
            double big = 0, err = 0;
            for (int64_t k = 0; k < n; k++) big = fmax(big, fabs(x[k])), err = fmax(err, fabs((double)x[k] - y[k]));
            double rel = big > 0 ? err / big : err;
            if (rel > worst || isnan(rel)) worst = rel;
        }
        off += (size_t)n * jm_rt_dtype_size(tp->outputs[i].dtype);
    }
    /* the globals after the run (parameters, Adam's moments, the replay buffer) */
    for (int g = 0; g < a->plan.table.nglobals; g++) {
        const jm_tdesc *d = &a->plan.table.globals[g].t;
        if (d->dtype != JM_DT_F32) continue;
        const float *x = (const float *)(ra + off + jm_ref_offset(d->ref)), *y = (const float *)(rb + off + jm_ref_offset(d->ref));
        int64_t n = jm_rt_desc_numel(d);
        double big = 0, err = 0;
        for (int64_t k = 0; k < n; k++) big = fmax(big, fabs(x[k])), err = fmax(err, fabs((double)x[k] - y[k]));
        double rel = big > 0 ? err / big : err;
        if (getenv("JEMC_TEST_REPORT")) printf("# report %s %s %.3g\n", name, d->name, rel);
        if (rel > worst || isnan(rel)) worst = rel;
    }
    (void)b;
    return worst;
}

static void check_mnist(void) {
    const char *defs[1] = { "batch=8" };
    jc_module off, on;
    jc_batch_twins = 0;
    int r0 = jc_compile(&off, NULL, "graphs/jem_mnist.graph", defs, 1);
    jc_batch_twins = 1;
    int r1 = jc_compile(&on, NULL, "graphs/jem_mnist.graph", defs, 1);
    jc_batch_twins = 0;
    if (ok(r0 == 0 && r1 == 0, "jem_mnist (batch 8) compiles with and without twin batching")) {
        int p = jm_module_find_program(on.u.m, "jem_loss"), ps = jm_module_find_program(on.u.m, "train_step");
        ok(on.u.m->programs[p].twins >= 11 && on.u.m->programs[ps].twins >= 11,
           "jem_loss and train_step batch the model's 3 convolutions, the matmul and what lies between (%d and %d pairs)",
           on.u.m->programs[p].twins, on.u.m->programs[ps].twins);
        const char *progs[2] = { "jem_loss", "train_step" };
        for (int k = 0; k < 2; k++) {
            size_t la, lb;
            unsigned char *ra = run_compiled(&off, progs[k], 2, &la), *rb = run_compiled(&on, progs[k], 2, &lb);
            double e = ra && rb && la == lb ? compiled_diff(&off, &on, progs[k], ra, rb) : INFINITY;
            ok(e <= 1e-5, "%s: batched and unbatched compiled outputs agree within 1e-5 of each tensor's scale, the state after it too (worst %.2g)", progs[k], e);
            if (k == 1) {
                size_t l1;
                unsigned char *r1t = run_compiled(&on, progs[k], 1, &l1);
                ok(rb && r1t && l1 == lb && memcmp(r1t, rb, lb) == 0, "train_step batched: outputs and state bitwise identical with 1 and 2 threads");
                free(r1t);
            }
            free(ra), free(rb);
        }
    } else {
        tap_diag("%s%s", off.u.errors ? off.u.errors : "", on.u.errors ? on.u.errors : "");
    }
    jc_free(&off), jc_free(&on);
}

/* Every program of a shipped graph that the pass changes, in the interpreter
   with and without it: outputs and every global after the run at their own scale. */
static void check_graph(const char *file, const char *const *defs, int ndefs, double tol, int norm) {
    jt_unit ua, ub;
    jc_batch_twins = 0;
    jm_module *a = jc_load(&ua, NULL, file, defs, ndefs);
    jc_batch_twins = 1;
    jm_module *b = jc_load(&ub, NULL, file, defs, ndefs);
    jc_batch_twins = 0;
    if (!ok(a && b, "%s: loads with and without twin batching", file)) {
        tap_diag("%s%s", ua.errors ? ua.errors : "", ub.errors ? ub.errors : "");
        jt_unload(&ua), jt_unload(&ub);
        return;
    }
    int nprog = 0, failed = 0;
    double worst = 0;
    const char *wname = "", *wprog = "";
    for (int p = 0; p < b->nprograms && !failed; p++) {
        if (!b->programs[p].twins) continue;
        nprog++;
        const char *what = "";
        double e = interp_compare(a, b, p, 5, 2, 1, norm, &what);
        failed = e < 0;
        if (e > worst || isnan(e)) worst = e, wname = what, wprog = a->programs[p].name;
    }
    ok(!failed && nprog > 0 && worst <= tol,
       "%s: %d batched programs give the unbatched outputs and state within %.0e of each tensor's scale (worst %.2g: %s of %s)",
       file, nprog, tol, worst, wname, wprog);
    jt_unload(&ua), jt_unload(&ub);
}

int main(void) {
    check_small();
    check_mixed();
    check_mnist();
    const char *mnist[] = { "batch=3", "buffer_size=20", "sgld_steps=3" };
    const char *wrn[] = { "batch=2", "depth=10", "widen=1", "classes=5", "buffer_size=10", "sgld_steps=2" };
    const char *mlp[] = { "batch=5", "sgld_steps=3" };
    check_graph("graphs/jem_mnist.graph", mnist, 3, 1e-5, 0);
    check_graph("graphs/jem_wrn28.graph", wrn, 6, 1e-5, 0);
    /* with batch norm (training statistics): each half keeps its own batch statistics */
    const char *wrn_bn[] = { "batch=2", "depth=10", "widen=1", "classes=5", "buffer_size=10", "sgld_steps=2", "norm=1" };
    check_graph("graphs/jem_wrn28.graph", wrn_bn, 7, 1e-5, 1);
    check_graph("graphs/mlp_tabular.graph", mlp, 2, 1e-5, 0);
    const char *vera[] = { "batch=4", "post_samples=2" };
    check_graph("graphs/vera_mnist.graph", vera, 2, 1e-5, 0);
    check_graph("graphs/ssl_tabular.graph", mlp, 2, 1e-5, 0);
    return tap_done();
}
