/* t_tables.c — tables as users have them (runtime/app/data.c, data_table.c, and the
 * executable's train and eval on them, rt_train.c and rt_session.c):
 *
 *   1. the three layouts of VERA's tabular sets, on small files written here:
 *      HEPMASS-like CSV (header "# label,f0,...", the label first, written "1.0"),
 *      HUMAN-like whitespace text X.txt with y.txt (labels 1..6, --label-base 1),
 *      CROP-like CSV ("label,f1,...", labels 1..7); the label column by name, by
 *      index and from the end;
 *   2. bad files, each with its message: a ragged row (CSV and text), a field that
 *      is not a number, an unknown column name (the header's names listed), a name
 *      without a header, a labels file of another length, a label below the base, a
 *      label that is not an integer;
 *   3. the transform: --drop-repeated's rule (a column whose smallest value occurs
 *      more than N times), the mean and population std of the rows given only, std 0
 *      -> 1, the metadata round trip and malformed metadata refused; the seeded split
 *      (sizes, disjoint, deterministic, other seeds differ);
 *   4. an executable of tests/train/tiny_tab.graph (a linear classifier): train with
 *      --test-split/--val-split/--drop-repeated stores the TRAIN split's statistics
 *      (recomputed here from the same split), eval of the same file scores the run's
 *      test split, and eval of another file uses the stored statistics, not its own
 *      (its mean energy recomputed here both ways);
 *   5. the semi-supervised feeding: train_step_ssl(x, x_lab, y_lab) refused without
 *      --labels-per-class; with --labels-per-class 1 (3 classes, batch 3) every
 *      labelled batch is one record of each class, the same three records; resumed
 *      runs equal the run straight through, bitwise;
 *   6. tools/sklearn_tables.py: its messages (data missing, a source of the wrong
 *      length, a label that is not an integer), and, when python3-sklearn's data are
 *      here, the three tables it writes load with their counts. */
#include "train_helpers.h"
#include "app/data.h"
#include "app/data_table.h"
#include "tap.h"
#include <sys/stat.h>
#include <unistd.h>

static char dir[256], exe[320], exe2[320];   /* tiny_tab.graph with 3 and 2 features */

static const char *P(const char *name) {
    static char buf[8][512];
    static int k;
    char *b = buf[k++ % 8];
    snprintf(b, 512, "%s/%s", dir, name);
    return b;
}

static void spit(const char *path, const char *text) {
    FILE *fp = fopen(path, "w");
    if (!fp || fputs(text, fp) < 0) { perror(path); exit(2); }
    fclose(fp);
}

static int load(const char *path, const jm_data_opts *o, jm_dataset *ds) {
    char err[1024] = "";
    int rc = jm_data_load(path, o, ds, err, sizeof err);
    if (rc) tap_diag("load %s: %s", path, err);
    return rc;
}

/* jm_data_load must fail and say all of w1..w3 */
static void bad(const char *label, const char *path, const jm_data_opts *o, const char *w1, const char *w2, const char *w3) {
    jm_dataset ds;
    char err[1024] = "";
    int rc = jm_data_load(path, o, &ds, err, sizeof err);
    int good = rc == -1 && ds.x == NULL && (!w1 || strstr(err, w1)) && (!w2 || strstr(err, w2)) && (!w3 || strstr(err, w3));
    if (!ok(good, "error: %s", label)) tap_diag("rc %d, message: %s\nexpected: %s | %s | %s", rc, err, w1, w2 ? w2 : "", w3 ? w3 : "");
    if (rc == 0) jm_data_free(&ds);
}

/* ------------------------------------------------------------------ 1. layouts */

