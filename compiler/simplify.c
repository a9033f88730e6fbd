/* simplify.c — see simplify.h. Each graph is rebuilt node by node: sources are
 * remapped, rewrite rules may answer with an existing node, and otherwise the
 * node is looked up in a hash table of the nodes already built (so structurally
 * equal nodes exist once). A second rebuild then keeps only nodes that reach a
 * program output, a state write or a loop result.
 *
 * Rules, each one exact for every input (including NaN, infinities and -0):
 *   x - 0, x * 1, x / 1 -> x              (0 and 1: constants, possibly broadcast)
 *   neg(neg(x)) -> x,  where(c, a, a) -> a
 *   reshape/broadcast to x's own type -> x,  reshape(reshape(x)) -> reshape(x)
 *   permute(permute(x)) -> one permute (or x),  stop_grad(x) -> x (after autodiff)
 *   unary and binary ops of scalar constants -> a constant (folded in double,
 *   rounded to the result's type)
 * Not applied: x * 0 -> 0 (wrong for NaN and inf, the reason ggml has a FIXME) and
 * x + 0 -> x (wrong for x = -0, since -0 + 0 = +0). */
#include "simplify.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    jm_module *m;
    jm_diags *d;
    int g;                       /* graph being built */
    int after_grad;              /* autodiff has run: stop_grad is an identity */
    int *table; int cap;         /* hash -> node id (open addressing), -1 empty */
} jm_sctx;

static jm_node *SN(jm_sctx *S, int id) { return &S->m->graphs[S->g].node[id]; }

static uint64_t jm_node_hash(const jm_node *n) {
    uint64_t h = 1469598103934665603ull;
#define MIX(v) do { h ^= (uint64_t)(v); h *= 1099511628211ull; } while (0)
    MIX(n->op); MIX(n->nsrc); MIX(n->attr.k); MIX(n->attr.ni); MIX(n->type.dtype); MIX(n->type.rank);
    for (int i = 0; i < n->nsrc; i++) MIX(n->src[i]);
    /* every integer attribute slot: leaves keep their index in i[0] without counting it in ni */
    for (int i = 0; i < 24; i++) MIX(n->attr.i[i]);
    for (int i = 0; i < n->type.rank; i++) MIX(n->type.dim[i]);
    uint64_t fb[2];
    memcpy(fb, n->attr.f, sizeof fb);
    MIX(fb[0]); MIX(fb[1]);
#undef MIX
    return h;
}

static int jm_node_same(const jm_node *a, const jm_node *b) {
    if (a->op != b->op || a->nsrc != b->nsrc || a->attr.k != b->attr.k || a->attr.ni != b->attr.ni ||
        !jm_type_equal(&a->type, &b->type) || memcmp(a->attr.f, b->attr.f, sizeof a->attr.f) != 0)
        return 0;
    for (int i = 0; i < a->nsrc; i++) if (a->src[i] != b->src[i]) return 0;
    return memcmp(a->attr.i, b->attr.i, sizeof a->attr.i) == 0;
}

static void jm_table_insert(jm_sctx *S, int id) {
    uint64_t h = jm_node_hash(SN(S, id));
    for (int p = (int)(h & (uint64_t)(S->cap - 1));; p = (p + 1) & (S->cap - 1))
        if (S->table[p] < 0) { S->table[p] = id; return; }
}

static int jm_table_find(jm_sctx *S, const jm_node *n) {
    uint64_t h = jm_node_hash(n);
    for (int p = (int)(h & (uint64_t)(S->cap - 1));; p = (p + 1) & (S->cap - 1)) {
        if (S->table[p] < 0) return -1;
        if (jm_node_same(SN(S, S->table[p]), n)) return S->table[p];
    }
}

/* The scalar value of a constant (a CONST, or a broadcast of one), or NAN-flagged miss. */
static int jm_const_value(jm_sctx *S, int id, double *v) {
    jm_node *n = SN(S, id);
    if (n->op == JM_OP_BROADCAST) n = SN(S, n->src[0]);
    if (n->op != JM_OP_CONST) return 0;
    *v = n->attr.f[0];
    return 1;
}

static int jm_is_const(jm_sctx *S, int id, double want) {
    double v;
    return jm_const_value(S, id, &v) && v == want;
}

static double jm_round_to(jm_dtype t, double v) {
    switch (t) {
    case JM_F32: return (double)(float)v;
    case JM_I32: return isfinite(v) ? (double)(int32_t)(int64_t)trunc(v) : 0;   /* wraps, as at run time */
    case JM_I64: return isfinite(v) ? trunc(v) : 0;
    case JM_BOOL: return v != 0;
    default: return v;
    }
}

