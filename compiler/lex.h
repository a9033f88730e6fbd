/* lex.h — tokens of the graph language.
 *
 * Newlines end statements, except inside ( ) and [ ] (so long argument lists
 * may wrap). ';' also ends a statement. Comments: '#' or '//' to the end of the
 * line, and '/' '*' ... '*' '/' blocks (which do not nest). A '//' that reads
 * like Python's floor division (`x // 2`) draws a warning (jm_lex_floordiv_warn).
 * A NUL byte anywhere is one error, at the first, and nothing is tokenized. */
#ifndef JM_LEX_H
#define JM_LEX_H
#include <stdint.h>
#include "diag.h"

#define JM_KEYWORDS(X) \
    X(IMPORT, "import") X(CONFIG, "config") X(BLOCK, "block") X(MODEL, "model")           \
    X(ENERGY, "energy") X(SAMPLER, "sampler") X(PROGRAM, "program") X(STATE, "state")     \
    X(PARAM, "param") X(DATA, "data") X(OPTIMIZER, "optimizer") X(EXTERN, "extern")       \
    X(REPEAT, "repeat") X(IN, "in") X(IF, "if") X(ELSE, "else") X(RETURN, "return")       \
    X(OUTPUT, "output") X(MINIMIZE, "minimize") X(WITH, "with") X(AS, "as")               \
    X(TRUE, "true") X(FALSE, "false") X(BUFFER, "buffer") X(UPDATE, "update")

typedef enum {
    JM_T_EOF, JM_T_NEWLINE, JM_T_IDENT, JM_T_INT, JM_T_FLOAT, JM_T_STRING,
#define JM_KW_ENUM(e, s) JM_T_##e,
    JM_KEYWORDS(JM_KW_ENUM)
#undef JM_KW_ENUM
    JM_T_LPAREN, JM_T_RPAREN, JM_T_LBRACE, JM_T_RBRACE, JM_T_LBRACKET, JM_T_RBRACKET,
    JM_T_COMMA, JM_T_SEMI, JM_T_COLON, JM_T_DOT, JM_T_DOTDOT, JM_T_ARROW,
    JM_T_ASSIGN, JM_T_PLUS, JM_T_MINUS, JM_T_STAR, JM_T_STARSTAR, JM_T_SLASH, JM_T_PERCENT,
    JM_T_EQ, JM_T_NE, JM_T_LT, JM_T_LE, JM_T_GT, JM_T_GE, JM_T_AND, JM_T_OR, JM_T_NOT,
    JM_T_ERROR,            /* a character the lexer already reported: the parser stays quiet about it */
    JM_T_COUNT
} jm_tok_kind;

typedef struct {
    jm_tok_kind kind;
    jm_loc loc;
    const char *text;      /* identifier / string contents (arena) */
    int64_t ival;
    double fval;
} jm_token;

typedef struct { jm_token *tok; int n, cap; } jm_tokens;

/* Tokenizes source `file` of d; lexical errors are reported to d. */
jm_tokens jm_lex(jm_diags *d, int file);
const char *jm_tok_describe(jm_tok_kind k);
int jm_keyword_is_soft(jm_tok_kind k);          /* declaration/statement words: identifiers elsewhere */
jm_tok_kind jm_keyword_lookup(const char *word); /* JM_T_IDENT when not a keyword */   /* "')'", "identifier", "end of file" */
#endif
