/* cpu_kernel.c — see cpu_kernel.h. */
#include "cpu_kernel.h"
#include "kernel_body.h"
#include <stdio.h>
#include <stdlib.h>

void jm_cpu_kernel_emit(LLVMModuleRef mod, const jm_plan *P, const jm_kspec *k, const char *cpu, const char *features,
                        int vector_width) {
    LLVMContextRef ctx = LLVMGetModuleContext(mod);
    LLVMTypeRef ptr = LLVMPointerTypeInContext(ctx, 0), i64 = LLVMInt64TypeInContext(ctx), vd = LLVMVoidTypeInContext(ctx);
    LLVMValueRef body = jm_kbody_emit(mod, P, k, "");
    char vw[16];
    snprintf(vw, sizeof vw, "%d", vector_width);
    int np = k->nparam + (k->rng ? 1 : 0);     /* bufs[nparam]: the RNG context (rt_kernels.h) */

    LLVMTypeRef wt[3] = { ptr, i64, i64 };
    LLVMValueRef fn = LLVMAddFunction(mod, k->name, LLVMFunctionType(vd, wt, 3, 0));
    jm_kfn_enum_attr(fn, LLVMAttributeFunctionIndex, "nounwind");
    LLVMValueRef fns[2] = { body, fn };
    for (int f = 0; f < 2; f++) {
        if (cpu && *cpu) jm_kfn_attr(fns[f], "target-cpu", cpu);
        if (features && *features) jm_kfn_attr(fns[f], "target-features", features);
        jm_kfn_attr(fns[f], "prefer-vector-width", vw);
        jm_kfn_attr(fns[f], "min-legal-vector-width", "0");
    }
    LLVMBuilderRef b = LLVMCreateBuilderInContext(ctx);
    LLVMPositionBuilderAtEnd(b, LLVMAppendBasicBlockInContext(ctx, fn, "entry"));
    LLVMValueRef *args = malloc(sizeof(LLVMValueRef) * (size_t)(np + 2));
    for (int i = 0; i < np; i++) {
        LLVMValueRef idx = LLVMConstInt(i64, (unsigned long long)i, 0);
        LLVMValueRef slot = LLVMBuildInBoundsGEP2(b, ptr, LLVMGetParam(fn, 0), &idx, 1, "");
        args[i] = LLVMBuildLoad2(b, ptr, slot, "");
    }
    args[np] = LLVMGetParam(fn, 1);
    args[np + 1] = LLVMGetParam(fn, 2);
    LLVMBuildCall2(b, LLVMGlobalGetValueType(body), body, args, (unsigned)(np + 2), "");
    LLVMBuildRetVoid(b);
    free(args);
    LLVMDisposeBuilder(b);
}
