/* cpu_target.h — turns a plan's kernels into native code with the LLVM 19 C
 * API: ahead of time (object or assembly files, or LLVM IR text, for
 * `jemc compile`) or in memory through ORC LLJIT (for `jemc run --target cpu`).
 *
 * Kernels are spread over several LLVM modules compiled in parallel threads
 * (one LLVMContext and TargetMachine each): code generation dominates compile
 * time and is independent per kernel. Kernels whose generated IR is identical
 * (the same fused computation in several programs) are emitted once. */
#ifndef JM_CPU_TARGET_H
#define JM_CPU_TARGET_H
#include <stddef.h>
#include <stdint.h>
#include "plan.h"
#include "engine/rt_kernels.h"

/* Named bytes the executable carries beside the kernels (the GPU image):
   `const unsigned char NAME[len]` and `const int64_t NAME_len` in the object. */
typedef struct { const char *name; const void *data; int64_t len; } jm_cpu_blob;

typedef struct {
    const char *cpu;            /* LLVM CPU name ("x86-64-v3", "znver4"); NULL or "native": this machine's */
    int opt;                    /* LLVM optimisation level 0..3 (default 3) */
    int threads;                /* code generation threads (0: one per core, at most 8) */
    const jm_cpu_blob *blobs;   /* written with the program table (jm_cpu_write) */
    int nblobs;
    int gpu_emulation;          /* tests: each kernel is the GPU entry's code run on the host
                                   (gpu_kernel.h, jm_gpu_kernel_emit_host), same ABI */
} jm_cpu_opts;

/* The CPU name and feature string the options mean (malloc'd). */
void jm_cpu_resolve(const jm_cpu_opts *o, char **cpu, char **features);

/* Writes the kernels and the program table. kind "obj": `paths` receives one
   object file per module (the caller links them: path_0.o, ...); "asm" and
   "llvm": one text file per module. Returns the number of files written, or -1
   with err set. File names are "<stem>.<i>.<ext>". */
int jm_cpu_write(const jm_plan *P, const jm_cpu_opts *o, const int64_t *table, int64_t nwords, const char *stem,
                 const char *kind, char ***paths, char *err, size_t errlen);


/* Compiles every kernel in memory; *fns[i] is kernel i. The JIT owns the code:
   free it with jm_cpu_jit_free after the last call. NULL with err set on failure. */
typedef struct jm_cpu_jit jm_cpu_jit;
jm_cpu_jit *jm_cpu_jit_create(const jm_plan *P, const jm_cpu_opts *o, jm_kernel_fn **fns, char *err, size_t errlen);
void jm_cpu_jit_free(jm_cpu_jit *j);
#endif
