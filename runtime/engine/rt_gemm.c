/* rt_gemm.c — the SGEMM micro-kernels (AVX-512, AVX2+FMA, plain C), their
 * run-time dispatch, a blocked transpose, panel packing and jm_rt_matmul_f32.
 *
 * Each micro-kernel keeps an MR x NR tile of C in vector registers; per k step it
 * loads NR contiguous B floats and broadcasts one A element per row (through the
 * offset tables of rt_gemm_int.h). The instruction-set variants are compiled with
 * target attributes from one always-inline body per instruction set and picked
 * with __builtin_cpu_supports, so the library needs no -march flag and runs on any
 * x86-64 (and, through the plain-C kernel, elsewhere). */
#pragma GCC optimize("O3")
#include "rt_gemm_int.h"
#include "rt_kernels.h"
#include <omp.h>
#include <string.h>
#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define JM_RT_X86 1
#endif

#define JM_KARGS int64_t kc, const float *a, const int64_t *roff, const int64_t *koff, const float *b, \
                 const int64_t *boff, float *c, int64_t rsc, int64_t csc, int m, int n, int accumulate
#define JM_KPASS kc, a, roff, koff, b, boff, c, rsc, csc, m, n, accumulate
#define JM_RT_PF 12   /* software prefetch distance, in k steps */

/* Stores a register tile spilled to `t` (row stride NR) into the m x n corner of
   C, adding when accumulating: edge tiles and C with a column stride. */
static inline void jm_rt_tile_out(const float *t, int NR, float *c, int64_t rsc, int64_t csc,
                                  int m, int n, int accumulate) {
    for (int r = 0; r < m; r++)
        for (int j = 0; j < n; j++) {
            float *cp = c + r * rsc + j * csc;
            *cp = accumulate ? *cp + t[r * NR + j] : t[r * NR + j];
        }
}

static void jm_rt_transpose_scalar(const float *s, int64_t lds, float *d, int64_t ldd, int64_t rows, int64_t cols) {
    for (int64_t i0 = 0; i0 < rows; i0 += 16)           /* 16 x 16 blocks stay in L1 */
        for (int64_t j0 = 0; j0 < cols; j0 += 16)
            for (int64_t i = i0; i < jm_rt_min(rows, i0 + 16); i++)
                for (int64_t j = j0; j < jm_rt_min(cols, j0 + 16); j++) d[j * ldd + i] = s[i * lds + j];
}

/* ---- plain C: 4 x 8, vectorised by the compiler for whatever the baseline is ---- */
#define JM_G_MR 4
#define JM_G_NR 8
static void jm_rt_kern_generic(JM_KARGS) {
    float acc[JM_G_MR][JM_G_NR] = {{0}};
    const float *ar[JM_G_MR];
    for (int r = 0; r < JM_G_MR; r++) ar[r] = a + roff[r < m ? r : 0];
    for (int64_t k = 0; k < kc; k++) {
        const float *bk = b + boff[k];
        for (int r = 0; r < JM_G_MR; r++) {
            float x = ar[r][koff[k]];
            for (int j = 0; j < JM_G_NR; j++) acc[r][j] += x * bk[j];
        }
    }
    jm_rt_tile_out(&acc[0][0], JM_G_NR, c, rsc, csc, m, n, accumulate);
}

