/* t_dp.c — data-parallel training (docs/data-parallel.md): `train
 * --accumulate K` on one process and `mpirun -np 2 EXE train` against one
 * process at the whole batch, on tests/train/tiny.graph (8x8 images, a
 * 32-chain replay buffer, Adam).
 *   - 1 process x batch 8 x --accumulate 2 follows 1 x batch 16 within float
 *     reduction order: every logged metric and every tensor of the
 *     checkpoint within 1e-5 of its own scale (the replay buffer, drawn by
 *     global example, included);
 *   - 2 ranks x batch 8 end bitwise where 1 x 8 x --accumulate 2 ends, for
 *     the JEM step and the cross-entropy step; the run itself checks that
 *     every rank ends with the same state (it fails otherwise);
 *   - a 2-rank checkpoint resumes on 1 process (--accumulate 2) bitwise as
 *     the 2-rank run straight through;
 *   - SGD + SAM (tests/train/tiny_sam.graph: two exchanges per step) on 2
 *     ranks x 8 follows 1 x 16 within 1e-5; --accumulate refuses it;
 *   - a NaN on rank 1 alone rolls both ranks back together and the run ends;
 *   - a rank killed mid-run ends the job within seconds, naming the failure,
 *     and leaves the last checkpoint whole.
 * The MPI cases skip, saying why, where mpirun cannot start 2 ranks. */
#include "tap.h"
#include "train_helpers.h"
#include "mpi_helpers.h"
#include <time.h>
#include <sys/stat.h>

static char dir[256], data[300], e8[300], e16[300], s8[300], s16[300];

/* metric `key` of line `step` of a metrics.jsonl, or NAN */
static double metric(const char *path, int step, const char *key) {
    char *m = slurp(path, NULL);
    if (!m) return NAN;
    char want[64], k[96];
    snprintf(want, sizeof want, "{\"step\": %d,", step);
    snprintf(k, sizeof k, "\"%s\": ", key);
    double v = NAN;
    for (char *line = strstr(m, want); line; line = strstr(line + 1, want)) {
        char *end = strchr(line, '\n'), *at = strstr(line, k);
        if (at && (!end || at < end)) { v = strtod(at + strlen(k), NULL); break; }
    }
    free(m);
    return v;
}

/* every tensor of a and b within tol of b's own largest magnitude */
static int close_tensors(const char *a, const char *b, double tol, char *why, size_t n) {
    jm_st_file fa, fb;
    char err[512];
    memset(&fa, 0, sizeof fa);
    memset(&fb, 0, sizeof fb);
    if (jm_st_read(a, &fa, err, sizeof err) || jm_st_read(b, &fb, err, sizeof err)) { snprintf(why, n, "%s", err); jm_st_free(&fa); return 0; }
    int good = fa.n == fb.n && fa.n > 0, checked = 0;
    double worst = 0;
    const char *worst_name = "";
    for (int i = 0; good && i < fa.n; i++) {
        const jm_st_tensor *t = jm_st_find(&fb, fa.t[i].name);
        if (!t || t->nbytes != fa.t[i].nbytes) { good = 0; snprintf(why, n, "%s missing or resized", fa.t[i].name); break; }
        if (fa.t[i].dtype != JM_ST_F32) { good = memcmp(t->data, fa.t[i].data, t->nbytes) == 0; if (!good) snprintf(why, n, "%s differs", t->name); continue; }
        const float *x = (const float *)fa.t[i].data, *y = (const float *)t->data;
        size_t k = t->nbytes / 4;
        double scale = 0, d = 0;
        for (size_t j = 0; j < k; j++) { if (fabs(y[j]) > scale) scale = fabs(y[j]); if (fabs(x[j] - y[j]) > d) d = fabs(x[j] - y[j]); }
        double rel = scale > 0 ? d / scale : d;
        if (rel > worst) { worst = rel; worst_name = t->name; }
        checked++;
    }
    if (good && worst > tol) { good = 0; snprintf(why, n, "%s differs by %.3g of its scale", worst_name, worst); }
    else if (good) snprintf(why, n, "%d f32 tensors, worst %.3g of scale (%s)", checked, worst, worst_name);
    jm_st_free(&fa);
    jm_st_free(&fb);
    return good;
}

