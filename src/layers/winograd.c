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
 * Determinism (see conv.c): one image at a time, one GEMM per position, of the same shape
 * whatever the batch and the thread count; a pool shares out the channels of the transforms
 * and the 16 positions, each GEMM the same call whichever thread runs it. (Running each
 * position's GEMMs for several images in a row, for U[pos] to stay in cache, measured no
 * faster.) */
#include <cblas.h>
#include <string.h>

#include "layers.h"

#define TILE 4   /* input patch side */
#define STEP 2   /* output block side: patches start every STEP pixels */
#define POSITIONS (TILE * TILE)

static int tiles_across(const conv_layer *c) { return (c->out.w + STEP - 1) / STEP; }
static int tiles_down(const conv_layer *c) { return (c->out.h + STEP - 1) / STEP; }
static size_t tile_count(const conv_layer *c) { return (size_t)tiles_across(c) * (size_t)tiles_down(c); }

bool winograd_fits(const conv_layer *c) {
    return c->groups == 1 && c->kh == 3 && c->kw == 3 && c->stride == 1;
}

size_t winograd_weight_floats(const conv_layer *c) { return (size_t)POSITIONS * c->cout * c->cin; }

#define WEIGHT_BLOCK 64 /* kernels transformed at once, in vectors across kernels */

/* u[pos * plane + i] = (G g_i G^T)[pos] for the `count` 3x3 kernels g_i at g, in double
 * then rounded once. */
__attribute__((target_clones("avx512f", "avx2", "default"))) static void
transform_weight_block(const float *restrict g, size_t count, float *restrict u, size_t plane) {
    double gt[9][WEIGHT_BLOCK], gg[TILE][3][WEIGHT_BLOCK]; /* g transposed; G g */
    for (size_t i = 0; i < count; i++)
        for (int k = 0; k < 9; k++) gt[k][i] = g[i * 9 + k];
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
    const size_t plane = (size_t)c->cout * c->cin;
    for (size_t first = 0; first < plane; first += WEIGHT_BLOCK)
        transform_weight_block(c->weight + first * 9, plane - first < WEIGHT_BLOCK ? plane - first : WEIGHT_BLOCK,
                               u + first, plane);
}

/* Scratch: one image's V (16 x cin x tiles) and M (16 x cout x tiles), and for each thread a zero-padded input plane and its rows transformed (transform_input), or
 * the outputs of the tiles of one channel (transform_output). */
static size_t padded_side(int out_side) { return (size_t)((out_side + STEP - 1) / STEP * STEP + 2); }
static size_t thread_floats(const conv_layer *c) {
    return padded_side(c->out.h) * padded_side(c->out.w) * 3 + 2;
}

size_t winograd_scratch_floats(const conv_layer *c, int threads) {
    return (size_t)POSITIONS * (size_t)(c->cin + c->cout) * tile_count(c) + (size_t)threads * thread_floats(c);
}

typedef struct {
    const conv_layer *conv;
    const float *u, *in; /* in, out: CNHW batches of n images */
    float *out;
    int n, image;  /* the image of the n that this job runs */
    float *v, *m;  /* [pos][channel][tile] */
    float *thread_scratch;
    int parts; /* channel shares of the transforms */
} winograd_job;

static void share(int count, int parts, int part, int *first, int *end) {
    int per = (count + parts - 1) / parts;
    *first = part * per < count ? part * per : count;
    *end = *first + per < count ? *first + per : count;
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

/* Task: V for a share of the input channels. */
static void transform_input(void *arg, int part, int thread) {
    const winograd_job *j = arg;
    const conv_layer *c = j->conv;
    const int tw = tiles_across(c), th = tiles_down(c);
    const size_t ph = padded_side(c->out.h), pw = padded_side(c->out.w), tiles = tile_count(c);
    const size_t stride = (size_t)c->cin * tiles; /* between positions */
    const size_t across = (size_t)tw + 1, count = ph * across, in_plane = (size_t)c->in.h * c->in.w;
    float *padded = j->thread_scratch + (size_t)thread * thread_floats(c), *rows = padded + ph * pw + 2;
    int first, end;
    share(c->cin, j->parts, part, &first, &end);
    for (int ci = first; ci < end; ci++) {
        pad_plane(c, j->in + ((size_t)ci * j->n + j->image) * in_plane, padded, ph, pw);
        transform_rows(padded, count, rows);
        for (int ty = 0; ty < th; ty++)
            transform_columns(rows + (size_t)ty * STEP * across, count, across, tw,
                              j->v + (size_t)ci * tiles + (size_t)ty * tw, stride);
    }
}

/* Task: M[pos] = U[pos] x V[pos]. */
static void multiply_position(void *arg, int pos, int thread) {
    (void)thread;
    const winograd_job *j = arg;
    const conv_layer *c = j->conv;
    const int tiles = (int)tile_count(c);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, c->cout, tiles, c->cin, 1.0f,
                j->u + (size_t)pos * c->cout * c->cin, c->cin, j->v + (size_t)pos * c->cin * tiles, tiles, 0.0f,
                j->m + (size_t)pos * c->cout * tiles, tiles);
}

