/* rt_sample.h — the executable's `sample` (SGLD chains to a PNG grid and a
 * GIF), `eval accuracy` (test accuracy, loss, energy) and `plot` (metrics
 * curves) commands. */
#ifndef JM_RT_SAMPLE_H
#define JM_RT_SAMPLE_H
#include "rt_exec.h"

int jm_sample_main(const jm_table *t, jm_kernel_fn *kernels, int argc, char **argv, const char *exe);
int jm_eval_main(const jm_table *t, jm_kernel_fn *kernels, int argc, char **argv, const char *exe);
int jm_plot_main(int argc, char **argv, const char *exe);
#endif
