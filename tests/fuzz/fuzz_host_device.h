/* fuzz_host_device.h — the fuzz builds compile the engine's readers and rt_exec.c
 * with clang and the sanitizers but without OpenMP (rt_cpu.c needs it, and no
 * clang OpenMP runtime is installed), so they define the CPU device here: the
 * state's host copy is the only copy, as with rt_cpu.c. Running a program is
 * not part of any reader and is refused. Include from exactly one file. */
#ifndef JM_FUZZ_HOST_DEVICE_H
#define JM_FUZZ_HOST_DEVICE_H
#include "engine/rt_exec.h"
#include <stdio.h>
#include <string.h>
static int jm_fzd_open(jm_rt *rt, const void *config) { (void)rt; (void)config; return 0; }
static void jm_fzd_close(jm_rt *rt) { (void)rt; }
static int jm_fzd_run(jm_rt *rt, int p, const void *const *in, void *const *out) {
    (void)p; (void)in; (void)out;
    snprintf(rt->err, sizeof rt->err, "the fuzz build runs no programs");
    return -1;
}
static int jm_fzd_sync(jm_rt *rt, int g, int write) { (void)rt; (void)g; (void)write; return 0; }
static int jm_fzd_snapshot(jm_rt *rt, void *dst) { memcpy(dst, rt->state, (size_t)rt->t->state_bytes); return 0; }
static int jm_fzd_restore(jm_rt *rt, const void *src) { memcpy(rt->state, src, (size_t)rt->t->state_bytes); return 0; }
static void jm_fzd_memory(const jm_rt *rt, double *mine, double *in_use) { (void)rt; *mine = *in_use = 0; }
static const char *jm_fzd_describe(const jm_rt *rt) { (void)rt; return "the CPU (fuzz build)"; }
const jm_device jm_device_cpu = {
    .name = "cpu", .open = jm_fzd_open, .close = jm_fzd_close, .run = jm_fzd_run, .sync_global = jm_fzd_sync,
    .snapshot = jm_fzd_snapshot, .restore = jm_fzd_restore, .memory = jm_fzd_memory, .describe = jm_fzd_describe,
};
#endif
