/* cuda_api.h — the parts of the CUDA driver API, cuBLAS and cuDNN that jemc's
 * GPU runtime calls, declared here so that the runtime builds without the CUDA
 * toolkit and loads the libraries at run time (dlopen): one executable starts
 * on a machine without a GPU and says so.
 *
 * Handle types use the same incomplete struct tags as NVIDIA's headers, and
 * every pointer type names the exported symbol (the _v2 names that cuda.h's
 * macros select), so a translation unit including both this file and the real
 * headers can check that the two agree (tests/cuda_decls_check.c, compiled by
 * t_cuda where the headers are installed). */
#ifndef JM_CUDA_API_H
#define JM_CUDA_API_H
#include <stddef.h>

/* ---- driver API (libcuda.so.1) --------------------------------------------- */
/* C enums with no negative value are compatible with unsigned int: the result
   codes and every enum parameter are declared so, which is what the real
   headers' enum types are for the C compiler */
typedef unsigned int jm_CUresult;
typedef int jm_CUdevice;
typedef unsigned long long jm_CUdeviceptr;
typedef struct CUctx_st *jm_CUcontext;
typedef struct CUmod_st *jm_CUmodule;
typedef struct CUfunc_st *jm_CUfunction;
typedef struct CUstream_st *jm_CUstream;
typedef struct CUgraph_st *jm_CUgraph;
typedef struct CUgraphExec_st *jm_CUgraphExec;

enum {
    JM_CUDA_SUCCESS = 0,
    JM_CUDA_ERROR_NO_DEVICE = 100,
    JM_CUDA_ERROR_NOT_READY = 600,
    JM_CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT = 16,
    JM_CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR = 75,
    JM_CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR = 76,
    JM_CU_JIT_ERROR_LOG_BUFFER = 5,
    JM_CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES = 6,
    JM_CU_STREAM_NON_BLOCKING = 1,
    JM_CU_STREAM_CAPTURE_MODE_THREAD_LOCAL = 1,
};

/* X(return, symbol, parameters): every driver function the runtime resolves */
#define JM_CU_FUNCS(X) \
    X(jm_CUresult, cuInit, (unsigned int flags)) \
    X(jm_CUresult, cuDriverGetVersion, (int *version)) \
    X(jm_CUresult, cuDeviceGetCount, (int *count)) \
    X(jm_CUresult, cuDeviceGet, (jm_CUdevice *dev, int ordinal)) \
    X(jm_CUresult, cuDeviceGetName, (char *name, int len, jm_CUdevice dev)) \
    X(jm_CUresult, cuDeviceGetAttribute, (int *value, unsigned int attrib, jm_CUdevice dev)) \
    X(jm_CUresult, cuDeviceTotalMem_v2, (size_t *bytes, jm_CUdevice dev)) \
    X(jm_CUresult, cuDevicePrimaryCtxRetain, (jm_CUcontext *ctx, jm_CUdevice dev)) \
    X(jm_CUresult, cuDevicePrimaryCtxRelease_v2, (jm_CUdevice dev)) \
    X(jm_CUresult, cuCtxSetCurrent, (jm_CUcontext ctx)) \
    X(jm_CUresult, cuCtxSynchronize, (void)) \
    X(jm_CUresult, cuMemAlloc_v2, (jm_CUdeviceptr *p, size_t bytes)) \
    X(jm_CUresult, cuMemFree_v2, (jm_CUdeviceptr p)) \
    X(jm_CUresult, cuMemGetInfo_v2, (size_t *free_bytes, size_t *total_bytes)) \
    X(jm_CUresult, cuMemcpyHtoD_v2, (jm_CUdeviceptr dst, const void *src, size_t bytes)) \
    X(jm_CUresult, cuMemcpyDtoH_v2, (void *dst, jm_CUdeviceptr src, size_t bytes)) \
    X(jm_CUresult, cuMemcpyHtoDAsync_v2, (jm_CUdeviceptr dst, const void *src, size_t bytes, jm_CUstream s)) \
    X(jm_CUresult, cuMemcpyDtoHAsync_v2, (void *dst, jm_CUdeviceptr src, size_t bytes, jm_CUstream s)) \
    X(jm_CUresult, cuMemcpyDtoDAsync_v2, (jm_CUdeviceptr dst, jm_CUdeviceptr src, size_t bytes, jm_CUstream s)) \
    X(jm_CUresult, cuMemsetD8Async, (jm_CUdeviceptr dst, unsigned char v, size_t n, jm_CUstream s)) \
    X(jm_CUresult, cuMemAllocHost_v2, (void **p, size_t bytes)) \
    X(jm_CUresult, cuMemFreeHost, (void *p)) \
    X(jm_CUresult, cuModuleLoadDataEx, (jm_CUmodule *mod, const void *image, unsigned int nopt, unsigned int *opts, void **vals)) \
    X(jm_CUresult, cuModuleGetFunction, (jm_CUfunction *fn, jm_CUmodule mod, const char *name)) \
    X(jm_CUresult, cuModuleUnload, (jm_CUmodule mod)) \
    X(jm_CUresult, cuLaunchKernel, (jm_CUfunction f, unsigned int gx, unsigned int gy, unsigned int gz, \
                                    unsigned int bx, unsigned int by, unsigned int bz, unsigned int shmem, \
                                    jm_CUstream s, void **params, void **extra)) \
    X(jm_CUresult, cuStreamCreate, (jm_CUstream *s, unsigned int flags)) \
    X(jm_CUresult, cuStreamDestroy_v2, (jm_CUstream s)) \
    X(jm_CUresult, cuStreamSynchronize, (jm_CUstream s)) \
    X(jm_CUresult, cuStreamQuery, (jm_CUstream s)) \
    X(jm_CUresult, cuStreamBeginCapture_v2, (jm_CUstream s, unsigned int mode)) \
    X(jm_CUresult, cuStreamEndCapture, (jm_CUstream s, jm_CUgraph *g)) \
    X(jm_CUresult, cuGraphInstantiateWithFlags, (jm_CUgraphExec *e, jm_CUgraph g, unsigned long long flags)) \
    X(jm_CUresult, cuGraphLaunch, (jm_CUgraphExec e, jm_CUstream s)) \
    X(jm_CUresult, cuGraphExecDestroy, (jm_CUgraphExec e)) \
    X(jm_CUresult, cuGraphDestroy, (jm_CUgraph g)) \
    X(jm_CUresult, cuGetErrorName, (jm_CUresult e, const char **name)) \
    X(jm_CUresult, cuGetErrorString, (jm_CUresult e, const char **text))

