/* rt_train.c — see rt_train.h.
 *
 * `EXE train` is a small trainer: a jm_trainer holds the run (options,
 * session, data, position, the guard's good state, metrics interval, timers)
 * and phases act on it, in this order:
 *
 *   jm_trainer_parse_options  the command line (--help, --data, program choice)
 *   jm_trainer_open           programs and data (open_data), the runtime and a
 *                             resumed position (open_session), buffers, run
 *                             directory, metrics.jsonl and the banner (open_run)
 *   then, per iteration, the phases of jm_trainer_iteration[]:
 *     jm_trainer_keep_good    divergence guard: a good state every --guard-every
 *                             iterations (rolls back when a parameter is not finite)
 *     jm_trainer_step         the batch (shuffled per epoch, augmented), the
 *                             learning rate, the training program's run
 *     jm_trainer_guard        divergence guard: NaN/Inf or an exploding energy
 *                             gap rolls back with a lower learning rate
 *     jm_trainer_tally        the iteration counts: metric sums, --max-seconds
 *     jm_trainer_report       metrics.jsonl line, progress bar or log line
 *     jm_trainer_test         test accuracy at the end of each epoch
 *     jm_trainer_samples      a grid of the replay buffer every --sample-every
 *     jm_trainer_checkpoint   OUT/last.safetensors every --ckpt-every and at the end
 *   jm_trainer_finish         the closing line
 *   jm_trainer_close          frees everything; the exit status
 *
 * A phase returns JM_TRAIN_GO (on to the next), JM_TRAIN_AGAIN (the guard
 * rolled back: start the iteration over) or JM_TRAIN_STOP (tr->rc is the exit
 * status: 0 --help, 1 failure, 2 usage, 3 the guard gave up). */
#include "rt_train.h"
#include "data.h"
#include "image.h"
#include "rt_args.h"
#include "engine/rt_knobs.h"
#include "rt_session.h"
#include "engine/rt_state.h"
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct {
    const char *data, *labels, *test, *out, *resume, *program;
    int64_t epochs, iters, pretrain, log_every, ckpt_every, sample_every, seed, data_seed, threads, labels_per_class;
    int64_t max_rollbacks, guard_every, crop;
    int baseline, cond, flip, no_progress, progress;
    double noise, decay_rate, lr_drop, max_gap, max_seconds;
    const char *decay_epochs;
    jm_arg_list sets;
} jm_train_opts;

/* The loop's position and the guard's memory: saved in checkpoint metadata. */
typedef struct {
    int64_t it;              /* iterations done */
    double lr_base;          /* config.lr before the schedule and the guard's cuts */
    double lr_scale;         /* product of the guard's cuts */
    int64_t rollbacks;
} jm_train_pos;

/* the divergence guard's last good state */
typedef struct {
    unsigned char *state;
    uint32_t call;
    jm_train_pos pos;
    int valid;
} jm_snapshot;

/* what a phase asks of the loop */
typedef enum { JM_TRAIN_GO, JM_TRAIN_AGAIN, JM_TRAIN_STOP } jm_train_next;

/* scalar outputs averaged per metrics line; slot JM_TRAIN_MAXM - 2 is the gradient norm */
enum { JM_TRAIN_MAXM = 32 };

typedef struct {
    /* the run: fixed once open */
    const jm_table *t;
    jm_kernel_fn *kernels;
    char who[256];
    jm_train_opts o;
    int p_main, p_ce;            /* training program; train_step_ce for --pretrain, else -1 */
    jm_dataset ds, test;
    int64_t n, *pool;            /* the records trained on: all, or N labelled per class */
    int64_t B, per, ipe, total;  /* batch, values per record, iterations per epoch and in all */
    jm_rt rt;
    int rt_open;
    int lr_knob, gnorm;          /* knob "lr", state "*.grad_norm" (or -1) */
    int64_t inject;              /* JEMC_TEST_INJECT_NAN */
    int tty;                     /* progress bar */
    char sdir[1100];             /* OUT/samples */
    FILE *metrics;
    /* the batch */
    float *x;
    int64_t *y, *idx, *perm;     /* labels, record numbers, the epoch's shuffle of the pool */
    int64_t perm_epoch;          /* the epoch perm is for (-1: none yet) */
    void **out_main, **out_ce;
    /* position and the divergence guard */
    jm_train_pos pos;
    jm_snapshot snap;
    /* this iteration: its program, outputs and what the guard looks at */
    const jm_tprogram *pr;
    void **out;
    double loss, e_data, e_sample, grad_norm;
    /* the metrics interval and the clock */
    double sum[JM_TRAIN_MAXM];
    int cnt[JM_TRAIN_MAXM];
    double t_start, t_log, now, last_loss, last_acc;
    int64_t it_log;
    int rc;
} jm_trainer;

static int jm_mkdir_p(const char *dir, const char *who) {
    char tmp[1024];
    snprintf(tmp, sizeof tmp, "%s", dir);
    for (char *p = tmp + 1; *p; p++)
        if (*p == '/') { *p = 0; mkdir(tmp, 0777); *p = '/'; }
    if (mkdir(tmp, 0777) != 0 && errno != EEXIST) { fprintf(stderr, "%s: cannot create %s: %s\n", who, dir, strerror(errno)); return -1; }
    return 0;
}

