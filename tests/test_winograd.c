/* Winograd F(2x2, 3x3) (src/layers/winograd.c) against the im2col + GEMM path it replaces, on
 * random convs of the default model's shapes and of odd sizes, paddings and batches; and the
 * same image's output bitwise the same whatever its batch and the thread count. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "layer_testlib.h"
#include "layers/layers.h"
#include "util.h"

/* Winograd's transforms add rounding: its output against im2col's, normalised MSE
 * (measured: at most 2.5e-14 on these shapes). */
#define MAX_WINOGRAD_NMSE 1e-12

typedef struct {
    conv_layer conv;
    float *weight, *scale, *bias, *u;
} test_conv;

/* A random 3x3 stride-1 conv cin -> cout on size x size inputs, its weights transformed. */
static test_conv make_conv(int cin, int cout, int size, int padding, bool relu, uint64_t seed) {
    test_conv t;
    uint64_t state = seed * 2654435761u + 1;
    const float weight_range = 1.0f / sqrtf((float)cin * 9);
    t.weight = random_floats((size_t)cout * cin * 9, &state);
    for (size_t i = 0; i < (size_t)cout * cin * 9; i++) t.weight[i] *= weight_range;
    t.scale = random_floats((size_t)cout, &state);
    t.bias = random_floats((size_t)cout, &state);
    graph_op op = {.kind = OP_CONV2D,
                   .u.conv = {.cin = cin, .cout = cout, .kh = 3, .kw = 3, .stride = 1, .padding = padding, .groups = 1,
                              .relu = relu, .weight = t.weight, .scale = t.scale, .bias = t.bias}};
    op_set_input(&op, (shape3){cin, size, size}, (shape3){cin, size, size});
    t.conv = op.u.conv;
    t.u = malloc(winograd_weight_floats(&t.conv) * sizeof(float));
    winograd_transform_weights(&t.conv, t.u);
    return t;
}

static void free_conv(test_conv *t) {
    free(t->weight);
    free(t->scale);
    free(t->bias);
    free(t->u);
}

/* conv_forward on n images (CNHW), as im2col + GEMM or as Winograd. */
static float *run_conv(const test_conv *t, bool winograd, const float *in, int n, thread_pool *pool) {
    conv_layer c = t->conv;
    c.winograd_weight = winograd ? t->u : NULL;
    return run_conv_layer(&c, in, n, pool);
}

static double nmse(const float *x, const float *ref, size_t count) {
    double err = 0, norm = 0;
    for (size_t i = 0; i < count; i++) {
        err += ((double)x[i] - ref[i]) * ((double)x[i] - ref[i]);
        norm += (double)ref[i] * ref[i];
    }
    return norm > 0 ? err / norm : err;
}

/* Image `img` of a CNHW batch of n, copied out as a batch of one. */
static float *one_image(const float *batch, shape3 s, int n, int img) {
    const size_t plane = (size_t)s.h * s.w;
    float *x = malloc(shape_size(s) * sizeof(float));
    for (int c = 0; c < s.c; c++) memcpy(x + c * plane, batch + ((size_t)c * n + img) * plane, plane * sizeof(float));
    return x;
}

typedef struct {
    int cin, cout, size, padding;
    bool wanted; /* conv_wants_winograd: the model loader transforms its weights */
} conv_case;

/* The default model's four 3x3 stride-1 convs (the last stays on im2col), then odd sizes,
 * paddings 0 and 2, an output of one pixel. Winograd runs on every one here. */
static const conv_case cases[] = {
    {32, 64, 24, 1, true}, {96, 96, 12, 1, true}, {192, 192, 6, 1, true}, {384, 384, 3, 1, false},
    {40, 24, 5, 1, true},  {48, 20, 7, 1, true},  {64, 16, 1, 1, false},  {36, 8, 9, 0, true},
    {33, 17, 6, 2, true},  {80, 48, 11, 1, true},
};

TEST(winograd_matches_im2col_on_random_convs) {
    thread_pool *pool = pool_new(2);
    const int max_batch = getenv("EMOTE_TEST_QUICK") ? 1 : 3; /* valgrind: batches of one */
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        const conv_case *cc = &cases[k];
        for (int n = 1; n <= max_batch; n += 2) {
            test_conv t = make_conv(cc->cin, cc->cout, cc->size, cc->padding, k % 2 == 0, k + 1);
            CHECKF(conv_wants_winograd(&t.conv) == cc->wanted, "%d -> %d at %dx%d: conv_wants_winograd is %d",
                   cc->cin, cc->cout, cc->size, cc->size, !cc->wanted);
            uint64_t state = 1000 + k;
            float *in = random_floats(shape_size(t.conv.in) * (size_t)n, &state);
            float *ref = run_conv(&t, false, in, n, NULL), *got = run_conv(&t, true, in, n, NULL);
            const size_t count = shape_size(t.conv.out) * (size_t)n;
            double e = nmse(got, ref, count);
            CHECKF(e <= MAX_WINOGRAD_NMSE, "%d -> %d at %dx%d, pad %d, batch %d: NMSE %.3g > %.1g", cc->cin, cc->cout,
                   cc->size, cc->size, cc->padding, n, e, MAX_WINOGRAD_NMSE);
            float *pooled = run_conv(&t, true, in, n, pool);
            CHECKF(memcmp(pooled, got, count * sizeof(float)) == 0, "%d -> %d at %dx%d, batch %d: 2 threads differ",
                   cc->cin, cc->cout, cc->size, cc->size, n);
            for (int img = 0; img < n && n > 1; img++) {
                float *alone_in = one_image(in, t.conv.in, n, img), *alone = run_conv(&t, true, alone_in, 1, NULL);
                float *in_batch = one_image(got, t.conv.out, n, img);
                CHECKF(memcmp(alone, in_batch, shape_size(t.conv.out) * sizeof(float)) == 0,
                       "%d -> %d at %dx%d: image %d of %d differs from the image alone", cc->cin, cc->cout, cc->size,
                       cc->size, img, n);
                free(alone_in);
                free(alone);
                free(in_batch);
            }
            if (n == 1) printf("     %3d -> %3d at %2dx%-2d pad %d: NMSE vs im2col %.2e\n", cc->cin, cc->cout, cc->size,
                               cc->size, cc->padding, e);
            free(in);
            free(ref);
            free(got);
            free(pooled);
            free_conv(&t);
        }
    }
    pool_free(pool);
}

/* A transform that is wrong in one place must show: the weights of one tile position off by
 * a little give an error far above the tolerance. */
TEST(winograd_wrong_transform_is_caught) {
    test_conv t = make_conv(32, 16, 8, 1, false, 7);
    uint64_t state = 99;
    float *in = random_floats(shape_size(t.conv.in), &state);
    const size_t plane = packed_weight_floats(t.conv.cout, t.conv.cin);
    for (size_t i = 0; i < plane; i++) t.u[5 * plane + i] *= 1.01f; /* position (1, 1) */
    float *ref = run_conv(&t, false, in, 1, NULL), *got = run_conv(&t, true, in, 1, NULL);
    CHECK(nmse(got, ref, shape_size(t.conv.out)) > 100 * MAX_WINOGRAD_NMSE);
    free(in);
    free(ref);
    free(got);
    free_conv(&t);
}
