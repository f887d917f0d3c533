/* libFuzzer target: a sort manifest (CSV or JSON lines) as `emote sort --undo` reads it. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "sort_manifest.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size == 0) return 0;
    FILE *in = fmemopen((void *)data, size, "r");
    if (!in) return 0;
    sort_manifest_reader r;
    sort_manifest_row row;
    emote_error err;
    if (!sort_manifest_open(&r, in, "fuzz", &err))
        while (sort_manifest_next(&r, &row, &err) == MANIFEST_ROW) {}
    sort_manifest_close(&r);
    fclose(in);
    return 0;
}
