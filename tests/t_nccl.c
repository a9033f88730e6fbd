/* t_nccl.c — the NCCL transport (runtime/dist/dist_nccl.c) on a machine
 * without a GPU, with tests/fake_nccl.c (build/tests/libfakenccl.so) as NCCL:
 *   1. in this process, over a one-rank stand-in host transport: no host is
 *      refused; a missing library is named with JEMC_LIBNCCL; a library that
 *      is not NCCL, and an NCCL older than 2.12, are refused; without
 *      JEMC_LIBNCCL the search finds NVIDIA's wheel under $VIRTUAL_ENV and
 *      $CUDA_HOME/lib64 first, and a miss lists where it looked;
 *   2. the declarations of dist_nccl.c against a nccl.h: the real one where
 *      installed (else SKIP), and always against a small stand-in header, as
 *      they are and with one constant wrong (the check must catch that);
 *   3. under `mpirun -np 2` (tests/mpi_helpers.h): open ("nccl", ranks),
 *      device sums of floats and doubles (bitwise a + b, the same bits on both
 *      ranks), in place on the caller's stream, dev_poll, the host operations
 *      through the NCCL transport, close; then the failures, each ending the
 *      job with a nonzero status and no hang: NCCL missing on both ranks or on
 *      rank 1 only, too old, ncclCommInitRank failing on rank 1, and an
 *      asynchronous error on rank 1 that dev_poll reports.
 * This file is also the ranks' program: `t_nccl --child ops|open|async` (each
 * rank writes its report to $T_NCCL_OUT/rankN.txt). */
#include "tap.h"
#include "helpers.h"
#include "mpi_helpers.h"
#include "dist/dist.h"
#include <dlfcn.h>
#include <limits.h>
#include <stdint.h>
#include <sys/stat.h>
#include <time.h>

static const char *build_dir(void) { return jt_env("JM_BUILD", "build"); }

static void fake_path(char *buf, size_t cap) {
    snprintf(buf, cap, "%s/tests/libfakenccl.so", build_dir());
}

/* ---- the ranks' side ---- */

static FILE *rep;
static int me;

static void report(int cond, const char *name, const char *detail) {
    fprintf(rep, "R%d %s %s%s%s\n", me, cond ? "ok" : "not", name, cond || !detail ? "" : ": ", cond || !detail ? "" : detail);
}

static uint64_t hash_bytes(const void *p, size_t n) {
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ ((const unsigned char *)p)[i]) * 1099511628211ull;
    return h;
}

static float val_f32(int r, int64_t i) { return (float)(r + 1) / 3.0f * (float)(i % 89 + 1) + 1e-3f * (float)i; }
static double val_f64(int r, int64_t i) { return sin((double)i * 0.41 + r) * (r + 1.25); }

typedef void fake_last_fn(const void **send, void **recv, size_t *count, unsigned *type, void **stream);

/* the fake's record of the last ncclAllReduce: in place on buf, on stream, n of type */
static int fake_saw(const void *buf, int64_t n, unsigned type, void *stream, char *det, size_t cap) {
    void *h = dlopen(getenv("JEMC_LIBNCCL"), RTLD_NOW | RTLD_NOLOAD);
    fake_last_fn *last;
    *(void **)&last = h ? dlsym(h, "fake_nccl_last") : NULL;
    if (!last) { snprintf(det, cap, "the fake's fake_nccl_last is not loaded"); return 0; }
    const void *send; void *recv, *st; size_t count; unsigned t;
    last(&send, &recv, &count, &t, &st);
    snprintf(det, cap, "send %p recv %p (buf %p), count %zu (%lld), type %u (%u), stream %p (%p)", send, recv, buf, count,
             (long long)n, t, type, st, stream);
    return send == buf && recv == buf && count == (size_t)n && t == type && st == stream;
}

