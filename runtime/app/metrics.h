/* metrics.h — the evaluation suite's statistics, on plain arrays: expected
 * calibration error with equal-width confidence bins, and the area under the
 * ROC curve of a score separating in-distribution (positives) from
 * out-of-distribution inputs (negatives). */
#ifndef JM_METRICS_H
#define JM_METRICS_H
#include <stdint.h>

/* ECE = sum_b (n_b / n) |acc_b - conf_b| over `bins` equal-width bins of
   confidence in [0, 1] (a confidence of exactly 1 falls in the last bin).
   conf_b/acc_b/count_b (may be NULL, `bins` entries each) receive each bin's
   mean confidence, accuracy and count (0 for an empty bin). Returns the ECE,
   or NaN when n == 0 or bins < 1. */
double jm_metric_ece(const double *conf, const unsigned char *correct, int64_t n, int bins,
                     double *conf_b, double *acc_b, int64_t *count_b);

/* AUROC of `pos` (scores expected higher) against `neg`: the probability that
   a random positive scores above a random negative, ties counting one half
   (the Mann-Whitney statistic, computed by sorting). NaN when either set is
   empty or a score is NaN. */
double jm_metric_auroc(const double *pos, int64_t npos, const double *neg, int64_t nneg);
#endif
