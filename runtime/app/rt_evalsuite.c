/* rt_evalsuite.c — `EXE eval calibration` and `EXE eval ood` (see rt_sample.h):
 * per-example logits and energies from the graph's `evaluate` program, input
 * gradient norms from `sgld_grad`, the statistics of runtime/app/metrics.c, and
 * the pictures of runtime/app/plot.c, written into a report folder with a JSON
 * summary. */
#include "data.h"
#include "metrics.h"
#include "engine/philox.h"
#include "plot.h"
#include "rt_args.h"
#include "engine/rt_knobs.h"
#include "rt_sample.h"
#include "rt_session.h"
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* Per example of ds: softmax confidence and correctness (conf/right may be
   NULL), energy (may be NULL), max logit-softmax probability. The last partial
   batch is padded with record 0 and the padding ignored. */
static int jm_eval_collect(jm_rt *rt, const jm_dataset *ds, double *conf, unsigned char *right, double *energy, const char *who) {
    int p = jm_session_program(rt->t, "evaluate", 1, who);
    if (p < 0) return -1;
    const jm_tprogram *pr = &rt->t->programs[p];
    if (jm_session_fits(pr, ds, who) != 0) return -1;
    int xi = jm_session_input(pr, "x"), yi = jm_session_input(pr, "y");
    int li = jm_session_output(pr, "logits"), ei = jm_session_output(pr, "energy");
    if (yi < 0 || li < 0 || ei < 0) { fprintf(stderr, "%s: program evaluate needs inputs x, y and outputs logits, energy\n", who); return -1; }
    int64_t B = pr->inputs[xi].dim[0], per = (int64_t)ds->c * ds->h * ds->w, K = pr->outputs[li].dim[1];
    jm_session_buf bb;
    int have = jm_session_buf_alloc(&bb, B, per) == 0;
    float *x = bb.x;
    int64_t *y = bb.y;
    void **out = jm_session_outputs(pr);
    int rc = have && out ? 0 : -1;
    for (int64_t b0 = 0; b0 < ds->n && rc == 0; b0 += B) {
        int64_t real = jm_session_batch(ds, b0, &bb);
        const void *in[2];
        in[xi] = x;
        in[yi] = y;
        if (jm_rt_run(rt, p, in, out) != 0) { fprintf(stderr, "%s: evaluate failed: %s\n", who, rt->err); rc = -1; break; }
        const float *lg = out[li], *en = out[ei];
        for (int64_t i = 0; i < real; i++) {
            const float *l = lg + i * K;
            int64_t best = 0;
            double mx = l[0], z = 0;
            for (int64_t k = 1; k < K; k++) if (l[k] > l[best]) best = k;
            mx = l[best];
            for (int64_t k = 0; k < K; k++) z += exp((double)l[k] - mx);
            if (conf) conf[b0 + i] = 1.0 / z;                /* softmax of the largest logit */
            if (right) right[b0 + i] = best == y[i];
            if (energy) energy[b0 + i] = en[i];
        }
    }
    jm_session_buf_free(&bb);
    jm_session_free_outputs(pr, out);
    return rc;
}

/* -||d/dx log p(x)|| per example (JEM's pxgrad score: in-distribution inputs
   sit where the density is flat), from the `sgld_grad` program. */
static int jm_eval_pxgrad(jm_rt *rt, const jm_dataset *ds, double *score, const char *who) {
    int p = jm_session_program(rt->t, "sgld_grad", 1, who);
    if (p < 0) return -1;
    const jm_tprogram *pr = &rt->t->programs[p];
    if (jm_session_fits(pr, ds, who) != 0) return -1;
    int64_t B = pr->inputs[0].dim[0], per = (int64_t)ds->c * ds->h * ds->w;
    jm_session_buf bb;
    int have = jm_session_buf_alloc(&bb, B, per) == 0;
    float *x = bb.x;
    void **out = jm_session_outputs(pr);
    int rc = have && out ? 0 : -1;
    for (int64_t b0 = 0; b0 < ds->n && rc == 0; b0 += B) {
        int64_t real = jm_session_batch(ds, b0, &bb);
        const void *in[1] = { x };
        if (jm_rt_run(rt, p, in, out) != 0) { fprintf(stderr, "%s: sgld_grad failed: %s\n", who, rt->err); rc = -1; break; }
        const float *g = out[0];
        for (int64_t i = 0; i < real; i++) {
            double s = 0;
            for (int64_t k = 0; k < per; k++) s += (double)g[i * per + k] * g[i * per + k];
            score[b0 + i] = -sqrt(s);
        }
    }
    jm_session_buf_free(&bb);
    jm_session_free_outputs(pr, out);
    return rc;
}

