/* LD_PRELOAD shim that records what a process makes durable, for crash-state testing.
 *
 * Under CRASHLOG_ROOT it logs, to CRASHLOG_DIR/events.log, every fsync/fdatasync
 * (for a regular file also a copy of its contents at that moment, taken just before
 * the real sync), and every create, rename, unlink, mkdir and rmdir, each with a
 * CLOCK_MONOTONIC timestamp. chaos.crashstates replays the log to build the states a
 * power loss could leave: a file keeps the contents of its last completed sync, and a
 * directory entry exists only once its directory has been synced after the change.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static unsigned long counter = 0;
static __thread int inside = 0;

static const char *root(void) { return getenv("CRASHLOG_ROOT"); }
static const char *logdir(void) { return getenv("CRASHLOG_DIR"); }

static long long now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static int tracked(const char *path) {
    const char *r = root();
    return r && path && strncmp(path, r, strlen(r)) == 0;
}

static void fd_path(int fd, char *out, size_t n) {
    char link[64];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t len = readlink(link, out, n - 1);
    out[len < 0 ? 0 : len] = 0;
}

static void at_path(int dirfd, const char *name, char *out, size_t n) {
    if (name[0] == '/') {
        snprintf(out, n, "%s", name);
    } else if (dirfd == AT_FDCWD) {
        char cwd[PATH_MAX];
        if (!getcwd(cwd, sizeof cwd)) cwd[0] = 0;
        snprintf(out, n, "%s/%s", cwd, name);
    } else {
        char dir[PATH_MAX];
        fd_path(dirfd, dir, sizeof dir);
        snprintf(out, n, "%s/%s", dir, name);
    }
}

static void log_line(const char *kind, long long t, const char *a, const char *b) {
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/events.log", logdir());
    int fd = ((int (*)(const char *, int, ...))dlsym(RTLD_NEXT, "open"))(
        path, O_WRONLY | O_APPEND | O_CREAT, 0644);
    if (fd < 0) return;
    char line[3 * PATH_MAX];
    int len = snprintf(line, sizeof line, "%s\t%lld\t%s\t%s\n", kind, t, a, b ? b : "");
    ssize_t w = write(fd, line, len);
    (void)w;
    close(fd);
}

static int copy_contents(const char *path, char *name, size_t n) {
    int (*real_open)(const char *, int, ...) =
        (int (*)(const char *, int, ...))dlsym(RTLD_NEXT, "open");
    /* The synced descriptor may be write-only (O_APPEND logs): read the file anew. */
    int fd = real_open(path, O_RDONLY);
    if (fd < 0) return -1;
    snprintf(name, n, "%s/copy-%08lu", logdir(), ++counter);
    int out = real_open(name, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (out < 0) {
        close(fd);
        return -1;
    }
    char buf[1 << 16];
    off_t off = 0;
    ssize_t got;
    while ((got = pread(fd, buf, sizeof buf, off)) > 0) {
        ssize_t w = write(out, buf, got);
        (void)w;
        off += got;
    }
    close(out);
    close(fd);
    return 0;
}

static int do_sync(int fd, const char *which) {
    int (*real)(int) = (int (*)(int))dlsym(RTLD_NEXT, which);
    if (inside || !logdir()) return real(fd);
    char path[PATH_MAX];
    fd_path(fd, path, sizeof path);
    if (!tracked(path)) return real(fd);
    inside = 1;
    pthread_mutex_lock(&lock);
    struct stat st;
    char copy[PATH_MAX] = "";
    int is_dir = fstat(fd, &st) == 0 && S_ISDIR(st.st_mode);
    if (!is_dir) copy_contents(path, copy, sizeof copy);
    pthread_mutex_unlock(&lock);
    int rc = real(fd);
    int saved = errno;
    pthread_mutex_lock(&lock);
    if (rc == 0) log_line(is_dir ? "dirsync" : "sync", now_ns(), path, is_dir ? NULL : copy);
    pthread_mutex_unlock(&lock);
    inside = 0;
    errno = saved;
    return rc;
}

int fsync(int fd) { return do_sync(fd, "fsync"); }
int fdatasync(int fd) { return do_sync(fd, "fdatasync"); }

