/* t_cuda.c — the CUDA backend.
 *
 * Without a GPU (every machine of CI):
 *   1. --dump=ptx / --target cuda for every shipped graph: PTX for sm_90 (and
 *      --gpu-arch sm_80), one entry per distinct kernel plus the runtime's
 *      library kernels the steps use; option errors.
 *   2. With CUDA's ptxas installed: every shipped graph's PTX assembles (the
 *      compile step runs ptxas and embeds the cubin), at full size; without it
 *      the executable carries PTX only and the compiler says so.
 *   3. A --target cuda executable on a machine without a driver (or without a
 *      GPU) stops before doing anything with a sentence saying so, and runs on
 *      the CPU with --device cpu.
 *   4. runtime/gpu/cuda_api.h against NVIDIA's headers, where they are installed
 *      (tests/cuda_decls_check.c must compile), and cuBLAS/cuDNN export every
 *      function jemc resolves, where those libraries are installed.
 * With a GPU (the same suite on a machine that has one):
 *   5. Every program of every shipped graph (small configurations) on the GPU
 *      against the CPU backend, outputs and state after the run (train_step
 *      twice), fp32 without TF32 (JEMC_GPU_FP32=1), compared as t_compiled.c
 *      compares the CPU with the interpreter (compiled_helpers.h): each tensor
 *      at its own scale, values within 1e-3 (summation orders differ in cuDNN,
 *      cuBLAS and the one-thread-per-output reductions; ill-conditioned
 *      tensors JC_TOL_ILL = 2e-2), the change each run makes to every global
 *      within 0.5 (max) and 2e-3 (rms); the state starts bitwise as the CPU's,
 *      and a program must run on both (failing on both is a failure). These
 *      bounds are the CPU's with a wider value bound; they were not measured
 *      on a GPU when they were set.
 * Everywhere (the CPU stand-in needs no GPU):
 *   6. The same on tests/fake_cuda.c, a CPU stand-in for CUDA: values within
 *      1e-5 (worst measured 1.6e-6; ill-conditioned 4.2e-3 in jem_mnist's
 *      opt.m.conv1.weight after train_step_cond: a leaky_relu slope flip),
 *      changes within 0.5 (worst 0.084, jem_mnist with slope 1) and 2e-3 rms
 *      (worst 3.7e-4; ill-conditioned 2.0e-3). A GPU that skips committing the
 *      state writes fails here (tests/mutations/). */
#include "tap.h"
#include "compiled_helpers.h"
#include "gpu_target.h"
#include "kernel_dedup.h"
#include "gpu/rt_cuda.h"
#include "gpu/cuda_api.h"
#include "engine/rt_knobs.h"
#include "gpu/rt_cuda_int.h"      /* the loaded cuBLAS's path (jm_gpu_of) */
#include "engine/rt_dp.h"
#include <math.h>
#include <dlfcn.h>
#include <unistd.h>

static const char *jemc, *build;

/* Under `make test SAN=1`: NVIDIA's driver (cuInit), cuBLAS and cuDNN keep
   allocations until exit that LeakSanitizer reports; they are not ours. */
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void) { return "leak:libcuda.so\nleak:libcublas\nleak:libcudnn\n"; }
static char dir[256];

static int J(char *out, size_t cap, const char *fmt, ...) {
    char args[4096], cmd[4400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    snprintf(cmd, sizeof cmd, "%s %s", jemc, args);
    return jt_run(cmd, out, cap);
}

static int count(const char *hay, const char *needle) {
    int n = 0;
    for (const char *p = hay; (p = strstr(p, needle)); p += strlen(needle)) n++;
    return n;
}

static const char *cuda_include(void) {
    static char buf[512];
    const char *home = getenv("CUDA_HOME");
    if (home && *home) {
        snprintf(buf, sizeof buf, "%s/include", home);
        char h[600];
        snprintf(h, sizeof h, "%s/cudnn.h", buf);
        if (access(h, R_OK) == 0) return buf;
    }
    if (access("/usr/local/cuda/include/cuda.h", R_OK) == 0 && access("/usr/local/cuda/include/cudnn.h", R_OK) == 0 &&
        access("/usr/local/cuda/include/cublas_v2.h", R_OK) == 0) return "/usr/local/cuda/include";
    return NULL;
}

static void ptx_dumps(void) {
    static char out[1 << 22];
    const char *graphs[] = { "graphs/jem_mnist.graph", "graphs/jem_wrn28.graph", "graphs/mlp_tabular.graph", "graphs/vera_mnist.graph" };
    for (int i = 0; i < 4; i++) {
        int rc = J(out, sizeof out, "compile %s --dump=ptx", graphs[i]);
        int entries = count(out, ".visible .entry jk_");
        if (!ok(rc == 0 && strstr(out, ".target sm_90") && strstr(out, ".address_size 64") && entries > 0,
                "--dump=ptx: %s is PTX for sm_90 (%d kernel entries)", graphs[i], entries))
            tap_diag("%.600s", out);
    }
    int rc = J(out, sizeof out, "compile graphs/jem_mnist.graph logits --dump=ptx --gpu-arch sm_80");
    ok(rc == 0 && strstr(out, ".target sm_80") && count(out, ".visible .entry") == 4 && count(out, ".visible .entry jk_logits_") == 4,
       "--dump=ptx PROGRAM --gpu-arch sm_80: the program's four fused kernels (three conv epilogues), for sm_80");
    /* the grid-stride loop: thread index from ctaid/ntid/tid, stride nctaid*ntid */
    ok(strstr(out, "%ctaid.x") && strstr(out, "%nctaid.x") && strstr(out, "%tid.x") && strstr(out, "ld.global"),
       "a kernel reads its thread's place in the grid and loads from global memory");
    rc = J(out, sizeof out, "compile graphs/jem_mnist.graph --dump=ptx --gpu-arch sm_99");
    ok(rc == 1 && strstr(out, "unknown --gpu-arch 'sm_99'") && strstr(out, "sm_90a"), "an unknown --gpu-arch is refused, naming the known ones");
    rc = J(out, sizeof out, "compile graphs/jem_mnist.graph -o %s/x --gpu-arch sm_80", dir);
    ok(rc == 1 && strstr(out, "--gpu-arch is for --target cuda"), "--gpu-arch without --target cuda is refused");
    rc = J(out, sizeof out, "compile graphs/jem_mnist.graph -o %s/x --target tpu", dir);
    ok(rc == 1 && strstr(out, "--target must be cpu or cuda, got 'tpu'"), "compile --target tpu is refused");
    rc = J(out, sizeof out, "compile graphs/jem_mnist.graph --dump=ptx --libdevice %s/none.bc", dir);
    ok(rc == 1 && strstr(out, "libdevice") && strstr(out, "none.bc"), "a --libdevice that cannot be read is named (a kernel needs it)");
}

static void ptxas_and_executables(void) {
    static char out[1 << 16];
    char tools[400];
    snprintf(tools, sizeof tools, "%s/cuda-tools", build);
    char *ptxas = jm_gpu_find_ptxas(tools);
    const char *graphs[] = { "graphs/jem_mnist.graph", "graphs/jem_wrn28.graph", "graphs/mlp_tabular.graph", "graphs/vera_mnist.graph" };
    const char *names[] = { "mnist", "wrn28", "mlp", "vera" };
    if (!ptxas) {
        skip(5, "CUDA's ptxas is not installed (tools/deps.sh cuda installs it): the PTX is not assembled here");
    } else {
        for (int i = 0; i < 4; i++) {
            int rc = J(out, sizeof out, "compile %s --target cuda -o %s/%s", graphs[i], dir, names[i]);
            if (!ok(rc == 0 && !strstr(out, "note:"), "%s: ptxas (%s) assembles every kernel for sm_90; the cubin is embedded", graphs[i], ptxas))
                tap_diag("%.2000s", out);
        }
        char cmd[1024];
        snprintf(cmd, sizeof cmd, "%s/mnist --version", dir);
        jt_run(cmd, out, sizeof out);
        ok(strstr(out, "GPU sm_90 (PTX and cubin, tf32)") != NULL, "EXE --version names the GPU code: %s", out);
    }
    free(ptxas);
    int rc = J(out, sizeof out, "compile graphs/mlp_tabular.graph --target cuda --gpu-arch sm_80 -o %s/mlp80 2>&1 | cat", dir);
    (void)rc;
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "JEMC_PTXAS= %s compile graphs/mlp_tabular.graph --target cuda -o %s/mlp_ptx", jemc, dir);
    rc = jt_run(cmd, out, sizeof out);
    ok(rc == 0 && strstr(out, "note: CUDA's ptxas was not found") && strstr(out, "PTX only"), "without ptxas the executable carries PTX only, and jemc says so");
    snprintf(cmd, sizeof cmd, "%s/mlp_ptx --version", dir);
    jt_run(cmd, out, sizeof out);
    ok(strstr(out, "GPU sm_90 (PTX only, tf32)") != NULL, "EXE --version says PTX only");
    rc = J(out, sizeof out, "compile graphs/mlp_tabular.graph --target cuda --precision fp32 -o %s/mlp32", dir);
    snprintf(cmd, sizeof cmd, "%s/mlp32 --version", dir);
    jt_run(cmd, out, sizeof out);
    ok(rc == 0 && strstr(out, ", fp32)"), "--precision fp32 is recorded in the executable");
    rc = J(out, sizeof out, "compile graphs/mlp_tabular.graph --target cuda --precision bf16 -o %s/mlpbf", dir);
    ok(rc == 1 && strstr(out, "bf16 is not implemented yet"), "--precision bf16 is refused, saying it is not implemented");
    rc = J(out, sizeof out, "compile graphs/mlp_tabular.graph --precision tf32 -o %s/mlpcpu", dir);
    ok(rc == 1 && strstr(out, "--precision is for --target cuda"), "--precision without --target cuda is refused");

    /* no driver: stop at once, with the way out */
    snprintf(cmd, sizeof cmd, "JEMC_LIBCUDA=%s/no/libcuda.so.1 %s/mlp_ptx exec sgld_grad", dir, dir);
    rc = jt_run(cmd, out, sizeof out);
    ok(rc == 1 && strstr(out, "no CUDA driver found") && strstr(out, "--device cpu runs them on this machine's CPU") &&
       !strstr(out, "takes inputs"), "a cuda executable without a driver says so before anything else, and how to use the CPU");
    snprintf(cmd, sizeof cmd, "JEMC_LIBCUDA=%s/no/libcuda.so.1 %s/mlp_ptx --device cpu exec sgld_grad", dir, dir);
    rc = jt_run(cmd, out, sizeof out);
    ok(rc == 1 && strstr(out, "takes inputs"), "--device cpu runs it on the CPU (it gets as far as asking for inputs)");
    snprintf(cmd, sizeof cmd, "JEMC_LIBCUDA=%s/no/libcuda.so.1 %s/mlp_ptx info", dir, dir);
    rc = jt_run(cmd, out, sizeof out);
    ok(rc == 0 && strstr(out, "parameters"), "EXE info needs no GPU");
    snprintf(cmd, sizeof cmd, "%s/mlp_ptx --device gpu info", dir);
    rc = jt_run(cmd, out, sizeof out);
    ok(rc == 1 && strstr(out, "--device must be cpu or cuda, got 'gpu'"), "a bad --device is refused");
    rc = J(out, sizeof out, "compile graphs/mlp_tabular.graph -o %s/mlp_cpu", dir);
    snprintf(cmd, sizeof cmd, "%s/mlp_cpu --device cuda info", dir);
    rc = jt_run(cmd, out, sizeof out);
    ok(rc == 1 && strstr(out, "has no GPU code"), "--device cuda on a CPU executable is refused");
}

