/* t_image.c — image output (runtime/app/image.c) and plots (runtime/app/plot.c): grid geometry
 * and exact pixel values read back with libpng, animated GIFs read back with giflib,
 * captioned grids, plots (size, not blank, gaps), the metrics-file parser and its error
 * messages, and atomic writes. Files go to a fresh mkdtemp directory. */
#include "app/image.h"
#include "app/plot.h"
#include "tap.h"
#include <dirent.h>
#include <errno.h>
#include <gif_lib.h>
#include <png.h>
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

static char g_dir[64];

/* Under `make test SAN=1`: fontconfig (which cairo's text uses) keeps its configuration
   and font patterns until exit in ways LeakSanitizer reports as leaks; they are not ours.
   LeakSanitizer calls this hook if it exists; otherwise it is unused. */
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void) { return "leak:libfontconfig.so\n"; }

static void path_in(char *buf, size_t cap, const char *name) { snprintf(buf, cap, "%s/%s", g_dir, name); }

static int spit(const char *path, const char *text) {
    FILE *fp = fopen(path, "wb");
    if (!fp) return -1;
    int r = fwrite(text, 1, strlen(text), fp) == strlen(text) ? 0 : -1;
    return fclose(fp) == 0 ? r : -1;
}

static int exists(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0;
}

static int has(const char *s, const char *w) { return s && strstr(s, w) != NULL; }

/* Entries under dir (and its subdirectories) whose names contain ".tmp.". */
static int count_tmp(const char *dir) {
    DIR *d = opendir(dir);
    int n = 0;
    if (!d) return -1;
    char p[512];
    for (struct dirent *e; (e = readdir(d));) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        n += strstr(e->d_name, ".tmp.") != NULL;
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        struct stat sb;
        if (lstat(p, &sb) == 0 && S_ISDIR(sb.st_mode)) n += count_tmp(p);
    }
    closedir(d);
    return n;
}

static void rm_tree(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return;
    char p[512];
    for (struct dirent *e; (e = readdir(d));) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        struct stat sb;
        if (lstat(p, &sb) == 0 && S_ISDIR(sb.st_mode)) rm_tree(p);
        else unlink(p);
    }
    closedir(d);
    rmdir(dir);
}

/* A PNG read back as `fmt` (PNG_FORMAT_GRAY / RGB); *color: the file itself is colour. */
static unsigned char *read_png(const char *path, unsigned fmt, int *w, int *h, int *color) {
    png_image im;
    memset(&im, 0, sizeof im);
    im.version = PNG_IMAGE_VERSION;
    if (!png_image_begin_read_from_file(&im, path)) return NULL;
    if (color) *color = (im.format & PNG_FORMAT_FLAG_COLOR) != 0;
    im.format = fmt;
    unsigned char *buf = malloc(PNG_IMAGE_SIZE(im));
    if (!buf || !png_image_finish_read(&im, NULL, buf, 0, NULL)) {
        free(buf);
        png_image_free(&im);
        return NULL;
    }
    *w = (int)im.width;
    *h = (int)im.height;
    return buf;
}

/* Distinct RGB colours of an RGB buffer (a 2^24-bit set). */
static int distinct_colors(const unsigned char *px, size_t npx) {
    unsigned char *seen = calloc(1 << 21, 1);
    int n = 0;
    for (size_t k = 0; k < npx; k++) {
        uint32_t c = (uint32_t)px[3 * k] << 16 | (uint32_t)px[3 * k + 1] << 8 | px[3 * k + 2];
        if (!(seen[c >> 3] & (1 << (c & 7)))) { seen[c >> 3] |= (unsigned char)(1 << (c & 7)); n++; }
    }
    free(seen);
    return n;
}

/* ------------------------------------------------------------------ PNG grids */

/* Pixel (x, y) of a grey W-wide buffer. */
static int gpx(const unsigned char *b, int W, int x, int y) { return b[(size_t)y * W + x]; }

/* Top-left output pixel of source pixel (r, c) of image i in a grid (border 2). */
static void cell_xy(int i, int cols, int h, int w, int s, int r, int c, int *x, int *y) {
    *x = 2 + (i % cols) * (w * s + 2) + c * s;
    *y = 2 + (i / cols) * (h * s + 2) + r * s;
}

static void test_grid_geometry(void) {
    /* 5 images of 3x4, 2 per row, scale 3: cols 2, rows 3,
       width 2*(4*3+2)+2 = 30, height 3*(3*3+2)+2 = 35 */
    float x[5 * 3 * 4];
    char path[256], err[512] = "";
    for (int k = 0; k < 5 * 12; k++) x[k] = 0;
    path_in(path, sizeof path, "geom.png");
    is_int(jm_image_grid_png(path, x, 5, 1, 3, 4, 2, -1, 1, 3, err, sizeof err), 0, "grid png: written");
    if (*err) tap_diag("%s", err);
    int W = 0, H = 0, color = 1;
    unsigned char *b = read_png(path, PNG_FORMAT_GRAY, &W, &H, &color);
    ok(b != NULL, "grid png: libpng reads it back");
    is_int(W, 30, "grid png: width = cols*(w*scale+2)+2");
    is_int(H, 35, "grid png: height = rows*(h*scale+2)+2");
    ok(!color, "grid png: c=1 is stored as greyscale");
    int gw = 0, gh = 0;
    ok(jm_image_grid_size(path, 5, 1, 3, 4, 2, 3, &gw, &gh, err, sizeof err) == 0 && gw == 30 && gh == 35,
       "jm_image_grid_size agrees");
    if (b) {
        int x0, y0;
        cell_xy(5, 2, 3, 4, 3, 0, 0, &x0, &y0);   /* the empty sixth cell */
        ok(gpx(b, W, 0, 0) == 64 && gpx(b, W, 1, 1) == 64 && gpx(b, W, 14, 10) == 64 && gpx(b, W, 15, 20) == 64 &&
           gpx(b, W, W - 1, H - 1) == 64 && gpx(b, W, x0 + 5, y0 + 5) == 64,
           "grid png: borders and the empty last cell are dark grey (64)");
        ok(gpx(b, W, 2, 2) == 128 && gpx(b, W, 16, 2) == 128 && gpx(b, W, 2, 13) == 128, "grid png: cells start after the 2-pixel border");
    }
    free(b);
    /* nrow larger than n: one row of n */
    ok(jm_image_grid_size(path, 3, 1, 28, 28, 8, 2, &gw, &gh, err, sizeof err) == 0 && gw == 3 * 58 + 2 && gh == 60,
       "grid size: nrow > n gives one row of n cells");
}

