/*
 * quants_x86.c — AVX2/FMA/F16C kernels for x86-64 (compiled with -mavx2 -mfma -mf16c; only
 * installed when the running CPU has them, see eng_simd_supported). For every weight format: the
 * dot product of a weight row with an activation row, and the activation quantizers Q8_0, Q8_1
 * and Q8_K.
 *
 * Every kernel has a scalar twin in types.c / quants.c. Quantizers give the same bytes as their
 * twins; dot products compute the same integer block sums and differ only in the order of float
 * additions (tests/check_kernels.c bounds that difference). It does not choose kernels.
 */
#include "quants_x86.h"

#include <immintrin.h>
#include <math.h>
#include <string.h>

/* ---- helpers ---- */

static inline int hsum_epi32(__m256i v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4E));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xB1));
    return _mm_cvtsi128_si32(s);
}

/* 32 nibbles of 16 bytes: low nibbles in bytes 0..15, high nibbles in bytes 16..31. */
static inline __m256i nibbles32(const uint8_t *p) {
    __m128i b = _mm_loadu_si128((const __m128i *)p);
    __m256i v = _mm256_set_m128i(_mm_srli_epi16(b, 4), b);
    return _mm256_and_si256(v, _mm256_set1_epi8(0x0F));
}

/* Byte j = 0xFF if bit j of the 32-bit little-endian word at p is set, else 0. */
static inline __m256i bits32(const uint8_t *p) {
    uint32_t w;
    memcpy(&w, p, 4);
    const __m256i shuf = _mm256_set_epi64x(0x0303030303030303, 0x0202020202020202,
                                           0x0101010101010101, 0x0000000000000000);
    __m256i bytes = _mm256_shuffle_epi8(_mm256_set1_epi32((int)w), shuf);
    const __m256i bit = _mm256_set1_epi64x((long long)0x8040201008040201ULL);
    return _mm256_cmpeq_epi8(_mm256_and_si256(bytes, bit), bit);
}

/* Sum of products of 32 signed bytes x and y, as 8 int32 lanes (|x|, |y| <= 127 keeps the
 * intermediate int16 sums exact). */
static inline __m256i dot_s8(__m256i x, __m256i y) {
    __m256i ax = _mm256_sign_epi8(x, x);
    __m256i sy = _mm256_sign_epi8(y, x);
    return _mm256_madd_epi16(_mm256_maddubs_epi16(ax, sy), _mm256_set1_epi16(1));
}

/* Same for unsigned x (0..127) and signed y. */
static inline __m256i dot_u8s8(__m256i x, __m256i y) {
    return _mm256_madd_epi16(_mm256_maddubs_epi16(x, y), _mm256_set1_epi16(1));
}

/* ---- F32 / F16 / BF16 weights, F32 activations ---- */

static void f32_vec_dot_avx2(int64_t n, float *s, const void *vw, const void *va) {
    const float *w = vw, *a = va;
    __m256 acc0 = _mm256_setzero_ps(), acc1 = acc0, acc2 = acc0, acc3 = acc0;
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) { /* hot loop */
        acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i), _mm256_loadu_ps(a + i), acc0);
        acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i + 8), _mm256_loadu_ps(a + i + 8), acc1);
        acc2 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i + 16), _mm256_loadu_ps(a + i + 16), acc2);
        acc3 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i + 24), _mm256_loadu_ps(a + i + 24), acc3);
    }
    for (; i + 8 <= n; i += 8)
        acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i), _mm256_loadu_ps(a + i), acc0);
    float sum = hsum_ps(_mm256_add_ps(_mm256_add_ps(acc0, acc1), _mm256_add_ps(acc2, acc3)));
    for (; i < n; i++) sum += w[i] * a[i];
    *s = sum;
}

static inline __m256 load_f16x8(const uint16_t *p) {
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p));
}

/* An f16 row · NC <= 2 f32 activation rows (a_stride bytes apart): eight weights per vcvtph2ps,
 * converted once for both columns; four accumulators per column (8 of the 16 registers at two
 * columns). Each column's arithmetic is the same whatever NC is (test-simd: vec_dot_cols equals
 * vec_dot bit for bit). */
static inline __attribute__((always_inline)) void f16_cols(const int NC, int64_t n, float *s,
                                                           size_t s_stride, const void *vw,
                                                           const void *va, size_t a_stride) {
    const uint16_t *w = vw;
    const float *a[2];
    __m256 acc[2][4];
#pragma GCC unroll 2
    for (int c = 0; c < NC; c++) {
        a[c] = (const float *)((const uint8_t *)va + (size_t)c * a_stride);
#pragma GCC unroll 4
        for (int k = 0; k < 4; k++) acc[c][k] = _mm256_setzero_ps();
    }
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) { /* hot loop */
        prefetch_at(w + i, 64, ENG_PF_DIST_F16);
#pragma GCC unroll 4
        for (int k = 0; k < 4; k++) {
            const __m256 wv = load_f16x8(w + i + 8 * k);
#pragma GCC unroll 2
            for (int c = 0; c < NC; c++)
                acc[c][k] = _mm256_fmadd_ps(wv, _mm256_loadu_ps(a[c] + i + 8 * k), acc[c][k]);
        }
    }
    for (; i + 8 <= n; i += 8) {
        const __m256 wv = load_f16x8(w + i);
#pragma GCC unroll 2
        for (int c = 0; c < NC; c++)
            acc[c][0] = _mm256_fmadd_ps(wv, _mm256_loadu_ps(a[c] + i), acc[c][0]);
    }
#pragma GCC unroll 2
    for (int c = 0; c < NC; c++) {
        float sum = hsum_ps(_mm256_add_ps(_mm256_add_ps(acc[c][0], acc[c][1]),
                                          _mm256_add_ps(acc[c][2], acc[c][3])));
        for (int64_t j = i; j < n; j++) sum += h2f(w[j]) * a[c][j];
        s[(size_t)c * s_stride] = sum;
    }
}
ENG_COLS2_ENTRY_POINTS(f16_avx2, f16_cols)

static void f16_to_float_avx2(const void *vx, float *y, int64_t n) {
    const uint16_t *x = vx;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, load_f16x8(x + i));
    for (; i < n; i++) y[i] = h2f(x[i]);
}

/* Round to nearest even, as eng_fp32_to_fp16 (F16C). */
static void f16_from_float_avx2(const float *x, void *vy, int64_t n) {
    uint16_t *y = vy;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i *)(y + i),
                         _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT));
    for (; i < n; i++) y[i] = eng_fp32_to_fp16(x[i]);
}

static inline __m256 load_bf16x8(const uint16_t *p) {
    __m256i v = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p));
    return _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
}

