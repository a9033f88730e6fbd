/* builtins.c — the graph language's built-in functions. Each takes the
 * evaluated arguments of one call, checks them (reporting at the call's
 * location) and emits IR nodes, or folds compile-time numbers. */
#include "elab_int.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef jm_value (*jm_builtin_fn)(jm_args *A, int which);

/* ---- argument access ------------------------------------------------------- */

static jm_diags *jm_D(jm_args *A) { return A->c->E->d; }

/* The i-th argument: positional i, or keyword `name`, or NULL when absent. */
static jm_value *jm_arg(jm_args *A, int i, const char *name) {
    if (i >= 0 && i < A->npos) return &A->pos[i];
    for (int k = 0; k < A->nkw; k++)
        if (name && strcmp(A->kwname[k], name) == 0) { A->kw_used[k] = 1; return &A->kw[k]; }
    return NULL;
}

static jm_loc jm_arg_loc(jm_args *A, int i, const char *name) {
    if (i >= 0 && i < A->npos) return A->call->items[i]->loc;
    for (int k = 0; k < A->nkw; k++)
        if (name && strcmp(A->kwname[k], name) == 0) return A->kwloc[k];
    return A->call->loc;
}

/* Checks positional count and that every keyword is one of `names` (NULL-terminated). */
static int jm_check_arity(jm_args *A, int min, int max, const char *const *names) {
    const char *fn = A->call->str;
    if (A->npos > max) {
        jm_diag_error(jm_D(A), A->call->loc, "%s takes at most %d positional argument%s, got %d", fn, max, max == 1 ? "" : "s", A->npos);
        return -1;
    }
    for (int k = 0; k < A->nkw; k++) {
        int idx = -1, n = 0;
        for (; names && names[n]; n++) if (strcmp(names[n], A->kwname[k]) == 0) idx = n;
        if (idx < 0) {
            const char *best = jm_diag_closest(A->kwname[k], names, n);
            if (best) jm_diag_error(jm_D(A), A->kwloc[k], "%s has no argument '%s'; did you mean '%s'?", fn, A->kwname[k], best);
            else jm_diag_error(jm_D(A), A->kwloc[k], "%s has no argument '%s'", fn, A->kwname[k]);
            return -1;
        }
        if (idx < A->npos) {
            jm_diag_error(jm_D(A), A->kwloc[k], "%s: argument '%s' given twice", fn, A->kwname[k]);
            return -1;
        }
    }
    for (int i = 0; i < min; i++)
        if (!jm_arg(A, i, names ? names[i] : NULL)) {
            jm_diag_error(jm_D(A), A->call->loc, "%s takes %d argument%s, got %d: missing '%s'", fn, min, min == 1 ? "" : "s",
                          A->npos + A->nkw, names ? names[i] : "?");
            return -1;
        }
    return 0;
}

static int jm_tensor_arg(jm_args *A, int i, const char *name) {
    jm_value *v = jm_arg(A, i, name);
    char what[96];
    snprintf(what, sizeof what, "argument '%s' of %s", name, A->call->str);
    return jm_want_tensor(A->c, *v, jm_arg_loc(A, i, name), what);
}

static int jm_int_arg(jm_args *A, int i, const char *name, int64_t def, int64_t *out) {
    jm_value *v = jm_arg(A, i, name);
    if (!v) { *out = def; return 0; }
    char what[96];
    snprintf(what, sizeof what, "argument '%s' of %s", name, A->call->str);
    return jm_want_int(A->c, *v, jm_arg_loc(A, i, name), what, out);
}

static int jm_num_arg(jm_args *A, int i, const char *name, double def, double *out) {
    jm_value *v = jm_arg(A, i, name);
    if (!v) { *out = def; return 0; }
    char what[96];
    snprintf(what, sizeof what, "argument '%s' of %s", name, A->call->str);
    return jm_want_number(A->c, *v, jm_arg_loc(A, i, name), what, out);
}

/* An int or a [a, b] pair (conv strides, kernel sizes). */
static int jm_pair_arg(jm_args *A, int i, const char *name, int64_t def, int64_t out[2]) {
    jm_value *v = jm_arg(A, i, name);
    if (!v) { out[0] = out[1] = def; return 0; }
    jm_loc loc = jm_arg_loc(A, i, name);
    if (v->kind == JM_V_LIST) {
        if (v->nitems != 2) {
            jm_diag_error(jm_D(A), loc, "argument '%s' of %s must be an integer or a pair [h, w]", name, A->call->str);
            return -1;
        }
        for (int k = 0; k < 2; k++)
            if (jm_want_int(A->c, v->items[k], loc, name, &out[k]) != 0) return -1;
        return 0;
    }
    if (jm_want_int(A->c, *v, loc, name, &out[0]) != 0) return -1;
    out[1] = out[0];
    return 0;
}

static const jm_type *jm_node_type(jm_args *A, int node) { return &A->c->E->m->graphs[A->c->g].node[node].type; }

/* A shape given as a list of integers, or taken from a tensor ("like"). */
static int jm_shape_arg(jm_args *A, int i, const char *name, jm_type *out) {
    jm_value *v = jm_arg(A, i, name);
    jm_loc loc = jm_arg_loc(A, i, name);
    memset(out, 0, sizeof *out);
    out->dtype = JM_F32;
    if (v->kind == JM_V_TENSOR) {
        int n = jm_tensor_node(A->c, *v);
        if (n < 0) return -1;
        *out = *jm_node_type(A, n);
        return 0;
    }
    if (v->kind != JM_V_LIST) {
        jm_diag_error(jm_D(A), loc, "%s: '%s' must be a shape [d0, d1, ...] or a tensor to take the shape of, got %s",
                      A->call->str, name, jm_vkind_name(v->kind));
        return -1;
    }
    if (v->nitems > JM_MAX_RANK) {
        jm_diag_error(jm_D(A), loc, "%s: at most %d dimensions", A->call->str, JM_MAX_RANK);
        return -1;
    }
    out->rank = v->nitems;
    int64_t numel = 1;
    for (int k = 0; k < v->nitems; k++) {
        if (jm_want_int(A->c, v->items[k], loc, "a dimension", &out->dim[k]) != 0) return -1;
        if (out->dim[k] < 0) {
            jm_diag_error(jm_D(A), loc, "%s: dimension %d is negative (%lld)", A->call->str, k, (long long)out->dim[k]);
            return -1;
        }
        /* the same limit as declared types: 2^40 elements */
        if (out->dim[k] > 0 && numel > (INT64_C(1) << 40) / out->dim[k]) {
            jm_diag_error(jm_D(A), loc, "%s: the shape is too large (more than 2^40 elements)", A->call->str);
            return -1;
        }
        numel *= out->dim[k];
    }
    return 0;
}

