/* t_layout.c — the shape of the source tree, checked so it cannot drift:
 *   1. no source file of the project is over 1,500 lines (tests/ and generated
 *      files aside): a file past that does more than one job;
 *   2. runtime/ is in layers (runtime/README.md): the engine names no device
 *      and no application code (outside comments: no jm_gpu_/jm_cuda/cuda
 *      identifiers, no include of gpu/ or app/); gpu/ includes no app/ header;
 *   3. each runtime layer says what it owns (a README.md in its folder).
 * Runs from the repository root, like every test. */
#include "tap.h"
#include <ctype.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define JM_MAX_LINES 1500

static char *slurp(const char *path, long *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = malloc((size_t)n + 1);
    if (s && fread(s, 1, (size_t)n, f) != (size_t)n) { free(s); s = NULL; }
    fclose(f);
    if (s) s[n] = 0;
    if (len) *len = n;
    return s;
}

static int is_source(const char *name) {
    const char *dot = strrchr(name, '.');
    return dot && (strcmp(dot, ".c") == 0 || strcmp(dot, ".h") == 0 || strcmp(dot, ".def") == 0 || strcmp(dot, ".py") == 0 ||
                   strcmp(dot, ".sh") == 0);
}

static int count_lines(const char *s) {
    int n = 0;
    for (; *s; s++) n += *s == '\n';
    return n;
}

/* Calls fn on every source file under dir (recursively). */
static void walk(const char *dir, void (*fn)(const char *path, void *ctx), void *ctx) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char path[1024];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        DIR *sub = opendir(path);
        if (sub) { closedir(sub); walk(path, fn, ctx); continue; }
        if (is_source(e->d_name)) fn(path, ctx);
    }
    closedir(d);
}

typedef struct { int files, over; char worst[1024]; int worst_lines; } size_ctx;

static void check_size(const char *path, void *vctx) {
    size_ctx *c = vctx;
    char *s = slurp(path, NULL);
    if (!s) return;
    int n = count_lines(s);
    free(s);
    c->files++;
    if (n > JM_MAX_LINES) {
        c->over++;
        tap_diag("%s has %d lines (the limit is %d): split it by job", path, n, JM_MAX_LINES);
    }
    if (n > c->worst_lines) { c->worst_lines = n; snprintf(c->worst, sizeof c->worst, "%s", path); }
}

/* C source with comments blanked out (string literals kept). */
static void strip_comments(char *s) {
    for (char *p = s; *p; p++) {
        if (*p == '"' || *p == '\'') {
            char q = *p++;
            while (*p && *p != q) { if (*p == '\\' && p[1]) p++; p++; }
            if (!*p) break;
        } else if (p[0] == '/' && p[1] == '*') {
            char *e = strstr(p + 2, "*/");
            char *end = e ? e + 2 : p + strlen(p);
            for (; p < end; p++) if (*p != '\n') *p = ' ';
            p--;
        } else if (p[0] == '/' && p[1] == '/') {
            for (; *p && *p != '\n'; p++) *p = ' ';
            if (!*p) break;
        }
    }
}

/* The first forbidden word of `words` in path's code (comments aside), or NULL;
   *line gets its line. A word matches case-insensitively at an identifier start. */
static const char *forbidden_in(const char *path, const char *const *words, int *line) {
    char *s = slurp(path, NULL);
    if (!s) return NULL;
    strip_comments(s);
    const char *hit = NULL;
    for (char *p = s; *p && !hit; p++) {
        if (p > s && (isalnum((unsigned char)p[-1]) || p[-1] == '_')) continue;
        for (int i = 0; words[i]; i++)
            if (strncasecmp(p, words[i], strlen(words[i])) == 0) {
                hit = words[i];
                *line = 1;
                for (char *q = s; q < p; q++) *line += *q == '\n';
                break;
            }
    }
    free(s);
    return hit;
}

typedef struct { const char *const *words; const char *rule; int bad; } layer_ctx;

static void check_layer(const char *path, void *vctx) {
    layer_ctx *c = vctx;
    int line = 0;
    const char *w = forbidden_in(path, c->words, &line);
    if (w) {
        c->bad++;
        tap_diag("%s:%d: '%s': %s", path, line, w, c->rule);
    }
}

int main(void) {
    /* 1. file sizes */
    const char *const roots[] = { "compiler", "codegen", "runtime", "tools", "bench", "examples" };
    size_ctx sc = { 0, 0, "", 0 };
    for (size_t i = 0; i < sizeof roots / sizeof *roots; i++) walk(roots[i], check_size, &sc);
    ok(sc.files > 50, "the source tree is found from the repository root (%d files)", sc.files);
    ok(sc.over == 0, "no source file is over %d lines (largest: %s, %d lines)", JM_MAX_LINES, sc.worst, sc.worst_lines);

    /* 2. layers: the engine names no device and no application code */
    const char *const engine_words[] = { "jm_gpu", "jm_cuda", "jm_device_cuda", "cuda", "cublas", "cudnn", "jm_cli", "jm_train",
                                         "jm_sample", "jm_eval", "jm_session", "#include \"gpu/", "#include \"app/",
                                         "#include \"../gpu/", "#include \"../app/", "#include \"dist/", "#include <mpi.h>", NULL };
    layer_ctx ec = { engine_words, "the engine must not name a device's or the application's code (runtime/README.md)", 0 };
    walk("runtime/engine", check_layer, &ec);
    ok(ec.bad == 0, "runtime/engine names no GPU function and no application code");
    const char *const gpu_words[] = { "#include \"app/", "#include \"../app/", "jm_cli", "jm_train", "jm_sample", "jm_eval", "jm_session", NULL };
    layer_ctx gc = { gpu_words, "a device must not reach into the application (runtime/README.md)", 0 };
    walk("runtime/gpu", check_layer, &gc);
    ok(gc.bad == 0, "runtime/gpu includes nothing of runtime/app");
    /* the transport beside gpu/: neither the application nor a device */
    const char *const dist_words[] = { "#include \"app/", "#include \"../app/", "#include \"gpu/", "#include \"../gpu/", "jm_cli", "jm_train",
                                       "jm_sample", "jm_eval", "jm_session", "jm_gpu", NULL };
    layer_ctx dc = { dist_words, "the transport must not reach into the application or a device (runtime/README.md)", 0 };
    walk("runtime/dist", check_layer, &dc);
    ok(dc.bad == 0, "runtime/dist includes nothing of runtime/app or runtime/gpu");

    /* 3. every layer says what it owns */
    const char *const layers[] = { "runtime/README.md", "runtime/engine/README.md", "runtime/gpu/README.md", "runtime/dist/README.md",
                                   "runtime/app/README.md" };
    for (size_t i = 0; i < sizeof layers / sizeof *layers; i++) {
        long n = 0;
        char *s = slurp(layers[i], &n);
        ok(s && n > 200, "%s says what its layer owns and may include", layers[i]);
        free(s);
    }
    return tap_done();
}
