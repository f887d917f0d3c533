/* Max pooling (PyTorch MaxPool2d: floor mode, padding never wins) and global average pooling. */
#include <float.h>

#include "layers.h"

/* [first, end): the outputs o whose input o*stride - pad + k lies inside [0, size). */
static void inside(int out_size, int in_size, int stride, int pad, int k, int *first, int *end) {
    int lo = pad - k > 0 ? (pad - k + stride - 1) / stride : 0;
    int hi = in_size + pad - k > 0 ? (in_size + pad - k + stride - 1) / stride : 0;
    *first = lo < out_size ? lo : out_size;
    *end = hi < out_size ? (hi > *first ? hi : *first) : out_size;
}

/* One output row: the max over the window's taps, tap by tap along the row (no per-pixel
 * bounds checks; taps outside the input are skipped, as padding never wins). */
static void maxpool_row(const maxpool_layer *p, const float *src, float *dst, int oy) {
    const int ih = p->in.h, iw = p->in.w, ow = p->out.w, s = p->stride;
    for (int ox = 0; ox < ow; ox++) dst[ox] = -FLT_MAX;
    for (int ky = 0; ky < p->kernel; ky++) {
        int iy = oy * s - p->padding + ky;
        if (iy < 0 || iy >= ih) continue;
        for (int kx = 0; kx < p->kernel; kx++) {
            int first, end;
            inside(ow, iw, s, p->padding, kx, &first, &end);
            const float *row = src + (size_t)iy * iw - p->padding + kx;
            for (int ox = first; ox < end; ox++) {
                float v = row[ox * s];
                dst[ox] = v > dst[ox] ? v : dst[ox];
            }
        }
    }
}

void maxpool_forward(const maxpool_layer *p, const float *in, float *out, int n) {
    const size_t planes = (size_t)p->in.c * n, in_plane = (size_t)p->in.h * p->in.w;
    for (size_t pl = 0; pl < planes; pl++)
        for (int oy = 0; oy < p->out.h; oy++) maxpool_row(p, in + pl * in_plane, out + (pl * p->out.h + oy) * p->out.w, oy);
}

/* Eight partial sums per plane, so that the adds do not wait on each other. */
void global_avg_pool_forward(const float *in, float *out, int channels, int n, int hw) {
    const size_t planes = (size_t)channels * n;
    for (size_t pl = 0; pl < planes; pl++) {
        const float *x = in + pl * hw;
        double part[8] = {0}, sum = 0;
        int i = 0;
        for (; i + 8 <= hw; i += 8)
            for (int l = 0; l < 8; l++) part[l] += x[i + l];
        for (; i < hw; i++) sum += x[i];
        for (int l = 0; l < 8; l++) sum += part[l];
        out[pl] = (float)(sum / hw);
    }
}
