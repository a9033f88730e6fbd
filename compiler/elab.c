/* elab.c — elaboration: AST -> IR.
 *
 * Elaboration is an interpreter over the syntax tree. Compile-time values
 * (integers, floats, bools, strings, lists) are computed on the spot; tensor
 * values are IR nodes. Blocks are expanded at each call (so `repeat` and `if`
 * run at compile time and WRN-28-10 is a page of text), `as name` extends the
 * parameter-name scope, samplers become LOOP nodes whose body is elaborated
 * once, and programs become root graphs over the module's global state. */
#include "elab_int.h"
#include "engine/philox.h"
#include <libgen.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define JM_MAX_CALL_DEPTH 64
/* Elaboration runs user code at compile time (repeat, recursion through blocks);
   a budget keeps a runaway graph file from hanging the compiler. WRN-28-10 needs
   about ten thousand steps. */
#define JM_MAX_STEPS 2000000L

static int jm_budget(jm_ctx *c, jm_loc loc) {
    jm_elab *E = c->E;
    if (E->aborted) return -1;
    if (++E->steps > JM_MAX_STEPS) {
        jm_diag_error(E->d, loc, "elaboration takes more than %ld steps; is a repeat or a recursive block running away?", JM_MAX_STEPS);
        E->aborted = 1;
        return -1;
    }
    return 0;
}

jm_value jm_v_err(void) { jm_value v; memset(&v, 0, sizeof v); v.kind = JM_V_ERR; return v; }
jm_value jm_v_int(int64_t i) { jm_value v = jm_v_err(); v.kind = JM_V_INT; v.i = i; return v; }
jm_value jm_v_float(double f) { jm_value v = jm_v_err(); v.kind = JM_V_FLOAT; v.f = f; return v; }
static jm_value jm_v_bool(int b) { jm_value v = jm_v_err(); v.kind = JM_V_BOOL; v.i = !!b; return v; }
static jm_value jm_v_str(const char *s) { jm_value v = jm_v_err(); v.kind = JM_V_STR; v.s = s; return v; }
jm_value jm_v_tensor(jm_ctx *c, int node) {
    if (node < 0) return jm_v_err();
    jm_value v = jm_v_err(); v.kind = JM_V_TENSOR; v.g = c->g; v.node = node; return v;
}

const char *jm_vkind_name(jm_vkind k) {
    switch (k) {
    case JM_V_ERR: return "an erroneous value";
    case JM_V_NONE: return "nothing";
    case JM_V_INT: return "an integer";
    case JM_V_FLOAT: return "a number";
    case JM_V_BOOL: return "a bool";
    case JM_V_STR: return "a string";
    case JM_V_LIST: return "a list";
    case JM_V_TENSOR: return "a tensor";
    case JM_V_PARAMS: return "the gradients of all parameters";
    }
    return "a value";
}

/* ---- tensors across loop bodies ------------------------------------------ */

/* A tensor made in an enclosing graph and used inside a sampler body becomes a
   captured loop input: a LOOP_ARG in the body, an extra source of the LOOP node. */
static int jm_capture(jm_ctx *c, jm_loopctx *L, int g, int node) {
    if (g == L->body) return node;
    int outer_node = node;
    if (g != L->outer_g) {
        if (!L->outer) return -1;
        outer_node = jm_capture(c, L->outer, g, node);
        if (outer_node < 0) return -1;
    }
    for (int i = 0; i < L->ncap; i++)
        if (L->cap_outer[i] == outer_node) return L->cap_inner[i];
    jm_module *m = c->E->m;
    jm_node *src = &m->graphs[L->outer_g].node[outer_node];
    jm_attr at;
    memset(&at, 0, sizeof at);
    at.k = L->ncarried + L->ncap;
    int inner = jm_ir_add(m, L->body, JM_OP_LOOP_ARG, NULL, 0, &at, &src->type, src->loc, c->E->d);
    if (L->ncap == L->capcap) {
        int nc = L->capcap ? 2 * L->capcap : 8;
        L->cap_outer = jm_arena_grow(c->E->a, L->cap_outer, sizeof(int) * (size_t)L->capcap, sizeof(int) * (size_t)nc);
        L->cap_inner = jm_arena_grow(c->E->a, L->cap_inner, sizeof(int) * (size_t)L->capcap, sizeof(int) * (size_t)nc);
        L->capcap = nc;
    }
    L->cap_outer[L->ncap] = outer_node;
    L->cap_inner[L->ncap] = inner;
    L->ncap++;
    return inner;
}

int jm_tensor_node(jm_ctx *c, jm_value v) {
    if (v.kind != JM_V_TENSOR) return -1;
    if (v.g == c->g) return v.node;
    if (!c->loop) return -1;
    return jm_capture(c, c->loop, v.g, v.node);
}

const jm_type *jm_value_type(jm_ctx *c, jm_value v) {
    return &c->E->m->graphs[v.g].node[v.node].type;
}

int jm_add(jm_ctx *c, jm_op op, const int *src, int nsrc, const jm_attr *attr, const jm_type *type, jm_loc loc) {
    if (c->g < 0) {
        /* config constants, initialisers, defaults and types are evaluated outside any program */
        jm_diag_error(c->E->d, loc, "a tensor cannot be computed here: only compile-time values (numbers, bools, strings, lists) are allowed");
        return -1;
    }
    return jm_ir_add(c->E->m, c->g, op, src, nsrc, attr, type, loc, c->E->d);
}

static uint32_t jm_path_mix(jm_ctx *c, uint32_t h, jm_loc loc) {
    if (loc.file >= 0 && loc.file < c->E->d->nsrc) {
        const char *p = c->E->d->src[loc.file].path;
        const char *base = strrchr(p, '/');
        base = base ? base + 1 : p;          /* the file name, not where the checkout lives */
        h = jm_hash32(base, strlen(base), h);
    }
    int lc[2] = { loc.line, loc.col };
    return jm_hash32(lc, sizeof lc, h);
}

uint32_t jm_stream_id(jm_ctx *c, jm_loc loc) { return jm_path_mix(c, c->path, loc); }

int jm_const_node(jm_ctx *c, double v, jm_dtype dt, jm_loc loc) {
    jm_attr at;
    memset(&at, 0, sizeof at);
    /* constants take their element type's values: integers truncate, bools are 0 or 1 */
    if (jm_dtype_is_int(dt)) v = isfinite(v) ? trunc(v) : 0;
    else if (dt == JM_BOOL) v = v != 0;
    at.f[0] = v;
    jm_type t = jm_type_make(dt, 0, NULL);
    return jm_add(c, JM_OP_CONST, NULL, 0, &at, &t, loc);
}

int jm_broadcast_to(jm_ctx *c, int node, const jm_type *to, jm_loc loc) {
    if (node < 0) return -1;
    jm_node *n = &c->E->m->graphs[c->g].node[node];
    jm_type want = *to;
    want.dtype = n->type.dtype;
    if (jm_type_equal(&n->type, &want)) return node;
    return jm_add(c, JM_OP_BROADCAST, &node, 1, NULL, &want, loc);
}

int jm_want_int(jm_ctx *c, jm_value v, jm_loc loc, const char *what, int64_t *out) {
    if (v.kind == JM_V_INT) { *out = v.i; return 0; }
    if (v.kind == JM_V_FLOAT && v.f == floor(v.f) && fabs(v.f) < 9e15) { *out = (int64_t)v.f; return 0; }
    if (v.kind != JM_V_ERR)
        jm_diag_error(c->E->d, loc, "%s must be a compile-time integer, got %s", what, jm_vkind_name(v.kind));
    return -1;
}

int jm_want_number(jm_ctx *c, jm_value v, jm_loc loc, const char *what, double *out) {
    if (v.kind == JM_V_INT) { *out = (double)v.i; return 0; }
    if (v.kind == JM_V_FLOAT) { *out = v.f; return 0; }
    if (v.kind != JM_V_ERR)
        jm_diag_error(c->E->d, loc, "%s must be a compile-time number, got %s", what, jm_vkind_name(v.kind));
    return -1;
}

int jm_want_tensor(jm_ctx *c, jm_value v, jm_loc loc, const char *what) {
    if (v.kind == JM_V_TENSOR) return jm_tensor_node(c, v);
    if (v.kind != JM_V_ERR)
        jm_diag_error(c->E->d, loc, "%s must be a tensor, got %s", what, jm_vkind_name(v.kind));
    return -1;
}

/* ---- names ------------------------------------------------------------- */

static jm_gsym *jm_find_sym(jm_elab *E, const char *name) {
    for (int i = 0; i < E->nsyms; i++)
        if (strcmp(E->syms[i].name, name) == 0) return &E->syms[i];
    return NULL;
}

static jm_binding_v *jm_find_var(jm_ctx *c, const char *name) {
    for (int i = c->nvars - 1; i >= 0; i--)
        if (strcmp(c->vars[i].name, name) == 0) return &c->vars[i];
    return NULL;
}

static void jm_set_var(jm_ctx *c, const char *name, jm_value v) {
    jm_binding_v *b = jm_find_var(c, name);
    if (b) { b->v = v; b->buffer = 0; return; }
    jm_binding_v nb = { name, v, 0 };
    JM_VEC_PUSH(c->E->a, c->vars, c->nvars, c->capvars, nb);
}

static void jm_unknown_name(jm_ctx *c, const char *name, jm_loc loc, const char *what) {
    jm_elab *E = c->E;
    int nb = 0;
    const char *const *bn = jm_builtin_names(&nb);
    int n = c->nvars + E->nsyms + nb, k = 0;
    const char **cands = malloc(sizeof(char *) * (size_t)(n + 1));
    for (int i = 0; i < c->nvars; i++) cands[k++] = c->vars[i].name;
    for (int i = 0; i < E->nsyms; i++) cands[k++] = E->syms[i].name;
    for (int i = 0; i < nb; i++) cands[k++] = bn[i];
    const char *best = jm_diag_closest(name, cands, k);
    if (best) jm_diag_error(E->d, loc, "unknown %s '%s'; did you mean '%s'?", what, name, best);
    else jm_diag_error(E->d, loc, "unknown %s '%s'", what, name);
    free(cands);
}

static jm_value jm_state_value(jm_ctx *c, int global, jm_loc loc) {
    jm_attr at;
    memset(&at, 0, sizeof at);
    at.i[0] = global;
    int id = jm_add(c, c->E->m->globals[global].kind == JM_GLOBAL_PARAM ? JM_OP_PARAM : JM_OP_STATE,
                    NULL, 0, &at, NULL, loc);
    if (id >= 0) c->E->m->graphs[c->g].node[id].name = c->E->m->globals[global].name;
    return jm_v_tensor(c, id);
}

static jm_value jm_lookup(jm_ctx *c, const char *name, jm_loc loc) {
    jm_binding_v *b = jm_find_var(c, name);
    if (b) return b->v;
    jm_gsym *s = jm_find_sym(c->E, name);
    if (s && s->kind == JM_G_CONFIG) {
        jm_value v = s->value;
        if (v.kind == JM_V_INT || v.kind == JM_V_FLOAT) v.cfg = s->name;   /* may become a knob (jm_knob_global) */
        return v;
    }
    if (s && s->decl->kind == JM_D_STATE) {
        int gi = jm_module_find_global(c->E->m, name);
        if (gi < 0 || c->g < 0) {
            jm_diag_error(c->E->d, loc, "'%s' is a state variable: it has a value only inside programs", name);
            return jm_v_err();
        }
        /* Inside a program, a state variable already assigned reads its new value. */
        if (c->view)
            for (int i = 0; i < c->view->nwrites; i++)
                if (c->view->writes[i].global == gi) {
                    jm_value v = jm_v_err();
                    v.kind = JM_V_TENSOR;
                    v.g = c->view->graph;
                    v.node = c->view->writes[i].node;
                    return v;
                }
        return jm_state_value(c, gi, loc);
    }
    if (strcmp(name, "params") == 0) {
        jm_value v = jm_v_err();
        v.kind = JM_V_PARAMS;
        return v;
    }
    if (s) {
        jm_diag_error(c->E->d, loc, "'%s' is a declaration, not a value; call it with arguments", name);
        return jm_v_err();
    }
    jm_unknown_name(c, name, loc, "name");
    return jm_v_err();
}

/* ---- arithmetic ------------------------------------------------------------ */

static int jm_is_number(jm_value v) { return v.kind == JM_V_INT || v.kind == JM_V_FLOAT || v.kind == JM_V_BOOL; }

