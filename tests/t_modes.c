/* t_modes.c — StackMNIST mode counting (runtime/app/rt_modes.c, `EXE eval
 * modes`; tools/stackmnist.py; graphs/vera_stackmnist.graph and
 * graphs/mnist_digit.graph):
 *
 *   1. the mode id (channel 0 most significant), the histogram, the modes
 *      covered and KL(q || p) on constructed id sets with known answers,
 *      including VERA's rule for modes the training data lack;
 *   2. tools/stackmnist.py on a made-up MNIST whose image k is the constant
 *      k: every record's channels are traced back to their source digits and
 *      its label must be 100 d_R + 10 d_G + d_B; the IDX headers;
 *   3. `eval modes` end to end with weights set by hand: a digit classifier
 *      whose logits pick the digit nearest 4.5 (1 + mean pixel) (so a channel
 *      of constant pixel 255 d / 9 reads as d), a mnist_digit checkpoint's
 *      names loading into vera_stackmnist's digit model, and a generator whose
 *      every sample is one constant image: the counter reads the data's every
 *      label back (accuracy 1; then 0.9 with R and B swapped in 10% of the
 *      labels, channel 1 still 1), the generator's samples fall in exactly one
 *      mode, KL = log(N / count) or, for a mode the data lack, q outside p = 1;
 *   4. the command's errors: no --classifier, a classifier without a tensor,
 *      with a wrongly shaped one or one of another architecture, data of
 *      another shape, labels that are not mode ids, a graph without
 *      digit_logits. */
#include "train_helpers.h"
#include "tap.h"
#include "app/rt_modes.h"
#include <sys/stat.h>
#include <unistd.h>

static char dir[256], vera[320], digit[320], stack[320], fake[320];

/* ------------------------------------------------------------------ 1. the functions */

static void test_functions(void) {
    int64_t d3[3] = { 3, 1, 4 }, d9[3] = { 9, 0, 0 }, bad[3] = { 1, 10, 2 }, b4[4] = { 1, 0, 1, 1 };
    is_int(jm_modes_id(d3, 3, 10), 314, "mode id of digits (3, 1, 4) is 314: channel 0 is the hundreds");
    is_int(jm_modes_id(d9, 3, 10), 900, "mode id of (9, 0, 0) is 900");
    is_int(jm_modes_id(bad, 3, 10), -1, "a digit outside 0..9 gives -1");
    is_int(jm_modes_id(b4, 4, 2), 11, "4 binary channels (1, 0, 1, 1) give 11");

    int64_t ids[5] = { 0, 5, 5, 999, 5 }, hist[1000], err_ids[3] = { 1, 1000, 2 };
    char err[256] = "";
    int rc = jm_modes_histogram(ids, 5, 1000, hist, err, sizeof err);
    ok(rc == 0 && hist[0] == 1 && hist[5] == 3 && hist[999] == 1 && hist[1] == 0, "histogram of {0, 5, 5, 999, 5}");
    is_int(jm_modes_covered(hist, 1000), 3, "three modes covered");
    rc = jm_modes_histogram(err_ids, 3, 1000, hist, err, sizeof err);
    ok(rc == -1 && strstr(err, "record 1") && strstr(err, "mode id 1000 is outside 0..999"), "an id outside the modes is refused, named (%s)", err);

    /* constructed id sets: i * 7 mod 1000 reaches every mode (gcd 1), i * 10 mod 1000 a tenth */
    static int64_t many[10000], q[1000], p[1000];
    for (int i = 0; i < 10000; i++) many[i] = (int64_t)i * 7 % 1000;
    jm_modes_histogram(many, 10000, 1000, q, err, sizeof err);
    for (int m = 0; m < 1000; m++) p[m] = 9;           /* uniform training labels */
    double outside = -1;
    is_int(jm_modes_covered(q, 1000), 1000, "10,000 ids 7i mod 1000 cover all 1,000 modes");
    ok(fabs(jm_modes_kl(q, p, 1000, &outside)) < 1e-12 && outside == 0, "uniform q against uniform p: KL 0, nothing outside");
    for (int i = 0; i < 10000; i++) many[i] = (int64_t)i * 10 % 1000;
    jm_modes_histogram(many, 10000, 1000, q, err, sizeof err);
    is_int(jm_modes_covered(q, 1000), 100, "ids 10i mod 1000 cover 100 modes");
    is_near(jm_modes_kl(q, p, 1000, NULL), log(10.0), 1e-12, "q uniform on a tenth of p's modes: KL log 10");
    memset(q, 0, sizeof q);
    q[777] = 26000;
    is_near(jm_modes_kl(q, p, 1000, NULL), log(1000.0), 1e-12, "every sample in one mode of 1,000 equally likely: KL log 1000");
    /* by hand: q = (1/2, 1/4, 1/4), p = (1/4, 1/4, 1/2): 1/2 log 2 + 0 + 1/4 log 1/2 = log(2) / 4 */
    int64_t q3[3] = { 2, 1, 1 }, p3[3] = { 1, 1, 2 };
    is_near(jm_modes_kl(q3, p3, 3, &outside), log(2.0) / 4, 1e-12, "q (1/2, 1/4, 1/4) against p (1/4, 1/4, 1/2): log(2)/4");
    /* VERA's rule: a mode p lacks leaves its term out; its share of q is reported */
    int64_t qo[3] = { 1, 1, 2 }, po[3] = { 3, 1, 0 };
    double kl = jm_modes_kl(qo, po, 3, &outside);
    ok(fabs(kl - (0.25 * log(0.25 / 0.75) + 0.25 * log(0.25 / 0.25))) < 1e-12 && fabs(outside - 0.5) < 1e-12,
       "half of q on a mode p lacks: that term left out (KL %.6f), outside 0.5 (%g)", kl, outside);
    int64_t z[3] = { 0, 0, 0 };
    ok(isnan(jm_modes_kl(z, p3, 3, &outside)) && isnan(outside), "no samples: KL NAN");
}

