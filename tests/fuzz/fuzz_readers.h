/* fuzz_readers.h — the entry points the reader harnesses (fuzz_safetensors.c,
 * fuzz_data.c, fuzz_table.c) drive, shared with tests/t_fuzz_readers.c, which
 * replays every kept input through them in an ordinary build. Each feeds bytes
 * to a reader exactly as a user's file or an executable's table reaches it: a
 * memfd stands in for the file (opened by path, /proc/self/fd/N), and what the
 * runtime does next with a good read (bind by name, convert dtypes, initialise
 * the state, scale and augment images) runs too. Every input must end in success
 * or an error message: a crash, a sanitizer report or an abort() here is a bug.
 *
 * Input layouts:
 *   safetensors  the file's bytes, read three ways: in memory (jm_st_parse), as a
 *                checkpoint (jm_state_load into the fixture table's globals) and as
 *                an --in file (jm_st_read, then jm_st_find + jm_state_convert per
 *                input of the fixture's program, as `exec` does).
 *   data         byte 0: format (mod 5: IDX, CIFAR-10, CIFAR-100, CSV, AUTO);
 *                byte 1: options (bits 0-1 CSV header: detect/no/yes, bits 2-4 CSV
 *                label column - 1 (0: last), bit 5 CIFAR-100 coarse, bits 6-7 record
 *                limit 0/1/2/5); IDX: bytes 2..5 the images file's length n (u32 LE),
 *                then n bytes of images, the rest the labels file; others: the rest is
 *                the file.
 *   table        the bytes as little-endian int64 words (a trailing partial word is
 *                dropped), parsed by jm_table_parse as an executable does at start. */
#ifndef JM_FUZZ_READERS_H
#define JM_FUZZ_READERS_H
#include "fuzz_fixture.h"
#include "app/data.h"
#include "engine/rt_exec.h"
#include "engine/rt_knobs.h"
#include "engine/rt_state.h"
#include "engine/safetensors.h"
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* A memfd holding the bytes; its path in *path. -1 when none could be made. */
static inline int jm_fz_file(const char *name, const uint8_t *data, size_t size, char *path, size_t pathlen) {
    int fd = memfd_create(name, MFD_CLOEXEC);
    if (fd < 0) return -1;
    size_t done = 0;
    while (done < size) {
        ssize_t w = write(fd, data + done, size - done);
        if (w <= 0) { close(fd); return -1; }
        done += (size_t)w;
    }
    snprintf(path, pathlen, "/proc/self/fd/%d", fd);
    return fd;
}

/* An error message must be one non-empty line naming the file. */
static inline void jm_fz_check_err(const char *err, const char *path) {
    if (!err[0] || strchr(err, '\n') || (path && !strstr(err, path))) {
        fprintf(stderr, "bad error message for %s: '%s'\n", path ? path : "(memory)", err);
        abort();
    }
}

/* ---- safetensors ---------------------------------------------------------------- */

