/* fuzz_fixture.h — what the reader harnesses (tests/fuzz/fuzz_*.c), their seed
 * generator (gen_seeds.c) and the regression replay (tests/t_fuzz_readers.c)
 * share: a small hand-made program table whose globals and program inputs have
 * every element type a table knows, so a checkpoint or an --in file read by a
 * harness binds by name and converts dtypes as an executable's would. */
#ifndef JM_FUZZ_FIXTURE_H
#define JM_FUZZ_FIXTURE_H
#include "engine/rt_table.h"
#include <string.h>

#define JM_FZ_NGLOBALS 7
#define JM_FZ_NINPUTS 5

/* Fills *t (static storage: the table is the same for every call). */
static inline void jm_fz_fixture(jm_table *t) {
    static jm_tglobal g[JM_FZ_NGLOBALS];
    static jm_tdesc in[JM_FZ_NINPUTS], out[1];
    static jm_tprogram pr[1];
    static const struct { const char *name; int dt, rank; int64_t d0, d1; int kind, init; double a, b; } G[JM_FZ_NGLOBALS] = {
        { "fc.weight", JM_DT_F32, 2, 3, 4, JM_GKIND_PARAM, JM_GINIT_UNIFORM, -1, 1 },
        { "fc.bias", JM_DT_F64, 1, 4, 0, JM_GKIND_PARAM, JM_GINIT_CONST, 0.5, 0 },
        { "emb", JM_DT_I32, 2, 2, 2, JM_GKIND_PARAM, JM_GINIT_ZEROS, 0, 0 },
        { "step", JM_DT_I64, 0, 0, 0, JM_GKIND_STATE, JM_GINIT_ZEROS, 0, 0 },
        { "mask", JM_DT_BOOL, 1, 5, 0, JM_GKIND_STATE, JM_GINIT_CONST, 1, 0 },
        { "buffer.replay", JM_DT_F32, 3, 2, 1, JM_GKIND_STATE, JM_GINIT_NORMAL, 0, 1 },
        { "config.lr", JM_DT_F32, 0, 0, 0, JM_GKIND_CONFIG, JM_GINIT_CONST, 0.1, 0 },
    };
    static const int64_t d2_replay = 3;     /* buffer.replay is [2,1,3] */
    int64_t off = 0;
    for (int i = 0; i < JM_FZ_NGLOBALS; i++) {
        jm_tglobal *x = &g[i];
        memset(x, 0, sizeof *x);
        x->t.name = G[i].name;
        x->t.dtype = G[i].dt;
        x->t.rank = G[i].rank;
        x->t.dim[0] = G[i].d0;
        x->t.dim[1] = G[i].d1;
        if (G[i].rank == 3) x->t.dim[2] = d2_replay;
        x->t.ref = jm_ref_make(JM_REGION_STATE, off);
        x->kind = G[i].kind;
        x->init = G[i].init;
        x->a = G[i].a;
        x->b = G[i].b;
        int64_t n = 1;
        for (int k = 0; k < x->t.rank; k++) n *= x->t.dim[k];
        off += (n * (int64_t)jm_rt_dtype_size(x->t.dtype) + 63) / 64 * 64;
    }
    static const struct { const char *name; int dt, rank; int64_t d0, d1; } I[JM_FZ_NINPUTS] = {
        { "x", JM_DT_F32, 2, 2, 3 }, { "y", JM_DT_I64, 1, 2, 0 }, { "keep", JM_DT_BOOL, 1, 3, 0 },
        { "t", JM_DT_F64, 0, 0, 0 }, { "idx", JM_DT_I32, 2, 1, 4 },
    };
    int64_t soff = 0;
    for (int i = 0; i < JM_FZ_NINPUTS; i++) {
        memset(&in[i], 0, sizeof in[i]);
        in[i].name = I[i].name;
        in[i].dtype = I[i].dt;
        in[i].rank = I[i].rank;
        in[i].dim[0] = I[i].d0;
        in[i].dim[1] = I[i].d1;
        in[i].ref = jm_ref_make(JM_REGION_SCRATCH, soff);
        soff += 64;
    }
    memset(out, 0, sizeof out);
    out[0] = in[0];
    out[0].name = "out";
    memset(pr, 0, sizeof pr);
    pr[0].name = "f";
    pr[0].inputs = in;
    pr[0].ninputs = JM_FZ_NINPUTS;
    pr[0].outputs = out;
    pr[0].noutputs = 1;
    pr[0].scratch_bytes = soff;
    memset(t, 0, sizeof *t);
    t->graph_hash = 0x1234abcd5678ef90ull;
    t->graph = "fixture.graph";
    t->cpu = "x86-64";
    t->state_bytes = off;
    t->globals = g;
    t->nglobals = JM_FZ_NGLOBALS;
    t->programs = pr;
    t->nprograms = 1;
}
#endif