static void declarations(void) {
    const char *inc = cuda_include();
    if (!inc) {
        skip(1, "NVIDIA's headers (cuda.h, cublas_v2.h, cudnn.h) are not installed: runtime/gpu/cuda_api.h is not checked against them");
    } else {
        char cmd[1024], out[8192];
        snprintf(cmd, sizeof cmd, "cc -std=gnu11 -fsyntax-only -Werror -Wno-enum-compare -Wno-deprecated-declarations -I%s -Iruntime tests/cuda_decls_check.c", inc);
        int rc = jt_run(cmd, out, sizeof out);
        if (!ok(rc == 0, "runtime/gpu/cuda_api.h declares every function and constant as %s's headers do", inc)) tap_diag("%.3000s", out);
    }
    jm_cuda_api api;
    memset(&api, 0, sizeof api);
    char err[600];
    if (jm_cuda_api_load_libs(&api, 1, 0, err, sizeof err) != 0 && strstr(err, "was not found")) {
        skip(1, "cuBLAS is not installed");
    } else {
        ok(api.cublasSgemmStridedBatched != NULL && api.cublasSetWorkspace_v2 != NULL, "cuBLAS exports every function jemc resolves%s%s",
           api.cublasCreate_v2 ? "" : ": ", api.cublasCreate_v2 ? "" : err);
    }
    int rc = jm_cuda_api_load_libs(&api, 0, 1, err, sizeof err);
    if (rc != 0 && strstr(err, "was not found")) skip(1, "cuDNN is not installed");
    else ok(rc == 0 && api.cudnnConvolutionBackwardFilter != NULL, "cuDNN exports every function jemc resolves%s%s", rc ? ": " : "", rc ? err : "");
    jm_cuda_api_unload(&api);
}

/* ---- on a GPU -------------------------------------------------------------------- */

/* the CPU stand-in for the GPU (tests/fake_cuda.c), when loaded */
static void (*fake_register)(const char *, jm_kernel_fn, int);
static void (*fake_counts)(long *, long *);
static long (*fake_live)(void), (*fake_live_descs)(void), (*fake_algo_uses)(int), (*fake_queries)(void);
static unsigned int (*fake_blas_math)(void);

/* A graph compiled for the CPU and for the GPU: its PTX and kernel list, and
   on the stand-in its GPU entries' host emulation registered under their names. */
typedef struct {
    jc_module c;
    char *ptx, *names;
    jm_cpu_jit *emu;
    jm_kernel_fn *efns;
} gpu_build;

static void gpu_build_free(gpu_build *gb) {
    free(gb->names);
    free(gb->ptx);
    if (gb->emu) { jm_cpu_jit_free(gb->emu); free(gb->efns); }
    jc_free(&gb->c);
    memset(gb, 0, sizeof *gb);
}

