/* t_metrics.c — the evaluation statistics (runtime/app/metrics.c) on cases with
 * known answers: AUROC, ECE, the Brier scores and the calibration curve (the
 * last two by hand and against scikit-learn's own functions on 500 records,
 * when /usr/bin/python3 has sklearn). */
#include "app/metrics.h"
#include "helpers.h"
#include "tap.h"
#include <math.h>
#include <stdint.h>
#include <unistd.h>

/* 500 records (p1, y): p1 on a 1/40 grid (many exactly on sklearn's 10- and 7-bin
   edges, 0 and 1 included) and pseudo-random ones, labels drawn with probability
   p1^1.5 (so the model is not calibrated); compared with sklearn's
   brier_score_loss, calibration_curve (10 and 7 bins) and roc_auc_score */
static void against_sklearn(void) {
    if (jt_run("/usr/bin/python3 -c 'import sklearn.calibration, sklearn.metrics'", NULL, 0) != 0) {
        skip(8, "/usr/bin/python3 has no sklearn (apt-get install python3-sklearn)");
        return;
    }
    enum { N = 500 };
    static double p[N];
    static int64_t y[N];
    uint64_t s = 88172645463325252ull;
    for (int i = 0; i < N; i++) {
        s ^= s << 13; s ^= s >> 7; s ^= s << 17;
        double u = (double)(s >> 11) / 9007199254740992.0;
        p[i] = i < 200 ? (double)(i % 41) / 40.0 : u;
        s ^= s << 13; s ^= s >> 7; s ^= s << 17;
        double v = (double)(s >> 11) / 9007199254740992.0;
        y[i] = v < pow(p[i], 1.5);
    }
    char dir[] = "/tmp/jemc_metrics.XXXXXX", path[64], cmd[512];
    if (!mkdtemp(dir)) { skip(8, "mkdtemp failed"); return; }
    snprintf(path, sizeof path, "%s/p.csv", dir);
    FILE *f = fopen(path, "w");
    /* and three classes: probabilities (a, b, 1 - a - b) from p, labels i % 3 where
       p is high, else from y (some ties, every class present) */
    static double p3[N * 3];
    static int64_t y3[N];
    for (int i = 0; i < N; i++) {
        double a = p[i] * 0.8, b = (1 - p[i]) * 0.5;
        p3[3 * i] = a; p3[3 * i + 1] = b; p3[3 * i + 2] = 1 - a - b;
        y3[i] = p[i] > 0.6 ? i % 3 : y[i];
    }
    for (int i = 0; i < N; i++) fprintf(f, "%.17g,%d,%.17g,%.17g,%.17g,%d\n", p[i], (int)y[i], p3[3 * i], p3[3 * i + 1], p3[3 * i + 2], (int)y3[i]);
    fclose(f);
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 -c '"
             "import sys, numpy as np, sklearn.calibration as c, sklearn.metrics as m\n"
             "d = np.loadtxt(sys.argv[1], delimiter=\",\"); p, y = d[:, 0], d[:, 1].astype(int)\n"
             "print(repr(m.brier_score_loss(y, p)), repr(m.roc_auc_score(y, p)))\n"
             "print(repr(m.roc_auc_score(d[:, 5].astype(int), d[:, 2:5], multi_class=\"ovr\")))\n"
             "for b in (10, 7):\n"
             "    t, q = c.calibration_curve(y, p, n_bins=b)\n"
             "    print(len(t), *map(repr, t), *map(repr, q))\n"
             "' %s", path);
    static char res[16384];
    int rc = jt_run(cmd, res, sizeof res);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0) tap_diag("could not remove %s", dir);
    if (!ok(rc == 0, "sklearn ran")) { tap_diag("%s", res); skip(7, "no sklearn figures"); return; }
    char *at = res;
    double brier = strtod(at, &at), auc = strtod(at, &at), ovr = strtod(at, &at);
    char name[128];
    snprintf(name, sizeof name, "binary Brier score == sklearn's brier_score_loss (%.6f)", brier);
    is_near(jm_metric_brier_binary(p, y, N), brier, 1e-14, name);
    snprintf(name, sizeof name, "AUROC of p1 == sklearn's roc_auc_score (%.6f)", auc);
    is_near(jm_metric_auroc_labels(p, y, N), auc, 1e-14, name);
    snprintf(name, sizeof name, "three classes: one-vs-rest AUROC == sklearn's roc_auc_score(multi_class=\"ovr\") (%.6f)", ovr);
    is_near(jm_metric_auroc_ovr(p3, y3, N, 3), ovr, 1e-14, name);
    for (int b = 10; b >= 7; b -= 3) {
        double fp[10], mp[10], ft[10], mt[10];
        int64_t cnt[10];
        int k = (int)strtol(at, &at, 10), got = jm_metric_calibration_curve(p, y, N, b, fp, mp, cnt);
        for (int j = 0; j < k && j < 10; j++) ft[j] = strtod(at, &at);
        for (int j = 0; j < k && j < 10; j++) mt[j] = strtod(at, &at);
        double worst = 0;
        int j = 0;
        for (int bb = 0; bb < b; bb++) {
            if (!cnt[bb]) continue;
            if (j < k) worst = fmax(worst, fmax(fabs(fp[bb] - ft[j]), fabs(mp[bb] - mt[j])));
            j++;
        }
        ok(got == k && j == k, "%d bins: %d non-empty, as sklearn (%d)", b, got, k);
        ok(worst < 1e-15, "%d bins: fraction of positives and mean p1 of every bin == sklearn's calibration_curve (worst %.2g)", b, worst);
    }
}

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

    /* Brier, multiclass: (.3^2 + .2^2 + .1^2) = .14 and (.1^2 + .9^2 + .8^2) = 1.46, mean .8 */
    double pr3[] = { 0.7, 0.2, 0.1, 0.1, 0.1, 0.8 };
    int64_t y3[] = { 0, 1 };
    is_near(jm_metric_brier(pr3, y3, 2, 3), 0.8, 1e-12, "multiclass Brier by hand: 0.8");
    double sure[] = { 0, 1, 0, 1, 0, 0 };
    int64_t ysure[] = { 1, 0 };
    is_near(jm_metric_brier(sure, ysure, 2, 3), 0.0, 0, "sure and right: Brier 0");
    int64_t ywrong[] = { 0, 1 };
    is_near(jm_metric_brier(sure, ywrong, 2, 3), 2.0, 1e-12, "sure and wrong: Brier 2 (its largest)");
    int64_t ybad[] = { 0, 3 };
    ok(isnan(jm_metric_brier(pr3, ybad, 2, 3)), "a label outside [0, K): NaN");
    /* binary: sklearn's docstring example, y (0 1 1 0), p (.1 .9 .8 .3): (.01 + .01 + .04 + .09) / 4 */
    double pb[] = { 0.1, 0.9, 0.8, 0.3 };
    int64_t yb[] = { 0, 1, 1, 0 };
    is_near(jm_metric_brier_binary(pb, yb, 4), 0.0375, 1e-12, "binary Brier by hand (sklearn's example): 0.0375");
    double pb2[8];
    for (int i = 0; i < 4; i++) { pb2[2 * i] = 1 - pb[i]; pb2[2 * i + 1] = pb[i]; }
    is_near(jm_metric_brier(pb2, yb, 4, 2), 2 * 0.0375, 1e-12, "two classes: the multiclass score is twice the binary one");
    int64_t y2bad[] = { 0, 1, 2, 0 };
    ok(isnan(jm_metric_brier_binary(pb, y2bad, 4)), "binary Brier with a label 2: NaN");
    /* AUROC from labels: sklearn's roc_auc_score example, y (0 0 1 1), s (.1 .4 .35 .8): 0.75 */
    double sa[] = { 0.1, 0.4, 0.35, 0.8 };
    int64_t ya[] = { 0, 0, 1, 1 };
    is_near(jm_metric_auroc_labels(sa, ya, 4), 0.75, 1e-12, "AUROC from labels (sklearn's example): 0.75");
    int64_t yone[] = { 1, 1, 1, 1 };
    ok(isnan(jm_metric_auroc_labels(sa, yone, 4)), "AUROC with one class only: NaN");

    /* calibration curve: sklearn's docstring example, 3 bins: true (0 .5 1), predicted (.2 .525 .85) */
    double pc[] = { 0.1, 0.2, 0.3, 0.4, 0.65, 0.7, 0.8, 0.9, 1.0 };
    int64_t yc[] = { 0, 0, 0, 0, 1, 1, 1, 1, 1 };
    double fp[10], mp[10];
    int64_t cn[10];
    int ne = jm_metric_calibration_curve(pc, yc, 9, 3, fp, mp, cn);
    ok(ne == 3 && fabs(fp[0]) < 1e-12 && fabs(fp[1] - 0.5) < 1e-12 && fabs(fp[2] - 1) < 1e-12, "calibration curve (sklearn's example): fraction of positives 0, .5, 1");
    ok(fabs(mp[0] - 0.2) < 1e-12 && fabs(mp[1] - 0.525) < 1e-12 && fabs(mp[2] - 0.85) < 1e-12 && cn[0] == 3 && cn[1] == 2 && cn[2] == 4,
       "calibration curve: mean predicted .2, .525, .85 over 3, 2, 4 records");
    /* the edges: 0.5 with 2 bins belongs to the first (bins are (e_b, e_b+1]); 0 to the first;
       0.2 with 10 bins to (0.1, 0.2] since 2 * 0.1 == 0.2, 0.3 to (0.2, 0.3] since 3 * 0.1 > 0.3 */
    double pe[] = { 0.5, 0.0, 0.2, 0.3, 1.0 };
    int64_t ye[] = { 1, 0, 1, 0, 1 };
    ne = jm_metric_calibration_curve(pe, ye, 2, 2, fp, mp, cn);
    ok(ne == 1 && cn[0] == 2 && cn[1] == 0 && isnan(fp[1]) && fabs(fp[0] - 0.5) < 1e-12, "p = 0.5 with 2 bins falls in the first bin, with p = 0; the empty bin is NaN");
    ne = jm_metric_calibration_curve(pe + 2, ye + 2, 3, 10, fp, mp, cn);
    ok(ne == 3 && cn[1] == 1 && cn[2] == 1 && cn[9] == 1, "10 bins: 0.2 in (0.1, 0.2], 0.3 in (0.2, 0.3], 1 in the last");
    double pbad[] = { 0.5, 1.5 };
    ok(jm_metric_calibration_curve(pbad, ye, 2, 10, NULL, NULL, NULL) == -1, "a probability above 1: refused (-1)");
    ok(jm_metric_calibration_curve(pe, y2bad, 4, 10, NULL, NULL, NULL) == -1, "a label 2: refused (-1)");
    /* one-vs-rest: 3 classes, 4 records; class 0 scores (.6 .2 .1 .1) for labels (0 1 2 0):
       positives .6 .1 vs .2 .1: (1 + 1 + 0 + .5) / 4 = .625; class 1 (.3 .7 .2 .3): .7 above
       .3 .2 .3 -> 1; class 2 (.1 .1 .7 .6): .7 above .1 .1 .6 -> 1; mean (.625 + 1 + 1) / 3 */
    double po[] = { .6, .3, .1, .2, .7, .1, .1, .2, .7, .1, .3, .6 };
    int64_t yo[] = { 0, 1, 2, 0 };
    is_near(jm_metric_auroc_ovr(po, yo, 4, 3), (0.625 + 2) / 3, 1e-12, "one-vs-rest AUROC by hand: (0.625 + 1 + 1) / 3");
    int64_t yo2[] = { 0, 1, 1, 0 };
    ok(isnan(jm_metric_auroc_ovr(po, yo2, 4, 3)), "one-vs-rest with a class absent: NaN");
    against_sklearn();
    return tap_done();
}
