/* Layer kernels. All activations are CNHW (see graph.h): `n` images per call. */
#ifndef EMOTE_LAYERS_H
#define EMOTE_LAYERS_H

#include "graph.h"
#include "thread_pool.h"

/* How the running OpenBLAS kernel must be handed a GEMM C = W x B (B's columns: output
 * pixels) for every column of C to come out bitwise the same whatever the GEMM's width and
 * the column's place in it: `lead` unused columns first, then the columns that count, then
 * unused ones up to a width that is a multiple of `align`, at least `trail` of them; at most
 * `max_width` columns in all (0: no limit) and more than `min_macs` multiply-adds (OpenBLAS
 * takes a small-matrix kernel below). Output channels: a GEMM may take rows [r0, r1) of W
 * where r0 and r1 are multiples of `row_align` (r1 may also be the last row). pixel_align > 0:
 * the GEMM may instead be run transposed, C^T = B^T x W^T (pixels as OpenBLAS's N), with each
 * image's pixels in a slot of a multiple of pixel_align columns: also measured to give every
 * column alone, and cheaper for small images than the padding above. */
typedef struct {
    const char *core; /* as openblas_get_corename() spells it */
    int lead, align, trail, max_width;
    double min_macs;
    int row_align;
    int pixel_align;
} gemm_layout;

/* The running kernel's layout (conv.c's table); NULL where it was not measured: then a conv
 * runs one GEMM per image, all its channels, on one thread. */
const gemm_layout *gemm_layout_current(void);
/* Width of a GEMM whose `cols` columns count, each column `macs_per_col` multiply-adds
 * (rows x K); 0 where no width within max_width fits. */
int gemm_layout_width(const gemm_layout *g, int cols, double macs_per_col);

/* Our GEMM over weights packed once (packed_gemm.c): ct[p][o] = sum_k W[o][k] B[k][p], each
 * entry the same bits whatever the width, batch, thread split or CPU. W (rows x k) is packed in
 * blocks of PACKED_ROWS rows, [block][k][row], zero rows to the end of the last one. */
#define PACKED_ROWS 32
size_t packed_weight_floats(int rows, int k);
void pack_weights(const float *w, int rows, int k, float *packed);
/* Where W[row][kk] goes in the packed array. */
size_t packed_offset(int row, int kk, int k);
/* ct's least row stride for W of `rows` rows (a multiple of 32). */
size_t packed_ldc(int rows);
/* ct[p][o] for p < cols and o in [r0, r1) (multiples of 32, r1 <= packed_ldc), B: k x cols,
 * rows ldb apart. */
void packed_gemm(const float *packed, int k, int r0, int r1, const float *b, size_t ldb, int cols, float *ct,
                 size_t ldc);
/* The kernel in use: "avx512", "avx2" or "scalar"; all give the same bits. The widest the CPU
 * has runs unless EMOTE_GEMM_ISA names another. packed_gemm_use switches to the one named
 * (NULL: the widest), false where the CPU lacks it. Not thread-safe: at start-up or in tests. */
const char *packed_gemm_kernel(void);
bool packed_gemm_use(const char *isa);

/* Scratch floats conv_forward needs in `col` for up to max_n images on a pool of `threads`
 * (0 where none). */
size_t conv_col_floats(const conv_layer *c, int max_n, int threads);
/* pool: NULL, or the threads that split this one conv (see conv.c). */
void conv_forward(const conv_layer *c, const float *in, float *out, int n, float *col, thread_pool *pool);

/* Whether a conv should run as Winograd F(2x2, 3x3), its weights transformed once: 3x3,
 * stride 1, any padding, dense, a K = cin * 9 worth a GEMM and at least 9 output tiles of
 * 2x2 (conv.c). conv_forward runs a conv as Winograd when it has winograd_weight. */
bool conv_wants_winograd(const conv_layer *c);

/* Whether a conv should run on packed_gemm, its weights packed once (conv.c): dense, not a
 * first layer nor Winograd, at least 32 output channels and small output planes. conv_forward
 * runs a conv so when it has packed_weight. */
bool conv_wants_packed(const conv_layer *c);

/* Winograd F(2x2, 3x3) for dense 3x3 stride-1 convs (winograd.c). */
bool winograd_fits(const conv_layer *c);
size_t winograd_weight_floats(const conv_layer *c);
/* u (winograd_weight_floats) = c's weights transformed, (G g G^T)[pos] as the weights of
 * position pos's GEMM, packed (pack_weights). */
void winograd_transform_weights(const conv_layer *c, float *u);
size_t winograd_scratch_floats(const conv_layer *c, int max_n, int threads);
/* conv_forward with the transformed weights u; pool: NULL, or the threads that split it. */
void winograd_forward(const conv_layer *c, const float *u, const float *in, float *out, int n, float *scratch,
                      thread_pool *pool);

/* groups == channels (conv_forward calls it for such convs). */
void depthwise_forward(const conv_layer *c, const float *in, float *out, int n);
/* planes (C*N) planes of h x w -> (h*scale) x (w*scale), nearest neighbour. */
void upsample_forward(const float *in, float *out, size_t planes, int h, int w, int scale);
void add_forward(const float *a, const float *b, float *out, size_t count);

/* pool: NULL, or the threads that share out the planes (as for squeeze_excite_forward). */
void maxpool_forward(const maxpool_layer *p, const float *in, float *out, int n, thread_pool *pool);
/* [C][N][H*W] -> [C][N] */
void global_avg_pool_forward(const float *in, float *out, int channels, int n, int hw);

/* Scratch floats squeeze_excite_forward needs for n images. */
size_t squeeze_excite_scratch_floats(const squeeze_excite_layer *se, int n);
/* Scales x (C x N x hw) in place by its learned per-channel gates. */
void squeeze_excite_forward(const squeeze_excite_layer *se, float *x, int n, int hw, float *scratch,
                            thread_pool *pool);

/* in [d->in][N] -> out [d->out][N] */
void dense_forward(const dense_layer *d, const float *in, float *out, int n);
void relu_forward(float *x, size_t count);
/* logits [K][N] -> probs [N][K] */
void softmax_forward(const float *logits, float *probs, int classes, int n);

#endif
