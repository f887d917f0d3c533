/* slow_open.so: an LD_PRELOAD shim that makes opening a file slow, as on a network file
 * system, for tools/bench_pipeline.py.
 *
 *   SLOW_OPEN_PREFIX=/data/val/ SLOW_OPEN_MS=5 LD_PRELOAD=build/bench/slow_open.so emote ...
 *
 * open, open64, openat, openat64, fopen and fopen64 sleep SLOW_OPEN_MS milliseconds (default
 * 5) before opening a path that starts with SLOW_OPEN_PREFIX (the path as the caller passes
 * it: a path relative to an openat dirfd is not resolved), then call the real function.
 * Without SLOW_OPEN_PREFIX nothing sleeps. glibc's own internal opens (opendir, fdopen) are
 * not seen. Built with: cc -shared -fPIC -o slow_open.so tools/slow_open.c -ldl
 */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void delay_if_slow(const char *path) {
    const char *prefix = getenv("SLOW_OPEN_PREFIX");
    if (!prefix || !*prefix || !path || strncmp(path, prefix, strlen(prefix)) != 0) return;
    const char *ms_text = getenv("SLOW_OPEN_MS");
    long ms = ms_text && *ms_text ? strtol(ms_text, NULL, 10) : 5;
    if (ms <= 0) return;
    struct timespec left = {ms / 1000, (ms % 1000) * 1000000L};
    int saved = errno;
    while (nanosleep(&left, &left) != 0 && errno == EINTR) {
    }
    errno = saved;
}

/* The real function named `name`, looked up once. */
static void *real(void *_Atomic *slot, const char *name) {
    void *fn = *slot;
    if (!fn) *slot = fn = dlsym(RTLD_NEXT, name);
    return fn;
}

/* open's mode argument exists only with O_CREAT or O_TMPFILE. */
#define MODE_ARG(flags, mode)                         \
    do {                                              \
        if ((flags) & (O_CREAT | O_TMPFILE)) {        \
            va_list ap;                               \
            va_start(ap, flags);                      \
            mode = (mode_t)va_arg(ap, int);           \
            va_end(ap);                               \
        }                                             \
    } while (0)

#define SHIM_OPEN(name)                                                            \
    int name(const char *path, int flags, ...) {                                   \
        static void *_Atomic fn;                                                           \
        mode_t mode = 0;                                                           \
        MODE_ARG(flags, mode);                                                     \
        delay_if_slow(path);                                                       \
        return ((int (*)(const char *, int, mode_t))real(&fn, #name))(path, flags, mode); \
    }

#define SHIM_OPENAT(name)                                                                  \
    int name(int dirfd, const char *path, int flags, ...) {                                \
        static void *_Atomic fn;                                                                   \
        mode_t mode = 0;                                                                   \
        MODE_ARG(flags, mode);                                                             \
        delay_if_slow(path);                                                               \
        return ((int (*)(int, const char *, int, mode_t))real(&fn, #name))(dirfd, path, flags, mode); \
    }

#define SHIM_FOPEN(name)                                                             \
    FILE *name(const char *path, const char *how) {                                  \
        static void *_Atomic fn;                                                             \
        delay_if_slow(path);                                                         \
        return ((FILE * (*)(const char *, const char *)) real(&fn, #name))(path, how); \
    }

SHIM_OPEN(open)
SHIM_OPEN(open64)
SHIM_OPENAT(openat)
SHIM_OPENAT(openat64)
SHIM_FOPEN(fopen)
SHIM_FOPEN(fopen64)
