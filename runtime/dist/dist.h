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
#endif
