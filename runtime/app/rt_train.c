/* rt_train.c — see rt_train.h. */
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

/* The divergence guard's answer to a bad iteration: back to the last good
   state with the learning rate cut by --lr-drop (cuts compound), logged; -1
   when there is no good state or --max-rollbacks is used up. */
static int jm_train_rollback(jm_rt *rt, jm_snapshot *snap, jm_train_pos *pos, const jm_train_opts *o, FILE *metrics, const char *who) {
    if (!snap->valid || pos->rollbacks >= o->max_rollbacks) {
        fprintf(stderr, "%s: giving up after %" PRId64 " rollbacks; the last good checkpoint is %s/last.safetensors "
                        "(try a lower --set lr= or sgld_lr=, or --max-rollbacks)\n", who, pos->rollbacks, o->out);
        fprintf(metrics, "{\"step\": %" PRId64 ", \"event\": \"gave_up\"}\n", pos->it);
        fflush(metrics);
        return -1;
    }
    int64_t from = pos->it, rb = pos->rollbacks + 1;
    double scale = pos->lr_scale * o->lr_drop;
    if (jm_rt_state_set(rt, snap->state) != 0) { fprintf(stderr, "%s: %s\n", who, rt->err); return -1; }
    rt->call = snap->call;
    *pos = snap->pos;
    pos->rollbacks = rb;
    pos->lr_scale = scale;
    /* the snapshot now carries the lowered rate: a second failure lowers it again */
    snap->pos = *pos;
    fprintf(stderr, "%s: rolled back from iteration %" PRId64 " to %" PRId64 "; learning rate x%g (rollback %" PRId64 " of at most %" PRId64 ")\n",
            who, from, pos->it, scale, rb, o->max_rollbacks);
    fprintf(metrics, "{\"step\": %" PRId64 ", \"event\": \"rollback\", \"from\": %" PRId64 ", \"lr_scale\": %.9g}\n", pos->it, from, scale);
    fflush(metrics);
    return 0;
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

int jm_train_main(const jm_table *t, jm_kernel_fn *kernels, int argc, char **argv, const char *exe) {
    char who[256];
    snprintf(who, sizeof who, "%s train", exe);
    jm_train_opts o;
    memset(&o, 0, sizeof o);
    o.out = "run"; o.program = "train_step"; o.epochs = 1; o.log_every = 20; o.ckpt_every = 500; o.sample_every = 500;
    o.seed = -1; o.data_seed = 1; o.max_rollbacks = 5; o.guard_every = 50; o.noise = 0; o.decay_rate = 0.3; o.lr_drop = 0.5; o.max_gap = 1e4;
    const jm_arg args[] = {
        { "--data", JM_ARG_STR, &o.data, "DIR|FILE", "training data: an MNIST/CIFAR directory, IDX, CIFAR binary or CSV file", 0, 0 },
        { "--labels", JM_ARG_STR, &o.labels, "FILE", "IDX labels file (default: derived from the images file name)", 0, 0 },
        { "--test", JM_ARG_STR, &o.test, "DIR|FILE", "test data: accuracy logged after every epoch (a directory: its test split)", 0, 0 },
        { "--out", JM_ARG_STR, &o.out, "DIR", "run directory (default run/)", 0, 0 },
        { "--resume", JM_ARG_STR, &o.resume, "CKPT", "continue exactly from a checkpoint (state, position, RNG)", 0, 0 },
        { "--program", JM_ARG_STR, &o.program, "NAME", "training program (default train_step)", 0, 0 },
        { "--epochs", JM_ARG_INT, &o.epochs, "N", "epochs (default 1)", 0, 1e9 },
        { "--iters", JM_ARG_INT, &o.iters, "N", "iterations in all (overrides --epochs)", 0, 1e12 },
        { "--max-seconds", JM_ARG_NUM, &o.max_seconds, "S", "stop (checkpoint, test, samples) once S seconds have passed", 0, 1e9 },
        { "--pretrain", JM_ARG_INT, &o.pretrain, "N", "first N iterations train the classifier only (train_step_ce)", 0, 1e12 },
        { "--baseline", JM_ARG_FLAG, &o.baseline, NULL, "classifier only: train_step_ce throughout", 0, 0 },
        { "--cond", JM_ARG_FLAG, &o.cond, NULL, "class-conditional replay buffer and SGLD (train_step_cond)", 0, 0 },
        { "--set", JM_ARG_LIST, &o.sets, "NAME=V", "change a run-time setting (lr, sgld_lr, sgld_std, sgld_steps, reinit, warmup...)", 0, 0 },
        { "--decay-epochs", JM_ARG_STR, &o.decay_epochs, "E1,E2", "multiply the learning rate by --decay-rate at these epochs", 0, 0 },
        { "--decay-rate", JM_ARG_NUM, &o.decay_rate, "R", "learning-rate decay factor (default 0.3, as JEM)", 0, 1 },
        { "--noise", JM_ARG_NUM, &o.noise, "S", "Gaussian noise added to training images (JEM: 0.03)", 0, 10 },
        { "--crop", JM_ARG_INT, &o.crop, "PAD", "random crop with this much padding", 0, 64 },
        { "--flip", JM_ARG_FLAG, &o.flip, NULL, "random horizontal flips", 0, 0 },
        { "--labels-per-class", JM_ARG_INT, &o.labels_per_class, "N", "train on N labelled examples per class only", 0, 1e9 },
        { "--seed", JM_ARG_INT, &o.seed, "N", "seed of parameter initialisation and sampling (default 0; a resumed run keeps its own)", 0, 9e18 },
        { "--data-seed", JM_ARG_INT, &o.data_seed, "N", "seed of shuffling and augmentation (default 1)", 0, 0 },
        { "--log-every", JM_ARG_INT, &o.log_every, "N", "iterations per metrics line (default 20)", 1, 1e9 },
        { "--ckpt-every", JM_ARG_INT, &o.ckpt_every, "N", "iterations per checkpoint (default 500; 0: only at the end)", 0, 1e12 },
        { "--sample-every", JM_ARG_INT, &o.sample_every, "N", "iterations per sample grid of the replay buffer (default 500; 0: never)", 0, 1e12 },
        { "--max-rollbacks", JM_ARG_INT, &o.max_rollbacks, "N", "divergence guard: give up after N rollbacks (default 5)", 0, 1e6 },
        { "--lr-drop", JM_ARG_NUM, &o.lr_drop, "F", "divergence guard: learning-rate factor per rollback (default 0.5)", 0, 1 },
        { "--max-energy-gap", JM_ARG_NUM, &o.max_gap, "G", "divergence guard: |E(data) - E(samples)| above G diverges (default 1e4)", 0, 1e300 },
        { "--guard-every", JM_ARG_INT, &o.guard_every, "N", "divergence guard: iterations between good states kept (default 50)", 1, 1e9 },
        { "--threads", JM_ARG_INT, &o.threads, "N", "threads (default: all cores)", 0, 4096 },
        { "--progress", JM_ARG_FLAG, &o.progress, NULL, "progress bar even when stderr is not a terminal", 0, 0 },
        { "--no-progress", JM_ARG_FLAG, &o.no_progress, NULL, "no progress bar", 0, 0 },
    };
    const int nargs = (int)(sizeof args / sizeof args[0]);
    const char *positional[1];
    int npos, pr_rc = jm_args_parse(who, argc, argv, 2, args, nargs, positional, 0, &npos, jm_train_usage);
    if (pr_rc != 0) return pr_rc > 0 ? 0 : 2;
    if (!o.data) { fprintf(stderr, "%s: --data is required (see --help)\n", who); return 2; }
    if (jm_check_decay(o.decay_epochs, who) != 0) return 2;
    if (o.baseline) o.program = "train_step_ce";
    else if (o.cond) o.program = "train_step_cond";

    int p_main = jm_session_program(t, o.program, 1, who);
    int p_ce = o.pretrain > 0 ? jm_session_program(t, "train_step_ce", 1, who) : -1;
    if (p_main < 0 || (o.pretrain > 0 && p_ce < 0)) return 2;
    jm_dataset ds, test;
    memset(&ds, 0, sizeof ds);
    memset(&test, 0, sizeof test);
    if (jm_session_data(o.data, o.labels, "train", &ds, who) != 0) return 1;
    if (o.test && jm_session_data(o.test, NULL, "test", &test, who) != 0) { jm_data_free(&ds); return 1; }
    const jm_tprogram *prm = &t->programs[p_main];
    if (jm_session_fits(prm, &ds, who) != 0 || (p_ce >= 0 && jm_session_fits(&t->programs[p_ce], &ds, who) != 0)) {
        jm_data_free(&ds); jm_data_free(&test);
        return 1;
    }
    /* the records trained on: all, or N labelled per class */
    int64_t n = ds.n, *pool = malloc(sizeof(int64_t) * (size_t)(ds.n + 1));
    char err[1024];
    if (o.labels_per_class > 0) {
        n = jm_data_labelled_subset(&ds, (int)o.labels_per_class, (uint64_t)o.data_seed, pool, err, sizeof err);
        if (n < 0) { fprintf(stderr, "%s: %s\n", who, err); free(pool); jm_data_free(&ds); jm_data_free(&test); return 1; }
    } else {
        for (int64_t i = 0; i < n; i++) pool[i] = i;
    }
    int xi = jm_session_input(prm, "x");
    int64_t B = prm->inputs[xi].dim[0], per = (int64_t)ds.c * ds.h * ds.w, ipe = n / B;
    if (ipe < 1) { fprintf(stderr, "%s: %s has %" PRId64 " training records, fewer than one batch of %" PRId64 "\n", who, ds.path, n, B); free(pool); jm_data_free(&ds); jm_data_free(&test); return 1; }
    int64_t total = o.iters > 0 ? o.iters : o.epochs * ipe;

    jm_rt rt;
    jm_st_file meta;
    memset(&meta, 0, sizeof meta);
    if (jm_session_open(&rt, t, kernels, o.resume, o.seed >= 0 ? (uint64_t)o.seed : 0, o.seed >= 0, &o.sets, (int)o.threads, &meta, who) != 0) {
        free(pool); jm_data_free(&ds); jm_data_free(&test);
        return 1;
    }
    int lr_knob = jm_knob_find(t, "lr");
    jm_train_pos pos = { 0, lr_knob >= 0 ? jm_knob_get(&rt, lr_knob) : NAN, 1, 0 };
    if (o.resume) {
        const char *v;
        if ((v = jm_st_meta_get(&meta, "jemc.train.iterations"))) pos.it = strtoll(v, NULL, 10);
        if ((v = jm_st_meta_get(&meta, "jemc.train.lr_base"))) pos.lr_base = strtod(v, NULL);
        if ((v = jm_st_meta_get(&meta, "jemc.train.lr_scale"))) pos.lr_scale = strtod(v, NULL);
        if ((v = jm_st_meta_get(&meta, "jemc.train.rollbacks"))) pos.rollbacks = strtoll(v, NULL, 10);
        /* an explicit --set lr=... restarts the schedule from that value */
        for (int i = 0; i < o.sets.n; i++) if (strncmp(o.sets.v[i], "lr=", 3) == 0 && lr_knob >= 0) pos.lr_base = jm_knob_get(&rt, lr_knob);
        jm_st_free(&meta);
        if (pos.it >= total) fprintf(stderr, "%s: note: %s already has %" PRId64 " iterations (asked for %" PRId64 ")\n", who, o.resume, pos.it, total);
    }
    int rc = 1;
    char path[1200], sdir[1100];
    FILE *metrics = NULL;
    float *x = malloc(sizeof(float) * (size_t)(B * per));
    int64_t *y = malloc(sizeof(int64_t) * (size_t)B), *idx = malloc(sizeof(int64_t) * (size_t)B), *perm = malloc(sizeof(int64_t) * (size_t)(n + 1));
    void **out_main = jm_session_outputs(prm), **out_ce = p_ce >= 0 ? jm_session_outputs(&t->programs[p_ce]) : NULL;
    jm_snapshot snap;
    memset(&snap, 0, sizeof snap);
    snap.state = malloc((size_t)t->state_bytes + 1);
    int gnorm = jm_find_global(t, ".grad_norm");
    const char *inject_env = getenv("JEMC_TEST_INJECT_NAN");
    int64_t inject = inject_env ? strtoll(inject_env, NULL, 10) : 0;
    if (!x || !y || !idx || !perm || !out_main || !snap.state) { fprintf(stderr, "%s: out of memory\n", who); goto done; }
    snprintf(sdir, sizeof sdir, "%s/samples", o.out);
    if (jm_mkdir_p(o.out, who) != 0 || jm_mkdir_p(sdir, who) != 0) goto done;
    snprintf(path, sizeof path, "%s/metrics.jsonl", o.out);
    /* a fresh run starts a new metrics file; a resumed one appends */
    metrics = fopen(path, o.resume ? "a" : "w");
    if (!metrics) { fprintf(stderr, "%s: cannot write %s: %s\n", who, path, strerror(errno)); goto done; }
    int tty = !o.no_progress && (o.progress || isatty(2));
    fprintf(stderr, "%s: %s, %" PRId64 " records of %dx%dx%d, batch %" PRId64 ", %" PRId64 " iterations per epoch, %" PRId64 " iterations%s%s\n  settings: ",
            who, ds.path, n, ds.c, ds.h, ds.w, B, ipe, total, o.resume ? ", resuming at " : "", o.resume ? o.resume : "");
    jm_knob_list(&rt, stderr, " ");
    fputc('\n', stderr);

    /* interval means for the metrics line */
    enum { MAXM = 32 };
    double sum[MAXM];
    int cnt[MAXM];
    memset(sum, 0, sizeof sum);
    memset(cnt, 0, sizeof cnt);
    double t_start = jm_session_now(), t_log = t_start, last_loss = NAN, last_acc = NAN;
    int64_t it_log = pos.it, perm_epoch = -1;
    while (pos.it < total) {
        /* a good state to come back to */
        if (!snap.valid || pos.it % o.guard_every == 0) {
            if (!jm_params_finite(&rt)) {
                fprintf(stderr, "%s: iteration %" PRId64 ": a parameter is not finite\n", who, pos.it);
                if (jm_train_rollback(&rt, &snap, &pos, &o, metrics, who) != 0) { rc = 3; goto done; }
                continue;
            }
            if (jm_rt_state_get(&rt, snap.state) != 0) { fprintf(stderr, "%s: %s\n", who, rt.err); goto done; }
            snap.call = rt.call;
            snap.pos = pos;
            snap.valid = 1;
        }
        int64_t epoch = pos.it / ipe, k = pos.it % ipe;
        if (epoch != perm_epoch) {
            int64_t *tmp = malloc(sizeof(int64_t) * (size_t)(n + 1));
            if (!tmp) { fprintf(stderr, "%s: out of memory\n", who); goto done; }
            jm_data_shuffle(n, (uint64_t)o.data_seed, (uint64_t)epoch, tmp);
            for (int64_t i = 0; i < n; i++) perm[i] = pool[tmp[i]];
            free(tmp);
            perm_epoch = epoch;
        }
        for (int64_t i = 0; i < B; i++) idx[i] = perm[k * B + i];
        jm_augment aug = { (int)o.crop, o.flip, (float)o.noise };
        jm_data_batch(&ds, idx, B, (o.crop || o.flip || o.noise > 0) ? &aug : NULL, (uint64_t)o.data_seed, (uint64_t)pos.it, x, y);
        if (lr_knob >= 0) jm_knob_put(&rt, lr_knob, jm_train_lr(&o, &pos, epoch));
        /* Test hook (tests/t_train.c): JEMC_TEST_INJECT_NAN=K poisons a parameter
           with NaN before iteration K (1-based) the first time it is reached, as
           a diverging run would; the divergence guard must recover. */
        if (inject > 0 && pos.it + 1 == inject) {
            for (int g = 0; g < t->nglobals; g++)
                if (t->globals[g].kind == JM_GKIND_PARAM && t->globals[g].t.dtype == JM_DT_F32) { *(float *)jm_rt_global(&rt, g) = NAN; break; }
            inject = 0;
        }
        int use_ce = pos.it < o.pretrain;
        int p = use_ce ? p_ce : p_main;
        const jm_tprogram *pr = &t->programs[p];
        void **out = use_ce ? out_ce : out_main;
        const void *in[2];
        in[jm_session_input(pr, "x")] = x;
        in[jm_session_input(pr, "y")] = y;
        if (jm_rt_run(&rt, p, in, out) != 0) { fprintf(stderr, "%s: %s failed: %s\n", who, pr->name, rt.err); goto done; }
        double loss = jm_session_scalar(pr, out, "loss"), ed = jm_session_scalar(pr, out, "e_data"), es = jm_session_scalar(pr, out, "e_sample");
        double gn = gnorm >= 0 ? *(const float *)jm_rt_global_read(&rt, gnorm) : 0;
        const char *why = !isfinite(loss) ? "the loss is not finite" : !isfinite(gn) ? "the gradient is not finite"
                        : (jm_session_output(pr, "e_sample") >= 0 && !isfinite(es)) ? "the samples' energy is not finite"
                        : (isfinite(ed) && isfinite(es) && fabs(ed - es) > o.max_gap) ? "the energy gap exploded" : NULL;
        if (why) {
            fprintf(stderr, "%s%s: iteration %" PRId64 ": %s (loss %g, E(data) %g, E(samples) %g, gradient norm %g)\n", tty ? "\n" : "", who,
                    pos.it + 1, why, loss, ed, es, gn);
            if (jm_train_rollback(&rt, &snap, &pos, &o, metrics, who) != 0) { rc = 3; goto done; }
            continue;
        }
        pos.it++;
        /* accumulate every scalar output (and the gradient norm, the rate) */
        for (int i = 0; i < pr->noutputs && i < MAXM - 2; i++)
            if (jm_rt_desc_numel(&pr->outputs[i]) == 1) { double v = jm_session_scalar(pr, out, pr->outputs[i].name); if (isfinite(v)) { sum[i] += v; cnt[i]++; } }
        sum[MAXM - 2] += gn; cnt[MAXM - 2]++;
        last_loss = loss;
        last_acc = jm_session_scalar(pr, out, "acc");
        double now = jm_session_now();
        /* a time budget ends the run like its last iteration would */
        if (o.max_seconds > 0 && now - t_start >= o.max_seconds && pos.it < total) {
            fprintf(stderr, "%s%s: --max-seconds %g reached at iteration %" PRId64 "\n", tty ? "\n" : "", who, o.max_seconds, pos.it);
            total = pos.it;
        }
        int end_epoch = pos.it % ipe == 0, last = pos.it == total;
        if (pos.it % o.log_every == 0 || last) {
            fprintf(metrics, "{\"step\": %" PRId64 ", \"epoch\": %.4f", pos.it, (double)pos.it / (double)ipe);
            for (int i = 0; i < pr->noutputs && i < MAXM - 2; i++)
                if (cnt[i]) fprintf(metrics, ", \"%s\": %.9g", pr->outputs[i].name, sum[i] / cnt[i]);
            if (cnt[MAXM - 2]) fprintf(metrics, ", \"grad_norm\": %.9g", sum[MAXM - 2] / cnt[MAXM - 2]);
            if (lr_knob >= 0) fprintf(metrics, ", \"lr\": %.9g", jm_knob_get(&rt, lr_knob));
            fprintf(metrics, ", \"it_per_s\": %.4f, \"seconds\": %.3f}\n", (double)(pos.it - it_log) / (now - t_log), now - t_start);
            fflush(metrics);
            if (!tty)
                fprintf(stderr, "  iteration %" PRId64 "/%" PRId64 " epoch %.2f loss %.4f acc %.3f %.2f it/s\n", pos.it, total, (double)pos.it / (double)ipe,
                        cnt[0] ? sum[0] / cnt[0] : NAN, last_acc, (double)(pos.it - it_log) / (now - t_log));
            memset(sum, 0, sizeof sum);
            memset(cnt, 0, sizeof cnt);
            t_log = now;
            it_log = pos.it;
        }
        if (tty) jm_progress(stderr, pos.it, total, (pos.it - 1) / ipe, (double)pos.it / (now - t_start + 1e-9) , last_loss, last_acc);
        if (test.n && (end_epoch || last)) {
            double acc, tl, te;
            if (jm_train_evaluate(&rt, &test, &acc, &tl, &te, who) != 0) goto done;
            fprintf(metrics, "{\"step\": %" PRId64 ", \"test_acc\": %.6f, \"test_loss\": %.6g}\n", pos.it, acc, tl);
            fflush(metrics);
            fprintf(stderr, "%s  epoch %.2f: test accuracy %.4f, loss %.4f\n", tty ? "\n" : "", (double)pos.it / (double)ipe, acc, tl);
        }
        if (o.sample_every > 0 && (pos.it % o.sample_every == 0 || last) && pos.it > o.pretrain) {
            snprintf(path, sizeof path, "%s/buffer_%06" PRId64 ".png", sdir, pos.it);
            jm_save_buffer_grid(&rt, path, who);
        }
        if ((o.ckpt_every > 0 && pos.it % o.ckpt_every == 0) || last) {
            /* never a checkpoint with NaN parameters: such a state goes back */
            if (!jm_params_finite(&rt)) {
                fprintf(stderr, "%s: iteration %" PRId64 ": a parameter is not finite\n", who, pos.it);
                if (jm_train_rollback(&rt, &snap, &pos, &o, metrics, who) != 0) { rc = 3; goto done; }
                continue;
            }
            snprintf(path, sizeof path, "%s/last.safetensors", o.out);
            if (jm_save_ckpt(&rt, path, &pos, who) != 0) goto done;
        }
    }
    if (tty) fputc('\n', stderr);
    snprintf(path, sizeof path, "%s/last.safetensors", o.out);
    fprintf(stderr, "%s: %" PRId64 " iterations in %.1f s; checkpoint %s, metrics %s/metrics.jsonl\n", who, pos.it, jm_session_now() - t_start, path, o.out);
    rc = 0;
done:
    if (metrics) fclose(metrics);
    free(x); free(y); free(idx); free(perm); free(pool); free(snap.state);
    jm_session_free_outputs(prm, out_main);
    if (p_ce >= 0) jm_session_free_outputs(&t->programs[p_ce], out_ce);
    jm_rt_close(&rt);
    jm_data_free(&ds);
    jm_data_free(&test);
    return rc;
}
