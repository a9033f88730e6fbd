/* elab_params.c — parameters as `minimize` leaves them, and the parameter sets
 * that gradients and optimizers cover (language §5.9, §11.2, §13.3).
 *
 * Sequential minimize: after `minimize L with opt` the program's pending write
 * of a parameter p is its new value p'. A later read of p (a `param` statement
 * of a block or model, or the update of a later minimize) gets detach(p'),
 * made once per update: a leaf, as a parameter is in PyTorch after
 * opt.step(), so a later gradient stops there and never flows back into the
 * earlier update. A later grad(loss, params) or minimize differentiates with
 * respect to that node (the parameter's current value), not the PARAM global,
 * whose start-of-program value is then a constant. Programs without a second
 * minimize never create such nodes: their graphs are as before. */
#include "elab_int.h"
#include <stdlib.h>
#include <string.h>

/* The node of program p's pending write of global gi, or -1. */
static int jm_pending_write(const jm_program *p, int gi) {
    for (int i = 0; p && i < p->nwrites; i++)
        if (p->writes[i].global == gi) return p->writes[i].node;
    return -1;
}

/* The current-value node made for the pending write w of gi in p, or -1. */
static int jm_now_node(jm_elab *E, const jm_program *p, int gi, int w) {
    for (int i = 0; i < E->npnow; i++)
        if (E->pnow[i].prog == p && E->pnow[i].global == gi && E->pnow[i].write == w) return E->pnow[i].node;
    return -1;
}

jm_value jm_elab_param_now(jm_ctx *c, int gi, jm_loc loc) {
    jm_elab *E = c->E;
    jm_program *p = c->pview;
    int w = jm_pending_write(p, gi);
    if (w < 0) return jm_elab_state_value(c, gi, loc);
    /* the node lives in the program's root graph; a sampler body captures it */
    jm_ctx root = *c;
    root.g = p->graph;
    root.loop = NULL;
    int id = jm_now_node(E, p, gi, w);
    if (id < 0) {
        id = jm_add(&root, JM_OP_STOP_GRAD, &w, 1, NULL, NULL, loc);
        if (id < 0) return jm_v_err();
        jm_param_now pn = { p, gi, w, id };
        JM_VEC_PUSH(E->a, E->pnow, E->npnow, E->cappnow, pn);
    }
    return jm_v_tensor(&root, id);
}

/* The parameter that node id of the current graph stands for in a gradient, or
   -1: a PARAM node of a parameter this program has not updated yet, or the
   current-value node of the latest update of one it has. A PARAM node of an
   updated parameter is its old value: a constant for later gradients. */
static int jm_param_of(jm_ctx *c, int id) {
    jm_elab *E = c->E;
    jm_node *nd = &E->m->graphs[c->g].node[id];
    jm_program *p = c->pview && c->pview->graph == c->g ? c->pview : NULL;
    if (nd->op == JM_OP_PARAM) {
        int gi = (int)nd->attr.i[0];
        return jm_pending_write(p, gi) >= 0 ? -1 : gi;
    }
    if (nd->op != JM_OP_STOP_GRAD || !p) return -1;
    for (int i = 0; i < E->npnow; i++)
        if (E->pnow[i].prog == p && E->pnow[i].node == id)
            return jm_pending_write(p, E->pnow[i].global) == E->pnow[i].write ? E->pnow[i].global : -1;
    return -1;
}

/* Is node id of the current graph a current-value node (of any update)? */
static int jm_is_now_node(jm_ctx *c, int id) {
    for (int i = 0; i < c->E->npnow; i++)
        if (c->E->pnow[i].prog == c->pview && c->E->pnow[i].node == id && c->pview->graph == c->g) return 1;
    return 0;
}

/* Does a loop body (or one nested in it) read any parameter? */
static int jm_body_reads_params(jm_module *m, int body) {
    jm_graph *b = &m->graphs[body];
    for (int i = 0; i < b->nnode; i++) {
        if (b->node[i].op == JM_OP_PARAM) return 1;
        if (b->node[i].op == JM_OP_LOOP && jm_body_reads_params(m, (int)b->node[i].attr.i[0])) return 1;
    }
    return 0;
}

/* The parameters a loss depends on: parameter nodes (jm_param_of) among its
   ancestors in the current graph. Gradients do not flow through detach() or a
   sampler's loop, so the walk stops there. wrt[gi] gets the node to
   differentiate against (-2: not used). Returns the count, or -1 after an error. */
