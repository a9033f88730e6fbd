/* t_resume.c — `train --resume` resumes the run, not just the state: the
 * checkpoint stores the run's options (metadata jemc.train.option.NAME) and a
 * resumed run takes those not given again; a locked option given with another
 * value is refused (exit 2, nothing written) unless --change says so; a
 * checkpoint from before options were stored resumes as before, with a note.
 * On the tiny JEM of t_train.c (tests/train/tiny.graph, 8x8 images, 4 classes)
 * and synthetic IDX data written here. */
#include "train_helpers.h"
#include "tap.h"
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

static char dir[256], exe[320], data[320];

/* the checkpoint of run directory d */
static const char *ck(const char *d) {
    static char p[4][512];
    static int k;
    k = (k + 1) % 4;
    snprintf(p[k], sizeof p[k], "%s/%s/last.safetensors", dir, d);
    return p[k];
}

static int exists(const char *d) {
    char p[512];
    struct stat st;
    snprintf(p, sizeof p, "%s/%s", dir, d);
    return stat(p, &st) == 0;
}

/* The issue as a new user met it: 3 iterations with --noise 0.03 --flip, then
   --resume without them, must be the 6 straight iterations, bitwise. */
static void test_resume_without_flags(void) {
    int a = run("%s train --data %s --iters 6 --out %s/straight --seed 3 --no-progress --noise 0.03 --flip", exe, data, dir);
    ok(a == 0, "6 iterations straight with --noise 0.03 --flip (exit %d)", a);
    if (a) tap_diag("%s", out);
    int b = run("%s train --data %s --iters 3 --out %s/half --seed 3 --no-progress --noise 0.03 --flip", exe, data, dir);
    int c = run("%s train --iters 6 --resume %s --no-progress", exe, ck("half"));
    ok(b == 0 && c == 0, "3 iterations, then --resume with neither --data nor the augmentation nor --out (exit %d, %d)", b, c);
    if (c) tap_diag("%s", out);
    ok(strstr(out, "resuming with") && strstr(out, "--noise 0.03") && strstr(out, "--flip") && strstr(out, "--seed 3") && strstr(out, "--out "),
       "one line says which of the run's options were restored");
    char *line = strstr(out, "resuming with");
    if (line) tap_diag("%.*s", (int)strcspn(line, "\n"), line);
    char why[600] = "", buf[64];
    ok(same_tensors(ck("straight"), ck("half"), why, sizeof why), "3 + resume (no flags) + 3 == 6 straight: every tensor bitwise (%s)", why);
    is_str(meta(ck("half"), "jemc.train.iterations", buf, sizeof buf), "6", "the resumed checkpoint has 6 iterations");
    is_str(meta(ck("half"), "jemc.train.option.noise", buf, sizeof buf), "0.03", "and stores --noise 0.03");
    is_str(meta(ck("half"), "jemc.train.option.flip", buf, sizeof buf), "1", "and --flip");
    is_str(meta(ck("half"), "jemc.train.option.iters", buf, sizeof buf), "6", "and the new length --iters 6");
    /* the same value again is no change: 0.030 is 0.03 */
    b = run("%s train --data %s --iters 3 --out %s/again --seed 3 --no-progress --noise 0.03 --flip", exe, data, dir);
    c = run("%s train --data %s --iters 6 --resume %s --no-progress --noise 0.030 --flip --seed 3", exe, data, ck("again"));
    ok(b == 0 && c == 0 && same_tensors(ck("straight"), ck("again"), why, sizeof why), "options given again with the same values resume too (exit %d, %d; %s)",
       b, c, why);
    if (c) tap_diag("%s", out);
}

/* every other option that shapes the run comes back too; and the run's length:
   a run stopped early (--max-seconds) finishes its --iters on a bare --resume */
