/* cuda_api.c — see cuda_api.h. */
#include "cuda_api.h"
#include <dlfcn.h>
#include <glob.h>
#include <sys/stat.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- finding a library ------------------------------------------------------------
   The candidates, in order: each name through the loader's search path, then
   each name in each directory where CUDA installs and NVIDIA's Python wheels put
   the libraries (a PyTorch install often has the only cuDNN on a machine). A
   directory that does not exist is skipped. */

#define JM_MAX_CANDIDATES 256
typedef struct { char *path[JM_MAX_CANDIDATES]; int n; } jm_candidates;

static void jm_cand_add(jm_candidates *c, const char *path) {
    for (int i = 0; i < c->n; i++) if (strcmp(c->path[i], path) == 0) return;
    if (c->n < JM_MAX_CANDIDATES) c->path[c->n++] = strdup(path);
}
static void jm_cand_free(jm_candidates *c) {
    for (int i = 0; i < c->n; i++) free(c->path[i]);
    c->n = 0;
}
/* every name in dir, when dir exists */
static void jm_cand_dir(jm_candidates *c, const char *const *names, const char *dir) {
    struct stat st;
    if (!dir || !*dir || stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) return;
    for (int i = 0; names[i]; i++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        jm_cand_add(c, path);
    }
}
/* every name in each directory matching pattern (newest-looking last name first) */
static void jm_cand_glob(jm_candidates *c, const char *const *names, const char *pattern) {
    glob_t gl;
    if (glob(pattern, GLOB_NOSORT | GLOB_ONLYDIR, NULL, &gl) != 0) return;
    /* /usr/local/cuda-13.0 before /usr/local/cuda-12.4: reverse order of names */
    for (size_t i = 0; i < gl.gl_pathc; i++)
        for (size_t j = i + 1; j < gl.gl_pathc; j++)
            if (strcmp(gl.gl_pathv[i], gl.gl_pathv[j]) < 0) { char *t = gl.gl_pathv[i]; gl.gl_pathv[i] = gl.gl_pathv[j]; gl.gl_pathv[j] = t; }
    for (size_t i = 0; i < gl.gl_pathc; i++) jm_cand_dir(c, names, gl.gl_pathv[i]);
    globfree(&gl);
}
static void jm_cand_env_dir(jm_candidates *c, const char *const *names, const char *var, const char *sub) {
    const char *v = getenv(var);
    if (!v || !*v) return;
    char dir[2048];
    snprintf(dir, sizeof dir, "%s/%s", v, sub);
    jm_cand_dir(c, names, dir);
}
/* wheel: "cublas" or "cudnn" (site-packages/nvidia/WHEEL/lib) */
static void jm_candidates_for(jm_candidates *c, const char *const *names, const char *wheel) {
    c->n = 0;
    for (int i = 0; names[i]; i++) jm_cand_add(c, names[i]);
    jm_cand_env_dir(c, names, "CUDA_HOME", "lib64");
    jm_cand_env_dir(c, names, "CUDA_PATH", "lib64");
    jm_cand_dir(c, names, "/usr/local/cuda/lib64");
    jm_cand_glob(c, names, "/usr/local/cuda-*/lib64");
    if (strcmp(wheel, "cudnn") == 0) {
        jm_cand_env_dir(c, names, "CUDNN_PATH", "lib");
        jm_cand_env_dir(c, names, "CUDNN_PATH", "lib64");
    }
    const char *roots[] = { getenv("VIRTUAL_ENV"), getenv("CONDA_PREFIX"), getenv("HOME"), "/usr/local", "/usr", "/opt/conda" };
    const char *subs[] = { "lib", "lib", ".local/lib", "lib", "lib", "lib" };
    for (int r = 0; r < 6; r++) {
        if (!roots[r] || !*roots[r]) continue;
        char pat[2048];
        for (int k = 0; k < 2; k++) {
            snprintf(pat, sizeof pat, "%s/%s/python3*/%s/nvidia/%s/lib", roots[r], subs[r], k ? "dist-packages" : "site-packages", wheel);
            jm_cand_glob(c, names, pat);
        }
    }
    /* Debian's python3 keeps its packages in /usr/lib/python3/dist-packages */
    char pat[256];
    snprintf(pat, sizeof pat, "/usr/lib/python3/dist-packages/nvidia/%s/lib", wheel);
    jm_cand_dir(c, names, pat);
}
#define JM_SEARCHED "the loader's path (LD_LIBRARY_PATH, ldconfig), $CUDA_HOME/lib64, $CUDA_PATH/lib64, " \
                    "/usr/local/cuda/lib64, /usr/local/cuda-*/lib64, %sNVIDIA's Python wheels (site-packages/nvidia/%s/lib " \
                    "of $VIRTUAL_ENV, $CONDA_PREFIX, ~/.local, /usr/local, /usr, /opt/conda)"

