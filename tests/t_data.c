/* t_data.c — the data loaders (runtime/app/data.c): exact values from small synthetic IDX,
 * CIFAR-10/100 and CSV files, every malformed-input message (naming the file and the
 * record or line:column), deterministic shuffling, the labelled subset, augmentation,
 * and the real datasets in ../shared/data when present. Files go to a fresh mkdtemp
 * directory. */
#include "app/data.h"
#include "tap.h"
#include <omp.h>
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

static char g_dir[64];

static const char *P(const char *name) {
    static char buf[8][512];
    static int k;
    char *b = buf[k++ % 8];
    snprintf(b, 512, "%s/%s", g_dir, name);
    return b;
}

static void spit(const char *path, const void *buf, size_t len) {
    FILE *fp = fopen(path, "wb");
    if (!fp || fwrite(buf, 1, len, fp) != len) { perror(path); exit(2); }
    fclose(fp);
}

static void put32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)(v >> 24); p[1] = (uint8_t)(v >> 16); p[2] = (uint8_t)(v >> 8); p[3] = (uint8_t)v;
}

/* pixel k of image i in the synthetic IDX files */
static uint8_t idx_pix(int i, int k) { return (uint8_t)(i * 37 + k * 11); }

/* An IDX images file: the header says n_hdr records of rows x cols, the body holds n_body
   records (pixels idx_pix) and `extra` more bytes. */
static void write_idx_images(const char *path, uint32_t magic, uint32_t n_hdr, uint32_t rows, uint32_t cols, int n_body, int extra) {
    size_t rec = (size_t)rows * cols, len = 16 + (size_t)n_body * rec + (size_t)extra;
    uint8_t *b = calloc(len, 1);
    put32(b, magic); put32(b + 4, n_hdr); put32(b + 8, rows); put32(b + 12, cols);
    for (int i = 0; i < n_body; i++)
        for (size_t k = 0; k < rec; k++) b[16 + i * rec + k] = idx_pix(i, (int)k);
    spit(path, b, len);
    free(b);
}

static void write_idx_labels(const char *path, uint32_t magic, uint32_t n_hdr, const uint8_t *labels, int n_body) {
    uint8_t b[8 + 256];
    put32(b, magic); put32(b + 4, n_hdr);
    memcpy(b + 8, labels, (size_t)n_body);
    spit(path, b, 8 + (size_t)n_body);
}

static int has(const char *s, const char *w) { return !w || strstr(s, w) != NULL; }

/* jm_data_load must fail, leave ds zeroed, and say all of w1..w3. */
static void bad_load(const char *label, const char *path, const jm_data_opts *o, const char *w1, const char *w2, const char *w3) {
    jm_dataset ds;
    char err[1024] = "";
    memset(&ds, 0x5a, sizeof ds);
    int rc = jm_data_load(path, o, &ds, err, sizeof err);
    int zeroed = ds.n == 0 && ds.x == NULL && ds.y == NULL;
    if (!ok(rc == -1 && zeroed && has(err, w1) && has(err, w2) && has(err, w3), "error: %s", label))
        tap_diag("rc %d, zeroed %d, message: %s\nexpected: %s | %s | %s", rc, zeroed, err, w1, w2 ? w2 : "", w3 ? w3 : "");
    jm_data_free(&ds);
}

static float scaled(int v) { return (float)((double)v / 255.0 * 2.0 - 1.0); }

static int load(const char *path, const jm_data_opts *o, jm_dataset *ds) {
    char err[1024] = "";
    int rc = jm_data_load(path, o, ds, err, sizeof err);
    if (rc) tap_diag("load %s: %s", path, err);
    return rc;
}

/* ------------------------------------------------------------------ IDX */

static void test_idx(void) {
    static const uint8_t lab[4] = {3, 0, 9, 1};
    write_idx_images(P("train-images-idx3-ubyte"), 0x803, 4, 2, 3, 4, 0);
    write_idx_labels(P("train-labels-idx1-ubyte"), 0x801, 4, lab, 4);
    jm_dataset ds;
    if (!ok(load(P("train-images-idx3-ubyte"), NULL, &ds) == 0, "IDX: loads, labels derived from the name")) return;
    is_int(ds.n, 4, "IDX: n");
    ok(ds.c == 1 && ds.h == 2 && ds.w == 3, "IDX: shape 1x2x3");
    is_int(ds.classes, 10, "IDX: 10 classes when the labels stay below 10");
    is_int(ds.format, JM_DATA_IDX, "IDX: format detected by magic");
    ok(ds.pad_value == -1.0f, "IDX: pad value -1");
    int same = 1;
    for (int i = 0; i < 4; i++)
        for (int k = 0; k < 6; k++) same &= ds.x[i * 6 + k] == scaled(idx_pix(i, k));
    ok(same, "IDX: every pixel is x/255*2-1, row-major");
    ok(ds.y[0] == 3 && ds.y[1] == 0 && ds.y[2] == 9 && ds.y[3] == 1, "IDX: labels in order");
    ok(strstr(ds.path, "train-images-idx3-ubyte") != NULL, "IDX: path recorded");
    jm_data_free(&ds);

    /* 0 -> -1 and 255 -> 1 exactly */
    uint8_t b[16 + 2] = {0};
    put32(b, 0x803); put32(b + 4, 1); put32(b + 8, 1); put32(b + 12, 2);
    b[16] = 0; b[17] = 255;
    spit(P("ends-images-idx3-ubyte"), b, sizeof b);
    static const uint8_t big[1] = {12};
    write_idx_labels(P("ends-labels-idx1-ubyte"), 0x801, 1, big, 1);
    if (load(P("ends-images-idx3-ubyte"), NULL, &ds) == 0) {
        ok(ds.x[0] == -1.0f && ds.x[1] == 1.0f, "IDX: pixel 0 -> -1.0 and 255 -> 1.0 exactly");
        is_int(ds.classes, 13, "IDX: classes = max label + 1 when a label is >= 10");
        jm_data_free(&ds);
    } else {
        ok(0, "IDX: 0/255 file loads");
    }

    /* explicit labels file and a record limit */
    write_idx_labels(P("my.labels"), 0x801, 4, lab, 4);
    jm_data_opts o = jm_data_defaults();
    o.labels = P("my.labels");
    o.limit = 2;
    o.format = JM_DATA_IDX;
    if (ok(load(P("train-images-idx3-ubyte"), &o, &ds) == 0, "IDX: explicit labels file and limit")) {
        ok(ds.n == 2 && ds.y[1] == 0 && ds.x[6] == scaled(idx_pix(1, 0)), "IDX: limit 2 reads the first 2 records");
        jm_data_free(&ds);
    }
}

