/* names.c — see names.h. */
#include "names.h"
#include <string.h>

/* Optimal-string-alignment distance: insertions, deletions, substitutions and
   swaps of neighbouring letters ("bacth" -> "batch") each cost 1. */
static int jm_edit_distance(const char *a, const char *b) {
    size_t la = strlen(a), lb = strlen(b);
    if (la > 64 || lb > 64) return 1000;
    int dist[65][65];
    for (size_t i = 0; i <= la; i++) dist[i][0] = (int)i;
    for (size_t j = 0; j <= lb; j++) dist[0][j] = (int)j;
    for (size_t i = 1; i <= la; i++)
        for (size_t j = 1; j <= lb; j++) {
            int best = dist[i - 1][j - 1] + (a[i - 1] != b[j - 1]);
            if (dist[i - 1][j] + 1 < best) best = dist[i - 1][j] + 1;
            if (dist[i][j - 1] + 1 < best) best = dist[i][j - 1] + 1;
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] && dist[i - 2][j - 2] + 1 < best)
                best = dist[i - 2][j - 2] + 1;
            dist[i][j] = best;
        }
    return dist[la][lb];
}

const char *jm_closest_name(const char *name, const char *const *cands, int n) {
    const char *best = NULL;
    int bestd = 1000;
    for (int i = 0; i < n; i++) {
        if (!cands[i] || strcmp(cands[i], name) == 0) continue;
        int dist = jm_edit_distance(name, cands[i]);
        if (dist < bestd) { bestd = dist; best = cands[i]; }
    }
    /* Suggest only plausible typos: at most a third of the name's length, at least 1. */
    int limit = (int)strlen(name) / 3;
    if (limit < 1) limit = 1;
    if (limit > 3) limit = 3;
    return bestd <= limit ? best : NULL;
}
