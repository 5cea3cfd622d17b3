/*
 * quants_imp.c — importance-weighted quantizers (the traits' quantize_imp) for the formats
 * compression chooses among: q8_0, q5_0, q4_0, iq4_nl, q2_k, q3_k, q4_k, q5_k, q6_k, iq4_xs.
 *
 * Each minimises sum_i w[i] * (x[i] - dequant[i])^2, with w the importance of each element (the
 * mean squared activation of its input column: the expected squared output error of a row is
 * then exactly this sum). Scales are searched over a grid around the extreme value, and for each
 * candidate the integer levels are assigned and the scale (and minimum) refitted by weighted
 * least squares; k-quants quantize their sub-block scales and then reassign every level under
 * the final, stored scales. Output is the format's standard layout (the engine's to_float and
 * kernels read it; other GGUF tools too).
 * Scalar only: compression is not on the decode path. It does not dequantize or multiply.
 */
#include "quants.h"

#include <math.h>
#include <string.h>

#define GRID 10 /* scale candidates on each side of the extreme-value scale */

static inline uint16_t f2h(float f) {
    return eng_fp32_to_fp16(f);
}

static inline float h2f(uint16_t h) {
    return eng_fp16_to_fp32(h);
}

static inline int clampi(int v, int lo, int hi) {
    return v < lo ? lo : v > hi ? hi : v;
}

/* Importance of n elements: imp (or all 1) with a small floor, so that no element's error is
 * ignored entirely (an unseen input column still has weights). */
static void weights(const float *imp, int n, float *w) {
    if (!imp) {
        for (int i = 0; i < n; i++) w[i] = 1.0f;
        return;
    }
    double mean = 0.0;
    for (int i = 0; i < n; i++) mean += imp[i];
    mean /= n;
    float floor = mean > 0 ? (float)(1e-3 * mean) : 1.0f;
    for (int i = 0; i < n; i++) w[i] = imp[i] + floor;
}

/* ---- one group's scale ---- */

/* x ≈ d*q, q integer in [qmin, qmax]. Returns d; q[] gets the levels. */
static float fit_sym(int n, const float *x, const float *w, int qmin, int qmax, int *q) {
    float amax = 0.0f, max = 0.0f;
    for (int i = 0; i < n; i++)
        if (fabsf(x[i]) > amax) amax = fabsf(x[i]), max = x[i];
    if (amax < 1e-30f) {
        for (int i = 0; i < n; i++) q[i] = 0;
        return 0.0f;
    }
    int tq[256];
    double best = INFINITY;
    float best_d = 0.0f;
    for (int side = 0; side < 2; side++) {
        float level = side ? (float)qmax : (float)qmin; /* the extreme maps near this level */
        for (int k = -GRID; k <= GRID; k++) {
            float target = level + 0.05f * k * (side ? -1.0f : 1.0f);
            if (fabsf(target) < 0.5f) continue;
            float id = target / max;
            double sxq = 0, sqq = 0;
            for (int i = 0; i < n; i++) {
                tq[i] = clampi((int)lrintf(x[i] * id), qmin, qmax);
                sxq += (double)w[i] * x[i] * tq[i];
                sqq += (double)w[i] * tq[i] * tq[i];
            }
            if (sqq <= 0) continue;
            double d = sxq / sqq, err = 0;
            for (int i = 0; i < n; i++) {
                double e = x[i] - d * tq[i];
                err += w[i] * e * e;
            }
            if (err < best) {
                best = err;
                best_d = (float)d;
                memcpy(q, tq, sizeof(int) * (size_t)n);
            }
        }
    }
    return best_d;
}

