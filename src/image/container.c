/* Format sniffing by magic bytes, and container walks that catch truncation before a
 * decoder runs. stb_image fills what a short file lacks (transparent rows in a GIF,
 * uninitialised pixels in a PNM, zeros in a BMP), so every promise a header makes about
 * the bytes after it is checked here first. */
#include "image/image_internal.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

static const struct {
    image_format format;
    const char *magic;
    size_t length;
} signatures[] = {
    {IMAGE_PNG, "\x89PNG\r\n\x1a\n", 8}, {IMAGE_JPEG, "\xff\xd8\xff", 3}, {IMAGE_GIF, "GIF87a", 6},
    {IMAGE_GIF, "GIF89a", 6},            {IMAGE_BMP, "BM", 2},            {IMAGE_PNM, "P5", 2},
    {IMAGE_PNM, "P6", 2},
};

image_format image_sniff(const unsigned char *data, size_t size) {
    for (size_t i = 0; i < sizeof signatures / sizeof signatures[0]; i++)
        if (size >= signatures[i].length && memcmp(data, signatures[i].magic, signatures[i].length) == 0)
            return signatures[i].format;
    return IMAGE_UNKNOWN;
}

const char *image_format_name(image_format format) {
    switch (format) {
    case IMAGE_PNG: return "PNG";
    case IMAGE_JPEG: return "JPEG";
    case IMAGE_GIF: return "GIF";
    case IMAGE_BMP: return "BMP";
    case IMAGE_PNM: return "PNM";
    default: return "unknown";
    }
}

const char *image_unsupported_format_name(const unsigned char *data, size_t size) {
    static const struct {
        const char *name, *magic;
        size_t length;
    } others[] = {
        {"PSD", "8BPS", 4},        {"HDR", "#?RADIANCE", 10}, {"HDR", "#?RGBE", 6}, {"PIC", "\x53\x80\xf6\x34", 4},
        {"WebP", "RIFF", 4},       {"TIFF", "II*\0", 4},      {"TIFF", "MM\0*", 4}, {"PNM (ASCII or bitmap)", "P1", 2},
        {"PNM (ASCII or bitmap)", "P2", 2}, {"PNM (ASCII or bitmap)", "P3", 2}, {"PNM (ASCII or bitmap)", "P4", 2},
    };
    for (size_t i = 0; i < sizeof others / sizeof others[0]; i++)
        if (size >= others[i].length && memcmp(data, others[i].magic, others[i].length) == 0) return others[i].name;
    return NULL;
}

/* ---- byte readers ---------------------------------------------------------- */

static uint32_t be32(const unsigned char *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}
static uint32_t le16(const unsigned char *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8; }
static uint32_t le32(const unsigned char *p) { return le16(p) | le16(p + 2) << 16; }

static emote_status truncated(emote_error *err, const char *name, const char *what) {
    return emote_fail(err, EMOTE_ERR_FORMAT, "%s: corrupt or truncated image: %s", name, what);
}

/* ---- PNG: chunk by chunk up to IEND ----------------------------------------- */

static emote_status check_png(const unsigned char *data, size_t size, const char *name, emote_error *err) {
    size_t at = 8;
    bool seen_idat = false;
    for (;;) {
        if (size - at < 8)
            return emote_fail(err, EMOTE_ERR_FORMAT,
                              "%s: corrupt or truncated image: PNG ends after %zu bytes, before its IEND chunk", name,
                              size);
        uint32_t length = be32(data + at);
        char type[5];
        for (int i = 0; i < 4; i++) {
            unsigned char c = data[at + 4 + i];
            type[i] = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ? (char)c : '?';
        }
        type[4] = '\0';
        if (at == 8 && strcmp(type, "IHDR") != 0) return truncated(err, name, "PNG does not start with IHDR");
        if (length > 0x7fffffffu) return truncated(err, name, "PNG chunk length over 2^31");
        if ((size - at - 8) < (size_t)length + 4)
            return emote_fail(err, EMOTE_ERR_FORMAT,
                              "%s: corrupt or truncated image: PNG ends after %zu bytes, inside chunk %s", name, size,
                              type);
        if (strcmp(type, "IDAT") == 0) seen_idat = true;
        if (strcmp(type, "IEND") == 0)
            return seen_idat ? EMOTE_OK : truncated(err, name, "PNG has no image data (no IDAT chunk)");
        at += 8 + (size_t)length + 4;
    }
}

