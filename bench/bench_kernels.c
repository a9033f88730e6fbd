/* bench_kernels.c — GFLOP/s of the runtime's conv2d and matmul kernels at the
 * shapes of an MNIST CNN and of WRN-28-2 (batch 64), on 1 and 2 threads, next to
 * the machine's peak. Not run by the tests; see bench/README-kernels.md.
 *
 *   gcc -std=c11 -O2 -D_GNU_SOURCE -fopenmp -Iruntime bench/bench_kernels.c \
 *       runtime/engine/rt_gemm.c runtime/engine/rt_conv.c runtime/engine/rt_pool.c runtime/engine/rt_workspace.c runtime/engine/rt_winograd.c -lm -o /tmp/bench_kernels
 *   /tmp/bench_kernels [--kernel avx512f|avx2+fma|generic] [--threads 1,2] [--seconds 0.5] [--set wrn|winograd|winograd-error] [--batch 8]
 *
 * --set wrn times every convolution shape of WRN-28-2 instead and adds up the
 * milliseconds of one forward pass's worth of each op (weighted by occurrences).
 *
 * --set winograd times fwd and bwd_data of the stride-1 3x3 layers (WRN-28, MNIST,
 * and small ones near the cost rule's edge) with Winograd F(2x2,3x3) off
 * (direct kernels) and on (forced, rt_winograd.c), at --batch (default 8):
 * ms per call and effective GFLOP/s (the direct convolution's FLOPs / time).
 * The Winograd mode is set through jm_wino_set_mode, so JEMC_WINOGRAD does not
 * matter here; for the other sets it does (unset: the cost rule).
 *
 * --set winograd-error measures instead the error of the same layers (padding 1,
 * --batch images, one thread): max |got - ref| / max |ref| of each output tensor
 * against a double-precision direct convolution, for the direct kernel,
 * F(2x2,3x3) and F(4x4,3x3); x and dy uniform in [-0.5, 0.5), w the same scaled
 * by 1/sqrt(9C) (a He-like initialisation's scale).
 *
 * Each kernel runs inside one parallel region (as in the executor), repeatedly,
 * for about --seconds; the time per call is the best of 5 such runs (the least
 * disturbed by other work on the machine). */
#include "engine/rt_gemm_int.h"
#include "engine/rt_kernels.h"
#include "engine/rt_winograd.h"
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#if defined(__x86_64__)
#include <immintrin.h>
#endif

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* n floats uniform in [-0.5, 0.5) from an LCG seeded by s, 64-byte aligned. */
static float *rnd_seeded(int64_t n, uint32_t s) {
    float *p = aligned_alloc(64, (size_t)((n * 4 + 63) / 64 * 64 + 64));
    for (int64_t i = 0; i < n; i++) s = s * 1664525u + 1013904223u, p[i] = (float)(s >> 8) / 16777216.0f - 0.5f;
    return p;
}

static float *rnd(int64_t n) { return rnd_seeded(n, 12345); }

/* ---- peak ---- */

static double cpuinfo_mhz(void) {
    FILE *f = fopen("/proc/cpuinfo", "r");
    char line[512];
    double mhz = 0;
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, "cpu MHz", 7) && strchr(line, ':')) {
            mhz = atof(strchr(line, ':') + 1);
            break;
        }
    if (f) fclose(f);
    return mhz;
}

#if defined(__x86_64__)
/* FLOP/s of one thread issuing independent FMAs back to back (12 chains). */
__attribute__((target("avx512f"))) static double fma_peak_512(long n) {
    __m512 a[12], x = _mm512_set1_ps(0.999f), y = _mm512_set1_ps(1e-7f);
    for (int i = 0; i < 12; i++) a[i] = _mm512_set1_ps((float)i);
    double t = now();
    for (long k = 0; k < n; k++)
#pragma GCC unroll 12
        for (int i = 0; i < 12; i++) a[i] = _mm512_fmadd_ps(a[i], x, y);
    t = now() - t;
    volatile float sink = 0;
    for (int i = 0; i < 12; i++) sink += _mm512_reduce_add_ps(a[i]);
    return 12.0 * 16 * 2 * (double)n / t;
}
__attribute__((target("avx2,fma"))) static double fma_peak_256(long n) {
    __m256 a[12], x = _mm256_set1_ps(0.999f), y = _mm256_set1_ps(1e-7f);
    for (int i = 0; i < 12; i++) a[i] = _mm256_set1_ps((float)i);
    double t = now();
    for (long k = 0; k < n; k++)
#pragma GCC unroll 12
        for (int i = 0; i < 12; i++) a[i] = _mm256_fmadd_ps(a[i], x, y);
    t = now() - t;
    float o[8];
    volatile float sink = 0;
    for (int i = 0; i < 12; i++) _mm256_storeu_ps(o, a[i]), sink += o[0];
    return 12.0 * 8 * 2 * (double)n / t;
}
#endif

