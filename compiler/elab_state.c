/* elab_state.c — parameters, state and what writes them. It owns reads of a
 * parameter or state global as an IR node, run-time knobs (config constants
 * that become scalar state "config.NAME"), initialisers, the `param` and
 * `buffer` declarations of blocks and the `update` of a buffer, a program's
 * state writes (by assignment or by rows, `x[idx] = rows`), its outputs, and
 * `minimize loss with opt`: the gradient's norm, the optimizer's step counter,
 * learning-rate warm-up, Adam/AdamW moments and bias corrections, SGD momentum,
 * SAM/ASAM's options (the second pass itself is elab_sam.c) and the parameter
 * updates. */
#include "elab_int.h"
#include "elab_sam.h"
#include <math.h>
#include <string.h>

/* ---- reads of state and run-time knobs ---------------------------------- */

jm_value jm_elab_state_value(jm_ctx *c, int global, jm_loc loc) {
    jm_attr at;
    memset(&at, 0, sizeof at);
    at.i[0] = global;
    int id = jm_add(c, c->E->m->globals[global].kind == JM_GLOBAL_PARAM ? JM_OP_PARAM : JM_OP_STATE,
                    NULL, 0, &at, NULL, loc);
    if (id >= 0) c->E->m->graphs[c->g].node[id].name = c->E->m->globals[global].name;
    return jm_v_tensor(c, id);
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
int jm_elab_knob_global(jm_ctx *c, jm_value v, jm_loc loc) {
    jm_elab *E = c->E;
    if (!v.cfg || !E->knobs || (v.kind != JM_V_INT && v.kind != JM_V_FLOAT) || c->g < 0) return -1;
    for (int i = 0; i < E->nfixed; i++) if (strcmp(E->fixed[i], v.cfg) == 0) return -1;
    const char *name = jm_arena_printf(E->a, "config.%s", v.cfg);
    jm_module *m = E->m;
    int gi = jm_module_find_global(m, name);
    if (gi >= 0) return m->globals[gi].knob ? gi : -1;
    jm_type t = jm_type_make(v.kind == JM_V_FLOAT ? JM_F32 : JM_I64, 0, NULL);
    jm_global g = { .name = name, .kind = JM_GLOBAL_STATE, .type = t, .init = { JM_INIT_CONST, v.kind == JM_V_FLOAT ? v.f : (double)v.i, 0 },
                    .loc = loc, .knob = v.cfg };
    JM_VEC_PUSH(E->a, m->globals, m->nglobals, m->capglobals, g);
    return m->nglobals - 1;
}

/* The knob's value as a node of dtype dt, or -1 when v is no knob. */
int jm_elab_knob_node(jm_ctx *c, jm_value v, jm_dtype dt, jm_loc loc) {
    int gi = jm_elab_knob_global(c, v, loc);
    if (gi < 0) return -1;
    int id = jm_elab_state_value(c, gi, loc).node;
    if (id >= 0 && c->E->m->globals[gi].type.dtype != dt) {
        jm_attr at;
        memset(&at, 0, sizeof at);
        at.k = dt;
        id = jm_add(c, JM_OP_CAST, &id, 1, &at, NULL, loc);
    }
    return id;
}

/* ---- parameters, buffers and state writes ---------------------------------- */

/* xavier_uniform(gain=1) for a global of type t: U(-b, b) with b computed as
   torch.nn.init.xavier_uniform_ does (std = gain * sqrt(2 / (fan_in + fan_out)),
   b = sqrt(3) * std, in double), fan_in = dim 1 x receptive field, fan_out = dim 0 x
   receptive field, the receptive field being the product of dims 2.. (PyTorch's
   _calculate_fan_in_and_fan_out). It becomes a uniform initialiser, so the values
   are drawn, keyed and stored exactly as uniform(-b, b)'s (interpreter and
   compiled code agree bitwise). */
static int jm_eval_xavier(jm_ctx *c, jm_expr *e, const jm_type *t, jm_init *out) {
    jm_diags *d = c->E->d;
    double gain = 1;
    if (e->nitems + e->nkw > 1 || (e->nkw && strcmp(e->kw[0].name, "gain") != 0)) {
        jm_diag_error(d, e->loc, "xavier_uniform takes one argument, gain (default 1)");
        return -1;
    }
    jm_expr *g = e->nitems ? e->items[0] : e->nkw ? e->kw[0].value : NULL;
    if (g && jm_want_number(c, jm_eval(c, g), g->loc, "the gain of xavier_uniform", &gain) != 0) return -1;
    if (!(gain >= 0) || isinf(gain)) {
        jm_diag_error(d, g->loc, "xavier_uniform: the gain must be a finite number >= 0, got %g", gain);
        return -1;
    }
    char ts[128];
    if (!t || t->rank < 2) {
        if (t) jm_type_str(t, ts, sizeof ts);
        jm_diag_error(d, e->loc, "xavier_uniform needs a tensor of at least 2 dimensions (fan in and fan out), got %s", t ? ts : "no type");
        return -1;
    }
    double rf = 1;
    for (int k = 2; k < t->rank; k++) rf *= (double)t->dim[k];
    double fan_in = (double)t->dim[1] * rf, fan_out = (double)t->dim[0] * rf;
    if (fan_in + fan_out == 0) {
        jm_diag_error(d, e->loc, "xavier_uniform: fan_in + fan_out is 0 for %s", jm_type_str(t, ts, sizeof ts));
        return -1;
    }
    double bound = sqrt(3.0) * (gain * sqrt(2.0 / (fan_in + fan_out)));
    out->kind = bound == 0 ? JM_INIT_ZEROS : JM_INIT_UNIFORM;
    out->a = -bound;
    out->b = bound;
    return 0;
}

/* An initialiser; t is the declared type (xavier_uniform reads its fans), or NULL. */
int jm_elab_eval_init(jm_ctx *c, jm_expr *e, const jm_type *t, jm_init *out) {
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
    if (strcmp(f, "xavier_uniform") == 0) return jm_eval_xavier(c, e, t, out);
    int nargs = strcmp(f, "zeros") == 0 ? 0 : 2;
    if ((strcmp(f, "uniform") != 0 && strcmp(f, "normal") != 0 && strcmp(f, "zeros") != 0) || e->nkw) {
        jm_diag_error(E->d, e->loc, "an initialiser must be uniform(lo, hi), normal(mean, std), xavier_uniform(gain), zeros() or a number");
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
    jm_elab_set_var(c, s->name, jm_v_err());     /* until it succeeds: no follow-on errors */
    if (jm_elab_parse_type(c, s->type, &t) != 0) return -1;
    if (kind == JM_GLOBAL_PARAM && !jm_dtype_is_float(t.dtype)) {
        jm_diag_error(E->d, s->type->loc, "parameters must be floating-point, '%s' is %s", s->name, jm_dtype_name(t.dtype));
        return -1;
    }
    jm_init init;
    if (jm_elab_eval_init(c, s->value, &t, &init) != 0) return -1;
    const char *full = c->scope[0] ? jm_arena_printf(E->a, "%s.%s", c->scope, s->name) : s->name;
    int gi = jm_module_find_global(m, full);
    if (gi < 0) {
        jm_global g = { .name = full, .kind = kind, .type = t, .init = init, .loc = s->name_loc, .from_block = 1 };
        if (kind == JM_GLOBAL_PARAM) {
            /* it belongs to every model being called now (optimizer params=, §4.10) */
            for (const jm_modelframe *f = c->models; f; f = f->up) g.nmodels++;
            g.models = jm_arena_alloc(E->a, sizeof(char *) * (size_t)(g.nmodels + 1));
            int k = 0;
            for (const jm_modelframe *f = c->models; f; f = f->up) g.models[k++] = f->name;
        }
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

/* The interval every value of initialiser `in` lies in; -1 when unbounded or
   unknown (normal() with std > 0, or a kind this does not know). */
static int jm_init_range(const jm_init *in, double *lo, double *hi) {
    switch (in->kind) {
    case JM_INIT_NONE: case JM_INIT_ZEROS: *lo = *hi = 0; return 0;
    case JM_INIT_CONST: *lo = *hi = in->a; return 0;
    case JM_INIT_UNIFORM: *lo = in->a; *hi = in->b; return 0;
    case JM_INIT_NORMAL: *lo = *hi = in->a; return in->b == 0 ? 0 : -1;
    default: return -1;
    }
}

/* `param ... in [lo, hi]` (§5.4): compile-time numbers with lo <= hi, and an
   initialiser whose every value lies in the interval. Stored on the global
   by the statement that created it; another `param` of the same full name
   must give the same bounds. */
static void jm_param_bounds(jm_ctx *c, jm_stmt *s, int gi) {
    jm_elab *E = c->E;
    jm_global *g = &E->m->globals[gi];
    double lo = 0, hi = 0;
    int has = s->lo != NULL;
    if (has && (jm_want_number(c, jm_eval(c, s->lo), s->lo->loc, "a parameter's lower bound", &lo) != 0 ||
                jm_want_number(c, jm_eval(c, s->hi), s->hi->loc, "a parameter's upper bound", &hi) != 0))
        return;
    if (has && !(lo <= hi)) {
        jm_diag_error(E->d, s->lo->loc, "parameter '%s': the bounds in [%g, %g] need lo <= hi", g->name, lo, hi);
        return;
    }
    int first = g->loc.file == s->name_loc.file && g->loc.line == s->name_loc.line && g->loc.col == s->name_loc.col;
    if (!first) {
        if (has != g->bounded || (has && (lo != g->lo || hi != g->hi))) {
            jm_diag_error(E->d, s->name_loc, "parameter '%s' declared with %s here but with %s before", g->name,
                          has ? jm_arena_printf(E->a, "bounds [%g, %g]", lo, hi) : "no bounds",
                          g->bounded ? jm_arena_printf(E->a, "bounds [%g, %g]", g->lo, g->hi) : "no bounds");
            jm_diag_note(E->d, g->loc, "'%s' was first declared here", g->name);
        }
        return;
    }
    if (!has) return;
    double a, b;
    if (jm_init_range(&g->init, &a, &b) != 0 || a < lo || b > hi) {
        jm_loc at = s->value ? s->value->loc : s->name_loc;
        if (jm_init_range(&g->init, &a, &b) != 0)
            jm_diag_error(E->d, at, "parameter '%s': its initial values can fall outside its bounds [%g, %g]", g->name, lo, hi);
        else
            jm_diag_error(E->d, at, "parameter '%s': %s outside its bounds [%g, %g]", g->name,
                          a == b ? jm_arena_printf(E->a, "initial value %g is", a)
                                 : jm_arena_printf(E->a, "initial values drawn from [%g, %g] can fall", a, b), lo, hi);
        return;
    }
    g->bounded = 1;
    g->lo = lo;
    g->hi = hi;
}

void jm_elab_stmt_param(jm_ctx *c, jm_stmt *s) {
    int gi = jm_declare_global(c, s, JM_GLOBAL_PARAM);
    if (gi >= 0) jm_param_bounds(c, s, gi);
    /* after a minimize in this program updated it, its new value (§13.3) */
    if (gi >= 0) jm_elab_set_var(c, s->name, jm_elab_param_now(c, gi, s->loc));
}

int jm_elab_is_state_name(jm_ctx *c, const char *name) {
    if (jm_elab_find_var(c, name)) return -1;
    jm_gsym *s = jm_elab_find_sym(c->E, name);
    if (s && s->kind == JM_G_DECL && s->decl->kind == JM_D_STATE) return jm_module_find_global(c->E->m, name);
    return -1;
}

void jm_elab_write_state(jm_ctx *c, int gi, int node, jm_loc loc) {
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

void jm_elab_stmt_index_assign(jm_ctx *c, jm_stmt *s) {
    jm_elab *E = c->E;
    int gi = jm_elab_is_state_name(c, s->name);
    if (gi < 0 || !c->prog) {
        if (gi >= 0) jm_diag_error(E->d, s->name_loc, "state '%s' can only be updated in a program's own body (not in a block or sampler)", s->name);
        else jm_diag_error(E->d, s->name_loc, "only state variables can be updated by rows ('%s' is not one)", s->name);
        return;
    }
    if (s->nindex != 1 || s->index[0]->kind == JM_E_SLICE) {
        jm_diag_error(E->d, s->loc, "a row update takes one integer-tensor subscript: %s[idx] = rows", s->name);
        return;
    }
    jm_value base = jm_elab_lookup(c, s->name, s->name_loc);
    jm_value ix = jm_eval(c, s->index[0]);
    jm_value v = jm_eval(c, s->value);
    int b = jm_want_tensor(c, base, s->name_loc, "state");
    int i = jm_want_tensor(c, ix, s->index[0]->loc, "the row index");
    int x = jm_want_tensor(c, v, s->value->loc, "the rows");
    if (b < 0 || i < 0 || x < 0) return;
    int src[3] = { b, i, x };
    int r = jm_add(c, JM_OP_SCATTER, src, 3, NULL, NULL, s->loc);
    if (r >= 0) jm_elab_write_state(c, gi, r, s->loc);
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

void jm_elab_stmt_output(jm_ctx *c, jm_stmt *s) {
    jm_elab *E = c->E;
    if (!c->prog || c->loop) {
        jm_diag_error(E->d, s->loc, "'output' is only allowed in a program's own body (not in a block or sampler)");
        if (s->value) jm_elab_set_var(c, s->name, jm_eval(c, s->value));   /* keep the name defined */
        return;
    }
    jm_value v = s->value ? jm_eval(c, s->value) : jm_elab_lookup(c, s->name, s->name_loc);
    if (s->value) jm_elab_set_var(c, s->name, v);
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

/* ---- optimizers and minimize ------------------------------------------- */

static jm_value jm_state_now(jm_ctx *c, int gi, jm_loc loc);

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

/* An optimizer's argument as written, or NULL. */
static const jm_config_value *jm_record_arg(const jm_decl_record *r, const char *key) {
    for (int i = 0; i < r->nargs; i++)
        if (strcmp(r->args[i].name, key) == 0) return &r->args[i];
    return NULL;
}

/* sam_rho (a finite number >= 0) and sam_adaptive (0 or 1), checked where they
   are written; 0 after an error (reported at the argument). */
static int jm_sam_options(jm_elab *E, const jm_decl_record *opt, double *rho, int *adaptive) {
    const jm_config_value *r = jm_record_arg(opt, "sam_rho"), *a = jm_record_arg(opt, "sam_adaptive");
    *rho = jm_record_num(opt, "sam_rho", 0);
    double ad = jm_record_num(opt, "sam_adaptive", 0);
    int ok = 1;
    if (r && !(*rho >= 0 && isfinite(*rho))) {
        jm_diag_error(E->d, r->loc, "%s(): sam_rho must be a finite number >= 0 (the SAM radius; 0: no SAM), got %g", opt->kind, *rho);
        ok = 0;
    }
    if (a && ad != 0 && ad != 1) {
        jm_diag_error(E->d, a->loc, "%s(): sam_adaptive must be 0 (SAM) or 1 (ASAM), got %g", opt->kind, ad);
        ok = 0;
    }
    *adaptive = ad == 1;
    return ok;
}

static int jm_new_state(jm_ctx *c, const char *name, jm_type t, jm_loc loc) {
    jm_module *m = c->E->m;
    int gi = jm_module_find_global(m, name);
    if (gi >= 0) return gi;
    jm_global g = { .name = name, .kind = JM_GLOBAL_STATE, .type = t, .init = { JM_INIT_ZEROS, 0, 0 }, .loc = loc };
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
    if (norm >= 0) jm_elab_write_state(c, gi, norm, loc);
}

/* A bounded parameter's update clamped to [lo, hi] (§5.4), as clamp() does
   it: where(x < lo, lo, where(x > hi, hi, x)), so a NaN stays a NaN for the
   runtime's divergence guard. */
static int jm_clamp_update(jm_ctx *c, int x, double lo, double hi, jm_loc loc) {
    jm_type t = c->E->m->graphs[c->g].node[x].type;
    int l = jm_broadcast_to(c, jm_const_node(c, lo, t.dtype, loc), &t, loc);
    int h = jm_broadcast_to(c, jm_const_node(c, hi, t.dtype, loc), &t, loc);
    int c1[2] = { x, h }, c2[2] = { x, l };
    int above = jm_add(c, JM_OP_GT, c1, 2, NULL, NULL, loc), below = jm_add(c, JM_OP_LT, c2, 2, NULL, NULL, loc);
    int w1[3] = { above, h, x };
    int inner = jm_add(c, JM_OP_WHERE, w1, 3, NULL, NULL, loc);
    int w2[3] = { below, l, inner };
    return jm_add(c, JM_OP_WHERE, w2, 3, NULL, NULL, loc);
}

/* Data parallelism: the step's gradient is the mean of every shard's gradient
   (each shard's loss is a mean over its share of the batch, so this is the
   gradient of the whole batch's loss). One allreduce node per gradient, free on
   one shard; compiler/dp.c and the runtime (engine/rt_dp.c) do the rest. The
   gradients SAM perturbs along are averaged too, so SAM follows the whole
   batch's gradient (and needs two exchanges: dp.c says such a program is not
   data-parallel). */
static int jm_mean_over_shards(jm_ctx *c, jm_value *grads, jm_loc loc) {
    for (int i = 0; i < grads->nitems; i++) {
        int g = jm_tensor_node(c, grads->items[i]);
        if (g < 0) return -1;
        int r = jm_add(c, JM_OP_ALLREDUCE, &g, 1, NULL, NULL, loc);
        if (r < 0) return -1;
        grads->items[i] = jm_v_tensor(c, r);
    }
    return 0;
}

/* minimize loss with opt: gradient of loss for every parameter, then the
   optimizer's update written to the parameters and its state (moments, step). */
void jm_elab_stmt_minimize(jm_ctx *c, jm_stmt *s) {
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
    /* the parameters of opt's set that the loss depends on, at their current
       values: a second minimize steps from what the first one left (§13.3) */
    jm_value grads = jm_elab_params_grad(c, loss, s->loc, opt);
    if (grads.kind == JM_V_ERR) return;
    if (jm_mean_over_shards(c, &grads, s->loc) != 0) return;
    /* sam_rho > 0: the step uses the gradient at the SAM-perturbed parameters
       (elab_sam.c); sam_rho = 0 leaves the expansion exactly as without SAM */
    double rho;
    int adaptive;
    if (!jm_sam_options(E, opt, &rho, &adaptive)) return;
    if (rho > 0) {
        grads = jm_elab_sam_grads(c, loss, &grads, jm_record_knob(opt, "sam_rho", rho), adaptive, s->loc);
        if (grads.kind == JM_V_ERR) return;
        if (jm_mean_over_shards(c, &grads, s->loc) != 0) return;
    }
    jm_write_grad_norm(c, opt, &grads, s->loc);
    int is_adam = strcmp(opt->kind, "adam") == 0 || strcmp(opt->kind, "adamw") == 0;
    double lr = jm_record_num(opt, "lr", 1e-3), b1 = jm_record_num(opt, "beta1", 0.9), b2 = jm_record_num(opt, "beta2", 0.999);
    double eps = jm_record_num(opt, "eps", 1e-8), wd = jm_record_num(opt, "weight_decay", 0);
    double mom = jm_record_num(opt, "momentum", 0), warm = jm_record_num(opt, "warmup", 0);
    jm_loc loc = s->loc;
    /* step counter t (i64 scalar), incremented once per call */
    jm_type st = jm_type_make(JM_I64, 0, NULL);
    int sg = jm_new_state(c, jm_arena_printf(E->a, "%s.step", opt->name), st, opt->loc);
    int step = jm_state_now(c, sg, loc).node;
    int one = jm_const_node(c, 1, JM_I64, loc);
    int t_src[2] = { step, one };
    int t = jm_add(c, JM_OP_ADD, t_src, 2, NULL, NULL, loc);
    jm_elab_write_state(c, sg, t, loc);
    jm_dtype fdt = lt.dtype;
    jm_attr cast;
    memset(&cast, 0, sizeof cast);
    cast.k = fdt;
    int tf = jm_add(c, JM_OP_CAST, &t, 1, &cast, NULL, loc);
    /* learning rate with linear warm-up: lr * min(1, t / warmup); lr and warmup
       given by config constants are knobs (the runtime's schedule sets lr) */
    int lrn = jm_elab_knob_node(c, jm_record_knob(opt, "lr", lr), fdt, loc);
    if (lrn < 0) lrn = jm_const_node(c, lr, fdt, loc);
    int warm_knob = jm_elab_knob_node(c, jm_record_knob(opt, "warmup", warm), fdt, loc);
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
        jm_value p = jm_elab_param_now(c, gi, loc), g = grads.items[i];
        jm_value lrv = jm_v_tensor(c, lrn);
        if (wd != 0 && strcmp(opt->kind, "adamw") != 0)
            g = jm_binary(c, JM_T_PLUS, g, jm_binary(c, JM_T_STAR, jm_v_float(wd), p, loc), loc);
        jm_value upd;
        if (is_adam) {
            int mg = jm_new_state(c, jm_arena_printf(E->a, "%s.m.%s", opt->name, pg->name), pt, opt->loc);
            int vg = jm_new_state(c, jm_arena_printf(E->a, "%s.v.%s", opt->name, pg->name), pt, opt->loc);
            jm_value mv = jm_state_now(c, mg, loc), vv = jm_state_now(c, vg, loc);
            mv = jm_binary(c, JM_T_PLUS, jm_binary(c, JM_T_STAR, jm_v_float(b1), mv, loc),
                           jm_binary(c, JM_T_STAR, jm_v_float(1 - b1), g, loc), loc);
            vv = jm_binary(c, JM_T_PLUS, jm_binary(c, JM_T_STAR, jm_v_float(b2), vv, loc),
                           jm_binary(c, JM_T_STAR, jm_v_float(1 - b2), jm_binary(c, JM_T_STAR, g, g, loc), loc), loc);
            if (mv.kind == JM_V_ERR || vv.kind == JM_V_ERR) return;
            jm_elab_write_state(c, mg, mv.node, loc);
            jm_elab_write_state(c, vg, vv.node, loc);
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
                jm_value buf = jm_state_now(c, bg, loc);
                buf = jm_binary(c, JM_T_PLUS, jm_binary(c, JM_T_STAR, jm_v_float(mom), buf, loc), g, loc);
                if (buf.kind == JM_V_ERR) return;
                jm_elab_write_state(c, bg, buf.node, loc);
                upd = buf;
            }
        }
        jm_value np = jm_binary(c, JM_T_MINUS, p, jm_binary(c, JM_T_STAR, lrv, upd, loc), loc);
        if (np.kind == JM_V_ERR) return;
        if (pg->bounded) np = jm_v_tensor(c, jm_clamp_update(c, np.node, pg->lo, pg->hi, loc));
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

/* ---- buffers ------------------------------------------------------------- */

/* The value of a state global as the program sees it now: its pending write, or
   its value at the start of the program. */
static jm_value jm_state_now(jm_ctx *c, int gi, jm_loc loc) {
    if (c->view && c->g == c->view->graph)
        for (int i = 0; i < c->view->nwrites; i++)
            if (c->view->writes[i].global == gi) return jm_v_tensor(c, c->view->writes[i].node);
    return jm_elab_state_value(c, gi, loc);
}

/* buffer NAME: TYPE = init — persistent state owned by a block (running
   statistics of a batch norm), named like a parameter: scope.NAME. */
void jm_elab_stmt_buffer(jm_ctx *c, jm_stmt *s) {
    int gi = jm_declare_global(c, s, JM_GLOBAL_STATE);
    if (gi < 0) return;
    jm_elab_set_var(c, s->name, jm_state_now(c, gi, s->loc));
    jm_elab_find_var(c, s->name)->buffer = gi + 1;
}

/* update NAME = value — writes a block's buffer; committed when the program
   ends, and seen by later reads in the same program (a second call of the
   block updates the statistics again, as PyTorch does). */
void jm_elab_stmt_update(jm_ctx *c, jm_stmt *s) {
    jm_elab *E = c->E;
    jm_binding_v *b = jm_elab_find_var(c, s->name);
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
    jm_elab_write_state(c, gi, node, s->loc);
    c->prog = saved;
    b->v = jm_state_now(c, gi, s->loc);
}
