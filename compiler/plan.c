/* plan.c — see plan.h. Per program: decide what is materialized (fusion),
 * give every materialized value a buffer (aliases share one), emit the steps
 * in order while recording each buffer's lifetime, then place the scratch
 * buffers (memory plan). Kernel specifications go to the code generator. */
#include "plan.h"
#include "dp.h"
#include <inttypes.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#define JM_ALIGN 64
#define JM_FOREVER INT_MAX

typedef struct {
    jm_module *m; jm_plan *P; jm_diags *d;
    int prog;
    const char *pname;
    char **mat;                  /* per graph, per node: materialized */
    char **ext;                  /* per graph, per node: read outside the graph's kernels */
    char **absorbed;             /* per graph, per node: a transpose read in place by a matmul */
    int **users;                 /* per graph, per node: number of reading nodes */
    int **reader;                /* per graph, per node: one reading node (the first), or -1 */
    int ***carried;              /* per graph, per LOOP node: its carried buffers */
    int **vbuf;                  /* per graph, per node: buffer id, or -1 */
    int **epi_of;                /* per graph, per node: conv2d fused into this kernel root, or -1 */
    char **epi_conv;             /* per graph, per node: a conv2d that runs inside an epilogue step */
    char **epi_inplace;          /* per graph, per epilogue root: the conv writes the root's buffer */
    int **epi_root;              /* per graph, per fused conv2d: its epilogue root */
    jm_pbuf *bufs; int nbufs, capbufs;
    jm_step *steps; int nsteps, capsteps;
    int *gbuf;                   /* per global: its STATE buffer */
    int curgraph;                /* the graph being planned (new buffers belong to it) */
    char **seen;                 /* per graph: scratch marks, all zero between uses */
    int *list; int nlist, caplist;   /* the nodes marked in seen, to clear them */
    int failed;
    /* data parallelism (dp.h): per root-graph node, its phase (the
       collectives on its longest path); the phase being emitted and where each
       phase's steps start; the collectives */
    char *phase;
    int phase_now;
    int32_t phase_start[JM_DP_MAX_PHASES + 1];
    jm_tcoll *colls; int ncolls, capcolls;
    int *coll_buf;               /* per collective: MEAN its buffer id; ROWS its index and rows buffer ids (2 each) */
} jm_pctx;

static jm_node *PN(jm_pctx *C, int g, int i) { return &C->m->graphs[g].node[i]; }
static int64_t jm_bytes(const jm_type *t) {
    static const int sz[] = { 4, 8, 4, 8, 1, 0 };
    return jm_type_numel(t) * sz[t->dtype];
}

static const char *jm_where(jm_pctx *C, const jm_node *n) {
    const char *file = n->loc.file >= 0 && n->loc.file < C->d->nsrc ? C->d->src[n->loc.file].path : "?";
    return jm_arena_printf(C->m->arena, "%s:%d:%d %s", file, n->loc.line, n->loc.col, jm_ops[n->op].name);
}

static void jm_unsupported(jm_pctx *C, const jm_node *n, const char *why) {
    jm_diag_error(C->d, n->loc, "the CPU backend cannot compile %s: %s", jm_ops[n->op].name, why);
    C->failed = 1;
}

/* ---- fusion decisions ------------------------------------------------------ */

static int jm_is_cheap(jm_op op) {
    switch (op) {
    case JM_OP_NEG: case JM_OP_ABS: case JM_OP_RELU: case JM_OP_LEAKY_RELU: case JM_OP_ADD: case JM_OP_SUB:
    case JM_OP_MUL: case JM_OP_MAX: case JM_OP_MIN: case JM_OP_LT: case JM_OP_LE: case JM_OP_GT: case JM_OP_GE:
    case JM_OP_EQ: case JM_OP_NE: case JM_OP_AND: case JM_OP_OR: case JM_OP_NOT: case JM_OP_WHERE: case JM_OP_CAST:
    case JM_OP_STOP_GRAD: case JM_OP_RESHAPE: case JM_OP_BROADCAST: case JM_OP_PERMUTE: case JM_OP_SLICE:
    case JM_OP_PAD: case JM_OP_CONST:
        return 1;
    default:
        return 0;
    }
}

/* jm_plan_set_fusion: one compilation per process, so a setting of the pass */
static int jm_plan_fuse = 1, jm_plan_fuse_rng = 1;
void jm_plan_set_fusion(int on) { jm_plan_fuse = on != 0; }
void jm_plan_set_rng_fusion(int on) { jm_plan_fuse_rng = on != 0; }

/* A random draw a kernel computes inline (fused noise): float32 normal and
   uniform draws, with fusion on. The kernel evaluates Philox and the draw's
   formula in its own loop (codegen/rng_ir.c), bit for bit what the runtime's
   step would write (engine/philox_core.h), so a fused draw needs no buffer
   and no pass of its own. The kernel then takes the RNG context (seed, run,
   loop iteration, shard: engine/rt_kernels.h's jm_rng_ctx) as an extra
   parameter, which the CUDA backend does not pass (main.c turns this off for
   --target cuda). */
static int jm_is_fused_rng(const jm_node *nd) {
    return jm_plan_fuse && jm_plan_fuse_rng && (nd->op == JM_OP_RNG_NORMAL || nd->op == JM_OP_RNG_UNIFORM) &&
           nd->type.dtype == JM_F32 && jm_type_numel(&nd->type) <= (int64_t)UINT32_MAX;
}

/* values a kernel computes inline (everything else is materialized by its own step) */
static int jm_is_inline_op(const jm_node *nd) {
    jm_op op = nd->op;
    jm_op_class c = jm_ops[op].cls;
    if (c == JM_CLASS_ELEMWISE) return 1;
    return op == JM_OP_RESHAPE || op == JM_OP_PERMUTE || op == JM_OP_BROADCAST || op == JM_OP_SLICE ||
           op == JM_OP_PAD || op == JM_OP_CONST || jm_is_fused_rng(nd);
}

static int jm_is_last2_transpose(const jm_node *n) {
    if (n->op != JM_OP_PERMUTE) return 0;
    int r = n->type.rank;
    if (r < 2 || r > 3) return 0;
    for (int i = 0; i < r - 2; i++) if (n->attr.i[i] != i) return 0;
    return n->attr.i[r - 2] == r - 1 && n->attr.i[r - 1] == r - 2;
}

static void jm_count_uses(jm_pctx *C, int g) {
    jm_graph *gr = &C->m->graphs[g];
    int n = gr->nnode;
    C->users[g] = jm_arena_alloc(C->m->arena, sizeof(int) * (size_t)(n + 1));
    C->ext[g] = jm_arena_alloc(C->m->arena, (size_t)n + 1);
    C->absorbed[g] = jm_arena_alloc(C->m->arena, (size_t)n + 1);
    C->reader[g] = jm_arena_alloc(C->m->arena, sizeof(int) * (size_t)(n + 1));
    for (int i = 0; i < n; i++) C->reader[g][i] = -1;
    for (int i = 0; i < n; i++) {
        jm_node *nd = &gr->node[i];
        for (int s = 0; s < nd->nsrc; s++) {
            C->users[g][nd->src[s]]++;
            if (C->reader[g][nd->src[s]] < 0) C->reader[g][nd->src[s]] = i;
        }
    }
    for (int r = 0; r < gr->nresults; r++) C->ext[g][gr->results[r]] = 1;
    if (gr->parent < 0) {
        jm_program *pr = &C->m->programs[C->prog];
        for (int k = 0; k < pr->noutputs; k++) C->ext[g][pr->outputs[k].node] = 1;
        for (int k = 0; k < pr->nwrites; k++) C->ext[g][pr->writes[k].node] = 1;
    }
    for (int i = 0; i < n; i++) {
        jm_node *nd = &gr->node[i];
        if (jm_is_inline_op(nd) || nd->op == JM_OP_SUM || nd->op == JM_OP_RMAX || nd->op == JM_OP_LOOP_OUT) continue;
        for (int s = 0; s < nd->nsrc; s++) {
            int src = nd->src[s];
            /* matmul reads a transposed operand in place when the transpose has no other reader */
            if (nd->op == JM_OP_MATMUL && jm_is_last2_transpose(&gr->node[src]) && C->users[g][src] == 1 && !C->ext[g][src]) {
                C->absorbed[g][src] = 1;
                C->ext[g][gr->node[src].src[0]] = 1;
                continue;
            }
            C->ext[g][src] = 1;
        }
    }
}

static void jm_decide(jm_pctx *C, int g) {
    jm_graph *gr = &C->m->graphs[g];
    int n = gr->nnode;
    jm_count_uses(C, g);
    char *mat = C->mat[g] = jm_arena_alloc(C->m->arena, (size_t)n + 1);
    int *size = malloc(sizeof(int) * (size_t)(n + 1));
    /* costly: not cheap to duplicate; heavy: not cheap per element (costly, or
       a fused draw). A fused draw may be duplicated: its readers are most often
       one kernel reading it several times at the same index (the clamp after
       an SGLD update), where LLVM merges the copies; a second kernel recomputes
       it (the same numbers: a draw is a pure function of its element). It must
       not be expanded by a broadcast (one Philox block per copy). */
    char *costly = malloc((size_t)n + 1), *heavy = malloc((size_t)n + 1);
    for (int i = 0; i < n; i++) {
        jm_node *nd = &gr->node[i];
        size[i] = 0;
        costly[i] = heavy[i] = 0;
        if (C->absorbed[g][i]) continue;
        if (!jm_is_inline_op(nd)) { mat[i] = 1; continue; }
        if (nd->op == JM_OP_CONST) { mat[i] = C->ext[g][i]; continue; }
        size[i] = 1;
        heavy[i] = !jm_is_cheap(nd->op);
        costly[i] = heavy[i] && !jm_is_fused_rng(nd);
        for (int s = 0; s < nd->nsrc; s++) {
            int src = nd->src[s];
            if (mat[src]) continue;
            size[i] += size[src];
            costly[i] |= costly[src];
            heavy[i] |= heavy[src];
        }
        int dup_ok = !costly[i] && size[i] <= JM_FUSE_DUP_MAX;
        mat[i] = !jm_plan_fuse || C->ext[g][i] || (C->users[g][i] > 1 && !dup_ok) || size[i] > JM_FUSE_MAX_OPS;
        /* an expanding broadcast must not recompute an expensive source per copy */
        if (nd->op == JM_OP_BROADCAST) {
            int src = nd->src[0];
            if (!mat[src] && heavy[src] && jm_type_numel(&gr->node[src].type) < jm_type_numel(&nd->type)) mat[src] = 1;
        }
        /* a materialized reshape or stop_grad is an alias of a materialized source */
        if (mat[i] && (nd->op == JM_OP_RESHAPE || nd->op == JM_OP_STOP_GRAD) && gr->node[nd->src[0]].op != JM_OP_CONST)
            mat[nd->src[0]] = 1;
        if (mat[i]) size[i] = 0, costly[i] = heavy[i] = 0;
    }
    free(size);
    free(costly);
    free(heavy);
}