static void bf16_vec_dot_avx2(int64_t n, float *s, const void *vw, const void *va) {
    const uint16_t *w = vw;
    const float *a = va;
    __m256 acc0 = _mm256_setzero_ps(), acc1 = acc0, acc2 = acc0, acc3 = acc0;
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) { /* hot loop */
        acc0 = _mm256_fmadd_ps(load_bf16x8(w + i), _mm256_loadu_ps(a + i), acc0);
        acc1 = _mm256_fmadd_ps(load_bf16x8(w + i + 8), _mm256_loadu_ps(a + i + 8), acc1);
        acc2 = _mm256_fmadd_ps(load_bf16x8(w + i + 16), _mm256_loadu_ps(a + i + 16), acc2);
        acc3 = _mm256_fmadd_ps(load_bf16x8(w + i + 24), _mm256_loadu_ps(a + i + 24), acc3);
    }
    for (; i + 8 <= n; i += 8)
        acc0 = _mm256_fmadd_ps(load_bf16x8(w + i), _mm256_loadu_ps(a + i), acc0);
    float sum = hsum_ps(_mm256_add_ps(_mm256_add_ps(acc0, acc1), _mm256_add_ps(acc2, acc3)));
    for (; i < n; i++) sum += eng_bf16_to_fp32(w[i]) * a[i];
    *s = sum;
}

static void bf16_to_float_avx2(const void *vx, float *y, int64_t n) {
    const uint16_t *x = vx;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, load_bf16x8(x + i));
    for (; i < n; i++) y[i] = eng_bf16_to_fp32(x[i]);
}

/* ---- activation quantizers ---- */

/* roundf (half away from zero) of 8 floats whose magnitude is below 2^23, exactly. */
static inline __m256i round_away(__m256 v) {
    __m256 t = _mm256_round_ps(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
    __m256 frac = _mm256_sub_ps(v, t); /* exact */
    const __m256 sign = _mm256_set1_ps(-0.0f);
    __m256 half = _mm256_cmp_ps(_mm256_andnot_ps(sign, frac), _mm256_set1_ps(0.5f), _CMP_GE_OQ);
    __m256 one = _mm256_or_ps(_mm256_and_ps(v, sign), _mm256_set1_ps(1.0f));
    return _mm256_cvttps_epi32(_mm256_add_ps(t, _mm256_and_ps(half, one)));
}

/* Packs 32 int32 (four vectors, in order) into 32 int8 in order. */
static inline __m256i pack32(__m256i a, __m256i b, __m256i c, __m256i d) {
    __m256i ab = _mm256_packs_epi32(a, b);
    __m256i cd = _mm256_packs_epi32(c, d);
    __m256i x = _mm256_packs_epi16(ab, cd);
    return _mm256_permutevar8x32_epi32(x, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

static inline float hmax_ps(__m256 v) {
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_movehdup_ps(m));
    return _mm_cvtss_f32(m);
}

/* Quantizes 32 floats to q8_0-style: returns d (f32), writes qs, and the sum of qs. */
static inline float quant32(const float *x, int8_t *qs, int *sum) {
    const __m256 sign = _mm256_set1_ps(-0.0f);
    __m256 v0 = _mm256_loadu_ps(x), v1 = _mm256_loadu_ps(x + 8);
    __m256 v2 = _mm256_loadu_ps(x + 16), v3 = _mm256_loadu_ps(x + 24);
    __m256 m = _mm256_max_ps(_mm256_max_ps(_mm256_andnot_ps(sign, v0), _mm256_andnot_ps(sign, v1)),
                             _mm256_max_ps(_mm256_andnot_ps(sign, v2), _mm256_andnot_ps(sign, v3)));
    float amax = hmax_ps(m);
    float d = amax / 127.0f;
    float id = d ? 1.0f / d : 0.0f;
    __m256 vid = _mm256_set1_ps(id);
    __m256i i0 = round_away(_mm256_mul_ps(v0, vid)), i1 = round_away(_mm256_mul_ps(v1, vid));
    __m256i i2 = round_away(_mm256_mul_ps(v2, vid)), i3 = round_away(_mm256_mul_ps(v3, vid));
    if (sum)
        *sum = hsum_epi32(_mm256_add_epi32(_mm256_add_epi32(i0, i1), _mm256_add_epi32(i2, i3)));
    _mm256_storeu_si256((__m256i *)qs, pack32(i0, i1, i2, i3));
    return d;
}

static void q8_0_from_float_avx2(const float *x, void *vy, int64_t n) {
    struct eng_block_q8_0 *y = vy;
    for (int64_t i = 0; i < n / ENG_QK8_0; i++)
        y[i].d = eng_fp32_to_fp16(quant32(x + i * ENG_QK8_0, y[i].qs, NULL));
}

static void q8_1_from_float_avx2(const float *x, void *vy, int64_t n) {
    struct eng_block_q8_1 *y = vy;
    for (int64_t i = 0; i < n / ENG_QK8_1; i++) {
        int sum;
        float d = quant32(x + i * ENG_QK8_1, y[i].qs, &sum);
        y[i].d = eng_fp32_to_fp16(d);
        y[i].s = eng_fp32_to_fp16((float)sum * d);
    }
}

static void q8_k_from_float_avx2(const float *x, void *vy, int64_t n) {
    struct eng_block_q8_k *y = vy;
    const __m256 sign = _mm256_set1_ps(-0.0f);
    for (int64_t i = 0; i < n / ENG_QK_K; i++, x += ENG_QK_K) {
        __m256 m = _mm256_setzero_ps();
        for (int j = 0; j < ENG_QK_K; j += 8)
            m = _mm256_max_ps(m, _mm256_andnot_ps(sign, _mm256_loadu_ps(x + j)));
        float amax = hmax_ps(m);
        if (!amax) {
            memset(&y[i], 0, sizeof(y[i]));
            continue;
        }
        /* the sign of the first element of largest magnitude, as the reference */
        float max = amax;
        __m256 va = _mm256_set1_ps(amax);
        for (int j = 0; j < ENG_QK_K; j += 8) {
            __m256 v = _mm256_loadu_ps(x + j);
            int mask = _mm256_movemask_ps(_mm256_cmp_ps(_mm256_andnot_ps(sign, v), va, _CMP_EQ_OQ));
            if (mask) {
                max = x[j + __builtin_ctz((unsigned)mask)];
                break;
            }
        }
        float iscale = -127.0f / max;
        __m256 vs = _mm256_set1_ps(iscale);
        for (int j = 0; j < ENG_QK_K; j += 32) {
            __m256i q[4];
            for (int k = 0; k < 4; k++)
                q[k] = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + j + 8 * k), vs));
            /* bsums of the two groups of 16 */
            y[i].bsums[j / 16] = (int16_t)hsum_epi32(_mm256_add_epi32(q[0], q[1]));
            y[i].bsums[j / 16 + 1] = (int16_t)hsum_epi32(_mm256_add_epi32(q[2], q[3]));
            _mm256_storeu_si256((__m256i *)(y[i].qs + j), pack32(q[0], q[1], q[2], q[3]));
        }
        y[i].d = 1.0f / iscale;
    }
}

/* ---- 32-element block formats × Q8_0 / Q8_1 ---- */

/* q8_0 row · NC Q8_0 rows: each weight block's codes, their absolute values and its scale are
 * loaded once for all columns; each column's arithmetic is the same sequence whatever NC is
 * (nc = 1 is the plain dot product). */
