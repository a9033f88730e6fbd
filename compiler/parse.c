/* parse.c — recursive-descent parser for the graph language (grammar in
 * docs/graph-language.md). On a syntax error it reports what was expected and
 * what was found, then skips to the end of the statement (or declaration) and
 * goes on, so one run reports several errors. */
#include "ast.h"
#include <string.h>

#define JM_MAX_DEPTH 200   /* nesting limit: hostile input must not exhaust the stack */

typedef struct {
    jm_diags *d;
    jm_arena *a;
    jm_tokens t;
    int pos;
    int depth;
    int failed;            /* the current statement had an error: skip it */
} jm_parser;

static jm_token *jm_peek(jm_parser *P) { return &P->t.tok[P->pos]; }
static jm_token *jm_peek2(jm_parser *P) {
    return &P->t.tok[P->pos + 1 < P->t.n ? P->pos + 1 : P->pos];
}
static jm_token *jm_next(jm_parser *P) {
    jm_token *t = &P->t.tok[P->pos];
    if (t->kind != JM_T_EOF) P->pos++;
    return t;
}
/* The kind of the current token, reading soft keywords (see lex.c) as keywords. */
static jm_tok_kind jm_kw(jm_parser *P) {
    jm_token *t = jm_peek(P);
    if (t->kind != JM_T_IDENT) return t->kind;
    jm_tok_kind k = jm_keyword_lookup(t->text);
    return jm_keyword_is_soft(k) ? k : JM_T_IDENT;
}
static int jm_at(jm_parser *P, jm_tok_kind k) {
    return jm_keyword_is_soft(k) ? jm_kw(P) == k : jm_peek(P)->kind == k;
}
static int jm_accept(jm_parser *P, jm_tok_kind k) {
    if (jm_at(P, k)) { jm_next(P); return 1; }
    return 0;
}

static void jm_describe_found(const jm_token *t, char *buf, size_t n) {
    switch (t->kind) {
    case JM_T_IDENT: snprintf(buf, n, "identifier '%s'", t->text); break;
    case JM_T_INT: snprintf(buf, n, "integer %lld", (long long)t->ival); break;
    case JM_T_FLOAT: snprintf(buf, n, "number %g", t->fval); break;
    case JM_T_STRING: snprintf(buf, n, "string \"%s\"", t->text); break;
    default: snprintf(buf, n, "%s", jm_tok_describe(t->kind));
    }
}

static void jm_expected(jm_parser *P, const char *what) {
    if (P->failed) return;             /* one error per statement */
    if (jm_peek(P)->kind == JM_T_ERROR) { P->failed = 1; return; }   /* the lexer already said why */
    char found[160];
    jm_describe_found(jm_peek(P), found, sizeof found);
    jm_diag_error(P->d, jm_peek(P)->loc, "expected %s, found %s", what, found);
    P->failed = 1;
}

static int jm_expect(jm_parser *P, jm_tok_kind k, const char *context) {
    if (jm_accept(P, k)) return 1;
    char what[200];
    snprintf(what, sizeof what, "%s%s%s", jm_tok_describe(k), context ? " " : "", context ? context : "");
    jm_expected(P, what);
    return 0;
}

static void jm_skip_newlines(jm_parser *P) {
    while (jm_at(P, JM_T_NEWLINE) || jm_at(P, JM_T_SEMI)) jm_next(P);
}

/* Skips to the end of the current statement: a newline or ';' at brace depth 0,
   or just before the '}' that closes the enclosing body. */
static void jm_sync_stmt(jm_parser *P) {
    int braces = 0;
    for (;;) {
        jm_tok_kind k = jm_peek(P)->kind;
        if (k == JM_T_EOF) return;
        if (k == JM_T_LBRACE) braces++;
        if (k == JM_T_RBRACE) {
            if (braces == 0) return;
            braces--;
            jm_next(P);
            if (braces == 0 && (jm_at(P, JM_T_NEWLINE) || jm_at(P, JM_T_SEMI))) { jm_next(P); return; }
            continue;
        }
        if ((k == JM_T_NEWLINE || k == JM_T_SEMI) && braces == 0) { jm_next(P); return; }
        jm_next(P);
    }
}

