/* rt_cuda_lib.c — the GPU runtime's library steps (rt_cuda.h): matrix products
 * through cuBLAS, convolutions through cuDNN, the other LIB operations through
 * dev_lib.c's kernels, extern calls on the host. */
#include "rt_cuda_int.h"
#include "engine/rt_extern.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *const jm_gpu_lib_names[JM_GPU_LIB_N] = {
    "jm_dev_rng", "jm_dev_rng_normal", "jm_dev_pool", "jm_dev_pool_bwd", "jm_dev_gather", "jm_dev_scatter",
    "jm_dev_onehot", "jm_dev_concat_part", "jm_dev_scale"
};

static int jm_table_has(const jm_table *t, int op0, int op1) {
    for (int p = 0; p < t->nprograms; p++)
        for (int s = 0; s < t->programs[p].nsteps; s++) {
            const jm_step *st = &t->programs[p].steps[s];
            if (st->kind == JM_STEP_LIB && st->op >= op0 && st->op <= op1) return 1;
        }
    return 0;
}

static int jm_dnn_fail(jm_rt *rt, jm_cudnnStatus s, const char *what, const jm_step *st) {
    const char *m = jm_gpu_of(rt)->api.cudnnGetErrorString ? jm_gpu_of(rt)->api.cudnnGetErrorString(s) : "?";
    snprintf(rt->err, sizeof rt->err, "GPU: cuDNN %s failed: %s (%s)", what, m, st && st->where ? st->where : "");
    return -1;
}

static int jm_blas_fail(jm_rt *rt, jm_cublasStatus s, const char *what) {
    char buf[80];
    snprintf(rt->err, sizeof rt->err, "GPU: cuBLAS %s failed: %s (%s)", what, jm_cublas_errstr(s, buf, sizeof buf), jm_gpu_of(rt)->api.cublas_path);
    return -1;
}

/* cuBLAS's workspace: given up front, so that a captured graph allocates nothing */
#define JM_GPU_CUBLAS_WS (32 << 20)

/* A cuBLAS handle; when the loaded cuBLAS does not start (libcublas.so.13 on a
   driver too old for it, say), the next one found (.12, .11) with a note. */
static int jm_gpu_cublas_create(jm_rt *rt) {
    jm_gpu *g = jm_gpu_of(rt);
    char tried[700] = "";       /* "FILE: STATUS; " of each that failed */
    for (;;) {
        jm_cublasStatus s = g->api.cublasCreate_v2(&g->cublas);
        if (!s) return 0;
        g->cublas = NULL;
        char buf[80], why[300];
        size_t k = strlen(tried);
        snprintf(tried + k, sizeof tried - k, "%s%s: %s", k ? "; " : "", g->api.cublas_path, jm_cublas_errstr(s, buf, sizeof buf));
        if (jm_cuda_api_next_cublas(&g->api, why, sizeof why) != 0) {
            snprintf(rt->err, sizeof rt->err, "GPU: cuBLAS did not start (%.700s); %.250s", tried, why);
            return -1;
        }
        fprintf(stderr, "jemc runtime: note: cuBLAS did not start (%s); trying %s\n", tried, g->api.cublas_path);
    }
}

int jm_gpu_libs_open(jm_rt *rt) {
    jm_gpu *g = jm_gpu_of(rt);
    int need_blas = jm_table_has(rt->t, JM_LIB_MATMUL, JM_LIB_MATMUL);
    int need_dnn = jm_table_has(rt->t, JM_LIB_CONV_FWD, JM_LIB_CONV_BWD_FILTER);
    if (jm_cuda_api_load_libs(&g->api, need_blas, need_dnn, rt->err, sizeof rt->err) != 0) return -1;
    if (need_blas) {
        if (jm_gpu_cublas_create(rt) != 0) return -1;
        jm_CUresult r = g->api.cuMemAlloc_v2(&g->ws, JM_GPU_CUBLAS_WS);
        if (r) return jm_gpu_fail(rt, r, "no room for cuBLAS's workspace");
        g->ws_bytes = JM_GPU_CUBLAS_WS;
        /* fp32: CUBLAS_DEFAULT_MATH, as PyTorch's float32 (allow_tf32 off) uses;
           PEDANTIC would also forbid the reduced-precision tricks cuBLAS uses
           inside fp32 and skew a comparison with PyTorch */
        jm_cublasStatus s;
        if ((s = g->api.cublasSetStream_v2(g->cublas, g->stream)) ||
            (s = g->api.cublasSetWorkspace_v2(g->cublas, (void *)(uintptr_t)g->ws, g->ws_bytes)) ||
            (s = g->api.cublasSetMathMode(g->cublas, g->tf32 ? JM_CUBLAS_TF32_TENSOR_OP_MATH : JM_CUBLAS_DEFAULT_MATH)))
            return jm_blas_fail(rt, s, "setup");
    }
    if (need_dnn) {
        jm_cudnnStatus s = g->api.cudnnCreate(&g->cudnn);
        if (!s) s = g->api.cudnnSetStream(g->cudnn, g->stream);
        if (s) return jm_dnn_fail(rt, s, "setup", NULL);
    }
    return 0;
}