static inline __attribute__((always_inline)) void q8_0_cols(const int NC, int64_t n, float *s,
                                                            size_t s_stride,
                                                            const struct eng_block_q8_0 *w,
                                                            const uint8_t *a0, size_t a_stride) {
    const int64_t nb = n / ENG_QK8_0;
    const __m256i ones = _mm256_set1_epi16(1);
    __m256 acc0[4], acc1[4];
#pragma GCC unroll 4
    for (int c = 0; c < NC; c++) acc0[c] = acc1[c] = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 2 <= nb; i += 2) { /* hot loop */
        prefetch_ahead(w + i, 2 * sizeof(*w), NC);
        const __m256i x0 = _mm256_loadu_si256((const __m256i *)w[i].qs);
        const __m256i x1 = _mm256_loadu_si256((const __m256i *)w[i + 1].qs);
        const __m256i ax0 = _mm256_sign_epi8(x0, x0), ax1 = _mm256_sign_epi8(x1, x1);
        const float d0 = h2f(w[i].d), d1 = h2f(w[i + 1].d);
#pragma GCC unroll 4
        for (int c = 0; c < NC; c++) {
            const struct eng_block_q8_0 *a =
                (const struct eng_block_q8_0 *)(a0 + (size_t)c * a_stride);
            __m256i p0 = _mm256_madd_epi16(
                _mm256_maddubs_epi16(
                    ax0, _mm256_sign_epi8(_mm256_loadu_si256((const __m256i *)a[i].qs), x0)),
                ones);
            __m256i p1 = _mm256_madd_epi16(
                _mm256_maddubs_epi16(
                    ax1, _mm256_sign_epi8(_mm256_loadu_si256((const __m256i *)a[i + 1].qs), x1)),
                ones);
            acc0[c] =
                _mm256_fmadd_ps(_mm256_set1_ps(d0 * h2f(a[i].d)), _mm256_cvtepi32_ps(p0), acc0[c]);
            acc1[c] = _mm256_fmadd_ps(_mm256_set1_ps(d1 * h2f(a[i + 1].d)), _mm256_cvtepi32_ps(p1),
                                      acc1[c]);
        }
    }
#pragma GCC unroll 4
    for (int c = 0; c < NC; c++) {
        const struct eng_block_q8_0 *a = (const struct eng_block_q8_0 *)(a0 + (size_t)c * a_stride);
        for (int64_t k = i; k < nb; k++) {
            __m256i p = dot_s8(_mm256_loadu_si256((const __m256i *)w[k].qs),
                               _mm256_loadu_si256((const __m256i *)a[k].qs));
            acc0[c] = _mm256_fmadd_ps(_mm256_set1_ps(h2f(w[k].d) * h2f(a[k].d)),
                                      _mm256_cvtepi32_ps(p), acc0[c]);
        }
        s[(size_t)c * s_stride] = hsum_ps(_mm256_add_ps(acc0[c], acc1[c]));
    }
}

ENG_COLS_ENTRY_POINTS(q8_0_avx2, q8_0_cols)

/* Q8_0X (types.c): Q8_0's codes and scales regrouped for the kernels below. Same codes as
 * q8_0_from_float_avx2 (quant32), so both activation types give the same products: a full group
 * of eight blocks takes their maxima, scales (amax / 127, then fp16-rounded by F16C, which
 * rounds as eng_fp32_to_fp16) and code sums eight at a time, so that the eight blocks' latency
 * chains (a horizontal max, a division, a horizontal sum) overlap; a last group of fewer blocks
 * goes block by block. The activations of every decode step's products pass through here once
 * per token. Q8_0X16 (x16) stores -8 times each block's code sum as an int32 in place of c. */
static inline __attribute__((always_inline)) void q8_0x_fill_avx2(const float *x, void *vy,
                                                                  int64_t n, const bool x16) {
    uint8_t *y = vy;
    const int64_t nb = n / ENG_QK8_0, nb8 = nb / 8 * 8;
    const __m256 sign = _mm256_set1_ps(-0.0f);
    for (int64_t g = 0; g < nb8; g += 8) {
        const float *xg = x + g * ENG_QK8_0;
        const struct eng_q8_0x_group o = eng_q8_0x_group(y, g, 8);
        __m256 m[8];
        for (int k = 0; k < 8; k++) {
            const float *b = xg + 32 * k;
            m[k] = _mm256_max_ps(_mm256_max_ps(_mm256_andnot_ps(sign, _mm256_loadu_ps(b)),
                                               _mm256_andnot_ps(sign, _mm256_loadu_ps(b + 8))),
                                 _mm256_max_ps(_mm256_andnot_ps(sign, _mm256_loadu_ps(b + 16)),
                                               _mm256_andnot_ps(sign, _mm256_loadu_ps(b + 24))));
        }
        __m256 vd;
        const __m256 vid = q8_0x_scales(m, &vd);
        __m256i sums[8];
        for (int k = 0; k < 8; k++) {
            const float *b = xg + 32 * k;
            const __m256 id = _mm256_permutevar8x32_ps(vid, _mm256_set1_epi32(k));
            const __m256i i0 = round_away(_mm256_mul_ps(_mm256_loadu_ps(b), id));
            const __m256i i1 = round_away(_mm256_mul_ps(_mm256_loadu_ps(b + 8), id));
            const __m256i i2 = round_away(_mm256_mul_ps(_mm256_loadu_ps(b + 16), id));
            const __m256i i3 = round_away(_mm256_mul_ps(_mm256_loadu_ps(b + 24), id));
            sums[k] = _mm256_add_epi32(_mm256_add_epi32(i0, i1), _mm256_add_epi32(i2, i3));
            const __m256i q = pack32(i0, i1, i2, i3);
            _mm_storeu_si128((__m128i *)(o.lo + 16 * k), _mm256_castsi256_si128(q));
            _mm_storeu_si128((__m128i *)(o.hi + 16 * k), _mm256_extracti128_si256(q, 1));
        }
        q8_0x_put_group(o, vd, sums, x16);
    }
    if (nb8 < nb) {
        const int r = (int)(nb - nb8);
        const struct eng_q8_0x_group o = eng_q8_0x_group(y, nb8, r);
        for (int k = 0; k < r; k++) {
            int8_t qs[32];
            int sum;
            o.d[k] =
                eng_fp16_to_fp32(eng_fp32_to_fp16(quant32(x + (nb8 + k) * ENG_QK8_0, qs, &sum)));
            eng_q8_0x_put_sum(&o.c[k], o.d[k], sum, x16);
            memcpy(o.lo + 16 * k, qs, 16);
            memcpy(o.hi + 16 * k, qs + 16, 16);
        }
    }
}

void eng_q8_0x_fill_avx2(const float *x, void *vy, int64_t n, bool x16) {
    if (x16)
        q8_0x_fill_avx2(x, vy, n, true);
    else
        q8_0x_fill_avx2(x, vy, n, false);
}

static void q8_0x_from_float_avx2(const float *x, void *vy, int64_t n) {
    q8_0x_fill_avx2(x, vy, n, false);
}

static void q8_0x16_from_float_avx2(const float *x, void *vy, int64_t n) {
    q8_0x_fill_avx2(x, vy, n, true);
}

