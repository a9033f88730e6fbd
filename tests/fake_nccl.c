/* fake_nccl.c — a CPU stand-in for NCCL (libnccl.so.2), built with
 * `mpicc -shared -fPIC` into build/tests/libfakenccl.so, which t_nccl loads in
 * place of the real one (JEMC_LIBNCCL). It tests runtime/dist/dist_nccl.c's
 * host side on a machine without a GPU: which NCCL functions it resolves and
 * calls with which arguments, its bootstrap (rank 0's unique id reaching every
 * rank), its in-place sums, its error paths and messages.
 *
 * "Device memory" is host memory and a CUDA stream is an opaque pointer: an
 * all-reduce is MPI_Allreduce over MPI_COMM_WORLD at once, on the calling
 * thread (the ranks are MPI's, started by jemc's MPI shim before NCCL is
 * opened; this library only joins the MPI already running). What it does not
 * check: anything of CUDA (a current context, device pointers, stream order,
 * kernels), NCCL's own transports and topology, nonblocking communicators,
 * timeouts; what a real GPU does is only checked on a machine with NCCL.
 *
 * The rules real NCCL enforces and a careless caller breaks fail here too:
 *   - ncclCommInitRank: every rank must pass the same unique id (the one rank
 *     0's ncclGetUniqueId wrote), nranks must be the job's size and rank this
 *     process's MPI rank; else ncclInvalidUsage, with the reason for
 *     ncclGetLastError. A rank whose init fails makes every rank's fail (the
 *     real NCCL's peers would fail or time out in the bootstrap): the ranks
 *     agree by an MPI_Allreduce of a flag, so that none hangs.
 *   - ncclAllReduce: a communicator this library made, float32 or float64
 *     with ncclSum only; in place when sendbuff == recvbuff (MPI_IN_PLACE),
 *     else copied. fake_nccl_last reports the last call's arguments.
 * Faults to inject, by environment variable:
 *   FAKE_NCCL_VERSION=CODE         ncclGetVersion says CODE (default 22105: 2.21.5)
 *   FAKE_NCCL_INIT_FAIL_RANK=R     ncclCommInitRank fails on rank R (ncclSystemError)
 *   FAKE_NCCL_ASYNC_ERROR_RANK=R   on rank R, once an all-reduce has run,
 *                                  ncclCommGetAsyncError reports ncclRemoteError */
#include <mpi.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define FAKE_API __attribute__((visibility("default")))

/* the declarations of runtime/dist/dist_nccl.c, as nccl.h has them */
typedef unsigned int ncclResult_t;
typedef struct { char internal[128]; } ncclUniqueId;
enum { ncclSuccess = 0, ncclUnhandledCudaError = 1, ncclSystemError = 2, ncclInternalError = 3, ncclInvalidArgument = 4,
       ncclInvalidUsage = 5, ncclRemoteError = 6, ncclInProgress = 7 };
enum { ncclFloat32 = 7, ncclFloat64 = 8 };
enum { ncclSum = 0 };

#define FAKE_MAGIC 0x6e63636cu      /* "nccl" */
struct ncclComm {
    unsigned magic;
    int rank, nranks;
    long allreduces;
    char last[512];                 /* this communicator's last error */
};
typedef struct ncclComm *ncclComm_t;

static char fake_last[512];         /* the last error without a communicator (init) */

static int fake_env_int(const char *name, int def) {
    const char *v = getenv(name);
    return v && *v ? atoi(v) : def;
}

static ncclResult_t fake_fail(ncclComm_t comm, ncclResult_t r, const char *why) {
    snprintf(comm ? comm->last : fake_last, sizeof fake_last, "fake NCCL: %s", why);
    return r;
}

FAKE_API ncclResult_t ncclGetVersion(int *version) {
    if (!version) return fake_fail(NULL, ncclInvalidArgument, "ncclGetVersion: NULL version");
    *version = fake_env_int("FAKE_NCCL_VERSION", 22105);
    return ncclSuccess;
}

