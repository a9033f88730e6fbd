/* plot.c — line charts, histograms and reliability diagrams drawn with cairo, and the
 * metrics-file reader (a small strict parser of flat JSON objects) behind
 * jm_plot_metrics. See plot.h for the conventions. */
#include "plot.h"
#include "image.h"
#include <cairo/cairo.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* ------------------------------------------------------------------ errors */

/* "WHERE: message" into err (which may be NULL); always -1. */
static int jm_plot_fail(char *err, size_t errlen, const char *where, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    jm_image_verror(err, errlen, where, fmt, ap);
    va_end(ap);
    return -1;
}

/* "FILE:LINE: what", the compilers' convention, for a bad line of a metrics file; -1. */
static int jm_plot_fail_at(char *err, size_t errlen, const char *path, long line, const char *what) {
    if (err && errlen) snprintf(err, errlen, "%s:%ld: %s", path, line, what);
    return -1;
}

/* ------------------------------------------------------------------ axes */

#define JM_PLOT_MAX_TICKS 32

typedef struct {
    double lo, hi;     /* the range shown; log10 of it on a logarithmic axis */
    int log;
    double step;       /* spacing of linear ticks (also sets label precision); 0: decade/1-2-5 ticks of a log axis */
    int nt;
    double t[JM_PLOT_MAX_TICKS];   /* tick values in data units */
} jm_axis;

/* The 1-2-5 step (1, 2 or 5 times a power of ten) nearest range/target from above-ish:
   the classic "nice numbers" rule, thresholds at 1.5, 3 and 7. */
static double jm_plot_nice_step(double range, int target) {
    double raw = range / target, mag = pow(10, floor(log10(raw))), f = raw / mag;
    return (f < 1.5 ? 1 : f < 3 ? 2 : f < 7 ? 5 : 10) * mag;
}

/* Multiples of step within [lo, hi] (a little slack for rounding). */
static void jm_plot_ticks_linear(jm_axis *a, double lo, double hi, double step) {
    a->nt = 0;
    a->step = step;
    if (!(step > 0) || !isfinite(step)) return;
    double k0 = ceil(lo / step - 1e-9), k1 = floor(hi / step + 1e-9);
    /* ceil(-1e-9) is -0.0: spelled out so that the label reads "0", not "-0" */
    for (double k = k0; k <= k1 && a->nt < JM_PLOT_MAX_TICKS; k++) a->t[a->nt++] = k == 0 ? 0.0 : k * step;
}

/* A linear axis over [dmin, dmax], widened by pad_lo and pad_hi (fractions of the
   range); about `target` ticks. A degenerate or empty range gets a sensible width. */
static void jm_plot_axis_linear(jm_axis *a, double dmin, double dmax, double pad_lo, double pad_hi, int target) {
    if (!isfinite(dmin) || !isfinite(dmax) || dmin > dmax) { dmin = 0; dmax = 1; }
    /* the range must be resolvable in doubles next to the values' magnitude */
    double minr = fmax(fabs(dmin), fabs(dmax)) * 1e-9;
    if (dmax - dmin <= minr) {
        double d = minr > 0 ? fmax(minr, fabs(dmax) * 0.1) : 1;
        dmin -= d;
        dmax += d;
    }
    double r = dmax - dmin;
    if (!isfinite(r)) { dmin *= 0.5; dmax *= 0.5; r = dmax - dmin; }   /* beyond DBL_MAX apart: show less */
    a->log = 0;
    a->lo = dmin - pad_lo * r;
    a->hi = dmax + pad_hi * r;
    jm_plot_ticks_linear(a, a->lo, a->hi, jm_plot_nice_step(a->hi - a->lo, target));
}

/* Ticks of a log axis: every decade (thinned to about `target`) when at least three are
   in view; otherwise 1, 2 and 5 times each power of ten; if even those are fewer than
   two, linear 1-2-5 ticks in data units. */
static void jm_plot_ticks_log(jm_axis *a, int target) {
    a->nt = 0;
    a->step = 0;
    double d0 = ceil(a->lo - 1e-9), d1 = floor(a->hi + 1e-9);
    if (d1 - d0 >= 2) {
        double every = ceil((d1 - d0 + 1) / target);
        for (double d = d0; d <= d1 && a->nt < JM_PLOT_MAX_TICKS; d += every) a->t[a->nt++] = pow(10, d);
        return;
    }
    static const double mult[3] = {1, 2, 5};
    for (double d = floor(a->lo); d <= ceil(a->hi); d++)
        for (int m = 0; m < 3 && a->nt < JM_PLOT_MAX_TICKS; m++) {
            double l = log10(mult[m]) + d;
            if (l >= a->lo - 1e-9 && l <= a->hi + 1e-9) a->t[a->nt++] = mult[m] * pow(10, d);
        }
    if (a->nt >= 2) return;
    double vlo = pow(10, a->lo), vhi = pow(10, a->hi);
    jm_plot_ticks_linear(a, vlo, vhi, jm_plot_nice_step(vhi - vlo, target));
}

/* A logarithmic axis over the positive range [dmin, dmax], padded 5% (in log units). */
static void jm_plot_axis_log(jm_axis *a, double dmin, double dmax, int target) {
    if (!(dmin > 0) || !(dmax >= dmin) || !isfinite(dmax)) { dmin = 1; dmax = 10; }
    double l0 = log10(dmin), l1 = log10(dmax);
    if (l1 - l0 < 1e-6) { l0 -= 0.5; l1 += 0.5; }   /* one value: a decade around it */
    double r = l1 - l0;
    a->log = 1;
    a->lo = l0 - 0.05 * r;
    a->hi = l1 + 0.05 * r;
    jm_plot_ticks_log(a, target);
}

/* Where v falls on the axis: 0 at lo, 1 at hi (outside for values out of range). */
static double jm_plot_axis_frac(const jm_axis *a, double v) {
    double u = a->log ? log10(v) : v;
    return (u - a->lo) / (a->hi - a->lo);
}

/* A tick's label: %g for decade ticks; otherwise as many decimals as the step needs
   (0.2 -> 1, 0.05 -> 2), or %g with the digits the step needs for very large or very
   small magnitudes (2e6 in steps of 5e5 -> "2e+06", "2.5e+06"). */
static void jm_plot_tick_label(const jm_axis *a, double v, char *buf, size_t cap) {
    if (a->step == 0) { snprintf(buf, cap, "%g", v); return; }
    double mag = fmax(fabs(a->t[0]), fabs(a->t[a->nt - 1]));
    int sexp = (int)floor(log10(a->step) + 1e-9);
    if (mag >= 1e6 || (mag > 0 && mag < 1e-4)) {
        int prec = (int)floor(log10(mag)) - sexp + 1;
        snprintf(buf, cap, "%.*g", prec < 1 ? 1 : prec > 12 ? 12 : prec, v);
    } else {
        int dec = sexp < 0 ? -sexp : 0;
        snprintf(buf, cap, "%.*f", dec, v);
    }
}

/* ------------------------------------------------------------------ the canvas */

/* A coarse map of where data was drawn inside the plot area, so that the legend can go
   where it hides the least. */
#define JM_OCC_W 64
#define JM_OCC_H 40

typedef struct {
    cairo_surface_t *sf;
    cairo_t *cr;
    int W, H;
    double x0, y0, x1, y1;   /* plot area in pixels: left, top, right, bottom */
    jm_axis ax, ay;
    unsigned char occ[JM_OCC_H][JM_OCC_W];
} jm_plot;

/* matplotlib's tab10 colour cycle */
static const double jm_plot_colors[10][3] = {
    {0.122, 0.467, 0.706}, {1.000, 0.498, 0.055}, {0.173, 0.627, 0.173}, {0.839, 0.153, 0.157},
    {0.580, 0.404, 0.741}, {0.549, 0.337, 0.294}, {0.890, 0.467, 0.761}, {0.498, 0.498, 0.498},
    {0.737, 0.741, 0.133}, {0.090, 0.745, 0.812}};

static const double *jm_plot_color(int i) { return jm_plot_colors[i % 10]; }

static double jm_plot_px(const jm_plot *p, double x) { return p->x0 + jm_plot_axis_frac(&p->ax, x) * (p->x1 - p->x0); }
static double jm_plot_py(const jm_plot *p, double y) { return p->y1 - jm_plot_axis_frac(&p->ay, y) * (p->y1 - p->y0); }

/* Marks the occupancy cell under pixel (x, y), if inside the plot area. */
static void jm_plot_occ_point(jm_plot *p, double x, double y) {
    double fx = (x - p->x0) / (p->x1 - p->x0), fy = (y - p->y0) / (p->y1 - p->y0);
    if (!(fx >= 0 && fx < 1 && fy >= 0 && fy < 1)) return;
    p->occ[(int)(fy * JM_OCC_H)][(int)(fx * JM_OCC_W)] = 1;
}