/* learning rate at epoch e: base * rate^(milestones passed) * guard's scale */
static double jm_train_lr(const jm_train_opts *o, const jm_train_pos *pos, int64_t epoch) {
    double lr = pos->lr_base * pos->lr_scale;
    const char *s = o->decay_epochs;
    while (s && *s) {
        char *end;
        long long m = strtoll(s, &end, 10);
        if (end == s) break;
        if (epoch >= m) lr *= o->decay_rate;
        s = *end == ',' ? end + 1 : end;
    }
    return lr;
}

static int jm_check_decay(const char *s, const char *who) {
    while (s && *s) {
        char *end;
        long long m = strtoll(s, &end, 10);
        if (end == s || m < 0 || (*end && *end != ',')) {
            fprintf(stderr, "%s: --decay-epochs takes epochs separated by commas (e.g. 160,180), got '%s'\n", who, s);
            return -1;
        }
        s = *end == ',' ? end + 1 : end;
    }
    return 0;
}

/* every float in the parameters finite? (a NaN must never reach a checkpoint) */
static int jm_params_finite(jm_rt *rt) {
    for (int g = 0; g < rt->t->nglobals; g++) {
        const jm_tglobal *gl = &rt->t->globals[g];
        if (gl->t.dtype != JM_DT_F32) continue;
        const float *p = jm_rt_global_read(rt, g);
        int64_t n = jm_rt_desc_numel(&gl->t);
        for (int64_t i = 0; i < n; i++) if (!isfinite(p[i])) return 0;
    }
    return 1;
}

static int jm_find_global(const jm_table *t, const char *suffix) {
    size_t ls = strlen(suffix);
    for (int g = 0; g < t->nglobals; g++) {
        size_t l = strlen(t->globals[g].t.name);
        if (l >= ls && strcmp(t->globals[g].t.name + l - ls, suffix) == 0) return g;
    }
    return -1;
}

static int jm_save_ckpt(jm_rt *rt, const char *path, const jm_train_pos *pos, const char *who) {
    char it[32], base[40], scale[40], rb[32], err[1024];
    snprintf(it, sizeof it, "%" PRId64, pos->it);
    snprintf(base, sizeof base, "%.17g", pos->lr_base);
    snprintf(scale, sizeof scale, "%.17g", pos->lr_scale);
    snprintf(rb, sizeof rb, "%" PRId64, pos->rollbacks);
    const char *meta[] = { "jemc.train.iterations", it, "jemc.train.lr_base", base, "jemc.train.lr_scale", scale, "jemc.train.rollbacks", rb };
    if (jm_state_save(rt, path, meta, 4, err, sizeof err) != 0) { fprintf(stderr, "%s: %s\n", who, err); return -1; }
    return 0;
}

/* a grid of the first 64 chains of the replay buffer (state "replay") */
static void jm_save_buffer_grid(jm_rt *rt, const char *path, const char *who) {
    int g = jm_find_global(rt->t, "replay");
    if (g < 0 || rt->t->globals[g].t.rank != 4 || rt->t->globals[g].t.dtype != JM_DT_F32) return;
    const jm_tdesc *d = &rt->t->globals[g].t;
    int n = d->dim[0] < 64 ? (int)d->dim[0] : 64;
    char err[1024];
    if (jm_image_grid_png(path, jm_rt_global_read(rt, g), n, (int)d->dim[1], (int)d->dim[2], (int)d->dim[3], 8, -1, 1, 2, err, sizeof err) != 0)
        fprintf(stderr, "%s: %s\n", who, err);
}

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

static void jm_progress(FILE *f, int64_t it, int64_t total, int64_t epoch, double rate, double loss, double acc) {
    int width = 24, fill = total > 0 ? (int)((double)width * (double)it / (double)total) : 0;
    char bar[64];
    for (int i = 0; i < width; i++) bar[i] = i < fill ? '#' : '.';
    bar[width] = 0;
    double eta = rate > 0 ? (double)(total - it) / rate : 0;
    fprintf(f, "\r  epoch %" PRId64 " [%s] %" PRId64 "/%" PRId64 " %.2f it/s loss %.4f acc %.3f ETA %d:%02d   ", epoch + 1, bar, it, total,
            rate, loss, acc, (int)(eta / 60), (int)eta % 60);
    fflush(f);
}

static const char *jm_train_usage =
    "usage: EXE train --data DIR|FILE [options]\n\n"
    "Trains the graph's train_step program (JEM: cross-entropy + E(data) - E(samples), SGLD from the\n"
    "replay buffer) over the data set: shuffled each epoch by --data-seed, augmented, with the\n"
    "learning rate warmed up (in the graph) and cut by --decay-rate at --decay-epochs. Writes\n"
    "OUT/metrics.jsonl, OUT/last.safetensors (atomically, every --ckpt-every iterations and at the\n"
    "end), OUT/samples/*.png. NaN/Inf or an exploding energy gap rolls back to the last good state\n"
    "with a lower learning rate (--lr-drop), at most --max-rollbacks times.";

static jm_train_next jm_trainer_stop(jm_trainer *tr, int rc) {
    tr->rc = rc;
    return JM_TRAIN_STOP;
}

