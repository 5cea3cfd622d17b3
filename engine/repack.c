/*
 * repack.c — the prefill form of every quantized weight format: a row of n weights becomes n
 * signed 8-bit codes q plus one scale s (and, for formats with minimums, one minimum m) per 16
 * consecutive weights, with x[i] = s[i/16] * q[i] + m[i/16] — the value to_float gives, up to
 * the rounding of that one multiply-add. Every format maps onto it exactly because all of them
 * are integer codes times a per-16 or per-32 scale (k-quant sub-block scales are folded into s).
 *
 * The tile kernels of gemm.c multiply these codes with 8-bit activations, so one kernel serves
 * all formats in prefill; the repacking cost is paid once per weight row per batch. Codes stay
 * within ±127 so the kernels' sign trick cannot overflow. Scalar code: it runs once per weight
 * per batch, not per token. It does not touch F32/F16/BF16 (those take the sgemm path).
 */
#include "quants.h"

#include <string.h>

static inline float h2f(uint16_t h) {
    return eng_fp16_to_fp32(h);
}

static void q4_0_repack(const void *vw, int8_t *q, float *s, float *m, int64_t n) {
    const struct eng_block_q4_0 *x = vw;
    for (int64_t i = 0; i < n / 32; i++, q += 32, s += 2) {
        s[0] = s[1] = h2f(x[i].d);
        for (int j = 0; j < 16; j++) {
            q[j] = (int8_t)((x[i].qs[j] & 0xF) - 8);
            q[j + 16] = (int8_t)((x[i].qs[j] >> 4) - 8);
        }
    }
}

static void q8_0_repack(const void *vw, int8_t *q, float *s, float *m, int64_t n) {
    const struct eng_block_q8_0 *x = vw;
    for (int64_t i = 0; i < n / 32; i++, q += 32, s += 2) {
        s[0] = s[1] = h2f(x[i].d);
        memcpy(q, x[i].qs, 32);
    }
}

static void q4_1_repack(const void *vw, int8_t *q, float *s, float *m, int64_t n) {
    const struct eng_block_q4_1 *x = vw;
    for (int64_t i = 0; i < n / 32; i++, q += 32, s += 2, m += 2) {
        s[0] = s[1] = h2f(x[i].d);
        m[0] = m[1] = h2f(x[i].m);
        for (int j = 0; j < 16; j++) {
            q[j] = (int8_t)(x[i].qs[j] & 0xF);
            q[j + 16] = (int8_t)(x[i].qs[j] >> 4);
        }
    }
}

/* The 32 five-bit values (0..31) of a q5 block. */
static void q5_codes(const uint8_t qh4[4], const uint8_t qs[16], int bias, int8_t *q) {
    uint32_t qh;
    memcpy(&qh, qh4, 4);
    for (int j = 0; j < 16; j++) {
        q[j] = (int8_t)(((qs[j] & 0xF) | (((qh >> j) & 1) << 4)) - bias);
        q[j + 16] = (int8_t)(((qs[j] >> 4) | (((qh >> (j + 16)) & 1) << 4)) - bias);
    }
}

static void q5_0_repack(const void *vw, int8_t *q, float *s, float *m, int64_t n) {
    const struct eng_block_q5_0 *x = vw;
    for (int64_t i = 0; i < n / 32; i++, q += 32, s += 2) {
        s[0] = s[1] = h2f(x[i].d);
        q5_codes(x[i].qh, x[i].qs, 16, q);
    }
}

static void q5_1_repack(const void *vw, int8_t *q, float *s, float *m, int64_t n) {
    const struct eng_block_q5_1 *x = vw;
    for (int64_t i = 0; i < n / 32; i++, q += 32, s += 2, m += 2) {
        s[0] = s[1] = h2f(x[i].d);
        m[0] = m[1] = h2f(x[i].m);
        q5_codes(x[i].qh, x[i].qs, 0, q);
    }
}

