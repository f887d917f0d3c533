/* Our own GEMM for conv weights packed once (conv_weights.c): ct[p][o] = sum_k W[o][k] B[k][p].
 *
 * Every entry is one chain of fused multiply-adds in the order k = 0, 1, ..., K - 1 from 0, so
 * it is bitwise the same whatever the GEMM's width, the columns beside it, the block of rows
 * it falls in, the thread and the instruction set (an FMA rounds once, whichever unit runs
 * it): batches and thread splits need no layout rules (compare conv.c's gemm_layout for
 * OpenBLAS). The kernels keep a tile of 32 output channels x PG_COLS columns in registers:
 * 32 weights of step k are two vector loads from the packed block, each column's B[k][p] a
 * broadcast. K runs in blocks of PG_KC, the tile's partial sums kept in ct between them (a
 * float stored and loaded back is the same float).
 *
 * Measured against cblas_sgemm with the weights in the same place (OpenBLAS 0.3.21,
 * SkylakeX kernel, one core of the 2-core Intel Xeon build machine; README, Speed): 1.2-2.5x
 * as fast on one image's GEMMs (9-144 columns, where OpenBLAS packs the weights on every
 * call), 0.8-1.3x on batch-32 widths. */
#include <immintrin.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "layers.h"

#define PG_ROWS PACKED_ROWS /* output channels per packed block (32: the tile kernels assume it) */
#define PG_COLS 12 /* columns per tile */
#define PG_KC 256  /* K per block: a block's weights (32 KiB) and B rows stay in L1 */

size_t packed_weight_floats(int rows, int k) { return (size_t)packed_ldc(rows) * (size_t)k; }

size_t packed_ldc(int rows) { return ((size_t)rows + PG_ROWS - 1) / PG_ROWS * PG_ROWS; }

size_t packed_offset(int row, int kk, int k) {
    return (size_t)(row / PG_ROWS) * PG_ROWS * k + (size_t)kk * PG_ROWS + row % PG_ROWS;
}

void pack_weights(const float *w, int rows, int k, float *packed) {
    for (int o0 = 0; o0 < rows; o0 += PG_ROWS) { /* written in order, read as 32 rows side by side */
        const int count = rows - o0 < PG_ROWS ? rows - o0 : PG_ROWS;
        float *dst = packed + (size_t)o0 * k;
        for (int kk = 0; kk < k; kk++, dst += PG_ROWS) {
            for (int r = 0; r < count; r++) dst[r] = w[(size_t)(o0 + r) * k + kk];
            for (int r = count; r < PG_ROWS; r++) dst[r] = 0.0f;
        }
    }
}

/* ct[i][0, 32) = (first ? 0 : ct[i][0, 32)) + sum over kk < k of wp[kk][0, 32) * b[kk * ldb + i],
 * for i < n <= PG_COLS (b has PG_COLS columns); wp: k x 32 packed weights; ct rows ldc apart. */
typedef void tile_kernel(const float *wp, const float *b, size_t ldb, int k, float *ct, size_t ldc, bool first, int n);

__attribute__((target("avx512f"))) static void tile_avx512(const float *wp, const float *b, size_t ldb, int k,
                                                            float *ct, size_t ldc, bool first, int n) {
    __m512 acc[PG_COLS][2];
#pragma GCC unroll 16
    for (int i = 0; i < PG_COLS; i++) {
        acc[i][0] = first || i >= n ? _mm512_setzero_ps() : _mm512_loadu_ps(ct + i * ldc);
        acc[i][1] = first || i >= n ? _mm512_setzero_ps() : _mm512_loadu_ps(ct + i * ldc + 16);
    }
    for (int kk = 0; kk < k; kk++) {
        const __m512 w0 = _mm512_loadu_ps(wp + (size_t)kk * PG_ROWS), w1 = _mm512_loadu_ps(wp + (size_t)kk * PG_ROWS + 16);
        const float *bk = b + (size_t)kk * ldb;
#pragma GCC unroll 16
        for (int i = 0; i < PG_COLS; i++) {
            const __m512 bi = _mm512_set1_ps(bk[i]);
            acc[i][0] = _mm512_fmadd_ps(w0, bi, acc[i][0]);
            acc[i][1] = _mm512_fmadd_ps(w1, bi, acc[i][1]);
        }
    }
#pragma GCC unroll 16
    for (int i = 0; i < PG_COLS; i++) {
        if (i >= n) break;
        _mm512_storeu_ps(ct + i * ldc, acc[i][0]);
        _mm512_storeu_ps(ct + i * ldc + 16, acc[i][1]);
    }
}

