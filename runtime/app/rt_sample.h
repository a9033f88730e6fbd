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
int jm_evalsuite_calibration(jm_rt *rt, const void *ds, int bins, int curve_bins, const char *report, const char *who);
/* `eval accuracy`: accuracy, cross-entropy, mean energy, Brier scores, for two
   classes the AUROC of p(y=1|x); printed and (json != NULL) written as JSON. */
int jm_evalsuite_accuracy(jm_rt *rt, const void *ds, const char *json, const char *who);
/* 1 when the data set is a table (CSV or text), not images */
int jm_evalsuite_is_table(const void *ds);
int jm_evalsuite_ood(jm_rt *rt, const void *in, const void *ood, int nood, const char *report, const char *who);
/* Loads the OOD sets (and a uniform-noise set shaped like `like` when noise);
   returns how many, or -1. */
double jm_evalsuite_pgd(jm_rt *rt, const void *ds, int l2, double eps, double step, int64_t steps, int64_t purify, const char *who);
int jm_evalsuite_load_ood(const char *const *paths, int n, int noise, const void *like, void *out, const char *who);

/* rt_sample_gen.c: samples of a VERA generator (`sample --from generator`,
   train's sample grids). jm_sample_gen_open finds and checks the program:
   generate(h) without MALA, mala_latent(h, e, eta) with it, mala_latent_cond
   (h, e, y, eta) for classes; 0, or -1 after a message naming the missing
   program or the input or output that is wrong. */
typedef struct {
    int p, mala, cond;
    const jm_tprogram *pr;
    int in[4];                   /* h, e, eta, y: their input positions */
    int out_x, out_h, out_e, out_acc;
    int64_t B, D, C, H, W;       /* batch, noise_dim, the samples' shape */
} jm_gen_prog;
int jm_sample_gen_open(const jm_table *t, int mala, int cond, jm_gen_prog *g, const char *who);
/* One draw of `total` samples into x (total * C*H*W floats). y: the class of
   each sample (cond only). With MALA, mala_steps steps per batch, eta adapted
   after every step (in: the start, out: the last value; it carries over from
   batch to batch) and accept the mean acceptance over every step (NAN
   without MALA). The latents come from Philox keyed by seed. 0 or -1. */
typedef struct {
    int64_t total;
    const int64_t *y;
    int64_t mala_steps;
    double eta, accept;
    uint64_t seed;
} jm_gen_draw;
int jm_sample_gen_draw(jm_rt *rt, const jm_gen_prog *g, jm_gen_draw *d, float *x, const char *who);
/* mean energy of n images through the `energy` program (NAN when absent) */
double jm_sample_mean_energy(jm_rt *rt, const float *x, int64_t n, int64_t per);
#endif
