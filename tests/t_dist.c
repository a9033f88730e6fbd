/* t_dist.c — the process group (runtime/dist/, engine/rt_coll.h):
 *   1. without a launcher's environment nothing is launched and jm_dist_open
 *      returns NULL with no message (a singleton never loads MPI); which
 *      environments count as launched, and the ranks on this machine;
 *   2. a launched run whose shim is missing, or is not jemc's, gets a clear error;
 *   3. under `mpirun -np 2` (tests/mpi_helpers.h) every operation, on both
 *      ranks: sums of per-rank values, the same bits on both, min and max,
 *      allgather in rank order, bcast from either root, the chunked path
 *      (JEMC_DIST_CHUNK=1000 and buffers of several chunks), MPI's errors as
 *      text; and abort ends both ranks with a nonzero status within seconds.
 *   4. threads (app/rt_threads.h): when to wait passively; an oversubscribed
 *      process re-executes itself once with OMP_WAIT_POLICY=passive, one the
 *      user set a policy for does not, under mpirun too (then MPI starts in
 *      the new image); 2 ranks on this machine get half the cores each when
 *      nobody said how many threads.
 * This file is also the ranks' program: `t_dist --child ops|abort|threads|threads-open`
 * (each rank writes its report to $T_DIST_OUT/rankN.txt, so the two never
 * interleave; `threads` prints one line). */
#include "tap.h"
#include "helpers.h"
#include "mpi_helpers.h"
#include "dist/dist.h"
#include "app/rt_threads.h"
#include <omp.h>
#include <sched.h>
#include <stdint.h>
#include <time.h>

/* ---- the ranks' side ---- */

static FILE *rep;
static int me;

static void report(int cond, const char *name, const char *detail) {
    fprintf(rep, "R%d %s %s%s%s\n", me, cond ? "ok" : "not", name, cond || !detail ? "" : ": ", cond || !detail ? "" : detail);
}

/* FNV-1a of n bytes: the parent compares the ranks' results bit for bit. */
static uint64_t hash_bytes(const void *p, size_t n) {
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ ((const unsigned char *)p)[i]) * 1099511628211ull;
    return h;
}

/* rank r's float and double values, rounded differently at every index */
static float val_f32(int r, int64_t i) { return (float)(r + 1) / 3.0f * (float)(i % 97 + 1) + 1e-3f * (float)i; }
static double val_f64(int r, int64_t i) { return sin((double)i * 0.37 + r) * (r + 1.5); }
static unsigned char val_byte(int r, int64_t i) { return (unsigned char)(r * 101 + i * 7 + i / 256); }

static void check_f32(jm_coll *c, int64_t n, const char *name) {
    float *b = malloc(sizeof(float) * (size_t)(n + 1));
    for (int64_t i = 0; i < n; i++) b[i] = val_f32(c->rank, i);
    b[n] = -7.0f;                       /* a guard past the end: must stay */
    char err[512] = "", det[640] = "";
    int rc = c->allreduce_f32(c, b, n, err, sizeof err), good = rc == 0 && b[n] == -7.0f;
    for (int64_t i = 0; i < n && good; i++) {
        float want = val_f32(0, i) + val_f32(1, i);    /* two operands: the same in either order */
        if (memcmp(&b[i], &want, sizeof want) != 0) {
            good = 0;
            snprintf(det, sizeof det, "element %lld is %.9g, expected %.9g", (long long)i, b[i], want);
        }
    }
    if (rc != 0) snprintf(det, sizeof det, "returned %d: %s", rc, err);
    else if (b[n] != -7.0f) snprintf(det, sizeof det, "wrote past the end");
    report(good, name, det);
    fprintf(rep, "R%d hash %s %016llx\n", me, name, (unsigned long long)hash_bytes(b, sizeof(float) * (size_t)n));
    free(b);
}

