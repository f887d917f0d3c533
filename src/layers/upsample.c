/* Nearest-neighbour upsampling by an integer factor: out[y][x] = in[y / scale][x / scale]. */
#include "layers.h"

void upsample_forward(const float *in, float *out, size_t planes, int h, int w, int scale) {
    const int ow = w * scale;
    for (size_t p = 0; p < planes; p++) {
        const float *src = in + p * (size_t)h * w;
        float *dst = out + p * (size_t)h * w * scale * scale;
        for (int y = 0; y < h; y++) {
            float *row = dst + (size_t)y * scale * ow;
            for (int x = 0; x < w; x++)
                for (int k = 0; k < scale; k++) row[x * scale + k] = src[(size_t)y * w + x];
            for (int k = 1; k < scale; k++)
                for (int x = 0; x < ow; x++) row[(size_t)k * ow + x] = row[x];
        }
    }
}
