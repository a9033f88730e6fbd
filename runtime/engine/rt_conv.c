/* rt_conv.c — 2-D convolution (NCHW, PyTorch semantics: cross-correlation,
 * groups, stride, zero padding, dilation) forward and both gradients, as GEMMs on
 * the micro-kernel of rt_gemm.c, without im2col.
 *
 * The kernel reads its operands through offset tables (rt_gemm_int.h), so the
 * convolution's input is read in place from a zero-padded copy of a few images:
 * A(position, tap) = in[pos_offset + tap_offset]. Then
 *
 *   forward     yT[positions x O/g] = in(positions, taps (c,ky,kx)) . wT[taps x O/g]
 *   bwd_data    the same with dy as input: each output phase (iy mod sh, ix mod sw)
 *               is a stride-1 correlation of dy with the taps that reach it
 *   bwd_filter  dwT[taps x O/g] = x(taps, positions of all images) . dyT[positions x O/g]
 *
 * Channels are the vector lanes (tiles of MR positions or taps x NR channels; the
 * filter or dy is repacked as B panels) and the results are transposed into NCHW
 * (or [O][C/g][KH][KW]) at the end of each block. For few channels or taps,
 * forward and bwd_data can instead put output positions in the lanes, reading
 * runs of padded input as B rows and the filter in place as A (jm_os_choose).
 *
 * Determinism: a result element is summed over its reduction (the taps of one
 * phase, or the positions of all images for bwd_filter) in an order fixed by the
 * shapes: taps in order, or images in steps of a size fixed by the shapes, each
 * step's positions in order; both cut into the reduction blocks of jm_rt_kblocks
 * and added one after another (or, for bwd_filter with few taps, each step's sum
 * added in step order). The blocks of output positions, the work split and the
 * tiling can depend on the team size; they do not change any element's
 * arithmetic. Each element is computed by one thread.
 */
#pragma GCC optimize("O3")
#include "rt_gemm_int.h"
#include "rt_kernels.h"
#include "rt_winograd.h"
#include <omp.h>
#include <string.h>

/* Plain-C loops that gain from wider vectors: compiled for AVX-512, x86-64-v3 and
   the baseline, the best picked when the library loads. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define JM_CV_CLONES __attribute__((target_clones("avx512f", "arch=x86-64-v3", "default")))
#else
#define JM_CV_CLONES
#endif

/* Output positions per block when several small images share one. */
#define JM_CV_NBP 256
/* Most output positions of one image per block. */
#define JM_CV_QC 1024

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

/* Scratch carving: consecutive 64-byte-aligned pieces of one per-thread buffer. */
typedef struct { char *p; int64_t used; } jm_carve;

static void *jm_take(jm_carve *c, int64_t bytes) {
    void *r = c->p ? c->p + c->used : NULL;
    c->used += (bytes + 63) / 64 * 64;
    return r;
}

/* ---------------------------------------------------------------- padded views */

/* Block of NCHW data: element (image i, channel c, row y, column x) of the block
   is p[i*img + c*plane + y*row + x]. */
typedef struct { const float *p; int64_t img, plane, row; } jm_view;

typedef struct { int64_t t, b, l, r; } jm_pads;   /* zero rows/columns around each plane */

static int jm_pads_none(jm_pads pd) { return !(pd.t | pd.b | pd.l | pd.r); }

/* d[0..n) = s[0..n): fixed-size chunks the compiler expands inline (rows are
   short, a libc call per row would cost more than the copy); the last chunk
   overlaps the previous one instead of a scalar tail. */
static inline void jm_copy_row(float *d, const float *s, int64_t n) {
    int64_t x = 0;
    if (n >= 16) {
        for (; x + 16 <= n; x += 16) __builtin_memcpy(d + x, s + x, 64);
        if (x < n) __builtin_memcpy(d + n - 16, s + n - 16, 64);
    } else if (n >= 8) {
        __builtin_memcpy(d, s, 32);
        __builtin_memcpy(d + n - 8, s + n - 8, 32);
    } else {
        for (; x < n; x++) d[x] = s[x];
    }
}

/* Copies images [n0, n0+ni), channels [c0, c0+nc) of src[.][C][H][W] into the
   interiors of dst's planes, padded by pd. The borders are not written: the
   caller zeroes dst once and they stay zero. Without padding (and !copy) the view
   is src itself and dst is unused. Compiled for three instruction sets (wider
   copies), picked at load time. */
JM_CV_CLONES
static jm_view jm_pad_block(const float *src, int64_t C, int64_t H, int64_t W, jm_pads pd,
                            int64_t n0, int64_t ni, int64_t c0, int64_t nc, float *dst, int copy) {
    if (jm_pads_none(pd) && !copy) return (jm_view){src + (n0 * C + c0) * H * W, C * H * W, H * W, W};
    int64_t Hp = H + pd.t + pd.b, Wp = W + pd.l + pd.r;
    for (int64_t i = 0; i < ni; i++)
        for (int64_t c = 0; c < nc; c++) {
            float *d = dst + (i * nc + c) * Hp * Wp + pd.t * Wp + pd.l;
            const float *s = src + ((n0 + i) * C + c0 + c) * H * W;
            if (Wp == W) {   /* no column padding: the plane is one run */
                memcpy(d, s, (size_t)(H * W) * sizeof *d);
                continue;
            }
            for (int64_t y = 0; y < H; y++, d += Wp, s += W) jm_copy_row(d, s, W);
        }
    return (jm_view){dst, nc * Hp * Wp, Hp * Wp, Wp};
}

/* ---------------------------------------------------------------- the GEMM */

/* C[M x N] (row stride ldc) = sum over k < K of A(i, k) B(k, :), A(i, k) =
   a[roff[i] + koff[k]], B(k, j) = b[boff[k] + j], in the blocks of jm_rt_kblocks (added to C
   when accumulating, and from the second block on). K == 0 gives zeros. N is
   rounded up to whole tiles: ldc and the B rows must cover that (the extra
   columns of C are scratch). `wide` picks the set's few-rows tile. */
