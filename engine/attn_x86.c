/*
 * attn_x86.c — AVX2/FMA attention of one query head (the AVX-512 level's kernel,
 * attn_avx512_x86.c, hands it head sizes that are not multiples of 16). Scores: eight key rows
 * against the query at once, summed across lanes by one hadd tree; exponentials: vexp.h's
 * polynomial over eight scores at a time; values: the output kept in registers, 64 values per pass
 * over the positions. Cached keys and values are floats or fp16 values widened on load (F16C).
 * Equal to eng_attn_ref up to float rounding (the check names the tolerance).
 */
#include "attn_x86.h"

#include <math.h>

/* The eight totals of a0..a7, in order. */
static inline __m256 totals8(__m256 a0, __m256 a1, __m256 a2, __m256 a3, __m256 a4, __m256 a5,
                             __m256 a6, __m256 a7) {
    __m256 h0 = _mm256_hadd_ps(_mm256_hadd_ps(a0, a1), _mm256_hadd_ps(a2, a3));
    __m256 h1 = _mm256_hadd_ps(_mm256_hadd_ps(a4, a5), _mm256_hadd_ps(a6, a7));
    return _mm256_add_ps(_mm256_permute2f128_ps(h0, h1, 0x20),
                         _mm256_permute2f128_ps(h0, h1, 0x31));
}

/* Eight elements of a cache row block from element i: floats, or fp16 values widened. */
static inline __m256 ld8(const void *p, size_t i, const bool h) {
    return h ? _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)((const uint16_t *)p + i)))
             : _mm256_loadu_ps((const float *)p + i);
}

/* out[0..8W) = inv · Σ_p att[p] · v_p[i0..i0+8W), the W registers of the output kept live. */
static inline __attribute__((always_inline)) void weighted(const int W, const bool h, int n,
                                                           const float *att, const void *v,
                                                           size_t i0, size_t ld, float inv,
                                                           float *out) {
    __m256 o[8];
#pragma GCC unroll 8
    for (int j = 0; j < W; j++) o[j] = _mm256_setzero_ps();
    const size_t elt = h ? sizeof(uint16_t) : sizeof(float);
    for (int p = 0; p < n; p++) { /* hot loop */
        const __m256 a = _mm256_broadcast_ss(att + p);
        const size_t vp = (size_t)p * ld + i0;
        if (p + ATTN_PF_ROWS < n)
            pf_rows((const char *)v + vp * elt, ld * elt, 8 * (size_t)W * elt);
#pragma GCC unroll 8
        for (int j = 0; j < W; j++) o[j] = _mm256_fmadd_ps(a, ld8(v, vp + 8 * j, h), o[j]);
    }
    const __m256 vi = _mm256_set1_ps(inv);
#pragma GCC unroll 8
    for (int j = 0; j < W; j++) _mm256_storeu_ps(out + 8 * j, _mm256_mul_ps(o[j], vi));
}

static inline __attribute__((always_inline)) float attn_t(const bool h, int hd, int n,
                                                          const float *q, const void *k,
                                                          const void *v, size_t ld, float scale,
                                                          float *att, float *out) {
    const __m256 vs = _mm256_set1_ps(scale);
    __m256 vmax = _mm256_set1_ps(-INFINITY);
    const size_t row = ld * (h ? sizeof(uint16_t) : sizeof(float));
    int p = 0;
    /* The key rows before the first the loop prefetches, and with each eight positions' keys
     * their value rows, which the values pass after the softmax then finds in cache: a head's
     * rows are only a few KiB, too short a stream for the hardware prefetchers to reach speed.
     * One head of 64 fp16 values against a cache larger than the L3, one thread (a throwaway
     * loop over 2048 heads): 64 positions 17.7-18.5 -> 14.8-15.9 ns per position, 256 positions
     * 20.8 -> 10.5; L110M Q4_0 2 threads fp16 cache, five interleaved rounds: tg128 with 4
     * sequences and tg512 with one faster in every round (+1-10% and +1-15%). */
    pf_range(k, (size_t)ENG_MIN(n, ATTN_PF_ROWS) * row);
    for (; p + 8 <= n; p += 8) { /* hot loop: eight positions' scores */
        const size_t kp = (size_t)p * ld;
        if (p + ATTN_PF_ROWS < n) /* no further than the last row */
            pf_rows((const char *)k + (size_t)p * row, row,
                    (size_t)ENG_MIN(8, n - p - ATTN_PF_ROWS) * row);
        pf_range((const char *)v + (size_t)p * row, 8 * row);
        __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0,
               a7 = a0;
        for (int i = 0; i < hd; i += 8) {
            const __m256 qv = _mm256_loadu_ps(q + i);
            a0 = _mm256_fmadd_ps(ld8(k, kp + i, h), qv, a0);
            a1 = _mm256_fmadd_ps(ld8(k, kp + ld + i, h), qv, a1);
            a2 = _mm256_fmadd_ps(ld8(k, kp + 2 * ld + i, h), qv, a2);
            a3 = _mm256_fmadd_ps(ld8(k, kp + 3 * ld + i, h), qv, a3);
            a4 = _mm256_fmadd_ps(ld8(k, kp + 4 * ld + i, h), qv, a4);
            a5 = _mm256_fmadd_ps(ld8(k, kp + 5 * ld + i, h), qv, a5);
            a6 = _mm256_fmadd_ps(ld8(k, kp + 6 * ld + i, h), qv, a6);
            a7 = _mm256_fmadd_ps(ld8(k, kp + 7 * ld + i, h), qv, a7);
        }
        const __m256 s = _mm256_mul_ps(totals8(a0, a1, a2, a3, a4, a5, a6, a7), vs);
        _mm256_storeu_ps(att + p, s);
        vmax = _mm256_max_ps(vmax, s);
    }
    float max = -INFINITY;
    for (int i = 0; i < 8; i++) max = fmaxf(max, ((float *)&vmax)[i]);
    for (; p < n; p++) {
        const size_t kp = (size_t)p * ld;
        __m256 a = _mm256_setzero_ps();
        for (int i = 0; i < hd; i += 8)
            a = _mm256_fmadd_ps(ld8(k, kp + i, h), _mm256_loadu_ps(q + i), a);
        att[p] = hsum_ps(a) * scale;
        max = fmaxf(max, att[p]);
    }

    const float sum = exp_scores(att, n, max), inv = 1.0f / sum;
    int i0 = 0;
    for (; i0 + 64 <= hd; i0 += 64) weighted(8, h, n, att, v, (size_t)i0, ld, inv, out + i0);
    for (; i0 + 32 <= hd; i0 += 32) weighted(4, h, n, att, v, (size_t)i0, ld, inv, out + i0);
    for (; i0 < hd; i0 += 8) weighted(1, h, n, att, v, (size_t)i0, ld, inv, out + i0);
    return max + logf(sum);
}

float eng_attn_avx2(int hd, int n, const float *q, const void *k, const void *v, size_t ld,
                    bool f16, float scale, float *att, float *out) {
    if (hd % 8) return eng_attn_ref(hd, n, q, k, v, ld, f16, scale, att, out);
    if (f16) return attn_t(true, hd, n, q, k, v, ld, scale, att, out);
    return attn_t(false, hd, n, q, k, v, ld, scale, att, out);
}