static jm_expr *jm_new_expr(jm_parser *P, jm_expr_kind k, jm_loc loc) {
    jm_expr *e = jm_arena_alloc(P->a, sizeof *e);
    e->kind = k;
    e->loc = loc;
    return e;
}

static jm_expr *jm_parse_expr(jm_parser *P);

static jm_expr *jm_error_expr(jm_parser *P) {
    return jm_new_expr(P, JM_E_INT, jm_peek(P)->loc);
}

static void jm_parse_call_args(jm_parser *P, jm_expr *call) {
    int cap = 0, kwcap = 0;
    if (!jm_at(P, JM_T_RPAREN)) {
        do {
            if (jm_at(P, JM_T_RPAREN)) break;     /* trailing comma */
            if (jm_at(P, JM_T_IDENT) && jm_peek2(P)->kind == JM_T_ASSIGN) {
                jm_token *n = jm_next(P);
                jm_next(P);
                jm_kwarg kw = { n->text, jm_parse_expr(P), n->loc };
                for (int i = 0; i < call->nkw; i++)
                    if (strcmp(call->kw[i].name, kw.name) == 0 && !P->failed) {
                        jm_diag_error(P->d, n->loc, "keyword argument '%s' given twice", kw.name);
                        P->failed = 1;
                    }
                JM_VEC_PUSH(P->a, call->kw, call->nkw, kwcap, kw);
            } else {
                if (call->nkw > 0 && !P->failed) {
                    jm_diag_error(P->d, jm_peek(P)->loc, "positional argument after keyword arguments");
                    P->failed = 1;
                }
                jm_expr *arg = jm_parse_expr(P);
                JM_VEC_PUSH(P->a, call->items, call->nitems, cap, arg);
            }
            if (P->failed) return;
        } while (jm_accept(P, JM_T_COMMA));
    }
    jm_expect(P, JM_T_RPAREN, "to close the argument list");
}

static jm_expr *jm_parse_list(jm_parser *P, jm_expr_kind kind, jm_expr *base, jm_loc loc) {
    jm_expr *e = jm_new_expr(P, kind, loc);
    e->a = base;
    int cap = 0;
    if (!jm_at(P, JM_T_RBRACKET)) {
        do {
            if (jm_at(P, JM_T_RBRACKET)) break;
            jm_expr *item;
            jm_loc iloc = jm_peek(P)->loc;
            /* Subscripts may be slices "a:b", ":b", "a:" or ":". */
            if (kind == JM_E_INDEX && jm_at(P, JM_T_COLON)) {
                item = jm_new_expr(P, JM_E_SLICE, iloc);
                jm_next(P);
                if (!jm_at(P, JM_T_COMMA) && !jm_at(P, JM_T_RBRACKET)) item->b = jm_parse_expr(P);
            } else {
                item = jm_parse_expr(P);
                if (kind == JM_E_INDEX && jm_accept(P, JM_T_COLON)) {
                    jm_expr *s = jm_new_expr(P, JM_E_SLICE, iloc);
                    s->a = item;
                    if (!jm_at(P, JM_T_COMMA) && !jm_at(P, JM_T_RBRACKET)) s->b = jm_parse_expr(P);
                    item = s;
                }
            }
            JM_VEC_PUSH(P->a, e->items, e->nitems, cap, item);
            if (P->failed) return e;
        } while (jm_accept(P, JM_T_COMMA));
    }
    jm_expect(P, JM_T_RBRACKET, kind == JM_E_LIST ? "to close the list" : "to close the subscript");
    return e;
}

