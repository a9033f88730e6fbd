/* t_guard.c — the divergence guard's and the checkpoint writer's claims
 * (docs/runtime.md, "Divergence guard" and "Checkpoints"), on the executable
 * compiled from tests/train/tiny.graph and synthetic IDX data written here:
 *
 *   1. a rollback restores the RNG position and the loop position: after it the
 *      run goes on exactly as a run that never diverged (data order across an
 *      epoch boundary, augmentation, random numbers), the lowered learning rate
 *      aside;
 *   2. a checkpoint is never written while a parameter is NaN, also when the
 *      loss stays finite (JEMC_TEST_INJECT_NAN_AFTER poisons a parameter after
 *      an iteration's program ran); every version of last.safetensors ever
 *      renamed into place is scanned;
 *   3. after the guard gives up (exit 3) last.safetensors is byte for byte the
 *      last good checkpoint written before the divergence, and untouched;
 *   4. the write protocol, recorded by tests/io_shim.c (LD_PRELOAD): a temporary
 *      file in the same directory, written, flushed, fsync'ed, renamed over
 *      last.safetensors, then the directory fsync'ed. */
#include "train_helpers.h"
#include "tap.h"
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

/* path lengths: the run directory, a run's output folder in it, a file in that */
enum { DIRLEN = 400, OLEN = 600, PLEN = 800 };
static char dir[DIRLEN], exe[OLEN], data[OLEN], shim[PATH_MAX], preload[2 * PATH_MAX + 4];

static uint64_t fnv1a(const char *b, size_t n) {
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) { h ^= (unsigned char)b[i]; h *= 1099511628211ull; }
    return h;
}

/* files a and b byte for byte the same (checksums into ha, hb) */
static int same_bytes(const char *a, const char *b, uint64_t *ha, uint64_t *hb) {
    size_t la = 0, lb = 0;
    char *x = slurp(a, &la), *y = slurp(b, &lb);
    *ha = x ? fnv1a(x, la) : 0;
    *hb = y ? fnv1a(y, lb) : 0;
    int same = x && y && la == lb && memcmp(x, y, la) == 0;
    free(x);
    free(y);
    return same;
}

/* ------------------------------------------------------------------ metrics.jsonl */

typedef struct { char *text; char **line; int n; } jt_lines;

static void lines_read(jt_lines *l, const char *path) {
    memset(l, 0, sizeof *l);
    l->text = slurp(path, NULL);
    if (!l->text) return;
    int cap = 0;
    for (char *p = l->text; *p; p++) cap += *p == '\n';
    l->line = calloc((size_t)cap + 1, sizeof(char *));
    for (char *p = l->text, *nl; l->line && *p; p = nl + 1) {
        if (!(nl = strchr(p, '\n'))) break;
        *nl = 0;
        l->line[l->n++] = p;
    }
}
static void lines_free(jt_lines *l) { free(l->text); free(l->line); }

/* the iteration of a metrics line {"step": N, "epoch": ...}, or -1 (events, test lines) */
static long line_step(const char *s) {
    if (strncmp(s, "{\"step\": ", 9) != 0) return -1;
    char *end;
    long v = strtol(s + 9, &end, 10);
    return strncmp(end, ", \"epoch\"", 9) == 0 ? v : -1;
}

/* a metrics line without its timings (it_per_s, seconds) and, with drop_lr, without "lr" */
static void line_key(const char *s, int drop_lr, char *buf, size_t n) {
    snprintf(buf, n, "%s", s);
    char *t = strstr(buf, ", \"it_per_s\"");
    if (t) *t = 0;
    char *lr = drop_lr ? strstr(buf, ", \"lr\": ") : NULL;
    if (lr) { char *e = strchr(lr + 2, ','); if (e) memmove(lr, e, strlen(e) + 1); else *lr = 0; }
}

