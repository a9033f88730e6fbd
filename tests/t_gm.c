/* t_gm.c — JEM++'s informative initialisation (runtime/app/rt_gm.c,
 * graphs/lib/informative.graph, train's hook) against numpy
 * (tests/parity/gm_ref.py: np.mean, the biased np.cov, np.linalg.cholesky in
 * float64) on the first 2000 real MNIST training records (../shared/data/mnist),
 * with the toy JEM tests/parity/gm_mnist.graph (a 500-row buffer, 50 per class):
 *
 *   - the Cholesky alone: a 300 x 300 Kac-Murdock-Szego matrix (three panels,
 *     ragged tiles) against its closed-form factor; a matrix that is not
 *     positive definite is refused, naming the pivot, and on 2 threads 200 times
 *     at pivots in the first, a middle and the last panel without a hang (a
 *     fresh process under `timeout`; seen red, exit 124, with the failure read
 *     at the loop's head, where one thread could leave before the single);
 *   - class 0's covariance (the engine's float GEMM, centred, chunks added in
 *     double) and mean against numpy, each at its own scale;
 *   - train's fit: gm_mean and gm_chol in the checkpoint against numpy, and the
 *     factor's backward error |L L^T - 1e-4 I - Sigma_0| / |Sigma_0|;
 *   - gm_draw (exec gm_draw_probe with this test's classes and normals) against
 *     mu_c + L_c z computed by numpy from the checkpoint's Gaussians;
 *   - the buffer gm_fill filled (train --pretrain 1: its one iteration leaves
 *     the buffer alone): every value in [-1, 1], and for each class's rows and
 *     each pixel the sample mean within 6 standard errors of
 *     E[clamp(N(mu, Sigma_ii + 1e-4), -1, 1)] (numpy), the standard error taken
 *     from the unclamped sd (clamping only shrinks it), so a row given another
 *     class's Gaussian stands out;
 *   - a resumed run keeps the checkpoint's Gaussians (no refit, no refill): 2 +
 *     resume 2 == 4 straight, bitwise; --init uniform leaves the buffer uniform;
 *     gm_on = 0 holds empty tensors and fits nothing; a training set missing a
 *     class is refused naming it; --init with another word is a usage error.
 *
 * Seen red (then restored), one break at a time:
 *   - each factor transposed when rt_gm.c writes it out: gm_chol 0.98 of scale,
 *     the backward error 1.0, the upper triangle 0.51, the buffer 155 standard
 *     errors off (the draw point stays green: it uses the checkpoint's factor);
 *   - the jitter dropped: train exits 1, "class 0 (208 records ...): its
 *     covariance + 0.0001 I is not positive definite (pivot 0 of 784)" (MNIST's
 *     corner pixels never vary), and every point that needs the checkpoint fails;
 *   - gm_row_class giving row / per_class + 1: the buffer 765 standard errors off;
 *   - gm_draw using L_c^T (permute(gm_chol, [0, 2, 1])): the draw 1.7 of scale. */
#include "train_helpers.h"
#include "st_helpers.h"
#include "tap.h"
#include "app/data.h"
#include "app/rt_gm.h"
#include <math.h>
#include <stdint.h>
#include <sys/stat.h>

static char dir[256], exe[320], py[64] = "/usr/bin/python3";
enum { N_REC = 2000, CL = 10, D = 784, PER_CLASS = 50 };

static const char *path_in(const char *name) {
    static char p[4][512];
    static int k;
    k = (k + 1) % 4;
    snprintf(p[k], sizeof p[k], "%s/%s", dir, name);
    return p[k];
}