/* Folds an elementwise op over rank-0 constants; 1 and *v on success. */
static int jm_fold_scalar(jm_sctx *S, const jm_node *n, double *v) {
    if (n->type.rank != 0 || jm_ops[n->op].cls != JM_CLASS_ELEMWISE || n->op == JM_OP_STOP_GRAD) return 0;
    double a[3];
    for (int i = 0; i < n->nsrc; i++) {
        jm_node *s = SN(S, n->src[i]);
        if (s->op != JM_OP_CONST) return 0;
        a[i] = jm_round_to(s->type.dtype, s->attr.f[0]);   /* the value the op actually sees */
    }
    double r;
    switch (n->op) {
    case JM_OP_NEG: r = -a[0]; break;
    case JM_OP_EXP: r = exp(a[0]); break;
    case JM_OP_LOG: r = log(a[0]); break;
    case JM_OP_SQRT: r = sqrt(a[0]); break;
    case JM_OP_RECIP: r = 1 / a[0]; break;
    case JM_OP_CAST: r = a[0]; break;
    case JM_OP_ADD: r = a[0] + a[1]; break;
    case JM_OP_SUB: r = a[0] - a[1]; break;
    case JM_OP_MUL: r = a[0] * a[1]; break;
    case JM_OP_DIV:
        if (jm_dtype_is_int(n->type.dtype)) return 0;     /* integer division semantics: leave to run time */
        r = a[0] / a[1]; break;
    case JM_OP_POW: r = pow(a[0], a[1]); break;
    default: return 0;
    }
    *v = jm_round_to(n->type.dtype, r);
    return 1;
}

/* Rewrites node n (sources already mapped); returns an existing node id, or -1. */
static int jm_rewrite(jm_sctx *S, jm_node *n) {
    int a = n->nsrc > 0 ? n->src[0] : -1, b = n->nsrc > 1 ? n->src[1] : -1;
    const jm_type *ta = a >= 0 ? &SN(S, a)->type : NULL;
    switch (n->op) {
    case JM_OP_SUB:
        if (jm_is_const(S, b, 0) && jm_type_equal(ta, &n->type)) return a;
        break;
    case JM_OP_MUL:
        if (jm_is_const(S, b, 1) && jm_type_equal(ta, &n->type)) return a;
        if (jm_is_const(S, a, 1) && jm_type_equal(&SN(S, b)->type, &n->type)) return b;
        break;
    case JM_OP_DIV:
        if (jm_is_const(S, b, 1) && jm_type_equal(ta, &n->type)) return a;
        break;
    case JM_OP_NEG:
        if (SN(S, a)->op == JM_OP_NEG) return SN(S, a)->src[0];
        break;
    case JM_OP_WHERE:
        if (n->src[1] == n->src[2]) return n->src[1];
        break;
    case JM_OP_STOP_GRAD:
        if (S->after_grad) return a;          /* only meaningful to autodiff, which has run */
        break;
    case JM_OP_RESHAPE: case JM_OP_BROADCAST:
        if (jm_type_equal(ta, &n->type)) return a;
        if (n->op == JM_OP_RESHAPE && SN(S, a)->op == JM_OP_RESHAPE) n->src[0] = SN(S, a)->src[0];
        break;
    case JM_OP_PERMUTE: {
        int ident = 1;
        for (int i = 0; i < n->attr.ni; i++) ident &= n->attr.i[i] == i;
        if (ident) return a;
        jm_node *p = SN(S, a);
        if (p->op == JM_OP_PERMUTE) {
            /* permute(permute(x, q), p)[i] takes axis q[p[i]] of x */
            jm_attr c = n->attr;
            for (int i = 0; i < n->attr.ni; i++) c.i[i] = p->attr.i[n->attr.i[i]];
            n->attr = c;
            n->src[0] = p->src[0];
            int id2 = 1;
            for (int i = 0; i < c.ni; i++) id2 &= c.i[i] == i;
            if (id2) return p->src[0];
        }
        break;
    }
    default:
        break;
    }
    return -1;
}