static int jm_report_dir(const char *dir, const char *who) {
    if (mkdir(dir, 0777) != 0 && errno != EEXIST) { fprintf(stderr, "%s: cannot create %s: %s\n", who, dir, strerror(errno)); return -1; }
    return 0;
}

/* A uniform-noise data set shaped like ds (the "noise" OOD set). */
static int jm_noise_like(const jm_dataset *ds, int64_t n, jm_dataset *out) {
    memset(out, 0, sizeof *out);
    int64_t per = (int64_t)ds->c * ds->h * ds->w;
    out->x = malloc(sizeof(float) * (size_t)(n * per));
    out->y = calloc((size_t)n, sizeof(int64_t));
    if (!out->x || !out->y) { free(out->x); free(out->y); return -1; }
    for (int64_t i = 0; i < n * per; i++) out->x[i] = (float)(-1.0 + 2.0 * jm_philox_uniform((uint32_t)(i % per), (uint32_t)(i / per), 0x0d0e, 7, 0));
    out->n = n; out->c = ds->c; out->h = ds->h; out->w = ds->w; out->classes = ds->classes;
    out->format = ds->format; out->pad_value = ds->pad_value;
    snprintf(out->path, sizeof out->path, "noise");
    return 0;
}

int jm_evalsuite_calibration(jm_rt *rt, const void *dsv, int bins, const char *report, const char *who) {
    const jm_dataset *ds = dsv;
    double *conf = malloc(sizeof(double) * (size_t)ds->n), *cb = calloc((size_t)bins, sizeof(double)), *ab = calloc((size_t)bins, sizeof(double));
    unsigned char *right = malloc((size_t)ds->n);
    int64_t *nb = calloc((size_t)bins, sizeof(int64_t));
    int rc = -1;
    char path[1100], err[1024];
    if (!conf || !cb || !ab || !right || !nb) { fprintf(stderr, "%s: out of memory\n", who); goto done; }
    if (jm_eval_collect(rt, ds, conf, right, NULL, who) != 0) goto done;
    double ece = jm_metric_ece(conf, right, ds->n, bins, cb, ab, nb);
    int64_t nr = 0;
    for (int64_t i = 0; i < ds->n; i++) nr += right[i];
    printf("%s: %" PRId64 " records: accuracy %.4f, expected calibration error %.4f (%d equal-width bins)\n", ds->path, ds->n,
           (double)nr / (double)ds->n, ece, bins);
    if (jm_report_dir(report, who) != 0) goto done;
    snprintf(path, sizeof path, "%s/reliability.png", report);
    jm_plot_opts po = { "reliability diagram", "confidence", "accuracy", 0, 0, 0 };
    if (jm_plot_reliability(path, &po, cb, ab, nb, bins, err, sizeof err) != 0) { fprintf(stderr, "%s: %s\n", who, err); goto done; }
    snprintf(path, sizeof path, "%s/calibration.json", report);
    FILE *f = fopen(path, "w");
    if (!f) { fprintf(stderr, "%s: cannot write %s: %s\n", who, path, strerror(errno)); goto done; }
    fprintf(f, "{\"data\": \"%s\", \"records\": %" PRId64 ", \"accuracy\": %.6f, \"ece\": %.6f, \"bins\": %d, \"bin_confidence\": [", ds->path, ds->n,
            (double)nr / (double)ds->n, ece, bins);
    for (int b = 0; b < bins; b++) fprintf(f, "%s%.6f", b ? ", " : "", cb[b]);
    fprintf(f, "], \"bin_accuracy\": [");
    for (int b = 0; b < bins; b++) fprintf(f, "%s%.6f", b ? ", " : "", ab[b]);
    fprintf(f, "], \"bin_count\": [");
    for (int b = 0; b < bins; b++) fprintf(f, "%s%" PRId64, b ? ", " : "", nb[b]);
    fprintf(f, "]}\n");
    fclose(f);
    printf("%s/reliability.png, %s/calibration.json\n", report, report);
    rc = 0;
done:
    free(conf); free(cb); free(ab); free(right); free(nb);
    return rc;
}

