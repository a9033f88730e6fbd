/* interp.c — see interp.h. One function per op family; loops over row-major
 * indices with explicit strides. Reductions accumulate in a fixed order. */
#include "interp.h"
#include "engine/philox.h"
#include "engine/rt_extern.h"
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

void jm_tensor_free(jm_tensor *t) { free(t->data); t->data = NULL; }

int jm_tensor_alloc(jm_tensor *t, const jm_type *type) {
    t->type = *type;
    int64_t n = jm_type_numel(type);
    t->data = calloc((size_t)(n > 0 ? n : 1), sizeof(double));
    return t->data ? 0 : -1;
}

static void jm_strides(const jm_type *t, int64_t *st) {
    int64_t s = 1;
    for (int i = t->rank - 1; i >= 0; i--) { st[i] = s; s *= t->dim[i]; }
}

/* Converts a flat index to coordinates. */
static void jm_unravel(int64_t flat, const jm_type *t, int64_t *coord) {
    for (int i = t->rank - 1; i >= 0; i--) {
        int64_t d = t->dim[i] ? t->dim[i] : 1;
        coord[i] = flat % d;
        flat /= d;
    }
}

typedef struct {
    jm_interp *I;
    jm_tensor *val;              /* per node */
    const jm_tensor *args;       /* LOOP_ARG values (bodies) */
    uint32_t iteration;          /* flat iteration of the enclosing loops, for random draws */
    const jm_tensor *inputs;     /* program inputs */
    jm_tensor **tuples;          /* LOOP results per node */
} jm_frame;

static int jm_fail(jm_interp *I, const jm_node *n, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char msg[800];
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    snprintf(I->err, sizeof I->err, "%s (op %s)", msg, n ? jm_ops[n->op].name : "?");
    return -1;
}

static double jm_sigmoid(double x) { return x >= 0 ? 1 / (1 + exp(-x)) : exp(x) / (1 + exp(x)); }
static double jm_softplus(double x) { return x > 0 ? x + log1p(exp(-x)) : log1p(exp(x)); }

static int jm_eval_unary(jm_node *n, const jm_tensor *a, jm_tensor *o) {
    int64_t N = jm_type_numel(&o->type);
    const double *x = a->data;
    double *y = o->data;
    double slope = n->attr.f[0];
    for (int64_t i = 0; i < N; i++) {
        double v = x[i];
        switch (n->op) {
        case JM_OP_NEG: v = -v; break;
        case JM_OP_EXP: v = exp(v); break;
        case JM_OP_LOG: v = log(v); break;
        case JM_OP_SQRT: v = sqrt(v); break;
        case JM_OP_RSQRT: v = 1 / sqrt(v); break;
        case JM_OP_ABS: v = fabs(v); break;
        case JM_OP_TANH: v = tanh(v); break;
        case JM_OP_SIGMOID: v = jm_sigmoid(v); break;
        case JM_OP_LOG1P: v = log1p(v); break;
        case JM_OP_SOFTPLUS: v = jm_softplus(v); break;
        case JM_OP_RELU: v = v > 0 ? v : 0; break;
        case JM_OP_LEAKY_RELU: v = v > 0 ? v : v * slope; break;
        case JM_OP_RECIP: v = 1 / v; break;
        case JM_OP_NOT: v = v == 0; break;
        case JM_OP_STOP_GRAD: break;
        case JM_OP_CAST:
            switch ((jm_dtype)n->attr.k) {
            case JM_F32: v = (double)(float)v; break;
            case JM_I32: case JM_I64:
                /* float -> int truncates toward zero, as C and PyTorch do */
                v = isfinite(v) ? trunc(v) : 0; break;
            case JM_BOOL: v = v != 0; break;
            default: break;
            }
            break;
        default: return -1;
        }
        y[i] = v;
    }
    return 0;
}

static int jm_eval_binary(jm_node *n, const jm_tensor *a, const jm_tensor *b, jm_tensor *o) {
    int64_t N = jm_type_numel(&o->type);
    int is_int = jm_dtype_is_int(a->type.dtype);
    for (int64_t i = 0; i < N; i++) {
        double x = a->data[i], y = b->data[i], v;
        switch (n->op) {
        case JM_OP_ADD: v = x + y; break;
        case JM_OP_SUB: v = x - y; break;
        case JM_OP_MUL: v = x * y; break;
        case JM_OP_DIV:
            /* integer division truncates; division by zero gives 0 for integers */
            v = is_int ? (y != 0 ? trunc(x / y) : 0) : x / y; break;
        case JM_OP_POW: v = pow(x, y); break;
        case JM_OP_MAX: v = (x > y || isnan(x)) ? x : y; break;    /* NaN propagates, as in PyTorch */
        case JM_OP_MIN: v = (x < y || isnan(x)) ? x : y; break;
        case JM_OP_LT: v = x < y; break;
        case JM_OP_LE: v = x <= y; break;
        case JM_OP_GT: v = x > y; break;
        case JM_OP_GE: v = x >= y; break;
        case JM_OP_EQ: v = x == y; break;
        case JM_OP_NE: v = x != y; break;
        case JM_OP_AND: v = x != 0 && y != 0; break;
        case JM_OP_OR: v = x != 0 || y != 0; break;
        default: return -1;
        }
        if (n->type.dtype == JM_I32) v = (double)(int32_t)(int64_t)v;
        o->data[i] = v;
    }
    return 0;
}

