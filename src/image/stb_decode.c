/* PNG, GIF (first frame), BMP and PNM through the pinned stb_image (src/third_party/stb),
 * compiled with only those decoders and no stdio: it only ever sees memory that
 * image_check_container has already walked. */
#define STB_IMAGE_IMPLEMENTATION
#define STB_IMAGE_STATIC
#define STBI_NO_STDIO
#define STBI_ONLY_PNG
#define STBI_ONLY_BMP
#define STBI_ONLY_GIF
#define STBI_ONLY_PNM
/* stb is compiled as it is; only the decoders we use are called. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wunused-but-set-variable"
#include "stb_image.h"
#pragma GCC diagnostic pop

#include "image/image_internal.h"
#include "util.h"

#include <string.h>

emote_status stb_decode(const unsigned char *data, size_t size, image_format format, const char *name,
                        emote_image *image, emote_error *err) {
    int width, height, channels;
    if (size > INT32_MAX) return emote_fail(err, EMOTE_ERR_LIMIT, "%s: too large for the decoder", name);
    size_t cleaned_size = 0;
    unsigned char *cleaned = format == IMAGE_PNG ? png_drop_empty_idat(data, size, &cleaned_size) : NULL;
    unsigned char *pixels = cleaned ? stbi_load_from_memory(cleaned, (int)cleaned_size, &width, &height, &channels, 0)
                                    : stbi_load_from_memory(data, (int)size, &width, &height, &channels, 0);
    free(cleaned);
    if (!pixels) {
        const char *reason = stbi_failure_reason();
        if (reason && strcmp(reason, "outofmem") == 0)
            return emote_fail(err, EMOTE_ERR_MEMORY, "%s: out of memory decoding the image", name);
        return emote_fail(err, EMOTE_ERR_FORMAT, "%s: corrupt or truncated image: %s", name,
                          reason && *reason ? reason : "decoder error");
    }
    if (width <= 0 || height <= 0 || (uint64_t)width * (uint64_t)height > EMOTE_MAX_PIXELS || channels < 1 ||
        channels > 4) {
        free(pixels);
        return emote_fail(err, EMOTE_ERR_FORMAT, "%s: corrupt image: decoded %dx%d pixels, %d channels", name, width,
                          height, channels);
    }
    *image = (emote_image){.width = width, .height = height, .channels = channels, .pixels = pixels,
                           .source_width = width, .source_height = height};
    return EMOTE_OK;
}