/* Marks the cells along a segment (sampled at least once per cell). */
static void jm_plot_occ_segment(jm_plot *p, double xa, double ya, double xb, double yb) {
    double cw = (p->x1 - p->x0) / JM_OCC_W, ch = (p->y1 - p->y0) / JM_OCC_H;
    double steps = ceil(fmax(fabs(xb - xa) / cw, fabs(yb - ya) / ch));
    if (!(steps < 4 * (JM_OCC_W + JM_OCC_H))) steps = 4 * (JM_OCC_W + JM_OCC_H);   /* also NaN */
    for (double k = 0; k <= steps; k++) {
        double t = steps > 0 ? k / steps : 0;
        jm_plot_occ_point(p, xa + t * (xb - xa), ya + t * (yb - ya));
    }
}

/* Marks every cell a pixel rectangle touches. */
static void jm_plot_occ_rect(jm_plot *p, double xa, double ya, double xb, double yb) {
    double cw = (p->x1 - p->x0) / JM_OCC_W, ch = (p->y1 - p->y0) / JM_OCC_H;
    double lx = fmin(xa, xb), hx = fmax(xa, xb), ly = fmin(ya, yb), hy = fmax(ya, yb);
    for (double y = ly; y <= hy + ch; y += ch)
        for (double x = lx; x <= hx + cw; x += cw) jm_plot_occ_point(p, fmin(x, hx), fmin(y, hy));
}

static void jm_plot_font(cairo_t *cr, double size, int bold) {
    cairo_select_font_face(cr, "sans-serif", CAIRO_FONT_SLANT_NORMAL, bold ? CAIRO_FONT_WEIGHT_BOLD : CAIRO_FONT_WEIGHT_NORMAL);
    cairo_set_font_size(cr, size);
}

static double jm_plot_text_width(cairo_t *cr, const char *s) {
    char buf[512];
    cairo_text_extents_t te;
    cairo_text_extents(cr, jm_image_clean_text(s, buf, sizeof buf), &te);
    return te.x_advance;
}

/* Text at (x, y): ha 0/0.5/1 puts x at its left/centre/right, va 0/0.5/1 puts y at the
   top/middle/bottom of the font's ascent-descent box (the same for every string, so a
   row of labels lines up). */
static void jm_plot_text(cairo_t *cr, double x, double y, const char *s, double ha, double va) {
    char buf[512];
    cairo_text_extents_t te;
    cairo_font_extents_t fe;
    jm_image_clean_text(s, buf, sizeof buf);
    cairo_text_extents(cr, buf, &te);
    cairo_font_extents(cr, &fe);
    cairo_move_to(cr, x - ha * te.x_advance, y + fe.ascent - va * (fe.ascent + fe.descent));
    cairo_show_text(cr, buf);
}

/* Pixel centre for a crisp one-pixel line at coordinate v. */
static double jm_plot_crisp(double v) { return floor(v) + 0.5; }

#define JM_PLOT_TICK_FONT 11.5
#define JM_PLOT_LABEL_FONT 13
#define JM_PLOT_TITLE_FONT 15
#define JM_PLOT_TICK_LEN 5

/* Widest y tick label, in the tick font. */
static double jm_plot_ylabels_width(jm_plot *p) {
    double wmax = 0;
    char buf[64];
    jm_plot_font(p->cr, JM_PLOT_TICK_FONT, 0);
    for (int k = 0; k < p->ay.nt; k++) {
        jm_plot_tick_label(&p->ay, p->ay.t[k], buf, sizeof buf);
        wmax = fmax(wmax, jm_plot_text_width(p->cr, buf));
    }
    return wmax;
}

/* The plot area: what is left after room for the title, the tick labels and the axis
   titles. On a tiny canvas the margins give way to a fixed share of it. */
static void jm_plot_layout(jm_plot *p, const jm_plot_opts *o) {
    cairo_font_extents_t fe;
    jm_plot_font(p->cr, JM_PLOT_TICK_FONT, 0);
    cairo_font_extents(p->cr, &fe);
    double tick_h = fe.ascent + fe.descent;
    double left = 10 + (o && o->ylabel ? JM_PLOT_LABEL_FONT + 10 : 0) + jm_plot_ylabels_width(p) + JM_PLOT_TICK_LEN + 5;
    double bottom = JM_PLOT_TICK_LEN + 4 + tick_h + (o && o->xlabel ? JM_PLOT_LABEL_FONT + 12 : 0) + 10;
    double top = o && o->title ? JM_PLOT_TITLE_FONT + 24 : 16, right = 28;
    if (p->W - left - right < 16) { left = p->W * 0.2; right = p->W * 0.05; }
    if (p->H - top - bottom < 16) { top = p->H * 0.1; bottom = p->H * 0.2; }
    p->x0 = floor(left);
    p->x1 = floor(p->W - right);
    p->y0 = floor(top);
    p->y1 = floor(p->H - bottom);
}

/* Grid lines and tick marks with their labels. */
static void jm_plot_draw_ticks(jm_plot *p) {
    cairo_t *cr = p->cr;
    char buf[64];
    cairo_set_line_width(cr, 1);
    jm_plot_font(cr, JM_PLOT_TICK_FONT, 0);
    for (int k = 0; k < p->ax.nt; k++) {
        double x = jm_plot_crisp(jm_plot_px(p, p->ax.t[k]));
        if (x < p->x0 - 1 || x > p->x1 + 1) continue;
        cairo_set_source_rgb(cr, 0.88, 0.88, 0.88);
        cairo_move_to(cr, x, p->y0); cairo_line_to(cr, x, p->y1); cairo_stroke(cr);
        cairo_set_source_rgb(cr, 0.25, 0.25, 0.25);
        cairo_move_to(cr, x, p->y1); cairo_line_to(cr, x, p->y1 + JM_PLOT_TICK_LEN); cairo_stroke(cr);
        jm_plot_tick_label(&p->ax, p->ax.t[k], buf, sizeof buf);
        jm_plot_text(cr, x, p->y1 + JM_PLOT_TICK_LEN + 3, buf, 0.5, 0);
    }
    for (int k = 0; k < p->ay.nt; k++) {
        double y = jm_plot_crisp(jm_plot_py(p, p->ay.t[k]));
        if (y < p->y0 - 1 || y > p->y1 + 1) continue;
        cairo_set_source_rgb(cr, 0.88, 0.88, 0.88);
        cairo_move_to(cr, p->x0, y); cairo_line_to(cr, p->x1, y); cairo_stroke(cr);
        cairo_set_source_rgb(cr, 0.25, 0.25, 0.25);
        cairo_move_to(cr, p->x0 - JM_PLOT_TICK_LEN, y); cairo_line_to(cr, p->x0, y); cairo_stroke(cr);
        jm_plot_tick_label(&p->ay, p->ay.t[k], buf, sizeof buf);
        jm_plot_text(cr, p->x0 - JM_PLOT_TICK_LEN - 4, y, buf, 1, 0.5);
    }
}

/* Title above the plot area, x title below it, y title rotated at the left edge. */
static void jm_plot_draw_titles(jm_plot *p, const jm_plot_opts *o) {
    cairo_t *cr = p->cr;
    if (!o) return;
    cairo_set_source_rgb(cr, 0.1, 0.1, 0.1);
    if (o->title) {
        jm_plot_font(cr, JM_PLOT_TITLE_FONT, 1);
        jm_plot_text(cr, (p->x0 + p->x1) / 2, 10, o->title, 0.5, 0);
    }
    jm_plot_font(cr, JM_PLOT_LABEL_FONT, 0);
    if (o->xlabel) jm_plot_text(cr, (p->x0 + p->x1) / 2, p->H - 8, o->xlabel, 0.5, 1);
    if (o->ylabel) {
        cairo_save(cr);
        cairo_translate(cr, 8, (p->y0 + p->y1) / 2);
        cairo_rotate(cr, -M_PI / 2);   /* text runs upwards; its top faces left */
        jm_plot_text(cr, 0, 0, o->ylabel, 0.5, 0);
        cairo_restore(cr);
    }
}

/* Background, plot area, grid, ticks and titles; the axes must be set. Data drawn after
   this is clipped to the plot area (jm_plot_data_begin). */
static void jm_plot_draw_frame(jm_plot *p, const jm_plot_opts *o) {
    cairo_t *cr = p->cr;
    jm_plot_layout(p, o);
    cairo_set_source_rgb(cr, 1, 1, 1);
    cairo_paint(cr);
    jm_plot_draw_ticks(p);
    jm_plot_draw_titles(p, o);
}

