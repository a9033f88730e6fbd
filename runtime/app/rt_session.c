/* rt_session.c — see rt_session.h. */
#include "rt_session.h"
#include "data_table.h"
#include "engine/rt_knobs.h"
#include "engine/rt_state.h"
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

double jm_session_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* The table settings: this command line's, and those of the run in the checkpoint
   jm_session_open loaded (one checkpoint a process: the executable's commands open
   one session each). */
jm_session_tabopts jm_session_tab_cli;
static struct {
    char *label_column, *label_base, *format;   /* the run's options ("" or NULL: default) */
    jm_table_tf tf;                             /* the run's transform */
    int has_tf;
    char *data;                                 /* the run's --data, when it split it */
    char *labels;                               /* the run's --labels file, if it had one */
    double test_frac, val_frac;
    uint64_t seed;
} jm_session_run;

static const char *jm_session_meta(const void *f, const char *key) { return jm_st_meta_get(f, key); }

static char *jm_session_dup(const jm_st_file *f, const char *key) {
    const char *v = jm_st_meta_get(f, key);
    return v && *v ? strdup(v) : NULL;
}

/* what the checkpoint says about its run's tables; -1 after a message when malformed */
static int jm_session_read_run(const jm_st_file *f, const char *ckpt, const char *who) {
    char err[512];
    jm_session_run.label_column = jm_session_dup(f, "jemc.train.option.label-column");
    jm_session_run.label_base = jm_session_dup(f, "jemc.train.option.label-base");
    jm_session_run.format = jm_session_dup(f, "jemc.train.option.format");
    jm_session_run.labels = jm_session_dup(f, "jemc.train.option.labels");
    int r = jm_table_tf_parse(jm_session_meta, f, &jm_session_run.tf, err, sizeof err);
    if (r < 0) { fprintf(stderr, "%s: %s: %s\n", who, ckpt, err); return -1; }
    jm_session_run.has_tf = r;
    const char *ts = jm_st_meta_get(f, "jemc.train.option.test-split"), *vs = jm_st_meta_get(f, "jemc.train.option.val-split");
    const char *ds = jm_st_meta_get(f, "jemc.train.option.data"), *sd = jm_st_meta_get(f, "jemc.train.option.data-seed");
    jm_session_run.test_frac = ts ? strtod(ts, NULL) : 0;
    jm_session_run.val_frac = vs ? strtod(vs, NULL) : 0;
    jm_session_run.seed = sd ? strtoull(sd, NULL, 10) : 1;
    if (ds && *ds && (jm_session_run.test_frac > 0 || jm_session_run.val_frac > 0)) jm_session_run.data = strdup(ds);
    return 0;
}

int jm_session_has_transform(void) { return jm_session_run.has_tf; }

int jm_session_data_opts(const char *labels, jm_data_opts *o, const char *who) {
    *o = jm_data_defaults();
    o->labels = labels;
    /* the run's label column is not this data's when a labels file is given here */
    const char *lc = jm_session_tab_cli.label_column ? jm_session_tab_cli.label_column : labels ? NULL : jm_session_run.label_column;
    const char *lb = jm_session_tab_cli.label_base ? jm_session_tab_cli.label_base : jm_session_run.label_base;
    const char *fm = jm_session_tab_cli.format ? jm_session_tab_cli.format : jm_session_run.format;
    if (lc && *lc) o->label_column = lc;
    if (lb && *lb) {
        char *end;
        long long v = strtoll(lb, &end, 10);
        if (*end || v < -1000000000LL || v > 1000000000LL) {
            fprintf(stderr, "%s: --label-base takes an integer (labels count from it), got '%s'\n", who, lb);
            return -1;
        }
        o->label_base = v;
    }
    if (fm && *fm) {
        static const struct { const char *name; jm_data_format f; } names[] = {
            { "idx", JM_DATA_IDX }, { "cifar10", JM_DATA_CIFAR10 }, { "cifar100", JM_DATA_CIFAR100 }, { "csv", JM_DATA_CSV },
            { "txt", JM_DATA_TEXT }, { "text", JM_DATA_TEXT },
        };
        int k = 0, n = (int)(sizeof names / sizeof names[0]);
        while (k < n && strcmp(names[k].name, fm) != 0) k++;
        if (k == n) {
            fprintf(stderr, "%s: --format takes idx, cifar10, cifar100, csv or txt, got '%s'\n", who, fm);
            return -1;
        }
        o->format = names[k].f;
    }
    return 0;
}

