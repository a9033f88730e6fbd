/* fuzz_table.c — libFuzzer harness for the program table an executable parses at start
 * (jm_table_parse of its int64 words), then what start-up and `info` do with a
 * good one (program lookup, the state allocated and initialised, the knobs
 * listed) and a serialise/parse round trip.
 * Input layout and the checks: fuzz_readers.h. Any input must end in success or
 * one error message naming the file: never a crash, hang, leak or sanitizer report.
 *   make fuzz FUZZER=table FUZZ_SECONDS=1800 */
#include "fuzz_host_device.h"
#include "fuzz_readers.h"

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size) {
    jm_fz_table(data, size);
    return 0;
}
