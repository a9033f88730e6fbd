/* rt_cpu.c — the CPU device (rt_device.h): runs a program's steps on this
 * machine's cores. Every thread walks the same step list; a step's work is
 * split statically by thread number and a barrier ends it, so every thread sees
 * every result before the next step. An error in a step (an index out of range,
 * no memory) sets a shared flag that every thread reads after the barrier, so
 * all of them stop at the same step. The state lives on the host: the state
 * operations of this device are plain copies. */
#include "rt_exec.h"
#if defined(__x86_64__) || defined(__i386__)
#include <xmmintrin.h>
#endif
#include "rt_extern.h"
#include "philox.h"
#include "index_rule.h"
#include <math.h>
#include <omp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Steps estimated below this much work run on thread 0 alone: splitting them
   costs more than it saves. */
#define JM_RT_SERIAL_COST 16384

/* ---- one program call ---------------------------------------------------- */

/* In-place scatters (plan.c: the replay buffer's new rows written straight
   into the state, no copy of the whole buffer): each keeps the rows it
   overwrites, so that a run that fails after it restores them (a failed run
   commits nothing). At most JM_UNDO_MAX per run; others run copy-based. */
#define JM_UNDO_MAX 8
typedef struct {
    unsigned char *dst;          /* the global's memory */
    int64_t row, n;              /* row bytes; rows saved */
    int ran;                     /* the scatter ran in place this run (its write is done) */
    int64_t off;                 /* where in rt->undo: n indices (int64), then n rows */
} jm_undo;

typedef struct {
    jm_rt *rt;
    const jm_tprogram *pr;
    void ***ptrs;                /* per step: its buffers' addresses */
    uint32_t call;
    volatile int64_t failed_at;  /* the step sequence number of the first failure, INT64_MAX while none */
    int s0, s1;                  /* the steps to run: all, or a data-parallel phase's */
    int *undo_of;                /* per step: its jm_undo slot when it scatters in place, else -1 */
    jm_undo undo[JM_UNDO_MAX];
    int nundo;
    int fail_step;               /* JEMC_TEST_FAIL_STEP */
} jm_exec;

/* Every thread executes the same sequence of steps (loop bodies included), each
   ending in a barrier, and numbers them in jm_seq. A failure is recorded with
   the number of the step it happened in; a thread stops before a step only when
   a failure happened in an EARLIER step. That decision is the same on every
   thread: an earlier step's failure was written before that step's barrier,
   while a failure in the current step (which a slow thread might or might not
   see yet) is acted on at the next step by all. Stopping on any failure seen
   would let threads disagree and wait at different barriers forever. */
static _Thread_local int64_t jm_seq;

static int jm_exec_stopped(const jm_exec *x) { return x->failed_at < jm_seq; }

/* JEMC_TEST_FAIL_STEP (tests), read before the run's threads start: -1 unset */
static int jm_test_fail_step(void) {
    const char *e = getenv("JEMC_TEST_FAIL_STEP");
    return e && *e ? atoi(e) : -1;
}

static void jm_exec_fail(jm_exec *x, const jm_step *st, const char *fmt, ...) {
    #pragma omp critical(jm_exec_fail)
    {
        if (x->failed_at == INT64_MAX) {
            char msg[700];
            va_list ap;
            va_start(ap, fmt);
            vsnprintf(msg, sizeof msg, fmt, ap);
            va_end(ap);
            snprintf(x->rt->err, sizeof x->rt->err, "%s (%s)", msg, st->where && *st->where ? st->where : jm_lib_name(st->op));
            x->failed_at = jm_seq;
        }
    }
}

/* This thread's share [*b, *e) of n items, boundaries rounded to `align`. */
static void jm_split(int64_t n, int64_t align, int64_t *b, int64_t *e) {
    int T = omp_get_num_threads(), t = omp_get_thread_num();
    int64_t lo = n * t / T, hi = n * (t + 1) / T;
    if (align > 1) { lo -= lo % align; hi = t == T - 1 ? n : hi - hi % align; }
    *b = lo;
    *e = hi;
}

