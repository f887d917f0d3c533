/* Small shared helpers: error values, overflow-checked sizes, checked file I/O. */
#ifndef EMOTE_UTIL_H
#define EMOTE_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdarg.h>
#include <stdio.h>

#include <sys/stat.h>

#include "emote.h"

/* Fills err (if non-NULL) with a printf-style message and returns status. Messages are
 * "NAME: reason" (fmt starts with "%s"); when one does not fit, NAME is shortened in the
 * middle ("head...tail") so that the reason is kept whole. */
emote_status emote_fail(emote_error *err, emote_status status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* An image argument of the public API: not NULL, pixels present, 1..4 channels, at least
 * 1x1 and at most EMOTE_MAX_PIXELS. `who` names the function in the message. */
emote_status check_image_argument(const emote_image *image, const char *who, emote_error *err);

/* printf into buf[cap] with emote_fail's rule for long names. */
void format_message(char *buf, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void format_message_v(char *buf, size_t cap, const char *fmt, va_list ap);
/* name, shortened to at most 200 bytes (and cap - 1) as "head...tail" on UTF-8 boundaries. */
void shorten_name(const char *name, char *out, size_t cap);

/* *out = a * b (or a * b * c); false on overflow. */
bool size_mul(size_t a, size_t b, size_t *out);
bool size_mul3(size_t a, size_t b, size_t c, size_t *out);

/* malloc/calloc of count * size bytes with the product overflow-checked; NULL on failure. */
void *alloc_array(size_t count, size_t size);
void *calloc_array(size_t count, size_t size);
/* alloc_array starting on a cache line (free() frees it), for buffers that threads share out. */
#define CACHE_LINE 64
void *alloc_lines(size_t count, size_t size);
/* floats rounded up to whole cache lines: per-thread or per-array shares of a buffer that
 * starts on a line then share none (a line two threads write bounces between their cores). */
static inline size_t whole_lines(size_t floats) {
    const size_t line = CACHE_LINE / sizeof(float);
    return (floats + line - 1) / line * line;
}
/* Asks for transparent huge pages under the whole huge pages of [p, p + bytes) (advice: no
 * matter if refused): a few page faults instead of thousands for buffers of megabytes. */
#define HUGE_PAGE ((size_t)2 << 20)
void advise_huge_pages(void *p, size_t bytes);
/* realloc to count * size bytes, the product overflow-checked; NULL on failure (items kept). */
void *realloc_array(void *items, size_t count, size_t size);

/* Opens path for reading only if it is a regular file: never blocks (O_NONBLOCK while
 * opening), refuses directories, FIFOs, sockets and devices ("not a regular file").
 * Returns the descriptor and fills *st, or -1 and err. */
int open_regular_file(const char *path, struct stat *st, emote_error *err);
/* The same as a stdio stream ("rb"), or NULL and err. */
FILE *fopen_regular_file(const char *path, emote_error *err);

/* Reads a whole regular file (at most max_bytes, checked with fstat before reading and
 * never read past) into a malloc'd buffer. The message names the path and the reason
 * (missing, a directory, not a regular file, unreadable, empty, too large). */
emote_status read_file_all(const char *path, size_t max_bytes, unsigned char **data, size_t *size,
                           emote_error *err);

/* Reads all of a stream (at most max_bytes, never reading more than max_bytes + 1);
 * `name` is used in messages. A read error or failed allocation is an error, never the end. */
emote_status read_stream_all(FILE *stream, const char *name, size_t max_bytes, unsigned char **data,
                             size_t *size, emote_error *err);

#define STRINGIFY_(x) #x
#define STRINGIFY(x) STRINGIFY_(x)

/* items (count used of *capacity, each `size` bytes) with room for one more: the same
 * array or a bigger one; NULL when out of memory, items untouched. */
void *array_reserve_one(void *items, int count, int *capacity, size_t size);

/* strdup that returns NULL on allocation failure (kept here for -std=c11). */
char *str_dup(const char *s);

/* Whether none of v[0..n) is NaN or infinite. */
bool all_finite(const float *v, size_t n);

/* The last component of path (after its last '/'). */
const char *path_base_name(const char *path);
/* The folder part of path ("." for a bare name, "/" for "/name"); malloc'd, NULL when out of memory. */
char *path_folder(const char *path);

#endif
