/* conv2d as im2col + SGEMM (darknet style); 1x1 stride-1 unpadded convs use the input as is.
 *
 * The same image must give bitwise-identical results whatever else is in its batch, its
 * position and the thread count (README, Determinism), and OpenBLAS does not promise that a
 * column of a GEMM comes out the same in GEMMs of other widths. What we measured (OpenBLAS
 * 0.3.21): its AVX-512 kernels (SkylakeX, Cooperlake) do compute every column alone through
 * their regular path, but GEMMs of at most 100^3 multiply-adds take a "small matrix" kernel
 * and beta = 0 ones up to 28*512^2 a "direct" one, which round differently; the Haswell, Zen
 * and generic kernels round a column by where it falls. So:
 *   - with an AVX-512 kernel, a layer whose one-image GEMM is larger than the small-matrix
 *     limit runs one GEMM per chunk of whole images (weights packed once per chunk, not per
 *     image), and one image's GEMM may be split by output channels across threads while
 *     each share stays above that limit;
 *   - otherwise, and for small layers, one GEMM per image, on one thread;
 *   - a conv with K <= DIRECT_MAX_K (a first layer) is no GEMM at all (direct_block);
 *   - a 3x3 stride-1 conv whose weights were transformed at load runs as Winograd
 *     (winograd.c): one GEMM per image and tile position, whatever the kernel.
 * beta is always 1 over a zeroed output, which keeps every GEMM off the direct path.
 * After each GEMM, the BatchNorm scale and shift (plus bias) and ReLU run while in cache. */
#include <cblas.h>
#include <string.h>
#include <strings.h>

#include "layers.h"

/* Floats of im2col matrix per chunk that stay in L2 next to the packed weights. */
#define CHUNK_FLOATS (128 * 1024)
/* Output-channel split granularity: a multiple of OpenBLAS's register-block widths. */
#define ROW_ALIGN 16
/* OpenBLAS's small-matrix kernel takes GEMMs of at most this many multiply-adds. */
#define SMALL_GEMM_MACS 1000000.0

typedef struct {
    bool split_channels; /* threads split cout over one shared im2col matrix */
    int rows_per_chunk;  /* output rows (image, oy) per chunk: whole images */
    int chunks;
} conv_plan;

static bool is_pointwise(const conv_layer *c) {
    return c->kh == 1 && c->kw == 1 && c->stride == 1 && c->padding == 0;
}

static int conv_k(const conv_layer *c) { return c->cin * c->kh * c->kw; }

/* See direct_block. */
#define DIRECT_MAX_K 32
static bool is_direct(const conv_layer *c) { return !is_pointwise(c) && conv_k(c) <= DIRECT_MAX_K; }

/* Winograd's GEMMs are one image's (see winograd.c): with fewer 2x2 output tiles than this
 * (a square output of 4x4 or less) they are too narrow to run fast, and the batched im2col
 * GEMM wins. */
#define WINOGRAD_MIN_TILES 9

bool conv_wants_winograd(const conv_layer *c) {
    const int tiles = ((c->out.h + 1) / 2) * ((c->out.w + 1) / 2);
    return winograd_fits(c) && !is_direct(c) && tiles >= WINOGRAD_MIN_TILES;
}

/* OpenBLAS kernels measured to compute each column of a regular-path GEMM on its own. */
static bool columns_independent(void) {
    const char *core = openblas_get_corename();
    return core && (!strcasecmp(core, "skylakex") || !strcasecmp(core, "cooperlake"));
}

/* Multiply-adds of one image's GEMM for output channels [0, rows). */
static double image_macs(const conv_layer *c, int rows) {
    return (double)rows * c->out.h * c->out.w * conv_k(c);
}

