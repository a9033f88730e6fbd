/* ir.h — jemc's intermediate representation.
 *
 * A module holds global tensors (parameters and persistent state), programs and
 * graphs. A graph is an append-only SSA array of nodes in topological order: a
 * node's sources always have smaller ids. Every value has a dtype and a static
 * shape (rank <= JM_MAX_RANK); values are logically contiguous row-major.
 * Programs own a root graph; a LOOP node owns a body graph whose LOOP_ARG nodes
 * are the carried values (first k) followed by captured outer values, and whose
 * `results` are the next carried values. */
#ifndef JM_IR_H
#define JM_IR_H
#include <stdint.h>
#include "diag.h"

#define JM_MAX_RANK 6

typedef enum { JM_F32, JM_F64, JM_I32, JM_I64, JM_BOOL, JM_TUPLE } jm_dtype;

typedef struct { jm_dtype dtype; int rank; int64_t dim[JM_MAX_RANK]; } jm_type;

typedef enum {
    JM_CLASS_LEAF, JM_CLASS_ELEMWISE, JM_CLASS_REDUCE, JM_CLASS_MOVEMENT, JM_CLASS_COMPLEX,
    JM_CLASS_COMPOSITE, JM_CLASS_RNG, JM_CLASS_CONTROL
} jm_op_class;

typedef enum {
#define JM_OP(e, name, cls, arity, shape, interp, grad) JM_OP_##e,
#include "ops.def"
#undef JM_OP
    JM_OP_COUNT
} jm_op;

typedef struct {
    int64_t i[24]; int ni;     /* integer attributes (axes, strides, ids) */
    double f[2];               /* float attributes (slope, constant, rng parameters) */
    int k;                     /* small integer attribute (axis, dtype, count) */
} jm_attr;

typedef struct {
    jm_op op;
    jm_type type;
    int nsrc;
    int *src;                  /* node ids in the same graph */
    jm_attr attr;
    jm_loc loc;                /* where in the graph file this node came from */
    const char *name;          /* inputs, params, state: the user-visible name */
} jm_node;

typedef struct {
    jm_node *node; int nnode, capnode;
    int *results; int nresults, capresults;   /* loop bodies: next carried values */
    int parent;                /* enclosing graph, -1 for a program's root */
} jm_graph;

typedef enum { JM_INIT_NONE, JM_INIT_ZEROS, JM_INIT_CONST, JM_INIT_UNIFORM, JM_INIT_NORMAL } jm_init_kind;
typedef struct { jm_init_kind kind; double a, b; } jm_init;

typedef enum { JM_GLOBAL_PARAM, JM_GLOBAL_STATE } jm_global_kind;
typedef struct {
    const char *name;
    jm_global_kind kind;
    jm_type type;
    jm_init init;
    jm_loc loc;
    int from_block;            /* declared by a block (param or buffer), not by a top-level `state` */
    const char *knob;          /* a run-time knob: the config constant it holds (global "config.NAME", init CONST) */
    const char **models; int nmodels;   /* parameters: the models whose calls were being elaborated when it was created */
    int bounded; double lo, hi;         /* parameters: `in [lo, hi]`, every minimize update is clamped to it */
} jm_global;

typedef struct { const char *name; int node; jm_loc loc; } jm_binding;
typedef struct { int global; int node; jm_loc loc; } jm_state_write;

typedef struct {
    const char *name;
    jm_loc loc;
    int graph;                              /* root graph */
    jm_binding *inputs; int ninputs, capinputs;     /* node = INPUT node id */
    jm_binding *outputs; int noutputs, capoutputs;
    jm_state_write *writes; int nwrites, capwrites; /* committed when the program ends */
    int nodes[3];                           /* node counts: elaborated, after autodiff, after simplify */
    /* data parallelism (dp.c): a training program (one with allreduce nodes)
       runs over shards of its batch; dp_why says why it cannot, NULL when it can */
    int dp;                                 /* has collectives */
    int dp_phases;                          /* 1 + the exchanges per step (dp.h) */
    const char *dp_why;
    int twins;                              /* op pairs merged by twin batching (batch.h) */
} jm_program;

