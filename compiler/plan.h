/* plan.h — from IR to a program table: fusion, scheduling and memory planning.
 *
 * Fusion decides which values are materialized in a buffer; every other value
 * is computed inline by the kernel of the materialized value that reads it.
 *   - materialized always: leaves (parameters, state, inputs, loop arguments),
 *     reductions, conv/matmul/pooling, random draws other than float32 normal
 *     and uniform ones (those are computed inline: fused noise), row ops (gather, scatter,
 *     index_add, onehot, concat), loops, and every value that leaves its graph
 *     (program outputs, state writes, loop results, loop operands) or is an
 *     operand of a runtime operation;
 *   - an elementwise or view value with several readers is materialized unless
 *     it is cheap to duplicate: only cheap ops (no exp/log/div/sqrt/...), at
 *     most JM_FUSE_DUP_MAX of them, are recomputed by each reader;
 *   - a value that is not cheap is materialized before a broadcast expands it
 *     (so exp(x) over [C] is not recomputed N times over [N,C]);
 *   - a kernel holds at most JM_FUSE_MAX_OPS inline ops.
 * A kernel that draws inline takes the RNG context and is never an epilogue.
 * A conv2d followed by an elementwise kernel that reads it at the same index
 * takes that kernel as its epilogue, run on each image while it is in cache;
 * when the kernel is the only reader the convolution writes the kernel's buffer
 * (in place), otherwise it keeps its own (no other step may read it earlier).
 * A matmul operand that is a transpose of a materialized matrix is read in
 * place (transA/transB), and a reshape of a materialized value is an alias.
 *
 * Scheduling: steps follow the IR's topological order, with two changes. A
 * fused convolution runs where its epilogue kernel stands. A step moves down to
 * just before its first reader when that lengthens no other buffer's life (its
 * scratch operands are read at or after that point anyway): the value is then
 * made when it is needed, not as early as the IR happens to define it.
 *
 * In place: an elementwise kernel writes its result over an operand buffer of
 * the same size that dies at that step, when every read of that operand is at
 * the result's own index (each element is read before it is overwritten).
 *
 * Memory: every buffer gets a lifetime [first step, last step] over the
 * program's flattened step list (a value used inside a loop but made outside
 * lives to the loop's end); scratch offsets are assigned by first-fit over
 * buffers sorted by size (largest first), 64-byte aligned. Globals live in the
 * state region at fixed offsets shared by every program. */
#ifndef JM_PLAN_H
#define JM_PLAN_H
#include "ir.h"
#include "engine/rt_table.h"

#define JM_FUSE_DUP_MAX 8
#define JM_FUSE_MAX_OPS 200

typedef enum { JM_KERNEL_ELEMWISE, JM_KERNEL_REDUCE } jm_kernel_kind;

typedef struct {
    int graph, root;
    jm_kernel_kind kind;
    int nparam;                 /* distinct buffers; param 0 is where the result goes */
    int *tree, *tree_param;     /* the nodes the kernel visits (ascending ids; inline ops and the
                                   materialized values they read), and for each the param it is
                                   loaded from or -1 (computed inline): see jm_kspec_param */
    int ntree;
    int64_t items;              /* the range [0, items) split among threads */
    int split;                  /* elementwise: 0 = one flat loop over elements; k > 0 = rows over
                                   dims [0, k), an inner loop over dims [k, rank) */
    int nops;                   /* inline ops, for dumps */
    char *param_identity;       /* per param: every read is at the result's own linear index */
    int rng;                    /* 1: it draws random numbers inline (fused noise) and takes the
                                   runtime's RNG context as one more pointer after its buffers */
    const char *name;           /* "jk_<program>_<n>" */
} jm_kspec;

typedef struct {
    int64_t bytes, offset;
    int region, global;         /* STATE: the global it holds */
    int first, last;            /* step positions; -1 / INT_MAX for whole-program */
    int graph;                  /* the graph whose value it holds (loop-carried: the loop's graph) */
    int merged_into;            /* in-place reuse: the buffer whose memory it takes over, or -1 */
    const char *what;           /* the value's description, for --dump=plan */
} jm_pbuf;

typedef struct {
    jm_pbuf *bufs; int nbufs;
    int64_t peak;               /* scratch bytes */
    int64_t naive;              /* sum of all scratch buffers (no reuse), for comparison */
} jm_pmem;

typedef struct {
    jm_module *m;
    jm_table table;
    jm_kspec *kernels; int nkernels, capkernels;
    jm_pmem *mem;               /* per program */
} jm_plan;

/* The param node `node` of kernel k is loaded from, or -1 (inline, or not in the kernel). */
int jm_kspec_param(const jm_kspec *k, int node);

/* Builds the plan of every program (the module must be lowered: no composites).
   0 ok; -1 after reporting errors (an op the CPU backend does not support). */
int  jm_plan_build(jm_module *m, jm_plan *P, jm_diags *d);
/* Fusion on (the default) or off for the plans built after: off, every
   elementwise op is its own kernel and no convolution takes an epilogue
   (`jemc compile --fuse=off`, to measure what fusion buys). */
void jm_plan_set_fusion(int on);
/* Random draws inline in kernels (fused noise, the default when fusion is on):
   off for backends that do not pass the RNG context (--target cuda). */
void jm_plan_set_rng_fusion(int on);
/* --dump=fused: each program's steps and kernels with their inline ops;
   --dump=plan: every buffer with lifetime and offset, and the peak. */
void jm_plan_dump_fused(const jm_plan *P, const char *program, FILE *out);
void jm_plan_dump_memory(const jm_plan *P, const char *program, FILE *out);
/* Checks that no two scratch buffers live at the same step overlap in memory,
   and that every buffer lies inside its region. Returns the number of problems
   (each printed to `out` when not NULL). */
int  jm_plan_check_memory(const jm_plan *P, FILE *out);
#endif