/* x ≈ d*q - m, q in [0, nmax], m >= 0. Returns d, sets *m; q[] gets the levels. */
static float fit_affine(int n, const float *x, const float *w, int nmax, int *q, float *m) {
    float lo = 0.0f, hi = x[0];
    for (int i = 0; i < n; i++) {
        if (x[i] < lo) lo = x[i];
        if (x[i] > hi) hi = x[i];
    }
    if (hi <= lo) {
        for (int i = 0; i < n; i++) q[i] = 0;
        *m = -lo;
        return 0.0f;
    }
    int tq[256];
    double best = INFINITY;
    float best_d = 0.0f, best_b = lo;
    for (int k = -GRID; k <= GRID; k++) {
        float is = (nmax + 0.1f * k) / (hi - lo);
        double sw = 0, swq = 0, swqq = 0, swx = 0, swxq = 0;
        for (int i = 0; i < n; i++) {
            tq[i] = clampi((int)lrintf(is * (x[i] - lo)), 0, nmax);
            sw += w[i];
            swq += (double)w[i] * tq[i];
            swqq += (double)w[i] * tq[i] * tq[i];
            swx += (double)w[i] * x[i];
            swxq += (double)w[i] * x[i] * tq[i];
        }
        double det = sw * swqq - swq * swq, d, b;
        if (det <= 0) continue;
        d = (sw * swxq - swq * swx) / det;
        b = (swqq * swx - swq * swxq) / det;
        if (b > 0) { /* the minimum must not be positive: x ≈ d*q - m with m >= 0 */
            b = 0;
            d = swqq > 0 ? swxq / swqq : 0;
        }
        if (d < 0) continue;
        double err = 0;
        for (int i = 0; i < n; i++) {
            double e = x[i] - d * tq[i] - b;
            err += w[i] * e * e;
        }
        if (err < best) {
            best = err;
            best_d = (float)d;
            best_b = (float)b;
            memcpy(q, tq, sizeof(int) * (size_t)n);
        }
    }
    if (!isfinite(best)) { /* degenerate: plain min/max */
        best_d = (hi - lo) / nmax;
        best_b = lo;
        for (int i = 0; i < n; i++) q[i] = clampi((int)lrintf((x[i] - lo) / best_d), 0, nmax);
    }
    *m = -best_b;
    return best_d;
}

/* Index of the level of v[16] (ascending) nearest to t. */
static int nearest_level(const int8_t *v, float t) {
    if (t <= v[0]) return 0;
    if (t >= v[15]) return 15;
    int lo = 0, hi = 15;
    while (hi - lo > 1) {
        int mid = (lo + hi) / 2;
        if (t < v[mid])
            hi = mid;
        else
            lo = mid;
    }
    return t - v[lo] < v[hi] - t ? lo : hi;
}

/* x ≈ d*v[q] for the 16 iq4 levels. Returns d. */
static float fit_levels(int n, const float *x, const float *w, int *q) {
    const int8_t *v = eng_iq4nl_values;
    float amax = 0.0f, max = 0.0f;
    for (int i = 0; i < n; i++)
        if (fabsf(x[i]) > amax) amax = fabsf(x[i]), max = x[i];
    if (amax < 1e-30f) {
        for (int i = 0; i < n; i++) q[i] = nearest_level(v, 0.0f);
        return 0.0f;
    }
    int tq[256];
    double best = INFINITY;
    float best_d = 0.0f;
    for (int side = 0; side < 2; side++) {
        for (int k = -GRID; k <= GRID; k++) {
            float target = (side ? v[15] : v[0]) + 1.0f * k;
            float d = max / target, id = 1.0f / d;
            double sxv = 0, svv = 0;
            for (int i = 0; i < n; i++) {
                tq[i] = nearest_level(v, x[i] * id);
                sxv += (double)w[i] * x[i] * v[tq[i]];
                svv += (double)w[i] * v[tq[i]] * v[tq[i]];
            }
            if (svv <= 0) continue;
            double dd = sxv / svv, err = 0;
            for (int i = 0; i < n; i++) {
                double e = x[i] - dd * v[tq[i]];
                err += w[i] * e * e;
            }
            if (err < best) {
                best = err;
                best_d = (float)dd;
                memcpy(q, tq, sizeof(int) * (size_t)n);
            }
        }
    }
    return best_d;
}

/* Reassigns levels under a fixed (stored) scale. */
static void assign_sym(int n, const float *x, float d, int qmin, int qmax, int *q) {
    float id = d != 0.0f ? 1.0f / d : 0.0f;
    for (int i = 0; i < n; i++) q[i] = clampi((int)lrintf(x[i] * id), qmin, qmax);
}

