/* elab_expr.c — elaboration of expressions. It owns compile-time values (the
 * jm_value constructors and checks: integers, floats, bools, strings, lists,
 * tensors), tensors used across sampler loop bodies (captured LOOP_ARGs), the
 * names an expression sees (locals, config constants, declarations, state
 * variables, `params`), arithmetic (folded on numbers, IR nodes with numpy
 * broadcasting on tensors), and jm_eval itself: literals, unary and binary
 * operators, `a if c else b`, subscripts and slices, and the dispatch of a
 * call to a declaration (elab_block.c) or a built-in function (builtins.c). */
#include "elab_int.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- values ---------------------------------------------------------------- */

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

jm_gsym *jm_elab_find_sym(jm_elab *E, const char *name) {
    for (int i = 0; i < E->nsyms; i++)
        if (strcmp(E->syms[i].name, name) == 0) return &E->syms[i];
    return NULL;
}

jm_binding_v *jm_elab_find_var(jm_ctx *c, const char *name) {
    for (int i = c->nvars - 1; i >= 0; i--)
        if (strcmp(c->vars[i].name, name) == 0) return &c->vars[i];
    return NULL;
}

void jm_elab_set_var(jm_ctx *c, const char *name, jm_value v) {
    jm_binding_v *b = jm_elab_find_var(c, name);
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

jm_value jm_elab_lookup(jm_ctx *c, const char *name, jm_loc loc) {
    jm_binding_v *b = jm_elab_find_var(c, name);
    if (b) return b->v;
    jm_gsym *s = jm_elab_find_sym(c->E, name);
    if (s && s->kind == JM_G_CONFIG) {
        jm_value v = s->value;
        if (v.kind == JM_V_INT || v.kind == JM_V_FLOAT) v.cfg = s->name;   /* may become a knob (jm_elab_knob_global) */
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
        return jm_elab_state_value(c, gi, loc);
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

/* Brings a number or tensor operand to a tensor node of dtype dt. */
static int jm_operand(jm_ctx *c, jm_value v, jm_dtype dt, jm_loc loc) {
    int knob = jm_elab_knob_node(c, v, dt, loc);
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

/* ---- expressions --------------------------------------------------------- */

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
    jm_gsym *s = jm_elab_find_sym(E, e->str);
    if (s && s->kind == JM_G_DECL) return jm_elab_call_decl(c, s->decl, &A);
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
    case JM_E_NAME: return jm_elab_lookup(c, e->str, e->loc);
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
