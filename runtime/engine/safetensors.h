/* safetensors.h — read and write the Hugging Face safetensors format.
 *
 * File layout:
 *   bytes 0..7      N, the header length, an unsigned 64-bit little-endian integer
 *   bytes 8..8+N-1  the header: UTF-8 JSON, one object mapping
 *                     tensor name -> {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]}
 *                   plus an optional "__metadata__" object of string -> string
 *   bytes 8+N..     the data buffer; data_offsets are relative to its start,
 *                   tensor bytes are little-endian and row-major
 *
 * The reader is strict and never trusts the file: every malformed input is reported as
 * one line naming the file and the problem, and nothing is returned on failure.
 * The writer replaces the target atomically (temp file, fsync, rename, fsync directory). */
#ifndef JM_SAFETENSORS_H
#define JM_SAFETENSORS_H
#include <stddef.h>
#include <stdint.h>

typedef enum { JM_ST_F32, JM_ST_F64, JM_ST_I32, JM_ST_I64, JM_ST_U8, JM_ST_I8, JM_ST_I16, JM_ST_U16,
               JM_ST_F16, JM_ST_BF16, JM_ST_BOOL, JM_ST_U32, JM_ST_U64 } jm_st_dtype;
#define JM_ST_NDTYPES 13

#define JM_ST_MAX_RANK 8
/* Headers longer than this are rejected as absurd (the same limit as the reference
   implementation); the writer refuses to produce one. */
#define JM_ST_MAX_HEADER 100000000u
/* JSON nesting deeper than this is rejected before it can exhaust the stack. */
#define JM_ST_MAX_DEPTH 64
/* Tensor data owned by a jm_st_file is aligned to this many bytes. */
#define JM_ST_ALIGN 64

typedef struct {
    char *name;            /* owned */
    jm_st_dtype dtype;
    int rank;
    int64_t shape[JM_ST_MAX_RANK];
    size_t nbytes;         /* = numel * dtype size */
    void *data;            /* owned copy (or borrowed pointer in a file being written), 64-byte aligned when owned */
} jm_st_tensor;

typedef struct { char *key; char *value; } jm_st_meta;

typedef struct {
    int n;  jm_st_tensor *t;     /* in header order for read; in array order for write */
    int nmeta; jm_st_meta *meta;
} jm_st_file;

size_t jm_st_dtype_size(jm_st_dtype d);                 /* bytes per element; 0 for a value outside the enum */
const char *jm_st_dtype_name(jm_st_dtype d);            /* "F32" ...; NULL for a value outside the enum */
int jm_st_dtype_parse(const char *s, jm_st_dtype *out);  /* 0 ok, -1 unknown */

/* Read a whole file. 0 on success; on failure -1 and a one-line message in err that names
   the file and what is wrong, e.g. "w.safetensors: tensor 'conv1.weight': data_offsets [0, 100) do not match dtype F32 and shape [32,1,3,3] (1152 bytes)".
   *out is overwritten (not freed) on entry and is all zero after a failure. err may be NULL.
   Every tensor read has non-NULL data, even a zero-sized one. */
int jm_st_read(const char *path, jm_st_file *out, char *err, size_t errlen);

/* Same, from memory (used by the reader and by tests/fuzzers); path is only used in messages. */
int jm_st_parse(const char *path, const uint8_t *buf, size_t len, jm_st_file *out, char *err, size_t errlen);

/* Write atomically: write PATH.tmp.<pid>, fflush + fsync, rename over PATH, fsync the directory.
   Tensors are written in array order, data contiguous; header padded with spaces to a multiple of 8.
   The header lists "__metadata__" first (only when nmeta > 0), then the tensors.
   Each tensor must have a valid UTF-8 name other than "__metadata__", unique in the file,
   a shape of non-negative dimensions, nbytes equal to numel * dtype size, and non-NULL data
   when nbytes > 0. Metadata keys and values must be non-NULL valid UTF-8, keys unique.
   On any failure the old PATH is untouched, the temp file removed, -1 and err set. */
int jm_st_write(const char *path, const jm_st_file *f, char *err, size_t errlen);

/* Element kinds, for binding a file tensor to a typed one: F32/F64 are floats;
   I8..I64, U8, U16, U32 are integers (BOOL, F16, BF16, U64 are neither). */
int jm_st_dtype_is_float(jm_st_dtype d);
int jm_st_dtype_is_int(jm_st_dtype d);
/* Element i of t as a double (exact for every dtype but I64/U64 beyond 2^53); 0 for F16/BF16/U64. */
double jm_st_value(const jm_st_tensor *t, int64_t i);

/* Lookups by exact name/key (linear scans); NULL when absent. */
const jm_st_tensor *jm_st_find(const jm_st_file *f, const char *name);
const char *jm_st_meta_get(const jm_st_file *f, const char *key);

/* Frees everything owned — names, data, metadata, the arrays — and zeroes *f; safe on a
   zeroed struct. Do not call it on a file whose data pointers are borrowed. */
void jm_st_free(jm_st_file *f);
#endif
