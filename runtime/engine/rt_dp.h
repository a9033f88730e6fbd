/* rt_dp.h — one data-parallel training step: a program run over S shards of
 * its batch, S = (processes of the job) x (micro-batches per process).
 *
 * compiler/dp.h says what a shard computes and where the shards meet. Here,
 * per step:
 *   1. for each micro-batch m of this process: shard = rank * K + m; phase 0
 *      (the device's run_phase) on its inputs; then its collectives' operands
 *      are read back: each MEAN buffer summed into a staging area (the first
 *      copied, the next added in order), each ROWS buffer pair appended;
 *   2. across processes (engine/rt_coll.h): the sums allreduced, the rows
 *      allgathered (rank order, so shard order), the sums scaled by 1/S;
 *   3. the means written back in place, the rows handed to the scatters, and
 *      phase 1 run once: the optimizer's update, the replay buffer's writes,
 *      the outputs (batch means, averaged), the call counted.
 * With two shards the mean is (a + b) * 0.5 whichever two shards they are:
 * two processes with one micro-batch each and one process accumulating two
 * micro-batches take bitwise the same step. One shard (no transport, K = 1)
 * is jm_rt_run itself. */
#ifndef JM_RT_DP_H
#define JM_RT_DP_H
#include "rt_coll.h"
#include "rt_exec.h"

/* Runs program p as one step over coll's ranks (NULL: this process alone) x K
   micro-batches: inputs[m * ninputs + i] is micro-batch m's input i. 0, or -1
   with rt->err set (a program that cannot run over shards says why: its
   table's dp_why). Every rank must call it alike; after a failure over
   several processes the caller ends the job (coll->abort): sums posted for
   overlap may still be in flight.
   Overlap (rt->dp_bucket_bytes > 0 and a transport with post_f32): during the
   last micro-batch's run of a phase, each gradient mean is read back as soon
   as its operand is final (the table's jm_tcoll.step) and the means go out in
   buckets of about dp_bucket_bytes, in the order the backward pass finishes
   them (the last layer's first), while the rest of the phase runs; after the
   phase, the step waits for them. The sums are the same bits either way. */
int jm_rt_run_shards(jm_rt *rt, int p, jm_coll *coll, int K, const void *const *inputs, void *const *outputs);
/* Frees the staging buffers (jm_rt_close does not know them). */
void jm_rt_dp_free(void);
#endif
