/* elab.c — elaboration: AST -> IR.
 *
 * Elaboration is an interpreter over the syntax tree. Compile-time values
 * (integers, floats, bools, strings, lists) are computed on the spot; tensor
 * values are IR nodes. Blocks are expanded at each call (so `repeat` and `if`
 * run at compile time and WRN-28-10 is a page of text), `as name` extends the
 * parameter-name scope, samplers become LOOP nodes whose body is elaborated
 * once, and programs become root graphs over the module's global state.
 *
 * This file owns the driver: reading a graph file and its imports, config
 * constants and -D overrides, the top-level declarations (state, data,
 * optimizers, externs), each program's root graph, the detection of run-time
 * knobs that are also compiled in, and the front end's entry points (elab.h).
 * Expressions are in elab_expr.c, calls and statements in elab_block.c,
 * parameters, state, outputs and optimizers in elab_state.c. */
#include "elab_int.h"
#include <libgen.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

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
    jm_gsym *old = jm_elab_find_sym(E, name);
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

/* One model name in an optimizer's params=: 0, or -1 after an error. */
static int jm_params_model(jm_elab *E, jm_expr *e, const char **out) {
    jm_gsym *s = e->kind == JM_E_NAME ? jm_elab_find_sym(E, e->str) : NULL;
    if (s && s->kind == JM_G_DECL && s->decl->kind == JM_D_MODEL) { *out = s->decl->name; return 0; }
    if (e->kind != JM_E_NAME) {
        const char *got = e->kind == JM_E_INT || e->kind == JM_E_FLOAT ? "a number" : e->kind == JM_E_BOOL ? "a bool"
                        : e->kind == JM_E_CALL ? "a call" : e->kind == JM_E_LIST ? "a nested list" : "an expression";
        jm_diag_error(E->d, e->loc, "params= takes a model name, a list of model names or a string scope prefix, got %s", got);
        return -1;
    }
    int n = 0;
    const char **names = jm_arena_alloc(E->a, sizeof(char *) * (size_t)(E->nsyms + 1));
    for (int k = 0; k < E->nsyms; k++)
        if (E->syms[k].kind == JM_G_DECL && E->syms[k].decl->kind == JM_D_MODEL) names[n++] = E->syms[k].name;
    const char *best = jm_diag_closest(e->str, names, n);
    static const char *const kinds[] = { "an import", "a config constant", "a block", "a model", "an energy", "a sampler",
                                         "a program", "a state variable", "a data set", "an optimizer", "an extern" };
    if (s) jm_diag_error(E->d, e->loc, "'%s' is %s, not a model: params= takes model names or a string scope prefix", e->str,
                         s->kind == JM_G_CONFIG ? "a config constant" : kinds[s->decl->kind]);
    else if (best) jm_diag_error(E->d, e->loc, "unknown model '%s' in params=; did you mean '%s'?", e->str, best);
    else jm_diag_error(E->d, e->loc, "unknown model '%s' in params=", e->str);
    return -1;
}

/* An optimizer's params= (language §4.10): a model, a list of models, or a
   string scope prefix (a string config constant counts as a string). */
static void jm_optimizer_params(jm_elab *E, jm_decl_record *r, jm_kwarg *kw) {
    jm_expr *e = kw->value;
    r->ploc = e->loc;
    jm_gsym *s = e->kind == JM_E_NAME ? jm_elab_find_sym(E, e->str) : NULL;
    const char *scope = e->kind == JM_E_STRING ? e->str : s && s->kind == JM_G_CONFIG && s->value.kind == JM_V_STR ? s->value.s : NULL;
    if (scope) {
        if (!scope[0] || scope[0] == '.' || scope[strlen(scope) - 1] == '.') {
            jm_diag_error(E->d, e->loc, "params=\"%s\": a scope prefix is one or more name segments, like \"gen\" or \"gen.fc\"", scope);
            return;
        }
        r->psel = 2;
        r->pscope = scope;
        return;
    }
    jm_expr **items = e->kind == JM_E_LIST ? e->items : &e;
    int n = e->kind == JM_E_LIST ? e->nitems : 1;
    if (n == 0) {
        jm_diag_error(E->d, e->loc, "params=[]: the list names no model");
        return;
    }
    r->pmodels = jm_arena_alloc(E->a, sizeof(char *) * (size_t)n);
    for (int i = 0; i < n; i++)
        if (jm_params_model(E, items[i], &r->pmodels[r->npmodels]) == 0) r->npmodels++;
    if (r->npmodels == n) r->psel = 1;
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
        if (d->kind == JM_D_OPTIMIZER && strcmp(d->value->kw[i].name, "params") == 0) {
            jm_optimizer_params(E, r, &d->value->kw[i]);
            continue;
        }
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
    c.pview = c.prog;
    E->npnow = 0;                       /* current values of updated parameters are per program */
    if (d->ret) jm_diag_error(E->d, d->ret->loc, "programs have no return type; name their results with 'output'");
    for (int i = 0; i < d->nparams; i++) {
        jm_param *pa = &d->params[i];
        jm_type t;
        if (pa->def) jm_diag_error(E->d, pa->def->loc, "program inputs cannot have defaults");
        if (jm_elab_parse_type(&c, pa->type, &t) != 0) { jm_elab_set_var(&c, pa->name, jm_v_err()); continue; }
        jm_attr at;
        memset(&at, 0, sizeof at);
        at.i[0] = i;
        int id = jm_add(&c, JM_OP_INPUT, NULL, 0, &at, &t, pa->loc);
        if (id < 0) continue;
        m->graphs[c.g].node[id].name = pa->name;
        jm_binding b = { pa->name, id, pa->loc };
        JM_VEC_PUSH(E->a, c.prog->inputs, c.prog->ninputs, c.prog->capinputs, b);
        jm_elab_set_var(&c, pa->name, jm_v_tensor(&c, id));
    }
    /* `programs` may move while the body runs (no nested programs), but keep the index safe. */
    jm_elab_exec_body(&c, d->body, d->nbody);
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
                                            "decay_epochs", "decay_rate", "schedule", "sam_rho", "sam_adaptive", NULL };
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
            if (jm_elab_parse_type(&root, d->type, &t) != 0 || jm_elab_eval_init(&root, d->value, &t, &init) != 0) continue;
            jm_global g = { .name = d->name, .kind = JM_GLOBAL_STATE, .type = t, .init = init, .loc = d->name_loc };
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
            for (int k = 0; k < d->nparams; k++) bad |= jm_elab_parse_type(&root, d->params[k].type, &x.params[k]) != 0;
            x.nparams = d->nparams;
            bad |= jm_elab_parse_type(&root, d->ret, &x.ret) != 0;
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

/* Elaborates, then finds the knobs that are also compiled in (see jm_elab_knob_global). */
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
