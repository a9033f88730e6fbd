/* t_rtkernels.c — the runtime's compute kernels (runtime/engine/rt_kernels.h): matmul,
 * conv2d forward and gradients, pooling, against naive double-precision loops.
 *
 * Every result is checked elementwise with
 *     |got - ref| <= 1e-4 * (1 + sum over the element's terms of |term|)
 * (float accumulation over up to a few thousand terms stays far inside that),
 * and must be bitwise identical when computed by 1, 2 or 3 threads of a parallel
 * region and by a call outside any parallel region. Outputs start as NaN, so an
 * element left unwritten fails. The conv and matmul checks run once per
 * micro-kernel this CPU supports (AVX-512, AVX2+FMA, plain C); the two FMA
 * kernels must agree bitwise, and so must both tilings of fwd and bwd_data. The
 * convolution shapes cover stride 1/2/3, padding 0/1/2, dilation 1/2, groups
 * 1/2/4 and depthwise, 1x1, odd and non-square sizes, batch 1..8; the forward's
 * epilogue must run once per image over that image's items. Pooling checks the
 * first-maximum and NaN rules and that gradients are fully written. */
#include "engine/rt_gemm_int.h"
#include "engine/rt_kernels.h"
#include "tap.h"
#include <omp.h>
#include <stdint.h>
#include <unistd.h>

#define TOL 1e-4

static uint64_t g_rng = 0x9e3779b97f4a7c15ull;

static float frand(void) {   /* xorshift64*, uniform in [-1, 1) */
    g_rng ^= g_rng >> 12, g_rng ^= g_rng << 25, g_rng ^= g_rng >> 27;
    return (float)((double)((g_rng * 2685821657736338717ull) >> 40) / (double)(1 << 23) - 1.0);
}

static float *rnd(int64_t n) {
    float *p = malloc((size_t)(n ? n : 1) * sizeof *p);
    for (int64_t i = 0; i < n; i++) p[i] = frand();
    return p;
}

static float *nans(int64_t n) {
    float *p = malloc((size_t)(n ? n : 1) * sizeof *p);
    for (int64_t i = 0; i < n; i++) p[i] = NAN;
    return p;
}

/* Elementwise check against ref (with abs = the sum of |terms|); reports the first miss. */
static int close_to(const float *got, const double *ref, const double *abs_, int64_t n, const char *what) {
    for (int64_t i = 0; i < n; i++) {
        double tol = TOL * (1 + abs_[i]);
        if (!((double)got[i] == ref[i] || (isnan(got[i]) && isnan(ref[i])) || fabs((double)got[i] - ref[i]) <= tol)) {
            ok(0, "%s matches the reference", what);
            tap_diag("element %lld: got %.9g, expected %.9g (tolerance %.3g)", (long long)i, got[i], ref[i], tol);
            return 0;
        }
    }
    return ok(1, "%s matches the reference", what);
}

/* ---- running on a team ---- */

typedef int (*call_fn)(void *ctx, float *out);

/* Runs fn on k threads (k == 0: outside any parallel region) writing `out`;
   returns its result, or -2 when threads disagree or the team was not k strong. */
static int on_team(int k, call_fn fn, void *ctx, float *out) {
    if (k == 0) return fn(ctx, out);
    int rc[16], team = 0;
#pragma omp parallel num_threads(k)
    {
        rc[omp_get_thread_num()] = fn(ctx, out);
#pragma omp single
        team = omp_get_num_threads();
    }
    for (int t = 1; t < team; t++)
        if (rc[t] != rc[0]) return -2;
    return team == k ? rc[0] : -2;
}

/* out[k] for k = 0 (no region), 1, 2, 3 threads; checks return codes and that all
   four are bitwise equal, and returns out[1] (caller frees). */
static float *run_all(call_fn fn, void *ctx, int64_t n, const char *what) {
    float *out[4];
    int rcs = 0;
    for (int k = 0; k < 4; k++) {
        out[k] = nans(n);
        rcs |= on_team(k, fn, ctx, out[k]);
    }
    ok(rcs == 0, "%s: returns 0 on every thread", what);
    int same = 1;
    for (int k = 0; k < 4; k++)
        if (k != 1 && memcmp(out[k], out[1], (size_t)n * sizeof(float))) same = 0;
    ok(same, "%s: bitwise identical outside a region and on 1, 2, 3 threads", what);
    for (int k = 0; k < 4; k++)
        if (k != 1) free(out[k]);
    return out[1];
}

