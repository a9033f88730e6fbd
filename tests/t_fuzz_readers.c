/* t_fuzz_readers.c — the file readers' fuzzing inputs, replayed in an ordinary
 * build: every crasher a reader harness found (kept in tests/fuzz/regressions/
 * safetensors, data and table) and every kept seed (tests/fuzz/corpus-<reader>)
 * goes through the same entry points as in the harnesses (tests/fuzz/fuzz_readers.h:
 * the reader, then what the runtime does with a good read) and must end in success
 * or one error message naming the file; an abort or a crash fails the test (and the
 * ASan run, `make test SAN=1`). */
#include "tap.h"
#include "fuzz/fuzz_readers.h"
#include <dirent.h>
#include <sys/stat.h>

static int by_name(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* The regular files of dir, sorted; 0 when there is no such directory. */
static int list_files(const char *dir, char ***out) {
    DIR *d = opendir(dir);
    int n = 0, cap = 0;
    *out = NULL;
    if (!d) return 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        char path[1024];
        struct stat sb;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        if (e->d_name[0] == '.' || stat(path, &sb) != 0 || !S_ISREG(sb.st_mode)) continue;
        if (n == cap) { cap = cap ? cap * 2 : 64; *out = realloc(*out, sizeof(char *) * (size_t)cap); }
        (*out)[n++] = strdup(path);
    }
    closedir(d);
    qsort(*out, (size_t)n, sizeof(char *), by_name);
    return n;
}

/* Replays every file of dir through fn; returns how many, *good how many read well. */
static int replay(const char *dir, int (*fn)(const uint8_t *, size_t), int *good) {
    char **files;
    int n = list_files(dir, &files);
    *good = 0;
    for (int i = 0; i < n; i++) {
        FILE *f = fopen(files[i], "rb");
        if (f) {
            fseek(f, 0, SEEK_END);
            long len = ftell(f);
            fseek(f, 0, SEEK_SET);
            uint8_t *buf = malloc((size_t)len + 1);
            if (fread(buf, 1, (size_t)len, f) == (size_t)len) *good += fn(buf, (size_t)len);
            free(buf);
            fclose(f);
        }
        free(files[i]);
    }
    free(files);
    return n;
}

int main(void) {
    static const struct { const char *name; int (*fn)(const uint8_t *, size_t); int min_regressions; } R[] = {
        { "safetensors", jm_fz_safetensors, 0 }, { "data", jm_fz_data, 0 }, { "table", jm_fz_table, 1 },
    };
    for (int k = 0; k < 3; k++) {
        char dir[256];
        int good;
        snprintf(dir, sizeof dir, "tests/fuzz/regressions/%s", R[k].name);
        int n = replay(dir, R[k].fn, &good);
        ok(n >= R[k].min_regressions, "%s: %d crashers of the fuzzer replay without a crash (%d read well)", R[k].name, n, good);
        snprintf(dir, sizeof dir, "tests/fuzz/corpus-%s", R[k].name);
        n = replay(dir, R[k].fn, &good);
        ok(n > 0 && good > 0, "%s: the %d seeds replay, %d of them read well", R[k].name, n, good);
    }
    return tap_done();
}
