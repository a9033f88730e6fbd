/* dist.h — the process group of a multi-process (data-parallel) run: finds
 * out whether an MPI launcher started this executable and, only then, loads
 * the MPI shim (libjemc_dist.so, built from dist_mpi.c with mpicc) and opens
 * its collectives (engine/rt_coll.h). This file and dist.c never include
 * mpi.h: an executable started without a launcher never loads MPI. */
#ifndef JM_DIST_H
#define JM_DIST_H
#include "engine/rt_coll.h"
#include <stddef.h>

/* 1 when the environment says a launcher started this process as one rank of
   a job (any size, -np 1 included): Open MPI's mpirun (OMPI_COMM_WORLD_SIZE),
   a PMIx launcher (PMIX_RANK), a PMI one such as MPICH's hydra or srun
   --mpi=pmi2 (PMI_RANK, PMI_SIZE), or srun starting several tasks
   (SLURM_STEP_NUM_TASKS > 1). 0 otherwise: a plain start, an sbatch script
   (SLURM_NTASKS alone), `srun -n 1`. */
int jm_dist_launched(void);

/* The number of this job's processes on this machine as the launcher's
   environment gives it (OMPI_COMM_WORLD_LOCAL_SIZE, MPI_LOCALNRANKS,
   SLURM_STEP_TASKS_PER_NODE); 1 when not launched, 0 when launched but the
   environment does not say. Read before MPI starts, to size each rank's threads. */
int jm_dist_local_size_env(void);

/* The group's collectives, or NULL: with err[0] == 0 when not launched (a
   singleton: nothing is loaded), with a message when launched but the shim
   cannot be loaded or MPI cannot start. The shim is $JEMC_DIST_LIB when set,
   else "libjemc_dist.so" found through the executable's RUNPATH (jemc links
   executables with its own folder there) or LD_LIBRARY_PATH. */
jm_coll *jm_dist_open(char *err, size_t errlen);

/* Finalizes the group (collective: every rank calls it last) and frees c.
   NULL is allowed. The shim stays loaded: MPI cannot be unloaded safely. */
void jm_dist_close(jm_coll *c);

/* The shim's one entry point, and its signature: it fills c (coll_size is the
   caller's sizeof(jm_coll), so a shim built against another rt_coll.h refuses). */
#define JM_DIST_ENTRY "jm_dist_mpi_open"
typedef int jm_dist_entry_fn(jm_coll *c, size_t coll_size, char *err, size_t errlen);

/* ---- NCCL (dist_nccl.c): the device-memory sum of GPU ranks ----
   Opens NCCL over the ranks of `host` (a transport from jm_dist_open, which
   bootstraps it): collective, every rank calls it with its CUDA context
   current (cuda_device names that context's device in messages). NCCL is
   $JEMC_LIBNCCL alone when set, else libnccl.so.2 through the loader, CUDA's
   folders (CUDA_HOME, CUDA_PATH, /usr/local/cuda*), NVIDIA's Python wheels
   (site-packages/nvidia/nccl/lib) or /usr/lib/x86_64-linux-gnu; 2.12 or newer.
   Every rank succeeds or every rank fails: a rank that cannot load NCCL or
   start its communicator makes the others fail too, each with a message
   naming the failed ranks and the reason (the failing rank's own on it).
   The result's name is "nccl", its ranks are host's; dev_allreduce and
   dev_poll are NCCL's (ncclAllReduce in place with ncclSum on the caller's
   stream; ncclCommGetAsyncError), the host-memory operations are host's, and
   abort aborts the communicator, then the job through host. Who finalizes
   what: jm_dist_close(nccl) ends the communicator only (ncclCommDestroy, or
   ncclCommAbort after an NCCL error) and frees it; host stays the caller's,
   closed after it with jm_dist_close(host). NULL and err on failure. */
jm_coll *jm_dist_nccl_open(jm_coll *host, int cuda_device, char *err, size_t errlen);

/* The places jm_dist_nccl_open tries when JEMC_LIBNCCL is not set, in order,
   one a line ("libnccl.so.2" first: the loader's path), folders that exist
   only; malloc'd (free it), NULL when out of memory. */
char *jm_dist_nccl_search(void);
#endif
