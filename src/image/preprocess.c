/* Preprocessing: a decoded image to the model's input tensor.
 *
 * emote_preprocess, pipeline "emote/1", for a model input C x H x W:
 *   1. Centre crop to the model's aspect ratio H:W (square for 48x48). Only the longer
 *      side is cropped: an image too wide keeps its height and is cropped to width
 *      round(img_h * W / H) (too tall: height round(img_w * H / W)). The crop starts at
 *      (extra pixels) / 2 rounded down, so an odd extra pixel comes off the right/bottom.
 *   2. Channel conversion, in float on 0..255 values:
 *      C = 1: RGB(A) -> gray = 0.299 R + 0.587 G + 0.114 B (ITU-R BT.601 luma);
 *             gray and gray+alpha use the gray channel; alpha is ignored.
 *      C = 3: RGB(A) -> RGB, alpha dropped; gray (+alpha) -> R = G = B = gray.
 *   3. Resize, only when the crop is not already H x W: stb_image_resize2 on floats
 *      with STBIR_FILTER_DEFAULT (Catmull-Rom when enlarging, Mitchell when shrinking),
 *      STBIR_EDGE_CLAMP, linear values (see resize.c). When the crop
 *      is H x W there is no resampling: pixels pass through exactly.
 *   4. Clamp to 0..255 (undoes the filters' small overshoot at sharp edges), then
 *      normalise: out[c][y][x] = (v / 255 - mean[c]) / std[c], float, CHW layout.
 */
#include "util.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "image/image_internal.h"

/* ---- preprocessing ------------------------------------------------------- */

typedef struct {
    int x0, y0, width, height;
} crop_rect;

static emote_status check_spec(const emote_input_spec *spec, emote_error *err) {
    if (spec->channels != 1 && spec->channels != 3)
        return emote_fail(err, EMOTE_ERR_ARGUMENT,
                          "preprocess: model input has %d channels; only 1 (gray) or 3 (RGB) are supported",
                          spec->channels);
    if (spec->height < 1 || spec->width < 1 || (uint64_t)spec->height * (uint64_t)spec->width > EMOTE_MAX_PIXELS)
        return emote_fail(err, EMOTE_ERR_ARGUMENT, "preprocess: model input size %dx%d is invalid", spec->width,
                          spec->height);
    for (int c = 0; c < spec->channels; c++)
        if (!isfinite(spec->mean[c]) || !isfinite(spec->std[c]) || !(spec->std[c] > 0))
            return emote_fail(err, EMOTE_ERR_ARGUMENT,
                              "preprocess: channel %d has mean %g, std %g (need finite values and std > 0)", c,
                              (double)spec->mean[c], (double)spec->std[c]);
    return EMOTE_OK;
}

emote_status check_image_argument(const emote_image *image, const char *who, emote_error *err) {
    if (!image) return emote_fail(err, EMOTE_ERR_ARGUMENT, "%s: no image", who);
    if (!image->pixels || image->width < 1 || image->height < 1 || image->channels < 1 || image->channels > 4)
        return emote_fail(err, EMOTE_ERR_ARGUMENT, "%s: invalid image (%dx%d, %d channels%s; need 1..4 channels)", who,
                          image->width, image->height, image->channels, image->pixels ? "" : ", no pixels");
    if ((uint64_t)image->width * (uint64_t)image->height > EMOTE_MAX_PIXELS)
        return emote_fail(err, EMOTE_ERR_LIMIT, "%s: %dx%d pixels is larger than the limit of %u pixels", who,
                          image->width, image->height, (unsigned)EMOTE_MAX_PIXELS);
    return EMOTE_OK;
}

