/* rt_threads.c — threads per rank and libgomp's wait policy (rt_threads.h).
 * Measured figures behind the rules: bench/RESULTS.md, "Threads on shared cores". */
#include "rt_threads.h"
#include "dist/dist.h"
#include <omp.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* set in the re-executed process: it never re-executes again */
#define JM_THREADS_SENTINEL "JEMC_THREADS_REEXEC"

/* The cores this process may run on (its affinity mask; libgomp's default thread count). */
static int jm_threads_cores(void) {
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) > 0) return CPU_COUNT(&set);
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

/* The threads the user asked for: --threads N (N > 0; 0 means the default, as
   in rt_cli.c), else OMP_NUM_THREADS's first number; 0 when neither. */
static int jm_threads_given(int argc, char **argv) {
    for (int i = 1; i + 1 < argc; i++)
        if (strcmp(argv[i], "--threads") == 0) {
            int n = atoi(argv[i + 1]);
            if (n > 0) return n;
        }
    const char *v = getenv("OMP_NUM_THREADS");
    int n = v ? atoi(v) : 0;
    return n > 0 ? n : 0;
}

/* Non-idle and total jiffies of the CPUs in this process's affinity mask
   (their "cpuN" lines of /proc/stat); -1 when unreadable. */
static int jm_threads_cpu_times(long long *busy, long long *total) {
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) != 0) return -1;
    FILE *f = fopen("/proc/stat", "r");
    if (!f) return -1;
    char line[512];
    *busy = *total = 0;
    while (fgets(line, sizeof line, f)) {
        int cpu;
        long long v[8] = { 0 };
        if (strncmp(line, "cpu", 3) != 0 || line[3] < '0' || line[3] > '9') continue;
        if (sscanf(line + 3, "%d %lld %lld %lld %lld %lld %lld %lld %lld", &cpu, &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &v[6], &v[7]) < 5) continue;
        if (cpu < 0 || cpu >= CPU_SETSIZE || !CPU_ISSET(cpu, &set)) continue;
        long long all = 0;
        for (int i = 0; i < 8; i++) all += v[i];
        *total += all;
        *busy += all - v[3] - v[4];     /* idle and iowait are the only idle columns */
    }
    fclose(f);
    return *total > 0 ? 0 : -1;
}

/* How many of this process's cores other processes are using now, rounded.
   First /proc/loadavg's count of runnable threads (we are one): 1 on a quiet
   machine (99.4% of 2,000 reads here; 99% read 2 beside one busy process), and
   then we return 0 at once, so the quiet path costs one small read. Otherwise
   (or it is a host-wide count, as in a container) we sleep 60 ms and measure
   our cores' busy time in /proc/stat meanwhile (all of it others'). Racy by
   nature: a process that starts later is not seen, one that ends soon after
   leaves us waiting passively (a few percent slower, the cheap mistake). */
static int jm_threads_others_busy(int cores) {
    FILE *f = fopen("/proc/loadavg", "r");
    if (!f) return 0;
    double la;
    int running = 0, all = 0;
    int got = fscanf(f, "%lf %lf %lf %d/%d", &la, &la, &la, &running, &all);
    fclose(f);
    if (got != 5 || running <= 1) return 0;
    long long b0, t0, b1, t1;
    if (jm_threads_cpu_times(&b0, &t0) != 0) return 0;
    struct timespec ts = { 0, 60 * 1000 * 1000 };
    nanosleep(&ts, NULL);
    if (jm_threads_cpu_times(&b1, &t1) != 0 || t1 <= t0) return 0;
    double used = (double)(b1 - b0) / (double)(t1 - t0) * cores;   /* in cores */
    return (int)(used + 0.5);
}

int jm_threads_want_passive(int threads, int local, int cores, int others_busy) {
    if (threads <= 0) threads = cores;
    if (threads < 2) return 0;          /* one thread never waits at a barrier */
    return (long)threads * local + others_busy > cores;
}

void jm_threads_setup(int argc, char **argv) {
    int cores = jm_threads_cores();
    int local = jm_dist_local_size_env(), local_known = local > 0;
    if (!local_known) local = 1;
    int threads = jm_threads_given(argc, argv);
    if (!threads && local > 1) {
        /* several ranks here: share the cores out, never all of them per rank */
        threads = cores / local > 1 ? cores / local : 1;
        char v[16];
        snprintf(v, sizeof v, "%d", threads);
        setenv("OMP_NUM_THREADS", v, 1);    /* for a re-executed image and child processes */
        omp_set_num_threads(threads);       /* for this one: libgomp has read the environment already */
    }
    if (getenv("OMP_WAIT_POLICY") || getenv("GOMP_SPINCOUNT") || getenv(JM_THREADS_SENTINEL)) return;
    if ((threads > 0 ? threads : cores) < 2) return;
    /* others' load only when the count alone does not decide, and only when this
       is the job's one process here: sibling ranks would count as others (they
       are busy starting MPI) */
    if (!jm_threads_want_passive(threads, local, cores, 0) &&
        !(local_known && local == 1 && jm_threads_want_passive(threads, local, cores, jm_threads_others_busy(cores))))
        return;
    /* the file /proc/self/exe points to, not the link itself: the process keeps
       its name (ps, top, pgrep show "exe" otherwise); an executable deleted or
       replaced since it started reads "PATH (deleted)": not re-executed */
    char self[4096];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0 || (size_t)n >= sizeof self - 1) return;
    self[n] = 0;
    if (access(self, X_OK) != 0) return;
    setenv("OMP_WAIT_POLICY", "passive", 1);
    setenv(JM_THREADS_SENTINEL, "1", 1);
    fflush(NULL);
    execv(self, argv);
    /* could not: go on as before, with the environment as it was */
    unsetenv("OMP_WAIT_POLICY");
    unsetenv(JM_THREADS_SENTINEL);
}
