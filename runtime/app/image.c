/* image.c — grids of images as PNG (libpng), animated GIF (giflib) and captioned PNG
 * (cairo). See image.h for the layout, the value mapping and the error conventions. */
#include "image.h"
#include <cairo/cairo.h>
#include <errno.h>
#include <gif_lib.h>
#include <math.h>
#include <png.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ------------------------------------------------------------------ errors */

int jm_image_verror(char *err, size_t errlen, const char *where, const char *fmt, va_list ap) {
    if (!err || !errlen) return -1;
    int k = snprintf(err, errlen, "%s: ", where && *where ? where : "(no path)");
    if (k >= 0 && (size_t)k < errlen) vsnprintf(err + k, errlen - (size_t)k, fmt, ap);
    return -1;
}

/* "PATH: message" into err (which may be NULL); always -1. */
static int jm_image_fail(char *err, size_t errlen, const char *path, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    jm_image_verror(err, errlen, path, fmt, ap);
    va_end(ap);
    return -1;
}

/* ------------------------------------------------------------------ atomic files */

FILE *jm_image_atomic_open(const char *path, char **tmp, char *err, size_t errlen) {
    *tmp = NULL;
    if (!path || !*path) { jm_image_fail(err, errlen, path, "no output path"); return NULL; }
    /* The temporary sits next to PATH so that the rename stays on one file system. */
    size_t len = strlen(path) + 32;
    char *t = malloc(len);
    if (!t) { jm_image_fail(err, errlen, path, "out of memory"); return NULL; }
    snprintf(t, len, "%s.tmp.%ld", path, (long)getpid());
    /* "wb" truncates a stale temporary of an earlier crashed process with the same pid. */
    FILE *fp = fopen(t, "wb");
    if (!fp) {
        jm_image_fail(err, errlen, path, "cannot create %s: %s", t, strerror(errno));
        free(t);
        return NULL;
    }
    *tmp = t;
    return fp;
}

int jm_image_atomic_close(FILE *fp, char **tmp, const char *path, int ok, char *err, size_t errlen) {
    int rc = 0;
    errno = 0;   /* stdio may fail without setting errno; EIO is reported then */
    /* fflush hands stdio's buffer to the kernel, fsync the kernel's to the disk; only
       then may the rename make the new contents visible under PATH. */
    int wrote = ok && fflush(fp) == 0 && fsync(fileno(fp)) == 0;
    int e = errno;
    if (fclose(fp) != 0 && wrote) { wrote = 0; e = errno; }
    if (ok && !wrote) rc = jm_image_fail(err, errlen, path, "cannot write %s: %s", *tmp, strerror(e ? e : EIO));
    else if (ok && rename(*tmp, path) != 0) rc = jm_image_fail(err, errlen, path, "cannot rename %s over it: %s", *tmp, strerror(errno));
    if (!ok || rc) {
        unlink(*tmp);   /* PATH itself was never touched */
        rc = -1;
    }
    free(*tmp);
    *tmp = NULL;
    return rc;
}

/* ------------------------------------------------------------------ the grid */

int jm_image_grid_size(const char *path, int n, int c, int h, int w, int nrow, int scale,
                       int *width, int *height, char *err, size_t errlen) {
    if (n < 1) return jm_image_fail(err, errlen, path, "no images to draw (n = %d)", n);
    if (c != 1 && c != 3) return jm_image_fail(err, errlen, path, "images must have 1 or 3 channels, not %d", c);
    if (h < 1 || w < 1) return jm_image_fail(err, errlen, path, "invalid image size %dx%d", h, w);
    if (nrow < 1) return jm_image_fail(err, errlen, path, "images per row must be at least 1, not %d", nrow);
    if (scale < 1 || scale > JM_IMAGE_MAX_SCALE)
        return jm_image_fail(err, errlen, path, "scale must be 1..%d, not %d", JM_IMAGE_MAX_SCALE, scale);
    int64_t cols = nrow < n ? nrow : n, rows = (n + cols - 1) / cols;
    /* int64 arithmetic: h, w and scale are each below 2^31, their products fit */
    int64_t W = cols * ((int64_t)w * scale + JM_IMAGE_BORDER) + JM_IMAGE_BORDER;
    int64_t H = rows * ((int64_t)h * scale + JM_IMAGE_BORDER) + JM_IMAGE_BORDER;
    if (W > JM_IMAGE_MAX_SIDE || H > JM_IMAGE_MAX_SIDE)
        return jm_image_fail(err, errlen, path, "grid of %lldx%lld pixels exceeds the limit of %d per side",
                             (long long)W, (long long)H, JM_IMAGE_MAX_SIDE);
    *width = (int)W;
    *height = (int)H;
    return 0;
}

