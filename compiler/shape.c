/* shape.c — the shape rule of every op (named in ops.def). Each rule checks its
 * operands, reports a user-facing error at the node's location when they do not
 * fit (printing the shapes involved), and sets the result type. */
#include "ir.h"
#include <inttypes.h>
#include <string.h>

#define JM_T(buf, t) jm_type_str((t), buf, sizeof buf)

/* The name users write for an op, for messages. */
static const char *jm_op_user_name(jm_op op) {
    switch (op) {
    case JM_OP_NOT: return "'!'";
    case JM_OP_NEG: return "unary '-'";
    case JM_OP_RMAX: return "max";
    case JM_OP_MAXPOOL2D: return "max_pool2d";
    case JM_OP_AVGPOOL2D: return "avg_pool2d";
    case JM_OP_ADD: return "'+'";
    case JM_OP_SUB: return "'-'";
    case JM_OP_MUL: return "'*'";
    case JM_OP_DIV: return "'/'";
    case JM_OP_POW: return "'**'";
    case JM_OP_AND: return "'&&'";
    case JM_OP_OR: return "'||'";
    case JM_OP_STOP_GRAD: return "detach";
    default: return jm_ops[op].name;
    }
}

static const jm_type *jm_src_type(jm_graph *g, jm_node *n, int i) { return &g->node[n->src[i]].type; }

static int jm_shape_given(jm_module *m, jm_graph *g, jm_node *n, jm_diags *d) { return 0; }

static int jm_shape_global(jm_module *m, jm_graph *g, jm_node *n, jm_diags *d) {
    n->type = m->globals[n->attr.i[0]].type;
    return 0;
}

static int jm_shape_unary_num(jm_module *m, jm_graph *g, jm_node *n, jm_diags *d) {
    const jm_type *a = jm_src_type(g, n, 0);
    if (a->dtype == JM_BOOL || a->dtype == JM_TUPLE) {
        jm_diag_error(d, n->loc, "%s needs a numeric tensor, got %s", jm_op_user_name(n->op), jm_dtype_name(a->dtype));
        return -1;
    }
    n->type = *a;
    return 0;
}

static int jm_shape_unary_float(jm_module *m, jm_graph *g, jm_node *n, jm_diags *d) {
    const jm_type *a = jm_src_type(g, n, 0);
    if (!jm_dtype_is_float(a->dtype)) {
        jm_diag_error(d, n->loc, "%s needs a floating-point tensor, got %s", jm_op_user_name(n->op), jm_dtype_name(a->dtype));
        return -1;
    }
    n->type = *a;
    return 0;
}

static int jm_shape_unary_bool(jm_module *m, jm_graph *g, jm_node *n, jm_diags *d) {
    const jm_type *a = jm_src_type(g, n, 0);
    if (a->dtype != JM_BOOL) {
        jm_diag_error(d, n->loc, "%s needs a bool tensor, got %s", jm_op_user_name(n->op), jm_dtype_name(a->dtype));
        return -1;
    }
    n->type = *a;
    return 0;
}

static int jm_shape_cast(jm_module *m, jm_graph *g, jm_node *n, jm_diags *d) {
    n->type = *jm_src_type(g, n, 0);
    n->type.dtype = (jm_dtype)n->attr.k;
    return 0;
}

static int jm_same_shape(jm_graph *g, jm_node *n, jm_diags *d, int first, int count) {
    const jm_type *a = jm_src_type(g, n, first);
    for (int i = first + 1; i < first + count; i++) {
        const jm_type *b = jm_src_type(g, n, i);
        int same = a->rank == b->rank;
        for (int k = 0; same && k < a->rank; k++) same = a->dim[k] == b->dim[k];
        if (!same) {
            char x[128], y[128];
            jm_diag_error(d, n->loc, "%s: operand shapes differ: %s and %s", jm_op_user_name(n->op), JM_T(x, a), JM_T(y, b));
            return -1;
        }
    }
    return 0;
}

