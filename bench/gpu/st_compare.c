/* st_compare.c — compares two safetensors files tensor by tensor, each tensor
 * at its own scale, by the rule the tests use (tests/compare_rule.h): on a GPU
 * machine, a program's outputs or new state against the CPU's reference files.
 * Needs nothing but runtime/engine/safetensors.c and libm (no LLVM).
 *
 *   st_compare [options] GOT.safetensors WANT.safetensors
 *     --tol T         value bound (default 1e-3, t_cuda's on a GPU); tensors
 *                     jc_value_tol calls ill-conditioned get max(T, 2e-2)
 *     --before S      the state both sides started from: every tensor of S also
 *                     in WANT has its change compared too (jc_change_err: max
 *                     --change-tol, default 0.5; rms --rms-tol, default 2e-3,
 *                     2e-2 for ill-conditioned tensors), except .grad_norm
 *     --exact         tensors must be bitwise equal (metadata not compared)
 *     --no-meta       do not compare the random-number position
 *     -v              one line per tensor
 *
 * Every tensor of WANT must be in GOT with the same dtype and shape, and GOT may
 * hold no other tensor. The metadata keys jemc.rng_* of WANT (the random-number
 * position a state file records) must be equal in GOT. Prints a line per
 * tensor out of bounds, then one summary line that names the worst tensor of
 * each kind (the largest error against its own bound) and its element, e.g.
 *   st_compare: FAIL (1 of 35 tensors off): value 0.01 > 0.001 in conv1.weight[5] (got 0.31, want 0.30); change ...
 * Exit 0 when all are within bounds, 1 on a mismatch, 2 when a file cannot be read. */
#include "engine/safetensors.h"
#include "compare_rule.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    double tol, change_tol, rms_tol;
    int exact, meta, verbose;
} opts;

/* the worst tensor so far, by error / bound */
typedef struct {
    double ratio, err, bound;
    char what[48], name[200];
    int64_t at;
    double got, want;
} worst;

static void note(worst *w, const char *what, const char *name, double err, double bound, int64_t at, double got, double want) {
    double r = bound > 0 ? err / bound : err > 0 ? INFINITY : 0;
    if (r > w->ratio || (r != r && w->ratio == w->ratio)) {
        w->ratio = r; w->err = err; w->bound = bound; w->at = at; w->got = got; w->want = want;
        snprintf(w->what, sizeof w->what, "%s", what);
        snprintf(w->name, sizeof w->name, "%s", name);
    }
}

static int64_t numel(const jm_st_tensor *t) {
    int64_t n = 1;
    for (int k = 0; k < t->rank; k++) n *= t->shape[k];
    return n;
}

/* the tensor's elements as doubles (jm_st_value: exact for every dtype jemc writes) */
static double *as_double(const jm_st_tensor *t) {
    int64_t n = numel(t);
    double *d = malloc((size_t)(n ? n : 1) * sizeof *d);
    if (!d) { fprintf(stderr, "st_compare: out of memory\n"); exit(2); }
    for (int64_t i = 0; i < n; i++) d[i] = jm_st_value(t, i);
    return d;
}

static int same_shape(const jm_st_tensor *a, const jm_st_tensor *b) {
    if (a->dtype != b->dtype || a->rank != b->rank) return 0;
    for (int k = 0; k < a->rank; k++) if (a->shape[k] != b->shape[k]) return 0;
    return 1;
}

/* the stored type for the change rule's one-spacing allowance */
static int rt_dtype(jm_st_dtype d) { return d == JM_ST_F32 ? JM_DT_F32 : d == JM_ST_F64 ? JM_DT_F64 : JM_DT_I64; }

