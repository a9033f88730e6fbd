/* gpu_target.c — see gpu_target.h. */
#include "gpu_target.h"
#include "gpu_kernel.h"
#include "kernel_dedup.h"
#include <llvm-c/Core.h>
#include <llvm-c/Analysis.h>
#include <llvm-c/BitReader.h>
#include <llvm-c/Linker.h>
#include <llvm-c/Target.h>
#include <llvm-c/TargetMachine.h>
#include <llvm-c/Transforms/PassBuilder.h>
#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static void jm_err(char *err, size_t n, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, n, fmt, ap);
    va_end(ap);
}

/* The processors of LLVM 19's NVPTX backend (NVPTX.td). LLVM only warns on an
   unknown name and then emits code for a default, so jemc checks first. */
static const char *const jm_archs[] = {
    "sm_50", "sm_52", "sm_53", "sm_60", "sm_61", "sm_62", "sm_70", "sm_72", "sm_75",
    "sm_80", "sm_86", "sm_87", "sm_89", "sm_90", "sm_90a", NULL
};

const char *jm_gpu_arch_list(void) {
    static char buf[256];
    if (!buf[0])
        for (int i = 0; jm_archs[i]; i++) {
            strcat(buf, i ? " " : "");
            strcat(buf, jm_archs[i]);
        }
    return buf;
}

int jm_gpu_arch_ok(const char *arch) {
    for (int i = 0; jm_archs[i]; i++) if (arch && strcmp(arch, jm_archs[i]) == 0) return 1;
    return 0;
}

static void jm_nvptx_init(void) {
    static int done;
    if (done) return;
    LLVMInitializeNVPTXTargetInfo();
    LLVMInitializeNVPTXTarget();
    LLVMInitializeNVPTXTargetMC();
    LLVMInitializeNVPTXAsmPrinter();
    done = 1;
}

static int jm_file_ok(const char *p) { return p && *p && access(p, R_OK) == 0; }

/* libdevice: the option, then $CUDA_HOME, then the usual install places
   (NVIDIA's /usr/local/cuda, Debian's nvidia-cuda-toolkit) */
const char *jm_gpu_find_libdevice(const char *given, const char *tools_dir, char *buf, size_t n) {
    if (given) return jm_file_ok(given) ? given : NULL;
    const char *home = getenv("CUDA_HOME");
    if (home && *home) {
        snprintf(buf, n, "%s/nvvm/libdevice/libdevice.10.bc", home);
        if (jm_file_ok(buf)) return buf;
    }
    const char *places[] = { "/usr/local/cuda/nvvm/libdevice/libdevice.10.bc",
                             "/usr/lib/nvidia-cuda-toolkit/libdevice/libdevice.10.bc", NULL };
    for (int i = 0; places[i]; i++) if (jm_file_ok(places[i])) return places[i];
    if (tools_dir) {
        snprintf(buf, n, "%s/usr/lib/nvidia-cuda-toolkit/libdevice/libdevice.10.bc", tools_dir);
        if (jm_file_ok(buf)) return buf;
    }
    return NULL;
}

/* Links libdevice into mod when a kernel calls one of its functions (__nv_*).
   Its functions become internal, so the optimiser drops the unused ones. */
static int jm_link_libdevice(LLVMModuleRef mod, const jm_gpu_opts *o, char *err, size_t errlen) {
    const char *need = NULL;
    for (LLVMValueRef f = LLVMGetFirstFunction(mod); f; f = LLVMGetNextFunction(f)) {
        size_t len;
        const char *nm = LLVMGetValueName2(f, &len);
        if (LLVMIsDeclaration(f) && strncmp(nm, "__nv_", 5) == 0) { need = nm; break; }
    }
    if (!need) return 0;
    char buf[4096];
    const char *path = jm_gpu_find_libdevice(o->libdevice, o->tools_dir, buf, sizeof buf);
    if (!path) {
        jm_err(err, errlen, "a kernel calls %s (double-precision math), which the GPU takes from CUDA's libdevice: %s%s",
               need, o->libdevice ? "cannot read " : "none found (make deps-cuda fetches it; or give --libdevice PATH/libdevice.10.bc)",
               o->libdevice ? o->libdevice : "");
        return -1;
    }
    LLVMMemoryBufferRef mb;
    char *msg = NULL;
    if (LLVMCreateMemoryBufferWithContentsOfFile(path, &mb, &msg)) {
        jm_err(err, errlen, "cannot read %s: %s", path, msg);
        LLVMDisposeMessage(msg);
        return -1;
    }
    LLVMModuleRef lib;
    if (LLVMParseBitcodeInContext2(LLVMGetModuleContext(mod), mb, &lib)) {
        LLVMDisposeMemoryBuffer(mb);
        jm_err(err, errlen, "%s is not LLVM bitcode", path);
        return -1;
    }
    LLVMDisposeMemoryBuffer(mb);
    /* libdevice carries its own triple and layout: take the module's */
    LLVMSetTarget(lib, LLVMGetTarget(mod));
    LLVMSetDataLayout(lib, LLVMGetDataLayoutStr(mod));
    if (LLVMLinkModules2(mod, lib)) { jm_err(err, errlen, "cannot link %s", path); return -1; }
    /* after linking (an internal symbol would not resolve the kernels' declarations) */
    for (LLVMValueRef f = LLVMGetFirstFunction(mod); f; f = LLVMGetNextFunction(f))
        if (!LLVMIsDeclaration(f) && LLVMGetFunctionCallConv(f) != LLVMPTXKernelCallConv) LLVMSetLinkage(f, LLVMInternalLinkage);
    /* no flush-to-zero of float32 denormals in libdevice (its __nvvm_reflect query) */
    LLVMAddModuleFlag(mod, LLVMModuleFlagBehaviorOverride, "nvvm-reflect-ftz", 16,
                      LLVMValueAsMetadata(LLVMConstInt(LLVMInt32TypeInContext(LLVMGetModuleContext(mod)), 0, 0)));
    return 0;
}