/* The frame line goes on top of the data. */
static void jm_plot_draw_box(jm_plot *p) {
    cairo_t *cr = p->cr;
    cairo_set_line_width(cr, 1);
    cairo_set_source_rgb(cr, 0.25, 0.25, 0.25);
    cairo_rectangle(cr, p->x0 + 0.5, p->y0 + 0.5, p->x1 - p->x0 - 1, p->y1 - p->y0 - 1);
    cairo_stroke(cr);
}

static void jm_plot_data_begin(jm_plot *p) {
    cairo_save(p->cr);
    cairo_rectangle(p->cr, p->x0, p->y0, p->x1 - p->x0, p->y1 - p->y0);
    cairo_clip(p->cr);
}

static void jm_plot_data_end(jm_plot *p) { cairo_restore(p->cr); }

static void jm_plot_no_data(jm_plot *p) {
    cairo_set_source_rgb(p->cr, 0.5, 0.5, 0.5);
    jm_plot_font(p->cr, JM_PLOT_LABEL_FONT, 0);
    jm_plot_text(p->cr, (p->x0 + p->x1) / 2, (p->y0 + p->y1) / 2, "no data", 0.5, 0.5);
}

/* The canvas size from the options (0 = default), checked. */
static int jm_plot_size(const char *png, const jm_plot_opts *o, int *W, int *H, char *err, size_t errlen) {
    *W = o && o->width ? o->width : JM_PLOT_WIDTH;
    *H = o && o->height ? o->height : JM_PLOT_HEIGHT;
    if (*W < JM_PLOT_MIN_SIDE || *W > JM_PLOT_MAX_SIDE || *H < JM_PLOT_MIN_SIDE || *H > JM_PLOT_MAX_SIDE)
        return jm_plot_fail(err, errlen, png, "plot size %dx%d is outside %d..%d per side", *W, *H, JM_PLOT_MIN_SIDE, JM_PLOT_MAX_SIDE);
    return 0;
}

/* A blank canvas of the requested size; 0 or -1 with a message. */
static int jm_plot_open(jm_plot *p, const char *png, const jm_plot_opts *o, char *err, size_t errlen) {
    memset(p, 0, sizeof *p);
    if (!png || !*png) return jm_plot_fail(err, errlen, png, "no output path");
    if (jm_plot_size(png, o, &p->W, &p->H, err, errlen)) return -1;
    p->sf = cairo_image_surface_create(CAIRO_FORMAT_RGB24, p->W, p->H);
    if (cairo_surface_status(p->sf) != CAIRO_STATUS_SUCCESS) {
        cairo_status_t st = cairo_surface_status(p->sf);
        cairo_surface_destroy(p->sf);
        p->sf = NULL;
        return jm_plot_fail(err, errlen, png, "cannot create a %dx%d image: %s", p->W, p->H, cairo_status_to_string(st));
    }
    p->cr = cairo_create(p->sf);
    cairo_set_antialias(p->cr, CAIRO_ANTIALIAS_BEST);
    return 0;
}

/* Writes the canvas (unless drawing failed) and frees it; 0 or -1. */
static int jm_plot_close(jm_plot *p, const char *png, char *err, size_t errlen) {
    cairo_status_t st = cairo_status(p->cr);
    cairo_destroy(p->cr);
    cairo_surface_flush(p->sf);
    int rc = st == CAIRO_STATUS_SUCCESS ? jm_image_save_surface(png, p->sf, err, errlen)
                                        : jm_plot_fail(err, errlen, png, "drawing failed: %s", cairo_status_to_string(st));
    cairo_surface_destroy(p->sf);
    return rc;
}

/* ------------------------------------------------------------------ legend */

typedef enum { JM_LEG_LINE, JM_LEG_BOX, JM_LEG_DASH } jm_leg_kind;
typedef struct { const char *name; const double *rgb; double alpha; jm_leg_kind kind; } jm_leg;

#define JM_LEG_FONT 12
#define JM_LEG_ROW 18
#define JM_LEG_PAD 8
#define JM_LEG_SWATCH 24

/* Occupied cells under a pixel rectangle. */
static int jm_plot_occ_count(const jm_plot *p, double lx, double ly, double w, double h) {
    double cw = (p->x1 - p->x0) / JM_OCC_W, ch = (p->y1 - p->y0) / JM_OCC_H;
    int cx0 = (int)floor((lx - p->x0) / cw), cx1 = (int)floor((lx + w - p->x0) / cw);
    int cy0 = (int)floor((ly - p->y0) / ch), cy1 = (int)floor((ly + h - p->y0) / ch);
    int n = 0;
    for (int cy = cy0 < 0 ? 0 : cy0; cy <= cy1 && cy < JM_OCC_H; cy++)
        for (int cx = cx0 < 0 ? 0 : cx0; cx <= cx1 && cx < JM_OCC_W; cx++) n += p->occ[cy][cx];
    return n;
}

/* The corner (top right, top left, bottom right, bottom left: first wins a tie) where a
   w x h box covers the fewest occupied cells. */
static void jm_plot_legend_place(const jm_plot *p, double w, double h, double *lx, double *ly) {
    double inset = 10;
    *lx = p->x1 - inset - w;   /* top right unless a corner hides less */
    *ly = p->y0 + inset;
    double xs[2] = {p->x1 - inset - w, p->x0 + inset}, ys[2] = {p->y0 + inset, p->y1 - inset - h};
    int best = -1;
    for (int k = 0; k < 4; k++) {
        double cx = xs[k % 2], cy = ys[k / 2];
        int n = jm_plot_occ_count(p, cx, cy, w, h);
        if (best < 0 || n < best) { best = n; *lx = cx; *ly = cy; }
    }
}

static void jm_plot_legend_swatch(cairo_t *cr, const jm_leg *e, double x, double y) {
    cairo_set_source_rgba(cr, e->rgb[0], e->rgb[1], e->rgb[2], e->alpha);
    if (e->kind == JM_LEG_BOX) {
        cairo_rectangle(cr, x + 4, y - 5, JM_LEG_SWATCH - 8, 10);
        cairo_fill(cr);
        return;
    }
    static const double dash[2] = {5, 3};
    cairo_set_line_width(cr, 2);
    if (e->kind == JM_LEG_DASH) cairo_set_dash(cr, dash, 2, 0);
    cairo_move_to(cr, x, y);
    cairo_line_to(cr, x + JM_LEG_SWATCH, y);
    cairo_stroke(cr);
    cairo_set_dash(cr, NULL, 0, 0);
}

/* A boxed legend of the entries that have a name, as many as fit the plot area. */
static void jm_plot_legend(jm_plot *p, const jm_leg *e, int ne) {
    cairo_t *cr = p->cr;
    jm_plot_font(cr, JM_LEG_FONT, 0);
    int shown = 0;
    double tw = 0;
    int fit = (int)((p->y1 - p->y0 - 20 - 2 * JM_LEG_PAD) / JM_LEG_ROW);
    for (int k = 0; k < ne && shown < fit; k++) {
        if (!e[k].name) continue;
        tw = fmax(tw, jm_plot_text_width(cr, e[k].name));
        shown++;
    }
    if (shown == 0) return;
    double w = 2 * JM_LEG_PAD + JM_LEG_SWATCH + 6 + tw, h = 2 * JM_LEG_PAD + shown * JM_LEG_ROW - 4, lx = 0, ly = 0;
    jm_plot_legend_place(p, w, h, &lx, &ly);
    cairo_rectangle(cr, floor(lx) + 0.5, floor(ly) + 0.5, ceil(w), ceil(h));
    cairo_set_source_rgba(cr, 1, 1, 1, 0.85);
    cairo_fill_preserve(cr);
    cairo_set_source_rgb(cr, 0.7, 0.7, 0.7);
    cairo_set_line_width(cr, 1);
    cairo_stroke(cr);
    double y = ly + JM_LEG_PAD + (JM_LEG_ROW - 4) / 2.0;
    for (int k = 0, row = 0; k < ne && row < shown; k++) {
        if (!e[k].name) continue;
        jm_plot_legend_swatch(cr, &e[k], lx + JM_LEG_PAD, y);
        cairo_set_source_rgb(cr, 0.1, 0.1, 0.1);
        jm_plot_text(cr, lx + JM_LEG_PAD + JM_LEG_SWATCH + 6, y, e[k].name, 0, 0.5);
        y += JM_LEG_ROW;
        row++;
    }
}

/* ------------------------------------------------------------------ line charts */

typedef struct { double step; const char *name; } jm_plot_mark;   /* a vertical event line */