static jm_value jm_fold(jm_ctx *c, jm_tok_kind op, jm_value a, jm_value b, jm_loc loc) {
    int ints = (a.kind == JM_V_INT || a.kind == JM_V_BOOL) && (b.kind == JM_V_INT || b.kind == JM_V_BOOL);
    double x = a.kind == JM_V_FLOAT ? a.f : (double)a.i, y = b.kind == JM_V_FLOAT ? b.f : (double)b.i;
    switch (op) {
    case JM_T_PLUS: case JM_T_MINUS: case JM_T_STAR:
        if (ints) {
            int64_t r;
            int ovf = op == JM_T_PLUS ? __builtin_add_overflow(a.i, b.i, &r)
                    : op == JM_T_MINUS ? __builtin_sub_overflow(a.i, b.i, &r) : __builtin_mul_overflow(a.i, b.i, &r);
            if (ovf) { jm_diag_error(c->E->d, loc, "integer overflow in a compile-time expression"); return jm_v_err(); }
            return jm_v_int(r);
        }
        return jm_v_float(op == JM_T_PLUS ? x + y : op == JM_T_MINUS ? x - y : x * y);
    case JM_T_SLASH:
        if (y == 0) { jm_diag_error(c->E->d, loc, "division by zero in a compile-time expression"); return jm_v_err(); }
        return jm_v_float(x / y);                 /* '/' always gives a float, as in Python */
    case JM_T_PERCENT:
        if (!ints) { jm_diag_error(c->E->d, loc, "'%%' needs integers"); return jm_v_err(); }
        if (b.i == 0) { jm_diag_error(c->E->d, loc, "modulo by zero in a compile-time expression"); return jm_v_err(); }
        if (a.i == INT64_MIN && b.i == -1) return jm_v_int(0);
        return jm_v_int(a.i % b.i);
    case JM_T_STARSTAR:
        if (ints && b.i >= 0) {
            /* exponentiation by squaring: O(log exponent), overflow checked */
            int64_t r = 1, base = a.i, e = b.i;
            while (e > 0) {
                if ((e & 1) && __builtin_mul_overflow(r, base, &r)) { jm_diag_error(c->E->d, loc, "integer overflow in '**'"); return jm_v_err(); }
                e >>= 1;
                if (e > 0 && __builtin_mul_overflow(base, base, &base)) {
                    jm_diag_error(c->E->d, loc, "integer overflow in '**'");
                    return jm_v_err();
                }
            }
            return jm_v_int(r);
        }
        return jm_v_float(pow(x, y));
    case JM_T_EQ: return jm_v_bool(x == y);
    case JM_T_NE: return jm_v_bool(x != y);
    case JM_T_LT: return jm_v_bool(x < y);
    case JM_T_LE: return jm_v_bool(x <= y);
    case JM_T_GT: return jm_v_bool(x > y);
    case JM_T_GE: return jm_v_bool(x >= y);
    case JM_T_AND: return jm_v_bool(x != 0 && y != 0);
    case JM_T_OR: return jm_v_bool(x != 0 || y != 0);
    default: break;
    }
    jm_diag_error(c->E->d, loc, "operator %s is not defined on numbers", jm_tok_describe(op));
    return jm_v_err();
}

/* Run-time knobs. A config constant read straight into a tensor expression
   (`sgld_lr * g`, an optimizer's lr, a sampler's steps) is not folded into the
   code: it becomes a scalar state global "config.NAME" (f32 for numbers, i64
   for integers, initialised to the constant) that the generated executable may
   change without recompiling (`train --set sgld_lr=0.5`). A constant that is
   also used at compile time (a shape, an attribute, arithmetic folded here)
   could not change consistently: jm_frontend_load finds those by elaborating
   again with the constant perturbed, and lists them in E->fixed, where they
   stay plain constants. Returns the global's index, or -1 when v is no knob. */
static int jm_knob_global(jm_ctx *c, jm_value v, jm_loc loc) {
    jm_elab *E = c->E;
    if (!v.cfg || !E->knobs || (v.kind != JM_V_INT && v.kind != JM_V_FLOAT) || c->g < 0) return -1;
    for (int i = 0; i < E->nfixed; i++) if (strcmp(E->fixed[i], v.cfg) == 0) return -1;
    const char *name = jm_arena_printf(E->a, "config.%s", v.cfg);
    jm_module *m = E->m;
    int gi = jm_module_find_global(m, name);
    if (gi >= 0) return m->globals[gi].knob ? gi : -1;
    jm_type t = jm_type_make(v.kind == JM_V_FLOAT ? JM_F32 : JM_I64, 0, NULL);
    jm_global g = { name, JM_GLOBAL_STATE, t, { JM_INIT_CONST, v.kind == JM_V_FLOAT ? v.f : (double)v.i, 0 }, loc, 0, v.cfg };
    JM_VEC_PUSH(E->a, m->globals, m->nglobals, m->capglobals, g);
    return m->nglobals - 1;
}

/* The knob's value as a node of dtype dt, or -1 when v is no knob. */
static int jm_knob_node(jm_ctx *c, jm_value v, jm_dtype dt, jm_loc loc) {
    int gi = jm_knob_global(c, v, loc);
    if (gi < 0) return -1;
    int id = jm_state_value(c, gi, loc).node;
    if (id >= 0 && c->E->m->globals[gi].type.dtype != dt) {
        jm_attr at;
        memset(&at, 0, sizeof at);
        at.k = dt;
        id = jm_add(c, JM_OP_CAST, &id, 1, &at, NULL, loc);
    }
    return id;
}

/* Brings a number or tensor operand to a tensor node of dtype dt. */
static int jm_operand(jm_ctx *c, jm_value v, jm_dtype dt, jm_loc loc) {
    int knob = jm_knob_node(c, v, dt, loc);
    if (knob >= 0) return knob;
    if (v.kind == JM_V_TENSOR) {
        int id = jm_tensor_node(c, v);
        if (id < 0) return -1;
        jm_node *n = &c->E->m->graphs[c->g].node[id];
        if (n->type.dtype != dt) {
            jm_attr at;
            memset(&at, 0, sizeof at);
            at.k = dt;
            id = jm_add(c, JM_OP_CAST, &id, 1, &at, NULL, loc);
        }
        return id;
    }
    return jm_const_node(c, v.kind == JM_V_FLOAT ? v.f : (double)v.i, dt, loc);
}

jm_value jm_binary(jm_ctx *c, jm_tok_kind op, jm_value a, jm_value b, jm_loc loc) {
    if (a.kind == JM_V_ERR || b.kind == JM_V_ERR) return jm_v_err();
    if (jm_is_number(a) && jm_is_number(b)) return jm_fold(c, op, a, b, loc);
    if (a.kind == JM_V_STR && b.kind == JM_V_STR && op == JM_T_PLUS)
        return jm_v_str(jm_arena_printf(c->E->a, "%s%s", a.s, b.s));
    if ((a.kind != JM_V_TENSOR && !jm_is_number(a)) || (b.kind != JM_V_TENSOR && !jm_is_number(b))) {
        jm_diag_error(c->E->d, loc, "operator %s cannot combine %s and %s", jm_tok_describe(op),
                      jm_vkind_name(a.kind), jm_vkind_name(b.kind));
        return jm_v_err();
    }
    /* Result dtype: the float type of a tensor operand wins; mixing f32 and f64 is an error. */
    const jm_type *ta = a.kind == JM_V_TENSOR ? jm_value_type(c, a) : NULL;
    const jm_type *tb = b.kind == JM_V_TENSOR ? jm_value_type(c, b) : NULL;
    jm_dtype dt;
    if (ta && tb) {
        if (ta->dtype != tb->dtype && jm_dtype_is_float(ta->dtype) && jm_dtype_is_float(tb->dtype)) {
            jm_diag_error(c->E->d, loc, "operator %s mixes %s and %s; convert one with cast()", jm_tok_describe(op),
                          jm_dtype_name(ta->dtype), jm_dtype_name(tb->dtype));
            return jm_v_err();
        }
        dt = jm_dtype_is_float(ta->dtype) ? ta->dtype : jm_dtype_is_float(tb->dtype) ? tb->dtype
           : ta->dtype == JM_BOOL ? tb->dtype : ta->dtype;
    } else {
        const jm_type *t = ta ? ta : tb;
        jm_value num = ta ? b : a;
        dt = t->dtype;
        if (num.kind == JM_V_FLOAT && !jm_dtype_is_float(dt)) dt = JM_F32;
        if (num.kind == JM_V_BOOL && dt == JM_BOOL) dt = JM_BOOL;
    }
    if (op == JM_T_AND || op == JM_T_OR) dt = JM_BOOL;
    if (op == JM_T_SLASH || op == JM_T_STARSTAR) {
        if (!jm_dtype_is_float(dt)) dt = JM_F32;
    }
    if (dt == JM_BOOL && op != JM_T_AND && op != JM_T_OR && op != JM_T_EQ && op != JM_T_NE) dt = JM_F32;
    int x = jm_operand(c, a, dt, loc), y = jm_operand(c, b, dt, loc);
    if (x < 0 || y < 0) return jm_v_err();
    /* numpy broadcasting: align from the right; each pair equal or one of them 1. */
    jm_type *tx = &c->E->m->graphs[c->g].node[x].type, *ty = &c->E->m->graphs[c->g].node[y].type;
    jm_type out;
    memset(&out, 0, sizeof out);
    out.dtype = dt;
    out.rank = tx->rank > ty->rank ? tx->rank : ty->rank;
    for (int i = 0; i < out.rank; i++) {
        int64_t dx = i < tx->rank ? tx->dim[tx->rank - 1 - i] : 1;
        int64_t dy = i < ty->rank ? ty->dim[ty->rank - 1 - i] : 1;
        if (dx != dy && dx != 1 && dy != 1) {
            char s1[128], s2[128];
            jm_diag_error(c->E->d, loc, "shape mismatch: cannot broadcast %s and %s for %s",
                          jm_type_str(tx, s1, sizeof s1), jm_type_str(ty, s2, sizeof s2), jm_tok_describe(op));
            return jm_v_err();
        }
        out.dim[out.rank - 1 - i] = dx == 1 ? dy : dx;
    }
    x = jm_broadcast_to(c, x, &out, loc);
    y = jm_broadcast_to(c, y, &out, loc);
    int src[2] = { x, y };
    jm_op o;
    switch (op) {
    case JM_T_PLUS: o = JM_OP_ADD; break;
    case JM_T_MINUS: o = JM_OP_SUB; break;
    case JM_T_STAR: o = JM_OP_MUL; break;
    case JM_T_SLASH: o = JM_OP_DIV; break;
    case JM_T_STARSTAR: o = JM_OP_POW; break;
    case JM_T_EQ: o = JM_OP_EQ; break;
    case JM_T_NE: o = JM_OP_NE; break;
    case JM_T_LT: o = JM_OP_LT; break;
    case JM_T_LE: o = JM_OP_LE; break;
    case JM_T_GT: o = JM_OP_GT; break;
    case JM_T_GE: o = JM_OP_GE; break;
    case JM_T_AND: o = JM_OP_AND; break;
    case JM_T_OR: o = JM_OP_OR; break;
    default:
        jm_diag_error(c->E->d, loc, "operator %s is not defined on tensors", jm_tok_describe(op));
        return jm_v_err();
    }
    return jm_v_tensor(c, jm_add(c, o, src, 2, NULL, NULL, loc));
}

/* ---- calls --------------------------------------------------------------- */

static void jm_exec_body(jm_ctx *c, jm_stmt **body, int n);
static jm_value jm_call_sampler(jm_ctx *c, jm_decl *decl, jm_args *A);

static int jm_parse_type(jm_ctx *c, jm_type_expr *te, jm_type *out) {
    jm_dtype dt;
    if (jm_dtype_parse(te->dtype, &dt) != 0) {
        jm_diag_error(c->E->d, te->loc, "unknown element type '%s' (expected f32, f64, i32, i64 or bool)", te->dtype);
        return -1;
    }
    if (te->ndims > JM_MAX_RANK) {
        jm_diag_error(c->E->d, te->loc, "a tensor may have at most %d dimensions, this type has %d", JM_MAX_RANK, te->ndims);
        return -1;
    }
    memset(out, 0, sizeof *out);
    out->dtype = dt;
    out->rank = te->ndims;
    int64_t numel = 1;
    for (int i = 0; i < te->ndims; i++) {
        int64_t v;
        if (jm_want_int(c, jm_eval(c, te->dims[i]), te->dims[i]->loc, "a dimension", &v) != 0) return -1;
        if (v < 0) {
            jm_diag_error(c->E->d, te->dims[i]->loc, "dimension %d is negative (%lld)", i, (long long)v);
            return -1;
        }
        if (v > 0 && numel > (INT64_C(1) << 40) / v) {
            jm_diag_error(c->E->d, te->dims[i]->loc, "tensor type is too large (more than 2^40 elements)");
            return -1;
        }
        numel *= v;
        out->dim[i] = v;
    }
    return 0;
}

