/* t_winograd.c — Winograd F(2x2,3x3) and F(4x4,3x3) convolutions
 * (runtime/engine/rt_winograd.c): forward and bwd_data against a double-precision
 * direct convolution.
 *
 * Every output tensor is checked at its own scale: max |got - ref| <= TOL * max |ref|
 * (TOL = 1e-5 for F(2x2), whose error measures a few 1e-7 on these shapes, and
 * TOL4 for F(4x4), whose sixths and 24ths and larger transform entries cost
 * more). Each case runs with both tile sizes. Shapes cover
 * padding 0/1/2/3, odd and non-square sizes, channel counts that are not
 * multiples of the vector width, batch 1 and 3 (blocks of rows shared among
 * threads) and 4 (whole images per thread). Also: the results are bitwise the
 * same on 1, 2 and 3 threads and outside a parallel region; the forward's
 * epilogue runs once per image, after its output; the cost rule picks Winograd
 * for the big layers only, with the tile size the machine's kernel measured best;
 * and JEMC_WINOGRAD=0 and =4 (read once, in child processes that set it before
 * the first convolution) give the direct kernels' and F(4x4)'s bits. */
#include "engine/rt_gemm_int.h"
#include "engine/rt_kernels.h"
#include "engine/rt_winograd.h"
#include "tap.h"
#include <omp.h>
#include <stdint.h>
#include <sys/wait.h>
#include <unistd.h>

#define TOL 1e-5
#define TOL4 3e-5

static uint64_t g_rng = 0x2545f4914f6cdd1dull;

static float frand(void) {   /* xorshift64*, uniform in [-1, 1) */
    g_rng ^= g_rng >> 12, g_rng ^= g_rng << 25, g_rng ^= g_rng >> 27;
    return (float)((double)((g_rng * 2685821657736338717ull) >> 40) / (double)(1 << 23) - 1.0);
}

static float *rnd(int64_t n) {
    float *p = malloc((size_t)n * sizeof *p);
    for (int64_t i = 0; i < n; i++) p[i] = frand();
    return p;
}

static float *nans(int64_t n) {
    float *p = malloc((size_t)n * sizeof *p);
    for (int64_t i = 0; i < n; i++) p[i] = NAN;
    return p;
}

typedef struct { int64_t N, C, H, W, O, p; } wcase;

static jm_conv_shape shape_of(const wcase *c) {
    jm_conv_shape s = {c->N, c->C, c->H, c->W, c->O, 3, 3, c->H + 2 * c->p - 2, c->W + 2 * c->p - 2,
                       {1, 1, c->p, c->p, 1, 1, 1}};
    return s;
}

/* Direct convolution in double: y (forward) and dx (bwd_data, from dy). */
static void ref_conv(const jm_conv_shape *s, const float *x, const float *w, const float *dy, double *y, double *dx) {
    memset(y, 0, (size_t)(s->N * s->O * s->OH * s->OW) * sizeof *y);
    memset(dx, 0, (size_t)(s->N * s->C * s->H * s->W) * sizeof *dx);
    for (int64_t n = 0; n < s->N; n++)
        for (int64_t o = 0; o < s->O; o++)
            for (int64_t c = 0; c < s->C; c++)
                for (int64_t oy = 0; oy < s->OH; oy++)
                    for (int64_t ox = 0; ox < s->OW; ox++)
                        for (int64_t k = 0; k < 9; k++) {
                            int64_t iy = oy - s->at[2] + k / 3, ix = ox - s->at[3] + k % 3;
                            if (iy < 0 || iy >= s->H || ix < 0 || ix >= s->W) continue;
                            int64_t xi = ((n * s->C + c) * s->H + iy) * s->W + ix, yi = ((n * s->O + o) * s->OH + oy) * s->OW + ox;
                            double wv = w[(o * s->C + c) * 9 + k];
                            y[yi] += x[xi] * wv;
                            dx[xi] += dy[yi] * wv;
                        }
}

/* max |got - ref| / max |ref| (NaN when anything is NaN). */
static double rel_err(const float *got, const double *ref, int64_t n) {
    double e = 0, m = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - ref[i]);
        if (isnan(d)) return NAN;
        e = d > e ? d : e;
        m = fabs(ref[i]) > m ? fabs(ref[i]) : m;
    }
    return m > 0 ? e / m : e;
}

typedef struct {
    jm_conv_shape s;
    const float *x, *w, *dy;
    jm_kernel_fn epi;
    int *epi_count;
    int epi_bad;
} ctx_t;

