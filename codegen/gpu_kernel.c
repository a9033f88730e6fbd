/* gpu_kernel.c — see gpu_kernel.h. */
#include "gpu_kernel.h"
#include "kernel_body.h"
#include <llvm-c/DebugInfo.h>
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

/* The entry: PTX registers from the hardware (emul = 0), or, on the host, from
   two extra arguments after n: the block index and the block count (one thread
   a block). */
static LLVMValueRef jm_gpu_entry(LLVMModuleRef mod, const jm_plan *P, const jm_kspec *k, int emul) {
    LLVMContextRef ctx = LLVMGetModuleContext(mod);
    LLVMTypeRef ptr = LLVMPointerTypeInContext(ctx, 0), i64 = LLVMInt64TypeInContext(ctx), vd = LLVMVoidTypeInContext(ctx);
    jm_kspec flat = *k;
    int64_t inner = jm_gpu_kernel_scale(P, k);
    flat.split = 0;
    LLVMValueRef body = jm_kbody_emit(mod, P, &flat, emul ? "" : "__nv_");
    int np = k->nparam, extra = emul ? 2 : 0;
    LLVMTypeRef *pt = malloc(sizeof(LLVMTypeRef) * (size_t)(np + 3));
    for (int i = 0; i < np; i++) pt[i] = ptr;
    pt[np] = i64;
    if (emul) pt[np + 1] = pt[np + 2] = i64;
    char name[300];
    snprintf(name, sizeof name, emul ? "%s.gpu" : "%s", k->name);
    LLVMValueRef fn = LLVMAddFunction(mod, name, LLVMFunctionType(vd, pt, (unsigned)(np + 1 + extra), 0));
    if (emul) LLVMSetLinkage(fn, LLVMInternalLinkage);
    else LLVMSetFunctionCallConv(fn, LLVMPTXKernelCallConv);
    jm_kfn_enum_attr(fn, LLVMAttributeFunctionIndex, "nounwind");
    /* the plan never lets two buffers of one kernel overlap (kernel_body.h):
       noalias lets read-only inputs go through the non-coherent cache */
    for (int i = 0; i < np; i++) jm_kfn_enum_attr(fn, (unsigned)(i + 1), "noalias");

    LLVMBuilderRef b = LLVMCreateBuilderInContext(ctx);
    LLVMBasicBlockRef entry = LLVMAppendBasicBlockInContext(ctx, fn, "entry");
    LLVMBasicBlockRef loop = LLVMAppendBasicBlockInContext(ctx, fn, "loop");
    LLVMBasicBlockRef done = LLVMAppendBasicBlockInContext(ctx, fn, "done");
    LLVMPositionBuilderAtEnd(b, entry);
    LLVMValueRef tid, ntid, ctaid, nctaid;
    if (emul) {
        tid = LLVMConstInt(i64, 0, 0);
        ntid = LLVMConstInt(i64, 1, 0);
        ctaid = LLVMGetParam(fn, (unsigned)np + 1);
        nctaid = LLVMGetParam(fn, (unsigned)np + 2);
    } else {
        tid = jm_sreg(mod, b, "llvm.nvvm.read.ptx.sreg.tid.x");
        ntid = jm_sreg(mod, b, "llvm.nvvm.read.ptx.sreg.ntid.x");
        ctaid = jm_sreg(mod, b, "llvm.nvvm.read.ptx.sreg.ctaid.x");
        nctaid = jm_sreg(mod, b, "llvm.nvvm.read.ptx.sreg.nctaid.x");
    }
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
    LLVMValueRef latch_br = LLVMBuildCondBr(b, LLVMBuildICmp(b, LLVMIntSLT, next, total, ""), loop, done);
    if (emul) {
        /* One GPU thread's code runs scalar, as on the GPU. LLVM 19's loop vectorizer
           also miscompiled this strided loop on the host: a broadcast's `lin % 64`
           index became an interleaved load that ignores the wrap (the emulation of
           mlp_tabular's bias + leaky_relu read past the bias). */
        LLVMMetadataRef tmp = LLVMTemporaryMDNode(ctx, NULL, 0);
        LLVMMetadataRef off[2] = { LLVMMDStringInContext2(ctx, "llvm.loop.vectorize.enable", 26),
                                   LLVMValueAsMetadata(LLVMConstInt(LLVMInt1TypeInContext(ctx), 0, 0)) };
        LLVMMetadataRef one[2] = { LLVMMDStringInContext2(ctx, "llvm.loop.interleave.count", 26),
                                   LLVMValueAsMetadata(LLVMConstInt(LLVMInt32TypeInContext(ctx), 1, 0)) };
        LLVMMetadataRef ops[3] = { tmp, LLVMMDNodeInContext2(ctx, off, 2), LLVMMDNodeInContext2(ctx, one, 2) };
        LLVMMetadataRef md = LLVMMDNodeInContext2(ctx, ops, 3);
        LLVMMetadataReplaceAllUsesWith(tmp, md);
        LLVMSetMetadata(latch_br, LLVMGetMDKindIDInContext(ctx, "llvm.loop", 9), LLVMMetadataAsValue(ctx, md));
    }
    LLVMPositionBuilderAtEnd(b, done);
    LLVMBuildRetVoid(b);
    free(args);
    free(pt);
    LLVMDisposeBuilder(b);
    return fn;
}

