/*
 * quants_x86.h — engine-internal helpers shared by the x86-64 kernel files (quants_x86.c,
 * quants_avx512_x86.c, gemm_*_x86.c, attn_x86.c): the lane sum of a register, fp16 scale loads and
 * the q4_k / q5_k scale unpacking. Only for files compiled with at least AVX2/F16C enabled.
 */
#ifndef EDGELLM_ENGINE_QUANTS_X86_H
#define EDGELLM_ENGINE_QUANTS_X86_H

#include "quants.h"

#include <immintrin.h>
#include <string.h>

/* Software prefetch of the weight stream, some KiB ahead of the bytes [p, p + n) a kernel is
 * about to read: the hardware prefetchers stop at 4 KiB page boundaries, so a row stream stalls
 * at every page start. The non-temporal hint (the weights are read once per token, so they need
 * not displace the KV cache and activations from L2/L3) beat prefetcht0 (L1B tg32 2 threads,
 * four rounds: q4_0 85-106 against 78-88 tok/s, Q4_K_M 74-92 against 64-85). With the q4_0x16
 * kernels, prefetcht0 for every weight stream against it (L110M Q4_0 tg128, six alternated
 * rounds): four sequences 0.999 (faster in 3 of 6), one 0.985 (2 of 6). Every line of the
 * stream needs its own prefetch: with four columns, only the first lines of each 4 KiB page
 * ahead (for the hardware prefetcher to follow) came out 0.89 (two lines) and 0.83 (eight) of
 * this, and every other line (for the adjacent-line prefetcher to fetch its pair) 0.73 at 4 KiB
 * ahead and 0.71 at 8 (L110M Q4_0 tg128 four sequences, -r 10, ten rounds, builds in turn).
 * Nor the L2 hint: prefetcht2 for the column kernels' stream 0.983 at 4 KiB ahead and 0.956 at
 * 12, where a second copy of the build before came out 0.992 (the same runs).
 *
 * The distance depends on how fast the kernel consumes the stream. One activation row (decode of
 * one sequence: NC == 1) reads at the memory's rate, and since the model mapping gets 2 MiB
 * pages (gguf.c) 16 KiB ahead keeps more of it in flight than the 4 KiB chosen while the weights
 * sat in 4 KiB pages: L1B q4_0 one sequence 2 threads, builds alternated, 4 / 12 / 16 / 24 / 32
 * KiB: 65.5 / 71.0 / 75.3 / 75.5 tok/s (six rounds, 16 faster than 4 in 6 of 6) and 79.6 at 16
 * against 74.0 at 32; q8_0 39.5 -> 48.0, Q4_K_M 49.5 -> 50.6, L110M 638 -> 665. Several
 * columns (batched decode, prefill) spend more time per byte, and there 16 KiB ahead did not
 * pay: 4 / 8 / 16 KiB for the column kernels alone, L110M 4 sequences 1180 / 1136 / 1103 tok/s
 * (eight rounds), L1B 4 sequences 188.6 / 187.5 / 179.3 (six): they keep 4 KiB
 * (ENG_PF_DIST_COLS). Measured again with the q4_0x16 kernels (L110M 4 sequences, edgellm
 * bench -s 4, builds alternated, ten rounds each, against 4 KiB): 2 KiB 0.972 (1 of 10
 * faster), 8 KiB 1.010 (6 of 10), 16 KiB 0.949 (0 of 10). The f16 kernels keep 4 KiB for one row as
 * well (ENG_PF_DIST_F16): 16 KiB went both ways there (L1B f16 15.1 -> 15.6 tok/s, 6 of 8 rounds
 * faster; L110M f16 219.1 -> 198.4, 2 of 8), so their distance stays as it was measured before. All
 * three are build-time overridable (-DENG_PF_DIST=, -DENG_PF_DIST_COLS=, -DENG_PF_DIST_F16=,
 * -DENG_PF_INSN=) for such measurements. Prefetching past a tensor's end is harmless (no fault). */