/* The value range and the data pointer, which jm_image_grid_size does not see. */
static int jm_image_check_values(const char *path, const float *x, float lo, float hi, char *err, size_t errlen) {
    if (!x) return jm_image_fail(err, errlen, path, "no pixel data");
    if (!isfinite(lo) || !isfinite(hi) || !(hi > lo))
        return jm_image_fail(err, errlen, path, "invalid value range [%g, %g]", (double)lo, (double)hi);
    return 0;
}

/* v in [lo, hi] -> 0..255: floor(t + 0.5) rounds half up (0 in [-1, 1] -> 128), then
   clamps; NaN fails both comparisons and ends up 0. */
static unsigned char jm_image_quantize(float v, double lo, double k) {
    double t = floor(((double)v - lo) * k + 0.5);
    if (!(t > 0)) return 0;
    return t >= 255 ? 255 : (unsigned char)t;
}

typedef struct {
    const float *x;
    int n, c, h, w, nrow, scale;
    double lo, k;        /* k = 255 / (hi - lo) */
} jm_image_src;

/* Draws image i of src into its cell of px (W pixels wide, c interleaved channels). */
static void jm_image_draw_cell(unsigned char *px, int W, const jm_image_src *s, int i) {
    int cols = s->nrow < s->n ? s->nrow : s->n, c = s->c, sc = s->scale;
    size_t ox = JM_IMAGE_BORDER + (size_t)(i % cols) * ((size_t)s->w * sc + JM_IMAGE_BORDER);
    size_t oy = JM_IMAGE_BORDER + (size_t)(i / cols) * ((size_t)s->h * sc + JM_IMAGE_BORDER);
    size_t rowbytes = (size_t)s->w * sc * c;
    for (int yy = 0; yy < s->h; yy++) {
        unsigned char *dst = px + ((oy + (size_t)yy * sc) * (size_t)W + ox) * c;
        for (int ch = 0; ch < c; ch++) {
            /* CHW: channel ch of image i starts at ((i * c) + ch) * h * w */
            const float *src = s->x + (((size_t)i * c + ch) * s->h + yy) * s->w;
            for (int xx = 0; xx < s->w; xx++) {
                unsigned char q = jm_image_quantize(src[xx], s->lo, s->k);
                for (int r = 0; r < sc; r++) dst[((size_t)xx * sc + r) * c + ch] = q;
            }
        }
        /* the other scale-1 output rows repeat the first */
        for (int r = 1; r < sc; r++) memcpy(dst + (size_t)r * W * c, dst, rowbytes);
    }
}

/* The whole grid, W x H pixels of c interleaved channels; NULL when out of memory. */
static unsigned char *jm_image_raster(const jm_image_src *s, int W, int H) {
    size_t len = (size_t)W * H * s->c;
    unsigned char *px = malloc(len);
    if (!px) return NULL;
    memset(px, JM_IMAGE_BORDER_VALUE, len);   /* borders and empty cells */
    for (int i = 0; i < s->n; i++) jm_image_draw_cell(px, W, s, i);
    return px;
}

/* Checks everything, fills *s and the size; 0 or -1 with a message. */
static int jm_image_prepare(const char *path, const float *x, int n, int c, int h, int w, int nrow,
                            float lo, float hi, int scale, jm_image_src *s, int *W, int *H,
                            char *err, size_t errlen) {
    if (jm_image_grid_size(path, n, c, h, w, nrow, scale, W, H, err, errlen)) return -1;
    if (jm_image_check_values(path, x, lo, hi, err, errlen)) return -1;
    *s = (jm_image_src){x, n, c, h, w, nrow, scale, lo, 255.0 / ((double)hi - lo)};
    return 0;
}

/* ------------------------------------------------------------------ PNG (libpng) */

typedef struct { char msg[256]; } jm_image_png_err;