/* ---- convolution ---- */

typedef struct {
    const char *name;
    int64_t N, C, H, W, O, KH, KW, sh, sw, ph, pw, dh, dw, G;
} conv_case;

typedef struct {
    jm_conv_shape s;
    const float *x, *w, *dy;
    jm_kernel_fn epi;
    int *epi_count;                       /* per image, for the epilogue check */
    int epi_bad;                          /* ranges not of the form [n*items, (n+1)*items) */
} conv_ctx;

static jm_conv_shape shape_of(const conv_case *c) {
    jm_conv_shape s = {c->N, c->C, c->H, c->W, c->O, c->KH, c->KW, 0, 0,
                       {c->sh, c->sw, c->ph, c->pw, c->dh, c->dw, c->G}};
    s.OH = (c->H + 2 * c->ph - c->dh * (c->KH - 1) - 1) / c->sh + 1;
    s.OW = (c->W + 2 * c->pw - c->dw * (c->KW - 1) - 1) / c->sw + 1;
    return s;
}

/* The three reference results in double, with the sums of |terms|: every term
   x[n][ci][iy][ix] * w[o][cl][ky][kx] of y[n][o][oy][ox] also feeds dx and dw. */
static void conv_ref(const jm_conv_shape *s, const float *x, const float *w, const float *dy,
                     double *y, double *ya, double *dx, double *dxa, double *dw, double *dwa) {
    int64_t G = s->at[6], CG = s->C / G, OG = s->O / G;
    int64_t ny = s->N * s->O * s->OH * s->OW, nx = s->N * s->C * s->H * s->W, nw = s->O * CG * s->KH * s->KW;
    memset(y, 0, ny * sizeof *y), memset(ya, 0, ny * sizeof *ya);
    memset(dx, 0, nx * sizeof *dx), memset(dxa, 0, nx * sizeof *dxa);
    memset(dw, 0, nw * sizeof *dw), memset(dwa, 0, nw * sizeof *dwa);
    for (int64_t n = 0; n < s->N; n++)
        for (int64_t o = 0; o < s->O; o++)
            for (int64_t cl = 0; cl < CG; cl++)
                for (int64_t oy = 0; oy < s->OH; oy++)
                    for (int64_t ox = 0; ox < s->OW; ox++)
                        for (int64_t ky = 0; ky < s->KH; ky++)
                            for (int64_t kx = 0; kx < s->KW; kx++) {
                                int64_t iy = oy * s->at[0] - s->at[2] + ky * s->at[4];
                                int64_t ix = ox * s->at[1] - s->at[3] + kx * s->at[5];
                                if (iy < 0 || iy >= s->H || ix < 0 || ix >= s->W) continue;
                                int64_t xi = ((n * s->C + o / OG * CG + cl) * s->H + iy) * s->W + ix;
                                int64_t wi = ((o * CG + cl) * s->KH + ky) * s->KW + kx;
                                int64_t yi = ((n * s->O + o) * s->OH + oy) * s->OW + ox;
                                double xw = (double)x[xi] * w[wi], dw_ = (double)dy[yi] * w[wi], xd = (double)x[xi] * dy[yi];
                                y[yi] += xw, ya[yi] += fabs(xw);
                                dx[xi] += dw_, dxa[xi] += fabs(dw_);
                                dw[wi] += xd, dwa[wi] += fabs(xd);
                            }
}

/* Adds 1 in place to y (bufs[0]) over [b, e) and counts the call for its image. */
static void epi_add1(void *const *bufs, int64_t b, int64_t e) {
    float *y = bufs[0];
    conv_ctx *c = bufs[1];
    int64_t items = c->s.O * c->s.OH * c->s.OW;
    if (items == 0 || b % items || e - b != items || b / items >= c->s.N) {
#pragma omp atomic
        c->epi_bad++;
        return;
    }
#pragma omp atomic
    c->epi_count[b / items]++;
    for (int64_t i = b; i < e; i++) y[i] += 1.0f;
}