/* Binds call arguments to a declaration's parameters (positional, keyword, defaults). */
static int jm_bind_args(jm_ctx *callee, jm_decl *decl, jm_args *A, jm_ctx *defctx, const char *what) {
    jm_elab *E = callee->E;
    int np = decl->nparams;
    if (A->npos > np) {
        jm_diag_error(E->d, A->call->loc, "%s %s takes %d argument%s, got %d", what, decl->name, np, np == 1 ? "" : "s", A->npos);
        jm_diag_note(E->d, decl->name_loc, "%s is declared here", decl->name);
        return -1;
    }
    jm_value *vals = jm_arena_alloc(E->a, sizeof(jm_value) * (size_t)(np + 1));
    int *have = jm_arena_alloc(E->a, sizeof(int) * (size_t)(np + 1));
    for (int i = 0; i < A->npos; i++) { vals[i] = A->pos[i]; have[i] = 1; }
    for (int k = 0; k < A->nkw; k++) {
        int found = -1;
        for (int i = 0; i < np; i++)
            if (strcmp(decl->params[i].name, A->kwname[k]) == 0) found = i;
        if (found < 0) {
            const char **names = jm_arena_alloc(E->a, sizeof(char *) * (size_t)(np + 1));
            for (int i = 0; i < np; i++) names[i] = decl->params[i].name;
            const char *best = jm_diag_closest(A->kwname[k], names, np);
            if (best) jm_diag_error(E->d, A->kwloc[k], "%s %s has no parameter named '%s'; did you mean '%s'?", what, decl->name, A->kwname[k], best);
            else jm_diag_error(E->d, A->kwloc[k], "%s %s has no parameter named '%s'", what, decl->name, A->kwname[k]);
            return -1;
        }
        if (have[found]) {
            jm_diag_error(E->d, A->kwloc[k], "argument '%s' of %s given twice", A->kwname[k], decl->name);
            return -1;
        }
        vals[found] = A->kw[k];
        have[found] = 1;
    }
    for (int i = 0; i < np; i++) {
        jm_param *p = &decl->params[i];
        if (!have[i]) {
            if (!p->def) {
                jm_diag_error(E->d, A->call->loc, "%s %s takes %d argument%s, got %d: missing '%s'", what, decl->name,
                              np, np == 1 ? "" : "s", A->npos + A->nkw, p->name);
                jm_diag_note(E->d, decl->name_loc, "%s is declared here", decl->name);
                return -1;
            }
            vals[i] = jm_eval(defctx, p->def);
        }
        if (p->type && vals[i].kind != JM_V_ERR) {
            jm_type want;
            if (jm_parse_type(defctx, p->type, &want) != 0) return -1;
            if (vals[i].kind != JM_V_TENSOR) {
                jm_diag_error(E->d, A->call->loc, "argument '%s' of %s must be a tensor %s, got %s", p->name, decl->name,
                              jm_type_str(&want, (char[128]){0}, 128), jm_vkind_name(vals[i].kind));
                return -1;
            }
            const jm_type *got = jm_value_type(callee, vals[i]);
            if (!jm_type_equal(got, &want)) {
                char s1[128], s2[128];
                jm_diag_error(E->d, A->call->loc, "argument '%s' of %s: expected %s, got %s", p->name, decl->name,
                              jm_type_str(&want, s1, sizeof s1), jm_type_str(got, s2, sizeof s2));
                return -1;
            }
        }
        jm_set_var(callee, p->name, vals[i]);
    }
    return 0;
}

static const char *jm_scope_join(jm_ctx *c, jm_expr *scope) {
    jm_elab *E = c->E;
    char buf[512];
    size_t n = 0;
    if (scope->kind == JM_E_INT) {
        snprintf(buf, sizeof buf, "%lld", (long long)scope->ival);
    } else {
        /* "{name}" inside a scope string is replaced by the value of a variable. */
        const char *p = scope->str;
        while (*p && n < sizeof buf - 1) {
            if (*p == '{') {
                const char *e = strchr(p, '}');
                if (!e) { jm_diag_error(E->d, scope->loc, "unclosed '{' in scope name \"%s\"", scope->str); return NULL; }
                char var[128];
                size_t vl = (size_t)(e - p - 1);
                if (vl == 0 || vl >= sizeof var) { jm_diag_error(E->d, scope->loc, "bad '{...}' in scope name \"%s\"", scope->str); return NULL; }
                memcpy(var, p + 1, vl);
                var[vl] = 0;
                jm_value v = jm_lookup(c, var, scope->loc);
                if (v.kind == JM_V_ERR) return NULL;
                int w;
                if (v.kind == JM_V_INT) w = snprintf(buf + n, sizeof buf - n, "%lld", (long long)v.i);
                else if (v.kind == JM_V_STR) w = snprintf(buf + n, sizeof buf - n, "%s", v.s);
                else { jm_diag_error(E->d, scope->loc, "'{%s}' in a scope name must be an integer or a string", var); return NULL; }
                n += (size_t)w;
                if (n >= sizeof buf) n = sizeof buf - 1;
                p = e + 1;
            } else {
                buf[n++] = *p++;
            }
        }
        buf[n] = 0;
    }
    if (!buf[0]) { jm_diag_error(E->d, scope->loc, "empty scope name"); return NULL; }
    return c->scope[0] ? jm_arena_printf(E->a, "%s.%s", c->scope, buf) : jm_arena_strdup(E->a, buf);
}

/* A call of a user's C function (an `extern`, language §4.11): arguments bind
   by position or by name (defaults from the declaration), each must have its
   parameter's declared type exactly (a number becomes a rank-0 constant of that
   type), and the EXTERN_CALL node has the declared result type. */
static jm_value jm_call_extern(jm_ctx *c, jm_decl *decl, jm_args *A) {
    jm_elab *E = c->E;
    jm_module *m = E->m;
    if (A->call->scope) {
        jm_diag_error(E->d, A->call->scope->loc, "'as' names a block's parameters; extern %s has none", decl->name);
        return jm_v_err();
    }
    int xi = -1;
    for (int i = 0; i < m->nexterns && xi < 0; i++) if (strcmp(m->externs[i].name, decl->name) == 0) xi = i;
    if (xi < 0) return jm_v_err();                 /* its declaration had an error, reported */
    int np = decl->nparams;
    if (A->npos > np) {
        jm_diag_error(E->d, A->call->loc, "extern %s takes %d argument%s, got %d", decl->name, np, np == 1 ? "" : "s", A->npos);
        jm_diag_note(E->d, decl->name_loc, "%s is declared here", decl->name);
        return jm_v_err();
    }
    jm_value *vals = jm_arena_alloc(E->a, sizeof(jm_value) * (size_t)(np + 1));
    jm_loc *vloc = jm_arena_alloc(E->a, sizeof(jm_loc) * (size_t)(np + 1));
    int *have = jm_arena_alloc(E->a, sizeof(int) * (size_t)(np + 1));
    for (int i = 0; i < A->npos; i++) { vals[i] = A->pos[i]; vloc[i] = A->call->items[i]->loc; have[i] = 1; }
    for (int k = 0; k < A->nkw; k++) {
        int found = -1;
        for (int i = 0; i < np; i++) if (strcmp(decl->params[i].name, A->kwname[k]) == 0) found = i;
        if (found < 0) {
            const char **names = jm_arena_alloc(E->a, sizeof(char *) * (size_t)(np + 1));
            for (int i = 0; i < np; i++) names[i] = decl->params[i].name;
            const char *best = jm_diag_closest(A->kwname[k], names, np);
            if (best) jm_diag_error(E->d, A->kwloc[k], "extern %s has no parameter named '%s'; did you mean '%s'?", decl->name, A->kwname[k], best);
            else jm_diag_error(E->d, A->kwloc[k], "extern %s has no parameter named '%s'", decl->name, A->kwname[k]);
            return jm_v_err();
        }
        if (have[found]) {
            jm_diag_error(E->d, A->kwloc[k], "argument '%s' of %s given twice", A->kwname[k], decl->name);
            return jm_v_err();
        }
        vals[found] = A->kw[k];
        vloc[found] = A->kwloc[k];
        have[found] = 1;
    }
    jm_ctx defctx;                                 /* defaults see only globals */
    memset(&defctx, 0, sizeof defctx);
    defctx.E = E; defctx.g = c->g; defctx.scope = c->scope; defctx.view = c->view; defctx.loop = c->loop;
    defctx.depth = c->depth + 1; defctx.path = c->path;
    int *src = jm_arena_alloc(E->a, sizeof(int) * (size_t)(np + 1));
    for (int i = 0; i < np; i++) {
        const char *pn = decl->params[i].name;
        if (!have[i]) {
            if (!decl->params[i].def) {
                jm_diag_error(E->d, A->call->loc, "extern %s takes %d argument%s, got %d: missing '%s'", decl->name, np,
                              np == 1 ? "" : "s", A->npos + A->nkw, pn);
                jm_diag_note(E->d, decl->name_loc, "%s is declared here", decl->name);
                return jm_v_err();
            }
            vals[i] = jm_eval(&defctx, decl->params[i].def);
            vloc[i] = A->call->loc;
            if (vals[i].kind == JM_V_ERR) return jm_v_err();
        }
        const jm_type *want = &m->externs[xi].params[i];
        jm_value v = vals[i];
        char s1[128], s2[128];
        if (v.kind == JM_V_TENSOR) {
            src[i] = jm_tensor_node(c, v);
            if (src[i] < 0) return jm_v_err();
            const jm_type *got = &m->graphs[c->g].node[src[i]].type;
            if (!jm_type_equal(got, want)) {
                jm_diag_error(E->d, vloc[i], "%s: argument '%s' has type %s, expected %s", decl->name, pn,
                              jm_type_str(got, s1, sizeof s1), jm_type_str(want, s2, sizeof s2));
                return jm_v_err();
            }
        } else if (v.kind == JM_V_INT || v.kind == JM_V_FLOAT || v.kind == JM_V_BOOL) {
            double x = v.kind == JM_V_FLOAT ? v.f : (double)v.i;
            if (want->rank != 0) {
                jm_diag_error(E->d, vloc[i], "%s: argument '%s' is a number, expected a tensor %s", decl->name, pn,
                              jm_type_str(want, s2, sizeof s2));
                return jm_v_err();
            }
            if (v.kind == JM_V_FLOAT && !jm_dtype_is_float(want->dtype) && x != trunc(x)) {
                jm_diag_error(E->d, vloc[i], "%s: argument '%s' is %g, expected %s (an integer)", decl->name, pn, x,
                              jm_type_str(want, s2, sizeof s2));
                return jm_v_err();
            }
            src[i] = jm_const_node(c, x, want->dtype, vloc[i]);
            if (src[i] < 0) return jm_v_err();
        } else {
            jm_diag_error(E->d, vloc[i], "%s: argument '%s' is %s, expected %s", decl->name, pn, jm_vkind_name(v.kind),
                          jm_type_str(want, s2, sizeof s2));
            return jm_v_err();
        }
    }
    jm_attr at;
    memset(&at, 0, sizeof at);
    at.i[0] = xi;
    jm_type rt = m->externs[xi].ret;
    int id = jm_add(c, JM_OP_EXTERN_CALL, src, np, &at, &rt, A->call->loc);
    if (id >= 0) m->graphs[c->g].node[id].name = decl->name;
    return jm_v_tensor(c, id);
}

static jm_value jm_call_decl(jm_ctx *c, jm_decl *decl, jm_args *A) {
    jm_elab *E = c->E;
    if (jm_budget(c, A->call->loc)) return jm_v_err();
    if (c->depth >= JM_MAX_CALL_DEPTH) {
        jm_diag_error(E->d, A->call->loc, "calls nested more than %d deep (is %s recursive?)", JM_MAX_CALL_DEPTH, decl->name);
        return jm_v_err();
    }
    if (decl->kind == JM_D_SAMPLER) {
        if (A->call->scope) {
            jm_diag_error(E->d, A->call->scope->loc, "'as' names a block's parameters; a sampler has none of its own (put 'as' on the calls inside it)");
            return jm_v_err();
        }
        return jm_call_sampler(c, decl, A);
    }
    if (decl->kind == JM_D_PROGRAM || decl->kind == JM_D_STATE || decl->kind == JM_D_DATA || decl->kind == JM_D_OPTIMIZER) {
        jm_diag_error(E->d, A->call->loc, "'%s' is not callable (it is a %s)", decl->name,
                      decl->kind == JM_D_PROGRAM ? "program" : decl->kind == JM_D_STATE ? "state variable"
                      : decl->kind == JM_D_DATA ? "data set" : "optimizer");
        return jm_v_err();
    }
    if (decl->kind == JM_D_EXTERN) return jm_call_extern(c, decl, A);
    jm_ctx callee;
    memset(&callee, 0, sizeof callee);
    callee.E = E;
    callee.g = c->g;
    callee.scope = c->scope;
    callee.prog = NULL;                 /* blocks compute values; only programs write state and outputs */
    callee.view = c->view;
    callee.loop = c->loop;
    callee.depth = c->depth + 1;
    callee.path = jm_path_mix(c, c->path, A->call->loc);
    callee.returns_allowed = 1;
    if (A->call->scope) {
        callee.scope = jm_scope_join(c, A->call->scope);
        if (!callee.scope) return jm_v_err();
    }
    jm_ctx defctx = callee;             /* defaults see only globals */
    defctx.nvars = 0;
    defctx.vars = NULL;
    if (jm_bind_args(&callee, decl, A, &defctx, decl->kind == JM_D_MODEL ? "model" : decl->kind == JM_D_ENERGY ? "energy" : "block") != 0)
        return jm_v_err();
    jm_value r;
    if (decl->kind == JM_D_ENERGY) {
        r = jm_eval(&callee, decl->value);
    } else {
        jm_exec_body(&callee, decl->body, decl->nbody);
        if (!callee.returned) {
            jm_diag_error(E->d, decl->name_loc, "%s ends without 'return'", decl->name);
            return jm_v_err();
        }
        if (callee.nret == 1) r = callee.ret[0];
        else {
            r = jm_v_err();
            r.kind = JM_V_LIST;
            r.items = callee.ret;
            r.nitems = callee.nret;
        }
    }
    if (decl->kind == JM_D_MODEL && decl->ret && r.kind != JM_V_ERR) {
        jm_type want;
        if (jm_parse_type(&defctx, decl->ret, &want) != 0) return jm_v_err();
        if (r.kind != JM_V_TENSOR || !jm_type_equal(jm_value_type(c, r), &want)) {
            char s1[128], s2[128];
            if (r.kind == JM_V_TENSOR) jm_type_str(jm_value_type(c, r), s2, sizeof s2);
            else snprintf(s2, sizeof s2, "%s", jm_vkind_name(r.kind));
            jm_diag_error(E->d, decl->ret->loc, "model %s returns %s but is declared to return %s", decl->name, s2,
                          jm_type_str(&want, s1, sizeof s1));
            return jm_v_err();
        }
    }
    return r;
}