static void test_resume_everything(void) {
    const char *opts = "--seed 5 --data-seed 7 --pretrain 2 --noise 0.05 --crop 1 --flip --decay-epochs 1 --decay-rate 0.5 "
                       "--guard-every 2 --lr-drop 0.25 --max-rollbacks 3 --max-energy-gap 1e6 --log-every 2";
    int a = run("%s train --data %s --test %s --iters 7 --out %s/all1 --no-progress %s", exe, data, data, dir, opts);
    ok(a == 0, "7 iterations with a dozen options (exit %d)", a);
    if (a) tap_diag("%s", out);
    int b = run("%s train --data %s --test %s --iters 7 --out %s/all2 --no-progress --max-seconds 1e-9 %s", exe, data, data, dir, opts);
    char buf[64];
    ok(b == 0 && meta(ck("all2"), "jemc.train.iterations", buf, sizeof buf) && atoi(buf) < 7, "the same run stopped by --max-seconds after %s iteration(s)", buf);
    int c = run("%s train --resume %s --no-progress", exe, ck("all2"));
    ok(c == 0, "a bare --resume CKPT (exit %d)", c);
    if (c) tap_diag("%s", out);
    char why[600] = "";
    ok(same_tensors(ck("all1"), ck("all2"), why, sizeof why), "finishes the 7 iterations with every option the run had: bitwise equal (%s)", why);
    is_str(meta(ck("all2"), "jemc.train.option.decay-epochs", buf, sizeof buf), "1", "the checkpoint stores --decay-epochs 1");
    /* the evaluation --test runs leaves the random-number position alone */
    a = run("%s train --data %s --iters 7 --out %s/notest --no-progress %s", exe, data, dir, opts);
    ok(a == 0 && same_tensors(ck("all1"), ck("notest"), why, sizeof why), "and --test does not change the model: == the run without it (%s)", why);
    ok(!strstr(out, "--max-seconds") && meta(ck("all2"), "jemc.train.iterations", buf, sizeof buf) && strcmp(buf, "7") == 0,
       "--max-seconds is not stored: the resumed run ran to the end (%s iterations)", buf);
}

/* a locked option given with another value: refused, naming it, both values and
   --change, with nothing written; --change runs it; --change FLAG turns it off */
static void test_refuse_and_change(void) {
    size_t n0 = 0, n1 = 0, m0 = 0, m1 = 0;
    char mpath[512];
    snprintf(mpath, sizeof mpath, "%s/half/metrics.jsonl", dir);
    char *before = slurp(ck("half"), &n0), *mbefore = slurp(mpath, &m0);
    int r = run("%s train --iters 9 --resume %s --no-progress --noise 0.05", exe, ck("half"));
    is_int(r, 2, "--resume with --noise 0.05 where the run has 0.03: exit 2");
    ok(strstr(out, "--noise 0.05") && strstr(out, "--noise 0.03") && strstr(out, "--change noise"),
       "the message names the option, both values and --change: %.*s", (int)strcspn(out, "\n"), out);
    char *after = slurp(ck("half"), &n1), *mafter = slurp(mpath, &m1);
    ok(before && after && n0 == n1 && memcmp(before, after, n0) == 0 && mbefore && mafter && m0 == m1 && memcmp(mbefore, mafter, m0) == 0,
       "nothing written: the checkpoint and metrics.jsonl are byte for byte as they were");
    r = run("%s train --iters 9 --resume %s --out %s/refused --no-progress --data-seed 9 --flip", exe, ck("half"), dir);
    ok(r == 2 && !exists("refused") && strstr(out, "--data-seed 9") && strstr(out, "--change data-seed"), "another option, another run directory: refused, no directory made");
    r = run("%s train --iters 9 --resume %s --out %s/typo --no-progress --change nosie", exe, ck("half"), dir);
    ok(r == 2 && strstr(out, "did you mean 'noise'") && !exists("typo"), "--change with a misspelt option is refused with a suggestion");
    r = run("%s train --iters 9 --resume %s --out %s/notlocked --no-progress --change iters", exe, ck("half"), dir);
    ok(r == 2 && strstr(out, "not locked"), "--change of an option that is not locked says so");
    r = run("%s train --data %s --iters 2 --out %s/nochange --change noise --no-progress", exe, data, dir);
    ok(r == 2 && strstr(out, "only applies with --resume"), "--change without --resume is refused");

    free(before);
    free(after);
    free(mbefore);
    free(mafter);
    char buf[64];
    r = run("%s train --iters 9 --resume %s --out %s/changed --no-progress --noise 0.05 --change noise", exe, ck("half"), dir);
    ok(r == 0, "with --change noise it runs (exit %d)", r);
    if (r) tap_diag("%s", out);
    ok(strstr(out, "--noise 0.05 instead of the run's --noise 0.03 (--change noise)") != NULL, "and says what changed");
    is_str(meta(ck("changed"), "jemc.train.option.noise", buf, sizeof buf), "0.05", "the new checkpoint stores the new value");
    is_str(meta(ck("changed"), "jemc.train.option.flip", buf, sizeof buf), "1", "and keeps the run's --flip");
    r = run("%s train --iters 7 --resume %s --out %s/noflip --no-progress --change flip", exe, ck("half"), dir);
    ok(r == 0 && strstr(out, "no --flip instead of the run's --flip") && meta(ck("noflip"), "jemc.train.option.flip", buf, sizeof buf) && strcmp(buf, "0") == 0,
       "--change flip without --flip turns the flip off");
    r = run("%s train --data %s --iters 7 --resume %s --out %s/allchg --no-progress --change all", exe, data, ck("half"), dir);
    ok(r == 0 && meta(ck("allchg"), "jemc.train.option.noise", buf, sizeof buf) && strcmp(buf, "0") == 0, "--change all: every locked option from this command line");
}