/* Every thread checks every index (cheap) and so agrees on failure without a barrier. */
static int jm_check_indices(jm_exec *x, const jm_step *st, const void *idx, int dt, int64_t k, int64_t limit, const char *what) {
    for (int64_t r = 0; r < k; r++) {
        int64_t v = jm_index_at(idx, dt, r);
        if (v < 0 || v >= limit) {
            jm_exec_fail(x, st, "%s %lld at position %lld is out of range [0, %lld)", what, (long long)v, (long long)r, (long long)limit);
            return -1;
        }
    }
    return 0;
}

static void jm_lib_rng(jm_exec *x, const jm_step *st, void *out, uint32_t iteration) {
    int64_t N = st->iat[0], b, e;
    uint32_t stream = (uint32_t)st->iat[1];
    double a = st->fat[0], bb = st->fat[1];
    uint64_t seed = x->rt->seed;
    /* a per-example draw (iat[2..4], compiler/dp.h) over S > 1 shards is
       numbered by the global example: local (o, k, r), o before the batch
       axis, k on it, r after, is element (o, shard * B + k, r) of the draw of S * B */
    int S = x->rt->dp_nshards;
    int per = st->nint > 4 && st->iat[2] > 0 && S > 1 && st->iat[3] > 0 && st->iat[4] > 0;
    int64_t B = per ? st->iat[3] : 1, in = per ? st->iat[4] : 1, sh = x->rt->shard;
    jm_split(N, 16, &b, &e);
    for (int64_t i0 = b; i0 < e; i0++) {
        int64_t i = per ? ((i0 / (B * in)) * (S * B) + sh * B + (i0 / in) % B) * in + i0 % in : i0;
        double v;
        switch (st->op) {
        case JM_LIB_RNG_UNIFORM: v = a + (bb - a) * jm_philox_uniform((uint32_t)i, iteration, stream, x->call, seed); break;
        case JM_LIB_RNG_NORMAL:
            /* float32 draws: the float32 Box-Muller a fused kernel computes (philox_core.h) */
            v = a + bb * (st->dtype == JM_DT_F32 ? (double)jm_philox_normal_f32((uint32_t)i, iteration, stream, x->call, seed)
                                                 : jm_philox_normal((uint32_t)i, iteration, stream, x->call, seed));
            break;
        case JM_LIB_RNG_RANDINT:
            v = floor(a + (bb - a) * jm_philox_uniform((uint32_t)i, iteration, stream, x->call, seed));
            if (v >= bb) v = bb - 1;
            break;
        default: v = jm_philox_uniform((uint32_t)i, iteration, stream, x->call, seed) < a; break;
        }
        switch (st->dtype) {
        case JM_DT_F32: ((float *)out)[i0] = (float)v; break;
        case JM_DT_F64: ((double *)out)[i0] = v; break;
        case JM_DT_I32: ((int32_t *)out)[i0] = (int32_t)v; break;
        case JM_DT_I64: ((int64_t *)out)[i0] = (int64_t)v; break;
        default: ((unsigned char *)out)[i0] = v != 0; break;
        }
    }
}

/* scatter: out = a, then out[idx[r]] = rows[r] in order (the last write
   wins); over several shards (rt_dp.c), every shard's index and rows in shard
   order. Threads split the columns, never the indices. Every index is checked
   before anything is written. In place (x->undo_of[step] >= 0, plan.c): out
   is a itself, the global's memory, and the rows about to be overwritten are
   saved first (all of them, before any write: a repeated index saves the
   original row every time, so a restore in any order is exact). */