static void check_f64(jm_coll *c, int64_t n, int op, const char *name) {
    double *b = malloc(sizeof(double) * (size_t)n);
    for (int64_t i = 0; i < n; i++) b[i] = val_f64(c->rank, i);
    char err[512] = "", det[640] = "";
    int rc = c->allreduce_f64(c, b, n, op, err, sizeof err), good = rc == 0;
    for (int64_t i = 0; i < n && good; i++) {
        double x = val_f64(0, i), y = val_f64(1, i);
        double want = op == JM_COLL_SUM ? x + y : op == JM_COLL_MIN ? fmin(x, y) : fmax(x, y);
        if (memcmp(&b[i], &want, sizeof want) != 0) {
            good = 0;
            snprintf(det, sizeof det, "element %lld is %.17g, expected %.17g", (long long)i, b[i], want);
        }
    }
    if (rc != 0) snprintf(det, sizeof det, "returned %d: %s", rc, err);
    report(good, name, det);
    fprintf(rep, "R%d hash %s %016llx\n", me, name, (unsigned long long)hash_bytes(b, sizeof(double) * (size_t)n));
    free(b);
}

/* Nonblocking sums: two buffers posted (one in several chunks), the
   transport progressed, then waited for: each is the blocking sum's bits. */
static void check_posted(jm_coll *c, const char *name) {
    int64_t n[2] = { 3017, 700 };
    float *b[2];
    char err[512] = "", det[640] = "";
    int rc = 0, good = 1;
    for (int k = 0; k < 2; k++) {
        b[k] = malloc(sizeof(float) * (size_t)(n[k] + 1));
        for (int64_t i = 0; i < n[k]; i++) b[k][i] = val_f32(c->rank, i + 11 * k);
        b[k][n[k]] = -7.0f;
        if (rc == 0) rc = c->post_f32(c, b[k], n[k], err, sizeof err);
        for (int t = 0; t < 3 && rc == 0; t++) rc = c->progress(c, err, sizeof err);
    }
    if (rc == 0) rc = c->wait_all(c, err, sizeof err);
    if (rc == 0) rc = c->wait_all(c, err, sizeof err);      /* nothing posted: returns at once */
    for (int k = 0; k < 2 && rc == 0 && good; k++) {
        if (b[k][n[k]] != -7.0f) { good = 0; snprintf(det, sizeof det, "buffer %d: wrote past the end", k); }
        for (int64_t i = 0; i < n[k] && good; i++) {
            float want = val_f32(0, i + 11 * k) + val_f32(1, i + 11 * k);
            if (memcmp(&b[k][i], &want, sizeof want) != 0) {
                good = 0;
                snprintf(det, sizeof det, "buffer %d element %lld is %.9g, expected %.9g", k, (long long)i, b[k][i], want);
            }
        }
    }
    if (rc != 0) { good = 0; snprintf(det, sizeof det, "returned %d: %s", rc, err); }
    report(good, name, det);
    fprintf(rep, "R%d hash %s %016llx\n", me, name, (unsigned long long)hash_bytes(b[0], sizeof(float) * (size_t)n[0]));
    free(b[0]);
    free(b[1]);
}

static void check_allgather(jm_coll *c, int64_t bytes, const char *name) {
    unsigned char *s = malloc((size_t)bytes), *r = malloc((size_t)(c->size * bytes + 1));
    for (int64_t i = 0; i < bytes; i++) s[i] = val_byte(c->rank, i);
    memset(r, 0xEE, (size_t)(c->size * bytes + 1));
    char err[512] = "", det[640] = "";
    int rc = c->allgather(c, s, bytes, r, err, sizeof err), good = rc == 0 && r[c->size * bytes] == 0xEE;
    for (int q = 0; q < c->size && good; q++)
        for (int64_t i = 0; i < bytes && good; i++)
            if (r[q * bytes + i] != val_byte(q, i)) {
                good = 0;
                snprintf(det, sizeof det, "byte %lld of rank %d's block is %d, expected %d", (long long)i, q, r[q * bytes + i], val_byte(q, i));
            }
    if (rc != 0) snprintf(det, sizeof det, "returned %d: %s", rc, err);
    else if (r[c->size * bytes] != 0xEE) snprintf(det, sizeof det, "wrote past the end");
    report(good, name, det);
    free(s);
    free(r);
}