/* the same file? (by name, then by what realpath makes of both) */
static int jm_session_same_file(const char *a, const char *b) {
    if (strcmp(a, b) == 0) return 1;
    char *x = realpath(a, NULL), *y = realpath(b, NULL);
    int same = x && y && strcmp(x, y) == 0;
    free(x);
    free(y);
    return same;
}

int jm_session_open(jm_rt *rt, const jm_table *t, jm_kernel_fn *kernels, const char *ckpt, uint64_t seed, int seed_given,
                    const jm_arg_list *sets, int threads, jm_st_file *meta, const char *who) {
    char err[1024];
    if (jm_rt_open(rt, t, kernels, seed) != 0) { fprintf(stderr, "%s: %s\n", who, rt->err); return -1; }
    rt->threads = threads;
    if (ckpt) {
        jm_st_file f;
        memset(&f, 0, sizeof f);
        if (jm_state_load(rt, ckpt, seed_given, &f, err, sizeof err) != 0) {
            fprintf(stderr, "%s: %s\n", who, err);
            jm_rt_close(rt);
            return -1;
        }
        /* Parameters and state bind by name with exact shapes (jm_state_load),
           so a checkpoint of an edited graph (say, with one more program) still
           loads; a different graph hash is only noted. */
        const char *h = jm_st_meta_get(&f, "jemc.graph_hash");
        char want[32];
        snprintf(want, sizeof want, "%016llx", (unsigned long long)t->graph_hash);
        if (h && strcmp(h, want) != 0) {
            const char *g = jm_st_meta_get(&f, "jemc.graph");
            fprintf(stderr, "%s: note: %s was written by a build of %s with graph hash %s (this one: %s); parameters and state bind by name\n",
                    who, ckpt, g ? g : "another graph", h, want);
        }
        if (jm_session_read_run(&f, ckpt, who) != 0) {
            jm_st_free(&f);
            jm_rt_close(rt);
            return -1;
        }
        if (meta) *meta = f;
        else jm_st_free(&f);
    }
    for (int i = 0; sets && i < sets->n; i++)
        if (jm_knob_assign(rt, sets->v[i], err, sizeof err) != 0) {
            fprintf(stderr, "%s: %s\n", who, err);
            if (meta && ckpt) jm_st_free(meta);
            jm_rt_close(rt);
            return -1;
        }
    return 0;
}

int jm_session_input(const jm_tprogram *pr, const char *name) {
    for (int i = 0; i < pr->ninputs; i++) if (strcmp(pr->inputs[i].name, name) == 0) return i;
    return -1;
}

int jm_session_output(const jm_tprogram *pr, const char *name) {
    for (int i = 0; i < pr->noutputs; i++) if (strcmp(pr->outputs[i].name, name) == 0) return i;
    return -1;
}

int jm_session_program(const jm_table *t, const char *name, int need, const char *who) {
    int p = jm_table_find_program(t, name);
    if (p < 0 && need) {
        fprintf(stderr, "%s: %s has no program '%s'; it has:", who, t->graph, name);
        for (int i = 0; i < t->nprograms; i++) fprintf(stderr, " %s", t->programs[i].name);
        fputc('\n', stderr);
    }
    return p;
}

