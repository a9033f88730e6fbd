/* t_interp.c — the reference interpreter, op by op, on small cases with answers
 * worked out by hand (or in closed form). The interpreter is the oracle the CPU
 * and CUDA backends are tested against, so each op's semantics is pinned here. */
#include "tap.h"
#include "helpers.h"
#include "grad.h"
#include "simplify.h"
#include "engine/philox.h"
#include <math.h>

/* Runs program `prog` of `text` with inputs given as flat double arrays (shapes
   come from the program), returns output `k` in *out (caller frees). */
static int run1(const char *text, const char *prog, const double *const *in, int k, jm_tensor *out, char *err) {
    jt_unit u;
    jt_load(&u, text);
    if (!u.m) { snprintf(err, 1024, "front end: %s", u.errors); jt_unload(&u); return -1; }
    /* the passes jemc runs: simplify, autodiff, simplify */
    if (jm_simplify(u.m, &u.d, 0) != 0 || jm_autodiff(u.m, &u.d) != 0 || jm_simplify(u.m, &u.d, 1) != 0) {
        fflush(u.errf);
        snprintf(err, 1024, "passes: %s", u.errors);
        jt_unload(&u);
        return -1;
    }
    jm_interp I;
    jm_interp_init(&I, u.m, 7);
    int p = jm_module_find_program(u.m, prog);
    jm_program *pr = &u.m->programs[p];
    jm_tensor *ins = calloc((size_t)pr->ninputs + 1, sizeof *ins);
    for (int i = 0; i < pr->ninputs; i++) {
        jm_tensor_alloc(&ins[i], &u.m->graphs[pr->graph].node[pr->inputs[i].node].type);
        memcpy(ins[i].data, in[i], sizeof(double) * (size_t)jm_type_numel(&ins[i].type));
    }
    jm_tensor *outs = NULL;
    int rc = jm_interp_run(&I, p, ins, &outs);
    if (rc == 0) {
        *out = outs[k];
        for (int i = 0; i < pr->noutputs; i++) if (i != k) jm_tensor_free(&outs[i]);
        free(outs);
    } else {
        snprintf(err, 1024, "%s", I.err);
    }
    for (int i = 0; i < pr->ninputs; i++) jm_tensor_free(&ins[i]);
    free(ins);
    jm_interp_free(&I);
    jt_unload(&u);
    return rc;
}

/* Checks a program's first output against expected values (relative tolerance). */
static void check(const char *name, const char *text, const double *const *in, const double *want, int n, double tol) {
    jm_tensor out;
    char err[1024] = "";
    if (run1(text, "p", in, 0, &out, err) != 0) {
        ok(0, "%s", name);
        tap_diag("%s", err);
        return;
    }
    int good = jm_type_numel(&out.type) == n;
    int bad_at = -1;
    for (int i = 0; good && i < n; i++) {
        double s = fmax(fabs(want[i]), 1e-300);
        if (!(fabs(out.data[i] - want[i]) <= tol * s) && !(out.data[i] == want[i])) { good = 0; bad_at = i; }
    }
    ok(good, "%s", name);
    if (!good) {
        if (bad_at >= 0) tap_diag("element %d: got %.17g, expected %.17g", bad_at, out.data[bad_at], want[bad_at]);
        else tap_diag("got %lld elements, expected %d", (long long)jm_type_numel(&out.type), n);
    }
    jm_tensor_free(&out);
}

static const char *G(const char *body) {
    static char buf[4096];
    snprintf(buf, sizeof buf, "%s\n", body);
    return buf;
}

/* Runs program 0 of `text` `runs` times on input x (2 doubles), then checks
   each named global against its expected values (nwant each; NULL want: the
   global must not exist). */
typedef struct { const char *name; double want[2]; int n; } jt_gwant;
static void check_globals(const char *label, const char *text, const double *x, int runs, const jt_gwant *w, int nw) {
    jt_unit u;
    jt_load(&u, text);
    int good = u.m != NULL && jm_autodiff(u.m, &u.d) == 0;
    if (!good) { fflush(u.errf); tap_diag("%s", u.errors); }
    if (good) {
        jm_interp I;
        jm_interp_init(&I, u.m, 1);
        jm_tensor in, *o = NULL;
        jm_tensor_alloc(&in, &u.m->graphs[u.m->programs[0].graph].node[u.m->programs[0].inputs[0].node].type);
        in.data[0] = x[0]; in.data[1] = x[1];
        for (int r = 0; r < runs && good; r++) {
            good = jm_interp_run(&I, 0, &in, &o) == 0;
            if (!good) tap_diag("run %d: %s", r + 1, I.err);
            for (int k = 0; o && k < u.m->programs[0].noutputs; k++) jm_tensor_free(&o[k]);
            free(o);
            o = NULL;
        }
        for (int k = 0; k < nw && good; k++) {
            int gi = jm_module_find_global(u.m, w[k].name);
            if (w[k].n == 0) {
                if (gi >= 0) { good = 0; tap_diag("global %s exists; it should not", w[k].name); }
                continue;
            }
            if (gi < 0) { good = 0; tap_diag("no global %s", w[k].name); continue; }
            for (int i = 0; i < w[k].n; i++) {
                /* each tensor at its own scale */
                double scale = fmax(fabs(w[k].want[0]), fabs(w[k].want[w[k].n - 1]));
                if (!(fabs(I.globals[gi].data[i] - w[k].want[i]) <= 1e-12 * scale)) {
                    good = 0;
                    tap_diag("%s[%d] = %.17g, expected %.17g", w[k].name, i, I.globals[gi].data[i], w[k].want[i]);
                }
            }
        }
        jm_tensor_free(&in);
        jm_interp_free(&I);
    }
    ok(good, "%s", label);
    jt_unload(&u);
}