static int call_fwd(void *ctx, float *out) {
    conv_ctx *c = ctx;
    void *bufs[2] = {out, c};
    return jm_rt_conv2d_fwd_f32(&c->s, c->x, c->w, out, c->epi, bufs, c->s.O * c->s.OH * c->s.OW);
}
static int call_bwd_data(void *ctx, float *out) {
    conv_ctx *c = ctx;
    return jm_rt_conv2d_bwd_data_f32(&c->s, c->dy, c->w, out);
}
static int call_bwd_filter(void *ctx, float *out) {
    conv_ctx *c = ctx;
    return jm_rt_conv2d_bwd_filter_f32(&c->s, c->x, c->dy, out);
}

/* With the epilogue, on 1, 2 and 3 threads: each image's epilogue runs exactly
   once, over its own items, and sees the finished convolution (y + 1 exactly). */
static void check_epilogue(conv_ctx *c, const float *y, const char *name) {
    int64_t ny = c->s.N * c->s.O * c->s.OH * c->s.OW;
    int good = 1;
    c->epi = epi_add1;
    c->epi_count = calloc((size_t)c->s.N + 1, sizeof(int));
    for (int k = 0; k < 4; k++) {
        float *out = nans(ny);
        memset(c->epi_count, 0, ((size_t)c->s.N + 1) * sizeof(int));
        c->epi_bad = 0;
        good &= on_team(k, call_fwd, c, out) == 0 && c->epi_bad == 0;
        for (int64_t n = 0; n < c->s.N; n++) good &= c->epi_count[n] == 1;
        for (int64_t i = 0; i < ny; i++) good &= out[i] == y[i] + 1.0f;
        free(out);
    }
    ok(good, "%s: epilogue once per image, over its items, after its output", name);
    free(c->epi_count);
    c->epi = NULL;
}

/* The micro-kernels to try (those this CPU runs). */
static const char *g_kernels[] = {"avx512f", "avx2+fma", "generic"};
#define N_KERNELS 3

/* One convolution against its reference (computed once), with every kernel. */
static void test_conv(const conv_case *cc) {
    conv_ctx c = {shape_of(cc), 0, 0, 0, 0, 0, 0};
    const jm_conv_shape *s = &c.s;
    int64_t ny = s->N * s->O * s->OH * s->OW, nx = s->N * s->C * s->H * s->W;
    int64_t nw = s->O * (s->C / s->at[6]) * s->KH * s->KW;
    float *x = rnd(nx), *w = rnd(nw), *dy = rnd(ny);
    double *r[6] = {malloc(ny * 8 + 8), malloc(ny * 8 + 8), malloc(nx * 8 + 8), malloc(nx * 8 + 8),
                    malloc(nw * 8 + 8), malloc(nw * 8 + 8)};
    char what[256];
    float *fma[3] = {NULL, NULL, NULL};   /* the first FMA kernel's results */
    c.x = x, c.w = w, c.dy = dy;
    conv_ref(s, x, w, dy, r[0], r[1], r[2], r[3], r[4], r[5]);
    for (int k = 0; k < N_KERNELS; k++) {
        if (jm_rt_ukernel_set(g_kernels[k])) continue;
        snprintf(what, sizeof what, "[%s] %s fwd", g_kernels[k], cc->name);
        float *y = run_all(call_fwd, &c, ny, what);
        close_to(y, r[0], r[1], ny, what);
        check_epilogue(&c, y, what);
        snprintf(what, sizeof what, "[%s] %s bwd_data", g_kernels[k], cc->name);
        float *dx = run_all(call_bwd_data, &c, nx, what);
        close_to(dx, r[2], r[3], nx, what);
        /* every tiling of fwd and bwd_data gives the same bits */
        int same = 1;
        for (int t = 1; t <= 3; t++) {
            jm_rt_conv_tiling = t;
            float *y2 = nans(ny), *dx2 = nans(nx);
            same &= on_team(2, call_fwd, &c, y2) == 0 && on_team(3, call_bwd_data, &c, dx2) == 0;
            same &= !memcmp(y, y2, (size_t)ny * sizeof *y) && !memcmp(dx, dx2, (size_t)nx * sizeof *dx);
            free(y2), free(dx2);
        }
        jm_rt_conv_tiling = 0;
        ok(same, "[%s] %s: fwd and bwd_data bitwise identical with lanes = channels, positions, wide tile",
           g_kernels[k], cc->name);
        snprintf(what, sizeof what, "[%s] %s bwd_filter", g_kernels[k], cc->name);
        float *dw = run_all(call_bwd_filter, &c, nw, what);
        close_to(dw, r[4], r[5], nw, what);
        if (k < 2 && fma[0]) {   /* AVX-512 and AVX2 differ in tiles only: same sums, same bits */
            ok(!memcmp(fma[0], y, ny * 4) && !memcmp(fma[1], dx, nx * 4) && !memcmp(fma[2], dw, nw * 4),
               "%s: AVX-512 and AVX2 kernels give the same bits", cc->name);
            free(y), free(dx), free(dw);
        } else if (k < 2) {
            fma[0] = y, fma[1] = dx, fma[2] = dw;
        } else {
            free(y), free(dx), free(dw);
        }
    }
    jm_rt_ukernel_set(NULL);
    free(fma[0]), free(fma[1]), free(fma[2]);
    free(x), free(w), free(dy);
    for (int i = 0; i < 6; i++) free(r[i]);
}

