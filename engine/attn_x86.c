/*
 * attn_x86.c — AVX2/FMA attention of one query head (the AVX-512 level uses it too: eight
 * lanes hold a head's 64 or 128 values in few registers, and scores of eight positions are
 * reduced together). Scores: eight key rows against the query at once, summed across lanes by
 * one hadd tree; exponentials: a polynomial over eight scores at a time; values: the output
 * kept in registers, 64 values per pass over the positions. Equal to eng_attn_ref up to float
 * rounding (the check names the tolerance).
 */
#include "quants_x86.h"

#include <immintrin.h>
#include <math.h>

/* The eight totals of a0..a7, in order. */
static inline __m256 totals8(__m256 a0, __m256 a1, __m256 a2, __m256 a3, __m256 a4, __m256 a5,
                             __m256 a6, __m256 a7) {
    __m256 h0 = _mm256_hadd_ps(_mm256_hadd_ps(a0, a1), _mm256_hadd_ps(a2, a3));
    __m256 h1 = _mm256_hadd_ps(_mm256_hadd_ps(a4, a5), _mm256_hadd_ps(a6, a7));
    return _mm256_add_ps(_mm256_permute2f128_ps(h0, h1, 0x20),
                         _mm256_permute2f128_ps(h0, h1, 0x31));
}

/* e^x for x <= 0 (softmax after subtracting the maximum): x = n·ln2 + r with |r| <= ln2/2,
 * e^r by a degree-6 polynomial, 2^n put in the exponent. Below -87 the result is e^-87 (the
 * smallest normal range), which a sum that contains 1 does not notice. Relative error about
 * 2e-7. */
static inline __m256 exp_neg(__m256 x) {
    x = _mm256_max_ps(x, _mm256_set1_ps(-87.0f));
    __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504f)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
    __m256 y = _mm256_fmadd_ps(_mm256_mul_ps(p, r), r, _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    __m256i e =
        _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(y, _mm256_castsi256_ps(e));
}

/* out[0..8W) = inv · Σ_p att[p] · v_p[0..8W), the W registers of the output kept live. */
static inline __attribute__((always_inline)) void
weighted(const int W, int n, const float *att, const float *v, size_t ld, float inv, float *out) {
    __m256 o[8];
#pragma GCC unroll 8
    for (int j = 0; j < W; j++) o[j] = _mm256_setzero_ps();
    for (int p = 0; p < n; p++) { /* hot loop */
        const __m256 a = _mm256_broadcast_ss(att + p);
        const float *vp = v + (size_t)p * ld;
#pragma GCC unroll 8
        for (int j = 0; j < W; j++) o[j] = _mm256_fmadd_ps(a, _mm256_loadu_ps(vp + 8 * j), o[j]);
    }
    const __m256 vi = _mm256_set1_ps(inv);
#pragma GCC unroll 8
    for (int j = 0; j < W; j++) _mm256_storeu_ps(out + 8 * j, _mm256_mul_ps(o[j], vi));
}

void eng_attn_avx2(int hd, int n, const float *q, const float *k, const float *v, size_t ld,
                   float scale, float *att, float *out) {
    if (hd % 8) {
        eng_attn_ref(hd, n, q, k, v, ld, scale, att, out);
        return;
    }
    const __m256 vs = _mm256_set1_ps(scale);
    __m256 vmax = _mm256_set1_ps(-INFINITY);
    int p = 0;
    for (; p + 8 <= n; p += 8) { /* hot loop: eight positions' scores */
        const float *kp = k + (size_t)p * ld;
        __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0,
               a7 = a0;
        for (int i = 0; i < hd; i += 8) {
            const __m256 qv = _mm256_loadu_ps(q + i);
            a0 = _mm256_fmadd_ps(_mm256_loadu_ps(kp + i), qv, a0);
            a1 = _mm256_fmadd_ps(_mm256_loadu_ps(kp + ld + i), qv, a1);
            a2 = _mm256_fmadd_ps(_mm256_loadu_ps(kp + 2 * ld + i), qv, a2);
            a3 = _mm256_fmadd_ps(_mm256_loadu_ps(kp + 3 * ld + i), qv, a3);
            a4 = _mm256_fmadd_ps(_mm256_loadu_ps(kp + 4 * ld + i), qv, a4);
            a5 = _mm256_fmadd_ps(_mm256_loadu_ps(kp + 5 * ld + i), qv, a5);
            a6 = _mm256_fmadd_ps(_mm256_loadu_ps(kp + 6 * ld + i), qv, a6);
            a7 = _mm256_fmadd_ps(_mm256_loadu_ps(kp + 7 * ld + i), qv, a7);
        }
        const __m256 s = _mm256_mul_ps(totals8(a0, a1, a2, a3, a4, a5, a6, a7), vs);
        _mm256_storeu_ps(att + p, s);
        vmax = _mm256_max_ps(vmax, s);
    }
    float max = -INFINITY;
    for (int i = 0; i < 8; i++) max = fmaxf(max, ((float *)&vmax)[i]);
    for (; p < n; p++) {
        const float *kp = k + (size_t)p * ld;
        __m256 a = _mm256_setzero_ps();
        for (int i = 0; i < hd; i += 8)
            a = _mm256_fmadd_ps(_mm256_loadu_ps(kp + i), _mm256_loadu_ps(q + i), a);
        att[p] = hsum_ps(a) * scale;
        max = fmaxf(max, att[p]);
    }

    const __m256 vm = _mm256_set1_ps(max);
    __m256 vsum = _mm256_setzero_ps();
    for (p = 0; p + 8 <= n; p += 8) {
        const __m256 e = exp_neg(_mm256_sub_ps(_mm256_loadu_ps(att + p), vm));
        _mm256_storeu_ps(att + p, e);
        vsum = _mm256_add_ps(vsum, e);
    }
    float sum = hsum_ps(vsum);
    for (; p < n; p++) sum += att[p] = expf(att[p] - max);

    const float inv = 1.0f / sum;
    int i0 = 0;
    for (; i0 + 64 <= hd; i0 += 64) weighted(8, n, att, v + i0, ld, inv, out + i0);
    for (; i0 + 32 <= hd; i0 += 32) weighted(4, n, att, v + i0, ld, inv, out + i0);
    for (; i0 < hd; i0 += 8) weighted(1, n, att, v + i0, ld, inv, out + i0);
}
