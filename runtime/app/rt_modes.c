/* rt_modes.c — `EXE eval modes`, StackMNIST mode counting; see rt_modes.h and
 * docs/evaluation.md (StackMNIST).
 *
 *   1. The training data (--data: tools/stackmnist.py's IDX files) give p, the
 *      histogram of the training records' mode ids (their labels).
 *   2. The graph's `generate(h)` draws --n samples G(h) + sigma eps, with h
 *      from the runtime's Philox keyed by the seed (rt_sample_gen.c), in
 *      chunks of at most JM_MODES_CHUNK samples; chunk k > 0 is keyed by
 *      seed + k * 0x9E3779B97F4A7C15 (the 64-bit golden ratio), so chunks draw
 *      independent latents and a chunk's memory is all that is held.
 *   3. `digit_logits(x)` gives every channel's digit logits, [B, C, K]; the
 *      argmax of each is the channel's digit and the digits make the mode id,
 *      channel 0 most significant (jm_modes_id: 100 d_R + 10 d_G + d_B, the
 *      rule tools/stackmnist.py labels the data with).
 *   4. Reported: the modes reached (distinct ids among the samples, of K^C),
 *      KL(q || p) in nats (jm_modes_kl: VERA's handling of modes p lacks), and
 *      as a check of the counter itself the same classification of the first
 *      --data-check training records against their labels (how often the
 *      classifier reads all three digits right, each channel's accuracy, and
 *      the modes and KL the training data themselves score: what a perfect
 *      generator would get with this counter).
 *
 * The digit classifier's parameters come from a checkpoint of another graph
 * (graphs/mnist_digit.graph), loaded by name under --classifier-scope
 * (default "digit") after the VERA checkpoint: jm_modes_load_scope. */
#include "rt_modes.h"
#include "data.h"
#include "engine/rt_state.h"
#include "engine/safetensors.h"
#include "rt_args.h"
#include "rt_sample.h"
#include "rt_session.h"
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* samples held at once (x: CHUNK * C*H*W floats, 9.6 MB for StackMNIST) */
#define JM_MODES_CHUNK 1024
/* K^C above this is refused: the histograms are dense arrays */
#define JM_MODES_MAX 10000000

int64_t jm_modes_id(const int64_t *digits, int channels, int classes) {
    int64_t id = 0;
    for (int c = 0; c < channels; c++) {
        if (digits[c] < 0 || digits[c] >= classes) return -1;
        id = id * classes + digits[c];
    }
    return id;
}

int jm_modes_histogram(const int64_t *ids, int64_t n, int64_t nmodes, int64_t *hist, char *err, size_t errlen) {
    memset(hist, 0, sizeof(int64_t) * (size_t)nmodes);
    for (int64_t i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= nmodes) {
            snprintf(err, errlen, "record %" PRId64 ": mode id %" PRId64 " is outside 0..%" PRId64, i, ids[i], nmodes - 1);
            return -1;
        }
        hist[ids[i]]++;
    }
    return 0;
}

int64_t jm_modes_covered(const int64_t *hist, int64_t nmodes) {
    int64_t k = 0;
    for (int64_t m = 0; m < nmodes; m++) k += hist[m] > 0;
    return k;
}

double jm_modes_kl(const int64_t *q, const int64_t *p, int64_t nmodes, double *outside) {
    double nq = 0, np = 0;
    for (int64_t m = 0; m < nmodes; m++) {
        nq += (double)q[m];
        np += (double)p[m];
    }
    if (outside) *outside = NAN;
    if (nq <= 0 || np <= 0) return NAN;
    double kl = 0, out = 0;
    for (int64_t m = 0; m < nmodes; m++) {
        if (q[m] == 0) continue;                 /* 0 log 0 = 0 */
        double qm = (double)q[m] / nq;
        if (p[m] == 0) {                         /* infinite: left out, as VERA's _kl does */
            out += qm;
            continue;
        }
        kl += qm * log(qm / ((double)p[m] / np));
    }
    if (outside) *outside = out;
    return kl;
}

/* `name` is SCOPE.something */
static int jm_modes_under(const char *name, const char *scope, size_t sl) {
    return strncmp(name, scope, sl) == 0 && name[sl] == '.';
}