static void check_bcast(jm_coll *c, int64_t bytes, int root, const char *name) {
    unsigned char *b = malloc((size_t)bytes);
    for (int64_t i = 0; i < bytes; i++) b[i] = c->rank == root ? val_byte(root + 5, i) : 0;
    char err[512] = "", det[640] = "";
    int rc = c->bcast(c, b, bytes, root, err, sizeof err), good = rc == 0;
    for (int64_t i = 0; i < bytes && good; i++)
        if (b[i] != val_byte(root + 5, i)) { good = 0; snprintf(det, sizeof det, "byte %lld is %d, expected %d", (long long)i, b[i], val_byte(root + 5, i)); }
    if (rc != 0) snprintf(det, sizeof det, "returned %d: %s", rc, err);
    report(good, name, det);
    free(b);
}

static int child(const char *what) {
    char path[1024], err[1024];
    snprintf(path, sizeof path, "%s/rank%s.txt", jt_env("T_DIST_OUT", "."), jt_env("OMPI_COMM_WORLD_RANK", "x"));
    rep = fopen(path, "w");
    if (!rep) { perror(path); return 2; }
    setvbuf(rep, NULL, _IOLBF, 0);
    jm_coll *c = jm_dist_open(err, sizeof err);
    if (!c) { fprintf(rep, "Rx not open: %s\n", err[0] ? err : "not launched"); return 1; }
    me = c->rank;
    char det[256];
    snprintf(det, sizeof det, "name %s, rank %d of %d, local %d of %d", c->name, c->rank, c->size, c->local_rank, c->local_size);
    report(strcmp(c->name, "mpi") == 0 && c->size == 2 && c->rank >= 0 && c->rank < 2 && c->local_size == 2 && c->local_rank == c->rank,
           "open", det);
    if (strcmp(what, "abort") == 0) {
        c->barrier(c, err, sizeof err);
        if (c->rank == 1) c->abort(c, 7);
        c->barrier(c, err, sizeof err);     /* rank 0 waits for rank 1, which never comes */
        report(0, "abort", "left the barrier: rank 1 did not abort");
        jm_dist_close(c);               /* a clean end: only a working abort makes the job fail */
        return 0;
    }
    check_f32(c, 700, "f32 sum");
    check_f32(c, 3017, "f32 sum chunked");
    check_posted(c, "f32 posted sums");
    check_f64(c, 2500, JM_COLL_SUM, "f64 sum");
    check_f64(c, 2500, JM_COLL_MIN, "f64 min");
    check_f64(c, 2500, JM_COLL_MAX, "f64 max");
    check_allgather(c, 10, "allgather");
    check_allgather(c, 2500, "allgather chunked");
    check_bcast(c, 2600, 1, "bcast from 1 chunked");
    check_bcast(c, 10, 0, "bcast from 0");
    report(c->barrier(c, err, sizeof err) == 0, "barrier", err);
    double d = 1;
    err[0] = 0;
    int rc = c->allreduce_f64(c, &d, 1, 99, err, sizeof err);
    report(rc == -1 && strstr(err, "unknown operation"), "bad op refused", err);
    err[0] = 0;
    rc = c->bcast(c, &d, sizeof d, 5, err, sizeof err);      /* no rank 5: MPI_ERR_ROOT, returned */
    report(rc == -1 && strstr(err, "MPI Bcast") && strstr(err, "root"), "MPI error as text", err);
    fprintf(rep, "R%d says %s\n", me, err);
    jm_dist_close(c);
    report(1, "closed", NULL);
    fclose(rep);
    return 0;
}

/* ---- the test's side ---- */

static const char *launcher_vars[] = { "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_SIZE", "PMIX_RANK", "PMI_RANK", "PMI_SIZE",
                                       "MPI_LOCALNRANKS", "SLURM_STEP_NUM_TASKS", "SLURM_PROCID", "SLURM_NTASKS",
                                       "SLURM_STEP_TASKS_PER_NODE", "SLURM_NODEID", "JEMC_DIST_LIB", NULL };

static void clear_launcher(void) {
    for (int i = 0; launcher_vars[i]; i++) unsetenv(launcher_vars[i]);
}

