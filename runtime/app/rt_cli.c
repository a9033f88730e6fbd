/* rt_cli.c — see rt_cli.h. */
#include "rt_cli.h"
#include "gpu/cuda_api.h"
#include "engine/rt_state.h"
#include "engine/rt_knobs.h"
#include "rt_sample.h"
#include "rt_train.h"
#include "engine/safetensors.h"
#include "engine/names.h"
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define JM_RT_VERSION "0.1.0"

static void jm_print_output(const jm_tdesc *d, const void *p) {
    char tb[160];
    jm_desc_str(d, tb, sizeof tb);
    int64_t n = jm_rt_desc_numel(d);
    printf("%s: %s =", d->name, tb);
    for (int64_t k = 0; k < n && k < 8; k++)
        switch (d->dtype) {
        case JM_DT_F32: printf(" %.9g", (double)((const float *)p)[k]); break;
        case JM_DT_F64: printf(" %.9g", ((const double *)p)[k]); break;
        case JM_DT_I32: printf(" %lld", (long long)((const int32_t *)p)[k]); break;
        case JM_DT_I64: printf(" %lld", (long long)((const int64_t *)p)[k]); break;
        default: printf(" %d", ((const unsigned char *)p)[k]); break;
        }
    printf("%s\n", n > 8 ? " ..." : "");
}

static const char *jm_step_label(const jm_table *t, const jm_step *st) {
    switch (st->kind) {
    case JM_STEP_KERNEL: return "kernel";
    case JM_STEP_LIB: return jm_lib_name(st->op);
    case JM_STEP_COPY: return "copy";
    default: return "loop";
    }
}

/* time per run by kind of step, then the 12 most expensive steps */
static void jm_print_profile(const jm_table *t, const jm_tprogram *pr, const double *prof, int reps) {
    double total = 0;
    for (int s = 0; s < pr->nsteps; s++) total += prof[s];
    fprintf(stderr, "profile of %s: %.3f ms per run in %d steps\n", pr->name, total * 1e3 / reps, pr->nsteps);
    const char *kinds[JM_LIB_COUNT + 3];
    double kt[JM_LIB_COUNT + 3] = { 0 };
    int nk = 0;
    for (int s = 0; s < pr->nsteps; s++) {
        const char *l = jm_step_label(t, &pr->steps[s]);
        int k = 0;
        while (k < nk && strcmp(kinds[k], l) != 0) k++;
        if (k == nk && nk < JM_LIB_COUNT + 3) kinds[nk++] = l;
        if (k < nk) kt[k] += prof[s];
    }
    for (int k = 0; k < nk; k++)
        if (kt[k] > 0) fprintf(stderr, "  %-20s %9.3f ms  %5.1f%%\n", kinds[k], kt[k] * 1e3 / reps, total > 0 ? 100 * kt[k] / total : 0);
    int *order = malloc(sizeof(int) * (size_t)(pr->nsteps + 1));
    for (int s = 0; s < pr->nsteps; s++) order[s] = s;
    for (int i = 0; i < pr->nsteps && i < 12; i++)
        for (int j = i + 1; j < pr->nsteps; j++)
            if (prof[order[j]] > prof[order[i]]) { int tmp = order[i]; order[i] = order[j]; order[j] = tmp; }
    for (int i = 0; i < pr->nsteps && i < 12; i++) {
        const jm_step *st = &pr->steps[order[i]];
        fprintf(stderr, "  [%4d] %-18s %9.3f ms  %s\n", order[i], st->kind == JM_STEP_KERNEL ? t->kernels[st->op] : jm_step_label(t, st),
                prof[order[i]] * 1e3 / reps, st->where);
    }
    free(order);
}

