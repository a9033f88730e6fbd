/* rt_args.c — see rt_args.h. */
#include "rt_args.h"
#include "engine/names.h"
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

void jm_args_help(FILE *f, const char *usage, const jm_arg *t, int nt) {
    fprintf(f, "%s\n\noptions:\n", usage);
    for (int i = 0; i < nt; i++) {
        char left[64];
        snprintf(left, sizeof left, "%s%s%s", t[i].name, t[i].kind == JM_ARG_FLAG ? "" : " ", t[i].kind == JM_ARG_FLAG ? "" : t[i].meta ? t[i].meta : "V");
        fprintf(f, "  %-24s %s\n", left, t[i].help);
    }
    fprintf(f, "  %-24s %s\n", "--help", "this text");
}

static int jm_args_value(const char *who, const jm_arg *a, const char *v) {
    char *end;
    errno = 0;
    switch (a->kind) {
    case JM_ARG_STR: *(const char **)a->dst = v; return 0;
    case JM_ARG_LIST: {
        jm_arg_list *l = a->dst;
        if (l->n >= 32) { fprintf(stderr, "%s: %s given more than 32 times\n", who, a->name); return -1; }
        l->v[l->n++] = v;
        return 0;
    }
    case JM_ARG_INT: {
        long long x = strtoll(v, &end, 10);
        if (!*v || *end || errno) { fprintf(stderr, "%s: %s needs an integer, got '%s'\n", who, a->name, v); return -1; }
        if (a->lo != a->hi && ((double)x < a->lo || (double)x > a->hi)) {
            fprintf(stderr, "%s: %s must be in [%.0f, %.0f], got %lld\n", who, a->name, a->lo, a->hi, x);
            return -1;
        }
        *(int64_t *)a->dst = x;
        return 0;
    }
    case JM_ARG_NUM: {
        double x = strtod(v, &end);
        if (!*v || *end || errno || !isfinite(x)) { fprintf(stderr, "%s: %s needs a number, got '%s'\n", who, a->name, v); return -1; }
        if (a->lo != a->hi && (x < a->lo || x > a->hi)) {
            fprintf(stderr, "%s: %s must be in [%g, %g], got %g\n", who, a->name, a->lo, a->hi, x);
            return -1;
        }
        *(double *)a->dst = x;
        return 0;
    }
    default: return -1;
    }
}

int jm_args_set(const char *who, const jm_arg *a, const char *v) {
    if (a->kind == JM_ARG_LIST) return -1;
    if (a->kind != JM_ARG_FLAG) return jm_args_value(who, a, v);
    if (strcmp(v, "0") != 0 && strcmp(v, "1") != 0) { fprintf(stderr, "%s: %s is a flag (1 or 0), got '%s'\n", who, a->name, v); return -1; }
    *(int *)a->dst = v[0] == '1';
    return 0;
}

void jm_args_format(const jm_arg *a, char *buf, size_t n) {
    switch (a->kind) {
    case JM_ARG_STR: {
        const char *s = *(const char *const *)a->dst;
        snprintf(buf, n, "%s", s ? s : "");
        return;
    }
    case JM_ARG_INT: snprintf(buf, n, "%lld", (long long)*(const int64_t *)a->dst); return;
    case JM_ARG_FLAG: snprintf(buf, n, "%d", *(const int *)a->dst != 0); return;
    case JM_ARG_NUM: {
        double x = *(const double *)a->dst;
        for (int p = 1; p <= 17; p++) {
            snprintf(buf, n, "%.*g", p, x);
            if (strtod(buf, NULL) == x) return;
        }
        return;
    }
    default: snprintf(buf, n, "%s", ""); return;
    }
}

int jm_args_parse(const char *who, int argc, char **argv, int first, const jm_arg *t, int nt,
                  const char **pos, int maxpos, int *npos, const char *usage) {
    return jm_args_parse_given(who, argc, argv, first, t, nt, pos, maxpos, npos, usage, NULL);
}

int jm_args_parse_given(const char *who, int argc, char **argv, int first, const jm_arg *t, int nt,
                        const char **pos, int maxpos, int *npos, const char *usage, int *given) {
    *npos = 0;
    for (int k = 0; given && k < nt; k++) given[k] = 0;
    for (int i = first; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) { jm_args_help(stdout, usage, t, nt); return 1; }
        if (a[0] != '-' || a[1] == 0) {
            if (*npos >= maxpos) { fprintf(stderr, "%s: unexpected argument '%s' (see --help)\n", who, a); return -1; }
            pos[(*npos)++] = a;
            continue;
        }
        /* --name=value or --name value */
        const char *eq = strchr(a, '=');
        size_t len = eq ? (size_t)(eq - a) : strlen(a);
        const jm_arg *hit = NULL;
        for (int k = 0; k < nt && !hit; k++) if (strlen(t[k].name) == len && strncmp(t[k].name, a, len) == 0) hit = &t[k];
        if (!hit) {
            const char *names[128];
            int n = 0;
            for (int k = 0; k < nt && n < 128; k++) names[n++] = t[k].name;
            char flag[128];
            snprintf(flag, sizeof flag, "%.*s", (int)len, a);
            const char *best = jm_closest_name(flag, names, n);
            fprintf(stderr, "%s: unknown option '%s'%s%s%s (see --help)\n", who, flag, best ? "; did you mean '" : "", best ? best : "", best ? "'?" : "");
            return -1;
        }
        if (given) given[hit - t] = 1;
        if (hit->kind == JM_ARG_FLAG) {
            if (eq) { fprintf(stderr, "%s: %s takes no value\n", who, hit->name); return -1; }
            *(int *)hit->dst = 1;
            continue;
        }
        const char *v = eq ? eq + 1 : (i + 1 < argc ? argv[++i] : NULL);
        if (!v) { fprintf(stderr, "%s: %s needs a value (%s)\n", who, hit->name, hit->meta ? hit->meta : "V"); return -1; }
        if (jm_args_value(who, hit, v) != 0) return -1;
    }
    return 0;
}