/* A 4-dimensional IDX images file (magic 0x00000804: n, c, rows, cols), pixels idx_pix over
   the whole c*rows*cols record; `extra` more bytes at the end. */
static void write_idx4_images(const char *path, uint32_t n_hdr, uint32_t c, uint32_t rows, uint32_t cols, int n_body, int extra) {
    size_t rec = (size_t)c * rows * cols, len = 20 + (size_t)n_body * rec + (size_t)extra;
    uint8_t *b = calloc(len, 1);
    put32(b, 0x804); put32(b + 4, n_hdr); put32(b + 8, c); put32(b + 12, rows); put32(b + 16, cols);
    for (int i = 0; i < n_body; i++)
        for (size_t k = 0; k < rec; k++) b[20 + i * rec + k] = idx_pix(i, (int)k);
    spit(path, b, len);
    free(b);
}

/* IDX labels of type int32 (magic 0x00000C01), big-endian. */
static void write_idx_labels32(const char *path, uint32_t n_hdr, const int32_t *labels, int n_body) {
    uint8_t b[8 + 4 * 64];
    put32(b, 0xC01); put32(b + 4, n_hdr);
    for (int i = 0; i < n_body; i++) put32(b + 8 + 4 * i, (uint32_t)labels[i]);
    spit(path, b, 8 + 4 * (size_t)n_body);
}

/* StackMNIST's layout: 3-channel IDX images with int32 labels up to 999 (mode ids), and
   the mixes (4-dim images with u8 labels, 3-dim images with int32 labels); then every
   malformed variant with its message. */
static void test_idx4(void) {
    const int32_t lab[3] = {999, 0, 512};
    write_idx4_images(P("s-images-idx4-ubyte"), 3, 3, 2, 2, 3, 0);
    write_idx_labels32(P("s-labels-idx1-ubyte"), 3, lab, 3);
    jm_dataset ds;
    if (ok(load(P("s-images-idx4-ubyte"), NULL, &ds) == 0, "IDX4: loads, labels derived (images-idx4 -> labels-idx1)")) {
        ok(ds.n == 3 && ds.c == 3 && ds.h == 2 && ds.w == 2, "IDX4: 3 records of 3x2x2 (%lld of %dx%dx%d)", (long long)ds.n, ds.c, ds.h, ds.w);
        int same = 1;
        for (int i = 0; i < 3; i++)
            for (int k = 0; k < 12; k++) same &= ds.x[i * 12 + k] == scaled(idx_pix(i, k));
        ok(same, "IDX4: every pixel x/255*2-1, the file's c, h, w order kept (CHW)");
        ok(ds.y[0] == 999 && ds.y[1] == 0 && ds.y[2] == 512, "IDX int32 labels: 999, 0, 512 read big-endian");
        is_int(ds.classes, 1000, "IDX int32 labels: classes = max label + 1 = 1000");
        ok(ds.format == JM_DATA_IDX && ds.pad_value == -1.0f, "IDX4: format IDX (by magic), pad -1");
        jm_data_free(&ds);
    }
    jm_data_opts o = jm_data_defaults();
    o.limit = 2;
    if (ok(load(P("s-images-idx4-ubyte"), &o, &ds) == 0, "IDX4 with limit 2")) {
        ok(ds.n == 2 && ds.y[1] == 0 && ds.x[12] == scaled(idx_pix(1, 0)), "IDX4: limit 2 reads the first two records");
        jm_data_free(&ds);
    }
    /* 4-dim images with u8 labels */
    static const uint8_t lab8[3] = {7, 1, 2};
    write_idx_labels(P("u8.labels"), 0x801, 3, lab8, 3);
    o = jm_data_defaults();
    o.labels = P("u8.labels");
    if (ok(load(P("s-images-idx4-ubyte"), &o, &ds) == 0, "IDX4 images with u8 labels")) {
        ok(ds.y[0] == 7 && ds.y[2] == 2 && ds.classes == 10, "IDX4 + u8 labels: labels 7 1 2, 10 classes");
        jm_data_free(&ds);
    }
    /* 3-dim images with int32 labels */
    const int32_t lab3[4] = {3, 11, 0, 2};
    write_idx_images(P("m-images-idx3-ubyte"), 0x803, 4, 2, 3, 4, 0);
    write_idx_labels32(P("m-labels-idx1-ubyte"), 4, lab3, 4);
    if (ok(load(P("m-images-idx3-ubyte"), NULL, &ds) == 0, "IDX3 images with int32 labels")) {
        ok(ds.c == 1 && ds.y[1] == 11 && ds.classes == 12, "IDX3 + int32 labels: one channel, label 11, 12 classes");
        jm_data_free(&ds);
    }
    /* a directory with train-images-idx4-ubyte */
    mkdir(P("stack"), 0700);
    write_idx4_images(P("stack/train-images-idx4-ubyte"), 3, 3, 2, 2, 3, 0);
    write_idx_labels32(P("stack/train-labels-idx1-ubyte"), 3, lab, 3);
    char out[512];
    ok(jm_data_resolve(P("stack"), "train", out, sizeof out) == 0 && has(out, "train-images-idx4-ubyte"),
       "resolve: a directory's train-images-idx4-ubyte");
    if (ok(load(P("stack"), NULL, &ds) == 0, "IDX4: a directory loads")) {
        ok(ds.c == 3 && ds.n == 3, "IDX4 directory: 3 records of 3 channels");
        jm_data_free(&ds);
    }

    /* malformed */
    write_idx4_images(P("t4-images-idx4-ubyte"), 3, 3, 2, 2, 2, 5);
    write_idx_labels32(P("t4-labels-idx1-ubyte"), 3, lab, 3);
    bad_load("IDX4 truncated", P("t4-images-idx4-ubyte"), NULL, "t4-images-idx4-ubyte", "truncated at record 2 of 3", NULL);
    write_idx4_images(P("z4-images-idx4-ubyte"), 1, 0, 2, 2, 0, 0);
    bad_load("IDX4 zero channels", P("z4-images-idx4-ubyte"), NULL, "z4-images-idx4-ubyte", "absurd image size 0x2x2", NULL);
    write_idx4_images(P("w4-images-idx4-ubyte"), 1, 0xFFFFFFFFu, 0xFFFFFFFFu, 0xFFFFFFFFu, 0, 0);
    bad_load("IDX4 dimensions whose product overflows", P("w4-images-idx4-ubyte"), NULL, "w4-images-idx4-ubyte", "absurd image size", NULL);
    write_idx4_images(P("b4-images-idx4-ubyte"), 1, 256, 256, 512, 0, 0);
    bad_load("IDX4 more than 2^24 values a record", P("b4-images-idx4-ubyte"), NULL, "b4-images-idx4-ubyte", "absurd image size 256x256x512", NULL);
    spit(P("h4-images-idx4-ubyte"), "\0\0\x08\x04\0\0\0\1\0\0\0\3\0\0\0\2", 16);
    o = jm_data_defaults();
    o.format = JM_DATA_IDX;
    bad_load("IDX4 header cut short", P("h4-images-idx4-ubyte"), &o, "h4-images-idx4-ubyte", "too short for an IDX images header (20 bytes)", NULL);
    const int32_t neg[3] = {1, -1, 2};
    write_idx4_images(P("n4-images-idx4-ubyte"), 3, 3, 2, 2, 3, 0);
    write_idx_labels32(P("n4-labels-idx1-ubyte"), 3, neg, 3);
    bad_load("int32 labels: a negative label", P("n4-images-idx4-ubyte"), NULL, "n4-labels-idx1-ubyte", "record 1: label -1, expected 0..65535", NULL);
    const int32_t huge[3] = {1, 2, 70000};
    write_idx_labels32(P("n4-labels-idx1-ubyte"), 3, huge, 3);
    bad_load("int32 labels: a label above 65535", P("n4-images-idx4-ubyte"), NULL, "n4-labels-idx1-ubyte", "record 2: label 70000", NULL);
    write_idx_labels32(P("n4-labels-idx1-ubyte"), 3, lab, 2);
    bad_load("int32 labels: truncated", P("n4-images-idx4-ubyte"), NULL, "n4-labels-idx1-ubyte", "truncated at record 2 of 3", NULL);
    write_idx_labels32(P("n4-labels-idx1-ubyte"), 2, lab, 2);
    bad_load("int32 labels: count mismatch", P("n4-images-idx4-ubyte"), NULL, "has 3 images", "n4-labels-idx1-ubyte has 2 labels", NULL);
    write_idx_labels32(P("lab32.idx"), 3, lab, 3);
    bad_load("an int32 labels file given as images", P("lab32.idx"), NULL, "lab32.idx", "IDX labels file", "pass the images file");
}

