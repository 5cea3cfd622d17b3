/*
 * quants_neon_body.h — the aarch64 kernels, written once and compiled twice: by quants_neon.c
 * with a plain-NEON 8-bit dot product (SMULL + SADALP), and by quants_arm.c with the dot-product
 * extension (SDOT). The includer defines KDOT(acc, x, y) (acc: int32x4_t += products of the
 * int8x16_t x and y, four per lane) and KN(name) (the function name suffix).
 *
 * Same contract as quants_x86.c: quantizers give the reference's bytes exactly (vrndaq = roundf,
 * vcvtnq = round to nearest even), dot products compute the same integer block sums.
 */
#include <arm_neon.h>
#include <string.h>

static inline float KN(h2f)(uint16_t h) {
    __fp16 f;
    memcpy(&f, &h, 2);
    return (float)f;
}

/* ---- F32 / F16 / BF16 ---- */

static void KN(f32_vec_dot)(int64_t n, float *s, const void *vw, const void *va) {
    const float *w = vw, *a = va;
    float32x4_t a0 = vdupq_n_f32(0), a1 = a0, a2 = a0, a3 = a0;
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) { /* hot loop */
        a0 = vfmaq_f32(a0, vld1q_f32(w + i), vld1q_f32(a + i));
        a1 = vfmaq_f32(a1, vld1q_f32(w + i + 4), vld1q_f32(a + i + 4));
        a2 = vfmaq_f32(a2, vld1q_f32(w + i + 8), vld1q_f32(a + i + 8));
        a3 = vfmaq_f32(a3, vld1q_f32(w + i + 12), vld1q_f32(a + i + 12));
    }
    float sum = vaddvq_f32(vaddq_f32(vaddq_f32(a0, a1), vaddq_f32(a2, a3)));
    for (; i < n; i++) sum += w[i] * a[i];
    *s = sum;
}

static inline float32x4_t KN(ld_f16)(const uint16_t *p) {
    return vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(p)));
}

/* An f16 row · NC f32 activation rows (a_stride bytes apart): four weights per conversion, done
 * once for all columns; four accumulators per column (16 of the 32 registers at four columns).
 * Each column's arithmetic is the same whatever NC is (test-simd: vec_dot_cols equals vec_dot
 * bit for bit). */
static inline __attribute__((always_inline)) void KN(f16_cols)(const int NC, int64_t n, float *s,
                                                               size_t s_stride, const void *vw,
                                                               const void *va, size_t a_stride) {
    const uint16_t *w = vw;
    const float *a[4];
    float32x4_t acc[4][4];
#pragma GCC unroll 4
    for (int c = 0; c < NC; c++) {
        a[c] = (const float *)((const uint8_t *)va + (size_t)c * a_stride);
#pragma GCC unroll 4
        for (int k = 0; k < 4; k++) acc[c][k] = vdupq_n_f32(0);
    }
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) { /* hot loop */
#pragma GCC unroll 4
        for (int k = 0; k < 4; k++) {
            const float32x4_t wv = KN(ld_f16)(w + i + 4 * k);
#pragma GCC unroll 4
            for (int c = 0; c < NC; c++)
                acc[c][k] = vfmaq_f32(acc[c][k], wv, vld1q_f32(a[c] + i + 4 * k));
        }
    }
#pragma GCC unroll 4
    for (int c = 0; c < NC; c++) {
        float sum =
            vaddvq_f32(vaddq_f32(vaddq_f32(acc[c][0], acc[c][1]), vaddq_f32(acc[c][2], acc[c][3])));
        for (int64_t j = i; j < n; j++) sum += KN(h2f)(w[j]) * a[c][j];
        s[(size_t)c * s_stride] = sum;
    }
}

/* vec_dot, vec_dot_rows and vec_dot_cols of a column template (quants.h's ENG_COLS_FNS), named
 * with this level's suffix. */
#define NEON_COLS_ENTRY_POINTS(name, tmpl)                                                         \
    ENG_COLS_FNS(KN(name##_vec_dot), KN(name##_vec_dot_rows), KN(name##_vec_dot_cols), tmpl)
NEON_COLS_ENTRY_POINTS(f16, KN(f16_cols))

static void KN(f16_to_float)(const void *vx, float *y, int64_t n) {
    const uint16_t *x = vx;
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) vst1q_f32(y + i, KN(ld_f16)(x + i));
    for (; i < n; i++) y[i] = KN(h2f)(x[i]);
}

static inline float32x4_t KN(ld_bf16)(const uint16_t *p) {
    return vreinterpretq_f32_u32(vshll_n_u16(vld1_u16(p), 16));
}

static void KN(bf16_vec_dot)(int64_t n, float *s, const void *vw, const void *va) {
    const uint16_t *w = vw;
    const float *a = va;
    float32x4_t a0 = vdupq_n_f32(0), a1 = a0;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) { /* hot loop */
        a0 = vfmaq_f32(a0, KN(ld_bf16)(w + i), vld1q_f32(a + i));
        a1 = vfmaq_f32(a1, KN(ld_bf16)(w + i + 4), vld1q_f32(a + i + 4));
    }
    float sum = vaddvq_f32(vaddq_f32(a0, a1));
    for (; i < n; i++) sum += eng_bf16_to_fp32(w[i]) * a[i];
    *s = sum;
}

