/* t_extern.c — user C functions called from a graph (`extern`, language
 * §4.11) through libffi, as a user meets them: the example's library is built
 * with `cc -shared -fPIC` into a temporary directory, and
 *   - examples/extern_energy/denoise.graph checks, runs in the interpreter and
 *     compiled, and gives what its C functions give when this test calls them
 *     directly (dlopen); the library is found through LD_LIBRARY_PATH;
 *   - a graph next to its own library (resolved to an absolute path) calls
 *     functions of every element type, rank-0 and tensor results, arguments
 *     by value and by pointer, a default, a zero-parameter function, a call in
 *     a sampler loop and a detached call under grad; interpreter (f32 and
 *     f64), JIT and executable (run from another directory) all agree with
 *     the closed forms;
 *   - a missing library, a missing symbol, an argument of the wrong type and a
 *     gradient through an extern are clear errors (file:line:col at compile
 *     time, the function and the library at run time), never a crash. */
#include "tap.h"
#include "helpers.h"
#include "engine/safetensors.h"
#include <dlfcn.h>
#include <stdarg.h>
#include <stdint.h>
#include <unistd.h>

static char dir[256];
static const char *jemc;

/* Runs a shell command built from fmt; output in out, returns the exit status. */
static int sh(char *out, size_t cap, const char *fmt, ...) {
    char cmd[8192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    return jt_run(cmd, out, cap);
}

static void write_file(const char *name, const char *text) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    if (!f) { tap_diag("cannot write %s", path); return; }
    fputs(text, f);
    fclose(f);
}

/* Reads tensor `name` of safetensors file DIR/file as doubles into v (up to n); returns its element count or -1. */
static int64_t read_t(const char *file, const char *name, double *v, int64_t n) {
    char path[512], err[512];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    jm_st_file f;
    if (jm_st_read(path, &f, err, sizeof err) != 0) { tap_diag("%s", err); return -1; }
    const jm_st_tensor *t = jm_st_find(&f, name);
    int64_t numel = -1;
    if (t) {
        numel = 1;
        for (int i = 0; i < t->rank; i++) numel *= t->shape[i];
        for (int64_t i = 0; i < numel && i < n; i++) v[i] = jm_st_value(t, i);
    } else tap_diag("%s has no tensor '%s'", path, name);
    jm_st_free(&f);
    return numel;
}

/* Reads a float tensor exactly (as floats). */
static int64_t read_f32(const char *file, const char *name, float *v, int64_t n) {
    double tmp[4096];
    int64_t k = read_t(file, name, tmp, n < 4096 ? n : 4096);
    for (int64_t i = 0; i < k && i < n; i++) v[i] = (float)tmp[i];
    return k;
}

