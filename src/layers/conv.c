/* conv2d as im2col + SGEMM (darknet style); 1x1 stride-1 unpadded convs use the input as is. */
#include <cblas.h>

#include "layers.h"

static int is_pointwise(const conv_layer *c) {
    return c->kh == 1 && c->kw == 1 && c->stride == 1 && c->padding == 0;
}

size_t conv_col_floats(const conv_layer *c, int n) {
    if (is_pointwise(c) || c->groups > 1) return 0;
    return (size_t)c->cin * c->kh * c->kw * (size_t)n * c->out.h * c->out.w;
}

/* First output index whose input index o*stride - pad + k is >= 0, and one past the last < size. */
static void valid_range(int out_size, int in_size, int stride, int pad, int k, int *first, int *end) {
    int lo = pad - k > 0 ? (pad - k + stride - 1) / stride : 0;
    int hi = in_size + pad - k > 0 ? (in_size + pad - k + stride - 1) / stride : 0;
    *first = lo < out_size ? lo : out_size;
    *end = hi < out_size ? hi : out_size;
    if (*end < *first) *end = *first;
}

/* col[(ci*kh + ky)*kw + kx][img][oy][ox] = in[ci][img][oy*s - p + ky][ox*s - p + kx], 0 outside. */
static void im2col(const conv_layer *c, const float *in, float *col, int n) {
    const int ih = c->in.h, iw = c->in.w, oh = c->out.h, ow = c->out.w, s = c->stride, p = c->padding;
    for (int ci = 0; ci < c->cin; ci++) {
        for (int ky = 0; ky < c->kh; ky++) {
            for (int kx = 0; kx < c->kw; kx++) {
                int ox0, ox1;
                valid_range(ow, iw, s, p, kx, &ox0, &ox1);
                for (int img = 0; img < n; img++) {
                    const float *plane = in + ((size_t)ci * n + img) * ih * iw;
                    for (int oy = 0; oy < oh; oy++, col += ow) {
                        int iy = oy * s - p + ky;
                        if (iy < 0 || iy >= ih) {
                            for (int ox = 0; ox < ow; ox++) col[ox] = 0.0f;
                            continue;
                        }
                        /* Rows are short: plain loops beat memcpy/memset calls. */
                        const float *row = plane + (size_t)iy * iw - p + kx;
                        for (int ox = 0; ox < ox0; ox++) col[ox] = 0.0f;
                        if (s == 1) {
                            for (int ox = ox0; ox < ox1; ox++) col[ox] = row[ox];
                        } else {
                            for (int ox = ox0; ox < ox1; ox++) col[ox] = row[ox * s];
                        }
                        for (int ox = ox1; ox < ow; ox++) col[ox] = 0.0f;
                    }
                }
            }
        }
    }
}

/* One GEMM per image: out[cout][oh*ow] = W[cout][k] x col[k][oh*ow]. A GEMM over the whole
 * batch would be faster for small images, but OpenBLAS then rounds a column differently
 * depending on where it falls in the batch; per image, results do not depend on batch size. */
void conv_forward(const conv_layer *c, const float *in, float *out, int n, float *col) {
    if (c->groups > 1) {
        depthwise_forward(c, in, out, n);
        return;
    }
    const int k = c->cin * c->kh * c->kw;
    const int pixels = c->out.h * c->out.w;
    const int cols = n * pixels;
    const float *b = in;
    if (!is_pointwise(c)) {
        im2col(c, in, col, n);
        b = col;
    }
    for (int img = 0; img < n; img++)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, c->cout, pixels, k, 1.0f, c->weight, k,
                    b + (size_t)img * pixels, cols, 0.0f, out + (size_t)img * pixels, cols);
    for (int o = 0; o < c->cout; o++) {
        float *row = out + (size_t)o * cols;
        const float bias = c->bias[o];
        if (c->relu) {
            for (int i = 0; i < cols; i++) {
                float v = row[i] + bias;
                row[i] = v > 0.0f ? v : 0.0f;
            }
        } else {
            for (int i = 0; i < cols; i++) row[i] += bias;
        }
    }
}
