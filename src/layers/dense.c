/* Vector layers on [features][N]: linear, ReLU, softmax. Plain loops with double
 * accumulators: these layers are tiny, and a fixed summation order keeps results
 * independent of batch size. */
#include <math.h>

#include "layers.h"

void dense_forward(const dense_layer *d, const float *in, float *out, int n) {
    for (int o = 0; o < d->out; o++) {
        const float *w = d->weight + (size_t)o * d->in;
        for (int img = 0; img < n; img++) {
            double acc = d->bias ? d->bias[o] : 0.0;
            for (int f = 0; f < d->in; f++) acc += (double)w[f] * in[(size_t)f * n + img];
            out[(size_t)o * n + img] = (float)acc;
        }
    }
}

void relu_forward(float *x, size_t count) {
    for (size_t i = 0; i < count; i++) x[i] = x[i] > 0.0f ? x[i] : 0.0f;
}

void softmax_forward(const float *logits, float *probs, int classes, int n) {
    for (int img = 0; img < n; img++) {
        double max = logits[img];
        for (int k = 1; k < classes; k++)
            if (logits[(size_t)k * n + img] > max) max = logits[(size_t)k * n + img];
        double sum = 0;
        for (int k = 0; k < classes; k++) sum += exp(logits[(size_t)k * n + img] - max);
        for (int k = 0; k < classes; k++)
            probs[(size_t)img * classes + k] = (float)(exp(logits[(size_t)k * n + img] - max) / sum);
    }
}
