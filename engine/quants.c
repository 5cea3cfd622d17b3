/*
 * quants.c — the scalar reference kernels of the block formats beyond the core ones in types.c:
 * Q4_1, Q5_0, Q5_1, Q8_1, IQ4_NL (blocks of 32) and Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, Q8_K, IQ4_XS
 * (super-blocks of 256). For each: dequantize, quantize (the formats' reference algorithm, so the
 * bytes match what other GGUF tools write for the same input), and the dot product of a weight row
 * with an activation row of its vec_dot type (Q8_0, Q8_1 or Q8_K).
 *
 * Dot products accumulate exact integer sums per block (or super-block) and only then scale in
 * float, so a SIMD kernel that computes the same integers differs from these only in the order of
 * the float additions. It does not pick SIMD kernels (types.c) nor hold any.
 */
#include "quants.h"

#include <float.h>
#include <math.h>
#include <string.h>

#define GROUP_MAX_EPS 1e-15f

const int8_t eng_iq4nl_values[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                                     1,    13,   25,  38,  53,  69,  89,  113};

static inline float h2f(uint16_t h) {
    return eng_fp16_to_fp32(h);
}
static inline uint16_t f2h(float f) {
    return eng_fp32_to_fp16(f);
}

/* ================================ Q4_1 ================================ */

static void q4_1_to_float(const void *vx, float *y, int64_t n) {
    const struct eng_block_q4_1 *x = vx;
    for (int64_t i = 0; i < n / ENG_QK4_1; i++, y += ENG_QK4_1) {
        float d = h2f(x[i].d), m = h2f(x[i].m);
        for (int j = 0; j < ENG_QK4_1 / 2; j++) {
            y[j] = (x[i].qs[j] & 0x0F) * d + m;
            y[j + ENG_QK4_1 / 2] = (x[i].qs[j] >> 4) * d + m;
        }
    }
}

static void q4_1_from_float(const float *x, void *vy, int64_t n) {
    struct eng_block_q4_1 *y = vy;
    for (int64_t i = 0; i < n / ENG_QK4_1; i++, x += ENG_QK4_1) {
        float min = FLT_MAX, max = -FLT_MAX;
        for (int j = 0; j < ENG_QK4_1; j++) {
            if (x[j] < min) min = x[j];
            if (x[j] > max) max = x[j];
        }
        float d = (max - min) / 15.0f;
        float id = d ? 1.0f / d : 0.0f;
        y[i].d = f2h(d);
        y[i].m = f2h(min);
        for (int j = 0; j < ENG_QK4_1 / 2; j++) {
            int q0 = (int8_t)((x[j] - min) * id + 0.5f);
            int q1 = (int8_t)((x[j + ENG_QK4_1 / 2] - min) * id + 0.5f);
            y[i].qs[j] = (uint8_t)(ENG_MIN(15, q0) | (ENG_MIN(15, q1) << 4));
        }
    }
}

static void q4_1_vec_dot_ref(int64_t n, float *s, const void *vw, const void *va) {
    const struct eng_block_q4_1 *w = vw;
    const struct eng_block_q8_1 *a = va;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / ENG_QK4_1; i++) {
        int32_t acc = 0;
        for (int j = 0; j < ENG_QK4_1 / 2; j++) {
            acc += (w[i].qs[j] & 0x0F) * a[i].qs[j];
            acc += (w[i].qs[j] >> 4) * a[i].qs[j + ENG_QK4_1 / 2];
        }
        sum += h2f(w[i].d) * h2f(a[i].d) * (float)acc + h2f(w[i].m) * h2f(a[i].s);
    }
    *s = sum;
}

/* ================================ Q5_0 / Q5_1 ================================ */

/* The 32 five-bit values of a q5 block (0..31). */
static void q5_unpack(const uint8_t qh4[4], const uint8_t qs[16], int q[32]) {
    uint32_t qh;
    memcpy(&qh, qh4, 4);
    for (int j = 0; j < 16; j++) {
        q[j] = (qs[j] & 0x0F) | (int)(((qh >> j) & 1) << 4);
        q[j + 16] = (qs[j] >> 4) | (int)(((qh >> (j + 16)) & 1) << 4);
    }
}

static void q5_pack(const int q[32], uint8_t qh4[4], uint8_t qs[16]) {
    uint32_t qh = 0;
    for (int j = 0; j < 16; j++) {
        qs[j] = (uint8_t)((q[j] & 0x0F) | ((q[j + 16] & 0x0F) << 4));
        qh |= (uint32_t)((q[j] >> 4) & 1) << j;
        qh |= (uint32_t)((q[j + 16] >> 4) & 1) << (j + 16);
    }
    memcpy(qh4, &qh, 4);
}

static void q5_0_to_float(const void *vx, float *y, int64_t n) {
    const struct eng_block_q5_0 *x = vx;
    int q[32];
    for (int64_t i = 0; i < n / ENG_QK5_0; i++, y += ENG_QK5_0) {
        float d = h2f(x[i].d);
        q5_unpack(x[i].qh, x[i].qs, q);
        for (int j = 0; j < 32; j++) y[j] = (q[j] - 16) * d;
    }
}

static void q5_0_from_float(const float *x, void *vy, int64_t n) {
    struct eng_block_q5_0 *y = vy;
    int q[32];
    for (int64_t i = 0; i < n / ENG_QK5_0; i++, x += ENG_QK5_0) {
        float amax = 0.0f, max = 0.0f;
        for (int j = 0; j < 32; j++) {
            if (amax < fabsf(x[j])) {
                amax = fabsf(x[j]);
                max = x[j];
            }
        }
        float d = max / -16.0f;
        float id = d ? 1.0f / d : 0.0f;
        y[i].d = f2h(d);
        for (int j = 0; j < 32; j++) q[j] = ENG_MIN(31, (int8_t)(x[j] * id + 16.5f)) & 0xFF;
        q5_pack(q, y[i].qh, y[i].qs);
    }
}

static void q5_0_vec_dot_ref(int64_t n, float *s, const void *vw, const void *va) {
    const struct eng_block_q5_0 *w = vw;
    const struct eng_block_q8_0 *a = va;
    int q[32];
    float sum = 0.0f;
    for (int64_t i = 0; i < n / ENG_QK5_0; i++) {
        q5_unpack(w[i].qh, w[i].qs, q);
        int32_t acc = 0;
        for (int j = 0; j < 32; j++) acc += (q[j] - 16) * a[i].qs[j];
        sum += (float)acc * h2f(w[i].d) * h2f(a[i].d);
    }
    *s = sum;
}

