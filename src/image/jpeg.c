/* JPEG through libjpeg-turbo, with DCT-domain scaled decoding for big photos.
 *
 * libjpeg reports errors by calling error_exit (default: exit()) and corrupt data by
 * warnings it then repairs (grey blocks for a truncated scan). Here both end the decode
 * through longjmp, and libjpeg's own message becomes emote's reason.
 *
 * One kind of damage libjpeg does not report at all: a file whose components are sent in
 * separate scans (a non-interleaved sequential or a progressive JPEG) and that lacks the
 * scan of one component. libjpeg then decodes that plane as flat grey (all coefficients
 * zero) without a word. The progress monitor, called at least once while each scan is the
 * current one, records which components the scans carried; any left out is an error. */
#include "image/image_internal.h"

#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>

#include "util.h"

/* A progressive JPEG may hold any number of scans, each one a pass over the whole image:
 * a few hundred bytes can cost minutes. Real encoders write at most a few dozen. */
#define JPEG_MAX_SCANS 256
/* libjpeg's own working memory (coefficient buffers of progressive files). */
#define JPEG_MAX_MEMORY (512L * 1024 * 1024)

typedef struct {
    struct jpeg_error_mgr base;
    struct jpeg_progress_mgr progress;
    jmp_buf escape;
    char message[JMSG_LENGTH_MAX];
    unsigned scanned; /* bit c: component c was in a scan */
} jpeg_guard;

static void stop_with_message(j_common_ptr cinfo) {
    jpeg_guard *guard = (jpeg_guard *)cinfo->err;
    cinfo->err->format_message(cinfo, guard->message);
    longjmp(guard->escape, 1);
}

/* level < 0: a warning, i.e. corrupt data libjpeg would paper over; trace levels are ignored. */
static void on_message(j_common_ptr cinfo, int level) {
    if (level < 0) stop_with_message(cinfo);
}

static void on_progress(j_common_ptr cinfo) {
    j_decompress_ptr d = (j_decompress_ptr)cinfo;
    jpeg_guard *guard = (jpeg_guard *)cinfo->err;
    if (d->input_scan_number > JPEG_MAX_SCANS) {
        snprintf(guard->message, sizeof guard->message, "JPEG has more than %d scans", JPEG_MAX_SCANS);
        longjmp(guard->escape, 1);
    }
    for (int i = 0; i < d->comps_in_scan && i < MAX_COMPS_IN_SCAN; i++)
        if (d->cur_comp_info[i]) guard->scanned |= 1u << d->cur_comp_info[i]->component_index;
}

/* Every component was in some scan (see the top of this file), else the decode fails. */
static void check_every_component_scanned(j_decompress_ptr cinfo, jpeg_guard *guard) {
    for (int c = 0; c < cinfo->num_components; c++)
        if (!(guard->scanned & 1u << c)) {
            const char *plane = cinfo->jpeg_color_space != JCS_YCbCr ? "" : c == 0 ? " (luma)" : " (chroma)";
            snprintf(guard->message, sizeof guard->message, "JPEG has no scan for component %d of %d%s", c + 1,
                     cinfo->num_components, plane);
            longjmp(guard->escape, 1);
        }
}

static int read_orientation(j_decompress_ptr cinfo) {
    for (jpeg_saved_marker_ptr m = cinfo->marker_list; m; m = m->next)
        if (m->marker == JPEG_APP0 + 1) {
            int orientation = exif_orientation(m->data, m->data_length);
            if (orientation != 1) return orientation;
        }
    return 1;
}

static unsigned ceil_div(unsigned a, unsigned b) { return (a + b - 1) / b; }

/* The largest of 8, 4, 2 that keeps the image at least min_width x min_height
 * (as it will be after orientation), else 1. */
static unsigned pick_scale(unsigned width, unsigned height, int min_width, int min_height, int orientation) {
    if (min_width <= 0 || min_height <= 0) return 1;
    if (orientation >= 5) { /* stored sideways: the upright width is the stored height */
        int t = min_width;
        min_width = min_height;
        min_height = t;
    }
    for (unsigned denom = 8; denom > 1; denom /= 2)
        if (ceil_div(width, denom) >= (unsigned)min_width && ceil_div(height, denom) >= (unsigned)min_height)
            return denom;
    return 1;
}

static unsigned be16(const unsigned char *p) { return (unsigned)p[0] << 8 | p[1]; }

/* The frame header (SOFn) is the first marker segment that is not a table or an APPn; a
 * height of 0 (set later by a DNL marker) counts as unknown. */
static bool jpeg_frame_size(const unsigned char *data, size_t size, unsigned *width, unsigned *height) {
    size_t at = 2; /* past SOI */
    while (at + 4 <= size && data[at] == 0xFF) {
        unsigned marker = data[at + 1];
        if (marker == 0xFF) { /* fill byte */
            at++;
            continue;
        }
        bool sof = marker >= 0xC0 && marker <= 0xCF && marker != 0xC4 && marker != 0xC8 && marker != 0xCC;
        if (sof) {
            if (at + 9 > size) return false;
            *height = be16(data + at + 5);
            *width = be16(data + at + 7);
            return *width > 0 && *height > 0;
        }
        at += 2 + be16(data + at + 2);
    }
    return false;
}

