/* philox.h — Philox4x32-10 counter-based random numbers (Salmon et al., SC'11).
 *
 * jemc draws every random number as a pure function of (seed, element,
 * iteration, stream, call): the same numbers come out on every backend and
 * thread count.
 *   counter = (element index, loop iteration, stream, call)
 *   key     = (seed low 32 bits, seed high 32 bits)
 * element:   the flat index of the value within its tensor (tensors drawn at
 *            random have fewer than 2^32 elements)
 * iteration: the flat iteration count of the enclosing sampler loops (0 outside)
 * stream:    the draw's call site (a hash of where it is in the graph file and
 *            the chain of calls that reached it)
 * call:      how many times the program has run (the runtime's counter)
 * Uniforms use one 32-bit word: u = (w + 0.5) * 2^-32, in (0, 1) exclusive.
 * Normals use Box-Muller on words 0 and 1 of the element's block. */
#ifndef JM_PHILOX_H
#define JM_PHILOX_H
#include <math.h>
#include <stddef.h>
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

static inline double jm_philox_uniform(uint32_t element, uint32_t iteration, uint32_t stream, uint32_t call, uint64_t seed) {
    return jm_philox_unit(jm_philox4x32(element, iteration, stream, call, seed).v[0]);
}

static inline double jm_philox_normal(uint32_t element, uint32_t iteration, uint32_t stream, uint32_t call, uint64_t seed) {
    jm_philox_block b = jm_philox4x32(element, iteration, stream, call, seed);
    double u1 = jm_philox_unit(b.v[0]), u2 = jm_philox_unit(b.v[1]);
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}
/* FNV-1a, for stream ids and parameter-initialisation keys */
static inline uint32_t jm_hash32(const void *data, size_t n, uint32_t h) {
    const unsigned char *p = (const unsigned char *)data;
    if (!h) h = 2166136261u;
    for (size_t i = 0; i < n; i++) { h ^= p[i]; h *= 16777619u; }
    return h;
}
#endif
