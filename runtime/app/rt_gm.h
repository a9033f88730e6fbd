/* rt_gm.h — JEM++ / SADA-JEM's informative initialisation, the runtime half
 * (graphs/lib/informative.graph is the graph half): per class c the mean mu_c
 * and the biased covariance Sigma_c (divided by n_c) of the training records as
 * the data loader gives them ([-1, 1] for images), and the Cholesky factor L_c
 * of Sigma_c + jitter I (jitter 1e-4 as JEMPP), written into the executable's
 * states gm_mean f32[C, D] and gm_chol f32[C, D, D] by `train`, which then fills
 * the replay buffer with the graph's program gm_fill (docs/runtime.md).
 *
 * Accuracy: the mean is summed in double; the records are centred on it (in
 * float) before the Gram matrix is formed with the engine's float GEMM over
 * chunks of JM_GM_CHUNK records, each chunk's product added into a double
 * matrix, so no float sum runs over more than JM_GM_CHUNK terms; the factor is
 * computed in double and rounded to float once. */
#ifndef JM_RT_GM_H
#define JM_RT_GM_H
#include "data.h"
#include "engine/rt_exec.h"
#include <stddef.h>
#include <stdint.h>

#define JM_GM_JITTER 1e-4
/* records per float GEMM whose product is added into the double Gram matrix */
#define JM_GM_CHUNK 1024

/* Where the time of a fit went. */
typedef struct { double mean_s, gram_s, chol_s; } jm_gm_times;

/* In place: the n x n symmetric positive-definite matrix a (row-major; only its
   lower triangle is read) becomes its Cholesky factor L (a = L L^T) in the lower
   triangle, the upper triangle zeroed. Blocked right-looking, in double, the
   trailing updates shared among `threads` OpenMP threads (0: OpenMP's default).
   0 ok; -1 when a pivot is not positive (or not finite): *bad is its 0-based
   column, and a is partly overwritten. */
int jm_gm_cholesky(double *a, int64_t n, int threads, int64_t *bad);

/* Class c's mean (mean[D]) and biased covariance (cov[D*D], row-major, lower
   triangle; the upper triangle is left as it was) over the records of ds whose
   label is c, D = ds->c * ds->h * ds->w. Returns the number of records (0: none,
   mean and cov untouched), or -1 when out of memory. */
int64_t jm_gm_covariance(const jm_dataset *ds, int64_t c, double *mean, double *cov, int threads, jm_gm_times *tm);

/* Every class's mean into mean[C*D] and the Cholesky factor of its covariance +
   jitter I into chol[C*D*D] (float, upper triangles zero). 0 ok; -1 with err set:
   a class without records or a label outside [0, C) (naming the file and record),
   a matrix that is not positive definite (naming the class and the pivot), or
   out of memory. tm (may be NULL) receives the times. */
int jm_gm_fit(const jm_dataset *ds, int64_t classes, double jitter, float *mean, float *chol, int threads, jm_gm_times *tm,
              char *err, size_t errlen);

/* train's step (rt_train.c, once, before the first iteration). When the graph
   has states gm_mean f32[C, D] and gm_chol f32[C, D, D] with C, D > 0 (gm_on):
   a fresh run (resume 0) fits them from ds and, with `fill`, runs the program
   gm_fill(rows: i64[N]) (when the graph has one) over every row of the state it
   writes (the replay buffer); a resumed run keeps the checkpoint's Gaussians
   (fitting them only when the checkpoint holds none: a zero diagonal) and never
   refills. One line on stderr says what was done and how long it took. Also 0
   when the graph has no Gaussians (or empty ones, gm_on = 0); -1 after a message
   naming `who`. */
int jm_gm_train_init(jm_rt *rt, const jm_dataset *ds, int resume, int fill, const char *who);
#endif
