/* main.c — the `jemc` driver.
 *
 *   jemc check   GRAPH [-D k=v]...                       parse and type-check
 *   jemc info    GRAPH [-D k=v]...                       parameters and MACs per program
 *   jemc compile GRAPH -o EXE [--cpu NAME] [--emit=...] | --dump=ir|grad|simplify|lower|dp|fused|plan [-D k=v]...
 *   jemc run     GRAPH PROGRAM [--state S] [--in IN] [--out OUT] [--state-out S2]
 *                [--target interp|cpu] [--precision f32|f64] [--seed N] [--threads N] [-D k=v]...
 */
#include "elab.h"
#include "grad.h"
#include "simplify.h"
#include "batch.h"
#include "info.h"
#include "interp.h"
#include "llvm_host.h"
#include "tensorio.h"
#include "lower.h"
#include "dp.h"
#include "plan.h"
#include "cpu_target.h"
#include "gpu_target.h"
#include "kernel_dedup.h"
#include "app/rt_cli.h"
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>
#include <limits.h>
#include <time.h>
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#define JM_VERSION "0.1.0"

/* --time: seconds per phase of the compilation, on stderr */
static int jm_time_on;
static double jm_time_last;
static double jm_clock(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
static void jm_time_phase(const char *what) {
    double now = jm_clock();
    if (jm_time_on && jm_time_last > 0) fprintf(stderr, "jemc: %-34s %8.3f s\n", what, now - jm_time_last);
    jm_time_last = now;
}

static void jm_usage(FILE *out) {
    fprintf(out,
        "jemc " JM_VERSION " — a compiler for Joint Energy-based Models\n"
        "\n"
        "usage:\n"
        "  jemc check   GRAPH [-D name=value]...\n"
        "  jemc info    GRAPH [-D name=value]...\n"
        "  jemc compile GRAPH -o EXE [--target cpu|cuda] [--cpu NAME] [--gpu-arch sm_90] [--precision tf32|fp32]\n"
        "               [--libdevice BC]\n"
        "               [--emit=exe|obj|asm|llvm] [-O0..3] [--fuse=on|off] [--batch-twins=auto|on|off]\n"
        "               [--time] [-D name=value]...\n"
        "  jemc compile GRAPH [PROGRAM] --dump=ir|batch|grad|simplify|lower|dp|fused|plan|ptx [-D name=value]...\n"
        "  jemc run     GRAPH PROGRAM [--state S.safetensors] [--in IN.safetensors]\n"
        "               [--out OUT.safetensors] [--state-out S2.safetensors]\n"
        "               [--target interp|cpu] [--precision f32|f64] [--seed N] [--threads N]\n"
        "               [--batch-twins=auto|on|off] [-D name=value]...\n"
        "\n"
        "  check     parses, elaborates and type-checks every program; reports errors as file:line:col\n"
        "  info      parameter count and multiply-accumulates of every program\n"
        "  compile   -o EXE writes a native executable running every program (EXE exec PROGRAM ...,\n"
        "            EXE --help); --cpu x86-64-v3 makes it portable; --emit=obj|asm|llvm writes the\n"
        "            kernels and program table instead. --dump=ir prints the IR as elaborated, grad after\n"
        "            autodiff, simplify after simplification, lower after lowering composites, dp what\n"
        "            the training programs share across data-parallel shards (docs/data-parallel.md),\n"
        "            fused the kernels and steps, plan the memory plan (docs/backend-cpu.md). --fuse=off\n"
        "            runs every elementwise op as its own kernel and no convolution epilogue (to measure\n"
        "            what fusion buys; docs/fused-samplers.md). --batch-twins=on runs two evaluations of one\n"
        "            model in a program (the JEM loss's data and samples) as one of twice the batch (auto:\n"
        "            on for cuda, off for cpu where it does not pay; --dump=batch shows the pairs)\n"
        "  run       evaluates one program with the reference interpreter (or --target cpu: compiled\n"
        "            code through LLVM's JIT): parameters and state\n"
        "            from --state (by PyTorch name), inputs from --in (by name), every output to --out\n"
        "  -D name=value   overrides a config constant of the graph (e.g. -D batch=8)\n");
}

typedef struct {
    const char *cmd, *graph, *program, *state, *in, *out, *state_out, *target, *precision, *output_exe, *dump, *cpu, *emit, *opt, *fuse, *batch;
    const char *gpu_arch, *libdevice, *gpu_precision;
    int threads, time, precision_given;
    uint64_t seed;
    int seed_given;
    jm_define *defs; int ndefs;
} jm_opts;

static int jm_parse_opts(int argc, char **argv, jm_opts *o) {
    memset(o, 0, sizeof *o);
    o->cmd = argv[1];
    o->target = "interp";
    o->precision = "f32";
    o->defs = calloc((size_t)argc, sizeof(jm_define));
    int npos = 0;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        const char *val = NULL;
#define JM_OPT(flag, field)                                                                   \
        if (strcmp(a, flag) == 0) {                                                           \
            if (i + 1 >= argc) { fprintf(stderr, "jemc: %s needs a value\n", flag); return -1; } \
            o->field = argv[++i]; continue;                                                   \
        }                                                                                     \
        if (strncmp(a, flag "=", strlen(flag) + 1) == 0) { o->field = a + strlen(flag) + 1; continue; }
        JM_OPT("--state", state)
        JM_OPT("--in", in)
        JM_OPT("--out", out)
        JM_OPT("--state-out", state_out)
        JM_OPT("--target", target)
        if (strcmp(a, "--precision") == 0 || strncmp(a, "--precision=", 12) == 0) o->precision_given = 1;
        JM_OPT("--precision", precision)
        JM_OPT("-o", output_exe)
        JM_OPT("--dump", dump)
        JM_OPT("--cpu", cpu)
        JM_OPT("--emit", emit)
        JM_OPT("-O", opt)
        JM_OPT("--gpu-arch", gpu_arch)
        JM_OPT("--libdevice", libdevice)
        JM_OPT("--fuse", fuse)
        JM_OPT("--batch-twins", batch)
#undef JM_OPT
        if (a[0] == '-' && a[1] == 'O' && a[2] >= '0' && a[2] <= '3' && !a[3]) { o->opt = a + 2; continue; }
        if (strcmp(a, "--time") == 0) { o->time = 1; continue; }
        if (strcmp(a, "--threads") == 0 || strncmp(a, "--threads=", 10) == 0) {
            val = a[9] == '=' ? a + 10 : (i + 1 < argc ? argv[++i] : NULL);
            char *end;
            long t = val ? strtol(val, &end, 10) : -1;
            if (!val || !*val || *end || t < 0 || t > 4096) { fprintf(stderr, "jemc: --threads needs a number of threads (0: all cores)\n"); return -1; }
            o->threads = (int)t;
            continue;
        }
        if (strcmp(a, "--seed") == 0 || strncmp(a, "--seed=", 7) == 0) {
            val = a[6] == '=' ? a + 7 : (i + 1 < argc ? argv[++i] : NULL);
            char *end;
            errno = 0;
            unsigned long long s = val ? strtoull(val, &end, 10) : 0;
            if (!val || !*val || *end || errno) { fprintf(stderr, "jemc: --seed needs a non-negative integer\n"); return -1; }
            o->seed = s;
            o->seed_given = 1;
            continue;
        }
        if (strcmp(a, "-D") == 0 || strncmp(a, "-D", 2) == 0) {
            val = a[2] ? a + 2 : (i + 1 < argc ? argv[++i] : NULL);
            const char *eq = val ? strchr(val, '=') : NULL;
            if (!val || !eq || eq == val) {
                fprintf(stderr, "jemc: -D needs name=value (e.g. -D batch=8)\n");
                return -1;
            }
            o->defs[o->ndefs].name = strndup(val, (size_t)(eq - val));
            o->defs[o->ndefs].value = eq + 1;
            for (int k = 0; k < o->ndefs; k++)
                if (strcmp(o->defs[k].name, o->defs[o->ndefs].name) == 0) {
                    fprintf(stderr, "jemc: error: -D %s given twice\n", o->defs[k].name);
                    free((char *)o->defs[o->ndefs].name);
                    return -1;
                }
            o->ndefs++;
            continue;
        }
        if (a[0] == '-' && a[1]) { fprintf(stderr, "jemc: unknown option '%s' (see jemc --help)\n", a); return -1; }
        if (npos == 0) o->graph = a;
        else if (npos == 1) o->program = a;
        else { fprintf(stderr, "jemc: unexpected argument '%s'\n", a); return -1; }
        npos++;
    }
    if (!o->graph) { fprintf(stderr, "jemc %s: missing the graph file\n", o->cmd); return -1; }
    return 0;
}

