/* bench_faces: face detection on one thread, emote against libfacedetection, the reference
 * library with the same YuNet weights, on the same image in the same run (`make bench-faces`,
 * part of `make bench`).
 *
 *   bench_faces IMAGE [SECONDS [MODEL]]
 *
 * IMAGE: make bench uses a 640x480 scene from tools/make_bench_images.py. MODEL: the detector
 * file (default models/yunet.safetensors). Each side starts from the image's 8-bit pixels in
 * memory (RGB for emote, BGR for the reference, converted once) and ends with the faces in
 * image pixels; emote runs emote_detect_faces at --detect-size 640 (no resize at 640x480).
 * The two alternate, one call each, until SECONDS (default 3) have passed, so that both see
 * the same machine load; the median and minimum of each are printed, and the ratio of medians.
 * The reference (tools/bench_faces_ref.cpp) is compiled by the Makefile with g++ -O3 and its
 * README's flags; without -fopenmp it runs on one thread, and emote's OpenBLAS is set to one.
 */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "emote.h"

#ifndef REFERENCE_BUILD
#define REFERENCE_BUILD "?"
#endif
#define MAX_RUNS 10000

void choose_blas_kernel(char **argv); /* src/cli/blas_kernel.c: the OpenBLAS kernel the CLI uses */
int reference_detect_faces(unsigned char *buffer, unsigned char *bgr, int width, int height);
extern const int reference_buffer_size;

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

static int compare_doubles(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

typedef struct {
    const emote_model *detector;
    const emote_image *rgb;
    unsigned char *bgr, *buffer;
} inputs;

/* Each returns the face count, or -1. */
static int run_emote(const inputs *in) {
    const emote_detect_options options = EMOTE_DETECT_DEFAULTS;
    emote_face *faces;
    int n;
    emote_error err;
    if (emote_detect_faces(in->detector, in->rgb, &options, &faces, &n, &err)) {
        fprintf(stderr, "bench_faces: %s\n", err.message);
        return -1;
    }
    free(faces);
    return n;
}

static int run_reference(const inputs *in) {
    return reference_detect_faces(in->buffer, in->bgr, in->rgb->width, in->rgb->height);
}

typedef struct {
    const char *name;
    int (*run)(const inputs *);
    double ms[MAX_RUNS], median;
    int faces;
} contender;

static void print_row(contender *c, int runs) {
    qsort(c->ms, (size_t)runs, sizeof c->ms[0], compare_doubles);
    c->median = c->ms[runs / 2];
    printf("| %-44s | %9.2f | %8.2f | %8.1f | %5d | %5d |\n", c->name, c->median, c->ms[0], 1e3 / c->median, runs,
           c->faces);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: bench_faces IMAGE [SECONDS [MODEL]]\n");
        return 2;
    }
    choose_blas_kernel(argv);
    openblas_set_num_threads(1);
    const double seconds = argc > 2 ? atof(argv[2]) : 3.0;
    const char *model = argc > 3 ? argv[3] : "models/yunet.safetensors";
    emote_error err;
    emote_image image;
    emote_model *detector = emote_model_open(model, &err);
    if (!detector || emote_image_load(argv[1], &image, &err)) {
        fprintf(stderr, "bench_faces: %s\n", err.message);
        return 1;
    }
    if (image.channels != 3) {
        fprintf(stderr, "bench_faces: %s: an RGB image, please\n", argv[1]);
        return 1;
    }
    const size_t pixels = (size_t)image.width * (size_t)image.height;
    inputs in = {detector, &image, malloc(3 * pixels), malloc((size_t)reference_buffer_size)};
    if (!in.bgr || !in.buffer) return 1;
    for (size_t i = 0; i < pixels; i++)
        for (int c = 0; c < 3; c++) in.bgr[3 * i + (size_t)c] = image.pixels[3 * i + 2 - (size_t)c];

    static contender sides[2] = {{.name = "emote (emote_detect_faces)", .run = run_emote},
                                 {.name = "libfacedetection (reference)", .run = run_reference}};
    for (int s = 0; s < 2; s++) /* warm-up, and the face counts */
        if ((sides[s].faces = sides[s].run(&in)) < 0) return 1;
    int runs = 0;
    for (double start = now_ms(); runs < MAX_RUNS && (runs < 5 || now_ms() - start < seconds * 1e3); runs++) {
        for (int s = 0; s < 2; s++) {
            double t0 = now_ms();
            if (sides[s].run(&in) < 0) return 1;
            sides[s].ms[runs] = now_ms() - t0;
        }
    }
    printf("Face detection, one thread: %s (%dx%d), %.0f s, alternating calls\n", argv[1], image.width,
           image.height, seconds);
    printf("emote: %s, OpenBLAS %s kernels; reference: %s\n\n", model, openblas_get_corename(), REFERENCE_BUILD);
    printf("| %-44s | %9s | %8s | %8s | %5s | %5s |\n", "detector", "median ms", "min ms", "images/s", "runs",
           "faces");
    printf("| %-44s | %9s | %8s | %8s | %5s | %5s |\n", "---", "---:", "---:", "---:", "---:", "---:");
    for (int s = 0; s < 2; s++) print_row(&sides[s], runs);
    printf("\nemote / reference speed (images/s, medians): %.2fx\n", sides[1].median / sides[0].median);
    free(in.bgr);
    free(in.buffer);
    emote_image_free(&image);
    emote_model_close(detector);
    return 0;
}
