/* rt_gemm.c — the SGEMM micro-kernels (AVX-512, AVX2+FMA, plain C), their
 * run-time dispatch, panel packing and jm_rt_matmul_f32.
 *
 * Each micro-kernel keeps an MR x NR tile of C in vector registers, broadcasts one
 * A element per row and loads NR contiguous B floats per k step (see
 * rt_gemm_int.h for the exact contract). The instruction-set variants are compiled
 * with target attributes and picked with __builtin_cpu_supports, so the library
 * needs no -march flag and runs on any x86-64 (and, through the plain-C kernel,
 * elsewhere). */
#pragma GCC optimize("O3")
#include "rt_gemm_int.h"
#include "rt_kernels.h"
#include <omp.h>
#include <string.h>
#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define JM_RT_X86 1
#endif

/* Stores an MR x NR register tile that was spilled to `t` (row stride NR) into
   the m x n corner of C, adding when accumulating. Used for edge tiles and for
   C with a column stride (transposed outputs). */
static inline void jm_rt_tile_out(const float *t, int NR, float *c, int64_t rsc, int64_t csc,
                                  int m, int n, int accumulate) {
    for (int r = 0; r < m; r++)
        for (int j = 0; j < n; j++) {
            float *cp = c + r * rsc + j * csc;
            *cp = accumulate ? *cp + t[r * NR + j] : t[r * NR + j];
        }
}

/* ---- plain C: 4 x 8, vectorised by the compiler for whatever the baseline is ---- */
#define JM_G_MR 4
#define JM_G_NR 8
static void jm_rt_kern_generic(int64_t kc, const float *a, int64_t rsa, int64_t csa,
                               const float *b, int64_t ldb,
                               float *c, int64_t rsc, int64_t csc, int m, int n, int accumulate) {
    float acc[JM_G_MR][JM_G_NR] = {{0}};
    const float *ar[JM_G_MR];
    for (int r = 0; r < JM_G_MR; r++) ar[r] = a + (r < m ? r : 0) * rsa;
    for (int64_t k = 0; k < kc; k++, b += ldb)
        for (int r = 0; r < JM_G_MR; r++) {
            float x = ar[r][k * csa];
            for (int j = 0; j < JM_G_NR; j++) acc[r][j] += x * b[j];
        }
    jm_rt_tile_out(&acc[0][0], JM_G_NR, c, rsc, csc, m, n, accumulate);
}

#ifdef JM_RT_X86
/* ---- AVX-512F: 8 x 32, 16 zmm accumulators ---- */
#define JM_Z_MR 8
#define JM_Z_NV 2
#define JM_Z_NR (16 * JM_Z_NV)
__attribute__((target("avx512f")))
static void jm_rt_kern_avx512(int64_t kc, const float *a, int64_t rsa, int64_t csa,
                              const float *b, int64_t ldb,
                              float *c, int64_t rsc, int64_t csc, int m, int n, int accumulate) {
    __m512 acc[JM_Z_MR][JM_Z_NV];
    const float *ar[JM_Z_MR];
#pragma GCC unroll 8
    for (int r = 0; r < JM_Z_MR; r++) {
        ar[r] = a + (r < m ? r : 0) * rsa;
#pragma GCC unroll 2
        for (int v = 0; v < JM_Z_NV; v++) acc[r][v] = _mm512_setzero_ps();
    }
    for (int64_t k = 0; k < kc; k++, b += ldb) {
        __m512 bv[JM_Z_NV];
        int64_t ko = k * csa;
#pragma GCC unroll 2
        for (int v = 0; v < JM_Z_NV; v++) bv[v] = _mm512_loadu_ps(b + 16 * v);
#pragma GCC unroll 8
        for (int r = 0; r < JM_Z_MR; r++) {
            __m512 x = _mm512_set1_ps(ar[r][ko]);
#pragma GCC unroll 2
            for (int v = 0; v < JM_Z_NV; v++) acc[r][v] = _mm512_fmadd_ps(x, bv[v], acc[r][v]);
        }
    }
    if (m == JM_Z_MR && n == JM_Z_NR && csc == 1) {
#pragma GCC unroll 8
        for (int r = 0; r < JM_Z_MR; r++)
#pragma GCC unroll 2
            for (int v = 0; v < JM_Z_NV; v++) {
                float *cp = c + r * rsc + 16 * v;
                _mm512_storeu_ps(cp, accumulate ? _mm512_add_ps(_mm512_loadu_ps(cp), acc[r][v]) : acc[r][v]);
            }
        return;
    }
    float t[JM_Z_MR * JM_Z_NR] __attribute__((aligned(64)));
#pragma GCC unroll 8
    for (int r = 0; r < JM_Z_MR; r++)
#pragma GCC unroll 2
        for (int v = 0; v < JM_Z_NV; v++) _mm512_store_ps(t + r * JM_Z_NR + 16 * v, acc[r][v]);
    jm_rt_tile_out(t, JM_Z_NR, c, rsc, csc, m, n, accumulate);
}