/* ---- activation quantizers ---- */

/* 32 floats → int8 with scale amax/127 (roundf semantics); returns d, sets *sum. */
static inline float KN(quant32)(const float *x, int8_t *qs, int *sum) {
    float32x4_t v[8];
    float32x4_t m = vdupq_n_f32(0);
    for (int k = 0; k < 8; k++) {
        v[k] = vld1q_f32(x + 4 * k);
        m = vmaxq_f32(m, vabsq_f32(v[k]));
    }
    float amax = vmaxvq_f32(m);
    float d = amax / 127.0f;
    float id = d ? 1.0f / d : 0.0f;
    int32x4_t acc = vdupq_n_s32(0);
    for (int k = 0; k < 8; k += 2) {
        int32x4_t i0 = vcvtq_s32_f32(vrndaq_f32(vmulq_n_f32(v[k], id)));
        int32x4_t i1 = vcvtq_s32_f32(vrndaq_f32(vmulq_n_f32(v[k + 1], id)));
        acc = vaddq_s32(acc, vaddq_s32(i0, i1));
        int16x8_t h = vcombine_s16(vqmovn_s32(i0), vqmovn_s32(i1));
        vst1_s8(qs + 4 * k, vqmovn_s16(h));
    }
    *sum = vaddvq_s32(acc);
    return d;
}

static void KN(q8_0_from_float)(const float *x, void *vy, int64_t n) {
    struct eng_block_q8_0 *y = vy;
    int sum;
    for (int64_t i = 0; i < n / ENG_QK8_0; i++)
        y[i].d = eng_fp32_to_fp16(KN(quant32)(x + i * ENG_QK8_0, y[i].qs, &sum));
}

static void KN(q8_1_from_float)(const float *x, void *vy, int64_t n) {
    struct eng_block_q8_1 *y = vy;
    for (int64_t i = 0; i < n / ENG_QK8_1; i++) {
        int sum;
        float d = KN(quant32)(x + i * ENG_QK8_1, y[i].qs, &sum);
        y[i].d = eng_fp32_to_fp16(d);
        y[i].s = eng_fp32_to_fp16((float)sum * d);
    }
}

static void KN(q8_k_from_float)(const float *x, void *vy, int64_t n) {
    struct eng_block_q8_k *y = vy;
    for (int64_t i = 0; i < n / ENG_QK_K; i++, x += ENG_QK_K) {
        float32x4_t m = vdupq_n_f32(0);
        for (int j = 0; j < ENG_QK_K; j += 4) m = vmaxq_f32(m, vabsq_f32(vld1q_f32(x + j)));
        float amax = vmaxvq_f32(m);
        if (!amax) {
            memset(&y[i], 0, sizeof(y[i]));
            continue;
        }
        float max = amax;
        for (int j = 0; j < ENG_QK_K; j++) /* first element of largest magnitude, as the ref */
            if (fabsf(x[j]) == amax) {
                max = x[j];
                break;
            }
        float iscale = -127.0f / max;
        for (int j = 0; j < ENG_QK_K; j += 16) {
            int32x4_t q0 = vcvtnq_s32_f32(vmulq_n_f32(vld1q_f32(x + j), iscale));
            int32x4_t q1 = vcvtnq_s32_f32(vmulq_n_f32(vld1q_f32(x + j + 4), iscale));
            int32x4_t q2 = vcvtnq_s32_f32(vmulq_n_f32(vld1q_f32(x + j + 8), iscale));
            int32x4_t q3 = vcvtnq_s32_f32(vmulq_n_f32(vld1q_f32(x + j + 12), iscale));
            y[i].bsums[j / 16] =
                (int16_t)vaddvq_s32(vaddq_s32(vaddq_s32(q0, q1), vaddq_s32(q2, q3)));
            int16x8_t h0 = vcombine_s16(vqmovn_s32(q0), vqmovn_s32(q1));
            int16x8_t h1 = vcombine_s16(vqmovn_s32(q2), vqmovn_s32(q3));
            vst1q_s8(y[i].qs + j, vcombine_s8(vqmovn_s16(h0), vqmovn_s16(h1)));
        }
        y[i].d = 1.0f / iscale;
    }
}

