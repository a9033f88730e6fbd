/* rt_gm.c — see rt_gm.h.
 *
 * The Cholesky factorisation is blocked and right-looking, in double: for each
 * panel of JM_GM_NB columns, (1) the diagonal block is factored on one thread,
 * (2) the rows below it are solved against it (a triangular solve per row,
 * rows shared among the threads), (3) the trailing lower triangle loses the
 * panel's contribution, A22 -= L21 L21^T, which is all but a few percent of the
 * n^3/3 multiply-adds. (3) runs on tiles of 4 rows x 16 columns, rows shared
 * dynamically (the triangle's rows differ in length), with the panel packed
 * transposed in 16-column strips so that the tile's inner loop reads it
 * contiguously; the tile is an AVX-512, AVX2+FMA or plain C kernel, picked with
 * __builtin_cpu_supports as the engine's GEMM does (no -march flag needed). */
#include "rt_gm.h"
#include "rt_session.h"
#include "engine/rt_kernels.h"
#include "engine/rt_state.h"
#include <immintrin.h>
#include <inttypes.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { JM_GM_NB = 128, JM_GM_TW = 16, JM_GM_TR = 4, JM_GM_GRAM_ROWS = 512 };

static int jm_gm_team(int threads) { return threads > 0 ? threads : omp_get_max_threads(); }

/* ------------------------------------------------------------------ the trailing update's tile */

/* out[r*16 + j] = sum_{k < kb} a_r[k] * p[k*16 + j] for rows r < 4, columns j < 16 */
typedef void jm_gm_tile_fn(int64_t kb, const double *const a[JM_GM_TR], const double *p, double *out);

