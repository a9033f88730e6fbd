/* rt_winograd.c — Winograd F(2x2,3x3) for stride-1, dilation-1, one-group 3x3
 * convolutions: forward and the data gradient (bwd_data), any padding.
 *
 * Both are the same correlation of an input in[N][Ci][H][W] with a 3x3 filter
 * wt(co, ci, ky, kx), zero outside the input:
 *
 *   out[n][co][y][x] = sum over ci, ky, kx of in[n][ci][y + ky - pt][x + kx - pl] * wt(co, ci, ky, kx)
 *
 *   forward   in = x, wt = w[co][ci][ky][kx], (pt, pl) = the padding
 *   bwd_data  in = dy, out = dx, wt = w[ci][co][2-ky][2-kx] (the flipped, transposed
 *             filter), (pt, pl) = 2 - the padding (negative: dy is cropped)
 *
 * The output is cut into 2x2 tiles (the last row/column of tiles is cut short
 * when OH/OW is odd). With the usual matrices
 *
 *   B^T = | 1  0 -1  0 |   G = |  1    0    0  |   A^T = | 1  1  1  0 |
 *         | 0  1  1  0 |       | 1/2  1/2  1/2 |         | 0  1 -1 -1 |
 *         | 0 -1  1  0 |       | 1/2 -1/2  1/2 |
 *         | 0  1  0 -1 |       |  0    0    1  |
 *
 * a tile is A^T [ sum over ci of (G g G^T) .* (B^T d B) ] A, for the 4x4 input
 * patch d and the 3x3 filter g of (co, ci). Per tile that is 16 multiplies per
 * (co, ci) instead of 36. The sum over ci is, for each of the 16 positions xi of
 * the 4x4 transform, a GEMM
 *
 *   M[xi][co][tile] = sum over ci of U[xi][co][ci] * V[xi][ci][tile]
 *
 * run on rt_gemm.c's micro-kernel with the tiles in the vector lanes (B rows are
 * V rows, A is U read in place). The transforms are adds and subtracts (the
 * filter's also halves), vectorised along a row of tiles by the compiler.
 *
 * Work: blocks of tiles (several whole images, or a run of tile rows of one
 * image) sized so V and M stay in L2. Per block a thread pads its images into
 * scratch (so no tile needs bounds checks), transforms them into V, runs the 16
 * GEMMs and transforms M into the output. Every thread transforms the whole
 * filter into its own scratch first (cheap next to the GEMMs).
 *
 * Determinism: an output element comes from its tile's M values through a fixed
 * sequence of adds; each M value is the micro-kernel's sum over ci in the fixed
 * reduction blocks of jm_rt_kblocks(Ci); the transforms of V and U are fixed
 * sequences too. Which block or thread handles a tile changes nothing, so the
 * bits are the same on any team size. No FMAs are contracted in the transforms
 * (-std=c11 turns contraction off, and no a*b+c is written anyway).
 */
#pragma GCC optimize("O3")
#include "rt_winograd.h"
#include "rt_gemm_int.h"
#include <omp.h>
#include <stdlib.h>
#include <string.h>

/* The transforms gain from wide vectors: compiled for AVX-512, x86-64-v3 and the
   baseline, the best picked when the library loads (as in rt_conv.c). */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define JM_WINO_CLONES __attribute__((target_clones("avx512f", "arch=x86-64-v3", "default")))
#else
#define JM_WINO_CLONES
#endif

/* Bytes of V and M per block (16 x (Ci + Co) x tiles floats): about half of this
   machine's 1 MiB L2, leaving room for the filter's U. */
#define JM_WINO_BLOCK_BYTES (512 * 1024)

/* ---------------------------------------------------------------- the mode */

static int jm_wino_forced = -1;   /* jm_wino_set_mode's choice, or -1 */
static int jm_wino_env = -1;      /* JEMC_WINOGRAD as a mode, once read */

void jm_wino_set_mode(int mode) {
    __atomic_store_n(&jm_wino_forced, mode, __ATOMIC_RELAXED);
}

/* JEMC_WINOGRAD, read on the first call: "0" off, "2" always, else the cost rule.
   Threads racing on the first read all compute the same value. */
