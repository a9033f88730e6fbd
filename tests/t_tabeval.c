/* t_tabeval.c — `eval` on a tabular model: an executable compiled from
 * graphs/mlp_tabular.graph (4 features, 16 hidden units, batch 16), trained
 * with `train --program train_step_ce` on a CSV written here (standardised, the
 * default for tables: the reference forward applies the checkpoint's mean and
 * std as eval must; the three-class run with --no-standardize, raw), then
 *
 *   1. eval accuracy --json: accuracy, cross-entropy, mean energy, Brier's
 *      multiclass score, the binary Brier score and the AUROC of p(y=1|x)
 *      against the test's own float64 forward pass of the checkpoint's MLP over
 *      the 100 test records (not a multiple of the batch: the padding must not
 *      count); the two Brier scores differ by the factor 2 two classes imply;
 *   2. eval calibration: calibration.json's ECE bins and sklearn's calibration
 *      curve of p(y=1|x) (10 bins; --curve-bins 4) equal the reference's, the
 *      PNGs are written;
 *   3. eval ood: --ood-noise (each column uniform within the data's range) and
 *      --ood-data of another table: AUROCs in ood.json, a table far from the
 *      data separated by log p(x); a table of other columns refused;
 *   4. eval robust refuses tables (exit 2, saying why); a label the model has
 *      no class for is an error naming the record, not a read past the logits;
 *   5. three classes (-D classes=3): Brier's score, the one-vs-rest AUROC, no binary figures, no
 *      calibration curve;
 *   6. the noise set itself (jm_evalsuite_load_ood called here): a table's
 *      columns each fill their own range, images [-1, 1];
 *   7. graphs/ssl_tabular.graph (shrunk with -D) answers eval accuracy,
 *      calibration and ood from its declared initialisers (skipped when the
 *      graph is absent).
 * The statistics themselves are t_metrics's (against sklearn there). */
#include "train_helpers.h"
#include "app/metrics.h"
#include "app/rt_sample.h"
#include "app/data.h"
#include "tap.h"
#include <sys/stat.h>
#include <unistd.h>

enum { F = 4, H = 16, NTEST = 100 };

static char dir[256], exe[320], exe3[320];
static float tx[NTEST][F];
static int64_t ty[NTEST];

/* the number after "key": in JSON text (NAN when absent or null) */
static double jnum(const char *text, const char *key) {
    char k[96];
    snprintf(k, sizeof k, "\"%s\": ", key);
    const char *at = text ? strstr(text, k) : NULL;
    if (!at) return NAN;
    at += strlen(k);
    if (strncmp(at, "null", 4) == 0) return NAN;
    return strtod(at, NULL);
}

/* the n numbers of the JSON array after "key": [ (returns how many were read) */
static int jarr(const char *text, const char *key, double *v, int n) {
    char k[96];
    snprintf(k, sizeof k, "\"%s\": [", key);
    const char *at = text ? strstr(text, k) : NULL;
    if (!at) return 0;
    char *p = (char *)at + strlen(k);
    int i = 0;
    while (i < n && *p != ']') {
        v[i++] = strtod(p, &p);
        while (*p == ',' || *p == ' ') p++;
    }
    return i;
}

/* records of a two-blob table: class i % classes, feature 0 shifted by the
   class, so the classes overlap (the model is neither perfect nor useless) */
static void write_table(const char *path, int n, int classes, double shift, int cols, int keep) {
    FILE *f = fopen(path, "w");
    for (int c = 0; c < cols; c++) fprintf(f, "f%d,", c);
    fprintf(f, "label\n");
    uint64_t s = 0x9e3779b97f4a7c15ull ^ (uint64_t)n * 77 ^ (uint64_t)(shift * 1000);
    for (int i = 0; i < n; i++) {
        int y = i % classes;
        for (int c = 0; c < cols; c++) {
            /* a sum of 4 uniforms: roughly normal, mean 0, variance 1/3 */
            double g = 0;
            for (int k = 0; k < 4; k++) {
                s ^= s << 13; s ^= s >> 7; s ^= s << 17;
                g += (double)(s >> 11) / 9007199254740992.0 - 0.5;
            }
            float v = (float)(g * 1.7 + (c == 0 ? 0.9 * (y - (classes - 1) / 2.0) : 0) + shift);
            if (keep && i < NTEST && c < F) tx[i][c] = v;
            fprintf(f, "%.9g,", v);
        }
        if (keep && i < NTEST) ty[i] = y;
        fprintf(f, "%d\n", y);
    }
    fclose(f);
}

