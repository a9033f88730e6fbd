/* rt_train.c — see rt_train.h.
 *
 * `EXE train` is a small trainer: a jm_trainer holds the run (options,
 * session, data, position, the guard's good state, metrics interval, timers)
 * and phases act on it, in this order:
 *
 *   jm_trainer_parse_options  the command line (--help, --data, --change)
 *   jm_trainer_open           the runtime and a resumed position and options
 *                             (open_session, resume_options), the run's options
 *                             settled (settle: program choice, checkpoint
 *                             metadata), programs and data (open_data), buffers,
 *                             run directory, metrics.jsonl and the banner (open_run)
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
#include "rt_sample.h"
#include "rt_session.h"
#include "rt_cli.h"
#include "rt_gm.h"
#include "data_table.h"
#include "engine/names.h"
#include "engine/rt_state.h"
#include "engine/rt_dp.h"
#include "dist/dist.h"
#include <errno.h>
#include <signal.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct {
    const char *data, *labels, *test, *test_labels, *out, *resume, *program, *init;
    int64_t epochs, iters, pretrain, log_every, ckpt_every, sample_every, seed, data_seed, threads, labels_per_class;
    int64_t max_rollbacks, guard_every, crop, drop_repeated, accumulate;
    int baseline, cond, flip, no_progress, progress, no_standardize;
    double noise, decay_rate, lr_drop, max_gap, max_seconds, val_split, test_split, bucket_mb;
    const char *decay_epochs;
    jm_arg_list sets, changes;
} jm_train_opts;

/* The options of a run: every checkpoint stores them (metadata
   "jemc.train.option.NAME", NAME without the dashes, the value as
   jm_args_format writes it: flags 1 or 0, "" for a string not given). On
   --resume an option not given again takes the stored value; a locked one
   given with another value is refused (exit 2) unless --change NAME; a new
   value of an unlocked one applies. The options not here are not stored
   (this invocation only). */
#define JM_TRAIN_OPTKEY "jemc.train.option."
static const struct { const char *name; int locked, path; } jm_run_options[] = {
    { "--data", 1, 1 }, { "--labels", 1, 1 }, { "--test", 1, 1 }, { "--test-labels", 1, 1 }, { "--labels-per-class", 1, 0 },
    { "--label-column", 1, 0 }, { "--label-base", 1, 0 }, { "--format", 1, 0 }, { "--drop-repeated", 1, 0 },
    { "--no-standardize", 1, 0 }, { "--val-split", 1, 0 }, { "--test-split", 1, 0 },
    { "--program", 1, 0 }, { "--baseline", 1, 0 }, { "--cond", 1, 0 }, { "--pretrain", 1, 0 },
    { "--noise", 1, 0 }, { "--crop", 1, 0 }, { "--flip", 1, 0 }, { "--decay-epochs", 1, 0 }, { "--decay-rate", 1, 0 },
    { "--seed", 1, 0 }, { "--data-seed", 1, 0 },
    { "--max-rollbacks", 1, 0 }, { "--lr-drop", 1, 0 }, { "--max-energy-gap", 1, 0 }, { "--guard-every", 1, 0 },
    { "--iters", 0, 0 }, { "--epochs", 0, 0 }, { "--out", 0, 0 },
    { "--log-every", 0, 0 }, { "--ckpt-every", 0, 0 }, { "--sample-every", 0, 0 }, { "--accumulate", 0, 0 },
};
enum { JM_TRAIN_NRUN = (int)(sizeof jm_run_options / sizeof jm_run_options[0]), JM_TRAIN_MAXARGS = 48 };

/* The optimizers' learning rates the schedule sets (the knobs the program
   table marks, JM_KNOB_IS_LR) and the gradient norms the guard watches (state
   "OPT.grad_norm"): at most this many of each. */
enum { JM_TRAIN_MAXLR = 8, JM_TRAIN_MAXGN = 8 };