static const conv_case g_convs[] = {
    /* name                          N  C   H   W   O  KH KW sh sw ph pw dh dw  G */
    {"tiny 1x1ch 3x3 valid",         1, 1,  5,  7,  1, 3, 3, 1, 1, 0, 0, 1, 1, 1},
    {"7x5 input, 3x2 kernel",        3, 4,  7,  5,  6, 3, 2, 1, 1, 1, 0, 1, 1, 1},
    {"stride 2, groups 2",           2, 6,  9,  8,  4, 3, 3, 2, 2, 1, 1, 1, 1, 2},
    {"dilation 2, pad 2, groups 4",  3, 8, 10, 10,  8, 3, 3, 1, 1, 2, 2, 2, 2, 4},
    {"depthwise",                    2, 8,  9,  9,  8, 3, 3, 1, 1, 1, 1, 1, 1, 8},
    {"depthwise x2, stride 2",       3, 4,  9,  7,  8, 3, 3, 2, 2, 1, 1, 1, 1, 4},
    {"1x1",                          3, 8,  8,  8, 16, 1, 1, 1, 1, 0, 0, 1, 1, 1},
    {"1x1 stride 2",                 3, 8,  8,  8, 16, 1, 1, 2, 2, 0, 0, 1, 1, 1},
    {"1x1 pad 1 (col2im path)",      2, 3,  5,  4,  5, 1, 1, 1, 1, 1, 1, 1, 1, 1},
    {"Kg 288 > KC, batch 1",         1, 32, 12, 12, 40, 3, 3, 1, 1, 1, 1, 1, 1, 1},
    {"stride 2, 16->24",             3, 16, 14, 14, 24, 3, 3, 2, 2, 1, 1, 1, 1, 1},
    {"20x20: pieces, long bwd_filter", 3, 4, 20, 20, 8, 3, 3, 1, 1, 1, 1, 1, 1, 1},
    {"O 264 > KC (col2im)",          2, 4,  6,  6, 264, 1, 1, 2, 2, 0, 0, 1, 1, 1},
    {"mixed stride/pad/dilation",    3, 2,  7,  9,  4, 2, 3, 2, 1, 2, 0, 1, 2, 2},
    {"valid 3x3 (full transpose)",   3, 5,  9,  7,  7, 3, 3, 1, 1, 0, 0, 1, 1, 1},
    {"8 images of 3x3 (multi-image blocks)", 8, 6, 3, 3, 10, 3, 3, 1, 1, 1, 1, 1, 1, 1},
    {"5 images of 3x3, 5x5 kernel pad 2", 5, 3, 3, 3, 9, 5, 5, 1, 1, 2, 2, 1, 1, 1},
    {"1x1 output",                   3, 5,  3,  3,  6, 3, 3, 1, 1, 0, 0, 1, 1, 1},
    {"pad 2 stride 3 dilation 2",    2, 6, 11, 10, 6, 3, 2, 3, 3, 2, 2, 2, 2, 2},
    {"7 images 32->64 20x20 (bwd_filter in several steps)", 7, 32, 20, 20, 64, 3, 3, 1, 1, 1, 1, 1, 1, 1},
    {"groups 2, 5 images 16x16 (bwd_filter runs split unevenly)", 5, 8, 16, 16, 12, 3, 3, 1, 1, 1, 1, 1, 1, 2},
    {"1x1 stride 2 32->64 (zero phases, dy read in place)", 4, 32, 16, 16, 64, 1, 1, 2, 2, 0, 0, 1, 1, 1},
    {"1x1 stride 3, 1 image (zero phases, copied dy)", 1, 5, 9, 7, 6, 1, 1, 3, 3, 0, 0, 1, 1, 1},
};