/* Axis lists: none (all axes), an int, or a list; negative axes count from the end. */
static int jm_axes_arg(jm_args *A, int i, const char *name, int rank, jm_attr *at) {
    jm_value *v = jm_arg(A, i, name);
    jm_loc loc = jm_arg_loc(A, i, name);
    at->ni = 0;
    if (!v || v->kind == JM_V_NONE) {
        for (int k = 0; k < rank; k++) at->i[at->ni++] = k;
        return 0;
    }
    int n = v->kind == JM_V_LIST ? v->nitems : 1;
    if (n > rank) {
        jm_diag_error(jm_D(A), loc, "%s: %d axes given for a tensor of rank %d", A->call->str, n, rank);
        return -1;
    }
    int seen[JM_MAX_RANK] = { 0 };
    for (int k = 0; k < n; k++) {
        int64_t ax;
        if (jm_want_int(A->c, v->kind == JM_V_LIST ? v->items[k] : *v, loc, "an axis", &ax) != 0) return -1;
        if (ax < -rank || ax >= rank) {
            jm_diag_error(jm_D(A), loc, "%s: axis %lld is out of range for rank %d", A->call->str, (long long)ax, rank);
            return -1;
        }
        if (ax < 0) ax += rank;
        if (seen[ax]) { jm_diag_error(jm_D(A), loc, "%s: axis %lld given twice", A->call->str, (long long)ax); return -1; }
        seen[ax] = 1;
    }
    for (int k = 0; k < rank; k++) if (seen[k]) at->i[at->ni++] = k;
    return 0;
}

static jm_value jm_emit(jm_args *A, jm_op op, const int *src, int nsrc, const jm_attr *at, const jm_type *t) {
    return jm_v_tensor(A->c, jm_add(A->c, op, src, nsrc, at, t, A->call->loc));
}

static jm_attr jm_attr0(void) { jm_attr a; memset(&a, 0, sizeof a); return a; }

/* ---- elementwise ------------------------------------------------------------ */

static double jm_fold_unary(int which, double x) {
    switch (which) {
    case JM_OP_EXP: return exp(x);
    case JM_OP_LOG: return log(x);
    case JM_OP_SQRT: return sqrt(x);
    case JM_OP_RSQRT: return 1 / sqrt(x);
    case JM_OP_ABS: return fabs(x);
    case JM_OP_TANH: return tanh(x);
    case JM_OP_SIGMOID: return 1 / (1 + exp(-x));
    case JM_OP_LOG1P: return log1p(x);
    case JM_OP_SOFTPLUS: return x > 20 ? x : log1p(exp(x));
    case JM_OP_RELU: return x > 0 ? x : 0;
    case JM_OP_RECIP: return 1 / x;
    default: return x;
    }
}

static const char *const jm_names_x[] = { "x", NULL };

static jm_value jm_b_unary(jm_args *A, int which) {
    if (jm_check_arity(A, 1, 1, jm_names_x)) return jm_v_err();
    jm_value *v = jm_arg(A, 0, "x");
    if (v->kind == JM_V_INT || v->kind == JM_V_FLOAT) {
        double x = v->kind == JM_V_INT ? (double)v->i : v->f;
        if (which == JM_OP_ABS && v->kind == JM_V_INT) return jm_v_int(v->i < 0 ? -v->i : v->i);
        return jm_v_float(jm_fold_unary(which, x));
    }
    int x = jm_tensor_arg(A, 0, "x");
    if (x < 0) return jm_v_err();
    return jm_emit(A, (jm_op)which, &x, 1, NULL, NULL);
}

static jm_value jm_b_leaky_relu(jm_args *A, int which) {
    static const char *const names[] = { "x", "slope", NULL };
    if (jm_check_arity(A, 1, 2, names)) return jm_v_err();
    int x = jm_tensor_arg(A, 0, "x");
    jm_attr at = jm_attr0();
    if (x < 0 || jm_num_arg(A, 1, "slope", 0.01, &at.f[0])) return jm_v_err();
    return jm_emit(A, JM_OP_LEAKY_RELU, &x, 1, &at, NULL);
}

/* A number or tensor as a tensor node of type t (dtype converted, broadcast). */
static int jm_as_tensor(jm_args *A, jm_value v, const jm_type *t, jm_loc loc) {
    int id;
    if (v.kind == JM_V_TENSOR) {
        id = jm_tensor_node(A->c, v);
        if (id < 0) return -1;
        if (jm_node_type(A, id)->dtype != t->dtype) {
            jm_attr at;
            memset(&at, 0, sizeof at);
            at.k = t->dtype;
            id = jm_add(A->c, JM_OP_CAST, &id, 1, &at, NULL, loc);
        }
    } else {
        id = jm_const_node(A->c, v.kind == JM_V_FLOAT ? v.f : (double)v.i, t->dtype, loc);
    }
    return jm_broadcast_to(A->c, id, t, loc);
}

/* max(a, b) / min(a, b): elementwise (or on numbers); max(x, axis=...) reduces. */
static jm_value jm_b_reduce(jm_args *A, int which);

static jm_value jm_b_minmax(jm_args *A, int which) {
    if (A->npos == 2) {
        static const char *const names[] = { "a", "b", NULL };
        if (jm_check_arity(A, 2, 2, names)) return jm_v_err();
        jm_value a = A->pos[0], b = A->pos[1];
        if ((a.kind == JM_V_INT || a.kind == JM_V_FLOAT) && (b.kind == JM_V_INT || b.kind == JM_V_FLOAT)) {
            double x = a.kind == JM_V_INT ? (double)a.i : a.f, y = b.kind == JM_V_INT ? (double)b.i : b.f;
            int pick_a = which == JM_OP_MAX ? x >= y : x <= y;
            return pick_a ? a : b;
        }
        /* max(x, 1) reads like PyTorch's reduction over dim 1: make the reader choose */
        if ((a.kind == JM_V_TENSOR && b.kind == JM_V_INT) || (b.kind == JM_V_TENSOR && a.kind == JM_V_INT)) {
            jm_diag_error(jm_D(A), A->call->loc, "%s(x, %lld) is ambiguous: write %s(x, axis=%lld) to reduce, or %s(x, %lld.0) for elementwise",
                          A->call->str, (long long)(a.kind == JM_V_INT ? a.i : b.i), A->call->str,
                          (long long)(a.kind == JM_V_INT ? a.i : b.i), A->call->str, (long long)(a.kind == JM_V_INT ? a.i : b.i));
            return jm_v_err();
        }
        /* elementwise: broadcast like the arithmetic operators */
        jm_value d = jm_binary(A->c, JM_T_MINUS, a, b, A->call->loc);   /* common shape and dtype */
        if (d.kind == JM_V_ERR) return d;
        jm_type t = *jm_value_type(A->c, d);
        int src[2] = { jm_as_tensor(A, a, &t, A->call->loc), jm_as_tensor(A, b, &t, A->call->loc) };
        return jm_emit(A, (jm_op)which, src, 2, NULL, NULL);
    }
    return jm_b_reduce(A, which == JM_OP_MAX ? JM_OP_RMAX : -JM_OP_RMAX);
}