/* ---- timed calls ---- */

typedef struct {
    int op;                  /* 0 fwd, 1 bwd_data, 2 bwd_filter, 3 matmul */
    jm_conv_shape s;
    float *x, *w, *y;        /* conv: x, w, y (= dy); matmul: A, B, C */
    float *dx, *dw;
    int64_t M, N, K;
} job;

static int call(job *j) {
    switch (j->op) {
    case 0: return jm_rt_conv2d_fwd_f32(&j->s, j->x, j->w, j->y, NULL, NULL, 0);
    case 1: return jm_rt_conv2d_bwd_data_f32(&j->s, j->y, j->w, j->dx);
    case 2: return jm_rt_conv2d_bwd_filter_f32(&j->s, j->x, j->y, j->dw);
    default: return jm_rt_matmul_f32(1, j->M, j->N, j->K, 0, 1, j->x, 0, j->w, 0, j->y, 0);
    }
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Seconds per call on `nth` threads: the best of 5 runs of about `secs`/5 each. */
static double time_job(job *j, int nth, double secs) {
    double per[5];
    int reps = 1;
    for (int r = -1; r < 5; r++) {
        double t = 0;
#pragma omp parallel num_threads(nth)
        {
            call(j);   /* warm up: caches, workspace */
#pragma omp barrier
#pragma omp master
            t = now();
            for (int i = 0; i < reps; i++) call(j);
#pragma omp master
            t = now() - t;
        }
        if (r < 0) {   /* calibration run: pick the repetitions */
            reps = t > 0 ? (int)(secs / 5 / t) : 100;
            if (reps < 1) reps = 1;
            continue;
        }
        per[r] = t / reps;
    }
    qsort(per, 5, sizeof *per, cmp_double);
    return per[0];
}

typedef struct {
    const char *name;
    int64_t C, H, O, K, stride, pad;
    int count;               /* --set wrn: convolutions of this shape in one WRN-28-2 forward */
} conv_def;

/* Stride-1 3x3 layers for --set winograd: WRN-28-2/-10 widths, MNIST, and a few
   small ones near the cost rule's edge. */
static const conv_def wino_convs[] = {
    {"wrn 16->16 32", 16, 32, 16, 3, 1, 1, 0},
    {"wrn 32->32 32", 32, 32, 32, 3, 1, 1, 0},
    {"wrn 64->64 16", 64, 16, 64, 3, 1, 1, 0},
    {"wrn 128->128 8", 128, 8, 128, 3, 1, 1, 0},
    {"wrn 64->64 32", 64, 32, 64, 3, 1, 1, 0},
    {"wrn 128->128 16", 128, 16, 128, 3, 1, 1, 0},
    {"mnist 32->32 28", 32, 28, 32, 3, 1, 1, 0},
    {"mnist 32->64 28", 32, 28, 64, 3, 1, 1, 0},
    {"mnist 64->64 14", 64, 14, 64, 3, 1, 1, 0},
    {"8->8 32", 8, 32, 8, 3, 1, 1, 0},
    {"16->16 8", 16, 8, 16, 3, 1, 1, 0},
    {"32->32 8", 32, 8, 32, 3, 1, 1, 0},
    {"64->64 4", 64, 4, 64, 3, 1, 1, 0},
    {"3->16 32", 3, 32, 16, 3, 1, 1, 0},
};

/* --set winograd: direct vs Winograd per layer, fwd and bwd_data. */
static void bench_winograd(const int *nths, int nnth, double secs, int64_t N) {
    printf("batch %lld; ms per call (effective GFLOP/s = direct conv FLOPs / time)\n", (long long)N);
    printf("%-18s %-9s %4s %16s %16s %16s %8s %8s\n", "layer", "op", "thr", "direct", "F(2x2,3x3)", "F(4x4,3x3)", "F2/dir", "F4/dir");
    for (size_t c = 0; c < sizeof wino_convs / sizeof *wino_convs; c++) {
        const conv_def *d = &wino_convs[c];
        job j = {0, {N, d->C, d->H, d->H, d->O, 3, 3, d->H, d->H, {1, 1, 1, 1, 1, 1, 1}}, NULL, NULL, NULL, NULL, NULL, 0, 0, 0};
        j.x = rnd(N * d->C * d->H * d->H), j.dx = rnd(N * d->C * d->H * d->H);
        j.w = rnd(d->O * d->C * 9), j.y = rnd(N * d->O * d->H * d->H);
        double flop = 2.0 * N * d->O * d->H * d->H * d->C * 9;
        for (j.op = 0; j.op < 2; j.op++)
            for (int t = 0; t < nnth; t++) {
                jm_wino_set_mode(JM_WINO_OFF);
                double td = time_job(&j, nths[t], secs);
                jm_wino_set_mode(JM_WINO_ALWAYS);
                double tw = time_job(&j, nths[t], secs);
                jm_wino_set_mode(JM_WINO_ALWAYS4);
                double t4 = time_job(&j, nths[t], secs);
                printf("%-18s %-9s %4d %7.3f (%6.1f) %7.3f (%6.1f) %7.3f (%6.1f) %7.2fx %7.2fx\n", d->name,
                       j.op ? "bwd_data" : "fwd", nths[t], td * 1e3, flop / td / 1e9, tw * 1e3, flop / tw / 1e9, t4 * 1e3,
                       flop / t4 / 1e9, td / tw, td / t4);
                fflush(stdout);
            }
        free(j.x), free(j.dx), free(j.w), free(j.y);
    }
    jm_wino_set_mode(-1);
}

/* Direct convolution in double (padding 1, stride 1, 3x3): y from x (forward) and
   dx from dy (bwd_data). */
static void ref_conv3(const jm_conv_shape *s, const float *x, const float *w, const float *dy, double *y, double *dx) {
    memset(y, 0, (size_t)(s->N * s->O * s->OH * s->OW) * sizeof *y);
    memset(dx, 0, (size_t)(s->N * s->C * s->H * s->W) * sizeof *dx);
    for (int64_t n = 0; n < s->N; n++)
        for (int64_t o = 0; o < s->O; o++)
            for (int64_t c = 0; c < s->C; c++)
                for (int64_t k = 0; k < 9; k++) {
                    double wv = w[(o * s->C + c) * 9 + k];
                    for (int64_t oy = 0; oy < s->OH; oy++) {
                        int64_t iy = oy - 1 + k / 3;
                        if (iy < 0 || iy >= s->H) continue;
                        for (int64_t ox = 0; ox < s->OW; ox++) {
                            int64_t ix = ox - 1 + k % 3;
                            if (ix < 0 || ix >= s->W) continue;
                            int64_t xi = ((n * s->C + c) * s->H + iy) * s->W + ix, yi = ((n * s->O + o) * s->OH + oy) * s->OW + ox;
                            y[yi] += x[xi] * wv;
                            dx[xi] += dy[yi] * wv;
                        }
                    }
                }
}

static double rel_err(const float *got, const double *ref, int64_t n) {
    double e = 0, m = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = got[i] - ref[i], a = ref[i] < 0 ? -ref[i] : ref[i];
        e = (d < 0 ? -d : d) > e ? (d < 0 ? -d : d) : e;
        m = a > m ? a : m;
    }
    return m > 0 ? e / m : e;
}

