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

/* What jm_eval_collect fills per example of ds (every pointer may be NULL):
   softmax confidence (its largest probability) and whether the argmax is the
   label; energy (the program's `energy` output: required when asked for and
   need_energy, else NaN when the program has none); every class probability
   (prob: n x K, softmax in double) and the cross-entropy -log p(y|x) (nll, as
   logsumexp - logit_y, which does not underflow). */
typedef struct {
    double *conf, *energy, *prob, *nll;
    unsigned char *right;
    int need_energy;
} jm_eval_want;

/* K, the classes of `evaluate`'s logits, or -1 after printing why. */
static int64_t jm_eval_classes(const jm_rt *rt, const char *who) {
    int p = jm_session_program(rt->t, "evaluate", 1, who);
    if (p < 0) return -1;
    const jm_tprogram *pr = &rt->t->programs[p];
    int li = jm_session_output(pr, "logits");
    if (li < 0 || pr->outputs[li].rank != 2) { fprintf(stderr, "%s: program evaluate needs an output 'logits' of shape [batch, classes]\n", who); return -1; }
    return pr->outputs[li].dim[1];
}

/* Runs `evaluate` over ds. The last partial batch is padded with record 0 and
   the padding ignored. */
static int jm_eval_collect(jm_rt *rt, const jm_dataset *ds, const jm_eval_want *w, const char *who) {
    int p = jm_session_program(rt->t, "evaluate", 1, who);
    if (p < 0) return -1;
    const jm_tprogram *pr = &rt->t->programs[p];
    if (jm_session_fits(pr, ds, who) != 0) return -1;
    int xi = jm_session_input(pr, "x"), yi = jm_session_input(pr, "y");
    int li = jm_session_output(pr, "logits"), ei = jm_session_output(pr, "energy");
    if (yi < 0 || li < 0 || (ei < 0 && w->energy && w->need_energy)) {
        fprintf(stderr, "%s: program evaluate needs inputs x, y and outputs logits%s\n", who, w->need_energy ? ", energy" : "");
        return -1;
    }
    int64_t B = pr->inputs[xi].dim[0], per = (int64_t)ds->c * ds->h * ds->w, K = pr->outputs[li].dim[1];
    jm_session_buf bb;
    int have = jm_session_buf_alloc(&bb, B, per) == 0;
    float *x = bb.x;
    int64_t *y = bb.y;
    void **out = jm_session_outputs(pr);
    int rc = have && out ? 0 : -1;
    if (rc != 0) fprintf(stderr, "%s: out of memory\n", who);
    /* a label the model has no class for would index past the logits */
    if (w->right || w->prob || w->nll)
        for (int64_t r = 0; r < ds->n && rc == 0; r++)
            if (ds->y[r] < 0 || ds->y[r] >= K) {
                fprintf(stderr, "%s: %s: record %" PRId64 " (0-based) has label %" PRId64 ", but the model has %" PRId64 " classes (0..%" PRId64 ")\n",
                        who, ds->path, r, ds->y[r], K, K - 1);
                rc = -1;
            }
    for (int64_t b0 = 0; b0 < ds->n && rc == 0; b0 += B) {
        int64_t real = jm_session_batch(ds, b0, &bb);
        const void *in[2];
        in[xi] = x;
        in[yi] = y;
        if (jm_rt_run(rt, p, in, out) != 0) { fprintf(stderr, "%s: evaluate failed: %s\n", who, rt->err); rc = -1; break; }
        const float *lg = out[li], *en = ei >= 0 ? out[ei] : NULL;
        for (int64_t i = 0; i < real; i++) {
            const float *l = lg + i * K;
            int64_t best = 0, r = b0 + i;
            double mx, z = 0;
            for (int64_t k = 1; k < K; k++) if (l[k] > l[best]) best = k;
            mx = l[best];
            for (int64_t k = 0; k < K; k++) z += exp((double)l[k] - mx);
            if (w->conf) w->conf[r] = 1.0 / z;                /* softmax of the largest logit */
            if (w->right) w->right[r] = best == y[i];
            if (w->energy) w->energy[r] = en ? en[i] : NAN;
            if (w->prob) for (int64_t k = 0; k < K; k++) w->prob[r * K + k] = exp((double)l[k] - mx) / z;
            if (w->nll) w->nll[r] = mx + log(z) - (double)l[y[i]];
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

int jm_evalsuite_is_table(const void *dsv) {
    const jm_dataset *ds = dsv;
    /* every format but the image ones is a table (CSV, whitespace-separated text) */
    return ds->format != JM_DATA_IDX && ds->format != JM_DATA_CIFAR10 && ds->format != JM_DATA_CIFAR100;
}

/* A uniform-noise data set shaped like ds (the "noise" OOD set): images uniform
   in [-1, 1], their value range; a table's columns each uniform between that
   column's smallest and largest value in ds (tables have no common range: a
   standardized column spans a few units, a raw one anything). */
static int jm_noise_like(const jm_dataset *ds, int64_t n, jm_dataset *out) {
    memset(out, 0, sizeof *out);
    int64_t per = (int64_t)ds->c * ds->h * ds->w;
    out->x = malloc(sizeof(float) * (size_t)(n * per));
    out->y = calloc((size_t)n, sizeof(int64_t));
    double *lo = malloc(sizeof(double) * (size_t)per), *hi = malloc(sizeof(double) * (size_t)per);
    if (!out->x || !out->y || !lo || !hi) { free(out->x); free(out->y); free(lo); free(hi); out->x = NULL; out->y = NULL; return -1; }
    int table = jm_evalsuite_is_table(ds);
    for (int64_t k = 0; k < per; k++) {
        lo[k] = table ? INFINITY : -1.0;
        hi[k] = table ? -INFINITY : 1.0;
    }
    for (int64_t r = 0; table && r < ds->n; r++)
        for (int64_t k = 0; k < per; k++) {
            double v = ds->x[r * per + k];
            if (v < lo[k]) lo[k] = v;
            if (v > hi[k]) hi[k] = v;
        }
    for (int64_t i = 0; i < n * per; i++) {
        int64_t k = i % per;
        double u = jm_philox_uniform((uint32_t)k, (uint32_t)(i / per), 0x0d0e, 7, 0);
        out->x[i] = (float)(lo[k] + (hi[k] - lo[k]) * u);
    }
    free(lo); free(hi);
    out->n = n; out->c = ds->c; out->h = ds->h; out->w = ds->w; out->classes = ds->classes;
    out->format = ds->format; out->pad_value = ds->pad_value;
    snprintf(out->path, sizeof out->path, "noise");
    return 0;
}

/* a JSON number, null for NaN and infinities (JSON has neither) */
static void jm_json_num(FILE *f, const char *fmt, double v) {
    if (isfinite(v)) fprintf(f, fmt, v);
    else fputs("null", f);
}

/* The probabilistic figures of a data set: Brier's multiclass score and, for two
   classes, p1 = p(y=1|x) with sklearn's binary Brier score and its AUROC; for
   more, the macro one-vs-rest AUROC of the class probabilities. */
typedef struct { int64_t K; double brier, brier_binary, auroc, auroc_ovr; double *p1; } jm_eval_probs;

static int jm_eval_probs_of(const jm_dataset *ds, const double *prob, int64_t K, jm_eval_probs *e) {
    memset(e, 0, sizeof *e);
    e->K = K;
    e->brier = jm_metric_brier(prob, ds->y, ds->n, K);
    e->brier_binary = e->auroc = e->auroc_ovr = NAN;
    if (K > 2) e->auroc_ovr = jm_metric_auroc_ovr(prob, ds->y, ds->n, K);     /* NaN when a class is absent */
    if (K != 2) return 0;
    if (!(e->p1 = malloc(sizeof(double) * (size_t)ds->n))) return -1;
    for (int64_t i = 0; i < ds->n; i++) e->p1[i] = prob[2 * i + 1];
    e->brier_binary = jm_metric_brier_binary(e->p1, ds->y, ds->n);
    e->auroc = jm_metric_auroc_labels(e->p1, ds->y, ds->n);     /* NaN when one class is absent */
    return 0;
}

static void jm_eval_probs_print(const jm_eval_probs *e) {
    printf("  Brier score %.4f (mean over records of sum_c (p(c|x) - [y = c])^2, 0 best, 2 worst)\n", e->brier);
    if (e->K > 2) {
        printf("  one-vs-rest AUROC of p(c|x), mean over the %" PRId64 " classes ", e->K);
        if (isfinite(e->auroc_ovr)) printf("%.4f\n", e->auroc_ovr);
        else printf("n/a (some class is absent from the data)\n");
    }
    if (e->K != 2) return;
    printf("  two classes, p1 = p(y=1|x): binary Brier score %.4f (mean (p1 - y)^2, sklearn's brier_score_loss), AUROC of p1 ", e->brier_binary);
    if (isfinite(e->auroc)) printf("%.4f\n", e->auroc);
    else printf("n/a (the data hold one class only)\n");
}

static void jm_eval_probs_json(FILE *f, const jm_eval_probs *e) {
    fprintf(f, ", \"classes\": %" PRId64 ", \"brier\": ", e->K);
    jm_json_num(f, "%.6g", e->brier);
    if (e->K > 2) {
        fprintf(f, ", \"auroc_ovr\": ");
        jm_json_num(f, "%.6f", e->auroc_ovr);
    }
    if (e->K != 2) return;
    fprintf(f, ", \"brier_binary\": ");
    jm_json_num(f, "%.6g", e->brier_binary);
    fprintf(f, ", \"auroc\": ");
    jm_json_num(f, "%.6f", e->auroc);
}

int jm_evalsuite_accuracy(jm_rt *rt, const void *dsv, const char *json, const char *who) {
    const jm_dataset *ds = dsv;
    int64_t K = jm_eval_classes(rt, who), n = ds->n;
    if (K < 1) return -1;
    double *prob = malloc(sizeof(double) * (size_t)(n * K)), *nll = malloc(sizeof(double) * (size_t)n), *en = malloc(sizeof(double) * (size_t)n);
    unsigned char *right = malloc((size_t)n);
    jm_eval_probs e;
    memset(&e, 0, sizeof e);
    int rc = -1;
    if (!prob || !nll || !en || !right) { fprintf(stderr, "%s: out of memory\n", who); goto done; }
    jm_eval_want w = { NULL, en, prob, nll, right, 0 };
    if (jm_eval_collect(rt, ds, &w, who) != 0) goto done;
    double acc = 0, loss = 0, energy = 0;
    for (int64_t i = 0; i < n; i++) { acc += right[i]; loss += nll[i]; energy += en[i]; }
    acc /= (double)n; loss /= (double)n; energy /= (double)n;     /* NaN energy: the program has none */
    if (jm_eval_probs_of(ds, prob, K, &e) != 0) { fprintf(stderr, "%s: out of memory\n", who); goto done; }
    if (isnan(energy))      /* a classifier's evaluate (no energy output): say so, not "nan" */
        printf("%s: %" PRId64 " records: accuracy %.4f, loss %.4f (evaluate has no energy output)\n", ds->path, n, acc, loss);
    else
        printf("%s: %" PRId64 " records: accuracy %.4f, loss %.4f, mean energy %.4f\n", ds->path, n, acc, loss, energy);
    jm_eval_probs_print(&e);
    rc = 0;
    if (json) {
        FILE *f = fopen(json, "w");
        if (!f) { fprintf(stderr, "%s: cannot write %s: %s\n", who, json, strerror(errno)); rc = -1; goto done; }
        fprintf(f, "{\"data\": \"%s\", \"records\": %" PRId64 ", \"accuracy\": %.6f, \"loss\": ", ds->path, n, acc);
        jm_json_num(f, "%.6g", loss);
        fprintf(f, ", \"energy\": ");
        jm_json_num(f, "%.6g", energy);
        jm_eval_probs_json(f, &e);
        fprintf(f, "}\n");
        if (fclose(f) != 0) { fprintf(stderr, "%s: cannot write %s: %s\n", who, json, strerror(errno)); rc = -1; }
    }
done:
    free(prob); free(nll); free(en); free(right); free(e.p1);
    return rc;
}

/* For two classes: sklearn's calibration curve of p1 over `bins` uniform bins
   (the non-empty ones, as sklearn returns them) into the JSON, printed as a
   table and drawn against the diagonal in REPORT/calibration_curve.png. */
static int jm_eval_curve(const jm_dataset *ds, const jm_eval_probs *e, int bins, FILE *f, const char *report, const char *who) {
    double *fp = malloc(sizeof(double) * (size_t)bins), *mp = malloc(sizeof(double) * (size_t)bins);
    int64_t *cn = malloc(sizeof(int64_t) * (size_t)bins);
    int rc = -1, ne = fp && mp && cn ? jm_metric_calibration_curve(e->p1, ds->y, ds->n, bins, fp, mp, cn) : -1;
    char path[1100], err[1024];
    if (ne < 0) { fprintf(stderr, "%s: the calibration curve needs labels 0/1 and probabilities in [0, 1]\n", who); goto done; }
    /* the non-empty bins first, in order (sklearn's arrays) */
    int k = 0;
    for (int b = 0; b < bins; b++) if (cn[b]) { fp[k] = fp[b]; mp[k] = mp[b]; cn[k] = cn[b]; k++; }
    fprintf(f, ", \"calibration_curve\": {\"bins\": %d, \"strategy\": \"uniform\", \"mean_predicted\": [", bins);
    for (int j = 0; j < k; j++) fprintf(f, "%s%.6f", j ? ", " : "", mp[j]);
    fprintf(f, "], \"fraction_positive\": [");
    for (int j = 0; j < k; j++) fprintf(f, "%s%.6f", j ? ", " : "", fp[j]);
    fprintf(f, "], \"count\": [");
    for (int j = 0; j < k; j++) fprintf(f, "%s%" PRId64, j ? ", " : "", cn[j]);
    fprintf(f, "]}");
    printf("  calibration curve of p1 (%d uniform bins, sklearn's calibration_curve; %d non-empty):\n  %14s %17s %8s\n", bins, k,
           "mean predicted", "fraction class 1", "records");
    for (int j = 0; j < k; j++) printf("  %14.4f %17.4f %8" PRId64 "\n", mp[j], fp[j], cn[j]);
    static const double diag[2] = { 0, 1 };
    jm_series s[2] = { { "perfectly calibrated", diag, diag, 2 }, { "model", mp, fp, k } };
    jm_plot_opts po = { "calibration curve of p(y=1|x)", "mean predicted probability", "fraction of class 1", 0, 0, 0 };
    snprintf(path, sizeof path, "%s/calibration_curve.png", report);
    if (jm_plot_lines(path, &po, s, 2, err, sizeof err) != 0) { fprintf(stderr, "%s: %s\n", who, err); goto done; }
    rc = 0;
done:
    free(fp); free(mp); free(cn);
    return rc;
}

int jm_evalsuite_calibration(jm_rt *rt, const void *dsv, int bins, int curve_bins, const char *report, const char *who) {
    const jm_dataset *ds = dsv;
    int64_t K = jm_eval_classes(rt, who);
    if (K < 1) return -1;
    double *conf = malloc(sizeof(double) * (size_t)ds->n), *cb = calloc((size_t)bins, sizeof(double)), *ab = calloc((size_t)bins, sizeof(double));
    double *prob = malloc(sizeof(double) * (size_t)(ds->n * K));
    unsigned char *right = malloc((size_t)ds->n);
    int64_t *nb = calloc((size_t)bins, sizeof(int64_t));
    jm_eval_probs e;
    memset(&e, 0, sizeof e);
    int rc = -1;
    char path[1100], err[1024];
    if (!conf || !cb || !ab || !right || !nb || !prob) { fprintf(stderr, "%s: out of memory\n", who); goto done; }
    jm_eval_want w = { conf, NULL, prob, NULL, right, 0 };
    if (jm_eval_collect(rt, ds, &w, who) != 0) goto done;
    if (jm_eval_probs_of(ds, prob, K, &e) != 0) { fprintf(stderr, "%s: out of memory\n", who); goto done; }
    double ece = jm_metric_ece(conf, right, ds->n, bins, cb, ab, nb);
    int64_t nr = 0;
    for (int64_t i = 0; i < ds->n; i++) nr += right[i];
    printf("%s: %" PRId64 " records: accuracy %.4f, expected calibration error %.4f (%d equal-width bins)\n", ds->path, ds->n,
           (double)nr / (double)ds->n, ece, bins);
    jm_eval_probs_print(&e);
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
    fprintf(f, "]");
    jm_eval_probs_json(f, &e);
    if (K == 2 && jm_eval_curve(ds, &e, curve_bins, f, report, who) != 0) { fclose(f); goto done; }
    fprintf(f, "}\n");
    if (fclose(f) != 0) { fprintf(stderr, "%s: cannot write %s: %s\n", who, path, strerror(errno)); goto done; }
    if (K == 2) printf("%s/reliability.png, %s/calibration_curve.png, %s/calibration.json\n", report, report, report);
    else printf("%s/reliability.png, %s/calibration.json\n", report, report);
    rc = 0;
done:
    free(conf); free(cb); free(ab); free(right); free(nb); free(prob); free(e.p1);
    return rc;
}

/* scores of one set: [0] log p(x) = -E(x), [1] max p(y|x), [2] -||grad log p(x)|| */
static int jm_ood_scores(jm_rt *rt, const jm_dataset *ds, double *s[3], const char *who) {
    for (int k = 0; k < 3; k++) if (!(s[k] = malloc(sizeof(double) * (size_t)(ds->n + 1)))) return -1;
    jm_eval_want w = { s[1], s[0], NULL, NULL, NULL, 1 };
    if (jm_eval_collect(rt, ds, &w, who) != 0) return -1;
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
        /* a table's columns are features with meanings: padding or cropping them
           would score nonsense, so a table of another width is refused */
        if ((jm_evalsuite_is_table(o) || jm_evalsuite_is_table(like)) && (o->c != like->c || o->h != like->h || o->w != like->w)) {
            fprintf(stderr, "%s: %s has %d values per record, the data %s %d: an out-of-distribution table needs the same columns\n", who,
                    o->path, o->c * o->h * o->w, like->path, like->c * like->h * like->w);
            return -1;
        }
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
