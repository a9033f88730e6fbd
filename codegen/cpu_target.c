/* cpu_target.c — see cpu_target.h. */
#include "cpu_target.h"
#include "cpu_kernel.h"
#include "kernel_body.h"
#include "kernel_dedup.h"
#include "gpu_kernel.h"
#include <llvm-c/Core.h>
#include <llvm-c/LLJIT.h>
#include <llvm-c/Orc.h>
#include <llvm-c/Target.h>
#include <llvm-c/TargetMachine.h>
#include <llvm-c/Analysis.h>
#include <llvm-c/Transforms/PassBuilder.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void jm_err(char *err, size_t n, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, n, fmt, ap);
    va_end(ap);
}

static void jm_llvm_init(void) {
    static int done;
    if (done) return;
    LLVMInitializeNativeTarget();
    LLVMInitializeNativeAsmPrinter();
    done = 1;
}

void jm_cpu_resolve(const jm_cpu_opts *o, char **cpu, char **features) {
    jm_llvm_init();
    if (!o->cpu || !*o->cpu || strcmp(o->cpu, "native") == 0 || strcmp(o->cpu, "host") == 0) {
        char *c = LLVMGetHostCPUName(), *f = LLVMGetHostCPUFeatures();
        *cpu = strdup(c);
        *features = strdup(f);
        LLVMDisposeMessage(c);
        LLVMDisposeMessage(f);
    } else {
        *cpu = strdup(o->cpu);
        *features = strdup("");
    }
}

static LLVMTargetMachineRef jm_make_tm(const char *cpu, const char *features, int opt, char *err, size_t n) {
    char *triple = LLVMGetDefaultTargetTriple(), *msg = NULL;
    LLVMTargetRef target;
    if (LLVMGetTargetFromTriple(triple, &target, &msg)) {
        jm_err(err, n, "LLVM has no target for %s: %s", triple, msg);
        LLVMDisposeMessage(msg);
        LLVMDisposeMessage(triple);
        return NULL;
    }
    LLVMCodeGenOptLevel lvl = opt <= 0 ? LLVMCodeGenLevelNone : opt == 1 ? LLVMCodeGenLevelLess : opt == 2 ? LLVMCodeGenLevelDefault : LLVMCodeGenLevelAggressive;
    LLVMTargetMachineRef tm = LLVMCreateTargetMachine(target, triple, cpu, features, lvl, LLVMRelocPIC, LLVMCodeModelDefault);
    LLVMDisposeMessage(triple);
    if (!tm) jm_err(err, n, "LLVM cannot make a target machine for CPU '%s'", cpu);
    return tm;
}

/* ---- module building (one per worker) -------------------------------------- */

typedef struct {
    const jm_plan *P;
    const char *cpu, *features;
    int opt;
    const int *first;
    int worker, nworkers;
    LLVMContextRef ctx;          /* NULL: make one */
    LLVMModuleRef mod;
    /* AOT outputs */
    const int64_t *table; int64_t nwords;
    const jm_cpu_blob *blobs; int nblobs;
    int gpu_emulation;
    const char *path, *kind;
    char err[512];
    int failed;
} jm_job;

