/* gen_seeds.c — writes the seed corpora of the reader harnesses from real files:
 *   tests/fuzz/corpus-safetensors/  checkpoints written by jemc's own writer
 *                                   (jm_state_save of the fixture table) and --in
 *                                   files (jm_state_write_tensors, jm_st_write), every dtype
 *   tests/fuzz/corpus-table/        program tables the compiler builds for small graphs
 *                                   (the words `jemc compile` embeds), and the fixture's
 *   tests/fuzz/corpus-data/         small IDX, CIFAR-10, CIFAR-100 and CSV files with the
 *                                   option bytes of fuzz_readers.h in front
 * Built against libjemc.a and libjemrt.a (`make fuzz-seeds`); the corpora are kept in git,
 * so this only needs running again when a format changes.
 *   build/tests/fuzz/gen_seeds [GRAPH...] */
#include "elab.h"
#include "grad.h"
#include "simplify.h"
#include "lower.h"
#include "plan.h"
#include "fuzz_fixture.h"
#include "engine/rt_exec.h"
#include "engine/rt_state.h"
#include "engine/safetensors.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const char *dir_st = "tests/fuzz/corpus-safetensors", *dir_table = "tests/fuzz/corpus-table",
                  *dir_data = "tests/fuzz/corpus-data";

static void put(const char *dir, const char *name, const void *a, size_t na, const void *b, size_t nb) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(a, 1, na, f) != na || (nb && fwrite(b, 1, nb, f) != nb) || fclose(f) != 0) {
        fprintf(stderr, "gen_seeds: cannot write %s\n", path);
        exit(1);
    }
}

static void die(const char *what, const char *err) {
    fprintf(stderr, "gen_seeds: %s: %s\n", what, err);
    exit(1);
}

/* A safetensors file written by jm_st_write, moved into the corpus. */
static void st_file(const char *name, jm_st_tensor *t, int n, jm_st_meta *meta, int nmeta) {
    char path[512], err[512];
    snprintf(path, sizeof path, "%s/%s", dir_st, name);
    jm_st_file f = { n, t, nmeta, meta };
    if (jm_st_write(path, &f, err, sizeof err) != 0) die(name, err);
}