static bool is_empty_idat(const unsigned char *chunk) {
    return be32(chunk) == 0 && memcmp(chunk + 4, "IDAT", 4) == 0;
}

/* Only called on a PNG check_png accepted: every chunk up to IEND is whole. */
static size_t next_chunk(const unsigned char *data, size_t at) {
    return memcmp(data + at + 4, "IEND", 4) == 0 ? SIZE_MAX : at + 12 + be32(data + at);
}

unsigned char *png_drop_empty_idat(const unsigned char *data, size_t size, size_t *out_size) {
    bool any = false;
    for (size_t at = 8; at != SIZE_MAX; at = next_chunk(data, at)) any = any || is_empty_idat(data + at);
    if (!any) return NULL;
    unsigned char *copy = malloc(size);
    if (!copy) return NULL;
    memcpy(copy, data, 8);
    size_t length = 8;
    for (size_t at = 8; at != SIZE_MAX; at = next_chunk(data, at)) {
        if (is_empty_idat(data + at)) continue;
        size_t chunk = 12 + (size_t)be32(data + at);
        memcpy(copy + length, data + at, chunk);
        length += chunk;
    }
    *out_size = length;
    return copy;
}

/* ---- GIF: blocks up to the end of the first frame's image data --------------- */

/* Skips data sub-blocks (a length byte, then that many bytes) through the empty block. */
static bool skip_sub_blocks(const unsigned char *data, size_t size, size_t *at) {
    while (*at < size) {
        size_t length = data[(*at)++];
        if (length == 0) return true;
        if (size - *at < length) return false;
        *at += length;
    }
    return false;
}

static size_t colour_table_bytes(unsigned flags) { return (flags & 0x80) ? 3u << ((flags & 7) + 1) : 0; }

static emote_status check_gif(const unsigned char *data, size_t size, const char *name, emote_error *err) {
    if (size < 13) return truncated(err, name, "GIF header is cut short");
    size_t at = 13 + colour_table_bytes(data[10]);
    while (at < size) {
        unsigned char block = data[at++];
        if (block == 0x3B) return truncated(err, name, "GIF has no image before its trailer");
        if (block == 0x21) { /* extension: label, then sub-blocks */
            if (at == size) break;
            at++;
            if (!skip_sub_blocks(data, size, &at)) break;
        } else if (block == 0x2C) { /* image descriptor, colour table, LZW code size, data */
            if (size - at < 9) break;
            at += 9 + colour_table_bytes(data[at + 8]);
            if (at >= size) break;
            at++;
            if (!skip_sub_blocks(data, size, &at)) break;
            return EMOTE_OK;
        } else {
            return truncated(err, name, "GIF holds an unknown block");
        }
    }
    return truncated(err, name, "GIF ends before its first frame's image data is complete");
}

/* ---- BMP: pixel rows the header promises ----------------------------------- */

typedef struct {
    uint64_t offset, width, height, bits;
    uint32_t compression;
} bmp_header;

static bool read_bmp_header(const unsigned char *data, size_t size, bmp_header *h) {
    if (size < 26) return false;
    h->offset = le32(data + 10);
    uint32_t header_size = le32(data + 14);
    h->compression = 0;
    if (header_size == 12) {
        h->width = le16(data + 18);
        h->height = le16(data + 20);
        h->bits = le16(data + 24);
        return true;
    }
    if (size < 34) return false;
    int32_t w = (int32_t)le32(data + 18), ht = (int32_t)le32(data + 22);
    h->width = w < 0 ? 0 : (uint64_t)w;
    h->height = ht < 0 ? (uint64_t)(-(int64_t)ht) : (uint64_t)ht;
    h->bits = le16(data + 28);
    h->compression = le32(data + 30);
    return true;
}

