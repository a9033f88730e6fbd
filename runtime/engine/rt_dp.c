/* rt_dp.c — see rt_dp.h. */
#include "rt_dp.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define JM_DP_PHASES 8     /* as compiler/dp.h's JM_DP_MAX_PHASES */

/* staging, reused by every step: the means' sums (f32 and f64 apart, each
   collective at off[c], grouped by phase so that one exchange is one
   contiguous allreduce), one micro-batch's operand, and per ROWS collective
   every shard's rows */
static struct {
    float *s32; int64_t n32;
    double *s64; int64_t n64;
    unsigned char *tmp; int64_t ntmp;
    unsigned char **rows; int64_t *nrows; int nrow_colls;
    int64_t *off; int noff;
    int64_t lo32[JM_DP_PHASES + 1], lo64[JM_DP_PHASES + 1];   /* phase k's sums: [lo[k], lo[k + 1]) */
    /* overlap: phase k's f32 means in the order the backward pass finishes
       them, ord[ord_lo[k] .. ord_lo[k + 1]) (their sums laid out in that
       order), cut into buckets: bucket b is ord[bk[b] .. bk[b + 1]), phase
       k's buckets bk_lo[k] .. bk_lo[k + 1] - 1 */
    int *ord; int nord_cap;
    int ord_lo[JM_DP_PHASES + 1];
    int *bk; int nbk_cap;
    int bk_lo[JM_DP_PHASES + 1];
    unsigned char *got; int ngot_cap;     /* per collective: collected this step */
    /* the hook's run: the phase whose means it collects, the micro-batch, the
       next mean and bucket, its first error */
    struct {
        const jm_tprogram *pr; jm_coll *coll;
        int phase, m, rank, K, next, nextbk, rc;
    } h;
} jm_dp;

static double jm_dp_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void *jm_dp_grow(void *p, int64_t *cap, int64_t want) {
    if (want <= *cap) return p;
    void *q = realloc(p, (size_t)want);
    if (!q) return NULL;
    *cap = want;
    return q;
}

void jm_rt_dp_free(void) {
    free(jm_dp.s32); free(jm_dp.s64); free(jm_dp.tmp); free(jm_dp.off);
    free(jm_dp.ord); free(jm_dp.bk); free(jm_dp.got);
    for (int c = 0; c < jm_dp.nrow_colls; c++) free(jm_dp.rows[c]);
    free(jm_dp.rows); free(jm_dp.nrows);
    memset(&jm_dp, 0, sizeof jm_dp);
}

static int jm_dp_oom(jm_rt *rt) {
    snprintf(rt->err, sizeof rt->err, "out of memory for the data-parallel staging buffers");
    return -1;
}

/* how many steps of the program have run when mean c's operand is final */
static int jm_dp_ready(const jm_tprogram *pr, int c) {
    const jm_tcoll *cl = &pr->colls[c];
    return cl->step >= 0 ? cl->step : pr->phase_start[cl->phase];
}