/* --set winograd-error: the error of each variant per layer, fwd and bwd_data. */
static void bench_winograd_error(int64_t N) {
    static const int modes[3] = {JM_WINO_OFF, JM_WINO_ALWAYS, JM_WINO_ALWAYS4};
    printf("batch %lld, padding 1; max |err| / max |ref| against double\n", (long long)N);
    printf("%-18s %-9s %12s %12s %12s\n", "layer", "op", "direct", "F(2x2,3x3)", "F(4x4,3x3)");
    for (size_t c = 0; c < sizeof wino_convs / sizeof *wino_convs; c++) {
        const conv_def *d = &wino_convs[c];
        job j = {0, {N, d->C, d->H, d->H, d->O, 3, 3, d->H, d->H, {1, 1, 1, 1, 1, 1, 1}}, NULL, NULL, NULL, NULL, NULL, 0, 0, 0};
        int64_t nx = N * d->C * d->H * d->H, ny = N * d->O * d->H * d->H, nw = d->O * d->C * 9;
        j.x = rnd_seeded(nx, 1), j.dx = rnd_seeded(nx, 2), j.w = rnd_seeded(nw, 3), j.y = rnd_seeded(ny, 4);
        for (int64_t i = 0; i < nw; i++) j.w[i] /= sqrtf(9.0f * (float)d->C);
        float *dy = rnd_seeded(ny, 5);
        double *ry = malloc((size_t)ny * sizeof *ry), *rdx = malloc((size_t)nx * sizeof *rdx);
        ref_conv3(&j.s, j.x, j.w, dy, ry, rdx);
        double e[2][3];
        for (int m = 0; m < 3; m++) {
            jm_wino_set_mode(modes[m]);
            j.op = 0;
            call(&j);
            e[0][m] = rel_err(j.y, ry, ny);
            memcpy(j.y, dy, (size_t)ny * sizeof *dy);   /* bwd_data reads dy from j.y */
            j.op = 1;
            call(&j);
            e[1][m] = rel_err(j.dx, rdx, nx);
        }
        for (int op = 0; op < 2; op++)
            printf("%-18s %-9s %12.2e %12.2e %12.2e\n", d->name, op ? "bwd_data" : "fwd", e[op][0], e[op][1], e[op][2]);
        fflush(stdout);
        free(j.x), free(j.dx), free(j.w), free(j.y), free(dy), free(ry), free(rdx);
    }
    jm_wino_set_mode(-1);
}