void jm_gpu_kernel_emit(LLVMModuleRef mod, const jm_plan *P, const jm_kspec *k) { jm_gpu_entry(mod, P, k, 0); }

void jm_gpu_kernel_emit_host(LLVMModuleRef mod, const jm_plan *P, const jm_kspec *k) {
    LLVMContextRef ctx = LLVMGetModuleContext(mod);
    LLVMTypeRef ptr = LLVMPointerTypeInContext(ctx, 0), i64 = LLVMInt64TypeInContext(ctx), vd = LLVMVoidTypeInContext(ctx);
    LLVMValueRef entry = jm_gpu_entry(mod, P, k, 1);
    int np = k->nparam;
    LLVMTypeRef wt[3] = { ptr, i64, i64 };
    LLVMValueRef fn = LLVMAddFunction(mod, k->name, LLVMFunctionType(vd, wt, 3, 0));
    LLVMBuilderRef b = LLVMCreateBuilderInContext(ctx);
    LLVMBasicBlockRef e = LLVMAppendBasicBlockInContext(ctx, fn, "entry");
    LLVMBasicBlockRef loop = LLVMAppendBasicBlockInContext(ctx, fn, "block");
    LLVMBasicBlockRef done = LLVMAppendBasicBlockInContext(ctx, fn, "done");
    LLVMPositionBuilderAtEnd(b, e);
    LLVMValueRef *args = malloc(sizeof(LLVMValueRef) * (size_t)(np + 3));
    for (int i = 0; i < np; i++) {
        LLVMValueRef idx = LLVMConstInt(i64, (unsigned long long)i, 0);
        args[i] = LLVMBuildLoad2(b, ptr, LLVMBuildInBoundsGEP2(b, ptr, LLVMGetParam(fn, 0), &idx, 1, ""), "");
    }
    args[np] = LLVMGetParam(fn, 2);     /* the CPU ABI's `end`; `begin` is 0 */
    LLVMBuildBr(b, loop);
    LLVMPositionBuilderAtEnd(b, loop);
    LLVMValueRef blk = LLVMBuildPhi(b, i64, "blk");
    LLVMValueRef zero = LLVMConstInt(i64, 0, 0);
    LLVMAddIncoming(blk, &zero, &e, 1);
    args[np + 1] = blk;
    args[np + 2] = LLVMConstInt(i64, JM_GPU_EMUL_BLOCKS, 0);
    LLVMBuildCall2(b, LLVMGlobalGetValueType(entry), entry, args, (unsigned)(np + 3), "");
    LLVMValueRef next = LLVMBuildAdd(b, blk, LLVMConstInt(i64, 1, 0), "");
    LLVMAddIncoming(blk, &next, &loop, 1);
    LLVMBuildCondBr(b, LLVMBuildICmp(b, LLVMIntSLT, next, args[np + 2], ""), loop, done);
    LLVMPositionBuilderAtEnd(b, done);
    LLVMBuildRetVoid(b);
    free(args);
    LLVMDisposeBuilder(b);
}
