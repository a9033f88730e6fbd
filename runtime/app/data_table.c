/* data_table.c — see data_table.h. */
#include "data_table.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The split's permutation is jm_data_shuffle's at this epoch: training shuffles epochs
   0, 1, 2, ... and never reaches it, so the split and the training order are independent
   draws from one --data-seed. */
#define JM_TABLE_SPLIT_EPOCH UINT64_MAX

void jm_table_tf_free(jm_table_tf *tf) {
    if (!tf) return;
    free(tf->keep);
    free(tf->mean);
    free(tf->std);
    memset(tf, 0, sizeof *tf);
}

static int jm_table_fail(char *err, size_t errlen, const char *msg, const char *path) {
    if (err && errlen) snprintf(err, errlen, "%s: %s", path, msg);
    return -1;
}

int jm_table_fit(const jm_dataset *ds, const int64_t *rows, int64_t n, int64_t drop_repeated, int standardize, jm_table_tf *tf,
                 char *err, size_t errlen) {
    memset(tf, 0, sizeof *tf);
    if (!rows) n = ds->n;
    int D = ds->c * ds->h * ds->w;
    if (n < 1) return jm_table_fail(err, errlen, "no training records to fit the columns' statistics on", ds->path);
    tf->ncols = D;
    tf->keep = malloc(sizeof(int) * (size_t)(D + 1));
    if (!tf->keep) {
        jm_table_tf_free(tf);
        return jm_table_fail(err, errlen, "out of memory for the columns' statistics", ds->path);
    }
    for (int j = 0; j < D; j++) {
        if (drop_repeated > 0) {
            /* the count of the column's smallest value among the training records */
            float lo = INFINITY;
            int64_t cnt = 0;
            for (int64_t i = 0; i < n; i++) {
                float v = ds->x[(rows ? rows[i] : i) * D + j];
                if (v < lo) { lo = v; cnt = 1; }
                else if (v == lo) cnt++;
            }
            if (cnt > drop_repeated) continue;
        }
        tf->keep[tf->nkeep++] = j;
    }
    if (tf->nkeep == 0) {
        char msg[160];
        snprintf(msg, sizeof msg, "every one of the %d columns has its smallest value more than %lld times (--drop-repeated): none is left", D,
                 (long long)drop_repeated);
        jm_table_tf_free(tf);
        return jm_table_fail(err, errlen, msg, ds->path);
    }
    if (standardize) {
        tf->mean = malloc(sizeof(double) * (size_t)tf->nkeep);
        tf->std = malloc(sizeof(double) * (size_t)tf->nkeep);
        if (!tf->mean || !tf->std) {
            jm_table_tf_free(tf);
            return jm_table_fail(err, errlen, "out of memory for the columns' statistics", ds->path);
        }
        for (int k = 0; k < tf->nkeep; k++) {
            int j = tf->keep[k];
            /* two passes in double: the mean, then the mean squared deviation */
            double s = 0, q = 0;
            for (int64_t i = 0; i < n; i++) s += ds->x[(rows ? rows[i] : i) * D + j];
            double m = s / (double)n;
            for (int64_t i = 0; i < n; i++) {
                double d = ds->x[(rows ? rows[i] : i) * D + j] - m;
                q += d * d;
            }
            double sd = sqrt(q / (double)n);
            tf->mean[k] = m;
            /* a constant column (sd 0) is only centred, as sklearn's StandardScaler does */
            tf->std[k] = sd > 0 ? sd : 1.0;
        }
    }
    return 0;
}

int jm_table_apply(const jm_table_tf *tf, jm_dataset *ds, char *err, size_t errlen) {
    int D = ds->c * ds->h * ds->w;
    if (D != tf->ncols) {
        if (err && errlen)
            snprintf(err, errlen, "%s has %d values per record, but the model's run read tables of %d columns (and kept %d): "
                     "the data needs the same columns", ds->path, D, tf->ncols, tf->nkeep);
        return -1;
    }
    float *x = malloc(sizeof(float) * (size_t)(ds->n * tf->nkeep + 1));
    if (!x) return jm_table_fail(err, errlen, "out of memory", ds->path);
    for (int64_t i = 0; i < ds->n; i++)
        for (int k = 0; k < tf->nkeep; k++) {
            double v = ds->x[i * D + tf->keep[k]];
            if (tf->mean) v = (v - tf->mean[k]) / tf->std[k];
            x[i * tf->nkeep + k] = (float)v;
        }
    free(ds->x);
    ds->x = x;
    ds->c = ds->h = 1;
    ds->w = tf->nkeep;
    return 0;
}