static double jm_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int jm_rt_exec_files(const jm_table *t, jm_kernel_fn *kernels, const jm_rt_exec_opts *o) {
    const char *who = o->who ? o->who : "exec";
    if (!o->program) {
        fprintf(stderr, "%s: missing the program name; the graph has:", who);
        for (int i = 0; i < t->nprograms; i++) fprintf(stderr, " %s", t->programs[i].name);
        fputc('\n', stderr);
        return 1;
    }
    int p = jm_table_find_program(t, o->program);
    if (p < 0) {
        fprintf(stderr, "%s: %s has no program '%s'; it has:", who, t->graph, o->program);
        for (int i = 0; i < t->nprograms; i++) fprintf(stderr, " %s", t->programs[i].name);
        fputc('\n', stderr);
        return 1;
    }
    const jm_tprogram *pr = &t->programs[p];
    jm_rt rt;
    char err[1024];
    int rc = 1;
    void **in = calloc((size_t)pr->ninputs + 1, sizeof(void *));
    void **out = calloc((size_t)pr->noutputs + 1, sizeof(void *));
    double *times = NULL;
    if (jm_rt_open(&rt, t, kernels, o->seed) != 0) { fprintf(stderr, "%s: %s\n", who, rt.err); free(in); free(out); return 1; }
    rt.threads = o->threads;
    if (o->state && jm_state_load(&rt, o->state, o->seed_given, NULL, err, sizeof err) != 0) { fprintf(stderr, "%s: %s\n", who, err); goto done; }
    if (!o->state) {
        int nparam = 0;
        for (int i = 0; i < t->nglobals; i++) nparam += t->globals[i].kind == JM_GKIND_PARAM;
        if (nparam) fprintf(stderr, "%s: note: no --state given; parameters use their declared initialisers (seed %" PRIu64 ")\n", who, o->seed);
    }
    if (pr->ninputs) {
        if (!o->in) { fprintf(stderr, "%s: program %s takes inputs (%s...); give them with --in FILE.safetensors\n", who, pr->name, pr->inputs[0].name); goto done; }
        jm_st_file f;
        memset(&f, 0, sizeof f);
        if (jm_st_read(o->in, &f, err, sizeof err) != 0) { fprintf(stderr, "%s: %s\n", who, err); goto done; }
        int bad = 0;
        for (int i = 0; i < pr->ninputs && !bad; i++) {
            const jm_st_tensor *st = jm_st_find(&f, pr->inputs[i].name);
            if (!st) { fprintf(stderr, "%s: %s: missing input '%s' of program %s\n", who, o->in, pr->inputs[i].name, pr->name); bad = 1; break; }
            size_t bytes = (size_t)jm_rt_desc_numel(&pr->inputs[i]) * jm_rt_dtype_size(pr->inputs[i].dtype);
            in[i] = malloc(bytes ? bytes : 1);
            if (jm_state_convert(o->in, "input", st, &pr->inputs[i], in[i], err, sizeof err) != 0) { fprintf(stderr, "%s: %s\n", who, err); bad = 1; }
        }
        jm_st_free(&f);
        if (bad) goto done;
    }
    for (int i = 0; i < pr->noutputs; i++) {
        size_t bytes = (size_t)jm_rt_desc_numel(&pr->outputs[i]) * jm_rt_dtype_size(pr->outputs[i].dtype);
        out[i] = malloc(bytes ? bytes : 1);
    }
    int reps = o->repeat > 0 ? o->repeat : 1;
    times = calloc((size_t)reps + 1, sizeof(double));
    if (!times) { fprintf(stderr, "%s: out of memory\n", who); goto done; }
    if (o->profile && !jm_rt_device_chosen()->can_profile) {
        fprintf(stderr, "%s: note: --profile times the CPU's steps; on the GPU the steps run as one CUDA graph "
                        "(use NVIDIA's Nsight Systems, or --device cpu)\n", who);
    }
    if (o->profile && jm_rt_device_chosen()->can_profile) rt.profile = calloc((size_t)pr->nsteps + 1, sizeof(double));
    for (int r = 0; r < reps; r++) {
        double t0 = jm_now();
        if (jm_rt_run(&rt, p, (const void *const *)in, out) != 0) { fprintf(stderr, "%s: program %s failed: %s\n", who, pr->name, rt.err); goto done; }
        times[r] = jm_now() - t0;
    }
    if (o->repeat > 0) {
        /* the first run also allocates and touches the scratch memory: reported apart */
        int n = reps > 1 ? reps - 1 : 1;
        double first = times[0], *ts = reps > 1 ? times + 1 : times, sum = 0;
        for (int i = 0; i < n; i++) sum += ts[i];
        for (int i = 1; i < n; i++)
            for (int j = i; j > 0 && ts[j] < ts[j - 1]; j--) { double x = ts[j]; ts[j] = ts[j - 1]; ts[j - 1] = x; }
        double med = n % 2 ? ts[n / 2] : (ts[n / 2 - 1] + ts[n / 2]) / 2;
        fprintf(stderr, "%s: %s: %d runs, first %.3f ms, then %.3f ms per run (median %.3f, min %.3f)\n", who, pr->name, reps,
                first * 1e3, sum / n * 1e3, med * 1e3, ts[0] * 1e3);
        double mine = 0, used = 0;
        rt.dev->memory(&rt, &mine, &used);
        if (mine > 0)
            fprintf(stderr, "%s: on %s: %.1f MiB of device memory allocated by jemc (state, scratch, workspaces), "
                            "%.1f MiB in use on the device\n", who, rt.dev->describe(&rt), mine / 1048576.0, used / 1048576.0);
    }
    if (o->profile && rt.profile) jm_print_profile(t, pr, rt.profile, reps);
    if (o->out) {
        /* the device that computed them: "jemc 0.1.0 cpu", "jemc 0.1.0 cuda (NVIDIA H100 ..., cuBLAS ..., cuDNN ...)" */
        char made_by[700];
        int on_cpu = strcmp(rt.dev->name, "cpu") == 0;
        snprintf(made_by, sizeof made_by, "jemc " JM_RT_VERSION " %s%s%.600s%s", rt.dev->name, on_cpu ? "" : " (", on_cpu ? "" : rt.dev->describe(&rt),
                 on_cpu ? "" : ")");
        const char *meta[] = { "program", pr->name, "graph", t->graph, "producer", o->producer ? o->producer : made_by,
                               "precision", "f32" };
        if (jm_state_write_tensors(o->out, pr->outputs, out, pr->noutputs, meta, 4, err, sizeof err) != 0) { fprintf(stderr, "%s: %s\n", who, err); goto done; }
    } else {
        for (int i = 0; i < pr->noutputs; i++) jm_print_output(&pr->outputs[i], out[i]);
    }
    if (o->state_out && jm_state_save(&rt, o->state_out, NULL, 0, err, sizeof err) != 0) { fprintf(stderr, "%s: %s\n", who, err); goto done; }
    rc = 0;
done:
    for (int i = 0; i < pr->ninputs; i++) free(in[i]);
    for (int i = 0; i < pr->noutputs; i++) free(out[i]);
    free(in);
    free(out);
    free(rt.profile);
    free(times);
    jm_rt_close(&rt);
    return rc;
}