/* file, or the graph text itself when text is not NULL */
static int gpu_build_text(gpu_build *gb, const char *label, const char *text, const char *file, const char *const *defs, int ndefs,
                          const char *arch) {
    memset(gb, 0, sizeof *gb);
    jc_module *c = &gb->c;
    /* planned as `jemc compile --target cuda` plans: draws stay runtime steps (plan.h) */
    jm_plan_set_rng_fusion(0);
    int crc = jc_compile(c, text, file, defs, ndefs);
    jm_plan_set_rng_fusion(1);
    if (!ok(crc == 0, "%s: compiles for the CPU", label)) { tap_diag("%s", c->u.errors); jc_free(c); return -1; }
    char devlib[600], err[1024];
    snprintf(devlib, sizeof devlib, "%s/jemrt_dev.bc", build);
    char tools[400];
    snprintf(tools, sizeof tools, "%s/cuda-tools", build);
    jm_gpu_opts go = { arch, 3, NULL, NULL, tools, devlib };
    if (!ok(jm_gpu_ptx(&c->plan, &go, &gb->ptx, err, sizeof err) == 0, "%s: compiles for %s", label, arch)) { tap_diag("%s", err); jc_free(c); return -1; }
    const jm_table *t = &c->plan.table;
    char *q = gb->names = malloc((size_t)t->nkernels * 300 + 1);
    *q = 0;
    int *first = jm_kernels_dedup(&c->plan);
    for (int i = 0; i < t->nkernels; i++) q += sprintf(q, "%s %lld\n", c->plan.kernels[first[i]].name, (long long)jm_gpu_scale(&c->plan, i));
    /* on the stand-in, each PTX entry runs as its host emulation: the GPU entry's
       own code (flattened rows, item scale, grid-stride loop over 7 blocks) */
    if (fake_register) {
        jm_cpu_opts eo = { .opt = 2, .threads = 1, .gpu_emulation = 1 };
        gb->emu = jm_cpu_jit_create(&c->plan, &eo, &gb->efns, err, sizeof err);
        if (!ok(gb->emu != NULL, "%s: the GPU entries compile for the host (emulation)", label)) tap_diag("%s", err);
        for (int i = 0; gb->emu && i < t->nkernels; i++) fake_register(c->plan.kernels[first[i]].name, gb->efns[i], c->plan.kernels[first[i]].nparam);
    }
    free(first);
    return 0;
}
static int gpu_build_make(gpu_build *gb, const char *label, const char *file, const char *const *defs, int ndefs, const char *arch) {
    return gpu_build_text(gb, label, NULL, file, defs, ndefs, arch);
}

/* every program of a graph on the GPU against the CPU: values within tol at each
   tensor's own scale, changes to the globals within tol_change (max) and tol_rms */
static void gpu_graph(const char *label, const char *file, const char *const *defs, int ndefs, const char *arch, double tol,
                      double tol_change, double tol_rms) {
    gpu_build gb;
    if (gpu_build_make(&gb, label, file, defs, ndefs, arch) != 0) return;
    char *ptx = gb.ptx, *names = gb.names;
    const jm_table *t = &gb.c.plan.table;
    jm_gpu_image img = { ptx, NULL, 0, names, arch, "fp32", 0 };
    for (int p = 0; p < t->nprograms; p++) {
        const jm_tprogram *tp = &t->programs[p];
        int runs = strcmp(tp->name, "train_step") == 0 ? 2 : 1;
        jm_tensor in[8];
        memset(in, 0, sizeof in);
        jc_fill_inputs(gb.c.u.m, jm_module_find_program(gb.c.u.m, tp->name), in, -1, 1, 2);
        void *tin[8], *oc[64], *og[64];
        for (int i = 0; i < tp->ninputs; i++) {
            tin[i] = malloc((size_t)jm_rt_desc_numel(&tp->inputs[i]) * 8 + 8);
            jc_to_typed(&in[i], tp->inputs[i].dtype, tin[i]);
        }
        for (int i = 0; i < tp->noutputs; i++) {
            size_t b = (size_t)jm_rt_desc_numel(&tp->outputs[i]) * jm_rt_dtype_size(tp->outputs[i].dtype) + 8;
            oc[i] = malloc(b);
            og[i] = malloc(b);
        }
        jm_rt cpu, gpu;
        jm_rt_open(&cpu, t, gb.c.fns, 5);
        jm_rt_open(&gpu, t, gb.c.fns, 5);
        int arc = jm_rt_attach(&gpu, &jm_device_cuda, &img);
        if (!ok(arc == 0, "%s: %s: the GPU takes the program table", label, tp->name)) { tap_diag("%s", gpu.err); jm_rt_close(&cpu); jm_rt_close(&gpu); continue; }
        /* the state before each run, both sides; first, both must start bitwise alike */
        void **bc = calloc((size_t)t->nglobals + 1, sizeof *bc), **bg = calloc((size_t)t->nglobals + 1, sizeof *bg);
        const char *init_diff = NULL;
        for (int gi = 0; gi < t->nglobals; gi++) {
            size_t bytes = (size_t)jm_rt_desc_numel(&t->globals[gi].t) * jm_rt_dtype_size(t->globals[gi].t.dtype);
            bc[gi] = malloc(bytes + 8);
            bg[gi] = malloc(bytes + 8);
            if (!init_diff && memcmp(jm_rt_global_read(&gpu, gi), jm_rt_global_read(&cpu, gi), bytes) != 0) init_diff = t->globals[gi].t.name;
        }
        if (p == 0) ok(!init_diff, "%s: the GPU's state starts bitwise as the CPU's%s%s", label, init_diff ? "; not " : "", init_diff ? init_diff : "");
        int rc_c = 0, rc_g = 0;
        for (int r = 0; r < runs && rc_c == 0 && rc_g == 0; r++) {
            for (int gi = 0; gi < t->nglobals; gi++) {
                size_t bytes = (size_t)jm_rt_desc_numel(&t->globals[gi].t) * jm_rt_dtype_size(t->globals[gi].t.dtype);
                memcpy(bc[gi], jm_rt_global_read(&cpu, gi), bytes);
                memcpy(bg[gi], jm_rt_global_read(&gpu, gi), bytes);
            }
            rc_c = jm_rt_run(&cpu, p, (const void *const *)tin, oc);
            rc_g = jm_rt_run(&gpu, p, (const void *const *)tin, og);
            /* both must run: the same failure on both is a failure too */
            if (!ok(rc_c == 0 && rc_g == 0, "%s: %s run %d on both (cpu %d, gpu %d)", label, tp->name, r + 1, rc_c, rc_g)) {
                tap_diag("cpu: %s / gpu: %s", rc_c ? cpu.err : "ok", rc_g ? gpu.err : "ok");
                break;
            }
            jc_worst w = { 0, tol, 0, 0, tol_rms, "", "", "", 0, 0 };
            for (int i = 0; i < tp->noutputs; i++) {
                int64_t a = 0;
                double e = jc_value_err(og[i], tp->outputs[i].dtype, oc[i], tp->outputs[i].dtype, jm_rt_desc_numel(&tp->outputs[i]), &a);
                jc_note_value(&w, label, tp->outputs[i].name, e, jc_value_tol(tp->outputs[i].name, tol), a);
            }
            for (int gi = 0; gi < t->nglobals; gi++) {
                int64_t a = 0, n = jm_rt_desc_numel(&t->globals[gi].t);
                int dt = t->globals[gi].t.dtype;
                const void *sg = jm_rt_global_read(&gpu, gi), *sc = jm_rt_global_read(&cpu, gi);
                jc_note_value(&w, label, t->globals[gi].t.name, jc_value_err(sg, dt, sc, dt, n, &a), jc_value_tol(t->globals[gi].t.name, tol), a);
                if (jc_fresh_global(t->globals[gi].t.name)) continue;
                double rms = 0, e = jc_change_err(sg, bg[gi], dt, sc, bc[gi], dt, dt, n, &a, &rms);
                jc_note_change(&w, label, t->globals[gi].t.name, e, a, rms, jc_value_tol(t->globals[gi].t.name, tol_rms));
            }
            if (!ok(w.value <= w.vtol && w.change <= tol_change && w.rms <= w.rtol,
                    "%s: %s run %d on the GPU matches the CPU (values %.2g <= %g%s%s; changes %.2g <= %g%s%s, rms %.2g <= %g%s%s)",
                    label, tp->name, r + 1, w.value, w.vtol, *w.vname ? " in " : "", w.vname, w.change, tol_change,
                    *w.cname ? " in " : "", w.cname, w.rms, w.rtol, *w.rname ? " in " : "", w.rname)) {
                tap_diag("worst value at %s[%lld]; worst change at %s[%lld]", w.vname, (long long)w.vat, w.cname, (long long)w.cat);
                tap_diag("GPU: %s", gpu.dev->describe(&gpu));
            }
        }
        for (int gi = 0; gi < t->nglobals; gi++) { free(bc[gi]); free(bg[gi]); }
        free(bc);
        free(bg);
        jm_rt_close(&cpu);
        jm_rt_close(&gpu);
        for (int i = 0; i < tp->ninputs; i++) { free(tin[i]); jm_tensor_free(&in[i]); }
        for (int i = 0; i < tp->noutputs; i++) { free(oc[i]); free(og[i]); }
    }
    gpu_build_free(&gb);
}

