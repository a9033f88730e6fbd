/* plot.h — training plots drawn with cairo: line charts, overlaid histograms, reliability
 * diagrams, and the standard set of plots of a JSON Lines metrics file.
 *
 * Every plot has real axes: 1-2-5 tick values with labels, light grid lines, axis titles,
 * a title, a legend (placed in the corner of the plot area that hides the least data),
 * distinct colours (matplotlib's tab10 cycle), anti-aliased lines. Output is a PNG written
 * atomically (see image.h), default 900x560 pixels.
 *
 * Every function returns 0 (jm_plot_metrics: the number of PNGs), or -1 with a one-line
 * message in err naming the file ("loss.png: ...", "metrics.jsonl:12: ..."); bad
 * arguments are reported the same way, never by aborting. */
#ifndef JM_PLOT_H
#define JM_PLOT_H
#include <stddef.h>
#include <stdint.h>

#define JM_PLOT_WIDTH 900
#define JM_PLOT_HEIGHT 560
#define JM_PLOT_MIN_SIDE 64
#define JM_PLOT_MAX_SIDE 8192

/* One data series. x may be NULL: the points are then at x = 0, 1, ..., n-1.
   name (may be NULL) is its legend entry; a plot without names has no legend. */
typedef struct { const char *name; const double *x, *y; int n; } jm_series;

/* Options; the pointer may be NULL. NULL strings draw nothing (a reliability diagram's
   axis titles default to "confidence" and "accuracy"). logy: logarithmic y axis (points
   with y <= 0 are skipped). width, height: 0 for the default, else 64..8192. */
typedef struct { const char *title, *xlabel, *ylabel; int logy; int width, height; } jm_plot_opts;

/* Line chart. Points with a NaN or infinite coordinate are skipped, leaving a gap in the
   line; a point without a neighbour on either side is drawn as a dot. Series with no
   points (or ns = 0) give empty axes labelled "no data". */
int jm_plot_lines(const char *png, const jm_plot_opts *o, const jm_series *s, int ns, char *err, size_t errlen);

/* Overlaid semi-transparent histograms of each s[i].y (x is ignored) as densities
   (count / (n_finite * bin width), so every histogram has area 1), over common bins
   spanning the smallest to the largest finite value of all series. bins: 1..10000, or 0
   for sqrt(total count) clamped to 10..100. Non-finite values are left out. */
int jm_plot_hist(const char *png, const jm_plot_opts *o, const jm_series *s, int ns, int bins, char *err, size_t errlen);

/* Reliability diagram of `bins` equal confidence bins over [0, 1]: bin i has mean
   confidence conf[i], accuracy acc[i] and count[i] samples. Bars show the accuracy; the
   gap between accuracy and mean confidence is shaded red; the diagonal is perfect
   calibration; the expected calibration error (ECE = sum count*|acc-conf| / sum count)
   is shown in the legend. Bins with count 0 are left empty (their conf and acc may be
   NaN); a counted bin needs conf and acc within [0, 1]. o->logy is ignored. */
int jm_plot_reliability(const char *png, const jm_plot_opts *o, const double *conf, const double *acc,
                        const int64_t *count, int bins, char *err, size_t errlen);

/* ---------------------------------------------------------------- flat JSON objects */

/* A value of a flat JSON object: a number (also NaN, Infinity, -Infinity as Python's json
   writes them; JSON's grammar otherwise, strictly), a string (decoded UTF-8), true/false
   (num = 1/0) or null. */
typedef enum { JM_JSON_NUM, JM_JSON_STR, JM_JSON_BOOL, JM_JSON_NULL } jm_json_kind;
typedef struct { char *key; jm_json_kind kind; double num; char *str; } jm_json_field;
typedef struct { int n, cap; jm_json_field *f; } jm_json_object;

/* Parses one line holding one flat object (whitespace around it allowed). 0, or -1 with
   the reason in `what` (no file name: the caller adds "FILE:LINE: "), e.g.
   "key 'cfg': nested objects are not supported (...)", "unterminated string",
   "key 'loss': bad number '1.'", "duplicate key 'loss'". *out is overwritten on entry and
   empty after a failure; free it with jm_plot_free_json. */
int jm_plot_parse_json(const char *s, size_t len, jm_json_object *out, char *what, size_t whatlen);
void jm_plot_free_json(jm_json_object *o);
const jm_json_field *jm_plot_json_get(const jm_json_object *o, const char *key);   /* NULL if absent */

/* ---------------------------------------------------------------- metrics files */

/* A metrics file read into series: every numeric key of every record line, at x = that
   line's "step". Records lacking a numeric "step" are skipped; a "step" that is present
   but not a number is an error. Lines with an "event" key (a string) are events, not
   records: {"event": "rollback", "step": 120, ...}. Blank lines are ignored. Strings,
   booleans and nulls in records are ignored. */
typedef struct { char *key; int n, cap; double *x, *y; } jm_metric;
typedef struct { double step; char *name; } jm_metric_event;
typedef struct {
    int nkeys, keycap; jm_metric *m;       /* in order of first appearance */
    int nevents, evcap; jm_metric_event *ev;
    int nlines;                            /* non-blank lines read */
} jm_metrics;

/* 0, or -1 with "FILE:LINE: what" (or "FILE: ..." for an unreadable or empty file).
   *out is overwritten on entry and empty after a failure. */
int jm_plot_read_metrics(const char *jsonl, jm_metrics *out, char *err, size_t errlen);
void jm_plot_free_metrics(jm_metrics *m);
const jm_metric *jm_plot_find_metric(const jm_metrics *m, const char *key);   /* NULL if absent */

/* Reads a metrics file and draws one PNG per group of keys present into out_dir (created
   if missing; its parent must exist), x = step:
     loss.png       loss and loss_* (loss_ce, loss_px, ...), events as dashed vertical lines
     energy.png     e_data, e_sample and other e_* keys
     accuracy.png   acc, acc_*, test_acc*
     lr.png         lr
     grad_norm.png  grad_norm* (logarithmic y)
   Other keys are not drawn. Returns the number of PNGs written (0 when no group has a
   key), or -1 with a message (see jm_plot_read_metrics). written, if not NULL, receives
   up to JM_PLOT_MAX_WRITTEN malloc'd paths of the files written (the caller frees them;
   the other entries are set to NULL). */
#define JM_PLOT_MAX_WRITTEN 8
int jm_plot_metrics(const char *jsonl, const char *out_dir, char **written, char *err, size_t errlen);
#endif