int jm_wino_mode(void) {
    int m = __atomic_load_n(&jm_wino_forced, __ATOMIC_RELAXED);
    if (m >= 0) return m;
    m = __atomic_load_n(&jm_wino_env, __ATOMIC_RELAXED);
    if (m >= 0) return m;
    const char *e = getenv("JEMC_WINOGRAD");
    m = e && !strcmp(e, "0") ? JM_WINO_OFF : e && !strcmp(e, "2") ? JM_WINO_ALWAYS : JM_WINO_COST;
    __atomic_store_n(&jm_wino_env, m, __ATOMIC_RELAXED);
    return m;
}

/* Whether F(2x2,3x3) computes this shape at all: 3x3, stride 1, dilation 1, one
   group, non-empty, and the output size of a stride-1 convolution. */
static int jm_wino_allowed(const jm_conv_shape *s) {
    const int64_t *a = s->at;
    return s->KH == 3 && s->KW == 3 && a[0] == 1 && a[1] == 1 && a[4] == 1 && a[5] == 1 && a[6] == 1 &&
           s->N > 0 && s->C > 0 && s->O > 0 && s->H > 0 && s->W > 0 && s->OH > 0 && s->OW > 0 &&
           s->OH == s->H + 2 * a[2] - 2 && s->OW == s->W + 2 * a[3] - 2;
}

/* The cost rule, measured on 2 cores of an AMD EPYC with AVX-512 at batch 8
   (bench_kernels --set winograd, table in bench/README-kernels.md). The GEMMs run
   at the micro-kernel's speed, so what decides is the transforms' overhead:
   they are vectorised along a row of tiles, so rows of fewer than 16 tiles (an
   output narrower than 32) leave the 16-lane loops mostly in scalar remainders,
   and they cost per channel what the GEMM costs per channel pair, so few channels
   cannot hide them. Winograd was faster (1.15-1.55x) for 32 <= C, O with a 32x32
   output, and for C, O >= 128 with 16x16 (1.3x); about even for 64 channels at
   16x16, and slower on 28x28, 14x14, 8x8 and with 16 channels. Hence: an output
   at least 16 high and 32 wide with at least 32 channels in and out, or at least
   16 wide with at least 128 in and out. Symmetric in C and O, so forward and
   bwd_data agree.
   With the 8-lane AVX2 micro-kernel (measured on 2 cores of an AMD EPYC with
   AVX2 only, batch 64, bench/README-kernels.md) the direct kernels reach a
   smaller share of the FMA peak and the transforms' rows fill 8 lanes from 16
   tiles up, so Winograd wins further down: 1.23-1.31x for 32 channels at 32x32,
   1.36-1.41x for 64 at 16x16, 1.31x for 128 at 8x8; it loses for 64 at 14x14
   (0.66x forward), for 32 at 28x28 or 8x8, and with 16 channels. Hence, for
   that kernel: at least 32 channels with a 32x32 output, 64 with 16x16, or 128
   with 8x8. */
static int jm_wino_cost_ok(const jm_conv_shape *s) {
    int64_t ch = s->C < s->O ? s->C : s->O;
    int64_t side = s->OH < s->OW ? s->OH : s->OW, in_side = s->H < s->W ? s->H : s->W;
    const jm_rt_ukernel *uk = jm_rt_ukernel_get();
    if (uk && strcmp(uk->name, "avx2+fma") == 0) {
        int64_t need = ch >= 128 ? 8 : ch >= 64 ? 16 : ch >= 32 ? 32 : INT64_MAX;
        return side >= need && in_side >= need;
    }
    return s->OH >= 16 && s->H >= 16 && ((ch >= 32 && s->OW >= 32 && s->W >= 32) || (ch >= 128 && s->OW >= 16 && s->W >= 16));
}

int jm_wino_use(const jm_conv_shape *s, int bwd) {
    (void)bwd;
    int m = jm_wino_mode();
    if (m == JM_WINO_OFF || !jm_wino_allowed(s)) return 0;
    return m == JM_WINO_ALWAYS || jm_wino_cost_ok(s);
}

/* ---------------------------------------------------------------- plan */

typedef struct {
    const float *in;
    int64_t N, Ci, H, W;          /* input planes */
    float *out;
    int64_t Co, OH, OW;           /* output planes */
    int64_t pt, pl;               /* row r of a padded plane is input row r - pt (columns: pl) */
    int64_t TH, TW, Hp, Wp;       /* tiles down and across; padded plane size */
    int64_t ni, rb, ldt;          /* a block: up to ni whole images, or rb tile rows of one; lanes */
} jm_wino_plan;