/* a copy of the executable's image: the GPU ordinal is set per rank later
   (the device reads it when it attaches, at the first program run) */
static jm_gpu_image jm_cli_img;
static const jm_gpu_image *jm_cli_gpu;
void jm_rt_cli_set_gpu(const jm_gpu_image *img) {
    if (!img) { jm_cli_gpu = NULL; return; }
    jm_cli_img = *img;
    jm_cli_gpu = &jm_cli_img;
}
void jm_rt_cli_set_gpu_ordinal(int ordinal) { jm_cli_img.ordinal = ordinal; }

/* The executable's commands, one line each: the top-level help lists them
   all, and `EXE help COMMAND` goes to the command's own --help. `program`:
   the graph program the command needs (NULL: none), so the help can say when
   this graph lacks it. */
typedef struct { const char *name, *line, *program; } jm_cli_command;
static const jm_cli_command jm_cli_commands[] = {
    { "train",  "trains train_step over a data set (checkpoints, metrics, resume, divergence guard)", "train_step" },
    { "sample", "SGLD chains from a checkpoint or from noise, or a VERA generator's samples (MALA): PNG grids, a GIF, energies", "sample" },
    { "eval",   "accuracy, calibration, OOD detection and robustness of a checkpoint", "evaluate" },
    { "plot",   "loss, energy, accuracy and learning-rate curves from metrics.jsonl", NULL },
    { "exec",   "runs one program on safetensors files (as `jemc run`), with timing", NULL },
    { "info",   "the programs, their inputs and outputs, the parameters, the settings", NULL },
};
enum { JM_CLI_NCOMMANDS = (int)(sizeof jm_cli_commands / sizeof jm_cli_commands[0]) };

