/* rt_workspace.c — per-thread scratch memory for the compute kernels.
 *
 * Thread `tid` owns one 64-byte-aligned buffer that only grows; it lives until the
 * process exits. Slots sit in fixed chunks that are never moved, so a thread can
 * find its slot while another thread adds a chunk (under a lock). */
#include "rt_gemm_int.h"
#include "rt_kernels.h"
#include <omp.h>
#include <stdlib.h>

#define JM_WS_CHUNK 64
#define JM_WS_CHUNKS 256          /* room for 16384 threads */
#define JM_WS_MAX ((int64_t)1 << 47)   /* more than any address space: refused outright */

typedef struct { void *p; int64_t bytes; } jm_ws_slot;

static jm_ws_slot *jm_ws_chunks[JM_WS_CHUNKS];

/* The slot of thread `tid`, creating its chunk when `create`; NULL if out of range
   or out of memory. */
static jm_ws_slot *jm_ws_slot_of(int tid, int create) {
    if (tid < 0 || tid >= JM_WS_CHUNK * JM_WS_CHUNKS) return NULL;
    jm_ws_slot **chunk = &jm_ws_chunks[tid / JM_WS_CHUNK];
    jm_ws_slot *c;
#pragma omp atomic read
    c = *chunk;
    if (!c && create) {
#pragma omp critical(jm_rt_workspace)
        {
            if (!*chunk) {
                jm_ws_slot *fresh = calloc(JM_WS_CHUNK, sizeof *fresh);
#pragma omp atomic write
                *chunk = fresh;
            }
            c = *chunk;
        }
    }
    return c ? &c[tid % JM_WS_CHUNK] : NULL;
}

void *jm_rt_workspace(int tid, int64_t bytes) {
    jm_ws_slot *s = jm_ws_slot_of(tid, 1);
    if (!s || bytes < 0 || bytes > JM_WS_MAX) return NULL;
    if (bytes <= s->bytes && s->p) return s->p;
    /* grow by at least half again, so a slowly growing sequence does not reallocate every time */
    int64_t want = bytes > s->bytes + s->bytes / 2 ? bytes : s->bytes + s->bytes / 2;
    want = (want + 63) / 64 * 64;
    if (want == 0) want = 64;
    void *p = aligned_alloc(64, (size_t)want);
    if (!p) {
        if ((want = (bytes + 63) / 64 * 64) == 0) want = 64;   /* retry without the slack */
        if (!(p = aligned_alloc(64, (size_t)want))) return NULL;
    }
    free(s->p);
    s->p = p;
    s->bytes = want;
    return p;
}

int64_t jm_rt_workspace_held(int tid) {
    jm_ws_slot *s = jm_ws_slot_of(tid, 0);
    return s && s->p ? s->bytes : 0;
}

void *jm_rt_workspace_peek(int tid) {
    jm_ws_slot *s = jm_ws_slot_of(tid, 0);
    return s ? s->p : NULL;
}

/* Each thread grows its own slot, then (after a barrier, so every slot is settled)
   checks that every thread of the team got enough; the trailing barrier keeps any
   thread from growing its slot again (in a later kernel) while others still look. */
float *jm_rt_team_scratch(int64_t bytes) {
    int tid = omp_get_thread_num(), nth = omp_get_num_threads();
    float *p = jm_rt_workspace(tid, bytes);
#pragma omp barrier
    int all = 1;
    for (int t = 0; t < nth; t++) all &= jm_rt_workspace_held(t) >= bytes;
#pragma omp barrier
    return all && p ? p : NULL;
}
