/* Bounded record reading from a stream: lines (or NUL-terminated records) of at most a
 * given length. A read error or a failed allocation is reported as such, never taken
 * for the end of the input. Shared by the path list on stdin and the prediction files. */
#ifndef EMOTE_LINE_READER_H
#define EMOTE_LINE_READER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

typedef enum {
    LINE_OK,        /* a record is in line[0..length), NUL-terminated, delimiter removed */
    LINE_END,       /* end of input, no record */
    LINE_TOO_LONG,  /* the record is longer than max_length (it was not read to its end) */
    LINE_READ_ERROR,/* the stream failed; errno says why */
    LINE_NO_MEMORY,
} line_status;

typedef struct {
    FILE *stream;
    int delimiter;      /* '\n' or '\0' */
    size_t max_length;  /* bytes, delimiter excluded */
    char *line;         /* owned */
    size_t capacity;
    size_t length;
    long number;        /* 1-based number of the record last read */
    int terminated;     /* the record last read ended with its delimiter (not cut by the end) */
} line_reader;

void line_reader_init(line_reader *r, FILE *stream, int delimiter, size_t max_length);
line_status line_reader_next(line_reader *r);
void line_reader_free(line_reader *r);
/* True when line_reader_next would now wait for its stream: nothing buffered and nothing
 * to read on its descriptor yet (a slow writer on a pipe or terminal; never a file). */
bool line_reader_would_wait(const line_reader *r);

#endif