static void test_layouts(void) {
    jm_dataset ds;
    jm_data_opts o = jm_data_defaults();
    /* HEPMASS: "# label" first, float labels */
    spit(P("hep.csv"), "# label,f0,f1,f2\n1.0,0.5,-1.25,3\n0.0,2,0.25,-4e-1\n1.0,7,8,9\n");
    o.label_column = "label";
    if (ok(load(P("hep.csv"), &o, &ds) == 0, "HEPMASS-like: --label-column label matches '# label'")) {
        ok(ds.n == 3 && ds.w == 3 && ds.classes == 2 && ds.format == JM_DATA_CSV, "HEPMASS-like: 3 records of 3 features, 2 classes");
        ok(ds.y[0] == 1 && ds.y[1] == 0 && ds.y[2] == 1, "HEPMASS-like: labels '1.0' '0.0' '1.0' -> 1 0 1");
        ok(ds.x[0] == 0.5f && ds.x[1] == -1.25f && ds.x[2] == 3.0f && ds.x[5] == -0.4f, "HEPMASS-like: the features after the label column");
        jm_data_free(&ds);
    }
    o.label_column = "0";
    if (ok(load(P("hep.csv"), &o, &ds) == 0, "HEPMASS-like: --label-column 0")) {
        ok(ds.y[0] == 1 && ds.x[0] == 0.5f, "index 0 is the same column");
        jm_data_free(&ds);
    }
    o.label_column = "-4";
    if (ok(load(P("hep.csv"), &o, &ds) == 0, "HEPMASS-like: --label-column -4 (from the end)")) {
        ok(ds.y[1] == 0 && ds.x[3] == 2.0f, "-4 of 4 fields is column 0");
        jm_data_free(&ds);
    }
    /* HUMAN: whitespace text with leading spaces, labels 1..6 in a file of their own */
    spit(P("X.txt"), "  2.8858451e-001 -2.0294171e-002 1\n\t0.5   0.25\t 2\n -1 -2 -3\n 4 5 6\n 7 8 9\n 1 1 1\n");
    spit(P("y.txt"), "5\n1\n6\n2\n3\n4\n");
    o = jm_data_defaults();
    o.labels = P("y.txt");
    o.label_base = 1;
    if (ok(load(P("X.txt"), &o, &ds) == 0, "HUMAN-like: X.txt (whitespace) with y.txt, --label-base 1")) {
        ok(ds.n == 6 && ds.w == 3 && ds.classes == 6 && ds.format == JM_DATA_TEXT, "HUMAN-like: 6 records of 3 features, 6 classes");
        ok(ds.y[0] == 4 && ds.y[1] == 0 && ds.y[2] == 5, "HUMAN-like: labels 5 1 6 -> 4 0 5");
        ok(ds.x[0] == 2.8858451e-1f && ds.x[1] == -2.0294171e-2f && ds.x[2] == 1.0f && ds.x[3] == 0.5f && ds.x[5] == 2.0f,
           "HUMAN-like: numbers across spaces and tabs, exponents");
        jm_data_free(&ds);
    }
    /* CROP: "label,f1,..." labels 1..7 */
    char crop[2048] = "label,f1,f2\n";
    for (int i = 0; i < 14; i++) snprintf(crop + strlen(crop), sizeof crop - strlen(crop), "%d,%d.5,%d\n", i % 7 + 1, i, -i);
    spit(P("crop.csv"), crop);
    o = jm_data_defaults();
    o.label_column = "label";
    o.label_base = 1;
    if (ok(load(P("crop.csv"), &o, &ds) == 0, "CROP-like: label,f1,f2 with labels 1..7, --label-base 1")) {
        ok(ds.n == 14 && ds.w == 2 && ds.classes == 7 && ds.y[6] == 6 && ds.y[7] == 0 && ds.x[2] == 1.5f && ds.x[3] == -1.0f,
           "CROP-like: 7 classes 0..6, features f1 f2");
        jm_data_free(&ds);
    }
}

/* ------------------------------------------------------------------ 2. bad files */

static void test_bad(void) {
    jm_data_opts o = jm_data_defaults();
    spit(P("rag.csv"), "a,b,label\n1,2,0\n3,4\n");
    bad("ragged CSV row", P("rag.csv"), &o, "rag.csv:3:4:", "expected 3 fields, found 2", NULL);
    spit(P("rag.txt"), "1 2 0\n3 4 1 5\n");
    bad("ragged text row", P("rag.txt"), &o, "rag.txt:2:7:", "expected 3 fields, found 4", NULL);
    spit(P("nan.txt"), "1 2 0\n3 x4 1\n");
    bad("not a number (text)", P("nan.txt"), &o, "nan.txt:2:3:", "'x4' is not a number", NULL);
    o.label_column = "lbl";
    spit(P("names.csv"), "f0,f1,label\n1,2,0\n");
    bad("unknown column name", P("names.csv"), &o, "names.csv:1:1:", "no column named 'lbl'", "'f0', 'f1', 'label'");
    spit(P("nohead.csv"), "1,2,0\n");
    bad("a name but no header", P("nohead.csv"), &o, "nohead.csv:1:1:", "'lbl' is a name", "no header");
    o.label_column = "5";
    bad("label column index out of range", P("names.csv"), &o, "names.csv:1:1:", "label column is 5", "3 fields");
    o.label_column = "-4";
    bad("label column from the end out of range", P("names.csv"), &o, "names.csv:1:1:", "label column is -4", NULL);
    o = jm_data_defaults();
    spit(P("X5.txt"), "1 2\n3 4\n5 6\n");
    spit(P("y4.txt"), "1\n2\n1\n2\n");
    o.labels = P("y4.txt");
    bad("labels file of another length", P("X5.txt"), &o, "X5.txt has 3 records", "y4.txt has 4 labels", NULL);
    o.label_column = "0";
    bad("a label column and a labels file", P("X5.txt"), &o, "X5.txt: both a label column ('0')", "y4.txt", NULL);
    o.label_column = NULL;
    spit(P("y2c.txt"), "1 2\n1 1\n2 2\n");
    o.labels = P("y2c.txt");
    bad("labels file with two fields a line", P("X5.txt"), &o, "y2c.txt:1:1:", "one label a line", NULL);
    spit(P("y0.txt"), "1\n0\n2\n");
    o.labels = P("y0.txt");
    o.label_base = 1;
    bad("label below --label-base", P("X5.txt"), &o, "y0.txt:2:1:", "label '0' is below the label base 1", NULL);
    spit(P("yf.txt"), "1\n1.5\n2\n");
    o.labels = P("yf.txt");
    bad("label not an integer", P("X5.txt"), &o, "yf.txt:2:1:", "label '1.5' is not an integer in 1..", NULL);
}