static void jm_build_module(jm_job *J) {
    if (!J->ctx) J->ctx = LLVMContextCreate();
    char name[64];
    snprintf(name, sizeof name, "jemc_kernels_%d", J->worker);
    J->mod = LLVMModuleCreateWithNameInContext(name, J->ctx);
    /* distinct kernels are dealt round-robin to the workers */
    int slot = 0;
    for (int i = 0; i < J->P->nkernels; i++) {
        if (J->first[i] != i) continue;
        if (slot++ % J->nworkers != J->worker) continue;
        if (J->gpu_emulation) jm_gpu_kernel_emit_host(J->mod, J->P, &J->P->kernels[i]);
        else jm_cpu_kernel_emit(J->mod, J->P, &J->P->kernels[i], J->cpu, J->features, 512);
    }
    if (J->table) {
        /* worker 0 also carries the program table and the kernel pointer array */
        LLVMTypeRef i64 = LLVMInt64TypeInContext(J->ctx), ptr = LLVMPointerTypeInContext(J->ctx, 0);
        LLVMValueRef *w = malloc(sizeof(LLVMValueRef) * (size_t)(J->nwords + 1));
        for (int64_t i = 0; i < J->nwords; i++) w[i] = LLVMConstInt(i64, (unsigned long long)J->table[i], 1);
        LLVMValueRef arr = LLVMConstArray2(i64, w, (uint64_t)J->nwords);
        free(w);
        LLVMValueRef g = LLVMAddGlobal(J->mod, LLVMTypeOf(arr), "jm_table_words");
        LLVMSetInitializer(g, arr);
        LLVMSetGlobalConstant(g, 1);
        LLVMValueRef gn = LLVMAddGlobal(J->mod, i64, "jm_table_nwords");
        LLVMSetInitializer(gn, LLVMConstInt(i64, (unsigned long long)J->nwords, 0));
        LLVMSetGlobalConstant(gn, 1);
        LLVMTypeRef wt[3] = { ptr, i64, i64 };
        LLVMTypeRef kt = LLVMFunctionType(LLVMVoidTypeInContext(J->ctx), wt, 3, 0);
        int n = J->P->nkernels;
        LLVMValueRef *f = malloc(sizeof(LLVMValueRef) * (size_t)(n + 1));
        for (int i = 0; i < n; i++) {
            const char *kn = J->P->kernels[J->first[i]].name;
            LLVMValueRef fn = LLVMGetNamedFunction(J->mod, kn);
            if (!fn) fn = LLVMAddFunction(J->mod, kn, kt);
            f[i] = fn;
        }
        LLVMValueRef parr = LLVMConstArray2(ptr, f, (uint64_t)n);
        free(f);
        LLVMValueRef gk = LLVMAddGlobal(J->mod, LLVMTypeOf(parr), "jm_kernel_ptrs");
        LLVMSetInitializer(gk, parr);
        LLVMSetGlobalConstant(gk, 1);
        LLVMValueRef gnk = LLVMAddGlobal(J->mod, i64, "jm_kernel_count");
        LLVMSetInitializer(gnk, LLVMConstInt(i64, (unsigned long long)n, 0));
        LLVMSetGlobalConstant(gnk, 1);
        for (int b = 0; b < J->nblobs; b++) {
            const jm_cpu_blob *bl = &J->blobs[b];
            LLVMValueRef data = LLVMConstStringInContext2(J->ctx, bl->data ? bl->data : "", (size_t)bl->len, 1);
            LLVMValueRef gb = LLVMAddGlobal(J->mod, LLVMTypeOf(data), bl->name);
            LLVMSetInitializer(gb, data);
            LLVMSetGlobalConstant(gb, 1);
            LLVMSetAlignment(gb, 16);
            char lname[128];
            snprintf(lname, sizeof lname, "%s_len", bl->name);
            LLVMValueRef gl = LLVMAddGlobal(J->mod, i64, lname);
            LLVMSetInitializer(gl, LLVMConstInt(i64, (unsigned long long)bl->len, 0));
            LLVMSetGlobalConstant(gl, 1);
        }
    }
}

static int jm_optimize(jm_job *J, LLVMTargetMachineRef tm) {
    char *triple = LLVMGetTargetMachineTriple(tm);
    LLVMSetTarget(J->mod, triple);
    LLVMDisposeMessage(triple);
    LLVMTargetDataRef td = LLVMCreateTargetDataLayout(tm);
    LLVMSetModuleDataLayout(J->mod, td);
    LLVMDisposeTargetData(td);
    char *msg = NULL;
    if (LLVMVerifyModule(J->mod, LLVMReturnStatusAction, &msg)) {
        jm_err(J->err, sizeof J->err, "internal error: generated LLVM IR does not verify: %.300s", msg);
        LLVMDisposeMessage(msg);
        return -1;
    }
    LLVMDisposeMessage(msg);
    LLVMPassBuilderOptionsRef po = LLVMCreatePassBuilderOptions();
    LLVMPassBuilderOptionsSetLoopVectorization(po, 1);
    LLVMPassBuilderOptionsSetSLPVectorization(po, 1);
    LLVMPassBuilderOptionsSetLoopUnrolling(po, 1);
    char pipeline[32];
    snprintf(pipeline, sizeof pipeline, "default<O%d>", J->opt < 0 ? 0 : J->opt > 3 ? 3 : J->opt);
    LLVMErrorRef e = LLVMRunPasses(J->mod, pipeline, tm, po);
    LLVMDisposePassBuilderOptions(po);
    if (e) {
        char *m = LLVMGetErrorMessage(e);
        jm_err(J->err, sizeof J->err, "LLVM optimisation failed: %s", m);
        LLVMDisposeErrorMessage(m);
        return -1;
    }
    return 0;
}

