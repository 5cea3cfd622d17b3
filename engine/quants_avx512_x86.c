/*
 * quants_avx512_x86.c — AVX-512 (F, BW, VL, VNNI) kernels, installed on top of the AVX2 level
 * where they measure faster (compiled with -mavx512f -mavx512bw -mavx512vl -mavx512vnni; used
 * only when the CPU and OS support them, see eng_simd_supported). quants_avx512gfni_x86.c builds
 * this file a second time with ENG_GFNI and -mgfni, for the avx512gfni level: there the 4-bit
 * formats split their code bytes into nibbles with one GF(2) affine transform per register.
 *
 * vec_dot and 1-4 column kernels for q4_0, q5_0, q8_0 and iq4_nl (against Q8_0X activations:
 * vpdpbusd on unsigned codes, the offset taken off with the activation sums), q4_k and q5_k
 * (vpdpbusd, two registers' sums packed to 16 bits, vpdpwssd with the sub-block scales), q3_k,
 * q6_k and iq4_xs (vpmaddubsw + vpdpwssd apply the sub-block scales in 32-bit integers), and
 * f16 vec_dot. Each gives the reference's integer block sums exactly; results differ from it
 * only in the order of float additions.
 */
#include "quants_x86.h"

#include <stdbool.h>
#include <stddef.h>

/* Per-half constants: words lo in the lower 256 bits, hi in the upper. */
static inline __m512i half_words(short lo, short hi) {
    return _mm512_inserti64x4(_mm512_set1_epi16(lo), _mm256_set1_epi16(hi), 1);
}

/* Nibbles of the bytes of q. nib_lo / nib_hi: the low / high nibble of every byte. nib_pick:
 * per 128-bit lane the low or the high nibbles, as the constant from nib_sel(h0..h3) says (hL
 * nonzero: high). Without GFNI a (variable) word shift and a mask; with GFNI one vgf2p8affineqb,
 * whose bit matrix moves bits 0-3 (or 4-7) to bits 0-3 and clears the rest. */
#define GF_LO 0x0102040800000000ll /* output bit i = input bit i, i < 4 */
#define GF_HI 0x1020408000000000ll /* output bit i = input bit i + 4, i < 4 */
#if defined(ENG_GFNI)
#define NIB_SEL(h) ((h) ? GF_HI : GF_LO)
#else
#define NIB_SEL(h) ((h) ? 0x0004000400040004ll : 0) /* word shifts */
#endif
static inline __m512i nib_sel(int h0, int h1, int h2, int h3) {
    return _mm512_setr_epi64(NIB_SEL(h0), NIB_SEL(h0), NIB_SEL(h1), NIB_SEL(h1), NIB_SEL(h2),
                             NIB_SEL(h2), NIB_SEL(h3), NIB_SEL(h3));
}
#undef NIB_SEL
static inline __attribute__((always_inline)) __m512i nib_pick(__m512i q, __m512i sel, __m512i m4) {
#if defined(ENG_GFNI)
    (void)m4;
    return _mm512_gf2p8affine_epi64_epi8(q, sel, 0);
#else
    return _mm512_and_si512(_mm512_srlv_epi16(q, sel), m4);
#endif
}
static inline __attribute__((always_inline)) __m512i nib_lo(__m512i q, __m512i m4) {
#if defined(ENG_GFNI)
    return nib_pick(q, _mm512_set1_epi64(GF_LO), m4);
#else
    return _mm512_and_si512(q, m4);
#endif
}
static inline __attribute__((always_inline)) __m512i nib_hi(__m512i q, __m512i m4) {
#if defined(ENG_GFNI)
    return nib_pick(q, _mm512_set1_epi64(GF_HI), m4);
#else
    return _mm512_and_si512(_mm512_srli_epi16(q, 4), m4);
#endif
}

/* 64 weight bytes as two 256-bit loads: weights stream from memory, and there one 512-bit load
 * per 64 bytes measured slower than two 256-bit ones (L1B q8_0 tg 1 thread 19.3 against 23.3
 * tok/s; same in-cache speed) — activations, which sit in L1, keep 512-bit loads. */
static inline __m512i wload(const uint8_t *p) {
    return _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)p)),
                              _mm256_loadu_si256((const __m256i *)(p + 32)), 1);
}

/* The 4-bit families (q4_0, iq4_nl: 9-word blocks; q5_0: 11) as groups of eight blocks: block
 * k of S words has its scale at word kS and its 16 nibble bytes at words kS + O .. kS + O + 7.
 * Blocks 0-3's codes lie in the group's first 64 words (r0:r1), blocks 4-7's in words 32-95
 * (r1:r2), so two word permutes over three loads gather each half's codes, one block per
 * 128-bit lane, and two more the eight scales — instead of narrow loads, inserts and an fp16
 * gather. (q4_1 and q5_1 would fit too, but their reference takes the minimum's activation sum
 * as Q8_1 stores it, rounded to fp16 from the unrounded scale, which Q8_0X does not carry: the
 * results differed by up to 0.3%.) */
#define W8(x) (x), (x) + 1, (x) + 2, (x) + 3, (x) + 4, (x) + 5, (x) + 6, (x) + 7
/* clang-format off */
#define NIB_IDX(S, O)                                                                              \
    {{W8(O), W8(S + O), W8(2 * S + O), W8(3 * S + O)},                                             \
     {W8(4 * S + O - 32), W8(5 * S + O - 32), W8(6 * S + O - 32), W8(7 * S + O - 32)},             \
     {0, S, 2 * S, 3 * S},                                                                         \
     {4 * S - 32, 5 * S - 32, 6 * S - 32, 7 * S - 32}}
/* clang-format on */
static const uint16_t nib_idx[2][4][32] = {NIB_IDX(9, 1), NIB_IDX(11, 3)};
#undef NIB_IDX
#undef W8

static inline __attribute__((always_inline)) int nib_words(enum eng_type T) {
    return T == ENG_TYPE_Q5_0 ? 11 : 9;
}

/* Codes of blocks 0-3 (q0) and 4-7 (q1) as nibble pairs, and the scales, of the group at p. */
static inline __attribute__((always_inline)) void nib_group(const enum eng_type T, const uint8_t *p,
                                                            __m512i *q0, __m512i *q1, __m256 *dw) {
    const int S = nib_words(T), t = S == 9 ? 0 : 1;
    const __m512i r0 = wload(p), r1 = wload(p + 64);
    __m512i r2; /* the group's bytes from 128 on: 16 S - 128 of them */
    if (S == 9)
        r2 = _mm512_castsi128_si512(_mm_loadu_si128((const __m128i *)(p + 128)));
    else
        r2 = _mm512_inserti32x4(
            _mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(p + 128))),
            _mm_loadu_si128((const __m128i *)(p + 160)), 2);
    *q0 = _mm512_permutex2var_epi16(r0, _mm512_loadu_si512(nib_idx[t][0]), r1);
    *q1 = _mm512_permutex2var_epi16(r1, _mm512_loadu_si512(nib_idx[t][1]), r2);
    /* words 0-3: scales of blocks 0-3 (4-7) */
    const __m128i a = _mm512_castsi512_si128(
        _mm512_permutex2var_epi16(r0, _mm512_loadu_si512(nib_idx[t][2]), r1));
    const __m128i b = _mm512_castsi512_si128(
        _mm512_permutex2var_epi16(r1, _mm512_loadu_si512(nib_idx[t][3]), r2));
    *dw = _mm256_cvtph_ps(_mm_unpacklo_epi64(a, b));
}

/* q5_0: the fifth bits of a half's four blocks as byte masks for the low-nibble register
 * (bits 0-15 of each block's qh) and the high-nibble register (bits 16-31). */
static inline __attribute__((always_inline)) void
nib_high_bits(const enum eng_type T, const uint8_t *p, __mmask64 *lo, __mmask64 *hi) {
    const int S = nib_words(T), qh = offsetof(struct eng_block_q5_0, qh);
    uint64_t l = 0, h = 0;
    for (int k = 0; k < 4; k++) {
        uint32_t v;
        memcpy(&v, p + 2 * S * k + qh, 4);
        l |= (uint64_t)(v & 0xFFFF) << (16 * k);
        h |= (uint64_t)(v >> 16) << (16 * k);
    }
    *lo = l, *hi = h;
}

/* A group of eight q8_0 blocks is 272 bytes, 136 words: block k's scale is word 17k, its codes
 * words 17k+1..17k+16. Blocks 0-3's first 16 codes (words 17L+1..17L+8) lie in the 64 words
 * from the group's start, their last 16 (words 17L+9..17L+16) in the 64 from word 4; blocks 4-7
 * likewise from word 68. Four word permutes over eight loads give the four registers (one block
 * per 128-bit lane, as Q8_0X holds the activations), two more the scales. */