/* ---- AVX2 + FMA (x86-64-v3): 6 x 16, 12 ymm accumulators ---- */
#define JM_Y_MR 6
#define JM_Y_NV 2
#define JM_Y_NR (8 * JM_Y_NV)
__attribute__((target("avx2,fma")))
static void jm_rt_kern_avx2(int64_t kc, const float *a, int64_t rsa, int64_t csa,
                            const float *b, int64_t ldb,
                            float *c, int64_t rsc, int64_t csc, int m, int n, int accumulate) {
    __m256 acc[JM_Y_MR][JM_Y_NV];
    const float *ar[JM_Y_MR];
#pragma GCC unroll 6
    for (int r = 0; r < JM_Y_MR; r++) {
        ar[r] = a + (r < m ? r : 0) * rsa;
#pragma GCC unroll 2
        for (int v = 0; v < JM_Y_NV; v++) acc[r][v] = _mm256_setzero_ps();
    }
    for (int64_t k = 0; k < kc; k++, b += ldb) {
        __m256 bv[JM_Y_NV];
        int64_t ko = k * csa;
#pragma GCC unroll 2
        for (int v = 0; v < JM_Y_NV; v++) bv[v] = _mm256_loadu_ps(b + 8 * v);
#pragma GCC unroll 6
        for (int r = 0; r < JM_Y_MR; r++) {
            __m256 x = _mm256_broadcast_ss(&ar[r][ko]);
#pragma GCC unroll 2
            for (int v = 0; v < JM_Y_NV; v++) acc[r][v] = _mm256_fmadd_ps(x, bv[v], acc[r][v]);
        }
    }
    if (m == JM_Y_MR && n == JM_Y_NR && csc == 1) {
#pragma GCC unroll 6
        for (int r = 0; r < JM_Y_MR; r++)
#pragma GCC unroll 2
            for (int v = 0; v < JM_Y_NV; v++) {
                float *cp = c + r * rsc + 8 * v;
                _mm256_storeu_ps(cp, accumulate ? _mm256_add_ps(_mm256_loadu_ps(cp), acc[r][v]) : acc[r][v]);
            }
        return;
    }
    float t[JM_Y_MR * JM_Y_NR] __attribute__((aligned(32)));
#pragma GCC unroll 6
    for (int r = 0; r < JM_Y_MR; r++)
#pragma GCC unroll 2
        for (int v = 0; v < JM_Y_NV; v++) _mm256_store_ps(t + r * JM_Y_NR + 8 * v, acc[r][v]);
    jm_rt_tile_out(t, JM_Y_NR, c, rsc, csc, m, n, accumulate);
}
#endif

static const jm_rt_ukernel jm_rt_uk_generic = {JM_G_MR, JM_G_NR, jm_rt_kern_generic, "generic"};
#ifdef JM_RT_X86
static const jm_rt_ukernel jm_rt_uk_avx512 = {JM_Z_MR, JM_Z_NR, jm_rt_kern_avx512, "avx512f"};
static const jm_rt_ukernel jm_rt_uk_avx2 = {JM_Y_MR, JM_Y_NR, jm_rt_kern_avx2, "avx2+fma"};
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

