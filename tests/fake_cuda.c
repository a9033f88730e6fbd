/* fake_cuda.c — a CPU stand-in for the CUDA driver, cuBLAS and cuDNN, built as
 * a shared library (build/tests/libfakecuda.so) that t_cuda loads in place of
 * the real ones (JEMC_LIBCUDA, JEMC_LIBCUBLAS, JEMC_LIBCUDNN). It tests the GPU
 * runtime's host side on a machine without a GPU: which kernels it launches
 * with which arguments, the device memory it allocates and copies, the matrix
 * product and convolution calls it makes (the layouts, transposes, strides,
 * pads it passes), CUDA graph capture and replay, the host copy of the state
 * and the error word.
 *
 * "Device memory" is host memory. A launched kernel runs at once, serially:
 * the program's fused kernels are the CPU backend's code for the same kernel
 * (registered by the test with fake_cuda_register), the runtime's library
 * kernels are runtime/gpu/dev_lib.c compiled for the host (one thread doing
 * the whole grid-stride loop). cuBLAS and cuDNN are plain loops written from
 * their documented semantics (column-major GEMM; NCHW cross-correlation).
 * Under stream capture every launch, copy and library call is recorded, with
 * its arguments copied as the real driver copies them, and replayed by
 * cuGraphLaunch. Nothing here is a GPU: what the PTX computes is checked by
 * the real suite on a machine with one.
 *
 * The rules a real GPU enforces and a careless runtime breaks are enforced
 * here, so that t_cuda fails on them:
 *   - stream capture: no allocation, free, synchronous copy or
 *     synchronisation, no cuBLAS/cuDNN setup (handles, streams, workspaces,
 *     descriptors, algorithm queries), and no library call's first use (cuBLAS's
 *     first product on a handle, cuDNN's first run of an algorithm on a
 *     descriptor do one-time setup that capture forbids). Any of them
 *     invalidates the capture, as the driver does: the call fails and
 *     cuStreamEndCapture returns CUDA_ERROR_STREAM_CAPTURE_INVALIDATED.
 *   - cuDNN's algorithms: each query returns three, the first
 *     non-deterministic with a 1 MiB workspace, then two deterministic ones; a
 *     convolution runs only with the workspace its algorithm needs and the
 *     math type its query reported (under CUDNN_DEFAULT_MATH algorithm 1
 *     reports CUDNN_TENSOR_OP_MATH, as tensor-core algorithms do).
 *   - the JIT's error log option is in/out: its size comes back as the bytes
 *     written (0 when there was nothing to say).
 * Faults to inject, by environment variable:
 *   FAKE_CUDA_FAIL_INSTANTIATE=1   cuGraphInstantiateWithFlags fails
 *   FAKE_CUDA_CONV_FAIL_ALGO=N     running cuDNN algorithm N fails (EXECUTION_FAILED)
 *   FAKE_CUDA_ALGO_QUERY_FAIL=K    the K-th algorithm query (1-based, counted
 *                                  over the process) fails
 *   FAKE_CUDA_CUBLAS_BROKEN=TEXT   cublasCreate fails in a copy of this library
 *                                  whose file name contains TEXT (a broken
 *                                  libcublas.so.13 beside a working .so.12)
 *   FAKE_CUDA_SYNC_FAIL=1          cuStreamSynchronize reports a launch failure */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- the runtime's library kernels, for the host ------------------------------ */
#define JM_KERNEL __attribute__((visibility("default")))
#define __nvvm_read_ptx_sreg_ctaid_x() 0
#define __nvvm_read_ptx_sreg_ntid_x() 1
#define __nvvm_read_ptx_sreg_tid_x() 0
#define __nvvm_read_ptx_sreg_nctaid_x() 1
#define __nvvm_atom_cas_gen_i(p, cmp, v) __sync_val_compare_and_swap((p), (cmp), (v))
double __nv_log(double x) { return log(x); }
double __nv_cos(double x) { return cos(x); }
double __nv_sqrt(double x) { return sqrt(x); }
double __nv_floor(double x) { return floor(x); }
double __nv_trunc(double x) { return trunc(x); }
#include "../runtime/gpu/dev_lib.c"

typedef unsigned int CUresult;
typedef unsigned long long CUdeviceptr;
enum { OK = 0, E_INVALID = 1, E_NOT_FOUND = 500, E_LAUNCH_FAILED = 719, E_CAPTURE = 900, E_CAPTURE_INVALIDATED = 901 };

/* stream capture: on (capturing), and broken by a forbidden call (capture_broken) */
static int capturing, capture_broken;
/* a call that capture forbids: while capturing it breaks the capture and fails */
static int forbidden_in_capture(void) {
    if (!capturing) return 0;
    capture_broken = 1;
    return 1;
}
static int env_int(const char *name, int dflt) {
    const char *v = getenv(name);
    return v && *v ? atoi(v) : dflt;
}

/* ---- kernels ------------------------------------------------------------------- */

typedef void (*jk_fn)(void *const *bufs, int64_t begin, int64_t end);
typedef struct {
    char name[128];
    jk_fn fn;              /* a fused kernel (CPU code): nparam buffers, then n */
    int nparam;
    int lib;               /* or a dev_lib.c kernel: its index + 1 */
} fk_func;
static fk_func funcs[4096];
static int nfuncs;
static long launches, replays;