static int jm_loss_params(jm_ctx *c, int loss, jm_loc loc, int *wrt) {
    jm_module *m = c->E->m;
    jm_graph *g = &m->graphs[c->g];
    char *seen = calloc((size_t)g->nnode + 1, 1);
    int *stack = malloc(sizeof(int) * ((size_t)g->nnode + 1));
    int sp = 0, n = 0;
    for (int i = 0; i < m->nglobals; i++) wrt[i] = -2;
    stack[sp++] = loss;
    seen[loss] = 1;
    int sampler_line = 0;
    while (sp) {
        int id = stack[--sp];
        jm_node *nd = &g->node[id];
        int gi = jm_param_of(c, id);
        if (gi >= 0 && wrt[gi] == -2) { wrt[gi] = nd->op == JM_OP_PARAM ? -1 : id; n++; }
        if (nd->op == JM_OP_LOOP) {
            int reads = jm_body_reads_params(m, (int)nd->attr.i[0]);
            for (int s = 0; s < nd->nsrc && !reads; s++) reads = jm_is_now_node(c, nd->src[s]);   /* captured */
            if (reads) sampler_line = nd->loc.line;
        }
        if (nd->op == JM_OP_STOP_GRAD || nd->op == JM_OP_LOOP) continue;
        for (int s = 0; s < nd->nsrc; s++)
            if (!seen[nd->src[s]]) { seen[nd->src[s]] = 1; stack[sp++] = nd->src[s]; }
    }
    free(seen); free(stack);
    /* the same rule as autodiff's: gradients do not flow through a sampler, so a
       loss that reaches parameters through one must say so with detach() */
    if (sampler_line) {
        jm_diag_error(c->E->d, loc,
                      "grad(..., params): the loss depends on a sampler's result (line %d), and gradients do not flow "
                      "through sampler loops; wrap the sampler call in detach() to treat its samples as constants", sampler_line);
        return -1;
    }
    return n;
}

int jm_elab_opt_has(const jm_module *m, const jm_decl_record *opt, int gi) {
    const jm_global *g = &m->globals[gi];
    if (!opt || opt->psel == 0) return 1;
    if (opt->psel == 1) {
        for (int i = 0; i < g->nmodels; i++)
            for (int k = 0; k < opt->npmodels; k++)
                if (strcmp(g->models[i], opt->pmodels[k]) == 0) return 1;
        return 0;
    }
    /* a scope prefix matches whole segments: "gen" is gen and gen.*, not generator.* */
    size_t n = strlen(opt->pscope);
    return strncmp(g->name, opt->pscope, n) == 0 && (g->name[n] == 0 || g->name[n] == '.');
}

/* opt's `params=` as written, for messages: f, [f, g] or "gen". */
static const char *jm_params_text(jm_elab *E, const jm_decl_record *opt) {
    if (opt->psel == 2) return jm_arena_printf(E->a, "\"%s\"", opt->pscope);
    if (opt->npmodels == 1) return opt->pmodels[0];
    const char *s = "[";
    for (int i = 0; i < opt->npmodels; i++) s = jm_arena_printf(E->a, "%s%s%s", s, i ? ", " : "", opt->pmodels[i]);
    return jm_arena_printf(E->a, "%s]", s);
}

jm_value jm_elab_params_grad(jm_ctx *c, int loss, jm_loc loc, const jm_decl_record *opt) {
    jm_module *m = c->E->m;
    jm_value v = jm_v_err();
    v.kind = JM_V_PARAMS;
    int *wrt = jm_arena_alloc(c->E->a, sizeof(int) * ((size_t)m->nglobals + 1));
    int n = jm_loss_params(c, loss, loc, wrt);
    if (n < 0) return jm_v_err();
    if (n == 0) {
        jm_diag_error(c->E->d, loc, "grad(..., params): the loss depends on no parameters");
        return jm_v_err();
    }
    int kept = 0;
    for (int i = 0; i < m->nglobals; i++)
        if (wrt[i] != -2 && !jm_elab_opt_has(m, opt, i)) wrt[i] = -2;
        else kept += wrt[i] != -2;
    if (kept == 0) {
        jm_diag_error(c->E->d, loc, "minimize with '%s': the loss depends on none of the optimizer's parameters (params=%s)",
                      opt->name, jm_params_text(c->E, opt));
        jm_diag_note(c->E->d, opt->ploc, "the parameters of '%s' are chosen here", opt->name);
        return jm_v_err();
    }
    v.items = jm_arena_alloc(c->E->a, sizeof(jm_value) * (size_t)kept);
    v.globals = jm_arena_alloc(c->E->a, sizeof(int) * (size_t)kept);
    for (int i = 0; i < m->nglobals; i++) {
        if (wrt[i] == -2) continue;
        int p = wrt[i];
        if (p == -1) {
            /* the start value: a PARAM node stands for every read of the global */
            jm_attr at;
            memset(&at, 0, sizeof at);
            at.i[0] = i;
            p = jm_add(c, JM_OP_PARAM, NULL, 0, &at, NULL, loc);
            if (p < 0) return jm_v_err();
            m->graphs[c->g].node[p].name = m->globals[i].name;
        }
        int src[2] = { loss, p };
        int g = jm_add(c, JM_OP_GRAD, src, 2, NULL, NULL, loc);
        if (g < 0) return jm_v_err();
        v.items[v.nitems] = jm_v_tensor(c, g);
        v.globals[v.nitems++] = i;
    }
    return v;
}

jm_value jm_params_grad(jm_ctx *c, int loss, jm_loc loc) {
    return jm_elab_params_grad(c, loss, loc, NULL);
}