/* AVX2 has 16 registers: the tile in four passes of 16 channels x 6 columns. */
#define AVX2_COLS 6
__attribute__((target("avx2,fma"))) static void tile_avx2(const float *wp, const float *b, size_t ldb, int k,
                                                           float *ct, size_t ldc, bool first, int n) {
    for (int half = 0; half < 2; half++)
        for (int c0 = 0; c0 < n; c0 += AVX2_COLS) {
            const int m = n - c0; /* columns of this pass that count */
            const float *w = wp + 16 * half;
            float *out = ct + (size_t)c0 * ldc + 16 * half;
            __m256 acc[AVX2_COLS][2];
#pragma GCC unroll 8
            for (int i = 0; i < AVX2_COLS; i++) {
                acc[i][0] = first || i >= m ? _mm256_setzero_ps() : _mm256_loadu_ps(out + i * ldc);
                acc[i][1] = first || i >= m ? _mm256_setzero_ps() : _mm256_loadu_ps(out + i * ldc + 8);
            }
            for (int kk = 0; kk < k; kk++) {
                const __m256 w0 = _mm256_loadu_ps(w + (size_t)kk * PG_ROWS), w1 = _mm256_loadu_ps(w + (size_t)kk * PG_ROWS + 8);
                const float *bk = b + (size_t)kk * ldb + c0;
#pragma GCC unroll 8
                for (int i = 0; i < AVX2_COLS; i++) {
                    const __m256 bi = _mm256_broadcast_ss(bk + i);
                    acc[i][0] = _mm256_fmadd_ps(w0, bi, acc[i][0]);
                    acc[i][1] = _mm256_fmadd_ps(w1, bi, acc[i][1]);
                }
            }
#pragma GCC unroll 8
            for (int i = 0; i < AVX2_COLS; i++) {
                if (i >= m) break;
                _mm256_storeu_ps(out + i * ldc, acc[i][0]);
                _mm256_storeu_ps(out + i * ldc + 8, acc[i][1]);
            }
        }
}

/* Any CPU: the same chain of fmaf, rounded once per step like the vector units (slow where
 * fmaf is done in software). */
static void tile_scalar(const float *wp, const float *b, size_t ldb, int k, float *ct, size_t ldc, bool first, int n) {
    for (int i = 0; i < n; i++)
        for (int o = 0; o < PG_ROWS; o++) {
            float acc = first ? 0.0f : ct[i * ldc + o];
            for (int kk = 0; kk < k; kk++) acc = fmaf(wp[(size_t)kk * PG_ROWS + o], b[(size_t)kk * ldb + i], acc);
            ct[i * ldc + o] = acc;
        }
}

static tile_kernel *kernel;
static const char *kernel_name;

bool packed_gemm_use(const char *isa) {
    __builtin_cpu_init();
    const bool avx512 = __builtin_cpu_supports("avx512f"),
               avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    const bool best = !isa || !*isa;
    if (best ? avx512 : !strcmp(isa, "avx512") && avx512)
        kernel = tile_avx512, kernel_name = "avx512";
    else if (best ? avx2 : !strcmp(isa, "avx2") && avx2)
        kernel = tile_avx2, kernel_name = "avx2";
    else if (best || !strcmp(isa, "scalar"))
        kernel = tile_scalar, kernel_name = "scalar";
    else
        return false;
    return true;
}

/* EMOTE_GEMM_ISA picks a kernel (to compare them), else the widest the CPU has. */
__attribute__((constructor)) static void pick_kernel(void) {
    if (!packed_gemm_use(getenv("EMOTE_GEMM_ISA"))) packed_gemm_use(NULL);
}

const char *packed_gemm_kernel(void) { return kernel_name; }

void packed_gemm(const float *packed, int k, int r0, int r1, const float *b, size_t ldb, int cols, float *ct,
                 size_t ldc) {
    float tail[PG_KC * PG_COLS]; /* the last columns, zero-padded to a whole tile */
    for (int k0 = 0; k0 < k; k0 += PG_KC) {
        const int kc = k - k0 < PG_KC ? k - k0 : PG_KC;
        for (int p0 = 0; p0 < cols; p0 += PG_COLS) {
            const float *bb = b + (size_t)k0 * ldb + p0;
            size_t ldbb = ldb;
            if (cols - p0 < PG_COLS) {
                const size_t have = (size_t)(cols - p0);
                for (int kk = 0; kk < kc; kk++) {
                    memcpy(tail + kk * PG_COLS, bb + (size_t)kk * ldb, have * sizeof(float));
                    memset(tail + kk * PG_COLS + have, 0, (PG_COLS - have) * sizeof(float));
                }
                bb = tail;
                ldbb = PG_COLS;
            }
            const int n = cols - p0 < PG_COLS ? cols - p0 : PG_COLS;
            for (int o = r0; o < r1; o += PG_ROWS)
                kernel(packed + (size_t)o * k + (size_t)k0 * PG_ROWS, bb, ldbb, kc, ct + (size_t)p0 * ldc + o, ldc,
                       k0 == 0, n);
        }
    }
}