/* recognizable bytes: "fake-nccl-id pid P time T" then a pattern from both */
FAKE_API ncclResult_t ncclGetUniqueId(ncclUniqueId *id) {
    if (!id) return fake_fail(NULL, ncclInvalidArgument, "ncclGetUniqueId: NULL id");
    unsigned seed = (unsigned)getpid() * 2654435761u ^ (unsigned)time(NULL);
    memset(id, 0, sizeof *id);
    int n = snprintf(id->internal, sizeof id->internal, "fake-nccl-id pid %d time %ld", (int)getpid(), (long)time(NULL));
    for (size_t i = (size_t)n + 1; i < sizeof id->internal; i++) {
        seed = seed * 1103515245u + 12345u;
        id->internal[i] = (char)(seed >> 16);
    }
    return ncclSuccess;
}

FAKE_API const char *ncclGetErrorString(ncclResult_t r) {
    switch (r) {
    case ncclSuccess: return "no error";
    case ncclUnhandledCudaError: return "unhandled cuda error (run with NCCL_DEBUG=INFO for details)";
    case ncclSystemError: return "unhandled system error (run with NCCL_DEBUG=INFO for details)";
    case ncclInternalError: return "internal error - please report this issue to the NCCL developers";
    case ncclInvalidArgument: return "invalid argument (run with NCCL_DEBUG=WARN for details)";
    case ncclInvalidUsage: return "invalid usage (run with NCCL_DEBUG=WARN for details)";
    case ncclRemoteError: return "remote process exited or there was a network error";
    case ncclInProgress: return "NCCL operation in progress";
    default: return "unknown result code";
    }
}

FAKE_API const char *ncclGetLastError(ncclComm_t comm) {
    return comm && comm->magic == FAKE_MAGIC ? comm->last : fake_last;
}

/* this rank's own checks of ncclCommInitRank's arguments; 0 or the reason in why */
static int fake_init_check(int nranks, const ncclUniqueId *id, int rank, char *why, size_t n) {
    int inited = 0, size = 0, me = 0;
    MPI_Initialized(&inited);
    if (!inited) { snprintf(why, n, "MPI is not running (the fake joins the ranks of jemc's MPI shim)"); return -1; }
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    MPI_Comm_rank(MPI_COMM_WORLD, &me);
    if (nranks != size) { snprintf(why, n, "ncclCommInitRank: nranks %d, but the job has %d", nranks, size); return -1; }
    if (rank != me) { snprintf(why, n, "ncclCommInitRank: rank %d, but this is rank %d", rank, me); return -1; }
    if (strncmp(id->internal, "fake-nccl-id ", 13) != 0) { snprintf(why, n, "ncclCommInitRank: the id is not one ncclGetUniqueId made"); return -1; }
    if (fake_env_int("FAKE_NCCL_INIT_FAIL_RANK", -1) == me) {
        snprintf(why, n, "ncclCommInitRank failed on rank %d (FAKE_NCCL_INIT_FAIL_RANK)", me);
        return -2;
    }
    return 0;
}

/* every rank's id must be rank 0's (collective: every rank gets here) */
static int fake_same_id(const ncclUniqueId *id, int size, char *why, size_t n) {
    char *all = malloc(sizeof *id * (size_t)size);
    if (!all || MPI_Allgather(id, (int)sizeof *id, MPI_BYTE, all, (int)sizeof *id, MPI_BYTE, MPI_COMM_WORLD) != MPI_SUCCESS) {
        free(all);
        snprintf(why, n, "MPI_Allgather of the ids failed");
        return -1;
    }
    for (int r = 1; r < size; r++)
        if (memcmp(all, all + (size_t)r * sizeof *id, sizeof *id) != 0) {
            snprintf(why, n, "ncclCommInitRank: rank %d passed another unique id than rank 0", r);
            free(all);
            return -1;
        }
    free(all);
    return 0;
}