static inline int jm_fz_safetensors(const uint8_t *data, size_t size) {
    static jm_table t;
    static jm_rt rt;
    static int opened;
    char err[1024], path[64];
    if (!opened) {
        jm_fz_fixture(&t);
        if (jm_rt_open(&rt, &t, NULL, 1) != 0) { fprintf(stderr, "fixture: %s\n", rt.err); abort(); }
        opened = 1;
    }
    int good = 0;
    /* in memory */
    jm_st_file f;
    if (jm_st_parse("mem.safetensors", data, size, &f, err, sizeof err) == 0) {
        good = 1;
        double sum = 0;
        for (int i = 0; i < f.n; i++) {
            if (!f.t[i].data || jm_st_find(&f, f.t[i].name) == NULL) abort();
            int64_t n = (int64_t)(f.t[i].nbytes / (jm_st_dtype_size(f.t[i].dtype) ? jm_st_dtype_size(f.t[i].dtype) : 1));
            for (int64_t k = 0; k < n && k < 4096; k++) sum += jm_st_value(&f.t[i], k);
        }
        for (int i = 0; i < f.nmeta; i++) if (jm_st_meta_get(&f, f.meta[i].key) == NULL) abort();
        (void)sum;
        jm_st_free(&f);
    } else {
        jm_fz_check_err(err, "mem.safetensors");
        for (size_t i = 0; i < sizeof f; i++) if (((unsigned char *)&f)[i]) abort();   /* all zero after a failure */
    }
    int fd = jm_fz_file("fuzz.safetensors", data, size, path, sizeof path);
    if (fd < 0) return good;
    /* as a checkpoint (exec --state, train/sample/eval --checkpoint) */
    jm_st_file keep;
    memset(&keep, 0, sizeof keep);
    if (jm_state_load(&rt, path, 0, &keep, err, sizeof err) == 0) {
        const char *h = jm_st_meta_get(&keep, "jemc.graph_hash"), *g = jm_st_meta_get(&keep, "jemc.graph");
        if (h && g && strlen(h) + strlen(g) == (size_t)-1) abort();
        jm_st_free(&keep);
    } else {
        jm_fz_check_err(err, path);
    }
    /* as an --in file of program f */
    if (jm_st_read(path, &f, err, sizeof err) == 0) {
        const jm_tprogram *pr = &t.programs[0];
        for (int i = 0; i < pr->ninputs; i++) {
            const jm_st_tensor *st = jm_st_find(&f, pr->inputs[i].name);
            if (!st) continue;
            size_t bytes = (size_t)jm_rt_desc_numel(&pr->inputs[i]) * jm_rt_dtype_size(pr->inputs[i].dtype);
            void *buf = malloc(bytes ? bytes : 1);
            if (jm_state_convert(path, "input", st, &pr->inputs[i], buf, err, sizeof err) != 0) jm_fz_check_err(err, path);
            free(buf);
        }
        jm_st_free(&f);
    } else {
        jm_fz_check_err(err, path);
    }
    close(fd);
    return good;
}

/* ---- IDX, CIFAR, CSV ---------------------------------------------------------------- */

static inline int jm_fz_data(const uint8_t *data, size_t size) {
    if (size < 2) return 0;
    static const jm_data_format fmts[5] = { JM_DATA_IDX, JM_DATA_CIFAR10, JM_DATA_CIFAR100, JM_DATA_CSV, JM_DATA_AUTO };
    static const int64_t limits[4] = { 0, 1, 2, 5 };
    jm_data_opts o = jm_data_defaults();
    o.format = fmts[data[0] % 5];
    o.csv_header = (data[1] & 3) == 0 ? -1 : (data[1] & 3) == 1 ? 0 : 1;
    o.csv_label_column = ((data[1] >> 2) & 7) - 1;
    o.cifar100_fine = !(data[1] & 32);
    o.limit = limits[data[1] >> 6];
    data += 2;
    size -= 2;
    char path[64], lpath[64], err[1024];
    int fd = -1, lfd = -1;
    if (o.format == JM_DATA_IDX) {
        if (size < 4) return 0;
        size_t n = (size_t)data[0] | (size_t)data[1] << 8 | (size_t)data[2] << 16 | (size_t)data[3] << 24;
        data += 4;
        size -= 4;
        if (n > size) n = size;
        fd = jm_fz_file("images-idx3-ubyte", data, n, path, sizeof path);
        lfd = jm_fz_file("labels-idx1-ubyte", data + n, size - n, lpath, sizeof lpath);
        o.labels = lpath;
    } else {
        fd = jm_fz_file("data", data, size, path, sizeof path);
    }
    jm_dataset ds;
    int good = 0;
    if (fd >= 0 && (o.format != JM_DATA_IDX || lfd >= 0)) {
        if (jm_data_load(path, &o, &ds, err, sizeof err) == 0) {
            good = 1;
            if (ds.n < 1 || ds.c < 1 || ds.h < 1 || ds.w < 1 || ds.classes < 1 || !ds.x || !ds.y) abort();
            for (int64_t i = 0; i < ds.n; i++) if (ds.y[i] < 0 || ds.y[i] >= ds.classes) abort();
            /* what training does next: a labelled subset, shuffled augmented batches */
            int64_t idx[8], b = ds.n < 8 ? ds.n : 8;
            int64_t *sub = malloc(sizeof(int64_t) * (size_t)ds.classes);
            if (sub && jm_data_labelled_subset(&ds, 1, 7, sub, err, sizeof err) < 0) jm_fz_check_err(err, NULL);
            free(sub);
            int64_t *perm = malloc(sizeof(int64_t) * (size_t)ds.n);
            jm_data_shuffle(ds.n, 1, 0, perm);
            for (int64_t i = 0; i < b; i++) idx[i] = perm[i];
            free(perm);
            int64_t chw = (int64_t)ds.c * ds.h * ds.w;
            float *x = malloc(sizeof(float) * (size_t)(b * chw));
            int64_t y[8];
            jm_augment aug = { 2, 1, 0.03f };
            jm_data_batch(&ds, idx, b, &aug, 3, 4, x, y);
            jm_data_batch(&ds, idx, b, NULL, 3, 4, x, y);
            free(x);
            /* scoring it with a model made for another shape (eval's out-of-distribution sets) */
            if (ds.c == 1 && jm_data_conform(&ds, 3, 5, 4, err, sizeof err) != 0) jm_fz_check_err(err, NULL);
            jm_data_free(&ds);
        } else {
            jm_fz_check_err(err, "/proc/self/fd/");
        }
    }
    if (fd >= 0) close(fd);
    if (lfd >= 0) close(lfd);
    return good;
}

