/* t_gradcheck.c — every differentiable op's gradient against central finite
 * differences, in float64, through the interpreter.
 *
 * Each case is a scalar function f(x) = sum(op(x, ...) * w) with fixed random
 * weights w (so that no symmetry hides a wrong rule); program `f` evaluates it
 * and program `g` evaluates grad(f, x) after autodiff. For every element of x:
 *   fd = (f(x + h e_i) - f(x - h e_i)) / 2h,   h = 1e-6 * max(1, |x_i|)
 * Tolerance: |g_i - fd_i| <= 1e-6 * max(1, max_j |fd_j|) (the truncation error of
 * central differences is O(h^2) and rounding O(1e-16 / h) ~ 1e-10).
 * Every case must also have a gradient that is not all zero. */
#include "tap.h"
#include "helpers.h"
#include "grad.h"
#include <math.h>

typedef struct {
    const char *name;
    const char *decl;        /* extra declarations (blocks, samplers) */
    const char *xtype;       /* type of x, e.g. "f64[2,3]" */
    const char *wtype;       /* type of w, the shape of the expression */
    const char *expr;        /* the expression of x (and w's shape) */
    double lo, hi;           /* x ~ U(lo, hi) */
    const char *extra;       /* extra fixed inputs: "name: type" (filled U(-1,1) or with indices) */
} jg_case;

static uint64_t rng_state = 88172645463325252ull;
static double urand(void) {
    rng_state ^= rng_state << 13; rng_state ^= rng_state >> 7; rng_state ^= rng_state << 17;
    return (double)(rng_state >> 11) / 9007199254740992.0;
}

static int run_prog(jm_module *m, const char *name, jm_tensor *in, jm_tensor *out, char *err) {
    jm_interp I;
    jm_tensor *o = NULL;
    int rc = jm_interp_init(&I, m, 1);
    if (rc == 0) rc = jm_interp_run(&I, jm_module_find_program(m, name), in, &o);
    if (rc == 0) { *out = o[0]; free(o); } else snprintf(err, 1024, "%s", I.err);
    jm_interp_free(&I);
    return rc;
}

static void check_case(const jg_case *c) {
    char text[4096];
    snprintf(text, sizeof text,
             "%s\nprogram f(x: %s, w: %s%s%s) {\n    output y = sum((%s) * w)\n}\n"
             "program g(x: %s, w: %s%s%s) {\n    output gx = grad(sum((%s) * w), x)\n}\n",
             c->decl ? c->decl : "", c->xtype, c->wtype, c->extra ? ", " : "", c->extra ? c->extra : "", c->expr,
             c->xtype, c->wtype, c->extra ? ", " : "", c->extra ? c->extra : "", c->expr);
    jt_unit u;
    jt_load(&u, text);
    if (!u.m) { ok(0, "%s", c->name); tap_diag("%s\n%s", text, u.errors); jt_unload(&u); return; }
    jm_module_retype(u.m, JM_F32, JM_F64);       /* layers from graphs/lib declare f32: check them in double */
    if (jm_autodiff(u.m, &u.d) != 0) { fflush(u.errf); ok(0, "%s: autodiff", c->name); tap_diag("%s", u.errors); jt_unload(&u); return; }
    jm_program *pf = &u.m->programs[jm_module_find_program(u.m, "f")];
    int nin = pf->ninputs;
    jm_tensor in[4];
    for (int i = 0; i < nin; i++) {
        jm_tensor_alloc(&in[i], &u.m->graphs[pf->graph].node[pf->inputs[i].node].type);
        int64_t n = jm_type_numel(&in[i].type);
        for (int64_t k = 0; k < n; k++) {
            if (i == 0) in[i].data[k] = c->lo + (c->hi - c->lo) * urand();
            else if (jm_dtype_is_int(in[i].type.dtype)) in[i].data[k] = (double)((k * 7 + 1) % 3);   /* indices/labels in 0..2 */
            else in[i].data[k] = urand() * 2 - 1;
        }
    }
    char err[1024] = "";
    jm_tensor gx, y0;
    if (run_prog(u.m, "g", in, &gx, err) != 0 || run_prog(u.m, "f", in, &y0, err) != 0) {
        ok(0, "%s", c->name);
        tap_diag("%s", err);
    } else {
        int64_t n = jm_type_numel(&in[0].type);
        double *fd = malloc(sizeof(double) * (size_t)n), maxfd = 0, maxg = 0;
        int64_t failed_at = -1;         /* the element whose perturbed run failed: the case fails */
        for (int64_t k = 0; k < n; k++) {
            double x0 = in[0].data[k], h = 1e-6 * fmax(1, fabs(x0));
            jm_tensor yp, ym;
            in[0].data[k] = x0 + h;
            int rp = run_prog(u.m, "f", in, &yp, err);
            in[0].data[k] = x0 - h;
            int rm = rp == 0 ? run_prog(u.m, "f", in, &ym, err) : -1;
            in[0].data[k] = x0;
            if (rp != 0 || rm != 0) {
                if (rp == 0) jm_tensor_free(&yp);
                failed_at = k;
                break;
            }
            fd[k] = (yp.data[0] - ym.data[0]) / (2 * h);
            jm_tensor_free(&yp);
            jm_tensor_free(&ym);
            maxfd = fmax(maxfd, fabs(fd[k]));
            maxg = fmax(maxg, fabs(gx.data[k]));
        }
        double tol = 1e-6 * fmax(1, maxfd), worst = 0;
        int64_t at = 0;
        for (int64_t k = 0; failed_at < 0 && k < n && !isnan(worst); k++)     /* a NaN on either side is the worst */
            if (!(fabs(gx.data[k] - fd[k]) <= worst)) { worst = fabs(gx.data[k] - fd[k]); at = k; }
        if (failed_at >= 0) {
            ok(0, "%s: gradient matches finite differences", c->name);
            tap_diag("f at x +- h on element %lld failed: %s", (long long)failed_at, err);
        } else if (!ok(worst <= tol && maxg > 0, "%s: gradient matches finite differences (max err %.2g, tol %.2g)", c->name, worst, tol))
            tap_diag("element %lld: analytic %.12g, numeric %.12g; max |grad| %g", (long long)at, gx.data[at], fd[at], maxg);
        free(fd);
        jm_tensor_free(&gx);
        jm_tensor_free(&y0);
    }
    for (int i = 0; i < nin; i++) jm_tensor_free(&in[i]);
    jt_unload(&u);
}