/* Every convolution shape of WRN-28-2 (graphs/jem_wrn28.graph, widen 2), with how
   many times it occurs in one forward pass (28 in all). */
static const conv_def wrn_convs[] = {
    {"conv1 3->16 3x3 32", 3, 32, 16, 3, 1, 1, 1},
    {"16->32 3x3 32", 16, 32, 32, 3, 1, 1, 1},
    {"32->32 3x3 32", 32, 32, 32, 3, 1, 1, 7},
    {"sc 16->32 1x1 32", 16, 32, 32, 1, 1, 0, 1},
    {"32->64 3x3 32", 32, 32, 64, 3, 1, 1, 1},
    {"64->64 3x3 s2 32->16", 64, 32, 64, 3, 2, 1, 1},
    {"sc 32->64 1x1 s2 32->16", 32, 32, 64, 1, 2, 0, 1},
    {"64->64 3x3 16", 64, 16, 64, 3, 1, 1, 6},
    {"64->128 3x3 16", 64, 16, 128, 3, 1, 1, 1},
    {"128->128 3x3 s2 16->8", 128, 16, 128, 3, 2, 1, 1},
    {"sc 64->128 1x1 s2 16->8", 64, 16, 128, 1, 2, 0, 1},
    {"128->128 3x3 8", 128, 8, 128, 3, 1, 1, 6},
};

int main(int argc, char **argv) {
    const char *kernel = NULL, *threads = "1,2", *set = "all";
    double secs = 0.5;
    int64_t batch = 8;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--kernel")) kernel = argv[i + 1];
        else if (!strcmp(argv[i], "--threads")) threads = argv[i + 1];
        else if (!strcmp(argv[i], "--seconds")) secs = atof(argv[i + 1]);
        else if (!strcmp(argv[i], "--set")) set = argv[i + 1];
        else if (!strcmp(argv[i], "--batch")) batch = atoll(argv[i + 1]);
    }
    if (kernel && jm_rt_ukernel_set(kernel)) {
        fprintf(stderr, "kernel %s is not supported here\n", kernel);
        return 1;
    }
    int nths[8], nnth = 0;
    for (const char *p = threads; *p && nnth < 8; p = strchr(p, ',') ? strchr(p, ',') + 1 : p + strlen(p)) nths[nnth++] = atoi(p);

    double mhz = cpuinfo_mhz(), fma1 = 0;
    const jm_rt_ukernel *uk = jm_rt_ukernel_get();
#if defined(__x86_64__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f")) fma1 = fma_peak_512(200000000L / 4);
    else if (__builtin_cpu_supports("avx2")) fma1 = fma_peak_256(200000000L / 4);
