/* grad.c — see grad.h. The gradient rule of each op is named in ops.def;
 * a rule returns the contribution of the upstream gradient `gy` of node k to
 * its source s, as new IR nodes, JM_NOGRAD when nothing flows to that source,
 * or -1 after reporting an error. */
#include "grad.h"
#include <stdlib.h>
#include <string.h>

#define JM_NOGRAD (-2)

typedef struct {
    jm_module *m;
    jm_diags *d;
    int g;                     /* the graph being built */
    jm_loc loc;                /* the GRAD being expanded: new nodes carry its location */
} jm_gctx;

typedef int (*jm_grad_fn)(jm_gctx *G, int k, int s, int gy);

/* ---- building blocks ------------------------------------------------------------------ */

static jm_node *N(jm_gctx *G, int id) { return &G->m->graphs[G->g].node[id]; }
static const jm_type *T(jm_gctx *G, int id) { return &G->m->graphs[G->g].node[id].type; }
static int S(jm_gctx *G, int k, int s) { return N(G, k)->src[s]; }

static int E(jm_gctx *G, jm_op op, const int *src, int nsrc, const jm_attr *at, const jm_type *t) {
    for (int i = 0; i < nsrc; i++) if (src[i] < 0) return -1;
    return jm_ir_add(G->m, G->g, op, src, nsrc, at, t, G->loc, G->d);
}
static int E1(jm_gctx *G, jm_op op, int a) { return E(G, op, &a, 1, NULL, NULL); }
static int E2(jm_gctx *G, jm_op op, int a, int b) { int s[2] = { a, b }; return E(G, op, s, 2, NULL, NULL); }
static int E3(jm_gctx *G, jm_op op, int a, int b, int c) { int s[3] = { a, b, c }; return E(G, op, s, 3, NULL, NULL); }

static int bcast(jm_gctx *G, int x, const jm_type *to) {
    if (x < 0) return -1;
    jm_type t = *to;
    t.dtype = T(G, x)->dtype;
    if (jm_type_equal(T(G, x), &t)) return x;
    return E(G, JM_OP_BROADCAST, &x, 1, NULL, &t);
}

/* a constant shaped like node `like` */
static int cst(jm_gctx *G, double v, int like) {
    if (like < 0) return -1;
    jm_attr at;
    memset(&at, 0, sizeof at);
    at.f[0] = v;
    jm_type t = jm_type_make(T(G, like)->dtype, 0, NULL);
    return bcast(G, E(G, JM_OP_CONST, NULL, 0, &at, &t), T(G, like));
}

static int add(jm_gctx *G, int a, int b) { return E2(G, JM_OP_ADD, a, b); }
static int sub(jm_gctx *G, int a, int b) { return E2(G, JM_OP_SUB, a, b); }
static int mul(jm_gctx *G, int a, int b) { return E2(G, JM_OP_MUL, a, b); }
static int dvd(jm_gctx *G, int a, int b) { return E2(G, JM_OP_DIV, a, b); }
static int neg(jm_gctx *G, int a) { return E1(G, JM_OP_NEG, a); }
static int scale(jm_gctx *G, int a, double v) { return mul(G, a, cst(G, v, a)); }
static int sel(jm_gctx *G, int c, int a, int b) { return E3(G, JM_OP_WHERE, c, a, b); }

/* Reshapes a reduced value (axes removed) to keep those axes as 1, then broadcasts to `full`. */
static int unreduce(jm_gctx *G, int r, const jm_attr *axes, const jm_type *full) {
    if (r < 0) return -1;
    jm_type keep = *full;
    keep.dtype = T(G, r)->dtype;
    for (int i = 0; i < axes->ni; i++) keep.dim[axes->i[i]] = 1;
    if (!jm_type_equal(T(G, r), &keep)) r = E(G, JM_OP_RESHAPE, &r, 1, NULL, &keep);
    return bcast(G, r, full);
}

