/* rt_gemm_int.h — internals shared by rt_gemm.c, rt_conv.c and rt_pool.c: the
 * register-blocked SGEMM micro-kernel (one per instruction set, chosen once per
 * process), team-wide scratch memory and work splitting.
 *
 * The micro-kernel computes one MR x NR tile of C over kc steps of the reduction:
 *
 *     C(r,j) = [C(r,j) +] sum_{k<kc} A(r,k) * B(k,j)      r < m <= MR, j < n <= NR
 *
 * with A(r,k) = a[roff[r] + koff[k]] and B(k,j) = b[boff[k] + j]: offset tables,
 * so one kernel reads packed panels, plain or transposed matrices, or a
 * convolution's input straight from its (padded) planes (rows = output positions
 * and k = filter taps, or the other way round, or lanes = positions) without an
 * im2col copy. Every B row must have NR readable floats, even past n; roff[r] is
 * read for r < m only; C(r,j) = c[r*rsc + j*csc]. The sum for each element is formed in k order, starting
 * from zero, with one fused multiply-add per term (a multiply and an add in the
 * plain-C fallback), then stored (accumulate == 0) or added to C. Lanes never
 * interact, so an element's value does not depend on where in a tile it lies,
 * which of a set's two tile shapes computed it, or which thread: only on the k
 * blocking, and that is fixed by the shapes.
 */
#ifndef JM_RT_GEMM_INT_H
#define JM_RT_GEMM_INT_H
#include <stddef.h>
#include <stdint.h>

/* Reduction blocks: a reduction of length K is cut into nb = ceil(K / KC) blocks
   of nearly equal length (block i is [i*K/nb, (i+1)*K/nb)); every kernel result is
   the sequential sum, in k order, of the blocks' partial sums. The blocks depend
   on K only (never on the thread count), so the rounding is the same on any team
   size. */
#define JM_RT_KC 256

static inline int64_t jm_rt_kblocks(int64_t K) { return K > 0 ? (K + JM_RT_KC - 1) / JM_RT_KC : 1; }
static inline int64_t jm_rt_kstart(int64_t K, int64_t i) { return i * K / jm_rt_kblocks(K); }

#define JM_RT_MAX_MR 16          /* no kernel has more rows */

typedef void jm_rt_ukernel_fn(int64_t kc, const float *a, const int64_t *roff, const int64_t *koff,
                              const float *b, const int64_t *boff,
                              float *c, int64_t rsc, int64_t csc, int m, int n, int accumulate);

/* dst[j*ldd + i] = src[i*lds + j] for i < rows, j < cols. */
typedef void jm_rt_transpose_fn(const float *src, int64_t lds, float *dst, int64_t ldd, int64_t rows, int64_t cols);

typedef struct {
    int mr, nr;                 /* the main tile: rows (broadcast operand) x columns (vector lanes) */
    jm_rt_ukernel_fn *kern;
    int mr1, nr1;               /* a wide tile of one or few rows, for GEMMs with very few rows */
    jm_rt_ukernel_fn *kern1;
    jm_rt_transpose_fn *transpose;
    const char *name;           /* "avx512f", "avx2+fma" or "generic" */
} jm_rt_ukernel;

/* The best kernel this CPU runs (chosen on the first call; thread-safe). */
const jm_rt_ukernel *jm_rt_ukernel_get(void);
/* Tests and benchmarks: use the kernel called `name` (see above) from now on, or
   the best one for NULL. Returns -1 when this CPU cannot run it. Call it outside
   any kernel call (results may differ between kernels, not between thread counts). */
int jm_rt_ukernel_set(const char *name);

/* Tests: the convolution tiling of fwd and bwd_data (rt_conv.c). 0: chosen by
   cost; 1: lanes = output channels; 2: lanes = output positions where the phase
   allows it; 3: the same with the few-rows tile. All give the same bits. */
extern int jm_rt_conv_tiling;

/* B(k, j) = p[k*rs + j*cs]: the strided view used by the packers. */
typedef struct { const float *p; int64_t rs, cs; } jm_rt_view;

/* Packs kc x n of a strided matrix (n <= nr) into a panel [k][nr], zero-filling
   columns n..nr-1. */
void jm_rt_pack_panel(const jm_rt_ukernel *uk, jm_rt_view src, int64_t kc, int64_t n, int nr, float *dst);

/* Every thread of the team asks for `bytes` of its private scratch. Returns it on
   every thread, or NULL on every thread when any thread's allocation failed.
   Contains barriers, so all threads must call it with the same `bytes`. */
float *jm_rt_team_scratch(int64_t bytes);

/* The workspace module's record of how much thread `tid` holds (for the check above). */
int64_t jm_rt_workspace_held(int tid);
/* The buffer thread `tid` holds now (no allocation). Between jm_rt_team_scratch
   and the end of the same kernel call every thread's buffer stays put, so the team
   can share data through thread 0's scratch (with barriers around the writes). */
void *jm_rt_workspace_peek(int tid);

/* [*b, *e) = share `t` of `nth` of the range [0, total): contiguous, balanced. */
static inline void jm_rt_split(int64_t total, int t, int nth, int64_t *b, int64_t *e) {
    *b = total * t / nth;
    *e = total * (t + 1) / nth;
}

static inline int64_t jm_rt_min(int64_t a, int64_t b) { return a < b ? a : b; }
static inline int64_t jm_rt_max(int64_t a, int64_t b) { return a > b ? a : b; }
static inline int64_t jm_rt_roundup(int64_t a, int64_t m) { return (a + m - 1) / m * m; }
#endif