/* ------------------------------------------------------------------ setting up */

static void jm_trainer_init(jm_trainer *tr, const jm_table *t, jm_kernel_fn *kernels, const char *exe) {
    memset(tr, 0, sizeof *tr);
    tr->t = t;
    tr->kernels = kernels;
    snprintf(tr->who, sizeof tr->who, "%s train", exe);
    tr->p_main = tr->p_ce = -1;
    tr->rc = 1;
}

static jm_train_next jm_trainer_parse_options(jm_trainer *tr, int argc, char **argv) {
    jm_train_opts *o = &tr->o;
    o->out = "run"; o->program = "train_step"; o->epochs = 1; o->log_every = 20; o->ckpt_every = 500; o->sample_every = 500;
    o->seed = -1; o->data_seed = 1; o->max_rollbacks = 5; o->guard_every = 50; o->noise = 0; o->decay_rate = 0.3; o->lr_drop = 0.5; o->max_gap = 1e4;
    const jm_arg args[] = {
        { "--data", JM_ARG_STR, &o->data, "DIR|FILE", "training data: an MNIST/CIFAR directory, IDX, CIFAR binary or CSV file", 0, 0 },
        { "--labels", JM_ARG_STR, &o->labels, "FILE", "IDX labels file (default: derived from the images file name)", 0, 0 },
        { "--test", JM_ARG_STR, &o->test, "DIR|FILE", "test data: accuracy logged after every epoch (a directory: its test split)", 0, 0 },
        { "--out", JM_ARG_STR, &o->out, "DIR", "run directory (default run/)", 0, 0 },
        { "--resume", JM_ARG_STR, &o->resume, "CKPT", "continue exactly from a checkpoint (state, position, RNG)", 0, 0 },
        { "--program", JM_ARG_STR, &o->program, "NAME", "training program (default train_step)", 0, 0 },
        { "--epochs", JM_ARG_INT, &o->epochs, "N", "epochs (default 1)", 0, 1e9 },
        { "--iters", JM_ARG_INT, &o->iters, "N", "iterations in all (overrides --epochs)", 0, 1e12 },
        { "--max-seconds", JM_ARG_NUM, &o->max_seconds, "S", "stop (checkpoint, test, samples) once S seconds have passed", 0, 1e9 },
        { "--pretrain", JM_ARG_INT, &o->pretrain, "N", "first N iterations train the classifier only (train_step_ce)", 0, 1e12 },
        { "--baseline", JM_ARG_FLAG, &o->baseline, NULL, "classifier only: train_step_ce throughout", 0, 0 },
        { "--cond", JM_ARG_FLAG, &o->cond, NULL, "class-conditional replay buffer and SGLD (train_step_cond)", 0, 0 },
        { "--set", JM_ARG_LIST, &o->sets, "NAME=V", "change a run-time setting (lr, sgld_lr, sgld_std, sgld_steps, reinit, warmup...)", 0, 0 },
        { "--decay-epochs", JM_ARG_STR, &o->decay_epochs, "E1,E2", "multiply the learning rate by --decay-rate at these epochs", 0, 0 },
        { "--decay-rate", JM_ARG_NUM, &o->decay_rate, "R", "learning-rate decay factor (default 0.3, as JEM)", 0, 1 },
        { "--noise", JM_ARG_NUM, &o->noise, "S", "Gaussian noise added to training images (JEM: 0.03)", 0, 10 },
        { "--crop", JM_ARG_INT, &o->crop, "PAD", "random crop with this much padding", 0, 64 },
        { "--flip", JM_ARG_FLAG, &o->flip, NULL, "random horizontal flips", 0, 0 },
        { "--labels-per-class", JM_ARG_INT, &o->labels_per_class, "N", "train on N labelled examples per class only", 0, 1e9 },
        { "--seed", JM_ARG_INT, &o->seed, "N", "seed of parameter initialisation and sampling (default 0; a resumed run keeps its own)", 0, 9e18 },
        { "--data-seed", JM_ARG_INT, &o->data_seed, "N", "seed of shuffling and augmentation (default 1)", 0, 0 },
        { "--log-every", JM_ARG_INT, &o->log_every, "N", "iterations per metrics line (default 20)", 1, 1e9 },
        { "--ckpt-every", JM_ARG_INT, &o->ckpt_every, "N", "iterations per checkpoint (default 500; 0: only at the end)", 0, 1e12 },
        { "--sample-every", JM_ARG_INT, &o->sample_every, "N", "iterations per sample grid of the replay buffer (default 500; 0: never)", 0, 1e12 },
        { "--max-rollbacks", JM_ARG_INT, &o->max_rollbacks, "N", "divergence guard: give up after N rollbacks (default 5)", 0, 1e6 },
        { "--lr-drop", JM_ARG_NUM, &o->lr_drop, "F", "divergence guard: learning-rate factor per rollback (default 0.5)", 0, 1 },
        { "--max-energy-gap", JM_ARG_NUM, &o->max_gap, "G", "divergence guard: |E(data) - E(samples)| above G diverges (default 1e4)", 0, 1e300 },
        { "--guard-every", JM_ARG_INT, &o->guard_every, "N", "divergence guard: iterations between good states kept (default 50)", 1, 1e9 },
        { "--threads", JM_ARG_INT, &o->threads, "N", "threads (default: all cores)", 0, 4096 },
        { "--progress", JM_ARG_FLAG, &o->progress, NULL, "progress bar even when stderr is not a terminal", 0, 0 },
        { "--no-progress", JM_ARG_FLAG, &o->no_progress, NULL, "no progress bar", 0, 0 },
    };
    const int nargs = (int)(sizeof args / sizeof args[0]);
    const char *positional[1];
    int npos, pr_rc = jm_args_parse(tr->who, argc, argv, 2, args, nargs, positional, 0, &npos, jm_train_usage);
    if (pr_rc != 0) return jm_trainer_stop(tr, pr_rc > 0 ? 0 : 2);
    if (!o->data) { fprintf(stderr, "%s: --data is required (see --help)\n", tr->who); return jm_trainer_stop(tr, 2); }
    if (jm_check_decay(o->decay_epochs, tr->who) != 0) return jm_trainer_stop(tr, 2);
    if (o->baseline) o->program = "train_step_ce";
    else if (o->cond) o->program = "train_step_cond";
    return JM_TRAIN_GO;
}