/* q4_0 row · NC <= 2 Q8_0X rows (a_stride bytes apart), eight blocks (256 weights) per step:
 * - two blocks' low nibbles in one register and their high nibbles in another, unpacked once for
 *   the columns, against each column's low and high codes of the same two blocks (Q8_0X keeps
 *   them side by side);
 * - the nibbles stay unsigned (maddubs needs no sign fix-up); the -8 offset is 8·c per block,
 *   c = d_a·Σa precomputed with the activations: one multiply-add per eight blocks;
 * - the eight weight scales are converted with one vcvtph2ps and spread to the lanes of each
 *   block pair by one permute.
 * One row at a time, reading the weights as one sequential stream (several rows interleaved
 * measured slower in decode: it defeats the hardware prefetcher). Each column's arithmetic is the
 * same whatever NC is (test-simd: vec_dot_cols equals vec_dot bit for bit); two columns per pass
 * keep the accumulators within AVX2's 16 registers. */
static inline __attribute__((always_inline)) void q4_0_q8x_cols(const int NC, int64_t n, float *s,
                                                                size_t s_stride, const void *vw,
                                                                const void *va, size_t a_stride) {
    const struct eng_block_q4_0 *w = vw;
    const uint8_t *a[2];
    const int64_t nb = n / ENG_QK4_0, nb8 = nb / 8 * 8;
    const __m256i m4 = _mm256_set1_epi8(0x0F), ones = _mm256_set1_epi16(1);
    const __m256i lane_idx[4] = {
        _mm256_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1), _mm256_setr_epi32(2, 2, 2, 2, 3, 3, 3, 3),
        _mm256_setr_epi32(4, 4, 4, 4, 5, 5, 5, 5), _mm256_setr_epi32(6, 6, 6, 6, 7, 7, 7, 7)};
    __m256 acc0[2], acc1[2], accc[2];
#pragma GCC unroll 2
    for (int c = 0; c < NC; c++) {
        a[c] = (const uint8_t *)va + (size_t)c * a_stride;
        acc0[c] = acc1[c] = accc[c] = _mm256_setzero_ps();
    }
    for (int64_t g = 0; g < nb8; g += 8) { /* hot loop */
        prefetch_ahead(w + g, 8 * sizeof(*w), NC);
        const __m256 dw = _mm256_cvtph_ps(fp16x8(&w[g].d, sizeof(*w)));
        __m256 d[2];
#pragma GCC unroll 2
        for (int c = 0; c < NC; c++) {
            const float *ad = (const float *)(a[c] + 40 * g), *ac = ad + 8;
            d[c] = _mm256_mul_ps(dw, _mm256_loadu_ps(ad));
            accc[c] = _mm256_fmadd_ps(dw, _mm256_loadu_ps(ac), accc[c]);
        }
#pragma GCC unroll 4
        for (int k = 0; k < 4; k++) {
            __m256i q = _mm256_set_m128i(_mm_loadu_si128((const __m128i *)w[g + 2 * k + 1].qs),
                                         _mm_loadu_si128((const __m128i *)w[g + 2 * k].qs));
            __m256i ql = _mm256_and_si256(q, m4);
            __m256i qh = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
#pragma GCC unroll 2
            for (int c = 0; c < NC; c++) {
                const int8_t *lo = (const int8_t *)(a[c] + 40 * g + 64), *hi = lo + 128;
                __m256i p = _mm256_add_epi16(
                    _mm256_maddubs_epi16(ql, _mm256_loadu_si256((const __m256i *)(lo + 32 * k))),
                    _mm256_maddubs_epi16(qh, _mm256_loadu_si256((const __m256i *)(hi + 32 * k))));
                __m256 f = _mm256_cvtepi32_ps(_mm256_madd_epi16(p, ones));
                __m256 sc = _mm256_permutevar8x32_ps(d[c], lane_idx[k]);
                if (k & 1)
                    acc1[c] = _mm256_fmadd_ps(f, sc, acc1[c]);
                else
                    acc0[c] = _mm256_fmadd_ps(f, sc, acc0[c]);
            }
        }
    }
#pragma GCC unroll 2
    for (int c = 0; c < NC; c++) {
        float sum = hsum_ps(_mm256_add_ps(acc0[c], acc1[c])) - 8.0f * hsum_ps(accc[c]);
        if (nb8 < nb) { /* the last group has r < 8 blocks */
            int r = (int)(nb - nb8);
            const float *ad = (const float *)(a[c] + 40 * nb8);
            const int8_t *lo = (const int8_t *)(ad + 2 * r), *hi = lo + 16 * r;
            for (int k = 0; k < r; k++) {
                const struct eng_block_q4_0 *b = &w[nb8 + k];
                int acc = 0;
                for (int j = 0; j < 16; j++)
                    acc += ((b->qs[j] & 0xF) - 8) * lo[16 * k + j] +
                           ((b->qs[j] >> 4) - 8) * hi[16 * k + j];
                sum += h2f(b->d) * ad[k] * (float)acc;
            }
        }
        s[(size_t)c * s_stride] = sum;
    }
}
ENG_COLS2_ENTRY_POINTS(q4_0_q8x_avx2, q4_0_q8x_cols)

static void q4_1_vec_dot_avx2(int64_t n, float *s, const void *vw, const void *va) {
    const struct eng_block_q4_1 *w = vw;
    const struct eng_block_q8_1 *a = va;
    __m256 acc = _mm256_setzero_ps();
    float summ = 0.0f;
    for (int64_t i = 0; i < n / ENG_QK4_1; i++) { /* hot loop */
        __m256i p = dot_u8s8(nibbles32(w[i].qs), _mm256_loadu_si256((const __m256i *)a[i].qs));
        acc =
            _mm256_fmadd_ps(_mm256_set1_ps(h2f(w[i].d) * h2f(a[i].d)), _mm256_cvtepi32_ps(p), acc);
        summ += h2f(w[i].m) * h2f(a[i].s);
    }
    *s = hsum_ps(acc) + summ;
}

static void q5_0_vec_dot_avx2(int64_t n, float *s, const void *vw, const void *va) {
    const struct eng_block_q5_0 *w = vw;
    const struct eng_block_q8_0 *a = va;
    __m256 acc = _mm256_setzero_ps();
    const __m256i f0 = _mm256_set1_epi8((char)0xF0);
    for (int64_t i = 0; i < n / ENG_QK5_0; i++) { /* hot loop */
        /* q - 16 as int8: low nibble, or'ed with 0xF0 where the 5th bit is clear */
        __m256i x = _mm256_or_si256(nibbles32(w[i].qs), _mm256_andnot_si256(bits32(w[i].qh), f0));
        __m256i p = dot_s8(x, _mm256_loadu_si256((const __m256i *)a[i].qs));
        acc =
            _mm256_fmadd_ps(_mm256_set1_ps(h2f(w[i].d) * h2f(a[i].d)), _mm256_cvtepi32_ps(p), acc);
    }
    *s = hsum_ps(acc);
}