static void on_gpu(void) {
    jm_cuda_api api;
    char why[600];
    if (jm_cuda_api_load_driver(&api, why, sizeof why) != 0) {
        jm_cuda_api_unload(&api);
        skip(1, why);
        printf("# SKIP the GPU suite (every shipped program on the GPU against the CPU): %s\n", why);
        return;
    }
    jm_CUdevice dev;
    int major = 9, minor = 0;
    api.cuDeviceGet(&dev, 0);
    api.cuDeviceGetAttribute(&major, JM_CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, dev);
    api.cuDeviceGetAttribute(&minor, JM_CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, dev);
    jm_cuda_api_unload(&api);
    char arch[16];
    snprintf(arch, sizeof arch, "sm_%d%d", major, minor);
    if (!jm_gpu_arch_ok(arch)) snprintf(arch, sizeof arch, "sm_90");
    ok(1, "a GPU is here (%s)", arch);
    setenv("JEMC_GPU_FP32", "1", 1);
    /* mala_temp=1: at JEM's temperature (5e-5) the MH tests of sample_mala and
       sample_hmc weigh energy differences 20,000-fold, so one float rounding
       apart between two backends flips a chain's decision (seen: an HMC
       accept count off by 1 of 3); at temperature 1 the decisions are robust */
    const char *mnist[] = { "batch=3", "buffer_size=20", "sgld_steps=3", "mala_temp=1" };
    const char *wrn[] = { "batch=2", "depth=10", "widen=1", "classes=5", "buffer_size=10", "sgld_steps=2" };
    const char *mlp[] = { "batch=5", "sgld_steps=3" };
    gpu_graph("jem_mnist", "graphs/jem_mnist.graph", mnist, 4, arch, 1e-3, 0.5, 2e-3);
    gpu_graph("jem_wrn28 (depth 10)", "graphs/jem_wrn28.graph", wrn, 6, arch, 1e-3, 0.5, 2e-3);
    gpu_graph("mlp_tabular", "graphs/mlp_tabular.graph", mlp, 2, arch, 1e-3, 0.5, 2e-3);
    const char *vera[] = { "batch=3", "noise_dim=8", "g_feats=4", "post_samples=3", "sgld_steps=2" };
    gpu_graph("vera_mnist", "graphs/vera_mnist.graph", vera, 5, arch, 1e-3, 0.5, 2e-3);
}

/* ---- the GPU runtime's rules, on the stand-in ----------------------------------------
   Each of these was a bug a reading against NVIDIA's documentation found
   (issue 21); the stand-in enforces the rule the real driver and libraries do. */

/* a program's inputs (filled once) and room for its outputs */
typedef struct {
    int p, nin, nout;
    jm_tensor in[8];
    void *tin[8], *out[64];
    size_t bytes[64];
} prog_io;

static int prog_io_make(prog_io *io, gpu_build *gb, const char *prog) {
    const jm_table *t = &gb->c.plan.table;
    memset(io, 0, sizeof *io);
    io->p = -1;
    for (int i = 0; i < t->nprograms; i++) if (strcmp(t->programs[i].name, prog) == 0) io->p = i;
    if (io->p < 0) return -1;
    const jm_tprogram *tp = &t->programs[io->p];
    io->nin = tp->ninputs;
    io->nout = tp->noutputs;
    jc_fill_inputs(gb->c.u.m, jm_module_find_program(gb->c.u.m, prog), io->in, -1, 1, 2);
    for (int i = 0; i < tp->ninputs; i++) {
        io->tin[i] = malloc((size_t)jm_rt_desc_numel(&tp->inputs[i]) * 8 + 8);
        jc_to_typed(&io->in[i], tp->inputs[i].dtype, io->tin[i]);
    }
    for (int i = 0; i < tp->noutputs; i++) {
        io->bytes[i] = (size_t)jm_rt_desc_numel(&tp->outputs[i]) * jm_rt_dtype_size(tp->outputs[i].dtype);
        io->out[i] = malloc(io->bytes[i] + 8);
    }
    return 0;
}
static void prog_io_free(prog_io *io) {
    for (int i = 0; i < io->nin; i++) { free(io->tin[i]); jm_tensor_free(&io->in[i]); }
    for (int i = 0; i < io->nout; i++) free(io->out[i]);
}
/* the outputs as they are now, kept */
static void **prog_io_keep(const prog_io *io) {
    void **k = calloc(64, sizeof *k);
    for (int i = 0; i < io->nout; i++) { k[i] = malloc(io->bytes[i] + 8); memcpy(k[i], io->out[i], io->bytes[i]); }
    return k;
}
static void kept_free(void **k, int n) {
    for (int i = 0; i < n; i++) free(k[i]);
    free(k);
}
static int same_outputs(const prog_io *io, void **want) {
    for (int i = 0; i < io->nout; i++)
        if (memcmp(io->out[i], want[i], io->bytes[i]) != 0) {
            size_t k = 0;
            while (k < io->bytes[i] && ((unsigned char *)io->out[i])[k] == ((unsigned char *)want[i])[k]) k++;
            tap_diag("output %d differs first at byte %zu of %zu", i, k, io->bytes[i]);
            return 0;
        }
    return 1;
}

/* Runs io's program `runs` times in a fresh runtime on the stand-in with image
   img; the outputs of the last run in io->out, the replays those runs added in
   *replays. 0, or -1 with the error in err. */
static int fake_runs(gpu_build *gb, prog_io *io, const jm_gpu_image *img, int runs, long *replays, char *err, size_t errlen) {
    long l0, r0, l1, r1;
    fake_counts(&l0, &r0);
    jm_rt rt;
    jm_rt_open(&rt, &gb->c.plan.table, gb->c.fns, 5);
    int rc = jm_rt_attach(&rt, &jm_device_cuda, img);
    for (int r = 0; r < runs && rc == 0; r++) rc = jm_rt_run(&rt, io->p, (const void *const *)io->tin, io->out);
    snprintf(err, errlen, "%s", rc ? rt.err : "");
    jm_rt_close(&rt);
    fake_counts(&l1, &r1);
    *replays = r1 - r0;
    return rc;
}

/* a copy of the stand-in at path (a distinct library to the loader) */
static int copy_file(const char *from, const char *to) {
    char cmd[1400], o[256];
    snprintf(cmd, sizeof cmd, "mkdir -p \"$(dirname '%s')\" && cp '%s' '%s'", to, from, to);
    return jt_run(cmd, o, sizeof o);
}