/* the training programs, the data sets, the records trained on and the run's length */
static jm_train_next jm_trainer_open_data(jm_trainer *tr) {
    const jm_table *t = tr->t;
    const jm_train_opts *o = &tr->o;
    const char *who = tr->who;
    tr->p_main = jm_session_program(t, o->program, 1, who);
    tr->p_ce = o->pretrain > 0 ? jm_session_program(t, "train_step_ce", 1, who) : -1;
    if (tr->p_main < 0 || (o->pretrain > 0 && tr->p_ce < 0)) return jm_trainer_stop(tr, 2);
    if (jm_session_data(o->data, o->labels, "train", &tr->ds, who) != 0) return jm_trainer_stop(tr, 1);
    if (o->test && jm_session_data(o->test, NULL, "test", &tr->test, who) != 0) return jm_trainer_stop(tr, 1);
    const jm_tprogram *prm = &t->programs[tr->p_main];
    if (jm_session_fits(prm, &tr->ds, who) != 0 || (tr->p_ce >= 0 && jm_session_fits(&t->programs[tr->p_ce], &tr->ds, who) != 0))
        return jm_trainer_stop(tr, 1);
    /* the records trained on: all, or N labelled per class */
    tr->n = tr->ds.n;
    tr->pool = malloc(sizeof(int64_t) * (size_t)(tr->ds.n + 1));
    if (!tr->pool) { fprintf(stderr, "%s: out of memory for %lld record indices\n", who, (long long)tr->ds.n); return jm_trainer_stop(tr, 1); }
    char err[1024];
    if (o->labels_per_class > 0) {
        tr->n = jm_data_labelled_subset(&tr->ds, (int)o->labels_per_class, (uint64_t)o->data_seed, tr->pool, err, sizeof err);
        if (tr->n < 0) { fprintf(stderr, "%s: %s\n", who, err); return jm_trainer_stop(tr, 1); }
    } else {
        for (int64_t i = 0; i < tr->n; i++) tr->pool[i] = i;
    }
    int xi = jm_session_input(prm, "x");
    tr->B = prm->inputs[xi].dim[0];
    tr->per = (int64_t)tr->ds.c * tr->ds.h * tr->ds.w;
    tr->ipe = tr->n / tr->B;
    if (tr->ipe < 1) {
        fprintf(stderr, "%s: %s has %" PRId64 " training records, fewer than one batch of %" PRId64 "\n", who, tr->ds.path, tr->n, tr->B);
        return jm_trainer_stop(tr, 1);
    }
    tr->total = o->iters > 0 ? o->iters : o->epochs * tr->ipe;
    return JM_TRAIN_GO;
}

/* the runtime (from --resume's checkpoint or the initialisers) and the position */
static jm_train_next jm_trainer_open_session(jm_trainer *tr) {
    const jm_train_opts *o = &tr->o;
    jm_st_file meta;
    memset(&meta, 0, sizeof meta);
    if (jm_session_open(&tr->rt, tr->t, tr->kernels, o->resume, o->seed >= 0 ? (uint64_t)o->seed : 0, o->seed >= 0, &o->sets, (int)o->threads,
                        &meta, tr->who) != 0)
        return jm_trainer_stop(tr, 1);
    tr->rt_open = 1;
    tr->lr_knob = jm_knob_find(tr->t, "lr");
    jm_train_pos pos = { 0, tr->lr_knob >= 0 ? jm_knob_get(&tr->rt, tr->lr_knob) : NAN, 1, 0 };
    if (o->resume) {
        const char *v;
        if ((v = jm_st_meta_get(&meta, "jemc.train.iterations"))) pos.it = strtoll(v, NULL, 10);
        if ((v = jm_st_meta_get(&meta, "jemc.train.lr_base"))) pos.lr_base = strtod(v, NULL);
        if ((v = jm_st_meta_get(&meta, "jemc.train.lr_scale"))) pos.lr_scale = strtod(v, NULL);
        if ((v = jm_st_meta_get(&meta, "jemc.train.rollbacks"))) pos.rollbacks = strtoll(v, NULL, 10);
        /* an explicit --set lr=... restarts the schedule from that value */
        for (int i = 0; i < o->sets.n; i++)
            if (strncmp(o->sets.v[i], "lr=", 3) == 0 && tr->lr_knob >= 0) pos.lr_base = jm_knob_get(&tr->rt, tr->lr_knob);
        jm_st_free(&meta);
        if (pos.it >= tr->total)
            fprintf(stderr, "%s: note: %s already has %" PRId64 " iterations (asked for %" PRId64 ")\n", tr->who, o->resume, pos.it, tr->total);
    }
    tr->pos = pos;
    return JM_TRAIN_GO;
}

