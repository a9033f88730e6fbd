/* cpu_kernel.h — one LLVM function per fused kernel (compiler/plan.h's jm_kspec).
 *
 * ABI (every kernel): void NAME(void *const *bufs, int64_t begin, int64_t end)
 * bufs[i] is the base of the kernel's i-th distinct buffer (0 = the result);
 * [begin, end) is the caller's share of the kernel's items: elements (flat
 * elementwise kernels), rows (row elementwise kernels) or output elements
 * (reductions). The body is a separate internal function whose pointer
 * parameters are `noalias` (true: the memory plan never lets two buffers that
 * one kernel touches overlap), inlined into the wrapper, so LLVM keeps the
 * alias facts as scoped metadata and vectorizes without runtime checks.
 *
 * Reductions accumulate each output in one thread, innermost loop with
 * `reassoc` (vectorized in fixed-width partial sums): the result depends on the
 * target's vector width, never on the thread count. */
#ifndef JM_CPU_KERNEL_H
#define JM_CPU_KERNEL_H
#include <llvm-c/Core.h>
#include "plan.h"

/* Adds kernel k of P to mod (named k->name). cpu/features become function attributes. */
void jm_cpu_kernel_emit(LLVMModuleRef mod, const jm_plan *P, const jm_kspec *k, const char *cpu, const char *features,
                        int vector_width);
#endif
