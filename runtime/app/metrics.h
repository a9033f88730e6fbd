/* metrics.h — the evaluation suite's statistics, on plain arrays: expected
 * calibration error with equal-width confidence bins, the area under the
 * ROC curve of a score separating in-distribution (positives) from
 * out-of-distribution inputs (negatives) or class 1 from class 0, Brier
 * scores (multiclass and sklearn's binary one) and sklearn's calibration
 * curve of a binary classifier. */
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

/* AUROC of `score` for records labelled 1 (positives) against those labelled 0
   (sklearn's roc_auc_score(y, score) for labels in {0, 1}). NaN when a label is
   neither 0 nor 1, a class is absent or a score is NaN. */
double jm_metric_auroc_labels(const double *score, const int64_t *y, int64_t n);

/* Macro one-vs-rest AUROC of n x K class probabilities (sklearn's
   roc_auc_score(y, prob, multi_class="ovr"), average "macro"): the mean over
   classes c of the AUROC of prob[:, c] for records of class c against all
   others. NaN when K < 2, a label is outside [0, K) or some class is absent
   (sklearn refuses those too). */
double jm_metric_auroc_ovr(const double *prob, const int64_t *y, int64_t n, int64_t K);

/* Brier's multiclass score: the mean over records of sum_c (p_ic - [y_i = c])^2
   with prob the n x K row-major class probabilities (0 for a perfect sure
   classifier, at most 2). NaN when n < 1, K < 1 or a label is outside [0, K). */
double jm_metric_brier(const double *prob, const int64_t *y, int64_t n, int64_t K);

/* The binary Brier score, sklearn's brier_score_loss(y, p1): the mean of
   (p1_i - y_i)^2 with y_i in {0, 1} (in [0, 1]). For two classes it is half the
   multiclass score (both classes' errors are p1 - y up to sign). NaN when
   n < 1 or a label is neither 0 nor 1. */
double jm_metric_brier_binary(const double *p1, const int64_t *y, int64_t n);

/* sklearn's calibration_curve(y, p1, n_bins=bins, strategy="uniform"): bin edges
   e_k = k * (1.0 / bins) (numpy's linspace(0, 1, bins + 1)); p1 falls in bin b,
   the number of inner edges e_1..e_{bins-1} strictly below it (numpy's
   searchsorted, side left), so bins are (e_b, e_{b+1}] and the first also holds
   0. For every bin b, frac_pos[b] = the fraction of its records labelled 1,
   mean_pred[b] = their mean p1, count[b] = how many (NaN, NaN, 0 when empty;
   any pointer may be NULL). sklearn returns the non-empty bins only, in order.
   Returns the number of non-empty bins, or -1 when n < 1, bins < 1, a
   probability is outside [0, 1] (or NaN) or a label is neither 0 nor 1. */
int jm_metric_calibration_curve(const double *p1, const int64_t *y, int64_t n, int bins, double *frac_pos, double *mean_pred,
                                int64_t *count);
#endif
