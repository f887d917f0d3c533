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

typedef float vec16 __attribute__((vector_size(64), aligned(4)));
typedef int ivec16 __attribute__((vector_size(64), aligned(4)));

/* d = max(d, v) as maxpool_row takes it: v where v > d, else d (a macro: vectors are not
 * passed to functions, whose ABI differs by target). */
#define VMAX(d, v)                                                                                                   \
    do {                                                                                                             \
        vec16 v_ = (v);                                                                                              \
        ivec16 m_ = v_ > (d);                                                                                        \
        (d) = (vec16)((m_ & (ivec16)v_) | (~m_ & (ivec16)(d)));                                                       \
    } while (0)

/* The even and the odd floats of a, b (32 floats in a row). */
#ifdef __clang__
#define EVEN(a, b) __builtin_shufflevector(a, b, 0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30)
#define ODD(a, b) __builtin_shufflevector(a, b, 1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31)
#else
#define EVEN(a, b) __builtin_shuffle(a, b, (ivec16){0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30})
#define ODD(a, b) __builtin_shuffle(a, b, (ivec16){1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31})
#endif

/* 2x2 stride 2, no padding, whose input rows hold whole windows (iy = 2*oy, 2*oy + 1 < ih):
 * the taps in maxpool_row's order, 16 outputs at a time. */
__attribute__((target_clones("avx512f", "avx2", "default"))) static void
maxpool_row_2x2(const float *r0, const float *r1, float *dst, int ow) {
    int ox = 0;
    for (; ox + 16 <= ow; ox += 16) {
        vec16 a0 = *(const vec16 *)(r0 + 2 * ox), a1 = *(const vec16 *)(r0 + 2 * ox + 16);
        vec16 b0 = *(const vec16 *)(r1 + 2 * ox), b1 = *(const vec16 *)(r1 + 2 * ox + 16);
        vec16 d = (vec16){0} - FLT_MAX;
        VMAX(d, EVEN(a0, a1));
        VMAX(d, ODD(a0, a1));
        VMAX(d, EVEN(b0, b1));
        VMAX(d, ODD(b0, b1));
        *(vec16 *)(dst + ox) = d;
    }
    for (; ox < ow; ox++) {
        float d = -FLT_MAX, t[4] = {r0[2 * ox], r0[2 * ox + 1], r1[2 * ox], r1[2 * ox + 1]};
        for (int k = 0; k < 4; k++) d = t[k] > d ? t[k] : d;
        dst[ox] = d;
    }
}

typedef struct {
    const maxpool_layer *p;
    const float *in;
    float *out;
    size_t planes;
    int parts;
} maxpool_job;

/* Task: a share of the planes. */
static void maxpool_part(void *arg, int part, int thread) {
    (void)thread;
    const maxpool_job *j = arg;
    const maxpool_layer *p = j->p;
    const size_t in_plane = (size_t)p->in.h * p->in.w;
    size_t first, end;
    pool_share(j->planes, j->parts, part, &first, &end);
    const bool two = p->kernel == 2 && p->stride == 2 && p->padding == 0 && 2 * p->out.w <= p->in.w;
    for (size_t pl = first; pl < end; pl++)
        for (int oy = 0; oy < p->out.h; oy++) {
            const float *src = j->in + pl * in_plane;
            float *dst = j->out + (pl * p->out.h + oy) * p->out.w;
            if (two && 2 * oy + 1 < p->in.h)
                maxpool_row_2x2(src + (size_t)(2 * oy) * p->in.w, src + (size_t)(2 * oy + 1) * p->in.w, dst, p->out.w);
            else
                maxpool_row(p, src, dst, oy);
        }
}

void maxpool_forward(const maxpool_layer *p, const float *in, float *out, int n, thread_pool *pool) {
    maxpool_job j = {p, in, out, (size_t)p->in.c * n, pool_size(pool)};
    pool_run(pool, maxpool_part, &j, j.parts);
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