static void test_environment(void) {
    clear_launcher();
    char err[1024] = "junk";
    ok(!jm_dist_launched(), "no launcher variables: not launched");
    jm_coll *c = jm_dist_open(err, sizeof err);
    ok(c == NULL && err[0] == 0, "not launched: jm_dist_open returns NULL and no message (a singleton)");
    is_int(jm_dist_local_size_env(), 1, "not launched: 1 process on this machine");
    setenv("OMPI_COMM_WORLD_SIZE", "1", 1);
    ok(jm_dist_launched(), "mpirun -np 1 (OMPI_COMM_WORLD_SIZE=1) is launched");
    setenv("OMPI_COMM_WORLD_LOCAL_SIZE", "3", 1);
    is_int(jm_dist_local_size_env(), 3, "OMPI_COMM_WORLD_LOCAL_SIZE gives the ranks on this machine");
    clear_launcher();
    setenv("PMI_RANK", "0", 1);
    setenv("MPI_LOCALNRANKS", "2", 1);
    ok(jm_dist_launched() && jm_dist_local_size_env() == 2, "a PMI launcher (PMI_RANK, MPI_LOCALNRANKS=2) is launched, 2 here");
    clear_launcher();
    setenv("PMIX_RANK", "0", 1);
    ok(jm_dist_launched() && jm_dist_local_size_env() == 0, "a PMIx launcher (PMIX_RANK) is launched; ranks here not said: 0");
    clear_launcher();
    setenv("SLURM_NTASKS", "4", 1);
    setenv("SLURM_PROCID", "0", 1);
    ok(!jm_dist_launched(), "an sbatch script (SLURM_NTASKS=4, SLURM_PROCID=0, no step) is not launched");
    setenv("SLURM_STEP_NUM_TASKS", "1", 1);
    ok(!jm_dist_launched(), "srun -n 1 is not launched");
    setenv("SLURM_STEP_NUM_TASKS", "5", 1);
    setenv("SLURM_STEP_TASKS_PER_NODE", "2(x2),1", 1);
    setenv("SLURM_NODEID", "2", 1);
    ok(jm_dist_launched() && jm_dist_local_size_env() == 1, "srun -n 5 is launched; node 2 of \"2(x2),1\" has 1 task");
    setenv("SLURM_NODEID", "1", 1);
    is_int(jm_dist_local_size_env(), 2, "node 1 of \"2(x2),1\" has 2 tasks");
    clear_launcher();
}

static void test_missing_shim(void) {
    char err[1024] = "";
    setenv("OMPI_COMM_WORLD_SIZE", "2", 1);
    setenv("JEMC_DIST_LIB", "/nonexistent/libjemc_dist.so", 1);
    jm_coll *c = jm_dist_open(err, sizeof err);
    ok(c == NULL && strstr(err, "/nonexistent/libjemc_dist.so") && strstr(err, "apt-get install openmpi-bin") && strstr(err, "JEMC_DIST_LIB"),
       "a missing shim: NULL and a message naming it and the fix");
    tap_diag("%s", err);
    setenv("JEMC_DIST_LIB", "libm.so.6", 1);
    err[0] = 0;
    c = jm_dist_open(err, sizeof err);
    ok(c == NULL && strstr(err, "libm.so.6 is not jemc's MPI layer") && strstr(err, JM_DIST_ENTRY), "a library without the entry point is refused");
    tap_diag("%s", err);
    clear_launcher();
}

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

/* the value after "R<r> hash NAME " in rep, or "" */
static const char *hash_of(const char *rep_text, int r, const char *name, char *buf) {
    char key[128];
    snprintf(key, sizeof key, "R%d hash %s ", r, name);
    const char *p = rep_text ? strstr(rep_text, key) : NULL;
    buf[0] = 0;
    if (p) sscanf(p + strlen(key), "%16s", buf);
    return buf;
}

static const char *checks[] = { "open", "f32 sum", "f32 sum chunked", "f32 posted sums", "f64 sum", "f64 min", "f64 max", "allgather",
                                "allgather chunked", "bcast from 1 chunked", "bcast from 0", "barrier", "bad op refused",
                                "MPI error as text", "closed", NULL };
static const char *hashed[] = { "f32 sum", "f32 sum chunked", "f32 posted sums", "f64 sum", "f64 min", "f64 max", NULL };
#define N_MPI_POINTS (1 + 15 + 6 + 1)