/* n elements (JM_COLL_F32 or F64) summed in "device memory" (host memory to the fake) */
static void check_dev(jm_coll *c, int64_t n, int dtype, const char *name) {
    size_t es = dtype == JM_COLL_F32 ? sizeof(float) : sizeof(double);
    unsigned char *b = malloc(es * (size_t)(n + 1));
    for (int64_t i = 0; i <= n; i++) {
        if (dtype == JM_COLL_F32) ((float *)b)[i] = i < n ? val_f32(c->rank, i) : -7.0f;
        else ((double *)b)[i] = i < n ? val_f64(c->rank, i) : -7.0;
    }
    void *stream = (void *)(uintptr_t)(0x5a5a000 + 16 * c->rank);
    char err[512] = "", det[640] = "";
    int rc = c->dev_allreduce(c, (uint64_t)(uintptr_t)b, n, dtype, stream, err, sizeof err), good = rc == 0;
    for (int64_t i = 0; i < n && good; i++) {
        if (dtype == JM_COLL_F32) {
            float want = val_f32(0, i) + val_f32(1, i);
            if (memcmp(&((float *)b)[i], &want, sizeof want)) { good = 0; snprintf(det, sizeof det, "element %lld is %.9g, expected %.9g", (long long)i, ((float *)b)[i], want); }
        } else {
            double want = val_f64(0, i) + val_f64(1, i);
            if (memcmp(&((double *)b)[i], &want, sizeof want)) { good = 0; snprintf(det, sizeof det, "element %lld is %.17g, expected %.17g", (long long)i, ((double *)b)[i], want); }
        }
    }
    if (good && (dtype == JM_COLL_F32 ? ((float *)b)[n] != -7.0f : ((double *)b)[n] != -7.0)) { good = 0; snprintf(det, sizeof det, "wrote past the end"); }
    if (rc != 0) snprintf(det, sizeof det, "returned %d: %s", rc, err);
    report(good, name, det);
    char name2[128];
    snprintf(name2, sizeof name2, "%s: in place, on the stream", name);
    report(fake_saw(b, n, dtype == JM_COLL_F32 ? 7u : 8u, stream, det, sizeof det), name2, det);
    fprintf(rep, "R%d hash %s %016llx\n", me, name, (unsigned long long)hash_bytes(b, es * (size_t)n));
    free(b);
}

/* the host operations go to the MPI transport underneath */
static void check_host_ops(jm_coll *c) {
    int64_t n = 700;
    float *b = malloc(sizeof(float) * (size_t)n);
    for (int64_t i = 0; i < n; i++) b[i] = val_f32(c->rank, i);
    char err[512] = "", det[640] = "";
    int rc = c->allreduce_f32(c, b, n, err, sizeof err), good = rc == 0;
    for (int64_t i = 0; i < n && good; i++) {
        float want = val_f32(0, i) + val_f32(1, i);
        if (memcmp(&b[i], &want, sizeof want)) { good = 0; snprintf(det, sizeof det, "element %lld is %.9g", (long long)i, b[i]); }
    }
    if (rc) snprintf(det, sizeof det, "returned %d: %s", rc, err);
    report(good, "host allreduce_f32 through nccl", det);
    double d = c->rank + 1.0;
    rc = c->allreduce_f64(c, &d, 1, JM_COLL_MAX, err, sizeof err);
    int ranks[2] = { -1, -1 };
    if (rc == 0) rc = c->allgather(c, &c->rank, sizeof(int), ranks, err, sizeof err);
    int root = c->rank == 1 ? 42 : 0;
    if (rc == 0) rc = c->bcast(c, &root, sizeof root, 1, err, sizeof err);
    if (rc == 0) rc = c->barrier(c, err, sizeof err);
    snprintf(det, sizeof det, "rc %d (%s): max %g, gathered %d %d, bcast %d", rc, err, d, ranks[0], ranks[1], root);
    report(rc == 0 && d == 2.0 && ranks[0] == 0 && ranks[1] == 1 && root == 42, "host f64 max, allgather, bcast, barrier", det);
    rc = c->post_f32 ? c->post_f32(c, b, n, err, sizeof err) : -1;
    if (rc == 0) rc = c->progress(c, err, sizeof err);
    if (rc == 0) rc = c->wait_all(c, err, sizeof err);
    float want = 2 * (val_f32(0, 5) + val_f32(1, 5));
    report(rc == 0 && b[5] == want, "host posted sums through nccl", c->post_f32 ? err : "post_f32 is NULL");
    free(b);
}

static int child_failed(jm_coll *host, const char *err) {
    fprintf(rep, "R%d failed: %s\n", me, err);
    jm_dist_close(host);
    fclose(rep);
    return 3;
}

