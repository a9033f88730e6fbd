/* dist_mpi.c — engine/rt_coll.h over MPI: the shim libjemc_dist.so, built
 * with `mpicc -shared -fPIC` and dlopened by dist.c only in launched runs, so
 * nothing else in jemc links MPI (MPI ABIs differ between implementations).
 *
 * MPI is called only from the thread that opened it (MPI_THREAD_FUNNELED:
 * the runtime calls collectives between OpenMP regions). Errors come back as
 * MPI's text (MPI_ERRORS_RETURN), except in MPI_Init itself, which aborts.
 *
 * MPI counts are int, so a buffer goes in several calls of at most `chunk`
 * elements (floats, doubles or bytes): 2^26 by default, JEMC_DIST_CHUNK to
 * change it (the tests make it small). Every rank must see the same value,
 * as it does under one launcher: the calls must match. */
#include "engine/rt_coll.h"
#include <limits.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct {
    MPI_Comm comm;      /* a duplicate of MPI_COMM_WORLD: jemc's messages never meet another library's */
    int64_t chunk;      /* most elements per MPI call */
    int inited;         /* this shim called MPI_Init_thread (so it finalizes) */
    MPI_Request *req;   /* the posted sums (post_f32) not yet waited for */
    int nreq, capreq;
} jm_mpi;

int jm_dist_mpi_open(jm_coll *c, size_t coll_size, char *err, size_t errlen);

/* 0 on MPI_SUCCESS; else -1 and "MPI what: MPI's text" in err. */
static int jm_mpi_check(int rc, const char *what, char *err, size_t errlen) {
    if (rc == MPI_SUCCESS) return 0;
    char msg[MPI_MAX_ERROR_STRING];
    int len = 0;
    if (MPI_Error_string(rc, msg, &len) != MPI_SUCCESS) snprintf(msg, sizeof msg, "error code %d", rc);
    snprintf(err, errlen, "MPI %s: %s", what, msg);
    return -1;
}

static int jm_mpi_count_ok(int64_t n, const char *what, char *err, size_t errlen) {
    if (n >= 0) return 1;
    snprintf(err, errlen, "%s: negative size %lld", what, (long long)n);
    return 0;
}

/* Every rank gets the same bits: MPI only recommends it, Open MPI's reduction
   algorithms do it (research/distributed.md; for two ranks a + b == b + a
   anyway), and t_dist checks it. */
static int jm_mpi_allreduce_f32(jm_coll *c, float *buf, int64_t n, char *err, size_t errlen) {
    jm_mpi *m = c->impl;
    if (!jm_mpi_count_ok(n, "allreduce_f32", err, errlen)) return -1;
    for (int64_t o = 0; o < n; o += m->chunk) {
        int k = (int)(n - o < m->chunk ? n - o : m->chunk);
        if (jm_mpi_check(MPI_Allreduce(MPI_IN_PLACE, buf + o, k, MPI_FLOAT, MPI_SUM, m->comm), "Allreduce (float sum)", err, errlen))
            return -1;
    }
    return 0;
}

static int jm_mpi_allreduce_f64(jm_coll *c, double *buf, int64_t n, int op, char *err, size_t errlen) {
    jm_mpi *m = c->impl;
    if (!jm_mpi_count_ok(n, "allreduce_f64", err, errlen)) return -1;
    MPI_Op mop = op == JM_COLL_SUM ? MPI_SUM : op == JM_COLL_MIN ? MPI_MIN : op == JM_COLL_MAX ? MPI_MAX : MPI_OP_NULL;
    if (mop == MPI_OP_NULL) { snprintf(err, errlen, "allreduce_f64: unknown operation %d (JM_COLL_SUM, MIN or MAX)", op); return -1; }
    for (int64_t o = 0; o < n; o += m->chunk) {
        int k = (int)(n - o < m->chunk ? n - o : m->chunk);
        if (jm_mpi_check(MPI_Allreduce(MPI_IN_PLACE, buf + o, k, MPI_DOUBLE, mop, m->comm), "Allreduce (double)", err, errlen))
            return -1;
    }
    return 0;
}

/* Nonblocking sums (MPI_Iallreduce, MPI-3), in chunks like allreduce_f32;
   every rank posts the same sequence, so the requests match in order. */