static void jm_eval_broadcast(const jm_tensor *a, jm_tensor *o) {
    int64_t N = jm_type_numel(&o->type), ast[JM_MAX_RANK], coord[JM_MAX_RANK];
    jm_strides(&a->type, ast);
    int off = o->type.rank - a->type.rank;
    for (int64_t i = 0; i < N; i++) {
        jm_unravel(i, &o->type, coord);
        int64_t src = 0;
        for (int k = 0; k < a->type.rank; k++)
            src += (a->type.dim[k] == 1 ? 0 : coord[k + off]) * ast[k];
        o->data[i] = a->data[src];
    }
}

/* Reductions: SUM, RMAX, LOGSUMEXP over attr.i axes. Output element j collects
   input elements in increasing flat order (a fixed order). */
static void jm_eval_reduce(jm_node *n, const jm_tensor *a, jm_tensor *o) {
    int64_t N = jm_type_numel(&a->type), M = jm_type_numel(&o->type), coord[JM_MAX_RANK];
    int drop[JM_MAX_RANK] = { 0 };
    for (int i = 0; i < n->attr.ni; i++) drop[n->attr.i[i]] = 1;
    int64_t *map = malloc(sizeof(int64_t) * (size_t)(N ? N : 1));
    for (int64_t i = 0; i < N; i++) {
        jm_unravel(i, &a->type, coord);
        int64_t j = 0;
        for (int k = 0; k < a->type.rank; k++)
            if (!drop[k]) j = j * a->type.dim[k] + coord[k];
        map[i] = j;
    }
    if (n->op == JM_OP_SUM) {
        for (int64_t j = 0; j < M; j++) o->data[j] = 0;
        for (int64_t i = 0; i < N; i++) o->data[map[i]] += a->data[i];
    } else {
        double *mx = malloc(sizeof(double) * (size_t)(M ? M : 1));
        for (int64_t j = 0; j < M; j++) mx[j] = -INFINITY;
        for (int64_t i = 0; i < N; i++) {
            double v = a->data[i];
            if (v > mx[map[i]] || isnan(v)) mx[map[i]] = v;
        }
        if (n->op == JM_OP_RMAX) {
            memcpy(o->data, mx, sizeof(double) * (size_t)M);
        } else {
            /* logsumexp = m + log(sum exp(x - m)), with m = max; all -inf stays -inf */
            for (int64_t j = 0; j < M; j++) o->data[j] = 0;
            for (int64_t i = 0; i < N; i++) {
                double m = mx[map[i]];
                o->data[map[i]] += isinf(m) ? (m < 0 ? 0 : 1) : exp(a->data[i] - m);
            }
            for (int64_t j = 0; j < M; j++)
                o->data[j] = isinf(mx[j]) ? mx[j] : mx[j] + log(o->data[j]);
        }
        free(mx);
    }
    free(map);
}

static void jm_eval_softmax(jm_node *n, const jm_tensor *a, jm_tensor *o) {
    int ax = n->attr.k;
    int64_t outer = 1, inner = 1, len = a->type.dim[ax];
    for (int i = 0; i < ax; i++) outer *= a->type.dim[i];
    for (int i = ax + 1; i < a->type.rank; i++) inner *= a->type.dim[i];
    for (int64_t p = 0; p < outer; p++)
        for (int64_t q = 0; q < inner; q++) {
            const double *x = a->data + p * len * inner + q;
            double *y = o->data + p * len * inner + q;
            double m = -INFINITY, s = 0;
            for (int64_t k = 0; k < len; k++) if (x[k * inner] > m) m = x[k * inner];
            for (int64_t k = 0; k < len; k++) s += exp(x[k * inner] - m);
            for (int64_t k = 0; k < len; k++)
                y[k * inner] = n->op == JM_OP_SOFTMAX ? exp(x[k * inner] - m) / s : x[k * inner] - m - log(s);
        }
}

static int jm_eval_cross_entropy(jm_interp *I, jm_node *n, const jm_tensor *l, const jm_tensor *y, jm_tensor *o) {
    int64_t N = l->type.dim[0], C = l->type.dim[1];
    double eps = n->attr.f[0], total = 0;
    for (int64_t r = 0; r < N; r++) {
        const double *x = l->data + r * C;
        double lab = y->data[r];
        if (!(lab >= 0 && lab < (double)C)) return jm_fail(I, n, "label %g at row %" PRId64 " is out of range [0, %" PRId64 ")", lab, r, C);
        double m = -INFINITY, s = 0, mean_logp = 0;
        for (int64_t k = 0; k < C; k++) if (x[k] > m) m = x[k];
        for (int64_t k = 0; k < C; k++) s += exp(x[k] - m);
        double lse = m + log(s);
        for (int64_t k = 0; k < C; k++) mean_logp += x[k] - lse;
        mean_logp /= (double)C;
        /* label smoothing as in PyTorch: (1 - eps) * NLL + eps * mean over classes of -log p */
        total += -(1 - eps) * (x[(int64_t)lab] - lse) - eps * mean_logp;
    }
    o->data[0] = N ? total / (double)N : NAN;
    return 0;
}