/* The test's fused kernels: CPU code taking (bufs, begin, end) over the table's items. */
__attribute__((visibility("default"))) void fake_cuda_register(const char *name, jk_fn fn, int nparam) {
    for (int i = 0; i < nfuncs; i++) if (strcmp(funcs[i].name, name) == 0) { funcs[i].fn = fn; funcs[i].nparam = nparam; return; }
    if (nfuncs == 4096) return;
    snprintf(funcs[nfuncs].name, sizeof funcs[nfuncs].name, "%s", name);
    funcs[nfuncs].fn = fn;
    funcs[nfuncs].nparam = nparam;
    nfuncs++;
}
__attribute__((visibility("default"))) void fake_cuda_counts(long *nlaunch, long *nreplay) { *nlaunch = launches; *nreplay = replays; }

static const char *const lib_names[] = { "jm_dev_rng", "jm_dev_rng_normal", "jm_dev_pool", "jm_dev_pool_bwd", "jm_dev_gather",
                                         "jm_dev_scatter", "jm_dev_onehot", "jm_dev_concat_part", "jm_dev_scale", NULL };
/* parameter sizes of each library kernel (dev_lib.c's signatures): p pointer, l i64, i i32, d double, u u32 */
static const char *const lib_sigs[] = { "pliidduupl" "llll", "plidduupl" "llll", "ppilllllllllll", "pppilllllllllll", "pppillllpi", "ppppiiilllpi", "ppiillpi", "ppllll", "plid" };

/* a launch: the function and a copy of its argument values */
typedef struct { int func; unsigned char args[260][8]; } fk_launch;

#define A(k, T) (*(T *)L->args[k])
static void run_launch(const fk_launch *L) {
    const fk_func *f = &funcs[L->func];
    launches++;
    if (f->fn) {
        void *bufs[64];
        for (int i = 0; i < f->nparam; i++) bufs[i] = A(i, void *);
        f->fn(bufs, 0, A(f->nparam, int64_t));
        return;
    }
    switch (f->lib - 1) {
    case 0: jm_dev_rng(A(0, void *), A(1, int64_t), A(2, int32_t), A(3, int32_t), A(4, double), A(5, double), A(6, uint32_t), A(7, uint32_t), A(8, const uint32_t *), A(9, uint64_t),
                       A(10, int64_t), A(11, int64_t), A(12, int64_t), A(13, int64_t)); break;
    case 1: jm_dev_rng_normal(A(0, void *), A(1, int64_t), A(2, int32_t), A(3, double), A(4, double), A(5, uint32_t), A(6, uint32_t), A(7, const uint32_t *), A(8, uint64_t),
                              A(9, int64_t), A(10, int64_t), A(11, int64_t), A(12, int64_t)); break;
    case 2: jm_dev_pool(A(0, float *), A(1, const float *), A(2, int32_t), A(3, int64_t), A(4, int64_t), A(5, int64_t), A(6, int64_t), A(7, int64_t), A(8, int64_t), A(9, int64_t), A(10, int64_t), A(11, int64_t), A(12, int64_t), A(13, int64_t)); break;
    case 3: jm_dev_pool_bwd(A(0, float *), A(1, const float *), A(2, const float *), A(3, int32_t), A(4, int64_t), A(5, int64_t), A(6, int64_t), A(7, int64_t), A(8, int64_t), A(9, int64_t), A(10, int64_t), A(11, int64_t), A(12, int64_t), A(13, int64_t), A(14, int64_t)); break;
    case 4: jm_dev_gather(A(0, char *), A(1, const char *), A(2, const void *), A(3, int32_t), A(4, int64_t), A(5, int64_t), A(6, int64_t), A(7, int64_t), A(8, jm_dev_err *), A(9, int32_t)); break;
    case 5: jm_dev_scatter(A(0, void *), A(1, const void *), A(2, const void *), A(3, const void *), A(4, int32_t), A(5, int32_t), A(6, int32_t), A(7, int64_t), A(8, int64_t), A(9, int64_t), A(10, jm_dev_err *), A(11, int32_t)); break;
    case 6: jm_dev_onehot(A(0, void *), A(1, const void *), A(2, int32_t), A(3, int32_t), A(4, int64_t), A(5, int64_t), A(6, jm_dev_err *), A(7, int32_t)); break;
    case 7: jm_dev_concat_part(A(0, char *), A(1, const char *), A(2, int64_t), A(3, int64_t), A(4, int64_t), A(5, int64_t)); break;
    case 8: jm_dev_scale(A(0, void *), A(1, int64_t), A(2, int32_t), A(3, double)); break;
    }
}
#undef A

/* ---- streams, capture, graphs ------------------------------------------------------ */

typedef struct fk_op fk_op;
typedef void (*fk_thunk)(const void *args);
struct fk_op { int kind; fk_launch launch; fk_thunk thunk; unsigned char blob[256]; };   /* kind 0 launch, 1 thunk */
typedef struct { fk_op *ops; int n, cap; } fk_graph;
static fk_graph cap;

static void record(const fk_op *op) {
    if (cap.n == cap.cap) { cap.cap = cap.cap ? cap.cap * 2 : 256; cap.ops = realloc(cap.ops, sizeof(fk_op) * (size_t)cap.cap); }
    cap.ops[cap.n++] = *op;
}
/* an operation: recorded while capturing, else done now */
static void submit(const fk_op *op) {
    if (capturing) { record(op); return; }
    if (op->kind == 0) run_launch(&op->launch);
    else op->thunk(op->blob);
}