static int jm_mpi_post_f32(jm_coll *c, float *buf, int64_t n, char *err, size_t errlen) {
    jm_mpi *m = c->impl;
    if (!jm_mpi_count_ok(n, "post_f32", err, errlen)) return -1;
    for (int64_t o = 0; o < n; o += m->chunk) {
        int k = (int)(n - o < m->chunk ? n - o : m->chunk);
        if (m->nreq == m->capreq) {
            int cap = m->capreq ? 2 * m->capreq : 16;
            MPI_Request *r = realloc(m->req, sizeof *r * (size_t)cap);
            if (!r) { snprintf(err, errlen, "out of memory for MPI requests"); return -1; }
            m->req = r;
            m->capreq = cap;
        }
        if (jm_mpi_check(MPI_Iallreduce(MPI_IN_PLACE, buf + o, k, MPI_FLOAT, MPI_SUM, m->comm, &m->req[m->nreq]),
                         "Iallreduce (float sum)", err, errlen)) return -1;
        m->nreq++;
    }
    return 0;
}

/* MPI advances nonblocking collectives inside its calls: a test of the
   posted requests is that call (completed ones become MPI_REQUEST_NULL). */
static int jm_mpi_progress(jm_coll *c, char *err, size_t errlen) {
    jm_mpi *m = c->impl;
    int done = 0;
    if (m->nreq == 0) return 0;
    return jm_mpi_check(MPI_Testall(m->nreq, m->req, &done, MPI_STATUSES_IGNORE), "Testall", err, errlen);
}

static int jm_mpi_wait_all(jm_coll *c, char *err, size_t errlen) {
    jm_mpi *m = c->impl;
    int n = m->nreq;
    m->nreq = 0;
    if (n == 0) return 0;
    return jm_mpi_check(MPI_Waitall(n, m->req, MPI_STATUSES_IGNORE), "Waitall", err, errlen);
}

/* In pieces, rank r's piece [o, o+k) lands at recv + r*bytes + o: received as
   one element of a k-byte type whose extent is `bytes` (MPI places rank r's
   block r extents after recv + o), so there is no staging copy. */
static int jm_mpi_allgather(jm_coll *c, const void *send, int64_t bytes, void *recv, char *err, size_t errlen) {
    jm_mpi *m = c->impl;
    if (!jm_mpi_count_ok(bytes, "allgather", err, errlen)) return -1;
    if (bytes == 0) return 0;
    if (bytes <= m->chunk)
        return jm_mpi_check(MPI_Allgather(send, (int)bytes, MPI_BYTE, recv, (int)bytes, MPI_BYTE, m->comm), "Allgather", err, errlen);
    for (int64_t o = 0; o < bytes; o += m->chunk) {
        int k = (int)(bytes - o < m->chunk ? bytes - o : m->chunk);
        MPI_Datatype piece, spaced;
        if (jm_mpi_check(MPI_Type_contiguous(k, MPI_BYTE, &piece), "Type_contiguous", err, errlen)) return -1;
        int rc = MPI_Type_create_resized(piece, 0, (MPI_Aint)bytes, &spaced);
        MPI_Type_free(&piece);
        if (jm_mpi_check(rc, "Type_create_resized", err, errlen)) return -1;
        rc = MPI_Type_commit(&spaced);
        if (rc == MPI_SUCCESS)
            rc = MPI_Allgather((const char *)send + o, k, MPI_BYTE, (char *)recv + o, 1, spaced, m->comm);
        MPI_Type_free(&spaced);
        if (jm_mpi_check(rc, "Allgather", err, errlen)) return -1;
    }
    return 0;
}

static int jm_mpi_bcast(jm_coll *c, void *buf, int64_t bytes, int root, char *err, size_t errlen) {
    jm_mpi *m = c->impl;
    if (!jm_mpi_count_ok(bytes, "bcast", err, errlen)) return -1;
    /* a bad root goes to MPI even for 0 bytes: every rank gets its error, together */
    int64_t o = 0;
    do {
        int k = (int)(bytes - o < m->chunk ? bytes - o : m->chunk);
        if (jm_mpi_check(MPI_Bcast((char *)buf + o, k, MPI_BYTE, root, m->comm), "Bcast", err, errlen)) return -1;
        o += k;
    } while (o < bytes);
    return 0;
}

static int jm_mpi_barrier(jm_coll *c, char *err, size_t errlen) {
    jm_mpi *m = c->impl;
    return jm_mpi_check(MPI_Barrier(m->comm), "Barrier", err, errlen);
}

static void jm_mpi_abort(jm_coll *c, int code) {
    MPI_Abort(MPI_COMM_WORLD, code);
    _exit(code ? code : 1);     /* MPI_Abort does not return; if it did, this rank still ends */
}

