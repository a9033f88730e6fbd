/* fuzz_data.c — libFuzzer harness for the data loaders: IDX images + labels, CIFAR-10 and CIFAR-100
 * binary, CSV and format detection (jm_data_load), then what training does with
 * a good set (labelled subset, shuffle, augmented batches, conform).
 * Input layout and the checks: fuzz_readers.h. Any input must end in success or
 * one error message naming the file: never a crash, hang, leak or sanitizer report.
 *   make fuzz FUZZER=data FUZZ_SECONDS=1800 */
#include "fuzz_host_device.h"
#include "fuzz_readers.h"

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size) {
    jm_fz_data(data, size);
    return 0;
}