static void test_grid_values(void) {
    /* image 1 of 2 (3x3, scale 2) holds the probe values */
    float x[2 * 9];
    const float probe[9] = {-1, 1, 0, 5, -5, 0.5f, -0.5f, NAN, 0.999f};
    const int want[9] = {0, 255, 128, 255, 0, 191, 64, 0, 255};   /* (v+1)*127.5 rounded half up */
    for (int k = 0; k < 9; k++) { x[k] = -1; x[9 + k] = probe[k]; }
    char path[256], err[512] = "";
    path_in(path, sizeof path, "values.png");
    is_int(jm_image_grid_png(path, x, 2, 1, 3, 3, 2, -1, 1, 2, err, sizeof err), 0, "values png: written");
    int W = 0, H = 0;
    unsigned char *b = read_png(path, PNG_FORMAT_GRAY, &W, &H, NULL);
    if (!ok(b && W == 2 * (6 + 2) + 2 && H == 6 + 4, "values png: size")) { free(b); return; }
    int all = 1;
    for (int k = 0; k < 9; k++) {
        int px, py;
        cell_xy(1, 2, 3, 3, 2, k / 3, k % 3, &px, &py);
        for (int dy = 0; dy < 2; dy++)
            for (int dx = 0; dx < 2; dx++)
                if (gpx(b, W, px + dx, py + dy) != want[k]) {
                    all = 0;
                    tap_diag("value %g at (%d,%d): got %d, want %d", (double)probe[k], px + dx, py + dy, gpx(b, W, px + dx, py + dy), want[k]);
                }
    }
    ok(all, "values png: -1->0, 1->255, 0->128, 5 and -5 clamp, 0.5->191, NaN->0, each scale x scale times");
    int x0, y0;
    cell_xy(0, 2, 3, 3, 2, 2, 2, &x0, &y0);
    ok(gpx(b, W, x0 + 1, y0 + 1) == 0 && gpx(b, W, x0 + 2, y0 + 2) == 64, "values png: image 0 is all -1, then the border");
    free(b);
    /* another range: [0, 1] */
    float y[4] = {0, 1, 0.5f, 2};
    is_int(jm_image_grid_png(path, y, 1, 1, 2, 2, 1, 0, 1, 1, err, sizeof err), 0, "range [0,1]: written over the old file");
    b = read_png(path, PNG_FORMAT_GRAY, &W, &H, NULL);
    ok(b && W == 6 && H == 6 && gpx(b, W, 2, 2) == 0 && gpx(b, W, 3, 2) == 255 && gpx(b, W, 2, 3) == 128 && gpx(b, W, 3, 3) == 255,
       "range [0,1]: 0->0, 1->255, 0.5->128, 2 clamps");
    free(b);
}

static void test_grid_rgb(void) {
    /* two 2x2 RGB images; image 0: R plane 1, G plane -1, B plane 0; image 1: pixel k of
       plane ch = distinct values */
    float x[2 * 3 * 4];
    for (int k = 0; k < 4; k++) { x[k] = 1; x[4 + k] = -1; x[8 + k] = 0; }
    for (int k = 0; k < 12; k++) x[12 + k] = -1 + (float)k / 11 * 2;
    char path[256], err[512] = "";
    path_in(path, sizeof path, "rgb.png");
    is_int(jm_image_grid_png(path, x, 2, 3, 2, 2, 2, -1, 1, 1, err, sizeof err), 0, "rgb png: written");
    int W = 0, H = 0, color = 0;
    unsigned char *b = read_png(path, PNG_FORMAT_RGB, &W, &H, &color);
    if (!ok(b && color && W == 2 * 4 + 2 && H == 6, "rgb png: colour, 10x6")) { free(b); return; }
    const unsigned char *p = b + (2 * W + 2) * 3;
    ok(p[0] == 255 && p[1] == 0 && p[2] == 128, "rgb png: plane 0 is red, 1 green, 2 blue (got %d,%d,%d)", p[0], p[1], p[2]);
    /* image 1, pixel (1, 0): R = x[12+1], G = x[12+5], B = x[12+9] */
    p = b + (2 * W + 2 + 4 + 1) * 3;
    int r = (int)floor((x[13] + 1) * 127.5 + 0.5), g = (int)floor((x[17] + 1) * 127.5 + 0.5), bl = (int)floor((x[21] + 1) * 127.5 + 0.5);
    ok(p[0] == r && p[1] == g && p[2] == bl, "rgb png: CHW planes land in the right pixel (got %d,%d,%d want %d,%d,%d)", p[0], p[1], p[2], r, g, bl);
    p = b;
    ok(p[0] == 64 && p[1] == 64 && p[2] == 64, "rgb png: border is grey 64 in every channel");
    free(b);
}

