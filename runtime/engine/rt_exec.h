/* rt_exec.h — runs the programs of a program table: owns the state region
 * (globals) with its host copy and a scratch region, and runs a program on a
 * device (rt_device.h: the CPU's OpenMP executor, rt_cpu.c, by default), which
 * commits the program's state writes when it succeeds.
 *
 * Random numbers follow the interpreter's rule exactly (runtime/engine/philox.h):
 * counter (element, flat loop iteration, stream, call), key = seed; `call`
 * counts successful program runs. Parameter initialisation likewise, so a
 * compiled program and `jemc run` start from the same state for the same seed. */
#ifndef JM_RT_EXEC_H
#define JM_RT_EXEC_H
#include "rt_device.h"
#include "rt_kernels.h"
#include "rt_table.h"

struct jm_rt {
    const jm_table *t;
    jm_kernel_fn *kernels;       /* by index, as the table names them */
    unsigned char *state;        /* t->state_bytes, 64-byte aligned */
    unsigned char *scratch;      /* grows to the largest program's need */
    int64_t scratch_cap;
    uint64_t seed;
    uint32_t call;               /* successful program runs so far */
    int threads;                 /* 0: OpenMP's default */
    double *profile;             /* when set: seconds spent per step, accumulated (one per step of the program run) */
    struct jm_xfn **xfn;         /* per extern of the table: loaded when a program calling it first runs */
    const jm_device *dev;        /* the device running the programs: jm_device_cpu until one is open */
    int dev_open;                /* dev->open succeeded (dev->close is due) */
    void *dev_data;              /* the open device's own (the CUDA device: its jm_gpu) */
    /* data parallelism (rt_dp.h): the shard of the batch this run computes
       and the number of shards of the step (per-example draws are numbered by
       the global example); after the first exchange, every shard's rows for
       each scatter collective c: dp_rows[c] holds dp_nshards x (index bytes +
       row bytes), in shard order */
    int64_t shard;
    int dp_nshards;
    unsigned char **dp_rows;
    double dp_exchange_s;        /* wall seconds spent between the phases (reading back, exchanging, writing the means), summed */
    /* overlap (rt_dp.c): the gradient means go out in buckets of about
       dp_bucket_bytes (0: after the phase, in one exchange) as the backward
       pass finishes them; dp_wait_s sums the wall seconds spent waiting for
       them after the phase (the part of the exchange that did not overlap),
       dp_buckets_early the buckets posted before the phase's last step. While
       a phase runs, the device calls dp_step_hook(rt, s) on the thread that
       started the run after each step s of the phase (not inside loops), once
       steps [0, s] are done. */
    unsigned char *undo;         /* in-place scatters (rt_cpu.c): the rows they overwrote in the current run */
    int64_t undo_cap;
    int64_t dp_bucket_bytes;
    double dp_wait_s;
    int64_t dp_buckets_early;
    void (*dp_step_hook)(jm_rt *rt, int s);
    char err[1024];
};

/* Allocates the state and initialises every global from its declared
   initialiser with `seed`. 0 ok; -1 with rt->err set. */
int  jm_rt_open(jm_rt *rt, const jm_table *t, jm_kernel_fn *kernels, uint64_t seed);
void jm_rt_close(jm_rt *rt);
/* Runs program p. inputs[i] points at input i's data (the table's dtype and
   shape, row-major); outputs[i] must have room for output i. Returns 0, or -1
   with rt->err set and nothing committed. The first run of a program that calls
   extern functions loads their libraries first (an error names the function
   and the library, and nothing runs). */
int  jm_rt_run(jm_rt *rt, int p, const void *const *inputs, void *const *outputs);
/* What jm_rt_run does before running p: its extern functions loaded, the
   chosen device attached. 0, or -1 with rt->err set. */
int  jm_rt_prepare(jm_rt *rt, int p);
/* Where a global's host copy lives (in rt->state). With a device that keeps
   its own copy, the value is first brought back from the device when the device
   has a newer one; jm_rt_global also marks it for the device again before the
   next run (the caller may write it), jm_rt_global_read does not (read only). */
void *jm_rt_global(jm_rt *rt, int g);
const void *jm_rt_global_read(jm_rt *rt, int g);
/* The whole state as bytes (t->state_bytes): a copy out (for a snapshot), and
   back in. 0 ok; -1 with rt->err set. */
int jm_rt_state_get(jm_rt *rt, void *dst);
int jm_rt_state_set(jm_rt *rt, const void *src);

/* The device every jm_rt of this process attaches at its first run (the
   executable's --device); NULL: the CPU. `config` is the device's own. */
void jm_rt_use_device(const jm_device *dev, const void *config);
const jm_device *jm_rt_device_chosen(void);
/* Attaches dev to rt now (closing the one open). 0 ok; -1 with rt->err set,
   and rt left on the CPU. */
int jm_rt_attach(jm_rt *rt, const jm_device *dev, const void *config);

/* For devices: a global's host copy as it is (no sync), and 64-byte-aligned
   memory (free() releases it). */
unsigned char *jm_rt_host_global(const jm_rt *rt, int g);
void *jm_rt_alloc_aligned(int64_t bytes);
int64_t jm_rt_desc_numel(const jm_tdesc *d);
#endif
