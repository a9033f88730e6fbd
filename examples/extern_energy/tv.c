/* tv.c — total variation of images, for examples/extern_energy.
 *
 * The total variation TV(x) = sum over pixels of |x[i][j+1] - x[i][j]| +
 * |x[i+1][j] - x[i][j]| (anisotropic, no wrap-around) measures how far an
 * image is from piecewise constant: the smoothness prior of TV denoising
 * (Rudin, Osher, Fatemi 1992). jemc calls these through libffi (docs/graph-
 * language.md §4.11): a tensor arrives as `const float *` (row-major), a
 * scalar by value, and a tensor result is written through the last pointer.
 *
 *   cc -shared -fPIC -O2 -o libtv.so tv.c */
#include <math.h>
#include <stdint.h>

static double tv_one(const float *x, int32_t h, int32_t w) {
    double s = 0;
    for (int32_t i = 0; i < h; i++)
        for (int32_t j = 0; j < w; j++) {
            float v = x[i * w + j];
            if (j + 1 < w) s += fabsf(x[i * w + j + 1] - v);
            if (i + 1 < h) s += fabsf(x[(i + 1) * w + j] - v);
        }
    return s;
}

/* weight * TV summed over n images of h x w: a scalar energy term.
   extern "libtv.so" tv_energy(x: f32[N, H, W], n: i32[], h: i32[], w: i32[], weight: f32[]) -> f32[] */
float tv_energy(const float *x, int32_t n, int32_t h, int32_t w, float weight) {
    double s = 0;
    for (int32_t k = 0; k < n; k++) s += tv_one(x + (int64_t)k * h * w, h, w);
    return (float)(weight * s);
}

/* TV of each image: a per-example metric.
   extern "libtv.so" tv_per_image(x: f32[N, H, W], n: i32[], h: i32[], w: i32[]) -> f32[N] */
void tv_per_image(const float *x, int32_t n, int32_t h, int32_t w, float *out) {
    for (int32_t k = 0; k < n; k++) out[k] = (float)tv_one(x + (int64_t)k * h * w, h, w);
}
