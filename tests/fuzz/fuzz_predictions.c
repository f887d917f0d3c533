/* libFuzzer target: a prediction file (jsonl records), read whole as `emote diff` reads it
 * and a record at a time as `emote eval --predictions` does; every record the reader
 * accepts must hold what predictions.h promises. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "predictions.h"

static void check_record(const prediction *r, const label_set *labels) {
    bool ok = r->path && r->face >= -1 && r->line >= 1;
    if (ok && !r->error) {
        ok = r->label >= 0 && r->label < labels->count && r->confidence >= 0 && r->confidence <= 1 + 1e-6;
        for (int i = 0; ok && i < r->num_probs; i++) ok = r->probs[i].label >= 0 && r->probs[i].label < labels->count;
    }
    if (!ok) __builtin_trap();
}

static void read_record_by_record(const uint8_t *data, size_t size) {
    FILE *in = fmemopen((void *)data, size, "r");
    if (!in) return;
    label_set labels = {0};
    prediction_reader reader;
    prediction_reader_start(&reader, in, "fuzz", &labels);
    emote_error err;
    prediction r;
    for (bool got; !prediction_reader_next(&reader, &r, &got, &err) && got;) {
        check_record(&r, &labels);
        prediction_free(&r);
    }
    prediction_reader_close(&reader);
    label_set_free(&labels);
    fclose(in);
}

static void read_whole(const uint8_t *data, size_t size) {
    FILE *in = fmemopen((void *)data, size, "r");
    if (!in) return;
    label_set labels = {0};
    prediction_file f;
    emote_error err;
    predictions_read(&f, in, "fuzz", &labels, &err);
    for (int i = 0; i < f.count; i++)
        if (f.records[i].first > i || strcmp(f.records[f.records[i].first].path, f.records[i].path)) __builtin_trap();
    prediction_file_free(&f);
    label_set_free(&labels);
    fclose(in);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size == 0) return 0;
    read_record_by_record(data, size);
    read_whole(data, size);
    return 0;
}