static void assign_affine(int n, const float *x, float d, float m, int nmax, int *q) {
    float id = d > 0.0f ? 1.0f / d : 0.0f;
    for (int i = 0; i < n; i++) q[i] = clampi((int)lrintf((x[i] + m) * id), 0, nmax);
}

static void assign_levels(int n, const float *x, float d, int *q) {
    float id = d != 0.0f ? 1.0f / d : 0.0f;
    for (int i = 0; i < n; i++) q[i] = nearest_level(eng_iq4nl_values, x[i] * id);
}

/* Nibbles in the q4_0 layout: element j < 16 low nibble of byte j, j + 16 high nibble. */
static void pack_nibbles32(const int *q, uint8_t *qs) {
    for (int j = 0; j < 16; j++) qs[j] = (uint8_t)(q[j] | (q[j + 16] << 4));
}

/* ---- 32-element formats ---- */

static void q8_0_imp(const float *x, void *vy, int64_t n, const float *imp) {
    struct eng_block_q8_0 *y = vy;
    float w[ENG_QK8_0];
    int q[ENG_QK8_0];
    for (int64_t b = 0; b < n / ENG_QK8_0; b++) {
        const float *xb = x + b * ENG_QK8_0;
        weights(imp ? imp + b * ENG_QK8_0 : NULL, ENG_QK8_0, w);
        float d = fit_sym(ENG_QK8_0, xb, w, -127, 127, q);
        y[b].d = f2h(d);
        assign_sym(ENG_QK8_0, xb, h2f(y[b].d), -127, 127, q);
        for (int j = 0; j < ENG_QK8_0; j++) y[b].qs[j] = (int8_t)q[j];
    }
}

static void q4_0_imp(const float *x, void *vy, int64_t n, const float *imp) {
    struct eng_block_q4_0 *y = vy;
    float w[ENG_QK4_0];
    int q[ENG_QK4_0];
    for (int64_t b = 0; b < n / ENG_QK4_0; b++) {
        const float *xb = x + b * ENG_QK4_0;
        weights(imp ? imp + b * ENG_QK4_0 : NULL, ENG_QK4_0, w);
        float d = fit_sym(ENG_QK4_0, xb, w, -8, 7, q);
        y[b].d = f2h(d);
        assign_sym(ENG_QK4_0, xb, h2f(y[b].d), -8, 7, q);
        for (int j = 0; j < ENG_QK4_0; j++) q[j] += 8;
        pack_nibbles32(q, y[b].qs);
    }
}

static void q5_0_imp(const float *x, void *vy, int64_t n, const float *imp) {
    struct eng_block_q5_0 *y = vy;
    float w[ENG_QK5_0];
    int q[ENG_QK5_0];
    for (int64_t b = 0; b < n / ENG_QK5_0; b++) {
        const float *xb = x + b * ENG_QK5_0;
        weights(imp ? imp + b * ENG_QK5_0 : NULL, ENG_QK5_0, w);
        float d = fit_sym(ENG_QK5_0, xb, w, -16, 15, q);
        y[b].d = f2h(d);
        assign_sym(ENG_QK5_0, xb, h2f(y[b].d), -16, 15, q);
        uint32_t qh = 0;
        int lo[ENG_QK5_0];
        for (int j = 0; j < ENG_QK5_0; j++) {
            int v = q[j] + 16;
            qh |= (uint32_t)(v >> 4) << j;
            lo[j] = v & 15;
        }
        memcpy(y[b].qh, &qh, 4);
        pack_nibbles32(lo, y[b].qs);
    }
}

static void iq4_nl_imp(const float *x, void *vy, int64_t n, const float *imp) {
    struct eng_block_iq4_nl *y = vy;
    float w[ENG_QK4_NL];
    int q[ENG_QK4_NL];
    for (int64_t b = 0; b < n / ENG_QK4_NL; b++) {
        const float *xb = x + b * ENG_QK4_NL;
        weights(imp ? imp + b * ENG_QK4_NL : NULL, ENG_QK4_NL, w);
        float d = fit_levels(ENG_QK4_NL, xb, w, q);
        y[b].d = f2h(d);
        assign_levels(ENG_QK4_NL, xb, h2f(y[b].d), q);
        pack_nibbles32(q, y[b].qs);
    }
}

