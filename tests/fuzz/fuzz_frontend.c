/* fuzz_frontend.c — libFuzzer harness for the whole front end and the passes
 * after it: lexer, parser, imports, elaboration, shape rules, simplify,
 * autodiff, lowering, fusion and the memory plan (with its overlap check), and
 * the IR verifier after each. Any input must end in
 * a module or in diagnostics: never a crash, hang, leak or sanitizer report.
 * Also exercises -D overrides: a first line "#D name=value" becomes a define.
 *   make fuzz FUZZ_SECONDS=1800 */
#include "elab.h"
#include "grad.h"
#include "simplify.h"
#include "batch.h"
#include "lower.h"
#include "plan.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size) {
    static FILE *devnull;
    if (!devnull) devnull = fopen("/dev/null", "w");
    jm_define defs[1];
    int ndefs = 0;
    char name[64], value[64];
    if (size > 3 && memcmp(data, "#D ", 3) == 0) {
        const unsigned char *nl = memchr(data, '\n', size);
        const unsigned char *eq = memchr(data, '=', nl ? (size_t)(nl - data) : size);
        if (nl && eq && eq - data - 3 < 63 && nl - eq - 1 < 63 && eq - data > 3) {
            memcpy(name, data + 3, (size_t)(eq - data - 3));
            name[eq - data - 3] = 0;
            memcpy(value, eq + 1, (size_t)(nl - eq - 1));
            value[nl - eq - 1] = 0;
            defs[0].name = name;
            defs[0].value = value;
            ndefs = 1;
        }
    }
    jm_arena arena = { 0 };
    jm_diags d;
    jm_diag_init(&d, &arena, devnull);
    jm_module *m = jm_frontend_load_text(&d, "fuzz.graph", (const char *)data, size, defs, ndefs);
    /* the middle end too: simplify -> autodiff -> simplify, as jemc runs them;
       inputs of odd length also go through twin batching (--batch-twins=on) */
    if (m && jm_simplify(m, &d, 0) == 0 && (!(size & 1) || jm_batch_twins(m, &d, NULL, NULL) == 0) &&
        jm_autodiff(m, &d) == 0 && jm_simplify(m, &d, 1) == 0) {
        jm_ir_dump(m, NULL, devnull);
        /* the CPU backend's passes: lowering, fusion, schedule, memory plan (no LLVM here) */
        jm_plan plan;
        if (jm_lower(m, &d) == 0 && jm_simplify(m, &d, 1) == 0 && jm_plan_build(m, &plan, &d) == 0) {
            jm_plan_dump_fused(&plan, NULL, devnull);
            jm_plan_dump_memory(&plan, NULL, devnull);
            if (jm_plan_check_memory(&plan, stderr) != 0) abort();     /* a planner bug: report it as a crash */
        }
    }
    jm_arena_free(&arena);
    return 0;
}