/* ------------------------------------------------------------------ 3. transform, split */

static const char *meta_get(const void *ctx, const char *key) {
    const char *const *kv = ctx;
    for (int i = 0; kv[i]; i += 2)
        if (strcmp(kv[i], key) == 0) return kv[i + 1];
    return NULL;
}

static void test_transform(void) {
    /* 8 records of 3 columns: column 0 has its smallest value (0) 6 times; column 1
       is constant; column 2 has distinct values */
    float x[8 * 3];
    int64_t y[8];
    for (int i = 0; i < 8; i++) {
        x[i * 3 + 0] = i < 6 ? 0.0f : (float)i;
        x[i * 3 + 1] = 2.0f;
        x[i * 3 + 2] = (float)(i * i);
        y[i] = i % 2;
    }
    jm_dataset ds;
    memset(&ds, 0, sizeof ds);
    ds.n = 8; ds.c = ds.h = 1; ds.w = 3; ds.x = x; ds.y = y; ds.classes = 2; ds.format = JM_DATA_CSV;
    snprintf(ds.path, sizeof ds.path, "t.csv");
    jm_table_tf tf;
    char err[512];
    /* column 1's smallest value (2) occurs 8 times: dropped too with N 5 */
    ok(jm_table_fit(&ds, NULL, 0, 5, 1, &tf, err, sizeof err) == 0 && tf.nkeep == 1 && tf.keep[0] == 2,
       "--drop-repeated 5: the columns whose smallest value occurs 6 and 8 times go, the third stays");
    jm_table_tf_free(&tf);
    ok(jm_table_fit(&ds, NULL, 0, 6, 1, &tf, err, sizeof err) == 0 && tf.nkeep == 2 && tf.keep[0] == 0 && tf.keep[1] == 2,
       "--drop-repeated 6: 6 times is not more than 6 (kept), 8 is");
    jm_table_tf_free(&tf);
    ok(jm_table_fit(&ds, NULL, 0, 8, 0, &tf, err, sizeof err) == 0 && tf.nkeep == 3 && !tf.mean, "--drop-repeated 8 keeps all; no standardisation: no mean");
    jm_table_tf_free(&tf);
    /* 4 records of 2 columns, all 0: each column's smallest value occurs 4 times */
    float z[8] = { 0 };
    jm_dataset dz = ds;
    dz.n = 4; dz.w = 2; dz.x = z;
    ok(jm_table_fit(&dz, NULL, 0, 3, 1, &tf, err, sizeof err) == -1 && strstr(err, "t.csv") && strstr(err, "none is left"),
       "every column dropped: an error (%s)", err);
    /* statistics of rows {1, 3, 7} only */
    int64_t rows[3] = { 1, 3, 7 };
    if (ok(jm_table_fit(&ds, rows, 3, 0, 1, &tf, err, sizeof err) == 0 && tf.nkeep == 3, "fit on rows 1, 3, 7")) {
        double m2 = (1 + 9 + 49) / 3.0, v2 = ((1 - m2) * (1 - m2) + (9 - m2) * (9 - m2) + (49 - m2) * (49 - m2)) / 3.0;
        double m0 = 7 / 3.0, v0 = (2 * m0 * m0 + (7 - m0) * (7 - m0)) / 3.0;
        ok(fabs(tf.mean[2] - m2) < 1e-12 && fabs(tf.std[2] - sqrt(v2)) < 1e-12 && fabs(tf.mean[0] - m0) < 1e-12 && fabs(tf.std[0] - sqrt(v0)) < 1e-12,
           "mean and population std (ddof 0) of those rows only: %.6g %.6g", tf.mean[2], tf.std[2]);
        ok(tf.mean[1] == 2 && tf.std[1] == 1, "a constant column: mean 2, std 0 -> 1");
        /* metadata round trip */
        const char *keys[JM_TABLE_META];
        char *vals[JM_TABLE_META];
        int n = jm_table_tf_meta(&tf, keys, vals);
        const char *kv[2 * JM_TABLE_META + 1];
        for (int i = 0; i < n; i++) { kv[2 * i] = keys[i]; kv[2 * i + 1] = vals[i]; }
        kv[2 * n] = NULL;
        jm_table_tf back;
        int r = jm_table_tf_parse(meta_get, kv, &back, err, sizeof err);
        int same = r == 1 && back.ncols == 3 && back.nkeep == 3;
        for (int k = 0; same && k < 3; k++) same = back.keep[k] == k && (float)back.mean[k] == (float)tf.mean[k] && (float)back.std[k] == (float)tf.std[k];
        ok(n == 4 && same, "jemc.data.columns/kept/mean/std read back (to float32 precision: %s)", n > 2 ? vals[2] : "");
        /* apply: (x - mean) / std of the fitted rows */
        float x2[8 * 3];
        memcpy(x2, x, sizeof x);
        jm_dataset d2 = ds;
        d2.x = malloc(sizeof x2);
        memcpy(d2.x, x2, sizeof x2);
        d2.y = NULL;
        if (ok(jm_table_apply(&back, &d2, err, sizeof err) == 0, "apply")) {
            ok(d2.x[3 * 3 + 2] == (float)((9 - m2) / sqrt(v2)) && d2.x[0] == (float)((0 - m0) / sqrt(v0)) && d2.x[4] == 0.0f, "applied: (x - mean) / std");
        }
        d2.w = 2;
        ok(jm_table_apply(&back, &d2, err, sizeof err) == -1 && strstr(err, "2 values per record") && strstr(err, "3 columns"),
           "apply to data of other columns: refused (%s)", err);
        free(d2.x);
        jm_table_tf_free(&back);
        const char *badkv[] = { "jemc.data.columns", "3", "jemc.data.kept", "0,2,1", NULL };
        ok(jm_table_tf_parse(meta_get, badkv, &back, err, sizeof err) == -1 && strstr(err, "ascending"), "kept columns out of order refused: %s", err);
        const char *badkv2[] = { "jemc.data.columns", "3", "jemc.data.kept", "0,1", "jemc.data.mean", "1,2", "jemc.data.std", "1,-2", NULL };
        ok(jm_table_tf_parse(meta_get, badkv2, &back, err, sizeof err) == -1 && strstr(err, "not a positive, normal number"), "a std <= 0 refused: %s", err);
        /* a subnormal std (a tampered checkpoint) would turn the column into +-inf */
        const char *badkv_sub[] = { "jemc.data.columns", "3", "jemc.data.kept", "0,1", "jemc.data.mean", "1,2", "jemc.data.std", "1,1e-310", NULL };
        ok(jm_table_tf_parse(meta_get, badkv_sub, &back, err, sizeof err) == -1 && strstr(err, "not a positive, normal number"), "a subnormal std refused: %s", err);
        const char *badkv3[] = { "jemc.data.columns", "3", "jemc.data.kept", "0,1", "jemc.data.mean", "1,2", NULL };
        ok(jm_table_tf_parse(meta_get, badkv3, &back, err, sizeof err) == -1 && strstr(err, "incomplete"), "a mean without std refused: %s", err);
        const char *none[] = { NULL };
        ok(jm_table_tf_parse(meta_get, none, &back, err, sizeof err) == 0, "no jemc.data.* keys: no transform");
        jm_table_meta_free(vals);
        jm_table_tf_free(&tf);
    }
    /* the split */
    enum { N = 101 };
    int64_t tr[N], va[N], te[N], tr2[N], va2[N], te2[N], ntr, nva, nte, a, b, c;
    int r = jm_table_split(N, 7, 0.1, 0.1, tr, &ntr, va, &nva, te, &nte, err, sizeof err);
    ok(r == 0 && nte == 10 && nva == 9 && ntr == 82, "split 101: test round(10.1) = 10, val round(9.1) = 9, train 82");
    int seen[N] = { 0 }, sorted = 1;
    for (int64_t i = 0; i < ntr; i++) { seen[tr[i]]++; sorted &= i == 0 || tr[i] > tr[i - 1]; }
    for (int64_t i = 0; i < nva; i++) seen[va[i]]++;
    for (int64_t i = 0; i < nte; i++) seen[te[i]]++;
    int once = 1;
    for (int i = 0; i < N; i++) once &= seen[i] == 1;
    ok(once && sorted, "every record in exactly one part; each part ascending");
    jm_table_split(N, 7, 0.1, 0.1, tr2, &a, va2, &b, te2, &c, err, sizeof err);
    ok(memcmp(te, te2, sizeof(int64_t) * (size_t)nte) == 0 && memcmp(va, va2, sizeof(int64_t) * (size_t)nva) == 0, "the same seed: the same split");
    jm_table_split(N, 8, 0.1, 0.1, tr2, &a, va2, &b, te2, &c, err, sizeof err);
    ok(memcmp(te, te2, sizeof(int64_t) * (size_t)nte) != 0, "another seed: another split");
    ok(jm_table_split(3, 1, 0.5, 0.9, tr, &ntr, va, &nva, te, &nte, err, sizeof err) == -1 && strstr(err, "none to train on"), "a split leaving no training record: %s", err);
}

