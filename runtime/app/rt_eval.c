/* rt_eval.c — `EXE eval accuracy|calibration|ood|robust` (the metrics are in
 * rt_evalsuite.c and metrics.c) and `EXE plot` (see rt_sample.h). */
#include "rt_sample.h"
#include "data.h"
#include "plot.h"
#include "rt_args.h"
#include "rt_session.h"
#include "rt_modes.h"
#include "rt_train.h"
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const char *jm_eval_usage =
    "usage: EXE eval accuracy|calibration|ood|robust --data DIR|FILE [--ckpt CKPT] [options]\n\n"
    "  accuracy      test accuracy, mean cross-entropy and mean energy of the graph's `evaluate`, the\n"
    "                Brier score; for two classes also the binary Brier score and AUROC of p(y=1|x)\n"
    "  calibration   expected calibration error over --bins equal-width confidence bins and a\n"
    "                reliability diagram (REPORT/reliability.png, REPORT/calibration.json); for two\n"
    "                classes also sklearn's calibration curve of p(y=1|x) over --curve-bins uniform\n"
    "                bins (REPORT/calibration_curve.png)\n"
    "  ood           AUROC of the data (in-distribution) against each --ood-data set (and uniform\n"
    "                noise with --ood-noise) for log p(x) = -E(x), max p(y|x) and -|d/dx log p(x)|,\n"
    "                with a histogram per score (REPORT/ood.json, REPORT/ood_*.png)\n"
    "  robust        accuracy under PGD attacks (--norm linf|l2, each --eps, --pgd-steps, --step-size;\n"
    "                eps and step in [0, 1] pixel units, so MNIST's usual L-inf 0.3 is --eps 0.3),\n"
    "                optionally after --purify K SGLD steps (REPORT/robust.json); not for tables\n"
    "  modes         StackMNIST mode counting: EXE eval modes --classifier DIGIT_CKPT --data DIR [--n N] (see eval modes --help)\n"
    "  fid, is       not computed: they need Inception-v3's weights, which jemc does not ship\n"
    "An --ood-data set of another image shape is centred, padded or cropped, and its channels\n"
    "repeated or averaged, to the data's shape (MNIST as an OOD set for CIFAR-10).\n"
    "A directory given as data means its test split. For a table (CSV), --ood-noise draws each column\n"
    "uniformly between its smallest and largest value in the data, and an --ood-data table needs the\n"
    "data's columns.";

