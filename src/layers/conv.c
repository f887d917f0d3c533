/* conv2d as im2col + SGEMM (darknet style); 1x1 stride-1 unpadded convs use the input as is
 * where the GEMM needs no padding columns.
 *
 * The same image must give bitwise-identical results whatever else is in its batch, its
 * position and the thread count (README, Determinism), and OpenBLAS does not promise that a
 * column of a GEMM comes out the same in GEMMs of other widths. What we measured (OpenBLAS
 * 0.3.21, tools/blas_columns.c over widths, offsets, K and channel counts, per
 * OPENBLAS_CORETYPE; tests/test_conv.c measures the running kernel again), in terms of the
 * GEMM C = W x B whose columns are output pixels:
 *   - SkylakeX, Cooperlake (AVX-512): every column alone, at any width, as long as the GEMM
 *     has more than 100^3 multiply-adds (below that a "small matrix" kernel rounds otherwise);
 *   - Haswell, Zen (AVX2): the first 8 and the last 8..15 columns of each block of GEMM_P = 320
 *     columns are computed differently from the rest (OpenBLAS cuts wider GEMMs into blocks
 *     whose size depends on the width); every other column comes out alone. So a GEMM gets 8
 *     unused columns in front, at least 8 behind up to a multiple of 8, and at most 320 in all;
 *   - Sandybridge, Nehalem, Core2, Barcelona: every column alone; Prescott, Atom: the last
 *     width % 4 columns differ, so widths are multiples of 4;
 *   - output channels: Haswell and Zen round a row by its place in blocks of 12 rows, the
 *     others are measured to compute rows alone in blocks of 16;
 *   - Haswell, Zen transposed (C^T = B^T x W^T, pixels as OpenBLAS's N): a column comes out
 *     alone when every image's pixels start at a multiple of 12 and fill a slot of a multiple
 *     of 12 (pixel_align). Convs of at most SLOT_MAX_PIXELS pixels run so there (run_slots):
 *     a 3x3 image costs 12 columns instead of a padded GEMM of 32.
 * gemm_layout holds that per kernel. With a measured kernel a conv's GEMMs take any run of
 * output rows (image, oy) of the batch, images side by side, padded as its layout says, and
 * one image may be split across threads by output rows or by channel blocks of row_align:
 * each column's result is the same. With another kernel: one GEMM per image, on one thread.
 * A conv with K <= DIRECT_MAX_K (a first layer) is no GEMM at all (direct_block), whose
 * columns are independent by construction. beta is always 1 over a zeroed output, which
 * keeps every GEMM off OpenBLAS's direct (beta = 0) path. After each GEMM, the BatchNorm
 * scale and shift (plus bias) and ReLU run while in cache.
 * A 3x3 stride-1 conv with Winograd weights (conv_weights.c) runs as Winograd (winograd.c).
 * A conv with small output planes (conv_wants_packed: narrow GEMMs, where OpenBLAS spends more
 * time packing the weights than multiplying) runs on our own GEMM over weights packed once
 * (packed_gemm.c): its columns are independent by construction, so it takes any chunk of output
 * rows or block of 32 channels on any thread, whatever the OpenBLAS kernel.
 * Other GEMMs that must not depend on their neighbours (Winograd's per-position products) lay
 * themselves out the same way: gemm_layout_current(), gemm_layout_width() and row_align.
 * Measured (2-core EPYC, README Determinism): batch 32 under Haswell 476 -> 524 images/s on one
 * thread, near Cooperlake's; one image on two threads 1.65-1.8x one thread under Cooperlake;
 * one image on one thread under Haswell ~5 % slower than one unpadded GEMM per image. */
#include <cblas.h>
#include <limits.h>
#include <string.h>
#include <strings.h>

#include "layers.h"
#include "util.h"

