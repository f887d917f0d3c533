/* Small shared helpers: error values, overflow-checked sizes, checked file I/O. */
#ifndef EMOTE_UTIL_H
#define EMOTE_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "emote.h"

/* Fills err (if non-NULL) with a printf-style message and returns status. */
emote_status emote_fail(emote_error *err, emote_status status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* *out = a * b (or a * b * c); false on overflow. */
bool size_mul(size_t a, size_t b, size_t *out);
bool size_mul3(size_t a, size_t b, size_t c, size_t *out);

/* malloc/calloc of count * size bytes with the product overflow-checked; NULL on failure. */
void *alloc_array(size_t count, size_t size);
void *calloc_array(size_t count, size_t size);

/* Reads a whole file (at most max_bytes) into a malloc'd buffer. The message names the
 * path and the reason (missing, a directory, unreadable, empty, too large). */
emote_status read_file_all(const char *path, size_t max_bytes, unsigned char **data, size_t *size,
                           emote_error *err);

/* Reads all of a stream (at most max_bytes); `name` is used in messages. */
emote_status read_stream_all(FILE *stream, const char *name, size_t max_bytes, unsigned char **data,
                             size_t *size, emote_error *err);

/* strdup that returns NULL on allocation failure (kept here for -std=c11). */
char *str_dup(const char *s);

#endif
