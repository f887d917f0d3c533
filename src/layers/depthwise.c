/* Depthwise conv2d (groups == channels): each channel convolved with its own kh x kw
 * filter, zero padding, then BatchNorm scale, bias (and shift) and optional ReLU. Direct loops: with one input channel
 * per output there is no GEMM worth forming.
 *
 * One pass per output row: each output pixel sums its taps in registers (16 pixels at a time
 * where every tap lies inside the input, vectorised for the CPU at hand), then scale, shift
 * and ReLU, and is stored once. The taps are summed in the same order everywhere (ky, then
 * kx, skipping those outside the input) as separate multiplies and adds (no FMA
 * contraction), so a pixel's value does not depend on which path computed it. */
#include "layers.h"

#ifdef __clang__ /* gcc -std=c11 contracts nothing into FMAs; clang would, in its AVX2 clones only */
#pragma clang fp contract(off)
#endif

typedef float vec16 __attribute__((vector_size(64), aligned(4)));
typedef int ivec16 __attribute__((vector_size(64), aligned(4)));

#define MAX_TAPS_ROWS 16 /* kernel rows handled by the row paths; taller kernels: plane_generic */

/* A pixel's sum of taps * scale + shift, ReLU'd if asked. */
static inline float finish(float acc, float scale, float shift, bool relu) {
    float v = acc * scale + shift;
    return relu && !(v > 0.0f) ? 0.0f : v;
}

/* The scalar path for one output pixel: taps rows[ky] (NULL: outside the input) at column
 * ix0 + kx, those outside [0, iw) skipped. */
static inline __attribute__((always_inline)) float pixel(const float *const *rows, const float *w, int kh, int kw, int ix0, int iw, float scale,
                          float shift, bool relu) {
    float acc = 0.0f;
    for (int ky = 0; ky < kh; ky++) {
        if (!rows[ky]) continue;
        for (int kx = 0; kx < kw; kx++) {
            int ix = ix0 + kx;
            if (ix >= 0 && ix < iw) acc += w[ky * kw + kx] * rows[ky][ix];
        }
    }
    return finish(acc, scale, shift, relu);
}

/* Output pixels [a, b) of one row, stride 1, every tap inside the input: 16 at a time.
 * Loads are row + ox - p + kx. */
__attribute__((target_clones("avx512f", "avx2", "default"))) static void
row_s1_interior(const float *const *rows, const float *w, int kh, int kw, int p, float scale, float shift, bool relu,
                float *out, int a, int b) {
    int ox = a;
    for (; ox + 16 <= b; ox += 16) {
        vec16 acc = {0};
        for (int ky = 0; ky < kh; ky++) {
            if (!rows[ky]) continue;
            const float *src = rows[ky] + ox - p;
            for (int kx = 0; kx < kw; kx++) acc += w[ky * kw + kx] * *(const vec16 *)(src + kx);
        }
        vec16 y = acc * scale + shift;
        if (relu) y = (vec16)((ivec16)y & (y > 0.0f)); /* a comparison is all ones where true */
        *(vec16 *)(out + ox) = y;
        if (ox + 16 < b && ox + 32 > b) ox = b - 32; /* the last 16 overlap: same values again */
    }
    for (; ox < b; ox++) {
        float acc = 0.0f;
        for (int ky = 0; ky < kh; ky++) {
            if (!rows[ky]) continue;
            for (int kx = 0; kx < kw; kx++) acc += w[ky * kw + kx] * rows[ky][ox - p + kx];
        }
        out[ox] = finish(acc, scale, shift, relu);
    }
}

/* The 3x3 stride-1 case, unrolled: nine weights in registers. */
__attribute__((target_clones("avx512f", "avx2", "default"))) static void
row_3x3_s1_interior(const float *const *rows, const float *w, int p, float scale, float shift, bool relu, float *out,
                    int a, int b) {
    if (!rows[0] || !rows[1] || !rows[2]) { /* a top or bottom row: the general path */
        row_s1_interior(rows, w, 3, 3, p, scale, shift, relu, out, a, b);
        return;
    }
    const float *r0 = rows[0] - p, *r1 = rows[1] - p, *r2 = rows[2] - p;
    const float w0 = w[0], w1 = w[1], w2 = w[2], w3 = w[3], w4 = w[4], w5 = w[5], w6 = w[6], w7 = w[7], w8 = w[8];
    int ox = a;
    for (; ox + 16 <= b; ox += 16) {
        vec16 acc = {0};
        acc += w0 * *(const vec16 *)(r0 + ox);
        acc += w1 * *(const vec16 *)(r0 + ox + 1);
        acc += w2 * *(const vec16 *)(r0 + ox + 2);
        acc += w3 * *(const vec16 *)(r1 + ox);
        acc += w4 * *(const vec16 *)(r1 + ox + 1);
        acc += w5 * *(const vec16 *)(r1 + ox + 2);
        acc += w6 * *(const vec16 *)(r2 + ox);
        acc += w7 * *(const vec16 *)(r2 + ox + 1);
        acc += w8 * *(const vec16 *)(r2 + ox + 2);
        vec16 y = acc * scale + shift;
        if (relu) y = (vec16)((ivec16)y & (y > 0.0f));
        *(vec16 *)(out + ox) = y;
        if (ox + 16 < b && ox + 32 > b) ox = b - 32; /* the last 16 overlap: same values again */
    }
    if (ox < b) row_s1_interior(rows, w, 3, 3, p, scale, shift, relu, out, ox, b);
}