#ifndef ENG_PF_DIST
#define ENG_PF_DIST 16384
#endif
#ifndef ENG_PF_DIST_COLS
#define ENG_PF_DIST_COLS 4096
#endif
#ifndef ENG_PF_DIST_F16
#define ENG_PF_DIST_F16 4096
#endif
#ifndef ENG_PF_INSN
#define ENG_PF_INSN "prefetchnta"
#endif
static inline __attribute__((always_inline)) void prefetch_at(const void *p, int n, int dist) {
    const char *q = (const char *)p + dist;
    /* an asm statement, not _mm_prefetch: GCC 12's tree DCE deleted the builtin prefetches
     * inside the column-kernel templates */
    for (int k = 0; k < n; k += 64) __asm__ __volatile__(ENG_PF_INSN " %0" : : "m"(q[k]));
}
/* The weight prefetch of a column-kernel template for nc activation rows. */
static inline __attribute__((always_inline)) void prefetch_ahead(const void *p, int n, int nc) {
    prefetch_at(p, n, nc == 1 ? ENG_PF_DIST : ENG_PF_DIST_COLS);
}

/* eng_q3k_scales in vector registers: the 16 signed scales of a q3_k block (bytes 0..15). */
static inline __m128i q3k_scales_v(const uint8_t *packed) {
    const __m128i m4 = _mm_set1_epi8(0x0F);
    const __m128i v = _mm_loadl_epi64((const __m128i *)packed);
    const __m128i lo =
        _mm_unpacklo_epi64(_mm_and_si128(v, m4), _mm_and_si128(_mm_srli_epi16(v, 4), m4));
    uint32_t h32;
    memcpy(&h32, packed + 8, 4);
    /* scale 4q + r: bits 2q, 2q+1 of byte r of the last four bytes */
    const __m128i hi = _mm_and_si128(
        _mm_srlv_epi32(_mm_set1_epi32((int)h32), _mm_setr_epi32(0, 2, 4, 6)), _mm_set1_epi8(3));
    return _mm_sub_epi8(_mm_or_si128(lo, _mm_slli_epi16(hi, 4)), _mm_set1_epi8(32));
}

/* fn_rows: vec_dot_rows from a one-row kernel fn of the same file (quants.h's ENG_ROWS_FN). */
#define ENG_ROWS_ENTRY_POINT(fn) ENG_ROWS_FN(fn, fn##_rows)

/* prefix##_vec_dot, prefix##_vec_dot_rows and prefix##_vec_dot_cols of a column template
 * (quants.h's ENG_COLS_FNS; ENG_COLS2_ENTRY_POINTS: ENG_COLS2_FNS, two columns per pass). */
#define ENG_COLS_ENTRY_POINTS(prefix, tmpl)                                                        \
    ENG_COLS_FNS(prefix##_vec_dot, prefix##_vec_dot_rows, prefix##_vec_dot_cols, tmpl)
#define ENG_COLS2_ENTRY_POINTS(prefix, tmpl)                                                       \
    ENG_COLS2_FNS(prefix##_vec_dot, prefix##_vec_dot_rows, prefix##_vec_dot_cols, tmpl)

/* The same for a template of several types, tmpl(NC, T, n, s, s_stride, w, a, a_stride). */
#define ENG_TYPED_COLS_ENTRY_POINTS(prefix, tmpl, T)                                               \
    static inline __attribute__((always_inline)) void prefix##_cols(                               \
        const int NC, int64_t n, float *s, size_t s_stride, const void *vw, const void *va,        \
        size_t a_stride) {                                                                         \
        tmpl(NC, T, n, s, s_stride, vw, va, a_stride);                                             \
    }                                                                                              \
    ENG_COLS_ENTRY_POINTS(prefix, prefix##_cols)

/* The sum of the four lanes of s, and of the eight lanes of v. */
static inline float hsum4_ps(__m128 s) {
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}
static inline float hsum_ps(__m256 v) {
    return hsum4_ps(_mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1)));
}

