/* simplify.h — the clean-up pass after elaboration and autodiff: common
 * subexpressions merged (hash-consing), constants folded, algebraic identities
 * applied, dead nodes removed. Keeps autodiff's output small, and makes the
 * three f(x) calls of a JEM loss one forward pass. */
#ifndef JM_SIMPLIFY_H
#define JM_SIMPLIFY_H
#include "ir.h"

/* Simplifies every graph; 0, or -1 after reporting (internal errors only).
   Run before autodiff (after_grad = 0: CSE merges repeated forward passes, so
   their gradients are computed once) and after it (after_grad = 1). */
int jm_simplify(jm_module *m, jm_diags *d, int after_grad);
#endif
