/* image.h — image output of the runtime: grids of samples as PNG (libpng), animated GIF
 * (giflib) and PNG with a caption per row (cairo).
 *
 * A grid shows n images, each c x h x w (c = 1 grey or 3 RGB, planar CHW floats, the
 * layout of a batch tensor [n, c, h, w]), `nrow` images per grid row (the last row may be
 * short; its empty cells show the border colour), like torchvision's make_grid:
 *
 *   cols = min(nrow, n)            rows = ceil(n / cols)
 *   width  = cols * (w * scale + B) + B
 *   height = rows * (h * scale + B) + B        B = JM_IMAGE_BORDER (not scaled)
 *
 * Values map linearly from [lo, hi] to 0..255, rounding half up and clamping:
 * with JEM's lo = -1, hi = 1:  -1 -> 0,  0 -> 128 (127.5 rounds up),  1 -> 255,
 * and anything beyond the range clamps (5 -> 255, -5 -> 0). NaN shows as 0.
 * Each pixel is repeated scale x scale times (nearest neighbour), so 28x28 digits stay
 * visible.
 *
 * Every function returns 0, or -1 with a one-line message in err naming the file
 * ("out/grid.png: ..."); bad arguments are reported the same way, never by aborting.
 * Files are written atomically: PATH.tmp.PID is written, flushed, synced and renamed over
 * PATH, so a crash never leaves a half image under PATH. The directory must exist. */
#ifndef JM_IMAGE_H
#define JM_IMAGE_H
#include <cairo/cairo.h>
#include <stddef.h>
#include <stdarg.h>
#include <stdio.h>

#define JM_IMAGE_BORDER 2          /* pixels around and between the cells */
#define JM_IMAGE_BORDER_VALUE 64   /* the border's grey level (dark grey) */
#define JM_IMAGE_MAX_SIDE 65535    /* a grid side's limit in pixels (GIF stores 16 bits) */
#define JM_IMAGE_MAX_SCALE 64

/* The grid's size in pixels for these arguments: 0, or -1 (with a message naming path)
   when an argument is out of range or the grid would exceed JM_IMAGE_MAX_SIDE. */
int jm_image_grid_size(const char *path, int n, int c, int h, int w, int nrow, int scale,
                       int *width, int *height, char *err, size_t errlen);

/* One grid as an 8-bit PNG: greyscale for c = 1, RGB for c = 3. */
int jm_image_grid_png(const char *path, const float *x, int n, int c, int h, int w, int nrow,
                      float lo, float hi, int scale, char *err, size_t errlen);

/* An animated GIF of nframes grids of the same n images: frame f is at
   frames + f*n*c*h*w. Each frame shows for delay_cs hundredths of a second (0..65535);
   the animation loops forever (NETSCAPE2.0 extension, loop count 0).
   Palette: c = 1 uses 256 grey levels (exact); c = 3 uses a fixed colour cube of
   6 red x 7 green x 6 blue levels (252 colours) plus 4 greys (32, 64 = the border,
   160, 224), each pixel taking the nearest entry (no dithering, so frames stay stable). */
int jm_image_grid_gif(const char *path, const float *frames, int nframes, int n, int c, int h, int w,
                      int nrow, float lo, float hi, int scale, int delay_cs, char *err, size_t errlen);

/* The grid of jm_image_grid_png with a caption left of each grid row: row_labels[r]
   (UTF-8; NULL or "" leaves row r blank) for r < nrows; nrows may be smaller than the
   number of grid rows, not larger. The grid occupies the rightmost `width` columns
   exactly as jm_image_grid_png draws it; the caption column (dark grey, light text) is
   as wide as the longest caption, at most 320 pixels (longer ones are clipped).
   Always written as an RGB PNG (cairo). */
int jm_image_grid_png_labeled(const char *path, const float *x, int n, int c, int h, int w, int nrow,
                              float lo, float hi, int scale, const char *const *row_labels, int nrows,
                              char *err, size_t errlen);

/* Atomic file replacement, shared with plot.c.
   jm_image_atomic_open creates PATH.tmp.PID and returns it open for writing, its name in
   *tmp (malloc'd); NULL with a message on failure.
   jm_image_atomic_close flushes, syncs and closes fp; when ok is nonzero and all that
   worked it renames the temporary over path, otherwise it removes the temporary
   (err gets a message only when it was ok that failed). Frees *tmp. 0 or -1. */
FILE *jm_image_atomic_open(const char *path, char **tmp, char *err, size_t errlen);
int jm_image_atomic_close(FILE *fp, char **tmp, const char *path, int ok, char *err, size_t errlen);

/* Text made safe for cairo's toy text API, which stops drawing for good after one
   invalid UTF-8 string: s copied into buf (cap >= 4 bytes), every byte that does not
   begin a valid UTF-8 sequence and every control character replaced by '?', truncated at
   a character boundary to fit. NULL becomes "". Returns buf. */
char *jm_image_clean_text(const char *s, char *buf, size_t cap);

/* A cairo image surface written atomically as PNG (also used by plot.c); 0 or -1. */
int jm_image_save_surface(const char *path, cairo_surface_t *sf, char *err, size_t errlen);
/* "WHERE: message" into err (which may be NULL), shared by the image and plot
   writers; always -1. */
int jm_image_verror(char *err, size_t errlen, const char *where, const char *fmt, va_list ap);
#endif
