/* info.h — static facts about a module: parameter counts and the
 * multiply-accumulate count of every program (conv2d and matmul). */
#ifndef JM_INFO_H
#define JM_INFO_H
#include "ir.h"

int64_t jm_info_param_count(const jm_module *m);
/* MACs of one run of program p; loop bodies count once per trip. *has_grad is
   set when the program contains grad nodes (not counted until autodiff). */
int64_t jm_info_program_macs(const jm_module *m, int p, int *has_grad);
void jm_info_print(const jm_module *m, FILE *out);
/* Remembers each program's node count at a stage (0: elaborated, 1: after autodiff,
   2: after simplification) for jm_info_print. */
void jm_info_record_nodes(jm_module *m, int stage);
#endif