static void jm_free_opts(jm_opts *o) {
    for (int i = 0; i < o->ndefs; i++) free((char *)o->defs[i].name);
    free(o->defs);
}

/* FNV-1a over every source file the graph read (the graph and its imports) */
static uint64_t jm_sources_hash(const jm_diags *d) {
    uint64_t h = 1469598103934665603ull;
    for (int i = 0; i < d->nsrc; i++)
        for (size_t k = 0; k < d->src[i].len; k++) { h ^= (unsigned char)d->src[i].text[k]; h *= 1099511628211ull; }
    return h;
}

static void jm_fill_table_info(jm_plan *plan, jm_opts *o, const jm_diags *d, char **cpu_out) {
    jm_cpu_opts co = { .cpu = o->cpu, .opt = o->opt ? atoi(o->opt) : 3 };
    char *cpu, *features;
    jm_cpu_resolve(&co, &cpu, &features);
    /* "znver4 (avx512f avx2 fma)": the CPU, then the instruction sets the runtime
       checks before running (an executable copied to an older machine must say
       so instead of dying of SIGILL) */
    const char *isa[] = { "avx512f", "avx2", "fma", "avx" };
    const char *named_v4 = strstr(cpu, "x86-64-v4"), *named_v3 = strstr(cpu, "x86-64-v3");
    char *desc = malloc(strlen(cpu) + 64), *q = desc;
    q += sprintf(q, "%s (", cpu);
    int nisa = 0;
    for (int i = 0; i < 4; i++) {
        char want[32];
        snprintf(want, sizeof want, "+%s,", isa[i]);
        char feats[4096];
        snprintf(feats, sizeof feats, "%s,", features);
        int has = strstr(feats, want) != NULL || (named_v4 && i <= 3) || (named_v3 && i >= 1);
        if (has) q += sprintf(q, "%s%s", nisa++ ? " " : "", isa[i]);
    }
    sprintf(q, ")");
    free(features);
    free(cpu);
    cpu = desc;
    plan->table.graph = o->graph;
    plan->table.cpu = cpu;
    plan->table.graph_hash = jm_sources_hash(d);
    *cpu_out = cpu;
}

