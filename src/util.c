#include "util.h"

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

emote_status emote_fail(emote_error *err, emote_status status, const char *fmt, ...) {
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->message, sizeof err->message, fmt, ap);
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

void *calloc_array(size_t count, size_t size) {
    size_t bytes;
    if (!size_mul(count, size, &bytes)) return NULL;
    return calloc(bytes ? bytes : 1, 1);
}

char *str_dup(const char *s) {
    size_t n = strlen(s) + 1;
    char *copy = malloc(n);
    if (copy) memcpy(copy, s, n);
    return copy;
}

emote_status read_stream_all(FILE *stream, const char *name, size_t max_bytes, unsigned char **data,
                             size_t *size, emote_error *err) {
    size_t cap = 1 << 16, len = 0;
    unsigned char *buf = malloc(cap);
    if (!buf) return emote_fail(err, EMOTE_ERR_MEMORY, "%s: out of memory", name);
    for (;;) {
        if (len == cap) {
            if (cap > max_bytes) {
                free(buf);
                return emote_fail(err, EMOTE_ERR_LIMIT, "%s: larger than the limit of %zu bytes", name, max_bytes);
            }
            unsigned char *grown = realloc(buf, cap * 2);
            if (!grown) {
                free(buf);
                return emote_fail(err, EMOTE_ERR_MEMORY, "%s: out of memory", name);
            }
            buf = grown;
            cap *= 2;
        }
        size_t got = fread(buf + len, 1, cap - len, stream);
        len += got;
        if (got == 0) break;
    }
    if (ferror(stream)) {
        int e = errno;
        free(buf);
        return emote_fail(err, EMOTE_ERR_IO, "%s: read error: %s", name, strerror(e));
    }
    if (len > max_bytes) {
        free(buf);
        return emote_fail(err, EMOTE_ERR_LIMIT, "%s: larger than the limit of %zu bytes", name, max_bytes);
    }
    if (len == 0) {
        free(buf);
        return emote_fail(err, EMOTE_ERR_FORMAT, "%s: empty file", name);
    }
    *data = buf;
    *size = len;
    return EMOTE_OK;
}

emote_status read_file_all(const char *path, size_t max_bytes, unsigned char **data, size_t *size,
                           emote_error *err) {
    FILE *f = fopen(path, "rb");
    if (!f) return emote_fail(err, EMOTE_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st) == 0) {
        if (S_ISDIR(st.st_mode)) {
            fclose(f);
            return emote_fail(err, EMOTE_ERR_IO, "%s: is a directory", path);
        }
        if (S_ISREG(st.st_mode) && (uintmax_t)st.st_size > max_bytes) {
            fclose(f);
            return emote_fail(err, EMOTE_ERR_LIMIT, "%s: %jd bytes, larger than the limit of %zu bytes", path,
                              (intmax_t)st.st_size, max_bytes);
        }
    }
    emote_status s = read_stream_all(f, path, max_bytes, data, size, err);
    fclose(f);
    return s;
}
