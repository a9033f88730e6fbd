/* lex.c — the tokenizer. See lex.h for the rules on newlines and comments. */
#include "lex.h"
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const struct { const char *word; jm_tok_kind kind; } jm_keyword_table[] = {
#define JM_KW_ROW(e, s) { s, JM_T_##e },
    JM_KEYWORDS(JM_KW_ROW)
#undef JM_KW_ROW
};

int jm_keyword_is_soft(jm_tok_kind k) {
    switch (k) {
    case JM_T_IMPORT: case JM_T_CONFIG: case JM_T_BLOCK: case JM_T_MODEL: case JM_T_ENERGY:
    case JM_T_SAMPLER: case JM_T_PROGRAM: case JM_T_STATE: case JM_T_PARAM: case JM_T_DATA:
    case JM_T_OPTIMIZER: case JM_T_EXTERN: case JM_T_OUTPUT: case JM_T_MINIMIZE: case JM_T_REPEAT:
    case JM_T_BUFFER: case JM_T_UPDATE:
        return 1;
    default:
        return 0;
    }
}

jm_tok_kind jm_keyword_lookup(const char *word) {
    for (size_t i = 0; i < sizeof jm_keyword_table / sizeof jm_keyword_table[0]; i++)
        if (strcmp(jm_keyword_table[i].word, word) == 0) return jm_keyword_table[i].kind;
    return JM_T_IDENT;
}

const char *jm_tok_describe(jm_tok_kind k) {
    switch (k) {
    case JM_T_EOF: return "end of file";
    case JM_T_NEWLINE: return "end of line";
    case JM_T_IDENT: return "identifier";
    case JM_T_INT: return "integer";
    case JM_T_FLOAT: return "number";
    case JM_T_STRING: return "string";
#define JM_KW_DESC(e, s) case JM_T_##e: return "'" s "'";
    JM_KEYWORDS(JM_KW_DESC)
#undef JM_KW_DESC
    case JM_T_LPAREN: return "'('";    case JM_T_RPAREN: return "')'";
    case JM_T_LBRACE: return "'{'";    case JM_T_RBRACE: return "'}'";
    case JM_T_LBRACKET: return "'['";  case JM_T_RBRACKET: return "']'";
    case JM_T_COMMA: return "','";     case JM_T_SEMI: return "';'";
    case JM_T_COLON: return "':'";     case JM_T_DOT: return "'.'";
    case JM_T_DOTDOT: return "'..'";   case JM_T_ARROW: return "'->'";
    case JM_T_ASSIGN: return "'='";    case JM_T_PLUS: return "'+'";
    case JM_T_MINUS: return "'-'";     case JM_T_STAR: return "'*'";
    case JM_T_STARSTAR: return "'**'"; case JM_T_SLASH: return "'/'";
    case JM_T_PERCENT: return "'%'";   case JM_T_EQ: return "'=='";
    case JM_T_NE: return "'!='";       case JM_T_LT: return "'<'";
    case JM_T_LE: return "'<='";       case JM_T_GT: return "'>'";
    case JM_T_GE: return "'>='";       case JM_T_AND: return "'&&'";
    case JM_T_OR: return "'||'";       case JM_T_NOT: return "'!'";
    case JM_T_ERROR: return "an invalid character";
    case JM_T_COUNT: break;
    }
    return "token";
}

typedef struct {
    jm_diags *d;
    int file;
    const char *s, *p, *end;
    int line;
    const char *line_start;
    int depth;                  /* nesting of ( and [ : newlines inside are ignored */
    jm_tokens out;
} jm_lexer;

static jm_loc jm_lex_loc(jm_lexer *L, const char *at) {
    return (jm_loc){ L->file, L->line, (int)(at - L->line_start) + 1 };
}

static void jm_lex_push(jm_lexer *L, jm_tok_kind k, jm_loc loc) {
    jm_token t = { k, loc, NULL, 0, 0 };
    JM_VEC_PUSH(L->d->arena, L->out.tok, L->out.n, L->out.cap, t);
}

static void jm_lex_newline(jm_lexer *L) {
    L->line++;
    L->line_start = L->p;
}