int main(void) {
    static const jg_case cases[] = {
        { "neg", 0, "f64[2,3]", "f64[2,3]", "-x", -1, 1, 0 },
        { "exp", 0, "f64[2,3]", "f64[2,3]", "exp(x)", -1, 1, 0 },
        { "log", 0, "f64[2,3]", "f64[2,3]", "log(x)", 0.5, 2, 0 },
        { "sqrt", 0, "f64[2,3]", "f64[2,3]", "sqrt(x)", 0.5, 2, 0 },
        { "rsqrt", 0, "f64[2,3]", "f64[2,3]", "rsqrt(x)", 0.5, 2, 0 },
        { "abs", 0, "f64[2,3]", "f64[2,3]", "abs(x)", 0.2, 1, 0 },
        { "abs of negatives", 0, "f64[2,3]", "f64[2,3]", "abs(x)", -1, -0.2, 0 },
        { "tanh", 0, "f64[2,3]", "f64[2,3]", "tanh(x)", -2, 2, 0 },
        { "sigmoid", 0, "f64[2,3]", "f64[2,3]", "sigmoid(x)", -3, 3, 0 },
        { "log1p", 0, "f64[2,3]", "f64[2,3]", "log1p(x)", -0.5, 2, 0 },
        { "softplus", 0, "f64[2,3]", "f64[2,3]", "softplus(x)", -3, 3, 0 },
        { "relu", 0, "f64[2,3]", "f64[2,3]", "relu(x)", -1, 1, 0 },
        { "leaky_relu", 0, "f64[2,3]", "f64[2,3]", "leaky_relu(x, 0.2)", -1, 1, 0 },
        { "recip", 0, "f64[2,3]", "f64[2,3]", "recip(x)", 0.5, 2, 0 },
        { "add, sub, mul, div", 0, "f64[2,3]", "f64[2,3]", "(x + 1.5) * x / (x * x + 2.0) - x", -1, 1, 0 },
        { "pow (both operands)", 0, "f64[2,3]", "f64[2,3]", "x ** x + pow(x, 3.0)", 0.5, 1.5, 0 },
        { "max, min (elementwise)", 0, "f64[2,3]", "f64[2,3]", "max(x, 0.1) + min(x * 2.0, -0.3)", -1, 1, 0 },
        { "where", 0, "f64[2,3]", "f64[2,3]", "where(x > 0, x * x, -x * 3.0)", -1, 1, 0 },
        { "clamp", 0, "f64[2,3]", "f64[2,3]", "clamp(x, -0.5, 0.5)", -1, 1, 0 },
        { "sum over an axis", 0, "f64[2,3,4]", "f64[2,4]", "sum(x * x, axis=1)", -1, 1, 0 },
        { "mean with keepdims", 0, "f64[2,3]", "f64[2,3]", "x - mean(x, axis=1, keepdims=true)", -1, 1, 0 },
        { "max reduction", 0, "f64[3,4]", "f64[3]", "max(x, axis=1)", -1, 1, 0 },
        { "min reduction", 0, "f64[3,4]", "f64[4]", "min(x, axis=0)", -1, 1, 0 },
        { "logsumexp", 0, "f64[3,4]", "f64[3]", "logsumexp(x * 3.0, axis=1)", -1, 1, 0 },
        { "softmax", 0, "f64[2,4]", "f64[2,4]", "softmax(x, axis=1)", -2, 2, 0 },
        { "log_softmax", 0, "f64[2,4]", "f64[2,4]", "log_softmax(x, axis=-1)", -2, 2, 0 },
        { "cross_entropy", 0, "f64[4,3]", "f64[]", "cross_entropy(x, y)", -2, 2, "y: i64[4]" },
        { "cross_entropy with smoothing", 0, "f64[4,3]", "f64[]", "cross_entropy(x, y, smoothing=0.2)", -2, 2, "y: i64[4]" },
        { "reshape and flatten", 0, "f64[2,3,2]", "f64[2,6]", "flatten(x) * reshape(x * x, [2, 6])", -1, 1, 0 },
        { "transpose and permute", 0, "f64[2,3,4]", "f64[4,2,3]", "permute(x, [2, 0, 1]) * transpose(transpose(permute(x, [2, 0, 1])))", -1, 1, 0 },
        { "broadcast", 0, "f64[3,1]", "f64[2,3,4]", "x + zeros([2, 3, 4], dtype=\"f64\") * x", -1, 1, 0 },
        { "slice and index", 0, "f64[4,3]", "f64[2]", "x[1:3, 2] * x[2, 1:3]", -1, 1, 0 },
        { "pad", 0, "f64[2,3]", "f64[4,6]", "pad(x, [1, 1, 2, 1], value=0.5)", -1, 1, 0 },
        { "concat", 0, "f64[2,3]", "f64[2,6]", "concat([x, x * x], axis=1)", -1, 1, 0 },
        { "gather rows (and its index_add gradient)", 0, "f64[3,2]", "f64[4,2]", "x[i]", -1, 1, "i: i64[4]" },
        { "matmul (left)", 0, "f64[2,3]", "f64[2,4]", "matmul(x, b)", -1, 1, "b: f64[3,4]" },
        { "matmul (right, batched left)", 0, "f64[3,4]", "f64[2,2,4]", "matmul(a, x)", -1, 1, "a: f64[2,2,3]" },
        { "linear", 0, "f64[3,4]", "f64[2,3]", "linear(a, x, b)", -1, 1, "a: f64[2,4], b: f64[3]" },
        { "conv2d input (stride 2, padding 1)", 0, "f64[2,2,5,5]", "f64[2,3,3,3]", "conv2d(x, k, stride=2, padding=1)", -1, 1, "k: f64[3,2,3,3]" },
        { "conv2d weight (dilation 2, groups 2)", 0, "f64[4,1,2,2]", "f64[1,4,2,2]", "conv2d(a, x, dilation=2, groups=2)", -1, 1, "a: f64[1,2,4,4]" },
        { "conv2d weight (stride 2, padding 1)", 0, "f64[3,2,3,3]", "f64[2,3,3,3]", "conv2d(a, x, stride=2, padding=1)", -1, 1, "a: f64[2,2,5,5]" },
        { "avg_pool2d", 0, "f64[1,2,4,4]", "f64[1,2,2,2]", "avg_pool2d(x, 2)", -1, 1, 0 },
        { "upsample x2 (the gradient sums each 2x2 block)", 0, "f64[2,2,3,2]", "f64[2,2,6,4]", "upsample(x, 2)", -1, 1, 0 },
        { "upsample x3 of a nonlinear input", 0, "f64[1,2,2,3]", "f64[1,2,6,9]", "upsample(x * x, scale=3)", -1, 1, 0 },
        { "upsample gradient, differentiated", 0, "f64[1,2,4,6]", "f64[1,2,2,3]",
          "grad(sum(upsample(a, 2) * x * x), a)", -1, 1, "a: f64[1,2,2,3]" },
        { "conv_transpose2d input (groups 2, stride 2, output_padding 1)", 0, "f64[1,4,3,3]", "f64[1,6,6,6]",
          "conv_transpose2d(x, k, stride=2, padding=1, output_padding=1, groups=2)", -1, 1, "k: f64[4,3,3,3]" },
        { "conv_transpose2d weight", 0, "f64[2,3,3,3]", "f64[2,3,5,5]", "conv_transpose2d(a, x, stride=2, padding=1)", -1, 1, "a: f64[2,2,3,3]" },
        { "batch_norm (training statistics)", "import \"graphs/lib/norm.graph\"\n", "f32[4,3,2,2]", "f32[4,3,2,2]",
          "batch_norm(x, 3, true) as bn", -1, 1, 0 },
        { "batch_norm (running statistics)", "import \"graphs/lib/norm.graph\"\n", "f32[4,3,2,2]", "f32[4,3,2,2]",
          "batch_norm(x, 3, false) as bn", -1, 1, 0 },
        { "group_norm", "import \"graphs/lib/norm.graph\"\n", "f32[2,4,2,3]", "f32[2,4,2,3]", "group_norm(x, 2, 4) as gn", -1, 1, 0 },
        { "avg_pool2d with padding", 0, "f64[1,1,4,4]", "f64[1,1,3,3]", "avg_pool2d(x, 2, stride=2, padding=1)", -1, 1, 0 },
        { "max_pool2d", 0, "f64[1,2,4,4]", "f64[1,2,2,2]", "max_pool2d(x, 2)", -1, 1, 0 },
        /* gradients of gradient ops (what double backward meets) */
        { "conv2d input-gradient, differentiated in the weight", 0, "f64[3,2,3,3]", "f64[2,2,5,5]",
          "grad(sum(conv2d(a, x, stride=2, padding=1) * d), a)", -1, 1, "a: f64[2,2,5,5], d: f64[2,3,3,3]" },
        { "conv2d input-gradient, differentiated in the output gradient", 0, "f64[2,3,3,3]", "f64[2,2,5,5]",
          "grad(sum(conv2d(a, k, stride=2, padding=1) * x), a)", -1, 1, "a: f64[2,2,5,5], k: f64[3,2,3,3]" },
        { "conv2d weight-gradient, differentiated in the input", 0, "f64[2,2,5,5]", "f64[3,2,3,3]",
          "grad(sum(conv2d(x, k, stride=2, padding=1) * d), k)", -1, 1, "k: f64[3,2,3,3], d: f64[2,3,3,3]" },
        { "avg_pool2d gradient, differentiated", 0, "f64[1,2,2,2]", "f64[1,2,4,4]",
          "grad(sum(avg_pool2d(a, 2) * x), a)", -1, 1, "a: f64[1,2,4,4]" },
        { "gather's gradient (index_add), differentiated", 0, "f64[4,2]", "f64[3,2]",
          "grad(sum(a[i] * x), a)", -1, 1, "a: f64[3,2], i: i64[4]" },
        { "gradient penalty ||d/da sum(tanh(a x))||^2, in x", 0, "f64[3,3]", "f64[]",
          "sum(grad(sum(tanh(matmul(a, x))), a) ** 2.0)", -1, 1, "a: f64[2,3]" },
    };
    int n = (int)(sizeof cases / sizeof cases[0]);
    for (int i = 0; i < n; i++) check_case(&cases[i]);
    /* the shape-generic cases again at random shapes (rank 1 to 4, dims 1 to 4) */
    char shapes[3][64];
    for (int r = 0; r < 3; r++) {
        int rank = 1 + (int)(urand() * 4);
        size_t used = (size_t)snprintf(shapes[r], sizeof shapes[r], "f64[");
        for (int k = 0; k < rank; k++) used += (size_t)snprintf(shapes[r] + used, sizeof shapes[r] - used, "%s%d", k ? "," : "", 1 + (int)(urand() * 4));
        snprintf(shapes[r] + used, sizeof shapes[r] - used, "]");
    }
    for (int i = 0; i < n; i++) {
        /* elementwise cases only: an axis-specific one may be meaningless at another rank */
        if (strcmp(cases[i].xtype, "f64[2,3]") != 0 || strcmp(cases[i].wtype, "f64[2,3]") != 0 || strstr(cases[i].expr, "axis")) continue;
        for (int r = 0; r < 3; r++) {
            jg_case c = cases[i];
            char name[320];
            snprintf(name, sizeof name, "%s at %s", cases[i].name, shapes[r]);
            c.name = name;
            c.xtype = c.wtype = shapes[r];
            check_case(&c);
        }
    }
    /* a detached sampler's samples are constants: d/dx sum(x * detach(s(x))) = s(x) = x / 4 */
    jt_unit u;
    jt_load(&u, "sampler s(x, steps=2) {\n    x = x * 0.5\n}\nprogram g(x: f64[3]) {\n    output gx = grad(sum(x * detach(s(x))), x)\n}\n");
    int good = u.m && jm_autodiff(u.m, &u.d) == 0;
    if (good) {
        jm_tensor in, out;
        char err[1024];
        jm_tensor_alloc(&in, &u.m->graphs[u.m->programs[0].graph].node[0].type);
        in.data[0] = 1; in.data[1] = -2; in.data[2] = 4;
        good = run_prog(u.m, "g", &in, &out, err) == 0 && out.data[0] == 0.25 && out.data[1] == -0.5 && out.data[2] == 1;
        if (good) jm_tensor_free(&out);
        jm_tensor_free(&in);
    }
    ok(good, "a detached sampler's samples are constants for grad");
    jt_unload(&u);
    return tap_done();
}