static void jm_cv_gemm(const jm_rt_ukernel *uk, int wide, const float *a, const int64_t *roff, int64_t M,
                       const int64_t *koff, int64_t K, const float *b, const int64_t *boff, int64_t N,
                       float *c, int64_t ldc, int accumulate) {
    const int MR = wide ? uk->mr1 : uk->mr, NR = wide ? uk->nr1 : uk->nr;
    jm_rt_ukernel_fn *kern = wide ? uk->kern1 : uk->kern;
    for (int64_t ib = 0; ib < jm_rt_kblocks(K); ib++) {   /* K == 0: one empty block, zeros */
        int64_t kb = jm_rt_kstart(K, ib), kc = jm_rt_kstart(K, ib + 1) - kb;
        for (int64_t j = 0; j < N; j += NR)
            for (int64_t i = 0; i < M; i += MR)
                kern(kc, a, roff + i, koff + kb, b + j, boff + kb, c + i * ldc + j, ldc, 1,
                     (int)jm_rt_min(MR, M - i), NR, accumulate || kb > 0);
    }
}

/* ------------------------------------------- output-stationary: fwd, bwd_data */

/* One phase: positions q = qy*Qw + qx, written to output (oy0 + osy*qy, ox0 + osx*qx),
   read at input offset qy*isy*row + qx*isx; taps [k0, k0+K) of the tap tables. */
typedef struct {
    int64_t Qh, Qw, oy0, ox0, osy, osx, isy, isx, k0, K;
} jm_phase;

/* A convolution seen from its outputs: out[N][Cout][OH][OW] from in[N][Cin][H][W]
   (zero-padded by pd), in G groups. Tap k of a phase reads the input at koff[k]
   (from a position's base, within the group's channels) and the filter at
   w[wrow(co) + wkoff[k]] for output channel co of the group. Two ways to tile:
     lanes = channels: rows of the GEMM are output positions, B = the filter packed
       as [tap][channel] (B, ldb); results are transposed into NCHW;
     lanes = positions (stride-1 phases only): rows are output channels read from
       the filter in place, B rows are runs of padded input, every position of the
       padded width computed (the ones past the row end are dropped).
   The second suits few channels or taps, the first everything else. */
typedef struct {
    const float *in;
    int64_t N, Cin, H, W;
    jm_pads pd;
    float *out;
    int64_t Cout, OH, OW, G, CinG, CoutG;
    int64_t nph, Ktot;
    jm_phase *ph;                    /* NULL while planning bwd_data: see jm_os_phase */
    const jm_cv *v;
    int64_t *koff, *wkoff, *kld;     /* kld[k] = k*ldb */
    const float *w;
    int64_t wgrp, wch;               /* filter row of (g, co): g*wgrp + co*wch */
    int lanes_pos, wide;
    float *B;
    int64_t ldb;
} jm_ostat;

static int64_t jm_os_plane(const jm_ostat *P) { return (P->H + P->pd.t + P->pd.b) * (P->W + P->pd.l + P->pd.r); }
static int64_t jm_os_row(const jm_ostat *P) { return P->W + P->pd.l + P->pd.r; }
static int64_t jm_ph_Q(const jm_phase *f) { return f->Qh * f->Qw; }

static jm_phase jm_bd_phase(const jm_cv *v, int64_t ry, int64_t rx);

/* Phase f; before bwd_data's tables exist, computed from the shapes (k0 = 0). */
static jm_phase jm_os_phase(const jm_ostat *P, int64_t f) {
    return P->ph ? P->ph[f] : jm_bd_phase(P->v, f / P->v->sw, f % P->v->sw);
}

/* out[n][g*CoutG + co][position q] = cT[(i*nq + q - qa)*ldc + co] for the block's
   images i and positions [qa, qb) of phase f. */
static void jm_os_scatter(const jm_ostat *P, const jm_rt_ukernel *uk, const jm_phase *f, int64_t g,
                          int64_t na, int64_t nb, int64_t qa, int64_t qb, const float *cT, int64_t ldc) {
    int64_t nq = qb - qa, OHW = P->OH * P->OW;
    int dense = f->osy == 1 && f->osx == 1 && f->oy0 == 0 && f->ox0 == 0 && f->Qw == P->OW;
    for (int64_t i = 0; i < nb - na; i++) {
        float *o = P->out + ((na + i) * P->Cout + g * P->CoutG) * OHW;
        if (dense) {
            uk->transpose(cT + i * nq * ldc, ldc, o + qa, OHW, nq, P->CoutG);
            continue;
        }
        for (int64_t co = 0; co < P->CoutG; co++) {
            const float *s = cT + i * nq * ldc + co;
            int64_t qy = qa / f->Qw, qx = qa % f->Qw;
            for (int64_t q = 0; q < nq; q++) {
                o[co * OHW + (f->oy0 + f->osy * qy) * P->OW + f->ox0 + f->osx * qx] = s[q * ldc];
                if (++qx == f->Qw) qx = 0, qy++;
            }
        }
    }
}

/* dense[pos(q)*Cout + co] = cT[(q - qa)*ldc + co] for q in [qa, qa+nq), co < CoutG. */
JM_CV_CLONES
static void jm_os_rows_to_dense(const jm_ostat *P, const jm_phase *f, int64_t qa, int64_t nq,
                                const float *cT, int64_t ldc, float *dense) {
    int64_t qy = qa / f->Qw, qx = qa % f->Qw;
    for (int64_t q = 0; q < nq; q++) {
        float *restrict d = dense + ((f->oy0 + f->osy * qy) * P->OW + f->ox0 + f->osx * qx) * P->Cout;
        const float *restrict src = cT + q * ldc;
        for (int64_t co = 0; co < P->CoutG; co++) d[co] = src[co];
        if (++qx == f->Qw) qx = 0, qy++;
    }
}

/* Lanes = channels: positions [qa, qb) of phase f for images [na, nb) (view v).
   With `dense` (several phases, by images), the rows of cT are copied to their
   output positions in dense[i][OH*OW][Cout], transposed later as a whole. */