static conv_plan plan_conv(const conv_layer *c, int n, int threads) {
    const int oh = c->out.h, pixels = c->out.h * c->out.w;
    conv_plan p = {false, oh, n};
    if (is_direct(c)) { /* bands of at most one image's rows whose im2col matrix stays in L2 */
        int band = (int)(CHUNK_FLOATS / ((size_t)conv_k(c) * (size_t)c->out.w));
        band = band < 1 ? 1 : band > oh ? oh : band;
        p.rows_per_chunk = band;
        p.chunks = (n * oh + band - 1) / band;
        return p;
    }
    if (!columns_independent() || image_macs(c, c->cout) <= SMALL_GEMM_MACS)
        return p; /* one image at a time */
    int share = (c->cout + threads - 1) / threads;
    share = (share + ROW_ALIGN - 1) / ROW_ALIGN * ROW_ALIGN;
    if (n == 1 && threads > 1 && share < c->cout && image_macs(c, c->cout - share * (threads - 1)) > SMALL_GEMM_MACS) {
        p.split_channels = true;
        return p;
    }
    size_t target = CHUNK_FLOATS / (size_t)conv_k(c);
    if (target < (size_t)c->cout) target = (size_t)c->cout; /* amortise packing the weights */
    size_t images = target / (size_t)pixels;
    if (images < 1) images = 1;
    if (images > (size_t)n) images = (size_t)n;
    p.rows_per_chunk = (int)images * oh;
    p.chunks = (n + (int)images - 1) / (int)images;
    return p;
}

size_t conv_col_floats(const conv_layer *c, int max_n, int threads) {
    if (is_pointwise(c) || c->groups > 1) return 0;
    if (c->winograd_weight) return winograd_scratch_floats(c, threads);
    /* Chunks grow with n, and one image's matrix serves a channel split. */
    conv_plan p = plan_conv(c, max_n, threads);
    return (size_t)conv_k(c) * (size_t)p.rows_per_chunk * (size_t)c->out.w * (size_t)threads;
}

/* First output index whose input index o*stride - pad + k is >= 0, and one past the last < size. */
static void valid_range(int out_size, int in_size, int stride, int pad, int k, int *first, int *end) {
    int lo = pad - k > 0 ? (pad - k + stride - 1) / stride : 0;
    int hi = in_size + pad - k > 0 ? (in_size + pad - k + stride - 1) / stride : 0;
    *first = lo < out_size ? lo : out_size;
    *end = hi < out_size ? hi : out_size;
    if (*end < *first) *end = *first;
}

/* Zeroes columns [0, ox0) and [ox1, ow) of `rows` rows of width ow: the padding. Column by
 * column, as per-row loops of one or two floats would each become a memset call. */
static void zero_fringe(float *dst, int rows, int ow, int ox0, int ox1) {
    for (int ox = 0; ox < ow; ox++) {
        if (ox == ox0) ox = ox1 > ox0 ? ox1 : ox0;
        for (int r = 0; ox < ow && r < rows; r++) dst[(size_t)r * ow + ox] = 0.0f;
    }
}

/* Stride 1 with ow == iw: one image's rows [a, b) of col row (ky, kx) are one contiguous
 * run of its input plane, so copy it at once and zero the padding around it. */
static void im2col_plane_s1(const conv_layer *c, const float *restrict plane, float *restrict dst, int ky, int kx,
                            int a, int b) {
    const int ih = c->in.h, iw = c->in.w, ow = c->out.w, p = c->padding;
    int ox0, ox1, oy0, oy1;
    valid_range(ow, iw, 1, p, kx, &ox0, &ox1);
    valid_range(c->out.h, ih, 1, p, ky, &oy0, &oy1);
    if (oy0 < a) oy0 = a;
    if (oy1 > b) oy1 = b;
    if (oy1 <= oy0 || ox1 <= ox0) oy0 = oy1 = b;
    for (float *z = dst, *end = dst + (size_t)(oy0 - a) * ow; z < end; z++) *z = 0.0f;
    if (oy0 < oy1) {
        float *run = dst + (size_t)(oy0 - a) * ow;
        const float *src = plane + (size_t)(oy0 - p + ky) * iw - p + kx;
        const size_t first = (size_t)ox0, last = (size_t)(oy1 - oy0 - 1) * ow + (size_t)ox1; /* [first, last) */
        memcpy(run + first, src + first, (last - first) * sizeof(float));
        zero_fringe(run, oy1 - oy0, ow, ox0, ox1);
    }
    for (float *z = dst + (size_t)(oy1 - a) * ow, *end = dst + (size_t)(b - a) * ow; z < end; z++) *z = 0.0f;
}