static void test_grid_errors(void) {
    float x[16] = {0};
    char path[256], err[512];
    path_in(path, sizeof path, "bad.png");
    struct { const char *label; int n, c, h, w, nrow, scale; float lo, hi; const float *x; const char *word; } cases[] = {
        {"n = 0", 0, 1, 2, 2, 1, 1, -1, 1, x, "no images"},
        {"c = 2", 1, 2, 2, 2, 1, 1, -1, 1, x, "channels"},
        {"h = 0", 1, 1, 0, 2, 1, 1, -1, 1, x, "image size"},
        {"nrow = 0", 1, 1, 2, 2, 0, 1, -1, 1, x, "per row"},
        {"scale = 0", 1, 1, 2, 2, 1, 0, -1, 1, x, "scale"},
        {"scale = 65", 1, 1, 2, 2, 1, 65, -1, 1, x, "scale"},
        {"lo = hi", 1, 1, 2, 2, 1, 1, 1, 1, x, "range"},
        {"hi = NaN", 1, 1, 2, 2, 1, 1, -1, NAN, x, "range"},
        {"no data", 1, 1, 2, 2, 1, 1, -1, 1, NULL, "no pixel data"},
        {"too wide", 1000, 1, 28, 28, 1000, 64, -1, 1, x, "exceeds"},
    };
    int all = 1;
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        err[0] = 0;
        int r = jm_image_grid_png(path, cases[k].x, cases[k].n, cases[k].c, cases[k].h, cases[k].w, cases[k].nrow,
                                  cases[k].lo, cases[k].hi, cases[k].scale, err, sizeof err);
        if (r != -1 || strncmp(err, path, strlen(path)) != 0 || !has(err, cases[k].word)) {
            all = 0;
            tap_diag("%s: r=%d err=%s", cases[k].label, r, err);
        }
    }
    ok(all, "grid png: bad arguments give -1 and a message naming the file");
    ok(!exists(path), "grid png: nothing written on bad arguments");
    char missing[256];
    path_in(missing, sizeof missing, "no/such/dir/grid.png");
    err[0] = 0;
    int r = jm_image_grid_png(missing, x, 1, 1, 2, 2, 1, -1, 1, 1, err, sizeof err);
    ok(r == -1 && has(err, missing) && has(err, "No such file"), "grid png: a missing directory is an error: %s", err);
    r = jm_image_grid_gif(missing, x, 1, 1, 1, 2, 2, 1, -1, 1, 1, 10, err, sizeof err);
    ok(r == -1 && has(err, "grid.png"), "grid gif: a missing directory is an error");
    ok(jm_image_grid_png("", x, 1, 1, 2, 2, 1, -1, 1, 1, err, sizeof err) == -1 && jm_image_grid_png(NULL, x, 1, 1, 2, 2, 1, -1, 1, 1, NULL, 0) == -1,
       "grid png: empty or NULL path (and NULL err) are errors, not crashes");
}

/* ------------------------------------------------------------------ GIF */

/* The NETSCAPE2.0 block with loop count 0 among frame 0's extension blocks. */
static int has_loop(const SavedImage *im) {
    for (int k = 0; k + 1 < im->ExtensionBlockCount; k++) {
        const ExtensionBlock *e = &im->ExtensionBlocks[k], *d = &im->ExtensionBlocks[k + 1];
        if (e->Function == APPLICATION_EXT_FUNC_CODE && e->ByteCount == 11 && memcmp(e->Bytes, "NETSCAPE2.0", 11) == 0 &&
            d->Function == CONTINUE_EXT_FUNC_CODE && d->ByteCount == 3 && d->Bytes[0] == 1 && d->Bytes[1] == 0 && d->Bytes[2] == 0)
            return 1;
    }
    return 0;
}

static GifColorType gif_px(const GifFileType *g, int frame, int x, int y) {
    const SavedImage *im = &g->SavedImages[frame];
    const ColorMapObject *cm = im->ImageDesc.ColorMap ? im->ImageDesc.ColorMap : g->SColorMap;
    return cm->Colors[im->RasterBits[(size_t)y * im->ImageDesc.Width + x]];
}

static void test_gif_grey(void) {
    /* 3 frames of 2 images 2x2, 2 per row, scale 2: 2*(4+2)+2 = 14 x 8.
       Frame f is all -1 + f (0, 128, 255). */
    enum { NF = 3, N = 2, HW = 4 };
    float fr[NF * N * HW];
    for (int f = 0; f < NF; f++)
        for (int k = 0; k < N * HW; k++) fr[f * N * HW + k] = (float)(f - 1);
    char path[256], err[512] = "";
    path_in(path, sizeof path, "anim.gif");
    is_int(jm_image_grid_gif(path, fr, NF, N, 1, 2, 2, 2, -1, 1, 2, 25, err, sizeof err), 0, "gif: written");
    if (*err) tap_diag("%s", err);
    int gerr = 0;
    GifFileType *g = DGifOpenFileName(path, &gerr);
    if (!ok(g && DGifSlurp(g) == GIF_OK, "gif: giflib reads it back (DGifSlurp)")) {
        if (g) DGifCloseFile(g, &gerr);
        return;
    }
    is_int(g->ImageCount, NF, "gif: frame count");
    ok(g->SWidth == 14 && g->SHeight == 8, "gif: screen is 14x8 (got %dx%d)", g->SWidth, g->SHeight);
    ok(g->SavedImages[0].ImageDesc.Width == 14 && g->SavedImages[2].ImageDesc.Height == 8, "gif: frames cover the screen");
    ok(has_loop(&g->SavedImages[0]), "gif: NETSCAPE2.0 loop-forever extension present");
    GraphicsControlBlock gcb;
    ok(DGifSavedExtensionToGCB(g, 1, &gcb) == GIF_OK && gcb.DelayTime == 25, "gif: frame delay 25 cs");
    GifColorType c0 = gif_px(g, 0, 3, 3), c1 = gif_px(g, 1, 3, 3), c2 = gif_px(g, 2, 9, 5), bd = gif_px(g, 1, 0, 0);
    ok(c0.Red == 0 && c1.Red == 128 && c1.Green == 128 && c1.Blue == 128 && c2.Red == 255,
       "gif: grey palette colours of a pixel in frames 0, 1, 2 are 0, 128, 255");
    ok(bd.Red == 64 && bd.Green == 64 && bd.Blue == 64, "gif: border pixel is grey 64");
    DGifCloseFile(g, &gerr);
}

