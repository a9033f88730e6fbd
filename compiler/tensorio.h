/* tensorio.h — moving tensors between safetensors files and the interpreter:
 * state files bind parameters and state by name, input files bind program
 * inputs by name, output files receive every program output by name. Every
 * mismatch is an error that names the file and the tensor. */
#ifndef JM_TENSORIO_H
#define JM_TENSORIO_H
#include "interp.h"

/* Parameters must all be present; state variables missing from the file keep
   their initial values; a tensor that is neither is an error. */
int jm_tio_load_state(jm_interp *I, const char *path, char *err, size_t errlen);
/* Fills inputs[0..ninputs) of program p (caller frees with jm_tensor_free). */
int jm_tio_load_inputs(jm_module *m, int p, const char *path, jm_tensor *inputs, char *err, size_t errlen);
/* Writes n named tensors atomically; f32 tensors as F32, f64 as F64, ints as I64/I32, bool as BOOL. */
int jm_tio_write(const char *path, const char *const *names, const jm_tensor *t, int n,
                 const char *const *meta_kv, int nmeta, char *err, size_t errlen);
/* Writes every global (parameters and state) under its name. */
int jm_tio_save_state(jm_interp *I, const char *path, char *err, size_t errlen);
#endif