/* Sums a broadcast value back to type `to` (numpy rules, aligned from the right). */
static int sum_to(jm_gctx *G, int x, const jm_type *to) {
    if (x < 0) return -1;
    const jm_type *t = T(G, x);
    if (jm_type_equal(t, to)) return x;
    jm_attr at;
    memset(&at, 0, sizeof at);
    int off = t->rank - to->rank;
    for (int i = 0; i < t->rank; i++)
        if (i < off || (to->dim[i - off] == 1 && t->dim[i] != 1)) at.i[at.ni++] = i;
    int r = at.ni ? E(G, JM_OP_SUM, &x, 1, &at, NULL) : x;
    if (r < 0) return -1;
    jm_type want = *to;
    want.dtype = T(G, r)->dtype;
    if (!jm_type_equal(T(G, r), &want)) r = E(G, JM_OP_RESHAPE, &r, 1, NULL, &want);
    return r;
}

/* ---- rules ------------------------------------------------------------------------------ */

#define RULE(name) static int jm_grad_##name(jm_gctx *G, int k, int s, int gy)
#define X0 S(G, k, 0)
#define X1 S(G, k, 1)

RULE(none) { (void)G; (void)k; (void)s; (void)gy; return JM_NOGRAD; }
RULE(unsupported) {
    jm_diag_error(G->d, G->loc, "grad: cannot differentiate through %s (from line %d)", jm_ops[N(G, k)->op].name, N(G, k)->loc.line);
    return -1;
}
/* A user's C function has no derivative: the graph must say that its result is a constant. */
RULE(extern) {
    const jm_node *nd = N(G, k);
    int64_t xi = nd->attr.i[0];
    jm_diag_error(G->d, nd->loc, "extern '%s' has no gradient; wrap its result in detach() to treat it as a constant",
                  xi >= 0 && xi < G->m->nexterns ? G->m->externs[xi].name : "?");
    jm_diag_note(G->d, G->loc, "the gradient that reaches it is taken here");
    return -1;
}
RULE(neg) { return neg(G, gy); }
RULE(exp) { return mul(G, gy, k); }
RULE(log) { return dvd(G, gy, X0); }
RULE(sqrt) { return dvd(G, scale(G, gy, 0.5), k); }
RULE(rsqrt) { return mul(G, scale(G, gy, -0.5), mul(G, k, mul(G, k, k))); }   /* d x^-1/2 = -1/2 y^3 */
RULE(abs) {
    int x = X0, z = cst(G, 0, x);
    return sel(G, E2(G, JM_OP_GT, x, z), gy, sel(G, E2(G, JM_OP_LT, x, z), neg(G, gy), cst(G, 0, gy)));
}
RULE(tanh) { return mul(G, gy, sub(G, cst(G, 1, k), mul(G, k, k))); }
RULE(sigmoid) { return mul(G, gy, mul(G, k, sub(G, cst(G, 1, k), k))); }
RULE(log1p) { return dvd(G, gy, add(G, X0, cst(G, 1, X0))); }
RULE(softplus) { return mul(G, gy, E1(G, JM_OP_SIGMOID, X0)); }
RULE(relu) { return sel(G, E2(G, JM_OP_GT, X0, cst(G, 0, X0)), gy, cst(G, 0, gy)); }
/* PyTorch's LeakyReLU backward uses the slope for x <= 0 */
RULE(leaky_relu) { return sel(G, E2(G, JM_OP_GT, X0, cst(G, 0, X0)), gy, scale(G, gy, N(G, k)->attr.f[0])); }
RULE(recip) { return neg(G, mul(G, gy, mul(G, k, k))); }
RULE(cast) {
    jm_attr at;
    memset(&at, 0, sizeof at);
    at.k = T(G, X0)->dtype;
    return at.k == (int)T(G, gy)->dtype ? gy : E(G, JM_OP_CAST, &gy, 1, &at, NULL);
}
RULE(add) { (void)k; (void)s; return gy; }
RULE(sub) { (void)k; return s == 0 ? gy : neg(G, gy); }
RULE(mul) { return mul(G, gy, s == 0 ? X1 : X0); }
RULE(div) { return s == 0 ? dvd(G, gy, X1) : neg(G, dvd(G, mul(G, gy, k), X1)); }
/* as PyTorch: d/da = 0 where b == 0 (even at a = 0), d/db = 0 where a == 0 and b >= 0 */
RULE(pow) {
    int a = X0, b = X1;
    if (s == 0) {
        int d = mul(G, b, E2(G, JM_OP_POW, a, sub(G, b, cst(G, 1, b))));
        return mul(G, gy, sel(G, E2(G, JM_OP_EQ, b, cst(G, 0, b)), cst(G, 0, d), d));
    }
    int d = mul(G, k, E1(G, JM_OP_LOG, a));
    int zero_base = E2(G, JM_OP_AND, E2(G, JM_OP_EQ, a, cst(G, 0, a)), E2(G, JM_OP_GE, b, cst(G, 0, b)));
    return mul(G, gy, sel(G, zero_base, cst(G, 0, d), d));
}
/* max/min: the larger (smaller) operand takes the gradient; ties split it in half */
static int jm_grad_extreme(jm_gctx *G, int k, int s, int gy, jm_op better) {
    int me = S(G, k, s), other = S(G, k, 1 - s);
    int half = scale(G, gy, 0.5), zero = cst(G, 0, gy);
    return sel(G, E2(G, better, me, other), gy, sel(G, E2(G, JM_OP_EQ, me, other), half, zero));
}
RULE(max) { return jm_grad_extreme(G, k, s, gy, JM_OP_GT); }
RULE(min) { return jm_grad_extreme(G, k, s, gy, JM_OP_LT); }
RULE(where) {
    if (s == 0) return JM_NOGRAD;
    int zero = cst(G, 0, gy);
    return s == 1 ? sel(G, X0, gy, zero) : sel(G, X0, zero, gy);
}
RULE(sum) { (void)s; return unreduce(G, gy, &N(G, k)->attr, T(G, X0)); }
/* max reduction: the gradient is shared evenly by the maxima of each slice */
RULE(rmax) {
    (void)s;
    jm_attr axes = N(G, k)->attr;
    const jm_type *xt = T(G, X0);
    int mask = E2(G, JM_OP_EQ, X0, unreduce(G, k, &axes, xt));
    jm_attr cast;
    memset(&cast, 0, sizeof cast);
    cast.k = xt->dtype;
    int m = E(G, JM_OP_CAST, &mask, 1, &cast, NULL);
    int count = E(G, JM_OP_SUM, &m, 1, &axes, NULL);
    return mul(G, m, unreduce(G, dvd(G, gy, count), &axes, xt));
}
RULE(logsumexp) {
    (void)s;
    jm_attr axes = N(G, k)->attr;
    const jm_type *xt = T(G, X0);
    return mul(G, unreduce(G, gy, &axes, xt), E1(G, JM_OP_EXP, sub(G, X0, unreduce(G, k, &axes, xt))));
}
RULE(reshape) { (void)s; return E(G, JM_OP_RESHAPE, &gy, 1, NULL, T(G, X0)); }
RULE(permute) {
    (void)s;
    jm_attr inv;
    memset(&inv, 0, sizeof inv);
    const jm_attr *p = &N(G, k)->attr;
    inv.ni = p->ni;
    for (int i = 0; i < p->ni; i++) inv.i[p->i[i]] = i;
    return E(G, JM_OP_PERMUTE, &gy, 1, &inv, NULL);
}
RULE(broadcast) { (void)s; return sum_to(G, gy, T(G, X0)); }
RULE(slice) {
    (void)s;
    const jm_attr *a = &N(G, k)->attr;
    const jm_type *xt = T(G, X0);
    jm_attr pad;
    memset(&pad, 0, sizeof pad);
    for (int i = 0; i < xt->rank; i++) {
        if (a->i[3 * i + 2] != 1) {
            jm_diag_error(G->d, G->loc, "grad: cannot differentiate a strided slice (step %lld) yet", (long long)a->i[3 * i + 2]);
            return -1;
        }
        pad.i[2 * i] = a->i[3 * i];
        pad.i[2 * i + 1] = xt->dim[i] - a->i[3 * i + 1];
    }
    pad.ni = 2 * xt->rank;
    return E(G, JM_OP_PAD, &gy, 1, &pad, NULL);
}
RULE(pad) {
    (void)s;
    const jm_attr *a = &N(G, k)->attr;
    const jm_type *xt = T(G, X0);
    jm_attr sl;
    memset(&sl, 0, sizeof sl);
    for (int i = 0; i < xt->rank; i++) {
        sl.i[3 * i] = a->i[2 * i];
        sl.i[3 * i + 1] = a->i[2 * i] + xt->dim[i];
        sl.i[3 * i + 2] = 1;
    }
    sl.ni = 3 * xt->rank;
    return E(G, JM_OP_SLICE, &gy, 1, &sl, NULL);
}
RULE(concat) {
    jm_node *n = N(G, k);
    int ax = n->attr.k;
    int64_t off = 0;
    for (int i = 0; i < s; i++) off += T(G, n->src[i])->dim[ax];
    const jm_type *t = T(G, gy);
    jm_attr sl;
    memset(&sl, 0, sizeof sl);
    for (int i = 0; i < t->rank; i++) {
        sl.i[3 * i] = i == ax ? off : 0;
        sl.i[3 * i + 1] = i == ax ? off + T(G, N(G, k)->src[s])->dim[ax] : t->dim[i];
        sl.i[3 * i + 2] = 1;
    }
    sl.ni = 3 * t->rank;
    return E(G, JM_OP_SLICE, &gy, 1, &sl, NULL);
}
RULE(gather) {
    if (s != 0) return JM_NOGRAD;
    return E3(G, JM_OP_INDEX_ADD, cst(G, 0, X0), X1, gy);
}
/* scatter: rows that were overwritten get no gradient in the base; the written
   values get the gradient of their rows (with a repeated index, every copy gets it) */