static void jm_eval_matmul(const jm_tensor *a, const jm_tensor *b, jm_tensor *o) {
    int ra = a->type.rank, rb = b->type.rank;
    int64_t M = a->type.dim[ra - 2], K = a->type.dim[ra - 1], Nn = b->type.dim[rb - 1];
    int64_t batch = 1;
    for (int i = 0; i < ra - 2; i++) batch *= a->type.dim[i];
    for (int64_t bt = 0; bt < batch; bt++) {
        const double *A = a->data + bt * M * K;
        const double *B = b->data + (rb > 2 ? bt * K * Nn : 0);
        double *C = o->data + bt * M * Nn;
        for (int64_t i = 0; i < M; i++)
            for (int64_t j = 0; j < Nn; j++) {
                double s = 0;
                for (int64_t k = 0; k < K; k++) s += A[i * K + k] * B[k * Nn + j];
                C[i * Nn + j] = s;
            }
    }
}

static void jm_eval_conv2d(jm_node *n, const jm_tensor *x, const jm_tensor *w, jm_tensor *o) {
    const int64_t *at = n->attr.i;
    int64_t N = x->type.dim[0], C = x->type.dim[1], H = x->type.dim[2], W = x->type.dim[3];
    int64_t O = w->type.dim[0], CG = w->type.dim[1], KH = w->type.dim[2], KW = w->type.dim[3];
    int64_t OH = o->type.dim[2], OW = o->type.dim[3], G = at[6], OG = O / G;
    (void)C;
    for (int64_t b = 0; b < N; b++)
        for (int64_t oc = 0; oc < O; oc++) {
            int64_t g = oc / OG;
            for (int64_t oy = 0; oy < OH; oy++)
                for (int64_t ox = 0; ox < OW; ox++) {
                    double s = 0;
                    for (int64_t ic = 0; ic < CG; ic++) {
                        const double *xp = x->data + ((b * x->type.dim[1] + g * CG + ic) * H) * W;
                        const double *wp = w->data + ((oc * CG + ic) * KH) * KW;
                        for (int64_t ky = 0; ky < KH; ky++) {
                            int64_t iy = oy * at[0] - at[2] + ky * at[4];
                            if (iy < 0 || iy >= H) continue;
                            for (int64_t kx = 0; kx < KW; kx++) {
                                int64_t ix = ox * at[1] - at[3] + kx * at[5];
                                if (ix < 0 || ix >= W) continue;
                                s += xp[iy * W + ix] * wp[ky * KW + kx];
                            }
                        }
                    }
                    o->data[((b * O + oc) * OH + oy) * OW + ox] = s;
                }
        }
}

static void jm_eval_conv2d_bwd_data(jm_node *n, const jm_tensor *dy, const jm_tensor *w, jm_tensor *o) {
    const int64_t *at = n->attr.i;
    int64_t N = dy->type.dim[0], O = dy->type.dim[1], OH = dy->type.dim[2], OW = dy->type.dim[3];
    int64_t CG = w->type.dim[1], KH = w->type.dim[2], KW = w->type.dim[3], C = o->type.dim[1];
    int64_t H = o->type.dim[2], W = o->type.dim[3], OG = O / at[6];
    for (int64_t i = 0; i < jm_type_numel(&o->type); i++) o->data[i] = 0;
    for (int64_t b = 0; b < N; b++)
        for (int64_t oc = 0; oc < O; oc++) {
            int64_t g = oc / OG;
            for (int64_t oy = 0; oy < OH; oy++)
                for (int64_t ox = 0; ox < OW; ox++) {
                    double v = dy->data[((b * O + oc) * OH + oy) * OW + ox];
                    for (int64_t ic = 0; ic < CG; ic++)
                        for (int64_t ky = 0; ky < KH; ky++) {
                            int64_t iy = oy * at[0] - at[2] + ky * at[4];
                            if (iy < 0 || iy >= H) continue;
                            for (int64_t kx = 0; kx < KW; kx++) {
                                int64_t ix = ox * at[1] - at[3] + kx * at[5];
                                if (ix < 0 || ix >= W) continue;
                                o->data[((b * C + g * CG + ic) * H + iy) * W + ix] += v * w->data[((oc * CG + ic) * KH + ky) * KW + kx];
                            }
                        }
                }
        }
}

static void jm_eval_conv2d_bwd_filter(jm_node *n, const jm_tensor *x, const jm_tensor *dy, jm_tensor *o) {
    const int64_t *at = n->attr.i;
    int64_t N = x->type.dim[0], C = x->type.dim[1], H = x->type.dim[2], W = x->type.dim[3];
    int64_t O = dy->type.dim[1], OH = dy->type.dim[2], OW = dy->type.dim[3];
    int64_t CG = o->type.dim[1], KH = o->type.dim[2], KW = o->type.dim[3], OG = O / at[6];
    for (int64_t oc = 0; oc < O; oc++) {
        int64_t g = oc / OG;
        for (int64_t ic = 0; ic < CG; ic++)
            for (int64_t ky = 0; ky < KH; ky++)
                for (int64_t kx = 0; kx < KW; kx++) {
                    double s = 0;
                    for (int64_t b = 0; b < N; b++)
                        for (int64_t oy = 0; oy < OH; oy++) {
                            int64_t iy = oy * at[0] - at[2] + ky * at[4];
                            if (iy < 0 || iy >= H) continue;
                            for (int64_t ox = 0; ox < OW; ox++) {
                                int64_t ix = ox * at[1] - at[3] + kx * at[5];
                                if (ix < 0 || ix >= W) continue;
                                s += x->data[((b * C + g * CG + ic) * H + iy) * W + ix] * dy->data[((b * O + oc) * OH + oy) * OW + ox];
                            }
                        }
                    o->data[((oc * CG + ic) * KH + ky) * KW + kx] = s;
                }
    }
}