/* ------------------------------------------------------------------ helpers */

static uint32_t be32(const unsigned char *b) { return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3]; }

/* pixel value that the hand-set classifier reads as digit d: 255 d / 9 */
static int pix(int d) { return (int)lround(255.0 * d / 9.0); }

/* a made-up MNIST: 30 images, image k all pixel k (a fingerprint), label labels_of(k) */
static int fake_label(int k) { return (k * 7 + 3) % 10; }

static void write_fake_mnist(const char *d, int constant_digits) {
    char p[512];
    mkdir(d, 0777);
    snprintf(p, sizeof p, "%s/train-images-idx3-ubyte", d);
    FILE *f = fopen(p, "wb");
    put_be32(f, 0x803); put_be32(f, 30); put_be32(f, 28); put_be32(f, 28);
    for (int k = 0; k < 30; k++)
        for (int i = 0; i < 784; i++) fputc(constant_digits ? pix(fake_label(k)) : k, f);
    fclose(f);
    snprintf(p, sizeof p, "%s/train-labels-idx1-ubyte", d);
    f = fopen(p, "wb");
    put_be32(f, 0x801); put_be32(f, 30);
    for (int k = 0; k < 30; k++) fputc(fake_label(k), f);
    fclose(f);
}

/* the int32 labels of an IDX label file (n of them), or NULL */
static int32_t *read_labels32(const char *path, int *n) {
    size_t len;
    unsigned char *b = (unsigned char *)slurp(path, &len);
    if (!b || len < 8 || be32(b) != 0xC01 || len != 8 + 4 * (size_t)be32(b + 4)) { free(b); return NULL; }
    *n = (int)be32(b + 4);
    int32_t *y = malloc(sizeof(int32_t) * (size_t)*n);
    for (int i = 0; i < *n; i++) y[i] = (int32_t)be32(b + 8 + 4 * i);
    free(b);
    return y;
}