/* ---- cuBLAS (libcublas.so.13, .12, .11) ------------------------------------ */
typedef unsigned int jm_cublasStatus;
typedef struct cublasContext *jm_cublasHandle;
enum { JM_CUBLAS_OP_N = 0, JM_CUBLAS_OP_T = 1, JM_CUBLAS_DEFAULT_MATH = 0, JM_CUBLAS_PEDANTIC_MATH = 2,
       JM_CUBLAS_TF32_TENSOR_OP_MATH = 3 };
#define JM_CUBLAS_FUNCS(X) \
    X(jm_cublasStatus, cublasCreate_v2, (jm_cublasHandle *h)) \
    X(jm_cublasStatus, cublasDestroy_v2, (jm_cublasHandle h)) \
    X(jm_cublasStatus, cublasSetStream_v2, (jm_cublasHandle h, jm_CUstream s)) \
    X(jm_cublasStatus, cublasSetMathMode, (jm_cublasHandle h, unsigned int mode)) \
    X(jm_cublasStatus, cublasSetWorkspace_v2, (jm_cublasHandle h, void *ws, size_t bytes)) \
    X(jm_cublasStatus, cublasSgemmStridedBatched, (jm_cublasHandle h, unsigned int ta, unsigned int tb, int m, int n, int k, \
                                                   const float *alpha, const float *A, int lda, long long sA, \
                                                   const float *B, int ldb, long long sB, const float *beta, \
                                                   float *C, int ldc, long long sC, int batch))

/* ---- cuDNN 9 legacy convolution API (libcudnn.so.9, .8) --------------------- */
typedef unsigned int jm_cudnnStatus;
typedef struct cudnnContext *jm_cudnnHandle;
typedef struct cudnnTensorStruct *jm_cudnnTensorDesc;
typedef struct cudnnFilterStruct *jm_cudnnFilterDesc;
typedef struct cudnnConvolutionStruct *jm_cudnnConvDesc;
enum { JM_CUDNN_TENSOR_NCHW = 0, JM_CUDNN_DATA_FLOAT = 0, JM_CUDNN_CROSS_CORRELATION = 1,
       JM_CUDNN_DEFAULT_MATH = 0, JM_CUDNN_FMA_MATH = 3, JM_CUDNN_DETERMINISTIC = 1 };
/* cudnnConvolution{Fwd,BwdData,BwdFilter}AlgoPerf_t share this layout; the
   functions take pointers to cuDNN's own (incomplete here) struct tags, and the
   runtime passes its jm_cudnnAlgoPerf array cast to them */
