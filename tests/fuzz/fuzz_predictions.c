/* libFuzzer target: a prediction file (jsonl records) as `emote diff` reads it. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "predictions.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size == 0) return 0;
    FILE *in = fmemopen((void *)data, size, "r");
    if (!in) return 0;
    label_set labels = {0};
    prediction_file f;
    emote_error err;
    predictions_read(&f, in, "fuzz", &labels, &err);
    prediction_file_free(&f);
    label_set_free(&labels);
    fclose(in);
    return 0;
}
