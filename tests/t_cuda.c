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
static long (*fake_live)(void);

/* every program of a graph on the GPU against the CPU: values within tol at each
   tensor's own scale, changes to the globals within tol_change (max) and tol_rms */
static void gpu_graph(const char *label, const char *file, const char *const *defs, int ndefs, const char *arch, double tol,
                      double tol_change, double tol_rms) {
    jc_module c;
    if (!ok(jc_compile(&c, NULL, file, defs, ndefs) == 0, "%s: compiles for the CPU", label)) { tap_diag("%s", c.u.errors); jc_free(&c); return; }
    char devlib[600], err[1024], *ptx = NULL;
    snprintf(devlib, sizeof devlib, "%s/jemrt_dev.bc", build);
    char tools[400];
    snprintf(tools, sizeof tools, "%s/cuda-tools", build);
    jm_gpu_opts go = { arch, 3, NULL, NULL, tools, devlib };
    if (!ok(jm_gpu_ptx(&c.plan, &go, &ptx, err, sizeof err) == 0, "%s: compiles for %s", label, arch)) { tap_diag("%s", err); jc_free(&c); return; }
    const jm_table *t = &c.plan.table;
    char *names = malloc((size_t)t->nkernels * 300 + 1), *q = names;
    int *first = jm_kernels_dedup(&c.plan);
    for (int i = 0; i < t->nkernels; i++) q += sprintf(q, "%s %lld\n", c.plan.kernels[first[i]].name, (long long)jm_gpu_scale(&c.plan, i));
    /* on the stand-in, each PTX entry runs as its host emulation: the GPU entry's
       own code (flattened rows, item scale, grid-stride loop over 7 blocks) */
    jm_cpu_jit *emu = NULL;
    jm_kernel_fn *efns = NULL;
    if (fake_register) {
        jm_cpu_opts eo = { .opt = 2, .threads = 1, .gpu_emulation = 1 };
        emu = jm_cpu_jit_create(&c.plan, &eo, &efns, err, sizeof err);
        if (!ok(emu != NULL, "%s: the GPU entries compile for the host (emulation)", label)) tap_diag("%s", err);
        for (int i = 0; emu && i < t->nkernels; i++) fake_register(c.plan.kernels[first[i]].name, efns[i], c.plan.kernels[first[i]].nparam);
    }
    free(first);
    jm_gpu_image img = { ptx, NULL, 0, names, arch, "fp32" };
    for (int p = 0; p < t->nprograms; p++) {
        const jm_tprogram *tp = &t->programs[p];
        int runs = strcmp(tp->name, "train_step") == 0 ? 2 : 1;
        jm_tensor in[8];
        memset(in, 0, sizeof in);
        jc_fill_inputs(c.u.m, jm_module_find_program(c.u.m, tp->name), in, -1, 1, 2);
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
        jm_rt_open(&cpu, t, c.fns, 5);
        jm_rt_open(&gpu, t, c.fns, 5);
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
    free(names);
    free(ptx);
    if (emu) { jm_cpu_jit_free(emu); free(efns); }
    jc_free(&c);
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
    const char *mnist[] = { "batch=3", "buffer_size=20", "sgld_steps=3" };
    const char *wrn[] = { "batch=2", "depth=10", "widen=1", "classes=5", "buffer_size=10", "sgld_steps=2" };
    const char *mlp[] = { "batch=5", "sgld_steps=3" };
    gpu_graph("jem_mnist", "graphs/jem_mnist.graph", mnist, 3, arch, 1e-3, 0.5, 2e-3);
    gpu_graph("jem_wrn28 (depth 10)", "graphs/jem_wrn28.graph", wrn, 6, arch, 1e-3, 0.5, 2e-3);
    gpu_graph("mlp_tabular", "graphs/mlp_tabular.graph", mlp, 2, arch, 1e-3, 0.5, 2e-3);
    const char *vera[] = { "batch=3", "noise_dim=8", "g_feats=4", "post_samples=3", "sgld_steps=2" };
    gpu_graph("vera_mnist", "graphs/vera_mnist.graph", vera, 5, arch, 1e-3, 0.5, 2e-3);
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
    setenv("JEMC_LIBCUDA", lib, 1);
    setenv("JEMC_LIBCUBLAS", lib, 1);
    setenv("JEMC_LIBCUDNN", lib, 1);
    ok(fake_register && fake_counts && fake_live, "the CPU stand-in for CUDA loads (%s)", lib);
    const char *mnist[] = { "batch=3", "buffer_size=20", "sgld_steps=3" };
    const char *wrn[] = { "batch=2", "depth=10", "widen=1", "classes=5", "buffer_size=10", "sgld_steps=2" };
    const char *mlp[] = { "batch=5", "sgld_steps=3" };
    gpu_graph("fake GPU: jem_mnist", "graphs/jem_mnist.graph", mnist, 3, "sm_90", 1e-5, 0.5, 2e-3);
    gpu_graph("fake GPU: jem_wrn28 (depth 10)", "graphs/jem_wrn28.graph", wrn, 6, "sm_90", 1e-5, 0.5, 2e-3);
    gpu_graph("fake GPU: mlp_tabular", "graphs/mlp_tabular.graph", mlp, 2, "sm_90", 1e-5, 0.5, 2e-3);
    /* VERA: two generators' worth of batch norms, upsampling views, three optimizers, latent MALA */
    const char *vera[] = { "batch=3", "noise_dim=8", "g_feats=4", "post_samples=3", "sgld_steps=2" };
    gpu_graph("fake GPU: vera_mnist", "graphs/vera_mnist.graph", vera, 5, "sm_90", 1e-5, 0.5, 2e-3);
    long nl = 0, nr = 0;
    fake_counts(&nl, &nr);
    ok(nr > 0 && nl > 0, "programs ran as replayed CUDA graphs (%ld replays, %ld kernel launches)", nr, nl);
    ok(fake_live() == 0, "every device allocation was freed (%ld left)", fake_live());
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