void jm_gpu_libs_close(jm_rt *rt) {
    jm_gpu *g = jm_gpu_of(rt);
    if (g->cublas) g->api.cublasDestroy_v2(g->cublas);
    if (g->cudnn) g->api.cudnnDestroy(g->cudnn);
    g->cublas = NULL;
    g->cudnn = NULL;
}

void jm_gpu_prog_free(jm_rt *rt, jm_gpu_prog *gp) {
    jm_gpu *g = jm_gpu_of(rt);
    if (gp->graph) g->api.cuGraphExecDestroy(gp->graph);
    free(gp->key);
    if (gp->conv)
        for (int s = 0; s < gp->nsteps_conv; s++) {
            jm_gpu_conv *c = &gp->conv[s];
            if (c->x) g->api.cudnnDestroyTensorDescriptor(c->x);
            if (c->y) g->api.cudnnDestroyTensorDescriptor(c->y);
            if (c->w) g->api.cudnnDestroyFilterDescriptor(c->w);
            if (c->c) g->api.cudnnDestroyConvolutionDescriptor(c->c);
        }
    free(gp->conv);
    memset(gp, 0, sizeof *gp);
}

/* Puts algorithm k of c in use: its math type on the descriptor (the one its
   query reported: under CUDNN_DEFAULT_MATH a tensor-core algorithm reports
   CUDNN_TENSOR_OP_MATH and must run so) and the workspace it needs for it
   (cudnnGet*WorkspaceSize, which may differ from the query's figure). */
static jm_cudnnStatus jm_gpu_conv_use(jm_rt *rt, const jm_step *st, jm_gpu_conv *c, int k) {
    jm_gpu *g = jm_gpu_of(rt);
    jm_cudnnStatus s = g->api.cudnnSetConvolutionMathType(c->c, c->maths[k]);
    if (s) return s;
    size_t ws = 0;
    if (st->op == JM_LIB_CONV_FWD)
        s = g->api.cudnnGetConvolutionForwardWorkspaceSize(g->cudnn, c->x, c->w, c->c, c->y, c->algos[k], &ws);
    else if (st->op == JM_LIB_CONV_BWD_DATA)
        s = g->api.cudnnGetConvolutionBackwardDataWorkspaceSize(g->cudnn, c->w, c->y, c->c, c->x, c->algos[k], &ws);
    else
        s = g->api.cudnnGetConvolutionBackwardFilterWorkspaceSize(g->cudnn, c->x, c->y, c->c, c->w, c->algos[k], &ws);
    if (s) return s;
    c->pick = k;
    c->ws = ws;
    return 0;
}

/* The first usable algorithm from k on (its workspace at most limit, when limit
   is not 0); -1 with rt->err when none is. */
static int jm_gpu_conv_pick(jm_rt *rt, const jm_step *st, jm_gpu_conv *c, int k, size_t limit) {
    jm_cudnnStatus last = 0;
    for (; k < c->nalgo; k++) {
        jm_cudnnStatus s = jm_gpu_conv_use(rt, st, c, k);
        if (!s && (!limit || c->ws <= limit)) return 0;
        if (s) last = s;
    }
    if (last) return jm_dnn_fail(rt, last, "algorithm setup (no algorithm left)", st);
    snprintf(rt->err, sizeof rt->err, "GPU: no cuDNN algorithm fits in %.1f MiB of workspace (%s)", limit / 1048576.0, st->where ? st->where : "");
    return -1;
}