/* Floats of im2col matrix per chunk that stay in L2 next to the packed weights. */
#define CHUNK_FLOATS (128 * 1024)
/* One image on several threads: split by output pixels while each thread gets at least this
 * many columns, else by output channels (fewer padding columns, bigger GEMMs). */
#define MIN_SPLIT_COLS 64
/* Convs with at most this many output pixels an image run transposed where the kernel allows
 * (gemm_layout.pixel_align): a 3x3 image in a slot of 12 columns instead of a GEMM of 32. */
#define SLOT_MAX_PIXELS 64

/* Measured with OpenBLAS 0.3.21 (see above); another version may cut its GEMMs otherwise. */
#define MEASURED_OPENBLAS "OpenBLAS 0.3.21 "
static const gemm_layout LAYOUTS[] = {
    /* core        lead align trail max_width min_macs row_align pixel_align */
    {"SkylakeX", 0, 1, 0, 0, 1e6, 16, 0},
    {"Cooperlake", 0, 1, 0, 0, 1e6, 16, 0},
    {"Haswell", 8, 8, 8, 320, 0, 12, 12},
    {"Zen", 8, 8, 8, 320, 0, 12, 12},
    {"Sandybridge", 0, 1, 0, 0, 1e6, 16, 0},
    {"Nehalem", 0, 1, 0, 0, 1e6, 16, 0},
    {"Core2", 0, 1, 0, 0, 1e6, 16, 0},
    {"Barcelona", 0, 1, 0, 0, 1e6, 16, 0},
    {"Prescott", 0, 4, 0, 0, 1e6, 16, 0},
    {"Atom", 0, 4, 0, 0, 1e6, 16, 0},
};

const gemm_layout *gemm_layout_current(void) {
    const char *config = openblas_get_config(), *core = openblas_get_corename();
    if (!config || !core || strncmp(config, MEASURED_OPENBLAS, strlen(MEASURED_OPENBLAS)) != 0) return NULL;
    for (size_t i = 0; i < sizeof LAYOUTS / sizeof LAYOUTS[0]; i++)
        if (!strcasecmp(core, LAYOUTS[i].core)) return &LAYOUTS[i];
    return NULL;
}

int gemm_layout_width(const gemm_layout *g, int cols, double macs_per_col) {
    double need = (double)g->lead + cols + g->trail;
    if (macs_per_col > 0 && need * macs_per_col <= g->min_macs) need = (double)(long)(g->min_macs / macs_per_col) + 1;
    double width = (double)(long)((need + g->align - 1) / g->align) * g->align;
    if ((g->max_width && width > g->max_width) || width > INT_MAX / 2) return 0;
    return (int)width;
}