static void jm_os_block_ch(const jm_ostat *P, const jm_rt_ukernel *uk, jm_view v, int64_t na, int64_t nb,
                           const jm_phase *f, int64_t qa, int64_t qb, int64_t *roff, float *cT, float *dense) {
    int64_t np = 0, ldc = P->ldb, nq = qb - qa, OHW = P->OH * P->OW;
    for (int64_t i = 0; i < nb - na; i++) {
        int64_t qy = qa / f->Qw, qx = qa % f->Qw;
        for (int64_t q = qa; q < qb; q++) {
            roff[np++] = i * v.img + qy * f->isy * v.row + qx * f->isx;
            if (++qx == f->Qw) qx = 0, qy++;
        }
    }
    for (int64_t g = 0; g < P->G; g++) {
        jm_cv_gemm(uk, 0, v.p + g * P->CinG * v.plane, roff, np, P->koff + f->k0, f->K,
                   P->B + (g * P->Ktot + f->k0) * P->ldb, P->kld, P->CoutG, cT, ldc, 0);
        if (!dense) {
            jm_os_scatter(P, uk, f, g, na, nb, qa, qb, cT, ldc);
            continue;
        }
        for (int64_t i = 0; i < nb - na; i++)
            jm_os_rows_to_dense(P, f, qa, nq, cT + i * nq * ldc, ldc, dense + i * OHW * P->Cout + g * P->CoutG);
    }
}

/* Lanes = positions: rows [ya, yb) of phase f (isx == isy == 1) of image n, whose
   padded copy is v (with readable slack after it). */
static void jm_os_block_pos(const jm_ostat *P, const jm_rt_ukernel *uk, jm_view v, int64_t n,
                            const jm_phase *f, int64_t ya, int64_t yb, int64_t *roff, float *grid, int64_t ldg) {
    int64_t ncols = (yb - ya) * v.row, OHW = P->OH * P->OW;
    if (f->K == 0) {   /* no taps reach this phase (strided bwd_data): zeros, no GEMM */
        for (int64_t c = 0; c < P->Cout; c++)
            for (int64_t qy = ya; qy < yb; qy++) {
                float *d = P->out + (n * P->Cout + c) * OHW + (f->oy0 + f->osy * qy) * P->OW + f->ox0;
                for (int64_t qx = 0; qx < f->Qw; qx++) d[qx * f->osx] = 0;
            }
        return;
    }
    for (int64_t g = 0; g < P->G; g++) {
        for (int64_t co = 0; co < P->CoutG; co++) roff[co] = g * P->wgrp + co * P->wch;
        jm_cv_gemm(uk, P->wide, P->w, roff, P->CoutG, P->wkoff + f->k0, f->K,
                   v.p + g * P->CinG * v.plane + ya * v.row, P->koff + f->k0, ncols, grid, ldg, 0);
        for (int64_t co = 0; co < P->CoutG; co++) {
            float *o = P->out + (n * P->Cout + g * P->CoutG + co) * OHW;
            for (int64_t qy = ya; qy < yb; qy++) {
                const float *s = grid + co * ldg + (qy - ya) * v.row;
                float *d = o + (f->oy0 + f->osy * qy) * P->OW + f->ox0;
                if (f->osx == 1) memcpy(d, s, (size_t)f->Qw * sizeof *d);
                else
                    for (int64_t qx = 0; qx < f->Qw; qx++) d[qx * f->osx] = s[qx];
            }
        }
    }
}

/* How a team shares an ostat convolution. by_image: thread t takes a run of
   images, ni at a time (then each image's epilogue runs on its thread as soon as
   it is done); otherwise units (image, phase, chunk of positions) are shared out
   and the epilogues run after a barrier, image n on thread n % nth. With lanes =
   positions a chunk is `rows` whole rows of a phase. */
typedef struct { int by_image; int64_t ni, chunk, maxQ, Qtot, maxQw, maxQh; } jm_os_split;

static jm_os_split jm_os_split_of(const jm_ostat *P, int nth, int MR) {
    jm_os_split s = {0, 1, JM_CV_QC, 0, 0, 1, 0};
    for (int64_t f = 0; f < P->nph; f++) {
        jm_phase ph = jm_os_phase(P, f);
        s.maxQ = jm_rt_max(s.maxQ, jm_ph_Q(&ph));
        s.Qtot += jm_ph_Q(&ph);
        s.maxQw = jm_rt_max(s.maxQw, ph.Qw);
        s.maxQh = jm_rt_max(s.maxQh, ph.Qh);
    }
    s.by_image = P->N >= nth && (P->N % nth == 0 || P->N >= 4 * nth);
    if (s.by_image) {
        if (!P->lanes_pos && s.maxQ > 0 && s.maxQ < JM_CV_NBP) s.ni = jm_rt_max(1, jm_rt_min(JM_CV_NBP / s.maxQ, P->N / nth));
    } else {   /* about four units per thread */
        int64_t want = (P->N * s.Qtot + 4 * nth - 1) / (4 * nth);
        s.chunk = jm_rt_max(MR, jm_rt_min(JM_CV_QC, jm_rt_roundup(want, MR)));
    }
    if (P->lanes_pos) s.chunk = jm_rt_max(1, s.chunk / s.maxQw) * s.maxQw;   /* whole rows of every phase */
    return s;
}

/* Positions of a chunk [qa, qb) of phase f: with lanes = positions, rows. */
static int64_t jm_os_units(const jm_ostat *P, const jm_phase *f, jm_os_split s) {
    int64_t per = P->lanes_pos ? s.chunk / s.maxQw : s.chunk, len = P->lanes_pos ? f->Qh : jm_ph_Q(f);
    return (len + per - 1) / per;
}

/* The per-thread scratch of the blocks: positions or channel rows, padded images
   (with slack for the lanes-past-the-end of the last one), transposed outputs. */
typedef struct { int64_t roff, pad, out, ldg, dense; } jm_os_scr;

static jm_os_scr jm_os_scratch(const jm_ostat *P, const jm_rt_ukernel *uk, jm_os_split s) {
    jm_os_scr r;
    int64_t row = jm_os_row(P), nr = P->wide ? uk->nr1 : uk->nr;
    if (P->lanes_pos) {
        int64_t rows = jm_rt_min(s.chunk / s.maxQw, s.maxQh);   /* rows of a unit */
        r.ldg = jm_rt_roundup(rows * row, nr) + 16;
        r.roff = P->CoutG + JM_RT_MAX_MR;
        r.pad = P->Cin * jm_os_plane(P) + 2 * row + 2 * nr;   /* the slack of jm_os_pad */
        r.dense = 0;
        r.out = P->CoutG * r.ldg;
    } else {
        r.ldg = P->ldb;
        r.roff = jm_rt_max(s.ni * s.maxQ, jm_rt_min(s.maxQ, s.chunk)) + JM_RT_MAX_MR;
        r.pad = jm_pads_none(P->pd) ? 0 : s.ni * P->Cin * jm_os_plane(P);
        r.out = r.roff * P->ldb;
        r.dense = s.by_image && P->nph > 1 ? s.ni * P->OH * P->OW * P->Cout : 0;
    }
    return r;
}