/* ---- k-quants (256-element super-blocks) ---- */

/* The super-block scale that maps the largest |s| to `levels` (signed: sign of that s). */
static float super_scale_signed(const float *s, int n, float levels) {
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < n; j++)
        if (fabsf(s[j]) > amax) amax = fabsf(s[j]), max = s[j];
    return amax > 0 ? max / -levels : 0.0f;
}

static float super_scale_pos(const float *s, int n, float levels) {
    float mx = 0.0f;
    for (int j = 0; j < n; j++) mx = fmaxf(mx, s[j]);
    return mx / levels;
}

/* 2-bit packing of 256 values, four 32-apart values per byte, in two halves of 128. */
static void pack_2bit(const int *q, uint8_t *qs) {
    for (int h = 0; h < ENG_QK_K; h += 128)
        for (int l = 0; l < 32; l++)
            qs[h / 4 + l] = (uint8_t)(q[h + l] | (q[h + l + 32] << 2) | (q[h + l + 64] << 4) |
                                      (q[h + l + 96] << 6));
}

static void q2_k_imp(const float *x, void *vy, int64_t n, const float *imp) {
    struct eng_block_q2_k *y = vy;
    float w[ENG_QK_K], sc[16], mn[16];
    int q[ENG_QK_K];
    for (int64_t b = 0; b < n / ENG_QK_K; b++) {
        const float *xb = x + b * ENG_QK_K;
        weights(imp ? imp + b * ENG_QK_K : NULL, ENG_QK_K, w);
        for (int j = 0; j < 16; j++)
            sc[j] = fit_affine(16, xb + 16 * j, w + 16 * j, 3, q + 16 * j, &mn[j]);
        float d = super_scale_pos(sc, 16, 15.0f), dm = super_scale_pos(mn, 16, 15.0f);
        y[b].d = f2h(d);
        y[b].dmin = f2h(dm);
        float D = h2f(y[b].d), DM = h2f(y[b].dmin);
        for (int j = 0; j < 16; j++) {
            int ls = D > 0 ? clampi((int)lrintf(sc[j] / D), 0, 15) : 0;
            int lm = DM > 0 ? clampi((int)lrintf(mn[j] / DM), 0, 15) : 0;
            y[b].scales[j] = (uint8_t)(ls | (lm << 4));
            assign_affine(16, xb + 16 * j, D * ls, DM * lm, 3, q + 16 * j);
        }
        pack_2bit(q, y[b].qs);
    }
}

static void q3_k_imp(const float *x, void *vy, int64_t n, const float *imp) {
    struct eng_block_q3_k *y = vy;
    float w[ENG_QK_K], sc[16];
    int q[ENG_QK_K];
    for (int64_t b = 0; b < n / ENG_QK_K; b++) {
        const float *xb = x + b * ENG_QK_K;
        weights(imp ? imp + b * ENG_QK_K : NULL, ENG_QK_K, w);
        for (int j = 0; j < 16; j++)
            sc[j] = fit_sym(16, xb + 16 * j, w + 16 * j, -4, 3, q + 16 * j);
        float d = super_scale_signed(sc, 16, 32.0f);
        memset(y[b].scales, 0, sizeof(y[b].scales));
        memset(y[b].hmask, 0, sizeof(y[b].hmask));
        y[b].d = f2h(d);
        float D = h2f(y[b].d);
        for (int j = 0; j < 16; j++) {
            int ls = D != 0 ? clampi((int)lrintf(sc[j] / D), -32, 31) : 0;
            assign_sym(16, xb + 16 * j, D * ls, -4, 3, q + 16 * j);
            int l = ls + 32; /* six bits: low four here, high two in bytes 8..11 */
            if (j < 8)
                y[b].scales[j] = (uint8_t)(l & 15);
            else
                y[b].scales[j - 8] |= (uint8_t)((l & 15) << 4);
            y[b].scales[8 + j % 4] |= (uint8_t)((l >> 4) << (2 * (j / 4)));
        }
        for (int i = 0; i < ENG_QK_K; i++) {
            int v = q[i] + 4; /* 0..7: bit 2 goes to hmask */
            if (v > 3) {
                y[b].hmask[i % 32] |= (uint8_t)(1 << (i / 32));
                v -= 4;
            }
            q[i] = v;
        }
        pack_2bit(q, y[b].qs);
    }
}