RULE(scatter) {
    if (s == 1) return JM_NOGRAD;
    int ix = X1;
    if (s == 0) return E3(G, JM_OP_SCATTER, gy, ix, cst(G, 0, S(G, k, 2)));
    return E2(G, JM_OP_GATHER, gy, ix);
}
RULE(index_add) {
    if (s == 1) return JM_NOGRAD;
    return s == 0 ? gy : E2(G, JM_OP_GATHER, gy, X1);
}
static int transpose_last(jm_gctx *G, int x) {
    const jm_type *t = T(G, x);
    jm_attr p;
    memset(&p, 0, sizeof p);
    for (int i = 0; i < t->rank; i++) p.i[i] = i;
    p.i[t->rank - 2] = t->rank - 1;
    p.i[t->rank - 1] = t->rank - 2;
    p.ni = t->rank;
    return E(G, JM_OP_PERMUTE, &x, 1, &p, NULL);
}
RULE(matmul) {
    int a = X0, b = X1;
    if (s == 0) return E2(G, JM_OP_MATMUL, gy, transpose_last(G, b));
    const jm_type *at = T(G, a);
    if (T(G, b)->rank == at->rank) return E2(G, JM_OP_MATMUL, transpose_last(G, a), gy);
    /* b is shared by every batch row: flatten a and gy to 2-d first */
    int64_t K = at->dim[at->rank - 1], Nn = T(G, gy)->dim[T(G, gy)->rank - 1], rows = jm_type_numel(at) / (K ? K : 1);
    int64_t d2[2] = { rows, K }, g2[2] = { rows, Nn };
    jm_type ta = jm_type_make(at->dtype, 2, d2), tg = jm_type_make(at->dtype, 2, g2);
    int a2 = E(G, JM_OP_RESHAPE, &a, 1, NULL, &ta), gy2 = E(G, JM_OP_RESHAPE, &gy, 1, NULL, &tg);
    return E2(G, JM_OP_MATMUL, transpose_last(G, a2), gy2);
}
RULE(conv2d) {
    jm_attr at = N(G, k)->attr;
    if (s == 0) {
        at.i[7] = T(G, X0)->dim[2];
        at.i[8] = T(G, X0)->dim[3];
        at.ni = 9;
        int src[2] = { gy, X1 };
        return E(G, JM_OP_CONV2D_BWD_DATA, src, 2, &at, NULL);
    }
    at.i[7] = T(G, X1)->dim[2];
    at.i[8] = T(G, X1)->dim[3];
    at.ni = 9;
    int src[2] = { X0, gy };
    return E(G, JM_OP_CONV2D_BWD_FILTER, src, 2, &at, NULL);
}
/* z = bwd_data(dy, w) is bilinear: <z, G> = <conv2d(G, w), dy> */
RULE(conv2d_bwd_data) {
    jm_attr at = N(G, k)->attr;
    if (s == 0) {
        at.ni = 7;
        int src[2] = { gy, X1 };
        return E(G, JM_OP_CONV2D, src, 2, &at, NULL);
    }
    at.i[7] = T(G, X1)->dim[2];
    at.i[8] = T(G, X1)->dim[3];
    int src[2] = { gy, X0 };
    return E(G, JM_OP_CONV2D_BWD_FILTER, src, 2, &at, NULL);
}
/* dw = bwd_filter(x, dy): <dw, H> = <conv2d(x, H), dy> */
RULE(conv2d_bwd_filter) {
    jm_attr at = N(G, k)->attr;
    if (s == 0) {
        at.i[7] = T(G, X0)->dim[2];
        at.i[8] = T(G, X0)->dim[3];
        int src[2] = { X1, gy };
        return E(G, JM_OP_CONV2D_BWD_DATA, src, 2, &at, NULL);
    }
    at.ni = 7;
    int src[2] = { X0, gy };
    return E(G, JM_OP_CONV2D, src, 2, &at, NULL);
}
RULE(avgpool2d) {
    (void)s;
    jm_attr at = N(G, k)->attr;
    at.i[6] = T(G, X0)->dim[2];
    at.i[7] = T(G, X0)->dim[3];
    at.ni = 8;
    return E(G, JM_OP_AVGPOOL2D_BWD, &gy, 1, &at, NULL);
}
RULE(avgpool2d_bwd) {
    (void)s;
    jm_attr at = N(G, k)->attr;
    at.ni = 6;
    return E(G, JM_OP_AVGPOOL2D, &gy, 1, &at, NULL);
}
RULE(maxpool2d) {
    (void)s;
    jm_attr at = N(G, k)->attr;
    int src[2] = { X0, gy };
    return E(G, JM_OP_MAXPOOL2D_BWD, src, 2, &at, NULL);
}
RULE(softmax) {
    (void)s;
    jm_attr axes;
    memset(&axes, 0, sizeof axes);
    axes.i[0] = N(G, k)->attr.k;
    axes.ni = 1;
    int gys = mul(G, gy, k);
    int r = E(G, JM_OP_SUM, &gys, 1, &axes, NULL);
    return mul(G, k, sub(G, gy, unreduce(G, r, &axes, T(G, k))));
}
RULE(log_softmax) {
    (void)s;
    jm_attr axes;
    memset(&axes, 0, sizeof axes);
    axes.i[0] = N(G, k)->attr.k;
    axes.ni = 1;
    int r = E(G, JM_OP_SUM, &gy, 1, &axes, NULL);
    return sub(G, gy, mul(G, E1(G, JM_OP_EXP, k), unreduce(G, r, &axes, T(G, k))));
}
/* mean over rows of -(1-eps) log p[y] - eps mean_c log p[c]:
   d/dlogits = (softmax - (1-eps) onehot(y) - eps/C) * g / N */
