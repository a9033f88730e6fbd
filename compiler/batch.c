/* batch.c — twin batching (batch.h): pairs of same-model evaluations run as one
 * evaluation of twice the batch.
 *
 * Phase 1 (analysis) pairs nodes: seeds are conv2d / matmul nodes with the same
 * weight node, attributes and input type; a pair grows back through its
 * per-example sources. Phase 2 rebuilds the graph depth-first, emitting one
 * node of batch 2B per pair; nodes outside a pair read their half through a
 * slice. A dependency cycle through the new nodes (possible in contrived graphs
 * where each half feeds the other's ancestors) leaves that graph as it was. */
#include <stdlib.h>
#include <string.h>
#include "batch.h"
#include "arena.h"

int jm_batch_wanted(jm_batch_mode mode, const char *target) {
    if (mode != JM_BATCH_AUTO) return mode == JM_BATCH_ON;
    /* The CPU backend's convolutions scale linearly in the batch from 64 up
       (bench/RESULTS.md, "twin batching": jem_mnist jem_loss 53 ms at batch 64
       against 106 ms at 128 on 2 threads), so the concatenation would be pure
       cost there. A GPU is far from full at batch 64 on these models. */
    return target && strcmp(target, "cuda") == 0;
}

typedef struct {
    jm_module *m;
    jm_diags *d;
    int g, tmp, n;
    int *partner;      /* the other half of a node's pair, -1 when unpaired */
    char *first;       /* 1 on the pair's first half (rows [0, B)), 0 on the second */
    char *fixed;       /* nodes a grad differentiates with respect to: never paired */
    int *map;          /* old node -> new node (halves: their slice) */
    int *bmap;         /* first half -> the batched node */
    char *state;       /* emission: 0 new, 1 in progress, 2 done (first halves: of the batched node) */
    char *bstate;
    int *seen, *stack; int stamp;   /* reachability: marks and the walk's stack */
    int cycle, failed, pairs;
} jm_bctx;

static jm_node *N(jm_bctx *C, int id) { return &C->m->graphs[C->g].node[id]; }

static int jm_attr_same(const jm_attr *a, const jm_attr *b) {
    if (a->ni != b->ni || a->k != b->k || a->f[0] != b->f[0] || a->f[1] != b->f[1]) return 0;
    for (int i = 0; i < a->ni; i++)
        if (a->i[i] != b->i[i]) return 0;
    return 1;
}

/* Which sources of n carry its batch rows (bit s for source s), or -1 when n
   is not per-example along axis 0: each output row must depend on the same
   row of those sources only. The other sources must be the same node in both
   halves (a weight). */
static int jm_rows_mask(jm_bctx *C, const jm_node *n) {
    const jm_graph *gr = &C->m->graphs[C->g];
    if (n->type.rank < 1 || n->type.dim[0] < 1) return -1;
    const jm_type *s0 = n->nsrc ? &gr->node[n->src[0]].type : NULL;
    if (jm_ops[n->op].cls == JM_CLASS_ELEMWISE)   /* sources have the result's shape (broadcasts are explicit) */
        return n->nsrc ? (1 << n->nsrc) - 1 : -1;
    switch (n->op) {
    case JM_OP_CONV2D: return 1;
    case JM_OP_MATMUL: return n->type.rank == 2 && s0->rank == 2 && gr->node[n->src[1]].type.rank == 2 ? 1 : -1;
    case JM_OP_AVGPOOL2D: case JM_OP_MAXPOOL2D: return 1;
    case JM_OP_RESHAPE: return s0->rank >= 1 && s0->dim[0] == n->type.dim[0] ? 1 : -1;   /* rows stay rows */
    case JM_OP_PERMUTE: return n->attr.ni >= 1 && n->attr.i[0] == 0 ? 1 : -1;
    case JM_OP_SUM: case JM_OP_RMAX: case JM_OP_LOGSUMEXP:
        for (int a = 0; a < n->attr.ni; a++)
            if (n->attr.i[a] == 0) return -1;
        return 1;
    case JM_OP_SOFTMAX: case JM_OP_LOG_SOFTMAX: return n->attr.k != 0 ? 1 : -1;
    default: return -1;
    }
}