static double jm_plot_sx(const jm_series *s, int i) { return s->x ? s->x[i] : i; }

static int jm_plot_point_ok(const jm_series *s, int i, int logy) {
    double x = jm_plot_sx(s, i), y = s->y[i];
    return isfinite(x) && isfinite(y) && (!logy || y > 0);
}

/* Checks a series list; 0 or -1 with a message. */
static int jm_plot_check_series(const char *png, const jm_series *s, int ns, char *err, size_t errlen) {
    if (ns < 0 || (ns > 0 && !s)) return jm_plot_fail(err, errlen, png, "invalid series list (ns = %d)", ns);
    for (int i = 0; i < ns; i++) {
        if (s[i].n < 0) return jm_plot_fail(err, errlen, png, "series %d has %d points", i, s[i].n);
        if (s[i].n > 0 && !s[i].y) return jm_plot_fail(err, errlen, png, "series %d has no y values", i);
    }
    return 0;
}

/* The axes of a line chart: x exactly spans the points and marks, y with 5% padding. */
static int jm_plot_lines_axes(jm_plot *p, const jm_plot_opts *o, const jm_series *s, int ns, const jm_plot_mark *mk, int nmk) {
    int logy = o && o->logy, npts = 0;
    double xl = INFINITY, xh = -INFINITY, yl = INFINITY, yh = -INFINITY;
    for (int i = 0; i < ns; i++)
        for (int k = 0; k < s[i].n; k++) {
            if (!jm_plot_point_ok(&s[i], k, logy)) continue;
            double x = jm_plot_sx(&s[i], k);
            xl = fmin(xl, x); xh = fmax(xh, x);
            yl = fmin(yl, s[i].y[k]); yh = fmax(yh, s[i].y[k]);
            npts++;
        }
    for (int k = 0; npts && k < nmk; k++) { xl = fmin(xl, mk[k].step); xh = fmax(xh, mk[k].step); }
    int tx = (int)fmin(10, fmax(2, (p->W - 120) / 110.0)), ty = (int)fmin(10, fmax(2, (p->H - 100) / 60.0));
    jm_plot_axis_linear(&p->ax, xl, xh, 0, 0, tx);
    if (logy) jm_plot_axis_log(&p->ay, yl, yh, ty);
    else jm_plot_axis_linear(&p->ay, yl, yh, 0.05, 0.05, ty);
    return npts;
}

/* Strokes the run of valid points [a, b) of one series (a dot for a single point). */
static void jm_plot_run(jm_plot *p, const jm_series *s, int a, int b) {
    cairo_t *cr = p->cr;
    double px = jm_plot_px(p, jm_plot_sx(s, a)), py = jm_plot_py(p, s->y[a]);
    if (b - a == 1) {
        cairo_arc(cr, px, py, 2.2, 0, 2 * M_PI);
        cairo_fill(cr);
        jm_plot_occ_point(p, px, py);
        return;
    }
    cairo_move_to(cr, px, py);
    for (int k = a + 1; k < b; k++) {
        double qx = jm_plot_px(p, jm_plot_sx(s, k)), qy = jm_plot_py(p, s->y[k]);
        cairo_line_to(cr, qx, qy);
        jm_plot_occ_segment(p, px, py, qx, qy);
        px = qx;
        py = qy;
    }
    cairo_stroke(cr);
}

/* One series as runs of valid points: a skipped point breaks the line. */
static void jm_plot_series(jm_plot *p, const jm_series *s, int idx, int logy) {
    const double *c = jm_plot_color(idx);
    cairo_set_source_rgb(p->cr, c[0], c[1], c[2]);
    cairo_set_line_width(p->cr, 1.8);
    cairo_set_line_join(p->cr, CAIRO_LINE_JOIN_ROUND);
    cairo_set_line_cap(p->cr, CAIRO_LINE_CAP_ROUND);
    for (int k = 0; k < s->n;) {
        if (!jm_plot_point_ok(s, k, logy)) { k++; continue; }
        int b = k + 1;
        while (b < s->n && jm_plot_point_ok(s, b, logy)) b++;
        jm_plot_run(p, s, k, b);
        k = b;
    }
}

/* Event marks: dashed vertical lines, their names at the top unless that would overlap
   the previous name. */
static void jm_plot_marks(jm_plot *p, const jm_plot_mark *mk, int nmk) {
    cairo_t *cr = p->cr;
    static const double dash[2] = {6, 4};
    double last_end = -INFINITY;
    jm_plot_font(cr, 10.5, 0);
    for (int k = 0; k < nmk; k++) {
        double x = jm_plot_crisp(jm_plot_px(p, mk[k].step));
        cairo_set_source_rgba(cr, 0.6, 0.1, 0.1, 0.8);
        cairo_set_line_width(cr, 1.2);
        cairo_set_dash(cr, dash, 2, 0);
        cairo_move_to(cr, x, p->y0);
        cairo_line_to(cr, x, p->y1);
        cairo_stroke(cr);
        cairo_set_dash(cr, NULL, 0, 0);
        if (!mk[k].name || x + 3 < last_end) continue;
        jm_plot_text(cr, x + 3, p->y0 + 4, mk[k].name, 0, 0);
        last_end = x + 3 + jm_plot_text_width(cr, mk[k].name) + 4;
    }
}

static int jm_plot_lines_marked(const char *png, const jm_plot_opts *o, const jm_series *s, int ns,
                                const jm_plot_mark *mk, int nmk, char *err, size_t errlen) {
    jm_plot p;
    if (err && errlen) err[0] = 0;
    if (jm_plot_check_series(png, s, ns, err, errlen)) return -1;
    if (jm_plot_open(&p, png, o, err, errlen)) return -1;
    int logy = o && o->logy, npts = jm_plot_lines_axes(&p, o, s, ns, mk, nmk);
    jm_plot_draw_frame(&p, o);
    jm_plot_data_begin(&p);
    if (npts) jm_plot_marks(&p, mk, nmk);
    for (int i = 0; i < ns; i++) jm_plot_series(&p, &s[i], i, logy);
    jm_plot_data_end(&p);
    if (!npts) jm_plot_no_data(&p);
    jm_plot_draw_box(&p);
    jm_leg leg[64];
    int nl = 0;
    for (int i = 0; i < ns && nl < 64; i++) leg[nl++] = (jm_leg){s[i].name, jm_plot_color(i), 1, JM_LEG_LINE};
    if (npts) jm_plot_legend(&p, leg, nl);
    return jm_plot_close(&p, png, err, errlen);
}

int jm_plot_lines(const char *png, const jm_plot_opts *o, const jm_series *s, int ns, char *err, size_t errlen) {
    return jm_plot_lines_marked(png, o, s, ns, NULL, 0, err, errlen);
}

/* ------------------------------------------------------------------ histograms */

/* The smallest and largest finite y of all series; the number of finite values. */
static long jm_plot_hist_range(const jm_series *s, int ns, double *lo, double *hi) {
    long n = 0;
    *lo = INFINITY;
    *hi = -INFINITY;
    for (int i = 0; i < ns; i++)
        for (int k = 0; k < s[i].n; k++) {
            double v = s[i].y[k];
            if (!isfinite(v)) continue;
            *lo = fmin(*lo, v);
            *hi = fmax(*hi, v);
            n++;
        }
    if (n && *hi - *lo <= fmax(fabs(*lo), fabs(*hi)) * 1e-9) {   /* one value: a unit-wide bin range around it */
        *lo -= 0.5;
        *hi += 0.5;
    }
    return n;
}

/* Densities of series s over `bins` equal bins of [lo, hi] into d; the largest into *dmax. */
static void jm_plot_hist_density(const jm_series *s, int bins, double lo, double hi, double *d, double *dmax) {
    long n = 0;
    double width = (hi - lo) / bins;
    memset(d, 0, (size_t)bins * sizeof *d);
    for (int k = 0; k < s->n; k++) {
        double v = s->y[k];
        if (!isfinite(v)) continue;
        long b = (long)((v - lo) / (hi - lo) * bins);
        d[b < 0 ? 0 : b >= bins ? bins - 1 : b] += 1;   /* the maximum closes the last bin */
        n++;
    }
    for (int b = 0; n && b < bins; b++) {
        d[b] /= (double)n * width;
        *dmax = fmax(*dmax, d[b]);
    }
}