typedef enum { JM_CV_INT, JM_CV_FLOAT, JM_CV_BOOL, JM_CV_STRING } jm_cv_kind;
typedef struct { const char *name; jm_cv_kind kind; int64_t i; double f; const char *s; jm_loc loc; const char *cfg; } jm_config_value;   /* cfg: the config constant it was read from, if any */

typedef struct {
    const char *name; jm_loc loc;
    const char *kind;                       /* "idx", "cifar10", "csv", "adam", ... */
    jm_config_value *args; int nargs;
    /* optimizers: `params=` (language §4.10). psel 0: every parameter; 1: the
       parameters of the models pmodels; 2: the parameters named pscope or pscope.* */
    int psel; const char **pmodels; int npmodels; const char *pscope; jm_loc ploc;
} jm_decl_record;                           /* optimizers (read by `minimize`) and data sets (checked and kept; `train --data` supplies the data) */

typedef struct {
    const char *name, *library; jm_loc loc;
    jm_type *params; int nparams;
    jm_type ret;
} jm_extern;

typedef struct {
    jm_arena *arena;
    jm_graph *graphs; int ngraphs, capgraphs;
    jm_global *globals; int nglobals, capglobals;
    jm_program *programs; int nprograms, capprograms;
    jm_config_value *config; int nconfig, capconfig;
    jm_decl_record *data; int ndata, capdata;
    jm_decl_record *optimizers; int noptimizers, capoptimizers;
    jm_extern *externs; int nexterns, capexterns;
} jm_module;

typedef struct {
    const char *name;
    jm_op_class cls;
    int arity;
} jm_op_info;
extern const jm_op_info jm_ops[JM_OP_COUNT];

/* types */
const char *jm_dtype_name(jm_dtype t);                  /* "f32" */
int  jm_dtype_parse(const char *s, jm_dtype *out);      /* 0 ok */
int  jm_dtype_is_float(jm_dtype t);
int  jm_dtype_is_int(jm_dtype t);
int64_t jm_type_numel(const jm_type *t);
int  jm_type_equal(const jm_type *a, const jm_type *b);
char *jm_type_str(const jm_type *t, char *buf, size_t n);   /* "f32[64,10]" */
jm_type jm_type_make(jm_dtype dt, int rank, const int64_t *dims);

/* building */
jm_module *jm_module_new(jm_arena *a);
int jm_graph_new(jm_module *m, int parent);
/* A pass that rebuilt graph g node by node into the temporary graph tmp (the
   last one) puts it in g's place: loop results and the programs' inputs,
   outputs and state writes follow map (old node -> new node), tmp's slot is
   dropped. */
void jm_graph_replace(jm_module *m, int g, int tmp, const int *map);
/* Appends a node; computes and checks its type with the op's shape rule. The
 * node's type field may be preset for ops whose rule is "given". Returns the new
 * node id, or -1 after reporting an error at loc. */
int jm_ir_add(jm_module *m, int g, jm_op op, const int *src, int nsrc, const jm_attr *attr,
              const jm_type *type, jm_loc loc, jm_diags *d);
static inline jm_node *jm_ir_node(jm_module *m, int g, int id) { return &m->graphs[g].node[id]; }

/* shape rules (shape.c): 0 ok, -1 after reporting */
int jm_shape_infer(jm_module *m, jm_graph *g, jm_node *n, jm_diags *d);

/* checks every structural invariant; returns the number of problems (reported as internal errors) */
int jm_ir_verify(jm_module *m, jm_diags *d);
/* text dump of a program (or every program when name is NULL) */
void jm_ir_dump(jm_module *m, const char *program, FILE *out);
/* Changes every `from` element type in the module to `to` (globals, nodes, casts):
   used to evaluate an f32 graph in float64. */
void jm_module_retype(jm_module *m, jm_dtype from, jm_dtype to);
int jm_module_find_program(const jm_module *m, const char *name);
int jm_module_find_global(const jm_module *m, const char *name);
/* A hash of everything a module computes (nodes, types, attributes, globals,
   programs) except the value held by run-time knob `knob` (a config constant's
   name): its global's initial value and the trip counts of loops that read a
   knob. Two elaborations that differ only in that knob's value hash equal. */
uint64_t jm_module_hash(const jm_module *m, const char *knob);
#endif