/* ---- 32-element blocks ---- */

/* The 32 nibbles of a q4-style block as two int8x16 (elements 0..15, 16..31). */
static inline void KN(nibbles)(const uint8_t *qs, int8x16_t *lo, int8x16_t *hi) {
    uint8x16_t b = vld1q_u8(qs);
    *lo = vreinterpretq_s8_u8(vandq_u8(b, vdupq_n_u8(0x0F)));
    *hi = vreinterpretq_s8_u8(vshrq_n_u8(b, 4));
}

/* A q8_0 or q4_0 (q4) row · NC Q8_0 activation rows (a_stride bytes apart): each block's codes
 * loaded (q4_0: unpacked, 8 taken off) once for all columns. Each column's arithmetic is the same
 * whatever NC is (vec_dot is NC = 1; test-simd checks vec_dot_cols against it bit for bit). */
static inline __attribute__((always_inline)) void KN(b32_cols)(const int NC, const bool q4,
                                                               int64_t n, float *s, size_t s_stride,
                                                               const void *vw, const void *va,
                                                               size_t a_stride) {
    const struct eng_block_q8_0 *a[4];
    const size_t bb = q4 ? sizeof(struct eng_block_q4_0) : sizeof(struct eng_block_q8_0);
    const int8x16_t eight = vdupq_n_s8(8);
    float32x4_t acc[4];
#pragma GCC unroll 4
    for (int c = 0; c < NC; c++) {
        a[c] = (const struct eng_block_q8_0 *)((const uint8_t *)va + (size_t)c * a_stride);
        acc[c] = vdupq_n_f32(0);
    }
    for (int64_t i = 0; i < n / 32; i++) { /* hot loop */
        const uint8_t *blk = (const uint8_t *)vw + (size_t)i * bb;
        int8x16_t w0, w1;
        float dw;
        if (q4) {
            const struct eng_block_q4_0 *b = (const struct eng_block_q4_0 *)blk;
            KN(nibbles)(b->qs, &w0, &w1);
            w0 = vsubq_s8(w0, eight), w1 = vsubq_s8(w1, eight);
            dw = KN(h2f)(b->d);
        } else {
            const struct eng_block_q8_0 *b = (const struct eng_block_q8_0 *)blk;
            w0 = vld1q_s8(b->qs), w1 = vld1q_s8(b->qs + 16);
            dw = KN(h2f)(b->d);
        }
#pragma GCC unroll 4
        for (int c = 0; c < NC; c++) {
            int32x4_t p = KDOT(vdupq_n_s32(0), w0, vld1q_s8(a[c][i].qs));
            p = KDOT(p, w1, vld1q_s8(a[c][i].qs + 16));
            acc[c] = vfmaq_n_f32(acc[c], vcvtq_f32_s32(p), dw * KN(h2f)(a[c][i].d));
        }
    }
#pragma GCC unroll 4
    for (int c = 0; c < NC; c++) s[(size_t)c * s_stride] = vaddvq_f32(acc[c]);
}
#define NEON_Q8_0_COLS(NC, ...) KN(b32_cols)(NC, false, __VA_ARGS__)
#define NEON_Q4_0_COLS(NC, ...) KN(b32_cols)(NC, true, __VA_ARGS__)
NEON_COLS_ENTRY_POINTS(q8_0, NEON_Q8_0_COLS)
NEON_COLS_ENTRY_POINTS(q4_0, NEON_Q4_0_COLS)

static void KN(q4_1_vec_dot)(int64_t n, float *s, const void *vw, const void *va) {
    const struct eng_block_q4_1 *w = vw;
    const struct eng_block_q8_1 *a = va;
    float32x4_t acc = vdupq_n_f32(0);
    float summ = 0.0f;
    for (int64_t i = 0; i < n / ENG_QK4_1; i++) { /* hot loop */
        int8x16_t lo, hi;
        KN(nibbles)(w[i].qs, &lo, &hi);
        int32x4_t p = KDOT(vdupq_n_s32(0), lo, vld1q_s8(a[i].qs));
        p = KDOT(p, hi, vld1q_s8(a[i].qs + 16));
        acc = vfmaq_n_f32(acc, vcvtq_f32_s32(p), KN(h2f)(w[i].d) * KN(h2f)(a[i].d));
        summ += KN(h2f)(w[i].m) * KN(h2f)(a[i].s);
    }
    *s = vaddvq_f32(acc) + summ;
}

