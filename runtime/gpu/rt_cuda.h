/* rt_cuda.h — runs a program table's programs on an NVIDIA GPU (jemc compile
 * --target cuda). The same steps as rt_exec.c, as GPU work on one stream:
 *   KERNEL  the step's PTX kernel (one module: the program's fused kernels and
 *           the runtime's library kernels, runtime/gpu/dev_lib.c)
 *   LIB     matrix products through cuBLAS, convolutions through cuDNN (the
 *           algorithm chosen once per step by cuDNN's heuristics and kept, the
 *           conv's elementwise epilogue as a kernel right after it), the rest
 *           through dev_lib.c's kernels; extern calls on the host (the buffers
 *           copied over and back)
 *   COPY    a device-to-device copy
 *   LOOP    the body, unrolled
 * A program without extern calls is captured once as a CUDA graph — the whole
 * program, its SGLD loop included — and replayed on every later run; the
 * run counter the random numbers use lives in device memory, so a replay
 * draws new numbers. A graph is captured again only when a knob that sets a
 * loop's trip count changes. Every buffer has a fixed device address from the
 * memory plan (state and scratch are allocated once, at their largest), so
 * nothing is allocated while a program runs.
 *
 * State lives on the device; rt->state is its host copy, kept per global:
 * jm_rt_global and jm_rt_global_read bring a global's value back from the
 * device when the device has a newer one, and a global the host may have
 * written goes to the device before the next program runs. */
#ifndef JM_RT_CUDA_H
#define JM_RT_CUDA_H
#include "engine/rt_exec.h"

/* What `jemc compile --target cuda` embeds in the executable. */
typedef struct {
    const char *ptx;                 /* NUL-terminated */
    const unsigned char *cubin;      /* ptxas's output for arch, or NULL */
    int64_t cubin_len;
    const char *kernels;             /* "name scale\n" per table kernel index */
    const char *arch;                /* "sm_90" */
    const char *precision;           /* convolutions and matrix products: "tf32" (tensor cores) or "fp32" */
} jm_gpu_image;

/* Attaches a GPU to rt (whose state is initialised): loads the driver, the
   module and (when the table needs them) cuBLAS and cuDNN, allocates state and
   scratch on the device. 0 ok; -1 with rt->err set (no GPU: a sentence that
   says so). */
int  jm_gpu_attach(jm_rt *rt, const jm_gpu_image *img);
void jm_gpu_detach(jm_rt *rt);
/* jm_rt_run's GPU path */
int  jm_gpu_run(jm_rt *rt, int p, const void *const *inputs, void *const *outputs);
/* Makes global g's host copy current; `write`: the host may change it, so the
   device copy is refreshed before the next run. 0 ok; -1 with rt->err set. */
int  jm_gpu_host_view(jm_rt *rt, int g, int write);
/* Device memory: what jemc allocated itself (state, scratch, workspaces, counters)
   and what the device reports in use (every process, the context, cuDNN's and
   cuBLAS's own allocations), in bytes. */
void jm_gpu_memory(const jm_rt *rt, double *mine, double *in_use);
/* "NVIDIA H100 80GB HBM3 (sm_90, 132 SMs), driver 13.0", for messages */
const char *jm_gpu_describe(const jm_rt *rt);
#endif
