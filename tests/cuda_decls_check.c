/* cuda_decls_check.c — compiled (never run) by t_cuda where NVIDIA's headers
 * are installed: runtime/gpu/cuda_api.h must declare every function with the type
 * the real headers give it, and the same constants. A mismatch is a compile
 * error here instead of a crash on a GPU. */
#include <cuda.h>
#include <cublas_v2.h>
#include <cudnn.h>
#include "gpu/cuda_api.h"

#define JM_SAME(ret, name, params) \
    _Static_assert(__builtin_types_compatible_p(__typeof__(&name), __typeof__(((jm_cuda_api *)0)->name)), #name);
JM_CU_FUNCS(JM_SAME)
JM_CUBLAS_FUNCS(JM_SAME)
JM_CUDNN_FUNCS(JM_SAME)

_Static_assert(JM_CUDA_SUCCESS == CUDA_SUCCESS, "CUDA_SUCCESS");
_Static_assert(JM_CUDA_ERROR_NO_DEVICE == CUDA_ERROR_NO_DEVICE, "CUDA_ERROR_NO_DEVICE");
_Static_assert(JM_CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT == CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT, "SM count");
_Static_assert(JM_CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR == CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, "cc major");
_Static_assert(JM_CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR == CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, "cc minor");
_Static_assert(JM_CU_JIT_ERROR_LOG_BUFFER == CU_JIT_ERROR_LOG_BUFFER, "jit log");
_Static_assert(JM_CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES == CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES, "jit log size");
_Static_assert(JM_CU_STREAM_NON_BLOCKING == CU_STREAM_NON_BLOCKING, "non-blocking stream");
_Static_assert(JM_CU_STREAM_CAPTURE_MODE_THREAD_LOCAL == CU_STREAM_CAPTURE_MODE_THREAD_LOCAL, "capture mode");
_Static_assert(JM_CUBLAS_OP_N == CUBLAS_OP_N && JM_CUBLAS_OP_T == CUBLAS_OP_T, "cublas ops");
_Static_assert(JM_CUBLAS_DEFAULT_MATH == CUBLAS_DEFAULT_MATH && JM_CUBLAS_PEDANTIC_MATH == CUBLAS_PEDANTIC_MATH &&
               JM_CUBLAS_TF32_TENSOR_OP_MATH == CUBLAS_TF32_TENSOR_OP_MATH, "cublas math modes");
_Static_assert(JM_CUDNN_TENSOR_NCHW == CUDNN_TENSOR_NCHW && JM_CUDNN_DATA_FLOAT == CUDNN_DATA_FLOAT, "cudnn formats");
_Static_assert(JM_CUDNN_CROSS_CORRELATION == CUDNN_CROSS_CORRELATION, "cudnn mode");
_Static_assert(JM_CUDNN_DEFAULT_MATH == CUDNN_DEFAULT_MATH && JM_CUDNN_FMA_MATH == CUDNN_FMA_MATH, "cudnn math");
_Static_assert(sizeof(jm_cudnnAlgoPerf) == sizeof(cudnnConvolutionFwdAlgoPerf_t), "perf size");
_Static_assert(sizeof(jm_cudnnAlgoPerf) == sizeof(cudnnConvolutionBwdDataAlgoPerf_t), "perf size");
_Static_assert(sizeof(jm_cudnnAlgoPerf) == sizeof(cudnnConvolutionBwdFilterAlgoPerf_t), "perf size");
_Static_assert(__builtin_offsetof(jm_cudnnAlgoPerf, memory) == __builtin_offsetof(cudnnConvolutionFwdAlgoPerf_t, memory), "perf memory");
_Static_assert(__builtin_offsetof(jm_cudnnAlgoPerf, mathType) == __builtin_offsetof(cudnnConvolutionFwdAlgoPerf_t, mathType), "perf math");
