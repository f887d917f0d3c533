/* libFuzzer target: the bounded record reader behind '-' / '-0' path lists and
 * prediction files. The first byte picks the delimiter and a small length limit. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "line_reader.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 2) return 0;
    int delimiter = data[0] & 1 ? '\0' : '\n';
    size_t max = (size_t)(data[0] >> 1) + 1;
    FILE *in = fmemopen((void *)(data + 1), size - 1, "r");
    if (!in) return 0;
    line_reader r;
    line_reader_init(&r, in, delimiter, max);
    size_t consumed = 0;
    for (line_status s; (s = line_reader_next(&r)) == LINE_OK;) {
        if (r.length > max || r.line[r.length] != '\0') abort();
        if (memchr(r.line, delimiter, r.length) && delimiter != '\0') abort();
        consumed += r.length + 1;
        if (consumed > size) abort(); /* records never invent bytes */
    }
    line_reader_free(&r);
    fclose(in);
    return 0;
}
