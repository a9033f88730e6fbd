/* rt_conv.c — 2-D convolution (NCHW, PyTorch semantics) forward and both
 * gradients, as GEMMs on the micro-kernel of rt_gemm.c.
 *
 *   forward      y_g[OG x cols] = w_g[OG x Kg] . col_g[Kg x cols]     (Kg = CG*KH*KW)
 *   bwd_data     stride 1: the forward convolution of dy with the flipped,
 *                transposed filter; otherwise dcol = w_g^T . dy_g, then col2im
 *   bwd_filter   dw_g^T[Kg x OG] = col_g[Kg x (N*OH*OW)] . dy_g^T
 *
 * col is the im2col matrix, built a block at a time in per-thread scratch: its
 * columns run over (image, output position), across image boundaries, so small
 * images still fill whole kernel tiles. The reduction of forward and bwd_data is
 * over Kg (or O) and of bwd_filter over all images; both are blocked in JM_RT_KC
 * steps counted from zero, so the rounding depends on the shapes only. Every
 * output element is computed by one thread.
 */
#pragma GCC optimize("O3")
#include "rt_gemm_int.h"
#include "rt_kernels.h"
#include <omp.h>
#include <string.h>

/* Columns of C per block: the im2col block (KC x NB floats) and its output stay in L2. */
#define JM_CV_NB 256

typedef struct {
    int64_t N, C, H, W, O, KH, KW, OH, OW;
    int64_t sh, sw, ph, pw, dh, dw, G;
    int64_t CG, OG, KK, Kg, OHW;
} jm_cv;

static jm_cv jm_cv_of(const jm_conv_shape *s) {
    jm_cv v = {s->N, s->C, s->H, s->W, s->O, s->KH, s->KW, s->OH, s->OW,
               s->at[0], s->at[1], s->at[2], s->at[3], s->at[4], s->at[5], s->at[6],
               0, 0, 0, 0, 0};
    v.CG = v.C / v.G;
    v.OG = v.O / v.G;
    v.KK = v.KH * v.KW;
    v.Kg = v.CG * v.KK;
    v.OHW = v.OH * v.OW;
    return v;
}

/* Output positions o in [0, n_out) whose input coordinate o*s + off lies in [0, n_in): [*lo, *hi). */
static void jm_cv_valid(int64_t n_in, int64_t n_out, int64_t s, int64_t off, int64_t *lo, int64_t *hi) {
    int64_t l = off >= 0 ? 0 : (-off + s - 1) / s;
    int64_t h = n_in - 1 - off < 0 ? 0 : (n_in - 1 - off) / s + 1;
    *lo = jm_rt_min(l, n_out);
    *hi = jm_rt_max(*lo, jm_rt_min(h, n_out));
}

/* d[ox - a] = row[ox*sw + off] for ox in [a, b), zero outside the valid [lo, hi)
   (row == NULL: the whole input row is padding). */
static inline void jm_cv_fill(float *restrict d, const float *restrict row, int64_t a, int64_t b,
                              int64_t lo, int64_t hi, int64_t sw, int64_t off) {
    if (!row) {
        for (int64_t o = a; o < b; o++) d[o - a] = 0;
        return;
    }
    int64_t l = jm_rt_min(jm_rt_max(a, lo), b), h = jm_rt_max(l, jm_rt_min(b, hi));
    for (int64_t o = a; o < l; o++) d[o - a] = 0;
    if (sw == 1) {
        for (int64_t o = l; o < h; o++) d[o - a] = row[o + off];
    } else {
        for (int64_t o = l; o < h; o++) d[o - a] = row[o * sw + off];
    }
    for (int64_t o = h; o < b; o++) d[o - a] = 0;
}

/* im2col of group g: dst[(r - r0)*ld + (j - j0)] = col(r, j) for rows r in [r0, r1)
   (r = (c*KH + ky)*KW + kx) and global columns j in [j0, j1) (j = n*OH*OW + oy*OW + ox);
   columns j1 - j0 .. width-1 of each row are zeroed. */
