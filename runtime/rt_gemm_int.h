/* rt_gemm_int.h — internals shared by rt_gemm.c, rt_conv.c and rt_pool.c: the
 * register-blocked SGEMM micro-kernel (one per instruction set, chosen once per
 * process), team-wide scratch memory and work splitting.
 *
 * The micro-kernel computes one MR x NR tile of C over kc steps of the reduction:
 *
 *     C(r,j) = [C(r,j) +] sum_{k<kc} A(r,k) * B(k,j)      r < m <= MR, j < n <= NR
 *
 * with A(r,k) = a[r*rsa + k*csa] (so a packed panel [k][MR] and a plain row-major
 * matrix are both fine), B(k,j) = b[k*ldb + j] (every row must have NR readable
 * floats, even past n) and C(r,j) = c[r*rsc + j*csc]. The sum for each element is
 * formed in k order, starting from zero, with one fused multiply-add per term
 * (a multiply and an add in the plain-C fallback), then stored (accumulate == 0)
 * or added to C. Lanes never interact, so an element's value does not depend on
 * where in a tile it lies: only the k blocking matters, and that is JM_RT_KC.
 */
#ifndef JM_RT_GEMM_INT_H
#define JM_RT_GEMM_INT_H
#include <stddef.h>
#include <stdint.h>

/* Reduction block: every kernel result is the sequential sum, in k order, of
   per-block partial sums over k in [0,KC), [KC,2KC), ... This constant (never the
   thread count) fixes the rounding, so results are identical on any team size. */
#define JM_RT_KC 256

typedef void jm_rt_ukernel_fn(int64_t kc, const float *a, int64_t rsa, int64_t csa,
                              const float *b, int64_t ldb,
                              float *c, int64_t rsc, int64_t csc, int m, int n, int accumulate);

typedef struct {
    int mr, nr;                 /* tile rows (broadcast operand) and columns (vector operand) */
    jm_rt_ukernel_fn *kern;
    const char *name;           /* "avx512f", "avx2+fma" or "generic" */
} jm_rt_ukernel;

/* The best kernel this CPU runs (chosen on the first call; thread-safe). */
const jm_rt_ukernel *jm_rt_ukernel_get(void);
/* Tests and benchmarks: use the kernel called `name` (see above) from now on, or
   the best one for NULL. Returns -1 when this CPU cannot run it. Call it outside
   any kernel call (results may differ between kernels, not between thread counts). */
int jm_rt_ukernel_set(const char *name);

/* B(k, j) = p[k*rs + j*cs]: the strided view used by the packers. */
typedef struct { const float *p; int64_t rs, cs; } jm_rt_view;

/* Packs kc x n of a strided matrix (n <= nr) into a panel [k][nr], zero-filling
   columns n..nr-1. */
void jm_rt_pack_panel(jm_rt_view src, int64_t kc, int64_t n, int nr, float *dst);

/* Every thread of the team asks for `bytes` of its private scratch. Returns it on
   every thread, or NULL on every thread when any thread's allocation failed.
   Contains barriers, so all threads must call it with the same `bytes`. */
float *jm_rt_team_scratch(int64_t bytes);

/* The workspace module's record of how much thread `tid` holds (for the check above). */
int64_t jm_rt_workspace_held(int tid);

/* [*b, *e) = share `t` of `nth` of the range [0, total): contiguous, balanced. */
static inline void jm_rt_split(int64_t total, int t, int nth, int64_t *b, int64_t *e) {
    *b = total * t / nth;
    *e = total * (t + 1) / nth;
}

static inline int64_t jm_rt_min(int64_t a, int64_t b) { return a < b ? a : b; }
static inline int64_t jm_rt_max(int64_t a, int64_t b) { return a > b ? a : b; }
static inline int64_t jm_rt_roundup(int64_t a, int64_t m) { return (a + m - 1) / m * m; }
#endif
