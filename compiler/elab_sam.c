/* elab_sam.c — SAM (Foret et al. 2021) and ASAM (Kwon et al. 2021) as SADA-JEM
 * uses them, expanded inside `minimize` (language §13.3):
 *
 *   g_p   = grad(loss, p)                                  (the first pass, given)
 *   norm  = sqrt(sum_p || a_p * g_p ||^2),  a_p = |p| (adaptive) or 1
 *   e_p   = detach(b_p * g_p * (rho / (norm + 1e-12))),  b_p = p*p (adaptive) or 1
 *   loss2 = the loss with every read of p replaced by p + e_p (ir_clone.c)
 *   g2_p  = grad(loss2, p + e_p)
 *
 * The caller's optimizer then steps from p (not p + e_p) with g2_p: SAM's
 * restore and base step in one. The re-evaluation shares what does not depend
 * on the parameters (inputs, random draws, detached sampler results, state)
 * and the program's pending state writes (batch-norm running statistics are
 * updated by the first pass only), so it costs one more forward and backward
 * pass of the loss, not of the sampler. */
#include "elab_sam.h"
#include "ir_clone.h"
#include <stdlib.h>
#include <string.h>

/* sum of x * x over every axis, a scalar node */
static int jm_sum_sq(jm_ctx *c, jm_value x, jm_loc loc) {
    jm_value sq = jm_binary(c, JM_T_STAR, x, x, loc);
    if (sq.kind == JM_V_ERR) return -1;
    const jm_type *t = jm_value_type(c, sq);
    if (t->rank == 0) return sq.node;
    jm_attr all;
    memset(&all, 0, sizeof all);
    all.ni = t->rank;
    for (int k = 0; k < t->rank; k++) all.i[k] = k;
    return jm_add(c, JM_OP_SUM, &sq.node, 1, &all, NULL, loc);
}

jm_value jm_elab_sam_grads(jm_ctx *c, int loss, const jm_value *grads, jm_value rho, int adaptive, jm_loc loc) {
    jm_elab *E = c->E;
    jm_module *m = E->m;
    int n = grads->nitems;
    jm_dtype fdt = m->graphs[c->g].node[loss].type.dtype;
    int *p = jm_arena_alloc(E->a, sizeof(int) * (size_t)(n + 1)), *pp = jm_arena_alloc(E->a, sizeof(int) * (size_t)(n + 1));
    /* the norm of the (adaptively scaled) first-pass gradient */
    int acc = -1;
    for (int i = 0; i < n; i++) {
        int gn = jm_tensor_node(c, grads->items[i]);
        if (gn < 0) return jm_v_err();
        int gd = gn;
        if (m->graphs[c->g].node[gd].op == JM_OP_ALLREDUCE) gd = m->graphs[c->g].node[gd].src[0];   /* minimize's mean over shards */
        p[i] = m->graphs[c->g].node[gd].src[1];     /* the parameter's node (jm_elab_params_grad's target) */
        jm_value a = grads->items[i];
        if (adaptive) a = jm_binary(c, JM_T_STAR, jm_v_tensor(c, jm_add(c, JM_OP_ABS, &p[i], 1, NULL, NULL, loc)), a, loc);
        int s = jm_sum_sq(c, a, loc);
        int add[2] = { acc, s };
        acc = acc < 0 ? s : jm_add(c, JM_OP_ADD, add, 2, NULL, NULL, loc);
        if (acc < 0) return jm_v_err();
    }
    int norm = jm_add(c, JM_OP_SQRT, &acc, 1, NULL, NULL, loc);
    int rn = jm_elab_knob_node(c, rho, fdt, loc);
    if (rn < 0) rn = jm_const_node(c, rho.kind == JM_V_INT ? (double)rho.i : rho.f, fdt, loc);
    jm_value scale = jm_binary(c, JM_T_SLASH, jm_v_tensor(c, rn),
                               jm_binary(c, JM_T_PLUS, jm_v_tensor(c, norm), jm_v_float(1e-12), loc), loc);
    if (scale.kind == JM_V_ERR) return jm_v_err();
    /* the perturbed parameters p + e_p, e_p a constant for every gradient */
    for (int i = 0; i < n; i++) {
        jm_value pv = jm_v_tensor(c, p[i]), e = grads->items[i];
        if (adaptive) e = jm_binary(c, JM_T_STAR, jm_binary(c, JM_T_STAR, pv, pv, loc), e, loc);
        e = jm_binary(c, JM_T_STAR, e, scale, loc);
        if (e.kind == JM_V_ERR) return jm_v_err();
        int sg = jm_add(c, JM_OP_STOP_GRAD, &e.node, 1, NULL, NULL, loc);
        jm_value q = jm_binary(c, JM_T_PLUS, pv, jm_v_tensor(c, sg), loc);
        if (q.kind == JM_V_ERR) return jm_v_err();
        pp[i] = q.node;
    }
    /* what the second pass reads instead: a parameter read at its start value
       is any PARAM node of the global (jm_elab_params_grad differentiates
       with respect to all of them); one updated by an earlier minimize is
       read through its current-value node only (elab_params.c) */
    int *subst = malloc(sizeof(int) * (size_t)(loss + 1));
    char *keep = calloc((size_t)loss + 1, 1), *gsub = calloc((size_t)m->nglobals + 1, 1);
    if (!subst || !keep || !gsub) { free(subst); free(keep); free(gsub); return jm_v_err(); }
    for (int k = 0; k <= loss; k++) subst[k] = -1;
    jm_graph *gr = &m->graphs[c->g];
    for (int i = 0; i < n; i++) {
        if (gr->node[p[i]].op == JM_OP_PARAM) {
            int gi = (int)gr->node[p[i]].attr.i[0];
            gsub[gi] = 1;
            for (int k = 0; k <= loss; k++)
                if (gr->node[k].op == JM_OP_PARAM && gr->node[k].attr.i[0] == gi) subst[k] = pp[i];
        } else if (p[i] <= loss) {
            subst[p[i]] = pp[i];
        }
    }
    /* pending writes (running statistics, a replay buffer, earlier updates) are
       what the first pass left: shared, never written again */
    for (int w = 0; c->prog && w < c->prog->nwrites; w++)
        if (c->prog->writes[w].node <= loss) keep[c->prog->writes[w].node] = 1;
    int loss2 = jm_ir_clone(m, c->g, loss, subst, keep, gsub, loc, "minimize with sam_rho > 0", E->d);
    free(subst); free(keep); free(gsub);
    if (loss2 < 0) return jm_v_err();
    jm_value v = *grads;
    v.items = jm_arena_alloc(E->a, sizeof(jm_value) * (size_t)(n + 1));
    for (int i = 0; i < n; i++) {
        int src[2] = { loss2, pp[i] };
        int g2 = jm_add(c, JM_OP_GRAD, src, 2, NULL, NULL, loc);
        if (g2 < 0) return jm_v_err();
        v.items[i] = jm_v_tensor(c, g2);
    }
    return v;
}