#ifdef JM_RT_X86
/* ---- AVX-512F: MR x (16*NV) tiles; instantiated as 8 x 32 and 1 x 128 ---- */
__attribute__((target("avx512f"), always_inline))
static inline void jm_rt_k512(const int MR, const int NV, JM_KARGS) {
    __m512 acc[JM_RT_MAX_MR][8];
    const float *ar[JM_RT_MAX_MR];
#pragma GCC unroll 16
    for (int r = 0; r < MR; r++) {
        ar[r] = a + roff[r < m ? r : 0];
#pragma GCC unroll 8
        for (int v = 0; v < NV; v++) acc[r][v] = _mm512_setzero_ps();
    }
    for (int64_t k = 0; k < kc; k++) {
        const float *bk = b + boff[k];
        int64_t ko = koff[k];
        if (k + JM_RT_PF < kc) {   /* the table-addressed rows defeat the hardware prefetcher a little */
            __builtin_prefetch(b + boff[k + JM_RT_PF]);
            __builtin_prefetch(ar[0] + koff[k + JM_RT_PF]);
            __builtin_prefetch(ar[MR - 1] + koff[k + JM_RT_PF]);
        }
        __m512 bv[8];
#pragma GCC unroll 8
        for (int v = 0; v < NV; v++) bv[v] = _mm512_loadu_ps(bk + 16 * v);
#pragma GCC unroll 16
        for (int r = 0; r < MR; r++) {
            __m512 x = _mm512_set1_ps(ar[r][ko]);
#pragma GCC unroll 8
            for (int v = 0; v < NV; v++) acc[r][v] = _mm512_fmadd_ps(x, bv[v], acc[r][v]);
        }
    }
    if (m == MR && n == 16 * NV && csc == 1) {
#pragma GCC unroll 16
        for (int r = 0; r < MR; r++)
#pragma GCC unroll 8
            for (int v = 0; v < NV; v++) {
                float *cp = c + r * rsc + 16 * v;
                _mm512_storeu_ps(cp, accumulate ? _mm512_add_ps(_mm512_loadu_ps(cp), acc[r][v]) : acc[r][v]);
            }
        return;
    }
    float t[JM_RT_MAX_MR * 128] __attribute__((aligned(64)));
#pragma GCC unroll 16
    for (int r = 0; r < MR; r++)
#pragma GCC unroll 8
        for (int v = 0; v < NV; v++) _mm512_store_ps(t + r * 16 * NV + 16 * v, acc[r][v]);
    jm_rt_tile_out(t, 16 * NV, c, rsc, csc, m, n, accumulate);
}
__attribute__((target("avx512f"))) static void jm_rt_kern_512_8x32(JM_KARGS) { jm_rt_k512(8, 2, JM_KPASS); }
__attribute__((target("avx512f"))) static void jm_rt_kern_512_1x128(JM_KARGS) { jm_rt_k512(1, 8, JM_KPASS); }

/* 16 x 16 blocks: pairs of rows interleaved by 32 then 64 bits, then 128-bit lanes
   exchanged among groups of four registers. */
__attribute__((target("avx512f")))
static void jm_rt_transpose_512(const float *s, int64_t lds, float *d, int64_t ldd, int64_t rows, int64_t cols) {
    int64_t R = rows / 16 * 16, C = cols / 16 * 16;
    for (int64_t i0 = 0; i0 < R; i0 += 16)
        for (int64_t j0 = 0; j0 < C; j0 += 16) {
            __m512 r[16], t[16];
#pragma GCC unroll 16
            for (int i = 0; i < 16; i++) r[i] = _mm512_loadu_ps(s + (i0 + i) * lds + j0);
#pragma GCC unroll 8
            for (int i = 0; i < 8; i++) {
                t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
                t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
            }
#pragma GCC unroll 4
            for (int g = 0; g < 4; g++) {   /* r[4g + j]: lane L holds column 4L + j of rows 4g..4g+3 */
                __m512d a0 = _mm512_castps_pd(t[4 * g]), a1 = _mm512_castps_pd(t[4 * g + 1]);
                __m512d a2 = _mm512_castps_pd(t[4 * g + 2]), a3 = _mm512_castps_pd(t[4 * g + 3]);
                r[4 * g] = _mm512_castpd_ps(_mm512_unpacklo_pd(a0, a2));
                r[4 * g + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a0, a2));
                r[4 * g + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(a1, a3));
                r[4 * g + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(a1, a3));
            }
#pragma GCC unroll 4
            for (int j = 0; j < 4; j++) {
                __m512 x0 = _mm512_shuffle_f32x4(r[j], r[4 + j], 0x44), x1 = _mm512_shuffle_f32x4(r[j], r[4 + j], 0xEE);
                __m512 x2 = _mm512_shuffle_f32x4(r[8 + j], r[12 + j], 0x44), x3 = _mm512_shuffle_f32x4(r[8 + j], r[12 + j], 0xEE);
                _mm512_storeu_ps(d + (j0 + j) * ldd + i0, _mm512_shuffle_f32x4(x0, x2, 0x88));
                _mm512_storeu_ps(d + (j0 + 4 + j) * ldd + i0, _mm512_shuffle_f32x4(x0, x2, 0xDD));
                _mm512_storeu_ps(d + (j0 + 8 + j) * ldd + i0, _mm512_shuffle_f32x4(x1, x3, 0x88));
                _mm512_storeu_ps(d + (j0 + 12 + j) * ldd + i0, _mm512_shuffle_f32x4(x1, x3, 0xDD));
            }
        }
    if (C < cols) jm_rt_transpose_scalar(s + C, lds, d + C * ldd, ldd, R, cols - C);
    if (R < rows) jm_rt_transpose_scalar(s + R * lds, lds, d + R, ldd, rows - R, cols);
}