/* The q4_k / q5_k scale bytes: 8 six-bit scales and mins. */
static void k4_scales(const int *ls, const int *lm, uint8_t *s) {
    for (int j = 0; j < 8; j++) {
        if (j < 4) {
            s[j] = (uint8_t)ls[j];
            s[j + 4] = (uint8_t)lm[j];
        } else {
            s[j + 4] = (uint8_t)((ls[j] & 15) | ((lm[j] & 15) << 4));
            s[j - 4] |= (uint8_t)((ls[j] >> 4) << 6);
            s[j] |= (uint8_t)((lm[j] >> 4) << 6);
        }
    }
}

/* Shared by q4_k (nmax 15) and q5_k (nmax 31): eight affine sub-blocks of 32. Fills d, dmin,
 * scales and q[256]. */
static void k_affine_block(const float *xb, const float *w, int nmax, uint16_t *d16,
                           uint16_t *dmin16, uint8_t *scales, int *q) {
    float sc[8], mn[8];
    int ls[8], lm[8];
    for (int j = 0; j < 8; j++)
        sc[j] = fit_affine(32, xb + 32 * j, w + 32 * j, nmax, q + 32 * j, &mn[j]);
    *d16 = f2h(super_scale_pos(sc, 8, 63.0f));
    *dmin16 = f2h(super_scale_pos(mn, 8, 63.0f));
    float D = h2f(*d16), DM = h2f(*dmin16);
    for (int j = 0; j < 8; j++) {
        ls[j] = D > 0 ? clampi((int)lrintf(sc[j] / D), 0, 63) : 0;
        lm[j] = DM > 0 ? clampi((int)lrintf(mn[j] / DM), 0, 63) : 0;
        assign_affine(32, xb + 32 * j, D * ls[j], DM * lm[j], nmax, q + 32 * j);
    }
    memset(scales, 0, ENG_K_SCALE_SIZE);
    k4_scales(ls, lm, scales);
}

static void q4_k_imp(const float *x, void *vy, int64_t n, const float *imp) {
    struct eng_block_q4_k *y = vy;
    float w[ENG_QK_K];
    int q[ENG_QK_K];
    for (int64_t b = 0; b < n / ENG_QK_K; b++) {
        weights(imp ? imp + b * ENG_QK_K : NULL, ENG_QK_K, w);
        k_affine_block(x + b * ENG_QK_K, w, 15, &y[b].d, &y[b].dmin, y[b].scales, q);
        for (int c = 0; c < ENG_QK_K; c += 64) /* 64 values: 32 low nibbles, 32 high */
            for (int l = 0; l < 32; l++)
                y[b].qs[c / 2 + l] = (uint8_t)(q[c + l] | (q[c + l + 32] << 4));
    }
}

static void q5_k_imp(const float *x, void *vy, int64_t n, const float *imp) {
    struct eng_block_q5_k *y = vy;
    float w[ENG_QK_K];
    int q[ENG_QK_K];
    for (int64_t b = 0; b < n / ENG_QK_K; b++) {
        weights(imp ? imp + b * ENG_QK_K : NULL, ENG_QK_K, w);
        k_affine_block(x + b * ENG_QK_K, w, 31, &y[b].d, &y[b].dmin, y[b].scales, q);
        memset(y[b].qh, 0, sizeof(y[b].qh));
        for (int c = 0, bit = 0; c < ENG_QK_K; c += 64, bit += 2) {
            for (int l = 0; l < 32; l++) {
                int a = q[c + l], h = q[c + l + 32];
                if (a > 15) a -= 16, y[b].qh[l] |= (uint8_t)(1 << bit);
                if (h > 15) h -= 16, y[b].qh[l] |= (uint8_t)(1 << (bit + 1));
                y[b].qs[c / 2 + l] = (uint8_t)(a | (h << 4));
            }
        }
    }
}