/* Whether `to` is reachable from `from` through sources (from depends on to). */
static int jm_depends(jm_bctx *C, int from, int to) {
    if (from == to) return 1;
    if (from < to) return 0;                         /* sources have smaller ids */
    C->stamp++;
    int *stack = C->stack, sp = 0, hit = 0;
    stack[sp++] = from;
    C->seen[from] = C->stamp;
    while (sp && !hit) {
        const jm_node *x = N(C, stack[--sp]);
        for (int s = 0; s < x->nsrc && !hit; s++) {
            int v = x->src[s];
            if (v == to) hit = 1;
            else if (v > to && C->seen[v] != C->stamp) { C->seen[v] = C->stamp; stack[sp++] = v; }
        }
    }
    return hit;
}

/* Phase 1: pairs (a, b) when they compute the same per-example op on their
   own rows. A seed is paired even when its row sources do not pair (they are
   concatenated); any other pair needs at least one paired row source, so the
   pass never concatenates just to run an elementwise op once. */
static int jm_pair(jm_bctx *C, int a, int b, int seed) {
    if (a == b || C->fixed[a] || C->fixed[b]) return 0;
    if (C->partner[a] >= 0 || C->partner[b] >= 0) return C->partner[a] == b && C->first[a];
    const jm_node *x = N(C, a), *y = N(C, b);
    if (x->op != y->op || x->nsrc != y->nsrc || !jm_type_equal(&x->type, &y->type) || !jm_attr_same(&x->attr, &y->attr))
        return 0;
    int mask = jm_rows_mask(C, x);
    if (mask < 0) return 0;
    for (int s = 0; s < x->nsrc; s++)
        if (!(mask >> s & 1) && x->src[s] != y->src[s]) return 0;
    if (jm_depends(C, b, a) || jm_depends(C, a, b)) return 0;
    int grown = 0;
    for (int s = 0; s < x->nsrc; s++)
        if (mask >> s & 1) grown += jm_pair(C, x->src[s], y->src[s], 0);
    if (!seed && !grown) return 0;
    if (C->partner[a] >= 0 || C->partner[b] >= 0) return 0;   /* taken while growing */
    C->partner[a] = b, C->partner[b] = a;
    C->first[a] = 1, C->first[b] = 0;
    C->pairs++;
    return 1;
}

static int jm_bt_add(jm_bctx *C, jm_op op, const int *src, int nsrc, const jm_attr *at, const jm_type *t, jm_loc loc) {
    int id = jm_ir_add(C->m, C->tmp, op, src, nsrc, at, t, loc, C->d);
    if (id < 0) C->failed = 1;
    return id;
}

static int jm_emit(jm_bctx *C, int n);

static jm_type jm_doubled(const jm_type *t) { jm_type r = *t; r.dim[0] *= 2; return r; }

/* Rows [0, B) or [B, 2B) of the batched node y. */
static int jm_half(jm_bctx *C, int y, const jm_node *like, int second) {
    if (y < 0) return -1;
    jm_attr at;
    memset(&at, 0, sizeof at);
    int64_t B = like->type.dim[0];
    for (int r = 0; r < like->type.rank; r++) {
        at.i[3 * r] = r == 0 && second ? B : 0;
        at.i[3 * r + 1] = r == 0 ? (second ? 2 * B : B) : like->type.dim[r];
        at.i[3 * r + 2] = 1;
    }
    at.ni = 3 * like->type.rank;
    return jm_bt_add(C, JM_OP_SLICE, &y, 1, &at, NULL, like->loc);
}

/* concat(a, b) along axis 0 for two row sources that did not pair; a shared
   source that is a broadcast of something without the batch axis is broadcast
   to 2B instead of copied twice. */
