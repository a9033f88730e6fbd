/* dist_nccl.c — engine/rt_coll.h's device-memory sum over NCCL, for GPU ranks
 * of a data-parallel job (dist.h: jm_dist_nccl_open). The host-memory
 * operations stay MPI's: the returned jm_coll delegates them to the host
 * transport it was opened over, which also bootstraps NCCL (rank 0's unique
 * id goes to the others by the host's bcast).
 *
 * NCCL is not in Debian: it is dlopened, like cuDNN (runtime/gpu/cuda_api.c),
 * from $JEMC_LIBNCCL alone when set, else from libnccl.so.2 through the
 * loader, CUDA's folders, NVIDIA's Python wheels (a PyTorch install has
 * site-packages/nvidia/nccl/lib/libnccl.so.2) and Debian's multiarch folder.
 * Neither nccl.h nor mpi.h is included: the few types and functions used are
 * declared below, as NVIDIA's nccl.h declares them.
 *
 * What has run: everything here, against tests/fake_nccl.c (a CPU stand-in
 * whose "device memory" is host memory) under mpirun on 2 ranks (t_nccl).
 * What has never run on a real GPU: the NCCL calls themselves
 * (ncclCommInitRank with a CUDA context current, ncclAllReduce on a real
 * CUstream and device addresses, ncclCommGetAsyncError's real reports,
 * ncclCommAbort/Destroy with kernels in flight). */
#include "dist/dist.h"
#include <dlfcn.h>
#include <glob.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* ---- NCCL's declarations --------------------------------------------------------
   As in NVIDIA's nccl.h (github.com/NVIDIA/nccl, src/nccl.h.in, read at commit
   021e8045ff77a8a9fba909617a0129d3c3d44def): ncclUniqueId is
   `struct { char internal[NCCL_UNIQUE_ID_BYTES = 128]; }`, passed by value to
   ncclCommInitRank; ncclComm_t is `struct ncclComm *`; cudaStream_t is
   `struct CUstream_st *`; ncclResult_t, ncclDataType_t and ncclRedOp_t are
   enums without negative values, which GCC and Clang make unsigned int.
   t_nccl compiles this file against the real nccl.h where one is installed. */
typedef unsigned int jm_nccl_result;        /* ncclResult_t */
typedef unsigned int jm_nccl_type;          /* ncclDataType_t */
typedef unsigned int jm_nccl_op;            /* ncclRedOp_t */
typedef struct ncclComm *jm_nccl_comm;      /* ncclComm_t */
typedef struct CUstream_st *jm_nccl_stream; /* cudaStream_t (== CUstream) */
typedef struct { char internal[128]; } jm_nccl_id;  /* ncclUniqueId */

enum {      /* ncclResult_t */
    JM_NCCL_SUCCESS = 0, JM_NCCL_UNHANDLED_CUDA_ERROR = 1, JM_NCCL_SYSTEM_ERROR = 2, JM_NCCL_INTERNAL_ERROR = 3,
    JM_NCCL_INVALID_ARGUMENT = 4, JM_NCCL_INVALID_USAGE = 5, JM_NCCL_REMOTE_ERROR = 6, JM_NCCL_IN_PROGRESS = 7
};
enum { JM_NCCL_FLOAT32 = 7, JM_NCCL_FLOAT64 = 8 };  /* ncclDataType_t: ncclFloat32, ncclFloat64 */
enum { JM_NCCL_SUM = 0 };                           /* ncclRedOp_t: ncclSum */

/* ncclGetVersion's code is major*10000 + minor*100 + patch from 2.9 on
   (NCCL_VERSION in nccl.h; major*1000 + minor*100 + patch before). 2.12 is the
   oldest this transport accepts. */
#define JM_NCCL_MIN_VERSION 21200

