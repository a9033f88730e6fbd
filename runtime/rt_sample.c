/* rt_sample.c — `EXE sample`, `EXE eval accuracy` and `EXE plot` (see rt_sample.h). */
#include "rt_sample.h"
#include "data.h"
#include "image.h"
#include "philox.h"
#include "plot.h"
#include "rt_args.h"
#include "rt_knobs.h"
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
    "and of the noise they started from.";

/* mean energy of n images through the `energy` program (NaN when absent) */
static double jm_mean_energy(jm_rt *rt, const float *x, int64_t n, int64_t per) {
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

int jm_sample_main(const jm_table *t, jm_kernel_fn *kernels, int argc, char **argv, const char *exe) {
    char who[256], err[1024];
    snprintf(who, sizeof who, "%s sample", exe);
    const char *ckpt = NULL, *out = "samples.png", *gif = NULL, *from = "noise", *cls = NULL;
    int64_t n = 64, steps = -1, seed = 0, threads = 0, gif_every = 5, nrow = 8, scale = 2;
    jm_arg_list sets;
    memset(&sets, 0, sizeof sets);
    const jm_arg args[] = {
        { "--ckpt", JM_ARG_STR, &ckpt, "CKPT", "checkpoint (default: the declared initialisers)", 0, 0 },
        { "--out", JM_ARG_STR, &out, "FILE.png", "the grid (default samples.png)", 0, 0 },
        { "--n", JM_ARG_INT, &n, "N", "samples (per class with --class all; default 64)", 1, 100000 },
        { "--steps", JM_ARG_INT, &steps, "K", "SGLD steps (default: the graph's sgld_steps)", 0, 1e7 },
        { "--class", JM_ARG_STR, &cls, "C|all", "class-conditional samples of class C, or a row per class", 0, 0 },
        { "--from", JM_ARG_STR, &from, "noise|buffer", "start from uniform noise (default) or the replay buffer", 0, 0 },
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
    if (strcmp(from, "noise") != 0 && strcmp(from, "buffer") != 0) { fprintf(stderr, "%s: --from takes noise or buffer, got '%s'\n", who, from); return 2; }
    int all = cls && strcmp(cls, "all") == 0;
    int64_t c_only = -1;
    if (cls && !all) {
        char *end;
        c_only = strtoll(cls, &end, 10);
        if (!*cls || *end || c_only < 0) { fprintf(stderr, "%s: --class takes a class number or 'all', got '%s'\n", who, cls); return 2; }
    }
    int p = jm_session_program(t, cls ? "sample_cond" : "sample", 1, who);
    if (p < 0) return 2;
    const jm_tprogram *pr = &t->programs[p];
    int xi = jm_session_input(pr, "x"), yi = jm_session_input(pr, "y"), so = jm_session_output(pr, "samples");
    if (xi < 0 || so < 0 || pr->inputs[xi].rank != 4 || (cls && yi < 0)) { fprintf(stderr, "%s: program %s must take x: f32[B,C,H,W]%s and output samples\n", who, pr->name, cls ? ", y: i64[B]" : ""); return 2; }
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
    int rows_lab = all ? classes : 0;
    /* starting points */
    float *x = malloc(sizeof(float) * (size_t)(total * per)), *x0 = malloc(sizeof(float) * (size_t)(total * per));
    int64_t *ys = malloc(sizeof(int64_t) * (size_t)(total + 1));
    int64_t nframes = gif ? steps / gif_every + 1 : 0;
    float *frames = gif ? malloc(sizeof(float) * (size_t)(nframes * total * per)) : NULL;
    float *bx = malloc(sizeof(float) * (size_t)(B * per));
    int64_t *by = malloc(sizeof(int64_t) * (size_t)B);
    void **outs = jm_session_outputs(pr);
    if (!x || !x0 || !ys || !bx || !by || !outs || (gif && !frames)) { fprintf(stderr, "%s: out of memory\n", who); goto free_all; }
    for (int64_t i = 0; i < total; i++) ys[i] = all ? i / n : c_only;
    if (strcmp(from, "buffer") == 0) {
        int g = -1;
        for (int k = 0; k < t->nglobals; k++) if (strcmp(t->globals[k].t.name, "replay") == 0) g = k;
        if (g < 0 || jm_rt_desc_numel(&t->globals[g].t) < per) { fprintf(stderr, "%s: --from buffer: the graph has no replay buffer 'replay'\n", who); goto free_all; }
        int64_t nb = jm_rt_desc_numel(&t->globals[g].t) / per;
        const float *rb = jm_rt_global(&rt, g);
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
    /* chains in batches of B; for a GIF, K steps in segments of gif_every */
    for (int64_t b0 = 0; b0 < total; b0 += B) {
        int64_t real = total - b0 < B ? total - b0 : B;
        for (int64_t i = 0; i < B; i++) {
            memcpy(bx + i * per, x + (b0 + (i < real ? i : 0)) * per, sizeof(float) * (size_t)per);
            by[i] = ys[b0 + (i < real ? i : 0)];
        }
        int64_t done = 0, f = 0;
        if (gif) for (int64_t i = 0; i < real; i++) memcpy(frames + ((f * total) + b0 + i) * per, bx + i * per, sizeof(float) * (size_t)per);
        while (done < steps) {
            int64_t seg = gif ? (steps - done < gif_every ? steps - done : gif_every) : steps;
            if (steps_knob >= 0) jm_knob_put(&rt, steps_knob, (double)seg);
            const void *in[2];
            in[xi] = bx;
            if (yi >= 0) in[yi] = by;
            if (jm_rt_run(&rt, p, in, outs) != 0) { fprintf(stderr, "%s: %s failed: %s\n", who, pr->name, rt.err); goto free_all; }
            memcpy(bx, outs[so], sizeof(float) * (size_t)(B * per));
            done += seg;
            if (gif && ++f < nframes)
                for (int64_t i = 0; i < real; i++) memcpy(frames + ((f * total) + b0 + i) * per, bx + i * per, sizeof(float) * (size_t)per);
        }
        for (int64_t i = 0; i < real; i++) memcpy(x + (b0 + i) * per, bx + i * per, sizeof(float) * (size_t)per);
    }
    int cols = all ? (int)n : (int)nrow;
    if (all) {
        char **labels = calloc((size_t)classes, sizeof(char *));
        for (int c = 0; c < classes; c++) { labels[c] = malloc(24); snprintf(labels[c], 24, "class %d", c); }
        int r = jm_image_grid_png_labeled(out, x, (int)total, (int)C, (int)H, (int)W, cols, -1, 1, (int)scale, (const char *const *)labels, rows_lab, err, sizeof err);
        for (int c = 0; c < classes; c++) free(labels[c]);
        free(labels);
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
    double es = jm_mean_energy(&rt, x, total, per), e0 = jm_mean_energy(&rt, x0, total, per);
    printf("%s: %" PRId64 " samples after %" PRId64 " SGLD steps from %s -> %s%s%s\n", who, total, steps, from, out, gif ? ", " : "", gif ? gif : "");
    if (isfinite(es)) printf("mean energy: samples %.4f, their starting points %.4f\n", es, e0);
    rc = 0;
free_all:
    free(x); free(x0); free(ys); free(frames); free(bx); free(by);
    jm_session_free_outputs(pr, outs);
close:
    jm_rt_close(&rt);
    return rc;
}

static const char *jm_eval_usage =
    "usage: EXE eval accuracy|calibration|ood --data DIR|FILE [--ckpt CKPT] [options]\n\n"
    "  accuracy      test accuracy, mean cross-entropy and mean energy of the graph's `evaluate`\n"
    "  calibration   expected calibration error over --bins equal-width confidence bins and a\n"
    "                reliability diagram (REPORT/reliability.png, REPORT/calibration.json)\n"
    "  ood           AUROC of the data (in-distribution) against each --ood-data set (and uniform\n"
    "                noise with --ood-noise) for log p(x) = -E(x), max p(y|x) and -|d/dx log p(x)|,\n"
    "                with a histogram per score (REPORT/ood.json, REPORT/ood_*.png)\n"
    "  robust        accuracy under PGD attacks (--norm linf|l2, each --eps, --pgd-steps, --step-size;\n"
    "                eps and step in [0, 1] pixel units, so MNIST's usual L-inf 0.3 is --eps 0.3),\n"
    "                optionally after --purify K SGLD steps (REPORT/robust.json)\n"
    "A directory given as data means its test split.";

int jm_eval_main(const jm_table *t, jm_kernel_fn *kernels, int argc, char **argv, const char *exe) {
    char who[256];
    snprintf(who, sizeof who, "%s eval", exe);
    const char *ckpt = NULL, *data = NULL, *labels = NULL, *json = NULL, *report = "report";
    int64_t threads = 0, bins = 20;
    int noise = 0;
    jm_arg_list sets, oods, epss;
    memset(&sets, 0, sizeof sets);
    memset(&oods, 0, sizeof oods);
    memset(&epss, 0, sizeof epss);
    const char *norm = "linf";
    int64_t pgd_steps = 20, purify = 0;
    double step_size = 0;
    const jm_arg args[] = {
        { "--ckpt", JM_ARG_STR, &ckpt, "CKPT", "checkpoint (default: the declared initialisers)", 0, 0 },
        { "--data", JM_ARG_STR, &data, "DIR|FILE", "data set (a directory: its test split)", 0, 0 },
        { "--labels", JM_ARG_STR, &labels, "FILE", "IDX labels file", 0, 0 },
        { "--json", JM_ARG_STR, &json, "FILE", "accuracy: also write the figures as JSON", 0, 0 },
        { "--report", JM_ARG_STR, &report, "DIR", "calibration, ood: the report folder (default report/)", 0, 0 },
        { "--bins", JM_ARG_INT, &bins, "N", "calibration: confidence bins (default 20, as JEM++)", 1, 1000 },
        { "--ood-data", JM_ARG_LIST, &oods, "DIR|FILE", "ood: an out-of-distribution set (repeatable)", 0, 0 },
        { "--ood-noise", JM_ARG_FLAG, &noise, NULL, "ood: also uniform noise shaped like the data", 0, 0 },
        { "--norm", JM_ARG_STR, &norm, "linf|l2", "robust: the attack's norm (default linf)", 0, 0 },
        { "--eps", JM_ARG_LIST, &epss, "E", "robust: attack radius in [0, 1] pixel units (repeatable; default 0.1 and 0.3)", 0, 0 },
        { "--pgd-steps", JM_ARG_INT, &pgd_steps, "K", "robust: PGD steps (default 20)", 0, 1e6 },
        { "--step-size", JM_ARG_NUM, &step_size, "A", "robust: PGD step in pixel units (default eps / 4)", 0, 1e3 },
        { "--purify", JM_ARG_INT, &purify, "K", "robust: K SGLD steps on the attacked inputs before classifying (JEM)", 0, 1e6 },
        { "--set", JM_ARG_LIST, &sets, "NAME=V", "change a run-time setting", 0, 0 },
        { "--threads", JM_ARG_INT, &threads, "N", "threads", 0, 4096 },
    };
    const char *pos[1];
    int npos, prc = jm_args_parse(who, argc, argv, 2, args, (int)(sizeof args / sizeof args[0]), pos, 1, &npos, jm_eval_usage);
    if (prc != 0) return prc > 0 ? 0 : 2;
    const char *what = npos == 1 ? pos[0] : "";
    if (strcmp(what, "accuracy") != 0 && strcmp(what, "calibration") != 0 && strcmp(what, "ood") != 0 && strcmp(what, "robust") != 0) {
        fprintf(stderr, "%s: which evaluation? accuracy, calibration, ood or robust (see %s eval --help)\n", who, exe);
        return 2;
    }
    if (!data) { fprintf(stderr, "%s: --data is required\n", who); return 2; }
    if (strcmp(what, "ood") == 0 && !oods.n && !noise) { fprintf(stderr, "%s: ood needs --ood-data FILE or --ood-noise\n", who); return 2; }
    int l2 = strcmp(norm, "l2") == 0;
    if (!l2 && strcmp(norm, "linf") != 0) { fprintf(stderr, "%s: --norm takes linf or l2, got '%s'\n", who, norm); return 2; }
    double eps[32];
    int neps = 0;
    for (int i = 0; i < epss.n; i++) {
        char *end;
        eps[neps] = strtod(epss.v[i], &end);
        if (!*epss.v[i] || *end || !(eps[neps] >= 0) || eps[neps] > 100) { fprintf(stderr, "%s: --eps takes a number >= 0, got '%s'\n", who, epss.v[i]); return 2; }
        neps++;
    }
    if (!neps) { eps[0] = 0.1; eps[1] = 0.3; neps = 2; }
    if (oods.n > 7) { fprintf(stderr, "%s: at most 7 --ood-data sets\n", who); return 2; }
    jm_dataset ds, ood[8];
    memset(&ds, 0, sizeof ds);
    memset(ood, 0, sizeof ood);
    int nood = 0;
    if (jm_session_data(data, labels, "test", &ds, who) != 0) return 1;
    jm_rt rt;
    if (jm_session_open(&rt, t, kernels, ckpt, 0, 0, &sets, (int)threads, NULL, who) != 0) { jm_data_free(&ds); return 1; }
    double acc, loss, energy;
    int rc = 1;
    if (strcmp(what, "calibration") == 0) {
        rc = jm_evalsuite_calibration(&rt, &ds, (int)bins, report, who) == 0 ? 0 : 1;
    } else if (strcmp(what, "ood") == 0) {
        nood = jm_evalsuite_load_ood(oods.v, oods.n, noise, &ds, ood, who);
        rc = nood > 0 && jm_evalsuite_ood(&rt, &ds, ood, nood, report, who) == 0 ? 0 : 1;
    } else if (strcmp(what, "robust") == 0) {
        rc = 0;
        char path[1100];
        snprintf(path, sizeof path, "%s/robust.json", report);
        mkdir(report, 0777);
        FILE *f = fopen(path, "w");
        if (!f) { fprintf(stderr, "%s: cannot write %s\n", who, path); rc = 1; }
        else fprintf(f, "{\"data\": \"%s\", \"norm\": \"%s\", \"steps\": %" PRId64 ", \"purify\": %" PRId64 ", \"accuracy\": {", ds.path, norm, pgd_steps, purify);
        printf("%s: PGD %s, %" PRId64 " steps%s\n", ds.path, norm, pgd_steps, purify ? ", purified by SGLD" : "");
        for (int e = 0; e < neps && rc == 0; e++) {
            /* the data are in [-1, 1]: pixel units count twice */
            double a = 2 * (step_size > 0 ? step_size : eps[e] / 4);
            double r = jm_evalsuite_pgd(&rt, &ds, l2, 2 * eps[e], a, pgd_steps, purify, who);
            if (isnan(r)) { rc = 1; break; }
            printf("  eps %-8g accuracy %.4f\n", eps[e], r);
            fprintf(f, "%s\"%g\": %.6f", e ? ", " : "", eps[e], r);
        }
        if (f) { fprintf(f, "}}\n"); fclose(f); }
    } else if (jm_train_evaluate(&rt, &ds, &acc, &loss, &energy, who) == 0) {
        printf("%s: %" PRId64 " records: accuracy %.4f, loss %.4f, mean energy %.4f\n", ds.path, ds.n, acc, loss, energy);
        rc = 0;
        if (json) {
            FILE *f = fopen(json, "w");
            if (!f) { fprintf(stderr, "%s: cannot write %s\n", who, json); rc = 1; }
            else {
                fprintf(f, "{\"data\": \"%s\", \"records\": %" PRId64 ", \"accuracy\": %.6f, \"loss\": %.6g, \"energy\": %.6g}\n", ds.path, ds.n, acc, loss, energy);
                fclose(f);
            }
        }
    }
    jm_rt_close(&rt);
    jm_data_free(&ds);
    for (int i = 0; i < 8; i++) jm_data_free(&ood[i]);
    return rc;
}

int jm_plot_main(int argc, char **argv, const char *exe) {
    char who[256], err[1024];
    snprintf(who, sizeof who, "%s plot", exe);
    const char *metrics = "run/metrics.jsonl", *out = NULL;
    const jm_arg args[] = {
        { "--metrics", JM_ARG_STR, &metrics, "FILE", "JSON Lines metrics written by train (default run/metrics.jsonl)", 0, 0 },
        { "--out", JM_ARG_STR, &out, "DIR", "where the PNGs go (default: the metrics file's directory)", 0, 0 },
    };
    const char *pos[1];
    int npos, prc = jm_args_parse(who, argc, argv, 2, args, 2, pos, 0, &npos,
                                  "usage: EXE plot [--metrics FILE] [--out DIR]\n\nLoss, energy, accuracy, learning-rate and gradient-norm curves (PNG, cairo).");
    if (prc != 0) return prc > 0 ? 0 : 2;
    char dir[1024];
    if (!out) {
        snprintf(dir, sizeof dir, "%s", metrics);
        char *slash = strrchr(dir, '/');
        if (slash) *slash = 0;
        else snprintf(dir, sizeof dir, ".");
        out = dir;
    }
    char *written[JM_PLOT_MAX_WRITTEN] = { 0 };
    int n = jm_plot_metrics(metrics, out, written, err, sizeof err);
    if (n < 0) { fprintf(stderr, "%s: %s\n", who, err); return 1; }
    for (int i = 0; i < n && i < JM_PLOT_MAX_WRITTEN; i++) { printf("%s\n", written[i]); free(written[i]); }
    return 0;
}