static void q5_1_vec_dot_avx2(int64_t n, float *s, const void *vw, const void *va) {
    const struct eng_block_q5_1 *w = vw;
    const struct eng_block_q8_1 *a = va;
    __m256 acc = _mm256_setzero_ps();
    float summ = 0.0f;
    const __m256i b4 = _mm256_set1_epi8(0x10);
    for (int64_t i = 0; i < n / ENG_QK5_1; i++) { /* hot loop */
        __m256i x = _mm256_or_si256(nibbles32(w[i].qs), _mm256_and_si256(bits32(w[i].qh), b4));
        __m256i p = dot_u8s8(x, _mm256_loadu_si256((const __m256i *)a[i].qs));
        acc =
            _mm256_fmadd_ps(_mm256_set1_ps(h2f(w[i].d) * h2f(a[i].d)), _mm256_cvtepi32_ps(p), acc);
        summ += h2f(w[i].m) * h2f(a[i].s);
    }
    *s = hsum_ps(acc) + summ;
}

static inline __m256i iq4_table(void) {
    return _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)eng_iq4nl_values));
}

static void iq4_nl_vec_dot_avx2(int64_t n, float *s, const void *vw, const void *va) {
    const struct eng_block_iq4_nl *w = vw;
    const struct eng_block_q8_0 *a = va;
    const __m256i tbl = iq4_table();
    __m256 acc = _mm256_setzero_ps();
    for (int64_t i = 0; i < n / ENG_QK4_NL; i++) { /* hot loop */
        __m256i x = _mm256_shuffle_epi8(tbl, nibbles32(w[i].qs));
        __m256i p = dot_s8(x, _mm256_loadu_si256((const __m256i *)a[i].qs));
        acc =
            _mm256_fmadd_ps(_mm256_set1_ps(h2f(w[i].d) * h2f(a[i].d)), _mm256_cvtepi32_ps(p), acc);
    }
    *s = hsum_ps(acc);
}

/* ---- k-quants × Q8_K ---- */

/* The 8 six-bit scales (bytes 0..7) and mins (bytes 8..15) of a q4_k / q5_k block. */

/* Shuffle indices that broadcast 16-bit element j of each 128-bit half to the whole half
 * (k4_bcast), and element 2m to the low half, 2m+1 to the high half (pair_bcast). */
#define W2(x) (char)(2 * (x)), (char)(2 * (x) + 1)
#define W8(x) W2(x), W2(x), W2(x), W2(x), W2(x), W2(x), W2(x), W2(x)
static const char k4_bcast_idx[8][32] = {
    {W8(0), W8(0)}, {W8(1), W8(1)}, {W8(2), W8(2)}, {W8(3), W8(3)},
    {W8(4), W8(4)}, {W8(5), W8(5)}, {W8(6), W8(6)}, {W8(7), W8(7)},
};
static const char pair_bcast_idx[4][32] = {
    {W8(0), W8(1)}, {W8(2), W8(3)}, {W8(4), W8(5)}, {W8(6), W8(7)}};
#undef W8
#undef W2

static inline __m256i k4_bcast(__m256i sc16, int j) {
    return _mm256_shuffle_epi8(sc16, _mm256_loadu_si256((const __m256i *)k4_bcast_idx[j]));
}

/* q4_k or q5_k (q5) row · NC Q8_K rows: scales, minimums and codes (q5_k: fifth bits ored in)
 * unpacked once for all columns; each column's arithmetic is the same sequence whatever NC is
 * (nc = 1 is the plain dot product), so batched decode gives every sequence exactly its
 * one-at-a-time result. */
static inline __attribute__((always_inline)) void k45_cols(const int NC, const bool q5, int64_t n,
                                                           float *s, size_t s_stride,
                                                           const void *vw, const uint8_t *a0,
                                                           size_t a_stride) {
    const size_t bb = q5 ? sizeof(struct eng_block_q5_k) : sizeof(struct eng_block_q4_k);
    const __m256i m4 = _mm256_set1_epi8(0x0F), b4 = _mm256_set1_epi8(0x10);
    __m256 acc[4];
    __m128 accm[4];
#pragma GCC unroll 4
    for (int c = 0; c < NC; c++) acc[c] = _mm256_setzero_ps(), accm[c] = _mm_setzero_ps();
    for (int64_t i = 0; i < n / ENG_QK_K; i++) { /* hot loop */
        const uint8_t *blk = (const uint8_t *)vw + (size_t)i * bb;
        const struct eng_block_q4_k *w4 = (const struct eng_block_q4_k *)blk;
        const struct eng_block_q5_k *w5 = (const struct eng_block_q5_k *)blk;
        prefetch_ahead(blk, (int)bb, NC);
        const __m128i u = k4_unpack_v(q5 ? w5->scales : w4->scales);
        const __m256i sc16 = _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(u));
        const __m128 dwm = k4_dd(q5 ? &w5->d : &w4->d); /* d, dmin */
        __m256i sumi[4];
#pragma GCC unroll 4
        for (int c = 0; c < NC; c++) sumi[c] = _mm256_setzero_si256();
        const uint8_t *q = q5 ? w5->qs : w4->qs;
        __m256i hb = q5 ? _mm256_loadu_si256((const __m256i *)w5->qh) : _mm256_setzero_si256();
        for (int j = 0; j < 4; j++, q += 32) {
            __m256i qb = _mm256_loadu_si256((const __m256i *)q);
            __m256i ql = _mm256_and_si256(qb, m4);
            __m256i qh = _mm256_and_si256(_mm256_srli_epi16(qb, 4), m4);
            if (q5) { /* 5th bits of sub-blocks 2j and 2j+1: bits 0 and 1 of hb >> 2j */
                ql = _mm256_or_si256(ql, _mm256_and_si256(_mm256_slli_epi16(hb, 4), b4));
                qh = _mm256_or_si256(qh, _mm256_and_si256(_mm256_slli_epi16(hb, 3), b4));
                hb = _mm256_srli_epi16(hb, 2);
            }
            __m256i bl = k4_bcast(sc16, 2 * j), bh = k4_bcast(sc16, 2 * j + 1);
#pragma GCC unroll 4
            for (int c = 0; c < NC; c++) {
                const int8_t *y =
                    ((const struct eng_block_q8_k *)(a0 + (size_t)c * a_stride))[i].qs + 64 * j;
                __m256i pl = _mm256_maddubs_epi16(ql, _mm256_loadu_si256((const __m256i *)y));
                __m256i ph =
                    _mm256_maddubs_epi16(qh, _mm256_loadu_si256((const __m256i *)(y + 32)));
                sumi[c] = _mm256_add_epi32(sumi[c], _mm256_add_epi32(_mm256_madd_epi16(pl, bl),
                                                                     _mm256_madd_epi16(ph, bh)));
            }
        }
#pragma GCC unroll 4
        for (int c = 0; c < NC; c++) {
            const struct eng_block_q8_k *a =
                (const struct eng_block_q8_k *)(a0 + (size_t)c * a_stride) + i;
            const __m128 dd = _mm_mul_ps(dwm, _mm_set1_ps(a->d));
            accm[c] = k4_mins_acc(accm[c], u, dd, a->bsums);
            acc[c] =
                _mm256_fmadd_ps(_mm256_broadcastss_ps(dd), _mm256_cvtepi32_ps(sumi[c]), acc[c]);
        }
    }