/* Is `target` read by kernel root r only through single-reader elementwise ops at
   r's own index? (Then r can run as target's epilogue.) */
static int jm_reads_at_same_index(jm_pctx *C, int g, int node, int target, int depth) {
    jm_node *nd = PN(C, g, node);
    if (depth > 64 || jm_ops[nd->op].cls != JM_CLASS_ELEMWISE || nd->op == JM_OP_CAST) return 0;
    int found = 0;
    for (int s = 0; s < nd->nsrc; s++) {
        int src = nd->src[s];
        if (src == target) { found = 1; continue; }
        if (C->mat[g][src] || PN(C, g, src)->op == JM_OP_CONST) continue;
        if (C->users[g][src] != 1) {
            /* a duplicated value that reaches target is read by another kernel too */
            if (jm_reads_at_same_index(C, g, src, target, depth + 1)) return 0;
            continue;
        }
        if (jm_reads_at_same_index(C, g, src, target, depth + 1)) found = 1;
    }
    return found;
}

static void jm_kernel_leaves(jm_pctx *C, int g, int node, int root, char *seen, int *nops);
static void jm_mark_reads(jm_pctx *C, int g, int node, int root, int ident, char *st, int depth);

/* Does the kernel rooted at r draw random numbers inline? (Such a kernel
   takes the RNG context, which a convolution's epilogue call does not pass.) */
static int jm_kernel_has_rng(jm_pctx *C, int g, int r) {
    int n = C->m->graphs[g].nnode, nops = 0, has = 0;
    char *seen = calloc((size_t)n + 1, 1);
    jm_kernel_leaves(C, g, r, r, seen, &nops);
    for (int i = 0; i < n && !has; i++) has = seen[i] && jm_is_fused_rng(PN(C, g, i)) && (i == r || !C->mat[g][i]);
    free(seen);
    return has;
}

/* Epilogues (plan.h). In place: the convolution's only reader is one kernel
   reading it at its own index; the convolution writes that kernel's buffer.
   Shared: the convolution's value is also read elsewhere (e.g. saved for the
   backward pass), so it keeps its buffer, and the first kernel reading it (at
   its own index only) runs as the epilogue while each image is in cache; every
   other reader must come later in the program. */
static void jm_find_epilogues(jm_pctx *C, int g) {
    jm_graph *gr = &C->m->graphs[g];
    int n = gr->nnode;
    C->epi_of[g] = jm_arena_alloc(C->m->arena, sizeof(int) * (size_t)(n + 1));
    C->epi_conv[g] = jm_arena_alloc(C->m->arena, (size_t)n + 1);
    C->epi_inplace[g] = jm_arena_alloc(C->m->arena, (size_t)n + 1);
    C->epi_root[g] = jm_arena_alloc(C->m->arena, sizeof(int) * (size_t)(n + 1));
    for (int i = 0; i < n; i++) C->epi_of[g][i] = -1;
    if (!jm_plan_fuse) return;
    char *seen = malloc((size_t)n + 1), *st = malloc((size_t)n + 1);
    for (int c = 0; c < n; c++) {
        jm_node *cv = &gr->node[c];
        if (cv->op != JM_OP_CONV2D || cv->type.dtype != JM_F32) continue;
        /* the first reader's kernel root: follow first readers up to a materialized node */
        int r = C->reader[g][c];
        while (r >= 0 && !C->mat[g][r]) r = C->reader[g][r];
        if (r < 0 || C->epi_of[g][r] >= 0 || !jm_is_inline_op(&gr->node[r]) || jm_kernel_has_rng(C, g, r)) continue;
        jm_node *rn = &gr->node[r];
        if (!jm_type_equal(&rn->type, &cv->type) || C->epi_conv[g][c]) continue;
        if (C->users[g][c] == 1 && !C->ext[g][c] && jm_reads_at_same_index(C, g, r, c, 0)) {
            C->epi_of[g][r] = c;
            C->epi_conv[g][c] = 1;
            C->epi_root[g][c] = r;
            C->epi_inplace[g][r] = 1;
            continue;
        }
        /* shared: r reads c only at its own index, and c's other readers come after r */
        memset(seen, 0, (size_t)n);
        memset(st, 0, (size_t)n);
        int nops = 0;
        jm_kernel_leaves(C, g, r, r, seen, &nops);
        jm_mark_reads(C, g, r, r, 1, st, 0);
        if (!seen[c] || st[c] != 1) continue;
        /* no other step may read c before r: not a runtime op or loop reading it
           directly, not a kernel root between them reading it through inline ops */
        int later = 1;
        for (int q = c + 1; q < r && later; q++) {
            if (!C->mat[g][q] && !C->absorbed[g][q]) {
                continue;                               /* inline: read by some root, checked below */
            }
            const jm_node *qn = &gr->node[q];
            if (!jm_is_inline_op(qn) && qn->op != JM_OP_SUM && qn->op != JM_OP_RMAX) {
                for (int k = 0; k < qn->nsrc; k++) if (qn->src[k] == c) later = 0;
                continue;
            }
            char *qs = calloc((size_t)n + 1, 1);
            int qops = 0;
            if (qn->op == JM_OP_SUM || qn->op == JM_OP_RMAX) { qs[q] = 1; jm_kernel_leaves(C, g, qn->src[0], q, qs, &qops); }
            else jm_kernel_leaves(C, g, q, q, qs, &qops);
            if (qs[c]) later = 0;
            free(qs);
        }
        if (!later) continue;
        C->epi_of[g][r] = c;
        C->epi_conv[g][c] = 1;
        C->epi_root[g][c] = r;
    }
    free(seen);
    free(st);
}

/* ---- buffers and steps ----------------------------------------------------- */

static int jm_new_buf(jm_pctx *C, int64_t bytes, int region, const char *what) {
    /* first = JM_FOREVER, last = -1: not used yet */
    jm_pbuf b = { bytes, 0, region, -1, JM_FOREVER, -1, C->curgraph, -1, what };
    JM_VEC_PUSH(C->m->arena, C->bufs, C->nbufs, C->capbufs, b);
    return C->nbufs - 1;
}

static void jm_touch(jm_pctx *C, int b, int pos) {
    jm_pbuf *B = &C->bufs[b];
    if (B->region == JM_REGION_STATE) return;
    if (pos < B->first) B->first = pos;
    if (B->last != JM_FOREVER && pos > B->last) B->last = pos;
}

/* marks b live to the end of the program */
static void jm_pin(jm_pctx *C, int b) {
    if (C->bufs[b].region == JM_REGION_STATE) return;
    if (C->bufs[b].first == JM_FOREVER) C->bufs[b].first = C->nsteps;
    C->bufs[b].last = JM_FOREVER;
}

static jm_step *jm_new_step(jm_pctx *C, jm_step_kind kind, int op, const char *where) {
    jm_step s;
    memset(&s, 0, sizeof s);
    s.kind = kind;
    s.op = op;
    s.epi = -1;
    s.where = where;
    JM_VEC_PUSH(C->m->arena, C->steps, C->nsteps, C->capsteps, s);
    return &C->steps[C->nsteps - 1];
}

/* step buffers are stored as buffer ids until the memory plan turns them into refs */
static void jm_step_bufs(jm_pctx *C, jm_step *s, const int *ids, int n) {
    s->nbuf = n;
    s->buf = jm_arena_alloc(C->m->arena, sizeof(jm_ref) * (size_t)(n + 1));
    for (int i = 0; i < n; i++) {
        s->buf[i] = ids[i];
        jm_touch(C, ids[i], C->nsteps - 1);
    }
}
static void jm_step_ints(jm_pctx *C, jm_step *s, const int64_t *v, int n) {
    s->nint = n;
    s->iat = jm_arena_alloc(C->m->arena, sizeof(int64_t) * (size_t)(n + 1));
    memcpy(s->iat, v, sizeof(int64_t) * (size_t)n);
}

static void jm_emit_copy(jm_pctx *C, int dst, int src, int64_t bytes, const char *where) {
    jm_step *s = jm_new_step(C, JM_STEP_COPY, 0, where);
    s->n = bytes;
    s->cost = bytes / 4;
    int ids[2] = { dst, src };
    jm_step_bufs(C, s, ids, 2);
}

/* Marks in seen[] the nodes of kernel `root`: its inline ops and the
   materialized values they read (the leaves). When seen is C->seen[g], the
   marked nodes are also listed in C->list (jm_seen_clear undoes them). */
static void jm_kernel_leaves(jm_pctx *C, int g, int node, int root, char *seen, int *nops) {
    if (seen[node]) return;
    seen[node] = 1;
    if (C->seen && seen == C->seen[g]) JM_VEC_PUSH(C->m->arena, C->list, C->nlist, C->caplist, node);
    jm_node *nd = PN(C, g, node);
    if (node != root && (C->mat[g][node] || C->absorbed[g][node])) return;
    if (nd->op != JM_OP_CONST) (*nops)++;
    for (int s = 0; s < nd->nsrc; s++) jm_kernel_leaves(C, g, nd->src[s], root, seen, nops);
}

static char *jm_seen_get(jm_pctx *C, int g) {
    if (!C->seen[g]) C->seen[g] = jm_arena_alloc(C->m->arena, (size_t)C->m->graphs[g].nnode + 1);
    C->nlist = 0;
    return C->seen[g];
}
static void jm_seen_clear(jm_pctx *C, int g) {
    for (int i = 0; i < C->nlist; i++) C->seen[g][C->list[i]] = 0;
    C->nlist = 0;
}
static int jm_int_cmp(const void *a, const void *b) { return *(const int *)a - *(const int *)b; }

int jm_kspec_param(const jm_kspec *k, int node) {
    int lo = 0, hi = k->ntree - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        if (k->tree[mid] == node) return k->tree_param[mid];
        if (k->tree[mid] < node) lo = mid + 1; else hi = mid - 1;
    }
    return -1;
}

