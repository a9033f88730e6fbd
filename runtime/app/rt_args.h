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
void jm_args_help(FILE *f, const char *usage, const jm_arg *t, int nt);
#endif
