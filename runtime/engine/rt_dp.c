/* rt_dp.c — see rt_dp.h. */
#include "rt_dp.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* staging, reused by every step: the means' sums (f32 and f64 apart), one
   micro-batch's operand, and per ROWS collective every shard's rows */
static struct {
    float *s32; int64_t n32;
    double *s64; int64_t n64;
    unsigned char *tmp; int64_t ntmp;
    unsigned char **rows; int64_t *nrows; int nrow_colls;
} jm_dp;

static void *jm_dp_grow(void *p, int64_t *cap, int64_t want) {
    if (want <= *cap) return p;
    void *q = realloc(p, (size_t)want);
    if (!q) return NULL;
    *cap = want;
    return q;
}

void jm_rt_dp_free(void) {
    free(jm_dp.s32); free(jm_dp.s64); free(jm_dp.tmp);
    for (int c = 0; c < jm_dp.nrow_colls; c++) free(jm_dp.rows[c]);
    free(jm_dp.rows); free(jm_dp.nrows);
    memset(&jm_dp, 0, sizeof jm_dp);
}

static double jm_dp_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int jm_dp_oom(jm_rt *rt) {
    snprintf(rt->err, sizeof rt->err, "out of memory for the data-parallel staging buffers");
    return -1;
}

/* the staging space the step of program pr needs, for S shards, K here */
static int jm_dp_reserve(jm_rt *rt, const jm_tprogram *pr, int S) {
    int64_t n32 = 0, n64 = 0, tmp = 0;
    for (int c = 0; c < pr->ncolls; c++) {
        const jm_tcoll *cl = &pr->colls[c];
        if (cl->kind == JM_COLL_MEAN) {
            if (cl->dtype == JM_DT_F32) n32 += cl->bytes[0] / 4; else n64 += cl->bytes[0] / 8;
            if (cl->bytes[0] > tmp) tmp = cl->bytes[0];
        }
    }
    int64_t c32 = jm_dp.n32 * 4, c64 = jm_dp.n64 * 8;
    if (!(jm_dp.s32 = jm_dp_grow(jm_dp.s32, &c32, n32 * 4 + 4))) return jm_dp_oom(rt);
    if (!(jm_dp.s64 = jm_dp_grow(jm_dp.s64, &c64, n64 * 8 + 8))) return jm_dp_oom(rt);
    jm_dp.n32 = c32 / 4;
    jm_dp.n64 = c64 / 8;
    if (!(jm_dp.tmp = jm_dp_grow(jm_dp.tmp, &jm_dp.ntmp, tmp + 8))) return jm_dp_oom(rt);
    if (pr->ncolls > jm_dp.nrow_colls) {
        unsigned char **r = realloc(jm_dp.rows, sizeof(unsigned char *) * (size_t)pr->ncolls);
        if (!r) return jm_dp_oom(rt);
        jm_dp.rows = r;
        int64_t *n = realloc(jm_dp.nrows, sizeof(int64_t) * (size_t)pr->ncolls);
        if (!n) return jm_dp_oom(rt);
        jm_dp.nrows = n;
        for (int c = jm_dp.nrow_colls; c < pr->ncolls; c++) { jm_dp.rows[c] = NULL; jm_dp.nrows[c] = 0; }
        jm_dp.nrow_colls = pr->ncolls;
    }
    for (int c = 0; c < pr->ncolls; c++) {
        const jm_tcoll *cl = &pr->colls[c];
        if (cl->kind != JM_COLL_ROWS) continue;
        if (!(jm_dp.rows[c] = jm_dp_grow(jm_dp.rows[c], &jm_dp.nrows[c], (int64_t)S * (cl->bytes[0] + cl->bytes[1]) + 8))) return jm_dp_oom(rt);
    }
    return 0;
}

/* After micro-batch m's phase 0 (shard slot m of this process's K): each
   mean's operand into the sums, each scatter's index and rows into slot m. */
static int jm_dp_collect(jm_rt *rt, const jm_tprogram *pr, int m, int rank, int K) {
    int64_t o32 = 0, o64 = 0;
    for (int c = 0; c < pr->ncolls; c++) {
        const jm_tcoll *cl = &pr->colls[c];
        if (cl->kind == JM_COLL_ROWS) {
            int64_t one = cl->bytes[0] + cl->bytes[1];
            unsigned char *slot = jm_dp.rows[c] + (size_t)((int64_t)rank * K + m) * (size_t)one;
            if (rt->dev->scratch_io(rt, cl->ref[0], slot, cl->bytes[0], 0) != 0 ||
                rt->dev->scratch_io(rt, cl->ref[1], slot + cl->bytes[0], cl->bytes[1], 0) != 0) return -1;
            continue;
        }
        if (rt->dev->scratch_io(rt, cl->ref[0], jm_dp.tmp, cl->bytes[0], 0) != 0) return -1;
        if (cl->dtype == JM_DT_F32) {
            int64_t n = cl->bytes[0] / 4;
            const float *v = (const float *)jm_dp.tmp;
            float *acc = jm_dp.s32 + o32;
            if (m == 0) memcpy(acc, v, (size_t)n * 4);
            else for (int64_t i = 0; i < n; i++) acc[i] += v[i];
            o32 += n;
        } else {
            int64_t n = cl->bytes[0] / 8;
            const double *v = (const double *)jm_dp.tmp;
            double *acc = jm_dp.s64 + o64;
            if (m == 0) memcpy(acc, v, (size_t)n * 8);
            else for (int64_t i = 0; i < n; i++) acc[i] += v[i];
            o64 += n;
        }
    }
    return 0;
}