/* Elementwise split: 0 (flat) when every read is at the root's own linear index;
   otherwise the rows/inner split that keeps the broadcasts' reads invariant or
   contiguous along the inner loop. */
static int jm_choose_split(jm_pctx *C, int g, int root, const int *tree, int ntree) {
    jm_node *rn = PN(C, g, root);
    int rank = rn->type.rank, split = 0;
    jm_graph *gr = &C->m->graphs[g];
    for (int t = 0; t < ntree; t++) {
        int i = tree[t];
        if (i == root || C->mat[g][i]) continue;
        jm_node *nd = &gr->node[i];
        if (nd->op == JM_OP_RESHAPE || jm_ops[nd->op].cls == JM_CLASS_ELEMWISE || nd->op == JM_OP_CONST || jm_is_fused_rng(nd)) continue;
        if (nd->op == JM_OP_BROADCAST && jm_type_numel(&gr->node[nd->src[0]].type) == jm_type_numel(&nd->type)) continue;
        int k = rank > 0 ? rank - 1 : 0;
        if (nd->op == JM_OP_BROADCAST && jm_type_equal(&nd->type, &rn->type)) {
            /* largest trailing block where the source is all-1 or all-equal */
            const jm_type *st = &gr->node[nd->src[0]].type;
            int off = rank - st->rank, kind = 0;          /* 1: all ones, 2: all equal */
            k = rank;
            for (int d = rank - 1; d >= 0; d--) {
                int64_t sd = d - off >= 0 ? st->dim[d - off] : 1, od = rn->type.dim[d];
                int dk = od == 1 ? kind : (sd == 1 ? 1 : 2);
                if (kind && dk != kind) break;
                kind = dk;
                k = d;
            }
            if (k == 0) k = 1;
        }
        if (k > split) split = k;
    }
    if (split == 0) return 0;
    if (split >= rank) split = rank > 0 ? rank - 1 : 0;
    return split < 1 ? 1 : split;
}

/* st[node] |= 1 when the kernel reads node at the result's own linear index,
   |= 2 when at any other index */
static void jm_mark_reads(jm_pctx *C, int g, int node, int root, int ident, char *st, int depth) {
    char bit = ident ? 1 : 2;
    if ((st[node] & bit) || depth > 400) { st[node] |= bit; return; }
    st[node] |= bit;
    jm_node *nd = PN(C, g, node);
    if (node != root && (C->mat[g][node] || C->absorbed[g][node])) return;
    int same = jm_ops[nd->op].cls == JM_CLASS_ELEMWISE || nd->op == JM_OP_RESHAPE ||
               (nd->op == JM_OP_BROADCAST && jm_type_numel(&PN(C, g, nd->src[0])->type) == jm_type_numel(&nd->type));
    for (int s = 0; s < nd->nsrc; s++) jm_mark_reads(C, g, nd->src[s], root, ident && same, st, depth + 1);
}

static int jm_add_kernel(jm_pctx *C, int g, int root, jm_kernel_kind kind, int **ids_out, int *nids) {
    jm_graph *gr = &C->m->graphs[g];
    char *seen = jm_seen_get(C, g);
    int nops = 0;
    jm_node *rn = &gr->node[root];
    if (kind == JM_KERNEL_REDUCE) {
        seen[root] = 1;
        JM_VEC_PUSH(C->m->arena, C->list, C->nlist, C->caplist, root);
        nops = 1;
        jm_kernel_leaves(C, g, rn->src[0], root, seen, &nops);
    } else jm_kernel_leaves(C, g, root, root, seen, &nops);
    jm_kspec k;
    memset(&k, 0, sizeof k);
    k.graph = g;
    k.root = root;
    k.kind = kind;
    k.nops = nops;
    k.ntree = C->nlist;
    k.tree = jm_arena_alloc(C->m->arena, sizeof(int) * (size_t)(k.ntree + 1));
    k.tree_param = jm_arena_alloc(C->m->arena, sizeof(int) * (size_t)(k.ntree + 1));
    memcpy(k.tree, C->list, sizeof(int) * (size_t)k.ntree);
    jm_seen_clear(C, g);
    qsort(k.tree, (size_t)k.ntree, sizeof(int), jm_int_cmp);
    int *ids = jm_arena_alloc(C->m->arena, sizeof(int) * (size_t)(k.ntree + 2));
    int n = 0;
    ids[n++] = C->vbuf[g][root];
    for (int t = 0; t < k.ntree; t++) {
        int i = k.tree[t];
        k.tree_param[t] = -1;
        int leaf = i != root && (C->mat[g][i] || C->absorbed[g][i]);
        if (!leaf) { k.rng |= jm_is_fused_rng(&gr->node[i]); continue; }
        int b = C->vbuf[g][C->absorbed[g][i] ? gr->node[i].src[0] : i], p = -1;
        for (int j = 0; j < n; j++) if (ids[j] == b) p = j;
        if (p < 0) { ids[n] = b; p = n++; }
        k.tree_param[t] = p;
    }
    k.nparam = n;
    k.param_identity = jm_arena_alloc(C->m->arena, (size_t)n + 1);
    if (kind == JM_KERNEL_ELEMWISE) {
        char *st = calloc((size_t)gr->nnode + 1, 1);
        jm_mark_reads(C, g, root, root, 1, st, 0);
        for (int p = 1; p < n; p++) k.param_identity[p] = 1;
        for (int t = 0; t < k.ntree; t++)
            if (k.tree_param[t] > 0 && st[k.tree[t]] != 1) k.param_identity[k.tree_param[t]] = 0;
        free(st);
    }
    if (kind == JM_KERNEL_REDUCE) {
        k.items = jm_type_numel(&rn->type);
    } else {
        k.split = jm_choose_split(C, g, root, k.tree, k.ntree);
        k.items = 1;
        if (k.split == 0) k.items = jm_type_numel(&rn->type);
        else for (int d = 0; d < k.split; d++) k.items *= rn->type.dim[d];
    }
    k.name = jm_arena_printf(C->m->arena, "jk_%s_%d", C->pname, C->P->nkernels);
    JM_VEC_PUSH(C->m->arena, C->P->kernels, C->P->nkernels, C->P->capkernels, k);
    *ids_out = ids;
    *nids = n;
    return C->P->nkernels - 1;
}

static void jm_emit_kernel(jm_pctx *C, int g, int root, jm_kernel_kind kind) {
    int *ids, n;
    int ki = jm_add_kernel(C, g, root, kind, &ids, &n);
    jm_kspec *k = &C->P->kernels[ki];
    jm_step *s = jm_new_step(C, JM_STEP_KERNEL, ki, jm_where(C, PN(C, g, root)));
    s->n = k->items;
    s->cost = kind == JM_KERNEL_REDUCE ? jm_type_numel(&PN(C, g, PN(C, g, root)->src[0])->type)
                                       : jm_type_numel(&PN(C, g, root)->type);
    s->cost *= k->nops > 0 ? k->nops : 1;
    jm_step_bufs(C, s, ids, n);
    if (k->rng) {
        /* iat[0] = 1: the runtime passes its RNG context after the buffers (rt_table.h) */
        int64_t one = 1;
        jm_step_ints(C, s, &one, 1);
        s->cost *= 8;           /* Philox and the draw's formula: about 8 ops' worth an element */
    }
}

static int64_t jm_idx_dtype(jm_dtype t) { return t == JM_I32 ? JM_DT_I32 : t == JM_I64 ? JM_DT_I64 : t == JM_BOOL ? JM_DT_BOOL : t == JM_F64 ? JM_DT_F64 : JM_DT_F32; }