/* The loop's position and the guard's memory: saved in checkpoint metadata. */
typedef struct {
    int64_t it;              /* iterations done */
    double lr_base[JM_TRAIN_MAXLR]; /* each learning-rate knob before the schedule and the guard's cuts */
    double lr_scale;         /* product of the guard's cuts */
    int64_t rollbacks;
    int64_t global_batch;    /* examples per iteration (processes x micro-batches x batch): a resume at another warns */
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

/* scalar outputs averaged per metrics line */
enum { JM_TRAIN_MAXM = 32 };

typedef struct {
    /* the run: fixed once open */
    const jm_table *t;
    jm_kernel_fn *kernels;
    char who[256];
    jm_train_opts o;
    /* the command line: its table, what was given, the defaults (as jm_args_format writes them) */
    jm_arg args[JM_TRAIN_MAXARGS];
    int nargs, given[JM_TRAIN_MAXARGS];
    char defv[JM_TRAIN_MAXARGS][64];
    char usage[3072];
    char *restored[JM_TRAIN_NRUN];   /* option values taken from --resume's checkpoint */
    char *optmeta[2 * JM_TRAIN_NRUN]; /* the run's options as checkpoint metadata: key, value, ... */
    int noptmeta;
    const char *program;         /* the training program: --program, or train_step_ce / train_step_cond */
    int p_main, p_ce;            /* training program; train_step_ce for --pretrain, else -1 */
    jm_dataset ds, test;         /* training records (the train split of --data); the evaluation set
                                    (--test, else the validation split; n 0: none) */
    jm_table_tf tf;              /* a table's columns kept and standardisation, fitted on ds */
    int has_tf;
    int64_t n, *pool;            /* the records trained on: all, or N labelled per class */
    int64_t B, per, ipe, total;  /* batch, values per record, iterations per epoch and in all */
    /* semi-supervised programs (inputs x, x_lab, y_lab): x from every training record
       (pool), x_lab and y_lab from the labelled subset (lab), in its own order */
    int ssl, xl_in, yl_in;       /* the main program is one; its inputs x_lab, y_lab */
    int64_t nlab, *lab, Bl, ipel; /* labelled records, their batch and batches per labelled epoch */
    float *xl;
    int64_t *yl, *idxl, *perml, perml_epoch;
    jm_rt rt;
    int rt_open;
    int nlr, lr_knob[JM_TRAIN_MAXLR]; /* the optimizers' learning-rate knobs (globals) */
    int ngn, gn[JM_TRAIN_MAXGN];      /* the states "OPT.grad_norm" */
    int64_t inject, inject_after; /* JEMC_TEST_INJECT_NAN, JEMC_TEST_INJECT_NAN_AFTER */
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
    double loss, e_data, e_sample;
    double gn_val[JM_TRAIN_MAXGN];   /* this iteration's gradient norms */
    int gn_on[JM_TRAIN_MAXGN];       /* ... those its program wrote */
    /* the metrics interval and the clock */
    double sum[JM_TRAIN_MAXM], gn_sum[JM_TRAIN_MAXGN];
    int cnt[JM_TRAIN_MAXM], gn_cnt[JM_TRAIN_MAXGN];
    double t_start, t_log, now, last_loss, last_acc, exch_log, wait_log;
    int64_t ckpt_global_batch;   /* --resume: the checkpoint's global batch (0: not recorded) */
    int64_t early_log;
    int64_t it_log;
    int rc;
    /* data parallelism (engine/rt_dp.h): the job's processes (NULL: this one
       alone), this one's rank, and --accumulate's K micro-batches each; the
       global batch is nranks * K * B, shard rank * K + m takes its slice m.
       GPU ranks: coll is NCCL's (its host operations MPI's) and mpi the MPI
       transport under it, closed after it */
    jm_coll *coll, *mpi;
    int rank, nranks;
    int64_t K;
} jm_trainer;

static int jm_mkdir_p(const char *dir, const char *who) {
    char tmp[1024];
    snprintf(tmp, sizeof tmp, "%s", dir);
    for (char *p = tmp + 1; *p; p++)
        if (*p == '/') { *p = 0; mkdir(tmp, 0777); *p = '/'; }
    if (mkdir(tmp, 0777) != 0 && errno != EEXIST) { fprintf(stderr, "%s: cannot create %s: %s\n", who, dir, strerror(errno)); return -1; }
    return 0;
}

/* learning rate k at epoch e: base * rate^(milestones passed) * guard's scale */
static double jm_train_lr(const jm_train_opts *o, const jm_train_pos *pos, int k, int64_t epoch) {
    double lr = pos->lr_base[k] * pos->lr_scale;
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

/* does program pr write global g? */
static int jm_trainer_writes(const jm_tprogram *pr, int g) {
    for (int w = 0; w < pr->nwrites; w++) if (pr->writes[w].global == g) return 1;
    return 0;
}

/* the knob's name: "config.glr" -> "glr" */
static const char *jm_knob_name(const jm_table *t, int g) { return t->globals[g].t.name + 7; }

/* the state, the position and the run's options (opts: key, value, ... nopts
   pairs); the base of learning-rate knob NAME under jemc.train.lr_base.NAME */
static int jm_save_ckpt(jm_rt *rt, const char *path, const jm_train_pos *pos, const int *lr_knob, int nlr, char *const *opts, int nopts,
                        const jm_table_tf *tf, const char *who) {
    char it[32], scale[40], rb[32], gb[32], err[1024], bkey[JM_TRAIN_MAXLR][160], base[JM_TRAIN_MAXLR][40];
    snprintf(it, sizeof it, "%" PRId64, pos->it);
    snprintf(scale, sizeof scale, "%.17g", pos->lr_scale);
    snprintf(rb, sizeof rb, "%" PRId64, pos->rollbacks);
    snprintf(gb, sizeof gb, "%" PRId64, pos->global_batch);
    const char *meta[8 + 2 * JM_TRAIN_MAXLR + 2 * JM_TRAIN_NRUN + 2 * JM_TABLE_META] = { "jemc.train.iterations", it, "jemc.train.lr_scale", scale,
                                                                                         "jemc.train.rollbacks", rb, "jemc.train.global_batch", gb };
    /* a table's transform (jemc.data.*): eval applies the training split's statistics */
    const char *tkeys[JM_TABLE_META];
    char *tvals[JM_TABLE_META] = { NULL };
    int nt = tf ? jm_table_tf_meta(tf, tkeys, tvals) : 0;
    if (nt < 0) { fprintf(stderr, "%s: out of memory\n", who); return -1; }
    int n = 4;
    for (int k = 0; k < nlr; k++) {
        snprintf(bkey[k], sizeof bkey[k], "jemc.train.lr_base.%s", jm_knob_name(rt->t, lr_knob[k]));
        snprintf(base[k], sizeof base[k], "%.17g", pos->lr_base[k]);
        meta[2 * n] = bkey[k];
        meta[2 * n + 1] = base[k];
        n++;
    }
    for (int i = 0; i < nopts && i < JM_TRAIN_NRUN; i++, n++) {
        meta[2 * n] = opts[2 * i];
        meta[2 * n + 1] = opts[2 * i + 1];
    }
    for (int i = 0; i < nt; i++, n++) {
        meta[2 * n] = tkeys[i];
        meta[2 * n + 1] = tvals[i];
    }
    int rc = jm_state_save(rt, path, meta, n, err, sizeof err);
    jm_table_meta_free(tvals);
    if (rc != 0) { fprintf(stderr, "%s: %s\n", who, err); return -1; }
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

static void jm_progress(FILE *f, int64_t it, int64_t total, int64_t epoch, double rate, double loss, double acc) {
    int width = 24, fill = total > 0 ? (int)((double)width * (double)it / (double)total) : 0;
    char bar[64];
    for (int i = 0; i < width; i++) bar[i] = i < fill ? '#' : '.';
    bar[width] = 0;
    double eta = rate > 0 ? (double)(total - it) / rate : 0;
    char acc_s[32] = "";
    if (isfinite(acc)) snprintf(acc_s, sizeof acc_s, " acc %.3f", acc);     /* unsupervised programs have none */
    fprintf(f, "\r  epoch %" PRId64 " [%s] %" PRId64 "/%" PRId64 " %.2f it/s loss %.4f%s ETA %d:%02d   ", epoch + 1, bar, it, total,
            rate, loss, acc_s, (int)(eta / 60), (int)eta % 60);
    fflush(f);
}

static const char *jm_train_usage =
    "usage: EXE train --data DIR|FILE [options]\n"
    "       EXE train --resume CKPT [options]\n\n"
    "Trains the graph's train_step program (JEM: cross-entropy + E(data) - E(samples), SGLD from the\n"
    "replay buffer), or --program NAME (VERA: train_step_vera, or train_step_vera_unsup without\n"
    "labels), over the data set: shuffled each epoch by --data-seed, augmented, with every optimizer's\n"
    "learning rate (each setting a graph's optimizer takes as lr=: VERA's lr, glr, post_lr) warmed up\n"
    "(in the graph) and cut by --decay-rate at --decay-epochs. Writes OUT/metrics.jsonl (every scalar\n"
    "output, each optimizer's gradient norm and learning rate), OUT/last.safetensors (atomically,\n"
    "every --ckpt-every iterations and at the end), OUT/samples/*.png. A NaN/Inf loss or gradient norm\n"
    "(any optimizer's) or an exploding energy gap rolls back to the last good state with lower\n"
    "learning rates (--lr-drop), at most --max-rollbacks times.\n\n"
    "--resume CKPT continues the run CKPT belongs to. Every checkpoint stores the run's options; on\n"
    "--resume one not given takes the stored value (one line says which). A locked option given with\n"
    "another value is refused (exit 2) unless --change NAME says the change is intended (--change\n"
    "without the option: its default; --change all: every option from this command line).";

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
    tr->nranks = 1;
}

/* The job's processes (dist/dist.h) when an MPI launcher started this one:
   its rank names it in messages ("[r1]"). 0, or -1 after a message. */
static int jm_trainer_join(jm_trainer *tr) {
    char err[1024];
    tr->coll = jm_dist_open(err, sizeof err);
    if (!tr->coll) {
        if (!err[0]) return 0;
        fprintf(stderr, "%s: %s\n", tr->who, err);
        return -1;
    }
    tr->rank = tr->coll->rank;
    tr->nranks = tr->coll->size;
    /* GPU ranks on one machine take one GPU each, by local rank */
    jm_rt_cli_set_gpu_ordinal(tr->coll->local_rank);
    if (tr->rank > 0) {
        size_t l = strlen(tr->who);
        snprintf(tr->who + l, sizeof tr->who - l, " [r%d]", tr->rank);
    }
    return 0;
}

/* Every rank starts from the same state (the same seed initialises alike;
   a --resume reads the same file): checked, by the state's hash. The state
   as the device has it (a GPU's host copy is brought up to date only where
   something read it: rank 0's checkpoints, not rank 1's). */
static int jm_trainer_same_state(jm_trainer *tr, const char *when) {
    if (!tr->coll || tr->nranks < 2) return 0;
    unsigned char *st = malloc((size_t)tr->t->state_bytes + 1);
    if (!st || jm_rt_state_get(&tr->rt, st) != 0) {
        fprintf(stderr, "%s: %s\n", tr->who, st ? tr->rt.err : "out of memory");
        free(st);
        return -1;
    }
    uint64_t h = 1469598103934665603ull;
    for (int64_t i = 0; i < tr->t->state_bytes; i++) h = (h ^ st[i]) * 1099511628211ull;
    free(st);
    double lo[2] = { (double)(h >> 32), (double)(h & 0xffffffffu) }, hi[2] = { lo[0], lo[1] };
    char e[256];
    if (tr->coll->allreduce_f64(tr->coll, lo, 2, JM_COLL_MIN, e, sizeof e) != 0 || tr->coll->allreduce_f64(tr->coll, hi, 2, JM_COLL_MAX, e, sizeof e) != 0) {
        fprintf(stderr, "%s: %s\n", tr->who, e);
        return -1;
    }
    if (lo[0] != hi[0] || lo[1] != hi[1]) {
        fprintf(stderr, "%s: the %d processes' states differ %s\n", tr->who, tr->nranks, when);
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------------ the run's options */

/* the command line's entry for option `name` (run options and --seed are always there) */
static int jm_trainer_arg(const jm_trainer *tr, const char *name) {
    for (int k = 0; k < tr->nargs; k++) if (strcmp(tr->args[k].name, name) == 0) return k;
    return 0;
}

/* run option `name` ("noise" or "--noise"), or -1 */
static int jm_run_option(const char *name) {
    const char *bare = strncmp(name, "--", 2) == 0 ? name + 2 : name;
    for (int r = 0; r < JM_TRAIN_NRUN; r++) if (strcmp(jm_run_options[r].name + 2, bare) == 0) return r;
    return -1;
}

/* the words of --change (given repeatedly or separated by commas): 1 when fn is
   true of every word; fn gets the word */
static int jm_trainer_each_change(jm_trainer *tr, int (*fn)(jm_trainer *, const char *, const void *), const void *arg) {
    for (int i = 0; i < tr->o.changes.n; i++) {
        const char *s = tr->o.changes.v[i];
        while (*s) {
            size_t len = strcspn(s, ",");
            char word[128];
            snprintf(word, sizeof word, "%.*s", (int)(len < sizeof word - 1 ? len : sizeof word - 1), s);
            if (word[0] && !fn(tr, word, arg)) return 0;
            s += len + (s[len] == ',');
        }
    }
    return 1;
}

/* a --change word names a locked option or "all" (else a message) */
static int jm_change_valid(jm_trainer *tr, const char *word, const void *unused) {
    int r = jm_run_option(word);
    if (strcmp(word, "all") == 0 || (r >= 0 && jm_run_options[r].locked)) return 1;
    if (r >= 0) {
        fprintf(stderr, "%s: --change %s: %s is not locked; a new value applies without --change\n", tr->who, word, jm_run_options[r].name);
        return 0;
    }
    const char *names[JM_TRAIN_NRUN + 1];
    int n = 0;
    for (int k = 0; k < JM_TRAIN_NRUN; k++) if (jm_run_options[k].locked) names[n++] = jm_run_options[k].name + 2;
    names[n++] = "all";
    const char *best = jm_closest_name(strncmp(word, "--", 2) == 0 ? word + 2 : word, names, n);
    fprintf(stderr, "%s: --change takes a locked option (", tr->who);
    for (int k = 0; k < n - 1; k++) fprintf(stderr, "%s%s", k ? ", " : "", names[k]);
    fprintf(stderr, ") or all, got '%s'%s%s%s\n", word, best ? "; did you mean '" : "", best ? best : "", best ? "'?" : "");
    return 0;
}

/* a --change word is not `name` (a run option's name with its dashes) nor "all" */
static int jm_change_not(jm_trainer *tr, const char *word, const void *name) {
    return strcmp(word, "all") != 0 && jm_run_option(word) != jm_run_option(name);
}

static int jm_trainer_changes(jm_trainer *tr, const char *name) { return !jm_trainer_each_change(tr, jm_change_not, name); }

/* text on a command line: as is, or in single quotes */
static const char *jm_shell_word(const char *v, char *buf, size_t n) {
    if (*v && strspn(v, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_./,:=+-@%") == strlen(v)) return v;
    snprintf(buf, n, "'%s'", v);
    return buf;
}

/* option a with value v (as jm_args_format writes it) as the command line says it:
   "--noise 0.03", "--flip", "no --flip", "no --test" */
static void jm_option_show(const jm_arg *a, const char *v, char *buf, size_t n) {
    char q[1024];
    if (a->kind == JM_ARG_FLAG) snprintf(buf, n, "%s%s", v[0] == '1' ? "" : "no ", a->name);
    else if (!*v) snprintf(buf, n, "no %s", a->name);
    else snprintf(buf, n, "%s %s", a->name, jm_shell_word(v, q, sizeof q));
}

/* the option's value (jm_args_format of a) is the stored one: numbers by value;
   paths also when they name the same file */
static int jm_option_same(const jm_arg *a, const char *stored, int path) {
    char cur[1100];
    jm_args_format(a, cur, sizeof cur);
    switch (a->kind) {
    case JM_ARG_INT: return strtoll(stored, NULL, 10) == *(const int64_t *)a->dst;
    case JM_ARG_NUM: return strtod(stored, NULL) == *(const double *)a->dst;
    case JM_ARG_FLAG: return (stored[0] == '1') == (*(const int *)a->dst != 0);
    default: break;
    }
    if (strcmp(cur, stored) == 0) return 1;
    if (!path || !*cur || !*stored) return 0;
    char *x = realpath(cur, NULL), *y = realpath(stored, NULL);
    int same = x && y && strcmp(x, y) == 0;
    free(x);
    free(y);
    return same;
}

/* --help's text: the usage and which options --resume locks, keeps and leaves */
static void jm_trainer_usage(jm_trainer *tr) {
    size_t n = sizeof tr->usage, used = (size_t)snprintf(tr->usage, n, "%s", jm_train_usage);
    static const char *const heads[] = { "\nlocked:", "\nkept (the run's unless given; a new value applies):", "\nnot stored (this invocation only):" };
    for (int group = 0; group < 3; group++) {
        int col = (int)strlen(heads[group]) - 1;
        used += (size_t)snprintf(tr->usage + used, used < n ? n - used : 0, "%s", heads[group]);
        for (int k = 0; k < tr->nargs; k++) {
            int r = jm_run_option(tr->args[k].name);
            int g = r < 0 ? 2 : jm_run_options[r].locked ? 0 : 1;
            if (g != group) continue;
            const char *name = tr->args[k].name;
            int wrap = col + 1 + (int)strlen(name) > 100;
            used += (size_t)snprintf(tr->usage + used, used < n ? n - used : 0, "%s%s", wrap ? "\n   " : " ", name);
            col = (wrap ? 3 : col + 1) + (int)strlen(name);
        }
    }
}

/* the command line's table kept (the options' defaults noted) and --help's text */
static void jm_trainer_table(jm_trainer *tr, const jm_arg *args, int n) {
    tr->nargs = n;
    memcpy(tr->args, args, sizeof *args * (size_t)n);
    for (int k = 0; k < n; k++) jm_args_format(&tr->args[k], tr->defv[k], sizeof tr->defv[k]);
    jm_trainer_usage(tr);
}

static jm_train_next jm_trainer_parse_options(jm_trainer *tr, int argc, char **argv) {
    jm_train_opts *o = &tr->o;
    o->out = "run"; o->program = "train_step"; o->epochs = 1; o->log_every = 20; o->ckpt_every = 500; o->sample_every = 500;
    o->seed = 0; o->data_seed = 1; o->max_rollbacks = 5; o->guard_every = 50; o->noise = 0; o->decay_rate = 0.3; o->lr_drop = 0.5; o->max_gap = 1e4; o->accumulate = 1; o->bucket_mb = 25;
    const jm_arg args[] = {
        { "--data", JM_ARG_STR, &o->data, "DIR|FILE", "training data: an MNIST/CIFAR directory, IDX, CIFAR binary or CSV file", 0, 0 },
        { "--labels", JM_ARG_STR, &o->labels, "FILE", "labels file: IDX (default: derived from the images file name), or text of one label a line for CSV/text", 0, 0 },
        { "--test", JM_ARG_STR, &o->test, "DIR|FILE", "test data: accuracy logged after every epoch (a directory: its test split)", 0, 0 },
        { "--test-labels", JM_ARG_STR, &o->test_labels, "FILE", "the --test file's labels file (as --labels)", 0, 0 },
        JM_SESSION_TABLE_ARGS,
        { "--drop-repeated", JM_ARG_INT, &o->drop_repeated, "N", "tables: drop each column whose smallest value occurs more than N times in the training split (VERA's HEPMASS: 5; default 0: keep all)", 0, 1e12 },
        { "--no-standardize", JM_ARG_FLAG, &o->no_standardize, NULL, "tables: keep the values (default: standardise each column with the training split's mean and std)", 0, 0 },
        { "--test-split", JM_ARG_NUM, &o->test_split, "F", "hold out this fraction of --data as a test split, drawn by --data-seed (eval scores it)", 0, 0.99 },
        { "--val-split", JM_ARG_NUM, &o->val_split, "F", "then this fraction of the rest as a validation split, evaluated after each epoch when no --test", 0, 0.99 },
        { "--out", JM_ARG_STR, &o->out, "DIR", "run directory (default run/)", 0, 0 },
        { "--resume", JM_ARG_STR, &o->resume, "CKPT", "continue the run exactly from a checkpoint (state, position, RNG, options)", 0, 0 },
        { "--change", JM_ARG_LIST, &o->changes, "OPTION", "with --resume: OPTION (a locked one, e.g. noise, or all) comes from this command line", 0, 0 },
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
        { "--labels-per-class", JM_ARG_INT, &o->labels_per_class, "N", "N labelled examples per class: the only records a program of x, y trains on; x_lab, y_lab of a semi-supervised program (x: every record)", 0, 1e9 },
        { "--seed", JM_ARG_INT, &o->seed, "N", "seed of parameter initialisation and sampling (default 0; a resumed run keeps its own)", 0, 9e18 },
        { "--data-seed", JM_ARG_INT, &o->data_seed, "N", "seed of shuffling and augmentation (default 1)", 0, 0 },
        { "--log-every", JM_ARG_INT, &o->log_every, "N", "iterations per metrics line (default 20)", 1, 1e9 },
        { "--ckpt-every", JM_ARG_INT, &o->ckpt_every, "N", "iterations per checkpoint (default 500; 0: only at the end)", 0, 1e12 },
        { "--sample-every", JM_ARG_INT, &o->sample_every, "N", "iterations per sample grid of the replay buffer or generator (default 500; 0: never)", 0, 1e12 },
        { "--max-rollbacks", JM_ARG_INT, &o->max_rollbacks, "N", "divergence guard: give up after N rollbacks (default 5)", 0, 1e6 },
        { "--lr-drop", JM_ARG_NUM, &o->lr_drop, "F", "divergence guard: learning-rate factor per rollback (default 0.5)", 0, 1 },
        { "--max-energy-gap", JM_ARG_NUM, &o->max_gap, "G", "divergence guard: |E(data) - E(samples)| above G diverges (default 1e4)", 0, 1e300 },
        { "--guard-every", JM_ARG_INT, &o->guard_every, "N", "divergence guard: iterations between good states kept (default 50)", 1, 1e9 },
        { "--init", JM_ARG_STR, &o->init, "gm|uniform", "a graph with class Gaussians (gm_mean, gm_chol): gm fits them and fills the replay buffer with gm_fill (default); uniform fits them but leaves the buffer at its initialiser", 0, 0 },
        { "--threads", JM_ARG_INT, &o->threads, "N", "threads (default: all cores; under mpirun, the cores / processes on the machine)", 0, 4096 },
        { "--accumulate", JM_ARG_INT, &o->accumulate, "K", "micro-batches per step: K batches' gradients averaged before one update (default 1)", 1, 4096 },
        { "--bucket-mb", JM_ARG_NUM, &o->bucket_mb, "MB", "under mpirun: gradients go out in buckets of MB megabytes as the backward pass finishes them, overlapping it (default 25; 0: one exchange after it)", 0, 1e6 },
        { "--progress", JM_ARG_FLAG, &o->progress, NULL, "progress bar even when stderr is not a terminal", 0, 0 },
        { "--no-progress", JM_ARG_FLAG, &o->no_progress, NULL, "no progress bar", 0, 0 },
    };
    _Static_assert(sizeof args / sizeof args[0] <= JM_TRAIN_MAXARGS, "JM_TRAIN_MAXARGS");
    jm_trainer_table(tr, args, (int)(sizeof args / sizeof args[0]));
    const char *positional[1];
    int npos, pr_rc = jm_args_parse_given(tr->who, argc, argv, 2, tr->args, tr->nargs, positional, 0, &npos, tr->usage, tr->given);
    if (pr_rc != 0) return jm_trainer_stop(tr, pr_rc > 0 ? 0 : 2);
    if (!o->data && !o->resume) { fprintf(stderr, "%s: --data is required (see --help)\n", tr->who); return jm_trainer_stop(tr, 2); }
    if (o->changes.n && !o->resume) { fprintf(stderr, "%s: --change only applies with --resume\n", tr->who); return jm_trainer_stop(tr, 2); }
    if (!jm_trainer_each_change(tr, jm_change_valid, NULL)) return jm_trainer_stop(tr, 2);
    if (jm_check_decay(o->decay_epochs, tr->who) != 0) return jm_trainer_stop(tr, 2);
    return JM_TRAIN_GO;
}

/* run option r takes the value v stored in --resume's checkpoint; -1 after a message */
static int jm_trainer_restore(jm_trainer *tr, int r, const char *v) {
    const jm_arg *a = &tr->args[jm_trainer_arg(tr, jm_run_options[r].name)];
    tr->restored[r] = strdup(v);
    if (!tr->restored[r]) { fprintf(stderr, "%s: out of memory\n", tr->who); return -1; }
    if (a->kind == JM_ARG_STR && !*v) { *(const char **)a->dst = NULL; return 0; }
    if (jm_args_set(tr->who, a, tr->restored[r]) == 0) return 0;
    fprintf(stderr, "%s: %s: metadata %s%s is not a value of %s\n", tr->who, tr->o.resume, JM_TRAIN_OPTKEY, a->name + 2, a->name);
    return -1;
}

/* --resume: the run's options stored in the checkpoint (meta) fill in those not
   given; a locked one given with another value is refused (exit 2) unless --change */
static jm_train_next jm_trainer_resume_options(jm_trainer *tr, const jm_st_file *meta) {
    const char *who = tr->who, *ck = tr->o.resume;
    int stored = 0;
    for (int i = 0; i < meta->nmeta && !stored; i++) stored = strncmp(meta->meta[i].key, JM_TRAIN_OPTKEY, strlen(JM_TRAIN_OPTKEY)) == 0;
    if (!stored) {
        fprintf(stderr, "%s: note: %s stores no options (written before checkpoints kept them): the run's options are this command line's\n", who, ck);
        return JM_TRAIN_GO;
    }
    /* the run's length is --iters or --epochs: either one given replaces both */
    int length_given = tr->given[jm_trainer_arg(tr, "--iters")] || tr->given[jm_trainer_arg(tr, "--epochs")];
    char list[4096] = "", key[64], here[1200], run[1200];
    size_t used = 0;
    int conflicts = 0;
    for (int r = 0; r < JM_TRAIN_NRUN; r++) {
        const char *name = jm_run_options[r].name;
        int k = jm_trainer_arg(tr, name);
        const jm_arg *a = &tr->args[k];
        snprintf(key, sizeof key, "%s%s", JM_TRAIN_OPTKEY, name + 2);
        const char *v = jm_st_meta_get(meta, key);
        if (!v) continue;    /* an option newer than the checkpoint: this command line's */
        char cur[1100];
        jm_args_format(a, cur, sizeof cur);
        int same = jm_option_same(a, v, jm_run_options[r].path);
        int given = (strcmp(name, "--iters") == 0 || strcmp(name, "--epochs") == 0) ? length_given : tr->given[k];
        if (jm_run_options[r].locked && jm_trainer_changes(tr, name)) {
            jm_option_show(a, cur, here, sizeof here);
            jm_option_show(a, v, run, sizeof run);
            if (!same) fprintf(stderr, "%s: %s instead of the run's %s (--change %s)\n", who, here, run, name + 2);
            continue;
        }
        if (!given) {
            if (jm_trainer_restore(tr, r, v) != 0) return jm_trainer_stop(tr, 1);
            if (strcmp(v, tr->defv[k]) != 0 && used < sizeof list) {
                jm_option_show(a, v, run, sizeof run);
                used += (size_t)snprintf(list + used, sizeof list - used, " %s", run);
            }
            continue;
        }
        if (!jm_run_options[r].locked || same) continue;
        jm_option_show(a, cur, here, sizeof here);
        jm_option_show(a, v, run, sizeof run);
        fprintf(stderr, "%s: this command line has %s, the run in %s has %s; add --change %s to change it, or leave %s out to keep the run's\n",
                who, here, ck, run, name + 2, name);
        conflicts++;
    }
    if (conflicts) return jm_trainer_stop(tr, 2);
    if (used) fprintf(stderr, "%s: resuming with%s from %s (the run's options not given here)\n", who, list, ck);
    else fprintf(stderr, "%s: resuming from %s; the run's options are all given here or at their defaults\n", who, ck);
    return JM_TRAIN_GO;
}

/* the options final: --data there, the program chosen, the checkpoints' metadata */
static jm_train_next jm_trainer_settle(jm_trainer *tr) {
    const jm_train_opts *o = &tr->o;
    if (!o->data) { fprintf(stderr, "%s: --data is required (see --help)\n", tr->who); return jm_trainer_stop(tr, 2); }
    if (jm_check_decay(o->decay_epochs, tr->who) != 0) return jm_trainer_stop(tr, 2);
    tr->program = o->baseline ? "train_step_ce" : o->cond ? "train_step_cond" : o->program;
    for (int r = 0; r < JM_TRAIN_NRUN; r++) {
        char key[64], v[1100];
        snprintf(key, sizeof key, "%s%s", JM_TRAIN_OPTKEY, jm_run_options[r].name + 2);
        jm_args_format(&tr->args[jm_trainer_arg(tr, jm_run_options[r].name)], v, sizeof v);
        tr->optmeta[2 * r] = strdup(key);
        tr->optmeta[2 * r + 1] = strdup(v);
        if (!tr->optmeta[2 * r] || !tr->optmeta[2 * r + 1]) { fprintf(stderr, "%s: out of memory\n", tr->who); return jm_trainer_stop(tr, 1); }
        tr->noptmeta = r + 1;
    }
    return JM_TRAIN_GO;
}

/* A training program takes x and, if it trains on labels, y (unsupervised
   programs such as train_step_vera_unsup take x alone); or, semi-supervised, x
   (unlabelled: every training record) with x_lab and y_lab (the labelled subset,
   so --labels-per-class is required): nothing else. Returns 1 for a
   semi-supervised program, 0 for another, -1 after a message. */
static int jm_trainer_inputs_ok(const jm_tprogram *pr, int64_t labels_per_class, const char *who) {
    int xl = jm_session_input(pr, "x_lab") >= 0, yl = jm_session_input(pr, "y_lab") >= 0, y = jm_session_input(pr, "y") >= 0;
    for (int i = 0; i < pr->ninputs; i++) {
        const char *n = pr->inputs[i].name;
        if (strcmp(n, "x") != 0 && strcmp(n, "y") != 0 && strcmp(n, "x_lab") != 0 && strcmp(n, "y_lab") != 0) {
            fprintf(stderr, "%s: program %s takes input '%s'; train gives a training program x (the records) and y (the labels), "
                            "or x, x_lab and y_lab (semi-supervised), only\n", who, pr->name, n);
            return -1;
        }
    }
    if (!xl && !yl) return 0;
    if (xl != yl || y || jm_session_input(pr, "x") < 0) {
        fprintf(stderr, "%s: program %s: a semi-supervised program takes x (unlabelled), x_lab and y_lab (labelled), and no y\n", who, pr->name);
        return -1;
    }
    if (labels_per_class <= 0) {
        fprintf(stderr, "%s: program %s takes x_lab and y_lab, the labelled subset: give --labels-per-class N (x is then every training record)\n",
                who, pr->name);
        return -1;
    }
    return 1;
}

/* --data's records: the whole file, or its train split (--test-split, --val-split;
   the validation split becomes the evaluation set when there is no --test); a
   table's transform fitted on them and applied to every set (jemc.data.* in the
   checkpoints). */
static int jm_trainer_load_data(jm_trainer *tr) {
    const jm_train_opts *o = &tr->o;
    const char *who = tr->who;
    char err[1024];
    int64_t split_records = 0;
    if (jm_session_data_raw(o->data, o->labels, "train", &tr->ds, who) != 0) return -1;
    if (o->test && jm_session_data_raw(o->test, o->test_labels, "test", &tr->test, who) != 0) return -1;
    if (o->test_split > 0 || o->val_split > 0) {
        int64_t n = tr->ds.n, ntr, nv, nt, *rows = malloc(sizeof(int64_t) * (size_t)(3 * n + 1));
        jm_dataset train, val;
        memset(&train, 0, sizeof train);
        memset(&val, 0, sizeof val);
        int rc = rows ? jm_table_split(n, (uint64_t)o->data_seed, o->test_split, o->val_split, rows, &ntr, rows + n, &nv, rows + 2 * n, &nt,
                                       err, sizeof err)
                      : -1;
        if (!rows) snprintf(err, sizeof err, "out of memory");
        if (rc == 0 && (jm_data_subset(&tr->ds, rows, ntr, &train) != 0 || (nv > 0 && jm_data_subset(&tr->ds, rows + n, nv, &val) != 0))) {
            snprintf(err, sizeof err, "out of memory");
            rc = -1;
        }
        free(rows);
        if (rc != 0) {
            jm_data_free(&train);
            jm_data_free(&val);
            fprintf(stderr, "%s: %s: %s\n", who, o->data, err);
            return -1;
        }
        fprintf(stderr, "%s: %s: %lld records: %lld train, %lld validation, %lld test (held out for eval), drawn by --data-seed %lld\n", who,
                tr->ds.path, (long long)n, (long long)ntr, (long long)nv, (long long)nt, (long long)o->data_seed);
        split_records = n;
        jm_data_free(&tr->ds);
        tr->ds = train;
        if (!o->test) tr->test = val;
        else jm_data_free(&val);
    }
    int table = tr->ds.format == JM_DATA_CSV || tr->ds.format == JM_DATA_TEXT;
    if (!table && (o->drop_repeated > 0 || o->no_standardize)) {
        fprintf(stderr, "%s: --drop-repeated and --no-standardize are for tables (CSV, text); %s is %s\n", who, tr->ds.path,
                jm_data_format_name(tr->ds.format));
        return -1;
    }
    if (!table) return 0;
    if (jm_table_fit(&tr->ds, NULL, 0, o->drop_repeated, !o->no_standardize, &tr->tf, err, sizeof err) != 0) {
        fprintf(stderr, "%s: %s\n", who, err);
        return -1;
    }
    tr->tf.split_records = split_records;
    tr->has_tf = 1;
    if (tr->tf.nkeep < tr->tf.ncols)
        fprintf(stderr, "%s: %s: %d of %d columns kept (--drop-repeated %lld)\n", who, tr->ds.path, tr->tf.nkeep, tr->tf.ncols, (long long)o->drop_repeated);
    if (jm_table_apply(&tr->tf, &tr->ds, err, sizeof err) != 0 || (tr->test.n && jm_table_apply(&tr->tf, &tr->test, err, sizeof err) != 0)) {
        fprintf(stderr, "%s: %s\n", who, err);
        return -1;
    }
    return 0;
}

/* a semi-supervised program's x_lab (f32[Bl, same record]) and y_lab (i64[Bl]) */
static int jm_trainer_fits_lab(jm_trainer *tr, const jm_tprogram *pr) {
    const jm_tdesc *xl = &pr->inputs[tr->xl_in], *yl = &pr->inputs[tr->yl_in];
    int64_t per = 1;
    for (int k = 1; k < xl->rank; k++) per *= xl->dim[k];
    char tb[160];
    if (xl->dtype != JM_DT_F32 || xl->rank < 2 || per != tr->per) {
        jm_desc_str(xl, tb, sizeof tb);
        fprintf(stderr, "%s: %s holds %dx%dx%d records, but program %s takes x_lab: %s\n", tr->who, tr->ds.path, tr->ds.c, tr->ds.h, tr->ds.w,
                pr->name, tb);
        return -1;
    }
    if (yl->dtype != JM_DT_I64 || yl->rank != 1 || yl->dim[0] != xl->dim[0]) {
        jm_desc_str(yl, tb, sizeof tb);
        fprintf(stderr, "%s: program %s takes y_lab: %s; labels must be i64[x_lab's batch]\n", tr->who, pr->name, tb);
        return -1;
    }
    tr->Bl = xl->dim[0];
    /* the labelled batch is split across the shards like the unlabelled one */
    int64_t Gl = tr->Bl * tr->K * tr->nranks;
    tr->ipel = tr->nlab / Gl;
    if (tr->ipel < 1) {
        fprintf(stderr, "%s: %" PRId64 " labelled records (--labels-per-class %" PRId64 "), fewer than x_lab's batch of %" PRId64 "\n", tr->who,
                tr->nlab, tr->o.labels_per_class, Gl);
        return -1;
    }
    return 0;
}

/* Every label of the training and evaluation records of a program that reads labels
   (y, or y_lab) must name one of the model's classes (the width of `evaluate`'s or `logits`' logits; nothing to check without
   either): a label past them would otherwise fail deep in the engine as an index out of
   range, naming neither file nor record. 0 ok, -1 after a message. */
static int jm_trainer_labels_fit(const jm_trainer *tr) {
    int64_t K = -1;
    const char *names[2] = { "evaluate", "logits" };
    for (int k = 0; k < 2 && K < 0; k++)
        for (int p = 0; p < tr->t->nprograms && K < 0; p++) {
            const jm_tprogram *pr = &tr->t->programs[p];
            int li = strcmp(pr->name, names[k]) == 0 ? jm_session_output(pr, "logits") : -1;
            if (li >= 0 && pr->outputs[li].rank == 2) K = pr->outputs[li].dim[1];
        }
    /* a program of x alone (unsupervised VERA, say StackMNIST's mode ids as labels)
       never reads the labels: nothing to check */
    const jm_tprogram *prm = &tr->t->programs[tr->p_main];
    if (K < 1 || (jm_session_input(prm, "y") < 0 && jm_session_input(prm, "y_lab") < 0)) return 0;
    const jm_dataset *sets[2] = { &tr->ds, &tr->test };
    for (int k = 0; k < 2; k++)
        for (int64_t i = 0; i < sets[k]->n; i++)
            if (sets[k]->y[i] < 0 || sets[k]->y[i] >= K) {
                fprintf(stderr, "%s: %s: record %lld (0-based) has label %lld, but the model has %lld classes (0 to %lld)%s\n", tr->who, sets[k]->path,
                        (long long)i, (long long)sets[k]->y[i], (long long)K, (long long)K - 1,
                        sets[k]->y[i] == K ? "; labels that count from 1 need --label-base 1" : "");
                return -1;
            }
    return 0;
}

/* the training programs, the data sets, the records trained on and the run's length */
static jm_train_next jm_trainer_open_data(jm_trainer *tr) {
    const jm_table *t = tr->t;
    const jm_train_opts *o = &tr->o;
    const char *who = tr->who;
    tr->p_main = jm_session_program(t, tr->program, 1, who);
    tr->p_ce = o->pretrain > 0 ? jm_session_program(t, "train_step_ce", 1, who) : -1;
    if (tr->p_main < 0 || (o->pretrain > 0 && tr->p_ce < 0)) return jm_trainer_stop(tr, 2);
    const jm_tprogram *prm = &t->programs[tr->p_main];
    tr->K = o->accumulate > 0 ? o->accumulate : 1;
    tr->ssl = jm_trainer_inputs_ok(prm, o->labels_per_class, who);
    if (tr->ssl < 0 || (tr->p_ce >= 0 && jm_trainer_inputs_ok(&t->programs[tr->p_ce], o->labels_per_class, who) != 0)) return jm_trainer_stop(tr, 2);
    /* --pretrain would train train_step_ce on every record's label: not semi-supervised */
    if (tr->ssl && o->pretrain > 0) {
        fprintf(stderr, "%s: --pretrain runs train_step_ce on all records' labels; with the semi-supervised %s it is refused\n", who, prm->name);
        return jm_trainer_stop(tr, 2);
    }
    if (jm_trainer_load_data(tr) != 0 || jm_trainer_labels_fit(tr) != 0) return jm_trainer_stop(tr, 1);
    if (jm_session_fits(prm, &tr->ds, who) != 0 || (tr->p_ce >= 0 && jm_session_fits(&t->programs[tr->p_ce], &tr->ds, who) != 0))
        return jm_trainer_stop(tr, 1);
    /* the records trained on: all, or N labelled per class (a semi-supervised
       program: x from all, x_lab and y_lab from the N per class) */
    tr->n = tr->ds.n;
    tr->pool = malloc(sizeof(int64_t) * (size_t)(tr->ds.n + 1));
    tr->lab = tr->ssl ? malloc(sizeof(int64_t) * (size_t)(tr->ds.n + 1)) : NULL;
    if (!tr->pool || (tr->ssl && !tr->lab)) { fprintf(stderr, "%s: out of memory for %lld record indices\n", who, (long long)tr->ds.n); return jm_trainer_stop(tr, 1); }
    char err[1024];
    if (o->labels_per_class > 0) {
        int64_t got = jm_data_labelled_subset(&tr->ds, (int)o->labels_per_class, (uint64_t)o->data_seed, tr->ssl ? tr->lab : tr->pool, err, sizeof err);
        if (got < 0) { fprintf(stderr, "%s: %s\n", who, err); return jm_trainer_stop(tr, 1); }
        if (tr->ssl) tr->nlab = got;
        else tr->n = got;
    }
    if (o->labels_per_class <= 0 || tr->ssl)
        for (int64_t i = 0; i < tr->n; i++) tr->pool[i] = i;
    tr->per = (int64_t)tr->ds.c * tr->ds.h * tr->ds.w;
    if (tr->ssl) {
        tr->xl_in = jm_session_input(prm, "x_lab");
        tr->yl_in = jm_session_input(prm, "y_lab");
        if (jm_trainer_fits_lab(tr, prm) != 0) return jm_trainer_stop(tr, 1);
    }
    int xi = jm_session_input(prm, "x");
    tr->B = prm->inputs[xi].dim[0];
    /* an iteration takes one global batch: every shard's slice of it */
    int64_t G = tr->B * tr->K * tr->nranks;
    tr->pos.global_batch = G;
    tr->ipe = tr->n / G;
    if (tr->ipe < 1) {
        fprintf(stderr, "%s: %s has %" PRId64 " training records, fewer than one batch of %" PRId64 "\n", who, tr->ds.path, tr->n, G);
        return jm_trainer_stop(tr, 1);
    }
    tr->total = o->iters > 0 ? o->iters : o->epochs * tr->ipe;
    return JM_TRAIN_GO;
}

/* the runtime (from --resume's checkpoint or the initialisers) and the position */
static jm_train_next jm_trainer_open_session(jm_trainer *tr) {
    jm_train_opts *o = &tr->o;
    jm_st_file meta;
    memset(&meta, 0, sizeof meta);
    int seed_given = tr->given[jm_trainer_arg(tr, "--seed")];
    if (jm_session_open(&tr->rt, tr->t, tr->kernels, o->resume, (uint64_t)o->seed, seed_given, &o->sets, (int)o->threads, &meta, tr->who) != 0)
        return jm_trainer_stop(tr, 1);
    tr->rt_open = 1;
    tr->rt.dp_bucket_bytes = (int64_t)(o->bucket_mb * 1048576.0);
    /* the learning rates the schedule and the guard scale: every knob the
       program table marks as an optimizer's lr (EBM and generator alike) */
    const jm_table *t = tr->t;
    tr->nlr = 0;
    for (int g = 0; g < t->nglobals; g++)
        if (JM_KNOB_IS_LR(&t->globals[g])) {
            if (tr->nlr == JM_TRAIN_MAXLR) { fprintf(stderr, "%s: more than %d optimizer learning rates\n", tr->who, JM_TRAIN_MAXLR); return jm_trainer_stop(tr, 1); }
            tr->lr_knob[tr->nlr++] = g;
        }
    jm_train_pos pos = { 0, { 0 }, 1, 0, 0 };
    for (int k = 0; k < tr->nlr; k++) pos.lr_base[k] = jm_knob_get(&tr->rt, tr->lr_knob[k]);
    if (o->resume) {
        const char *v;
        if ((v = jm_st_meta_get(&meta, "jemc.train.iterations"))) pos.it = strtoll(v, NULL, 10);
        for (int k = 0; k < tr->nlr; k++) {
            const char *name = jm_knob_name(t, tr->lr_knob[k]);
            char key[160];
            snprintf(key, sizeof key, "jemc.train.lr_base.%s", name);
            /* checkpoints before several learning rates: jemc.train.lr_base, knob lr's */
            if ((v = jm_st_meta_get(&meta, key)) || (strcmp(name, "lr") == 0 && (v = jm_st_meta_get(&meta, "jemc.train.lr_base"))))
                pos.lr_base[k] = strtod(v, NULL);
            /* an explicit --set NAME=... restarts that rate's schedule from the value */
            size_t ln = strlen(name);
            for (int i = 0; i < o->sets.n; i++)
                if (strncmp(o->sets.v[i], name, ln) == 0 && o->sets.v[i][ln] == '=') pos.lr_base[k] = jm_knob_get(&tr->rt, tr->lr_knob[k]);
        }
        if ((v = jm_st_meta_get(&meta, "jemc.train.lr_scale"))) pos.lr_scale = strtod(v, NULL);
        if ((v = jm_st_meta_get(&meta, "jemc.train.rollbacks"))) pos.rollbacks = strtoll(v, NULL, 10);
        /* the global batch it was trained at (open_run compares) */
        if ((v = jm_st_meta_get(&meta, "jemc.train.global_batch"))) tr->ckpt_global_batch = strtoll(v, NULL, 10);
        /* the seed: the checkpoint's unless given (then also the run's option) */
        if (!seed_given) o->seed = (int64_t)tr->rt.seed;
        jm_train_next next = jm_trainer_resume_options(tr, &meta);
        jm_st_free(&meta);
        if (next != JM_TRAIN_GO) return next;
        tr->rt.seed = (uint64_t)o->seed;
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
    tr->x = malloc(sizeof(float) * (size_t)(tr->K * tr->B * tr->per));
    tr->y = malloc(sizeof(int64_t) * (size_t)(tr->K * tr->B));
    tr->idx = malloc(sizeof(int64_t) * (size_t)(tr->K * tr->B));
    tr->perm = malloc(sizeof(int64_t) * (size_t)(tr->n + 1));
    if (tr->ssl) {
        tr->xl = malloc(sizeof(float) * (size_t)(tr->K * tr->Bl * tr->per));
        tr->yl = malloc(sizeof(int64_t) * (size_t)(tr->K * tr->Bl));
        tr->idxl = malloc(sizeof(int64_t) * (size_t)(tr->K * tr->Bl));
        tr->perml = malloc(sizeof(int64_t) * (size_t)(tr->nlab + 1));
        if (!tr->xl || !tr->yl || !tr->idxl || !tr->perml) { fprintf(stderr, "%s: out of memory\n", who); return jm_trainer_stop(tr, 1); }
    }
    tr->out_main = jm_session_outputs(&t->programs[tr->p_main]);
    tr->out_ce = tr->p_ce >= 0 ? jm_session_outputs(&t->programs[tr->p_ce]) : NULL;
    tr->snap.state = malloc((size_t)t->state_bytes + 1);
    /* the gradient norms the guard watches: every optimizer's (f32 scalar state OPT.grad_norm) */
    tr->ngn = 0;
    for (int g = 0; g < t->nglobals; g++) {
        const jm_tglobal *gl = &t->globals[g];
        size_t l = strlen(gl->t.name);
        if (!(gl->kind == JM_GKIND_STATE && gl->t.dtype == JM_DT_F32 && gl->t.rank == 0 && l > 10 && strcmp(gl->t.name + l - 10, ".grad_norm") == 0))
            continue;
        /* a guard that silently watched only some of them would be worse than none */
        if (tr->ngn == JM_TRAIN_MAXGN) {
            fprintf(stderr, "%s: the graph has more than %d optimizers; train watches at most %d gradient norms\n", who, JM_TRAIN_MAXGN, JM_TRAIN_MAXGN);
            return jm_trainer_stop(tr, 2);
        }
        tr->gn[tr->ngn++] = g;
    }
    const char *inject_env = getenv("JEMC_TEST_INJECT_NAN");
    tr->inject = inject_env ? strtoll(inject_env, NULL, 10) : 0;
    inject_env = getenv("JEMC_TEST_INJECT_NAN_AFTER");
    tr->inject_after = inject_env ? strtoll(inject_env, NULL, 10) : 0;
    if (!tr->x || !tr->y || !tr->idx || !tr->perm || !tr->out_main || !tr->snap.state) {
        fprintf(stderr, "%s: out of memory\n", who);
        return jm_trainer_stop(tr, 1);
    }
    snprintf(tr->sdir, sizeof tr->sdir, "%s/samples", o->out);
    if (tr->rank == 0 && (jm_mkdir_p(o->out, who) != 0 || jm_mkdir_p(tr->sdir, who) != 0)) return jm_trainer_stop(tr, 1);
    snprintf(path, sizeof path, "%s/metrics.jsonl", o->out);
    /* a fresh run starts a new metrics file; a resumed one appends; rank 0
       alone of a job writes files and reports */
    tr->metrics = tr->rank == 0 ? fopen(path, o->resume ? "a" : "w") : fopen("/dev/null", "w");
    if (!tr->metrics) { fprintf(stderr, "%s: cannot write %s: %s\n", who, path, strerror(errno)); return jm_trainer_stop(tr, 1); }
    tr->tty = tr->rank == 0 && !o->no_progress && (o->progress || isatty(2));
    if (tr->rank > 0) return JM_TRAIN_GO;
    if (tr->K * tr->nranks > 1)
        fprintf(stderr, "%s: data-parallel: %d process%s x %" PRId64 " micro-batch%s of %" PRId64 " = global batch %" PRId64 "\n", who, tr->nranks,
                tr->nranks == 1 ? "" : "es", tr->K, tr->K == 1 ? "" : "es", tr->B, tr->B * tr->K * tr->nranks);
    /* another global batch than the checkpoint's is allowed (a resume on more
       processes, or with less memory) but changes what an iteration is: said, with the fix */
    int64_t was = tr->ckpt_global_batch, G = tr->pos.global_batch;
    if (was > 0 && was != G) {
        int64_t per = tr->B * tr->nranks;
        fprintf(stderr, "%s: warning: the checkpoint was trained at a global batch of %" PRId64 " examples per iteration; this run takes %" PRId64
                " (%d process%s x %" PRId64 " micro-batch%s x batch %" PRId64 "): each iteration's data, gradient noise and epoch length change",
                who, was, G, tr->nranks, tr->nranks == 1 ? "" : "es", tr->K, tr->K == 1 ? "" : "es", tr->B);
        if (was % per == 0) fprintf(stderr, "; --accumulate %" PRId64 " keeps %" PRId64 "\n", was / per, was);
        else fputc('\n', stderr);
    }
    fprintf(stderr, "%s: %s, %" PRId64 " records of %dx%dx%d, batch %" PRId64 ", %" PRId64 " iterations per epoch, %" PRId64 " iterations%s%s\n  settings: ",
            who, tr->ds.path, tr->n, tr->ds.c, tr->ds.h, tr->ds.w, tr->B, tr->ipe, tr->total, o->resume ? ", resuming at " : "", o->resume ? o->resume : "");
    jm_knob_list(&tr->rt, stderr, " ");
    fputc('\n', stderr);
    if (tr->ssl)
        fprintf(stderr, "  semi-supervised: x from all %" PRId64 " records; x_lab, y_lab from %" PRId64 " labelled (%" PRId64 " per class), batch %" PRId64 "\n", tr->n,
                tr->nlab, o->labels_per_class, tr->Bl);
    return JM_TRAIN_GO;
}

/* GPU ranks average their gradients on the GPUs through NCCL, bootstrapped
   over MPI (dist/dist.h), the device attached first (its context current).
   Where NCCL cannot start, on every rank alike, the gradients cross the host
   through MPI, said once. JEMC_NCCL=0 asks for that. */
static jm_train_next jm_trainer_open_nccl(jm_trainer *tr) {
    const jm_device *dev = jm_rt_device_chosen();
    if (!tr->coll || tr->nranks < 2 || !dev || !dev->mean_dev) return JM_TRAIN_GO;
    const char *off = getenv("JEMC_NCCL");
    if (off && strcmp(off, "0") == 0) {
        if (tr->rank == 0) fprintf(stderr, "%s: JEMC_NCCL=0: the gradients cross the host through MPI\n", tr->who);
        return JM_TRAIN_GO;
    }
    if (jm_rt_prepare(&tr->rt, tr->p_main) != 0) { fprintf(stderr, "%s: %s\n", tr->who, tr->rt.err); return jm_trainer_stop(tr, 1); }
    char err[2048];
    jm_coll *nccl = jm_dist_nccl_open(tr->coll, tr->coll->local_rank, err, sizeof err);
    if (!nccl) {
        if (tr->rank == 0) fprintf(stderr, "%s: note: %s; the gradients cross the host through MPI instead\n", tr->who, err);
        return JM_TRAIN_GO;
    }
    tr->mpi = tr->coll;
    tr->coll = nccl;
    if (tr->rank == 0) fprintf(stderr, "%s: data-parallel over %d GPUs: gradients averaged by NCCL\n", tr->who, tr->nranks);
    return JM_TRAIN_GO;
}

static jm_train_next jm_trainer_open(jm_trainer *tr) {
    const char *init = tr->o.init ? tr->o.init : "gm";
    if (strcmp(init, "gm") != 0 && strcmp(init, "uniform") != 0) {
        fprintf(stderr, "%s: --init takes gm or uniform, got '%s'\n", tr->who, init);
        return jm_trainer_stop(tr, 2);
    }
    jm_train_next next = jm_trainer_open_session(tr);
    if (next == JM_TRAIN_GO) next = jm_trainer_settle(tr);
    if (next == JM_TRAIN_GO) next = jm_trainer_open_data(tr);
    if (next == JM_TRAIN_GO) next = jm_trainer_open_nccl(tr);
    if (next == JM_TRAIN_GO && tr->o.resume && tr->pos.it >= tr->total)
        fprintf(stderr, "%s: note: %s already has %" PRId64 " iterations (asked for %" PRId64 ")\n", tr->who, tr->o.resume, tr->pos.it, tr->total);
    if (next == JM_TRAIN_GO) next = jm_trainer_open_run(tr);
    if (next != JM_TRAIN_GO) return next;
    /* JEM++'s informative initialisation (rt_gm.h): the class Gaussians of a fresh
       run fitted and the replay buffer filled from them (--init gm), before the clock */
    if (jm_gm_train_init(&tr->rt, &tr->ds, tr->o.resume != NULL, strcmp(init, "gm") == 0, tr->who) != 0) return jm_trainer_stop(tr, 1);
    /* the clock and the first metrics interval */
    tr->perm_epoch = tr->perml_epoch = -1;
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
        /* the hint names the graph's learning rates (VERA: lr, glr, post_lr) */
        char rates[256] = "";
        size_t used = 0;
        for (int k = 0; k < tr->nlr && used < sizeof rates; k++)
            used += (size_t)snprintf(rates + used, sizeof rates - used, "%s=, ", jm_knob_name(tr->t, tr->lr_knob[k]));
        fprintf(stderr, "%s: giving up after %" PRId64 " rollbacks; the last good checkpoint is %s/last.safetensors "
                        "(try a lower --set %ssgld_lr=, or --max-rollbacks)\n", tr->who, pos->rollbacks, o->out, rates);
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

/* this iteration's outputs: NaN/Inf (the loss, any optimizer's gradient norm
   this iteration's program wrote, the samples' energy) or an exploding energy
   gap rolls back */
static jm_train_next jm_trainer_guard(jm_trainer *tr) {
    double loss = tr->loss, ed = tr->e_data, es = tr->e_sample, gn = 0;
    int bad_gn = -1, first = -1;
    for (int k = 0; k < tr->ngn; k++) {
        if (!tr->gn_on[k]) continue;
        if (first < 0) first = k;
        if (bad_gn < 0 && !isfinite(tr->gn_val[k])) bad_gn = k;
    }
    if (bad_gn >= 0 || first >= 0) gn = tr->gn_val[bad_gn >= 0 ? bad_gn : first];
    /* every loss the program outputs: loss, and loss_* (VERA's generator loss loss_g) */
    const char *bad_loss = NULL;
    for (int i = 0; i < tr->pr->noutputs && !bad_loss; i++) {
        const char *name = tr->pr->outputs[i].name;
        if ((strcmp(name, "loss") == 0 || strncmp(name, "loss_", 5) == 0) && !isfinite(jm_session_scalar(tr->pr, tr->out, name))
            && jm_rt_desc_numel(&tr->pr->outputs[i]) == 1)
            bad_loss = name;
    }
    char gwhy[200], lwhy[200];
    snprintf(gwhy, sizeof gwhy, "the gradient is not finite (%s)", bad_gn >= 0 ? tr->t->globals[tr->gn[bad_gn]].t.name : "");
    snprintf(lwhy, sizeof lwhy, "the loss %s is not finite", bad_loss ? bad_loss : "");
    const char *why = !isfinite(loss) ? "the loss is not finite" : bad_loss ? lwhy : bad_gn >= 0 ? gwhy
                    : (jm_session_output(tr->pr, "e_sample") >= 0 && !isfinite(es)) ? "the samples' energy is not finite"
                    : (isfinite(ed) && isfinite(es) && fabs(ed - es) > tr->o.max_gap) ? "the energy gap exploded" : NULL;
    if (!why) return JM_TRAIN_GO;
    fprintf(stderr, "%s%s: iteration %" PRId64 ": %s (loss %g, E(data) %g, E(samples) %g, gradient norm %g)\n", tr->tty ? "\n" : "", tr->who,
            tr->pos.it + 1, why, loss, ed, es, gn);
    return jm_trainer_rollback(tr);
}

/* ------------------------------------------------------------------ one iteration */

/* added to --data-seed for the labelled batches' order and augmentation */
#define JM_TRAIN_LAB_SEED 0x1abe1ed5ull

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
    int64_t k = tr->pos.it % tr->ipe, G = tr->B * tr->K * tr->nranks;
    jm_augment aug = { (int)o->crop, o->flip, (float)o->noise };
    int augment = o->crop || o->flip || o->noise > 0;
    /* micro-batch m is shard rank * K + m: the slice of the global batch it
       names, augmented as that slice of one batch of G would be */
    for (int64_t m = 0; m < tr->K; m++) {
        int64_t first = ((int64_t)tr->rank * tr->K + m) * tr->B;
        int64_t *idx = tr->idx + m * tr->B;
        for (int64_t i = 0; i < tr->B; i++) idx[i] = tr->perm[k * G + first + i];
        jm_data_batch_share(&tr->ds, idx, tr->B, augment ? &aug : NULL, (uint64_t)o->data_seed, (uint64_t)tr->pos.it, first,
                            tr->x + m * tr->B * tr->per, tr->y + m * tr->B);
    }
    if (!tr->ssl) return 0;
    /* The labelled batch: the labelled subset cycled in its own order, reshuffled
       every nlab / Bl iterations (its "epoch"), from a seed of its own (--data-seed
       + JM_TRAIN_LAB_SEED): a pure function of (data seed, iteration), like the
       unlabelled batch, so a resumed run draws what the run straight through drew. */
    uint64_t lseed = (uint64_t)o->data_seed + JM_TRAIN_LAB_SEED;
    int64_t le = tr->pos.it / tr->ipel, lk = tr->pos.it % tr->ipel;
    if (le != tr->perml_epoch) {
        int64_t *tmp = malloc(sizeof(int64_t) * (size_t)(tr->nlab + 1));
        if (!tmp) { fprintf(stderr, "%s: out of memory\n", tr->who); return -1; }
        jm_data_shuffle(tr->nlab, lseed, (uint64_t)le, tmp);
        for (int64_t i = 0; i < tr->nlab; i++) tr->perml[i] = tr->lab[tmp[i]];
        free(tmp);
        tr->perml_epoch = le;
    }
    int64_t Gl = tr->Bl * tr->K * tr->nranks;
    for (int64_t m = 0; m < tr->K; m++) {
        int64_t first = ((int64_t)tr->rank * tr->K + m) * tr->Bl;
        int64_t *idx = tr->idxl + m * tr->Bl;
        for (int64_t i = 0; i < tr->Bl; i++) idx[i] = tr->perml[lk * Gl + first + i];
        jm_data_batch_share(&tr->ds, idx, tr->Bl, augment ? &aug : NULL, lseed, (uint64_t)tr->pos.it, first,
                            tr->xl + m * tr->Bl * tr->per, tr->yl + m * tr->Bl);
    }
    return 0;
}

/* Test hooks (tests/t_train.c, tests/t_guard.c): JEMC_TEST_INJECT_NAN=K poisons a
   parameter with NaN before iteration K (1-based) the first time it is reached, as
   a diverging run would; the divergence guard must recover.
   JEMC_TEST_INJECT_NAN_AFTER=K poisons it after iteration K's program has run: that
   iteration's loss and gradient stay finite, so only the parameter check keeps the
   NaN out of a checkpoint. */
static void jm_trainer_inject_nan(jm_trainer *tr, int64_t *when) {
    if (*when <= 0 || tr->pos.it + 1 != *when) return;
    /* JEMC_TEST_INJECT_RANK=R: only rank R of a job is poisoned (the others
       must roll back with it); JEMC_TEST_KILL_RANK=R: rank R is killed there */
    const char *only = getenv("JEMC_TEST_INJECT_RANK");
    if (only && atoi(only) != tr->rank) { *when = 0; return; }
    const char *kill_rank = getenv("JEMC_TEST_KILL_RANK");
    if (kill_rank && atoi(kill_rank) == tr->rank) { fflush(NULL); raise(SIGKILL); }
    const jm_table *t = tr->t;
    /* JEMC_TEST_INJECT_NAN_GLOBAL=NAME poisons that f32 global (say, a generator's
       parameter); the first f32 parameter otherwise */
    const char *name = getenv("JEMC_TEST_INJECT_NAN_GLOBAL");
    for (int g = 0; g < t->nglobals; g++)
        if (t->globals[g].t.dtype == JM_DT_F32 && (name ? strcmp(t->globals[g].t.name, name) == 0 : t->globals[g].kind == JM_GKIND_PARAM)) {
            *(float *)jm_rt_global(&tr->rt, g) = NAN;
            break;
        }
    *when = 0;
}

/* one training step: batch, learning rate, the program (train_step_ce while --pretrain lasts) */
static jm_train_next jm_trainer_step(jm_trainer *tr) {
    int64_t epoch = tr->pos.it / tr->ipe;
    if (jm_trainer_batch(tr, epoch) != 0) return jm_trainer_stop(tr, 1);
    for (int k = 0; k < tr->nlr; k++) jm_knob_put(&tr->rt, tr->lr_knob[k], jm_train_lr(&tr->o, &tr->pos, k, epoch));
    jm_trainer_inject_nan(tr, &tr->inject);
    int use_ce = tr->pos.it < tr->o.pretrain;
    int p = use_ce ? tr->p_ce : tr->p_main;
    const jm_tprogram *pr = tr->pr = &tr->t->programs[p];
    void **out = tr->out = use_ce ? tr->out_ce : tr->out_main;
    /* the inputs: x, and y when the program takes labels; x_lab and y_lab for a
       semi-supervised one (jm_trainer_inputs_ok) */
    const void *in1[4], **in = tr->K > 1 ? malloc(sizeof(void *) * (size_t)(pr->ninputs * tr->K + 4)) : in1;
    if (!in) { fprintf(stderr, "%s: out of memory\n", tr->who); return jm_trainer_stop(tr, 1); }
    int xi = jm_session_input(pr, "x"), yi = jm_session_input(pr, "y");
    for (int64_t m = 0; m < tr->K; m++) {
        in[m * pr->ninputs + xi] = tr->x + m * tr->B * tr->per;
        if (yi >= 0) in[m * pr->ninputs + yi] = tr->y + m * tr->B;
    }
    for (int64_t m = 0; m < tr->K && !use_ce && tr->ssl; m++) {
        in[m * pr->ninputs + tr->xl_in] = tr->xl + m * tr->Bl * tr->per;
        in[m * pr->ninputs + tr->yl_in] = tr->yl + m * tr->Bl;
    }
    int rc = jm_rt_run_shards(&tr->rt, p, tr->coll, (int)tr->K, in, out);
    if (in != in1) free((void *)in);
    if (rc != 0) { fprintf(stderr, "%s: %s failed: %s\n", tr->who, pr->name, tr->rt.err); return jm_trainer_stop(tr, 1); }
    tr->loss = jm_session_scalar(pr, out, "loss");
    tr->e_data = jm_session_scalar(pr, out, "e_data");
    tr->e_sample = jm_session_scalar(pr, out, "e_sample");
    for (int k = 0; k < tr->ngn; k++) {
        tr->gn_on[k] = jm_trainer_writes(pr, tr->gn[k]);
        tr->gn_val[k] = tr->gn_on[k] ? *(const float *)jm_rt_global_read(&tr->rt, tr->gn[k]) : 0;
    }
    jm_trainer_inject_nan(tr, &tr->inject_after);
    return JM_TRAIN_GO;
}

/* the iteration counts: its scalar outputs join the interval's means; --max-seconds */
static jm_train_next jm_trainer_tally(jm_trainer *tr) {
    const jm_tprogram *pr = tr->pr;
    tr->pos.it++;
    /* accumulate every scalar output and every gradient norm the program wrote */
    for (int i = 0; i < pr->noutputs && i < JM_TRAIN_MAXM; i++)
        if (jm_rt_desc_numel(&pr->outputs[i]) == 1) {
            double v = jm_session_scalar(pr, tr->out, pr->outputs[i].name);
            if (isfinite(v)) { tr->sum[i] += v; tr->cnt[i]++; }
        }
    for (int k = 0; k < tr->ngn; k++)
        if (tr->gn_on[k]) { tr->gn_sum[k] += tr->gn_val[k]; tr->gn_cnt[k]++; }
    tr->last_loss = tr->loss;
    tr->last_acc = jm_session_scalar(pr, tr->out, "acc");
    tr->now = jm_session_now();
    /* a time budget ends the run like its last iteration would */
    int over = tr->o.max_seconds > 0 && tr->now - tr->t_start >= tr->o.max_seconds;
    if (tr->coll && tr->o.max_seconds > 0) {
        /* every rank stops at the same iteration: when the first of them is over time */
        double v = over;
        char e[256];
        if (tr->coll->allreduce_f64(tr->coll, &v, 1, JM_COLL_MAX, e, sizeof e) != 0) { fprintf(stderr, "%s: %s\n", tr->who, e); return jm_trainer_stop(tr, 1); }
        over = v != 0;
    }
    if (over && tr->pos.it < tr->total) {
        fprintf(stderr, "%s%s: --max-seconds %g reached at iteration %" PRId64 "\n", tr->tty ? "\n" : "", tr->who, tr->o.max_seconds, tr->pos.it);
        tr->total = tr->pos.it;
    }
    return JM_TRAIN_GO;
}

static int jm_trainer_last(const jm_trainer *tr) { return tr->pos.it == tr->total; }

/* ------------------------------------------------------------------ reports and outputs */

/* The optimizers on a metrics line: each gradient norm's mean over the interval
   ("grad_norm" when the graph has one optimizer, "grad_norm.OPT" for each when
   it has several) and each learning rate as set now ("lr" for knob lr,
   "lr.NAME" for another, e.g. VERA's lr.glr and lr.post_lr). */
static void jm_trainer_report_optimizers(jm_trainer *tr, FILE *m) {
    for (int k = 0; k < tr->ngn; k++) {
        if (!tr->gn_cnt[k]) continue;
        const char *name = tr->t->globals[tr->gn[k]].t.name;
        int opt_len = (int)strlen(name) - 10;     /* "OPT.grad_norm" less ".grad_norm" */
        if (tr->ngn == 1) fprintf(m, ", \"grad_norm\": %.9g", tr->gn_sum[k] / tr->gn_cnt[k]);
        else fprintf(m, ", \"grad_norm.%.*s\": %.9g", opt_len, name, tr->gn_sum[k] / tr->gn_cnt[k]);
    }
    for (int k = 0; k < tr->nlr; k++) {
        const char *name = jm_knob_name(tr->t, tr->lr_knob[k]);
        if (strcmp(name, "lr") == 0) fprintf(m, ", \"lr\": %.9g", jm_knob_get(&tr->rt, tr->lr_knob[k]));
        else fprintf(m, ", \"lr.%s\": %.9g", name, jm_knob_get(&tr->rt, tr->lr_knob[k]));
    }
}

/* every --log-every iterations: the interval's means to metrics.jsonl (and a line
   to stderr without a progress bar); the progress bar */
static jm_train_next jm_trainer_report(jm_trainer *tr) {
    if (tr->rank > 0) return JM_TRAIN_GO;
    const jm_tprogram *pr = tr->pr;
    int64_t it = tr->pos.it;
    double now = tr->now, *sum = tr->sum;
    int *cnt = tr->cnt;
    FILE *m = tr->metrics;
    if (it % tr->o.log_every == 0 || jm_trainer_last(tr)) {
        fprintf(m, "{\"step\": %" PRId64 ", \"epoch\": %.4f", it, (double)it / (double)tr->ipe);
        for (int i = 0; i < pr->noutputs && i < JM_TRAIN_MAXM; i++)
            if (cnt[i]) fprintf(m, ", \"%s\": %.9g", pr->outputs[i].name, sum[i] / cnt[i]);
        jm_trainer_report_optimizers(tr, m);
        /* data parallelism: the time between the phases (the exchange), per iteration */
        if (tr->K * tr->nranks > 1 && it > tr->it_log)
            fprintf(m, ", \"exchange_ms\": %.4f", 1e3 * (tr->rt.dp_exchange_s - tr->exch_log) / (double)(it - tr->it_log));
        /* with overlap: the part of it spent waiting after the backward pass, and the buckets sent during it */
        if (tr->nranks > 1 && it > tr->it_log && tr->rt.dp_bucket_bytes > 0)
            fprintf(m, ", \"exchange_wait_ms\": %.4f, \"buckets_early\": %.2f", 1e3 * (tr->rt.dp_wait_s - tr->wait_log) / (double)(it - tr->it_log),
                    (double)(tr->rt.dp_buckets_early - tr->early_log) / (double)(it - tr->it_log));
        tr->exch_log = tr->rt.dp_exchange_s;
        tr->wait_log = tr->rt.dp_wait_s;
        tr->early_log = tr->rt.dp_buckets_early;
        fprintf(m, ", \"it_per_s\": %.4f, \"seconds\": %.3f}\n", (double)(it - tr->it_log) / (now - tr->t_log), now - tr->t_start);
        fflush(m);
        if (!tr->tty) {
            char acc_s[32] = "";
            int li = jm_session_output(pr, "loss");
            if (isfinite(tr->last_acc)) snprintf(acc_s, sizeof acc_s, " acc %.3f", tr->last_acc);
            fprintf(stderr, "  iteration %" PRId64 "/%" PRId64 " epoch %.2f loss %.4f%s %.2f it/s\n", it, tr->total, (double)it / (double)tr->ipe,
                    li >= 0 && li < JM_TRAIN_MAXM && cnt[li] ? sum[li] / cnt[li] : NAN, acc_s, (double)(it - tr->it_log) / (now - tr->t_log));
        }
        memset(tr->sum, 0, sizeof tr->sum);
        memset(tr->cnt, 0, sizeof tr->cnt);
        memset(tr->gn_sum, 0, sizeof tr->gn_sum);
        memset(tr->gn_cnt, 0, sizeof tr->gn_cnt);
        tr->t_log = now;
        tr->it_log = it;
    }
    if (tr->tty)
        jm_progress(stderr, it, tr->total, (it - 1) / tr->ipe, (double)it / (now - tr->t_start + 1e-9), tr->last_loss, tr->last_acc);
    return JM_TRAIN_GO;
}

/* --test: accuracy and loss at the end of each epoch and of the run. The
   evaluation leaves the random-number position where training left it: a run
   that ends mid-epoch (--iters, --max-seconds) evaluates, and resuming it must
   still give the iterations of the run straight through */
static jm_train_next jm_trainer_test(jm_trainer *tr) {
    int64_t it = tr->pos.it;
    if (!tr->test.n || (it % tr->ipe != 0 && !jm_trainer_last(tr)) || tr->rank > 0) return JM_TRAIN_GO;
    double acc, tl, te;
    uint32_t call = tr->rt.call;
    int rc = jm_train_evaluate(&tr->rt, &tr->test, &acc, &tl, &te, tr->who);
    tr->rt.call = call;
    if (rc != 0) return jm_trainer_stop(tr, 1);
    fprintf(tr->metrics, "{\"step\": %" PRId64 ", \"test_acc\": %.6f, \"test_loss\": %.6g}\n", it, acc, tl);
    fflush(tr->metrics);
    fprintf(stderr, "%s  epoch %.2f: test accuracy %.4f, loss %.4f\n", tr->tty ? "\n" : "", (double)it / (double)tr->ipe, acc, tl);
    return JM_TRAIN_GO;
}

/* A grid of 64 generator samples (a graph without a replay buffer but with
   `generate`: VERA), the latents keyed by the run's seed. Like --test it leaves
   the run as it was: the random-number position and, when `generate` writes
   state (batch-norm statistics), the state. */
static void jm_save_generator_grid(jm_trainer *tr, const char *path) {
    jm_gen_prog g;
    if (jm_table_find_program(tr->t, "generate") < 0 || jm_sample_gen_open(tr->t, 0, 0, &g, tr->who) != 0) return;
    int64_t per = g.C * g.H * g.W;
    float *x = malloc(sizeof(float) * (size_t)(64 * per));
    unsigned char *keep = g.pr->nwrites ? malloc((size_t)tr->t->state_bytes + 1) : NULL;
    uint32_t call = tr->rt.call;
    char err[1024];
    if (!x || (g.pr->nwrites && (!keep || jm_rt_state_get(&tr->rt, keep) != 0))) fprintf(stderr, "%s: no generator samples (out of memory)\n", tr->who);
    else {
        jm_gen_draw d = { 64, NULL, 0, 0, NAN, tr->rt.seed };
        if (jm_sample_gen_draw(&tr->rt, &g, &d, x, tr->who) == 0
            && jm_image_grid_png(path, x, 64, (int)g.C, (int)g.H, (int)g.W, 8, -1, 1, 2, err, sizeof err) != 0)
            fprintf(stderr, "%s: %s\n", tr->who, err);
        if (keep && jm_rt_state_set(&tr->rt, keep) != 0) fprintf(stderr, "%s: %s\n", tr->who, tr->rt.err);
    }
    tr->rt.call = call;
    free(x);
    free(keep);
}

/* OUT/samples/buffer_N.png (the replay buffer) or generator_N.png (a VERA
   generator) every --sample-every iterations and at the end (not while pretraining) */
static jm_train_next jm_trainer_samples(jm_trainer *tr) {
    int64_t it = tr->pos.it;
    if (tr->rank == 0 && tr->o.sample_every > 0 && (it % tr->o.sample_every == 0 || jm_trainer_last(tr)) && it > tr->o.pretrain) {
        char path[1200];
        if (jm_find_global(tr->t, "replay") >= 0) {
            snprintf(path, sizeof path, "%s/buffer_%06" PRId64 ".png", tr->sdir, it);
            jm_save_buffer_grid(&tr->rt, path, tr->who);
        } else {
            snprintf(path, sizeof path, "%s/generator_%06" PRId64 ".png", tr->sdir, it);
            jm_save_generator_grid(tr, path);
        }
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
    /* one checkpoint per job, by rank 0; the others wait for it to be complete */
    if (tr->rank == 0 && jm_save_ckpt(&tr->rt, path, &tr->pos, tr->lr_knob, tr->nlr, tr->optmeta, tr->noptmeta, tr->has_tf ? &tr->tf : NULL, tr->who) != 0)
        return jm_trainer_stop(tr, 1);
    char e[256];
    if (tr->coll && tr->coll->barrier(tr->coll, e, sizeof e) != 0) { fprintf(stderr, "%s: %s\n", tr->who, e); return jm_trainer_stop(tr, 1); }
    return JM_TRAIN_GO;
}

/* ------------------------------------------------------------------ the end */

static void jm_trainer_finish(jm_trainer *tr) {
    /* the replicas end as they started: identical (checked, not assumed) */
    if (jm_trainer_same_state(tr, "at the end (a jemc bug: please report it)") != 0) return;
    tr->rc = 0;
    if (tr->rank > 0) return;
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
    free(tr->xl); free(tr->yl); free(tr->idxl); free(tr->perml); free(tr->lab);
    jm_table_tf_free(&tr->tf);
    if (tr->p_main >= 0) jm_session_free_outputs(&tr->t->programs[tr->p_main], tr->out_main);
    if (tr->p_ce >= 0) jm_session_free_outputs(&tr->t->programs[tr->p_ce], tr->out_ce);
    if (tr->rt_open) jm_rt_close(&tr->rt);
    jm_data_free(&tr->ds);
    jm_data_free(&tr->test);
    for (int r = 0; r < JM_TRAIN_NRUN; r++) free(tr->restored[r]);
    for (int i = 0; i < 2 * JM_TRAIN_NRUN; i++) free(tr->optmeta[i]);
    jm_rt_dp_free();
    if (tr->coll) {
        /* a rank that fails ends the whole job now (its peers would wait in the
           next collective forever); a finished one leaves with the others */
        if (tr->rc != 0) {
            fprintf(stderr, "%s: ending the job (rank %d of %d failed)\n", tr->who, tr->rank, tr->nranks);
            fflush(stderr);
            tr->coll->abort(tr->coll, tr->rc);
        }
        jm_dist_close(tr->coll);
        tr->coll = NULL;
        jm_dist_close(tr->mpi);       /* under NCCL's: closed after it */
        tr->mpi = NULL;
    }
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
    if (jm_trainer_parse_options(&tr, argc, argv) != JM_TRAIN_GO) return jm_trainer_close(&tr);
    if (jm_trainer_join(&tr) != 0) return jm_trainer_close(&tr);
    if (jm_trainer_open(&tr) != JM_TRAIN_GO || jm_trainer_same_state(&tr, "at the start (another --seed, or --resume files that differ?)") != 0) {
        if (tr.rc == 0) tr.rc = 1;
        return jm_trainer_close(&tr);
    }
    const int nphases = (int)(sizeof jm_trainer_iteration / sizeof jm_trainer_iteration[0]);
    jm_train_next next = JM_TRAIN_GO;
    while (tr.pos.it < tr.total && next != JM_TRAIN_STOP) {
        next = JM_TRAIN_GO;
        for (int i = 0; i < nphases && next == JM_TRAIN_GO; i++) next = jm_trainer_iteration[i](&tr);
    }
    if (next != JM_TRAIN_STOP) jm_trainer_finish(&tr);
    return jm_trainer_close(&tr);
}