static void test_idx_errors(void) {
    static const uint8_t lab[4] = {1, 2, 3, 4};
    jm_data_opts o = jm_data_defaults();
    bad_load("missing file", P("nope-images-idx3-ubyte"), NULL, "nope-images-idx3-ubyte", "cannot open", "No such file");

    write_idx_images(P("magic-images-idx3-ubyte"), 0x12345678, 4, 2, 3, 4, 0);
    o.format = JM_DATA_IDX;
    bad_load("wrong magic", P("magic-images-idx3-ubyte"), &o, "magic-images-idx3-ubyte",
             "not an IDX images file (magic 0x12345678, expected 0x00000803 or 0x00000804)", NULL);
    bad_load("wrong magic, format auto", P("magic-images-idx3-ubyte"), NULL, "magic-images-idx3-ubyte",
             "not an IDX images file (magic 0x12345678, expected 0x00000803 or 0x00000804)", "unknown format");
    write_idx_labels(P("lab-labels-idx1-ubyte"), 0x801, 4, lab, 4);
    bad_load("a labels file given as images", P("lab-labels-idx1-ubyte"), NULL, "lab-labels-idx1-ubyte", "IDX labels file",
             "pass the images file");

    write_idx_images(P("trunc-images-idx3-ubyte"), 0x803, 5, 2, 3, 3, 4);
    write_idx_labels(P("trunc-labels-idx1-ubyte"), 0x801, 5, lab, 4);
    bad_load("truncated images", P("trunc-images-idx3-ubyte"), NULL, "trunc-images-idx3-ubyte", "truncated at record 3 of 5", NULL);

    /* a corrupt header that declares 2^32-1 huge records must be refused before any allocation */
    write_idx_images(P("huge-images-idx3-ubyte"), 0x803, 0xFFFFFFFFu, 64, 64, 0, 0);
    bad_load("corrupt count: refused by size, no huge malloc", P("huge-images-idx3-ubyte"), NULL, "huge-images-idx3-ubyte",
             "truncated at record 0 of 4294967295", NULL);

    write_idx_images(P("tail-images-idx3-ubyte"), 0x803, 4, 2, 3, 4, 7);
    write_idx_labels(P("tail-labels-idx1-ubyte"), 0x801, 4, lab, 4);
    bad_load("trailing garbage", P("tail-images-idx3-ubyte"), NULL, "tail-images-idx3-ubyte", "7 bytes after the last record",
             "record 3");

    write_idx_images(P("zero-images-idx3-ubyte"), 0x803, 0, 2, 3, 0, 0);
    bad_load("zero records", P("zero-images-idx3-ubyte"), NULL, "zero-images-idx3-ubyte", "no records", NULL);

    write_idx_images(P("dims-images-idx3-ubyte"), 0x803, 1, 65536, 65536, 0, 0);
    bad_load("absurd dimensions", P("dims-images-idx3-ubyte"), NULL, "dims-images-idx3-ubyte", "absurd image size 65536x65536",
             NULL);

    write_idx_images(P("wide-images-idx3-ubyte"), 0x803, 1, 0xFFFFFFFFu, 0xFFFFFFFFu, 0, 0);
    bad_load("dimensions whose product overflows", P("wide-images-idx3-ubyte"), NULL, "wide-images-idx3-ubyte",
             "absurd image size 4294967295x4294967295", NULL);
    spit(P("short-images-idx3-ubyte"), "\0\0\x08\x03\0\0", 6);
    o.format = JM_DATA_IDX;
    bad_load("file shorter than the header", P("short-images-idx3-ubyte"), &o, "short-images-idx3-ubyte", "too short", NULL);

    write_idx_images(P("alone-images-idx3-ubyte"), 0x803, 4, 2, 3, 4, 0);
    bad_load("derived labels file missing", P("alone-images-idx3-ubyte"), NULL, "alone-images-idx3-ubyte",
             "alone-labels-idx1-ubyte does not exist", "pass the labels file");

    write_idx_images(P("digits.idx"), 0x803, 4, 2, 3, 4, 0);
    bad_load("labels name not derivable", P("digits.idx"), NULL, "digits.idx", "cannot derive the labels file",
             "pass the labels file");

    write_idx_images(P("mism-images-idx3-ubyte"), 0x803, 4, 2, 3, 4, 0);
    write_idx_labels(P("mism-labels-idx1-ubyte"), 0x801, 3, lab, 3);
    bad_load("image/label count mismatch", P("mism-images-idx3-ubyte"), NULL, "has 4 images",
             "mism-labels-idx1-ubyte has 3 labels", "mism-images-idx3-ubyte");

    write_idx_images(P("lmag-images-idx3-ubyte"), 0x803, 4, 2, 3, 4, 0);
    write_idx_labels(P("lmag-labels-idx1-ubyte"), 0x803, 4, lab, 4);
    bad_load("labels: wrong magic", P("lmag-images-idx3-ubyte"), NULL, "lmag-labels-idx1-ubyte",
             "not an IDX labels file (magic 0x00000803, expected 0x00000801 or 0x00000c01)", NULL);

    write_idx_images(P("ltr-images-idx3-ubyte"), 0x803, 4, 2, 3, 4, 0);
    write_idx_labels(P("ltr-labels-idx1-ubyte"), 0x801, 4, lab, 2);
    bad_load("labels: truncated", P("ltr-images-idx3-ubyte"), NULL, "ltr-labels-idx1-ubyte", "truncated at record 2 of 4", NULL);

    mkdir(P("emptydir"), 0700);
    bad_load("directory without data files", P("emptydir"), NULL, "emptydir", "train-images-idx3-ubyte", "pass the data file");
    o = jm_data_defaults();
    o.limit = -3;
    bad_load("negative limit", P("train-images-idx3-ubyte"), &o, "limit", "-3", NULL);
}

