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
#endif