int jm_modes_load_scope(jm_rt *rt, const char *path, const char *scope, char *err, size_t errlen) {
    const jm_table *t = rt->t;
    size_t sl = strlen(scope);
    jm_st_file f;
    memset(&f, 0, sizeof f);
    if (jm_st_read(path, &f, err, errlen) != 0) return -1;
    void **tmp = calloc((size_t)t->nglobals + 1, sizeof(void *));
    int rc = tmp ? 0 : -1, ours = 0;
    if (!tmp) snprintf(err, errlen, "out of memory");
    for (int g = 0; g < t->nglobals; g++) ours += t->globals[g].kind != JM_GKIND_CONFIG && jm_modes_under(t->globals[g].t.name, scope, sl);
    if (rc == 0 && ours == 0) {
        snprintf(err, errlen, "%s has no parameters under '%s.' to load the classifier into (--classifier-scope)", t->graph, scope);
        rc = -1;
    }
    for (int i = 0; i < f.n && rc == 0; i++) {
        if (!jm_modes_under(f.t[i].name, scope, sl)) continue;     /* the other graph's own: optimizer moments, knobs */
        int gi = -1;
        for (int g = 0; g < t->nglobals && gi < 0; g++)
            if (t->globals[g].kind != JM_GKIND_CONFIG && strcmp(t->globals[g].t.name, f.t[i].name) == 0) gi = g;
        if (gi < 0) {
            snprintf(err, errlen, "%s: classifier tensor '%.200s' is not a parameter of this graph's %s model (another architecture?)", path,
                     f.t[i].name, scope);
            rc = -1;
            break;
        }
        size_t bytes = (size_t)jm_rt_desc_numel(&t->globals[gi].t) * jm_rt_dtype_size(t->globals[gi].t.dtype);
        tmp[gi] = malloc(bytes ? bytes : 1);
        if (!tmp[gi]) { snprintf(err, errlen, "out of memory"); rc = -1; break; }
        rc = jm_state_convert(path, "classifier tensor", &f.t[i], &t->globals[gi].t, tmp[gi], err, errlen);
    }
    for (int g = 0; g < t->nglobals && rc == 0; g++) {
        if (t->globals[g].kind != JM_GKIND_PARAM || !jm_modes_under(t->globals[g].t.name, scope, sl) || tmp[g]) continue;
        char tb[160];
        jm_desc_str(&t->globals[g].t, tb, sizeof tb);
        snprintf(err, errlen, "%s: missing classifier tensor '%s' (%s); --classifier takes a checkpoint of the digit classifier "
                 "(graphs/mnist_digit.graph's train)", path, t->globals[g].t.name, tb);
        rc = -1;
    }
    /* all or nothing */
    for (int g = 0; g < t->nglobals && rc == 0; g++)
        if (tmp[g]) memcpy(jm_rt_global(rt, g), tmp[g], (size_t)jm_rt_desc_numel(&t->globals[g].t) * jm_rt_dtype_size(t->globals[g].t.dtype));
    for (int g = 0; tmp && g < t->nglobals; g++) free(tmp[g]);
    free(tmp);
    jm_st_free(&f);
    return rc;
}

/* the digit program: digit_logits(x: f32[B, C, H, W]) -> logits f32[B, C, K] */
typedef struct {
    int p, xi, li;
    const jm_tprogram *pr;
    int64_t B, C, K, per;
} jm_modes_prog;

static int jm_modes_open_digit(const jm_table *t, const jm_gen_prog *g, jm_modes_prog *d, const char *who) {
    memset(d, 0, sizeof *d);
    d->p = jm_session_program(t, "digit_logits", 1, who);
    if (d->p < 0) {
        fprintf(stderr, "%s: mode counting needs program digit_logits(x: f32[B, C, H, W]) with output logits: f32[B, C, classes], "
                        "the digit classifier on every channel (graphs/vera_stackmnist.graph)\n", who);
        return -1;
    }
    const jm_tprogram *pr = d->pr = &t->programs[d->p];
    d->xi = jm_session_input(pr, "x");
    d->li = jm_session_output(pr, "logits");
    const jm_tdesc *x = d->xi >= 0 ? &pr->inputs[d->xi] : NULL, *l = d->li >= 0 ? &pr->outputs[d->li] : NULL;
    if (pr->ninputs != 1 || !x || x->dtype != JM_DT_F32 || x->rank != 4 || x->dim[1] != g->C || x->dim[2] != g->H || x->dim[3] != g->W
        || !l || l->dtype != JM_DT_F32 || l->rank != 3 || l->dim[0] != x->dim[0] || l->dim[1] != g->C || l->dim[2] < 2) {
        fprintf(stderr, "%s: program digit_logits must take x: f32[B, %lld, %lld, %lld] (the generator's samples) and output "
                        "logits: f32[B, %lld, classes]\n", who, (long long)g->C, (long long)g->H, (long long)g->W, (long long)g->C);
        return -1;
    }
    d->B = x->dim[0];
    d->C = g->C;
    d->K = l->dim[2];
    d->per = g->C * g->H * g->W;
    return 0;
}