static void jm_cv_im2col(const jm_cv *v, const float *x, int64_t g, int64_t r0, int64_t r1,
                         int64_t j0, int64_t j1, float *dst, int64_t ld, int64_t width) {
    for (int64_t r = r0; r < r1; r++) {
        int64_t c = r / v->KK, ky = r % v->KK / v->KW, kx = r % v->KW;
        int64_t lo, hi, xoff = kx * v->dw - v->pw;
        jm_cv_valid(v->W, v->OW, v->sw, xoff, &lo, &hi);
        float *d = dst + (r - r0) * ld;
        int64_t j = j0, n = j0 / v->OHW, p = j0 % v->OHW, oy = p / v->OW, ox = p % v->OW;
        const float *plane = x + ((n * v->C + g * v->CG + c) * v->H) * v->W;
        while (j < j1) {
            int64_t len = jm_rt_min(v->OW - ox, j1 - j), iy = oy * v->sh - v->ph + ky * v->dh;
            const float *row = iy >= 0 && iy < v->H ? plane + iy * v->W : NULL;
            jm_cv_fill(d, row, ox, ox + len, lo, hi, v->sw, xoff);
            d += len, j += len, ox += len;
            if (ox == v->OW) {
                ox = 0;
                if (++oy == v->OH) oy = 0, plane += v->C * v->H * v->W;
            }
        }
        for (int64_t t = j1 - j0; t < width; t++) dst[(r - r0) * ld + t] = 0;
    }
}

/* ---------------------------------------------------------------- forward */

/* The filter as GEMM A operand: group g's [rows of output channels] x [Kg]
   matrix is a + g*ga with row stride lda. */
typedef struct { const float *a; int64_t lda, ga; } jm_cv_filter;

/* Row stride of the per-thread column and output blocks (a block may be up to
   NB + NR wide; the extra 16 floats keep rows off 4 KiB aliasing). */
static int64_t jm_cv_ld(const jm_rt_ukernel *uk) { return JM_CV_NB + 2 * uk->nr + 16; }

static int64_t jm_cv_fwd_scratch(const jm_cv *v, const jm_rt_ukernel *uk) {
    return ((int64_t)JM_RT_KC + v->O) * jm_cv_ld(uk);
}

/* Computes output columns [j0, j1) (all channels) into C (rsc between channels):
   one block of the forward GEMM. */
static void jm_cv_fwd_block(const jm_cv *v, const jm_rt_ukernel *uk, const float *x, jm_cv_filter f,
                            int64_t j0, int64_t j1, float *C, int64_t rsc, float *colbuf) {
    const int MR = uk->mr, NR = uk->nr;
    int64_t nc = j1 - j0, ld = jm_cv_ld(uk), width = jm_rt_roundup(nc, NR);
    for (int64_t g = 0; g < v->G; g++) {
        float *Cg = C + g * v->OG * rsc;
        const float *ag = f.a + g * f.ga;
        for (int64_t kb = 0; kb == 0 || kb < v->Kg; kb += JM_RT_KC) {
            int64_t kc = jm_rt_min(JM_RT_KC, v->Kg - kb);
            jm_cv_im2col(v, x, g, kb, kb + kc, j0, j1, colbuf, ld, width);
            for (int64_t i = 0; i < v->OG; i += MR)
                for (int64_t j = 0; j < nc; j += NR)
                    uk->kern(kc, ag + i * f.lda + kb, f.lda, 1, colbuf + j, ld, Cg + i * rsc + j, rsc, 1,
                             (int)jm_rt_min(MR, v->OG - i), (int)jm_rt_min(NR, nc - j), kb > 0);
        }
    }
}

/* The next block starting at column j (< end): either a run of whole images
   (multi-image blocks go through ybuf) or a piece of one image, cut into equal
   whole-panel pieces when the image is wider than a block. */
static int64_t jm_cv_block_end(const jm_cv *v, int NR, int64_t j, int64_t end) {
    int64_t n = j / v->OHW, p = j % v->OHW;
    if (p == 0 && v->OHW <= JM_CV_NB && end - j >= v->OHW) {
        int64_t ni = jm_rt_max(1, jm_rt_min(JM_CV_NB / v->OHW, (end - j) / v->OHW));
        return j + ni * v->OHW;
    }
    int64_t panels = (v->OHW + NR - 1) / NR, pieces = (v->OHW + JM_CV_NB - 1) / JM_CV_NB;
    int64_t piece = p / NR * pieces / panels;        /* the piece that holds position p */
    while ((piece + 1) * panels / pieces * NR <= p) piece++;
    int64_t pe = jm_rt_min(v->OHW, (piece + 1) * panels / pieces * NR);
    return jm_rt_min(end, n * v->OHW + pe);
}

