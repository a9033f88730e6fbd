/* kernel_dedup.h — which kernels share generated code (no LLVM types here:
 * the driver includes it too). */
#ifndef JM_KERNEL_DEDUP_H
#define JM_KERNEL_DEDUP_H
#include "plan.h"

/* first[i] (malloc'd, nkernels entries): the kernel whose code kernel i uses,
   itself when it is the first of its kind. Two kernels share code when a
   canonical text of everything their generated code depends on is equal. */
int *jm_kernels_dedup(const jm_plan *P);
/* How many kernels have distinct code (the others reuse one of them). */
int jm_kernels_distinct(const jm_plan *P);
#endif
