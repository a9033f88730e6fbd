/* dist.c — is this process one rank of a launched job, and if so, the MPI
 * shim's collectives (dist.h). No MPI here: the shim is dlopened, and only
 * when a launcher's environment says so. */
#include "dist/dist.h"
#include <dlfcn.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A positive integer environment variable, or 0 when unset, empty or not one. */
static long jm_dist_env_count(const char *name) {
    const char *v = getenv(name);
    if (!v || !*v) return 0;
    char *end;
    long n = strtol(v, &end, 10);
    return *end == 0 && n > 0 && n < INT_MAX ? n : 0;
}

static int jm_dist_env_set(const char *name) {
    const char *v = getenv(name);
    return v && *v;
}

int jm_dist_launched(void) {
    if (jm_dist_env_set("OMPI_COMM_WORLD_SIZE") || jm_dist_env_set("PMIX_RANK") ||
        jm_dist_env_set("PMI_RANK") || jm_dist_env_set("PMI_SIZE"))
        return 1;
    /* srun without an MPI plugin sets no PMI variable. Several tasks of one
       step must still act as one job (else each trains alone, into the same
       files), so they count as launched: MPI then starts through the plugin
       or says why it cannot. SLURM_NTASKS alone is the allocation's size, also
       seen by a lone sbatch script, and `srun -n 1` is a singleton. */
    return jm_dist_env_count("SLURM_STEP_NUM_TASKS") > 1 && jm_dist_env_set("SLURM_PROCID");
}

/* This node's entry of SLURM_STEP_TASKS_PER_NODE ("2(x3),1": 2 tasks on each
   of 3 nodes, then 1) for node index SLURM_NODEID; 0 when it cannot tell. */
static long jm_dist_slurm_local(void) {
    const char *s = getenv("SLURM_STEP_TASKS_PER_NODE");
    const char *id = getenv("SLURM_NODEID");
    if (!s || !id || !*id) return 0;
    long node = strtol(id, NULL, 10);
    while (*s) {
        char *end;
        long n = strtol(s, &end, 10), times = 1;
        if (end == s || n <= 0) return 0;
        if (strncmp(end, "(x", 2) == 0) {
            times = strtol(end + 2, &end, 10);
            if (times <= 0 || *end != ')') return 0;
            end++;
        }
        if (node < times) return n;
        node -= times;
        if (*end != ',') return 0;
        s = end + 1;
    }
    return 0;
}

int jm_dist_local_size_env(void) {
    if (!jm_dist_launched()) return 1;
    long n = jm_dist_env_count("OMPI_COMM_WORLD_LOCAL_SIZE");   /* Open MPI's mpirun */
    if (!n) n = jm_dist_env_count("MPI_LOCALNRANKS");           /* MPICH's hydra */
    if (!n) n = jm_dist_slurm_local();                          /* srun */
    return (int)n;
}

/* A bare name dlopened from a library (a sanitizer's dlopen interceptor, say)
   is not looked for on the executable's RUNPATH, which applies to the
   executable's own calls only: look in the executable's search directories
   (its RUNPATH first, as dlinfo's RTLD_DI_SERINFO lists them) by full path. */
static void *jm_dist_open_on_runpath(const char *name) {
    void *self = dlopen(NULL, RTLD_LAZY);
    Dl_serinfo size;
    if (!self || dlinfo(self, RTLD_DI_SERINFOSIZE, &size) != 0) return NULL;
    Dl_serinfo *info = malloc(size.dls_size);
    void *h = NULL;
    if (info && dlinfo(self, RTLD_DI_SERINFOSIZE, info) == 0 && dlinfo(self, RTLD_DI_SERINFO, info) == 0)
        for (unsigned i = 0; i < info->dls_cnt && !h; i++) {
            char path[PATH_MAX];
            if (snprintf(path, sizeof path, "%s/%s", info->dls_serpath[i].dls_name, name) < (int)sizeof path)
                h = dlopen(path, RTLD_NOW | RTLD_GLOBAL);
        }
    free(info);
    return h;
}

jm_coll *jm_dist_open(char *err, size_t errlen) {
    if (errlen) err[0] = 0;
    if (!jm_dist_launched()) return NULL;
    const char *lib = getenv("JEMC_DIST_LIB");
    if (!lib || !*lib) lib = "libjemc_dist.so";
    const char *fix = "multi-process runs need Open MPI (apt-get install openmpi-bin libopenmpi-dev, or tools/deps.sh build) "
                      "and jemc rebuilt with it (make builds libjemc_dist.so beside jemc when mpicc exists); "
                      "or set JEMC_DIST_LIB to the shim's path";
    /* RTLD_GLOBAL: MPI's own plugins, which it dlopens in turn, may need its symbols */
    void *h = dlopen(lib, RTLD_NOW | RTLD_GLOBAL);
    if (!h && !strchr(lib, '/')) {
        char first[512];
        snprintf(first, sizeof first, "%s", dlerror());
        h = jm_dist_open_on_runpath(lib);
        if (!h) {
            snprintf(err, errlen, "launched by an MPI launcher, but cannot load the MPI layer %s (%s): %s", lib, first, fix);
            return NULL;
        }
    }
    if (!h) {
        snprintf(err, errlen, "launched by an MPI launcher, but cannot load the MPI layer %s (%s): %s", lib, dlerror(), fix);
        return NULL;
    }
    jm_dist_entry_fn *open_fn;
    *(void **)&open_fn = dlsym(h, JM_DIST_ENTRY);   /* ISO C has no function-pointer cast from void * */
    if (!open_fn) {
        snprintf(err, errlen, "%s is not jemc's MPI layer (no %s: %s): %s", lib, JM_DIST_ENTRY, dlerror(), fix);
        return NULL;
    }
    jm_coll *c = calloc(1, sizeof *c);
    if (!c) { snprintf(err, errlen, "out of memory"); return NULL; }
    char msg[1024] = "";
    if (open_fn(c, sizeof *c, msg, sizeof msg) != 0) {
        snprintf(err, errlen, "cannot start MPI (%s): %s", lib, msg[0] ? msg : "no reason given");
        free(c);
        return NULL;
    }
    return c;
}

void jm_dist_close(jm_coll *c) {
    if (!c) return;
    if (c->finalize) c->finalize(c);
    free(c);
}