/* 0x10 in byte j where bit j of the 32-bit qh is set, for elements 0..15 and 16..31. */
static inline void KN(fifth_bits)(const uint8_t qh[4], uint8x16_t *lo, uint8x16_t *hi) {
    static const uint8_t bit[16] = {1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128};
    uint8x16_t m = vld1q_u8(bit);
    uint8x16_t b0 = vcombine_u8(vdup_n_u8(qh[0]), vdup_n_u8(qh[1]));
    uint8x16_t b1 = vcombine_u8(vdup_n_u8(qh[2]), vdup_n_u8(qh[3]));
    *lo = vandq_u8(vtstq_u8(b0, m), vdupq_n_u8(0x10));
    *hi = vandq_u8(vtstq_u8(b1, m), vdupq_n_u8(0x10));
}

static void KN(q5_0_vec_dot)(int64_t n, float *s, const void *vw, const void *va) {
    const struct eng_block_q5_0 *w = vw;
    const struct eng_block_q8_0 *a = va;
    const int8x16_t sixteen = vdupq_n_s8(16);
    float32x4_t acc = vdupq_n_f32(0);
    for (int64_t i = 0; i < n / ENG_QK5_0; i++) { /* hot loop */
        int8x16_t lo, hi;
        uint8x16_t h0, h1;
        KN(nibbles)(w[i].qs, &lo, &hi);
        KN(fifth_bits)(w[i].qh, &h0, &h1);
        lo = vsubq_s8(vorrq_s8(lo, vreinterpretq_s8_u8(h0)), sixteen);
        hi = vsubq_s8(vorrq_s8(hi, vreinterpretq_s8_u8(h1)), sixteen);
        int32x4_t p = KDOT(vdupq_n_s32(0), lo, vld1q_s8(a[i].qs));
        p = KDOT(p, hi, vld1q_s8(a[i].qs + 16));
        acc = vfmaq_n_f32(acc, vcvtq_f32_s32(p), KN(h2f)(w[i].d) * KN(h2f)(a[i].d));
    }
    *s = vaddvq_f32(acc);
}

static void KN(q5_1_vec_dot)(int64_t n, float *s, const void *vw, const void *va) {
    const struct eng_block_q5_1 *w = vw;
    const struct eng_block_q8_1 *a = va;
    float32x4_t acc = vdupq_n_f32(0);
    float summ = 0.0f;
    for (int64_t i = 0; i < n / ENG_QK5_1; i++) { /* hot loop */
        int8x16_t lo, hi;
        uint8x16_t h0, h1;
        KN(nibbles)(w[i].qs, &lo, &hi);
        KN(fifth_bits)(w[i].qh, &h0, &h1);
        lo = vorrq_s8(lo, vreinterpretq_s8_u8(h0));
        hi = vorrq_s8(hi, vreinterpretq_s8_u8(h1));
        int32x4_t p = KDOT(vdupq_n_s32(0), lo, vld1q_s8(a[i].qs));
        p = KDOT(p, hi, vld1q_s8(a[i].qs + 16));
        acc = vfmaq_n_f32(acc, vcvtq_f32_s32(p), KN(h2f)(w[i].d) * KN(h2f)(a[i].d));
        summ += KN(h2f)(w[i].m) * KN(h2f)(a[i].s);
    }
    *s = vaddvq_f32(acc) + summ;
}

static void KN(iq4_nl_vec_dot)(int64_t n, float *s, const void *vw, const void *va) {
    const struct eng_block_iq4_nl *w = vw;
    const struct eng_block_q8_0 *a = va;
    const int8x16_t tbl = vld1q_s8(eng_iq4nl_values);
    float32x4_t acc = vdupq_n_f32(0);
    for (int64_t i = 0; i < n / ENG_QK4_NL; i++) { /* hot loop */
        int8x16_t lo, hi;
        KN(nibbles)(w[i].qs, &lo, &hi);
        lo = vqtbl1q_s8(tbl, vreinterpretq_u8_s8(lo));
        hi = vqtbl1q_s8(tbl, vreinterpretq_u8_s8(hi));
        int32x4_t p = KDOT(vdupq_n_s32(0), lo, vld1q_s8(a[i].qs));
        p = KDOT(p, hi, vld1q_s8(a[i].qs + 16));
        acc = vfmaq_n_f32(acc, vcvtq_f32_s32(p), KN(h2f)(w[i].d) * KN(h2f)(a[i].d));
    }
    *s = vaddvq_f32(acc);
}