static void q6_k_imp(const float *x, void *vy, int64_t n, const float *imp) {
    struct eng_block_q6_k *y = vy;
    float w[ENG_QK_K], sc[16];
    int q[ENG_QK_K];
    for (int64_t b = 0; b < n / ENG_QK_K; b++) {
        const float *xb = x + b * ENG_QK_K;
        weights(imp ? imp + b * ENG_QK_K : NULL, ENG_QK_K, w);
        for (int j = 0; j < 16; j++)
            sc[j] = fit_sym(16, xb + 16 * j, w + 16 * j, -32, 31, q + 16 * j);
        y[b].d = f2h(super_scale_signed(sc, 16, 128.0f));
        float D = h2f(y[b].d);
        for (int j = 0; j < 16; j++) {
            int ls = D != 0 ? clampi((int)lrintf(sc[j] / D), -128, 127) : 0;
            y[b].scales[j] = (int8_t)ls;
            assign_sym(16, xb + 16 * j, D * ls, -32, 31, q + 16 * j);
        }
        for (int i = 0; i < ENG_QK_K; i++) q[i] += 32;
        for (int h = 0; h < ENG_QK_K; h += 128) { /* 128 values: 64 bytes of ql, 32 of qh */
            uint8_t *ql = y[b].ql + h / 2, *qh = y[b].qh + h / 4;
            for (int l = 0; l < 32; l++) {
                const int *v = q + h + l;
                ql[l] = (uint8_t)((v[0] & 15) | ((v[64] & 15) << 4));
                ql[l + 32] = (uint8_t)((v[32] & 15) | ((v[96] & 15) << 4));
                qh[l] = (uint8_t)((v[0] >> 4) | ((v[32] >> 4) << 2) | ((v[64] >> 4) << 4) |
                                  ((v[96] >> 4) << 6));
            }
        }
    }
}

static void iq4_xs_imp(const float *x, void *vy, int64_t n, const float *imp) {
    struct eng_block_iq4_xs *y = vy;
    float w[ENG_QK_K], sc[8];
    int q[ENG_QK_K];
    for (int64_t b = 0; b < n / ENG_QK_K; b++) {
        const float *xb = x + b * ENG_QK_K;
        weights(imp ? imp + b * ENG_QK_K : NULL, ENG_QK_K, w);
        for (int j = 0; j < 8; j++) sc[j] = fit_levels(32, xb + 32 * j, w + 32 * j, q + 32 * j);
        y[b].d = f2h(super_scale_signed(sc, 8, 32.0f));
        float D = h2f(y[b].d);
        y[b].scales_h = 0;
        memset(y[b].scales_l, 0, sizeof(y[b].scales_l));
        for (int j = 0; j < 8; j++) {
            int ls = D != 0 ? clampi((int)lrintf(sc[j] / D), -32, 31) : 0;
            assign_levels(32, xb + 32 * j, D * ls, q + 32 * j);
            int l = ls + 32;
            y[b].scales_l[j / 2] |= (uint8_t)((l & 15) << (4 * (j % 2)));
            y[b].scales_h |= (uint16_t)((l >> 4) << (2 * j));
            pack_nibbles32(q + 32 * j, y[b].qs + 16 * j);
        }
    }
}

void eng_quants_imp_install(struct eng_type_traits *t) {
    t[ENG_TYPE_Q8_0].quantize_imp = q8_0_imp;
    t[ENG_TYPE_Q4_0].quantize_imp = q4_0_imp;
    t[ENG_TYPE_Q5_0].quantize_imp = q5_0_imp;
    t[ENG_TYPE_IQ4_NL].quantize_imp = iq4_nl_imp;
    t[ENG_TYPE_Q2_K].quantize_imp = q2_k_imp;
    t[ENG_TYPE_Q3_K].quantize_imp = q3_k_imp;
    t[ENG_TYPE_Q4_K].quantize_imp = q4_k_imp;
    t[ENG_TYPE_Q5_K].quantize_imp = q5_k_imp;
    t[ENG_TYPE_Q6_K].quantize_imp = q6_k_imp;
    t[ENG_TYPE_IQ4_XS].quantize_imp = iq4_xs_imp;
}