static void test_gif_rgb(void) {
    /* one 1x2 RGB image: pixel 0 = (1, -1, 0), pixel 1 = (-1, -1, -1); two frames */
    float fr[2 * 6] = {1, -1, -1, -1, 0, -1, /* frame 1: (0,255,255), (255,0,255) */ -1, 1, 1, -1, 1, 1};
    char path[256], err[512] = "";
    path_in(path, sizeof path, "rgb.gif");
    is_int(jm_image_grid_gif(path, fr, 2, 1, 3, 1, 2, 1, -1, 1, 3, 0, err, sizeof err), 0, "gif rgb: written");
    int gerr = 0;
    GifFileType *g = DGifOpenFileName(path, &gerr);
    if (!ok(g && DGifSlurp(g) == GIF_OK && g->ImageCount == 2 && g->SWidth == 10 && g->SHeight == 7, "gif rgb: 2 frames of 10x7")) {
        if (g) DGifCloseFile(g, &gerr);
        return;
    }
    GifColorType a = gif_px(g, 0, 2, 2), b = gif_px(g, 0, 6, 4), c = gif_px(g, 1, 2, 2), d = gif_px(g, 1, 7, 4), bd = gif_px(g, 0, 0, 0);
    /* (255, 0, 128): blue's nearest of the 6 levels 0, 51, ..., 255 is 153 */
    ok(a.Red == 255 && a.Green == 0 && a.Blue == 153, "gif rgb: (255,0,128) -> nearest cube colour (255,0,153), got (%d,%d,%d)", a.Red, a.Green, a.Blue);
    ok(b.Red == 0 && b.Green == 0 && b.Blue == 0, "gif rgb: black stays black");
    ok(c.Red == 0 && c.Green == 255 && c.Blue == 255 && d.Red == 255 && d.Green == 0 && d.Blue == 255, "gif rgb: frame 1 colours");
    ok(bd.Red == 64 && bd.Green == 64 && bd.Blue == 64, "gif rgb: border is exactly grey 64 (an extra palette entry)");
    DGifCloseFile(g, &gerr);
    ok(jm_image_grid_gif(path, fr, 0, 1, 3, 1, 2, 1, -1, 1, 3, 0, err, sizeof err) == -1 && has(err, "frames"), "gif: nframes = 0 is an error");
    ok(jm_image_grid_gif(path, fr, 1, 1, 3, 1, 2, 1, -1, 1, 3, 70000, err, sizeof err) == -1 && has(err, "delay"), "gif: delay 70000 is an error");
}

/* ------------------------------------------------------------------ captions */

static void test_labeled(void) {
    /* 6 images 4x4 (values ramp), 3 per row, scale 3: grid 3*(12+2)+2 = 44 x 30 */
    float x[6 * 16];
    for (int k = 0; k < 6 * 16; k++) x[k] = -1 + 2.0f * (float)(k % 17) / 16;
    const char *labels[2] = {"zero", "a much longer caption"};
    char plain[256], lab[256], err[512] = "";
    path_in(plain, sizeof plain, "plain.png");
    path_in(lab, sizeof lab, "labeled.png");
    is_int(jm_image_grid_png(plain, x, 6, 1, 4, 4, 3, -1, 1, 3, err, sizeof err), 0, "labeled: the plain grid");
    is_int(jm_image_grid_png_labeled(lab, x, 6, 1, 4, 4, 3, -1, 1, 3, labels, 2, err, sizeof err), 0, "labeled: written");
    if (*err) tap_diag("%s", err);
    int W = 0, H = 0, LW = 0, LH = 0;
    unsigned char *g = read_png(plain, PNG_FORMAT_GRAY, &W, &H, NULL), *l = read_png(lab, PNG_FORMAT_RGB, &LW, &LH, NULL);
    if (!ok(g && l && W == 44 && H == 30 && LH == H && LW > W + 40, "labeled: same height, a caption column on the left (%dx%d vs %dx%d)", LW, LH, W, H)) {
        free(g); free(l);
        return;
    }
    int same = 1, light = 0, off = LW - W;
    for (int y = 0; y < H; y++)
        for (int xx = 0; xx < W; xx++) {
            const unsigned char *p = l + ((size_t)y * LW + off + xx) * 3;
            int v = g[(size_t)y * W + xx];
            same &= p[0] == v && p[1] == v && p[2] == v;
        }
    for (int y = 0; y < H; y++)
        for (int xx = 0; xx < off; xx++) light += l[((size_t)y * LW + xx) * 3] > 180;
    ok(same, "labeled: the rightmost columns are exactly the plain grid");
    ok(light > 20, "labeled: caption text is drawn (%d light pixels)", light);
    free(g);
    free(l);
    ok(jm_image_grid_png_labeled(lab, x, 6, 1, 4, 4, 3, -1, 1, 3, labels, 3, err, sizeof err) == -1 && has(err, "3 row labels"),
       "labeled: more labels than grid rows is an error");
    const char *odd[2] = {"bad \xff\xfe utf-8", NULL};
    ok(jm_image_grid_png_labeled(lab, x, 6, 1, 4, 4, 3, -1, 1, 3, odd, 2, err, sizeof err) == 0, "labeled: invalid UTF-8 and NULL labels are drawn safely");
    char buf[8];
    is_str(jm_image_clean_text("a\xc3\xa9\xff\n\xe2\x82", buf, sizeof buf), "a\xc3\xa9????", "clean_text: keeps UTF-8, replaces bad bytes and control characters");
    is_str(jm_image_clean_text("ab\xc3\xa9", buf, 4), "ab", "clean_text: truncates at a character boundary");
}