static int64_t jm_os_scratch_bytes(jm_os_scr r) { return r.roff * 8 + r.pad * 4 + r.out * 4 + r.dense * 4 + 4 * 64; }

/* Padded copy of images [n, n+ni). Lanes = positions read up to `slack` floats
   past the images (lanes past the end, dropped): without padding the input is
   read in place when the following images cover that, else copied (the scratch
   has the slack). */
static jm_view jm_os_pad(const jm_ostat *P, const jm_rt_ukernel *uk, int64_t n, int64_t ni, float *xpad) {
    int64_t slack = 2 * jm_os_row(P) + 2 * (P->wide ? uk->nr1 : uk->nr);
    int copy = P->lanes_pos && (P->N - n - ni) * P->Cin * P->H * P->W < slack;
    return jm_pad_block(P->in, P->Cin, P->H, P->W, P->pd, n, ni, 0, P->Cin, xpad, copy);
}

static void jm_os_unit(const jm_ostat *P, const jm_rt_ukernel *uk, jm_os_split s, jm_os_scr r, jm_view v,
                       int64_t na, int64_t nb, const jm_phase *f, int64_t u, int64_t *roff, float *out, float *dense) {
    if (P->lanes_pos) {
        int64_t per = s.chunk / s.maxQw;
        jm_os_block_pos(P, uk, v, na, f, u * per, jm_rt_min(f->Qh, (u + 1) * per), roff, out, r.ldg);
    } else {
        jm_os_block_ch(P, uk, v, na, nb, f, u * s.chunk, jm_rt_min(jm_ph_Q(f), (u + 1) * s.chunk), roff, out, dense);
    }
}

/* All phases of images [na, nb) on this thread; with a dense buffer, phases
   without taps are zero and skipped, and the images are transposed at the end. */
static void jm_os_images(const jm_ostat *P, const jm_rt_ukernel *uk, jm_os_split s, jm_os_scr r, jm_view v,
                         int64_t na, int64_t nb, int64_t *roff, float *out, float *dense) {
    int64_t OHW = P->OH * P->OW, zero = 0;
    for (int64_t f = 0; f < P->nph; f++) zero |= P->ph[f].K == 0;
    if (dense && zero) memset(dense, 0, (size_t)((nb - na) * OHW * P->Cout) * sizeof *dense);
    if (P->lanes_pos && zero)   /* the phases without taps stay zero; the others overwrite their positions */
        memset(P->out + na * P->Cout * OHW, 0, (size_t)((nb - na) * P->Cout * OHW) * sizeof *P->out);
    for (int64_t f = 0; f < P->nph; f++) {
        if ((dense || P->lanes_pos) && P->ph[f].K == 0) continue;
        for (int64_t u = 0; u < jm_os_units(P, &P->ph[f], s); u++) jm_os_unit(P, uk, s, r, v, na, nb, &P->ph[f], u, roff, out, dense);
    }
    if (dense)
        for (int64_t n = na; n < nb; n++)
            uk->transpose(dense + (n - na) * OHW * P->Cout, P->Cout, P->out + n * P->Cout * OHW, OHW, OHW, P->Cout);
}

static void jm_os_run(const jm_ostat *P, const jm_rt_ukernel *uk, jm_os_split s, jm_carve *cv,
                      jm_kernel_fn epi, void *const *epi_bufs, int64_t epi_items) {
    int tid = omp_get_thread_num(), nth = omp_get_num_threads();
    jm_os_scr r = jm_os_scratch(P, uk, s);
    int64_t *roff = jm_take(cv, r.roff * 8);
    float *xpad = jm_take(cv, r.pad * 4), *out = jm_take(cv, r.out * 4), *dense = r.dense ? jm_take(cv, r.dense * 4) : NULL;
    memset(xpad, 0, (size_t)r.pad * sizeof *xpad);   /* the padding borders, for the whole call */
    if (s.by_image) {
        int64_t n0, n1;
        jm_rt_split(P->N, tid, nth, &n0, &n1);
        for (int64_t na = n0; na < n1; na += s.ni) {
            int64_t nb = jm_rt_min(n1, na + s.ni);
            jm_os_images(P, uk, s, r, jm_os_pad(P, uk, na, nb - na, xpad), na, nb, roff, out, dense);
            if (epi)
                for (int64_t n = na; n < nb; n++) epi(epi_bufs, n * epi_items, (n + 1) * epi_items);
        }
        return;
    }
    int64_t upi = 0, u0, u1, padded = -1;   /* units per image */
    for (int64_t f = 0; f < P->nph; f++) upi += jm_os_units(P, &P->ph[f], s);
    jm_rt_split(P->N * upi, tid, nth, &u0, &u1);
    jm_view v = {0, 0, 0, 0};
    for (int64_t u = u0; u < u1; u++) {
        int64_t n = u / upi, rest = u % upi, f = 0;
        for (; rest >= jm_os_units(P, &P->ph[f], s); f++) rest -= jm_os_units(P, &P->ph[f], s);
        if (n != padded) v = jm_os_pad(P, uk, n, 1, xpad), padded = n;
        jm_os_unit(P, uk, s, r, v, n, n + 1, &P->ph[f], rest, roff, out, NULL);
    }
    if (epi) {
#pragma omp barrier
        for (int64_t n = tid; n < P->N; n += nth) epi(epi_bufs, n * epi_items, (n + 1) * epi_items);
    }
}

int jm_rt_conv_tiling;

/* Picks the tiling (lanes = channels or positions) by the estimated kernel work
   (padded tiles, plus a little per k step) and the cost of writing the output (a
   transpose, or row copies). Both give the same bits: the same products summed
   in the same order. */