/* the value of "field": in a line (NaN if absent) */
static double line_num(const char *s, const char *field) {
    char k[64];
    snprintf(k, sizeof k, "\"%s\": ", field);
    const char *p = strstr(s, k);
    return p ? strtod(p + strlen(k), NULL) : NAN;
}

/* the line of A's metrics for iteration step */
static const char *step_line(const jt_lines *a, long step) {
    for (int i = 0; i < a->n; i++) if (line_step(a->line[i]) == step) return a->line[i];
    return NULL;
}

/* ------------------------------------------------------------------ the options every run shares */

#define COMMON "--log-every 1 --sample-every 0 --seed 3 --noise 0.03 --crop 1 --flip --no-progress"

/* ------------------------------------------------------------------ 1. rollback positions */

/* 64 records in batches of 8: 8 iterations per epoch. Good states every 6
   iterations; a NaN before iteration 10 rolls back from 9 (epoch 1) to 6 (epoch 0),
   so the redone iterations 7, 8 need epoch 0's shuffle again, then epoch 1's. */
static void test_rollback_positions(void) {
    int a = run("%s train --data %s --iters 14 --guard-every 6 --ckpt-every 0 --out %s/straight " COMMON, exe, data, dir);
    ok(a == 0, "a run that never diverges: 14 iterations (exit %d)", a);
    if (a) tap_diag("%s", out);
    int b = run("JEMC_TEST_INJECT_NAN=10 %s train --data %s --iters 14 --guard-every 6 --ckpt-every 0 --lr-drop 1 --out %s/same " COMMON, exe, data, dir);
    ok(b == 0 && strstr(out, "rolled back from iteration 9 to 6"), "the same run with a NaN before iteration 10 and --lr-drop 1 rolls back from 9 to 6 (exit %d)", b);
    if (b || !strstr(out, "rolled back")) tap_diag("%s", out);

    char p[PLEN], q[PLEN], why[600] = "", b1[64], b2[64];
    jt_lines la, lb;
    snprintf(p, sizeof p, "%s/straight/metrics.jsonl", dir);
    lines_read(&la, p);
    snprintf(p, sizeof p, "%s/same/metrics.jsonl", dir);
    lines_read(&lb, p);
    /* the order of the logged iterations: 1..9, the rollback, 7..14 */
    char seq[512] = "";
    int ev = 0;
    for (int i = 0; i < lb.n; i++) {
        long s = line_step(lb.line[i]);
        size_t used = strlen(seq);
        if (s >= 0) snprintf(seq + used, sizeof seq - used, "%ld ", s);
        else if (strstr(lb.line[i], "\"event\": \"rollback\"")) {
            snprintf(seq + used, sizeof seq - used, "R ");
            ev = strstr(lb.line[i], "{\"step\": 6, \"event\": \"rollback\", \"from\": 9,") != NULL;
        }
    }
    is_str(seq, "1 2 3 4 5 6 7 8 9 R 7 8 9 10 11 12 13 14 ", "metrics.jsonl: iterations 1..9, the rollback, then 7..14 again (the loop position is the good state's)");
    ok(ev, "the rollback event says step 6, from 9");
    /* every line, before and after the rollback, as the run that never diverged logged it */
    int all = la.n > 0 && lb.n > 0;
    for (int i = 0; i < lb.n && all; i++) {
        long s = line_step(lb.line[i]);
        if (s < 0) continue;
        const char *ref = step_line(&la, s);
        char kb[2048], ka[2048];
        line_key(lb.line[i], 0, kb, sizeof kb);
        if (ref) line_key(ref, 0, ka, sizeof ka);
        if (!ref || strcmp(ka, kb) != 0) { all = 0; tap_diag("iteration %ld:\n  after the rollback: %s\n  never diverged:     %s", s, kb, ref ? ka : "(missing)"); }
    }
    ok(all, "each iteration's loss, energies, accuracy, gradient norm and rate are those of the run that never diverged "
            "(same batch, augmentation and random numbers after the rollback)");
    snprintf(p, sizeof p, "%s/straight/last.safetensors", dir);
    snprintf(q, sizeof q, "%s/same/last.safetensors", dir);
    ok(same_tensors(p, q, why, sizeof why), "the final checkpoints: every parameter, moment, replay-buffer chain and counter bitwise the same (%s)", why);
    meta_text(p, "jemc.rng_call", b1, sizeof b1);
    meta_text(q, "jemc.rng_call", b2, sizeof b2);
    ok(strcmp(b1, b2) == 0 && atol(b1) > 0, "and the same RNG position (jemc.rng_call %s and %s)", b1, b2);
    meta_text(q, "jemc.train.iterations", b1, sizeof b1);
    meta_text(q, "jemc.train.rollbacks", b2, sizeof b2);
    ok(strcmp(b1, "14") == 0 && strcmp(b2, "1") == 0, "the checkpoint records 14 iterations and 1 rollback (%s, %s)", b1, b2);

    /* the default --lr-drop 0.5: the first iteration after the rollback is computed
       from the good state before the rate is used, so it matches exactly but for the rate */
    int d = run("JEMC_TEST_INJECT_NAN=10 %s train --data %s --iters 14 --guard-every 6 --ckpt-every 0 --out %s/halved " COMMON, exe, data, dir);
    ok(d == 0 && strstr(out, "rolled back from iteration 9 to 6"), "with --lr-drop 0.5 the run rolls back the same way (exit %d)", d);
    jt_lines ld;
    snprintf(p, sizeof p, "%s/halved/metrics.jsonl", dir);
    lines_read(&ld, p);
    const char *redo = NULL, *ref7 = step_line(&la, 7), *ref8 = step_line(&la, 8), *redo8 = NULL;
    int after = 0;
    for (int i = 0; i < ld.n; i++) {
        if (strstr(ld.line[i], "\"event\": \"rollback\"")) after = 1;
        if (after && line_step(ld.line[i]) == 7 && !redo) redo = ld.line[i];
        if (after && line_step(ld.line[i]) == 8 && !redo8) redo8 = ld.line[i];
    }
    char k1[2048] = "", k2[2048] = "";
    if (redo) line_key(redo, 1, k1, sizeof k1);
    if (ref7) line_key(ref7, 1, k2, sizeof k2);
    ok(redo && ref7 && strcmp(k1, k2) == 0, "iteration 7 after the rollback: the same loss, energies, accuracy and gradient norm as the run that never diverged");
    if (!redo || !ref7 || strcmp(k1, k2)) tap_diag("after the rollback: %s\nnever diverged:     %s", k1, k2);
    double lr_redo = redo ? line_num(redo, "lr") : NAN, lr_ref = ref7 ? line_num(ref7, "lr") : NAN;
    ok(fabs(lr_redo - lr_ref * 0.5) <= 1e-6 * lr_ref, "at half the learning rate (%.9g against %.9g)", lr_redo, lr_ref);
    ok(redo8 && ref8 && line_num(redo8, "loss") != line_num(ref8, "loss"), "iteration 8 then differs: the halved rate was used");
    snprintf(q, sizeof q, "%s/halved/last.safetensors", dir);
    snprintf(p, sizeof p, "%s/straight/last.safetensors", dir);
    meta_text(p, "jemc.rng_call", b1, sizeof b1);
    meta_text(q, "jemc.rng_call", b2, sizeof b2);
    ok(strcmp(b1, b2) == 0, "after 14 iterations, rollback or not, the RNG is at the same position (jemc.rng_call %s and %s)", b1, b2);
    lines_free(&la);
    lines_free(&lb);
    lines_free(&ld);
}

