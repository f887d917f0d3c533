/* Image loading and preprocessing: decoding each format, the exact preprocessing
 * pipeline (pass-through, BT.601 gray, centre crop, resize, normalise) and every kind
 * of bad file. Images are generated at test time in a temporary directory. */
#include "harness.h"

#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <stb_image_write.h>

#include "emote.h"

/* ---- temporary files ------------------------------------------------------ */

#define MAX_TEMP_FILES 8

typedef struct {
    char dir[64];
    char paths[MAX_TEMP_FILES][128];
    int count;
} temp_files;

static bool temp_open(temp_files *t) {
    memset(t, 0, sizeof *t);
    snprintf(t->dir, sizeof t->dir, "/tmp/emote_test_image_XXXXXX");
    return mkdtemp(t->dir) != NULL;
}

/* A path inside the temporary directory, removed by temp_close. */
static const char *temp_path(temp_files *t, const char *name) {
    if (t->count == MAX_TEMP_FILES) abort();
    char *path = t->paths[t->count++];
    char joined[sizeof t->paths[0]];
    snprintf(joined, sizeof joined, "%s/%s", t->dir, name);
    memcpy(path, joined, sizeof joined);
    return path;
}

static void temp_close(temp_files *t) {
    for (int i = 0; i < t->count; i++) {
        if (rmdir(t->paths[i]) != 0) unlink(t->paths[i]);
    }
    rmdir(t->dir);
}

static bool write_bytes(const char *path, const void *data, size_t size) {
    FILE *f = fopen(path, "wb");
    if (!f) return false;
    bool ok = fwrite(data, 1, size, f) == size;
    return fclose(f) == 0 && ok;
}

/* Reads a whole (small) file into a malloc'd buffer; NULL on failure. */
static unsigned char *read_bytes(const char *path, size_t *size) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    unsigned char *data = malloc(1 << 20);
    *size = data ? fread(data, 1, 1 << 20, f) : 0;
    fclose(f);
    return data;
}

/* ---- synthetic pixels ------------------------------------------------------- */

static unsigned char *noise_pixels(int width, int height, int channels, uint32_t seed) {
    size_t n = (size_t)width * height * channels;
    unsigned char *p = malloc(n);
    for (size_t i = 0; p && i < n; i++) {
        seed = seed * 1664525u + 1013904223u;
        p[i] = (unsigned char)(seed >> 24);
    }
    return p;
}

static unsigned char *constant_pixels(int width, int height, int channels, const unsigned char *value) {
    size_t n = (size_t)width * height;
    unsigned char *p = malloc(n * channels);
    for (size_t i = 0; p && i < n; i++) memcpy(p + i * channels, value, (size_t)channels);
    return p;
}

static emote_input_spec gray_spec(int size, float mean, float std) {
    return (emote_input_spec){.channels = 1, .height = size, .width = size, .mean = {mean}, .std = {std}};
}

static emote_input_spec rgb_spec(int size) {
    return (emote_input_spec){
        .channels = 3, .height = size, .width = size, .mean = {0, 0, 0}, .std = {1, 1, 1}};
}

static uint32_t crc32_of(const unsigned char *data, size_t size) {
    uint32_t crc = 0xFFFFFFFFu;
    for (size_t i = 0; i < size; i++) {
        crc ^= data[i];
        for (int k = 0; k < 8; k++) crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1u)));
    }
    return ~crc;
}