static inline void q8_0_group(const struct eng_block_q8_0 *w, __m512i q[4], __m256 *dw) {
    static const uint16_t ix[3][32] = {
        {1,  2,  3,  4,  5,  6,  7,  8,  18, 19, 20, 21, 22, 23, 24, 25,
         35, 36, 37, 38, 39, 40, 41, 42, 52, 53, 54, 55, 56, 57, 58, 59},
        {5,  6,  7,  8,  9,  10, 11, 12, 22, 23, 24, 25, 26, 27, 28, 29,
         39, 40, 41, 42, 43, 44, 45, 46, 56, 57, 58, 59, 60, 61, 62, 63},
        {0, 17, 34, 51}};
    const __m512i ilo = _mm512_loadu_si512(ix[0]), ihi = _mm512_loadu_si512(ix[1]);
    const __m512i idxd = _mm512_loadu_si512(ix[2]);
    /* five loads that touch each byte once (the last one only the group's final 16 bytes), and
     * the windows at bytes 8, 136 and 144 assembled from them by qword shifts */
    const uint8_t *p = (const uint8_t *)w;
    const __m512i r0 = wload(p), r1 = wload(p + 64);
    const __m512i r2 = wload(p + 128), r3 = wload(p + 192);
    const __m512i r4 = _mm512_castsi128_si512(_mm_loadu_si128((const __m128i *)(p + 256)));
    const __m512i a0 = _mm512_alignr_epi64(r3, r2, 1), a1 = _mm512_alignr_epi64(r4, r3, 1);
    q[0] = _mm512_permutex2var_epi16(r0, ilo, r1);
    q[1] = _mm512_permutex2var_epi16(_mm512_alignr_epi64(r1, r0, 1), ihi,
                                     _mm512_alignr_epi64(r2, r1, 1));
    q[2] = _mm512_permutex2var_epi16(a0, ilo, a1);
    q[3] = _mm512_permutex2var_epi16(_mm512_alignr_epi64(r3, r2, 2), ihi,
                                     _mm512_alignr_epi64(r4, r3, 2));
    const __m128i d[2] = {_mm512_castsi512_si128(_mm512_permutex2var_epi16(r0, idxd, r1)),
                          _mm512_castsi512_si128(_mm512_permutex2var_epi16(a0, idxd, a1))};
    *dw = _mm256_cvtph_ps(_mm_unpacklo_epi64(d[0], d[1]));
}

/* Value j (0..31) of a 4-bit-family block, as the reference reads it (the tail of a row). */
static inline __attribute__((always_inline)) int nib_value(const enum eng_type T,
                                                           const uint8_t *blk, int j) {
    const int S = nib_words(T), qs = 2 * S - 16;
    int v = j < 16 ? blk[qs + j] & 0xF : blk[qs + j - 16] >> 4;
    if (T == ENG_TYPE_Q5_0) {
        uint32_t h;
        memcpy(&h, blk + offsetof(struct eng_block_q5_0, qh), 4);
        v |= (int)((h >> j) & 1) << 4;
    }
    return T == ENG_TYPE_IQ4_NL ? eng_iq4nl_values[v] : T == ENG_TYPE_Q5_0 ? v - 16 : v - 8;
}

/* The weight codes of the group at p as four registers of unsigned bytes against Q8_0X's lo
 * and hi codes of blocks 0-3 and 4-7, and the eight scales (q8x_rows). */
static inline __attribute__((always_inline)) void
q8x_prep(const int NC, const enum eng_type T, const uint8_t *p, __m512i q[4], __m256 *dw) {
    const bool nib = T != ENG_TYPE_Q8_0, q5 = T == ENG_TYPE_Q5_0;
    const size_t bbytes = nib ? 2 * (size_t)nib_words(T) : sizeof(struct eng_block_q8_0);
    const __m512i lv = _mm512_broadcast_i32x4(
        _mm_add_epi8(_mm_loadu_si128((const __m128i *)eng_iq4nl_values), _mm_set1_epi8(-128)));
    const __m512i m4 = _mm512_set1_epi8(0x0F), sign = _mm512_set1_epi8((char)0x80);
    const __m512i b4 = _mm512_set1_epi8(0x10);
    prefetch_ahead(p, (int)(8 * bbytes), NC);
    if (nib) {
        __m512i q0, q1;
        nib_group(T, p, &q0, &q1, dw);
        q[0] = nib_lo(q0, m4), q[1] = nib_hi(q0, m4);
        q[2] = nib_lo(q1, m4), q[3] = nib_hi(q1, m4);
        if (q5) {
            __mmask64 hb[4];
            nib_high_bits(T, p, &hb[0], &hb[1]);
            nib_high_bits(T, p + 4 * bbytes, &hb[2], &hb[3]);
#pragma GCC unroll 4
            for (int k = 0; k < 4; k++)
                q[k] = _mm512_or_si512(q[k], _mm512_maskz_mov_epi8(hb[k], b4));
        }
        if (T == ENG_TYPE_IQ4_NL)
#pragma GCC unroll 4
            for (int k = 0; k < 4; k++) q[k] = _mm512_shuffle_epi8(lv, q[k]);
    } else {
        q8_0_group((const struct eng_block_q8_0 *)p, q, dw);
#pragma GCC unroll 4
        for (int k = 0; k < 4; k++) q[k] = _mm512_xor_si512(q[k], sign);
    }
}

/* Group g's products of NC Q8_0X activation rows with the weight codes q and scales dw (from
 * q8x_prep), added to acc (codes) and accc (activation sums, for the offset): the two halves'
 * vpdpbusd sums folded into one register (unpack + add: half of the conversions, permutes and
 * fmas per column; q4_0 rows in cache 3.33 -> 3.17 ns per 256 weights, median of ten
 * interleaved rounds). Q8_0X layout (see types.c): per group of r <= 8 blocks d[r], c[r] =
 * d·Σcodes, lo[r][16], hi[r][16]. */
static inline __attribute__((always_inline)) void q8x_group(const int NC, const __m512i q[4],
                                                            __m256 dw, const uint8_t *a,
                                                            size_t a_stride, int64_t g,
                                                            __m512 acc[4], __m256 accc[4]) {
    /* the blocks' scales where the folded sums t below hold their blocks */
    const __m512i lanes = _mm512_setr_epi32(0, 0, 4, 4, 1, 1, 5, 5, 2, 2, 6, 6, 3, 3, 7, 7);
#pragma GCC unroll 4
    for (int c = 0; c < NC; c++) {
        const uint8_t *ag = a + (size_t)c * a_stride + 40 * g;
        const float *ad = (const float *)ag, *ac = ad + 8;
        const int8_t *lo = (const int8_t *)(ac + 8), *hi = lo + 128;
        const __m512 d = _mm512_castps256_ps512(_mm256_mul_ps(dw, _mm256_loadu_ps(ad)));
        accc[c] = _mm256_fmadd_ps(dw, _mm256_loadu_ps(ac), accc[c]);
        __m512i p0 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), q[0], _mm512_loadu_si512(lo));
        __m512i p1 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), q[2], _mm512_loadu_si512(lo + 64));
        p0 = _mm512_dpbusd_epi32(p0, q[1], _mm512_loadu_si512(hi));
        p1 = _mm512_dpbusd_epi32(p1, q[3], _mm512_loadu_si512(hi + 64));
        /* 128-bit lane L: two partial sums of block L, two of block L + 4 */
        const __m512i t =
            _mm512_add_epi32(_mm512_unpacklo_epi64(p0, p1), _mm512_unpackhi_epi64(p0, p1));
        acc[c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(t), _mm512_permutexvar_ps(lanes, d), acc[c]);
    }
}

/* The columns' totals of acc - off·accc, reduced together instead of by four separate
 * reductions (q4_0 768-value rows, 4 columns in cache, min of seven interleaved runs: 1.60 ->
 * 1.56 ns per 256 weights and column); each column's lanes are summed in the same order
 * whatever NC is, which test-simd checks bit for bit against vec_dot. */
static inline __attribute__((always_inline)) void
q8x_totals(const int NC, float off, const __m512 acc[4], const __m256 accc[4], float tot[4]) {
    __m256 h[4];
#pragma GCC unroll 4
    for (int c = 0; c < 4; c++)
        h[c] = c < NC ? _mm256_fnmadd_ps(_mm256_set1_ps(off), accc[c],
                                         _mm256_add_ps(_mm512_castps512_ps256(acc[c]),
                                                       _mm256_castpd_ps(_mm512_extractf64x4_pd(
                                                           _mm512_castps_pd(acc[c]), 1))))
                      : _mm256_setzero_ps();
    const __m256 h4 = _mm256_hadd_ps(_mm256_hadd_ps(h[0], h[1]), _mm256_hadd_ps(h[2], h[3]));
    _mm_storeu_ps(tot, _mm_add_ps(_mm256_castps256_ps128(h4), _mm256_extractf128_ps(h4, 1)));
}

/* The offset of a type's unsigned weight codes (q8x_prep): OFF·d·c per block comes off. */
static inline __attribute__((always_inline)) float q8x_off(const enum eng_type T) {
    return T == ENG_TYPE_Q4_0 ? 8.0f : T == ENG_TYPE_Q5_0 ? 16.0f : 128.0f;
}

/* The products of a row's last r < 8 blocks (a row whose length is not a multiple of 256) with
 * column c, in scalar code. */