static void note(const char *kind, const char *a, const char *b) {
    if (inside || !logdir() || !tracked(a)) return;
    pthread_mutex_lock(&lock);
    log_line(kind, now_ns(), a, b);
    pthread_mutex_unlock(&lock);
}

static int opener(const char *sym, int dirfd, const char *name, int flags, mode_t mode) {
    char path[PATH_MAX];
    at_path(dirfd, name, path, sizeof path);
    int existed = (flags & O_CREAT) ? access(path, F_OK) == 0 : 1;
    int fd;
    if (dirfd == AT_FDCWD && (strcmp(sym, "open") == 0 || strcmp(sym, "open64") == 0))
        fd = ((int (*)(const char *, int, ...))dlsym(RTLD_NEXT, sym))(name, flags, mode);
    else
        fd = ((int (*)(int, const char *, int, ...))dlsym(RTLD_NEXT, sym))(dirfd, name, flags,
                                                                          mode);
    if (fd >= 0 && !existed) note("create", path, NULL);
    return fd;
}

#define MODE_ARG mode_t mode = 0; if (flags & (O_CREAT | O_TMPFILE)) { va_list ap; \
    va_start(ap, flags); mode = va_arg(ap, int); va_end(ap); }
int open(const char *p, int flags, ...) { MODE_ARG return opener("open", AT_FDCWD, p, flags, mode); }
int open64(const char *p, int flags, ...) { MODE_ARG return opener("open64", AT_FDCWD, p, flags, mode); }
int openat(int d, const char *p, int flags, ...) { MODE_ARG return opener("openat", d, p, flags, mode); }
int openat64(int d, const char *p, int flags, ...) { MODE_ARG return opener("openat64", d, p, flags, mode); }

int rename(const char *a, const char *b) {
    char pa[PATH_MAX], pb[PATH_MAX];
    at_path(AT_FDCWD, a, pa, sizeof pa);
    at_path(AT_FDCWD, b, pb, sizeof pb);
    int rc = ((int (*)(const char *, const char *))dlsym(RTLD_NEXT, "rename"))(a, b);
    if (rc == 0) note("rename", pa, pb);
    return rc;
}

int renameat(int da, const char *a, int db, const char *b) {
    char pa[PATH_MAX], pb[PATH_MAX];
    at_path(da, a, pa, sizeof pa);
    at_path(db, b, pb, sizeof pb);
    int rc = ((int (*)(int, const char *, int, const char *))dlsym(RTLD_NEXT, "renameat"))(
        da, a, db, b);
    if (rc == 0) note("rename", pa, pb);
    return rc;
}

int unlink(const char *a) {
    char pa[PATH_MAX];
    at_path(AT_FDCWD, a, pa, sizeof pa);
    int rc = ((int (*)(const char *))dlsym(RTLD_NEXT, "unlink"))(a);
    if (rc == 0) note("unlink", pa, NULL);
    return rc;
}

int unlinkat(int d, const char *a, int flags) {
    char pa[PATH_MAX];
    at_path(d, a, pa, sizeof pa);
    int rc = ((int (*)(int, const char *, int))dlsym(RTLD_NEXT, "unlinkat"))(d, a, flags);
    if (rc == 0) note((flags & AT_REMOVEDIR) ? "rmdir" : "unlink", pa, NULL);
    return rc;
}

int rmdir(const char *a) {
    char pa[PATH_MAX];
    at_path(AT_FDCWD, a, pa, sizeof pa);
    int rc = ((int (*)(const char *))dlsym(RTLD_NEXT, "rmdir"))(a);
    if (rc == 0) note("rmdir", pa, NULL);
    return rc;
}

int mkdir(const char *a, mode_t m) {
    char pa[PATH_MAX];
    at_path(AT_FDCWD, a, pa, sizeof pa);
    int rc = ((int (*)(const char *, mode_t))dlsym(RTLD_NEXT, "mkdir"))(a, m);
    if (rc == 0) note("mkdir", pa, NULL);
    return rc;
}

int mkdirat(int d, const char *a, mode_t m) {
    char pa[PATH_MAX];
    at_path(d, a, pa, sizeof pa);
    int rc = ((int (*)(int, const char *, mode_t))dlsym(RTLD_NEXT, "mkdirat"))(d, a, m);
    if (rc == 0) note("mkdir", pa, NULL);
    return rc;
}