static jm_value jm_b_binary_fn(jm_args *A, int which) {
    static const char *const names[] = { "a", "b", NULL };
    if (jm_check_arity(A, 2, 2, names)) return jm_v_err();
    return jm_binary(A->c, (jm_tok_kind)which, A->pos[0], A->pos[1], A->call->loc);
}

/* clamp(x, lo, hi) = where(x < lo, lo, where(x > hi, hi, x)): values at a bound
   keep their gradient (as PyTorch's clamp) and NaN stays NaN. */
static jm_value jm_b_clamp(jm_args *A, int which) {
    static const char *const names[] = { "x", "lo", "hi", NULL };
    if (jm_check_arity(A, 3, 3, names)) return jm_v_err();
    int x = jm_tensor_arg(A, 0, "x");
    double lo, hi;
    if (x < 0 || jm_num_arg(A, 1, "lo", 0, &lo) || jm_num_arg(A, 2, "hi", 0, &hi)) return jm_v_err();
    if (!(lo <= hi)) { jm_diag_error(jm_D(A), A->call->loc, "clamp: lo (%g) must be <= hi (%g)", lo, hi); return jm_v_err(); }
    jm_type tt = *jm_node_type(A, x);
    jm_loc loc = A->call->loc;
    int l = jm_broadcast_to(A->c, jm_const_node(A->c, lo, tt.dtype, loc), &tt, loc);
    int h = jm_broadcast_to(A->c, jm_const_node(A->c, hi, tt.dtype, loc), &tt, loc);
    int c1[2] = { x, h }, c2[2] = { x, l };
    int above = jm_add(A->c, JM_OP_GT, c1, 2, NULL, NULL, loc), below = jm_add(A->c, JM_OP_LT, c2, 2, NULL, NULL, loc);
    int w1[3] = { above, h, x };
    int inner = jm_add(A->c, JM_OP_WHERE, w1, 3, NULL, NULL, loc);
    int w2[3] = { below, l, inner };
    return jm_emit(A, JM_OP_WHERE, w2, 3, NULL, NULL);
}

static jm_value jm_b_where(jm_args *A, int which) {
    static const char *const names[] = { "cond", "a", "b", NULL };
    if (jm_check_arity(A, 3, 3, names)) return jm_v_err();
    jm_value c = A->pos[0];
    if (c.kind == JM_V_BOOL) return c.i ? A->pos[1] : A->pos[2];
    int cn = jm_tensor_arg(A, 0, "cond");
    if (cn < 0) return jm_v_err();
    if (jm_node_type(A, cn)->dtype != JM_BOOL) {
        jm_diag_error(jm_D(A), jm_arg_loc(A, 0, "cond"), "where: the condition must be a bool tensor (a comparison), got %s",
                      jm_dtype_name(jm_node_type(A, cn)->dtype));
        return jm_v_err();
    }
    /* a - b fixes the common shape and dtype of the branches; the condition joins it. */
    jm_value d = jm_binary(A->c, JM_T_MINUS, A->pos[1], A->pos[2], A->call->loc);
    if (d.kind == JM_V_ERR) return d;
    jm_type t;
    if (d.kind == JM_V_TENSOR) t = *jm_value_type(A->c, d);
    else t = jm_type_make(d.kind == JM_V_FLOAT ? JM_F32 : JM_I64, 0, NULL);   /* both branches are numbers */
    const jm_type *ct = jm_node_type(A, cn);
    jm_type out = t;
    out.rank = ct->rank > t.rank ? ct->rank : t.rank;
    for (int i = 0; i < out.rank; i++) {
        int64_t a = i < t.rank ? t.dim[t.rank - 1 - i] : 1, b = i < ct->rank ? ct->dim[ct->rank - 1 - i] : 1;
        if (a != b && a != 1 && b != 1) {
            char s1[128], s2[128];
            jm_diag_error(jm_D(A), A->call->loc, "where: cannot broadcast the condition %s with the values %s",
                          jm_type_str(ct, s1, sizeof s1), jm_type_str(&t, s2, sizeof s2));
            return jm_v_err();
        }
        out.dim[out.rank - 1 - i] = a == 1 ? b : a;
    }
    int src[3] = { jm_broadcast_to(A->c, cn, &out, A->call->loc), jm_as_tensor(A, A->pos[1], &out, A->call->loc),
                   jm_as_tensor(A, A->pos[2], &out, A->call->loc) };
    return jm_emit(A, JM_OP_WHERE, src, 3, NULL, NULL);
}

static jm_value jm_b_cast(jm_args *A, int which) {
    static const char *const names[] = { "x", "dtype", NULL };
    if (jm_check_arity(A, 2, 2, names)) return jm_v_err();
    int x = jm_tensor_arg(A, 0, "x");
    jm_value *d = jm_arg(A, 1, "dtype");
    jm_dtype dt;
    if (x < 0) return jm_v_err();
    if (d->kind != JM_V_STR || jm_dtype_parse(d->s, &dt) != 0) {
        jm_diag_error(jm_D(A), jm_arg_loc(A, 1, "dtype"), "cast: dtype must be \"f32\", \"f64\", \"i32\", \"i64\" or \"bool\"");
        return jm_v_err();
    }
    if (jm_node_type(A, x)->dtype == dt) return jm_v_tensor(A->c, x);
    jm_attr at = jm_attr0();
    at.k = dt;
    return jm_emit(A, JM_OP_CAST, &x, 1, &at, NULL);
}

static jm_value jm_b_detach(jm_args *A, int which) {
    if (jm_check_arity(A, 1, 1, jm_names_x)) return jm_v_err();
    int x = jm_tensor_arg(A, 0, "x");
    if (x < 0) return jm_v_err();
    return jm_emit(A, JM_OP_STOP_GRAD, &x, 1, NULL, NULL);
}

/* ---- reductions ---------------------------------------------------------------- */