static void test_mpi(const char *self) {
    char why[600];
    if (!jt_mpi_usable(why, sizeof why)) { skip(N_MPI_POINTS + 2, why); return; }
    char dir[] = "/tmp/t_dist.XXXXXX", shim[1024], pre[1024], cmd[4096], out[16384];
    if (!mkdtemp(dir)) { skip(N_MPI_POINTS + 2, "no temporary folder"); return; }
    jt_mpi_shim_path(shim, sizeof shim);
    jt_mpi_prefix(pre, sizeof pre, 2, 1);
    snprintf(cmd, sizeof cmd, "T_DIST_OUT=%s JEMC_DIST_LIB=%s JEMC_DIST_CHUNK=1000 %s %s --child ops </dev/null", dir, shim, pre, self);
    int st = jt_run(cmd, out, sizeof out);
    if (!ok(st == 0, "mpirun -np 2 t_dist --child ops exits 0")) tap_diag("%s\n%s", cmd, out);
    char p0[1100], p1[1100];
    snprintf(p0, sizeof p0, "%s/rank0.txt", dir);
    snprintf(p1, sizeof p1, "%s/rank1.txt", dir);
    const char *r0 = slurp(p0), *r1 = slurp(p1);
    for (int i = 0; checks[i]; i++) {
        char k0[128], k1[128];
        snprintf(k0, sizeof k0, "R0 ok %s\n", checks[i]);
        snprintf(k1, sizeof k1, "R1 ok %s\n", checks[i]);
        if (!ok(r0 && r1 && strstr(r0, k0) && strstr(r1, k1), "both ranks: %s", checks[i]))
            tap_diag("rank 0:\n%s\nrank 1:\n%s", r0 ? r0 : "(no report)", r1 ? r1 : "(no report)");
    }
    for (int i = 0; hashed[i]; i++) {
        char h0[32], h1[32];
        hash_of(r0, 0, hashed[i], h0);
        hash_of(r1, 1, hashed[i], h1);
        if (!ok(h0[0] && strcmp(h0, h1) == 0, "%s: both ranks have the same bits", hashed[i])) tap_diag("rank 0 %s, rank 1 %s", h0, h1);
    }
    const char *says = r0 ? strstr(r0, "R0 says ") : NULL;
    if (says) tap_diag("%.*s", (int)strcspn(says, "\n"), says);
    ok(says != NULL, "rank 0 reported MPI's error text");
    remove(p0);
    remove(p1);

    /* abort: rank 1 calls it while rank 0 waits in a barrier */
    snprintf(cmd, sizeof cmd, "T_DIST_OUT=%s JEMC_DIST_LIB=%s %s %s --child abort </dev/null", dir, shim, pre, self);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    st = jt_run(cmd, out, sizeof out);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double secs = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
    if (!ok(st == 7, "abort(7) on rank 1 ends the job with its status (got %d; 124: the timeout)", st)) tap_diag("%s", out);
    ok(secs < 20, "and within seconds (%.1f s)", secs);
    r0 = slurp(p0);
    if (r0 && strstr(r0, "R0 not abort")) tap_diag("%s", r0);
    remove(p0);
    remove(p1);
    rmdir(dir);
}

/* `t_dist --child threads [--threads N]`: what main() of an executable would
   run with after jm_threads_setup (which may have re-executed this program) */
static int child_threads(int argc, char **argv) {
    jm_threads_setup(argc, argv);
    const char *p = getenv("OMP_WAIT_POLICY"), *x = getenv("JEMC_THREADS_REEXEC");
    char opened[1100] = "-";
    if (strcmp(argv[2], "threads-open") == 0) {     /* then MPI, in the re-executed image */
        char err[1024];
        jm_coll *c = jm_dist_open(err, sizeof err);
        if (c && c->barrier(c, err, sizeof err) == 0) snprintf(opened, sizeof opened, "ok");
        else snprintf(opened, sizeof opened, "failed: %s", err);
        jm_dist_close(c);
    }
    printf("policy=%s reexec=%s max_threads=%d open=%s\n", p ? p : "-", x ? x : "-", omp_get_max_threads(), opened);
    return 0;
}