/* A sampler: `sampler name(x, steps=K, ...) { body }` runs its body K times with
   x carried from one iteration to the next; it returns the final x. The body is
   elaborated once into a loop body graph. */
static jm_value jm_call_sampler(jm_ctx *c, jm_decl *decl, jm_args *A) {
    jm_elab *E = c->E;
    jm_module *m = E->m;
    if (decl->nparams < 1 || strcmp(decl->params[0].name, "steps") == 0) {
        jm_diag_error(E->d, decl->name_loc, "sampler %s needs the carried tensor as its first parameter", decl->name);
        return jm_v_err();
    }
    int has_steps = 0;
    for (int i = 0; i < decl->nparams; i++) has_steps |= strcmp(decl->params[i].name, "steps") == 0;
    if (!has_steps) {
        jm_diag_error(E->d, decl->name_loc, "sampler %s needs a 'steps' parameter (the number of iterations)", decl->name);
        return jm_v_err();
    }
    jm_ctx outer;
    memset(&outer, 0, sizeof outer);
    outer.E = E; outer.g = c->g; outer.scope = c->scope; outer.view = c->view; outer.loop = c->loop;
    outer.depth = c->depth + 1;
    if (jm_bind_args(&outer, decl, A, &outer, "sampler") != 0) return jm_v_err();
    jm_value x0 = outer.vars[0].v;
    int steps_i = -1;
    for (int i = 0; i < outer.nvars; i++) if (strcmp(outer.vars[i].name, "steps") == 0) steps_i = i;
    int64_t steps;
    if (jm_want_int(c, outer.vars[steps_i].v, A->call->loc, "steps", &steps) != 0) return jm_v_err();
    if (steps < 0) { jm_diag_error(E->d, A->call->loc, "steps must be >= 0, got %lld", (long long)steps); return jm_v_err(); }
    int x0n = jm_want_tensor(c, x0, A->call->loc, "the sampler's first argument");
    if (x0n < 0) return jm_v_err();
    jm_type xt = m->graphs[c->g].node[x0n].type;

    jm_loopctx *L = jm_arena_alloc(E->a, sizeof *L);
    L->outer = c->loop;
    L->outer_g = c->g;
    L->body = jm_graph_new(m, c->g);
    L->ncarried = 1;
    jm_ctx body;
    memset(&body, 0, sizeof body);
    body.E = E; body.g = L->body; body.scope = c->scope; body.prog = NULL; body.loop = L;
    body.depth = c->depth + 1;
    body.path = jm_path_mix(c, c->path, A->call->loc);
    jm_attr at;
    memset(&at, 0, sizeof at);
    int arg = jm_ir_add(m, L->body, JM_OP_LOOP_ARG, NULL, 0, &at, &xt, decl->params[0].loc, E->d);
    for (int i = 0; i < outer.nvars; i++) jm_set_var(&body, outer.vars[i].name, outer.vars[i].v);
    jm_set_var(&body, decl->params[0].name, jm_v_tensor(&body, arg));
    jm_exec_body(&body, decl->body, decl->nbody);

    jm_value xn = jm_find_var(&body, decl->params[0].name)->v;
    int xnn = jm_want_tensor(&body, xn, decl->name_loc, "the sampler's carried value");
    if (xnn < 0) return jm_v_err();
    if (!jm_type_equal(&m->graphs[L->body].node[xnn].type, &xt)) {
        char s1[128], s2[128];
        jm_diag_error(E->d, decl->name_loc, "sampler %s changes the type of '%s' from %s to %s", decl->name, decl->params[0].name,
                      jm_type_str(&xt, s1, sizeof s1), jm_type_str(&m->graphs[L->body].node[xnn].type, s2, sizeof s2));
        return jm_v_err();
    }
    jm_graph *bg = &m->graphs[L->body];
    JM_VEC_PUSH(E->a, bg->results, bg->nresults, bg->capresults, xnn);
    int nsrc = 1 + L->ncap;
    int *src = jm_arena_alloc(E->a, sizeof(int) * (size_t)nsrc);
    src[0] = x0n;
    for (int i = 0; i < L->ncap; i++) src[1 + i] = L->cap_outer[i];
    memset(&at, 0, sizeof at);
    at.i[0] = L->body;
    at.i[1] = steps;
    at.ni = 2;
    at.k = 1;
    /* steps read straight from a config constant: the trip count is a knob (i[2] = global + 1) */
    int knob = jm_knob_global(c, outer.vars[steps_i].v, A->call->loc);
    if (knob >= 0) { at.i[2] = knob + 1; at.ni = 3; }
    int loop = jm_add(c, JM_OP_LOOP, src, nsrc, &at, NULL, A->call->loc);
    memset(&at, 0, sizeof at);
    return jm_v_tensor(c, jm_add(c, JM_OP_LOOP_OUT, &loop, 1, &at, NULL, A->call->loc));
}

static jm_value jm_eval_call(jm_ctx *c, jm_expr *e) {
    jm_elab *E = c->E;
    jm_args A;
    memset(&A, 0, sizeof A);
    A.c = c;
    A.call = e;
    A.npos = e->nitems;
    A.pos = jm_arena_alloc(E->a, sizeof(jm_value) * (size_t)(e->nitems + 1));
    A.nkw = e->nkw;
    A.kw = jm_arena_alloc(E->a, sizeof(jm_value) * (size_t)(e->nkw + 1));
    A.kwname = jm_arena_alloc(E->a, sizeof(char *) * (size_t)(e->nkw + 1));
    A.kwloc = jm_arena_alloc(E->a, sizeof(jm_loc) * (size_t)(e->nkw + 1));
    A.kw_used = jm_arena_alloc(E->a, sizeof(int) * (size_t)(e->nkw + 1));
    int bad = 0;
    /* grad(y, x): `params` is only meaningful here. */
    for (int i = 0; i < e->nitems; i++) { A.pos[i] = jm_eval(c, e->items[i]); bad |= A.pos[i].kind == JM_V_ERR; }
    for (int i = 0; i < e->nkw; i++) {
        A.kw[i] = jm_eval(c, e->kw[i].value);
        A.kwname[i] = e->kw[i].name;
        A.kwloc[i] = e->kw[i].loc;
        bad |= A.kw[i].kind == JM_V_ERR;
    }
    if (bad) return jm_v_err();
    jm_gsym *s = jm_find_sym(E, e->str);
    if (s && s->kind == JM_G_DECL) return jm_call_decl(c, s->decl, &A);
    if (e->scope) {
        jm_diag_error(E->d, e->scope->loc, "'as' names the scope of a block's parameters; '%s' is not a block", e->str);
        return jm_v_err();
    }
    if (jm_builtin_exists(e->str)) return jm_builtin_call(&A);
    if (s) {
        jm_diag_error(E->d, e->loc, "'%s' is a config constant, not a function", e->str);
        return jm_v_err();
    }
    jm_unknown_name(c, e->str, e->loc, "function");
    return jm_v_err();
}

/* x[i], x[a:b, :], rows[idx] */
static jm_value jm_eval_index(jm_ctx *c, jm_expr *e) {
    jm_elab *E = c->E;
    jm_value base = jm_eval(c, e->a);
    if (base.kind == JM_V_ERR) return base;
    if (base.kind == JM_V_LIST) {
        int64_t i;
        if (e->nitems != 1 || e->items[0]->kind == JM_E_SLICE) {
            jm_diag_error(E->d, e->loc, "a list takes exactly one integer subscript");
            return jm_v_err();
        }
        if (jm_want_int(c, jm_eval(c, e->items[0]), e->items[0]->loc, "a list subscript", &i) != 0) return jm_v_err();
        if (i < 0) i += base.nitems;
        if (i < 0 || i >= base.nitems) {
            jm_diag_error(E->d, e->items[0]->loc, "list index %lld is out of range for a list of %d", (long long)i, base.nitems);
            return jm_v_err();
        }
        return base.items[i];
    }
    int x = jm_want_tensor(c, base, e->a->loc, "the subscripted value");
    if (x < 0) return jm_v_err();
    jm_type t = E->m->graphs[c->g].node[x].type;
    /* One integer-tensor subscript selects rows (gather). */
    if (e->nitems == 1 && e->items[0]->kind != JM_E_SLICE) {
        jm_value iv = jm_eval(c, e->items[0]);
        if (iv.kind == JM_V_TENSOR) {
            int ix = jm_tensor_node(c, iv);
            int src[2] = { x, ix };
            return jm_v_tensor(c, jm_add(c, JM_OP_GATHER, src, 2, NULL, NULL, e->loc));
        }
    }
    if (e->nitems > t.rank) {
        char s1[128];
        jm_diag_error(E->d, e->loc, "%d subscripts for %s", e->nitems, jm_type_str(&t, s1, sizeof s1));
        return jm_v_err();
    }
    jm_attr at;
    memset(&at, 0, sizeof at);
    jm_type out;
    memset(&out, 0, sizeof out);
    out.dtype = t.dtype;
    for (int a = 0; a < t.rank; a++) {
        int64_t lo = 0, hi = t.dim[a], orig = 0;
        int keep = 1;
        if (a < e->nitems) {
            jm_expr *s = e->items[a];
            if (s->kind == JM_E_SLICE) {
                if (s->a && jm_want_int(c, jm_eval(c, s->a), s->a->loc, "a slice bound", &lo) != 0) return jm_v_err();
                if (s->b && jm_want_int(c, jm_eval(c, s->b), s->b->loc, "a slice bound", &hi) != 0) return jm_v_err();
                if (lo < 0) lo += t.dim[a];
                if (hi < 0) hi += t.dim[a];
            } else {
                if (jm_want_int(c, jm_eval(c, s), s->loc, "a subscript", &lo) != 0) return jm_v_err();
                orig = lo;
                if (lo < 0) lo += t.dim[a];
                hi = lo + 1;
                keep = 0;
            }
            if (lo < 0 || hi > t.dim[a] || lo > hi) {
                char s1[128];
                if (keep)
                    jm_diag_error(E->d, s->loc, "slice %lld:%lld is out of range for axis %d of %s", (long long)lo,
                                  (long long)hi, a, jm_type_str(&t, s1, sizeof s1));
                else
                    jm_diag_error(E->d, s->loc, "index %lld is out of range for axis %d of %s (size %lld)", (long long)orig,
                                  a, jm_type_str(&t, s1, sizeof s1), (long long)t.dim[a]);
                return jm_v_err();
            }
        }
        at.i[3 * a] = lo; at.i[3 * a + 1] = hi; at.i[3 * a + 2] = 1;
        if (keep) out.dim[out.rank++] = hi - lo;
    }
    at.ni = 3 * t.rank;
    int s = jm_add(c, JM_OP_SLICE, &x, 1, &at, NULL, e->loc);
    if (s < 0) return jm_v_err();
    if (out.rank != t.rank) s = jm_add(c, JM_OP_RESHAPE, &s, 1, NULL, &out, e->loc);
    return jm_v_tensor(c, s);
}

static jm_value jm_eval_inner(jm_ctx *c, jm_expr *e);

/* Elaboration recurses through expressions and block calls; the total depth is
   bounded so that no input can exhaust the stack (the parser bounds one
   expression's depth, the call limit the number of nested blocks, this both). */
#define JM_MAX_EVAL_DEPTH 500

jm_value jm_eval(jm_ctx *c, jm_expr *e) {
    jm_elab *E = c->E;
    if (E->eval_depth >= JM_MAX_EVAL_DEPTH) {
        if (!E->aborted)
            jm_diag_error(E->d, e->loc, "expressions and calls nested more than %d deep", JM_MAX_EVAL_DEPTH);
        E->aborted = 1;
        return jm_v_err();
    }
    E->eval_depth++;
    jm_value v = jm_eval_inner(c, e);
    E->eval_depth--;
    return v;
}

