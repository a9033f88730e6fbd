/* rt_table.h — the program table: everything a compiled jemc module tells its
 * runtime. The compiler builds it (compiler/plan.c), the code generator embeds
 * it in the object file as a flat array of 64-bit words (jm_table_serialize),
 * and the runtime reads it back (jm_table_parse) and executes it (rt_exec.c, on a device: rt_device.h).
 *
 * Memory: two regions. STATE holds every global (parameters, optimizer moments,
 * buffers, counters) at fixed offsets, for the life of the process. SCRATCH is
 * reused by every program call: inputs, outputs, activations and gradients at
 * offsets chosen by the memory planner. A buffer reference (jm_ref) packs the
 * region into bit 0 and the byte offset into the other bits.
 *
 * A program is a flat list of steps executed in order by every thread of one
 * OpenMP parallel region, with a barrier after each step:
 *   KERNEL  generated code fn(bufs, begin, end) over items [0, n), split statically
 *   LIB     a runtime kernel (convolution, matmul, pooling, random numbers, rows)
 *   COPY    n bytes from buf[1] to buf[0]
 *   LOOP    runs the next `body` steps n times (nested loops nest their steps);
 *           with nint = 1 the count is the value of global iat[0] (an i64 knob)
 * After the last step the outputs are read, then the state writes are committed
 * (copies from scratch into the globals), so a program sees its state unchanged
 * until it ends. */
#ifndef JM_RT_TABLE_H
#define JM_RT_TABLE_H
#include <stddef.h>
#include <stdint.h>

#define JM_TABLE_MAGIC   0x63656d6aULL      /* "jmec" */
#define JM_TABLE_VERSION 3
#define JM_TABLE_MAX_RANK 6

/* element types: the same values as the compiler's jm_dtype */
typedef enum { JM_DT_F32, JM_DT_F64, JM_DT_I32, JM_DT_I64, JM_DT_BOOL } jm_rt_dtype;
size_t jm_rt_dtype_size(int dt);
const char *jm_rt_dtype_name(int dt);

typedef int64_t jm_ref;
enum { JM_REGION_STATE = 0, JM_REGION_SCRATCH = 1 };
static inline jm_ref jm_ref_make(int region, int64_t offset) { return (jm_ref)((offset << 1) | region); }
static inline int jm_ref_region(jm_ref r) { return (int)(r & 1); }
static inline int64_t jm_ref_offset(jm_ref r) { return r >> 1; }

typedef enum { JM_STEP_KERNEL = 1, JM_STEP_LIB, JM_STEP_COPY, JM_STEP_LOOP } jm_step_kind;
/* KERNEL steps: buffers as the kernel's params; iat[0] = 1 (nint 1) when the
   kernel draws random numbers inline: the runtime then passes a jm_rng_ctx
   (rt_kernels.h) after the buffers. */

/* LIB operations; buffers and attributes per op:
 *   MATMUL        out, a, b;  iat = batch, M, N, K, transA, transB, sA, sB
 *   CONV_*        out, in0, in1; iat = N,C,H,W, O,KH,KW, OH,OW, stride h/w, pad h/w, dil h/w, groups
 *   *POOL*        out, in0 [, in1]; iat = NC, H, W, OH, OW, kh, kw, sh, sw, ph, pw
 *   RNG_*         out; iat = numel, stream, per example (its batch axis + 1, or 0), the batch B, the
 *                 elements after that axis; with S shards, element i of shard s is numbered as in
 *                 the draw of S * B (engine/rt_cpu.c); fat = parameters; dtype = out's
 *   GATHER/SCATTER/INDEX_ADD  out, a, idx [, rows]; iat = rows of a, row size (elements), k, idx dtype
 *                 [, SCATTER: the ROWS collective writing every shard's rows (jm_tcoll), or -1
 *                 [, SCATTER: the write it may replace + 1, or 0: a device may scatter straight
 *                 into that write's global (a is the global) and skip the write (plan.c)]]
 *   ONEHOT        out, labels; iat = numel(labels), classes, labels dtype
 *   CONCAT        out, srcs...; iat = outer, then per source its row length in bytes
 *   EXTERN        out, args...; iat = extern index (jm_table.externs), out's dtype, each arg's dtype;
 *                 called by thread 0 through libffi (rt_extern.h), values converted where a
 *                 buffer's dtype differs from the declared one */
typedef enum {
    JM_LIB_MATMUL = 1, JM_LIB_CONV_FWD, JM_LIB_CONV_BWD_DATA, JM_LIB_CONV_BWD_FILTER,
    JM_LIB_AVGPOOL, JM_LIB_MAXPOOL, JM_LIB_AVGPOOL_BWD, JM_LIB_MAXPOOL_BWD,
    JM_LIB_RNG_UNIFORM, JM_LIB_RNG_NORMAL, JM_LIB_RNG_RANDINT, JM_LIB_RNG_BERNOULLI,
    JM_LIB_GATHER, JM_LIB_SCATTER, JM_LIB_INDEX_ADD, JM_LIB_ONEHOT, JM_LIB_CONCAT,
    JM_LIB_EXTERN,
    JM_LIB_COUNT
} jm_lib_op;
const char *jm_lib_name(int op);