/* the functions jm_dist_nccl_open resolves: all required */
#define JM_NCCL_FUNCS(X) \
    X(jm_nccl_result, ncclGetVersion, (int *version)) \
    X(jm_nccl_result, ncclGetUniqueId, (jm_nccl_id *id)) \
    X(jm_nccl_result, ncclCommInitRank, (jm_nccl_comm *comm, int nranks, jm_nccl_id id, int rank)) \
    X(jm_nccl_result, ncclAllReduce, (const void *send, void *recv, size_t count, jm_nccl_type type, jm_nccl_op op, \
                                      jm_nccl_comm comm, jm_nccl_stream stream)) \
    X(jm_nccl_result, ncclCommGetAsyncError, (jm_nccl_comm comm, jm_nccl_result *async_error)) \
    X(jm_nccl_result, ncclCommAbort, (jm_nccl_comm comm)) \
    X(jm_nccl_result, ncclCommDestroy, (jm_nccl_comm comm)) \
    X(const char *, ncclGetErrorString, (jm_nccl_result result))

typedef struct {
#define JM_X(ret, name, params) ret (*name) params;
    JM_NCCL_FUNCS(JM_X)
#undef JM_X
    const char *(*ncclGetLastError)(jm_nccl_comm comm);    /* NCCL 2.13 on: NULL before */
    void *lib;
    char path[1024];
    int version;
} jm_nccl_api;

typedef struct {
    jm_nccl_api api;
    jm_coll *host;      /* the caller's: never finalized here */
    jm_nccl_comm comm;
    int cuda_device;
    int failed;         /* an NCCL call failed: the communicator is aborted, not destroyed */
} jm_nccl;

/* ---- finding the library --------------------------------------------------------
   The candidates, in order (a folder that does not exist adds nothing). */

#define JM_NCCL_NAME "libnccl.so.2"
#define JM_NCCL_MAX_CAND 64
typedef struct { char path[JM_NCCL_MAX_CAND][1024]; int n; } jm_nccl_cands;

static void jm_nccl_cand_dir(jm_nccl_cands *c, const char *dir) {
    struct stat st;
    if (!dir || !*dir || c->n == JM_NCCL_MAX_CAND || stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) return;
    snprintf(c->path[c->n++], sizeof c->path[0], "%s/%s", dir, JM_NCCL_NAME);
}

static void jm_nccl_cand_env(jm_nccl_cands *c, const char *var, const char *sub) {
    const char *v = getenv(var);
    char dir[900];
    if (!v || !*v) return;
    snprintf(dir, sizeof dir, "%.600s/%s", v, sub);
    jm_nccl_cand_dir(c, dir);
}

static int jm_nccl_cmp_desc(const void *a, const void *b) {
    return strcmp(*(char *const *)b, *(char *const *)a);
}

/* every folder matching pattern; reverse name order, so that cuda-13.0 comes
   before cuda-12.4 and python3.12 before python3.11 */
static void jm_nccl_cand_glob(jm_nccl_cands *c, const char *pattern) {
    glob_t gl;
    if (glob(pattern, GLOB_NOSORT | GLOB_ONLYDIR, NULL, &gl) != 0) return;
    qsort(gl.gl_pathv, gl.gl_pathc, sizeof *gl.gl_pathv, jm_nccl_cmp_desc);
    for (size_t i = 0; i < gl.gl_pathc; i++) jm_nccl_cand_dir(c, gl.gl_pathv[i]);
    globfree(&gl);
}

/* NVIDIA's NCCL wheel (nvidia-nccl-cu12, which PyTorch installs) under a
   Python prefix: PREFIX/LIBDIR/python3.X/{site,dist}-packages/nvidia/nccl/lib */
static void jm_nccl_cand_wheels(jm_nccl_cands *c, const char *prefix, const char *libdir) {
    char pat[1200];
    if (!prefix || !*prefix) return;
    for (int k = 0; k < 2; k++) {
        snprintf(pat, sizeof pat, "%.600s/%s/python3*/%s/nvidia/nccl/lib", prefix, libdir, k ? "dist-packages" : "site-packages");
        jm_nccl_cand_glob(c, pat);
    }
}

