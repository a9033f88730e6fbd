/* rt_sample_gen.c — samples of a VERA generator (`sample --from generator`,
 * and train's sample grids when the graph has no replay buffer); see
 * rt_sample.h and docs/runtime.md.
 *
 * The latents are the runtime's: h ~ N(0, I) and, for MALA, e ~ N(0, I) in
 * data space, drawn by Philox keyed by the seed (element = the value's index
 * in the batch, iteration = the batch, one stream each), so the same --seed
 * gives the same samples on every device and thread count. Without MALA the
 * graph's `generate(h)` gives G(h) + sigma * eps (eps drawn inside). With
 * MALA the runtime loops `mala_latent(h, e, eta)` (or `mala_latent_cond(h, e,
 * y, eta)`), one Metropolis-adjusted Langevin step on (h, e) a run, and after
 * each step adapts the step size toward 57% acceptance (VERA's rule, its
 * mcmc_lr 0.02, which VERA applies once per chain with the mean acceptance of
 * its steps; here after every step, as the graphs/runtime contract says):
 *
 *     eta <- eta + 0.02 * (mean(accept) - 0.57) * eta
 *
 * The samples are the last step's `samples` (G(h) + sigma * e). A batch is
 * filled with fresh draws past the last sample wanted (never duplicates: the
 * generator's batch norm sees a batch of independent latents). */
#include "rt_sample.h"
#include "engine/philox.h"
#include "rt_session.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { JM_GEN_H, JM_GEN_E, JM_GEN_ETA, JM_GEN_Y };

/* program p's input `name` with the wanted element type and rank, or -1 after a message */
static int jm_gen_input(const jm_tprogram *pr, const char *name, int dtype, int rank, const char *want, const char *who) {
    int i = jm_session_input(pr, name);
    if (i >= 0 && pr->inputs[i].dtype == dtype && pr->inputs[i].rank == rank) return i;
    fprintf(stderr, "%s: program %s must take %s: %s\n", who, pr->name, name, want);
    return -1;
}

static int jm_gen_output(const jm_tprogram *pr, const char *name, int rank, const char *want, const char *who) {
    int i = jm_session_output(pr, name);
    if (i >= 0 && pr->outputs[i].dtype == JM_DT_F32 && pr->outputs[i].rank == rank) return i;
    fprintf(stderr, "%s: program %s must output %s: %s\n", who, pr->name, name, want);
    return -1;
}

int jm_sample_gen_open(const jm_table *t, int mala, int cond, jm_gen_prog *g, const char *who) {
    memset(g, 0, sizeof *g);
    const char *name = !mala ? "generate" : cond ? "mala_latent_cond" : "mala_latent";
    g->p = jm_session_program(t, name, 1, who);
    if (g->p < 0) {
        fprintf(stderr, "%s: samples from the generator need program %s (%s); see docs/runtime.md, 'sample'\n", who, name,
                !mala ? "generate(h): outputs mean = G(h) and samples = G(h) + sigma * eps"
                : cond ? "mala_latent_cond(h, e, y, eta): one MALA step toward class y, for --class"
                       : "mala_latent(h, e, eta): one MALA step, for --mala-steps");
        return -1;
    }
    const jm_tprogram *pr = g->pr = &t->programs[g->p];
    g->in[JM_GEN_H] = jm_gen_input(pr, "h", JM_DT_F32, 2, "f32[batch, noise_dim]", who);
    if (g->in[JM_GEN_H] < 0) return -1;
    g->B = pr->inputs[g->in[JM_GEN_H]].dim[0];
    g->D = pr->inputs[g->in[JM_GEN_H]].dim[1];
    g->out_x = jm_gen_output(pr, "samples", 4, "f32[batch, C, H, W]", who);
    if (g->out_x < 0) return -1;
    const jm_tdesc *xd = &pr->outputs[g->out_x];
    g->C = xd->dim[1];
    g->H = xd->dim[2];
    g->W = xd->dim[3];
    int nin = 1;
    if (mala) {
        if ((g->in[JM_GEN_E] = jm_gen_input(pr, "e", JM_DT_F32, 4, "f32[batch, C, H, W] (the noise in data space)", who)) < 0) return -1;
        if ((g->in[JM_GEN_ETA] = jm_gen_input(pr, "eta", JM_DT_F32, 0, "f32[] (the step size)", who)) < 0) return -1;
        if ((g->out_h = jm_gen_output(pr, "h", 2, "f32[batch, noise_dim] (the next latent)", who)) < 0) return -1;
        if ((g->out_e = jm_gen_output(pr, "e", 4, "f32[batch, C, H, W] (the next noise)", who)) < 0) return -1;
        if ((g->out_acc = jm_gen_output(pr, "accept", 1, "f32[batch] (1 accepted, 0 not)", who)) < 0) return -1;
        nin = 3;
    }
    if (cond) {
        if ((g->in[JM_GEN_Y] = jm_gen_input(pr, "y", JM_DT_I64, 1, "i64[batch] (the classes)", who)) < 0) return -1;
        nin++;
    }
    if (pr->ninputs != nin) {
        fprintf(stderr, "%s: program %s takes %d inputs; it should take %s\n", who, pr->name, pr->ninputs,
                !mala ? "h" : cond ? "h, e, y and eta" : "h, e and eta");
        return -1;
    }
    /* every tensor of a batch has the same batch size and the samples' shape */
    const jm_tdesc *hd = &pr->inputs[g->in[JM_GEN_H]];
    int bad = xd->dim[0] != g->B;
    if (mala) {
        const jm_tdesc *ed = &pr->inputs[g->in[JM_GEN_E]];
        bad |= pr->outputs[g->out_acc].dim[0] != g->B || pr->outputs[g->out_h].dim[0] != g->B || pr->outputs[g->out_h].dim[1] != g->D;
        for (int k = 0; k < 4; k++) bad |= ed->dim[k] != xd->dim[k] || pr->outputs[g->out_e].dim[k] != xd->dim[k];
    }
    if (cond) bad |= pr->inputs[g->in[JM_GEN_Y]].dim[0] != g->B;
    if (bad || hd->dim[0] < 1 || hd->dim[1] < 1) {
        fprintf(stderr, "%s: program %s: h, e, y, accept and samples must agree on the batch (%lld) and e, samples on the image shape\n", who,
                pr->name, (long long)g->B);
        return -1;
    }
    g->mala = mala;
    g->cond = cond;
    return 0;
}

