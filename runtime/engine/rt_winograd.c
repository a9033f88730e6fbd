/* rt_winograd.c — Winograd F(2x2,3x3) and F(4x4,3x3) for stride-1, dilation-1,
 * one-group 3x3 convolutions: forward and the data gradient (bwd_data), any padding.
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
 * F(4x4,3x3) is the same with m = 4: 4x4 output tiles, 6x6 input patches, 36
 * positions xi (36 multiplies per tile per (co, ci) instead of 144), and the
 * matrices for the points 0, 1, -1, 2, -2 (Lavin and Gray):
 *
 *   B^T = | 4  0 -5  0  1  0 |   G = |  1/4    0     0  |   A^T = | 1  1  1  1  1  0 |
 *         | 0 -4 -4  1  1  0 |       | -1/6  -1/6  -1/6 |         | 0  1 -1  2 -2  0 |
 *         | 0  4 -4 -1  1  0 |       | -1/6   1/6  -1/6 |         | 0  1  1  4  4  0 |
 *         | 0 -2 -1  2  1  0 |       | 1/24  1/12   1/6 |         | 0  1 -1  8 -8  1 |
 *         | 0  2 -1 -2  1  0 |       | 1/24 -1/12   1/6 |
 *         | 0  4  0 -5  0  1 |       |   0     0     1  |
 *
 * Its larger constants cost accuracy: about 1e-5 of the output's scale against
 * F(2x2)'s 5e-7 (bench/README-kernels.md). jm_wino_use picks the tile size.
 *
 * Work: blocks of tiles (several whole images, or a run of tile rows of one
 * image) sized so V and M stay in L2. Per block a thread pads its images into
 * scratch (so no tile needs bounds checks), transforms them into V, runs the 16
 * (36) GEMMs and transforms M into the output. Every thread transforms the whole
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
    m = e && !strcmp(e, "0")   ? JM_WINO_OFF
        : e && !strcmp(e, "2") ? JM_WINO_ALWAYS
        : e && !strcmp(e, "4") ? JM_WINO_ALWAYS4
                               : JM_WINO_COST;
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
   with 8x8.
   F(4x4,3x3) on that kernel (same table): 36 multiplies per 4x4 tile, half
   F(2x2)'s per output, but its transforms vectorise along rows of TW = OW/4
   tiles, so it needs a wide output to fill the 8 lanes. At 32x32 it beat
   F(2x2): 1.23x the direct kernel against 1.10x for 32 channels, 1.9x against
   1.65x for 64; at 16x16 and below it lost to F(2x2) (0.97x direct for 64
   channels, 1.02x for 128 at 8x8). Hence, where F(2x2) wins and the output and
   input are at least 32x32: F(4x4). Its error is larger (up to about 1e-5 of
   the output's scale against 5e-7, t_winograd); JEMC_WINOGRAD=2 keeps F(2x2).
   The other kernels were not measured with F(4x4) and keep F(2x2).
   Returns the tile size, or 0 for the direct kernels. */
static int jm_wino_cost_tile(const jm_conv_shape *s) {
    int64_t ch = s->C < s->O ? s->C : s->O;
    int64_t side = s->OH < s->OW ? s->OH : s->OW, in_side = s->H < s->W ? s->H : s->W;
    const jm_rt_ukernel *uk = jm_rt_ukernel_get();
    if (uk && strcmp(uk->name, "avx2+fma") == 0) {
        int64_t need = ch >= 128 ? 8 : ch >= 64 ? 16 : ch >= 32 ? 32 : INT64_MAX;
        if (side < need || in_side < need) return 0;
        return side >= 32 && in_side >= 32 ? 4 : 2;
    }
    return s->OH >= 16 && s->H >= 16 && ((ch >= 32 && s->OW >= 32 && s->W >= 32) || (ch >= 128 && s->OW >= 16 && s->W >= 16)) ? 2 : 0;
}

int jm_wino_use(const jm_conv_shape *s, int bwd) {
    (void)bwd;
    int m = jm_wino_mode();
    if (m == JM_WINO_OFF || !jm_wino_allowed(s)) return 0;
    if (m == JM_WINO_ALWAYS || m == JM_WINO_ALWAYS4) return m;
    return jm_wino_cost_tile(s);
}

/* ---------------------------------------------------------------- plan */