static void test_threads(const char *self) {
    ok(!jm_threads_want_passive(2, 1, 2, 0), "2 threads on 2 quiet cores: spin as usual");
    ok(!jm_threads_want_passive(0, 1, 2, 0), "the default (all cores) on a quiet machine: spin as usual");
    ok(jm_threads_want_passive(0, 1, 2, 1), "the default with another process on a core: passive");
    ok(jm_threads_want_passive(4, 1, 2, 0), "4 threads on 2 cores: passive");
    ok(jm_threads_want_passive(2, 2, 2, 0), "2 ranks of 2 threads on 2 cores: passive");
    ok(!jm_threads_want_passive(1, 3, 2, 0), "1 thread per rank never waits at a barrier, however many ranks");

    cpu_set_t set;
    int cores = sched_getaffinity(0, sizeof set, &set) == 0 ? CPU_COUNT(&set) : 1;
    char cmd[4096], out[4096], want[128];
    clear_launcher();
    unsetenv("OMP_WAIT_POLICY");
    unsetenv("GOMP_SPINCOUNT");
    unsetenv("JEMC_THREADS_REEXEC");
    unsetenv("OMP_NUM_THREADS");
    snprintf(cmd, sizeof cmd, "%s --child threads --threads %d", self, 2 * cores + 2);
    jt_run(cmd, out, sizeof out);
    snprintf(want, sizeof want, "policy=passive reexec=1 max_threads=%d open=-\n", cores);   /* --threads acts later, in the runtime */
    if (!ok(strstr(out, want) != NULL, "--threads %d on %d cores: re-executed once, waiting passively", 2 * cores + 2, cores))
        tap_diag("%s\nexpected %s", out, want);
    snprintf(cmd, sizeof cmd, "OMP_WAIT_POLICY=active %s --child threads --threads %d", self, 2 * cores + 2);
    jt_run(cmd, out, sizeof out);
    if (!ok(strstr(out, "policy=active reexec=-") != NULL, "the user's OMP_WAIT_POLICY: kept, no re-execution")) tap_diag("%s", out);
    snprintf(cmd, sizeof cmd, "%s --child threads --threads 1", self);
    jt_run(cmd, out, sizeof out);
    if (!ok(strstr(out, "policy=- reexec=-") != NULL, "--threads 1: no re-execution")) tap_diag("%s", out);

    char why[600], pre[1024];
    if (!jt_mpi_usable(why, sizeof why)) { skip(2, why); return; }
    jt_mpi_prefix(pre, sizeof pre, 2, 0);
    snprintf(cmd, sizeof cmd, "%s %s --child threads </dev/null", pre, self);
    jt_run(cmd, out, sizeof out);
    int per_rank = cores / 2 > 1 ? cores / 2 : 1, n = 0;
    snprintf(want, sizeof want, "policy=- reexec=- max_threads=%d open=-\n", per_rank);
    for (const char *p = out; (p = strstr(p, want)); p++) n++;
    if (!ok(n == 2, "mpirun -np 2 without OMP_NUM_THREADS: %d thread(s) per rank, no re-execution", per_rank)) tap_diag("%s", out);
    /* all cores per rank: each re-executes itself (same pid, under mpirun), then MPI starts */
    char shim[1024];
    jt_mpi_shim_path(shim, sizeof shim);
    int all = cores > 1 ? cores : 2;
    jt_mpi_prefix(pre, sizeof pre, 2, all);
    snprintf(cmd, sizeof cmd, "JEMC_DIST_LIB=%s %s %s --child threads-open </dev/null", shim, pre, self);
    jt_run(cmd, out, sizeof out);
    snprintf(want, sizeof want, "policy=passive reexec=1 max_threads=%d open=ok\n", all);
    n = 0;
    for (const char *p = out; (p = strstr(p, want)); p++) n++;
    if (!ok(n == 2, "mpirun -np 2 with OMP_NUM_THREADS=%d: both ranks re-execute, wait passively, then open MPI", all))
        tap_diag("%s", out);
}

int main(int argc, char **argv) {
    if (argc >= 3 && strcmp(argv[1], "--child") == 0)
        return strncmp(argv[2], "threads", 7) == 0 ? child_threads(argc, argv) : child(argv[2]);
    test_environment();
    test_missing_shim();
    test_mpi(argv[0]);
    test_threads(argv[0]);
    return tap_done();
}