/* ------------------------------------------------------------------ the shim */

/* LD_PRELOAD for the shim; under ASan the sanitizer's runtime must come first */
static int shim_setup(void) {
    snprintf(shim, sizeof shim, "%s/tests/libioshim.so", jt_env("JM_BUILD", "build"));
    if (access(shim, R_OK) != 0) return 0;
    char real[PATH_MAX];
    if (realpath(shim, real)) snprintf(shim, sizeof shim, "%s", real);
    snprintf(preload, sizeof preload, "%s", shim);
    static char ld[8192];
    char cmd[PATH_MAX + 32];
    snprintf(cmd, sizeof cmd, "ldd %s", exe);
    if (jt_run(cmd, ld, sizeof ld) == 0) {
        const char *a = strstr(ld, "libasan.so");
        const char *arrow = a ? strstr(a, "=> ") : NULL;
        if (arrow) {
            arrow += 3;
            size_t n = strcspn(arrow, " (\n");
            snprintf(preload, sizeof preload, "%.*s %s", (int)n, arrow, shim);
        }
    }
    return 1;
}

/* the versions of OUT/last.safetensors that the shim kept (JM_IOSHIM_KEEP), in order */
static int kept_versions(const char *outdir, char paths[][PLEN], int max) {
    int n = 0;
    for (int k = 1; k < 200 && n < max; k++) {
        snprintf(paths[n], PLEN, "%s/last.safetensors.kept.%d", outdir, k);
        if (access(paths[n], R_OK) == 0) n++;
    }
    return n;
}