/* ---- matmul ---- */

typedef struct {
    int64_t batch, M, N, K, sA, sB;
    int tA, tB;
    const float *A, *B;
} mm_ctx;

static int call_mm(void *ctx, float *out) {
    mm_ctx *m = ctx;
    return jm_rt_matmul_f32(m->batch, m->M, m->N, m->K, m->tA, m->tB, m->A, m->sA, m->B, m->sB, out, m->M * m->N);
}

static void test_matmul(int64_t batch, int64_t M, int64_t N, int64_t K, int tA, int tB, int bcastB) {
    mm_ctx m = {batch, M, N, K, M * K, bcastB ? 0 : K * N, tA, tB, NULL, NULL};
    int64_t nc = batch * M * N;
    float *A = rnd(batch * M * K), *B = rnd((bcastB ? 1 : batch) * K * N);
    double *ref = calloc((size_t)nc + 1, 8), *abs_ = calloc((size_t)nc + 1, 8);
    m.A = A, m.B = B;
    for (int64_t b = 0; b < batch; b++)
        for (int64_t i = 0; i < M; i++)
            for (int64_t j = 0; j < N; j++)
                for (int64_t k = 0; k < K; k++) {
                    double a = A[b * m.sA + (tA ? k * M + i : i * K + k)];
                    double bb = B[b * m.sB + (tB ? j * K + k : k * N + j)];
                    ref[(b * M + i) * N + j] += a * bb, abs_[(b * M + i) * N + j] += fabs(a * bb);
                }
    float *fma = NULL;   /* the first FMA kernel's result */
    for (int k = 0; k < N_KERNELS; k++) {
        if (jm_rt_ukernel_set(g_kernels[k])) continue;
        char what[160];
        snprintf(what, sizeof what, "[%s] matmul batch %lld%s M %lld N %lld K %lld transA %d transB %d", g_kernels[k],
                 (long long)batch, bcastB ? " (B broadcast)" : "", (long long)M, (long long)N, (long long)K, tA, tB);
        float *C = run_all(call_mm, &m, nc, what);
        close_to(C, ref, abs_, nc, what);
        if (k < 2 && fma) {
            ok(!memcmp(fma, C, (size_t)nc * 4), "%s: AVX-512 and AVX2 kernels give the same bits", what + strlen(g_kernels[k]) + 3);
            free(C);
        } else if (k < 2) {
            fma = C;
        } else {
            free(C);
        }
    }
    free(fma);
    jm_rt_ukernel_set(NULL);
    free(A), free(B), free(ref), free(abs_);
}

static void test_matmuls(void) {
    static const int64_t sizes[][3] = {{1, 1, 1}, {17, 33, 300}, {1, 33, 17}, {17, 1, 300}, {33, 17, 1},
                                       {64, 10, 600}, {5, 300, 7}, {40, 70, 513}, {3, 4, 0}};
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++)
        for (int t = 0; t < 4; t++) test_matmul(1, sizes[i][0], sizes[i][1], sizes[i][2], t & 1, t >> 1, 0);
    test_matmul(3, 17, 33, 40, 0, 0, 1);
    test_matmul(3, 9, 5, 300, 1, 1, 1);
    test_matmul(4, 33, 20, 7, 0, 1, 0);
    test_matmul(2, 300, 3, 20, 1, 0, 0);
}

/* ---- pooling ---- */

typedef struct {
    int64_t NC, H, W, OH, OW, at[6];
    const float *x, *dy;
    int op;                               /* 0 avg, 1 max, 2 avg bwd, 3 max bwd */
} pool_ctx;

static int call_pool(void *ctx, float *out) {
    pool_ctx *p = ctx;
    switch (p->op) {
    case 0: return jm_rt_avgpool2d_f32(p->NC, p->H, p->W, p->OH, p->OW, p->at, p->x, out);
    case 1: return jm_rt_maxpool2d_f32(p->NC, p->H, p->W, p->OH, p->OW, p->at, p->x, out);
    case 2: return jm_rt_avgpool2d_bwd_f32(p->NC, p->H, p->W, p->OH, p->OW, p->at, p->dy, out);
    default: return jm_rt_maxpool2d_bwd_f32(p->NC, p->H, p->W, p->OH, p->OW, p->at, p->x, p->dy, out);
    }
}