/* which: JM_OP_SUM, JM_OP_RMAX, -JM_OP_RMAX (min), JM_OP_LOGSUMEXP, or -JM_OP_SUM (mean) */
static jm_value jm_b_reduce(jm_args *A, int which) {
    static const char *const names[] = { "x", "axis", "keepdims", NULL };
    if (jm_check_arity(A, 1, 3, names)) return jm_v_err();
    int x = jm_tensor_arg(A, 0, "x");
    if (x < 0) return jm_v_err();
    jm_type t = *jm_node_type(A, x);
    jm_attr at = jm_attr0();
    if (jm_axes_arg(A, 1, "axis", t.rank, &at)) return jm_v_err();
    int64_t keep = 0;
    jm_value *kv = jm_arg(A, 2, "keepdims");
    if (kv) {
        if (kv->kind != JM_V_BOOL) { jm_diag_error(jm_D(A), jm_arg_loc(A, 2, "keepdims"), "keepdims must be true or false"); return jm_v_err(); }
        keep = kv->i;
    }
    jm_loc loc = A->call->loc;
    int r;
    if (which == -JM_OP_RMAX) {
        /* min(x) = -max(-x) */
        int nx = jm_add(A->c, JM_OP_NEG, &x, 1, NULL, NULL, loc);
        int mx = jm_add(A->c, JM_OP_RMAX, &nx, 1, &at, NULL, loc);
        r = jm_add(A->c, JM_OP_NEG, &mx, 1, NULL, NULL, loc);
    } else if (which == -JM_OP_SUM) {
        if (!jm_dtype_is_float(t.dtype)) {
            jm_diag_error(jm_D(A), loc, "mean needs a floating-point tensor, got %s", jm_dtype_name(t.dtype));
            return jm_v_err();
        }
        int64_t n = 1;
        for (int i = 0; i < at.ni; i++) n *= t.dim[at.i[i]];
        int s = jm_add(A->c, JM_OP_SUM, &x, 1, &at, NULL, loc);
        if (s < 0) return jm_v_err();
        jm_type st = *jm_node_type(A, s);
        int k = jm_broadcast_to(A->c, jm_const_node(A->c, n ? 1.0 / (double)n : NAN, t.dtype, loc), &st, loc);
        int src[2] = { s, k };
        r = jm_add(A->c, JM_OP_MUL, src, 2, NULL, NULL, loc);
    } else {
        r = jm_add(A->c, (jm_op)which, &x, 1, &at, NULL, loc);
    }
    if (r < 0) return jm_v_err();
    if (keep) {
        jm_type kt = t;
        for (int i = 0; i < at.ni; i++) kt.dim[at.i[i]] = 1;
        r = jm_add(A->c, JM_OP_RESHAPE, &r, 1, NULL, &kt, loc);
    }
    return jm_v_tensor(A->c, r);
}

static jm_value jm_b_softmax(jm_args *A, int which) {
    static const char *const names[] = { "x", "axis", NULL };
    if (jm_check_arity(A, 1, 2, names)) return jm_v_err();
    int x = jm_tensor_arg(A, 0, "x");
    int64_t ax;
    if (x < 0 || jm_int_arg(A, 1, "axis", -1, &ax)) return jm_v_err();
    int rank = jm_node_type(A, x)->rank;
    if (ax < -rank || ax >= rank) {
        jm_diag_error(jm_D(A), jm_arg_loc(A, 1, "axis"), "%s: axis %lld is out of range for rank %d", A->call->str, (long long)ax, rank);
        return jm_v_err();
    }
    jm_attr at = jm_attr0();
    at.k = (int)(ax < 0 ? ax + rank : ax);
    return jm_emit(A, (jm_op)which, &x, 1, &at, NULL);
}

static jm_value jm_b_cross_entropy(jm_args *A, int which) {
    static const char *const names[] = { "logits", "labels", "smoothing", NULL };
    if (jm_check_arity(A, 2, 3, names)) return jm_v_err();
    int l = jm_tensor_arg(A, 0, "logits"), y = jm_tensor_arg(A, 1, "labels");
    jm_attr at = jm_attr0();
    if (l < 0 || y < 0 || jm_num_arg(A, 2, "smoothing", 0, &at.f[0])) return jm_v_err();
    if (at.f[0] < 0 || at.f[0] > 1) {
        jm_diag_error(jm_D(A), jm_arg_loc(A, 2, "smoothing"), "cross_entropy: smoothing must be in [0, 1], got %g", at.f[0]);
        return jm_v_err();
    }
    int src[2] = { l, y };
    return jm_emit(A, JM_OP_CROSS_ENTROPY, src, 2, &at, NULL);
}

/* ---- layers --------------------------------------------------------------------- */

static jm_value jm_b_conv2d(jm_args *A, int which) {
    static const char *const names[] = { "x", "weight", "stride", "padding", "dilation", "groups", NULL };
    if (jm_check_arity(A, 2, 6, names)) return jm_v_err();
    int x = jm_tensor_arg(A, 0, "x"), w = jm_tensor_arg(A, 1, "weight");
    int64_t st[2], pd[2], dl[2], groups;
    if (x < 0 || w < 0 || jm_pair_arg(A, 2, "stride", 1, st) || jm_pair_arg(A, 3, "padding", 0, pd) ||
        jm_pair_arg(A, 4, "dilation", 1, dl) || jm_int_arg(A, 5, "groups", 1, &groups))
        return jm_v_err();
    jm_attr at = jm_attr0();
    int64_t v[7] = { st[0], st[1], pd[0], pd[1], dl[0], dl[1], groups };
    memcpy(at.i, v, sizeof v);
    at.ni = 7;
    int src[2] = { x, w };
    return jm_emit(A, JM_OP_CONV2D, src, 2, &at, NULL);
}

/* conv_transpose2d(x, weight [Cin, Cout/groups, KH, KW]) as PyTorch's ConvTranspose2d:
   H_out = (H - 1) * stride - 2 * padding + dilation * (K - 1) + output_padding + 1.
   It is the data gradient of a conv2d, which is the op it lowers to. */
static jm_value jm_b_conv_transpose2d(jm_args *A, int which) {
    static const char *const names[] = { "x", "weight", "stride", "padding", "output_padding", "dilation", "groups", NULL };
    if (jm_check_arity(A, 2, 7, names)) return jm_v_err();
    int x = jm_tensor_arg(A, 0, "x"), w = jm_tensor_arg(A, 1, "weight");
    int64_t st[2], pd[2], op[2], dl[2], groups;
    if (x < 0 || w < 0 || jm_pair_arg(A, 2, "stride", 1, st) || jm_pair_arg(A, 3, "padding", 0, pd) ||
        jm_pair_arg(A, 4, "output_padding", 0, op) || jm_pair_arg(A, 5, "dilation", 1, dl) || jm_int_arg(A, 6, "groups", 1, &groups))
        return jm_v_err();
    const jm_type *xt = jm_node_type(A, x), *wt = jm_node_type(A, w);
    if (xt->rank != 4 || wt->rank != 4) {
        char s1[128], s2[128];
        jm_diag_error(jm_D(A), A->call->loc, "conv_transpose2d needs a 4-d input and a 4-d weight [Cin, Cout/groups, KH, KW], got %s and %s",
                      jm_type_str(xt, s1, sizeof s1), jm_type_str(wt, s2, sizeof s2));
        return jm_v_err();
    }
    for (int i = 0; i < 2; i++)
        if (op[i] < 0 || (op[i] >= st[i] && op[i] >= dl[i])) {
            jm_diag_error(jm_D(A), A->call->loc, "conv_transpose2d: output_padding must be smaller than the stride or the dilation");
            return jm_v_err();
        }
    jm_attr at = jm_attr0();
    int64_t v[9] = { st[0], st[1], pd[0], pd[1], dl[0], dl[1], groups,
                     (xt->dim[2] - 1) * st[0] - 2 * pd[0] + dl[0] * (wt->dim[2] - 1) + op[0] + 1,
                     (xt->dim[3] - 1) * st[1] - 2 * pd[1] + dl[1] * (wt->dim[3] - 1) + op[1] + 1 };
    memcpy(at.i, v, sizeof v);
    at.ni = 9;
    int src[2] = { x, w };
    return jm_emit(A, JM_OP_CONV2D_BWD_DATA, src, 2, &at, NULL);
}