/* One image's rows [a, b) of col row (ky, kx), any stride. */
static void im2col_plane(const conv_layer *c, const float *restrict plane, float *restrict dst, int ky, int kx, int a,
                         int b) {
    const int ih = c->in.h, iw = c->in.w, ow = c->out.w, s = c->stride, p = c->padding;
    if (s == 1 && ow == iw) {
        im2col_plane_s1(c, plane, dst, ky, kx, a, b);
        return;
    }
    int ox0, ox1;
    valid_range(ow, iw, s, p, kx, &ox0, &ox1);
    for (int oy = a; oy < b; oy++) {
        float *row = dst + (size_t)(oy - a) * ow;
        int iy = oy * s - p + ky;
        if (iy < 0 || iy >= ih) {
            for (int ox = 0; ox < ow; ox++) row[ox] = 0.0f;
            continue;
        }
        const float *src = plane + (size_t)iy * iw - p + kx;
        if (s == 2) /* the strided convs of residual blocks: a constant stride vectorises */
            for (int ox = ox0; ox < ox1; ox++) row[ox] = src[ox * 2];
        else
            for (int ox = ox0; ox < ox1; ox++) row[ox] = src[ox * s];
    }
    zero_fringe(dst, b - a, ow, ox0, ox1);
}

/* col[(ci*kh + ky)*kw + kx][r - r0][ox] = in[ci][img][oy*s - p + ky][ox*s - p + kx] (0 outside)
 * for the output rows r = img*oh + oy in [r0, r1). */
static void im2col(const conv_layer *c, const float *in, float *col, int n, int r0, int r1) {
    const int oh = c->out.h, ow = c->out.w;
    const size_t plane_floats = (size_t)c->in.h * c->in.w;
    for (int ci = 0; ci < c->cin; ci++) {
        for (int ky = 0; ky < c->kh; ky++) {
            for (int kx = 0; kx < c->kw; kx++) {
                for (int r = r0; r < r1;) {
                    int img = r / oh, a = r % oh, b = r1 - img * oh < oh ? r1 - img * oh : oh;
                    im2col_plane(c, in + ((size_t)ci * n + img) * plane_floats, col, ky, kx, a, b);
                    col += (size_t)(b - a) * ow;
                    r += b - a;
                }
            }
        }
    }
}

/* row = row * scale + shift, then ReLU if asked. */
static void epilogue_row(float *row, size_t cols, float scale, float shift, bool relu) {
    if (relu) {
        for (size_t i = 0; i < cols; i++) {
            float v = row[i] * scale + shift;
            row[i] = v > 0.0f ? v : 0.0f;
        }
    } else {
        for (size_t i = 0; i < cols; i++) row[i] = row[i] * scale + shift;
    }
}

/* out rows [o0, o1) x `cols` columns (row stride ld) = (W x b) * scale + bias, ReLU'd if the conv
 * says so (b: k x cols, row stride ldb). */
static void gemm_block(const conv_layer *c, const float *b, size_t ldb, float *out, size_t ld, int o0, int o1,
                       size_t cols) {
    const int k = conv_k(c);
    for (int o = o0; o < o1; o++) memset(out + (size_t)o * ld, 0, cols * sizeof(float));
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, o1 - o0, (int)cols, k, 1.0f, c->weight + (size_t)o0 * k,
                k, b, (int)ldb, 1.0f, out + (size_t)o0 * ld, (int)ld);
    for (int o = o0; o < o1; o++)
        epilogue_row(out + (size_t)o * ld, cols, c->scale ? c->scale[o] : 1.0f, c->bias[o], c->relu);
}

/* A conv whose K is this small (a first layer on gray or RGB input: K = 9 or 27) is no GEMM
 * worth the name: OpenBLAS runs the K = 9 one at a fifth of its speed. Each output is then K
 * multiply-adds over the im2col matrix, vectorised for the CPU at hand. */
#define DIRECT_TILE 64 /* direct_tile's width */

typedef float vec16 __attribute__((vector_size(64), aligned(4)));
typedef int ivec16 __attribute__((vector_size(64), aligned(4)));

/* out[0, 64) = (w . col[.][i]) * scale + shift, ReLU'd if asked; col rows ldc apart. Four
 * accumulators of 16 floats, so that they stay in registers. */
__attribute__((target_clones("avx512f", "avx2", "default"))) static void
direct_tile(const float *w, int k, const float *col, size_t ldc, float scale, float shift, bool relu, float *out) {
    vec16 a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0};
    for (int kk = 0; kk < k; kk++) {
        const float *src = col + (size_t)kk * ldc;
        a0 += w[kk] * *(const vec16 *)src;
        a1 += w[kk] * *(const vec16 *)(src + 16);
        a2 += w[kk] * *(const vec16 *)(src + 32);
        a3 += w[kk] * *(const vec16 *)(src + 48);
    }
    const vec16 acc[4] = {a0, a1, a2, a3};
    for (int v = 0; v < 4; v++) {
        vec16 y = acc[v] * scale + shift;
        if (relu) y = (vec16)((ivec16)y & (y > 0.0f)); /* a comparison is all ones where true */
        *(vec16 *)(out + 16 * v) = y;
    }
}

