/* interp.h — the reference interpreter: evaluates any program of a module
 * directly from the IR. It is the oracle every backend and gradient is tested
 * against, so it is written for clarity, not speed: every value is held in
 * double precision, and every f32 result is rounded to float after each op
 * (float storage, exactly rounded arithmetic). For float64 evaluation the
 * module is retyped first (jm_module_retype, f32 -> f64). */
#ifndef JM_INTERP_H
#define JM_INTERP_H
#include "ir.h"

typedef struct { jm_type type; double *data; } jm_tensor;   /* data: malloc'd, numel doubles */

typedef struct {
    jm_module *m;
    jm_tensor *globals;          /* current value of every global (params and state) */
    uint64_t seed;               /* RNG key */
    uint32_t call;               /* RNG call counter: incremented once per program run */
    int seed_given;              /* the seed came from the command line (a state file's does not override it) */
    struct jm_xfn **xfn;         /* per extern of the module: loaded at its first call (runtime/engine/rt_extern.h) */
    char err[1024];              /* message of the last failure */
} jm_interp;

/* Allocates globals and initialises them from their declared initialisers (seeded). */
int  jm_interp_init(jm_interp *I, jm_module *m, uint64_t seed);
void jm_interp_free(jm_interp *I);
/* Runs program p. inputs[i] binds input i (types must match exactly). On success,
   *outputs gets p's outputs in declaration order (caller frees each with
   jm_tensor_free and the array with free) and state writes are committed.
   Returns 0, or -1 with I->err set (nothing is committed). */
int  jm_interp_run(jm_interp *I, int p, const jm_tensor *inputs, jm_tensor **outputs);
void jm_tensor_free(jm_tensor *t);
int  jm_tensor_alloc(jm_tensor *t, const jm_type *type);
#endif