/* ------------------------------------------------------------------ CIFAR */

static uint8_t cifar_pix(int i, int plane, int k) { return (uint8_t)(i * 7 + plane * 85 + k * 3); }

/* n CIFAR records (lab bytes of label each, labels from `labels`) and `extra` bytes. */
static void write_cifar(const char *path, int n, int nlab, const uint8_t *labels, int extra) {
    size_t rec = (size_t)nlab + 3072, len = (size_t)n * rec + (size_t)extra;
    uint8_t *b = calloc(len ? len : 1, 1);
    for (int i = 0; i < n; i++) {
        uint8_t *r = b + i * rec;
        memcpy(r, labels + i * nlab, (size_t)nlab);
        for (int p = 0; p < 3; p++)
            for (int k = 0; k < 1024; k++) r[nlab + p * 1024 + k] = cifar_pix(i, p, k);
    }
    spit(path, b, len);
    free(b);
}

static void test_cifar(void) {
    static const uint8_t l10[3] = {3, 9, 0}, l100[6] = {19, 99, 0, 5, 7, 42};
    jm_dataset ds;
    write_cifar(P("c10.bin"), 3, 1, l10, 0);
    if (ok(load(P("c10.bin"), NULL, &ds) == 0, "CIFAR-10: loads (auto: .bin, size a multiple of 3073)")) {
        ok(ds.n == 3 && ds.c == 3 && ds.h == 32 && ds.w == 32 && ds.classes == 10 && ds.format == JM_DATA_CIFAR10,
           "CIFAR-10: n 3, 3x32x32, 10 classes");
        int same = 1;
        /* plane order R, G, B -> channel 0, 1, 2; within a plane row-major */
        for (int i = 0; i < 3; i++)
            for (int c = 0; c < 3; c++)
                for (int y = 0; y < 32; y++)
                    for (int x = 0; x < 32; x++)
                        same &= ds.x[((i * 3 + c) * 32 + y) * 32 + x] == scaled(cifar_pix(i, c, y * 32 + x));
        ok(same, "CIFAR-10: R, G, B planes -> CHW, scaled");
        ok(ds.y[0] == 3 && ds.y[1] == 9 && ds.y[2] == 0, "CIFAR-10: labels");
        jm_data_free(&ds);
    }
    write_cifar(P("c100.bin"), 3, 2, l100, 0);
    if (ok(load(P("c100.bin"), NULL, &ds) == 0, "CIFAR-100: loads (auto: size a multiple of 3074)")) {
        ok(ds.format == JM_DATA_CIFAR100 && ds.classes == 100 && ds.y[0] == 99 && ds.y[1] == 5 && ds.y[2] == 42,
           "CIFAR-100: fine labels, 100 classes");
        ok(ds.x[0] == scaled(cifar_pix(0, 0, 0)) && ds.x[3071] == scaled(cifar_pix(0, 2, 1023)) &&
               ds.x[3072 + 1024] == scaled(cifar_pix(1, 1, 0)),
           "CIFAR-100: pixels after the two label bytes");
        jm_data_free(&ds);
    }
    jm_data_opts o = jm_data_defaults();
    o.cifar100_fine = 0;
    if (ok(load(P("c100.bin"), &o, &ds) == 0, "CIFAR-100: coarse labels")) {
        ok(ds.classes == 20 && ds.y[0] == 19 && ds.y[1] == 0 && ds.y[2] == 7, "CIFAR-100: coarse labels, 20 classes");
        jm_data_free(&ds);
    }

    write_cifar(P("c10trunc.bin"), 2, 1, l10, 100);
    bad_load("CIFAR-10 truncated record", P("c10trunc.bin"), NULL, "c10trunc.bin", "truncated record 2 (got 100 of 3073 bytes)", NULL);
    static const uint8_t l10bad[3] = {3, 12, 0};
    write_cifar(P("c10lab.bin"), 3, 1, l10bad, 0);
    bad_load("CIFAR-10 label out of range", P("c10lab.bin"), NULL, "c10lab.bin", "record 1: label 12, expected 0..9", NULL);
    write_cifar(P("c10empty.bin"), 0, 1, l10, 0);
    bad_load("CIFAR-10 empty file", P("c10empty.bin"), NULL, "c10empty.bin", "no records", NULL);
    static const uint8_t l100bad[6] = {1, 2, 3, 150, 4, 5};
    write_cifar(P("c100lab.bin"), 3, 2, l100bad, 0);
    bad_load("CIFAR-100 fine label out of range", P("c100lab.bin"), NULL, "c100lab.bin", "record 1: fine label 150, expected 0..99", NULL);
    o = jm_data_defaults();
    o.format = JM_DATA_CIFAR100;
    write_cifar(P("c100trunc.bin"), 1, 2, l100, 5);
    bad_load("CIFAR-100 truncated record", P("c100trunc.bin"), &o, "c100trunc.bin", "truncated record 1 (got 5 of 3074 bytes)", NULL);
    o.format = JM_DATA_AUTO;
    o.limit = 2;
    write_cifar(P("c10b.bin"), 3, 1, l10, 0);
    if (ok(load(P("c10b.bin"), &o, &ds) == 0, "CIFAR-10: limit")) {
        is_int(ds.n, 2, "CIFAR-10: limit 2 reads 2 records");
        jm_data_free(&ds);
    }
}