#define EXPORT __attribute__((visibility("default")))
EXPORT CUresult cuInit(unsigned int f) { (void)f; return OK; }
EXPORT CUresult cuDriverGetVersion(int *v) { *v = 13000; return OK; }
EXPORT CUresult cuDeviceGetCount(int *n) { *n = 1; return OK; }
EXPORT CUresult cuDeviceGet(int *d, int i) { *d = i; return i == 0 ? OK : E_INVALID; }
EXPORT CUresult cuDeviceGetName(char *name, int len, int d) { (void)d; snprintf(name, (size_t)len, "jemc fake GPU (the CPU)"); return OK; }
EXPORT CUresult cuDeviceGetAttribute(int *v, unsigned int a, int d) {
    (void)d;
    *v = a == 16 ? 4 : a == 75 ? 9 : a == 76 ? 0 : 0;
    return OK;
}
EXPORT CUresult cuDeviceTotalMem_v2(size_t *b, int d) { (void)d; *b = (size_t)1 << 34; return OK; }
static int ctx_dummy;
EXPORT CUresult cuDevicePrimaryCtxRetain(void **c, int d) { (void)d; *c = &ctx_dummy; return OK; }
EXPORT CUresult cuDevicePrimaryCtxRelease_v2(int d) { (void)d; return OK; }
EXPORT CUresult cuCtxSetCurrent(void *c) { (void)c; return OK; }
EXPORT CUresult cuCtxSynchronize(void) { return forbidden_in_capture() ? E_CAPTURE : OK; }
static long live_allocs;
EXPORT CUresult cuMemAlloc_v2(CUdeviceptr *p, size_t b) {
    if (forbidden_in_capture()) return E_CAPTURE;     /* the runtime promises no allocation inside a graph */
    void *m = NULL;
    if (posix_memalign(&m, 256, b ? b : 1) != 0) return 2;
    memset(m, 0xA5, b);                  /* device memory starts as garbage: a read before a write shows */
    *p = (CUdeviceptr)(uintptr_t)m;
    live_allocs++;
    return OK;
}
EXPORT CUresult cuMemFree_v2(CUdeviceptr p) {
    if (forbidden_in_capture()) return E_CAPTURE;
    free((void *)(uintptr_t)p);
    live_allocs--;
    return OK;
}
EXPORT long fake_cuda_live_allocs(void) { return live_allocs; }
EXPORT CUresult cuMemGetInfo_v2(size_t *f, size_t *t) { *f = *t = (size_t)1 << 34; return OK; }
EXPORT CUresult cuMemcpyHtoD_v2(CUdeviceptr d, const void *s, size_t n) { if (forbidden_in_capture()) return E_CAPTURE; memcpy((void *)(uintptr_t)d, s, n); return OK; }
EXPORT CUresult cuMemcpyDtoH_v2(void *d, CUdeviceptr s, size_t n) { if (forbidden_in_capture()) return E_CAPTURE; memcpy(d, (void *)(uintptr_t)s, n); return OK; }
EXPORT CUresult cuMemcpyHtoDAsync_v2(CUdeviceptr d, const void *s, size_t n, void *st) { (void)st; return cuMemcpyHtoD_v2(d, s, n); }
EXPORT CUresult cuMemcpyDtoHAsync_v2(void *d, CUdeviceptr s, size_t n, void *st) { (void)st; return cuMemcpyDtoH_v2(d, s, n); }
typedef struct { CUdeviceptr d, s; size_t n; } fk_copy;
static void do_copy(const void *a) { const fk_copy *c = a; memmove((void *)(uintptr_t)c->d, (void *)(uintptr_t)c->s, c->n); }
EXPORT CUresult cuMemcpyDtoDAsync_v2(CUdeviceptr d, CUdeviceptr s, size_t n, void *st) {
    (void)st;
    fk_op op = { .kind = 1, .thunk = do_copy };
    fk_copy c = { d, s, n };
    memcpy(op.blob, &c, sizeof c);
    submit(&op);
    return OK;
}
typedef struct { CUdeviceptr d; unsigned char v; size_t n; } fk_set;
static void do_set(const void *a) { const fk_set *c = a; memset((void *)(uintptr_t)c->d, c->v, c->n); }
EXPORT CUresult cuMemsetD8Async(CUdeviceptr d, unsigned char v, size_t n, void *st) {
    (void)st;
    fk_op op = { .kind = 1, .thunk = do_set };
    fk_set c = { d, v, n };
    memcpy(op.blob, &c, sizeof c);
    submit(&op);
    return OK;
}
EXPORT CUresult cuMemAllocHost_v2(void **p, size_t b) { *p = malloc(b ? b : 1); return *p ? OK : 2; }
EXPORT CUresult cuMemFreeHost(void *p) { free(p); return OK; }
static int mod_dummy;
/* A jemc executable's fused kernels: its CPU code for the kernel of the same
   name (found with dlsym: t_train links the executable with -rdynamic), with
   as many buffers as the PTX entry has parameters less one (the count n). */