#pragma GCC unroll 4
    for (int c = 0; c < NC; c++) {
        s[(size_t)c * s_stride] = hsum_ps(acc[c]) - hsum4_ps(accm[c]);
    }
}
#define Q4_K_COLS(NC, ...) k45_cols(NC, false, __VA_ARGS__)
#define Q5_K_COLS(NC, ...) k45_cols(NC, true, __VA_ARGS__)
ENG_COLS_ENTRY_POINTS(q4_k_avx2, Q4_K_COLS)
ENG_COLS_ENTRY_POINTS(q5_k_avx2, Q5_K_COLS)

/* Σ_g scales[g] * bsums[g] over the 16 groups (scales as 16 int16). */
static inline int bsum_dot(__m256i scales16, const int16_t *bsums) {
    return hsum_epi32(_mm256_madd_epi16(scales16, _mm256_loadu_si256((const __m256i *)bsums)));
}

/* q6_k row · NC Q8_K rows: the six-bit values and scale vectors built once for all columns;
 * each column's arithmetic is the same sequence whatever NC is (nc = 1 is the plain dot). */
static inline __attribute__((always_inline)) void q6_k_cols(const int NC, int64_t n, float *s,
                                                            size_t s_stride,
                                                            const struct eng_block_q6_k *w,
                                                            const uint8_t *a0, size_t a_stride) {
    const __m256i m4 = _mm256_set1_epi8(0x0F), m3 = _mm256_set1_epi8(0x03);
    const __m256i m30 = _mm256_set1_epi8(0x30);
    float sum[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    for (int64_t i = 0; i < n / ENG_QK_K; i++) { /* hot loop */
        prefetch_ahead(w + i, sizeof(*w), NC);
        const int8_t *sc = w[i].scales;
        const __m256i sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)sc));
        const uint8_t *ql = w[i].ql, *qh = w[i].qh;
        __m256i sumi[4];
#pragma GCC unroll 4
        for (int c = 0; c < NC; c++) sumi[c] = _mm256_setzero_si256();
        for (int half = 0; half < 2; half++, ql += 64, qh += 32, sc += 8) {
            __m256i l0 = _mm256_loadu_si256((const __m256i *)ql);
            __m256i l1 = _mm256_loadu_si256((const __m256i *)(ql + 32));
            __m256i h = _mm256_loadu_si256((const __m256i *)qh);
            __m256i q[4] = {_mm256_or_si256(_mm256_and_si256(l0, m4),
                                            _mm256_slli_epi16(_mm256_and_si256(h, m3), 4)),
                            _mm256_or_si256(_mm256_and_si256(l1, m4),
                                            _mm256_and_si256(_mm256_slli_epi16(h, 2), m30)),
                            _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4),
                                            _mm256_and_si256(h, m30)),
                            _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4),
                                            _mm256_and_si256(_mm256_srli_epi16(h, 2), m30))};
            __m256i s8 = _mm256_broadcastsi128_si256(
                _mm_cvtepi8_epi16(_mm_loadl_epi64((const __m128i *)sc)));
            __m256i sv[4];
#pragma GCC unroll 4
            for (int k = 0; k < 4; k++)
                sv[k] =
                    _mm256_shuffle_epi8(s8, _mm256_loadu_si256((const __m256i *)pair_bcast_idx[k]));
#pragma GCC unroll 4
            for (int c = 0; c < NC; c++) {
                const int8_t *y =
                    ((const struct eng_block_q8_k *)(a0 + (size_t)c * a_stride))[i].qs + 128 * half;
                __m256i p[4];
#pragma GCC unroll 4
                for (int k = 0; k < 4; k++)
                    p[k] = _mm256_madd_epi16(
                        _mm256_maddubs_epi16(q[k],
                                             _mm256_loadu_si256((const __m256i *)(y + 32 * k))),
                        sv[k]);
                sumi[c] = _mm256_add_epi32(sumi[c], _mm256_add_epi32(_mm256_add_epi32(p[0], p[1]),
                                                                     _mm256_add_epi32(p[2], p[3])));
            }
        }
        const float dw = h2f(w[i].d);
#pragma GCC unroll 4
        for (int c = 0; c < NC; c++) {
            const struct eng_block_q8_k *a =
                (const struct eng_block_q8_k *)(a0 + (size_t)c * a_stride) + i;
            /* values are stored +32: subtract 32 * Σ sc*bsum */
            int isum = hsum_epi32(sumi[c]) - 32 * bsum_dot(sc16, a->bsums);
            sum[c] += a->d * dw * (float)isum;
        }
    }
#pragma GCC unroll 4
    for (int c = 0; c < NC; c++) s[(size_t)c * s_stride] = sum[c];
}

ENG_COLS_ENTRY_POINTS(q6_k_avx2, q6_k_cols)

static void q3_k_vec_dot_avx2(int64_t n, float *s, const void *vw, const void *va) {
    const struct eng_block_q3_k *w = vw;
    const struct eng_block_q8_k *a = va;
    const __m256i m3 = _mm256_set1_epi8(0x03), b2 = _mm256_set1_epi8(0x04);
    float sum = 0.0f;
    for (int64_t i = 0; i < n / ENG_QK_K; i++) { /* hot loop */
        const __m128i scv = q3k_scales_v(w[i].scales);
        __m256i sc16 = _mm256_cvtepi8_epi16(scv);
        /* unsigned q' = 2 low bits + 4 * high bit = value + 4 */
        int corr = bsum_dot(sc16, a[i].bsums);
        __m256i hm = _mm256_loadu_si256((const __m256i *)w[i].hmask);
        const uint8_t *q = w[i].qs;
        const int8_t *y = a[i].qs;
        __m256i sumi = _mm256_setzero_si256();
        for (int half = 0; half < 2; half++, q += 32) {
            __m256i qb = _mm256_loadu_si256((const __m256i *)q);
            /* this half's eight scales as 16-bit words in both 128-bit lanes */
            const __m256i s8 =
                _mm256_broadcastsi128_si256(_mm_cvtepi8_epi16(half ? _mm_srli_si128(scv, 8) : scv));
            for (int k = 0; k < 4; k++, y += 32) {
                __m256i lo = _mm256_and_si256(_mm256_srli_epi16(qb, 2 * k), m3);
                /* high bit (bit 4*half + k of hmask) moved to bit 2 */
                __m256i hi = _mm256_and_si256(_mm256_slli_epi16(hm, 2), b2);
                hm = _mm256_srli_epi16(hm, 1);
                __m256i p = _mm256_maddubs_epi16(_mm256_or_si256(lo, hi),
                                                 _mm256_loadu_si256((const __m256i *)y));
                const __m256i sv =
                    _mm256_shuffle_epi8(s8, _mm256_loadu_si256((const __m256i *)pair_bcast_idx[k]));
                sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(p, sv));
            }
        }
        int isum = hsum_epi32(sumi) - 4 * corr;
        sum += a[i].d * h2f(w[i].d) * (float)isum;
    }
    *s = sum;
}