static int jm_rows_of(jm_bctx *C, int a, int b) {
    const jm_node *x = N(C, a);
    if (a == b && x->op == JM_OP_BROADCAST) {
        const jm_type *st = &N(C, x->src[0])->type;
        if (st->rank < x->type.rank || st->dim[0] == 1) {
            int s = jm_emit(C, x->src[0]);
            jm_type t = jm_doubled(&x->type);
            return s < 0 ? -1 : jm_bt_add(C, JM_OP_BROADCAST, &s, 1, &x->attr, &t, x->loc);
        }
    }
    int src[2] = { jm_emit(C, a), jm_emit(C, b) };
    if (src[0] < 0 || src[1] < 0) return -1;
    jm_attr at;
    memset(&at, 0, sizeof at);
    return jm_bt_add(C, JM_OP_CONCAT, src, 2, &at, NULL, x->loc);
}

/* The batched node of the pair whose first half is a. */
static int jm_emit_pair(jm_bctx *C, int a) {
    if (C->bstate[a] == 2) return C->bmap[a];
    if (C->bstate[a] == 1) { C->cycle = 1; return -1; }
    C->bstate[a] = 1;
    int b = C->partner[a];
    const jm_node *x = N(C, a), *y = N(C, b);
    int mask = jm_rows_mask(C, x), nsrc = x->nsrc;
    int *src = malloc(sizeof(int) * (size_t)(nsrc + 1));
    for (int s = 0; s < nsrc; s++) {
        int sa = x->src[s], sb = y->src[s];
        if (!(mask >> s & 1)) src[s] = jm_emit(C, sa);
        else if (C->partner[sa] == sb && C->first[sa]) src[s] = jm_emit_pair(C, sa);
        else src[s] = jm_rows_of(C, sa, sb);
        x = N(C, a), y = N(C, b);
    }
    jm_type t = jm_doubled(&x->type);
    int id = C->cycle || C->failed ? -1 : jm_bt_add(C, x->op, src, nsrc, &x->attr, &t, x->loc);
    free(src);
    C->bmap[a] = id;
    C->bstate[a] = 2;
    return id;
}

/* The new node for old node n (a half of a pair: its slice of the batched node). */
static int jm_emit(jm_bctx *C, int n) {
    if (C->state[n] == 2) return C->map[n];
    if (C->state[n] == 1 || C->cycle || C->failed) { C->cycle |= C->state[n] == 1; return -1; }
    C->state[n] = 1;
    int id;
    if (C->partner[n] >= 0) {
        int a = C->first[n] ? n : C->partner[n];
        id = jm_half(C, jm_emit_pair(C, a), N(C, n), !C->first[n]);
    } else {
        jm_node x = *N(C, n);
        int *src = malloc(sizeof(int) * (size_t)(x.nsrc + 1));
        int bad = 0;
        for (int s = 0; s < x.nsrc; s++) bad |= (src[s] = jm_emit(C, x.src[s])) < 0;
        id = bad ? -1 : jm_bt_add(C, x.op, src, x.nsrc, &x.attr, &x.type, x.loc);
        if (id >= 0) C->m->graphs[C->tmp].node[id].name = x.name;
        free(src);
    }
    C->map[n] = id;
    C->state[n] = 2;
    return id;
}

static void jm_batch_dump(jm_bctx *C, const jm_program *pr, FILE *out) {
    fprintf(out, "program %s: %d pair%s of ops batched\n", pr->name, C->pairs, C->pairs == 1 ? "" : "s");
    for (int a = 0; a < C->n; a++) {
        if (C->partner[a] < 0 || !C->first[a]) continue;
        const jm_node *x = N(C, a);
        const char *file = x->loc.file >= 0 && x->loc.file < C->d->nsrc ? C->d->src[x->loc.file].path : "?";
        char t[128];
        fprintf(out, "  %%%d + %%%d  %s -> one at batch %lld  (%s:%d:%d)  %s\n", a, C->partner[a], jm_ops[x->op].name,
                (long long)(2 * x->type.dim[0]), file, x->loc.line, x->loc.col, jm_type_str(&x->type, t, sizeof t));
    }
}

