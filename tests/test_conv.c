/* The running OpenBLAS kernel against its entry in conv.c's table of GEMM layouts: a column
 * of C = W x B laid out as gemm_layout says comes out bitwise the same whatever the GEMM's
 * width and the column's place, and a block of rows at multiples of row_align the same as in
 * the whole GEMM. tests/cli_blas_kernels.sh runs this under each OPENBLAS_CORETYPE the CPU can
 * run, so every entry of the table is measured again where CI runs. */
#include <cblas.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "layers/layers.h"

static unsigned long long next_random(unsigned long long *s) {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}
static int random_below(unsigned long long *s, int n) { return (int)(next_random(s) % (unsigned long long)n); }
static float random_float(unsigned long long *s) { return (float)(next_random(s) >> 40) / (float)(1 << 24) - 0.5f; }

/* C (m x width, zeroed first) = A (m x k) x B (k x width), beta 1, as conv.c calls it. */
static void gemm(int m, int width, int k, const float *a, const float *b, float *c) {
    memset(c, 0, sizeof(float) * (size_t)m * width);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, width, k, 1.0f, a, k, b, width, 1.0f, c, width);
}

/* The kernel's largest width, or this much where it has none. */
#define PROBE_WIDTH 640

TEST(conv_gemm_layout_holds_for_running_blas_kernel) {
    const gemm_layout *g = gemm_layout_current();
    if (!g) {
        fprintf(stderr, "  OpenBLAS kernel %s (%s) not in conv.c's table: convs run one GEMM per image\n",
                openblas_get_corename(), openblas_get_config());
        return;
    }
    fprintf(stderr, "  OpenBLAS kernel %s: lead %d, align %d, trail %d, max width %d, min MACs %g, row align %d\n",
            g->core, g->lead, g->align, g->trail, g->max_width, g->min_macs, g->row_align);
    openblas_set_num_threads(1);
    static const int ks[] = {64, 96, 192, 288, 576, 864, 1728};
    static const int ms[] = {16, 32, 64, 96, 192, 384};
    const int max_width = g->max_width ? g->max_width : PROBE_WIDTH;
    const int room = max_width / g->align * g->align - g->lead - g->trail; /* columns that may count */
    unsigned long long seed = 0x9e3779b97f4a7c15ull;
    /* EMOTE_TEST_QUICK (valgrind): fewer and smaller GEMMs. */
    const bool quick = getenv("EMOTE_TEST_QUICK") != NULL;
    int trials = quick ? 10 : 120, column_failures = 0, row_failures = 0;
    for (int t = 0; t < trials; t++) {
        const int k = ks[random_below(&seed, quick ? 3 : 7)], m = ms[random_below(&seed, quick ? 3 : 6)];
        /* An image of w columns at offset o among `cols` that count (its neighbours random). */
        const int w = 1 + random_below(&seed, t % 2 ? 48 : room);
        const int o = random_below(&seed, room - w + 1), cols = o + w + random_below(&seed, room - o - w + 1);
        const double macs_per_col = (double)m * k;
        const int alone = gemm_layout_width(g, w, macs_per_col), width = gemm_layout_width(g, cols, macs_per_col);
        CHECK(alone > 0 && width > 0);
        if (!alone || !width) return;
        float *a = malloc(sizeof(float) * (size_t)m * k), *b = malloc(sizeof(float) * (size_t)k * width);
        float *b1 = calloc((size_t)k * alone, sizeof(float)), *c = malloc(sizeof(float) * (size_t)m * width);
        float *c1 = malloc(sizeof(float) * (size_t)m * alone), *c2 = malloc(sizeof(float) * (size_t)m * width);
        if (!a || !b || !b1 || !c || !c1 || !c2) {
            CHECK(!"out of memory");
            return;
        }
        for (size_t i = 0; i < (size_t)m * k; i++) a[i] = random_float(&seed);
        for (size_t i = 0; i < (size_t)k * width; i++) b[i] = random_float(&seed);
        for (int r = 0; r < k; r++)
            for (int j = 0; j < w; j++) b1[(size_t)r * alone + g->lead + j] = b[(size_t)r * width + g->lead + o + j];
        gemm(m, alone, k, a, b1, c1);
        gemm(m, width, k, a, b, c);
        bool same = true;
        for (int r = 0; r < m; r++)
            same = same && !memcmp(c + (size_t)r * width + g->lead + o, c1 + (size_t)r * alone + g->lead, sizeof(float) * w);
        if (!same && column_failures++ < 5)
            fprintf(stderr, "  columns differ: K %d, %d rows, %d columns at %d of %d (GEMM widths %d and %d)\n", k, m,
                    w, o, cols, alone, width);
        /* Rows [r0, r1) on their own, at multiples of row_align, in the wide GEMM. */
        const int blocks = m / g->row_align, r0 = g->row_align * random_below(&seed, blocks);
        const int r1 = r0 + g->row_align * (1 + random_below(&seed, blocks - r0 / g->row_align));
        if ((double)(r1 - r0) * k * width > g->min_macs) {
            gemm(r1 - r0, width, k, a + (size_t)r0 * k, b, c2);
            if (memcmp(c2, c + (size_t)r0 * width, sizeof(float) * (size_t)(r1 - r0) * width) && row_failures++ < 5)
                fprintf(stderr, "  rows [%d, %d) of %d differ: K %d, width %d\n", r0, r1, m, k, width);
        }
        free(a);
        free(b);
        free(b1);
        free(c);
        free(c1);
        free(c2);
    }
    /* Transposed (pixel_align): an image of w pixels in slot s of `slots`, against it alone. */
    int slot_failures = 0;
    for (int t = 0; g->pixel_align && t < trials; t++) {
        const int k = ks[random_below(&seed, quick ? 3 : 7)], m = ms[random_below(&seed, quick ? 3 : 6)];
        const int w = 1 + random_below(&seed, 64), slot = (w + g->pixel_align - 1) / g->pixel_align * g->pixel_align;
        const int slots = 1 + random_below(&seed, 40), s = random_below(&seed, slots), width = slots * slot;
        float *a = malloc(sizeof(float) * (size_t)m * k), *b = malloc(sizeof(float) * (size_t)k * width);
        float *b1 = calloc((size_t)k * slot, sizeof(float)), *c = calloc((size_t)width * m, sizeof(float));
        float *c1 = calloc((size_t)slot * m, sizeof(float));
        if (!a || !b || !b1 || !c || !c1) {
            CHECK(!"out of memory");
            return;
        }
        for (size_t i = 0; i < (size_t)m * k; i++) a[i] = random_float(&seed);
        for (size_t i = 0; i < (size_t)k * width; i++) b[i] = random_float(&seed);
        for (int r = 0; r < k; r++) memcpy(b1 + (size_t)r * slot, b + (size_t)r * width + (size_t)s * slot, sizeof(float) * w);
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasTrans, slot, m, k, 1.0f, b1, slot, a, k, 1.0f, c1, m);
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasTrans, width, m, k, 1.0f, b, width, a, k, 1.0f, c, m);
        if (memcmp(c + (size_t)s * slot * m, c1, sizeof(float) * (size_t)w * m) && slot_failures++ < 5)
            fprintf(stderr, "  transposed: K %d, %d rows, %d pixels in slot %d of %d differ\n", k, m, w, s, slots);
        free(a);
        free(b);
        free(b1);
        free(c);
        free(c1);
    }
    CHECKF(slot_failures == 0, "%d of %d trials: a transposed image depends on its slot (kernel %s)", slot_failures,
           trials, g->core);
    CHECKF(column_failures == 0, "%d of %d trials: a column depends on its place (kernel %s)", column_failures, trials,
           g->core);
    CHECKF(row_failures == 0, "%d of %d trials: a block of rows differs (kernel %s)", row_failures, trials, g->core);
}
