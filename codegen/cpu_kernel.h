/* cpu_kernel.h — the CPU entry point of a fused kernel (body: kernel_body.h).
 *
 * ABI (every kernel): void NAME(void *const *bufs, int64_t begin, int64_t end)
 * bufs[i] is the base of the kernel's i-th distinct buffer (0 = the result);
 * [begin, end) is the calling thread's share of the kernel's items. The
 * wrapper loads the buffer pointers and calls the (inlined) body. */
#ifndef JM_CPU_KERNEL_H
#define JM_CPU_KERNEL_H
#include <llvm-c/Core.h>
#include "plan.h"

/* Adds kernel k of P to mod (named k->name). cpu/features become function attributes. */
void jm_cpu_kernel_emit(LLVMModuleRef mod, const jm_plan *P, const jm_kspec *k, const char *cpu, const char *features,
                        int vector_width);
#endif