/* Forward convolution of x (geometry v) with filter f into y, calling the
   epilogue once per image. Images are shared among threads when there are
   enough of them (then each image's epilogue runs on its thread, right after
   its last block); otherwise every thread takes a run of output columns and the
   epilogues run after a barrier, image n on thread n % nth. */
static void jm_cv_fwd_run(const jm_cv *v, const jm_rt_ukernel *uk, const float *x, jm_cv_filter f, float *y,
                          jm_kernel_fn epi, void *const *epi_bufs, int64_t epi_items, float *ws) {
    int tid = omp_get_thread_num(), nth = omp_get_num_threads();
    int by_image = v->N >= nth && (v->N % nth == 0 || v->N >= 4 * nth);
    int64_t c0, c1, ld = jm_cv_ld(uk);
    float *colbuf = ws, *ybuf = ws + (int64_t)JM_RT_KC * ld;
    if (by_image) {
        jm_rt_split(v->N, tid, nth, &c0, &c1);
        c0 *= v->OHW, c1 *= v->OHW;
    } else {
        jm_rt_split(v->N * v->OHW, tid, nth, &c0, &c1);
    }
    int64_t next_epi = c0 / jm_rt_max(v->OHW, 1);
    for (int64_t j0 = c0; j0 < c1;) {
        int64_t j1 = jm_cv_block_end(v, uk->nr, j0, c1), n = j0 / v->OHW;
        if (j1 - j0 > v->OHW) {   /* whole images: through ybuf */
            jm_cv_fwd_block(v, uk, x, f, j0, j1, ybuf, ld, colbuf);
            for (int64_t i = n; i < j1 / v->OHW; i++)
                for (int64_t o = 0; o < v->O; o++)
                    memcpy(y + (i * v->O + o) * v->OHW, ybuf + o * ld + (i - n) * v->OHW,
                           (size_t)v->OHW * sizeof *y);
        } else {
            jm_cv_fwd_block(v, uk, x, f, j0, j1, y + n * v->O * v->OHW + (j0 - n * v->OHW), v->OHW, colbuf);
        }
        j0 = j1;
        if (by_image && epi)
            for (; (next_epi + 1) * v->OHW <= j1; next_epi++) epi(epi_bufs, next_epi * epi_items, (next_epi + 1) * epi_items);
    }
    if (!by_image && epi) {
#pragma omp barrier
        for (int64_t n = tid; n < v->N; n += nth) epi(epi_bufs, n * epi_items, (n + 1) * epi_items);
    }
}

/* When the convolution has no outputs per image or no reduction terms. */
static int jm_cv_degenerate(const jm_cv *v, float *y, jm_kernel_fn epi, void *const *epi_bufs, int64_t epi_items) {
    int tid = omp_get_thread_num(), nth = omp_get_num_threads();
    int64_t n0, n1;
    jm_rt_split(v->N, tid, nth, &n0, &n1);
    for (int64_t n = n0; n < n1; n++) {
        memset(y + n * v->O * v->OHW, 0, (size_t)(v->O * v->OHW) * sizeof *y);
        if (epi) epi(epi_bufs, n * epi_items, (n + 1) * epi_items);
    }
#pragma omp barrier
    return 0;
}

int jm_rt_conv2d_fwd_f32(const jm_conv_shape *s, const float *x, const float *w, float *y,
                         jm_kernel_fn epi, void *const *epi_bufs, int64_t epi_items) {
    const jm_rt_ukernel *uk = jm_rt_ukernel_get();
    jm_cv v = jm_cv_of(s);
    if (v.OHW == 0 || v.O == 0 || v.Kg == 0) return jm_cv_degenerate(&v, y, epi, epi_bufs, epi_items);
    float *ws = jm_rt_team_scratch(jm_cv_fwd_scratch(&v, uk) * 4);
    if (!ws) return -1;
    jm_cv_fwd_run(&v, uk, x, (jm_cv_filter){w, v.Kg, v.OG * v.Kg}, y, epi, epi_bufs, epi_items, ws);
#pragma omp barrier
    return 0;
}

