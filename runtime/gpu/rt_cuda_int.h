/* rt_cuda_int.h — what rt_cuda.c and rt_cuda_lib.c share. */
#ifndef JM_RT_CUDA_INT_H
#define JM_RT_CUDA_INT_H
#include "rt_cuda.h"
#include "cuda_api.h"

/* the runtime's library kernels (runtime/gpu/dev_lib.c), by name */
enum { JM_GPU_RNG, JM_GPU_RNG_NORMAL, JM_GPU_POOL, JM_GPU_POOL_BWD, JM_GPU_GATHER, JM_GPU_SCATTER, JM_GPU_ONEHOT,
       JM_GPU_CONCAT, JM_GPU_SCALE, JM_GPU_LIB_N };
extern const char *const jm_gpu_lib_names[JM_GPU_LIB_N];

/* device words (g->words): [0] the run counter; at JM_GPU_ERR_OFFSET dev_lib.c's error word */
#define JM_GPU_ERR_OFFSET 64
typedef struct { int32_t code, step; int64_t pos, value; } jm_gpu_err;

/* a convolution step's cuDNN descriptors and its algorithms: the usable ones
   cuDNN's heuristics offered, in the order they are tried (deterministic ones
   first unless JEMC_GPU_DETERMINISTIC=0), the one in use at `pick` with the
   workspace it needs */
#define JM_GPU_MAX_ALGOS 16
typedef struct {
    jm_cudnnTensorDesc x, y;
    jm_cudnnFilterDesc w;
    jm_cudnnConvDesc c;
    unsigned int algos[JM_GPU_MAX_ALGOS], maths[JM_GPU_MAX_ALGOS];
    int nalgo, pick;
    size_t ws;
} jm_gpu_conv;

typedef struct {
    int prepared, graphable;
    int runs;                           /* the runs so far: the first is eager, then graphs */
    jm_gpu_conv *conv;                  /* per step (convolutions only) */
    int nsteps_conv;
    jm_CUgraphExec graph;
    int64_t *key;                       /* the knob-driven trip counts the graph was captured with */
    int nkey;                           /* the program's knob-driven loops */
} jm_gpu_prog;

typedef struct jm_gpu jm_gpu;
struct jm_gpu {
    jm_cuda_api api;
    jm_CUdevice dev;
    jm_CUcontext ctx;
    int have_ctx, sms, cc_major, cc_minor;
    char desc[1400];          /* the GPU, its driver, the cuBLAS and cuDNN loaded */
    jm_CUstream stream;
    jm_CUmodule mod;
    jm_CUfunction *kfn;                 /* by table kernel index */
    int64_t *kscale;                    /* GPU items per table item (gpu_kernel.h) */
    jm_CUfunction lib[JM_GPU_LIB_N];
    jm_CUdeviceptr state, scratch, words, ws;
    size_t ws_bytes;
    unsigned char *host_stale, *dev_stale;   /* per global */
    jm_gpu_prog *progs;
    jm_cublasHandle cublas;
    jm_cudnnHandle cudnn;
    int tf32;
    int no_graphs;                      /* JEMC_GPU_GRAPHS=0: every program runs eagerly */
    int deterministic;                  /* prefer deterministic cuDNN algorithms (JEMC_GPU_DETERMINISTIC=0: not) */
    int capturing;                      /* the stream is being captured: no setup, no retries */
    /* a data-parallel step (engine/rt_dp.c): every shard's replay rows on the
       device, collective c's at dp_rows_off[c] (jm_gpu_dp_rows) */
    jm_CUdeviceptr dp_rows;
    size_t dp_rows_cap;
    int64_t *dp_rows_off;
    int dp_rows_noff;
};

/* the open CUDA device's own data */
static inline struct jm_gpu *jm_gpu_of(const jm_rt *rt) { return (struct jm_gpu *)rt->dev_data; }

int  jm_gpu_fail(jm_rt *rt, jm_CUresult r, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
jm_CUdeviceptr jm_gpu_addr(const struct jm_gpu *g, jm_ref ref);
int64_t jm_gpu_trips(jm_rt *rt, const jm_step *st);
int  jm_gpu_launch(jm_rt *rt, jm_CUfunction f, int64_t total, void **params, const char *what);
int  jm_gpu_issue(jm_rt *rt, int p, int s0, int s1, uint32_t iteration);

/* rt_cuda_lib.c */
int  jm_gpu_libs_open(jm_rt *rt);          /* cuBLAS / cuDNN when the table has such steps */
void jm_gpu_libs_close(jm_rt *rt);
int  jm_gpu_prepare(jm_rt *rt, int p);     /* first run of p: descriptors, algorithms, workspace */
int  jm_gpu_ws_reserve(jm_rt *rt, size_t bytes);   /* a workspace of at least bytes (never while capturing) */
void jm_gpu_prog_free(jm_rt *rt, jm_gpu_prog *gp);
int  jm_gpu_lib_step(jm_rt *rt, int p, int s, uint32_t iteration);
#endif
