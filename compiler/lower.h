/* lower.h — replaces the composite ops (logsumexp, softmax, log_softmax,
 * cross_entropy) by primitives (reductions and elementwise ops), after
 * autodiff, so the fusion pass and the code generators see only primitives.
 * The interpreter keeps evaluating composites directly (it is the oracle). */
#ifndef JM_LOWER_H
#define JM_LOWER_H
#include "ir.h"
int jm_lower(jm_module *m, jm_diags *d);     /* 0 ok; -1 after reporting */
#endif