static void jm_lib_scatter(jm_exec *x, const jm_step *st, void **p) {
    int64_t rows = st->iat[0], row = st->iat[1], k = st->iat[2];
    int idt = (int)st->iat[3];
    size_t esz = jm_rt_dtype_size(st->dtype), ib = (size_t)k * jm_rt_dtype_size(idt), rb = (size_t)(k * row) * esz;
    int S = 1;
    const unsigned char *all = NULL;
    if (st->nint > 4 && st->iat[4] >= 0 && x->rt->dp_nshards > 1 && x->rt->dp_rows) {
        S = x->rt->dp_nshards;
        all = x->rt->dp_rows[st->iat[4]];
    }
    for (int sh = 0; sh < S; sh++)
        if (jm_check_indices(x, st, all ? all + (size_t)sh * (ib + rb) : (const unsigned char *)p[2], idt, k, rows, "row index")) return;
    int u = x->undo_of ? x->undo_of[st - x->pr->steps] : -1;
    char *out = u >= 0 ? (char *)p[1] : (char *)p[0];
    int64_t b, e;
    jm_split(row, 16, &b, &e);
    size_t cb = (size_t)b * esz, cn = (size_t)(e - b) * esz, rowb = (size_t)row * esz;
    if (u < 0) {
        for (int64_t r = 0; r < rows; r++) memcpy(out + (size_t)r * rowb + cb, (char *)p[1] + (size_t)r * rowb + cb, cn);
    } else {
        jm_undo *U = &x->undo[u];
        int64_t *ui = (int64_t *)(x->rt->undo + U->off);
        unsigned char *ur = x->rt->undo + U->off + (size_t)(S * k) * 8;
        for (int sh = 0; sh < S; sh++) {
            const unsigned char *ix = all ? all + (size_t)sh * (ib + rb) : (const unsigned char *)p[2];
            for (int64_t r = 0; r < k; r++) {
                int64_t j = jm_index_at(ix, idt, r);
                memcpy(ur + (size_t)(sh * k + r) * rowb + cb, out + (size_t)j * rowb + cb, cn);
                if (omp_get_thread_num() == 0) ui[sh * k + r] = j;
            }
        }
        if (omp_get_thread_num() == 0) { U->dst = (unsigned char *)out; U->row = (int64_t)rowb; U->n = S * k; U->ran = 1; }
    }
    for (int sh = 0; sh < S; sh++) {
        const unsigned char *ix = all ? all + (size_t)sh * (ib + rb) : (const unsigned char *)p[2];
        const unsigned char *rw = all ? ix + ib : (const unsigned char *)p[3];
        for (int64_t r = 0; r < k; r++)
            memcpy(out + (size_t)jm_index_at(ix, idt, r) * rowb + cb, rw + (size_t)r * rowb + cb, cn);
    }
}

/* gather / scatter / index_add over rows of `row` elements of `esz` bytes.
   Scatter and index_add go through the indices in order (a repeated index:
   the last write wins, or the additions happen in order); threads split the
   columns, never the indices, so the order holds. */
static void jm_lib_rows(jm_exec *x, const jm_step *st, void **p) {
    int64_t rows = st->iat[0], row = st->iat[1], k = st->iat[2];
    int idt = (int)st->iat[3], dt = st->dtype;
    size_t esz = jm_rt_dtype_size(dt);
    if (jm_check_indices(x, st, p[2], idt, k, rows, "row index")) return;
    int64_t b, e;
    if (st->op == JM_LIB_GATHER) {
        jm_split(k, 1, &b, &e);
        for (int64_t r = b; r < e; r++)
            memcpy((char *)p[0] + (size_t)(r * row) * esz, (char *)p[1] + (size_t)(jm_index_at(p[2], idt, r) * row) * esz, (size_t)row * esz);
        return;
    }
    if (st->op == JM_LIB_SCATTER) { jm_lib_scatter(x, st, p); return; }
    jm_split(row, 16, &b, &e);
    for (int64_t r = 0; r < rows; r++)
        memcpy((char *)p[0] + (size_t)(r * row + b) * esz, (char *)p[1] + (size_t)(r * row + b) * esz, (size_t)(e - b) * esz);
    for (int64_t r = 0; r < k; r++) {
        int64_t j = jm_index_at(p[2], idt, r);
        for (int64_t q = b; q < e; q++)
            switch (dt) {
            case JM_DT_F32: ((float *)p[0])[j * row + q] += ((float *)p[3])[r * row + q]; break;
            case JM_DT_F64: ((double *)p[0])[j * row + q] += ((double *)p[3])[r * row + q]; break;
            case JM_DT_I32: ((int32_t *)p[0])[j * row + q] += ((int32_t *)p[3])[r * row + q]; break;
            case JM_DT_I64: ((int64_t *)p[0])[j * row + q] += ((int64_t *)p[3])[r * row + q]; break;
            default: ((unsigned char *)p[0])[j * row + q] |= ((unsigned char *)p[3])[r * row + q]; break;
            }
    }
}

