/* tests/t_diagnostics.c — pins jemc's error messages.
 *
 * Every tests/neg/NAME.graph is a graph file that must be rejected; next to it,
 * NAME.err holds the exact stderr of `jemc check tests/neg/NAME.graph [ARGS]`.
 * When the first line of NAME.graph is "# args: ...", those (whitespace-separated)
 * arguments follow the file name. Files under tests/neg/inc/ are helpers (imports),
 * not cases. For each case this checks that jemc
 *   1. finishes by itself (no signal, no hang: a child is killed after 30 s),
 *   2. exits with status 1,
 *   3. writes exactly NAME.err to stderr.
 * Then the written cases (written_cases below): graph texts this test writes to
 * a temporary file itself, because they hold bytes a checked-in file should not
 * (a NUL byte), or because jemc must succeed with a warning. For each, jemc
 * check must exit with the given status and write exactly the given stderr.
 * Run from the repository root; $JEMC names the compiler (default build/jemc).
 * To re-pin a message after a deliberate change, regenerate NAME.err with jemc
 * and read it before committing. */
#include "tap.h"
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#define NEG_DIR "tests/neg"
#define MIN_CASES 40
#define MAX_ARGS 32
#define TIMEOUT_S 30

typedef struct { char *data; size_t len, cap; } buf_t;

static void buf_add(buf_t *b, const char *p, size_t n) {
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n + 1) cap *= 2;
        char *d = realloc(b->data, cap);
        if (!d) { perror("realloc"); exit(2); }
        b->data = d;
        b->cap = cap;
    }
    memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = 0;
}

static int read_file(const char *path, buf_t *out) {
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    char tmp[4096];
    size_t n;
    buf_add(out, "", 0);
    while ((n = fread(tmp, 1, sizeof tmp, f)) > 0) buf_add(out, tmp, n);
    int err = ferror(f);
    fclose(f);
    return err ? -1 : 0;
}

static int cmp_names(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Prints a (possibly long) text as TAP diagnostics, one line at a time. */
static void diag_text(const char *label, const char *s, size_t len) {
    tap_diag("%s (%zu bytes):", label, len);
    size_t i = 0;
    while (i < len) {
        size_t j = i;
        while (j < len && s[j] != '\n') j++;
        int w = (int)(j - i);
        if (w > 1000) w = 1000;
        tap_diag("  |%.*s%s", w, s + i, (size_t)w < j - i ? "..." : "");
        i = j + 1;
    }
    if (len > 0 && s[len - 1] != '\n') tap_diag("  (no newline at the end)");
}

/* Where two texts first differ: line number and byte offset. */
static void diag_first_difference(const char *a, size_t la, const char *b, size_t lb) {
    size_t i = 0;
    int line = 1;
    while (i < la && i < lb && a[i] == b[i]) {
        if (a[i] == '\n') line++;
        i++;
    }
    tap_diag("first difference at byte %zu (line %d)", i, line);
}

/* Splits the "# args:" first line of a graph file into argv entries (strdup'ed). */
static int read_args(const char *path, char **args) {
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    char line[1024];
    int n = 0;
    if (fgets(line, sizeof line, f) && strncmp(line, "# args:", 7) == 0) {
        char *save = NULL;
        for (char *tok = strtok_r(line + 7, " \t\r\n", &save); tok && n < MAX_ARGS;
             tok = strtok_r(NULL, " \t\r\n", &save))
            args[n++] = strdup(tok);
    }
    fclose(f);
    return n;
}

/* Runs jemc with argv; stderr goes to *err, stdout to /dev/null. Returns the wait status, or -1. */
static int run_capture(const char *jemc, char **argv, buf_t *err) {
    int fds[2];
    if (pipe(fds) != 0) { perror("pipe"); return -1; }
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0) { perror("fork"); close(fds[0]); close(fds[1]); return -1; }
    if (pid == 0) {
        int devnull = open("/dev/null", O_RDWR);
        if (devnull >= 0) { dup2(devnull, 0); dup2(devnull, 1); close(devnull); }
        dup2(fds[1], 2);
        close(fds[0]);
        close(fds[1]);
        alarm(TIMEOUT_S);                /* survives exec: a hanging jemc dies of SIGALRM */
        execv(jemc, argv);
        char msg[512];
        int m = snprintf(msg, sizeof msg, "t_diagnostics: cannot run %s: %s\n", jemc, strerror(errno));
        if (m > 0 && write(2, msg, (size_t)m) < 0) { /* nothing more to do */ }
        _exit(127);
    }
    close(fds[1]);
    char tmp[4096];
    buf_add(err, "", 0);
    for (;;) {
        ssize_t r = read(fds[0], tmp, sizeof tmp);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        buf_add(err, tmp, (size_t)r);
    }
    close(fds[0]);
    int status;
    while (waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR) { perror("waitpid"); return -1; }
    }
    return status;
}