/* ---------------------------------------------------------------- bwd_data */

/* The transposed convolution as a forward one (stride 1 only): dx = conv(dy, w')
   with w'[c][o][ky][kx] = w[o][c][KH-1-ky][KW-1-kx] (per group) and padding
   d*(K-1) - p. Needs that padding to be >= 0. */
static int jm_cv_transposed(const jm_cv *v, jm_cv *t) {
    if (v->sh != 1 || v->sw != 1) return 0;
    *t = (jm_cv){v->N, v->O, v->OH, v->OW, v->C, v->KH, v->KW, v->H, v->W,
                 1, 1, v->dh * (v->KH - 1) - v->ph, v->dw * (v->KW - 1) - v->pw, v->dh, v->dw, v->G,
                 v->OG, v->CG, v->KK, v->OG * v->KK, v->H * v->W};
    return t->ph >= 0 && t->pw >= 0;
}

/* wt[C][OG*KK]: row c of group g holds w[g*OG + o][c - g*CG][flipped kernel]. */
static void jm_cv_flip_filter(const jm_cv *v, const float *w, float *wt) {
    for (int64_t c = 0; c < v->C; c++) {
        int64_t g = c / v->CG, cl = c % v->CG;
        for (int64_t o = 0; o < v->OG; o++) {
            const float *src = w + ((g * v->OG + o) * v->CG + cl) * v->KK;
            float *dst = wt + (c * v->OG + o) * v->KK;
            for (int64_t k = 0; k < v->KK; k++) dst[k] = src[v->KK - 1 - k];
        }
    }
}

/* dx[n][g*CG + c] for c in [c0, c1) += the dcol rows of those channels (image il
   of the block): a scatter in (ky, kx) order, so each dx element sums its terms
   in a fixed order. The planes must be zero beforehand. */
static void jm_cv_col2im(const jm_cv *v, const float *dcol, int64_t ldd, int64_t il, float *dxn,
                         int64_t g, int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; c++) {
        float *plane = dxn + (g * v->CG + c) * v->H * v->W;
        for (int64_t kk = 0; kk < v->KK; kk++) {
            int64_t ky = kk / v->KW, kx = kk % v->KW, lo, hi, ylo, yhi;
            int64_t xoff = kx * v->dw - v->pw, yoff = ky * v->dh - v->ph;
            jm_cv_valid(v->W, v->OW, v->sw, xoff, &lo, &hi);
            jm_cv_valid(v->H, v->OH, v->sh, yoff, &ylo, &yhi);
            const float *src = dcol + ((c - c0) * v->KK + kk) * ldd + il * v->OHW;
            for (int64_t oy = ylo; oy < yhi; oy++) {
                float *row = plane + (oy * v->sh + yoff) * v->W;
                const float *s = src + oy * v->OW;
                for (int64_t ox = lo; ox < hi; ox++) row[ox * v->sw + xoff] += s[ox];
            }
        }
    }
}

/* Images per GEMM block of the col2im path: enough columns to fill tiles, but
   enough blocks to keep every thread busy. */
static int64_t jm_cv_bd_images(const jm_cv *v, int nth) {
    int64_t ni = jm_rt_max(1, JM_CV_NB / v->OHW);
    int64_t per_thread = (v->N + nth - 1) / nth;
    return jm_rt_max(1, jm_rt_min(ni, per_thread));
}

static int64_t jm_cv_bd_scratch(const jm_cv *v, const jm_rt_ukernel *uk, int nth) {
    int64_t cols = jm_rt_roundup(jm_cv_bd_images(v, nth) * v->OHW, uk->nr) + 16;
    return (v->OG + v->Kg) * cols;
}

/* dx through dcol = w_g^T . dy_g and col2im. Work units: blocks of images, and
   when there are fewer images than threads, channel ranges of each image. */
