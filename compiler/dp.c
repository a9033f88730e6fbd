/* dp.c — see dp.h. */
#include "dp.h"
#include <stdlib.h>
#include <string.h>

int jm_dp_is_collective(const jm_node *n) {
    return n->op == JM_OP_ALLREDUCE || (n->op == JM_OP_SCATTER && n->attr.k == 1);
}

static int jm_is_rng(jm_op op) { return jm_ops[op].cls == JM_CLASS_RNG; }

/* the root graph a graph belongs to */
static int jm_root_of(const jm_module *m, int g) {
    while (m->graphs[g].parent >= 0) g = m->graphs[g].parent;
    return g;
}

static const char *jm_dp_where(jm_module *m, jm_diags *d, jm_loc loc) {
    const char *file = loc.file >= 0 && loc.file < d->nsrc ? d->src[loc.file].path : "?";
    return jm_arena_printf(m->arena, "%s:%d:%d", file, loc.line, loc.col);
}

/* Is a draw of type t values per example: 1 + the first axis whose size is
   one of the program's batch sizes (the inputs' leading dimensions), or 0.
   VERA's posterior draws [samples, batch, noise] are per example on axis 1. */
static int jm_per_example(const jm_type *t, const int64_t *batch, int nbatch) {
    for (int a = 0; a < t->rank; a++)
        for (int k = 0; k < nbatch; k++) if (t->dim[a] == batch[k]) return a + 1;
    return 0;
}

/* sharded[i] for the root graph g: inputs and per-example draws, and what
   depends on them other than through a collective */
static void jm_dp_sharded(const jm_module *m, int g, char *sharded) {
    const jm_graph *gr = &m->graphs[g];
    for (int i = 0; i < gr->nnode; i++) {
        const jm_node *n = &gr->node[i];
        sharded[i] = 0;
        if (n->op == JM_OP_INPUT) { sharded[i] = 1; continue; }
        if (jm_is_rng(n->op)) { sharded[i] = n->attr.ni > 1 && n->attr.i[1] > 0; continue; }
        if (jm_dp_is_collective(n)) continue;
        for (int s = 0; s < n->nsrc; s++) sharded[i] |= sharded[n->src[s]];
    }
}

/* the mean over shards of node: an existing one (two outputs of one value
   share it: the runtime averages each buffer once), or a new one */
static int jm_append_allreduce(jm_module *m, int g, int node, jm_diags *d) {
    for (int i = node + 1; i < m->graphs[g].nnode; i++)
        if (m->graphs[g].node[i].op == JM_OP_ALLREDUCE && m->graphs[g].node[i].src[0] == node) return i;
    return jm_ir_add(m, g, JM_OP_ALLREDUCE, &node, 1, NULL, NULL, m->graphs[g].node[node].loc, d);
}

static void jm_dp_why(jm_module *m, jm_program *pr, const char *why) {
    if (!pr->dp_why) pr->dp_why = why;     /* the first reason found */
}