/* Pooling gradients: average pooling spreads dy evenly over the window (padding
   counted, as in the forward); max pooling sends it to the first maximum. */
static void jm_eval_pool_bwd(jm_node *n, jm_tensor *const *s, jm_tensor *o) {
    const int64_t *at = n->attr.i;
    const jm_tensor *dy = s[n->nsrc - 1], *x = n->nsrc == 2 ? s[0] : NULL;
    int64_t NC = o->type.dim[0] * o->type.dim[1], H = o->type.dim[2], W = o->type.dim[3];
    int64_t OH = dy->type.dim[2], OW = dy->type.dim[3];
    for (int64_t i = 0; i < jm_type_numel(&o->type); i++) o->data[i] = 0;
    for (int64_t c = 0; c < NC; c++)
        for (int64_t oy = 0; oy < OH; oy++)
            for (int64_t ox = 0; ox < OW; ox++) {
                double v = dy->data[(c * OH + oy) * OW + ox], m = -INFINITY;
                int64_t best = -1;
                for (int64_t ky = 0; ky < at[0]; ky++)
                    for (int64_t kx = 0; kx < at[1]; kx++) {
                        int64_t iy = oy * at[2] - at[4] + ky, ix = ox * at[3] - at[5] + kx;
                        if (iy < 0 || iy >= H || ix < 0 || ix >= W) continue;
                        int64_t at_i = (c * H + iy) * W + ix;
                        if (!x) o->data[at_i] += v / (double)(at[0] * at[1]);
                        else if (x->data[at_i] > m || (best < 0 && isnan(x->data[at_i]))) { m = x->data[at_i]; best = at_i; }
                    }
                if (x && best >= 0) o->data[best] += v;
            }
}

/* Average pooling counts padded positions (PyTorch's count_include_pad=True);
   max pooling ignores them. */
static void jm_eval_pool(jm_node *n, const jm_tensor *x, jm_tensor *o) {
    const int64_t *at = n->attr.i;
    int64_t NC = x->type.dim[0] * x->type.dim[1], H = x->type.dim[2], W = x->type.dim[3];
    int64_t OH = o->type.dim[2], OW = o->type.dim[3];
    for (int64_t c = 0; c < NC; c++)
        for (int64_t oy = 0; oy < OH; oy++)
            for (int64_t ox = 0; ox < OW; ox++) {
                double s = 0, m = -INFINITY;
                for (int64_t ky = 0; ky < at[0]; ky++)
                    for (int64_t kx = 0; kx < at[1]; kx++) {
                        int64_t iy = oy * at[2] - at[4] + ky, ix = ox * at[3] - at[5] + kx;
                        if (iy < 0 || iy >= H || ix < 0 || ix >= W) continue;
                        double v = x->data[(c * H + iy) * W + ix];
                        s += v;
                        if (v > m || isnan(v)) m = v;
                    }
                o->data[(c * OH + oy) * OW + ox] = n->op == JM_OP_AVGPOOL2D ? s / (double)(at[0] * at[1]) : m;
            }
}

static void jm_eval_permute(jm_node *n, const jm_tensor *a, jm_tensor *o) {
    int64_t N = jm_type_numel(&o->type), ast[JM_MAX_RANK], coord[JM_MAX_RANK];
    jm_strides(&a->type, ast);
    for (int64_t i = 0; i < N; i++) {
        jm_unravel(i, &o->type, coord);
        int64_t src = 0;
        for (int k = 0; k < o->type.rank; k++) src += coord[k] * ast[n->attr.i[k]];
        o->data[i] = a->data[src];
    }
}

static void jm_eval_slice(jm_node *n, const jm_tensor *a, jm_tensor *o) {
    int64_t N = jm_type_numel(&o->type), ast[JM_MAX_RANK], coord[JM_MAX_RANK];
    jm_strides(&a->type, ast);
    for (int64_t i = 0; i < N; i++) {
        jm_unravel(i, &o->type, coord);
        int64_t src = 0;
        for (int k = 0; k < o->type.rank; k++) src += (n->attr.i[3 * k] + coord[k] * n->attr.i[3 * k + 2]) * ast[k];
        o->data[i] = a->data[src];
    }
}

static void jm_eval_pad(jm_node *n, const jm_tensor *a, jm_tensor *o) {
    int64_t N = jm_type_numel(&o->type), ast[JM_MAX_RANK], coord[JM_MAX_RANK];
    jm_strides(&a->type, ast);
    for (int64_t i = 0; i < N; i++) {
        jm_unravel(i, &o->type, coord);
        int64_t src = 0;
        int inside = 1;
        for (int k = 0; k < o->type.rank; k++) {
            int64_t c = coord[k] - n->attr.i[2 * k];
            if (c < 0 || c >= a->type.dim[k]) { inside = 0; break; }
            src += c * ast[k];
        }
        o->data[i] = inside ? a->data[src] : n->attr.f[0];
    }
}