static int child(const char *what) {
    char path[1024], err[2048];
    snprintf(path, sizeof path, "%s/rank%s.txt", jt_env("T_NCCL_OUT", "."), jt_env("OMPI_COMM_WORLD_RANK", "x"));
    rep = fopen(path, "w");
    if (!rep) { perror(path); return 2; }
    setvbuf(rep, NULL, _IOLBF, 0);
    jm_coll *host = jm_dist_open(err, sizeof err);
    if (!host) { fprintf(rep, "Rx no MPI: %s\n", err[0] ? err : "not launched"); return 1; }
    me = host->rank;
    const char *br = getenv("T_NCCL_BREAK_RANK");     /* NCCL missing on that rank only */
    if (br && atoi(br) == me) setenv("JEMC_LIBNCCL", "/nonexistent/only-here/libnccl.so.2", 1);
    jm_coll *c = jm_dist_nccl_open(host, 0, err, sizeof err);
    if (!c) return child_failed(host, err);
    char det[640];
    snprintf(det, sizeof det, "name %s, rank %d of %d, local %d of %d", c->name, c->rank, c->size, c->local_rank, c->local_size);
    report(strcmp(c->name, "nccl") == 0 && c->rank == host->rank && c->size == 2 && c->local_rank == host->local_rank &&
           c->local_size == host->local_size && c->dev_allreduce && c->dev_poll, "open", det);
    if (strcmp(what, "async") == 0) {
        float x[4] = { 1, 2, 3, 4 };
        int rc = c->dev_allreduce(c, (uint64_t)(uintptr_t)x, 4, JM_COLL_F32, NULL, err, sizeof err);
        if (rc == 0) rc = c->dev_poll(c, err, sizeof err);
        fprintf(rep, "R%d poll %d: %s\n", me, rc, rc ? err : "");
        jm_dist_close(c);
        jm_dist_close(host);
        fclose(rep);
        return rc ? 4 : 0;
    }
    check_dev(c, 5003, JM_COLL_F32, "dev f32 sum");
    check_dev(c, 3001, JM_COLL_F64, "dev f64 sum");
    err[0] = 0;
    report(c->dev_poll(c, err, sizeof err) == 0, "dev_poll: no error", err);
    check_host_ops(c);
    double d = 0;
    int rc = c->dev_allreduce(c, (uint64_t)(uintptr_t)&d, 1, 9, NULL, err, sizeof err);
    report(rc == -1 && strstr(err, "unknown element type 9"), "an unknown element type is refused", err);
    jm_dist_close(c);
    report(host->barrier(host, err, sizeof err) == 0, "host still open after nccl's close", err);
    jm_dist_close(host);
    report(1, "closed", NULL);
    fclose(rep);
    return 0;
}

/* ---- in this process: a host transport of one rank ---- */

static int solo_f32(jm_coll *c, float *b, int64_t n, char *e, size_t l) { return 0; }
static int solo_f64(jm_coll *c, double *b, int64_t n, int op, char *e, size_t l) { return 0; }
static int solo_gather(jm_coll *c, const void *s, int64_t bytes, void *r, char *e, size_t l) { memcpy(r, s, (size_t)bytes); return 0; }
static int solo_bcast(jm_coll *c, void *b, int64_t bytes, int root, char *e, size_t l) { return 0; }
static int solo_barrier(jm_coll *c, char *e, size_t l) { return 0; }
static void solo_abort(jm_coll *c, int code) { exit(code); }
static jm_coll solo = { .name = "solo", .rank = 0, .size = 1, .local_rank = 0, .local_size = 1, .allreduce_f32 = solo_f32,
                        .allreduce_f64 = solo_f64, .allgather = solo_gather, .bcast = solo_bcast, .barrier = solo_barrier,
                        .abort = solo_abort };

static void open_solo(const char *lib, char *err, size_t cap) {
    if (lib) setenv("JEMC_LIBNCCL", lib, 1);
    else unsetenv("JEMC_LIBNCCL");
    err[0] = 0;
    jm_coll *c = jm_dist_nccl_open(&solo, 0, err, cap);
    if (c) { snprintf(err, cap, "opened"); jm_dist_close(c); }
}

/* line `line` of the candidate list, or -1 */
static int line_of(const char *list, const char *line) {
    int k = 0;
    for (const char *p = list; p && *p; k++) {
        size_t n = strcspn(p, "\n");
        if (strlen(line) == n && strncmp(p, line, n) == 0) return k;
        p += n + (p[n] == '\n');
    }
    return -1;
}

