/* ir_clone.h — re-evaluating a value of a graph with some nodes replaced
 * (SAM's second pass, language §13.3). */
#ifndef JM_IR_CLONE_H
#define JM_IR_CLONE_H
#include "ir.h"

/* Appends to graph g a copy of the computation of node `root` in which every
 * node i <= root with subst[i] >= 0 reads as node subst[i] instead. Returns the
 * copy of root (root itself when it does not depend on a replaced node), or -1
 * after reporting an error at loc. The rules:
 *
 *  - Only nodes that depend on a replaced node are copied (same op, attributes,
 *    type, location and name, sources remapped); everything else, inputs,
 *    random draws and state reads included, is shared: computed once.
 *  - keep[i] != 0 (may be NULL): node i is shared even when it depends on a
 *    replaced node (a pending state write: what the first pass left).
 *  - Loops (samplers) are never copied: a sampler runs once. A loop depends on
 *    the replacement when one of its sources does or when its body (or one
 *    nested in it) reads a PARAM of a global with gsub[gi] != 0. Reached from
 *    root only through stop_grad (detach), its result is shared; reached
 *    otherwise, the copy could not be right, and it is an error that names the
 *    loop's line and `what` (the feature asking, for the message).
 * subst and keep have root + 1 entries, gsub one per global (may be NULL). */
int jm_ir_clone(jm_module *m, int g, int root, const int *subst, const char *keep, const char *gsub,
                jm_loc loc, const char *what, jm_diags *d);
#endif