/* The largest centred rectangle of the image with aspect ratio out_width:out_height. */
static crop_rect centre_crop(int width, int height, int out_width, int out_height) {
    crop_rect r = {0, 0, width, height};
    uint64_t scaled_width = (uint64_t)width * (uint64_t)out_height;
    uint64_t scaled_height = (uint64_t)height * (uint64_t)out_width;
    if (scaled_width > scaled_height) {
        uint64_t w = (scaled_height + (uint64_t)out_height / 2) / (uint64_t)out_height;
        r.width = w ? (int)w : 1;
    } else if (scaled_height > scaled_width) {
        uint64_t h = (scaled_width + (uint64_t)out_width / 2) / (uint64_t)out_width;
        r.height = h ? (int)h : 1;
    }
    r.x0 = (width - r.width) / 2;
    r.y0 = (height - r.height) / 2;
    return r;
}

/* Writes the crop as interleaved floats (0..255) with out_channels (1 or 3) channels. */
static void crop_to_float(const emote_image *image, crop_rect r, int out_channels, float *dst) {
    const size_t in_channels = (size_t)image->channels;
    for (int y = 0; y < r.height; y++) {
        const size_t row_start = (size_t)(r.y0 + y) * (size_t)image->width + (size_t)r.x0;
        const unsigned char *p = image->pixels + row_start * in_channels;
        for (int x = 0; x < r.width; x++, p += in_channels) {
            if (in_channels < 3) {
                for (int c = 0; c < out_channels; c++) *dst++ = p[0];
            } else if (out_channels == 1) {
                *dst++ = 0.299f * p[0] + 0.587f * p[1] + 0.114f * p[2];
            } else {
                *dst++ = p[0];
                *dst++ = p[1];
                *dst++ = p[2];
            }
        }
    }
}

/* Interleaved HWC floats (0..255) -> normalised CHW. */
static void normalise_to_chw(const float *hwc, const emote_input_spec *spec, float *out) {
    const size_t channels = (size_t)spec->channels;
    const size_t plane = (size_t)spec->height * (size_t)spec->width;
    for (size_t c = 0; c < channels; c++) {
        const float mean = spec->mean[c], std = spec->std[c];
        for (size_t i = 0; i < plane; i++) {
            float v = hwc[i * channels + c];
            v = v < 0.0f ? 0.0f : v > 255.0f ? 255.0f : v;
            out[c * plane + i] = (v / 255.0f - mean) / std;
        }
    }
}

emote_status emote_preprocess(const emote_input_spec *spec, const emote_image *image, float *out,
                              emote_error *err) {
    if (!spec || !image || !out)
        return emote_fail(err, EMOTE_ERR_ARGUMENT, "preprocess: missing %s",
                          !spec ? "input spec" : !image ? "image" : "output buffer");
    emote_status status = check_spec(spec, err);
    if (status == EMOTE_OK) status = check_image_argument(image, "preprocess", err);
    if (status != EMOTE_OK) return status;

    const int channels = spec->channels;
    const crop_rect crop = centre_crop(image->width, image->height, spec->width, spec->height);
    const bool needs_resize = crop.width != spec->width || crop.height != spec->height;
    size_t crop_floats, out_floats;
    if (!size_mul3((size_t)crop.width, (size_t)crop.height, (size_t)channels, &crop_floats) ||
        !size_mul3((size_t)spec->width, (size_t)spec->height, (size_t)channels, &out_floats))
        return emote_fail(err, EMOTE_ERR_LIMIT, "preprocess: image size overflows");

    float *cropped = alloc_array(crop_floats, sizeof(float));
    float *resized = needs_resize ? alloc_array(out_floats, sizeof(float)) : NULL;
    if (!cropped || (needs_resize && !resized)) {
        status = emote_fail(err, EMOTE_ERR_MEMORY, "preprocess: out of memory for a %dx%d image", image->width,
                            image->height);
    } else {
        crop_to_float(image, crop, channels, cropped);
        if (needs_resize)
            status = resize_float_hwc(cropped, crop.width, crop.height, resized, spec->width, spec->height, channels, err);
        if (status == EMOTE_OK) normalise_to_chw(needs_resize ? resized : cropped, spec, out);
    }
    free(resized);
    free(cropped);
    return status;
}
