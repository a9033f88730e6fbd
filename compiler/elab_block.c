/* elab_block.c — calls of declarations and the statements of their bodies. It
 * owns the call of a block, model or energy (expanded at each call site:
 * arguments bound by position, name or default, `as` scopes, declared types
 * checked), of a sampler (its body elaborated once into a LOOP node), and of an
 * extern (an EXTERN_CALL node); the call path that keys random streams
 * (jm_stream_id); the step and depth budgets that stop a runaway graph file; and
 * the execution of statement lists: assignments, `return`, compile-time `if`
 * and `repeat`, with the statements about state, outputs and optimizers handed
 * to elab_state.c. */
#include "elab_int.h"
#include "engine/philox.h"
#include <math.h>
#include <string.h>

/* ---- budgets and call paths ------------------------------------------------ */

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

/* ---- calls --------------------------------------------------------------- */

static jm_value jm_call_sampler(jm_ctx *c, jm_decl *decl, jm_args *A);

int jm_elab_parse_type(jm_ctx *c, jm_type_expr *te, jm_type *out) {
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
            if (jm_elab_parse_type(defctx, p->type, &want) != 0) return -1;
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
        jm_elab_set_var(callee, p->name, vals[i]);
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
                jm_value v = jm_elab_lookup(c, var, scope->loc);
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
    defctx.pview = c->pview; defctx.models = c->models;
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

jm_value jm_elab_call_decl(jm_ctx *c, jm_decl *decl, jm_args *A) {
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
    callee.pview = c->pview;
    callee.loop = c->loop;
    /* parameters created inside a model's call belong to it (optimizer params=) */
    jm_modelframe frame = { decl->name, c->models };
    callee.models = decl->kind == JM_D_MODEL ? &frame : c->models;
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
        jm_elab_exec_body(&callee, decl->body, decl->nbody);
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
        if (jm_elab_parse_type(&defctx, decl->ret, &want) != 0) return jm_v_err();
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
    outer.pview = c->pview; outer.models = c->models;
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
    body.pview = c->pview; body.models = c->models;      /* parameters updated by minimize: their new values */
    body.depth = c->depth + 1;
    body.path = jm_path_mix(c, c->path, A->call->loc);
    jm_attr at;
    memset(&at, 0, sizeof at);
    int arg = jm_ir_add(m, L->body, JM_OP_LOOP_ARG, NULL, 0, &at, &xt, decl->params[0].loc, E->d);
    for (int i = 0; i < outer.nvars; i++) jm_elab_set_var(&body, outer.vars[i].name, outer.vars[i].v);
    jm_elab_set_var(&body, decl->params[0].name, jm_v_tensor(&body, arg));
    jm_elab_exec_body(&body, decl->body, decl->nbody);

    jm_value xn = jm_elab_find_var(&body, decl->params[0].name)->v;
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
    int knob = jm_elab_knob_global(c, outer.vars[steps_i].v, A->call->loc);
    if (knob >= 0) { at.i[2] = knob + 1; at.ni = 3; }
    int loop = jm_add(c, JM_OP_LOOP, src, nsrc, &at, NULL, A->call->loc);
    memset(&at, 0, sizeof at);
    return jm_v_tensor(c, jm_add(c, JM_OP_LOOP_OUT, &loop, 1, &at, NULL, A->call->loc));
}

/* ---- statements -------------------------------------------------------- */

static void jm_assign_one(jm_ctx *c, jm_stmt *s, const char *name, jm_value v);

static void jm_stmt_assign(jm_ctx *c, jm_stmt *s) {
    jm_value v = jm_eval(c, s->value);
    if (s->nnames > 1) {
        if (v.kind == JM_V_ERR) {
            for (int i = 0; i < s->nnames; i++) jm_elab_set_var(c, s->names[i], v);
            return;
        }
        if (v.kind != JM_V_LIST || v.nitems != s->nnames) {
            jm_diag_error(c->E->d, s->value->loc, "%d names on the left but the right side gives %d value%s", s->nnames,
                          v.kind == JM_V_LIST ? v.nitems : 1, v.kind == JM_V_LIST && v.nitems == 1 ? "" : (v.kind == JM_V_LIST ? "s" : ""));
            for (int i = 0; i < s->nnames; i++) jm_elab_set_var(c, s->names[i], jm_v_err());   /* no follow-on errors */
            return;
        }
        for (int i = 0; i < s->nnames; i++) jm_assign_one(c, s, s->names[i], v.items[i]);
        return;
    }
    jm_assign_one(c, s, s->name, v);
}

static void jm_assign_one(jm_ctx *c, jm_stmt *s, const char *name, jm_value v) {
    if (v.kind == JM_V_ERR) { jm_elab_set_var(c, name, v); return; }
    /* A program's own body writes state by assigning its name. Everywhere else a
       name on the left is a local: locals shadow config constants, declarations
       and state, so a library block works whatever names its importer uses. */
    int gi = c->prog ? jm_elab_is_state_name(c, name) : -1;
    if (gi >= 0) {
        int node = jm_want_tensor(c, v, s->value->loc, "a value assigned to state");
        if (node < 0) return;
        jm_elab_write_state(c, gi, node, s->loc);
        return;
    }
    jm_elab_set_var(c, name, v);
}

/* After an error that skips statements, the names they would have assigned are
   bound to an error value so that later uses stay quiet. */
static void jm_poison_assigned(jm_ctx *c, jm_stmt **body, int n) {
    for (int i = 0; i < n; i++) {
        jm_stmt *s = body[i];
        if (s->kind == JM_S_ASSIGN) {
            if (s->nnames > 1) { for (int k = 0; k < s->nnames; k++) if (!jm_elab_find_var(c, s->names[k])) jm_elab_set_var(c, s->names[k], jm_v_err()); }
            else if (!jm_elab_find_var(c, s->name) && !jm_elab_find_sym(c->E, s->name)) jm_elab_set_var(c, s->name, jm_v_err());
        } else if (s->kind == JM_S_PARAM || s->kind == JM_S_OUTPUT || s->kind == JM_S_BUFFER) {
            if (!jm_elab_find_var(c, s->name)) jm_elab_set_var(c, s->name, jm_v_err());
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
    case JM_S_INDEX_ASSIGN: jm_elab_stmt_index_assign(c, s); return;
    case JM_S_PARAM: jm_elab_stmt_param(c, s); return;
    case JM_S_OUTPUT: jm_elab_stmt_output(c, s); return;
    case JM_S_MINIMIZE: jm_elab_stmt_minimize(c, s); return;
    case JM_S_BUFFER: jm_elab_stmt_buffer(c, s); return;
    case JM_S_UPDATE: jm_elab_stmt_update(c, s); return;
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
        if (cond.i) jm_elab_exec_body(c, s->body, s->nbody);
        else jm_elab_exec_body(c, s->orelse, s->norelse);
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
            if (s->name) jm_elab_set_var(c, s->name, jm_v_int(i));
            jm_elab_exec_body(c, s->body, s->nbody);
            if (c->returned || jm_diag_too_many(E->d) || E->aborted) break;
        }
        c->path = saved_path;
        return;
    }
    }
}

void jm_elab_exec_body(jm_ctx *c, jm_stmt **body, int n) {
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