/* Mode ids of the n samples x (n * per floats) into ids; digits (n * C, may be
   NULL) gets each channel's digit. 0 or -1. */
static int jm_modes_classify(jm_rt *rt, const jm_modes_prog *d, const float *x, int64_t n, int64_t *ids, int64_t *digits, const char *who) {
    float *buf = malloc(sizeof(float) * (size_t)(d->B * d->per));
    void **out = jm_session_outputs(d->pr);
    int rc = buf && out ? 0 : -1;
    if (rc) fprintf(stderr, "%s: out of memory\n", who);
    int64_t dig[64];
    for (int64_t b0 = 0; b0 < n && rc == 0; b0 += d->B) {
        int64_t real = n - b0 < d->B ? n - b0 : d->B;
        /* a short last batch is padded with its first sample (the classifier
           has no batch statistics: padding changes no real row's logits) */
        for (int64_t i = 0; i < d->B; i++) memcpy(buf + i * d->per, x + (b0 + (i < real ? i : 0)) * d->per, sizeof(float) * (size_t)d->per);
        const void *in[1] = { buf };
        if (jm_rt_run(rt, d->p, in, out) != 0) { fprintf(stderr, "%s: digit_logits failed: %s\n", who, rt->err); rc = -1; break; }
        const float *lg = out[d->li];
        for (int64_t i = 0; i < real; i++) {
            for (int64_t c = 0; c < d->C; c++) {
                const float *row = lg + (i * d->C + c) * d->K;
                int64_t best = 0;
                for (int64_t k = 1; k < d->K; k++) if (row[k] > row[best]) best = k;
                dig[c] = best;
                if (digits) digits[(b0 + i) * d->C + c] = best;
            }
            ids[b0 + i] = jm_modes_id(dig, (int)d->C, (int)d->K);
        }
    }
    free(buf);
    jm_session_free_outputs(d->pr, out);
    return rc;
}

static const char *jm_modes_usage =
    "usage: EXE eval modes --classifier DIGIT_CKPT --data DIR|FILE [--ckpt CKPT] [--n N] [--seed S] [--json FILE]\n\n"
    "StackMNIST mode counting (jem-spec 7.6). Draws --n samples from the generator (the graph's generate,\n"
    "no MCMC), classifies each channel with the digit classifier (the graph's digit_logits, its\n"
    "parameters loaded by name from DIGIT_CKPT, a checkpoint of graphs/mnist_digit.graph), makes each\n"
    "sample's mode id from its digits, channel 0 first (100 d_R + 10 d_G + d_B), and reports the modes\n"
    "reached and KL(q || p) of the samples' mode histogram q against the training labels' p (--data:\n"
    "tools/stackmnist.py's files; a directory means its train split). Modes the training data lack are\n"
    "left out of the KL, as VERA does, and their share of q is reported. The first --data-check training\n"
    "records are classified too: the counter's own accuracy, and the modes and KL of the data themselves.";

