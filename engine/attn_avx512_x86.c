/*
 * attn_avx512_x86.c — AVX-512 attention of one query head whose size is a multiple of 16 (the
 * other sizes go to eng_attn_avx2). A 16-lane register holds a quarter of a 64-value head, so
 * a position takes half the conversion and multiply-add instructions of the eight-lane kernel:
 * scores of sixteen key rows against the query, summed across lanes by one transposing tree into a
 * register of sixteen scores; values: the output kept in registers, up to 128 values per pass
 * over the positions. Exponentials are vexp.h's polynomial, as in the AVX2 kernel. Cached keys
 * and values are floats or fp16 values widened on load. Equal to eng_attn_ref up to float
 * rounding (the check names the tolerance). Prefetching as in attn_x86.c (attn_x86.h).
 * In cache the two cost about the same per position (bench-kernels -a, BENCHMARKS.md: 3.7-4.2
 * against 3.9-4.3 ns for head 64), so the instruction count is not what limits them there; from
 * memory, where decode reads the rows, head 64 at 128
 * positions 11.4 -> 9.6 ns per position, head 128 23.1 -> 19.2. L110M Q4_0 (head 64, fp16
 * cache), 2 threads, against the AVX2 kernel, builds alternated (edgellm bench -p 0 -r 1): four
 * sequences tg128 1841 -> 1893 tok/s (5 of 6 rounds faster), tg512 1456 -> 1542 (4 of 4); one
 * sequence tg512 773 -> 783 (2 of 4).
 * Measured as a lead, not built: one pass over the positions with a running maximum (each block
 * of sixteen scores exponentiated at once and its values added in right away, the sums rescaled
 * only when the maximum grows by more than 8), in a throwaway microbenchmark of head 64 with fp16
 * rows read one head after another: from memory 741-775 against 786-831 ns per head at 64
 * positions and 1467-1501 against 1599-1663 at 128, in cache 474-486 against 395-437 and
 * 932-950 against 710-828. Attention is about a sixth of a four-sequence L110M pass.
 */
#include "attn_x86.h"

#include <math.h>

/* Sixteen elements of a cache row block from element i: floats, or fp16 values widened. */
static inline __m512 ld16(const void *p, size_t i, const bool h) {
    return h ? _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)((const uint16_t *)p + i)))
             : _mm512_loadu_ps((const float *)p + i);
}

/* The sixteen totals of a[0..15], in order: pairs of registers interleaved and added (each
 * 128-bit lane then holds two rows' partial sums), pairs of those (four rows' per lane), then
 * the lanes of two registers exchanged and added twice. 15 additions and 30 shuffles for
 * sixteen rows, against sixteen horizontal sums of four steps each. */
static inline __m512 totals16(const __m512 *a) {
    __m512 x[8], y[4];
#pragma GCC unroll 8
    for (int i = 0; i < 8; i++) /* per lane: a0+a2, b0+b2, a1+a3, b1+b3 of rows a, b */
        x[i] = _mm512_add_ps(_mm512_unpacklo_ps(a[2 * i], a[2 * i + 1]),
                             _mm512_unpackhi_ps(a[2 * i], a[2 * i + 1]));
#pragma GCC unroll 4
    for (int i = 0; i < 4; i++) { /* per lane: the four rows 4i..4i+3 */
        const __m512d p = _mm512_castps_pd(x[2 * i]), q = _mm512_castps_pd(x[2 * i + 1]);
        y[i] = _mm512_add_ps(_mm512_castpd_ps(_mm512_unpacklo_pd(p, q)),
                             _mm512_castpd_ps(_mm512_unpackhi_pd(p, q)));
    }
    /* lanes (0+2, 1+3) of y0 then of y1; of y2 then of y3 */
    const __m512 z0 = _mm512_add_ps(_mm512_shuffle_f32x4(y[0], y[1], 0x44),
                                    _mm512_shuffle_f32x4(y[0], y[1], 0xEE));
    const __m512 z1 = _mm512_add_ps(_mm512_shuffle_f32x4(y[2], y[3], 0x44),
                                    _mm512_shuffle_f32x4(y[2], y[3], 0xEE));
    /* lane k: the totals of rows 4k..4k+3 */
    return _mm512_add_ps(_mm512_shuffle_f32x4(z0, z1, 0x88), _mm512_shuffle_f32x4(z0, z1, 0xDD));
}

