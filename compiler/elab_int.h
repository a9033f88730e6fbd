/* elab_int.h — shared between the elaborator (elab.c, elab_expr.c,
 * elab_block.c, elab_state.c) and its built-in functions (builtins.c). Not part
 * of the front end's public interface. */
#ifndef JM_ELAB_INT_H
#define JM_ELAB_INT_H
#include "elab.h"

typedef enum { JM_V_ERR, JM_V_NONE, JM_V_INT, JM_V_FLOAT, JM_V_BOOL, JM_V_STR, JM_V_LIST, JM_V_TENSOR, JM_V_PARAMS } jm_vkind;

typedef struct jm_value {
    jm_vkind kind;
    int64_t i; double f; const char *s;
    struct jm_value *items; int nitems;        /* LIST; PARAMS: tensors of the gradients */
    int *globals;                              /* PARAMS: global index of each item */
    int g, node;                               /* TENSOR: graph and node id */
    const char *cfg;                           /* INT/FLOAT read straight from a config constant: its name (a run-time knob, see jm_elab_knob_node) */
} jm_value;

typedef struct { const char *name; jm_value v; int buffer; } jm_binding_v;   /* buffer: global index + 1 of a block's buffer */

typedef struct jm_loopctx {
    struct jm_loopctx *outer;
    int body;                                  /* the body graph */
    int outer_g;                               /* graph of the loop node */
    int ncarried;
    int *cap_outer; int *cap_inner; int ncap, capcap;   /* captured outer node -> LOOP_ARG */
} jm_loopctx;

typedef struct jm_elab jm_elab;

/* The models whose calls are being elaborated, innermost first: a parameter
   created now belongs to each of them (optimizer `params=`, §4.10). */
typedef struct jm_modelframe { const char *name; const struct jm_modelframe *up; } jm_modelframe;

/* A parameter's value after a `minimize` updated it: detach(the new value),
   made once per update the first time something reads it (elab_params.c). */
typedef struct { jm_program *prog; int global; int write; int node; } jm_param_now;

typedef struct {
    jm_elab *E;
    int g;                                     /* graph receiving new nodes */
    const char *scope;                         /* parameter-name prefix, "" at the root */
    jm_binding_v *vars; int nvars, capvars;
    jm_program *prog;                          /* in a program's own body (outputs, state writes), else NULL */
    jm_program *view;                          /* the program whose pending state writes reads see (also in blocks) */
    jm_loopctx *loop;                          /* inside a sampler body, else NULL */
    jm_program *pview;                         /* the program whose parameter updates reads see (also in samplers) */
    const jm_modelframe *models;               /* the models being called here, innermost first */
    int depth;                                 /* call depth */
    uint32_t path;                             /* hash of the call sites (and repeat iterations) leading here */
    jm_value *ret; int nret; int returned;
    int returns_allowed;
} jm_ctx;

typedef enum { JM_G_CONFIG, JM_G_DECL } jm_gkind;
typedef struct { const char *name; jm_gkind kind; jm_decl *decl; jm_value value; jm_loc loc; } jm_gsym;

struct jm_elab {
    jm_diags *d;
    jm_arena *a;
    jm_module *m;
    jm_gsym *syms; int nsyms, capsyms;
    const jm_define *defs; int ndefs; int *def_used;
    const char **import_stack; int nimport;
    const char **imported; int nimported, capimported;
    long steps;                                /* statements + calls executed: bounded (see JM_MAX_STEPS) */
    int aborted;                               /* the step budget ran out: stop elaborating */
    int eval_depth;                            /* nesting of jm_eval (see JM_MAX_EVAL_DEPTH) */
    int knobs;                                 /* config constants used as tensors become run-time knobs (jm_elab_knob_node) */
    const char *const *fixed; int nfixed;      /* config constants that are also compiled in: always constants */
    jm_param_now *pnow; int npnow, cappnow;    /* updated parameters' current values (elab_params.c) */
};

/* The evaluated arguments of a call (of a declaration or a built-in). */
typedef struct {
    jm_ctx *c;
    jm_expr *call;
    jm_value *pos; int npos;
    jm_value *kw; const char **kwname; jm_loc *kwloc; int nkw;
    int *kw_used;
} jm_args;