/* ------------------------------------------------------------------ 4. train and eval */

/* 3 classes, 3 features: class c near (2c, 0, 0) with column 2 mostly 5.0 (its
   smallest value 1.0 on every 5th record); n records, label first, labels 1..3 */
static void write_crop(const char *path, int n, double shift) {
    FILE *f = fopen(path, "w");
    fprintf(f, "label,f1,f2,f3\n");
    for (int i = 0; i < n; i++) {
        int c = i % 3;
        fprintf(f, "%d,%.4f,%.4f,%.1f\n", c + 1, 2.0 * c + (i * 37 % 101) / 101.0 + shift, (i * 53 % 97) / 9.7, i % 5 ? 5.0 : 1.0);
    }
    fclose(f);
}

/* the features of path (label first) */
static int read_crop(const char *path, double *x, int64_t *y, int max) {
    FILE *f = fopen(path, "r");
    char line[256];
    int n = 0;
    if (!f || !fgets(line, sizeof line, f)) return 0;
    while (n < max && fgets(line, sizeof line, f)) {
        int lab;
        if (sscanf(line, "%d,%lf,%lf,%lf", &lab, &x[3 * n], &x[3 * n + 1], &x[3 * n + 2]) == 4) y[n++] = lab - 1;
    }
    fclose(f);
    return n;
}