/* The descriptors of a convolution step (iat: N,C,H,W, O,KH,KW, OH,OW, stride,
   pad, dilation, groups) and its algorithms: cuDNN's heuristic choices that
   are usable, in its order (PyTorch's default takes the first), deterministic
   ones first when results must be bitwise (g->deterministic: a resumed run
   must equal a straight one); in fp32 mode none with tensor-core math. */
static int jm_gpu_conv_prepare(jm_rt *rt, const jm_step *st, jm_gpu_conv *c) {
    jm_gpu *g = jm_gpu_of(rt);
    const int64_t *a = st->iat;
    int N = (int)a[0], C = (int)a[1], H = (int)a[2], W = (int)a[3], O = (int)a[4], KH = (int)a[5], KW = (int)a[6];
    int OH = (int)a[7], OW = (int)a[8], groups = (int)a[15];
    jm_cudnnStatus s;
    if ((s = g->api.cudnnCreateTensorDescriptor(&c->x)) || (s = g->api.cudnnCreateTensorDescriptor(&c->y)) ||
        (s = g->api.cudnnCreateFilterDescriptor(&c->w)) || (s = g->api.cudnnCreateConvolutionDescriptor(&c->c)) ||
        (s = g->api.cudnnSetTensor4dDescriptor(c->x, JM_CUDNN_TENSOR_NCHW, JM_CUDNN_DATA_FLOAT, N, C, H, W)) ||
        (s = g->api.cudnnSetTensor4dDescriptor(c->y, JM_CUDNN_TENSOR_NCHW, JM_CUDNN_DATA_FLOAT, N, O, OH, OW)) ||
        (s = g->api.cudnnSetFilter4dDescriptor(c->w, JM_CUDNN_DATA_FLOAT, JM_CUDNN_TENSOR_NCHW, O, C / (groups > 0 ? groups : 1), KH, KW)) ||
        (s = g->api.cudnnSetConvolution2dDescriptor(c->c, (int)a[11], (int)a[12], (int)a[9], (int)a[10], (int)a[13], (int)a[14],
                                                     JM_CUDNN_CROSS_CORRELATION, JM_CUDNN_DATA_FLOAT)) ||
        (s = g->api.cudnnSetConvolutionGroupCount(c->c, groups > 0 ? groups : 1)) ||
        (s = g->api.cudnnSetConvolutionMathType(c->c, g->tf32 ? JM_CUDNN_DEFAULT_MATH : JM_CUDNN_FMA_MATH)))
        return jm_dnn_fail(rt, s, "descriptor setup", st);
    jm_cudnnAlgoPerf perf[JM_GPU_MAX_ALGOS];
    int got = 0;
    if (st->op == JM_LIB_CONV_FWD)
        s = g->api.cudnnGetConvolutionForwardAlgorithm_v7(g->cudnn, c->x, c->w, c->c, c->y, JM_GPU_MAX_ALGOS, &got, (void *)perf);
    else if (st->op == JM_LIB_CONV_BWD_DATA)
        s = g->api.cudnnGetConvolutionBackwardDataAlgorithm_v7(g->cudnn, c->w, c->y, c->c, c->x, JM_GPU_MAX_ALGOS, &got, (void *)perf);
    else
        s = g->api.cudnnGetConvolutionBackwardFilterAlgorithm_v7(g->cudnn, c->x, c->y, c->c, c->w, JM_GPU_MAX_ALGOS, &got, (void *)perf);
    if (s) return jm_dnn_fail(rt, s, "algorithm choice", st);
    c->nalgo = 0;
    /* pass 0: the deterministic ones (all of them when determinism is not asked for); pass 1: the rest */
    for (int pass = 0; pass < 2; pass++)
        for (int k = 0; k < got && k < JM_GPU_MAX_ALGOS; k++) {
            int det = perf[k].determinism == JM_CUDNN_DETERMINISTIC || !g->deterministic;
            if (perf[k].status != 0 || det != (pass == 0)) continue;
            if (!g->tf32 && perf[k].mathType != JM_CUDNN_FMA_MATH && perf[k].mathType != JM_CUDNN_DEFAULT_MATH) continue;
            c->algos[c->nalgo] = perf[k].algo;
            c->maths[c->nalgo++] = perf[k].mathType;
        }
    if (c->nalgo == 0) return jm_dnn_fail(rt, 0, "algorithm choice (none usable)", st);
    return jm_gpu_conv_pick(rt, st, c, 0, 0);
}