static void jm_eval_concat(jm_node *n, jm_tensor *const *srcs, jm_tensor *o) {
    int ax = n->attr.k;
    int64_t outer = 1, inner = 1;
    for (int i = 0; i < ax; i++) outer *= o->type.dim[i];
    for (int i = ax + 1; i < o->type.rank; i++) inner *= o->type.dim[i];
    int64_t off = 0, row = o->type.dim[ax] * inner;
    for (int s = 0; s < n->nsrc; s++) {
        int64_t len = srcs[s]->type.dim[ax] * inner;
        for (int64_t p = 0; p < outer; p++)
            memcpy(o->data + p * row + off, srcs[s]->data + p * len, sizeof(double) * (size_t)len);
        off += len;
    }
}

static int jm_eval_rows(jm_interp *I, jm_node *n, jm_tensor *const *s, jm_tensor *o) {
    const jm_tensor *a = s[0], *ix = s[1];
    int64_t rows = a->type.dim[0], row = rows ? jm_type_numel(&a->type) / rows : 0, k = ix->type.dim[0];
    if (n->op != JM_OP_GATHER) memcpy(o->data, a->data, sizeof(double) * (size_t)jm_type_numel(&a->type));
    for (int64_t r = 0; r < k; r++) {
        double v = ix->data[r];
        if (!(v >= 0 && v < (double)rows))
            return jm_fail(I, n, "row index %g at position %" PRId64 " is out of range [0, %" PRId64 ")", v, r, rows);
        int64_t j = (int64_t)v;
        /* scatter: rows are written in index order, so a repeated index keeps the last */
        if (n->op == JM_OP_GATHER) memcpy(o->data + r * row, a->data + j * row, sizeof(double) * (size_t)row);
        else if (n->op == JM_OP_SCATTER) memcpy(o->data + j * row, s[2]->data + r * row, sizeof(double) * (size_t)row);
        else for (int64_t q = 0; q < row; q++) o->data[j * row + q] += s[2]->data[r * row + q];   /* index_add */
    }
    return 0;
}

static int jm_eval_graph(jm_interp *I, int g, jm_frame *F);

/* A loop's trip count: its attribute, or the value of its knob (a config
   constant the runtime may change), never below 0. */
static int64_t jm_loop_trips(jm_interp *I, const jm_node *n) {
    if (n->attr.ni > 2 && n->attr.i[2] > 0) {
        double v = I->globals[n->attr.i[2] - 1].data[0];
        return v > 0 ? (int64_t)v : 0;
    }
    return n->attr.i[1];
}

static int jm_eval_loop(jm_interp *I, jm_node *n, jm_frame *F, int id) {
    jm_module *m = I->m;
    int body = (int)n->attr.i[0], k = n->attr.k;
    int64_t trips = jm_loop_trips(I, n);
    if (trips > 0 && F->iteration > UINT32_MAX / (uint64_t)trips)
        return jm_fail(I, n, "nested loops run more than 2^32 iterations");
    jm_tensor *args = calloc((size_t)n->nsrc, sizeof *args);
    for (int i = 0; i < n->nsrc; i++) {
        const jm_tensor *s = &F->val[n->src[i]];
        if (jm_tensor_alloc(&args[i], &s->type)) return jm_fail(I, n, "out of memory");
        memcpy(args[i].data, s->data, sizeof(double) * (size_t)jm_type_numel(&s->type));
    }
    int rc = 0;
    for (int64_t t = 0; t < trips && rc == 0; t++) {
        jm_graph *bg = &m->graphs[body];
        jm_frame B = { I, calloc((size_t)(bg->nnode ? bg->nnode : 1), sizeof(jm_tensor)), args,
                       (uint32_t)(F->iteration * (uint64_t)trips + (uint64_t)t), NULL,
                       calloc((size_t)(bg->nnode ? bg->nnode : 1), sizeof(jm_tensor *)) };
        rc = jm_eval_graph(I, body, &B);
        if (rc == 0)
            for (int i = 0; i < k; i++) {
                jm_tensor *r = &B.val[bg->results[i]];
                memcpy(args[i].data, r->data, sizeof(double) * (size_t)jm_type_numel(&r->type));
            }
        for (int i = 0; i < bg->nnode; i++) {
            jm_tensor_free(&B.val[i]);
            if (B.tuples[i]) {
                for (int j = 0; j < bg->node[i].attr.k; j++) jm_tensor_free(&B.tuples[i][j]);
                free(B.tuples[i]);
            }
        }
        free(B.val);
        free(B.tuples);
    }
    for (int i = k; i < n->nsrc; i++) jm_tensor_free(&args[i]);
    if (rc) {
        for (int i = 0; i < k; i++) jm_tensor_free(&args[i]);
        free(args);
        return rc;
    }
    F->tuples[id] = args;                /* the first k entries are the results */
    return 0;
}

