/* dp.h — data parallelism: prepares the training programs to run over shards
 * of their batch (several processes, and micro-batches within each process),
 * after lowering and before planning.
 *
 * A training step is split across S shards: each computes its share of the
 * batch, and the shards meet at the program's collectives, where every value
 * that must be the same everywhere is made so:
 *   - each gradient is averaged over the shards (allreduce nodes, put there by
 *     `minimize`);
 *   - each per-example scalar output (loss, energies, accuracy: batch means) is
 *     averaged, so every rank sees and judges the same metrics;
 *   - each state write computed from the batch is either a scatter of rows
 *     into state (a replay buffer's new chains: marked k = 1, the rows of
 *     every shard in shard order) or a float value averaged over the shards
 *     (a batch norm's running statistics);
 *   - random draws of values per example (a dimension of the batch's size:
 *     the first such axis, attr i[1] = axis + 1) are numbered by the global
 *     example (the element's index in the draw of S*B), so S shards of batch
 *     B draw what one shard of batch S*B draws.
 * Everything before the collectives is "phase 0", run once per micro-batch;
 * what depends on them is "phase 1", run once per step (plan.c orders the
 * steps so). A program whose batch computation needs a collective's result
 * (SAM's second pass, a second minimize) has more phases: phase k holds what
 * depends on k collectives in a row, and the shards exchange between each
 * (over processes; --accumulate needs a single exchange, since a micro-batch's
 * activations do not survive the next micro-batch).
 *
 * The shard-dependence ("sharded") of a node: inputs and per-example draws are
 * sharded, a collective's result is not, any other node is when a source is. */
#ifndef JM_DP_H
#define JM_DP_H
#include <stdio.h>
#include "ir.h"

#define JM_DP_MAX_PHASES 8

int jm_dp_prepare(jm_module *m, jm_diags *d);     /* 0 ok; -1 after reporting */
/* Is node n of graph g a collective (an allreduce, or a scatter of every shard's rows)? */
int jm_dp_is_collective(const jm_node *n);
/* --dump=dp: per training program, what runs over shards and what meets */
void jm_dp_dump(jm_module *m, jm_diags *d, const char *program, FILE *out);
#endif