int jm_eval_main(const jm_table *t, jm_kernel_fn *kernels, int argc, char **argv, const char *exe) {
    char who[256];
    snprintf(who, sizeof who, "%s eval", exe);
    if (argc > 2 && strcmp(argv[2], "modes") == 0) return jm_modes_main(t, kernels, argc, argv, exe);   /* its own options: rt_modes.c */
    const char *ckpt = NULL, *data = NULL, *labels = NULL, *json = NULL, *report = "report";
    int64_t threads = 0, bins = 20, limit = 0, curve_bins = 10;
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
        { "--labels", JM_ARG_STR, &labels, "FILE", "labels file: IDX, or text of one label a line for CSV/text", 0, 0 },
        JM_SESSION_TABLE_ARGS,
        { "--limit", JM_ARG_INT, &limit, "N", "use the first N records of each data set only", 1, 9e18 },
        { "--json", JM_ARG_STR, &json, "FILE", "accuracy: also write the figures as JSON", 0, 0 },
        { "--report", JM_ARG_STR, &report, "DIR", "calibration, ood: the report folder (default report/)", 0, 0 },
        { "--bins", JM_ARG_INT, &bins, "N", "calibration: confidence bins (default 20, as JEM++)", 1, 1000 },
        { "--curve-bins", JM_ARG_INT, &curve_bins, "N", "calibration, two classes: bins of the calibration curve (default 10)", 1, 1000 },
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
    if (!strcmp(what, "fid") || !strcmp(what, "is") || !strcmp(what, "inception")) {
        /* IS and FID are defined by one network's features (Inception-v3 as in TTUR /
           pytorch-fid); any other network gives numbers nobody can compare with. */
        fprintf(stderr, "%s: %s: the Inception Score and FID need Inception-v3's weights, which jemc does not ship or download; "
                        "they are not computed (the sample grids and their energies are: `sample --at`)\n", who, what);
        return 2;
    }
    if (strcmp(what, "accuracy") != 0 && strcmp(what, "calibration") != 0 && strcmp(what, "ood") != 0 && strcmp(what, "robust") != 0) {
        fprintf(stderr, "%s: which evaluation? accuracy, calibration, ood, robust or modes (see %s eval --help)\n", who, exe);
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
    jm_rt rt;
    /* the checkpoint first: a table is read as its run read its data (rt_session.h) */
    if (jm_session_open(&rt, t, kernels, ckpt, 0, 0, &sets, (int)threads, NULL, who) != 0) return 1;
    if (jm_session_data(data, labels, "test", &ds, who) != 0) { jm_rt_close(&rt); return 1; }
    if (limit > 0 && ds.n > limit) ds.n = limit;
    if (strcmp(what, "robust") == 0 && jm_evalsuite_is_table(&ds)) {
        /* PGD's radii are in [0, 1] pixel units and every step is clamped to the image
           range [-1, 1]: neither means anything for a table's columns */
        fprintf(stderr, "%s: robust: %s is a table; PGD's --eps is in pixel units and its steps are clamped to the image range [-1, 1], "
                        "which mean nothing for table columns: not computed for tables\n", who, ds.path);
        jm_data_free(&ds);
        jm_rt_close(&rt);
        return 2;
    }
    int rc = 1;
    if (strcmp(what, "calibration") == 0) {
        rc = jm_evalsuite_calibration(&rt, &ds, (int)bins, (int)curve_bins, report, who) == 0 ? 0 : 1;
    } else if (strcmp(what, "ood") == 0) {
        nood = jm_evalsuite_load_ood(oods.v, oods.n, noise, &ds, ood, who);
        for (int i = 0; i < nood; i++) if (limit > 0 && ood[i].n > limit) ood[i].n = limit;
        rc = nood > 0 && jm_evalsuite_ood(&rt, &ds, ood, nood, report, who) == 0 ? 0 : 1;
    } else if (strcmp(what, "robust") == 0) {
        rc = 0;
        char path[1100];
        snprintf(path, sizeof path, "%s/robust.json", report);
        mkdir(report, 0777);
        FILE *f = fopen(path, "w");
        if (!f) { fprintf(stderr, "%s: cannot write %s\n", who, path); rc = 1; }
        else fprintf(f, "{\"data\": \"%s\", \"records\": %" PRId64 ", \"norm\": \"%s\", \"steps\": %" PRId64 ", \"purify\": %" PRId64 ", \"accuracy\": {", ds.path, ds.n, norm, pgd_steps, purify);
        printf("%s (%" PRId64 " records): PGD %s, %" PRId64 " steps%s\n", ds.path, ds.n, norm, pgd_steps, purify ? ", purified by SGLD" : "");
        for (int e = 0; e < neps && rc == 0; e++) {
            /* the data are in [-1, 1]: pixel units count twice */
            double a = 2 * (step_size > 0 ? step_size : eps[e] / 4);
            double r = jm_evalsuite_pgd(&rt, &ds, l2, 2 * eps[e], a, pgd_steps, purify, who);
            if (isnan(r)) { rc = 1; break; }
            printf("  eps %-8g accuracy %.4f\n", eps[e], r);
            fprintf(f, "%s\"%g\": %.6f", e ? ", " : "", eps[e], r);
        }
        if (f) { fprintf(f, "}}\n"); fclose(f); }
    } else {
        rc = jm_evalsuite_accuracy(&rt, &ds, json, who) == 0 ? 0 : 1;
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