static int jm_same_dtype(jm_graph *g, jm_node *n, jm_diags *d, int i, int j) {
    const jm_type *a = jm_src_type(g, n, i), *b = jm_src_type(g, n, j);
    if (a->dtype != b->dtype) {
        jm_diag_error(d, n->loc, "%s: operand types differ: %s and %s", jm_op_user_name(n->op),
                      jm_dtype_name(a->dtype), jm_dtype_name(b->dtype));
        return -1;
    }
    return 0;
}

static int jm_shape_binary_num(jm_module *m, jm_graph *g, jm_node *n, jm_diags *d) {
    if (jm_same_shape(g, n, d, 0, 2) || jm_same_dtype(g, n, d, 0, 1)) return -1;
    return jm_shape_unary_num(m, g, n, d);
}

static int jm_shape_binary_float(jm_module *m, jm_graph *g, jm_node *n, jm_diags *d) {
    if (jm_same_shape(g, n, d, 0, 2) || jm_same_dtype(g, n, d, 0, 1)) return -1;
    return jm_shape_unary_float(m, g, n, d);
}

static int jm_shape_binary_bool(jm_module *m, jm_graph *g, jm_node *n, jm_diags *d) {
    if (jm_same_shape(g, n, d, 0, 2) || jm_same_dtype(g, n, d, 0, 1)) return -1;
    return jm_shape_unary_bool(m, g, n, d);
}

static int jm_shape_compare(jm_module *m, jm_graph *g, jm_node *n, jm_diags *d) {
    if (jm_same_shape(g, n, d, 0, 2) || jm_same_dtype(g, n, d, 0, 1)) return -1;
    n->type = *jm_src_type(g, n, 0);
    n->type.dtype = JM_BOOL;
    return 0;
}

static int jm_shape_where(jm_module *m, jm_graph *g, jm_node *n, jm_diags *d) {
    if (jm_same_shape(g, n, d, 0, 3) || jm_same_dtype(g, n, d, 1, 2)) return -1;
    if (jm_src_type(g, n, 0)->dtype != JM_BOOL) {
        jm_diag_error(d, n->loc, "where: the condition must be bool, got %s", jm_dtype_name(jm_src_type(g, n, 0)->dtype));
        return -1;
    }
    n->type = *jm_src_type(g, n, 1);
    return 0;
}

static int jm_shape_reduce(jm_module *m, jm_graph *g, jm_node *n, jm_diags *d) {
    const jm_type *a = jm_src_type(g, n, 0);
    if (a->dtype == JM_BOOL || a->dtype == JM_TUPLE ||
        (n->op == JM_OP_LOGSUMEXP && !jm_dtype_is_float(a->dtype))) {
        jm_diag_error(d, n->loc, "%s needs a %s tensor, got %s", jm_op_user_name(n->op),
                      n->op == JM_OP_LOGSUMEXP ? "floating-point" : "numeric", jm_dtype_name(a->dtype));
        return -1;
    }
    int drop[JM_MAX_RANK] = { 0 };
    for (int i = 0; i < n->attr.ni; i++) {
        int64_t ax = n->attr.i[i];
        if (ax < 0 || ax >= a->rank) {
            char x[128];
            jm_diag_error(d, n->loc, "%s: axis %" PRId64 " is out of range for %s", jm_op_user_name(n->op), ax, JM_T(x, a));
            return -1;
        }
        if (drop[ax]) {
            jm_diag_error(d, n->loc, "%s: axis %" PRId64 " is listed twice", jm_op_user_name(n->op), ax);
            return -1;
        }
        drop[ax] = 1;
    }
    n->type.dtype = a->dtype;
    n->type.rank = 0;
    for (int i = 0; i < a->rank; i++)
        if (!drop[i]) n->type.dim[n->type.rank++] = a->dim[i];
    return 0;
}