/* Reference: y (avg or max), and dx for both; the max is the first in window
   order, a NaN beating any number (the first NaN). */
static void pool_ref(const pool_ctx *p, double *ya, double *ym, double *dxa, double *dxm, double *dxa_abs, double *dxm_abs) {
    const int64_t *at = p->at;
    memset(dxa, 0, p->NC * p->H * p->W * 8), memset(dxm, 0, p->NC * p->H * p->W * 8);
    memset(dxa_abs, 0, p->NC * p->H * p->W * 8), memset(dxm_abs, 0, p->NC * p->H * p->W * 8);
    for (int64_t c = 0; c < p->NC; c++)
        for (int64_t oy = 0; oy < p->OH; oy++)
            for (int64_t ox = 0; ox < p->OW; ox++) {
                int64_t yi = (c * p->OH + oy) * p->OW + ox, best = -1;
                double s = 0, m = -INFINITY, g = p->dy[yi];
                for (int64_t ky = 0; ky < at[0]; ky++)
                    for (int64_t kx = 0; kx < at[1]; kx++) {
                        int64_t iy = oy * at[2] - at[4] + ky, ix = ox * at[3] - at[5] + kx;
                        if (iy < 0 || iy >= p->H || ix < 0 || ix >= p->W) continue;
                        int64_t xi = (c * p->H + iy) * p->W + ix;
                        double v = p->x[xi];
                        s += v;
                        dxa[xi] += g / (double)(at[0] * at[1]), dxa_abs[xi] += fabs(g);
                        if (best < 0 || v > m || (isnan(v) && !isnan(m))) m = v, best = xi;
                    }
                ya[yi] = s / (double)(at[0] * at[1]);
                ym[yi] = m;
                if (best >= 0) dxm[best] += g, dxm_abs[best] += fabs(g);
            }
}

static void test_pool(const char *name, int64_t NC, int64_t H, int64_t W, const int64_t at[6], float *x) {
    pool_ctx p = {NC, H, W, (H + 2 * at[4] - at[0]) / at[2] + 1, (W + 2 * at[5] - at[1]) / at[3] + 1,
                  {at[0], at[1], at[2], at[3], at[4], at[5]}, x, NULL, 0};
    int64_t ny = NC * p.OH * p.OW, nx = NC * H * W;
    float *dy = rnd(ny);
    double *ya = malloc(ny * 8), *ym = malloc(ny * 8), *dxa = malloc(nx * 8), *dxm = malloc(nx * 8);
    double *dxa_abs = malloc(nx * 8), *dxm_abs = malloc(nx * 8), *yabs = malloc(ny * 8);
    char what[160];
    p.dy = dy;
    pool_ref(&p, ya, ym, dxa, dxm, dxa_abs, dxm_abs);
    for (int64_t i = 0; i < ny; i++) yabs[i] = at[0] * at[1];   /* |x| < 1 */
    for (p.op = 0; p.op < 4; p.op++) {
        static const char *ops[] = {"avgpool", "maxpool", "avgpool bwd", "maxpool bwd"};
        snprintf(what, sizeof what, "%s %s", ops[p.op], name);
        int64_t n = p.op < 2 ? ny : nx;
        float *out = run_all(call_pool, &p, n, what);
        if (p.op == 1) {   /* max: exactly an input element (or a NaN where the reference has one) */
            int good = 1;
            for (int64_t i = 0; i < n; i++) good &= isnan(ym[i]) ? isnan(out[i]) : (double)out[i] == ym[i];
            ok(good, "%s matches the reference exactly", what);
        } else {
            close_to(out, p.op == 0 ? ya : p.op == 2 ? dxa : dxm, p.op == 0 ? yabs : p.op == 2 ? dxa_abs : dxm_abs, n, what);
        }
        free(out);
    }
    free(dy), free(ya), free(ym), free(dxa), free(dxm), free(dxa_abs), free(dxm_abs), free(yabs);
}