/* ------------------------------------------------------------------ CSV */

static void test_csv(void) {
    jm_dataset ds;
    const char *t = "a, b ,label\r\n1,2,0\r\n3.5, -4e1 ,2\r\n\r\n\n";
    spit(P("t.csv"), t, strlen(t));
    if (ok(load(P("t.csv"), NULL, &ds) == 0, "CSV: loads with a detected header, CRLF, trailing blank lines")) {
        ok(ds.n == 2 && ds.c == 1 && ds.h == 1 && ds.w == 2 && ds.classes == 3 && ds.format == JM_DATA_CSV,
           "CSV: n 2, 2 features, classes = max label + 1");
        ok(ds.x[0] == 1 && ds.x[1] == 2 && ds.x[2] == 3.5f && ds.x[3] == -40 && ds.y[0] == 0 && ds.y[1] == 2,
           "CSV: raw values and labels");
        jm_data_free(&ds);
    }
    jm_data_opts o = jm_data_defaults();
    o.csv_label_column = 0;
    o.csv_header = 0;
    const char *t2 = "4,0.5,0.25\n1,7,8";
    spit(P("t2.csv"), t2, strlen(t2));
    if (ok(load(P("t2.csv"), &o, &ds) == 0, "CSV: label column 0, no header, no final newline")) {
        ok(ds.n == 2 && ds.w == 2 && ds.y[0] == 4 && ds.y[1] == 1 && ds.x[0] == 0.5f && ds.x[3] == 8 && ds.classes == 5,
           "CSV: label column 0 values");
        jm_data_free(&ds);
    }
    o.csv_header = 1;
    if (ok(load(P("t2.csv"), &o, &ds) == 0, "CSV: forced header skips the first line")) {
        ok(ds.n == 1 && ds.y[0] == 1, "CSV: forced header");
        jm_data_free(&ds);
    }
    o = jm_data_defaults();
    o.limit = 1;
    if (ok(load(P("t.csv"), &o, &ds) == 0, "CSV: limit")) {
        is_int(ds.n, 1, "CSV: limit 1 reads 1 record");
        jm_data_free(&ds);
    }

    spit(P("f.csv"), "1,2,0\n3,4,1\n5,6,7,1\n", 20);
    bad_load("CSV: too many fields", P("f.csv"), NULL, "f.csv:3:7:", "expected 3 fields, found 4", NULL);
    spit(P("g.csv"), "1,2,0\n3,4\n", 10);
    bad_load("CSV: too few fields", P("g.csv"), NULL, "g.csv:2:4:", "expected 3 fields, found 2", NULL);
    spit(P("h.csv"), "1,2,0\n3, abc,1\n", 15);
    bad_load("CSV: not a number", P("h.csv"), NULL, "h.csv:2:4:", "'abc' is not a number", NULL);
    spit(P("i.csv"), "1,2,0\n3,4,-1\n", 13);
    bad_load("CSV: negative label", P("i.csv"), NULL, "i.csv:2:5:", "label '-1' is not an integer", NULL);
    spit(P("j.csv"), "1,2,0\n3,4,2.5\n", 14);
    bad_load("CSV: non-integer label", P("j.csv"), NULL, "j.csv:2:5:", "label '2.5' is not an integer", NULL);
    spit(P("k.csv"), "1,2,0\n\n3,4,1\n", 13);
    bad_load("CSV: empty line in the middle", P("k.csv"), NULL, "k.csv:2:1:", "empty line", NULL);
    spit(P("l.csv"), "x,y,label\n", 10);
    bad_load("CSV: header only", P("l.csv"), NULL, "l.csv", "no records", NULL);
    spit(P("m.csv"), "1,2,0\n1,nan,0\n", 14);
    bad_load("CSV: nan is not a number", P("m.csv"), NULL, "m.csv:2:3:", "'nan' is not a number", NULL);
    spit(P("n.csv"), "1,2,0\n1,2,1e9\n", 14);
    bad_load("CSV: absurd label", P("n.csv"), NULL, "n.csv:2:5:", "label '1e9'", NULL);
    spit(P("o.csv"), "5\n6\n", 4);
    bad_load("CSV: one column", P("o.csv"), NULL, "o.csv:1:1:", "at least 2 fields", NULL);
    o = jm_data_defaults();
    o.csv_label_column = 5;
    bad_load("CSV: label column out of range", P("t2.csv"), &o, "t2.csv", "label column is 5", NULL);
}

/* ------------------------------------------------------------------ shuffle, subset */

static int is_perm(const int64_t *p, int64_t n) {
    char *seen = calloc((size_t)n + 1, 1);
    int good = 1;
    for (int64_t i = 0; i < n; i++) {
        if (p[i] < 0 || p[i] >= n || seen[p[i]]) good = 0;
        else seen[p[i]] = 1;
    }
    free(seen);
    return good;
}

