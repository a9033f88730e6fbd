/* kernel_body.h — the computation of one fused kernel (compiler/plan.h's
 * jm_kspec) as an LLVM function, shared by the CPU and GPU backends:
 *
 *   internal void NAME.body(ptr noalias p0, ..., ptr noalias pN-1, i64 begin, i64 end)
 *
 * (a kernel that draws random numbers inline, k->rng, has one more pointer
 * pN: the runtime's jm_rng_ctx, engine/rt_kernels.h)
 * p[i] is the base of the kernel's i-th distinct buffer (0 = the result);
 * [begin, end) is a share of the kernel's items: elements (flat elementwise
 * kernels), rows (row elementwise kernels) or output elements (reductions).
 * The pointer parameters are `noalias` (true: the memory plan never lets two
 * buffers that one kernel touches overlap) and the body is `alwaysinline`, so
 * a backend's entry point (cpu_kernel.c: the runtime's range ABI; gpu_kernel.c:
 * one item per GPU thread) inlines it and LLVM keeps the alias facts.
 *
 * Reductions accumulate each output in one loop with `reassoc` adds: on the
 * CPU vectorized in fixed-width partial sums, so the result depends on the
 * target's vector width, never on the thread count.
 *
 * libm_prefix: the prefix of the double-precision math functions the body
 * calls where it has no inline polynomial (float64 exp/log/tanh/log1p, pow):
 * "" on the CPU (the C library), "__nv_" on the GPU (CUDA's libdevice). */
#ifndef JM_KERNEL_BODY_H
#define JM_KERNEL_BODY_H
#include <llvm-c/Core.h>
#include "plan.h"

LLVMValueRef jm_kbody_emit(LLVMModuleRef mod, const jm_plan *P, const jm_kspec *k, const char *libm_prefix);
/* a string attribute ("target-cpu"="znver4") or an enum attribute ("nounwind") on fn */
void jm_kfn_attr(LLVMValueRef fn, const char *key, const char *val);
void jm_kfn_enum_attr(LLVMValueRef fn, unsigned idx, const char *name);
#endif