const char *jm_gpu_lib_kernel(int op) {
    switch (op) {
    case JM_LIB_RNG_NORMAL: return "jm_dev_rng_normal";
    case JM_LIB_RNG_UNIFORM: case JM_LIB_RNG_RANDINT: case JM_LIB_RNG_BERNOULLI: return "jm_dev_rng";
    case JM_LIB_AVGPOOL: case JM_LIB_MAXPOOL: return "jm_dev_pool";
    case JM_LIB_AVGPOOL_BWD: case JM_LIB_MAXPOOL_BWD: return "jm_dev_pool_bwd";
    case JM_LIB_GATHER: return "jm_dev_gather";
    case JM_LIB_SCATTER: case JM_LIB_INDEX_ADD: return "jm_dev_scatter";
    case JM_LIB_ONEHOT: return "jm_dev_onehot";
    case JM_LIB_CONCAT: return "jm_dev_concat_part";
    default: return NULL;
    }
}

/* Links the runtime's GPU library into mod; its kernels that no step of P
   launches become internal, and the optimiser drops them (with their need
   for libdevice). */
static int jm_link_devlib(LLVMModuleRef mod, const jm_plan *P, const char *path, char *err, size_t errlen) {
    LLVMMemoryBufferRef mb;
    char *msg = NULL;
    if (LLVMCreateMemoryBufferWithContentsOfFile(path, &mb, &msg)) {
        jm_err(err, errlen, "the runtime's GPU library %s cannot be read (%s); build it with make or set JEMC_RUNTIME_DIR", path, msg);
        LLVMDisposeMessage(msg);
        return -1;
    }
    LLVMModuleRef lib;
    int bad = LLVMParseBitcodeInContext2(LLVMGetModuleContext(mod), mb, &lib);
    LLVMDisposeMemoryBuffer(mb);
    if (bad) { jm_err(err, errlen, "%s is not LLVM bitcode", path); return -1; }
    LLVMSetDataLayout(lib, LLVMGetDataLayoutStr(mod));
    const char *used[JM_LIB_COUNT + 1];
    int nused = 0;
    for (int p = 0; p < P->table.nprograms; p++)
        for (int s = 0; s < P->table.programs[p].nsteps; s++) {
            const jm_step *st = &P->table.programs[p].steps[s];
            const char *k = st->kind == JM_STEP_LIB ? jm_gpu_lib_kernel(st->op) : NULL;
            int seen = 0;
            for (int i = 0; k && i < nused; i++) seen |= strcmp(used[i], k) == 0;
            if (k && !seen) used[nused++] = k;
        }
    for (LLVMValueRef f = LLVMGetFirstFunction(lib); f; f = LLVMGetNextFunction(f)) {
        /* the module's target machine decides the GPU, not the library's build */
        LLVMRemoveStringAttributeAtIndex(f, LLVMAttributeFunctionIndex, "target-cpu", 10);
        LLVMRemoveStringAttributeAtIndex(f, LLVMAttributeFunctionIndex, "target-features", 15);
        size_t len;
        const char *nm = LLVMGetValueName2(f, &len);
        /* its kernels: clang marks them with nvvm.annotations; the calling
           convention marks them here too (what the internalising below reads) */
        if (LLVMIsDeclaration(f) || LLVMGetLinkage(f) != LLVMExternalLinkage || strncmp(nm, "jm_dev_", 7) != 0) continue;
        int keep = 0;
        for (int i = 0; i < nused; i++) keep |= strcmp(used[i], nm) == 0;
        if (keep) LLVMSetFunctionCallConv(f, LLVMPTXKernelCallConv);
        else LLVMSetLinkage(f, LLVMInternalLinkage);
    }
    if (LLVMLinkModules2(mod, lib)) { jm_err(err, errlen, "cannot link %s", path); return -1; }
    LLVMPassBuilderOptionsRef po = LLVMCreatePassBuilderOptions();
    LLVMErrorRef e = LLVMRunPasses(mod, "globaldce", NULL, po);
    LLVMDisposePassBuilderOptions(po);
    if (e) { char *m = LLVMGetErrorMessage(e); jm_err(err, errlen, "globaldce: %s", m); LLVMDisposeErrorMessage(m); return -1; }
    return 0;
}

