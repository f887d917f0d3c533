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