/* ------------------------------------------------------------------ 2. no NaN in a checkpoint */

static void test_nan_param(int have_shim) {
    /* a parameter poisoned after iteration 6's program ran: the loss of 6 is finite;
       the checkpoint at 6 must find the NaN and roll back to 4 instead */
    char o[OLEN], p[PLEN], why[600] = "", b[64];
    snprintf(o, sizeof o, "%s/after", dir);
    int r = run("JEMC_TEST_INJECT_NAN_AFTER=6 %s%s%s %s train --data %s --iters 12 --ckpt-every 3 --guard-every 4 --out %s " COMMON,
                have_shim ? "JM_IOSHIM_KEEP=1 LD_PRELOAD='" : "", have_shim ? preload : "", have_shim ? "'" : "", exe, data, o);
    ok(r == 0 && strstr(out, "iteration 6: a parameter is not finite") && strstr(out, "rolled back from iteration 6 to 4"),
       "a parameter NaN after iteration 6 is caught by the checkpoint at 6 and rolled back to 4 (exit %d)", r);
    if (r || !strstr(out, "rolled back")) tap_diag("%s", out);
    jt_lines l;
    snprintf(p, sizeof p, "%s/metrics.jsonl", o);
    lines_read(&l, p);
    const char *six = NULL;
    int ev = 0;
    for (int i = 0; i < l.n && !ev; i++) {
        if (line_step(l.line[i]) == 6 && !six) six = l.line[i];
        ev = strstr(l.line[i], "{\"step\": 4, \"event\": \"rollback\", \"from\": 6,") != NULL;
    }
    double loss6 = six ? line_num(six, "loss") : NAN, gn6 = six ? line_num(six, "grad_norm") : NAN;
    ok(ev && isfinite(loss6) && isfinite(gn6), "the loss (%g) and gradient norm (%g) of iteration 6 were finite: the guard's loss check could not see it",
       loss6, gn6);
    lines_free(&l);
    if (have_shim) {
        static char ver[16][PLEN];
        int n = kept_versions(o, ver, 16), fin = n > 0;
        char its[256] = "";
        for (int i = 0; i < n; i++) {
            char w[600];
            if (!all_finite(ver[i], w, sizeof w)) { fin = 0; tap_diag("%s: %s", ver[i], w); }
            size_t used = strlen(its);
            snprintf(its + used, sizeof its - used, "%s ", meta_text(ver[i], "jemc.train.iterations", b, sizeof b));
        }
        ok(fin, "every one of the %d checkpoints written is finite (each version renamed over last.safetensors, kept by the shim)", n);
        is_str(its, "3 6 9 12 ", "they are the checkpoints of iterations 3, 6 (after the rollback), 9 and 12");
    } else {
        skip(2, "tests/io_shim.c is not built (make $JM_BUILD/tests/libioshim.so)");
    }
    /* the run's last iteration: nothing after it would have caught the NaN */
    snprintf(o, sizeof o, "%s/after6", dir);
    r = run("JEMC_TEST_INJECT_NAN_AFTER=6 %s train --data %s --iters 6 --ckpt-every 0 --guard-every 4 --out %s " COMMON, exe, data, o);
    snprintf(p, sizeof p, "%s/last.safetensors", o);
    ok(r == 0 && all_finite(p, why, sizeof why), "poisoned after the last iteration: the final checkpoint is still finite (exit %d; %s)", r, why);
    ok(strcmp(meta_text(p, "jemc.train.rollbacks", b, sizeof b), "1") == 0, "written after one rollback and the iterations redone (rollbacks %s)", b);
}