static void test_shuffle(void) {
    enum { N = 1000 };
    static int64_t a[N], b[N], c[N], d[N];
    jm_data_shuffle(N, 42, 0, a);
    jm_data_shuffle(N, 42, 0, b);
    jm_data_shuffle(N, 42, 1, c);
    jm_data_shuffle(N, 43, 0, d);
    ok(is_perm(a, N) && is_perm(c, N), "shuffle: a permutation of [0, n)");
    ok(memcmp(a, b, sizeof a) == 0, "shuffle: same (seed, epoch) -> same permutation");
    ok(memcmp(a, c, sizeof a) != 0, "shuffle: another epoch -> another permutation");
    ok(memcmp(a, d, sizeof a) != 0, "shuffle: another seed -> another permutation");
    int fixed = 0;
    for (int i = 0; i < N; i++) fixed += a[i] == i;
    ok(fixed < 10, "shuffle: it moves things (%d fixed points of 1000)", fixed);
    /* pinned (and checked against an independent Python rendering of philox.h and the
       Fisher-Yates loop): a change here changes every training run's data order */
    int64_t g[10];
    jm_data_shuffle(10, 1, 0, g);
    char s[128] = "";
    for (int i = 0; i < 10; i++) snprintf(s + strlen(s), sizeof s - strlen(s), "%s%lld", i ? "," : "", (long long)g[i]);
    is_str(s, "8,6,7,2,0,3,9,4,5,1", "shuffle: pinned permutation for n 10, seed 1, epoch 0");
    int64_t one = 7;
    jm_data_shuffle(1, 1, 0, &one);
    jm_data_shuffle(0, 1, 0, NULL);
    is_int(one, 0, "shuffle: n 1 and n 0");
    /* epochs beyond 2^32 are distinct from their low 32 bits */
    jm_data_shuffle(N, 42, (1ull << 32) | 1, d);
    ok(memcmp(c, d, sizeof c) != 0, "shuffle: epoch 2^32+1 differs from epoch 1");
}

static void test_subset(void) {
    enum { N = 103 };
    jm_dataset ds;
    memset(&ds, 0, sizeof ds);
    ds.n = N;
    ds.classes = 4;
    ds.y = malloc(N * sizeof *ds.y);
    strcpy(ds.path, "synthetic");
    /* class 3 gets only 10 records: labels i % 3 except every 10th -> 3 */
    int count3 = 0;
    for (int i = 0; i < N; i++) {
        ds.y[i] = i % 10 == 0 ? 3 : i % 3;
        count3 += ds.y[i] == 3;
    }
    int64_t idx[4 * 10], perm[N];
    char err[256] = "";
    int64_t k = jm_data_labelled_subset(&ds, 10, 5, idx, err, sizeof err);
    is_int(k, 40, "subset: classes * per_class indices");
    int per[4] = {0}, good = 1, inorder = 1;
    jm_data_shuffle(N, 5, 0, perm);
    int64_t pos = 0;
    for (int64_t i = 0; i < k; i++) {
        if (idx[i] < 0 || idx[i] >= N) { good = 0; break; }
        per[ds.y[idx[i]]]++;
        while (pos < N && perm[pos] != idx[i]) pos++;   /* idx is a subsequence of the shuffle */
        inorder &= pos < N;
    }
    ok(good && per[0] == 10 && per[1] == 10 && per[2] == 10 && per[3] == 10, "subset: exactly 10 of every class");
    ok(inorder, "subset: in the order of jm_data_shuffle(seed, epoch 0)");
    /* the first 10 of class 0 in shuffle order */
    int first = 1, taken = 0;
    for (int64_t i = 0; i < N && taken < 10; i++) {
        if (ds.y[perm[i]] != 0) continue;
        int found = 0;
        for (int64_t j = 0; j < k; j++) found |= idx[j] == perm[i];
        first &= found;
        taken++;
    }
    ok(first, "subset: the first per_class records of a class in shuffle order");
    int64_t idx2[40];
    jm_data_labelled_subset(&ds, 10, 5, idx2, err, sizeof err);
    ok(memcmp(idx, idx2, sizeof idx) == 0, "subset: deterministic");
    int64_t *big = malloc(4 * 30 * sizeof *big);
    k = jm_data_labelled_subset(&ds, 30, 5, big, err, sizeof err);
    char want[64];
    snprintf(want, sizeof want, "class 3 has only %d records", count3);
    ok(k == -1 && has(err, "synthetic") && has(err, want), "subset: error when a class has too few");
    if (k != -1 || !has(err, want)) tap_diag("k %lld, message: %s", (long long)k, err);
    k = jm_data_labelled_subset(&ds, 0, 5, big, err, sizeof err);
    ok(k == -1 && has(err, "per class"), "subset: per_class 0 is an error");
    free(big);
    free(ds.y);
}

/* ------------------------------------------------------------------ augmentation */

enum { AC = 2, AH = 5, AW = 6, ACHW = AC * AH * AW, AN = 8 };

static void aug_dataset(jm_dataset *ds) {
    memset(ds, 0, sizeof *ds);
    ds->n = AN;
    ds->c = AC; ds->h = AH; ds->w = AW;
    ds->classes = AN;
    ds->pad_value = -1.0f;
    ds->x = malloc(AN * ACHW * sizeof(float));
    ds->y = malloc(AN * sizeof(int64_t));
    for (int i = 0; i < AN * ACHW; i++) ds->x[i] = (float)(i + 1) / (AN * ACHW + 1);   /* distinct, in (0, 1) */
    for (int i = 0; i < AN; i++) ds->y[i] = i;
}

/* Value of the padded, cropped (dy, dx), optionally flipped record src at (c, y, x). */
static float crop_ref(const float *src, int pad, int dy, int dx, int flip, int c, int y, int x) {
    int sy = y + dy - pad, sx = (flip ? AW - 1 - x : x) + dx - pad;
    return sy >= 0 && sy < AH && sx >= 0 && sx < AW ? src[(c * AH + sy) * AW + sx] : -1.0f;
}

static int matches(const float *out, const float *src, int pad, int dy, int dx, int flip) {
    for (int c = 0; c < AC; c++)
        for (int y = 0; y < AH; y++)
            for (int x = 0; x < AW; x++)
                if (out[(c * AH + y) * AW + x] != crop_ref(src, pad, dy, dx, flip, c, y, x)) return 0;
    return 1;
}

