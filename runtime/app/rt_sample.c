/* rt_sample.c — `EXE sample`: SGLD chains to PNG grids, a GIF and a JSON summary (see rt_sample.h). */
#include "rt_sample.h"
#include "data.h"
#include "image.h"
#include "engine/philox.h"
#include "plot.h"
#include "rt_args.h"
#include "engine/rt_knobs.h"
#include "rt_session.h"
#include "rt_train.h"
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const char *jm_sample_usage =
    "usage: EXE sample [--ckpt CKPT] [options]\n\n"
    "Runs SGLD chains with the graph's `sample` program (or `sample_cond` for --class) and writes a\n"
    "PNG grid (--out), optionally a GIF of the chains (--gif). Chains start from uniform noise or,\n"
    "with --from buffer, from the checkpoint's replay buffer. Prints the mean energy of the samples\n"
    "and of the noise they started from.\n\n"
    "--from generator draws from a VERA generator instead: h ~ N(0, I) (keyed by --seed) through the\n"
    "graph's `generate` program (G(h) + sigma * eps). --mala-steps N refines them by N MALA steps on\n"
    "(h, e) with `mala_latent`, the step size (--mala-eta, default 1/noise_dim) adapted toward 57%\n"
    "acceptance after every step; it prints the mean acceptance and the final step size. --class C\n"
    "(or all) with --mala-steps N gives class-conditional samples with `mala_latent_cond`.\n\n"
    "--at 1,5,10,20,50 snapshots the same --n chains (default 8) after each listed number of steps:\n"
    "a captioned grid row per count, its mean energy printed, in --json and drawn by --plot. A row\n"
    "of 0 steps shows the starting points; long-run chains are e.g. --from buffer --at 0,100,1000.\n\n"
    "--program NAME runs another sampler program of the graph (x: f32[B,C,H,W] [, y: i64[B] with\n"
    "--class] -> samples, its steps the run-time setting sgld_steps), e.g. the sample_pyld, sample_mala\n"
    "or sample_hmc of graphs/jem_mnist.graph. Every other f32 output with one value per chain (or one\n"
    "value) is averaged over the chains and the runs (a MALA program's `accepts`: accepted moves per\n"
    "chain), printed and written to --json under \"outputs\"; so is the time per step of a batch of chains.";

/* How many values of output o a run reports per chain: B (one per chain),
   1 (one value), or 0 (not reported: the samples, a non-f32 output, any other
   shape). */
static int64_t jm_sample_per_chain(const jm_tprogram *pr, int o, int so, int64_t B) {
    const jm_tdesc *d = &pr->outputs[o];
    if (o == so || d->dtype != JM_DT_F32) return 0;
    int64_t n = 1;
    for (int r = 0; r < d->rank; r++) n *= d->dim[r];
    return n == 1 ? 1 : (d->rank == 1 && n == B) ? B : 0;
}

/* Parses --at: step counts >= 0, strictly increasing. Returns how many, or -1. */
static int jm_sample_parse_at(const char *s, int64_t *at, int cap, const char *who) {
    int n = 0;
    const char *q = s;
    while (*q) {
        char *end;
        long long v = strtoll(q, &end, 10);
        if (end == q || (*end && *end != ',') || v < 0 || v > 10000000 || (n && v <= at[n - 1]) || n == cap) {
            fprintf(stderr, "%s: --at takes at most %d increasing step counts separated by commas (e.g. 1,5,10,20,50), got '%s'\n", who, cap, s);
            return -1;
        }
        at[n++] = v;
        q = *end ? end + 1 : end;
    }
    if (!n) { fprintf(stderr, "%s: --at needs at least one step count\n", who); return -1; }
    return n;
}

double jm_sample_mean_energy(jm_rt *rt, const float *x, int64_t n, int64_t per) {
    int p = jm_table_find_program(rt->t, "energy");
    if (p < 0) return NAN;
    const jm_tprogram *pr = &rt->t->programs[p];
    int64_t B = pr->inputs[0].dim[0];
    void **out = jm_session_outputs(pr);
    float *buf = malloc(sizeof(float) * (size_t)(B * per));
    double s = 0;
    int64_t cnt = 0;
    for (int64_t b0 = 0; b0 < n && buf && out; b0 += B) {
        for (int64_t i = 0; i < B; i++) memcpy(buf + i * per, x + ((b0 + i < n ? b0 + i : b0)) * per, sizeof(float) * (size_t)per);
        const void *in[1] = { buf };
        if (jm_rt_run(rt, p, in, out) != 0) break;
        for (int64_t i = 0; i < B && b0 + i < n; i++) { s += ((const float *)out[0])[i]; cnt++; }
    }
    free(buf);
    jm_session_free_outputs(pr, out);
    return cnt ? s / (double)cnt : NAN;
}