static void jm_cv_bwd_data_col2im(const jm_cv *v, const jm_rt_ukernel *uk, const float *dy, const float *w,
                                  float *dx, float *ws) {
    const int MR = uk->mr, NR = uk->nr;
    int tid = omp_get_thread_num(), nth = omp_get_num_threads();
    int64_t ni = jm_cv_bd_images(v, nth), nblk = (v->N + ni - 1) / ni;
    int64_t S = v->N >= nth ? 1 : jm_rt_min(nth, v->C), u0, u1;
    int64_t ldd = jm_rt_roundup(ni * v->OHW, NR) + 16;
    float *bbuf = ws, *dcol = ws + v->OG * ldd;
    jm_rt_split(nblk * S, tid, nth, &u0, &u1);
    for (int64_t u = u0; u < u1; u++) {
        int64_t na = u / S * ni, nb = jm_rt_min(v->N, na + ni), cols = (nb - na) * v->OHW;
        int64_t ca = u % S * v->C / S, cb = (u % S + 1) * v->C / S;
        for (int64_t n = na; n < nb; n++) memset(dx + (n * v->C + ca) * v->H * v->W, 0, (size_t)((cb - ca) * v->H * v->W) * sizeof *dx);
        for (int64_t g = ca / v->CG; g < v->G && g * v->CG < cb; g++) {
            int64_t c0 = jm_rt_max(ca, g * v->CG) - g * v->CG, c1 = jm_rt_min(cb, (g + 1) * v->CG) - g * v->CG;
            int64_t M = (c1 - c0) * v->KK;
            for (int64_t o = 0; o < v->OG; o++) {   /* B = dy_g of the block, rows padded to whole panels */
                float *d = bbuf + o * ldd;
                for (int64_t n = na; n < nb; n++)
                    memcpy(d + (n - na) * v->OHW, dy + (n * v->O + g * v->OG + o) * v->OHW, (size_t)v->OHW * sizeof *d);
                for (int64_t j = cols; j < jm_rt_roundup(cols, NR); j++) d[j] = 0;
            }
            const float *ag = w + g * v->OG * v->Kg + c0 * v->KK;   /* A(i, o) = ag[i + o*Kg] */
            for (int64_t kb = 0; kb == 0 || kb < v->OG; kb += JM_RT_KC) {
                int64_t kc = jm_rt_min(JM_RT_KC, v->OG - kb);
                for (int64_t i = 0; i < M; i += MR)
                    for (int64_t j = 0; j < cols; j += NR)
                        uk->kern(kc, ag + i + kb * v->Kg, 1, v->Kg, bbuf + kb * ldd + j, ldd, dcol + i * ldd + j, ldd, 1,
                                 (int)jm_rt_min(MR, M - i), (int)jm_rt_min(NR, cols - j), kb > 0);
            }
            for (int64_t n = na; n < nb; n++) jm_cv_col2im(v, dcol, ldd, n - na, dx + n * v->C * v->H * v->W, g, c0, c1);
        }
    }
}

int jm_rt_conv2d_bwd_data_f32(const jm_conv_shape *s, const float *dy, const float *w, float *dx) {
    const jm_rt_ukernel *uk = jm_rt_ukernel_get();
    jm_cv v = jm_cv_of(s), t;
    int nth = omp_get_num_threads();
    if (v.C * v.H * v.W == 0) {
#pragma omp barrier
        return 0;
    }
    if (v.OHW == 0 || v.O == 0 || v.KK == 0) {   /* nothing flows back */
        jm_cv z = v;
        z.O = v.C, z.OHW = v.H * v.W;
        return jm_cv_degenerate(&z, dx, NULL, NULL, 0);
    }
    if (jm_cv_transposed(&v, &t)) {
        int64_t wsz = jm_rt_roundup(v.C * t.Kg, 16);
        float *ws = jm_rt_team_scratch((wsz + jm_cv_fwd_scratch(&t, uk)) * 4);
        if (!ws) return -1;
        jm_cv_flip_filter(&v, w, ws);
        jm_cv_fwd_run(&t, uk, dy, (jm_cv_filter){ws, t.Kg, t.OG * t.Kg}, dx, NULL, NULL, 0, ws + wsz);
    } else {
        float *ws = jm_rt_team_scratch(jm_cv_bd_scratch(&v, uk, nth) * 4);
        if (!ws) return -1;
        jm_cv_bwd_data_col2im(&v, uk, dy, w, dx, ws);
    }
#pragma omp barrier
    return 0;
}

