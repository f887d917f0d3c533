#include "layer_testlib.h"

#include <stdlib.h>

static float uniform(uint64_t *state) {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    return (float)((double)(*state >> 40) / (double)(1 << 23) - 1.0);
}

float *random_floats(size_t count, uint64_t *state) {
    float *x = malloc((count ? count : 1) * sizeof(float));
    for (size_t i = 0; i < count && x; i++) x[i] = uniform(state);
    return x;
}

float *run_conv_layer(const conv_layer *c, const float *in, int n, thread_pool *pool) {
    size_t col_floats = conv_col_floats(c, n, pool_size(pool));
    float *col = malloc((col_floats ? col_floats : 1) * sizeof(float));
    float *out = malloc(shape_size(c->out) * (size_t)n * sizeof(float));
    conv_forward(c, in, out, n, col, pool);
    free(col);
    return out;
}
