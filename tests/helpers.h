/* tests/helpers.h — small shared helpers for jemc's C tests: loading graph text
 * into a module, running a program in the interpreter, running commands. */
#ifndef JM_TEST_HELPERS_H
#define JM_TEST_HELPERS_H
#include "elab.h"
#include "interp.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

typedef struct {
    jm_arena arena;
    jm_diags d;
    jm_module *m;
    char *errors;                /* diagnostics text */
    size_t errlen;
    FILE *errf;
} jt_unit;

/* Elaborates `text`; on failure m is NULL and errors holds the diagnostics. */
static inline void jt_load(jt_unit *u, const char *text) {
    memset(u, 0, sizeof *u);
    u->errf = open_memstream(&u->errors, &u->errlen);
    jm_diag_init(&u->d, &u->arena, u->errf);
    u->m = jm_frontend_load_text(&u->d, "test.graph", text, strlen(text), NULL, 0);
    fflush(u->errf);
}

static inline void jt_unload(jt_unit *u) {
    fclose(u->errf);
    free(u->errors);
    jm_arena_free(&u->arena);
}

static inline const char *jt_env(const char *name, const char *def) {
    const char *v = getenv(name);
    return v && *v ? v : def;
}

/* Runs a shell command; captures stdout+stderr (up to cap bytes) into out;
   returns the exit status, or -1 when it did not exit normally. */
static inline int jt_run(const char *cmd, char *out, size_t cap) {
    char full[8192];
    snprintf(full, sizeof full, "%s 2>&1", cmd);
    FILE *p = popen(full, "r");
    if (!p) return -1;
    size_t n = 0;
    if (out && cap) {
        size_t r;
        while (n + 1 < cap && (r = fread(out + n, 1, cap - 1 - n, p)) > 0) n += r;
        out[n] = 0;
    }
    char sink[4096];
    while (fread(sink, 1, sizeof sink, p) > 0) {}
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}
#endif
