/* st_helpers.h — reading safetensors tensors in the parity tests (t_iteration,
 * t_vera, t_samplers, t_sam, t_ssl, t_recipes, t_gm): a file read with its
 * error on the TAP stream, an element as a double, the element count, shape
 * equality, the float32 spacing a tolerance is measured in, and a number of a
 * reference script's JSON summary. */
#ifndef JM_TEST_ST_HELPERS_H
#define JM_TEST_ST_HELPERS_H
#include "engine/safetensors.h"
#include "tap.h"
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* element i of a tensor as a double (float, integer or bool) */
static inline double el(const jm_st_tensor *t, size_t i) {
    switch (t->dtype) {
    case JM_ST_F64: return ((const double *)t->data)[i];
    case JM_ST_F32: return ((const float *)t->data)[i];
    case JM_ST_I64: return (double)((const int64_t *)t->data)[i];
    case JM_ST_I32: return ((const int32_t *)t->data)[i];
    default: return ((const unsigned char *)t->data)[i];
    }
}
static inline size_t numel(const jm_st_tensor *t) { return t->nbytes / jm_st_dtype_size(t->dtype); }

static inline int same_shape(const jm_st_tensor *a, const jm_st_tensor *b) {
    if (a->rank != b->rank || numel(a) != numel(b)) return 0;
    for (int i = 0; i < a->rank; i++)
        if (a->shape[i] != b->shape[i]) return 0;
    return 1;
}

/* the spacing of float32 numbers at |w| */
static inline double ulp32(double w) {
    float a = (float)fabs(w);
    return (double)nextafterf(a, FLT_MAX) - (double)a;
}

/* a safetensors file into f (zeroed first); -1 with the reason as a TAP diagnostic */
static inline int readf(const char *path, jm_st_file *f) {
    char err[512];
    memset(f, 0, sizeof *f);
    if (jm_st_read(path, f, err, sizeof err) != 0) { tap_diag("%s", err); return -1; }
    return 0;
}

/* the number after "key": in a reference script's JSON summary, NAN without it */
static inline double json_num(const char *s, const char *key) {
    char k[80];
    snprintf(k, sizeof k, "\"%s\": ", key);
    const char *p = strstr(s, k);
    return p ? strtod(p + strlen(k), NULL) : NAN;
}
/* A tensor of jemc's state that a PyTorch reference of one training step need
   not hold: the run-time settings (config.*), empty tensors (lib/informative.graph's
   gm_mean/gm_chol with gm_on = 0), and the state of the graph's optimizers other
   than `opt`, the one the step ran (jem_wrn28.graph's opt, lib/recipes.graph's
   opt_jempp and opt_sada). Anything else jemc holds, the reference must too. */
static inline int st_reference_may_lack(const jm_st_tensor *t, const char *opt) {
    static const char *const optimizers[] = { "opt", "opt_jempp", "opt_sada" };
    if (strncmp(t->name, "config.", 7) == 0 || numel(t) == 0) return 1;
    for (size_t i = 0; i < sizeof optimizers / sizeof optimizers[0]; i++) {
        size_t n = strlen(optimizers[i]);
        if (strncmp(t->name, optimizers[i], n) == 0 && t->name[n] == '.' && strcmp(optimizers[i], opt) != 0) return 1;
    }
    return 0;
}

#endif