static int jm_shape_axis_op(jm_module *m, jm_graph *g, jm_node *n, jm_diags *d) {
    const jm_type *a = jm_src_type(g, n, 0);
    if (n->attr.k < 0 || n->attr.k >= a->rank) {
        char x[128];
        jm_diag_error(d, n->loc, "%s: axis %d is out of range for %s", jm_op_user_name(n->op), n->attr.k, JM_T(x, a));
        return -1;
    }
    return jm_shape_unary_float(m, g, n, d);
}

static int jm_shape_reshape(jm_module *m, jm_graph *g, jm_node *n, jm_diags *d) {
    const jm_type *a = jm_src_type(g, n, 0);
    n->type.dtype = a->dtype;
    if (jm_type_numel(a) != jm_type_numel(&n->type)) {
        char x[128], y[128];
        jm_diag_error(d, n->loc, "reshape: cannot reshape %s (%" PRId64 " elements) to %s (%" PRId64 " elements)",
                      JM_T(x, a), jm_type_numel(a), JM_T(y, &n->type), jm_type_numel(&n->type));
        return -1;
    }
    return 0;
}

static int jm_shape_permute(jm_module *m, jm_graph *g, jm_node *n, jm_diags *d) {
    const jm_type *a = jm_src_type(g, n, 0);
    int seen[JM_MAX_RANK] = { 0 };
    char x[128];
    if (n->attr.ni != a->rank) {
        jm_diag_error(d, n->loc, "permute: the permutation has %d axes but the tensor %s has %d",
                      n->attr.ni, JM_T(x, a), a->rank);
        return -1;
    }
    n->type = *a;
    for (int i = 0; i < a->rank; i++) {
        int64_t p = n->attr.i[i];
        if (p < 0 || p >= a->rank || seen[p]) {
            char perm[128];
            size_t used = 0;
            for (int k = 0; k < n->attr.ni && used < sizeof perm; k++)
                used += (size_t)snprintf(perm + used, sizeof perm - used, "%s%" PRId64, k ? ", " : "", n->attr.i[k]);
            jm_diag_error(d, n->loc, "permute: [%s] is not a permutation of the %d axes of %s", perm, a->rank, JM_T(x, a));
            return -1;
        }
        seen[p] = 1;
        n->type.dim[i] = a->dim[p];
    }
    return 0;
}

static int jm_shape_broadcast(jm_module *m, jm_graph *g, jm_node *n, jm_diags *d) {
    const jm_type *a = jm_src_type(g, n, 0);
    n->type.dtype = a->dtype;
    int ok = a->rank <= n->type.rank;
    for (int i = 0; ok && i < a->rank; i++) {
        int64_t s = a->dim[a->rank - 1 - i], t = n->type.dim[n->type.rank - 1 - i];
        ok = s == t || s == 1;
    }
    if (!ok) {
        char x[128], y[128];
        jm_diag_error(d, n->loc, "cannot broadcast %s to %s", JM_T(x, a), JM_T(y, &n->type));
        return -1;
    }
    return 0;
}

static int jm_shape_slice(jm_module *m, jm_graph *g, jm_node *n, jm_diags *d) {
    const jm_type *a = jm_src_type(g, n, 0);
    char x[128];
    if (n->attr.ni != 3 * a->rank) {
        jm_diag_error(d, n->loc, "slice: %d ranges given for %s", n->attr.ni / 3, JM_T(x, a));
        return -1;
    }
    n->type = *a;
    for (int i = 0; i < a->rank; i++) {
        int64_t lo = n->attr.i[3 * i], hi = n->attr.i[3 * i + 1], st = n->attr.i[3 * i + 2];
        if (st < 1 || lo < 0 || hi > a->dim[i] || lo > hi) {
            jm_diag_error(d, n->loc, "slice %" PRId64 ":%" PRId64 " (step %" PRId64 ") of axis %d is out of range for %s",
                          lo, hi, st, i, JM_T(x, a));
            return -1;
        }
        n->type.dim[i] = (hi - lo + st - 1) / st;
    }
    return 0;
}

