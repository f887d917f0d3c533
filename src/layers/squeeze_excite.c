/* Squeeze-excitation (Hu et al. 2018): x *= sigmoid(fc2(relu(fc1(mean_hw(x))))) per channel. */
#include <math.h>

#include "layers.h"

size_t squeeze_excite_scratch_floats(const squeeze_excite_layer *se, int n) {
    return ((size_t)se->fc1.in * 2 + (size_t)se->fc1.out) * n;
}

typedef struct {
    float *x, *squeezed;
    const float *gates;
    size_t planes;
    int hw, parts;
} se_job;

/* Task: the means of a share of the planes. */
static void squeeze_part(void *arg, int part, int thread) {
    (void)thread;
    const se_job *j = arg;
    size_t first, end;
    pool_share(j->planes, j->parts, part, &first, &end);
    global_avg_pool_forward(j->x + first * j->hw, j->squeezed + first, (int)(end - first), 1, j->hw);
}

/* Task: a share of the planes scaled by their gates. */
static void excite_part(void *arg, int part, int thread) {
    (void)thread;
    const se_job *j = arg;
    size_t first, end;
    pool_share(j->planes, j->parts, part, &first, &end);
    for (size_t plane = first; plane < end; plane++) {
        const float g = 1.0f / (1.0f + expf(-j->gates[plane]));
        float *px = j->x + plane * j->hw;
        for (int i = 0; i < j->hw; i++) px[i] *= g;
    }
}

void squeeze_excite_forward(const squeeze_excite_layer *se, float *x, int n, int hw, float *scratch,
                            thread_pool *pool) {
    const int channels = se->fc1.in;
    float *squeezed = scratch;                             /* [C][N] */
    float *hidden = squeezed + (size_t)channels * n;       /* [hidden][N] */
    float *gates = hidden + (size_t)se->fc1.out * n;       /* [C][N] */
    se_job j = {x, squeezed, gates, (size_t)channels * n, hw, pool_size(pool)};
    pool_run(pool, squeeze_part, &j, j.parts);
    dense_forward(&se->fc1, squeezed, hidden, n);
    relu_forward(hidden, (size_t)se->fc1.out * n);
    dense_forward(&se->fc2, hidden, gates, n);
    pool_run(pool, excite_part, &j, j.parts);
}