/* ---- the program table ---------------------------------------------------------------- */

static inline int jm_fz_table(const uint8_t *data, size_t size) {
    static FILE *devnull;
    if (!devnull) devnull = fopen("/dev/null", "w");
    int64_t nwords = (int64_t)(size / 8);
    int64_t *words = malloc(sizeof(int64_t) * (size_t)(nwords ? nwords : 1));
    memcpy(words, data, (size_t)nwords * 8);
    jm_table t;
    char err[512];
    int good = 0;
    if (jm_table_parse(words, nwords, &t, err, sizeof err) == 0) {
        good = 1;
        /* what the executable's start and `info` do with it */
        for (int p = 0; p < t.nprograms; p++) {
            const jm_tprogram *pr = &t.programs[p];
            if (jm_table_find_program(&t, pr->name) < 0) abort();
            char tb[160];
            for (int i = 0; i < pr->ninputs; i++) jm_desc_str(&pr->inputs[i], tb, sizeof tb);
            for (int i = 0; i < pr->noutputs; i++) jm_desc_str(&pr->outputs[i], tb, sizeof tb);
            for (int s = 0; s < pr->nsteps; s++) {
                const jm_step *st = &pr->steps[s];
                if (st->kind == JM_STEP_KERNEL && (st->op < 0 || st->op >= t.nkernels)) abort();
                if (st->kind == JM_STEP_LIB && strcmp(jm_lib_name(st->op), "?") == 0) abort();
            }
        }
        for (int k = 0; k < t.nkernels; k++) if (!t.kernels[k]) abort();
        /* the state is allocated and every global initialised (small tables only) */
        if (t.state_bytes <= (1 << 22)) {
            jm_rt rt;
            if (jm_rt_open(&rt, &t, NULL, 5) == 0) {
                jm_knob_list(&rt, devnull, " ");
                jm_rt_close(&rt);
            }
        }
        /* a parsed table serialises back to a table that parses */
        int64_t *w2, n2;
        if (jm_table_serialize(&t, &w2, &n2) == 0) {
            jm_table t2;
            if (jm_table_parse(w2, n2, &t2, err, sizeof err) != 0) { fprintf(stderr, "re-parse: %s\n", err); abort(); }
            jm_table_free(&t2);
            free(w2);
        }
        jm_table_free(&t);
    } else {
        jm_fz_check_err(err, NULL);
    }
    free(words);
    return good;
}
#endif