int jm_session_data_raw(const char *path, const char *labels, const char *split, jm_dataset *ds, const char *who) {
    char file[1024], err[1024];
    memset(ds, 0, sizeof *ds);
    if (jm_data_resolve(path, split, file, sizeof file) != 0) {
        fprintf(stderr, "%s: %s: no %s data there (looked for %s)\n", who, path, split, file);
        return -1;
    }
    jm_data_opts o;
    if (jm_session_data_opts(labels, &o, who) != 0) return -1;
    if (jm_data_load(file, &o, ds, err, sizeof err) != 0) {
        fprintf(stderr, "%s: %s\n", who, err);
        /* a table read with its last column as the label, where the run's labels came
           from a file of their own: say so, the message above alone misleads */
        if (!labels && jm_session_run.labels && !jm_session_tab_cli.label_column && (o.format == JM_DATA_CSV || o.format == JM_DATA_TEXT ||
                                                                                      o.format == JM_DATA_AUTO))
            fprintf(stderr, "%s: the run read its labels from a file of their own (--labels %s): give this data's labels file with --labels\n",
                    who, jm_session_run.labels);
        return -1;
    }
    return 0;
}

int jm_session_data(const char *path, const char *labels, const char *split, jm_dataset *ds, const char *who) {
    if (jm_session_data_raw(path, labels, split, ds, who) != 0) return -1;
    int table = ds->format == JM_DATA_CSV || ds->format == JM_DATA_TEXT;
    char err[1024];
    /* the run's held-out records of the file it split: the same permutation as train drew */
    int same = table && jm_session_run.data && strcmp(split, "test") == 0 && jm_session_same_file(path, jm_session_run.data);
    if (table && jm_session_run.data && strcmp(split, "test") == 0 && !same) {
        /* the file is not the run's by path; if it has the run's name, it may be the
           same table reached another way, whose training records would be scored too */
        const char *a = strrchr(path, '/'), *b = strrchr(jm_session_run.data, '/');
        if (strcmp(a ? a + 1 : path, b ? b + 1 : jm_session_run.data) == 0)
            fprintf(stderr, "%s: warning: %s has the name of the file the run split (%s) but is not it by path: scoring all of its "
                            "records; if it is the same table, its training records are among them (give the run's path)\n",
                    who, path, jm_session_run.data);
    }
    if (same && jm_session_run.tf.split_records > 0 && ds->n != jm_session_run.tf.split_records) {
        /* another permutation would put training records in the "test" split */
        fprintf(stderr, "%s: %s: the run split this file when it had %lld records; it has %lld now, so the run's held-out "
                        "records cannot be drawn again (score another file, or train again)\n",
                who, path, (long long)jm_session_run.tf.split_records, (long long)ds->n);
        jm_data_free(ds);
        return -1;
    }
    if (same) {
        int64_t n = ds->n, *tr = malloc(sizeof(int64_t) * (size_t)(3 * n + 1)), ntr = 0, nv = 0, nt = 0;
        jm_dataset part;
        int rc = tr ? jm_table_split(n, jm_session_run.seed, jm_session_run.test_frac, jm_session_run.val_frac, tr, &ntr, tr + n, &nv,
                                     tr + 2 * n, &nt, err, sizeof err)
                    : -1;
        if (!tr) snprintf(err, sizeof err, "out of memory");
        const char *which = nt > 0 ? "test" : "validation";
        if (rc == 0 && jm_data_subset(ds, nt > 0 ? tr + 2 * n : tr + n, nt > 0 ? nt : nv, &part) != 0) {
            snprintf(err, sizeof err, "out of memory");
            rc = -1;
        }
        free(tr);
        if (rc != 0) {
            fprintf(stderr, "%s: %s: %s\n", who, path, err);
            jm_data_free(ds);
            return -1;
        }
        fprintf(stderr, "%s: %s: scoring the run's %s split, %lld of its %lld records (--test-split %g, --val-split %g, --data-seed %llu)\n",
                who, path, which, (long long)part.n, (long long)n, jm_session_run.test_frac, jm_session_run.val_frac,
                (unsigned long long)jm_session_run.seed);
        jm_data_free(ds);
        *ds = part;
    }
    if (table && jm_session_run.has_tf && jm_table_apply(&jm_session_run.tf, ds, err, sizeof err) != 0) {
        fprintf(stderr, "%s: %s\n", who, err);
        jm_data_free(ds);
        return -1;
    }
    return 0;
}