/* comma-separated numbers of a metadata value */
static int nums(const char *s, double *v, int max) {
    int n = 0;
    while (s && *s && n < max) {
        char *e;
        v[n++] = strtod(s, &e);
        s = *e == ',' ? e + 1 : e;
        if (e == s && !*e) break;
    }
    return n;
}

/* mean energy -logsumexp(W z + b) over the records, z = (x[kept] - mean) / std */
static double mean_energy(const char *ck, const double *x, int n, const int *kept, int nk, const double *mean, const double *sd) {
    jm_st_file st;
    char err[256];
    memset(&st, 0, sizeof st);
    if (jm_st_read(ck, &st, err, sizeof err) != 0) return NAN;
    const jm_st_tensor *W = jm_st_find(&st, "out.weight"), *B = jm_st_find(&st, "out.bias");
    double e = NAN;
    if (W && B) {
        e = 0;
        for (int r = 0; r < n; r++) {
            double l[3], mx = -INFINITY, z = 0;
            for (int o = 0; o < 3; o++) {
                double a = jm_st_value(B, o);
                for (int k = 0; k < nk; k++) a += jm_st_value(W, o * nk + k) * (double)(float)((x[3 * r + kept[k]] - mean[k]) / sd[k]);
                l[o] = a;
                mx = fmax(mx, a);
            }
            for (int o = 0; o < 3; o++) z += exp(l[o] - mx);
            e += -(mx + log(z));
        }
        e /= n;
    }
    jm_st_free(&st);
    return e;
}

