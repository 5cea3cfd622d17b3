/*
 * gemm.c — the tile kernel of prefill: an (nr × nc) block of outputs from nr repacked weight rows
 * (repack.c: 8-bit codes, scales per 16) and nc rows of 8-bit activation codes, so weights
 * are unpacked once for nc tokens and activations loaded once for nr rows. This file has the
 * scalar reference and picks the fastest kernel for the running CPU; SIMD twins live in
 * gemm_<arch>.c. Minimums (formats like q4_k) are added by the caller. It does not split work.
 */
#include "quants.h"

void eng_tile_ref(int64_t n, int nr, int nc, const int8_t *wq, const float *s8, const int8_t *a,
                  size_t a_ld, const float *ad, float *y, int64_t ldy) {
    int64_t nb = n / 32;
    for (int c = 0; c < nc; c++) {
        const int8_t *ac = a + (size_t)c * a_ld;
        for (int r = 0; r < nr; r++) {
            const int8_t *w = wq + (size_t)r * n;
            const float *s = s8 + (size_t)r * nb * 8;
            float acc = 0.0f;
            for (int64_t b = 0; b < nb; b++) {
                int lo = 0, hi = 0;
                for (int i = 0; i < 16; i++) lo += w[32 * b + i] * ac[32 * b + i];
                for (int i = 16; i < 32; i++) hi += w[32 * b + i] * ac[32 * b + i];
                float d = ad[(size_t)c * nb + b];
                acc += s[8 * b] * d * (float)lo + s[8 * b + 4] * d * (float)hi;
            }
            y[(size_t)c * ldy + r] = acc;
        }
    }
}

void eng_axpy_ref(int64_t n, float a, const float *x, float *y) {
    for (int64_t i = 0; i < n; i++) y[i] += a * x[i];
}

eng_axpy_fn eng_axpy_kernel(void) {
#if defined(__x86_64__)
    if (eng_simd_active() >= ENG_SIMD_AVX2 && eng_simd_active() <= ENG_SIMD_AVX512_GFNI)
        return eng_axpy_avx2;
#endif
    return eng_axpy_ref;
}

struct eng_tile eng_tile_kernel(void) {
#if defined(__x86_64__)
    if (eng_simd_is_avx512(eng_simd_active())) return (struct eng_tile){eng_tile_avx512, 4, 4};
    if (eng_simd_active() == ENG_SIMD_AVX2) return (struct eng_tile){eng_tile_avx2, 2, 4};
#endif
    return (struct eng_tile){eng_tile_ref, ENG_TILE_MAX, ENG_TILE_MAX};
}