RULE(cross_entropy) {
    if (s == 1) return JM_NOGRAD;
    int l = X0;
    const jm_type *lt = T(G, l);
    double eps = N(G, k)->attr.f[0];
    int64_t Nr = lt->dim[0], C = lt->dim[1];
    jm_attr sm;
    memset(&sm, 0, sizeof sm);
    sm.k = 1;
    int p = E(G, JM_OP_SOFTMAX, &l, 1, &sm, NULL);
    jm_attr oh;
    memset(&oh, 0, sizeof oh);
    oh.k = (int)C;
    int y = X1;
    int onehot = E(G, JM_OP_ONEHOT, &y, 1, &oh, NULL);
    if (onehot >= 0 && T(G, onehot)->dtype != lt->dtype) {
        jm_attr c;
        memset(&c, 0, sizeof c);
        c.k = lt->dtype;
        onehot = E(G, JM_OP_CAST, &onehot, 1, &c, NULL);
    }
    int target = scale(G, onehot, 1 - eps);
    if (eps != 0) target = add(G, target, cst(G, eps / (double)C, target));
    return mul(G, sub(G, p, target), bcast(G, scale(G, gy, 1.0 / (double)Nr), lt));
}

static const jm_grad_fn jm_grad_rules[JM_OP_COUNT] = {
#define JM_OP(e, name, cls, arity, shape, interp, grad) [JM_OP_##e] = jm_grad_##grad,
#include "ops.def"
#undef JM_OP
};