/* the first n records of MNIST's training set (skipping label `without` when >= 0) as IDX files in dir/sub */
static int write_subset(const char *src, const char *sub, int n, int without) {
    char ip[512], lp[512], d[400];
    snprintf(ip, sizeof ip, "%s/train-images-idx3-ubyte", src);
    snprintf(lp, sizeof lp, "%s/train-labels-idx1-ubyte", src);
    size_t il, ll;
    unsigned char *im = (unsigned char *)slurp(ip, &il), *lb = (unsigned char *)slurp(lp, &ll);
    if (!im || !lb || il < 16 || ll < 8) { free(im); free(lb); return -1; }
    snprintf(d, sizeof d, "%s/%s", dir, sub);
    mkdir(d, 0777);
    snprintf(ip, sizeof ip, "%s/train-images-idx3-ubyte", d);
    snprintf(lp, sizeof lp, "%s/train-labels-idx1-ubyte", d);
    FILE *fi = fopen(ip, "wb"), *fl = fopen(lp, "wb");
    int total = (int)((ll - 8)), got = 0;
    put_be32(fi, 0x803); put_be32(fi, (uint32_t)n); put_be32(fi, 28); put_be32(fi, 28);
    put_be32(fl, 0x801); put_be32(fl, (uint32_t)n);
    for (int r = 0; r < total && got < n; r++) {
        if (lb[8 + r] == without) continue;
        fwrite(im + 16 + (size_t)r * D, 1, D, fi);
        fputc(lb[8 + r], fl);
        got++;
    }
    fclose(fi);
    fclose(fl);
    free(im);
    free(lb);
    return got == n ? 0 : -1;
}

static const jm_st_tensor *need(const jm_st_file *f, const char *name) {
    const jm_st_tensor *t = jm_st_find(f, name);
    if (!t) tap_diag("no tensor %s", name);
    return t;
}

/* max |got - want| / max |want| over n elements */
static double rel_err(const jm_st_tensor *got, const jm_st_tensor *want, size_t n) {
    double e = 0, s = 0;
    for (size_t i = 0; i < n; i++) {
        e = fmax(e, fabs(el(got, i) - el(want, i)));
        s = fmax(s, fabs(el(want, i)));
    }
    return s > 0 ? e / s : e;
}

/* the test's own standard normals' source: xorshift64, 32-bit words */
static const char *self = "t_gm";   /* this program, for --cholesky-failures */
static uint64_t rng = 88172645463325252ull;
static uint32_t urand_next(void) {
    rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
    return (uint32_t)(rng >> 32);
}

/* the blocked Cholesky on its own */
static void test_cholesky(void) {
    enum { n = 300 };
    double rho = 0.7, *a = malloc(sizeof(double) * n * n), err = 0;
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++) a[i * n + j] = pow(rho, fabs((double)(i - j)));
    int64_t bad = -2;
    int rc = jm_gm_cholesky(a, n, 2, &bad);
    /* KMS: L[i][0] = rho^i, L[i][j] = rho^(i-j) sqrt(1 - rho^2) for 1 <= j <= i, 0 above */
    double s = sqrt(1 - rho * rho);
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++) {
            double want = j > i ? 0 : j == 0 ? pow(rho, i) : pow(rho, i - j) * s;
            err = fmax(err, fabs(a[i * n + j] - want));
        }
    ok(rc == 0 && err < 1e-12, "Cholesky of a 300 x 300 KMS matrix (3 panels, ragged tiles): max error %.2g (<= 1e-12)", err);
    double m[9] = { 4, 2, 0, 2, 1, 0, 0, 0, 1 };     /* rank-deficient: pivot 1 is 1 - 1 = 0 */
    rc = jm_gm_cholesky(m, 3, 1, &bad);
    ok(rc == -1 && bad == 1, "a matrix that is not positive definite: refused at pivot 1 (rc %d, pivot %lld)", rc, (long long)bad);
    free(a);
    /* refused on 2 threads in the first, a middle and the last panel, in a
       fresh process (libgomp's team does not survive fork) that `timeout`
       ends: a thread that read the failure at the loop's head deadlocked the
       team, and the run hung with pivot 0 */
    char cmd[600];
    snprintf(cmd, sizeof cmd, "timeout 60 %s --cholesky-failures", self);
    int r = jt_run(cmd, NULL, 0);
    ok(r == 0, "2 threads refuse 200 matrices at pivots 0, 5, 130 and 299 without a hang (exit %d; 124: hung)", r);
}

