/* io_shim.c — an LD_PRELOAD library that records a process's file-writing calls
 * (tests/t_guard.c checks the checkpoint write protocol with it: a temporary file
 * in the same directory, written, flushed, fsync'ed, renamed over the final name,
 * then the directory fsync'ed).
 *
 *   JM_IOSHIM_LOG=FILE   append one line per call to FILE (nothing is logged without it)
 *   JM_IOSHIM_KEEP=1     before each successful rename, hard-link the file being renamed
 *                        as NEW.kept.N (N = 1, 2, ...), so that a test can read every
 *                        version ever renamed into place, not only the last one
 *
 * Lines are tab-separated; PATH is the canonical path of the descriptor
 * (/proc/self/fd) where there is one, else the path as the caller gave it:
 *
 *   open    FD  FLAGS(hex)  PATH          open, open64, openat, openat64, creat
 *   fopen   FD  MODE        PATH          fopen, fopen64
 *   write   FD  BYTES       PATH          write, pwrite, pwrite64 (reach the kernel)
 *   fwrite  FD  BYTES       PATH          fwrite (may sit in stdio's buffer)
 *   fflush  FD  RC          PATH
 *   fsync   FD  RC          PATH  KIND    fsync, fdatasync (as "fdatasync"); KIND dir|file
 *   fclose  FD  RC          PATH
 *   close   FD  RC          PATH          (descriptors of regular files and directories)
 *   rename  RC  OLD         NEW           rename, renameat, renameat2 (relative names
 *                                         are joined to the cwd or the directory fd)
 *
 * The glibc stdio functions call the kernel through internal entry points, so
 * fwrite/fflush/fclose are recorded themselves. Each line is one write(2) on an
 * O_APPEND descriptor, so threads do not interleave within a line. Never
 * instrumented with the sanitizers; under ASan the test preloads the ASan
 * runtime first (it must come first in the library list). */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <unistd.h>

#define EXPORT __attribute__((visibility("default")))

static int shim_fd = -2;              /* -2: not yet opened; -1: no log */
static __thread int shim_busy;        /* inside the shim: do not record */
static int shim_kept;

