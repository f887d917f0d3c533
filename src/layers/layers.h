/* Layer kernels. All activations are CNHW (see graph.h): `n` images per call. */
#ifndef EMOTE_LAYERS_H
#define EMOTE_LAYERS_H

#include "graph.h"
#include "thread_pool.h"

/* Scratch floats conv_forward needs in `col` for up to max_n images on a pool of `threads`
 * (0 for 1x1 stride-1 convs). */
size_t conv_col_floats(const conv_layer *c, int max_n, int threads);
/* pool: NULL, or the threads that split this one conv (see conv.c). */
void conv_forward(const conv_layer *c, const float *in, float *out, int n, float *col, thread_pool *pool);

/* Whether a conv should run as Winograd F(2x2, 3x3), its weights transformed at load: 3x3,
 * stride 1, any padding, dense, a K = cin * 9 worth a GEMM and at least 9 output tiles of
 * 2x2 (conv.c). conv_forward runs a conv as Winograd when it has winograd_weight. */
bool conv_wants_winograd(const conv_layer *c);

/* Winograd F(2x2, 3x3) for dense 3x3 stride-1 convs (winograd.c). */
bool winograd_fits(const conv_layer *c);
size_t winograd_weight_floats(const conv_layer *c);
/* u (winograd_weight_floats) = c's weights transformed, u[pos][o][ci] = (G g G^T)[pos]. */
void winograd_transform_weights(const conv_layer *c, float *u);
size_t winograd_scratch_floats(const conv_layer *c, int threads);
/* conv_forward with the transformed weights u; pool: NULL, or the threads that split it. */
void winograd_forward(const conv_layer *c, const float *u, const float *in, float *out, int n, float *scratch,
                      thread_pool *pool);

/* groups == channels (conv_forward calls it for such convs). */
void depthwise_forward(const conv_layer *c, const float *in, float *out, int n);
/* planes (C*N) planes of h x w -> (h*scale) x (w*scale), nearest neighbour. */
void upsample_forward(const float *in, float *out, size_t planes, int h, int w, int scale);
void add_forward(const float *a, const float *b, float *out, size_t count);

void maxpool_forward(const maxpool_layer *p, const float *in, float *out, int n);
/* [C][N][H*W] -> [C][N] */
void global_avg_pool_forward(const float *in, float *out, int channels, int n, int hw);

/* Scratch floats squeeze_excite_forward needs for n images. */
size_t squeeze_excite_scratch_floats(const squeeze_excite_layer *se, int n);
/* Scales x (C x N x hw) in place by its learned per-channel gates. */
void squeeze_excite_forward(const squeeze_excite_layer *se, float *x, int n, int hw, float *scratch);

/* in [d->in][N] -> out [d->out][N] */
void dense_forward(const dense_layer *d, const float *in, float *out, int n);
void relu_forward(float *x, size_t count);
/* logits [K][N] -> probs [N][K] */
void softmax_forward(const float *logits, float *probs, int classes, int n);

#endif