static void jm_os_choose(jm_ostat *P, const jm_rt_ukernel *uk) {
    double ch = 0, pos = 0;
    int allowed = 1, force;
    int64_t row = jm_os_row(P);
#pragma omp atomic read
    force = jm_rt_conv_tiling;
    P->wide = force == 3 || (force == 0 && P->CoutG <= uk->mr / 2);
    int64_t pmr = P->wide ? uk->mr1 : uk->mr, pnr = P->wide ? uk->nr1 : uk->nr;
    for (int64_t f = 0; f < P->nph; f++) {
        jm_phase phf = jm_os_phase(P, f), *ph = &phf;
        double Q = (double)jm_ph_Q(ph), K = (double)ph->K;
        allowed &= ph->isy == 1 && ph->isx == 1;
        if (ph->K == 0) {   /* zeros: a memset either way */
            ch += Q * (double)P->CoutG;
            pos += Q * (double)P->CoutG;
            continue;
        }
        ch += Q * (double)jm_rt_roundup(P->CoutG, uk->nr) * (K + 2) + 4.0 * Q * (double)P->CoutG;
        pos += (double)jm_rt_roundup(P->CoutG, pmr) * (double)jm_rt_roundup(ph->Qh * row, pnr) * (K + 2) * (P->wide ? 1.3 : 1.0)
               + 2.0 * Q * (double)P->CoutG;
    }
    P->lanes_pos = allowed && (force >= 2 || (force == 0 && pos < ch));
    P->wide &= P->lanes_pos;
}

/* Zero output (no reduction terms) with the epilogue, split by images. */
static int jm_cv_zero(float *y, int64_t N, int64_t per_image, jm_kernel_fn epi, void *const *epi_bufs, int64_t epi_items) {
    int64_t n0, n1;
    jm_rt_split(N, omp_get_thread_num(), omp_get_num_threads(), &n0, &n1);
    for (int64_t n = n0; n < n1; n++) {
        memset(y + n * per_image, 0, (size_t)per_image * sizeof *y);
        if (epi) epi(epi_bufs, n * epi_items, (n + 1) * epi_items);
    }
#pragma omp barrier
    return 0;
}

/* Scratch shared by fwd and bwd_data: taps, kld, B (lanes = channels only). */
static int64_t jm_os_head_bytes(const jm_ostat *P) {
    return P->Ktot * 8 * 3 + (P->lanes_pos ? 0 : P->G * P->Ktot * P->ldb * 4) + 4 * 64;
}

static void jm_os_take_head(jm_ostat *P, jm_carve *cv) {
    P->koff = jm_take(cv, P->Ktot * 8);
    P->wkoff = jm_take(cv, P->Ktot * 8);
    P->kld = jm_take(cv, P->Ktot * 8);
    P->B = jm_take(cv, (P->lanes_pos ? 0 : P->G * P->Ktot * P->ldb) * 4);
    for (int64_t k = 0; k < P->Ktot; k++) P->kld[k] = k * P->ldb;
}

/* B[g][k][co] = w[g*wgrp + co*wch + wkoff[k]], zero for co >= CoutG. */
static void jm_os_pack_filter(jm_ostat *P, const jm_rt_ukernel *uk, int direct_rows) {
    if (P->lanes_pos) return;
    for (int64_t g = 0; g < P->G; g++) {
        float *Bg = P->B + g * P->Ktot * P->ldb;
        if (direct_rows)   /* wkoff[k] == k: the filter rows are [co][k] */
            uk->transpose(P->w + g * P->wgrp, P->wch, Bg, P->ldb, P->CoutG, P->Ktot);
        else
            for (int64_t k = 0; k < P->Ktot; k++)
                for (int64_t co = 0; co < P->CoutG; co++) Bg[k * P->ldb + co] = P->w[g * P->wgrp + co * P->wch + P->wkoff[k]];
        for (int64_t k = 0; k < P->Ktot; k++)
            for (int64_t co = P->CoutG; co < P->ldb; co++) Bg[k * P->ldb + co] = 0;
    }
}

/* ---------------------------------------------------------------- forward */

int jm_rt_conv2d_fwd_f32(const jm_conv_shape *s, const float *x, const float *w, float *y,
                         jm_kernel_fn epi, void *const *epi_bufs, int64_t epi_items) {
    int wino = jm_wino_use(s, 0);   /* rt_winograd.c: its tile size, or 0 */
    if (wino) return jm_wino_fwd(s, wino, x, w, y, epi, epi_bufs, epi_items);
    const jm_rt_ukernel *uk = jm_rt_ukernel_get();
    jm_cv v = jm_cv_of(s);
    int nth = omp_get_num_threads();
    if (v.N == 0 || v.OHW == 0 || v.O == 0 || v.Kg == 0)
        return jm_cv_zero(y, v.N, v.O * v.OHW, epi, epi_bufs, epi_items);
    jm_phase ph = {v.OH, v.OW, 0, 0, 1, 1, v.sh, v.sw, 0, v.Kg};
    jm_ostat P = {x, v.N, v.C, v.H, v.W, {v.ph, v.ph, v.pw, v.pw}, y, v.O, v.OH, v.OW, v.G, v.CG, v.OG,
                  1, v.Kg, &ph, &v, NULL, NULL, NULL, w, v.OG * v.Kg, v.Kg, 0, 0, NULL, jm_rt_roundup(v.OG, uk->nr)};
    jm_os_choose(&P, uk);
    jm_os_split sp = jm_os_split_of(&P, nth, uk->mr);
    jm_carve cv = {(char *)jm_rt_team_scratch(jm_os_head_bytes(&P) + jm_os_scratch_bytes(jm_os_scratch(&P, uk, sp))), 0};
    if (!cv.p) return -1;
    jm_os_take_head(&P, &cv);
    int64_t plane = jm_os_plane(&P), row = jm_os_row(&P);
    for (int64_t k = 0; k < v.Kg; k++) {   /* tap (c, ky, kx) */
        P.koff[k] = k / v.KK * plane + k % v.KK / v.KW * v.dh * row + k % v.KW * v.dw;
        P.wkoff[k] = k;
    }
    jm_os_pack_filter(&P, uk, 1);
    jm_os_run(&P, uk, sp, &cv, epi, epi_bufs, epi_items);
#pragma omp barrier
    return 0;
}