static void put_be32(unsigned char *p, uint32_t v) {
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

/* A PNG made of the signature and an IHDR chunk (correct CRC) declaring width x height
 * 8-bit gray, and nothing else: any attempt to decode it fails as truncated. */
static bool write_png_header_only(const char *path, uint32_t width, uint32_t height) {
    unsigned char png[8 + 25] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
    unsigned char *chunk = png + 8;
    put_be32(chunk, 13);
    memcpy(chunk + 4, "IHDR", 4);
    put_be32(chunk + 8, width);
    put_be32(chunk + 12, height);
    chunk[16] = 8; /* bit depth; colour type, compression, filter, interlace stay 0 */
    put_be32(chunk + 21, crc32_of(chunk + 4, 17));
    return write_bytes(path, png, sizeof png);
}

/* ---- helpers for checks ------------------------------------------------------ */

static bool same_pixels(const emote_image *image, const unsigned char *expected, int width, int height,
                        int channels) {
    return image->pixels && image->width == width && image->height == height && image->channels == channels &&
           memcmp(image->pixels, expected, (size_t)width * height * channels) == 0;
}

/* Loads path expecting failure with `status`; the message must name the file and contain `reason`. */
static bool load_fails_with(const char *path, emote_status status, const char *reason) {
    emote_image image;
    emote_error err = {{0}};
    emote_status got = emote_image_load(path, &image, &err);
    bool ok = got == status && image.pixels == NULL && strstr(err.message, path) == err.message &&
              strstr(err.message, reason) != NULL;
    if (!ok) fprintf(stderr, "  %s: status %d (want %d), message \"%s\"\n", path, got, status, err.message);
    emote_image_free(&image);
    return ok;
}

static float normalised(float v, float mean, float std) { return (v / 255.0f - mean) / std; }

/* ---- decoding ------------------------------------------------------------------ */

TEST(image_decodes_png_gray_rgb_rgba_and_gray_alpha) {
    temp_files t;
    CHECK(temp_open(&t));
    for (int channels = 1; channels <= 4; channels++) {
        unsigned char *pixels = noise_pixels(7, 5, channels, 11u + (uint32_t)channels);
        static const char *const names[] = {"g.png", "ga.png", "rgb.png", "rgba.png"};
        const char *path = temp_path(&t, names[channels - 1]);
        CHECK(stbi_write_png(path, 7, 5, channels, pixels, 7 * channels));
        emote_image image;
        emote_error err;
        CHECKF(emote_image_load(path, &image, &err) == EMOTE_OK, "%s", err.message);
        CHECKF(same_pixels(&image, pixels, 7, 5, channels), "channels %d", channels);
        CHECK(image.source_width == 7 && image.source_height == 5);
        emote_image_free(&image);
        free(pixels);
    }
    temp_close(&t);
}

TEST(image_decodes_jpeg) {
    temp_files t;
    CHECK(temp_open(&t));
    const unsigned char rgb[3] = {200, 100, 50}, gray[1] = {90};
    unsigned char *color = constant_pixels(16, 16, 3, rgb), *mono = constant_pixels(16, 8, 1, gray);
    const char *color_path = temp_path(&t, "color.jpg"), *mono_path = temp_path(&t, "mono.jpg");
    CHECK(stbi_write_jpg(color_path, 16, 16, 3, color, 95));
    CHECK(stbi_write_jpg(mono_path, 16, 8, 1, mono, 95));
    emote_image image;
    emote_error err;
    CHECKF(emote_image_load(color_path, &image, &err) == EMOTE_OK, "%s", err.message);
    CHECK(image.width == 16 && image.height == 16 && image.channels == 3);
    for (int i = 0; image.pixels && i < 16 * 16 * 3; i++) CHECK(abs(image.pixels[i] - rgb[i % 3]) <= 4);
    emote_image_free(&image);
    CHECKF(emote_image_load(mono_path, &image, &err) == EMOTE_OK, "%s", err.message);
    /* stb_image_write always writes YCbCr JPEGs, so a gray source comes back as RGB. */
    CHECK(image.width == 16 && image.height == 8 && image.channels == 3);
    for (int i = 0; image.pixels && i < 16 * 8 * 3; i++) CHECK(abs(image.pixels[i] - gray[0]) <= 2);
    emote_image_free(&image);
    free(color);
    free(mono);
    temp_close(&t);
}

TEST(image_decodes_bmp) {
    temp_files t;
    CHECK(temp_open(&t));
    unsigned char *pixels = noise_pixels(9, 6, 3, 5u);
    const char *path = temp_path(&t, "x.bmp");
    CHECK(stbi_write_bmp(path, 9, 6, 3, pixels));
    emote_image image;
    emote_error err;
    CHECKF(emote_image_load(path, &image, &err) == EMOTE_OK, "%s", err.message);
    CHECK(same_pixels(&image, pixels, 9, 6, 3));
    emote_image_free(&image);
    free(pixels);
    temp_close(&t);
}

TEST(image_decodes_from_memory_and_free_is_idempotent) {
    temp_files t;
    CHECK(temp_open(&t));
    unsigned char *pixels = noise_pixels(4, 4, 1, 3u);
    const char *path = temp_path(&t, "m.png");
    CHECK(stbi_write_png(path, 4, 4, 1, pixels, 4));
    size_t size = 0;
    unsigned char *file = read_bytes(path, &size);
    CHECK(file && size > 0);
    emote_image image;
    emote_error err;
    CHECKF(emote_image_decode(file, size, NULL, &image, &err) == EMOTE_OK, "%s", err.message);
    CHECK(same_pixels(&image, pixels, 4, 4, 1));
    emote_image_free(&image);
    CHECK(image.pixels == NULL);
    emote_image_free(&image);
    emote_image zeroed = {0};
    emote_image_free(&zeroed);
    emote_image_free(NULL);
    CHECK(emote_image_decode(file, 0, "buf", &image, &err) == EMOTE_ERR_FORMAT && image.pixels == NULL);
    CHECK(strstr(err.message, "buf: ") == err.message);
    CHECK(emote_image_decode("hello", 5, NULL, &image, &err) == EMOTE_ERR_FORMAT);
    CHECK(strstr(err.message, "<memory>: unsupported image format") == err.message);
    free(file);
    free(pixels);
    temp_close(&t);
}

/* ---- preprocessing --------------------------------------------------------------- */

TEST(preprocess_passes_48x48_gray_through_exactly) {
    temp_files t;
    CHECK(temp_open(&t));
    unsigned char *pixels = noise_pixels(48, 48, 1, 42u);
    const char *path = temp_path(&t, "face.png");
    CHECK(stbi_write_png(path, 48, 48, 1, pixels, 48));
    emote_image image;
    emote_error err;
    CHECKF(emote_image_load(path, &image, &err) == EMOTE_OK, "%s", err.message);
    const emote_input_spec spec = gray_spec(48, 0.5f, 0.25f);
    float out[48 * 48];
    CHECKF(emote_preprocess(&spec, &image, out, &err) == EMOTE_OK, "%s", err.message);
    int mismatches = 0;
    for (int i = 0; i < 48 * 48; i++) mismatches += out[i] != ((float)pixels[i] / 255.0f - 0.5f) / 0.25f;
    CHECKF(mismatches == 0, "%d pixels differ", mismatches);
    emote_image_free(&image);
    free(pixels);
    temp_close(&t);
}

TEST(preprocess_converts_rgb_to_bt601_gray) {
    const unsigned char rgb[3] = {200, 100, 50};
    emote_image image = {.width = 48, .height = 48, .channels = 3, .pixels = constant_pixels(48, 48, 3, rgb)};
    const emote_input_spec spec = gray_spec(48, 0.0f, 1.0f);
    float out[48 * 48];
    emote_error err;
    CHECKF(emote_preprocess(&spec, &image, out, &err) == EMOTE_OK, "%s", err.message);
    const float gray = 0.299f * 200 + 0.587f * 100 + 0.114f * 50; /* 124.2 */
    CHECK(fabsf(gray - 124.2f) < 1e-4f);
    for (int i = 0; i < 48 * 48; i++) CHECK(out[i] == gray / 255.0f);
    emote_image_free(&image);
}

TEST(preprocess_keeps_rgb_and_ignores_alpha) {
    const unsigned char rgba[4] = {200, 100, 50, 7}, rgb[3] = {200, 100, 50};
    emote_image with_alpha = {.width = 48, .height = 48, .channels = 4, .pixels = constant_pixels(48, 48, 4, rgba)};
    emote_image without = {.width = 48, .height = 48, .channels = 3, .pixels = constant_pixels(48, 48, 3, rgb)};
    const emote_input_spec color = rgb_spec(48), mono = gray_spec(48, 0.0f, 1.0f);
    static float a[3 * 48 * 48], b[3 * 48 * 48];
    emote_error err;
    CHECK(emote_preprocess(&color, &with_alpha, a, &err) == EMOTE_OK);
    for (int c = 0; c < 3; c++) CHECK(a[c * 48 * 48 + 100] == rgb[c] / 255.0f); /* CHW planes */
    CHECK(emote_preprocess(&color, &without, b, &err) == EMOTE_OK);
    CHECK(memcmp(a, b, sizeof a) == 0);
    CHECK(emote_preprocess(&mono, &with_alpha, a, &err) == EMOTE_OK);
    CHECK(emote_preprocess(&mono, &without, b, &err) == EMOTE_OK);
    CHECK(memcmp(a, b, 48 * 48 * sizeof(float)) == 0);
    emote_image_free(&with_alpha);
    emote_image_free(&without);
}

TEST(preprocess_replicates_gray_to_rgb_and_uses_gray_of_gray_alpha) {
    unsigned char *gray = noise_pixels(48, 48, 1, 9u), *gray_alpha = malloc(48 * 48 * 2);
    for (int i = 0; i < 48 * 48; i++) {
        gray_alpha[2 * i] = gray[i];
        gray_alpha[2 * i + 1] = (unsigned char)i;
    }
    emote_image image = {.width = 48, .height = 48, .channels = 1, .pixels = gray};
    emote_image image_alpha = {.width = 48, .height = 48, .channels = 2, .pixels = gray_alpha};
    const emote_input_spec color = rgb_spec(48), mono = gray_spec(48, 0.0f, 1.0f);
    static float rgb[3 * 48 * 48], single[48 * 48];
    emote_error err;
    CHECK(emote_preprocess(&color, &image, rgb, &err) == EMOTE_OK);
    for (int i = 0; i < 48 * 48; i++)
        CHECK(rgb[i] == gray[i] / 255.0f && rgb[48 * 48 + i] == rgb[i] && rgb[2 * 48 * 48 + i] == rgb[i]);
    CHECK(emote_preprocess(&mono, &image_alpha, single, &err) == EMOTE_OK);
    CHECK(memcmp(single, rgb, sizeof single) == 0);
    emote_image_free(&image);
    emote_image_free(&image_alpha);
}

/* A width x height gray image whose centre 48x48 holds value 5 * (column in the centre)
 * and whose border is 255; preprocessing must return exactly the centre. */
static bool centre_crop_is_exact(int width, int height) {
    const int x0 = (width - 48) / 2, y0 = (height - 48) / 2;
    unsigned char *pixels = malloc((size_t)width * height);
    for (int y = 0; y < height; y++)
        for (int x = 0; x < width; x++) {
            bool inside = x >= x0 && x < x0 + 48 && y >= y0 && y < y0 + 48;
            pixels[y * width + x] = inside ? (unsigned char)(5 * (x - x0)) : 255;
        }
    emote_image image = {.width = width, .height = height, .channels = 1, .pixels = pixels};
    const emote_input_spec spec = gray_spec(48, 0.0f, 1.0f);
    float out[48 * 48];
    emote_error err;
    bool ok = emote_preprocess(&spec, &image, out, &err) == EMOTE_OK;
    for (int i = 0; ok && i < 48 * 48; i++) ok = out[i] == (float)(5 * (i % 48)) / 255.0f;
    emote_image_free(&image);
    return ok;
}

TEST(preprocess_centre_crops_to_the_model_aspect) {
    CHECK(centre_crop_is_exact(60, 48));
    CHECK(centre_crop_is_exact(61, 48)); /* odd extra: offset 6, one more column off the right */
    CHECK(centre_crop_is_exact(48, 60));
    CHECK(centre_crop_is_exact(48, 61));
}

TEST(preprocess_crops_to_a_non_square_model_input) {
    /* 40x30 image, 20x10 input (2:1): crop 40x20 starting at row 5, then halve it. */
    unsigned char *pixels = malloc(40 * 30);
    for (int y = 0; y < 30; y++)
        for (int x = 0; x < 40; x++) pixels[y * 40 + x] = (y >= 5 && y < 25) ? 100 : 0;
    emote_image image = {.width = 40, .height = 30, .channels = 1, .pixels = pixels};
    const emote_input_spec spec = {.channels = 1, .height = 10, .width = 20, .mean = {0}, .std = {1}};
    float out[10 * 20];
    emote_error err;
    CHECKF(emote_preprocess(&spec, &image, out, &err) == EMOTE_OK, "%s", err.message);
    for (int i = 0; i < 10 * 20; i++) CHECK(fabsf(out[i] - 100.0f / 255.0f) < 1e-4f);
    emote_image_free(&image);
}

TEST(preprocess_resizes_constant_and_gradient_images) {
    const unsigned char value[1] = {77};
    emote_image flat = {.width = 96, .height = 96, .channels = 1, .pixels = constant_pixels(96, 96, 1, value)};
    emote_image small = {.width = 24, .height = 24, .channels = 1, .pixels = constant_pixels(24, 24, 1, value)};
    unsigned char *ramp = malloc(96 * 96);
    for (int i = 0; i < 96 * 96; i++) ramp[i] = (unsigned char)(2 * (i % 96));
    emote_image gradient = {.width = 96, .height = 96, .channels = 1, .pixels = ramp};
    const emote_input_spec spec = gray_spec(48, 0.5f, 0.25f);
    float out[48 * 48];
    emote_error err;
    const float expected = normalised(77.0f, 0.5f, 0.25f);

    CHECKF(emote_preprocess(&spec, &flat, out, &err) == EMOTE_OK, "%s", err.message);
    for (int i = 0; i < 48 * 48; i++) CHECK(fabsf(out[i] - expected) < 1e-4f);
    CHECKF(emote_preprocess(&spec, &small, out, &err) == EMOTE_OK, "%s", err.message);
    for (int i = 0; i < 48 * 48; i++) CHECK(fabsf(out[i] - expected) < 1e-4f);

    CHECKF(emote_preprocess(&spec, &gradient, out, &err) == EMOTE_OK, "%s", err.message);
    int not_increasing = 0, rows_differ = 0;
    for (int y = 0; y < 48; y++)
        for (int x = 0; x < 48; x++) {
            if (x > 0 && !(out[y * 48 + x] > out[y * 48 + x - 1])) not_increasing++;
            if (fabsf(out[y * 48 + x] - out[x]) > 1e-4f) rows_differ++;
        }
    CHECKF(not_increasing == 0, "%d", not_increasing);
    CHECKF(rows_differ == 0, "%d", rows_differ);
    CHECK(out[0] >= normalised(0.0f, 0.5f, 0.25f) && out[47] <= normalised(255.0f, 0.5f, 0.25f));
    emote_image_free(&flat);
    emote_image_free(&small);
    emote_image_free(&gradient);
}

TEST(preprocess_clamps_resampling_overshoot) {
    /* A hard black/white edge, enlarged: Catmull-Rom rings, the clamp keeps 0..255. */
    unsigned char *pixels = malloc(24 * 24);
    for (int i = 0; i < 24 * 24; i++) pixels[i] = (i % 24) < 12 ? 0 : 255;
    emote_image image = {.width = 24, .height = 24, .channels = 1, .pixels = pixels};
    const emote_input_spec spec = gray_spec(48, 0.0f, 1.0f);
    float out[48 * 48];
    emote_error err;
    CHECK(emote_preprocess(&spec, &image, out, &err) == EMOTE_OK);
    float lo = 1, hi = 0;
    for (int i = 0; i < 48 * 48; i++) {
        lo = fminf(lo, out[i]);
        hi = fmaxf(hi, out[i]);
    }
    CHECK(lo == 0.0f && hi == 1.0f);
    emote_image_free(&image);
}

TEST(preprocess_rejects_invalid_arguments) {
    unsigned char pixel[4] = {1, 2, 3, 4};
    emote_image image = {.width = 1, .height = 1, .channels = 1, .pixels = pixel};
    float out[3 * 48 * 48];
    emote_error err;
    emote_input_spec spec = gray_spec(48, 0.5f, 0.25f);
    spec.channels = 2;
    CHECK(emote_preprocess(&spec, &image, out, &err) == EMOTE_ERR_ARGUMENT);
    CHECK(strstr(err.message, "2 channels") != NULL);
    spec = gray_spec(48, 0.5f, 0.0f);
    CHECK(emote_preprocess(&spec, &image, out, &err) == EMOTE_ERR_ARGUMENT);
    spec = gray_spec(48, NAN, 1.0f);
    CHECK(emote_preprocess(&spec, &image, out, &err) == EMOTE_ERR_ARGUMENT);
    spec = gray_spec(0, 0.5f, 0.25f);
    CHECK(emote_preprocess(&spec, &image, out, &err) == EMOTE_ERR_ARGUMENT);
    spec = gray_spec(48, 0.5f, 0.25f);
    emote_image no_pixels = {.width = 1, .height = 1, .channels = 1, .pixels = NULL};
    CHECK(emote_preprocess(&spec, &no_pixels, out, &err) == EMOTE_ERR_ARGUMENT);
    image.channels = 5;
    CHECK(emote_preprocess(&spec, &image, out, &err) == EMOTE_ERR_ARGUMENT);
    image.channels = 1;
    CHECK(emote_preprocess(&spec, &image, NULL, &err) == EMOTE_ERR_ARGUMENT);
    CHECK(emote_preprocess(&spec, &image, out, &err) == EMOTE_OK); /* 1x1 -> 48x48 is fine */
}

/* ---- bad files ---------------------------------------------------------------------- */

TEST(image_load_reports_missing_empty_directory_and_text_files) {
    temp_files t;
    CHECK(temp_open(&t));
    const char *missing = temp_path(&t, "missing.png"), *empty = temp_path(&t, "empty.png");
    const char *dir = temp_path(&t, "dir.png"), *text = temp_path(&t, "notes.png");
    CHECK(write_bytes(empty, "", 0));
    CHECK(mkdir(dir, 0700) == 0);
    CHECK(write_bytes(text, "this is not an image\n", 21));
    CHECK(load_fails_with(missing, EMOTE_ERR_IO, "No such file"));
    CHECK(load_fails_with(empty, EMOTE_ERR_FORMAT, "empty"));
    CHECK(load_fails_with(dir, EMOTE_ERR_IO, "directory"));
    CHECK(load_fails_with(text, EMOTE_ERR_FORMAT, "unsupported image format (supported: PNG, JPEG"));
    temp_close(&t);
}

TEST(image_load_rejects_truncated_png) {
    temp_files t;
    CHECK(temp_open(&t));
    unsigned char *pixels = noise_pixels(64, 64, 3, 77u);
    const char *whole = temp_path(&t, "whole.png"), *cut = temp_path(&t, "cut.png");
    const char *cut_header = temp_path(&t, "cut_header.png");
    CHECK(stbi_write_png(whole, 64, 64, 3, pixels, 64 * 3));
    size_t size = 0;
    unsigned char *file = read_bytes(whole, &size);
    CHECK(file && size > 1000);
    CHECK(write_bytes(cut, file, size / 2));
    CHECK(write_bytes(cut_header, file, 20));
    CHECK(load_fails_with(cut, EMOTE_ERR_FORMAT, "corrupt or truncated image"));
    CHECK(load_fails_with(cut_header, EMOTE_ERR_FORMAT, "corrupt or truncated image: PNG header is cut short"));
    CHECK(write_bytes(cut, file, size - 12)); /* only IEND missing */
    CHECK(load_fails_with(cut, EMOTE_ERR_FORMAT, "corrupt or truncated image"));
    free(file);
    free(pixels);
    temp_close(&t);
}

TEST(image_load_rejects_truncated_jpeg) {
    temp_files t;
    CHECK(temp_open(&t));
    unsigned char *pixels = noise_pixels(64, 64, 3, 78u);
    const char *whole = temp_path(&t, "whole.jpg"), *cut = temp_path(&t, "cut.jpg");
    CHECK(stbi_write_jpg(whole, 64, 64, 3, pixels, 90));
    size_t size = 0;
    unsigned char *file = read_bytes(whole, &size);
    CHECK(file && size > 1000 && file[size - 2] == 0xFF && file[size - 1] == 0xD9);
    CHECK(write_bytes(cut, file, size * 2 / 3));
    CHECK(load_fails_with(cut, EMOTE_ERR_FORMAT, "corrupt or truncated image: "));
    CHECK(write_bytes(cut, file, size - 1));
    CHECK(load_fails_with(cut, EMOTE_ERR_FORMAT, "corrupt or truncated image: "));

    /* Trailing bytes after EOI are accepted. */
    unsigned char *padded = malloc(size + 16);
    memcpy(padded, file, size);
    memset(padded + size, 0x55, 16);
    CHECK(write_bytes(cut, padded, size + 16));
    emote_image image;
    emote_error err;
    CHECKF(emote_image_load(cut, &image, &err) == EMOTE_OK, "%s", err.message);
    emote_image_free(&image);

    /* An EOI inside a metadata segment (like an EXIF thumbnail's) does not count. */
    static const unsigned char app1[] = {0xFF, 0xE1, 0x00, 0x08, 'E', 'x', 0xFF, 0xD8, 0xFF, 0xD9};
    unsigned char *with_thumbnail = malloc(size + sizeof app1);
    memcpy(with_thumbnail, file, 2);
    memcpy(with_thumbnail + 2, app1, sizeof app1);
    memcpy(with_thumbnail + 2 + sizeof app1, file + 2, size - 2);
    CHECK(write_bytes(cut, with_thumbnail, size + sizeof app1));
    CHECKF(emote_image_load(cut, &image, &err) == EMOTE_OK, "%s", err.message);
    emote_image_free(&image);
    CHECK(write_bytes(cut, with_thumbnail, (size + sizeof app1) / 2));
    CHECK(load_fails_with(cut, EMOTE_ERR_FORMAT, "corrupt or truncated image: "));

    free(with_thumbnail);
    free(padded);
    free(file);
    free(pixels);
    temp_close(&t);
}

/* tests/fixtures/jpeg: the sample face rewritten with one scan per component
 * (tools/jpeg_scans.c), then without its luma or its last chroma scan. */
TEST(jpeg_missing_component_scan_is_corrupt) {
    emote_image whole, baseline;
    emote_error err;
    CHECKF(emote_image_load("tests/fixtures/jpeg/scan-per-component.jpg", &whole, &err) == EMOTE_OK, "%s", err.message);
    CHECKF(emote_image_load("models/samples/astronaut-collins.jpg", &baseline, &err) == EMOTE_OK, "%s", err.message);
    CHECK(whole.pixels && baseline.pixels && whole.width == baseline.width && whole.channels == 3 &&
          memcmp(whole.pixels, baseline.pixels, (size_t)whole.width * whole.height * 3) == 0);
    emote_image_free(&whole);
    emote_image_free(&baseline);
    CHECK(load_fails_with("tests/fixtures/jpeg/no-luma-scan.jpg", EMOTE_ERR_FORMAT,
                          "corrupt or truncated image: JPEG has no scan for component 1 of 3 (luma)"));
    CHECK(load_fails_with("tests/fixtures/jpeg/no-chroma-scan.jpg", EMOTE_ERR_FORMAT,
                          "corrupt or truncated image: JPEG has no scan for component 3 of 3 (chroma)"));
    /* Scaled decoding takes the same path. */
    emote_decode_options eighth = {.min_width = 8, .min_height = 8};
    emote_image image;
    CHECK(emote_image_load_with("tests/fixtures/jpeg/no-luma-scan.jpg", &eighth, &image, &err) == EMOTE_ERR_FORMAT);
    CHECKF(strstr(err.message, "no scan for component 1") != NULL, "%s", err.message);
}

TEST(image_load_checks_pixel_limit_before_decoding) {
    temp_files t;
    CHECK(temp_open(&t));
    const char *huge = temp_path(&t, "huge.png"), *at_limit = temp_path(&t, "at_limit.png");
    const char *over = temp_path(&t, "over.png");
    CHECK(write_png_header_only(huge, 20000, 20000));
    CHECK(write_png_header_only(at_limit, 8000, 5000));
    CHECK(write_png_header_only(over, 8000, 5001));
    /* LIMIT, not "truncated": the header alone decided, nothing was decoded. */
    CHECK(load_fails_with(huge, EMOTE_ERR_LIMIT, "20000x20000 pixels is larger than the limit of 40000000 pixels"));
    CHECK(load_fails_with(over, EMOTE_ERR_LIMIT, "8000x5001 pixels"));
    CHECK(load_fails_with(at_limit, EMOTE_ERR_FORMAT, "corrupt or truncated image"));
    temp_close(&t);
}

/* ---- EXIF orientation and scaled JPEG decoding --------------------------------- */

#include "image/image_internal.h"

/* A 3x2 gray image "abc/def" and how each EXIF orientation shows it upright. */
TEST(exif_orientation_turns_every_case_upright) {
    static const char *const upright[9] = {NULL,  "abcdef", "cbafed", "fedcba", "defabc",
                                           "adbecf", "daebfc", "fcebda", "cfbead"};
    static const int widths[9] = {0, 3, 3, 3, 3, 2, 2, 2, 2};
    for (int o = 1; o <= 8; o++) {
        emote_image image = {.width = 3, .height = 2, .channels = 1, .pixels = malloc(6)};
        memcpy(image.pixels, "abcdef", 6);
        emote_error err;
        CHECK(image_apply_orientation(&image, o, "t", &err) == EMOTE_OK);
        CHECKF(image.width == widths[o] && image.width * image.height == 6, "orientation %d: %dx%d", o, image.width,
               image.height);
        CHECKF(memcmp(image.pixels, upright[o], 6) == 0, "orientation %d: %.6s, want %s", o, image.pixels, upright[o]);
        emote_image_free(&image);
    }
}

/* An APP1 Exif segment payload with one IFD0 entry: tag, type, count, value. */
static size_t exif_payload(unsigned char *p, bool big_endian, unsigned tag, unsigned type, unsigned count,
                           unsigned value) {
    memcpy(p, "Exif\0\0", 6);
    unsigned char *t = p + 6;
    memcpy(t, big_endian ? "MM\0*" : "II*\0", 4);
#define PUT16(at, v) (big_endian ? (t[at] = (unsigned char)((v) >> 8), t[(at) + 1] = (unsigned char)(v)) \
                                 : (t[at] = (unsigned char)(v), t[(at) + 1] = (unsigned char)((v) >> 8)))
    PUT16(4, 0);
    PUT16(6, 8); /* IFD0 at offset 8 */
    PUT16(8, 1); /* one entry */
    PUT16(10, tag);
    PUT16(12, type);
    PUT16(14, big_endian ? 0 : count);
    PUT16(16, big_endian ? count : 0);
    PUT16(18, value);
    PUT16(20, 0);
#undef PUT16
    if (big_endian) { /* offsets and counts are 32-bit: high half first */
        t[4] = t[5] = 0, t[6] = 0, t[7] = 8;
    } else {
        t[4] = 8, t[5] = t[6] = t[7] = 0;
    }
    return 6 + 22;
}