static void fake_gpu_rules(const char *lib) {
    /* mala_temp=1: at JEM's temperature (5e-5) the MH tests of sample_mala and
       sample_hmc weigh energy differences 20,000-fold, so one float rounding
       apart between two backends flips a chain's decision (seen: an HMC
       accept count off by 1 of 3); at temperature 1 the decisions are robust */
    const char *mnist[] = { "batch=3", "buffer_size=20", "sgld_steps=3", "mala_temp=1" };
    gpu_build gb;
    if (gpu_build_make(&gb, "rules: jem_mnist", "graphs/jem_mnist.graph", mnist, 4, "sm_90") != 0) return;
    jm_gpu_image img = { gb.ptx, NULL, 0, gb.names, "sm_90", "fp32", 0 };
    prog_io io;
    /* ce_grad: convolutions forward, data and filter gradients, a matrix product; no random numbers */
    if (!ok(prog_io_make(&io, &gb, "ce_grad") == 0, "jem_mnist has ce_grad")) { gpu_build_free(&gb); return; }
    long rep = 0;
    char err[1200] = "";

    /* graphs: the first run eager (library setup is not allowed under capture,
       which the stand-in enforces), captured from the second, replayed after */
    int rc = fake_runs(&gb, &io, &img, 1, &rep, err, sizeof err);
    ok(rc == 0 && rep == 0, "ce_grad's first run is eager: cuBLAS and cuDNN set up outside any capture (rc %d, %ld replays) %s", rc, rep, err);
    void **one = prog_io_keep(&io);
    rc = fake_runs(&gb, &io, &img, 3, &rep, err, sizeof err);
    ok(rc == 0 && rep == 2, "runs 2 and 3 replay a CUDA graph captured from the second (rc %d, %ld replays) %s", rc, rep, err);
    ok(rc == 0 && same_outputs(&io, one), "the replayed graph gives the eager run's outputs, bitwise");
    setenv("JEMC_GPU_GRAPHS", "0", 1);
    rc = fake_runs(&gb, &io, &img, 3, &rep, err, sizeof err);
    unsetenv("JEMC_GPU_GRAPHS");
    ok(rc == 0 && rep == 0 && same_outputs(&io, one), "JEMC_GPU_GRAPHS=0: no graphs, the same outputs (rc %d, %ld replays)", rc, rep);
    setenv("FAKE_CUDA_FAIL_INSTANTIATE", "1", 1);
    rc = fake_runs(&gb, &io, &img, 3, &rep, err, sizeof err);
    unsetenv("FAKE_CUDA_FAIL_INSTANTIATE");
    ok(rc == 0 && rep == 0 && same_outputs(&io, one),
       "a graph that cannot be instantiated: the program runs eagerly instead, the same outputs (rc %d, %ld replays) %s", rc, rep, err);

    /* cuDNN's algorithms: deterministic ones first, the math type each reported */
    long u6 = fake_algo_uses(6), u1 = fake_algo_uses(1), u0 = fake_algo_uses(0);
    rc = fake_runs(&gb, &io, &img, 2, &rep, err, sizeof err);
    ok(rc == 0 && fake_algo_uses(6) == u6 && fake_algo_uses(1) > u1,
       "convolutions use the first deterministic algorithm cuDNN offers, not its faster non-deterministic first choice (algorithm 6: %ld runs, 1: %ld)",
       fake_algo_uses(6) - u6, fake_algo_uses(1) - u1);
    ok(fake_blas_math() == JM_CUBLAS_DEFAULT_MATH, "fp32: cuBLAS in CUBLAS_DEFAULT_MATH, as PyTorch's float32 (mode %u)", fake_blas_math());
    setenv("JEMC_GPU_DETERMINISTIC", "0", 1);
    u6 = fake_algo_uses(6);
    rc = fake_runs(&gb, &io, &img, 2, &rep, err, sizeof err);
    unsetenv("JEMC_GPU_DETERMINISTIC");
    ok(rc == 0 && fake_algo_uses(6) > u6 && same_outputs(&io, one),
       "JEMC_GPU_DETERMINISTIC=0: cuDNN's first choice, its 1 MiB workspace given (rc %d, %ld runs) %s", rc, fake_algo_uses(6) - u6, err);
    setenv("FAKE_CUDA_CONV_FAIL_ALGO", "1", 1);
    u0 = fake_algo_uses(0);
    rc = fake_runs(&gb, &io, &img, 3, &rep, err, sizeof err);
    unsetenv("FAKE_CUDA_CONV_FAIL_ALGO");
    ok(rc == 0 && fake_algo_uses(0) > u0 && rep == 2 && same_outputs(&io, one),
       "an algorithm that fails to run: the next one is tried, and the graph captured after uses it (rc %d, %ld replays) %s", rc, rep, err);
    /* tf32: under CUDNN_DEFAULT_MATH the stand-in's algorithm 1 reports tensor-core
       math and runs only with it set on the descriptor */
    unsetenv("JEMC_GPU_FP32");
    jm_gpu_image img32 = img;
    img32.precision = "tf32";
    u0 = fake_algo_uses(0);
    u1 = fake_algo_uses(1);
    rc = fake_runs(&gb, &io, &img32, 2, &rep, err, sizeof err);
    ok(rc == 0 && fake_algo_uses(1) > u1 && fake_algo_uses(0) == u0,
       "tf32: each convolution runs its algorithm with the math type the query reported (tensor-core math for algorithm 1: %ld runs, "
       "none falling back to algorithm 0) %s", fake_algo_uses(1) - u1, err);
    ok(fake_blas_math() == JM_CUBLAS_TF32_TENSOR_OP_MATH, "tf32: cuBLAS in CUBLAS_TF32_TENSOR_OP_MATH (mode %u)", fake_blas_math());

    /* a preparation that fails half-way leaves no descriptors behind */
    char k[32];
    snprintf(k, sizeof k, "%ld", fake_queries() + 2);
    setenv("FAKE_CUDA_ALGO_QUERY_FAIL", k, 1);
    long d0 = fake_live_descs();
    const jm_table *t = &gb.c.plan.table;
    jm_rt rt;
    jm_rt_open(&rt, t, gb.c.fns, 5);
    int arc = jm_rt_attach(&rt, &jm_device_cuda, &img);
    int r1 = arc ? -1 : jm_rt_run(&rt, io.p, (const void *const *)io.tin, io.out);
    unsetenv("FAKE_CUDA_ALGO_QUERY_FAIL");
    ok(arc == 0 && r1 != 0 && strstr(rt.err, "algorithm choice"), "a failed cuDNN algorithm query fails the run, saying so: %s", rt.err);
    int r2 = arc ? -1 : jm_rt_run(&rt, io.p, (const void *const *)io.tin, io.out);
    ok(r2 == 0 && same_outputs(&io, one), "the next run prepares afresh and runs (rc %d) %s", r2, r2 ? rt.err : "");
    jm_rt_close(&rt);
    ok(fake_live_descs() == d0, "and no cuDNN descriptor of the failed preparation is left (%ld left)", fake_live_descs() - d0);
    kept_free(one, io.nout);
    prog_io_free(&io);

    /* a bad module: the PTX JIT's log, even after a cubin that did not load left its size at 0 */
    char bad_ptx[] = ".version 8.5\n.target sm_90\n.address_size 64\n// jemc-test-bad-ptx\n";
    static const char elf[] = "\177ELF not for this GPU";
    jm_gpu_image bad = { bad_ptx, (const unsigned char *)elf, sizeof elf, gb.names, "sm_90", "fp32", 0 };
    jm_rt_open(&rt, t, gb.c.fns, 5);
    arc = jm_rt_attach(&rt, &jm_device_cuda, &bad);
    ok(arc != 0 && strstr(rt.err, "CUDA_ERROR_INVALID_PTX") && strstr(rt.err, "Unknown symbol 'jemc-test-bad-ptx'"),
       "a PTX module the driver refuses: the error carries the JIT's log: %s", rt.err);
    jm_rt_close(&rt);

    /* cuBLAS: a libcublas.so.13 that does not start gives way to .12, with a note
       (a cuBLAS in the loader's path, as on a machine with CUDA installed, is
       tried first and fails the same way without a GPU) */
    char d[600], p13[700], p12[700];
    snprintf(d, sizeof d, "%s/cudahome", dir);
    snprintf(p13, sizeof p13, "%s/lib64/libcublas.so.13", d);
    snprintf(p12, sizeof p12, "%s/lib64/libcublas.so.12", d);
    int cp = copy_file(lib, p13) | copy_file(lib, p12);
    unsetenv("JEMC_LIBCUBLAS");
    setenv("CUDA_HOME", d, 1);
    setenv("FAKE_CUDA_CUBLAS_BROKEN", ".so.13", 1);
    jm_rt_open(&rt, t, gb.c.fns, 5);
    arc = jm_rt_attach(&rt, &jm_device_cuda, &img);
    ok(cp == 0 && arc == 0 && strcmp(jm_gpu_of(&rt)->api.cublas_path, p12) == 0,
       "cuBLAS .13 does not start: .12 found in $CUDA_HOME/lib64 takes its place (%s) %s", arc ? "" : jm_gpu_of(&rt)->api.cublas_path, arc ? rt.err : "");
    jm_rt_close(&rt);
    /* (another directory: the loader would hand back the .12 loaded above by its path) */
    snprintf(d, sizeof d, "%s/cudahome13", dir);
    snprintf(p13, sizeof p13, "%s/lib64/libcublas.so.13", d);
    cp = copy_file(lib, p13);
    setenv("CUDA_HOME", d, 1);
    jm_rt_open(&rt, t, gb.c.fns, 5);
    arc = jm_rt_attach(&rt, &jm_device_cuda, &img);
    ok(cp == 0 && arc != 0 && strstr(rt.err, "cudahome13/lib64/libcublas.so.13: CUBLAS_STATUS_NOT_INITIALIZED (1)") && strstr(rt.err, "no other cuBLAS"),
       "and alone it is refused by name and status: %s", rt.err);
    jm_rt_close(&rt);
    unsetenv("FAKE_CUDA_CUBLAS_BROKEN");
    unsetenv("CUDA_HOME");
    setenv("JEMC_LIBCUBLAS", lib, 1);
    char buf[80];
    ok(strcmp(jm_cublas_errstr(7, buf, sizeof buf), "CUBLAS_STATUS_INVALID_VALUE (7)") == 0, "cuBLAS statuses are named: %s", buf);

    /* cuDNN where a PyTorch wheel put it (~/.local/.../site-packages/nvidia/cudnn/lib) */
    const char *home = getenv("HOME");
    char oldhome[600] = "", wheel[900], h[700];
    if (home) snprintf(oldhome, sizeof oldhome, "%s", home);
    snprintf(h, sizeof h, "%s/home", dir);
    snprintf(wheel, sizeof wheel, "%s/.local/lib/python3.11/site-packages/nvidia/cudnn/lib/libcudnn.so.9", h);
    cp = copy_file(lib, wheel);
    setenv("HOME", h, 1);
    unsetenv("JEMC_LIBCUDNN");
    char **cand = NULL;
    int nc = jm_cuda_api_candidates("cudnn", &cand), at_wheel = -1, at_cuda = -1;
    for (int i = 0; i < nc; i++) {
        if (strcmp(cand[i], wheel) == 0) at_wheel = i;
        if (strcmp(cand[i], "/usr/local/cuda/lib64/libcudnn.so.9") == 0 || strncmp(cand[i], "/usr/local/cuda-", 16) == 0) at_cuda = at_cuda < 0 ? i : at_cuda;
    }
    ok(cp == 0 && nc > 3 && strcmp(cand[0], "libcudnn.so.9") == 0 && at_wheel > 0 && (at_cuda < 0 || at_cuda < at_wheel),
       "cuDNN is looked for through the loader first, then where CUDA installs, then in a Python wheel's nvidia/cudnn/lib (%d candidates, the wheel's %d)",
       nc, at_wheel);
    jm_cuda_api_candidates_free(cand, nc);
    /* loading it: where the loader finds no cuDNN (a machine without CUDA), the wheel's is the one */
    jm_cuda_api api;
    memset(&api, 0, sizeof api);
    int lr = jm_cuda_api_load_libs(&api, 0, 1, err, sizeof err);
    int elsewhere = lr == 0 && strcmp(api.cudnn_path, wheel) != 0;
    if (elsewhere) skip(2, "a cuDNN installed on this machine comes first; the wheel's is not loaded");
    else {
        ok(cp == 0 && lr == 0, "and it is loaded from there (%s) %s", api.cudnn_path, lr ? err : "");
        jm_cuda_api_unload(&api);
        unlink(wheel);
        memset(&api, 0, sizeof api);
        lr = jm_cuda_api_load_libs(&api, 0, 1, err, sizeof err);
        ok(lr != 0 && strstr(err, "site-packages/nvidia/cudnn/lib") && strstr(err, "/usr/local/cuda/lib64") && strstr(err, "JEMC_LIBCUDNN="),
           "without one, the error says where it looked and how to point at it: %s", err);
    }
    jm_cuda_api_unload(&api);
    if (oldhome[0]) setenv("HOME", oldhome, 1); else unsetenv("HOME");
    setenv("JEMC_LIBCUDNN", lib, 1);

    gpu_build_free(&gb);
}

