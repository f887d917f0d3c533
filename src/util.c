#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* A name longer than this is shortened in messages ("head...tail"), so the reason fits. */
#define MESSAGE_NAME_MAX 200

void shorten_name(const char *name, char *out, size_t cap) {
    size_t len = strlen(name), keep = cap > MESSAGE_NAME_MAX + 1 ? MESSAGE_NAME_MAX : cap - 1;
    if (len <= keep) {
        memcpy(out, name, len + 1);
        return;
    }
    size_t head = (keep - 3) / 3, tail = keep - 3 - head;
    /* Cut on UTF-8 character boundaries: never keep half a multi-byte sequence. */
    while (head > 0 && ((unsigned char)name[head] & 0xC0) == 0x80) head--;
    const char *end = name + len - tail;
    while (*end && ((unsigned char)*end & 0xC0) == 0x80) end++;
    memcpy(out, name, head);
    memcpy(out + head, "...", 3);
    memcpy(out + head + 3, end, strlen(end) + 1);
}

void format_message_v(char *buf, size_t cap, const char *fmt, va_list ap) {
    va_list copy;
    va_copy(copy, ap);
    int need = vsnprintf(buf, cap, fmt, copy);
    va_end(copy);
    if (need < 0 || (size_t)need < cap || strncmp(fmt, "%s", 2) != 0) return;
    /* Too long, and the message starts with a name (a path): shorten the name, keep the rest. */
    const char *name = va_arg(ap, const char *);
    char short_name[MESSAGE_NAME_MAX + 1];
    shorten_name(name ? name : "(null)", short_name, sizeof short_name);
    size_t used = (size_t)snprintf(buf, cap, "%s", short_name);
    if (used < cap) vsnprintf(buf + used, cap - used, fmt + 2, ap);
}

void format_message(char *buf, size_t cap, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    format_message_v(buf, cap, fmt, ap);
    va_end(ap);
}

emote_status emote_fail(emote_error *err, emote_status status, const char *fmt, ...) {
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        format_message_v(err->message, sizeof err->message, fmt, ap);
        va_end(ap);
    }
    return status;
}

bool size_mul(size_t a, size_t b, size_t *out) {
    if (a != 0 && b > SIZE_MAX / a) return false;
    *out = a * b;
    return true;
}

bool size_mul3(size_t a, size_t b, size_t c, size_t *out) {
    size_t ab;
    return size_mul(a, b, &ab) && size_mul(ab, c, out);
}

void *alloc_array(size_t count, size_t size) {
    size_t bytes;
    if (!size_mul(count, size, &bytes)) return NULL;
    return malloc(bytes ? bytes : 1);
}

void *alloc_lines(size_t count, size_t size) {
    size_t bytes;
    void *p = NULL;
    if (!size_mul(count, size, &bytes) || posix_memalign(&p, CACHE_LINE, bytes ? bytes : 1)) return NULL;
    return p;
}

void *realloc_array(void *items, size_t count, size_t size) {
    size_t bytes;
    return size_mul(count, size, &bytes) && bytes > 0 ? realloc(items, bytes) : NULL;
}

void *calloc_array(size_t count, size_t size) {
    size_t bytes;
    if (!size_mul(count, size, &bytes)) return NULL;
    return calloc(bytes ? bytes : 1, 1);
}

void *array_reserve_one(void *items, int count, int *capacity, size_t size) {
    if (count < *capacity) return items;
    if (*capacity > INT_MAX / 2) return NULL;
    int bigger = *capacity ? *capacity * 2 : 16;
    size_t bytes;
    void *p = size_mul((size_t)bigger, size, &bytes) ? realloc(items, bytes) : NULL;
    if (p) *capacity = bigger;
    return p;
}

char *str_dup(const char *s) {
    size_t n = strlen(s) + 1;
    char *copy = malloc(n);
    if (copy) memcpy(copy, s, n);
    return copy;
}

bool all_finite(const float *v, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!isfinite(v[i])) return false;
    return true;
}

const char *path_base_name(const char *path) {
    const char *slash = strrchr(path, '/');
    return slash ? slash + 1 : path;
}

char *path_folder(const char *path) {
    const char *slash = strrchr(path, '/');
    if (!slash) return str_dup(".");
    size_t len = slash == path ? 1 : (size_t)(slash - path);
    char *dir = malloc(len + 1);
    if (!dir) return NULL;
    memcpy(dir, path, len);
    dir[len] = '\0';
    return dir;
}