/* libpng reports errors through this and expects it not to return: the message is kept
   and control goes back to the setjmp in jm_image_png_write. */
static void jm_image_png_error(png_structp png, png_const_charp msg) {
    jm_image_png_err *e = png_get_error_ptr(png);
    snprintf(e->msg, sizeof e->msg, "%s", msg);
    png_longjmp(png, 1);
}

static void jm_image_png_warning(png_structp png, png_const_charp msg) { (void)png; (void)msg; }

/* The part of the write that may longjmp; kept apart so that no local variable of
   jm_image_png_write changes after its setjmp (which would make it indeterminate). */
static void jm_image_png_body(png_structp png, png_infop info, FILE *fp, const unsigned char *px, int W, int H, int c) {
    png_init_io(png, fp);
    png_set_IHDR(png, info, (png_uint_32)W, (png_uint_32)H, 8, c == 1 ? PNG_COLOR_TYPE_GRAY : PNG_COLOR_TYPE_RGB,
                 PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    for (int y = 0; y < H; y++) png_write_row(png, px + (size_t)y * W * c);
    png_write_end(png, NULL);
}

/* Encodes px into the open file fp; 0, or -1 with libpng's message in e. */
static int jm_image_png_write(FILE *fp, const unsigned char *px, int W, int H, int c, jm_image_png_err *e) {
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, e, jm_image_png_error, jm_image_png_warning);
    if (!png) { snprintf(e->msg, sizeof e->msg, "out of memory"); return -1; }
    png_infop info = png_create_info_struct(png);
    if (!info) {
        png_destroy_write_struct(&png, NULL);
        snprintf(e->msg, sizeof e->msg, "out of memory");
        return -1;
    }
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_write_struct(&png, &info);
        return -1;
    }
    jm_image_png_body(png, info, fp, px, W, H, c);
    png_destroy_write_struct(&png, &info);
    return 0;
}

/* Writes a raster atomically as PNG. */
static int jm_image_save_png(const char *path, const unsigned char *px, int W, int H, int c, char *err, size_t errlen) {
    char *tmp;
    FILE *fp = jm_image_atomic_open(path, &tmp, err, errlen);
    if (!fp) return -1;
    jm_image_png_err e = {""};
    int ok = jm_image_png_write(fp, px, W, H, c, &e) == 0;
    if (!ok) jm_image_fail(err, errlen, path, "PNG encoding failed: %s", e.msg);
    return jm_image_atomic_close(fp, &tmp, path, ok, err, errlen);
}

int jm_image_grid_png(const char *path, const float *x, int n, int c, int h, int w, int nrow,
                      float lo, float hi, int scale, char *err, size_t errlen) {
    jm_image_src s;
    int W, H;
    if (err && errlen) err[0] = 0;
    if (jm_image_prepare(path, x, n, c, h, w, nrow, lo, hi, scale, &s, &W, &H, err, errlen)) return -1;
    unsigned char *px = jm_image_raster(&s, W, H);
    if (!px) return jm_image_fail(err, errlen, path, "out of memory for a %dx%d grid", W, H);
    int rc = jm_image_save_png(path, px, W, H, c, err, errlen);
    free(px);
    return rc;
}

/* ------------------------------------------------------------------ GIF (giflib) */

/* The colour palette: 6 red x 7 green x 6 blue levels (green gets the extra level: the
   eye resolves it best), index (r*7 + g)*6 + b, then 4 greys. */
enum { JM_CUBE_R = 6, JM_CUBE_G = 7, JM_CUBE_B = 6, JM_CUBE_N = JM_CUBE_R * JM_CUBE_G * JM_CUBE_B };
static const unsigned char jm_image_extra_grey[4] = {32, JM_IMAGE_BORDER_VALUE, 160, 224};

static unsigned char jm_image_level(int l, int nl) { return (unsigned char)((l * 255 + (nl - 1) / 2) / (nl - 1)); }