/* ------------------------------------------------------------------ 3. giving up */

static int tmp_files_left(const char *outdir) {
    char cmd[PLEN + 64], buf[1024];
    snprintf(cmd, sizeof cmd, "ls %s | grep -c 'safetensors\\.tmp'", outdir);
    jt_run(cmd, buf, sizeof buf);
    return atoi(buf);
}

static void test_give_up(int have_shim) {
    char o[OLEN], p[PLEN], q[PLEN], b[64];
    uint64_t ha = 0, hb = 0;
    /* checkpoints at 3 and 6, a NaN before 8, no rollback allowed: give up at once */
    snprintf(o, sizeof o, "%s/gaveup", dir);
    int r = run("JEMC_TEST_INJECT_NAN=8 %s%s%s %s train --data %s --iters 12 --ckpt-every 3 --guard-every 3 --max-rollbacks 0 --out %s " COMMON,
                have_shim ? "JM_IOSHIM_KEEP=1 LD_PRELOAD='" : "", have_shim ? preload : "", have_shim ? "'" : "", exe, data, o);
    char named[PLEN + 64];
    snprintf(named, sizeof named, "the last good checkpoint is %s/last.safetensors", o);
    ok(r == 3 && strstr(out, "giving up after 0 rollbacks") && strstr(out, named), "a NaN with --max-rollbacks 0: the guard gives up (exit %d), naming the last good checkpoint", r);
    if (r != 3 || !strstr(out, named)) tap_diag("%s", out);
    snprintf(p, sizeof p, "%s/last.safetensors", o);
    /* the same run stopped at 6 (its options, stored as metadata, differ: compare the tensors) */
    r = run("%s train --data %s --iters 6 --ckpt-every 3 --guard-every 3 --out %s/six " COMMON, exe, data, dir);
    snprintf(q, sizeof q, "%s/six/last.safetensors", dir);
    char why[600] = "", b2[64];
    int same = r == 0 && same_tensors(p, q, why, sizeof why);
    meta_text(p, "jemc.rng_call", b, sizeof b);
    meta_text(q, "jemc.rng_call", b2, sizeof b2);
    ok(same && strcmp(b, b2) == 0, "last.safetensors after giving up holds iteration 6's state: every tensor and the RNG position as a run stopped at 6 (%s; rng_call %s, %s)",
       why, b, b2);
    ok(strcmp(meta_text(p, "jemc.train.iterations", b, sizeof b), "6") == 0, "it records 6 iterations (%s)", b);
    if (have_shim) {
        static char ver[16][PLEN];
        int n = kept_versions(o, ver, 16);
        same = n > 0 && same_bytes(p, ver[n - 1], &ha, &hb) && n == 2;
        ok(same, "it is byte for byte the last of the %d checkpoints written before the divergence, each kept by the shim (checksums %016llx, %016llx)", n,
           (unsigned long long)ha, (unsigned long long)hb);
    } else {
        skip(1, "tests/io_shim.c is not built (make $JM_BUILD/tests/libioshim.so)");
    }
    ok(tmp_files_left(o) == 0, "no temporary file is left behind");

    /* checksum, inode and modification time before and after a resumed run that
       diverges at every iteration (any energy gap is too much): two rollbacks, then
       the guard gives up, asked for a checkpoint every iteration */
    snprintf(o, sizeof o, "%s/resumed", dir);
    r = run("%s train --data %s --iters 6 --ckpt-every 0 --out %s " COMMON, exe, data, o);
    snprintf(p, sizeof p, "%s/last.safetensors", o);
    size_t n0 = 0;
    char *before = slurp(p, &n0);
    struct stat s0, s1;
    int st0 = stat(p, &s0);
    ok(r == 0 && before && st0 == 0, "a good checkpoint at iteration 6 (exit %d, checksum %016llx)", r, before ? (unsigned long long)fnv1a(before, n0) : 0ull);
    usleep(20000);   /* a rewrite would show in the modification time */
    r = run("%s train --data %s --iters 12 --ckpt-every 1 --max-energy-gap 0 --max-rollbacks 2 --change max-energy-gap --change max-rollbacks --resume %s --out %s " COMMON,
            exe, data, p, o);
    ok(r == 3 && strstr(out, "the energy gap exploded") && strstr(out, "giving up after 2 rollbacks"),
       "resumed with --max-energy-gap 0: two rollbacks, then the guard gives up (exit %d)", r);
    if (r != 3) tap_diag("%s", out);
    size_t n1 = 0;
    char *after = slurp(p, &n1);
    int st1 = stat(p, &s1);
    ok(before && after && n0 == n1 && memcmp(before, after, n0) == 0, "last.safetensors is byte-identical after giving up (checksums %016llx, %016llx)",
       before ? (unsigned long long)fnv1a(before, n0) : 0ull, after ? (unsigned long long)fnv1a(after, n1) : 0ull);
    ok(st0 == 0 && st1 == 0 && s0.st_ino == s1.st_ino && s0.st_mtim.tv_sec == s1.st_mtim.tv_sec && s0.st_mtim.tv_nsec == s1.st_mtim.tv_nsec,
       "and untouched: the same inode and modification time (nothing renamed over it)");
    ok(tmp_files_left(o) == 0, "no temporary file is left behind");
    free(before);
    free(after);
}

