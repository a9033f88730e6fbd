/* rt_threads.h — an executable's OpenMP threads, chosen in main() before the
 * runtime starts OpenMP: how many per rank, and how idle threads wait. */
#ifndef JM_RT_THREADS_H
#define JM_RT_THREADS_H

/* 1. Threads per rank: started by a launcher with L > 1 ranks on this machine,
 *    and given neither --threads N nor OMP_NUM_THREADS, each rank uses
 *    max(1, usable cores / L) threads (OMP_NUM_THREADS is set for it and
 *    omp_set_num_threads called: libgomp read the variable when it loaded).
 * 2. Waiting: libgomp spins at barriers (~300,000 iterations), which collapses
 *    when its threads share cores with other busy threads. Given neither
 *    OMP_WAIT_POLICY nor GOMP_SPINCOUNT, when the process will use T >= 2
 *    threads and T x L > usable cores, or (when it is the job's only process
 *    on this machine) another process is using a core right now, it re-executes itself once
 *    (the file /proc/self/exe names, same argv) with OMP_WAIT_POLICY=passive: libgomp reads
 *    that only at load. Otherwise, or when it cannot re-execute, it returns
 *    and nothing changed. Quiet singletons return without re-executing. */
void jm_threads_setup(int argc, char **argv);

/* The decision of 2 without acting on it: 1 to re-execute, 0 not.
 * threads: as resolved by 1 (0: libgomp's default, all usable cores);
 * local: ranks on this machine; cores: usable cores; others_busy: cores other
 * processes are using (measured only when L = 1, 0 when quiet). */
int jm_threads_want_passive(int threads, int local, int cores, int others_busy);
#endif