static void test_train_eval(void) {
    write_crop(P("c.csv"), 60, 0);
    write_crop(P("shift.csv"), 30, 3.0);
    int r = run("%s train --data %s --label-column label --label-base 1 --test-split 0.2 --val-split 0.25 --drop-repeated 5 "
                "--program train_step_ce --epochs 3 --out %s --no-progress --threads 1", exe2, P("c.csv"), P("run"));
    if (!ok(r == 0 && strstr(out, "60 records: 36 train, 12 validation, 12 test"), "train: --test-split 0.2 --val-split 0.25 of 60 records (exit %d)", r)) {
        tap_diag("%s", out);
        return;
    }
    ok(strstr(out, "test accuracy") != NULL, "the validation split is evaluated after each epoch");
    char ck[512], buf[4096];
    snprintf(ck, sizeof ck, "%s/last.safetensors", P("run"));
    /* the train split, recomputed here: its column 2's smallest value 1.0 occurs
       more than 5 times? (every 7th record of 36): count and mean/std */
    static double x[3 * 100], xs[3 * 100];
    static int64_t y[100], ys[100];
    int n = read_crop(P("c.csv"), x, y, 100), ns = read_crop(P("shift.csv"), xs, ys, 100);
    int64_t tr[60], va[60], te[60], ntr, nva, nte;
    char err[256];
    jm_table_split(n, 1, 0.2, 0.25, tr, &ntr, va, &nva, te, &nte, err, sizeof err);
    int ones = 0;
    for (int64_t i = 0; i < ntr; i++) ones += x[3 * tr[i] + 2] == 1.0;
    int kept[3], nk = 0;
    for (int j = 0; j < 3; j++) if (j != 2 || ones <= 5) kept[nk++] = j;
    double mean[3], sd[3];
    for (int k = 0; k < nk; k++) {
        double s = 0, q = 0;
        for (int64_t i = 0; i < ntr; i++) s += x[3 * tr[i] + kept[k]];
        mean[k] = s / (double)ntr;
        for (int64_t i = 0; i < ntr; i++) q += (x[3 * tr[i] + kept[k]] - mean[k]) * (x[3 * tr[i] + kept[k]] - mean[k]);
        sd[k] = sqrt(q / (double)ntr);
    }
    tap_diag("train split: %lld records, column 3's smallest value %d times: %d columns kept", (long long)ntr, ones, nk);
    double m[3], s[3];
    int nm = nums(meta(ck, "jemc.data.mean", buf, sizeof buf), m, 3), nsd = nums(meta(ck, "jemc.data.std", buf, sizeof buf), s, 3);
    int same = nm == nk && nsd == nk;
    for (int k = 0; same && k < nk; k++) same = fabs(m[k] - mean[k]) <= 1e-7 * fabs(mean[k]) + 1e-9 && fabs(s[k] - sd[k]) <= 1e-7 * sd[k];
    ok(same, "jemc.data.mean and .std are the TRAIN split's (%d columns; mean %s)", nk, meta_text(ck, "jemc.data.mean", buf, sizeof buf));
    ok(meta(ck, "jemc.data.kept", buf, sizeof buf) && strcmp(buf, nk == 3 ? "0,1,2" : "0,1") == 0, "jemc.data.kept: %s", buf);
    /* eval of the same file: the run's test split */
    r = run("%s eval accuracy --ckpt %s --data %s --threads 1", exe2, ck, P("c.csv"));
    ok(r == 0 && strstr(out, "scoring the run's test split, 12 of its 60 records") && strstr(out, ": 12 records"),
       "eval of the training file scores its 12 held-out test records (exit %d)", r);
    /* eval of another file: the stored statistics, not that file's own */
    r = run("%s eval accuracy --ckpt %s --data %s --threads 1", exe2, ck, P("shift.csv"));
    const char *at = strstr(out, "mean energy ");
    double got = at ? strtod(at + 12, NULL) : NAN;
    double want = mean_energy(ck, xs, ns, kept, nk, mean, sd);
    double own_m[3], own_s[3];
    for (int k = 0; k < nk; k++) {
        double a = 0, q = 0;
        for (int i = 0; i < ns; i++) a += xs[3 * i + kept[k]];
        own_m[k] = a / ns;
        for (int i = 0; i < ns; i++) q += (xs[3 * i + kept[k]] - own_m[k]) * (xs[3 * i + kept[k]] - own_m[k]);
        own_s[k] = sqrt(q / ns) > 0 ? sqrt(q / ns) : 1;
    }
    double own = mean_energy(ck, xs, ns, kept, nk, own_m, own_s);
    ok(r == 0 && fabs(got - want) < 1e-3 && fabs(got - own) > 1e-2,
       "eval of another table standardises it with the run's statistics: mean energy %.4f (those: %.4f; its own would give %.4f)", got, want, own);
    /* the run's label column and base carry over; given again they are the same */
    r = run("%s eval accuracy --ckpt %s --data %s --label-column 0 --label-base 1 --threads 1", exe2, ck, P("shift.csv"));
    ok(r == 0 && strstr(out, ": 30 records"), "eval --label-column 0 --label-base 1 given explicitly (exit %d)", r);
    r = run("%s eval accuracy --ckpt %s --data %s --label-column f9 --threads 1", exe2, ck, P("shift.csv"));
    ok(r == 1 && strstr(out, "shift.csv:1:1: no column named 'f9'"), "eval with an unknown --label-column: its message (exit %d)", r);
    r = run("%s train --data %s --label-column label --label-base 2 --out %s --no-progress --threads 1 --program train_step_ce", exe2, P("c.csv"), P("r2"));
    ok(r == 1 && strstr(out, "c.csv:2:1: label '1' is below the label base 2"), "train: a label below --label-base names FILE:LINE:COLUMN (exit %d)", r);
    /* labels 1..3 read without --label-base 1: label 3 is past the model's 3 classes;
       named with its record before any training (the engine would only say "index out
       of range") */
    r = run("%s train --data %s --label-column label --out %s --no-progress --threads 1 --program train_step_ce", exe2, P("c.csv"), P("r3"));
    ok(r == 1 && strstr(out, "c.csv: record 2 (0-based) has label 3, but the model has 3 classes") && strstr(out, "--label-base 1"),
       "train: a label past the model's classes names the file and record and suggests --label-base 1 (exit %d)", r);
    /* a split asked for but rounding to no record is refused, not silently empty */
    r = run("%s train --data %s --label-column label --label-base 1 --test-split 0.005 --out %s --no-progress --threads 1 --program train_step_ce",
            exe2, P("c.csv"), P("r4"));
    ok(r == 1 && strstr(out, "a test split of 0.005 of 60 records rounds to no record"), "train: --test-split rounding to no record is refused (exit %d)", r);
    /* the run's file with other records than it had: its held-out split cannot be drawn
       again (another permutation would put training records in it) */
    ok(meta(ck, "jemc.data.split_records", buf, sizeof buf) && strcmp(buf, "60") == 0, "jemc.data.split_records: %s", buf);
    write_crop(P("c.csv"), 59, 0);
    r = run("%s eval accuracy --ckpt %s --data %s --threads 1", exe2, ck, P("c.csv"));
    ok(r == 1 && strstr(out, "the run split this file when it had 60 records; it has 59 now"), "eval: the run's split file with another record count is refused (exit %d)", r);
    write_crop(P("c.csv"), 60, 0);
}