static void jm_image_palette(GifColorType *pal, int c) {
    if (c == 1) {
        for (int i = 0; i < 256; i++) pal[i] = (GifColorType){(GifByteType)i, (GifByteType)i, (GifByteType)i};
        return;
    }
    for (int r = 0; r < JM_CUBE_R; r++)
        for (int g = 0; g < JM_CUBE_G; g++)
            for (int b = 0; b < JM_CUBE_B; b++)
                pal[(r * JM_CUBE_G + g) * JM_CUBE_B + b] = (GifColorType){
                    jm_image_level(r, JM_CUBE_R), jm_image_level(g, JM_CUBE_G), jm_image_level(b, JM_CUBE_B)};
    for (int i = 0; i < 4; i++) {
        unsigned char v = jm_image_extra_grey[i];
        pal[JM_CUBE_N + i] = (GifColorType){v, v, v};
    }
}

static int jm_image_dist2(const GifColorType *p, int r, int g, int b) {
    int dr = p->Red - r, dg = p->Green - g, db = p->Blue - b;
    return dr * dr + dg * dg + db * db;
}

/* The palette entry nearest (Euclidean RGB) to r, g, b. The cube's levels are evenly
   spaced, so rounding each channel to its nearest level finds the nearest cube colour;
   the greys are then compared one by one. */
static GifPixelType jm_image_nearest(const GifColorType *pal, int r, int g, int b) {
    int ir = (r * (JM_CUBE_R - 1) + 127) / 255, ig = (g * (JM_CUBE_G - 1) + 127) / 255, ib = (b * (JM_CUBE_B - 1) + 127) / 255;
    int best = (ir * JM_CUBE_G + ig) * JM_CUBE_B + ib, bd = jm_image_dist2(&pal[best], r, g, b);
    for (int i = JM_CUBE_N; i < JM_CUBE_N + 4; i++) {
        int d = jm_image_dist2(&pal[i], r, g, b);
        if (d < bd) { bd = d; best = i; }
    }
    return (GifPixelType)best;
}

/* Raster (c interleaved channels) -> palette indices, in place into idx. */
static void jm_image_index(const unsigned char *px, size_t npx, int c, const GifColorType *pal, GifPixelType *idx) {
    for (size_t p = 0; p < npx; p++)
        idx[p] = c == 1 ? px[p] : jm_image_nearest(pal, px[3 * p], px[3 * p + 1], px[3 * p + 2]);
}

/* giflib's output callback: bytes go to the FILE * in UserData. */
static int jm_image_gif_out(GifFileType *gif, const GifByteType *buf, int len) {
    return fwrite(buf, 1, (size_t)len, (FILE *)gif->UserData) == (size_t)len ? len : 0;
}

/* NETSCAPE2.0 application extension: sub-block {1, loop count lo, hi}; count 0 = forever. */
static int jm_image_gif_loop(GifFileType *gif) {
    static const GifByteType loop[3] = {1, 0, 0};
    return EGifPutExtensionLeader(gif, APPLICATION_EXT_FUNC_CODE) == GIF_OK &&
           EGifPutExtensionBlock(gif, 11, "NETSCAPE2.0") == GIF_OK &&
           EGifPutExtensionBlock(gif, 3, loop) == GIF_OK &&
           EGifPutExtensionTrailer(gif) == GIF_OK ? 0 : -1;
}

/* One frame: its delay (graphics control extension), descriptor and rows. */
static int jm_image_gif_frame(GifFileType *gif, GifPixelType *idx, int W, int H, int delay_cs) {
    GraphicsControlBlock gcb = {DISPOSE_DO_NOT, false, delay_cs, NO_TRANSPARENT_COLOR};
    GifByteType ext[4];
    size_t len = EGifGCBToExtension(&gcb, ext);
    if (EGifPutExtension(gif, GRAPHICS_EXT_FUNC_CODE, (int)len, ext) != GIF_OK) return -1;
    if (EGifPutImageDesc(gif, 0, 0, W, H, false, NULL) != GIF_OK) return -1;
    for (int y = 0; y < H; y++)
        if (EGifPutLine(gif, idx + (size_t)y * W, W) != GIF_OK) return -1;
    return 0;
}

typedef struct {
    jm_image_src s;      /* s.x: the current frame */
    int nframes, W, H, delay_cs;
    size_t frame_len;    /* floats per frame */
    unsigned char *px;
    GifPixelType *idx;
    GifColorType pal[256];
} jm_image_gif_job;