static void write_inputs(const char *name) {
    /* x: f32[2,3], d: f64[3], v: i64[4], k: i32[4], y: f32[3] */
    static float x[6] = { -1.5f, 0.25f, 2, 3.5f, -0.5f, 1 }, y[3] = { 4, 8, -2 };
    static double d[3] = { 1, 2, 3 };
    static int64_t v[4] = { 10, 20, 30, 40 };
    static int32_t k[4] = { 0, 5, 0, -2 };
    jm_st_tensor t[5];
    memset(t, 0, sizeof t);
    const char *names[5] = { "x", "d", "v", "k", "y" };
    jm_st_dtype dts[5] = { JM_ST_F32, JM_ST_F64, JM_ST_I64, JM_ST_I32, JM_ST_F32 };
    void *data[5] = { x, d, v, k, y };
    int ranks[5] = { 2, 1, 1, 1, 1 };
    int64_t shapes[5][2] = { { 2, 3 }, { 3, 0 }, { 4, 0 }, { 4, 0 }, { 3, 0 } };
    for (int i = 0; i < 5; i++) {
        t[i].name = (char *)names[i];
        t[i].dtype = dts[i];
        t[i].rank = ranks[i];
        size_t numel = 1;
        for (int r = 0; r < ranks[i]; r++) { t[i].shape[r] = shapes[i][r]; numel *= (size_t)shapes[i][r]; }
        t[i].nbytes = numel * jm_st_dtype_size(dts[i]);
        t[i].data = data[i];
    }
    jm_st_file f;
    memset(&f, 0, sizeof f);
    f.n = 5;
    f.t = t;
    char path[512], err[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    if (jm_st_write(path, &f, err, sizeof err) != 0) tap_diag("write_inputs: %s", err);
}

static const char *ops_c =
    "#include <stdbool.h>\n"
    "#include <stdint.h>\n"
    "double dot64(const double *a, const double *b) { return a[0] * b[0] + a[1] * b[1] + a[2] * b[2]; }\n"
    "int32_t count_above(const float *x, float t) { int32_t n = 0; for (int i = 0; i < 6; i++) n += x[i] > t; return n; }\n"
    "int64_t sum_i64(const int64_t *v, int64_t bias) { return v[0] + v[1] + v[2] + v[3] + bias; }\n"
    "bool any_negative(const float *x) { for (int i = 0; i < 6; i++) if (x[i] < 0) return true; return false; }\n"
    "void affine(const float *x, float a, double b, float *out) { for (int i = 0; i < 6; i++) out[i] = (float)(a * x[i] + b); }\n"
    "void iota(int64_t start, int32_t step, int64_t *out) { for (int i = 0; i < 5; i++) out[i] = start + i * step; }\n"
    "void flags(const int32_t *v, bool invert, bool *out) { for (int i = 0; i < 4; i++) out[i] = (v[i] != 0) != invert; }\n"
    "float half(void) { return 0.5f; }\n"
    "void halve(const float *x, float *out) { for (int i = 0; i < 3; i++) out[i] = x[i] / 2; }\n";

static const char *ops_graph =
    "extern \"libops.so\" dot64(a: f64[3], b: f64[3]) -> f64[]\n"
    "extern \"libops.so\" count_above(x: f32[2, 3], t: f32[] = 0.5) -> i32[]\n"
    "extern \"libops.so\" sum_i64(v: i64[4], bias: i64[]) -> i64[]\n"
    "extern \"libops.so\" any_negative(x: f32[2, 3]) -> bool[]\n"
    "extern \"libops.so\" affine(x: f32[2, 3], a: f32[], b: f64[]) -> f32[2, 3]\n"
    "extern \"libops.so\" iota(start: i64[], step: i32[]) -> i64[5]\n"
    "extern \"libops.so\" flags(v: i32[4], invert: bool[]) -> bool[4]\n"
    "extern \"libops.so\" half() -> f32[]\n"
    "extern \"libops.so\" halve(x: f32[3]) -> f32[3]\n"
    "\n"
    "sampler shrink(x, steps=3) {\n"
    "    x = halve(x) + 1\n"
    "}\n"
    "\n"
    "program p(x: f32[2, 3], d: f64[3], v: i64[4], k: i32[4], y: f32[3]) {\n"
    "    output dot = dot64(d, d * 2)\n"
    "    output cnt = count_above(x)\n"
    "    output s = sum_i64(bias=7, v=v)\n"
    "    output neg = any_negative(x)\n"
    "    output aff = affine(x, 2, 0.5)\n"
    "    output io = iota(3, 2)\n"
    "    output fl = flags(k, true)\n"
    "    output h = half() * sum(x)\n"
    "    output sh = shrink(y)\n"
    "    output g = grad(sum(x * detach(affine(x, 1, 0))), x)\n"
    "}\n";

/* name, expected values */
typedef struct { const char *name; int n; double v[6]; } jx_want;
static const jx_want ops_want[] = {
    { "dot", 1, { 28 } },
    { "cnt", 1, { 3 } },
    { "s", 1, { 107 } },
    { "neg", 1, { 1 } },
    { "aff", 6, { -2.5, 1, 4.5, 7.5, -0.5, 2.5 } },
    { "io", 5, { 3, 5, 7, 9, 11 } },
    { "fl", 4, { 1, 0, 1, 0 } },
    { "h", 1, { 2.375 } },
    { "sh", 3, { 2.25, 2.75, 1.5 } },
    { "g", 6, { -1.5, 0.25, 2, 3.5, -0.5, 1 } },
};

static void check_ops(const char *file, const char *label) {
    int good = 1;
    for (size_t w = 0; w < sizeof ops_want / sizeof ops_want[0]; w++) {
        double v[8];
        int64_t n = read_t(file, ops_want[w].name, v, 8);
        int same = n == ops_want[w].n;
        for (int i = 0; same && i < n; i++) same = v[i] == ops_want[w].v[i];
        if (!same) {
            good = 0;
            tap_diag("%s: %s: got %lld values, first %g, expected %g", label, ops_want[w].name, (long long)n, n > 0 ? v[0] : 0.0,
                     ops_want[w].v[0]);
        }
    }
    ok(good, "%s: every extern result equals its closed form", label);
}

static void expect(int rc, const char *out, int want_rc, const char *needle, const char *name) {
    if (!ok(rc == want_rc && strstr(out, needle) != NULL, "%s", name))
        tap_diag("exit %d (expected %d), output:\n%s\nexpected to contain: %s", rc, want_rc, out, needle);
}

int main(void) {
    char out[16384];
    jemc = jt_env("JEMC", "build/jemc");
    if (jt_run("cc --version", out, sizeof out) != 0) skip_all("no C compiler (cc) to build the extern libraries");
    snprintf(dir, sizeof dir, "/tmp/jemc_extern_XXXXXX");
    if (!mkdtemp(dir)) skip_all("cannot create a temporary directory");
    const char *G = "examples/extern_energy/denoise.graph";

    /* ---- the example, its library found through LD_LIBRARY_PATH ---------------------------- */
    int rc = sh(out, sizeof out, "cc -shared -fPIC -O2 -o %s/libtv.so examples/extern_energy/tv.c", dir);
    if (!ok(rc == 0, "cc -shared -fPIC builds the example's library")) { tap_diag("%s", out); return tap_done(); }
    rc = sh(out, sizeof out, "LD_LIBRARY_PATH=%s %s check %s", dir, jemc, G);
    expect(rc, out, 0, "denoise.graph: ok (3 programs", "jemc check accepts the example graph");
    rc = sh(out, sizeof out, "LD_LIBRARY_PATH=%s %s run %s demo --out %s/demo.safetensors", dir, jemc, G, dir);
    if (!ok(rc == 0, "jemc run demo (interpreter) calls the library")) tap_diag("%s", out);
    rc = sh(out, sizeof out, "LD_LIBRARY_PATH=%s %s run %s energy --in %s/demo.safetensors --out %s/energy.safetensors", dir, jemc, G, dir, dir);
    if (!ok(rc == 0, "jemc run energy (interpreter)")) tap_diag("%s", out);

    /* the same numbers from the C functions called directly */
    char lib[512];
    snprintf(lib, sizeof lib, "%s/libtv.so", dir);
    void *h = dlopen(lib, RTLD_NOW | RTLD_LOCAL);
    float (*tv_energy)(const float *, int32_t, int32_t, int32_t, float) = NULL;
    void (*tv_per_image)(const float *, int32_t, int32_t, int32_t, float *) = NULL;
    if (h) {
        *(void **)&tv_energy = dlsym(h, "tv_energy");
        *(void **)&tv_per_image = dlsym(h, "tv_per_image");
    }
    if (!ok(h && tv_energy && tv_per_image, "the test loads the library itself")) { tap_diag("%s", dlerror()); return tap_done(); }
    float noisy[256], x[256], clean_tv = 0, noisy_tv = 0, tv = 0, per[4], e = 0, fid = 1;
    int64_t nn = read_f32("demo.safetensors", "noisy", noisy, 256);
    read_f32("demo.safetensors", "tv_clean", &clean_tv, 1);
    read_f32("demo.safetensors", "tv_noisy", &noisy_tv, 1);
    read_f32("demo.safetensors", "x", x, 256);
    ok(nn == 256 && clean_tv == 32.0f, "demo: the clean step edge has TV 32 (4 images x 8 rows x one unit step)");
    float direct = tv_energy(noisy, 4, 8, 8, 1.0f);
    ok(noisy_tv == direct && direct > 32, "demo: the interpreter's TV of the noisy images equals tv_energy called directly (%g)", (double)direct);
    read_f32("energy.safetensors", "tv", &tv, 1);
    read_f32("energy.safetensors", "e", &e, 1);
    read_f32("energy.safetensors", "fidelity", &fid, 1);
    int64_t np = read_f32("energy.safetensors", "per_image", per, 4);
    float dper[4];
    tv_per_image(x, 4, 8, 8, dper);
    ok(tv == tv_energy(x, 4, 8, 8, 0.1f) && fid == 0 && e == tv, "energy: the scalar extern result (lambda * TV) equals the direct call");
    ok(np == 4 && memcmp(per, dper, sizeof per) == 0, "energy: the tensor extern result (TV per image) equals the direct call");

    /* compiled: an executable, run from another directory */
    rc = sh(out, sizeof out, "LD_LIBRARY_PATH=%s %s compile %s -o %s/denoise", dir, jemc, G, dir);
    if (!ok(rc == 0, "jemc compile -o builds the example's executable")) tap_diag("%s", out);
    rc = sh(out, sizeof out, "cd / && LD_LIBRARY_PATH=%s %s/denoise exec energy --in %s/demo.safetensors --out %s/energy_exe.safetensors",
            dir, dir, dir, dir);
    if (!ok(rc == 0, "EXE exec energy runs")) tap_diag("%s", out);
    float tv2 = -1, per2[4] = { 0 };
    read_f32("energy_exe.safetensors", "tv", &tv2, 1);
    read_f32("energy_exe.safetensors", "per_image", per2, 4);
    ok(tv2 == tv && memcmp(per2, per, sizeof per) == 0, "EXE exec energy gives the interpreter's TV and TV per image, bitwise");
    rc = sh(out, sizeof out, "cd / && LD_LIBRARY_PATH=%s %s/denoise exec demo --out %s/demo_exe.safetensors --threads 3", dir, dir, dir);
    float noisy_tv2 = -1;
    read_f32("demo_exe.safetensors", "tv_noisy", &noisy_tv2, 1);
    if (!ok(rc == 0 && noisy_tv2 == noisy_tv, "EXE exec demo (3 threads) draws the same images and gives the same TV")) tap_diag("%s", out);
    rc = sh(out, sizeof out, "LD_LIBRARY_PATH=%s %s run %s denoise_step --in %s/demo.safetensors", dir, jemc, G, dir);
    if (!ok(rc == 0 && strstr(out, "e_next: f32[] = "), "denoise_step: grad through detach(extern) runs")) tap_diag("%s", out);

    /* the library is required at run time, not at compile time */
    rc = sh(out, sizeof out, "%s run %s demo", jemc, G);
    expect(rc, out, 1, "program demo failed: extern tv_energy: cannot load libtv.so: libtv.so: cannot open shared object file",
           "jemc run without the library: an error naming the function and the library, exit 1");
    rc = sh(out, sizeof out, "cd / && %s/denoise exec energy --in %s/demo.safetensors", dir, dir);
    expect(rc, out, 1, "extern tv_energy: cannot load libtv.so", "EXE exec without the library: the same error, exit 1");

    /* ---- a graph next to its library: every element type ----------------------------------- */
    write_file("ops.c", ops_c);
    rc = sh(out, sizeof out, "cc -shared -fPIC -O2 -o %s/libops.so %s/ops.c", dir, dir);
    if (!ok(rc == 0, "cc builds the test's library")) tap_diag("%s", out);
    write_file("ops.graph", ops_graph);
    write_inputs("in.safetensors");
    rc = sh(out, sizeof out, "%s run %s/ops.graph p --in %s/in.safetensors --out %s/ops_interp.safetensors", jemc, dir, dir, dir);
    if (!ok(rc == 0, "jemc run: the library next to the graph is found without LD_LIBRARY_PATH")) tap_diag("%s", out);
    check_ops("ops_interp.safetensors", "interpreter");
    rc = sh(out, sizeof out, "%s run %s/ops.graph p --precision f64 --in %s/in.safetensors --out %s/ops_f64.safetensors", jemc, dir, dir, dir);
    if (!ok(rc == 0, "jemc run --precision f64 keeps the C types (f32 parameters get floats)")) tap_diag("%s", out);
    check_ops("ops_f64.safetensors", "interpreter, f64");
    rc = sh(out, sizeof out, "%s run %s/ops.graph p --target cpu --in %s/in.safetensors --out %s/ops_jit.safetensors", jemc, dir, dir, dir);
    if (!ok(rc == 0, "jemc run --target cpu")) tap_diag("%s", out);
    check_ops("ops_jit.safetensors", "JIT");
    rc = sh(out, sizeof out, "%s compile %s/ops.graph -o %s/ops", jemc, dir, dir);
    if (!ok(rc == 0, "jemc compile -o")) tap_diag("%s", out);
    rc = sh(out, sizeof out, "cd / && %s/ops exec p --in %s/in.safetensors --out %s/ops_exe.safetensors", dir, dir, dir);
    if (!ok(rc == 0, "EXE exec from another directory finds the library by its resolved path")) tap_diag("%s", out);
    check_ops("ops_exe.safetensors", "executable");
    rc = sh(out, sizeof out, "%s compile %s/ops.graph p --dump=fused", jemc, dir);
    if (!ok(rc == 0 && strstr(out, "extern count_above") && strstr(out, "extern halve"),
       "--dump=fused shows the calls as runtime steps, the one in the sampler loop included")) tap_diag("%s", out);

    /* ---- errors ------------------------------------------------------------------------------ */
    write_file("missing.graph",
               "extern \"libjemc_no_such_lib.so\" f(x: f32[3]) -> f32[]\n"
               "extern \"libtv.so\" nosuch(x: f32[3]) -> f32[3]\n"
               "program a() {\n"
               "    output y = f(ones([3]))\n"
               "}\n"
               "program b() {\n"
               "    output y = nosuch(ones([3]))\n"
               "}\n");
    rc = sh(out, sizeof out, "%s check %s/missing.graph", jemc, dir);
    expect(rc, out, 0, "ok (2 programs", "check does not load libraries");
    rc = sh(out, sizeof out, "%s run %s/missing.graph a", jemc, dir);
    expect(rc, out, 1, "jemc run: program a failed: extern f: cannot load libjemc_no_such_lib.so: ",
           "a missing library: the function and the library, exit 1");
    char needle[1024];
    snprintf(needle, sizeof needle, "jemc run: program b failed: extern nosuch: %s/libtv.so has no symbol nosuch", dir);
    rc = sh(out, sizeof out, "%s run %s/missing.graph b", jemc, dir);
    expect(rc, out, 1, needle, "a missing symbol: the library (resolved next to the graph) and the name, exit 1");
    rc = sh(out, sizeof out, "%s compile %s/missing.graph -o %s/missing", jemc, dir, dir);
    if (!ok(rc == 0, "a graph whose library is missing still compiles")) tap_diag("%s", out);
    rc = sh(out, sizeof out, "%s/missing exec a", dir);
    expect(rc, out, 1, "exec: program a failed: extern f: cannot load libjemc_no_such_lib.so", "EXE: a missing library, exit 1");
    rc = sh(out, sizeof out, "%s/missing exec b", dir);
    expect(rc, out, 1, "has no symbol nosuch", "EXE: a missing symbol, exit 1");

    write_file("type.graph",
               "extern \"libtv.so\" tv_energy(x: f32[1, 2, 3], n: i32[], h: i32[], w: i32[], weight: f32[]) -> f32[]\n"
               "program c(x: f32[2, 3]) {\n"
               "    output t = tv_energy(x, 1, 2, 3, 1.0)\n"
               "    output u = tv_energy(reshape(x, [1, 2, 3]), 1, 2, 3.5, 1.0)\n"
               "    output v = tv_energy(reshape(x, [1, 2, 3]), 1, 2, 3, weight=\"heavy\")\n"
               "}\n");
    rc = sh(out, sizeof out, "%s check %s/type.graph", jemc, dir);
    expect(rc, out, 1, "type.graph:3:26: error: tv_energy: argument 'x' has type f32[2,3], expected f32[1,2,3]",
           "an argument of the wrong shape: file:line:col, the parameter and both types");
    expect(rc, out, 1, "type.graph:4:55: error: tv_energy: argument 'w' is 3.5, expected i32[] (an integer)",
           "a fractional number for an integer parameter");
    expect(rc, out, 1, "type.graph:5:58: error: tv_energy: argument 'weight' is a string, expected f32[]",
           "a string for a tensor parameter (by name)");

    write_file("grad.graph",
               "extern \"libtv.so\" tv_energy(x: f32[1, 2, 3], n: i32[], h: i32[], w: i32[], weight: f32[]) -> f32[]\n"
               "program c(x: f32[1, 2, 3]) {\n"
               "    output g = grad(tv_energy(x, 1, 2, 3, 1.0) + sum(x), x)\n"
               "}\n"
               "program d(x: f32[1, 2, 3]) {\n"
               "    param w: f32[1, 2, 3] = 1\n"
               "    output g = grad(sum(w) + tv_energy(x * w, 1, 2, 3, 1.0), params)\n"
               "}\n");
    rc = sh(out, sizeof out, "%s check %s/grad.graph", jemc, dir);
    expect(rc, out, 1, "grad.graph:3:21: error: extern 'tv_energy' has no gradient; wrap its result in detach()",
           "grad through an extern: an error at the call, file:line:col");
    expect(rc, out, 1, "grad.graph:3:16: note: the gradient that reaches it is taken here", "... with a note at the grad");

    write_file("grad2.graph",
               "extern \"libtv.so\" tv_energy(x: f32[1, 2, 3], n: i32[], h: i32[], w: i32[], weight: f32[]) -> f32[]\n"
               "program d(x: f32[1, 2, 3]) {\n"
               "    param w: f32[1, 2, 3] = 1\n"
               "    output g = grad(sum(w) + tv_energy(x * w, 1, 2, 3, 1.0), params)\n"
               "}\n");
    rc = sh(out, sizeof out, "%s check %s/grad2.graph", jemc, dir);
    expect(rc, out, 1, "grad2.graph:4:30: error: extern 'tv_energy' has no gradient", "grad(loss, params) through an extern: the same error");

    if (h) dlclose(h);
    sh(out, sizeof out, "rm -rf %s", dir);
    return tap_done();
}