/* A captured graph is valid for the trip counts of every knob-driven loop of its
   program, however many: nine loops, the ninth's knob changed between runs,
   must recapture (a key of eight kept replaying the old count). */
/* The worst value error of a program's outputs (og against oc) and of every
   global (gpu against cpu), each at its own scale, against 1e-5 */
static jc_worst gpu_against_cpu(const char *label, const jm_tprogram *tp, void **og, void **oc, jm_rt *gpu, jm_rt *cpu) {
    const jm_table *t = cpu->t;
    jc_worst w = { 0, 1e-5, 0, 0, 1, "", "", "", 0, 0 };
    for (int i = 0; i < tp->noutputs; i++) {
        int64_t at = 0;
        const jm_tdesc *d = &tp->outputs[i];
        jc_note_value(&w, label, d->name, jc_value_err(og[i], d->dtype, oc[i], d->dtype, jm_rt_desc_numel(d), &at), jc_value_tol(d->name, 1e-5), at);
    }
    for (int gi = 0; gi < t->nglobals; gi++) {
        int64_t at = 0;
        const jm_tdesc *d = &t->globals[gi].t;
        jc_note_value(&w, label, d->name, jc_value_err(jm_rt_global_read(gpu, gi), d->dtype, jm_rt_global_read(cpu, gi), d->dtype, jm_rt_desc_numel(d), &at),
                      jc_value_tol(d->name, 1e-5), at);
    }
    return w;
}

/* A data-parallel step on the GPU (engine/rt_dp.c over the device's
   run_phase and scratch_io): train_step over 2 micro-batches (--accumulate 2),
   two steps, on the stand-in and on the CPU. The per-example draws of shard 1
   are numbered by the global example and the replay buffer takes both shards'
   rows: a GPU that drew shard 0's numbers twice, or scattered one shard's
   rows, ends with another replay buffer. */
static void fake_gpu_shards(void) {
    const char *mnist[] = { "batch=3", "buffer_size=20", "sgld_steps=3", "mala_temp=1" };
    gpu_build gb;
    if (gpu_build_make(&gb, "shards: jem_mnist", "graphs/jem_mnist.graph", mnist, 4, "sm_90") != 0) return;
    jm_gpu_image img = { gb.ptx, NULL, 0, gb.names, "sm_90", "fp32", 0 };
    const jm_table *t = &gb.c.plan.table;
    prog_io a, b;
    if (!ok(prog_io_make(&a, &gb, "train_step") == 0 && prog_io_make(&b, &gb, "train_step") == 0, "jem_mnist has train_step")) {
        gpu_build_free(&gb);
        return;
    }
    const void *in[16];
    for (int i = 0; i < a.nin; i++) { in[i] = a.tin[i]; in[a.nin + i] = b.tin[i]; }
    void *oc[64], *og[64];
    for (int i = 0; i < a.nout; i++) { oc[i] = malloc(a.bytes[i] + 8); og[i] = malloc(a.bytes[i] + 8); }
    jm_rt cpu, gpu;
    jm_rt_open(&cpu, t, gb.c.fns, 5);
    jm_rt_open(&gpu, t, gb.c.fns, 5);
    int rc_c = 0, rc_g = jm_rt_attach(&gpu, &jm_device_cuda, &img);
    for (int r = 0; r < 2 && rc_c == 0 && rc_g == 0; r++) {
        rc_c = jm_rt_run_shards(&cpu, a.p, NULL, 2, in, oc);
        rc_g = jm_rt_run_shards(&gpu, a.p, NULL, 2, in, og);
    }
    if (ok(rc_c == 0 && rc_g == 0, "train_step over 2 micro-batches, 2 steps, on the CPU and on the stand-in (cpu %d, gpu %d)", rc_c, rc_g)) {
        jc_worst w = gpu_against_cpu("shards", &t->programs[a.p], og, oc, &gpu, &cpu);
        ok(w.value <= w.vtol, "the GPU's data-parallel step matches the CPU's: every output and state tensor within %g of its scale (worst %.2g%s%s)",
           w.vtol, w.value, *w.vname ? " in " : "", w.vname);
    } else {
        tap_diag("cpu: %s / gpu: %s", rc_c ? cpu.err : "ok", rc_g ? gpu.err : "ok");
        skip(1, "the step did not run");
    }
    jm_rt_close(&cpu);
    jm_rt_close(&gpu);
    jm_rt_dp_free();
    for (int i = 0; i < a.nout; i++) { free(oc[i]); free(og[i]); }
    prog_io_free(&a);
    prog_io_free(&b);
    gpu_build_free(&gb);
}