/* Adds 1 to y (bufs[0]) over [b, e), counting the call for its image. */
static void epi_add1(void *const *bufs, int64_t b, int64_t e) {
    float *y = bufs[0];
    ctx_t *c = bufs[1];
    int64_t items = c->s.O * c->s.OH * c->s.OW;
    if (b % items || e - b != items || b / items >= c->s.N) {
#pragma omp atomic
        c->epi_bad++;
        return;
    }
#pragma omp atomic
    c->epi_count[b / items]++;
    for (int64_t i = b; i < e; i++) y[i] += 1.0f;
}

/* op 0: forward, 1: bwd_data; on k threads (0: outside any region). */
static int run(ctx_t *c, int op, int k, float *out) {
    int rc[16] = {0}, team = 1;
    void *bufs[2] = {out, c};
    if (k == 0)
        return op ? jm_rt_conv2d_bwd_data_f32(&c->s, c->dy, c->w, out)
                  : jm_rt_conv2d_fwd_f32(&c->s, c->x, c->w, out, c->epi, bufs, c->s.O * c->s.OH * c->s.OW);
#pragma omp parallel num_threads(k)
    {
        rc[omp_get_thread_num()] = op ? jm_rt_conv2d_bwd_data_f32(&c->s, c->dy, c->w, out)
                                      : jm_rt_conv2d_fwd_f32(&c->s, c->x, c->w, out, c->epi, bufs, c->s.O * c->s.OH * c->s.OW);
#pragma omp single
        team = omp_get_num_threads();
    }
    for (int t = 1; t < team; t++)
        if (rc[t] != rc[0]) return -2;
    return team == k ? rc[0] : -2;
}

static double g_worst[2][2];   /* largest error seen: [F(2x2), F(4x4)][forward, bwd_data] */

/* One case with tile size m (2 or 4), forced through the mode. */
static void check_case(const wcase *wc, int m) {
    ctx_t c = {shape_of(wc), NULL, NULL, NULL, NULL, NULL, 0};
    const jm_conv_shape *s = &c.s;
    int64_t nx = s->N * s->C * s->H * s->W, ny = s->N * s->O * s->OH * s->OW, n[2] = {ny, nx};
    float *x = rnd(nx), *w = rnd(s->O * s->C * 9), *dy = rnd(ny);
    double *ry = malloc((size_t)ny * sizeof *ry), *rdx = malloc((size_t)nx * sizeof *rdx), *ref[2] = {ry, rdx};
    c.x = x, c.w = w, c.dy = dy;
    ref_conv(s, x, w, dy, ry, rdx);
    char name[128];
    snprintf(name, sizeof name, "F(%dx%d) N%lld C%lld %lldx%lld O%lld pad %lld", m, m, (long long)s->N, (long long)s->C,
             (long long)s->H, (long long)s->W, (long long)s->O, (long long)s->at[2]);
    jm_wino_set_mode(m == 2 ? JM_WINO_ALWAYS : JM_WINO_ALWAYS4);
    double tol = m == 2 ? TOL : TOL4;
    ok(jm_wino_use(s, 0) == m && jm_wino_use(s, 1) == m, "%s: Winograd takes it with %dx%d tiles (mode always)", name, m, m);
    for (int op = 0; op < 2; op++) {
        float *out[4];
        int rcs = 0, same = 1;
        for (int k = 0; k < 4; k++) rcs |= run(&c, op, k, out[k] = nans(n[op]));
        for (int k = 1; k < 4; k++) same &= !memcmp(out[k], out[0], (size_t)n[op] * sizeof(float));
        double e = rel_err(out[1], ref[op], n[op]);
        double *worst = &g_worst[m == 4][op];
        *worst = e > *worst ? e : *worst;
        ok(rcs == 0, "%s %s: returns 0 on every thread", name, op ? "bwd_data" : "fwd");
        ok(e <= tol, "%s %s: error %.2g of scale (<= %g)", name, op ? "bwd_data" : "fwd", e, tol);
        ok(same, "%s %s: bitwise equal outside a region and on 1, 2, 3 threads", name, op ? "bwd_data" : "fwd");
        if (op == 0) {   /* the epilogue, on 1, 2, 3 threads */
            int good = 1;
            c.epi = epi_add1;
            c.epi_count = calloc((size_t)s->N, sizeof(int));
            for (int k = 1; k < 4; k++) {
                float *o = nans(ny);
                memset(c.epi_count, 0, (size_t)s->N * sizeof(int));
                c.epi_bad = 0;
                good &= run(&c, 0, k, o) == 0 && c.epi_bad == 0;
                for (int64_t i = 0; i < s->N; i++) good &= c.epi_count[i] == 1;
                for (int64_t i = 0; i < ny; i++) good &= o[i] == out[0][i] + 1.0f;
                free(o);
            }
            ok(good, "%s fwd: epilogue once per image, after its output", name);
            free(c.epi_count);
            c.epi = NULL;
        }
        for (int k = 0; k < 4; k++) free(out[k]);
    }
    free(x), free(w), free(dy), free(ry), free(rdx);
}