static jm_value jm_b_pool(jm_args *A, int which) {
    static const char *const names[] = { "x", "kernel", "stride", "padding", NULL };
    if (jm_check_arity(A, 2, 4, names)) return jm_v_err();
    int x = jm_tensor_arg(A, 0, "x");
    int64_t k[2], st[2], pd[2];
    if (x < 0 || jm_pair_arg(A, 1, "kernel", 1, k)) return jm_v_err();
    if (jm_pair_arg(A, 2, "stride", k[0], st) || jm_pair_arg(A, 3, "padding", 0, pd)) return jm_v_err();
    if (!jm_arg(A, 2, "stride")) { st[0] = k[0]; st[1] = k[1]; }
    jm_attr at = jm_attr0();
    int64_t v[6] = { k[0], k[1], st[0], st[1], pd[0], pd[1] };
    memcpy(at.i, v, sizeof v);
    at.ni = 6;
    return jm_emit(A, (jm_op)which, &x, 1, &at, NULL);
}

static jm_value jm_b_matmul(jm_args *A, int which) {
    static const char *const names[] = { "a", "b", NULL };
    if (jm_check_arity(A, 2, 2, names)) return jm_v_err();
    int a = jm_tensor_arg(A, 0, "a"), b = jm_tensor_arg(A, 1, "b");
    if (a < 0 || b < 0) return jm_v_err();
    int src[2] = { a, b };
    return jm_emit(A, JM_OP_MATMUL, src, 2, NULL, NULL);
}

/* linear(x, weight, bias): x @ weight^T + bias, weight [out, in] as in PyTorch. */
static jm_value jm_b_linear(jm_args *A, int which) {
    static const char *const names[] = { "x", "weight", "bias", NULL };
    if (jm_check_arity(A, 2, 3, names)) return jm_v_err();
    int x = jm_tensor_arg(A, 0, "x"), w = jm_tensor_arg(A, 1, "weight");
    if (x < 0 || w < 0) return jm_v_err();
    const jm_type *wt = jm_node_type(A, w), *xt = jm_node_type(A, x);
    if (wt->rank != 2 || xt->rank < 1 || xt->dim[xt->rank - 1] != wt->dim[1]) {
        char s1[128], s2[128];
        jm_diag_error(jm_D(A), A->call->loc, "linear: input %s does not fit weight %s (expected [..., %lld])",
                      jm_type_str(xt, s1, sizeof s1), jm_type_str(wt, s2, sizeof s2), wt->rank == 2 ? (long long)wt->dim[1] : -1LL);
        return jm_v_err();
    }
    jm_attr at = jm_attr0();
    at.i[0] = 1; at.i[1] = 0; at.ni = 2;
    int wT = jm_add(A->c, JM_OP_PERMUTE, &w, 1, &at, NULL, A->call->loc);
    int src[2] = { x, wT };
    jm_value y = jm_emit(A, JM_OP_MATMUL, src, 2, NULL, NULL);
    jm_value *b = jm_arg(A, 2, "bias");
    if (b) y = jm_binary(A->c, JM_T_PLUS, y, *b, A->call->loc);
    return y;
}

/* ---- movement ---------------------------------------------------------------------- */

static jm_value jm_b_reshape(jm_args *A, int which) {
    static const char *const names[] = { "x", "shape", NULL };
    if (jm_check_arity(A, 2, 2, names)) return jm_v_err();
    int x = jm_tensor_arg(A, 0, "x");
    if (x < 0) return jm_v_err();
    jm_value *s = jm_arg(A, 1, "shape");
    jm_loc loc = jm_arg_loc(A, 1, "shape");
    if (s->kind != JM_V_LIST || s->nitems > JM_MAX_RANK) {
        jm_diag_error(jm_D(A), loc, "reshape: the shape must be a list of at most %d integers", JM_MAX_RANK);
        return jm_v_err();
    }
    const jm_type *t = jm_node_type(A, x);
    jm_type out;
    memset(&out, 0, sizeof out);
    out.dtype = t->dtype;
    out.rank = s->nitems;
    int infer = -1;
    int64_t known = 1;
    for (int k = 0; k < s->nitems; k++) {
        if (jm_want_int(A->c, s->items[k], loc, "a dimension", &out.dim[k]) != 0) return jm_v_err();
        if (out.dim[k] == -1) {
            if (infer >= 0) { jm_diag_error(jm_D(A), loc, "reshape: only one dimension may be -1"); return jm_v_err(); }
            infer = k;
        } else if (out.dim[k] < 0) {
            jm_diag_error(jm_D(A), loc, "reshape: dimension %d is negative", k);
            return jm_v_err();
        } else if (out.dim[k] > 0 && known > (INT64_C(1) << 40) / out.dim[k]) {
            jm_diag_error(jm_D(A), loc, "reshape: the shape is too large");
            return jm_v_err();
        } else {
            known *= out.dim[k];
        }
    }
    if (infer >= 0) {
        int64_t n = jm_type_numel(t);
        if (known == 0 || n % known != 0) {
            char s1[128];
            jm_diag_error(jm_D(A), loc, "reshape: cannot infer the -1 dimension for %s", jm_type_str(t, s1, sizeof s1));
            return jm_v_err();
        }
        out.dim[infer] = n / known;
    }
    return jm_emit(A, JM_OP_RESHAPE, &x, 1, NULL, &out);
}

static jm_value jm_b_flatten(jm_args *A, int which) {
    static const char *const names[] = { "x", "start", NULL };
    if (jm_check_arity(A, 1, 2, names)) return jm_v_err();
    int x = jm_tensor_arg(A, 0, "x");
    int64_t start;
    if (x < 0 || jm_int_arg(A, 1, "start", 1, &start)) return jm_v_err();
    const jm_type *t = jm_node_type(A, x);
    if (start < 0 || start >= t->rank) {
        jm_diag_error(jm_D(A), A->call->loc, "flatten: start axis %lld is out of range for rank %d", (long long)start, t->rank);
        return jm_v_err();
    }
    jm_type out = *t;
    out.rank = (int)start + 1;
    for (int i = (int)start + 1; i < t->rank; i++) out.dim[start] *= t->dim[i];
    return jm_emit(A, JM_OP_RESHAPE, &x, 1, NULL, &out);
}