static jm_expr *jm_parse_primary(jm_parser *P) {
    jm_token *t = jm_peek(P);
    jm_expr *e;
    switch (t->kind) {
    case JM_T_INT:
        jm_next(P);
        e = jm_new_expr(P, JM_E_INT, t->loc); e->ival = t->ival; return e;
    case JM_T_FLOAT:
        jm_next(P);
        e = jm_new_expr(P, JM_E_FLOAT, t->loc); e->fval = t->fval; return e;
    case JM_T_STRING:
        jm_next(P);
        e = jm_new_expr(P, JM_E_STRING, t->loc); e->str = t->text; return e;
    case JM_T_TRUE: case JM_T_FALSE:
        jm_next(P);
        e = jm_new_expr(P, JM_E_BOOL, t->loc); e->ival = t->kind == JM_T_TRUE; return e;
    case JM_T_LBRACKET:
        jm_next(P);
        return jm_parse_list(P, JM_E_LIST, NULL, t->loc);
    case JM_T_LPAREN:
        jm_next(P);
        e = jm_parse_expr(P);
        jm_expect(P, JM_T_RPAREN, "to close '('");
        return e;
    case JM_T_IDENT:
        jm_next(P);
        if (jm_accept(P, JM_T_LPAREN)) {
            e = jm_new_expr(P, JM_E_CALL, t->loc);
            e->str = t->text;
            jm_parse_call_args(P, e);
            if (jm_accept(P, JM_T_AS)) {
                jm_token *s = jm_peek(P);
                if (s->kind == JM_T_IDENT || s->kind == JM_T_STRING || s->kind == JM_T_INT) {
                    jm_next(P);
                    e->scope = jm_new_expr(P, s->kind == JM_T_INT ? JM_E_INT : JM_E_STRING, s->loc);
                    e->scope->str = s->text;
                    e->scope->ival = s->ival;
                } else {
                    jm_expected(P, "a scope name after 'as' (identifier, integer or \"string\")");
                }
            }
            return e;
        }
        e = jm_new_expr(P, JM_E_NAME, t->loc);
        e->str = t->text;
        return e;
    default:
        jm_expected(P, "an expression");
        return jm_error_expr(P);
    }
}

static jm_expr *jm_parse_postfix(jm_parser *P) {
    jm_expr *e = jm_parse_primary(P);
    int chain = 0;
    while (!P->failed && jm_at(P, JM_T_LBRACKET)) {
        if (P->depth + ++chain > JM_MAX_DEPTH) {
            jm_diag_error(P->d, jm_peek(P)->loc, "expression too long: more than %d subscripts in a row", JM_MAX_DEPTH);
            P->failed = 1;
            return e;
        }
        jm_loc loc = jm_next(P)->loc;
        e = jm_parse_list(P, JM_E_INDEX, e, loc);
    }
    return e;
}

static jm_expr *jm_parse_unary(jm_parser *P);

static jm_expr *jm_parse_power(jm_parser *P) {
    jm_expr *base = jm_parse_postfix(P);
    if (!P->failed && jm_at(P, JM_T_STARSTAR)) {
        jm_token *op = jm_next(P);
        jm_expr *e = jm_new_expr(P, JM_E_BINARY, op->loc);
        e->op = JM_T_STARSTAR;
        e->a = base;
        e->b = jm_parse_unary(P);          /* right-associative: a ** -b ** c */
        return e;
    }
    return base;
}

static jm_expr *jm_parse_unary(jm_parser *P) {
    if (jm_at(P, JM_T_MINUS) || jm_at(P, JM_T_NOT) || jm_at(P, JM_T_PLUS)) {
        jm_token *op = jm_next(P);
        if (++P->depth > JM_MAX_DEPTH) {
            jm_expected(P, "a shallower expression (nesting limit reached)");
            P->depth--;
            return jm_error_expr(P);
        }
        jm_expr *inner = jm_parse_unary(P);
        P->depth--;
        if (op->kind == JM_T_PLUS) return inner;
        jm_expr *e = jm_new_expr(P, JM_E_UNARY, op->loc);
        e->op = op->kind;
        e->a = inner;
        return e;
    }
    return jm_parse_power(P);
}