static int jm_shape_pad(jm_module *m, jm_graph *g, jm_node *n, jm_diags *d) {
    const jm_type *a = jm_src_type(g, n, 0);
    char x[128];
    if (n->attr.ni != 2 * a->rank) {
        jm_diag_error(d, n->loc, "pad: %d (before, after) pairs given for %s", n->attr.ni / 2, JM_T(x, a));
        return -1;
    }
    n->type = *a;
    for (int i = 0; i < a->rank; i++) {
        if (n->attr.i[2 * i] < 0 || n->attr.i[2 * i + 1] < 0 || n->attr.i[2 * i] > (1 << 20) || n->attr.i[2 * i + 1] > (1 << 20)) {
            jm_diag_error(d, n->loc, "pad: amounts must be between 0 and 1048576");
            return -1;
        }
        n->type.dim[i] += n->attr.i[2 * i] + n->attr.i[2 * i + 1];
    }
    return 0;
}

static int jm_shape_concat(jm_module *m, jm_graph *g, jm_node *n, jm_diags *d) {
    if (n->nsrc < 1) { jm_diag_error(d, n->loc, "concat needs at least one tensor"); return -1; }
    const jm_type *a = jm_src_type(g, n, 0);
    int ax = n->attr.k;
    char x[128], y[128];
    if (ax < 0 || ax >= a->rank) {
        jm_diag_error(d, n->loc, "concat: axis %d is out of range for %s", ax, JM_T(x, a));
        return -1;
    }
    n->type = *a;
    for (int s = 1; s < n->nsrc; s++) {
        const jm_type *b = jm_src_type(g, n, s);
        int ok = b->rank == a->rank && b->dtype == a->dtype;
        for (int i = 0; ok && i < a->rank; i++) ok = i == ax || a->dim[i] == b->dim[i];
        if (!ok) {
            jm_diag_error(d, n->loc, "concat along axis %d: %s and %s do not fit", ax, JM_T(x, a), JM_T(y, b));
            return -1;
        }
        n->type.dim[ax] += b->dim[ax];
    }
    return 0;
}

static int jm_shape_gather(jm_module *m, jm_graph *g, jm_node *n, jm_diags *d) {
    const jm_type *a = jm_src_type(g, n, 0), *ix = jm_src_type(g, n, 1);
    char x[128], y[128];
    if (a->rank < 1 || ix->rank != 1 || !jm_dtype_is_int(ix->dtype)) {
        jm_diag_error(d, n->loc, "gather: rows of %s need a 1-d integer index, got %s", JM_T(x, a), JM_T(y, ix));
        return -1;
    }
    n->type = *a;
    n->type.dim[0] = ix->dim[0];
    return 0;
}

static int jm_shape_scatter(jm_module *m, jm_graph *g, jm_node *n, jm_diags *d) {
    const jm_type *a = jm_src_type(g, n, 0), *ix = jm_src_type(g, n, 1), *v = jm_src_type(g, n, 2);
    char x[128], y[128], z[128];
    jm_type want = *a;
    if (ix->rank == 1) want.dim[0] = ix->dim[0];
    if (a->rank < 1 || ix->rank != 1 || !jm_dtype_is_int(ix->dtype) || !jm_type_equal(&want, v)) {
        jm_diag_error(d, n->loc, "row update of %s at index %s needs values %s, got %s",
                      JM_T(x, a), JM_T(y, ix), JM_T(z, &want), jm_type_str(v, (char[128]){0}, 128));
        return -1;
    }
    n->type = *a;
    return 0;
}

static int jm_shape_onehot(jm_module *m, jm_graph *g, jm_node *n, jm_diags *d) {
    const jm_type *ix = jm_src_type(g, n, 0);
    char x[128];
    if (!jm_dtype_is_int(ix->dtype) || ix->rank >= JM_MAX_RANK || n->attr.k < 1) {
        jm_diag_error(d, n->loc, "onehot needs an integer tensor and classes >= 1, got %s", JM_T(x, ix));
        return -1;
    }
    /* f32, or f64 once the module has been retyped (--precision f64) */
    jm_dtype dt = n->type.dtype == JM_F64 ? JM_F64 : JM_F32;
    n->type = *ix;
    n->type.dtype = dt;
    n->type.dim[n->type.rank++] = n->attr.k;
    return 0;
}

