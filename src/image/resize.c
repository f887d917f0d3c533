/* Resampling with the pinned stb_image_resize2: STBIR_FILTER_DEFAULT (Catmull-Rom when
 * enlarging, Mitchell when shrinking), edges clamped, values taken as linear (no sRGB
 * curve), channels resampled independently (alpha is not premultiplied). */
#define STB_IMAGE_RESIZE_IMPLEMENTATION
#define STB_IMAGE_RESIZE_STATIC
/* stb is compiled as it is; only the decoders we use are called. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wunused-but-set-variable"
#include "stb_image_resize2.h"
#pragma GCC diagnostic pop

#include "image/image_internal.h"
#include "util.h"

#include <stdlib.h>

static const stbir_pixel_layout layouts[] = {STBIR_1CHANNEL, STBIR_1CHANNEL, STBIR_2CHANNEL, STBIR_RGB,
                                             STBIR_4CHANNEL};

emote_status resize_float_hwc(const float *src, int width, int height, float *dst, int out_width, int out_height,
                              int channels, emote_error *err) {
    if (channels < 1 || channels > 4) return emote_fail(err, EMOTE_ERR_ARGUMENT, "resize: %d channels", channels);
    if (!stbir_resize(src, width, height, 0, dst, out_width, out_height, 0, layouts[channels], STBIR_TYPE_FLOAT,
                      STBIR_EDGE_CLAMP, STBIR_FILTER_DEFAULT))
        return emote_fail(err, EMOTE_ERR_MEMORY, "preprocess: out of memory resizing %dx%d to %dx%d", width, height,
                          out_width, out_height);
    return EMOTE_OK;
}

emote_status emote_image_resize(const emote_image *image, int width, int height, emote_image *out,
                                emote_error *err) {
    emote_status s = check_image_argument(image, "resize", err);
    if (s) return s;
    if (!out) return emote_fail(err, EMOTE_ERR_ARGUMENT, "resize: no image to write into");
    if (width < 1 || height < 1 || (uint64_t)width * (uint64_t)height > EMOTE_MAX_PIXELS)
        return emote_fail(err, EMOTE_ERR_ARGUMENT, "resize: invalid size %dx%d", width, height);
    *out = (emote_image){0};
    unsigned char *pixels = alloc_array((size_t)width * (size_t)height, (size_t)image->channels);
    if (!pixels) return emote_fail(err, EMOTE_ERR_MEMORY, "resize: out of memory for %dx%d pixels", width, height);
    if (!stbir_resize(image->pixels, image->width, image->height, 0, pixels, width, height, 0,
                      layouts[image->channels], STBIR_TYPE_UINT8, STBIR_EDGE_CLAMP, STBIR_FILTER_DEFAULT)) {
        free(pixels);
        return emote_fail(err, EMOTE_ERR_MEMORY, "resize: out of memory resizing %dx%d to %dx%d", image->width,
                          image->height, width, height);
    }
    *out = (emote_image){.width = width, .height = height, .channels = image->channels, .pixels = pixels};
    return EMOTE_OK;
}