/* ------------------------------------------------------------------ 4. the write protocol */

typedef struct { char op[16]; int fd; long long a; char path[PATH_MAX], path2[PATH_MAX], kind[8]; } io_rec;

/* the shim's log as records (rename: a = rc, path = old, path2 = new) */
static io_rec *io_read(const char *path, int *n) {
    jt_lines l;
    lines_read(&l, path);
    io_rec *r = calloc((size_t)l.n + 1, sizeof *r);
    *n = 0;
    for (int i = 0; r && i < l.n; i++) {
        io_rec *x = &r[*n];
        char *f[6] = { 0 };
        int nf = 0;
        for (char *s = l.line[i], *t; nf < 6; s = t + 1) {
            f[nf++] = s;
            if (!(t = strchr(s, '\t'))) break;
            *t = 0;
        }
        if (nf < 3) continue;
        snprintf(x->op, sizeof x->op, "%s", f[0]);
        if (strcmp(x->op, "rename") == 0) {
            if (nf < 4) continue;
            x->fd = -1;
            x->a = atoll(f[1]);
            snprintf(x->path, sizeof x->path, "%s", f[2]);
            snprintf(x->path2, sizeof x->path2, "%s", f[3]);
        } else {
            x->fd = atoi(f[1]);
            x->a = strcmp(x->op, "open") == 0 ? strtoll(f[2], NULL, 16) : atoll(f[2]);
            if (strcmp(x->op, "fopen") == 0) x->a = strpbrk(f[2], "wa+") != NULL;            /* opened for writing */
            else if (strcmp(x->op, "open") == 0) x->a = (x->a & (O_WRONLY | O_RDWR)) != 0;
            snprintf(x->path, sizeof x->path, "%s", nf > 3 ? f[3] : "");
            snprintf(x->kind, sizeof x->kind, "%s", nf > 4 ? f[4] : "");
        }
        (*n)++;
    }
    lines_free(&l);
    return r;
}

