/* libFuzzer target: an -o FILE as `--resume` reads it (record_file_scan's reader on a
 * stream). The first byte picks the layout: format (tsv, csv, jsonl), header or not,
 * --faces (grouped records, 27 columns) or not, --top 2 or all labels. The labels are those
 * of the small test model, opened once (run from the repository root). */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/record_file.h"

static const emote_model *test_model(void) {
    static emote_model *model;
    if (!model) {
        emote_error err;
        model = emote_model_open("tests/fixtures/emotenet_small.safetensors", &err);
        if (!model) {
            fprintf(stderr, "fuzz_record_file: %s (run from the repository root)\n", err.message);
            abort();
        }
    }
    return model;
}

/* The header that classify writes for these choices (labels c0..c6). */
static void make_header(char *out, size_t size, char sep, bool faces, bool top) {
    int n = snprintf(out, size, "path");
    if (faces)
        n += snprintf(out + n, size - (size_t)n, "%cface%cbox_x%cbox_y%cbox_w%cbox_h%cface_score%cright_eye_x%cright_eye_y"
                      "%cleft_eye_x%cleft_eye_y%cnose_x%cnose_y%cright_mouth_x%cright_mouth_y%cleft_mouth_x%cleft_mouth_y",
                      sep, sep, sep, sep, sep, sep, sep, sep, sep, sep, sep, sep, sep, sep, sep, sep);
    n += snprintf(out + n, size - (size_t)n, "%clabel%cconfidence", sep, sep);
    if (top) n += snprintf(out + n, size - (size_t)n, "%ctop1_label%ctop1_prob%ctop2_label%ctop2_prob", sep, sep, sep, sep);
    else
        for (int k = 0; k < 7; k++) n += snprintf(out + n, size - (size_t)n, "%cc%d", sep, k);
    snprintf(out + n, size - (size_t)n, "%cerror\n", sep);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 2) return 0;
    const uint8_t choice = data[0];
    const output_format formats[3] = {FORMAT_TSV, FORMAT_CSV, FORMAT_JSONL};
    output_format format = formats[(choice & 3) % 3];
    bool header = format != FORMAT_JSONL && (choice & 4), faces = choice & 8, top = choice & 16;
    char header_line[1024];
    make_header(header_line, sizeof header_line, format == FORMAT_CSV ? ',' : '\t', faces, top);
    record_layout layout = {format, header ? header_line : NULL, 4 + (top ? 4 : 7) + (faces ? 16 : 0), test_model(),
                            faces, NULL};
    FILE *in = fmemopen((void *)(data + 1), size - 1, "r");
    if (!in) return 0;
    char error[EMOTE_ERROR_MAX];
    record_file *f = record_file_scan_stream(in, "fuzz", &layout, error);
    if (f) {
        size_t length;
        const char *last = record_file_last_prediction(f, &length);
        if (last) free(record_path(&layout, last, length));
        record_file_free(f);
    } else if (!memchr(error, ':', strlen(error))) {
        abort(); /* every refusal names the file and the reason */
    }
    fclose(in);
    return 0;
}
