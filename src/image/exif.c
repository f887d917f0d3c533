/* EXIF orientation: where it is read (APP1 "Exif" segment, IFD0 tag 0x0112) and how an
 * image is turned upright. Every offset in the segment is checked against its size; a
 * malformed segment means "no orientation", as in every viewer. */
#include "image/image_internal.h"

#include <stdlib.h>
#include <string.h>

#include "util.h"

#define EXIF_TAG_ORIENTATION 0x0112
#define EXIF_TYPE_SHORT 3

typedef struct {
    const unsigned char *tiff; /* the TIFF header and everything after it */
    size_t size;
    bool big_endian;
} tiff_reader;

static bool tiff_u16(const tiff_reader *t, size_t at, unsigned *value) {
    if (at > t->size || t->size - at < 2) return false;
    const unsigned char *p = t->tiff + at;
    *value = t->big_endian ? (unsigned)(p[0] << 8 | p[1]) : (unsigned)(p[1] << 8 | p[0]);
    return true;
}

static bool tiff_u32(const tiff_reader *t, size_t at, uint32_t *value) {
    unsigned hi, lo;
    if (!tiff_u16(t, at, t->big_endian ? &hi : &lo) || !tiff_u16(t, at + 2, t->big_endian ? &lo : &hi)) return false;
    *value = (uint32_t)hi << 16 | lo;
    return true;
}

int exif_orientation(const unsigned char *app1, size_t size) {
    if (!app1 || size < 14 || memcmp(app1, "Exif\0\0", 6) != 0) return 1;
    tiff_reader t = {.tiff = app1 + 6, .size = size - 6};
    if (memcmp(t.tiff, "MM\0*", 4) == 0) t.big_endian = true;
    else if (memcmp(t.tiff, "II*\0", 4) != 0) return 1;
    uint32_t ifd;
    unsigned count;
    if (!tiff_u32(&t, 4, &ifd) || !tiff_u16(&t, ifd, &count)) return 1;
    for (unsigned i = 0; i < count; i++) {
        size_t entry = (size_t)ifd + 2 + (size_t)i * 12;
        unsigned tag, type, value;
        uint32_t values;
        if (entry > t.size || t.size - entry < 12 || !tiff_u16(&t, entry, &tag) || !tiff_u16(&t, entry + 2, &type) || !tiff_u32(&t, entry + 4, &values) ||
            !tiff_u16(&t, entry + 8, &value))
            return 1;
        if (tag == EXIF_TAG_ORIENTATION)
            return type == EXIF_TYPE_SHORT && values == 1 && value >= 1 && value <= 8 ? (int)value : 1;
    }
    return 1;
}

/* Source coordinates of upright pixel (x, y) for an image stored width x height. */
static void source_of(int orientation, size_t x, size_t y, size_t width, size_t height, size_t *sx, size_t *sy) {
    switch (orientation) {
    case 2: *sx = width - 1 - x; *sy = y; break;                    /* mirrored */
    case 3: *sx = width - 1 - x; *sy = height - 1 - y; break;       /* upside down */
    case 4: *sx = x; *sy = height - 1 - y; break;                   /* flipped */
    case 5: *sx = y; *sy = x; break;                                /* transposed */
    case 6: *sx = y; *sy = height - 1 - x; break;                   /* to be turned 90 clockwise */
    case 7: *sx = width - 1 - y; *sy = height - 1 - x; break;       /* transversed */
    case 8: *sx = width - 1 - y; *sy = x; break;                    /* to be turned 90 anticlockwise */
    default: *sx = x; *sy = y; break;
    }
}

emote_status image_apply_orientation(emote_image *image, int orientation, const char *name, emote_error *err) {
    if (orientation <= 1 || orientation > 8) return EMOTE_OK;
    const size_t width = (size_t)image->width, height = (size_t)image->height, channels = (size_t)image->channels;
    const bool swaps = orientation >= 5;
    const size_t out_width = swaps ? height : width, out_height = swaps ? width : height;
    size_t bytes;
    if (!size_mul3(width, height, channels, &bytes))
        return emote_fail(err, EMOTE_ERR_LIMIT, "%s: image size overflows", name);
    unsigned char *upright = malloc(bytes);
    if (!upright) return emote_fail(err, EMOTE_ERR_MEMORY, "%s: out of memory turning the image upright", name);
    for (size_t y = 0; y < out_height; y++)
        for (size_t x = 0; x < out_width; x++) {
            size_t sx, sy;
            source_of(orientation, x, y, width, height, &sx, &sy);
            memcpy(upright + (y * out_width + x) * channels, image->pixels + (sy * width + sx) * channels, channels);
        }
    free(image->pixels);
    image->pixels = upright;
    image->width = (int)out_width;
    image->height = (int)out_height;
    if (swaps) {
        int source_width = image->source_width;
        image->source_width = image->source_height;
        image->source_height = source_width;
    }
    return EMOTE_OK;
}