/* ---- k-quants × Q8_K ---- */

/* A q4_k or q5_k (q5) row · NC Q8_K activation rows: each superblock's scales decoded and its
 * codes unpacked (q5_k: fifth bits ored in) once for all columns; each column's arithmetic is
 * that of NC = 1 (vec_dot). */
static inline __attribute__((always_inline)) void KN(k45_cols)(const int NC, const bool q5,
                                                               int64_t n, float *s, size_t s_stride,
                                                               const void *vw, const void *va,
                                                               size_t a_stride) {
    const struct eng_block_q8_k *a[4];
    const size_t bb = q5 ? sizeof(struct eng_block_q5_k) : sizeof(struct eng_block_q4_k);
    const uint8x16_t m4 = vdupq_n_u8(0x0F), b4 = vdupq_n_u8(0x10);
    float sum[4];
#pragma GCC unroll 4
    for (int c = 0; c < NC; c++) {
        a[c] = (const struct eng_block_q8_k *)((const uint8_t *)va + (size_t)c * a_stride);
        sum[c] = 0.0f;
    }
    for (int64_t i = 0; i < n / ENG_QK_K; i++) { /* hot loop */
        const uint8_t *blk = (const uint8_t *)vw + (size_t)i * bb;
        const struct eng_block_q4_k *w4 = (const struct eng_block_q4_k *)blk;
        const struct eng_block_q5_k *w5 = (const struct eng_block_q5_k *)blk;
        uint8_t sc[8], mn[8];
        for (int j = 0; j < 8; j++)
            eng_k4_scale_min(j, q5 ? w5->scales : w4->scales, &sc[j], &mn[j]);
        int32x4_t acc[4];
#pragma GCC unroll 4
        for (int c = 0; c < NC; c++) acc[c] = vdupq_n_s32(0);
        const uint8_t *q = q5 ? w5->qs : w4->qs;
        uint8x16_t hb0 = vdupq_n_u8(0), hb1 = hb0;
        if (q5) hb0 = vld1q_u8(w5->qh), hb1 = vld1q_u8(w5->qh + 16);
        for (int j = 0; j < 4; j++, q += 32) {
            const uint8x16_t b0 = vld1q_u8(q), b1 = vld1q_u8(q + 16);
            uint8x16_t l0 = vandq_u8(b0, m4), l1 = vandq_u8(b1, m4);
            uint8x16_t u0 = vshrq_n_u8(b0, 4), u1 = vshrq_n_u8(b1, 4);
            if (q5) { /* 5th bits of sub-blocks 2j (bit 0 of hb) and 2j+1 (bit 1), to bit 4 */
                l0 = vorrq_u8(l0, vandq_u8(vshlq_n_u8(hb0, 4), b4));
                l1 = vorrq_u8(l1, vandq_u8(vshlq_n_u8(hb1, 4), b4));
                u0 = vorrq_u8(u0, vandq_u8(vshlq_n_u8(hb0, 3), b4));
                u1 = vorrq_u8(u1, vandq_u8(vshlq_n_u8(hb1, 3), b4));
                hb0 = vshrq_n_u8(hb0, 2), hb1 = vshrq_n_u8(hb1, 2);
            }
            const int8x16_t sl0 = vreinterpretq_s8_u8(l0), sl1 = vreinterpretq_s8_u8(l1),
                            su0 = vreinterpretq_s8_u8(u0), su1 = vreinterpretq_s8_u8(u1);
#pragma GCC unroll 4
            for (int c = 0; c < NC; c++) {
                const int8_t *y = a[c][i].qs + 64 * j;
                int32x4_t pl = KDOT(vdupq_n_s32(0), sl0, vld1q_s8(y));
                pl = KDOT(pl, sl1, vld1q_s8(y + 16));
                int32x4_t ph = KDOT(vdupq_n_s32(0), su0, vld1q_s8(y + 32));
                ph = KDOT(ph, su1, vld1q_s8(y + 48));
                acc[c] = vmlaq_n_s32(acc[c], pl, sc[2 * j]);
                acc[c] = vmlaq_n_s32(acc[c], ph, sc[2 * j + 1]);
            }
        }
        const float dw = KN(h2f)(q5 ? w5->d : w4->d), dmin = KN(h2f)(q5 ? w5->dmin : w4->dmin);
#pragma GCC unroll 4
        for (int c = 0; c < NC; c++) {
            int32_t msum = 0;
            for (int j = 0; j < 8; j++)
                msum += mn[j] * (a[c][i].bsums[2 * j] + a[c][i].bsums[2 * j + 1]);
            sum[c] += a[c][i].d * (dw * (float)vaddvq_s32(acc[c]) - dmin * (float)msum);
        }
    }
#pragma GCC unroll 4
    for (int c = 0; c < NC; c++) s[(size_t)c * s_stride] = sum[c];
}
#define NEON_Q4_K_COLS(NC, ...) KN(k45_cols)(NC, false, __VA_ARGS__)
#define NEON_Q5_K_COLS(NC, ...) KN(k45_cols)(NC, true, __VA_ARGS__)
NEON_COLS_ENTRY_POINTS(q4_k, NEON_Q4_K_COLS)
NEON_COLS_ENTRY_POINTS(q5_k, NEON_Q5_K_COLS)