static void test_pools(void) {
    static const struct { const char *name; int64_t NC, H, W, at[6]; } cases[] = {
        {"2x2 s2", 6, 8, 8, {2, 2, 2, 2, 0, 0}},
        {"3x3 s2 p1 on 7x5", 5, 7, 5, {3, 3, 2, 2, 1, 1}},
        {"3x2 s1 p(1,1) overlapping", 4, 6, 9, {3, 2, 1, 1, 1, 1}},
        {"global 8x8", 7, 8, 8, {8, 8, 1, 1, 0, 0}},
        {"5x5 s3 p2", 3, 11, 10, {5, 5, 3, 3, 2, 2}},
        {"2x2 s3 (inputs no window reaches)", 3, 8, 8, {2, 2, 3, 3, 0, 0}},
        {"1x1 p1 (empty windows at the border)", 2, 3, 3, {1, 1, 1, 1, 1, 1}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        int64_t n = cases[i].NC * cases[i].H * cases[i].W;
        float *x = rnd(n);
        test_pool(cases[i].name, cases[i].NC, cases[i].H, cases[i].W, cases[i].at, x);
        free(x);
    }
    /* ties everywhere: every gradient goes to the first element of its window */
    {
        static const int64_t at[6] = {3, 3, 1, 1, 1, 1};
        float x[2 * 5 * 6];
        for (int i = 0; i < 60; i++) x[i] = i < 30 ? 0.5f : -INFINITY;
        test_pool("ties and all -inf", 2, 5, 6, at, x);
    }
    /* NaNs: a NaN beats numbers before and after it; the first NaN takes the gradient */
    {
        static const int64_t at[6] = {2, 2, 2, 2, 0, 0};
        float x[16] = {1, NAN, 5, 2, /* window (0,0) = 1 NaN / 3 4 */ 3, 4, 6, -1,
                       7, 8, NAN, NAN, 9, 9, -INFINITY, 0};
        float y[4], dy[4] = {1, 2, 3, 4}, dx[16];
        test_pool("with NaNs", 1, 4, 4, at, x);
        jm_rt_maxpool2d_f32(1, 4, 4, 2, 2, at, x, y);
        jm_rt_maxpool2d_bwd_f32(1, 4, 4, 2, 2, at, x, dy, dx);
        ok(isnan(y[0]) && y[1] == 6 && y[2] == 9 && isnan(y[3]), "maxpool: NaN wins over numbers before and after it");
        ok(dx[1] == 1 && dx[0] == 0 && dx[4] == 0 && dx[5] == 0, "maxpool bwd: gradient to the NaN");
        ok(dx[10] == 4 && dx[11] == 0, "maxpool bwd: the first of two NaNs takes the gradient");
        ok(dx[12] == 3 && dx[13] == 0 && dx[8] == 0 && dx[9] == 0, "maxpool bwd: the first of two equal maxima");
        ok(dx[6] == 2 && dx[2] == 0, "maxpool bwd: the maximum of a plain window");
    }
}

/* ---- workspace ---- */

static void test_workspace(void) {
    char *a = jm_rt_workspace(0, 100), *b = jm_rt_workspace(0, 50);
    ok(a && ((uintptr_t)a & 63) == 0, "workspace: 64-byte aligned");
    ok(a == b, "workspace: kept when a smaller size is asked for");
    memset(a, 1, 100);
    char *c = jm_rt_workspace(5, 1 << 20);
    ok(c && ((uintptr_t)c & 63) == 0 && c != a, "workspace: another thread's buffer is its own");
    memset(c, 2, 1 << 20);
    ok(jm_rt_workspace(3, (int64_t)1 << 60) == NULL, "workspace: NULL when memory runs out");
    ok(jm_rt_workspace(-1, 8) == NULL, "workspace: NULL for a bad thread index");
}

int main(int argc, char **argv) {
    /* 3 threads on a 2-core machine: spinning waiters would slow the barriers down
       a thousandfold, so run again with sleeping ones (the setting is read at start-up) */
    if (argc > 0 && !getenv("OMP_WAIT_POLICY") && !setenv("OMP_WAIT_POLICY", "passive", 1)) {
        execv("/proc/self/exe", argv);
        tap_diag("re-running with OMP_WAIT_POLICY=passive failed; carrying on");
    }
    for (int k = 0; k < N_KERNELS; k++)
        if (jm_rt_ukernel_set(g_kernels[k])) tap_diag("micro-kernel %s: not supported by this CPU, skipped", g_kernels[k]);
    jm_rt_ukernel_set(NULL);
    test_workspace();
    test_pools();
    for (size_t i = 0; i < sizeof g_convs / sizeof *g_convs; i++) test_conv(&g_convs[i]);
    test_matmuls();
    return tap_done();
}