static void jm_cli_usage(const char *exe, const jm_table *t, FILE *f) {
    fprintf(f, "%s — compiled by jemc from %s for CPU %s\n\n"
               "usage: %s COMMAND [options]\n\n"
               "commands:\n", exe, t->graph, t->cpu, exe);
    for (int i = 0; i < JM_CLI_NCOMMANDS; i++) {
        const jm_cli_command *c = &jm_cli_commands[i];
        fprintf(f, "  %-7s %s", c->name, c->line);
        /* a VERA graph trains with --program train_step_vera and samples --from generator */
        int vera = strcmp(c->name, "train") == 0 && jm_table_find_program(t, "train_step_vera") >= 0;
        int gen = strcmp(c->name, "sample") == 0 && jm_table_find_program(t, "generate") >= 0;
        if (c->program && jm_table_find_program(t, c->program) < 0 && (vera || gen))
            fprintf(f, "\n          (this graph: %s)", vera ? "--program train_step_vera (VERA)" : "--from generator (VERA)");
        else if (c->program && jm_table_find_program(t, c->program) < 0)
            fprintf(f, "\n          (this graph has no %s program)", c->program);
        fprintf(f, "\n");
    }
    fprintf(f, "\n"
               "  %s COMMAND --help   (or %s help COMMAND) lists a command's options\n"
               "  %s --version        the runtime, the program table and the code this executable carries\n",
            exe, exe, exe);
    if (jm_cli_gpu)
        fprintf(f, "\n  GPU code for %s: the programs run on the GPU; --device cpu (any command) runs them\n"
                   "  on the CPU instead\n", jm_cli_gpu->arch);
    else
        fprintf(f, "\n  the programs run on this CPU (jemc compile --target cuda makes an executable for NVIDIA GPUs)\n");
}

static void jm_cli_exec_usage(const char *exe, FILE *f) {
    fprintf(f, "usage: %s exec PROGRAM [--state S.safetensors] [--in IN.safetensors] [--out OUT.safetensors]\n"
               "                  [--state-out S2.safetensors] [--seed N] [--threads N] [--repeat N] [--profile]\n\n"
               "Runs one program: parameters and state from --state (by PyTorch name), inputs from --in\n"
               "(by name), every output to --out (printed without it), the new state to --state-out.\n"
               "--repeat N runs it N times and prints the time per run; --profile prints the time of each\n"
               "kind of step and the costliest steps. `%s info` lists the programs and their tensors.\n", exe, exe);
}

static void jm_cli_info_usage(const char *exe, FILE *f) {
    fprintf(f, "usage: %s info\n\n"
               "The programs with their inputs and outputs (dtype and shape), the parameter count, the\n"
               "state's size and the run-time settings (train/sample --set NAME=V).\n", exe);
}

static int jm_parse_u(const char *s, unsigned long long max, unsigned long long *v) {
    char *end;
    errno = 0;
    if (!s || !*s || *s == '-') return -1;
    unsigned long long x = strtoull(s, &end, 10);
    if (*end || errno || x > max) return -1;
    *v = x;
    return 0;
}

/* The table's CPU reads "name (isa isa ...)": every listed instruction set must
   be present, or the generated code could die of an illegal instruction. */
static int jm_check_cpu(const char *exe, const char *cpu) {
    const char *open = strchr(cpu, '(');
    if (!open) return 0;
    __builtin_cpu_init();
    char isa[32];
    const char *p = open + 1;
    while (*p && *p != ')') {
        int n = 0;
        while (*p == ' ') p++;
        while (*p && *p != ' ' && *p != ')' && n < 31) isa[n++] = *p++;
        isa[n] = 0;
        if (!n) break;
        int has = strcmp(isa, "avx512f") == 0 ? __builtin_cpu_supports("avx512f") : strcmp(isa, "avx2") == 0 ? __builtin_cpu_supports("avx2")
                : strcmp(isa, "fma") == 0 ? __builtin_cpu_supports("fma") : strcmp(isa, "avx") == 0 ? __builtin_cpu_supports("avx") : 1;
        if (!has) {
            fprintf(stderr, "%s: this executable was compiled for CPU %s and needs %s, which this CPU lacks; "
                            "compile it again with `jemc compile --cpu x86-64-v3` (or --cpu x86-64) for a portable build\n", exe, cpu, isa);
            return -1;
        }
    }
    return 0;
}


/* --device cpu|cuda, anywhere on the command line (taken out of argv): where the
   programs run. An executable with a GPU image (jemc compile --target cuda) runs
   them on the GPU unless told --device cpu; without a usable GPU it says so and
   stops before doing anything. 0: go on; 1: an error was printed. */
