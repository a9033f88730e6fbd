/* t_inplace.c — the replay buffer's write without copies (issue 19, item 2).
 *
 * The planner marks a state scatter that may write straight into its global
 * (plan.c: jm_mark_scatter_in_place; --dump=fused says "in place into
 * replay"), and the CPU runtime then scatters into the state and skips the
 * write's copy (engine/rt_cpu.c). Checked on tests/train/tiny.graph's
 * train_step (a 32-chain replay buffer, batch 8), compiled in memory:
 *   1. the step is marked, and the 32-chain buffer's write is the one it replaces;
 *   2. three runs in place end bitwise where three copy-based runs end (the
 *      mark cleared in a second table), every global compared;
 *   3. a run that fails after the scatter (JEMC_TEST_FAIL_STEP) leaves every
 *      global as it was: the overwritten rows are restored; the next run
 *      goes on as if the failed one never happened. */
#include "tap.h"
#include "compiled_helpers.h"

static const jm_tprogram *find(const jm_table *t, const char *name, int *p) {
    for (int i = 0; i < t->nprograms; i++)
        if (strcmp(t->programs[i].name, name) == 0) { *p = i; return &t->programs[i]; }
    return NULL;
}

/* every global of a and b bitwise equal; the first that is not, in why */
static int same_state(jm_rt *a, jm_rt *b, char *why, size_t n) {
    for (int g = 0; g < a->t->nglobals; g++) {
        size_t bytes = (size_t)jm_rt_desc_numel(&a->t->globals[g].t) * jm_rt_dtype_size(a->t->globals[g].t.dtype);
        if (memcmp(jm_rt_global_read(a, g), jm_rt_global_read(b, g), bytes) != 0) {
            snprintf(why, n, "%s differs", a->t->globals[g].t.name);
            return 0;
        }
    }
    snprintf(why, n, "%d globals", a->t->nglobals);
    return 1;
}

int main(void) {
    jc_module c;
    const char *defs[] = { "batch=8" };
    if (!ok(jc_compile(&c, NULL, "tests/train/tiny.graph", defs, 1) == 0, "compile tests/train/tiny.graph in memory")) {
        tap_diag("%s", c.u.errors ? c.u.errors : "");
        return tap_done();
    }
    jm_table *t = &c.plan.table;
    int p = -1;
    jm_tprogram *tp = (jm_tprogram *)find(t, "train_step", &p);
    int at = -1;
    for (int s = 0; tp && s < tp->nsteps; s++)
        if (tp->steps[s].kind == JM_STEP_LIB && tp->steps[s].op == JM_LIB_SCATTER && tp->steps[s].nint > 5 && tp->steps[s].iat[5] > 0) at = s;
    int w = at >= 0 ? (int)tp->steps[at].iat[5] - 1 : -1;
    ok(at >= 0 && strcmp(t->globals[tp->writes[w].global].t.name, "replay") == 0,
       "train_step's scatter (step %d) is marked to write the replay buffer in place", at);
    if (at < 0) { jc_free(&c); return tap_done(); }

    /* inputs: 8 images of 8x8 in [-1, 1], labels 0..3 */
    const jm_tdesc *xd = &tp->inputs[0], *yd = &tp->inputs[1];
    float *x = malloc(sizeof(float) * (size_t)jm_rt_desc_numel(xd));
    int64_t *y = malloc(sizeof(int64_t) * (size_t)jm_rt_desc_numel(yd));
    for (int64_t i = 0; i < jm_rt_desc_numel(xd); i++) x[i] = (float)(2 * urand() - 1);
    for (int64_t i = 0; i < jm_rt_desc_numel(yd); i++) y[i] = i % 4;
    const void *in[2] = { x, y };
    void *out[16];
    for (int i = 0; i < tp->noutputs && i < 16; i++) out[i] = malloc((size_t)jm_rt_desc_numel(&tp->outputs[i]) * 8 + 8);

    /* 2. in place against copy-based: the same table with the mark cleared,
          run on a second runtime (the mark is read at run time) */
    jm_rt a, b;
    jm_rt_open(&a, t, c.fns, 7);
    jm_rt_open(&b, t, c.fns, 7);
    a.threads = b.threads = 2;
    int rc = 0;
    for (int r = 0; r < 3 && rc == 0; r++) {
        tp->steps[at].iat[5] = w + 1;
        rc |= jm_rt_run(&a, p, in, out);
        tp->steps[at].iat[5] = 0;
        rc |= jm_rt_run(&b, p, in, out);
    }
    tp->steps[at].iat[5] = w + 1;
    char why[300];
    ok(rc == 0 && same_state(&a, &b, why, sizeof why), "3 runs in place end bitwise where 3 copy-based runs end (%s)", why);

    /* 3. a failure after the scatter: nothing committed, the replay rows restored */
    char before[300];
    jm_rt snap;   /* a copy of the state before the failing run */
    jm_rt_open(&snap, t, c.fns, 7);
    jm_rt_state_set(&snap, a.state);
    char step[16];
    snprintf(step, sizeof step, "%d", at);
    setenv("JEMC_TEST_FAIL_STEP", step, 1);
    int frc = jm_rt_run(&a, p, in, out);
    unsetenv("JEMC_TEST_FAIL_STEP");
    ok(frc != 0 && strstr(a.err, "JEMC_TEST_FAIL_STEP"), "a run failing right after the in-place scatter fails: %s", a.err);
    ok(same_state(&a, &snap, before, sizeof before), "and leaves every global as it was, the replay buffer's overwritten rows restored (%s)", before);
    /* the next run goes on as if the failed one never happened */
    tp->steps[at].iat[5] = w + 1;
    rc = jm_rt_run(&a, p, in, out);
    tp->steps[at].iat[5] = 0;
    rc |= jm_rt_run(&b, p, in, out);
    tp->steps[at].iat[5] = w + 1;
    ok(rc == 0 && same_state(&a, &b, why, sizeof why), "the next run in place matches the copy-based runtime's fourth (%s)", why);

    jm_rt_close(&a);
    jm_rt_close(&b);
    jm_rt_close(&snap);
    for (int i = 0; i < tp->noutputs && i < 16; i++) free(out[i]);
    free(x);
    free(y);
    jc_free(&c);
    return tap_done();
}