/* the batch, outputs and good-state buffers, the run directory, metrics.jsonl, the banner */
static jm_train_next jm_trainer_open_run(jm_trainer *tr) {
    const jm_table *t = tr->t;
    const jm_train_opts *o = &tr->o;
    const char *who = tr->who;
    char path[1200];
    tr->x = malloc(sizeof(float) * (size_t)(tr->B * tr->per));
    tr->y = malloc(sizeof(int64_t) * (size_t)tr->B);
    tr->idx = malloc(sizeof(int64_t) * (size_t)tr->B);
    tr->perm = malloc(sizeof(int64_t) * (size_t)(tr->n + 1));
    tr->out_main = jm_session_outputs(&t->programs[tr->p_main]);
    tr->out_ce = tr->p_ce >= 0 ? jm_session_outputs(&t->programs[tr->p_ce]) : NULL;
    tr->snap.state = malloc((size_t)t->state_bytes + 1);
    tr->gnorm = jm_find_global(t, ".grad_norm");
    const char *inject_env = getenv("JEMC_TEST_INJECT_NAN");
    tr->inject = inject_env ? strtoll(inject_env, NULL, 10) : 0;
    if (!tr->x || !tr->y || !tr->idx || !tr->perm || !tr->out_main || !tr->snap.state) {
        fprintf(stderr, "%s: out of memory\n", who);
        return jm_trainer_stop(tr, 1);
    }
    snprintf(tr->sdir, sizeof tr->sdir, "%s/samples", o->out);
    if (jm_mkdir_p(o->out, who) != 0 || jm_mkdir_p(tr->sdir, who) != 0) return jm_trainer_stop(tr, 1);
    snprintf(path, sizeof path, "%s/metrics.jsonl", o->out);
    /* a fresh run starts a new metrics file; a resumed one appends */
    tr->metrics = fopen(path, o->resume ? "a" : "w");
    if (!tr->metrics) { fprintf(stderr, "%s: cannot write %s: %s\n", who, path, strerror(errno)); return jm_trainer_stop(tr, 1); }
    tr->tty = !o->no_progress && (o->progress || isatty(2));
    fprintf(stderr, "%s: %s, %" PRId64 " records of %dx%dx%d, batch %" PRId64 ", %" PRId64 " iterations per epoch, %" PRId64 " iterations%s%s\n  settings: ",
            who, tr->ds.path, tr->n, tr->ds.c, tr->ds.h, tr->ds.w, tr->B, tr->ipe, tr->total, o->resume ? ", resuming at " : "", o->resume ? o->resume : "");
    jm_knob_list(&tr->rt, stderr, " ");
    fputc('\n', stderr);
    return JM_TRAIN_GO;
}

static jm_train_next jm_trainer_open(jm_trainer *tr) {
    jm_train_next next = jm_trainer_open_data(tr);
    if (next == JM_TRAIN_GO) next = jm_trainer_open_session(tr);
    if (next == JM_TRAIN_GO) next = jm_trainer_open_run(tr);
    if (next != JM_TRAIN_GO) return next;
    /* the clock and the first metrics interval */
    tr->perm_epoch = -1;
    tr->t_start = tr->t_log = jm_session_now();
    tr->last_loss = tr->last_acc = NAN;
    tr->it_log = tr->pos.it;
    return JM_TRAIN_GO;
}

/* ------------------------------------------------------------------ the divergence guard */

/* The divergence guard's answer to a bad iteration: back to the last good
   state with the learning rate cut by --lr-drop (cuts compound), logged;
   JM_TRAIN_STOP (exit status 3) when there is no good state or
   --max-rollbacks is used up. */