int jm_gpu_ptx(const jm_plan *P, const jm_gpu_opts *o, char **ptx, char *err, size_t errlen) {
    const char *arch = o->arch ? o->arch : "sm_90";
    if (!jm_gpu_arch_ok(arch)) {
        jm_err(err, errlen, "unknown GPU architecture '%s' (LLVM 19 knows %s)", arch, jm_gpu_arch_list());
        return -1;
    }
    jm_nvptx_init();
    const char *triple = "nvptx64-nvidia-cuda";
    LLVMTargetRef target;
    char *msg = NULL;
    if (LLVMGetTargetFromTriple(triple, &target, &msg)) {
        jm_err(err, errlen, "this LLVM has no NVPTX target: %s", msg);
        LLVMDisposeMessage(msg);
        return -1;
    }
    for (int i = 0; i < P->nkernels; i++)
        if (P->kernels[i].rng) {
            /* plan.h: a plan for the GPU is built with jm_plan_set_rng_fusion(0) */
            jm_err(err, errlen, "kernel %s draws random numbers inline, which the CUDA backend does not support (a jemc bug: "
                                "please report it with the graph)", P->kernels[i].name);
            return -1;
        }
    int opt = o->opt < 0 ? 0 : o->opt > 3 ? 3 : o->opt;
    LLVMCodeGenOptLevel lvl = opt == 0 ? LLVMCodeGenLevelNone : opt == 1 ? LLVMCodeGenLevelLess : opt == 2 ? LLVMCodeGenLevelDefault : LLVMCodeGenLevelAggressive;
    LLVMTargetMachineRef tm = LLVMCreateTargetMachine(target, triple, arch, "", lvl, LLVMRelocDefault, LLVMCodeModelDefault);
    if (!tm) { jm_err(err, errlen, "LLVM cannot make an NVPTX target machine for %s", arch); return -1; }
    LLVMContextRef ctx = LLVMContextCreate();
    LLVMModuleRef mod = LLVMModuleCreateWithNameInContext("jemc_gpu", ctx);
    LLVMSetTarget(mod, triple);
    LLVMTargetDataRef td = LLVMCreateTargetDataLayout(tm);
    LLVMSetModuleDataLayout(mod, td);
    LLVMDisposeTargetData(td);
    int *first = jm_kernels_dedup(P);
    char prefix[256] = "";
    if (o->program) snprintf(prefix, sizeof prefix, "jk_%s_", o->program);
    for (int i = 0; i < P->nkernels; i++) {
        if (o->program && strncmp(P->kernels[i].name, prefix, strlen(prefix)) != 0) continue;
        if (first[i] == i || o->program) jm_gpu_kernel_emit(mod, P, &P->kernels[first[i]]);
    }
    free(first);
    int rc = -1;
    if (o->devlib && jm_link_devlib(mod, P, o->devlib, err, errlen) != 0) goto done;
    if (jm_link_libdevice(mod, o, err, errlen) != 0) goto done;
    if (LLVMVerifyModule(mod, LLVMReturnStatusAction, &msg)) {
        jm_err(err, errlen, "internal error: generated NVPTX IR does not verify: %.300s", msg);
        LLVMDisposeMessage(msg);
        goto done;
    }
    LLVMDisposeMessage(msg);
    msg = NULL;
    LLVMPassBuilderOptionsRef po = LLVMCreatePassBuilderOptions();
    LLVMPassBuilderOptionsSetLoopUnrolling(po, 1);
    char pipeline[32];
    snprintf(pipeline, sizeof pipeline, "default<O%d>", opt);
    LLVMErrorRef e = LLVMRunPasses(mod, pipeline, tm, po);
    LLVMDisposePassBuilderOptions(po);
    if (e) {
        char *m = LLVMGetErrorMessage(e);
        jm_err(err, errlen, "LLVM optimisation (NVPTX) failed: %s", m);
        LLVMDisposeErrorMessage(m);
        goto done;
    }
    LLVMMemoryBufferRef out;
    if (LLVMTargetMachineEmitToMemoryBuffer(tm, mod, LLVMAssemblyFile, &msg, &out)) {
        jm_err(err, errlen, "LLVM cannot emit PTX: %s", msg);
        LLVMDisposeMessage(msg);
        goto done;
    }
    size_t n = LLVMGetBufferSize(out);
    *ptx = malloc(n + 1);
    memcpy(*ptx, LLVMGetBufferStart(out), n);
    (*ptx)[n] = 0;
    LLVMDisposeMemoryBuffer(out);
    rc = 0;
done:
    LLVMDisposeModule(mod);
    LLVMContextDispose(ctx);
    LLVMDisposeTargetMachine(tm);
    return rc;
}