static void register_from_ptx(const char *ptx) {
    for (const char *e = ptx; (e = strstr(e, ".entry ")); ) {
        e += 7;
        const char *paren = strchr(e, '(');
        if (!paren || paren - e >= 127) break;
        char name[128];
        memcpy(name, e, (size_t)(paren - e));
        name[paren - e] = 0;
        const char *close = strchr(paren, ')');
        int np = 0;
        for (const char *q = paren; q && q < close && (q = strstr(q, ".param")) && q < close; q += 6) np++;
        jk_fn fn = (jk_fn)dlsym(RTLD_DEFAULT, name);
        int known = 0;
        for (int i = 0; i < nfuncs; i++) known |= strcmp(funcs[i].name, name) == 0;
        if (fn && !known && np > 0 && strncmp(name, "jk_", 3) == 0) fake_cuda_register(name, fn, np - 1);
        e = close ? close : e;
    }
}
/* the JIT's error log: written into the caller's buffer, its size option set
   to the bytes written (the option is in/out, as the driver's is) */
static void jit_log(unsigned int n, unsigned int *o, void **v, const char *text) {
    char *buf = NULL;
    unsigned int size_at = n;
    for (unsigned int i = 0; i < n; i++) {
        if (o[i] == 5) buf = v[i];
        if (o[i] == 6) size_at = i;
    }
    if (size_at == n) return;
    size_t room = (size_t)(uintptr_t)v[size_at], len = strlen(text);
    if (buf && room > 0) {
        size_t k = len < room - 1 ? len : room - 1;
        memcpy(buf, text, k);
        buf[k] = 0;
        len = k;
    } else {
        len = 0;
    }
    v[size_at] = (void *)(uintptr_t)len;
}
EXPORT CUresult cuModuleLoadDataEx(void **m, const void *image, unsigned int n, unsigned int *o, void **v) {
    /* PTX text; a cubin (ELF) cannot be read here (nothing to log), and the runtime falls back to the PTX */
    const char *s = image;
    if (memcmp(s, "\177ELF", 4) == 0) { jit_log(n, o, v, ""); return 209; }    /* CUDA_ERROR_NO_BINARY_FOR_GPU */
    if (!(strstr(s, ".version") && strstr(s, ".target"))) { jit_log(n, o, v, "ptxas fatal   : not a PTX module"); return 218; }   /* INVALID_PTX */
    /* a module the test damaged on purpose: ptxas's message for it */
    if (strstr(s, "jemc-test-bad-ptx")) { jit_log(n, o, v, "ptxas application ptx input, line 3; error   : Unknown symbol 'jemc-test-bad-ptx'"); return 218; }
    jit_log(n, o, v, "");
    register_from_ptx(s);
    *m = &mod_dummy;
    return OK;
}
EXPORT CUresult cuModuleGetFunction(void **f, void *m, const char *name) {
    (void)m;
    for (int i = 0; i < nfuncs; i++) if (strcmp(funcs[i].name, name) == 0) { *f = &funcs[i]; return OK; }
    for (int k = 0; lib_names[k]; k++)
        if (strcmp(lib_names[k], name) == 0 && nfuncs < 4096) {
            snprintf(funcs[nfuncs].name, sizeof funcs[nfuncs].name, "%s", name);
            funcs[nfuncs].lib = k + 1;
            *f = &funcs[nfuncs++];
            return OK;
        }
    return E_NOT_FOUND;
}
EXPORT CUresult cuModuleUnload(void *m) { (void)m; return OK; }
EXPORT CUresult cuLaunchKernel(void *fp, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz,
                               unsigned shmem, void *st, void **params, void **extra) {
    (void)gy; (void)gz; (void)by; (void)bz; (void)shmem; (void)st; (void)extra;
    if (gx == 0 || bx == 0 || bx > 1024) return E_INVALID;
    fk_func *f = fp;
    fk_op op = { .kind = 0 };
    op.launch.func = (int)(f - funcs);
    int np = f->fn ? f->nparam + 1 : (int)strlen(lib_sigs[f->lib - 1]);
    if (np > 260) return E_INVALID;
    for (int i = 0; i < np; i++) {
        char c = f->fn ? (i < f->nparam ? 'p' : 'l') : lib_sigs[f->lib - 1][i];
        size_t sz = c == 'i' || c == 'u' ? 4 : 8;
        memcpy(op.launch.args[i], params[i], sz);
    }
    submit(&op);
    return OK;
}
static int stream_dummy;
EXPORT CUresult cuStreamCreate(void **s, unsigned int f) { (void)f; *s = &stream_dummy; return OK; }
EXPORT CUresult cuStreamDestroy_v2(void *s) { (void)s; return OK; }
/* the stand-in's work is done when it is enqueued: a stream is always idle
   (querying a stream under capture is an error, as the driver says) */