static void seeds_safetensors(void) {
    jm_table t;
    jm_fz_fixture(&t);
    jm_rt rt;
    char err[1024], path[512];
    if (jm_rt_open(&rt, &t, NULL, 42) != 0) die("fixture", rt.err);
    /* a checkpoint, as train writes it */
    const char *extra[] = { "jemc.step", "100", "jemc.epoch", "2" };
    snprintf(path, sizeof path, "%s/checkpoint.safetensors", dir_st);
    if (jm_state_save(&rt, path, extra, 2, err, sizeof err) != 0) die(path, err);
    /* parameters only (state keeps its values), as exec --state-out of another build might */
    jm_tdesc d[3];
    void *data[3];
    for (int i = 0; i < 3; i++) { d[i] = t.globals[i].t; data[i] = (void *)jm_rt_global_read(&rt, i); }
    snprintf(path, sizeof path, "%s/params_only.safetensors", dir_st);
    if (jm_state_write_tensors(path, d, data, 3, NULL, 0, err, sizeof err) != 0) die(path, err);
    /* an --in file for program f: x f32[2,3], y i64[2], keep bool[3], t f64[], idx i32[1,4] */
    const jm_tprogram *pr = &t.programs[0];
    float x[6] = { 0.5f, -1, 2, 3.25f, 0, 1e-3f };
    int64_t y[2] = { 3, 7 };
    unsigned char keep[3] = { 1, 0, 1 };
    double tt = 0.25;
    int32_t idx[4] = { 0, 1, 2, 3 };
    void *in[5] = { x, y, keep, &tt, idx };
    const char *meta[] = { "format", "pt" };
    snprintf(path, sizeof path, "%s/inputs.safetensors", dir_st);
    if (jm_state_write_tensors(path, pr->inputs, in, 5, meta, 1, err, sizeof err) != 0) die(path, err);
    /* the inputs in other dtypes (converted: floats from any float, ints from any int) */
    double x64[6] = { 0.5, -1, 2, 3.25, 0, 1e-3 };
    int8_t y8[2] = { 3, -7 };
    uint8_t keepu8[3] = { 1, 0, 1 };
    float tf = 0.25f;
    uint16_t idx16[4] = { 0, 1, 2, 65535 };
    jm_st_tensor conv[5] = {
        { "x", JM_ST_F64, 2, { 2, 3 }, sizeof x64, x64 }, { "y", JM_ST_I8, 1, { 2 }, sizeof y8, y8 },
        { "keep", JM_ST_U8, 1, { 3 }, sizeof keepu8, keepu8 }, { "t", JM_ST_F32, 0, { 0 }, sizeof tf, &tf },
        { "idx", JM_ST_U16, 2, { 1, 4 }, sizeof idx16, idx16 },
    };
    st_file("inputs_converted.safetensors", conv, 5, NULL, 0);
    /* every dtype once (most do not convert to the fixture's types: an error each) */
    uint8_t raw[8 * 4];
    for (int i = 0; i < (int)sizeof raw; i++) raw[i] = (uint8_t)(i * 37 + 1);
    static const char *dnames[JM_ST_NDTYPES] = { "f32", "f64", "i32", "i64", "u8", "i8", "i16", "u16", "f16", "bf16", "bool", "u32", "u64" };
    for (int k = 0; k < JM_ST_NDTYPES; k++) {
        jm_st_tensor one = { "x", (jm_st_dtype)k, 2, { 2, 2 }, 4 * jm_st_dtype_size((jm_st_dtype)k), raw };
        if (k == JM_ST_BOOL) { static uint8_t b[4] = { 0, 1, 1, 0 }; one.data = b; }
        char name[64];
        snprintf(name, sizeof name, "dtype_%s.safetensors", dnames[k]);
        st_file(name, &one, 1, NULL, 0);
    }
    /* fc.weight with a wrong shape, a name the graph lacks, metadata only, zero-sized tensors */
    float w[12] = { 0 };
    jm_st_tensor wrong = { "fc.weight", JM_ST_F32, 2, { 4, 3 }, sizeof w, w };
    st_file("wrong_shape.safetensors", &wrong, 1, NULL, 0);
    jm_st_tensor unknown = { "fc.weigth", JM_ST_F32, 2, { 3, 4 }, sizeof w, w };
    st_file("unknown_name.safetensors", &unknown, 1, NULL, 0);
    jm_st_meta m[3] = { { "jemc.rng_call", "12" }, { "jemc.rng_seed", "18446744073709551615" }, { "jemc.graph", "x.graph" } };
    st_file("meta_only.safetensors", NULL, 0, m, 3);
    jm_st_tensor empty[2] = { { "e0", JM_ST_F32, 2, { 0, 5 }, 0, w }, { "e1", JM_ST_I64, 3, { 1, 0, 2 }, 0, w } };
    st_file("zero_sized.safetensors", empty, 2, NULL, 0);
    jm_st_tensor deep = { "r8", JM_ST_U8, 8, { 1, 1, 1, 1, 1, 1, 2, 2 }, 4, raw };
    st_file("rank8.safetensors", &deep, 1, NULL, 0);
    jm_rt_close(&rt);
}

static void seeds_table(int ngraphs, char **graphs) {
    jm_table t;
    jm_fz_fixture(&t);
    int64_t *words, nwords;
    if (jm_table_serialize(&t, &words, &nwords) != 0) die("fixture", "out of memory");
    put(dir_table, "fixture.table", words, (size_t)nwords * 8, NULL, 0);
    free(words);
    FILE *null = fopen("/dev/null", "w");
    for (int i = 0; i < ngraphs; i++) {
        jm_arena arena = { 0 };
        jm_diags d;
        jm_diag_init(&d, &arena, stderr);
        jm_module *m = jm_frontend_load(&d, graphs[i], NULL, 0);
        jm_plan plan;
        if (!m || jm_simplify(m, &d, 0) || jm_autodiff(m, &d) || jm_simplify(m, &d, 1) || jm_lower(m, &d) || jm_simplify(m, &d, 1)
            || jm_plan_build(m, &plan, &d))
            die(graphs[i], "does not compile");
        plan.table.graph = graphs[i];
        plan.table.cpu = "x86-64-v3 (avx2 fma avx)";
        plan.table.graph_hash = 0x0123456789abcdefull + (uint64_t)i;
        if (jm_table_serialize(&plan.table, &words, &nwords) != 0) die(graphs[i], "out of memory");
        const char *base = strrchr(graphs[i], '/');
        char name[256];
        snprintf(name, sizeof name, "%s.table", base ? base + 1 : graphs[i]);
        put(dir_table, name, words, (size_t)nwords * 8, NULL, 0);
        free(words);
        jm_arena_free(&arena);
    }
    fclose(null);
}