static void jm_lib_onehot(jm_exec *x, const jm_step *st, void **p) {
    int64_t M = st->iat[0], C = st->iat[1], b, e;
    int ldt = (int)st->iat[2];
    if (jm_check_indices(x, st, p[1], ldt, M, C, "label")) return;
    jm_split(M, 1, &b, &e);
    size_t esz = jm_rt_dtype_size(st->dtype);
    memset((char *)p[0] + (size_t)(b * C) * esz, 0, (size_t)((e - b) * C) * esz);
    for (int64_t r = b; r < e; r++) {
        int64_t c = jm_index_at(p[1], ldt, r);
        char *o = (char *)p[0] + (size_t)(r * C + c) * esz;
        switch (st->dtype) {
        case JM_DT_F32: *(float *)o = 1; break;
        case JM_DT_F64: *(double *)o = 1; break;
        case JM_DT_I32: *(int32_t *)o = 1; break;
        case JM_DT_I64: *(int64_t *)o = 1; break;
        default: *(unsigned char *)o = 1; break;
        }
    }
}

static void jm_lib_concat(const jm_step *st, void **p) {
    int64_t outer = st->iat[0], total = 0, b, e;
    int ns = st->nbuf - 1;
    for (int s = 0; s < ns; s++) total += st->iat[1 + s];
    jm_split(outer, 1, &b, &e);
    for (int64_t r = b; r < e; r++) {
        int64_t off = 0;
        for (int s = 0; s < ns; s++) {
            int64_t len = st->iat[1 + s];
            memcpy((char *)p[0] + r * total + off, (char *)p[1 + s] + r * len, (size_t)len);
            off += len;
        }
    }
}

static void jm_conv_shape_of(const jm_step *st, jm_conv_shape *s) {
    const int64_t *a = st->iat;
    s->N = a[0]; s->C = a[1]; s->H = a[2]; s->W = a[3];
    s->O = a[4]; s->KH = a[5]; s->KW = a[6]; s->OH = a[7]; s->OW = a[8];
    for (int i = 0; i < 7; i++) s->at[i] = a[9 + i];
}

