/* rt_exec.c — see rt_exec.h: a runtime's state (allocation, initialisation,
 * host views, snapshots), its device (chosen once per process or attached to
 * one runtime), and running a program on it. The CPU device is rt_cpu.c; every
 * device is reached through its jm_device table (rt_device.h), never by name. */
#include "rt_exec.h"
#include "rt_extern.h"
#include "philox.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int64_t jm_rt_desc_numel(const jm_tdesc *d) {
    int64_t n = 1;
    for (int i = 0; i < d->rank; i++) n *= d->dim[i];
    return n;
}

void *jm_rt_alloc_aligned(int64_t bytes) {
    void *p = NULL;
    size_t n = (size_t)((bytes + 63) & ~(int64_t)63);
    if (posix_memalign(&p, 64, n ? n : 64) != 0) return NULL;
    return p;
}

unsigned char *jm_rt_host_global(const jm_rt *rt, int g) { return rt->state + jm_ref_offset(rt->t->globals[g].t.ref); }

static void jm_rt_init_global(jm_rt *rt, int gi) {
    const jm_tglobal *g = &rt->t->globals[gi];
    int64_t N = jm_rt_desc_numel(&g->t);
    unsigned char *p = jm_rt_host_global(rt, gi);
    /* the interpreter's rule (interp.c jm_init_global): stream = hash of the name, call 0xFFFFFFFF */
    uint32_t stream = jm_hash32(g->t.name, strlen(g->t.name), 0), call = 0xFFFFFFFFu;
    for (int64_t i = 0; i < N; i++) {
        double v = 0;
        switch (g->init) {
        case JM_GINIT_CONST: v = g->a; break;
        case JM_GINIT_UNIFORM: v = g->a + (g->b - g->a) * jm_philox_uniform((uint32_t)i, 0, stream, call, rt->seed); break;
        case JM_GINIT_NORMAL: v = g->a + g->b * jm_philox_normal((uint32_t)i, 0, stream, call, rt->seed); break;
        default: v = 0; break;
        }
        switch (g->t.dtype) {
        case JM_DT_F32: ((float *)p)[i] = (float)v; break;
        case JM_DT_F64: ((double *)p)[i] = v; break;
        case JM_DT_I32: ((int32_t *)p)[i] = (int32_t)trunc(v); break;
        case JM_DT_I64: ((int64_t *)p)[i] = (int64_t)trunc(v); break;
        default: p[i] = v != 0; break;
        }
    }
}

int jm_rt_open(jm_rt *rt, const jm_table *t, jm_kernel_fn *kernels, uint64_t seed) {
    memset(rt, 0, sizeof *rt);
    rt->t = t;
    rt->kernels = kernels;
    rt->seed = seed;
    rt->dev = &jm_device_cpu;
    rt->state = jm_rt_alloc_aligned(t->state_bytes);
    if (!rt->state) { snprintf(rt->err, sizeof rt->err, "out of memory for the state (%lld bytes)", (long long)t->state_bytes); return -1; }
    memset(rt->state, 0, (size_t)t->state_bytes);
    for (int i = 0; i < t->nglobals; i++) jm_rt_init_global(rt, i);
    return 0;
}

/* ---- the device --------------------------------------------------------------- */

/* The device every runtime of this process attaches at its first run, unless
   one was attached explicitly (jm_rt_attach). */
static const jm_device *jm_rt_dev_chosen = &jm_device_cpu;
static const void *jm_rt_dev_config;

void jm_rt_use_device(const jm_device *dev, const void *config) {
    jm_rt_dev_chosen = dev ? dev : &jm_device_cpu;
    jm_rt_dev_config = dev ? config : NULL;
}
const jm_device *jm_rt_device_chosen(void) { return jm_rt_dev_chosen; }

int jm_rt_attach(jm_rt *rt, const jm_device *dev, const void *config) {
    if (rt->dev_open) {
        /* the open device's newer values come home first */
        for (int g = 0; g < rt->t->nglobals; g++)
            if (rt->dev->sync_global(rt, g, 0) != 0) return -1;
        rt->dev->close(rt);
    }
    rt->dev = &jm_device_cpu;
    rt->dev_open = 0;
    if (dev->open(rt, config) != 0) return -1;
    rt->dev = dev;
    rt->dev_open = 1;
    return 0;
}

/* Until a device is open, rt->dev is the CPU's: the state is on the host. */
void *jm_rt_global(jm_rt *rt, int g) {
    if (rt->dev->sync_global(rt, g, 1) != 0) fprintf(stderr, "jemc runtime: %s\n", rt->err);
    return jm_rt_host_global(rt, g);
}
const void *jm_rt_global_read(jm_rt *rt, int g) {
    if (rt->dev->sync_global(rt, g, 0) != 0) fprintf(stderr, "jemc runtime: %s\n", rt->err);
    return jm_rt_host_global(rt, g);
}

int jm_rt_state_get(jm_rt *rt, void *dst) { return rt->dev->snapshot(rt, dst); }
int jm_rt_state_set(jm_rt *rt, const void *src) { return rt->dev->restore(rt, src); }

void jm_rt_close(jm_rt *rt) {
    if (rt->dev_open) rt->dev->close(rt);
    rt->dev = &jm_device_cpu;
    rt->dev_open = 0;
    if (rt->xfn)
        for (int i = 0; i < rt->t->nexterns; i++) jm_xfn_close(rt->xfn[i]);
    free(rt->xfn);
    rt->xfn = NULL;
    free(rt->state);
    free(rt->scratch);
    free(rt->undo);
    rt->undo = NULL;
    rt->undo_cap = 0;
    rt->state = rt->scratch = NULL;
}

/* ---- one program call ------------------------------------------------------------ */

/* Loads the extern functions program pr calls that are not loaded yet. */
static int jm_rt_load_externs(jm_rt *rt, const jm_tprogram *pr) {
    for (int s = 0; s < pr->nsteps; s++) {
        const jm_step *st = &pr->steps[s];
        if (st->kind != JM_STEP_LIB || st->op != JM_LIB_EXTERN) continue;
        if (!rt->xfn) {
            rt->xfn = calloc((size_t)rt->t->nexterns + 1, sizeof *rt->xfn);
            if (!rt->xfn) { snprintf(rt->err, sizeof rt->err, "out of memory"); return -1; }
        }
        int64_t xi = st->iat[0];
        if (!rt->xfn[xi] && !(rt->xfn[xi] = jm_xfn_open(&rt->t->externs[xi], rt->err, sizeof rt->err))) return -1;
    }
    return 0;
}

int jm_rt_prepare(jm_rt *rt, int p) {
    rt->err[0] = 0;
    if (jm_rt_load_externs(rt, &rt->t->programs[p]) != 0) return -1;
    if (!rt->dev_open && jm_rt_attach(rt, jm_rt_dev_chosen, jm_rt_dev_config) != 0) return -1;
    return 0;
}

int jm_rt_run(jm_rt *rt, int p, const void *const *inputs, void *const *outputs) {
    if (jm_rt_prepare(rt, p) != 0) return -1;
    return rt->dev->run(rt, p, inputs, outputs);
}