static void jm_emit_lib(jm_pctx *C, int g, int i) {
    jm_node *nd = PN(C, g, i);
    const char *where = jm_where(C, nd);
    int ids[64];
    int nid = 0;
    int64_t at[32];
    int nat = 0;
    ids[nid++] = C->vbuf[g][i];
    for (int s = 0; s < nd->nsrc && nid < 63; s++) {
        int src = nd->src[s];
        ids[nid++] = C->vbuf[g][C->absorbed[g][src] ? PN(C, g, src)->src[0] : src];
    }
    if ((jm_ops[nd->op].cls == JM_CLASS_COMPLEX) && nd->type.dtype != JM_F32) {
        jm_unsupported(C, nd, "only float32 convolutions, matrix products and pooling are compiled (use `jemc run --target interp` for float64)");
        return;
    }
    int op = 0;
    jm_step *s;
    switch (nd->op) {
    case JM_OP_MATMUL: {
        const jm_type *a = &PN(C, g, nd->src[0])->type, *b = &PN(C, g, nd->src[1])->type;
        int ra = a->rank, rb = b->rank;
        int64_t M = nd->type.dim[nd->type.rank - 2], N = nd->type.dim[nd->type.rank - 1], K = a->dim[ra - 1], batch = 1;
        for (int d = 0; d < nd->type.rank - 2; d++) batch *= nd->type.dim[d];
        int ta = C->absorbed[g][nd->src[0]], tb = C->absorbed[g][nd->src[1]];
        int64_t v[] = { batch, M, N, K, ta, tb, ra > 2 ? M * K : 0, rb > 2 ? K * N : 0 };
        memcpy(at, v, sizeof v);
        nat = 8;
        op = JM_LIB_MATMUL;
        break;
    }
    case JM_OP_CONV2D: case JM_OP_CONV2D_BWD_DATA: case JM_OP_CONV2D_BWD_FILTER: {
        const jm_type *x, *w, *y;
        if (nd->op == JM_OP_CONV2D) { x = &PN(C, g, nd->src[0])->type; w = &PN(C, g, nd->src[1])->type; y = &nd->type; op = JM_LIB_CONV_FWD; }
        else if (nd->op == JM_OP_CONV2D_BWD_DATA) { y = &PN(C, g, nd->src[0])->type; w = &PN(C, g, nd->src[1])->type; x = &nd->type; op = JM_LIB_CONV_BWD_DATA; }
        else { x = &PN(C, g, nd->src[0])->type; y = &PN(C, g, nd->src[1])->type; w = &nd->type; op = JM_LIB_CONV_BWD_FILTER; }
        int64_t v[] = { x->dim[0], x->dim[1], x->dim[2], x->dim[3], w->dim[0], w->dim[2], w->dim[3], y->dim[2], y->dim[3] };
        memcpy(at, v, sizeof v);
        for (int k = 0; k < 7; k++) at[9 + k] = nd->attr.i[k];
        nat = 16;
        break;
    }
    case JM_OP_AVGPOOL2D: case JM_OP_MAXPOOL2D: case JM_OP_AVGPOOL2D_BWD: case JM_OP_MAXPOOL2D_BWD: {
        const jm_type *x = nd->op == JM_OP_AVGPOOL2D || nd->op == JM_OP_MAXPOOL2D ? &PN(C, g, nd->src[0])->type : &nd->type;
        const jm_type *y = nd->op == JM_OP_AVGPOOL2D || nd->op == JM_OP_MAXPOOL2D ? &nd->type : &PN(C, g, nd->src[nd->nsrc - 1])->type;
        int64_t v[] = { x->dim[0] * x->dim[1], x->dim[2], x->dim[3], y->dim[2], y->dim[3] };
        memcpy(at, v, sizeof v);
        for (int k = 0; k < 6; k++) at[5 + k] = nd->attr.i[k];
        nat = 11;
        op = nd->op == JM_OP_AVGPOOL2D ? JM_LIB_AVGPOOL : nd->op == JM_OP_MAXPOOL2D ? JM_LIB_MAXPOOL
           : nd->op == JM_OP_AVGPOOL2D_BWD ? JM_LIB_AVGPOOL_BWD : JM_LIB_MAXPOOL_BWD;
        break;
    }
    case JM_OP_RNG_UNIFORM: case JM_OP_RNG_NORMAL: case JM_OP_RNG_RANDINT: case JM_OP_RNG_BERNOULLI:
        at[0] = jm_type_numel(&nd->type);
        at[1] = (uint32_t)nd->attr.i[0];
        /* per example (dp.h): iat[2] = its batch axis + 1, iat[3] the batch, iat[4]
           the elements after that axis; the runtime numbers elements globally */
        at[2] = nd->attr.ni > 1 && nd->attr.i[1] > 0 ? nd->attr.i[1] : 0;
        at[3] = at[2] ? nd->type.dim[at[2] - 1] : 0;
        at[4] = 1;
        for (int d = (int)at[2]; at[2] && d < nd->type.rank; d++) at[4] *= nd->type.dim[d];
        nat = 5;
        op = nd->op == JM_OP_RNG_UNIFORM ? JM_LIB_RNG_UNIFORM : nd->op == JM_OP_RNG_NORMAL ? JM_LIB_RNG_NORMAL
           : nd->op == JM_OP_RNG_RANDINT ? JM_LIB_RNG_RANDINT : JM_LIB_RNG_BERNOULLI;
        if (at[0] > (int64_t)UINT32_MAX) { jm_unsupported(C, nd, "random draws are limited to 2^32 elements per tensor"); return; }
        break;
    case JM_OP_GATHER: case JM_OP_SCATTER: case JM_OP_INDEX_ADD: {
        const jm_type *a = &PN(C, g, nd->src[0])->type, *ix = &PN(C, g, nd->src[1])->type;
        at[0] = a->dim[0];
        at[1] = a->dim[0] ? jm_type_numel(a) / a->dim[0] : 0;
        at[2] = ix->dim[0];
        at[3] = jm_idx_dtype(ix->dtype);
        nat = 4;
        op = nd->op == JM_OP_GATHER ? JM_LIB_GATHER : nd->op == JM_OP_SCATTER ? JM_LIB_SCATTER : JM_LIB_INDEX_ADD;
        if (jm_dp_is_collective(nd) && C->phase) {
            /* the rows of every shard (dp.h): collective at[4] gathers them at the cut */
            at[4] = C->ncolls;
            nat = 5;
            jm_tcoll tc = { JM_COLL_ROWS, (int32_t)jm_idx_dtype(nd->type.dtype), C->nsteps, { 0, 0 },
                            { jm_bytes(ix), jm_bytes(&PN(C, g, nd->src[2])->type) }, C->phase[i] };
            JM_VEC_PUSH(C->m->arena, C->colls, C->ncolls, C->capcolls, tc);
            C->coll_buf = realloc(C->coll_buf, sizeof(int) * 2 * (size_t)C->ncolls);
            C->coll_buf[2 * (C->ncolls - 1)] = ids[2];
            C->coll_buf[2 * (C->ncolls - 1) + 1] = ids[3];
        }
        break;
    }
    case JM_OP_ONEHOT: {
        const jm_type *l = &PN(C, g, nd->src[0])->type;
        at[0] = jm_type_numel(l);
        at[1] = nd->attr.k;
        at[2] = jm_idx_dtype(l->dtype);
        nat = 3;
        op = JM_LIB_ONEHOT;
        break;
    }
    case JM_OP_CONCAT: {
        int ax = nd->attr.k;
        int64_t outer = 1, inner = 1;
        for (int d = 0; d < ax; d++) outer *= nd->type.dim[d];
        for (int d = ax + 1; d < nd->type.rank; d++) inner *= nd->type.dim[d];
        if (nd->nsrc > 30) { jm_unsupported(C, nd, "more than 30 sources"); return; }
        at[0] = outer;
        for (int k = 0; k < nd->nsrc; k++) {
            const jm_type *t = &PN(C, g, nd->src[k])->type;
            at[1 + k] = t->dim[ax] * inner * (jm_bytes(t) / (jm_type_numel(t) ? jm_type_numel(t) : 1));
            if (jm_type_numel(t) == 0) at[1 + k] = 0;
        }
        nat = 1 + nd->nsrc;
        op = JM_LIB_CONCAT;
        break;
    }
    case JM_OP_EXTERN_CALL:
        /* a user's C function: iat = extern index, the result's dtype, each argument's */
        if (nd->nsrc > 30) { jm_unsupported(C, nd, "an extern function with more than 30 parameters"); return; }
        at[0] = nd->attr.i[0];
        at[1] = jm_idx_dtype(nd->type.dtype);
        for (int k = 0; k < nd->nsrc; k++) at[2 + k] = jm_idx_dtype(PN(C, g, nd->src[k])->type.dtype);
        nat = 2 + nd->nsrc;
        op = JM_LIB_EXTERN;
        break;
    default:
        jm_unsupported(C, nd, "this op has no runtime step (a jemc bug: please report it with the graph)");
        return;
    }
    s = jm_new_step(C, JM_STEP_LIB, op, where);
    s->dtype = (int32_t)jm_idx_dtype(nd->type.dtype);
    s->fat[0] = nd->attr.f[0];
    s->fat[1] = nd->attr.f[1];
    s->cost = op == JM_LIB_EXTERN ? 1 : jm_type_numel(&nd->type) * 64;   /* an extern runs on one thread */
    jm_step_bufs(C, s, ids, nid);
    jm_step_ints(C, s, at, nat);
}

/* the conv2d step with kernel root r as its epilogue */
static void jm_emit_conv_epilogue(jm_pctx *C, int g, int r) {
    int c = C->epi_of[g][r];
    jm_emit_lib(C, g, c);
    if (C->failed) return;
    int si = C->nsteps - 1;
    int *ids, n;
    int ki = jm_add_kernel(C, g, r, JM_KERNEL_ELEMWISE, &ids, &n);
    jm_step *s = &C->steps[si];
    s->epi = ki;
    int64_t N = PN(C, g, c)->type.dim[0];
    s->epi_items = N ? C->P->kernels[ki].items / N : 0;
    /* the conv's own three buffers, then the epilogue kernel's */
    jm_ref *all = jm_arena_alloc(C->m->arena, sizeof(jm_ref) * (size_t)(3 + n));
    memcpy(all, s->buf, sizeof(jm_ref) * 3);
    for (int i = 0; i < n; i++) { all[3 + i] = ids[i]; jm_touch(C, ids[i], si); }
    s->buf = all;
    s->nbuf = 3 + n;
}

static void jm_plan_graph(jm_pctx *C, int g);

static void jm_emit_loop(jm_pctx *C, int g, int i) {
    jm_node *nd = PN(C, g, i);
    int body = (int)nd->attr.i[0], k = nd->attr.k;
    jm_graph *bg = &C->m->graphs[body];
    int nb = bg->nnode;
    C->vbuf[body] = jm_arena_alloc(C->m->arena, sizeof(int) * (size_t)(nb + 1));
    for (int j = 0; j < nb; j++) C->vbuf[body][j] = -1;
    /* carried values get buffers of their own, initialised before the loop */
    int *carried = jm_arena_alloc(C->m->arena, sizeof(int) * (size_t)(k + 1));
    if (!C->carried[g]) C->carried[g] = jm_arena_alloc(C->m->arena, sizeof(int *) * (size_t)(C->m->graphs[g].nnode + 1));
    C->carried[g][i] = carried;
    for (int a = 0; a < k; a++) {
        const jm_type *t = &PN(C, g, nd->src[a])->type;
        carried[a] = jm_new_buf(C, jm_bytes(t), JM_REGION_SCRATCH, jm_arena_printf(C->m->arena, "%s carried %d", jm_where(C, nd), a));
        jm_emit_copy(C, carried[a], C->vbuf[g][nd->src[a]], jm_bytes(t), jm_where(C, nd));
    }
    for (int j = 0; j < nb; j++) {
        jm_node *bn = &bg->node[j];
        if (bn->op != JM_OP_LOOP_ARG) continue;
        int a = bn->attr.k;
        C->vbuf[body][j] = a < k ? carried[a] : C->vbuf[g][nd->src[a]];
    }
    int head = C->nsteps;
    jm_step *ls = jm_new_step(C, JM_STEP_LOOP, 0, jm_where(C, nd));
    ls->n = nd->attr.i[1];
    if (nd->attr.ni > 2 && nd->attr.i[2] > 0) {
        /* the trip count is a knob: the runtime reads it from the global (iat[0]) */
        ls->nint = 1;
        ls->iat = jm_arena_alloc(C->m->arena, sizeof(int64_t));
        ls->iat[0] = nd->attr.i[2] - 1;
    }
    jm_plan_graph(C, body);
    if (C->failed) return;
    /* next carried values: results are copied into the carried buffers at the end
       of each iteration; a result that is another carried value goes through a
       temporary so that all of them change at once */
    int *src = jm_arena_alloc(C->m->arena, sizeof(int) * (size_t)(k + 1));
    for (int a = 0; a < k; a++) {
        int rb = C->vbuf[body][bg->results[a]];
        src[a] = rb;
        int is_carried = 0;
        for (int b2 = 0; b2 < k; b2++) if (rb == carried[b2] && b2 != a) is_carried = 1;
        if (is_carried) {
            int64_t bytes = C->bufs[rb].bytes;
            src[a] = jm_new_buf(C, bytes, JM_REGION_SCRATCH, "loop swap temporary");
            jm_emit_copy(C, src[a], rb, bytes, jm_where(C, nd));
        }
    }
    for (int a = 0; a < k; a++)
        if (src[a] != carried[a]) jm_emit_copy(C, carried[a], src[a], C->bufs[carried[a]].bytes, jm_where(C, nd));
    int end = C->nsteps - 1;
    C->steps[head].body = end - head;
    /* whatever the body reads that was made before the loop lives to its end */
    for (int b = 0; b < C->nbufs; b++) {
        jm_pbuf *B = &C->bufs[b];
        if (B->region == JM_REGION_SCRATCH && B->first < head && B->last >= head && B->last != JM_FOREVER && B->last < end) B->last = end;
    }
    for (int a = 0; a < k; a++) jm_touch(C, carried[a], end);
}

