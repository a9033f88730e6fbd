/* llvm_host.c — see llvm_host.h. */
#include "llvm_host.h"
#include <llvm-c/Core.h>
#include <llvm-c/TargetMachine.h>

void jm_llvm_describe(FILE *out) {
    unsigned major, minor, patch;
    LLVMGetVersion(&major, &minor, &patch);
    char *cpu = LLVMGetHostCPUName();
    char *triple = LLVMGetDefaultTargetTriple();
    fprintf(out, "LLVM %u.%u.%u, host CPU %s (%s)\n", major, minor, patch, cpu, triple);
    LLVMDisposeMessage(cpu);
    LLVMDisposeMessage(triple);
}