static inline float h2f(uint16_t h) {
    return _cvtsh_ss(h);
}

/* Eight fp16 values stride bytes apart (the scales of eight consecutive blocks). */
static inline __m128i fp16x8(const uint16_t *p, size_t stride) {
    const uint8_t *b = (const uint8_t *)p;
#define H(k) (short)*(const uint16_t *)(b + (k)*stride)
    return _mm_setr_epi16(H(0), H(1), H(2), H(3), H(4), H(5), H(6), H(7));
#undef H
}

/* The 8 scales (bytes 0..7) and 8 mins (bytes 8..15) of a q4_k / q5_k block, unpacked from the
 * 12 packed bytes at q in vector registers (k4_unpack's arithmetic on all four words at once).
 * Reads 16 bytes: the 4 past the scales are the block's own next field. */
static inline __m128i k4_unpack_v(const uint8_t *q) {
    __m128i v = _mm_loadu_si128((const __m128i *)q); /* words w0 w1 w2 (w3 unused) */
    __m128i lo = _mm_srlv_epi32(_mm_shuffle_epi32(v, _MM_SHUFFLE(2, 1, 2, 0)),
                                _mm_setr_epi32(0, 0, 0, 4)); /* w0, w2, w1, w2 >> 4 */
    lo = _mm_and_si128(lo, _mm_setr_epi32(0x3f3f3f3f, 0x0f0f0f0f, 0x3f3f3f3f, 0x0f0f0f0f));
    __m128i hi = _mm_srli_epi32(_mm_shuffle_epi32(v, _MM_SHUFFLE(1, 1, 0, 0)), 6);
    hi = _mm_slli_epi32(_mm_and_si128(hi, _mm_setr_epi32(0, 0x03030303, 0, 0x03030303)), 4);
    return _mm_or_si128(lo, hi);
}

/* d and dmin of a q4_k / q5_k block (its two leading fp16 fields) in lanes 0 and 1, converted
 * together. */
_Static_assert(offsetof(struct eng_block_q4_k, dmin) == offsetof(struct eng_block_q4_k, d) + 2 &&
                   offsetof(struct eng_block_q5_k, dmin) == offsetof(struct eng_block_q5_k, d) + 2,
               "d and dmin are adjacent");
static inline __m128 k4_dd(const uint16_t *d) {
    uint32_t both;
    memcpy(&both, d, 4);
    return _mm_cvtph_ps(_mm_cvtsi32_si128((int)both));
}

/* d·a_d and dmin·a_d of a q4_k / q5_k block in lanes 0 and 1. */
static inline __m128 k4_d_dmin(const uint16_t *d, float ad) {
    return _mm_mul_ps(k4_dd(d), _mm_set1_ps(ad));
}

/* accm + dmin·a_d (lane 1 of dd, from k4_d_dmin) × the 4-lane vector of mins[j]·(bsums[2j] +
 * bsums[2j+1]) sums, j = 0..7 (mins as 16 bytes from k4_unpack_v, bytes 8..15): a q4_k / q5_k
 * block's minimum term, summed with hsum4_ps at the end of the row. */
static inline __m128 k4_mins_acc(__m128 accm, __m128i u, __m128 dd, const int16_t *bsums) {
    __m128i mins = _mm_cvtepu8_epi16(_mm_srli_si128(u, 8));
    __m128i pairs = _mm_hadd_epi16(_mm_loadu_si128((const __m128i *)bsums),
                                   _mm_loadu_si128((const __m128i *)(bsums + 8)));
    __m128i prod = _mm_madd_epi16(mins, pairs); /* |pair| <= 2*16*127 fits int16 */
    return _mm_fmadd_ps(_mm_cvtepi32_ps(prod), _mm_permute_ps(dd, 0x55), accm);
}

/* The 8 six-bit scales (bytes 0..7 of out) and 8 six-bit mins (bytes 8..15) of a q4_k / q5_k
 * block's 12 packed scale bytes. */
