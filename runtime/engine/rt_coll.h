/* rt_coll.h — collective operations over a group of processes: what
 * data-parallel training needs from a transport, as a table of operations.
 *
 *   MPI   runtime/dist/ (dist_mpi.c, built with mpicc into libjemc_dist.so and
 *         dlopened only when the executable is started by an MPI launcher)
 *
 * The engine calls a transport only through this table (rt_dp.c: a training
 * step's gradient mean, its replay-buffer rows, its metrics); the application
 * opens one (runtime/dist/dist.h) and gives it to the runtime. Every operation
 * is collective: every rank calls it, in the same order, with the same sizes.
 * Each returns 0, or -1 with a message in err (the MPI error's text). */
#ifndef JM_RT_COLL_H
#define JM_RT_COLL_H
#include <stddef.h>
#include <stdint.h>

enum { JM_COLL_SUM = 0, JM_COLL_MIN = 1, JM_COLL_MAX = 2 };
enum { JM_COLL_F32 = 0, JM_COLL_F64 = 1 };     /* dev_allreduce's element types */

typedef struct jm_coll jm_coll;
struct jm_coll {
    const char *name;                /* "mpi" */
    int rank, size;                  /* this process in the group, and the group's size */
    int local_rank, local_size;      /* the same among the processes on this machine */
    /* the sum over ranks of n floats, in place; every rank gets the same bits
       (for two ranks: a + b, which is b + a) */
    int (*allreduce_f32)(jm_coll *c, float *buf, int64_t n, char *err, size_t errlen);
    /* sum, min or max (JM_COLL_*) over ranks of n doubles, in place */
    int (*allreduce_f64)(jm_coll *c, double *buf, int64_t n, int op, char *err, size_t errlen);
    /* every rank's `bytes` bytes of send, concatenated in rank order into recv
       (size * bytes); send and recv do not overlap */
    int (*allgather)(jm_coll *c, const void *send, int64_t bytes, void *recv, char *err, size_t errlen);
    /* root's bytes into every rank's buf */
    int (*bcast)(jm_coll *c, void *buf, int64_t bytes, int root, char *err, size_t errlen);
    int (*barrier)(jm_coll *c, char *err, size_t errlen);
    /* Sums that overlap computation (rt_dp.c: a gradient bucket as soon as
       the backward pass has finished it). post_f32 starts the sum over ranks
       of n floats in place and returns at once: buf is not touched by the
       caller until wait_all returns. progress lets the transport advance the
       posted sums (MPI advances them only inside its calls; the runtime calls
       it between steps). wait_all completes every posted sum. The bits are
       those of allreduce_f32. NULL where the transport has none (then the
       runtime exchanges after the phase, with allreduce_f32). */
    int (*post_f32)(jm_coll *c, float *buf, int64_t n, char *err, size_t errlen);
    int (*progress)(jm_coll *c, char *err, size_t errlen);
    int (*wait_all)(jm_coll *c, char *err, size_t errlen);
    /* Device-memory collectives (NCCL, runtime/dist/dist_nccl.c): NULL in a
       host transport. dev_allreduce enqueues the in-place sum over ranks of n
       elements (JM_COLL_F32 or JM_COLL_F64) at device address buf on the CUDA
       stream `stream` (a CUstream) and returns: the stream orders it before
       what follows. dev_poll reports an asynchronous error of the transport
       (a peer gone, a network fault): 0, or -1 with the message; the runtime
       polls it while it waits for the stream. */
    int (*dev_allreduce)(jm_coll *c, uint64_t buf, int64_t n, int dtype, void *stream, char *err, size_t errlen);
    int (*dev_poll)(jm_coll *c, char *err, size_t errlen);
    /* ends every process of the job now with exit status code (MPI_Abort) */
    void (*abort)(jm_coll *c, int code);
    /* the last call, on every rank (MPI_Finalize) */
    void (*finalize)(jm_coll *c);
    void *impl;
};
#endif
