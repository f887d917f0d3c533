/* Squeeze-excitation (Hu et al. 2018): x *= sigmoid(fc2(relu(fc1(mean_hw(x))))) per channel. */
#include <math.h>

#include "layers.h"

size_t squeeze_excite_scratch_floats(const squeeze_excite_layer *se, int n) {
    return ((size_t)se->fc1.in * 2 + (size_t)se->fc1.out) * n;
}

void squeeze_excite_forward(const squeeze_excite_layer *se, float *x, int n, int hw, float *scratch) {
    const int channels = se->fc1.in;
    float *squeezed = scratch;                             /* [C][N] */
    float *hidden = squeezed + (size_t)channels * n;       /* [hidden][N] */
    float *gates = hidden + (size_t)se->fc1.out * n;       /* [C][N] */
    global_avg_pool_forward(x, squeezed, channels, n, hw);
    dense_forward(&se->fc1, squeezed, hidden, n);
    relu_forward(hidden, (size_t)se->fc1.out * n);
    dense_forward(&se->fc2, hidden, gates, n);
    for (size_t plane = 0; plane < (size_t)channels * n; plane++) {
        const float g = 1.0f / (1.0f + expf(-gates[plane]));
        float *px = x + plane * hw;
        for (int i = 0; i < hw; i++) px[i] *= g;
    }
}