EXPORT CUresult cuStreamQuery(void *s) { (void)s; return forbidden_in_capture() ? E_CAPTURE : OK; }
EXPORT CUresult cuStreamSynchronize(void *s) {
    (void)s;
    if (forbidden_in_capture()) return E_CAPTURE;
    return env_int("FAKE_CUDA_SYNC_FAIL", 0) ? E_LAUNCH_FAILED : OK;
}
EXPORT CUresult cuStreamBeginCapture_v2(void *s, unsigned int mode) {
    (void)s; (void)mode;
    if (capturing) return E_CAPTURE;
    capturing = 1;
    capture_broken = 0;
    cap.n = 0;
    return OK;
}
EXPORT CUresult cuStreamEndCapture(void *s, void **g) {
    (void)s;
    if (!capturing) return E_CAPTURE;
    capturing = 0;
    if (capture_broken) { *g = NULL; return E_CAPTURE_INVALIDATED; }
    fk_graph *gr = malloc(sizeof *gr);
    gr->n = gr->cap = cap.n;
    gr->ops = malloc(sizeof(fk_op) * (size_t)(cap.n + 1));
    memcpy(gr->ops, cap.ops, sizeof(fk_op) * (size_t)cap.n);
    *g = gr;
    return OK;
}
EXPORT CUresult cuGraphInstantiateWithFlags(void **e, void *g, unsigned long long f) {
    (void)f;
    if (env_int("FAKE_CUDA_FAIL_INSTANTIATE", 0)) return E_INVALID;
    fk_graph *src = g, *gr = malloc(sizeof *gr);
    gr->n = gr->cap = src->n;
    gr->ops = malloc(sizeof(fk_op) * (size_t)(src->n + 1));
    memcpy(gr->ops, src->ops, sizeof(fk_op) * (size_t)src->n);
    *e = gr;
    return OK;
}
EXPORT CUresult cuGraphLaunch(void *e, void *s) {
    (void)s;
    fk_graph *gr = e;
    replays++;
    for (int i = 0; i < gr->n; i++) {
        if (gr->ops[i].kind == 0) run_launch(&gr->ops[i].launch);
        else gr->ops[i].thunk(gr->ops[i].blob);
    }
    return OK;
}
EXPORT CUresult cuGraphExecDestroy(void *e) { fk_graph *g = e; free(g->ops); free(g); return OK; }
EXPORT CUresult cuGraphDestroy(void *e) { return cuGraphExecDestroy(e); }
EXPORT CUresult cuGetErrorName(CUresult e, const char **s) {
    *s = e == 0 ? "CUDA_SUCCESS" : e == E_NOT_FOUND ? "CUDA_ERROR_NOT_FOUND" : e == E_CAPTURE ? "CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED"
       : e == E_CAPTURE_INVALIDATED ? "CUDA_ERROR_STREAM_CAPTURE_INVALIDATED" : e == 209 ? "CUDA_ERROR_NO_BINARY_FOR_GPU"
       : e == 218 ? "CUDA_ERROR_INVALID_PTX" : e == E_LAUNCH_FAILED ? "CUDA_ERROR_LAUNCH_FAILED" : "CUDA_ERROR_INVALID_VALUE";
    return OK;
}
EXPORT CUresult cuGetErrorString(CUresult e, const char **s) { (void)e; *s = "fake driver"; return OK; }

/* ---- cuBLAS: column-major C = op(A) op(B), batched with strides ---------------------- */

typedef struct { int ta, tb, m, n, k, lda, ldb, ldc, batch; float alpha, beta; const float *A, *B; float *C; long long sA, sB, sC; } fk_gemm;
static void do_gemm(const void *p) {
    const fk_gemm *g = p;
    for (int b = 0; b < g->batch; b++) {
        const float *A = g->A + b * g->sA, *B = g->B + b * g->sB;
        float *C = g->C + b * g->sC;
        for (int j = 0; j < g->n; j++)
            for (int i = 0; i < g->m; i++) {
                double s = 0;
                for (int l = 0; l < g->k; l++) {
                    float a = g->ta ? A[l + (long)i * g->lda] : A[i + (long)l * g->lda];
                    float bb = g->tb ? B[j + (long)l * g->ldb] : B[l + (long)j * g->ldb];
                    s += (double)a * bb;
                }
                C[i + (long)j * g->ldc] = (float)(g->alpha * s + (g->beta != 0 ? g->beta * C[i + (long)j * g->ldc] : 0));
            }
    }
}
/* CUBLAS_STATUS_NOT_INITIALIZED 1, NOT_SUPPORTED 15 */
static int blas_dummy, blas_warm;
static unsigned int blas_math = 99;
EXPORT unsigned int cublasCreate_v2(void **h) {
    if (forbidden_in_capture()) return 15;
    const char *broken = getenv("FAKE_CUDA_CUBLAS_BROKEN");
    Dl_info me;
    if (broken && *broken && dladdr((void *)cublasCreate_v2, &me) && me.dli_fname && strstr(me.dli_fname, broken)) return 1;
    *h = &blas_dummy;
    blas_warm = 0;
    return 0;
}
EXPORT unsigned int cublasDestroy_v2(void *h) { (void)h; return forbidden_in_capture() ? 15 : 0; }
EXPORT unsigned int cublasSetStream_v2(void *h, void *s) { (void)h; (void)s; return forbidden_in_capture() ? 15 : 0; }
EXPORT unsigned int cublasSetMathMode(void *h, unsigned int m) { (void)h; if (forbidden_in_capture()) return 15; blas_math = m; return 0; }
EXPORT unsigned int cublasSetWorkspace_v2(void *h, void *w, size_t b) { (void)h; (void)w; (void)b; return forbidden_in_capture() ? 15 : 0; }
/* the math mode the runtime last set (99: none) */
EXPORT unsigned int fake_cuda_blas_math(void) { return blas_math; }
EXPORT unsigned int cublasSgemmStridedBatched(void *h, unsigned int ta, unsigned int tb, int m, int n, int k, const float *alpha,
                                              const float *A, int lda, long long sA, const float *B, int ldb, long long sB,
                                              const float *beta, float *C, int ldc, long long sC, int batch) {
    (void)h;
    /* cuBLAS's argument rules (CUBLAS_STATUS_INVALID_VALUE = 7) */
    if (m < 0 || n < 0 || k < 0 || ldc < (m > 1 ? m : 1) || lda < ((ta ? k : m) > 1 ? (ta ? k : m) : 1) ||
        ldb < ((tb ? n : k) > 1 ? (tb ? n : k) : 1)) return 7;
    /* the first product on a handle sets cuBLAS up: not while capturing */
    if (!blas_warm && forbidden_in_capture()) return 15;
    if (!capturing) blas_warm = 1;
    fk_gemm g = { (int)ta, (int)tb, m, n, k, lda, ldb, ldc, batch, *alpha, *beta, A, B, C, sA, sB, sC };
    fk_op op = { .kind = 1, .thunk = do_gemm };
    memcpy(op.blob, &g, sizeof g);
    submit(&op);
    return 0;
}

