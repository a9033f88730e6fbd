/* rt_cli.h — the generated executable's command line, and the file handling
 * it shares with `jemc run --target cpu`:
 *
 *   EXE exec PROGRAM [--state S] [--in IN] [--out OUT] [--state-out S2]
 *                    [--seed N] [--threads N] [--repeat N] [--profile]
 *   EXE info                 programs, inputs, outputs, parameters
 *   EXE --help | --version
 *
 * Files behave exactly as in `jemc run`: --state binds parameters and state by
 * name (every parameter must be there; state missing from the file keeps its
 * initial value; a name the graph lacks is an error); --in binds inputs by
 * name (other tensors are ignored); --out receives every output; without
 * --out the outputs are printed (first 8 values). Float tensors in files may be
 * F32 or F64, integer tensors any integer type, booleans BOOL or U8; shapes must
 * match exactly. The random-number position (jemc.rng_call, jemc.rng_seed)
 * travels in the state file's metadata. */
#ifndef JM_RT_CLI_H
#define JM_RT_CLI_H
#include "engine/rt_exec.h"

typedef struct {
    const char *program, *state, *in, *out, *state_out;
    uint64_t seed; int seed_given;
    int threads;                 /* 0: OpenMP's default */
    int repeat;                  /* run the program this many times (timing); outputs of the last run */
    int profile;                 /* print where the time goes, per step and per kind of step */
    const char *who;             /* prefix of messages: "jemc run", "./jem exec" */
    const char *producer;        /* metadata of --out files */
} jm_rt_exec_opts;

/* Runs one program with files as described above. Returns the exit status. */
int jm_rt_exec_files(const jm_table *t, jm_kernel_fn *kernels, const jm_rt_exec_opts *o);

/* main() of a generated executable. */
/* The GPU image the executable carries (rt_main.c, when compiled with --target cuda). */
#include "gpu/rt_cuda.h"
void jm_rt_cli_set_gpu(const jm_gpu_image *img);
/* The GPU a process uses, before its first program runs: a rank's local rank
   (modulo the visible GPUs); 0 by default. */
void jm_rt_cli_set_gpu_ordinal(int ordinal);
int jm_rt_cli_main(int argc, char **argv, const int64_t *words, int64_t nwords, jm_kernel_fn *kernels, int64_t nkernels);
#endif