/* out[0..16W) = inv · Σ_p att[p] · v_p[i0..i0+16W), the W registers of the output kept live. */
static inline __attribute__((always_inline)) void weighted16(const int W, const bool h, int n,
                                                             const float *att, const void *v,
                                                             size_t i0, size_t ld, float inv,
                                                             float *out) {
    __m512 o[8];
#pragma GCC unroll 8
    for (int j = 0; j < W; j++) o[j] = _mm512_setzero_ps();
    const size_t elt = h ? sizeof(uint16_t) : sizeof(float);
    for (int p = 0; p < n; p++) { /* hot loop */
        const __m512 a = _mm512_set1_ps(att[p]);
        const size_t vp = (size_t)p * ld + i0;
        if (p + ATTN_PF_ROWS < n)
            pf_rows((const char *)v + vp * elt, ld * elt, 16 * (size_t)W * elt);
#pragma GCC unroll 8
        for (int j = 0; j < W; j++) o[j] = _mm512_fmadd_ps(a, ld16(v, vp + 16 * j, h), o[j]);
    }
    const __m512 vi = _mm512_set1_ps(inv);
#pragma GCC unroll 8
    for (int j = 0; j < W; j++) _mm512_storeu_ps(out + 16 * j, _mm512_mul_ps(o[j], vi));
}

static inline __attribute__((always_inline)) float attn16(const bool h, int hd, int n,
                                                          const float *q, const void *k,
                                                          const void *v, size_t ld, float scale,
                                                          float *att, float *out) {
    const __m512 vs = _mm512_set1_ps(scale);
    __m512 vmax = _mm512_set1_ps(-INFINITY);
    const size_t row = ld * (h ? sizeof(uint16_t) : sizeof(float));
    int p = 0;
    pf_range(k, (size_t)ENG_MIN(n, ATTN_PF_ROWS) * row);
    for (; p + 16 <= n; p += 16) { /* hot loop: sixteen positions' scores */
        const size_t kp = (size_t)p * ld;
        if (p + ATTN_PF_ROWS < n) /* no further than the last row */
            pf_rows((const char *)k + (size_t)p * row, row,
                    (size_t)ENG_MIN(16, n - p - ATTN_PF_ROWS) * row);
        pf_range((const char *)v + (size_t)p * row, 16 * row);
        __m512 a[16];
        const __m512 q0 = _mm512_loadu_ps(q);
#pragma GCC unroll 16
        for (int r = 0; r < 16; r++) a[r] = _mm512_mul_ps(ld16(k, kp + (size_t)r * ld, h), q0);
        for (int i = 16; i < hd; i += 16) {
            const __m512 qv = _mm512_loadu_ps(q + i);
#pragma GCC unroll 16
            for (int r = 0; r < 16; r++)
                a[r] = _mm512_fmadd_ps(ld16(k, kp + (size_t)r * ld + i, h), qv, a[r]);
        }
        const __m512 s = _mm512_mul_ps(totals16(a), vs);
        _mm512_storeu_ps(att + p, s);
        vmax = _mm512_max_ps(vmax, s);
    }
    float max = _mm512_reduce_max_ps(vmax);
    for (; p < n; p++) {
        const size_t kp = (size_t)p * ld;
        __m512 a = _mm512_setzero_ps();
        for (int i = 0; i < hd; i += 16)
            a = _mm512_fmadd_ps(ld16(k, kp + i, h), _mm512_loadu_ps(q + i), a);
        att[p] = _mm512_reduce_add_ps(a) * scale;
        max = fmaxf(max, att[p]);
    }

    const float sum = exp_scores(att, n, max), inv = 1.0f / sum;
    int i0 = 0;
    for (; i0 + 128 <= hd; i0 += 128) weighted16(8, h, n, att, v, (size_t)i0, ld, inv, out + i0);
    for (; i0 + 64 <= hd; i0 += 64) weighted16(4, h, n, att, v, (size_t)i0, ld, inv, out + i0);
    for (; i0 < hd; i0 += 16) weighted16(1, h, n, att, v, (size_t)i0, ld, inv, out + i0);
    return max + logf(sum);
}

float eng_attn_avx512(int hd, int n, const float *q, const void *k, const void *v, size_t ld,
                      bool f16, float scale, float *att, float *out) {
    if (hd % 16) return eng_attn_avx2(hd, n, q, k, v, ld, f16, scale, att, out);
    if (f16) return attn16(true, hd, n, q, k, v, ld, scale, att, out);
    return attn16(false, hd, n, q, k, v, ld, scale, att, out);
}