static void jm_exec_lib(jm_exec *x, const jm_step *st, void **p, uint32_t iteration) {
    int rc = 0;
    const int64_t *a = st->iat;
    jm_conv_shape cs;
    switch (st->op) {
    case JM_LIB_MATMUL:
        rc = jm_rt_matmul_f32(a[0], a[1], a[2], a[3], (int)a[4], (int)a[5], p[1], a[6], p[2], a[7], p[0], a[1] * a[2]);
        break;
    case JM_LIB_CONV_FWD:
        jm_conv_shape_of(st, &cs);
        rc = jm_rt_conv2d_fwd_f32(&cs, p[1], p[2], p[0], st->epi >= 0 ? x->rt->kernels[st->epi] : NULL,
                                  (void *const *)(p + 3), st->epi_items);
        break;
    case JM_LIB_CONV_BWD_DATA: jm_conv_shape_of(st, &cs); rc = jm_rt_conv2d_bwd_data_f32(&cs, p[1], p[2], p[0]); break;
    case JM_LIB_CONV_BWD_FILTER: jm_conv_shape_of(st, &cs); rc = jm_rt_conv2d_bwd_filter_f32(&cs, p[1], p[2], p[0]); break;
    case JM_LIB_AVGPOOL: rc = jm_rt_avgpool2d_f32(a[0], a[1], a[2], a[3], a[4], a + 5, p[1], p[0]); break;
    case JM_LIB_MAXPOOL: rc = jm_rt_maxpool2d_f32(a[0], a[1], a[2], a[3], a[4], a + 5, p[1], p[0]); break;
    case JM_LIB_AVGPOOL_BWD: rc = jm_rt_avgpool2d_bwd_f32(a[0], a[1], a[2], a[3], a[4], a + 5, p[1], p[0]); break;
    case JM_LIB_MAXPOOL_BWD: rc = jm_rt_maxpool2d_bwd_f32(a[0], a[1], a[2], a[3], a[4], a + 5, p[1], p[2], p[0]); break;
    case JM_LIB_RNG_UNIFORM: case JM_LIB_RNG_NORMAL: case JM_LIB_RNG_RANDINT: case JM_LIB_RNG_BERNOULLI:
        jm_lib_rng(x, st, p[0], iteration);
        break;
    case JM_LIB_GATHER: case JM_LIB_SCATTER: case JM_LIB_INDEX_ADD: jm_lib_rows(x, st, p); break;
    case JM_LIB_ONEHOT: jm_lib_onehot(x, st, p); break;
    case JM_LIB_CONCAT: jm_lib_concat(st, p); break;
    case JM_LIB_EXTERN:
        /* a user's C function: one call, by one thread (rt_extern.h) */
        if (omp_get_thread_num() == 0) {
            char err[600];
            if (jm_xfn_call(x->rt->xfn[a[0]], (const void *const *)(p + 1), a + 2, p[0], (int)a[1], err, sizeof err) != 0)
                jm_exec_fail(x, st, "%s", err);
        }
        break;
    default: jm_exec_fail(x, st, "unknown runtime operation %d", st->op); break;
    }
    if (rc) jm_exec_fail(x, st, "out of memory for the scratch space of %s", jm_lib_name(st->op));
    #pragma omp barrier
}

/* One thread's run of the program. Denormal floats are flushed to zero (the
   SSE/AVX control bits FTZ and DAZ) while it runs, and the thread's previous
   mode is restored after: a trained network's SGLD gradients are tiny, and
   denormal arithmetic on x86 costs up to 100x (a JEM iteration on MNIST ran at
   half speed after the classifier had learnt). Results differ from IEEE only
   below 1.2e-38. */
static void jm_exec_steps(jm_exec *x, int s0, int s1, uint32_t iteration);
static void jm_exec_thread(jm_exec *x) {
    jm_seq = 0;
#if defined(__x86_64__) || defined(__i386__)
    unsigned int csr = _mm_getcsr();
    _mm_setcsr(csr | 0x8040u);            /* FTZ (bit 15) | DAZ (bit 6) */
    jm_exec_steps(x, x->s0, x->s1, 0);
    _mm_setcsr(csr);
#else
    jm_exec_steps(x, x->s0, x->s1, 0);
#endif
}

/* A loop's trip count: the step's, or its knob's value (never below 0). */
static int64_t jm_loop_trips(jm_rt *rt, const jm_step *st) {
    if (st->nint < 1) return st->n;
    int64_t v = *(const int64_t *)jm_rt_host_global(rt, (int)st->iat[0]);
    return v > 0 ? v : 0;
}