/* class 0's mean and covariance from the runtime against numpy's, on the loader's records */
static void test_covariance(const jm_st_file *ref) {
    jm_dataset ds;
    char err[512];
    jm_data_opts o = jm_data_defaults();
    if (jm_data_load(path_in("sub/train-images-idx3-ubyte"), &o, &ds, err, sizeof err) != 0) { ok(0, "load the subset: %s", err); return; }
    double *mean = malloc(sizeof(double) * D), *cov = malloc(sizeof(double) * D * D);
    jm_gm_times tm = { 0, 0, 0 };
    int64_t nc = jm_gm_covariance(&ds, 0, mean, cov, 2, &tm);
    const jm_st_tensor *c0 = need(ref, "cov0"), *mu = need(ref, "mean"), *cnt = need(ref, "counts");
    if (c0 && mu && cnt) {
        ok(nc == (int64_t)el(cnt, 0), "class 0: %lld records (numpy: %lld)", (long long)nc, (long long)el(cnt, 0));
        double e = 0, s = 0, em = 0, sm = 0;
        for (int i = 0; i < D; i++) {
            for (int j = 0; j <= i; j++) {
                e = fmax(e, fabs(cov[i * D + j] - el(c0, (size_t)i * D + j)));
                s = fmax(s, fabs(el(c0, (size_t)i * D + j)));
            }
            em = fmax(em, fabs(mean[i] - el(mu, (size_t)i)));
            sm = fmax(sm, fabs(el(mu, (size_t)i)));
        }
        ok(e / s < 2e-6, "class 0's covariance (float GEMM, centred, added in double) vs np.cov(bias=True): %.2g of scale (<= 2e-6)", e / s);
        ok(em / sm < 1e-12, "class 0's mean (double) vs np.mean: %.2g of scale (<= 1e-12)", em / sm);
    }
    free(mean);
    free(cov);
    jm_data_free(&ds);
}

/* train's fit: the checkpoint's Gaussians against numpy */
static void test_fit(const char *ck, const jm_st_file *ref) {
    jm_st_file f;
    char err[512];
    memset(&f, 0, sizeof f);
    if (jm_st_read(ck, &f, err, sizeof err) != 0) { ok(0, "read %s: %s", ck, err); return; }
    const jm_st_tensor *gm = need(&f, "gm_mean"), *gc = need(&f, "gm_chol"), *m = need(ref, "mean"), *l = need(ref, "chol"), *c0 = need(ref, "cov0");
    if (gm && gc && m && l && c0) {
        ok(gm->rank == 2 && gm->shape[0] == CL && gm->shape[1] == D && gc->rank == 3 && gc->shape[2] == D, "gm_mean f32[10,784], gm_chol f32[10,784,784]");
        double em = rel_err(gm, m, (size_t)CL * D), el_ = rel_err(gc, l, (size_t)CL * D * D);
        ok(em < 1e-6, "gm_mean vs numpy: %.2g of scale (<= 1e-6)", em);
        /* The factor of Sigma + 1e-4 I, with 200 records a class for 784 values, has
           a condition number near 3e5: rounding Sigma to float alone moves L by
           1.4e-5 of its scale in numpy; float Gram matrices move it ~8e-4. */
        ok(el_ < 4e-3, "gm_chol vs np.linalg.cholesky: %.2g of scale (<= 4e-3; conditioned ~3e5)", el_);
        /* the backward error, which the conditioning does not amplify: L L^T - jitter I against Sigma_0 */
        const float *L = gc->data;
        double e = 0, s = 0, upper = 0;
        for (int i = 0; i < D; i++)
            for (int j = 0; j <= i; j++) {
                double v = 0;
                for (int k = 0; k <= j; k++) v += (double)L[i * D + k] * L[j * D + k];
                if (i == j) v -= JM_GM_JITTER;
                e = fmax(e, fabs(v - el(c0, (size_t)i * D + j)));
                s = fmax(s, fabs(el(c0, (size_t)i * D + j)));
            }
        for (int c = 0; c < CL; c++)
            for (int i = 0; i < D; i++)
                for (int j = i + 1; j < D; j++) upper = fmax(upper, fabs(L[((size_t)c * D + i) * D + j]));
        ok(e / s < 3e-6, "class 0: |L L^T - 1e-4 I - Sigma| / |Sigma| = %.2g (<= 3e-6)", e / s);
        ok(upper == 0, "every factor is lower triangular (upper max %g)", upper);
    }
    jm_st_free(&f);
}