typedef struct {
    int32_t kind, op;          /* op: a jm_lib_op, or the kernel's index */
    int32_t nbuf, nint;
    int64_t n;                 /* KERNEL: items; LOOP: trips; COPY: bytes */
    int32_t body;              /* LOOP: number of steps in the body (they follow) */
    int32_t epi;               /* CONV_FWD: epilogue kernel index, or -1 */
    int64_t epi_items;         /* the epilogue's items per image */
    int32_t dtype;             /* RNG: the result's element type */
    jm_ref *buf;
    int64_t *iat;
    double fat[2];
    int64_t cost;              /* estimated work (elements or MACs); small steps run on one thread */
    const char *where;         /* "graph.graph:12:5 conv2d", for messages */
} jm_step;

typedef struct {
    const char *name;
    int32_t dtype, rank;
    int64_t dim[JM_TABLE_MAX_RANK];
    jm_ref ref;
} jm_tdesc;

/* CONFIG: a run-time knob, "config.NAME", holding config constant NAME (f32 or
   i64 scalar); the executable's commands may change it (train --set NAME=V).
   Its initialiser is CONST with a the value; b is 1 when the knob is an
   optimizer's learning rate (`adam(lr=NAME)`), which train's schedule and
   divergence guard scale, else 0 (JM_KNOB_IS_LR). */
enum { JM_GKIND_PARAM = 0, JM_GKIND_STATE = 1, JM_GKIND_CONFIG = 2 };
enum { JM_GINIT_NONE, JM_GINIT_ZEROS, JM_GINIT_CONST, JM_GINIT_UNIFORM, JM_GINIT_NORMAL };
typedef struct {
    jm_tdesc t;                /* ref is in the STATE region */
    int32_t kind, init;
    double a, b;
} jm_tglobal;
#define JM_KNOB_IS_LR(g) ((g)->kind == JM_GKIND_CONFIG && (g)->b == 1)

typedef struct { int32_t global; jm_ref src; int64_t bytes; } jm_twrite;

/* A collective of a training step (compiler/dp.c; the runtime: engine/rt_dp.c).
 *   MEAN  the buffer at ref[0] (bytes[0], dtype f32 or f64) is averaged over
 *         the shards before phase `phase` runs, in place; it is final once
 *         `step` steps have run (within the phase before; -1: at its end), so
 *         its exchange may start there
 *   ROWS  the SCATTER step `step` (iat[4] = this collective's index) writes the
 *         rows of every shard: the index buffer ref[0] and the rows ref[1] of
 *         each shard are gathered before phase `phase`, in shard order */
enum { JM_COLL_MEAN = 1, JM_COLL_ROWS = 2 };
typedef struct {
    int32_t kind, dtype, step;
    jm_ref ref[2];
    int64_t bytes[2];
    int32_t phase;             /* 1 .. nphases - 1: exchanged before that phase runs */
} jm_tcoll;

typedef struct {
    const char *name;
    jm_tdesc *inputs; int32_t ninputs;
    jm_tdesc *outputs; int32_t noutputs;
    jm_twrite *writes; int32_t nwrites;
    jm_step *steps; int32_t nsteps;
    int64_t scratch_bytes;
    /* data parallelism: phase k is steps [phase_start[k], phase_start[k + 1]),
       phase_start[0] = 0 and phase_start[nphases] = nsteps; phase 0 runs once
       per micro-batch, the shards exchange before each later phase (compiler/dp.h).
       dp_why: "" when the program can run over several shards, else why not */
    int32_t nphases, *phase_start;
    jm_tcoll *colls; int32_t ncolls;
    const char *dp_why;
} jm_tprogram;

/* A user's C function (a graph's `extern`): the symbol, the library dlopen
   loads (an absolute path, or a bare name for its search), and the declared
   signature (params[i].name is empty, refs unused). */
typedef struct {
    const char *name, *library;
    jm_tdesc *params; int32_t nparams;
    jm_tdesc ret;
} jm_textern;

typedef struct {
    uint64_t graph_hash;
    const char *graph;         /* the graph file it was compiled from */
    const char *cpu;           /* the CPU the code was generated for */
    int64_t state_bytes;
    jm_tglobal *globals; int32_t nglobals;
    jm_tprogram *programs; int32_t nprograms;
    const char **kernels; int32_t nkernels;   /* kernel function names, by index */
    jm_textern *externs; int32_t nexterns;    /* user C functions, by index (LIB EXTERN steps) */
    void *owned;               /* parse: one allocation holding everything */
} jm_table;

/* Serialises into *words (malloc'd; *nwords set). 0 ok, -1 out of memory. */
int jm_table_serialize(const jm_table *t, int64_t **words, int64_t *nwords);
/* Parses a serialised table, checking every count, reference and bound
   (a damaged table is an error, never a crash). 0 ok; -1 with err set. */
int jm_table_parse(const int64_t *words, int64_t nwords, jm_table *t, char *err, size_t errlen);
void jm_table_free(jm_table *t);
int jm_table_find_program(const jm_table *t, const char *name);
#endif