static void jm_assign_bufs(jm_pctx *C, int g) {
    jm_graph *gr = &C->m->graphs[g];
    if (!C->vbuf[g]) {
        C->vbuf[g] = jm_arena_alloc(C->m->arena, sizeof(int) * (size_t)(gr->nnode + 1));
        for (int i = 0; i < gr->nnode; i++) C->vbuf[g][i] = -1;
    }
    for (int i = 0; i < gr->nnode; i++) {
        jm_node *nd = &gr->node[i];
        if (!C->mat[g][i] || C->vbuf[g][i] >= 0) continue;
        switch (nd->op) {
        case JM_OP_PARAM: case JM_OP_STATE: C->vbuf[g][i] = C->gbuf[nd->attr.i[0]]; break;
        default:
            /* a reshape of a materialized value is an alias, assigned in order (a reshape
               of a constant is computed) */
            if ((nd->op == JM_OP_RESHAPE || nd->op == JM_OP_STOP_GRAD) && C->mat[g][nd->src[0]]) break;
            if (nd->op == JM_OP_ALLREDUCE) break;                  /* averaged in place: its source's buffer (jm_plan_graph) */
            if (nd->op == JM_OP_LOOP) break;                       /* a tuple: its LOOP_OUTs have the buffers */
            if (C->epi_conv[g][i] && C->epi_inplace[g][C->epi_root[g][i]]) break;   /* writes its epilogue's buffer (below) */
            if (nd->op == JM_OP_LOOP_OUT) break;                   /* assigned by the loop */
            C->vbuf[g][i] = jm_new_buf(C, jm_bytes(&nd->type), JM_REGION_SCRATCH,
                                       jm_arena_printf(C->m->arena, "%%%d %s", i, jm_where(C, nd)));
            if (nd->op == JM_OP_INPUT) C->bufs[C->vbuf[g][i]].first = -1;   /* copied in before step 0 */
            break;
        }
    }
    /* an epilogue's convolution writes straight into the epilogue's output */
    for (int r = 0; r < gr->nnode; r++)
        if (C->epi_of[g][r] >= 0 && C->epi_inplace[g][r]) C->vbuf[g][C->epi_of[g][r]] = C->vbuf[g][r];
}

/* Emission order (plan.h, "Scheduling"): node ids, except that a step moves to
   just before its first reader when every scratch buffer it reads is read at or
   after that point anyway. */
static int jm_sched_cmp(const void *x, const void *y, void *ctx) {
    const int64_t *key = ctx;
    int a = *(const int *)x, b = *(const int *)y;
    if (key[a] != key[b]) return key[a] < key[b] ? -1 : 1;
    return a - b;
}

static int *jm_schedule(jm_pctx *C, int g) {
    jm_graph *gr = &C->m->graphs[g];
    int n = gr->nnode;
    int *first = malloc(sizeof(int) * (size_t)(n + 1)), *last = malloc(sizeof(int) * (size_t)(n + 1)), *order = malloc(sizeof(int) * (size_t)(n + 1));
    int64_t *key = malloc(sizeof(int64_t) * (size_t)(n + 1));
    /* phase 1 (dp.h) after phase 0: the collectives meet between them */
    const char *ph = gr->parent < 0 ? C->phase : NULL;
#define JM_KEY(j) (2 * (int64_t)(j) + (ph && ph[j] ? 4 * (int64_t)n : 0))
    for (int i = 0; i < n; i++) { first[i] = INT_MAX; last[i] = C->ext[g][i] ? INT_MAX : -1; key[i] = JM_KEY(i); order[i] = i; }
    for (int i = 0; i < n; i++)
        for (int k = 0; k < gr->node[i].nsrc; k++) {
            int src = gr->node[i].src[k];
            if (i < first[src]) first[src] = i;
            if (last[src] != INT_MAX && i > last[src]) last[src] = i;
        }
    for (int i = 0; i < n; i++) {
        jm_node *nd = &gr->node[i];
        jm_op_class cls = jm_ops[nd->op].cls;
        if (!C->mat[g][i] || C->epi_conv[g][i] || cls == JM_CLASS_LEAF || cls == JM_CLASS_CONTROL || C->ext[g][i]) continue;
        if ((nd->op == JM_OP_RESHAPE || nd->op == JM_OP_STOP_GRAD) && C->mat[g][nd->src[0]]) continue;   /* aliases */
        if (C->epi_of[g][i] >= 0) continue;          /* a shared epilogue's convolution is read after it */
        int dest = first[i];
        if (dest == INT_MAX || dest <= i + 1) continue;
        if (ph && ph[dest] != ph[i]) continue;      /* never across an exchange */
        /* the buffers this step reads: a kernel's leaves, a runtime op's operands
           (and an epilogue's convolution's) */
        char *sn = jm_seen_get(C, g);
        int nops = 0, okk = 1;
        if (jm_is_inline_op(nd) || nd->op == JM_OP_SUM || nd->op == JM_OP_RMAX) {
            if (nd->op == JM_OP_SUM || nd->op == JM_OP_RMAX) {
                sn[i] = 1;
                JM_VEC_PUSH(C->m->arena, C->list, C->nlist, C->caplist, i);
                jm_kernel_leaves(C, g, nd->src[0], i, sn, &nops);
            } else jm_kernel_leaves(C, g, i, i, sn, &nops);
        }
        for (int k = 0; k < nd->nsrc && !(jm_is_inline_op(nd) || nd->op == JM_OP_SUM || nd->op == JM_OP_RMAX); k++)
            if (!sn[nd->src[k]]) { sn[nd->src[k]] = 1; JM_VEC_PUSH(C->m->arena, C->list, C->nlist, C->caplist, nd->src[k]); }
        for (int t = 0; t < C->nlist && okk; t++) {
            int j = C->list[t];
            if (j == i || C->epi_conv[g][j]) continue;
            jm_op op = gr->node[j].op;
            if (op == JM_OP_PARAM || op == JM_OP_STATE || op == JM_OP_CONST) continue;
            if (!(C->mat[g][j] || C->absorbed[g][j])) continue;          /* inline in this kernel */
            if (last[j] < dest) okk = 0;
        }
        jm_seen_clear(C, g);
        if (okk) key[i] = JM_KEY(dest) - 1;
    }
#undef JM_KEY
    qsort_r(order, (size_t)n, sizeof(int), jm_sched_cmp, key);
    free(first); free(last); free(key);
    return order;
}

static void jm_plan_graph(jm_pctx *C, int g) {
    jm_graph *gr = &C->m->graphs[g];
    int saved_graph = C->curgraph;
    C->curgraph = g;
    jm_decide(C, g);
    jm_find_epilogues(C, g);
    jm_assign_bufs(C, g);
    int *order = jm_schedule(C, g);
    for (int oi = 0; oi < gr->nnode && !C->failed; oi++) {
        int i = order[oi];
        jm_node *nd = &gr->node[i];
        if (!C->mat[g][i] || C->epi_conv[g][i]) continue;
        while (gr->parent < 0 && C->phase && C->phase[i] > C->phase_now) C->phase_start[++C->phase_now] = C->nsteps;
        switch (nd->op) {
        case JM_OP_PARAM: case JM_OP_STATE: case JM_OP_INPUT: case JM_OP_LOOP_ARG: break;
        case JM_OP_ALLREDUCE: {
            /* averaged in place between the phases; dp.c leaves only sources
               computed from the batch, never a global's buffer */
            int b = C->vbuf[g][nd->src[0]];
            if (C->bufs[b].region != JM_REGION_SCRATCH) { jm_unsupported(C, nd, "internal error: a mean over shards of a global"); break; }
            C->vbuf[g][i] = b;
            int dup = !C->phase;       /* no phases: a program that never runs over shards (dp_why) */
            for (int k = 0; k < C->ncolls; k++) dup |= C->colls[k].kind == JM_COLL_MEAN && C->coll_buf[2 * k] == b;
            if (dup) break;
            jm_tcoll tc = { JM_COLL_MEAN, (int32_t)jm_idx_dtype(nd->type.dtype), -1, { 0, 0 }, { jm_bytes(&nd->type), 0 }, C->phase[i] };
            JM_VEC_PUSH(C->m->arena, C->colls, C->ncolls, C->capcolls, tc);
            C->coll_buf = realloc(C->coll_buf, sizeof(int) * 2 * (size_t)C->ncolls);
            C->coll_buf[2 * (C->ncolls - 1)] = b;
            C->coll_buf[2 * (C->ncolls - 1) + 1] = -1;
            break;
        }
        case JM_OP_RESHAPE: case JM_OP_STOP_GRAD:
            if (C->mat[g][nd->src[0]]) { C->vbuf[g][i] = C->vbuf[g][nd->src[0]]; break; }
            jm_emit_kernel(C, g, i, JM_KERNEL_ELEMWISE);
            break;
        case JM_OP_SUM: case JM_OP_RMAX: jm_emit_kernel(C, g, i, JM_KERNEL_REDUCE); break;
        case JM_OP_LOOP: jm_emit_loop(C, g, i); break;
        case JM_OP_LOOP_OUT: {
            /* the loop's carried buffer k (the LOOP step's first copies made them) */
            C->vbuf[g][i] = C->carried[g][nd->src[0]][nd->attr.k];
            break;
        }
        case JM_OP_GRAD: jm_unsupported(C, nd, "internal error: grad reached code generation"); break;
        default:
            if (C->epi_of[g][i] >= 0) jm_emit_conv_epilogue(C, g, i);
            else if (jm_is_inline_op(nd)) jm_emit_kernel(C, g, i, JM_KERNEL_ELEMWISE);
            else jm_emit_lib(C, g, i);
            break;
        }
        C->curgraph = g;
    }
    free(order);
    C->curgraph = saved_graph;
}