/* the search without JEMC_LIBNCCL: its list, then (where no NCCL is on the
   loader's path to come first) what it loads */
static void test_search(const char *fake) {
    char dir[] = "/tmp/t_nccl.XXXXXX", wheel[1200], cuda[1200], real[PATH_MAX], cmd[16384], out[256], err[4096], lib[1300];
    if (!mkdtemp(dir) || !realpath(fake, real)) { skip(4, "no temporary folder"); return; }
    snprintf(wheel, sizeof wheel, "%s/venv/lib/python3.11/site-packages/nvidia/nccl/lib", dir);
    snprintf(cuda, sizeof cuda, "%s/cuda/lib64", dir);
    snprintf(cmd, sizeof cmd, "mkdir -p %s %s && ln -s %s %s/libnccl.so.2 && ln -s %s %s/libnccl.so.2", wheel, cuda, real, wheel, real, cuda);
    jt_run(cmd, out, sizeof out);
    const char *vars[] = { "CUDA_HOME", "CUDA_PATH", "VIRTUAL_ENV", "CONDA_PREFIX", NULL };
    for (int i = 0; vars[i]; i++) unsetenv(vars[i]);
    char venv[1300], home[1300];
    snprintf(venv, sizeof venv, "%s/venv", dir);
    snprintf(home, sizeof home, "%s/cuda", dir);
    setenv("VIRTUAL_ENV", venv, 1);
    setenv("CUDA_HOME", home, 1);
    char *list = jm_dist_nccl_search();
    char at_cuda[1300], at_wheel[1300];
    snprintf(at_cuda, sizeof at_cuda, "%s/libnccl.so.2", cuda);
    snprintf(at_wheel, sizeof at_wheel, "%s/libnccl.so.2", wheel);
    int l0 = line_of(list, "libnccl.so.2"), lc = line_of(list, at_cuda), lw = line_of(list, at_wheel);
    if (!ok(l0 == 0 && lc > 0 && lw > lc, "the search: the loader's libnccl.so.2, then $CUDA_HOME/lib64, ..., then NVIDIA's wheel under $VIRTUAL_ENV"))
        tap_diag("lines %d %d %d of\n%s", l0, lc, lw, list ? list : "(null)");
    free(list);
    void *sys = dlopen("libnccl.so.2", RTLD_NOW | RTLD_NOLOAD);
    if (!sys) sys = dlopen("libnccl.so.2", RTLD_NOW);
    if (sys) skip(3, "an NCCL on the loader's path (ldconfig) comes first: the search's later places are not loaded here");
    else {
        setenv("FAKE_NCCL_VERSION", "21000", 1);   /* stops at the version check, whose message names the library */
        open_solo(NULL, err, sizeof err);
        snprintf(lib, sizeof lib, "at %s/libnccl.so.2", cuda);
        if (!ok(strstr(err, lib) != NULL, "loaded: $CUDA_HOME/lib64's before the wheel")) tap_diag("%s", err);
        unsetenv("CUDA_HOME");
        open_solo(NULL, err, sizeof err);
        snprintf(lib, sizeof lib, "at %s/libnccl.so.2", wheel);
        if (!ok(strstr(err, lib) != NULL, "loaded: NVIDIA's wheel under $VIRTUAL_ENV")) tap_diag("%s", err);
        unsetenv("VIRTUAL_ENV");
        open_solo(NULL, err, sizeof err);
        ok(strstr(err, "libnccl.so.2) was not found") && strstr(err, "nvidia/nccl/lib") && strstr(err, "JEMC_LIBNCCL"),
           "nothing found: where it looked, and JEMC_LIBNCCL");
        unsetenv("FAKE_NCCL_VERSION");
    }
    unsetenv("CUDA_HOME");
    unsetenv("VIRTUAL_ENV");
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    jt_run(cmd, out, sizeof out);
}

/* NVIDIA's NCCL where one is installed: it loads, is new enough and makes an
   id; on a machine without a GPU its ncclCommInitRank fails, and NCCL's own
   text comes back (on one with a GPU a communicator of one rank opens) */