static jm_wino_plan jm_wino_plan_of(const float *in, int64_t N, int64_t Ci, int64_t H, int64_t W, float *out,
                                    int64_t Co, int64_t OH, int64_t OW, int64_t pt, int64_t pl, int NR) {
    jm_wino_plan p = {in, N, Ci, H, W, out, Co, OH, OW, pt, pl, (OH + 1) / 2, (OW + 1) / 2, 0, 0, 1, 0, 0};
    p.Hp = 2 * p.TH + 2;   /* tile ty reads padded rows 2ty .. 2ty+3 */
    p.Wp = 2 * p.TW + 2;
    int64_t want = jm_rt_max(NR, JM_WINO_BLOCK_BYTES / (16 * 4 * (Ci + Co))), tpi = p.TH * p.TW;
    if (tpi <= want) {
        p.ni = jm_rt_max(1, want / tpi);
        p.rb = p.TH;
        p.ldt = jm_rt_roundup(jm_rt_min(p.ni, N) * tpi, NR);
    } else {
        p.rb = jm_rt_max(1, want / p.TW);
        p.ldt = jm_rt_roundup(p.rb * p.TW, NR);
    }
    return p;
}

/* Per-thread scratch, in floats (int64 tables counted as two). */
typedef struct { int64_t U, roff, koff, boff, pad, V, M, rows; } jm_wino_scr;

static jm_wino_scr jm_wino_scratch(const jm_wino_plan *p) {
    jm_wino_scr r;
    r.U = 16 * p->Co * p->Ci;
    r.roff = 2 * (p->Co + JM_RT_MAX_MR);
    r.koff = 2 * p->Ci;
    r.boff = 2 * p->Ci;
    r.pad = p->ni * p->Ci * p->Hp * p->Wp;
    r.V = 16 * p->Ci * p->ldt;
    r.M = 16 * p->Co * p->ldt;
    r.rows = 8 * (p->TW + 1) + 2 * p->Wp;   /* jm_wino_in_row's runs, or two output rows */
    return r;
}

static int64_t jm_wino_scratch_bytes(jm_wino_scr r) {
    return 4 * (r.U + r.roff + r.koff + r.boff + r.pad + r.V + r.M + r.rows) + 8 * 64;
}

/* Consecutive 64-byte-aligned pieces of one scratch buffer. */
static void *jm_wino_take(char *base, int64_t *used, int64_t floats) {
    void *r = base + *used;
    *used += (floats * 4 + 63) / 64 * 64;
    return r;
}

/* ---------------------------------------------------------------- transforms */

/* U[xi][co][ci] = (G g G^T)[xi] for the 3x3 filter g of (co, ci): w[co][ci] for
   the forward, w[ci][co] turned by 180 degrees for bwd_data. Halving is exact,
   and ((a + c) + b) * 0.5 has one rounding order whatever the compiler does. */
static void jm_wino_filter(const float *w, int bwd, int64_t Co, int64_t Ci, float *U) {
    for (int64_t co = 0; co < Co; co++)
        for (int64_t ci = 0; ci < Ci; ci++) {
            const float *src = bwd ? w + (ci * Co + co) * 9 : w + (co * Ci + ci) * 9;
            float g[3][3], t[4][3];
            for (int k = 0; k < 9; k++) g[k / 3][k % 3] = bwd ? src[8 - k] : src[k];
            for (int j = 0; j < 3; j++) {   /* t = G g */
                float e = g[0][j] + g[2][j];
                t[0][j] = g[0][j];
                t[1][j] = (e + g[1][j]) * 0.5f;
                t[2][j] = (e - g[1][j]) * 0.5f;
                t[3][j] = g[2][j];
            }
            for (int i = 0; i < 4; i++) {   /* U = t G^T */
                float e = t[i][0] + t[i][2], u[4] = {t[i][0], (e + t[i][1]) * 0.5f, (e - t[i][1]) * 0.5f, t[i][2]};
                for (int j = 0; j < 4; j++) U[((i * 4 + j) * Co + co) * Ci + ci] = u[j];
            }
        }
}

/* d[k] = s[2k] for k < n. */
JM_WINO_CLONES
static void jm_wino_copy_every2(float *restrict d, const float *restrict s, int64_t n) {
    for (int64_t k = 0; k < n; k++) d[k] = s[2 * k];
}

