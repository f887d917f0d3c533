/* Elementwise sum of two branches of the same shape. */
#include "layers.h"

void add_forward(const float *a, const float *b, float *out, size_t count) {
    for (size_t i = 0; i < count; i++) out[i] = a[i] + b[i];
}