int jm_gpu_ws_reserve(jm_rt *rt, size_t bytes) {
    jm_gpu *g = jm_gpu_of(rt);
    if (bytes <= g->ws_bytes) return 0;
    /* a larger workspace moves it: graphs captured with the old one are dropped */
    for (int q = 0; q < rt->t->nprograms; q++)
        if (g->progs[q].graph) { g->api.cuGraphExecDestroy(g->progs[q].graph); g->progs[q].graph = NULL; }
    jm_CUresult r = g->api.cuStreamSynchronize(g->stream);
    if (r) return jm_gpu_fail(rt, r, "before growing the workspace");
    if (g->ws) g->api.cuMemFree_v2(g->ws);
    g->ws = 0;
    g->ws_bytes = 0;
    if ((r = g->api.cuMemAlloc_v2(&g->ws, bytes))) return jm_gpu_fail(rt, r, "no room for %.1f MiB of workspace", bytes / 1048576.0);
    g->ws_bytes = bytes;
    jm_cublasStatus bs;
    if (g->cublas && (bs = g->api.cublasSetWorkspace_v2(g->cublas, (void *)(uintptr_t)g->ws, g->ws_bytes))) return jm_blas_fail(rt, bs, "workspace");
    return 0;
}

/* p's descriptors, algorithms and workspace; the trip-count key of its graphs. */
static int jm_gpu_prepare_steps(jm_rt *rt, int p) {
    jm_gpu *g = jm_gpu_of(rt);
    jm_gpu_prog *gp = &g->progs[p];
    const jm_tprogram *pr = &rt->t->programs[p];
    gp->graphable = 1;
    gp->conv = calloc((size_t)pr->nsteps + 1, sizeof *gp->conv);
    gp->nsteps_conv = pr->nsteps;
    int nkey = 0;
    for (int s = 0; s < pr->nsteps; s++) nkey += pr->steps[s].kind == JM_STEP_LOOP && pr->steps[s].nint >= 1;
    gp->key = calloc(2 * (size_t)nkey + 1, sizeof *gp->key);      /* the captured key, then room for the current one */
    gp->nkey = nkey;
    if (!gp->conv || !gp->key) { snprintf(rt->err, sizeof rt->err, "out of memory"); return -1; }
    size_t ws = 0;
    for (int s = 0; s < pr->nsteps; s++) {
        const jm_step *st = &pr->steps[s];
        if (st->kind != JM_STEP_LIB) continue;
        if (st->op == JM_LIB_EXTERN) gp->graphable = 0;     /* the host takes part */
        if (st->op == JM_LIB_MATMUL && (st->iat[1] > 2147483647 || st->iat[2] > 2147483647 || st->iat[3] > 2147483647)) {
            snprintf(rt->err, sizeof rt->err, "GPU: a matrix product larger than cuBLAS's int sizes (%s)", st->where ? st->where : "");
            return -1;
        }
        if (st->op >= JM_LIB_CONV_FWD && st->op <= JM_LIB_CONV_BWD_FILTER) {
            if (jm_gpu_conv_prepare(rt, st, &gp->conv[s]) != 0) return -1;
            if (gp->conv[s].ws > ws) ws = gp->conv[s].ws;
        }
        int need = -1;
        if (st->op >= JM_LIB_RNG_UNIFORM && st->op <= JM_LIB_RNG_BERNOULLI) need = st->op == JM_LIB_RNG_NORMAL ? JM_GPU_RNG_NORMAL : JM_GPU_RNG;
        if (st->op == JM_LIB_AVGPOOL || st->op == JM_LIB_MAXPOOL) need = JM_GPU_POOL;
        if (st->op == JM_LIB_AVGPOOL_BWD || st->op == JM_LIB_MAXPOOL_BWD) need = JM_GPU_POOL_BWD;
        if (st->op == JM_LIB_GATHER) need = JM_GPU_GATHER;
        if (st->op == JM_LIB_SCATTER || st->op == JM_LIB_INDEX_ADD) need = JM_GPU_SCATTER;
        if (st->op == JM_LIB_ONEHOT) need = JM_GPU_ONEHOT;
        if (st->op == JM_LIB_CONCAT) need = JM_GPU_CONCAT;
        if (need >= 0 && !g->lib[need]) {
            snprintf(rt->err, sizeof rt->err, "damaged executable: its GPU module lacks %s", jm_gpu_lib_names[need]);
            return -1;
        }
    }
    if (jm_gpu_ws_reserve(rt, ws) == 0) return 0;
    /* no room for the preferred algorithms' workspace: the workspace as it is,
       and for each convolution the first algorithm that fits in it */
    char first[600];
    snprintf(first, sizeof first, "%.590s", rt->err);
    if (jm_gpu_ws_reserve(rt, JM_GPU_CUBLAS_WS) != 0) return -1;
    for (int s = 0; s < pr->nsteps; s++) {
        jm_gpu_conv *c = &gp->conv[s];
        if (c->nalgo > 0 && c->ws > g->ws_bytes && jm_gpu_conv_pick(rt, &pr->steps[s], c, 0, g->ws_bytes) != 0) {
            size_t k = strlen(rt->err);
            snprintf(rt->err + k, sizeof rt->err - k, " (after: %.300s)", first);
            return -1;
        }
    }
    fprintf(stderr, "jemc runtime: note: %s; %s uses convolution algorithms that fit in %.1f MiB\n", first, pr->name, g->ws_bytes / 1048576.0);
    return 0;
}

