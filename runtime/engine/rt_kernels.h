/* rt_kernels.h — the runtime's hand-written compute kernels: matrix multiply,
 * 2-D convolution (forward and both gradients) and pooling (forward and
 * gradients), all float32, row-major, NCHW.
 *
 * Calling convention: every function here is called by EVERY thread of an
 * enclosing OpenMP parallel region (the executor's), with the same arguments.
 * Each function splits its own work among the threads (omp_get_thread_num /
 * omp_get_num_threads) and may contain `#pragma omp barrier`s, which all
 * threads then reach. It returns after the result is complete and visible to
 * all threads (it ends with a barrier). Outside a parallel region it runs on
 * one thread. Each returns 0, or -1 when its scratch memory could not be
 * allocated (then every thread returns -1 and the output is unspecified).
 *
 * Determinism: every output element is computed by exactly one thread, with a
 * summation order that depends only on the shapes (never on the thread count),
 * so results are bitwise identical for any OMP_NUM_THREADS.
 *
 * Convolution attributes at[7] = stride h, stride w, pad h, pad w, dilation h,
 * dilation w, groups (as in PyTorch; padding is zeros).
 *
 * Epilogue: conv2d_fwd may call `epi(epi_bufs, n*epi_items, (n+1)*epi_items)`
 * once per image n after writing image n's output, on the thread that wrote
 * it; epi may be NULL. (Fused elementwise code that reads the convolution's
 * result and writes the final value, possibly in place.)
 *
 * Implementation notes (runtime/engine/rt_gemm.c, rt_conv.c, rt_pool.c, rt_workspace.c):
 * - When the images are shared out among the threads (at least as many images as
 *   threads, and a multiple of the team size or at least four per thread), each
 *   image's epilogue runs on its thread right after its output is done. Otherwise
 *   the threads share each image's output, and after a barrier image n's
 *   epilogue runs on thread n % omp_get_num_threads(), once.
 * - The micro-kernel is picked at run time: AVX-512F, AVX2+FMA or plain C. The two
 *   FMA kernels give the same bits; the plain one (no fused multiply-add) may
 *   differ from them in the last places. Results never depend on the team size.
 * - Scratch memory is per thread (jm_rt_workspace), kept and grown as needed. */
#ifndef JM_RT_KERNELS_H
#define JM_RT_KERNELS_H
#include <stdint.h>

typedef void (*jm_kernel_fn)(void *const *bufs, int64_t begin, int64_t end);

/* The RNG context of a kernel that draws random numbers inline (fused noise:
   compiler/plan.c; the step's iat[0] = 1): bufs[nbuf] points at it, after the
   step's buffers. The generated code (codegen/rng_ir.c) reads it as six
   uint32 words in this order; engine/philox.h says what they number.
   nshards >= 1; shard < nshards. */
typedef struct {
    uint32_t seed_lo, seed_hi;   /* the run's seed */
    uint32_t call;               /* the program-run counter */
    uint32_t iteration;          /* the flat iteration of the enclosing sampler loops */
    uint32_t shard, nshards;     /* data parallelism: per-example draws are numbered globally */
} jm_rng_ctx;

typedef struct {
    int64_t N, C, H, W;      /* input */
    int64_t O, KH, KW;       /* filter: O x (C/groups) x KH x KW */
    int64_t OH, OW;          /* output */
    int64_t at[7];           /* stride h/w, pad h/w, dilation h/w, groups */
} jm_conv_shape;

/* C[b] = A[b] . B[b] for b < batch; A is M x K (or K x M when transA: A is stored
   transposed), B is K x N (or N x K when transB). Strides between batch entries:
   sA, sB, sC elements (sB = 0 broadcasts B). */
int jm_rt_matmul_f32(int64_t batch, int64_t M, int64_t N, int64_t K, int transA, int transB,
                      const float *A, int64_t sA, const float *B, int64_t sB, float *C, int64_t sC);

/* y[N,O,OH,OW] = conv2d(x[N,C,H,W], w[O,C/g,KH,KW]) */
int jm_rt_conv2d_fwd_f32(const jm_conv_shape *s, const float *x, const float *w, float *y,
                          jm_kernel_fn epi, void *const *epi_bufs, int64_t epi_items);
/* dx[N,C,H,W] = gradient of conv2d wrt its input, given dy[N,O,OH,OW] and w */
int jm_rt_conv2d_bwd_data_f32(const jm_conv_shape *s, const float *dy, const float *w, float *dx);
/* dw[O,C/g,KH,KW] = gradient of conv2d wrt its filter, given x and dy */
int jm_rt_conv2d_bwd_filter_f32(const jm_conv_shape *s, const float *x, const float *dy, float *dw);

/* Pooling over planes: x[NC,H,W] -> y[NC,OH,OW]; at = kh, kw, sh, sw, ph, pw.
   Average pooling counts padded positions (count_include_pad); max pooling
   ignores them, and a NaN in the window wins (first NaN), as in the interpreter. */
int jm_rt_avgpool2d_f32(int64_t NC, int64_t H, int64_t W, int64_t OH, int64_t OW, const int64_t at[6],
                         const float *x, float *y);
int jm_rt_maxpool2d_f32(int64_t NC, int64_t H, int64_t W, int64_t OH, int64_t OW, const int64_t at[6],
                         const float *x, float *y);
/* dx[NC,H,W] from dy[NC,OH,OW]: average spreads dy/(kh*kw) over the window;
   max sends dy to the first maximum of the window (x given). */
int jm_rt_avgpool2d_bwd_f32(int64_t NC, int64_t H, int64_t W, int64_t OH, int64_t OW, const int64_t at[6],
                             const float *dy, float *dx);
int jm_rt_maxpool2d_bwd_f32(int64_t NC, int64_t H, int64_t W, int64_t OH, int64_t OW, const int64_t at[6],
                             const float *x, const float *dy, float *dx);

/* Per-thread scratch that lives as long as the process: returns at least
   `bytes` bytes, 64-byte aligned, private to the calling thread (index `tid`),
   or NULL when memory runs out. Kept between calls. */
void *jm_rt_workspace(int tid, int64_t bytes);
#endif
