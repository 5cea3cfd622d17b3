/*
 * vexp.h — e^x over a vector register, shared by the attention kernels (softmax) and the vector
 * steps of the pass (SwiGLU's sigmoid): x = n·ln2 + r with |r| <= ln2/2, e^r by a degree-6
 * polynomial, 2^n put in the exponent. x is clamped to [-87, 88] first: below, the result is
 * e^-87 (the smallest normal range), which a softmax sum that contains 1 or a sigmoid's 1 + e^x
 * does not notice; above, e^88, still finite. Relative error about 2e-7. AVX2/FMA and Advanced
 * SIMD versions; include it only from files compiled for one of them.
 */
#ifndef EDGELLM_ENGINE_VEXP_H
#define EDGELLM_ENGINE_VEXP_H

#define VEXP_LO    -87.0f
#define VEXP_HI    88.0f
#define VEXP_LOG2E 1.44269504f
#define VEXP_LN2_H 0.693359375f     /* ln 2, high part (exact in few bits) */
#define VEXP_LN2_L -2.12194440e-4f  /* ln 2 - VEXP_LN2_H */
#define VEXP_P5    1.9875691500e-4f /* polynomial coefficients, highest degree first */
#define VEXP_P4    1.3981999507e-3f
#define VEXP_P3    8.3334519073e-3f
#define VEXP_P2    4.1665795894e-2f
#define VEXP_P1    1.6666665459e-1f
#define VEXP_P0    5.0000001201e-1f

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>

static inline __m256 vexp8(__m256 x) {
    x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(VEXP_LO)), _mm256_set1_ps(VEXP_HI));
    __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(VEXP_LOG2E)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(VEXP_LN2_H), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(VEXP_LN2_L), r);
    __m256 p = _mm256_set1_ps(VEXP_P5);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(VEXP_P4));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(VEXP_P3));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(VEXP_P2));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(VEXP_P1));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(VEXP_P0));
    __m256 y = _mm256_fmadd_ps(_mm256_mul_ps(p, r), r, _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    __m256i e =
        _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(y, _mm256_castsi256_ps(e));
}
#endif

#if defined(__aarch64__)
#include <arm_neon.h>

static inline float32x4_t vexp4(float32x4_t x) {
    x = vminq_f32(vmaxq_f32(x, vdupq_n_f32(VEXP_LO)), vdupq_n_f32(VEXP_HI));
    float32x4_t n = vrndnq_f32(vmulq_n_f32(x, VEXP_LOG2E));
    float32x4_t r = vfmsq_f32(x, n, vdupq_n_f32(VEXP_LN2_H));
    r = vfmsq_f32(r, n, vdupq_n_f32(VEXP_LN2_L));
    float32x4_t p = vdupq_n_f32(VEXP_P5);
    p = vfmaq_f32(vdupq_n_f32(VEXP_P4), p, r);
    p = vfmaq_f32(vdupq_n_f32(VEXP_P3), p, r);
    p = vfmaq_f32(vdupq_n_f32(VEXP_P2), p, r);
    p = vfmaq_f32(vdupq_n_f32(VEXP_P1), p, r);
    p = vfmaq_f32(vdupq_n_f32(VEXP_P0), p, r);
    float32x4_t y = vfmaq_f32(vaddq_f32(r, vdupq_n_f32(1.0f)), vmulq_f32(p, r), r);
    int32x4_t e = vshlq_n_s32(vaddq_s32(vcvtq_s32_f32(n), vdupq_n_s32(127)), 23);
    return vmulq_f32(y, vreinterpretq_f32_s32(e));
}
#endif

#endif