static int is_op(const io_rec *x, const char *op) { return strcmp(x->op, op) == 0; }
static int is_write(const io_rec *x) { return (is_op(x, "write") || is_op(x, "fwrite")) && x->a > 0; }
static int is_sync(const io_rec *x) { return (is_op(x, "fsync") || is_op(x, "fdatasync")) && x->a == 0; }

static void test_write_protocol(int have_shim) {
    if (!have_shim) { skip(7, "tests/io_shim.c is not built (make $JM_BUILD/tests/libioshim.so)"); return; }
    char o[OLEN], log[OLEN], final[PLEN];
    snprintf(o, sizeof o, "%s/io", dir);
    snprintf(log, sizeof log, "%s/io.log", dir);
    snprintf(final, sizeof final, "%s/last.safetensors", o);
    int r = run("JM_IOSHIM_LOG=%s LD_PRELOAD='%s' %s train --data %s --iters 6 --ckpt-every 2 --out %s " COMMON, log, preload, exe, data, o);
    int n = 0;
    io_rec *x = io_read(log, &n);
    int fsyncs = 0;
    for (int i = 0; i < n; i++) fsyncs += is_op(&x[i], "fsync") || is_op(&x[i], "fdatasync");
    ok(r == 0 && n > 0 && fsyncs > 0, "train under the recording shim (exit %d; %d calls recorded, %d syncs)", r, n, fsyncs);
    if (r || n == 0) { tap_diag("%s", out); skip(6, "nothing recorded"); free(x); return; }

    /* each rename over last.safetensors closes a checkpoint's cycle: from the
       open of the file it renames (after the previous cycle) to the directory's sync */
    int cycles = 0, same_dir = 1, fresh = 1, written = 1, synced = 1, dir_synced = 1, final_untouched = 1, prev = -1;
    for (int i = 0; i < n; i++) {
        const io_rec *e = &x[i];
        if ((is_op(e, "open") || is_op(e, "fopen")) && e->a && strcmp(e->path, final) == 0) { final_untouched = 0; tap_diag("line %d: %s opens %s for writing", i + 1, e->op, final); }
        if (is_write(e) && strcmp(e->path, final) == 0) { final_untouched = 0; tap_diag("line %d: a write to %s", i + 1, final); }
        if (!is_op(e, "rename") || strcmp(e->path2, final) != 0) continue;
        cycles++;
        const char *tmp = e->path, *slash = strrchr(tmp, '/');
        if (e->a != 0 || strcmp(tmp, final) == 0 || !slash || (size_t)(slash - tmp) != strlen(o) || strncmp(tmp, o, strlen(o)) != 0) {
            same_dir = 0;
            tap_diag("checkpoint %d: rename %s -> %s (rc %lld): not a temporary file in %s", cycles, tmp, final, e->a, o);
        }
        /* the temporary file opened for writing in this cycle */
        int op = -1;
        for (int k = i - 1; k > prev && op < 0; k--)
            if ((is_op(&x[k], "open") || is_op(&x[k], "fopen")) && strcmp(x[k].path, tmp) == 0) op = k;
        if (op < 0 || !x[op].a) { fresh = 0; tap_diag("checkpoint %d: %s was not opened for writing before its rename", cycles, tmp); }
        /* written; flushed out of stdio after the last fwrite; synced after both; no write after the sync */
        int last_w = -1, last_fw = -1, flush = -1, sync = -1, late = 0;
        for (int k = op + 1; op >= 0 && k < i; k++) {
            if (strcmp(x[k].path, tmp) != 0) continue;
            if (is_write(&x[k])) {
                last_w = k;
                if (is_op(&x[k], "fwrite")) last_fw = k;
                if (sync >= 0) late = 1;
            }
            if (is_op(&x[k], "fflush") && x[k].a == 0) flush = k;
            if (is_sync(&x[k])) sync = k;
        }
        if (last_w < 0) { written = 0; tap_diag("checkpoint %d: nothing written to %s", cycles, tmp); }
        if (sync < 0 || sync < last_w || (last_fw >= 0 && !(flush > last_fw && flush < sync)) || late) {
            synced = 0;
            tap_diag("checkpoint %d: %s: last write at line %d (fwrite %d), fflush %d, fsync %d, a write after the fsync: %s; rename at %d",
                     cycles, tmp, last_w + 1, last_fw + 1, flush + 1, sync + 1, late ? "yes" : "no", i + 1);
        }
        /* the directory synced after the rename, before the next checkpoint's file is opened */
        int ds = -1;
        for (int k = i + 1; k < n && ds < 0; k++) {
            if ((is_op(&x[k], "open") || is_op(&x[k], "fopen")) && strncmp(x[k].path, final, strlen(final)) == 0) break;
            if (is_sync(&x[k]) && strcmp(x[k].kind, "dir") == 0 && strcmp(x[k].path, o) == 0) ds = k;
        }
        if (ds < 0) { dir_synced = 0; tap_diag("checkpoint %d: %s not fsync'ed after the rename (line %d)", cycles, o, i + 1); }
        prev = i;
    }
    ok(cycles == 3, "3 checkpoints (iterations 2, 4, 6) renamed over last.safetensors (%d)", cycles);
    ok(cycles && same_dir && fresh, "each is written to a temporary file in the same directory, opened for writing in that checkpoint's cycle");
    ok(cycles && written && synced, "each temporary file is written, flushed from stdio, then fsync'ed, with nothing written after the fsync, before the rename");
    ok(cycles && dir_synced, "after each rename the directory is fsync'ed (before the next checkpoint)");
    ok(final_untouched, "last.safetensors itself is never opened for writing or written to");
    ok(tmp_files_left(o) == 0, "no temporary file is left behind");
    free(x);
}