/* ---- AVX2 + FMA (x86-64-v3): MR x (8*NV); 6 x 16 and 1 x 64 ---- */
__attribute__((target("avx2,fma"), always_inline))
static inline void jm_rt_k256(const int MR, const int NV, JM_KARGS) {
    __m256 acc[JM_RT_MAX_MR][8];
    const float *ar[JM_RT_MAX_MR];
#pragma GCC unroll 16
    for (int r = 0; r < MR; r++) {
        ar[r] = a + roff[r < m ? r : 0];
#pragma GCC unroll 8
        for (int v = 0; v < NV; v++) acc[r][v] = _mm256_setzero_ps();
    }
    /* No software prefetch here, unlike the AVX-512 kernel: with 8 lanes a k step
       is only 12 FMAs (6 cycles), and the prefetches' table loads, compare and
       branch made the step load-port and front-end bound. Without them the
       direct convolutions ran 15-30% faster on a znver3 EPYC (bench_kernels
       --threads 1, best of 4 rounds: jem_mnist's conv2 59 -> 74 GFLOP/s,
       WRN-28-2's bwd_filter 63 -> 80; bench/README-kernels.md). */
    for (int64_t k = 0; k < kc; k++) {
        const float *bk = b + boff[k];
        int64_t ko = koff[k];
        __m256 bv[8];
#pragma GCC unroll 8
        for (int v = 0; v < NV; v++) bv[v] = _mm256_loadu_ps(bk + 8 * v);
#pragma GCC unroll 16
        for (int r = 0; r < MR; r++) {
            __m256 x = _mm256_broadcast_ss(&ar[r][ko]);
#pragma GCC unroll 8
            for (int v = 0; v < NV; v++) acc[r][v] = _mm256_fmadd_ps(x, bv[v], acc[r][v]);
        }
    }
    if (m == MR && n == 8 * NV && csc == 1) {
#pragma GCC unroll 16
        for (int r = 0; r < MR; r++)
#pragma GCC unroll 8
            for (int v = 0; v < NV; v++) {
                float *cp = c + r * rsc + 8 * v;
                _mm256_storeu_ps(cp, accumulate ? _mm256_add_ps(_mm256_loadu_ps(cp), acc[r][v]) : acc[r][v]);
            }
        return;
    }
    float t[JM_RT_MAX_MR * 64] __attribute__((aligned(32)));
#pragma GCC unroll 16
    for (int r = 0; r < MR; r++)
#pragma GCC unroll 8
        for (int v = 0; v < NV; v++) _mm256_store_ps(t + r * 8 * NV + 8 * v, acc[r][v]);
    jm_rt_tile_out(t, 8 * NV, c, rsc, csc, m, n, accumulate);
}
__attribute__((target("avx2,fma"))) static void jm_rt_kern_256_6x16(JM_KARGS) { jm_rt_k256(6, 2, JM_KPASS); }
__attribute__((target("avx2,fma"))) static void jm_rt_kern_256_1x64(JM_KARGS) { jm_rt_k256(1, 8, JM_KPASS); }