static inline void k4_unpack(const uint8_t *q, uint32_t out[4]) {
    uint32_t w[3];
    memcpy(w, q, 12);
    out[0] = w[0] & 0x3f3f3f3f;
    out[1] = (w[2] & 0x0f0f0f0f) | (((w[0] >> 6) & 0x03030303) << 4);
    out[2] = w[1] & 0x3f3f3f3f;
    out[3] = ((w[2] >> 4) & 0x0f0f0f0f) | (((w[1] >> 6) & 0x03030303) << 4);
}

/* The eight maxima of m0..m7, in order (totals8's tree with max for add). */
static inline __m256 maxima8(const __m256 m[8]) {
    __m256 h[4];
    for (int k = 0; k < 4; k++)
        h[k] = _mm256_max_ps(_mm256_shuffle_ps(m[2 * k], m[2 * k + 1], 0x88),
                             _mm256_shuffle_ps(m[2 * k], m[2 * k + 1], 0xDD));
    const __m256 a =
        _mm256_max_ps(_mm256_shuffle_ps(h[0], h[1], 0x88), _mm256_shuffle_ps(h[0], h[1], 0xDD));
    const __m256 b =
        _mm256_max_ps(_mm256_shuffle_ps(h[2], h[3], 0x88), _mm256_shuffle_ps(h[2], h[3], 0xDD));
    return _mm256_max_ps(_mm256_permute2f128_ps(a, b, 0x20), _mm256_permute2f128_ps(a, b, 0x31));
}

/* The eight totals of s0..s7, in order. */
static inline __m256i totals8_epi32(const __m256i s[8]) {
    const __m256i a =
        _mm256_hadd_epi32(_mm256_hadd_epi32(s[0], s[1]), _mm256_hadd_epi32(s[2], s[3]));
    const __m256i b =
        _mm256_hadd_epi32(_mm256_hadd_epi32(s[4], s[5]), _mm256_hadd_epi32(s[6], s[7]));
    return _mm256_add_epi32(_mm256_permute2x128_si256(a, b, 0x20),
                            _mm256_permute2x128_si256(a, b, 0x31));
}

/* A Q8_0X group of eight blocks (types.c) from the blocks' absolute maxima m (eight lanes each):
 * the scales amax / 127 (*vd), and the inverse scales, 0 where a block is all zero. */
static inline __m256 q8_0x_scales(const __m256 m[8], __m256 *vd) {
    *vd = _mm256_div_ps(maxima8(m), _mm256_set1_ps(127.0f));
    const __m256 nz = _mm256_cmp_ps(*vd, _mm256_setzero_ps(), _CMP_NEQ_OQ);
    return _mm256_and_ps(_mm256_div_ps(_mm256_set1_ps(1.0f), *vd), nz);
}

/* A full group's scales rounded to fp16 (F16C rounds as eng_fp32_to_fp16) into o.d, and into
 * o.c the eight blocks' d · Σ codes, or for Q8_0X16 -8 · Σ codes as int32 (sums: each block's
 * code sums in eight lanes). */
static inline void q8_0x_put_group(struct eng_q8_0x_group o, __m256 vd, const __m256i sums[8],
                                   bool x16) {
    const __m256 d16 = _mm256_cvtph_ps(_mm256_cvtps_ph(vd, _MM_FROUND_TO_NEAREST_INT));
    _mm256_storeu_ps(o.d, d16);
    const __m256i tot = totals8_epi32(sums);
    if (x16)
        _mm256_storeu_si256((__m256i *)o.c, _mm256_mullo_epi32(tot, _mm256_set1_epi32(-8)));
    else
        _mm256_storeu_ps(o.c, _mm256_mul_ps(d16, _mm256_cvtepi32_ps(tot)));
}

/* Q8_0X (x16 false) or Q8_0X16 activations of x (quants_x86.c): the AVX2 level's from_float,
 * whose bytes every level's must equal (the AVX-512 level hands it the last group of fewer than
 * eight blocks). */
void eng_q8_0x_fill_avx2(const float *x, void *vy, int64_t n, bool x16);

#endif
