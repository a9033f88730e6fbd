/* rt_cuda.c — see rt_cuda.h: the CUDA device's operations (rt_device.h):
 * attaching a GPU, device memory, the host copy of the state, and running a
 * program (eagerly, or captured as a CUDA graph and replayed). The library
 * steps are in rt_cuda_lib.c. */
#include "rt_cuda_int.h"
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int jm_gpu_fail(jm_rt *rt, jm_CUresult r, const char *fmt, ...) {
    char what[512], buf[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    snprintf(rt->err, sizeof rt->err, "GPU: %s: %s", what, jm_cuda_errstr(&jm_gpu_of(rt)->api, r, buf, sizeof buf));
    return -1;
}

static const char *jm_gpu_describe(const jm_rt *rt) { return jm_gpu_of(rt) ? jm_gpu_of(rt)->desc : "no GPU"; }

static void jm_gpu_memory(const jm_rt *rt, double *mine, double *in_use) {
    const jm_gpu *g = jm_gpu_of(rt);
    *mine = *in_use = 0;
    if (!g) return;
    int64_t scratch = 64;
    for (int p = 0; p < rt->t->nprograms; p++) if (rt->t->programs[p].scratch_bytes > scratch) scratch = rt->t->programs[p].scratch_bytes;
    *mine = (double)rt->t->state_bytes + (double)scratch + (double)g->ws_bytes + 256;
    size_t fr = 0, tot = 0;
    if (g->api.cuMemGetInfo_v2(&fr, &tot) == JM_CUDA_SUCCESS) *in_use = (double)(tot - fr);
}

/* The kernel list: "name scale\n" per table kernel index. */
static int jm_gpu_kernels(jm_rt *rt, jm_gpu *g, const char *list) {
    int n = rt->t->nkernels;
    g->kfn = calloc((size_t)n + 1, sizeof *g->kfn);
    g->kscale = calloc((size_t)n + 1, sizeof *g->kscale);
    if (!g->kfn || !g->kscale) { snprintf(rt->err, sizeof rt->err, "out of memory"); return -1; }
    const char *p = list;
    for (int i = 0; i < n; i++) {
        char name[256];
        long long scale;
        int used = 0;
        if (!p || sscanf(p, "%255s %lld%n", name, &scale, &used) != 2 || scale < 1) {
            snprintf(rt->err, sizeof rt->err, "damaged executable: the GPU kernel list ends at kernel %d of %d", i, n);
            return -1;
        }
        p += used;
        while (*p == '\n') p++;
        jm_CUresult r = g->api.cuModuleGetFunction(&g->kfn[i], g->mod, name);
        if (r) return jm_gpu_fail(rt, r, "the GPU module has no kernel %s", name);
        g->kscale[i] = scale;
    }
    for (int k = 0; k < JM_GPU_LIB_N; k++) {
        /* a library kernel only exists when some step uses it (gpu_target.c) */
        if (g->api.cuModuleGetFunction(&g->lib[k], g->mod, jm_gpu_lib_names[k]) != JM_CUDA_SUCCESS) g->lib[k] = NULL;
    }
    return 0;
}

static int jm_gpu_load_module(jm_rt *rt, jm_gpu *g, const jm_gpu_image *img) {
    char log[8192] = "";
    unsigned int opts[2] = { JM_CU_JIT_ERROR_LOG_BUFFER, JM_CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES };
    void *vals[2] = { log, (void *)(uintptr_t)sizeof log };
    char want[16];
    snprintf(want, sizeof want, "sm_%d%d", g->cc_major, g->cc_minor);
    /* the cubin when it was made for this GPU; otherwise the driver compiles the PTX */
    if (img->cubin && img->cubin_len > 0 && img->arch && strcmp(img->arch, want) == 0) {
        if (g->api.cuModuleLoadDataEx(&g->mod, img->cubin, 2, opts, vals) == JM_CUDA_SUCCESS) return 0;
        fprintf(stderr, "jemc runtime: note: the embedded %s cubin did not load (%s); compiling the PTX instead\n", img->arch, log);
        log[0] = 0;
        /* the size option is in/out: the driver left the bytes it wrote there
           (often 0), which would be the PTX attempt's whole log buffer */
        vals[1] = (void *)(uintptr_t)sizeof log;
    }
    jm_CUresult r = g->api.cuModuleLoadDataEx(&g->mod, img->ptx, 2, opts, vals);
    if (r) {
        jm_gpu_fail(rt, r, "the driver cannot load this executable's PTX (built for %s; this GPU is %s)", img->arch, want);
        size_t k = strlen(rt->err);
        if (log[0] && k + 3 < sizeof rt->err) snprintf(rt->err + k, sizeof rt->err - k, ": %.400s", log);
        return -1;
    }
    return 0;
}

static void jm_gpu_detach(jm_rt *rt);
static int jm_gpu_attach(jm_rt *rt, const void *config) {
    const jm_gpu_image *img = config;
    const jm_table *t = rt->t;
    jm_gpu *g = calloc(1, sizeof *g);
    if (!g) { snprintf(rt->err, sizeof rt->err, "out of memory"); return -1; }
    rt->dev_data = g;
    if (jm_cuda_api_load_driver(&g->api, rt->err, sizeof rt->err) != 0) goto fail;
    jm_CUresult r;
    /* the ranks of a job on one machine take one GPU each (jm_gpu_image.ordinal
       = the local rank), round the visible ones */
    int count = 0, ordinal = 0;
    if (g->api.cuDeviceGetCount(&count) == 0 && count > 0 && img->ordinal > 0) ordinal = img->ordinal % count;
    if ((r = g->api.cuDeviceGet(&g->dev, ordinal)) || (r = g->api.cuDevicePrimaryCtxRetain(&g->ctx, g->dev)) ||
        (r = g->api.cuCtxSetCurrent(g->ctx))) { jm_gpu_fail(rt, r, "cannot open GPU %d", ordinal); goto fail; }
    g->have_ctx = 1;
    char name[200] = "?";
    int drv = 0;
    g->api.cuDeviceGetName(name, sizeof name, g->dev);
    g->api.cuDeviceGetAttribute(&g->sms, JM_CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT, g->dev);
    g->api.cuDeviceGetAttribute(&g->cc_major, JM_CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, g->dev);
    g->api.cuDeviceGetAttribute(&g->cc_minor, JM_CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, g->dev);
    g->api.cuDriverGetVersion(&drv);
    if (g->sms < 1) g->sms = 1;
    snprintf(g->desc, sizeof g->desc, "%s (sm_%d%d, %d SMs), driver %d.%d", name, g->cc_major, g->cc_minor, g->sms,
             drv / 1000, (drv % 1000) / 10);
    if ((r = g->api.cuStreamCreate(&g->stream, JM_CU_STREAM_NON_BLOCKING))) { jm_gpu_fail(rt, r, "cannot make a stream"); goto fail; }
    if (jm_gpu_load_module(rt, g, img) != 0 || jm_gpu_kernels(rt, g, img->kernels) != 0) goto fail;
    /* memory: the state, the largest scratch of any program, the counters */
    int64_t scratch = 64;
    for (int p = 0; p < t->nprograms; p++) if (t->programs[p].scratch_bytes > scratch) scratch = t->programs[p].scratch_bytes;
    if ((r = g->api.cuMemAlloc_v2(&g->state, (size_t)(t->state_bytes > 0 ? t->state_bytes : 64)))) {
        jm_gpu_fail(rt, r, "no room for the state (%.1f MiB) on %s", t->state_bytes / 1048576.0, g->desc);
        goto fail;
    }
    if ((r = g->api.cuMemAlloc_v2(&g->scratch, (size_t)scratch))) {
        jm_gpu_fail(rt, r, "no room for %.1f MiB of scratch on %s", scratch / 1048576.0, g->desc);
        goto fail;
    }
    if ((r = g->api.cuMemAlloc_v2(&g->words, 256))) { jm_gpu_fail(rt, r, "cannot allocate the run counters"); goto fail; }
    g->host_stale = calloc((size_t)t->nglobals + 1, 1);
    g->dev_stale = malloc((size_t)t->nglobals + 1);
    g->progs = calloc((size_t)t->nprograms + 1, sizeof *g->progs);
    if (!g->host_stale || !g->dev_stale || !g->progs) { snprintf(rt->err, sizeof rt->err, "out of memory"); goto fail; }
    /* the host copy (initialised or loaded) goes over before the first run */
    memset(g->dev_stale, 1, (size_t)t->nglobals + 1);
    /* JEMC_GPU_FP32=1 forces fp32 (the test suite compares against the CPU so) */
    g->tf32 = !(img->precision && strcmp(img->precision, "fp32") == 0) && !(getenv("JEMC_GPU_FP32") && *getenv("JEMC_GPU_FP32") == '1');
    /* JEMC_GPU_GRAPHS=0: no CUDA graphs (every program eager); JEMC_GPU_DETERMINISTIC=0:
       cuDNN's fastest algorithms even when not deterministic (resumes are then not bitwise) */
    const char *v = getenv("JEMC_GPU_GRAPHS");
    g->no_graphs = v && strcmp(v, "0") == 0;
    v = getenv("JEMC_GPU_DETERMINISTIC");
    g->deterministic = !(v && strcmp(v, "0") == 0);
    if (jm_gpu_libs_open(rt) != 0) goto fail;
    /* which cuBLAS and cuDNN were loaded (described with the GPU: `exec --repeat`, --out files) */
    size_t k = strlen(g->desc);
    if (g->cublas && k < sizeof g->desc) k += (size_t)snprintf(g->desc + k, sizeof g->desc - k, ", cuBLAS %s", g->api.cublas_path);
    if (g->cudnn && k < sizeof g->desc)
        snprintf(g->desc + k, sizeof g->desc - k, ", cuDNN %zu (%s)", g->api.cudnnGetVersion(), g->api.cudnn_path);
    return 0;
fail:
    jm_gpu_detach(rt);
    return -1;
}

static void jm_gpu_detach(jm_rt *rt) {
    jm_gpu *g = jm_gpu_of(rt);
    if (!g) return;
    /* the last work's errors (an asynchronous fault) are reported, not lost */
    if (g->stream && g->api.cuStreamSynchronize) {
        jm_CUresult r = g->api.cuStreamSynchronize(g->stream);
        char buf[256];
        if (r) fprintf(stderr, "jemc runtime: warning: the GPU reported an error when it was closed: %s\n", jm_cuda_errstr(&g->api, r, buf, sizeof buf));
    }
    if (g->progs) {
        for (int p = 0; p < rt->t->nprograms; p++) jm_gpu_prog_free(rt, &g->progs[p]);
        free(g->progs);
    }
    jm_gpu_libs_close(rt);
    if (g->api.cuMemFree_v2) {
        if (g->state) g->api.cuMemFree_v2(g->state);
        if (g->scratch) g->api.cuMemFree_v2(g->scratch);
        if (g->words) g->api.cuMemFree_v2(g->words);
        if (g->ws) g->api.cuMemFree_v2(g->ws);
        if (g->dp_rows) g->api.cuMemFree_v2(g->dp_rows);
    }
    if (g->mod) g->api.cuModuleUnload(g->mod);
    if (g->stream) g->api.cuStreamDestroy_v2(g->stream);
    if (g->have_ctx) g->api.cuDevicePrimaryCtxRelease_v2(g->dev);
    jm_cuda_api_unload(&g->api);
    free(g->kfn); free(g->kscale); free(g->host_stale); free(g->dev_stale); free(g->dp_rows_off);
    free(g);
    rt->dev_data = NULL;
}

/* ---- the host copy of the state -------------------------------------------------- */

static int64_t jm_global_bytes(const jm_table *t, int g) {
    return jm_rt_desc_numel(&t->globals[g].t) * (int64_t)jm_rt_dtype_size(t->globals[g].t.dtype);
}

static int jm_gpu_host_view(jm_rt *rt, int gi, int write) {
    jm_gpu *g = jm_gpu_of(rt);
    if (g->host_stale[gi]) {
        int64_t off = jm_ref_offset(rt->t->globals[gi].t.ref);
        jm_CUresult r = g->api.cuStreamSynchronize(g->stream);
        if (!r) r = g->api.cuMemcpyDtoH_v2(rt->state + off, g->state + (jm_CUdeviceptr)off, (size_t)jm_global_bytes(rt->t, gi));
        if (r) return jm_gpu_fail(rt, r, "cannot read %s back from the device", rt->t->globals[gi].t.name);
        g->host_stale[gi] = 0;
    }
    if (write) g->dev_stale[gi] = 1;
    return 0;
}

/* the host's newer globals go to the device */
static int jm_gpu_upload(jm_rt *rt) {
    jm_gpu *g = jm_gpu_of(rt);
    for (int gi = 0; gi < rt->t->nglobals; gi++) {
        if (!g->dev_stale[gi]) continue;
        int64_t off = jm_ref_offset(rt->t->globals[gi].t.ref);
        jm_CUresult r = g->api.cuMemcpyHtoDAsync_v2(g->state + (jm_CUdeviceptr)off, rt->state + off, (size_t)jm_global_bytes(rt->t, gi), g->stream);
        if (r) return jm_gpu_fail(rt, r, "cannot copy %s to the device", rt->t->globals[gi].t.name);
        g->dev_stale[gi] = 0;
    }
    return 0;
}

/* ---- running a program ----------------------------------------------------------- */

jm_CUdeviceptr jm_gpu_addr(const jm_gpu *g, jm_ref ref) {
    return (jm_ref_region(ref) == JM_REGION_STATE ? g->state : g->scratch) + (jm_CUdeviceptr)jm_ref_offset(ref);
}

/* A loop's trip count: the step's, or its knob's value (never below 0). The
   knob is the host's (knobs are only ever set by the host). */
int64_t jm_gpu_trips(jm_rt *rt, const jm_step *st) {
    if (st->nint < 1) return st->n;
    int64_t v = *(const int64_t *)(rt->state + jm_ref_offset(rt->t->globals[st->iat[0]].t.ref));
    return v > 0 ? v : 0;
}

/* launch shape for `total` items of a grid-stride kernel: 256 threads a block,
   at most 32 blocks per SM (the loop covers the rest) */
int jm_gpu_launch(jm_rt *rt, jm_CUfunction f, int64_t total, void **params, const char *what) {
    jm_gpu *g = jm_gpu_of(rt);
    if (total <= 0) return 0;
    int64_t blocks = (total + 255) / 256, cap = (int64_t)g->sms * 32;
    if (blocks > cap) blocks = cap;
    jm_CUresult r = g->api.cuLaunchKernel(f, (unsigned)blocks, 1, 1, 256, 1, 1, 0, g->stream, params, NULL);
    return r ? jm_gpu_fail(rt, r, "launching %s", what) : 0;
}

/* Issues steps [s0, s1) of program p on the stream (or into the graph being captured). */
int jm_gpu_issue(jm_rt *rt, int p, int s0, int s1, uint32_t iteration) {
    jm_gpu *g = jm_gpu_of(rt);
    const jm_tprogram *pr = &rt->t->programs[p];
    for (int s = s0; s < s1; s++) {
        const jm_step *st = &pr->steps[s];
        switch (st->kind) {
        case JM_STEP_KERNEL: {
            /* PTX kernels take at most 4 KiB of parameters: 256 buffers stay well inside */
            jm_CUdeviceptr a[256];
            void *params[258];
            int64_t n = st->n;
            if (st->nbuf > 256) { snprintf(rt->err, sizeof rt->err, "a kernel with %d buffers (at most 256 on the GPU)", st->nbuf); return -1; }
            for (int i = 0; i < st->nbuf; i++) { a[i] = jm_gpu_addr(g, st->buf[i]); params[i] = &a[i]; }
            params[st->nbuf] = &n;
            if (jm_gpu_launch(rt, g->kfn[st->op], n * g->kscale[st->op], params, rt->t->kernels[st->op]) != 0) return -1;
            break;
        }
        case JM_STEP_COPY: {
            jm_CUresult r = g->api.cuMemcpyDtoDAsync_v2(jm_gpu_addr(g, st->buf[0]), jm_gpu_addr(g, st->buf[1]), (size_t)st->n, g->stream);
            if (r) return jm_gpu_fail(rt, r, "copy (%s)", st->where ? st->where : "");
            break;
        }
        case JM_STEP_LOOP: {
            int64_t trips = jm_gpu_trips(rt, st);
            for (int64_t t = 0; t < trips; t++)
                if (jm_gpu_issue(rt, p, s + 1, s + 1 + st->body, (uint32_t)((uint64_t)iteration * (uint64_t)trips + (uint64_t)t)) != 0) return -1;
            s += st->body;
            break;
        }
        default:
            if (jm_gpu_lib_step(rt, p, s, iteration) != 0) return -1;
            break;
        }
    }
    return 0;
}

/* The trip counts of the program's knob-driven loops, which a captured graph is valid for. */
static void jm_gpu_trip_key(jm_rt *rt, int p, int64_t *key) {
    const jm_tprogram *pr = &rt->t->programs[p];
    int n = 0;
    for (int s = 0; s < pr->nsteps; s++)
        if (pr->steps[s].kind == JM_STEP_LOOP && pr->steps[s].nint >= 1) key[n++] = jm_gpu_trips(rt, &pr->steps[s]);
}

/* Captures program p's steps as a CUDA graph and instantiates it. */
static int jm_gpu_capture(jm_rt *rt, int p) {
    jm_gpu *g = jm_gpu_of(rt);
    jm_gpu_prog *gp = &g->progs[p];
    jm_CUresult r = g->api.cuStreamBeginCapture_v2(g->stream, JM_CU_STREAM_CAPTURE_MODE_THREAD_LOCAL);
    if (r) return jm_gpu_fail(rt, r, "beginning the capture");
    g->capturing = 1;
    int rc = jm_gpu_issue(rt, p, 0, rt->t->programs[p].nsteps, 0);
    g->capturing = 0;
    jm_CUgraph graph = NULL;
    r = g->api.cuStreamEndCapture(g->stream, &graph);
    if (rc != 0) { if (graph) g->api.cuGraphDestroy(graph); return -1; }
    if (r) { if (graph) g->api.cuGraphDestroy(graph); return jm_gpu_fail(rt, r, "ending the capture"); }
    r = g->api.cuGraphInstantiateWithFlags(&gp->graph, graph, 0);
    g->api.cuGraphDestroy(graph);
    if (r) { gp->graph = NULL; return jm_gpu_fail(rt, r, "instantiating the graph"); }
    jm_gpu_trip_key(rt, p, gp->key);
    return 0;
}

/* Runs the program's steps. Eagerly: a program's first run (cuBLAS and cuDNN
   set themselves up on first use, which stream capture forbids: PyTorch warms
   up before capturing for the same reason), programs that call the host, and
   every program under JEMC_GPU_GRAPHS=0. From the second run on, as a CUDA
   graph captured once (again when a loop's knob changed) and replayed. A
   program that cannot be captured runs eagerly from then on, with a note. */
static int jm_gpu_steps(jm_rt *rt, int p) {
    jm_gpu *g = jm_gpu_of(rt);
    jm_gpu_prog *gp = &g->progs[p];
    const jm_tprogram *pr = &rt->t->programs[p];
    if (!gp->graphable || g->no_graphs || gp->runs++ == 0) return jm_gpu_issue(rt, p, 0, pr->nsteps, 0);
    if (gp->graph) {
        /* key + nkey: room for the trip counts now */
        jm_gpu_trip_key(rt, p, gp->key + gp->nkey);
        if (memcmp(gp->key, gp->key + gp->nkey, sizeof(int64_t) * (size_t)gp->nkey) != 0) {
            g->api.cuGraphExecDestroy(gp->graph);
            gp->graph = NULL;
        }
    }
    if (!gp->graph && jm_gpu_capture(rt, p) != 0) {
        fprintf(stderr, "jemc runtime: note: %s cannot run as a CUDA graph (%s); it runs without one\n", pr->name, rt->err);
        rt->err[0] = 0;
        gp->graphable = 0;
        return jm_gpu_issue(rt, p, 0, pr->nsteps, 0);
    }
    jm_CUresult r = g->api.cuGraphLaunch(gp->graph, g->stream);
    return r ? jm_gpu_fail(rt, r, "running the CUDA graph of %s", pr->name) : 0;
}

/* the phase step s belongs to */
static int jm_gpu_phase_of(const jm_tprogram *pr, int s) {
    int k = 0;
    while (k + 1 < pr->nphases && pr->phase_start[k + 1] <= s) k++;
    return k;
}

/* Every shard's replay rows of phase `phase`'s scatters (rt->dp_rows, host)
   into one device buffer, collective c's at dp_rows_off[c]: synchronous, before
   the phase's steps are issued. */
static int jm_gpu_dp_rows(jm_rt *rt, const jm_tprogram *pr, int phase) {
    jm_gpu *g = jm_gpu_of(rt);
    if (!rt->dp_rows || rt->dp_nshards < 2) return 0;
    if (pr->ncolls > g->dp_rows_noff) {
        int64_t *o = realloc(g->dp_rows_off, sizeof(int64_t) * (size_t)pr->ncolls);
        if (!o) { snprintf(rt->err, sizeof rt->err, "out of memory"); return -1; }
        g->dp_rows_off = o;
        g->dp_rows_noff = pr->ncolls;
    }
    size_t total = 0;
    for (int c = 0; c < pr->ncolls; c++) {
        const jm_tcoll *cl = &pr->colls[c];
        if (cl->kind != JM_COLL_ROWS || cl->phase != phase) continue;
        g->dp_rows_off[c] = (int64_t)total;
        total += (size_t)rt->dp_nshards * (size_t)(cl->bytes[0] + cl->bytes[1]);
        total = (total + 255) & ~(size_t)255;
    }
    if (total == 0) return 0;
    jm_CUresult r;
    if (total > g->dp_rows_cap) {
        if (g->dp_rows) g->api.cuMemFree_v2(g->dp_rows);
        g->dp_rows = 0;
        g->dp_rows_cap = 0;
        if ((r = g->api.cuMemAlloc_v2(&g->dp_rows, total))) return jm_gpu_fail(rt, r, "allocating %zu bytes for the shards' replay rows", total);
        g->dp_rows_cap = total;
    }
    for (int c = 0; c < pr->ncolls; c++) {
        const jm_tcoll *cl = &pr->colls[c];
        if (cl->kind != JM_COLL_ROWS || cl->phase != phase) continue;
        size_t bytes = (size_t)rt->dp_nshards * (size_t)(cl->bytes[0] + cl->bytes[1]);
        if ((r = g->api.cuMemcpyHtoD_v2(g->dp_rows + (jm_CUdeviceptr)g->dp_rows_off[c], rt->dp_rows[c], bytes)))
            return jm_gpu_fail(rt, r, "copying the shards' replay rows to the device");
    }
    return 0;
}

/* Runs steps [s0, s1) of program p: the whole program (jm_gpu_run: a CUDA
   graph from the second run on), or one phase of a data-parallel step
   (jm_gpu_run_phase: eager). With inputs: copied in first, and the run
   counter and error word set. The error word is read after the steps; with
   `finish` the outputs are read, the writes committed and the run counted. */
static int jm_gpu_exec(jm_rt *rt, int p, int s0, int s1, const void *const *inputs, void *const *outputs, int finish) {
    jm_gpu *g = jm_gpu_of(rt);
    const jm_tprogram *pr = &rt->t->programs[p];
    int whole = s0 == 0 && s1 == pr->nsteps;
    jm_CUresult r;
    if (jm_gpu_prepare(rt, p) != 0 || jm_gpu_upload(rt) != 0) return -1;
    if (inputs) {
        for (int i = 0; i < pr->ninputs; i++) {
            size_t bytes = (size_t)jm_rt_desc_numel(&pr->inputs[i]) * jm_rt_dtype_size(pr->inputs[i].dtype);
            if ((r = g->api.cuMemcpyHtoDAsync_v2(jm_gpu_addr(g, pr->inputs[i].ref), inputs[i], bytes, g->stream)))
                return jm_gpu_fail(rt, r, "copying input %s to the device", pr->inputs[i].name);
        }
        /* the run counter (random numbers) and a cleared error word */
        uint32_t words[(JM_GPU_ERR_OFFSET + sizeof(jm_gpu_err)) / 4] = { rt->call };
        if ((r = g->api.cuMemcpyHtoDAsync_v2(g->words, words, sizeof words, g->stream))) return jm_gpu_fail(rt, r, "setting the run counter");
    }
    if (!whole && jm_gpu_dp_rows(rt, pr, jm_gpu_phase_of(pr, s0)) != 0) return -1;
    if (whole ? jm_gpu_steps(rt, p) != 0 : jm_gpu_issue(rt, p, s0, s1, 0) != 0) {
        /* the step's error is the one to report; this only drains the stream */
        (void)g->api.cuStreamSynchronize(g->stream);
        return -1;
    }
    jm_gpu_err dev_err;
    if ((r = g->api.cuMemcpyDtoHAsync_v2(&dev_err, g->words + JM_GPU_ERR_OFFSET, sizeof dev_err, g->stream)))
        return jm_gpu_fail(rt, r, "reading the error word");
    for (int i = 0; finish && i < pr->noutputs; i++) {
        size_t bytes = (size_t)jm_rt_desc_numel(&pr->outputs[i]) * jm_rt_dtype_size(pr->outputs[i].dtype);
        if ((r = g->api.cuMemcpyDtoHAsync_v2(outputs[i], jm_gpu_addr(g, pr->outputs[i].ref), bytes, g->stream)))
            return jm_gpu_fail(rt, r, "copying output %s from the device", pr->outputs[i].name);
    }
    if ((r = g->api.cuStreamSynchronize(g->stream))) return jm_gpu_fail(rt, r, "running %s", pr->name);
    if (dev_err.code != 0) {
        const jm_step *st = dev_err.step >= 0 && dev_err.step < pr->nsteps ? &pr->steps[dev_err.step] : NULL;
        snprintf(rt->err, sizeof rt->err, "%s %" PRId64 " at position %" PRId64 " is out of range (%s)",
                 dev_err.code == 2 ? "label" : "row index", dev_err.value, dev_err.pos,
                 st && st->where && *st->where ? st->where : "a library step");
        return -1;
    }
    if (!finish) return 0;
    /* commit the state writes after the outputs are read (the CPU device's rule, engine/rt_cpu.c) */
    for (int i = 0; i < pr->nwrites; i++) {
        const jm_twrite *w = &pr->writes[i];
        jm_CUdeviceptr dst = g->state + (jm_CUdeviceptr)jm_ref_offset(rt->t->globals[w->global].t.ref);
        if ((r = g->api.cuMemcpyDtoDAsync_v2(dst, jm_gpu_addr(g, w->src), (size_t)w->bytes, g->stream)))
            return jm_gpu_fail(rt, r, "committing %s", rt->t->globals[w->global].t.name);
        g->host_stale[w->global] = 1;
    }
    rt->call++;
    return 0;
}

static int jm_gpu_run(jm_rt *rt, int p, const void *const *inputs, void *const *outputs) {
    return jm_gpu_exec(rt, p, 0, rt->t->programs[p].nsteps, inputs, outputs, 1);
}

/* Phase k of a data-parallel step (engine/rt_device.h): eagerly, never as a
   CUDA graph (a phase's steps see another shard and other rows each time). */
static int jm_gpu_run_phase(jm_rt *rt, int p, int phase, const void *const *inputs, void *const *outputs) {
    const jm_tprogram *pr = &rt->t->programs[p];
    int last = phase == pr->nphases - 1;
    return jm_gpu_exec(rt, p, pr->phase_start[phase], pr->phase_start[phase + 1], phase == 0 ? inputs : NULL, last ? outputs : NULL, last);
}

/* A mean over a device transport (engine/rt_device.h): the sum enqueued on
   the program's stream, then the scaling by 1/S (as rt_dp.c scales on the
   host: 1.0f / S for floats). */
static int jm_gpu_mean_dev(jm_rt *rt, int64_t ref, int64_t n, int dtype, jm_coll *coll, int S) {
    jm_gpu *g = jm_gpu_of(rt);
    if (!g->lib[JM_GPU_SCALE]) { snprintf(rt->err, sizeof rt->err, "damaged executable: its GPU module lacks jm_dev_scale"); return -1; }
    jm_CUdeviceptr x = g->scratch + (jm_CUdeviceptr)jm_ref_offset(ref);
    char e[512];
    if (coll->dev_allreduce(coll, (uint64_t)x, n, dtype == JM_DT_F64 ? JM_COLL_F64 : JM_COLL_F32, (void *)g->stream, e, sizeof e) != 0) {
        snprintf(rt->err, sizeof rt->err, "averaging over %d GPUs: %s", coll->size, e);
        return -1;
    }
    int32_t dt = dtype;
    double f = dtype == JM_DT_F64 ? 1.0 / (double)S : (double)(1.0f / (float)S);
    void *params[] = { &x, &n, &dt, &f };
    return jm_gpu_launch(rt, g->lib[JM_GPU_SCALE], n, params, "the mean over shards");
}

/* The stream's work done, the transport's asynchronous errors polled meanwhile
   (a peer that died leaves NCCL's kernels waiting forever: the poll is what
   ends the wait, as NCCL's documentation advises). */
static int jm_gpu_dp_wait(jm_rt *rt, jm_coll *coll) {
    jm_gpu *g = jm_gpu_of(rt);
    char e[512];
    for (;;) {
        jm_CUresult r = g->api.cuStreamQuery(g->stream);
        if (r == JM_CUDA_SUCCESS) return 0;
        if (r != JM_CUDA_ERROR_NOT_READY) return jm_gpu_fail(rt, r, "averaging over %d GPUs", coll->size);
        if (coll->dev_poll && coll->dev_poll(coll, e, sizeof e) != 0) {
            snprintf(rt->err, sizeof rt->err, "averaging over %d GPUs: %s", coll->size, e);
            return -1;
        }
        struct timespec ts = { 0, 50000 };       /* 50 us between polls */
        nanosleep(&ts, NULL);
    }
}

/* A collective's operand between the phases: after the stream's work, synchronously. */
static int jm_gpu_scratch_io(jm_rt *rt, int64_t ref, void *host, int64_t bytes, int write) {
    jm_gpu *g = jm_gpu_of(rt);
    jm_CUresult r = g->api.cuStreamSynchronize(g->stream);
    if (!r) r = write ? g->api.cuMemcpyHtoD_v2(g->scratch + (jm_CUdeviceptr)jm_ref_offset(ref), host, (size_t)bytes)
                      : g->api.cuMemcpyDtoH_v2(host, g->scratch + (jm_CUdeviceptr)jm_ref_offset(ref), (size_t)bytes);
    return r ? jm_gpu_fail(rt, r, "%s a gradient between the phases of a data-parallel step", write ? "writing" : "reading") : 0;
}

/* The whole state through the host copy: every global the device has newer
   comes back first (snapshot); the restored copy goes over before the next run. */
static int jm_gpu_snapshot(jm_rt *rt, void *dst) {
    for (int g = 0; g < rt->t->nglobals; g++)
        if (jm_gpu_host_view(rt, g, 0) != 0) return -1;
    memcpy(dst, rt->state, (size_t)rt->t->state_bytes);
    return 0;
}
static int jm_gpu_restore(jm_rt *rt, const void *src) {
    memcpy(rt->state, src, (size_t)rt->t->state_bytes);
    for (int g = 0; g < rt->t->nglobals; g++) {
        jm_gpu_of(rt)->host_stale[g] = 0;        /* the host's copy is the one now */
        if (jm_gpu_host_view(rt, g, 1) != 0) return -1;
    }
    return 0;
}

const jm_device jm_device_cuda = {
    .name = "cuda",
    .can_profile = 0,          /* the steps run as one CUDA graph: Nsight Systems times them */
    .open = jm_gpu_attach,
    .close = jm_gpu_detach,
    .run = jm_gpu_run,
    .sync_global = jm_gpu_host_view,
    .snapshot = jm_gpu_snapshot,
    .restore = jm_gpu_restore,
    .memory = jm_gpu_memory,
    .describe = jm_gpu_describe,
    .run_phase = jm_gpu_run_phase,
    .scratch_io = jm_gpu_scratch_io,
    .mean_dev = jm_gpu_mean_dev,
    .dp_wait = jm_gpu_dp_wait,
};