static int jm_binary_prec(jm_tok_kind k) {
    switch (k) {
    case JM_T_OR: return 1;
    case JM_T_AND: return 2;
    case JM_T_EQ: case JM_T_NE: return 3;
    case JM_T_LT: case JM_T_LE: case JM_T_GT: case JM_T_GE: return 4;
    case JM_T_PLUS: case JM_T_MINUS: return 5;
    case JM_T_STAR: case JM_T_SLASH: case JM_T_PERCENT: return 6;
    default: return 0;
    }
}

static jm_expr *jm_parse_binary(jm_parser *P, int min_prec) {
    jm_expr *lhs = jm_parse_unary(P);
    int chain = 0;
    for (;;) {
        if (P->failed) return lhs;
        int prec = jm_binary_prec(jm_peek(P)->kind);
        if (prec == 0 || prec < min_prec) return lhs;
        /* a chain a + b + c ... builds a tree as deep as it is long: bound it like nesting */
        if (P->depth + ++chain > JM_MAX_DEPTH) {
            jm_diag_error(P->d, jm_peek(P)->loc, "expression too long: more than %d operators in a row", JM_MAX_DEPTH);
            P->failed = 1;
            return lhs;
        }
        jm_token *op = jm_next(P);
        jm_expr *rhs = jm_parse_binary(P, prec + 1);   /* left-associative */
        jm_expr *e = jm_new_expr(P, JM_E_BINARY, op->loc);
        e->op = op->kind;
        e->a = lhs;
        e->b = rhs;
        lhs = e;
    }
}

static jm_expr *jm_parse_expr(jm_parser *P) {
    if (++P->depth > JM_MAX_DEPTH) {
        jm_expected(P, "a shallower expression (nesting limit reached)");
        P->depth--;
        return jm_error_expr(P);
    }
    jm_expr *e = jm_parse_binary(P, 1);
    /* "a if cond else b": the lowest precedence, right-associative. */
    if (!P->failed && jm_at(P, JM_T_IF)) {
        jm_token *t = jm_next(P);
        jm_expr *c = jm_new_expr(P, JM_E_IFELSE, t->loc);
        c->a = e;
        c->b = jm_parse_binary(P, 1);
        if (jm_expect(P, JM_T_ELSE, "in 'a if condition else b'")) c->c = jm_parse_expr(P);
        e = c;
    }
    P->depth--;
    return e;
}

static jm_type_expr *jm_parse_type(jm_parser *P) {
    jm_token *t = jm_peek(P);
    if (t->kind != JM_T_IDENT) {
        jm_expected(P, "a type such as f32[batch, 10]");
        return NULL;
    }
    jm_next(P);
    jm_type_expr *ty = jm_arena_alloc(P->a, sizeof *ty);
    ty->dtype = t->text;
    ty->loc = t->loc;
    if (jm_accept(P, JM_T_LBRACKET)) {
        int cap = 0;
        if (!jm_at(P, JM_T_RBRACKET)) {
            do {
                jm_expr *dim = jm_parse_expr(P);
                JM_VEC_PUSH(P->a, ty->dims, ty->ndims, cap, dim);
                if (P->failed) return ty;
            } while (jm_accept(P, JM_T_COMMA));
        }
        jm_expect(P, JM_T_RBRACKET, "to close the shape");
    }
    return ty;
}

static void jm_parse_body(jm_parser *P, jm_stmt ***body, int *n);

static void jm_end_stmt(jm_parser *P) {
    if (P->failed) return;
    if (jm_at(P, JM_T_NEWLINE) || jm_at(P, JM_T_SEMI)) { jm_next(P); return; }
    if (jm_at(P, JM_T_RBRACE) || jm_at(P, JM_T_EOF)) return;
    jm_expected(P, "end of line after the statement");
}