/* scores of one set: [0] log p(x) = -E(x), [1] max p(y|x), [2] -||grad log p(x)|| */
static int jm_ood_scores(jm_rt *rt, const jm_dataset *ds, double *s[3], const char *who) {
    for (int k = 0; k < 3; k++) if (!(s[k] = malloc(sizeof(double) * (size_t)(ds->n + 1)))) return -1;
    if (jm_eval_collect(rt, ds, s[1], NULL, s[0], who) != 0) return -1;
    for (int64_t i = 0; i < ds->n; i++) s[0][i] = -s[0][i];
    return jm_eval_pxgrad(rt, ds, s[2], who);
}

int jm_evalsuite_ood(jm_rt *rt, const void *inv, const void *oodv, int nood, const char *report, const char *who) {
    const jm_dataset *in = inv, *ood = oodv;
    static const char *const names[3] = { "log p(x)", "max p(y|x)", "-|grad log p(x)|" };
    static const char *const files[3] = { "ood_logpx.png", "ood_py.png", "ood_pxgrad.png" };
    double *si[3] = { 0 }, *so[8][3];
    memset(so, 0, sizeof so);
    int rc = -1;
    char path[1100], err[1024];
    if (jm_report_dir(report, who) != 0 || jm_ood_scores(rt, in, si, who) != 0) goto done;
    snprintf(path, sizeof path, "%s/ood.json", report);
    FILE *f = fopen(path, "w");
    if (!f) { fprintf(stderr, "%s: cannot write %s: %s\n", who, path, strerror(errno)); goto done; }
    fprintf(f, "{\"in_distribution\": \"%s\", \"records\": %" PRId64 ", \"auroc\": {", in->path, in->n);
    /* the name column is as wide as the longest path, so the figures line up */
    int wid = 23;
    for (int o = 0; o < nood && o < 8; o++) if ((int)strlen(ood[o].path) > wid) wid = (int)strlen(ood[o].path);
    printf("AUROC of %s (%" PRId64 " records) against:\n  %-*s %10s %10s %16s\n", in->path, in->n, wid, "out-of-distribution set", names[0], names[1], names[2]);
    for (int o = 0; o < nood && o < 8; o++) {
        if (jm_ood_scores(rt, &ood[o], so[o], who) != 0) { fclose(f); goto done; }
        double au[3];
        for (int k = 0; k < 3; k++) au[k] = jm_metric_auroc(si[k], in->n, so[o][k], ood[o].n);
        printf("  %-*s %10.4f %10.4f %16.4f\n", wid, ood[o].path, au[0], au[1], au[2]);
        fprintf(f, "%s\"%s\": {\"logpx\": %.6f, \"py\": %.6f, \"pxgrad\": %.6f}", o ? ", " : "", ood[o].path, au[0], au[1], au[2]);
    }
    fprintf(f, "}}\n");
    fclose(f);
    /* one histogram per score: the in-distribution set and every OOD set */
    for (int k = 0; k < 3; k++) {
        jm_series s[9];
        s[0] = (jm_series){ in->path, NULL, si[k], (int)in->n };
        for (int o = 0; o < nood && o < 8; o++) s[1 + o] = (jm_series){ ood[o].path, NULL, so[o][k], (int)ood[o].n };
        jm_plot_opts po = { names[k], names[k], "density", 0, 0, 0 };
        snprintf(path, sizeof path, "%s/%s", report, files[k]);
        if (jm_plot_hist(path, &po, s, 1 + (nood < 8 ? nood : 8), 40, err, sizeof err) != 0) { fprintf(stderr, "%s: %s\n", who, err); goto done; }
    }
    printf("%s/ood.json and histograms %s/ood_*.png\n", report, report);
    rc = 0;
done:
    for (int k = 0; k < 3; k++) free(si[k]);
    for (int o = 0; o < 8; o++) for (int k = 0; k < 3; k++) free(so[o][k]);
    return rc;
}