static int jm_shape_matmul(jm_module *m, jm_graph *g, jm_node *n, jm_diags *d) {
    const jm_type *a = jm_src_type(g, n, 0), *b = jm_src_type(g, n, 1);
    char x[128], y[128];
    if (jm_same_dtype(g, n, d, 0, 1)) return -1;
    if (!jm_dtype_is_float(a->dtype) || a->rank < 2 || b->rank < 2 ||
        (b->rank > 2 && b->rank != a->rank) || a->dim[a->rank - 1] != b->dim[b->rank - 2]) {
        jm_diag_error(d, n->loc, "matmul: cannot multiply %s by %s", JM_T(x, a), JM_T(y, b));
        return -1;
    }
    if (b->rank > 2)
        for (int i = 0; i < a->rank - 2; i++)
            if (a->dim[i] != b->dim[i]) {
                jm_diag_error(d, n->loc, "matmul: batch dimensions of %s and %s differ", JM_T(x, a), JM_T(y, b));
                return -1;
            }
    n->type = *a;
    n->type.dim[a->rank - 1] = b->dim[b->rank - 1];
    return 0;
}

/* Output size of a window op; 0 when the (dilated) kernel does not fit the padded
   input (C division would truncate a negative numerator toward zero). */
static int64_t jm_conv_out(int64_t in, int64_t k, int64_t s, int64_t p, int64_t dil) {
    int64_t eff = dil * (k - 1) + 1;
    if (in + 2 * p < eff) return 0;
    return (in + 2 * p - eff) / s + 1;
}


static int jm_shape_conv2d(jm_module *m, jm_graph *g, jm_node *n, jm_diags *d) {
    const jm_type *x = jm_src_type(g, n, 0), *w = jm_src_type(g, n, 1);
    const int64_t *at = n->attr.i;
    char a[128], b[128];
    if (jm_same_dtype(g, n, d, 0, 1)) return -1;
    if (x->rank != 4 || w->rank != 4 || !jm_dtype_is_float(x->dtype)) {
        jm_diag_error(d, n->loc, "conv2d needs a 4-d input [N,C,H,W] and a 4-d weight [O,C/groups,KH,KW], got %s and %s",
                      JM_T(a, x), JM_T(b, w));
        return -1;
    }
    if (at[0] < 1 || at[1] < 1 || at[2] < 0 || at[3] < 0 || at[4] < 1 || at[5] < 1 || at[6] < 1) {
        jm_diag_error(d, n->loc, "conv2d: stride and dilation must be >= 1, padding >= 0, groups >= 1");
        return -1;
    }
    int64_t groups = at[6];
    if (x->dim[1] != w->dim[1] * groups || w->dim[0] % groups != 0) {
        jm_diag_error(d, n->loc, "conv2d: input %s has %" PRId64 " channels but weight %s expects %" PRId64 " (%" PRId64 " per group x %" PRId64 " groups)",
                      JM_T(a, x), x->dim[1], JM_T(b, w), w->dim[1] * groups, w->dim[1], groups);
        return -1;
    }
    int64_t oh = jm_conv_out(x->dim[2], w->dim[2], at[0], at[2], at[4]);
    int64_t ow = jm_conv_out(x->dim[3], w->dim[3], at[1], at[3], at[5]);
    if (oh < 1 || ow < 1) {
        jm_diag_error(d, n->loc, "conv2d: kernel %" PRId64 "x%" PRId64 " does not fit the padded input %s", w->dim[2], w->dim[3], JM_T(a, x));
        return -1;
    }
    int64_t dims[4] = { x->dim[0], w->dim[0], oh, ow };
    n->type = jm_type_make(x->dtype, 4, dims);
    return 0;
}

