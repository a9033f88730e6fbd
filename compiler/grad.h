/* grad.h — reverse-mode automatic differentiation as an IR -> IR pass.
 *
 * Every GRAD(y, x) node is replaced by ordinary IR nodes computing dy/dx, in
 * the same graph (no tape at run time). Only nodes on a path from x to y get
 * adjoints (the needed set); GRAD nodes with the same y share one backward
 * sweep; a gradient with respect to a parameter (or state) sums over every
 * use of that global. Nodes are processed in order, so a GRAD inside the
 * expression of another GRAD is expanded first and then differentiated again:
 * higher-order gradients need nothing special. Sampler loops and detach() are
 * not differentiated through (their results act as constants). */
#ifndef JM_GRAD_H
#define JM_GRAD_H
#include "ir.h"

/* Expands every GRAD node of every graph. 0, or -1 after reporting errors. */
int jm_autodiff(jm_module *m, jm_diags *d);
#endif