/* ---------------------------------------------------------------- bwd_data */

/* Whether kernel row k reaches output rows r (mod s) of the input gradient:
   (r + p - k*d) divisible by s; then dy row q + *off feeds output row r + s*q. */
static int jm_bd_reaches(int64_t r, int64_t k, int64_t s, int64_t p, int64_t d, int64_t *off) {
    int64_t t = r + p - k * d;
    if (t % s) return 0;
    *off = t / s;
    return 1;
}

/* Zero padding of dy (before, after) that keeps every phase's reads inside. */
static void jm_bd_pads(int64_t n_out, int64_t s, int64_t p, int64_t d, int64_t K, int64_t n_in,
                       int64_t *before, int64_t *after) {
    *before = 0, *after = 0;
    for (int64_t r = 0; r < s && r < n_out; r++) {
        int64_t Q = (n_out - r + s - 1) / s, off;
        for (int64_t k = 0; k < K; k++)
            if (jm_bd_reaches(r, k, s, p, d, &off)) {
                *before = jm_rt_max(*before, -off);
                *after = jm_rt_max(*after, Q - 1 + off - (n_in - 1));
            }
    }
}

/* Phases (ry, rx) of dx and their taps (o, ky, kx): input (dy) and filter offsets. */
static void jm_bd_setup(const jm_cv *v, jm_ostat *P) {
    int64_t plane = jm_os_plane(P), row = jm_os_row(P), k = 0, offy, offx;
    for (int64_t ry = 0; ry < v->sh; ry++)
        for (int64_t rx = 0; rx < v->sw; rx++) {
            jm_phase *f = &P->ph[ry * v->sw + rx];
            *f = (jm_phase){ry < v->H ? (v->H - ry + v->sh - 1) / v->sh : 0, rx < v->W ? (v->W - rx + v->sw - 1) / v->sw : 0,
                            ry, rx, v->sh, v->sw, 1, 1, k, 0};
            for (int64_t o = 0; o < v->OG; o++)
                for (int64_t ky = 0; ky < v->KH; ky++)
                    for (int64_t kx = 0; kx < v->KW; kx++) {
                        if (!jm_bd_reaches(ry, ky, v->sh, v->ph, v->dh, &offy) || !jm_bd_reaches(rx, kx, v->sw, v->pw, v->dw, &offx)) continue;
                        P->koff[k] = o * plane + (offy + P->pd.t) * row + offx + P->pd.l;
                        P->wkoff[k] = o * v->Kg + ky * v->KW + kx;
                        k++;
                    }
            f->K = k - f->k0;
        }
}

/* Phase (ry, rx) of dx without its tap tables (k0 = 0): for planning. */
static jm_phase jm_bd_phase(const jm_cv *v, int64_t ry, int64_t rx) {
    int64_t off, ny = 0, nx = 0;
    for (int64_t ky = 0; ky < v->KH; ky++) ny += jm_bd_reaches(ry, ky, v->sh, v->ph, v->dh, &off);
    for (int64_t kx = 0; kx < v->KW; kx++) nx += jm_bd_reaches(rx, kx, v->sw, v->pw, v->dw, &off);
    return (jm_phase){ry < v->H ? (v->H - ry + v->sh - 1) / v->sh : 0, rx < v->W ? (v->W - rx + v->sw - 1) / v->sw : 0,
                      ry, rx, v->sh, v->sw, 1, 1, 0, v->OG * ny * nx};
}

int jm_rt_conv2d_bwd_data_f32(const jm_conv_shape *s, const float *dy, const float *w, float *dx) {
    int wino = jm_wino_use(s, 1);   /* rt_winograd.c: its tile size, or 0 */
    if (wino) return jm_wino_bwd_data(s, wino, dy, w, dx);
    const jm_rt_ukernel *uk = jm_rt_ukernel_get();
    jm_cv v = jm_cv_of(s);
    int nth = omp_get_num_threads();
    if (v.N == 0 || v.C * v.H * v.W == 0 || v.OHW == 0 || v.O == 0 || v.KK == 0)
        return jm_cv_zero(dx, v.N, v.C * v.H * v.W, NULL, NULL, 0);
    int64_t nph = v.sh * v.sw;
    jm_ostat P = {dy, v.N, v.O, v.OH, v.OW, {0, 0, 0, 0}, dx, v.C, v.H, v.W, v.G, v.OG, v.CG,
                  nph, v.OG * v.KK, NULL, &v, NULL, NULL, NULL, w, v.OG * v.Kg, v.KK, 0, 0, NULL, jm_rt_roundup(v.CG, uk->nr)};
    jm_bd_pads(v.H, v.sh, v.ph, v.dh, v.KH, v.OH, &P.pd.t, &P.pd.b);
    jm_bd_pads(v.W, v.sw, v.pw, v.dw, v.KW, v.OW, &P.pd.l, &P.pd.r);
    jm_os_choose(&P, uk);
    jm_os_split sp = jm_os_split_of(&P, nth, uk->mr);
    int64_t phb = nph * (int64_t)sizeof(jm_phase) + 64;
    jm_carve cv = {(char *)jm_rt_team_scratch(phb + jm_os_head_bytes(&P) + jm_os_scratch_bytes(jm_os_scratch(&P, uk, sp))), 0};
    if (!cv.p) return -1;
    jm_phase *phs = jm_take(&cv, phb - 64);
    jm_os_take_head(&P, &cv);
    P.ph = phs;
    jm_bd_setup(&v, &P);
    jm_os_pack_filter(&P, uk, 0);
    jm_os_run(&P, uk, sp, &cv, NULL, NULL, 0);
#pragma omp barrier
    return 0;
}

/* ---------------------------------------------------------------- bwd_filter */

/* The data of images [na, nb) for group g: x padded into xpad ([image][CG][Hp][Wp],
   interiors of channels [ca, cb) of the group only; without padding x is read in
   place) and dyT[(i*OHW + p)*ldo + o] = dy[na + i][g*OG + o][p]. */