static emote_status check_bmp(const unsigned char *data, size_t size, const char *name, emote_error *err) {
    bmp_header h;
    if (!read_bmp_header(data, size, &h)) return truncated(err, name, "BMP header is cut short");
    /* stb refuses RLE (1, 2) but decodes any other unknown value as if uncompressed. */
    if (h.compression != 0 && h.compression != 3)
        return emote_fail(err, EMOTE_ERR_FORMAT, "%s: unsupported BMP compression %u (only uncompressed BMP)", name,
                          (unsigned)h.compression);
    if (h.width > 1u << 24 || h.height > 1u << 24) return EMOTE_OK; /* stb refuses sizes this big */
    uint64_t row_bytes = (h.width * h.bits + 31) / 32 * 4;
    uint64_t needed = h.offset + row_bytes * h.height;
    if (needed > size)
        return emote_fail(err, EMOTE_ERR_FORMAT,
                          "%s: corrupt or truncated image: BMP pixel data truncated (%zu of %llu bytes)", name, size,
                          (unsigned long long)needed);
    return EMOTE_OK;
}

/* ---- PNM (binary P5/P6): header, then width * height * channels samples ----- */

/* Reads one header number after whitespace and '#' comments; false if none. */
static bool pnm_number(const unsigned char *data, size_t size, size_t *at, uint64_t *value) {
    for (;;) {
        while (*at < size && (data[*at] == ' ' || (data[*at] >= '\t' && data[*at] <= '\r'))) (*at)++;
        if (*at < size && data[*at] == '#') {
            while (*at < size && data[*at] != '\n' && data[*at] != '\r') (*at)++;
            continue;
        }
        break;
    }
    if (*at == size || data[*at] < '0' || data[*at] > '9') return false;
    *value = 0;
    while (*at < size && data[*at] >= '0' && data[*at] <= '9') {
        if (*value < (1u << 30)) *value = *value * 10 + (uint64_t)(data[*at] - '0');
        (*at)++;
    }
    return true;
}

typedef struct {
    uint64_t width, height, maxval;
    size_t data_start;
} pnm_header;

static bool read_pnm_header(const unsigned char *data, size_t size, pnm_header *h) {
    size_t at = 2;
    if (!pnm_number(data, size, &at, &h->width) || !pnm_number(data, size, &at, &h->height) ||
        !pnm_number(data, size, &at, &h->maxval) || at == size)
        return false;
    h->data_start = at + 1; /* one whitespace byte before the samples */
    return true;
}

static emote_status check_pnm(const unsigned char *data, size_t size, const char *name, emote_error *err) {
    pnm_header h;
    if (!read_pnm_header(data, size, &h)) return truncated(err, name, "PNM header is cut short or malformed");
    if (h.width > 1u << 24 || h.height > 1u << 24) return EMOTE_OK; /* the pixel limit refuses these */
    uint64_t channels = data[1] == '6' ? 3 : 1, sample_bytes = h.maxval > 255 ? 2 : 1;
    uint64_t needed = h.width * h.height * channels * sample_bytes;
    if (needed > size - h.data_start)
        return emote_fail(err, EMOTE_ERR_FORMAT,
                          "%s: corrupt or truncated image: PNM file truncated (%zu of %llu pixel bytes)", name,
                          size - h.data_start, (unsigned long long)needed);
    return EMOTE_OK;
}

emote_status image_check_container(image_format format, const unsigned char *data, size_t size, const char *name,
                                   emote_error *err) {
    switch (format) {
    case IMAGE_PNG: return check_png(data, size, name, err);
    case IMAGE_GIF: return check_gif(data, size, name, err);
    case IMAGE_BMP: return check_bmp(data, size, name, err);
    case IMAGE_PNM: return check_pnm(data, size, name, err);
    default: return EMOTE_OK;
    }
}

bool image_header_size(image_format format, const unsigned char *data, size_t size, uint64_t *width,
                       uint64_t *height) {
    switch (format) {
    case IMAGE_PNG:
        if (size < 24) return false;
        *width = be32(data + 16);
        *height = be32(data + 20);
        return true;
    case IMAGE_GIF:
        if (size < 10) return false;
        *width = le16(data + 6);
        *height = le16(data + 8);
        return true;
    case IMAGE_BMP: {
        bmp_header h;
        if (!read_bmp_header(data, size, &h)) return false;
        *width = h.width;
        *height = h.height;
        return true;
    }
    case IMAGE_PNM: {
        pnm_header h;
        if (!read_pnm_header(data, size, &h)) return false;
        *width = h.width;
        *height = h.height;
        return true;
    }
    default: return false;
    }
}