/* the comma-separated numbers of checkpoint metadata `key` into v (how many; 0 when absent) */
static int meta_list(const jm_st_file *st, const char *key, double *v, int n) {
    const char *s = jm_st_meta_get(st, key);
    int k = 0;
    while (s && *s && k < n) {
        char *end;
        v[k++] = strtod(s, &end);
        s = *end == ',' ? end + 1 : end;
        if (*end != ',') break;
    }
    return k;
}

/* the checkpoint's MLP in float64: p (n x K class probabilities), energies
   -logsumexp, cross-entropies. When the run stored a table transform
   (jemc.data.kept, jemc.data.mean, jemc.data.std: train's standardisation with
   the training split's statistics) the records get it first, as eval's do. */
static int forward(const char *ck, int K, double *p, double *energy, double *nll) {
    jm_st_file st;
    char err[512];
    if (jm_st_read(ck, &st, err, sizeof err) != 0) { tap_diag("%s", err); return -1; }
    double kept[F], mean[F], sd[F];
    int nk = meta_list(&st, "jemc.data.kept", kept, F), nm = meta_list(&st, "jemc.data.mean", mean, F), ns = meta_list(&st, "jemc.data.std", sd, F);
    if ((nk && nk != F) || nm != ns || (nm && nm != F)) { tap_diag("%s: a transform for other columns", ck); jm_st_free(&st); return -1; }
    static int said;
    if (!said++) tap_diag("reference forward: %s", nm ? "standardised with the checkpoint's mean and std" : "raw columns (no transform stored)");
    const char *names[6] = { "fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias", "out.weight", "out.bias" };
    const jm_st_tensor *w[6];
    for (int i = 0; i < 6; i++)
        if (!(w[i] = jm_st_find(&st, names[i]))) { tap_diag("%s: no %s", ck, names[i]); jm_st_free(&st); return -1; }
    for (int r = 0; r < NTEST; r++) {
        double h1[H], h2[H], l[8], mx = -INFINITY, z = 0;
        for (int o = 0; o < H; o++) {
            double a = jm_st_value(w[1], o);
            for (int i = 0; i < F; i++) {
                double v = tx[r][nk ? (int)kept[i] : i];
                if (nm) v = (v - mean[i]) / sd[i];
                a += jm_st_value(w[0], o * F + i) * v;
            }
            h1[o] = a > 0 ? a : 0.2 * a;
        }
        for (int o = 0; o < H; o++) {
            double a = jm_st_value(w[3], o);
            for (int i = 0; i < H; i++) a += jm_st_value(w[2], o * H + i) * h1[i];
            h2[o] = a > 0 ? a : 0.2 * a;
        }
        for (int o = 0; o < K; o++) {
            double a = jm_st_value(w[5], o);
            for (int i = 0; i < H; i++) a += jm_st_value(w[4], o * H + i) * h2[i];
            l[o] = a;
            mx = fmax(mx, a);
        }
        for (int o = 0; o < K; o++) z += exp(l[o] - mx);
        for (int o = 0; o < K; o++) p[r * K + o] = exp(l[o] - mx) / z;
        energy[r] = -(mx + log(z));
        nll[r] = mx + log(z) - l[ty[r]];
    }
    jm_st_free(&st);
    return 0;
}

static char *report_file(const char *rep, const char *name) {
    char p[512];
    snprintf(p, sizeof p, "%s/%s/%s", dir, rep, name);
    return slurp(p, NULL);
}

static int file_exists(const char *rep, const char *name) {
    char p[512];
    struct stat st;
    snprintf(p, sizeof p, "%s/%s/%s", dir, rep, name);
    return stat(p, &st) == 0 && st.st_size > 1000;
}