static void jm_exec_steps(jm_exec *x, int s0, int s1, uint32_t iteration) {
    const jm_tprogram *pr = x->pr;
    double t0 = x->rt->profile && omp_get_thread_num() == 0 ? omp_get_wtime() : 0;
    for (int s = s0; s < s1; s++) {
        jm_seq++;
        if (jm_exec_stopped(x)) return;
        if (t0 != 0 && s > s0) {
            /* thread 0 charges the time since the previous step's barrier to that step */
            double t1 = omp_get_wtime();
            x->rt->profile[s - 1] += t1 - t0;
            t0 = t1;
        }
        const jm_step *st = &pr->steps[s];
        void **p = x->ptrs[s];
        int64_t b, e;
        switch (st->kind) {
        case JM_STEP_KERNEL: {
            jm_kernel_fn fn = x->rt->kernels[st->op];
            void *const *args = (void *const *)p;
            /* a kernel that draws inline gets this thread's RNG context after its buffers */
            int rng = st->nint > 0 && st->iat[0] == 1;
            void *withctx[rng ? st->nbuf + 1 : 1];
            jm_rng_ctx rc;
            if (rng) {
                rc = (jm_rng_ctx){ (uint32_t)x->rt->seed, (uint32_t)(x->rt->seed >> 32), x->call, iteration,
                                   x->rt->dp_nshards > 1 ? (uint32_t)x->rt->shard : 0,
                                   x->rt->dp_nshards > 1 ? (uint32_t)x->rt->dp_nshards : 1 };
                memcpy(withctx, p, sizeof(void *) * (size_t)st->nbuf);
                withctx[st->nbuf] = &rc;
                args = withctx;
            }
            if (st->cost < JM_RT_SERIAL_COST) {
                if (omp_get_thread_num() == 0) fn(args, 0, st->n);
            } else {
                jm_split(st->n, 16, &b, &e);
                if (e > b) fn(args, b, e);
            }
            #pragma omp barrier
            break;
        }
        case JM_STEP_LIB:
            jm_exec_lib(x, st, p, iteration);
            break;
        case JM_STEP_COPY:
            jm_split(st->n, 64, &b, &e);
            if (e > b) memcpy((char *)p[0] + b, (char *)p[1] + b, (size_t)(e - b));
            #pragma omp barrier
            break;
        case JM_STEP_LOOP: {
            int64_t trips = jm_loop_trips(x->rt, st);
            for (int64_t t = 0; t < trips && !jm_exec_stopped(x); t++)
                jm_exec_steps(x, s + 1, s + 1 + st->body, (uint32_t)((uint64_t)iteration * (uint64_t)trips + (uint64_t)t));
            s += st->body;
            if (t0 != 0) t0 = omp_get_wtime();     /* the body's steps were charged inside */
            break;
        }
        }
        /* after a step of the run's own range (not a loop's body), every
           thread past its closing barrier: the data-parallel hook, on thread 0
           (the thread that started the run: MPI's funnelled thread) */
        if (s0 == x->s0 && x->rt->dp_step_hook && omp_get_thread_num() == 0 && !jm_exec_stopped(x)) x->rt->dp_step_hook(x->rt, s);
        /* tests: JEMC_TEST_FAIL_STEP=N fails the run after step N (a failed run
           must commit nothing, in-place scatters included) */
        if (s0 == x->s0 && s == x->fail_step) jm_exec_fail(x, st, "the test's failure after step %d (JEMC_TEST_FAIL_STEP)", s);
    }
    if (t0 != 0 && s1 > s0 && pr->steps[s1 - 1].kind != JM_STEP_LOOP) x->rt->profile[s1 - 1] += omp_get_wtime() - t0;
}

/* The in-place scatters among steps [s0, s1) (plan.c marks them: iat[5]),
   at most JM_UNDO_MAX, each given room in rt->undo for the rows it overwrites
   (every shard's over a data-parallel step). A scatter that gets no slot, or
   no memory, runs copy-based and its write commits as usual. 0, or -1 with
   rt->err set. */
