/* info.c — see info.h. */
#include "info.h"
#include "elab_int.h"
#include <inttypes.h>

int64_t jm_info_param_count(const jm_module *m) {
    int64_t n = 0;
    for (int i = 0; i < m->nglobals; i++)
        if (m->globals[i].kind == JM_GLOBAL_PARAM) n += jm_type_numel(&m->globals[i].type);
    return n;
}

static int jm_graph_nodes(const jm_module *m, int g) {
    int n = m->graphs[g].nnode;
    for (int i = 0; i < m->graphs[g].nnode; i++)
        if (m->graphs[g].node[i].op == JM_OP_LOOP) n += jm_graph_nodes(m, (int)m->graphs[g].node[i].attr.i[0]);
    return n;
}

void jm_info_record_nodes(jm_module *m, int stage) {
    for (int p = 0; p < m->nprograms; p++) m->programs[p].nodes[stage] = jm_graph_nodes(m, m->programs[p].graph);
}

static int64_t jm_info_graph_macs(const jm_module *m, int g, int *has_grad) {
    const jm_graph *gr = &m->graphs[g];
    int64_t macs = 0;
    for (int i = 0; i < gr->nnode; i++) {
        const jm_node *n = &gr->node[i];
        if (n->op == JM_OP_CONV2D || n->op == JM_OP_CONV2D_BWD_DATA) {
            /* per conv output element: (C / groups) * KH * KW multiply-adds; the data
               gradient does the same work, seen from the other side */
            const jm_type *w = &gr->node[n->src[1]].type;
            const jm_type *y = n->op == JM_OP_CONV2D ? &n->type : &gr->node[n->src[0]].type;
            macs += jm_type_numel(y) * w->dim[1] * w->dim[2] * w->dim[3];
        } else if (n->op == JM_OP_CONV2D_BWD_FILTER) {
            /* one multiply-add per (weight element, output position, batch row) */
            const jm_type *dy = &gr->node[n->src[1]].type;
            macs += jm_type_numel(&n->type) * dy->dim[0] * dy->dim[2] * dy->dim[3];
        } else if (n->op == JM_OP_MATMUL) {
            const jm_type *a = &gr->node[n->src[0]].type;
            macs += jm_type_numel(&n->type) * a->dim[a->rank - 1];
        } else if (n->op == JM_OP_LOOP) {
            macs += n->attr.i[1] * jm_info_graph_macs(m, (int)n->attr.i[0], has_grad);
        } else if (n->op == JM_OP_GRAD) {
            *has_grad = 1;
        }
    }
    return macs;
}

int64_t jm_info_program_macs(const jm_module *m, int p, int *has_grad) {
    *has_grad = 0;
    return jm_info_graph_macs(m, m->programs[p].graph, has_grad);
}

void jm_info_print(const jm_module *m, FILE *out) {
    int64_t np = 0, ns = 0, nps = 0;
    for (int i = 0; i < m->nglobals; i++) {
        if (m->globals[i].kind == JM_GLOBAL_PARAM) { np += jm_type_numel(&m->globals[i].type); nps++; }
        else ns += jm_type_numel(&m->globals[i].type);
    }
    fprintf(out, "parameters: %" PRId64 " in %" PRId64 " tensors\n", np, nps);
    fprintf(out, "state: %" PRId64 " elements in %d tensors\n", ns, m->nglobals - (int)nps);
    /* an optimizer with params= (language §4.10): the parameters of its set */
    for (int o = 0; o < m->noptimizers; o++) {
        const jm_decl_record *r = &m->optimizers[o];
        if (!r->psel) continue;
        int64_t n = 0, k = 0;
        for (int i = 0; i < m->nglobals; i++)
            if (m->globals[i].kind == JM_GLOBAL_PARAM && jm_elab_opt_has(m, r, i)) { n += jm_type_numel(&m->globals[i].type); k++; }
        fprintf(out, "optimizer %s: params=", r->name);
        if (r->psel == 2) fprintf(out, "\"%s\"", r->pscope);
        for (int i = 0; r->psel == 1 && i < r->npmodels; i++)
            fprintf(out, "%s%s%s", r->npmodels > 1 && i == 0 ? "[" : i ? ", " : "", r->pmodels[i], r->npmodels > 1 && i == r->npmodels - 1 ? "]" : "");
        fprintf(out, ": %" PRId64 " parameters in %" PRId64 " tensors\n", n, k);
    }
    for (int p = 0; p < m->nprograms; p++) {
        const jm_program *pr = &m->programs[p];
        int has_grad;
        int64_t macs = jm_info_program_macs(m, p, &has_grad);
        const jm_graph *g = &m->graphs[pr->graph];
        int64_t batch = 0;
        if (pr->ninputs > 0 && g->node[pr->inputs[0].node].type.rank > 0) batch = g->node[pr->inputs[0].node].type.dim[0];
        fprintf(out, "program %s: %.6f GMAC", pr->name, (double)macs / 1e9);
        if (batch > 0) fprintf(out, " (%.6f GMAC per example, batch %" PRId64 ")", (double)macs / 1e9 / (double)batch, batch);
        fprintf(out, "; nodes: %d elaborated", pr->nodes[0]);
        if (pr->nodes[1]) fprintf(out, ", %d after autodiff", pr->nodes[1]);
        if (pr->nodes[2]) fprintf(out, ", %d after simplify", pr->nodes[2]);
        fputc('\n', out);
    }
}