int jm_evalsuite_load_ood(const char *const *paths, int n, int noise, const void *likev, void *outv, const char *who) {
    const jm_dataset *like = likev;
    jm_dataset *out = outv;
    int k = 0;
    for (int i = 0; i < n; i++) {
        if (jm_session_data(paths[i], NULL, "test", &out[k], who) != 0) return -1;
        jm_dataset *o = &out[k];
        k++;
        /* no score reads an OOD set's labels, but `evaluate` takes y: CIFAR-100's 100
           classes must not trip a 10-class model's range check */
        for (int64_t r = 0; r < o->n; r++) o->y[r] = 0;
        /* a set of another shape is fitted to the model's input (MNIST digits as an OOD
           set for a CIFAR-10 model: padded to 32x32, the channel repeated) */
        if (o->c != like->c || o->h != like->h || o->w != like->w) {
            char err[1024];
            int c0 = o->c, h0 = o->h, w0 = o->w;
            if (jm_data_conform(o, like->c, like->h, like->w, err, sizeof err) != 0) { fprintf(stderr, "%s: %s\n", who, err); return -1; }
            fprintf(stderr, "%s: note: %s has %dx%dx%d images; made %dx%dx%d like the data (centred, %s%s)\n", who, o->path, c0, h0, w0,
                    o->c, o->h, o->w, h0 <= o->h && w0 <= o->w ? "padded" : "cropped",
                    c0 == o->c ? "" : c0 == 1 ? ", the channel repeated" : ", the channels averaged");
        }
    }
    if (noise) {
        if (jm_noise_like(like, like->n, &out[k]) != 0) { fprintf(stderr, "%s: out of memory\n", who); return -1; }
        k++;
    }
    return k;
}

/* Accuracy under a PGD attack (Madry et al.): K steps from the clean input x0
   along the cross-entropy's input gradient (the `ce_grad` program), L-inf: x +=
   a * sign(g), then back into the eps-box around x0; L2: x += a * g / |g|, then
   back into the eps-ball; always clamped to the data range [-1, 1]. eps and a
   are in the data's units ([-1, 1] images: MNIST's usual L-inf 0.3 on [0, 1]
   pixels is 0.6 here). With purify > 0 the attacked inputs first run `purify`
   SGLD steps of the `sample` program (JEM's defence) before `evaluate`
   classifies them. Returns the accuracy, or NaN after printing why. */
