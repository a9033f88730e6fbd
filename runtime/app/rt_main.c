/* rt_main.c — main() of every executable jemc writes. The generated object
 * provides the program table and the kernels; everything else is the runtime. */
#include "rt_cli.h"
#include "rt_threads.h"

extern const int64_t jm_table_words[];
extern const int64_t jm_table_nwords;
extern jm_kernel_fn jm_kernel_ptrs[];
extern const int64_t jm_kernel_count;
/* the GPU image, present only in executables of `jemc compile --target cuda`
   (weak: a CPU executable leaves them NULL) */
extern const char jm_gpu_ptx[] __attribute__((weak));
extern const unsigned char jm_gpu_cubin[] __attribute__((weak));
extern const int64_t jm_gpu_cubin_len __attribute__((weak));
extern const char jm_gpu_kernels[] __attribute__((weak));
extern const char jm_gpu_arch[] __attribute__((weak));
extern const char jm_gpu_precision[] __attribute__((weak));

int main(int argc, char **argv) {
    /* threads per rank, and libgomp's wait policy on shared cores (may re-execute this
       executable once, before anything else has happened) */
    jm_threads_setup(argc, argv);
    static jm_gpu_image img;
    if (jm_gpu_ptx && jm_gpu_kernels && jm_gpu_arch && &jm_gpu_cubin_len) {
        img.ptx = jm_gpu_ptx;
        img.cubin = jm_gpu_cubin_len > 0 ? jm_gpu_cubin : NULL;
        img.cubin_len = jm_gpu_cubin_len;
        img.kernels = jm_gpu_kernels;
        img.arch = jm_gpu_arch;
        img.precision = jm_gpu_precision ? jm_gpu_precision : "tf32";
        jm_rt_cli_set_gpu(&img);
    }
    return jm_rt_cli_main(argc, argv, jm_table_words, jm_table_nwords, jm_kernel_ptrs, jm_kernel_count);
}

/* Under `make test SAN=1` the executables are built with AddressSanitizer:
   fontconfig (which cairo's text uses for plots and captioned grids) keeps its
   configuration until exit in ways LeakSanitizer reports as leaks; they are
   not ours; so do NVIDIA's driver, cuBLAS and cuDNN (loaded for --target cuda).
   LeakSanitizer calls this hook if it exists; otherwise it is unused. */
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void) { return "leak:libfontconfig.so\nleak:libcuda.so\nleak:libcublas\nleak:libcudnn\n"; }