/* ---- the backward sweep -------------------------------------------------------------------- */

typedef struct { int node; int global; } jm_target;   /* node in the new graph, or a global (all its uses) */

static int jm_is_target(jm_gctx *G, int i, const jm_target *t, int nt) {
    jm_node *n = N(G, i);
    for (int k = 0; k < nt; k++) {
        if (t[k].node == i) return 1;
        if (t[k].global >= 0 && (n->op == JM_OP_PARAM || n->op == JM_OP_STATE) && n->attr.i[0] == t[k].global) return 1;
    }
    return 0;
}

/* Does a loop's result depend on a target: through its sources, or through the
   parameters and state its body (or a nested body) reads? */
static int jm_body_reads_target(jm_module *m, int body, const jm_target *t, int nt) {
    jm_graph *b = &m->graphs[body];
    for (int i = 0; i < b->nnode; i++) {
        jm_node *nd = &b->node[i];
        if (nd->op == JM_OP_LOOP && jm_body_reads_target(m, (int)nd->attr.i[0], t, nt)) return 1;
        if (nd->op != JM_OP_PARAM && nd->op != JM_OP_STATE) continue;
        for (int k = 0; k < nt; k++) if (t[k].global == nd->attr.i[0]) return 1;
    }
    return 0;
}

static int jm_loop_depends(jm_gctx *G, int loop, const char *dep, const jm_target *t, int nt) {
    jm_node *nd = N(G, loop);
    for (int s = 0; s < nd->nsrc; s++) if (dep[nd->src[s]]) return 1;
    return jm_body_reads_target(G->m, (int)nd->attr.i[0], t, nt);
}