int jm_gpu_prepare(jm_rt *rt, int p) {
    jm_gpu_prog *gp = &jm_gpu_of(rt)->progs[p];
    if (gp->prepared) return 0;
    /* a failed preparation leaves nothing behind: the next run starts afresh */
    if (jm_gpu_prepare_steps(rt, p) != 0) { jm_gpu_prog_free(rt, gp); return -1; }
    gp->prepared = 1;
    return 0;
}

/* Runs a convolution step with its algorithm. When the algorithm fails (and the
   stream is not being captured, where nothing runs yet), the next one is tried
   with a note, growing the workspace if it needs more. */
static int jm_gpu_conv_run(jm_rt *rt, int p, int s, const jm_CUdeviceptr *b) {
    jm_gpu *g = jm_gpu_of(rt);
    const jm_step *st = &rt->t->programs[p].steps[s];
    jm_gpu_conv *c = &g->progs[p].conv[s];
    float one = 1, zero = 0;
    for (;;) {
        void *ws = (void *)(uintptr_t)g->ws;
        unsigned int algo = c->algos[c->pick];
        jm_cudnnStatus ds;
        if (st->op == JM_LIB_CONV_FWD)
            ds = g->api.cudnnConvolutionForward(g->cudnn, &one, c->x, (void *)(uintptr_t)b[1], c->w, (void *)(uintptr_t)b[2], c->c, algo,
                                                ws, g->ws_bytes, &zero, c->y, (void *)(uintptr_t)b[0]);
        else if (st->op == JM_LIB_CONV_BWD_DATA)
            ds = g->api.cudnnConvolutionBackwardData(g->cudnn, &one, c->w, (void *)(uintptr_t)b[2], c->y, (void *)(uintptr_t)b[1], c->c,
                                                     algo, ws, g->ws_bytes, &zero, c->x, (void *)(uintptr_t)b[0]);
        else
            ds = g->api.cudnnConvolutionBackwardFilter(g->cudnn, &one, c->x, (void *)(uintptr_t)b[1], c->y, (void *)(uintptr_t)b[2], c->c,
                                                       algo, ws, g->ws_bytes, &zero, c->w, (void *)(uintptr_t)b[0]);
        if (!ds) return 0;
        if (g->capturing || c->pick + 1 >= c->nalgo) return jm_dnn_fail(rt, ds, jm_lib_name(st->op), st);
        const char *m = g->api.cudnnGetErrorString ? g->api.cudnnGetErrorString(ds) : "?";
        if (jm_gpu_conv_pick(rt, st, c, c->pick + 1, 0) != 0 || jm_gpu_ws_reserve(rt, c->ws) != 0) return -1;
        fprintf(stderr, "jemc runtime: note: cuDNN algorithm %u failed for %s (%s: %s); using algorithm %u\n", algo,
                st->where && *st->where ? st->where : jm_lib_name(st->op), jm_lib_name(st->op), m, c->algos[c->pick]);
    }
}

