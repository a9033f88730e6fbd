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