static jm_value jm_eval_inner(jm_ctx *c, jm_expr *e) {
    jm_elab *E = c->E;
    switch (e->kind) {
    case JM_E_INT: return jm_v_int(e->ival);
    case JM_E_FLOAT: return jm_v_float(e->fval);
    case JM_E_STRING: return jm_v_str(e->str);
    case JM_E_BOOL: return jm_v_bool((int)e->ival);
    case JM_E_NAME: return jm_lookup(c, e->str, e->loc);
    case JM_E_LIST: {
        jm_value v = jm_v_err();
        v.kind = JM_V_LIST;
        v.nitems = e->nitems;
        v.items = jm_arena_alloc(E->a, sizeof(jm_value) * (size_t)(e->nitems + 1));
        for (int i = 0; i < e->nitems; i++) {
            v.items[i] = jm_eval(c, e->items[i]);
            if (v.items[i].kind == JM_V_ERR) return jm_v_err();
        }
        return v;
    }
    case JM_E_UNARY: {
        jm_value a = jm_eval(c, e->a);
        if (a.kind == JM_V_ERR) return a;
        if (e->op == JM_T_MINUS) {
            if (a.kind == JM_V_INT) {
                if (a.i == INT64_MIN) { jm_diag_error(E->d, e->loc, "integer overflow in negation"); return jm_v_err(); }
                return jm_v_int(-a.i);
            }
            if (a.kind == JM_V_FLOAT) return jm_v_float(-a.f);
            int x = jm_want_tensor(c, a, e->loc, "the operand of unary '-'");
            if (x < 0) return jm_v_err();
            return jm_v_tensor(c, jm_add(c, JM_OP_NEG, &x, 1, NULL, NULL, e->loc));
        }
        if (a.kind == JM_V_BOOL) return jm_v_bool(!a.i);
        int x = jm_want_tensor(c, a, e->loc, "the operand of '!'");
        if (x < 0) return jm_v_err();
        return jm_v_tensor(c, jm_add(c, JM_OP_NOT, &x, 1, NULL, NULL, e->loc));
    }
    case JM_E_BINARY: {
        jm_value a = jm_eval(c, e->a);
        jm_value b = jm_eval(c, e->b);
        return jm_binary(c, e->op, a, b, e->loc);
    }
    case JM_E_IFELSE: {
        jm_value cond = jm_eval(c, e->b);
        if (cond.kind == JM_V_ERR) return cond;
        if (cond.kind != JM_V_BOOL) {
            jm_diag_error(E->d, e->b->loc, "the condition of 'if' must be a compile-time bool, got %s%s", jm_vkind_name(cond.kind),
                          cond.kind == JM_V_TENSOR ? " (use where(c, a, b) for tensors)" : "");
            return jm_v_err();
        }
        return jm_eval(c, cond.i ? e->a : e->c);
    }
    case JM_E_CALL: return jm_eval_call(c, e);
    case JM_E_INDEX: return jm_eval_index(c, e);
    case JM_E_SLICE:
        jm_diag_error(E->d, e->loc, "a slice 'a:b' is only valid inside a subscript");
        return jm_v_err();
    }
    return jm_v_err();
}

/* ---- statements -------------------------------------------------------- */

static int jm_eval_init(jm_ctx *c, jm_expr *e, jm_init *out) {
    jm_elab *E = c->E;
    memset(out, 0, sizeof *out);
    if (!e) return 0;
    if (e->kind != JM_E_CALL) {
        double v;
        if (jm_want_number(c, jm_eval(c, e), e->loc, "an initial value", &v) != 0) return -1;
        out->kind = v == 0 ? JM_INIT_ZEROS : JM_INIT_CONST;
        out->a = v;
        return 0;
    }
    const char *f = e->str;
    int nargs = strcmp(f, "zeros") == 0 ? 0 : 2;
    if ((strcmp(f, "uniform") != 0 && strcmp(f, "normal") != 0 && strcmp(f, "zeros") != 0) || e->nkw) {
        jm_diag_error(E->d, e->loc, "an initialiser must be uniform(lo, hi), normal(mean, std), zeros() or a number");
        return -1;
    }
    if (e->nitems != nargs) {
        jm_diag_error(E->d, e->loc, "initialiser %s takes %d arguments, got %d", f, nargs, e->nitems);
        return -1;
    }
    double v[2] = { 0, 0 };
    for (int i = 0; i < nargs; i++)
        if (jm_want_number(c, jm_eval(c, e->items[i]), e->items[i]->loc, "an initialiser argument", &v[i]) != 0) return -1;
    out->kind = nargs == 0 ? JM_INIT_ZEROS : f[0] == 'u' ? JM_INIT_UNIFORM : JM_INIT_NORMAL;
    out->a = v[0];
    out->b = v[1];
    if (out->kind == JM_INIT_UNIFORM && !(v[0] <= v[1])) {
        jm_diag_error(E->d, e->loc, "uniform(lo, hi) needs lo <= hi, got %g and %g", v[0], v[1]);
        return -1;
    }
    if (out->kind == JM_INIT_NORMAL && !(v[1] >= 0)) {
        jm_diag_error(E->d, e->loc, "normal(mean, std) needs std >= 0, got %g", v[1]);
        return -1;
    }
    return 0;
}

/* The global behind `param NAME: TYPE = init` or `buffer NAME: TYPE = init` in a
   block: named scope.NAME; reaching the same declaration again (a model called
   twice) shares it, as in PyTorch. Returns the global index, or -1 after an error. */
static int jm_declare_global(jm_ctx *c, jm_stmt *s, jm_global_kind kind) {
    jm_elab *E = c->E;
    jm_module *m = E->m;
    const char *what = kind == JM_GLOBAL_PARAM ? "parameter" : "buffer";
    jm_type t;
    jm_set_var(c, s->name, jm_v_err());     /* until it succeeds: no follow-on errors */
    if (jm_parse_type(c, s->type, &t) != 0) return -1;
    if (kind == JM_GLOBAL_PARAM && !jm_dtype_is_float(t.dtype)) {
        jm_diag_error(E->d, s->type->loc, "parameters must be floating-point, '%s' is %s", s->name, jm_dtype_name(t.dtype));
        return -1;
    }
    jm_init init;
    if (jm_eval_init(c, s->value, &init) != 0) return -1;
    const char *full = c->scope[0] ? jm_arena_printf(E->a, "%s.%s", c->scope, s->name) : s->name;
    int gi = jm_module_find_global(m, full);
    if (gi < 0) {
        jm_global g = { full, kind, t, init, s->name_loc, 1, NULL };
        JM_VEC_PUSH(E->a, m->globals, m->nglobals, m->capglobals, g);
        return m->nglobals - 1;
    }
    jm_global *g = &m->globals[gi];
    if (g->kind != kind || (kind == JM_GLOBAL_STATE && !g->from_block)) {
        jm_diag_error(E->d, s->name_loc, "%s '%s' has the name of a %s", what, full,
                      g->kind == JM_GLOBAL_PARAM ? "parameter" : g->from_block ? "buffer" : "state variable");
        return -1;
    }
    if (!jm_type_equal(&g->type, &t)) {
        char s1[128], s2[128];
        jm_diag_error(E->d, s->name_loc, "%s '%s' declared as %s here but as %s before", what, full,
                      jm_type_str(&t, s1, sizeof s1), jm_type_str(&g->type, s2, sizeof s2));
        jm_diag_note(E->d, g->loc, "'%s' was first declared here", full);
        return -1;
    }
    return gi;
}

static void jm_stmt_param(jm_ctx *c, jm_stmt *s) {
    int gi = jm_declare_global(c, s, JM_GLOBAL_PARAM);
    if (gi >= 0) jm_set_var(c, s->name, jm_state_value(c, gi, s->loc));
}

static int jm_is_state_name(jm_ctx *c, const char *name) {
    if (jm_find_var(c, name)) return -1;
    jm_gsym *s = jm_find_sym(c->E, name);
    if (s && s->kind == JM_G_DECL && s->decl->kind == JM_D_STATE) return jm_module_find_global(c->E->m, name);
    return -1;
}

static void jm_write_state(jm_ctx *c, int gi, int node, jm_loc loc) {
    jm_module *m = c->E->m;
    jm_program *p = c->prog;
    jm_type *t = &m->graphs[c->g].node[node].type;
    if (!jm_type_equal(t, &m->globals[gi].type)) {
        char s1[128], s2[128];
        jm_diag_error(c->E->d, loc, "state '%s' is %s; cannot assign %s", m->globals[gi].name,
                      jm_type_str(&m->globals[gi].type, s1, sizeof s1), jm_type_str(t, s2, sizeof s2));
        return;
    }
    for (int i = 0; i < p->nwrites; i++)
        if (p->writes[i].global == gi) { p->writes[i].node = node; p->writes[i].loc = loc; return; }
    jm_state_write w = { gi, node, loc };
    JM_VEC_PUSH(c->E->a, p->writes, p->nwrites, p->capwrites, w);
}

static void jm_assign_one(jm_ctx *c, jm_stmt *s, const char *name, jm_value v);

static void jm_stmt_assign(jm_ctx *c, jm_stmt *s) {
    jm_value v = jm_eval(c, s->value);
    if (s->nnames > 1) {
        if (v.kind == JM_V_ERR) {
            for (int i = 0; i < s->nnames; i++) jm_set_var(c, s->names[i], v);
            return;
        }
        if (v.kind != JM_V_LIST || v.nitems != s->nnames) {
            jm_diag_error(c->E->d, s->value->loc, "%d names on the left but the right side gives %d value%s", s->nnames,
                          v.kind == JM_V_LIST ? v.nitems : 1, v.kind == JM_V_LIST && v.nitems == 1 ? "" : (v.kind == JM_V_LIST ? "s" : ""));
            for (int i = 0; i < s->nnames; i++) jm_set_var(c, s->names[i], jm_v_err());   /* no follow-on errors */
            return;
        }
        for (int i = 0; i < s->nnames; i++) jm_assign_one(c, s, s->names[i], v.items[i]);
        return;
    }
    jm_assign_one(c, s, s->name, v);
}

static void jm_assign_one(jm_ctx *c, jm_stmt *s, const char *name, jm_value v) {
    if (v.kind == JM_V_ERR) { jm_set_var(c, name, v); return; }
    /* A program's own body writes state by assigning its name. Everywhere else a
       name on the left is a local: locals shadow config constants, declarations
       and state, so a library block works whatever names its importer uses. */
    int gi = c->prog ? jm_is_state_name(c, name) : -1;
    if (gi >= 0) {
        int node = jm_want_tensor(c, v, s->value->loc, "a value assigned to state");
        if (node < 0) return;
        jm_write_state(c, gi, node, s->loc);
        return;
    }
    jm_set_var(c, name, v);
}

static void jm_stmt_index_assign(jm_ctx *c, jm_stmt *s) {
    jm_elab *E = c->E;
    int gi = jm_is_state_name(c, s->name);
    if (gi < 0 || !c->prog) {
        if (gi >= 0) jm_diag_error(E->d, s->name_loc, "state '%s' can only be updated in a program's own body (not in a block or sampler)", s->name);
        else jm_diag_error(E->d, s->name_loc, "only state variables can be updated by rows ('%s' is not one)", s->name);
        return;
    }
    if (s->nindex != 1 || s->index[0]->kind == JM_E_SLICE) {
        jm_diag_error(E->d, s->loc, "a row update takes one integer-tensor subscript: %s[idx] = rows", s->name);
        return;
    }
    jm_value base = jm_lookup(c, s->name, s->name_loc);
    jm_value ix = jm_eval(c, s->index[0]);
    jm_value v = jm_eval(c, s->value);
    int b = jm_want_tensor(c, base, s->name_loc, "state");
    int i = jm_want_tensor(c, ix, s->index[0]->loc, "the row index");
    int x = jm_want_tensor(c, v, s->value->loc, "the rows");
    if (b < 0 || i < 0 || x < 0) return;
    int src[3] = { b, i, x };
    int r = jm_add(c, JM_OP_SCATTER, src, 3, NULL, NULL, s->loc);
    if (r >= 0) jm_write_state(c, gi, r, s->loc);
}

static void jm_add_output(jm_ctx *c, const char *name, int node, jm_loc loc) {
    jm_program *p = c->prog;
    for (int i = 0; i < p->noutputs; i++)
        if (strcmp(p->outputs[i].name, name) == 0) {
            jm_diag_error(c->E->d, loc, "duplicate output '%s'", name);
            jm_diag_note(c->E->d, p->outputs[i].loc, "'%s' was first output here", name);
            return;
        }
    jm_binding b = { name, node, loc };
    JM_VEC_PUSH(c->E->a, p->outputs, p->noutputs, p->capoutputs, b);
}

/* grad(loss, params): one GRAD node per parameter, output as "<name>.<param>". */
jm_value jm_params_grad(jm_ctx *c, int loss, jm_loc loc);

static void jm_stmt_output(jm_ctx *c, jm_stmt *s) {
    jm_elab *E = c->E;
    if (!c->prog || c->loop) {
        jm_diag_error(E->d, s->loc, "'output' is only allowed in a program's own body (not in a block or sampler)");
        if (s->value) jm_set_var(c, s->name, jm_eval(c, s->value));   /* keep the name defined */
        return;
    }
    jm_value v = s->value ? jm_eval(c, s->value) : jm_lookup(c, s->name, s->name_loc);
    if (s->value) jm_set_var(c, s->name, v);
    if (v.kind == JM_V_ERR) return;
    if (v.kind == JM_V_PARAMS) {
        if (!v.globals) {
            jm_diag_error(E->d, s->loc, "output '%s': 'params' alone is not a value; output grad(loss, params)", s->name);
            return;
        }
        for (int i = 0; i < v.nitems; i++)
            jm_add_output(c, jm_arena_printf(E->a, "%s.%s", s->name, E->m->globals[v.globals[i]].name), v.items[i].node, s->loc);
        return;
    }
    int node = jm_want_tensor(c, v, s->value ? s->value->loc : s->name_loc, "an output");
    if (node >= 0) jm_add_output(c, s->name, node, s->loc);
}

static jm_decl_record *jm_find_optimizer(jm_module *m, const char *name) {
    for (int i = 0; i < m->noptimizers; i++)
        if (strcmp(m->optimizers[i].name, name) == 0) return &m->optimizers[i];
    return NULL;
}

static double jm_record_num(const jm_decl_record *r, const char *key, double def) {
    for (int i = 0; i < r->nargs; i++)
        if (strcmp(r->args[i].name, key) == 0)
            return r->args[i].kind == JM_CV_FLOAT ? r->args[i].f : (double)r->args[i].i;
    return def;
}