static jm_value jm_b_permute(jm_args *A, int which) {
    static const char *const names[] = { "x", "perm", NULL };
    if (jm_check_arity(A, 2, 2, names)) return jm_v_err();
    int x = jm_tensor_arg(A, 0, "x");
    jm_value *p = jm_arg(A, 1, "perm");
    if (x < 0) return jm_v_err();
    if (p->kind != JM_V_LIST || p->nitems > JM_MAX_RANK) {
        jm_diag_error(jm_D(A), jm_arg_loc(A, 1, "perm"), "permute: perm must be a list of axes");
        return jm_v_err();
    }
    jm_attr at = jm_attr0();
    for (int k = 0; k < p->nitems; k++)
        if (jm_want_int(A->c, p->items[k], jm_arg_loc(A, 1, "perm"), "an axis", &at.i[k]) != 0) return jm_v_err();
    at.ni = p->nitems;
    return jm_emit(A, JM_OP_PERMUTE, &x, 1, &at, NULL);
}

static jm_value jm_b_transpose(jm_args *A, int which) {
    static const char *const names[] = { "x", "a", "b", NULL };
    if (jm_check_arity(A, 1, 3, names)) return jm_v_err();
    int x = jm_tensor_arg(A, 0, "x");
    if (x < 0) return jm_v_err();
    int rank = jm_node_type(A, x)->rank;
    int64_t a, b;
    if (jm_int_arg(A, 1, "a", rank - 2, &a) || jm_int_arg(A, 2, "b", rank - 1, &b)) return jm_v_err();
    if (a < 0) a += rank;
    if (b < 0) b += rank;
    if (rank < 2 || a < 0 || b < 0 || a >= rank || b >= rank) {
        jm_diag_error(jm_D(A), A->call->loc, "transpose: axes out of range for rank %d", rank);
        return jm_v_err();
    }
    jm_attr at = jm_attr0();
    for (int i = 0; i < rank; i++) at.i[i] = i;
    at.i[a] = b;
    at.i[b] = a;
    at.ni = rank;
    return jm_emit(A, JM_OP_PERMUTE, &x, 1, &at, NULL);
}

static jm_value jm_b_concat(jm_args *A, int which) {
    static const char *const names[] = { "tensors", "axis", NULL };
    if (jm_check_arity(A, 1, 2, names)) return jm_v_err();
    jm_value *l = jm_arg(A, 0, "tensors");
    int64_t ax;
    if (jm_int_arg(A, 1, "axis", 0, &ax)) return jm_v_err();
    if (l->kind != JM_V_LIST || l->nitems < 1) {
        jm_diag_error(jm_D(A), jm_arg_loc(A, 0, "tensors"), "concat takes a non-empty list of tensors");
        return jm_v_err();
    }
    int *src = jm_arena_alloc(A->c->E->a, sizeof(int) * (size_t)l->nitems);
    for (int i = 0; i < l->nitems; i++) {
        src[i] = jm_want_tensor(A->c, l->items[i], jm_arg_loc(A, 0, "tensors"), "an item of concat");
        if (src[i] < 0) return jm_v_err();
    }
    int rank = jm_node_type(A, src[0])->rank;
    jm_attr at = jm_attr0();
    at.k = (int)(ax < 0 ? ax + rank : ax);
    return jm_emit(A, JM_OP_CONCAT, src, l->nitems, &at, NULL);
}

static jm_value jm_b_pad(jm_args *A, int which) {
    static const char *const names[] = { "x", "pads", "value", NULL };
    if (jm_check_arity(A, 2, 3, names)) return jm_v_err();
    int x = jm_tensor_arg(A, 0, "x");
    jm_value *p = jm_arg(A, 1, "pads");
    jm_attr at = jm_attr0();
    if (x < 0 || jm_num_arg(A, 2, "value", 0, &at.f[0])) return jm_v_err();
    int rank = jm_node_type(A, x)->rank;
    /* pads lists (before, after) for the last len/2 axes, outermost first */
    if (p->kind != JM_V_LIST || p->nitems % 2 || p->nitems > 2 * rank) {
        jm_diag_error(jm_D(A), jm_arg_loc(A, 1, "pads"), "pad: pads must be a list of (before, after) pairs for up to %d axes", rank);
        return jm_v_err();
    }
    int first = rank - p->nitems / 2;
    for (int k = 0; k < p->nitems; k++)
        if (jm_want_int(A->c, p->items[k], jm_arg_loc(A, 1, "pads"), "a padding amount", &at.i[2 * first + k]) != 0) return jm_v_err();
    at.ni = 2 * rank;
    return jm_emit(A, JM_OP_PAD, &x, 1, &at, NULL);
}

/* upsample(x, scale): nearest-neighbour upsampling of an NCHW tensor by an integer
   factor (F.interpolate(mode="nearest", scale_factor=s)). Not an op of its own: it is
   the view chain reshape [N,C,H,1,W,1] -> broadcast [N,C,H,s,W,s] -> reshape
   [N,C,Hs,Ws], so the interpreter, autodiff (a sum over each s x s block) and the
   fusion pass handle it as they handle any view: it fuses into the kernel that
   reads it, and its gradient into one reduction (docs/passes.md). */
static jm_value jm_b_upsample(jm_args *A, int which) {
    static const char *const names[] = { "x", "scale", NULL };
    if (jm_check_arity(A, 2, 2, names)) return jm_v_err();
    int x = jm_tensor_arg(A, 0, "x");
    double s;
    if (x < 0 || jm_num_arg(A, 1, "scale", 2, &s)) return jm_v_err();
    const jm_type *t = jm_node_type(A, x);
    if (t->rank != 4) {
        char s1[128];
        jm_diag_error(jm_D(A), jm_arg_loc(A, 0, "x"), "upsample needs a 4-d tensor [N, C, H, W], got %s", jm_type_str(t, s1, sizeof s1));
        return jm_v_err();
    }
    if (s != floor(s) || s < 1) {
        jm_diag_error(jm_D(A), jm_arg_loc(A, 1, "scale"), "upsample: scale must be an integer >= 1, got %g", s);
        return jm_v_err();
    }
    /* the result must stay within the 2^40 elements of any shape (and H*s, W*s within int64) */
    if (s > (double)(1 << 20) || (double)jm_type_numel(t) * s * s > (double)(INT64_C(1) << 40)) {
        jm_diag_error(jm_D(A), jm_arg_loc(A, 1, "scale"), "upsample: scale %g makes the result too large (more than 2^40 elements)", s);
        return jm_v_err();
    }
    int64_t k = (int64_t)s, n = t->dim[0], c = t->dim[1], h = t->dim[2], w = t->dim[3];
    if (k == 1) return jm_v_tensor(A->c, x);
    jm_type t6 = *t, tb, out = *t;
    t6.rank = 6;
    int64_t d6[6] = { n, c, h, 1, w, 1 };
    memcpy(t6.dim, d6, sizeof d6);
    tb = t6;
    tb.dim[3] = tb.dim[5] = k;
    out.dim[2] = h * k;
    out.dim[3] = w * k;
    int v = jm_add(A->c, JM_OP_RESHAPE, &x, 1, NULL, &t6, A->call->loc);
    v = jm_add(A->c, JM_OP_BROADCAST, &v, 1, NULL, &tb, A->call->loc);
    return jm_emit(A, JM_OP_RESHAPE, &v, 1, NULL, &out);
}