FAKE_API ncclResult_t ncclCommInitRank(ncclComm_t *comm, int nranks, ncclUniqueId id, int rank) {
    char why[400] = "";
    if (!comm) return fake_fail(NULL, ncclInvalidArgument, "ncclCommInitRank: NULL comm");
    *comm = NULL;
    int mine = fake_init_check(nranks, &id, rank, why, sizeof why);
    if (mine == -1 && !why[0]) snprintf(why, sizeof why, "bad arguments");
    int inited = 0, size = 1;
    MPI_Initialized(&inited);
    if (!inited) return fake_fail(NULL, ncclInvalidUsage, why);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    /* the ids go round even when this rank's arguments are bad: the others are in it */
    char idwhy[200] = "";
    if (fake_same_id(&id, size, idwhy, sizeof idwhy) != 0 && !mine) {
        mine = -1;
        snprintf(why, sizeof why, "%s", idwhy);
    }
    int good = mine == 0, all = 0;
    if (MPI_Allreduce(&good, &all, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD) != MPI_SUCCESS)
        return fake_fail(NULL, ncclSystemError, "MPI_Allreduce of the init flags failed");
    if (mine == -1) return fake_fail(NULL, ncclInvalidUsage, why);
    if (mine == -2) return fake_fail(NULL, ncclSystemError, why);
    if (!all) return fake_fail(NULL, ncclRemoteError, "ncclCommInitRank: another rank's init failed");
    ncclComm_t c = calloc(1, sizeof *c);
    if (!c) return fake_fail(NULL, ncclSystemError, "out of memory");
    c->magic = FAKE_MAGIC;
    c->rank = rank;
    c->nranks = nranks;
    *comm = c;
    return ncclSuccess;
}

/* the last all-reduce's arguments, for the test (dlsym'd from the same library) */
static struct { const void *send; void *recv; size_t count; unsigned type; void *stream; } fake_seen;
FAKE_API void fake_nccl_last(const void **send, void **recv, size_t *count, unsigned *type, void **stream) {
    *send = fake_seen.send;
    *recv = fake_seen.recv;
    *count = fake_seen.count;
    *type = fake_seen.type;
    *stream = fake_seen.stream;
}

FAKE_API ncclResult_t ncclAllReduce(const void *send, void *recv, size_t count, unsigned type, unsigned op, ncclComm_t comm,
                                    void *stream) {
    fake_seen.send = send; fake_seen.recv = recv; fake_seen.count = count; fake_seen.type = type; fake_seen.stream = stream;
    if (!comm || comm->magic != FAKE_MAGIC) return fake_fail(NULL, ncclInvalidArgument, "ncclAllReduce: not a communicator");
    if (type != ncclFloat32 && type != ncclFloat64) return fake_fail(comm, ncclInvalidArgument, "ncclAllReduce: the fake sums float32 and float64 only");
    if (op != ncclSum) return fake_fail(comm, ncclInvalidArgument, "ncclAllReduce: the fake has ncclSum only");
    if (count > 0x7fffffff) return fake_fail(comm, ncclInvalidArgument, "ncclAllReduce: the fake takes at most 2^31-1 elements");
    if (!send || !recv) return fake_fail(comm, ncclInvalidArgument, "ncclAllReduce: NULL buffer");
    MPI_Datatype t = type == ncclFloat32 ? MPI_FLOAT : MPI_DOUBLE;
    /* sendbuff == recvbuff is NCCL's in-place form: MPI's is MPI_IN_PLACE */
    int rc = MPI_Allreduce(send == recv ? MPI_IN_PLACE : send, recv, (int)count, t, MPI_SUM, MPI_COMM_WORLD);
    if (rc != MPI_SUCCESS) return fake_fail(comm, ncclSystemError, "ncclAllReduce: MPI_Allreduce failed");
    comm->allreduces++;
    return ncclSuccess;
}

FAKE_API ncclResult_t ncclCommGetAsyncError(ncclComm_t comm, ncclResult_t *async_error) {
    if (!comm || comm->magic != FAKE_MAGIC || !async_error) return fake_fail(NULL, ncclInvalidArgument, "ncclCommGetAsyncError: bad arguments");
    *async_error = ncclSuccess;
    if (comm->allreduces > 0 && fake_env_int("FAKE_NCCL_ASYNC_ERROR_RANK", -1) == comm->rank) {
        fake_fail(comm, ncclRemoteError, "rank's peer connection dropped (FAKE_NCCL_ASYNC_ERROR_RANK)");
        *async_error = ncclRemoteError;
    }
    return ncclSuccess;
}

static ncclResult_t fake_free(ncclComm_t comm, const char *what) {
    if (!comm || comm->magic != FAKE_MAGIC) return fake_fail(NULL, ncclInvalidArgument, what);
    comm->magic = 0;
    free(comm);
    return ncclSuccess;
}
FAKE_API ncclResult_t ncclCommDestroy(ncclComm_t comm) { return fake_free(comm, "ncclCommDestroy: not a communicator"); }
FAKE_API ncclResult_t ncclCommAbort(ncclComm_t comm) { return fake_free(comm, "ncclCommAbort: not a communicator"); }