static jm_train_next jm_trainer_rollback(jm_trainer *tr) {
    const jm_train_opts *o = &tr->o;
    jm_snapshot *snap = &tr->snap;
    jm_train_pos *pos = &tr->pos;
    if (!snap->valid || pos->rollbacks >= o->max_rollbacks) {
        fprintf(stderr, "%s: giving up after %" PRId64 " rollbacks; the last good checkpoint is %s/last.safetensors "
                        "(try a lower --set lr= or sgld_lr=, or --max-rollbacks)\n", tr->who, pos->rollbacks, o->out);
        fprintf(tr->metrics, "{\"step\": %" PRId64 ", \"event\": \"gave_up\"}\n", pos->it);
        fflush(tr->metrics);
        return jm_trainer_stop(tr, 3);
    }
    int64_t from = pos->it, rb = pos->rollbacks + 1;
    double scale = pos->lr_scale * o->lr_drop;
    if (jm_rt_state_set(&tr->rt, snap->state) != 0) { fprintf(stderr, "%s: %s\n", tr->who, tr->rt.err); return jm_trainer_stop(tr, 3); }
    tr->rt.call = snap->call;
    *pos = snap->pos;
    pos->rollbacks = rb;
    pos->lr_scale = scale;
    /* the snapshot now carries the lowered rate: a second failure lowers it again */
    snap->pos = *pos;
    fprintf(stderr, "%s: rolled back from iteration %" PRId64 " to %" PRId64 "; learning rate x%g (rollback %" PRId64 " of at most %" PRId64 ")\n",
            tr->who, from, pos->it, scale, rb, o->max_rollbacks);
    fprintf(tr->metrics, "{\"step\": %" PRId64 ", \"event\": \"rollback\", \"from\": %" PRId64 ", \"lr_scale\": %.9g}\n", pos->it, from, scale);
    fflush(tr->metrics);
    return JM_TRAIN_AGAIN;
}

/* every parameter finite, or a rollback */
static jm_train_next jm_trainer_params_ok(jm_trainer *tr) {
    if (jm_params_finite(&tr->rt)) return JM_TRAIN_GO;
    fprintf(stderr, "%s: iteration %" PRId64 ": a parameter is not finite\n", tr->who, tr->pos.it);
    return jm_trainer_rollback(tr);
}

/* a good state to come back to: the first, then every --guard-every iterations */
static jm_train_next jm_trainer_keep_good(jm_trainer *tr) {
    if (tr->snap.valid && tr->pos.it % tr->o.guard_every != 0) return JM_TRAIN_GO;
    jm_train_next next = jm_trainer_params_ok(tr);
    if (next != JM_TRAIN_GO) return next;
    if (jm_rt_state_get(&tr->rt, tr->snap.state) != 0) { fprintf(stderr, "%s: %s\n", tr->who, tr->rt.err); return jm_trainer_stop(tr, 1); }
    tr->snap.call = tr->rt.call;
    tr->snap.pos = tr->pos;
    tr->snap.valid = 1;
    return JM_TRAIN_GO;
}

/* this iteration's outputs: NaN/Inf or an exploding energy gap rolls back */
static jm_train_next jm_trainer_guard(jm_trainer *tr) {
    double loss = tr->loss, ed = tr->e_data, es = tr->e_sample, gn = tr->grad_norm;
    const char *why = !isfinite(loss) ? "the loss is not finite" : !isfinite(gn) ? "the gradient is not finite"
                    : (jm_session_output(tr->pr, "e_sample") >= 0 && !isfinite(es)) ? "the samples' energy is not finite"
                    : (isfinite(ed) && isfinite(es) && fabs(ed - es) > tr->o.max_gap) ? "the energy gap exploded" : NULL;
    if (!why) return JM_TRAIN_GO;
    fprintf(stderr, "%s%s: iteration %" PRId64 ": %s (loss %g, E(data) %g, E(samples) %g, gradient norm %g)\n", tr->tty ? "\n" : "", tr->who,
            tr->pos.it + 1, why, loss, ed, es, gn);
    return jm_trainer_rollback(tr);
}

/* ------------------------------------------------------------------ one iteration */

/* the batch of iteration pos.it: the epoch's shuffle of the pool, augmented */
static int jm_trainer_batch(jm_trainer *tr, int64_t epoch) {
    const jm_train_opts *o = &tr->o;
    if (epoch != tr->perm_epoch) {
        int64_t *tmp = malloc(sizeof(int64_t) * (size_t)(tr->n + 1));
        if (!tmp) { fprintf(stderr, "%s: out of memory\n", tr->who); return -1; }
        jm_data_shuffle(tr->n, (uint64_t)o->data_seed, (uint64_t)epoch, tmp);
        for (int64_t i = 0; i < tr->n; i++) tr->perm[i] = tr->pool[tmp[i]];
        free(tmp);
        tr->perm_epoch = epoch;
    }
    int64_t k = tr->pos.it % tr->ipe;
    for (int64_t i = 0; i < tr->B; i++) tr->idx[i] = tr->perm[k * tr->B + i];
    jm_augment aug = { (int)o->crop, o->flip, (float)o->noise };
    jm_data_batch(&tr->ds, tr->idx, tr->B, (o->crop || o->flip || o->noise > 0) ? &aug : NULL, (uint64_t)o->data_seed, (uint64_t)tr->pos.it,
                  tr->x, tr->y);
    return 0;
}

/* Test hook (tests/t_train.c): JEMC_TEST_INJECT_NAN=K poisons a parameter
   with NaN before iteration K (1-based) the first time it is reached, as
   a diverging run would; the divergence guard must recover. */
static void jm_trainer_inject_nan(jm_trainer *tr) {
    if (tr->inject <= 0 || tr->pos.it + 1 != tr->inject) return;
    const jm_table *t = tr->t;
    for (int g = 0; g < t->nglobals; g++)
        if (t->globals[g].kind == JM_GKIND_PARAM && t->globals[g].t.dtype == JM_DT_F32) { *(float *)jm_rt_global(&tr->rt, g) = NAN; break; }
    tr->inject = 0;
}