/* A checkpoint written before options were stored: the same file less the
   jemc.train.option.* metadata. It resumes as before (the command line's
   options), with a note; without --data that is a usage error. */
static void test_old_checkpoint(void) {
    jm_st_file f;
    char err[512], old[512];
    memset(&f, 0, sizeof f);
    snprintf(old, sizeof old, "%s/old/last.safetensors", dir);
    int r = run("%s train --data %s --iters 3 --out %s/old --seed 3 --no-progress --noise 0.03 --flip", exe, data, dir);
    int rd = jm_st_read(old, &f, err, sizeof err);
    int kept = 0, dropped = 0;
    for (int i = 0; rd == 0 && i < f.nmeta; i++) {
        if (strncmp(f.meta[i].key, "jemc.train.option.", 18) == 0) { free(f.meta[i].key); free(f.meta[i].value); dropped++; continue; }
        f.meta[kept++] = f.meta[i];
    }
    f.nmeta = kept;
    ok(r == 0 && rd == 0 && dropped > 10 && jm_st_write(old, &f, err, sizeof err) == 0, "an old-style checkpoint (%d option keys removed)", dropped);
    jm_st_free(&f);
    r = run("%s train --iters 6 --resume %s --no-progress", exe, old);
    ok(r == 2 && strstr(out, "stores no options") && strstr(out, "--data is required"), "without --data it is a usage error, with a note (exit %d)", r);
    r = run("%s train --data %s --iters 6 --out %s/old --resume %s --no-progress --noise 0.03 --flip", exe, data, dir, old);
    ok(r == 0 && strstr(out, "stores no options"), "with the options given again it resumes, with a note (exit %d)", r);
    if (r) tap_diag("%s", out);
    char why[600] = "", buf[64];
    ok(same_tensors(ck("straight"), old, why, sizeof why), "as before: == 6 straight, bitwise (%s)", why);
    is_str(meta(old, "jemc.train.option.seed", buf, sizeof buf), "3", "its new checkpoint stores the options, the seed the checkpoint's");
}

int main(void) {
    jemc = jt_env("JEMC", "build/jemc");
    snprintf(dir, sizeof dir, "/tmp/jemc_resume.XXXXXX");
    if (!mkdtemp(dir)) { skip_all("mkdtemp failed"); return 0; }
    char lb[512];
    snprintf(data, sizeof data, "%s/train-images-idx3-ubyte", dir);
    snprintf(lb, sizeof lb, "%s/train-labels-idx1-ubyte", dir);
    write_idx(data, lb, 64, 0);
    snprintf(exe, sizeof exe, "%s/tiny", dir);
    int r = run("%s compile tests/train/tiny.graph -o %s", jemc, exe);
    ok(r == 0, "compile tests/train/tiny.graph");
    if (r) { tap_diag("%s", out); return tap_done(); }
    run_in = dir;
    test_resume_without_flags();
    test_resume_everything();
    test_refuse_and_change();
    test_old_checkpoint();
    char rm[300];
    snprintf(rm, sizeof rm, "rm -rf %s", dir);
    if (system(rm) != 0) tap_diag("could not remove %s", dir);
    return tap_done();
}