static void test_augment(void) {
    enum { B = 64 };
    jm_dataset ds;
    aug_dataset(&ds);
    int64_t idx[B], y[B];
    static float out[B * ACHW], out2[B * ACHW];
    for (int i = 0; i < B; i++) idx[i] = (i * 5) % AN;

    jm_data_batch(&ds, idx, B, NULL, 1, 0, out, y);
    int same = 1;
    for (int i = 0; i < B; i++) same &= y[i] == idx[i] && memcmp(out + i * ACHW, ds.x + idx[i] * ACHW, ACHW * sizeof(float)) == 0;
    ok(same, "batch: no augmentation copies records and labels exactly");

    jm_augment flip = {0, 1, 0.0f};
    int nflip = 0, nkeep = 0, exact = 1;
    for (int step = 0; step < 4; step++) {
        jm_data_batch(&ds, idx, B, &flip, 9, (uint64_t)step, out, y);
        for (int i = 0; i < B; i++) {
            const float *src = ds.x + idx[i] * ACHW, *o = out + i * ACHW;
            if (matches(o, src, 0, 0, 0, 0)) nkeep++;
            else if (matches(o, src, 0, 0, 0, 1)) nflip++;
            else exact = 0;
        }
    }
    ok(exact, "hflip: every record is the original or its exact mirror");
    ok(nflip > 90 && nkeep > 90, "hflip: about half mirrored (%d of 256)", nflip);

    jm_augment crop = {2, 0, 0.0f};
    int seen[5][5] = {{0}}, found_all = 1, distinct = 0;
    for (int step = 0; step < 4; step++) {
        jm_data_batch(&ds, idx, B, &crop, 9, (uint64_t)step, out, y);
        for (int i = 0; i < B; i++) {
            const float *src = ds.x + idx[i] * ACHW, *o = out + i * ACHW;
            int found = 0;
            for (int dy = 0; dy <= 4 && !found; dy++)
                for (int dx = 0; dx <= 4 && !found; dx++)
                    if (matches(o, src, 2, dy, dx, 0)) { found = 1; seen[dy][dx]++; }
            found_all &= found;
        }
    }
    for (int dy = 0; dy < 5; dy++)
        for (int dx = 0; dx < 5; dx++) distinct += seen[dy][dx] > 0;
    ok(found_all, "crop: every record is a crop of the -1-padded image at some offset in [0, 2*pad]");
    ok(distinct == 25, "crop: all 25 offsets occur over 256 draws (%d)", distinct);

    jm_augment all = {2, 1, 0.03f};
    jm_data_batch(&ds, idx, B, &all, 9, 3, out, y);
    jm_data_batch(&ds, idx, B, &all, 9, 3, out2, y);
    ok(memcmp(out, out2, sizeof out) == 0, "augment: same (seed, step) -> identical batch");
    jm_data_batch(&ds, idx, B, &all, 9, 4, out2, y);
    ok(memcmp(out, out2, sizeof out) != 0, "augment: another step -> another batch");
    jm_data_batch(&ds, idx, B, &all, 10, 3, out2, y);
    ok(memcmp(out, out2, sizeof out) != 0, "augment: another seed -> another batch");
    int threads = omp_get_max_threads();
    omp_set_num_threads(1);
    static float big1[1024 * ACHW], big2[1024 * ACHW];
    static int64_t bidx[1024], by[1024];
    for (int i = 0; i < 1024; i++) bidx[i] = i % AN;
    jm_data_batch(&ds, bidx, 1024, &all, 9, 3, big1, by);
    omp_set_num_threads(threads > 1 ? threads : 4);
    jm_data_batch(&ds, bidx, 1024, &all, 9, 3, big2, by);
    omp_set_num_threads(threads);
    ok(memcmp(big1, big2, sizeof big1) == 0, "augment: the thread count does not change the batch");
    jm_data_batch(&ds, bidx, B, &all, 9, 3, out, y);
    ok(memcmp(big1, out, sizeof out) == 0, "augment: slot i's draws do not depend on the batch size");

    /* noise: zero images, so the output is the noise itself */
    memset(ds.x, 0, AN * ACHW * sizeof(float));
    jm_augment noise = {0, 0, 0.03f};
    jm_data_batch(&ds, bidx, 1024, &noise, 7, 0, big1, by);
    double s1 = 0, s2 = 0;
    int64_t m = 1024 * ACHW;
    for (int64_t k = 0; k < m; k++) { s1 += big1[k]; s2 += (double)big1[k] * big1[k]; }
    double mean = s1 / m, sd = sqrt(s2 / m - mean * mean);
    ok(fabs(mean) < 0.001, "noise: mean about 0 (%.5f over %lld values)", mean, (long long)m);
    is_near(sd, 0.03, 0.02, "noise: std about 0.03");

    int64_t badidx[2] = {1, 99};
    jm_data_batch(&ds, badidx, 2, NULL, 0, 0, out, y);
    ok(y[1] == -1 && out[ACHW] == -1.0f, "batch: an index out of range gives pad values and label -1");
    jm_data_free(&ds);
}

/* ------------------------------------------------------------------ directories, real data */

static void test_resolve(void) {
    char out[512];
    /* g_dir holds train-images-idx3-ubyte (test_idx) but no t10k */
    ok(jm_data_resolve(g_dir, "train", out, sizeof out) == 0 && has(out, "/train-images-idx3-ubyte"), "resolve: IDX train");
    ok(jm_data_resolve(g_dir, "test", out, sizeof out) == -1 && has(out, "t10k-images-idx3-ubyte"),
       "resolve: -1 when the split's file is missing, naming the IDX file");
    ok(jm_data_resolve(g_dir, "valid", out, sizeof out) == -1, "resolve: unknown split");
    ok(jm_data_resolve(P("c10.bin"), "test", out, sizeof out) == 0 && strcmp(out, P("c10.bin")) == 0, "resolve: a file is unchanged");
    ok(jm_data_resolve(P("absent"), "train", out, sizeof out) == 0 && strcmp(out, P("absent")) == 0, "resolve: a missing path is unchanged");
    mkdir(P("cif"), 0700);
    static const uint8_t l10[2] = {1, 2};
    write_cifar(P("cif/test_batch.bin"), 2, 1, l10, 0);
    ok(jm_data_resolve(P("cif/"), "test", out, sizeof out) == 0 && strcmp(out, P("cif/test_batch.bin")) == 0, "resolve: CIFAR test_batch.bin");
    jm_dataset ds;
    if (ok(load(g_dir, NULL, &ds) == 0, "load: a directory loads its train file")) {
        ok(ds.n == 4 && has(ds.path, "train-images-idx3-ubyte"), "load: directory -> train-images-idx3-ubyte");
        jm_data_free(&ds);
    }
}

static int exists(const char *path) { struct stat sb; return stat(path, &sb) == 0; }

static void class_counts(const jm_dataset *ds, int64_t *cnt) {
    memset(cnt, 0, (size_t)ds->classes * sizeof *cnt);
    for (int64_t i = 0; i < ds->n; i++) cnt[ds->y[i]]++;
}