/* The schedule's verifier: a step reads only buffers some earlier step (or the
   caller, for inputs, state and loop-carried values) has written. Reports
   internal errors; returns the number found. */
static int jm_verify_order(jm_pctx *C) {
    int bad = 0;
    for (int s = 0; s < C->nsteps; s++) {
        const jm_step *st = &C->steps[s];
        int from = st->kind == JM_STEP_COPY ? 1 : st->kind == JM_STEP_LOOP ? st->nbuf : 1;
        for (int k = from; k < st->nbuf; k++) {
            /* an epilogue reads the convolution's output and writes its own result */
            if (st->kind == JM_STEP_LIB && st->epi >= 0 && (k == 3 || st->buf[k] == st->buf[0])) continue;
            const jm_pbuf *B = &C->bufs[(int)st->buf[k]];
            if (B->region == JM_REGION_STATE || B->first < s) continue;
            jm_diag_error(C->d, jm_noloc, "internal error: step %d of %s (%s) reads buffer %d before any step writes it",
                          s, C->pname, st->where ? st->where : "?", (int)st->buf[k]);
            bad++;
        }
    }
    return bad;
}

static int jm_find(jm_pctx *C, int b) {
    while (C->bufs[b].merged_into >= 0) b = C->bufs[b].merged_into;
    return b;
}

/* In place (plan.h): an elementwise kernel's result takes over an operand's
   buffer when the operand dies at this step, has the same size, belongs to
   the same graph and is only read at the result's own index. */
static void jm_inplace(jm_pctx *C) {
    for (int s = 0; s < C->nsteps; s++) {
        jm_step *st = &C->steps[s];
        if (st->kind != JM_STEP_KERNEL) continue;
        jm_kspec *k = &C->P->kernels[st->op];
        if (k->kind != JM_KERNEL_ELEMWISE) continue;
        int o = jm_find(C, (int)st->buf[0]);
        jm_pbuf *O = &C->bufs[o];
        if (O->region != JM_REGION_SCRATCH || O->first != s) continue;
        for (int p = 1; p < st->nbuf; p++) {
            int b = jm_find(C, (int)st->buf[p]);
            jm_pbuf *Bf = &C->bufs[b];
            if (!k->param_identity[p] || Bf->region != JM_REGION_SCRATCH || Bf->last != s || Bf->first >= s ||
                Bf->bytes != O->bytes || Bf->graph != O->graph || b == o) continue;
            O->merged_into = b;
            Bf->last = O->last;
            /* param p and param 0 are one buffer now: reads of p come from 0 */
            for (int t = 0; t < k->ntree; t++) {
                if (k->tree_param[t] == p) k->tree_param[t] = 0;
                else if (k->tree_param[t] > p) k->tree_param[t]--;
            }
            memmove(&k->param_identity[p], &k->param_identity[p + 1], (size_t)(k->nparam - p - 1));
            k->nparam--;
            memmove(&st->buf[p], &st->buf[p + 1], sizeof(jm_ref) * (size_t)(st->nbuf - p - 1));
            st->nbuf--;
            break;
        }
    }
}

/* ---- memory plan ---------------------------------------------------------- */

static int jm_live_overlap(const jm_pbuf *a, const jm_pbuf *b) {
    int a0 = a->first, a1 = a->last, b0 = b->first, b1 = b->last;
    return a0 <= b1 && b0 <= a1;
}

static int jm_cmp_size(const void *x, const void *y, void *ctx) {
    const jm_pbuf *B = ctx;
    int a = *(const int *)x, b = *(const int *)y;
    if (B[a].bytes != B[b].bytes) return B[a].bytes > B[b].bytes ? -1 : 1;
    return a - b;
}

static void jm_place_scratch(jm_pctx *C, jm_pmem *mem) {
    int *order = malloc(sizeof(int) * (size_t)(C->nbufs + 1)), n = 0;
    for (int b = 0; b < C->nbufs; b++)
        if (C->bufs[b].region == JM_REGION_SCRATCH && C->bufs[b].merged_into < 0) {
            if (C->bufs[b].first == JM_FOREVER) C->bufs[b].first = C->bufs[b].last = 0;   /* never used */
            order[n++] = b;
        }
    qsort_r(order, (size_t)n, sizeof(int), jm_cmp_size, C->bufs);
    int *placed = malloc(sizeof(int) * (size_t)(n + 1)), np = 0;
    int64_t peak = 0, naive = 0;
    for (int k = 0; k < n; k++) {
        jm_pbuf *B = &C->bufs[order[k]];
        int64_t size = (B->bytes + JM_ALIGN - 1) / JM_ALIGN * JM_ALIGN;
        naive += size;
        /* lowest offset where B fits between the placed buffers live with it
           (placed[] is kept in order of offset): the first gap of B's size */
        int64_t off = 0;
        for (int j = 0; j < np; j++) {
            jm_pbuf *P = &C->bufs[placed[j]];
            if (!jm_live_overlap(B, P)) continue;
            int64_t psz = (P->bytes + JM_ALIGN - 1) / JM_ALIGN * JM_ALIGN;
            if (P->offset >= off + size) break;              /* the gap before P fits */
            if (P->offset + psz > off) off = P->offset + psz;
        }
        B->offset = off;
        int at = np;
        while (at > 0 && C->bufs[placed[at - 1]].offset > off) at--;
        memmove(&placed[at + 1], &placed[at], sizeof(int) * (size_t)(np - at));
        placed[at] = order[k];
        np++;
        if (off + size > peak) peak = off + size;
    }
    for (int b = 0; b < C->nbufs; b++)
        if (C->bufs[b].region == JM_REGION_SCRATCH && C->bufs[b].merged_into >= 0) naive += (C->bufs[b].bytes + JM_ALIGN - 1) / JM_ALIGN * JM_ALIGN;
    mem->peak = peak;
    mem->naive = naive;
    free(order);
    free(placed);
}

/* ---- per program ------------------------------------------------------------ */

static int64_t jm_ref_of(jm_pctx *C, int b) {
    jm_pbuf *B = &C->bufs[jm_find(C, b)];
    return jm_ref_make(B->region, B->offset);
}

static void jm_fill_desc(jm_tdesc *d, const char *name, const jm_type *t, jm_ref ref) {
    memset(d, 0, sizeof *d);
    d->name = name;
    d->dtype = (int32_t)jm_idx_dtype(t->dtype);
    d->rank = t->rank;
    for (int i = 0; i < t->rank; i++) d->dim[i] = t->dim[i];
    d->ref = ref;
}

/* In-place state scatters (the replay buffer's new chains): a program that
   writes state G with scatter(G, idx, rows) copies G to scratch, scatters
   into the copy and commits the copy back, two copies of the whole buffer
   per run. The scatter step is marked (iat[5] = the write's index + 1) when
   a device may instead scatter straight into G and skip that write: the
   scatter is a top-level step of the last phase, no later step reads G or
   the scatter's result, and no output is either. The table keeps the copy-based meaning
   too (a device may ignore the mark: the GPU does). The CPU keeps the
   overwritten rows to restore them if the run fails (engine/rt_cpu.c). */
static void jm_mark_scatter_in_place(jm_pctx *C, int g, const jm_program *pr) {
    for (int k = 0; k < pr->nwrites; k++) {
        const jm_node *nd = PN(C, g, pr->writes[k].node);
        if (nd->op != JM_OP_SCATTER || PN(C, g, nd->src[0])->op != JM_OP_STATE || PN(C, g, nd->src[0])->attr.i[0] != pr->writes[k].global) continue;
        int rb = jm_find(C, C->vbuf[g][pr->writes[k].node]), sb = jm_find(C, C->gbuf[pr->writes[k].global]);
        int at = -1;
        for (int s = 0; s < C->nsteps; s++) {
            const jm_step *st = &C->steps[s];
            if (st->kind == JM_STEP_LIB && st->op == JM_LIB_SCATTER && st->nbuf >= 2 && jm_find(C, (int)st->buf[0]) == rb &&
                jm_find(C, (int)st->buf[1]) == sb) at = s;
            if (st->kind == JM_STEP_LOOP) s += st->body;       /* top-level steps only */
        }
        /* in the last phase of a data-parallel step (SAM's replay write is in
           an earlier one): a device commits the writes, and restores a failed
           run's rows, within the run of one phase */
        int ok = at >= 0 && (!C->phase || at >= C->phase_start[C->phase_now]);
        for (int s = at + 1; ok && s < C->nsteps; s++)
            for (int b = 0; b < C->steps[s].nbuf; b++) {
                int f = jm_find(C, (int)C->steps[s].buf[b]);
                if (f == rb || f == sb) ok = 0;
            }
        for (int o = 0; ok && o < pr->noutputs; o++) {
            int f = jm_find(C, C->vbuf[g][pr->outputs[o].node]);
            if (f == rb || f == sb) ok = 0;
        }
        for (int w = 0; ok && w < pr->nwrites; w++) if (w != k && pr->writes[w].global == pr->writes[k].global) ok = 0;
        if (!ok) continue;
        jm_step *st = &C->steps[at];
        int64_t *iat = jm_arena_alloc(C->m->arena, sizeof(int64_t) * 6);
        for (int i = 0; i < 6; i++) iat[i] = i < st->nint ? st->iat[i] : -1;
        iat[5] = k + 1;
        st->iat = iat;
        st->nint = 6;
    }
}

