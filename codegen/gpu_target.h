/* gpu_target.h — a plan's kernels as one PTX module through LLVM's NVPTX
 * backend (triple nvptx64-nvidia-cuda), and, when CUDA's assembler ptxas is
 * found at compile time, as a cubin for the chosen GPU too. The executable
 * carries both; the runtime loads the cubin when it matches the GPU and
 * otherwise lets the driver compile the PTX (rt_cuda.c).
 *
 * Math: float32 functions are the same inline polynomials as on the CPU
 * (mathlib.h); the few double-precision calls (float64 exp/log/tanh/log1p,
 * pow) come from CUDA's libdevice (libdevice.10.bc), linked only when a kernel
 * needs it. */
#ifndef JM_GPU_TARGET_H
#define JM_GPU_TARGET_H
#include <stddef.h>
#include "plan.h"
#include "engine/rt_table.h"

typedef struct {
    const char *arch;           /* "sm_90" (default), "sm_80", ... */
    int opt;                    /* LLVM optimisation level 0..3 */
    const char *libdevice;      /* libdevice.10.bc; NULL: look in the usual CUDA places */
    const char *program;        /* NULL: every kernel; else only this program's (for --dump=ptx) */
    const char *tools_dir;      /* where `make deps-cuda` unpacked ptxas and libdevice (build/cuda-tools), or NULL */
    const char *devlib;         /* the runtime's GPU library (jemrt_dev.bc, runtime/gpu/dev_lib.c), linked
                                   in with the library kernels the plan's steps use; NULL: none */
} jm_gpu_opts;

/* The library kernel (dev_lib.c) a LIB step of operation op launches, or NULL
   when the step is not a kernel of ours (matmul and convolutions: cuBLAS, cuDNN;
   extern calls: the host). */
const char *jm_gpu_lib_kernel(int op);

/* The GPU architectures LLVM 19's NVPTX backend knows, for messages ("sm_50 ... sm_90a"). */
const char *jm_gpu_arch_list(void);
/* 1 if arch is one of them. */
int jm_gpu_arch_ok(const char *arch);

/* The PTX text of every distinct kernel of P (*ptx malloc'd, NUL-terminated).
   0 ok; -1 with err set. */
int jm_gpu_ptx(const jm_plan *P, const jm_gpu_opts *o, char **ptx, char *err, size_t errlen);

/* jm_gpu_kernel_scale of kernel i of P (for the runtime's launch sizes) */
int64_t jm_gpu_scale(const jm_plan *P, int i);

/* Where ptxas is: $JEMC_PTXAS (empty: none), then PATH, $CUDA_HOME/bin,
   /usr/local/cuda/bin, tools_dir/usr/bin. NULL when not found. Malloc'd. */
char *jm_gpu_find_ptxas(const char *tools_dir);
/* Where libdevice.10.bc is: `given` (only it, when set), $CUDA_HOME/nvvm/libdevice,
   /usr/local/cuda/nvvm/libdevice, Debian's /usr/lib/nvidia-cuda-toolkit/libdevice,
   tools_dir's copy of the latter. NULL when not found (buf holds the path). */
const char *jm_gpu_find_libdevice(const char *given, const char *tools_dir, char *buf, size_t n);
/* Assembles ptx for arch with ptxas into *cubin (malloc'd, *len bytes).
   0 ok; -1 with err set (ptxas's own message when it refused the PTX). */
int jm_gpu_assemble(const char *ptxas, const char *ptx, const char *arch, unsigned char **cubin, size_t *len,
                    char *err, size_t errlen);
#endif