struct cudnnConvolutionFwdAlgoPerfStruct;
struct cudnnConvolutionBwdDataAlgoPerfStruct;
struct cudnnConvolutionBwdFilterAlgoPerfStruct;
typedef struct { unsigned int algo, status; float time; size_t memory; unsigned int determinism, mathType; int reserved[3]; } jm_cudnnAlgoPerf;
#define JM_CUDNN_FUNCS(X) \
    X(size_t, cudnnGetVersion, (void)) \
    X(const char *, cudnnGetErrorString, (jm_cudnnStatus s)) \
    X(jm_cudnnStatus, cudnnCreate, (jm_cudnnHandle *h)) \
    X(jm_cudnnStatus, cudnnDestroy, (jm_cudnnHandle h)) \
    X(jm_cudnnStatus, cudnnSetStream, (jm_cudnnHandle h, jm_CUstream s)) \
    X(jm_cudnnStatus, cudnnCreateTensorDescriptor, (jm_cudnnTensorDesc *d)) \
    X(jm_cudnnStatus, cudnnSetTensor4dDescriptor, (jm_cudnnTensorDesc d, unsigned int format, unsigned int dtype, int n, int c, int h, int w)) \
    X(jm_cudnnStatus, cudnnDestroyTensorDescriptor, (jm_cudnnTensorDesc d)) \
    X(jm_cudnnStatus, cudnnCreateFilterDescriptor, (jm_cudnnFilterDesc *d)) \
    X(jm_cudnnStatus, cudnnSetFilter4dDescriptor, (jm_cudnnFilterDesc d, unsigned int dtype, unsigned int format, int k, int c, int h, int w)) \
    X(jm_cudnnStatus, cudnnDestroyFilterDescriptor, (jm_cudnnFilterDesc d)) \
    X(jm_cudnnStatus, cudnnCreateConvolutionDescriptor, (jm_cudnnConvDesc *d)) \
    X(jm_cudnnStatus, cudnnSetConvolution2dDescriptor, (jm_cudnnConvDesc d, int ph, int pw, int sh, int sw, int dh, int dw, \
                                                        unsigned int mode, unsigned int dtype)) \
    X(jm_cudnnStatus, cudnnSetConvolutionGroupCount, (jm_cudnnConvDesc d, int groups)) \
    X(jm_cudnnStatus, cudnnSetConvolutionMathType, (jm_cudnnConvDesc d, unsigned int math)) \
    X(jm_cudnnStatus, cudnnDestroyConvolutionDescriptor, (jm_cudnnConvDesc d)) \
    X(jm_cudnnStatus, cudnnGetConvolutionForwardAlgorithm_v7, (jm_cudnnHandle h, jm_cudnnTensorDesc x, jm_cudnnFilterDesc w, \
        jm_cudnnConvDesc c, jm_cudnnTensorDesc y, int want, int *got, struct cudnnConvolutionFwdAlgoPerfStruct *perf)) \
    X(jm_cudnnStatus, cudnnGetConvolutionForwardWorkspaceSize, (jm_cudnnHandle h, jm_cudnnTensorDesc x, jm_cudnnFilterDesc w, \
        jm_cudnnConvDesc c, jm_cudnnTensorDesc y, unsigned int algo, size_t *bytes)) \
    X(jm_cudnnStatus, cudnnConvolutionForward, (jm_cudnnHandle h, const void *alpha, jm_cudnnTensorDesc xd, const void *x, \
        jm_cudnnFilterDesc wd, const void *w, jm_cudnnConvDesc c, unsigned int algo, void *ws, size_t wsb, const void *beta, \
        jm_cudnnTensorDesc yd, void *y)) \
    X(jm_cudnnStatus, cudnnGetConvolutionBackwardDataAlgorithm_v7, (jm_cudnnHandle h, jm_cudnnFilterDesc w, \
        jm_cudnnTensorDesc dy, jm_cudnnConvDesc c, jm_cudnnTensorDesc dx, int want, int *got, \
        struct cudnnConvolutionBwdDataAlgoPerfStruct *perf)) \
    X(jm_cudnnStatus, cudnnGetConvolutionBackwardDataWorkspaceSize, (jm_cudnnHandle h, jm_cudnnFilterDesc w, \
        jm_cudnnTensorDesc dy, jm_cudnnConvDesc c, jm_cudnnTensorDesc dx, unsigned int algo, size_t *bytes)) \
    X(jm_cudnnStatus, cudnnConvolutionBackwardData, (jm_cudnnHandle h, const void *alpha, jm_cudnnFilterDesc wd, const void *w, \
        jm_cudnnTensorDesc dyd, const void *dy, jm_cudnnConvDesc c, unsigned int algo, void *ws, size_t wsb, const void *beta, \
        jm_cudnnTensorDesc dxd, void *dx)) \
    X(jm_cudnnStatus, cudnnGetConvolutionBackwardFilterAlgorithm_v7, (jm_cudnnHandle h, jm_cudnnTensorDesc x, \
        jm_cudnnTensorDesc dy, jm_cudnnConvDesc c, jm_cudnnFilterDesc dw, int want, int *got, \
        struct cudnnConvolutionBwdFilterAlgoPerfStruct *perf)) \
    X(jm_cudnnStatus, cudnnGetConvolutionBackwardFilterWorkspaceSize, (jm_cudnnHandle h, jm_cudnnTensorDesc x, \
        jm_cudnnTensorDesc dy, jm_cudnnConvDesc c, jm_cudnnFilterDesc dw, unsigned int algo, size_t *bytes)) \
    X(jm_cudnnStatus, cudnnConvolutionBackwardFilter, (jm_cudnnHandle h, const void *alpha, jm_cudnnTensorDesc xd, \
        const void *x, jm_cudnnTensorDesc dyd, const void *dy, jm_cudnnConvDesc c, unsigned int algo, void *ws, size_t wsb, \
        const void *beta, jm_cudnnFilterDesc dwd, void *dw))