static void test_accumulate_matches_whole_batch(void) {
    int r1 = run("%s train --data %s --out %s/whole --iters 20 --log-every 1 --no-progress --threads 1", e16, data, dir);
    int r2 = run("%s train --data %s --out %s/acc2 --iters 20 --log-every 1 --no-progress --threads 1 --accumulate 2", e8, data, dir);
    ok(r1 == 0 && r2 == 0, "20 iterations at batch 16, and at batch 8 with --accumulate 2");
    if (r1 || r2) { tap_diag("%s", out); return; }
    ok(strstr(out, "data-parallel: 1 process x 2 micro-batches of 8 = global batch 16") != NULL, "the run says how its global batch is made");
    char a[400], b[400];
    snprintf(a, sizeof a, "%s/acc2/metrics.jsonl", dir);
    snprintf(b, sizeof b, "%s/whole/metrics.jsonl", dir);
    const char *keys[] = { "loss", "loss_ce", "e_data", "e_sample", "grad_norm" };
    double worst = 0;
    const char *wk = "";
    int steps = 0;
    for (int s = 1; s <= 20; s++)
        for (int k = 0; k < 5; k++) {
            double x = metric(a, s, keys[k]), y = metric(b, s, keys[k]);
            double rel = fabs(x - y) / fmax(fabs(y), 1e-3);
            if (!(rel <= worst)) { worst = isnan(rel) ? INFINITY : rel; wk = keys[k]; }
            steps += k == 0 && isfinite(x);
        }
    ok(steps == 20 && worst <= 1e-5, "every iteration's loss, energies and gradient norm within 1e-5 relative (worst %.3g, %s)", worst, wk);
    char why[600];
    snprintf(a, sizeof a, "%s/acc2/last.safetensors", dir);
    snprintf(b, sizeof b, "%s/whole/last.safetensors", dir);
    ok(close_tensors(a, b, 1e-5, why, sizeof why), "after 20 iterations every parameter, moment and buffer chain within 1e-5 of its scale: %s", why);
    /* the same with plain batch 8 is another run: the comparison can fail */
    run("%s train --data %s --out %s/half --iters 20 --no-progress --threads 1", e8, data, dir);
    snprintf(a, sizeof a, "%s/half/last.safetensors", dir);
    ok(!close_tensors(a, b, 1e-5, why, sizeof why), "(batch 8 without --accumulate does not pass that comparison: %s)", why);
}

static void test_two_ranks(const char *mpi) {
    char why[600], a[400], b[400];
    const char *progs[] = { "train_step", "train_step_ce" };
    for (int i = 0; i < 2; i++) {
        int r1 = run("%s %s train --data %s --out %s/np2_%d --iters 12 --ckpt-every 4 --no-progress --program %s", mpi, e8, data, dir, i, progs[i]);
        int r2 = run("%s train --data %s --out %s/k2_%d --iters 12 --ckpt-every 4 --no-progress --threads 1 --accumulate 2 --program %s", e8, data, dir, i, progs[i]);
        ok(r1 == 0 && r2 == 0, "%s: 12 iterations on 2 ranks x batch 8 and on 1 process x 2 micro-batches", progs[i]);
        if (r1 || r2) { tap_diag("%s", out); continue; }
        snprintf(a, sizeof a, "%s/np2_%d/last.safetensors", dir, i);
        snprintf(b, sizeof b, "%s/k2_%d/last.safetensors", dir, i);
        ok(same_tensors(a, b, why, sizeof why), "%s: 2 ranks end bitwise where --accumulate 2 ends (%s)", progs[i], why);
    }
    /* rank 1 writes nothing of its own: one metrics file, one checkpoint */
    snprintf(a, sizeof a, "%s/np2_0/metrics.jsonl", dir);
    char *m = slurp(a, NULL);
    int lines = 0;
    for (char *p = m; p && (p = strstr(p, "{\"step\": 12,")); p++) lines++;
    ok(lines == 1, "one metrics line per logged iteration (rank 0 alone logs): %d for iteration 12", lines);
    free(m);
    /* resume the 2-rank checkpoint of iteration 12 on one process for 8 more, against 20 straight on 2 ranks */
    int r1 = run("%s %s train --data %s --out %s/np2_20 --iters 20 --no-progress", mpi, e8, data, dir);
    int r2 = run("cp -r %s/np2_0 %s/resumed && %s train --resume %s/resumed/last.safetensors --out %s/resumed --iters 20 --no-progress --threads 1 --accumulate 2",
                 dir, dir, e8, dir, dir);
    ok(r1 == 0 && r2 == 0, "20 iterations on 2 ranks; the 2-rank checkpoint of 12 resumed on 1 process to 20");
    if (r2) tap_diag("%s", out);
    ok(strstr(out, "warning: the checkpoint was trained at a global batch") == NULL, "that resume keeps the global batch of 16: no warning");
    snprintf(a, sizeof a, "%s/np2_20/last.safetensors", dir);
    snprintf(b, sizeof b, "%s/resumed/last.safetensors", dir);
    ok(same_tensors(a, b, why, sizeof why), "resumed on another process count, bitwise as straight through (%s)", why);
    /* without --accumulate 2 the global batch halves: allowed, said, with the fix */
    int r = run("cp -r %s/np2_0 %s/halved && %s train --resume %s/halved/last.safetensors --out %s/halved --iters 13 --no-progress --threads 1",
                dir, dir, e8, dir, dir);
    ok(r == 0 && strstr(out, "warning: the checkpoint was trained at a global batch of 16 examples per iteration; this run takes 8") &&
       strstr(out, "--accumulate 2 keeps 16"), "a 2-process checkpoint resumed on 1 process alone: warned that the global batch goes 16 -> 8, and how to keep it");
    if (r) tap_diag("%s", out);
}

