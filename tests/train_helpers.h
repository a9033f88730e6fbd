/* tests/train_helpers.h — the scaffolding of the tests of a generated
 * executable's train and sample commands (t_train.c, t_guard.c, t_resume.c,
 * t_vera_train.c): synthetic IDX data, running a command with its output
 * captured, and reading checkpoints (bitwise comparison, metadata, finiteness)
 * and PNG sizes.
 *
 * Each of those tests is one translation unit, so this header holds the state
 * they all use: `out` (the last command's stdout and stderr) and `jemc` (the
 * compiler, from $JEMC), and `run_in` (when set, commands run in that
 * directory, so a run whose --out was not given writes there, not in ./). */
#ifndef JM_TRAIN_HELPERS_H
#define JM_TRAIN_HELPERS_H
#include "helpers.h"
#include "engine/safetensors.h"
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char out[65536];
static const char *jemc;
static const char *run_in;

static inline void put_be32(FILE *f, uint32_t v) {
    unsigned char b[4] = { (unsigned char)(v >> 24), (unsigned char)(v >> 16), (unsigned char)(v >> 8), (unsigned char)v };
    fwrite(b, 1, 4, f);
}

/* n 8x8 images: class c lights quadrant c (plus a little texture), labels
   c = i % 4; the last `truncate` images are left out (a damaged file) */
static inline void write_idx(const char *images, const char *labels, int n, int truncate) {
    FILE *f = fopen(images, "wb");
    put_be32(f, 0x803); put_be32(f, (uint32_t)n); put_be32(f, 8); put_be32(f, 8);
    for (int i = 0; i < n - truncate; i++)
        for (int p = 0; p < 64; p++) {
            int r = p / 8, c = p % 8, q = (r >= 4) * 2 + (c >= 4);
            fputc(q == i % 4 ? 200 + (i * 7 + p) % 56 : (i * 13 + p * 5) % 40, f);
        }
    fclose(f);
    f = fopen(labels, "wb");
    put_be32(f, 0x801); put_be32(f, (uint32_t)n);
    for (int i = 0; i < n; i++) fputc(i % 4, f);
    fclose(f);
}

/* runs a shell command (in run_in when set); its stdout and stderr into `out`;
   the exit status */
static inline int run(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static inline int run(const char *fmt, ...) {
    char cmd[4096];
    int n = run_in ? snprintf(cmd, sizeof cmd, "cd %s && ", run_in) : 0;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd + n, sizeof cmd - (size_t)n, fmt, ap);
    va_end(ap);
    return jt_run(cmd, out, sizeof out);
}

/* a whole file (NUL-terminated; *len its length when len is given), or NULL */
static inline char *slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 4096, n = 0, r;
    char *b = malloc(cap + 1);
    while (b && (r = fread(b + n, 1, cap - n, f)) > 0) {
        n += r;
        if (n == cap) { char *nb = realloc(b, 2 * cap + 1); if (!nb) { free(b); b = NULL; break; } b = nb; cap *= 2; }
    }
    fclose(f);
    if (b) b[n] = 0;
    if (len) *len = n;
    return b;
}

/* every tensor of two safetensors files byte-identical, the same names and at
   least one; why says which differs, or how many were compared */
static inline int same_tensors(const char *a, const char *b, char *why, size_t n) {
    jm_st_file fa, fb;
    char err[512];
    memset(&fa, 0, sizeof fa);
    memset(&fb, 0, sizeof fb);
    if (jm_st_read(a, &fa, err, sizeof err) || jm_st_read(b, &fb, err, sizeof err)) { snprintf(why, n, "%s", err); jm_st_free(&fa); return 0; }
    int same = fa.n == fb.n && fa.n > 0;
    if (!same) snprintf(why, n, "%d tensors against %d", fa.n, fb.n);
    for (int i = 0; same && i < fa.n; i++) {
        const jm_st_tensor *t = jm_st_find(&fb, fa.t[i].name);
        same = t && t->nbytes == fa.t[i].nbytes && memcmp(t->data, fa.t[i].data, t->nbytes) == 0;
        if (!same) snprintf(why, n, "tensor %s differs", fa.t[i].name);
    }
    if (same) snprintf(why, n, "%d tensors", fa.n);
    jm_st_free(&fa);
    jm_st_free(&fb);
    return same;
}

/* metadata `key` of a checkpoint into buf (buf "" when absent); -1 when the
   file is unreadable, 0 when the key is absent, 1 when present */
static inline int meta_read(const char *path, const char *key, char *buf, size_t n) {
    jm_st_file f;
    char err[512];
    memset(&f, 0, sizeof f);
    buf[0] = 0;
    if (jm_st_read(path, &f, err, sizeof err) != 0) return -1;
    const char *v = jm_st_meta_get(&f, key);
    if (v) snprintf(buf, n, "%s", v);
    jm_st_free(&f);
    return v != NULL;
}

/* the metadata as buf, or NULL (buf "") when absent or unreadable */
static inline const char *meta(const char *path, const char *key, char *buf, size_t n) {
    return meta_read(path, key, buf, n) == 1 ? buf : NULL;
}

/* the same, always text for a message: "(none)" when absent, "(unreadable)" */
static inline const char *meta_text(const char *path, const char *key, char *buf, size_t n) {
    int r = meta_read(path, key, buf, n);
    if (r != 1) snprintf(buf, n, "%s", r ? "(unreadable)" : "(none)");
    return buf;
}

/* every F32 value of a checkpoint finite (parameters, moments, buffer): 1; 0
   if not or unreadable, why (when given) says where */
static inline int all_finite(const char *path, char *why, size_t n) {
    jm_st_file f;
    char err[512];
    memset(&f, 0, sizeof f);
    if (jm_st_read(path, &f, err, sizeof err) != 0) { if (why) snprintf(why, n, "%s", err); return 0; }
    int fin = 1;
    for (int i = 0; i < f.n && fin; i++)
        if (f.t[i].dtype == JM_ST_F32)
            for (size_t k = 0; k < f.t[i].nbytes / 4 && fin; k++)
                if (!isfinite(((const float *)f.t[i].data)[k])) { fin = 0; if (why) snprintf(why, n, "%s[%zu] is not finite", f.t[i].name, k); }
    jm_st_free(&f);
    return fin;
}

/* the width (field 0) or height (field 1) of a PNG in dir d (its IHDR), or -1 */
static inline int png_dim(const char *d, const char *name, int field) {
    char p[1200];
    unsigned char h[24];
    snprintf(p, sizeof p, "%s/%s", d, name);
    FILE *f = fopen(p, "rb");
    if (!f) return -1;
    size_t got = fread(h, 1, sizeof h, f);
    fclose(f);
    if (got != sizeof h || memcmp(h + 12, "IHDR", 4) != 0) return -1;
    const unsigned char *v = h + 16 + 4 * field;
    return (v[0] << 24) | (v[1] << 16) | (v[2] << 8) | v[3];
}
static inline int png_height(const char *d, const char *name) { return png_dim(d, name, 1); }
static inline int png_width(const char *d, const char *name) { return png_dim(d, name, 0); }
#endif