static void jm_mpi_finalize(jm_coll *c) {
    jm_mpi *m = c->impl;
    if (!m) return;
    int fin = 0;
    MPI_Finalized(&fin);
    if (!fin && m->comm != MPI_COMM_NULL) MPI_Comm_free(&m->comm);
    if (!fin && m->inited) MPI_Finalize();
    free(m->req);
    free(m);
    c->impl = NULL;
}

/* The chunk size: JEMC_DIST_CHUNK (elements, 1 to INT_MAX) or 2^26. */
static int jm_mpi_chunk(int64_t *chunk, char *err, size_t errlen) {
    *chunk = (int64_t)1 << 26;
    const char *v = getenv("JEMC_DIST_CHUNK");
    if (!v || !*v) return 0;
    char *end;
    long long n = strtoll(v, &end, 10);
    if (*end || n < 1 || n > INT_MAX) { snprintf(err, errlen, "JEMC_DIST_CHUNK must be an integer from 1 to %d, got '%s'", INT_MAX, v); return -1; }
    *chunk = n;
    return 0;
}

int jm_dist_mpi_open(jm_coll *c, size_t coll_size, char *err, size_t errlen) {
    if (coll_size != sizeof *c) {
        snprintf(err, errlen, "the MPI layer was built for another runtime (jm_coll of %zu bytes, the executable's has %zu): rebuild jemc",
                 sizeof *c, coll_size);
        return -1;
    }
    jm_mpi *m = calloc(1, sizeof *m);
    if (!m) { snprintf(err, errlen, "out of memory"); return -1; }
    m->comm = MPI_COMM_NULL;
    if (jm_mpi_chunk(&m->chunk, err, errlen)) { free(m); return -1; }
    int already = 0, provided = 0;
    MPI_Initialized(&already);
    if (!already) {
        if (MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS) {
            snprintf(err, errlen, "MPI_Init_thread failed");
            free(m);
            return -1;
        }
        m->inited = 1;
    } else {
        MPI_Query_thread(&provided);
    }
    /* errors as return codes from here on, on WORLD too (abort uses it) */
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    MPI_Comm local = MPI_COMM_NULL;
    int rc = provided < MPI_THREAD_FUNNELED ? -2 : MPI_SUCCESS;
    if (rc == -2) snprintf(err, errlen, "MPI provides thread level %d, below MPI_THREAD_FUNNELED", provided);
    else if (jm_mpi_check(MPI_Comm_dup(MPI_COMM_WORLD, &m->comm), "Comm_dup", err, errlen)) rc = -1;
    else if (jm_mpi_check(MPI_Comm_set_errhandler(m->comm, MPI_ERRORS_RETURN), "Comm_set_errhandler", err, errlen)) rc = -1;
    else if (jm_mpi_check(MPI_Comm_rank(m->comm, &c->rank), "Comm_rank", err, errlen)) rc = -1;
    else if (jm_mpi_check(MPI_Comm_size(m->comm, &c->size), "Comm_size", err, errlen)) rc = -1;
    /* the processes sharing this machine's memory: ordered by their global rank */
    else if (jm_mpi_check(MPI_Comm_split_type(m->comm, MPI_COMM_TYPE_SHARED, c->rank, MPI_INFO_NULL, &local), "Comm_split_type", err, errlen)) rc = -1;
    else if (jm_mpi_check(MPI_Comm_rank(local, &c->local_rank), "Comm_rank (local)", err, errlen)) rc = -1;
    else if (jm_mpi_check(MPI_Comm_size(local, &c->local_size), "Comm_size (local)", err, errlen)) rc = -1;
    if (local != MPI_COMM_NULL) MPI_Comm_free(&local);
    c->name = "mpi";
    c->allreduce_f32 = jm_mpi_allreduce_f32;
    c->allreduce_f64 = jm_mpi_allreduce_f64;
    c->allgather = jm_mpi_allgather;
    c->bcast = jm_mpi_bcast;
    c->barrier = jm_mpi_barrier;
    c->post_f32 = jm_mpi_post_f32;
    c->progress = jm_mpi_progress;
    c->wait_all = jm_mpi_wait_all;
    c->abort = jm_mpi_abort;
    c->finalize = jm_mpi_finalize;
    c->impl = m;
    if (rc != MPI_SUCCESS) { jm_mpi_finalize(c); return -1; }
    return 0;
}