static int jm_undo_reserve(jm_rt *rt, const jm_tprogram *pr, int s0, int s1, jm_exec *x) {
    int64_t need = 0;
    int S = rt->dp_nshards > 1 ? rt->dp_nshards : 1;
    for (int s = s0; s < s1; s++) {
        const jm_step *st = &pr->steps[s];
        if (st->kind != JM_STEP_LIB || st->op != JM_LIB_SCATTER || st->nint < 6 || st->iat[5] <= 0 || x->nundo == JM_UNDO_MAX) continue;
        if (!x->undo_of) {
            x->undo_of = malloc(sizeof(int) * (size_t)(pr->nsteps + 1));
            if (!x->undo_of) { snprintf(rt->err, sizeof rt->err, "out of memory"); return -1; }
            for (int i = 0; i < pr->nsteps; i++) x->undo_of[i] = -1;
        }
        int64_t n = (int64_t)S * st->iat[2], rowb = st->iat[1] * (int64_t)jm_rt_dtype_size(st->dtype);
        x->undo[x->nundo].off = need;
        x->undo_of[s] = x->nundo++;
        need += n * (8 + rowb);
        need = (need + 63) & ~(int64_t)63;
    }
    if (need > rt->undo_cap) {
        free(rt->undo);
        rt->undo = jm_rt_alloc_aligned(need);
        rt->undo_cap = rt->undo ? need : 0;
        if (!rt->undo) {
            /* no room to keep the rows: every scatter copy-based this run */
            for (int s = s0; x->undo_of && s < s1; s++) x->undo_of[s] = -1;
            x->nundo = 0;
        }
    }
    return 0;
}

/* A failed run commits nothing: the rows the in-place scatters overwrote go back. */
static void jm_undo_restore(jm_rt *rt, const jm_exec *x) {
    for (int u = x->nundo - 1; u >= 0; u--) {
        const jm_undo *U = &x->undo[u];
        const int64_t *ui = (const int64_t *)(rt->undo + U->off);
        const unsigned char *ur = rt->undo + U->off + (size_t)U->n * 8;
        for (int64_t r = 0; r < U->n; r++) memcpy(U->dst + (size_t)(ui[r] * U->row), ur + (size_t)(r * U->row), (size_t)U->row);
    }
}

/* Write i was done by its scatter in place this run. */
static int jm_write_in_place(const jm_tprogram *pr, const jm_exec *x, int i) {
    for (int s = 0; x->undo_of && s < pr->nsteps; s++)
        if (x->undo_of[s] >= 0 && pr->steps[s].iat[5] == i + 1 && x->undo[x->undo_of[s]].ran) return 1;
    return 0;
}

/* Runs steps [s0, s1) of program p: with `inputs`, copied in first; with
   `finish`, the outputs read and the writes committed after, and the call
   counted (jm_cpu_run: all of it; jm_cpu_run_phase: a data-parallel phase). */
static int jm_cpu_exec(jm_rt *rt, int p, int s0, int s1, const void *const *inputs, void *const *outputs, int finish) {
    const jm_tprogram *pr = &rt->t->programs[p];
    if (pr->scratch_bytes > rt->scratch_cap) {
        free(rt->scratch);
        rt->scratch = jm_rt_alloc_aligned(pr->scratch_bytes);
        rt->scratch_cap = rt->scratch ? pr->scratch_bytes : 0;
        if (!rt->scratch) { snprintf(rt->err, sizeof rt->err, "out of memory for %lld bytes of scratch", (long long)pr->scratch_bytes); return -1; }
    }
    unsigned char *base[2] = { rt->state, rt->scratch };
#define JM_ADDR(ref) ((void *)(base[jm_ref_region(ref)] + jm_ref_offset(ref)))
    int64_t nptr = 0;
    for (int s = 0; s < pr->nsteps; s++) nptr += pr->steps[s].nbuf;
    void ***ptrs = malloc(sizeof(void **) * (size_t)(pr->nsteps + 1));
    void **flat = malloc(sizeof(void *) * (size_t)(nptr + 1));
    if (!ptrs || !flat) { free(ptrs); free(flat); snprintf(rt->err, sizeof rt->err, "out of memory"); return -1; }
    for (int s = 0, k = 0; s < pr->nsteps; s++) {
        ptrs[s] = flat + k;
        for (int i = 0; i < pr->steps[s].nbuf; i++) flat[k++] = JM_ADDR(pr->steps[s].buf[i]);
    }
    for (int i = 0; inputs && i < pr->ninputs; i++)
        memcpy(JM_ADDR(pr->inputs[i].ref), inputs[i], (size_t)jm_rt_desc_numel(&pr->inputs[i]) * jm_rt_dtype_size(pr->inputs[i].dtype));
    jm_exec x = { rt, pr, ptrs, rt->call, INT64_MAX, s0, s1, NULL, { { 0 } }, 0, jm_test_fail_step() };
    if (jm_undo_reserve(rt, pr, s0, s1, &x) != 0) { free(ptrs); free(flat); return -1; }
    if (rt->threads > 0) {
        #pragma omp parallel num_threads(rt->threads)
        jm_exec_thread(&x);
    } else {
        #pragma omp parallel
        jm_exec_thread(&x);
    }
    free(ptrs);
    free(flat);
    if (x.failed_at != INT64_MAX) {
        jm_undo_restore(rt, &x);
        free(x.undo_of);
        return -1;
    }
    if (!finish) { free(x.undo_of); return 0; }
    for (int i = 0; i < pr->noutputs; i++)
        memcpy(outputs[i], JM_ADDR(pr->outputs[i].ref), (size_t)jm_rt_desc_numel(&pr->outputs[i]) * jm_rt_dtype_size(pr->outputs[i].dtype));
    /* Writes commit after the outputs are read: a program sees (and returns) its
       state as it was when it started. Sources are scratch, never state (the
       planner copies a state source to scratch first), so order does not matter. */
    for (int i = 0; i < pr->nwrites; i++) {
        if (jm_write_in_place(pr, &x, i)) continue;        /* its scatter wrote the global itself */
        memcpy(jm_rt_host_global(rt, pr->writes[i].global), JM_ADDR(pr->writes[i].src), (size_t)pr->writes[i].bytes);
    }
    free(x.undo_of);
#undef JM_ADDR
    rt->call++;
    return 0;
}