/* ------------------------------------------------------------------ plots */

/* Reads an RGB plot back; checks size and that it is not blank. */
static unsigned char *check_plot(const char *label, const char *path, int wantw, int wanth, int *W, int *H) {
    unsigned char *b = read_png(path, PNG_FORMAT_RGB, W, H, NULL);
    ok(b && *W == wantw && *H == wanth, "%s: PNG of %dx%d (got %dx%d)", label, wantw, wanth, b ? *W : 0, b ? *H : 0);
    int nc = b ? distinct_colors(b, (size_t)*W * *H) : 0;
    ok(nc > 40, "%s: not blank (%d distinct colours)", label, nc);
    return b;
}

static void test_lines(void) {
    enum { N = 200 };
    double x[N], a[N], b[N], c[N];
    for (int k = 0; k < N; k++) {
        x[k] = k * 5;
        a[k] = 2.0 * exp(-k / 50.0) + 0.1;
        b[k] = 1.5 * exp(-k / 80.0) + 0.2 + 0.05 * sin(k * 0.3);
        c[k] = k % 37 == 5 ? NAN : 1.0 + 0.3 * cos(k * 0.05);
    }
    c[100] = INFINITY;
    jm_series s[3] = {{"loss", x, a, N}, {"loss_ce", x, b, N}, {"loss_px", NULL, c, N}};
    jm_plot_opts o = {"loss", "step", "loss", 0, 0, 0};
    char path[256], err[512] = "";
    path_in(path, sizeof path, "lines.png");
    is_int(jm_plot_lines(path, &o, s, 3, err, sizeof err), 0, "lines: written");
    if (*err) tap_diag("%s", err);
    int W, H;
    unsigned char *px = check_plot("lines", path, 900, 560, &W, &H);
    if (px) {
        int blue = 0;
        for (size_t k = 0; k < (size_t)W * H; k++) blue += abs(px[3 * k] - 31) < 8 && abs(px[3 * k + 1] - 119) < 8 && abs(px[3 * k + 2] - 180) < 8;
        ok(blue > 300, "lines: the first series is drawn in tab10 blue (%d pixels)", blue);
    }
    free(px);
    jm_plot_opts lo = {"log", "step", "grad", 1, 400, 300};
    a[3] = -1;   /* not drawable on a log axis: skipped */
    is_int(jm_plot_lines(path, &lo, s, 2, err, sizeof err), 0, "lines logy 400x300: written");
    px = check_plot("lines logy", path, 400, 300, &W, &H);
    free(px);
    is_int(jm_plot_lines(path, NULL, NULL, 0, err, sizeof err), 0, "lines: no series gives empty axes, not an error");
}

/* A constant line with one NaN in the middle: the row where it is drawn has two separate
   runs of blue. */
static void test_lines_gap(void) {
    double y[21];
    for (int k = 0; k < 21; k++) y[k] = 1;
    y[10] = NAN;
    jm_series s = {NULL, NULL, y, 21};
    char path[256], err[512] = "";
    path_in(path, sizeof path, "gap.png");
    jm_plot_opts o = {NULL, NULL, NULL, 0, 300, 200};
    is_int(jm_plot_lines(path, &o, &s, 1, err, sizeof err), 0, "gap: written");
    int W = 0, H = 0;
    unsigned char *px = read_png(path, PNG_FORMAT_RGB, &W, &H, NULL);
    if (!px) { ok(0, "gap: read back"); return; }
    int best_row = -1, best = 0;
    for (int yy = 0; yy < H; yy++) {
        int n = 0;
        for (int xx = 0; xx < W; xx++) {
            const unsigned char *p = px + ((size_t)yy * W + xx) * 3;
            n += p[2] > 150 && p[0] < 80;
        }
        if (n > best) { best = n; best_row = yy; }
    }
    int runs = 0, in = 0;
    for (int xx = 0; xx < W && best_row >= 0; xx++) {
        const unsigned char *p = px + ((size_t)best_row * W + xx) * 3;
        int blue = p[2] > 150 && p[0] < 80;
        runs += blue && !in;
        in = blue;
    }
    ok(best > 100 && runs == 2, "gap: a NaN point splits the line in two (%d runs, %d pixels)", runs, best);
    free(px);
}