/* A graph text written to a file by the test; "@" in `err` stands for the
   file's path. len counts the text's bytes (it may hold NUL bytes). */
typedef struct {
    const char *name;
    const char *text;
    size_t len;
    int status;
    const char *err;
} written_case;

#define TEXT(s) s, sizeof s - 1

static const written_case written_cases[] = {
    { "nul_byte", TEXT("program p(x: f32[2]) {\n    output y = x\0 * 2\n}\n"), 1,
      "@:2:17: error: NUL byte (0x00) in the file: a graph file is plain ASCII or UTF-8 text; "
      "is this a binary file, or one saved as UTF-16?\n"
      "      output y = x  * 2\n"
      "                  ^\n"
      "1 error\n" },
    /* in a comment too, and the later ones are counted, not reported one by one */
    { "nul_bytes_in_comment", TEXT("# a\0b\0\nprogram p(x: f32[2]) {\n    output y = x\0\n}\n"), 1,
      "@:1:4: error: NUL byte (0x00) in the file (and 2 more): a graph file is plain ASCII or UTF-8 text; "
      "is this a binary file, or one saved as UTF-16?\n"
      "  # a b \n"
      "     ^\n"
      "1 error\n" },
    /* `//` after an operand, followed by an operand: a warning, and check still
       succeeds. n is a knob also compiled in, so the front end reads the file
       twice: the warning is still printed once. */
    { "floor_division_warns", TEXT("config { n = 4 }\n"
                                   "program p(x: f32[n]) {\n"
                                   "    output y = x * n // 2\n"
                                   "    output z = (x + 1)//2\n"
                                   "}\n"), 0,
      "@:3:22: warning: '//' starts a comment here and the rest of the line is ignored; jemc has no floor division: "
      "write 'n / 2', or 'int(n / 2)' for a compile-time whole number (truncated toward zero); "
      "'#' starts a comment without this warning\n"
      "      output y = x * n // 2\n"
      "                       ^\n"
      "@:4:23: warning: '//' starts a comment here and the rest of the line is ignored; jemc has no floor division: "
      "write 'a / 2', or 'int(a / 2)' for a compile-time whole number (truncated toward zero); "
      "'#' starts a comment without this warning\n"
      "      output z = (x + 1)//2\n"
      "                        ^\n" },
    /* `//` comments that read as words, or stand on a line of their own, are quiet */
    { "comments_stay_quiet", TEXT("// 2 on a line of its own\n"
                                  "config { n = 4 // classes seen so far\n"
                                  "  m = 2 //\n"
                                  "  k = 3 // see: below\n"
                                  "}\n"
                                  "program p(x: f32[n]) {  // n\n"
                                  "    output y = x * m  // two words\n"
                                  "}\n"), 0,
      "" },
};

/* Replaces every "@" of pattern by path. */
static void expand_path(buf_t *out, const char *pattern, const char *path) {
    buf_add(out, "", 0);
    for (const char *p = pattern; *p; p++) {
        if (*p == '@') buf_add(out, path, strlen(path));
        else buf_add(out, p, 1);
    }
}

static void run_written_cases(const char *jemc) {
    const char *tmp = getenv("TMPDIR");
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/jm_diag_XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(dir)) {
        ok(0, "a temporary directory can be made for the written cases");
        tap_diag("%s: %s", dir, strerror(errno));
        return;
    }
    for (size_t i = 0; i < sizeof written_cases / sizeof written_cases[0]; i++) {
        const written_case *c = &written_cases[i];
        char graph[1200];
        snprintf(graph, sizeof graph, "%s/%s.graph", dir, c->name);
        FILE *f = fopen(graph, "wb");
        int written = f && fwrite(c->text, 1, c->len, f) == c->len;
        if (f && fclose(f) != 0) written = 0;
        if (!ok(written, "%s: the graph can be written", c->name)) {
            tap_diag("%s: %s", graph, strerror(errno));
            continue;
        }
        char *argv[] = { (char *)jemc, "check", graph, NULL };
        buf_t got = { 0 }, want = { 0 };
        int status = run_capture(jemc, argv, &got);
        int finished = status != -1 && WIFEXITED(status);
        int code = finished ? WEXITSTATUS(status) : -1;
        if (!ok(code == c->status, "%s: jemc check exits with status %d", c->name, c->status))
            tap_diag("got %d%s", code, finished ? "" : " (no exit status: killed by a signal?)");
        expand_path(&want, c->err, graph);
        int same = got.len == want.len && memcmp(got.data, want.data, got.len) == 0;
        if (!ok(same, "%s: stderr is as expected", c->name)) {
            diag_first_difference(got.data, got.len, want.data, want.len);
            diag_text("got", got.data, got.len);
            diag_text("expected", want.data, want.len);
        }
        free(got.data);
        free(want.data);
        unlink(graph);
    }
    rmdir(dir);
}