/* 8 x 8 blocks: unpack, shuffle, then exchange 128-bit halves. */
__attribute__((target("avx2")))
static void jm_rt_transpose_256(const float *s, int64_t lds, float *d, int64_t ldd, int64_t rows, int64_t cols) {
    int64_t R = rows / 8 * 8, C = cols / 8 * 8;
    for (int64_t i0 = 0; i0 < R; i0 += 8)
        for (int64_t j0 = 0; j0 < C; j0 += 8) {
            __m256 r[8], t[8], u[8];
#pragma GCC unroll 8
            for (int i = 0; i < 8; i++) r[i] = _mm256_loadu_ps(s + (i0 + i) * lds + j0);
#pragma GCC unroll 4
            for (int i = 0; i < 4; i++) {
                t[2 * i] = _mm256_unpacklo_ps(r[2 * i], r[2 * i + 1]);
                t[2 * i + 1] = _mm256_unpackhi_ps(r[2 * i], r[2 * i + 1]);
            }
#pragma GCC unroll 2
            for (int g = 0; g < 2; g++) {   /* u[4g + j]: half h holds column 4h + j of rows 4g..4g+3 */
                u[4 * g] = _mm256_shuffle_ps(t[4 * g], t[4 * g + 2], 0x44);
                u[4 * g + 1] = _mm256_shuffle_ps(t[4 * g], t[4 * g + 2], 0xEE);
                u[4 * g + 2] = _mm256_shuffle_ps(t[4 * g + 1], t[4 * g + 3], 0x44);
                u[4 * g + 3] = _mm256_shuffle_ps(t[4 * g + 1], t[4 * g + 3], 0xEE);
            }
#pragma GCC unroll 4
            for (int j = 0; j < 4; j++) {
                _mm256_storeu_ps(d + (j0 + j) * ldd + i0, _mm256_permute2f128_ps(u[j], u[4 + j], 0x20));
                _mm256_storeu_ps(d + (j0 + 4 + j) * ldd + i0, _mm256_permute2f128_ps(u[j], u[4 + j], 0x31));
            }
        }
    if (C < cols) jm_rt_transpose_scalar(s + C, lds, d + C * ldd, ldd, R, cols - C);
    if (R < rows) jm_rt_transpose_scalar(s + R * lds, lds, d + R, ldd, rows - R, cols);
}
#endif

static const jm_rt_ukernel jm_rt_uk_generic = {JM_G_MR, JM_G_NR, jm_rt_kern_generic, JM_G_MR, JM_G_NR, jm_rt_kern_generic,
                                              jm_rt_transpose_scalar, "generic"};
#ifdef JM_RT_X86
static const jm_rt_ukernel jm_rt_uk_avx512 = {8, 32, jm_rt_kern_512_8x32, 1, 128, jm_rt_kern_512_1x128,
                                             jm_rt_transpose_512, "avx512f"};
static const jm_rt_ukernel jm_rt_uk_avx2 = {6, 16, jm_rt_kern_256_6x16, 1, 64, jm_rt_kern_256_1x64,
                                           jm_rt_transpose_256, "avx2+fma"};
#endif