static void jm_nccl_candidates(jm_nccl_cands *c) {
    c->n = 0;
    snprintf(c->path[c->n++], sizeof c->path[0], "%s", JM_NCCL_NAME);   /* the loader's path */
    /* CUDA's lib64; lib too, where some CUDA 13 installs put NCCL (/usr/local/cuda-13.0/lib) */
    jm_nccl_cand_env(c, "CUDA_HOME", "lib64");
    jm_nccl_cand_env(c, "CUDA_HOME", "lib");
    jm_nccl_cand_env(c, "CUDA_PATH", "lib64");
    jm_nccl_cand_env(c, "CUDA_PATH", "lib");
    jm_nccl_cand_dir(c, "/usr/local/cuda/lib64");
    jm_nccl_cand_dir(c, "/usr/local/cuda/lib");
    jm_nccl_cand_glob(c, "/usr/local/cuda-*/lib64");
    jm_nccl_cand_glob(c, "/usr/local/cuda-*/lib");
    jm_nccl_cand_wheels(c, getenv("VIRTUAL_ENV"), "lib");
    jm_nccl_cand_wheels(c, getenv("CONDA_PREFIX"), "lib");
    jm_nccl_cand_wheels(c, getenv("HOME"), ".local/lib");
    jm_nccl_cand_wheels(c, "/usr/local", "lib");
    jm_nccl_cand_wheels(c, "/usr", "lib");
    jm_nccl_cand_dir(c, "/usr/lib/python3/dist-packages/nvidia/nccl/lib");     /* Debian's python3 */
    jm_nccl_cand_wheels(c, "/opt/conda", "lib");
    jm_nccl_cand_dir(c, "/usr/lib/x86_64-linux-gnu");
}

char *jm_dist_nccl_search(void) {
    jm_nccl_cands *c = malloc(sizeof *c);
    char *out = c ? malloc(sizeof c->path + 1) : NULL;     /* each path and its newline, then the end */
    if (!out) { free(c); return NULL; }
    out[0] = 0;
    jm_nccl_candidates(c);
    for (int i = 0; i < c->n; i++) strcat(strcat(out, c->path[i]), "\n");
    free(c);
    return out;
}

#define JM_NCCL_SEARCHED "the loader's path (LD_LIBRARY_PATH, ldconfig), $CUDA_HOME/lib{64,}, $CUDA_PATH/lib{64,}, /usr/local/cuda/lib{64,}, " \
                         "/usr/local/cuda-*/lib{64,}, NVIDIA's Python wheels (site-packages/nvidia/nccl/lib of $VIRTUAL_ENV, $CONDA_PREFIX, " \
                         "~/.local, /usr/local, /usr, /opt/conda), /usr/lib/x86_64-linux-gnu"

/* dlopen the first candidate that loads; the first failure's reason in why */
static void *jm_nccl_dlopen(const jm_nccl_cands *c, char *path, size_t pathlen, char *why, size_t whylen) {
    for (int i = 0; i < c->n; i++) {
        void *h = dlopen(c->path[i], RTLD_NOW | RTLD_LOCAL);
        if (h) { snprintf(path, pathlen, "%s", c->path[i]); return h; }
        const char *e = dlerror();
        if (!why[0]) snprintf(why, whylen, "%.400s", e ? e : c->path[i]);
    }
    return NULL;
}

static int jm_nccl_find(jm_nccl_api *api, char *err, size_t errlen) {
    const char *env = getenv("JEMC_LIBNCCL");
    jm_nccl_cands *c = malloc(sizeof *c);
    char why[512] = "";
    if (!c) { snprintf(err, errlen, "out of memory"); return -1; }
    c->n = 0;
    if (env && *env) snprintf(c->path[c->n++], sizeof c->path[0], "%s", env);
    else jm_nccl_candidates(c);
    api->lib = jm_nccl_dlopen(c, api->path, sizeof api->path, why, sizeof why);
    free(c);
    if (api->lib) return 0;
    if (env && *env)
        snprintf(err, errlen, "NCCL: $JEMC_LIBNCCL (%.300s) does not load: %s", env, why);
    else
        snprintf(err, errlen, "NCCL (" JM_NCCL_NAME ") was not found (%s); looked in " JM_NCCL_SEARCHED
                 "; pip install nvidia-nccl-cu12 provides it, then set JEMC_LIBNCCL=/path/to/" JM_NCCL_NAME
                 " or add its folder to LD_LIBRARY_PATH", why);
    return -1;
}