static inline __attribute__((always_inline)) float
q8x_tail(const enum eng_type T, int64_t nb8, int r, const uint8_t *vw, const uint8_t *ac) {
    const bool nib = T != ENG_TYPE_Q8_0;
    const size_t bbytes = nib ? 2 * (size_t)nib_words(T) : sizeof(struct eng_block_q8_0);
    const float *ad = (const float *)(ac + 40 * nb8);
    const int8_t *lo = (const int8_t *)(ad + 2 * r), *hi = lo + 16 * r;
    float sum = 0.0f;
    for (int k = 0; k < r; k++) {
        const uint8_t *blk = vw + (size_t)(nb8 + k) * bbytes;
        int isum = 0;
        if (nib) {
            for (int j = 0; j < 16; j++)
                isum += nib_value(T, blk, j) * lo[16 * k + j] +
                        nib_value(T, blk, j + 16) * hi[16 * k + j];
        } else {
            const struct eng_block_q8_0 *b = (const struct eng_block_q8_0 *)blk;
            for (int j = 0; j < 16; j++)
                isum += b->qs[j] * lo[16 * k + j] + b->qs[j + 16] * hi[16 * k + j];
        }
        uint16_t dk;
        memcpy(&dk, blk, 2);
        sum += h2f(dk) * ad[k] * (float)isum;
    }
    return sum;
}

/* nr q4_0, q5_0, iq4_nl or q8_0 rows · NC Q8_0X rows (row r's column c into s[r + c·s_stride]).
 * Per group of eight blocks the weight codes are gathered once for all columns as four
 * registers of unsigned bytes against the activations' lo and hi codes of blocks 0-3 and 4-7:
 * the 4-bit families' nibbles (q5_0 with its fifth bits ored in from byte masks; iq4_nl's levels
 * + 128 looked up by vpshufb), q8_0's codes with the sign bit flipped (value + 128). vpdpbusd
 * multiplies and accumulates (q8x_group), and the offset (OFF = 8, 16 or 128) comes off as
 * OFF·d·c per block, once per row. Each column's arithmetic is the same sequence whatever NC and
 * nr are, so one token's result does not depend on how many were decoded together.
 *
 * Software-pipelined: the next group's codes are loaded and unpacked before this group's
 * columns, so that their latency (loads, permutes, nibble split: tens of cycles before the first
 * vpdpbusd) overlaps the columns' work (4 columns in cache 1.91 -> 1.67 ns per 256 weights and
 * column, rows 3.13 -> 3.00, medians of eight interleaved rounds). The pipeline runs across the
 * rows: a row's last group prepares the next row's first, so that only the first row of a call
 * waits for its codes (rows of 768 weights, three groups, paid that wait in every row: 4
 * columns in cache 1.81 -> 1.67 ns, min of ten interleaved rounds). */
static inline __attribute__((always_inline)) void
q8x_rows(const int NC, const enum eng_type T, int64_t n, int64_t nr, float *s, size_t s_stride,
         const void *vw, size_t w_stride, const uint8_t *a, size_t a_stride) {
    _Static_assert(sizeof(struct eng_block_iq4_nl) == sizeof(struct eng_block_q4_0) &&
                       offsetof(struct eng_block_iq4_nl, qs) == offsetof(struct eng_block_q4_0, qs),
                   "iq4_nl blocks are laid out as q4_0's");
    const int64_t nb = n / 32, nb8 = nb / 8 * 8;
    const bool nib = T != ENG_TYPE_Q8_0; /* the 4-bit families */
    const size_t gbytes = 8 * (nib ? 2 * (size_t)nib_words(T) : sizeof(struct eng_block_q8_0));
    const float off = q8x_off(T);
    /* lo 0-3, hi 0-3, lo 4-7, hi 4-7 of this group (q) and the next (qn) */
    __m512i q[4], qn[4];
#pragma GCC unroll 4
    for (int k = 0; k < 4; k++) q[k] = qn[k] = _mm512_setzero_si512();
    __m256 dw = _mm256_setzero_ps(), dwn = dw;
    if (nr > 0 && nb8 > 0) q8x_prep(NC, T, (const uint8_t *)vw, q, &dw);
    for (int64_t r = 0; r < nr; r++) { /* hot loop */
        const uint8_t *row = (const uint8_t *)vw + (size_t)r * w_stride;
        __m512 acc[4];
        __m256 accc[4];
#pragma GCC unroll 4
        for (int c = 0; c < NC; c++) acc[c] = _mm512_setzero_ps(), accc[c] = _mm256_setzero_ps();
        for (int64_t g = 0; g < nb8; g += 8) {
            const uint8_t *next = g + 8 < nb8  ? row + (size_t)(g + 8) / 8 * gbytes
                                  : r + 1 < nr ? row + w_stride
                                               : NULL;
            if (next) q8x_prep(NC, T, next, qn, &dwn);
            q8x_group(NC, q, dw, a, a_stride, g, acc, accc);
#pragma GCC unroll 4
            for (int k = 0; k < 4; k++) q[k] = qn[k];
            dw = dwn;
        }
        float tot[4];
        q8x_totals(NC, off, acc, accc, tot);
#pragma GCC unroll 4
        for (int c = 0; c < NC; c++)
            s[r + (size_t)c * s_stride] =
                nb8 < nb ? tot[c] + q8x_tail(T, nb8, (int)(nb - nb8), row, a + (size_t)c * a_stride)
                         : tot[c];
    }
}

/* vec_dot, vec_dot_rows and vec_dot_cols of one Q8_0X type, all by q8x_rows. */
#define Q8X_ENTRY_POINTS(prefix, T)                                                                \
    static void prefix##_vec_dot(int64_t n, float *s, const void *vw, const void *va) {            \
        q8x_rows(1, T, n, 1, s, 0, vw, 0, va, 0);                                                  \
    }                                                                                              \
    static void prefix##_vec_dot_rows(int64_t n, int64_t nr, float *s, const void *vw,             \
                                      size_t w_stride, const void *va) {                           \
        q8x_rows(1, T, n, nr, s, 0, vw, w_stride, va, 0);                                          \
    }                                                                                              \
    ENG_COLS_SIG(prefix##_vec_dot_cols) {                                                          \
        switch (nc) {                                                                              \
        case 1:                                                                                    \
            q8x_rows(1, T, n, nr, s, s_stride, vw, w_stride, va, a_stride);                        \
            return;                                                                                \
        case 2:                                                                                    \
            q8x_rows(2, T, n, nr, s, s_stride, vw, w_stride, va, a_stride);                        \
            return;                                                                                \
        case 3:                                                                                    \
            q8x_rows(3, T, n, nr, s, s_stride, vw, w_stride, va, a_stride);                        \
            return;                                                                                \
        default:                                                                                   \
            q8x_rows(4, T, n, nr, s, s_stride, vw, w_stride, va, a_stride);                        \
        }                                                                                          \
    }

Q8X_ENTRY_POINTS(q4_0_avx512, ENG_TYPE_Q4_0)
Q8X_ENTRY_POINTS(q5_0_avx512, ENG_TYPE_Q5_0)
Q8X_ENTRY_POINTS(iq4_nl_avx512, ENG_TYPE_IQ4_NL)
Q8X_ENTRY_POINTS(q8_0_avx512, ENG_TYPE_Q8_0)

/* Four bytes at p in every 32-bit lane: a broadcast load. Copied into an int array first, the
 * codes went through general registers, each broadcast a transfer and a shuffle: 4 columns in
 * cache 1.48 -> 1.19 ns per 256 weights and column, L110M Q4_0 4 sequences 1423 -> 1518 tok/s
 * (medians of six and eight alternated rounds). */
static inline __m512i bcast4(const uint8_t *p) {
    return _mm512_broadcastd_epi32(_mm_loadu_si32(p));
}

/* acc + the products of u's bytes with the four signed codes at p, broadcast by the
 * instruction's own memory operand ({1to16}): one instruction where GCC 12 emits a
 * load-and-broadcast and the product (it does not fold the broadcast). With one column, which
 * reads at the memory's rate, against the several-column path (a separate broadcast shared by
 * both halves, one chain per half), builds alternated: L1B Q4_0 tg64, 2 threads, 87.2 / 85.5
 * and 79.1 / 77.6 tok/s (6 of 6 and 5 of 6 rounds faster); L110M even (1080.5 / 1077.1), and
 * in cache slower (bench-kernels -n 768 -r 64: 2.12-2.29 against 1.82-1.93 ns per 256
 * weights), so only decode from memory tells. Several columns share each broadcast. */
static inline __m512i dpbusd_m4(__m512i acc, __m512i u, const uint8_t *p) {
    __asm__("vpdpbusd %2%{1to16%}, %1, %0" : "+v"(acc) : "v"(u), "m"(*(const int *)p));
    return acc;
}