/* dlopen the candidates from *at on; the one loaded in path, the next index in
   *at; the first failure's reason in why */
static void *jm_open_from(const jm_candidates *c, int *at, char *path, size_t pn, char *why, size_t n) {
    for (int i = *at; i < c->n; i++) {
        void *h = dlopen(c->path[i], RTLD_NOW | RTLD_LOCAL);
        if (h) {
            snprintf(path, pn, "%s", c->path[i]);
            *at = i + 1;
            return h;
        }
        const char *e = dlerror();
        if (!why[0]) snprintf(why, n, "%.400s", e ? e : c->path[i]);
    }
    *at = c->n;
    return NULL;
}

/* the CUDA driver: libcuda.so.1 through the loader (the driver installs it
   there), or $JEMC_LIBCUDA */
static void *jm_open_driver(const char *name, char *why, size_t n) {
    void *h = dlopen(name, RTLD_NOW | RTLD_LOCAL);
    if (!h) { const char *e = dlerror(); snprintf(why, n, "%.400s", e ? e : name); }
    return h;
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
    api->lib_cuda = jm_open_driver(names[0], why, sizeof why);
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

static const char *const jm_cublas_names[] = { "libcublas.so.13", "libcublas.so.12", "libcublas.so.11", "libcublas.so", NULL };
static const char *const jm_cudnn_names[] = { "libcudnn.so.9", "libcudnn.so.8", "libcudnn.so", NULL };

/* the candidate list for cuBLAS or cuDNN: $JEMC_LIB... alone, or the search */
static void jm_lib_candidates(jm_candidates *c, const char *env, const char *const *names, const char *wheel) {
    const char *v = getenv(env);
    c->n = 0;
    if (v && *v) jm_cand_add(c, v);
    else jm_candidates_for(c, names, wheel);
}

static int jm_resolve_cublas(jm_cuda_api *api, char *err, size_t errlen) {
    const char *libname = api->cublas_path;
#define JM_X(ret, name, params) JM_RESOLVE(lib_cublas, ret, name, params)
    JM_CUBLAS_FUNCS(JM_X)
#undef JM_X
    return 0;
}

int jm_cuda_api_load_libs(jm_cuda_api *api, int need_cublas, int need_cudnn, char *err, size_t errlen) {
    char why[512] = "";
    jm_candidates c;
    if (need_cublas && !api->lib_cublas) {
        jm_lib_candidates(&c, "JEMC_LIBCUBLAS", jm_cublas_names, "cublas");
        api->cublas_next = 0;
        api->lib_cublas = jm_open_from(&c, &api->cublas_next, api->cublas_path, sizeof api->cublas_path, why, sizeof why);
        jm_cand_free(&c);
        if (!api->lib_cublas) {
            if (getenv("JEMC_LIBCUBLAS") && *getenv("JEMC_LIBCUBLAS"))
                snprintf(err, errlen, "cuBLAS is needed for matrix products and $JEMC_LIBCUBLAS (%s) does not load: %s", getenv("JEMC_LIBCUBLAS"), why);
            else
                snprintf(err, errlen, "cuBLAS is needed for matrix products and was not found (%s); looked for libcublas.so.13, .12, .11 in "
                         JM_SEARCHED "; set JEMC_LIBCUBLAS=/path/to/libcublas.so.13 or add its directory to LD_LIBRARY_PATH", why, "", "cublas");
            return -1;
        }
        if (jm_resolve_cublas(api, err, errlen) != 0) return -1;
    }
    if (need_cudnn && !api->lib_cudnn) {
        int at = 0;
        why[0] = 0;
        jm_lib_candidates(&c, "JEMC_LIBCUDNN", jm_cudnn_names, "cudnn");
        api->lib_cudnn = jm_open_from(&c, &at, api->cudnn_path, sizeof api->cudnn_path, why, sizeof why);
        jm_cand_free(&c);
        if (!api->lib_cudnn) {
            if (getenv("JEMC_LIBCUDNN") && *getenv("JEMC_LIBCUDNN"))
                snprintf(err, errlen, "cuDNN is needed for convolutions and $JEMC_LIBCUDNN (%s) does not load: %s", getenv("JEMC_LIBCUDNN"), why);
            else
                snprintf(err, errlen, "cuDNN is needed for convolutions and was not found (%s); looked for libcudnn.so.9, .8 in "
                         JM_SEARCHED "; set JEMC_LIBCUDNN=/path/to/libcudnn.so.9 or add its directory to LD_LIBRARY_PATH", why,
                         "$CUDNN_PATH/lib{,64}, ", "cudnn");
            return -1;
        }
        const char *libname = api->cudnn_path;
#define JM_X(ret, name, params) JM_RESOLVE(lib_cudnn, ret, name, params)
        JM_CUDNN_FUNCS(JM_X)
#undef JM_X
    }
    return 0;
}

int jm_cuda_api_next_cublas(jm_cuda_api *api, char *err, size_t errlen) {
    char why[512] = "", path[512];
    jm_candidates c;
    jm_lib_candidates(&c, "JEMC_LIBCUBLAS", jm_cublas_names, "cublas");
    if (api->ncublas_tried < 8) api->cublas_tried[api->ncublas_tried++] = api->lib_cublas;
    void *h;
    for (;;) {
        h = jm_open_from(&c, &api->cublas_next, path, sizeof path, why, sizeof why);
        int seen = 0;
        /* another name of a library that already failed (libcublas.so -> .so.13) */
        for (int i = 0; h && i < api->ncublas_tried; i++) seen |= api->cublas_tried[i] == h;
        if (!seen) break;
    }
    jm_cand_free(&c);
    if (!h) { snprintf(err, errlen, "no other cuBLAS was found"); return -1; }
    /* the failed one stays loaded (see jm_cuda_api_unload) */
    api->lib_cublas = h;
    snprintf(api->cublas_path, sizeof api->cublas_path, "%s", path);
    return jm_resolve_cublas(api, err, errlen);
}

int jm_cuda_api_candidates(const char *which, char ***paths) {
    jm_candidates c;
    int blas = strcmp(which, "cublas") == 0;
    jm_lib_candidates(&c, blas ? "JEMC_LIBCUBLAS" : "JEMC_LIBCUDNN", blas ? jm_cublas_names : jm_cudnn_names, blas ? "cublas" : "cudnn");
    *paths = malloc(sizeof(char *) * (size_t)(c.n + 1));
    if (!*paths) { jm_cand_free(&c); return 0; }
    for (int i = 0; i < c.n; i++) (*paths)[i] = c.path[i];
    return c.n;
}
void jm_cuda_api_candidates_free(char **paths, int n) {
    for (int i = 0; i < n; i++) free(paths[i]);
    free(paths);
}

const char *jm_cublas_errstr(unsigned int s, char *buf, size_t n) {
    /* cublasStatus_t (cublas_api.h) */
    const char *name = s == 0 ? "CUBLAS_STATUS_SUCCESS" : s == 1 ? "CUBLAS_STATUS_NOT_INITIALIZED" : s == 3 ? "CUBLAS_STATUS_ALLOC_FAILED"
                     : s == 7 ? "CUBLAS_STATUS_INVALID_VALUE" : s == 8 ? "CUBLAS_STATUS_ARCH_MISMATCH" : s == 11 ? "CUBLAS_STATUS_MAPPING_ERROR"
                     : s == 13 ? "CUBLAS_STATUS_EXECUTION_FAILED" : s == 14 ? "CUBLAS_STATUS_INTERNAL_ERROR"
                     : s == 15 ? "CUBLAS_STATUS_NOT_SUPPORTED" : s == 16 ? "CUBLAS_STATUS_LICENSE_ERROR" : "an unknown cuBLAS status";
    snprintf(buf, n, "%s (%u)", name, s);
    return buf;
}

/* The libraries stay loaded: once cuInit has run, the driver has threads and
   exit handlers of its own, and unmapping it under them can crash the process
   (cuBLAS and cuDNN register exit handlers too). A second load is a reference
   count, not a second copy. */
void jm_cuda_api_unload(jm_cuda_api *api) {
    memset(api, 0, sizeof *api);
}