static int jm_cpu_run(jm_rt *rt, int p, const void *const *inputs, void *const *outputs) {
    return jm_cpu_exec(rt, p, 0, rt->t->programs[p].nsteps, inputs, outputs, 1);
}

static int jm_cpu_run_phase(jm_rt *rt, int p, int phase, const void *const *inputs, void *const *outputs) {
    const jm_tprogram *pr = &rt->t->programs[p];
    int last = phase == pr->nphases - 1;
    return jm_cpu_exec(rt, p, pr->phase_start[phase], pr->phase_start[phase + 1], phase == 0 ? inputs : NULL, last ? outputs : NULL, last);
}

static int jm_cpu_scratch_io(jm_rt *rt, int64_t ref, void *host, int64_t bytes, int write) {
    unsigned char *a = rt->scratch + jm_ref_offset(ref);
    if (write) memcpy(a, host, (size_t)bytes);
    else memcpy(host, a, (size_t)bytes);
    return 0;
}

static int jm_cpu_open(jm_rt *rt, const void *config) { return 0; }
static void jm_cpu_close(jm_rt *rt) {}
static int jm_cpu_sync_global(jm_rt *rt, int g, int write) { return 0; }
static int jm_cpu_snapshot(jm_rt *rt, void *dst) { memcpy(dst, rt->state, (size_t)rt->t->state_bytes); return 0; }
static int jm_cpu_restore(jm_rt *rt, const void *src) { memcpy(rt->state, src, (size_t)rt->t->state_bytes); return 0; }
/* the host's memory is not reported (the operating system's tools do that) */
static void jm_cpu_memory(const jm_rt *rt, double *mine, double *in_use) { *mine = *in_use = 0; }
static const char *jm_cpu_describe(const jm_rt *rt) { return "the CPU"; }

const jm_device jm_device_cpu = {
    .name = "cpu",
    .can_profile = 1,
    .open = jm_cpu_open,
    .close = jm_cpu_close,
    .run = jm_cpu_run,
    .sync_global = jm_cpu_sync_global,
    .snapshot = jm_cpu_snapshot,
    .restore = jm_cpu_restore,
    .memory = jm_cpu_memory,
    .describe = jm_cpu_describe,
    .run_phase = jm_cpu_run_phase,
    .scratch_io = jm_cpu_scratch_io,
};