static void test_hist_and_reliability(void) {
    enum { N = 2000 };
    double a[N], b[N];
    for (int k = 0; k < N; k++) {
        double u = (k + 0.5) / N;
        a[k] = -2 + 4 * u * u;
        b[k] = k % 100 == 0 ? NAN : 1 + sin(k * 0.7);
    }
    jm_series s[2] = {{"e_data", NULL, a, N}, {"e_sample", NULL, b, N}};
    jm_plot_opts o = {"energies", "energy", "density", 0, 0, 0};
    char path[256], err[512] = "";
    path_in(path, sizeof path, "hist.png");
    is_int(jm_plot_hist(path, &o, s, 2, 40, err, sizeof err), 0, "hist: written");
    int W, H;
    free(check_plot("hist", path, 900, 560, &W, &H));
    o.logy = 1;
    is_int(jm_plot_hist(path, &o, s, 2, 0, err, sizeof err), 0, "hist: automatic bins, log density");
    ok(jm_plot_hist(path, &o, s, 2, -1, err, sizeof err) == -1 && has(err, "hist.png") && has(err, "bin"), "hist: negative bins is an error");

    double conf[10], acc[10];
    int64_t cnt[10];
    for (int k = 0; k < 10; k++) {
        conf[k] = (k + 0.5) / 10;
        acc[k] = conf[k] * 0.8;
        cnt[k] = k < 2 ? 0 : 100 * k;
    }
    conf[0] = acc[0] = NAN;   /* empty bins may hold NaN */
    path_in(path, sizeof path, "rel.png");
    jm_plot_opts r = {"reliability", NULL, NULL, 0, 600, 600};
    is_int(jm_plot_reliability(path, &r, conf, acc, cnt, 10, err, sizeof err), 0, "reliability: written");
    if (*err) tap_diag("%s", err);
    free(check_plot("reliability", path, 600, 600, &W, &H));
    cnt[3] = -1;
    ok(jm_plot_reliability(path, &r, conf, acc, cnt, 10, err, sizeof err) == -1 && has(err, "rel.png") && has(err, "bin 3"),
       "reliability: a negative count is an error naming the bin");
    cnt[3] = 5;
    acc[4] = 1.5;
    ok(jm_plot_reliability(path, &r, conf, acc, cnt, 10, err, sizeof err) == -1 && has(err, "accuracy 1.5"), "reliability: accuracy above 1 is an error");
}

static void test_plot_errors(void) {
    double y[3] = {1, 2, 3};
    jm_series s = {"y", NULL, y, 3}, bad = {"y", NULL, NULL, 3};
    char path[256], missing[256], err[512];
    path_in(path, sizeof path, "err.png");
    path_in(missing, sizeof missing, "nope/err.png");
    jm_plot_opts tiny = {NULL, NULL, NULL, 0, 10, 10};
    ok(jm_plot_lines(path, &tiny, &s, 1, err, sizeof err) == -1 && has(err, "err.png") && has(err, "10x10"), "plot: a 10x10 canvas is refused");
    ok(jm_plot_lines(path, NULL, &s, -1, err, sizeof err) == -1 && has(err, "ns = -1"), "plot: ns < 0 is an error");
    ok(jm_plot_lines(path, NULL, &bad, 1, err, sizeof err) == -1 && has(err, "no y values"), "plot: a series without y is an error");
    ok(jm_plot_lines(missing, NULL, &s, 1, err, sizeof err) == -1 && has(err, missing) && has(err, "No such file"),
       "plot: a missing directory is an error: %s", err);
    ok(!exists(path), "plot: nothing written on errors");
}

/* ------------------------------------------------------------------ JSON and metrics */

static int parse(const char *s, jm_json_object *o, char *what, size_t wl) { return jm_plot_parse_json(s, strlen(s), o, what, wl); }