int64_t jm_gpu_scale(const jm_plan *P, int i) { return jm_gpu_kernel_scale(P, &P->kernels[i]); }

/* ---- ptxas ------------------------------------------------------------------- */

static int jm_exec_ok(const char *p) { struct stat st; return stat(p, &st) == 0 && S_ISREG(st.st_mode) && access(p, X_OK) == 0; }

char *jm_gpu_find_ptxas(const char *tools_dir) {
    const char *env = getenv("JEMC_PTXAS");
    if (env) return *env && jm_exec_ok(env) ? strdup(env) : NULL;
    char buf[4096];
    const char *path = getenv("PATH");
    while (path && *path) {
        const char *c = strchr(path, ':');
        size_t len = c ? (size_t)(c - path) : strlen(path);
        if (len > 0 && len < sizeof buf - 8) {
            snprintf(buf, sizeof buf, "%.*s/ptxas", (int)len, path);
            if (jm_exec_ok(buf)) return strdup(buf);
        }
        path = c ? c + 1 : NULL;
    }
    const char *home = getenv("CUDA_HOME");
    if (home && *home) {
        snprintf(buf, sizeof buf, "%s/bin/ptxas", home);
        if (jm_exec_ok(buf)) return strdup(buf);
    }
    if (jm_exec_ok("/usr/local/cuda/bin/ptxas")) return strdup("/usr/local/cuda/bin/ptxas");
    if (tools_dir) {
        snprintf(buf, sizeof buf, "%s/usr/bin/ptxas", tools_dir);
        if (jm_exec_ok(buf)) return strdup(buf);
    }
    return NULL;
}

static unsigned char *jm_slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 1 << 16, n = 0;
    unsigned char *b = malloc(cap);
    for (;;) {
        if (n == cap) b = realloc(b, cap *= 2);
        size_t k = fread(b + n, 1, cap - n, f);
        if (k == 0) break;
        n += k;
    }
    fclose(f);
    *len = n;
    return b;
}

int jm_gpu_assemble(const char *ptxas, const char *ptx, const char *arch, unsigned char **cubin, size_t *len,
                    char *err, size_t errlen) {
    char dir[] = "/tmp/jemc-ptxas-XXXXXX";
    if (!mkdtemp(dir)) { jm_err(err, errlen, "cannot make a temporary directory: %s", strerror(errno)); return -1; }
    char in[128], out[128], log[128], archopt[64];
    snprintf(in, sizeof in, "%s/k.ptx", dir);
    snprintf(out, sizeof out, "%s/k.cubin", dir);
    snprintf(log, sizeof log, "%s/ptxas.log", dir);
    snprintf(archopt, sizeof archopt, "-arch=%s", arch);
    int rc = -1;
    FILE *f = fopen(in, "w");
    if (!f || fputs(ptx, f) < 0 || fclose(f) != 0) { jm_err(err, errlen, "cannot write %s", in); goto done; }
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    posix_spawn_file_actions_adddup2(&fa, 1, 2);
    char *argv[] = { (char *)ptxas, archopt, "-O3", in, "-o", out, NULL };
    extern char **environ;
    pid_t pid;
    int st = -1;
    if (posix_spawn(&pid, ptxas, &fa, NULL, argv, environ) == 0 && waitpid(pid, &st, 0) == pid) {}
    posix_spawn_file_actions_destroy(&fa);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        size_t ln = 0;
        unsigned char *m = jm_slurp(log, &ln);
        jm_err(err, errlen, "%s refused the generated PTX for %s (a jemc bug; please report it): %.*s", ptxas, arch,
               (int)(ln > 600 ? 600 : ln), m ? (const char *)m : "");
        free(m);
        goto done;
    }
    *cubin = jm_slurp(out, len);
    if (!*cubin) { jm_err(err, errlen, "ptxas wrote no %s", out); goto done; }
    rc = 0;
done:
    unlink(in); unlink(out); unlink(log); rmdir(dir);
    return rc;
}
