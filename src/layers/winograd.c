/* 3x3 stride-1 convs as Winograd F(2x2, 3x3) (Lavin & Gray, "Fast Algorithms for
 * Convolutional Neural Networks", 2015): each 2x2 block of outputs is A^T [U . V] A, with
 * V = B^T d B for the 4x4 input patch d under it (patches overlap by 2) and U = G g G^T for
 * each 3x3 kernel g, 16 multiplies instead of 36:
 *
 *   B^T = | 1  0 -1  0 |    G = | 1    0    0  |    A^T = | 1  1  1  0 |
 *         | 0  1  1  0 |        | 1/2  1/2  1/2 |          | 0  1 -1 -1 |
 *         | 0 -1  1  0 |        | 1/2 -1/2  1/2 |
 *         | 0  1  0 -1 |        | 0    0    1  |
 *
 * Summed over input channels, the products for each of the 16 positions of the 4x4 tile are
 * one GEMM: M[pos] (cout x tiles) = U[pos] (cout x cin) x V[pos] (cin x tiles).
 *
 * The 16 GEMMs are ours (packed_gemm.c), each entry a fixed chain of FMAs whatever the width:
 * so a conv takes its images in groups (their tiles side by side as one GEMM's columns, as many
 * as fit in cache), and the pool shares out its bands of tile rows (run_band) or, where bands
 * would be too narrow, each step: input channels, positions, blocks of output channels. The
 * product comes out tile-major, M[pos][tile][cout], and the output transform runs across
 * channels in vectors. */
#include <string.h>

#include "layers.h"
#include "util.h"

#define TILE 4   /* input patch side */
#define STEP 2   /* output block side: patches start every STEP pixels */
#define POSITIONS (TILE * TILE)

static int tiles_across(const conv_layer *c) { return (c->out.w + STEP - 1) / STEP; }
static int tiles_down(const conv_layer *c) { return (c->out.h + STEP - 1) / STEP; }
static size_t tile_count(const conv_layer *c) { return (size_t)tiles_across(c) * (size_t)tiles_down(c); }

bool winograd_fits(const conv_layer *c) {
    return c->groups == 1 && c->kh == 3 && c->kw == 3 && c->stride == 1;
}

size_t winograd_weight_floats(const conv_layer *c) { return POSITIONS * packed_weight_floats(c->cout, c->cin); }

#define WEIGHT_BLOCK PACKED_ROWS /* kernels transformed at once, in vectors across kernels */

/* u[pos * plane + i] = (G g_i G^T)[pos] for the `count` 3x3 kernels g_i = g + i * stride,
 * in double then rounded once. */
__attribute__((target_clones("avx512f", "avx2", "default"))) static void
transform_weight_block(const float *restrict g, size_t stride, size_t count, float *restrict u, size_t plane) {
    double gt[9][WEIGHT_BLOCK], gg[TILE][3][WEIGHT_BLOCK]; /* g transposed; G g */
    for (size_t i = 0; i < count; i++)
        for (int k = 0; k < 9; k++) gt[k][i] = g[i * stride + k];
    for (int x = 0; x < 3; x++)
        for (size_t i = 0; i < count; i++) {
            const double g0 = gt[x][i], g1 = gt[3 + x][i], g2 = gt[6 + x][i];
            gg[0][x][i] = g0;
            gg[1][x][i] = 0.5 * (g0 + g1 + g2);
            gg[2][x][i] = 0.5 * (g0 - g1 + g2);
            gg[3][x][i] = g2;
        }
    for (int y = 0; y < TILE; y++) {
        float *u0 = u + (size_t)y * TILE * plane, *u1 = u0 + plane, *u2 = u1 + plane, *u3 = u2 + plane;
        for (size_t i = 0; i < count; i++) {
            const double r0 = gg[y][0][i], r1 = gg[y][1][i], r2 = gg[y][2][i];
            u0[i] = (float)r0;
            u1[i] = (float)(0.5 * (r0 + r1 + r2));
            u2[i] = (float)(0.5 * (r0 - r1 + r2));
            u3[i] = (float)r2;
        }
    }
}

void winograd_transform_weights(const conv_layer *c, float *u) {
    const size_t packed = packed_weight_floats(c->cout, c->cin), rows = PACKED_ROWS;
    /* In the packed order: the kernels of 32 output channels for one input channel at a time,
     * each position's 32 values side by side (zeros past the last channel). */
    for (int o0 = 0; o0 < c->cout; o0 += (int)rows) {
        const size_t count = (size_t)(c->cout - o0) < rows ? (size_t)(c->cout - o0) : rows;
        for (int ci = 0; ci < c->cin; ci++) {
            float *dst = u + packed_offset(o0, ci, c->cin);
            transform_weight_block(c->weight + ((size_t)o0 * c->cin + ci) * 9, (size_t)c->cin * 9, count, dst, packed);
            for (int pos = 0; pos < POSITIONS; pos++)
                for (size_t i = count; i < rows; i++) dst[pos * packed + i] = 0.0f;
        }
    }
}

