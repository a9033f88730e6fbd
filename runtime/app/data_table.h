/* data_table.h — what tables (CSV and text data sets, runtime/app/data.h) need beyond
 * loading: a seeded split of one file into train / validation / test records, the
 * columns kept and the standardisation fitted on the training split (VERA's tabular
 * preprocessing, ../shared/research/jem-spec.md 7.5), and that transform written to and
 * read back from checkpoint metadata so that eval applies the training split's
 * statistics, never those of the data it scores. */
#ifndef JM_DATA_TABLE_H
#define JM_DATA_TABLE_H
#include "data.h"
#include <stddef.h>
#include <stdint.h>

/* The transform of a table's features: record r's kept column j becomes
   (x[r][keep[j]] - mean[j]) / std[j]. */
typedef struct {
    int ncols;            /* feature columns of the data it applies to (before dropping) */
    int nkeep;            /* columns kept */
    int *keep;            /* the kept columns, ascending, 0-based */
    double *mean, *std;   /* per kept column; NULL: not standardised */
    int64_t split_records;/* records of the file a --test-split/--val-split was drawn from (0:
                             no split): eval re-draws that split only from a file of as many */
} jm_table_tf;

/* Fits the transform on records rows[0..n) of ds (all records when rows is NULL):
   drop_repeated > 0 drops every column whose smallest value occurs more than
   drop_repeated times among those records (VERA's HEPMASS rule, with 5: the rule of
   MAF's preprocessing it copies); standardize computes each kept column's mean and
   standard deviation (population: numpy's std, ddof 0; a constant column gets std 1).
   0, or -1 with err (every column dropped, no records, out of memory). */
int jm_table_fit(const jm_dataset *ds, const int64_t *rows, int64_t n, int64_t drop_repeated, int standardize, jm_table_tf *tf,
                 char *err, size_t errlen);
/* Applies tf to ds in place: ds must have tf->ncols features (an error naming ds->path
   otherwise). 0, or -1 with err (ds untouched). */
int jm_table_apply(const jm_table_tf *tf, jm_dataset *ds, char *err, size_t errlen);
void jm_table_tf_free(jm_table_tf *tf);

/* The transform as checkpoint metadata: keys[k] = value[k] for k < the count returned
   (at most JM_TABLE_META): jemc.data.columns (ncols), jemc.data.kept (comma-separated
   indices), jemc.data.mean and jemc.data.std (comma-separated, %.17g: eval applies them
   in double, as train did; absent when not standardised), jemc.data.split_records (when
   the run split its file). The values are malloc'd (jm_table_meta_free). */
#define JM_TABLE_META 5
int jm_table_tf_meta(const jm_table_tf *tf, const char *keys[JM_TABLE_META], char *values[JM_TABLE_META]);
void jm_table_meta_free(char *values[JM_TABLE_META]);
/* Reads it back: get(key) returns a key's value or NULL. 1 when the metadata hold a
   transform (tf filled), 0 when they hold none, -1 with err when they are malformed. */
int jm_table_tf_parse(const char *(*get)(const void *, const char *), const void *ctx, jm_table_tf *tf, char *err,
                      size_t errlen);

/* A seeded split of n records: a permutation drawn from seed (its own Philox stream,
   not the training shuffle's) puts round(test_frac * n) records in test, then
   round(val_frac * rest) in val, the rest in train (VERA's CROP: 10 % test, 10 % of the
   rest val). Each part is returned in ascending record order; train, val, test have room
   for n. The fractions are in [0, 1); -1 with err when train would be empty, or when a
   fraction above 0 rounds to no record (a split asked for and silently empty). */
int jm_table_split(int64_t n, uint64_t seed, double test_frac, double val_frac, int64_t *train, int64_t *ntrain, int64_t *val,
                   int64_t *nval, int64_t *test, int64_t *ntest, char *err, size_t errlen);
/* dst = records rows[0..n) of src (copied; dst->path and shape as src's). 0 or -1 (out of memory). */
int jm_data_subset(const jm_dataset *src, const int64_t *rows, int64_t n, jm_dataset *dst);
#endif
