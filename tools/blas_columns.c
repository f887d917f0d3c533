/* blas_columns: when does a column of an OpenBLAS sgemm depend on its place? The study behind
 * conv.c's table of GEMM layouts (tests/test_conv.c re-checks the running kernel's entry).
 *
 *   cc -O2 -o blas_columns tools/blas_columns.c -lopenblas
 *   OPENBLAS_CORETYPE=Haswell ./blas_columns map 64 288 16 64 576 1152
 *       for each width W: the columns of a 64 x W x 288 GEMM that differ from the same column
 *       computed in the middle of a 48-wide GEMM (Haswell: the first 8 and last 8..15 of each
 *       block of 320 columns);
 *   OPENBLAS_CORETYPE=Haswell ./blas_columns layout 8 8 8 320 1000 [small]
 *       random images placed at random offsets among the columns of GEMMs laid out as
 *       LEAD ALIGN TRAIL MAX_WIDTH say (gemm_layout), against each image alone: how many
 *       differ; GEMMs of at most 10^6 multiply-adds are left out unless `small` is given.
 * C = W x B as conv.c calls it: row-major, beta 1 over a zeroed C, one OpenBLAS thread. */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static unsigned long long state = 88172645463325252ull;
static unsigned long long next_random(void) {
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    return state;
}
static float random_float(void) { return (float)(next_random() >> 40) / (float)(1 << 24) * 2.0f - 1.0f; }
static int random_below(int n) { return n > 0 ? (int)(next_random() % (unsigned)n) : 0; }

static void gemm(int m, int width, int k, const float *a, const float *b, int ldb, float *c) {
    memset(c, 0, sizeof(float) * (size_t)m * width);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, width, k, 1.0f, a, k, b, ldb, 1.0f, c, width);
}

static void *checked_malloc(size_t bytes) {
    void *p = calloc(1, bytes ? bytes : 1);
    if (!p) {
        fprintf(stderr, "blas_columns: out of memory\n");
        exit(1);
    }
    return p;
}

static int map(int m, int k, int argc, char **argv) {
    int most = 0;
    for (int i = 0; i < argc; i++) most = atoi(argv[i]) > most ? atoi(argv[i]) : most;
    const int big = most + 64;
    float *a = checked_malloc(sizeof(float) * (size_t)m * k), *b = checked_malloc(sizeof(float) * (size_t)k * big);
    float *ref = checked_malloc(sizeof(float) * (size_t)m * big), *c = checked_malloc(sizeof(float) * (size_t)m * big);
    float *t = checked_malloc(sizeof(float) * (size_t)m * 48);
    for (size_t i = 0; i < (size_t)m * k; i++) a[i] = random_float();
    for (size_t i = 0; i < (size_t)k * big; i++) b[i] = random_float();
    /* The reference for columns [c0, c0 + 16): the middle third of a 48-wide GEMM. */
    for (int c0 = 16; c0 + 32 <= big; c0 += 16) {
        gemm(m, 48, k, a, b + c0 - 16, big, t);
        for (int r = 0; r < m; r++) memcpy(ref + (size_t)r * big + c0, t + (size_t)r * 48 + 16, sizeof(float) * 16);
    }
    for (int i = 0; i < argc; i++) {
        const int w = atoi(argv[i]);
        gemm(m, w, k, a, b, big, c);
        printf("%s M=%d K=%d W=%d differ:", openblas_get_corename(), m, k, w);
        int start = -1;
        for (int col = 16; col <= w; col++) {
            int d = 0;
            for (int r = 0; col < w && col + 32 <= big && r < m; r++)
                d |= c[(size_t)r * w + col] != ref[(size_t)r * big + col];
            if (d && start < 0) start = col;
            if (!d && start >= 0) {
                printf(" [%d,%d)", start, col);
                start = -1;
            }
        }
        printf(" (columns from 16 on)\n");
    }
    return 0;
}

static int layout(int lead, int align, int trail, int max_width, int trials, int small) {
    static const int ks[] = {9, 64, 96, 192, 288, 576, 864, 1728, 3456};
    static const int ms[] = {16, 32, 64, 96, 192, 384};
    const int room = max_width / align * align - lead - trail;
    long differ = 0, done = 0, skipped = 0;
    for (int t = 0; t < trials; t++) {
        const int k = ks[random_below(9)], m = ms[random_below(6)];
        const int w = 1 + random_below(random_below(2) ? 40 : room), o = random_below(room - w + 1);
        const int cols = o + w + random_below(room - o - w + 1);
        const int width = (lead + cols + trail + align - 1) / align * align, alone = (lead + w + trail + align - 1) / align * align;
        if (!small && (double)m * alone * k <= 1e6) {
            skipped++;
            continue;
        }
        float *a = checked_malloc(sizeof(float) * (size_t)m * k), *b = checked_malloc(sizeof(float) * (size_t)k * width);
        float *b1 = checked_malloc(sizeof(float) * (size_t)k * alone), *c = checked_malloc(sizeof(float) * (size_t)m * width);
        float *c1 = checked_malloc(sizeof(float) * (size_t)m * alone);
        for (size_t i = 0; i < (size_t)m * k; i++) a[i] = random_float();
        for (size_t i = 0; i < (size_t)k * width; i++) b[i] = random_float();
        for (int r = 0; r < k; r++) memcpy(b1 + (size_t)r * alone + lead, b + (size_t)r * width + lead + o, sizeof(float) * w);
        gemm(m, alone, k, a, b1, alone, c1);
        gemm(m, width, k, a, b, width, c);
        int same = 1;
        for (int r = 0; r < m && same; r++)
            same = !memcmp(c + (size_t)r * width + lead + o, c1 + (size_t)r * alone + lead, sizeof(float) * w);
        done++;
        if (!same) {
            differ++;
            if (differ <= 5) printf("differ: K=%d M=%d w=%d at %d of %d (widths %d, %d)\n", k, m, w, o, cols, alone, width);
        }
        free(a), free(b), free(b1), free(c), free(c1);
    }
    printf("%s lead %d align %d trail %d max width %d: %ld of %ld differ (%ld small left out)\n", openblas_get_corename(),
           lead, align, trail, max_width, differ, done, skipped);
    return differ != 0;
}

int main(int argc, char **argv) {
    openblas_set_num_threads(1);
    if (argc >= 5 && !strcmp(argv[1], "map")) return map(atoi(argv[2]), atoi(argv[3]), argc - 4, argv + 4);
    if (argc >= 7 && !strcmp(argv[1], "layout"))
        return layout(atoi(argv[2]), atoi(argv[3]), atoi(argv[4]), atoi(argv[5]), atoi(argv[6]), argc > 7);
    fprintf(stderr, "usage: blas_columns map M K WIDTH...\n       blas_columns layout LEAD ALIGN TRAIL MAX_WIDTH TRIALS [small]\n");
    return 2;
}