/* Copies images [n0, n0+ni) of p->in into the padded planes of pad ([i][ci][Hp][Wp]):
   input row y goes to padded row y + pt, column x to padded column X = x + pl,
   stored split: even X at X/2, odd X at Wp/2 + X/2 (jm_wino_in_row). Rows and
   columns outside the padded plane are dropped (negative pt: cropping). The rest
   of pad is zero from the start of the call and never written. */
static void jm_wino_pad(const jm_wino_plan *p, int64_t n0, int64_t ni, float *pad) {
    int64_t y0 = jm_rt_max(0, -p->pt), y1 = jm_rt_min(p->H, p->Hp - p->pt);
    int64_t x0 = jm_rt_max(0, -p->pl), x1 = jm_rt_min(p->W, p->Wp - p->pl), h = p->Wp / 2;
    if (y1 <= y0 || x1 <= x0) return;
    for (int64_t i = 0; i < ni; i++)
        for (int64_t c = 0; c < p->Ci; c++) {
            const float *s = p->in + ((n0 + i) * p->Ci + c) * p->H * p->W;
            float *d = pad + (i * p->Ci + c) * p->Hp * p->Wp;
            for (int64_t y = y0; y < y1; y++) {
                const float *sr = s + y * p->W;
                float *dr = d + (y + p->pt) * p->Wp;
                for (int64_t half = 0; half < 2; half++) {   /* padded columns X = 2k + half */
                    int64_t k0 = (x0 + p->pl - half + 1) / 2, k1 = (x1 + p->pl - half + 1) / 2;
                    jm_wino_copy_every2(dr + half * h + k0, sr + 2 * k0 + half - p->pl, k1 - k0);
                }
            }
        }
}

/* One row of tiles of one padded plane: V[xi*vs + tx] = (B^T d B)[xi] for the
   4x4 patch d at padded rows 2ty.., columns 2tx.. (r = the patch's first row).
   The padded rows are stored split (jm_wino_pad): e[k] = column 2k, o[k] = column
   2k+1, so tile tx's four columns are e[tx], o[tx], e[tx+1], o[tx+1] and every
   read is contiguous. First B^T d down the rows (into tmp: 8 runs of TW + 1),
   then (B^T d) B along them. */
JM_WINO_CLONES
static void jm_wino_in_row(const float *restrict r, int64_t Wp, int64_t TW, float *restrict V, int64_t vs,
                           float *restrict tmp) {
    const int64_t h = Wp / 2, n = TW + 1;
    for (int half = 0; half < 2; half++) {   /* B^T d: rows d0 - d2, d1 + d2, d2 - d1, d1 - d3 */
        const float *restrict d0 = r + half * h, *restrict d1 = d0 + Wp, *restrict d2 = d1 + Wp, *restrict d3 = d2 + Wp;
        float *restrict t0 = tmp + half * 4 * n, *restrict t1 = t0 + n, *restrict t2 = t1 + n, *restrict t3 = t2 + n;
        for (int64_t k = 0; k < n; k++) {
            t0[k] = d0[k] - d2[k];
            t1[k] = d1[k] + d2[k];
            t2[k] = d2[k] - d1[k];
            t3[k] = d1[k] - d3[k];
        }
    }
    for (int i = 0; i < 4; i++) {   /* (B^T d) B, row i: s0 - s2, s1 + s2, s2 - s1, s1 - s3 */
        const float *restrict e = tmp + i * n, *restrict o = tmp + (4 + i) * n;
        float *restrict v0 = V + (i * 4) * vs, *restrict v1 = v0 + vs, *restrict v2 = v1 + vs, *restrict v3 = v2 + vs;
        for (int64_t tx = 0; tx < TW; tx++) {
            v0[tx] = e[tx] - e[tx + 1];
            v1[tx] = o[tx] + e[tx + 1];
            v2[tx] = e[tx + 1] - o[tx];
            v3[tx] = o[tx] - o[tx + 1];
        }
    }
}

/* One row of tiles of output channel co: the two output rows (A^T m A) into
   y0[0..2TW) and y1[0..2TW), from m[xi*ms + tx]. */