/* elab_expr.c: values, names and expressions */
jm_value jm_eval(jm_ctx *c, jm_expr *e);
jm_value jm_v_err(void);
jm_value jm_v_int(int64_t i);
jm_value jm_v_float(double f);
jm_value jm_v_tensor(jm_ctx *c, int node);
int  jm_tensor_node(jm_ctx *c, jm_value v);          /* node id in c->g (captures across loops) */
const jm_type *jm_value_type(jm_ctx *c, jm_value v);
int  jm_add(jm_ctx *c, jm_op op, const int *src, int nsrc, const jm_attr *attr, const jm_type *type, jm_loc loc);
int  jm_const_node(jm_ctx *c, double v, jm_dtype dt, jm_loc loc);
int  jm_broadcast_to(jm_ctx *c, int node, const jm_type *to, jm_loc loc);
jm_value jm_binary(jm_ctx *c, jm_tok_kind op, jm_value a, jm_value b, jm_loc loc);
const char *jm_vkind_name(jm_vkind k);
int  jm_want_int(jm_ctx *c, jm_value v, jm_loc loc, const char *what, int64_t *out);
int  jm_want_number(jm_ctx *c, jm_value v, jm_loc loc, const char *what, double *out);
int  jm_want_tensor(jm_ctx *c, jm_value v, jm_loc loc, const char *what);   /* node id or -1; numbers are not tensors */
jm_gsym *jm_elab_find_sym(jm_elab *E, const char *name);                      /* a global name, or NULL */
jm_binding_v *jm_elab_find_var(jm_ctx *c, const char *name);                  /* a local, innermost first, or NULL */
void jm_elab_set_var(jm_ctx *c, const char *name, jm_value v);               /* binds (or rebinds) a local */
jm_value jm_elab_lookup(jm_ctx *c, const char *name, jm_loc loc);            /* a name's value; reports unknown names */

/* elab_block.c: calls of declarations, statements */
/* The random stream of a draw at loc: a hash of the call path and the site, so
   editing one part of a graph file does not change the numbers drawn elsewhere. */
uint32_t jm_stream_id(jm_ctx *c, jm_loc loc);
int  jm_elab_parse_type(jm_ctx *c, jm_type_expr *te, jm_type *out);         /* evaluates a type's dimensions */
jm_value jm_elab_call_decl(jm_ctx *c, jm_decl *decl, jm_args *A);            /* a block, model, energy, sampler or extern */
void jm_elab_exec_body(jm_ctx *c, jm_stmt **body, int n);

/* elab_state.c: parameters, state, knobs, outputs, optimizers */
jm_value jm_elab_state_value(jm_ctx *c, int global, jm_loc loc);             /* a PARAM or STATE node reading the global */
int  jm_elab_knob_global(jm_ctx *c, jm_value v, jm_loc loc);                 /* v's run-time knob global, or -1 */
int  jm_elab_knob_node(jm_ctx *c, jm_value v, jm_dtype dt, jm_loc loc);      /* v's knob as a node of dtype dt, or -1 */
int  jm_elab_eval_init(jm_ctx *c, jm_expr *e, const jm_type *t, jm_init *out); /* an initialiser of a global of type t: number, zeros(), uniform(), normal(), xavier_uniform() */
int  jm_elab_is_state_name(jm_ctx *c, const char *name);                     /* the global of a state variable not shadowed, or -1 */
void jm_elab_write_state(jm_ctx *c, int gi, int node, jm_loc loc);           /* a pending write of c->prog */
void jm_elab_stmt_param(jm_ctx *c, jm_stmt *s);
void jm_elab_stmt_index_assign(jm_ctx *c, jm_stmt *s);
void jm_elab_stmt_output(jm_ctx *c, jm_stmt *s);
void jm_elab_stmt_minimize(jm_ctx *c, jm_stmt *s);
void jm_elab_stmt_buffer(jm_ctx *c, jm_stmt *s);
void jm_elab_stmt_update(jm_ctx *c, jm_stmt *s);

/* elab_params.c: parameters as minimize leaves them, and grad(loss, params) */
/* The value a read of parameter gi gives now: detach(its pending update) after
   a minimize in this program updated it, else a PARAM node (start value). */
jm_value jm_elab_param_now(jm_ctx *c, int gi, jm_loc loc);
/* grad(loss, params) restricted to optimizer opt's parameter set (opt NULL:
   every parameter). Reports a loss that depends on none of them. */
jm_value jm_elab_params_grad(jm_ctx *c, int loss, jm_loc loc, const jm_decl_record *opt);
/* Is parameter gi in optimizer opt's `params=` set? */
int  jm_elab_opt_has(const jm_module *m, const jm_decl_record *opt, int gi);

/* builtins.c */
int  jm_builtin_exists(const char *name);
const char *const *jm_builtin_names(int *n);
jm_value jm_builtin_call(jm_args *A);
/* grad(loss, params): one GRAD node per parameter, output as "<name>.<param>"
   (elab_params.c). */
jm_value jm_params_grad(jm_ctx *c, int loss, jm_loc loc);
#endif