static void *jm_aot_worker(void *arg) {
    jm_job *J = arg;
    LLVMTargetMachineRef tm = jm_make_tm(J->cpu, J->features, J->opt, J->err, sizeof J->err);
    if (!tm) { J->failed = 1; return NULL; }
    jm_build_module(J);
    if (jm_optimize(J, tm) != 0) J->failed = 1;
    else if (strcmp(J->kind, "llvm") == 0) {
        char *msg = NULL;
        if (LLVMPrintModuleToFile(J->mod, J->path, &msg)) { jm_err(J->err, sizeof J->err, "cannot write %s: %s", J->path, msg); J->failed = 1; }
        LLVMDisposeMessage(msg);
    } else {
        char *msg = NULL;
        if (LLVMTargetMachineEmitToFile(tm, J->mod, J->path, strcmp(J->kind, "asm") == 0 ? LLVMAssemblyFile : LLVMObjectFile, &msg)) {
            jm_err(J->err, sizeof J->err, "cannot write %s: %s", J->path, msg);
            J->failed = 1;
        }
        LLVMDisposeMessage(msg);
    }
    LLVMDisposeModule(J->mod);
    LLVMContextDispose(J->ctx);
    LLVMDisposeTargetMachine(tm);
    return NULL;
}

static int jm_workers(const jm_cpu_opts *o, int ndistinct) {
    int w = o->threads;
    if (w <= 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        w = n > 0 ? (int)n : 1;
        if (w > 8) w = 8;
    }
    /* a worker has fixed costs (context, target machine): give each a few kernels */
    if (w > ndistinct / 4 + 1) w = ndistinct / 4 + 1;
    return w < 1 ? 1 : w;
}

int jm_cpu_write(const jm_plan *P, const jm_cpu_opts *o, const int64_t *table, int64_t nwords, const char *stem,
                 const char *kind, char ***paths, char *err, size_t errlen) {
    char *cpu, *features;
    jm_cpu_resolve(o, &cpu, &features);
    int *first = jm_kernels_dedup(P), nd = 0;
    for (int i = 0; i < P->nkernels; i++) nd += first[i] == i;
    int nw = jm_workers(o, nd);
    jm_job *jobs = calloc((size_t)nw, sizeof(jm_job));
    pthread_t *th = calloc((size_t)nw, sizeof(pthread_t));
    char **out = calloc((size_t)nw + 1, sizeof(char *));
    const char *ext = strcmp(kind, "llvm") == 0 ? "ll" : strcmp(kind, "asm") == 0 ? "s" : "o";
    for (int w = 0; w < nw; w++) {
        jm_job *J = &jobs[w];
        J->P = P; J->cpu = cpu; J->features = features; J->opt = o->opt; J->first = first;
        J->worker = w; J->nworkers = nw; J->kind = kind;
        J->gpu_emulation = o->gpu_emulation;
        if (w == 0) { J->table = table; J->nwords = nwords; J->blobs = o->blobs; J->nblobs = o->nblobs; }
        size_t len = strlen(stem) + 32;
        out[w] = malloc(len);
        snprintf(out[w], len, "%s.%d.%s", stem, w, ext);
        J->path = out[w];
    }
    /* worker 0 runs on this thread */
    for (int w = 1; w < nw; w++) pthread_create(&th[w], NULL, jm_aot_worker, &jobs[w]);
    jm_aot_worker(&jobs[0]);
    for (int w = 1; w < nw; w++) pthread_join(th[w], NULL);
    int rc = nw;
    for (int w = 0; w < nw; w++)
        if (jobs[w].failed) { jm_err(err, errlen, "%s", jobs[w].err); rc = -1; break; }
    free(jobs); free(th); free(first); free(cpu); free(features);
    if (rc < 0) {
        for (int w = 0; w < nw; w++) { unlink(out[w]); free(out[w]); }
        free(out);
        return -1;
    }
    *paths = out;
    return rc;
}