int main(void) {
    jemc = jt_env("JEMC", "build/jemc");
    char tmpl[] = "/tmp/jemc_guard.XXXXXX";
    if (!mkdtemp(tmpl)) { skip_all("mkdtemp failed"); return 0; }
    /* canonical: the shim records canonical paths */
    char real[PATH_MAX];
    if (!realpath(tmpl, real) || strlen(real) >= 100) snprintf(real, sizeof real, "%s", tmpl);
    snprintf(dir, sizeof dir, "%.100s", real);
    char lb[OLEN];
    snprintf(data, sizeof data, "%s/train-images-idx3-ubyte", dir);
    snprintf(lb, sizeof lb, "%s/train-labels-idx1-ubyte", dir);
    write_idx(data, lb, 64, 0);
    snprintf(exe, sizeof exe, "%s/tiny", dir);
    int r = run("%s compile tests/train/tiny.graph -o %s", jemc, exe);
    ok(r == 0, "compile tests/train/tiny.graph");
    if (r) { tap_diag("%s", out); return tap_done(); }
    int have_shim = shim_setup();
    if (!have_shim) tap_diag("%s is not built: the tests that need it skip", shim);
    else if (strchr(preload, ' ')) tap_diag("sanitized executable: LD_PRELOAD='%s'", preload);
    test_rollback_positions();
    test_nan_param(have_shim);
    test_give_up(have_shim);
    test_write_protocol(have_shim);
    char rm[OLEN];
    snprintf(rm, sizeof rm, "rm -rf %s", dir);
    if (tap_n_fail) tap_diag("%s is kept for a look", dir);
    else if (system(rm) != 0) tap_diag("could not remove %s", dir);
    return tap_done();
}