static void q2_k_vec_dot_avx2(int64_t n, float *s, const void *vw, const void *va) {
    const struct eng_block_q2_k *w = vw;
    const struct eng_block_q8_k *a = va;
    const __m256i m3 = _mm256_set1_epi8(0x03);
    float sum = 0.0f;
    for (int64_t i = 0; i < n / ENG_QK_K; i++) { /* hot loop */
        __m128i sc8 = _mm_loadu_si128((const __m128i *)w[i].scales);
        __m256i mins16 =
            _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(sc8, 4), _mm_set1_epi8(0x0F)));
        int msum = bsum_dot(mins16, a[i].bsums);
        const __m128i scl = _mm_and_si128(sc8, _mm_set1_epi8(0x0F)); /* the 16 scales */
        const uint8_t *q = w[i].qs;
        const int8_t *y = a[i].qs;
        __m256i sumi = _mm256_setzero_si256();
        for (int half = 0; half < 2; half++, q += 32) {
            __m256i qb = _mm256_loadu_si256((const __m256i *)q);
            /* this half's eight scales as 16-bit words in both 128-bit lanes */
            const __m256i s8 =
                _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(half ? _mm_srli_si128(scl, 8) : scl));
            for (int k = 0; k < 4; k++, y += 32) {
                __m256i v = _mm256_and_si256(_mm256_srli_epi16(qb, 2 * k), m3);
                __m256i p = _mm256_maddubs_epi16(v, _mm256_loadu_si256((const __m256i *)y));
                const __m256i sv =
                    _mm256_shuffle_epi8(s8, _mm256_loadu_si256((const __m256i *)pair_bcast_idx[k]));
                sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(p, sv));
            }
        }
        sum += a[i].d * (h2f(w[i].d) * (float)hsum_epi32(sumi) - h2f(w[i].dmin) * (float)msum);
    }
    *s = sum;
}

static void iq4_xs_vec_dot_avx2(int64_t n, float *s, const void *vw, const void *va) {
    const struct eng_block_iq4_xs *w = vw;
    const struct eng_block_q8_k *a = va;
    const __m256i tbl = iq4_table();
    float sum = 0.0f;
    for (int64_t i = 0; i < n / ENG_QK_K; i++) { /* hot loop */
        const uint8_t *qs = w[i].qs;
        const int8_t *y = a[i].qs;
        __m256i sumi = _mm256_setzero_si256();
        for (int ib = 0; ib < 8; ib++, qs += 16, y += 32) {
            int ls = (((w[i].scales_l[ib / 2] >> (4 * (ib % 2))) & 0xF) |
                      (((w[i].scales_h >> (2 * ib)) & 3) << 4)) -
                     32;
            __m256i x = _mm256_shuffle_epi8(tbl, nibbles32(qs));
            __m256i ax = _mm256_sign_epi8(x, x);
            __m256i sy = _mm256_sign_epi8(_mm256_loadu_si256((const __m256i *)y), x);
            __m256i p = _mm256_maddubs_epi16(ax, sy);
            sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(p, _mm256_set1_epi16((short)ls)));
        }
        sum += a[i].d * h2f(w[i].d) * (float)hsum_epi32(sumi);
    }
    *s = sum;
}

/* ---- installer ---- */

/* ---- prefill repacking (repack.c's twins, bit-identical) ---- */

static void q4_0_repack_avx2(const void *vw, int8_t *q, float *sc, float *m, int64_t n) {
    const struct eng_block_q4_0 *x = vw;
    const __m256i eight = _mm256_set1_epi8(8);
    for (int64_t i = 0; i < n / ENG_QK4_0; i++, q += 32, sc += 2) {
        sc[0] = sc[1] = h2f(x[i].d);
        _mm256_storeu_si256((__m256i *)q, _mm256_sub_epi8(nibbles32(x[i].qs), eight));
    }
}

static void q4_k_repack_avx2(const void *vw, int8_t *q, float *sc, float *m, int64_t n) {
    const struct eng_block_q4_k *x = vw;
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    for (int64_t i = 0; i < n / ENG_QK_K; i++) {
        uint32_t u[4];
        k4_unpack(x[i].scales, u);
        const uint8_t *s6 = (const uint8_t *)u, *m6 = s6 + 8;
        float d = h2f(x[i].d), dmin = h2f(x[i].dmin);
        for (int j = 0; j < 8; j++) {
            sc[2 * j] = sc[2 * j + 1] = d * s6[j];
            m[2 * j] = m[2 * j + 1] = -(dmin * m6[j]);
        }
        for (int j = 0; j < 4; j++) {
            __m256i b = _mm256_loadu_si256((const __m256i *)(x[i].qs + 32 * j));
            _mm256_storeu_si256((__m256i *)(q + 64 * j), _mm256_and_si256(b, m4));
            _mm256_storeu_si256((__m256i *)(q + 64 * j + 32),
                                _mm256_and_si256(_mm256_srli_epi16(b, 4), m4));
        }
        q += ENG_QK_K, sc += 16, m += 16;
    }
}

static void q6_k_repack_avx2(const void *vw, int8_t *q, float *sc, float *m, int64_t n) {
    const struct eng_block_q6_k *x = vw;
    const __m256i m4 = _mm256_set1_epi8(0x0F), m3 = _mm256_set1_epi8(0x03);
    const __m256i m30 = _mm256_set1_epi8(0x30), b32 = _mm256_set1_epi8(32);
    for (int64_t i = 0; i < n / ENG_QK_K; i++) {
        float d = h2f(x[i].d);
        for (int k = 0; k < 16; k++) sc[k] = d * x[i].scales[k];
        const uint8_t *ql = x[i].ql, *qh = x[i].qh;
        for (int half = 0; half < 2; half++, ql += 64, qh += 32, q += 128) {
            __m256i l0 = _mm256_loadu_si256((const __m256i *)ql);
            __m256i l1 = _mm256_loadu_si256((const __m256i *)(ql + 32));
            __m256i h = _mm256_loadu_si256((const __m256i *)qh);
            __m256i q1 = _mm256_or_si256(_mm256_and_si256(l0, m4),
                                         _mm256_slli_epi16(_mm256_and_si256(h, m3), 4));
            __m256i q2 = _mm256_or_si256(_mm256_and_si256(l1, m4),
                                         _mm256_and_si256(_mm256_slli_epi16(h, 2), m30));
            __m256i q3 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4),
                                         _mm256_and_si256(h, m30));
            __m256i q4 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4),
                                         _mm256_and_si256(_mm256_srli_epi16(h, 2), m30));
            _mm256_storeu_si256((__m256i *)q, _mm256_sub_epi8(q1, b32));
            _mm256_storeu_si256((__m256i *)(q + 32), _mm256_sub_epi8(q2, b32));
            _mm256_storeu_si256((__m256i *)(q + 64), _mm256_sub_epi8(q3, b32));
            _mm256_storeu_si256((__m256i *)(q + 96), _mm256_sub_epi8(q4, b32));
        }
        sc += 16;
    }
}

/* Row ranges in one call (engine.h vec_dot_rows). Not iq4_xs: inlined into the loop it measured
 * slower than called per row (768-wide rows in cache: 17.8 against 14.4 ns per 256 weights). */
