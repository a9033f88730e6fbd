/* data.c — see data.h.
 *
 * Binary formats (IDX, CIFAR) are read in three steps so that a corrupt file costs little:
 *   1. the header (IDX) or the file size (CIFAR) fixes the record count and size, and the
 *      file size must match it exactly (no truncated record, no trailing bytes);
 *   2. only then are x and y allocated, for min(n, limit) records;
 *   3. records are streamed through a small buffer, labels checked as they arrive.
 * CSV is parsed line by line into growing arrays. Every error is reported once, by the
 * function that finds it, and propagated as -1; jm_data_load frees what was built. */
#include "data.h"
#include "engine/philox.h"
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

/* Philox stream ids of the loader's draws (see philox.h); fixed forever, since changing
   one changes every shuffled order and augmented batch. */
#define JM_DATA_STREAM_SHUFFLE 0x5d1a0001u
#define JM_DATA_STREAM_AUGMENT 0x5d1a0002u
#define JM_DATA_STREAM_NOISE   0x5d1a0003u

#define JM_DATA_CIFAR10_REC  3073
#define JM_DATA_CIFAR100_REC 3074
#define JM_DATA_CIFAR_PIXELS 3072
#define JM_DATA_IDX_IMAGES   0x00000803u
#define JM_DATA_IDX_LABELS   0x00000801u
#define JM_DATA_IDX_IMAGES4  0x00000804u   /* n, c, rows, cols */
#define JM_DATA_IDX_LABELS32 0x00000c01u   /* big-endian int32 labels */
/* Records are read through a buffer of about this many bytes. */
#define JM_DATA_CHUNK (1 << 20)

/* ------------------------------------------------------------------ small helpers */

