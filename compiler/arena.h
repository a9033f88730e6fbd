/* arena.h — bump allocation for one compilation; everything is freed at once.
 * The compiler allocates AST, IR and strings from one arena so that no error
 * path can leak and no pass needs to free individual objects. */
#ifndef JM_ARENA_H
#define JM_ARENA_H
#include <stddef.h>

typedef struct jm_arena_chunk jm_arena_chunk;
typedef struct { jm_arena_chunk *head; size_t total; } jm_arena;

void *jm_arena_alloc(jm_arena *a, size_t size);           /* zeroed, 16-byte aligned */
void *jm_arena_grow(jm_arena *a, void *old, size_t old_size, size_t new_size);
char *jm_arena_strdup(jm_arena *a, const char *s);
char *jm_arena_strndup(jm_arena *a, const char *s, size_t n);
char *jm_arena_printf(jm_arena *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void jm_arena_free(jm_arena *a);

/* A growable array in the arena: JM_VEC_PUSH(arena, ptr, count, cap, value). */
#define JM_VEC_PUSH(ar, ptr, n, cap, val) do {                                   \
        if ((n) == (cap)) {                                                       \
            size_t nc_ = (cap) ? (size_t)(cap) * 2 : 8;                           \
            (ptr) = jm_arena_grow((ar), (ptr), sizeof(*(ptr)) * (size_t)(cap),    \
                                  sizeof(*(ptr)) * nc_);                          \
            (cap) = nc_;                                                          \
        }                                                                         \
        (ptr)[(n)++] = (val);                                                     \
    } while (0)
#endif