static void test_two_classes(void) {
    int r = run("%s train --data %s/train.csv --program train_step_ce --iters 120 --set lr=0.01 --out %s/run --no-progress --threads 1 --seed 5", exe, dir, dir);
    if (!ok(r == 0, "train --program train_step_ce on a CSV (exit %d)", r)) { tap_diag("%s", out); return; }
    char ck[512];
    snprintf(ck, sizeof ck, "%s/run/last.safetensors", dir);
    static double p[NTEST * 2], en[NTEST], nll[NTEST], p1[NTEST], conf[NTEST];
    static unsigned char right[NTEST];
    if (!ok(forward(ck, 2, p, en, nll) == 0, "the checkpoint's parameters read back")) return;
    double acc = 0, loss = 0, energy = 0;
    for (int i = 0; i < NTEST; i++) {
        p1[i] = p[2 * i + 1];
        right[i] = (p1[i] > 0.5) == ty[i];
        conf[i] = fmax(p1[i], 1 - p1[i]);
        acc += right[i]; loss += nll[i]; energy += en[i];
    }
    acc /= NTEST; loss /= NTEST; energy /= NTEST;
    double brier = jm_metric_brier(p, ty, NTEST, 2), bb = jm_metric_brier_binary(p1, ty, NTEST), auc = jm_metric_auroc_labels(p1, ty, NTEST);
    tap_diag("reference: accuracy %.4f, loss %.4f, Brier %.4f, binary %.4f, AUROC %.4f", acc, loss, brier, bb, auc);

    /* 1. accuracy */
    r = run("%s eval accuracy --ckpt %s --data %s/test.csv --json %s/acc.json --threads 1", exe, ck, dir, dir);
    ok(r == 0 && strstr(out, "Brier score") && strstr(out, "AUROC of p1"), "eval accuracy prints the Brier scores and the AUROC (exit %d)", r);
    char jp[512];
    snprintf(jp, sizeof jp, "%s/acc.json", dir);
    char *j = slurp(jp, NULL);
    if (!ok(j != NULL, "eval accuracy --json writes the file")) { tap_diag("%s", out); return; }
    ok(jnum(j, "records") == NTEST && jnum(j, "classes") == 2, "--json: 100 records (not 112: the padding of the last batch is left out), 2 classes");
    ok(fabs(jnum(j, "accuracy") - acc) < 1e-6, "accuracy %.4f == the reference forward's %.4f", jnum(j, "accuracy"), acc);
    ok(fabs(jnum(j, "loss") - loss) < 1e-4 && fabs(jnum(j, "energy") - energy) < 1e-4, "mean cross-entropy %.5f and energy %.5f == the reference's (%.5f, %.5f; float32)",
       jnum(j, "loss"), jnum(j, "energy"), loss, energy);
    ok(fabs(jnum(j, "brier") - brier) < 1e-5, "Brier's multiclass score %.6f == the reference's %.6f", jnum(j, "brier"), brier);
    ok(fabs(jnum(j, "brier_binary") - bb) < 1e-5 && fabs(jnum(j, "brier") - 2 * jnum(j, "brier_binary")) < 1e-5,
       "binary Brier score %.6f == the reference's %.6f, half the multiclass one", jnum(j, "brier_binary"), bb);
    ok(fabs(jnum(j, "auroc") - auc) < 1e-9 && auc > 0.6 && auc < 1, "AUROC of p(y=1|x) %.4f == the reference's (a useful, imperfect model)", jnum(j, "auroc"));
    free(j);

    /* 2. calibration */
    r = run("%s eval calibration --ckpt %s --data %s/test.csv --report %s/cal --bins 5 --threads 1", exe, ck, dir, dir);
    ok(r == 0 && strstr(out, "calibration curve of p1 (10 uniform bins"), "eval calibration prints the calibration curve (exit %d)", r);
    j = report_file("cal", "calibration.json");
    double cb[5], ab[5], fp[10], mp[10], gf[10], gm[10], gc[10];
    int64_t nb[5], cn[10];
    double ece = jm_metric_ece(conf, right, NTEST, 5, cb, ab, nb);
    ok(j && fabs(jnum(j, "ece") - ece) < 1e-5 && fabs(jnum(j, "brier_binary") - bb) < 1e-5, "calibration.json: ECE %.4f (5 bins) and binary Brier as the reference's", ece);
    int ne = jm_metric_calibration_curve(p1, ty, NTEST, 10, fp, mp, cn);
    int k1 = jarr(j, "mean_predicted", gm, 10), k2 = jarr(j, "fraction_positive", gf, 10), k3 = jarr(j, "count", gc, 10);
    double worst = 0;
    int same = k1 == ne && k2 == ne && k3 == ne, at = 0;
    for (int b = 0; b < 10 && same; b++) {
        if (!cn[b]) continue;
        same = gc[at] == (double)cn[b];
        worst = fmax(worst, fmax(fabs(gm[at] - mp[b]), fabs(gf[at] - fp[b])));
        at++;
    }
    ok(same && worst < 1e-5, "calibration curve: %d non-empty of 10 bins, counts, mean p1 and fraction of class 1 as the reference's (worst %.2g)", ne, worst);
    ok(file_exists("cal", "calibration_curve.png") && file_exists("cal", "reliability.png"), "calibration_curve.png and reliability.png written");
    free(j);
    r = run("%s eval calibration --ckpt %s --data %s/test.csv --report %s/cal4 --curve-bins 4 --threads 1", exe, ck, dir, dir);
    j = report_file("cal4", "calibration.json");
    ne = jm_metric_calibration_curve(p1, ty, NTEST, 4, fp, mp, cn);
    ok(r == 0 && j && strstr(j, "\"bins\": 4,") && jarr(j, "count", gc, 10) == ne, "--curve-bins 4: %d non-empty bins of 4", ne);
    free(j);

    /* 3. ood */
    r = run("%s eval ood --ckpt %s --data %s/test.csv --ood-noise --ood-data %s/far.csv --report %s/ood --threads 1", exe, ck, dir, dir, dir);
    j = report_file("ood", "ood.json");
    ok(r == 0 && j && strstr(j, "\"noise\": {") && strstr(j, "far.csv\": {"), "eval ood: --ood-noise and --ood-data of a table (exit %d)", r);
    /* far.csv is the test table moved by 25 in every column: the model's energy
       there is nothing like the data's (which way depends on the training) */
    const char *fk = j ? strstr(j, "far.csv\": {") : NULL;
    double far_px = fk ? jnum(fk, "logpx") : NAN;
    ok(isfinite(far_px) && fabs(far_px - 0.5) > 0.4, "a table far from the data is separated by log p(x): AUROC %.3f", far_px);
    const char *nk = j ? strstr(j, "\"noise\": {") : NULL;
    double npx = nk ? jnum(nk, "logpx") : NAN, npy = nk ? jnum(nk, "py") : NAN;
    ok(npx >= 0 && npx <= 1 && npy >= 0 && npy <= 1, "noise within the columns' ranges: AUROCs %.3f %.3f", npx, npy);
    ok(file_exists("ood", "ood_logpx.png"), "ood histograms written");
    free(j);
    r = run("%s eval ood --ckpt %s --data %s/test.csv --ood-data %s/three_cols.csv --report %s/ood2 --threads 1", exe, ck, dir, dir, dir);
    /* refused here, or by the stored transform (made for 4 columns) before */
    ok(r == 1 && strstr(out, "three_cols.csv") && strstr(out, "column"),
       "an OOD table of other columns is refused, not padded (exit %d)", r);

    /* 4. refusals */
    r = run("%s eval robust --ckpt %s --data %s/test.csv --report %s/rob --threads 1", exe, ck, dir, dir);
    ok(r == 2 && strstr(out, "not computed for tables"), "eval robust refuses a table, saying why (exit %d)", r);
    r = run("%s eval accuracy --ckpt %s --data %s/badlabel.csv --threads 1", exe, ck, dir);
    ok(r == 1 && strstr(out, "record 3 (0-based) has label 2, but the model has 2 classes"), "a label the model has no class for names the record (exit %d)", r);
    if (r != 1) tap_diag("%s", out);
}