/* A group of images' tiles is one GEMM: about GROUP_FLOATS of V and M, at least one image. */
#define GROUP_FLOATS (256 * 1024)
/* A group is split into bands of tile rows, each transformed, multiplied and transformed back
 * by one thread, where every thread gets at least this many columns (tiles); else the pool
 * shares out each of the three steps (input channels, positions, output channels). */
#define BAND_MIN_COLS 24

static size_t padded_side(int out_side) { return (size_t)((out_side + STEP - 1) / STEP * STEP + 2); }
/* Per thread: a zero-padded input plane and its rows transformed (transform_input), in whole
 * cache lines: threads rewrite theirs for every channel, and a line that two threads write
 * goes back and forth between their cores (it cost one image on two threads 6 %). */
static size_t thread_floats(const conv_layer *c) {
    return whole_lines(padded_side(c->out.h) * padded_side(c->out.w) * 3 + 2);
}

static int group_images(const conv_layer *c, int n) {
    const size_t per_image = POSITIONS * tile_count(c) * ((size_t)c->cin + packed_ldc(c->cout));
    const size_t fit = GROUP_FLOATS / per_image;
    return fit < 1 ? 1 : fit > (size_t)n ? n : (int)fit;
}

/* V [pos][cin][cols] and M [pos][cols][ldc] of a group of `images`. */
static size_t v_floats(const conv_layer *c, int images) { return POSITIONS * (size_t)c->cin * images * tile_count(c); }
static size_t m_floats(const conv_layer *c, int images) {
    return POSITIONS * (size_t)images * tile_count(c) * packed_ldc(c->cout);
}

size_t winograd_scratch_floats(const conv_layer *c, int max_n, int threads) {
    const int images = group_images(c, max_n);
    return v_floats(c, images) + m_floats(c, images) + (size_t)threads * thread_floats(c);
}

typedef struct {
    const conv_layer *conv;
    const float *u, *in; /* in, out: CNHW batches of n images */
    float *out;
    int n, image, images; /* this group: images [image, image + images) of the n */
    float *v, *m;
    float *thread_scratch;
    int parts; /* shares of the work */
} winograd_job;

static size_t job_cols(const winograd_job *j) { return (size_t)j->images * tile_count(j->conv); }

/* [*first, *end) of count for share `part` of the job's (ints: counts of channels or tiles). */
static void share(int count, int parts, int part, int *first, int *end) {
    size_t f, e;
    pool_share((size_t)count, parts, part, &f, &e);
    *first = (int)f;
    *end = (int)e;
}

/* An input plane in `padded` (ph x pw, and two floats more) at row and column offset
 * `padding`, zeros around it: ph and pw reach the last whole tile, at least ih + 2 * padding
 * and iw + 2 * padding. */
static void pad_plane(const conv_layer *c, const float *plane, float *padded, size_t ph, size_t pw) {
    const size_t p = (size_t)c->padding, iw = (size_t)c->in.w;
    memset(padded, 0, (ph * pw + 2) * sizeof(float));
    for (size_t y = 0; y < (size_t)c->in.h; y++) memcpy(padded + (y + p) * pw + p, plane + y * iw, iw * sizeof(float));
}

/* d B for every row of a padded plane (pw = 2 * (tw + 1), two floats past its end): the four
 * values for the patch columns of tile tx in row y at rows[k * count + y * (tw + 1) + tx], with
 * count = ph * (tw + 1), as one loop over the plane (the last tx of each row is not used). */
__attribute__((target_clones("avx512f", "avx2", "default"))) static void
transform_rows(const float *restrict d, size_t count, float *restrict rows) {
    for (size_t q = 0; q < count; q++) {
        const float d0 = d[2 * q], d1 = d[2 * q + 1], d2 = d[2 * q + 2], d3 = d[2 * q + 3];
        rows[q] = d0 - d2;
        rows[count + q] = d1 + d2;
        rows[2 * count + q] = d2 - d1;
        rows[3 * count + q] = d1 - d3;
    }
}

/* B^T (d B) down the columns for one row of tiles: V[pos][tx] (positions `stride` floats
 * apart) from the four transformed rows of its patches, `across` floats apart in `rows`
 * (planes of `count`). */