bool jpeg_output_size(const unsigned char *data, size_t size, int min_width, int min_height, uint64_t *width,
                      uint64_t *height) {
    unsigned w, h;
    if (!jpeg_frame_size(data, size, &w, &h)) return false;
    /* the EXIF orientation is not read here: the scale that keeps more pixels of the two */
    unsigned a = pick_scale(w, h, min_width, min_height, 1), b = pick_scale(w, h, min_width, min_height, 5);
    unsigned denom = a < b ? a : b;
    *width = ceil_div(w, denom);
    *height = ceil_div(h, denom);
    return true;
}

/* Adobe CMYK/YCCK JPEGs store inverted CMYK; libjpeg hands it over as it is. */
static void cmyk_to_rgb(unsigned char *pixels, size_t count) {
    for (size_t i = 0; i < count; i++) {
        const unsigned char *s = pixels + 4 * i;
        unsigned k = s[3];
        unsigned char r = (unsigned char)(s[0] * k / 255), g = (unsigned char)(s[1] * k / 255),
                      b = (unsigned char)(s[2] * k / 255);
        pixels[3 * i] = r;
        pixels[3 * i + 1] = g;
        pixels[3 * i + 2] = b;
    }
}

emote_status jpeg_decode(const unsigned char *data, size_t size, const char *name, uint32_t max_pixels,
                         int min_width, int min_height,
                         int *orientation, emote_image *image, emote_error *err) {
    struct jpeg_decompress_struct cinfo;
    jpeg_guard guard;
    unsigned char *volatile pixels = NULL;
    volatile emote_status failure = EMOTE_ERR_FORMAT;

    cinfo.err = jpeg_std_error(&guard.base);
    guard.base.error_exit = stop_with_message;
    guard.base.emit_message = on_message;
    guard.message[0] = '\0';
    guard.scanned = 0;
    if (setjmp(guard.escape)) {
        jpeg_destroy_decompress(&cinfo);
        free(pixels);
        if (failure == EMOTE_ERR_FORMAT)
            return emote_fail(err, EMOTE_ERR_FORMAT, "%s: corrupt or truncated image: %s", name, guard.message);
        return emote_fail(err, failure, "%s: %s", name, guard.message);
    }
    jpeg_create_decompress(&cinfo);
    cinfo.mem->max_memory_to_use = JPEG_MAX_MEMORY;
    guard.progress.progress_monitor = on_progress;
    cinfo.progress = &guard.progress;
    jpeg_mem_src(&cinfo, data, (unsigned long)size);
    jpeg_save_markers(&cinfo, JPEG_APP0 + 1, 0xFFFF);
    jpeg_read_header(&cinfo, TRUE);

    if ((uint64_t)cinfo.image_width * cinfo.image_height > max_pixels) {
        emote_status s = emote_fail(err, EMOTE_ERR_LIMIT, "%s: %ux%u pixels is larger than the limit of %u pixels",
                                    name, cinfo.image_width, cinfo.image_height, (unsigned)max_pixels);
        jpeg_destroy_decompress(&cinfo);
        return s;
    }
    int oriented = orientation ? read_orientation(&cinfo) : 1;
    cinfo.scale_num = 1;
    cinfo.scale_denom = pick_scale(cinfo.image_width, cinfo.image_height, min_width, min_height, oriented);
    const bool cmyk = cinfo.jpeg_color_space == JCS_CMYK || cinfo.jpeg_color_space == JCS_YCCK;
    cinfo.out_color_space = cinfo.jpeg_color_space == JCS_GRAYSCALE ? JCS_GRAYSCALE : cmyk ? JCS_CMYK : JCS_RGB;
    jpeg_start_decompress(&cinfo);

    const size_t width = cinfo.output_width, height = cinfo.output_height;
    const size_t row_bytes = width * (size_t)cinfo.output_components;
    pixels = alloc_array(height, row_bytes);
    if (!pixels) {
        failure = EMOTE_ERR_MEMORY;
        snprintf(guard.message, sizeof guard.message, "out of memory for %zux%zu pixels", width, height);
        longjmp(guard.escape, 1);
    }
    while (cinfo.output_scanline < cinfo.output_height) {
        JSAMPROW row = pixels + (size_t)cinfo.output_scanline * row_bytes;
        jpeg_read_scanlines(&cinfo, &row, 1);
    }
    jpeg_finish_decompress(&cinfo);
    check_every_component_scanned(&cinfo, &guard);
    jpeg_destroy_decompress(&cinfo);

    int channels = cmyk ? 3 : cinfo.output_components;
    if (cmyk) cmyk_to_rgb(pixels, width * height);
    *image = (emote_image){.width = (int)width, .height = (int)height, .channels = channels, .pixels = pixels,
                           .source_width = (int)cinfo.image_width, .source_height = (int)cinfo.image_height};
    if (orientation) *orientation = oriented;
    return EMOTE_OK;
}