static void be32(uint8_t *p, uint32_t v) { p[0] = (uint8_t)(v >> 24); p[1] = (uint8_t)(v >> 16); p[2] = (uint8_t)(v >> 8); p[3] = (uint8_t)v; }

static void seeds_data(void) {
    /* IDX: 3 images of 4x5, labels 0..2; prefix: format 0, options, images length (LE) */
    uint8_t img[16 + 3 * 20], lab[8 + 3], buf[8192];
    be32(img, 0x803); be32(img + 4, 3); be32(img + 8, 4); be32(img + 12, 5);
    for (int i = 0; i < 60; i++) img[16 + i] = (uint8_t)(i * 17);
    be32(lab, 0x801); be32(lab + 4, 3);
    lab[8] = 0; lab[9] = 2; lab[10] = 11;
    for (int opt = 0; opt < 2; opt++) {
        uint8_t pre[6] = { 0, (uint8_t)(opt ? 0x40 : 0), sizeof img, 0, 0, 0 };
        memcpy(buf, pre, 6);
        memcpy(buf + 6, img, sizeof img);
        char name[64];
        snprintf(name, sizeof name, "idx%s", opt ? "_limit1" : "");
        put(dir_data, name, buf, 6 + sizeof img, lab, sizeof lab);
    }
    /* AUTO on an IDX images file: the labels path is derived and absent (an error) */
    buf[0] = 4; buf[1] = 0;
    put(dir_data, "auto_idx", buf, 2, img, sizeof img);
    /* CIFAR-10: 2 records; CIFAR-100: 2 records (coarse and fine) */
    static uint8_t rec[2 * 3074 + 2];
    rec[0] = 1; rec[1] = 9;
    for (int i = 0; i < 2 * 3074; i++) rec[2 + i] = (uint8_t)(i * 7);
    rec[2] = 1;
    rec[2 + 3073] = 9;
    put(dir_data, "cifar10", (uint8_t[]){ 1, 0 }, 2, rec + 2, 2 * 3073);
    put(dir_data, "cifar10_limit1", (uint8_t[]){ 1, 0x40 }, 2, rec + 2, 2 * 3073);
    rec[2] = 3; rec[3] = 42; rec[2 + 3074] = 19; rec[2 + 3075] = 99;
    put(dir_data, "cifar100_fine", (uint8_t[]){ 2, 0 }, 2, rec + 2, 2 * 3074);
    put(dir_data, "cifar100_coarse", (uint8_t[]){ 2, 0x20 }, 2, rec + 2, 2 * 3074);
    put(dir_data, "auto_cifar", (uint8_t[]){ 4, 0 }, 2, rec + 2, 2 * 3073);
    /* CSV: header detected, label last; no header, label first; quoted-ish and odd numbers */
    const char *csv1 = "a,b,c,label\n0.5,1,-2,0\n1e3,2.5,0,1\n-0,3,4,2\n";
    put(dir_data, "csv_header", (uint8_t[]){ 3, 0 }, 2, csv1, strlen(csv1));
    const char *csv2 = "1,0.25,0.5\r\n0,1.5,-1.5\r\n\r\n2,nan,inf\r\n";
    put(dir_data, "csv_label_first", (uint8_t[]){ 3, 1 | (1 << 2) }, 2, csv2, strlen(csv2));
    const char *csv3 = "x,y\n1,0\n2,1\n3,0\n4,1\n5,0\n6,1\n";
    put(dir_data, "csv_limit2_header", (uint8_t[]){ 3, 2 | 0x80 }, 2, csv3, strlen(csv3));
    const char *csv4 = "  7 , 1\n8,\t3\n";
    put(dir_data, "csv_spaces", (uint8_t[]){ 3, 1 }, 2, csv4, strlen(csv4));
}

int main(int argc, char **argv) {
    mkdir(dir_st, 0777);
    mkdir(dir_table, 0777);
    mkdir(dir_data, 0777);
    seeds_safetensors();
    seeds_table(argc - 1, argv + 1);
    seeds_data();
    return 0;
}