int jm_modes_main(const jm_table *t, jm_kernel_fn *kernels, int argc, char **argv, const char *exe) {
    char who[256], err[1024];
    snprintf(who, sizeof who, "%s eval modes", exe);
    const char *ckpt = NULL, *classifier = NULL, *data = NULL, *labels = NULL, *json = NULL, *scope = "digit";
    int64_t n = 10000, seed = 1, threads = 0, check = 10000;
    jm_arg_list sets;
    memset(&sets, 0, sizeof sets);
    const jm_arg args[] = {
        { "--ckpt", JM_ARG_STR, &ckpt, "CKPT", "the generator's checkpoint (default: the declared initialisers)", 0, 0 },
        { "--classifier", JM_ARG_STR, &classifier, "CKPT", "the digit classifier's checkpoint (graphs/mnist_digit.graph)", 0, 0 },
        { "--classifier-scope", JM_ARG_STR, &scope, "NAME", "the classifier's parameters are NAME.* in both graphs (default digit)", 0, 0 },
        { "--data", JM_ARG_STR, &data, "DIR|FILE", "the training data whose labels give p (tools/stackmnist.py)", 0, 0 },
        { "--labels", JM_ARG_STR, &labels, "FILE", "IDX labels file", 0, 0 },
        { "--n", JM_ARG_INT, &n, "N", "generator samples (default 10000)", 1, 1e9 },
        { "--seed", JM_ARG_INT, &seed, "S", "seed of the latents and the samples' noise (default 1)", 0, 9.2e18 },
        { "--data-check", JM_ARG_INT, &check, "N", "classify the first N training records too (default 10000; 0: no)", 0, 1e9 },
        { "--json", JM_ARG_STR, &json, "FILE", "also write the figures and q's histogram as JSON", 0, 0 },
        { "--set", JM_ARG_LIST, &sets, "NAME=V", "change a run-time setting", 0, 0 },
        { "--threads", JM_ARG_INT, &threads, "N", "threads", 0, 4096 },
    };
    const char *pos[1];
    int npos, prc = jm_args_parse(who, argc, argv, 3, args, (int)(sizeof args / sizeof args[0]), pos, 0, &npos, jm_modes_usage);
    if (prc != 0) return prc > 0 ? 0 : 2;
    if (!classifier) { fprintf(stderr, "%s: --classifier is required: a checkpoint of the digit classifier (graphs/mnist_digit.graph)\n", who); return 2; }
    if (!data) { fprintf(stderr, "%s: --data is required: the training data whose labels give the mode histogram p\n", who); return 2; }
    if (!*scope || strchr(scope, ' ')) { fprintf(stderr, "%s: --classifier-scope takes a name, got '%s'\n", who, scope); return 2; }
    jm_gen_prog g;
    jm_modes_prog d;
    if (jm_sample_gen_open(t, 0, 0, &g, who) != 0 || jm_modes_open_digit(t, &g, &d, who) != 0) return 2;
    double nm = pow((double)d.K, (double)d.C);
    if (d.C > 64 || nm > JM_MODES_MAX) {
        fprintf(stderr, "%s: %lld classes in %lld channels make %.3g modes; at most %d are counted\n", who, (long long)d.K, (long long)d.C, nm, JM_MODES_MAX);
        return 2;
    }
    int64_t nmodes = (int64_t)nm;

    jm_dataset ds;
    memset(&ds, 0, sizeof ds);
    if (jm_session_data(data, labels, "train", &ds, who) != 0) return 1;
    if (ds.c != g.C || ds.h != g.H || ds.w != g.W) {
        fprintf(stderr, "%s: %s holds %dx%dx%d records, but the generator draws %lldx%lldx%lld samples\n", who, ds.path, ds.c, ds.h, ds.w,
                (long long)g.C, (long long)g.H, (long long)g.W);
        jm_data_free(&ds);
        return 1;
    }
    int64_t *p = calloc((size_t)nmodes, sizeof(int64_t)), *q = calloc((size_t)nmodes, sizeof(int64_t));
    int64_t chunk = JM_MODES_CHUNK < g.B ? g.B : JM_MODES_CHUNK;
    int64_t m_check = check < ds.n ? check : ds.n, buf_n = chunk > d.B ? chunk : d.B;
    if (m_check > buf_n) buf_n = m_check;
    float *x = malloc(sizeof(float) * (size_t)(chunk * d.per));
    int64_t *ids = malloc(sizeof(int64_t) * (size_t)buf_n), *digits = malloc(sizeof(int64_t) * (size_t)(buf_n * d.C));
    jm_rt rt;
    int rc = 1, open = 0;
    if (!p || !q || !x || !ids || !digits) { fprintf(stderr, "%s: out of memory\n", who); goto done; }
    if (jm_modes_histogram(ds.y, ds.n, nmodes, p, err, sizeof err) != 0) {
        fprintf(stderr, "%s: %s: %s: the labels must be mode ids (tools/stackmnist.py writes them)\n", who, ds.path, err);
        goto done;
    }
    if (jm_session_open(&rt, t, kernels, ckpt, (uint64_t)seed, 1, &sets, (int)threads, NULL, who) != 0) goto done;
    open = 1;
    if (jm_modes_load_scope(&rt, classifier, scope, err, sizeof err) != 0) { fprintf(stderr, "%s: %s\n", who, err); goto done; }

    /* the generator's samples, chunk by chunk */
    for (int64_t done_n = 0, k = 0; done_n < n; done_n += chunk, k++) {
        int64_t m = n - done_n < chunk ? n - done_n : chunk;
        jm_gen_draw dr = { m, NULL, 0, 0, NAN, (uint64_t)seed + (uint64_t)k * 0x9E3779B97F4A7C15ull };
        if (jm_sample_gen_draw(&rt, &g, &dr, x, who) != 0 || jm_modes_classify(&rt, &d, x, m, ids, NULL, who) != 0) goto done;
        for (int64_t i = 0; i < m; i++) q[ids[i]]++;
    }
    double outside, kl = jm_modes_kl(q, p, nmodes, &outside);
    int64_t modes = jm_modes_covered(q, nmodes), p_modes = jm_modes_covered(p, nmodes);
    printf("%s: %" PRId64 " generator samples (seed %" PRId64 "): %" PRId64 " of %" PRId64 " modes, KL(q || p) %.4f nats", who, n, seed, modes,
           nmodes, kl);
    if (outside > 0) printf(" (%.4f of q on modes the training data lack, left out)", outside);
    printf("\n  training labels (%s): %" PRId64 " records, %" PRId64 " modes present\n", ds.path, ds.n, p_modes);

    /* the counter on the training records themselves */
    double triple = NAN, chan[64], dkl = NAN, doutside = NAN;
    int64_t dmodes = 0;
    if (m_check > 0) {
        jm_session_buf bb;
        if (jm_session_buf_alloc(&bb, m_check, d.per) != 0) { fprintf(stderr, "%s: out of memory\n", who); goto done; }
        int64_t real = jm_session_batch(&ds, 0, &bb);
        int crc = jm_modes_classify(&rt, &d, bb.x, real, ids, digits, who);
        int64_t right = 0, rch[64] = { 0 };
        for (int64_t i = 0; crc == 0 && i < real; i++) {
            right += ids[i] == bb.y[i];
            int64_t v = bb.y[i];
            for (int64_t c = d.C - 1; c >= 0; c--, v /= d.K) rch[c] += digits[i * d.C + c] == v % d.K;
        }
        jm_session_buf_free(&bb);
        if (crc != 0) goto done;
        int64_t *qd = calloc((size_t)nmodes, sizeof(int64_t));
        if (!qd || jm_modes_histogram(ids, real, nmodes, qd, err, sizeof err) != 0) { free(qd); fprintf(stderr, "%s: out of memory\n", who); goto done; }
        dmodes = jm_modes_covered(qd, nmodes);
        dkl = jm_modes_kl(qd, p, nmodes, &doutside);
        free(qd);
        triple = (double)right / (double)real;
        printf("  the counter on the first %" PRId64 " training records: all %lld digits right %.4f, per channel", real, (long long)d.C, triple);
        for (int64_t c = 0; c < d.C; c++) {
            chan[c] = (double)rch[c] / (double)real;
            printf(" %.4f", chan[c]);
        }
        printf("; %" PRId64 " modes, KL(q_data || p) %.4f nats\n", dmodes, dkl);
        if (triple < 0.5)
            fprintf(stderr, "%s: warning: the classifier reads all digits of only %.1f%% of the training records; is %s a trained digit classifier?\n",
                    who, 100 * triple, classifier);
    }
    rc = 0;
    if (json) {
        FILE *f = fopen(json, "w");
        if (!f) { fprintf(stderr, "%s: cannot write %s\n", who, json); rc = 1; goto done; }
        fprintf(f, "{\"samples\": %" PRId64 ", \"seed\": %" PRId64 ", \"modes\": %" PRId64 ", \"modes_total\": %" PRId64 ", \"kl_q_p\": %.6g, "
                   "\"q_outside_p\": %.6g,\n \"ckpt\": \"%s\", \"classifier\": \"%s\", \"data\": \"%s\", \"data_records\": %" PRId64 ", \"p_modes\": %" PRId64 ",\n",
                n, seed, modes, nmodes, kl, outside, ckpt ? ckpt : "", classifier, ds.path, ds.n, p_modes);
        if (m_check > 0) {
            fprintf(f, " \"data_check\": {\"records\": %" PRId64 ", \"all_digits_right\": %.6f, \"channel_accuracy\": [", m_check, triple);
            for (int64_t c = 0; c < d.C; c++) fprintf(f, "%s%.6f", c ? ", " : "", chan[c]);
            fprintf(f, "], \"modes\": %" PRId64 ", \"kl_q_p\": %.6g, \"q_outside_p\": %.6g},\n", dmodes, dkl, doutside);
        }
        fprintf(f, " \"mode_id\": \"channel 0 most significant: sum_c digit_c * %lld^(C-1-c)\",\n \"q_counts\": [", (long long)d.K);
        for (int64_t m = 0; m < nmodes; m++) fprintf(f, "%s%" PRId64, m ? (m % 25 ? ", " : ",\n  ") : "", q[m]);
        fprintf(f, "]}\n");
        if (fclose(f) != 0) { fprintf(stderr, "%s: cannot write %s\n", who, json); rc = 1; }
    }
done:
    if (open) jm_rt_close(&rt);
    jm_data_free(&ds);
    free(p);
    free(q);
    free(x);
    free(ids);
    free(digits);
    return rc;
}