static int jm_eval_rng(jm_interp *I, jm_node *n, jm_tensor *o, uint32_t it) {
    int64_t N = jm_type_numel(&o->type);
    if (N > (int64_t)UINT32_MAX) return jm_fail(I, n, "random draws are limited to 2^32 elements per tensor");
    uint32_t stream = (uint32_t)n->attr.i[0];
    double a = n->attr.f[0], b = n->attr.f[1];
    for (int64_t i = 0; i < N; i++) {
        double v;
        switch (n->op) {
        case JM_OP_RNG_UNIFORM: v = a + (b - a) * jm_philox_uniform((uint32_t)i, it, stream, I->call, I->seed); break;
        case JM_OP_RNG_NORMAL:   /* float32 draws: float32 Box-Muller, as every backend (philox_core.h) */
            v = a + b * (o->type.dtype == JM_F32 ? (double)jm_philox_normal_f32((uint32_t)i, it, stream, I->call, I->seed)
                                                 : jm_philox_normal((uint32_t)i, it, stream, I->call, I->seed));
            break;
        case JM_OP_RNG_RANDINT: {
            double u = jm_philox_uniform((uint32_t)i, it, stream, I->call, I->seed);
            v = floor(a + (b - a) * u);
            if (v >= b) v = b - 1;
            break;
        }
        default: v = jm_philox_uniform((uint32_t)i, it, stream, I->call, I->seed) < a; break;
        }
        o->data[i] = v;
    }
    return 0;
}

/* ---- kernels named in ops.def: one signature for all ---------------------- */

#define JM_KERNEL(name) static int jm_run_##name(jm_interp *I, jm_node *n, jm_tensor **s, jm_tensor *o, jm_frame *F, int id)
#define JM_NUMEL (jm_type_numel(&n->type))

JM_KERNEL(const) { for (int64_t i = 0; i < JM_NUMEL; i++) o->data[i] = n->attr.f[0]; return 0; }
JM_KERNEL(input) { memcpy(o->data, F->inputs[n->attr.i[0]].data, sizeof(double) * (size_t)JM_NUMEL); return 0; }
JM_KERNEL(global) { memcpy(o->data, I->globals[n->attr.i[0]].data, sizeof(double) * (size_t)JM_NUMEL); return 0; }
JM_KERNEL(loop_arg) { memcpy(o->data, F->args[n->attr.k].data, sizeof(double) * (size_t)JM_NUMEL); return 0; }
JM_KERNEL(unary) { return jm_eval_unary(n, s[0], o); }
JM_KERNEL(binary) { return jm_eval_binary(n, s[0], s[1], o); }
JM_KERNEL(where) {
    for (int64_t i = 0; i < JM_NUMEL; i++) o->data[i] = s[0]->data[i] != 0 ? s[1]->data[i] : s[2]->data[i];
    return 0;
}
JM_KERNEL(reduce) { jm_eval_reduce(n, s[0], o); return 0; }
JM_KERNEL(copy) { memcpy(o->data, s[0]->data, sizeof(double) * (size_t)JM_NUMEL); return 0; }
JM_KERNEL(permute) { jm_eval_permute(n, s[0], o); return 0; }
JM_KERNEL(broadcast) { jm_eval_broadcast(s[0], o); return 0; }
JM_KERNEL(slice) { jm_eval_slice(n, s[0], o); return 0; }
JM_KERNEL(pad) { jm_eval_pad(n, s[0], o); return 0; }
JM_KERNEL(concat) {
    jm_tensor **all = malloc(sizeof(jm_tensor *) * (size_t)n->nsrc);
    for (int i = 0; i < n->nsrc; i++) all[i] = &F->val[n->src[i]];
    jm_eval_concat(n, all, o);
    free(all);
    return 0;
}
JM_KERNEL(rows) { return jm_eval_rows(I, n, s, o); }
JM_KERNEL(onehot) {
    int64_t C = n->attr.k, M = jm_type_numel(&s[0]->type);
    for (int64_t r = 0; r < M; r++) {
        double v = s[0]->data[r];
        if (!(v >= 0 && v < (double)C)) return jm_fail(I, n, "label %g at position %" PRId64 " is out of range [0, %" PRId64 ")", v, r, C);
        o->data[r * C + (int64_t)v] = 1;
    }
    return 0;
}
JM_KERNEL(matmul) { jm_eval_matmul(s[0], s[1], o); return 0; }
JM_KERNEL(conv2d) { jm_eval_conv2d(n, s[0], s[1], o); return 0; }
JM_KERNEL(pool) { jm_eval_pool(n, s[0], o); return 0; }
JM_KERNEL(conv2d_bwd_data) { jm_eval_conv2d_bwd_data(n, s[0], s[1], o); return 0; }
JM_KERNEL(conv2d_bwd_filter) { jm_eval_conv2d_bwd_filter(n, s[0], s[1], o); return 0; }
JM_KERNEL(pool_bwd) { jm_eval_pool_bwd(n, s, o); return 0; }
JM_KERNEL(softmax) { jm_eval_softmax(n, s[0], o); return 0; }
JM_KERNEL(cross_entropy) { return jm_eval_cross_entropy(I, n, s[0], s[1], o); }
JM_KERNEL(rng) { return jm_eval_rng(I, n, o, F->iteration); }
JM_KERNEL(loop) { return jm_eval_loop(I, n, F, id); }
JM_KERNEL(loop_out) {
    jm_tensor *t = &F->tuples[n->src[0]][n->attr.k];
    memcpy(o->data, t->data, sizeof(double) * (size_t)JM_NUMEL);
    return 0;
}
JM_KERNEL(grad) {
    return jm_fail(I, n, "internal error: grad(...) at line %d:%d reached the interpreter; run jm_autodiff first",
                   n->loc.line, n->loc.col);
}
/* A user's C function through libffi (runtime/engine/rt_extern.h): the values go out
   as doubles and are converted to the declared C types and back; the library is
   loaded at the first call. A failure to load is an error with nothing committed. */