/* the staging space the step of program pr needs, for S shards, and the sums' layout */
static int jm_dp_reserve(jm_rt *rt, const jm_tprogram *pr, int S) {
    int64_t n32 = 0, n64 = 0, tmp = 0;
    if (pr->ncolls > jm_dp.noff) {
        int64_t *o = realloc(jm_dp.off, sizeof(int64_t) * (size_t)pr->ncolls);
        if (!o) return jm_dp_oom(rt);
        jm_dp.off = o;
        jm_dp.noff = pr->ncolls;
    }
    if (pr->ncolls + 1 > jm_dp.nord_cap) {
        int *o = realloc(jm_dp.ord, sizeof(int) * (size_t)(pr->ncolls + 1));
        if (!o) return jm_dp_oom(rt);
        jm_dp.ord = o;
        int *b = realloc(jm_dp.bk, sizeof(int) * (size_t)(pr->ncolls + JM_DP_PHASES + 2));
        if (!b) return jm_dp_oom(rt);
        jm_dp.bk = b;
        unsigned char *g = realloc(jm_dp.got, (size_t)(pr->ncolls + 1));
        if (!g) return jm_dp_oom(rt);
        jm_dp.got = g;
        jm_dp.nord_cap = pr->ncolls + 1;
    }
    int nord = 0, nbk = 0;
    for (int ph = 0; ph <= JM_DP_PHASES; ph++) {
        jm_dp.lo32[ph] = n32;
        jm_dp.lo64[ph] = n64;
        jm_dp.ord_lo[ph] = nord;
        jm_dp.bk_lo[ph] = nbk;
        /* the f32 means by readiness (insertion: a step's few hundred), the
           buckets closed at dp_bucket_bytes (0: one bucket) */
        int first = nord;
        for (int c = 0; c < pr->ncolls; c++) {
            const jm_tcoll *cl = &pr->colls[c];
            if (cl->kind != JM_COLL_MEAN || cl->phase != ph || cl->dtype != JM_DT_F32) continue;
            int k = nord++;
            while (k > first && jm_dp_ready(pr, jm_dp.ord[k - 1]) > jm_dp_ready(pr, c)) { jm_dp.ord[k] = jm_dp.ord[k - 1]; k--; }
            jm_dp.ord[k] = c;
        }
        int64_t in_bucket = 0;
        for (int k = first; k < nord; k++) {
            const jm_tcoll *cl = &pr->colls[jm_dp.ord[k]];
            if (in_bucket == 0) jm_dp.bk[nbk++] = k;
            jm_dp.off[jm_dp.ord[k]] = n32;
            n32 += cl->bytes[0] / 4;
            in_bucket += cl->bytes[0];
            if (rt->dp_bucket_bytes > 0 && in_bucket >= rt->dp_bucket_bytes) in_bucket = 0;
            if (cl->bytes[0] > tmp) tmp = cl->bytes[0];
        }
        for (int c = 0; c < pr->ncolls; c++) {
            const jm_tcoll *cl = &pr->colls[c];
            if (cl->kind != JM_COLL_MEAN || cl->phase != ph || cl->dtype == JM_DT_F32) continue;
            jm_dp.off[c] = n64;
            n64 += cl->bytes[0] / 8;
            if (cl->bytes[0] > tmp) tmp = cl->bytes[0];
        }
    }
    jm_dp.bk[nbk] = nord;
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

/* Collective c's operand, from micro-batch m's run of the phase before it:
   a mean's into its sum (the first micro-batch copied, the next added in
   order), a scatter's index and rows into this shard's slot. */
static int jm_dp_collect_one(jm_rt *rt, const jm_tprogram *pr, int c, int m, int rank, int K) {
    const jm_tcoll *cl = &pr->colls[c];
    if (cl->kind == JM_COLL_ROWS) {
        int64_t one = cl->bytes[0] + cl->bytes[1];
        unsigned char *slot = jm_dp.rows[c] + (size_t)((int64_t)rank * K + m) * (size_t)one;
        if (rt->dev->scratch_io(rt, cl->ref[0], slot, cl->bytes[0], 0) != 0 ||
            rt->dev->scratch_io(rt, cl->ref[1], slot + cl->bytes[0], cl->bytes[1], 0) != 0) return -1;
        return 0;
    }
    if (rt->dev->scratch_io(rt, cl->ref[0], jm_dp.tmp, cl->bytes[0], 0) != 0) return -1;
    if (cl->dtype == JM_DT_F32) {
        int64_t n = cl->bytes[0] / 4;
        const float *v = (const float *)jm_dp.tmp;
        float *acc = jm_dp.s32 + jm_dp.off[c];
        if (m == 0) memcpy(acc, v, (size_t)n * 4);
        else for (int64_t i = 0; i < n; i++) acc[i] += v[i];
    } else {
        int64_t n = cl->bytes[0] / 8;
        const double *v = (const double *)jm_dp.tmp;
        double *acc = jm_dp.s64 + jm_dp.off[c];
        if (m == 0) memcpy(acc, v, (size_t)n * 8);
        else for (int64_t i = 0; i < n; i++) acc[i] += v[i];
    }
    return 0;
}

/* After micro-batch m's run of the phase before `phase`: what the hook has
   not collected yet of that phase's collectives (the rows alone when the
   means stay on the device: `dev`). */
static int jm_dp_collect(jm_rt *rt, const jm_tprogram *pr, int phase, int m, int rank, int K, int dev) {
    for (int c = 0; c < pr->ncolls; c++)
        if (pr->colls[c].phase == phase && !jm_dp.got[c] && !(dev && pr->colls[c].kind == JM_COLL_MEAN) &&
            jm_dp_collect_one(rt, pr, c, m, rank, K) != 0) return -1;
    return 0;
}

/* Posts bucket b of the hook's phase (all of its means collected). */
static int jm_dp_post(jm_rt *rt, int b) {
    const jm_tprogram *pr = jm_dp.h.pr;
    int c0 = jm_dp.ord[jm_dp.bk[b]], c1 = jm_dp.ord[jm_dp.bk[b + 1] - 1];
    int64_t lo = jm_dp.off[c0], n = jm_dp.off[c1] + pr->colls[c1].bytes[0] / 4 - lo;
    char e[512];
    if (jm_dp.h.coll->post_f32(jm_dp.h.coll, jm_dp.s32 + lo, n, e, sizeof e) != 0) {
        snprintf(rt->err, sizeof rt->err, "averaging over %d processes before phase %d (bucket %d): %s", jm_dp.h.coll->size, jm_dp.h.phase, b, e);
        return -1;
    }
    return 0;
}

/* rt->dp_step_hook while a phase runs (the last micro-batch of an overlapped
   exchange): after step s, the means whose operand is now final are
   collected, each bucket they complete is posted, the transport progresses. */
static void jm_dp_hook(jm_rt *rt, int s) {
    const jm_tprogram *pr = jm_dp.h.pr;
    int ph = jm_dp.h.phase;
    if (jm_dp.h.rc != 0) return;
    double t0 = jm_dp_now();
    while (jm_dp.h.rc == 0 && jm_dp.h.next < jm_dp.ord_lo[ph + 1] && jm_dp_ready(pr, jm_dp.ord[jm_dp.h.next]) <= s + 1) {
        int c = jm_dp.ord[jm_dp.h.next++];
        jm_dp.h.rc = jm_dp_collect_one(rt, pr, c, jm_dp.h.m, jm_dp.h.rank, jm_dp.h.K);
        jm_dp.got[c] = 1;
    }
    while (jm_dp.h.rc == 0 && jm_dp.h.nextbk < jm_dp.bk_lo[ph + 1] && jm_dp.bk[jm_dp.h.nextbk + 1] <= jm_dp.h.next) {
        jm_dp.h.rc = jm_dp_post(rt, jm_dp.h.nextbk++);
        if (s + 1 < pr->phase_start[ph]) rt->dp_buckets_early++;
    }
    char e[512];
    if (jm_dp.h.rc == 0 && jm_dp.h.nextbk > jm_dp.bk_lo[ph] && jm_dp.h.coll->progress(jm_dp.h.coll, e, sizeof e) != 0) {
        snprintf(rt->err, sizeof rt->err, "averaging over %d processes before phase %d: %s", jm_dp.h.coll->size, ph, e);
        jm_dp.h.rc = -1;
    }
    rt->dp_exchange_s += jm_dp_now() - t0;
}

/* Runs phase `run` of the step (micro-batch m); with `post`, the hook
   collects the means of the next phase as they become final and posts their
   buckets (else they are collected after the phase: jm_dp_collect). */
static int jm_dp_run_phase(jm_rt *rt, int p, int run, int m, int rank, int K, jm_coll *coll, int post,
                           const void *const *inputs, void *const *outputs) {
    const jm_tprogram *pr = &rt->t->programs[p];
    int ph = run + 1;
    memset(jm_dp.got, 0, (size_t)pr->ncolls);
    if (post && ph < pr->nphases) {
        jm_dp.h.pr = pr; jm_dp.h.coll = coll; jm_dp.h.phase = ph;
        jm_dp.h.m = m; jm_dp.h.rank = rank; jm_dp.h.K = K;
        jm_dp.h.next = jm_dp.ord_lo[ph]; jm_dp.h.nextbk = jm_dp.bk_lo[ph];
        jm_dp.h.rc = 0;
        rt->dp_step_hook = jm_dp_hook;
    }
    int rc = rt->dev->run_phase(rt, p, run, inputs, outputs);
    rt->dp_step_hook = NULL;
    if (rc == 0 && post && ph < pr->nphases && jm_dp.h.rc != 0) rc = -1;   /* rt->err says what */
    return rc;
}

/* The exchange before `phase`: across processes, then the means written back in place. */
static int jm_dp_exchange(jm_rt *rt, const jm_tprogram *pr, int phase, jm_coll *coll, int K, int S, int overlapped, int dev) {
    float *s32 = jm_dp.s32 + jm_dp.lo32[phase];
    double *s64 = jm_dp.s64 + jm_dp.lo64[phase];
    int64_t n32 = jm_dp.lo32[phase + 1] - jm_dp.lo32[phase], n64 = jm_dp.lo64[phase + 1] - jm_dp.lo64[phase];
    if (coll && coll->size > 1) {
        char e[512];
        if (dev) {
            /* the means in place on the device (NCCL), then the wait for them */
            for (int c = 0; c < pr->ncolls; c++) {
                const jm_tcoll *cl = &pr->colls[c];
                if (cl->kind != JM_COLL_MEAN || cl->phase != phase) continue;
                int64_t n = cl->bytes[0] / (cl->dtype == JM_DT_F64 ? 8 : 4);
                if (rt->dev->mean_dev(rt, cl->ref[0], n, cl->dtype, coll, S) != 0) return -1;
            }
            double t0 = jm_dp_now();
            int rc = rt->dev->dp_wait(rt, coll);
            rt->dp_wait_s += jm_dp_now() - t0;
            if (rc != 0) return -1;
            n32 = n64 = 0;
        } else if (overlapped) {
            /* the buckets the hook did not post (all, when the phase's last
               step finished them), then the wait for all of them */
            while (jm_dp.h.nextbk < jm_dp.bk_lo[phase + 1])
                if (jm_dp_post(rt, jm_dp.h.nextbk++) != 0) return -1;
            double t0 = jm_dp_now();
            int rc = coll->wait_all(coll, e, sizeof e);
            rt->dp_wait_s += jm_dp_now() - t0;
            if (rc != 0) {
                snprintf(rt->err, sizeof rt->err, "averaging over %d processes before phase %d: %s", coll->size, phase, e);
                return -1;
            }
            n32 = 0;    /* summed */
        }
        if ((n32 && coll->allreduce_f32(coll, s32, n32, e, sizeof e) != 0) ||
            (n64 && coll->allreduce_f64(coll, s64, n64, JM_COLL_SUM, e, sizeof e) != 0)) {
            snprintf(rt->err, sizeof rt->err, "averaging over %d processes before phase %d: %s", coll->size, phase, e);
            return -1;
        }
        for (int c = 0; c < pr->ncolls; c++) {
            const jm_tcoll *cl = &pr->colls[c];
            if (cl->kind != JM_COLL_ROWS || cl->phase != phase) continue;
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
    if (dev) return 0;
    n32 = jm_dp.lo32[phase + 1] - jm_dp.lo32[phase];
    float f = 1.0f / (float)S;
    double d = 1.0 / (double)S;
    for (int64_t i = 0; i < n32; i++) s32[i] *= f;
    for (int64_t i = 0; i < n64; i++) s64[i] *= d;
    for (int c = 0; c < pr->ncolls; c++) {
        const jm_tcoll *cl = &pr->colls[c];
        if (cl->kind != JM_COLL_MEAN || cl->phase != phase) continue;
        void *src = cl->dtype == JM_DT_F32 ? (void *)(jm_dp.s32 + jm_dp.off[c]) : (void *)(jm_dp.s64 + jm_dp.off[c]);
        if (rt->dev->scratch_io(rt, cl->ref[0], src, cl->bytes[0], 1) != 0) return -1;
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
    int P = pr->nphases;
    if (P > JM_DP_PHASES) {
        snprintf(rt->err, sizeof rt->err, "%s has %d phases; this runtime runs at most %d", pr->name, P, JM_DP_PHASES);
        return -1;
    }
    if (K > 1 && P > 2) {
        /* a micro-batch's activations do not survive the next micro-batch's phase 0 */
        snprintf(rt->err, sizeof rt->err, "%s exchanges %d times per step (SAM, or several minimizes): --accumulate takes programs "
                 "of one exchange; run it on more processes instead", pr->name, P - 1);
        return -1;
    }
    if (P == 1) return rt->dev->run(rt, p, inputs, outputs);   /* nothing of it depends on the batch */
    if (!rt->dev->run_phase || !rt->dev->scratch_io) {
        snprintf(rt->err, sizeof rt->err, "the %s device does not run data-parallel steps yet (--accumulate, mpirun): use --device cpu", rt->dev->name);
        return -1;
    }
    if (jm_dp_reserve(rt, pr, S) != 0) return -1;
    /* overlap: the last micro-batch's means go out in buckets while the rest of its phase runs */
    int overlap = coll && coll->size > 1 && rt->dp_bucket_bytes > 0 && coll->post_f32 && coll->progress && coll->wait_all;
    /* a device transport (NCCL) keeps one micro-batch's means on the device;
       several micro-batches are summed through the host */
    int dev = coll && coll->size > 1 && K == 1 && coll->dev_allreduce && rt->dev->mean_dev && rt->dev->dp_wait;
    if (dev) overlap = 0;
    int rc = 0;
    double spent = 0, t0;
    rt->dp_nshards = S;
    for (int m = 0; m < K && rc == 0; m++) {
        rt->shard = (int64_t)rank * K + m;
        rc = jm_dp_run_phase(rt, p, 0, m, rank, K, coll, overlap && m == K - 1, inputs + (size_t)m * (size_t)pr->ninputs, NULL);
        t0 = jm_dp_now();
        if (rc == 0) rc = jm_dp_collect(rt, pr, 1, m, rank, K, dev);
        spent += jm_dp_now() - t0;
    }
    /* the later phases (K = 1 when there are several), each after its exchange */
    for (int ph = 1; ph < P && rc == 0; ph++) {
        t0 = jm_dp_now();
        rc = jm_dp_exchange(rt, pr, ph, coll, K, S, overlap, dev);
        spent += jm_dp_now() - t0;
        if (rc != 0) break;
        rt->shard = (int64_t)rank * K;
        rt->dp_rows = jm_dp.rows;
        rc = jm_dp_run_phase(rt, p, ph, 0, rank, K, coll, overlap, NULL, ph == P - 1 ? outputs : NULL);
        t0 = jm_dp_now();
        if (rc == 0 && ph + 1 < P) rc = jm_dp_collect(rt, pr, ph + 1, 0, rank, K, dev);
        spent += jm_dp_now() - t0;
    }
    /* after a failure, sums this rank posted may still be in flight: the
       caller ends the job (rt_dp.h) rather than wait for ranks that may never post */
    rt->shard = 0;
    rt->dp_nshards = 0;
    rt->dp_rows = NULL;
    rt->dp_exchange_s += spent;
    return rc == 0 ? 0 : -1;
}