/* An optimizer argument as a value that remembers the config constant it came from. */
static jm_value jm_record_knob(const jm_decl_record *r, const char *key, double v) {
    jm_value x = jm_v_float(v);
    for (int i = 0; i < r->nargs; i++)
        if (strcmp(r->args[i].name, key) == 0 && r->args[i].cfg) {
            if (r->args[i].kind == JM_CV_INT) { x.kind = JM_V_INT; x.i = r->args[i].i; }
            x.cfg = r->args[i].cfg;
        }
    return x;
}

static int jm_new_state(jm_ctx *c, const char *name, jm_type t, jm_loc loc) {
    jm_module *m = c->E->m;
    int gi = jm_module_find_global(m, name);
    if (gi >= 0) return gi;
    jm_global g = { name, JM_GLOBAL_STATE, t, { JM_INIT_ZEROS, 0, 0 }, loc, 0, NULL };
    JM_VEC_PUSH(c->E->a, m->globals, m->nglobals, m->capglobals, g);
    return m->nglobals - 1;
}

/* The gradient's global L2 norm sqrt(sum_p sum g_p^2), written to state
   "OPT.grad_norm" (f32) on every step: the runtime logs it and its divergence
   guard watches it. */
static void jm_write_grad_norm(jm_ctx *c, const jm_decl_record *opt, const jm_value *grads, jm_loc loc) {
    int acc = -1;
    for (int i = 0; i < grads->nitems; i++) {
        int g = jm_tensor_node(c, grads->items[i]);
        if (g < 0) return;
        const jm_type *t = &c->E->m->graphs[c->g].node[g].type;
        if (t->dtype != JM_F32) return;     /* the norm is kept in f32 */
        int sq_src[2] = { g, g };
        int sq = jm_add(c, JM_OP_MUL, sq_src, 2, NULL, NULL, loc);
        jm_attr all;
        memset(&all, 0, sizeof all);
        all.ni = t->rank;
        for (int k = 0; k < t->rank; k++) all.i[k] = k;
        int sum = t->rank ? jm_add(c, JM_OP_SUM, &sq, 1, &all, NULL, loc) : sq;
        int add_src[2] = { acc, sum };
        acc = acc < 0 ? sum : jm_add(c, JM_OP_ADD, add_src, 2, NULL, NULL, loc);
        if (acc < 0) return;
    }
    if (acc < 0) return;
    int norm = jm_add(c, JM_OP_SQRT, &acc, 1, NULL, NULL, loc);
    int gi = jm_new_state(c, jm_arena_printf(c->E->a, "%s.grad_norm", opt->name), jm_type_make(JM_F32, 0, NULL), opt->loc);
    if (norm >= 0) jm_write_state(c, gi, norm, loc);
}

/* minimize loss with opt: gradient of loss for every parameter, then the
   optimizer's update written to the parameters and its state (moments, step). */
static void jm_stmt_minimize(jm_ctx *c, jm_stmt *s) {
    jm_elab *E = c->E;
    jm_module *m = E->m;
    if (!c->prog || c->loop) { jm_diag_error(E->d, s->loc, "'minimize' is only allowed in a program's own body (not in a block or sampler)"); return; }
    jm_decl_record *opt = jm_find_optimizer(m, s->name);
    if (!opt) {
        int n = 0;
        const char **names = jm_arena_alloc(E->a, sizeof(char *) * (size_t)(m->noptimizers + 1));
        for (int i = 0; i < m->noptimizers; i++) names[n++] = m->optimizers[i].name;
        const char *best = jm_diag_closest(s->name, names, n);
        if (best) jm_diag_error(E->d, s->name_loc, "unknown optimizer '%s'; did you mean '%s'?", s->name, best);
        else jm_diag_error(E->d, s->name_loc, "unknown optimizer '%s'", s->name);
        return;
    }
    jm_value lv = jm_eval(c, s->value);
    int loss = jm_want_tensor(c, lv, s->value->loc, "the loss");
    if (loss < 0) return;
    jm_type lt = m->graphs[c->g].node[loss].type;
    if (lt.rank != 0 || !jm_dtype_is_float(lt.dtype)) {
        char s1[128];
        jm_diag_error(E->d, s->value->loc, "the loss must be a floating-point scalar, got %s", jm_type_str(&lt, s1, sizeof s1));
        return;
    }
    jm_value grads = jm_params_grad(c, loss, s->loc);
    if (grads.kind == JM_V_ERR) return;
    jm_write_grad_norm(c, opt, &grads, s->loc);
    int is_adam = strcmp(opt->kind, "adam") == 0 || strcmp(opt->kind, "adamw") == 0;
    double lr = jm_record_num(opt, "lr", 1e-3), b1 = jm_record_num(opt, "beta1", 0.9), b2 = jm_record_num(opt, "beta2", 0.999);
    double eps = jm_record_num(opt, "eps", 1e-8), wd = jm_record_num(opt, "weight_decay", 0);
    double mom = jm_record_num(opt, "momentum", 0), warm = jm_record_num(opt, "warmup", 0);
    jm_loc loc = s->loc;
    /* step counter t (i64 scalar), incremented once per call */
    jm_type st = jm_type_make(JM_I64, 0, NULL);
    int sg = jm_new_state(c, jm_arena_printf(E->a, "%s.step", opt->name), st, opt->loc);
    int step = jm_state_value(c, sg, loc).node;
    int one = jm_const_node(c, 1, JM_I64, loc);
    int t_src[2] = { step, one };
    int t = jm_add(c, JM_OP_ADD, t_src, 2, NULL, NULL, loc);
    jm_write_state(c, sg, t, loc);
    jm_dtype fdt = lt.dtype;
    jm_attr cast;
    memset(&cast, 0, sizeof cast);
    cast.k = fdt;
    int tf = jm_add(c, JM_OP_CAST, &t, 1, &cast, NULL, loc);
    /* learning rate with linear warm-up: lr * min(1, t / warmup); lr and warmup
       given by config constants are knobs (the runtime's schedule sets lr) */
    int lrn = jm_knob_node(c, jm_record_knob(opt, "lr", lr), fdt, loc);
    if (lrn < 0) lrn = jm_const_node(c, lr, fdt, loc);
    int warm_knob = jm_knob_node(c, jm_record_knob(opt, "warmup", warm), fdt, loc);
    if (warm > 0 || warm_knob >= 0) {
        /* t / warmup; a knob set to 0 gives t / 0 = inf, min(1, inf) = 1: no warm-up */
        int w = warm_knob >= 0 ? warm_knob : jm_const_node(c, warm, fdt, loc), onef = jm_const_node(c, 1, fdt, loc);
        int a1[2] = { tf, w };
        int frac = jm_add(c, JM_OP_DIV, a1, 2, NULL, NULL, loc);
        int a2[2] = { frac, onef };
        int mn = jm_add(c, JM_OP_MIN, a2, 2, NULL, NULL, loc);
        int a3[2] = { lrn, mn };
        lrn = jm_add(c, JM_OP_MUL, a3, 2, NULL, NULL, loc);
    }
    int bc1 = -1, bc2 = -1;
    if (is_adam) {
        /* bias corrections 1 - beta^t */
        int cb1 = jm_const_node(c, b1, fdt, loc), cb2 = jm_const_node(c, b2, fdt, loc), onef = jm_const_node(c, 1, fdt, loc);
        int p1[2] = { cb1, tf }, p2[2] = { cb2, tf };
        int pw1 = jm_add(c, JM_OP_POW, p1, 2, NULL, NULL, loc), pw2 = jm_add(c, JM_OP_POW, p2, 2, NULL, NULL, loc);
        int s1[2] = { onef, pw1 }, s2[2] = { onef, pw2 };
        bc1 = jm_add(c, JM_OP_SUB, s1, 2, NULL, NULL, loc);
        bc2 = jm_add(c, JM_OP_SUB, s2, 2, NULL, NULL, loc);
    }
    for (int i = 0; i < grads.nitems; i++) {
        int gi = grads.globals[i];
        jm_global *pg = &m->globals[gi];
        jm_type pt = pg->type;
        jm_value p = jm_state_value(c, gi, loc), g = grads.items[i];
        jm_value lrv = jm_v_tensor(c, lrn);
        if (wd != 0 && strcmp(opt->kind, "adamw") != 0)
            g = jm_binary(c, JM_T_PLUS, g, jm_binary(c, JM_T_STAR, jm_v_float(wd), p, loc), loc);
        jm_value upd;
        if (is_adam) {
            int mg = jm_new_state(c, jm_arena_printf(E->a, "%s.m.%s", opt->name, pg->name), pt, opt->loc);
            int vg = jm_new_state(c, jm_arena_printf(E->a, "%s.v.%s", opt->name, pg->name), pt, opt->loc);
            jm_value mv = jm_state_value(c, mg, loc), vv = jm_state_value(c, vg, loc);
            mv = jm_binary(c, JM_T_PLUS, jm_binary(c, JM_T_STAR, jm_v_float(b1), mv, loc),
                           jm_binary(c, JM_T_STAR, jm_v_float(1 - b1), g, loc), loc);
            vv = jm_binary(c, JM_T_PLUS, jm_binary(c, JM_T_STAR, jm_v_float(b2), vv, loc),
                           jm_binary(c, JM_T_STAR, jm_v_float(1 - b2), jm_binary(c, JM_T_STAR, g, g, loc), loc), loc);
            if (mv.kind == JM_V_ERR || vv.kind == JM_V_ERR) return;
            jm_write_state(c, mg, mv.node, loc);
            jm_write_state(c, vg, vv.node, loc);
            jm_value mhat = jm_binary(c, JM_T_SLASH, mv, jm_v_tensor(c, bc1), loc);
            jm_value vhat = jm_binary(c, JM_T_SLASH, vv, jm_v_tensor(c, bc2), loc);
            int vn = vhat.node;
            jm_value den = jm_binary(c, JM_T_PLUS, jm_v_tensor(c, jm_add(c, JM_OP_SQRT, &vn, 1, NULL, NULL, loc)), jm_v_float(eps), loc);
            upd = jm_binary(c, JM_T_SLASH, mhat, den, loc);
            if (wd != 0 && strcmp(opt->kind, "adamw") == 0)
                upd = jm_binary(c, JM_T_PLUS, upd, jm_binary(c, JM_T_STAR, jm_v_float(wd), p, loc), loc);
        } else {
            upd = g;
            if (mom != 0) {
                int bg = jm_new_state(c, jm_arena_printf(E->a, "%s.momentum.%s", opt->name, pg->name), pt, opt->loc);
                jm_value buf = jm_state_value(c, bg, loc);
                buf = jm_binary(c, JM_T_PLUS, jm_binary(c, JM_T_STAR, jm_v_float(mom), buf, loc), g, loc);
                if (buf.kind == JM_V_ERR) return;
                jm_write_state(c, bg, buf.node, loc);
                upd = buf;
            }
        }
        jm_value np = jm_binary(c, JM_T_MINUS, p, jm_binary(c, JM_T_STAR, lrv, upd, loc), loc);
        if (np.kind == JM_V_ERR) return;
        /* Parameters are written like state: the program's last write wins. */
        jm_program *pr = c->prog;
        int found = 0;
        for (int w = 0; w < pr->nwrites; w++)
            if (pr->writes[w].global == gi) { pr->writes[w].node = np.node; found = 1; }
        if (!found) {
            jm_state_write wr = { gi, np.node, loc };
            JM_VEC_PUSH(E->a, pr->writes, pr->nwrites, pr->capwrites, wr);
        }
    }
}

/* The value of a state global as the program sees it now: its pending write, or
   its value at the start of the program. */
static jm_value jm_state_now(jm_ctx *c, int gi, jm_loc loc) {
    if (c->view && c->g == c->view->graph)
        for (int i = 0; i < c->view->nwrites; i++)
            if (c->view->writes[i].global == gi) return jm_v_tensor(c, c->view->writes[i].node);
    return jm_state_value(c, gi, loc);
}

/* buffer NAME: TYPE = init — persistent state owned by a block (running
   statistics of a batch norm), named like a parameter: scope.NAME. */
static void jm_stmt_buffer(jm_ctx *c, jm_stmt *s) {
    int gi = jm_declare_global(c, s, JM_GLOBAL_STATE);
    if (gi < 0) return;
    jm_set_var(c, s->name, jm_state_now(c, gi, s->loc));
    jm_find_var(c, s->name)->buffer = gi + 1;
}

/* update NAME = value — writes a block's buffer; committed when the program
   ends, and seen by later reads in the same program (a second call of the
   block updates the statistics again, as PyTorch does). */
static void jm_stmt_update(jm_ctx *c, jm_stmt *s) {
    jm_elab *E = c->E;
    jm_binding_v *b = jm_find_var(c, s->name);
    jm_value v = jm_eval(c, s->value);
    if (!b || !b->buffer) {
        jm_diag_error(E->d, s->name_loc, "'update' needs a buffer declared in this block; '%s' is not one", s->name);
        return;
    }
    if (!c->view || c->loop || c->g != c->view->graph) {
        jm_diag_error(E->d, s->loc, "buffer '%s' can only be updated when its block runs in a program (not in a sampler)", s->name);
        return;
    }
    int gi = b->buffer - 1;
    int node = jm_want_tensor(c, v, s->value->loc, "a buffer's new value");
    if (node < 0) return;
    jm_program *saved = c->prog;
    c->prog = c->view;
    jm_write_state(c, gi, node, s->loc);
    c->prog = saved;
    b->v = jm_state_now(c, gi, s->loc);
}

/* After an error that skips statements, the names they would have assigned are
   bound to an error value so that later uses stay quiet. */
