/*
 * quants_avx512_x86.c — AVX-512 (F, BW, VL, VNNI) kernels, installed on top of the AVX2 level
 * where they measure faster (compiled with -mavx512f -mavx512bw -mavx512vl -mavx512vnni; used
 * only when the CPU and OS support them, see eng_simd_supported).
 *
 * q4_0 · Q8_0X: four blocks per 512-bit register, and vpdpbusd multiplies the unsigned nibbles
 * with the signed activation codes and accumulates in 32 bits in one instruction (AVX2 needs
 * maddubs, madd and an add). Equal to the reference up to the order of float additions.
 */
#include "quants_x86.h"

/* The 16 nibble-pair bytes of four consecutive q4_0 blocks in one register. */
static inline __m512i qs4(const struct eng_block_q4_0 *w) {
    __m512i z = _mm512_castsi128_si512(_mm_loadu_si128((const __m128i *)w[0].qs));
    z = _mm512_inserti32x4(z, _mm_loadu_si128((const __m128i *)w[1].qs), 1);
    z = _mm512_inserti32x4(z, _mm_loadu_si128((const __m128i *)w[2].qs), 2);
    return _mm512_inserti32x4(z, _mm_loadu_si128((const __m128i *)w[3].qs), 3);
}

/* q4_0 row · NC Q8_0X rows (Q8_0X layout: see types.c; per group of r <= 8 blocks d[r], c[r],
 * lo[r][16], hi[r][16]). The weight nibbles are unpacked once for all columns; each column's
 * arithmetic is the same sequence whatever NC is, so one token's result does not depend on how
 * many were decoded together (nc = 1 is the plain dot product). */
static inline __attribute__((always_inline)) void q4_0_cols(const int NC, int64_t n, float *s,
                                                            size_t s_stride,
                                                            const struct eng_block_q4_0 *w,
                                                            const uint8_t *a, size_t a_stride) {
    const int64_t nb = n / ENG_QK4_0, nb8 = nb / 8 * 8;
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    const __m512i lanes0 = _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3);
    const __m512i lanes1 = _mm512_setr_epi32(4, 4, 4, 4, 5, 5, 5, 5, 6, 6, 6, 6, 7, 7, 7, 7);
    __m512 acc0[4], acc1[4];
    __m256 accc[4];
#pragma GCC unroll 4
    for (int c = 0; c < NC; c++)
        acc0[c] = acc1[c] = _mm512_setzero_ps(), accc[c] = _mm256_setzero_ps();
    for (int64_t g = 0; g < nb8; g += 8) { /* hot loop */
        const __m256 dw = _mm256_cvtph_ps(fp16x8(&w[g].d, sizeof(*w)));
        const __m512i q0 = qs4(w + g), q1 = qs4(w + g + 4);
        const __m512i l0 = _mm512_and_si512(q0, m4),
                      h0 = _mm512_and_si512(_mm512_srli_epi16(q0, 4), m4);
        const __m512i l1 = _mm512_and_si512(q1, m4),
                      h1 = _mm512_and_si512(_mm512_srli_epi16(q1, 4), m4);
#pragma GCC unroll 4
        for (int c = 0; c < NC; c++) {
            const uint8_t *ag = a + (size_t)c * a_stride + 40 * g;
            const float *ad = (const float *)ag, *ac = ad + 8;
            const int8_t *lo = (const int8_t *)(ac + 8), *hi = lo + 128;
            const __m512 d = _mm512_castps256_ps512(_mm256_mul_ps(dw, _mm256_loadu_ps(ad)));
            accc[c] = _mm256_fmadd_ps(dw, _mm256_loadu_ps(ac), accc[c]);
            __m512i p = _mm512_dpbusd_epi32(_mm512_setzero_si512(), l0, _mm512_loadu_si512(lo));
            p = _mm512_dpbusd_epi32(p, h0, _mm512_loadu_si512(hi));
            acc0[c] =
                _mm512_fmadd_ps(_mm512_cvtepi32_ps(p), _mm512_permutexvar_ps(lanes0, d), acc0[c]);
            p = _mm512_dpbusd_epi32(_mm512_setzero_si512(), l1, _mm512_loadu_si512(lo + 64));
            p = _mm512_dpbusd_epi32(p, h1, _mm512_loadu_si512(hi + 64));
            acc1[c] =
                _mm512_fmadd_ps(_mm512_cvtepi32_ps(p), _mm512_permutexvar_ps(lanes1, d), acc1[c]);
        }
    }
#pragma GCC unroll 4
    for (int c = 0; c < NC; c++) {
        __m128 c4 = _mm_add_ps(_mm256_castps256_ps128(accc[c]), _mm256_extractf128_ps(accc[c], 1));
        c4 = _mm_add_ps(c4, _mm_movehl_ps(c4, c4));
        c4 = _mm_add_ss(c4, _mm_movehdup_ps(c4));
        float sum =
            _mm512_reduce_add_ps(_mm512_add_ps(acc0[c], acc1[c])) - 8.0f * _mm_cvtss_f32(c4);
        if (nb8 < nb) { /* the last group has r < 8 blocks */
            int r = (int)(nb - nb8);
            const float *ad = (const float *)(a + (size_t)c * a_stride + 40 * nb8);
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

static void q4_0_vec_dot_q8x_avx512(int64_t n, float *s, const void *vw, const void *va) {
    q4_0_cols(1, n, s, 0, vw, va, 0);
}

static void q4_0_vec_dot_cols_q8x_avx512(int64_t n, int nc, float *s, size_t s_stride,
                                         const void *vw, const void *va, size_t a_stride) {
    switch (nc) {
    case 1:
        q4_0_cols(1, n, s, s_stride, vw, va, a_stride);
        return;
    case 2:
        q4_0_cols(2, n, s, s_stride, vw, va, a_stride);
        return;
    case 3:
        q4_0_cols(3, n, s, s_stride, vw, va, a_stride);
        return;
    default:
        q4_0_cols(4, n, s, s_stride, vw, va, a_stride);
    }
}

void eng_simd_install_avx512(struct eng_type_traits *t) {
    if (t[ENG_TYPE_Q4_0].vec_dot_type == ENG_TYPE_Q8_0X) /* the AVX2 level's activation layout */
    {
        t[ENG_TYPE_Q4_0].vec_dot = q4_0_vec_dot_q8x_avx512;
        t[ENG_TYPE_Q4_0].vec_dot_cols = q4_0_vec_dot_cols_q8x_avx512;
        /* Four columns per weight load serve prefill as well as repacking for the tile kernel
         * does (L1B pp64 100-103 against 85 tok/s, pp256 81-91 against 91) and batched decode
         * better (84 against 61 tok/s at 16 sequences), so q4_0 never takes the tile path here. */
        t[ENG_TYPE_Q4_0].tile_min_b = 1 << 30;
    }
    /* This level's tile kernel is faster than AVX2's: for q6_k and q8_0 it now wins from about
     * 16 rows (q6_k pp64 98 vs 72 tok/s, 16 sequences 63 vs 64; q8_0 pp64 88 vs 45, 16
     * sequences 67 vs 48). q4_k's column kernel still wins everywhere (pp64 95 vs 89). */
    t[ENG_TYPE_Q6_K].tile_min_b = t[ENG_TYPE_Q8_0].tile_min_b = 12;
}
