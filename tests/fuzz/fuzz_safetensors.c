/* fuzz_safetensors.c — libFuzzer harness for the safetensors reader: jm_st_parse in memory, then the same bytes as a
 * checkpoint (jm_state_load: binding by name into a small program table's
 * globals, dtype conversion) and as an exec --in file (jm_st_read, jm_st_find,
 * jm_state_convert).
 * Input layout and the checks: fuzz_readers.h. Any input must end in success or
 * one error message naming the file: never a crash, hang, leak or sanitizer report.
 *   make fuzz FUZZER=safetensors FUZZ_SECONDS=1800 */
#include "fuzz_host_device.h"
#include "fuzz_readers.h"

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size) {
    jm_fz_safetensors(data, size);
    return 0;
}