JM_WINO_CLONES
static void jm_wino_out_row(const float *m, int64_t ms, int64_t TW, float *restrict y0, float *restrict y1) {
    for (int64_t tx = 0; tx < TW; tx++) {
        float u[2][4];
        for (int j = 0; j < 4; j++) {   /* A^T m, column j */
            float m0 = m[(0 + j) * ms + tx], m1 = m[(4 + j) * ms + tx], m2 = m[(8 + j) * ms + tx], m3 = m[(12 + j) * ms + tx];
            u[0][j] = (m0 + m1) + m2;
            u[1][j] = (m1 - m2) - m3;
        }
        y0[2 * tx] = (u[0][0] + u[0][1]) + u[0][2];
        y0[2 * tx + 1] = (u[0][1] - u[0][2]) - u[0][3];
        y1[2 * tx] = (u[1][0] + u[1][1]) + u[1][2];
        y1[2 * tx + 1] = (u[1][1] - u[1][2]) - u[1][3];
    }
}

/* ---------------------------------------------------------------- a block */

typedef struct {
    const float *U;
    int64_t *roff, *koff, *boff;
    float *pad, *V, *M, *rows;
    int64_t padded;               /* the image in pad when a block is part of one, or -1 */
} jm_wino_bufs;

/* M[xi] = U[xi] . V[xi] over the block's first nt lanes (rounded up to tiles of NR
   lanes; the lanes past nt are computed from stale V and dropped), in the reduction
   blocks of jm_rt_kblocks(Ci). */
static void jm_wino_gemms(const jm_wino_plan *p, const jm_rt_ukernel *uk, const jm_wino_bufs *b, int64_t nt) {
    const int MR = uk->mr, NR = uk->nr;
    for (int64_t xi = 0; xi < 16; xi++) {
        const float *A = b->U + xi * p->Co * p->Ci, *B = b->V + xi * p->Ci * p->ldt;
        float *C = b->M + xi * p->Co * p->ldt;
        for (int64_t ib = 0; ib < jm_rt_kblocks(p->Ci); ib++) {
            int64_t kb = jm_rt_kstart(p->Ci, ib), kc = jm_rt_kstart(p->Ci, ib + 1) - kb;
            for (int64_t j = 0; j < nt; j += NR)
                for (int64_t i = 0; i < p->Co; i += MR)
                    uk->kern(kc, A, b->roff + i, b->koff + kb, B + j, b->boff + kb, C + i * p->ldt + j, p->ldt, 1,
                             (int)jm_rt_min(MR, p->Co - i), NR, kb > 0);
        }
    }
}

/* Block: images [na, nb), tile rows [ya, yb) of each; its tiles are numbered
   ((i * (yb - ya)) + ty - ya) * TW + tx in the lanes. */
static void jm_wino_block(const jm_wino_plan *p, const jm_rt_ukernel *uk, jm_wino_bufs *b,
                          int64_t na, int64_t nb, int64_t ya, int64_t yb) {
    int64_t nr = yb - ya, nt = (nb - na) * nr * p->TW, plane = p->Hp * p->Wp, OHW = p->OH * p->OW;
    if (nb - na > 1 || b->padded != na) {   /* a block of one image's rows pads it once */
        jm_wino_pad(p, na, nb - na, b->pad);
        b->padded = nb - na > 1 ? -1 : na;
    }
    for (int64_t i = 0; i < nb - na; i++)
        for (int64_t c = 0; c < p->Ci; c++)
            for (int64_t ty = ya; ty < yb; ty++)
                jm_wino_in_row(b->pad + (i * p->Ci + c) * plane + 2 * ty * p->Wp, p->Wp, p->TW,
                               b->V + c * p->ldt + (i * nr + ty - ya) * p->TW, p->Ci * p->ldt, b->rows);
    jm_wino_gemms(p, uk, b, nt);
    for (int64_t i = 0; i < nb - na; i++)
        for (int64_t co = 0; co < p->Co; co++) {
            float *o = p->out + ((na + i) * p->Co + co) * OHW;
            for (int64_t ty = ya; ty < yb; ty++) {
                jm_wino_out_row(b->M + co * p->ldt + (i * nr + ty - ya) * p->TW, p->Co * p->ldt, p->TW, b->rows,
                                b->rows + p->Wp);
                memcpy(o + 2 * ty * p->OW, b->rows, (size_t)p->OW * sizeof *o);   /* odd OW: the last column is dropped */
                if (2 * ty + 1 < p->OH) memcpy(o + (2 * ty + 1) * p->OW, b->rows + p->Wp, (size_t)p->OW * sizeof *o);
            }
        }
}

/* ---------------------------------------------------------------- the team */