/* Q4_0X16 (quants.h): groups of 32 interleaved q4_0 rows, two halves of 16, · NC Q8_0X16 rows.
 * A 32-bit lane is a row of a half: each of a block's four code chunks gives the low nibbles
 * (codes 4k..4k+3 of the half's 16 rows) and the high ones (16+4k..), and vpdpbusd multiplies
 * them with the column's four codes broadcast, so a block costs eight vpdpbusd per column and
 * half, its scales one fp16 conversion per half for all columns, and the rows' sums never need
 * reducing across lanes (the row-major kernel above spends three shuffles, a conversion and an
 * fma per column and 256 weights on that, and its nibble gather more). In cache, 768-weight
 * rows, against q8x_rows on the same weights (bench-kernels -t q4_0,q4_0x16 -n 768 -r 64, three
 * alternated runs, then in groups of 16 rows): per column with four columns 2.7-3.1 -> 1.9-2.2
 * ns per 256 weights, one column 5.8-6.7 -> 3.9-4.7.
 *
 * Each broadcast of a column's codes, offset and scale serves both halves. With several columns
 * the broadcasts are what the kernel waits on: taking one of a block's two scalar broadcasts
 * away made it 8% faster in cache, two fewer float operations per block and column nothing.
 * Against groups of 16 rows, one at a time (builds alternated): in cache (bench-kernels -n 768
 * -r 64) four columns 0.98-1.07 -> 0.83-0.88 ns per 256 weights and column, one 1.77-1.95 ->
 * 1.61-1.75; from memory (-m 256, share of one core's read rate) 768-weight rows four columns
 * 0.83 -> 0.89, one 0.88 -> 0.99, 2048-weight rows 0.72 -> 0.93 and 0.93 -> 0.91; edgellm
 * bench, 2 threads, L110M Q4_0 four sequences 2050.6 -> 2313.7 tok/s (6 of 8 rounds) and
 * 2155.3 -> 2253.2 (6 of 8), one sequence 733.1 -> 754.2 (6 of 8); L1B Q4_0 four sequences
 * 227.0 -> 241.9 (8 of 8), one 77.8 -> 79.1 (5 of 6). The layout (quants.h) keeps the reads one
 * sequential stream: the two halves as two groups of 16 rows, read side by side, kept 0.40-0.67
 * of the read rate with four columns, however they were prefetched, and halves laid out unit by
 * unit but read out of order within a unit 0.70 with one column (2048-weight rows).
 *
 * The offset 8: a block's integer sum starts from Q8_0X16's -8·Σ codes, so it is the block's
 * exact Σ (w - 8)·a, and the block costs a column and half one conversion, one scale product
 * and one fma (Q8_0X's 8·d·c per block, as the row-major kernel takes it, would be a second fma
 * and accumulator: too many registers for two halves of four columns). Integer sums are exact,
 * so each column's result is the same whatever NC is.
 *
 * With four columns the kernel is bound by the vector pipes, not by memory: in cache 0.90-0.95
 * ns per 256 weights and column at best (bench-kernels -t q4_0x16 -n 768 -r 64; up to 1.35 in
 * this host's slow phases) is 4.3 vpdpbusd per ns, against 5.1-6.8 for a loop of independent
 * 512-bit vpdpbusd (about 2 per cycle); a block's 64 vpdpbusd come with 24 operations that
 * unpack its codes and 26 of scale arithmetic, which compete with them (that loop with a shift
 * and an and beside each vpdpbusd: 0.22-0.24 against 0.16-0.18 ns per vpdpbusd). Tried, in cache
 * against the same build: the codes' broadcasts folded into each vpdpbusd ({1to16}, as one column
 * does) 1.22-1.37 ns; a column's 16 codes broadcast once per 128-bit lane and spread by vpshufd
 * 0.97-1.32; the scale arithmetic left out (wrong results, a bound only) 0.75-1.15; the high
 * nibbles by one vgf2p8affineqb (the avx512gfni level's nib_hi) instead of a shift and an and,
 * three alternated runs, 0.84 against 0.84-0.86 (even). On L110M Q4_0
 * (2 threads, perf of edgellm bench tg128), a pass of four sequences spends 1.3 times the kernel
 * time of a pass of one, which reads the weights at the memory's rate: batched decode of a model
 * this small gains less than on larger ones (edgellmd four streams 2.4-2.8x one, L1B 3.6-4.4x). */
static inline __attribute__((always_inline)) void x16_rows(const int NC, int64_t n, int64_t nr,
                                                           float *s, size_t s_stride,
                                                           const uint8_t *vw, const uint8_t *a,
                                                           size_t a_stride) {
    const int64_t nb = n / 32;
    const size_t gbytes = (size_t)nb * 18 * ENG_X16_GROUP;
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    for (int64_t r = 0; r < nr; r += ENG_X16_GROUP) { /* hot loop */
        const uint8_t *gw = vw + (size_t)(r / ENG_X16_GROUP) * gbytes;
        __m512 acc[2][4];
#pragma GCC unroll 4
        for (int c = 0; c < NC; c++) acc[0][c] = acc[1][c] = _mm512_setzero_ps();
        for (int64_t g = 0; g < nb; g += 8) {
            const int rb = (int)(nb - g < 8 ? nb - g : 8); /* blocks in this activation group */
            const uint8_t *ag = a + 40 * g;
            for (int k8 = 0; k8 < rb; k8++) {
                const int64_t b = g + k8;
                if (!(b & 1)) prefetch_ahead(gw + 1152 * (size_t)(b >> 1), 1152, NC);
                const uint8_t *cw0 = gw + eng_x16_codes_at(b, nb, 0);
                const uint8_t *cw1 = gw + eng_x16_codes_at(b, nb, 1);
                __m512i p[2][4], q[2]; /* q: one column's high codes (a second chain) */
#pragma GCC unroll 4
                for (int c = 0; c < NC; c++) { /* -8·Σ codes (Q8_0X16) */
                    const int32_t *ao = (const int32_t *)(ag + (size_t)c * a_stride) + rb;
                    p[0][c] = p[1][c] = _mm512_set1_epi32(ao[k8]);
                }
                q[0] = q[1] = _mm512_setzero_si512();
#pragma GCC unroll 4
                for (int k = 0; k < 4; k++) {
                    const __m512i v0 = _mm512_loadu_si512(cw0 + 64 * k);
                    const __m512i v1 = _mm512_loadu_si512(cw1 + 64 * k);
                    const __m512i lo0 = _mm512_and_si512(v0, m4);
                    const __m512i hi0 = _mm512_and_si512(_mm512_srli_epi16(v0, 4), m4);
                    const __m512i lo1 = _mm512_and_si512(v1, m4);
                    const __m512i hi1 = _mm512_and_si512(_mm512_srli_epi16(v1, 4), m4);
#pragma GCC unroll 4
                    for (int c = 0; c < NC; c++) {
                        const uint8_t *al = ag + (size_t)c * a_stride + 8 * (size_t)rb + 16 * k8;
                        const uint8_t *ah = al + 16 * rb;
                        if (NC == 1) {
                            p[0][0] = dpbusd_m4(p[0][0], lo0, al + 4 * k);
                            p[1][0] = dpbusd_m4(p[1][0], lo1, al + 4 * k);
                            q[0] = dpbusd_m4(q[0], hi0, ah + 4 * k);
                            q[1] = dpbusd_m4(q[1], hi1, ah + 4 * k);
                        } else {
                            const __m512i bl = bcast4(al + 4 * k), bh = bcast4(ah + 4 * k);
                            p[0][c] = _mm512_dpbusd_epi32(p[0][c], lo0, bl);
                            p[1][c] = _mm512_dpbusd_epi32(p[1][c], lo1, bl);
                            p[0][c] = _mm512_dpbusd_epi32(p[0][c], hi0, bh);
                            p[1][c] = _mm512_dpbusd_epi32(p[1][c], hi1, bh);
                        }
                    }
                }
                if (NC == 1) {
                    p[0][0] = _mm512_add_epi32(p[0][0], q[0]);
                    p[1][0] = _mm512_add_epi32(p[1][0], q[1]);
                }
                const __m512 dw0 = _mm512_cvtph_ps(
                    _mm256_loadu_si256((const __m256i *)(gw + eng_x16_scales_at(b, nb, 0))));
                const __m512 dw1 = _mm512_cvtph_ps(
                    _mm256_loadu_si256((const __m256i *)(gw + eng_x16_scales_at(b, nb, 1))));
#pragma GCC unroll 4
                for (int c = 0; c < NC; c++) {
                    const __m512 sa =
                        _mm512_set1_ps(((const float *)(ag + (size_t)c * a_stride))[k8]);
                    acc[0][c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p[0][c]), _mm512_mul_ps(dw0, sa),
                                                acc[0][c]);
                    acc[1][c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p[1][c]), _mm512_mul_ps(dw1, sa),
                                                acc[1][c]);
                }
            }
        }
#pragma GCC unroll 4
        for (int c = 0; c < NC; c++) {
            _mm512_storeu_ps(s + (size_t)c * s_stride + r, acc[0][c]);
            _mm512_storeu_ps(s + (size_t)c * s_stride + r + ENG_X16_ROWS, acc[1][c]);
        }
    }
}

static void q4_0x16_avx512_vec_dot_rows(int64_t n, int64_t nr, float *s, const void *vw,
                                        size_t w_stride, const void *va) {
    (void)w_stride;
    x16_rows(1, n, nr, s, 0, vw, va, 0);
}
ENG_COLS_SIG(q4_0x16_avx512_vec_dot_cols) {
    (void)w_stride;
    switch (nc) {
    case 1:
        x16_rows(1, n, nr, s, s_stride, vw, va, a_stride);
        return;
    case 2:
        x16_rows(2, n, nr, s, s_stride, vw, va, a_stride);
        return;
    case 3:
        x16_rows(3, n, nr, s, s_stride, vw, va, a_stride);
        return;
    default:
        x16_rows(4, n, nr, s, s_stride, vw, va, a_stride);
    }
}