static void test_json(void) {
    jm_json_object o;
    char what[256];
    int r = parse(" {\"a\": 1.5e2, \"s\": \"x\\\"\\u00e9\\ud83d\\ude00\\n\", \"t\": true, \"f\": false, \"z\": null, "
                  "\"n\": NaN, \"i\": -Infinity, \"big\": 1e400, \"neg\": -0.25}\r\n", &o, what, sizeof what);
    ok(r == 0 && o.n == 9, "json: a flat object with every kind of value parses (%s)", what);
    const jm_json_field *f;
    ok((f = jm_plot_json_get(&o, "a")) && f->kind == JM_JSON_NUM && f->num == 150, "json: number");
    ok((f = jm_plot_json_get(&o, "s")) && f->kind == JM_JSON_STR && strcmp(f->str, "x\"\xc3\xa9\xf0\x9f\x98\x80\n") == 0,
       "json: string escapes, \\u and a surrogate pair decode to UTF-8");
    ok((f = jm_plot_json_get(&o, "t")) && f->kind == JM_JSON_BOOL && f->num == 1 && jm_plot_json_get(&o, "f")->num == 0, "json: true/false");
    ok((f = jm_plot_json_get(&o, "z")) && f->kind == JM_JSON_NULL, "json: null");
    ok(isnan(jm_plot_json_get(&o, "n")->num) && jm_plot_json_get(&o, "i")->num == -INFINITY &&
       isinf(jm_plot_json_get(&o, "big")->num) && jm_plot_json_get(&o, "neg")->num == -0.25, "json: NaN, -Infinity, overflow, negative");
    ok(jm_plot_json_get(&o, "missing") == NULL, "json: absent key is NULL");
    jm_plot_free_json(&o);
    ok(parse("{}", &o, what, sizeof what) == 0 && o.n == 0, "json: empty object");
    struct { const char *in, *w1, *w2; } bad[] = {
        {"[1, 2]", "not a JSON object", NULL},
        {"{\"a\": 1.}", "key 'a'", "bad number '1.'"},
        {"{\"a\": 01}", "bad number '01'", NULL},
        {"{\"a\": .5}", "key 'a'", "unexpected value '.5'"},
        {"{\"a\": 1e}", "bad number", NULL},
        {"{\"a\": nan}", "unexpected value 'nan'", NULL},
        {"{\"a\": \"abc", "unterminated string", NULL},
        {"{\"a\": \"abc\n", "unterminated string", NULL},
        {"{\"ab", "unterminated string", NULL},
        {"{\"cfg\": {\"lr\": 1}}", "key 'cfg'", "nested objects"},
        {"{\"v\": [1]}", "key 'v'", "nested arrays"},
        {"{\"a\": 1, \"a\": 2}", "duplicate key 'a'", NULL},
        {"{\"a\": 1,}", "trailing comma", NULL},
        {"{\"a\": 1", "unterminated object", NULL},
        {"{\"a\": 1} x", "after the object", NULL},
        {"{\"a\" 1}", "expected ':'", NULL},
        {"{\"a\": 1 \"b\": 2}", "expected ',' or '}'", NULL},
        {"{a: 1}", "expected a key", NULL},
        {"{\"a\": }", "missing value", NULL},
        {"{\"a\": \"\\x\"}", "bad escape", NULL},
        {"{\"a\": \"\\ud800\"}", "surrogate", NULL},
        {"{\"a\": \"\\u0000\"}", "\\u0000", NULL},
        {"{\"a\": \"\t\"}", "control character", NULL},
        {"", "not a JSON object", NULL},
    };
    int all = 1;
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        what[0] = 0;
        r = parse(bad[k].in, &o, what, sizeof what);
        if (r != -1 || !has(what, bad[k].w1) || (bad[k].w2 && !has(what, bad[k].w2)) || o.n != 0 || o.f != NULL) {
            all = 0;
            tap_diag("input %s: r=%d what=%s", bad[k].in, r, what);
        }
    }
    ok(all, "json: %d malformed lines give the expected messages", (int)(sizeof bad / sizeof bad[0]));
}

static const char *g_metrics =
    "{\"step\": 0, \"loss\": 2.5, \"loss_ce\": 2.0, \"acc\": 0.1, \"lr\": 0.001, \"note\": \"x\", \"flag\": true, \"skip\": null}\n"
    "{\"step\": 10, \"loss\": 1.5, \"loss_ce\": 1.2, \"grad_norm\": 3.5}\n"
    "{\"event\": \"rollback\", \"step\": 5, \"reason\": \"nan\"}\n"
    "\n"
    "{\"step\": 20, \"loss\": NaN, \"test_acc_ood\": 0.5, \"e_data\": -1.0, \"e_sample\": 2.0, \"grad_norm\": 0.02}\r\n"
    "{\"epoch\": 1}\n"
    "{\"step\": 30, \"loss\": 0.9, \"loss_px\": 0.4, \"acc\": 0.6, \"lr\": 0.0005, \"grad_norm\": 0.5, \"e_data\": -2, \"e_sample\": 1}\n";

static void test_metrics_read(void) {
    char path[256], err[512] = "";
    path_in(path, sizeof path, "m.jsonl");
    spit(path, g_metrics);
    jm_metrics m;
    is_int(jm_plot_read_metrics(path, &m, err, sizeof err), 0, "metrics: read");
    if (*err) tap_diag("%s", err);
    const jm_metric *loss = jm_plot_find_metric(&m, "loss"), *acc = jm_plot_find_metric(&m, "acc");
    ok(loss && loss->n == 4 && loss->x[0] == 0 && loss->y[0] == 2.5 && loss->x[1] == 10 && loss->y[1] == 1.5 &&
       isnan(loss->y[2]) && loss->x[3] == 30 && loss->y[3] == 0.9, "metrics: loss values at their steps (NaN kept)");
    ok(acc && acc->n == 2 && acc->x[1] == 30 && acc->y[1] == 0.6, "metrics: a key missing from some lines has only its points");
    ok(!jm_plot_find_metric(&m, "note") && !jm_plot_find_metric(&m, "flag") && !jm_plot_find_metric(&m, "skip") &&
       !jm_plot_find_metric(&m, "step") && !jm_plot_find_metric(&m, "epoch") && !jm_plot_find_metric(&m, "reason"),
       "metrics: strings, booleans, nulls, step, step-less lines and event fields are not series");
    ok(m.nevents == 1 && m.ev[0].step == 5 && strcmp(m.ev[0].name, "rollback") == 0, "metrics: the event line");
    is_int(m.nlines, 6, "metrics: 6 non-blank lines");
    is_str(m.nkeys > 0 ? m.m[0].key : NULL, "loss", "metrics: keys in order of appearance");
    jm_plot_free_metrics(&m);
}

