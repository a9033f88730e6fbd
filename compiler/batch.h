/* batch.h — twin batching: two evaluations of the same model in one program run
 * as one evaluation of twice the batch.
 *
 * The JEM loss evaluates the classifier on the data x and on the SGLD samples x_q
 * with the same weights; VERA evaluates it on data and on generator samples. The
 * pass finds pairs of convolutions (and matrix products) that read the same
 * weight with the same attributes and input type, neither depending on the
 * other, and grows each pair back through the per-example ops that feed it
 * (elementwise ops, pooling, reshapes that keep the batch axis, reductions over
 * other axes). Each pair becomes one op on the rows of both: its inputs are
 * concatenated along axis 0 where the two chains start, shared parameters are
 * broadcast to the doubled batch, and readers outside a pair take their half
 * with a slice. It runs before autodiff, so the gradients come out batched too:
 * one conv2d_bwd_data per layer and one conv2d_bwd_filter summing over both
 * halves, instead of two each.
 *
 * Results equal the unbatched ones up to the order of float additions in the
 * reductions over the batch (the filter and bias gradients). Ops that mix rows
 * (reductions over axis 0, cross-entropy's mean, random draws, loops) never
 * join a pair, so batch statistics cannot change meaning. */
#ifndef JM_BATCH_H
#define JM_BATCH_H
#include <stdio.h>
#include "ir.h"

/* when the pass runs: off, on, or auto (the target's rule, jm_batch_wanted) */
typedef enum { JM_BATCH_OFF, JM_BATCH_ON, JM_BATCH_AUTO } jm_batch_mode;

/* The rule behind `--batch-twins=auto` for a target ("cpu", "cuda", or jemc run's "interp"). */
int jm_batch_wanted(jm_batch_mode mode, const char *target);

/* Batches the twin evaluations of every program's root graph. Each program's
   `twins` counts its merged pairs. When dump is set, writes what was merged
   (for program `program`, or every program when NULL). 0, or -1 after
   reporting (internal errors only: the batched graph failed a shape rule). */
int jm_batch_twins(jm_module *m, jm_diags *d, FILE *dump, const char *program);
#endif