/* A mirror transport: rank 0 of 2 whose peer always holds what it holds (a
   sum doubles, a gather repeats), over host memory, and over "device" memory
   (the stand-in's device memory is host memory) with counted calls. */
static long mirror_dev_calls, mirror_dev_elems;
static int mirror_dev_fail;
static int mirror_f32(jm_coll *c, float *b, int64_t n, char *e, size_t el) { (void)c; (void)e; (void)el; for (int64_t i = 0; i < n; i++) b[i] += b[i]; return 0; }
static int mirror_f64(jm_coll *c, double *b, int64_t n, int op, char *e, size_t el) {
    (void)c; (void)e; (void)el;
    for (int64_t i = 0; op == JM_COLL_SUM && i < n; i++) b[i] += b[i];
    return 0;
}
static int mirror_gather(jm_coll *c, const void *s, int64_t bytes, void *r, char *e, size_t el) {
    (void)c; (void)e; (void)el;
    memcpy(r, s, (size_t)bytes);
    memcpy((char *)r + bytes, s, (size_t)bytes);
    return 0;
}
static int mirror_dev(jm_coll *c, uint64_t buf, int64_t n, int dtype, void *stream, char *e, size_t el) {
    (void)c; (void)stream;
    if (mirror_dev_fail) { snprintf(e, el, "the mirror's injected failure"); return -1; }
    mirror_dev_calls++;
    mirror_dev_elems += n;
    if (dtype == JM_COLL_F64) return mirror_f64(c, (double *)(uintptr_t)buf, n, JM_COLL_SUM, e, el);
    return mirror_f32(c, (float *)(uintptr_t)buf, n, e, el);
}
static int mirror_poll(jm_coll *c, char *e, size_t el) { (void)c; (void)e; (void)el; return 0; }

/* The means of a data-parallel step kept on the GPU (engine/rt_dp.c's device
   path: mean_dev, dp_wait, as NCCL runs them) against the host path on the
   CPU, through the mirror: the same step, within 1e-5 of each tensor's scale;
   every mean went through dev_allreduce; its error is the step's. */
static void fake_gpu_device_means(void) {
    const char *mnist[] = { "batch=3", "buffer_size=20", "sgld_steps=3", "mala_temp=1" };
    gpu_build gb;
    if (gpu_build_make(&gb, "device means: jem_mnist", "graphs/jem_mnist.graph", mnist, 4, "sm_90") != 0) return;
    jm_gpu_image img = { gb.ptx, NULL, 0, gb.names, "sm_90", "fp32", 0 };
    const jm_table *t = &gb.c.plan.table;
    prog_io a;
    if (prog_io_make(&a, &gb, "train_step") != 0) { gpu_build_free(&gb); return; }
    const jm_tprogram *tp = &t->programs[a.p];
    int64_t mean_elems = 0;
    for (int c = 0; c < tp->ncolls; c++)
        if (tp->colls[c].kind == JM_COLL_MEAN) mean_elems += tp->colls[c].bytes[0] / (tp->colls[c].dtype == JM_DT_F64 ? 8 : 4);
    jm_coll host = { .name = "mirror", .rank = 0, .size = 2, .local_rank = 0, .local_size = 2,
                     .allreduce_f32 = mirror_f32, .allreduce_f64 = mirror_f64, .allgather = mirror_gather };
    jm_coll dev = host;
    dev.dev_allreduce = mirror_dev;
    dev.dev_poll = mirror_poll;
    void *oc[64], *og[64];
    for (int i = 0; i < a.nout; i++) { oc[i] = malloc(a.bytes[i] + 8); og[i] = malloc(a.bytes[i] + 8); }
    jm_rt cpu, gpu;
    jm_rt_open(&cpu, t, gb.c.fns, 5);
    jm_rt_open(&gpu, t, gb.c.fns, 5);
    cpu.dp_bucket_bytes = 0;
    int rc_c = 0, rc_g = jm_rt_attach(&gpu, &jm_device_cuda, &img);
    mirror_dev_calls = mirror_dev_elems = 0;
    for (int r = 0; r < 2 && rc_c == 0 && rc_g == 0; r++) {
        rc_c = jm_rt_run_shards(&cpu, a.p, &host, 1, (const void *const *)a.tin, oc);
        rc_g = jm_rt_run_shards(&gpu, a.p, &dev, 1, (const void *const *)a.tin, og);
    }
    if (ok(rc_c == 0 && rc_g == 0 && mirror_dev_elems == 2 * mean_elems,
           "train_step as rank 0 of 2, 2 steps: the host path on the CPU, the device path on the stand-in (%ld dev_allreduce calls, %ld of 2 x %lld elements)",
           mirror_dev_calls, mirror_dev_elems, (long long)mean_elems)) {
        jc_worst w = gpu_against_cpu("device means", tp, og, oc, &gpu, &cpu);
        ok(w.value <= w.vtol, "means on the device (sum, then x 1/2 by jm_dev_scale) match the host's: every output and state tensor within %g of its scale (worst %.2g%s%s)",
           w.vtol, w.value, *w.vname ? " in " : "", w.vname);
    } else {
        tap_diag("cpu: %s / gpu: %s", rc_c ? cpu.err : "ok", rc_g ? gpu.err : "ok");
        skip(1, "the step did not run");
    }
    mirror_dev_fail = 1;
    int rc = jm_rt_run_shards(&gpu, a.p, &dev, 1, (const void *const *)a.tin, og);
    mirror_dev_fail = 0;
    ok(rc != 0 && strstr(gpu.err, "averaging over 2 GPUs: the mirror's injected failure"), "a device transport's error fails the step, named: %s", gpu.err);
    jm_rt_close(&cpu);
    jm_rt_close(&gpu);
    jm_rt_dp_free();
    for (int i = 0; i < a.nout; i++) { free(oc[i]); free(og[i]); }
    prog_io_free(&a);
    gpu_build_free(&gb);
}