static void jm_bf_prep(const jm_cv *v, const jm_rt_ukernel *uk, const float *x, const float *dy, int64_t g,
                       int64_t na, int64_t nb, int64_t ca, int64_t cb, jm_pads pd, float *xpad, float *dyT, int64_t ldo) {
    int64_t plane = (v->H + pd.t + pd.b) * (v->W + pd.l + pd.r);
    if (!jm_pads_none(pd))
        for (int64_t i = 0; i < nb - na; i++)
            jm_pad_block(x, v->C, v->H, v->W, pd, na + i, 1, g * v->CG + ca, cb - ca, xpad + (i * v->CG + ca) * plane, 0);
    for (int64_t i = 0; i < nb - na; i++)
        uk->transpose(dy + ((na + i) * v->O + g * v->OG) * v->OHW, v->OHW, dyT + i * v->OHW * ldo, ldo, v->OG, v->OHW);
}

/* dwT[t - r0][o] for taps [r0, r1) of group g over images [na, nb) (prepared in
   xpad, dyT), added to what is there when accumulating. */
static void jm_bf_gemm(const jm_cv *v, const jm_rt_ukernel *uk, const float *x, jm_pads pd, int64_t g, int64_t na, int64_t nb,
                       const float *xpad, const float *dyT, int64_t ldo, const int64_t *kld, int64_t *roff, int64_t r0, int64_t r1,
                       int64_t *koff, float *dwT, int accumulate) {
    jm_view xv = jm_pads_none(pd) ? (jm_view){x + (na * v->C + g * v->CG) * v->H * v->W, v->C * v->H * v->W, v->H * v->W, v->W}
                                  : (jm_view){xpad, v->CG * (v->H + pd.t + pd.b) * (v->W + pd.l + pd.r),
                                              (v->H + pd.t + pd.b) * (v->W + pd.l + pd.r), v->W + pd.l + pd.r};
    int64_t k = 0;
    for (int64_t t = r0; t < r1; t++) roff[t - r0] = t / v->KK * xv.plane + t % v->KK / v->KW * v->dh * xv.row + t % v->KW * v->dw;
    for (int64_t i = 0; i < nb - na; i++)
        for (int64_t oy = 0; oy < v->OH; oy++)
            for (int64_t ox = 0; ox < v->OW; ox++) koff[k++] = i * xv.img + oy * v->sh * xv.row + ox * v->sw;
    jm_cv_gemm(uk, 0, xv.p, roff, r1 - r0, koff, k, dyT, kld, v->OG, dwT, ldo, accumulate);
}

/* Images per step of bwd_filter's reduction (a step's positions are cut into the
   blocks of jm_rt_kblocks): a function of the shapes only. */
static int64_t jm_bf_step(const jm_cv *v) { return v->OHW ? jm_rt_max(1, JM_RT_KC / v->OHW) : 1; }

/* Few taps (G * ceil(Kg / MR) <= 4: too few tap panels to share out): each image
   step's sum over all taps is a partial result of its own, and dw is their sum in
   step order. Steps are shared out among the threads (each prepares only its own
   images), partials stay in their thread's scratch, and after a barrier the team
   adds them up, each thread a share of dw. Same rounding on any team size. */
static int jm_bf_partials(const jm_cv *v, const jm_rt_ukernel *uk, const float *x, const float *dy, float *dw) {
    const int NR = uk->nr;
    int tid = omp_get_thread_num(), nth = omp_get_num_threads();
    int64_t ldo = jm_rt_roundup(v->OG, NR), ni = jm_bf_step(v), np_max = ni * v->OHW;
    int64_t steps = v->OHW ? (v->N + ni - 1) / ni : 0, per = (steps + nth - 1) / nth, part = v->G * v->Kg * ldo, c0, c1;
    jm_pads pd = {v->ph, v->ph, v->pw, v->pw};
    int64_t padn = jm_pads_none(pd) ? 0 : ni * v->CG * (v->H + 2 * v->ph) * (v->W + 2 * v->pw);
    int64_t bytes = (v->Kg + JM_RT_MAX_MR) * 8 + 2 * np_max * 8 + padn * 4 + np_max * ldo * 4 + per * part * 4 + ldo * 4 + 7 * 64;
    jm_carve cv = {(char *)jm_rt_team_scratch(bytes), 0};
    if (!cv.p) return -1;
    int64_t *roff = jm_take(&cv, (v->Kg + JM_RT_MAX_MR) * 8), *koff = jm_take(&cv, np_max * 8), *kld = jm_take(&cv, np_max * 8);
    float *xpad = jm_take(&cv, padn * 4), *dyT = jm_take(&cv, np_max * ldo * 4), *parts = jm_take(&cv, per * part * 4);
    float *sum = jm_take(&cv, ldo * 4);
    memset(xpad, 0, (size_t)padn * sizeof *xpad);
    for (int64_t k = 0; k < np_max; k++) {
        kld[k] = k * ldo;
        for (int64_t o = v->OG; o < ldo; o++) dyT[k * ldo + o] = 0;
    }
    jm_rt_split(steps, tid, nth, &c0, &c1);
    for (int64_t c = c0; c < c1; c++) {
        int64_t na = c * ni, nb = jm_rt_min(v->N, na + ni);
        for (int64_t g = 0; g < v->G; g++) {
            jm_bf_prep(v, uk, x, dy, g, na, nb, 0, v->CG, pd, xpad, dyT, ldo);
            jm_bf_gemm(v, uk, x, pd, g, na, nb, xpad, dyT, ldo, kld, roff, 0, v->Kg, koff, parts + (c - c0) * part + g * v->Kg * ldo, 0);
        }
    }
#pragma omp barrier
    /* dw row (g, t) = sum over steps, in order, of the partials' rows (g, t) */
    int64_t r0, r1;
    jm_rt_split(v->G * v->Kg, tid, nth, &r0, &r1);
    for (int64_t r = r0; r < r1; r++) {
        int64_t g = r / v->Kg, t = r % v->Kg;
        for (int64_t o = 0; o < v->OG; o++) sum[o] = 0;
        for (int owner = 0; owner < nth; owner++) {
            int64_t a0, a1;
            jm_rt_split(steps, owner, nth, &a0, &a1);
            const float *pp = (const float *)((char *)jm_rt_workspace_peek(owner) + ((char *)parts - cv.p));
            for (int64_t c = a0; c < a1; c++) {
                const float *row = pp + (c - a0) * part + r * ldo;
                for (int64_t o = 0; o < v->OG; o++) sum[o] += row[o];
            }
        }
        for (int64_t o = 0; o < v->OG; o++) dw[(g * v->OG + o) * v->Kg + t] = sum[o];
    }
#pragma omp barrier
    return 0;
}