static void q5_1_to_float(const void *vx, float *y, int64_t n) {
    const struct eng_block_q5_1 *x = vx;
    int q[32];
    for (int64_t i = 0; i < n / ENG_QK5_1; i++, y += ENG_QK5_1) {
        float d = h2f(x[i].d), m = h2f(x[i].m);
        q5_unpack(x[i].qh, x[i].qs, q);
        for (int j = 0; j < 32; j++) y[j] = q[j] * d + m;
    }
}

static void q5_1_from_float(const float *x, void *vy, int64_t n) {
    struct eng_block_q5_1 *y = vy;
    int q[32];
    for (int64_t i = 0; i < n / ENG_QK5_1; i++, x += ENG_QK5_1) {
        float min = FLT_MAX, max = -FLT_MAX;
        for (int j = 0; j < 32; j++) {
            if (x[j] < min) min = x[j];
            if (x[j] > max) max = x[j];
        }
        float d = (max - min) / 31.0f;
        float id = d ? 1.0f / d : 0.0f;
        y[i].d = f2h(d);
        y[i].m = f2h(min);
        /* no clamp: (x - min) * id <= 31 + rounding, as the format's reference does */
        for (int j = 0; j < 32; j++) q[j] = (uint8_t)((x[j] - min) * id + 0.5f);
        q5_pack(q, y[i].qh, y[i].qs);
    }
}

static void q5_1_vec_dot_ref(int64_t n, float *s, const void *vw, const void *va) {
    const struct eng_block_q5_1 *w = vw;
    const struct eng_block_q8_1 *a = va;
    int q[32];
    float sum = 0.0f;
    for (int64_t i = 0; i < n / ENG_QK5_1; i++) {
        q5_unpack(w[i].qh, w[i].qs, q);
        int32_t acc = 0;
        for (int j = 0; j < 32; j++) acc += q[j] * a[i].qs[j];
        sum += h2f(w[i].d) * h2f(a[i].d) * (float)acc + h2f(w[i].m) * h2f(a[i].s);
    }
    *s = sum;
}

/* ================================ Q8_1 (activations) ================================ */

static void q8_1_to_float(const void *vx, float *y, int64_t n) {
    const struct eng_block_q8_1 *x = vx;
    for (int64_t i = 0; i < n / ENG_QK8_1; i++, y += ENG_QK8_1) {
        float d = h2f(x[i].d);
        for (int j = 0; j < ENG_QK8_1; j++) y[j] = x[i].qs[j] * d;
    }
}

static void q8_1_from_float(const float *x, void *vy, int64_t n) {
    struct eng_block_q8_1 *y = vy;
    for (int64_t i = 0; i < n / ENG_QK8_1; i++, x += ENG_QK8_1) {
        float amax = 0.0f;
        for (int j = 0; j < ENG_QK8_1; j++) amax = fmaxf(amax, fabsf(x[j]));
        float d = amax / 127.0f;
        float id = d ? 1.0f / d : 0.0f;
        y[i].d = f2h(d);
        int sum = 0;
        for (int j = 0; j < ENG_QK8_1; j++) {
            y[i].qs[j] = (int8_t)roundf(x[j] * id);
            sum += y[i].qs[j];
        }
        y[i].s = f2h((float)sum * d);
    }
}

/* ================================ IQ4_NL ================================ */

/* Index of the level nearest to x in the sorted table v (16 entries); ties go up. */
static int iq4_best_index(const int8_t *v, float x) {
    if (x <= v[0]) return 0;
    if (x >= v[15]) return 15;
    int lo = 0, hi = 15;
    while (hi - lo > 1) {
        int mid = (lo + hi) / 2;
        if (x < v[mid])
            hi = mid;
        else
            lo = mid;
    }
    return x - v[hi - 1] < v[hi] - x ? hi - 1 : hi;
}

/* One super-block of iq4_nl (sb = 32, one scale) or iq4_xs (sb = 256, eight six-bit scales).
 * ntry < 0 is the plain reference of iq4_nl: one fit, no scale search, no re-quantization. */
static void iq4_quantize_sb(int sb, const float *x, uint16_t *dh, uint8_t *q4, uint16_t *scales_h,
                            uint8_t *scales_l, int ntry) {
    const int8_t *v = eng_iq4nl_values;
    float scales[ENG_QK_K / 32], weight[32];
    uint8_t L[ENG_QK_K];
    memset(L, 0, sizeof(L));
    memset(q4, 0, (size_t)sb / 2);
    *dh = f2h(0.0f);
    float max_scale = 0.0f, amax_scale = 0.0f;
    for (int ib = 0; ib < sb / 32; ib++) {
        const float *xb = x + ib * 32;
        uint8_t *Lb = L + ib * 32;
        for (int j = 0; j < 32; j++) weight[j] = xb[j] * xb[j];
        float amax = 0.0f, max = 0.0f;
        for (int j = 0; j < 32; j++) {
            if (fabsf(xb[j]) > amax) {
                amax = fabsf(xb[j]);
                max = xb[j];
            }
        }
        if (amax < GROUP_MAX_EPS) {
            scales[ib] = 0.0f;
            continue;
        }
        float d = ntry > 0 ? -max / v[0] : max / v[0];
        float id = 1.0f / d;
        float sumqx = 0.0f, sumq2 = 0.0f;
        for (int j = 0; j < 32; j++) {
            int l = iq4_best_index(v, id * xb[j]);
            Lb[j] = (uint8_t)l;
            float q = v[l], w = weight[j];
            sumqx += w * q * xb[j];
            sumq2 += w * q * q;
        }
        d = sumq2 > 0 ? sumqx / sumq2 : 0.0f;
        float best = d * sumqx;
        for (int itry = -ntry; itry <= ntry; itry++) {
            id = (itry + v[0]) / max;
            sumqx = sumq2 = 0.0f;
            for (int j = 0; j < 32; j++) {
                float q = v[iq4_best_index(v, id * xb[j])], w = weight[j];
                sumqx += w * q * xb[j];
                sumq2 += w * q * q;
            }
            if (sumq2 > 0 && sumqx * sumqx > best * sumq2) {
                d = sumqx / sumq2;
                best = d * sumqx;
            }
        }
        scales[ib] = d;
        if (fabsf(d) > amax_scale) {
            amax_scale = fabsf(d);
            max_scale = d;
        }
    }
    if (sb > 32) {
        *scales_h = 0;
        float d = -max_scale / 32;
        *dh = f2h(d);
        float id = d ? 1.0f / d : 0.0f;
        for (int ib = 0; ib < sb / 32; ib++) {
            int l = ENG_MAX(-32, ENG_MIN(31, eng_nearest_int(id * scales[ib])));
            float dl = d * l;
            float idl = dl ? 1.0f / dl : 0.0f;
            for (int j = 0; j < 32; j++)
                L[ib * 32 + j] = (uint8_t)iq4_best_index(v, idl * x[ib * 32 + j]);
            l += 32;
            if (ib % 2 == 0)
                scales_l[ib / 2] = (uint8_t)(l & 0xF);
            else
                scales_l[ib / 2] |= (uint8_t)((l & 0xF) << 4);
            *scales_h |= (uint16_t)((l >> 4) << (2 * ib));
        }
    } else {
        *dh = f2h(scales[0]);
        if (ntry > 0) {
            float id = scales[0] ? 1.0f / scales[0] : 0.0f;
            for (int j = 0; j < sb; j++) L[j] = (uint8_t)iq4_best_index(v, id * x[j]);
        }
    }
    for (int i = 0; i < sb / 32; i++)
        for (int j = 0; j < 16; j++)
            q4[16 * i + j] = (uint8_t)(L[32 * i + j] | (L[32 * i + 16 + j] << 4));
}