static void *shim_real(const char *name) {
    void *f = dlsym(RTLD_NEXT, name);
    if (!f) { static const char m[] = "io_shim: dlsym failed\n"; (void)!syscall(SYS_write, 2, m, sizeof m - 1); abort(); }
    return f;
}
#define REAL(ret, name, ...) \
    static ret (*real_##name)(__VA_ARGS__); \
    if (!real_##name) real_##name = (ret (*)(__VA_ARGS__))shim_real(#name)

static int shim_log_fd(void) {
    if (shim_fd == -2) {
        const char *p = getenv("JM_IOSHIM_LOG");
        int fd = p && *p ? (int)syscall(SYS_openat, AT_FDCWD, p, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644) : -1;
        /* the log's own descriptor stays out of the way of the program's */
        if (fd >= 0) {
            int hi = fcntl(fd, F_DUPFD_CLOEXEC, 900);
            if (hi >= 0) { syscall(SYS_close, fd); fd = hi; }
        }
        shim_fd = fd;
    }
    return shim_fd;
}

static void shim_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void shim_log(const char *fmt, ...) {
    int fd = shim_log_fd();
    if (fd < 0) return;
    char line[8192];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line - 1, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    if (n > (int)sizeof line - 2) n = (int)sizeof line - 2;
    line[n++] = '\n';
    (void)!syscall(SYS_write, fd, line, (size_t)n);
}

/* the canonical path of fd, or "?" */
static const char *shim_fd_path(int fd, char *buf, size_t n) {
    char link[64];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t k = fd >= 0 ? readlink(link, buf, n - 1) : -1;
    if (k < 0) { snprintf(buf, n, "?"); return buf; }
    buf[k] = 0;
    return buf;
}

/* fd names a directory, a regular file, or something else (sockets, pipes: not logged on close) */
static const char *shim_kind(int fd) {
    struct stat st;
    if (fstat(fd, &st) != 0) return "?";
    return S_ISDIR(st.st_mode) ? "dir" : S_ISREG(st.st_mode) ? "file" : "other";
}

/* PATH relative to dirfd made absolute (for rename's log line) */
static const char *shim_abs(int dirfd, const char *p, char *buf, size_t n) {
    if (!p || p[0] == '/') return p ? p : "?";
    char d[4096];
    if (dirfd == AT_FDCWD) { if (!getcwd(d, sizeof d)) snprintf(d, sizeof d, "?"); }
    else shim_fd_path(dirfd, d, sizeof d);
    snprintf(buf, n, "%s/%s", d, p);
    return buf;
}

/* 1 when this call is to be recorded (or its file kept): not from inside the shim */
static int shim_enter(void) {
    if (shim_busy) return 0;
    shim_busy = 1;
    return 1;
}
static void shim_leave(int entered, int err) {
    if (entered) shim_busy = 0;
    errno = err;
}

static void shim_log_open(int fd, int flags, const char *given) {
    char p[4096];
    shim_log("open\t%d\t%x\t%s", fd, (unsigned)flags, fd >= 0 ? shim_fd_path(fd, p, sizeof p) : given);
}

/* ------------------------------------------------------------------ open */

static mode_t shim_mode(int flags, va_list ap) {
    return (flags & O_CREAT) || (flags & O_TMPFILE) == O_TMPFILE ? (mode_t)va_arg(ap, int) : 0;
}

EXPORT int open(const char *path, int flags, ...) {
    REAL(int, open, const char *, int, ...);
    va_list ap;
    va_start(ap, flags);
    mode_t mode = shim_mode(flags, ap);
    va_end(ap);
    int fd = real_open(path, flags, mode), e = errno, in = shim_enter();
    if (in) shim_log_open(fd, flags, path);
    shim_leave(in, e);
    return fd;
}

EXPORT int open64(const char *path, int flags, ...) {
    REAL(int, open64, const char *, int, ...);
    va_list ap;
    va_start(ap, flags);
    mode_t mode = shim_mode(flags, ap);
    va_end(ap);
    int fd = real_open64(path, flags, mode), e = errno, in = shim_enter();
    if (in) shim_log_open(fd, flags, path);
    shim_leave(in, e);
    return fd;
}

EXPORT int openat(int dirfd, const char *path, int flags, ...) {
    REAL(int, openat, int, const char *, int, ...);
    va_list ap;
    va_start(ap, flags);
    mode_t mode = shim_mode(flags, ap);
    va_end(ap);
    int fd = real_openat(dirfd, path, flags, mode), e = errno, in = shim_enter();
    if (in) shim_log_open(fd, flags, path);
    shim_leave(in, e);
    return fd;
}

EXPORT int openat64(int dirfd, const char *path, int flags, ...) {
    REAL(int, openat64, int, const char *, int, ...);
    va_list ap;
    va_start(ap, flags);
    mode_t mode = shim_mode(flags, ap);
    va_end(ap);
    int fd = real_openat64(dirfd, path, flags, mode), e = errno, in = shim_enter();
    if (in) shim_log_open(fd, flags, path);
    shim_leave(in, e);
    return fd;
}

EXPORT int creat(const char *path, mode_t mode) {
    REAL(int, creat, const char *, mode_t);
    int fd = real_creat(path, mode), e = errno, in = shim_enter();
    if (in) shim_log_open(fd, O_WRONLY | O_CREAT | O_TRUNC, path);
    shim_leave(in, e);
    return fd;
}

static void shim_log_fopen(FILE *f, const char *mode, const char *given) {
    char p[4096];
    int fd = f ? fileno(f) : -1;
    shim_log("fopen\t%d\t%s\t%s", fd, mode, fd >= 0 ? shim_fd_path(fd, p, sizeof p) : given);
}

EXPORT FILE *fopen(const char *path, const char *mode) {
    REAL(FILE *, fopen, const char *, const char *);
    FILE *f = real_fopen(path, mode);
    int e = errno, in = shim_enter();
    if (in) shim_log_fopen(f, mode, path);
    shim_leave(in, e);
    return f;
}

EXPORT FILE *fopen64(const char *path, const char *mode) {
    REAL(FILE *, fopen64, const char *, const char *);
    FILE *f = real_fopen64(path, mode);
    int e = errno, in = shim_enter();
    if (in) shim_log_fopen(f, mode, path);
    shim_leave(in, e);
    return f;
}

/* ------------------------------------------------------------------ writes */

static void shim_log_write(const char *op, int fd, long long n) {
    char p[4096];
    shim_log("%s\t%d\t%lld\t%s", op, fd, n, shim_fd_path(fd, p, sizeof p));
}

EXPORT ssize_t write(int fd, const void *buf, size_t n) {
    REAL(ssize_t, write, int, const void *, size_t);
    ssize_t r = real_write(fd, buf, n);
    int e = errno, in = shim_enter();
    if (in) shim_log_write("write", fd, (long long)r);
    shim_leave(in, e);
    return r;
}

EXPORT ssize_t pwrite(int fd, const void *buf, size_t n, off_t off) {
    REAL(ssize_t, pwrite, int, const void *, size_t, off_t);
    ssize_t r = real_pwrite(fd, buf, n, off);
    int e = errno, in = shim_enter();
    if (in) shim_log_write("write", fd, (long long)r);
    shim_leave(in, e);
    return r;
}

EXPORT ssize_t pwrite64(int fd, const void *buf, size_t n, off_t off) {
    REAL(ssize_t, pwrite64, int, const void *, size_t, off_t);
    ssize_t r = real_pwrite64(fd, buf, n, off);
    int e = errno, in = shim_enter();
    if (in) shim_log_write("write", fd, (long long)r);
    shim_leave(in, e);
    return r;
}

EXPORT size_t fwrite(const void *buf, size_t size, size_t nmemb, FILE *f) {
    REAL(size_t, fwrite, const void *, size_t, size_t, FILE *);
    size_t r = real_fwrite(buf, size, nmemb, f);
    int e = errno, in = shim_enter();
    if (in) shim_log_write("fwrite", fileno(f), (long long)(r * size));
    shim_leave(in, e);
    return r;
}

EXPORT int fflush(FILE *f) {
    REAL(int, fflush, FILE *);
    int r = real_fflush(f), e = errno, in = shim_enter();
    if (in && f) {
        char p[4096];
        int fd = fileno(f);
        shim_log("fflush\t%d\t%d\t%s", fd, r, shim_fd_path(fd, p, sizeof p));
    }
    shim_leave(in, e);
    return r;
}

/* ------------------------------------------------------------------ syncs, closes */

static int shim_sync(const char *op, int (*real)(int), int fd) {
    int r = real(fd), e = errno, in = shim_enter();
    if (in) {
        char p[4096];
        shim_log("%s\t%d\t%d\t%s\t%s", op, fd, r, shim_fd_path(fd, p, sizeof p), shim_kind(fd));
    }
    shim_leave(in, e);
    return r;
}

EXPORT int fsync(int fd) {
    REAL(int, fsync, int);
    return shim_sync("fsync", real_fsync, fd);
}

EXPORT int fdatasync(int fd) {
    REAL(int, fdatasync, int);
    return shim_sync("fdatasync", real_fdatasync, fd);
}

EXPORT int fclose(FILE *f) {
    REAL(int, fclose, FILE *);
    char p[4096] = "?";
    int fd = f ? fileno(f) : -1, in = shim_enter();
    if (in) shim_fd_path(fd, p, sizeof p);
    int r = real_fclose(f), e = errno;
    if (in) shim_log("fclose\t%d\t%d\t%s", fd, r, p);
    shim_leave(in, e);
    return r;
}

EXPORT int close(int fd) {
    REAL(int, close, int);
    char p[4096] = "?";
    const char *kind = "other";
    int in = shim_enter();
    if (in) {
        kind = shim_kind(fd);
        shim_fd_path(fd, p, sizeof p);
    }
    int r = real_close(fd), e = errno;
    if (in && strcmp(kind, "other") != 0 && strcmp(kind, "?") != 0) shim_log("close\t%d\t%d\t%s", fd, r, p);
    shim_leave(in, e);
    return r;
}

/* ------------------------------------------------------------------ renames */

/* JM_IOSHIM_KEEP: NEW.kept.N, a hard link to the file about to become NEW (into
   name; empty when not kept) */
static void shim_keep(int olddirfd, const char *oldp, const char *newabs, char *name, size_t n) {
    const char *k = getenv("JM_IOSHIM_KEEP");
    name[0] = 0;
    if (!k || !*k || strcmp(k, "0") == 0) return;
    snprintf(name, n, "%s.kept.%d", newabs, __atomic_add_fetch(&shim_kept, 1, __ATOMIC_SEQ_CST));
    if (linkat(olddirfd, oldp, AT_FDCWD, name, 0) != 0) { shim_log("keep-failed\t%s\t%s", name, strerror(errno)); name[0] = 0; }
}

static int shim_rename(int olddirfd, const char *oldp, int newdirfd, const char *newp, unsigned flags, int use_at2) {
    char a[4200], b[4200], kept[4300] = "";
    int in = shim_enter();
    const char *oa = in ? shim_abs(olddirfd, oldp, a, sizeof a) : oldp, *nb = in ? shim_abs(newdirfd, newp, b, sizeof b) : newp;
    if (in) shim_keep(olddirfd, oldp, nb, kept, sizeof kept);
    int r;
    if (use_at2) {
        REAL(int, renameat2, int, const char *, int, const char *, unsigned);
        r = real_renameat2(olddirfd, oldp, newdirfd, newp, flags);
    } else if (olddirfd == AT_FDCWD && newdirfd == AT_FDCWD) {
        REAL(int, rename, const char *, const char *);
        r = real_rename(oldp, newp);
    } else {
        REAL(int, renameat, int, const char *, int, const char *);
        r = real_renameat(olddirfd, oldp, newdirfd, newp);
    }
    int e = errno;
    if (r != 0 && kept[0]) unlink(kept);   /* nothing was renamed into place */
    if (in) shim_log("rename\t%d\t%s\t%s", r, oa, nb);
    shim_leave(in, e);
    return r;
}

EXPORT int rename(const char *oldp, const char *newp) { return shim_rename(AT_FDCWD, oldp, AT_FDCWD, newp, 0, 0); }
EXPORT int renameat(int od, const char *oldp, int nd, const char *newp) { return shim_rename(od, oldp, nd, newp, 0, 0); }
EXPORT int renameat2(int od, const char *oldp, int nd, const char *newp, unsigned flags) { return shim_rename(od, oldp, nd, newp, flags, 1); }