TEST(exif_orientation_reads_both_byte_orders_and_ignores_bad_segments) {
    unsigned char p[64];
    for (unsigned o = 1; o <= 8; o++) {
        CHECK(exif_orientation(p, exif_payload(p, false, 0x0112, 3, 1, o)) == (int)o);
        CHECK(exif_orientation(p, exif_payload(p, true, 0x0112, 3, 1, o)) == (int)o);
    }
    CHECK(exif_orientation(p, exif_payload(p, false, 0x0112, 3, 1, 9)) == 1);  /* out of range */
    CHECK(exif_orientation(p, exif_payload(p, false, 0x0112, 4, 1, 6)) == 1);  /* not a SHORT */
    CHECK(exif_orientation(p, exif_payload(p, false, 0x0110, 3, 1, 6)) == 1);  /* another tag */
    size_t n = exif_payload(p, false, 0x0112, 3, 1, 6);
    for (size_t cut = 0; cut < n; cut++) CHECK(exif_orientation(p, cut) == 1); /* every truncation */
    p[6 + 4] = 0xff;                                                            /* IFD offset far away */
    CHECK(exif_orientation(p, n) == 1);
    CHECK(exif_orientation(NULL, 0) == 1);
}

/* A JPEG of width x height noise with an APP1 orientation segment spliced after SOI. */
static unsigned char *jpeg_with_orientation(temp_files *t, int width, int height, int orientation, size_t *size) {
    const char *path = temp_path(t, "plain.jpg");
    unsigned char *pixels = noise_pixels(width, height, 3, 99u);
    bool written = stbi_write_jpg(path, width, height, 3, pixels, 90);
    free(pixels);
    size_t plain_size = 0;
    unsigned char *plain = written ? read_bytes(path, &plain_size) : NULL;
    if (!plain) return NULL;
    unsigned char payload[64];
    size_t payload_size = exif_payload(payload, false, 0x0112, 3, 1, (unsigned)orientation);
    *size = plain_size + 4 + payload_size;
    unsigned char *jpeg = malloc(*size);
    memcpy(jpeg, plain, 2);
    jpeg[2] = 0xFF, jpeg[3] = 0xE1, jpeg[4] = (unsigned char)((payload_size + 2) >> 8),
    jpeg[5] = (unsigned char)(payload_size + 2);
    memcpy(jpeg + 6, payload, payload_size);
    memcpy(jpeg + 6 + payload_size, plain + 2, plain_size - 2);
    free(plain);
    return jpeg;
}