/* A q6_k row · NC Q8_K activation rows: each sixteen codes rebuilt once for all columns; each
 * column's arithmetic is that of NC = 1 (vec_dot). */
static inline __attribute__((always_inline)) void KN(q6_k_cols)(const int NC, int64_t n, float *s,
                                                                size_t s_stride, const void *vw,
                                                                const void *va, size_t a_stride) {
    const struct eng_block_q6_k *w = vw;
    const struct eng_block_q8_k *a[4];
    const uint8x16_t m4 = vdupq_n_u8(0x0F), m3 = vdupq_n_u8(0x03), m30 = vdupq_n_u8(0x30);
    const int8x16_t k32 = vdupq_n_s8(32);
    float sum[4];
#pragma GCC unroll 4
    for (int c = 0; c < NC; c++) {
        a[c] = (const struct eng_block_q8_k *)((const uint8_t *)va + (size_t)c * a_stride);
        sum[c] = 0.0f;
    }
    for (int64_t i = 0; i < n / ENG_QK_K; i++) { /* hot loop */
        const uint8_t *ql = w[i].ql, *qh = w[i].qh;
        const int8_t *sc = w[i].scales;
        int32x4_t acc[4];
#pragma GCC unroll 4
        for (int c = 0; c < NC; c++) acc[c] = vdupq_n_s32(0);
        for (int half = 0; half < 2; half++, ql += 64, qh += 32, sc += 8) {
            for (int k = 0; k < 2; k++) { /* elements l = 16k .. 16k+15 of each quarter */
                uint8x16_t l0 = vld1q_u8(ql + 16 * k), l1 = vld1q_u8(ql + 32 + 16 * k);
                uint8x16_t h = vld1q_u8(qh + 16 * k);
                const int8x16_t q1 = vsubq_s8(
                    vreinterpretq_s8_u8(vorrq_u8(vandq_u8(l0, m4), vshlq_n_u8(vandq_u8(h, m3), 4))),
                    k32);
                const int8x16_t q2 =
                    vsubq_s8(vreinterpretq_s8_u8(
                                 vorrq_u8(vandq_u8(l1, m4), vandq_u8(vshlq_n_u8(h, 2), m30))),
                             k32);
                const int8x16_t q3 = vsubq_s8(
                    vreinterpretq_s8_u8(vorrq_u8(vshrq_n_u8(l0, 4), vandq_u8(h, m30))), k32);
                const int8x16_t q4 =
                    vsubq_s8(vreinterpretq_s8_u8(
                                 vorrq_u8(vshrq_n_u8(l1, 4), vandq_u8(vshrq_n_u8(h, 2), m30))),
                             k32);
#pragma GCC unroll 4
                for (int c = 0; c < NC; c++) {
                    const int8_t *y = a[c][i].qs + 128 * half + 16 * k;
                    int32x4_t p1 = KDOT(vdupq_n_s32(0), q1, vld1q_s8(y));
                    int32x4_t p2 = KDOT(vdupq_n_s32(0), q2, vld1q_s8(y + 32));
                    int32x4_t p3 = KDOT(vdupq_n_s32(0), q3, vld1q_s8(y + 64));
                    int32x4_t p4 = KDOT(vdupq_n_s32(0), q4, vld1q_s8(y + 96));
                    acc[c] = vmlaq_n_s32(acc[c], p1, sc[k]);
                    acc[c] = vmlaq_n_s32(acc[c], p2, sc[2 + k]);
                    acc[c] = vmlaq_n_s32(acc[c], p3, sc[4 + k]);
                    acc[c] = vmlaq_n_s32(acc[c], p4, sc[6 + k]);
                }
            }
        }
        const float dw = KN(h2f)(w[i].d);
#pragma GCC unroll 4
        for (int c = 0; c < NC; c++) sum[c] += a[c][i].d * dw * (float)vaddvq_s32(acc[c]);
    }
#pragma GCC unroll 4
    for (int c = 0; c < NC; c++) s[(size_t)c * s_stride] = sum[c];
}
NEON_COLS_ENTRY_POINTS(q6_k, KN(q6_k_cols))