static void test_three_classes(void) {
    int r = run("%s train --data %s/train3.csv --program train_step_ce --no-standardize --iters 60 --set lr=0.01 --out %s/run3 --no-progress --threads 1", exe3, dir, dir);
    if (!ok(r == 0, "three classes: train (exit %d)", r)) { tap_diag("%s", out); return; }
    char ck[512];
    snprintf(ck, sizeof ck, "%s/run3/last.safetensors", dir);
    write_table("/dev/null", NTEST, 3, 0, F, 1);    /* the reference's records: the test table's */
    static double p[NTEST * 3], en[NTEST], nll[NTEST];
    if (forward(ck, 3, p, en, nll) != 0) { ok(0, "three classes: checkpoint read"); return; }
    double brier = jm_metric_brier(p, ty, NTEST, 3), ovr = jm_metric_auroc_ovr(p, ty, NTEST, 3);
    r = run("%s eval accuracy --ckpt %s --data %s/test3.csv --json %s/acc3.json --threads 1", exe3, ck, dir, dir);
    char jp[512];
    snprintf(jp, sizeof jp, "%s/acc3.json", dir);
    char *j = slurp(jp, NULL);
    ok(r == 0 && j && jnum(j, "classes") == 3 && fabs(jnum(j, "brier") - brier) < 1e-5, "three classes: Brier's score %.5f == the reference's %.5f",
       j ? jnum(j, "brier") : NAN, brier);
    ok(j && fabs(jnum(j, "auroc_ovr") - ovr) < 1e-6 && ovr > 0.5, "three classes: one-vs-rest AUROC %.4f == the reference's %.4f", j ? jnum(j, "auroc_ovr") : NAN, ovr);
    ok(j && !strstr(j, "brier_binary") && !strstr(j, "\"auroc\"") && !strstr(out, "two classes"), "three classes: no binary Brier score, no AUROC of p1");
    free(j);
    r = run("%s eval calibration --ckpt %s --data %s/test3.csv --report %s/cal3 --threads 1", exe3, ck, dir, dir);
    j = report_file("cal3", "calibration.json");
    ok(r == 0 && j && !strstr(j, "calibration_curve") && !file_exists("cal3", "calibration_curve.png") && file_exists("cal3", "reliability.png"),
       "three classes: the reliability diagram, no calibration curve (exit %d)", r);
    free(j);
}