static void write_labels32(const char *path, const int32_t *y, int n) {
    FILE *f = fopen(path, "wb");
    put_be32(f, 0xC01); put_be32(f, (uint32_t)n);
    for (int i = 0; i < n; i++) put_be32(f, (uint32_t)y[i]);
    fclose(f);
}

/* the number after "key": in text, the first at or after `from` (NAN when absent) */
static double json_num(const char *text, const char *from, const char *key) {
    const char *s = text ? strstr(text, from) : NULL;
    char k[96];
    snprintf(k, sizeof k, "\"%s\": ", key);
    s = s ? strstr(s, k) : NULL;
    return s ? strtod(s + strlen(k), NULL) : NAN;
}

/* the q_counts entry m of a modes JSON file */
static long q_count(const char *text, int m) {
    const char *s = text ? strstr(text, "\"q_counts\": [") : NULL;
    if (!s) return -1;
    s += strlen("\"q_counts\": [");
    for (int i = 0; i < m; i++) { s = strchr(s, ','); if (!s) return -1; s++; }
    return strtol(s, NULL, 10);
}

/* a copy of safetensors `from` at `to` edited by fn (0 ok) */
typedef void (*st_edit)(jm_st_file *f);
static int st_copy(const char *from, const char *to, st_edit fn) {
    jm_st_file f;
    char err[512];
    memset(&f, 0, sizeof f);
    if (jm_st_read(from, &f, err, sizeof err) != 0) { tap_diag("%s", err); return -1; }
    fn(&f);
    int rc = jm_st_write(to, &f, err, sizeof err);
    if (rc) tap_diag("%s", err);
    jm_st_free(&f);
    return rc;
}

static jm_st_tensor *st_get(jm_st_file *f, const char *name) {
    for (int i = 0; i < f->n; i++) if (strcmp(f->t[i].name, name) == 0) return &f->t[i];
    return NULL;
}

static void fill(jm_st_file *f, const char *name, float v) {
    jm_st_tensor *t = st_get(f, name);
    for (size_t k = 0; t && k < t->nbytes / 4; k++) ((float *)t->data)[k] = v;
}

/* The hand-set digit classifier: conv1 averages 3x3 and adds 1 (x in [-1, 1]
   -> [0, 2], ReLU the identity), conv2 averages all 32 x 9 inputs, the max
   pool keeps a constant image constant, fc1's unit 0 averages the 9,216
   values (h = 1 + mean pixel; the other units 0), and fc2's logits
   2 k t - k^2 with t = 4.5 h peak at the digit k nearest t: a channel of
   constant pixel 255 d / 9 (x = 2 d / 9 - 1, t = d) reads as d. */
static void set_classifier(jm_st_file *f) {
    fill(f, "digit.conv1.weight", 1.0f / 9);
    fill(f, "digit.conv1.bias", 1.0f);
    fill(f, "digit.conv2.weight", 1.0f / (32 * 9));
    fill(f, "digit.conv2.bias", 0);
    fill(f, "digit.fc1.weight", 0);
    fill(f, "digit.fc1.bias", 0);
    jm_st_tensor *w1 = st_get(f, "digit.fc1.weight");
    for (int k = 0; w1 && k < 9216; k++) ((float *)w1->data)[k] = 1.0f / 9216;
    jm_st_tensor *w2 = st_get(f, "digit.fc2.weight"), *b2 = st_get(f, "digit.fc2.bias");
    fill(f, "digit.fc2.weight", 0);
    for (int k = 0; w2 && b2 && k < 10; k++) {
        ((float *)w2->data)[k * 128] = (float)(2 * k * 4.5);
        ((float *)b2->data)[k] = (float)(-k * k);
    }
}

/* the generator's digits for set_generator */
static int gen_digits[3];

/* A generator whose every sample is channel c = tanh(b_c) everywhere (plus
   sigma 0.01 noise): every weight 0 (the batch norms then see zeros and give
   their bias, 0), the last layer's bias b_c = atanh(2 d_c / 9 - 1) (+-5 for
   digits 0 and 9, whose atanh is infinite). */