static void iq4_nl_to_float(const void *vx, float *y, int64_t n) {
    const struct eng_block_iq4_nl *x = vx;
    for (int64_t i = 0; i < n / ENG_QK4_NL; i++, y += ENG_QK4_NL) {
        float d = h2f(x[i].d);
        for (int j = 0; j < 16; j++) {
            y[j] = d * eng_iq4nl_values[x[i].qs[j] & 0xF];
            y[j + 16] = d * eng_iq4nl_values[x[i].qs[j] >> 4];
        }
    }
}

static void iq4_nl_from_float(const float *x, void *vy, int64_t n) {
    struct eng_block_iq4_nl *y = vy;
    uint16_t unused_h;
    uint8_t unused_l[4];
    for (int64_t i = 0; i < n / ENG_QK4_NL; i++)
        iq4_quantize_sb(32, x + i * 32, &y[i].d, y[i].qs, &unused_h, unused_l, -1);
}

static void iq4_nl_vec_dot_ref(int64_t n, float *s, const void *vw, const void *va) {
    const struct eng_block_iq4_nl *w = vw;
    const struct eng_block_q8_0 *a = va;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / ENG_QK4_NL; i++) {
        int32_t acc = 0;
        for (int j = 0; j < 16; j++) {
            acc += eng_iq4nl_values[w[i].qs[j] & 0xF] * a[i].qs[j];
            acc += eng_iq4nl_values[w[i].qs[j] >> 4] * a[i].qs[j + 16];
        }
        sum += (float)acc * h2f(w[i].d) * h2f(a[i].d);
    }
    *s = sum;
}

/* ================================ Q8_K (activations) ================================ */

static void q8_k_to_float(const void *vx, float *y, int64_t n) {
    const struct eng_block_q8_k *x = vx;
    for (int64_t i = 0; i < n / ENG_QK_K; i++, y += ENG_QK_K)
        for (int j = 0; j < ENG_QK_K; j++) y[j] = x[i].d * x[i].qs[j];
}

static void q8_k_from_float(const float *x, void *vy, int64_t n) {
    struct eng_block_q8_k *y = vy;
    for (int64_t i = 0; i < n / ENG_QK_K; i++, x += ENG_QK_K) {
        float max = 0.0f, amax = 0.0f;
        for (int j = 0; j < ENG_QK_K; j++) {
            if (fabsf(x[j]) > amax) {
                amax = fabsf(x[j]);
                max = x[j];
            }
        }
        if (!amax) {
            memset(&y[i], 0, sizeof(y[i]));
            continue;
        }
        float iscale = -127.0f / max;
        for (int j = 0; j < ENG_QK_K; j++)
            y[i].qs[j] = (int8_t)ENG_MIN(127, eng_nearest_int(iscale * x[j]));
        for (int g = 0; g < ENG_QK_K / 16; g++) {
            int sum = 0;
            for (int j = 0; j < 16; j++) sum += y[i].qs[g * 16 + j];
            y[i].bsums[g] = (int16_t)sum;
        }
        y[i].d = 1.0f / iscale;
    }
}

/* ================================ k-quant helpers ================================ */

/* Symmetric fit of n values to levels -nmax..nmax-1 with weights x² (rmse_type 1 of the format's
 * reference), searching 18 nearby scales. L gets level + nmax. Returns the scale. */