static void test_real_nccl(void) {
    void *sys = dlopen("libnccl.so.2", RTLD_NOW);
    if (!sys) { skip(1, "NVIDIA's NCCL (libnccl.so.2) is not installed"); return; }
    char err[4096];
    open_solo(NULL, err, sizeof err);
    if (!ok(strcmp(err, "opened") == 0 || (strstr(err, "ncclCommInitRank (rank 0 of 1, CUDA device 0, NCCL at libnccl.so.2): ") &&
                                          !strstr(err, "unknown NCCL error")),
            "the installed NCCL loads, passes the version check and gets as far as ncclCommInitRank")) tap_diag("%s", err);
    else tap_diag("%s", err);
}

static void test_loading(void) {
    char err[4096], fake[1024];
    ok(jm_dist_nccl_open(NULL, 0, err, sizeof err) == NULL && strstr(err, "host transport"), "no host transport: refused");
    open_solo("/nonexistent/libnccl.so.2", err, sizeof err);
    ok(strstr(err, "/nonexistent/libnccl.so.2") && strstr(err, "JEMC_LIBNCCL") && strstr(err, "rank 0"),
       "a missing $JEMC_LIBNCCL: named, with the variable and the rank");
    tap_diag("%s", err);
    open_solo("libm.so.6", err, sizeof err);
    ok(strstr(err, "libm.so.6 is not NCCL") && strstr(err, "ncclGetVersion"), "a library without NCCL's functions is refused");
    fake_path(fake, sizeof fake);
    if (access(fake, R_OK) != 0) {
        char why[1200];
        snprintf(why, sizeof why, "%s is not built (make builds it when mpicc exists)", fake);
        skip(5, why);
        test_real_nccl();
        return;
    }
    setenv("FAKE_NCCL_VERSION", "21000", 1);
    open_solo(fake, err, sizeof err);
    ok(strstr(err, "NCCL 2.10.0") && strstr(err, "2.12 or newer") && strstr(err, fake), "NCCL 2.10 is refused, naming 2.12 and the library");
    tap_diag("%s", err);
    unsetenv("FAKE_NCCL_VERSION");
    test_search(fake);
    test_real_nccl();
}

/* ---- the declarations against a nccl.h ---- */

/* dist_nccl.c compiled after nccl.h: its functions' types (their parameter
   lists with NCCL's ncclUniqueId for its own) and constants must be nccl.h's */
static const char decls_check[] =
    "#include <nccl.h>\n"
    "#include \"dist/dist_nccl.c\"\n"
    "#define jm_nccl_id ncclUniqueId\n"
    "#define JM_SAME(ret, name, params) _Static_assert(__builtin_types_compatible_p(__typeof__(&name), ret (*) params), #name);\n"
    "JM_NCCL_FUNCS(JM_SAME)\n"
    "_Static_assert(__builtin_types_compatible_p(__typeof__(&ncclGetLastError), __typeof__(((jm_nccl_api *)0)->ncclGetLastError)), \"last\");\n"
    "_Static_assert(sizeof(jm_nccl_id) == sizeof(ncclUniqueId), \"id size\");\n"
    "_Static_assert(sizeof(jm_nccl_comm) == sizeof(ncclComm_t) && sizeof(jm_nccl_result) == sizeof(ncclResult_t), \"sizes\");\n"
    "_Static_assert(JM_NCCL_SUCCESS == ncclSuccess && JM_NCCL_UNHANDLED_CUDA_ERROR == ncclUnhandledCudaError &&\n"
    "    JM_NCCL_SYSTEM_ERROR == ncclSystemError && JM_NCCL_INTERNAL_ERROR == ncclInternalError &&\n"
    "    JM_NCCL_INVALID_ARGUMENT == ncclInvalidArgument && JM_NCCL_INVALID_USAGE == ncclInvalidUsage &&\n"
    "    JM_NCCL_REMOTE_ERROR == ncclRemoteError && JM_NCCL_IN_PROGRESS == ncclInProgress, \"results\");\n"
    "_Static_assert(JM_NCCL_FLOAT32 == ncclFloat32 && JM_NCCL_FLOAT64 == ncclFloat64 && JM_NCCL_SUM == ncclSum, \"types\");\n";

/* A stand-in nccl.h: what dist_nccl.c uses, declared from NCCL's documented
   API (enums, opaque handles, the unique id by value). float64_code is
   ncclFloat64's value: 8 as in NCCL, anything else to see the check fail. */
