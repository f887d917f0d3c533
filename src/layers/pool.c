/* Max pooling (PyTorch MaxPool2d: floor mode, padding never wins) and global average pooling. */
#include <float.h>

#include "layers.h"

void maxpool_forward(const maxpool_layer *p, const float *in, float *out, int n) {
    const int ih = p->in.h, iw = p->in.w, oh = p->out.h, ow = p->out.w;
    const size_t planes = (size_t)p->in.c * n;
    for (size_t pl = 0; pl < planes; pl++) {
        const float *src = in + pl * ih * iw;
        float *dst = out + pl * oh * ow;
        for (int oy = 0; oy < oh; oy++) {
            for (int ox = 0; ox < ow; ox++) {
                float best = -FLT_MAX;
                for (int ky = 0; ky < p->kernel; ky++) {
                    int iy = oy * p->stride - p->padding + ky;
                    if (iy < 0 || iy >= ih) continue;
                    for (int kx = 0; kx < p->kernel; kx++) {
                        int ix = ox * p->stride - p->padding + kx;
                        if (ix >= 0 && ix < iw && src[iy * iw + ix] > best) best = src[iy * iw + ix];
                    }
                }
                dst[oy * ow + ox] = best;
            }
        }
    }
}

void global_avg_pool_forward(const float *in, float *out, int channels, int n, int hw) {
    const size_t planes = (size_t)channels * n;
    for (size_t pl = 0; pl < planes; pl++) {
        double sum = 0;
        for (int i = 0; i < hw; i++) sum += in[pl * hw + i];
        out[pl] = (float)(sum / hw);
    }
}