JM_KERNEL(extern) {
    jm_module *m = I->m;
    int xi = (int)n->attr.i[0];
    if (xi < 0 || xi >= m->nexterns) return jm_fail(I, n, "internal error: extern %d of %d", xi, m->nexterns);
    if (!I->xfn && !(I->xfn = calloc((size_t)m->nexterns, sizeof *I->xfn))) return jm_fail(I, n, "out of memory");
    if (!I->xfn[xi]) {
        const jm_extern *x = &m->externs[xi];
        jm_textern tx;
        memset(&tx, 0, sizeof tx);
        tx.name = x->name;
        tx.library = x->library;
        tx.nparams = x->nparams;
        tx.params = calloc((size_t)x->nparams + 1, sizeof(jm_tdesc));
        if (!tx.params) return jm_fail(I, n, "out of memory");
        for (int i = 0; i <= x->nparams; i++) {
            const jm_type *t = i < x->nparams ? &x->params[i] : &x->ret;
            jm_tdesc *d = i < x->nparams ? &tx.params[i] : &tx.ret;
            d->name = "";
            d->dtype = (int32_t)t->dtype;          /* jm_rt_dtype has jm_dtype's values */
            d->rank = t->rank;
            for (int k = 0; k < t->rank; k++) d->dim[k] = t->dim[k];
        }
        I->xfn[xi] = jm_xfn_open(&tx, I->err, sizeof I->err);
        free(tx.params);
        if (!I->xfn[xi]) return -1;
    }
    const void **args = calloc((size_t)n->nsrc + 1, sizeof(void *));
    int64_t *dts = calloc((size_t)n->nsrc + 1, sizeof(int64_t));
    int rc = -1;
    if (!args || !dts) rc = jm_fail(I, n, "out of memory");
    else {
        for (int i = 0; i < n->nsrc; i++) { args[i] = F->val[n->src[i]].data; dts[i] = JM_DT_F64; }
        char err[600];
        rc = jm_xfn_call(I->xfn[xi], args, dts, o->data, JM_DT_F64, err, sizeof err);
        if (rc != 0) snprintf(I->err, sizeof I->err, "%s", err);
    }
    free(args);
    free(dts);
    return rc;
}

static int jm_eval_node(jm_interp *I, int g, int id, jm_frame *F) {
    jm_module *m = I->m;
    jm_node *n = &m->graphs[g].node[id];
    jm_tensor *o = &F->val[id];
    /* a loop's value is a tuple of tensors (F->tuples), not one tensor */
    if (n->op != JM_OP_LOOP && jm_tensor_alloc(o, &n->type))
        return jm_fail(I, n, "out of memory for %" PRId64 " elements", jm_type_numel(&n->type));
    jm_tensor *s[3] = { NULL, NULL, NULL };
    for (int i = 0; i < n->nsrc && i < 3; i++) s[i] = &F->val[n->src[i]];
    int rc = -1;
    switch (n->op) {
#define JM_OP(e, name, cls, arity, shape, interp, grad) case JM_OP_##e: rc = jm_run_##interp(I, n, s, o, F, id); break;
#include "ops.def"
#undef JM_OP
    case JM_OP_COUNT: break;
    }
    if (rc != 0 || n->op == JM_OP_LOOP) return rc;
    /* float32 semantics: each result is stored as a float */
    if (n->type.dtype == JM_F32)
        for (int64_t i = 0, N = JM_NUMEL; i < N; i++) o->data[i] = (double)(float)o->data[i];
    return 0;
}

static int jm_eval_graph(jm_interp *I, int g, jm_frame *F) {
    jm_graph *gr = &I->m->graphs[g];
    /* Free each value after its last use (results and loop tuples are kept). */
    int *last = malloc(sizeof(int) * (size_t)(gr->nnode ? gr->nnode : 1));
    for (int i = 0; i < gr->nnode; i++) last[i] = gr->nnode;       /* nnode = keep */
    for (int i = 0; i < gr->nnode; i++) {
        jm_node *n = &gr->node[i];
        for (int s = 0; s < n->nsrc; s++) last[n->src[s]] = i;
    }
    for (int r = 0; r < gr->nresults; r++) last[gr->results[r]] = gr->nnode;
    int rc = 0;
    for (int i = 0; i < gr->nnode && rc == 0; i++) {
        rc = jm_eval_node(I, g, i, F);
        if (rc) break;
        jm_node *n = &gr->node[i];
        for (int s = 0; s < n->nsrc; s++) {
            int src = n->src[s];
            if (last[src] == i && gr->node[src].op != JM_OP_LOOP) jm_tensor_free(&F->val[src]);
        }
    }
    free(last);
    return rc;
}