__attribute__((target_clones("avx512f", "avx2", "default"))) static void
transform_columns(const float *restrict rows, size_t count, size_t across, int tw, float *restrict v, size_t stride) {
    for (int x = 0; x < TILE; x++) {
        const float *r0 = rows + (size_t)x * count, *r1 = r0 + across, *r2 = r1 + across, *r3 = r2 + across;
        float *v0 = v + (size_t)x * stride, *v1 = v0 + TILE * stride, *v2 = v1 + TILE * stride,
              *v3 = v2 + TILE * stride;
        for (int tx = 0; tx < tw; tx++) {
            v0[tx] = r0[tx] - r2[tx];
            v1[tx] = r1[tx] + r2[tx];
            v2[tx] = r2[tx] - r1[tx];
            v3[tx] = r1[tx] - r3[tx];
        }
    }
}

/* V for input channels [ci0, ci1) and tile rows [row0, row1) of the group (row r: image
 * r / th, tile row r % th; its tiles are columns r * tw ...), into v: [pos][cin][ld] whose
 * column 0 is the group's column col0. */
static void transform_input(const winograd_job *j, int ci0, int ci1, int row0, int row1, int thread, float *v,
                            size_t ld, size_t col0) {
    const conv_layer *c = j->conv;
    const int tw = tiles_across(c), th = tiles_down(c);
    const size_t ph = padded_side(c->out.h), pw = padded_side(c->out.w);
    const size_t stride = (size_t)c->cin * ld; /* between positions */
    const size_t across = (size_t)tw + 1, in_plane = (size_t)c->in.h * c->in.w;
    float *padded = j->thread_scratch + (size_t)thread * thread_floats(c), *rows = padded + ph * pw + 2;
    for (int ci = ci0; ci < ci1; ci++)
        for (int r = row0; r < row1;) {
            const int image = r / th, ty0 = r % th, ty1 = row1 - image * th < th ? row1 - image * th : th;
            /* padded rows [STEP * ty0, STEP * ty1 + 2) of this image's plane */
            const size_t count = (size_t)(STEP * (ty1 - ty0) + 2) * across;
            pad_plane(c, j->in + ((size_t)ci * j->n + j->image + image) * in_plane, padded, ph, pw);
            transform_rows(padded + (size_t)STEP * ty0 * pw, count, rows);
            for (int ty = ty0; ty < ty1; ty++)
                transform_columns(rows + (size_t)(ty - ty0) * STEP * across, count, across, tw,
                                  v + (size_t)ci * ld + ((size_t)image * th + ty) * tw - col0, stride);
            r = image * th + ty1;
        }
}

/* M[pos] = U[pos] x V[pos] for positions [pos0, pos1) and the group's columns [col0, col0 +
 * cols), whose V is at v ([pos][cin][ld]). */
static void multiply(const winograd_job *j, int pos0, int pos1, const float *v, size_t ld, size_t col0, size_t cols) {
    const conv_layer *c = j->conv;
    const size_t ldc = packed_ldc(c->cout);
    for (int pos = pos0; pos < pos1; pos++)
        packed_gemm(j->u + pos * packed_weight_floats(c->cout, c->cin), c->cin, 0, (int)ldc,
                    v + pos * (size_t)c->cin * ld, ld, (int)cols, j->m + (pos * job_cols(j) + col0) * ldc, ldc);
}

#define OUT_BLOCK 16 /* output channels transformed at once, in vectors */
static void transform_output(const winograd_job *j, size_t col0, size_t col1, int block0, int block1);

/* Task: a band of tile rows, start to end. Its V is a block of its own (the V of the group's
 * columns [col0, col1) at col0 * cin * 16), so that no cache line of it is another thread's. */
static void run_band(void *arg, int part, int thread) {
    const winograd_job *j = arg;
    const int tw = tiles_across(j->conv);
    int row0, row1;
    share(j->images * tiles_down(j->conv), j->parts, part, &row0, &row1);
    const size_t col0 = (size_t)row0 * tw, cols = (size_t)(row1 - row0) * tw;
    float *v = j->v + col0 * j->conv->cin * POSITIONS;
    transform_input(j, 0, j->conv->cin, row0, row1, thread, v, cols, col0);
    multiply(j, 0, POSITIONS, v, cols, col0, cols);
    transform_output(j, col0, col0 + cols, 0, (j->conv->cout + OUT_BLOCK - 1) / OUT_BLOCK);
}

/* Tasks of the three steps shared out separately, over the group's V as one block. */
static void input_part(void *arg, int part, int thread) {
    const winograd_job *j = arg;
    int ci0, ci1;
    share(j->conv->cin, j->parts, part, &ci0, &ci1);
    transform_input(j, ci0, ci1, 0, j->images * tiles_down(j->conv), thread, j->v, job_cols(j), 0);
}
static void multiply_part(void *arg, int pos, int thread) {
    (void)thread;
    const winograd_job *j = arg;
    multiply(j, pos, pos + 1, j->v, job_cols(j), 0, job_cols(j));
}
/* By blocks of output channels: their planes are each thread's own (a share of the tiles
 * would have both threads write into the same cache lines of every plane). */