static jm_value jm_b_onehot(jm_args *A, int which) {
    static const char *const names[] = { "labels", "classes", NULL };
    if (jm_check_arity(A, 2, 2, names)) return jm_v_err();
    int y = jm_tensor_arg(A, 0, "labels");
    int64_t k;
    if (y < 0 || jm_int_arg(A, 1, "classes", 0, &k)) return jm_v_err();
    if (k < 1 || k > (1 << 24)) { jm_diag_error(jm_D(A), A->call->loc, "onehot: classes must be in 1..16777216"); return jm_v_err(); }
    jm_attr at = jm_attr0();
    at.k = (int)k;
    return jm_emit(A, JM_OP_ONEHOT, &y, 1, &at, NULL);
}

/* ---- constants and random numbers ------------------------------------------------------ */

/* zeros(shape), ones(shape), full(shape, value); dtype= picks the element type
   (default: the tensor's dtype when shape is a tensor, else f32). */
static jm_value jm_b_fill(jm_args *A, int which) {
    static const char *const names_zo[] = { "shape", "dtype", NULL };
    static const char *const names_full[] = { "shape", "value", "dtype", NULL };
    int is_full = which == 2;
    if (jm_check_arity(A, is_full ? 2 : 1, is_full ? 2 : 1, is_full ? names_full : names_zo)) return jm_v_err();
    jm_type t;
    double v = which;                     /* zeros: 0, ones: 1 */
    if (jm_shape_arg(A, 0, "shape", &t)) return jm_v_err();
    if (is_full && jm_num_arg(A, 1, "value", 0, &v)) return jm_v_err();
    jm_value *dv = jm_arg(A, -1, "dtype");
    if (dv) {
        if (dv->kind != JM_V_STR || jm_dtype_parse(dv->s, &t.dtype) != 0) {
            jm_diag_error(jm_D(A), jm_arg_loc(A, -1, "dtype"), "%s: dtype must be \"f32\", \"f64\", \"i32\", \"i64\" or \"bool\"", A->call->str);
            return jm_v_err();
        }
    }
    if (t.dtype == JM_TUPLE) t.dtype = JM_F32;
    int c = jm_const_node(A->c, v, t.dtype, A->call->loc);
    return jm_v_tensor(A->c, jm_broadcast_to(A->c, c, &t, A->call->loc));
}

/* uniform(shape, lo=0, hi=1), normal(shape, mean=0, std=1), randint(shape, lo, hi), bernoulli(shape, p) */
static jm_value jm_b_random(jm_args *A, int which) {
    static const char *const un[] = { "shape", "lo", "hi", NULL };
    static const char *const nn[] = { "shape", "mean", "std", NULL };
    static const char *const rn[] = { "shape", "lo", "hi", NULL };
    static const char *const bn[] = { "shape", "p", NULL };
    const char *const *names = which == JM_OP_RNG_UNIFORM ? un : which == JM_OP_RNG_NORMAL ? nn : which == JM_OP_RNG_RANDINT ? rn : bn;
    int nmin = which == JM_OP_RNG_RANDINT ? 3 : which == JM_OP_RNG_BERNOULLI ? 2 : 1;
    int nmax = which == JM_OP_RNG_BERNOULLI ? 2 : 3;
    if (jm_check_arity(A, nmin, nmax, names)) return jm_v_err();
    jm_type t;
    if (jm_shape_arg(A, 0, "shape", &t)) return jm_v_err();
    jm_attr at = jm_attr0();
    double d0 = which == JM_OP_RNG_NORMAL ? 0 : 0, d1 = 1;
    if (jm_num_arg(A, 1, names[1], d0, &at.f[0])) return jm_v_err();
    if (names[2] && jm_num_arg(A, 2, names[2], d1, &at.f[1])) return jm_v_err();
    jm_loc loc = A->call->loc;
    if (which == JM_OP_RNG_UNIFORM && !(at.f[0] <= at.f[1])) { jm_diag_error(jm_D(A), loc, "uniform: lo must be <= hi"); return jm_v_err(); }
    if (which == JM_OP_RNG_NORMAL && !(at.f[1] >= 0)) { jm_diag_error(jm_D(A), loc, "normal: std must be >= 0"); return jm_v_err(); }
    if (which == JM_OP_RNG_RANDINT && !(at.f[0] < at.f[1])) { jm_diag_error(jm_D(A), loc, "randint: lo must be < hi"); return jm_v_err(); }
    if (which == JM_OP_RNG_BERNOULLI && !(at.f[0] >= 0 && at.f[0] <= 1)) { jm_diag_error(jm_D(A), loc, "bernoulli: p must be in [0, 1]"); return jm_v_err(); }
    if (which == JM_OP_RNG_RANDINT) t.dtype = JM_I64;
    else if (which == JM_OP_RNG_BERNOULLI) t.dtype = JM_BOOL;
    else if (!jm_dtype_is_float(t.dtype)) t.dtype = JM_F32;
    /* Every call site (per block instance) draws from its own stream, so adding a
       random draw somewhere does not change the numbers drawn elsewhere. */
    at.i[0] = jm_stream_id(A->c, A->call->loc);
    at.ni = 1;
    return jm_emit(A, (jm_op)which, NULL, 0, &at, &t);
}

/* ---- shapes and numbers at compile time ------------------------------------------------- */

static jm_value jm_b_dim(jm_args *A, int which) {
    static const char *const names[] = { "x", "axis", NULL };
    if (jm_check_arity(A, 2, 2, names)) return jm_v_err();
    int x = jm_tensor_arg(A, 0, "x");
    int64_t ax;
    if (x < 0 || jm_int_arg(A, 1, "axis", 0, &ax)) return jm_v_err();
    const jm_type *t = jm_node_type(A, x);
    if (ax < 0) ax += t->rank;
    if (ax < 0 || ax >= t->rank) { jm_diag_error(jm_D(A), A->call->loc, "dim: axis out of range for rank %d", t->rank); return jm_v_err(); }
    return jm_v_int(t->dim[ax]);
}

static jm_value jm_b_numel(jm_args *A, int which) {
    if (jm_check_arity(A, 1, 1, jm_names_x)) return jm_v_err();
    int x = jm_tensor_arg(A, 0, "x");
    if (x < 0) return jm_v_err();
    return jm_v_int(jm_type_numel(jm_node_type(A, x)));
}

