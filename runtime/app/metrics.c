/* metrics.c — see metrics.h. */
#include "metrics.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

double jm_metric_ece(const double *conf, const unsigned char *correct, int64_t n, int bins,
                     double *conf_b, double *acc_b, int64_t *count_b) {
    if (n <= 0 || bins < 1) return NAN;
    double *cs = calloc((size_t)bins, sizeof(double)), *as = calloc((size_t)bins, sizeof(double));
    int64_t *ns = calloc((size_t)bins, sizeof(int64_t));
    if (!cs || !as || !ns) { free(cs); free(as); free(ns); return NAN; }
    for (int64_t i = 0; i < n; i++) {
        if (isnan(conf[i])) {      /* a diverged model: no ECE (and no (int)NaN, undefined) */
            free(cs); free(as); free(ns);
            return NAN;
        }
        double c = conf[i] < 0 ? 0 : conf[i] > 1 ? 1 : conf[i];
        int b = (int)(c * bins);
        if (b >= bins) b = bins - 1;      /* confidence 1 belongs to the last bin */
        cs[b] += c;
        as[b] += correct[i] ? 1 : 0;
        ns[b]++;
    }
    double ece = 0;
    for (int b = 0; b < bins; b++) {
        double mc = ns[b] ? cs[b] / (double)ns[b] : 0, ma = ns[b] ? as[b] / (double)ns[b] : 0;
        ece += (double)ns[b] / (double)n * fabs(ma - mc);
        if (conf_b) conf_b[b] = mc;
        if (acc_b) acc_b[b] = ma;
        if (count_b) count_b[b] = ns[b];
    }
    free(cs); free(as); free(ns);
    return ece;
}

typedef struct { double s; int pos; } jm_scored;

static int jm_scored_cmp(const void *a, const void *b) {
    double x = ((const jm_scored *)a)->s, y = ((const jm_scored *)b)->s;
    return x < y ? -1 : x > y ? 1 : 0;
}

double jm_metric_auroc(const double *pos, int64_t npos, const double *neg, int64_t nneg) {
    if (npos <= 0 || nneg <= 0) return NAN;
    int64_t n = npos + nneg;
    jm_scored *v = malloc(sizeof(jm_scored) * (size_t)n);
    if (!v) return NAN;
    for (int64_t i = 0; i < npos; i++) { if (isnan(pos[i])) { free(v); return NAN; } v[i].s = pos[i]; v[i].pos = 1; }
    for (int64_t i = 0; i < nneg; i++) { if (isnan(neg[i])) { free(v); return NAN; } v[npos + i].s = neg[i]; v[npos + i].pos = 0; }
    qsort(v, (size_t)n, sizeof *v, jm_scored_cmp);
    /* sum of the positives' ranks (1-based; tied scores share their mean rank) */
    double rank_sum = 0;
    for (int64_t i = 0; i < n;) {
        int64_t j = i;
        while (j < n && v[j].s == v[i].s) j++;
        double mean_rank = (double)(i + 1 + j) / 2.0;
        for (int64_t k = i; k < j; k++) if (v[k].pos) rank_sum += mean_rank;
        i = j;
    }
    free(v);
    return (rank_sum - (double)npos * (double)(npos + 1) / 2.0) / ((double)npos * (double)nneg);
}

double jm_metric_auroc_labels(const double *score, const int64_t *y, int64_t n) {
    int64_t npos = 0;
    for (int64_t i = 0; i < n; i++) {
        if (y[i] != 0 && y[i] != 1) return NAN;
        npos += y[i];
    }
    if (npos == 0 || npos == n) return NAN;
    double *pos = malloc(sizeof(double) * (size_t)npos), *neg = malloc(sizeof(double) * (size_t)(n - npos));
    double r = NAN;
    if (pos && neg) {
        int64_t a = 0, b = 0;
        for (int64_t i = 0; i < n; i++) {
            if (y[i]) pos[a++] = score[i];
            else neg[b++] = score[i];
        }
        r = jm_metric_auroc(pos, npos, neg, n - npos);
    }
    free(pos); free(neg);
    return r;
}

double jm_metric_brier(const double *prob, const int64_t *y, int64_t n, int64_t K) {
    if (n < 1 || K < 1) return NAN;
    double s = 0;
    for (int64_t i = 0; i < n; i++) {
        if (y[i] < 0 || y[i] >= K) return NAN;
        for (int64_t c = 0; c < K; c++) {
            double d = prob[i * K + c] - (c == y[i] ? 1.0 : 0.0);
            s += d * d;
        }
    }
    return s / (double)n;
}

double jm_metric_brier_binary(const double *p1, const int64_t *y, int64_t n) {
    if (n < 1) return NAN;
    double s = 0;
    for (int64_t i = 0; i < n; i++) {
        if (y[i] != 0 && y[i] != 1) return NAN;
        double d = p1[i] - (double)y[i];
        s += d * d;
    }
    return s / (double)n;
}

int jm_metric_calibration_curve(const double *p1, const int64_t *y, int64_t n, int bins, double *frac_pos, double *mean_pred,
                                int64_t *count) {
    if (n < 1 || bins < 1) return -1;
    for (int64_t i = 0; i < n; i++)
        if (!(p1[i] >= 0 && p1[i] <= 1) || (y[i] != 0 && y[i] != 1)) return -1;
    double *sp = calloc((size_t)bins, sizeof(double)), *st = calloc((size_t)bins, sizeof(double));
    int64_t *nb = calloc((size_t)bins, sizeof(int64_t));
    if (!sp || !st || !nb) { free(sp); free(st); free(nb); return -1; }
    double step = 1.0 / (double)bins;     /* numpy's linspace: edge k is k * step, computed so */
    for (int64_t i = 0; i < n; i++) {
        /* the inner edges strictly below p1 (edges are increasing: a binary search would
           do, but bins are few) */
        int b = 0;
        while (b < bins - 1 && (double)(b + 1) * step < p1[i]) b++;
        sp[b] += p1[i];
        st[b] += (double)y[i];
        nb[b]++;
    }
    int nonempty = 0;
    for (int b = 0; b < bins; b++) {
        nonempty += nb[b] > 0;
        if (frac_pos) frac_pos[b] = nb[b] ? st[b] / (double)nb[b] : NAN;
        if (mean_pred) mean_pred[b] = nb[b] ? sp[b] / (double)nb[b] : NAN;
        if (count) count[b] = nb[b];
    }
    free(sp); free(st); free(nb);
    return nonempty;
}

double jm_metric_auroc_ovr(const double *prob, const int64_t *y, int64_t n, int64_t K) {
    if (K < 2 || n < 1) return NAN;
    for (int64_t i = 0; i < n; i++) if (y[i] < 0 || y[i] >= K) return NAN;
    double *s = malloc(sizeof(double) * (size_t)n), sum = 0;
    int64_t *b = malloc(sizeof(int64_t) * (size_t)n);
    if (!s || !b) { free(s); free(b); return NAN; }
    for (int64_t c = 0; c < K && !isnan(sum); c++) {
        for (int64_t i = 0; i < n; i++) { s[i] = prob[i * K + c]; b[i] = y[i] == c; }
        sum += jm_metric_auroc_labels(s, b, n);     /* NaN when class c is absent */
    }
    free(s); free(b);
    return sum / (double)K;
}
