/*
 * gemm_x86.c — AVX2 twin of eng_tile_ref (gemm.c): per 32 weights and (row, column) pair one
 * sign/maddubs/madd integer dot product, one convert and one fused multiply-add; the weight codes
 * and their absolute values are loaded once per row for all columns, each activation block once
 * for all rows. Equal to the reference up to the order of float additions. Compiled with
 * -mavx2 -mfma; installed only when the CPU has them.
 */
#include "quants_x86.h"

#include <immintrin.h>

/* NR and NC are compile-time constants at every call site, so the loops unroll and the
 * accumulators live in registers. */
static inline __attribute__((always_inline)) void tile(const int NR, const int NC, int64_t n,
                                                       const int8_t *wq, const float *s8,
                                                       const int8_t *a, size_t a_ld,
                                                       const float *ad, float *y, int64_t ldy) {
    const int64_t nb = n / 32;
    const __m256i ones = _mm256_set1_epi16(1);
    __m256 acc[2][4];
#pragma GCC unroll 4
    for (int r = 0; r < NR; r++)
#pragma GCC unroll 4
        for (int c = 0; c < NC; c++) acc[r][c] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++) { /* hot loop */
        __m256i w[2], aw[2];
#pragma GCC unroll 4
        for (int r = 0; r < NR; r++) {
            w[r] = _mm256_loadu_si256((const __m256i *)(wq + (size_t)r * n + 32 * b));
            aw[r] = _mm256_sign_epi8(w[r], w[r]);
        }
#pragma GCC unroll 4
        for (int c = 0; c < NC; c++) {
            __m256i x = _mm256_loadu_si256((const __m256i *)(a + (size_t)c * a_ld + 32 * b));
            __m256 d = _mm256_broadcast_ss(ad + (size_t)c * nb + b);
#pragma GCC unroll 4
            for (int r = 0; r < NR; r++) {
                __m256i p =
                    _mm256_madd_epi16(_mm256_maddubs_epi16(aw[r], _mm256_sign_epi8(x, w[r])), ones);
                __m256 sc = _mm256_mul_ps(_mm256_loadu_ps(s8 + ((size_t)r * nb + b) * 8), d);
                acc[r][c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), sc, acc[r][c]);
            }
        }
    }
#pragma GCC unroll 4
    for (int c = 0; c < NC; c++)
#pragma GCC unroll 4
        for (int r = 0; r < NR; r++) y[(size_t)c * ldy + r] = hsum_ps(acc[r][c]);
}

void eng_tile_avx2(int64_t n, int nr, int nc, const int8_t *wq, const float *s8, const int8_t *a,
                   size_t a_ld, const float *ad, float *y, int64_t ldy) {
#define T(R, C)                                                                                    \
    case (R)*8 + (C):                                                                              \
        tile(R, C, n, wq, s8, a, a_ld, ad, y, ldy);                                                \
        return;
    switch (nr * 8 + nc) {
        T(1, 1)
        T(1, 2)
        T(1, 3)
        T(1, 4)
        T(2, 1)
        T(2, 2) T(2, 3) T(2, 4) default : eng_tile_ref(n, nr, nc, wq, s8, a, a_ld, ad, y, ldy);
    }
#undef T
}

void eng_axpy_avx2(int64_t n, float a, const float *x, float *y) {
    const __m256 va = _mm256_set1_ps(a);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i,
                         _mm256_fmadd_ps(va, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
    for (; i < n; i++) y[i] += a * x[i];
}