/* Row captions for --class all: "c name" from the lines of `path` (blank lines
   skipped), else "class c". -1 after printing why (unreadable file, too few names). */
static int jm_sample_class_names(const char *path, char **labels, int classes, const char *who) {
    FILE *f = path ? fopen(path, "r") : NULL;
    if (path && !f) { fprintf(stderr, "%s: cannot read --class-names %s\n", who, path); return -1; }
    char line[256];
    int c = 0;
    while (f && c < classes && fgets(line, sizeof line, f)) {
        line[strcspn(line, "\r\n")] = 0;
        if (!line[0]) continue;
        labels[c] = malloc(300);
        snprintf(labels[c], 300, "%d %s", c, line);
        c++;
    }
    if (f) fclose(f);
    if (path && c < classes) {
        fprintf(stderr, "%s: %s names %d classes; the model has %d\n", who, path, c, classes);
        for (int k = 0; k < c; k++) free(labels[k]);
        return -1;
    }
    for (; c < classes; c++) { labels[c] = malloc(24); snprintf(labels[c], 24, "class %d", c); }
    return 0;
}

/* JSON has no NaN: a graph without an `energy` program gives null */
static void jm_sample_json_num(FILE *f, double v) {
    if (isfinite(v)) fprintf(f, "%.6g", v);
    else fprintf(f, "null");
}

/* mean energy against the SGLD step count of the --at snapshots */
static int jm_sample_plot(const char *png, const int64_t *at, const double *e, int nat, const char *from, char *err, size_t errlen) {
    double xs[64];
    for (int r = 0; r < nat; r++) xs[r] = (double)at[r];
    char title[96];
    snprintf(title, sizeof title, "Mean energy of the chains (from %s)", from);
    jm_series s = { "mean E(x)", xs, e, nat };
    jm_plot_opts o = { title, "SGLD steps", "energy", 0, 0, 0 };
    return jm_plot_lines(png, &o, &s, 1, err, errlen);
}

/* `sample --from generator`: its options */
typedef struct {
    const char *ckpt, *out, *cls, *json, *names;
    int64_t n, seed, threads, nrow, scale, mala_steps;
    double mala_eta;             /* <= 0: 1/noise_dim */
    const jm_arg_list *sets;
} jm_gen_cmd;

/* --class: -1 none, -2 all, else the class; -3 after a message */
static int64_t jm_sample_class(const char *cls, const char *who) {
    if (!cls) return -1;
    if (strcmp(cls, "all") == 0) return -2;
    char *end;
    int64_t c = strtoll(cls, &end, 10);
    if (!*cls || *end || c < 0) { fprintf(stderr, "%s: --class takes a class number or 'all', got '%s'\n", who, cls); return -3; }
    return c;
}

/* the model's classes: the width of `logits` (10 without that program) */
/* the number of classes: the width of the `logits` program's output; -1
   without that program (a class count guessed would give onehot labels the
   model does not have) */
static int jm_sample_classes(const jm_table *t) {
    int pe = jm_table_find_program(t, "logits");
    return pe >= 0 && t->programs[pe].noutputs > 0 && t->programs[pe].outputs[0].rank == 2 ? (int)t->programs[pe].outputs[0].dim[1] : -1;
}

/* the fraction of the n images x that the `logits` program classifies as
   their class y (NAN without that program): do class-conditional samples
   look like their class to the model? */