ENG_ROWS_ENTRY_POINT(f32_vec_dot_avx2)
ENG_ROWS_ENTRY_POINT(bf16_vec_dot_avx2)
ENG_ROWS_ENTRY_POINT(q4_1_vec_dot_avx2)
ENG_ROWS_ENTRY_POINT(q5_0_vec_dot_avx2)
ENG_ROWS_ENTRY_POINT(q5_1_vec_dot_avx2)
ENG_ROWS_ENTRY_POINT(iq4_nl_vec_dot_avx2)
ENG_ROWS_ENTRY_POINT(q2_k_vec_dot_avx2)
ENG_ROWS_ENTRY_POINT(q3_k_vec_dot_avx2)

void eng_simd_install_avx2(struct eng_type_traits *t) {
    t[ENG_TYPE_F32].vec_dot = f32_vec_dot_avx2;
    t[ENG_TYPE_F32].vec_dot_rows = f32_vec_dot_avx2_rows;
    t[ENG_TYPE_F16].vec_dot = f16_avx2_vec_dot;
    t[ENG_TYPE_F16].vec_dot_rows = f16_avx2_vec_dot_rows;
    t[ENG_TYPE_F16].vec_dot_cols = f16_avx2_vec_dot_cols;
    t[ENG_TYPE_F16].to_float = f16_to_float_avx2;
    t[ENG_TYPE_F16].from_float = f16_from_float_avx2;
    t[ENG_TYPE_BF16].vec_dot = bf16_vec_dot_avx2;
    t[ENG_TYPE_BF16].vec_dot_rows = bf16_vec_dot_avx2_rows;
    t[ENG_TYPE_BF16].to_float = bf16_to_float_avx2;
    t[ENG_TYPE_Q8_0].from_float = q8_0_from_float_avx2;
    t[ENG_TYPE_Q8_1].from_float = q8_1_from_float_avx2;
    t[ENG_TYPE_Q8_K].from_float = q8_k_from_float_avx2;
    t[ENG_TYPE_Q8_0].vec_dot = q8_0_avx2_vec_dot;
    t[ENG_TYPE_Q8_0].vec_dot_cols = q8_0_avx2_vec_dot_cols;
    t[ENG_TYPE_Q8_0].vec_dot_rows = q8_0_avx2_vec_dot_rows;
    t[ENG_TYPE_Q4_0].vec_dot = q4_0_q8x_avx2_vec_dot;
    t[ENG_TYPE_Q4_0].vec_dot_rows = q4_0_q8x_avx2_vec_dot_rows;
    t[ENG_TYPE_Q4_0].vec_dot_cols = q4_0_q8x_avx2_vec_dot_cols;
    t[ENG_TYPE_Q4_0].vec_dot_type = ENG_TYPE_Q8_0X;
    t[ENG_TYPE_Q8_0X].from_float = q8_0x_from_float_avx2;
    t[ENG_TYPE_Q8_0X16].from_float = q8_0x16_from_float_avx2;
    /* Where prefill and batched decode switch from vec_dot (and the column kernels) to
     * repacking + the tile kernel, from edgellm bench measurements (weights streamed from
     * memory, so repacking costs more than the in-cache figures of BENCHMARKS.md Kernels
     * suggest). q4_0: with its column kernel the tile path loses at every size measured (L110M,
     * EDGELLM_SIMD=avx2: 12 sequences 460 vs 653-675 tok/s, 16 sequences 504-532 vs 734-776,
     * pp64 759-842 vs 905-1040, pp256 865-885 vs 963-967; L1B pp64 89-91 vs 104-108). q4_k
     * and q6_k: the column kernels win at every size measured (q4_k pp64 83 vs 63 tok/s, 16
     * sequences 66 vs 43; q6_k pp64 68 vs 59, 16 sequences 53 vs 46). q8_0: the tile kernel
     * wins prefill (pp64 69 vs 56), the columns 16 sequences (52 vs 46). q5_k (no repacker
     * here, so the tile path repacks in scalar code) with its column kernel: L110M pp64 780 vs
     * 507 tok/s, pp256 663 vs 454, 32 sequences 697-712 vs 309-336. */
    t[ENG_TYPE_Q4_0].repack = q4_0_repack_avx2;
    t[ENG_TYPE_Q4_K].repack = q4_k_repack_avx2;
    t[ENG_TYPE_Q6_K].repack = q6_k_repack_avx2;
    t[ENG_TYPE_Q4_0].tile_min_b = t[ENG_TYPE_Q4_K].tile_min_b = t[ENG_TYPE_Q6_K].tile_min_b = 1
                                                                                              << 30;
    t[ENG_TYPE_Q8_0].tile_min_b = 32;
    t[ENG_TYPE_Q5_K].tile_min_b = 1 << 30;
    t[ENG_TYPE_Q4_1].vec_dot = q4_1_vec_dot_avx2;
    t[ENG_TYPE_Q4_1].vec_dot_rows = q4_1_vec_dot_avx2_rows;
    t[ENG_TYPE_Q5_0].vec_dot = q5_0_vec_dot_avx2;
    t[ENG_TYPE_Q5_0].vec_dot_rows = q5_0_vec_dot_avx2_rows;
    t[ENG_TYPE_Q5_1].vec_dot = q5_1_vec_dot_avx2;
    t[ENG_TYPE_Q5_1].vec_dot_rows = q5_1_vec_dot_avx2_rows;
    t[ENG_TYPE_IQ4_NL].vec_dot = iq4_nl_vec_dot_avx2;
    t[ENG_TYPE_IQ4_NL].vec_dot_rows = iq4_nl_vec_dot_avx2_rows;
    t[ENG_TYPE_Q2_K].vec_dot = q2_k_vec_dot_avx2;
    t[ENG_TYPE_Q2_K].vec_dot_rows = q2_k_vec_dot_avx2_rows;
    t[ENG_TYPE_Q3_K].vec_dot = q3_k_vec_dot_avx2;
    t[ENG_TYPE_Q3_K].vec_dot_rows = q3_k_vec_dot_avx2_rows;
    t[ENG_TYPE_Q4_K].vec_dot = q4_k_avx2_vec_dot;
    t[ENG_TYPE_Q4_K].vec_dot_cols = q4_k_avx2_vec_dot_cols;
    t[ENG_TYPE_Q4_K].vec_dot_rows = q4_k_avx2_vec_dot_rows;
    t[ENG_TYPE_Q5_K].vec_dot = q5_k_avx2_vec_dot;
    t[ENG_TYPE_Q5_K].vec_dot_rows = q5_k_avx2_vec_dot_rows;
    t[ENG_TYPE_Q5_K].vec_dot_cols = q5_k_avx2_vec_dot_cols;
    t[ENG_TYPE_Q6_K].vec_dot = q6_k_avx2_vec_dot;
    t[ENG_TYPE_Q6_K].vec_dot_cols = q6_k_avx2_vec_dot_cols;
    t[ENG_TYPE_Q6_K].vec_dot_rows = q6_k_avx2_vec_dot_rows;
    t[ENG_TYPE_IQ4_XS].vec_dot = iq4_xs_vec_dot_avx2;
}