double jm_evalsuite_pgd(jm_rt *rt, const void *dsv, int l2, double eps, double step, int64_t steps, int64_t purify, const char *who) {
    const jm_dataset *ds = dsv;
    int pg = jm_session_program(rt->t, "ce_grad", 1, who), pe = jm_session_program(rt->t, "evaluate", 1, who);
    int ps = purify > 0 ? jm_session_program(rt->t, "sample", 1, who) : -1;
    int knob = jm_knob_find(rt->t, "sgld_steps");
    if (pg < 0 || pe < 0 || (purify > 0 && ps < 0)) return NAN;
    if (purify > 0 && knob < 0) { fprintf(stderr, "%s: --purify needs the sampler's steps as a run-time setting (sgld_steps)\n", who); return NAN; }
    const jm_tprogram *prg = &rt->t->programs[pg], *pre = &rt->t->programs[pe];
    if (jm_session_fits(prg, ds, who) != 0 || jm_session_fits(pre, ds, who) != 0) return NAN;
    int gx = jm_session_input(prg, "x"), gy = jm_session_input(prg, "y"), ex = jm_session_input(pre, "x"), ey = jm_session_input(pre, "y");
    int li = jm_session_output(pre, "logits");
    if (gy < 0 || ey < 0 || li < 0) { fprintf(stderr, "%s: ce_grad and evaluate must take x and y; evaluate must output logits\n", who); return NAN; }
    int64_t B = prg->inputs[gx].dim[0], per = (int64_t)ds->c * ds->h * ds->w, K = pre->outputs[li].dim[1];
    jm_session_buf bb;
    int have = jm_session_buf_alloc(&bb, B, per) == 0;
    float *x0 = bb.x, *x = malloc(sizeof(float) * (size_t)(B * per));
    int64_t *y = bb.y;
    void **og = jm_session_outputs(prg), **oe = jm_session_outputs(pre), **os = ps >= 0 ? jm_session_outputs(&rt->t->programs[ps]) : NULL;
    double saved = knob >= 0 ? jm_knob_get(rt, knob) : 0;
    int64_t right = 0;
    int fail = !have || !x || !og || !oe;
    for (int64_t b0 = 0; b0 < ds->n && !fail; b0 += B) {
        int64_t real = jm_session_batch(ds, b0, &bb);
        memcpy(x, x0, sizeof(float) * (size_t)(B * per));
        for (int64_t k = 0; k < steps && !fail; k++) {
            const void *in[2];
            in[gx] = x;
            in[gy] = y;
            if (jm_rt_run(rt, pg, in, og) != 0) { fprintf(stderr, "%s: ce_grad failed: %s\n", who, rt->err); fail = 1; break; }
            const float *g = og[0];
            for (int64_t i = 0; i < B; i++) {
                float *xi = x + i * per;
                const float *gi = g + i * per, *x0i = x0 + i * per;
                double gn = 0, dn = 0;
                if (l2) for (int64_t p = 0; p < per; p++) gn += (double)gi[p] * gi[p];
                gn = sqrt(gn);
                for (int64_t p = 0; p < per; p++) {
                    double v = xi[p] + (l2 ? (gn > 0 ? step * gi[p] / gn : 0) : step * (gi[p] > 0 ? 1 : gi[p] < 0 ? -1 : 0));
                    if (!l2) v = v < x0i[p] - eps ? x0i[p] - eps : v > x0i[p] + eps ? x0i[p] + eps : v;
                    xi[p] = (float)v;
                }
                if (l2) {
                    for (int64_t p = 0; p < per; p++) dn += ((double)xi[p] - x0i[p]) * ((double)xi[p] - x0i[p]);
                    dn = sqrt(dn);
                    if (dn > eps) for (int64_t p = 0; p < per; p++) xi[p] = (float)(x0i[p] + (xi[p] - x0i[p]) * eps / dn);
                }
                for (int64_t p = 0; p < per; p++) xi[p] = xi[p] < -1 ? -1 : xi[p] > 1 ? 1 : xi[p];
            }
        }
        if (!fail && ps >= 0) {
            jm_knob_put(rt, knob, (double)purify);
            const void *in[1] = { x };
            if (jm_rt_run(rt, ps, in, os) != 0) { fprintf(stderr, "%s: sample failed: %s\n", who, rt->err); fail = 1; }
            else memcpy(x, os[0], sizeof(float) * (size_t)(B * per));
            jm_knob_put(rt, knob, saved);
        }
        if (fail) break;
        const void *in[2];
        in[ex] = x;
        in[ey] = y;
        if (jm_rt_run(rt, pe, in, oe) != 0) { fprintf(stderr, "%s: evaluate failed: %s\n", who, rt->err); fail = 1; break; }
        const float *lg = oe[li];
        for (int64_t i = 0; i < real; i++) {
            int64_t best = 0;
            for (int64_t k = 1; k < K; k++) if (lg[i * K + k] > lg[i * K + best]) best = k;
            right += best == y[i];
        }
    }
    jm_session_buf_free(&bb);
    free(x);
    jm_session_free_outputs(prg, og);
    jm_session_free_outputs(pre, oe);
    if (ps >= 0) jm_session_free_outputs(&rt->t->programs[ps], os);
    return fail ? NAN : (double)right / (double)ds->n;
}