/* out (row stride ld) = (W x col) * scale + bias, ReLU'd if asked, for col: k x cols. */
static void direct_block(const conv_layer *c, const float *col, size_t cols, float *out, size_t ld) {
    const int k = conv_k(c);
    float tail_in[DIRECT_MAX_K * DIRECT_TILE], tail_out[DIRECT_TILE];
    for (size_t t0 = 0; t0 < cols; t0 += DIRECT_TILE) {
        const size_t t = cols - t0 < DIRECT_TILE ? cols - t0 : DIRECT_TILE;
        const float *src = col + t0;
        size_t ldc = cols;
        if (t < DIRECT_TILE) { /* the last, partial tile: zero-padded to a whole one */
            memset(tail_in, 0, sizeof tail_in);
            for (int kk = 0; kk < k; kk++)
                memcpy(tail_in + (size_t)kk * DIRECT_TILE, src + (size_t)kk * cols, t * sizeof(float));
            src = tail_in;
            ldc = DIRECT_TILE;
        }
        for (int o = 0; o < c->cout; o++) {
            float *row = out + (size_t)o * ld + t0, *dst = t < DIRECT_TILE ? tail_out : row;
            direct_tile(c->weight + (size_t)o * k, k, src, ldc, c->scale ? c->scale[o] : 1.0f, c->bias[o], c->relu, dst);
            if (dst != row) memcpy(row, dst, t * sizeof(float));
        }
    }
}

typedef struct {
    const conv_layer *conv;
    const float *in;
    float *out, *col;
    int n;
    conv_plan plan;
} conv_job;

/* Task: one chunk of output rows, all channels. */
static void run_chunk(void *arg, int chunk, int thread) {
    const conv_job *j = arg;
    const conv_layer *c = j->conv;
    const int ow = c->out.w, rows = j->n * c->out.h;
    const int r0 = chunk * j->plan.rows_per_chunk;
    const int r1 = r0 + j->plan.rows_per_chunk < rows ? r0 + j->plan.rows_per_chunk : rows;
    const size_t ld = (size_t)rows * ow, first = (size_t)r0 * ow, cols = (size_t)(r1 - r0) * ow;
    if (is_pointwise(c)) {
        gemm_block(c, j->in + first, ld, j->out + first, ld, 0, c->cout, cols);
        return;
    }
    float *col = j->col + (size_t)thread * conv_k(c) * j->plan.rows_per_chunk * ow;
    im2col(c, j->in, col, j->n, r0, r1);
    if (is_direct(c)) direct_block(c, col, cols, j->out + first, ld);
    else gemm_block(c, col, cols, j->out + first, ld, 0, c->cout, cols);
}

/* Task: one share of the output channels over the shared im2col matrix in j->col. */
static void run_channels(void *arg, int part, int thread) {
    (void)thread;
    const conv_job *j = arg;
    const conv_layer *c = j->conv;
    const size_t cols = (size_t)j->n * c->out.h * c->out.w;
    const int parts = j->plan.chunks;
    int per = (c->cout + parts - 1) / parts;
    per = (per + ROW_ALIGN - 1) / ROW_ALIGN * ROW_ALIGN;
    const int o0 = part * per < c->cout ? part * per : c->cout;
    const int o1 = o0 + per < c->cout ? o0 + per : c->cout;
    if (o0 < o1) gemm_block(c, is_pointwise(c) ? j->in : j->col, cols, j->out, cols, o0, o1, cols);
}

void conv_forward(const conv_layer *c, const float *in, float *out, int n, float *col, thread_pool *pool) {
    if (c->groups > 1) {
        depthwise_forward(c, in, out, n);
        return;
    }
    if (c->winograd_weight) {
        winograd_forward(c, c->winograd_weight, in, out, n, col, pool);
        return;
    }
    const int threads = pool_size(pool);
    conv_job job = {c, in, out, col, n, plan_conv(c, n, threads)};
    if (job.plan.split_channels) {
        if (!is_pointwise(c)) im2col(c, in, col, n, 0, n * c->out.h);
        job.plan.chunks = threads;
        pool_run(pool, run_channels, &job, threads);
    } else {
        pool_run(pool, run_chunk, &job, job.plan.chunks);
    }
}
