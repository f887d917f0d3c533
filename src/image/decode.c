/* Bytes to upright pixels (emote_image_decode, emote_image_load).
 *
 * 1. Size: at most EMOTE_MAX_FILE_BYTES, not empty.
 * 2. Format: the magic bytes decide (PNG, JPEG, GIF, BMP, binary PNM); nothing else
 *    reaches a decoder, whatever the file is called.
 * 3. Header: width * height at most EMOTE_MAX_PIXELS, before any pixel is decoded.
 * 4. Container: a file shorter than its header promises is refused ("truncated").
 * 5. Decode: JPEG by libjpeg-turbo (scaled down in the DCT domain when the caller asks
 *    for no more than a fraction of the pixels), the rest by the pinned stb_image. The
 *    file's own channels are kept: 1 gray, 2 gray+alpha, 3 RGB, 4 RGBA, 8 bits each
 *    (16-bit PNG/PNM reduced to 8 bits, CMYK JPEG converted to RGB, a GIF's first frame).
 * 6. Orientation: a JPEG's EXIF orientation is applied, so the image is upright. */
#include "image/image_internal.h"

#include <stdlib.h>

#include "util.h"

static emote_status check_size_limit(const unsigned char *data, size_t size, image_format format,
                                     uint32_t max_pixels, const char *name, emote_error *err) {
    uint64_t width, height;
    if (!image_header_size(format, data, size, &width, &height))
        return emote_fail(err, EMOTE_ERR_FORMAT, "%s: corrupt or truncated image: %s header is cut short", name,
                          image_format_name(format));
    if (width == 0 || height == 0)
        return emote_fail(err, EMOTE_ERR_FORMAT, "%s: corrupt image: %llux%llu pixels", name,
                          (unsigned long long)width, (unsigned long long)height);
    if (width > max_pixels || height > max_pixels || width * height > max_pixels)
        return emote_fail(err, EMOTE_ERR_LIMIT, "%s: %llux%llu pixels is larger than the limit of %u pixels", name,
                          (unsigned long long)width, (unsigned long long)height, (unsigned)max_pixels);
    return EMOTE_OK;
}

emote_status emote_image_decode_with(const void *data, size_t size, const char *name,
                                     const emote_decode_options *options, emote_image *image, emote_error *err) {
    static const emote_decode_options defaults = {0};
    if (!name) name = "<memory>";
    if (!image) return emote_fail(err, EMOTE_ERR_ARGUMENT, "%s: no image to decode into", name);
    if (!options) options = &defaults;
    *image = (emote_image){0};
    if (!data || size == 0) return emote_fail(err, EMOTE_ERR_FORMAT, "%s: empty file", name);
    if (size > EMOTE_MAX_FILE_BYTES)
        return emote_fail(err, EMOTE_ERR_LIMIT, "%s: %zu bytes, larger than the limit of %u bytes", name, size,
                          (unsigned)EMOTE_MAX_FILE_BYTES);
    const unsigned char *bytes = data;
    const uint32_t max_pixels =
        options->max_pixels && options->max_pixels < EMOTE_MAX_PIXELS ? options->max_pixels : EMOTE_MAX_PIXELS;
    const image_format format = image_sniff(bytes, size);
    if (format == IMAGE_UNKNOWN) {
        const char *known = image_unsupported_format_name(bytes, size);
        if (known)
            return emote_fail(err, EMOTE_ERR_FORMAT,
                              "%s: unsupported image format %s (supported: " IMAGE_FORMATS_SUPPORTED ")", name, known);
        return emote_fail(err, EMOTE_ERR_FORMAT,
                          "%s: unsupported image format (supported: " IMAGE_FORMATS_SUPPORTED ")", name);
    }
    if (format == IMAGE_JPEG) {
        int orientation = 1;
        emote_status s = jpeg_decode(bytes, size, name, max_pixels, options->min_width, options->min_height,
                                     options->ignore_orientation ? NULL : &orientation, image, err);
        if (s == EMOTE_OK) s = image_apply_orientation(image, orientation, name, err);
        if (s != EMOTE_OK) emote_image_free(image);
        return s;
    }
    emote_status s = check_size_limit(bytes, size, format, max_pixels, name, err);
    if (s == EMOTE_OK) s = image_check_container(format, bytes, size, name, err);
    if (s == EMOTE_OK) s = stb_decode(bytes, size, format, name, image, err);
    return s;
}

bool image_decoded_size(const unsigned char *data, size_t size, const emote_decode_options *options, uint64_t *width,
                        uint64_t *height) {
    image_format format = image_sniff(data, size);
    bool known = format == IMAGE_JPEG ? jpeg_output_size(data, size, options->min_width, options->min_height, width, height)
                 : format != IMAGE_UNKNOWN && image_header_size(format, data, size, width, height);
    /* past the limit, decoding stops at the header */
    return known && *width <= EMOTE_MAX_PIXELS && *height <= EMOTE_MAX_PIXELS && *width * *height <= EMOTE_MAX_PIXELS;
}

emote_status emote_image_decode(const void *data, size_t size, const char *name, emote_image *image,
                                emote_error *err) {
    return emote_image_decode_with(data, size, name, NULL, image, err);
}

emote_status emote_image_load_with(const char *path, const emote_decode_options *options, emote_image *image,
                                   emote_error *err) {
    if (!path) return emote_fail(err, EMOTE_ERR_ARGUMENT, "emote_image_load: no path");
    if (!image) return emote_fail(err, EMOTE_ERR_ARGUMENT, "%s: no image to load into", path);
    *image = (emote_image){0};
    unsigned char *data;
    size_t size;
    emote_status status = read_file_all(path, EMOTE_MAX_FILE_BYTES, &data, &size, err);
    if (status != EMOTE_OK) return status;
    status = emote_image_decode_with(data, size, path, options, image, err);
    free(data);
    return status;
}

emote_status emote_image_load(const char *path, emote_image *image, emote_error *err) {
    return emote_image_load_with(path, NULL, image, err);
}

void emote_image_free(emote_image *image) {
    if (!image) return;
    free(image->pixels);
    image->pixels = NULL;
}