/* Round half away from zero, as quants_x86.c's round_away does for eight lanes (the same
 * operations, so the same codes). */
static inline __m512i round_away16(__m512 v) {
    const __m512 t = _mm512_roundscale_ps(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
    const __mmask16 half =
        _mm512_cmp_ps_mask(_mm512_abs_ps(_mm512_sub_ps(v, t)), _mm512_set1_ps(0.5f), _CMP_GE_OQ);
    const __m512i sign = _mm512_and_epi32(_mm512_castps_si512(v), _mm512_set1_epi32(INT32_MIN));
    const __m512 one = _mm512_castsi512_ps(_mm512_or_epi32(sign, _mm512_set1_epi32(0x3f800000)));
    return _mm512_cvttps_epi32(_mm512_mask_add_ps(t, half, t, one));
}

/* Q8_0X / Q8_0X16 activations (quants_x86.c's q8_0x_fill_avx2, byte for byte): a block's 32
 * values are two registers, whose 16 codes each narrow to one of the block's two 16-byte
 * halves with one saturating conversion (vpmovsdb), where eight lanes took two packs and a
 * permute per block. A last group of fewer than eight blocks goes to the AVX2 code. Every
 * product of a decode step converts its activations: with several sequences each thread
 * converts all of them (matmul.c convert_private). */
static inline __attribute__((always_inline)) void q8_0x_fill_avx512(const float *x, void *vy,
                                                                    int64_t n, const bool x16) {
    uint8_t *y = vy;
    const int64_t nb = n / ENG_QK8_0, nb8 = nb / 8 * 8;
    for (int64_t g = 0; g < nb8; g += 8) {
        const float *xg = x + g * ENG_QK8_0;
        const struct eng_q8_0x_group o = eng_q8_0x_group(y, g, 8);
        __m256 m[8];
        for (int k = 0; k < 8; k++) {
            const __m512 a = _mm512_max_ps(_mm512_abs_ps(_mm512_loadu_ps(xg + 32 * k)),
                                           _mm512_abs_ps(_mm512_loadu_ps(xg + 32 * k + 16)));
            m[k] = _mm256_max_ps(_mm512_castps512_ps256(a),
                                 _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(a), 1)));
        }
        __m256 vd;
        float id[8];
        _mm256_storeu_ps(id, q8_0x_scales(m, &vd));
        __m256i sums[8];
        for (int k = 0; k < 8; k++) {
            const __m512 vid = _mm512_set1_ps(id[k]);
            const __m512i i0 = round_away16(_mm512_mul_ps(_mm512_loadu_ps(xg + 32 * k), vid));
            const __m512i i1 = round_away16(_mm512_mul_ps(_mm512_loadu_ps(xg + 32 * k + 16), vid));
            _mm_storeu_si128((__m128i *)(o.lo + 16 * k), _mm512_cvtsepi32_epi8(i0));
            _mm_storeu_si128((__m128i *)(o.hi + 16 * k), _mm512_cvtsepi32_epi8(i1));
            const __m512i s16 = _mm512_add_epi32(i0, i1);
            sums[k] =
                _mm256_add_epi32(_mm512_castsi512_si256(s16), _mm512_extracti64x4_epi64(s16, 1));
        }
        q8_0x_put_group(o, vd, sums, x16);
    }
    if (nb8 < nb)
        eng_q8_0x_fill_avx2(x + nb8 * ENG_QK8_0, y + 40 * nb8, (nb - nb8) * ENG_QK8_0, x16);
}

static void q8_0x_avx512_from_float(const float *x, void *vy, int64_t n) {
    q8_0x_fill_avx512(x, vy, n, false);
}

static void q8_0x16_avx512_from_float(const float *x, void *vy, int64_t n) {
    q8_0x_fill_avx512(x, vy, n, true);
}

/* The sixteen lane sums of s[0..15], in order: unpacks and 128-bit shuffles, each level adding
 * pairs (the transposition totals8_epi32 does for eight registers of eight lanes). */
static inline __m512i totals16_epi32(const __m512i s[16]) {
    __m512i a[8], b[4], c[2];
    for (int k = 0; k < 8; k++)
        a[k] = _mm512_add_epi32(_mm512_unpacklo_epi32(s[2 * k], s[2 * k + 1]),
                                _mm512_unpackhi_epi32(s[2 * k], s[2 * k + 1]));
    for (int k = 0; k < 4; k++) /* per 128 bits: the sums of registers 4k..4k+3 there */
        b[k] = _mm512_add_epi32(_mm512_unpacklo_epi64(a[2 * k], a[2 * k + 1]),
                                _mm512_unpackhi_epi64(a[2 * k], a[2 * k + 1]));
    for (int k = 0; k < 2; k++)
        c[k] = _mm512_add_epi32(_mm512_shuffle_i32x4(b[2 * k], b[2 * k + 1], 0x88),
                                _mm512_shuffle_i32x4(b[2 * k], b[2 * k + 1], 0xDD));
    return _mm512_add_epi32(_mm512_shuffle_i32x4(c[0], c[1], 0x88),
                            _mm512_shuffle_i32x4(c[0], c[1], 0xDD));
}

/* Q8_K activations (the k-quants' and iq4_xs'), byte for byte as quants_x86.c's AVX2 code: the
 * same maximum and scale, the codes rounded by the same conversion, each 16 narrowed with one
 * saturating vpmovsdb, and the 16 sums of 16 codes taken together (totals16_epi32) and narrowed
 * to int16 with one vpmovdw, where eight lanes took two horizontal sums per 32 codes. */
static void q8_k_avx512_from_float(const float *x, void *vy, int64_t n) {
    struct eng_block_q8_k *y = vy;
    for (int64_t i = 0; i < n / ENG_QK_K; i++, x += ENG_QK_K) {
        __m512 m = _mm512_setzero_ps();
        for (int j = 0; j < ENG_QK_K; j += 16)
            m = _mm512_max_ps(m, _mm512_abs_ps(_mm512_loadu_ps(x + j)));
        const float amax = _mm512_reduce_max_ps(m);
        if (!amax) {
            memset(&y[i], 0, sizeof(y[i]));
            continue;
        }
        /* the sign of the first element of largest magnitude, as the reference */
        float max = amax;
        const __m512 va = _mm512_set1_ps(amax);
        for (int j = 0; j < ENG_QK_K; j += 16) {
            const __mmask16 eq =
                _mm512_cmp_ps_mask(_mm512_abs_ps(_mm512_loadu_ps(x + j)), va, _CMP_EQ_OQ);
            if (eq) {
                max = x[j + __builtin_ctz((unsigned)eq)];
                break;
            }
        }
        const float iscale = -127.0f / max;
        const __m512 vs = _mm512_set1_ps(iscale);
        __m512i q[ENG_QK_K / 16];
        for (int g = 0; g < ENG_QK_K / 16; g++) {
            q[g] = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_loadu_ps(x + 16 * g), vs));
            _mm_storeu_si128((__m128i *)(y[i].qs + 16 * g), _mm512_cvtsepi32_epi8(q[g]));
        }
        _mm256_storeu_si256((__m256i *)y[i].bsums, _mm512_cvtepi32_epi16(totals16_epi32(q)));
        y[i].d = 1.0f / iscale;
    }
}

/* iq4_xs (eight scales per block, one per 32 weights): word indices that spread scale 2k over
 * words 0-15 and scale 2k+1 over words 16-31, for the block's register k. */
static const uint16_t k_pair_sidx[4][32] = {{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                                             1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1},
                                            {2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
                                             3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3},
                                            {4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4,
                                             5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5},
                                            {6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6,
                                             7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7}};

/* q4_k and q5_k: word indices that place the scales of register pair p (registers 2p and
 * 2p + 1, sub-blocks 4p..4p+3) where vpackssdw leaves the pair's 32-bit sums: in 128-bit lane L,
 * four sums of register 2p then four of register 2p + 1; lanes 0-1 hold a register's first
 * sub-block, lanes 2-3 its second. */
#define K45_LANE(p, L) W4(4 * (p) + (L) / 2), W4(4 * (p) + 2 + (L) / 2)
#define W4(x)          (x), (x), (x), (x)
static const uint16_t k45_pack_sidx[2][32] = {
    {K45_LANE(0, 0), K45_LANE(0, 1), K45_LANE(0, 2), K45_LANE(0, 3)},
    {K45_LANE(1, 0), K45_LANE(1, 1), K45_LANE(1, 2), K45_LANE(1, 3)}};
#undef K45_LANE
#undef W4