/* HUMAN-like through the executable: X.txt + y.txt (labels 1..3) for train and
   --test, then eval with --labels: the run's --label-base carries over */
static void test_text_run(void) {
    FILE *fx = fopen(P("Xtr.txt"), "w"), *fy = fopen(P("ytr.txt"), "w"), *gx = fopen(P("Xte.txt"), "w"), *gy = fopen(P("yte.txt"), "w");
    for (int i = 0; i < 42; i++) {
        FILE *x = i < 30 ? fx : gx, *y = i < 30 ? fy : gy;
        int c = i % 3;
        fprintf(x, "  %.7e %.7e\t%.7e\n", 2.0 * c + (i * 37 % 101) / 101.0, (i * 53 % 97) / 9.7 - 5, (double)(i % 4));
        fprintf(y, "%d\n", c + 1);
    }
    fclose(fx); fclose(fy); fclose(gx); fclose(gy);
    int r = run("%s train --data %s --labels %s --label-base 1 --test %s --test-labels %s --program train_step_ce --epochs 2 --out %s --no-progress --threads 1",
                exe, P("Xtr.txt"), P("ytr.txt"), P("Xte.txt"), P("yte.txt"), P("hr"));
    ok(r == 0 && strstr(out, "30 records of 1x1x3") && strstr(out, "test accuracy"), "train on X.txt with --labels y.txt --label-base 1, --test with --test-labels (exit %d)", r);
    char ck[512];
    snprintf(ck, sizeof ck, "%s/last.safetensors", P("hr"));
    r = run("%s eval accuracy --ckpt %s --data %s --labels %s --threads 1", exe, ck, P("Xte.txt"), P("yte.txt"));
    ok(r == 0 && strstr(out, "Xte.txt: 12 records"), "eval X_test.txt --labels y_test.txt: the run's --label-base 1 applies (exit %d)", r);
    r = run("%s eval accuracy --ckpt %s --data %s --labels %s --label-base 0 --threads 1", exe, ck, P("Xte.txt"), P("yte.txt"));
    ok(r == 1 && strstr(out, "label 3"), "--label-base 0 given to eval overrides the run's: label 3 is outside the 3 classes (exit %d)", r);
    /* eval without --labels of a run that had a labels file: the last feature read as
       the label fails, and the message says where the labels went */
    r = run("%s eval accuracy --ckpt %s --data %s --threads 1", exe, ck, P("Xte.txt"));
    ok(r == 1 && strstr(out, "the run read its labels from a file of their own") && strstr(out, "give this data's labels file with --labels"),
       "eval without --labels after a run with a labels file: says to give --labels (exit %d)", r);
    r = run("%s train --data %s --labels %s --test %s --test-labels %s --program train_step_ce --iters 2 --out %s --no-progress --threads 1",
            exe, P("Xtr.txt"), P("y4.txt"), P("Xte.txt"), P("yte.txt"), P("hr2"));
    ok(r == 1 && strstr(out, "Xtr.txt has 30 records but its labels file") && strstr(out, "y4.txt has 4 labels"), "train: a labels file of another length (exit %d)", r);
}

/* ------------------------------------------------------------------ 5. semi-supervised */

static void test_ssl(void) {
    char data[512];
    snprintf(data, sizeof data, "%s", P("c.csv"));
    int r = run("%s train --data %s --label-column label --label-base 1 --program train_step_ssl --iters 4 --out %s --no-progress --threads 1", exe, data, P("s0"));
    ok(r == 2 && strstr(out, "takes x_lab and y_lab") && strstr(out, "--labels-per-class"), "x_lab without --labels-per-class: refused, exit 2 (%d)", r);
    r = run("%s train --data %s --label-column label --label-base 1 --program train_step_ssl --labels-per-class 1 --iters 6 --log-every 1 "
            "--out %s --no-progress --threads 1", exe, data, P("s1"));
    char *m = slurp(P("s1/metrics.jsonl"), NULL);
    int lines = 0, all3 = 1;
    double xl0 = NAN, xdiff = 0;
    for (const char *p = m; p && (p = strstr(p, "\"y_lab_sum\": ")); p++) {
        double v = strtod(p + 13, NULL);
        const char *q = strstr(p, "\"x_lab_sum\": ");
        double xl = q ? strtod(q + 13, NULL) : NAN;
        if (lines == 0) xl0 = xl;
        xdiff = fmax(xdiff, fabs(xl - xl0));
        all3 &= v == 3;
        lines++;
    }
    ok(r == 0 && lines == 6 && all3 && xdiff < 1e-5, "--labels-per-class 1: every labelled batch is classes 0+1+2 of the same three records (%d lines, x_lab sums within %g)",
       lines, xdiff);
    free(m);
    /* resumed runs equal the run straight through */
    const char *common = "--label-column label --label-base 1 --program train_step_ssl --labels-per-class 2 --log-every 1 --no-progress --threads 1";
    int a = run("%s train --data %s %s --iters 14 --out %s", exe, data, common, P("sa"));
    int b = run("%s train --data %s %s --iters 5 --out %s", exe, data, common, P("sb"));
    char ck[512];
    snprintf(ck, sizeof ck, "%s/last.safetensors", P("sb"));
    int c = run("%s train --resume %s --iters 14 --out %s --no-progress --threads 1", exe, ck, P("sb"));
    char why[512], cka[512];
    snprintf(cka, sizeof cka, "%s/last.safetensors", P("sa"));
    ok(a == 0 && b == 0 && c == 0 && same_tensors(cka, ck, why, sizeof why), "semi-supervised: 5 + resumed 9 iterations == 14 straight, bitwise (%s)", why);
    r = run("%s train --data %s %s --iters 2 --out %s --pretrain 1", exe, data, common, P("sp"));
    ok(r == 2 && strstr(out, "--pretrain"), "--pretrain with a semi-supervised program: refused (exit %d)", r);
    /* a program of x, y with --labels-per-class: the labelled subset only (6 records, batch 3: 2 iterations an epoch) */
    r = run("%s train --data %s --label-column label --label-base 1 --program train_step_ce --labels-per-class 2 --epochs 1 --out %s --no-progress --threads 1",
            exe, data, P("sc"));
    if (!ok(r == 0 && strstr(out, "6 records of 1x1x3") && strstr(out, "2 iterations per epoch"), "x, y with --labels-per-class 2: the 6 labelled records only (exit %d)", r)) tap_diag("%s", out);
}