TEST(jpeg_exif_orientation_applied_unless_ignored) {
    temp_files t;
    CHECK(temp_open(&t));
    size_t size;
    unsigned char *jpeg = jpeg_with_orientation(&t, 40, 24, 6, &size);
    CHECK(jpeg != NULL);
    emote_image image;
    emote_error err;
    CHECKF(emote_image_decode(jpeg, size, "six", &image, &err) == EMOTE_OK, "%s", err.message);
    CHECK(image.width == 24 && image.height == 40);
    emote_image_free(&image);
    const emote_decode_options as_stored = {.ignore_orientation = 1};
    CHECK(emote_image_decode_with(jpeg, size, "six", &as_stored, &image, &err) == EMOTE_OK);
    CHECK(image.width == 40 && image.height == 24);
    emote_image_free(&image);
    free(jpeg);
    temp_close(&t);
}

TEST(jpeg_scaled_decoding_keeps_the_requested_minimum) {
    temp_files t;
    CHECK(temp_open(&t));
    size_t size;
    unsigned char *jpeg = jpeg_with_orientation(&t, 800, 600, 1, &size);
    CHECK(jpeg != NULL);
    static const struct {
        int min_width, min_height, width, height;
    } cases[] = {{0, 0, 800, 600}, {96, 96, 200, 150}, {48, 48, 100, 75}, {96, 151, 400, 300},
                 {401, 10, 800, 600}, {1000, 1000, 800, 600}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const emote_decode_options o = {.min_width = cases[i].min_width, .min_height = cases[i].min_height};
        emote_image image;
        emote_error err;
        CHECKF(emote_image_decode_with(jpeg, size, "big", &o, &image, &err) == EMOTE_OK, "%s", err.message);
        CHECKF(image.width == cases[i].width && image.height == cases[i].height, "min %dx%d: got %dx%d",
               cases[i].min_width, cases[i].min_height, image.width, image.height);
        CHECKF(image.source_width == 800 && image.source_height == 600, "source %dx%d", image.source_width,
               image.source_height);
        emote_image_free(&image);
    }
    free(jpeg);
    /* Sideways (orientation 8): the minimum applies to the upright image, 600 wide. */
    jpeg = jpeg_with_orientation(&t, 800, 600, 8, &size);
    const emote_decode_options o = {.min_width = 151, .min_height = 96};
    emote_image image;
    emote_error err;
    CHECK(emote_image_decode_with(jpeg, size, "side", &o, &image, &err) == EMOTE_OK);
    CHECKF(image.width == 300 && image.height == 400, "got %dx%d", image.width, image.height);
    CHECKF(image.source_width == 600 && image.source_height == 800, "source %dx%d", image.source_width,
           image.source_height);
    emote_image_free(&image);
    free(jpeg);
    temp_close(&t);
}