static jm_stmt *jm_parse_stmt(jm_parser *P) {
    jm_token *t = jm_peek(P);
    jm_stmt *s = jm_arena_alloc(P->a, sizeof *s);
    s->loc = t->loc;
    jm_tok_kind k = jm_kw(P);
    jm_tok_kind after = jm_peek2(P)->kind;
    if (jm_keyword_is_soft(k) && (after == JM_T_ASSIGN || after == JM_T_LBRACKET || after == JM_T_COMMA))
        k = JM_T_IDENT;                   /* `output = ...` assigns a variable named output */
    switch (k) {
    case JM_T_PARAM: case JM_T_BUFFER: {
        jm_next(P);
        s->kind = k == JM_T_PARAM ? JM_S_PARAM : JM_S_BUFFER;
        jm_token *n = jm_peek(P);
        if (!jm_expect(P, JM_T_IDENT, k == JM_T_PARAM ? "(the parameter's name) after 'param'" : "(the buffer's name) after 'buffer'"))
            return s;
        s->name = n->text; s->name_loc = n->loc;
        if (!jm_expect(P, JM_T_COLON, "and a type after the name")) return s;
        s->type = jm_parse_type(P);
        if (jm_accept(P, JM_T_ASSIGN)) s->value = jm_parse_expr(P);
        /* param NAME: TYPE = INIT in [LO, HI]: every minimize update is clamped */
        if (k == JM_T_PARAM && jm_accept(P, JM_T_IN)) {
            if (!jm_expect(P, JM_T_LBRACKET, "after 'in': a parameter's bounds are 'in [lo, hi]'")) return s;
            s->lo = jm_parse_expr(P);
            if (!jm_expect(P, JM_T_COMMA, "between the bounds in 'in [lo, hi]'")) return s;
            s->hi = jm_parse_expr(P);
            if (!jm_expect(P, JM_T_RBRACKET, "after the bounds in 'in [lo, hi]'")) return s;
        }
        break;
    }
    case JM_T_UPDATE: {
        jm_next(P);
        s->kind = JM_S_UPDATE;
        jm_token *n = jm_peek(P);
        if (!jm_expect(P, JM_T_IDENT, "(a buffer's name) after 'update'")) return s;
        s->name = n->text; s->name_loc = n->loc;
        if (!jm_expect(P, JM_T_ASSIGN, "in 'update buffer = value'")) return s;
        s->value = jm_parse_expr(P);
        break;
    }
    case JM_T_REPEAT: {
        jm_next(P);
        s->kind = JM_S_REPEAT;
        if (jm_at(P, JM_T_IDENT) && jm_peek2(P)->kind == JM_T_IN) {
            jm_token *n = jm_next(P);
            s->name = n->text; s->name_loc = n->loc;
            jm_next(P);
            s->lo = jm_parse_expr(P);
            if (!jm_expect(P, JM_T_DOTDOT, "in 'repeat i in lo..hi'")) return s;
            s->hi = jm_parse_expr(P);
        } else {
            s->hi = jm_parse_expr(P);
        }
        jm_parse_body(P, &s->body, &s->nbody);
        return s;
    }
    case JM_T_IF: {
        jm_next(P);
        s->kind = JM_S_IF;
        s->value = jm_parse_expr(P);
        jm_parse_body(P, &s->body, &s->nbody);
        if (P->failed) return s;
        /* "else" may follow on the same line as '}' only. */
        if (jm_accept(P, JM_T_ELSE)) {
            if (jm_at(P, JM_T_IF)) {
                s->orelse = jm_arena_alloc(P->a, sizeof *s->orelse);
                s->orelse[0] = jm_parse_stmt(P);
                s->norelse = 1;
            } else {
                jm_parse_body(P, &s->orelse, &s->norelse);
            }
        }
        return s;
    }
    case JM_T_RETURN: {
        jm_next(P);
        s->kind = JM_S_RETURN;
        int cap = 0;
        do {
            jm_expr *v = jm_parse_expr(P);
            JM_VEC_PUSH(P->a, s->values, s->nvalues, cap, v);
        } while (!P->failed && jm_accept(P, JM_T_COMMA));
        break;
    }
    case JM_T_OUTPUT: {
        jm_next(P);
        s->kind = JM_S_OUTPUT;
        jm_token *n = jm_peek(P);
        if (!jm_expect(P, JM_T_IDENT, "(the output's name) after 'output'")) return s;
        s->name = n->text; s->name_loc = n->loc;
        if (jm_accept(P, JM_T_ASSIGN)) s->value = jm_parse_expr(P);
        break;
    }
    case JM_T_MINIMIZE: {
        jm_next(P);
        s->kind = JM_S_MINIMIZE;
        s->value = jm_parse_expr(P);
        if (!jm_expect(P, JM_T_WITH, "and an optimizer: 'minimize loss with opt'")) return s;
        jm_token *n = jm_peek(P);
        if (!jm_expect(P, JM_T_IDENT, "(an optimizer's name) after 'with'")) return s;
        s->name = n->text; s->name_loc = n->loc;
        break;
    }
    case JM_T_IDENT: {
        jm_next(P);
        s->name = t->text; s->name_loc = t->loc;
        if (jm_at(P, JM_T_COMMA)) {
            /* a, b, c = expression-with-several-values */
            int cap = 0;
            JM_VEC_PUSH(P->a, s->names, s->nnames, cap, t->text);
            while (jm_accept(P, JM_T_COMMA)) {
                jm_token *n = jm_peek(P);
                if (!jm_expect(P, JM_T_IDENT, "(a name) after ',' in a multiple assignment")) return s;
                JM_VEC_PUSH(P->a, s->names, s->nnames, cap, n->text);
            }
            s->kind = JM_S_ASSIGN;
            if (!jm_expect(P, JM_T_ASSIGN, "after the names of a multiple assignment")) return s;
            s->value = jm_parse_expr(P);
            break;
        }
        if (jm_at(P, JM_T_LBRACKET)) {
            jm_token *lb = jm_next(P);
            jm_expr *ix = jm_parse_list(P, JM_E_INDEX, NULL, lb->loc);
            s->kind = JM_S_INDEX_ASSIGN;
            s->index = ix->items; s->nindex = ix->nitems;
        } else {
            s->kind = JM_S_ASSIGN;
        }
        if (!jm_expect(P, JM_T_ASSIGN, s->kind == JM_S_ASSIGN ? "after a name at the start of a statement"
                                                               : "after the subscript"))
            return s;
        s->value = jm_parse_expr(P);
        break;
    }
    default:
        jm_expected(P, "a statement (name = expression, param, buffer, update, repeat, if, return, output or minimize)");
        return s;
    }
    jm_end_stmt(P);
    return s;
}