/* ------------------------------------------------------------------ 6. tools/sklearn_tables.py */

static void test_sklearn(void) {
    const char *src = "/usr/lib/python3/dist-packages/sklearn/datasets/data";
    int r = run("python3 tools/sklearn_tables.py --src %s/nope --out %s", dir, P("skl"));
    ok(r == 1 && strstr(out, "apt-get install python3-sklearn"), "sklearn_tables.py without the data: says to install python3-sklearn (exit %d)", r);
    /* a source whose first line does not match its records */
    mkdir(P("fake"), 0700);
    spit(P("fake/wine_data.csv"), "5,13,a,b,c\n1,2,3,4,5,6,7,8,9,10,11,12,13,0\n");
    r = run("python3 tools/sklearn_tables.py --src %s --out %s wine", P("fake"), P("skl"));
    ok(r == 1 && strstr(out, "wine_data.csv: the first line declares 5 records of 13 features, the file has 1"), "a source of the wrong length: named (exit %d)", r);
    spit(P("fake/wine_data.csv"), "1,13,a,b,c\n1,2,3,4,5,6,7,8,9,10,11,12,13,0.5\n");
    r = run("python3 tools/sklearn_tables.py --src %s --out %s wine", P("fake"), P("skl"));
    ok(r == 1 && strstr(out, "wine_data.csv:2:14: label '0.5' is not an integer"), "a label that is not an integer: FILE:LINE:COLUMN (exit %d)", r);
    struct stat sb;
    if (stat(src, &sb) != 0) {
        skip(4, "python3-sklearn's data absent (apt-get install python3-sklearn)");
        return;
    }
    r = run("python3 tools/sklearn_tables.py --out %s", P("skl"));
    ok(r == 0, "sklearn_tables.py converts digits, breast_cancer, wine (exit %d)", r);
    static const struct { const char *file; int64_t n; int w, classes; } want[] = {
        { "skl/digits.csv", 1797, 64, 10 }, { "skl/breast_cancer.csv", 569, 30, 2 }, { "skl/wine.csv", 178, 13, 3 },
    };
    for (int k = 0; k < 3; k++) {
        jm_dataset ds;
        if (r == 0 && load(P(want[k].file), NULL, &ds) == 0) {
            ok(ds.n == want[k].n && ds.w == want[k].w && ds.classes == want[k].classes, "%s: %lld records of %d features, %d classes (the label last)",
               want[k].file, (long long)ds.n, ds.w, ds.classes);
            jm_data_free(&ds);
        } else {
            ok(0, "%s loads", want[k].file);
        }
    }
}

int main(void) {
    jemc = jt_env("JEMC", "build/jemc");
    snprintf(dir, sizeof dir, "/tmp/jemc_tables.XXXXXX");
    if (!mkdtemp(dir)) { skip_all("mkdtemp failed"); return 0; }
    test_layouts();
    test_bad();
    test_transform();
    test_sklearn();
    snprintf(exe, sizeof exe, "%s/tab", dir);
    snprintf(exe2, sizeof exe2, "%s/tab2", dir);
    int r = run("%s compile tests/train/tiny_tab.graph -o %s && %s compile tests/train/tiny_tab.graph -D features=2 -o %s", jemc, exe, jemc, exe2);
    if (ok(r == 0, "compile tests/train/tiny_tab.graph (3 and 2 features)")) {
        test_train_eval();
        test_text_run();
        test_ssl();
    } else {
        tap_diag("%s", out);
    }
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0) tap_diag("could not remove %s", dir);
    return tap_done();
}
