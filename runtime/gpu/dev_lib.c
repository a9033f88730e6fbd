/* dev_lib.c — the GPU side of the runtime's library steps (rt_table.h's LIB
 * operations other than convolutions and matrix products, which cuDNN and
 * cuBLAS do): random numbers, pooling and its gradients, row gather / scatter /
 * index_add, one-hot, concatenation, and the NaN/index guards.
 *
 * This file is C compiled for the GPU: `make` runs clang-19 --target=nvptx64
 * on it and keeps LLVM bitcode (build/jemrt_dev.bc) next to libjemrt.a;
 * `jemc compile --target cuda` links that bitcode into the program's NVPTX
 * module, so every kernel of an executable is in one PTX module for one GPU.
 * No CUDA headers: PTX registers through clang's __nvvm builtins, double
 * precision log/cos from CUDA's libdevice (linked by jemc when a program draws
 * normal random numbers).
 *
 * Every kernel is a grid-stride loop over its items (any launch shape is
 * correct) and computes each result exactly as the CPU runtime does (rt_cpu.c,
 * rt_pool.c): the same Philox numbers, the same pooling window rules, the
 * same order of additions, so CPU and GPU agree bit for bit where the
 * arithmetic is the same. Index checks cannot stop a GPU: a bad index is
 * skipped and reported in the error word, which the runtime reads after the
 * program (rt_cuda.c). */
#include <stdint.h>
#include <stddef.h>
#include "../engine/philox_core.h"
#include "../engine/index_rule.h"

/* (tests/fake_cuda.c compiles this file for the host too, with its own JM_KERNEL
   and PTX register stand-ins, to run these kernels on the CPU) */
#ifndef JM_KERNEL
#define JM_KERNEL __attribute__((nvptx_kernel))
#endif
#define JM_DEV static inline __attribute__((always_inline))

double __nv_log(double);
double __nv_cos(double);
double __nv_sqrt(double);
double __nv_floor(double);
double __nv_trunc(double);

JM_DEV int64_t jm_first(void) {
    return (int64_t)__nvvm_read_ptx_sreg_ctaid_x() * __nvvm_read_ptx_sreg_ntid_x() + __nvvm_read_ptx_sreg_tid_x();
}
JM_DEV int64_t jm_stride(void) { return (int64_t)__nvvm_read_ptx_sreg_nctaid_x() * __nvvm_read_ptx_sreg_ntid_x(); }
#define JM_FOR(i, n) for (int64_t i = jm_first(), i##_s = jm_stride(); i < (n); i += i##_s)

/* element types: rt_table.h's jm_rt_dtype */
enum { DT_F32, DT_F64, DT_I32, DT_I64, DT_BOOL };

/* the error word (rt_cuda.c reads it after a program): code, then position and value */
typedef struct { int32_t code, step; int64_t pos, value; } jm_dev_err;
enum { JM_DEV_ERR_INDEX = 1, JM_DEV_ERR_LABEL = 2 };
JM_DEV void jm_report(jm_dev_err *e, int32_t code, int32_t step, int64_t pos, int64_t value) {
    if (__nvvm_atom_cas_gen_i(&e->code, 0, code) == 0) { e->step = step; e->pos = pos; e->value = value; }
}

JM_DEV void jm_put(void *out, int dt, int64_t i, double v) {
    switch (dt) {
    case DT_F32: ((float *)out)[i] = (float)v; break;
    case DT_F64: ((double *)out)[i] = v; break;
    case DT_I32: ((int32_t *)out)[i] = (int32_t)v; break;
    case DT_I64: ((int64_t *)out)[i] = (int64_t)v; break;
    default: ((unsigned char *)out)[i] = v != 0; break;
    }
}

/* ---- random numbers: runtime/engine/philox_core.h, the CPU's own rounds ------------ */

/* A per-example draw over S > 1 shards of a data-parallel step is numbered
   by the global example (engine/rt_cpu.c's rule): local element i0 = (o, k,
   r), o before the batch axis of B, k on it, r after (in elements), is element
   (o, shard * B + k, r) of the draw of S * B. S = 1: i0 itself. */
JM_DEV int64_t jm_global_elem(int64_t i0, int64_t S, int64_t B, int64_t in, int64_t shard) {
    if (S <= 1) return i0;
    return ((i0 / (B * in)) * (S * B) + shard * B + (i0 / in) % B) * in + i0 % in;
}

/* op: 0 uniform a + (b-a)u, 1 randint floor(a + (b-a)u) (below b), 2 bernoulli u < a.
   *call is the program-run counter, read from device memory so that a captured
   CUDA graph draws new numbers on every replay. S, B, in, shard: jm_global_elem. */
