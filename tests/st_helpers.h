/* st_helpers.h — reading safetensors tensors in the parity tests (t_iteration,
 * t_vera): an element as a double, the element count, shape equality and the
 * float32 spacing a tolerance is measured in. */
#ifndef JM_TEST_ST_HELPERS_H
#define JM_TEST_ST_HELPERS_H
#include "engine/safetensors.h"
#include <float.h>
#include <math.h>
#include <stdint.h>

/* element i of a tensor as a double (float, integer or bool) */
static double el(const jm_st_tensor *t, size_t i) {
    switch (t->dtype) {
    case JM_ST_F64: return ((const double *)t->data)[i];
    case JM_ST_F32: return ((const float *)t->data)[i];
    case JM_ST_I64: return (double)((const int64_t *)t->data)[i];
    case JM_ST_I32: return ((const int32_t *)t->data)[i];
    default: return ((const unsigned char *)t->data)[i];
    }
}
static size_t numel(const jm_st_tensor *t) { return t->nbytes / jm_st_dtype_size(t->dtype); }

static int same_shape(const jm_st_tensor *a, const jm_st_tensor *b) {
    if (a->rank != b->rank || numel(a) != numel(b)) return 0;
    for (int i = 0; i < a->rank; i++)
        if (a->shape[i] != b->shape[i]) return 0;
    return 1;
}

/* the spacing of float32 numbers at |w| */
static double ulp32(double w) {
    float a = (float)fabs(w);
    return (double)nextafterf(a, FLT_MAX) - (double)a;
}
#endif