static int jm_cli_device(const char *exe, int *argc, char **argv) {
    const char *dev = NULL;
    for (int i = 1; i < *argc; i++) {
        const char *v = NULL;
        int take = 0;
        if (strcmp(argv[i], "--device") == 0) { v = i + 1 < *argc ? argv[i + 1] : ""; take = i + 1 < *argc ? 2 : 1; }
        else if (strncmp(argv[i], "--device=", 9) == 0) { v = argv[i] + 9; take = 1; }
        if (!take) continue;
        dev = v;
        for (int k = i; k + take <= *argc; k++) argv[k] = argv[k + take];
        *argc -= take;
        i--;
    }
    if (dev && strcmp(dev, "cpu") != 0 && strcmp(dev, "cuda") != 0) {
        fprintf(stderr, "%s: --device must be cpu or cuda, got '%s'\n", exe, dev);
        return 1;
    }
    if (dev && strcmp(dev, "cuda") == 0 && !jm_cli_gpu) {
        fprintf(stderr, "%s: --device cuda: this executable has no GPU code (compile it with jemc compile --target cuda)\n", exe);
        return 1;
    }
    int gpu = jm_cli_gpu && (!dev || strcmp(dev, "cuda") == 0);
    jm_rt_use_device(gpu ? &jm_device_cuda : &jm_device_cpu, gpu ? jm_cli_gpu : NULL);
    /* commands that run programs check for a GPU now, not after loading data */
    const char *cmd = *argc > 1 ? argv[1] : "";
    int asks_help = 0;       /* a command's --help needs no GPU */
    for (int i = 2; i < *argc; i++) asks_help |= strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0;
    if (gpu && !asks_help && (strcmp(cmd, "exec") == 0 || strcmp(cmd, "train") == 0 || strcmp(cmd, "sample") == 0 || strcmp(cmd, "eval") == 0)) {
        jm_cuda_api api;
        char why[600];
        int ok = jm_cuda_api_load_driver(&api, why, sizeof why) == 0;
        jm_cuda_api_unload(&api);
        if (!ok) {
            fprintf(stderr, "%s: %s.\n%s runs its programs on an NVIDIA GPU (compiled with --target cuda for %s); "
                            "--device cpu runs them on this machine's CPU instead.\n", exe, why, exe, jm_cli_gpu->arch);
            return 1;
        }
    }
    return 0;
}