void jm_rt_pack_panel(jm_rt_view s, int64_t kc, int64_t n, int nr, float *dst) {
    if (s.cs == 1) {
        for (int64_t k = 0; k < kc; k++, dst += nr) {
            memcpy(dst, s.p + k * s.rs, (size_t)n * sizeof *dst);
            for (int64_t j = n; j < nr; j++) dst[j] = 0;
        }
        return;
    }
    /* a transposed source: walk it contiguously (when rs == 1), write strided */
    for (int64_t j = 0; j < nr; j++) {
        const float *src = s.p + j * s.cs;
        if (j >= n)
            for (int64_t k = 0; k < kc; k++) dst[k * nr + j] = 0;
        else
            for (int64_t k = 0; k < kc; k++) dst[k * nr + j] = src[k * s.rs];
    }
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

/* C[i0:i1, j0:j1] = A[i0:i1, :] . B[:, j0:j1]; scratch holds the B panels
   (KC x NB) and, when A is not row-contiguous, its packed panels (MB x KC). */
static void jm_mm_block(const jm_mm_op *o, int64_t i0, int64_t i1, int64_t j0, int64_t j1, float *ws) {
    const int MR = o->uk->mr, NR = o->uk->nr;
    float *bp = ws, *ap = ws + (int64_t)JM_RT_KC * JM_MM_NB;
    int packA = o->A.cs != 1;
    if (o->K == 0) {
        for (int64_t i = i0; i < i1; i++)
            for (int64_t j = j0; j < j1; j++) o->C[i * o->rsc + j * o->csc] = 0;
        return;
    }
    for (int64_t kb = 0; kb < o->K; kb += JM_RT_KC) {
        int64_t kc = jm_rt_min(JM_RT_KC, o->K - kb);
        for (int64_t j = j0; j < j1; j += NR) {
            jm_rt_view bv = {o->B.p + kb * o->B.rs + j * o->B.cs, o->B.rs, o->B.cs};
            jm_rt_pack_panel(bv, kc, jm_rt_min(NR, j1 - j), NR, bp + (j - j0) / NR * kc * NR);
        }
        for (int64_t i = i0; i < i1; i += MR) {
            int m = (int)jm_rt_min(MR, i1 - i);
            const float *a = o->A.p + i * o->A.rs + kb * o->A.cs;
            int64_t rsa = o->A.rs, csa = 1;
            if (packA) {   /* panel [k][MR] built from the strided A (rows past m are not read) */
                float *d = ap;
                for (int64_t k = 0; k < kc; k++)
                    for (int r = 0; r < MR; r++) *d++ = r < m ? a[r * o->A.rs + k * o->A.cs] : 0;
                a = ap, rsa = 1, csa = MR;
            }
            for (int64_t j = j0; j < j1; j += NR)
                o->uk->kern(kc, a, rsa, csa, bp + (j - j0) / NR * kc * NR, NR,
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
    float *ws = jm_rt_team_scratch(((int64_t)JM_RT_KC * JM_MM_NB + (int64_t)JM_MM_MB * JM_RT_KC) * 4);
    if (!ws) return -1;
    int64_t mu = (o.M + JM_MM_MB - 1) / JM_MM_MB, nu = (o.N + JM_MM_NB - 1) / JM_MM_NB;
    int64_t u0, u1;
    jm_rt_split(batch * mu * nu, tid, nth, &u0, &u1);
    for (int64_t u = u0; u < u1; u++) {
        int64_t b = u / (mu * nu), r = u % (mu * nu), ib = r % mu, jb = r / mu;
        jm_mm_op ob = o;
        const float *Ab = A + b * sA, *Bb = B + b * sB;
        ob.A.p = swap ? Bb : Ab;
        ob.B.p = swap ? Ab : Bb;
        ob.C = C + b * sC;
        jm_mm_block(&ob, ib * JM_MM_MB, jm_rt_min(o.M, (ib + 1) * JM_MM_MB),
                    jb * JM_MM_NB, jm_rt_min(o.N, (jb + 1) * JM_MM_NB), ws);
    }
#pragma omp barrier
    return 0;
}