/* The env check's shape: one the cost rule sends to Winograd. */
static const wcase g_env_case = {2, 32, 32, 32, 32, 1};

/* fwd and bwd_data of g_env_case on 2 threads, into out (ny + nx floats). */
static void env_outputs(float *out) {
    ctx_t c = {shape_of(&g_env_case), NULL, NULL, NULL, NULL, NULL, 0};
    int64_t nx = c.s.N * c.s.C * c.s.H * c.s.W, ny = c.s.N * c.s.O * c.s.OH * c.s.OW;
    uint64_t keep = g_rng;
    g_rng = 77;
    float *x = rnd(nx), *w = rnd(c.s.O * c.s.C * 9), *dy = rnd(ny);
    g_rng = keep;
    c.x = x, c.w = w, c.dy = dy;
    run(&c, 0, 2, out);
    run(&c, 1, 2, out + ny);
    free(x), free(w), free(dy);
}

static int64_t env_floats(void) {
    jm_conv_shape s = shape_of(&g_env_case);
    return s.N * s.C * s.H * s.W + s.N * s.O * s.OH * s.OW;
}

/* Child: JEMC_WINOGRAD=value before the first convolution; writes the mode and
   the outputs to fd. Before any OpenMP region in the parent, so fork is safe. */
static pid_t env_child(int fd, const char *value) {
    pid_t pid = fork();
    if (pid != 0) return pid;
    setenv("JEMC_WINOGRAD", value, 1);
    int64_t n = env_floats();
    float *out = malloc((size_t)n * sizeof *out);
    env_outputs(out);
    int mode = jm_wino_mode();
    ssize_t a = write(fd, &mode, sizeof mode), b = write(fd, out, (size_t)n * sizeof *out);
    _exit(a == (ssize_t)sizeof mode && b == (ssize_t)(n * (int64_t)sizeof *out) ? 0 : 1);
}

static int read_all(int fd, void *buf, size_t n) {
    for (size_t got = 0; got < n;) {
        ssize_t r = read(fd, (char *)buf + got, n - got);
        if (r <= 0) return 0;
        got += (size_t)r;
    }
    return 1;
}