static int jm_data_fail(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int jm_data_fail(char *err, size_t errlen, const char *fmt, ...) {
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return -1;
}

static uint32_t jm_data_be32(const uint8_t *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

/* Pixel byte -> [-1, 1], computed in double so that 0 -> -1 and 255 -> 1 exactly. */
static void jm_data_scale_table(float t[256]) {
    for (int v = 0; v < 256; v++) t[v] = (float)((double)v / 255.0 * 2.0 - 1.0);
}

static const char *jm_data_basename(const char *path) {
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

/* Whether the file name ends in ext (case-insensitive, ext with its dot). */
static int jm_data_has_ext(const char *path, const char *ext) {
    const char *b = jm_data_basename(path);
    size_t n = strlen(b), k = strlen(ext);
    return n > k && strcasecmp(b + n - k, ext) == 0;
}

static int jm_data_is_dir(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISDIR(sb.st_mode);
}

static int jm_data_is_file(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISREG(sb.st_mode);
}

/* Opens a regular file for reading and returns its size. NULL with err set otherwise. */
static FILE *jm_data_open(const char *path, int64_t *size, char *err, size_t errlen) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        jm_data_fail(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    struct stat sb;
    if (fstat(fileno(f), &sb) != 0) {
        jm_data_fail(err, errlen, "%s: cannot stat: %s", path, strerror(errno));
        fclose(f);
        return NULL;
    }
    /* The size decides the record count (CIFAR) and is checked against headers, so a pipe
       or device, whose size is unknown, cannot be read. */
    if (!S_ISREG(sb.st_mode)) {
        jm_data_fail(err, errlen, "%s: %s", path, S_ISDIR(sb.st_mode) ? "is a directory" : "not a regular file");
        fclose(f);
        return NULL;
    }
    *size = (int64_t)sb.st_size;
    return f;
}

/* Reads exactly n header bytes at the start of f. */
static int jm_data_read_header(FILE *f, const char *path, uint8_t *buf, size_t n, char *err, size_t errlen) {
    if (fread(buf, 1, n, f) != n)
        return jm_data_fail(err, errlen, "%s: cannot read the header: %s", path,
                            ferror(f) ? strerror(errno) : "unexpected end of file");
    return 0;
}

/* x and y for n records of chw values each (n, chw > 0; the caller has checked the file
   holds them, so the sizes are bounded by the file's). */
static int jm_data_alloc(jm_dataset *ds, const char *path, int64_t n, int64_t chw, char *err, size_t errlen) {
    ds->x = malloc((size_t)(n * chw) * sizeof(float));
    ds->y = malloc((size_t)n * sizeof(int64_t));
    if (!ds->x || !ds->y)
        return jm_data_fail(err, errlen, "%s: out of memory for %lld records of %lld values", path, (long long)n,
                            (long long)chw);
    return 0;
}

/* ------------------------------------------------------------------ fixed-size records */

/* One label byte of a record and its valid range. */
typedef struct { int at, max; const char *name; } jm_data_label;

/* Where things are in a fixed-size record. */
typedef struct {
    const char *path;          /* for messages */
    size_t recsize;            /* bytes per record */
    size_t pix_at, npix;       /* pixels [pix_at, pix_at + npix), stored scaled, in file order */
    jm_data_label labels[2];   /* labels to check; labels[use] becomes y */
    int nlabels, use;
} jm_data_layout;

/* Checks the labels of record r and stores the one used. */
static int jm_data_take_labels(const jm_data_layout *L, const uint8_t *rec, int64_t r, int64_t *y, int *max_label,
                               char *err, size_t errlen) {
    for (int k = 0; k < L->nlabels; k++) {
        int v = rec[L->labels[k].at];
        if (v > L->labels[k].max)
            return jm_data_fail(err, errlen, "%s: record %lld: %s %d, expected 0..%d", L->path, (long long)r,
                                L->labels[k].name, v, L->labels[k].max);
        if (k == L->use) {
            *y = v;
            if (v > *max_label) *max_label = v;
        }
    }
    return 0;
}

/* Streams n records from f's current position into x (npix values each) and y (when the
   layout has labels), tracking the largest label used. */
static int jm_data_read_records(FILE *f, const jm_data_layout *L, int64_t n, float *x, int64_t *y, int *max_label,
                                char *err, size_t errlen) {
    float scale[256];
    jm_data_scale_table(scale);
    size_t per = JM_DATA_CHUNK / L->recsize ? JM_DATA_CHUNK / L->recsize : 1;
    uint8_t *buf = malloc(per * L->recsize);
    if (!buf) return jm_data_fail(err, errlen, "%s: out of memory for the read buffer", L->path);
    int rc = 0;
    for (int64_t r = 0; r < n && rc == 0;) {
        size_t k = (size_t)(n - r) < per ? (size_t)(n - r) : per;
        size_t got = fread(buf, L->recsize, k, f);
        /* The size was checked, so a short read means a failing disk or a file that shrank. */
        if (got < k) {
            rc = jm_data_fail(err, errlen, "%s: cannot read record %lld: %s", L->path, (long long)(r + (int64_t)got),
                              ferror(f) ? strerror(errno) : "unexpected end of file");
            break;
        }
        for (size_t j = 0; j < k && rc == 0; j++, r++) {
            const uint8_t *rec = buf + j * L->recsize;
            if (L->nlabels) rc = jm_data_take_labels(L, rec, r, &y[r], max_label, err, errlen);
            if (!L->npix) continue;    /* a labels file: x is NULL */
            float *xr = x + r * (int64_t)L->npix;
            for (size_t p = 0; p < L->npix; p++) xr[p] = scale[rec[L->pix_at + p]];
        }
    }
    free(buf);
    return rc;
}

/* The file must hold exactly header + n records: names the first incomplete record, or the
   bytes after the last one. */
static int jm_data_check_size(const char *path, int64_t size, int64_t header, int64_t n, int64_t recsize, char *err,
                              size_t errlen) {
    int64_t want = header + n * recsize;
    if (size < want)
        return jm_data_fail(err, errlen,
                            "%s: truncated at record %lld of %lld (the file has %lld bytes, the header declares %lld)",
                            path, (long long)((size - header) / recsize), (long long)n, (long long)size,
                            (long long)want);
    if (size > want)
        return jm_data_fail(err, errlen, "%s: %lld bytes after the last record (record %lld; the header declares %lld records)",
                            path, (long long)(size - want), (long long)(n - 1), (long long)n);
    return 0;
}

static int64_t jm_data_take(int64_t n, int64_t limit) { return limit > 0 && limit < n ? limit : n; }

/* ------------------------------------------------------------------ IDX */

/* The labels file next to an images file: "images-idx3" (or "images-idx4") -> "labels-idx1"
   in the file name (MNIST naming; also the "images.idx3" spelling some mirrors use). */
static int jm_data_idx_labels_path(const char *images, char *out, size_t outlen, char *err, size_t errlen) {
    static const char *const from[] = {"images-idx3", "images.idx3", "images-idx4", "images.idx4"},
                             *const to[] = {"labels-idx1", "labels.idx1", "labels-idx1", "labels.idx1"};
    const char *base = jm_data_basename(images);
    for (int k = 0; k < 4; k++) {
        const char *hit = strstr(base, from[k]);
        if (!hit) continue;
        int m = snprintf(out, outlen, "%.*s%s%s", (int)(hit - images), images, to[k], hit + strlen(from[k]));
        if (m < 0 || (size_t)m >= outlen) return jm_data_fail(err, errlen, "%s: path too long", images);
        if (!jm_data_is_file(out))
            return jm_data_fail(err, errlen, "%s: its labels file %s does not exist; pass the labels file", images, out);
        return 0;
    }
    return jm_data_fail(err, errlen,
                        "%s: cannot derive the labels file (the name has no 'images-idx3' or 'images-idx4' to replace "
                        "by 'labels-idx1'); pass the labels file",
                        images);
}

/* Opens an IDX file and reads its header into hdr (room for 20 bytes): the magic, then one
   u32 per dimension. The magic must be one of magics[0..nm) (its low byte is the number of
   dimensions, so it fixes the header's length) and the record count (bytes 4..7) must not
   be 0. *hlen gets the header's length. */
static FILE *jm_data_idx_open(const char *path, const uint32_t *magics, int nm, const char *what, uint8_t *hdr,
                              int64_t *hlen, int64_t *size, char *err, size_t errlen) {
    FILE *f = jm_data_open(path, size, err, errlen);
    if (!f) return NULL;
    int rc = 0, k = 0;
    char want[64];
    if (nm == 1) snprintf(want, sizeof want, "0x%08x", magics[0]);
    else snprintf(want, sizeof want, "0x%08x or 0x%08x", magics[0], magics[1]);
    if (*size < 4)
        rc = jm_data_fail(err, errlen, "%s: %lld bytes, too short for an IDX %s header", path, (long long)*size, what);
    else if (jm_data_read_header(f, path, hdr, 4, err, errlen) != 0)
        rc = -1;
    if (rc == 0) {
        for (k = 0; k < nm && jm_data_be32(hdr) != magics[k]; k++) {}
        if (k == nm)
            rc = jm_data_fail(err, errlen, "%s: not an IDX %s file (magic 0x%08x, expected %s)", path, what,
                              jm_data_be32(hdr), want);
    }
    if (rc == 0) {
        *hlen = 4 + 4 * (int64_t)(magics[k] & 0xff);
        if (*size < *hlen)
            rc = jm_data_fail(err, errlen, "%s: %lld bytes, too short for an IDX %s header (%lld bytes)", path,
                              (long long)*size, what, (long long)*hlen);
        else if (jm_data_read_header(f, path, hdr + 4, (size_t)(*hlen - 4), err, errlen) != 0)
            rc = -1;
        else if (jm_data_be32(hdr + 4) == 0)
            rc = jm_data_fail(err, errlen, "%s: no records (the header declares 0)", path);
    }
    if (rc) {
        fclose(f);
        return NULL;
    }
    return f;
}

/* n big-endian int32 labels (IDX type 0x0C) from f's current position into y, each in
   0..JM_DATA_MAX_LABEL (a negative or huge one is a corrupt file, not a class). */
static int jm_data_idx_i32_labels(FILE *f, const char *path, int64_t n, int64_t *y, int *max_label, char *err,
                                  size_t errlen) {
    uint8_t buf[4096];
    for (int64_t r = 0; r < n;) {
        size_t k = (size_t)(n - r) < sizeof buf / 4 ? (size_t)(n - r) : sizeof buf / 4;
        size_t got = fread(buf, 4, k, f);
        if (got < k)
            return jm_data_fail(err, errlen, "%s: cannot read label %lld: %s", path, (long long)(r + (int64_t)got),
                                ferror(f) ? strerror(errno) : "unexpected end of file");
        for (size_t j = 0; j < k; j++, r++) {
            int32_t v = (int32_t)jm_data_be32(buf + 4 * j);
            if (v < 0 || v > JM_DATA_MAX_LABEL)
                return jm_data_fail(err, errlen, "%s: record %lld: label %d, expected 0..%d", path, (long long)r, (int)v,
                                    JM_DATA_MAX_LABEL);
            y[r] = v;
            if (v > *max_label) *max_label = v;
        }
    }
    return 0;
}

/* Images: magic 0x00000803 (n, rows, cols: one channel) or 0x00000804 (n, c, rows, cols:
   c planes per record, already CHW), u8 pixels. Labels: 0x00000801 (u8) or 0x00000C01
   (big-endian int32, for more than 256 classes, e.g. StackMNIST's 1,000 modes). */
static int jm_data_load_idx(const char *path, const jm_data_opts *o, jm_dataset *ds, char *err, size_t errlen) {
    static const uint32_t img_magics[] = {JM_DATA_IDX_IMAGES, JM_DATA_IDX_IMAGES4},
                          lab_magics[] = {JM_DATA_IDX_LABELS, JM_DATA_IDX_LABELS32};
    uint8_t hdr[20], lhdr[8];
    int64_t size, lsize, hlen, lhlen;
    char lpath[1024];
    FILE *f = jm_data_idx_open(path, img_magics, 2, "images", hdr, &hlen, &size, err, errlen), *lf = NULL;
    if (!f) return -1;
    int four = hlen == 20;
    int64_t n = jm_data_be32(hdr + 4), chans = four ? jm_data_be32(hdr + 8) : 1;
    int64_t rows = jm_data_be32(hdr + (four ? 12 : 8)), cols = jm_data_be32(hdr + (four ? 16 : 12));
    int rc = 0;
    /* each side first, so that the product cannot overflow */
    if (rows == 0 || cols == 0 || chans == 0 || rows > JM_DATA_MAX_PIXELS || cols > JM_DATA_MAX_PIXELS ||
        chans > JM_DATA_MAX_PIXELS || rows * cols > JM_DATA_MAX_PIXELS || chans * rows * cols > JM_DATA_MAX_PIXELS) {
        if (four)
            rc = jm_data_fail(err, errlen, "%s: absurd image size %lldx%lldx%lld (the header is corrupt?)", path,
                              (long long)chans, (long long)rows, (long long)cols);
        else
            rc = jm_data_fail(err, errlen, "%s: absurd image size %lldx%lld (the header is corrupt?)", path,
                              (long long)rows, (long long)cols);
    } else {
        rc = jm_data_check_size(path, size, hlen, n, chans * rows * cols, err, errlen);
    }
    if (rc == 0 && o->labels) {
        int m = snprintf(lpath, sizeof lpath, "%s", o->labels);
        if (m < 0 || (size_t)m >= sizeof lpath) rc = jm_data_fail(err, errlen, "%s: path too long", o->labels);
    } else if (rc == 0) {
        rc = jm_data_idx_labels_path(path, lpath, sizeof lpath, err, errlen);
    }
    if (rc == 0) {
        lf = jm_data_idx_open(lpath, lab_magics, 2, "labels", lhdr, &lhlen, &lsize, err, errlen);
        rc = lf ? 0 : -1;
    }
    int wide = rc == 0 && jm_data_be32(lhdr) == JM_DATA_IDX_LABELS32;
    if (rc == 0 && (int64_t)jm_data_be32(lhdr + 4) != n)
        rc = jm_data_fail(err, errlen, "%s has %lld images but its labels file %s has %lld labels", path, (long long)n,
                          lpath, (long long)jm_data_be32(lhdr + 4));
    if (rc == 0) rc = jm_data_check_size(lpath, lsize, 8, n, wide ? 4 : 1, err, errlen);
    int64_t take = jm_data_take(n, o->limit), per = chans * rows * cols;
    if (rc == 0) rc = jm_data_alloc(ds, path, take, per, err, errlen);
    int max_label = 0;
    if (rc == 0) {
        jm_data_layout img = {path, (size_t)per, 0, (size_t)per, {{0, 0, NULL}}, 0, 0};
        rc = jm_data_read_records(f, &img, take, ds->x, NULL, &max_label, err, errlen);
    }
    if (rc == 0 && wide) {
        rc = jm_data_idx_i32_labels(lf, lpath, take, ds->y, &max_label, err, errlen);
    } else if (rc == 0) {
        /* IDX declares no class count: every byte is a valid label. */
        jm_data_layout lab = {lpath, 1, 0, 0, {{0, 255, "label"}}, 1, 0};
        rc = jm_data_read_records(lf, &lab, take, NULL, ds->y, &max_label, err, errlen);
    }
    fclose(f);
    if (lf) fclose(lf);
    if (rc) return -1;
    ds->n = take;
    ds->c = (int)chans;
    ds->h = (int)rows;
    ds->w = (int)cols;
    /* MNIST-style sets have 10 classes; a subset that lacks the top digits keeps 10. */
    ds->classes = max_label + 1 > 10 ? max_label + 1 : 10;
    ds->pad_value = -1.0f;
    return 0;
}

/* ------------------------------------------------------------------ CIFAR */

static int jm_data_load_cifar(const char *path, const jm_data_opts *o, int hundred, jm_dataset *ds, char *err,
                              size_t errlen) {
    int64_t size, rec = hundred ? JM_DATA_CIFAR100_REC : JM_DATA_CIFAR10_REC;
    FILE *f = jm_data_open(path, &size, err, errlen);
    if (!f) return -1;
    int rc = 0;
    if (size == 0)
        rc = jm_data_fail(err, errlen, "%s: no records (the file is empty)", path);
    else if (size % rec)
        rc = jm_data_fail(err, errlen, "%s: truncated record %lld (got %lld of %lld bytes)", path,
                          (long long)(size / rec), (long long)(size % rec), (long long)rec);
    int64_t take = jm_data_take(size / rec, o->limit);
    if (rc == 0) rc = jm_data_alloc(ds, path, take, JM_DATA_CIFAR_PIXELS, err, errlen);
    int max_label = 0;
    if (rc == 0) {
        /* The planes are R, G, B, each 32x32 row-major: already CHW. */
        jm_data_layout L = {path, (size_t)rec, (size_t)(rec - JM_DATA_CIFAR_PIXELS), JM_DATA_CIFAR_PIXELS,
                            {{0, 9, "label"}}, 1, 0};
        if (hundred) {
            L.labels[0] = (jm_data_label){0, 19, "coarse label"};
            L.labels[1] = (jm_data_label){1, 99, "fine label"};
            L.nlabels = 2;
            L.use = o->cifar100_fine ? 1 : 0;
        }
        rc = jm_data_read_records(f, &L, take, ds->x, ds->y, &max_label, err, errlen);
    }
    fclose(f);
    if (rc) return -1;
    ds->n = take;
    ds->c = 3;
    ds->h = ds->w = 32;
    ds->classes = !hundred ? 10 : o->cifar100_fine ? 100 : 20;
    ds->pad_value = -1.0f;
    return 0;
}

/* ------------------------------------------------------------------ CSV and whitespace text */

/* One delimited text file being read: CSV (fields split at commas) or text (fields split at
   runs of spaces and tabs, leading and trailing ones ignored: UCI HAR's X_train.txt). */
typedef struct {
    const char *path;
    int ws;                    /* 1: whitespace-separated text; 0: CSV */
    int nf;                    /* fields per line */
    int label_col;             /* 0-based; -1: no label column (labels from a separate file) */
    int nx;                    /* features per record: nf less the label column */
    int64_t base;              /* subtracted from every label (--label-base) */
    float *x;
    int64_t *y;
    int64_t n, cap;            /* records held, room for */
    int64_t max_label;
} jm_data_csv;

static int jm_data_is_space(char ch) { return ch == ' ' || ch == '\t'; }

/* The next field of a line: its text, trimmed of spaces and tabs, is [*b, *e). *p is where
   the scan goes on; for CSV NULL once the last field was taken (so "1,2," has three fields,
   the last empty). Returns 0 when the line has no more fields. */
static int jm_data_csv_next(const jm_data_csv *c, const char **p, const char *end, const char **b, const char **e) {
    const char *s = *p;
    if (!s) return 0;
    if (c->ws) {
        while (s < end && jm_data_is_space(*s)) s++;
        if (s == end) return 0;
        const char *q = s;
        while (q < end && !jm_data_is_space(*q)) q++;
        *b = s;
        *e = q;
        *p = q;
        return 1;
    }
    const char *q = s;
    while (q < end && *q != ',') q++;
    const char *lo = s, *hi = q;
    while (lo < hi && jm_data_is_space(*lo)) lo++;
    while (hi > lo && jm_data_is_space(hi[-1])) hi--;
    *b = lo;
    *e = hi;
    *p = q < end ? q + 1 : NULL;
    return 1;
}

/* Parses [b, e) as a finite number that fits a float. 0 ok, -1 not a number, -2 out of range. */
static int jm_data_csv_number(const char *b, const char *e, double *v) {
    if (b == e) return -1;
    char *stop;
    errno = 0;
    /* The field is followed by ',', a space, '\r' or the line's NUL, none of which extends a
       number, so strtod never reads past the field. */
    *v = strtod(b, &stop);
    if (stop != e) return -1;
    if (!isfinite(*v)) return -1;
    if (fabs(*v) > 3.4028234663852886e38) return -2;
    return 0;
}

static int jm_data_csv_count(const jm_data_csv *c, const char *line, const char *end) {
    int n = 0;
    const char *p = line, *b, *e;
    while (jm_data_csv_next(c, &p, end, &b, &e)) n++;
    return n;
}

/* Whether every field of the line is a number (a header has at least one that is not). */
static int jm_data_csv_numeric(const jm_data_csv *c, const char *line, const char *end) {
    const char *p = line, *b, *e;
    double v;
    while (jm_data_csv_next(c, &p, end, &b, &e))
        if (jm_data_csv_number(b, e, &v) != 0) return 0;
    return 1;
}

/* The label field: an integer (written as "3" or "3.0") in [base, base + JM_DATA_MAX_LABEL];
   y is the label less the base. */
static int jm_data_csv_label(jm_data_csv *c, long line, long col, const char *b, const char *e, double v, char *err,
                             size_t errlen) {
    int w = (int)(e - b > 60 ? 60 : e - b);
    if (v != floor(v))
        return jm_data_fail(err, errlen, "%s:%ld:%ld: label '%.*s' is not an integer in %lld..%lld", c->path, line, col, w,
                            b, (long long)c->base, (long long)c->base + JM_DATA_MAX_LABEL);
    if (v < (double)c->base) {
        if (c->base == 0)
            return jm_data_fail(err, errlen, "%s:%ld:%ld: label '%.*s' is not an integer in 0..%d", c->path, line, col, w,
                                b, JM_DATA_MAX_LABEL);
        return jm_data_fail(err, errlen, "%s:%ld:%ld: label '%.*s' is below the label base %lld (labels are counted from it)",
                            c->path, line, col, w, b, (long long)c->base);
    }
    if (v - (double)c->base > JM_DATA_MAX_LABEL)
        return jm_data_fail(err, errlen, "%s:%ld:%ld: label '%.*s' is not an integer in %lld..%lld", c->path, line, col, w,
                            b, (long long)c->base, (long long)c->base + JM_DATA_MAX_LABEL);
    int64_t y = (int64_t)v - c->base;
    c->y[c->n] = y;
    if (y > c->max_label) c->max_label = y;
    return 0;
}

/* Makes room for one more record. */
static int jm_data_csv_grow(jm_data_csv *c, char *err, size_t errlen) {
    if (c->n < c->cap) return 0;
    int64_t cap = c->cap ? c->cap * 2 : 256;
    /* one float more than needed: a labels file has no features, and realloc(p, 0) may free */
    float *x = realloc(c->x, ((size_t)cap * (size_t)c->nx + 1) * sizeof(float));
    if (x) c->x = x;
    int64_t *y = realloc(c->y, (size_t)cap * sizeof(int64_t));
    if (y) c->y = y;
    if (!x || !y) return jm_data_fail(err, errlen, "%s: out of memory at record %lld", c->path, (long long)c->n);
    c->cap = cap;
    return 0;
}

/* Parses one data line (without its line ending) into record c->n. */
static int jm_data_csv_row(jm_data_csv *c, const char *line, const char *end, long lineno, char *err, size_t errlen) {
    if (jm_data_csv_grow(c, err, errlen)) return -1;
    float *xr = c->x + c->n * c->nx;
    const char *p = line, *b, *e;
    int k = 0;
    for (; jm_data_csv_next(c, &p, end, &b, &e); k++) {
        double v;
        long col = (long)(b - line) + 1;
        if (k == c->nf)
            return jm_data_fail(err, errlen, "%s:%ld:%ld: expected %d fields, found %d", c->path, lineno, col, c->nf,
                                jm_data_csv_count(c, line, end));
        int r = jm_data_csv_number(b, e, &v);
        if (r == -1)
            return jm_data_fail(err, errlen, "%s:%ld:%ld: '%.*s' is not a number", c->path, lineno, col,
                                (int)(e - b > 60 ? 60 : e - b), b);
        if (r == -2)
            return jm_data_fail(err, errlen, "%s:%ld:%ld: '%.*s' is out of float range", c->path, lineno, col,
                                (int)(e - b > 60 ? 60 : e - b), b);
        if (k == c->label_col) {
            if (jm_data_csv_label(c, lineno, col, b, e, v, err, errlen)) return -1;
        } else {
            *xr++ = (float)v;
        }
    }
    if (k < c->nf)
        return jm_data_fail(err, errlen, "%s:%ld:%ld: expected %d fields, found %d", c->path, lineno,
                            (long)(end - line) + 1, c->nf, k);
    if (c->label_col < 0) c->y[c->n] = -1;   /* filled from the labels file */
    c->n++;
    return 0;
}

/* Whether header field [b, e) is the column `name`: equal, or equal once a leading '#' and
   the spaces after it are skipped (HEPMASS's header starts "# label,f0,..."). */
static int jm_data_csv_name_is(const char *b, const char *e, const char *name) {
    size_t n = strlen(name);
    if ((size_t)(e - b) == n && memcmp(b, name, n) == 0) return 1;
    if (b < e && *b == '#') {
        for (b++; b < e && jm_data_is_space(*b);) b++;
        return (size_t)(e - b) == n && memcmp(b, name, n) == 0;
    }
    return 0;
}

/* The label column named by `spec`: an integer (0-based; negative counts from the end, -1
   the last) or a name in the header line. */
static int jm_data_csv_label_spec(jm_data_csv *c, const char *spec, const char *line, const char *end, int header,
                                  char *err, size_t errlen) {
    char *stop;
    long v = strtol(spec, &stop, 10);
    if (*spec && !*stop) {
        long col = v < 0 ? c->nf + v : v;
        if (col < 0 || col >= c->nf)
            return jm_data_fail(err, errlen, "%s:1:1: the label column is %ld but the line has %d fields (0..%d, or -1..-%d from the end)",
                                c->path, v, c->nf, c->nf - 1, c->nf);
        c->label_col = (int)col;
        return 0;
    }
    if (!header)
        return jm_data_fail(err, errlen, "%s:1:1: the label column '%s' is a name, but the file has no header line", c->path,
                            spec);
    const char *p = line, *b, *e;
    char names[256] = "";
    size_t used = 0;
    for (int k = 0; jm_data_csv_next(c, &p, end, &b, &e); k++) {
        if (jm_data_csv_name_is(b, e, spec)) {
            c->label_col = k;
            return 0;
        }
        if (used < sizeof names - 1)
            used += (size_t)snprintf(names + used, sizeof names - used, "%s'%.*s'", k ? ", " : "", (int)(e - b > 40 ? 40 : e - b), b);
    }
    return jm_data_fail(err, errlen, "%s:1:1: no column named '%s' in the header (it has %s%s)", c->path, spec, names,
                        used >= sizeof names - 1 ? "..." : "");
}

/* Fixes the field count and label column from the first line. */
static int jm_data_csv_shape(jm_data_csv *c, const char *line, const char *end, const jm_data_opts *o, int header,
                             char *err, size_t errlen) {
    c->nf = jm_data_csv_count(c, line, end);
    if (c->label_col == -3) {   /* a labels file: one field a line, the label */
        c->label_col = 0;
        c->nx = 0;
        return c->nf != 1 ? jm_data_fail(err, errlen, "%s:1:1: a labels file has one label a line, found %d fields", c->path, c->nf) : 0;
    }
    if (c->label_col == -1) {   /* features only: the labels are in another file */
        c->nx = c->nf;
        return c->nf < 1 ? jm_data_fail(err, errlen, "%s:1:1: no fields", c->path) : 0;
    }
    if (c->nf < 2)
        return jm_data_fail(err, errlen, "%s:1:1: expected at least 2 fields (features and a label), found %d", c->path, c->nf);
    if (o->label_column && *o->label_column) {
        if (jm_data_csv_label_spec(c, o->label_column, line, end, header, err, errlen)) return -1;
    } else {
        c->label_col = o->csv_label_column == -1 ? c->nf - 1 : o->csv_label_column;
        if (c->label_col >= c->nf || c->label_col < 0)
            return jm_data_fail(err, errlen, "%s:1:1: the label column is %d (0-based) but the line has %d fields", c->path,
                                c->label_col, c->nf);
    }
    c->nx = c->nf - 1;
    return 0;
}

/* Strips the line ending ("\n", "\r\n") and, on the first line, a UTF-8 byte-order mark. */
static const char *jm_data_csv_trim(char **line, ssize_t len, long lineno) {
    char *s = *line, *end = s + len;
    if (end > s && end[-1] == '\n') end--;
    if (end > s && end[-1] == '\r') end--;
    *end = 0;
    if (lineno == 1 && end - s >= 3 && memcmp(s, "\xEF\xBB\xBF", 3) == 0) *line = s + 3;
    return end;
}

static int jm_data_csv_blank(const char *s, const char *end) {
    for (; s < end; s++)
        if (*s != ' ' && *s != '\t') return 0;
    return 1;
}

/* Reads every line; blank lines are allowed only at the end of the file. */
static int jm_data_csv_lines(FILE *f, jm_data_csv *c, const jm_data_opts *o, char *err, size_t errlen) {
    char *buf = NULL;
    size_t bufcap = 0;
    ssize_t len;
    long lineno = 0, blank = 0;
    int rc = 0;
    while (rc == 0 && (o->limit <= 0 || c->n < o->limit) && (len = getline(&buf, &bufcap, f)) >= 0) {
        char *line = buf;
        const char *end = jm_data_csv_trim(&line, len, ++lineno);
        if (jm_data_csv_blank(line, end)) {
            if (!blank) blank = lineno;
            continue;
        }
        if (blank) {
            rc = jm_data_fail(err, errlen, "%s:%ld:1: empty line before record %lld", c->path, blank, (long long)c->n);
            break;
        }
        if (c->nf == 0) {
            int header = o->csv_header < 0 ? !jm_data_csv_numeric(c, line, end) : o->csv_header;
            rc = jm_data_csv_shape(c, line, end, o, header, err, errlen);
            if (rc || header) continue;
        }
        rc = jm_data_csv_row(c, line, end, lineno, err, errlen);
    }
    if (rc == 0 && ferror(f)) rc = jm_data_fail(err, errlen, "%s:%ld: read error: %s", c->path, lineno + 1, strerror(errno));
    free(buf);
    return rc;
}

/* One delimited file into c: label_col -2 (the label column from o), -1 (none: all
   features) or -3 (a labels file: one field a line, the label). */
static int jm_data_csv_read(const char *path, int ws, int label_col, const jm_data_opts *o, jm_data_csv *c, char *err,
                            size_t errlen) {
    memset(c, 0, sizeof *c);
    c->path = path;
    c->ws = ws;
    c->label_col = label_col;
    c->base = o->label_base;
    c->max_label = -1;
    int64_t size;
    FILE *f = jm_data_open(path, &size, err, errlen);
    if (!f) return -1;
    int rc = jm_data_csv_lines(f, c, o, err, errlen);
    fclose(f);
    if (rc == 0 && c->n == 0) rc = jm_data_fail(err, errlen, "%s: no records", path);
    return rc;
}

/* CSV or text: the label a column of the file, or (o->labels) one label a line in another
   file, which must have as many lines as the data file has records. */
static int jm_data_load_csv(const char *path, const jm_data_opts *o, int ws, jm_dataset *ds, char *err, size_t errlen) {
    jm_data_csv c, l;
    memset(&l, 0, sizeof l);
    if (o->labels && o->label_column && *o->label_column)
        return jm_data_fail(err, errlen, "%s: both a label column ('%s') and a labels file (%s) given; with a labels file every "
                            "column is a feature", path, o->label_column, o->labels);
    int rc = jm_data_csv_read(path, ws, o->labels ? -1 : -2, o, &c, err, errlen);
    ds->x = c.x;
    ds->y = c.y;
    if (rc == 0 && o->labels) {
        /* the labels file: one field a line (label column 0), read as text; a limit applies to both */
        jm_data_opts lo = *o;
        lo.label_column = NULL;
        lo.csv_label_column = 0;
        lo.csv_header = -1;
        rc = jm_data_csv_read(o->labels, 1, -3, &lo, &l, err, errlen);
        if (rc == 0 && l.n != c.n)
            rc = jm_data_fail(err, errlen, "%s has %lld records but its labels file %s has %lld labels", path,
                              (long long)c.n, o->labels, (long long)l.n);
        if (rc == 0) {
            memcpy(c.y, l.y, (size_t)c.n * sizeof(int64_t));
            c.max_label = l.max_label;
        }
        free(l.x);
        free(l.y);
    }
    if (rc) return -1;
    ds->n = c.n;
    ds->c = ds->h = 1;
    ds->w = c.nx;
    ds->classes = (int)c.max_label + 1;
    ds->pad_value = 0.0f;
    return 0;
}

/* ------------------------------------------------------------------ format detection */

/* AUTO: CSV and CIFAR are known by their extension (and CIFAR's record size), IDX by its
   magic number. */
static int jm_data_detect(const char *path, jm_data_format *fmt, char *err, size_t errlen) {
    if (jm_data_has_ext(path, ".csv")) {
        *fmt = JM_DATA_CSV;
        return 0;
    }
    /* whitespace-separated numbers: UCI HAR's X_train.txt, y_train.txt */
    if (jm_data_has_ext(path, ".txt") || jm_data_has_ext(path, ".tsv") || jm_data_has_ext(path, ".dat")) {
        *fmt = JM_DATA_TEXT;
        return 0;
    }
    int64_t size;
    FILE *f = jm_data_open(path, &size, err, errlen);
    if (!f) return -1;
    uint8_t m[4] = {0, 0, 0, 0};
    size_t got = fread(m, 1, 4, f);
    fclose(f);
    uint32_t magic = jm_data_be32(m);
    if (jm_data_has_ext(path, ".bin")) {
        /* 3073*3074 bytes would fit both; the brief's rule prefers CIFAR-10. A .bin whose size
           fits neither is read as CIFAR-10 so that the error names the truncated record. */
        int c10 = size % JM_DATA_CIFAR10_REC == 0, c100 = size > 0 && size % JM_DATA_CIFAR100_REC == 0;
        int idx = magic == JM_DATA_IDX_IMAGES || magic == JM_DATA_IDX_IMAGES4;
        *fmt = c10 ? JM_DATA_CIFAR10 : c100 ? JM_DATA_CIFAR100 : idx ? JM_DATA_IDX : JM_DATA_CIFAR10;
        return 0;
    }
    if (got == 4 && (magic == JM_DATA_IDX_IMAGES || magic == JM_DATA_IDX_IMAGES4)) {
        *fmt = JM_DATA_IDX;
        return 0;
    }
    if (got == 4 && (magic == JM_DATA_IDX_LABELS || magic == JM_DATA_IDX_LABELS32))
        return jm_data_fail(err, errlen, "%s: this is an IDX labels file (magic 0x%08x); pass the images file", path,
                            magic);
    return jm_data_fail(err, errlen,
                        "%s: unknown format: not an IDX images file (magic 0x%08x, expected 0x%08x or 0x%08x), and "
                        "CIFAR (.bin), CSV (.csv) and text (.txt, .tsv, .dat) files are known by their extension",
                        path, magic, JM_DATA_IDX_IMAGES, JM_DATA_IDX_IMAGES4);
}

/* ------------------------------------------------------------------ public: loading */

jm_data_opts jm_data_defaults(void) {
    jm_data_opts o = {JM_DATA_AUTO, NULL, -1, -1, 1, 0, NULL, 0};
    return o;
}

const char *jm_data_format_name(jm_data_format f) {
    switch (f) {
    case JM_DATA_AUTO: return "auto";
    case JM_DATA_IDX: return "IDX";
    case JM_DATA_CIFAR10: return "CIFAR-10";
    case JM_DATA_CIFAR100: return "CIFAR-100";
    case JM_DATA_CSV: return "CSV";
    case JM_DATA_TEXT: return "text";
    }
    return "unknown";
}

int jm_data_resolve(const char *path, const char *split, char *out, size_t outlen) {
    /* idx4: multi-channel IDX (e.g. StackMNIST's 3x28x28, tools/stackmnist.py) */
    static const char *const train[] = {"train-images-idx3-ubyte", "train-images-idx4-ubyte", "data_batch_1.bin", "train.bin"};
    static const char *const test[] = {"t10k-images-idx3-ubyte", "t10k-images-idx4-ubyte", "test_batch.bin", "test.bin"};
    if (!path || !out || !outlen) return -1;
    if (!jm_data_is_dir(path)) {
        int m = snprintf(out, outlen, "%s", path);
        return m < 0 || (size_t)m >= outlen ? -1 : 0;
    }
    const char *const *names = split && strcmp(split, "train") == 0 ? train : split && strcmp(split, "test") == 0 ? test : NULL;
    if (!names) return -1;
    size_t plen = strlen(path);
    const char *sep = plen && path[plen - 1] == '/' ? "" : "/";
    for (int k = 3; k >= 0; k--) {
        /* Tried last to first so that, when none exists, out is left naming the IDX file. */
        int m = snprintf(out, outlen, "%s%s%s", path, sep, names[k]);
        if (m < 0 || (size_t)m >= outlen) return -1;
        if (jm_data_is_file(out)) return 0;
    }
    return -1;
}

int jm_data_load(const char *path, const jm_data_opts *o, jm_dataset *ds, char *err, size_t errlen) {
    jm_data_opts opts = o ? *o : jm_data_defaults();
    char file[1024];
    memset(ds, 0, sizeof *ds);
    if (err && errlen) err[0] = 0;
    if (!path || !*path) return jm_data_fail(err, errlen, "no data file given");
    if (opts.limit < 0) return jm_data_fail(err, errlen, "%s: the record limit is %lld, expected >= 0", path, (long long)opts.limit);
    if (jm_data_resolve(path, "train", file, sizeof file) != 0)
        return jm_data_fail(err, errlen, "%s: %s", path,
                            jm_data_is_dir(path) ? "a directory with no train-images-idx3-ubyte, "
                                                   "train-images-idx4-ubyte, data_batch_1.bin or train.bin; pass "
                                                   "the data file"
                                                 : "path too long");
    if (opts.format == JM_DATA_AUTO && jm_data_detect(file, &opts.format, err, errlen) != 0) return -1;
    int rc;
    switch (opts.format) {
    case JM_DATA_IDX: rc = jm_data_load_idx(file, &opts, ds, err, errlen); break;
    case JM_DATA_CIFAR10: rc = jm_data_load_cifar(file, &opts, 0, ds, err, errlen); break;
    case JM_DATA_CIFAR100: rc = jm_data_load_cifar(file, &opts, 1, ds, err, errlen); break;
    case JM_DATA_CSV: rc = jm_data_load_csv(file, &opts, 0, ds, err, errlen); break;
    case JM_DATA_TEXT: rc = jm_data_load_csv(file, &opts, 1, ds, err, errlen); break;
    default: rc = jm_data_fail(err, errlen, "%s: unknown data format %d", file, (int)opts.format); break;
    }
    if (rc) {
        jm_data_free(ds);
        return -1;
    }
    ds->format = opts.format;
    /* ds->path is for messages only: a longer path is cut rather than refused. */
    size_t plen = strlen(file) < sizeof ds->path ? strlen(file) : sizeof ds->path - 1;
    memcpy(ds->path, file, plen);
    ds->path[plen] = 0;
    return 0;
}

int jm_data_conform(jm_dataset *ds, int c, int h, int w, char *err, size_t errlen) {
    if (ds->c == c && ds->h == h && ds->w == w) return 0;
    if (c < 1 || h < 1 || w < 1 || (ds->c != c && ds->c != 1 && c != 1)) {
        snprintf(err, errlen, "%s: cannot turn %dx%dx%d records into %dx%dx%d (only 1 <-> C channels, any size)", ds->path, ds->c, ds->h, ds->w, c, h, w);
        return -1;
    }
    int64_t per = (int64_t)c * h * w, old = (int64_t)ds->c * ds->h * ds->w;
    float *x = malloc(sizeof(float) * (size_t)(ds->n * per + 1));
    if (!x) { snprintf(err, errlen, "%s: out of memory", ds->path); return -1; }
    /* (oy, ox): where the old image's top-left lands; negative when cropping */
    int oy = (h - ds->h) / 2, ox = (w - ds->w) / 2;
    for (int64_t i = 0; i < ds->n; i++) {
        const float *src = ds->x + i * old;
        float *dst = x + i * per;
        for (int ch = 0; ch < c; ch++)
            for (int r = 0; r < h; r++)
                for (int q = 0; q < w; q++) {
                    int sr = r - oy, sq = q - ox;
                    float v = ds->pad_value;
                    if (sr >= 0 && sr < ds->h && sq >= 0 && sq < ds->w) {
                        if (ds->c == c) v = src[((int64_t)ch * ds->h + sr) * ds->w + sq];
                        else if (ds->c == 1) v = src[(int64_t)sr * ds->w + sq];
                        else {
                            double m = 0;
                            for (int k = 0; k < ds->c; k++) m += src[((int64_t)k * ds->h + sr) * ds->w + sq];
                            v = (float)(m / ds->c);
                        }
                    }
                    dst[((int64_t)ch * h + r) * w + q] = v;
                }
    }
    free(ds->x);
    ds->x = x;
    ds->c = c;
    ds->h = h;
    ds->w = w;
    return 0;
}

void jm_data_free(jm_dataset *ds) {
    if (!ds) return;
    free(ds->x);
    free(ds->y);
    memset(ds, 0, sizeof *ds);
}

/* ------------------------------------------------------------------ shuffling */

/* Counter words above 32 bits are folded into the stream id: epochs and steps beyond 2^32
   still get their own numbers. */
static uint32_t jm_data_stream(uint32_t base, uint64_t v) { return base ^ (uint32_t)(v >> 32) * 0x9E3779B9u; }

void jm_data_shuffle(int64_t n, uint64_t seed, uint64_t epoch, int64_t *perm) {
    uint32_t stream = jm_data_stream(JM_DATA_STREAM_SHUFFLE, epoch);
    for (int64_t i = 0; i < n; i++) perm[i] = i;
    /* Fisher-Yates from the top: slot i swaps with j uniform in [0, i], drawn from block
       (i, epoch). j = r mod (i+1) of a 64-bit r: the bias is below (i+1)/2^64. */
    for (int64_t i = n - 1; i > 0; i--) {
        jm_philox_block blk = jm_philox4x32((uint32_t)i, (uint32_t)((uint64_t)i >> 32), stream, (uint32_t)epoch, seed);
        uint64_t r = (uint64_t)blk.v[0] << 32 | blk.v[1];
        int64_t j = (int64_t)(r % (uint64_t)(i + 1));
        int64_t t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
}

int64_t jm_data_labelled_subset(const jm_dataset *ds, int per_class, uint64_t seed, int64_t *idx, char *err,
                                size_t errlen) {
    if (per_class < 1) return jm_data_fail(err, errlen, "%s: %d labelled records per class asked for, expected >= 1", ds->path, per_class);
    if (ds->classes < 1 || ds->n < 1) return jm_data_fail(err, errlen, "%s: no records", ds->path);
    int64_t *perm = malloc((size_t)ds->n * sizeof *perm), *count = calloc((size_t)ds->classes, sizeof *count);
    int64_t got = 0;
    if (!perm || !count) {
        free(perm);
        free(count);
        return jm_data_fail(err, errlen, "%s: out of memory for the labelled subset", ds->path);
    }
    jm_data_shuffle(ds->n, seed, 0, perm);
    for (int64_t k = 0; k < ds->n; k++) {
        int64_t r = perm[k], y = ds->y[r];
        if (y >= 0 && y < ds->classes && count[y] < per_class) {
            count[y]++;
            idx[got++] = r;
        }
    }
    int bad = -1;
    for (int c = 0; c < ds->classes && bad < 0; c++)
        if (count[c] < per_class) bad = c;
    if (bad >= 0)
        jm_data_fail(err, errlen, "%s: class %d has only %lld records, fewer than the %d per class asked for", ds->path,
                     bad, (long long)count[bad], per_class);
    free(perm);
    free(count);
    return bad >= 0 ? -1 : got;
}

/* ------------------------------------------------------------------ batches */

/* The crop offsets and flip of batch slot i at step. */
typedef struct { int dy, dx, flip; } jm_data_choice;

static jm_data_choice jm_data_choose(const jm_augment *aug, uint64_t seed, uint64_t step, int64_t i) {
    jm_data_choice ch = {0, 0, 0};
    jm_philox_block blk = jm_philox4x32(0, (uint32_t)i, jm_data_stream(JM_DATA_STREAM_AUGMENT, step), (uint32_t)step, seed);
    if (aug->crop_pad > 0) {
        uint32_t span = 2u * (uint32_t)aug->crop_pad + 1u;
        ch.dy = (int)(blk.v[0] % span);
        ch.dx = (int)(blk.v[1] % span);
    }
    if (aug->hflip) ch.flip = (int)(blk.v[2] >> 31);
    return ch;
}

/* Cropped (from the padded image) and flipped copy of one record: out(y, x) =
   src(y + dy - pad, x' + dx - pad) with x' = w-1-x when flipped (crop, then flip). */
static void jm_data_crop_flip(const jm_dataset *ds, const float *src, int pad, jm_data_choice ch, float *out) {
    int h = ds->h, w = ds->w;
    for (int c = 0; c < ds->c; c++) {
        const float *plane = src + (int64_t)c * h * w;
        for (int y = 0; y < h; y++) {
            int sy = y + ch.dy - pad;
            float *o = out + ((int64_t)c * h + y) * w;
            for (int x = 0; x < w; x++) {
                int sx = (ch.flip ? w - 1 - x : x) + ch.dx - pad;
                o[x] = sy >= 0 && sy < h && sx >= 0 && sx < w ? plane[(int64_t)sy * w + sx] : ds->pad_value;
            }
        }
    }
}

/* + sigma * N(0,1) on every value: Box-Muller on words 0, 1 of block (k/2, i), cosine for
   even k, sine for odd k (two normals per block). */
static void jm_data_noise(float *out, int64_t chw, float sigma, uint64_t seed, uint64_t step, int64_t i) {
    uint32_t stream = jm_data_stream(JM_DATA_STREAM_NOISE, step);
    for (int64_t k = 0; k < chw; k += 2) {
        jm_philox_block blk = jm_philox4x32((uint32_t)(k / 2), (uint32_t)i, stream, (uint32_t)step, seed);
        double rad = sqrt(-2.0 * log(jm_philox_unit(blk.v[0]))), ang = 6.283185307179586 * jm_philox_unit(blk.v[1]);
        out[k] += sigma * (float)(rad * cos(ang));
        if (k + 1 < chw) out[k + 1] += sigma * (float)(rad * sin(ang));
    }
}

void jm_data_batch(const jm_dataset *ds, const int64_t *idx, int64_t b, const jm_augment *aug, uint64_t seed,
                   uint64_t step, float *x_out, int64_t *y_out) {
    jm_data_batch_share(ds, idx, b, aug, seed, step, 0, x_out, y_out);
}

void jm_data_batch_share(const jm_dataset *ds, const int64_t *idx, int64_t b, const jm_augment *aug, uint64_t seed,
                         uint64_t step, int64_t slot0, float *x_out, int64_t *y_out) {
    int64_t chw = (int64_t)ds->c * ds->h * ds->w;
    /* Each slot's draws depend only on (seed, step, slot0 + i), so threads do not
       change them, nor the shards a batch is split into. */
#pragma omp parallel for schedule(static) if (aug && b * chw >= (1 << 16))
    for (int64_t i = 0; i < b; i++) {
        int64_t r = idx[i];
        float *out = x_out + i * chw;
        if (r < 0 || r >= ds->n) {
            for (int64_t k = 0; k < chw; k++) out[k] = ds->pad_value;
            y_out[i] = -1;
            continue;
        }
        const float *src = ds->x + r * chw;
        y_out[i] = ds->y[r];
        if (!aug) {
            memcpy(out, src, (size_t)chw * sizeof(float));
            continue;
        }
        jm_data_choice ch = jm_data_choose(aug, seed, step, slot0 + i);
        jm_data_crop_flip(ds, src, aug->crop_pad > 0 ? aug->crop_pad : 0, ch, out);
        if (aug->noise != 0.0f) jm_data_noise(out, chw, aug->noise, seed, step, slot0 + i);
    }
}