/* q4_k or q5_k row · NC Q8_K rows. Register k holds 64 weights (sub-blocks 2k and 2k+1 share
 * 32 code bytes: low nibbles 2k, high nibbles 2k+1): the 32 bytes broadcast to both halves of
 * a register and split into nibbles, which then sit against the 64 contiguous activation codes
 * 64k..64k+63. vpdpbusd gives sums of four products (at most 4·31·128, so they fit 16 bits);
 * vpackssdw packs two registers' sums into one, and vpdpwssd multiplies them by the sub-blocks'
 * 6-bit scales and accumulates in 32 bits: per 128 weights two vpdpbusd, one pack and one
 * vpdpwssd per column, and one scale permute shared by the columns. The minimums: the mins
 * duplicated to words against the activations' 16 block sums (one vpmaddwd), d·Σ − dmin·Σmin
 * in float, times the activations' scale. q5_k's fifth bits (qh bit 2k for the low nibbles,
 * 2k+1 for the high ones) come from one broadcast of qh, moved to bit 4 by a variable word
 * shift per half. Each column's arithmetic is the same sequence whatever NC is. */
static inline __attribute__((always_inline)) void k45_cols(const int NC, const enum eng_type T,
                                                           int64_t n, float *s, size_t s_stride,
                                                           const void *vw, const uint8_t *a0,
                                                           size_t a_stride) {
    _Static_assert(offsetof(struct eng_block_q5_k, scales) ==
                       offsetof(struct eng_block_q4_k, scales),
                   "q4_k and q5_k start alike");
    const bool q5 = T == ENG_TYPE_Q5_K;
    const size_t bsize = q5 ? sizeof(struct eng_block_q5_k) : sizeof(struct eng_block_q4_k);
    const size_t qs_off =
        q5 ? offsetof(struct eng_block_q5_k, qs) : offsetof(struct eng_block_q4_k, qs);
    /* q5_k: fifth bits of register k (low half: qh bit 2k, high half: bit 2k + 1) to bit 4 */
    const __m512i h_shl[2] = {half_words(4, 3), half_words(2, 1)};
    const __m512i h_shr[2] = {half_words(0, 1), half_words(2, 3)};
    const __m512i b4 = _mm512_set1_epi8(0x10);
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    const __m512i nib_halves = nib_sel(0, 0, 1, 1); /* low nibbles below, high above */
    /* bytes 8..15 of the unpacked scales (the mins), each twice */
    const __m128i min_dup =
        _mm_setr_epi8(8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13, 14, 14, 15, 15);
    const __m512i sidx0 = _mm512_loadu_si512(k45_pack_sidx[0]);
    const __m512i sidx1 = _mm512_loadu_si512(k45_pack_sidx[1]);
    __m512 acc[4];
#pragma GCC unroll 4
    for (int c = 0; c < NC; c++) acc[c] = _mm512_setzero_ps();
    for (int64_t i = 0; i < n / ENG_QK_K; i++) { /* hot loop */
        const uint8_t *blk = (const uint8_t *)vw + (size_t)i * bsize;
        const struct eng_block_q4_k *w = (const struct eng_block_q4_k *)blk; /* d, dmin, scales */
        prefetch_ahead(blk, (int)bsize, NC);
        const __m128i u = k4_unpack_v(w->scales);
        const __m512i sc16 = _mm512_castsi128_si512(_mm_cvtepu8_epi16(u));
        const __m256i mins = _mm256_cvtepu8_epi16(_mm_shuffle_epi8(u, min_dup));
        const __m512i sc[2] = {_mm512_permutexvar_epi16(sidx0, sc16),
                               _mm512_permutexvar_epi16(sidx1, sc16)};
        const __m128 dd = k4_dd(&w->d);
        const __m512 dw = _mm512_broadcastss_ps(dd),
                     dmin = _mm512_broadcastss_ps(_mm_movehdup_ps(dd));
        /* q5_k: the block's 32 qh bytes, once for its four registers */
        const __m512i hb = q5 ? _mm512_broadcast_i64x4(_mm256_loadu_si256(
                                    (const __m256i *)(blk + offsetof(struct eng_block_q5_k, qh))))
                              : _mm512_setzero_si512();
        __m512i q[4];
#pragma GCC unroll 4
        for (int k = 0; k < 4; k++) {
            q[k] = nib_pick(_mm512_broadcast_i64x4(
                                _mm256_loadu_si256((const __m256i *)(blk + qs_off + 32 * k))),
                            nib_halves, m4);
            if (q5) {
                const __m512i h =
                    k < 2 ? _mm512_sllv_epi16(hb, h_shl[k]) : _mm512_srlv_epi16(hb, h_shr[k - 2]);
                q[k] = _mm512_ternarylogic_epi32(q[k], h, b4, 0xF8); /* q | (h & b4) */
            }
        }
#pragma GCC unroll 4
        for (int c = 0; c < NC; c++) {
            const struct eng_block_q8_k *a =
                (const struct eng_block_q8_k *)(a0 + (size_t)c * a_stride) + i;
            __m512i sumi = _mm512_setzero_si512();
#pragma GCC unroll 2
            for (int p = 0; p < 2; p++) {
                const __m512i d0 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), q[2 * p],
                                                       _mm512_loadu_si512(a->qs + 128 * p));
                const __m512i d1 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), q[2 * p + 1],
                                                       _mm512_loadu_si512(a->qs + 128 * p + 64));
                sumi = _mm512_dpwssd_epi32(sumi, _mm512_packs_epi32(d0, d1), sc[p]);
            }
            const __m256i pm =
                _mm256_madd_epi16(mins, _mm256_loadu_si256((const __m256i *)a->bsums));
            const __m512 t = _mm512_fnmadd_ps(_mm512_cvtepi32_ps(_mm512_zextsi256_si512(pm)), dmin,
                                              _mm512_mul_ps(_mm512_cvtepi32_ps(sumi), dw));
            acc[c] = _mm512_fmadd_ps(_mm512_set1_ps(a->d), t, acc[c]);
        }
    }
#pragma GCC unroll 4
    for (int c = 0; c < NC; c++) s[(size_t)c * s_stride] = _mm512_reduce_add_ps(acc[c]);
}

ENG_TYPED_COLS_ENTRY_POINTS(q4_k_avx512, k45_cols, ENG_TYPE_Q4_K)
ENG_TYPED_COLS_ENTRY_POINTS(q5_k_avx512, k45_cols, ENG_TYPE_Q5_K)

/* q3_k and q6_k (16 scales per block, one per 16 weights): word indices that spread scales
 * 4k..4k+3 of a block over eight words each, for the block's register k of 64 weights. */
static const uint16_t k_sidx[4][32] = {
    {0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1,
     2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3},
    {4, 4, 4, 4, 4, 4, 4, 4, 5, 5, 5, 5, 5, 5, 5, 5,
     6, 6, 6, 6, 6, 6, 6, 6, 7, 7, 7, 7, 7, 7, 7, 7},
    {8,  8,  8,  8,  8,  8,  8,  8,  9,  9,  9,  9,  9,  9,  9,  9,
     10, 10, 10, 10, 10, 10, 10, 10, 11, 11, 11, 11, 11, 11, 11, 11},
    {12, 12, 12, 12, 12, 12, 12, 12, 13, 13, 13, 13, 13, 13, 13, 13,
     14, 14, 14, 14, 14, 14, 14, 14, 15, 15, 15, 15, 15, 15, 15, 15}};

/* A q3_k or q6_k row · NC Q8_K rows (16 signed scales per block, one per 16 weights). Per half
 * block (128 weights) the weights 0-63 and 64-127 each in one register, in the order of the
 * activation codes, and vpmaddubsw + vpdpwssd apply the scales; the stored values are unsigned
 * (value + OFF) and the offset comes off with the activations' block sums, in the same
 * register, before the conversion to float. Each column's arithmetic is the same sequence
 * whatever NC is.
 * - q6_k: the low or high nibbles of the half's 64 ql bytes, ored with two bits of its 32 qh
 *   bytes broadcast to both 256-bit halves and shifted per half by a variable word shift.
 * - q3_k: the half's 32 bytes of 2-bit codes broadcast and shifted per 256-bit half the same
 *   way, the high bit (from the 32 hmask bytes shared by both halves) moved to bit 2. */
