/* gpu_kernel.h — the NVPTX entry point of a fused kernel (body: kernel_body.h).
 *
 * Kernel ABI (PTX .entry, one per distinct kernel, named as the CPU kernel):
 *   NAME(ptr p0, ..., ptr pN-1, i64 n)
 * p[i] are device addresses of the kernel's buffers (0 = the result), n is the
 * step's item count from the program table. Every GPU thread takes items
 * ctaid*ntid+tid, then strides by nctaid*ntid (a grid-stride loop), so any
 * launch shape is correct; the runtime picks one (rt_cuda.c).
 *
 * Items on the GPU: a row kernel of the CPU plan (split k > 0: rows over the
 * first k dimensions, an inner loop over the rest) becomes one item per
 * element — adjacent threads then touch adjacent addresses (coalesced) — and
 * the entry multiplies n by the row length it was compiled with. Elementwise
 * kernels with split 0 and reductions keep the plan's items (elements; output
 * elements, each summed by one thread in a fixed order). */
#ifndef JM_GPU_KERNEL_H
#define JM_GPU_KERNEL_H
#include <llvm-c/Core.h>
#include "plan.h"

/* How many GPU items one of the plan's items of kernel k is (the row length of
   a row kernel, else 1): the runtime launches n * this many threads' worth. */
int64_t jm_gpu_kernel_scale(const jm_plan *P, const jm_kspec *k);

/* Adds kernel k of P to mod (an nvptx64 module) as a PTX kernel named k->name. */
void jm_gpu_kernel_emit(LLVMModuleRef mod, const jm_plan *P, const jm_kspec *k);

/* The same kernel for the host, to test the GPU code's logic without a GPU
   (tests/t_cuda.c through tests/fake_cuda.c): k->name gets the CPU ABI
   fn(bufs, 0, n), which runs the GPU entry's code -- the flattened items,
   the item scale, the grid-stride loop -- for every block of an emulated grid
   of JM_GPU_EMUL_BLOCKS one-thread blocks (the PTX registers become arguments). */
#define JM_GPU_EMUL_BLOCKS 7
void jm_gpu_kernel_emit_host(LLVMModuleRef mod, const jm_plan *P, const jm_kspec *k);
#endif