static void jm_lex_number(jm_lexer *L) {
    const char *start = L->p;
    jm_loc loc = jm_lex_loc(L, start);
    int is_float = 0;
    while (L->p < L->end && isdigit((unsigned char)*L->p)) L->p++;
    /* "1..3" is a range: a '.' followed by another '.' is not a decimal point. */
    if (L->p < L->end && *L->p == '.' && !(L->p + 1 < L->end && L->p[1] == '.')) {
        is_float = 1;
        L->p++;
        while (L->p < L->end && isdigit((unsigned char)*L->p)) L->p++;
    }
    if (L->p < L->end && (*L->p == 'e' || *L->p == 'E')) {
        is_float = 1;
        L->p++;
        if (L->p < L->end && (*L->p == '+' || *L->p == '-')) L->p++;
        if (L->p >= L->end || !isdigit((unsigned char)*L->p)) {
            while (L->p < L->end && (isalnum((unsigned char)*L->p) || *L->p == '.' || *L->p == '_')) L->p++;
            jm_diag_error(L->d, loc, "malformed number '%.*s': expected digits after the exponent",
                          (int)(L->p - start), start);
            jm_lex_push(L, JM_T_FLOAT, loc);
            return;
        }
        while (L->p < L->end && isdigit((unsigned char)*L->p)) L->p++;
    }
    if (L->p < L->end && (isalpha((unsigned char)*L->p) || *L->p == '_' ||
                          (*L->p == '.' && !(L->p + 1 < L->end && L->p[1] == '.')))) {
        while (L->p < L->end && (isalnum((unsigned char)*L->p) || *L->p == '.' || *L->p == '_')) L->p++;
        jm_diag_error(L->d, loc, "malformed number '%.*s'", (int)(L->p - start), start);
        jm_lex_push(L, is_float ? JM_T_FLOAT : JM_T_INT, loc);
        return;
    }
    char buf[128];
    size_t n = (size_t)(L->p - start);
    if (n >= sizeof buf) {
        jm_diag_error(L->d, loc, "number literal is too long");
        jm_lex_push(L, JM_T_INT, loc);
        return;
    }
    memcpy(buf, start, n);
    buf[n] = 0;
    jm_lex_push(L, is_float ? JM_T_FLOAT : JM_T_INT, loc);
    jm_token *t = &L->out.tok[L->out.n - 1];
    errno = 0;
    if (is_float) {
        t->fval = strtod(buf, NULL);
        if (errno == ERANGE && isinf(t->fval))
            jm_diag_error(L->d, loc, "number '%s' is out of range for a 64-bit float", buf);
    } else {
        t->ival = strtoll(buf, NULL, 10);
        if (errno == ERANGE)
            jm_diag_error(L->d, loc, "integer '%s' does not fit in 64 bits", buf);
    }
}

static void jm_lex_string(jm_lexer *L) {
    jm_loc loc = jm_lex_loc(L, L->p);
    L->p++;                                  /* opening quote */
    size_t cap = 64, n = 0;
    char *buf = jm_arena_alloc(L->d->arena, cap);
    for (;;) {
        if (L->p >= L->end || *L->p == '\n') {
            jm_diag_error(L->d, loc, "unterminated string: expected '\"' before the end of the line");
            break;
        }
        char c = *L->p++;
        if (c == '"') break;
        if (c == '\\') {
            if (L->p >= L->end) continue;
            char e = *L->p++;
            switch (e) {
            case 'n': c = '\n'; break;
            case 't': c = '\t'; break;
            case '\\': c = '\\'; break;
            case '"': c = '"'; break;
            default:
                jm_diag_error(L->d, jm_lex_loc(L, L->p - 2),
                              "unknown escape '\\%c' in string (known: \\n \\t \\\\ \\\")", e);
                c = e;
            }
        }
        if (n + 2 > cap) { buf = jm_arena_grow(L->d->arena, buf, cap, cap * 2); cap *= 2; }
        buf[n++] = c;
    }
    buf[n] = 0;
    jm_lex_push(L, JM_T_STRING, loc);
    L->out.tok[L->out.n - 1].text = buf;
}

/* A NUL byte: reported once, at the first one, and nothing of the file is
   tokenized (it is most likely not a text file, or one saved as UTF-16, and
   every token of it would be a follow-on error). Returns 1 when found. */
static int jm_lex_nul(jm_lexer *L) {
    const char *nul = memchr(L->s, 0, (size_t)(L->end - L->s));
    if (!nul) return 0;
    for (const char *q = L->s; q < nul; q++)
        if (*q == '\n') { L->line++; L->line_start = q + 1; }
    size_t more = 0;
    for (const char *q = nul + 1; q < L->end; q++) more += *q == 0;
    char also[64] = "";
    if (more) snprintf(also, sizeof also, " (and %zu more)", more);
    jm_diag_error(L->d, jm_lex_loc(L, nul),
                  "NUL byte (0x00) in the file%s: a graph file is plain ASCII or UTF-8 text; "
                  "is this a binary file, or one saved as UTF-16?", also);
    L->p = L->end;
    return 1;
}

static int jm_lex_word_char(char c) { return isalnum((unsigned char)c) || c == '_' || c == '.'; }

