/* bench_decode: how long bytes take to become pixels, on one thread (run by `make bench`).
 *
 *   bench_decode PHOTO.jpg CROP.png [SECONDS]
 *
 * PHOTO is a big JPEG (make bench uses a 12-megapixel one from tools/make_bench_images.py),
 * CROP a 48x48 gray PNG. Files are read into memory once; each row times only decoding,
 * orientation, resizing and preprocessing, the median and minimum of repeated runs.
 *
 * Built with -DBENCH_BEFORE (when Debian's libstb-dev is installed), it also times what emote
 * did before libjpeg-turbo: Debian's stb_image 2.27 decoding the whole photo, then
 * stb_image_resize v1 (stbir_resize_uint8 to the detector size; for the model input, the
 * centre crop in float through stbir_resize_float_generic with the default filters).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "emote.h"

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

static unsigned char *read_all(const char *path, size_t *size) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    unsigned char *data = NULL;
    if (fseek(f, 0, SEEK_END) == 0) {
        long n = ftell(f);
        data = n > 0 ? malloc((size_t)n) : NULL;
        if (data && (fseek(f, 0, SEEK_SET) != 0 || fread(data, 1, (size_t)n, f) != (size_t)n)) {
            free(data);
            data = NULL;
        }
        *size = (size_t)(n > 0 ? n : 0);
    }
    fclose(f);
    return data;
}

typedef enum { DECODE_ONLY, TO_MODEL_INPUT, TO_SIZE } job_kind;

typedef struct {
    const unsigned char *data;
    size_t size;
    emote_decode_options decode;
    job_kind kind;
    int width, height; /* TO_SIZE */
} job;

static const emote_input_spec model_input = {1, 48, 48, {0.5f, 0, 0}, {0.25f, 1, 1}};

static int run_once(const job *j) {
    emote_image image, resized;
    emote_error err;
    static float input[48 * 48];
    if (emote_image_decode_with(j->data, j->size, "bench", &j->decode, &image, &err)) {
        fprintf(stderr, "bench_decode: %s\n", err.message);
        return 1;
    }
    int status = 0;
    if (j->kind == TO_SIZE) {
        status = emote_image_resize(&image, j->width, j->height, &resized, &err);
        if (!status) emote_image_free(&resized);
    } else if (j->kind == TO_MODEL_INPUT) {
        status = emote_preprocess(&model_input, &image, input, &err);
    }
    if (status) fprintf(stderr, "bench_decode: %s\n", err.message);
    emote_image_free(&image);
    return status;
}

#ifdef BENCH_BEFORE
#include <stb/stb_image.h>
#include <stb/stb_image_resize.h>

static int run_once_before(const job *j) {
    int w, h, c;
    unsigned char *pixels = stbi_load_from_memory(j->data, (int)j->size, &w, &h, &c, 0);
    if (!pixels) return 1;
    int ok = 1;
    if (j->kind == TO_SIZE) {
        unsigned char *out = malloc((size_t)j->width * (size_t)j->height * (size_t)c);
        ok = out && stbir_resize_uint8(pixels, w, h, 0, out, j->width, j->height, 0, c);
        free(out);
    } else if (j->kind == TO_MODEL_INPUT) { /* centre square, BT.601 gray in float, resize */
        int side = w < h ? w : h, x0 = (w - side) / 2, y0 = (h - side) / 2;
        float *crop = malloc((size_t)side * (size_t)side * sizeof(float)), out[48 * 48];
        for (int y = 0; crop && y < side; y++)
            for (int x = 0; x < side; x++) {
                const unsigned char *p = pixels + ((size_t)(y0 + y) * (size_t)w + (size_t)(x0 + x)) * (size_t)c;
                crop[(size_t)y * (size_t)side + (size_t)x] = c < 3 ? p[0] : 0.299f * p[0] + 0.587f * p[1] + 0.114f * p[2];
            }
        ok = crop && stbir_resize_float_generic(crop, side, side, 0, out, 48, 48, 0, 1, STBIR_ALPHA_CHANNEL_NONE, 0,
                                                STBIR_EDGE_CLAMP, STBIR_FILTER_DEFAULT, STBIR_COLORSPACE_LINEAR, NULL);
        free(crop);
    }
    stbi_image_free(pixels);
    return !ok;
}
#endif

