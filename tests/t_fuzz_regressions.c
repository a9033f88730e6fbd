/* t_fuzz_regressions.c — every input the fuzzer ever crashed on (kept in
 * tests/fuzz/regressions/; the readers' are in its subdirectories, t_fuzz_readers.c) must now end in diagnostics or success: exit status
 * 0 or 1, never a signal. Also replays the kept corpus through the front end in
 * process, so a crash on any of those inputs fails `make test` (and the ASan run). */
#include "tap.h"
#include "helpers.h"
#include "grad.h"
#include "simplify.h"
#include "batch.h"
#include "lower.h"
#include "plan.h"
#include <dirent.h>
#include <sys/stat.h>

static int by_name(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static int list_dir(const char *dir, char ***out) {
    DIR *d = opendir(dir);
    int n = 0, cap = 0;
    *out = NULL;
    if (!d) return 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        /* subdirectories hold the file readers' crashers (t_fuzz_readers replays them) */
        char path[1024];
        struct stat sb;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        if (stat(path, &sb) == 0 && S_ISDIR(sb.st_mode)) continue;
        if (n == cap) { cap = cap ? cap * 2 : 64; *out = realloc(*out, sizeof(char *) * (size_t)cap); }
        (*out)[n++] = strdup(e->d_name);
    }
    closedir(d);
    qsort(*out, (size_t)n, sizeof(char *), by_name);
    return n;
}

int main(void) {
    const char *jemc = jt_env("JEMC", "build/jemc");
    char **names;
    int n = list_dir("tests/fuzz/regressions", &names);
    ok(n >= 1, "the regression inputs are present (%d)", n);
    for (int i = 0; i < n; i++) {
        char cmd[1024], out[4096];
        snprintf(cmd, sizeof cmd, "%s check 'tests/fuzz/regressions/%s' > /dev/null", jemc, names[i]);
        int rc = jt_run(cmd, out, sizeof out);
        ok(rc == 0 || rc == 1, "%s: jemc check exits with 0 or 1 (got %d)", names[i], rc);
        free(names[i]);
    }
    free(names);
    /* the kept corpus, in process: no crash, and diagnostics or a module for each */
    n = list_dir("tests/fuzz/corpus", &names);
    int replayed = 0, planned = 0, bad_plans = 0, batched = 0, bad_batched = 0;
    FILE *null = fopen("/dev/null", "w");
    for (int i = 0; i < n; i++) {
        char path[600];
        snprintf(path, sizeof path, "tests/fuzz/corpus/%s", names[i]);
        FILE *f = fopen(path, "rb");
        if (f) {
            char *buf = malloc(1 << 16);
            size_t len = fread(buf, 1, 1 << 16, f);
            fclose(f);
            jm_arena a = { 0 };
            jm_diags d;
            jm_diag_init(&d, &a, null);
            jm_module *m = jm_frontend_load_text(&d, "corpus.graph", buf, len, NULL, 0);
            if (m && (jm_simplify(m, &d, 0) != 0 || jm_autodiff(m, &d) != 0 || jm_simplify(m, &d, 1) != 0)) m = NULL;
            /* and the CPU backend's passes: lowering, fusion, schedule, memory plan */
            jm_plan plan;
            if (m && (jm_lower(m, &d) != 0 || jm_simplify(m, &d, 1) != 0 || jm_plan_build(m, &plan, &d) != 0)) m = NULL;
            if (m) {
                planned++;
                if (jm_plan_check_memory(&plan, NULL) != 0) { bad_plans++; tap_diag("%s: the memory plan overlaps live buffers", names[i]); }
            }
            replayed += (m != NULL) != (d.nerr > 0);
            /* again with twin batching (compiler/batch.h): a module that made it
               through must make it through batched, and batch nothing wrongly
               enough to fail a shape rule or a later pass */
            if (m) {
                jm_arena a2 = { 0 };
                jm_diags d2;
                jm_diag_init(&d2, &a2, null);
                jm_module *m2 = jm_frontend_load_text(&d2, "corpus.graph", buf, len, NULL, 0);
                jm_plan plan2;
                int good = m2 && jm_simplify(m2, &d2, 0) == 0 && jm_batch_twins(m2, &d2, NULL, NULL) == 0 && jm_autodiff(m2, &d2) == 0 &&
                           jm_simplify(m2, &d2, 1) == 0 && jm_lower(m2, &d2) == 0 && jm_simplify(m2, &d2, 1) == 0 &&
                           jm_plan_build(m2, &plan2, &d2) == 0 && jm_plan_check_memory(&plan2, NULL) == 0;
                for (int p = 0; good && p < m2->nprograms; p++) batched += m2->programs[p].twins > 0;
                if (!good) { bad_batched++; tap_diag("%s: fails once twin batching runs", names[i]); }
                jm_arena_free(&a2);
            }
            jm_arena_free(&a);
            free(buf);
        }
        free(names[i]);
    }
    free(names);
    fclose(null);
    ok(n > 0 && replayed == n, "the fuzz corpus replays through the front end and the CPU backend's passes: %d of %d inputs end in a plan or in errors", replayed, n);
    ok(planned > 0 && bad_plans == 0, "%d corpus inputs get a memory plan, none with overlapping live buffers", planned);
    ok(bad_batched == 0, "with twin batching on, the same %d inputs get a plan (%d programs batched)", planned, batched);
    return tap_done();
}
