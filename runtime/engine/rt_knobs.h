/* rt_knobs.h — run-time settings: the config constants the compiler turned
 * into knobs (globals "config.NAME" of kind JM_GKIND_CONFIG, f32 or i64
 * scalars; see compiler/elab_state.c jm_elab_knob_global). Constants that shape the
 * program (batch, sizes) are compiled in and cannot change here. */
#ifndef JM_RT_KNOBS_H
#define JM_RT_KNOBS_H
#include "rt_exec.h"
#include <stdio.h>

/* The global of knob NAME, or -1. */
int    jm_knob_find(const jm_table *t, const char *name);
double jm_knob_get(jm_rt *rt, int g);
void   jm_knob_put(jm_rt *rt, int g, double v);
/* Applies "NAME=VALUE": an unknown name, a value that is not a number (an
   integer for integer knobs) or a negative count is an error that lists the
   knobs. 0 ok, -1 with err. */
int    jm_knob_assign(jm_rt *rt, const char *assign, char *err, size_t errlen);
/* "lr=0.0001 sgld_lr=1 ..." */
void   jm_knob_list(jm_rt *rt, FILE *f, const char *sep);
#endif
