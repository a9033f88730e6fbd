/* ir_clone.c — see ir_clone.h. Three sweeps over nodes 0..root (SSA order: a
 * node's sources have smaller ids):
 *   1. forward, dep[i]: node i's value changes with the replacement;
 *   2. backward from root, through[i]: root reaches i without crossing a
 *      stop_grad (a loop found there that depends on the replacement is an
 *      error), and need[i]: i is a dependent ancestor of root to copy;
 *   3. forward, the copies appended in order, each reading its sources' copies. */
#include "ir_clone.h"
#include <stdlib.h>
#include <string.h>

/* Does a loop body (or one nested in it) read a PARAM of a marked global? */
static int jm_body_reads(const jm_module *m, int body, const char *gsub) {
    if (!gsub) return 0;
    const jm_graph *b = &m->graphs[body];
    for (int i = 0; i < b->nnode; i++) {
        const jm_node *n = &b->node[i];
        if (n->op == JM_OP_PARAM && gsub[n->attr.i[0]]) return 1;
        if (n->op == JM_OP_LOOP && jm_body_reads(m, (int)n->attr.i[0], gsub)) return 1;
    }
    return 0;
}

int jm_ir_clone(jm_module *m, int g, int root, const int *subst, const char *keep, const char *gsub,
                jm_loc loc, const char *what, jm_diags *d) {
    int n = root + 1, rc = root;
    char *dep = calloc((size_t)n, 1), *loopdep = calloc((size_t)n, 1), *through = calloc((size_t)n, 1), *need = calloc((size_t)n, 1);
    int *map = malloc(sizeof(int) * (size_t)n);
    if (!dep || !loopdep || !through || !need || !map) { rc = -1; goto done; }
    for (int i = 0; i < n; i++) {
        const jm_node *nd = &m->graphs[g].node[i];
        map[i] = i;
        if (subst[i] >= 0) { dep[i] = 1; continue; }
        if (keep && keep[i]) continue;
        int any = 0;
        for (int s = 0; s < nd->nsrc; s++) any |= dep[nd->src[s]];
        if (nd->op == JM_OP_LOOP) loopdep[i] = any || jm_body_reads(m, (int)nd->attr.i[0], gsub);
        else if (nd->op != JM_OP_LOOP_OUT) dep[i] = (char)any;   /* a loop's results: computed once */
    }
    through[root] = 1;
    need[root] = dep[root];
    for (int i = root; i >= 0; i--) {
        const jm_node *nd = &m->graphs[g].node[i];
        if (through[i] && nd->op == JM_OP_LOOP_OUT && loopdep[nd->src[0]]) {
            jm_diag_error(d, loc, "%s: the loss depends on the parameters through a sampler's loop (line %d), which the "
                          "second pass cannot run again; wrap the sampler call in detach() to treat its samples as constants",
                          what, nd->loc.line);
            rc = -1;
            goto done;
        }
        int stop = subst[i] >= 0 || (keep && keep[i]);
        for (int s = 0; s < nd->nsrc && !stop; s++) {
            int src = nd->src[s];
            if (through[i] && nd->op != JM_OP_STOP_GRAD) through[src] = 1;
            if (need[i] && dep[src]) need[src] = 1;
        }
    }
    for (int i = 0; i < n && rc >= 0; i++) {
        if (!need[i]) continue;
        if (subst[i] >= 0) { map[i] = subst[i]; continue; }
        jm_node on = m->graphs[g].node[i];          /* a copy: adding nodes may move the array */
        int *src = malloc(sizeof(int) * (size_t)(on.nsrc + 1));
        if (!src) { rc = -1; break; }
        for (int s = 0; s < on.nsrc; s++) src[s] = map[on.src[s]];
        int id = jm_ir_add(m, g, on.op, src, on.nsrc, &on.attr, &on.type, on.loc, d);
        free(src);
        if (id < 0) { rc = -1; break; }
        m->graphs[g].node[id].name = on.name;
        map[i] = id;
    }
    if (rc >= 0) rc = map[root];
done:
    free(dep); free(loopdep); free(through); free(need); free(map);
    return rc;
}