/* the directory jemc runs from: libjemrt.a and jemrt_main.o sit next to it */
static int jm_self_dir(char *buf, size_t n) {
    const char *env = getenv("JEMC_RUNTIME_DIR");
    if (env && *env) { snprintf(buf, n, "%s", env); return 0; }
    ssize_t k = readlink("/proc/self/exe", buf, n - 1);
    if (k <= 0) return -1;
    buf[k] = 0;
    char *slash = strrchr(buf, '/');
    if (!slash) return -1;
    *slash = 0;
    return 0;
}

static int jm_spawn(char *const *argv) {
    extern char **environ;
    pid_t pid;
    if (posix_spawnp(&pid, argv[0], NULL, NULL, argv, environ) != 0) return -1;
    int st;
    if (waitpid(pid, &st, 0) < 0) return -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* The GPU image an executable of --target cuda carries (gpu_target.h): the PTX
   of every kernel, a cubin when ptxas is here, the kernel names by the table's
   kernel index (one per line; a kernel that shares code names the first of
   its kind) with its item scale (gpu_kernel.h), and the architecture. */
typedef struct {
    char *ptx, *names, arch[16], precision[8];
    unsigned char *cubin;
    size_t cubin_len;
    jm_cpu_blob blobs[5];
} jm_gpu_build;

static void jm_gpu_build_free(jm_gpu_build *g) {
    free(g->ptx);
    free(g->names);
    free(g->cubin);
}

static int jm_gpu_build_image(jm_opts *o, jm_plan *plan, jm_gpu_build *g) {
    char err[1024], dir[PATH_MAX], devlib[PATH_MAX + 32], tools[PATH_MAX + 32];
    if (jm_self_dir(dir, sizeof dir) != 0) { fprintf(stderr, "jemc compile: cannot find the runtime library (set JEMC_RUNTIME_DIR)\n"); return -1; }
    snprintf(devlib, sizeof devlib, "%s/jemrt_dev.bc", dir);
    snprintf(tools, sizeof tools, "%s/cuda-tools", dir);
    jm_gpu_opts go = { o->gpu_arch ? o->gpu_arch : "sm_90", o->opt ? atoi(o->opt) : 3, o->libdevice, NULL, tools, devlib };
    snprintf(g->arch, sizeof g->arch, "%s", go.arch);
    if (jm_gpu_ptx(plan, &go, &g->ptx, err, sizeof err) != 0) { fprintf(stderr, "jemc compile: %s\n", err); return -1; }
    jm_time_phase("LLVM NVPTX codegen");
    char *ptxas = jm_gpu_find_ptxas(tools);
    if (!ptxas) {
        fprintf(stderr, "jemc compile: note: CUDA's ptxas was not found, so %s carries PTX only, which the CUDA driver "
                        "compiles when it first loads it (put ptxas on PATH, or set CUDA_HOME or JEMC_PTXAS)\n", o->output_exe);
    } else {
        int arc = jm_gpu_assemble(ptxas, g->ptx, go.arch, &g->cubin, &g->cubin_len, err, sizeof err);
        free(ptxas);
        if (arc != 0) { fprintf(stderr, "jemc compile: %s\n", err); jm_gpu_build_free(g); return -1; }
        jm_time_phase("ptxas");
    }
    int *first = jm_kernels_dedup(plan);
    size_t len = 1;
    for (int i = 0; i < plan->nkernels; i++) len += strlen(plan->kernels[first[i]].name) + 24;
    g->names = malloc(len);
    char *q = g->names;
    for (int i = 0; i < plan->nkernels; i++)
        q += sprintf(q, "%s %" PRId64 "\n", plan->kernels[first[i]].name, jm_gpu_scale(plan, i));
    free(first);
    g->blobs[0] = (jm_cpu_blob){ "jm_gpu_ptx", g->ptx, (int64_t)strlen(g->ptx) + 1 };
    g->blobs[1] = (jm_cpu_blob){ "jm_gpu_cubin", g->cubin, (int64_t)g->cubin_len };
    g->blobs[2] = (jm_cpu_blob){ "jm_gpu_kernels", g->names, (int64_t)strlen(g->names) + 1 };
    g->blobs[3] = (jm_cpu_blob){ "jm_gpu_arch", g->arch, (int64_t)strlen(g->arch) + 1 };
    snprintf(g->precision, sizeof g->precision, "%s", o->gpu_precision ? o->gpu_precision : "tf32");
    g->blobs[4] = (jm_cpu_blob){ "jm_gpu_precision", g->precision, (int64_t)strlen(g->precision) + 1 };
    return 0;
}

/* --dump=ptx: the PTX of the kernels (of PROGRAM's, when given) */
static int jm_cmd_dump_ptx(jm_opts *o, jm_plan *plan) {
    char err[1024], *ptx = NULL, dir[PATH_MAX], tools[PATH_MAX + 32];
    snprintf(tools, sizeof tools, "%s/cuda-tools", jm_self_dir(dir, sizeof dir) == 0 ? dir : ".");
    jm_gpu_opts go = { o->gpu_arch ? o->gpu_arch : "sm_90", o->opt ? atoi(o->opt) : 3, o->libdevice, o->program, tools, NULL };
    if (jm_gpu_ptx(plan, &go, &ptx, err, sizeof err) != 0) { fprintf(stderr, "jemc compile: %s\n", err); return 1; }
    fputs(ptx, stdout);
    free(ptx);
    return 0;
}

static int jm_cmd_compile(jm_opts *o, jm_plan *plan, const jm_diags *d) {
    const char *kind = o->emit ? o->emit : "exe";
    if (strcmp(kind, "exe") != 0 && strcmp(kind, "obj") != 0 && strcmp(kind, "asm") != 0 && strcmp(kind, "llvm") != 0) {
        fprintf(stderr, "jemc compile: --emit must be exe, obj, asm or llvm, got '%s'\n", kind);
        return 1;
    }
    if (!o->output_exe) { fprintf(stderr, "jemc compile: give the output file with -o FILE\n"); return 1; }
    char *cpu;
    jm_fill_table_info(plan, o, d, &cpu);
    int64_t *words, nwords;
    if (jm_table_serialize(&plan->table, &words, &nwords) != 0) { fprintf(stderr, "jemc compile: out of memory\n"); free(cpu); return 1; }
    jm_cpu_opts co = { .cpu = o->cpu, .opt = o->opt ? atoi(o->opt) : 3, .threads = strcmp(kind, "exe") == 0 ? 0 : 1 };
    char err[1024], stem[PATH_MAX];
    jm_gpu_build gi;
    memset(&gi, 0, sizeof gi);
    if (strcmp(o->target, "cuda") == 0) {
        if (jm_gpu_build_image(o, plan, &gi) != 0) { free(words); free(cpu); return 1; }
        co.blobs = gi.blobs;
        co.nblobs = 5;
    }
    char **files = NULL;
    int rc = 1;
    int exe = strcmp(kind, "exe") == 0;
    snprintf(stem, sizeof stem, "%s.jemc-tmp-%d", o->output_exe, (int)getpid());
    jm_time_phase("program table");
    int nf = jm_cpu_write(plan, &co, words, nwords, stem, exe ? "obj" : kind, &files, err, sizeof err);
    if (jm_time_on) {
        char what[96];
        snprintf(what, sizeof what, "LLVM codegen (%d kernels, %d distinct)", plan->nkernels, jm_kernels_distinct(plan));
        jm_time_phase(what);
    }
    free(words);
    jm_gpu_build_free(&gi);
    if (nf < 0) { fprintf(stderr, "jemc compile: %s\n", err); free(cpu); return 1; }
    if (!exe) {
        if (rename(files[0], o->output_exe) != 0) fprintf(stderr, "jemc compile: cannot write %s: %s\n", o->output_exe, strerror(errno));
        else rc = 0;
    } else {
        char dir[PATH_MAX], lib[PATH_MAX + 32], mainobj[PATH_MAX + 32];
        if (jm_self_dir(dir, sizeof dir) != 0) { fprintf(stderr, "jemc compile: cannot find the runtime library (set JEMC_RUNTIME_DIR)\n"); goto done; }
        snprintf(lib, sizeof lib, "%s/libjemrt.a", dir);
        snprintf(mainobj, sizeof mainobj, "%s/jemrt_main.o", dir);
        if (access(lib, R_OK) != 0 || access(mainobj, R_OK) != 0) {
            fprintf(stderr, "jemc compile: the runtime (%s, %s) is missing; build it with make or set JEMC_RUNTIME_DIR\n", lib, mainobj);
            goto done;
        }
        const char *cc = getenv("JEMC_CC");
        if (!cc || !*cc) cc = "cc";
        char **argv = calloc((size_t)nf + 20, sizeof(char *));
        int k = 0;
        argv[k++] = (char *)cc;
        argv[k++] = "-o";
        argv[k++] = (char *)o->output_exe;
        for (int i = 0; i < nf; i++) argv[k++] = files[i];
        argv[k++] = mainobj;
        argv[k++] = lib;
        argv[k++] = "-fopenmp";
        argv[k++] = "-lm";
        /* the runtime's libraries (the Makefile's RT_LIBS): images, plots, extern calls */
        argv[k++] = "-lpng";
        argv[k++] = "-lgif";
        argv[k++] = "-lcairo";
        argv[k++] = "-lffi";
        argv[k++] = "-ldl";
        /* RUNPATH: the MPI shim (libjemc_dist.so, runtime/dist/) beside the runtime, dlopened by
           launched runs; -Xlinker, not -Wl, so a comma in the folder's path stays in it */
        argv[k++] = "-Xlinker";
        argv[k++] = "-rpath";
        argv[k++] = "-Xlinker";
        argv[k++] = dir;
#ifdef JM_LINK_EXTRA
        argv[k++] = JM_LINK_EXTRA;      /* a sanitizer build's runtime needs the sanitizer libraries */
#endif
        argv[k] = NULL;
        int st = jm_spawn(argv);
        jm_time_phase("link");
        free(argv);
        if (st != 0) fprintf(stderr, "jemc compile: linking %s with %s failed (status %d)\n", o->output_exe, cc, st);
        else rc = 0;
    }
done:
    for (int i = 0; i < nf; i++) { unlink(files[i]); free(files[i]); }
    free(files);
    free(cpu);
    return rc;
}

static int jm_cmd_run_cpu(jm_opts *o, jm_plan *plan, const jm_diags *d) {
    char *cpu;
    jm_fill_table_info(plan, o, d, &cpu);
    jm_cpu_opts co = { .cpu = o->cpu, .opt = o->opt ? atoi(o->opt) : 3 };
    char err[1024];
    jm_kernel_fn *fns = NULL;
    jm_cpu_jit *jit = jm_cpu_jit_create(plan, &co, &fns, err, sizeof err);
    if (!jit) { fprintf(stderr, "jemc run: %s\n", err); free(cpu); return 1; }
    jm_rt_exec_opts eo;
    memset(&eo, 0, sizeof eo);
    eo.program = o->program; eo.state = o->state; eo.in = o->in; eo.out = o->out; eo.state_out = o->state_out;
    eo.seed = o->seed; eo.seed_given = o->seed_given; eo.threads = o->threads;
    eo.who = "jemc run";
    eo.producer = "jemc " JM_VERSION " cpu";
    int rc = jm_rt_exec_files(&plan->table, fns, &eo);
    free(fns);
    jm_cpu_jit_free(jit);
    free(cpu);
    return rc;
}

static int jm_cmd_run(jm_opts *o, jm_module *m) {
    if (!o->program) {
        fprintf(stderr, "jemc run: missing the program name; the graph has:");
        for (int i = 0; i < m->nprograms; i++) fprintf(stderr, " %s", m->programs[i].name);
        fputc('\n', stderr);
        return 1;
    }

    int p = jm_module_find_program(m, o->program);
    if (p < 0) {
        const char **names = malloc(sizeof(char *) * (size_t)(m->nprograms + 1));
        for (int i = 0; i < m->nprograms; i++) names[i] = m->programs[i].name;
        const char *best = jm_diag_closest(o->program, names, m->nprograms);
        fprintf(stderr, "jemc run: %s has no program '%s'%s%s%s\n", o->graph, o->program,
                best ? "; did you mean '" : "", best ? best : "", best ? "'?" : "");
        free(names);
        return 1;
    }
    jm_interp I;
    char err[1024];
    int rc = 1;
    jm_program *pr = &m->programs[p];
    jm_tensor *inputs = calloc((size_t)(pr->ninputs + 1), sizeof(jm_tensor));
    jm_tensor *outputs = NULL;
    if (jm_interp_init(&I, m, o->seed) != 0) { fprintf(stderr, "jemc run: %s\n", I.err); goto done; }
    I.seed_given = o->seed_given;
    if (o->state && jm_tio_load_state(&I, o->state, err, sizeof err) != 0) { fprintf(stderr, "jemc run: %s\n", err); goto done; }
    if (!o->state) {
        int nparam = 0;
        for (int i = 0; i < m->nglobals; i++) nparam += m->globals[i].kind == JM_GLOBAL_PARAM;
        if (nparam) fprintf(stderr, "jemc run: note: no --state given; parameters use their declared initialisers (seed %" PRIu64 ")\n", o->seed);
    }
    if (jm_tio_load_inputs(m, p, o->in, inputs, err, sizeof err) != 0) { fprintf(stderr, "jemc run: %s\n", err); goto done; }
    if (jm_interp_run(&I, p, inputs, &outputs) != 0) { fprintf(stderr, "jemc run: program %s failed: %s\n", pr->name, I.err); goto done; }
    if (o->out) {
        const char **names = malloc(sizeof(char *) * (size_t)(pr->noutputs + 1));
        for (int i = 0; i < pr->noutputs; i++) names[i] = pr->outputs[i].name;
        const char *meta[] = { "program", pr->name, "graph", o->graph, "producer", "jemc " JM_VERSION " interp", "precision", o->precision };
        int wrc = jm_tio_write(o->out, names, outputs, pr->noutputs, meta, 4, err, sizeof err);
        free(names);
        if (wrc != 0) { fprintf(stderr, "jemc run: %s\n", err); goto done; }
    } else {
        for (int i = 0; i < pr->noutputs; i++) {
            char tb[128];
            int64_t n = jm_type_numel(&outputs[i].type);
            printf("%s: %s =", pr->outputs[i].name, jm_type_str(&outputs[i].type, tb, sizeof tb));
            int is_int = jm_dtype_is_int(outputs[i].type.dtype) || outputs[i].type.dtype == JM_BOOL;
            for (int64_t k = 0; k < n && k < 8; k++) {
                if (is_int) printf(" %lld", (long long)outputs[i].data[k]);   /* integers print exactly */
                else printf(" %.9g", outputs[i].data[k]);
            }
            printf("%s\n", n > 8 ? " ..." : "");
        }
    }
    if (o->state_out && jm_tio_save_state(&I, o->state_out, err, sizeof err) != 0) { fprintf(stderr, "jemc run: %s\n", err); goto done; }
    rc = 0;
done:
    for (int i = 0; i < pr->ninputs; i++) jm_tensor_free(&inputs[i]);
    free(inputs);
    if (outputs) {
        for (int i = 0; i < pr->noutputs; i++) jm_tensor_free(&outputs[i]);
        free(outputs);
    }
    jm_interp_free(&I);
    return rc;
}

int main(int argc, char **argv) {
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "help") == 0) {
        jm_usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 1 : 0;
    }
    if (strcmp(argv[1], "--version") == 0) {
        printf("jemc %s\n", JM_VERSION);
        jm_llvm_describe(stdout);
        return 0;
    }
    jm_opts o;
    const char *cmd = argv[1];
    if (strcmp(cmd, "check") != 0 && strcmp(cmd, "info") != 0 && strcmp(cmd, "compile") != 0 && strcmp(cmd, "run") != 0) {
        fprintf(stderr, "jemc: unknown command '%s' (check, info, compile or run; see jemc --help)\n", cmd);
        return 1;
    }
    if (jm_parse_opts(argc, argv, &o) != 0) { jm_free_opts(&o); return 1; }
    jm_arena arena = { 0 };
    jm_diags d;
    jm_diag_init(&d, &arena, stderr);
    int rc = 1;
    if (o.fuse && strcmp(o.fuse, "on") != 0 && strcmp(o.fuse, "off") != 0) {
        fprintf(stderr, "jemc %s: --fuse must be on or off, got '%s'\n", cmd, o.fuse);
        return 1;
    }
    jm_plan_set_fusion(!o.fuse || strcmp(o.fuse, "on") == 0);
    jm_batch_mode batch_mode = JM_BATCH_AUTO;
    if (o.batch) {
        if (strcmp(o.batch, "on") == 0) batch_mode = JM_BATCH_ON;
        else if (strcmp(o.batch, "off") == 0) batch_mode = JM_BATCH_OFF;
        else if (strcmp(o.batch, "auto") != 0) {
            fprintf(stderr, "jemc %s: --batch-twins must be on, off or auto, got '%s'\n", cmd, o.batch);
            return 1;
        }
    }
    if (o.dump && strcmp(o.dump, "ir") != 0 && strcmp(o.dump, "grad") != 0 && strcmp(o.dump, "simplify") != 0 && strcmp(o.dump, "batch") != 0 &&
        strcmp(o.dump, "lower") != 0 && strcmp(o.dump, "dp") != 0 && strcmp(o.dump, "fused") != 0 && strcmp(o.dump, "plan") != 0 && strcmp(o.dump, "ptx") != 0) {
        fprintf(stderr, "jemc compile: unknown dump '%s' (available: ir, batch, grad, simplify, lower, dp, fused, plan, ptx)\n", o.dump);
        goto out;
    }
    /* the pipeline: front end (parse, elaborate, type-check) -> simplify -> autodiff -> simplify,
       each verified */
    if (strcmp(cmd, "compile") == 0) {
        if (strcmp(o.target, "interp") == 0) o.target = "cpu";     /* compile's default */
        if (strcmp(o.target, "cpu") != 0 && strcmp(o.target, "cuda") != 0) {
            fprintf(stderr, "jemc compile: --target must be cpu or cuda, got '%s'\n", o.target);
            goto out;
        }
        if (o.dump && strcmp(o.dump, "ptx") == 0) o.target = "cuda";
        /* the CUDA backend's kernels take no RNG context: its draws stay runtime steps */
        if (strcmp(o.target, "cuda") == 0) jm_plan_set_rng_fusion(0);
        if ((o.gpu_arch || o.libdevice) && strcmp(o.target, "cuda") != 0) {
            fprintf(stderr, "jemc compile: %s is for --target cuda\n", o.gpu_arch ? "--gpu-arch" : "--libdevice");
            goto out;
        }
        if (o.gpu_arch && !jm_gpu_arch_ok(o.gpu_arch)) {
            fprintf(stderr, "jemc compile: unknown --gpu-arch '%s' (LLVM 19 knows %s)\n", o.gpu_arch, jm_gpu_arch_list());
            goto out;
        }
        /* --precision for the GPU's convolutions and matrix products (the fused
           kernels compute in the graph's types): fp32, or tf32 tensor cores (the default,
           as PyTorch's cuDNN default) */
        int given = strcmp(o.precision, "f32") != 0 || o.precision_given;
        if (given && strcmp(o.target, "cuda") != 0) {
            fprintf(stderr, "jemc compile: --precision is for --target cuda (CPU code computes in the graph's types)\n");
            goto out;
        }
        o.gpu_precision = !given ? "tf32" : strcmp(o.precision, "f32") == 0 ? "fp32" : o.precision;
        if (strcmp(o.gpu_precision, "bf16") == 0) {
            fprintf(stderr, "jemc compile: --precision bf16 is not implemented yet (bfloat16 compute with float32 master weights); "
                            "use tf32 or fp32\n");
            goto out;
        }
        if (strcmp(o.gpu_precision, "fp32") != 0 && strcmp(o.gpu_precision, "tf32") != 0) {
            fprintf(stderr, "jemc compile: --precision must be fp32 or tf32, got '%s'\n", o.gpu_precision);
            goto out;
        }
        o.precision = "f32";
    } else if (strcmp(o.target, "cuda") == 0) {
        fprintf(stderr, "jemc run: --target cuda is not available here; compile with `jemc compile GRAPH --target cuda -o EXE`"
                        " and run `EXE exec PROGRAM ...`\n");
        goto out;
    } else if (strcmp(o.target, "interp") != 0 && strcmp(o.target, "cpu") != 0) {
        fprintf(stderr, "jemc: --target must be interp or cpu, got '%s'\n", o.target);
        goto out;
    }
    if (strcmp(o.target, "cpu") == 0 && strcmp(o.precision, "f32") != 0) {
        fprintf(stderr, "jemc run: --precision f64 needs --target interp (compiled code keeps the graph's types)\n");
        goto out;
    }
    if (strcmp(o.precision, "f32") != 0 && strcmp(o.precision, "f64") != 0) {
        fprintf(stderr, "jemc run: --precision must be f32 or f64, got '%s'\n", o.precision);
        goto out;
    }
    jm_time_on = o.time;
    jm_time_phase("start");
    jm_module *m = jm_frontend_load(&d, o.graph, o.defs, o.ndefs);
    jm_time_phase("front end (parse, elaborate, check)");
    /* float64 evaluation retypes before the passes, so constants are folded in double */
    if (m && strcmp(o.precision, "f64") == 0) jm_module_retype(m, JM_F32, JM_F64);
    if (m) {
        jm_info_record_nodes(m, 0);
        if (o.dump && strcmp(o.dump, "ir") == 0) jm_ir_dump(m, o.program, stdout);
        /* twin batching runs on the simplified forward graphs (CSE has made each
           model call one evaluation per input), before autodiff differentiates it */
        FILE *bdump = o.dump && strcmp(o.dump, "batch") == 0 ? stdout : NULL;
        if (jm_simplify(m, &d, 0) != 0 ||
            (jm_batch_wanted(batch_mode, o.target) && jm_batch_twins(m, &d, bdump, o.program) != 0) ||
            jm_autodiff(m, &d) != 0) m = NULL;
        else if (bdump && !jm_batch_wanted(batch_mode, o.target))
            fprintf(stdout, "twin batching is off for target %s (--batch-twins=on turns it on)\n", o.target);
    }
    if (!m) {
        if (d.nerr) fprintf(stderr, "%d error%s\n", d.nerr, d.nerr == 1 ? "" : "s");
        goto out;
    }
    if (o.program && strcmp(cmd, "compile") == 0 && jm_module_find_program(m, o.program) < 0) {
        fprintf(stderr, "jemc compile: %s has no program '%s'\n", o.graph, o.program);
        goto out;
    }
    jm_info_record_nodes(m, 1);
    if (o.dump && strcmp(o.dump, "grad") == 0) jm_ir_dump(m, o.program, stdout);
    if (jm_simplify(m, &d, 1) != 0) {
        fprintf(stderr, "%d error%s\n", d.nerr, d.nerr == 1 ? "" : "s");
        goto out;
    }
    jm_info_record_nodes(m, 2);
    if (o.dump && strcmp(o.dump, "simplify") == 0) jm_ir_dump(m, o.program, stdout);
    /* the code generators' part: lower composites -> simplify -> fusion, schedule, memory plan */
    jm_plan plan;
    int want_plan = (strcmp(cmd, "compile") == 0 && (!o.dump || strcmp(o.dump, "lower") == 0 || strcmp(o.dump, "dp") == 0 ||
                     strcmp(o.dump, "fused") == 0 || strcmp(o.dump, "plan") == 0 || strcmp(o.dump, "ptx") == 0)) || (strcmp(cmd, "run") == 0 && strcmp(o.target, "cpu") == 0);
    if (want_plan) {
        if (jm_lower(m, &d) != 0 || jm_simplify(m, &d, 1) != 0) {
            fprintf(stderr, "%d error%s\n", d.nerr, d.nerr == 1 ? "" : "s");
            goto out;
        }
        if (o.dump && strcmp(o.dump, "lower") == 0) jm_ir_dump(m, o.program, stdout);
        if (jm_dp_prepare(m, &d) != 0) {
            fprintf(stderr, "%d error%s\n", d.nerr, d.nerr == 1 ? "" : "s");
            goto out;
        }
        if (o.dump && strcmp(o.dump, "dp") == 0) jm_dp_dump(m, &d, o.program, stdout);
        jm_time_phase("simplify, autodiff, lower");
        if (jm_plan_build(m, &plan, &d) != 0) {
            fprintf(stderr, "%d error%s\n", d.nerr, d.nerr == 1 ? "" : "s");
            goto out;
        }
        if (o.dump && strcmp(o.dump, "fused") == 0) jm_plan_dump_fused(&plan, o.program, stdout);
        if (o.dump && strcmp(o.dump, "plan") == 0) jm_plan_dump_memory(&plan, o.program, stdout);
        jm_time_phase("fusion, schedule, memory plan");
        if (jm_plan_check_memory(&plan, stderr) != 0) { fprintf(stderr, "jemc: internal error: the memory plan overlaps live buffers\n"); goto out; }
    }
    if (strcmp(cmd, "check") == 0) {
        printf("%s: ok (%d program%s, %" PRId64 " parameters)\n", o.graph, m->nprograms, m->nprograms == 1 ? "" : "s",
               jm_info_param_count(m));
        rc = 0;
    } else if (strcmp(cmd, "info") == 0) {
        jm_info_print(m, stdout);
        rc = 0;
    } else if (strcmp(cmd, "compile") == 0) {
        rc = o.dump && strcmp(o.dump, "ptx") == 0 ? jm_cmd_dump_ptx(&o, &plan) : o.dump ? 0 : jm_cmd_compile(&o, &plan, &d);
    } else if (strcmp(o.target, "cpu") == 0) {
        if (!o.program || jm_module_find_program(m, o.program) < 0) rc = jm_cmd_run(&o, m);   /* its messages */
        else rc = jm_cmd_run_cpu(&o, &plan, &d);
    } else {
        rc = jm_cmd_run(&o, m);
    }
out:
    jm_arena_free(&arena);
    jm_free_opts(&o);
    return rc;
}
