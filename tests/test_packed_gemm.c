/* Our GEMM over packed weights (src/layers/packed_gemm.c) against a float64 reference, and the
 * property the engine builds on: every entry is the same bits whatever the GEMM's width, the
 * entry's place in it, the block of rows asked for and the kernel (AVX-512, AVX2, scalar).
 * Then a conv on it against the OpenBLAS path and across batches and threads. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "layer_testlib.h"
#include "layers/layers.h"
#include "util.h"

/* ct ((size_t)(cols) x ldc) for W (rows x k) packed and B (k x cols, rows ldb apart). */
static float *run_gemm(const float *packed, int rows, int k, int r0, int r1, const float *b, size_t ldb, int cols) {
    const size_t ldc = packed_ldc(rows);
    float *ct = calloc((size_t)(cols) * ldc, sizeof(float));
    packed_gemm(packed, k, r0, r1, b, ldb, cols, ct, ldc);
    return ct;
}

static const char *const KERNELS[] = {"avx512", "avx2", "scalar"};

TEST(packed_gemm_matches_float64_and_each_entry_stands_alone) {
    static const int shapes[][3] = {/* rows, k, cols: the default model's, then odd ones */
                                    {384, 3456, 9}, {192, 864, 36}, {96, 96, 37}, {64, 32, 144}, {33, 300, 13},
                                    {40, 1, 5},     {7, 17, 1},     {96, 513, 25}};
    const bool quick = getenv("EMOTE_TEST_QUICK") != NULL;
    uint64_t state = 12345;
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        const int rows = shapes[s][0], k = quick && shapes[s][1] > 1000 ? 600 : shapes[s][1], cols = shapes[s][2];
        const size_t ldb = (size_t)cols + 3, ldc = packed_ldc(rows);
        float *w = random_floats((size_t)rows * k, &state), *b = random_floats((size_t)k * ldb, &state);
        float *packed = malloc(packed_weight_floats(rows, k) * sizeof(float));
        pack_weights(w, rows, k, packed);
        float *ct = run_gemm(packed, rows, k, 0, (int)ldc, b, ldb, cols);
        double worst = 0;
        for (int p = 0; p < cols; p++)
            for (int o = 0; o < rows; o++) {
                double ref = 0, mag = 0;
                for (int kk = 0; kk < k; kk++) {
                    ref += (double)w[(size_t)o * k + kk] * b[(size_t)kk * ldb + p];
                    mag += fabs((double)w[(size_t)o * k + kk] * b[(size_t)kk * ldb + p]);
                }
                const double err = fabs(ct[(size_t)p * ldc + o] - ref) / (mag > 0 ? mag : 1);
                if (err > worst) worst = err;
            }
        CHECKF(worst < 1e-6, "%d x %d x %d: error %.3g of the sum of |terms|", rows, k, cols, worst);
        /* Column p alone (a GEMM of width 1 at another place in memory), and a block of rows. */
        for (int p = 0; p < cols; p += cols > 8 ? cols / 5 : 1) {
            float *col = malloc((size_t)k * sizeof(float));
            for (int kk = 0; kk < k; kk++) col[kk] = b[(size_t)kk * ldb + p];
            const int r0 = ldc > 32 ? 32 : 0;
            float *alone = run_gemm(packed, rows, k, r0, (int)ldc, col, 1, 1);
            for (int o = r0; o < rows; o++)
                CHECKF(alone[o] == ct[(size_t)p * ldc + o], "%d x %d x %d: column %d row %d differs alone", rows, k,
                       cols, p, o);
            free(col);
            free(alone);
        }
        /* Columns [1, cols) as a GEMM of their own. */
        if (cols > 1) {
            float *shifted = run_gemm(packed, rows, k, 0, (int)ldc, b + 1, ldb, cols - 1);
            CHECKF(memcmp(shifted, ct + ldc, (size_t)(cols - 1) * ldc * sizeof(float)) == 0,
                   "%d x %d x %d: columns shifted by one differ", rows, k, cols);
            free(shifted);
        }
        /* Every kernel this CPU has: the same bits. */
        for (size_t i = 0; i < sizeof KERNELS / sizeof KERNELS[0]; i++) {
            if (!packed_gemm_use(KERNELS[i])) {
                fprintf(stderr, "  no %s on this CPU\n", KERNELS[i]);
                continue;
            }
            float *other = run_gemm(packed, rows, k, 0, (int)ldc, b, ldb, cols);
            CHECKF(memcmp(other, ct, (size_t)cols * ldc * sizeof(float)) == 0, "%d x %d x %d: kernel %s differs", rows,
                   k, cols, KERNELS[i]);
            free(other);
        }
        packed_gemm_use(NULL);
        free(w);
        free(b);
        free(packed);
        free(ct);
    }
}

