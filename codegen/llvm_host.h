/* llvm_host.h — what the LLVM 19 library linked into jemc reports about this
 * machine (version, host CPU and its features). Code generation builds on it. */
#ifndef JM_LLVM_HOST_H
#define JM_LLVM_HOST_H
#include <stdio.h>

/* "LLVM 19.1.7, host CPU sapphirerapids (x86_64-pc-linux-gnu)" */
void jm_llvm_describe(FILE *out);
#endif