static void set_generator(jm_st_file *f) {
    for (int i = 0; i < f->n; i++)
        if (strncmp(f->t[i].name, "g.first.", 8) == 0 && strstr(f->t[i].name, ".weight") && f->t[i].dtype == JM_ST_F32
            && strstr(f->t[i].name, "first.1.") == NULL && strstr(f->t[i].name, "first.4.") == NULL)
            fill(f, f->t[i].name, 0);
    jm_st_tensor *b = st_get(f, "g.first.6.bias");
    for (int c = 0; b && c < 3; c++) {
        int dd = gen_digits[c];
        ((float *)b->data)[c] = dd == 0 ? -5.0f : dd == 9 ? 5.0f : (float)atanh(2.0 * dd / 9 - 1);
    }
    fill(f, "g.logsigma", (float)log(0.01));
}

static void drop_fc2_bias(jm_st_file *f) {
    for (int i = 0; i < f->n; i++)
        if (strcmp(f->t[i].name, "digit.fc2.bias") == 0) {
            free(f->t[i].name);
            free(f->t[i].data);
            f->t[i] = f->t[--f->n];
            break;
        }
}

static void reshape_fc1(jm_st_file *f) {
    jm_st_tensor *t = st_get(f, "digit.fc1.weight");
    if (t) { t->shape[1] = 100; t->nbytes = 128 * 100 * 4; }
}

static void rename_fc2(jm_st_file *f) {
    jm_st_tensor *t = st_get(f, "digit.fc2.weight");
    if (t) { free(t->name); t->name = strdup("digit.fc3.weight"); }
}

/* ------------------------------------------------------------------ 2. the data tool */

static void test_stackmnist_py(void) {
    char src[400], outd[400], p[512];
    snprintf(src, sizeof src, "%s/fingerprint", dir);
    snprintf(outd, sizeof outd, "%s/stack_fp", dir);
    write_fake_mnist(src, 0);
    int r = run("python3 tools/stackmnist.py --mnist %s --out %s --n 50 --seed 4", src, outd);
    ok(r == 0, "tools/stackmnist.py --n 50 on a 30-image made-up MNIST (exit %d)", r);
    if (r) { tap_diag("%s", out); return; }
    size_t len;
    snprintf(p, sizeof p, "%s/train-images-idx4-ubyte", outd);
    unsigned char *im = (unsigned char *)slurp(p, &len);
    int hdr = im && len == 20 + 50 * 3 * 784 && be32(im) == 0x804 && be32(im + 4) == 50 && be32(im + 8) == 3 && be32(im + 12) == 28 && be32(im + 16) == 28;
    ok(hdr, "images: IDX magic 0x00000804, 50 x 3 x 28 x 28, %zu bytes", len);
    int n = 0;
    snprintf(p, sizeof p, "%s/train-labels-idx1-ubyte", outd);
    int32_t *y = read_labels32(p, &n);
    ok(y && n == 50, "labels: IDX magic 0x00000C01, 50 big-endian int32");
    /* each channel is one source image (constant k): its digit is fake_label(k) */
    int right = 0, whole = 0, distinct_src = 0, seen[30] = { 0 };
    for (int i = 0; hdr && y && i < 50; i++) {
        int want = 0, constant = 1;
        for (int c = 0; c < 3; c++) {
            const unsigned char *plane = im + 20 + (size_t)(i * 3 + c) * 784;
            for (int k = 1; k < 784; k++) constant &= plane[k] == plane[0];
            want = want * 10 + fake_label(plane[0]);
            if (!seen[plane[0]]++) distinct_src++;
        }
        whole += constant;
        right += y[i] == want;
    }
    ok(whole == 50, "every channel of every record is one whole source image (%d of 50)", whole);
    is_int(right, 50, "every label is 100 d_R + 10 d_G + d_B of its channels' source digits");
    ok(distinct_src > 20, "the 150 draws use %d of the 30 source images", distinct_src);
    int again = run("(python3 tools/stackmnist.py --mnist %s --out %s/stack_fp2 --n 50 --seed 4 && cmp %s/train-images-idx4-ubyte %s/stack_fp2/train-images-idx4-ubyte)",
                    src, dir, outd, dir);
    ok(again == 0, "the same seed writes the same file");
    free(im);
    free(y);
    int miss = run("python3 tools/stackmnist.py --mnist %s/nowhere --out %s/x", dir, dir);
    ok(miss != 0 && strstr(out, "cannot read") && strstr(out, "nowhere"), "a missing MNIST is named (exit %d)", miss);
}