static void KN(q3_k_vec_dot)(int64_t n, float *s, const void *vw, const void *va) {
    const struct eng_block_q3_k *w = vw;
    const struct eng_block_q8_k *a = va;
    const uint8x16_t m3 = vdupq_n_u8(0x03), b2 = vdupq_n_u8(0x04);
    const int8x16_t k4 = vdupq_n_s8(4);
    float sum = 0.0f;
    for (int64_t i = 0; i < n / ENG_QK_K; i++) { /* hot loop */
        int8_t sc[16];
        eng_q3k_scales(w[i].scales, sc);
        uint8x16_t hm0 = vld1q_u8(w[i].hmask), hm1 = vld1q_u8(w[i].hmask + 16);
        const uint8_t *q = w[i].qs;
        const int8_t *y = a[i].qs;
        int32x4_t acc = vdupq_n_s32(0);
        int is = 0;
        for (int half = 0; half < 2; half++, q += 32) {
            uint8x16_t q0 = vld1q_u8(q), q1 = vld1q_u8(q + 16);
            for (int k = 0; k < 4; k++, y += 32, is += 2) {
                uint8x16_t bit = vdupq_n_u8((uint8_t)(1 << (4 * half + k)));
                int8x16_t v0 = vreinterpretq_s8_u8(
                    vorrq_u8(vandq_u8(q0, m3), vandq_u8(vtstq_u8(hm0, bit), b2)));
                int8x16_t v1 = vreinterpretq_s8_u8(
                    vorrq_u8(vandq_u8(q1, m3), vandq_u8(vtstq_u8(hm1, bit), b2)));
                q0 = vshrq_n_u8(q0, 2);
                q1 = vshrq_n_u8(q1, 2);
                int32x4_t p0 = KDOT(vdupq_n_s32(0), vsubq_s8(v0, k4), vld1q_s8(y));
                int32x4_t p1 = KDOT(vdupq_n_s32(0), vsubq_s8(v1, k4), vld1q_s8(y + 16));
                acc = vmlaq_n_s32(acc, p0, sc[is]);
                acc = vmlaq_n_s32(acc, p1, sc[is + 1]);
            }
        }
        sum += a[i].d * KN(h2f)(w[i].d) * (float)vaddvq_s32(acc);
    }
    *s = sum;
}

static void KN(q2_k_vec_dot)(int64_t n, float *s, const void *vw, const void *va) {
    const struct eng_block_q2_k *w = vw;
    const struct eng_block_q8_k *a = va;
    const uint8x16_t m3 = vdupq_n_u8(0x03);
    float sum = 0.0f;
    for (int64_t i = 0; i < n / ENG_QK_K; i++) { /* hot loop */
        const uint8_t *sc = w[i].scales, *q = w[i].qs;
        const int8_t *y = a[i].qs;
        int32_t msum = 0;
        for (int g = 0; g < 16; g++) msum += (sc[g] >> 4) * a[i].bsums[g];
        int32x4_t acc = vdupq_n_s32(0);
        int is = 0;
        for (int half = 0; half < 2; half++, q += 32) {
            uint8x16_t q0 = vld1q_u8(q), q1 = vld1q_u8(q + 16);
            for (int k = 0; k < 4; k++, y += 32, is += 2) {
                int32x4_t p0 =
                    KDOT(vdupq_n_s32(0), vreinterpretq_s8_u8(vandq_u8(q0, m3)), vld1q_s8(y));
                int32x4_t p1 =
                    KDOT(vdupq_n_s32(0), vreinterpretq_s8_u8(vandq_u8(q1, m3)), vld1q_s8(y + 16));
                q0 = vshrq_n_u8(q0, 2);
                q1 = vshrq_n_u8(q1, 2);
                acc = vmlaq_n_s32(acc, p0, sc[is] & 0xF);
                acc = vmlaq_n_s32(acc, p1, sc[is + 1] & 0xF);
            }
        }
        sum +=
            a[i].d * (KN(h2f)(w[i].d) * (float)vaddvq_s32(acc) - KN(h2f)(w[i].dmin) * (float)msum);
    }
    *s = sum;
}