#endif
    int ncpu = omp_get_num_procs();
    printf("micro-kernel %s (%dx%d), %d CPUs\n", uk->name, uk->mr, uk->nr, ncpu);
    printf("clock from /proc/cpuinfo: %.0f MHz -> nominal peak %d cores x 2 FMA x 16 floats x 2 x clock = %.1f GFLOP/s\n",
           mhz, ncpu, ncpu * 2 * 16 * 2 * mhz / 1e3);
    printf("measured FMA throughput: %.1f GFLOP/s per core (%.1f FLOP/cycle at the cpuinfo clock)\n\n",
           fma1 / 1e9, mhz > 0 ? fma1 / (mhz * 1e6) : 0);

    if (!strcmp(set, "winograd-error")) {
        bench_winograd_error(batch);
        return 0;
    }
    if (!strcmp(set, "winograd")) {
        bench_winograd(nths, nnth, secs, batch);
        return 0;
    }
    static const conv_def convs[] = {
        {"mnist conv1 1->32 3x3 s1 28", 1, 28, 32, 3, 1, 1, 0},
        {"mnist conv2 32->64 3x3 s2 28", 32, 28, 64, 3, 2, 1, 0},
        {"mnist conv3 64->128 3x3 s2 14", 64, 14, 128, 3, 2, 1, 0},
        {"wrn 32->32 3x3 s1 32", 32, 32, 32, 3, 1, 1, 0},
        {"wrn 64->64 3x3 s1 16", 64, 16, 64, 3, 1, 1, 0},
        {"wrn 128->128 3x3 s1 8", 128, 8, 128, 3, 1, 1, 0},
        {"wrn 1x1 s2 32->64 32->16", 32, 32, 64, 1, 2, 0, 0},
    };
    int wrn = !strcmp(set, "wrn");
    const conv_def *defs = wrn ? wrn_convs : convs;
    size_t ndefs = wrn ? sizeof wrn_convs / sizeof *wrn_convs : sizeof convs / sizeof *convs;
    double total[3][8] = {{0}};   /* --set wrn: ms per forward pass's worth of each op */
    const int64_t N = 64;
    printf("%-32s %-10s", "GFLOP/s (batch 64)", "op");
    for (int t = 0; t < nnth; t++) printf(" %7d thr", nths[t]);
    printf("\n");
    for (size_t c = 0; c < ndefs; c++) {
        const conv_def *d = &defs[c];
        int64_t OH = (d->H + 2 * d->pad - d->K) / d->stride + 1;
        job j = {0, {N, d->C, d->H, d->H, d->O, d->K, d->K, OH, OH, {d->stride, d->stride, d->pad, d->pad, 1, 1, 1}},
                 NULL, NULL, NULL, NULL, NULL, 0, 0, 0};
        j.x = rnd(N * d->C * d->H * d->H), j.dx = rnd(N * d->C * d->H * d->H);
        j.w = rnd(d->O * d->C * d->K * d->K), j.dw = rnd(d->O * d->C * d->K * d->K);
        j.y = rnd(N * d->O * OH * OH);
        double flop = 2.0 * N * d->O * OH * OH * d->C * d->K * d->K;
        static const char *ops[] = {"fwd", "bwd_data", "bwd_filter"};
        for (j.op = 0; j.op < 3; j.op++) {
            printf("%-32s %-10s", d->name, ops[j.op]);
            for (int t = 0; t < nnth; t++) {
                double sec = time_job(&j, nths[t], secs);
                total[j.op][t] += d->count * sec * 1e3;
                printf(" %11.1f", flop / sec / 1e9);
            }
            printf("\n");
            fflush(stdout);
        }
        free(j.x), free(j.dx), free(j.w), free(j.dw), free(j.y);
    }
    if (wrn) {
        printf("\nms per WRN-28-2 pass (28 convolutions, batch 64)");
        for (int t = 0; t < nnth; t++) printf(" %7d thr", nths[t]);
        printf("\n");
        for (int op = 0; op < 3; op++) {
            printf("%-47s", op == 0 ? "fwd" : op == 1 ? "bwd_data" : "bwd_filter");
            for (int t = 0; t < nnth; t++) printf(" %11.2f", total[op][t]);
            printf("\n");
        }
        return 0;
    }
    job m = {3, {0}, rnd(64 * 6272), rnd(10 * 6272), rnd(64 * 10), NULL, NULL, 64, 10, 6272};
    printf("%-32s %-10s", "matmul [64,6272]x[10,6272]^T", "");
    for (int t = 0; t < nnth; t++) printf(" %11.1f", 2.0 * 64 * 10 * 6272 / time_job(&m, nths[t], secs) / 1e9);
    printf("\n");
    free(m.x), free(m.w), free(m.y);
    return 0;
}
