/* rt_sample.h — the executable's `sample` (SGLD chains to PNG grids, a GIF and
 * a JSON summary; rt_sample.c), `eval` (accuracy, calibration, ood, robust;
 * rt_eval.c over rt_evalsuite.c) and `plot` (metrics curves; rt_eval.c)
 * commands. */
#ifndef JM_RT_SAMPLE_H
#define JM_RT_SAMPLE_H
#include "engine/rt_exec.h"

int jm_sample_main(const jm_table *t, jm_kernel_fn *kernels, int argc, char **argv, const char *exe);
int jm_eval_main(const jm_table *t, jm_kernel_fn *kernels, int argc, char **argv, const char *exe);
int jm_plot_main(int argc, char **argv, const char *exe);

/* rt_evalsuite.c: `eval calibration` (ECE, reliability diagram) and `eval ood`
   (AUROC of log p(x), max p(y|x) and the input-gradient norm against each
   out-of-distribution set, score histograms); results in `report`. The data
   sets are jm_dataset (data.h). 0 ok, -1 after printing why. */
int jm_evalsuite_calibration(jm_rt *rt, const void *ds, int bins, const char *report, const char *who);
int jm_evalsuite_ood(jm_rt *rt, const void *in, const void *ood, int nood, const char *report, const char *who);
/* Loads the OOD sets (and a uniform-noise set shaped like `like` when noise);
   returns how many, or -1. */
double jm_evalsuite_pgd(jm_rt *rt, const void *ds, int l2, double eps, double step, int64_t steps, int64_t purify, const char *who);
int jm_evalsuite_load_ood(const char *const *paths, int n, int noise, const void *like, void *out, const char *who);
#endif