static int jm_plan_program(jm_plan *P, jm_diags *d, int p, const int64_t *goff) {
    jm_module *m = P->m;
    jm_program *pr = &m->programs[p];
    jm_pctx C;
    memset(&C, 0, sizeof C);
    C.m = m; C.P = P; C.d = d; C.prog = p; C.pname = pr->name;
    size_t ng = (size_t)m->ngraphs + 1;
    C.mat = jm_arena_alloc(m->arena, sizeof(char *) * ng);
    C.ext = jm_arena_alloc(m->arena, sizeof(char *) * ng);
    C.absorbed = jm_arena_alloc(m->arena, sizeof(char *) * ng);
    C.users = jm_arena_alloc(m->arena, sizeof(int *) * ng);
    C.reader = jm_arena_alloc(m->arena, sizeof(int *) * ng);
    C.carried = jm_arena_alloc(m->arena, sizeof(int **) * ng);
    C.seen = jm_arena_alloc(m->arena, sizeof(char *) * ng);
    C.vbuf = jm_arena_alloc(m->arena, sizeof(int *) * ng);
    C.epi_of = jm_arena_alloc(m->arena, sizeof(int *) * ng);
    C.epi_conv = jm_arena_alloc(m->arena, sizeof(char *) * ng);
    C.epi_inplace = jm_arena_alloc(m->arena, sizeof(char *) * ng);
    C.epi_root = jm_arena_alloc(m->arena, sizeof(int *) * ng);
    C.gbuf = jm_arena_alloc(m->arena, sizeof(int) * (size_t)(m->nglobals + 1));
    for (int i = 0; i < m->nglobals; i++) {
        C.gbuf[i] = jm_new_buf(&C, jm_bytes(&m->globals[i].type), JM_REGION_STATE, m->globals[i].name);
        C.bufs[C.gbuf[i]].global = i;
        C.bufs[C.gbuf[i]].offset = goff[i];
    }
    int g = pr->graph;
    if (pr->dp && pr->dp_phases <= JM_DP_MAX_PHASES) {
        jm_graph *gr = &m->graphs[g];
        C.phase = jm_arena_alloc(m->arena, (size_t)gr->nnode + 1);
        for (int i = 0; i < gr->nnode; i++) {
            const jm_node *n = &gr->node[i];
            int ph = 0;
            for (int k = 0; k < n->nsrc; k++) if (C.phase[n->src[k]] > ph) ph = C.phase[n->src[k]];
            C.phase[i] = (char)(ph + jm_dp_is_collective(n));
        }
    }
    jm_plan_graph(&C, g);
    if (C.failed) { free(C.coll_buf); return -1; }
    jm_tprogram *tp = &P->table.programs[p];
    tp->name = pr->name;
    /* state writes whose value is itself a global are copied to scratch first, so
       that all writes commit from values computed before any of them */
    int *wsrc = jm_arena_alloc(m->arena, sizeof(int) * (size_t)(pr->nwrites + 1));
    for (int k = 0; k < pr->nwrites; k++) {
        int b = C.vbuf[g][pr->writes[k].node];
        if (C.bufs[b].region == JM_REGION_STATE) {
            int t = jm_new_buf(&C, C.bufs[b].bytes, JM_REGION_SCRATCH, "state write copy");
            jm_emit_copy(&C, t, b, C.bufs[b].bytes, pr->name);
            b = t;
        }
        wsrc[k] = b;
        jm_pin(&C, b);
    }
    for (int k = 0; k < pr->noutputs; k++) jm_pin(&C, C.vbuf[g][pr->outputs[k].node]);
    jm_mark_scatter_in_place(&C, g, pr);
    if (jm_verify_order(&C) != 0) return -1;
    jm_inplace(&C);
    jm_pmem *mem = &P->mem[p];
    jm_place_scratch(&C, mem);
    for (int b = 0; b < C.nbufs; b++) if (C.bufs[b].merged_into >= 0) C.bufs[b].offset = C.bufs[jm_find(&C, b)].offset;
    mem->bufs = C.bufs;
    mem->nbufs = C.nbufs;
    tp->scratch_bytes = mem->peak;
    tp->ninputs = pr->ninputs;
    tp->inputs = jm_arena_alloc(m->arena, sizeof(jm_tdesc) * (size_t)(pr->ninputs + 1));
    for (int k = 0; k < pr->ninputs; k++)
        jm_fill_desc(&tp->inputs[k], pr->inputs[k].name, &PN(&C, g, pr->inputs[k].node)->type, jm_ref_of(&C, C.vbuf[g][pr->inputs[k].node]));
    tp->noutputs = pr->noutputs;
    tp->outputs = jm_arena_alloc(m->arena, sizeof(jm_tdesc) * (size_t)(pr->noutputs + 1));
    for (int k = 0; k < pr->noutputs; k++)
        jm_fill_desc(&tp->outputs[k], pr->outputs[k].name, &PN(&C, g, pr->outputs[k].node)->type, jm_ref_of(&C, C.vbuf[g][pr->outputs[k].node]));
    tp->nwrites = pr->nwrites;
    tp->writes = jm_arena_alloc(m->arena, sizeof(jm_twrite) * (size_t)(pr->nwrites + 1));
    for (int k = 0; k < pr->nwrites; k++) {
        tp->writes[k].global = pr->writes[k].global;
        tp->writes[k].src = jm_ref_of(&C, wsrc[k]);
        tp->writes[k].bytes = jm_bytes(&m->globals[pr->writes[k].global].type);
    }
    /* a mean's operand is final once the last step of the phase before it
       that names its buffer has run (a loop's body steps count as the loop's):
       the runtime starts exchanging it there, while the rest of the backward
       pass runs (engine/rt_dp.c); step = how many steps that is */
    for (int k = 0; k < C.ncolls; k++) {
        jm_tcoll *tc = &C.colls[k];
        if (tc->kind != JM_COLL_MEAN) continue;
        int root = jm_find(&C, C.coll_buf[2 * k]);
        int lo = C.phase_start[tc->phase - 1], hi = tc->phase <= C.phase_now ? C.phase_start[tc->phase] : C.nsteps;
        tc->step = lo;
        for (int s = lo; s < hi; s++)
            for (int b = 0; b < C.steps[s].nbuf; b++)
                if (jm_find(&C, (int)C.steps[s].buf[b]) == root) tc->step = s + 1;
    }
    for (int s = 0; s < C.nsteps; s++)
        for (int b = 0; b < C.steps[s].nbuf; b++) C.steps[s].buf[b] = jm_ref_of(&C, (int)C.steps[s].buf[b]);
    tp->steps = C.steps;
    tp->nsteps = C.nsteps;
    /* phase k starts at the first step of a node after k exchanges (the
       state writes' copies after the last step belong to the last phase) */
    tp->nphases = C.phase_now + 1;
    tp->phase_start = jm_arena_alloc(m->arena, sizeof(int32_t) * (size_t)(tp->nphases + 1));
    for (int k = 0; k < tp->nphases; k++) tp->phase_start[k] = C.phase_start[k];
    tp->phase_start[tp->nphases] = C.nsteps;
    tp->dp_why = pr->dp ? (pr->dp_why ? pr->dp_why : "") : "it is not a training step (no minimize)";
    for (int k = 0; k < C.ncolls; k++) {
        jm_tcoll *tc = &C.colls[k];
        for (int j = 0; j < 2; j++) tc->ref[j] = C.coll_buf[2 * k + j] >= 0 ? jm_ref_of(&C, C.coll_buf[2 * k + j]) : jm_ref_make(JM_REGION_SCRATCH, 0);
    }
    tp->colls = C.colls;
    tp->ncolls = C.ncolls;
    free(C.coll_buf);
    return 0;
}

/* Is knob global gl an optimizer's learning rate (`adam(lr=NAME)` with NAME a
   config constant)? The table says so in the knob's b (rt_table.h): train's
   schedule and divergence guard scale every such knob. */
/* A knob is a learning rate the executable's schedule and the guard's cuts
   apply to when an optimizer takes it as lr= and does not opt out with
   schedule=0 (VERA's posterior-width Adam keeps its rate fixed). */
static int jm_opt_scheduled(const jm_decl_record *o) {
    for (int i = 0; i < o->nargs; i++)
        if (strcmp(o->args[i].name, "schedule") == 0)
            return o->args[i].kind == JM_CV_FLOAT ? o->args[i].f != 0 : o->args[i].i != 0;
    return 1;
}

static int jm_is_lr_knob(const jm_module *m, const jm_global *gl) {
    for (int o = 0; gl->knob && o < m->noptimizers; o++) {
        if (!jm_opt_scheduled(&m->optimizers[o])) continue;
        for (int i = 0; i < m->optimizers[o].nargs; i++) {
            const jm_config_value *a = &m->optimizers[o].args[i];
            if (strcmp(a->name, "lr") == 0 && a->cfg && strcmp(a->cfg, gl->knob) == 0) return 1;
        }
    }
    return 0;
}

int jm_plan_build(jm_module *m, jm_plan *P, jm_diags *d) {
    memset(P, 0, sizeof *P);
    P->m = m;
    /* the training programs' shards (dp.h); again is a no-op, so callers that
       ran it for --dump=dp and those that did not plan alike */
    if (jm_dp_prepare(m, d) != 0) return -1;
    jm_table *t = &P->table;
    t->nglobals = m->nglobals;
    t->globals = jm_arena_alloc(m->arena, sizeof(jm_tglobal) * (size_t)(m->nglobals + 1));
    int64_t *goff = jm_arena_alloc(m->arena, sizeof(int64_t) * (size_t)(m->nglobals + 1)), off = 0;
    for (int i = 0; i < m->nglobals; i++) {
        jm_global *gl = &m->globals[i];
        goff[i] = off;
        jm_tglobal *tg = &t->globals[i];
        jm_fill_desc(&tg->t, gl->name, &gl->type, jm_ref_make(JM_REGION_STATE, off));
        tg->kind = gl->kind == JM_GLOBAL_PARAM ? JM_GKIND_PARAM : gl->knob ? JM_GKIND_CONFIG : JM_GKIND_STATE;
        tg->init = gl->init.kind == JM_INIT_ZEROS ? JM_GINIT_ZEROS : gl->init.kind == JM_INIT_CONST ? JM_GINIT_CONST
                 : gl->init.kind == JM_INIT_UNIFORM ? JM_GINIT_UNIFORM : gl->init.kind == JM_INIT_NORMAL ? JM_GINIT_NORMAL : JM_GINIT_NONE;
        tg->a = gl->init.a;
        tg->b = tg->kind == JM_GKIND_CONFIG ? jm_is_lr_knob(m, gl) : gl->init.b;
        off += (jm_bytes(&gl->type) + JM_ALIGN - 1) / JM_ALIGN * JM_ALIGN;
    }
    t->state_bytes = off;
    t->nprograms = m->nprograms;
    t->programs = jm_arena_alloc(m->arena, sizeof(jm_tprogram) * (size_t)(m->nprograms + 1));
    P->mem = jm_arena_alloc(m->arena, sizeof(jm_pmem) * (size_t)(m->nprograms + 1));
    int rc = 0;
    for (int p = 0; p < m->nprograms; p++)
        if (jm_plan_program(P, d, p, goff) != 0) rc = -1;
    if (rc) return -1;
    /* the extern functions, with their declared (C) signatures */
    t->nexterns = m->nexterns;
    t->externs = jm_arena_alloc(m->arena, sizeof(jm_textern) * (size_t)(m->nexterns + 1));
    for (int i = 0; i < m->nexterns; i++) {
        const jm_extern *x = &m->externs[i];
        jm_textern *tx = &t->externs[i];
        tx->name = x->name;
        tx->library = x->library;
        tx->nparams = x->nparams;
        tx->params = jm_arena_alloc(m->arena, sizeof(jm_tdesc) * (size_t)(x->nparams + 1));
        for (int k = 0; k < x->nparams; k++) jm_fill_desc(&tx->params[k], "", &x->params[k], 0);
        jm_fill_desc(&tx->ret, "", &x->ret, 0);
    }
    t->nkernels = P->nkernels;
    t->kernels = jm_arena_alloc(m->arena, sizeof(char *) * (size_t)(P->nkernels + 1));
    for (int k = 0; k < P->nkernels; k++) t->kernels[k] = P->kernels[k].name;
    return 0;
}