/* A metrics file with one bad line must fail with "FILE:LINE: ..." and the key words. */
static void bad_metrics(const char *label, const char *text, int line, const char *w1, const char *w2) {
    char path[256], want[300], err[512] = "";
    path_in(path, sizeof path, "bad.jsonl");
    spit(path, text);
    if (line) snprintf(want, sizeof want, "%s:%d: ", path, line);
    else snprintf(want, sizeof want, "%s: ", path);
    jm_metrics m;
    int r = jm_plot_read_metrics(path, &m, err, sizeof err);
    int good = r == -1 && strncmp(err, want, strlen(want)) == 0 && has(err, w1) && (!w2 || has(err, w2)) && m.nkeys == 0 && m.m == NULL;
    if (!ok(good, "metrics error: %s", label)) tap_diag("r=%d err=%s (want prefix %s)", r, err, want);
    char out[256], *written[JM_PLOT_MAX_WRITTEN];
    path_in(out, sizeof out, "bad_out");
    r = jm_plot_metrics(path, out, written, err, sizeof err);
    ok(r == -1 && strncmp(err, want, strlen(want)) == 0 && written[0] == NULL, "jm_plot_metrics fails the same way: %s", label);
}

static void test_metrics_errors(void) {
    bad_metrics("not an object", "{\"step\": 1, \"loss\": 1}\n[1, 2]\n", 2, "not a JSON object", NULL);
    bad_metrics("bad number", "{\"step\": 1, \"loss\": 1}\n\n{\"step\": 2, \"loss\": 1.}\n", 3, "key 'loss'", "bad number '1.'");
    bad_metrics("unterminated string", "{\"step\": 1, \"lo\n", 1, "unterminated string", NULL);
    bad_metrics("nested object", "{\"step\": 1, \"cfg\": {\"lr\": 0.1}}\n", 1, "key 'cfg'", "nested objects");
    bad_metrics("step not a number", "{\"step\": \"one\", \"loss\": 1}\n", 1, "'step' must be a number", NULL);
    bad_metrics("event not a string", "{\"event\": 3, \"step\": 1}\n", 1, "'event' must be a string", NULL);
    bad_metrics("empty file", "", 0, "empty", NULL);
    bad_metrics("blank lines only", "\n  \n\t\n", 0, "empty", NULL);
    char path[256], err[512];
    path_in(path, sizeof path, "absent.jsonl");
    jm_metrics m;
    ok(jm_plot_read_metrics(path, &m, err, sizeof err) == -1 && has(err, path) && has(err, "cannot open"), "metrics: a missing file is an error");
    ok(jm_plot_read_metrics(g_dir, &m, err, sizeof err) == -1 && has(err, g_dir), "metrics: a directory is an error: %s", err);
}

static void test_metrics_plots(void) {
    char path[256], out[256], err[512] = "", *written[JM_PLOT_MAX_WRITTEN];
    path_in(path, sizeof path, "m.jsonl");
    spit(path, g_metrics);
    path_in(out, sizeof out, "plots");
    int r = jm_plot_metrics(path, out, written, err, sizeof err);
    is_int(r, 5, "metrics plots: 5 PNGs (loss, energy, accuracy, lr, grad_norm)");
    if (*err) tap_diag("%s", err);
    static const char *names[5] = {"loss.png", "energy.png", "accuracy.png", "lr.png", "grad_norm.png"};
    int all = 1;
    for (int k = 0; k < 5 && r == 5; k++) {
        int W = 0, H = 0;
        unsigned char *b = written[k] ? read_png(written[k], PNG_FORMAT_RGB, &W, &H, NULL) : NULL;
        all &= b && W == 900 && H == 560 && has(written[k], names[k]) && distinct_colors(b, (size_t)W * H) > 40;
        free(b);
    }
    ok(all, "metrics plots: written[] names each PNG; each is 900x560 and not blank");
    for (int k = 0; k < JM_PLOT_MAX_WRITTEN; k++) free(written[k]);
    ok(written[5] == NULL || r != 5, "metrics plots: unused written[] entries are NULL");

    /* only loss and acc present: two PNGs, no energy.png */
    path_in(path, sizeof path, "m2.jsonl");
    spit(path, "{\"step\": 1, \"loss\": 1}\n{\"step\": 2, \"loss\": 0.5, \"test_acc\": 0.7}\n{\"step\": 3, \"time\": 5}\n");
    path_in(out, sizeof out, "plots2");
    r = jm_plot_metrics(path, out, NULL, err, sizeof err);
    char p[300];
    snprintf(p, sizeof p, "%s/energy.png", out);
    int no_energy = !exists(p);
    snprintf(p, sizeof p, "%s/accuracy.png", out);
    ok(r == 2 && no_energy && exists(p), "metrics plots: only groups with keys present are drawn (r=%d)", r);
    path_in(path, sizeof path, "m3.jsonl");
    spit(path, "{\"step\": 1, \"time\": 5}\n");
    is_int(jm_plot_metrics(path, out, NULL, err, sizeof err), 0, "metrics plots: no plotted keys gives 0 PNGs");
    path_in(out, sizeof out, "no/such/plots");
    ok(jm_plot_metrics(path, out, NULL, err, sizeof err) == -1 && has(err, out), "metrics plots: out_dir in a missing directory is an error");
}

static void test_no_tmp_left(void) {
    is_int(count_tmp(g_dir), 0, "atomic writes: no .tmp. files left behind anywhere");
}

int main(void) {
    strcpy(g_dir, "/tmp/t_image.XXXXXX");
    if (!mkdtemp(g_dir)) {
        printf("Bail out! mkdtemp: %s\n", strerror(errno));
        return 1;
    }
    test_grid_geometry();
    test_grid_values();
    test_grid_rgb();
    test_grid_errors();
    test_gif_grey();
    test_gif_rgb();
    test_labeled();
    test_lines();
    test_lines_gap();
    test_hist_and_reliability();
    test_plot_errors();
    test_json();
    test_metrics_read();
    test_metrics_errors();
    test_metrics_plots();
    test_no_tmp_left();
    rm_tree(g_dir);
    return tap_done();
}