static void jm_poison_assigned(jm_ctx *c, jm_stmt **body, int n) {
    for (int i = 0; i < n; i++) {
        jm_stmt *s = body[i];
        if (s->kind == JM_S_ASSIGN) {
            if (s->nnames > 1) { for (int k = 0; k < s->nnames; k++) if (!jm_find_var(c, s->names[k])) jm_set_var(c, s->names[k], jm_v_err()); }
            else if (!jm_find_var(c, s->name) && !jm_find_sym(c->E, s->name)) jm_set_var(c, s->name, jm_v_err());
        } else if (s->kind == JM_S_PARAM || s->kind == JM_S_OUTPUT || s->kind == JM_S_BUFFER) {
            if (!jm_find_var(c, s->name)) jm_set_var(c, s->name, jm_v_err());
        } else if (s->kind == JM_S_IF || s->kind == JM_S_REPEAT) {
            jm_poison_assigned(c, s->body, s->nbody);
            jm_poison_assigned(c, s->orelse, s->norelse);
        }
    }
}

static void jm_exec_stmt(jm_ctx *c, jm_stmt *s) {
    jm_elab *E = c->E;
    switch (s->kind) {
    case JM_S_ASSIGN: jm_stmt_assign(c, s); return;
    case JM_S_INDEX_ASSIGN: jm_stmt_index_assign(c, s); return;
    case JM_S_PARAM: jm_stmt_param(c, s); return;
    case JM_S_OUTPUT: jm_stmt_output(c, s); return;
    case JM_S_MINIMIZE: jm_stmt_minimize(c, s); return;
    case JM_S_BUFFER: jm_stmt_buffer(c, s); return;
    case JM_S_UPDATE: jm_stmt_update(c, s); return;
    case JM_S_RETURN: {
        if (!c->returns_allowed) {
            if (c->loop && !c->prog)
                jm_diag_error(E->d, s->loc, "a sampler must not 'return': it yields its first parameter after the last step");
            else
                jm_diag_error(E->d, s->loc, "'return' is only allowed in blocks and models%s",
                              c->prog ? " (programs name their results with 'output')" : "");
            return;
        }
        c->nret = s->nvalues;
        c->ret = jm_arena_alloc(E->a, sizeof(jm_value) * (size_t)s->nvalues);
        for (int i = 0; i < s->nvalues; i++) c->ret[i] = jm_eval(c, s->values[i]);
        c->returned = 1;
        return;
    }
    case JM_S_IF: {
        jm_value cond = jm_eval(c, s->value);
        if (cond.kind != JM_V_BOOL) {
            if (cond.kind != JM_V_ERR)
                jm_diag_error(E->d, s->value->loc, "the condition of 'if' must be a compile-time bool, got %s%s", jm_vkind_name(cond.kind),
                              cond.kind == JM_V_TENSOR ? " (use where(c, a, b) for tensors)" : "");
            jm_poison_assigned(c, s->body, s->nbody);
            jm_poison_assigned(c, s->orelse, s->norelse);
            return;
        }
        if (cond.i) jm_exec_body(c, s->body, s->nbody);
        else jm_exec_body(c, s->orelse, s->norelse);
        return;
    }
    case JM_S_REPEAT: {
        int64_t lo = 0, hi;
        if ((s->lo && jm_want_int(c, jm_eval(c, s->lo), s->lo->loc, "the start of a repeat range", &lo) != 0) ||
            jm_want_int(c, jm_eval(c, s->hi), s->hi->loc, s->lo ? "the end of a repeat range" : "a repeat count", &hi) != 0) {
            jm_poison_assigned(c, s->body, s->nbody);
            return;
        }
        if (hi - lo > 100000) {
            jm_diag_error(E->d, s->loc, "repeat runs %lld times at compile time; the limit is 100000 (use a sampler for run-time loops)",
                          (long long)(hi - lo));
            return;
        }
        uint32_t saved_path = c->path;
        for (int64_t i = lo; i < hi; i++) {
            if (jm_budget(c, s->loc)) break;
            c->path = jm_hash32(&i, sizeof i, saved_path);     /* each iteration draws its own numbers */
            if (s->name) jm_set_var(c, s->name, jm_v_int(i));
            jm_exec_body(c, s->body, s->nbody);
            if (c->returned || jm_diag_too_many(E->d) || E->aborted) break;
        }
        c->path = saved_path;
        return;
    }
    }
}

static void jm_exec_body(jm_ctx *c, jm_stmt **body, int n) {
    for (int i = 0; i < n; i++) {
        if (jm_budget(c, body[i]->loc)) return;
        jm_exec_stmt(c, body[i]);
        if (jm_diag_too_many(c->E->d)) return;
        if (c->returned) {
            /* a return ends the block; in an if it is an early return, but a statement
               right after a return in the same body can never run */
            if (body[i]->kind == JM_S_RETURN && i + 1 < n)
                jm_diag_error(c->E->d, body[i + 1]->loc, "statement after 'return' is never executed");
            return;
        }
    }
}

/* ---- declarations and files ------------------------------------------------ */

static jm_ctx jm_root_ctx(jm_elab *E) {
    jm_ctx c;
    memset(&c, 0, sizeof c);
    c.E = E;
    c.scope = "";
    c.g = -1;
    return c;
}

static int jm_define_value(jm_elab *E, jm_config_entry *ce, jm_value *v) {
    for (int i = 0; i < E->ndefs; i++) {
        if (strcmp(E->defs[i].name, ce->name) != 0) continue;
        E->def_used[i] = 1;
        const char *s = E->defs[i].value;
        char *end;
        if (v->kind == JM_V_INT) {
            long long x = strtoll(s, &end, 10);
            if (!*s || *end) {
                jm_diag_error(E->d, ce->loc, "-D %s=%s: '%s' is an integer constant; '%s' is not an integer", ce->name, s, ce->name, s);
                return -1;
            }
            v->i = x;
        } else if (v->kind == JM_V_FLOAT) {
            double x = strtod(s, &end);
            if (!*s || *end) {
                jm_diag_error(E->d, ce->loc, "-D %s=%s: '%s' is a number constant; '%s' is not a number", ce->name, s, ce->name, s);
                return -1;
            }
            v->f = x;
        } else if (v->kind == JM_V_BOOL) {
            if (strcmp(s, "true") == 0 || strcmp(s, "1") == 0) v->i = 1;
            else if (strcmp(s, "false") == 0 || strcmp(s, "0") == 0) v->i = 0;
            else {
                jm_diag_error(E->d, ce->loc, "-D %s=%s: '%s' is a bool constant; use true or false", ce->name, s, ce->name);
                return -1;
            }
        } else if (v->kind == JM_V_STR) {
            v->s = jm_arena_strdup(E->a, s);
        } else {
            jm_diag_error(E->d, ce->loc, "-D %s: this constant is %s and cannot be overridden", ce->name, jm_vkind_name(v->kind));
            return -1;
        }
    }
    return 0;
}

static void jm_add_sym(jm_elab *E, const char *name, jm_gsym sym, jm_loc loc) {
    jm_gsym *old = jm_find_sym(E, name);
    if (old) {
        jm_diag_error(E->d, loc, "duplicate definition of '%s'", name);
        jm_diag_note(E->d, old->loc, "'%s' was first defined here", name);
        return;
    }
    if (jm_builtin_exists(name) || strcmp(name, "params") == 0) {
        jm_diag_error(E->d, loc, "'%s' is a built-in name; choose another", name);
        return;
    }
    JM_VEC_PUSH(E->a, E->syms, E->nsyms, E->capsyms, sym);
}

static int jm_load_file(jm_elab *E, const char *path, jm_loc from);

static void jm_collect(jm_elab *E, jm_ast_file *f, int syntax_errors) {
    jm_ctx c = jm_root_ctx(E);
    const char *dir = NULL;
    for (int i = 0; i < f->ndecls && !jm_diag_too_many(E->d); i++) {
        jm_decl *d = &f->decls[i];
        switch (d->kind) {
        case JM_D_IMPORT: {
            /* A file with syntax errors may have mangled its import paths: skip them. */
            if (syntax_errors) break;
            if (!d->path[0]) { jm_diag_error(E->d, d->loc, "empty import path"); break; }
            if (!dir) {
                char *tmp = jm_arena_strdup(E->a, E->d->src[f->file].path);
                dir = jm_arena_strdup(E->a, dirname(tmp));
            }
            const char *p = d->path[0] == '/' ? d->path : jm_arena_printf(E->a, "%s/%s", dir, d->path);
            jm_load_file(E, p, d->loc);
            break;
        }
        case JM_D_CONFIG:
            for (int k = 0; k < d->nentries; k++) {
                jm_config_entry *ce = &d->entries[k];
                jm_value v = jm_eval(&c, ce->value);
                if (v.kind == JM_V_ERR) continue;
                if (v.kind != JM_V_INT && v.kind != JM_V_FLOAT && v.kind != JM_V_BOOL && v.kind != JM_V_STR && v.kind != JM_V_LIST) {
                    jm_diag_error(E->d, ce->value->loc, "config constant '%s' must be a number, bool, string or list, got %s",
                                  ce->name, jm_vkind_name(v.kind));
                    continue;
                }
                if (jm_define_value(E, ce, &v) != 0) continue;
                v.cfg = NULL;     /* `b = a` is a constant of its own: a knob named b, not a */
                jm_gsym s = { ce->name, JM_G_CONFIG, d, v, ce->loc };
                jm_add_sym(E, ce->name, s, ce->loc);
                if (v.kind != JM_V_LIST) {
                    jm_config_value cv = { ce->name, v.kind == JM_V_INT ? JM_CV_INT : v.kind == JM_V_FLOAT ? JM_CV_FLOAT
                                           : v.kind == JM_V_BOOL ? JM_CV_BOOL : JM_CV_STRING, v.i, v.f, v.s, ce->loc, NULL };
                    JM_VEC_PUSH(E->a, E->m->config, E->m->nconfig, E->m->capconfig, cv);
                }
            }
            break;
        default: {
            jm_gsym s = { d->name, JM_G_DECL, d, jm_v_err(), d->name_loc };
            jm_add_sym(E, d->name, s, d->name_loc);
            break;
        }
        }
    }
}

static int jm_load_file(jm_elab *E, const char *path, jm_loc from) {
    char real[PATH_MAX];
    const char *key = realpath(path, real) ? real : path;
    for (int i = 0; i < E->nimport; i++)
        if (strcmp(E->import_stack[i], key) == 0) {
            char chain[8192];
            size_t n = 0;
            for (int k = i; k < E->nimport && n < sizeof chain; k++) {
                const char *b = strrchr(E->import_stack[k], '/');
                n += (size_t)snprintf(chain + n, sizeof chain - n, "%.200s -> ", b ? b + 1 : E->import_stack[k]);
            }
            const char *b = strrchr(key, '/');
            if (n < sizeof chain) snprintf(chain + n, sizeof chain - n, "%.200s", b ? b + 1 : key);
            jm_diag_error(E->d, from, "import cycle: %s", chain);
            return -1;
        }
    for (int i = 0; i < E->nimported; i++)
        if (strcmp(E->imported[i], key) == 0) return 0;      /* already loaded (diamond import) */
    if (E->nimport >= 64) {
        jm_diag_error(E->d, from, "imports nested more than 64 deep");
        return -1;
    }
    const char *why = NULL;
    int file = jm_diag_load_file(E->d, path, &why);
    if (file < 0) {
        jm_diag_error(E->d, from, "cannot read '%s': %s", path, why);
        return -1;
    }
    const char *k = jm_arena_strdup(E->a, key);
    JM_VEC_PUSH(E->a, E->imported, E->nimported, E->capimported, k);
    int depth = E->nimport;
    E->import_stack = jm_arena_grow(E->a, E->import_stack, sizeof(char *) * (size_t)depth, sizeof(char *) * (size_t)(depth + 1));
    E->import_stack[E->nimport++] = k;
    int before = E->d->nerr;
    jm_ast_file *f = jm_parse(E->d, file);
    jm_collect(E, f, E->d->nerr > before);
    E->nimport--;
    return 0;
}

static void jm_decl_record_make(jm_elab *E, jm_decl *d, jm_decl_record *r) {
    jm_ctx c = jm_root_ctx(E);
    memset(r, 0, sizeof *r);
    r->name = d->name;
    r->loc = d->loc;
    r->kind = d->value->str;
    int cap = 0;
    if (d->value->nitems) {
        jm_diag_error(E->d, d->value->items[0]->loc, "%s(...) takes keyword arguments only (name=value)", d->value->str);
        return;
    }
    for (int i = 0; i < d->value->nkw; i++) {
        jm_value v = jm_eval(&c, d->value->kw[i].value);
        jm_config_value cv = { d->value->kw[i].name, JM_CV_INT, 0, 0, NULL, d->value->kw[i].loc, v.cfg };
        if (v.kind == JM_V_INT) cv.i = v.i;
        else if (v.kind == JM_V_FLOAT) { cv.kind = JM_CV_FLOAT; cv.f = v.f; }
        else if (v.kind == JM_V_BOOL) { cv.kind = JM_CV_BOOL; cv.i = v.i; }
        else if (v.kind == JM_V_STR) { cv.kind = JM_CV_STRING; cv.s = v.s; }
        else {
            if (v.kind != JM_V_ERR)
                jm_diag_error(E->d, d->value->kw[i].value->loc, "argument '%s' must be a number, bool or string", cv.name);
            continue;
        }
        JM_VEC_PUSH(E->a, r->args, r->nargs, cap, cv);
    }
}