/* ---- cuDNN: NCHW cross-correlation with groups, stride, pad, dilation ---------------- */

/* cuDNN 9's status codes: BAD_PARAM 2000, NOT_SUPPORTED 3000, EXECUTION_FAILED 5000 */
enum { DNN_BAD_PARAM = 2000, DNN_NOT_SUPPORTED = 3000, DNN_EXEC_FAILED = 5000 };
typedef struct { int n, c, h, w; } fk_t4;
/* math: the math type set now; query_math: the one its algorithms were queried
   with; warm: the algorithms that have run on it (bit per algorithm) */
typedef struct { int ph, pw, sh, sw, dh, dw, groups; unsigned int math, query_math, warm; } fk_conv;
static int dnn_dummy;
static long live_descs, algo_uses[8];
EXPORT size_t cudnnGetVersion(void) { return 90000; }
EXPORT const char *cudnnGetErrorString(unsigned int s) {
    return s == 0 ? "CUDNN_STATUS_SUCCESS" : s == DNN_NOT_SUPPORTED ? "CUDNN_STATUS_NOT_SUPPORTED (fake)"
         : s == DNN_EXEC_FAILED ? "CUDNN_STATUS_EXECUTION_FAILED (fake)" : "CUDNN_STATUS_BAD_PARAM (fake)";
}
EXPORT unsigned int cudnnCreate(void **h) { if (forbidden_in_capture()) return DNN_NOT_SUPPORTED; *h = &dnn_dummy; return 0; }
EXPORT unsigned int cudnnDestroy(void *h) { (void)h; return 0; }
EXPORT unsigned int cudnnSetStream(void *h, void *s) { (void)h; (void)s; return forbidden_in_capture() ? DNN_NOT_SUPPORTED : 0; }
/* descriptors: counted, so that t_cuda sees every one destroyed */
static unsigned int new_desc(void **d, size_t bytes) {
    if (forbidden_in_capture()) return DNN_NOT_SUPPORTED;
    *d = calloc(1, bytes);
    live_descs++;
    return 0;
}
static unsigned int free_desc(void *d) { if (d) live_descs--; free(d); return 0; }
EXPORT long fake_cuda_live_descs(void) { return live_descs; }
/* how many convolutions ran with algorithm a */
EXPORT long fake_cuda_algo_uses(int a) { return a >= 0 && a < 8 ? algo_uses[a] : 0; }
EXPORT unsigned int cudnnCreateTensorDescriptor(void **d) { return new_desc(d, sizeof(fk_t4)); }
EXPORT unsigned int cudnnSetTensor4dDescriptor(void *d, unsigned int f, unsigned int t, int n, int c, int h, int w) {
    if (forbidden_in_capture()) return DNN_NOT_SUPPORTED;
    if (f != 0 || t != 0 || n < 1 || c < 1 || h < 1 || w < 1) return 3;
    *(fk_t4 *)d = (fk_t4){ n, c, h, w };
    return 0;
}
EXPORT unsigned int cudnnDestroyTensorDescriptor(void *d) { return free_desc(d); }
EXPORT unsigned int cudnnCreateFilterDescriptor(void **d) { return new_desc(d, sizeof(fk_t4)); }
EXPORT unsigned int cudnnSetFilter4dDescriptor(void *d, unsigned int t, unsigned int f, int k, int c, int h, int w) {
    if (forbidden_in_capture()) return DNN_NOT_SUPPORTED;
    if (f != 0 || t != 0 || k < 1 || c < 1 || h < 1 || w < 1) return 3;
    *(fk_t4 *)d = (fk_t4){ k, c, h, w };
    return 0;
}
EXPORT unsigned int cudnnDestroyFilterDescriptor(void *d) { return free_desc(d); }
EXPORT unsigned int cudnnCreateConvolutionDescriptor(void **d) {
    unsigned int s = new_desc(d, sizeof(fk_conv));
    if (!s) ((fk_conv *)*d)->groups = 1;
    return s;
}
EXPORT unsigned int cudnnSetConvolution2dDescriptor(void *d, int ph, int pw, int sh, int sw, int dh, int dw, unsigned int mode, unsigned int t) {
    if (forbidden_in_capture()) return DNN_NOT_SUPPORTED;
    if (mode != 1 || t != 0 || sh < 1 || sw < 1 || dh < 1 || dw < 1 || ph < 0 || pw < 0) return 3;
    fk_conv *c = d;
    c->ph = ph; c->pw = pw; c->sh = sh; c->sw = sw; c->dh = dh; c->dw = dw;
    return 0;
}
EXPORT unsigned int cudnnSetConvolutionGroupCount(void *d, int g) {
    if (forbidden_in_capture()) return DNN_NOT_SUPPORTED;
    if (g < 1) return 3;
    ((fk_conv *)d)->groups = g;
    return 0;
}
EXPORT unsigned int cudnnSetConvolutionMathType(void *d, unsigned int m) {
    if (forbidden_in_capture()) return DNN_NOT_SUPPORTED;
    if (m > 3) return DNN_BAD_PARAM;
    ((fk_conv *)d)->math = m;
    return 0;
}
EXPORT unsigned int cudnnDestroyConvolutionDescriptor(void *d) { return free_desc(d); }