TEST(image_refuses_other_formats_by_magic_bytes) {
    static const struct {
        const char *bytes, *reason;
        size_t size;
    } cases[] = {
        {"8BPS\0\1\0\0\0\0\0\0\0\3", "unsupported image format PSD", 14},
        {"#?RADIANCE\n", "unsupported image format HDR", 11},
        {"\0\0\2\0\0\0\0\0\0\0\0\0\4\0\4\0\x18\0", "unsupported image format (supported: PNG, JPEG, BMP, GIF, PNM)",
         18},
        {"P3\n1 1\n255\n0 0 0\n", "unsupported image format PNM (ASCII or bitmap)", 17},
        {"GIF8", "unsupported image format (supported", 4},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        emote_image image;
        emote_error err;
        CHECK(emote_image_decode(cases[i].bytes, cases[i].size, "x", &image, &err) == EMOTE_ERR_FORMAT);
        CHECKF(strstr(err.message, cases[i].reason) != NULL, "%s", err.message);
    }
}

TEST(image_resize_to_a_given_size) {
    unsigned char *pixels = noise_pixels(40, 30, 3, 5u);
    emote_image image = {.width = 40, .height = 30, .channels = 3, .pixels = pixels}, out;
    emote_error err;
    CHECK(emote_image_resize(&image, 20, 15, &out, &err) == EMOTE_OK);
    CHECK(out.width == 20 && out.height == 15 && out.channels == 3 && out.pixels);
    emote_image_free(&out);
    CHECK(emote_image_resize(&image, 0, 15, &out, &err) == EMOTE_ERR_ARGUMENT);
    free(pixels);
}