/* conv2d_bwd_data(dy [N,O,OH,OW], w [O,C/g,KH,KW]) -> [N,C,H,W]: the gradient of
   conv2d with respect to its input, and conv_transpose2d's forward. */
static int jm_shape_conv2d_bwd_data(jm_module *m, jm_graph *g, jm_node *n, jm_diags *d) {
    const jm_type *dy = jm_src_type(g, n, 0), *w = jm_src_type(g, n, 1);
    const int64_t *at = n->attr.i;
    char a[128], b[128];
    if (jm_same_dtype(g, n, d, 0, 1)) return -1;
    if (dy->rank != 4 || w->rank != 4 || !jm_dtype_is_float(dy->dtype) || n->attr.ni < 9 || dy->dim[1] != w->dim[0] ||
        at[6] < 1 || w->dim[0] % at[6] != 0 || at[0] < 1 || at[1] < 1 || at[4] < 1 || at[5] < 1 || at[2] < 0 || at[3] < 0 ||
        at[7] < 1 || at[8] < 1) {
        jm_diag_error(d, n->loc, "transposed convolution: input %s does not fit weight %s (expected [N, %" PRId64 ", H, W])",
                      JM_T(a, dy), JM_T(b, w), w->rank == 4 ? w->dim[0] : -1);
        return -1;
    }
    if (jm_conv_out(at[7], w->dim[2], at[0], at[2], at[4]) != dy->dim[2] || jm_conv_out(at[8], w->dim[3], at[1], at[3], at[5]) != dy->dim[3]) {
        jm_diag_error(d, n->loc, "transposed convolution: output %" PRId64 "x%" PRId64 " is not consistent with input %s, kernel and stride",
                      at[7], at[8], JM_T(a, dy));
        return -1;
    }
    int64_t dims[4] = { dy->dim[0], w->dim[1] * at[6], at[7], at[8] };
    n->type = jm_type_make(dy->dtype, 4, dims);
    return 0;
}

/* conv2d_bwd_filter(x [N,C,H,W], dy [N,O,OH,OW]) -> [O,C/g,KH,KW] */
static int jm_shape_conv2d_bwd_filter(jm_module *m, jm_graph *g, jm_node *n, jm_diags *d) {
    const jm_type *x = jm_src_type(g, n, 0), *dy = jm_src_type(g, n, 1);
    const int64_t *at = n->attr.i;
    char a[128], b[128];
    if (jm_same_dtype(g, n, d, 0, 1)) return -1;
    if (x->rank != 4 || dy->rank != 4 || n->attr.ni < 9 || x->dim[0] != dy->dim[0] || at[6] < 1 || x->dim[1] % at[6] ||
        dy->dim[1] % at[6] || at[7] < 1 || at[8] < 1 || at[0] < 1 || at[1] < 1 || at[4] < 1 || at[5] < 1 ||
        jm_conv_out(x->dim[2], at[7], at[0], at[2], at[4]) != dy->dim[2] || jm_conv_out(x->dim[3], at[8], at[1], at[3], at[5]) != dy->dim[3]) {
        jm_diag_error(d, n->loc, "conv2d filter gradient: input %s and output gradient %s do not fit", JM_T(a, x), JM_T(b, dy));
        return -1;
    }
    int64_t dims[4] = { dy->dim[1], x->dim[1] / at[6], at[7], at[8] };
    n->type = jm_type_make(x->dtype, 4, dims);
    return 0;
}