typedef struct {
    const gemm_layout *g; /* NULL: each chunk is one image, as its own GEMM (or direct_block) */
    int rows_per_chunk;   /* output rows (image, oy) per chunk */
    int chunks;
    int parts;     /* > 1: one chunk, its output channels split into parts of part_rows */
    int part_rows;
    int width;     /* GEMM columns of a whole chunk */
    int slot;      /* > 0: run transposed, each image's pixels in `slot` columns (whole images) */
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

/* Output planes of at most this many pixels, and at least PACKED_ROWS output channels, run
 * on packed_gemm: its tiles are 32 channels by 12 columns. */
#define PACKED_MAX_PIXELS 1024

bool conv_wants_packed(const conv_layer *c) {
    return c->groups == 1 && !is_direct(c) && !conv_wants_winograd(c) && c->cout >= PACKED_ROWS &&
           (size_t)c->out.h * c->out.w <= PACKED_MAX_PIXELS;
}

static int min_int(int a, int b) { return a < b ? a : b; }
static int ceil_div(int a, int b) { return (a + b - 1) / b; }

/* Most output rows a chunk of this conv may take under layout g: cache-sized (and at least
 * cout columns, to amortise packing the weights), within g->max_width. */
static int chunk_rows(const conv_layer *c, const gemm_layout *g) {
    const int ow = c->out.w;
    size_t target = CHUNK_FLOATS / (size_t)conv_k(c);
    if (!is_direct(c) && target < (size_t)c->cout) target = (size_t)c->cout;
    int rows = target / (size_t)ow < 1 ? 1 : target / (size_t)ow > INT_MAX / 2 ? INT_MAX / 2 : (int)(target / (size_t)ow);
    if (g && g->max_width) {
        int fit = (g->max_width / g->align * g->align - g->lead - g->trail) / ow;
        rows = min_int(rows, fit);
    }
    return rows;
}

static conv_plan plan_conv(const conv_layer *c, const gemm_layout *g, int n, int threads) {
    const int oh = c->out.h, ow = c->out.w, rows = n * oh;
    const double macs_per_col = (double)c->cout * conv_k(c);
    conv_plan p = {NULL, oh, n, 1, c->cout, oh * ow, 0}; /* one image per chunk */
    if (is_direct(c)) {
        p.rows_per_chunk = chunk_rows(c, NULL);
        if (threads > 1) p.rows_per_chunk = min_int(p.rows_per_chunk, ceil_div(rows, threads));
        p.rows_per_chunk = min_int(p.rows_per_chunk, rows);
        p.chunks = ceil_div(rows, p.rows_per_chunk);
        p.width = p.rows_per_chunk * ow;
        return p;
    }
    if (c->packed_weight) { /* any chunk of rows, or one chunk split by blocks of 32 channels */
        const int blocks = (int)(packed_ldc(c->cout) / PACKED_ROWS);
        p.rows_per_chunk = min_int(chunk_rows(c, NULL), rows);
        if (threads > 1) {
            const int per_thread = ceil_div(rows, threads);
            if (per_thread * ow < MIN_SPLIT_COLS && blocks > 1 && rows <= p.rows_per_chunk) {
                p.parts = min_int(threads, blocks);
                p.part_rows = ceil_div(blocks, p.parts) * PACKED_ROWS;
                p.parts = ceil_div(blocks * PACKED_ROWS, p.part_rows);
            } else {
                p.rows_per_chunk = min_int(p.rows_per_chunk, per_thread);
            }
        }
        p.chunks = ceil_div(rows, p.rows_per_chunk);
        p.width = p.rows_per_chunk * ow;
        return p;
    }
    if (g && g->pixel_align && oh * ow <= SLOT_MAX_PIXELS) { /* see run_slots */
        const int slot = ceil_div(oh * ow, g->pixel_align) * g->pixel_align;
        size_t target = CHUNK_FLOATS / (size_t)conv_k(c);
        if (target < (size_t)c->cout) target = (size_t)c->cout;
        int images = target / (size_t)slot < 1 ? 1 : target / (size_t)slot > (size_t)n ? n : (int)(target / (size_t)slot);
        if (threads > 1) images = min_int(images, ceil_div(n, threads));
        return (conv_plan){g, images * oh, ceil_div(n, images), 1, c->cout, images * slot, slot};
    }
    if (!g || chunk_rows(c, g) < 1 || !gemm_layout_width(g, ow, macs_per_col)) return p;
    p.g = g;
    p.rows_per_chunk = min_int(chunk_rows(c, g), rows);
    if (threads > 1) {
        const int per_thread = ceil_div(rows, threads);
        const int part_rows = g->row_align ? ceil_div(ceil_div(c->cout, threads), g->row_align) * g->row_align : c->cout;
        if (per_thread * ow < MIN_SPLIT_COLS && part_rows < c->cout && rows <= p.rows_per_chunk) {
            const int last = c->cout - (ceil_div(c->cout, part_rows) - 1) * part_rows;
            p.parts = ceil_div(c->cout, part_rows);
            p.part_rows = part_rows;
            p.rows_per_chunk = rows;
            p.chunks = 1;
            p.width = gemm_layout_width(g, rows * ow, (double)last * conv_k(c));
            if (p.width) return p;
            p.parts = 1;
            p.part_rows = c->cout;
        }
        p.rows_per_chunk = min_int(p.rows_per_chunk, per_thread);
    }
    p.chunks = ceil_div(rows, p.rows_per_chunk);
    p.width = gemm_layout_width(g, p.rows_per_chunk * ow, macs_per_col);
    if (!p.width) return (conv_plan){NULL, oh, n, 1, c->cout, oh * ow, 0};
    return p;
}

/* Whether a GEMM of `width` columns, `cols` of which count, writes straight into the output. */
static bool writes_output(const conv_plan *p, int cols, int width) { return !p->g || (p->g->lead == 0 && width == cols); }

/* Whether some chunk of the plan may need padding columns. */
static bool may_pad(const conv_plan *p) {
    return p->g && (p->slot || p->g->lead || p->g->trail || p->g->align > 1 || p->g->min_macs > 0);
}

/* Scratch floats of one chunk, in whole cache lines: its im2col matrix (K x width) unless a
 * pointwise conv reads its input as is, and, where the GEMM may be padded, the cout x width
 * product. */
static size_t chunk_floats(const conv_layer *c, const conv_plan *p) {
    const size_t w = (size_t)p->width;
    return whole_lines(c->packed_weight
                           ? (is_pointwise(c) ? 0 : (size_t)conv_k(c) * w) + w * packed_ldc(c->cout)
                           : (is_pointwise(c) && !may_pad(p) ? 0 : (size_t)conv_k(c) * w) + (may_pad(p) ? (size_t)c->cout * w : 0));
}

/* Per thread, or once where the threads split one chunk by channels. */
static size_t plan_floats(const conv_layer *c, const conv_plan *p, int threads) {
    return chunk_floats(c, p) * (p->parts > 1 ? 1 : (size_t)threads);
}

size_t conv_col_floats(const conv_layer *c, int max_n, int threads) {
    if (c->groups > 1) return 0;
    if (c->winograd_weight) return winograd_scratch_floats(c, max_n, threads);
    const gemm_layout *g = gemm_layout_current();
    conv_plan p = plan_conv(c, g, max_n, threads);
    size_t most = plan_floats(c, &p, threads);
    /* Smaller batches may split by channels or pad more: check each that could. */
    const int pixels = c->out.h * c->out.w, few = ceil_div(MIN_SPLIT_COLS * threads, pixels) + 1;
    for (int n = 1; n <= max_n && n <= few; n++) {
        p = plan_conv(c, g, n, threads);
        size_t f = plan_floats(c, &p, threads);
        if (f > most) most = f;
    }
    return most;
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
 * for the output rows r = img*oh + oy in [r0, r1) and input channels ci in [ci0, ci1); col's
 * rows are ldc floats apart. */
static void im2col_channels(const conv_layer *c, const float *in, float *col, size_t ldc, int n, int r0, int r1,
                            int ci0, int ci1) {
    const int oh = c->out.h, ow = c->out.w;
    const size_t plane_floats = (size_t)c->in.h * c->in.w;
    col += (size_t)ci0 * c->kh * c->kw * ldc;
    for (int ci = ci0; ci < ci1; ci++) {
        for (int ky = 0; ky < c->kh; ky++) {
            for (int kx = 0; kx < c->kw; kx++, col += ldc) {
                float *dst = col;
                for (int r = r0; r < r1;) {
                    int img = r / oh, a = r % oh, b = r1 - img * oh < oh ? r1 - img * oh : oh;
                    im2col_plane(c, in + ((size_t)ci * n + img) * plane_floats, dst, ky, kx, a, b);
                    dst += (size_t)(b - a) * ow;
                    r += b - a;
                }
            }
        }
    }
}

static void im2col(const conv_layer *c, const float *in, float *col, size_t ldc, int n, int r0, int r1) {
    im2col_channels(c, in, col, ldc, n, r0, r1, 0, c->cin);
}

/* A padded GEMM's B: im2col of rows [r0, r1) at column `lead` of rows `width` wide, the
 * unused columns zero. */
static void fill_padded(const conv_layer *c, const float *in, float *col, int n, int r0, int r1, int lead, int width) {
    const size_t cols = (size_t)(r1 - r0) * c->out.w;
    im2col(c, in, col + lead, (size_t)width, n, r0, r1);
    for (int k = 0, kk = conv_k(c); k < kk; k++) {
        float *row = col + (size_t)k * width;
        memset(row, 0, (size_t)lead * sizeof(float));
        memset(row + lead + cols, 0, ((size_t)width - lead - cols) * sizeof(float));
    }
}

/* dst[i] = src[i] * scale + shift, then ReLU if asked (src may be dst). */
static void epilogue_row(const float *src, float *dst, size_t cols, float scale, float shift, bool relu) {
    if (relu) {
        for (size_t i = 0; i < cols; i++) {
            float v = src[i] * scale + shift;
            dst[i] = v > 0.0f ? v : 0.0f;
        }
    } else {
        for (size_t i = 0; i < cols; i++) dst[i] = src[i] * scale + shift;
    }
}

/* out rows [o0, o1) x `cols` columns (row stride ld) = (W x b) * scale + bias, ReLU'd if the
 * conv says so; b: k x width (row stride ldb), its columns [lead, lead + cols) the ones that
 * count. c_scratch: NULL to multiply straight into out (lead 0, width == cols), else where the
 * whole cout x width product goes first (row stride width). */
static void gemm_block(const conv_layer *c, const float *b, size_t ldb, int lead, int width, float *out, size_t ld,
                       int o0, int o1, size_t cols, float *c_scratch) {
    const int k = conv_k(c);
    float *dst = c_scratch ? c_scratch : out;
    const size_t ldd = c_scratch ? (size_t)width : ld;
    for (int o = o0; o < o1; o++) memset(dst + (size_t)o * ldd, 0, (size_t)width * sizeof(float));
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, o1 - o0, width, k, 1.0f, c->weight + (size_t)o0 * k, k, b,
                (int)ldb, 1.0f, dst + (size_t)o0 * ldd, (int)ldd);
    for (int o = o0; o < o1; o++)
        epilogue_row(dst + (size_t)o * ldd + lead, out + (size_t)o * ld, cols, c->scale ? c->scale[o] : 1.0f,
                     c->bias[o], c->relu);
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

/* out rows [o0, o1) x cols (row stride ld) = ct^T * scale + bias, ReLU'd if the conv says so:
 * a GEMM's product laid out pixel-major (ct: cols x ldc) back to channels. */
static void epilogue_transposed(const conv_layer *c, const float *ct, size_t ldc, size_t cols, float *out, size_t ld,
                                int o0, int o1) {
    enum { BLOCK = 16 }; /* columns at a time: their rows of ct stay in L1 across channels */
    for (size_t p0 = 0; p0 < cols; p0 += BLOCK) {
        const size_t p1 = cols - p0 < BLOCK ? cols : p0 + BLOCK;
        for (int o = o0; o < o1; o++) {
            const float scale = c->scale ? c->scale[o] : 1.0f, shift = c->bias[o];
            float *row = out + (size_t)o * ld;
            for (size_t p = p0; p < p1; p++) {
                float v = ct[p * ldc + o] * scale + shift;
                row[p] = c->relu && !(v > 0.0f) ? 0.0f : v;
            }
        }
    }
}

/* A chunk of whole images, transposed: col (K x width) holds image i's im2col columns at
 * i * slot (zero up to the next slot), ct (width x cout) = col^T x W^T, then the epilogue
 * writes each image's rows of ct back as output channels. */
static void run_slots(const conv_job *j, int chunk, float *col) {
    const conv_layer *c = j->conv;
    const conv_plan *p = &j->plan;
    const int oh = c->out.h, pixels = oh * c->out.w, slot = p->slot, k = conv_k(c), cout = c->cout;
    const int img0 = chunk * (p->rows_per_chunk / oh), img1 = min_int(img0 + p->rows_per_chunk / oh, j->n);
    const int width = (img1 - img0) * slot;
    const size_t ld = (size_t)j->n * pixels;
    for (int img = img0; img < img1; img++) {
        float *dst = col + (size_t)(img - img0) * slot;
        im2col(c, j->in, dst, (size_t)width, j->n, img * oh, (img + 1) * oh);
        for (int r = 0; r < k; r++) memset(dst + (size_t)r * width + pixels, 0, (size_t)(slot - pixels) * sizeof(float));
    }
    float *ct = col + (size_t)k * p->width;
    memset(ct, 0, (size_t)width * cout * sizeof(float));
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasTrans, width, cout, k, 1.0f, col, width, c->weight, k, 1.0f, ct, cout);
    for (int img = img0; img < img1; img++)
        epilogue_transposed(c, ct + (size_t)(img - img0) * slot * cout, (size_t)cout, (size_t)pixels,
                            j->out + (size_t)img * pixels, ld, 0, cout);
}

/* The packed path's B for output rows [r0, r1): the input itself for a pointwise conv, else
 * their im2col in col. */
static const float *packed_b(const conv_job *j, float *col, int r0, int r1, size_t *ldb) {
    const conv_layer *c = j->conv;
    const size_t ld = (size_t)j->n * c->out.h * c->out.w, cols = (size_t)(r1 - r0) * c->out.w;
    if (is_pointwise(c)) {
        *ldb = ld;
        return j->in + (size_t)r0 * c->out.w;
    }
    im2col(c, j->in, col, cols, j->n, r0, r1);
    *ldb = cols;
    return col;
}

/* Task (packed path): one chunk of output rows, all channels. */
static void run_packed_chunk(void *arg, int chunk, int thread) {
    const conv_job *j = arg;
    const conv_layer *c = j->conv;
    const conv_plan *p = &j->plan;
    const int rows = j->n * c->out.h, r0 = chunk * p->rows_per_chunk, r1 = min_int(r0 + p->rows_per_chunk, rows);
    const size_t ld = (size_t)rows * c->out.w, cols = (size_t)(r1 - r0) * c->out.w, ldc = packed_ldc(c->cout);
    float *col = j->col + (size_t)thread * chunk_floats(c, p), *ct = col + (is_pointwise(c) ? 0 : (size_t)conv_k(c) * cols);
    size_t ldb;
    const float *b = packed_b(j, col, r0, r1, &ldb);
    packed_gemm(c->packed_weight, conv_k(c), 0, (int)ldc, b, ldb, (int)cols, ct, ldc);
    epilogue_transposed(c, ct, ldc, cols, j->out + (size_t)r0 * c->out.w, ld, 0, c->cout);
}

/* Task (packed path): a share of the input channels' rows of the whole batch's im2col in j->col,
 * for run_packed_part. */
static void run_packed_im2col(void *arg, int part, int thread) {
    (void)thread;
    const conv_job *j = arg;
    const conv_layer *c = j->conv;
    const size_t cols = (size_t)j->n * c->out.h * c->out.w;
    size_t ci0, ci1;
    pool_share((size_t)c->cin, j->plan.parts, part, &ci0, &ci1);
    im2col_channels(c, j->in, j->col, cols, j->n, 0, j->n * c->out.h, (int)ci0, (int)ci1);
}

/* Task (packed path): one block of output channels of the whole batch; j->col holds B. */
static void run_packed_part(void *arg, int part, int thread) {
    (void)thread;
    const conv_job *j = arg;
    const conv_layer *c = j->conv;
    const conv_plan *p = &j->plan;
    const size_t cols = (size_t)j->n * c->out.h * c->out.w, ldc = packed_ldc(c->cout);
    const int o0 = part * p->part_rows, o1 = min_int(o0 + p->part_rows, (int)ldc);
    const float *b = is_pointwise(c) ? j->in : j->col;
    float *ct = j->col + (is_pointwise(c) ? 0 : (size_t)conv_k(c) * cols);
    packed_gemm(c->packed_weight, conv_k(c), o0, o1, b, cols, (int)cols, ct, ldc);
    epilogue_transposed(c, ct, ldc, cols, j->out, cols, o0, min_int(o1, c->cout));
}

/* Task: one chunk of output rows, all channels, in this thread's share of j->col. */
static void run_chunk(void *arg, int chunk, int thread) {
    const conv_job *j = arg;
    const conv_layer *c = j->conv;
    const conv_plan *p = &j->plan;
    const int ow = c->out.w, rows = j->n * c->out.h, k = conv_k(c);
    const int r0 = chunk * p->rows_per_chunk, r1 = min_int(r0 + p->rows_per_chunk, rows);
    const size_t ld = (size_t)rows * ow, first = (size_t)r0 * ow, cols = (size_t)(r1 - r0) * ow;
    const int width = p->g ? gemm_layout_width(p->g, (int)cols, (double)c->cout * k) : (int)cols;
    const bool direct_out = writes_output(p, (int)cols, width);
    float *col = j->col + (size_t)thread * chunk_floats(c, p);
    if (p->slot) {
        run_slots(j, chunk, col);
        return;
    }
    if (is_pointwise(c) && !may_pad(p)) {
        gemm_block(c, j->in + first, ld, 0, (int)cols, j->out + first, ld, 0, c->cout, cols, NULL);
        return;
    }
    if (is_direct(c)) {
        im2col(c, j->in, col, cols, j->n, r0, r1);
        direct_block(c, col, cols, j->out + first, ld);
        return;
    }
    const int lead = p->g ? p->g->lead : 0;
    fill_padded(c, j->in, col, j->n, r0, r1, lead, width);
    gemm_block(c, col, (size_t)width, lead, width, j->out + first, ld, 0, c->cout, cols,
               direct_out ? NULL : col + (size_t)k * p->width);
}

/* Task: one block of output channels over the shared im2col matrix in j->col. */
static void run_part(void *arg, int part, int thread) {
    (void)thread;
    const conv_job *j = arg;
    const conv_layer *c = j->conv;
    const conv_plan *p = &j->plan;
    const size_t cols = (size_t)j->n * c->out.h * c->out.w;
    const int o0 = part * p->part_rows, o1 = min_int(o0 + p->part_rows, c->cout);
    const bool direct_out = writes_output(p, (int)cols, p->width);
    const float *b = is_pointwise(c) && !may_pad(p) ? j->in : j->col;
    float *c_scratch = direct_out ? NULL : j->col + (is_pointwise(c) && !may_pad(p) ? 0 : (size_t)conv_k(c) * p->width);
    gemm_block(c, b, (size_t)p->width, p->g->lead, p->width, j->out, cols, o0, o1, cols, c_scratch);
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
    conv_job job = {c, in, out, col, n, plan_conv(c, gemm_layout_current(), n, pool_size(pool))};
    const conv_plan *p = &job.plan;
    if (c->packed_weight) {
        if (p->parts > 1) {
            if (!is_pointwise(c)) pool_run(pool, run_packed_im2col, &job, p->parts);
            pool_run(pool, run_packed_part, &job, p->parts);
        } else {
            pool_run(pool, run_packed_chunk, &job, p->chunks);
        }
        return;
    }
    if (p->parts > 1) {
        if (!(is_pointwise(c) && !may_pad(p))) fill_padded(c, in, col, n, 0, n * c->out.h, p->g->lead, p->width);
        pool_run(pool, run_part, &job, p->parts);
    } else {
        pool_run(pool, run_chunk, &job, p->chunks);
    }
}
