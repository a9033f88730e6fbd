/* bench/bench_allreduce.c — what one gradient exchange costs between the
 * processes of an MPI job, through jemc's own transport (runtime/dist): the
 * in-place float sum train's data-parallel step makes (engine/rt_dp.c), at
 * the gradient sizes of the shipped graphs. Run under mpirun (bench/dp_scaling.sh):
 *
 *   mpirun -np 2 build/bench_allreduce [REPS]
 *
 * Rank 0 prints, per size, the median and minimum milliseconds of REPS
 * exchanges (after one unmeasured), and the algorithm bandwidth (bytes / time). */
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
        for (int r = -1; r < reps; r++) {
            if (c->barrier(c, err, sizeof err) != 0) { fprintf(stderr, "%s\n", err); c->abort(c, 1); }
            double t0 = now();
            if (c->allreduce_f32(c, g, n, err, sizeof err) != 0) { fprintf(stderr, "%s\n", err); c->abort(c, 1); }
            if (r >= 0) t[r] = now() - t0;
        }
        qsort(t, (size_t)reps, sizeof(double), cmp);
        double mb = (double)n * 4 / 1e6;
        if (c->rank == 0)
            printf("%-34s %10.2f %10.3f %10.3f %12.2f\n", sizes[k].what, mb, 1e3 * t[reps / 2], 1e3 * t[0], mb / 1e3 / t[reps / 2]);
        free(g);
        free(t);
    }
    jm_dist_close(c);
    return 0;
}
