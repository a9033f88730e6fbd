/* t_fused_noise.c — random draws computed inside the kernels that use them
 * (issue 19, item 1: fused noise).
 *
 * With fusion on, float32 normal and uniform draws are inline ops of the
 * kernel that reads them (compiler/plan.c: jm_is_fused_rng; the IR is
 * codegen/rng_ir.c); with --fuse=off they are runtime steps
 * (engine/rt_cpu.c: jm_lib_rng). Both must draw the same numbers as the
 * interpreter, bit for bit. Checked on a graph with a sampler loop (the loop
 * iteration numbers the draws), a draw that is an output (a kernel of its
 * own) and a uniform inside an expression, 262,144 elements each:
 *   1. the plans: fused, no random step is left and the kernels say so;
 *      unfused, the draws are runtime steps;
 *   2. three runs (the run counter numbers the draws): fused, unfused and the
 *      interpreter agree bitwise, 4.7 million draws in all; 1 and 2 threads too;
 *   3. per-example draws of a data-parallel step (numbered by the global
 *      example: dp.h), shard 2 of 3: fused equals unfused bitwise, and the
 *      shard's numbers are not shard 0's;
 *   4. the float32 Box-Muller (engine/philox_core.h, what every backend
 *      computes): within 3e-7 max(1, |z|) of the same formula in double over
 *      4 million draws, and its moments are those of N(0, 1). */
#include "tap.h"
#include "compiled_helpers.h"
#include "interp.h"
#include "engine/philox.h"

#define N_EL (64 * 4 * 32 * 32)

static const char *graph_text =
    "sampler walk(x, steps=5, std=0.1) {\n"
    "    x = x + std * normal(x)\n"
    "}\n"
    "program noise(x: f32[64, 4, 32, 32]) {\n"
    "    output a = walk(x)\n"
    "    output n = normal([64, 4, 32, 32], 0.5, 2)\n"
    "    output u = x * uniform([64, 4, 32, 32], -1, 3)\n"
    "}\n";

/* the in-memory compile of jc_compile, with the draws marked per example on
   axis 1 (as compiler/dp.c marks them in a data-parallel program) when asked */
static int compile(jc_module *c, int fuse, int per_example) {
    memset(c, 0, sizeof *c);
    jm_plan_set_fusion(fuse);
    if (!jc_load(&c->u, graph_text, NULL, NULL, 0)) { jm_plan_set_fusion(1); return -1; }
    for (int g = 0; per_example && g < c->u.m->ngraphs; g++)
        for (int i = 0; i < c->u.m->graphs[g].nnode; i++) {
            jm_node *n = &c->u.m->graphs[g].node[i];
            if (jm_ops[n->op].cls != JM_CLASS_RNG) continue;
            if (n->attr.ni < 2) n->attr.ni = 2;
            n->attr.i[1] = 1;
        }
    int rc = jc_finish(c, NULL);
    jm_plan_set_fusion(1);
    return rc;
}

/* random steps and inline-drawing kernels of the program */
static void count_steps(const jc_module *c, int *rng_steps, int *rng_kernels) {
    const jm_tprogram *pr = &c->plan.table.programs[0];
    *rng_steps = *rng_kernels = 0;
    for (int s = 0; s < pr->nsteps; s++) {
        const jm_step *st = &pr->steps[s];
        if (st->kind == JM_STEP_LIB && st->op >= JM_LIB_RNG_UNIFORM && st->op <= JM_LIB_RNG_BERNOULLI) ++*rng_steps;
        if (st->kind == JM_STEP_KERNEL && c->plan.kernels[st->op].rng) ++*rng_kernels;
    }
}

/* the first element where two float buffers differ in their bits, or -1 */
static int64_t first_diff(const float *a, const float *b, int64_t n) {
    for (int64_t i = 0; i < n; i++) if (memcmp(&a[i], &b[i], 4) != 0) return i;
    return -1;
}

static float *out_buf[2][3];