/* Screen, loop extension and every frame; 0 or -1 (gif->Error says why). */
static int jm_image_gif_frames(GifFileType *gif, jm_image_gif_job *j, const float *frames) {
    ColorMapObject *cmap = GifMakeMapObject(256, j->pal);
    if (!cmap) return -1;
    EGifSetGifVersion(gif, true);   /* GIF89a: needed for the extensions */
    int rc = EGifPutScreenDesc(gif, j->W, j->H, 8, 0, cmap) == GIF_OK ? 0 : -1;
    GifFreeMapObject(cmap);
    if (rc || jm_image_gif_loop(gif)) return -1;
    for (int f = 0; f < j->nframes; f++) {
        j->s.x = frames + (size_t)f * j->frame_len;
        memset(j->px, JM_IMAGE_BORDER_VALUE, (size_t)j->W * j->H * j->s.c);
        for (int i = 0; i < j->s.n; i++) jm_image_draw_cell(j->px, j->W, &j->s, i);
        jm_image_index(j->px, (size_t)j->W * j->H, j->s.c, j->pal, j->idx);
        if (jm_image_gif_frame(gif, j->idx, j->W, j->H, j->delay_cs)) return -1;
    }
    return 0;
}

/* Encodes the whole animation into fp; 0 or -1 with a message. */
static int jm_image_gif_write(const char *path, FILE *fp, jm_image_gif_job *j, const float *frames, char *err, size_t errlen) {
    int gerr = 0;
    GifFileType *gif = EGifOpen(fp, jm_image_gif_out, &gerr);
    if (!gif) return jm_image_fail(err, errlen, path, "GIF encoder: %s", GifErrorString(gerr));
    int rc = jm_image_gif_frames(gif, j, frames);
    int code = gif->Error;
    /* EGifCloseFile writes the trailer and frees gif whatever happens; fp stays open. */
    if (EGifCloseFile(gif, &gerr) != GIF_OK && !rc) { rc = -1; code = gerr; }
    if (rc) {
        const char *why = GifErrorString(code);
        return jm_image_fail(err, errlen, path, "GIF encoding failed: %s", why ? why : "out of memory");
    }
    return 0;
}

int jm_image_grid_gif(const char *path, const float *frames, int nframes, int n, int c, int h, int w,
                      int nrow, float lo, float hi, int scale, int delay_cs, char *err, size_t errlen) {
    jm_image_gif_job j;
    memset(&j, 0, sizeof j);
    if (err && errlen) err[0] = 0;
    if (jm_image_prepare(path, frames, n, c, h, w, nrow, lo, hi, scale, &j.s, &j.W, &j.H, err, errlen)) return -1;
    if (nframes < 1) return jm_image_fail(err, errlen, path, "no frames (nframes = %d)", nframes);
    if (delay_cs < 0 || delay_cs > 65535)
        return jm_image_fail(err, errlen, path, "frame delay %d cs is outside 0..65535", delay_cs);
    j.nframes = nframes;
    j.delay_cs = delay_cs;
    j.frame_len = (size_t)n * c * h * w;
    jm_image_palette(j.pal, c);
    j.px = malloc((size_t)j.W * j.H * c);
    j.idx = malloc((size_t)j.W * j.H * sizeof *j.idx);
    int rc = -1;
    if (!j.px || !j.idx) jm_image_fail(err, errlen, path, "out of memory for a %dx%d grid", j.W, j.H);
    else {
        char *tmp;
        FILE *fp = jm_image_atomic_open(path, &tmp, err, errlen);
        if (fp) rc = jm_image_atomic_close(fp, &tmp, path, jm_image_gif_write(path, fp, &j, frames, err, errlen) == 0, err, errlen);
    }
    free(j.px);
    free(j.idx);
    return rc;
}

/* ------------------------------------------------------------------ captions (cairo) */

/* Length of the valid UTF-8 sequence at s (1..4), or 0 if it is not one: no overlong
   forms, no surrogates, nothing above U+10FFFF. */
static int jm_image_utf8_len(const unsigned char *s) {
    unsigned c = s[0];
    int len = c < 0x80 ? 1 : (c & 0xe0) == 0xc0 ? 2 : (c & 0xf0) == 0xe0 ? 3 : (c & 0xf8) == 0xf0 ? 4 : 0;
    if (len == 0 || (len == 2 && c < 0xc2)) return 0;
    unsigned cp = len == 1 ? c : c & (0x7fu >> len);
    for (int k = 1; k < len; k++) {
        if ((s[k] & 0xc0) != 0x80) return 0;   /* also stops at the terminating NUL */
        cp = cp << 6 | (s[k] & 0x3f);
    }
    if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10ffff))) return 0;
    if (cp >= 0xd800 && cp <= 0xdfff) return 0;
    return len;
}