/* ---- dumps and checks ----------------------------------------------------- */

static void jm_dump_kernel_ops(const jm_plan *P, const jm_kspec *k, FILE *out) {
    jm_graph *gr = &P->m->graphs[k->graph];
    fprintf(out, "    %s: %s, %" PRId64 " items%s", k->name, k->kind == JM_KERNEL_REDUCE ? "reduce" : "elementwise",
            k->items, k->kind == JM_KERNEL_ELEMWISE ? (k->split ? " (rows)" : " (flat)") : "");
    fprintf(out, ", %d ops, %d buffers:", k->nops, k->nparam);
    for (int t = 0; t < k->ntree; t++) if (k->tree_param[t] >= 0) fprintf(out, " %%%d->b%d", k->tree[t], k->tree_param[t]);
    fprintf(out, " -> %%%d %s%s\n", k->root, jm_ops[gr->node[k->root].op].name, k->rng ? "  [draws its noise inline]" : "");
}

void jm_plan_dump_fused(const jm_plan *P, const char *program, FILE *out) {
    const jm_table *t = &P->table;
    for (int p = 0; p < t->nprograms; p++) {
        const jm_tprogram *pr = &t->programs[p];
        if (program && strcmp(program, pr->name) != 0) continue;
        int nk = 0, nl = 0;
        for (int s = 0; s < pr->nsteps; s++) nk += pr->steps[s].kind == JM_STEP_KERNEL, nl += pr->steps[s].kind == JM_STEP_LIB;
        fprintf(out, "program %s: %d steps (%d kernels, %d runtime ops)\n", pr->name, pr->nsteps, nk, nl);
        int mp = P->m ? jm_module_find_program(P->m, pr->name) : -1;
        if (mp >= 0 && P->m->programs[mp].twins)   /* batch.h: the steps below already run both halves */
            fprintf(out, "  twin batching: %d pairs of ops of two evaluations run as one at twice the batch\n", P->m->programs[mp].twins);
        int depth = 0, ends[16];
        for (int s = 0; s < pr->nsteps; s++) {
            while (depth > 0 && s > ends[depth - 1]) depth--;
            const jm_step *st = &pr->steps[s];
            fprintf(out, "  %*s[%d] ", 2 * depth, "", s);
            switch (st->kind) {
            case JM_STEP_KERNEL: fprintf(out, "kernel %s  (%s)\n", t->kernels[st->op], st->where); jm_dump_kernel_ops(P, &P->kernels[st->op], out); break;
            case JM_STEP_LIB:
                fprintf(out, "%s%s%s  (%s)%s%s%s%s\n", jm_lib_name(st->op), st->op == JM_LIB_EXTERN ? " " : "",
                        st->op == JM_LIB_EXTERN ? t->externs[st->iat[0]].name : "", st->where,
                        st->epi >= 0 ? " + epilogue " : "", st->epi >= 0 ? t->kernels[st->epi] : "",
                        st->op == JM_LIB_SCATTER && st->nint > 5 && st->iat[5] > 0 ? " in place into " : "",
                        st->op == JM_LIB_SCATTER && st->nint > 5 && st->iat[5] > 0 ? t->globals[pr->writes[st->iat[5] - 1].global].t.name : "");
                if (st->epi >= 0) jm_dump_kernel_ops(P, &P->kernels[st->epi], out);
                break;
            case JM_STEP_COPY: fprintf(out, "copy %" PRId64 " bytes  (%s)\n", st->n, st->where); break;
            case JM_STEP_LOOP:
                fprintf(out, "loop %" PRId64 " times, %d steps  (%s)\n", st->n, st->body, st->where);
                if (depth < 16) ends[depth++] = s + st->body;
                break;
            }
        }
    }
}

void jm_plan_dump_memory(const jm_plan *P, const char *program, FILE *out) {
    const jm_table *t = &P->table;
    fprintf(out, "state: %" PRId64 " bytes in %d globals\n", t->state_bytes, t->nglobals);
    for (int p = 0; p < t->nprograms; p++) {
        const jm_tprogram *pr = &t->programs[p];
        if (program && strcmp(program, pr->name) != 0) continue;
        const jm_pmem *mem = &P->mem[p];
        int n = 0;
        for (int b = 0; b < mem->nbufs; b++) n += mem->bufs[b].region == JM_REGION_SCRATCH;
        fprintf(out, "program %s: scratch peak %" PRId64 " bytes (%.2f MiB) for %d buffers totalling %" PRId64 " bytes (%.2f MiB)\n",
                pr->name, mem->peak, mem->peak / 1048576.0, n, mem->naive, mem->naive / 1048576.0);
        for (int b = 0; b < mem->nbufs; b++) {
            const jm_pbuf *B = &mem->bufs[b];
            if (B->region != JM_REGION_SCRATCH) continue;
            char f[16], l[16];
            if (B->first < 0) snprintf(f, sizeof f, "start"); else snprintf(f, sizeof f, "%d", B->first);
            if (B->last == JM_FOREVER) snprintf(l, sizeof l, "end"); else snprintf(l, sizeof l, "%d", B->last);
            if (B->merged_into >= 0)
                fprintf(out, "  b%-4d [%5s, %5s]  in place of b%-4d    %10" PRId64 " bytes  %s\n", b, f, l, B->merged_into, B->bytes, B->what);
            else
                fprintf(out, "  b%-4d [%5s, %5s]  offset %10" PRId64 "  %10" PRId64 " bytes  %s\n", b, f, l, B->offset, B->bytes, B->what);
        }
        /* data parallelism: the phases, and when each exchanged value is final
           (a mean's exchange may start there: engine/rt_dp.c's buckets) */
        if (pr->ncolls == 0) continue;
        fprintf(out, "  phases:");
        for (int k = 0; k < pr->nphases; k++) fprintf(out, " [%d, %d)", pr->phase_start[k], pr->phase_start[k + 1]);
        fputc('\n', out);
        for (int c = 0; c < pr->ncolls; c++) {
            const jm_tcoll *cl = &pr->colls[c];
            if (cl->kind == JM_COLL_MEAN)
                fprintf(out, "  mean before phase %d: %10" PRId64 " bytes %s at offset %" PRId64 ", final after step %d of phase %d's [%d, %d)\n",
                        cl->phase, cl->bytes[0], cl->dtype == JM_DT_F64 ? "f64" : "f32", jm_ref_offset(cl->ref[0]), cl->step,
                        cl->phase - 1, pr->phase_start[cl->phase - 1], pr->phase_start[cl->phase]);
            else
                fprintf(out, "  rows before phase %d: index %" PRId64 " + rows %" PRId64 " bytes per shard, for the scatter at step %d\n",
                        cl->phase, cl->bytes[0], cl->bytes[1], cl->step);
        }
    }
}

static int jm_cmp_first(const void *x, const void *y, void *ctx) {
    const jm_pbuf *B = ctx;
    int a = *(const int *)x, b = *(const int *)y;
    if (B[a].first != B[b].first) return B[a].first < B[b].first ? -1 : 1;
    return a - b;
}

int jm_plan_check_memory(const jm_plan *P, FILE *out) {
    int bad = 0;
    for (int p = 0; p < P->table.nprograms; p++) {
        const jm_pmem *mem = &P->mem[p];
        for (int a = 0; a < mem->nbufs; a++) {
            const jm_pbuf *A = &mem->bufs[a];
            int64_t size = A->region == JM_REGION_STATE ? P->table.state_bytes : P->table.programs[p].scratch_bytes;
            if (A->offset < 0 || A->offset + A->bytes > size) {
                bad++;
                if (out) fprintf(out, "%s: b%d lies outside its region\n", P->table.programs[p].name, a);
            }
        }
        /* sweep over the buffers in order of their first step, against those still live */
        int *ord = malloc(sizeof(int) * (size_t)(mem->nbufs + 1)), n = 0, *act = malloc(sizeof(int) * (size_t)(mem->nbufs + 1)), na = 0;
        for (int a = 0; a < mem->nbufs; a++) {
            const jm_pbuf *A = &mem->bufs[a];
            if (A->region == JM_REGION_SCRATCH && A->bytes > 0 && A->merged_into < 0) ord[n++] = a;
        }
        qsort_r(ord, (size_t)n, sizeof(int), jm_cmp_first, mem->bufs);
        for (int i = 0; i < n; i++) {
            const jm_pbuf *B = &mem->bufs[ord[i]];
            int k = 0;
            for (int j = 0; j < na; j++) {
                const jm_pbuf *A = &mem->bufs[act[j]];
                if (A->last < B->first) continue;            /* dead before B starts: drop it */
                act[k++] = act[j];
                if (A->offset < B->offset + B->bytes && B->offset < A->offset + A->bytes) {
                    bad++;
                    if (out) fprintf(out, "%s: b%d and b%d are live together and overlap\n", P->table.programs[p].name, act[j], ord[i]);
                }
            }
            na = k;
            act[na++] = ord[i];
        }
        free(ord);
        free(act);
    }
    return bad;
}