/* SAM: two exchanges per step (the perturbation's gradient, then the step's):
   2 ranks x 8 follow 1 x 16; --accumulate refuses it, saying why */
static void test_two_exchanges(const char *mpi) {
    char why[600], a[400], b[400];
    int r1 = run("%s %s train --data %s --out %s/sam2 --iters 12 --log-every 1 --no-progress", mpi, s8, data, dir);
    int r2 = run("%s train --data %s --out %s/sam1 --iters 12 --log-every 1 --no-progress --threads 1", s16, data, dir);
    ok(r1 == 0 && r2 == 0, "SGD + SAM: 12 iterations on 2 ranks x 8 and on 1 x 16");
    if (r1 || r2) { tap_diag("%s", out); return; }
    snprintf(a, sizeof a, "%s/sam2/metrics.jsonl", dir);
    snprintf(b, sizeof b, "%s/sam1/metrics.jsonl", dir);
    double worst = 0;
    for (int st = 1; st <= 12; st++) {
        double x = metric(a, st, "loss"), y = metric(b, st, "loss"), rel = fabs(x - y) / fmax(fabs(y), 1e-3);
        if (!(rel <= worst)) worst = isnan(rel) ? INFINITY : rel;
    }
    ok(worst <= 1e-5, "SAM: every iteration's loss within 1e-5 relative (worst %.3g)", worst);
    snprintf(a, sizeof a, "%s/sam2/last.safetensors", dir);
    snprintf(b, sizeof b, "%s/sam1/last.safetensors", dir);
    ok(close_tensors(a, b, 1e-5, why, sizeof why), "SAM: every tensor within 1e-5 of its scale after 12 iterations: %s", why);
    int r = run("%s train --data %s --out %s/sam_acc --iters 2 --no-progress --threads 1 --accumulate 2", s8, data, dir);
    ok(r != 0 && strstr(out, "exchanges 2 times per step") != NULL, "SAM with --accumulate 2 is refused, saying why (exit %d)", r);
}

/* Overlap: with buckets of 200 bytes the gradients go out during the
   backward pass (metrics: buckets_early per iteration); the steps are bitwise
   those of one exchange after it (--bucket-mb 0), for one exchange per step
   and for SAM's two */
static void test_overlap(const char *mpi) {
    char why[600], a[400], b[400];
    const char *ex[] = { e8, s8 }, *name[] = { "train_step", "SAM" };
    for (int i = 0; i < 2; i++) {
        int r1 = run("%s %s train --data %s --out %s/ov_small_%d --iters 12 --log-every 4 --no-progress --bucket-mb 0.0002", mpi, ex[i], data, dir, i);
        int r2 = run("%s %s train --data %s --out %s/ov_off_%d --iters 12 --log-every 4 --no-progress --bucket-mb 0", mpi, ex[i], data, dir, i);
        ok(r1 == 0 && r2 == 0, "%s: 12 iterations on 2 ranks with 200-byte gradient buckets and with one exchange (--bucket-mb 0)", name[i]);
        if (r1 || r2) { tap_diag("%s", out); continue; }
        snprintf(a, sizeof a, "%s/ov_small_%d/metrics.jsonl", dir, i);
        snprintf(b, sizeof b, "%s/ov_off_%d/metrics.jsonl", dir, i);
        double early = metric(a, 12, "buckets_early"), wait = metric(a, 12, "exchange_wait_ms"), none = metric(b, 12, "buckets_early");
        ok(early >= 1 && wait >= 0 && isnan(none), "%s: %.1f buckets per iteration sent during the backward pass (%.3f ms waited after it); none logged without buckets",
           name[i], early, wait);
        snprintf(a, sizeof a, "%s/ov_small_%d/last.safetensors", dir, i);
        snprintf(b, sizeof b, "%s/ov_off_%d/last.safetensors", dir, i);
        ok(same_tensors(a, b, why, sizeof why), "%s: the overlapped steps end bitwise where one exchange ends (%s)", name[i], why);
    }
}

