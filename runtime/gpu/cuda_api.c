/* cuda_api.c — see cuda_api.h. */
#include "cuda_api.h"
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* dlopen the first name that loads, through the loader's search path and then
   in $CUDA_HOME/lib64 and /usr/local/cuda/lib64 (where NVIDIA's installers put
   cuBLAS and cuDNN, not always known to the loader); the first failure's
   reason in why */
static void *jm_open_first(const char *const *names, char *why, size_t n) {
    const char *home = getenv("CUDA_HOME");
    const char *dirs[] = { NULL, home && *home ? home : NULL, "/usr/local/cuda" };
    why[0] = 0;
    for (int d = 0; d < 3; d++) {
        if (d > 0 && !dirs[d]) continue;
        for (int i = 0; names[i]; i++) {
            char path[4096];
            if (d == 0) snprintf(path, sizeof path, "%s", names[i]);
            else if (strchr(names[i], '/')) continue;
            else snprintf(path, sizeof path, "%s/lib64/%s", dirs[d], names[i]);
            void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
            if (h) return h;
            const char *e = dlerror();
            if (!why[0]) snprintf(why, n, "%.400s", e ? e : path);
        }
    }
    return NULL;
}

#define JM_RESOLVE(lib, ret, name, params)                                                         \
    if (!(api->name = (ret (*) params)dlsym(api->lib, #name))) {                                 \
        snprintf(err, errlen, "%s has no %s (too old for jemc?)", libname, #name);              \
        return -1;                                                                               \
    }

const char *jm_cuda_errstr(const jm_cuda_api *api, jm_CUresult r, char *buf, size_t n) {
    const char *name = NULL, *text = NULL;
    if (api->cuGetErrorName) api->cuGetErrorName(r, &name);
    if (api->cuGetErrorString) api->cuGetErrorString(r, &text);
    if (name) snprintf(buf, n, "%s (%s)", name, text ? text : "no description");
    else snprintf(buf, n, "CUDA error %d", r);
    return buf;
}

int jm_cuda_api_load_driver(jm_cuda_api *api, char *err, size_t errlen) {
    memset(api, 0, sizeof *api);
    const char *env = getenv("JEMC_LIBCUDA");
    const char *names[] = { env && *env ? env : "libcuda.so.1", NULL };
    const char *libname = names[0];
    char why[512] = "";
    api->lib_cuda = jm_open_first(names, why, sizeof why);
    if (!api->lib_cuda) {
        snprintf(err, errlen, "no CUDA driver found (%s): this machine has no NVIDIA GPU driver", why);
        return -1;
    }
#define JM_X(ret, name, params) JM_RESOLVE(lib_cuda, ret, name, params)
    JM_CU_FUNCS(JM_X)
#undef JM_X
    char buf[256];
    jm_CUresult r = api->cuInit(0);
    if (r == JM_CUDA_ERROR_NO_DEVICE) { snprintf(err, errlen, "the CUDA driver found no GPU"); return -1; }
    /* 34: CUDA_ERROR_STUB_LIBRARY, the toolkit's link-time stub found instead of a driver */
    if (r == 34) { snprintf(err, errlen, "%s is CUDA's stub library, not a driver: this machine has no NVIDIA GPU driver", libname); return -1; }
    if (r != JM_CUDA_SUCCESS) { snprintf(err, errlen, "the CUDA driver did not start: %s", jm_cuda_errstr(api, r, buf, sizeof buf)); return -1; }
    int count = 0;
    r = api->cuDeviceGetCount(&count);
    if (r != JM_CUDA_SUCCESS || count < 1) { snprintf(err, errlen, "the CUDA driver found no GPU"); return -1; }
    return 0;
}

int jm_cuda_api_load_libs(jm_cuda_api *api, int need_cublas, int need_cudnn, char *err, size_t errlen) {
    char why[512] = "";
    const char *libname;
    if (need_cublas && !api->lib_cublas) {
        const char *env = getenv("JEMC_LIBCUBLAS");
        const char *names[] = { env && *env ? env : "libcublas.so.13", "libcublas.so.12", "libcublas.so.11", "libcublas.so", NULL };
        if (env && *env) names[1] = NULL;
        if (!(api->lib_cublas = jm_open_first(names, why, sizeof why))) {
            snprintf(err, errlen, "cuBLAS is needed for matrix products and was not found (%s); install it or add its "
                                  "directory to LD_LIBRARY_PATH", why);
            return -1;
        }
        libname = "cuBLAS";
#define JM_X(ret, name, params) JM_RESOLVE(lib_cublas, ret, name, params)
        JM_CUBLAS_FUNCS(JM_X)
#undef JM_X
    }
    if (need_cudnn && !api->lib_cudnn) {
        const char *env = getenv("JEMC_LIBCUDNN");
        const char *names[] = { env && *env ? env : "libcudnn.so.9", "libcudnn.so.8", "libcudnn.so", NULL };
        if (env && *env) names[1] = NULL;
        if (!(api->lib_cudnn = jm_open_first(names, why, sizeof why))) {
            snprintf(err, errlen, "cuDNN is needed for convolutions and was not found (%s); install it or add its "
                                  "directory to LD_LIBRARY_PATH", why);
            return -1;
        }
        libname = "cuDNN";
#define JM_X(ret, name, params) JM_RESOLVE(lib_cudnn, ret, name, params)
        JM_CUDNN_FUNCS(JM_X)
#undef JM_X
    }
    return 0;
}

/* The libraries stay loaded: once cuInit has run, the driver has threads and
   exit handlers of its own, and unmapping it under them can crash the process
   (cuBLAS and cuDNN register exit handlers too). A second load is a reference
   count, not a second copy. */
void jm_cuda_api_unload(jm_cuda_api *api) {
    memset(api, 0, sizeof *api);
}