/* 6. the OOD noise of a table: column k uniform in [lo_k, hi_k] of the data */
static void test_noise(void) {
    enum { N = 400, W = 3 };
    static float x[N * W];
    static int64_t y[N];
    const double lo[W] = { 100, -5, 0 }, hi[W] = { 101, -3, 0 };
    for (int i = 0; i < N; i++)
        for (int k = 0; k < W; k++) x[i * W + k] = (float)(lo[k] + (hi[k] - lo[k]) * ((i * 37 + k * 11) % N) / (N - 1.0));
    jm_dataset like;
    memset(&like, 0, sizeof like);
    like.n = N; like.c = 1; like.h = 1; like.w = W; like.x = x; like.y = y; like.classes = 2; like.format = JM_DATA_CSV;
    snprintf(like.path, sizeof like.path, "table");
    jm_dataset noise[1];
    int k = jm_evalsuite_load_ood(NULL, 0, 1, &like, noise, "t_tabeval");
    if (!ok(k == 1 && noise[0].n == N && noise[0].w == W, "a noise set shaped like the table")) return;
    double mn[W], mx[W];
    for (int c = 0; c < W; c++) { mn[c] = INFINITY; mx[c] = -INFINITY; }
    for (int i = 0; i < N; i++)
        for (int c = 0; c < W; c++) { mn[c] = fmin(mn[c], noise[0].x[i * W + c]); mx[c] = fmax(mx[c], noise[0].x[i * W + c]); }
    ok(mn[0] >= 100 && mx[0] <= 101 && mn[0] < 100.05 && mx[0] > 100.95, "column 0 (data in [100, 101]): noise in [%.3f, %.3f]", mn[0], mx[0]);
    ok(mn[1] >= -5 && mx[1] <= -3 && mn[1] < -4.9 && mx[1] > -3.1, "column 1 (data in [-5, -3]): noise in [%.3f, %.3f]", mn[1], mx[1]);
    ok(mn[2] == 0 && mx[2] == 0, "a constant column stays constant");
    jm_data_free(&noise[0]);
    like.format = JM_DATA_IDX;     /* the same values read as an image: noise in the pixel range */
    k = jm_evalsuite_load_ood(NULL, 0, 1, &like, noise, "t_tabeval");
    double a = INFINITY, b = -INFINITY;
    for (int i = 0; k == 1 && i < N * W; i++) { a = fmin(a, noise[0].x[i]); b = fmax(b, noise[0].x[i]); }
    ok(k == 1 && a >= -1 && b <= 1 && a < -0.9 && b > 0.9, "images: noise in [-1, 1] ([%.3f, %.3f])", a, b);
    if (k == 1) jm_data_free(&noise[0]);
}