/* Gradients of scalar y with respect to each target; out[k] gets a node id. */
static int jm_backward(jm_gctx *G, int y, const jm_target *t, int nt, int *out) {
    if (y < 0) return -1;
    int n = y + 1;
    char *dep = calloc((size_t)n, 1), *need = calloc((size_t)n, 1);
    int *adj = malloc(sizeof(int) * (size_t)n);
    int rc = 0;
    /* dep: depends on a target through differentiable ops */
    for (int i = 0; i < n; i++) {
        adj[i] = -1;
        jm_node *nd = N(G, i);
        if (jm_is_target(G, i, t, nt)) { dep[i] = 1; continue; }
        if (!jm_dtype_is_float(nd->type.dtype) || jm_grad_rules[nd->op] == jm_grad_none) continue;
        for (int s = 0; s < nd->nsrc; s++) dep[i] |= dep[nd->src[s]];
    }
    /* A sampler's result acts as a constant. If the loss depends on a target only
       through a sampler, the gradient would silently miss that path: refuse, and
       point at detach() for the intended (JEM) meaning. */
    char *through = calloc((size_t)n, 1);
    through[y] = 1;
    for (int i = y; i >= 0 && rc == 0; i--) {
        if (!through[i]) continue;
        jm_node *nd = N(G, i);
        if (nd->op == JM_OP_LOOP_OUT && jm_loop_depends(G, nd->src[0], dep, t, nt)) {
            jm_diag_error(G->d, G->loc, "grad: the value depends on a sampler's result (line %d), and gradients do not flow "
                          "through sampler loops; wrap the sampler call in detach() to treat its samples as constants",
                          nd->loc.line);
            rc = -1;
            break;
        }
        if (!jm_dtype_is_float(nd->type.dtype) || jm_grad_rules[nd->op] == jm_grad_none) continue;
        for (int s = 0; s < nd->nsrc; s++) through[nd->src[s]] = 1;
    }
    free(through);
    if (rc) { free(dep); free(need); free(adj); return -1; }
    need[y] = dep[y];
    for (int i = y; i >= 0; i--) {
        if (!need[i]) continue;
        jm_node *nd = N(G, i);
        for (int s = 0; s < nd->nsrc; s++)
            if (dep[nd->src[s]]) need[nd->src[s]] = 1;
    }
    if (need[y]) adj[y] = cst(G, 1, y);
    for (int i = y; i >= 0 && rc == 0; i--) {
        if (!need[i] || adj[i] < 0) continue;
        int nsrc = N(G, i)->nsrc;
        if (jm_grad_rules[N(G, i)->op] == jm_grad_none) continue;      /* a target leaf */
        for (int s = 0; s < nsrc; s++) {
            int src = N(G, i)->src[s];
            if (!need[src]) continue;
            int c = jm_grad_rules[N(G, i)->op](G, i, s, adj[i]);
            if (c == JM_NOGRAD) continue;
            if (c < 0) { rc = -1; break; }
            adj[src] = adj[src] < 0 ? c : add(G, adj[src], c);
            if (adj[src] < 0) { rc = -1; break; }
        }
    }
    for (int k = 0; k < nt && rc == 0; k++) {
        int sum = -1;
        for (int i = 0; i < n; i++) {
            int hit = t[k].node == i || (t[k].global >= 0 && (N(G, i)->op == JM_OP_PARAM || N(G, i)->op == JM_OP_STATE) &&
                                         N(G, i)->attr.i[0] == t[k].global);
            if (!hit || adj[i] < 0) continue;
            sum = sum < 0 ? adj[i] : add(G, sum, adj[i]);
        }
        /* y does not depend on the target: the gradient is zero */
        out[k] = sum >= 0 ? sum : -3;
    }
    free(dep); free(need); free(adj);
    return rc;
}