__attribute__((target("avx512f"))) static void jm_gm_tile_512(int64_t kb, const double *const a[JM_GM_TR], const double *p, double *out) {
    __m512d c00 = _mm512_setzero_pd(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00, c30 = c00, c31 = c00;
    const double *a0 = a[0], *a1 = a[1], *a2 = a[2], *a3 = a[3];
    for (int64_t k = 0; k < kb; k++) {
        __m512d p0 = _mm512_loadu_pd(p + 16 * k), p1 = _mm512_loadu_pd(p + 16 * k + 8), b;
        b = _mm512_set1_pd(a0[k]); c00 = _mm512_fmadd_pd(b, p0, c00); c01 = _mm512_fmadd_pd(b, p1, c01);
        b = _mm512_set1_pd(a1[k]); c10 = _mm512_fmadd_pd(b, p0, c10); c11 = _mm512_fmadd_pd(b, p1, c11);
        b = _mm512_set1_pd(a2[k]); c20 = _mm512_fmadd_pd(b, p0, c20); c21 = _mm512_fmadd_pd(b, p1, c21);
        b = _mm512_set1_pd(a3[k]); c30 = _mm512_fmadd_pd(b, p0, c30); c31 = _mm512_fmadd_pd(b, p1, c31);
    }
    _mm512_storeu_pd(out, c00); _mm512_storeu_pd(out + 8, c01);
    _mm512_storeu_pd(out + 16, c10); _mm512_storeu_pd(out + 24, c11);
    _mm512_storeu_pd(out + 32, c20); _mm512_storeu_pd(out + 40, c21);
    _mm512_storeu_pd(out + 48, c30); _mm512_storeu_pd(out + 56, c31);
}

/* two passes of 8 columns: 8 accumulators of the 16 ymm registers each */
__attribute__((target("avx2,fma"))) static void jm_gm_tile_256(int64_t kb, const double *const a[JM_GM_TR], const double *p, double *out) {
    for (int h = 0; h < 2; h++) {
        __m256d c00 = _mm256_setzero_pd(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00, c30 = c00, c31 = c00;
        const double *a0 = a[0], *a1 = a[1], *a2 = a[2], *a3 = a[3], *q = p + 8 * h;
        for (int64_t k = 0; k < kb; k++) {
            __m256d p0 = _mm256_loadu_pd(q + 16 * k), p1 = _mm256_loadu_pd(q + 16 * k + 4), b;
            b = _mm256_broadcast_sd(a0 + k); c00 = _mm256_fmadd_pd(b, p0, c00); c01 = _mm256_fmadd_pd(b, p1, c01);
            b = _mm256_broadcast_sd(a1 + k); c10 = _mm256_fmadd_pd(b, p0, c10); c11 = _mm256_fmadd_pd(b, p1, c11);
            b = _mm256_broadcast_sd(a2 + k); c20 = _mm256_fmadd_pd(b, p0, c20); c21 = _mm256_fmadd_pd(b, p1, c21);
            b = _mm256_broadcast_sd(a3 + k); c30 = _mm256_fmadd_pd(b, p0, c30); c31 = _mm256_fmadd_pd(b, p1, c31);
        }
        double *o = out + 8 * h;
        _mm256_storeu_pd(o, c00); _mm256_storeu_pd(o + 4, c01);
        _mm256_storeu_pd(o + 16, c10); _mm256_storeu_pd(o + 20, c11);
        _mm256_storeu_pd(o + 32, c20); _mm256_storeu_pd(o + 36, c21);
        _mm256_storeu_pd(o + 48, c30); _mm256_storeu_pd(o + 52, c31);
    }
}

static void jm_gm_tile_c(int64_t kb, const double *const a[JM_GM_TR], const double *p, double *out) {
    for (int i = 0; i < JM_GM_TR * JM_GM_TW; i++) out[i] = 0;
    for (int64_t k = 0; k < kb; k++)
        for (int r = 0; r < JM_GM_TR; r++) {
            double ar = a[r][k];
            for (int j = 0; j < JM_GM_TW; j++) out[r * JM_GM_TW + j] += ar * p[JM_GM_TW * k + j];
        }
}

static jm_gm_tile_fn *jm_gm_tile_pick(void) {
    if (__builtin_cpu_supports("avx512f")) return jm_gm_tile_512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return jm_gm_tile_256;
    return jm_gm_tile_c;
}

/* ------------------------------------------------------------------ Cholesky */

/* (1) the diagonal block [k0, k0+kb) in place; -1 with *bad at a pivot <= 0 or NaN */
static int jm_gm_chol_diag(double *a, int64_t n, int64_t k0, int64_t kb, int64_t *bad) {
    for (int64_t j = k0; j < k0 + kb; j++) {
        double *rj = a + j * n, d = rj[j];
        for (int64_t k = k0; k < j; k++) d -= rj[k] * rj[k];
        if (!(d > 0) || !isfinite(d)) { *bad = j; return -1; }
        double l = sqrt(d);
        rj[j] = l;
        for (int64_t i = j + 1; i < k0 + kb; i++) {
            double *ri = a + i * n, s = ri[j];
            for (int64_t k = k0; k < j; k++) s -= ri[k] * rj[k];
            ri[j] = s / l;
        }
    }
    return 0;
}

/* (2) row i below the panel: L[i, k0:k0+kb] solves L[i, panel] L_kk^T = A[i, panel] */
static void jm_gm_chol_row(double *a, int64_t n, int64_t k0, int64_t kb, int64_t i) {
    double *ri = a + i * n;
    for (int64_t j = k0; j < k0 + kb; j++) {
        const double *rj = a + j * n;
        double s = ri[j];
        for (int64_t k = k0; k < j; k++) s -= ri[k] * rj[k];
        ri[j] = s / rj[j];
    }
}

/* (3) rows i0 .. i0+nr-1 (nr <= 4) of the trailing triangle, columns j0 .. i:
   A[i, j] -= sum_k L[i, k0+k] L[j, k0+k], the panel packed in pk */
static void jm_gm_chol_tile(jm_gm_tile_fn *tile, double *a, int64_t n, int64_t k0, int64_t kb, int64_t j0, int64_t i0, int nr,
                            const double *pk) {
    const double *rows[JM_GM_TR];
    double out[JM_GM_TR * JM_GM_TW];
    for (int r = 0; r < JM_GM_TR; r++) rows[r] = a + (i0 + (r < nr ? r : 0)) * n + k0;
    int64_t last = i0 + nr - 1;                   /* the tile's last row: columns up to it */
    for (int64_t q = 0; j0 + JM_GM_TW * q <= last; q++) {
        tile(kb, rows, pk + q * kb * JM_GM_TW, out);
        int64_t jq = j0 + JM_GM_TW * q;
        for (int r = 0; r < nr; r++) {
            double *ri = a + (i0 + r) * n;
            int64_t jend = i0 + r - jq + 1;        /* lower triangle, diagonal included */
            if (jend > JM_GM_TW) jend = JM_GM_TW;
            for (int64_t l = 0; l < jend; l++) ri[jq + l] -= out[r * JM_GM_TW + l];
        }
    }
}

int jm_gm_cholesky(double *a, int64_t n, int threads, int64_t *bad) {
    jm_gm_tile_fn *tile = jm_gm_tile_pick();
    int64_t strips = (n + JM_GM_TW - 1) / JM_GM_TW;
    double *pk = malloc(sizeof(double) * (size_t)(strips * JM_GM_NB * JM_GM_TW + 1));
    if (!pk) { *bad = -1; return -1; }
    int64_t fail = -1;
    /* `fail` is read only after the single's barrier: a thread that read it at
       the loop's head could see the single's write before reaching the single,
       leave the loop and wait at the region's end while the others wait at the
       single's barrier (a deadlock, seen with a failing first pivot) */
#pragma omp parallel num_threads(jm_gm_team(threads))
    for (int64_t k0 = 0; k0 < n; k0 += JM_GM_NB) {
        int64_t kb = n - k0 < JM_GM_NB ? n - k0 : JM_GM_NB, j0 = k0 + kb, m = n - j0;
#pragma omp single
        {
            int64_t b;
            if (jm_gm_chol_diag(a, n, k0, kb, &b) != 0) fail = b;
        }
        /* the single's barrier: every thread sees `fail` */
        if (fail >= 0) break;
#pragma omp for schedule(static)
        for (int64_t i = j0; i < n; i++) jm_gm_chol_row(a, n, k0, kb, i);
        /* the panel transposed in strips of 16 columns: pk[q][k][l] = L[j0 + 16q + l][k0 + k], zero past n */
        int64_t ms = (m + JM_GM_TW - 1) / JM_GM_TW;
#pragma omp for schedule(static)
        for (int64_t q = 0; q < ms; q++)
            for (int64_t l = 0; l < JM_GM_TW; l++) {
                int64_t j = j0 + JM_GM_TW * q + l;
                double *dst = pk + q * kb * JM_GM_TW + l;
                for (int64_t k = 0; k < kb; k++) dst[JM_GM_TW * k] = j < n ? a[j * n + k0 + k] : 0;
            }
        /* the longest rows (the bottom tiles) first */
        int64_t tiles = (m + JM_GM_TR - 1) / JM_GM_TR;
#pragma omp for schedule(dynamic, 1)
        for (int64_t t = tiles - 1; t >= 0; t--) {
            int64_t i0 = j0 + JM_GM_TR * t;
            jm_gm_chol_tile(tile, a, n, k0, kb, j0, i0, (int)(n - i0 < JM_GM_TR ? n - i0 : JM_GM_TR), pk);
        }
    }
    free(pk);
    if (fail >= 0) { *bad = fail; return -1; }
#pragma omp parallel for num_threads(jm_gm_team(threads)) schedule(static)
    for (int64_t i = 0; i < n; i++) memset(a + i * n + i + 1, 0, sizeof(double) * (size_t)(n - i - 1));
    return 0;
}

/* ------------------------------------------------------------------ statistics */

int64_t jm_gm_covariance(const jm_dataset *ds, int64_t c, double *mean, double *cov, int threads, jm_gm_times *tm) {
    int64_t D = (int64_t)ds->c * ds->h * ds->w, nc = 0;
    double t0 = jm_session_now();
    for (int64_t r = 0; r < ds->n; r++) nc += ds->y[r] == c;
    if (nc == 0) return 0;
    int64_t *idx = malloc(sizeof(int64_t) * (size_t)nc);
    int64_t kmax = nc < JM_GM_CHUNK ? nc : JM_GM_CHUNK, R = D < JM_GM_GRAM_ROWS ? D : JM_GM_GRAM_ROWS;
    float *xt = malloc(sizeof(float) * (size_t)(D * kmax)), *g = malloc(sizeof(float) * (size_t)(R * D));
    if (!idx || !xt || !g) { free(idx); free(xt); free(g); return -1; }
    nc = 0;
    for (int64_t r = 0; r < ds->n; r++) if (ds->y[r] == c) idx[nc++] = r;
    /* the mean in double */
    for (int64_t i = 0; i < D; i++) mean[i] = 0;
    for (int64_t r = 0; r < nc; r++) {
        const float *x = ds->x + idx[r] * D;
        for (int64_t i = 0; i < D; i++) mean[i] += x[i];
    }
    for (int64_t i = 0; i < D; i++) mean[i] /= (double)nc;
    double t1 = jm_session_now();
    memset(cov, 0, sizeof(double) * (size_t)(D * D));
    /* Sum over chunks of the Gram matrix of the centred records, lower triangle:
       chunk X^T (xt: D x k, one row per value) times itself, computed by blocks
       of R rows, row block I against columns [0, end of I) only (half the
       products); each float product is added into the double matrix. */
    int failed = 0;
#pragma omp parallel num_threads(jm_gm_team(threads))
    for (int64_t c0 = 0; c0 < nc; c0 += JM_GM_CHUNK) {
        int64_t k = nc - c0 < JM_GM_CHUNK ? nc - c0 : JM_GM_CHUNK;
#pragma omp for schedule(static)
        for (int64_t i = 0; i < D; i++)
            for (int64_t r = 0; r < k; r++) xt[i * k + r] = (float)((double)ds->x[idx[c0 + r] * D + i] - mean[i]);
        for (int64_t i0 = 0; i0 < D; i0 += R) {
            int64_t M = D - i0 < R ? D - i0 : R, N = i0 + M;
            /* every thread calls the kernel (rt_kernels.h); it ends with a barrier */
            if (jm_rt_matmul_f32(1, M, N, k, 0, 1, xt + i0 * k, 0, xt, 0, g, 0) != 0) {
#pragma omp atomic write
                failed = 1;
            }
#pragma omp for schedule(static)
            for (int64_t r = 0; r < M; r++) {
                double *s = cov + (i0 + r) * D;
                const float *gr = g + r * N;
                for (int64_t j = 0; j <= i0 + r; j++) s[j] += gr[j];
            }
        }
    }
    for (int64_t i = 0; i < D; i++)
        for (int64_t j = 0; j <= i; j++) cov[i * D + j] /= (double)nc;
    free(idx);
    free(xt);
    free(g);
    if (tm) { tm->mean_s += t1 - t0; tm->gram_s += jm_session_now() - t1; }
    return failed ? -1 : nc;
}

int jm_gm_fit(const jm_dataset *ds, int64_t classes, double jitter, float *mean, float *chol, int threads, jm_gm_times *tm,
              char *err, size_t errlen) {
    int64_t D = (int64_t)ds->c * ds->h * ds->w;
    jm_gm_times local = { 0, 0, 0 };
    if (!tm) tm = &local;
    for (int64_t r = 0; r < ds->n; r++)
        if (ds->y[r] < 0 || ds->y[r] >= classes) {
            snprintf(err, errlen, "%s: record %" PRId64 " (0-based) has label %" PRId64 ", but the graph's class Gaussians (gm_mean) are for %" PRId64
                     " classes (0 to %" PRId64 ")", ds->path, r, ds->y[r], classes, classes - 1);
            return -1;
        }
    double *mu = malloc(sizeof(double) * (size_t)D), *cov = malloc(sizeof(double) * (size_t)(D * D));
    int rc = mu && cov ? 0 : -1;
    if (rc) snprintf(err, errlen, "out of memory for a %" PRId64 " x %" PRId64 " covariance matrix", D, D);
    for (int64_t c = 0; c < classes && rc == 0; c++) {
        int64_t nc = jm_gm_covariance(ds, c, mu, cov, threads, tm);
        if (nc < 0) { snprintf(err, errlen, "out of memory fitting class %" PRId64 "'s Gaussian", c); rc = -1; break; }
        if (nc == 0) {
            snprintf(err, errlen, "%s: class %" PRId64 " has no records: the informative initialisation needs every one of the graph's %" PRId64
                     " classes in the training data", ds->path, c, classes);
            rc = -1;
            break;
        }
        for (int64_t i = 0; i < D; i++) cov[i * D + i] += jitter;
        double t0 = jm_session_now();
        int64_t bad = -1;
        if (jm_gm_cholesky(cov, D, threads, &bad) != 0) {
            if (bad < 0) snprintf(err, errlen, "out of memory factoring class %" PRId64 "'s covariance", c);
            else snprintf(err, errlen, "class %" PRId64 " (%" PRId64 " records of %s): its covariance + %g I is not positive definite (pivot %" PRId64
                          " of %" PRId64 " is not positive)", c, nc, ds->path, jitter, bad, D);
            rc = -1;
            break;
        }
        tm->chol_s += jm_session_now() - t0;
        for (int64_t i = 0; i < D; i++) mean[c * D + i] = (float)mu[i];
        float *lc = chol + c * D * D;
        for (int64_t i = 0; i < D * D; i++) lc[i] = (float)cov[i];
    }
    free(mu);
    free(cov);
    return rc;
}

/* ------------------------------------------------------------------ train's step */

static int jm_gm_global(const jm_table *t, const char *name) {
    for (int g = 0; g < t->nglobals; g++) if (strcmp(t->globals[g].t.name, name) == 0) return g;
    return -1;
}

/* runs gm_fill(rows) over every row of the state it writes; the rows filled, or -1 after a message */
static int64_t jm_gm_fill(jm_rt *rt, int p, const char *who, const char **what) {
    const jm_table *t = rt->t;
    const jm_tprogram *pr = &t->programs[p];
    if (pr->ninputs != 1 || strcmp(pr->inputs[0].name, "rows") != 0 || pr->inputs[0].dtype != JM_DT_I64 || pr->inputs[0].rank != 1
        || pr->inputs[0].dim[0] < 1 || pr->nwrites != 1 || t->globals[pr->writes[0].global].t.rank < 1) {
        fprintf(stderr, "%s: program gm_fill must take one input rows: i64[N] and write one state (the replay buffer: replay[rows] = "
                        "gm_rows(rows, per_class, shape), graphs/lib/informative.graph)\n", who);
        return -1;
    }
    const jm_tglobal *buf = &t->globals[pr->writes[0].global];
    *what = buf->t.name;
    int64_t n = pr->inputs[0].dim[0], R = buf->t.dim[0];
    int64_t *rows = malloc(sizeof(int64_t) * (size_t)n);
    void **out = jm_session_outputs(pr);
    if (!rows || !out) { free(rows); jm_session_free_outputs(pr, out); fprintf(stderr, "%s: out of memory\n", who); return -1; }
    int64_t rc = R;
    for (int64_t b0 = 0; b0 < R; b0 += n) {
        /* a last partial batch repeats the last row: any draw of its class will do */
        for (int64_t i = 0; i < n; i++) rows[i] = b0 + i < R ? b0 + i : R - 1;
        const void *in[1] = { rows };
        if (jm_rt_run(rt, p, in, out) != 0) { fprintf(stderr, "%s: gm_fill failed: %s\n", who, rt->err); rc = -1; break; }
    }
    free(rows);
    jm_session_free_outputs(pr, out);
    return rc;
}

int jm_gm_train_init(jm_rt *rt, const jm_dataset *ds, int resume, int fill, const char *who) {
    const jm_table *t = rt->t;
    int gm = jm_gm_global(t, "gm_mean"), gc = jm_gm_global(t, "gm_chol");
    if (gm < 0 || gc < 0) return 0;
    const jm_tdesc *dm = &t->globals[gm].t, *dc = &t->globals[gc].t;
    int64_t C = dm->rank == 2 ? dm->dim[0] : -1, D = dm->rank == 2 ? dm->dim[1] : -1;
    if (dm->dtype != JM_DT_F32 || dc->dtype != JM_DT_F32 || C < 0 || dc->rank != 3 || dc->dim[0] != C || dc->dim[1] != D || dc->dim[2] != D) {
        char a[160], b[160];
        jm_desc_str(dm, a, sizeof a);
        jm_desc_str(dc, b, sizeof b);
        fprintf(stderr, "%s: the class Gaussians must be gm_mean: f32[C, D] and gm_chol: f32[C, D, D]; this graph has gm_mean: %s, gm_chol: %s\n", who, a, b);
        return -1;
    }
    if (C == 0 || D == 0) return 0;                 /* gm_on = 0 */
    if (D != (int64_t)ds->c * ds->h * ds->w) {
        fprintf(stderr, "%s: the graph's class Gaussians are over %" PRId64 " values (gm_dim), but %s holds records of %dx%dx%d\n", who, D, ds->path,
                ds->c, ds->h, ds->w);
        return -1;
    }
    const float *l = jm_rt_global_read(rt, gc);
    int fitted = 1;
    for (int64_t c = 0; c < C; c++) fitted &= l[c * D * D] > 0;   /* a factor's diagonal is >= sqrt(jitter) */
    if (resume && fitted) {
        fprintf(stderr, "%s: informative init: the checkpoint's %" PRId64 " class Gaussians kept\n", who, C);
        return 0;
    }
    char err[1024];
    jm_gm_times tm = { 0, 0, 0 };
    double t0 = jm_session_now();
    if (jm_gm_fit(ds, C, JM_GM_JITTER, jm_rt_global(rt, gm), jm_rt_global(rt, gc), rt->threads, &tm, err, sizeof err) != 0) {
        fprintf(stderr, "%s: informative init: %s\n", who, err);
        return -1;
    }
    double t1 = jm_session_now();
    char rest[512];
    if (resume) snprintf(rest, sizeof rest, "the checkpoint had none; its replay buffer kept");
    else if (!fill) snprintf(rest, sizeof rest, "replay buffer left at its declared initialiser (--init uniform)");
    else {
        int p = jm_table_find_program(t, "gm_fill");
        const char *what = "";
        int64_t rows = p >= 0 ? jm_gm_fill(rt, p, who, &what) : 0;
        if (rows < 0) return -1;
        if (p < 0) snprintf(rest, sizeof rest, "no program gm_fill: the replay buffer keeps its declared initialiser");
        else snprintf(rest, sizeof rest, "%s: %" PRId64 " rows drawn by gm_fill in %.2f s", what, rows, jm_session_now() - t1);
    }
    fprintf(stderr, "%s: informative init: %" PRId64 " class Gaussians over %" PRId64 " values fitted on %" PRId64 " records in %.2f s (mean %.2f, Gram %.2f, "
                    "Cholesky %.2f); %s\n", who, C, D, ds->n, t1 - t0, tm.mean_s, tm.gram_s, tm.chol_s, rest);
    return 0;
}
