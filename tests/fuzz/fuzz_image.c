/* libFuzzer target for image decoding: any bytes through emote_image_decode (full size,
 * and scaled as the CLI asks for a 48x48 model), then preprocessing of what decodes.
 * Build and run: make fuzz && build/fuzz/fuzz_image -max_len=65536 tests/fuzz/corpus/image */
#include <stdint.h>
#include <stdlib.h>

#include "emote.h"

static void preprocess(const emote_image *image) {
    static const emote_input_spec gray48 = {1, 48, 48, {0.5f, 0, 0}, {0.25f, 1, 1}};
    static const emote_input_spec rgb32 = {3, 32, 24, {0.5f, 0.5f, 0.5f}, {0.25f, 0.25f, 0.25f}};
    static float out[3 * 48 * 48];
    emote_error err;
    emote_preprocess(&gray48, image, out, &err);
    emote_preprocess(&rgb32, image, out, &err);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    /* A 65,536-pixel cap keeps each run fast; the
     * size checks themselves are the same at any cap. */
    static const emote_decode_options full = {.max_pixels = 1u << 16};
    static const emote_decode_options scaled = {.min_width = 96, .min_height = 96, .max_pixels = 1u << 16};
    static const emote_decode_options as_stored = {.ignore_orientation = 1, .max_pixels = 1u << 16};
    const emote_decode_options *ways[] = {&full, &scaled, &as_stored};
    for (size_t i = 0; i < sizeof ways / sizeof ways[0]; i++) {
        emote_image image;
        emote_error err;
        if (emote_image_decode_with(data, size, "fuzz", ways[i], &image, &err) == EMOTE_OK) {
            if (i == 0) preprocess(&image);
            emote_image_free(&image);
        }
    }
    return 0;
}