static void jm_init_global(jm_interp *I, int gi) {
    jm_global *g = &I->m->globals[gi];
    jm_tensor *t = &I->globals[gi];
    int64_t N = jm_type_numel(&g->type);
    for (int64_t i = 0; i < N; i++) {
        double v = 0;
        /* Initial values: stream = hash of the global's name (so adding a parameter
           changes no other's), call 0xFFFFFFFF (apart from every run-time draw). */
        uint32_t stream = jm_hash32(g->name, strlen(g->name), 0), call = 0xFFFFFFFFu;
        switch (g->init.kind) {
        case JM_INIT_NONE: case JM_INIT_ZEROS: v = 0; break;
        case JM_INIT_CONST: v = g->init.a; break;
        case JM_INIT_UNIFORM: v = g->init.a + (g->init.b - g->init.a) * jm_philox_uniform((uint32_t)i, 0, stream, call, I->seed); break;
        case JM_INIT_NORMAL: v = g->init.a + g->init.b * jm_philox_normal((uint32_t)i, 0, stream, call, I->seed); break;
        }
        if (g->type.dtype == JM_F32) v = (double)(float)v;
        else if (jm_dtype_is_int(g->type.dtype)) v = trunc(v);      /* integer state holds integers */
        else if (g->type.dtype == JM_BOOL) v = v != 0;
        t->data[i] = v;
    }
}

int jm_interp_init(jm_interp *I, jm_module *m, uint64_t seed) {
    memset(I, 0, sizeof *I);
    I->m = m;
    I->seed = seed;
    I->globals = calloc((size_t)(m->nglobals ? m->nglobals : 1), sizeof(jm_tensor));
    for (int i = 0; i < m->nglobals; i++) {
        if (jm_tensor_alloc(&I->globals[i], &m->globals[i].type)) {
            snprintf(I->err, sizeof I->err, "out of memory for '%s'", m->globals[i].name);
            return -1;
        }
        jm_init_global(I, i);
    }
    return 0;
}

void jm_interp_free(jm_interp *I) {
    if (I->xfn)
        for (int i = 0; i < I->m->nexterns; i++) jm_xfn_close(I->xfn[i]);
    free(I->xfn);
    I->xfn = NULL;
    if (I->globals)
        for (int i = 0; i < I->m->nglobals; i++) jm_tensor_free(&I->globals[i]);
    free(I->globals);
    I->globals = NULL;
}

int jm_interp_run(jm_interp *I, int p, const jm_tensor *inputs, jm_tensor **outputs) {
    jm_module *m = I->m;
    jm_program *pr = &m->programs[p];
    jm_graph *gr = &m->graphs[pr->graph];
    for (int i = 0; i < pr->ninputs; i++) {
        const jm_type *want = &gr->node[pr->inputs[i].node].type;
        if (!jm_type_equal(want, &inputs[i].type)) {
            char a[128], b[128];
            snprintf(I->err, sizeof I->err, "input '%s': expected %s, got %s", pr->inputs[i].name,
                     jm_type_str(want, a, sizeof a), jm_type_str(&inputs[i].type, b, sizeof b));
            return -1;
        }
    }
    jm_frame F = { I, calloc((size_t)(gr->nnode ? gr->nnode : 1), sizeof(jm_tensor)), NULL, 0, inputs,
                   calloc((size_t)(gr->nnode ? gr->nnode : 1), sizeof(jm_tensor *)) };
    /* Outputs and state writes must survive the last-use freeing. */
    jm_graph saved = *gr;
    int extra = pr->noutputs + pr->nwrites;
    int *keep = malloc(sizeof(int) * (size_t)(gr->nresults + extra + 1));
    if (gr->nresults) memcpy(keep, gr->results, sizeof(int) * (size_t)gr->nresults);
    for (int i = 0; i < pr->noutputs; i++) keep[gr->nresults + i] = pr->outputs[i].node;
    for (int i = 0; i < pr->nwrites; i++) keep[gr->nresults + pr->noutputs + i] = pr->writes[i].node;
    gr->results = keep;
    gr->nresults += extra;
    int rc = jm_eval_graph(I, pr->graph, &F);
    *gr = saved;
    free(keep);
    if (rc == 0) {
        *outputs = calloc((size_t)(pr->noutputs ? pr->noutputs : 1), sizeof(jm_tensor));
        for (int i = 0; i < pr->noutputs; i++) {
            jm_tensor *src = &F.val[pr->outputs[i].node];
            jm_tensor_alloc(&(*outputs)[i], &src->type);
            memcpy((*outputs)[i].data, src->data, sizeof(double) * (size_t)jm_type_numel(&src->type));
        }
        for (int i = 0; i < pr->nwrites; i++) {
            jm_tensor *src = &F.val[pr->writes[i].node];
            memcpy(I->globals[pr->writes[i].global].data, src->data, sizeof(double) * (size_t)jm_type_numel(&src->type));
        }
        I->call++;
    }
    for (int i = 0; i < gr->nnode; i++) {
        jm_tensor_free(&F.val[i]);
        if (F.tuples[i]) {
            for (int k = 0; k < gr->node[i].attr.k; k++) jm_tensor_free(&F.tuples[i][k]);
            free(F.tuples[i]);
        }
    }
    free(F.val);
    free(F.tuples);
    return rc;
}
