/* diag.c — see diag.h. */
#include "diag.h"
#include "engine/names.h"
#include <errno.h>
#include <sys/stat.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

const jm_loc jm_noloc = { -1, 0, 0 };

void jm_diag_init(jm_diags *d, jm_arena *a, FILE *out) {
    memset(d, 0, sizeof *d);
    d->arena = a;
    d->out = out ? out : stderr;
    d->max_errors = 20;
}

int jm_diag_add_source(jm_diags *d, const char *path, const char *text, size_t len) {
    jm_source s = { jm_arena_strdup(d->arena, path), text, len };
    JM_VEC_PUSH(d->arena, d->src, d->nsrc, d->capsrc, s);
    return d->nsrc - 1;
}

int jm_diag_load_file(jm_diags *d, const char *path, const char **why) {
    FILE *f = fopen(path, "rb");
    if (!f) { *why = strerror(errno); return -1; }
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(f);
        *why = S_ISDIR(st.st_mode) ? "it is a directory" : "not a regular file";
        return -1;
    }
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    for (;;) {
        if (n + 4096 > cap) {
            /* Graph files are text written by people; refuse absurd sizes early. */
            if (cap > (64u << 20)) { free(buf); fclose(f); *why = "file is larger than 64 MiB"; return -1; }
            cap *= 2;
            buf = realloc(buf, cap);
        }
        size_t r = fread(buf + n, 1, cap - n - 1, f);
        n += r;
        if (r == 0) break;
    }
    int err = ferror(f);
    fclose(f);
    if (err) { free(buf); *why = "read error"; return -1; }
    /* A NUL byte is kept: the lexer reports it with its line and column. */
    char *text = jm_arena_strndup(d->arena, buf, n);
    free(buf);
    return jm_diag_add_source(d, path, text, n);
}

static void jm_diag_show_line(jm_diags *d, jm_loc loc) {
    if (loc.file < 0 || loc.file >= d->nsrc) return;
    const jm_source *s = &d->src[loc.file];
    const char *p = s->text, *end = s->text + s->len;
    for (int l = 1; l < loc.line && p < end; l++) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        if (!nl) return;
        p = nl + 1;
    }
    const char *e = memchr(p, '\n', (size_t)(end - p));
    if (!e) e = end;
    int len = (int)(e - p);
    if (len > 0 && p[len - 1] == '\r') len--;
    /* a NUL byte (reported by the lexer) shows as a space, so the rest of the line still prints */
    fputs("  ", d->out);
    for (int i = 0; i < len; i++) fputc(p[i] ? p[i] : ' ', d->out);
    fputs("\n  ", d->out);
    /* Tabs in the source line are kept under the caret so it lines up. */
    for (int i = 0; i < loc.col - 1 && i < len; i++) fputc(p[i] == '\t' ? '\t' : ' ', d->out);
    fputs("^\n", d->out);
}

static void jm_diag_emit_head(jm_diags *d, jm_loc loc, const char *kind) {
    if (loc.file >= 0 && loc.file < d->nsrc)
        fprintf(d->out, "%s:%d:%d: %s: ", d->src[loc.file].path, loc.line, loc.col, kind);
    else
        fprintf(d->out, "jemc: %s: ", kind);
}

static void jm_diag_emit(jm_diags *d, jm_loc loc, const char *kind, const char *fmt, va_list ap) {
    jm_diag_emit_head(d, loc, kind);
    vfprintf(d->out, fmt, ap);
    fputc('\n', d->out);
    jm_diag_show_line(d, loc);
}

static void jm_diag_emit_text(jm_diags *d, jm_loc loc, const char *kind, const char *text) {
    jm_diag_emit_head(d, loc, kind);
    fprintf(d->out, "%s\n", text);
    jm_diag_show_line(d, loc);
}

void jm_diag_error(jm_diags *d, jm_loc loc, const char *fmt, ...) {
    d->nerr++;
    if (d->nerr > d->max_errors) return;
    va_list ap;
    va_start(ap, fmt);
    jm_diag_emit(d, loc, "error", fmt, ap);
    va_end(ap);
    if (d->nerr == d->max_errors) fprintf(d->out, "jemc: too many errors, stopping\n");
}

void jm_diag_warning(jm_diags *d, jm_loc loc, const char *fmt, ...) {
    if (d->nerr > d->max_errors) return;
    char text[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    const char *key = loc.file >= 0 && loc.file < d->nsrc
        ? jm_arena_printf(d->arena, "%s:%d:%d: %s", d->src[loc.file].path, loc.line, loc.col, text)
        : jm_arena_strdup(d->arena, text);
    for (int i = 0; i < d->nwarned; i++)
        if (strcmp(d->warned[i], key) == 0) return;
    if (d->nwarned >= d->max_errors) return;
    JM_VEC_PUSH(d->arena, d->warned, d->nwarned, d->capwarned, key);
    jm_diag_emit_text(d, loc, "warning", text);
}

void jm_diag_note(jm_diags *d, jm_loc loc, const char *fmt, ...) {
    if (d->nerr > d->max_errors) return;
    va_list ap;
    va_start(ap, fmt);
    jm_diag_emit(d, loc, "note", fmt, ap);
    va_end(ap);
}

int jm_diag_too_many(const jm_diags *d) { return d->nerr >= d->max_errors; }

const char *jm_diag_closest(const char *name, const char *const *cands, int n) {
    return jm_closest_name(name, cands, n);
}
