/* kernel_dedup.c — kernels whose generated code would be identical (the same
 * fused computation in several programs) are emitted once: see kernel_dedup.h. */
#include "kernel_dedup.h"
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct { char *s; size_t n, cap; } jm_sbuf;
static void jm_sb(jm_sbuf *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char tmp[512];
    int k = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (k < 0) return;
    if (b->n + (size_t)k + 1 > b->cap) {
        b->cap = (b->n + (size_t)k + 1) * 2;
        b->s = realloc(b->s, b->cap);
    }
    memcpy(b->s + b->n, tmp, (size_t)k + 1);
    b->n += (size_t)k;
}

/* A canonical text of everything the generated code depends on. */
static void jm_canon_node(const jm_plan *P, const jm_kspec *k, int node, int *seen, int *next, jm_sbuf *b) {
    jm_graph *gr = &P->m->graphs[k->graph];
    if (seen[node]) { jm_sb(b, "@%d ", seen[node]); return; }
    seen[node] = ++*next;
    jm_node *n = &gr->node[node];
    char tb[128];
    int p = jm_kspec_param(k, node);
    if (p >= 0 && node != k->root) { jm_sb(b, "(load %d %s)", p, jm_type_str(&n->type, tb, sizeof tb)); return; }
    jm_sb(b, "(%s %s k%d", jm_ops[n->op].name, jm_type_str(&n->type, tb, sizeof tb), n->attr.k);
    for (int i = 0; i < 24; i++) if (n->attr.i[i]) jm_sb(b, " i%d=%" PRId64, i, n->attr.i[i]);
    jm_sb(b, " f%a,%a", n->attr.f[0], n->attr.f[1]);
    for (int s = 0; s < n->nsrc; s++) jm_canon_node(P, k, n->src[s], seen, next, b);
    jm_sb(b, ")");
}

static char *jm_canon(const jm_plan *P, const jm_kspec *k) {
    jm_sbuf b = { 0 };
    int *seen = calloc((size_t)P->m->graphs[k->graph].nnode + 1, sizeof(int)), next = 0;
    jm_sb(&b, "%d %d %d %" PRId64 " %d ", k->kind, k->nparam, k->rng, k->items, k->split);
    jm_canon_node(P, k, k->root, seen, &next, &b);
    free(seen);
    return b.s;
}

int *jm_kernels_dedup(const jm_plan *P) {
    int n = P->nkernels;
    int *first = malloc(sizeof(int) * (size_t)(n + 1));
    char **canon = malloc(sizeof(char *) * (size_t)(n + 1));
    int cap = 1;
    while (cap < 2 * n + 2) cap *= 2;
    int *table = malloc(sizeof(int) * (size_t)cap);
    for (int i = 0; i < cap; i++) table[i] = -1;
    for (int i = 0; i < n; i++) {
        canon[i] = jm_canon(P, &P->kernels[i]);
        uint64_t h = 1469598103934665603ull;
        for (const char *c = canon[i]; *c; c++) { h ^= (unsigned char)*c; h *= 1099511628211ull; }
        first[i] = i;
        for (int p = (int)(h & (uint64_t)(cap - 1));; p = (p + 1) & (cap - 1)) {
            if (table[p] < 0) { table[p] = i; break; }
            if (strcmp(canon[table[p]], canon[i]) == 0) { first[i] = table[p]; break; }
        }
    }
    for (int i = 0; i < n; i++) free(canon[i]);
    free(canon);
    free(table);
    return first;
}

int jm_kernels_distinct(const jm_plan *P) {
    int *first = jm_kernels_dedup(P), n = 0;
    for (int i = 0; i < P->nkernels; i++) n += first[i] == i;
    free(first);
    return n;
}
