/* rt_args.h — command-line options of the executable's commands, declared as
 * one table per command: parsing, checking and `--help` come from the table. */
#ifndef JM_RT_ARGS_H
#define JM_RT_ARGS_H
#include <stdint.h>
#include <stdio.h>

typedef enum { JM_ARG_STR, JM_ARG_INT, JM_ARG_NUM, JM_ARG_FLAG, JM_ARG_LIST } jm_arg_kind;

typedef struct {
    const char *name;          /* "--lr" */
    jm_arg_kind kind;
    void *dst;                 /* const char **, int64_t *, double *, int *, or jm_arg_list * */
    const char *meta;          /* "N", "FILE" (shown in --help) */
    const char *help;
    double lo, hi;             /* INT/NUM: allowed range (lo == hi: any) */
} jm_arg;

typedef struct { const char *v[32]; int n; } jm_arg_list;   /* repeatable option */

/* Parses argv[first..argc) against the table; positional arguments go to
   pos[0..maxpos). Prints a message naming `who` and returns -1 on an unknown
   option, a missing or malformed value, or a value out of range; returns 1
   after printing help for --help; 0 otherwise. */
int jm_args_parse(const char *who, int argc, char **argv, int first, const jm_arg *t, int nt,
                  const char **pos, int maxpos, int *npos, const char *usage);
/* The same, also setting given[k] to 1 for each option t[k] on the command
   line and to 0 for the others (given: nt entries, or NULL). */
int jm_args_parse_given(const char *who, int argc, char **argv, int first, const jm_arg *t, int nt,
                        const char **pos, int maxpos, int *npos, const char *usage, int *given);
/* Sets option a from the text v as the command line would (a flag from "1"
   or "0"; a string keeps the pointer v). Prints "who: message" and returns -1
   when v is not a valid value. Not for lists. */
int jm_args_set(const char *who, const jm_arg *a, const char *v);
/* Option a's value as text jm_args_set takes back: an integer, a number (the
   shortest text that reads back exactly), a flag 1 or 0, a string ("" when
   unset). A list is "". */
void jm_args_format(const jm_arg *a, char *buf, size_t n);
void jm_args_help(FILE *f, const char *usage, const jm_arg *t, int nt);
#endif
