/*
 * gemm_avx512_x86.c — the AVX-512 level's tile kernel (eng_tile_ref's twin): 4 × 4 tiles in
 * 256-bit registers, using AVX-512VL's 32 of them, and VNNI's vpdpbusd for the products. vpdpbusd
 * multiplies unsigned by signed bytes, so the weight codes are offset by 128 (an xor, once per
 * row and block) and 128·Σa per activation group of four (once per column and block) starts the
 * accumulator negated: (q + 128)·a − 128·a = q·a. Per (row, column, block) that is one vpdpbusd,
 * a convert, a scale multiply and an fma, where AVX2 needs sign, maddubs and madd besides.
 * Equal to the reference up to the order of float additions. Compiled with -mavx512f/bw/vl/vnni.
 */
#include "ftile_x86.h"
#include "quants_x86.h"

#include <immintrin.h>

/* NR and NC are compile-time constants at every call site. */
static inline __attribute__((always_inline)) void tile(const int NR, const int NC, int64_t n,
                                                       const int8_t *wq, const float *s8,
                                                       const int8_t *a, size_t a_ld,
                                                       const float *ad, float *y, int64_t ldy) {
    const int64_t nb = n / 32;
    const __m256i x80 = _mm256_set1_epi8((char)0x80), zero = _mm256_setzero_si256();
    __m256 acc[4][4];
#pragma GCC unroll 4
    for (int r = 0; r < NR; r++)
#pragma GCC unroll 4
        for (int c = 0; c < NC; c++) acc[r][c] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++) { /* hot loop */
        __m256i wu[4];
#pragma GCC unroll 4
        for (int r = 0; r < NR; r++)
            wu[r] = _mm256_xor_si256(
                _mm256_loadu_si256((const __m256i *)(wq + (size_t)r * n + 32 * b)), x80);
#pragma GCC unroll 4
        for (int c = 0; c < NC; c++) {
            __m256i x = _mm256_loadu_si256((const __m256i *)(a + (size_t)c * a_ld + 32 * b));
            __m256i neg = _mm256_sub_epi32(zero, _mm256_dpbusd_epi32(zero, x80, x));
            __m256 d = _mm256_broadcast_ss(ad + (size_t)c * nb + b);
#pragma GCC unroll 4
            for (int r = 0; r < NR; r++) {
                __m256i p = _mm256_dpbusd_epi32(neg, wu[r], x);
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

void eng_tile_avx512(int64_t n, int nr, int nc, const int8_t *wq, const float *s8, const int8_t *a,
                     size_t a_ld, const float *ad, float *y, int64_t ldy) {
#define T(R, C)                                                                                    \
    case (R)*8 + (C):                                                                              \
        tile(R, C, n, wq, s8, a, a_ld, ad, y, ldy);                                                \
        return;
    /* The cases inside T are invisible to clang-format, which reflows them differently on
     * every run; the table is kept by hand. */
    /* clang-format off */
    switch (nr * 8 + nc) {
        T(1, 1) T(1, 2) T(1, 3) T(1, 4)
        T(2, 1) T(2, 2) T(2, 3) T(2, 4)
        T(3, 1) T(3, 2) T(3, 3) T(3, 4)
        T(4, 1) T(4, 2) T(4, 3) T(4, 4)
        default: eng_tile_ref(n, nr, nc, wq, s8, a, a_ld, ad, y, ldy);
    }
    /* clang-format on */
#undef T
}

/* F16 weights × F32 activations, 4 × 4 tiles (see ftile_x86.h). */
void eng_ftile_f16_avx512(int64_t n, int nr, int nc, const uint16_t *w, size_t w_ld, const float *x,
                          size_t x_ld, float *y, int64_t ldy) {
#define T(R, C)                                                                                    \
    case (R)*8 + (C):                                                                              \
        ftile_f16(R, C, n, w, w_ld, x, x_ld, y, ldy);                                              \
        return;
    /* The cases inside T are invisible to clang-format, which reflows them differently on
     * every run; the table is kept by hand. */
    /* clang-format off */
    switch (nr * 8 + nc) {
        T(1, 1) T(1, 2) T(1, 3) T(1, 4)
        T(2, 1) T(2, 2) T(2, 3) T(2, 4)
        T(3, 1) T(3, 2) T(3, 3) T(3, 4)
        T(4, 1) T(4, 2) T(4, 3) T(4, 4)
        default: ftile_f16_any(n, nr, nc, w, w_ld, x, x_ld, y, ldy);
    }
    /* clang-format on */
#undef T
}
