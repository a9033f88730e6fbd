/* diag.h — diagnostics with source locations.
 *
 * Every user-facing error is "file:line:col: error: message", followed by the
 * source line and a caret under the column, and optionally "note:" lines.
 * Errors are collected (several per run) up to a limit; nothing here aborts.
 * A warning has the same form ("warning:") but is not counted as an error, so
 * it never fails a compilation. */
#ifndef JM_DIAG_H
#define JM_DIAG_H
#include <stdio.h>
#include "arena.h"

typedef struct { int file; int line; int col; } jm_loc;   /* file < 0: no location */

typedef struct {
    const char *path;      /* as the user named it (or as resolved from an import) */
    const char *text;      /* NUL-terminated contents */
    size_t len;
} jm_source;

typedef struct {
    jm_arena *arena;
    jm_source *src; int nsrc, capsrc;
    int nerr, max_errors;
    const char **warned; int nwarned, capwarned;   /* warnings printed ("path:line:col: text") */
    FILE *out;             /* stderr by default */
} jm_diags;

void jm_diag_init(jm_diags *d, jm_arena *a, FILE *out);
int  jm_diag_add_source(jm_diags *d, const char *path, const char *text, size_t len);
/* Reads a whole file into a new source; -1 and *why set when it cannot. */
int  jm_diag_load_file(jm_diags *d, const char *path, const char **why);
void jm_diag_error(jm_diags *d, jm_loc loc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Prints a warning once: the same text at the same place again is not
   repeated (the front end elaborates a file a second time when a config
   constant is both a run-time knob and compiled in). At most max_errors
   different warnings are printed. */
void jm_diag_warning(jm_diags *d, jm_loc loc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void jm_diag_note(jm_diags *d, jm_loc loc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* "did you mean 'x'?" helper: the closest candidate by edit distance, or NULL. */
const char *jm_diag_closest(const char *name, const char *const *cands, int n);
int  jm_diag_too_many(const jm_diags *d);
extern const jm_loc jm_noloc;
#endif