#define JM_API_FIELD(ret, name, params) ret (*name) params;
typedef struct {
    void *lib_cuda, *lib_cublas, *lib_cudnn;
    char cublas_path[512], cudnn_path[512];   /* the files loaded (for messages) */
    int cublas_next;                          /* the next cuBLAS candidate jm_cuda_api_next_cublas tries */
    void *cublas_tried[8];                    /* the cuBLAS libraries that did not start (one file, many names) */
    int ncublas_tried;
    JM_CU_FUNCS(JM_API_FIELD)
    JM_CUBLAS_FUNCS(JM_API_FIELD)
    JM_CUDNN_FUNCS(JM_API_FIELD)
} jm_cuda_api;
#undef JM_API_FIELD

/* Loads libcuda.so.1 ($JEMC_LIBCUDA overrides the name, for tests) and calls
   cuInit. 0: ready, with at least one GPU. -1 with a person's sentence in err:
   no driver library, a driver without a GPU, or a driver without a symbol jemc
   needs (too old). */
int jm_cuda_api_load_driver(jm_cuda_api *api, char *err, size_t errlen);
/* Loads cuBLAS and cuDNN (needed only by programs with matrix products or
   convolutions). $JEMC_LIBCUBLAS / $JEMC_LIBCUDNN name the file to load and
   nothing else is tried (tests load a CPU stand-in so); otherwise the newest
   major version first (cuBLAS .13, .12, .11; cuDNN .9, .8), in the loader's
   search path, then $CUDA_HOME/lib64, $CUDA_PATH/lib64, /usr/local/cuda/lib64,
   /usr/local/cuda-VERSION/lib64, $CUDNN_PATH/lib{,64}, and the directories where
   NVIDIA's Python wheels put them (site-packages/nvidia/{cublas,cudnn}/lib of
   $VIRTUAL_ENV, $CONDA_PREFIX, ~/.local, /usr/local, /usr, /opt/conda).
   0 ok; -1 with the library, where it looked and the first reason in err. */
int jm_cuda_api_load_libs(jm_cuda_api *api, int need_cublas, int need_cudnn, char *err, size_t errlen);
/* After cublasCreate failed with the loaded cuBLAS: loads the next candidate
   (e.g. libcublas.so.12 after .13, which needs a newer driver). 0: loaded
   (api->cublas_path names it); -1: none left, or it lacks a function (err). */
int jm_cuda_api_next_cublas(jm_cuda_api *api, char *err, size_t errlen);
/* The files jm_cuda_api_load_libs tries for "cublas" or "cudnn", in order
   (names alone go through the loader's path): n of them in *paths, each
   malloc'd, freed with jm_cuda_api_candidates_free. */
int  jm_cuda_api_candidates(const char *which, char ***paths);
void jm_cuda_api_candidates_free(char **paths, int n);
/* cuBLAS's status by name: "CUBLAS_STATUS_INVALID_VALUE (7)" */
const char *jm_cublas_errstr(unsigned int status, char *buf, size_t n);
/* Forgets the functions; the libraries stay loaded (cuda_api.c says why). */
void jm_cuda_api_unload(jm_cuda_api *api);
/* "CUDA_ERROR_OUT_OF_MEMORY (out of memory)" */
const char *jm_cuda_errstr(const jm_cuda_api *api, jm_CUresult r, char *buf, size_t n);
#endif