/* One histogram as a filled step outline; on a log axis empty bins drop to the bottom. */
static void jm_plot_hist_draw(jm_plot *p, const double *d, int bins, double lo, double hi, int idx) {
    cairo_t *cr = p->cr;
    const double *c = jm_plot_color(idx);
    double width = (hi - lo) / bins, base = p->y1;
    cairo_move_to(cr, jm_plot_px(p, lo), base);
    for (int b = 0; b < bins; b++) {
        double y = d[b] > 0 ? jm_plot_py(p, d[b]) : base, xa = jm_plot_px(p, lo + b * width), xb = jm_plot_px(p, lo + (b + 1) * width);
        if (y > base) y = base;
        cairo_line_to(cr, xa, y);
        cairo_line_to(cr, xb, y);
        if (d[b] > 0) jm_plot_occ_rect(p, xa, y, xb, base);
    }
    cairo_line_to(cr, jm_plot_px(p, hi), base);
    cairo_close_path(cr);
    cairo_set_source_rgba(cr, c[0], c[1], c[2], 0.35);
    cairo_fill_preserve(cr);
    cairo_set_source_rgba(cr, c[0], c[1], c[2], 0.95);
    cairo_set_line_width(cr, 1.4);
    cairo_set_line_join(cr, CAIRO_LINE_JOIN_MITER);
    cairo_stroke(cr);
}

/* sqrt(total) bins, clamped to 10..100. */
static int jm_plot_auto_bins(long n) {
    double b = ceil(sqrt((double)n));
    return b < 10 ? 10 : b > 100 ? 100 : (int)b;
}

int jm_plot_hist(const char *png, const jm_plot_opts *o, const jm_series *s, int ns, int bins, char *err, size_t errlen) {
    jm_plot p;
    if (err && errlen) err[0] = 0;
    if (jm_plot_check_series(png, s, ns, err, errlen)) return -1;
    if (bins < 0 || bins > 10000) return jm_plot_fail(err, errlen, png, "bin count %d is outside 1..10000 (0: automatic)", bins);
    double lo, hi, dmax = 0, dmin = INFINITY;
    long n = jm_plot_hist_range(s, ns, &lo, &hi);
    if (bins == 0) bins = jm_plot_auto_bins(n);
    double *d = calloc((size_t)(ns > 0 ? ns : 1) * bins, sizeof *d);
    if (!d) return jm_plot_fail(err, errlen, png, "out of memory");
    for (int i = 0; i < ns && n; i++) jm_plot_hist_density(&s[i], bins, lo, hi, d + (size_t)i * bins, &dmax);
    for (size_t k = 0; n && k < (size_t)ns * bins; k++) if (d[k] > 0) dmin = fmin(dmin, d[k]);
    if (jm_plot_open(&p, png, o, err, errlen)) { free(d); return -1; }
    int tx = (int)fmin(10, fmax(2, (p.W - 120) / 110.0)), ty = (int)fmin(10, fmax(2, (p.H - 100) / 60.0));
    jm_plot_axis_linear(&p.ax, n ? lo : 0, n ? hi : 1, 0, 0, tx);
    if (o && o->logy) jm_plot_axis_log(&p.ay, dmin, dmax, ty);
    else jm_plot_axis_linear(&p.ay, 0, n ? dmax : 1, 0, 0.05, ty);
    jm_plot_draw_frame(&p, o);
    jm_plot_data_begin(&p);
    for (int i = 0; i < ns && n; i++) jm_plot_hist_draw(&p, d + (size_t)i * bins, bins, lo, hi, i);
    jm_plot_data_end(&p);
    free(d);
    if (!n) jm_plot_no_data(&p);
    jm_plot_draw_box(&p);
    jm_leg leg[64];
    int nl = 0;
    for (int i = 0; i < ns && nl < 64; i++) leg[nl++] = (jm_leg){s[i].name, jm_plot_color(i), 0.6, JM_LEG_BOX};
    if (n) jm_plot_legend(&p, leg, nl);
    return jm_plot_close(&p, png, err, errlen);
}

/* ------------------------------------------------------------------ reliability diagrams */

/* Checks the bins; the expected calibration error into *ece (NaN with no samples). */
static int jm_plot_rel_check(const char *png, const double *conf, const double *acc, const int64_t *count, int bins,
                             double *ece, char *err, size_t errlen) {
    if (bins < 1 || bins > 10000) return jm_plot_fail(err, errlen, png, "bin count %d is outside 1..10000", bins);
    if (!conf || !acc || !count) return jm_plot_fail(err, errlen, png, "missing conf, acc or count array");
    double total = 0, gap = 0;
    for (int b = 0; b < bins; b++) {
        if (count[b] < 0) return jm_plot_fail(err, errlen, png, "bin %d has a negative count (%lld)", b, (long long)count[b]);
        if (count[b] == 0) continue;
        /* a little slack: means of values in [0, 1] may round just outside */
        if (!(conf[b] >= -1e-9 && conf[b] <= 1 + 1e-9)) return jm_plot_fail(err, errlen, png, "bin %d: confidence %g is outside [0, 1]", b, conf[b]);
        if (!(acc[b] >= -1e-9 && acc[b] <= 1 + 1e-9)) return jm_plot_fail(err, errlen, png, "bin %d: accuracy %g is outside [0, 1]", b, acc[b]);
        total += (double)count[b];
        gap += (double)count[b] * fabs(acc[b] - conf[b]);
    }
    *ece = total > 0 ? gap / total : NAN;
    return 0;
}

/* Bars of accuracy, the shaded gap up or down to the mean confidence, the diagonal. */
static void jm_plot_rel_draw(jm_plot *p, const double *conf, const double *acc, const int64_t *count, int bins) {
    cairo_t *cr = p->cr;
    const double *blue = jm_plot_color(0), *red = jm_plot_color(3);
    cairo_set_line_width(cr, 1);
    for (int b = 0; b < bins; b++) {
        if (count[b] == 0) continue;
        double xa = jm_plot_px(p, (double)b / bins), xb = jm_plot_px(p, (double)(b + 1) / bins);
        double ya = jm_plot_py(p, fmin(fmax(acc[b], 0), 1)), yc = jm_plot_py(p, fmin(fmax(conf[b], 0), 1)), y0 = jm_plot_py(p, 0);
        cairo_rectangle(cr, xa, ya, xb - xa, y0 - ya);
        cairo_set_source_rgba(cr, blue[0], blue[1], blue[2], 0.85);
        cairo_fill_preserve(cr);
        cairo_set_source_rgb(cr, 0.1, 0.25, 0.45);
        cairo_stroke(cr);
        jm_plot_occ_rect(p, xa, ya, xb, y0);
        cairo_rectangle(cr, xa, fmin(ya, yc), xb - xa, fabs(yc - ya));
        cairo_set_source_rgba(cr, red[0], red[1], red[2], 0.3);
        cairo_fill_preserve(cr);
        cairo_set_source_rgba(cr, red[0], red[1], red[2], 0.9);
        cairo_stroke(cr);
        jm_plot_occ_rect(p, xa, fmin(ya, yc), xb, fmax(ya, yc));
    }
    static const double dash[2] = {6, 4};
    cairo_set_source_rgb(cr, 0.35, 0.35, 0.35);
    cairo_set_line_width(cr, 1.5);
    cairo_set_dash(cr, dash, 2, 0);
    cairo_move_to(cr, jm_plot_px(p, 0), jm_plot_py(p, 0));
    cairo_line_to(cr, jm_plot_px(p, 1), jm_plot_py(p, 1));
    cairo_stroke(cr);
    cairo_set_dash(cr, NULL, 0, 0);
    jm_plot_occ_segment(p, jm_plot_px(p, 0), jm_plot_py(p, 0), jm_plot_px(p, 1), jm_plot_py(p, 1));
}

int jm_plot_reliability(const char *png, const jm_plot_opts *o, const double *conf, const double *acc,
                        const int64_t *count, int bins, char *err, size_t errlen) {
    jm_plot p;
    double ece = NAN;
    if (err && errlen) err[0] = 0;
    if (jm_plot_rel_check(png, conf, acc, count, bins, &ece, err, errlen)) return -1;
    if (jm_plot_open(&p, png, o, err, errlen)) return -1;
    jm_plot_opts oo = o ? *o : (jm_plot_opts){0};
    if (!oo.xlabel) oo.xlabel = "confidence";
    if (!oo.ylabel) oo.ylabel = "accuracy";
    jm_plot_axis_linear(&p.ax, 0, 1, 0, 0, 5);
    jm_plot_axis_linear(&p.ay, 0, 1, 0, 0, 5);
    jm_plot_draw_frame(&p, &oo);
    jm_plot_data_begin(&p);
    jm_plot_rel_draw(&p, conf, acc, count, bins);
    jm_plot_data_end(&p);
    jm_plot_draw_box(&p);
    char gap[64];
    if (isnan(ece)) snprintf(gap, sizeof gap, "gap (no samples)");
    else snprintf(gap, sizeof gap, "gap (ECE %.2f%%)", 100 * ece);
    static const double grey[3] = {0.35, 0.35, 0.35};
    jm_leg leg[3] = {{"accuracy", jm_plot_color(0), 0.85, JM_LEG_BOX},
                     {gap, jm_plot_color(3), 0.45, JM_LEG_BOX},
                     {"perfect calibration", grey, 1, JM_LEG_DASH}};
    jm_plot_legend(&p, leg, 3);
    return jm_plot_close(&p, png, err, errlen);
}