static inline __attribute__((always_inline)) void k16_cols(const int NC, const enum eng_type T,
                                                           int64_t n, float *s, size_t s_stride,
                                                           const void *vw, const uint8_t *a0,
                                                           size_t a_stride) {
    const bool q6 = T == ENG_TYPE_Q6_K;
    const size_t bsize = q6 ? sizeof(struct eng_block_q6_k) : sizeof(struct eng_block_q3_k);
    const int off_shift = q6 ? 5 : 2; /* OFF = 32 or 4 */
    /* q6_k: qh bits 0-1 (weights 0-31) and 2-3 (32-63) to bits 4-5; 4-5 (64-95), 6-7 (96-127) */
    const __m512i shl = half_words(4, 2);
    const __m512i shr = half_words(0, 2);
    const __m512i m4 = _mm512_set1_epi8(0x0F), m30 = _mm512_set1_epi8(0x30);
    /* q3_k per (half, register r): right shifts of the code bytes for the 256-bit halves
     * k = 2r and 2r + 1, and of the high-bit bytes (a left shift where the bit sits below
     * bit 2) */
    const __m512i lo_shr[2] = {half_words(0, 2), half_words(4, 6)};
    const __m512i hb_shl0 = half_words(2, 1);
    const __m512i hb_shr[3] = {/* half 0 register 1, half 1 registers 0 and 1 */
                               half_words(0, 1), half_words(2, 3), half_words(4, 5)};
    const __m512i m3 = _mm512_set1_epi8(0x03), b2 = _mm512_set1_epi8(0x04);
    __m512 acc[4];
#pragma GCC unroll 4
    for (int c = 0; c < NC; c++) acc[c] = _mm512_setzero_ps();
    for (int64_t i = 0; i < n / ENG_QK_K; i++) { /* hot loop */
        const uint8_t *blk = (const uint8_t *)vw + (size_t)i * bsize;
        const struct eng_block_q6_k *w6 = (const struct eng_block_q6_k *)blk;
        const struct eng_block_q3_k *w3 = (const struct eng_block_q3_k *)blk;
        prefetch_ahead(blk, (int)bsize, NC);
        const __m256i sc16 = _mm256_cvtepi8_epi16(q6 ? _mm_loadu_si128((const __m128i *)w6->scales)
                                                     : q3k_scales_v(w3->scales));
        const __m512i sc512 = _mm512_castsi256_si512(sc16);
        /* q3_k: the 32 hmask bytes, shared by both halves */
        const __m512i hm =
            q6 ? _mm512_setzero_si512()
               : _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)w3->hmask));
        __m512i sumi[4];
#pragma GCC unroll 4
        for (int c = 0; c < NC; c++) sumi[c] = _mm512_setzero_si512();
#pragma GCC unroll 2
        for (int half = 0; half < 2; half++) {
            __m512i q[2];
            if (q6) {
                const __m512i l = wload(w6->ql + 64 * half);
                const __m512i h = _mm512_broadcast_i64x4(
                    _mm256_loadu_si256((const __m256i *)(w6->qh + 32 * half)));
                q[0] = _mm512_ternarylogic_epi32(
                    l, m4, _mm512_and_si512(_mm512_sllv_epi16(h, shl), m30), 0xEA);
                q[1] = _mm512_ternarylogic_epi32(_mm512_srli_epi16(l, 4), m4,
                                                 _mm512_and_si512(_mm512_srlv_epi16(h, shr), m30),
                                                 0xEA);
            } else {
                const __m512i qb = _mm512_broadcast_i64x4(
                    _mm256_loadu_si256((const __m256i *)(w3->qs + 32 * half)));
#pragma GCC unroll 2
                for (int r = 0; r < 2; r++) {
                    const __m512i h = half == 0 && r == 0
                                          ? _mm512_sllv_epi16(hm, hb_shl0)
                                          : _mm512_srlv_epi16(hm, hb_shr[2 * half + r - 1]);
                    q[r] = _mm512_ternarylogic_epi32(_mm512_srlv_epi16(qb, lo_shr[r]), m3,
                                                     _mm512_and_si512(h, b2), 0xEA);
                }
            }
#pragma GCC unroll 2
            for (int k = 0; k < 2; k++) {
                const __m512i sc =
                    _mm512_permutexvar_epi16(_mm512_loadu_si512(k_sidx[2 * half + k]), sc512);
#pragma GCC unroll 4
                for (int c = 0; c < NC; c++) {
                    const int8_t *y =
                        ((const struct eng_block_q8_k *)(a0 + (size_t)c * a_stride))[i].qs +
                        128 * half + 64 * k;
                    sumi[c] = _mm512_dpwssd_epi32(
                        sumi[c], _mm512_maddubs_epi16(q[k], _mm512_loadu_si512(y)), sc);
                }
            }
        }
        const float dw = h2f(q6 ? w6->d : w3->d);
#pragma GCC unroll 4
        for (int c = 0; c < NC; c++) {
            const struct eng_block_q8_k *a =
                (const struct eng_block_q8_k *)(a0 + (size_t)c * a_stride) + i;
            /* OFF·Σ sc·bsum (eight lanes of pair sums) comes off */
            const __m256i sb =
                _mm256_madd_epi16(sc16, _mm256_loadu_si256((const __m256i *)a->bsums));
            const __m512i v = _mm512_sub_epi32(sumi[c], _mm512_zextsi256_si512(_mm256_sll_epi32(
                                                            sb, _mm_cvtsi32_si128(off_shift))));
            acc[c] = _mm512_fmadd_ps(_mm512_set1_ps(a->d * dw), _mm512_cvtepi32_ps(v), acc[c]);
        }
    }
#pragma GCC unroll 4
    for (int c = 0; c < NC; c++) s[(size_t)c * s_stride] = _mm512_reduce_add_ps(acc[c]);
}
ENG_TYPED_COLS_ENTRY_POINTS(q3_k_avx512, k16_cols, ENG_TYPE_Q3_K)
ENG_TYPED_COLS_ENTRY_POINTS(q6_k_avx512, k16_cols, ENG_TYPE_Q6_K)

/* iq4_xs row · NC Q8_K rows. Per 64 weights (sub-blocks 2k and 2k+1: 32 nibble bytes, low
 * nibbles first in each sub-block): the four 16-byte halves placed in the order of the
 * activation codes, looked up in the level table (signed), then vpmaddubsw on the levels'
 * magnitudes against the activations with the levels' signs, and vpdpwssd with the six-bit
 * scales. Each column's arithmetic is the same sequence whatever NC is. */
static inline __attribute__((always_inline)) void iq4_xs_cols(const int NC, int64_t n, float *s,
                                                              size_t s_stride,
                                                              const struct eng_block_iq4_xs *w,
                                                              const uint8_t *a0, size_t a_stride) {
    const __m512i lv = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)eng_iq4nl_values));
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    const __m512i nib_lanes = nib_sel(0, 1, 0, 1);
    __m512 acc[4];
#pragma GCC unroll 4
    for (int c = 0; c < NC; c++) acc[c] = _mm512_setzero_ps();
    for (int64_t i = 0; i < n / ENG_QK_K; i++) { /* hot loop */
        prefetch_ahead(w + i, sizeof(*w), NC);
        /* the eight six-bit scales - 32 as words: low nibbles from scales_l (two per byte, low
         * first), high two bits from scales_h (bits 2ib, 2ib + 1) */
        uint32_t l4;
        memcpy(&l4, w[i].scales_l, 4);
        const __m128i lb = _mm_cvtsi32_si128((int)l4);
        const __m128i lo = _mm_cvtepu8_epi16(
            _mm_unpacklo_epi8(_mm_and_si128(lb, _mm_set1_epi8(0x0F)),
                              _mm_and_si128(_mm_srli_epi16(lb, 4), _mm_set1_epi8(0x0F))));
        const __m128i hi = _mm_and_si128(_mm_srlv_epi16(_mm_set1_epi16((short)w[i].scales_h),
                                                        _mm_setr_epi16(0, 2, 4, 6, 8, 10, 12, 14)),
                                         _mm_set1_epi16(3));
        const __m512i sc16 = _mm512_castsi128_si512(
            _mm_sub_epi16(_mm_or_si128(lo, _mm_slli_epi16(hi, 4)), _mm_set1_epi16(32)));
        __m512i sumi[4];
#pragma GCC unroll 4
        for (int c = 0; c < NC; c++) sumi[c] = _mm512_setzero_si512();
#pragma GCC unroll 4
        for (int k = 0; k < 4; k++) {
            /* 128-bit lanes: sub-block 2k low, high nibbles; sub-block 2k+1 low, high */
            const __m512i b =
                _mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(w[i].qs + 32 * k)));
            __m512i q = nib_pick(_mm512_shuffle_i64x2(b, b, 0x50), nib_lanes, m4);
            q = _mm512_shuffle_epi8(lv, q);
            const __m512i qa = _mm512_abs_epi8(q);
            const __mmask64 neg = _mm512_movepi8_mask(q);
            const __m512i sc = _mm512_permutexvar_epi16(_mm512_loadu_si512(k_pair_sidx[k]), sc16);
#pragma GCC unroll 4
            for (int c = 0; c < NC; c++) {
                const __m512i y = _mm512_loadu_si512(
                    ((const struct eng_block_q8_k *)(a0 + (size_t)c * a_stride))[i].qs + 64 * k);
                const __m512i ys = _mm512_mask_sub_epi8(y, neg, _mm512_setzero_si512(), y);
                sumi[c] = _mm512_dpwssd_epi32(sumi[c], _mm512_maddubs_epi16(qa, ys), sc);
            }
        }
        const float dw = h2f(w[i].d);
#pragma GCC unroll 4
        for (int c = 0; c < NC; c++) {
            const struct eng_block_q8_k *a =
                (const struct eng_block_q8_k *)(a0 + (size_t)c * a_stride) + i;
            acc[c] =
                _mm512_fmadd_ps(_mm512_set1_ps(a->d * dw), _mm512_cvtepi32_ps(sumi[c]), acc[c]);
        }
    }
#pragma GCC unroll 4
    for (int c = 0; c < NC; c++) s[(size_t)c * s_stride] = _mm512_reduce_add_ps(acc[c]);
}
ENG_COLS_ENTRY_POINTS(iq4_xs_avx512, iq4_xs_cols)