/* ------------------------------------------------------------------ metadata */

/* n numbers, comma-separated (%d for ints, %.17g for doubles: a double reads back
   exactly from 17 digits, and jm_table_apply uses the statistics in double) */
static char *jm_table_join(int n, const int *iv, const double *dv) {
    size_t cap = (size_t)n * 32 + 2, used = 0;
    char *s = malloc(cap);
    if (!s) return NULL;
    s[0] = 0;
    for (int k = 0; k < n; k++) {
        if (iv) used += (size_t)snprintf(s + used, cap - used, "%s%d", k ? "," : "", iv[k]);
        else used += (size_t)snprintf(s + used, cap - used, "%s%.17g", k ? "," : "", dv[k]);
    }
    return s;
}

int jm_table_tf_meta(const jm_table_tf *tf, const char *keys[JM_TABLE_META], char *values[JM_TABLE_META]) {
    int n = 0;
    for (int k = 0; k < JM_TABLE_META; k++) values[k] = NULL;     /* jm_table_meta_free may run below */
    char cols[32];
    snprintf(cols, sizeof cols, "%d", tf->ncols);
    keys[n] = "jemc.data.columns";
    values[n++] = strdup(cols);
    keys[n] = "jemc.data.kept";
    values[n++] = jm_table_join(tf->nkeep, tf->keep, NULL);
    if (tf->mean) {
        keys[n] = "jemc.data.mean";
        values[n++] = jm_table_join(tf->nkeep, NULL, tf->mean);
        keys[n] = "jemc.data.std";
        values[n++] = jm_table_join(tf->nkeep, NULL, tf->std);
    }
    if (tf->split_records > 0) {
        char recs[32];
        snprintf(recs, sizeof recs, "%lld", (long long)tf->split_records);
        keys[n] = "jemc.data.split_records";
        values[n++] = strdup(recs);
    }
    for (int k = 0; k < n; k++)
        if (!values[k]) {
            jm_table_meta_free(values);
            return -1;
        }
    for (int k = n; k < JM_TABLE_META; k++) values[k] = NULL;
    return n;
}

void jm_table_meta_free(char *values[JM_TABLE_META]) {
    for (int k = 0; k < JM_TABLE_META; k++) {
        free(values[k]);
        values[k] = NULL;
    }
}

/* want comma-separated numbers from s into iv or dv; 0 or -1 */
static int jm_table_split_list(const char *s, int want, int *iv, double *dv) {
    int k = 0;
    while (k < want) {
        char *end;
        if (iv) {
            long v = strtol(s, &end, 10);
            if (end == s || v < 0 || v > 1 << 30) return -1;
            iv[k] = (int)v;
        } else {
            dv[k] = strtod(s, &end);
            if (end == s || !isfinite(dv[k])) return -1;
        }
        k++;
        if (k < want && *end != ',') return -1;
        s = end + (k < want);
        if (k == want && *end) return -1;
    }
    return 0;
}

int jm_table_tf_parse(const char *(*get)(const void *, const char *), const void *ctx, jm_table_tf *tf, char *err,
                      size_t errlen) {
    memset(tf, 0, sizeof *tf);
    const char *cols = get(ctx, "jemc.data.columns"), *kept = get(ctx, "jemc.data.kept");
    const char *mean = get(ctx, "jemc.data.mean"), *std = get(ctx, "jemc.data.std");
    if (!cols && !kept && !mean && !std) return 0;
    char *end;
    long nc = cols ? strtol(cols, &end, 10) : -1;
    int nk = 0;
    for (const char *p = kept; p && *p; p++) nk += *p == ',';
    nk += kept && *kept;
    const char *bad = NULL;
    if (!cols || !kept || nc < 1 || *end || nc > 1 << 30 || nk < 1 || nk > nc || (!mean) != (!std)) bad = "incomplete";
    if (!bad) {
        tf->ncols = (int)nc;
        tf->nkeep = nk;
        tf->keep = malloc(sizeof(int) * (size_t)nk);
        tf->mean = mean ? malloc(sizeof(double) * (size_t)nk) : NULL;
        tf->std = std ? malloc(sizeof(double) * (size_t)nk) : NULL;
        if (!tf->keep || (mean && (!tf->mean || !tf->std))) bad = "too large";
        else if (jm_table_split_list(kept, nk, tf->keep, NULL) != 0) bad = "jemc.data.kept is malformed";
        else if (mean && jm_table_split_list(mean, nk, NULL, tf->mean) != 0) bad = "jemc.data.mean is malformed";
        else if (std && jm_table_split_list(std, nk, NULL, tf->std) != 0) bad = "jemc.data.std is malformed";
        for (int k = 0; !bad && k < nk; k++)
            if (tf->keep[k] >= nc || (k && tf->keep[k] <= tf->keep[k - 1])) bad = "jemc.data.kept is not ascending within the columns";
        for (int k = 0; !bad && std && k < nk; k++)
            if (!(tf->std[k] > 0) || !isfinite(tf->std[k]) || tf->std[k] < 1e-300) bad = "jemc.data.std has a value that is not a positive, normal number";
        const char *recs = get(ctx, "jemc.data.split_records");
        if (!bad && recs) {
            long long r = strtoll(recs, &end, 10);
            if (r < 1 || *end || end == recs) bad = "jemc.data.split_records is malformed";
            else tf->split_records = r;
        }
    }
    if (bad) {
        if (err && errlen) snprintf(err, errlen, "the table transform in the metadata (jemc.data.*) is %s", bad);
        jm_table_tf_free(tf);
        return -1;
    }
    return 1;
}