char *jm_image_clean_text(const char *s, char *buf, size_t cap) {
    size_t k = 0;
    const unsigned char *p = (const unsigned char *)(s ? s : "");
    if (cap == 0) return buf;
    while (*p) {
        int len = jm_image_utf8_len(p);
        if (k + (len ? (size_t)len : 1) >= cap) break;
        if (len == 0 || *p < 0x20 || *p == 0x7f) {
            buf[k++] = '?';
            p += 1;
        } else {
            memcpy(buf + k, p, (size_t)len);
            k += (size_t)len;
            p += len;
        }
    }
    buf[k] = 0;
    return buf;
}

#define JM_IMAGE_LABEL_MAX 320   /* widest caption column, pixels */
#define JM_IMAGE_LABEL_PAD 8     /* space either side of a caption */

/* Font size for captions: half a cell's height, within 8..16 pixels. */
static double jm_image_label_font(int cell_h) {
    double f = cell_h * 0.5;
    return f < 8 ? 8 : f > 16 ? 16 : f;
}

static void jm_image_label_font_set(cairo_t *cr, double size) {
    cairo_select_font_face(cr, "sans-serif", CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_NORMAL);
    cairo_set_font_size(cr, size);
}

/* Width of the caption column: the widest caption plus padding, clipped to the maximum. */
static int jm_image_label_width(const char *const *labels, int nl, double font) {
    cairo_surface_t *sf = cairo_image_surface_create(CAIRO_FORMAT_RGB24, 1, 1);
    cairo_t *cr = cairo_create(sf);
    jm_image_label_font_set(cr, font);
    double wmax = 0;
    for (int r = 0; r < nl; r++) {
        if (!labels[r] || !*labels[r]) continue;
        char buf[512];
        cairo_text_extents_t te;
        cairo_text_extents(cr, jm_image_clean_text(labels[r], buf, sizeof buf), &te);
        if (te.x_advance > wmax) wmax = te.x_advance;
    }
    cairo_destroy(cr);
    cairo_surface_destroy(sf);
    int wl = (int)ceil(wmax) + 2 * JM_IMAGE_LABEL_PAD;
    return wl > JM_IMAGE_LABEL_MAX ? JM_IMAGE_LABEL_MAX : wl;
}

/* Copies the raster into the surface at column x0 (cairo RGB24: one native-endian
   uint32 0x00RRGGBB per pixel). */
static void jm_image_blit(cairo_surface_t *sf, const unsigned char *px, int W, int H, int c, int x0) {
    cairo_surface_flush(sf);
    unsigned char *data = cairo_image_surface_get_data(sf);
    int stride = cairo_image_surface_get_stride(sf);
    for (int y = 0; y < H; y++) {
        uint32_t *row = (uint32_t *)(void *)(data + (size_t)y * stride) + x0;
        for (int x = 0; x < W; x++) {
            const unsigned char *p = px + ((size_t)y * W + x) * c;
            uint32_t r = p[0], g = p[c == 3 ? 1 : 0], b = p[c == 3 ? 2 : 0];
            row[x] = r << 16 | g << 8 | b;
        }
    }
    cairo_surface_mark_dirty(sf);
}

/* The caption of every grid row, right-aligned against the grid, centred on its row,
   clipped to the caption column. */
static void jm_image_draw_labels(cairo_t *cr, const char *const *labels, int nl, int wl, int cell_h, double font) {
    cairo_save(cr);
    cairo_rectangle(cr, 0, 0, wl - JM_IMAGE_LABEL_PAD / 2, 1e6);
    cairo_clip(cr);
    jm_image_label_font_set(cr, font);
    cairo_set_source_rgb(cr, 0.92, 0.92, 0.92);
    for (int r = 0; r < nl; r++) {
        if (!labels[r] || !*labels[r]) continue;
        char buf[512];
        cairo_text_extents_t te;
        cairo_text_extents(cr, jm_image_clean_text(labels[r], buf, sizeof buf), &te);
        double cy = JM_IMAGE_BORDER + r * (cell_h + JM_IMAGE_BORDER) + cell_h / 2.0;
        double x = wl - JM_IMAGE_LABEL_PAD - te.x_advance;
        if (x < JM_IMAGE_LABEL_PAD) x = JM_IMAGE_LABEL_PAD;   /* too long: keep the start, clip the end */
        cairo_move_to(cr, x, cy - (te.y_bearing + te.height / 2));
        cairo_show_text(cr, buf);
    }
    cairo_restore(cr);
}