/* ---- loading ------------------------------------------------------------------- */

static void jm_nccl_version_text(int code, char *buf, size_t n) {
    if (code >= 10000) snprintf(buf, n, "%d.%d.%d", code / 10000, code / 100 % 100, code % 100);
    else snprintf(buf, n, "%d.%d.%d", code / 1000, code / 100 % 10, code % 100);
}

static int jm_nccl_resolve(jm_nccl_api *api, char *err, size_t errlen) {
    /* ISO C has no cast from void * to a function pointer: copy the bytes through one */
#define JM_X(ret, name, params) \
    if (!(*(void **)&api->name = dlsym(api->lib, #name))) { \
        snprintf(err, errlen, "%.300s is not NCCL or too old for jemc (it has no %s)", api->path, #name); \
        return -1; \
    }
    JM_NCCL_FUNCS(JM_X)
#undef JM_X
    *(void **)&api->ncclGetLastError = dlsym(api->lib, "ncclGetLastError");
    return 0;
}

/* The library stays loaded, as CUDA's do (gpu/cuda_api.c): NCCL starts
   threads of its own, and a second load is only a reference count. */
static int jm_nccl_load(jm_nccl_api *api, char *err, size_t errlen) {
    if (jm_nccl_find(api, err, errlen) != 0 || jm_nccl_resolve(api, err, errlen) != 0) return -1;
    jm_nccl_result r = api->ncclGetVersion(&api->version);
    if (r != JM_NCCL_SUCCESS) {
        snprintf(err, errlen, "NCCL at %.300s: ncclGetVersion failed: %.200s", api->path, api->ncclGetErrorString(r));
        return -1;
    }
    if (api->version < JM_NCCL_MIN_VERSION) {
        char v[32];
        jm_nccl_version_text(api->version, v, sizeof v);
        snprintf(err, errlen, "NCCL %s at %.300s is too old: jemc needs NCCL 2.12 or newer (ncclGetVersion says %d); "
                 "pip install nvidia-nccl-cu12 provides a current one (JEMC_LIBNCCL names it)", v, api->path, api->version);
        return -1;
    }
    return 0;
}

/* "NCCL's text for r (its last error)" */
static void jm_nccl_why(const jm_nccl_api *api, jm_nccl_comm comm, jm_nccl_result r, char *buf, size_t n) {
    const char *s = api->ncclGetErrorString ? api->ncclGetErrorString(r) : NULL;
    const char *last = api->ncclGetLastError ? api->ncclGetLastError(comm) : NULL;
    if (last && *last) snprintf(buf, n, "%s (%.300s)", s ? s : "unknown NCCL error", last);
    else snprintf(buf, n, "%s (ncclResult_t %u)", s ? s : "unknown NCCL error", r);
}

/* ---- agreeing -------------------------------------------------------------------
   A rank that fails alone must not leave the others waiting in the next
   collective (the bcast of the id, NCCL's own bootstrap): after each local
   step every rank contributes a flag, the MIN over ranks says whether all
   succeeded, and when one did not, every rank learns who and why (each
   rank's reason, gathered) and returns the same failure.
   A rank whose failure is only the echo of another's (NCCL's init reporting
   ncclRemoteError: a peer failed) is not named as the cause: the message
   names the ranks that failed on their own, with the reason of this rank
   when it is one of them, else the first one's. */

#define JM_NCCL_REASON 1024
enum { JM_NCCL_OK = 0, JM_NCCL_FAILED = 1, JM_NCCL_ECHO = 2 };   /* a rank's state, the first byte of its reason */

/* ranks in state `want` of the gathered reasons, as "1, 3" in buf; the first in *first (this rank preferred) */
static int jm_nccl_ranks_in(const jm_coll *host, const char *recv, int want, char *buf, size_t n, int *first) {
    int count = 0;
    buf[0] = 0;
    for (int r = 0; r < host->size; r++) {
        if (recv[(size_t)r * JM_NCCL_REASON] != want) continue;
        if (count++ == 0 || r == host->rank) *first = r;
        size_t at = strlen(buf);
        if (at + 16 < n) snprintf(buf + at, n - at, "%s%d", at ? ", " : "", r);
    }
    return count;
}

/* 0 when every rank's state is JM_NCCL_OK; else -1 and err says which ranks
   failed and why */
static int jm_nccl_agree(jm_coll *host, int state, const char *mine, char *err, size_t errlen) {
    char herr[512] = "";
    double all = state == JM_NCCL_OK;
    if (host->allreduce_f64(host, &all, 1, JM_COLL_MIN, herr, sizeof herr) != 0) {
        snprintf(err, errlen, "NCCL's start could not be agreed on over %s: %s", host->name, herr);
        return -1;
    }
    if (all == 1) return 0;
    char send[JM_NCCL_REASON] = "", *recv = calloc((size_t)host->size, JM_NCCL_REASON);
    send[0] = (char)state;
    if (state != JM_NCCL_OK) snprintf(send + 1, sizeof send - 1, "%s", mine);
    if (!recv || host->allgather(host, send, JM_NCCL_REASON, recv, herr, sizeof herr) != 0) {
        snprintf(err, errlen, "NCCL did not start on every rank (%s)%s%.900s", recv ? herr : "out of memory", state ? "; here: " : "", state ? mine : "");
        free(recv);
        return -1;
    }
    char ranks[256];
    int first = 0, want = JM_NCCL_FAILED;
    if (!jm_nccl_ranks_in(host, recv, want, ranks, sizeof ranks, &first)) jm_nccl_ranks_in(host, recv, want = JM_NCCL_ECHO, ranks, sizeof ranks, &first);
    int n = snprintf(err, errlen, "NCCL did not start on rank %s of %d (rank %d: %.*s)", ranks, host->size, first, JM_NCCL_REASON - 2,
                     recv + (size_t)first * JM_NCCL_REASON + 1);
    /* this rank's own echo of it, for the log of this rank */
    if (state == JM_NCCL_ECHO && want == JM_NCCL_FAILED && n > 0 && (size_t)n < errlen)
        snprintf(err + n, errlen - (size_t)n, "; here: %.400s", mine);
    free(recv);
    return -1;
}

/* ---- the operations ------------------------------------------------------------- */

static int jm_nccl_dev_allreduce(jm_coll *c, uint64_t buf, int64_t n, int dtype, void *stream, char *err, size_t errlen) {
    jm_nccl *m = c->impl;
    if (dtype != JM_COLL_F32 && dtype != JM_COLL_F64) {
        snprintf(err, errlen, "dev_allreduce: unknown element type %d (JM_COLL_F32 or JM_COLL_F64)", dtype);
        return -1;
    }
    if (n < 0) { snprintf(err, errlen, "dev_allreduce: negative size %lld", (long long)n); return -1; }
    if (n == 0) return 0;   /* every rank has the same n: all of them skip */
    void *p = (void *)(uintptr_t)buf;
    /* in place: NCCL's all-reduce is in place when sendbuff == recvbuff */
    jm_nccl_result r = m->api.ncclAllReduce(p, p, (size_t)n, dtype == JM_COLL_F32 ? JM_NCCL_FLOAT32 : JM_NCCL_FLOAT64,
                                            JM_NCCL_SUM, m->comm, (jm_nccl_stream)stream);
    if (r == JM_NCCL_SUCCESS || r == JM_NCCL_IN_PROGRESS) return 0;
    char why[512];
    jm_nccl_why(&m->api, m->comm, r, why, sizeof why);
    m->failed = 1;
    snprintf(err, errlen, "NCCL all-reduce of %lld %s on rank %d: %s", (long long)n, dtype == JM_COLL_F32 ? "floats" : "doubles",
             c->rank, why);
    return -1;
}

/* ncclInProgress: a nonblocking communicator still working, not an error */
static int jm_nccl_dev_poll(jm_coll *c, char *err, size_t errlen) {
    jm_nccl *m = c->impl;
    jm_nccl_result async = JM_NCCL_SUCCESS;
    jm_nccl_result r = m->api.ncclCommGetAsyncError(m->comm, &async);
    if (r != JM_NCCL_SUCCESS) async = r;
    if (async == JM_NCCL_SUCCESS || async == JM_NCCL_IN_PROGRESS) return 0;
    char why[512];
    jm_nccl_why(&m->api, m->comm, async, why, sizeof why);
    m->failed = 1;
    snprintf(err, errlen, "NCCL asynchronous error on rank %d: %s", c->rank, why);
    return -1;
}

/* host memory: the host transport's */
static int jm_nccl_allreduce_f32(jm_coll *c, float *buf, int64_t n, char *err, size_t errlen) {
    jm_coll *h = ((jm_nccl *)c->impl)->host;
    return h->allreduce_f32(h, buf, n, err, errlen);
}
static int jm_nccl_allreduce_f64(jm_coll *c, double *buf, int64_t n, int op, char *err, size_t errlen) {
    jm_coll *h = ((jm_nccl *)c->impl)->host;
    return h->allreduce_f64(h, buf, n, op, err, errlen);
}
static int jm_nccl_allgather(jm_coll *c, const void *send, int64_t bytes, void *recv, char *err, size_t errlen) {
    jm_coll *h = ((jm_nccl *)c->impl)->host;
    return h->allgather(h, send, bytes, recv, err, errlen);
}
static int jm_nccl_bcast(jm_coll *c, void *buf, int64_t bytes, int root, char *err, size_t errlen) {
    jm_coll *h = ((jm_nccl *)c->impl)->host;
    return h->bcast(h, buf, bytes, root, err, errlen);
}
static int jm_nccl_barrier(jm_coll *c, char *err, size_t errlen) {
    jm_coll *h = ((jm_nccl *)c->impl)->host;
    return h->barrier(h, err, errlen);
}
static int jm_nccl_post_f32(jm_coll *c, float *buf, int64_t n, char *err, size_t errlen) {
    jm_coll *h = ((jm_nccl *)c->impl)->host;
    return h->post_f32(h, buf, n, err, errlen);
}
static int jm_nccl_progress(jm_coll *c, char *err, size_t errlen) {
    jm_coll *h = ((jm_nccl *)c->impl)->host;
    return h->progress(h, err, errlen);
}
static int jm_nccl_wait_all(jm_coll *c, char *err, size_t errlen) {
    jm_coll *h = ((jm_nccl *)c->impl)->host;
    return h->wait_all(h, err, errlen);
}

/* NCCL's kernels first (a rank blocked in one would never see MPI's abort),
   then the whole job through the host transport */
static void jm_nccl_abort(jm_coll *c, int code) {
    jm_nccl *m = c->impl;
    if (m->comm) m->api.ncclCommAbort(m->comm);
    m->comm = NULL;
    m->host->abort(m->host, code);
}

/* The communicator only: the host transport is the caller's, finalized by it
   afterwards (jm_dist_close(nccl), then jm_dist_close(host)). After an error
   ncclCommDestroy could wait for peers that are gone: abort instead. */
static void jm_nccl_finalize(jm_coll *c) {
    jm_nccl *m = c->impl;
    if (!m) return;
    if (m->comm) (m->failed ? m->api.ncclCommAbort : m->api.ncclCommDestroy)(m->comm);
    free(m);
    c->impl = NULL;
}

static void jm_nccl_fill(jm_coll *c, jm_nccl *m) {
    jm_coll *h = m->host;
    c->name = "nccl";
    c->rank = h->rank;
    c->size = h->size;
    c->local_rank = h->local_rank;
    c->local_size = h->local_size;
    c->allreduce_f32 = jm_nccl_allreduce_f32;
    c->allreduce_f64 = jm_nccl_allreduce_f64;
    c->allgather = jm_nccl_allgather;
    c->bcast = jm_nccl_bcast;
    c->barrier = jm_nccl_barrier;
    /* the overlapped host sums only where the host transport has them */
    c->post_f32 = h->post_f32 && h->progress && h->wait_all ? jm_nccl_post_f32 : NULL;
    c->progress = c->post_f32 ? jm_nccl_progress : NULL;
    c->wait_all = c->post_f32 ? jm_nccl_wait_all : NULL;
    c->dev_allreduce = jm_nccl_dev_allreduce;
    c->dev_poll = jm_nccl_dev_poll;
    c->abort = jm_nccl_abort;
    c->finalize = jm_nccl_finalize;
    c->impl = m;
}

/* ---- opening --------------------------------------------------------------------- */

/* the local steps before the bootstrap: memory, the library, rank 0's id */
static int jm_nccl_prepare(jm_nccl *m, jm_coll *c, jm_nccl_id *id, char *why, size_t n) {
    if (!m || !c) { snprintf(why, n, "out of memory"); return -1; }
    if (jm_nccl_load(&m->api, why, n) != 0) return -1;
    if (m->host->rank != 0) return 0;
    jm_nccl_result r = m->api.ncclGetUniqueId(id);
    if (r == JM_NCCL_SUCCESS) return 0;
    char text[512];
    jm_nccl_why(&m->api, NULL, r, text, sizeof text);
    snprintf(why, n, "ncclGetUniqueId (NCCL at %.300s): %s", m->api.path, text);
    return -1;
}

/* JM_NCCL_OK, JM_NCCL_FAILED, or JM_NCCL_ECHO when NCCL blames a peer */
static int jm_nccl_init(jm_nccl *m, const jm_nccl_id *id, char *why, size_t n) {
    jm_coll *h = m->host;
    jm_nccl_result r = m->api.ncclCommInitRank(&m->comm, h->size, *id, h->rank);
    if (r == JM_NCCL_SUCCESS) return JM_NCCL_OK;
    char text[400];
    jm_nccl_why(&m->api, m->comm, r, text, sizeof text);
    m->comm = NULL;     /* a failed init leaves no communicator to destroy */
    snprintf(why, n, "ncclCommInitRank (rank %d of %d, CUDA device %d, NCCL at %.200s): %s", h->rank, h->size, m->cuda_device,
             m->api.path, text);
    return r == JM_NCCL_REMOTE_ERROR ? JM_NCCL_ECHO : JM_NCCL_FAILED;
}

jm_coll *jm_dist_nccl_open(jm_coll *host, int cuda_device, char *err, size_t errlen) {
    if (errlen) err[0] = 0;
    /* the same on every rank (one host transport), so refusing here is collective */
    if (!host || !host->allreduce_f64 || !host->allgather || !host->bcast || !host->barrier || !host->allreduce_f32 || !host->abort) {
        snprintf(err, errlen, "NCCL needs a host transport (MPI, jm_dist_open) to start over");
        return NULL;
    }
    jm_nccl *m = calloc(1, sizeof *m);
    jm_coll *c = calloc(1, sizeof *c);
    jm_nccl_id id;
    char why[JM_NCCL_REASON] = "", herr[512] = "";
    memset(&id, 0, sizeof id);
    if (m) { m->host = host; m->cuda_device = cuda_device; }
    int state = jm_nccl_prepare(m, c, &id, why, sizeof why) == 0 ? JM_NCCL_OK : JM_NCCL_FAILED;
    if (jm_nccl_agree(host, state, why, err, errlen) != 0) goto fail;
    if (host->bcast(host, &id, sizeof id, 0, herr, sizeof herr) != 0) {
        snprintf(err, errlen, "NCCL's unique id could not be sent over %s: %s", host->name, herr);
        goto fail;
    }
    state = jm_nccl_init(m, &id, why, sizeof why);
    if (jm_nccl_agree(host, state, why, err, errlen) != 0) {
        /* this rank's communicator is useless without the others' */
        if (m->comm) m->api.ncclCommAbort(m->comm);
        goto fail;
    }
    jm_nccl_fill(c, m);
    return c;
fail:
    free(m);
    free(c);
    return NULL;
}