/* An f16 row · NC f32 activation rows (a_stride bytes apart): sixteen weights per vcvtph2ps from
 * one 256-bit load, converted once for all columns; four accumulators per column (the fma
 * latency; 16 of the 32 registers at four columns), the tail of n % 16 with a masked load. Each
 * column's arithmetic is the same whatever NC is, so one token's result does not depend on how
 * many were decoded together (test-simd checks vec_dot_cols against vec_dot bit for bit). */
static inline __attribute__((always_inline)) void f16_cols(const int NC, int64_t n, float *s,
                                                           size_t s_stride, const void *vw,
                                                           const void *va, size_t a_stride) {
    const uint16_t *w = vw;
    const float *a[4];
    __m512 acc[4][4];
#pragma GCC unroll 4
    for (int c = 0; c < NC; c++) {
        a[c] = (const float *)((const uint8_t *)va + (size_t)c * a_stride);
#pragma GCC unroll 4
        for (int k = 0; k < 4; k++) acc[c][k] = _mm512_setzero_ps();
    }
    int64_t i = 0;
    for (; i + 64 <= n; i += 64) { /* hot loop */
        prefetch_at(w + i, 128, ENG_PF_DIST_F16);
#pragma GCC unroll 4
        for (int k = 0; k < 4; k++) {
            const __m512 wv =
                _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(w + i + 16 * k)));
#pragma GCC unroll 4
            for (int c = 0; c < NC; c++)
                acc[c][k] = _mm512_fmadd_ps(wv, _mm512_loadu_ps(a[c] + i + 16 * k), acc[c][k]);
        }
    }
    for (; i + 16 <= n; i += 16) {
        const __m512 wv = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(w + i)));
#pragma GCC unroll 4
        for (int c = 0; c < NC; c++)
            acc[c][0] = _mm512_fmadd_ps(wv, _mm512_loadu_ps(a[c] + i), acc[c][0]);
    }
    if (i < n) {
        const __mmask16 m = (__mmask16)((1u << (n - i)) - 1);
        const __m512 wv = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, w + i));
#pragma GCC unroll 4
        for (int c = 0; c < NC; c++)
            acc[c][1] = _mm512_fmadd_ps(wv, _mm512_maskz_loadu_ps(m, a[c] + i), acc[c][1]);
    }
#pragma GCC unroll 4
    for (int c = 0; c < NC; c++)
        s[(size_t)c * s_stride] = _mm512_reduce_add_ps(_mm512_add_ps(
            _mm512_add_ps(acc[c][0], acc[c][1]), _mm512_add_ps(acc[c][2], acc[c][3])));
}
ENG_COLS_ENTRY_POINTS(f16_avx512, f16_cols)

#if defined(ENG_GFNI)
void eng_simd_install_avx512_gfni(struct eng_type_traits *t) {
#else
void eng_simd_install_avx512(struct eng_type_traits *t) {
#endif
    if (t[ENG_TYPE_Q4_0].vec_dot_type == ENG_TYPE_Q8_0X) /* the AVX2 level's activation layout */
    {
        t[ENG_TYPE_Q4_0].vec_dot = q4_0_avx512_vec_dot;
        t[ENG_TYPE_Q4_0].vec_dot_cols = q4_0_avx512_vec_dot_cols;
        t[ENG_TYPE_Q4_0].vec_dot_rows = q4_0_avx512_vec_dot_rows;
        /* Four columns per weight load serve prefill as well as repacking for the tile kernel
         * does (L1B pp64 100-103 against 85 tok/s, pp256 81-91 against 91) and batched decode
         * better (84 against 61 tok/s at 16 sequences), so q4_0 never takes the tile path here. */
        t[ENG_TYPE_Q4_0].tile_min_b = 1 << 30;
        t[ENG_TYPE_Q4_0X16].vec_dot_cols = q4_0x16_avx512_vec_dot_cols;
        t[ENG_TYPE_Q4_0X16].vec_dot_rows = q4_0x16_avx512_vec_dot_rows;
        t[ENG_TYPE_Q4_0X16].vec_dot_type = ENG_TYPE_Q8_0X16;
    }
    t[ENG_TYPE_Q8_0X].from_float = q8_0x_avx512_from_float;
    t[ENG_TYPE_Q8_0X16].from_float = q8_0x16_avx512_from_float;
    t[ENG_TYPE_Q8_K].from_float = q8_k_avx512_from_float;
    t[ENG_TYPE_F16].vec_dot = f16_avx512_vec_dot;
    t[ENG_TYPE_F16].vec_dot_rows = f16_avx512_vec_dot_rows;
    t[ENG_TYPE_F16].vec_dot_cols = f16_avx512_vec_dot_cols;
    t[ENG_TYPE_Q5_0].vec_dot = q5_0_avx512_vec_dot;
    t[ENG_TYPE_Q5_0].vec_dot_cols = q5_0_avx512_vec_dot_cols;
    t[ENG_TYPE_Q5_0].vec_dot_rows = q5_0_avx512_vec_dot_rows;
    t[ENG_TYPE_Q5_0].vec_dot_type = ENG_TYPE_Q8_0X;
    t[ENG_TYPE_IQ4_NL].vec_dot = iq4_nl_avx512_vec_dot;
    t[ENG_TYPE_IQ4_NL].vec_dot_cols = iq4_nl_avx512_vec_dot_cols;
    t[ENG_TYPE_IQ4_NL].vec_dot_rows = iq4_nl_avx512_vec_dot_rows;
    t[ENG_TYPE_IQ4_NL].vec_dot_type = ENG_TYPE_Q8_0X;
    t[ENG_TYPE_Q8_0].vec_dot = q8_0_avx512_vec_dot;
    t[ENG_TYPE_Q8_0].vec_dot_cols = q8_0_avx512_vec_dot_cols;
    t[ENG_TYPE_Q8_0].vec_dot_rows = q8_0_avx512_vec_dot_rows;
    t[ENG_TYPE_Q8_0].vec_dot_type = ENG_TYPE_Q8_0X;
    t[ENG_TYPE_Q4_K].vec_dot = q4_k_avx512_vec_dot;
    t[ENG_TYPE_Q4_K].vec_dot_cols = q4_k_avx512_vec_dot_cols;
    t[ENG_TYPE_Q4_K].vec_dot_rows = q4_k_avx512_vec_dot_rows;
    t[ENG_TYPE_Q3_K].vec_dot = q3_k_avx512_vec_dot;
    t[ENG_TYPE_Q3_K].vec_dot_cols = q3_k_avx512_vec_dot_cols;
    t[ENG_TYPE_Q3_K].vec_dot_rows = q3_k_avx512_vec_dot_rows;
    t[ENG_TYPE_Q5_K].vec_dot = q5_k_avx512_vec_dot;
    t[ENG_TYPE_Q5_K].vec_dot_cols = q5_k_avx512_vec_dot_cols;
    t[ENG_TYPE_Q5_K].vec_dot_rows = q5_k_avx512_vec_dot_rows;
    t[ENG_TYPE_Q6_K].vec_dot = q6_k_avx512_vec_dot;
    t[ENG_TYPE_Q6_K].vec_dot_cols = q6_k_avx512_vec_dot_cols;
    t[ENG_TYPE_Q6_K].vec_dot_rows = q6_k_avx512_vec_dot_rows;
    /* With these column kernels q8_0 and q6_k no longer gain from repacking for the tile
     * kernel at any batch measured (L1B 2 threads, tile from 12 rows against columns only:
     * q8_0 pp64 105 vs 116 tok/s, pp256 108 vs 127, 16 sequences 70 vs 94; Q4_K_M, whose q6_k
     * rows are the output and half of attn_v / ffn_down, pp64 143 vs 147, pp256 132 vs 145,
     * 16 sequences 122 vs 124-134). */
    t[ENG_TYPE_Q6_K].tile_min_b = t[ENG_TYPE_Q8_0].tile_min_b = 1 << 30;
    /* The same for q3_k, q5_k, iq4_nl and iq4_xs (L1B 2 threads, tile path against columns:
     * q3_k pp64 72 vs 151 tok/s, pp256 104 vs 142; q5_k pp64 62 vs 147, pp256 79 vs 138; 16
     * sequences even; iq4_nl pp64 84-86 vs 121-129; iq4_xs pp64 81-86 vs 126-134). */
    t[ENG_TYPE_Q3_K].tile_min_b = t[ENG_TYPE_Q5_K].tile_min_b = 1 << 30;
    t[ENG_TYPE_IQ4_NL].tile_min_b = t[ENG_TYPE_IQ4_XS].tile_min_b = 1 << 30;
    t[ENG_TYPE_Q5_0].tile_min_b = 1 << 30; /* pp64 71-74 vs 111-119 */
    t[ENG_TYPE_IQ4_XS].vec_dot = iq4_xs_avx512_vec_dot;
    t[ENG_TYPE_IQ4_XS].vec_dot_cols = iq4_xs_avx512_vec_dot_cols;
    t[ENG_TYPE_IQ4_XS].vec_dot_rows = iq4_xs_avx512_vec_dot_rows;
}