/* Output pixels [a, b) of one row, any stride, every tap inside the input. */
__attribute__((target_clones("avx512f", "avx2", "default"))) static void
row_strided_interior(const float *const *rows, const float *w, int kh, int kw, int s, int p, float scale, float shift,
                     bool relu, float *out, int a, int b) {
    for (int ox = a; ox < b; ox++) {
        float acc = 0.0f;
        for (int ky = 0; ky < kh; ky++) {
            if (!rows[ky]) continue;
            const float *src = rows[ky] + ox * s - p;
            for (int kx = 0; kx < kw; kx++) acc += w[ky * kw + kx] * src[kx];
        }
        out[ox] = finish(acc, scale, shift, relu);
    }
}

/* One output plane, row by row. */
static void depthwise_plane(const conv_layer *c, const float *w, float scale, float shift, const float *in,
                            float *out) {
    const int ih = c->in.h, iw = c->in.w, oh = c->out.h, ow = c->out.w, s = c->stride, p = c->padding;
    const int kh = c->kh, kw = c->kw;
    /* Interior columns: ox*s - p >= 0 and ox*s - p + kw - 1 < iw. */
    int a = (p + s - 1) / s, b = iw - kw + p >= 0 ? (iw - kw + p) / s + 1 : 0;
    if (a > ow) a = ow;
    if (b > ow) b = ow;
    if (b < a) b = a;
    const float *rows[MAX_TAPS_ROWS];
    for (int oy = 0; oy < oh; oy++) {
        for (int ky = 0; ky < kh; ky++) {
            int iy = oy * s - p + ky;
            rows[ky] = iy >= 0 && iy < ih ? in + (size_t)iy * iw : NULL;
        }
        float *orow = out + (size_t)oy * ow;
        if (kh == 3 && kw == 3 && s == 1 && p == 1 && ow == iw && iw >= 3) { /* YuNet's: a = 1, b = ow - 1 */
            float left = 0.0f, right = 0.0f; /* taps kx 1, 2 at ix 0, 1; kx 0, 1 at ix iw - 2, iw - 1 */
            for (int ky = 0; ky < 3; ky++) {
                if (!rows[ky]) continue;
                left += w[ky * 3 + 1] * rows[ky][0];
                left += w[ky * 3 + 2] * rows[ky][1];
                right += w[ky * 3] * rows[ky][iw - 2];
                right += w[ky * 3 + 1] * rows[ky][iw - 1];
            }
            orow[0] = finish(left, scale, shift, c->relu);
            row_3x3_s1_interior(rows, w, p, scale, shift, c->relu, orow, 1, ow - 1);
            orow[ow - 1] = finish(right, scale, shift, c->relu);
            continue;
        }
        if (kh == 3 && kw == 3) { /* constant sizes: the border pixels' loops unrolled */
            for (int ox = 0; ox < a; ox++) orow[ox] = pixel(rows, w, 3, 3, ox * s - p, iw, scale, shift, c->relu);
            if (s == 1) row_3x3_s1_interior(rows, w, p, scale, shift, c->relu, orow, a, b);
            else row_strided_interior(rows, w, 3, 3, s, p, scale, shift, c->relu, orow, a, b);
            for (int ox = b; ox < ow; ox++) orow[ox] = pixel(rows, w, 3, 3, ox * s - p, iw, scale, shift, c->relu);
            continue;
        }
        for (int ox = 0; ox < a; ox++) orow[ox] = pixel(rows, w, kh, kw, ox * s - p, iw, scale, shift, c->relu);
        if (s == 1) row_s1_interior(rows, w, kh, kw, p, scale, shift, c->relu, orow, a, b);
        else row_strided_interior(rows, w, kh, kw, s, p, scale, shift, c->relu, orow, a, b);
        for (int ox = b; ox < ow; ox++) orow[ox] = pixel(rows, w, kh, kw, ox * s - p, iw, scale, shift, c->relu);
    }
}

/* Kernels taller than MAX_TAPS_ROWS (no model has them): tap by tap over the plane, in the
 * same order as the row paths. */
static void plane_generic(const conv_layer *c, const float *w, float scale, float shift, const float *in,
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
                int first = p - kx > 0 ? (p - kx + s - 1) / s : 0;
                int end = iw + p - kx > 0 ? (iw + p - kx + s - 1) / s : 0;
                if (end > ow) end = ow;
                for (int ox = first; ox < end; ox++) orow[ox] += wk * row[ox * s - p + kx];
            }
        }
    }
    for (int i = 0; i < oh * ow; i++) out[i] = finish(out[i], scale, shift, c->relu);
}

void depthwise_forward(const conv_layer *c, const float *in, float *out, int n) {
    const size_t in_plane = (size_t)c->in.h * c->in.w, out_plane = (size_t)c->out.h * c->out.w;
    const int taps = c->kh * c->kw;
    for (int ch = 0; ch < c->cout; ch++)
        for (int img = 0; img < n; img++)
            (c->kh <= MAX_TAPS_ROWS ? depthwise_plane : plane_generic)(
                c, c->weight + (size_t)ch * taps, c->scale ? c->scale[ch] : 1.0f, c->bias[ch],
                in + ((size_t)ch * n + img) * in_plane, out + ((size_t)ch * n + img) * out_plane);
}