/* 7. the semi-supervised tabular graph has the programs eval needs */
static void test_ssl_graph(void) {
    struct stat st;
    if (stat("graphs/ssl_tabular.graph", &st) != 0) { skip(4, "no graphs/ssl_tabular.graph"); return; }
    char ssl[320];
    snprintf(ssl, sizeof ssl, "%s/ssl", dir);
    int r = run("%s compile graphs/ssl_tabular.graph -D features=4 -D batch=16 -D lab_batch=8 -D hidden1=16 -D hidden2=16 -D hidden3=8 "
                "-D hidden4=8 -D hidden5=8 -D hidden6=8 -D noise_dim=4 -D g_hidden=16 -D buffer_size=64 -o %s", jemc, ssl);
    if (!ok(r == 0, "ssl_tabular.graph compiles, shrunk")) { tap_diag("%s", out); skip(3, "no executable"); return; }
    r = run("%s eval accuracy --data %s/test.csv --json %s/ssl_acc.json --threads 1", ssl, dir, dir);
    char jp[512];
    snprintf(jp, sizeof jp, "%s/ssl_acc.json", dir);
    char *j = slurp(jp, NULL);
    ok(r == 0 && j && jnum(j, "records") == NTEST && isfinite(jnum(j, "brier_binary")) && isfinite(jnum(j, "auroc")),
       "ssl_tabular: eval accuracy with Brier scores and AUROC (exit %d)", r);
    free(j);
    r = run("%s eval calibration --data %s/test.csv --report %s/ssl_cal --threads 1", ssl, dir, dir);
    ok(r == 0 && file_exists("ssl_cal", "calibration_curve.png"), "ssl_tabular: eval calibration (exit %d)", r);
    r = run("%s eval ood --data %s/test.csv --ood-noise --report %s/ssl_ood --threads 1", ssl, dir, dir);
    j = report_file("ssl_ood", "ood.json");
    ok(r == 0 && j && strstr(j, "\"noise\": {"), "ssl_tabular: eval ood --ood-noise (exit %d)", r);
    free(j);
}

int main(void) {
    jemc = jt_env("JEMC", "build/jemc");
    snprintf(dir, sizeof dir, "/tmp/jemc_tabeval.XXXXXX");
    if (!mkdtemp(dir)) { skip_all("mkdtemp failed"); return 0; }
    char p[512];
    snprintf(p, sizeof p, "%s/train.csv", dir); write_table(p, 320, 2, 0, F, 0);
    snprintf(p, sizeof p, "%s/far.csv", dir); write_table(p, 60, 2, 25, F, 0);
    snprintf(p, sizeof p, "%s/three_cols.csv", dir); write_table(p, 20, 2, 0, 3, 0);
    snprintf(p, sizeof p, "%s/train3.csv", dir); write_table(p, 300, 3, 0, F, 0);
    snprintf(p, sizeof p, "%s/test3.csv", dir); write_table(p, NTEST, 3, 0, F, 0);
    snprintf(p, sizeof p, "%s/badlabel.csv", dir);
    FILE *f = fopen(p, "w");
    fprintf(f, "a,b,c,d,label\n0,0,0,0,0\n1,1,1,1,1\n0,1,0,1,0\n1,0,1,0,2\n");
    fclose(f);
    snprintf(p, sizeof p, "%s/test.csv", dir); write_table(p, NTEST, 2, 0, F, 1);    /* last: the reference's records */
    snprintf(exe, sizeof exe, "%s/mlp", dir);
    snprintf(exe3, sizeof exe3, "%s/mlp3", dir);
    int r = run("%s compile graphs/mlp_tabular.graph -D features=4 -D hidden=16 -D batch=16 -o %s && "
                "%s compile graphs/mlp_tabular.graph -D features=4 -D hidden=16 -D batch=16 -D classes=3 -o %s", jemc, exe, jemc, exe3);
    ok(r == 0, "compile graphs/mlp_tabular.graph (features 4, hidden 16, batch 16; 2 and 3 classes)");
    if (r) { tap_diag("%s", out); return tap_done(); }
    test_two_classes();
    test_three_classes();
    test_noise();
    test_ssl_graph();
    snprintf(p, sizeof p, "rm -rf %s", dir);
    if (system(p) != 0) tap_diag("could not remove %s", dir);
    return tap_done();
}