static int jm_batch_program(jm_module *m, jm_diags *d, int p, FILE *dump) {
    jm_program *pr = &m->programs[p];
    int g = pr->graph, n = m->graphs[g].nnode;
    jm_bctx C;
    memset(&C, 0, sizeof C);
    C.m = m, C.d = d, C.g = g, C.n = n;
    C.partner = malloc(sizeof(int) * (size_t)(n + 1));
    C.map = malloc(sizeof(int) * (size_t)(n + 1));
    C.bmap = malloc(sizeof(int) * (size_t)(n + 1));
    C.seen = calloc((size_t)n + 1, sizeof(int));
    C.stack = malloc(sizeof(int) * (size_t)(n + 1));
    C.first = calloc((size_t)n + 1, 1);
    C.state = calloc((size_t)n + 1, 1);
    C.bstate = calloc((size_t)n + 1, 1);
    C.fixed = calloc((size_t)n + 1, 1);
    for (int i = 0; i < n; i++) C.partner[i] = -1, C.map[i] = -1, C.bmap[i] = -1;
    /* grad(y, w) differentiates along w's readers: paired, w would become a
       slice nobody reads (the batched layer above reads the batched node), and
       its gradient zero. Unpaired, the layer above reads concat(w, w'). */
    for (int i = 0; i < n; i++) {
        const jm_node *x = N(&C, i);
        for (int s = 1; x->op == JM_OP_GRAD && s < x->nsrc; s++) C.fixed[x->src[s]] = 1;
    }
    /* seeds, in node order: each unpaired conv2d / matmul with the first later
       one that reads the same weight the same way */
    for (int a = 0; a < n; a++) {
        const jm_node *x = N(&C, a);
        if ((x->op != JM_OP_CONV2D && x->op != JM_OP_MATMUL) || C.partner[a] >= 0) continue;
        for (int b = a + 1; b < n; b++) {
            const jm_node *y = N(&C, b);
            if (y->op != x->op || C.partner[b] >= 0 || y->src[1] != x->src[1]) continue;
            if (jm_pair(&C, a, b, 1)) break;
        }
    }
    int rc = 0;
    if (C.pairs) {
        C.tmp = jm_graph_new(m, m->graphs[g].parent);
        /* every unpaired node in order (inputs keep their bindings), then the
           halves that programs read directly */
        for (int i = 0; i < n && !C.cycle && !C.failed; i++)
            if (C.partner[i] < 0) jm_emit(&C, i);
        for (int k = 0; k < pr->noutputs; k++) jm_emit(&C, pr->outputs[k].node);
        for (int k = 0; k < pr->nwrites; k++) jm_emit(&C, pr->writes[k].node);
        if (C.failed) rc = -1;
        if (C.cycle || C.failed) {
            m->ngraphs--;                                  /* the program stays unbatched */
            if (dump) fprintf(dump, "program %s: not batched (the halves depend on each other)\n", pr->name);
        } else {
            if (dump) jm_batch_dump(&C, pr, dump);
            jm_graph_replace(m, g, C.tmp, C.map);
            pr->twins = C.pairs;
        }
    } else if (dump) {
        fprintf(dump, "program %s: nothing to batch\n", pr->name);
    }
    free(C.partner), free(C.map), free(C.bmap), free(C.seen), free(C.first), free(C.state), free(C.bstate), free(C.fixed), free(C.stack);
    return rc;
}

int jm_batch_twins(jm_module *m, jm_diags *d, FILE *dump, const char *program) {
    for (int p = 0; p < m->nprograms; p++) {
        FILE *out = dump && (!program || strcmp(program, m->programs[p].name) == 0) ? dump : NULL;
        if (jm_batch_program(m, d, p, out) != 0) return -1;
    }
    return jm_ir_verify(m, d) == 0 ? 0 : -1;
}