static float fit_symmetric(int n, int nmax, const float *x, int8_t *L) {
    float max = 0.0f, amax = 0.0f;
    for (int i = 0; i < n; i++) {
        if (fabsf(x[i]) > amax) {
            amax = fabsf(x[i]);
            max = x[i];
        }
    }
    if (amax < GROUP_MAX_EPS) {
        memset(L, 0, (size_t)n);
        return 0.0f;
    }
    float iscale = -nmax / max;
    float sumlx = 0.0f, suml2 = 0.0f;
    for (int i = 0; i < n; i++) {
        int l = ENG_MAX(-nmax, ENG_MIN(nmax - 1, eng_nearest_int(iscale * x[i])));
        L[i] = (int8_t)(l + nmax);
        float w = x[i] * x[i];
        sumlx += w * x[i] * l;
        suml2 += w * l * l;
    }
    float scale = suml2 ? sumlx / suml2 : 0.0f;
    float best = scale * sumlx;
    for (int is = -9; is <= 9; is++) {
        if (is == 0) continue;
        iscale = -(nmax + 0.1f * is) / max;
        sumlx = suml2 = 0.0f;
        for (int i = 0; i < n; i++) {
            int l = ENG_MAX(-nmax, ENG_MIN(nmax - 1, eng_nearest_int(iscale * x[i])));
            float w = x[i] * x[i];
            sumlx += w * x[i] * l;
            suml2 += w * l * l;
        }
        if (suml2 > 0 && sumlx * sumlx > best * suml2) {
            for (int i = 0; i < n; i++) {
                int l = eng_nearest_int(iscale * x[i]);
                L[i] = (int8_t)(nmax + ENG_MAX(-nmax, ENG_MIN(nmax - 1, l)));
            }
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    return scale;
}

/* Symmetric 3-bit fit with iterative per-element refinement (weights x²). L gets level + nmax. */
static float fit_q3(int n, int nmax, const float *x, int8_t *L) {
    float max = 0.0f, amax = 0.0f;
    for (int i = 0; i < n; i++) {
        if (fabsf(x[i]) > amax) {
            amax = fabsf(x[i]);
            max = x[i];
        }
    }
    if (amax < GROUP_MAX_EPS) {
        memset(L, 0, (size_t)n);
        return 0.0f;
    }
    float iscale = -nmax / max;
    float sumlx = 0.0f, suml2 = 0.0f;
    for (int i = 0; i < n; i++) {
        int l = ENG_MAX(-nmax, ENG_MIN(nmax - 1, eng_nearest_int(iscale * x[i])));
        L[i] = (int8_t)l;
        float w = x[i] * x[i];
        sumlx += w * x[i] * l;
        suml2 += w * l * l;
    }
    for (int itry = 0; itry < 5; itry++) {
        int changed = 0;
        for (int i = 0; i < n; i++) {
            float w = x[i] * x[i];
            float slx = sumlx - w * x[i] * L[i];
            if (slx > 0) {
                float sl2 = suml2 - w * L[i] * L[i];
                int nl = ENG_MAX(-nmax, ENG_MIN(nmax - 1, eng_nearest_int(x[i] * sl2 / slx)));
                if (nl != L[i]) {
                    slx += w * x[i] * nl;
                    sl2 += w * nl * nl;
                    if (sl2 > 0 && slx * slx * suml2 > sumlx * sumlx * sl2) {
                        L[i] = (int8_t)nl;
                        sumlx = slx;
                        suml2 = sl2;
                        changed++;
                    }
                }
            }
        }
        if (!changed) break;
    }
    for (int i = 0; i < n; i++) L[i] = (int8_t)(L[i] + nmax);
    return suml2 > 0.0f ? sumlx / suml2 : 0.0f;
}

/* Asymmetric fit x ≈ scale*L - min, L in 0..nmax, minimising the weighted error (squared, or
 * absolute if use_mad) over nstep+1 candidate scales. Sets *the_min (>= 0) and returns scale. */
static float fit_affine(int n, int nmax, const float *x, const float *weights, uint8_t *L,
                        float *the_min, float rmin, float rdelta, int nstep, bool use_mad) {
    uint8_t Laux[32];
    float min = x[0], max = x[0];
    float sum_w = weights[0], sum_x = sum_w * x[0];
    for (int i = 1; i < n; i++) {
        if (x[i] < min) min = x[i];
        if (x[i] > max) max = x[i];
        float w = weights[i];
        sum_w += w;
        sum_x += w * x[i];
    }
    if (min > 0) min = 0;
    if (max == min) {
        memset(L, 0, (size_t)n);
        *the_min = -min;
        return 0.0f;
    }
    float iscale = nmax / (max - min);
    float scale = 1 / iscale;
    float best_error = 0.0f;
    for (int i = 0; i < n; i++) {
        int l = eng_nearest_int(iscale * (x[i] - min));
        L[i] = (uint8_t)ENG_MAX(0, ENG_MIN(nmax, l));
        float diff = scale * L[i] + min - x[i];
        diff = use_mad ? fabsf(diff) : diff * diff;
        best_error += weights[i] * diff;
    }
    for (int is = 0; is <= nstep; is++) {
        iscale = (rmin + rdelta * is + nmax) / (max - min);
        float sum_l = 0, sum_l2 = 0, sum_xl = 0;
        for (int i = 0; i < n; i++) {
            int l = ENG_MAX(0, ENG_MIN(nmax, eng_nearest_int(iscale * (x[i] - min))));
            Laux[i] = (uint8_t)l;
            float w = weights[i];
            sum_l += w * l;
            sum_l2 += w * l * l;
            sum_xl += w * l * x[i];
        }
        float D = sum_w * sum_l2 - sum_l * sum_l;
        if (D > 0) {
            float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
            float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
            if (this_min > 0) {
                this_min = 0;
                this_scale = sum_xl / sum_l2;
            }
            float err = 0.0f;
            for (int i = 0; i < n; i++) {
                float diff = this_scale * Laux[i] + this_min - x[i];
                diff = use_mad ? fabsf(diff) : diff * diff;
                err += weights[i] * diff;
            }
            if (err < best_error) {
                memcpy(L, Laux, (size_t)n);
                best_error = err;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    *the_min = -min;
    return scale;
}

/* Packs 256 2-bit values: byte l of each 32-byte group holds elements l, l+32, l+64, l+96. */
static void pack_2bit(const uint8_t *L, uint8_t *qs) {
    for (int j = 0; j < ENG_QK_K; j += 128)
        for (int l = 0; l < 32; l++)
            qs[j / 4 + l] = (uint8_t)(L[j + l] | (L[j + l + 32] << 2) | (L[j + l + 64] << 4) |
                                      (L[j + l + 96] << 6));
}

/* ================================ Q2_K ================================ */

static void q2_k_to_float(const void *vx, float *y, int64_t n) {
    const struct eng_block_q2_k *x = vx;
    for (int64_t i = 0; i < n / ENG_QK_K; i++) {
        float d = h2f(x[i].d), dmin = h2f(x[i].dmin);
        const uint8_t *q = x[i].qs;
        int is = 0;
        for (int half = 0; half < 2; half++, q += 32) {
            for (int shift = 0; shift < 8; shift += 2) {
                for (int k = 0; k < 2; k++) {
                    uint8_t sc = x[i].scales[is++];
                    float dl = d * (sc & 0xF), ml = dmin * (sc >> 4);
                    for (int l = 0; l < 16; l++) *y++ = dl * ((q[l + 16 * k] >> shift) & 3) - ml;
                }
            }
        }
    }
}

static void q2_k_from_float(const float *x, void *vy, int64_t n) {
    struct eng_block_q2_k *y = vy;
    uint8_t L[ENG_QK_K];
    float weights[16], mins[16], scales[16];
    for (int64_t i = 0; i < n / ENG_QK_K; i++, x += ENG_QK_K) {
        float max_scale = 0.0f, max_min = 0.0f;
        for (int j = 0; j < 16; j++) {
            for (int l = 0; l < 16; l++) weights[l] = fabsf(x[16 * j + l]);
            scales[j] =
                fit_affine(16, 3, x + 16 * j, weights, L + 16 * j, &mins[j], -0.5f, 0.1f, 15, true);
            if (scales[j] > max_scale) max_scale = scales[j];
            if (mins[j] > max_min) max_min = mins[j];
        }
        if (max_scale > 0) {
            float iscale = 15.0f / max_scale;
            for (int j = 0; j < 16; j++)
                y[i].scales[j] = (uint8_t)eng_nearest_int(iscale * scales[j]);
            y[i].d = f2h(max_scale / 15.0f);
        } else {
            memset(y[i].scales, 0, 16);
            y[i].d = f2h(0.0f);
        }
        if (max_min > 0) {
            float iscale = 15.0f / max_min;
            for (int j = 0; j < 16; j++)
                y[i].scales[j] |= (uint8_t)(eng_nearest_int(iscale * mins[j]) << 4);
            y[i].dmin = f2h(max_min / 15.0f);
        } else {
            y[i].dmin = f2h(0.0f);
        }
        for (int j = 0; j < 16; j++) {
            float d = h2f(y[i].d) * (y[i].scales[j] & 0xF);
            if (!d) continue;
            float dm = h2f(y[i].dmin) * (y[i].scales[j] >> 4);
            for (int l = 0; l < 16; l++) {
                int q = eng_nearest_int((x[16 * j + l] + dm) / d);
                L[16 * j + l] = (uint8_t)ENG_MAX(0, ENG_MIN(3, q));
            }
        }
        pack_2bit(L, y[i].qs);
    }
}

static void q2_k_vec_dot_ref(int64_t n, float *s, const void *vw, const void *va) {
    const struct eng_block_q2_k *w = vw;
    const struct eng_block_q8_k *a = va;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / ENG_QK_K; i++) {
        int32_t isum = 0, msum = 0;
        const uint8_t *q = w[i].qs;
        const int8_t *qa = a[i].qs;
        int is = 0;
        for (int half = 0; half < 2; half++, q += 32) {
            for (int shift = 0; shift < 8; shift += 2) {
                for (int k = 0; k < 2; k++, is++, qa += 16) {
                    int32_t dot = 0;
                    for (int l = 0; l < 16; l++) dot += ((q[l + 16 * k] >> shift) & 3) * qa[l];
                    isum += (w[i].scales[is] & 0xF) * dot;
                    msum += (w[i].scales[is] >> 4) * a[i].bsums[is];
                }
            }
        }
        sum += a[i].d * (h2f(w[i].d) * (float)isum - h2f(w[i].dmin) * (float)msum);
    }
    *s = sum;
}

/* ================================ Q3_K ================================ */

void eng_q3k_scales(const uint8_t packed[ENG_K_SCALE_SIZE], int8_t out[16]) {
    /* low 4 bits: bytes 0..7 (low nibble → scales 0..7, high nibble → 8..15); high 2 bits:
     * bytes 8..11, scale j at bits 2*(j/4) of byte 8 + j%4. */
    for (int j = 0; j < 16; j++) {
        int lo = j < 8 ? packed[j] & 0xF : packed[j - 8] >> 4;
        int hi = (packed[8 + j % 4] >> (2 * (j / 4))) & 3;
        out[j] = (int8_t)((lo | (hi << 4)) - 32);
    }
}

static void q3_k_to_float(const void *vx, float *y, int64_t n) {
    const struct eng_block_q3_k *x = vx;
    int8_t sc[16];
    for (int64_t i = 0; i < n / ENG_QK_K; i++) {
        float d = h2f(x[i].d);
        eng_q3k_scales(x[i].scales, sc);
        const uint8_t *q = x[i].qs, *hm = x[i].hmask;
        uint8_t m = 1;
        int is = 0;
        for (int half = 0; half < 2; half++, q += 32) {
            for (int shift = 0; shift < 8; shift += 2, m <<= 1) {
                for (int k = 0; k < 2; k++) {
                    float dl = d * sc[is++];
                    for (int l = 0; l < 16; l++) {
                        int v = ((q[l + 16 * k] >> shift) & 3) - ((hm[l + 16 * k] & m) ? 0 : 4);
                        *y++ = dl * v;
                    }
                }
            }
        }
    }
}

static void q3_k_from_float(const float *x, void *vy, int64_t n) {
    struct eng_block_q3_k *y = vy;
    int8_t L[ENG_QK_K];
    float scales[16];
    for (int64_t i = 0; i < n / ENG_QK_K; i++, x += ENG_QK_K) {
        float max_scale = 0.0f, amax = 0.0f;
        for (int j = 0; j < 16; j++) {
            scales[j] = fit_q3(16, 4, x + 16 * j, L + 16 * j);
            if (fabsf(scales[j]) > amax) {
                amax = fabsf(scales[j]);
                max_scale = scales[j];
            }
        }
        memset(y[i].scales, 0, ENG_K_SCALE_SIZE);
        if (max_scale) {
            float iscale = -32.0f / max_scale;
            for (int j = 0; j < 16; j++) {
                int8_t l8 = (int8_t)eng_nearest_int(iscale * scales[j]);
                int l = ENG_MAX(-32, ENG_MIN(31, l8)) + 32;
                if (j < 8)
                    y[i].scales[j] = (uint8_t)(l & 0xF);
                else
                    y[i].scales[j - 8] |= (uint8_t)((l & 0xF) << 4);
                y[i].scales[j % 4 + 8] |= (uint8_t)((l >> 4) << (2 * (j / 4)));
            }
            y[i].d = f2h(1 / iscale);
        } else {
            y[i].d = f2h(0.0f);
        }
        int8_t sc[16];
        eng_q3k_scales(y[i].scales, sc);
        for (int j = 0; j < 16; j++) {
            float d = h2f(y[i].d) * sc[j];
            if (!d) continue;
            for (int l = 0; l < 16; l++) {
                int q = eng_nearest_int(x[16 * j + l] / d);
                L[16 * j + l] = (int8_t)(ENG_MAX(-4, ENG_MIN(3, q)) + 4);
            }
        }
        /* high bit of element j goes to bit j/32 of hmask[j%32] */
        memset(y[i].hmask, 0, sizeof(y[i].hmask));
        uint8_t L2[ENG_QK_K];
        for (int j = 0; j < ENG_QK_K; j++) {
            int l = L[j];
            if (l > 3) {
                y[i].hmask[j % 32] |= (uint8_t)(1 << (j / 32));
                l -= 4;
            }
            L2[j] = (uint8_t)l;
        }
        pack_2bit(L2, y[i].qs);
    }
}

static void q3_k_vec_dot_ref(int64_t n, float *s, const void *vw, const void *va) {
    const struct eng_block_q3_k *w = vw;
    const struct eng_block_q8_k *a = va;
    int8_t sc[16];
    float sum = 0.0f;
    for (int64_t i = 0; i < n / ENG_QK_K; i++) {
        eng_q3k_scales(w[i].scales, sc);
        const uint8_t *q = w[i].qs, *hm = w[i].hmask;
        const int8_t *qa = a[i].qs;
        uint8_t m = 1;
        int is = 0;
        int32_t isum = 0;
        for (int half = 0; half < 2; half++, q += 32) {
            for (int shift = 0; shift < 8; shift += 2, m <<= 1) {
                for (int k = 0; k < 2; k++, qa += 16) {
                    int32_t dot = 0;
                    for (int l = 0; l < 16; l++) {
                        int v = ((q[l + 16 * k] >> shift) & 3) - ((hm[l + 16 * k] & m) ? 0 : 4);
                        dot += v * qa[l];
                    }
                    isum += sc[is++] * dot;
                }
            }
        }
        sum += a[i].d * h2f(w[i].d) * (float)isum;
    }
    *s = sum;
}

/* ================================ Q4_K / Q5_K ================================ */

/* Packs 8 six-bit scales and mins into the 12-byte k4 layout. */
static void k4_pack_scales(const uint8_t ls[8], const uint8_t lm[8], uint8_t out[12]) {
    memset(out, 0, 12);
    for (int j = 0; j < 8; j++) {
        if (j < 4) {
            out[j] = ls[j];
            out[j + 4] = lm[j];
        } else {
            out[j + 4] = (uint8_t)((ls[j] & 0xF) | ((lm[j] & 0xF) << 4));
            out[j - 4] |= (uint8_t)((ls[j] >> 4) << 6);
            out[j] |= (uint8_t)((lm[j] >> 4) << 6);
        }
    }
}

/* Shared by q4_k (nmax 15) and q5_k (nmax 31): fits 8 sub-blocks of 32, quantizes their scales
 * and mins to 6 bits, then re-quantizes the values with the stored scales. */
static void k4_quantize_sb(const float *x, int nmax, float rmin, int nstep, uint16_t *d,
                           uint16_t *dmin, uint8_t scales_out[12], uint8_t L[ENG_QK_K]) {
    float weights[32], mins[8], scales[8];
    float max_scale = 0.0f, max_min = 0.0f;
    for (int j = 0; j < 8; j++) {
        float sum_x2 = 0.0f;
        for (int l = 0; l < 32; l++) sum_x2 += x[32 * j + l] * x[32 * j + l];
        float av_x = sqrtf(sum_x2 / 32);
        for (int l = 0; l < 32; l++) weights[l] = av_x + fabsf(x[32 * j + l]);
        scales[j] = fit_affine(32, nmax, x + 32 * j, weights, L + 32 * j, &mins[j], rmin, 0.1f,
                               nstep, false);
        if (scales[j] > max_scale) max_scale = scales[j];
        if (mins[j] > max_min) max_min = mins[j];
    }
    float inv_scale = max_scale > 0 ? 63.0f / max_scale : 0.0f;
    float inv_min = max_min > 0 ? 63.0f / max_min : 0.0f;
    uint8_t ls[8], lm[8];
    for (int j = 0; j < 8; j++) {
        ls[j] = (uint8_t)ENG_MIN(63, (uint8_t)eng_nearest_int(inv_scale * scales[j]));
        lm[j] = (uint8_t)ENG_MIN(63, (uint8_t)eng_nearest_int(inv_min * mins[j]));
    }
    k4_pack_scales(ls, lm, scales_out);
    *d = f2h(max_scale / 63.0f);
    *dmin = f2h(max_min / 63.0f);
    for (int j = 0; j < 8; j++) {
        uint8_t sc, m;
        eng_k4_scale_min(j, scales_out, &sc, &m);
        float dd = h2f(*d) * sc;
        if (!dd) continue;
        float dm = h2f(*dmin) * m;
        for (int l = 0; l < 32; l++) {
            int q = eng_nearest_int((x[32 * j + l] + dm) / dd);
            L[32 * j + l] = (uint8_t)ENG_MAX(0, ENG_MIN(nmax, q));
        }
    }
}

static void q4_k_to_float(const void *vx, float *y, int64_t n) {
    const struct eng_block_q4_k *x = vx;
    for (int64_t i = 0; i < n / ENG_QK_K; i++) {
        float d = h2f(x[i].d), dmin = h2f(x[i].dmin);
        const uint8_t *q = x[i].qs;
        for (int j = 0; j < 8; j += 2, q += 32) {
            uint8_t sc, m;
            eng_k4_scale_min(j, x[i].scales, &sc, &m);
            float d1 = d * sc, m1 = dmin * m;
            eng_k4_scale_min(j + 1, x[i].scales, &sc, &m);
            float d2 = d * sc, m2 = dmin * m;
            for (int l = 0; l < 32; l++) *y++ = d1 * (q[l] & 0xF) - m1;
            for (int l = 0; l < 32; l++) *y++ = d2 * (q[l] >> 4) - m2;
        }
    }
}

static void q4_k_from_float(const float *x, void *vy, int64_t n) {
    struct eng_block_q4_k *y = vy;
    uint8_t L[ENG_QK_K];
    for (int64_t i = 0; i < n / ENG_QK_K; i++, x += ENG_QK_K) {
        k4_quantize_sb(x, 15, -1.0f, 20, &y[i].d, &y[i].dmin, y[i].scales, L);
        uint8_t *q = y[i].qs;
        for (int j = 0; j < ENG_QK_K; j += 64, q += 32)
            for (int l = 0; l < 32; l++) q[l] = (uint8_t)(L[j + l] | (L[j + l + 32] << 4));
    }
}

static void q4_k_vec_dot_ref(int64_t n, float *s, const void *vw, const void *va) {
    const struct eng_block_q4_k *w = vw;
    const struct eng_block_q8_k *a = va;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / ENG_QK_K; i++) {
        const uint8_t *q = w[i].qs;
        const int8_t *qa = a[i].qs;
        int32_t isum = 0, msum = 0;
        for (int j = 0; j < 8; j++) {
            uint8_t sc, m;
            eng_k4_scale_min(j, w[i].scales, &sc, &m);
            int shift = (j & 1) * 4;
            int32_t dot = 0;
            for (int l = 0; l < 32; l++) dot += ((q[l] >> shift) & 0xF) * qa[l];
            isum += sc * dot;
            msum += m * (a[i].bsums[2 * j] + a[i].bsums[2 * j + 1]);
            qa += 32;
            if (j & 1) q += 32;
        }
        sum += a[i].d * (h2f(w[i].d) * (float)isum - h2f(w[i].dmin) * (float)msum);
    }
    *s = sum;
}

static void q5_k_to_float(const void *vx, float *y, int64_t n) {
    const struct eng_block_q5_k *x = vx;
    for (int64_t i = 0; i < n / ENG_QK_K; i++) {
        float d = h2f(x[i].d), dmin = h2f(x[i].dmin);
        const uint8_t *ql = x[i].qs, *qh = x[i].qh;
        uint8_t u1 = 1, u2 = 2;
        for (int j = 0; j < 8; j += 2, ql += 32, u1 <<= 2, u2 <<= 2) {
            uint8_t sc, m;
            eng_k4_scale_min(j, x[i].scales, &sc, &m);
            float d1 = d * sc, m1 = dmin * m;
            eng_k4_scale_min(j + 1, x[i].scales, &sc, &m);
            float d2 = d * sc, m2 = dmin * m;
            for (int l = 0; l < 32; l++) *y++ = d1 * ((ql[l] & 0xF) + (qh[l] & u1 ? 16 : 0)) - m1;
            for (int l = 0; l < 32; l++) *y++ = d2 * ((ql[l] >> 4) + (qh[l] & u2 ? 16 : 0)) - m2;
        }
    }
}

static void q5_k_from_float(const float *x, void *vy, int64_t n) {
    struct eng_block_q5_k *y = vy;
    uint8_t L[ENG_QK_K];
    for (int64_t i = 0; i < n / ENG_QK_K; i++, x += ENG_QK_K) {
        k4_quantize_sb(x, 31, -0.5f, 15, &y[i].d, &y[i].dmin, y[i].scales, L);
        uint8_t *ql = y[i].qs, *qh = y[i].qh;
        memset(qh, 0, ENG_QK_K / 8);
        uint8_t m1 = 1, m2 = 2;
        for (int j = 0; j < ENG_QK_K; j += 64, ql += 32, m1 <<= 2, m2 <<= 2) {
            for (int l = 0; l < 32; l++) {
                int l1 = L[j + l], l2 = L[j + l + 32];
                if (l1 > 15) {
                    l1 -= 16;
                    qh[l] |= m1;
                }
                if (l2 > 15) {
                    l2 -= 16;
                    qh[l] |= m2;
                }
                ql[l] = (uint8_t)(l1 | (l2 << 4));
            }
        }
    }
}

static void q5_k_vec_dot_ref(int64_t n, float *s, const void *vw, const void *va) {
    const struct eng_block_q5_k *w = vw;
    const struct eng_block_q8_k *a = va;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / ENG_QK_K; i++) {
        const uint8_t *ql = w[i].qs, *qh = w[i].qh;
        const int8_t *qa = a[i].qs;
        int32_t isum = 0, msum = 0;
        for (int j = 0; j < 8; j++) {
            uint8_t sc, m;
            eng_k4_scale_min(j, w[i].scales, &sc, &m);
            int shift = (j & 1) * 4;
            int32_t dot = 0;
            for (int l = 0; l < 32; l++) {
                int v = ((ql[l] >> shift) & 0xF) | (((qh[l] >> j) & 1) << 4);
                dot += v * qa[l];
            }
            isum += sc * dot;
            msum += m * (a[i].bsums[2 * j] + a[i].bsums[2 * j + 1]);
            qa += 32;
            if (j & 1) ql += 32;
        }
        sum += a[i].d * (h2f(w[i].d) * (float)isum - h2f(w[i].dmin) * (float)msum);
    }
    *s = sum;
}

/* ================================ Q6_K ================================ */

static void q6_k_to_float(const void *vx, float *y, int64_t n) {
    const struct eng_block_q6_k *x = vx;
    for (int64_t i = 0; i < n / ENG_QK_K; i++) {
        float d = h2f(x[i].d);
        const uint8_t *ql = x[i].ql, *qh = x[i].qh;
        const int8_t *sc = x[i].scales;
        for (int half = 0; half < 2; half++, y += 128, ql += 64, qh += 32, sc += 8) {
            for (int l = 0; l < 32; l++) {
                int is = l / 16;
                int q1 = ((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
                int q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
                int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
                int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
                y[l] = d * sc[is] * q1;
                y[l + 32] = d * sc[is + 2] * q2;
                y[l + 64] = d * sc[is + 4] * q3;
                y[l + 96] = d * sc[is + 6] * q4;
            }
        }
    }
}

static void q6_k_from_float(const float *x, void *vy, int64_t n) {
    struct eng_block_q6_k *y = vy;
    int8_t L[ENG_QK_K];
    float scales[16];
    for (int64_t i = 0; i < n / ENG_QK_K; i++, x += ENG_QK_K) {
        float max_scale = 0.0f, max_abs = 0.0f;
        for (int ib = 0; ib < 16; ib++) {
            scales[ib] = fit_symmetric(16, 32, x + 16 * ib, L + 16 * ib);
            if (fabsf(scales[ib]) > max_abs) {
                max_abs = fabsf(scales[ib]);
                max_scale = scales[ib];
            }
        }
        if (max_abs < GROUP_MAX_EPS) {
            memset(&y[i], 0, sizeof(y[i]));
            continue;
        }
        float iscale = -128.0f / max_scale;
        y[i].d = f2h(1 / iscale);
        for (int ib = 0; ib < 16; ib++)
            y[i].scales[ib] = (int8_t)ENG_MIN(127, eng_nearest_int(iscale * scales[ib]));
        for (int j = 0; j < 16; j++) {
            float d = h2f(y[i].d) * y[i].scales[j];
            if (!d) continue;
            for (int l = 0; l < 16; l++) {
                int q = eng_nearest_int(x[16 * j + l] / d);
                L[16 * j + l] = (int8_t)(ENG_MAX(-32, ENG_MIN(31, q)) + 32);
            }
        }
        uint8_t *ql = y[i].ql, *qh = y[i].qh;
        for (int j = 0; j < ENG_QK_K; j += 128, ql += 64, qh += 32) {
            for (int l = 0; l < 32; l++) {
                uint8_t q1 = L[j + l] & 0xF, q2 = L[j + l + 32] & 0xF;
                uint8_t q3 = L[j + l + 64] & 0xF, q4 = L[j + l + 96] & 0xF;
                ql[l] = (uint8_t)(q1 | (q3 << 4));
                ql[l + 32] = (uint8_t)(q2 | (q4 << 4));
                qh[l] = (uint8_t)((L[j + l] >> 4) | ((L[j + l + 32] >> 4) << 2) |
                                  ((L[j + l + 64] >> 4) << 4) | ((L[j + l + 96] >> 4) << 6));
            }
        }
    }
}

static void q6_k_vec_dot_ref(int64_t n, float *s, const void *vw, const void *va) {
    const struct eng_block_q6_k *w = vw;
    const struct eng_block_q8_k *a = va;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / ENG_QK_K; i++) {
        const uint8_t *ql = w[i].ql, *qh = w[i].qh;
        const int8_t *sc = w[i].scales, *qa = a[i].qs;
        int32_t isum = 0;
        for (int half = 0; half < 2; half++, ql += 64, qh += 32, sc += 8, qa += 128) {
            int32_t dot[8] = {0};
            for (int l = 0; l < 32; l++) {
                int is = l / 16;
                int q1 = ((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
                int q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
                int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
                int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
                dot[is] += q1 * qa[l];
                dot[is + 2] += q2 * qa[l + 32];
                dot[is + 4] += q3 * qa[l + 64];
                dot[is + 6] += q4 * qa[l + 96];
            }
            for (int k = 0; k < 8; k++) isum += sc[k] * dot[k];
        }
        sum += a[i].d * h2f(w[i].d) * (float)isum;
    }
    *s = sum;
}

/* ================================ IQ4_XS ================================ */

static int iq4_xs_scale(const struct eng_block_iq4_xs *x, int ib) {
    return (((x->scales_l[ib / 2] >> (4 * (ib % 2))) & 0xF) |
            (((x->scales_h >> (2 * ib)) & 3) << 4)) -
           32;
}

static void iq4_xs_to_float(const void *vx, float *y, int64_t n) {
    const struct eng_block_iq4_xs *x = vx;
    for (int64_t i = 0; i < n / ENG_QK_K; i++) {
        float d = h2f(x[i].d);
        const uint8_t *qs = x[i].qs;
        for (int ib = 0; ib < 8; ib++, y += 32, qs += 16) {
            float dl = d * iq4_xs_scale(&x[i], ib);
            for (int j = 0; j < 16; j++) {
                y[j] = dl * eng_iq4nl_values[qs[j] & 0xF];
                y[j + 16] = dl * eng_iq4nl_values[qs[j] >> 4];
            }
        }
    }
}

static void iq4_xs_from_float(const float *x, void *vy, int64_t n) {
    struct eng_block_iq4_xs *y = vy;
    for (int64_t i = 0; i < n / ENG_QK_K; i++)
        iq4_quantize_sb(ENG_QK_K, x + i * ENG_QK_K, &y[i].d, y[i].qs, &y[i].scales_h, y[i].scales_l,
                        7);
}

static void iq4_xs_vec_dot_ref(int64_t n, float *s, const void *vw, const void *va) {
    const struct eng_block_iq4_xs *w = vw;
    const struct eng_block_q8_k *a = va;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / ENG_QK_K; i++) {
        const uint8_t *qs = w[i].qs;
        const int8_t *qa = a[i].qs;
        int32_t isum = 0;
        for (int ib = 0; ib < 8; ib++, qs += 16, qa += 32) {
            int32_t dot = 0;
            for (int j = 0; j < 16; j++) {
                dot += eng_iq4nl_values[qs[j] & 0xF] * qa[j];
                dot += eng_iq4nl_values[qs[j] >> 4] * qa[j + 16];
            }
            isum += iq4_xs_scale(&w[i], ib) * dot;
        }
        sum += a[i].d * h2f(w[i].d) * (float)isum;
    }
    *s = sum;
}

/* ================================ registration ================================ */

#define BLOCK(type_, name_, blck_, block_, to_, from_, vdt_, dot_)                                 \
    t[type_] = (struct eng_type_traits) {                                                          \
        name_, blck_, sizeof(block_), true, to_, from_, vdt_, dot_                                 \
    }

void eng_types_init_extra(struct eng_type_traits *t) {
    BLOCK(ENG_TYPE_Q4_1, "q4_1", ENG_QK4_1, struct eng_block_q4_1, q4_1_to_float, q4_1_from_float,
          ENG_TYPE_Q8_1, q4_1_vec_dot_ref);
    BLOCK(ENG_TYPE_Q5_0, "q5_0", ENG_QK5_0, struct eng_block_q5_0, q5_0_to_float, q5_0_from_float,
          ENG_TYPE_Q8_0, q5_0_vec_dot_ref);
    BLOCK(ENG_TYPE_Q5_1, "q5_1", ENG_QK5_1, struct eng_block_q5_1, q5_1_to_float, q5_1_from_float,
          ENG_TYPE_Q8_1, q5_1_vec_dot_ref);
    /* activation-only types: no vec_dot, so a model cannot use them as weights */
    BLOCK(ENG_TYPE_Q8_1, "q8_1", ENG_QK8_1, struct eng_block_q8_1, q8_1_to_float, q8_1_from_float,
          ENG_TYPE_Q8_1, NULL);
    BLOCK(ENG_TYPE_Q8_K, "q8_k", ENG_QK_K, struct eng_block_q8_k, q8_k_to_float, q8_k_from_float,
          ENG_TYPE_Q8_K, NULL);
    BLOCK(ENG_TYPE_Q2_K, "q2_k", ENG_QK_K, struct eng_block_q2_k, q2_k_to_float, q2_k_from_float,
          ENG_TYPE_Q8_K, q2_k_vec_dot_ref);
    BLOCK(ENG_TYPE_Q3_K, "q3_k", ENG_QK_K, struct eng_block_q3_k, q3_k_to_float, q3_k_from_float,
          ENG_TYPE_Q8_K, q3_k_vec_dot_ref);
    BLOCK(ENG_TYPE_Q4_K, "q4_k", ENG_QK_K, struct eng_block_q4_k, q4_k_to_float, q4_k_from_float,
          ENG_TYPE_Q8_K, q4_k_vec_dot_ref);
    BLOCK(ENG_TYPE_Q5_K, "q5_k", ENG_QK_K, struct eng_block_q5_k, q5_k_to_float, q5_k_from_float,
          ENG_TYPE_Q8_K, q5_k_vec_dot_ref);
    BLOCK(ENG_TYPE_Q6_K, "q6_k", ENG_QK_K, struct eng_block_q6_k, q6_k_to_float, q6_k_from_float,
          ENG_TYPE_Q8_K, q6_k_vec_dot_ref);
    BLOCK(ENG_TYPE_IQ4_NL, "iq4_nl", ENG_QK4_NL, struct eng_block_iq4_nl, iq4_nl_to_float,
          iq4_nl_from_float, ENG_TYPE_Q8_0, iq4_nl_vec_dot_ref);
    BLOCK(ENG_TYPE_IQ4_XS, "iq4_xs", ENG_QK_K, struct eng_block_iq4_xs, iq4_xs_to_float,
          iq4_xs_from_float, ENG_TYPE_Q8_K, iq4_xs_vec_dot_ref);
}
