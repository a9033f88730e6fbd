/* arena.c — see arena.h. */
#include "arena.h"
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct jm_arena_chunk {
    jm_arena_chunk *next;
    size_t used, cap;
    _Alignas(16) unsigned char data[];
};

void *jm_arena_alloc(jm_arena *a, size_t size) {
    size = (size + 15) & ~(size_t)15;
    jm_arena_chunk *c = a->head;
    if (!c || c->cap - c->used < size) {
        size_t cap = size > (1u << 16) ? size : (1u << 16);
        c = malloc(sizeof *c + cap);
        if (!c) { fprintf(stderr, "jemc: out of memory\n"); exit(3); }
        c->used = 0; c->cap = cap; c->next = a->head;
        a->head = c;
    }
    void *p = c->data + c->used;
    c->used += size;
    a->total += size;
    memset(p, 0, size);
    return p;
}

void *jm_arena_grow(jm_arena *a, void *old, size_t old_size, size_t new_size) {
    void *p = jm_arena_alloc(a, new_size);
    if (old && old_size) memcpy(p, old, old_size < new_size ? old_size : new_size);
    return p;
}

char *jm_arena_strndup(jm_arena *a, const char *s, size_t n) {
    char *p = jm_arena_alloc(a, n + 1);
    memcpy(p, s, n);
    p[n] = 0;
    return p;
}

char *jm_arena_strdup(jm_arena *a, const char *s) { return jm_arena_strndup(a, s, strlen(s)); }

char *jm_arena_printf(jm_arena *a, const char *fmt, ...) {
    va_list ap, ap2;
    va_start(ap, fmt);
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    char *p = jm_arena_alloc(a, (size_t)n + 1);
    vsnprintf(p, (size_t)n + 1, fmt, ap2);
    va_end(ap2);
    return p;
}

void jm_arena_free(jm_arena *a) {
    jm_arena_chunk *c = a->head;
    while (c) { jm_arena_chunk *n = c->next; free(c); c = n; }
    a->head = NULL;
    a->total = 0;
}