static double jm_sample_class_match(jm_rt *rt, const float *x, const int64_t *y, int64_t n, int64_t per) {
    int p = jm_table_find_program(rt->t, "logits");
    if (p < 0) return NAN;
    const jm_tprogram *pr = &rt->t->programs[p];
    if (pr->ninputs != 1 || pr->noutputs < 1 || pr->outputs[0].rank != 2 || jm_rt_desc_numel(&pr->inputs[0]) / pr->inputs[0].dim[0] != per)
        return NAN;
    int64_t B = pr->inputs[0].dim[0], K = pr->outputs[0].dim[1], right = 0, seen = 0;
    void **out = jm_session_outputs(pr);
    float *buf = malloc(sizeof(float) * (size_t)(B * per));
    for (int64_t b0 = 0; b0 < n && buf && out; b0 += B) {
        for (int64_t i = 0; i < B; i++) memcpy(buf + i * per, x + (b0 + i < n ? b0 + i : b0) * per, sizeof(float) * (size_t)per);
        const void *in[1] = { buf };
        if (jm_rt_run(rt, p, in, out) != 0) break;
        const float *lg = out[0];
        for (int64_t i = 0; i < B && b0 + i < n; i++, seen++) {
            int64_t best = 0;
            for (int64_t k = 1; k < K; k++) if (lg[i * K + k] > lg[i * K + best]) best = k;
            right += best == y[b0 + i];
        }
    }
    free(buf);
    jm_session_free_outputs(pr, out);
    return seen == n && n > 0 ? (double)right / (double)n : NAN;
}

static int jm_sample_generator(const jm_table *t, jm_kernel_fn *kernels, const jm_gen_cmd *o, const char *who) {
    char err[1024];
    int64_t c_only = jm_sample_class(o->cls, who);
    if (c_only == -3) return 2;
    int all = c_only == -2, cond = c_only != -1;
    if (cond && o->mala_steps == 0) {
        fprintf(stderr, "%s: --class with --from generator: class-conditional samples come from MALA toward the class (mala_latent_cond); "
                        "give --mala-steps N\n", who);
        return 2;
    }
    jm_gen_prog g;
    if (jm_sample_gen_open(t, o->mala_steps > 0, cond, &g, who) != 0) return 2;
    int classes = cond ? jm_sample_classes(t) : 0;
    if (classes < 0) { fprintf(stderr, "%s: --class needs the graph's `logits` program (f32[batch, classes]) to know the classes\n", who); return 2; }
    if (c_only >= classes) { fprintf(stderr, "%s: --class %lld: the model has classes 0..%d\n", who, (long long)c_only, classes - 1); return 2; }
    jm_rt rt;
    if (jm_session_open(&rt, t, kernels, o->ckpt, (uint64_t)o->seed, 1, o->sets, (int)o->threads, NULL, who) != 0) return 1;
    int64_t total = all ? o->n * classes : o->n, per = g.C * g.H * g.W;
    int rc = 1;
    char **labels = all ? calloc((size_t)classes, sizeof(char *)) : NULL;
    float *x = malloc(sizeof(float) * (size_t)(total * per));
    int64_t *ys = cond ? malloc(sizeof(int64_t) * (size_t)total) : NULL;
    if (!x || (cond && !ys) || (all && !labels)) { fprintf(stderr, "%s: out of memory\n", who); goto done; }
    if (all && jm_sample_class_names(o->names, labels, classes, who) != 0) { free(labels); labels = NULL; goto done; }
    if (o->names && !all) fprintf(stderr, "%s: note: --class-names only captions the rows of --class all\n", who);
    for (int64_t i = 0; ys && i < total; i++) ys[i] = all ? i / o->n : c_only;
    double eta0 = o->mala_eta > 0 ? o->mala_eta : 1.0 / (double)g.D;
    jm_gen_draw d = { total, ys, o->mala_steps, eta0, NAN, (uint64_t)o->seed };
    if (jm_sample_gen_draw(&rt, &g, &d, x, who) != 0) goto done;
    int cols = all ? (int)o->n : (int)o->nrow;
    int r = all ? jm_image_grid_png_labeled(o->out, x, (int)total, (int)g.C, (int)g.H, (int)g.W, cols, -1, 1, (int)o->scale,
                                            (const char *const *)labels, classes, err, sizeof err)
                : jm_image_grid_png(o->out, x, (int)total, (int)g.C, (int)g.H, (int)g.W, cols, -1, 1, (int)o->scale, err, sizeof err);
    if (r != 0) { fprintf(stderr, "%s: %s\n", who, err); goto done; }
    double es = jm_sample_mean_energy(&rt, x, total, per);
    printf("%s: %" PRId64 " samples from the generator%s -> %s\n", who, total, o->mala_steps ? " refined by MALA" : "", o->out);
    if (o->mala_steps)
        printf("MALA: %" PRId64 " steps, mean acceptance %.4f, step size %.6g -> %.6g\n", o->mala_steps, d.accept, eta0, d.eta);
    if (isfinite(es)) printf("mean energy: samples %.4f\n", es);
    double match = cond ? jm_sample_class_match(&rt, x, ys, total, per) : NAN;
    if (isfinite(match)) printf("the model classifies %.1f%% of them as their class\n", 100 * match);
    if (o->json) {
        FILE *jf = fopen(o->json, "w");
        if (!jf) { fprintf(stderr, "%s: cannot write %s\n", who, o->json); goto done; }
        fprintf(jf, "{\"samples\": %" PRId64 ", \"from\": \"generator\", \"mala_steps\": %" PRId64 ", \"class\": ", total, o->mala_steps);
        if (o->cls) fprintf(jf, "\"%s\"", o->cls);
        else fprintf(jf, "null");
        fprintf(jf, ", \"grid\": \"%s\", \"energy\": ", o->out);
        jm_sample_json_num(jf, es);
        fprintf(jf, ", \"accept\": ");
        jm_sample_json_num(jf, d.accept);
        fprintf(jf, ", \"eta_start\": ");
        jm_sample_json_num(jf, o->mala_steps ? eta0 : NAN);
        fprintf(jf, ", \"eta\": ");
        jm_sample_json_num(jf, o->mala_steps ? d.eta : NAN);
        fprintf(jf, ", \"class_match\": ");
        jm_sample_json_num(jf, match);
        fprintf(jf, "}\n");
        if (fclose(jf) != 0) { fprintf(stderr, "%s: cannot write %s\n", who, o->json); goto done; }
    }
    rc = 0;
done:
    for (int c = 0; labels && c < classes; c++) free(labels[c]);
    free(labels);
    free(x);
    free(ys);
    jm_rt_close(&rt);
    return rc;
}