/* one training step: batch, learning rate, the program (train_step_ce while --pretrain lasts) */
static jm_train_next jm_trainer_step(jm_trainer *tr) {
    int64_t epoch = tr->pos.it / tr->ipe;
    if (jm_trainer_batch(tr, epoch) != 0) return jm_trainer_stop(tr, 1);
    if (tr->lr_knob >= 0) jm_knob_put(&tr->rt, tr->lr_knob, jm_train_lr(&tr->o, &tr->pos, epoch));
    jm_trainer_inject_nan(tr);
    int use_ce = tr->pos.it < tr->o.pretrain;
    int p = use_ce ? tr->p_ce : tr->p_main;
    const jm_tprogram *pr = tr->pr = &tr->t->programs[p];
    void **out = tr->out = use_ce ? tr->out_ce : tr->out_main;
    const void *in[2];
    in[jm_session_input(pr, "x")] = tr->x;
    in[jm_session_input(pr, "y")] = tr->y;
    if (jm_rt_run(&tr->rt, p, in, out) != 0) { fprintf(stderr, "%s: %s failed: %s\n", tr->who, pr->name, tr->rt.err); return jm_trainer_stop(tr, 1); }
    tr->loss = jm_session_scalar(pr, out, "loss");
    tr->e_data = jm_session_scalar(pr, out, "e_data");
    tr->e_sample = jm_session_scalar(pr, out, "e_sample");
    tr->grad_norm = tr->gnorm >= 0 ? *(const float *)jm_rt_global_read(&tr->rt, tr->gnorm) : 0;
    return JM_TRAIN_GO;
}

/* the iteration counts: its scalar outputs join the interval's means; --max-seconds */
static jm_train_next jm_trainer_tally(jm_trainer *tr) {
    const jm_tprogram *pr = tr->pr;
    tr->pos.it++;
    /* accumulate every scalar output (and the gradient norm, the rate) */
    for (int i = 0; i < pr->noutputs && i < JM_TRAIN_MAXM - 2; i++)
        if (jm_rt_desc_numel(&pr->outputs[i]) == 1) {
            double v = jm_session_scalar(pr, tr->out, pr->outputs[i].name);
            if (isfinite(v)) { tr->sum[i] += v; tr->cnt[i]++; }
        }
    tr->sum[JM_TRAIN_MAXM - 2] += tr->grad_norm; tr->cnt[JM_TRAIN_MAXM - 2]++;
    tr->last_loss = tr->loss;
    tr->last_acc = jm_session_scalar(pr, tr->out, "acc");
    tr->now = jm_session_now();
    /* a time budget ends the run like its last iteration would */
    if (tr->o.max_seconds > 0 && tr->now - tr->t_start >= tr->o.max_seconds && tr->pos.it < tr->total) {
        fprintf(stderr, "%s%s: --max-seconds %g reached at iteration %" PRId64 "\n", tr->tty ? "\n" : "", tr->who, tr->o.max_seconds, tr->pos.it);
        tr->total = tr->pos.it;
    }
    return JM_TRAIN_GO;
}

static int jm_trainer_last(const jm_trainer *tr) { return tr->pos.it == tr->total; }

/* ------------------------------------------------------------------ reports and outputs */

/* every --log-every iterations: the interval's means to metrics.jsonl (and a line
   to stderr without a progress bar); the progress bar */
static jm_train_next jm_trainer_report(jm_trainer *tr) {
    const jm_tprogram *pr = tr->pr;
    int64_t it = tr->pos.it;
    double now = tr->now, *sum = tr->sum;
    int *cnt = tr->cnt;
    FILE *m = tr->metrics;
    if (it % tr->o.log_every == 0 || jm_trainer_last(tr)) {
        fprintf(m, "{\"step\": %" PRId64 ", \"epoch\": %.4f", it, (double)it / (double)tr->ipe);
        for (int i = 0; i < pr->noutputs && i < JM_TRAIN_MAXM - 2; i++)
            if (cnt[i]) fprintf(m, ", \"%s\": %.9g", pr->outputs[i].name, sum[i] / cnt[i]);
        if (cnt[JM_TRAIN_MAXM - 2]) fprintf(m, ", \"grad_norm\": %.9g", sum[JM_TRAIN_MAXM - 2] / cnt[JM_TRAIN_MAXM - 2]);
        if (tr->lr_knob >= 0) fprintf(m, ", \"lr\": %.9g", jm_knob_get(&tr->rt, tr->lr_knob));
        fprintf(m, ", \"it_per_s\": %.4f, \"seconds\": %.3f}\n", (double)(it - tr->it_log) / (now - tr->t_log), now - tr->t_start);
        fflush(m);
        if (!tr->tty)
            fprintf(stderr, "  iteration %" PRId64 "/%" PRId64 " epoch %.2f loss %.4f acc %.3f %.2f it/s\n", it, tr->total, (double)it / (double)tr->ipe,
                    cnt[0] ? sum[0] / cnt[0] : NAN, tr->last_acc, (double)(it - tr->it_log) / (now - tr->t_log));
        memset(tr->sum, 0, sizeof tr->sum);
        memset(tr->cnt, 0, sizeof tr->cnt);
        tr->t_log = now;
        tr->it_log = it;
    }
    if (tr->tty)
        jm_progress(stderr, it, tr->total, (it - 1) / tr->ipe, (double)it / (now - tr->t_start + 1e-9), tr->last_loss, tr->last_acc);
    return JM_TRAIN_GO;
}