/* ---- JIT --------------------------------------------------------------------- */

struct jm_cpu_jit { LLVMOrcLLJITRef jit; };

void jm_cpu_jit_free(jm_cpu_jit *j) {
    if (!j) return;
    if (j->jit) LLVMOrcDisposeLLJIT(j->jit);
    free(j);
}

static int jm_orc_err(LLVMErrorRef e, const char *what, char *err, size_t n) {
    if (!e) return 0;
    char *m = LLVMGetErrorMessage(e);
    jm_err(err, n, "%s: %s", what, m);
    LLVMDisposeErrorMessage(m);
    return -1;
}

jm_cpu_jit *jm_cpu_jit_create(const jm_plan *P, const jm_cpu_opts *o, jm_kernel_fn **fns, char *err, size_t errlen) {
    char *cpu, *features;
    jm_cpu_resolve(o, &cpu, &features);
    jm_cpu_jit *J = calloc(1, sizeof *J);
    int *first = jm_kernels_dedup(P);
    LLVMOrcJITTargetMachineBuilderRef jtmb = NULL;
    LLVMTargetMachineRef tm = jm_make_tm(cpu, features, o->opt, err, errlen);
    if (!tm) goto fail;
    jtmb = LLVMOrcJITTargetMachineBuilderCreateFromTargetMachine(jm_make_tm(cpu, features, o->opt, err, errlen));
    LLVMOrcLLJITBuilderRef jb = LLVMOrcCreateLLJITBuilder();
    LLVMOrcLLJITBuilderSetJITTargetMachineBuilder(jb, jtmb);
    if (jm_orc_err(LLVMOrcCreateLLJIT(&J->jit, jb), "cannot create the JIT", err, errlen)) goto fail;
    LLVMOrcDefinitionGeneratorRef gen;
    if (jm_orc_err(LLVMOrcCreateDynamicLibrarySearchGeneratorForProcess(&gen, LLVMOrcLLJITGetGlobalPrefix(J->jit), NULL, NULL),
                   "cannot search this process for symbols", err, errlen)) goto fail;
    LLVMOrcJITDylibAddGenerator(LLVMOrcLLJITGetMainJITDylib(J->jit), gen);
    LLVMOrcThreadSafeContextRef tsc = LLVMOrcCreateNewThreadSafeContext();
    jm_job job;
    memset(&job, 0, sizeof job);
    job.P = P; job.cpu = cpu; job.features = features; job.opt = o->opt; job.first = first;
    job.worker = 0; job.nworkers = 1;
    job.gpu_emulation = o->gpu_emulation;
    job.ctx = LLVMOrcThreadSafeContextGetContext(tsc);
    jm_build_module(&job);
    if (jm_optimize(&job, tm) != 0) {
        jm_err(err, errlen, "%s", job.err);
        LLVMDisposeModule(job.mod);
        LLVMOrcDisposeThreadSafeContext(tsc);
        goto fail;
    }
    LLVMOrcThreadSafeModuleRef tsm = LLVMOrcCreateNewThreadSafeModule(job.mod, tsc);
    LLVMOrcDisposeThreadSafeContext(tsc);
    if (jm_orc_err(LLVMOrcLLJITAddLLVMIRModule(J->jit, LLVMOrcLLJITGetMainJITDylib(J->jit), tsm), "cannot add the kernels", err, errlen)) goto fail;
    *fns = calloc((size_t)P->nkernels + 1, sizeof(jm_kernel_fn));
    for (int i = 0; i < P->nkernels; i++) {
        LLVMOrcExecutorAddress addr = 0;
        if (jm_orc_err(LLVMOrcLLJITLookup(J->jit, &addr, P->kernels[first[i]].name), "kernel lookup", err, errlen)) { free(*fns); goto fail; }
        (*fns)[i] = (jm_kernel_fn)(uintptr_t)addr;
    }
    LLVMDisposeTargetMachine(tm);
    free(first); free(cpu); free(features);
    return J;
fail:
    if (tm) LLVMDisposeTargetMachine(tm);
    free(first); free(cpu); free(features);
    jm_cpu_jit_free(J);
    return NULL;
}
