/* rt_cuda.h — runs a program table's programs on an NVIDIA GPU (jemc compile
 * --target cuda). The CPU device's steps (engine/rt_cpu.c), as GPU work on one stream:
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
 * State lives on the device; rt->state is its host copy, kept per global
 * (the device's sync_global): jm_rt_global and jm_rt_global_read bring a
 * global's value back from the device when the device has a newer one, and a
 * global the host may have written goes to the device before the next program
 * runs. */
#ifndef JM_RT_CUDA_H
#define JM_RT_CUDA_H
#include "engine/rt_exec.h"
#include "engine/rt_device.h"

/* What `jemc compile --target cuda` embeds in the executable. */
typedef struct {
    const char *ptx;                 /* NUL-terminated */
    const unsigned char *cubin;      /* ptxas's output for arch, or NULL */
    int64_t cubin_len;
    const char *kernels;             /* "name scale\n" per table kernel index */
    const char *arch;                /* "sm_90" */
    const char *precision;           /* convolutions and matrix products: "tf32" (tensor cores) or "fp32" */
    int ordinal;                     /* the GPU: this ordinal modulo the visible GPUs (a rank's local rank) */
} jm_gpu_image;

/* The CUDA device (engine/rt_device.h): open takes the executable's
   jm_gpu_image. Opening loads the driver, the module and (when the table needs
   them) cuBLAS and cuDNN, and allocates state and scratch on the device; without
   a GPU it fails with a sentence that says so. */
extern const jm_device jm_device_cuda;
#endif