/* an extern call on the host: the arguments come over, the result goes back */
static int jm_gpu_extern(jm_rt *rt, const jm_step *st) {
    jm_gpu *g = jm_gpu_of(rt);
    const jm_textern *x = &rt->t->externs[st->iat[0]];
    int nargs = st->nbuf - 1;
    void **host = calloc((size_t)st->nbuf + 1, sizeof(void *));
    int rc = -1;
    jm_CUresult r = g->api.cuStreamSynchronize(g->stream);
    if (!host) { snprintf(rt->err, sizeof rt->err, "out of memory"); goto done; }
    if (r) { jm_gpu_fail(rt, r, "before calling %s", x->name); goto done; }
    size_t out_bytes = (size_t)jm_rt_desc_numel(&x->ret) * jm_rt_dtype_size((int)st->iat[1]);
    if (!(host[0] = malloc(out_bytes + 16))) { snprintf(rt->err, sizeof rt->err, "out of memory"); goto done; }
    for (int i = 0; i < nargs; i++) {
        size_t b = (size_t)jm_rt_desc_numel(&x->params[i]) * jm_rt_dtype_size((int)st->iat[2 + i]);
        if (!(host[1 + i] = malloc(b + 16))) { snprintf(rt->err, sizeof rt->err, "out of memory"); goto done; }
        if ((r = g->api.cuMemcpyDtoH_v2(host[1 + i], jm_gpu_addr(g, st->buf[1 + i]), b))) { jm_gpu_fail(rt, r, "argument %d of %s", i + 1, x->name); goto done; }
    }
    char err[600];
    if (jm_xfn_call(rt->xfn[st->iat[0]], (const void *const *)(host + 1), st->iat + 2, host[0], (int)st->iat[1], err, sizeof err) != 0) {
        snprintf(rt->err, sizeof rt->err, "%s (%s)", err, st->where ? st->where : "");
        goto done;
    }
    /* on the program's stream, so the steps after it see the result (a pageable
       copy returns once staged; the stream orders it before later work) */
    if ((r = g->api.cuMemcpyHtoDAsync_v2(jm_gpu_addr(g, st->buf[0]), host[0], out_bytes, g->stream)) ||
        (r = g->api.cuStreamSynchronize(g->stream))) { jm_gpu_fail(rt, r, "the result of %s", x->name); goto done; }
    rc = 0;
done:
    if (host) for (int i = 0; i < st->nbuf; i++) free(host[i]);
    free(host);
    return rc;
}

