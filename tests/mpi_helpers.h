/* tests/mpi_helpers.h — running a test's commands under Open MPI's mpirun in
 * this container: as root, 2 cores, no ssh, no ptrace (research/distributed.md
 * §2 and §6). Used by t_dist.c and the multi-process training tests.
 *
 *   jt_mpi_prefix(buf, cap, np, threads)  the command prefix: environment,
 *                        `timeout 120 mpirun -np N`; append the executable
 *   jt_mpi_usable(why, cap)  1 when mpirun can start 2 ranks here and jemc's
 *                        MPI shim is built; else 0 and why (for a SKIP) */
#ifndef JM_MPI_HELPERS_H
#define JM_MPI_HELPERS_H
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* Each setting, and why:
 *   ALLOW_RUN_AS_ROOT{,_CONFIRM}  mpirun refuses root otherwise (CI containers run as root)
 *   btl=self,vader                on-machine transports only (no TCP probing)
 *   vader single copy = none      CMA needs CAP_SYS_PTRACE: without it, "Read -1, expected N"
 *   rmaps oversubscribe           more ranks than cores (-np 3 on 2 cores) still start
 *   binding policy none           else each of 2 ranks is bound to one core, with all its threads
 *   plm=isolated                  no ssh/rsh agent here: mpirun fails looking for one
 *   OMP_NUM_THREADS               threads per rank (threads > 0; 0 leaves it to the executable)
 *   LSAN_OPTIONS (SAN=1 only)     detect_leaks=0 in the ranks: MPI_Finalize unloads Open MPI's
 *                                 plugins, so what they keep until exit shows as leaks of an
 *                                 "<unknown module>" that no suppression can name
 *   timeout 120                   a hung job ends the test, not the suite */
#if defined(__SANITIZE_ADDRESS__)
#define JT_MPI_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define JT_MPI_SANITIZED 1
#endif
#endif
static inline void jt_mpi_prefix(char *buf, size_t cap, int np, int threads) {
    char omp[48] = "", lsan[600] = "";
    if (threads > 0) snprintf(omp, sizeof omp, "OMP_NUM_THREADS=%d ", threads);
#ifdef JT_MPI_SANITIZED
    const char *had = getenv("LSAN_OPTIONS");
    snprintf(lsan, sizeof lsan, "LSAN_OPTIONS='%.500s%sdetect_leaks=0' ", had ? had : "", had && *had ? ":" : "");
#endif
    snprintf(buf, cap,
             "env OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_btl=self,vader "
             "OMPI_MCA_btl_vader_single_copy_mechanism=none OMPI_MCA_rmaps_base_oversubscribe=1 "
             "OMPI_MCA_hwloc_base_binding_policy=none OMPI_MCA_plm=isolated %s%s"
             "timeout 120 mpirun -np %d",
             omp, lsan, np);
}

/* The build folder's MPI shim: $JM_BUILD/libjemc_dist.so (JM_BUILD defaults to build). */
static inline void jt_mpi_shim_path(char *buf, size_t cap) {
    const char *b = getenv("JM_BUILD");
    snprintf(buf, cap, "%s/libjemc_dist.so", b && *b ? b : "build");
}

/* Whether MPI can start here, once per process (a trial job of 2 ranks, ~1 s);
   when not, why in `why`. */
static inline int jt_mpi_usable(char *why, size_t cap) {
    static int known = -1;
    static char reason[1200];
    if (known < 0) {
        char shim[1024], cmd[2048], trial[4096] = "";
        jt_mpi_shim_path(shim, sizeof shim);
        known = 0;
        if (system("command -v mpirun >/dev/null 2>&1") != 0)
            snprintf(reason, sizeof reason, "no mpirun (apt-get install openmpi-bin libopenmpi-dev)");
        else if (access(shim, R_OK) != 0)
            snprintf(reason, sizeof reason, "%.1024s is not built (make builds it when mpicc exists)", shim);
        else {
            jt_mpi_prefix(cmd, sizeof cmd, 2, 1);
            strncat(cmd, " true </dev/null 2>&1", sizeof cmd - strlen(cmd) - 1);
            FILE *p = popen(cmd, "r");
            size_t n = p ? fread(trial, 1, sizeof trial - 1, p) : 0;
            trial[n] = 0;
            int st = p ? pclose(p) : -1;
            if (st == 0) known = 1;
            else {
                char *nl = strchr(trial, '\n');
                if (nl) *nl = 0;
                snprintf(reason, sizeof reason, "mpirun cannot start 2 ranks here (status %d: %.200s)",
                         WIFEXITED(st) ? WEXITSTATUS(st) : -1, trial);
            }
        }
    }
    if (why && cap) snprintf(why, cap, "%.*s", (int)(cap - 1), known ? "" : reason);
    return known;
}
#endif
