/* ast.h — the syntax tree of a graph file, as written (before elaboration). */
#ifndef JM_AST_H
#define JM_AST_H
#include <stdint.h>
#include "lex.h"

typedef struct jm_expr jm_expr;
typedef struct jm_stmt jm_stmt;

typedef enum {
    JM_E_INT, JM_E_FLOAT, JM_E_STRING, JM_E_BOOL, JM_E_NAME, JM_E_LIST,
    JM_E_UNARY, JM_E_BINARY, JM_E_CALL, JM_E_INDEX, JM_E_IFELSE, JM_E_SLICE
} jm_expr_kind;

typedef struct { const char *name; jm_expr *value; jm_loc loc; } jm_kwarg;

struct jm_expr {
    jm_expr_kind kind;
    jm_loc loc;
    int64_t ival;          /* INT, BOOL */
    double fval;           /* FLOAT */
    const char *str;       /* STRING, NAME, CALL callee */
    jm_tok_kind op;        /* UNARY, BINARY */
    jm_expr *a, *b, *c;    /* operands; IFELSE: a if b else c; SLICE: a:b (either may be NULL); INDEX base = a */
    jm_expr **items; int nitems;       /* LIST items, CALL positional args, INDEX subscripts */
    jm_kwarg *kw; int nkw;             /* CALL keyword args */
    jm_expr *scope;                    /* CALL ... as SCOPE (NAME, INT or STRING with {var}) */
};

typedef struct {
    const char *dtype; jm_loc loc;     /* "f32", "i64", ... as written */
    jm_expr **dims; int ndims;
} jm_type_expr;

typedef struct {
    const char *name; jm_loc loc;
    jm_type_expr *type;                /* NULL when untyped (block parameters) */
    jm_expr *def;                      /* default value, or NULL */
} jm_param;

typedef enum {
    JM_S_ASSIGN, JM_S_INDEX_ASSIGN, JM_S_PARAM, JM_S_REPEAT, JM_S_IF, JM_S_RETURN,
    JM_S_OUTPUT, JM_S_MINIMIZE, JM_S_BUFFER, JM_S_UPDATE
} jm_stmt_kind;

struct jm_stmt {
    jm_stmt_kind kind;
    jm_loc loc;
    const char *name;                  /* ASSIGN/INDEX_ASSIGN target, PARAM/OUTPUT name, REPEAT var, MINIMIZE optimizer */
    const char **names; int nnames;    /* ASSIGN with several targets: a, b = ... */
    jm_loc name_loc;
    jm_expr *value;                    /* right-hand side, PARAM init, IF cond, MINIMIZE loss */
    jm_expr **index; int nindex;       /* INDEX_ASSIGN subscripts */
    jm_type_expr *type;                /* PARAM */
    jm_expr *lo, *hi;                  /* REPEAT: lo..hi, or count in hi with lo NULL; PARAM: bounds `in [lo, hi]` or NULL */
    jm_stmt **body; int nbody;         /* REPEAT, IF then */
    jm_stmt **orelse; int norelse;     /* IF else */
    jm_expr **values; int nvalues;     /* RETURN */
};

typedef enum {
    JM_D_IMPORT, JM_D_CONFIG, JM_D_BLOCK, JM_D_MODEL, JM_D_ENERGY, JM_D_SAMPLER,
    JM_D_PROGRAM, JM_D_STATE, JM_D_DATA, JM_D_OPTIMIZER, JM_D_EXTERN
} jm_decl_kind;

typedef struct { const char *name; jm_loc loc; jm_expr *value; } jm_config_entry;

typedef struct {
    jm_decl_kind kind;
    jm_loc loc;
    const char *name; jm_loc name_loc;
    const char *path;                  /* IMPORT path, EXTERN library */
    jm_config_entry *entries; int nentries;   /* CONFIG */
    jm_param *params; int nparams;
    jm_type_expr *ret;                 /* MODEL / EXTERN return type */
    jm_stmt **body; int nbody;
    jm_expr *value;                    /* ENERGY body, STATE init, DATA/OPTIMIZER call */
    jm_type_expr *type;                /* STATE */
} jm_decl;

typedef struct {
    int file;
    jm_decl *decls; int ndecls;
} jm_ast_file;

/* Parses source `file` (already registered in d). Errors go to d; the result is
   always usable (declarations with syntax errors are dropped). */
jm_ast_file *jm_parse(jm_diags *d, int file);
#endif