static void iq4_nl_repack(const void *vw, int8_t *q, float *s, float *m, int64_t n) {
    const struct eng_block_iq4_nl *x = vw;
    for (int64_t i = 0; i < n / 32; i++, q += 32, s += 2) {
        s[0] = s[1] = h2f(x[i].d);
        for (int j = 0; j < 16; j++) {
            q[j] = eng_iq4nl_values[x[i].qs[j] & 0xF];
            q[j + 16] = eng_iq4nl_values[x[i].qs[j] >> 4];
        }
    }
}

static void q2_k_repack(const void *vw, int8_t *q, float *s, float *m, int64_t n) {
    const struct eng_block_q2_k *x = vw;
    for (int64_t i = 0; i < n / ENG_QK_K; i++) {
        float d = h2f(x[i].d), dmin = h2f(x[i].dmin);
        const uint8_t *qs = x[i].qs;
        int is = 0;
        for (int half = 0; half < 2; half++, qs += 32)
            for (int shift = 0; shift < 8; shift += 2)
                for (int k = 0; k < 2; k++, is++, q += 16) {
                    uint8_t sc = x[i].scales[is];
                    *s++ = d * (sc & 0xF);
                    *m++ = -(dmin * (sc >> 4));
                    for (int l = 0; l < 16; l++) q[l] = (int8_t)((qs[l + 16 * k] >> shift) & 3);
                }
    }
}

static void q3_k_repack(const void *vw, int8_t *q, float *s, float *m, int64_t n) {
    const struct eng_block_q3_k *x = vw;
    int8_t sc[16];
    for (int64_t i = 0; i < n / ENG_QK_K; i++) {
        float d = h2f(x[i].d);
        eng_q3k_scales(x[i].scales, sc);
        const uint8_t *qs = x[i].qs, *hm = x[i].hmask;
        uint8_t bit = 1;
        int is = 0;
        for (int half = 0; half < 2; half++, qs += 32)
            for (int shift = 0; shift < 8; shift += 2, bit <<= 1)
                for (int k = 0; k < 2; k++, is++, q += 16) {
                    *s++ = d * sc[is];
                    for (int l = 0; l < 16; l++)
                        q[l] = (int8_t)(((qs[l + 16 * k] >> shift) & 3) -
                                        ((hm[l + 16 * k] & bit) ? 0 : 4));
                }
    }
}

static void q4_k_repack(const void *vw, int8_t *q, float *s, float *m, int64_t n) {
    const struct eng_block_q4_k *x = vw;
    for (int64_t i = 0; i < n / ENG_QK_K; i++) {
        float d = h2f(x[i].d), dmin = h2f(x[i].dmin);
        const uint8_t *qs = x[i].qs;
        for (int j = 0; j < 8; j += 2, qs += 32) {
            uint8_t sc, mn;
            eng_k4_scale_min(j, x[i].scales, &sc, &mn);
            s[0] = s[1] = d * sc;
            m[0] = m[1] = -(dmin * mn);
            eng_k4_scale_min(j + 1, x[i].scales, &sc, &mn);
            s[2] = s[3] = d * sc;
            m[2] = m[3] = -(dmin * mn);
            for (int l = 0; l < 32; l++) {
                q[l] = (int8_t)(qs[l] & 0xF);
                q[l + 32] = (int8_t)(qs[l] >> 4);
            }
            q += 64, s += 4, m += 4;
        }
    }
}