JM_KERNEL void jm_dev_rng(void *out, int64_t n, int32_t op, int32_t dt, double a, double b, uint32_t iteration,
                          uint32_t stream, const uint32_t *call, uint64_t seed, int64_t S, int64_t B, int64_t in, int64_t shard) {
    uint32_t c = *call;
    JM_FOR(i, n) {
        uint32_t e = (uint32_t)jm_global_elem(i, S, B, in, shard);
        double u = jm_philox_unit(jm_philox4x32(e, iteration, stream, c, seed).v[0]), v;
        if (op == 0) v = a + (b - a) * u;
        else if (op == 1) { v = __nv_floor(a + (b - a) * u); if (v >= b) v = b - 1; }
        else v = u < a;
        jm_put(out, dt, i, v);
    }
}

/* a + b * N(0,1), Box-Muller on words 0 and 1: float32 draws in float32
   (philox_core.h), float64 ones with libdevice's log and cos */
JM_KERNEL void jm_dev_rng_normal(void *out, int64_t n, int32_t dt, double a, double b, uint32_t iteration,
                                 uint32_t stream, const uint32_t *call, uint64_t seed, int64_t S, int64_t B, int64_t in, int64_t shard) {
    uint32_t c = *call;
    JM_FOR(i, n) {
        jm_philox_block k = jm_philox4x32((uint32_t)jm_global_elem(i, S, B, in, shard), iteration, stream, c, seed);
        double z;
        if (dt == DT_F32) z = jm_philox_normal_f32_of(k.v[0], k.v[1]);   /* the CPU's float32 Box-Muller, bit for bit */
        else {
            double u1 = jm_philox_unit(k.v[0]), u2 = jm_philox_unit(k.v[1]);
            z = __nv_sqrt(-2.0 * __nv_log(u1)) * __nv_cos(6.283185307179586 * u2);
        }
        jm_put(out, dt, i, a + b * z);
    }
}

/* ---- pooling: rt_pool.c's rules ---------------------------------------------- */

typedef struct { int64_t kh, kw, sh, sw, ph, pw; } jm_pool_at;
typedef struct { int64_t y0, y1, x0, x1; } jm_win;
JM_DEV int64_t jm_max64(int64_t a, int64_t b) { return a > b ? a : b; }
JM_DEV int64_t jm_min64(int64_t a, int64_t b) { return a < b ? a : b; }
JM_DEV jm_win jm_window(int64_t H, int64_t W, const jm_pool_at *at, int64_t oy, int64_t ox) {
    int64_t iy = oy * at->sh - at->ph, ix = ox * at->sw - at->pw;
    jm_win w = { jm_max64(iy, 0), jm_min64(iy + at->kh, H), jm_max64(ix, 0), jm_min64(ix + at->kw, W) };
    if (w.y1 < w.y0) w.y1 = w.y0;
    if (w.x1 < w.x0) w.x1 = w.x0;
    return w;
}
JM_DEV int jm_isnan(float v) { return v != v; }
JM_DEV int64_t jm_argmax(const float *plane, int64_t W, jm_win w) {
    int64_t best = -1;
    float m = -__builtin_inff();
    for (int64_t y = w.y0; y < w.y1; y++)
        for (int64_t x = w.x0; x < w.x1; x++) {
            float v = plane[y * W + x];
            if (best < 0 || v > m || (jm_isnan(v) && !jm_isnan(m))) m = v, best = y * W + x;
        }
    return best;
}

/* y[NC,OH,OW] from x[NC,H,W]; op 0 average (divides by kh*kw), 1 max */
JM_KERNEL void jm_dev_pool(float *y, const float *x, int32_t op, int64_t NC, int64_t H, int64_t W, int64_t OH, int64_t OW,
                           int64_t kh, int64_t kw, int64_t sh, int64_t sw, int64_t ph, int64_t pw) {
    jm_pool_at at = { kh, kw, sh, sw, ph, pw };
    float div = (float)(kh * kw);
    JM_FOR(o, NC * OH * OW) {
        int64_t ox = o % OW, oy = (o / OW) % OH, p = o / (OW * OH);
        const float *plane = x + p * H * W;
        jm_win w = jm_window(H, W, &at, oy, ox);
        if (op == 0) {
            float s = 0;
            for (int64_t iy = w.y0; iy < w.y1; iy++)
                for (int64_t ix = w.x0; ix < w.x1; ix++) s += plane[iy * W + ix];
            y[o] = s / div;
        } else {
            int64_t i = jm_argmax(plane, W, w);
            y[o] = i < 0 ? -__builtin_inff() : plane[i];
        }
    }
}

/* dx[NC,H,W] from dy[NC,OH,OW] (and x for max): each input element sums the
   gradients of the windows that hold it in window order, as the CPU adds them */