/* ---- rebuilding a graph with its GRAD nodes expanded ---------------------------------------- */

static int jm_autodiff_graph(jm_module *m, int g, jm_diags *d) {
    int oldn = m->graphs[g].nnode;
    int tmp = jm_graph_new(m, m->graphs[g].parent);
    jm_gctx G = { m, d, tmp, jm_noloc };
    int *map = malloc(sizeof(int) * (size_t)(oldn + 1));
    int *pre = malloc(sizeof(int) * (size_t)(oldn + 1));     /* GRAD results computed in a shared sweep */
    for (int i = 0; i < oldn; i++) pre[i] = -1;
    int rc = 0;
    for (int i = 0; i < oldn && rc == 0; i++) {
        jm_node on = m->graphs[g].node[i];
        if (on.op != JM_OP_GRAD) {
            int *src = malloc(sizeof(int) * (size_t)(on.nsrc + 1));
            for (int s = 0; s < on.nsrc; s++) src[s] = map[on.src[s]];
            int id = jm_ir_add(m, tmp, on.op, src, on.nsrc, &on.attr, &on.type, on.loc, d);
            free(src);
            if (id < 0) { rc = -1; break; }
            m->graphs[tmp].node[id].name = on.name;
            map[i] = id;
            continue;
        }
        if (pre[i] >= 0) { map[i] = pre[i]; continue; }
        /* this GRAD and every later GRAD of the same y whose target is known now */
        int oy = on.src[0];
        int cap = 0, nt = 0, *which = NULL;
        jm_target *tg = NULL;
        for (int j = i; j < oldn; j++) {
            jm_node *oj = &m->graphs[g].node[j];
            if (oj->op != JM_OP_GRAD || oj->src[0] != oy || pre[j] >= 0) continue;
            jm_node *ow = &m->graphs[g].node[oj->src[1]];
            jm_target t = { -1, -1 };
            if (ow->op == JM_OP_PARAM || ow->op == JM_OP_STATE) t.global = (int)ow->attr.i[0];
            else if (oj->src[1] < i) t.node = map[oj->src[1]];
            else continue;
            if (nt == cap) {
                cap = cap ? 2 * cap : 8;
                tg = realloc(tg, sizeof *tg * (size_t)cap);
                which = realloc(which, sizeof(int) * (size_t)cap);
            }
            tg[nt] = t;
            which[nt++] = j;
        }
        G.loc = on.loc;
        int *res = malloc(sizeof(int) * (size_t)nt);
        rc = jm_backward(&G, map[oy], tg, nt, res);
        for (int k = 0; k < nt && rc == 0; k++) {
            int r = res[k];
            if (r == -3) {
                /* zero gradient, shaped like the target */
                jm_node *ow = &m->graphs[g].node[m->graphs[g].node[which[k]].src[1]];
                jm_attr at;
                memset(&at, 0, sizeof at);
                jm_type st = jm_type_make(ow->type.dtype, 0, NULL);
                int z = jm_ir_add(m, tmp, JM_OP_CONST, NULL, 0, &at, &st, on.loc, d);
                r = bcast(&G, z, &ow->type);
            }
            /* each result gets a node of its own (an identity reshape, removed later):
               one sweep may give two targets the same node, and a later grad with
               respect to one of them must not count the other's uses */
            if (r >= 0) r = E(&G, JM_OP_RESHAPE, &r, 1, NULL, T(&G, r));
            if (r < 0) { rc = -1; break; }
            pre[which[k]] = r;
        }
        free(res); free(tg); free(which);
        if (rc == 0) map[i] = pre[i];
    }
    /* the new graph replaces the old one in place (same index, same parent) */
    if (rc == 0) jm_graph_replace(m, g, tmp, map);
    else m->ngraphs--;                             /* drop the temporary slot */
    free(map);
    free(pre);
    return rc;
}

int jm_autodiff(jm_module *m, jm_diags *d) {
    int n = m->ngraphs;
    for (int g = 0; g < n; g++) {
        int has = 0;
        for (int i = 0; i < m->graphs[g].nnode && !has; i++) has = m->graphs[g].node[i].op == JM_OP_GRAD;
        if (has && jm_autodiff_graph(m, g, d) != 0) return -1;
    }
    return jm_ir_verify(m, d) == 0 ? 0 : -1;
}