/* Across processes, then the means written back in place. */
static int jm_dp_exchange(jm_rt *rt, const jm_tprogram *pr, jm_coll *coll, int K, int S) {
    int64_t n32 = 0, n64 = 0;
    for (int c = 0; c < pr->ncolls; c++)
        if (pr->colls[c].kind == JM_COLL_MEAN) {
            if (pr->colls[c].dtype == JM_DT_F32) n32 += pr->colls[c].bytes[0] / 4; else n64 += pr->colls[c].bytes[0] / 8;
        }
    if (coll && coll->size > 1) {
        char e[512];
        if ((n32 && coll->allreduce_f32(coll, jm_dp.s32, n32, e, sizeof e) != 0) ||
            (n64 && coll->allreduce_f64(coll, jm_dp.s64, n64, JM_COLL_SUM, e, sizeof e) != 0)) {
            snprintf(rt->err, sizeof rt->err, "averaging the gradients across %d processes: %s", coll->size, e);
            return -1;
        }
        for (int c = 0; c < pr->ncolls; c++) {
            const jm_tcoll *cl = &pr->colls[c];
            if (cl->kind != JM_COLL_ROWS) continue;
            int64_t mine = (int64_t)K * (cl->bytes[0] + cl->bytes[1]);
            /* this rank's K slots out of the gathered area, then every rank's into it */
            if (!(jm_dp.tmp = jm_dp_grow(jm_dp.tmp, &jm_dp.ntmp, mine + 8))) return jm_dp_oom(rt);
            memcpy(jm_dp.tmp, jm_dp.rows[c] + (size_t)(coll->rank * mine), (size_t)mine);
            if (coll->allgather(coll, jm_dp.tmp, mine, jm_dp.rows[c], e, sizeof e) != 0) {
                snprintf(rt->err, sizeof rt->err, "gathering the replay buffer's new rows across %d processes: %s", coll->size, e);
                return -1;
            }
        }
    }
    /* the sum of S shards' means, times 1/S (exact for S a power of two) */
    float f = 1.0f / (float)S;
    double d = 1.0 / (double)S;
    for (int64_t i = 0; i < n32; i++) jm_dp.s32[i] *= f;
    for (int64_t i = 0; i < n64; i++) jm_dp.s64[i] *= d;
    int64_t o32 = 0, o64 = 0;
    for (int c = 0; c < pr->ncolls; c++) {
        const jm_tcoll *cl = &pr->colls[c];
        if (cl->kind != JM_COLL_MEAN) continue;
        void *src = cl->dtype == JM_DT_F32 ? (void *)(jm_dp.s32 + o32) : (void *)(jm_dp.s64 + o64);
        if (rt->dev->scratch_io(rt, cl->ref[0], src, cl->bytes[0], 1) != 0) return -1;
        if (cl->dtype == JM_DT_F32) o32 += cl->bytes[0] / 4; else o64 += cl->bytes[0] / 8;
    }
    return 0;
}

int jm_rt_run_shards(jm_rt *rt, int p, jm_coll *coll, int K, const void *const *inputs, void *const *outputs) {
    int N = coll ? coll->size : 1, rank = coll ? coll->rank : 0;
    int S = N * K;
    if (S <= 1) return jm_rt_run(rt, p, inputs, outputs);
    const jm_tprogram *pr = &rt->t->programs[p];
    if (jm_rt_prepare(rt, p) != 0) return -1;
    if (pr->dp_why && pr->dp_why[0]) {
        snprintf(rt->err, sizeof rt->err, "%s cannot run over %d shards of its batch: %s", pr->name, S, pr->dp_why);
        return -1;
    }
    if (!rt->dev->run_phase || !rt->dev->scratch_io) {
        snprintf(rt->err, sizeof rt->err, "the %s device does not run data-parallel steps yet (--accumulate, mpirun): use --device cpu", rt->dev->name);
        return -1;
    }
    if (jm_dp_reserve(rt, pr, S) != 0) return -1;
    int rc = 0;
    double spent = 0;
    for (int m = 0; m < K && rc == 0; m++) {
        rt->shard = (int64_t)rank * K + m;
        rc = rt->dev->run_phase(rt, p, 0, inputs + (size_t)m * (size_t)pr->ninputs, NULL);
        double t0 = jm_dp_now();
        if (rc == 0) rc = jm_dp_collect(rt, pr, m, rank, K);
        spent += jm_dp_now() - t0;
    }
    rt->shard = 0;
    double t0 = jm_dp_now();
    if (rc == 0) rc = jm_dp_exchange(rt, pr, coll, K, S);
    rt->dp_exchange_s += spent + jm_dp_now() - t0;
    if (rc != 0) return -1;
    rt->dp_nshards = S;
    rt->dp_rows = jm_dp.rows;
    rc = rt->dev->run_phase(rt, p, 1, NULL, outputs);
    rt->dp_nshards = 0;
    rt->dp_rows = NULL;
    return rc;
}