JM_KERNEL void jm_dev_pool_bwd(float *dx, const float *dy, const float *x, int32_t op, int64_t NC, int64_t H, int64_t W,
                               int64_t OH, int64_t OW, int64_t kh, int64_t kw, int64_t sh, int64_t sw, int64_t ph, int64_t pw) {
    jm_pool_at at = { kh, kw, sh, sw, ph, pw };
    float div = (float)(kh * kw);
    JM_FOR(e, NC * H * W) {
        int64_t ix = e % W, iy = (e / W) % H, p = e / (W * H);
        /* windows oy with oy*sh - ph <= iy < oy*sh - ph + kh */
        int64_t oy0 = iy + ph - kh + 1, oy1 = iy + ph, ox0 = ix + pw - kw + 1, ox1 = ix + pw;
        oy0 = oy0 <= 0 ? 0 : (oy0 + sh - 1) / sh;
        ox0 = ox0 <= 0 ? 0 : (ox0 + sw - 1) / sw;
        oy1 = oy1 < 0 ? -1 : jm_min64(oy1 / sh, OH - 1);
        ox1 = ox1 < 0 ? -1 : jm_min64(ox1 / sw, OW - 1);
        float s = 0;
        for (int64_t oy = oy0; oy <= oy1; oy++)
            for (int64_t ox = ox0; ox <= ox1; ox++) {
                float g = dy[(p * OH + oy) * OW + ox];
                if (op == 0) s += g / div;
                else if (jm_argmax(x + p * H * W, W, jm_window(H, W, &at, oy, ox)) == iy * W + ix) s += g;
            }
        dx[e] = s;
    }
}

/* ---- rows: gather / scatter / index_add ---------------------------------------- */

/* out[r] = a[idx[r]] for r < k, rows of `row` elements of esz bytes */
JM_KERNEL void jm_dev_gather(char *out, const char *a, const void *idx, int32_t idt, int64_t rows, int64_t row, int64_t k,
                             int64_t esz, jm_dev_err *err, int32_t step) {
    JM_FOR(e, k * row * esz) {
        int64_t r = e / (row * esz), q = e % (row * esz);
        int64_t j = jm_index_at(idx, idt, r);
        if (j < 0 || j >= rows) { if (q == 0) jm_report(err, JM_DEV_ERR_INDEX, step, r, j); continue; }
        out[e] = a[j * row * esz + q];
    }
}

/* op 0 scatter: out = a, then out[idx[r]] = src[r] in order (the last write
   wins); op 1 index_add: out[idx[r]] += src[r] in order. One thread per column
   walks every index in order, so repeated indices behave as on the CPU. */
JM_KERNEL void jm_dev_scatter(void *out, const void *a, const void *idx, const void *src, int32_t op, int32_t dt, int32_t idt,
                              int64_t rows, int64_t row, int64_t k, jm_dev_err *err, int32_t step) {
    int64_t esz = dt == DT_F64 || dt == DT_I64 ? 8 : dt == DT_BOOL ? 1 : 4;
    JM_FOR(q, row) {
        for (int64_t r = 0; r < rows; r++)
            for (int64_t b = 0; b < esz; b++) ((char *)out)[(r * row + q) * esz + b] = ((const char *)a)[(r * row + q) * esz + b];
        for (int64_t r = 0; r < k; r++) {
            int64_t j = jm_index_at(idx, idt, r);
            if (j < 0 || j >= rows) { if (q == 0) jm_report(err, JM_DEV_ERR_INDEX, step, r, j); continue; }
            int64_t o = j * row + q, s = r * row + q;
            if (op == 0) {
                for (int64_t b = 0; b < esz; b++) ((char *)out)[o * esz + b] = ((const char *)src)[s * esz + b];
                continue;
            }
            switch (dt) {
            case DT_F32: ((float *)out)[o] += ((const float *)src)[s]; break;
            case DT_F64: ((double *)out)[o] += ((const double *)src)[s]; break;
            case DT_I32: ((int32_t *)out)[o] += ((const int32_t *)src)[s]; break;
            case DT_I64: ((int64_t *)out)[o] += ((const int64_t *)src)[s]; break;
            default: ((unsigned char *)out)[o] |= ((const unsigned char *)src)[s]; break;
            }
        }
    }
}

/* out[M,C] = one_hot(labels[M]) */
JM_KERNEL void jm_dev_onehot(void *out, const void *labels, int32_t ldt, int32_t dt, int64_t M, int64_t C,
                             jm_dev_err *err, int32_t step) {
    JM_FOR(e, M * C) {
        int64_t r = e / C, c = e % C, l = jm_index_at(labels, ldt, r);
        if ((l < 0 || l >= C) && c == 0) jm_report(err, JM_DEV_ERR_LABEL, step, r, l);
        jm_put(out, dt, e, l == c);
    }
}

/* x *= f in place (a data-parallel mean: the sum over shards times 1/S, in
   x's type as engine/rt_dp.c scales on the host: float f for float data) */
JM_KERNEL void jm_dev_scale(void *x, int64_t n, int32_t dt, double f) {
    JM_FOR(i, n) {
        if (dt == DT_F64) ((double *)x)[i] *= f;
        else ((float *)x)[i] *= (float)f;
    }
}

/* one source of a concatenation: out[r, off:off+len] = src[r, 0:len] (bytes) */
JM_KERNEL void jm_dev_concat_part(char *out, const char *src, int64_t outer, int64_t total, int64_t off, int64_t len) {
    JM_FOR(e, outer * len) {
        int64_t r = e / len, q = e % len;
        out[r * total + off + q] = src[r * len + q];
    }
}