int main(void) {
    const char *jemc = getenv("JEMC");
    if (!jemc || !*jemc) jemc = "build/jemc";
    if (access(jemc, X_OK) != 0) {
        ok(0, "the compiler %s can be run", jemc);
        tap_diag("%s: %s (run from the repository root, or set JEMC)", jemc, strerror(errno));
        return tap_done();
    }

    DIR *dir = opendir(NEG_DIR);
    if (!dir) {
        ok(0, "%s can be opened", NEG_DIR);
        tap_diag("%s: %s (run from the repository root)", NEG_DIR, strerror(errno));
        return tap_done();
    }
    char **names = NULL;
    int n = 0, cap = 0;
    struct dirent *de;
    while ((de = readdir(dir)) != NULL) {
        size_t len = strlen(de->d_name);
        if (len <= 6 || strcmp(de->d_name + len - 6, ".graph") != 0 || de->d_name[0] == '.') continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 64;
            char **nn = realloc(names, sizeof(char *) * (size_t)cap);
            if (!nn) { perror("realloc"); return 2; }
            names = nn;
        }
        names[n++] = strndup(de->d_name, len - 6);
    }
    closedir(dir);
    if (n > 0) qsort(names, (size_t)n, sizeof(char *), cmp_names);

    if (!ok(n >= MIN_CASES, "found %d negative cases in %s (at least %d)", n, NEG_DIR, MIN_CASES))
        tap_diag("the diagnostics suite has lost cases: expected at least %d NAME.graph files", MIN_CASES);

    for (int i = 0; i < n; i++) {
        const char *name = names[i];
        char graph[1024], errpath[1024];
        snprintf(graph, sizeof graph, "%s/%s.graph", NEG_DIR, name);
        snprintf(errpath, sizeof errpath, "%s/%s.err", NEG_DIR, name);

        char *args[MAX_ARGS];
        int nargs = read_args(graph, args);
        char *argv[MAX_ARGS + 4];
        int k = 0;
        argv[k++] = (char *)jemc;
        argv[k++] = "check";
        argv[k++] = graph;
        for (int a = 0; a < nargs; a++) argv[k++] = args[a];
        argv[k] = NULL;

        buf_t got = { 0 }, want = { 0 };
        int status = run_capture(jemc, argv, &got);
        int have_want = read_file(errpath, &want) == 0;
        int want_errno = errno;

        int finished = status != -1 && WIFEXITED(status);
        if (!ok(finished, "%s: jemc finishes without a signal", name)) {
            if (status != -1 && WIFSIGNALED(status))
                tap_diag("killed by signal %d%s", WTERMSIG(status),
                         WTERMSIG(status) == SIGALRM ? " (timed out)" : "");
            else
                tap_diag("could not run %s", jemc);
        }
        int code = finished ? WEXITSTATUS(status) : -1;
        if (!ok(code == 1, "%s: jemc check exits with status 1", name)) {
            if (finished) tap_diag("got exit status %d, expected 1", code);
            else tap_diag("no exit status (see above)");
        }

        int same = have_want && got.len == want.len && memcmp(got.data, want.data, got.len) == 0;
        if (!ok(same, "%s: stderr matches %s", name, errpath)) {
            if (!have_want) {
                tap_diag("cannot read %s: %s", errpath, strerror(want_errno));
            } else {
                diag_first_difference(got.data, got.len, want.data, want.len);
            }
            diag_text("got", got.data ? got.data : "", got.len);
            if (have_want) diag_text("expected", want.data, want.len);
        }

        free(got.data);
        free(want.data);
        for (int a = 0; a < nargs; a++) free(args[a]);
        free(names[i]);
    }
    free(names);
    run_written_cases(jemc);
    return tap_done();
}