/* conv_forward on n CNHW images, on OpenBLAS or on packed_gemm. */
static float *run_conv(conv_layer c, const float *packed, const float *in, int n, thread_pool *pool) {
    c.packed_weight = packed;
    return run_conv_layer(&c, in, n, pool);
}

TEST(packed_conv_matches_openblas_and_any_batch_or_threads) {
    static const int cases[][6] = {/* cin, cout, kernel, stride, padding, input side */
                                   {64, 96, 1, 2, 0, 24}, {64, 96, 3, 2, 1, 24},  {96, 192, 3, 2, 1, 12},
                                   {192, 384, 3, 1, 1, 3}, {128, 64, 1, 1, 0, 10}, {40, 33, 5, 1, 2, 7}};
    thread_pool *pool = pool_new(2);
    const int batch = getenv("EMOTE_TEST_QUICK") ? 2 : 5;
    uint64_t state = 777;
    for (size_t t = 0; t < sizeof cases / sizeof cases[0]; t++) {
        const int cin = cases[t][0], cout = cases[t][1], kern = cases[t][2], side = cases[t][5];
        const size_t k = (size_t)cin * kern * kern;
        float *w = random_floats((size_t)cout * k, &state), *scale = random_floats((size_t)cout, &state);
        float *bias = random_floats((size_t)cout, &state);
        graph_op op = {.kind = OP_CONV2D,
                       .u.conv = {.cin = cin, .cout = cout, .kh = kern, .kw = kern, .stride = cases[t][3],
                                  .padding = cases[t][4], .groups = 1, .relu = t % 2 == 0, .weight = w,
                                  .scale = scale, .bias = bias}};
        op_set_input(&op, (shape3){cin, side, side}, (shape3){cin, side, side});
        const conv_layer c = op.u.conv;
        CHECKF(conv_wants_packed(&c), "case %zu: conv_wants_packed", t);
        float *packed = malloc(packed_weight_floats(cout, (int)k) * sizeof(float));
        pack_weights(w, cout, (int)k, packed);
        float *in = random_floats(shape_size(c.in) * batch, &state);
        float *ref = run_conv(c, NULL, in, batch, NULL), *got = run_conv(c, packed, in, batch, NULL);
        float *pooled = run_conv(c, packed, in, batch, pool);
        const size_t count = shape_size(c.out) * batch, plane = (size_t)c.out.h * c.out.w;
        double err = 0, norm = 0;
        for (size_t i = 0; i < count; i++) {
            err += ((double)got[i] - ref[i]) * ((double)got[i] - ref[i]);
            norm += (double)ref[i] * ref[i];
        }
        CHECKF(err <= 1e-12 * norm, "case %zu: NMSE %.3g against OpenBLAS", t, err / norm);
        CHECKF(memcmp(pooled, got, count * sizeof(float)) == 0, "case %zu: 2 threads differ from 1", t);
        for (int img = 0; img < batch; img++) { /* each image alone, on 1 and 2 threads */
            float *one = malloc(shape_size(c.in) * sizeof(float));
            for (int ch = 0; ch < cin; ch++)
                memcpy(one + (size_t)ch * side * side, in + ((size_t)ch * batch + img) * side * side,
                       (size_t)side * side * sizeof(float));
            float *alone = run_conv(c, packed, one, 1, img % 2 ? pool : NULL);
            for (int o = 0; o < cout; o++)
                CHECKF(memcmp(alone + o * plane, got + ((size_t)o * batch + img) * plane, plane * sizeof(float)) == 0,
                       "case %zu: image %d channel %d differs alone", t, img, o);
            free(one);
            free(alone);
        }
        free(w);
        free(scale);
        free(bias);
        free(packed);
        free(in);
        free(ref);
        free(got);
        free(pooled);
    }
    pool_free(pool);
}
