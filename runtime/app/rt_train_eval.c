/* rt_train_eval.c — the graph's `evaluate` program over a data set: test
 * accuracy, mean loss and mean energy (rt_train.h: jm_train_evaluate), for
 * `train`'s held-out figures. */
#include "rt_train.h"
#include "data.h"
#include "rt_session.h"
#include <math.h>
#include <stdio.h>

int jm_train_evaluate(jm_rt *rt, const void *dsv, double *acc, double *loss, double *energy, const char *who) {
    const jm_dataset *ds = dsv;
    int p = jm_session_program(rt->t, "evaluate", 1, who);
    if (p < 0) return -1;
    const jm_tprogram *pr = &rt->t->programs[p];
    if (jm_session_fits(pr, ds, who) != 0) return -1;
    int xi = jm_session_input(pr, "x"), yi = jm_session_input(pr, "y");
    int li = jm_session_output(pr, "logits"), lo = jm_session_output(pr, "loss"), ei = jm_session_output(pr, "energy");
    if (yi < 0 || li < 0) { fprintf(stderr, "%s: program evaluate needs inputs x, y and an output 'logits'\n", who); return -1; }
    int64_t B = pr->inputs[xi].dim[0], per = ds->c * ds->h * ds->w, classes = pr->outputs[li].dim[1];
    jm_session_buf bb;
    int have = jm_session_buf_alloc(&bb, B, per) == 0;
    float *x = bb.x;
    int64_t *y = bb.y;
    void **out = jm_session_outputs(pr);
    const void *in[2];
    in[xi] = x;
    in[yi] = y;
    int64_t right = 0;
    double lsum = 0, esum = 0;
    int rc = have && out ? 0 : -1;
    if (rc != 0) fprintf(stderr, "%s: out of memory\n", who);
    for (int64_t b0 = 0; b0 < ds->n && rc == 0; b0 += B) {
        int64_t real = jm_session_batch(ds, b0, &bb);
        if (jm_rt_run(rt, p, in, out) != 0) { fprintf(stderr, "%s: evaluate failed: %s\n", who, rt->err); rc = -1; break; }
        const float *lg = out[li];
        for (int64_t i = 0; i < real; i++) {
            int64_t best = 0;
            for (int64_t k = 1; k < classes; k++) if (lg[i * classes + k] > lg[i * classes + best]) best = k;
            right += best == y[i];
            if (ei >= 0) esum += ((const float *)out[ei])[i];
        }
        /* the program's loss is a batch mean: weigh it by the real examples */
        if (lo >= 0) lsum += *(const float *)out[lo] * (double)real;
    }
    if (rc == 0) {
        *acc = (double)right / (double)ds->n;
        *loss = lo >= 0 ? lsum / (double)ds->n : NAN;
        *energy = ei >= 0 ? esum / (double)ds->n : NAN;
    }
    jm_session_buf_free(&bb);
    jm_session_free_outputs(pr, out);
    return rc;
}