/* GPU ranks, on the stand-ins for CUDA (tests/fake_cuda.c) and NCCL
   (tests/fake_nccl.c): 2 ranks of the GPU executable average their gradients
   through NCCL and follow the CPU's 2 ranks (np2_0, test_two_ranks); without
   NCCL they say so and average through MPI on the host; one GPU process
   with --accumulate 2 follows them too. The executable is linked with
   -rdynamic so that the CUDA stand-in finds its CPU kernels. */
#define N_GPU_POINTS 7
static void test_gpu_ranks(const char *mpi) {
    char fake[512], nccl[512], cc[400], g8[400], a[400], b[400], why[600];
    const char *B = jt_env("JM_BUILD", "build");
    snprintf(fake, sizeof fake, "%s/tests/libfakecuda.so", B);
    snprintf(nccl, sizeof nccl, "%s/tests/libfakenccl.so", B);
    if (access(fake, R_OK) != 0 || access(nccl, R_OK) != 0) { skip(N_GPU_POINTS, "the CPU stand-ins for CUDA and NCCL are not built"); return; }
    snprintf(cc, sizeof cc, "%s/cc-rdynamic", dir);
    FILE *f = fopen(cc, "w");
    if (f) { fprintf(f, "#!/bin/sh\nexec cc -rdynamic \"$@\"\n"); fclose(f); }
    chmod(cc, 0755);
    snprintf(g8, sizeof g8, "%s/tiny8_gpu", dir);
    int r = run("JEMC_PTXAS= JEMC_CC=%s %s compile tests/train/tiny.graph --target cuda -o %s", cc, jemc, g8);
    if (r && strstr(out, "libdevice")) { skip(N_GPU_POINTS, "CUDA's libdevice is not installed (make deps-cuda fetches it)"); return; }
    ok(r == 0, "compile tests/train/tiny.graph --target cuda");
    if (r) { tap_diag("%s", out); skip(N_GPU_POINTS - 1, "no GPU executable"); return; }
    char env[2400];
    snprintf(env, sizeof env, "JEMC_LIBCUDA=%s JEMC_LIBCUBLAS=%s JEMC_LIBCUDNN=%s", fake, fake, fake);
    snprintf(b, sizeof b, "%s/np2_0/last.safetensors", dir);
    r = run("%s JEMC_LIBNCCL=%s %s %s train --data %s --out %s/gpu_nccl --iters 12 --ckpt-every 4 --no-progress", env, nccl, mpi, g8, data, dir);
    ok(r == 0 && strstr(out, "data-parallel over 2 GPUs: gradients averaged by NCCL"), "2 GPU ranks: 12 iterations, the gradients averaged by NCCL (exit %d)", r);
    if (r) tap_diag("%s", out);
    snprintf(a, sizeof a, "%s/gpu_nccl/last.safetensors", dir);
    ok(close_tensors(a, b, 1e-5, why, sizeof why), "they follow the CPU's 2 ranks: %s", why);
    r = run("%s JEMC_LIBNCCL=/nonexistent/libnccl.so.2 %s %s train --data %s --out %s/gpu_mpi --iters 12 --ckpt-every 4 --no-progress", env, mpi, g8, data, dir);
    ok(r == 0 && strstr(out, "/nonexistent/libnccl.so.2") && strstr(out, "the gradients cross the host through MPI instead"),
       "without NCCL: said, naming the library, and the gradients go through MPI (exit %d)", r);
    if (r) tap_diag("%s", out);
    snprintf(a, sizeof a, "%s/gpu_mpi/last.safetensors", dir);
    ok(close_tensors(a, b, 1e-5, why, sizeof why), "and follow the CPU's 2 ranks: %s", why);
    r = run("%s %s train --data %s --out %s/gpu_acc --iters 12 --ckpt-every 4 --no-progress --accumulate 2", env, g8, data, dir);
    snprintf(a, sizeof a, "%s/gpu_acc/last.safetensors", dir);
    ok(r == 0, "one GPU process, --accumulate 2: 12 iterations (exit %d)", r);
    if (r) tap_diag("%s", out);
    ok(close_tensors(a, b, 1e-5, why, sizeof why), "it follows the CPU's 2 ranks: %s", why);
}

