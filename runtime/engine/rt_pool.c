/* rt_pool.c — 2-D average and max pooling over planes, forward and gradients.
 *
 * at = kh, kw, sh, sw, ph, pw. A window is clipped to the plane: average pooling
 * still divides by kh*kw (padding counts as zeros, count_include_pad), max pooling
 * looks at the in-plane elements only. The maximum is the first one in window
 * order (row by row), except that a NaN beats any number: the first NaN wins.
 * The max gradient goes to that same element. Planes are shared out among the
 * threads; each plane's gradient sums its terms in window order, whatever the
 * team size. */
#pragma GCC optimize("O3")
#include "rt_gemm_int.h"
#include "rt_kernels.h"
#include <math.h>
#include <omp.h>
#include <string.h>

/* Clipped window of output (oy, ox): rows [*y0, *y1) and columns [*x0, *x1) of the plane. */
typedef struct { int64_t y0, y1, x0, x1; } jm_pool_win;

static jm_pool_win jm_pool_window(int64_t H, int64_t W, const int64_t at[6], int64_t oy, int64_t ox) {
    int64_t iy = oy * at[2] - at[4], ix = ox * at[3] - at[5];
    jm_pool_win w = {jm_rt_max(iy, 0), jm_rt_min(iy + at[0], H), jm_rt_max(ix, 0), jm_rt_min(ix + at[1], W)};
    if (w.y1 < w.y0) w.y1 = w.y0;
    if (w.x1 < w.x0) w.x1 = w.x0;
    return w;
}

/* Index in the plane of the window's maximum by the rule above; -1 for an empty window. */
static int64_t jm_pool_argmax(const float *plane, int64_t W, jm_pool_win w) {
    int64_t best = -1;
    float m = -INFINITY;
    for (int64_t y = w.y0; y < w.y1; y++)
        for (int64_t x = w.x0; x < w.x1; x++) {
            float v = plane[y * W + x];
            if (best < 0 || v > m || (isnan(v) && !isnan(m))) m = v, best = y * W + x;
        }
    return best;
}

static void jm_pool_planes(int64_t NC, int64_t *p0, int64_t *p1) {
    jm_rt_split(NC, omp_get_thread_num(), omp_get_num_threads(), p0, p1);
}

int jm_rt_avgpool2d_f32(int64_t NC, int64_t H, int64_t W, int64_t OH, int64_t OW, const int64_t at[6],
                        const float *x, float *y) {
    int64_t p0, p1;
    float div = (float)(at[0] * at[1]);
    jm_pool_planes(NC, &p0, &p1);
    for (int64_t p = p0; p < p1; p++) {
        const float *plane = x + p * H * W;
        for (int64_t oy = 0; oy < OH; oy++)
            for (int64_t ox = 0; ox < OW; ox++) {
                jm_pool_win w = jm_pool_window(H, W, at, oy, ox);
                float s = 0;
                for (int64_t iy = w.y0; iy < w.y1; iy++)
                    for (int64_t ix = w.x0; ix < w.x1; ix++) s += plane[iy * W + ix];
                y[(p * OH + oy) * OW + ox] = s / div;
            }
    }
#pragma omp barrier
    return 0;
}

int jm_rt_maxpool2d_f32(int64_t NC, int64_t H, int64_t W, int64_t OH, int64_t OW, const int64_t at[6],
                        const float *x, float *y) {
    int64_t p0, p1;
    jm_pool_planes(NC, &p0, &p1);
    for (int64_t p = p0; p < p1; p++) {
        const float *plane = x + p * H * W;
        for (int64_t oy = 0; oy < OH; oy++)
            for (int64_t ox = 0; ox < OW; ox++) {
                int64_t i = jm_pool_argmax(plane, W, jm_pool_window(H, W, at, oy, ox));
                y[(p * OH + oy) * OW + ox] = i < 0 ? -INFINITY : plane[i];
            }
    }
#pragma omp barrier
    return 0;
}

int jm_rt_avgpool2d_bwd_f32(int64_t NC, int64_t H, int64_t W, int64_t OH, int64_t OW, const int64_t at[6],
                            const float *dy, float *dx) {
    int64_t p0, p1;
    float div = (float)(at[0] * at[1]);
    jm_pool_planes(NC, &p0, &p1);
    for (int64_t p = p0; p < p1; p++) {
        float *plane = dx + p * H * W;
        memset(plane, 0, (size_t)(H * W) * sizeof *plane);
        for (int64_t oy = 0; oy < OH; oy++)
            for (int64_t ox = 0; ox < OW; ox++) {
                jm_pool_win w = jm_pool_window(H, W, at, oy, ox);
                float g = dy[(p * OH + oy) * OW + ox] / div;
                for (int64_t iy = w.y0; iy < w.y1; iy++)
                    for (int64_t ix = w.x0; ix < w.x1; ix++) plane[iy * W + ix] += g;
            }
    }
#pragma omp barrier
    return 0;
}

int jm_rt_maxpool2d_bwd_f32(int64_t NC, int64_t H, int64_t W, int64_t OH, int64_t OW, const int64_t at[6],
                            const float *x, const float *dy, float *dx) {
    int64_t p0, p1;
    jm_pool_planes(NC, &p0, &p1);
    for (int64_t p = p0; p < p1; p++) {
        const float *xp = x + p * H * W;
        float *plane = dx + p * H * W;
        memset(plane, 0, (size_t)(H * W) * sizeof *plane);
        for (int64_t oy = 0; oy < OH; oy++)
            for (int64_t ox = 0; ox < OW; ox++) {
                int64_t i = jm_pool_argmax(xp, W, jm_pool_window(H, W, at, oy, ox));
                if (i >= 0) plane[i] += dy[(p * OH + oy) * OW + ox];
            }
    }
#pragma omp barrier
    return 0;
}
