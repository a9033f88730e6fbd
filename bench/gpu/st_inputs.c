/* st_inputs.c — writes a safetensors file of deterministic test inputs for a
 * compiled program, from the tensor list its executable's `info` prints:
 *
 *   st_inputs OUT.safetensors NAME:TYPE[DIMS] ...     e.g.  x:f32[3,1,28,28] y:i64[3] t:f32[]
 *
 * The values follow tests/compiled_helpers.h jc_fill_inputs as t_cuda calls it
 * (lo -1, hi 1, classes 2), from the same xorshift generator and seed, drawn
 * across the tensors in the order given: floats uniform in [-1, 1), integers
 * (k*7 + 1) % 2 for element k (valid labels and indices for every shipped
 * graph), booleans a fair coin. TYPE is f32, f64, i32, i64 or bool (written as
 * F32, F64, I32, I64, BOOL). Exit status 0, or 2 with a message. */
#include "engine/safetensors.h"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t rng_state = 88172645463325252ull;
static double urand(void) {
    rng_state ^= rng_state << 13; rng_state ^= rng_state >> 7; rng_state ^= rng_state << 17;
    return (double)(rng_state >> 11) / 9007199254740992.0;
}

/* "NAME:TYPE[d0,d1,...]" into t (name owned); 0 or -1 */
static int parse_spec(const char *spec, jm_st_tensor *t) {
    const char *colon = strrchr(spec, ':'), *open = colon ? strchr(colon, '[') : NULL;
    size_t len = strlen(spec);
    if (!colon || colon == spec || !open || len < 2 || spec[len - 1] != ']') return -1;
    static const struct { const char *name; jm_st_dtype dt; } types[] = {
        { "f32", JM_ST_F32 }, { "f64", JM_ST_F64 }, { "i32", JM_ST_I32 }, { "i64", JM_ST_I64 }, { "bool", JM_ST_BOOL } };
    int found = 0;
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
        if ((size_t)(open - colon - 1) == strlen(types[i].name) && strncmp(colon + 1, types[i].name, strlen(types[i].name)) == 0) {
            t->dtype = types[i].dt;
            found = 1;
        }
    if (!found) return -1;
    t->rank = 0;
    const char *p = open + 1;
    while (*p != ']') {
        if (t->rank == JM_ST_MAX_RANK) return -1;
        char *end;
        errno = 0;
        long long d = strtoll(p, &end, 10);
        if (end == p || errno || d < 0 || (*end != ',' && *end != ']')) return -1;
        t->shape[t->rank++] = d;
        p = *end == ',' ? end + 1 : end;
    }
    t->name = strndup(spec, (size_t)(colon - spec));
    return t->name ? 0 : -1;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: st_inputs OUT.safetensors NAME:TYPE[DIMS] ...   (TYPE f32, f64, i32, i64 or bool)\n");
        return 2;
    }
    jm_st_file f = { 0 };
    f.n = argc - 2;
    f.t = calloc((size_t)f.n + 1, sizeof *f.t);
    int rc = 0;
    for (int i = 0; i < f.n && rc == 0; i++) {
        jm_st_tensor *t = &f.t[i];
        if (parse_spec(argv[i + 2], t) != 0) {
            fprintf(stderr, "st_inputs: cannot read '%s': expected NAME:TYPE[DIMS] as `EXE info` prints it, e.g. x:f32[3,1,28,28]\n", argv[i + 2]);
            rc = 2;
            break;
        }
        int64_t n = 1;
        for (int k = 0; k < t->rank; k++) n *= t->shape[k];
        t->nbytes = (size_t)n * jm_st_dtype_size(t->dtype);
        t->data = malloc(t->nbytes + 1);
        for (int64_t k = 0; k < n; k++)
            switch (t->dtype) {
            case JM_ST_F32: ((float *)t->data)[k] = (float)(-1 + 2 * urand()); break;
            case JM_ST_F64: ((double *)t->data)[k] = -1 + 2 * urand(); break;
            case JM_ST_I32: ((int32_t *)t->data)[k] = (int32_t)((k * 7 + 1) % 2); break;
            case JM_ST_I64: ((int64_t *)t->data)[k] = (k * 7 + 1) % 2; break;
            default: ((unsigned char *)t->data)[k] = urand() < 0.5; break;
            }
    }
    char err[1024];
    if (rc == 0 && jm_st_write(argv[1], &f, err, sizeof err) != 0) { fprintf(stderr, "st_inputs: %s\n", err); rc = 2; }
    for (int i = 0; i < f.n; i++) { free(f.t[i].name); free(f.t[i].data); }
    free(f.t);
    return rc;
}