/* avgpool2d_bwd(dy) -> [N,C,H,W]; maxpool2d_bwd(x, dy) -> like x */
static int jm_shape_pool2d_bwd(jm_module *m, jm_graph *g, jm_node *n, jm_diags *d) {
    const jm_type *dy = jm_src_type(g, n, n->nsrc - 1);
    const int64_t *at = n->attr.i;
    int64_t H = n->nsrc == 2 ? jm_src_type(g, n, 0)->dim[2] : at[6], W = n->nsrc == 2 ? jm_src_type(g, n, 0)->dim[3] : at[7];
    char a[128];
    if (dy->rank != 4 || (n->nsrc == 2 && jm_src_type(g, n, 0)->rank != 4) || n->attr.ni < 6 || at[0] < 1 || at[1] < 1 ||
        at[2] < 1 || at[3] < 1 || jm_conv_out(H, at[0], at[2], at[4], 1) != dy->dim[2] || jm_conv_out(W, at[1], at[3], at[5], 1) != dy->dim[3]) {
        jm_diag_error(d, n->loc, "pooling gradient: output gradient %s does not fit the input", JM_T(a, dy));
        return -1;
    }
    int64_t dims[4] = { dy->dim[0], dy->dim[1], H, W };
    n->type = jm_type_make(dy->dtype, 4, dims);
    return 0;
}

static int jm_shape_pool2d(jm_module *m, jm_graph *g, jm_node *n, jm_diags *d) {
    const jm_type *x = jm_src_type(g, n, 0);
    const int64_t *at = n->attr.i;
    char a[128];
    if (x->rank != 4 || !jm_dtype_is_float(x->dtype)) {
        jm_diag_error(d, n->loc, "%s needs a 4-d floating-point input [N,C,H,W], got %s", jm_op_user_name(n->op), JM_T(a, x));
        return -1;
    }
    if (at[0] < 1 || at[1] < 1 || at[2] < 1 || at[3] < 1 || at[4] < 0 || at[5] < 0 || 2 * at[4] > at[0] || 2 * at[5] > at[1]) {
        jm_diag_error(d, n->loc, "%s: kernel and stride must be >= 1 and padding at most half the kernel", jm_op_user_name(n->op));
        return -1;
    }
    int64_t oh = jm_conv_out(x->dim[2], at[0], at[2], at[4], 1), ow = jm_conv_out(x->dim[3], at[1], at[3], at[5], 1);
    if (oh < 1 || ow < 1) {
        jm_diag_error(d, n->loc, "%s: kernel %" PRId64 "x%" PRId64 " is larger than the input %s", jm_op_user_name(n->op), at[0], at[1], JM_T(a, x));
        return -1;
    }
    int64_t dims[4] = { x->dim[0], x->dim[1], oh, ow };
    n->type = jm_type_make(x->dtype, 4, dims);
    return 0;
}

static int jm_shape_cross_entropy(jm_module *m, jm_graph *g, jm_node *n, jm_diags *d) {
    const jm_type *l = jm_src_type(g, n, 0), *y = jm_src_type(g, n, 1);
    char a[128], b[128];
    if (l->rank != 2 || !jm_dtype_is_float(l->dtype) || y->rank != 1 || !jm_dtype_is_int(y->dtype) || y->dim[0] != l->dim[0]) {
        jm_diag_error(d, n->loc, "cross_entropy needs logits [N,C] and integer labels [N], got %s and %s", JM_T(a, l), JM_T(b, y));
        return -1;
    }
    n->type = jm_type_make(l->dtype, 0, NULL);
    return 0;
}

static int jm_shape_grad(jm_module *m, jm_graph *g, jm_node *n, jm_diags *d) {
    const jm_type *y = jm_src_type(g, n, 0), *x = jm_src_type(g, n, 1);
    char a[128];
    if (y->rank != 0 || !jm_dtype_is_float(y->dtype)) {
        jm_diag_error(d, n->loc, "grad: the first argument must be a floating-point scalar, got %s (use sum(...) or mean(...))", JM_T(a, y));
        return -1;
    }
    if (!jm_dtype_is_float(x->dtype)) {
        jm_diag_error(d, n->loc, "grad: cannot differentiate with respect to %s (not floating-point)", JM_T(a, x));
        return -1;
    }
    n->type = *x;
    return 0;
}

