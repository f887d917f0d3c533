/* Depthwise conv2d (groups == channels): each channel convolved with its own kh x kw
 * filter, zero padding, then BatchNorm scale, bias (and shift) and optional ReLU. Direct loops: with one input channel
 * per output there is no GEMM worth forming. */
#include "layers.h"

/* One output plane: out[oy][ox] = scale * sum_ky,kx w[ky][kx] * in[oy*s - p + ky][ox*s - p + kx] + shift. */
static void depthwise_plane(const conv_layer *c, const float *w, float scale, float shift, const float *in,
                            float *out) {
    const int ih = c->in.h, iw = c->in.w, oh = c->out.h, ow = c->out.w, s = c->stride, p = c->padding;
    for (int i = 0; i < oh * ow; i++) out[i] = 0.0f;
    for (int ky = 0; ky < c->kh; ky++) {
        for (int oy = 0; oy < oh; oy++) {
            int iy = oy * s - p + ky;
            if (iy < 0 || iy >= ih) continue;
            const float *row = in + (size_t)iy * iw;
            float *orow = out + (size_t)oy * ow;
            for (int kx = 0; kx < c->kw; kx++) {
                const float wk = w[ky * c->kw + kx];
                /* ox range whose input column ox*s - p + kx lies in [0, iw) */
                int first = p - kx > 0 ? (p - kx + s - 1) / s : 0;
                int end = iw + p - kx > 0 ? (iw + p - kx + s - 1) / s : 0;
                if (end > ow) end = ow;
                for (int ox = first; ox < end; ox++) orow[ox] += wk * row[ox * s - p + kx];
            }
        }
    }
    for (int i = 0; i < oh * ow; i++) {
        float v = out[i] * scale + shift;
        out[i] = c->relu && !(v > 0.0f) ? 0.0f : v;
    }
}

void depthwise_forward(const conv_layer *c, const float *in, float *out, int n) {
    const size_t in_plane = (size_t)c->in.h * c->in.w, out_plane = (size_t)c->out.h * c->out.w;
    const int taps = c->kh * c->kw;
    for (int ch = 0; ch < c->cout; ch++)
        for (int img = 0; img < n; img++)
            depthwise_plane(c, c->weight + (size_t)ch * taps, c->scale ? c->scale[ch] : 1.0f, c->bias[ch],
                            in + ((size_t)ch * n + img) * in_plane, out + ((size_t)ch * n + img) * out_plane);
}
