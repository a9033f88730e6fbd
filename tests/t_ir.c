/* t_ir.c — the IR itself: the op table, the verifier (it must catch broken
 * graphs, not only pass good ones), SSA order, loops and grad nodes in the
 * shipped graphs, and float64 retyping. */
#include "tap.h"
#include "helpers.h"
#include "grad.h"
#include "simplify.h"

static jm_module *load_file(jm_arena *a, jm_diags *d, const char *path, const jm_define *defs, int n) {
    jm_diag_init(d, a, stderr);
    return jm_frontend_load(d, path, defs, n);
}

static int count_op(jm_module *m, int g, jm_op op) {
    int c = 0;
    for (int i = 0; i < m->graphs[g].nnode; i++) c += m->graphs[g].node[i].op == op;
    return c;
}

int main(void) {
    /* the op table */
    int named = 1;
    for (int i = 0; i < JM_OP_COUNT; i++) named &= jm_ops[i].name != NULL && jm_ops[i].name[0] != 0;
    ok(named, "every op in ops.def has a name");
    ok(jm_ops[JM_OP_CONV2D].cls == JM_CLASS_COMPLEX && jm_ops[JM_OP_ADD].cls == JM_CLASS_ELEMWISE &&
       jm_ops[JM_OP_SUM].cls == JM_CLASS_REDUCE && jm_ops[JM_OP_CONCAT].arity == -1, "op classes and arities come from the table");

    jm_arena a = { 0 };
    jm_diags d;
    jm_define defs[] = { { "batch", "2" } };
    jm_module *m = load_file(&a, &d, "graphs/jem_mnist.graph", defs, 1);
    ok(m != NULL, "jem_mnist elaborates");
    if (!m) return tap_done();
    FILE *null = fopen("/dev/null", "w");
    d.out = null;
    ok(jm_ir_verify(m, &d) == 0, "the verifier accepts the elaborated module");

    /* SSA: every source precedes its user, in every graph */
    int ssa = 1;
    for (int g = 0; g < m->ngraphs; g++)
        for (int i = 0; i < m->graphs[g].nnode; i++)
            for (int s = 0; s < m->graphs[g].node[i].nsrc; s++) ssa &= m->graphs[g].node[i].src[s] < i;
    ok(ssa, "every graph is in SSA topological order");

    int p = jm_module_find_program(m, "logits");
    jm_graph *lg = &m->graphs[m->programs[p].graph];
    ok(count_op(m, m->programs[p].graph, JM_OP_CONV2D) == 3 && count_op(m, m->programs[p].graph, JM_OP_MATMUL) == 1,
       "logits has 3 convolutions and 1 matmul");
    ok(lg->node[m->programs[p].outputs[0].node].type.dim[1] == 10, "logits outputs [batch, 10]");

    p = jm_module_find_program(m, "sgld_grad");
    jm_program *sp = &m->programs[p];
    int gi = sp->outputs[0].node;
    jm_node *gn = &m->graphs[sp->graph].node[gi];
    ok(gn->op == JM_OP_GRAD && jm_type_equal(&gn->type, &m->graphs[sp->graph].node[sp->inputs[0].node].type) &&
       gn->src[1] == sp->inputs[0].node, "sgld_grad's output is a grad node with respect to the input x, typed like x");

    p = jm_module_find_program(m, "sample");
    int root = m->programs[p].graph, loops = count_op(m, root, JM_OP_LOOP);
    int body = -1;
    for (int i = 0; i < m->graphs[root].nnode; i++)
        if (m->graphs[root].node[i].op == JM_OP_LOOP) body = (int)m->graphs[root].node[i].attr.i[0];
    ok(loops == 1 && body > 0 && m->graphs[body].parent == root, "the sampler is one loop node owning a body graph");
    ok(body > 0 && count_op(m, body, JM_OP_CONV2D) == 3 && count_op(m, body, JM_OP_GRAD) == 1 &&
       count_op(m, body, JM_OP_RNG_NORMAL) == 1, "the loop body holds one forward pass, one grad and one noise draw (not K copies)");

    p = jm_module_find_program(m, "train_step");
    jm_program *tp = &m->programs[p];
    int writes_params = 0, writes_replay = 0;
    for (int i = 0; i < tp->nwrites; i++) {
        jm_global *g = &m->globals[tp->writes[i].global];
        writes_params += g->kind == JM_GLOBAL_PARAM;
        writes_replay += strcmp(g->name, "replay") == 0;
    }
    ok(writes_params == 8 && writes_replay == 1, "train_step updates all 8 parameters and the replay buffer");
    ok(jm_module_find_global(m, "opt.m.conv1.weight") >= 0 && jm_module_find_global(m, "opt.v.linear.bias") >= 0 &&
       jm_module_find_global(m, "opt.step") >= 0, "Adam's moments and step counter are named state");

    /* the verifier must catch broken graphs */
    jm_node *n = &lg->node[lg->nnode - 1];
    jm_type saved = n->type;
    n->type.dim[0] += 1;
    ok(jm_ir_verify(m, &d) > 0, "the verifier catches a node whose type disagrees with its shape rule");
    n->type = saved;
    jm_node *cv = NULL;
    for (int i = 0; i < lg->nnode; i++) if (lg->node[i].op == JM_OP_CONV2D) { cv = &lg->node[i]; break; }
    int saved_src = cv->src[0];
    cv->src[0] = lg->nnode + 5;
    ok(jm_ir_verify(m, &d) > 0, "the verifier catches a source that is not an earlier node");
    cv->src[0] = saved_src;
    int saved_n = cv->nsrc;
    cv->nsrc = 1;
    ok(jm_ir_verify(m, &d) > 0, "the verifier catches a wrong number of sources");
    cv->nsrc = saved_n;
    ok(jm_ir_verify(m, &d) == 0, "restored, the module verifies again");

    /* float64 retyping for double-precision evaluation */
    jm_module_retype(m, JM_F32, JM_F64);
    int any_f32 = 0;
    for (int g = 0; g < m->ngraphs; g++)
        for (int i = 0; i < m->graphs[g].nnode; i++) any_f32 |= m->graphs[g].node[i].type.dtype == JM_F32;
    ok(!any_f32 && m->globals[0].type.dtype == JM_F64 && jm_ir_verify(m, &d) == 0, "retype f32 -> f64 leaves a valid all-f64 module");

    fclose(null);
    jm_arena_free(&a);

    /* the whole pipeline: simplify -> autodiff -> simplify. These counts pin what
       CSE and the needed set buy (a regression in either changes them). */
    jm_arena a2 = { 0 };
    jm_diags d2;
    m = load_file(&a2, &d2, "graphs/jem_mnist.graph", defs, 1);
    int piped = m && jm_simplify(m, &d2, 0) == 0 && jm_autodiff(m, &d2) == 0 && jm_simplify(m, &d2, 1) == 0;
    ok(piped, "jem_mnist goes through simplify, autodiff and simplify, verified after each");
    if (piped) {
        int grads_left = 0;
        for (int g = 0; g < m->ngraphs; g++) grads_left += count_op(m, g, JM_OP_GRAD) + count_op(m, g, JM_OP_STOP_GRAD);
        ok(grads_left == 0, "no grad or stop_grad node survives the pipeline");
        int lg2 = m->programs[jm_module_find_program(m, "jem_loss")].graph;
        /* f(x) is called twice (cross-entropy and E(x)) and f(x_q) once: CSE leaves 2 forward passes;
           one backward sweep: weight gradients of 3 convs per pass, input gradients of conv2 and conv3 only */
        ok(count_op(m, lg2, JM_OP_CONV2D) == 6 && count_op(m, lg2, JM_OP_CONV2D_BWD_FILTER) == 6 &&
           count_op(m, lg2, JM_OP_CONV2D_BWD_DATA) == 4 && count_op(m, lg2, JM_OP_MATMUL) == 6,
           "jem_loss: 2 forward passes, 6 filter gradients, 4 data gradients, 6 matmuls (%d, %d, %d, %d)",
           count_op(m, lg2, JM_OP_CONV2D), count_op(m, lg2, JM_OP_CONV2D_BWD_FILTER), count_op(m, lg2, JM_OP_CONV2D_BWD_DATA),
           count_op(m, lg2, JM_OP_MATMUL));
        int sg = m->programs[jm_module_find_program(m, "sgld_grad")].graph;
        ok(count_op(m, sg, JM_OP_CONV2D) == 3 && count_op(m, sg, JM_OP_CONV2D_BWD_DATA) == 3 && count_op(m, sg, JM_OP_CONV2D_BWD_FILTER) == 0,
           "sgld_grad: one forward pass and 3 data gradients, no weight-gradient work");
        int sp2 = m->programs[jm_module_find_program(m, "sample")].graph, body2 = -1;
        for (int i = 0; i < m->graphs[sp2].nnode; i++)
            if (m->graphs[sp2].node[i].op == JM_OP_LOOP) body2 = (int)m->graphs[sp2].node[i].attr.i[0];
        ok(body2 > 0 && count_op(m, body2, JM_OP_CONV2D_BWD_FILTER) == 0 && count_op(m, body2, JM_OP_CONV2D_BWD_DATA) == 3,
           "the SGLD loop body differentiates only with respect to x (no parameter gradients in the loop)");
        int tp2 = m->programs[jm_module_find_program(m, "train_step")].graph;
        ok(count_op(m, tp2, JM_OP_CONV2D_BWD_FILTER) == 6 && count_op(m, tp2, JM_OP_LOOP) == 1,
           "train_step: one sampler loop, and weight gradients for the data and the samples only");
    }
    jm_arena_free(&a2);
    return tap_done();
}