/* runs `runs` times in a and b; the outputs of b's last run stay in out_buf[1] */
static int run_pair(jm_rt *a, jm_rt *b, const float *x, int runs, const char *label) {
    const void *in[1] = { x };
    int all_same = 1;
    for (int r = 0; r < runs; r++) {
        void *oa[3] = { out_buf[0][0], out_buf[0][1], out_buf[0][2] }, *ob[3] = { out_buf[1][0], out_buf[1][1], out_buf[1][2] };
        if (jm_rt_run(a, 0, in, oa) != 0 || jm_rt_run(b, 0, in, ob) != 0) {
            tap_diag("%s: run %d failed: %s / %s", label, r + 1, a->err, b->err);
            return 0;
        }
        for (int k = 0; k < 3; k++) {
            int64_t d = first_diff(out_buf[0][k], out_buf[1][k], N_EL);
            if (d >= 0) {
                tap_diag("%s: run %d: output %d differs first at element %lld: %.9g against %.9g", label, r + 1, k, (long long)d,
                         out_buf[0][k][d], out_buf[1][k][d]);
                all_same = 0;
            }
        }
    }
    return all_same;
}

int main(void) {
    jc_module on, off;
    if (!ok(compile(&on, 1, 0) == 0 && compile(&off, 0, 0) == 0, "compile the graph fused and unfused in memory")) {
        tap_diag("%s%s", on.u.errors ? on.u.errors : "", off.u.errors ? off.u.errors : "");
        return tap_done();
    }
    /* 1. the plans */
    int s_on, k_on, s_off, k_off;
    count_steps(&on, &s_on, &k_on);
    count_steps(&off, &s_off, &k_off);
    ok(s_on == 0 && k_on == 3, "fused: no random step is left; 3 kernels draw inline (got %d steps, %d kernels)", s_on, k_on);
    ok(s_off == 3 && k_off == 0, "unfused: the 3 draws are runtime steps (got %d steps, %d drawing kernels)", s_off, k_off);

    float *x = malloc(sizeof(float) * N_EL);
    for (int64_t i = 0; i < N_EL; i++) x[i] = (float)(2 * urand() - 1);
    for (int s = 0; s < 2; s++)
        for (int k = 0; k < 3; k++) out_buf[s][k] = malloc(sizeof(float) * N_EL);

    /* 2. fused against unfused, and both against the interpreter, 3 runs */
    jm_rt a, b;
    jm_rt_open(&a, &on.plan.table, on.fns, 11);
    jm_rt_open(&b, &off.plan.table, off.fns, 11);
    a.threads = b.threads = 2;
    ok(run_pair(&a, &b, x, 3, "fused/unfused"), "3 runs: fused and unfused draws agree bitwise (3 outputs of 262,144, 7 draws each run)");

    jm_interp I;
    jm_interp_init(&I, on.u.m, 11);
    jm_tensor in;
    memset(&in, 0, sizeof in);
    in.type = on.u.m->graphs[on.u.m->programs[0].graph].node[on.u.m->programs[0].inputs[0].node].type;
    in.data = malloc(sizeof(double) * N_EL);
    for (int64_t i = 0; i < N_EL; i++) in.data[i] = x[i];
    int same_interp = 1;
    for (int r = 0; r < 3 && same_interp; r++) {
        jm_tensor *out = NULL;
        if (jm_interp_run(&I, 0, &in, &out) != 0) { tap_diag("interpreter: %s", I.err); same_interp = 0; break; }
        if (r == 2)
            for (int k = 0; k < 3; k++)
                for (int64_t i = 0; i < N_EL && same_interp; i++)
                    if ((float)out[k].data[i] != out_buf[0][k][i] || (double)(float)out[k].data[i] != out[k].data[i]) {
                        tap_diag("output %d element %lld: interpreter %.17g, compiled %.9g", k, (long long)i, out[k].data[i],
                                 out_buf[0][k][i]);
                        same_interp = 0;
                    }
        for (int k = 0; k < 3; k++) jm_tensor_free(&out[k]);
        free(out);
    }
    ok(same_interp, "3 runs: the interpreter draws the same numbers bitwise (its third run against the compiled one's)");

    jm_rt one;
    jm_rt_open(&one, &on.plan.table, on.fns, 11);
    one.threads = 1;
    float *keep[3];
    for (int k = 0; k < 3; k++) { keep[k] = malloc(sizeof(float) * N_EL); memcpy(keep[k], out_buf[0][k], sizeof(float) * N_EL); }
    const void *in1[1] = { x };
    void *o1[3] = { out_buf[1][0], out_buf[1][1], out_buf[1][2] };
    int rc1 = 0;
    for (int r = 0; r < 3; r++) rc1 |= jm_rt_run(&one, 0, in1, o1);
    int same1 = rc1 == 0;
    for (int k = 0; k < 3; k++) same1 &= first_diff(keep[k], out_buf[1][k], N_EL) < 0;
    ok(same1, "1 thread draws what 2 threads draw, bitwise");

    /* 3. per-example draws, shard 2 of 3 */
    jc_module pon, poff;
    if (ok(compile(&pon, 1, 1) == 0 && compile(&poff, 0, 1) == 0, "compile the per-example variant fused and unfused")) {
        jm_rt pa, pb;
        jm_rt_open(&pa, &pon.plan.table, pon.fns, 11);
        jm_rt_open(&pb, &poff.plan.table, poff.fns, 11);
        pa.threads = pb.threads = 2;
        pa.dp_nshards = pb.dp_nshards = 3;
        pa.shard = pb.shard = 2;
        ok(run_pair(&pa, &pb, x, 2, "per example"), "per-example draws on shard 2 of 3: fused and unfused agree bitwise");
        /* one run on shard 2 and one on shard 0, fresh runtimes: other numbers */
        jm_rt_close(&pa);
        jm_rt p0;
        jm_rt_open(&pa, &pon.plan.table, pon.fns, 11);
        jm_rt_open(&p0, &pon.plan.table, pon.fns, 11);
        pa.dp_nshards = p0.dp_nshards = 3;
        pa.shard = 2;
        p0.shard = 0;
        void *oa[3] = { out_buf[0][0], out_buf[0][1], out_buf[0][2] }, *ob[3] = { out_buf[1][0], out_buf[1][1], out_buf[1][2] };
        int rc = jm_rt_run(&pa, 0, in1, oa) | jm_rt_run(&p0, 0, in1, ob);
        ok(rc == 0 && first_diff(out_buf[0][1], out_buf[1][1], N_EL) >= 0,
           "shard 2's draws are not shard 0's (the global example numbers them)");
        jm_rt_close(&p0);
        jm_rt_close(&pa);
        jm_rt_close(&pb);
    }

    /* 4. the float32 Box-Muller against double, and its moments */
    double worst = 0, s1 = 0, s2 = 0, s4 = 0;
    int64_t at = 0, n = 4000000, tail = 0;
    for (int64_t i = 0; i < n; i++) {
        jm_philox_block bl = jm_philox4x32((uint32_t)i, 9, 1234, 3, 77);
        float z = jm_philox_normal_f32_of(bl.v[0], bl.v[1]);
        double u1 = (float)((float)(int32_t)(bl.v[0] >> 1) * 0x1p-31f + 0x1p-32f), u2 = (double)(bl.v[1] >> 8) * 0x1p-24;
        double zd = sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
        double e = fabs(z - zd) / (fabs(zd) > 1 ? fabs(zd) : 1);
        if (e > worst) worst = e, at = i;
        s1 += z; s2 += (double)z * z; s4 += (double)z * z * z * z;
        tail += fabs(z) > 4;
    }
    ok(worst <= 3e-7, "float32 Box-Muller within 3e-7 max(1, |z|) of double on the same uniforms, 4M draws (worst %.3g at %lld)",
       worst, (long long)at);
    double mean = s1 / n, var = s2 / n - mean * mean;
    /* sampling error: mean 1/sqrt(n) = 5e-4, variance sqrt(2/n) = 7e-4; 5 sigma */
    ok(fabs(mean) < 2.5e-3 && fabs(var - 1) < 3.5e-3 && fabs(s4 / n - 3) < 0.02 && tail > 150 && tail < 400,
       "its moments are N(0, 1)'s: mean %.2g, variance %.5f, fourth moment %.4f, %lld beyond 4 sigma (253 expected)", mean, var,
       s4 / n, (long long)tail);

    jm_rt_close(&a);
    jm_rt_close(&b);
    jm_rt_close(&one);
    jm_interp_free(&I);
    free(in.data);
    free(x);
    for (int k = 0; k < 3; k++) free(keep[k]);
    for (int s = 0; s < 2; s++)
        for (int k = 0; k < 3; k++) free(out_buf[s][k]);
    jc_free(&on);
    jc_free(&off);
    jc_free(&pon);
    jc_free(&poff);
    return tap_done();
}
