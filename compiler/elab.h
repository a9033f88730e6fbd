/* elab.h — the front end's entry point: read a graph file (and its imports),
 * apply -D overrides, and elaborate everything into an IR module. */
#ifndef JM_ELAB_H
#define JM_ELAB_H
#include "ast.h"
#include "ir.h"

typedef struct { const char *name; const char *value; } jm_define;   /* -D name=value */

/* Returns the module, or NULL when errors were reported (d->nerr > 0). */
jm_module *jm_frontend_load(jm_diags *d, const char *path, const jm_define *defs, int ndefs);
/* Same, from text in memory (tests, fuzzing); imports resolve relative to the cwd. */
jm_module *jm_frontend_load_text(jm_diags *d, const char *name, const char *text, size_t len,
                                 const jm_define *defs, int ndefs);
#endif
