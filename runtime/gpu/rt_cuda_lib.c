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
    "jm_dev_onehot", "jm_dev_concat_part"
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

/* cuBLAS's workspace: given up front, so that a captured graph allocates nothing */
#define JM_GPU_CUBLAS_WS (32 << 20)

int jm_gpu_libs_open(jm_rt *rt) {
    jm_gpu *g = jm_gpu_of(rt);
    int need_blas = jm_table_has(rt->t, JM_LIB_MATMUL, JM_LIB_MATMUL);
    int need_dnn = jm_table_has(rt->t, JM_LIB_CONV_FWD, JM_LIB_CONV_BWD_FILTER);
    if (jm_cuda_api_load_libs(&g->api, need_blas, need_dnn, rt->err, sizeof rt->err) != 0) return -1;
    if (need_blas) {
        jm_cublasStatus s = g->api.cublasCreate_v2(&g->cublas);
        if (s) { snprintf(rt->err, sizeof rt->err, "GPU: cuBLAS did not start (status %u)", s); return -1; }
        jm_CUresult r = g->api.cuMemAlloc_v2(&g->ws, JM_GPU_CUBLAS_WS);
        if (r) return jm_gpu_fail(rt, r, "no room for cuBLAS's workspace");
        g->ws_bytes = JM_GPU_CUBLAS_WS;
        if ((s = g->api.cublasSetStream_v2(g->cublas, g->stream)) ||
            (s = g->api.cublasSetWorkspace_v2(g->cublas, (void *)(uintptr_t)g->ws, g->ws_bytes)) ||
            (s = g->api.cublasSetMathMode(g->cublas, g->tf32 ? JM_CUBLAS_TF32_TENSOR_OP_MATH : JM_CUBLAS_PEDANTIC_MATH))) {
            snprintf(rt->err, sizeof rt->err, "GPU: cuBLAS setup failed (status %u)", s);
            return -1;
        }
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

/* the descriptors of a convolution step (iat: N,C,H,W, O,KH,KW, OH,OW, stride, pad, dilation, groups);
   its algorithm: cuDNN's first heuristic choice that fits, as PyTorch's default does */
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
    jm_cudnnAlgoPerf perf[16];
    int got = 0;
    if (st->op == JM_LIB_CONV_FWD)
        s = g->api.cudnnGetConvolutionForwardAlgorithm_v7(g->cudnn, c->x, c->w, c->c, c->y, 16, &got, (void *)perf);
    else if (st->op == JM_LIB_CONV_BWD_DATA)
        s = g->api.cudnnGetConvolutionBackwardDataAlgorithm_v7(g->cudnn, c->w, c->y, c->c, c->x, 16, &got, (void *)perf);
    else
        s = g->api.cudnnGetConvolutionBackwardFilterAlgorithm_v7(g->cudnn, c->x, c->y, c->c, c->w, 16, &got, (void *)perf);
    if (s) return jm_dnn_fail(rt, s, "algorithm choice", st);
    int k = 0;
    while (k < got && perf[k].status != 0) k++;
    if (k == got) return jm_dnn_fail(rt, 0, "algorithm choice (none usable)", st);
    c->algo = perf[k].algo;
    c->ws = perf[k].memory;
    return 0;
}

int jm_gpu_prepare(jm_rt *rt, int p) {
    jm_gpu *g = jm_gpu_of(rt);
    jm_gpu_prog *gp = &g->progs[p];
    if (gp->prepared) return 0;
    const jm_tprogram *pr = &rt->t->programs[p];
    gp->graphable = 1;
    gp->conv = calloc((size_t)pr->nsteps + 1, sizeof *gp->conv);
    gp->nsteps_conv = pr->nsteps;
    if (!gp->conv) { snprintf(rt->err, sizeof rt->err, "out of memory"); return -1; }
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
    if (ws > g->ws_bytes) {
        /* a larger workspace moves it: graphs captured with the old one are dropped */
        for (int q = 0; q < rt->t->nprograms; q++)
            if (g->progs[q].graph) { g->api.cuGraphExecDestroy(g->progs[q].graph); g->progs[q].graph = NULL; }
        g->api.cuStreamSynchronize(g->stream);
        if (g->ws) g->api.cuMemFree_v2(g->ws);
        g->ws = 0;
        g->ws_bytes = 0;
        jm_CUresult r = g->api.cuMemAlloc_v2(&g->ws, ws);
        if (r) return jm_gpu_fail(rt, r, "no room for %.1f MiB of convolution workspace", ws / 1048576.0);
        g->ws_bytes = ws;
        if (g->cublas && g->api.cublasSetWorkspace_v2(g->cublas, (void *)(uintptr_t)g->ws, g->ws_bytes)) {
            snprintf(rt->err, sizeof rt->err, "GPU: cuBLAS refused its workspace");
            return -1;
        }
    }
    gp->prepared = 1;
    return 0;
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
        if (bs) { snprintf(rt->err, sizeof rt->err, "GPU: cuBLAS matrix product failed (status %u) (%s)", bs, what); return -1; }
        return 0;
    }
    case JM_LIB_CONV_FWD: case JM_LIB_CONV_BWD_DATA: case JM_LIB_CONV_BWD_FILTER: {
        jm_gpu_conv *c = &g->progs[p].conv[s];
        float one = 1, zero = 0;
        void *ws = (void *)(uintptr_t)g->ws;
        jm_cudnnStatus ds;
        if (st->op == JM_LIB_CONV_FWD)
            ds = g->api.cudnnConvolutionForward(g->cudnn, &one, c->x, (void *)(uintptr_t)b[1], c->w, (void *)(uintptr_t)b[2], c->c, c->algo,
                                                ws, g->ws_bytes, &zero, c->y, (void *)(uintptr_t)b[0]);
        else if (st->op == JM_LIB_CONV_BWD_DATA)
            ds = g->api.cudnnConvolutionBackwardData(g->cudnn, &one, c->w, (void *)(uintptr_t)b[2], c->y, (void *)(uintptr_t)b[1], c->c,
                                                     c->algo, ws, g->ws_bytes, &zero, c->x, (void *)(uintptr_t)b[0]);
        else
            ds = g->api.cudnnConvolutionBackwardFilter(g->cudnn, &one, c->x, (void *)(uintptr_t)b[1], c->y, (void *)(uintptr_t)b[2], c->c,
                                                       c->algo, ws, g->ws_bytes, &zero, c->w, (void *)(uintptr_t)b[0]);
        if (ds) return jm_dnn_fail(rt, ds, jm_lib_name(st->op), st);
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
        if (st->op == JM_LIB_RNG_NORMAL) {
            void *params[] = { P(b[0]), P(n), P(dt), P(lo), P(hi), P(iteration), P(stream), P(call_word), P(seed) };
            return jm_gpu_launch(rt, g->lib[JM_GPU_RNG_NORMAL], n, params, what);
        }
        int32_t op = st->op == JM_LIB_RNG_UNIFORM ? 0 : st->op == JM_LIB_RNG_RANDINT ? 1 : 2;
        void *params[] = { P(b[0]), P(n), P(op), P(dt), P(lo), P(hi), P(iteration), P(stream), P(call_word), P(seed) };
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