/* y[q * tiles + t], q = 2 * row + column: the 2x2 outputs of every tile t of one output
 * channel, A^T m A from M (positions `stride` floats apart), * scale + shift, ReLU'd if asked. */
__attribute__((target_clones("avx512f", "avx2", "default"))) static void
output_tiles(const float *restrict m, size_t stride, size_t tiles, float scale, float shift, bool relu,
             float *restrict y) {
    const float *m0 = m, *m1 = m0 + stride, *m2 = m1 + stride, *m3 = m2 + stride; /* row 0 of the 4x4 tile */
    const float *m4 = m3 + stride, *m5 = m4 + stride, *m6 = m5 + stride, *m7 = m6 + stride;
    const float *m8 = m7 + stride, *m9 = m8 + stride, *m10 = m9 + stride, *m11 = m10 + stride;
    const float *m12 = m11 + stride, *m13 = m12 + stride, *m14 = m13 + stride, *m15 = m14 + stride;
    for (size_t t = 0; t < tiles; t++) {
        /* A^T m: rows 0 + 1 + 2 and 1 - 2 - 3 */
        const float a0 = m0[t] + m4[t] + m8[t], a1 = m1[t] + m5[t] + m9[t], a2 = m2[t] + m6[t] + m10[t],
                    a3 = m3[t] + m7[t] + m11[t];
        const float b0 = m4[t] - m8[t] - m12[t], b1 = m5[t] - m9[t] - m13[t], b2 = m6[t] - m10[t] - m14[t],
                    b3 = m7[t] - m11[t] - m15[t];
        y[t] = (a0 + a1 + a2) * scale + shift;
        y[tiles + t] = (a1 - a2 - a3) * scale + shift;
        y[2 * tiles + t] = (b0 + b1 + b2) * scale + shift;
        y[3 * tiles + t] = (b1 - b2 - b3) * scale + shift;
    }
    if (relu)
        for (size_t i = 0; i < 4 * tiles; i++) y[i] = y[i] > 0.0f ? y[i] : 0.0f;
}

/* The outputs y of output_tiles into their places in an output plane. */
static void place_tiles(const conv_layer *c, const float *y, float *plane) {
    const int tw = tiles_across(c), th = tiles_down(c), oh = c->out.h, ow = c->out.w;
    const size_t tiles = tile_count(c);
    for (int ty = 0; ty < th; ty++)
        for (int r = 0; r < STEP && ty * STEP + r < oh; r++) {
            float *row = plane + (size_t)(ty * STEP + r) * ow;
            const float *left = y + (size_t)(STEP * r) * tiles + (size_t)ty * tw, *right = left + tiles;
            for (int tx = 0; tx < ow / STEP; tx++) {
                row[STEP * tx] = left[tx];
                row[STEP * tx + 1] = right[tx];
            }
            if (ow % STEP) row[ow - 1] = left[tw - 1];
        }
}

/* Task: the output planes of a share of the output channels. */
static void transform_output(void *arg, int part, int thread) {
    const winograd_job *j = arg;
    const conv_layer *c = j->conv;
    const size_t tiles = tile_count(c), stride = (size_t)c->cout * tiles, plane = (size_t)c->out.h * c->out.w;
    float *y = j->thread_scratch + (size_t)thread * thread_floats(c);
    int first, end;
    share(c->cout, j->parts, part, &first, &end);
    for (int o = first; o < end; o++) {
        output_tiles(j->m + (size_t)o * tiles, stride, tiles, c->scale ? c->scale[o] : 1.0f, c->bias[o], c->relu, y);
        place_tiles(c, y, j->out + ((size_t)o * j->n + j->image) * plane);
    }
}

void winograd_forward(const conv_layer *c, const float *u, const float *in, float *out, int n, float *scratch,
                      thread_pool *pool) {
    const int threads = pool_size(pool);
    float *m = scratch + (size_t)POSITIONS * c->cin * tile_count(c);
    winograd_job job = {.conv = c,
                        .u = u,
                        .in = in,
                        .out = out,
                        .n = n,
                        .v = scratch,
                        .m = m,
                        .thread_scratch = m + (size_t)POSITIONS * c->cout * tile_count(c),
                        .parts = threads};
    for (job.image = 0; job.image < n; job.image++) {
        pool_run(pool, transform_input, &job, threads);
        pool_run(pool, multiply_position, &job, POSITIONS);
        pool_run(pool, transform_output, &job, threads);
    }
}