/* ------------------------------------------------------------------ flat JSON objects */

#define JM_JSON_MAX_KEYS 4096   /* per object: bounds the duplicate check's quadratic cost */

typedef struct {
    const char *s;
    size_t n, i;
    char *what;
    size_t wl;
} jm_jp;

static int jm_jp_fail(jm_jp *p, const char *fmt, ...) {
    if (p->what && p->wl) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(p->what, p->wl, fmt, ap);
        va_end(ap);
    }
    return -1;
}

/* A key made printable for a message: at most 60 bytes, control characters as '?'. */
static const char *jm_jp_q(const char *key, char *buf, size_t cap) {
    size_t k = 0;
    for (; key[k] && k < 60 && k + 1 < cap; k++) buf[k] = (unsigned char)key[k] < 0x20 ? '?' : key[k];
    buf[k] = 0;
    return buf;
}

/* A character for a message: 'c' when printable, else its byte value. */
static const char *jm_jp_c(char c, char *buf, size_t cap) {
    unsigned char u = (unsigned char)c;
    if (u >= 0x20 && u < 0x7f) snprintf(buf, cap, "'%c'", c);
    else snprintf(buf, cap, "byte 0x%02x", u);
    return buf;
}

static void jm_jp_ws(jm_jp *p) {
    while (p->i < p->n && (p->s[p->i] == ' ' || p->s[p->i] == '\t' || p->s[p->i] == '\n' || p->s[p->i] == '\r')) p->i++;
}

static int jm_jp_hex4(const char *s, unsigned *out) {
    unsigned v = 0;
    for (int k = 0; k < 4; k++) {
        char c = s[k];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
        if (d < 0) return -1;
        v = v << 4 | (unsigned)d;
    }
    *out = v;
    return 0;
}

static void jm_jp_utf8(char *o, size_t *k, unsigned cp) {
    if (cp < 0x80) o[(*k)++] = (char)cp;
    else if (cp < 0x800) { o[(*k)++] = (char)(0xc0 | cp >> 6); o[(*k)++] = (char)(0x80 | (cp & 0x3f)); }
    else if (cp < 0x10000) {
        o[(*k)++] = (char)(0xe0 | cp >> 12); o[(*k)++] = (char)(0x80 | ((cp >> 6) & 0x3f)); o[(*k)++] = (char)(0x80 | (cp & 0x3f));
    } else {
        o[(*k)++] = (char)(0xf0 | cp >> 18); o[(*k)++] = (char)(0x80 | ((cp >> 12) & 0x3f));
        o[(*k)++] = (char)(0x80 | ((cp >> 6) & 0x3f)); o[(*k)++] = (char)(0x80 | (cp & 0x3f));
    }
}

/* \uXXXX at p->s + p->i (after the backslash and 'u'), with a following low surrogate
   when it is a high one; the code point into *cp. U+0000 is refused: keys and values
   are C strings. */
static int jm_jp_uescape(jm_jp *p, unsigned *cp) {
    const char *s = p->s;
    if (p->i + 4 > p->n || jm_jp_hex4(s + p->i, cp)) return jm_jp_fail(p, "bad \\u escape in string");
    p->i += 4;
    if (*cp >= 0xdc00 && *cp <= 0xdfff) return jm_jp_fail(p, "unpaired surrogate \\u%04x in string", *cp);
    if (*cp >= 0xd800 && *cp <= 0xdbff) {
        unsigned lo;
        if (p->i + 6 > p->n || s[p->i] != '\\' || s[p->i + 1] != 'u' || jm_jp_hex4(s + p->i + 2, &lo) || lo < 0xdc00 || lo > 0xdfff)
            return jm_jp_fail(p, "unpaired surrogate \\u%04x in string", *cp);
        p->i += 6;
        *cp = 0x10000 + ((*cp - 0xd800) << 10) + (lo - 0xdc00);
    }
    if (*cp == 0) return jm_jp_fail(p, "\\u0000 in string is not supported");
    return 0;
}

/* One escape after the backslash, appended to o. */
static int jm_jp_escape(jm_jp *p, char *o, size_t *k) {
    char c = p->i < p->n ? p->s[p->i++] : 0;
    static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
    const char *hit = c ? strchr(from, c) : NULL;
    if (hit) { o[(*k)++] = to[hit - from]; return 0; }
    char cb[16];
    if (c != 'u') return c ? jm_jp_fail(p, "bad escape of %s in string", jm_jp_c(c, cb, sizeof cb)) : jm_jp_fail(p, "unterminated string");
    unsigned cp;
    if (jm_jp_uescape(p, &cp)) return -1;
    jm_jp_utf8(o, k, cp);
    return 0;
}

/* Where the string starting after its opening quote at `start` ends: the index of the
   closing quote, or n when there is none (a backslash always takes the next byte along). */
static size_t jm_jp_string_end(const jm_jp *p, size_t start) {
    size_t k = start;
    while (k < p->n && p->s[k] != '"') k += p->s[k] == '\\' ? 2 : 1;
    return k < p->n ? k : p->n;
}

/* A string at p->s[p->i] == '"', decoded into *out (malloc'd). The decoded text is never
   longer than the raw one (an escape of 2, 6 or 12 bytes gives at most 1, 3 or 4). */
static int jm_jp_string(jm_jp *p, char **out) {
    size_t start = ++p->i, k = 0;
    char *o = malloc(jm_jp_string_end(p, start) - start + 1);
    if (!o) return jm_jp_fail(p, "out of memory");
    while (p->i < p->n && p->s[p->i] != '"') {
        unsigned char c = (unsigned char)p->s[p->i];
        /* a line break inside a string: the line ended first */
        if (c == '\n' || c == '\r') break;
        if (c < 0x20) { free(o); return jm_jp_fail(p, "control character 0x%02x in string", c); }
        if (c == '\\') {
            p->i++;
            if (jm_jp_escape(p, o, &k)) { free(o); return -1; }
        } else {
            o[k++] = (char)c;
            p->i++;
        }
    }
    if (p->i >= p->n || p->s[p->i] != '"') { free(o); return jm_jp_fail(p, "unterminated string"); }
    p->i++;   /* the closing quote */
    o[k] = 0;
    *out = o;
    return 0;
}

/* A bare token (number or literal): the longest run up to a delimiter. */
static size_t jm_jp_token(const jm_jp *p) {
    size_t k = p->i;
    while (k < p->n && !strchr(" \t\r\n,:{}[]\"", p->s[k]) && p->s[k]) k++;
    return k - p->i;
}

static int jm_jp_digits(const char *t, size_t n, size_t *i) {
    size_t start = *i;
    while (*i < n && t[*i] >= '0' && t[*i] <= '9') (*i)++;
    return *i > start;
}

/* JSON's number grammar: -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)? */
static int jm_jp_is_number(const char *t, size_t n) {
    size_t i = 0;
    if (i < n && t[i] == '-') i++;
    if (i < n && t[i] == '0') i++;
    else if (!(i < n && t[i] >= '1' && t[i] <= '9') || !jm_jp_digits(t, n, &i)) return 0;
    if (i < n && t[i] == '.') {
        i++;
        if (!jm_jp_digits(t, n, &i)) return 0;
    }
    if (i < n && (t[i] == 'e' || t[i] == 'E')) {
        i++;
        if (i < n && (t[i] == '+' || t[i] == '-')) i++;
        if (!jm_jp_digits(t, n, &i)) return 0;
    }
    return i == n;
}

static int jm_jp_is(const char *t, size_t n, const char *word) { return n == strlen(word) && memcmp(t, word, n) == 0; }

/* A literal or number token as a field value. NaN, Infinity and -Infinity are what
   Python's json module writes for non-finite floats. */