typedef struct {
    const float *in;
    int64_t N, Ci, H, W;          /* input planes */
    float *out;
    int64_t Co, OH, OW;           /* output planes */
    int64_t pt, pl;               /* row r of a padded plane is input row r - pt (columns: pl) */
    int64_t m, a, a2;             /* output tile m x m (2 or 4); input patch a x a, a = m + 2; a^2 */
    int64_t TH, TW, Hp, Wp;       /* tiles down and across; padded plane size */
    int64_t ni, rb, ldt;          /* a block: up to ni whole images, or rb tile rows of one; lanes */
} jm_wino_plan;

static jm_wino_plan jm_wino_plan_of(const float *in, int64_t N, int64_t Ci, int64_t H, int64_t W, float *out,
                                    int64_t Co, int64_t OH, int64_t OW, int64_t pt, int64_t pl, int64_t m, int NR) {
    jm_wino_plan p = {in, N, Ci, H, W, out, Co, OH, OW, pt, pl, m, m + 2, (m + 2) * (m + 2),
                      (OH + m - 1) / m, (OW + m - 1) / m, 0, 0, 1, 0, 0};
    p.Hp = m * p.TH + 2;         /* tile ty reads padded rows m ty .. m ty + m + 1 */
    p.Wp = m * (p.TW + 1);       /* at least m TW + 2 columns, split into m runs of TW + 1 */
    int64_t want = jm_rt_max(NR, JM_WINO_BLOCK_BYTES / (p.a2 * 4 * (Ci + Co))), tpi = p.TH * p.TW;
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
    r.U = p->a2 * p->Co * p->Ci;
    r.roff = 2 * (p->Co + JM_RT_MAX_MR);
    r.koff = 2 * p->Ci;
    r.boff = 2 * p->Ci;
    r.pad = p->ni * p->Ci * p->Hp * p->Wp;
    r.V = p->a2 * p->Ci * p->ldt;
    r.M = p->a2 * p->Co * p->ldt;
    r.rows = p->a * p->Wp;   /* jm_wino_in_row's a rows of B^T d, or the m (< a) output rows */
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
   the forward, w[ci][co] turned by 180 degrees for bwd_data. Each output is
   written as one fixed expression, so it has one rounding order whatever the
   compiler does. F(2x2): halving is exact. F(4x4): the sixths and 24ths round;
   the rows of G are (1/4, 0, 0), -(1, 1, 1)/6, -(1, -1, 1)/6, (1, 2, 4)/24,
   (1, -2, 4)/24, (0, 0, 1). */
static void jm_wino_g(int64_t m, const float g[3], float *u) {
    if (m == 2) {
        float e = g[0] + g[2];
        u[0] = g[0], u[1] = (e + g[1]) * 0.5f, u[2] = (e - g[1]) * 0.5f, u[3] = g[2];
        return;
    }
    float e = g[0] + g[2], f = g[0] + 4.0f * g[2];
    u[0] = g[0] * 0.25f;
    u[1] = -(e + g[1]) / 6.0f;
    u[2] = -(e - g[1]) / 6.0f;
    u[3] = (f + 2.0f * g[1]) / 24.0f;
    u[4] = (f - 2.0f * g[1]) / 24.0f;
    u[5] = g[2];
}

static void jm_wino_filter(const float *w, int bwd, int64_t m, int64_t Co, int64_t Ci, float *U) {
    const int64_t a = m + 2;
    for (int64_t co = 0; co < Co; co++)
        for (int64_t ci = 0; ci < Ci; ci++) {
            const float *src = bwd ? w + (ci * Co + co) * 9 : w + (co * Ci + ci) * 9;
            float g[3][3], t[6][3], col[6], row[3], u[6];
            for (int k = 0; k < 9; k++) g[k / 3][k % 3] = bwd ? src[8 - k] : src[k];
            for (int j = 0; j < 3; j++) {   /* t = G g, column by column */
                float c3[3] = {g[0][j], g[1][j], g[2][j]};
                jm_wino_g(m, c3, col);
                for (int i = 0; i < a; i++) t[i][j] = col[i];
            }
            for (int i = 0; i < a; i++) {   /* U = t G^T, row by row */
                row[0] = t[i][0], row[1] = t[i][1], row[2] = t[i][2];
                jm_wino_g(m, row, u);
                for (int j = 0; j < a; j++) U[((i * a + j) * Co + co) * Ci + ci] = u[j];
            }
        }
}

/* d[k] = s[m k] for k < n. */
JM_WINO_CLONES
static void jm_wino_copy_strided(float *restrict d, const float *restrict s, int64_t n, int64_t m) {
    if (m == 2)
        for (int64_t k = 0; k < n; k++) d[k] = s[2 * k];
    else
        for (int64_t k = 0; k < n; k++) d[k] = s[4 * k];
}

/* Copies images [n0, n0+ni) of p->in into the padded planes of pad ([i][ci][Hp][Wp]):
   input row y goes to padded row y + pt, column x to padded column X = x + pl,
   stored split by X mod m: X = m k + q at q Wp/m + k (jm_wino_in_row). Rows and
   columns outside the padded plane are dropped (negative pt: cropping). The rest
   of pad is zero from the start of the call and never written. */
static void jm_wino_pad(const jm_wino_plan *p, int64_t n0, int64_t ni, float *pad) {
    int64_t y0 = jm_rt_max(0, -p->pt), y1 = jm_rt_min(p->H, p->Hp - p->pt);
    int64_t x0 = jm_rt_max(0, -p->pl), x1 = jm_rt_min(p->W, p->Wp - p->pl), m = p->m, h = p->Wp / m;
    if (y1 <= y0 || x1 <= x0) return;
    for (int64_t i = 0; i < ni; i++)
        for (int64_t c = 0; c < p->Ci; c++) {
            const float *s = p->in + ((n0 + i) * p->Ci + c) * p->H * p->W;
            float *d = pad + (i * p->Ci + c) * p->Hp * p->Wp;
            for (int64_t y = y0; y < y1; y++) {
                const float *sr = s + y * p->W;
                float *dr = d + (y + p->pt) * p->Wp;
                for (int64_t q = 0; q < m; q++) {   /* padded columns X = m k + q, x = X - pl in [x0, x1) */
                    /* k0 = ceil((x0 + pl - q) / m): the numerator is >= 1 - m, so + m - 1 keeps it >= 0 */
                    int64_t k0 = (x0 + p->pl - q + m - 1) / m, k1 = (x1 + p->pl - q + m - 1) / m;
                    if (k1 > k0) jm_wino_copy_strided(dr + q * h + k0, sr + m * k0 + q - p->pl, k1 - k0, m);
                }
            }
        }
}

/* B^T d for F(2x2) (4 rows) and F(4x4) (6 rows) along k < n: t[i][k] from the
   input rows d[j][k]. F(4x4)'s B^T rows: (4, 0, -5, 0, 1, 0), (0, -4, -4, 1, 1, 0),
   (0, 4, -4, -1, 1, 0), (0, -2, -1, 2, 1, 0), (0, 2, -1, -2, 1, 0), (0, 4, 0, -5, 0, 1). */
#define JM_WINO_BT4(d0, d1, d2, d3, t0, t1, t2, t3) \
    (t0) = (d0) - (d2), (t1) = (d1) + (d2), (t2) = (d2) - (d1), (t3) = (d1) - (d3)
/* F(4x4)'s B^T as a statement (no do-while: GCC's vectorizer gave up on loops
   whose body held one). The temporaries are named per use site's braces. */
#define JM_WINO_BT6(d0, d1, d2, d3, d4, d5, t0, t1, t2, t3, t4, t5)                                        \
    {                                                                                                       \
        float s12_ = (d1) + (d2), m12_ = (d1) - (d2), s34_ = (d3) + (d4), m43_ = (d4) - (d3);               \
        float p42_ = (d4) - (d2), m31_ = (d3) - (d1);                                                       \
        (t0) = (4.0f * (d0) - 5.0f * (d2)) + (d4);                                                          \
        (t1) = s34_ - 4.0f * s12_;                                                                          \
        (t2) = m43_ + 4.0f * m12_;                                                                          \
        (t3) = p42_ + 2.0f * m31_;                                                                          \
        (t4) = p42_ - 2.0f * m31_;                                                                          \
        (t5) = (4.0f * (d1) - 5.0f * (d3)) + (d5);                                                          \
    }

/* One row of tiles of one padded plane: V[xi*vs + tx] = (B^T d B)[xi] for the
   a x a patch d at padded rows m ty.., columns m tx.. (r = the patch's first row).
   The padded rows are stored split (jm_wino_pad): run q (n = TW + 1 columns at
   q n) holds the columns m k + q, so tile tx's columns m tx + j are run j mod m
   at k = tx + j / m, and every read is contiguous. First B^T d down the rows,
   over the whole padded width at once (into tmp: a rows of Wp = m n), then
   (B^T d) B along each row's runs.
   The rows are distinct, but GCC counts pointers derived from one restrict
   parameter as possibly overlapping and gives up past 10 runtime alias checks
   (F(4x4): six streams in, six out): ivdep tells it they do not overlap. */
JM_WINO_CLONES
static void jm_wino_in_row2(const float *restrict r, int64_t Wp, int64_t TW, float *restrict V, int64_t vs,
                            float *restrict tmp) {
    const int64_t n = TW + 1;
    const float *restrict d0 = r, *restrict d1 = d0 + Wp, *restrict d2 = d1 + Wp, *restrict d3 = d2 + Wp;
    float *restrict t0 = tmp, *restrict t1 = t0 + Wp, *restrict t2 = t1 + Wp, *restrict t3 = t2 + Wp;
#pragma GCC ivdep
    for (int64_t k = 0; k < Wp; k++) JM_WINO_BT4(d0[k], d1[k], d2[k], d3[k], t0[k], t1[k], t2[k], t3[k]);
    for (int i = 0; i < 4; i++) {
        const float *restrict e = tmp + i * Wp, *restrict o = e + n;
        float *restrict v0 = V + (i * 4) * vs, *restrict v1 = v0 + vs, *restrict v2 = v1 + vs, *restrict v3 = v2 + vs;
#pragma GCC ivdep
        for (int64_t tx = 0; tx < TW; tx++) JM_WINO_BT4(e[tx], o[tx], e[tx + 1], o[tx + 1], v0[tx], v1[tx], v2[tx], v3[tx]);
    }
}

JM_WINO_CLONES
static void jm_wino_in_row4(const float *restrict r, int64_t Wp, int64_t TW, float *restrict V, int64_t vs,
                            float *restrict tmp) {
    const int64_t n = TW + 1;
    const float *restrict d0 = r, *restrict d1 = d0 + Wp, *restrict d2 = d1 + Wp, *restrict d3 = d2 + Wp,
                          *restrict d4 = d3 + Wp, *restrict d5 = d4 + Wp;
    float *restrict t0 = tmp, *restrict t1 = t0 + Wp, *restrict t2 = t1 + Wp, *restrict t3 = t2 + Wp,
                    *restrict t4 = t3 + Wp, *restrict t5 = t4 + Wp;
#pragma GCC ivdep
    for (int64_t k = 0; k < Wp; k++)
        JM_WINO_BT6(d0[k], d1[k], d2[k], d3[k], d4[k], d5[k], t0[k], t1[k], t2[k], t3[k], t4[k], t5[k]);
    for (int i = 0; i < 6; i++) {
        const float *restrict c0 = tmp + i * Wp, *restrict c1 = c0 + n, *restrict c2 = c1 + n, *restrict c3 = c2 + n;
        float *restrict v0 = V + (i * 6) * vs, *restrict v1 = v0 + vs, *restrict v2 = v1 + vs, *restrict v3 = v2 + vs,
                        *restrict v4 = v3 + vs, *restrict v5 = v4 + vs;
#pragma GCC ivdep
        for (int64_t tx = 0; tx < TW; tx++)
            JM_WINO_BT6(c0[tx], c1[tx], c2[tx], c3[tx], c0[tx + 1], c1[tx + 1], v0[tx], v1[tx], v2[tx], v3[tx], v4[tx], v5[tx]);
    }
}

/* A^T m for F(2x2) (2 of 4) and F(4x4) (4 of 6). F(4x4)'s A^T rows:
   (1, 1, 1, 1, 1, 0), (0, 1, -1, 2, -2, 0), (0, 1, 1, 4, 4, 0), (0, 1, -1, 8, -8, 1). */
#define JM_WINO_AT4(m0, m1, m2, m3, y0, y1) (y0) = ((m0) + (m1)) + (m2), (y1) = ((m1) - (m2)) - (m3)
#define JM_WINO_AT6(m0, m1, m2, m3, m4, m5, y0, y1, y2, y3)                   \
    do {                                                                       \
        float s12 = (m1) + (m2), d12 = (m1) - (m2), s34 = (m3) + (m4), d34 = (m3) - (m4); \
        (y0) = ((m0) + s12) + s34;                                             \
        (y1) = d12 + 2.0f * d34;                                               \
        (y2) = s12 + 4.0f * s34;                                               \
        (y3) = (d12 + 8.0f * d34) + (m5);                                      \
    } while (0)

/* One row of tiles of output channel co: the m output rows (A^T m A) into
   y + r Wp, r < m, columns [0, m TW), from m[xi*ms + tx]. */
JM_WINO_CLONES
static void jm_wino_out_row2(const float *m, int64_t ms, int64_t TW, float *restrict y, int64_t Wp) {
    for (int64_t tx = 0; tx < TW; tx++) {
        float u[2][4];
        for (int j = 0; j < 4; j++) JM_WINO_AT4(m[j * ms + tx], m[(4 + j) * ms + tx], m[(8 + j) * ms + tx], m[(12 + j) * ms + tx], u[0][j], u[1][j]);
        for (int i = 0; i < 2; i++) JM_WINO_AT4(u[i][0], u[i][1], u[i][2], u[i][3], y[i * Wp + 2 * tx], y[i * Wp + 2 * tx + 1]);
    }
}

JM_WINO_CLONES
static void jm_wino_out_row4(const float *m, int64_t ms, int64_t TW, float *restrict y, int64_t Wp) {
    for (int64_t tx = 0; tx < TW; tx++) {
        float u[4][6];
        for (int j = 0; j < 6; j++)
            JM_WINO_AT6(m[j * ms + tx], m[(6 + j) * ms + tx], m[(12 + j) * ms + tx], m[(18 + j) * ms + tx], m[(24 + j) * ms + tx],
                        m[(30 + j) * ms + tx], u[0][j], u[1][j], u[2][j], u[3][j]);
        for (int i = 0; i < 4; i++)
            JM_WINO_AT6(u[i][0], u[i][1], u[i][2], u[i][3], u[i][4], u[i][5], y[i * Wp + 4 * tx], y[i * Wp + 4 * tx + 1],
                        y[i * Wp + 4 * tx + 2], y[i * Wp + 4 * tx + 3]);
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
    for (int64_t xi = 0; xi < p->a2; xi++) {
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
    void (*in_row)(const float *, int64_t, int64_t, float *, int64_t, float *) = p->m == 2 ? jm_wino_in_row2 : jm_wino_in_row4;
    void (*out_row)(const float *, int64_t, int64_t, float *, int64_t) = p->m == 2 ? jm_wino_out_row2 : jm_wino_out_row4;
    for (int64_t i = 0; i < nb - na; i++)
        for (int64_t c = 0; c < p->Ci; c++)
            for (int64_t ty = ya; ty < yb; ty++)
                in_row(b->pad + (i * p->Ci + c) * plane + p->m * ty * p->Wp, p->Wp, p->TW,
                       b->V + c * p->ldt + (i * nr + ty - ya) * p->TW, p->Ci * p->ldt, b->rows);
    jm_wino_gemms(p, uk, b, nt);
    for (int64_t i = 0; i < nb - na; i++)
        for (int64_t co = 0; co < p->Co; co++) {
            float *o = p->out + ((na + i) * p->Co + co) * OHW;
            for (int64_t ty = ya; ty < yb; ty++) {
                out_row(b->M + co * p->ldt + (i * nr + ty - ya) * p->TW, p->Co * p->ldt, p->TW, b->rows, p->Wp);
                /* the last tiles' columns and rows past OW and OH are dropped */
                for (int64_t r = 0; r < p->m && p->m * ty + r < p->OH; r++)
                    memcpy(o + (p->m * ty + r) * p->OW, b->rows + r * p->Wp, (size_t)p->OW * sizeof *o);
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
    jm_wino_filter(w, bwd, p->m, p->Co, p->Ci, U);
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

int jm_wino_fwd(const jm_conv_shape *s, int m, const float *x, const float *w, float *y,
                jm_kernel_fn epi, void *const *epi_bufs, int64_t epi_items) {
    if (m != 2 && m != 4) return -1;
    jm_wino_plan p = jm_wino_plan_of(x, s->N, s->C, s->H, s->W, y, s->O, s->OH, s->OW, s->at[2], s->at[3], m,
                                     jm_rt_ukernel_get()->nr);
    return jm_wino_run(&p, w, 0, epi, epi_bufs, epi_items);
}

/* dx is the correlation of dy, padded by 2 - p (the filter's reach past the
   forward's padding), with the flipped filter: dx's size H = OH + 2p - 2. */
int jm_wino_bwd_data(const jm_conv_shape *s, int m, const float *dy, const float *w, float *dx) {
    if (m != 2 && m != 4) return -1;
    jm_wino_plan p = jm_wino_plan_of(dy, s->N, s->O, s->OH, s->OW, dx, s->C, s->H, s->W, 2 - s->at[2], 2 - s->at[3], m,
                                     jm_rt_ukernel_get()->nr);
    return jm_wino_run(&p, w, 1, NULL, NULL, 0);
}