static void write_stand_in(const char *dir, int float64_code) {
    char p[1200];
    snprintf(p, sizeof p, "%s/nccl.h", dir);
    FILE *f = fopen(p, "w");
    if (!f) return;
    fprintf(f, "typedef struct CUstream_st *cudaStream_t;\ntypedef struct ncclComm *ncclComm_t;\n"
               "typedef struct { char internal[128]; } ncclUniqueId;\n"
               "typedef enum { ncclSuccess = 0, ncclUnhandledCudaError = 1, ncclSystemError = 2, ncclInternalError = 3,\n"
               "  ncclInvalidArgument = 4, ncclInvalidUsage = 5, ncclRemoteError = 6, ncclInProgress = 7, ncclNumResults = 8 } ncclResult_t;\n"
               "typedef enum { ncclSum = 0, ncclProd = 1, ncclMaxRedOp = 0x7fffffff } ncclRedOp_t;\n"
               "typedef enum { ncclFloat32 = 7, ncclFloat64 = %d, ncclNumTypes = 12 } ncclDataType_t;\n"
               "ncclResult_t ncclGetVersion(int *version);\nncclResult_t ncclGetUniqueId(ncclUniqueId *uniqueId);\n"
               "ncclResult_t ncclCommInitRank(ncclComm_t *comm, int nranks, ncclUniqueId commId, int rank);\n"
               "ncclResult_t ncclAllReduce(const void *sendbuff, void *recvbuff, size_t count, ncclDataType_t datatype,\n"
               "  ncclRedOp_t op, ncclComm_t comm, cudaStream_t stream);\n"
               "ncclResult_t ncclCommGetAsyncError(ncclComm_t comm, ncclResult_t *asyncError);\n"
               "ncclResult_t ncclCommAbort(ncclComm_t comm);\nncclResult_t ncclCommDestroy(ncclComm_t comm);\n"
               "const char *ncclGetErrorString(ncclResult_t result);\nconst char *ncclGetLastError(ncclComm_t comm);\n",
            float64_code);
    fclose(f);
}

/* compiles the check with nccl.h from inc (and CUDA's headers from cuda_inc) */
static int decls_compile(const char *dir, const char *inc, const char *cuda_inc, char *out, size_t cap) {
    char src[1200], cmd[4096];
    snprintf(src, sizeof src, "%s/nccl_decls_check.c", dir);
    FILE *f = fopen(src, "w");
    if (!f) { snprintf(out, cap, "cannot write %s", src); return -1; }
    fputs(decls_check, f);
    fclose(f);
    snprintf(cmd, sizeof cmd, "cc -std=gnu11 -fsyntax-only -Werror -D_GNU_SOURCE -include stddef.h -I%s%s%s -Iruntime %s", inc,
             cuda_inc ? " -I" : "", cuda_inc ? cuda_inc : "", src);
    return jt_run(cmd, out, cap);
}

/* the folder of an installed nccl.h and of CUDA's cuda_runtime.h, or NULL */
static const char *header_dir(const char *name, char *buf, size_t cap) {
    const char *home = getenv("CUDA_HOME");
    const char *dirs[] = { home && *home ? home : "/nonexistent", "/usr/local/cuda", "/usr", NULL };
    for (int i = 0; dirs[i]; i++) {
        char p[1200];
        snprintf(buf, cap, "%s/include", dirs[i]);
        snprintf(p, sizeof p, "%s/%s", buf, name);
        if (access(p, R_OK) == 0) return buf;
    }
    return NULL;
}

static void test_declarations(void) {
    char dir[] = "/tmp/t_nccl_h.XXXXXX", out[8192], nccl_inc[1024], cuda_inc[1024];
    if (!mkdtemp(dir)) { skip(3, "no temporary folder"); return; }
    write_stand_in(dir, 8);
    int rc = decls_compile(dir, dir, NULL, out, sizeof out);
    if (!ok(rc == 0, "the declaration check passes against a stand-in nccl.h with NCCL's values")) tap_diag("%.3000s", out);
    write_stand_in(dir, 9);
    rc = decls_compile(dir, dir, NULL, out, sizeof out);
    ok(rc != 0 && strstr(out, "types"), "and fails when one constant differs (ncclFloat64 = 9)");
    const char *ni = header_dir("nccl.h", nccl_inc, sizeof nccl_inc), *ci = header_dir("cuda_runtime.h", cuda_inc, sizeof cuda_inc);
    if (!ni || !ci)
        skip(1, "NVIDIA's nccl.h (with CUDA's cuda_runtime.h) is not installed: runtime/dist/dist_nccl.c is not checked against it");
    else {
        rc = decls_compile(dir, ni, ci, out, sizeof out);
        if (!ok(rc == 0, "runtime/dist/dist_nccl.c declares NCCL's functions and constants as %s/nccl.h does", ni)) tap_diag("%.3000s", out);
    }
    snprintf(out, sizeof out, "rm -rf %s", dir);
    char sink[256];
    jt_run(out, sink, sizeof sink);
}