/* Checks a data/optimizer declaration's kind and argument names against what the runtime knows. */
static void jm_check_record(jm_elab *E, jm_decl *d, const jm_decl_record *r, const char *const *kinds,
                            const char *const *keys) {
    int ok = 0, nk = 0;
    for (const char *const *k = kinds; *k; k++, nk++) ok |= strcmp(*k, r->kind) == 0;
    if (!ok) {
        const char *best = jm_diag_closest(r->kind, kinds, nk);
        if (best) jm_diag_error(E->d, d->value->loc, "unknown %s kind '%s'; did you mean '%s'?", d->kind == JM_D_DATA ? "data" : "optimizer", r->kind, best);
        else jm_diag_error(E->d, d->value->loc, "unknown %s kind '%s'", d->kind == JM_D_DATA ? "data" : "optimizer", r->kind);
        return;
    }
    int nkeys = 0;
    while (keys[nkeys]) nkeys++;
    for (int i = 0; i < r->nargs; i++) {
        /* optimizer settings are numbers; a string would silently become 0 */
        int known = 0;
        for (int k = 0; k < nkeys; k++) known |= strcmp(keys[k], r->args[i].name) == 0;
        if (known && d->kind == JM_D_OPTIMIZER && (r->args[i].kind == JM_CV_STRING || r->args[i].kind == JM_CV_BOOL))
            jm_diag_error(E->d, r->args[i].loc, "%s(): '%s' must be a number", r->kind, r->args[i].name);
        int found = 0;
        for (int k = 0; k < nkeys; k++) found |= strcmp(keys[k], r->args[i].name) == 0;
        if (!found) {
            const char *best = jm_diag_closest(r->args[i].name, keys, nkeys);
            if (best) jm_diag_error(E->d, r->args[i].loc, "%s() has no argument '%s'; did you mean '%s'?", r->kind, r->args[i].name, best);
            else jm_diag_error(E->d, r->args[i].loc, "%s() has no argument '%s'", r->kind, r->args[i].name);
        }
    }
}

static void jm_elab_program(jm_elab *E, jm_decl *d) {
    jm_module *m = E->m;
    jm_program p;
    memset(&p, 0, sizeof p);
    p.name = d->name;
    p.loc = d->name_loc;
    p.graph = jm_graph_new(m, -1);
    JM_VEC_PUSH(E->a, m->programs, m->nprograms, m->capprograms, p);
    int pi = m->nprograms - 1;
    jm_ctx c = jm_root_ctx(E);
    c.g = m->programs[pi].graph;
    c.prog = &m->programs[pi];
    c.view = c.prog;
    if (d->ret) jm_diag_error(E->d, d->ret->loc, "programs have no return type; name their results with 'output'");
    for (int i = 0; i < d->nparams; i++) {
        jm_param *pa = &d->params[i];
        jm_type t;
        if (pa->def) jm_diag_error(E->d, pa->def->loc, "program inputs cannot have defaults");
        if (jm_parse_type(&c, pa->type, &t) != 0) { jm_set_var(&c, pa->name, jm_v_err()); continue; }
        jm_attr at;
        memset(&at, 0, sizeof at);
        at.i[0] = i;
        int id = jm_add(&c, JM_OP_INPUT, NULL, 0, &at, &t, pa->loc);
        if (id < 0) continue;
        m->graphs[c.g].node[id].name = pa->name;
        jm_binding b = { pa->name, id, pa->loc };
        JM_VEC_PUSH(E->a, c.prog->inputs, c.prog->ninputs, c.prog->capinputs, b);
        jm_set_var(&c, pa->name, jm_v_tensor(&c, id));
    }
    /* `programs` may move while the body runs (no nested programs), but keep the index safe. */
    jm_exec_body(&c, d->body, d->nbody);
    if (c.prog->noutputs == 0 && c.prog->nwrites == 0 && E->d->nerr == 0)
        jm_diag_error(E->d, d->name_loc, "program %s has no effect: it has no 'output' and updates no state", d->name);
}

/* An extern's library (language §4.11): a relative path names the file next to
   the graph file that declares it when there is one (kept as an absolute path);
   otherwise the name is left as written for dlopen's search (LD_LIBRARY_PATH,
   the system directories). Nothing is loaded here. */
static const char *jm_extern_library(jm_elab *E, jm_decl *d) {
    const char *lib = d->path;
    if (!lib[0]) {
        jm_diag_error(E->d, d->loc, "extern %s: empty library path", d->name);
        return lib;
    }
    if (lib[0] == '/' || d->loc.file < 0 || d->loc.file >= E->d->nsrc) return lib;
    char *tmp = jm_arena_strdup(E->a, E->d->src[d->loc.file].path);
    const char *cand = jm_arena_printf(E->a, "%s/%s", dirname(tmp), lib);
    char real[PATH_MAX];
    struct stat st;
    if (realpath(cand, real) && stat(real, &st) == 0 && S_ISREG(st.st_mode)) return jm_arena_strdup(E->a, real);
    return lib;
}

static jm_module *jm_elaborate(jm_elab *E) {
    static const char *const data_kinds[] = { "idx", "cifar10", "csv", NULL };
    static const char *const data_keys[] = { "images", "labels", "path", "classes", "scale", "label_column",
                                             "header", "augment", "noise", "labels_per_class", NULL };
    static const char *const opt_kinds[] = { "adam", "adamw", "sgd", NULL };
    static const char *const opt_keys[] = { "lr", "beta1", "beta2", "eps", "weight_decay", "momentum", "warmup",
                                            "decay_epochs", "decay_rate", NULL };
    jm_module *m = E->m;
    jm_ctx root = jm_root_ctx(E);
    /* Pass 1 (in jm_collect): names and config constants. Pass 2: state, data and
       optimizers, then programs in file order. */
    for (int i = 0; i < E->nsyms; i++) {
        jm_gsym *s = &E->syms[i];
        if (s->kind != JM_G_DECL) continue;
        jm_decl *d = s->decl;
        if (d->kind == JM_D_STATE) {
            jm_type t;
            jm_init init;
            if (jm_parse_type(&root, d->type, &t) != 0 || jm_eval_init(&root, d->value, &init) != 0) continue;
            jm_global g = { d->name, JM_GLOBAL_STATE, t, init, d->name_loc, 0, NULL };
            JM_VEC_PUSH(E->a, m->globals, m->nglobals, m->capglobals, g);
        } else if (d->kind == JM_D_DATA || d->kind == JM_D_OPTIMIZER) {
            jm_decl_record r;
            jm_decl_record_make(E, d, &r);
            if (d->kind == JM_D_DATA) {
                jm_check_record(E, d, &r, data_kinds, data_keys);
                JM_VEC_PUSH(E->a, m->data, m->ndata, m->capdata, r);
            } else {
                jm_check_record(E, d, &r, opt_kinds, opt_keys);
                JM_VEC_PUSH(E->a, m->optimizers, m->noptimizers, m->capoptimizers, r);
            }
        } else if (d->kind == JM_D_EXTERN) {
            jm_extern x;
            memset(&x, 0, sizeof x);
            x.name = d->name;
            x.library = jm_extern_library(E, d);
            x.loc = d->loc;
            x.params = jm_arena_alloc(E->a, sizeof(jm_type) * (size_t)(d->nparams + 1));
            int bad = 0;
            for (int k = 0; k < d->nparams; k++) bad |= jm_parse_type(&root, d->params[k].type, &x.params[k]) != 0;
            x.nparams = d->nparams;
            bad |= jm_parse_type(&root, d->ret, &x.ret) != 0;
            if (!bad) JM_VEC_PUSH(E->a, m->externs, m->nexterns, m->capexterns, x);
        }
    }
    for (int i = 0; i < E->nsyms && !jm_diag_too_many(E->d); i++)
        if (E->syms[i].kind == JM_G_DECL && E->syms[i].decl->kind == JM_D_PROGRAM)
            jm_elab_program(E, E->syms[i].decl);
    for (int i = 0; i < E->ndefs; i++)
        if (!E->def_used[i]) {
            int n = 0;
            const char **names = jm_arena_alloc(E->a, sizeof(char *) * (size_t)(E->nsyms + 1));
            for (int k = 0; k < E->nsyms; k++) if (E->syms[k].kind == JM_G_CONFIG) names[n++] = E->syms[k].name;
            const char *best = jm_diag_closest(E->defs[i].name, names, n);
            if (best) jm_diag_error(E->d, jm_noloc, "-D %s: no config constant named '%s'; did you mean '%s'?", E->defs[i].name, E->defs[i].name, best);
            else jm_diag_error(E->d, jm_noloc, "-D %s: no config constant named '%s'", E->defs[i].name, E->defs[i].name);
        }
    if (E->d->nerr) return NULL;
    if (jm_ir_verify(m, E->d) != 0) return NULL;
    return m;
}

static void jm_elab_init(jm_elab *E, jm_diags *d, const jm_define *defs, int ndefs) {
    memset(E, 0, sizeof *E);
    E->d = d;
    E->a = d->arena;
    E->m = jm_module_new(d->arena);
    E->defs = defs;
    E->ndefs = ndefs;
    E->def_used = jm_arena_alloc(d->arena, sizeof(int) * (size_t)(ndefs + 1));
}

/* One elaboration of a file (text == NULL) or of text in memory. */
static jm_module *jm_frontend_once(jm_diags *d, const char *path, const char *text, size_t len, const jm_define *defs, int ndefs,
                                   const char *const *fixed, int nfixed) {
    jm_elab E;
    jm_elab_init(&E, d, defs, ndefs);
    E.knobs = 1;
    E.fixed = fixed;
    E.nfixed = nfixed;
    if (!text) {
        if (jm_load_file(&E, path, jm_noloc) != 0) return NULL;
    } else {
        int file = jm_diag_add_source(d, path, jm_arena_strndup(d->arena, text, len), len);
        const char *k = jm_arena_strdup(d->arena, path);
        JM_VEC_PUSH(E.a, E.imported, E.nimported, E.capimported, k);
        E.import_stack = jm_arena_alloc(E.a, sizeof(char *));
        E.import_stack[E.nimport++] = k;
        jm_ast_file *f = jm_parse(d, file);
        jm_collect(&E, f, d->nerr > 0);
        E.nimport--;
    }
    if (d->nerr) return NULL;
    return jm_elaborate(&E);
}

/* Is knob `name` (value now v) also used at compile time? Elaborate again with
   the constant changed: if anything but the knob's own value changes (or the
   new value is refused), it is compiled in somewhere. */
static int jm_knob_is_fixed(const char *path, const char *text, size_t len, const jm_define *defs, int ndefs, const jm_global *knob, uint64_t want) {
    jm_define *d2 = calloc((size_t)ndefs + 1, sizeof *d2);
    if (!d2) return 1;
    int n = 0;
    for (int i = 0; i < ndefs; i++) if (strcmp(defs[i].name, knob->knob) != 0) d2[n++] = defs[i];
    char val[64];
    /* a different value of the same kind: an integer + 1, a number * 1.5 + 0.25 */
    if (knob->type.dtype == JM_I64) snprintf(val, sizeof val, "%lld", (long long)knob->init.a + 1);
    else snprintf(val, sizeof val, "%.17g", knob->init.a * 1.5 + 0.25);
    d2[n].name = knob->knob;
    d2[n].value = val;
    n++;
    jm_arena a;
    memset(&a, 0, sizeof a);
    jm_diags dd;
    FILE *null = fopen("/dev/null", "w");
    jm_diag_init(&dd, &a, null);
    jm_module *m2 = jm_frontend_once(&dd, path, text, len, d2, n, NULL, 0);
    int fixed = !m2 || jm_module_hash(m2, knob->knob) != want;
    jm_arena_free(&a);
    if (null) fclose(null);
    free(d2);
    return fixed;
}

/* Elaborates, then finds the knobs that are also compiled in (see jm_knob_global). */
static jm_module *jm_frontend(jm_diags *d, const char *path, const char *text, size_t len, const jm_define *defs, int ndefs) {
    jm_module *m = jm_frontend_once(d, path, text, len, defs, ndefs, NULL, 0);
    if (!m) return NULL;
    const char **fixed = NULL;
    int nfixed = 0;
    for (int i = 0; i < m->nglobals; i++) {
        const jm_global *g = &m->globals[i];
        if (!g->knob || !jm_knob_is_fixed(path, text, len, defs, ndefs, g, jm_module_hash(m, g->knob))) continue;
        const char **grown = realloc(fixed, sizeof(char *) * (size_t)(nfixed + 1));
        if (!grown) { free(fixed); return NULL; }
        fixed = grown;
        fixed[nfixed++] = g->knob;
    }
    if (!nfixed) return m;
    /* elaborate once more with those constants folded (the first module's
       memory stays in d's arena until the caller frees it) */
    jm_module *m2 = jm_frontend_once(d, path, text, len, defs, ndefs, fixed, nfixed);
    free(fixed);
    return m2;
}

jm_module *jm_frontend_load(jm_diags *d, const char *path, const jm_define *defs, int ndefs) {
    return jm_frontend(d, path, NULL, 0, defs, ndefs);
}

jm_module *jm_frontend_load_text(jm_diags *d, const char *name, const char *text, size_t len,
                                 const jm_define *defs, int ndefs) {
    return jm_frontend(d, name, text, len, defs, ndefs);
}