int jm_session_fits(const jm_tprogram *pr, const jm_dataset *ds, const char *who) {
    int xi = jm_session_input(pr, "x"), yi = jm_session_input(pr, "y");
    if (xi < 0) { fprintf(stderr, "%s: program %s has no input 'x'\n", who, pr->name); return -1; }
    const jm_tdesc *x = &pr->inputs[xi];
    int64_t per = 1;
    for (int k = 1; k < x->rank; k++) per *= x->dim[k];
    char tb[160];
    jm_desc_str(x, tb, sizeof tb);
    if (x->dtype != JM_DT_F32 || x->rank < 2 || per != (int64_t)ds->c * ds->h * ds->w) {
        fprintf(stderr, "%s: %s holds %dx%dx%d records, but program %s takes x: %s\n", who, ds->path, ds->c, ds->h, ds->w, pr->name, tb);
        return -1;
    }
    if (yi >= 0) {
        const jm_tdesc *y = &pr->inputs[yi];
        if (y->dtype != JM_DT_I64 || y->rank != 1 || y->dim[0] != x->dim[0]) {
            jm_desc_str(y, tb, sizeof tb);
            fprintf(stderr, "%s: program %s takes y: %s; labels must be i64[batch]\n", who, pr->name, tb);
            return -1;
        }
    }
    return 0;
}

int jm_session_buf_alloc(jm_session_buf *b, int64_t B, int64_t per) {
    b->B = B;
    b->per = per;
    b->x = malloc(sizeof(float) * (size_t)(B * per));
    b->y = malloc(sizeof(int64_t) * (size_t)B);
    b->idx = malloc(sizeof(int64_t) * (size_t)B);
    if (b->x && b->y && b->idx) return 0;
    jm_session_buf_free(b);
    return -1;
}

void jm_session_buf_free(jm_session_buf *b) {
    free(b->x);
    free(b->y);
    free(b->idx);
    b->x = NULL;
    b->y = b->idx = NULL;
}

int64_t jm_session_batch(const jm_dataset *ds, int64_t b0, jm_session_buf *b) {
    int64_t real = ds->n - b0 < b->B ? ds->n - b0 : b->B;
    for (int64_t i = 0; i < b->B; i++) b->idx[i] = b0 + (i < real ? i : 0);
    jm_data_batch(ds, b->idx, b->B, NULL, 0, 0, b->x, b->y);
    return real;
}

double jm_session_scalar(const jm_tprogram *pr, void *const *out, const char *name) {
    int i = jm_session_output(pr, name);
    if (i < 0 || jm_rt_desc_numel(&pr->outputs[i]) != 1) return NAN;
    switch (pr->outputs[i].dtype) {
    case JM_DT_F32: return *(const float *)out[i];
    case JM_DT_F64: return *(const double *)out[i];
    case JM_DT_I64: return (double)*(const int64_t *)out[i];
    default: return NAN;
    }
}

void **jm_session_outputs(const jm_tprogram *pr) {
    void **out = calloc((size_t)pr->noutputs + 1, sizeof(void *));
    for (int i = 0; out && i < pr->noutputs; i++) {
        size_t bytes = (size_t)jm_rt_desc_numel(&pr->outputs[i]) * jm_rt_dtype_size(pr->outputs[i].dtype);
        out[i] = calloc(1, bytes ? bytes : 1);
    }
    return out;
}

void jm_session_free_outputs(const jm_tprogram *pr, void **out) {
    if (!out) return;
    for (int i = 0; i < pr->noutputs; i++) free(out[i]);
    free(out);
}
