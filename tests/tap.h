/* tests/tap.h — a tiny TAP producer for jemc's C tests, run by `prove`.
 *
 *   tap_plan(n)            "1..n" up front (or tap_done() at the end instead)
 *   ok(cond, fmt, ...)     one test point; prints diagnostics on failure
 *   is_int(a, b, name)     integer equality with both values shown on failure
 *   is_str(a, b, name)     string equality (NULL-safe) with both values shown
 *   is_near(a, b, rel, name)  |a-b| <= rel*max(|a|,|b|,1e-30)
 *   skip(n, reason)        n skipped points ("ok N # SKIP reason")
 *   skip_all(reason)       "1..0 # SKIP reason" and exit 0
 *   tap_done()             prints "1..N" if no plan was given, returns exit code
 */
#ifndef JM_TAP_H
#define JM_TAP_H
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int tap_n_run, tap_n_fail, tap_planned;

static inline void tap_plan(int n) { printf("1..%d\n", n); tap_planned = 1; }

static inline void tap_diag(const char *fmt, ...) {
    va_list ap; va_start(ap, fmt);
    char buf[4096]; vsnprintf(buf, sizeof buf, fmt, ap); va_end(ap);
    /* Every line of a diagnostic starts with '#', as TAP requires. */
    const char *p = buf;
    while (*p) {
        const char *nl = strchr(p, '\n');
        int len = nl ? (int)(nl - p) : (int)strlen(p);
        printf("# %.*s\n", len, p);
        p += len + (nl ? 1 : 0);
    }
}

static inline int tap_vok(int cond, const char *fmt, va_list ap) {
    char name[1024]; vsnprintf(name, sizeof name, fmt, ap);
    ++tap_n_run;
    if (!cond) ++tap_n_fail;
    printf("%sok %d - %s\n", cond ? "" : "not ", tap_n_run, name);
    fflush(stdout);
    return cond;
}

static inline int ok(int cond, const char *fmt, ...) {
    va_list ap; va_start(ap, fmt);
    int r = tap_vok(cond, fmt, ap); va_end(ap);
    return r;
}

static inline int is_int(long long got, long long want, const char *name) {
    int r = ok(got == want, "%s", name);
    if (!r) tap_diag("got %lld, expected %lld", got, want);
    return r;
}

static inline int is_str(const char *got, const char *want, const char *name) {
    int same = (got == NULL && want == NULL) ||
               (got && want && strcmp(got, want) == 0);
    int r = ok(same, "%s", name);
    if (!r) tap_diag("got:\n%s\nexpected:\n%s", got ? got : "(null)", want ? want : "(null)");
    return r;
}

static inline int is_near(double got, double want, double rel, const char *name) {
    double scale = fmax(fmax(fabs(got), fabs(want)), 1e-30);
    int r = ok(fabs(got - want) <= rel * scale, "%s", name);
    if (!r) tap_diag("got %.17g, expected %.17g (rel tol %g)", got, want, rel);
    return r;
}

static inline void skip(int n, const char *reason) {
    for (int i = 0; i < n; i++) printf("ok %d # SKIP %s\n", ++tap_n_run, reason);
}

static inline void skip_all(const char *reason) {
    printf("1..0 # SKIP %s\n", reason);
    exit(0);
}

static inline int tap_done(void) {
    if (!tap_planned) printf("1..%d\n", tap_n_run);
    return tap_n_fail ? 1 : 0;
}
#endif