/* ------------------------------------------------------------------ splits */

static int jm_table_cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

int jm_table_split(int64_t n, uint64_t seed, double test_frac, double val_frac, int64_t *train, int64_t *ntrain, int64_t *val,
                   int64_t *nval, int64_t *test, int64_t *ntest, char *err, size_t errlen) {
    if (!(test_frac >= 0 && test_frac < 1 && val_frac >= 0 && val_frac < 1)) {
        if (err && errlen) snprintf(err, errlen, "split fractions must be in [0, 1), got test %g and validation %g", test_frac, val_frac);
        return -1;
    }
    int64_t *perm = malloc(sizeof(int64_t) * (size_t)(n + 1));
    if (!perm) {
        if (err && errlen) snprintf(err, errlen, "out of memory for the split of %lld records", (long long)n);
        return -1;
    }
    jm_data_shuffle(n, seed, JM_TABLE_SPLIT_EPOCH, perm);
    int64_t nt = (int64_t)llround(test_frac * (double)n), rest = n - nt, nv = (int64_t)llround(val_frac * (double)rest);
    if ((test_frac > 0 && nt == 0) || (val_frac > 0 && nv == 0)) {
        free(perm);
        if (err && errlen)
            snprintf(err, errlen, "a %s split of %g of %lld records rounds to no record; ask for a larger fraction", nt == 0 && test_frac > 0 ? "test" : "validation",
                     nt == 0 && test_frac > 0 ? test_frac : val_frac, (long long)(nt == 0 && test_frac > 0 ? n : rest));
        return -1;
    }
    if (rest - nv < 1) {
        free(perm);
        if (err && errlen) snprintf(err, errlen, "splitting %lld records (test %g, validation %g) leaves none to train on", (long long)n, test_frac, val_frac);
        return -1;
    }
    memcpy(test, perm, sizeof(int64_t) * (size_t)nt);
    memcpy(val, perm + nt, sizeof(int64_t) * (size_t)nv);
    memcpy(train, perm + nt + nv, sizeof(int64_t) * (size_t)(rest - nv));
    free(perm);
    qsort(test, (size_t)nt, sizeof(int64_t), jm_table_cmp_i64);
    qsort(val, (size_t)nv, sizeof(int64_t), jm_table_cmp_i64);
    qsort(train, (size_t)(rest - nv), sizeof(int64_t), jm_table_cmp_i64);
    *ntest = nt;
    *nval = nv;
    *ntrain = rest - nv;
    return 0;
}

int jm_data_subset(const jm_dataset *src, const int64_t *rows, int64_t n, jm_dataset *dst) {
    *dst = *src;
    int64_t per = (int64_t)src->c * src->h * src->w;
    dst->x = malloc(sizeof(float) * (size_t)(n * per + 1));
    dst->y = malloc(sizeof(int64_t) * (size_t)(n + 1));
    if (!dst->x || !dst->y) {
        free(dst->x);
        free(dst->y);
        memset(dst, 0, sizeof *dst);
        return -1;
    }
    for (int64_t i = 0; i < n; i++) {
        memcpy(dst->x + i * per, src->x + rows[i] * per, sizeof(float) * (size_t)per);
        dst->y[i] = src->y[rows[i]];
    }
    dst->n = n;
    return 0;
}