/* ---- under mpirun ---- */

static char *slurp(const char *path) {
    FILE *f = fopen(path, "r");
    if (!f) return NULL;
    static char buf[2][16384];
    static int k;
    char *b = buf[k++ & 1];
    size_t n = fread(b, 1, sizeof buf[0] - 1, f);
    b[n] = 0;
    fclose(f);
    return b;
}

static const char *hash_of(const char *text, int r, const char *name, char *buf) {
    char key[128];
    snprintf(key, sizeof key, "R%d hash %s ", r, name);
    const char *p = text ? strstr(text, key) : NULL;
    buf[0] = 0;
    if (p) sscanf(p + strlen(key), "%16s", buf);
    return buf;
}

typedef struct { char dir[64], pre[1024], self[1024], fake[1024], shim[1024]; const char *r[2]; int st; double secs; } mpi_job;

/* runs `t_nccl --child what` on 2 ranks with extra environment; the reports in j->r */
static void job_run(mpi_job *j, const char *env, const char *what) {
    char cmd[8192], out[16384], p[2][1100];
    for (int r = 0; r < 2; r++) { snprintf(p[r], sizeof p[r], "%s/rank%d.txt", j->dir, r); remove(p[r]); }
    snprintf(cmd, sizeof cmd, "T_NCCL_OUT=%s JEMC_DIST_LIB=%s JEMC_LIBNCCL=%s %s %s %s --child %s </dev/null", j->dir, j->shim, j->fake, env,
             j->pre, j->self, what);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    j->st = jt_run(cmd, out, sizeof out);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    j->secs = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
    for (int r = 0; r < 2; r++) j->r[r] = slurp(p[r]);
    if (j->st == 124 || (!j->r[0] && !j->r[1])) tap_diag("%s\n%.2000s", cmd, out);
}

static void job_diag(const mpi_job *j) {
    tap_diag("status %d after %.1f s\nrank 0:\n%s\nrank 1:\n%s", j->st, j->secs, j->r[0] ? j->r[0] : "(no report)", j->r[1] ? j->r[1] : "(no report)");
}

/* both ranks failed to open, each message holding every needle and the
   reason of rank `cause` (-1: each rank's own), and the job ended nonzero by
   itself (124: the timeout's status, a hang) */
static void expect_failure(mpi_job *j, const char *env, const char *const *needles, int cause, const char *name) {
    job_run(j, env, "open");
    int good = j->st != 0 && j->st != 124 && j->secs < 60;
    for (int r = 0; r < 2; r++) {
        char key[32], whose[32];
        snprintf(key, sizeof key, "R%d failed: ", r);
        snprintf(whose, sizeof whose, "(rank %d: ", cause < 0 ? r : cause);
        const char *m = j->r[r] ? strstr(j->r[r], key) : NULL;
        good = good && m && strstr(m, whose);
        for (int i = 0; m && needles[i]; i++) good = good && strstr(m, needles[i]);
    }
    if (!ok(good, "%s", name)) job_diag(j);
    else tap_diag("rank 0: %.*s", (int)strcspn(strstr(j->r[0], "failed"), "\n"), strstr(j->r[0], "failed"));
}

static const char *checks[] = { "open", "dev f32 sum", "dev f32 sum: in place, on the stream", "dev f64 sum",
                                "dev f64 sum: in place, on the stream", "dev_poll: no error", "host allreduce_f32 through nccl",
                                "host f64 max, allgather, bcast, barrier", "host posted sums through nccl",
                                "an unknown element type is refused", "host still open after nccl's close", "closed", NULL };
#define N_MPI_POINTS (1 + 12 + 2 + 5)     /* the job, the checks, the hashes, the five failures */