static void fake_gpu_knob_loops(void) {
    const char *text =
        "config {\n  s1 = 1\n  s2 = 1\n  s3 = 1\n  s4 = 1\n  s5 = 1\n  s6 = 1\n  s7 = 1\n  s8 = 1\n  s9 = 1\n}\n"
        "sampler inc(x, steps=1, by=1) {\n    x = x + by\n}\n"
        "program p(x: f32[4]) {\n"
        "    output y = inc(inc(inc(inc(inc(inc(inc(inc(inc(x, steps=s1), steps=s2, by=2), steps=s3, by=4), steps=s4, by=8),\n"
        "               steps=s5, by=16), steps=s6, by=32), steps=s7, by=64), steps=s8, by=128), steps=s9, by=256)\n"
        "}\n";
    gpu_build gb;
    if (gpu_build_text(&gb, "nine knob loops", text, NULL, NULL, 0, "sm_90") != 0) return;
    jm_gpu_image img = { gb.ptx, NULL, 0, gb.names, "sm_90", "fp32", 0 };
    const jm_table *t = &gb.c.plan.table;
    jm_rt rt;
    jm_rt_open(&rt, t, gb.c.fns, 5);
    int rc = jm_rt_attach(&rt, &jm_device_cuda, &img);
    float x[4] = { 0, 1, 2, 3 }, y[4] = { 0 };
    void *in[1] = { x }, *out[1] = { y };
    char got[200] = "";
    long l0, r0, l1, r1;
    fake_counts(&l0, &r0);
    /* eager, captured, replayed; then s9 = 2 and s1 = 3 in turn */
    const char *sets[5] = { NULL, NULL, NULL, "s9=2", "s1=3" };
    float want[5] = { 511, 511, 511, 767, 769 };
    int good = rc == 0;
    for (int r = 0; r < 5 && good; r++) {
        char err[300];
        if (sets[r] && jm_knob_assign(&rt, sets[r], err, sizeof err) != 0) { good = 0; break; }
        if (jm_rt_run(&rt, 0, (const void *const *)in, out) != 0) { good = 0; break; }
        size_t k = strlen(got);
        snprintf(got + k, sizeof got - k, "%s%g", r ? " " : "", y[0]);
        good = y[0] == want[r] && y[3] == want[r] + 3;
    }
    fake_counts(&l1, &r1);
    ok(good && r1 - r0 == 4, "nine knob-driven loops: the graph is captured again when the ninth's (then the first's) count changes "
       "(x[0] after each run: %s, want 511 511 511 767 769; %ld replays) %s", got, r1 - r0, good ? "" : rt.err);
    jm_rt_close(&rt);
    gpu_build_free(&gb);
}

/* The device library's random numbers round as the CPU's: no multiply-add may
   be contracted into an FMA (clang's default for the NVPTX target). */
static void devlib_no_fma(void) {
    char cmd[700], out[4096];
    snprintf(cmd, sizeof cmd, "llvm-dis-19 %s/jemrt_dev.bc -o - | grep -c 'llvm.fmuladd\\|llvm.fma'", build);
    jt_run(cmd, out, sizeof out);
    ok(atoi(out) == 0, "the GPU's device library (jemrt_dev.bc) has no contracted multiply-adds: its Philox uniforms and normals round as the CPU's (%d found)", atoi(out));
}

/* The GPU runtime's host side against tests/fake_cuda.c: the same programs,
   the same comparisons. Fused kernels there are the GPU entries' own code run
   on the host (jm_gpu_kernel_emit_host: rows flattened to elements, the item
   scale, the grid-stride loop), library kernels dev_lib.c compiled for the
   host; the stand-in's convolutions and products sum in double (tolerance 1e-5). */
static void on_fake_gpu(void) {
    char lib[600];
    snprintf(lib, sizeof lib, "%s/tests/libfakecuda.so", build);
    void *h = dlopen(lib, RTLD_NOW | RTLD_LOCAL);
    if (!h) { skip(1, "the CPU stand-in for CUDA (build/tests/libfakecuda.so) is not built"); return; }
    fake_register = (void (*)(const char *, jm_kernel_fn, int))dlsym(h, "fake_cuda_register");
    fake_counts = (void (*)(long *, long *))dlsym(h, "fake_cuda_counts");
    fake_live = (long (*)(void))dlsym(h, "fake_cuda_live_allocs");
    fake_live_descs = (long (*)(void))dlsym(h, "fake_cuda_live_descs");
    fake_algo_uses = (long (*)(int))dlsym(h, "fake_cuda_algo_uses");
    fake_queries = (long (*)(void))dlsym(h, "fake_cuda_queries");
    fake_blas_math = (unsigned int (*)(void))dlsym(h, "fake_cuda_blas_math");
    setenv("JEMC_LIBCUDA", lib, 1);
    setenv("JEMC_LIBCUBLAS", lib, 1);
    setenv("JEMC_LIBCUDNN", lib, 1);
    if (!ok(fake_register && fake_counts && fake_live && fake_live_descs && fake_algo_uses && fake_queries && fake_blas_math,
            "the CPU stand-in for CUDA loads (%s)", lib)) return;
    /* mala_temp=1: at JEM's temperature (5e-5) the MH tests of sample_mala and
       sample_hmc weigh energy differences 20,000-fold, so one float rounding
       apart between two backends flips a chain's decision (seen: an HMC
       accept count off by 1 of 3); at temperature 1 the decisions are robust */
    const char *mnist[] = { "batch=3", "buffer_size=20", "sgld_steps=3", "mala_temp=1" };
    const char *wrn[] = { "batch=2", "depth=10", "widen=1", "classes=5", "buffer_size=10", "sgld_steps=2" };
    const char *mlp[] = { "batch=5", "sgld_steps=3" };
    gpu_graph("fake GPU: jem_mnist", "graphs/jem_mnist.graph", mnist, 4, "sm_90", 1e-5, 0.5, 2e-3);
    gpu_graph("fake GPU: jem_wrn28 (depth 10)", "graphs/jem_wrn28.graph", wrn, 6, "sm_90", 1e-5, 0.5, 2e-3);
    gpu_graph("fake GPU: mlp_tabular", "graphs/mlp_tabular.graph", mlp, 2, "sm_90", 1e-5, 0.5, 2e-3);
    /* VERA: two generators' worth of batch norms, upsampling views, three optimizers, latent MALA */
    const char *vera[] = { "batch=3", "noise_dim=8", "g_feats=4", "post_samples=3", "sgld_steps=2" };
    gpu_graph("fake GPU: vera_mnist", "graphs/vera_mnist.graph", vera, 5, "sm_90", 1e-5, 0.5, 2e-3);
    /* after the comparisons: jc_fill_inputs draws from one sequence, and the
       tolerances above were measured on the inputs drawn first */
    fake_gpu_rules(lib);
    fake_gpu_knob_loops();
    fake_gpu_shards();
    fake_gpu_device_means();
    long nl = 0, nr = 0;
    fake_counts(&nl, &nr);
    ok(nr > 0 && nl > 0, "programs ran as replayed CUDA graphs (%ld replays, %ld kernel launches)", nr, nl);
    ok(fake_live() == 0 && fake_live_descs() == 0, "every device allocation and cuDNN descriptor was freed (%ld, %ld left)", fake_live(), fake_live_descs());
    unsetenv("JEMC_LIBCUDA");
    unsetenv("JEMC_LIBCUBLAS");
    unsetenv("JEMC_LIBCUDNN");
    fake_register = NULL;
}

int main(void) {
    jemc = jt_env("JEMC", "build/jemc");
    build = jt_env("JM_BUILD", "build");
    snprintf(dir, sizeof dir, "/tmp/jemc_cuda_XXXXXX");
    if (!mkdtemp(dir)) skip_all("cannot create a temporary directory");
    char tools[400], buf[600];
    snprintf(tools, sizeof tools, "%s/cuda-tools", build);
    declarations();
    if (!jm_gpu_find_libdevice(NULL, tools, buf, sizeof buf)) {
        /* the shipped graphs' kernels need it (Adam's bias correction is a pow) */
        skip(1, "CUDA's libdevice is not installed (make deps-cuda fetches it): nothing is compiled for the GPU here");
    } else {
        devlib_no_fma();
        ptx_dumps();
        ptxas_and_executables();
        on_gpu();
        on_fake_gpu();
    }
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0) tap_diag("could not remove %s", dir);
    return tap_done();
}