/* gm_draw against numpy's mu_c + L_c z with this test's c and z */
static void test_draw(const char *ck) {
    enum { B = 16 };
    int64_t c[B];
    float *z = malloc(sizeof(float) * B * D);
    for (int i = 0; i < B; i++) c[i] = (i * 7 + 3) % CL;
    for (int i = 0; i < B * D; i += 2) {    /* Box-Muller */
        double u1 = (urand_next() + 0.5) / 4294967296.0, u2 = (urand_next() + 0.5) / 4294967296.0, r = sqrt(-2 * log(u1));
        z[i] = (float)(r * cos(2 * M_PI * u2));
        z[i + 1] = (float)(r * sin(2 * M_PI * u2));
    }
    jm_st_tensor t[2] = { { (char *)"c", JM_ST_I64, 1, { B }, sizeof c, c }, { (char *)"z", JM_ST_F32, 2, { B, D }, sizeof(float) * B * D, z } };
    jm_st_file in = { 2, t, 0, NULL };
    char err[512];
    int w = jm_st_write(path_in("draw_in.safetensors"), &in, err, sizeof err);
    int r = run("%s exec gm_draw_probe --state %s --in %s --out %s", exe, ck, path_in("draw_in.safetensors"), path_in("draw_out.safetensors"));
    int p = run("%s tests/parity/gm_ref.py draw --state %s --in %s --out %s", py, ck, path_in("draw_in.safetensors"), path_in("draw_want.safetensors"));
    ok(w == 0 && r == 0 && p == 0, "exec gm_draw_probe and numpy's draw (exit %d, %d)", r, p);
    if (r || p) tap_diag("%s", out);
    jm_st_file got, want;
    memset(&got, 0, sizeof got);
    memset(&want, 0, sizeof want);
    if (jm_st_read(path_in("draw_out.safetensors"), &got, err, sizeof err) == 0 && jm_st_read(path_in("draw_want.safetensors"), &want, err, sizeof err) == 0) {
        const jm_st_tensor *g = need(&got, "x"), *wt = need(&want, "want");
        double e = g && wt && same_shape(g, wt) ? rel_err(g, wt, (size_t)B * D) : INFINITY;
        ok(e < 1e-5, "gm_draw(c, z) vs numpy's mu_c + L_c z (the checkpoint's Gaussians, 16 rows of mixed classes): %.2g of scale (<= 1e-5)", e);
    } else ok(0, "read the draws: %s", err);
    jm_st_free(&got);
    jm_st_free(&want);
    free(z);
}

/* the buffer as gm_fill left it: range and per-class statistics */
static void test_buffer(const char *ck, const jm_st_file *ref) {
    jm_st_file f;
    char err[512];
    memset(&f, 0, sizeof f);
    if (jm_st_read(ck, &f, err, sizeof err) != 0) { ok(0, "read %s: %s", ck, err); return; }
    const jm_st_tensor *rp = need(&f, "replay"), *cm = need(ref, "clamp_mean"), *sd = need(ref, "sd");
    if (rp && cm && sd && numel(rp) == (size_t)CL * PER_CLASS * D) {
        double lo = 1, hi = -1, worst = 0;
        int wc = -1, wi = -1;
        for (size_t i = 0; i < numel(rp); i++) { lo = fmin(lo, el(rp, i)); hi = fmax(hi, el(rp, i)); }
        ok(lo >= -1 && hi <= 1, "every buffer value in [-1, 1] (%g .. %g)", lo, hi);
        for (int c = 0; c < CL; c++)
            for (int i = 0; i < D; i++) {
                double m = 0;
                for (int r = 0; r < PER_CLASS; r++) m += el(rp, ((size_t)(c * PER_CLASS + r)) * D + i);
                m /= PER_CLASS;
                double zc = fabs(m - el(cm, (size_t)c * D + i)) / (el(sd, (size_t)c * D + i) / sqrt(PER_CLASS));
                if (zc > worst) { worst = zc; wc = c; wi = i; }
            }
        ok(worst < 6, "rows c*50..c*50+49 hold class c's draws: every pixel's mean within 6 standard errors of numpy's clamped "
                      "mean (worst %.2f, class %d pixel %d; 7840 pixels)", worst, wc, wi);
    } else ok(0, "the checkpoint's replay buffer is f32[500,1,28,28]");
    jm_st_free(&f);
}

