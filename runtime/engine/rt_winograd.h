/* rt_winograd.h — Winograd F(2x2,3x3) convolutions for the CPU (rt_winograd.c):
 * the forward pass and the data gradient of stride-1, dilation-1, one-group 3x3
 * convolutions (any padding), with the calling convention, epilogue and
 * determinism rules of rt_kernels.h. rt_conv.c's entry points hand a convolution
 * over when jm_wino_use says so. */
#ifndef JM_RT_WINOGRAD_H
#define JM_RT_WINOGRAD_H
#include "rt_kernels.h"

/* Modes: off (always the direct kernels), by the cost rule (the default), or
   always where the shape allows it (tests and benchmarks). */
enum { JM_WINO_OFF = 0, JM_WINO_COST = 1, JM_WINO_ALWAYS = 2 };

/* Whether conv2d forward (bwd == 0) or bwd_data (bwd == 1) of this shape goes to
   Winograd: the shape allows it, the mode is not off and (in the cost mode) the
   cost rule expects it to be faster. The mode comes from JEMC_WINOGRAD (read
   once: "0" off, "2" always, anything else or unset the cost rule) unless
   jm_wino_set_mode chose one. */
int jm_wino_use(const jm_conv_shape *s, int bwd);

/* Tests and benchmarks: set the mode (a JM_WINO_* value), or -1 to go back to
   the environment's. Call it outside any kernel call. */
void jm_wino_set_mode(int mode);

/* The mode in force (JM_WINO_*). */
int jm_wino_mode(void);

/* The convolutions, for shapes jm_wino_use accepts: called by every thread of the
   team, like jm_rt_conv2d_fwd_f32 / jm_rt_conv2d_bwd_data_f32 (same arguments). */
int jm_wino_fwd(const jm_conv_shape *s, const float *x, const float *w, float *y,
                jm_kernel_fn epi, void *const *epi_bufs, int64_t epi_items);
int jm_wino_bwd_data(const jm_conv_shape *s, const float *dy, const float *w, float *dx);
#endif