int main(void) {
    double x16[16];
    for (int i = 0; i < 16; i++) x16[i] = i;
    const double *in16[] = { x16 };

    /* conv2d: 3x3 box filter over 0..15 with padding 1; corners and centre by hand */
    {
        const char *t = G("program p(x: f64[1,1,4,4]) {\n output y = conv2d(x, ones([1,1,3,3], dtype=\"f64\"), padding=1)\n}");
        double want[16] = { 10, 18, 24, 18, 27, 45, 54, 39, 51, 81, 90, 63, 42, 66, 72, 50 };
        check("conv2d 3x3 box filter, padding 1", t, in16, want, 16, 1e-15);
        const char *t2 = G("program p(x: f64[1,1,4,4]) {\n output y = conv2d(x, ones([1,1,3,3], dtype=\"f64\"), stride=2, padding=1)\n}");
        double want2[4] = { 10, 24, 51, 90 };
        check("conv2d stride 2 picks every other output", t2, in16, want2, 4, 1e-15);
        const char *t3 = G("program p(x: f64[1,1,4,4]) {\n output y = conv2d(x, ones([1,1,2,2], dtype=\"f64\"), dilation=2)\n}");
        /* taps (0,0),(0,2),(2,0),(2,2): at (0,0): 0+2+8+10 */
        double want3[4] = { 20, 24, 36, 40 };
        check("conv2d dilation 2", t3, in16, want3, 4, 1e-15);
        /* groups=2: channel 0 is 0..15 scaled by w0=1, channel 1 by w1=2; 1x1 kernels */
        double x2[32];
        for (int i = 0; i < 32; i++) x2[i] = i;
        const double *in2[] = { x2 };
        const char *t4 = G("program p(x: f64[1,2,4,4]) {\n output y = conv2d(x, reshape(cast(concat([ones([1]), ones([1]) * 2.0]), \"f64\"), [2,1,1,1]), groups=2)\n}");
        double want4[32];
        for (int i = 0; i < 32; i++) want4[i] = i < 16 ? i : 2.0 * i;
        check("conv2d groups=2 keeps channels apart", t4, in2, want4, 32, 1e-15);
    }
    /* matmul and linear: [[1,2],[3,4]] @ [[5,6],[7,8]] */
    {
        double a[4] = { 1, 2, 3, 4 }, b[4] = { 5, 6, 7, 8 };
        const double *in[] = { a, b };
        double want[4] = { 19, 22, 43, 50 };
        check("matmul 2x2", G("program p(a: f64[2,2], b: f64[2,2]) {\n output y = matmul(a, b)\n}"), in, want, 4, 1e-15);
        /* linear(x, w, bias) = x @ w^T + bias */
        double bias[2] = { 1, -1 };
        const double *in3[] = { a, b, bias };
        double want3[4] = { 1 * 5 + 2 * 6 + 1, 1 * 7 + 2 * 8 - 1, 3 * 5 + 4 * 6 + 1, 3 * 7 + 4 * 8 - 1 };
        check("linear is x @ w^T + b", G("program p(x: f64[2,2], w: f64[2,2], b: f64[2]) {\n output y = linear(x, w, b)\n}"), in3, want3, 4, 1e-15);
    }
    /* logsumexp must not overflow: log(e^1000 + e^1000) = 1000 + log 2 */
    {
        double x[4] = { 1000, 1000, -1000, -1001 };
        const double *in[] = { x };
        double want[2] = { 1000 + log(2.0), -1000 + log1p(exp(-1.0)) };
        check("logsumexp is stable for large magnitudes", G("program p(x: f64[2,2]) {\n output y = logsumexp(x, axis=1)\n}"), in, want, 2, 1e-15);
        double wantm[2] = { 1000, -1000 };
        check("max over an axis", G("program p(x: f64[2,2]) {\n output y = max(x, axis=-1)\n}"), in, wantm, 2, 0);
        double wantn[2] = { 1000, -1001 };
        check("min over an axis", G("program p(x: f64[2,2]) {\n output y = min(x, axis=1)\n}"), in, wantn, 2, 0);
    }
    /* softmax, log_softmax and cross-entropy */
    {
        double x[3] = { 1, 2, 3 };
        const double *in[] = { x };
        double s = exp(1) + exp(2) + exp(3);
        double want[3] = { exp(1) / s, exp(2) / s, exp(3) / s };
        check("softmax", G("program p(x: f64[1,3]) {\n output y = softmax(x)\n}"), in, want, 3, 1e-15);
        double wl[3] = { 1 - log(s), 2 - log(s), 3 - log(s) };
        check("log_softmax", G("program p(x: f64[1,3]) {\n output y = log_softmax(x, axis=1)\n}"), in, wl, 3, 1e-14);
        double l[6] = { 1, 2, 3, 0, 0, 0 }, y[2] = { 2, 1 };
        const double *in2[] = { l, y };
        double ce = ((log(s) - 3) + log(3.0)) / 2;
        check("cross_entropy is the mean NLL", G("program p(l: f64[2,3], y: i64[2]) {\n output y = cross_entropy(l, y)\n}"), in2, &ce, 1, 1e-14);
        /* smoothing eps: (1-eps)*NLL + eps*mean_k(-log p_k) */
        double eps = 0.1, r0 = (1 - eps) * (log(s) - 3) + eps * (log(s) - 2), r1 = log(3.0);
        double ces = (r0 + r1) / 2;
        check("cross_entropy with label smoothing", G("program p(l: f64[2,3], y: i64[2]) {\n output y = cross_entropy(l, y, smoothing=0.1)\n}"), in2, &ces, 1, 1e-14);
        double bad[2] = { 3, 0 };
        const double *in3[] = { l, bad };
        jm_tensor out;
        char err[1024] = "";
        int rc = run1(G("program p(l: f64[2,3], y: i64[2]) {\n output y = cross_entropy(l, y)\n}"), "p", in3, 0, &out, err);
        if (!ok(rc != 0 && strstr(err, "label 3 at row 0 is out of range [0, 3)"), "cross_entropy rejects a label out of range, naming it"))
            tap_diag("%s", err);
        if (rc == 0) jm_tensor_free(&out);
    }
    /* broadcasting, reductions, keepdims, mean */
    {
        double a[2] = { 10, 20 }, b[3] = { 1, 2, 3 };
        const double *in[] = { a, b };
        double want[6] = { 11, 12, 13, 21, 22, 23 };
        check("broadcast [2,1] + [3] -> [2,3]", G("program p(a: f64[2,1], b: f64[3]) {\n output y = a + b\n}"), in, want, 6, 0);
        const double *in1[] = { x16 };
        double ws[4] = { 6, 22, 38, 54 };
        check("sum over the last axis", G("program p(x: f64[4,4]) {\n output y = sum(x, axis=1)\n}"), in1, ws, 4, 0);
        double wm[4] = { 6, 7, 8, 9 };
        check("mean over the first axis", G("program p(x: f64[4,4]) {\n output y = mean(x, axis=0)\n}"), in1, wm, 4, 1e-15);
        double wt = 120;
        check("sum over all axes", G("program p(x: f64[4,4]) {\n output y = sum(x)\n}"), in1, &wt, 1, 0);
        check("keepdims keeps a size-1 axis", G("program p(x: f64[4,4]) {\n output y = sum(x, axis=1, keepdims=true) + zeros(x)\n}"),
              in1, (double[16]){ 6, 6, 6, 6, 22, 22, 22, 22, 38, 38, 38, 38, 54, 54, 54, 54 }, 16, 0);
    }
    /* elementwise functions */
    {
        double x[5] = { -2, -0.5, 0, 0.5, 2 };
        const double *in[] = { x };
        double lr[5] = { -0.4, -0.1, 0, 0.5, 2 };
        check("leaky_relu with slope 0.2", G("program p(x: f64[5]) {\n output y = leaky_relu(x, 0.2)\n}"), in, lr, 5, 1e-15);
        double sg[5], sp[5], th[5], cl[5] = { -1, -0.5, 0, 0.5, 1 };
        for (int i = 0; i < 5; i++) { sg[i] = 1 / (1 + exp(-x[i])); sp[i] = log1p(exp(x[i])); th[i] = tanh(x[i]); }
        check("sigmoid", G("program p(x: f64[5]) {\n output y = sigmoid(x)\n}"), in, sg, 5, 1e-15);
        check("softplus", G("program p(x: f64[5]) {\n output y = softplus(x)\n}"), in, sp, 5, 1e-15);
        check("tanh", G("program p(x: f64[5]) {\n output y = tanh(x)\n}"), in, th, 5, 1e-15);
        check("clamp", G("program p(x: f64[5]) {\n output y = clamp(x, -1, 1)\n}"), in, cl, 5, 0);
        double wh[5] = { 2, 0.5, 0, 0.5, 2 };
        check("where selects by a comparison", G("program p(x: f64[5]) {\n output y = where(x < 0, -x, x)\n}"), in, wh, 5, 0);
        double big[2] = { 800, -800 };
        const double *inb[] = { big };
        double spb[2] = { 800, exp(-800) };
        check("softplus does not overflow", G("program p(x: f64[2]) {\n output y = softplus(x)\n}"), inb, spb, 2, 1e-15);
    }
    /* float32 semantics: every f32 result is rounded to float */
    {
        double x[1] = { 1 };
        const double *in[] = { x };
        double want = (double)(float)(1.0 / 3.0);
        check("f32 results are rounded to float", G("program p(x: f32[1]) {\n output y = x / 3.0\n}"), in, &want, 1, 0);
    }
    /* movement: permute, slice, index, pad, concat, flatten, gather */
    {
        const double *in[] = { x16 };
        double tp[16];
        for (int i = 0; i < 4; i++) for (int j = 0; j < 4; j++) tp[i * 4 + j] = x16[j * 4 + i];
        check("transpose", G("program p(x: f64[4,4]) {\n output y = transpose(x)\n}"), in, tp, 16, 0);
        double sl[4] = { 5, 6, 9, 10 };
        check("slice x[1:3, 1:3]", G("program p(x: f64[4,4]) {\n output y = x[1:3, 1:3]\n}"), in, sl, 4, 0);
        double col[4] = { 2, 6, 10, 14 };
        check("integer subscript drops the axis: x[:, 2]", G("program p(x: f64[4,4]) {\n output y = x[:, 2]\n}"), in, col, 4, 0);
        double neg[4] = { 12, 13, 14, 15 };
        check("negative subscript counts from the end: x[-1]", G("program p(x: f64[4,4]) {\n output y = x[-1]\n}"), in, neg, 4, 0);
        double pd[12] = { 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 0 };
        double v3[3] = { 1, 2, 3 };
        const double *in3[] = { v3 };
        check("pad with (before, after) per axis", G("program p(x: f64[3,1]) {\n output y = pad(x, [0, 0, 2, 1])\n}"), in3, pd, 12, 0);
        double cc[6] = { 1, 2, 3, 1, 2, 3 };
        check("concat along axis 0", G("program p(x: f64[3]) {\n output y = concat([x, x])\n}"), in3, cc, 6, 0);
        double idx[3] = { 3, 0, 3 };
        const double *ing[] = { x16, idx };
        double gw[12] = { 12, 13, 14, 15, 0, 1, 2, 3, 12, 13, 14, 15 };
        check("gather rows with an integer tensor", G("program p(x: f64[4,4], i: i64[3]) {\n output y = x[i]\n}"), ing, gw, 12, 0);
        double mp[4] = { 5, 7, 13, 15 };
        check("max_pool2d 2x2", G("program p(x: f64[1,1,4,4]) {\n output y = max_pool2d(x, 2)\n}"), in, mp, 4, 0);
        double ap[4] = { 2.5, 4.5, 10.5, 12.5 };
        check("avg_pool2d 2x2", G("program p(x: f64[1,1,4,4]) {\n output y = avg_pool2d(x, 2)\n}"), in, ap, 4, 1e-15);
        double oh[6] = { 0, 1, 0, 1, 0, 0 };
        double lab[2] = { 1, 0 };
        const double *inl[] = { lab };
        check("onehot", G("program p(y: i64[2]) {\n output y = onehot(y, 3)\n}"), inl, oh, 6, 0);
    }
    /* samplers are loops: x <- x * 0.5 + 1, five times from 0: 1, 1.5, 1.75, 1.875, 1.9375 */
    {
        double x[2] = { 0, 4 };
        const double *in[] = { x };
        double want[2] = { 1.9375, 4 * pow(0.5, 5) + 1.9375 };
        check("a sampler runs its body `steps` times",
              G("sampler s(x, steps=5) {\n x = x * 0.5 + 1\n}\nprogram p(x: f64[2]) {\n output y = s(x)\n}"), in, want, 2, 1e-15);
        double want0[2] = { 0, 4 };
        check("steps=0 returns the input",
              G("sampler s(x, steps=5) {\n x = x * 0.5 + 1\n}\nprogram p(x: f64[2]) {\n output y = s(x, steps=0)\n}"), in, want0, 2, 0);
        double wc[2] = { 9, 13 };
        check("a sampler captures outer tensors (x + 3c over 3 steps)",
              G("sampler s(x, c, steps=3) {\n x = x + c\n}\nprogram p(x: f64[2]) {\n c = x * 0 + 3\n output y = s(x, c)\n}"), in, wc, 2, 0);
        double wn[2] = { 6, 10 };
        check("nested samplers (2 outer steps of 3 inner +1)",
              G("sampler inner(x, steps=3) {\n x = x + 1\n}\nsampler outer(x, steps=2) {\n x = inner(x)\n}\nprogram p(x: f64[2]) {\n output y = outer(x)\n}"),
              in, wn, 2, 0);
    }
    /* every sampler iteration draws new noise (the loop iteration is part of the Philox counter) */
    {
        jt_unit u;
        jt_load(&u, "sampler s(x, steps=2) {\n x = x + normal(x)\n}\nprogram p(x: f64[4]) {\n output a = s(x, steps=1)\n output b = s(x, steps=2)\n}\n");
        ok(u.m != NULL, "a noisy sampler elaborates");
        if (u.m) {
            jm_interp I;
            jm_interp_init(&I, u.m, 5);
            jm_tensor in, *o = NULL;
            jm_tensor_alloc(&in, &u.m->graphs[u.m->programs[0].graph].node[0].type);
            int rc = jm_interp_run(&I, 0, &in, &o);
            /* b = n1 + n2 where a = n1 (same call site, same call): n2 = b - a must differ from n1 */
            int differ = rc == 0;
            for (int i = 0; differ && i < 4; i++) differ = fabs((o[1].data[i] - o[0].data[i]) - o[0].data[i]) > 1e-9;
            ok(differ, "the second SGLD step adds different noise than the first");
            if (o) { jm_tensor_free(&o[0]); jm_tensor_free(&o[1]); free(o); }
            jm_tensor_free(&in);
            jm_interp_free(&I);
        }
        jt_unload(&u);
        double x[3] = { -1, 0.5, 2 };
        const double *in[] = { x };
        double w1[3] = { 0, 0.5, 2 }, w2[3] = { -1, 0.5, 1 }, w3[3] = { 0, 0.5, 0 };
        check("max(x, 0.0) is elementwise with a number", G("program p(x: f64[3]) {\n output y = max(x, 0.0)\n}"), in, w1, 3, 0);
        check("min(1.0, x) is elementwise with a number first", G("program p(x: f64[3]) {\n output y = min(1.0, x)\n}"), in, w2, 3, 0);
        check("where(c, x, 0.0) accepts a number branch", G("program p(x: f64[3]) {\n output y = where(x < 1, x, 0.0) * where(x > 0, ones(x), 0.0) * cast(where(x > -5, 1.0, 0.5), \"f64\")\n}"), in, w3, 3, 0);
        /* dropout: zeroes about p of the values and scales the rest by 1/(1-p); identity in eval */
        {
            jt_unit ud;
            jt_load(&ud, "import \"graphs/lib/norm.graph\"\nprogram p(x: f64[10000]) {\n output t = dropout(x, 0.25, true)\n output e = dropout(x, 0.25, false)\n}\n");
            int good = ud.m != NULL;
            if (good) {
                jm_interp I;
                jm_interp_init(&I, ud.m, 3);
                jm_tensor din, *o = NULL;
                jm_tensor_alloc(&din, &ud.m->graphs[ud.m->programs[0].graph].node[0].type);
                for (int i = 0; i < 10000; i++) din.data[i] = 1;
                good = jm_interp_run(&I, 0, &din, &o) == 0;
                int zeros = 0, scaled = 0, same = 1;
                for (int i = 0; good && i < 10000; i++) {
                    zeros += o[0].data[i] == 0;
                    scaled += fabs(o[0].data[i] - 1 / 0.75) < 1e-12;
                    same &= o[1].data[i] == 1;
                }
                /* 10000 draws at p = 0.25: sd 43, so 2500 +- 250 is > 5 sigma */
                good = good && zeros + scaled == 10000 && abs(zeros - 2500) < 250 && same;
                if (!good) tap_diag("zeros %d, scaled %d", zeros, scaled);
                if (o) { jm_tensor_free(&o[0]); jm_tensor_free(&o[1]); free(o); }
                jm_tensor_free(&din);
                jm_interp_free(&I);
            } else tap_diag("%s", ud.errors);
            ok(good, "dropout(p=0.25) zeroes about a quarter and scales the rest by 4/3; the identity in eval");
            jt_unload(&ud);
        }
        double wi[3] = { 1, 1, 1 };
        check("integer constants truncate (full(..., 1.5, i64))", G("program p(x: f64[3]) {\n output y = cast(full([3], 1.5, dtype=\"i64\"), \"f64\")\n}"), in, wi, 3, 0);
    }
    /* gradients with respect to intermediate values keep their identity (review findings) */
    {
        double x[3] = { 0.1, 0.2, 0.3 }, z[3] = { 1, 2, 3 };
        const double *in[] = { x, z };
        double ones3[3] = { 1, 1, 1 }, twos3[3] = { 2, 2, 2 };
        check("grad w.r.t. one of two equal intermediates counts only its own uses (1)",
              G("program p(x: f64[3]) {\n a = exp(x)\n b = exp(x)\n y = sum(a) + 2.0 * sum(b)\n output da = grad(y, a)\n}"), in, ones3, 3, 0);
        check("grad w.r.t. one of two equal intermediates counts only its own uses (2)",
              G("program p(x: f64[3]) {\n a = exp(x)\n b = exp(x)\n y = sum(a) + 2.0 * sum(b)\n output db = grad(y, b)\n}"), in, twos3, 3, 0);
        check("a grad result used as a target is not confused with a result of the same sweep",
              G("program p(x: f64[3], z: f64[3]) {\n s = sum(x + z)\n g = grad(s, x)\n h = grad(s, z)\n"
                " l = sum(g * x) + 5.0 * sum(h)\n output dg = grad(l, g)\n}"), in, x, 3, 1e-15);
        double c[4] = { 0, 1, 0.5, 2 };
        const double *inc[] = { c };
        double gc[4] = { 1, 1, 1, 0 }, gp[4] = { 0, 0, 0, 0 };
        check("clamp passes the gradient at its bounds (as PyTorch)", G("program p(x: f64[4]) {\n output g = grad(sum(clamp(x, 0.0, 1.0)), x)\n}"), inc, gc, 4, 0);
        check("d/dx x ** 0 is 0 everywhere, also at x = 0", G("program p(x: f64[4]) {\n output g = grad(sum(x ** 0.0), x)\n}"), inc, gp, 4, 0);
    }
    /* locals shadow config constants, declarations and state (library blocks must not
       depend on their importer's names); state is written only by a program's own body */
    {
        double x[2] = { 1, 2 };
        const double *in[] = { x };
        double want[2] = { 12, 24 };
        check("locals shadow config constants, declarations and state",
              G("config { lr = 0.1 }\nstate s: f64[2] = 0\nblock b(x) {\n lr = 2.0\n p = x * 3.0\n s = p * lr\n return s\n}\n"
                "program p(x: f64[2]) {\n output y = b(x) * 2.0\n}"), in, want, 2, 0);
    }
    /* optimizers: minimize ... with adam / sgd, two steps against the closed form */
    {
        const char *text[] = {
            "block lin(x) {\n param p: f64[2] = 1\n return sum(p * x)\n}\noptimizer opt = adam(lr=0.1)\n"
            "program step(x: f64[2]) {\n loss = lin(x) as m\n minimize loss with opt\n output loss\n}\n",
            "block lin(x) {\n param p: f64[2] = 1\n return sum(p * x)\n}\noptimizer opt = sgd(lr=0.1, momentum=0.9)\n"
            "program step(x: f64[2]) {\n loss = lin(x) as m\n minimize loss with opt\n output loss\n}\n",
            "block lin(x) {\n param p: f64[2] = 1\n return sum(p * x)\n}\noptimizer opt = adamw(lr=0.1, weight_decay=0.5, warmup=4)\n"
            "program step(x: f64[2]) {\n loss = lin(x) as m\n minimize loss with opt\n output loss\n}\n",
        };
        /* gradient g = x = (2, -3). adam: each step moves by lr * mhat / (sqrt(vhat) + eps) = 0.1 sign(g).
           sgd+momentum: buf = g, then 1.9 g: p = 1 - 0.1 g - 0.19 g.
           adamw with warm-up 4: lr_t = 0.1 t / 4; step t: p -= lr_t (sign(g) g/|g| + 0.5 p). */
        double g[2] = { 2, -3 };
        double want[3][2];
        for (int i = 0; i < 2; i++) {
            double s = g[i] > 0 ? 1 : -1;
            want[0][i] = 1 - 0.2 * g[i] / (fabs(g[i]) + 1e-8);
            (void)s;
            want[1][i] = 1 - 0.1 * g[i] - 0.19 * g[i];
            double p = 1;
            for (int t = 1; t <= 2; t++) {
                double lr = 0.1 * t / 4.0;
                double mhat = g[i], vhat = g[i] * g[i];
                p -= lr * (mhat / (sqrt(vhat) + 1e-8) + 0.5 * p);
            }
            want[2][i] = p;
        }
        const char *names[] = { "adam: two steps move each parameter by lr * sign(gradient)",
                                "sgd with momentum 0.9: two steps", "adamw with decoupled weight decay and linear warm-up" };
        for (int k = 0; k < 3; k++) {
            jt_unit u;
            jt_load(&u, text[k]);
            int good = u.m != NULL && jm_autodiff(u.m, &u.d) == 0;
            if (good) {
                jm_interp I;
                jm_interp_init(&I, u.m, 1);
                jm_tensor in, *o = NULL;
                jm_tensor_alloc(&in, &u.m->graphs[u.m->programs[0].graph].node[u.m->programs[0].inputs[0].node].type);
                in.data[0] = g[0]; in.data[1] = g[1];
                for (int s = 0; s < 2 && good; s++) {
                    good = jm_interp_run(&I, 0, &in, &o) == 0;
                    if (o) { jm_tensor_free(&o[0]); free(o); o = NULL; }
                }
                int gp = jm_module_find_global(u.m, "m.p");
                good = good && gp >= 0 && fabs(I.globals[gp].data[0] - want[k][0]) < 1e-9 && fabs(I.globals[gp].data[1] - want[k][1]) < 1e-9;
                if (!good && gp >= 0) tap_diag("got %.12g %.12g, expected %.12g %.12g", I.globals[gp].data[0], I.globals[gp].data[1], want[k][0], want[k][1]);
                jm_tensor_free(&in);
                jm_interp_free(&I);
            } else if (u.errors) tap_diag("%s", u.errors);
            ok(good, "%s", names[k]);
            jt_unload(&u);
        }
    }
    /* minimize in sequence (language §13.3) and optimizers over part of the
       parameters (params=, §4.10). x = (1, 2); f = w.x, g = v.x, o = u.x.
       Run 1: w = 1, v = 2, u = 3: f = 3, g = 6. l1 = f g + o: o1 (sgd 0.05,
       f only) steps w by 0.05 g x = (0.3, 0.6): w = (0.7, 0.4), f = 1.5.
       l2 reads the new f: dl2/dv = f x = (1.5, 3); o2 (sgd 0.5, momentum 0.9,
       scope "gen") buf = (1.5, 3), v = 2 - 0.5 buf = (1.25, 0.5). (With the
       old f = 3 it would be (0.5, -1).) u is in neither set: no change, no
       momentum buffer. Run 2: g = 2.25; w -= 0.05 * 2.25 x: (0.5875, 0.175),
       f = 0.9375; buf = 0.9 (1.5, 3) + 0.9375 x = (2.2875, 4.575);
       v = (1.25, 0.5) - 0.5 buf = (0.10625, -1.7875). */
    {
        static const char two[] =
            "model f(x: f64[2]) -> f64[] {\n param w: f64[2] = 1\n return sum(w * x)\n}\n"
            "model g(x: f64[2]) -> f64[] {\n param v: f64[2] = 2\n return sum(v * x)\n}\n"
            "block other(x) {\n param u: f64[2] = 3\n return sum(u * x)\n}\n"
            "optimizer o1 = sgd(lr=0.05, params=f)\noptimizer o2 = sgd(lr=0.5, momentum=0.9, params=\"gen\")\n"
            "program step(x: f64[2]) {\n l1 = f(x) * g(x) as gen + other(x) as o\n minimize l1 with o1\n"
            " l2 = f(x) * g(x) as gen + other(x) as o\n minimize l2 with o2\n output l2\n}\n";
        const double x[2] = { 1, 2 };
        const jt_gwant w1[] = { { "w", { 0.7, 0.4 }, 2 }, { "gen.v", { 1.25, 0.5 }, 2 }, { "o.u", { 3, 3 }, 2 },
                                { "o2.momentum.gen.v", { 1.5, 3 }, 2 }, { "o1.step", { 1 }, 1 }, { "o2.step", { 1 }, 1 },
                                { "o2.momentum.w", { 0 }, 0 }, { "o2.momentum.o.u", { 0 }, 0 } };
        check_globals("two optimizers: the second loss reads f after the first update; each updates only its set", two, x, 1, w1, 8);
        const jt_gwant w2[] = { { "w", { 0.5875, 0.175 }, 2 }, { "gen.v", { 0.10625, -1.7875 }, 2 }, { "o.u", { 3, 3 }, 2 },
                                { "o2.momentum.gen.v", { 2.2875, 4.575 }, 2 }, { "o1.step", { 2 }, 1 }, { "o2.step", { 2 }, 1 } };
        check_globals("two optimizers, second run: from the committed parameters and momentum", two, x, 2, w2, 6);
        /* one optimizer twice in a program: the second step starts from the first's
           parameters, moments and step counter, as two runs of one step do
           (g = x = (2, -3): each Adam step moves p by lr g / (|g| + eps)) */
        const double x2[2] = { 2, -3 };
        const jt_gwant w3[] = { { "m.p", { 1 - 0.2 * 2 / (2 + 1e-8), 1 + 0.2 * 3 / (3 + 1e-8) }, 2 }, { "opt.step", { 2 }, 1 },
                                { "opt.m.m.p", { 0.19 * 2, -0.19 * 3 }, 2 } };
        check_globals("a second minimize with the same optimizer takes its next step",
                      "block lin(x) {\n param p: f64[2] = 1\n return sum(p * x)\n}\noptimizer opt = adam(lr=0.1)\n"
                      "program step(x: f64[2]) {\n minimize lin(x) as m with opt\n l = lin(x) as m\n minimize l with opt\n output l\n}\n",
                      x2, 1, w3, 3);
    }
    /* bounded parameters (§5.4): every update is clamped to [lo, hi]. x = (1, 2),
       loss sum(ls * x), sgd lr 1: ls = -1 - x = (-2, -3) -> (-2, -2); with lr -1
       (ascent) ls = -1 + x = (0, 1) -> (0, 0.5); q (unbounded) from 0 to -x. */
    {
        const double x[2] = { 1, 2 };
        const jt_gwant w1[] = { { "g.ls", { -2, -2 }, 2 }, { "g.q", { -1, -2 }, 2 } };
        check_globals("a bounded parameter's update is clamped to its lower bound",
                      "block s(x) {\n param ls: f64[2] = -1 in [-2, 0.5]\n param q: f64[2] = 0\n return sum(ls * x) + sum(q * x)\n}\n"
                      "optimizer o = sgd(lr=1)\nprogram step(x: f64[2]) {\n l = s(x) as g\n minimize l with o\n output l\n}\n", x, 1, w1, 2);
        const jt_gwant w2[] = { { "g.ls", { 0, 0.5 }, 2 } };
        check_globals("a bounded parameter's update is clamped to its upper bound",
                      "block s(x) {\n param ls: f64[2] = -1 in [-2, 0.5]\n return sum(ls * x)\n}\n"
                      "optimizer o = sgd(lr=-1)\nprogram step(x: f64[2]) {\n l = s(x) as g\n minimize l with o\n output l\n}\n", x, 1, w2, 1);
    }
    /* persistent state: writes are committed at the end of a run */
    {
        jt_unit u;
        jt_load(&u, "state n: f64[2] = 5\nprogram inc() {\n n = n + 1\n output before = n - 1\n}\n");
        ok(u.m != NULL, "a program over state elaborates");
        if (u.m) {
            jm_interp I;
            jm_interp_init(&I, u.m, 1);
            jm_tensor *o1 = NULL, *o2 = NULL;
            int r1 = jm_interp_run(&I, 0, NULL, &o1), r2 = jm_interp_run(&I, 0, NULL, &o2);
            ok(r1 == 0 && r2 == 0 && o1[0].data[0] == 5 && o2[0].data[0] == 6 && I.globals[0].data[1] == 7,
               "state starts at its initialiser and persists across runs");
            if (o1) { jm_tensor_free(&o1[0]); free(o1); }
            if (o2) { jm_tensor_free(&o2[0]); free(o2); }
            jm_interp_free(&I);
        }
        jt_unload(&u);
        jt_load(&u, "state buf: f64[4, 2] = 0\nprogram put(i: i64[2], v: f64[2, 2]) {\n buf[i] = v\n output b = buf\n}\n");
        ok(u.m != NULL, "row updates of state elaborate");
        if (u.m) {
            jm_interp I;
            jm_interp_init(&I, u.m, 1);
            jm_tensor in[2], *o = NULL;
            jm_tensor_alloc(&in[0], &u.m->graphs[u.m->programs[0].graph].node[0].type);
            jm_tensor_alloc(&in[1], &u.m->graphs[u.m->programs[0].graph].node[1].type);
            in[0].data[0] = 2; in[0].data[1] = 0;
            for (int i = 0; i < 4; i++) in[1].data[i] = i + 1;
            int rc = jm_interp_run(&I, 0, in, &o);
            double want[8] = { 3, 4, 0, 0, 1, 2, 0, 0 };
            int good = rc == 0;
            for (int i = 0; good && i < 8; i++) good = I.globals[0].data[i] == want[i];
            ok(good, "buf[idx] = rows writes the rows and commits them");
            if (o) { jm_tensor_free(&o[0]); free(o); }
            jm_tensor_free(&in[0]); jm_tensor_free(&in[1]);
            jm_interp_free(&I);
        }
        jt_unload(&u);
    }
    /* random numbers: Philox4x32-10 known answers (Random123 test vectors) */
    {
        jm_philox_block b = jm_philox4x32(0, 0, 0, 0, 0);
        ok(b.v[0] == 0x6627e8d5u && b.v[1] == 0xe169c58du && b.v[2] == 0xbc57ac4cu && b.v[3] == 0x9b00dbd8u,
           "Philox4x32-10 of counter 0, key 0 matches the reference vector");
        b = jm_philox4x32(0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffffffffffull);
        ok(b.v[0] == 0x408f276du && b.v[1] == 0x41c83b0eu && b.v[2] == 0xa20bc7c6u && b.v[3] == 0x6d5451fdu,
           "Philox4x32-10 of all-ones counter and key matches the reference vector");
        jt_unit u;
        jt_load(&u, "program p() {\n output u = uniform([20000], -1, 1)\n output n = normal([20000], 2, 3)\n output k = randint([1000], 3, 7)\n}\n");
        ok(u.m != NULL, "random draws elaborate");
        if (u.m) {
            jm_interp I;
            jm_interp_init(&I, u.m, 42);
            jm_tensor *o = NULL, *o2 = NULL;
            jm_interp_run(&I, 0, NULL, &o);
            jm_interp_run(&I, 0, NULL, &o2);
            double mu = 0, mn = 0, vn = 0, lo = 1, hi = -1;
            for (int i = 0; i < 20000; i++) {
                mu += o[0].data[i]; mn += o[1].data[i];
                if (o[0].data[i] < lo) lo = o[0].data[i];
                if (o[0].data[i] > hi) hi = o[0].data[i];
            }
            mu /= 20000; mn /= 20000;
            for (int i = 0; i < 20000; i++) vn += (o[1].data[i] - mn) * (o[1].data[i] - mn);
            vn /= 20000;
            /* 5-sigma bounds: sd of the mean of U(-1,1) is 0.577/sqrt(20000) = 0.004 */
            ok(fabs(mu) < 0.02 && lo >= -1 && hi <= 1, "uniform(-1, 1) has mean 0 and stays in range (mean %.4f)", mu);
            ok(fabs(mn - 2) < 0.11 && fabs(vn - 9) < 0.5, "normal(2, 3) has mean 2 and variance 9 (%.3f, %.3f)", mn, vn);
            int inrange = 1, seen[4] = { 0 };
            for (int i = 0; i < 1000; i++) {
                double k = o[2].data[i];
                inrange &= k >= 3 && k < 7 && k == floor(k);
                if (inrange) seen[(int)k - 3] = 1;
            }
            ok(inrange && seen[0] && seen[1] && seen[2] && seen[3], "randint(3, 7) draws every integer in [3, 7)");
            ok(o[0].data[0] != o2[0].data[0], "each run draws new numbers (call counter)");
            ok(o[0].data[0] != o[1].data[0], "each call site draws from its own stream");
            jm_interp I2;
            jm_interp_init(&I2, u.m, 42);
            jm_tensor *o3 = NULL;
            jm_interp_run(&I2, 0, NULL, &o3);
            ok(memcmp(o[0].data, o3[0].data, sizeof(double) * 20000) == 0, "the same seed draws the same numbers");
            for (int k = 0; k < 3; k++) { jm_tensor_free(&o[k]); jm_tensor_free(&o2[k]); jm_tensor_free(&o3[k]); }
            free(o); free(o2); free(o3);
            jm_interp_free(&I);
            jm_interp_free(&I2);
        }
        jt_unload(&u);
    }
    return tap_done();
}