static void test_real(void) {
    const char *root = "../shared/data";
    char p[512];
    jm_dataset ds;
    int64_t cnt[10];
    snprintf(p, sizeof p, "%s/mnist/train-images-idx3-ubyte", root);
    if (!exists(p)) {
        skip(7, "../shared/data/mnist absent");
    } else {
        if (ok(load(p, NULL, &ds) == 0, "MNIST train loads")) {
            ok(ds.n == 9000 && ds.c == 1 && ds.h == 28 && ds.w == 28 && ds.classes == 10, "MNIST train: 9000 of 1x28x28, 10 classes");
            ok(ds.y[0] == 1 && ds.y[1] == 0 && ds.y[2] == 8 && ds.y[9] == 4, "MNIST train: first labels 1, 0, 8, ..., 4");
            class_counts(&ds, cnt);
            ok(cnt[0] == 901 && cnt[5] == 763 && cnt[1] == 1027, "MNIST train: class counts 901, 1027, ..., 763");
            int64_t *sub = malloc(10 * 100 * sizeof *sub);
            char err[256];
            ok(jm_data_labelled_subset(&ds, 100, 1, sub, err, sizeof err) == 1000, "MNIST train: 100 labelled per class");
            free(sub);
            jm_data_free(&ds);
        }
        snprintf(p, sizeof p, "%s/mnist", root);
        if (ok(load(p, NULL, &ds) == 0 && ds.n == 9000, "MNIST directory -> train")) jm_data_free(&ds);
        char out[512];
        if (ok(jm_data_resolve(p, "test", out, sizeof out) == 0 && load(out, NULL, &ds) == 0 && ds.n == 1000,
               "MNIST directory, test split -> t10k, 1000 records"))
            jm_data_free(&ds);
    }
    snprintf(p, sizeof p, "%s/cifar10/data_batch_1.bin", root);
    if (!exists(p)) {
        skip(4, "../shared/data/cifar10 absent");
    } else {
        if (ok(load(p, NULL, &ds) == 0, "CIFAR-10 data_batch_1 loads")) {
            ok(ds.n == 10000 && ds.c == 3 && ds.h == 32 && ds.w == 32 && ds.classes == 10, "CIFAR-10: 10000 of 3x32x32");
            class_counts(&ds, cnt);
            int all = 1;
            for (int c = 0; c < 10; c++) all &= cnt[c] == 1000;
            ok(all && ds.y[0] == 8 && ds.y[1] == 0 && ds.y[2] == 6, "CIFAR-10: 1000 per class, first labels 8, 0, 6");
            jm_data_free(&ds);
        }
        snprintf(p, sizeof p, "%s/cifar10", root);
        char out[512];
        ok(jm_data_resolve(p, "test", out, sizeof out) == 0 && has(out, "test_batch.bin"), "CIFAR-10 directory, test -> test_batch.bin");
    }
    snprintf(p, sizeof p, "%s/fashion-mnist/t10k-images-idx3-ubyte", root);
    if (!exists(p)) {
        skip(2, "../shared/data/fashion-mnist absent");
    } else {
        if (ok(load(p, NULL, &ds) == 0, "Fashion-MNIST t10k loads")) {
            class_counts(&ds, cnt);
            int all = 1;
            for (int c = 0; c < 10; c++) all &= cnt[c] == 1000;
            ok(ds.n == 10000 && ds.h == 28 && all, "Fashion-MNIST t10k: 10000 records, 1000 per class");
            jm_data_free(&ds);
        } else {
            skip(1, "Fashion-MNIST did not load");
        }
    }
}

/* jm_data_conform: 1x2x2 -> 3x4x4 pads and repeats; 3x4x4 -> 1x2x2 crops the centre
   and averages the channels; 2 -> 3 channels is refused with the file named. */
static void test_conform(void) {
    float px[4] = { 1, 2, 3, 4 };
    jm_dataset ds;
    memset(&ds, 0, sizeof ds);
    ds.n = 1; ds.c = 1; ds.h = 2; ds.w = 2; ds.pad_value = -1;
    ds.x = malloc(sizeof px);
    memcpy(ds.x, px, sizeof px);
    snprintf(ds.path, sizeof ds.path, "gray.bin");
    char err[256];
    int r = jm_data_conform(&ds, 3, 4, 4, err, sizeof err);
    ok(r == 0 && ds.c == 3 && ds.h == 4 && ds.w == 4, "1x2x2 -> 3x4x4");
    int good = r == 0;
    for (int ch = 0; good && ch < 3; ch++)
        for (int i = 0; i < 16; i++) {
            int row = i / 4, col = i % 4;
            float want = row >= 1 && row <= 2 && col >= 1 && col <= 2 ? px[(row - 1) * 2 + col - 1] : -1;
            if (ds.x[ch * 16 + i] != want) good = 0;
        }
    ok(good, "centred, padded with the pad value, the channel repeated");
    /* make the channels differ, then back to one channel of 2x2 */
    for (int i = 0; good && i < 16; i++) { ds.x[16 + i] += 3; ds.x[32 + i] += 6; }
    r = jm_data_conform(&ds, 1, 2, 2, err, sizeof err);
    ok(r == 0 && ds.c == 1 && ds.h == 2 && ds.w == 2 && ds.x[0] == 4 && ds.x[1] == 5 && ds.x[2] == 6 && ds.x[3] == 7,
       "3x4x4 -> 1x2x2: the centre crop, channels averaged (%g %g %g %g)", ds.x[0], ds.x[1], ds.x[2], ds.x[3]);
    ds.c = 2; ds.h = 1; ds.w = 2;
    r = jm_data_conform(&ds, 3, 1, 2, err, sizeof err);
    ok(r == -1 && strstr(err, "gray.bin") && strstr(err, "2x1x2"), "2 -> 3 channels is refused, naming the file: %s", err);
    jm_data_free(&ds);
}

int main(void) {
    strcpy(g_dir, "/tmp/jm_data_XXXXXX");
    if (!mkdtemp(g_dir)) skip_all("mkdtemp failed");
    test_idx();
    test_idx_errors();
    test_idx4();
    test_cifar();
    test_csv();
    test_shuffle();
    test_subset();
    test_augment();
    test_resolve();
    test_real();
    test_conform();
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    if (system(cmd) != 0) tap_diag("could not remove %s", g_dir);
    return tap_done();
}
