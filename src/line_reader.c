#include "line_reader.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>

void line_reader_init(line_reader *r, FILE *stream, int delimiter, size_t max_length) {
    memset(r, 0, sizeof *r);
    r->stream = stream;
    r->delimiter = delimiter;
    r->max_length = max_length;
}

void line_reader_free(line_reader *r) {
    free(r->line);
    r->line = NULL;
    r->capacity = r->length = 0;
}

bool line_reader_would_wait(const line_reader *r) {
#ifdef __GLIBC__ /* bytes stdio has read ahead (what gnulib's freadahead looks at) */
    if (r->stream->_IO_read_ptr < r->stream->_IO_read_end) return false;
#endif
    struct pollfd p = {.fd = fileno(r->stream), .events = POLLIN};
    return poll(&p, 1, 0) == 0;
}

/* Room for one more byte and the terminating NUL; false when out of memory. */
static int reserve(line_reader *r) {
    if (r->length + 2 <= r->capacity) return 1;
    size_t bigger = r->capacity ? r->capacity * 2 : 256;
    if (bigger > r->max_length + 2) bigger = r->max_length + 2;
    char *grown = realloc(r->line, bigger);
    if (!grown) return 0;
    r->line = grown;
    r->capacity = bigger;
    return 1;
}

line_status line_reader_next(line_reader *r) {
    r->length = 0;
    errno = 0;
    int c;
    while ((c = getc_unlocked(r->stream)) != EOF) {
        if (c == r->delimiter) break;
        if (r->length == r->max_length) {
            r->number++;
            return LINE_TOO_LONG;
        }
        if (!reserve(r)) return LINE_NO_MEMORY;
        r->line[r->length++] = (char)c;
    }
    if (c == EOF) {
        if (ferror(r->stream)) return LINE_READ_ERROR;
        if (r->length == 0) return LINE_END;
    }
    if (!r->line && !reserve(r)) return LINE_NO_MEMORY;
    r->terminated = c != EOF;
    r->line[r->length] = '\0';
    r->number++;
    return LINE_OK;
}