/* `//` starts a comment, as `#` does. Python writes floor division so, and
   `y = x // 2` would silently become `y = x`. The warning rule: the `//`
   follows an operand on the same line (an identifier, a number, `)` or `]`,
   so the line has code before it), and the text after it reads as one more
   operand: `(`, or a number or name followed by the end of the line, an
   operator, `)`, `]` or `,` (not by another word: `n = 10 // classes seen`
   stays a quiet comment, `n = h // stride` and `n = (h+1)//2` warn). A
   comment on a line of its own never warns. */
static void jm_lex_floordiv_warn(jm_lexer *L, const char *at) {
    if (L->out.n == 0) return;
    const jm_token *prev = &L->out.tok[L->out.n - 1];
    if (prev->loc.line != L->line) return;
    if (prev->kind != JM_T_IDENT && prev->kind != JM_T_INT && prev->kind != JM_T_FLOAT &&
        prev->kind != JM_T_RPAREN && prev->kind != JM_T_RBRACKET) return;
    const char *q = at + 2;
    while (q < L->end && (*q == ' ' || *q == '\t')) q++;
    const char *rhs = q;
    if (q < L->end && *q == '(') {
        rhs = NULL;
    } else if (q < L->end && (isalnum((unsigned char)*q) || *q == '_' || (*q == '.' && q + 1 < L->end && isdigit((unsigned char)q[1])))) {
        while (q < L->end && jm_lex_word_char(*q)) q++;
        const char *rhs_end = q;
        while (q < L->end && (*q == ' ' || *q == '\t' || *q == '\r')) q++;
        if (q < L->end && *q != '\n' && (*q == 0 || !strchr("+-*/%)],", *q))) return;
        rhs = jm_arena_strndup(L->d->arena, rhs, (size_t)(rhs_end - rhs));
    } else {
        return;
    }
    /* name the operands in the hint when they are a single name or number */
    const char *lhs = "a";
    if (prev->kind == JM_T_IDENT) lhs = prev->text;
    else if (prev->kind == JM_T_INT || prev->kind == JM_T_FLOAT) {
        const char *b = L->line_start + prev->loc.col - 1, *e = b;
        while (e < at && !(*e == ' ' || *e == '\t' || *e == '/')) e++;
        lhs = jm_arena_strndup(L->d->arena, b, (size_t)(e - b));
    }
    if (!rhs || strlen(rhs) > 32) rhs = "b";
    if (strlen(lhs) > 32) lhs = "a";
    jm_diag_warning(L->d, jm_lex_loc(L, at),
                    "'//' starts a comment here and the rest of the line is ignored; jemc has no floor division: "
                    "write '%s / %s', or 'int(%s / %s)' for a compile-time whole number (truncated toward zero); "
                    "'#' starts a comment without this warning", lhs, rhs, lhs, rhs);
}