static int compare_doubles(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Runs until `seconds` have passed (at least 3 runs, at most 10000); median and min in ms. */
static int time_job(const char *label, const job *j, double seconds, int (*run)(const job *)) {
    static double times[10000];
    int runs = 0;
    double start = now_ms();
    if (run(j)) return 1; /* warm-up */
    while (runs < 10000 && (runs < 3 || now_ms() - start < seconds * 1e3)) {
        double t0 = now_ms();
        if (run(j)) return 1;
        times[runs++] = now_ms() - t0;
    }
    qsort(times, (size_t)runs, sizeof times[0], compare_doubles);
    printf("| %-62s | %8.2f | %8.2f | %7.0f | %5d |\n", label, times[runs / 2], times[0], 1e3 / times[runs / 2],
           runs);
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: bench_decode PHOTO.jpg CROP.png [SECONDS]\n");
        return 2;
    }
    double seconds = argc > 3 ? atof(argv[3]) : 2.0;
    size_t photo_size = 0, crop_size = 0;
    unsigned char *photo = read_all(argv[1], &photo_size), *crop = read_all(argv[2], &crop_size);
    if (!photo || !crop) {
        fprintf(stderr, "bench_decode: cannot read %s\n", photo ? argv[2] : argv[1]);
        return 1;
    }
    emote_image probe;
    emote_error err;
    if (emote_image_decode(photo, photo_size, argv[1], &probe, &err)) {
        fprintf(stderr, "bench_decode: %s\n", err.message);
        return 1;
    }
    const int w = probe.width, h = probe.height;
    emote_image_free(&probe);
    /* the detector input: longer side 640 */
    const int dw = w >= h ? 640 : (int)((long)w * 640 / h), dh = w >= h ? (int)((long)h * 640 / w) : 640;
    const emote_decode_options full = {0}, for_model = {.min_width = 96, .min_height = 96},
                               for_detector = {.min_width = dw, .min_height = dh};
    const struct {
        const char *what;
        job j;
    } rows[] = {
        {"pixels, full-size decode", {photo, photo_size, full, DECODE_ONLY, 0, 0}},
        {"48x48 model input, full-size decode", {photo, photo_size, full, TO_MODEL_INPUT, 0, 0}},
        {"48x48 model input, scaled decode (as the CLI does)", {photo, photo_size, for_model, TO_MODEL_INPUT, 0, 0}},
        {"detector input, full-size decode + resize", {photo, photo_size, full, TO_SIZE, dw, dh}},
        {"detector input, scaled decode + resize", {photo, photo_size, for_detector, TO_SIZE, dw, dh}},
    };
    printf("Decode benchmark, one thread: %s (%dx%d, %.1f MP), detector input %dx%d, %.0f s per row\n\n", argv[1],
           w, h, (double)w * h / 1e6, dw, dh, seconds);
    printf("| %-62s | %8s | %8s | %7s | %5s |\n", "step", "median ms", "min ms", "per s", "runs");
    printf("| %-62s | %8s | %8s | %7s | %5s |\n", "---", "---:", "---:", "---:", "---:");
#ifdef BENCH_BEFORE
    const struct {
        const char *what;
        job j;
    } before[] = {
        {"pixels (before: stb_image 2.27)", {photo, photo_size, full, DECODE_ONLY, 0, 0}},
        {"48x48 model input (before: stb_image 2.27 + resize v1)", {photo, photo_size, full, TO_MODEL_INPUT, 0, 0}},
        {"detector input (before: stb_image 2.27 + resize v1)", {photo, photo_size, full, TO_SIZE, dw, dh}},
    };
    for (size_t i = 0; i < sizeof before / sizeof before[0]; i++) {
        char label[160];
        snprintf(label, sizeof label, "photo -> %s", before[i].what);
        if (time_job(label, &before[i].j, seconds, run_once_before)) return 1;
    }
    const job crop_before = {crop, crop_size, full, TO_MODEL_INPUT, 0, 0};
    if (time_job("48x48 gray PNG crop -> model input (before: stb_image 2.27)", &crop_before, seconds,
                 run_once_before))
        return 1;
#endif
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        char label[160];
        snprintf(label, sizeof label, "photo -> %s", rows[i].what);
        if (time_job(label, &rows[i].j, seconds, run_once)) return 1;
    }
    const job crop_job = {crop, crop_size, full, TO_MODEL_INPUT, 0, 0};
    if (time_job("48x48 gray PNG crop -> 48x48 model input", &crop_job, seconds, run_once)) return 1;
    free(photo);
    free(crop);
    return 0;
}
