/* bench/bench_allreduce.c — what one gradient exchange costs between the
 * processes of an MPI job, through jemc's own transport (runtime/dist): the
 * in-place float sum train's data-parallel step makes (engine/rt_dp.c), at
 * the gradient sizes of the shipped graphs. Run under mpirun (bench/dp_scaling.sh):
 *
 *   mpirun -np 2 build/bench_allreduce [REPS]
 *
 * Rank 0 prints, per size, the median and minimum milliseconds of REPS
 * exchanges (after one unmeasured), and the algorithm bandwidth (bytes / time).
 *
 * Then overlap, as train --bucket-mb does it: WRN-28-10's gradient in 25 MB
 * buckets, each posted (post_f32) after a slice of busy computation standing
 * for the backward pass, with progress() called every millisecond of it (as
 * the runtime does after every step), one more slice after the last bucket,
 * then wait_all. Printed: the computation, the blocking exchange of the same
 * bytes, and the wait left after the computation (what did not overlap);
 * once with progress calls and once without (MPI advancing the sums only in
 * wait_all). */
#include "dist/dist.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* reps blocking exchanges of n floats (after one unmeasured), each after a
   barrier: their seconds in t, sorted */
static void blocking_trials(jm_coll *c, float *g, long n, int reps, double *t) {
    char err[1024];
    for (int r = -1; r < reps; r++) {
        if (c->barrier(c, err, sizeof err) != 0) { fprintf(stderr, "%s\n", err); c->abort(c, 1); }
        double t0 = now();
        if (c->allreduce_f32(c, g, n, err, sizeof err) != 0) { fprintf(stderr, "%s\n", err); c->abort(c, 1); }
        if (r >= 0) t[r] = now() - t0;
    }
    qsort(t, (size_t)reps, sizeof(double), cmp);
}

/* busy arithmetic for secs, calling c->progress every `every` seconds (0: never) */
static volatile float sink;
static void compute_for(jm_coll *c, double secs, double every) {
    char err[512];
    double end = now() + secs, next = every > 0 ? now() + every : 1e300;
    float a = 1.0f;
    for (double t = now(); t < end; t = now()) {
        for (int i = 0; i < 2000; i++) a = a * 0.999999f + 1e-7f;
        if (t >= next) {
            if (c->progress(c, err, sizeof err) != 0) { fprintf(stderr, "%s\n", err); c->abort(c, 1); }
            next = t + every;
        }
    }
    sink = a;
}

/* the overlap trial above: median wait after the computation, in seconds */
static double overlap_trial(jm_coll *c, float *g, long n, long bucket, double slice, double every, int reps, double *t) {
    char err[1024];
    for (int r = -1; r < reps; r++) {
        if (c->barrier(c, err, sizeof err) != 0) { fprintf(stderr, "%s\n", err); c->abort(c, 1); }
        for (long o = 0; o < n; o += bucket) {
            compute_for(c, slice, every);
            if (c->post_f32(c, g + o, n - o < bucket ? n - o : bucket, err, sizeof err) != 0) { fprintf(stderr, "%s\n", err); c->abort(c, 1); }
        }
        compute_for(c, slice, every);
        double t0 = now();
        if (c->wait_all(c, err, sizeof err) != 0) { fprintf(stderr, "%s\n", err); c->abort(c, 1); }
        if (r >= 0) t[r] = now() - t0;
    }
    qsort(t, (size_t)reps, sizeof(double), cmp);
    return t[reps / 2];
}

int main(int argc, char **argv) {
    int reps = argc > 1 ? atoi(argv[1]) : 10;
    if (reps < 1 || reps > 1000) reps = 10;
    char err[1024];
    jm_coll *c = jm_dist_open(err, sizeof err);
    if (!c) {
        fprintf(stderr, "bench_allreduce: %s\n", err[0] ? err : "not started by an MPI launcher (mpirun -np 2 build/bench_allreduce)");
        return 1;
    }
    /* parameters: jem_mnist, WRN-28-2, one DDP-sized bucket, WRN-28-10 */
    static const struct { const char *what; long n; } sizes[] = {
        { "jem_mnist (155,402 parameters)", 155402 },
        { "WRN-28-2 (1,467,610)", 1467610 },
        { "one 25 MB bucket", 25 * 1024 * 1024 / 4 },
        { "WRN-28-10 (36,479,194)", 36479194 },
    };
    if (c->rank == 0) printf("%d processes; %d exchanges per size (after one unmeasured)\n%-34s %10s %10s %10s %12s\n", c->size, reps, "gradient", "MB", "median ms", "min ms", "GB/s (alg)");
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        long n = sizes[k].n;
        float *g = malloc(sizeof(float) * (size_t)n);
        double *t = malloc(sizeof(double) * (size_t)reps);
        if (!g || !t) { fprintf(stderr, "bench_allreduce: out of memory\n"); c->abort(c, 1); }
        for (long i = 0; i < n; i++) g[i] = (float)((i + c->rank) % 97) * 1e-3f;
        blocking_trials(c, g, n, reps, t);
        double mb = (double)n * 4 / 1e6;
        if (c->rank == 0)
            printf("%-34s %10.2f %10.3f %10.3f %12.2f\n", sizes[k].what, mb, 1e3 * t[reps / 2], 1e3 * t[0], mb / 1e3 / t[reps / 2]);
        free(g);
        free(t);
    }
    if (c->post_f32 && c->progress && c->wait_all) {
        long n = 36479194, bucket = 25L * 1024 * 1024 / 4, nb = (n + bucket - 1) / bucket;
        double slice = 0.02;
        float *g = malloc(sizeof(float) * (size_t)n);
        double *t = malloc(sizeof(double) * (size_t)reps);
        if (!g || !t) { fprintf(stderr, "bench_allreduce: out of memory\n"); c->abort(c, 1); }
        for (long i = 0; i < n; i++) g[i] = (float)((i + c->rank) % 97) * 1e-3f;
        /* the blocking exchange of the same bytes, in the same minutes */
        blocking_trials(c, g, n, reps, t);
        double blocking = t[reps / 2];
        static const double every[] = { 1e-4, 1e-3, 1e-2, 0 };
        if (c->rank == 0)
            printf("overlap: WRN-28-10's gradient in %ld buckets of 25 MB, one posted after each %.0f ms of computation (%.0f ms in all);\n"
                   "  blocking exchange of the same bytes: %.1f ms (median). Waited after the computation (median), and the share hidden:\n",
                   nb, 1e3 * slice, 1e3 * slice * (double)(nb + 1), 1e3 * blocking);
        for (int k = 0; k < 4; k++) {
            double w = overlap_trial(c, g, n, bucket, slice, every[k], reps, t);
            if (c->rank == 0) {
                char what[64];
                if (every[k] > 0) snprintf(what, sizeof what, "progress every %g ms", 1e3 * every[k]);
                else snprintf(what, sizeof what, "no progress calls");
                printf("  %-24s %8.1f ms  %5.1f%% hidden\n", what, 1e3 * w, 100.0 * (1.0 - w / blocking));
            }
        }
        free(g);
        free(t);
    }
    jm_dist_close(c);
    return 0;
}