static int jm_jp_literal(jm_jp *p, const char *key, jm_json_field *f) {
    const char *t = p->s + p->i;
    size_t n = jm_jp_token(p);
    char kb[64];
    if (n == 0) {
        if (p->i >= p->n) return jm_jp_fail(p, "key '%s': missing value (line ends)", jm_jp_q(key, kb, sizeof kb));
        char cb[16];
        return jm_jp_fail(p, "key '%s': missing value before %s", jm_jp_q(key, kb, sizeof kb), jm_jp_c(p->s[p->i], cb, sizeof cb));
    }
    p->i += n;
    if (jm_jp_is(t, n, "true") || jm_jp_is(t, n, "false")) { f->kind = JM_JSON_BOOL; f->num = t[0] == 't'; return 0; }
    if (jm_jp_is(t, n, "null")) { f->kind = JM_JSON_NULL; f->num = NAN; return 0; }
    f->kind = JM_JSON_NUM;
    if (jm_jp_is(t, n, "NaN")) { f->num = NAN; return 0; }
    if (jm_jp_is(t, n, "Infinity") || jm_jp_is(t, n, "-Infinity")) { f->num = t[0] == '-' ? -INFINITY : INFINITY; return 0; }
    char buf[512];
    if (n >= sizeof buf || !jm_jp_is_number(t, n)) {
        int isnum = t[0] == '-' || (t[0] >= '0' && t[0] <= '9');
        return jm_jp_fail(p, "key '%s': %s '%.*s'", jm_jp_q(key, kb, sizeof kb), isnum ? "bad number" : "unexpected value",
                          (int)(n > 40 ? 40 : n), t);
    }
    memcpy(buf, t, n);
    buf[n] = 0;
    f->num = strtod(buf, NULL);   /* out-of-range magnitudes become +-inf or 0, as in JSON parsers generally */
    return 0;
}

static int jm_jp_value(jm_jp *p, const char *key, jm_json_field *f) {
    char kb[64];
    if (p->i < p->n && p->s[p->i] == '"') {
        f->kind = JM_JSON_STR;
        f->num = NAN;
        return jm_jp_string(p, &f->str);
    }
    if (p->i < p->n && (p->s[p->i] == '{' || p->s[p->i] == '['))
        return jm_jp_fail(p, "key '%s': nested %s are not supported (metrics lines must be flat objects)",
                          jm_jp_q(key, kb, sizeof kb), p->s[p->i] == '{' ? "objects" : "arrays");
    return jm_jp_literal(p, key, f);
}

/* Appends a field, refusing a key seen before. Takes ownership of key and f->str. */
static int jm_jp_add(jm_jp *p, jm_json_object *o, char *key, jm_json_field *f) {
    char kb[64];
    for (int k = 0; k < o->n; k++)
        if (strcmp(o->f[k].key, key) == 0) {
            jm_jp_fail(p, "duplicate key '%s'", jm_jp_q(key, kb, sizeof kb));
            free(key); free(f->str);
            return -1;
        }
    if (o->n == JM_JSON_MAX_KEYS) { free(key); free(f->str); return jm_jp_fail(p, "more than %d keys", JM_JSON_MAX_KEYS); }
    if (o->n == o->cap) {
        int cap = o->cap ? 2 * o->cap : 16;
        jm_json_field *g = realloc(o->f, (size_t)cap * sizeof *g);
        if (!g) { free(key); free(f->str); return jm_jp_fail(p, "out of memory"); }
        o->f = g;
        o->cap = cap;
    }
    f->key = key;
    o->f[o->n++] = *f;
    return 0;
}

/* One "key": value member; p->i at the key's opening quote. */
static int jm_jp_member(jm_jp *p, jm_json_object *o) {
    char *key = NULL, kb[64];
    if (jm_jp_string(p, &key)) return -1;
    jm_jp_ws(p);
    if (p->i >= p->n || p->s[p->i] != ':') { jm_jp_fail(p, "expected ':' after key '%s'", jm_jp_q(key, kb, sizeof kb)); free(key); return -1; }
    p->i++;
    jm_jp_ws(p);
    jm_json_field f = {NULL, JM_JSON_NULL, NAN, NULL};
    if (jm_jp_value(p, key, &f)) { free(key); return -1; }
    return jm_jp_add(p, o, key, &f);
}

/* After a member: ',' (another must follow) or '}' (done, *end set). */
static int jm_jp_after(jm_jp *p, const char *key, int *end) {
    char kb[64];
    jm_jp_ws(p);
    if (p->i >= p->n) return jm_jp_fail(p, "unterminated object (no '}')");
    char c = p->s[p->i++];
    if (c == '}') { *end = 1; return 0; }
    if (c != ',') return jm_jp_fail(p, "expected ',' or '}' after the value of key '%s'", jm_jp_q(key, kb, sizeof kb));
    jm_jp_ws(p);
    if (p->i < p->n && p->s[p->i] == '}') return jm_jp_fail(p, "trailing comma before '}'");
    return 0;
}

static int jm_jp_object(jm_jp *p, jm_json_object *o) {
    jm_jp_ws(p);
    if (p->i >= p->n || p->s[p->i] != '{') return jm_jp_fail(p, "not a JSON object (a line must be one {...} object)");
    p->i++;
    jm_jp_ws(p);
    if (p->i < p->n && p->s[p->i] == '}') { p->i++; return 0; }
    for (int end = 0; !end;) {
        if (p->i >= p->n) return jm_jp_fail(p, "unterminated object (no '}')");
        char cb[16];
        if (p->s[p->i] != '"') return jm_jp_fail(p, "expected a key in double quotes, found %s", jm_jp_c(p->s[p->i], cb, sizeof cb));
        if (jm_jp_member(p, o) || jm_jp_after(p, o->f[o->n - 1].key, &end)) return -1;
    }
    jm_jp_ws(p);
    if (p->i < p->n) return jm_jp_fail(p, "unexpected text after the object");
    return 0;
}

int jm_plot_parse_json(const char *s, size_t len, jm_json_object *out, char *what, size_t whatlen) {
    memset(out, 0, sizeof *out);
    if (what && whatlen) what[0] = 0;
    jm_jp p = {s ? s : "", s ? len : 0, 0, what, whatlen};
    if (jm_jp_object(&p, out) == 0) return 0;
    jm_plot_free_json(out);
    return -1;
}

void jm_plot_free_json(jm_json_object *o) {
    if (!o) return;
    for (int k = 0; k < o->n; k++) {
        free(o->f[k].key);
        free(o->f[k].str);
    }
    free(o->f);
    memset(o, 0, sizeof *o);
}

const jm_json_field *jm_plot_json_get(const jm_json_object *o, const char *key) {
    for (int k = 0; o && key && k < o->n; k++)
        if (strcmp(o->f[k].key, key) == 0) return &o->f[k];
    return NULL;
}

/* ------------------------------------------------------------------ metrics files */

static int jm_plot_grow(void **a, int *cap, int need, size_t elem) {
    if (need <= *cap) return 0;
    int c = *cap ? *cap : 8;
    while (c < need) c *= 2;
    void *g = realloc(*a, (size_t)c * elem);
    if (!g) return -1;
    *a = g;
    *cap = c;
    return 0;
}

/* The metric named key, created at the end when new; *hint is where the search starts
   (records usually list their keys in the same order, so it mostly hits at once). */
static jm_metric *jm_plot_metric(jm_metrics *m, const char *key, int *hint) {
    for (int k = 0; k < m->nkeys; k++) {
        int j = (*hint + k) % m->nkeys;
        if (strcmp(m->m[j].key, key) == 0) { *hint = j + 1; return &m->m[j]; }
    }
    if (jm_plot_grow((void **)&m->m, &m->keycap, m->nkeys + 1, sizeof *m->m)) return NULL;
    jm_metric *e = &m->m[m->nkeys];
    memset(e, 0, sizeof *e);
    if (!(e->key = strdup(key))) return NULL;
    *hint = ++m->nkeys;
    return e;
}

static int jm_plot_metric_add(jm_metric *e, double x, double y) {
    if (e->n == e->cap) {
        int cap = e->cap ? 2 * e->cap : 64;
        double *nx = realloc(e->x, (size_t)cap * sizeof *nx);
        if (!nx) return -1;
        e->x = nx;
        double *ny = realloc(e->y, (size_t)cap * sizeof *ny);
        if (!ny) return -1;
        e->y = ny;
        e->cap = cap;
    }
    e->x[e->n] = x;
    e->y[e->n++] = y;
    return 0;
}

/* An event line: kept when it has a numeric step. */
static int jm_plot_metrics_event(jm_metrics *m, const jm_json_field *ev, const jm_json_field *step) {
    if (!step || step->kind != JM_JSON_NUM) return 0;
    if (jm_plot_grow((void **)&m->ev, &m->evcap, m->nevents + 1, sizeof *m->ev)) return -1;
    if (!(m->ev[m->nevents].name = strdup(ev->str))) return -1;
    m->ev[m->nevents++].step = step->num;
    return 0;
}

static int jm_plot_what(char *what, size_t wl, const char *msg) {
    snprintf(what, wl, "%s", msg);
    return -1;
}