/* The kernel of the given name when this CPU runs it (NULL name: the best one). */
static const jm_rt_ukernel *jm_rt_ukernel_find(const char *name) {
#ifdef JM_RT_X86
    __builtin_cpu_init();
    int has512 = __builtin_cpu_supports("avx512f");
    int has2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    if (!name) return has512 ? &jm_rt_uk_avx512 : has2 ? &jm_rt_uk_avx2 : &jm_rt_uk_generic;
    if (!strcmp(name, jm_rt_uk_avx512.name)) return has512 ? &jm_rt_uk_avx512 : NULL;
    if (!strcmp(name, jm_rt_uk_avx2.name)) return has2 ? &jm_rt_uk_avx2 : NULL;
#endif
    return !name || !strcmp(name, jm_rt_uk_generic.name) ? &jm_rt_uk_generic : NULL;
}

static const jm_rt_ukernel *jm_rt_ukernel_chosen;

const jm_rt_ukernel *jm_rt_ukernel_get(void) {
    const jm_rt_ukernel *k;
#pragma omp atomic read
    k = jm_rt_ukernel_chosen;
    if (!k) {
        k = jm_rt_ukernel_find(NULL);   /* every racing thread finds the same one */
#pragma omp atomic write
        jm_rt_ukernel_chosen = k;
    }
    return k;
}

int jm_rt_ukernel_set(const char *name) {
    const jm_rt_ukernel *k = jm_rt_ukernel_find(name);
    if (!k) return -1;
#pragma omp atomic write
    jm_rt_ukernel_chosen = k;
    return 0;
}

void jm_rt_pack_panel(const jm_rt_ukernel *uk, jm_rt_view s, int64_t kc, int64_t n, int nr, float *dst) {
    if (s.cs == 1) {
        for (int64_t k = 0; k < kc; k++, dst += nr) {
            memcpy(dst, s.p + k * s.rs, (size_t)n * sizeof *dst);
            for (int64_t j = n; j < nr; j++) dst[j] = 0;
        }
        return;
    }
    if (s.rs == 1) {   /* a transposed source: rows of it are columns of the panel */
        uk->transpose(s.p, s.cs, dst, nr, n, kc);
    } else {
        for (int64_t k = 0; k < kc; k++)
            for (int64_t j = 0; j < n; j++) dst[k * nr + j] = s.p[k * s.rs + j * s.cs];
    }
    for (int64_t k = 0; k < kc; k++)
        for (int64_t j = n; j < nr; j++) dst[k * nr + j] = 0;
}

/* ---- matmul ---- */

/* Column and row blocks of one matmul work unit: a unit computes a block of C
   through all of K, packing its own B panels. */
#define JM_MM_NB 256
#define JM_MM_MB 128

typedef struct {
    const jm_rt_ukernel *uk;
    int64_t M, N, K;
    jm_rt_view A, B;           /* A(i,k), B(k,j) */
    float *C;
    int64_t rsc, csc;          /* C(i,j) = C[i*rsc + j*csc] */
} jm_mm_op;

/* C[i0:i1, j0:j1] = A[i0:i1, :] . B[:, j0:j1]. A is read in place through the
   kernel's offset tables; scratch holds the packed B panels (KC x NB) and the k
   offsets (KC). */
static void jm_mm_block(const jm_mm_op *o, int64_t i0, int64_t i1, int64_t j0, int64_t j1, float *ws) {
    const int MR = o->uk->mr, NR = o->uk->nr;
    float *bp = ws;
    int64_t *koff = (int64_t *)(ws + (int64_t)JM_RT_KC * JM_MM_NB), *boff = koff + JM_RT_KC, roff[JM_RT_MAX_MR];
    for (int64_t ib = 0; ib < jm_rt_kblocks(o->K); ib++) {   /* K == 0: one empty block, C = 0 */
        int64_t kb = jm_rt_kstart(o->K, ib), kc = jm_rt_kstart(o->K, ib + 1) - kb;
        for (int64_t k = 0; k < kc; k++) koff[k] = (kb + k) * o->A.cs, boff[k] = k * NR;
        for (int64_t j = j0; j < j1; j += NR) {
            jm_rt_view bv = {o->B.p + kb * o->B.rs + j * o->B.cs, o->B.rs, o->B.cs};
            jm_rt_pack_panel(o->uk, bv, kc, jm_rt_min(NR, j1 - j), NR, bp + (j - j0) / NR * kc * NR);
        }
        for (int64_t i = i0; i < i1; i += MR) {
            int m = (int)jm_rt_min(MR, i1 - i);
            for (int r = 0; r < m; r++) roff[r] = (i + r) * o->A.rs;
            for (int64_t j = j0; j < j1; j += NR)
                o->uk->kern(kc, o->A.p, roff, koff, bp + (j - j0) / NR * kc * NR, boff,
                            o->C + i * o->rsc + j * o->csc, o->rsc, o->csc,
                            m, (int)jm_rt_min(NR, j1 - j), kb > 0);
        }
    }
}

