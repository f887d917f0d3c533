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
 * Determinism (see conv.c): one image at a time, its 16 GEMMs of the same shapes whatever
 * the batch and the thread count; a pool shares out the channels of the transforms and the
 * 16 GEMMs, each computed by the same call whichever thread runs it. */
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

/* u[pos][o][ci] = (G g G^T)[pos] for g = weight[o][ci], in double then rounded once. */
void winograd_transform_weights(const conv_layer *c, float *u) {
    const size_t plane = (size_t)c->cout * c->cin;
    for (size_t oc = 0; oc < plane; oc++) {
        const float *g = c->weight + oc * 9;
        double gg[TILE][3]; /* G g */
        for (int x = 0; x < 3; x++) {
            double g0 = g[x], g1 = g[3 + x], g2 = g[6 + x];
            gg[0][x] = g0;
            gg[1][x] = 0.5 * (g0 + g1 + g2);
            gg[2][x] = 0.5 * (g0 - g1 + g2);
            gg[3][x] = g2;
        }
        for (int y = 0; y < TILE; y++) {
            const double *r = gg[y];
            const double row[TILE] = {r[0], 0.5 * (r[0] + r[1] + r[2]), 0.5 * (r[0] - r[1] + r[2]), r[2]};
            for (int x = 0; x < TILE; x++) u[(size_t)(y * TILE + x) * plane + oc] = (float)row[x];
        }
    }
}

/* Scratch: one image's V (16 x cin x tiles) and M (16 x cout x tiles), and for each thread
 * a zero-padded input plane and the row buffers of the transforms. */
static size_t padded_side(int out_side) { return (size_t)((out_side + STEP - 1) / STEP * STEP + 2); }
static size_t thread_floats(const conv_layer *c) {
    return padded_side(c->out.h) * padded_side(c->out.w) + (size_t)POSITIONS * tiles_across(c);
}

size_t winograd_scratch_floats(const conv_layer *c, int threads) {
    return (size_t)POSITIONS * (size_t)(c->cin + c->cout) * tile_count(c) + (size_t)threads * thread_floats(c);
}

typedef struct {
    const conv_layer *conv;
    const float *u, *in; /* in: channel 0 of this image; channels n planes apart */
    float *out;          /* likewise */
    int n;
    float *v, *m, *thread_scratch;
    int parts; /* channel shares of the transforms */
} winograd_job;

static void share(int count, int parts, int part, int *first, int *end) {
    int per = (count + parts - 1) / parts;
    *first = part * per < count ? part * per : count;
    *end = *first + per < count ? *first + per : count;
}

/* An input plane in `padded` (ph x pw) at row and column offset `padding`, zeros around it:
 * ph and pw reach the last whole tile, at least ih + 2 * padding and iw + 2 * padding. */
static void pad_plane(const conv_layer *c, const float *plane, float *padded, size_t ph, size_t pw) {
    const size_t p = (size_t)c->padding, iw = (size_t)c->in.w;
    memset(padded, 0, ph * pw * sizeof(float));
    for (size_t y = 0; y < (size_t)c->in.h; y++) memcpy(padded + (y + p) * pw + p, plane + y * iw, iw * sizeof(float));
}

/* One row of tiles of one channel: V[pos][ty*tw + tx] (positions `stride` floats apart) from
 * the four padded rows rows[0..3]; tmp holds 16 x tw floats. */
