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
/* How tables (CSV, text) are read and transformed. Every command that reads data
   takes these options (JM_SESSION_TABLE_ARGS in its option table writes them here);
   an option not given takes the value of the run in the checkpoint jm_session_open
   loaded (its jemc.train.option.*), so `eval` reads a test file laid out like the
   training file without repeating them. */
typedef struct {
    const char *label_column;   /* --label-column NAME|N; NULL: not given */
    const char *label_base;     /* --label-base B; NULL: not given */
    const char *format;         /* --format idx|cifar10|cifar100|csv|txt; NULL: not given */
} jm_session_tabopts;
extern jm_session_tabopts jm_session_tab_cli;
#define JM_SESSION_TABLE_ARGS                                                                                                     \
    { "--label-column", JM_ARG_STR, &jm_session_tab_cli.label_column, "NAME|N",                                                     \
      "CSV/text: the label column, a header name or a 0-based index (negative: from the end; default the last)", 0, 0 },         \
    { "--label-base", JM_ARG_STR, &jm_session_tab_cli.label_base, "B",                                                              \
      "CSV/text: labels count from B (UCI HAR: 1), class = label - B (default 0)", 0, 0 },                                          \
    { "--format", JM_ARG_STR, &jm_session_tab_cli.format, "F",                                                                      \
      "data format: idx, cifar10, cifar100, csv or txt (default: by extension, IDX by its magic)", 0, 0 }
/* The loader options these settings give; -1 after a message when one is malformed. */
int jm_session_data_opts(const char *labels, jm_data_opts *o, const char *who);
/* Loads DIR's split ("train"/"test") or FILE with the settings above; prints the
   error. A table is then transformed as the checkpoint's run was (jemc.data.*:
   columns dropped, standardised with the training split's mean and std), and when
   the run split its --data file (--test-split, --val-split) and path is that file,
   split "test" takes the run's test records (its validation records when it kept
   no test split), said on stderr. */
int jm_session_data(const char *path, const char *labels, const char *split, jm_dataset *ds, const char *who);
/* The same without the checkpoint's transform and split (train fits its own). */
int jm_session_data_raw(const char *path, const char *labels, const char *split, jm_dataset *ds, const char *who);
/* Whether the loaded checkpoint holds a table transform. */
int jm_session_has_transform(void);
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