/* `t_gm --cholesky-failures`: 200 refusals on 2 threads; exit 0 when each
   names its pivot */
static int cholesky_failures(void) {
    enum { n = 300 };
    const int pivots[4] = { 0, 5, 130, n - 1 };
    double *b = malloc(sizeof(double) * n * n);
    for (int rep = 0; b && rep < 200; rep++) {
        memset(b, 0, sizeof(double) * n * n);
        for (int i = 0; i < n; i++) b[i * n + i] = 1;
        b[pivots[rep % 4] * (n + 1)] = -1;
        int64_t got = -2;
        if (jm_gm_cholesky(b, n, 2, &got) != -1 || got != pivots[rep % 4]) return 3;
    }
    free(b);
    return b ? 0 : 2;
}

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "--cholesky-failures") == 0) return cholesky_failures();
    self = argv[0];
    jemc = jt_env("JEMC", "build/jemc");
    (void)ulp32;
    const char *src = jt_env("JM_MNIST", "../shared/data/mnist");
    char probe[512];
    snprintf(probe, sizeof probe, "%s/train-images-idx3-ubyte", src);
    FILE *pf = fopen(probe, "rb");
    if (!pf) skip_all("no MNIST training set (../shared/data/mnist or $JM_MNIST)");
    fclose(pf);
    if (jt_run("/usr/bin/python3 -c 'import numpy'", NULL, 0) != 0) skip_all("no numpy for /usr/bin/python3");
    snprintf(dir, sizeof dir, "/tmp/jemc_gm.XXXXXX");
    if (!mkdtemp(dir)) skip_all("mkdtemp failed");
    ok(write_subset(src, "sub", N_REC, -1) == 0 && write_subset(src, "no3", N_REC, 3) == 0, "the first 2000 MNIST records, and 2000 without class 3");
    test_cholesky();
    int r = run("%s tests/parity/gm_ref.py fit --images %s --labels %s --classes 10 --out %s", py, path_in("sub/train-images-idx3-ubyte"),
                path_in("sub/train-labels-idx1-ubyte"), path_in("ref.safetensors"));
    ok(r == 0, "numpy's reference (gm_ref.py fit)");
    if (r) { tap_diag("%s", out); return tap_done(); }
    jm_st_file ref;
    char err[512];
    memset(&ref, 0, sizeof ref);
    if (jm_st_read(path_in("ref.safetensors"), &ref, err, sizeof err) != 0) { ok(0, "%s", err); return tap_done(); }
    test_covariance(&ref);

    snprintf(exe, sizeof exe, "%s/gm", dir);
    r = run("%s compile tests/parity/gm_mnist.graph -o %s", jemc, exe);
    ok(r == 0, "compile tests/parity/gm_mnist.graph");
    if (r) { tap_diag("%s", out); return tap_done(); }
    /* one classifier-only iteration: the checkpoint holds the buffer as gm_fill drew it */
    r = run("%s train --data %s --iters 1 --pretrain 1 --out %s --no-progress --seed 4", exe, path_in("sub"), path_in("fresh"));
    ok(r == 0 && strstr(out, "informative init: 10 class Gaussians over 784 values fitted on 2000 records") && strstr(out, "replay: 500 rows drawn by gm_fill"),
       "a fresh train fits the Gaussians and fills the buffer, saying so (exit %d)", r);
    const char *line = strstr(out, "informative init");
    if (line) tap_diag("%.*s", (int)strcspn(line, "\n"), line);
    else tap_diag("%s", out);
    char fresh[512];
    snprintf(fresh, sizeof fresh, "%s", path_in("fresh/last.safetensors"));
    test_fit(fresh, &ref);
    test_draw(fresh);
    test_buffer(fresh, &ref);

    /* resume: 2 + 2 == 4 straight, bitwise (no refit, no refill), the Gaussians kept */
    int a = run("%s train --data %s --iters 4 --out %s --no-progress --seed 2", exe, path_in("sub"), path_in("straight"));
    int b = run("%s train --data %s --iters 2 --out %s --no-progress --seed 2", exe, path_in("sub"), path_in("half"));
    char why[600] = "";
    ok(a == 0 && b == 0, "two fresh runs, of 4 and 2 iterations (exit %d, %d)", a, b);
    int c = run("%s train --iters 4 --resume %s --no-progress", exe, path_in("half/last.safetensors"));
    ok(c == 0 && strstr(out, "the checkpoint's 10 class Gaussians kept") && !strstr(out, "fitted on"), "--resume keeps the checkpoint's Gaussians, fits nothing (exit %d)", c);
    if (c) tap_diag("%s", out);
    ok(same_tensors(path_in("straight/last.safetensors"), path_in("half/last.safetensors"), why, sizeof why),
       "2 + resume 2 == 4 straight: every tensor bitwise, gm_mean, gm_chol and the buffer included (%s)", why);

    /* --init uniform: fitted, but the buffer keeps U(-1, 1) */
    r = run("%s train --data %s --iters 1 --pretrain 1 --init uniform --out %s --no-progress", exe, path_in("sub"), path_in("uniform"));
    ok(r == 0 && strstr(out, "left at its declared initialiser (--init uniform)"), "--init uniform fits but does not fill (exit %d)", r);
    jm_st_file f;
    memset(&f, 0, sizeof f);
    if (jm_st_read(path_in("uniform/last.safetensors"), &f, err, sizeof err) == 0 && jm_st_find(&f, "replay") && jm_st_find(&f, "gm_chol")) {
        const jm_st_tensor *rp = jm_st_find(&f, "replay");
        double m = 0, m2 = 0;
        for (size_t i = 0; i < numel(rp); i++) { m += el(rp, i); m2 += el(rp, i) * el(rp, i); }
        m /= (double)numel(rp);
        m2 /= (double)numel(rp);
        ok(fabs(m) < 0.01 && fabs(m2 - 1.0 / 3) < 0.01 && el(jm_st_find(&f, "gm_chol"), 0) > 0,
           "its buffer has U(-1, 1)'s mean 0 and second moment 1/3 (%.4f, %.4f; the fill's mean is near -0.74); gm_chol fitted", m, m2);
    } else ok(0, "read the --init uniform checkpoint: %s", err);
    jm_st_free(&f);
    r = run("%s train --data %s --iters 1 --init normal --out %s --no-progress", exe, path_in("sub"), path_in("badinit"));
    ok(r == 2 && strstr(out, "--init takes gm or uniform, got 'normal'"), "--init normal: a usage error (exit %d)", r);

    /* a class missing from the training set */
    r = run("%s train --data %s --iters 1 --out %s --no-progress", exe, path_in("no3"), path_in("no3run"));
    ok(r == 1 && strstr(out, "class 3 has no records"), "a training set without class 3 is refused, naming the class (exit %d)", r);
    if (strstr(out, "class 3")) tap_diag("%.*s", (int)strcspn(strstr(out, "informative"), "\n"), strstr(out, "informative") ? strstr(out, "informative") : out);

    /* gm_on = 0: empty Gaussians, nothing fitted, U(-1, 1) restarts */
    char exe0[400];
    snprintf(exe0, sizeof exe0, "%s/gm0", dir);
    r = run("%s compile tests/parity/gm_mnist.graph -D gm_on=0 -o %s", jemc, exe0);
    int t = r == 0 ? run("%s train --data %s --iters 2 --out %s --no-progress", exe0, path_in("sub"), path_in("off")) : -1;
    memset(&f, 0, sizeof f);
    int empty = t == 0 && jm_st_read(path_in("off/last.safetensors"), &f, err, sizeof err) == 0 && jm_st_find(&f, "gm_mean") &&
                jm_st_find(&f, "gm_mean")->nbytes == 0 && jm_st_find(&f, "gm_chol") && jm_st_find(&f, "gm_chol")->nbytes == 0;
    ok(empty && !strstr(out, "informative init"), "-D gm_on=0: trains with empty gm_mean/gm_chol and no fit (exit %d, %d)", r, t);
    jm_st_free(&f);
    jm_st_free(&ref);
    char rm[300];
    snprintf(rm, sizeof rm, "rm -rf %s", dir);
    if (system(rm) != 0) tap_diag("could not remove %s", dir);
    return tap_done();
}