__attribute__((target_clones("avx512f", "avx2", "default"))) static void
input_tile_row(const float *restrict rows, size_t pw, int tw, float *restrict tmp, float *restrict v, size_t stride) {
    /* d B across each of the four rows */
    for (int r = 0; r < TILE; r++) {
        const float *d = rows + (size_t)r * pw;
        float *t = tmp + (size_t)r * TILE * tw;
        for (int tx = 0; tx < tw; tx++) {
            const float d0 = d[2 * tx], d1 = d[2 * tx + 1], d2 = d[2 * tx + 2], d3 = d[2 * tx + 3];
            t[tx] = d0 - d2;
            t[tw + tx] = d1 + d2;
            t[2 * tw + tx] = d2 - d1;
            t[3 * tw + tx] = d1 - d3;
        }
    }
    /* B^T (d B) down the columns */
    for (int x = 0; x < TILE; x++) {
        const float *t0 = tmp + (size_t)x * tw, *t1 = t0 + (size_t)TILE * tw, *t2 = t1 + (size_t)TILE * tw,
                    *t3 = t2 + (size_t)TILE * tw;
        float *v0 = v + (size_t)x * stride, *v1 = v0 + TILE * stride, *v2 = v1 + TILE * stride, *v3 = v2 + TILE * stride;
        for (int tx = 0; tx < tw; tx++) {
            v0[tx] = t0[tx] - t2[tx];
            v1[tx] = t1[tx] + t2[tx];
            v2[tx] = t2[tx] - t1[tx];
            v3[tx] = t1[tx] - t3[tx];
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
    float *padded = j->thread_scratch + (size_t)thread * thread_floats(c), *tmp = padded + ph * pw;
    int first, end;
    share(c->cin, j->parts, part, &first, &end);
    for (int ci = first; ci < end; ci++) {
        pad_plane(c, j->in + (size_t)ci * j->n * c->in.h * c->in.w, padded, ph, pw);
        for (int ty = 0; ty < th; ty++)
            input_tile_row(padded + (size_t)ty * STEP * pw, pw, tw, tmp, j->v + (size_t)ci * tiles + (size_t)ty * tw,
                           stride);
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

/* One row of tiles of one output channel: A^T m A from M (positions `stride` floats apart),
 * then * scale + shift and ReLU, into two output rows of 2*tw floats in `rows`; tmp holds
 * 8 x tw floats. */
__attribute__((target_clones("avx512f", "avx2", "default"))) static void
output_tile_row(const float *restrict m, size_t stride, int tw, float scale, float shift, bool relu,
                float *restrict tmp, float *restrict rows) {
    /* A^T m down the columns */
    for (int x = 0; x < TILE; x++) {
        const float *m0 = m + (size_t)x * stride, *m1 = m0 + TILE * stride, *m2 = m1 + TILE * stride,
                    *m3 = m2 + TILE * stride;
        float *s0 = tmp + (size_t)x * tw, *s1 = s0 + (size_t)TILE * tw;
        for (int tx = 0; tx < tw; tx++) {
            s0[tx] = m0[tx] + m1[tx] + m2[tx];
            s1[tx] = m1[tx] - m2[tx] - m3[tx];
        }
    }
    /* (A^T m) A across each of the two rows */
    for (int r = 0; r < STEP; r++) {
        const float *s0 = tmp + (size_t)r * TILE * tw, *s1 = s0 + tw, *s2 = s1 + tw, *s3 = s2 + tw;
        float *row = rows + (size_t)r * STEP * tw;
        for (int tx = 0; tx < tw; tx++) {
            float y0 = (s0[tx] + s1[tx] + s2[tx]) * scale + shift, y1 = (s1[tx] - s2[tx] - s3[tx]) * scale + shift;
            if (relu) {
                y0 = y0 > 0.0f ? y0 : 0.0f;
                y1 = y1 > 0.0f ? y1 : 0.0f;
            }
            row[2 * tx] = y0;
            row[2 * tx + 1] = y1;
        }
    }
}

/* Task: the output planes of a share of the output channels. */
static void transform_output(void *arg, int part, int thread) {
    const winograd_job *j = arg;
    const conv_layer *c = j->conv;
    const int tw = tiles_across(c), th = tiles_down(c), oh = c->out.h, ow = c->out.w;
    const size_t tiles = tile_count(c), stride = (size_t)c->cout * tiles;
    float *rows = j->thread_scratch + (size_t)thread * thread_floats(c), *tmp = rows + (size_t)STEP * STEP * tw;
    int first, end;
    share(c->cout, j->parts, part, &first, &end);
    for (int o = first; o < end; o++) {
        float *plane = j->out + (size_t)o * j->n * oh * ow;
        const float scale = c->scale ? c->scale[o] : 1.0f;
        for (int ty = 0; ty < th; ty++) {
            output_tile_row(j->m + (size_t)o * tiles + (size_t)ty * tw, stride, tw, scale, c->bias[o], c->relu, tmp,
                            rows);
            for (int r = 0; r < STEP && ty * STEP + r < oh; r++)
                memcpy(plane + (size_t)(ty * STEP + r) * ow, rows + (size_t)r * STEP * tw, (size_t)ow * sizeof(float));
        }
    }
}

void winograd_forward(const conv_layer *c, const float *u, const float *in, float *out, int n, float *scratch,
                      thread_pool *pool) {
    const int threads = pool_size(pool);
    const size_t tiles = tile_count(c);
    float *v = scratch, *m = v + (size_t)POSITIONS * c->cin * tiles;
    for (int img = 0; img < n; img++) {
        winograd_job job = {.conv = c,
                            .u = u,
                            .in = in + (size_t)img * c->in.h * c->in.w,
                            .out = out + (size_t)img * c->out.h * c->out.w,
                            .n = n,
                            .v = v,
                            .m = m,
                            .thread_scratch = m + (size_t)POSITIONS * c->cout * tiles,
                            .parts = threads};
        pool_run(pool, transform_input, &job, threads);
        pool_run(pool, multiply_position, &job, POSITIONS);
        pool_run(pool, transform_output, &job, threads);
    }
}