jm_tokens jm_lex(jm_diags *d, int file) {
    jm_lexer L = { .d = d, .file = file, .s = d->src[file].text, .line = 1 };
    L.p = L.s;
    L.end = L.s + d->src[file].len;
    L.line_start = L.s;
    jm_lex_nul(&L);
    while (L.p < L.end) {
        char c = *L.p;
        const char *at = L.p;
        if (c == '\n') {
            if (L.depth == 0) {
                /* Collapse runs of blank lines into one NEWLINE token. */
                if (L.out.n > 0 && L.out.tok[L.out.n - 1].kind != JM_T_NEWLINE)
                    jm_lex_push(&L, JM_T_NEWLINE, jm_lex_loc(&L, at));
            }
            L.p++;
            jm_lex_newline(&L);
            continue;
        }
        if (c == ' ' || c == '\t' || c == '\r') { L.p++; continue; }
        if (c == '#' || (c == '/' && L.p + 1 < L.end && L.p[1] == '/')) {
            if (c == '/') jm_lex_floordiv_warn(&L, at);
            while (L.p < L.end && *L.p != '\n') L.p++;
            continue;
        }
        if (c == '/' && L.p + 1 < L.end && L.p[1] == '*') {
            jm_loc loc = jm_lex_loc(&L, at);
            L.p += 2;
            int closed = 0;
            while (L.p < L.end) {
                if (*L.p == '*' && L.p + 1 < L.end && L.p[1] == '/') { L.p += 2; closed = 1; break; }
                if (*L.p == '\n') { L.p++; jm_lex_newline(&L); continue; }
                L.p++;
            }
            if (!closed) jm_diag_error(d, loc, "unterminated comment: expected '*/' before the end of the file");
            continue;
        }
        if (isdigit((unsigned char)c) || (c == '.' && L.p + 1 < L.end && isdigit((unsigned char)L.p[1]))) {
            jm_lex_number(&L);
            continue;
        }
        if (isalpha((unsigned char)c) || c == '_') {
            while (L.p < L.end && (isalnum((unsigned char)*L.p) || *L.p == '_')) L.p++;
            size_t n = (size_t)(L.p - at);
            jm_tok_kind k = JM_T_IDENT;
            for (size_t i = 0; i < sizeof jm_keyword_table / sizeof jm_keyword_table[0]; i++)
                if (strlen(jm_keyword_table[i].word) == n && memcmp(jm_keyword_table[i].word, at, n) == 0)
                    k = jm_keyword_table[i].kind;
            /* Declaration and statement words are soft: they stay identifiers (so a
               program may be called `energy`); the parser recognises them by position. */
            if (jm_keyword_is_soft(k)) k = JM_T_IDENT;
            jm_lex_push(&L, k, jm_lex_loc(&L, at));
            L.out.tok[L.out.n - 1].text = jm_arena_strndup(d->arena, at, n);
            continue;
        }
        if (c == '"') { jm_lex_string(&L); continue; }

        jm_loc loc = jm_lex_loc(&L, at);
        char c2 = L.p + 1 < L.end ? L.p[1] : 0;
        jm_tok_kind k = JM_T_COUNT;
        int len = 1;
        switch (c) {
        case '(': k = JM_T_LPAREN; L.depth++; break;
        case ')': k = JM_T_RPAREN; if (L.depth > 0) L.depth--; break;
        case '[': k = JM_T_LBRACKET; L.depth++; break;
        case ']': k = JM_T_RBRACKET; if (L.depth > 0) L.depth--; break;
        case '{': k = JM_T_LBRACE; break;
        case '}':
            k = JM_T_RBRACE;
            /* A '}' closes any open ( or [ left unbalanced by a mistake, so that one
               missing ')' does not swallow the newlines of the rest of the file. */
            L.depth = 0;
            break;
        case ',': k = JM_T_COMMA; break;
        case ';': k = JM_T_SEMI; break;
        case ':': k = JM_T_COLON; break;
        case '.': if (c2 == '.') { k = JM_T_DOTDOT; len = 2; } else k = JM_T_DOT; break;
        case '-': if (c2 == '>') { k = JM_T_ARROW; len = 2; } else k = JM_T_MINUS; break;
        case '+': k = JM_T_PLUS; break;
        case '*': if (c2 == '*') { k = JM_T_STARSTAR; len = 2; } else k = JM_T_STAR; break;
        case '/': k = JM_T_SLASH; break;
        case '%': k = JM_T_PERCENT; break;
        case '=': if (c2 == '=') { k = JM_T_EQ; len = 2; } else k = JM_T_ASSIGN; break;
        case '!': if (c2 == '=') { k = JM_T_NE; len = 2; } else k = JM_T_NOT; break;
        case '<': if (c2 == '=') { k = JM_T_LE; len = 2; } else k = JM_T_LT; break;
        case '>': if (c2 == '=') { k = JM_T_GE; len = 2; } else k = JM_T_GT; break;
        case '&': if (c2 == '&') { k = JM_T_AND; len = 2; } break;
        case '|': if (c2 == '|') { k = JM_T_OR; len = 2; } break;
        default: break;
        }
        if (k == JM_T_COUNT) {
            unsigned char u = (unsigned char)c;
            if (u >= 0x20 && u < 0x7f) {
                jm_diag_error(d, loc, "unexpected character '%c'", c);
                L.p++;
            } else if (u >= 0xc0 && u < 0xf8) {
                /* one report per UTF-8 character, not per byte */
                L.p++;
                while (L.p < L.end && ((unsigned char)*L.p & 0xc0) == 0x80) L.p++;
                jm_diag_error(d, loc, "unexpected non-ASCII character '%.*s' (graph files are ASCII outside strings and comments)",
                              (int)(L.p - at), at);
            } else {
                jm_diag_error(d, loc, "unexpected byte 0x%02x (graph files are ASCII outside strings and comments)", u);
                L.p++;
            }
            jm_lex_push(&L, JM_T_ERROR, loc);
            if (jm_diag_too_many(d)) break;
            continue;
        }
        L.p += len;
        jm_lex_push(&L, k, loc);
    }
    if (L.out.n > 0 && L.out.tok[L.out.n - 1].kind != JM_T_NEWLINE)
        jm_lex_push(&L, JM_T_NEWLINE, jm_lex_loc(&L, L.p));
    jm_lex_push(&L, JM_T_EOF, jm_lex_loc(&L, L.p));
    return L.out;
}