#define P(v) ((void *)&(v))
int jm_gpu_lib_step(jm_rt *rt, int p, int s, uint32_t iteration) {
    jm_gpu *g = jm_gpu_of(rt);
    const jm_step *st = &rt->t->programs[p].steps[s];
    const int64_t *a = st->iat;
    jm_CUdeviceptr b[8] = { 0 };
    for (int i = 0; i < st->nbuf && i < 8; i++) b[i] = jm_gpu_addr(g, st->buf[i]);
    jm_CUdeviceptr err_word = g->words + JM_GPU_ERR_OFFSET, call_word = g->words;
    int32_t step = s, dt = st->dtype;
    const char *what = st->where && *st->where ? st->where : jm_lib_name(st->op);
    switch (st->op) {
    case JM_LIB_MATMUL: {
        /* row-major C[M,N] = op(A) op(B) is column-major C^T = op(B)^T op(A)^T: swap the operands */
        int M = (int)a[1], N = (int)a[2], K = (int)a[3], tA = (int)a[4], tB = (int)a[5];
        float one = 1, zero = 0;
        jm_cublasStatus bs = g->api.cublasSgemmStridedBatched(g->cublas, tB ? JM_CUBLAS_OP_T : JM_CUBLAS_OP_N, tA ? JM_CUBLAS_OP_T : JM_CUBLAS_OP_N,
            N, M, K, &one, (const float *)(uintptr_t)b[2], tB ? K : N, a[7], (const float *)(uintptr_t)b[1], tA ? M : K, a[6],
            &zero, (float *)(uintptr_t)b[0], N, (long long)M * N, (int)a[0]);
        if (bs) {
            char buf[80];
            snprintf(rt->err, sizeof rt->err, "GPU: cuBLAS matrix product failed: %s (%s)", jm_cublas_errstr(bs, buf, sizeof buf), what);
            return -1;
        }
        return 0;
    }
    case JM_LIB_CONV_FWD: case JM_LIB_CONV_BWD_DATA: case JM_LIB_CONV_BWD_FILTER: {
        if (jm_gpu_conv_run(rt, p, s, b) != 0) return -1;
        if (st->op == JM_LIB_CONV_FWD && st->epi >= 0) {
            /* the fused elementwise epilogue, over every image at once */
            jm_CUdeviceptr eb[256];
            void *params[258];
            int ne = st->nbuf - 3;
            int64_t n = a[0] * st->epi_items;
            if (ne > 256) { snprintf(rt->err, sizeof rt->err, "an epilogue with %d buffers", ne); return -1; }
            for (int i = 0; i < ne; i++) { eb[i] = jm_gpu_addr(g, st->buf[3 + i]); params[i] = &eb[i]; }
            params[ne] = &n;
            return jm_gpu_launch(rt, g->kfn[st->epi], n * g->kscale[st->epi], params, rt->t->kernels[st->epi]);
        }
        return 0;
    }
    case JM_LIB_AVGPOOL: case JM_LIB_MAXPOOL: {
        int32_t op = st->op == JM_LIB_MAXPOOL;
        int64_t v[11];
        memcpy(v, a, sizeof v);
        void *params[] = { P(b[0]), P(b[1]), P(op), P(v[0]), P(v[1]), P(v[2]), P(v[3]), P(v[4]), P(v[5]), P(v[6]), P(v[7]), P(v[8]), P(v[9]), P(v[10]) };
        return jm_gpu_launch(rt, g->lib[JM_GPU_POOL], v[0] * v[3] * v[4], params, what);
    }
    case JM_LIB_AVGPOOL_BWD: case JM_LIB_MAXPOOL_BWD: {
        /* buffers: dx, dy (average) or dx, x, dy (max) */
        int32_t op = st->op == JM_LIB_MAXPOOL_BWD;
        jm_CUdeviceptr dy = op ? b[2] : b[1], x = op ? b[1] : 0;
        int64_t v[11];
        memcpy(v, a, sizeof v);
        void *params[] = { P(b[0]), P(dy), P(x), P(op), P(v[0]), P(v[1]), P(v[2]), P(v[3]), P(v[4]), P(v[5]), P(v[6]), P(v[7]), P(v[8]), P(v[9]), P(v[10]) };
        return jm_gpu_launch(rt, g->lib[JM_GPU_POOL_BWD], v[0] * v[1] * v[2], params, what);
    }
    case JM_LIB_RNG_UNIFORM: case JM_LIB_RNG_RANDINT: case JM_LIB_RNG_BERNOULLI: case JM_LIB_RNG_NORMAL: {
        int64_t n = a[0];
        uint32_t stream = (uint32_t)a[1];
        double lo = st->fat[0], hi = st->fat[1];
        uint64_t seed = rt->seed;
        /* a per-example draw of a data-parallel shard (iat[2..4]): numbered by
           the global example, as engine/rt_cpu.c numbers it */
        int per = st->nint > 4 && a[2] > 0 && rt->dp_nshards > 1 && a[3] > 0 && a[4] > 0;
        int64_t S = per ? rt->dp_nshards : 1, B = per ? a[3] : 1, in = per ? a[4] : 1, shard = per ? rt->shard : 0;
        if (st->op == JM_LIB_RNG_NORMAL) {
            void *params[] = { P(b[0]), P(n), P(dt), P(lo), P(hi), P(iteration), P(stream), P(call_word), P(seed), P(S), P(B), P(in), P(shard) };
            return jm_gpu_launch(rt, g->lib[JM_GPU_RNG_NORMAL], n, params, what);
        }
        int32_t op = st->op == JM_LIB_RNG_UNIFORM ? 0 : st->op == JM_LIB_RNG_RANDINT ? 1 : 2;
        void *params[] = { P(b[0]), P(n), P(op), P(dt), P(lo), P(hi), P(iteration), P(stream), P(call_word), P(seed), P(S), P(B), P(in), P(shard) };
        return jm_gpu_launch(rt, g->lib[JM_GPU_RNG], n, params, what);
    }
    case JM_LIB_GATHER: {
        int64_t rows = a[0], row = a[1], k = a[2], esz = (int64_t)jm_rt_dtype_size(dt);
        int32_t idt = (int32_t)a[3];
        void *params[] = { P(b[0]), P(b[1]), P(b[2]), P(idt), P(rows), P(row), P(k), P(esz), P(err_word), P(step) };
        return jm_gpu_launch(rt, g->lib[JM_GPU_GATHER], k * row * esz, params, what);
    }
    case JM_LIB_SCATTER: case JM_LIB_INDEX_ADD: {
        int64_t rows = a[0], row = a[1], k = a[2];
        int32_t idt = (int32_t)a[3], op = st->op == JM_LIB_INDEX_ADD;
        if (st->op == JM_LIB_SCATTER && st->nint > 4 && a[4] >= 0 && rt->dp_nshards > 1 && rt->dp_rows) {
            /* the rows of every shard in shard order (rt_dp.c gathered them;
               jm_gpu_dp_rows put them on the device): the first scatter copies
               the source, the next write over its result */
            jm_CUdeviceptr base = g->dp_rows + (jm_CUdeviceptr)g->dp_rows_off[a[4]];
            int64_t one = k * (int64_t)jm_rt_dtype_size(idt) + k * row * (int64_t)jm_rt_dtype_size(dt);
            for (int sh = 0; sh < rt->dp_nshards; sh++) {
                jm_CUdeviceptr ix = base + (jm_CUdeviceptr)(sh * one), rw = ix + (jm_CUdeviceptr)(k * (int64_t)jm_rt_dtype_size(idt));
                jm_CUdeviceptr from = sh == 0 ? b[1] : b[0];
                void *params[] = { P(b[0]), P(from), P(ix), P(rw), P(op), P(dt), P(idt), P(rows), P(row), P(k), P(err_word), P(step) };
                if (jm_gpu_launch(rt, g->lib[JM_GPU_SCATTER], row, params, what) != 0) return -1;
            }
            return 0;
        }
        void *params[] = { P(b[0]), P(b[1]), P(b[2]), P(b[3]), P(op), P(dt), P(idt), P(rows), P(row), P(k), P(err_word), P(step) };
        return jm_gpu_launch(rt, g->lib[JM_GPU_SCATTER], row, params, what);
    }
    case JM_LIB_ONEHOT: {
        int64_t M = a[0], C = a[1];
        int32_t ldt = (int32_t)a[2];
        void *params[] = { P(b[0]), P(b[1]), P(ldt), P(dt), P(M), P(C), P(err_word), P(step) };
        return jm_gpu_launch(rt, g->lib[JM_GPU_ONEHOT], M * C, params, what);
    }
    case JM_LIB_CONCAT: {
        int64_t outer = a[0], total = 0, off = 0;
        for (int i = 1; i < st->nbuf; i++) total += a[i];
        jm_CUdeviceptr out = jm_gpu_addr(g, st->buf[0]);
        for (int i = 1; i < st->nbuf; i++) {
            jm_CUdeviceptr src = jm_gpu_addr(g, st->buf[i]);
            int64_t len = a[i];
            void *params[] = { P(out), P(src), P(outer), P(total), P(off), P(len) };
            if (jm_gpu_launch(rt, g->lib[JM_GPU_CONCAT], outer * len, params, what) != 0) return -1;
            off += len;
        }
        return 0;
    }
    case JM_LIB_EXTERN:
        return jm_gpu_extern(rt, st);
    default:
        snprintf(rt->err, sizeof rt->err, "GPU: no GPU version of runtime operation %s (%s)", jm_lib_name(st->op), what);
        return -1;
    }
}