/* N(0, 1) draws for a batch: n values, stream `stream`, batch number b */
static void jm_gen_normals(float *v, int64_t n, uint32_t stream, int64_t b, uint64_t seed) {
    for (int64_t i = 0; i < n; i++) v[i] = (float)jm_philox_normal((uint32_t)i, (uint32_t)b, stream, 0, seed);
}

int jm_sample_gen_draw(jm_rt *rt, const jm_gen_prog *g, jm_gen_draw *d, float *x, const char *who) {
    const jm_tprogram *pr = g->pr;
    int64_t per = g->C * g->H * g->W, B = g->B;
    float *h = malloc(sizeof(float) * (size_t)(B * g->D)), *e = g->mala ? malloc(sizeof(float) * (size_t)(B * per)) : NULL;
    int64_t *y = g->cond ? malloc(sizeof(int64_t) * (size_t)B) : NULL;
    void **out = jm_session_outputs(pr);
    int rc = h && out && (!g->mala || e) && (!g->cond || y) ? 0 : -1;
    if (rc) fprintf(stderr, "%s: out of memory\n", who);
    const uint32_t s_h = jm_hash32("jemc.sample.generator.h", 23, 0), s_e = jm_hash32("jemc.sample.generator.e", 23, 0);
    double acc_sum = 0;
    int64_t acc_n = 0;
    float eta = (float)d->eta;
    for (int64_t b0 = 0, b = 0; b0 < d->total && rc == 0; b0 += B, b++) {
        int64_t real = d->total - b0 < B ? d->total - b0 : B;
        jm_gen_normals(h, B * g->D, s_h, b, d->seed);
        if (g->mala) jm_gen_normals(e, B * per, s_e, b, d->seed);
        /* rows past the last sample ask for the first row's class: any class will do */
        for (int64_t i = 0; y && i < B; i++) y[i] = d->y[b0 + (i < real ? i : 0)];
        const void *in[4];
        in[g->in[JM_GEN_H]] = h;
        if (g->mala) { in[g->in[JM_GEN_E]] = e; in[g->in[JM_GEN_ETA]] = &eta; }
        if (g->cond) in[g->in[JM_GEN_Y]] = y;
        int64_t steps = g->mala ? d->mala_steps : 1;
        for (int64_t k = 0; k < steps && rc == 0; k++) {
            if (jm_rt_run(rt, g->p, in, out) != 0) { fprintf(stderr, "%s: %s failed: %s\n", who, pr->name, rt->err); rc = -1; break; }
            if (!g->mala) break;
            memcpy(h, out[g->out_h], sizeof(float) * (size_t)(B * g->D));
            memcpy(e, out[g->out_e], sizeof(float) * (size_t)(B * per));
            double a = 0;
            for (int64_t i = 0; i < B; i++) a += ((const float *)out[g->out_acc])[i];
            a /= (double)B;
            acc_sum += a;
            acc_n++;
            /* VERA's adaptation toward 57% acceptance, after every step */
            eta = (float)(eta + 0.02 * (a - 0.57) * eta);
        }
        if (rc == 0) memcpy(x + b0 * per, out[g->out_x], sizeof(float) * (size_t)(real * per));
    }
    d->eta = eta;
    d->accept = acc_n ? acc_sum / (double)acc_n : NAN;
    free(h);
    free(e);
    free(y);
    jm_session_free_outputs(pr, out);
    return rc;
}
