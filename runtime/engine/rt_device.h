/* rt_device.h — the interface between the executor (rt_exec.c) and a device
 * that runs a program table's programs: a table of operations, one per device.
 *
 *   jm_device_cpu   this machine's cores through OpenMP (rt_cpu.c, the engine's own)
 *   jm_device_cuda  an NVIDIA GPU (runtime/gpu/rt_cuda.c, above the engine)
 *
 * The engine calls a device only through this table and never names a device's
 * functions; the application picks one (jm_rt_use_device, the executable's
 * --device) or a caller attaches one to a runtime (jm_rt_attach).
 *
 * The state always has a host copy, rt->state, where initialisation,
 * checkpoints and knobs read and write it. A device that keeps its own copy
 * keeps the two coherent through sync_global (per global, on demand) and
 * snapshot/restore (the whole state, for the divergence guard).
 *
 * Data-parallel training (engine/rt_dp.c) runs a training step in two phases
 * around its collectives (run_phase, scratch_io below); the collectives
 * themselves go through a transport (engine/rt_coll.h: MPI, or NCCL on the
 * device's own memory: mean_dev, dp_wait). A device without
 * them leaves them NULL, so the devices, defined with designated
 * initialisers, need no change. */
#ifndef JM_RT_DEVICE_H
#define JM_RT_DEVICE_H
#include "rt_coll.h"
#include <stdint.h>

typedef struct jm_rt jm_rt;

typedef struct jm_device {
    const char *name;            /* the --device word: "cpu", "cuda" */
    int can_profile;             /* honours rt->profile (per-step times) */
    /* Attaches the device to rt, whose state is initialised on the host.
       `config` is the device's own (the CUDA device: a jm_gpu_image). 0 ok;
       -1 with rt->err set, and rt as it was. */
    int (*open)(jm_rt *rt, const void *config);
    void (*close)(jm_rt *rt);
    /* Runs program p: see jm_rt_run. */
    int (*run)(jm_rt *rt, int p, const void *const *inputs, void *const *outputs);
    /* Makes global g's host copy current; `write`: the host may change it, so
       the device's copy is refreshed before the next run. 0 or -1 (rt->err). */
    int (*sync_global)(jm_rt *rt, int g, int write);
    /* The whole state as t->state_bytes bytes: copied out, and back in. */
    int (*snapshot)(jm_rt *rt, void *dst);
    int (*restore)(jm_rt *rt, const void *src);
    /* Memory: what jemc allocated on the device itself, and what the device
       reports in use (every process included), in bytes; 0 where unknown. */
    void (*memory)(const jm_rt *rt, double *mine, double *in_use);
    /* "NVIDIA H100 80GB HBM3 (sm_90, 132 SMs), driver 13.0", for messages */
    const char *(*describe)(const jm_rt *rt);
    /* Data parallelism (engine/rt_dp.c); NULL where the device does not run
       shards yet (then a step runs on one shard only). run_phase runs phase k
       of program p (rt_table.h: jm_tprogram.phase_start): phase 0 copies the
       inputs in first; the last phase reads the outputs, commits the writes
       and counts the call after; the others commit and count nothing.
       scratch_io copies `bytes` at scratch reference ref to the host
       (write = 0) or from it (write = 1). 0, or -1 with rt->err set. */
    int (*run_phase)(jm_rt *rt, int p, int phase, const void *const *inputs, void *const *outputs);
    int (*scratch_io)(jm_rt *rt, int64_t ref, void *host, int64_t bytes, int write);
    /* Means over a device transport (rt_coll.h's dev_allreduce: NCCL), NULL
       where the device has none: mean_dev enqueues, on the device's stream,
       the sum over coll's ranks of the n elements (JM_DT_F32 or JM_DT_F64) at
       scratch reference ref, in place, then its scaling by 1/S; dp_wait
       returns when the stream has done them, polling coll->dev_poll while it
       waits (a transport's asynchronous error ends the wait with it). 0, or
       -1 with rt->err set. */
    int (*mean_dev)(jm_rt *rt, int64_t ref, int64_t n, int dtype, jm_coll *coll, int S);
    int (*dp_wait)(jm_rt *rt, jm_coll *coll);
} jm_device;

extern const jm_device jm_device_cpu;
#endif