/* shapes must agree as cuDNN checks them (CUDNN_STATUS_BAD_PARAM = 3) */
static int conv_ok(const fk_t4 *x, const fk_t4 *w, const fk_conv *c, const fk_t4 *y) {
    int oh = (x->h + 2 * c->ph - c->dh * (w->h - 1) - 1) / c->sh + 1, ow = (x->w + 2 * c->pw - c->dw * (w->w - 1) - 1) / c->sw + 1;
    return x->n == y->n && w->n == y->c && x->c == w->c * c->groups && y->h == oh && y->w == ow && w->n % c->groups == 0;
}
typedef struct { unsigned int algo, status; float time; size_t memory; unsigned int det, math; int reserved[3]; } fk_perf;
/* the algorithms every query offers, cuDNN's best first: 6 (non-deterministic,
   1 MiB), 1 (deterministic, 8 KiB; tensor-core math under DEFAULT_MATH), 0
   (deterministic, 4 KiB). algo_math: the math type a query with the descriptor
   at `math` reports for algorithm a. */
static const unsigned int fk_algos[3] = { 6, 1, 0 };
static size_t algo_ws(unsigned int a) { return a == 6 ? (size_t)1 << 20 : a == 1 ? 8192 : a == 0 ? 4096 : 0; }
static unsigned int algo_math(unsigned int a, unsigned int math) { return a == 1 && math == 0 ? 1 : math; }
static long queries;
EXPORT long fake_cuda_queries(void) { return queries; }
static unsigned int algos(void *c, int want, int *got, void *perf) {
    if (forbidden_in_capture()) return DNN_NOT_SUPPORTED;
    if (++queries == env_int("FAKE_CUDA_ALGO_QUERY_FAIL", 0)) return DNN_NOT_SUPPORTED;
    fk_conv *cv = c;
    cv->query_math = cv->math;
    int n = want < 3 ? want : 3;
    for (int i = 0; i < n; i++) {
        fk_perf p = { fk_algos[i], 0, (float)(i + 1), algo_ws(fk_algos[i]), fk_algos[i] != 6, algo_math(fk_algos[i], cv->math), { 0 } };
        memcpy((char *)perf + i * sizeof p, &p, sizeof p);
    }
    *got = n;
    return 0;
}
EXPORT unsigned int cudnnGetConvolutionForwardAlgorithm_v7(void *h, void *x, void *w, void *c, void *y, int want, int *got, void *perf) {
    (void)h; return conv_ok(x, w, c, y) ? algos(c, want, got, perf) : 3;
}
EXPORT unsigned int cudnnGetConvolutionBackwardDataAlgorithm_v7(void *h, void *w, void *dy, void *c, void *dx, int want, int *got, void *perf) {
    (void)h; return conv_ok(dx, w, c, dy) ? algos(c, want, got, perf) : 3;
}
EXPORT unsigned int cudnnGetConvolutionBackwardFilterAlgorithm_v7(void *h, void *x, void *dy, void *c, void *dw, int want, int *got, void *perf) {
    (void)h; return conv_ok(x, dw, c, dy) ? algos(c, want, got, perf) : 3;
}
static unsigned int ws_size(unsigned int a, size_t *b) {
    if (forbidden_in_capture()) return DNN_NOT_SUPPORTED;
    if (!algo_ws(a)) return DNN_BAD_PARAM;
    *b = algo_ws(a);
    return 0;
}
EXPORT unsigned int cudnnGetConvolutionForwardWorkspaceSize(void *h, void *x, void *w, void *c, void *y, unsigned int a, size_t *b) { (void)h; (void)x; (void)w; (void)c; (void)y; return ws_size(a, b); }
EXPORT unsigned int cudnnGetConvolutionBackwardDataWorkspaceSize(void *h, void *w, void *dy, void *c, void *dx, unsigned int a, size_t *b) { (void)h; (void)w; (void)dy; (void)c; (void)dx; return ws_size(a, b); }
EXPORT unsigned int cudnnGetConvolutionBackwardFilterWorkspaceSize(void *h, void *x, void *dy, void *c, void *dw, unsigned int a, size_t *b) { (void)h; (void)x; (void)dy; (void)c; (void)dw; return ws_size(a, b); }