static void output_part(void *arg, int part, int thread) {
    (void)thread;
    const winograd_job *j = arg;
    int block0, block1;
    share((j->conv->cout + OUT_BLOCK - 1) / OUT_BLOCK, j->parts, part, &block0, &block1);
    transform_output(j, 0, job_cols(j), block0, block1);
}

typedef float vec16 __attribute__((vector_size(64), aligned(4)));
typedef int ivec16 __attribute__((vector_size(64), aligned(4)));

/* y[q][0, 16), q = 2 * row + column: a tile's 2x2 outputs for 16 channels, A^T m A from its
 * 16 positions (`stride` floats apart in m), * scale + shift, ReLU'd if asked. */
__attribute__((target_clones("avx512f", "avx2", "default"))) static void
output_tile(const float *m, size_t stride, const float *scale, const float *shift, bool relu, float y[4][OUT_BLOCK]) {
    vec16 p[POSITIONS];
    for (int k = 0; k < POSITIONS; k++) p[k] = *(const vec16 *)(m + k * stride);
    /* A^T m: rows 0 + 1 + 2 and 1 - 2 - 3 */
    const vec16 a0 = p[0] + p[4] + p[8], a1 = p[1] + p[5] + p[9], a2 = p[2] + p[6] + p[10], a3 = p[3] + p[7] + p[11];
    const vec16 b0 = p[4] - p[8] - p[12], b1 = p[5] - p[9] - p[13], b2 = p[6] - p[10] - p[14],
                b3 = p[7] - p[11] - p[15];
    const vec16 s = *(const vec16 *)scale, t = *(const vec16 *)shift;
    vec16 out[4] = {(a0 + a1 + a2) * s + t, (a1 - a2 - a3) * s + t, (b0 + b1 + b2) * s + t, (b1 - b2 - b3) * s + t};
    for (int q = 0; q < 4; q++) {
        if (relu) out[q] = (vec16)((ivec16)out[q] & (out[q] > 0.0f)); /* a comparison is all ones where true */
        *(vec16 *)y[q] = out[q];
    }
}

/* Output channels [OUT_BLOCK * block0, OUT_BLOCK * block1) of the group's tiles (columns)
 * [col0, col1). */
static void transform_output(const winograd_job *j, size_t col0, size_t col1, int block0, int block1) {
    const conv_layer *c = j->conv;
    const int tw = tiles_across(c), oh = c->out.h, ow = c->out.w, tiles = (int)tile_count(c);
    const size_t ldc = packed_ldc(c->cout), stride = job_cols(j) * ldc;
    const size_t plane = (size_t)oh * ow, channel = (size_t)j->n * plane;
    for (int o0 = OUT_BLOCK * block0; o0 < c->cout && o0 < OUT_BLOCK * block1; o0 += OUT_BLOCK) {
        const int count = c->cout - o0 < OUT_BLOCK ? c->cout - o0 : OUT_BLOCK;
        float scale[OUT_BLOCK] = {0}, shift[OUT_BLOCK] = {0}, y[4][OUT_BLOCK];
        for (int i = 0; i < count; i++) {
            scale[i] = c->scale ? c->scale[o0 + i] : 1.0f;
            shift[i] = c->bias[o0 + i];
        }
        for (int col = (int)col0; col < (int)col1; col++) {
            const int image = j->image + col / tiles, t = col % tiles, y0 = t / tw * STEP, x0 = t % tw * STEP;
            output_tile(j->m + (size_t)col * ldc + o0, stride, scale, shift, c->relu, y);
            float *at = j->out + (size_t)o0 * channel + (size_t)image * plane + (size_t)y0 * ow + x0;
            for (int q = 0; q < 4; q++) {
                const int dy = q / 2, dx = q % 2;
                if (y0 + dy >= oh || x0 + dx >= ow) continue;
                for (int i = 0; i < count; i++) at[(size_t)i * channel + (size_t)dy * ow + dx] = y[q][i];
            }
        }
    }
}

void winograd_forward(const conv_layer *c, const float *u, const float *in, float *out, int n, float *scratch,
                      thread_pool *pool) {
    const int threads = pool_size(pool), group = group_images(c, n);
    winograd_job job = {.conv = c, .u = u, .in = in, .out = out, .n = n, .v = scratch, .parts = threads};
    for (job.image = 0; job.image < n; job.image += group) {
        job.images = n - job.image < group ? n - job.image : group;
        job.m = scratch + v_floats(c, job.images);
        job.thread_scratch = job.m + m_floats(c, job.images);
        if (job_cols(&job) >= (size_t)BAND_MIN_COLS * threads || threads == 1) {
            pool_run(pool, run_band, &job, threads);
        } else {
            pool_run(pool, input_part, &job, threads);
            pool_run(pool, multiply_part, &job, POSITIONS);
            pool_run(pool, output_part, &job, threads);
        }
    }
}
