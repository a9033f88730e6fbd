/* lower.c — see lower.h. Each graph is rebuilt node by node (sources remapped);
 * a composite is replaced by its primitive expansion, everything else is
 * copied. The expansions, with m the maximum over the reduced axes:
 *
 *   logsumexp(x)   = where(finite(m), ms + log(sum(exp(x - ms))), m),  ms = where(finite(m), m, 0)
 *                    (an all -inf row gives -inf, a +inf or NaN maximum gives itself, as the interpreter)
 *   softmax(x)     = exp(x - lse(x))          log_softmax(x) = x - lse(x)      (lse over the axis)
 *   cross_entropy(l, y) = sum_r( -(1-eps) * logp[r, y_r] - eps * mean_c logp[r, c] ) / N,
 *                    logp = log_softmax(l), the picked entry as sum(logp * onehot(y))
 *
 * They are exact rewrites up to rounding: the reference interpreter evaluates
 * the composites directly, and the compiled code is compared with it. */
#include "lower.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct { jm_module *m; jm_diags *d; int g; jm_loc loc; int failed; } jm_lctx;

static int L(jm_lctx *C, jm_op op, const int *src, int nsrc, const jm_attr *at, const jm_type *t) {
    if (C->failed) return -1;
    jm_attr a;
    if (!at) { memset(&a, 0, sizeof a); at = &a; }
    int id = jm_ir_add(C->m, C->g, op, src, nsrc, at, t, C->loc, C->d);
    if (id < 0) C->failed = 1;
    return id;
}
static const jm_type *LT_(jm_lctx *C, int id) { return &C->m->graphs[C->g].node[id].type; }
static int L1(jm_lctx *C, jm_op op, int a) { return L(C, op, &a, 1, NULL, NULL); }
static int L2(jm_lctx *C, jm_op op, int a, int b) { int s[2] = { a, b }; return L(C, op, s, 2, NULL, NULL); }
static int L3(jm_lctx *C, jm_op op, int a, int b, int c) { int s[3] = { a, b, c }; return L(C, op, s, 3, NULL, NULL); }

/* a constant shaped like `like` (a scalar broadcast) */
static int jm_lconst(jm_lctx *C, double v, const jm_type *like) {
    if (C->failed) return -1;
    jm_attr at;
    memset(&at, 0, sizeof at);
    at.f[0] = v;
    jm_type st = jm_type_make(like->dtype, 0, NULL);
    int c = L(C, JM_OP_CONST, NULL, 0, &at, &st);
    if (like->rank == 0 || c < 0) return c;
    jm_type t = *like;
    return L(C, JM_OP_BROADCAST, &c, 1, NULL, &t);
}

/* r (x reduced over `axes`) broadcast back to x's shape */
static int jm_unreduce(jm_lctx *C, int r, const int64_t *axes, int nax, const jm_type *full) {
    if (C->failed) return -1;
    jm_type keep = *full;
    for (int i = 0; i < nax; i++) keep.dim[axes[i]] = 1;
    int k = L(C, JM_OP_RESHAPE, &r, 1, NULL, &keep);
    return L(C, JM_OP_BROADCAST, &k, 1, NULL, full);
}

static int jm_reduce(jm_lctx *C, jm_op op, int x, const int64_t *axes, int nax) {
    jm_attr at;
    memset(&at, 0, sizeof at);
    for (int i = 0; i < nax; i++) at.i[i] = axes[i];
    at.ni = nax;
    return L(C, op, &x, 1, &at, NULL);
}

static int jm_lower_lse(jm_lctx *C, int x, const int64_t *axes, int nax) {
    int m = jm_reduce(C, JM_OP_RMAX, x, axes, nax);
    if (m < 0) return -1;
    jm_type mt = *LT_(C, m);
    int finite = L2(C, JM_OP_LT, L1(C, JM_OP_ABS, m), jm_lconst(C, INFINITY, &mt));
    int ms = L3(C, JM_OP_WHERE, finite, m, jm_lconst(C, 0, &mt));
    int sh = L2(C, JM_OP_SUB, x, jm_unreduce(C, ms, axes, nax, LT_(C, x)));
    int s = jm_reduce(C, JM_OP_SUM, L1(C, JM_OP_EXP, sh), axes, nax);
    int r = L2(C, JM_OP_ADD, ms, L1(C, JM_OP_LOG, s));
    return L3(C, JM_OP_WHERE, finite, r, m);
}

