/* philox_core.h — the Philox4x32-10 block and the uniform it gives (philox.h
 * says how jemc numbers its draws). Integer arithmetic only, no C library: the
 * CPU runtime (philox.h) and the GPU library kernels (runtime/gpu/dev_lib.c,
 * compiled freestanding for NVPTX) include this one file, so both draw the
 * same bits. */
#ifndef JM_PHILOX_CORE_H
#define JM_PHILOX_CORE_H
#include <stdint.h>

typedef struct { uint32_t v[4]; } jm_philox_block;

static inline jm_philox_block jm_philox4x32(uint32_t element, uint32_t iteration, uint32_t stream, uint32_t call, uint64_t seed) {
    uint32_t c0 = element, c1 = iteration, c2 = stream, c3 = call;
    uint32_t k0 = (uint32_t)seed, k1 = (uint32_t)(seed >> 32);
    for (int r = 0; r < 10; r++) {
        uint64_t p0 = (uint64_t)0xD2511F53u * c0, p1 = (uint64_t)0xCD9E8D57u * c2;
        uint32_t n0 = (uint32_t)(p1 >> 32) ^ c1 ^ k0, n1 = (uint32_t)p1;
        uint32_t n2 = (uint32_t)(p0 >> 32) ^ c3 ^ k1, n3 = (uint32_t)p0;
        c0 = n0; c1 = n1; c2 = n2; c3 = n3;
        k0 += 0x9E3779B9u; k1 += 0xBB67AE85u;
    }
    jm_philox_block b = { { c0, c1, c2, c3 } };
    return b;
}

static inline double jm_philox_unit(uint32_t w) { return ((double)w + 0.5) * (1.0 / 4294967296.0); }

/* ---- float32 normals ------------------------------------------------------
 * An f32 normal draw is Box-Muller evaluated in float32, by exactly the float
 * operations below in this order, on every backend: the interpreter, the CPU
 * runtime's step, the GPU's library kernel, and the IR that a fused kernel
 * computes inline (codegen/rng_ir.c mirrors these functions op for op, with
 * codegen/mathlib.c's log). So the numbers agree bit for bit, fused or not.
 * Rules that keep them so: no fused multiply-add (the C files that include
 * this are compiled -std=c11, which turns GCC's contraction off, and the GPU
 * library -ffp-contract=off); every constant is a double rounded to float
 * ((float)0.1, as LLVMConstReal does), never a float literal.
 *   u1 = float(w0 >> 1) * 2^-31 + 2^-32 in (0, 1]: log(u1) is finite (a signed
 *        conversion: one instruction on every target, correctly rounded)
 *   u2 = float(w1 >> 8) * 2^-24         in [0, 1), exact
 *   z  = sqrt(-2 log u1) * cos(2 pi u2)
 * cos(2 pi u2) reduces q = 4 u2 to r = q - rint(q) in [-1/2, 1/2] (exact) and
 * evaluates Cephes' single-precision sine or cosine polynomial (1 ulp on
 * [-pi/4, pi/4]) at t = r pi/2, with the quadrant's sign. The largest |z| is
 * sqrt(64 ln 2) = 6.66 (w0 < 2). */
static inline float jm_philox_horner3f(float x, float c0, float c1, float c2) { return (c0 * x + c1) * x + c2; }

/* log(x) for normal x > 0: codegen/mathlib.c's jm_math_log (Cephes logf) on that domain */
static inline float jm_philox_logf(float x) {
    union { float f; uint32_t u; } v = { x };
    int32_t e = (int32_t)((v.u >> 23) & 255u) - 126;
    union { uint32_t u; float f; } mb = { (v.u & 0x007fffffu) | 0x3f000000u };
    float m = mb.f;
    int small = m < (float)0.707106781186547524;
    float ef = (float)(small ? e - 1 : e);
    float f = small ? (m + m) - (float)1.0 : m - (float)1.0;
    float z = f * f;
    static const double P[9] = { 7.0376836292E-2, -1.1514610310E-1, 1.1676998740E-1, -1.2420140846E-1, 1.4249322787E-1,
                                 -1.6668057665E-1, 2.0000714765E-1, -2.4999993993E-1, 3.3333331174E-1 };
    float p = (float)P[0];
    for (int i = 1; i < 9; i++) p = p * f + (float)P[i];
    float y = (f * z) * p;
    y = y + ef * (float)-2.12194440e-4;
    y = y - z * (float)0.5;
    return (f + y) + ef * (float)0.693359375;
}

/* cos(2 pi u) for u in [0, 1) */
static inline float jm_philox_cos2pif(float u) {
    float q = u * (float)4.0;
    float n = __builtin_rintf(q);
    float t = (q - n) * (float)1.5707963267948966;
    float z = t * t;
    float s = jm_philox_horner3f(z, (float)-1.9515295891E-4, (float)8.3321608736E-3, (float)-1.6666654611E-1) * z * t + t;
    float c = jm_philox_horner3f(z, (float)2.443315711809948E-5, (float)-1.388731625493765E-3, (float)4.166664568298827E-2) * z * z
              - z * (float)0.5 + (float)1.0;
    /* quadrant n mod 4: cos t, -sin t, -cos t, sin t */
    int k = (int)n & 3;
    float v = (k & 1) ? s : c;
    return (k == 1 || k == 2) ? -v : v;
}

static inline float jm_philox_normal_f32_of(uint32_t w0, uint32_t w1) {
    float u1 = (float)(int32_t)(w0 >> 1) * (float)0x1p-31 + (float)0x1p-32;
    float u2 = (float)(w1 >> 8) * (float)0x1p-24;
    return __builtin_sqrtf((float)-2.0 * jm_philox_logf(u1)) * jm_philox_cos2pif(u2);
}

static inline float jm_philox_normal_f32(uint32_t element, uint32_t iteration, uint32_t stream, uint32_t call, uint64_t seed) {
    jm_philox_block b = jm_philox4x32(element, iteration, stream, call, seed);
    return jm_philox_normal_f32_of(b.v[0], b.v[1]);
}
#endif