/* Adds one parsed line; -1 with the reason in what (no location). */
static int jm_plot_metrics_record(jm_metrics *m, const jm_json_object *o, char *what, size_t wl) {
    const jm_json_field *step = jm_plot_json_get(o, "step"), *ev = jm_plot_json_get(o, "event");
    if (step && step->kind != JM_JSON_NUM) return jm_plot_what(what, wl, "key 'step' must be a number");
    if (step && !isfinite(step->num)) return jm_plot_what(what, wl, "key 'step' must be finite");
    if (ev && ev->kind != JM_JSON_STR) return jm_plot_what(what, wl, "key 'event' must be a string");
    if (ev) return jm_plot_metrics_event(m, ev, step) ? jm_plot_what(what, wl, "out of memory") : 0;
    if (!step) return 0;   /* a record without a step cannot be placed */
    int hint = 0;
    for (int k = 0; k < o->n; k++) {
        const jm_json_field *f = &o->f[k];
        if (f->kind != JM_JSON_NUM || f == step) continue;
        jm_metric *e = jm_plot_metric(m, f->key, &hint);
        if (!e || jm_plot_metric_add(e, step->num, f->num)) return jm_plot_what(what, wl, "out of memory");
    }
    return 0;
}

static int jm_plot_blank(const char *s, size_t n) {
    for (size_t k = 0; k < n; k++)
        if (!strchr(" \t\r\n", s[k]) || !s[k]) return 0;
    return 1;
}

/* Every line of fp; 0 or -1 with "FILE:LINE: what" / "FILE: ...". */
static int jm_plot_metrics_lines(const char *path, FILE *fp, jm_metrics *m, char *err, size_t errlen) {
    char *line = NULL, what[256];
    size_t cap = 0;
    ssize_t len;
    int rc = 0;
    for (long lineno = 1; rc == 0 && (len = getline(&line, &cap, fp)) >= 0; lineno++) {
        if (jm_plot_blank(line, (size_t)len)) continue;
        jm_json_object o;
        m->nlines++;
        if (jm_plot_parse_json(line, (size_t)len, &o, what, sizeof what) || jm_plot_metrics_record(m, &o, what, sizeof what))
            rc = jm_plot_fail_at(err, errlen, path, lineno, what);
        jm_plot_free_json(&o);
    }
    free(line);
    if (rc == 0 && ferror(fp)) rc = jm_plot_fail(err, errlen, path, "read error: %s", strerror(errno));
    return rc;
}

int jm_plot_read_metrics(const char *jsonl, jm_metrics *out, char *err, size_t errlen) {
    memset(out, 0, sizeof *out);
    if (err && errlen) err[0] = 0;
    if (!jsonl || !*jsonl) return jm_plot_fail(err, errlen, jsonl, "no metrics file given");
    FILE *fp = fopen(jsonl, "r");
    if (!fp) return jm_plot_fail(err, errlen, jsonl, "cannot open: %s", strerror(errno));
    int rc = jm_plot_metrics_lines(jsonl, fp, out, err, errlen);
    fclose(fp);
    if (rc == 0 && out->nlines == 0) rc = jm_plot_fail(err, errlen, jsonl, "empty (no metrics records)");
    if (rc) jm_plot_free_metrics(out);
    return rc;
}

void jm_plot_free_metrics(jm_metrics *m) {
    if (!m) return;
    for (int k = 0; k < m->nkeys; k++) {
        free(m->m[k].key);
        free(m->m[k].x);
        free(m->m[k].y);
    }
    for (int k = 0; k < m->nevents; k++) free(m->ev[k].name);
    free(m->m);
    free(m->ev);
    memset(m, 0, sizeof *m);
}

const jm_metric *jm_plot_find_metric(const jm_metrics *m, const char *key) {
    for (int k = 0; m && key && k < m->nkeys; k++)
        if (strcmp(m->m[k].key, key) == 0) return &m->m[k];
    return NULL;
}

/* The standard plots: which keys go where. A key belongs to the first group that
   names it exactly or by prefix. */
typedef struct {
    const char *file, *title, *ylabel;
    int logy, events;
    const char *exact[3], *prefix[3];
} jm_plot_group;

static const jm_plot_group jm_plot_groups[] = {
    {"loss.png", "loss", "loss", 0, 1, {"loss"}, {"loss_"}},
    {"energy.png", "energy", "energy", 0, 0, {"e_data", "e_sample"}, {"e_"}},
    {"accuracy.png", "accuracy", "accuracy", 0, 0, {"acc"}, {"acc_", "test_acc"}},
    {"lr.png", "learning rate", "lr", 0, 0, {"lr"}, {"lr."}},
    {"grad_norm.png", "gradient norm", "grad_norm", 1, 0, {NULL}, {"grad_norm"}},
};
#define JM_PLOT_NGROUPS ((int)(sizeof jm_plot_groups / sizeof jm_plot_groups[0]))

static int jm_plot_in_group(const jm_plot_group *g, const char *key) {
    for (int k = 0; k < 3; k++) {
        if (g->exact[k] && strcmp(key, g->exact[k]) == 0) return 1;
        if (g->prefix[k] && strncmp(key, g->prefix[k], strlen(g->prefix[k])) == 0) return 1;
    }
    return 0;
}

static int jm_plot_group_of(const char *key) {
    for (int gi = 0; gi < JM_PLOT_NGROUPS; gi++)
        if (jm_plot_in_group(&jm_plot_groups[gi], key)) return gi;
    return -1;
}

/* out_dir, created when missing (one level). */
static int jm_plot_make_dir(const char *dir, char *err, size_t errlen) {
    struct stat sb;
    if (!dir || !*dir) return jm_plot_fail(err, errlen, dir, "no output directory");
    if (mkdir(dir, 0777) != 0 && errno != EEXIST) return jm_plot_fail(err, errlen, dir, "cannot create directory: %s", strerror(errno));
    if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode)) return jm_plot_fail(err, errlen, dir, "not a directory");
    return 0;
}

/* Draws group gi if any of its keys is present: 1 written, 0 nothing to draw, -1 error. */
static int jm_plot_group_draw(const jm_metrics *m, int gi, const char *out_dir, char **path_out, char *err, size_t errlen) {
    const jm_plot_group *g = &jm_plot_groups[gi];
    jm_series *s = calloc((size_t)m->nkeys + 1, sizeof *s);
    jm_plot_mark *mk = calloc((size_t)m->nevents + 1, sizeof *mk);
    int ns = 0, nmk = 0, rc = 0;
    if (!s || !mk) { free(s); free(mk); return jm_plot_fail(err, errlen, out_dir, "out of memory"); }
    for (int k = 0; k < m->nkeys; k++)
        if (m->m[k].n > 0 && jm_plot_group_of(m->m[k].key) == gi) s[ns++] = (jm_series){m->m[k].key, m->m[k].x, m->m[k].y, m->m[k].n};
    for (int k = 0; g->events && k < m->nevents; k++) mk[nmk++] = (jm_plot_mark){m->ev[k].step, m->ev[k].name};
    if (ns > 0) {
        size_t len = strlen(out_dir) + strlen(g->file) + 2;
        char *path = malloc(len);
        if (!path) rc = jm_plot_fail(err, errlen, out_dir, "out of memory");
        else {
            snprintf(path, len, "%s/%s", out_dir, g->file);
            jm_plot_opts o = {g->title, "step", g->ylabel, g->logy, 0, 0};
            rc = jm_plot_lines_marked(path, &o, s, ns, mk, nmk, err, errlen) ? -1 : 1;
            if (rc == 1 && path_out) *path_out = path;
            else free(path);
        }
    }
    free(s);
    free(mk);
    return rc;
}

int jm_plot_metrics(const char *jsonl, const char *out_dir, char **written, char *err, size_t errlen) {
    jm_metrics m;
    int nw = 0;
    for (int k = 0; written && k < JM_PLOT_MAX_WRITTEN; k++) written[k] = NULL;
    if (jm_plot_read_metrics(jsonl, &m, err, errlen)) return -1;
    if (jm_plot_make_dir(out_dir, err, errlen)) { jm_plot_free_metrics(&m); return -1; }
    for (int gi = 0; gi < JM_PLOT_NGROUPS; gi++) {
        char *path = NULL;
        int r = jm_plot_group_draw(&m, gi, out_dir, written && nw < JM_PLOT_MAX_WRITTEN ? &path : NULL, err, errlen);
        if (r < 0) { nw = -1; break; }
        if (path) written[nw] = path;
        nw += r;
    }
    if (nw < 0)
        for (int k = 0; written && k < JM_PLOT_MAX_WRITTEN; k++) { free(written[k]); written[k] = NULL; }
    jm_plot_free_metrics(&m);
    return nw;
}