/* cairo's PNG writer calls this for every chunk of output. */
static cairo_status_t jm_image_cairo_out(void *fp, const unsigned char *data, unsigned int len) {
    return fwrite(data, 1, len, fp) == len ? CAIRO_STATUS_SUCCESS : CAIRO_STATUS_WRITE_ERROR;
}

int jm_image_save_surface(const char *path, cairo_surface_t *sf, char *err, size_t errlen) {
    if (cairo_surface_status(sf) != CAIRO_STATUS_SUCCESS)
        return jm_image_fail(err, errlen, path, "cannot draw: %s", cairo_status_to_string(cairo_surface_status(sf)));
    char *tmp;
    FILE *fp = jm_image_atomic_open(path, &tmp, err, errlen);
    if (!fp) return -1;
    cairo_status_t st = cairo_surface_write_to_png_stream(sf, jm_image_cairo_out, fp);
    if (st != CAIRO_STATUS_SUCCESS) jm_image_fail(err, errlen, path, "PNG encoding failed: %s", cairo_status_to_string(st));
    return jm_image_atomic_close(fp, &tmp, path, st == CAIRO_STATUS_SUCCESS, err, errlen);
}

int jm_image_grid_png_labeled(const char *path, const float *x, int n, int c, int h, int w, int nrow,
                              float lo, float hi, int scale, const char *const *row_labels, int nrows,
                              char *err, size_t errlen) {
    jm_image_src s;
    int W, H;
    if (err && errlen) err[0] = 0;
    if (jm_image_prepare(path, x, n, c, h, w, nrow, lo, hi, scale, &s, &W, &H, err, errlen)) return -1;
    /* rows of the grid, as jm_image_grid_size counts them */
    int cols = nrow < n ? nrow : n, grid_rows = (n + cols - 1) / cols;
    if (nrows < 0 || nrows > grid_rows)
        return jm_image_fail(err, errlen, path, "%d row labels for a grid of %d rows", nrows, grid_rows);
    if (nrows > 0 && !row_labels) return jm_image_fail(err, errlen, path, "no row labels (nrows = %d)", nrows);
    double font = jm_image_label_font(h * scale);
    int wl = nrows > 0 ? jm_image_label_width(row_labels, nrows, font) : 0;
    if ((int64_t)W + wl > JM_IMAGE_MAX_SIDE)
        return jm_image_fail(err, errlen, path, "captioned grid of %d pixels exceeds the limit of %d per side", W + wl, JM_IMAGE_MAX_SIDE);
    unsigned char *px = jm_image_raster(&s, W, H);
    if (!px) return jm_image_fail(err, errlen, path, "out of memory for a %dx%d grid", W, H);
    cairo_surface_t *sf = cairo_image_surface_create(CAIRO_FORMAT_RGB24, W + wl, H);
    int rc = -1;
    if (cairo_surface_status(sf) != CAIRO_STATUS_SUCCESS) {
        jm_image_fail(err, errlen, path, "cannot create a %dx%d image: %s", W + wl, H, cairo_status_to_string(cairo_surface_status(sf)));
    } else {
        cairo_t *cr = cairo_create(sf);
        double g = JM_IMAGE_BORDER_VALUE / 255.0;
        cairo_set_source_rgb(cr, g, g, g);   /* the caption column matches the border */
        cairo_paint(cr);
        cairo_surface_flush(sf);
        jm_image_blit(sf, px, W, H, c, wl);
        jm_image_draw_labels(cr, row_labels, nrows, wl, h * scale, font);
        cairo_destroy(cr);
        cairo_surface_flush(sf);
        rc = jm_image_save_surface(path, sf, err, errlen);
    }
    cairo_surface_destroy(sf);
    free(px);
    return rc;
}