static void q5_k_repack(const void *vw, int8_t *q, float *s, float *m, int64_t n) {
    const struct eng_block_q5_k *x = vw;
    for (int64_t i = 0; i < n / ENG_QK_K; i++) {
        float d = h2f(x[i].d), dmin = h2f(x[i].dmin);
        const uint8_t *ql = x[i].qs, *qh = x[i].qh;
        uint8_t u1 = 1, u2 = 2;
        for (int j = 0; j < 8; j += 2, ql += 32, u1 <<= 2, u2 <<= 2) {
            uint8_t sc, mn;
            eng_k4_scale_min(j, x[i].scales, &sc, &mn);
            s[0] = s[1] = d * sc;
            m[0] = m[1] = -(dmin * mn);
            eng_k4_scale_min(j + 1, x[i].scales, &sc, &mn);
            s[2] = s[3] = d * sc;
            m[2] = m[3] = -(dmin * mn);
            for (int l = 0; l < 32; l++) {
                q[l] = (int8_t)((ql[l] & 0xF) + (qh[l] & u1 ? 16 : 0));
                q[l + 32] = (int8_t)((ql[l] >> 4) + (qh[l] & u2 ? 16 : 0));
            }
            q += 64, s += 4, m += 4;
        }
    }
}

static void q6_k_repack(const void *vw, int8_t *q, float *s, float *m, int64_t n) {
    const struct eng_block_q6_k *x = vw;
    for (int64_t i = 0; i < n / ENG_QK_K; i++) {
        float d = h2f(x[i].d);
        const uint8_t *ql = x[i].ql, *qh = x[i].qh;
        const int8_t *sc = x[i].scales;
        for (int half = 0; half < 2; half++, q += 128, s += 8, ql += 64, qh += 32, sc += 8) {
            for (int k = 0; k < 8; k++) s[k] = d * sc[k]; /* 16 weights per scale */
            for (int l = 0; l < 32; l++) {
                q[l] = (int8_t)(((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32);
                q[l + 32] = (int8_t)(((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32);
                q[l + 64] = (int8_t)(((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32);
                q[l + 96] = (int8_t)(((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32);
            }
        }
    }
}

static void iq4_xs_repack(const void *vw, int8_t *q, float *s, float *m, int64_t n) {
    const struct eng_block_iq4_xs *x = vw;
    for (int64_t i = 0; i < n / ENG_QK_K; i++) {
        float d = h2f(x[i].d);
        const uint8_t *qs = x[i].qs;
        for (int ib = 0; ib < 8; ib++, q += 32, s += 2, qs += 16) {
            int ls = (((x[i].scales_l[ib / 2] >> (4 * (ib % 2))) & 0xF) |
                      (((x[i].scales_h >> (2 * ib)) & 3) << 4)) -
                     32;
            s[0] = s[1] = d * ls;
            for (int j = 0; j < 16; j++) {
                q[j] = eng_iq4nl_values[qs[j] & 0xF];
                q[j + 16] = eng_iq4nl_values[qs[j] >> 4];
            }
        }
    }
}

void eng_repack_install(struct eng_type_traits *t) {
    static const struct {
        enum eng_type type;
        void (*fn)(const void *, int8_t *, float *, float *, int64_t);
        bool has_min;
    } r[] = {
        {ENG_TYPE_Q4_0, q4_0_repack, false}, {ENG_TYPE_Q8_0, q8_0_repack, false},
        {ENG_TYPE_Q4_1, q4_1_repack, true},  {ENG_TYPE_Q5_0, q5_0_repack, false},
        {ENG_TYPE_Q5_1, q5_1_repack, true},  {ENG_TYPE_IQ4_NL, iq4_nl_repack, false},
        {ENG_TYPE_Q2_K, q2_k_repack, true},  {ENG_TYPE_Q3_K, q3_k_repack, false},
        {ENG_TYPE_Q4_K, q4_k_repack, true},  {ENG_TYPE_Q5_K, q5_k_repack, true},
        {ENG_TYPE_Q6_K, q6_k_repack, false}, {ENG_TYPE_IQ4_XS, iq4_xs_repack, false},
    };
    for (size_t i = 0; i < ENG_ARRAY_LEN(r); i++) {
        t[r[i].type].repack = r[i].fn;
        t[r[i].type].repack_has_min = r[i].has_min;
        t[r[i].type].tile_min_b = ENG_TILE_MIN_B;
    }
}