/* ------------------------------------------------------------------ 3. eval modes */

static void test_modes_command(void) {
    char p[512], digit_init[400], digit_set[400], vera_ck[400], vera_set[400], json[400];
    snprintf(fake, sizeof fake, "%s/constant_mnist", dir);
    write_fake_mnist(fake, 1);
    snprintf(stack, sizeof stack, "%s/stack", dir);
    int r = run("python3 tools/stackmnist.py --mnist %s --out %s --n 60 --seed 7", fake, stack);
    ok(r == 0, "StackMNIST of constant digits: 60 records");
    if (r) { tap_diag("%s", out); return; }
    /* a real mnist_digit checkpoint (its initialisers, optimizer state and knobs) */
    snprintf(digit_init, sizeof digit_init, "%s/digit_init.safetensors", dir);
    snprintf(digit_set, sizeof digit_set, "%s/digit_set.safetensors", dir);
    r = run("(%s train --program train_step_ce --data %s --out %s/digit_run --iters 1 --no-progress --seed 1 && cp %s/digit_run/last.safetensors %s)",
            digit, fake, dir, dir, digit_init);
    ok(r == 0, "mnist_digit: one training iteration writes a checkpoint");
    if (r) { tap_diag("%s", out); return; }
    r = run("%s train --program train_step_vera_unsup --data %s --out %s/vera_run --iters 1 --no-progress --seed 1", vera, stack, dir);
    snprintf(vera_ck, sizeof vera_ck, "%s/vera_run/last.safetensors", dir);
    ok(r == 0, "vera_stackmnist: one unsupervised VERA iteration on the stacks");
    if (r) { tap_diag("%s", out); return; }
    r = run("%s eval modes --ckpt %s --classifier %s --data %s --n 40", vera, vera_ck, digit_init, stack);
    ok(r == 0 && strstr(out, "of 1000 modes"), "a mnist_digit checkpoint's digit.* load into vera_stackmnist by name (exit %d)", r);
    if (r) tap_diag("%s", out);

    /* the counter reads every label back */
    ok(st_copy(digit_init, digit_set, set_classifier) == 0, "the hand-set classifier");
    gen_digits[0] = 0; gen_digits[1] = 0; gen_digits[2] = 0;
    int n = 0;
    snprintf(p, sizeof p, "%s/train-labels-idx1-ubyte", stack);
    int32_t *y = read_labels32(p, &n);
    if (!y || n != 60) { ok(0, "read the labels back"); free(y); return; }
    gen_digits[0] = y[0] / 100; gen_digits[1] = y[0] / 10 % 10; gen_digits[2] = y[0] % 10;
    int count = 0;
    for (int i = 0; i < n; i++) count += y[i] == y[0];
    snprintf(vera_set, sizeof vera_set, "%s/vera_set.safetensors", dir);
    ok(st_copy(vera_ck, vera_set, set_generator) == 0, "the hand-set generator: every sample is mode %d of record 0", y[0]);
    snprintf(json, sizeof json, "%s/modes.json", dir);
    r = run("%s eval modes --ckpt %s --classifier %s --data %s --n 100 --json %s", vera, vera_set, digit_set, stack, json);
    ok(r == 0, "eval modes with both (exit %d)", r);
    if (r) tap_diag("%s", out);
    char *js = slurp(json, NULL);
    ok(json_num(js, "{", "modes") == 1 && q_count(js, y[0]) == 100, "all 100 samples in one mode, %d (modes %g, q_counts[%d] %ld)", y[0],
       json_num(js, "{", "modes"), y[0], q_count(js, y[0]));
    is_near(json_num(js, "{", "kl_q_p"), log(60.0 / count), 1e-5, "KL(q || p) = log(60 / its count in the labels)");
    ok(json_num(js, "{", "q_outside_p") == 0, "nothing outside p");
    ok(json_num(js, "data_check", "all_digits_right") == 1, "the counter reads all 60 training labels back (%g)", json_num(js, "data_check", "all_digits_right"));
    int p_modes = (int)json_num(js, "{", "p_modes");
    ok(json_num(js, "data_check", "modes") == p_modes && fabs(json_num(js, "data_check", "kl_q_p")) < 1e-12,
       "the data's own modes (%d) and KL 0", p_modes);
    free(js);

    /* 10% of the labels with R and B swapped: accuracy 0.9, channels 0 and 2 at 0.9, channel 1 at 1 */
    int32_t *y2 = malloc(sizeof(int32_t) * (size_t)n);
    memcpy(y2, y, sizeof(int32_t) * (size_t)n);
    int swapped = 0;
    for (int i = 0; i < n && swapped < 6; i++)
        if (y[i] / 100 != y[i] % 10) { y2[i] = y[i] % 10 * 100 + y[i] / 10 % 10 * 10 + y[i] / 100; swapped++; }
    char lab2[400];
    snprintf(lab2, sizeof lab2, "%s/swapped-labels", dir);
    write_labels32(lab2, y2, n);
    r = run("%s eval modes --ckpt %s --classifier %s --data %s/train-images-idx4-ubyte --labels %s --n 10 --json %s", vera, vera_set, digit_set, stack,
            lab2, json);
    js = slurp(json, NULL);
    const char *acc = js ? strstr(js, "\"channel_accuracy\": [") : NULL;
    double a0 = acc ? strtod(acc + 21, NULL) : NAN;
    const char *c1 = acc ? strchr(acc, ',') : NULL, *c2 = c1 ? strchr(c1 + 1, ',') : NULL;
    ok(r == 0 && swapped == 6 && fabs(json_num(js, "data_check", "all_digits_right") - 0.9) < 1e-9 && fabs(a0 - 0.9) < 1e-9 && c1 &&
           strtod(c1 + 1, NULL) == 1 && c2 && fabs(strtod(c2 + 1, NULL) - 0.9) < 1e-9,
       "R and B swapped in 6 of 60 labels: all digits right 0.9, channels 0.9, 1, 0.9");
    free(js);
    free(y2);

    /* a mode the training data lack: KL's terms left out, q outside p = 1 */
    int absent = -1;
    for (int m = 111; m < 1000 && absent < 0; m++) {
        int present = 0;
        for (int i = 0; i < n; i++) present |= y[i] == m;
        if (!present) absent = m;
    }
    gen_digits[0] = absent / 100; gen_digits[1] = absent / 10 % 10; gen_digits[2] = absent % 10;
    st_copy(vera_ck, vera_set, set_generator);
    r = run("%s eval modes --ckpt %s --classifier %s --data %s --n 30 --data-check 0 --json %s", vera, vera_set, digit_set, stack, json);
    js = slurp(json, NULL);
    ok(r == 0 && q_count(js, absent) == 30 && json_num(js, "{", "q_outside_p") == 1 && json_num(js, "{", "kl_q_p") == 0 && !strstr(js, "data_check"),
       "every sample in mode %d, which the data lack: q outside p 1, KL 0 (VERA's rule); --data-check 0 skips the check", absent);
    ok(strstr(out, "on modes the training data lack") != NULL, "and the printout says so");
    free(js);
    free(y);

    /* ---- 4. errors */
    r = run("%s eval modes --ckpt %s --data %s", vera, vera_set, stack);
    ok(r == 2 && strstr(out, "--classifier is required"), "no --classifier: exit 2, said (%d)", r);
    char bad[400];
    snprintf(bad, sizeof bad, "%s/bad.safetensors", dir);
    st_copy(digit_set, bad, drop_fc2_bias);
    r = run("%s eval modes --ckpt %s --classifier %s --data %s --n 10", vera, vera_set, bad, stack);
    ok(r == 1 && strstr(out, "missing classifier tensor 'digit.fc2.bias' (f32[10])"), "a classifier without digit.fc2.bias: named, exit 1 (%d)", r);
    if (r != 1) tap_diag("%s", out);
    st_copy(digit_set, bad, reshape_fc1);
    r = run("%s eval modes --ckpt %s --classifier %s --data %s --n 10", vera, vera_set, bad, stack);
    ok(r == 1 && strstr(out, "'digit.fc1.weight' has shape [128,100], expected f32[128,9216]"), "a wrongly shaped digit.fc1.weight: named with both shapes");
    if (r != 1) tap_diag("%s", out);
    st_copy(digit_set, bad, rename_fc2);
    r = run("%s eval modes --ckpt %s --classifier %s --data %s --n 10", vera, vera_set, bad, stack);
    ok(r == 1 && strstr(out, "'digit.fc3.weight' is not a parameter of this graph's digit model"), "a tensor of another architecture: named");
    r = run("%s eval modes --ckpt %s --classifier %s/none.safetensors --data %s --n 10", vera, vera_set, dir, stack);
    ok(r == 1 && strstr(out, "none.safetensors"), "an unreadable classifier file: named");
    r = run("%s eval modes --ckpt %s --classifier %s --data %s --n 10", vera, vera_set, digit_set, fake);
    ok(r == 1 && strstr(out, "holds 1x28x28 records, but the generator draws 3x28x28 samples"), "one-channel MNIST as --data: refused with both shapes");
    int32_t big[60];
    for (int i = 0; i < 60; i++) big[i] = i == 5 ? 1000 : i;
    write_labels32(lab2, big, 60);
    r = run("%s eval modes --ckpt %s --classifier %s --data %s/train-images-idx4-ubyte --labels %s --n 10", vera, vera_set, digit_set, stack, lab2);
    ok(r == 1 && strstr(out, "record 5: mode id 1000 is outside 0..999"), "a label that is no mode id: the record named");
    if (r != 1) tap_diag("%s", out);
    char tiny[400];
    snprintf(tiny, sizeof tiny, "%s/tiny_vera", dir);
    r = run("(%s compile tests/train/tiny_vera.graph -o %s && %s eval modes --classifier %s --data %s)", jemc, tiny, tiny, digit_set, stack);
    ok(r == 2 && strstr(out, "needs program digit_logits"), "a VERA graph without digit_logits: exit 2, said (%d)", r);
}

int main(void) {
    jemc = jt_env("JEMC", "build/jemc");
    test_functions();
    snprintf(dir, sizeof dir, "/tmp/jemc_modes.XXXXXX");
    if (!mkdtemp(dir)) { ok(0, "mkdtemp"); return tap_done(); }
    if (system("python3 -c 'import sys' >/dev/null 2>&1") != 0) {
        skip(1, "no python3 for tools/stackmnist.py");
        return tap_done();
    }
    test_stackmnist_py();
    snprintf(vera, sizeof vera, "%s/vera_stackmnist", dir);
    snprintf(digit, sizeof digit, "%s/mnist_digit", dir);
    int r = run("(%s compile graphs/vera_stackmnist.graph -D batch=16 -o %s && %s compile graphs/mnist_digit.graph -D batch=16 -o %s)", jemc, vera, jemc, digit);
    ok(r == 0, "compile graphs/vera_stackmnist.graph and graphs/mnist_digit.graph (batch 16)");
    if (r) { tap_diag("%s", out); return tap_done(); }
    test_modes_command();
    char rm[300];
    snprintf(rm, sizeof rm, "rm -rf %s", dir);
    if (system(rm) != 0) tap_diag("could not remove %s", dir);
    return tap_done();
}
