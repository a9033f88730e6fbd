/* names.h — "did you mean" suggestions, shared by the compiler's diagnostics
 * and the generated executables' messages. */
#ifndef JM_NAMES_H
#define JM_NAMES_H
/* The candidate closest to `name` by optimal-string-alignment distance
   (insertions, deletions, substitutions, swaps of neighbours), when it is a
   plausible typo (at most a third of the name's length, 1 to 3); else NULL. */
const char *jm_closest_name(const char *name, const char *const *cands, int n);
#endif
