/* Inside src/image/: the pieces emote_image_decode is built from.
 *
 *   bytes --sniff--> format --check_container--> (whole, not truncated)
 *         --jpeg_decode | stb_decode--> pixels --exif orientation--> upright image
 */
#ifndef EMOTE_IMAGE_INTERNAL_H
#define EMOTE_IMAGE_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "emote.h"

typedef enum { IMAGE_UNKNOWN = 0, IMAGE_PNG, IMAGE_JPEG, IMAGE_GIF, IMAGE_BMP, IMAGE_PNM } image_format;

#define IMAGE_FORMATS_SUPPORTED "PNG, JPEG, BMP, GIF, PNM"

/* The format the first bytes announce; IMAGE_UNKNOWN for anything else. */
image_format image_sniff(const unsigned char *data, size_t size);
const char *image_format_name(image_format format);
/* A name for a well-known format we refuse (TGA has no signature), or NULL. */
const char *image_unsupported_format_name(const unsigned char *data, size_t size);

/* Walks the container (PNG chunks, GIF blocks up to the end of the first frame, BMP and
 * PNM headers against the pixel bytes they promise) so a truncated file is refused before
 * stb_image sees it. JPEG is checked by libjpeg itself. */
emote_status image_check_container(image_format format, const unsigned char *data, size_t size, const char *name,
                                   emote_error *err);

/* stb_image reads an empty IDAT chunk (legal) with memcpy(NULL, p, 0), undefined
 * behaviour: for such a PNG, a malloc'd copy without its empty IDAT chunks (same image);
 * NULL when there is none, or no memory (then stb reads the original). */
unsigned char *png_drop_empty_idat(const unsigned char *data, size_t size, size_t *out_size);

/* Width and height as the header of a PNG, GIF, BMP or PNM states them (before any
 * decoding, for the pixel limit); false if the header is cut short. */
bool image_header_size(image_format format, const unsigned char *data, size_t size, uint64_t *width,
                       uint64_t *height);

/* The size a JPEG decodes to (jpeg_decode with min_width x min_height), from its frame
 * header; false if there is none to read. */
bool jpeg_output_size(const unsigned char *data, size_t size, int min_width, int min_height, uint64_t *width,
                      uint64_t *height);

/* The size of the image emote_image_decode_with(data, size, options) will hand back, as the
 * header states it (after a JPEG's scaled decode, before EXIF orientation); false when the
 * header cannot tell or the image is past EMOTE_MAX_PIXELS (decoding then fails early). */
bool image_decoded_size(const unsigned char *data, size_t size, const emote_decode_options *options, uint64_t *width,
                        uint64_t *height);

/* PNG, GIF, BMP, PNM through the pinned stb_image. */
emote_status stb_decode(const unsigned char *data, size_t size, image_format format, const char *name,
                        emote_image *image, emote_error *err);

/* JPEG through libjpeg-turbo; refuses more than max_pixels. Decodes at 1/2, 1/4 or 1/8 scale when the result still
 * has at least min_width x min_height pixels (0 = full size). *orientation gets the EXIF
 * orientation (1..8; 1 when absent or unreadable) unless orientation is NULL. */
emote_status jpeg_decode(const unsigned char *data, size_t size, const char *name, uint32_t max_pixels,
                         int min_width, int min_height,
                         int *orientation, emote_image *image, emote_error *err);

/* The orientation tag (1..8) of an APP1 "Exif" segment's payload; 1 when there is none
 * or the segment is malformed (a bad tag never fails a decode). */
int exif_orientation(const unsigned char *app1, size_t size);

/* Rewrites the image so it looks upright: orientation 1..8 as EXIF defines it. */
emote_status image_apply_orientation(emote_image *image, int orientation, const char *name, emote_error *err);

/* Resizes interleaved float pixels (see resize.c for the filter). */
emote_status resize_float_hwc(const float *src, int width, int height, float *dst, int out_width, int out_height,
                              int channels, emote_error *err);

#endif