/* ---------------------------------------------------------------- bwd_filter */

/* dyT[k][o] = dy[n][g*OG + o][p] for the global columns k in [k0, k0 + kc)
   (k = n*OH*OW + p), rows padded with zeros to `width`. */
static void jm_cv_dy_transpose(const jm_cv *v, const float *dy, int64_t g, int64_t k0, int64_t kc,
                               float *dst, int64_t ld, int64_t width) {
    int64_t n = k0 / v->OHW, p = k0 % v->OHW;
    for (int64_t k = 0; k < kc;) {
        int64_t len = jm_rt_min(v->OHW - p, kc - k);
        const float *src = dy + (n * v->O + g * v->OG) * v->OHW + p;
        for (int64_t o = 0; o < v->OG; o++)
            for (int64_t q = 0; q < len; q++) dst[(k + q) * ld + o] = src[o * v->OHW + q];
        for (int64_t q = 0; q < len; q++)
            for (int64_t o = v->OG; o < width; o++) dst[(k + q) * ld + o] = 0;
        k += len, p = 0, n++;
    }
}

/* Rows of dw^T (i.e. (c, ky, kx) of one group) per work unit: one MR panel. The
   units (group, panel) are shared out in contiguous runs; each unit runs over
   every image, in order. */
int jm_rt_conv2d_bwd_filter_f32(const jm_conv_shape *s, const float *x, const float *dy, float *dw) {
    const jm_rt_ukernel *uk = jm_rt_ukernel_get();
    const int MR = uk->mr, NR = uk->nr;
    jm_cv v = jm_cv_of(s);
    int tid = omp_get_thread_num(), nth = omp_get_num_threads();
    if (v.O * v.Kg == 0) {
#pragma omp barrier
        return 0;
    }
    int64_t K = v.N * v.OHW, lda = JM_RT_KC + 16, ldb = jm_rt_roundup(v.OG, NR) + 16;
    int64_t pan = (v.Kg + MR - 1) / MR, u0, u1;
    jm_rt_split(v.G * pan, tid, nth, &u0, &u1);
    /* rows of abuf: a thread's panels within one group, at most ceil(units / nth) */
    int64_t rows = jm_rt_min(v.Kg, (v.G * pan + nth - 1) / nth * MR);
    float *ws = jm_rt_team_scratch((rows * lda + (int64_t)JM_RT_KC * ldb) * 4);
    if (!ws) return -1;
    float *abuf = ws, *bbuf = ws + rows * lda;
    if (K == 0) {
        for (int64_t u = u0; u < u1; u++)
            for (int64_t o = 0; o < v.OG; o++)
                for (int64_t i = u % pan * MR; i < jm_rt_min(v.Kg, (u % pan + 1) * MR); i++) dw[(u / pan * v.OG + o) * v.Kg + i] = 0;
        u1 = u0;
    }
    for (int64_t u = u0; u < u1;) {
        int64_t g = u / pan, pa = u % pan, pb = jm_rt_min(pan, pa + (u1 - u));   /* panels [pa, pb) of group g */
        int64_t r0 = pa * MR, r1 = jm_rt_min(v.Kg, pb * MR);
        float *dwg = dw + g * v.OG * v.Kg;   /* C(i, o) = dwg[o*Kg + i] */
        for (int64_t kb = 0; kb < K; kb += JM_RT_KC) {
            int64_t kc = jm_rt_min(JM_RT_KC, K - kb);
            jm_cv_im2col(&v, x, g, r0, r1, kb, kb + kc, abuf, lda, kc);
            jm_cv_dy_transpose(&v, dy, g, kb, kc, bbuf, ldb, jm_rt_roundup(v.OG, NR));
            for (int64_t i = r0; i < r1; i += MR)
                for (int64_t j = 0; j < v.OG; j += NR)
                    uk->kern(kc, abuf + (i - r0) * lda, lda, 1, bbuf + j, ldb, dwg + j * v.Kg + i, 1, v.Kg,
                             (int)jm_rt_min(MR, r1 - i), (int)jm_rt_min(NR, v.OG - j), kb > 0);
        }
        u += pb - pa;
    }
#pragma omp barrier
    return 0;
}