/* '{' statements '}' */
static void jm_parse_body(jm_parser *P, jm_stmt ***body, int *n) {
    int cap = 0;
    if (P->failed) return;
    if (!jm_expect(P, JM_T_LBRACE, "to open the body")) return;
    if (++P->depth > JM_MAX_DEPTH) {
        jm_expected(P, "fewer nested bodies (nesting limit reached)");
        P->depth--;
        return;
    }
    for (;;) {
        jm_skip_newlines(P);
        if (jm_at(P, JM_T_RBRACE)) { jm_next(P); break; }
        if (jm_at(P, JM_T_EOF)) {
            jm_expected(P, "'}' to close the body");
            break;
        }
        P->failed = 0;
        jm_stmt *s = jm_parse_stmt(P);
        if (P->failed) {
            if (jm_diag_too_many(P->d)) break;
            jm_sync_stmt(P);
            P->failed = 0;
            continue;
        }
        JM_VEC_PUSH(P->a, *body, *n, cap, s);
    }
    P->depth--;
}

static void jm_parse_params(jm_parser *P, jm_decl *d, int typed_required) {
    int cap = 0;
    if (!jm_expect(P, JM_T_LPAREN, "to open the parameter list")) return;
    if (!jm_at(P, JM_T_RPAREN)) {
        do {
            jm_token *n = jm_peek(P);
            if (!jm_expect(P, JM_T_IDENT, "(a parameter name)")) return;
            jm_param p = { n->text, n->loc, NULL, NULL };
            for (int i = 0; i < d->nparams; i++)
                if (strcmp(d->params[i].name, p.name) == 0) {
                    jm_diag_error(P->d, n->loc, "duplicate parameter '%s'", p.name);
                    jm_diag_note(P->d, d->params[i].loc, "'%s' was first declared here", p.name);
                }
            if (jm_accept(P, JM_T_COLON)) p.type = jm_parse_type(P);
            else if (typed_required) {
                jm_expected(P, "':' and a type (inputs of models and programs are typed, e.g. x: f32[batch, 10])");
                return;
            }
            if (jm_accept(P, JM_T_ASSIGN)) p.def = jm_parse_expr(P);
            JM_VEC_PUSH(P->a, d->params, d->nparams, cap, p);
            if (P->failed) return;
        } while (jm_accept(P, JM_T_COMMA));
    }
    jm_expect(P, JM_T_RPAREN, "to close the parameter list");
}

