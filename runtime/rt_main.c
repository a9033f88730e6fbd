/* rt_main.c — main() of every executable jemc writes. The generated object
 * provides the program table and the kernels; everything else is the runtime. */
#include "rt_cli.h"

extern const int64_t jm_table_words[];
extern const int64_t jm_table_nwords;
extern jm_kernel_fn jm_kernel_ptrs[];
extern const int64_t jm_kernel_count;

int main(int argc, char **argv) {
    return jm_rt_cli_main(argc, argv, jm_table_words, jm_table_nwords, jm_kernel_ptrs, jm_kernel_count);
}

/* Under `make test SAN=1` the executables are built with AddressSanitizer:
   fontconfig (which cairo's text uses for plots and captioned grids) keeps its
   configuration until exit in ways LeakSanitizer reports as leaks; they are
   not ours. LeakSanitizer calls this hook if it exists; otherwise it is unused. */
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void) { return "leak:libfontconfig.so\n"; }
