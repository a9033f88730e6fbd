/* gpu_kernel.c — see gpu_kernel.h. */
#include "gpu_kernel.h"
#include "kernel_body.h"
#include <stdlib.h>
#include <string.h>

/* a read of a PTX special register (tid.x, ntid.x, ctaid.x, nctaid.x), widened to i64 */
static LLVMValueRef jm_sreg(LLVMModuleRef mod, LLVMBuilderRef b, const char *name) {
    LLVMContextRef ctx = LLVMGetModuleContext(mod);
    unsigned id = LLVMLookupIntrinsicID(name, strlen(name));
    LLVMValueRef fn = LLVMGetIntrinsicDeclaration(mod, id, NULL, 0);
    LLVMTypeRef ft = LLVMIntrinsicGetType(ctx, id, NULL, 0);
    LLVMValueRef v = LLVMBuildCall2(b, ft, fn, NULL, 0, "");
    return LLVMBuildZExt(b, v, LLVMInt64TypeInContext(ctx), "");
}

int64_t jm_gpu_kernel_scale(const jm_plan *P, const jm_kspec *k) {
    int64_t inner = 1;
    if (k->kind == JM_KERNEL_ELEMWISE && k->split > 0) {
        const jm_type *rt = &P->m->graphs[k->graph].node[k->root].type;
        for (int d = k->split; d < rt->rank; d++) inner *= rt->dim[d];
    }
    return inner;
}

void jm_gpu_kernel_emit(LLVMModuleRef mod, const jm_plan *P, const jm_kspec *k) {
    LLVMContextRef ctx = LLVMGetModuleContext(mod);
    LLVMTypeRef ptr = LLVMPointerTypeInContext(ctx, 0), i64 = LLVMInt64TypeInContext(ctx), vd = LLVMVoidTypeInContext(ctx);
    jm_kspec flat = *k;
    int64_t inner = jm_gpu_kernel_scale(P, k);
    flat.split = 0;
    LLVMValueRef body = jm_kbody_emit(mod, P, &flat, "__nv_");
    int np = k->nparam;
    LLVMTypeRef *pt = malloc(sizeof(LLVMTypeRef) * (size_t)(np + 1));
    for (int i = 0; i < np; i++) pt[i] = ptr;
    pt[np] = i64;
    LLVMValueRef fn = LLVMAddFunction(mod, k->name, LLVMFunctionType(vd, pt, (unsigned)(np + 1), 0));
    LLVMSetFunctionCallConv(fn, LLVMPTXKernelCallConv);
    jm_kfn_enum_attr(fn, LLVMAttributeFunctionIndex, "nounwind");
    /* the plan never lets two buffers of one kernel overlap (kernel_body.h):
       noalias lets read-only inputs go through the non-coherent cache */
    for (int i = 0; i < np; i++) jm_kfn_enum_attr(fn, (unsigned)(i + 1), "noalias");

    LLVMBuilderRef b = LLVMCreateBuilderInContext(ctx);
    LLVMBasicBlockRef entry = LLVMAppendBasicBlockInContext(ctx, fn, "entry");
    LLVMBasicBlockRef loop = LLVMAppendBasicBlockInContext(ctx, fn, "loop");
    LLVMBasicBlockRef done = LLVMAppendBasicBlockInContext(ctx, fn, "done");
    LLVMPositionBuilderAtEnd(b, entry);
    LLVMValueRef tid = jm_sreg(mod, b, "llvm.nvvm.read.ptx.sreg.tid.x");
    LLVMValueRef ntid = jm_sreg(mod, b, "llvm.nvvm.read.ptx.sreg.ntid.x");
    LLVMValueRef ctaid = jm_sreg(mod, b, "llvm.nvvm.read.ptx.sreg.ctaid.x");
    LLVMValueRef nctaid = jm_sreg(mod, b, "llvm.nvvm.read.ptx.sreg.nctaid.x");
    LLVMValueRef first = LLVMBuildAdd(b, LLVMBuildMul(b, ctaid, ntid, ""), tid, "first");
    LLVMValueRef stride = LLVMBuildMul(b, nctaid, ntid, "stride");
    LLVMValueRef total = LLVMGetParam(fn, (unsigned)np);
    if (inner != 1) total = LLVMBuildMul(b, total, LLVMConstInt(i64, (unsigned long long)inner, 0), "total");
    LLVMBuildCondBr(b, LLVMBuildICmp(b, LLVMIntSLT, first, total, ""), loop, done);

    LLVMPositionBuilderAtEnd(b, loop);
    LLVMValueRef i = LLVMBuildPhi(b, i64, "i");
    LLVMValueRef *args = malloc(sizeof(LLVMValueRef) * (size_t)(np + 2));
    for (int q = 0; q < np; q++) args[q] = LLVMGetParam(fn, (unsigned)q);
    args[np] = i;
    args[np + 1] = LLVMBuildAdd(b, i, LLVMConstInt(i64, 1, 0), "");
    LLVMBuildCall2(b, LLVMGlobalGetValueType(body), body, args, (unsigned)(np + 2), "");
    LLVMValueRef next = LLVMBuildAdd(b, i, stride, "next");
    LLVMAddIncoming(i, &first, &entry, 1);
    LLVMBasicBlockRef latch = LLVMGetInsertBlock(b);
    LLVMAddIncoming(i, &next, &latch, 1);
    LLVMBuildCondBr(b, LLVMBuildICmp(b, LLVMIntSLT, next, total, ""), loop, done);
    LLVMPositionBuilderAtEnd(b, done);
    LLVMBuildRetVoid(b);
    free(args);
    free(pt);
    LLVMDisposeBuilder(b);
}