/* Padded work of the tiling with rows of length M and columns of length N. */
static double jm_mm_cost(const jm_rt_ukernel *uk, int64_t M, int64_t N) {
    return (double)jm_rt_roundup(M, uk->mr) * (double)jm_rt_roundup(N, uk->nr);
}

int jm_rt_matmul_f32(int64_t batch, int64_t M, int64_t N, int64_t K, int transA, int transB,
                     const float *A, int64_t sA, const float *B, int64_t sB, float *C, int64_t sC) {
    const jm_rt_ukernel *uk = jm_rt_ukernel_get();
    int tid = omp_get_thread_num(), nth = omp_get_num_threads();
    jm_rt_view av = transA ? (jm_rt_view){A, 1, M} : (jm_rt_view){A, K, 1};
    jm_rt_view bv = transB ? (jm_rt_view){B, 1, K} : (jm_rt_view){B, N, 1};
    /* Vectorise along whichever of M and N wastes less of the tiles: C^T = B^T A^T
       swaps the roles (the kernel then writes C through a column stride). */
    int swap = jm_mm_cost(uk, N, M) < 0.8 * jm_mm_cost(uk, M, N);
    jm_mm_op o = {uk, M, N, K, av, bv, C, N, 1};
    if (swap) {
        o.M = N, o.N = M;
        o.A = (jm_rt_view){bv.p, bv.cs, bv.rs};
        o.B = (jm_rt_view){av.p, av.cs, av.rs};
        o.rsc = 1, o.csc = N;
    }
    float *ws = jm_rt_team_scratch(((int64_t)JM_RT_KC * JM_MM_NB + 4 * (int64_t)JM_RT_KC) * 4);
    if (!ws) return -1;
    /* Work units: blocks of C (all of K each). Small products get smaller blocks,
       so every thread has some; the blocks do not change any element's sum. */
    int64_t mb = JM_MM_MB, nb = JM_MM_NB;
    while (batch * ((o.M + mb - 1) / mb) * ((o.N + nb - 1) / nb) < 2 * nth) {
        if (nb > uk->nr && nb >= o.N / 2) nb = jm_rt_roundup(nb / 2, uk->nr);
        else if (mb > uk->mr) mb = jm_rt_roundup(mb / 2, uk->mr);
        else break;
    }
    int64_t mu = (o.M + mb - 1) / mb, nu = (o.N + nb - 1) / nb, u0, u1;
    jm_rt_split(batch * mu * nu, tid, nth, &u0, &u1);
    for (int64_t u = u0; u < u1; u++) {
        int64_t b = u / (mu * nu), r = u % (mu * nu), ib = r % mu, jb = r / mu;
        jm_mm_op ob = o;
        const float *Ab = A + b * sA, *Bb = B + b * sB;
        ob.A.p = swap ? Bb : Ab;
        ob.B.p = swap ? Ab : Bb;
        ob.C = C + b * sC;
        jm_mm_block(&ob, ib * mb, jm_rt_min(o.M, (ib + 1) * mb), jb * nb, jm_rt_min(o.N, (jb + 1) * nb), ws);
    }
#pragma omp barrier
    return 0;
}