int jm_rt_cli_main(int argc, char **argv, const int64_t *words, int64_t nwords, jm_kernel_fn *kernels, int64_t nkernels) {
    const char *exe = argc > 0 ? argv[0] : "jem";
    jm_table t;
    char err[512];
    if (jm_cli_device(exe, &argc, argv) != 0) return 1;
    if (jm_table_parse(words, nwords, &t, err, sizeof err) != 0) { fprintf(stderr, "%s: damaged executable: %s\n", exe, err); return 1; }
    if (t.nkernels != nkernels) { fprintf(stderr, "%s: damaged executable: %d kernels named, %lld present\n", exe, t.nkernels, (long long)nkernels); jm_table_free(&t); return 1; }
    int rc = 1;
    if (jm_check_cpu(exe, t.cpu) != 0) { jm_table_free(&t); return 1; }
    /* `EXE help COMMAND` is `EXE COMMAND --help` */
    char *help_argv[4];
    if (argc >= 3 && strcmp(argv[1], "help") == 0) {
        int known = 0;
        for (int i = 0; i < JM_CLI_NCOMMANDS; i++) known |= strcmp(argv[2], jm_cli_commands[i].name) == 0;
        if (!known) {
            fprintf(stderr, "%s: help: no command '%s' (train, sample, eval, plot, exec, info)\n", exe, argv[2]);
            jm_table_free(&t);
            return 1;
        }
        help_argv[0] = argv[0]; help_argv[1] = argv[2]; help_argv[2] = "--help"; help_argv[3] = NULL;
        argv = help_argv;
        argc = 3;
    }
    int cmd_help = argc >= 3 && (strcmp(argv[2], "--help") == 0 || strcmp(argv[2], "-h") == 0);
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "help") == 0) {
        jm_cli_usage(exe, &t, argc < 2 ? stderr : stdout);
        rc = argc < 2 ? 1 : 0;
    } else if (cmd_help && strcmp(argv[1], "exec") == 0) {
        jm_cli_exec_usage(exe, stdout);
        rc = 0;
    } else if (cmd_help && strcmp(argv[1], "info") == 0) {
        jm_cli_info_usage(exe, stdout);
        rc = 0;
    } else if (strcmp(argv[1], "--version") == 0) {
        printf("%s: jemc runtime %s, program table version %d, graph %s, CPU %s", exe, JM_RT_VERSION, JM_TABLE_VERSION, t.graph, t.cpu);
        if (jm_cli_gpu) printf(", GPU %s (PTX%s, %s)", jm_cli_gpu->arch, jm_cli_gpu->cubin_len > 0 ? " and cubin" : " only", jm_cli_gpu->precision);
        printf("\n");
        rc = 0;
    } else if (strcmp(argv[1], "info") == 0) {
        for (int p = 0; p < t.nprograms; p++) {
            const jm_tprogram *pr = &t.programs[p];
            printf("program %s (scratch %.2f MiB)\n", pr->name, pr->scratch_bytes / 1048576.0);
            char tb[160];
            for (int i = 0; i < pr->ninputs; i++) { jm_desc_str(&pr->inputs[i], tb, sizeof tb); printf("  in  %s: %s\n", pr->inputs[i].name, tb); }
            for (int i = 0; i < pr->noutputs; i++) { jm_desc_str(&pr->outputs[i], tb, sizeof tb); printf("  out %s: %s\n", pr->outputs[i].name, tb); }
        }
        int64_t np = 0;
        for (int g = 0; g < t.nglobals; g++) if (t.globals[g].kind == JM_GKIND_PARAM) np += jm_rt_desc_numel(&t.globals[g].t);
        printf("%" PRId64 " parameters, %.2f MiB of state\n", np, t.state_bytes / 1048576.0);
        jm_rt krt;
        if (jm_rt_open(&krt, &t, kernels, 0) == 0) {
            printf("settings: ");
            jm_knob_list(&krt, stdout, " ");
            printf("  (train/sample --set NAME=V)\n");
            jm_rt_close(&krt);
        }
        rc = 0;
    } else if (strcmp(argv[1], "train") == 0) {
        rc = jm_train_main(&t, kernels, argc, argv, exe);
    } else if (strcmp(argv[1], "sample") == 0) {
        rc = jm_sample_main(&t, kernels, argc, argv, exe);
    } else if (strcmp(argv[1], "eval") == 0) {
        rc = jm_eval_main(&t, kernels, argc, argv, exe);
    } else if (strcmp(argv[1], "plot") == 0) {
        rc = jm_plot_main(argc, argv, exe);
    } else if (strcmp(argv[1], "exec") == 0) {
        jm_rt_exec_opts o;
        memset(&o, 0, sizeof o);
        char who[256];
        snprintf(who, sizeof who, "%s exec", exe);
        o.who = who;
        int ok = 1;
        for (int i = 2; i < argc && ok; i++) {
            const char *a = argv[i];
            const char **field = strcmp(a, "--state") == 0 ? &o.state : strcmp(a, "--in") == 0 ? &o.in : strcmp(a, "--out") == 0 ? &o.out
                               : strcmp(a, "--state-out") == 0 ? &o.state_out : NULL;
            unsigned long long v;
            if (field) {
                if (i + 1 >= argc) { fprintf(stderr, "%s: %s needs a value\n", who, a); ok = 0; break; }
                *field = argv[++i];
            } else if (strcmp(a, "--seed") == 0 || strcmp(a, "--threads") == 0 || strcmp(a, "--repeat") == 0) {
                unsigned long long max = a[2] == 's' ? ~0ull : 100000;
                if (i + 1 >= argc || jm_parse_u(argv[i + 1], max, &v) != 0) { fprintf(stderr, "%s: %s needs a non-negative integer\n", who, a); ok = 0; break; }
                i++;
                if (a[2] == 's') { o.seed = v; o.seed_given = 1; }
                else if (a[2] == 't') o.threads = (int)v;
                else o.repeat = (int)v;
            } else if (strcmp(a, "--profile") == 0) {
                o.profile = 1;
            } else if (a[0] == '-') { fprintf(stderr, "%s: unknown option '%s' (see %s --help)\n", who, a, exe); ok = 0; }
            else if (!o.program) o.program = a;
            else { fprintf(stderr, "%s: unexpected argument '%s'\n", who, a); ok = 0; }
        }
        if (ok) rc = jm_rt_exec_files(&t, kernels, &o);
    } else {
        fprintf(stderr, "%s: unknown command '%s' (train, sample, eval, plot, exec, info; see %s --help)\n", exe, argv[1], exe);
    }
    jm_table_free(&t);
    return rc;
}
