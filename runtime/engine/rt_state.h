/* rt_state.h — the executable's files: a state file (every parameter and
 * state global by name, PyTorch names for parameters, plus metadata: the
 * random-number position, the graph and its hash) read and written as
 * safetensors, and conversion of file tensors into the table's types.
 * Shared by `exec`, `train` (checkpoints), `sample` and `eval`. */
#ifndef JM_RT_STATE_H
#define JM_RT_STATE_H
#include "rt_exec.h"
#include "safetensors.h"

/* "f32[64,10]" */
void jm_desc_str(const jm_tdesc *d, char *buf, size_t n);
/* Converts file tensor st into dst (the table's type): shapes must match
   exactly; floats from any float type, integers from any integer type. */
int jm_state_convert(const char *path, const char *what, const jm_st_tensor *st, const jm_tdesc *want, void *dst,
                     char *err, size_t errlen);
/* Binds parameters and state by name (every parameter must be there; state
   missing from the file keeps its value; a name the graph lacks is an error).
   Nothing changes unless every tensor converts. keep (may be NULL) receives
   the file for its metadata; the caller frees it with jm_st_free. */
int jm_state_load(jm_rt *rt, const char *path, int seed_given, jm_st_file *keep, char *err, size_t errlen);
/* Writes every global, atomically (temporary file, fsync, rename), with the
   metadata jemc.rng_call, jemc.rng_seed, jemc.graph, jemc.graph_hash, format=pt
   and the extra key/value pairs extra[0..2*nextra). */
int jm_state_save(jm_rt *rt, const char *path, const char *const *extra, int nextra, char *err, size_t errlen);
/* Writes named tensors (data borrowed) atomically with metadata pairs. */
int jm_state_write_tensors(const char *path, const jm_tdesc *d, void *const *data, int n, const char *const *meta, int nmeta,
                           char *err, size_t errlen);
#endif