/* --test: accuracy and loss at the end of each epoch and of the run */
static jm_train_next jm_trainer_test(jm_trainer *tr) {
    int64_t it = tr->pos.it;
    if (!tr->test.n || (it % tr->ipe != 0 && !jm_trainer_last(tr))) return JM_TRAIN_GO;
    double acc, tl, te;
    if (jm_train_evaluate(&tr->rt, &tr->test, &acc, &tl, &te, tr->who) != 0) return jm_trainer_stop(tr, 1);
    fprintf(tr->metrics, "{\"step\": %" PRId64 ", \"test_acc\": %.6f, \"test_loss\": %.6g}\n", it, acc, tl);
    fflush(tr->metrics);
    fprintf(stderr, "%s  epoch %.2f: test accuracy %.4f, loss %.4f\n", tr->tty ? "\n" : "", (double)it / (double)tr->ipe, acc, tl);
    return JM_TRAIN_GO;
}

/* OUT/samples/buffer_N.png every --sample-every iterations and at the end (not while pretraining) */
static jm_train_next jm_trainer_samples(jm_trainer *tr) {
    int64_t it = tr->pos.it;
    if (tr->o.sample_every > 0 && (it % tr->o.sample_every == 0 || jm_trainer_last(tr)) && it > tr->o.pretrain) {
        char path[1200];
        snprintf(path, sizeof path, "%s/buffer_%06" PRId64 ".png", tr->sdir, it);
        jm_save_buffer_grid(&tr->rt, path, tr->who);
    }
    return JM_TRAIN_GO;
}

/* OUT/last.safetensors every --ckpt-every iterations and at the end */
static jm_train_next jm_trainer_checkpoint(jm_trainer *tr) {
    if (!((tr->o.ckpt_every > 0 && tr->pos.it % tr->o.ckpt_every == 0) || jm_trainer_last(tr))) return JM_TRAIN_GO;
    /* never a checkpoint with NaN parameters: such a state goes back */
    jm_train_next next = jm_trainer_params_ok(tr);
    if (next != JM_TRAIN_GO) return next;
    char path[1200];
    snprintf(path, sizeof path, "%s/last.safetensors", tr->o.out);
    if (jm_save_ckpt(&tr->rt, path, &tr->pos, tr->who) != 0) return jm_trainer_stop(tr, 1);
    return JM_TRAIN_GO;
}

/* ------------------------------------------------------------------ the end */

static void jm_trainer_finish(jm_trainer *tr) {
    char path[1200];
    if (tr->tty) fputc('\n', stderr);
    snprintf(path, sizeof path, "%s/last.safetensors", tr->o.out);
    fprintf(stderr, "%s: %" PRId64 " iterations in %.1f s; checkpoint %s, metrics %s/metrics.jsonl\n", tr->who, tr->pos.it,
            jm_session_now() - tr->t_start, path, tr->o.out);
    tr->rc = 0;
}

/* frees whatever was opened; the exit status */
static int jm_trainer_close(jm_trainer *tr) {
    if (tr->metrics) fclose(tr->metrics);
    free(tr->x); free(tr->y); free(tr->idx); free(tr->perm); free(tr->pool); free(tr->snap.state);
    if (tr->p_main >= 0) jm_session_free_outputs(&tr->t->programs[tr->p_main], tr->out_main);
    if (tr->p_ce >= 0) jm_session_free_outputs(&tr->t->programs[tr->p_ce], tr->out_ce);
    if (tr->rt_open) jm_rt_close(&tr->rt);
    jm_data_free(&tr->ds);
    jm_data_free(&tr->test);
    return tr->rc;
}

/* one iteration's phases, in order: each returns JM_TRAIN_GO to go on to the next */
static jm_train_next (*const jm_trainer_iteration[])(jm_trainer *) = {
    jm_trainer_keep_good, jm_trainer_step, jm_trainer_guard, jm_trainer_tally,
    jm_trainer_report, jm_trainer_test, jm_trainer_samples, jm_trainer_checkpoint,
};

int jm_train_main(const jm_table *t, jm_kernel_fn *kernels, int argc, char **argv, const char *exe) {
    jm_trainer tr;
    jm_trainer_init(&tr, t, kernels, exe);
    if (jm_trainer_parse_options(&tr, argc, argv) != JM_TRAIN_GO || jm_trainer_open(&tr) != JM_TRAIN_GO) return jm_trainer_close(&tr);
    const int nphases = (int)(sizeof jm_trainer_iteration / sizeof jm_trainer_iteration[0]);
    jm_train_next next = JM_TRAIN_GO;
    while (tr.pos.it < tr.total && next != JM_TRAIN_STOP) {
        next = JM_TRAIN_GO;
        for (int i = 0; i < nphases && next == JM_TRAIN_GO; i++) next = jm_trainer_iteration[i](&tr);
    }
    if (next != JM_TRAIN_STOP) jm_trainer_finish(&tr);
    return jm_trainer_close(&tr);
}
