/* t_metrics.c — the evaluation statistics (runtime/app/metrics.c) on cases with
 * known answers. */
#include "app/metrics.h"
#include "tap.h"
#include <math.h>

int main(void) {
    /* AUROC */
    double a[] = { 3, 4, 5 }, b[] = { 0, 1, 2 };
    is_near(jm_metric_auroc(a, 3, b, 3), 1.0, 1e-12, "perfectly separated: AUROC 1");
    is_near(jm_metric_auroc(b, 3, a, 3), 0.0, 1e-12, "perfectly reversed: AUROC 0");
    double c[] = { 1, 1, 1 };
    is_near(jm_metric_auroc(c, 3, c, 3), 0.5, 1e-12, "all tied: AUROC 1/2");
    double p[] = { 0.9, 0.4 }, q[] = { 0.5, 0.1 };
    /* pairs: (0.9>0.5) (0.9>0.1) (0.4<0.5) (0.4>0.1): 3 of 4 */
    is_near(jm_metric_auroc(p, 2, q, 2), 0.75, 1e-12, "a 2x2 case by hand: 3 of 4 pairs ordered");
    double r[] = { 2, 1 }, s[] = { 1, 0 };
    /* (2>1) (2>0) (1=1: 1/2) (1>0) = 3.5 / 4 */
    is_near(jm_metric_auroc(r, 2, s, 2), 0.875, 1e-12, "a tie across the sets counts one half");
    ok(isnan(jm_metric_auroc(a, 0, b, 3)), "an empty set: NaN");
    double nan_s[] = { NAN };
    ok(isnan(jm_metric_auroc(nan_s, 1, b, 3)), "a NaN score: NaN");

    /* ECE */
    double conf[1000];
    unsigned char right[1000];
    /* calibrated: in each of 10 bins of confidence (b+0.5)/10, that fraction right */
    for (int i = 0; i < 1000; i++) {
        int bin = i / 100, k = i % 100;
        conf[i] = (bin + 0.5) / 10;
        right[i] = k < (bin * 10 + 5);
    }
    is_near(jm_metric_ece(conf, right, 1000, 10, NULL, NULL, NULL) + 1, 1.0, 1e-12, "a perfectly calibrated set: ECE 0");
    for (int i = 0; i < 1000; i++) { conf[i] = 1.0; right[i] = i < 700; }
    is_near(jm_metric_ece(conf, right, 1000, 20, NULL, NULL, NULL), 0.3, 1e-12, "always sure, 70% right: ECE 0.3 (confidence 1 falls in the last bin)");
    double cb[4], ab[4];
    int64_t nb[4];
    double c2[] = { 0.1, 0.3, 0.6, 0.9 };
    unsigned char r2[] = { 0, 1, 1, 0 };
    double e = jm_metric_ece(c2, r2, 4, 4, cb, ab, nb);
    /* bins [0,.25) [.25,.5) [.5,.75) [.75,1]: |0-.1| + |1-.3| + |1-.6| + |0-.9| = 2.1, / 4 */
    is_near(e, 2.1 / 4, 1e-12, "four bins by hand");
    ok(nb[0] == 1 && nb[1] == 1 && nb[2] == 1 && nb[3] == 1 && ab[1] == 1 && fabs(cb[3] - 0.9) < 1e-12, "per-bin counts, accuracies and confidences");
    ok(isnan(jm_metric_ece(c2, r2, 0, 4, NULL, NULL, NULL)), "no examples: NaN");
    return tap_done();
}