/* Runs a planned convolution on the team (every thread calls it). Images are
   shared out as the direct kernels share them (rt_kernels.h): with at least as
   many images as threads and a multiple of the team size (or four per thread),
   thread t takes a run of whole images and runs each image's epilogue right after
   it; otherwise the blocks of tile rows are shared out, and after a barrier image
   n's epilogue runs on thread n % nth. */
static int jm_wino_run(const jm_wino_plan *p, const float *w, int bwd,
                       jm_kernel_fn epi, void *const *epi_bufs, int64_t epi_items) {
    const jm_rt_ukernel *uk = jm_rt_ukernel_get();
    int tid = omp_get_thread_num(), nth = omp_get_num_threads();
    int by_image = p->N >= nth && (p->N % nth == 0 || p->N >= 4 * nth);
    jm_wino_scr r = jm_wino_scratch(p);
    char *base = (char *)jm_rt_team_scratch(jm_wino_scratch_bytes(r));
    if (!base) return -1;
    int64_t used = 0;
    jm_wino_bufs b;
    float *U = jm_wino_take(base, &used, r.U);
    b.U = U;
    b.roff = jm_wino_take(base, &used, r.roff);
    b.koff = jm_wino_take(base, &used, r.koff);
    b.boff = jm_wino_take(base, &used, r.boff);
    b.pad = jm_wino_take(base, &used, r.pad);
    b.V = jm_wino_take(base, &used, r.V);
    b.M = jm_wino_take(base, &used, r.M);
    b.rows = jm_wino_take(base, &used, r.rows);
    b.padded = -1;
    for (int64_t co = 0; co < p->Co + JM_RT_MAX_MR; co++) b.roff[co] = jm_rt_min(co, p->Co - 1) * p->Ci;
    for (int64_t c = 0; c < p->Ci; c++) b.koff[c] = c, b.boff[c] = c * p->ldt;
    memset(b.pad, 0, (size_t)r.pad * sizeof *b.pad);   /* the padding, for the whole call */
    memset(b.V, 0, (size_t)r.V * sizeof *b.V);         /* lanes past a block's tiles: finite */
    jm_wino_filter(w, bwd, p->Co, p->Ci, U);
    if (by_image) {
        int64_t n0, n1;
        jm_rt_split(p->N, tid, nth, &n0, &n1);
        for (int64_t na = n0; na < n1;) {
            int64_t nb = jm_rt_min(n1, na + p->ni);
            for (int64_t ya = 0; ya < p->TH; ya += p->rb) jm_wino_block(p, uk, &b, na, nb, ya, jm_rt_min(p->TH, ya + p->rb));
            if (epi)
                for (int64_t n = na; n < nb; n++) epi(epi_bufs, n * epi_items, (n + 1) * epi_items);
            na = nb;
        }
    } else {
        int64_t bpi = (p->TH + p->rb - 1) / p->rb, u0, u1;   /* blocks per image */
        jm_rt_split(p->N * bpi, tid, nth, &u0, &u1);
        for (int64_t u = u0; u < u1; u++) {
            int64_t n = u / bpi, ya = u % bpi * p->rb;
            jm_wino_block(p, uk, &b, n, n + 1, ya, jm_rt_min(p->TH, ya + p->rb));
        }
        if (epi) {
#pragma omp barrier
            for (int64_t n = tid; n < p->N; n += nth) epi(epi_bufs, n * epi_items, (n + 1) * epi_items);
        }
    }
#pragma omp barrier
    return 0;
}

int jm_wino_fwd(const jm_conv_shape *s, const float *x, const float *w, float *y,
                jm_kernel_fn epi, void *const *epi_bufs, int64_t epi_items) {
    jm_wino_plan p = jm_wino_plan_of(x, s->N, s->C, s->H, s->W, y, s->O, s->OH, s->OW, s->at[2], s->at[3],
                                     jm_rt_ukernel_get()->nr);
    return jm_wino_run(&p, w, 0, epi, epi_bufs, epi_items);
}

/* dx is the correlation of dy, padded by 2 - p (the filter's reach past the
   forward's padding), with the flipped filter: dx's size H = OH + 2p - 2. */
int jm_wino_bwd_data(const jm_conv_shape *s, const float *dy, const float *w, float *dx) {
    jm_wino_plan p = jm_wino_plan_of(dy, s->N, s->O, s->OH, s->OW, dx, s->C, s->H, s->W, 2 - s->at[2], 2 - s->at[3],
                                     jm_rt_ukernel_get()->nr);
    return jm_wino_run(&p, w, 1, NULL, NULL, 0);
}