static int jm_shape_loop(jm_module *m, jm_graph *g, jm_node *n, jm_diags *d) {
    int body = (int)n->attr.i[0];
    if (body < 0 || body >= m->ngraphs || n->attr.k > n->nsrc || n->attr.i[1] < 0) {
        jm_diag_error(d, n->loc, "internal error: malformed loop");
        return -1;
    }
    jm_graph *b = &m->graphs[body];
    if (b->nresults != n->attr.k) {
        jm_diag_error(d, n->loc, "internal error: loop body yields %d values for %d carried", b->nresults, n->attr.k);
        return -1;
    }
    for (int i = 0; i < n->attr.k; i++)
        if (!jm_type_equal(&b->node[b->results[i]].type, jm_src_type(g, n, i))) {
            char x[128], y[128];
            jm_diag_error(d, n->loc, "the loop body changes the type of carried value %d from %s to %s", i,
                          JM_T(x, jm_src_type(g, n, i)), JM_T(y, &b->node[b->results[i]].type));
            return -1;
        }
    memset(&n->type, 0, sizeof n->type);
    n->type.dtype = JM_TUPLE;
    return 0;
}

static int jm_shape_loop_out(jm_module *m, jm_graph *g, jm_node *n, jm_diags *d) {
    jm_node *loop = &g->node[n->src[0]];
    if (loop->op != JM_OP_LOOP || n->attr.k < 0 || n->attr.k >= loop->attr.k) {
        jm_diag_error(d, n->loc, "internal error: loop_out of a non-loop");
        return -1;
    }
    n->type = g->node[loop->src[n->attr.k]].type;
    return 0;
}

/* A call of extern i[0]: one argument per declared parameter, each of its
   declared shape and type (a float argument may have the other float type after
   --precision f64 retyped the graph; the call converts), and the declared
   result (its float type follows the graph's the same way). */
static int jm_shape_extern_call(jm_module *m, jm_graph *g, jm_node *n, jm_diags *d) {
    int64_t xi = n->attr.i[0];
    if (xi < 0 || xi >= m->nexterns) {
        jm_diag_error(d, n->loc, "internal error: extern_call of extern %" PRId64 " of %d", xi, m->nexterns);
        return -1;
    }
    const jm_extern *x = &m->externs[xi];
    if (n->nsrc != x->nparams) {
        jm_diag_error(d, n->loc, "%s takes %d argument%s, got %d", x->name, x->nparams, x->nparams == 1 ? "" : "s", n->nsrc);
        return -1;
    }
    for (int i = 0; i < n->nsrc; i++) {
        const jm_type *a = jm_src_type(g, n, i);
        jm_type want = x->params[i];
        if (jm_dtype_is_float(a->dtype) && jm_dtype_is_float(want.dtype)) want.dtype = a->dtype;
        if (!jm_type_equal(a, &want)) {
            char s1[128], s2[128];
            jm_diag_error(d, n->loc, "%s: argument %d has type %s, expected %s", x->name, i + 1, JM_T(s1, a), JM_T(s2, &x->params[i]));
            return -1;
        }
    }
    jm_type r = x->ret;
    if (jm_dtype_is_float(r.dtype) && jm_dtype_is_float(n->type.dtype)) r.dtype = n->type.dtype;
    n->type = r;
    return 0;
}

int jm_shape_infer(jm_module *m, jm_graph *g, jm_node *n, jm_diags *d) {
    if (n->attr.ni < 0 || n->attr.ni > 24) { jm_diag_error(d, n->loc, "internal error: bad attribute count"); return -1; }
    switch (n->op) {
#define JM_OP(e, name, cls, arity, shape, interp, grad) case JM_OP_##e: return jm_shape_##shape(m, g, n, d);
#include "ops.def"
#undef JM_OP
    case JM_OP_COUNT: break;
    }
    jm_diag_error(d, n->loc, "internal error: unknown op %d", (int)n->op);
    return -1;
}
