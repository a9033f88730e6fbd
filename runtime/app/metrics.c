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