int open_regular_file(const char *path, struct stat *st, emote_error *err) {
    /* O_NONBLOCK: opening a FIFO or a device must never wait; it is refused below. */
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
    if (fd < 0) {
        emote_fail(err, EMOTE_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
        return -1;
    }
    const char *problem = NULL;
    if (fstat(fd, st) != 0) problem = strerror(errno);
    else if (S_ISDIR(st->st_mode)) problem = "is a directory";
    else if (!S_ISREG(st->st_mode)) problem = "not a regular file";
    if (problem) {
        emote_fail(err, EMOTE_ERR_IO, "%s: %s", path, problem);
        close(fd);
        return -1;
    }
    int flags = fcntl(fd, F_GETFL);
    if (flags >= 0) fcntl(fd, F_SETFL, flags & ~O_NONBLOCK);
    return fd;
}

FILE *fopen_regular_file(const char *path, emote_error *err) {
    struct stat st;
    int fd = open_regular_file(path, &st, err);
    if (fd < 0) return NULL;
    FILE *f = fdopen(fd, "rb");
    if (!f) {
        emote_fail(err, EMOTE_ERR_MEMORY, "%s: cannot open: %s", path, strerror(errno));
        close(fd);
    }
    return f;
}

void advise_huge_pages(void *p, size_t bytes) {
    const uintptr_t first = ((uintptr_t)p + HUGE_PAGE - 1) / HUGE_PAGE * HUGE_PAGE,
                    end = ((uintptr_t)p + bytes) / HUGE_PAGE * HUGE_PAGE;
    if (end > first) madvise((void *)first, end - first, MADV_HUGEPAGE);
}

/* Reads stream to its end into a buffer of at most max_bytes + 1 bytes (one more than
 * allowed, to tell "exactly at the limit" from "over it"); starts at `hint` bytes. */
static emote_status read_bounded(FILE *stream, const char *name, size_t max_bytes, size_t hint, unsigned char **data,
                                 size_t *size, emote_error *err) {
    size_t limit = max_bytes < SIZE_MAX ? max_bytes + 1 : max_bytes;
    size_t cap = hint < 4096 ? 4096 : hint, len = 0;
    if (cap > limit) cap = limit;
    unsigned char *buf = malloc(cap);
    if (!buf) return emote_fail(err, EMOTE_ERR_MEMORY, "%s: out of memory", name);
    /* read into 4 KiB pages, the 11 MB model file took 2,700 page faults and a one-image
     * process with -m 16 ms instead of 12 */
    advise_huge_pages(buf, cap);
    emote_status s = EMOTE_OK;
    for (;;) {
        if (len == cap) {
            if (cap == limit) break;
            size_t bigger = cap > limit / 2 ? limit : cap * 2;
            unsigned char *grown = realloc(buf, bigger);
            if (!grown) {
                s = emote_fail(err, EMOTE_ERR_MEMORY, "%s: out of memory after %zu bytes", name, len);
                break;
            }
            buf = grown;
            cap = bigger;
        }
        size_t got = fread(buf + len, 1, cap - len, stream);
        len += got;
        if (got == 0) break;
    }
    if (!s && ferror(stream)) s = emote_fail(err, EMOTE_ERR_IO, "%s: read error: %s", name, strerror(errno ? errno : EIO));
    else if (!s && len > max_bytes)
        s = emote_fail(err, EMOTE_ERR_LIMIT, "%s: larger than the limit of %zu bytes", name, max_bytes);
    else if (!s && len == 0) s = emote_fail(err, EMOTE_ERR_FORMAT, "%s: empty file", name);
    if (s) {
        free(buf);
        return s;
    }
    *data = buf;
    *size = len;
    return EMOTE_OK;
}

emote_status read_stream_all(FILE *stream, const char *name, size_t max_bytes, unsigned char **data,
                             size_t *size, emote_error *err) {
    errno = 0;
    return read_bounded(stream, name, max_bytes, 1 << 16, data, size, err);
}

emote_status read_file_all(const char *path, size_t max_bytes, unsigned char **data, size_t *size,
                           emote_error *err) {
    struct stat st;
    int fd = open_regular_file(path, &st, err);
    if (fd < 0) return EMOTE_ERR_IO;
    if ((uintmax_t)st.st_size > max_bytes) {
        close(fd);
        return emote_fail(err, EMOTE_ERR_LIMIT, "%s: %jd bytes, larger than the limit of %zu bytes", path,
                          (intmax_t)st.st_size, max_bytes);
    }
    FILE *f = fdopen(fd, "rb");
    if (!f) {
        close(fd);
        return emote_fail(err, EMOTE_ERR_MEMORY, "%s: cannot open: %s", path, strerror(errno));
    }
    errno = 0;
    /* One byte more than fstat says, so that a file that has not grown is read in one buffer. */
    emote_status s = read_bounded(f, path, max_bytes, (size_t)st.st_size + 1, data, size, err);
    fclose(f);
    return s;
}