/* Reduction partials of bwd_filter's main path: the image steps are cut into
   JM_BF_R contiguous runs (fewer when there are fewer steps), each summed on its
   own, and dw is their sum in run order. A function of the shapes only. */
#define JM_BF_R 2

/* Work units are (run h, group g, panel of MR taps), in that order, shared out in
   contiguous ranges: on two threads each sums one run of images over all taps,
   with no data shared and no barrier until the end. A thread prepares (pads x,
   transposes dy) only the images and channels of its units, in its own scratch,
   and keeps its units' partial rows of dw^T there; after a barrier the team adds
   the runs' partials in order, each thread a share of dw's taps. The rounding is
   the same on any team size. */
int jm_rt_conv2d_bwd_filter_f32(const jm_conv_shape *s, const float *x, const float *dy, float *dw) {
    const jm_rt_ukernel *uk = jm_rt_ukernel_get();
    const int MR = uk->mr, NR = uk->nr;
    jm_cv v = jm_cv_of(s);
    int tid = omp_get_thread_num(), nth = omp_get_num_threads();
    if (v.O == 0 || v.Kg == 0) {
#pragma omp barrier
        return 0;
    }
    int64_t ldo = jm_rt_roundup(v.OG, NR), pan = (v.Kg + MR - 1) / MR, u0, u1;
    if (v.G * pan <= 4) return jm_bf_partials(&v, uk, x, dy, dw);
    jm_pads pd = {v.ph, v.ph, v.pw, v.pw};
    int64_t plane = (v.H + 2 * v.ph) * (v.W + 2 * v.pw), ni = jm_bf_step(&v);
    int64_t steps = v.OHW ? (v.N + ni - 1) / ni : 0, R = jm_rt_max(1, jm_rt_min(JM_BF_R, steps));
    int64_t units = R * v.G * pan, np_max = ni * v.OHW;
    int64_t per = (units + nth - 1) / nth;   /* most units of any thread */
    jm_rt_split(units, tid, nth, &u0, &u1);
    int64_t padn = jm_pads_none(pd) ? 0 : ni * v.CG * plane, tb = jm_rt_min(16, v.Kg);
    int64_t bytes = (MR * per + JM_RT_MAX_MR) * 8 + 2 * np_max * 8 + padn * 4 + np_max * ldo * 4 + per * MR * ldo * 4
                    + tb * ldo * 4 + 7 * 64;
    jm_carve cv = {(char *)jm_rt_team_scratch(bytes), 0};
    if (!cv.p) return -1;
    int64_t *roff = jm_take(&cv, (MR * per + JM_RT_MAX_MR) * 8), *koff = jm_take(&cv, np_max * 8), *kld = jm_take(&cv, np_max * 8);
    float *xpad = jm_take(&cv, padn * 4), *dyT = jm_take(&cv, np_max * ldo * 4), *dwT = jm_take(&cv, per * MR * ldo * 4);
    float *sum = jm_take(&cv, tb * ldo * 4);
    memset(xpad, 0, (size_t)padn * sizeof *xpad);   /* the padding borders, for the whole call */
    for (int64_t k = 0; k < np_max; k++) {   /* B row k of dyT; the lanes past OG stay zero */
        kld[k] = k * ldo;
        for (int64_t o = v.OG; o < ldo; o++) dyT[k * ldo + o] = 0;
    }
    for (int64_t u = u0; u < u1;) {
        int64_t h = u / (v.G * pan), g = u / pan % v.G, pa = u % pan, pb = jm_rt_min(pan, pa + (u1 - u));   /* panels [pa, pb) */
        int64_t r0 = pa * MR, r1 = jm_rt_min(v.Kg, pb * MR), s0, s1;
        float *d = dwT + (u - u0) * MR * ldo;
        jm_rt_split(steps, (int)h, (int)R, &s0, &s1);
        if (s0 == s1) memset(d, 0, (size_t)((r1 - r0) * ldo) * sizeof *d);
        for (int64_t st = s0; st < s1; st++) {
            int64_t na = st * ni, nb = jm_rt_min(v.N, na + ni);
            jm_bf_prep(&v, uk, x, dy, g, na, nb, r0 / v.KK, (r1 - 1) / v.KK + 1, pd, xpad, dyT, ldo);
            jm_bf_gemm(&v, uk, x, pd, g, na, nb, xpad, dyT, ldo, kld, roff, r0, r1, koff, d, st > s0);
        }
        u += pb - pa;
    }
#pragma omp barrier
    /* dw[g*OG + o][t] = sum over runs h, in order, of the partial rows (h, g, t) */
    int64_t t0, t1;
    jm_rt_split(v.G * pan, tid, nth, &t0, &t1);
    for (int64_t q = t0 * MR; q < jm_rt_min(v.G * v.Kg, t1 * MR);) {   /* q: row (g, t) */
        int64_t g = q / v.Kg, t = q % v.Kg, nt = jm_rt_min(tb, v.Kg - t);
        nt = jm_rt_min(nt, jm_rt_min(v.G * v.Kg, t1 * MR) - q);
        for (int64_t h = 0; h < R; h++)
            for (int64_t i = 0; i < nt; i++) {
                int64_t uu = (h * v.G + g) * pan + (t + i) / MR, owner = 0, a0 = 0, a1 = 0;
                for (; owner < nth; owner++) {
                    jm_rt_split(units, (int)owner, nth, &a0, &a1);
                    if (uu < a1) break;
                }
                const float *row = (const float *)((char *)jm_rt_workspace_peek((int)owner) + ((char *)dwT - cv.p))
                                   + ((uu - a0) * MR + (t + i) % MR) * ldo;
                float *sr = sum + i * ldo;
                if (h == 0) memcpy(sr, row, (size_t)v.OG * sizeof *sr);
                else
                    for (int64_t o = 0; o < v.OG; o++) sr[o] += row[o];
            }
        uk->transpose(sum, ldo, dw + g * v.OG * v.Kg + t, v.Kg, nt, v.OG);
        q += nt;
    }
#pragma omp barrier
    return 0;
}