static int jm_parse_decl(jm_parser *P, jm_decl *d) {
    jm_tok_kind tk = jm_kw(P);
    jm_token *t = jm_next(P);
    d->loc = t->loc;
    jm_token *n;
#define JM_NAME(what)                                                         \
    do {                                                                      \
        n = jm_peek(P);                                                       \
        if (!jm_expect(P, JM_T_IDENT, "(the " what "'s name)")) return 0;    \
        d->name = n->text; d->name_loc = n->loc;                              \
    } while (0)
    switch (tk) {
    case JM_T_IMPORT:
        d->kind = JM_D_IMPORT;
        n = jm_peek(P);
        if (!jm_expect(P, JM_T_STRING, "(the path of the graph file to import)")) return 0;
        d->path = n->text;
        break;
    case JM_T_CONFIG: {
        d->kind = JM_D_CONFIG;
        int cap = 0;
        if (!jm_expect(P, JM_T_LBRACE, "after 'config'")) return 0;
        for (;;) {
            jm_skip_newlines(P);
            if (jm_accept(P, JM_T_RBRACE)) break;
            n = jm_peek(P);
            if (!jm_expect(P, JM_T_IDENT, "(a config constant's name) or '}'")) return 0;
            if (!jm_expect(P, JM_T_ASSIGN, "after the constant's name")) return 0;
            jm_config_entry e = { n->text, n->loc, jm_parse_expr(P) };
            if (P->failed) return 0;
            JM_VEC_PUSH(P->a, d->entries, d->nentries, cap, e);
            if (!jm_at(P, JM_T_RBRACE) && !jm_accept(P, JM_T_NEWLINE) && !jm_accept(P, JM_T_SEMI)) {
                jm_expected(P, "end of line after the config entry");
                return 0;
            }
        }
        break;
    }
    case JM_T_BLOCK: case JM_T_MODEL: case JM_T_SAMPLER: case JM_T_PROGRAM:
        d->kind = tk == JM_T_BLOCK ? JM_D_BLOCK : tk == JM_T_MODEL ? JM_D_MODEL
                : tk == JM_T_SAMPLER ? JM_D_SAMPLER : JM_D_PROGRAM;
        JM_NAME("declaration");
        jm_parse_params(P, d, d->kind == JM_D_MODEL || d->kind == JM_D_PROGRAM);
        if (P->failed) return 0;
        if (jm_at(P, JM_T_ARROW)) {
            if (d->kind != JM_D_MODEL) {
                /* only models check their result type; elsewhere it would be silently ignored */
                jm_diag_error(P->d, jm_peek(P)->loc, "only models declare a return type ('-> type'); %s",
                              d->kind == JM_D_PROGRAM ? "programs name their results with 'output'"
                              : d->kind == JM_D_SAMPLER ? "a sampler returns its first parameter" : "use a model for a checked signature");
                P->failed = 1;
                return 0;
            }
            jm_next(P);
            d->ret = jm_parse_type(P);
            if (P->failed) return 0;
        }
        jm_parse_body(P, &d->body, &d->nbody);
        if (P->failed) return 0;
        break;
    case JM_T_ENERGY:
        d->kind = JM_D_ENERGY;
        JM_NAME("energy");
        jm_parse_params(P, d, 0);
        if (P->failed) return 0;
        if (!jm_expect(P, JM_T_ASSIGN, "and the energy's expression: energy E(x) = ...")) return 0;
        d->value = jm_parse_expr(P);
        break;
    case JM_T_STATE:
        d->kind = JM_D_STATE;
        JM_NAME("state variable");
        if (!jm_expect(P, JM_T_COLON, "and a type after the state's name")) return 0;
        d->type = jm_parse_type(P);
        if (jm_accept(P, JM_T_ASSIGN)) d->value = jm_parse_expr(P);
        break;
    case JM_T_DATA: case JM_T_OPTIMIZER:
        d->kind = tk == JM_T_DATA ? JM_D_DATA : JM_D_OPTIMIZER;
        if (tk == JM_T_DATA) JM_NAME("data set"); else JM_NAME("optimizer");
        if (!jm_expect(P, JM_T_ASSIGN, tk == JM_T_DATA ? "in 'data name = idx(...)'" : "in 'optimizer name = adam(...)'"))
            return 0;
        d->value = jm_parse_expr(P);
        if (!P->failed && d->value->kind != JM_E_CALL) {
            jm_diag_error(P->d, d->value->loc, "expected a call such as %s after '='",
                          tk == JM_T_DATA ? "idx(images=\"...\", labels=\"...\")" : "adam(lr=1e-4)");
            return 0;
        }
        break;
    case JM_T_EXTERN:
        d->kind = JM_D_EXTERN;
        n = jm_peek(P);
        if (!jm_expect(P, JM_T_STRING, "(the shared library) after 'extern'")) return 0;
        d->path = n->text;
        JM_NAME("external function");
        jm_parse_params(P, d, 1);
        if (P->failed) return 0;
        if (!jm_expect(P, JM_T_ARROW, "and the return type")) return 0;
        d->ret = jm_parse_type(P);
        break;
    default: {
        char found[160];
        jm_describe_found(t, found, sizeof found);
        jm_diag_error(P->d, t->loc, "expected a declaration (import, config, block, model, energy, sampler, "
                      "program, state, data, optimizer or extern), found %s", found);
        return 0;
    }
    }
#undef JM_NAME
    if (P->failed) return 0;
    if (!jm_at(P, JM_T_EOF) && !jm_accept(P, JM_T_NEWLINE) && !jm_accept(P, JM_T_SEMI)) {
        jm_expected(P, "end of line after the declaration");
        return 0;
    }
    return 1;
}