static int jm_simplify_graph(jm_module *m, int g, jm_diags *d, int after_grad) {
    int oldn = m->graphs[g].nnode;
    /* pass 1: rewrite, fold, hash-cons */
    int tmp = jm_graph_new(m, m->graphs[g].parent);
    jm_sctx S = { m, d, tmp, after_grad, NULL, 1 };
    while (S.cap < 2 * oldn + 16) S.cap *= 2;
    S.table = malloc(sizeof(int) * (size_t)S.cap);
    for (int i = 0; i < S.cap; i++) S.table[i] = -1;
    int *map = malloc(sizeof(int) * (size_t)(oldn + 1));
    /* Before autodiff, a value that a grad differentiates with respect to must keep
       its identity: merging it with an equal node (or rewriting it away) would
       make the gradient count the other node's uses too. */
    char *target = calloc((size_t)oldn + 1, 1);
    if (!after_grad)
        for (int i = 0; i < oldn; i++) {
            jm_node *n = &m->graphs[g].node[i];
            if (n->op != JM_OP_GRAD) continue;
            jm_node *w = &m->graphs[g].node[n->src[1]];
            if (w->op != JM_OP_PARAM && w->op != JM_OP_STATE) target[n->src[1]] = 1;
        }
    int rc = 0;
    for (int i = 0; i < oldn && rc == 0; i++) {
        jm_node n = m->graphs[g].node[i];
        int *src = malloc(sizeof(int) * (size_t)(n.nsrc + 1));
        for (int s = 0; s < n.nsrc; s++) src[s] = map[n.src[s]];
        n.src = src;
        if (target[i]) {
            int r = jm_ir_add(m, tmp, n.op, n.src, n.nsrc, &n.attr, &n.type, n.loc, d);
            if (r < 0) rc = -1;
            else m->graphs[tmp].node[r].name = n.name;
            free(src);
            map[i] = r;
            continue;
        }
        int r = jm_rewrite(&S, &n);
        if (r < 0) {
            double v;
            if (jm_fold_scalar(&S, &n, &v)) {
                n.op = JM_OP_CONST;
                n.nsrc = 0;
                memset(&n.attr, 0, sizeof n.attr);
                n.attr.f[0] = v;
            }
            r = jm_table_find(&S, &n);
            if (r < 0) {
                r = jm_ir_add(m, tmp, n.op, n.src, n.nsrc, &n.attr, &n.type, n.loc, d);
                if (r < 0) rc = -1;
                else {
                    m->graphs[tmp].node[r].name = n.name;
                    jm_table_insert(&S, r);
                }
            }
        }
        free(src);
        map[i] = r;
    }
    free(S.table);
    free(target);
    if (rc != 0) { m->ngraphs--; free(map); return rc; }
    /* pass 2: keep what reaches a root (outputs, state writes, loop results).
       Before autodiff every node is kept: a grad nobody reads must still be
       checked (it may be an error). */
    jm_graph *built = &m->graphs[tmp];
    int n1 = built->nnode;
    char *live = calloc((size_t)n1 + 1, 1);
    jm_graph *old = &m->graphs[g];
    for (int r = 0; r < old->nresults; r++) live[map[old->results[r]]] = 1;
    for (int p = 0; p < m->nprograms; p++) {
        jm_program *pr = &m->programs[p];
        if (pr->graph != g) continue;
        for (int k = 0; k < pr->noutputs; k++) live[map[pr->outputs[k].node]] = 1;
        for (int k = 0; k < pr->nwrites; k++) live[map[pr->writes[k].node]] = 1;
        for (int k = 0; k < pr->ninputs; k++) live[map[pr->inputs[k].node]] = 1;   /* inputs stay bound */
    }
    if (!after_grad) memset(live, 1, (size_t)n1);
    for (int i = n1 - 1; i >= 0; i--)
        if (live[i]) for (int s = 0; s < built->node[i].nsrc; s++) live[built->node[i].src[s]] = 1;
    int tmp2 = jm_graph_new(m, old->parent);
    int *map2 = malloc(sizeof(int) * (size_t)(n1 + 1));
    for (int i = 0; i < n1 && rc == 0; i++) {
        if (!live[i]) { map2[i] = -1; continue; }
        jm_node n = m->graphs[tmp].node[i];
        int *src = malloc(sizeof(int) * (size_t)(n.nsrc + 1));
        for (int s = 0; s < n.nsrc; s++) src[s] = map2[n.src[s]];
        map2[i] = jm_ir_add(m, tmp2, n.op, src, n.nsrc, &n.attr, &n.type, n.loc, d);
        if (map2[i] < 0) rc = -1;
        else m->graphs[tmp2].node[map2[i]].name = n.name;
        free(src);
    }
    if (rc == 0) {
        jm_graph final = m->graphs[tmp2];
        old = &m->graphs[g];
        for (int r = 0; r < old->nresults; r++) {
            int v = map2[map[old->results[r]]];
            JM_VEC_PUSH(m->arena, final.results, final.nresults, final.capresults, v);
        }
        final.parent = old->parent;
        for (int p = 0; p < m->nprograms; p++) {
            jm_program *pr = &m->programs[p];
            if (pr->graph != g) continue;
            for (int k = 0; k < pr->ninputs; k++) pr->inputs[k].node = map2[map[pr->inputs[k].node]];
            for (int k = 0; k < pr->noutputs; k++) pr->outputs[k].node = map2[map[pr->outputs[k].node]];
            for (int k = 0; k < pr->nwrites; k++) pr->writes[k].node = map2[map[pr->writes[k].node]];
        }
        *old = final;
    }
    m->ngraphs -= 2;                               /* drop both temporary slots */
    free(live); free(map); free(map2);
    return rc;
}

int jm_simplify(jm_module *m, jm_diags *d, int after_grad) {
    int n = m->ngraphs;
    for (int g = 0; g < n; g++)
        if (jm_simplify_graph(m, g, d, after_grad) != 0) return -1;
    return jm_ir_verify(m, d) == 0 ? 0 : -1;
}
