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
 * Normals use Box-Muller on words 0 and 1 of the element's block: float32
 * draws in float32 (philox_core.h's jm_philox_normal_f32, bit for bit what a
 * fused kernel computes), float64 ones in double (below). */
#ifndef JM_PHILOX_H
#define JM_PHILOX_H
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include "philox_core.h"

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