jm_ast_file *jm_parse(jm_diags *d, int file) {
    jm_parser P = { .d = d, .a = d->arena };
    P.t = jm_lex(d, file);
    jm_ast_file *f = jm_arena_alloc(d->arena, sizeof *f);
    f->file = file;
    int cap = 0;
    for (;;) {
        jm_skip_newlines(&P);
        if (jm_at(&P, JM_T_EOF) || jm_diag_too_many(d)) break;
        jm_decl decl;
        memset(&decl, 0, sizeof decl);
        P.failed = 0;
        P.depth = 0;
        if (jm_parse_decl(&P, &decl)) {
            JM_VEC_PUSH(d->arena, f->decls, f->ndecls, cap, decl);
        } else {
            /* Resynchronise at the next line that starts with a declaration keyword. */
            while (!jm_at(&P, JM_T_EOF)) {
                jm_tok_kind k = jm_next(&P)->kind;
                if (k != JM_T_NEWLINE) continue;
                k = jm_kw(&P);
                if (k == JM_T_IMPORT || k == JM_T_CONFIG || k == JM_T_BLOCK || k == JM_T_MODEL ||
                    k == JM_T_ENERGY || k == JM_T_SAMPLER || k == JM_T_PROGRAM || k == JM_T_STATE ||
                    k == JM_T_DATA || k == JM_T_OPTIMIZER || k == JM_T_EXTERN)
                    break;
            }
        }
    }
    return f;
}