static void KN(iq4_xs_vec_dot)(int64_t n, float *s, const void *vw, const void *va) {
    const struct eng_block_iq4_xs *w = vw;
    const struct eng_block_q8_k *a = va;
    const int8x16_t tbl = vld1q_s8(eng_iq4nl_values);
    float sum = 0.0f;
    for (int64_t i = 0; i < n / ENG_QK_K; i++) { /* hot loop */
        const uint8_t *qs = w[i].qs;
        const int8_t *y = a[i].qs;
        int32x4_t acc = vdupq_n_s32(0);
        for (int ib = 0; ib < 8; ib++, qs += 16, y += 32) {
            int ls = (((w[i].scales_l[ib / 2] >> (4 * (ib % 2))) & 0xF) |
                      (((w[i].scales_h >> (2 * ib)) & 3) << 4)) -
                     32;
            int8x16_t lo, hi;
            KN(nibbles)(qs, &lo, &hi);
            int32x4_t p =
                KDOT(vdupq_n_s32(0), vqtbl1q_s8(tbl, vreinterpretq_u8_s8(lo)), vld1q_s8(y));
            p = KDOT(p, vqtbl1q_s8(tbl, vreinterpretq_u8_s8(hi)), vld1q_s8(y + 16));
            acc = vmlaq_n_s32(acc, p, ls);
        }
        sum += a[i].d * KN(h2f)(w[i].d) * (float)vaddvq_s32(acc);
    }
    *s = sum;
}

/* Installs the integer kernels (those that depend on KDOT). */
__attribute__((unused)) static void KN(install_int)(struct eng_type_traits *t) {
    t[ENG_TYPE_Q8_0].vec_dot = KN(q8_0_vec_dot);
    t[ENG_TYPE_Q8_0].vec_dot_cols = KN(q8_0_vec_dot_cols);
    t[ENG_TYPE_Q8_0].vec_dot_rows = KN(q8_0_vec_dot_rows);
    t[ENG_TYPE_Q4_0].vec_dot = KN(q4_0_vec_dot);
    t[ENG_TYPE_Q4_0].vec_dot_cols = KN(q4_0_vec_dot_cols);
    t[ENG_TYPE_Q4_0].vec_dot_rows = KN(q4_0_vec_dot_rows);
    t[ENG_TYPE_Q4_1].vec_dot = KN(q4_1_vec_dot);
    t[ENG_TYPE_Q5_0].vec_dot = KN(q5_0_vec_dot);
    t[ENG_TYPE_Q5_1].vec_dot = KN(q5_1_vec_dot);
    t[ENG_TYPE_IQ4_NL].vec_dot = KN(iq4_nl_vec_dot);
    t[ENG_TYPE_Q2_K].vec_dot = KN(q2_k_vec_dot);
    t[ENG_TYPE_Q3_K].vec_dot = KN(q3_k_vec_dot);
    t[ENG_TYPE_Q4_K].vec_dot = KN(q4_k_vec_dot);
    t[ENG_TYPE_Q4_K].vec_dot_cols = KN(q4_k_vec_dot_cols);
    t[ENG_TYPE_Q4_K].vec_dot_rows = KN(q4_k_vec_dot_rows);
    t[ENG_TYPE_Q5_K].vec_dot = KN(q5_k_vec_dot);
    t[ENG_TYPE_Q5_K].vec_dot_cols = KN(q5_k_vec_dot_cols);
    t[ENG_TYPE_Q5_K].vec_dot_rows = KN(q5_k_vec_dot_rows);
    t[ENG_TYPE_Q6_K].vec_dot = KN(q6_k_vec_dot);
    t[ENG_TYPE_Q6_K].vec_dot_cols = KN(q6_k_vec_dot_cols);
    t[ENG_TYPE_Q6_K].vec_dot_rows = KN(q6_k_vec_dot_rows);
    t[ENG_TYPE_IQ4_XS].vec_dot = KN(iq4_xs_vec_dot);
}

/* Installs the float kernels and the quantizers (no KDOT). */
__attribute__((unused)) static void KN(install_float)(struct eng_type_traits *t) {
    t[ENG_TYPE_F32].vec_dot = KN(f32_vec_dot);
    t[ENG_TYPE_F16].vec_dot = KN(f16_vec_dot);
    t[ENG_TYPE_F16].vec_dot_cols = KN(f16_vec_dot_cols);
    t[ENG_TYPE_F16].vec_dot_rows = KN(f16_vec_dot_rows);
    t[ENG_TYPE_F16].to_float = KN(f16_to_float);
    t[ENG_TYPE_BF16].vec_dot = KN(bf16_vec_dot);
    t[ENG_TYPE_Q8_0].from_float = KN(q8_0_from_float);
    t[ENG_TYPE_Q8_1].from_float = KN(q8_1_from_float);
    t[ENG_TYPE_Q8_K].from_float = KN(q8_k_from_float);
}