/* kind 0 forward y = x * w; 1 data dx from dy, w; 2 filter dw from x, dy */
typedef struct { int kind; fk_t4 x, w, y; fk_conv c; float *X, *W, *Y; size_t ws; } fk_dnn;
static void do_conv(const void *p) {
    const fk_dnn *d = p;
    const fk_t4 *x = &d->x, *w = &d->w, *y = &d->y;
    const fk_conv *c = &d->c;
    int cpg = w->c, opg = y->c / c->groups;
    size_t nx = (size_t)x->n * x->c * x->h * x->w, nw = (size_t)w->n * w->c * w->h * w->w, ny = (size_t)y->n * y->c * y->h * y->w;
    double *acc = calloc(d->kind == 0 ? ny : d->kind == 1 ? nx : nw, sizeof(double));
    for (int n = 0; n < y->n; n++)
        for (int o = 0; o < y->c; o++)
            for (int oy = 0; oy < y->h; oy++)
                for (int ox = 0; ox < y->w; ox++) {
                    size_t yi = (((size_t)n * y->c + o) * y->h + oy) * y->w + ox;
                    int g = o / opg;
                    for (int ci = 0; ci < cpg; ci++)
                        for (int ky = 0; ky < w->h; ky++)
                            for (int kx = 0; kx < w->w; kx++) {
                                int iy = oy * c->sh - c->ph + ky * c->dh, ix = ox * c->sw - c->pw + kx * c->dw;
                                if (iy < 0 || iy >= x->h || ix < 0 || ix >= x->w) continue;
                                size_t xi = (((size_t)n * x->c + g * cpg + ci) * x->h + iy) * x->w + ix;
                                size_t wi = (((size_t)o * w->c + ci) * w->h + ky) * w->w + kx;
                                if (d->kind == 0) acc[yi] += (double)d->X[xi] * d->W[wi];
                                else if (d->kind == 1) acc[xi] += (double)d->Y[yi] * d->W[wi];
                                else acc[wi] += (double)d->X[xi] * d->Y[yi];
                            }
                }
    float *dst = d->kind == 0 ? d->Y : d->kind == 1 ? d->X : d->W;
    size_t nd = d->kind == 0 ? ny : d->kind == 1 ? nx : nw;
    for (size_t i = 0; i < nd; i++) dst[i] = (float)acc[i];
    free(acc);
}
static unsigned int conv_submit(int kind, void *xd, void *X, void *wd, void *W, void *cd, void *yd, void *Y, const float *alpha,
                                const float *beta, unsigned int algo, size_t wsb) {
    fk_conv *cv = cd;
    if (*alpha != 1 || *beta != 0) return 3;    /* the runtime always overwrites */
    if (!conv_ok(xd, wd, cd, yd)) return 3;
    if (!algo_ws(algo)) return DNN_BAD_PARAM;   /* not an algorithm the query offered */
    if (wsb < algo_ws(algo)) return DNN_BAD_PARAM;   /* a workspace smaller than the algorithm needs */
    if (cv->math != algo_math(algo, cv->query_math)) return DNN_BAD_PARAM;   /* not the math type its query reported */
    if ((int)algo == env_int("FAKE_CUDA_CONV_FAIL_ALGO", -1)) return DNN_EXEC_FAILED;
    /* an algorithm's first run on a descriptor sets it up: not while capturing */
    if (!(cv->warm & (1u << algo)) && forbidden_in_capture()) return DNN_NOT_SUPPORTED;
    if (!capturing) cv->warm |= 1u << algo;
    algo_uses[algo]++;
    fk_dnn d = { kind, *(fk_t4 *)xd, *(fk_t4 *)wd, *(fk_t4 *)yd, *(fk_conv *)cd, X, W, Y, wsb };
    fk_op op = { .kind = 1, .thunk = do_conv };
    memcpy(op.blob, &d, sizeof d);
    submit(&op);
    return 0;
}
EXPORT unsigned int cudnnConvolutionForward(void *h, const void *alpha, void *xd, const void *x, void *wd, const void *w, void *cd,
                                            unsigned int algo, void *ws, size_t wsb, const void *beta, void *yd, void *y) {
    (void)h; (void)ws;
    return conv_submit(0, xd, (void *)x, wd, (void *)w, cd, yd, y, alpha, beta, algo, wsb);
}
EXPORT unsigned int cudnnConvolutionBackwardData(void *h, const void *alpha, void *wd, const void *w, void *dyd, const void *dy, void *cd,
                                                 unsigned int algo, void *ws, size_t wsb, const void *beta, void *dxd, void *dx) {
    (void)h; (void)ws;
    return conv_submit(1, dxd, dx, wd, (void *)w, cd, dyd, (void *)dy, alpha, beta, algo, wsb);
}
EXPORT unsigned int cudnnConvolutionBackwardFilter(void *h, const void *alpha, void *xd, const void *x, void *dyd, const void *dy, void *cd,
                                                   unsigned int algo, void *ws, size_t wsb, const void *beta, void *dwd, void *dw) {
    (void)h; (void)ws;
    return conv_submit(2, xd, (void *)x, dwd, dw, cd, dyd, (void *)dy, alpha, beta, algo, wsb);
}