static jm_value jm_b_shape(jm_args *A, int which) {
    if (jm_check_arity(A, 1, 1, jm_names_x)) return jm_v_err();
    int x = jm_tensor_arg(A, 0, "x");
    if (x < 0) return jm_v_err();
    const jm_type *t = jm_node_type(A, x);
    jm_value v = jm_v_err();
    v.kind = JM_V_LIST;
    v.nitems = t->rank;
    v.items = jm_arena_alloc(A->c->E->a, sizeof(jm_value) * (size_t)(t->rank + 1));
    for (int i = 0; i < t->rank; i++) v.items[i] = jm_v_int(t->dim[i]);
    return v;
}

static jm_value jm_b_int(jm_args *A, int which) {
    if (jm_check_arity(A, 1, 1, jm_names_x)) return jm_v_err();
    double v;
    if (jm_num_arg(A, 0, "x", 0, &v)) return jm_v_err();
    if (which) return jm_v_float(v);
    if (!(fabs(v) < 9e18)) { jm_diag_error(jm_D(A), A->call->loc, "int: %g does not fit in 64 bits", v); return jm_v_err(); }
    return jm_v_int((int64_t)v);            /* truncates toward zero */
}

static jm_value jm_b_len(jm_args *A, int which) {
    if (jm_check_arity(A, 1, 1, jm_names_x)) return jm_v_err();
    jm_value *v = jm_arg(A, 0, "x");
    if (v->kind == JM_V_LIST) return jm_v_int(v->nitems);
    if (v->kind == JM_V_STR) return jm_v_int((int64_t)strlen(v->s));
    jm_diag_error(jm_D(A), A->call->loc, "len takes a list or a string, got %s", jm_vkind_name(v->kind));
    return jm_v_err();
}

/* ---- gradients --------------------------------------------------------------------------- */

/* grad(loss, params) is jm_params_grad, in elab_params.c with the parameters' current values. */

static jm_value jm_b_grad(jm_args *A, int which) {
    static const char *const names[] = { "y", "wrt", NULL };
    if (jm_check_arity(A, 2, 2, names)) return jm_v_err();
    int y = jm_tensor_arg(A, 0, "y");
    if (y < 0) return jm_v_err();
    jm_value *w = jm_arg(A, 1, "wrt");
    if (w->kind == JM_V_PARAMS) {
        const jm_type *t = jm_node_type(A, y);
        if (t->rank != 0 || !jm_dtype_is_float(t->dtype)) {
            char s1[128];
            jm_diag_error(jm_D(A), A->call->loc, "grad: the first argument must be a floating-point scalar, got %s (use sum(...) or mean(...))",
                          jm_type_str(t, s1, sizeof s1));
            return jm_v_err();
        }
        return jm_params_grad(A->c, y, A->call->loc);
    }
    int x = jm_tensor_arg(A, 1, "wrt");
    if (x < 0) return jm_v_err();
    int src[2] = { y, x };
    return jm_emit(A, JM_OP_GRAD, src, 2, NULL, NULL);
}

/* ---- the table ------------------------------------------------------------------------------ */

static const struct { const char *name; jm_builtin_fn fn; int which; } jm_builtins[] = {
    { "exp", jm_b_unary, JM_OP_EXP },           { "log", jm_b_unary, JM_OP_LOG },
    { "sqrt", jm_b_unary, JM_OP_SQRT },         { "rsqrt", jm_b_unary, JM_OP_RSQRT },
    { "abs", jm_b_unary, JM_OP_ABS },           { "tanh", jm_b_unary, JM_OP_TANH },
    { "sigmoid", jm_b_unary, JM_OP_SIGMOID },   { "log1p", jm_b_unary, JM_OP_LOG1P },
    { "softplus", jm_b_unary, JM_OP_SOFTPLUS }, { "relu", jm_b_unary, JM_OP_RELU },
    { "recip", jm_b_unary, JM_OP_RECIP },       { "leaky_relu", jm_b_leaky_relu, 0 },
    { "max", jm_b_minmax, JM_OP_MAX },          { "min", jm_b_minmax, JM_OP_MIN },
    { "pow", jm_b_binary_fn, JM_T_STARSTAR },   { "clamp", jm_b_clamp, 0 },
    { "where", jm_b_where, 0 },                 { "cast", jm_b_cast, 0 },
    { "detach", jm_b_detach, 0 },
    { "sum", jm_b_reduce, JM_OP_SUM },          { "mean", jm_b_reduce, -JM_OP_SUM },
    { "logsumexp", jm_b_reduce, JM_OP_LOGSUMEXP },
    { "softmax", jm_b_softmax, JM_OP_SOFTMAX }, { "log_softmax", jm_b_softmax, JM_OP_LOG_SOFTMAX },
    { "cross_entropy", jm_b_cross_entropy, 0 },
    { "conv2d", jm_b_conv2d, 0 },               { "matmul", jm_b_matmul, 0 },
    { "linear", jm_b_linear, 0 },                { "conv_transpose2d", jm_b_conv_transpose2d, 0 },
    { "avg_pool2d", jm_b_pool, JM_OP_AVGPOOL2D }, { "max_pool2d", jm_b_pool, JM_OP_MAXPOOL2D },
    { "reshape", jm_b_reshape, 0 },             { "flatten", jm_b_flatten, 0 },
    { "permute", jm_b_permute, 0 },             { "transpose", jm_b_transpose, 0 },
    { "concat", jm_b_concat, 0 },               { "pad", jm_b_pad, 0 },
    { "onehot", jm_b_onehot, 0 },              { "upsample", jm_b_upsample, 0 },
    { "zeros", jm_b_fill, 0 },                  { "ones", jm_b_fill, 1 },
    { "full", jm_b_fill, 2 },
    { "uniform", jm_b_random, JM_OP_RNG_UNIFORM }, { "normal", jm_b_random, JM_OP_RNG_NORMAL },
    { "randint", jm_b_random, JM_OP_RNG_RANDINT }, { "bernoulli", jm_b_random, JM_OP_RNG_BERNOULLI },
    { "dim", jm_b_dim, 0 },                     { "numel", jm_b_numel, 0 },
    { "shape", jm_b_shape, 0 },                 { "int", jm_b_int, 0 },
    { "float", jm_b_int, 1 },                   { "len", jm_b_len, 0 },
    { "grad", jm_b_grad, 0 },
};
#define JM_NBUILTINS ((int)(sizeof jm_builtins / sizeof jm_builtins[0]))

int jm_builtin_exists(const char *name) {
    for (int i = 0; i < JM_NBUILTINS; i++)
        if (strcmp(jm_builtins[i].name, name) == 0) return 1;
    return 0;
}

const char *const *jm_builtin_names(int *n) {
    static const char *names[JM_NBUILTINS];
    for (int i = 0; i < JM_NBUILTINS; i++) names[i] = jm_builtins[i].name;
    *n = JM_NBUILTINS;
    return names;
}

jm_value jm_builtin_call(jm_args *A) {
    for (int i = 0; i < JM_NBUILTINS; i++)
        if (strcmp(jm_builtins[i].name, A->call->str) == 0) return jm_builtins[i].fn(A, jm_builtins[i].which);
    return jm_v_err();
}