int jm_sample_main(const jm_table *t, jm_kernel_fn *kernels, int argc, char **argv, const char *exe) {
    char who[256], err[1024];
    snprintf(who, sizeof who, "%s sample", exe);
    const char *ckpt = NULL, *out = "samples.png", *gif = NULL, *from = "noise", *cls = NULL, *at_s = NULL, *json = NULL, *plot = NULL, *names = NULL, *prog = NULL;
    int64_t n = -1, steps = -1, seed = 0, threads = 0, gif_every = 5, nrow = 8, scale = 2, mala_steps = -1;
    double mala_eta = -1;
    jm_arg_list sets;
    memset(&sets, 0, sizeof sets);
    const jm_arg args[] = {
        { "--ckpt", JM_ARG_STR, &ckpt, "CKPT", "checkpoint (default: the declared initialisers)", 0, 0 },
        { "--out", JM_ARG_STR, &out, "FILE.png", "the grid (default samples.png)", 0, 0 },
        { "--n", JM_ARG_INT, &n, "N", "samples (per class with --class all, per row with --at; default 64, 8 with --at)", 1, 100000 },
        { "--steps", JM_ARG_INT, &steps, "K", "SGLD steps (default: the graph's sgld_steps)", 0, 1e7 },
        { "--program", JM_ARG_STR, &prog, "NAME", "the sampler program (default sample, or sample_cond with --class)", 0, 0 },
        { "--class", JM_ARG_STR, &cls, "C|all", "class-conditional samples of class C, or a row per class", 0, 0 },
        { "--from", JM_ARG_STR, &from, "noise|buffer|generator", "SGLD from uniform noise (default) or the replay buffer; or a VERA generator's samples", 0, 0 },
        { "--mala-steps", JM_ARG_INT, &mala_steps, "N", "with --from generator: N latent MALA steps (mala_latent; default 0)", 0, 1e7 },
        { "--mala-eta", JM_ARG_NUM, &mala_eta, "E", "with --mala-steps: the first step size (default 1/noise_dim, as VERA's training)", 1e-30, 1e30 },
        { "--class-names", JM_ARG_STR, &names, "FILE", "with --class all: row captions, a class name per line (CIFAR's batches.meta.txt)", 0, 0 },
        { "--at", JM_ARG_STR, &at_s, "K1,K2,...", "a grid row of the same chains after each of these step counts", 0, 0 },
        { "--json", JM_ARG_STR, &json, "FILE", "a JSON summary: steps, mean energies (per --at row)", 0, 0 },
        { "--plot", JM_ARG_STR, &plot, "FILE.png", "with --at: mean energy along the chains", 0, 0 },
        { "--gif", JM_ARG_STR, &gif, "FILE.gif", "also an animation of the chains", 0, 0 },
        { "--gif-every", JM_ARG_INT, &gif_every, "K", "SGLD steps between GIF frames (default 5)", 1, 1e6 },
        { "--nrow", JM_ARG_INT, &nrow, "N", "images per grid row (default 8; a class per row with --class all)", 1, 1000 },
        { "--scale", JM_ARG_INT, &scale, "S", "pixel magnification (default 2)", 1, 16 },
        { "--set", JM_ARG_LIST, &sets, "NAME=V", "change a run-time setting (sgld_lr, sgld_std...)", 0, 0 },
        { "--seed", JM_ARG_INT, &seed, "N", "seed of the noise (default 0)", 0, 0 },
        { "--threads", JM_ARG_INT, &threads, "N", "threads", 0, 4096 },
    };
    const char *pos[1];
    int npos, prc = jm_args_parse(who, argc, argv, 2, args, (int)(sizeof args / sizeof args[0]), pos, 0, &npos, jm_sample_usage);
    if (prc != 0) return prc > 0 ? 0 : 2;
    if (strcmp(from, "noise") != 0 && strcmp(from, "buffer") != 0 && strcmp(from, "generator") != 0) {
        fprintf(stderr, "%s: --from takes noise, buffer or generator, got '%s'\n", who, from);
        return 2;
    }
    int all = cls && strcmp(cls, "all") == 0;
    if (strcmp(from, "generator") == 0) {
        /* the SGLD chains' options have no meaning for the generator */
        const char *sgld_only = steps >= 0 ? "--steps" : at_s ? "--at" : gif ? "--gif" : plot ? "--plot" : prog ? "--program" : NULL;
        if (sgld_only) { fprintf(stderr, "%s: %s is for SGLD chains, not --from generator (use --mala-steps)\n", who, sgld_only); return 2; }
        if (mala_eta > 0 && mala_steps <= 0) { fprintf(stderr, "%s: --mala-eta is the step size of --mala-steps N: give both\n", who); return 2; }
        jm_gen_cmd gc = { ckpt, out, cls, json, names, n < 0 ? 64 : n, seed, threads, nrow, scale, mala_steps < 0 ? 0 : mala_steps, mala_eta, &sets };
        return jm_sample_generator(t, kernels, &gc, who);
    }
    if (mala_steps >= 0 || mala_eta > 0) { fprintf(stderr, "%s: --mala-steps and --mala-eta refine a generator's samples: add --from generator\n", who); return 2; }
    int64_t at[64];
    int nat = 0;
    if (at_s && (nat = jm_sample_parse_at(at_s, at, 64, who)) < 0) return 2;
    if (nat && all) { fprintf(stderr, "%s: --at and --class all both choose the grid's rows; use --class C with --at\n", who); return 2; }
    if (plot && !nat) { fprintf(stderr, "%s: --plot draws the energy at the --at step counts; give --at\n", who); return 2; }
    if (nat && steps >= 0 && steps != at[nat - 1]) {
        fprintf(stderr, "%s: --at ends at %" PRId64 " steps but --steps is %" PRId64 "; leave out --steps (the last --at count is the chains' length)\n", who, at[nat - 1], steps);
        return 2;
    }
    if (nat) steps = at[nat - 1];
    if (n < 0) n = nat ? 8 : 64;
    int64_t c_only = -1;
    if (cls && !all) {
        char *end;
        c_only = strtoll(cls, &end, 10);
        if (!*cls || *end || c_only < 0) { fprintf(stderr, "%s: --class takes a class number or 'all', got '%s'\n", who, cls); return 2; }
    }
    int p = jm_session_program(t, prog ? prog : cls ? "sample_cond" : "sample", 1, who);
    if (p < 0) return 2;
    const jm_tprogram *pr = &t->programs[p];
    int xi = jm_session_input(pr, "x"), yi = jm_session_input(pr, "y"), so = jm_session_output(pr, "samples");
    if (xi < 0 || so < 0 || pr->inputs[xi].rank != 4 || (cls && yi < 0)) { fprintf(stderr, "%s: program %s must take x: f32[B,C,H,W]%s and output samples\n", who, pr->name, cls ? ", y: i64[B]" : ""); return 2; }
    /* a class-conditional program has nothing to condition on without --class */
    if (yi >= 0 && !cls) { fprintf(stderr, "%s: program %s takes the classes y: give --class C or --class all\n", who, pr->name); return 2; }
    if (pr->ninputs != (yi >= 0 ? 2 : 1)) { fprintf(stderr, "%s: program %s must take x%s only\n", who, pr->name, yi >= 0 ? " and y" : ""); return 2; }
    const jm_tdesc *xd = &pr->inputs[xi];
    int64_t B = xd->dim[0], C = xd->dim[1], H = xd->dim[2], W = xd->dim[3], per = C * H * W;
    jm_rt rt;
    if (jm_session_open(&rt, t, kernels, ckpt, (uint64_t)seed, 1, &sets, (int)threads, NULL, who) != 0) return 1;
    int rc = 1, classes = 0;
    int steps_knob = jm_knob_find(t, "sgld_steps");
    if (steps >= 0 && steps_knob < 0) { fprintf(stderr, "%s: --steps needs the graph's sampler steps to be a run-time setting (sgld_steps)\n", who); goto close; }
    if (steps < 0) steps = steps_knob >= 0 ? (int64_t)jm_knob_get(&rt, steps_knob) : 0;
    if (cls) {
        int pe = jm_table_find_program(t, "logits");
        classes = pe >= 0 ? (int)t->programs[pe].outputs[0].dim[1] : 10;
        if (c_only >= classes) { fprintf(stderr, "%s: --class %" PRId64 ": the model has classes 0..%d\n", who, c_only, classes - 1); goto close; }
    }
    int64_t total = all ? n * classes : n;
    /* the row captions of --class all, read before any chain runs */
    char **labels = all ? calloc((size_t)classes, sizeof(char *)) : NULL;
    if (all && (!labels || jm_sample_class_names(names, labels, classes, who) != 0)) { free(labels); goto close; }
    if (names && !all) fprintf(stderr, "%s: note: --class-names only captions the rows of --class all\n", who);
    int rows_lab = all ? classes : 0;
    /* starting points */
    float *x = malloc(sizeof(float) * (size_t)(total * per)), *x0 = malloc(sizeof(float) * (size_t)(total * per));
    int64_t *ys = malloc(sizeof(int64_t) * (size_t)(total + 1));
    int64_t nframes = gif ? steps / gif_every + 1 : 0;
    float *frames = gif ? malloc(sizeof(float) * (size_t)(nframes * total * per)) : NULL;
    /* --at: snapshot r holds every chain after at[r] steps */
    float *snaps = nat ? malloc(sizeof(float) * (size_t)(nat * total * per)) : NULL;
    double at_energy[64];
    float *bx = malloc(sizeof(float) * (size_t)(B * per));
    int64_t *by = malloc(sizeof(int64_t) * (size_t)B);
    void **outs = jm_session_outputs(pr);
    if (!x || !x0 || !ys || !bx || !by || !outs || (gif && !frames) || (nat && !snaps)) { fprintf(stderr, "%s: out of memory\n", who); goto free_all; }
    for (int64_t i = 0; i < total; i++) ys[i] = all ? i / n : c_only;
    if (strcmp(from, "buffer") == 0) {
        int g = -1;
        for (int k = 0; k < t->nglobals; k++) if (strcmp(t->globals[k].t.name, "replay") == 0) g = k;
        if (g < 0 || jm_rt_desc_numel(&t->globals[g].t) < per) { fprintf(stderr, "%s: --from buffer: the graph has no replay buffer 'replay'\n", who); goto free_all; }
        int64_t nb = jm_rt_desc_numel(&t->globals[g].t) / per;
        const float *rb = jm_rt_global_read(&rt, g);
        for (int64_t i = 0; i < total; i++) {
            /* class-conditional buffers keep nb / classes chains per class, class-major */
            int64_t j = cls ? (ys[i] * (nb / (classes ? classes : 1)) + i % (nb / (classes ? classes : 1))) % nb : i % nb;
            memcpy(x + i * per, rb + j * per, sizeof(float) * (size_t)per);
        }
    } else {
        for (int64_t i = 0; i < total * per; i++)
            x[i] = -1.0f + 2.0f * (float)jm_philox_uniform((uint32_t)(i % per), (uint32_t)(i / per), 0x5a3d1e, 0, (uint64_t)seed);
    }
    memcpy(x0, x, sizeof(float) * (size_t)(total * per));
    /* the program's other f32 outputs of one value per chain (or one value):
       summed over the real chains of every run, reported as means */
    double osum[16] = { 0 }, t_run = 0;
    int64_t ocount[16] = { 0 }, batch_steps = 0;
    /* chains in batches of B, K steps run in segments that end at every GIF frame
       (each gif_every steps) and every --at count */
    for (int64_t b0 = 0; b0 < total; b0 += B) {
        int64_t real = total - b0 < B ? total - b0 : B;
        for (int64_t i = 0; i < B; i++) {
            memcpy(bx + i * per, x + (b0 + (i < real ? i : 0)) * per, sizeof(float) * (size_t)per);
            by[i] = ys[b0 + (i < real ? i : 0)];
        }
        int64_t done = 0, f = 0;
        int r = 0;
        for (; r < nat && at[r] == 0; r++)
            for (int64_t i = 0; i < real; i++) memcpy(snaps + ((r * total) + b0 + i) * per, bx + i * per, sizeof(float) * (size_t)per);
        if (gif) for (int64_t i = 0; i < real; i++) memcpy(frames + ((f * total) + b0 + i) * per, bx + i * per, sizeof(float) * (size_t)per);
        while (done < steps) {
            int64_t seg = steps - done;
            if (gif && seg > gif_every - done % gif_every) seg = gif_every - done % gif_every;
            if (r < nat && seg > at[r] - done) seg = at[r] - done;
            if (steps_knob >= 0) jm_knob_put(&rt, steps_knob, (double)seg);
            const void *in[2];
            in[xi] = bx;
            if (yi >= 0) in[yi] = by;
            double t0 = jm_session_now();
            if (jm_rt_run(&rt, p, in, outs) != 0) { fprintf(stderr, "%s: %s failed: %s\n", who, pr->name, rt.err); goto free_all; }
            t_run += jm_session_now() - t0;
            batch_steps += seg;
            memcpy(bx, outs[so], sizeof(float) * (size_t)(B * per));
            for (int o = 0; o < pr->noutputs && o < 16; o++) {
                int64_t k = jm_sample_per_chain(pr, o, so, B);
                const float *v = outs[o];
                for (int64_t i = 0; i < (k == 1 ? 1 : k ? real : 0); i++) osum[o] += v[i];
                ocount[o] += k == 1 ? 1 : k ? real : 0;
            }
            done += seg;
            for (; r < nat && at[r] == done; r++)
                for (int64_t i = 0; i < real; i++) memcpy(snaps + ((r * total) + b0 + i) * per, bx + i * per, sizeof(float) * (size_t)per);
            if (gif && done % gif_every == 0 && ++f < nframes)
                for (int64_t i = 0; i < real; i++) memcpy(frames + ((f * total) + b0 + i) * per, bx + i * per, sizeof(float) * (size_t)per);
        }
        for (int64_t i = 0; i < real; i++) memcpy(x + (b0 + i) * per, bx + i * per, sizeof(float) * (size_t)per);
    }
    int cols = all || nat ? (int)n : (int)nrow;
    if (nat) {
        char steps_cap[64][40];
        const char *caps[64];
        for (int r = 0; r < nat; r++) {
            snprintf(steps_cap[r], sizeof steps_cap[r], "%" PRId64 " step%s", at[r], at[r] == 1 ? "" : "s");
            caps[r] = steps_cap[r];
        }
        int rr = jm_image_grid_png_labeled(out, snaps, (int)(nat * total), (int)C, (int)H, (int)W, cols, -1, 1, (int)scale, caps, nat, err, sizeof err);
        if (rr != 0) { fprintf(stderr, "%s: %s\n", who, err); goto free_all; }
    } else if (all) {
        int r = jm_image_grid_png_labeled(out, x, (int)total, (int)C, (int)H, (int)W, cols, -1, 1, (int)scale, (const char *const *)labels, rows_lab, err, sizeof err);
        if (r != 0) { fprintf(stderr, "%s: %s\n", who, err); goto free_all; }
    } else if (jm_image_grid_png(out, x, (int)total, (int)C, (int)H, (int)W, cols, -1, 1, (int)scale, err, sizeof err) != 0) {
        fprintf(stderr, "%s: %s\n", who, err);
        goto free_all;
    }
    if (gif && jm_image_grid_gif(gif, frames, (int)nframes, (int)total, (int)C, (int)H, (int)W, cols, -1, 1, (int)scale, 10, err, sizeof err) != 0) {
        fprintf(stderr, "%s: %s\n", who, err);
        goto free_all;
    }
    if (steps_knob >= 0) jm_knob_put(&rt, steps_knob, (double)steps);
    double es = jm_sample_mean_energy(&rt, x, total, per), e0 = jm_sample_mean_energy(&rt, x0, total, per);
    printf("%s: %" PRId64 " samples after %" PRId64 " %s steps from %s -> %s%s%s\n", who, total, steps, prog ? pr->name : "SGLD", from, out, gif ? ", " : "", gif ? gif : "");
    if (isfinite(es)) printf("mean energy: samples %.4f, their starting points %.4f\n", es, e0);
    for (int r = 0; r < nat; r++) {
        at_energy[r] = jm_sample_mean_energy(&rt, snaps + r * total * per, total, per);
        if (isfinite(at_energy[r])) printf("  after %7" PRId64 " step%s: mean energy %.4f\n", at[r], at[r] == 1 ? " " : "s", at_energy[r]);
    }
    if (plot && jm_sample_plot(plot, at, at_energy, nat, from, err, sizeof err) != 0) { fprintf(stderr, "%s: %s\n", who, err); goto free_all; }
    if (batch_steps > 0) printf("%s: %.4f s per step of a batch of %" PRId64 " chains\n", pr->name, t_run / (double)batch_steps, B);
    for (int o = 0; o < pr->noutputs && o < 16; o++)
        if (ocount[o]) printf("%s: mean %.6g over the chains and runs\n", pr->outputs[o].name, osum[o] / (double)ocount[o]);
    if (json) {
        FILE *jf = fopen(json, "w");
        if (!jf) { fprintf(stderr, "%s: cannot write %s\n", who, json); goto free_all; }
        fprintf(jf, "{\"samples\": %" PRId64 ", \"steps\": %" PRId64 ", \"from\": \"%s\", \"class\": ", total, steps, from);
        if (cls) fprintf(jf, "\"%s\"", cls);
        else fprintf(jf, "null");
        fprintf(jf, ", \"grid\": \"%s\", \"energy\": ", out);
        jm_sample_json_num(jf, es);
        fprintf(jf, ", \"energy_start\": ");
        jm_sample_json_num(jf, e0);
        fprintf(jf, ", \"at\": [");
        for (int r = 0; r < nat; r++) {
            fprintf(jf, "%s{\"steps\": %" PRId64 ", \"energy\": ", r ? ", " : "", at[r]);
            jm_sample_json_num(jf, at_energy[r]);
            fprintf(jf, "}");
        }
        fprintf(jf, "], \"program\": \"%s\", \"seconds_per_step\": ", pr->name);
        jm_sample_json_num(jf, batch_steps > 0 ? t_run / (double)batch_steps : NAN);
        fprintf(jf, ", \"batch\": %" PRId64 ", \"outputs\": {", B);
        for (int o = 0, first = 1; o < pr->noutputs && o < 16; o++)
            if (ocount[o]) {
                fprintf(jf, "%s\"%s\": ", first ? "" : ", ", pr->outputs[o].name);
                jm_sample_json_num(jf, osum[o] / (double)ocount[o]);
                first = 0;
            }
        fprintf(jf, "}}\n");
        if (fclose(jf) != 0) { fprintf(stderr, "%s: cannot write %s\n", who, json); goto free_all; }
    }
    rc = 0;
free_all:
    for (int c = 0; labels && c < classes; c++) free(labels[c]);
    free(labels);
    free(x); free(x0); free(ys); free(frames); free(snaps); free(bx); free(by);
    jm_session_free_outputs(pr, outs);
close:
    jm_rt_close(&rt);
    return rc;
}