static int jm_dp_program(jm_module *m, int p, jm_diags *d) {
    jm_program *pr = &m->programs[p];
    int g = pr->graph;
    jm_graph *gr = &m->graphs[g];
    pr->dp = 0;
    for (int i = 0; i < gr->nnode; i++) pr->dp |= gr->node[i].op == JM_OP_ALLREDUCE;
    if (!pr->dp) return 0;
    /* the batch sizes: every input is split along its leading dimension */
    int64_t *batch = jm_arena_alloc(m->arena, sizeof(int64_t) * (size_t)(pr->ninputs + 1));
    int nbatch = 0;
    for (int k = 0; k < pr->ninputs; k++) {
        const jm_type *t = &gr->node[pr->inputs[k].node].type;
        if (t->rank < 1) {
            jm_dp_why(m, pr, jm_arena_printf(m->arena, "input '%s' is a scalar, not a batch to split", pr->inputs[k].name));
            continue;
        }
        batch[nbatch++] = t->dim[0];
    }
    if (pr->ninputs == 0) jm_dp_why(m, pr, "it has no batch input to split");
    /* per-example draws, in the program's graph and its loops' bodies */
    for (int h = 0; h < m->ngraphs; h++) {
        if (jm_root_of(m, h) != g) continue;
        for (int i = 0; i < m->graphs[h].nnode; i++) {
            jm_node *n = &m->graphs[h].node[i];
            int axis1 = jm_is_rng(n->op) ? jm_per_example(&n->type, batch, nbatch) : 0;
            if (!axis1) continue;
            if (n->attr.ni < 2) n->attr.ni = 2;
            n->attr.i[1] = axis1;
        }
    }
    char *sharded = malloc((size_t)gr->nnode + 64);
    if (!sharded) { jm_diag_error(d, pr->loc, "out of memory"); return -1; }
    jm_dp_sharded(m, g, sharded);
    /* the mean of a value every shard has alike is that value: no exchange
       (a parameter whose gradient does not depend on the batch) */
    for (int i = 0; i < gr->nnode; i++)
        if (gr->node[i].op == JM_OP_ALLREDUCE && !sharded[gr->node[i].src[0]]) gr->node[i].op = JM_OP_STOP_GRAD;
    /* state written from the batch */
    for (int k = 0; k < pr->nwrites; k++) {
        int v = pr->writes[k].node;
        if (!sharded[v]) continue;
        jm_node *n = &m->graphs[g].node[v];
        const char *name = m->globals[pr->writes[k].global].name;
        if (n->op == JM_OP_SCATTER && !sharded[n->src[0]]) { n->attr.k = 1; continue; }
        if (jm_dtype_is_float(n->type.dtype)) {
            int r = jm_append_allreduce(m, g, v, d);
            if (r < 0) { free(sharded); return -1; }
            pr->writes[k].node = r;
            continue;
        }
        jm_dp_why(m, pr, jm_arena_printf(m->arena, "state '%s' is written with a %s value computed from the batch (%s)", name,
                                         jm_dtype_name(n->type.dtype), jm_dp_where(m, d, pr->writes[k].loc)));
    }
    /* outputs computed from the batch: scalars are batch means, averaged */
    for (int k = 0; k < pr->noutputs; k++) {
        int v = pr->outputs[k].node;
        if (!sharded[v]) continue;
        const jm_type *t = &m->graphs[g].node[v].type;
        if (t->rank == 0 && jm_dtype_is_float(t->dtype)) {
            int r = jm_append_allreduce(m, g, v, d);
            if (r < 0) { free(sharded); return -1; }
            pr->outputs[k].node = r;
            continue;
        }
        char ts[96];
        jm_dp_why(m, pr, jm_arena_printf(m->arena, "output '%s' (%s) is computed from the batch and is not a scalar mean", pr->outputs[k].name,
                                         jm_type_str(t, ts, sizeof ts)));
    }
    gr = &m->graphs[g];
    free(sharded);
    char *phase = malloc((size_t)gr->nnode + 64);
    if (!phase) { jm_diag_error(d, pr->loc, "out of memory"); return -1; }
    /* the exchanges per step: a collective's phase is one more than its
       sources'; the runtime runs the phases in turn, exchanging between them
       (plan.c orders the steps by the same rule) */
    int phases = 1;
    for (int i = 0; i < gr->nnode; i++) {
        const jm_node *n = &gr->node[i];
        int ph = 0;
        for (int s = 0; s < n->nsrc; s++) if (phase[n->src[s]] > ph) ph = phase[n->src[s]];
        if (jm_dp_is_collective(n)) ph++;
        phase[i] = (char)(ph > 100 ? 100 : ph);
        if (ph + 1 > phases) phases = ph + 1;
    }
    pr->dp_phases = phases;
    if (phases > JM_DP_MAX_PHASES)
        jm_dp_why(m, pr, jm_arena_printf(m->arena, "it needs %d exchanges per step (at most %d)", phases - 1, JM_DP_MAX_PHASES - 1));
    free(phase);
    return 0;
}

int jm_dp_prepare(jm_module *m, jm_diags *d) {
    for (int p = 0; p < m->nprograms; p++)
        if (jm_dp_program(m, p, d) != 0) return -1;
    return 0;
}

void jm_dp_dump(jm_module *m, jm_diags *d, const char *program, FILE *out) {
    for (int p = 0; p < m->nprograms; p++) {
        jm_program *pr = &m->programs[p];
        if (program && strcmp(program, pr->name) != 0) continue;
        if (!pr->dp) { fprintf(out, "program %s: no collectives (not a training step)\n", pr->name); continue; }
        fprintf(out, "program %s: %s, %d exchange%s per step\n", pr->name, pr->dp_why ? "NOT data-parallel" : "data-parallel",
                pr->dp_phases - 1, pr->dp_phases == 2 ? "" : "s");
        if (pr->dp_why) fprintf(out, "  because %s\n", pr->dp_why);
        int g = pr->graph;
        int nmean = 0, nrows = 0, ndraw = 0;
        for (int h = 0; h < m->ngraphs; h++) {
            if (jm_root_of(m, h) != g) continue;
            for (int i = 0; i < m->graphs[h].nnode; i++) {
                const jm_node *n = &m->graphs[h].node[i];
                char ts[96];
                if (jm_is_rng(n->op) && n->attr.ni > 1 && n->attr.i[1] > 0) {
                    fprintf(out, "  per-example draw  %%%d %s %s%s (%s)\n", i, jm_ops[n->op].name, jm_type_str(&n->type, ts, sizeof ts),
                            n->attr.i[1] > 1 ? jm_arena_printf(m->arena, " on axis %d", (int)n->attr.i[1] - 1) : "", jm_dp_where(m, d, n->loc));
                    ndraw++;
                }
                if (h != g || !jm_dp_is_collective(n)) continue;
                if (n->op == JM_OP_ALLREDUCE) nmean++; else nrows++;
                fprintf(out, "  %-17s %%%d of %%%d %s (%s)\n", n->op == JM_OP_ALLREDUCE ? "mean over shards" : "rows of all shards", i,
                        n->op == JM_OP_ALLREDUCE ? n->src[0] : n->src[2], jm_type_str(&n->type, ts, sizeof ts), jm_dp_where(m, d, n->loc));
            }
        }
        fprintf(out, "  %d means, %d row scatters, %d per-example draws\n", nmean, nrows, ndraw);
    }
}
