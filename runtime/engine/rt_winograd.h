/* rt_winograd.h — Winograd F(2x2,3x3) and F(4x4,3x3) convolutions for the CPU (rt_winograd.c):
 * the forward pass and the data gradient of stride-1, dilation-1, one-group 3x3
 * convolutions (any padding), with the calling convention, epilogue and
 * determinism rules of rt_kernels.h. rt_conv.c's entry points hand a convolution
 * over when jm_wino_use says so. */
#ifndef JM_RT_WINOGRAD_H
#define JM_RT_WINOGRAD_H
#include "rt_kernels.h"

/* Modes: off (always the direct kernels), by the cost rule (the default), or
   always F(2x2,3x3) / always F(4x4,3x3) where the shape allows it (tests and
   benchmarks). The ALWAYS values are the tile sizes. */
enum { JM_WINO_OFF = 0, JM_WINO_COST = 1, JM_WINO_ALWAYS = 2, JM_WINO_ALWAYS4 = 4 };

/* The output tile size Winograd uses for conv2d forward (bwd == 0) or bwd_data
   (bwd == 1) of this shape: 2 for F(2x2,3x3), 4 for F(4x4,3x3), or 0 for the
   direct kernels. Non-zero when the shape allows Winograd, the mode is not off
   and (in the cost mode) the cost rule expects it to be faster. The mode comes
   from JEMC_WINOGRAD (read once: "0" off, "2" always F(2x2), "4" always F(4x4),
   anything else or unset the cost rule) unless jm_wino_set_mode chose one. */
int jm_wino_use(const jm_conv_shape *s, int bwd);

/* Tests and benchmarks: set the mode (a JM_WINO_* value), or -1 to go back to
   the environment's. Call it outside any kernel call. */
void jm_wino_set_mode(int mode);

/* The mode in force (JM_WINO_*). */
int jm_wino_mode(void);

/* The convolutions, for shapes jm_wino_use accepts, with its tile size m (2 or 4;
   anything else returns -1): called by every thread of the team, like
   jm_rt_conv2d_fwd_f32 / jm_rt_conv2d_bwd_data_f32 (same other arguments). */
int jm_wino_fwd(const jm_conv_shape *s, int m, const float *x, const float *w, float *y,
                jm_kernel_fn epi, void *const *epi_bufs, int64_t epi_items);
int jm_wino_bwd_data(const jm_conv_shape *s, int m, const float *dy, const float *w, float *dx);
#endif