int main(void) {
    int pfd[2], pfd4[2];
    if (pipe(pfd) || pipe(pfd4)) return 1;
    int64_t n = env_floats();
    unsetenv("JEMC_WINOGRAD");
    pid_t pid = env_child(pfd[1], "0");
    close(pfd[1]);
    pid_t pid4 = env_child(pfd4[1], "4");
    close(pfd4[1]);
    float *child = malloc((size_t)n * sizeof *child), *direct = malloc((size_t)n * sizeof *direct), *wino = malloc((size_t)n * sizeof *wino);
    int mode = -1, got = read_all(pfd[0], &mode, sizeof mode) && read_all(pfd[0], child, (size_t)n * sizeof *child), st = 0;
    waitpid(pid, &st, 0);
    ok(got && WIFEXITED(st) && WEXITSTATUS(st) == 0 && mode == JM_WINO_OFF, "JEMC_WINOGRAD=0: the mode reads off");
    float *child4 = malloc((size_t)n * sizeof *child4);
    int mode4 = -1, got4 = read_all(pfd4[0], &mode4, sizeof mode4) && read_all(pfd4[0], child4, (size_t)n * sizeof *child4);
    waitpid(pid4, &st, 0);
    ok(got4 && WIFEXITED(st) && WEXITSTATUS(st) == 0 && mode4 == JM_WINO_ALWAYS4, "JEMC_WINOGRAD=4: the mode reads always F(4x4)");

    /* the parent never set JEMC_WINOGRAD: the cost rule */
    ok(jm_wino_mode() == JM_WINO_COST, "JEMC_WINOGRAD unset: the cost rule");
    jm_conv_shape big = shape_of(&g_env_case), small = shape_of(&(wcase){8, 3, 32, 32, 16, 1});
    jm_conv_shape tiny = shape_of(&(wcase){8, 128, 8, 8, 128, 1}), mid = shape_of(&(wcase){8, 128, 16, 16, 128, 1}), s2 = big;
    s2.at[0] = s2.at[1] = 2, s2.OH = s2.OW = 16;
    ok(jm_wino_use(&big, 0) && jm_wino_use(&big, 1) && jm_wino_use(&mid, 0) == 2,
       "cost rule: 32->32 32x32 and 128->128 16x16 go to Winograd, the latter F(2x2)");
    ok(!jm_wino_use(&small, 0) && !jm_wino_use(&s2, 0), "cost rule: 3 input channels and stride 2 stay direct");
    /* 8x8 and 16x16 outputs: the rule depends on the micro-kernel's width (rt_winograd.c) */
    jm_conv_shape m64 = shape_of(&(wcase){8, 64, 16, 16, 64, 1}), m64_14 = shape_of(&(wcase){8, 64, 14, 14, 64, 1});
    jm_conv_shape t64 = shape_of(&(wcase){8, 64, 8, 8, 64, 1});
    const char *best = jm_rt_ukernel_get()->name;
    jm_conv_shape w64 = shape_of(&(wcase){8, 64, 32, 32, 64, 1}), w16 = shape_of(&(wcase){8, 16, 32, 32, 16, 1});
    if (jm_rt_ukernel_set("avx2+fma") == 0) {
        ok(jm_wino_use(&tiny, 0) == 2 && jm_wino_use(&m64, 1) == 2 && !jm_wino_use(&m64_14, 0) && !jm_wino_use(&t64, 0),
           "cost rule, avx2+fma: 128->128 8x8 and 64->64 16x16 go to F(2x2); 64->64 14x14 and 8x8 stay direct");
        ok(jm_wino_use(&big, 0) == 4 && jm_wino_use(&big, 1) == 4 && jm_wino_use(&w64, 0) == 4 && !jm_wino_use(&w16, 0),
           "cost rule, avx2+fma: 32->32 and 64->64 at 32x32 go to F(4x4); 16->16 stays direct");
    } else {
        skip(2, "this CPU has no AVX2 and FMA");
    }
    jm_rt_ukernel_set("generic");
    ok(!jm_wino_use(&tiny, 0) && !jm_wino_use(&m64, 0) && !jm_wino_use(&t64, 0) && jm_wino_use(&mid, 0) == 2 &&
           jm_wino_use(&big, 0) == 2 && jm_wino_use(&w64, 0) == 2,
       "cost rule, the other kernels: 128->128 8x8 and 64->64 16x16 stay direct; 128->128 16x16 and the 32x32 layers go to F(2x2)");
    jm_rt_ukernel_set(best);

    jm_wino_set_mode(JM_WINO_OFF);
    env_outputs(direct);
    jm_wino_set_mode(JM_WINO_ALWAYS);
    env_outputs(wino);
    float *wino4 = malloc((size_t)n * sizeof *wino4);
    jm_wino_set_mode(JM_WINO_ALWAYS4);
    env_outputs(wino4);
    ok(memcmp(wino4, wino, (size_t)n * sizeof *wino) != 0, "F(4x4)'s bits differ from F(2x2)'s (the mode picks the tile)");
    ok(!memcmp(child4, wino4, (size_t)n * sizeof *wino4), "JEMC_WINOGRAD=4 gives F(4x4)'s exact bits");
    free(wino4), free(child4);
    ok(!memcmp(child, direct, (size_t)n * sizeof *child), "JEMC_WINOGRAD=0 gives the direct kernels' exact bits");
    ok(memcmp(wino, direct, (size_t)n * sizeof *wino) != 0, "(and Winograd's bits differ from them: the check means something)");
    free(child), free(direct), free(wino);

    static const wcase cases[] = {
        {1, 1, 4, 4, 1, 1},      {1, 3, 5, 7, 2, 0},     {3, 5, 9, 11, 7, 1},   {3, 17, 10, 13, 19, 2},
        {1, 16, 8, 8, 16, 1},    {4, 20, 12, 9, 33, 1},  {3, 33, 15, 15, 17, 0}, {2, 8, 6, 5, 9, 3},
        {4, 32, 28, 28, 64, 1},  {3, 64, 16, 16, 64, 1}, {1, 128, 8, 8, 128, 1}, {5, 40, 32, 32, 24, 1},
    };
    for (int m = 2; m <= 4; m += 2)
        for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) check_case(&cases[i], m);
    for (int m = 2; m <= 4; m += 2)
        tap_diag("F(%dx%d,3x3): largest error relative to the tensor's scale: fwd %.3g, bwd_data %.3g", m, m,
                 g_worst[m == 4][0], g_worst[m == 4][1]);

    /* the same on the other FMA micro-kernel, where this CPU has it */
    if (jm_rt_ukernel_set("avx2+fma") == 0) {
        check_case(&cases[5], 2);
        check_case(&cases[5], 4);
        jm_rt_ukernel_set(NULL);
    } else {
        skip(14, "no AVX2+FMA");
    }
    /* and on the portable kernel (other lane counts: the tiles' rounding to NR) */
    jm_rt_ukernel_set("generic");
    check_case(&cases[5], 2);
    check_case(&cases[5], 4);
    jm_rt_ukernel_set(NULL);
    jm_wino_set_mode(-1);
    return tap_done();
}
