/*
 * ftile_x86.h — the F16-weight tile kernel of prefill as a template over the tile size (the
 * AVX-512 level instantiates 4 × 4 in AVX-512VL's 32 registers):
 * y[c*ldy + r] = Σ_k w[r][k]·x[c][k], weights converted from fp16 on the fly (read in place from
 * the mapping), activations F32. Include only from files compiled with AVX2/FMA/F16C.
 */
#ifndef EDGELLM_ENGINE_FTILE_X86_H
#define EDGELLM_ENGINE_FTILE_X86_H

#include "quants_x86.h"

#include <immintrin.h>
#include <stdint.h>

/* NR, NC (<= 4) are compile-time constants at every call site. */
static inline __attribute__((always_inline)) void ftile_f16(const int NR, const int NC, int64_t n,
                                                            const uint16_t *w, size_t w_ld,
                                                            const float *x, size_t x_ld, float *y,
                                                            int64_t ldy) {
    __m256 acc[4][4];
#pragma GCC unroll 4
    for (int r = 0; r < NR; r++)
#pragma GCC unroll 4
        for (int c = 0; c < NC; c++) acc[r][c] = _mm256_setzero_ps();
    int64_t k = 0;
    for (; k + 8 <= n; k += 8) { /* hot loop */
        __m256 wv[4];
#pragma GCC unroll 4
        for (int r = 0; r < NR; r++)
            wv[r] = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(w + (size_t)r * w_ld + k)));
#pragma GCC unroll 4
        for (int c = 0; c < NC; c++) {
            __m256 xv = _mm256_loadu_ps(x + (size_t)c * x_ld + k);
#pragma GCC unroll 4
            for (int r = 0; r < NR; r++) acc[r][c] = _mm256_fmadd_ps(wv[r], xv, acc[r][c]);
        }
    }
#pragma GCC unroll 4
    for (int c = 0; c < NC; c++)
#pragma GCC unroll 4
        for (int r = 0; r < NR; r++) {
            float s = hsum_ps(acc[r][c]);
            for (int64_t t = k; t < n; t++)
                s += _cvtsh_ss(w[(size_t)r * w_ld + t]) * x[(size_t)c * x_ld + t];
            y[(size_t)c * ldy + r] = s;
        }
}

/* Any tile up to 4 × 4 the slow way (partial tiles beyond a level's instantiations). */
static inline void ftile_f16_any(int64_t n, int nr, int nc, const uint16_t *w, size_t w_ld,
                                 const float *x, size_t x_ld, float *y, int64_t ldy) {
    for (int c = 0; c < nc; c++)
        for (int r = 0; r < nr; r++) {
            float s = 0.0f;
            for (int64_t t = 0; t < n; t++)
                s += _cvtsh_ss(w[(size_t)r * w_ld + t]) * x[(size_t)c * x_ld + t];
            y[(size_t)c * ldy + r] = s;
        }
}

#endif
