/* rt_session.h — what the executable's train, sample and eval commands share:
 * opening the runtime from a checkpoint (or the declared initialisers),
 * applying --set knobs, finding programs and their inputs and outputs by name,
 * loading a data split, and checking that a data set fits a program's input. */
#ifndef JM_RT_SESSION_H
#define JM_RT_SESSION_H
#include "data.h"
#include "rt_args.h"
#include "engine/rt_exec.h"
#include "engine/safetensors.h"

/* Opens rt; loads `ckpt` when given (keeping its file in *meta when meta is not
   NULL: the caller frees it), checking the graph hash; applies `sets`. Prints
   "who: message" and returns -1 on failure (rt closed). */
int jm_session_open(jm_rt *rt, const jm_table *t, jm_kernel_fn *kernels, const char *ckpt, uint64_t seed, int seed_given,
                    const jm_arg_list *sets, int threads, jm_st_file *meta, const char *who);
/* Program p's input / output named `name`, or -1. */
int jm_session_input(const jm_tprogram *pr, const char *name);
int jm_session_output(const jm_tprogram *pr, const char *name);
/* Program `name` or -1 (with a message listing the programs when `need`). */
int jm_session_program(const jm_table *t, const char *name, int need, const char *who);
/* Loads DIR's split ("train"/"test") or FILE; prints the error. */
int jm_session_data(const char *path, const char *labels, const char *split, jm_dataset *ds, const char *who);
/* Checks that records of ds fit input x of pr (f32[B, ...], same elements per
   record) and y (i64[B]) when present. */
int jm_session_fits(const jm_tprogram *pr, const jm_dataset *ds, const char *who);
/* Room for one evaluation batch: B records of `per` values (x), their labels (y)
   and record numbers (idx). */
typedef struct { int64_t B, per; float *x; int64_t *y, *idx; } jm_session_buf;
/* 0, or -1 when out of memory (then every pointer is NULL or freed). */
int jm_session_buf_alloc(jm_session_buf *b, int64_t B, int64_t per);
void jm_session_buf_free(jm_session_buf *b);
/* Records [b0, b0 + b->B) of ds, unaugmented, into b->x and b->y; past the end
   the batch is padded with record b0. Returns how many are real. */
int64_t jm_session_batch(const jm_dataset *ds, int64_t b0, jm_session_buf *b);
/* A scalar output as a double (NaN when absent). */
double jm_session_scalar(const jm_tprogram *pr, void *const *out, const char *name);
/* Allocates room for every output of pr. */
void **jm_session_outputs(const jm_tprogram *pr);
void jm_session_free_outputs(const jm_tprogram *pr, void **out);
double jm_session_now(void);
#endif