static int compare(const jm_st_file *got, const jm_st_file *want, const jm_st_file *before, const opts *o, const char *gp) {
    int bad = 0, n = 0;
    worst w = { .ratio = -1 }, wc = { .ratio = -1 }, wr = { .ratio = -1 };
    for (int i = 0; i < want->n; i++) {
        const jm_st_tensor *tw = &want->t[i], *tg = jm_st_find(got, tw->name);
        n++;
        if (!tg) { printf("  %s: missing from %s\n", tw->name, gp); bad++; continue; }
        if (!same_shape(tg, tw)) { printf("  %s: dtype or shape differs\n", tw->name); bad++; continue; }
        if (o->exact) {
            if (tg->nbytes != tw->nbytes || memcmp(tg->data, tw->data, tw->nbytes) != 0) { printf("  %s: not bitwise equal\n", tw->name); bad++; }
            continue;
        }
        int64_t ne = numel(tw), at = 0;
        double *g = as_double(tg), *v = as_double(tw);
        double e = jc_value_err(g, JM_DT_F64, v, JM_DT_F64, ne, &at), tol = jc_value_tol(tw->name, o->tol);
        int off = !(e <= tol);
        note(&w, "value", tw->name, e, tol, at, ne ? g[at] : 0, ne ? v[at] : 0);
        if (o->verbose || off)
            printf("  %s: value %.3g (bound %g) at [%lld]: got %.9g, want %.9g\n", tw->name, e, tol, (long long)at, ne ? g[at] : 0, ne ? v[at] : 0);
        const jm_st_tensor *tb = before ? jm_st_find(before, tw->name) : NULL;
        if (tb && same_shape(tb, tw) && !jc_fresh_global(tw->name)) {
            double *b = as_double(tb), rms = 0, rtol = jc_value_tol(tw->name, o->rms_tol);
            int64_t ca = 0;
            double c = jc_change_err(g, b, JM_DT_F64, v, b, JM_DT_F64, rt_dtype(tw->dtype), ne, &ca, &rms);
            note(&wc, "change", tw->name, c, o->change_tol, ca, ne ? g[ca] - b[ca] : 0, ne ? v[ca] - b[ca] : 0);
            note(&wr, "change rms", tw->name, rms, rtol, 0, 0, 0);
            int coff = !(c <= o->change_tol) || !(rms <= rtol);
            if (o->verbose || coff)
                printf("  %s: change %.3g (bound %g) at [%lld]: got %.9g, want %.9g; rms %.3g (bound %g)\n", tw->name, c, o->change_tol,
                       (long long)ca, ne ? g[ca] - b[ca] : 0, ne ? v[ca] - b[ca] : 0, rms, rtol);
            off |= coff;
            free(b);
        }
        bad += off;
        free(g);
        free(v);
    }
    for (int i = 0; i < got->n; i++)
        if (!jm_st_find(want, got->t[i].name)) { printf("  %s: in %s but not expected\n", got->t[i].name, gp); bad++; }
    for (int i = 0; o->meta && !o->exact && i < want->nmeta; i++) {
        const char *k = want->meta[i].key, *gv = jm_st_meta_get(got, k);
        if (strncmp(k, "jemc.rng_", 9) != 0) continue;
        if (!gv || strcmp(gv, want->meta[i].value) != 0) {
            printf("  metadata %s: got %s, want %s\n", k, gv ? gv : "(none)", want->meta[i].value);
            bad++;
        }
    }
    /* the summary: the worst of each kind, by its ratio to its own bound (got and want
       where the worst is off) */
    if (bad) printf("st_compare: FAIL (%d of %d tensors off)", bad, n);
    else printf("st_compare: PASS (%d tensors%s)", n, o->exact ? ", bitwise" : "");
    if (!o->exact && *w.name) {
        printf(": value %.3g %s %g in %s[%lld]", w.err, w.err <= w.bound ? "<=" : ">", w.bound, w.name, (long long)w.at);
        if (!(w.err <= w.bound)) printf(" (got %.9g, want %.9g)", w.got, w.want);
    }
    if (!o->exact && *wc.name) {
        printf("; change %.3g %s %g in %s[%lld]", wc.err, wc.err <= wc.bound ? "<=" : ">", wc.bound, wc.name, (long long)wc.at);
        if (!(wc.err <= wc.bound)) printf(" (got %.9g, want %.9g)", wc.got, wc.want);
        printf(", rms %.3g %s %g in %s", wr.err, wr.err <= wr.bound ? "<=" : ">", wr.bound, wr.name);
    }
    printf("\n");
    return bad ? 1 : 0;
}

static void usage(void) {
    fprintf(stderr, "usage: st_compare [--tol T] [--before S.safetensors [--change-tol T] [--rms-tol T]] [--exact] [--no-meta] [-v] "
                    "GOT.safetensors WANT.safetensors\n");
    exit(2);
}

int main(int argc, char **argv) {
    opts o = { 1e-3, 0.5, 2e-3, 0, 1, 0 };
    const char *files[2] = { NULL, NULL }, *before_path = NULL;
    int nf = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        double *num = strcmp(a, "--tol") == 0 ? &o.tol : strcmp(a, "--change-tol") == 0 ? &o.change_tol : strcmp(a, "--rms-tol") == 0 ? &o.rms_tol : NULL;
        if (num) {
            char *end;
            if (i + 1 >= argc || (*num = strtod(argv[++i], &end), *end != 0) || !(*num >= 0)) {
                fprintf(stderr, "st_compare: %s needs a non-negative number\n", a);
                return 2;
            }
        } else if (strcmp(a, "--before") == 0) {
            if (i + 1 >= argc) usage();
            before_path = argv[++i];
        } else if (strcmp(a, "--exact") == 0) o.exact = 1;
        else if (strcmp(a, "--no-meta") == 0) o.meta = 0;
        else if (strcmp(a, "-v") == 0) o.verbose = 1;
        else if (a[0] == '-' && a[1]) { fprintf(stderr, "st_compare: unknown option '%s'\n", a); usage(); }
        else if (nf < 2) files[nf++] = a;
        else usage();
    }
    if (nf != 2) usage();
    jm_st_file got, want, before;
    memset(&before, 0, sizeof before);
    char err[1024];
    if (jm_st_read(files[0], &got, err, sizeof err) != 0) { fprintf(stderr, "st_compare: %s\n", err); return 2; }
    if (jm_st_read(files[1], &want, err, sizeof err) != 0) { fprintf(stderr, "st_compare: %s\n", err); jm_st_free(&got); return 2; }
    if (before_path && jm_st_read(before_path, &before, err, sizeof err) != 0) {
        fprintf(stderr, "st_compare: %s\n", err);
        jm_st_free(&got);
        jm_st_free(&want);
        return 2;
    }
    int rc = compare(&got, &want, before_path ? &before : NULL, &o, files[0]);
    jm_st_free(&got);
    jm_st_free(&want);
    jm_st_free(&before);
    return rc;
}