static void test_faults(const char *mpi) {
    char a[400], why[600];
    /* a NaN in rank 1's parameters only: the mean spreads it, both roll back */
    int r = run("JEMC_TEST_INJECT_NAN=5 JEMC_TEST_INJECT_RANK=1 %s %s train --data %s --out %s/nan --iters 10 --no-progress", mpi, e8, data, dir);
    ok(r == 0 && strstr(out, "rolled back from iteration") != NULL, "a NaN on rank 1 alone: the job rolls back and finishes (exit %d)", r);
    if (r) tap_diag("%s", out);
    snprintf(a, sizeof a, "%s/nan/last.safetensors", dir);
    ok(all_finite(a, why, sizeof why), "its checkpoint is finite (%s)", why);
    /* rank 1 killed at iteration 7, after the checkpoint of iteration 4 */
    time_t t0 = time(NULL);
    r = run("JEMC_TEST_INJECT_NAN=7 JEMC_TEST_KILL_RANK=1 %s %s train --data %s --out %s/kill --iters 40 --ckpt-every 4 --no-progress", mpi, e8, data, dir);
    double took = difftime(time(NULL), t0);
    ok(r != 0 && took < 30, "a rank killed mid-run ends the job: exit %d after %.0f s", r, took);
    ok(strstr(out, "exited on signal 9") != NULL || strstr(out, "killed") != NULL || strstr(out, "Killed") != NULL,
       "mpirun says which process died and how");
    snprintf(a, sizeof a, "%s/kill/last.safetensors", dir);
    char it[64];
    ok(all_finite(a, why, sizeof why) && strcmp(meta(a, "jemc.train.iterations", it, sizeof it), "4") == 0,
       "the last checkpoint (iteration %s) is whole and loads", it);
}

int main(void) {
    jemc = jt_env("JEMC", "build/jemc");
    snprintf(dir, sizeof dir, "/tmp/jemc_dp.XXXXXX");
    if (!mkdtemp(dir)) { skip_all("mkdtemp failed"); return 0; }
    char lb[512];
    snprintf(data, sizeof data, "%s/train-images-idx3-ubyte", dir);
    snprintf(lb, sizeof lb, "%s/train-labels-idx1-ubyte", dir);
    write_idx(data, lb, 64, 0);
    snprintf(e8, sizeof e8, "%s/tiny8", dir);
    snprintf(e16, sizeof e16, "%s/tiny16", dir);
    snprintf(s8, sizeof s8, "%s/sam8", dir);
    snprintf(s16, sizeof s16, "%s/sam16", dir);
    int r = run("%s compile tests/train/tiny.graph -o %s && %s compile tests/train/tiny.graph -D batch=16 -o %s && "
                "%s compile tests/train/tiny_sam.graph -o %s && %s compile tests/train/tiny_sam.graph -D batch=16 -o %s",
                jemc, e8, jemc, e16, jemc, s8, jemc, s16);
    ok(r == 0, "compile tests/train/tiny.graph and tiny_sam.graph at batch 8 and 16");
    if (r) { tap_diag("%s", out); return tap_done(); }
    test_accumulate_matches_whole_batch();
    char why[1300], mpi[1024];
    if (!jt_mpi_usable(why, sizeof why)) {
        skip(24 + N_GPU_POINTS, why);     /* the points of the five tests below */
    } else {
        jt_mpi_prefix(mpi, sizeof mpi, 2, 1);
        test_two_ranks(mpi);
        test_overlap(mpi);
        test_gpu_ranks(mpi);
        test_two_exchanges(mpi);
        test_faults(mpi);
    }
    char rm[300];
    snprintf(rm, sizeof rm, "rm -rf %s", dir);
    if (system(rm) != 0) tap_diag("could not remove %s", dir);
    return tap_done();
}