static void test_mpi(const char *self) {
    char why[600];
    mpi_job j;
    memset(&j, 0, sizeof j);
    fake_path(j.fake, sizeof j.fake);
    if (!jt_mpi_usable(why, sizeof why)) { skip(N_MPI_POINTS, why); return; }
    if (access(j.fake, R_OK) != 0) {
        snprintf(why, sizeof why, "%.500s is not built (make builds it when mpicc exists)", j.fake);
        skip(N_MPI_POINTS, why);
        return;
    }
    snprintf(j.dir, sizeof j.dir, "/tmp/t_nccl_mpi.XXXXXX");
    if (!mkdtemp(j.dir)) { skip(N_MPI_POINTS, "no temporary folder"); return; }
    snprintf(j.self, sizeof j.self, "%s", self);
    jt_mpi_shim_path(j.shim, sizeof j.shim);
    jt_mpi_prefix(j.pre, sizeof j.pre, 2, 1);

    job_run(&j, "", "ops");
    if (!ok(j.st == 0, "mpirun -np 2 t_nccl --child ops exits 0")) job_diag(&j);
    for (int i = 0; checks[i]; i++) {
        char k0[160], k1[160];
        snprintf(k0, sizeof k0, "R0 ok %s\n", checks[i]);
        snprintf(k1, sizeof k1, "R1 ok %s\n", checks[i]);
        if (!ok(j.r[0] && j.r[1] && strstr(j.r[0], k0) && strstr(j.r[1], k1), "both ranks: %s", checks[i])) job_diag(&j);
    }
    const char *hashed[] = { "dev f32 sum", "dev f64 sum" };
    for (int i = 0; i < 2; i++) {
        char h0[32], h1[32];
        hash_of(j.r[0], 0, hashed[i], h0);
        hash_of(j.r[1], 1, hashed[i], h1);
        if (!ok(h0[0] && strcmp(h0, h1) == 0, "%s: both ranks have the same bits", hashed[i])) tap_diag("rank 0 %s, rank 1 %s", h0, h1);
    }

    const char *missing[] = { "/nonexistent/libnccl.so.2", "JEMC_LIBNCCL", "rank 0, 1 of 2", NULL };
    expect_failure(&j, "JEMC_LIBNCCL=/nonexistent/libnccl.so.2", missing, -1, "NCCL missing: both ranks fail, each with its own reason, naming the library and JEMC_LIBNCCL");
    const char *one[] = { "rank 1 of 2", "/nonexistent/only-here/libnccl.so.2", "JEMC_LIBNCCL", NULL };
    expect_failure(&j, "T_NCCL_BREAK_RANK=1", one, 1, "NCCL missing on rank 1 only: rank 0 does not wait for it, both name rank 1 and why");
    const char *old[] = { "2.12 or newer", "NCCL 2.10.0", NULL };
    expect_failure(&j, "FAKE_NCCL_VERSION=21000", old, -1, "NCCL 2.10: refused on both ranks, naming 2.12");
    const char *init[] = { "NCCL did not start on rank 1 of 2 (rank 1: ncclCommInitRank (rank 1 of 2", "FAKE_NCCL_INIT_FAIL_RANK",
                           "unhandled system error", NULL };
    expect_failure(&j, "FAKE_NCCL_INIT_FAIL_RANK=1", init, 1, "ncclCommInitRank fails on rank 1: both ranks fail with its reason, no hang");

    job_run(&j, "FAKE_NCCL_ASYNC_ERROR_RANK=1", "async");
    const char *p1 = j.r[1] ? strstr(j.r[1], "R1 poll -1: ") : NULL;
    int good = j.st != 0 && j.st != 124 && j.r[0] && strstr(j.r[0], "R0 poll 0: ") && p1 &&
               strstr(p1, "NCCL asynchronous error on rank 1: remote process exited or there was a network error") &&
               strstr(p1, "FAKE_NCCL_ASYNC_ERROR_RANK");
    if (!ok(good, "an asynchronous error on rank 1: dev_poll says so there, with NCCL's text; rank 0's poll is clean")) job_diag(&j);
    else tap_diag("%.*s", (int)strcspn(p1, "\n"), p1);
    char sink[256], cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", j.dir);
    jt_run(cmd, sink, sizeof sink);
}

int main(int argc, char **argv) {
    if (argc >= 3 && strcmp(argv[1], "--child") == 0) return child(argv[2]);
    test_loading();
    test_declarations();
    test_mpi(argv[0]);
    return tap_done();
}
