/* rt_train.h — `EXE train`: runs the graph's training program over a data
 * set, epoch by epoch, with the learning-rate schedule, JSON Lines metrics,
 * a progress bar, sample grids, atomic checkpoints, exact resume and the
 * divergence guard (docs/runtime.md).
 *
 * Programs it uses, by name: train_step(x, y) (or --program: a program of x
 * and y, or of x alone such as VERA's train_step_vera_unsup), train_step_ce
 * for --pretrain and --baseline, train_step_cond for --cond, evaluate(x, y)
 * for the test set. Every scalar output of the training program is logged
 * under its name; each optimizer's gradient norm comes from state
 * "OPT.grad_norm" (the guard watches every one the program writes); the
 * learning rates are the knobs the program table marks as optimizers' lr
 * (JM_KNOB_IS_LR: VERA's lr, glr, post_lr), all scheduled alike. */
#ifndef JM_RT_TRAIN_H
#define JM_RT_TRAIN_H
#include "engine/rt_exec.h"

int jm_train_main(const jm_table *t, jm_kernel_fn *kernels, int argc, char **argv, const char *exe);
/* Accuracy, mean loss and mean energy of `evaluate` over a data set (the last
   partial batch padded, padding ignored). 0 ok, -1 after printing why. */
int jm_train_evaluate(jm_rt *rt, const void *ds, double *acc, double *loss, double *energy, const char *who);
#endif
