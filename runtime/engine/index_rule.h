/* index_rule.h — how an element of an index tensor (gather/scatter rows,
 * one-hot labels) becomes an index: integers as they are, booleans as 0/1,
 * floats truncated when in [0, 9e18), else -1 (out of range, reported by the
 * caller). Shared by the CPU executor (rt_cpu.c) and the GPU library kernels
 * (runtime/gpu/dev_lib.c, freestanding), so both read indices alike.
 * dt: rt_table.h's jm_rt_dtype (0 f32, 1 f64, 2 i32, 3 i64, 4 bool). */
#ifndef JM_INDEX_RULE_H
#define JM_INDEX_RULE_H
#include <stdint.h>

static inline int64_t jm_index_at(const void *p, int dt, int64_t i) {
    switch (dt) {
    case 2: return ((const int32_t *)p)[i];
    case 3: return ((const int64_t *)p)[i];
    case 4: return ((const unsigned char *)p)[i];
    case 0: { float v = ((const float *)p)[i]; return v >= 0 && v < 9e18f ? (int64_t)v : -1; }
    default: { double v = ((const double *)p)[i]; return v >= 0 && v < 9e18 ? (int64_t)v : -1; }
    }
}
#endif