/* x - lse(x) over one axis, shaped like x */
static int jm_lower_logp(jm_lctx *C, int x, int axis) {
    int64_t ax = axis;
    int lse = jm_lower_lse(C, x, &ax, 1);
    if (lse < 0) return -1;
    return L2(C, JM_OP_SUB, x, jm_unreduce(C, lse, &ax, 1, LT_(C, x)));
}

static int jm_lower_cross_entropy(jm_lctx *C, const jm_node *n, int l, int y) {
    jm_type lt = *LT_(C, l);
    int64_t N = lt.dim[0], Cc = lt.dim[1], ax1 = 1, ax0 = 0;
    double eps = n->attr.f[0];
    int logp = jm_lower_logp(C, l, 1);
    jm_attr oh;
    memset(&oh, 0, sizeof oh);
    oh.k = (int)Cc;
    int onehot = L(C, JM_OP_ONEHOT, &y, 1, &oh, NULL);
    if (onehot < 0) return -1;
    if (LT_(C, onehot)->dtype != lt.dtype) {
        jm_attr ca;
        memset(&ca, 0, sizeof ca);
        ca.k = lt.dtype;
        onehot = L(C, JM_OP_CAST, &onehot, 1, &ca, NULL);
    }
    int picked = jm_reduce(C, JM_OP_SUM, L2(C, JM_OP_MUL, logp, onehot), &ax1, 1);
    int total = jm_reduce(C, JM_OP_SUM, logp, &ax1, 1);
    if (total < 0) return -1;
    jm_type rt = *LT_(C, total);
    int row = L2(C, JM_OP_ADD, L2(C, JM_OP_MUL, picked, jm_lconst(C, -(1 - eps), &rt)),
                 L2(C, JM_OP_MUL, total, jm_lconst(C, -eps / (double)Cc, &rt)));
    int sum = jm_reduce(C, JM_OP_SUM, row, &ax0, 1);
    if (sum < 0) return -1;
    return L2(C, JM_OP_DIV, sum, jm_lconst(C, (double)N, LT_(C, sum)));
}

static int jm_lower_graph(jm_module *m, int g, jm_diags *d) {
    int oldn = m->graphs[g].nnode;
    int tmp = jm_graph_new(m, m->graphs[g].parent);
    jm_lctx C = { m, d, tmp, jm_noloc, 0 };
    int *map = malloc(sizeof(int) * (size_t)(oldn + 1));
    for (int i = 0; i < oldn && !C.failed; i++) {
        jm_node on = m->graphs[g].node[i];
        int src[3] = { 0, 0, 0 };
        for (int s = 0; s < on.nsrc && s < 3; s++) src[s] = map[on.src[s]];
        C.loc = on.loc;
        int id;
        switch (on.op) {
        case JM_OP_LOGSUMEXP: id = jm_lower_lse(&C, src[0], on.attr.i, on.attr.ni); break;
        case JM_OP_LOG_SOFTMAX: id = jm_lower_logp(&C, src[0], on.attr.k); break;
        case JM_OP_SOFTMAX: id = L1(&C, JM_OP_EXP, jm_lower_logp(&C, src[0], on.attr.k)); break;
        case JM_OP_CROSS_ENTROPY: id = jm_lower_cross_entropy(&C, &on, src[0], src[1]); break;
        default: {
            int *all = malloc(sizeof(int) * (size_t)(on.nsrc + 1));
            for (int s = 0; s < on.nsrc; s++) all[s] = map[on.src[s]];
            id = L(&C, on.op, all, on.nsrc, &on.attr, &on.type);
            free(all);
            if (id >= 0) m->graphs[tmp].node[id].name = on.name;
            break;
        }
        }
        map[i] = id;
    }
    int rc = C.failed ? -1 : 0;
    if (rc == 0) jm_graph_replace(m, g, tmp, map);
    else m->ngraphs--;                             /* drop the temporary slot */
    free(map);
    return rc;
}

int jm_lower(jm_module *m, jm_diags *d) {
    int n = m->ngraphs;
    for (int g = 0; g < n; g++) {
        int has = 0;
        for (int i = 0; i < m->graphs[g].nnode && !has; i++)
            has = jm_ops[m->graphs[g].node[i].op].cls == JM_CLASS_COMPOSITE;
        if (has && jm_lower_graph(m, g, d) != 0) return -1;
    }
    return jm_ir_verify(m, d) == 0 ? 0 : -1;
}
