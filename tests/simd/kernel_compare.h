/*
 * kernel_compare.h — compares the kernels of one SIMD level with the scalar references, for every
 * format: activation quantizers must give identical bytes, dequantizers identical floats, and dot
 * products must agree within a bound that only covers the different order of float additions.
 * Shared by tests/check_kernels.c (Check, native) and tests/simd/simd_test.c (standalone, also
 * cross-compiled for aarch64 and run under qemu-user). Header-only: static functions.
 */
#ifndef EDGELLM_TESTS_KERNEL_COMPARE_H
#define EDGELLM_TESTS_KERNEL_COMPARE_H

#include "quants.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Named tolerances. A SIMD dot product computes the same exact integer block sums as its
 * reference and differs only in the order (and fusing) of the float multiply-adds that combine
 * them, so the difference is bounded by a few float roundings of the sum of |terms|. */
#define KC_DOT_REL_TOL 2e-6 /* × Σ|w_i·a_i| over the row (float rounding, n <= 8192) */
#define KC_DOT_ABS_TOL 1e-6
/* Attention outputs are convex combinations of values; the scores' rounding (another summation
 * order) grows with their size and moves the weights with it: tolerance per unit of value
 * magnitude, plus this much per unit of score magnitude. */
#define KC_ATTN_ABS_TOL   2e-6
#define KC_ATTN_SCORE_TOL 2.5e-7
/* RMSNorm: the sum of squares in float lanes against the reference's double (n <= 4096: a few
 * hundred roundings at most, relative); SwiGLU: vexp.h's polynomial (2e-7) and the division
 * against expf, relative, plus an absolute floor for the underflowing tail (x < -87). */
#define KC_NORM_REL_TOL 1e-5
#define KC_GLU_REL_TOL  2e-6
#define KC_GLU_ABS_TOL  1e-30

static uint64_t kc_rng = 0x9E3779B97F4A7C15ULL;

static uint32_t kc_rand(void) {
    kc_rng ^= kc_rng << 13;
    kc_rng ^= kc_rng >> 7;
    kc_rng ^= kc_rng << 17;
    return (uint32_t)(kc_rng >> 16);
}

static float kc_uniform(void) {
    return (float)(kc_rand() & 0xFFFFFF) / (float)0x1000000;
}

static float kc_gauss(void) {
    float u = kc_uniform() + 1e-7f, v = kc_uniform();
    return sqrtf(-2.0f * logf(u)) * cosf(6.2831853f * v);
}

/* Random row: gaussian with a few outliers, an all-zero stretch and a tiny-valued stretch, so
 * blocks of every kind (zero scale, extreme max) appear. */
static void kc_fill(float *x, int64_t n, float scale) {
    for (int64_t i = 0; i < n; i++) {
        x[i] = kc_gauss() * scale;
        if (kc_rand() % 97 == 0) x[i] *= 8.0f;
    }
    if (n >= 512) {
        for (int64_t i = 256; i < 288; i++) x[i] = 0.0f;
        for (int64_t i = 288; i < 320; i++) x[i] *= 1e-6f;
    }
}

/* Offsets of the fp16 fields of a block (set to sane values after filling a block with random
 * bytes, so random bit patterns are tested without NaN/inf scales). -1 ends the list. */
static const int *kc_half_fields(enum eng_type t) {
    static const int none[] = {-1}, d0[] = {0, -1}, dm0[] = {0, 2, -1};
    static const int q2k[] = {80, 82, -1}, q3k[] = {108, -1}, q6k[] = {208, -1};
    switch (t) {
    case ENG_TYPE_Q4_0:
    case ENG_TYPE_Q5_0:
    case ENG_TYPE_Q8_0:
    case ENG_TYPE_IQ4_NL:
    case ENG_TYPE_IQ4_XS:
        return d0;
    case ENG_TYPE_Q4_1:
    case ENG_TYPE_Q5_1:
    case ENG_TYPE_Q4_K:
    case ENG_TYPE_Q5_K:
        return dm0;
    case ENG_TYPE_Q2_K:
        return q2k;
    case ENG_TYPE_Q3_K:
        return q3k;
    case ENG_TYPE_Q6_K:
        return q6k;
    default:
        return none;
    }
}

/* Fills a weight row of type t: quantized from random floats (realistic) or, if raw, random bytes
 * with valid fp16 scales (every bit pattern of quants and packed scales). */
static void kc_weight_row(const struct eng_type_traits *ref, enum eng_type t, void *row, int64_t n,
                          float *tmp, int raw) {
    size_t rs = eng_row_size(t, n);
    if (!raw || !ref->is_quantized) {
        kc_fill(tmp, n, 0.05f);
        ref->from_float(tmp, row, n);
        return;
    }
    uint8_t *p = row;
    for (size_t i = 0; i < rs; i++) p[i] = (uint8_t)kc_rand();
    const int *hf = kc_half_fields(t);
    for (int64_t b = 0; b < n / ref->blck_size; b++)
        for (int k = 0; hf[k] >= 0; k++) {
            uint16_t h = eng_fp32_to_fp16((kc_uniform() - 0.3f) * 0.01f);
            memcpy(p + (size_t)b * ref->type_size + hf[k], &h, 2);
        }
}

struct kc_result {
    int checks;
    int failures;
};

static void kc_fail(struct kc_result *r, FILE *log, const char *fmt, const char *a, const char *b,
                    long long n, double x, double y, double tol) {
    r->failures++;
    if (log) {
        fprintf(log, fmt, a, b, n, x, y, tol);
        fputc('\n', log);
    }
}

/* nr weight rows of type t (rt's quantizer), row 0 a copy of w and the others from scaled,
 * rotated copies of x (xs: n floats of scratch): rows that differ, for the multi-row kernels.
 * The caller frees the result. */
static uint8_t *kc_weight_rows(const struct eng_type_traits *rt, enum eng_type t, const uint8_t *w,
                               const float *x, float *xs, int64_t n, int nr) {
    size_t wr = eng_row_size(t, n);
    uint8_t *rows = malloc(wr * (size_t)nr);
    memcpy(rows, w, wr);
    for (int k = 1; k < nr; k++) {
        for (int64_t i = 0; i < n; i++) xs[i] = x[(i + 7 * k) % n] * (0.5f + k);
        rt->from_float(xs, rows + (size_t)k * wr, n);
    }
    return rows;
}

/* An interleaved layout t (row_group > 1) of level lvl, n weights a row: two groups of rows of
 * its row type, interleaved; vec_dot_rows against the reference vec_dot of each row (its
 * tolerance), vec_dot_cols with 1..ENG_DOT_COLS columns each column exactly vec_dot_rows'
 * result, and nothing written past the rows asked for. */
static void kc_interleaved(struct kc_result *r, const struct eng_type_traits *ref,
                           const struct eng_type_traits *lvl, enum eng_type t, int64_t n,
                           const char *level, FILE *log) {
    const struct eng_type_traits *lt = &lvl[t], *rr = &ref[lt->row_type];
    if (!lt->vec_dot_rows || !lt->vec_dot_cols || n % rr->blck_size) return;
    const int G = lt->row_group, NR = 2 * G;
    const size_t wr = eng_row_size(lt->row_type, n);
    const enum eng_type lv = lt->vec_dot_type, rv = rr->vec_dot_type;
    const size_t ar = eng_row_size(lv, n);
    float *x = malloc(sizeof(float) * (size_t)n), *wf = malloc(sizeof(float) * (size_t)n);
    float *af = malloc(sizeof(float) * (size_t)n);
    uint8_t *rows = malloc(wr * (size_t)NR), *xr = malloc(wr * (size_t)NR);
    uint8_t *cols = malloc(ar * ENG_DOT_COLS), *aref = malloc(eng_row_size(rv, n));
    for (int k = 0; k < NR; k++) {
        kc_fill(x, n, 0.5f + 0.1f * (float)k);
        rr->from_float(x, rows + (size_t)k * wr, n);
    }
    eng_interleave_rows(t, rows, xr, n, NR);
    float *got = malloc(sizeof(float) * (size_t)(NR + 1) * ENG_DOT_COLS);
    float one[2 * ENG_X16_GROUP + 1];
    float *xc = malloc(sizeof(float) * (size_t)n * ENG_DOT_COLS);
    for (int c = 0; c < ENG_DOT_COLS; c++) {
        kc_fill(xc + (size_t)c * n, n, 1.0f + (float)c);
        lvl[lv].from_float(xc + (size_t)c * n, cols + (size_t)c * ar, n);
    }
    for (int c = 0; c < ENG_DOT_COLS; c++) {
        /* the same codes in the reference's activation type */
        ref[rv].from_float(xc + (size_t)c * n, aref, n);
        ref[rv].to_float(aref, af, n);
        one[NR] = 12345.0f;
        lt->vec_dot_rows(n, NR, one, xr, wr, cols + (size_t)c * ar);
        for (int k = 0; k < NR; k++) {
            float want;
            rr->vec_dot(n, &want, rows + (size_t)k * wr, aref);
            rr->to_float(rows + (size_t)k * wr, wf, n);
            double mag = 0.0;
            for (int64_t i = 0; i < n; i++) mag += fabs((double)wf[i] * af[i]);
            r->checks++;
            if (!(fabs((double)want - one[k]) <= KC_DOT_REL_TOL * mag + KC_DOT_ABS_TOL))
                kc_fail(r, log, "%s %s vec_dot_rows n=%lld row %g: %.9g, reference %.9g", level,
                        lt->name, (long long)n, (double)k, one[k], want);
        }
        r->checks++;
        if (one[NR] != 12345.0f)
            kc_fail(r, log, "%s %s vec_dot_rows n=%lld: wrote past row %g (%g %g)", level, lt->name,
                    (long long)n, (double)NR, 0.0, 0.0);
        for (int nc = c + 1; nc <= ENG_DOT_COLS; nc++) {
            for (int i = 0; i < (NR + 1) * ENG_DOT_COLS; i++) got[i] = 12345.0f;
            lt->vec_dot_cols(n, nc, NR, got, NR + 1, xr, wr, cols, ar);
            for (int k = 0; k <= NR; k++) {
                r->checks++;
                if (k < NR ? memcmp(&got[(NR + 1) * c + k], &one[k], sizeof(float)) != 0
                           : got[(NR + 1) * c + k] != 12345.0f)
                    kc_fail(r, log, "%s %s vec_dot_cols n=%lld row %g: %.9g, one column %.9g",
                            level, lt->name, (long long)n, (double)k, got[(NR + 1) * c + k],
                            k < NR ? one[k] : 12345.0);
            }
        }
    }
    free(x), free(wf), free(af), free(rows), free(xr), free(cols), free(aref), free(got), free(xc);
}

/* Compares level s (already built into `lvl`) with `ref` for every type; returns counts. */
static struct kc_result kc_compare_tables(const struct eng_type_traits *ref,
                                          const struct eng_type_traits *lvl, const char *level,
                                          FILE *log) {
    struct kc_result r = {0, 0};
    /* 800 and 1248: 25 and 39 blocks of 32, so the 32-element formats' kernels that take eight
     * blocks per step also run their tail of one and of seven blocks */
    static const int64_t sizes[] = {256, 800, 1024, 1248, 4096, 5632};
    const int64_t NMAX = 5632 + 64;
    float *x = malloc(NMAX * sizeof(float)), *y = malloc(NMAX * sizeof(float));
    float *wf = malloc(NMAX * sizeof(float)), *af = malloc(NMAX * sizeof(float));
    uint8_t *w = malloc(NMAX * 8), *a = malloc(NMAX * 8), *a2 = malloc(NMAX * 8);
    for (int t = 0; t < ENG_TYPE_COUNT; t++) {
        const struct eng_type_traits *rt = &ref[t], *lt = &lvl[t];
        if (!rt->name) continue;
        const char *name = rt->name;
        if (rt->row_group > 1) { /* no row kernels of its own: products of whole groups */
            for (size_t si = 0; si < sizeof(sizes) / sizeof(sizes[0]); si++)
                kc_interleaved(&r, ref, lvl, (enum eng_type)t, sizes[si], level, log);
            continue;
        }
        for (size_t si = 0; si < sizeof(sizes) / sizeof(sizes[0]) + 1; si++) {
            /* the extra size checks the tails of the element-wise formats */
            int64_t n = si < sizeof(sizes) / sizeof(sizes[0]) ? sizes[si] : 77;
            if (n % rt->blck_size) continue;
            /* quantizer: identical bytes */
            if (rt->from_float) {
                kc_fill(x, n, 1.0f);
                size_t rs = eng_row_size((enum eng_type)t, n);
                memset(a, 0, rs);
                memset(a2, 0xAB, rs);
                rt->from_float(x, a, n);
                lt->from_float(x, a2, n);
                r.checks++;
                if (memcmp(a, a2, rs) != 0)
                    kc_fail(&r, log, "%s %s from_float n=%lld: bytes differ (%g %g %g)", level,
                            name, (long long)n, 0.0, 0.0, 0.0);
            }
            for (int raw = 0; raw < 2; raw++) {
                kc_weight_row(rt, (enum eng_type)t, w, n, x, raw);
                /* dequantizer: identical floats */
                rt->to_float(w, wf, n);
                lt->to_float(w, y, n);
                r.checks++;
                if (memcmp(wf, y, (size_t)n * sizeof(float)) != 0)
                    kc_fail(&r, log, "%s %s to_float n=%lld: values differ (raw %g %g %g)", level,
                            name, (long long)n, (double)raw, 0.0, 0.0);
                if (rt->repack && lt->repack && rt->repack != lt->repack) {
                    /* prefill repacking: identical codes, scales and minimums */
                    int8_t *q1 = malloc((size_t)n), *q2 = malloc((size_t)n);
                    float *f1 = malloc(sizeof(float) * (size_t)n / 4),
                          *f2 = malloc(sizeof(float) * (size_t)n / 4);
                    memset(f1, 0, sizeof(float) * (size_t)n / 4);
                    memset(f2, 0, sizeof(float) * (size_t)n / 4);
                    rt->repack(w, q1, f1, f1 + n / 16, n);
                    lt->repack(w, q2, f2, f2 + n / 16, n);
                    r.checks++;
                    if (memcmp(q1, q2, (size_t)n) || memcmp(f1, f2, sizeof(float) * (size_t)n / 8))
                        kc_fail(&r, log, "%s %s repack n=%lld: differs (raw %g %g %g)", level, name,
                                (long long)n, (double)raw, 0.0, 0.0);
                    free(q1), free(q2), free(f1), free(f2);
                }
                if (!rt->vec_dot) continue;
                /* dot product */
                enum eng_type vt = rt->vec_dot_type;
                const struct eng_type_traits *rv = &ref[vt];
                kc_fill(x, n, 1.0f);
                const void *act = x;
                if (vt != ENG_TYPE_F32) {
                    rv->from_float(x, a, n);
                    act = a;
                    rv->to_float(a, af, n);
                } else {
                    memcpy(af, x, (size_t)n * sizeof(float));
                }
                double mag = 0.0;
                for (int64_t i = 0; i < n; i++) mag += fabs((double)wf[i] * af[i]);
                float s_ref = 0.0f, s_lvl = 0.0f;
                rt->vec_dot(n, &s_ref, w, act);
                /* a level may read the activations in a layout of its own (same codes) */
                const void *lact = act;
                if (lt->vec_dot_type != vt) {
                    lvl[lt->vec_dot_type].from_float(x, a2, n);
                    lact = a2;
                }
                lt->vec_dot(n, &s_lvl, w, lact);
                if (lt->vec_dot_cols) {
                    /* several activation rows at once: each exactly the one-row result */
                    enum eng_type lv = lt->vec_dot_type;
                    size_t ar = eng_row_size(lv, n);
                    uint8_t *cols = malloc(ar * ENG_DOT_COLS);
                    float *xs = malloc(sizeof(float) * (size_t)n);
                    for (int c = 0; c < ENG_DOT_COLS; c++) {
                        for (int64_t i = 0; i < n; i++) xs[i] = x[(i + 13 * c) % n] * (1.0f + c);
                        lvl[lv].from_float(xs, cols + (size_t)c * ar, n);
                    }
                    /* two weight rows: w and another */
                    size_t wr = eng_row_size((enum eng_type)t, n);
                    uint8_t *w2 = kc_weight_rows(rt, (enum eng_type)t, w, x, xs, n, 2);
                    for (int nc = 1; nc <= ENG_DOT_COLS; nc++) {
                        float got[3 * ENG_DOT_COLS];
                        for (int i = 0; i < 3 * ENG_DOT_COLS; i++) got[i] = 12345.0f;
                        lt->vec_dot_cols(n, nc, 2, got, 3, w2, wr, cols, ar);
                        for (int c = 0; c < nc; c++)
                            for (int k = 0; k < 2; k++) {
                                float want;
                                lt->vec_dot(n, &want, w2 + (size_t)k * wr, cols + (size_t)c * ar);
                                r.checks++;
                                if (memcmp(&want, &got[3 * c + k], sizeof(float)) != 0)
                                    kc_fail(&r, log,
                                            "%s %s vec_dot_cols n=%lld row %g: %.9g, vec_dot %.9g",
                                            level, name, (long long)n, (double)k, got[3 * c + k],
                                            want);
                            }
                        for (int i = 0; i < 3 * ENG_DOT_COLS; i++) {
                            if (i % 3 < 2 && i / 3 < nc) continue;
                            r.checks++;
                            if (got[i] != 12345.0f)
                                kc_fail(&r, log, "%s %s vec_dot_cols n=%lld: wrote slot %g (%g %g)",
                                        level, name, (long long)n, (double)i, 0.0, 0.0);
                        }
                    }
                    free(w2);
                    free(cols);
                    free(xs);
                }
                if (lt->vec_dot_rows) {
                    /* consecutive weight rows in one call: each exactly its vec_dot */
                    enum { NR = 3 };
                    size_t wr = eng_row_size((enum eng_type)t, n);
                    float *xs = malloc(sizeof(float) * (size_t)n);
                    uint8_t *rows = kc_weight_rows(rt, (enum eng_type)t, w, x, xs, n, NR);
                    float got[NR + 1];
                    got[NR] = 12345.0f; /* must stay: nr rows, not one more */
                    lt->vec_dot_rows(n, NR, got, rows, wr, lact);
                    for (int k = 0; k < NR; k++) {
                        float want;
                        lt->vec_dot(n, &want, rows + (size_t)k * wr, lact);
                        r.checks++;
                        if (memcmp(&want, &got[k], sizeof(float)) != 0)
                            kc_fail(&r, log, "%s %s vec_dot_rows n=%lld row %g: %.9g, vec_dot %.9g",
                                    level, name, (long long)n, (double)k, got[k], want);
                    }
                    r.checks++;
                    if (got[NR] != 12345.0f)
                        kc_fail(&r, log, "%s %s vec_dot_rows n=%lld: wrote past row %g (%g %g)",
                                level, name, (long long)n, (double)NR, 0.0, 0.0);
                    free(rows);
                    free(xs);
                }
                double tol = KC_DOT_REL_TOL * mag + KC_DOT_ABS_TOL;
                r.checks++;
                if (!(fabs((double)s_ref - s_lvl) <= tol))
                    kc_fail(&r, log, "%s %s vec_dot n=%lld: ref %.9g simd %.9g tol %.3g", level,
                            name, (long long)n, s_ref, s_lvl, tol);
            }
        }
    }
    free(x);
    free(y);
    free(wf);
    free(af);
    free(w);
    free(a);
    free(a2);
    return r;
}

/* The attention kernel of level s against eng_attn_ref: head sizes with and without a
 * SIMD-width multiple, position counts with tails, scores from small to large enough that most
 * weights underflow (head sizes cover each register-block width of the x86 and NEON kernels),
 * keys and values cached as floats and as fp16. Every SIMD level must have one. */
static struct kc_result kc_compare_attn(enum eng_simd s, const char *level, FILE *log) {
    struct kc_result r = {0, 0};
    eng_attn_fn attn = eng_attn_kernel_for(s);
    r.checks++;
    if (!attn) {
        r.failures++;
        if (log) fprintf(log, "%s: no attention kernel\n", level);
        return r;
    }
    static const int hds[] = {64, 128, 96, 80, 40, 24, 12, 256},
                     ns[] = {1, 3, 4, 5, 8, 9, 16, 17, 33, 130};
    static const float mags[] = {0.1f, 4.0f, 40.0f};
    const size_t ld = 256 + 4;
    float *k = malloc(130 * ld * sizeof(float)), *v = malloc(130 * ld * sizeof(float));
    uint16_t *kh = malloc(130 * ld * sizeof(uint16_t)), *vh = malloc(130 * ld * sizeof(uint16_t));
    if (!k || !v || !kh || !vh) {
        free(k), free(v), free(kh), free(vh);
        r.failures++;
        return r;
    }
    for (size_t i = 0; i < 130 * ld; i++) k[i] = kc_uniform() * 2.0f - 1.0f;
    for (size_t i = 0; i < 130 * ld; i++) v[i] = kc_uniform() * 2.0f - 1.0f;
    for (size_t i = 0; i < 130 * ld; i++)
        kh[i] = eng_fp32_to_fp16(k[i]), vh[i] = eng_fp32_to_fp16(v[i]);
    for (int f16 = 0; f16 < 2; f16++)
        for (size_t hi = 0; hi < sizeof(hds) / sizeof(hds[0]); hi++)
            for (size_t ni = 0; ni < sizeof(ns) / sizeof(ns[0]); ni++)
                for (size_t mi = 0; mi < sizeof(mags) / sizeof(mags[0]); mi++) {
                    int hd = hds[hi], n = ns[ni];
                    float q[256], att1[130], att2[130], o1[256], o2[256];
                    for (int i = 0; i < hd; i++) q[i] = (kc_uniform() * 2.0f - 1.0f) * mags[mi];
                    float scale = 1.0f / sqrtf((float)hd);
                    const void *kk = f16 ? (const void *)kh : k, *vv = f16 ? (const void *)vh : v;
                    const float lse1 = eng_attn_ref(hd, n, q, kk, vv, ld, f16, scale, att1, o1);
                    const float lse2 = attn(hd, n, q, kk, vv, ld, f16, scale, att2, o2);
                    /* the largest score's size: |q|·|k| / sqrt(hd) at most */
                    double smax = 0.0;
                    for (int i = 0; i < hd; i++) smax += fabsf(q[i]);
                    double tol = KC_ATTN_ABS_TOL + KC_ATTN_SCORE_TOL * smax * scale;
                    /* the log of the softmax's denominator, which forward.c merges blocks with */
                    r.checks++;
                    if (!(fabs((double)lse1 - lse2) <= tol * (1.0 + fabs((double)lse1))))
                        kc_fail(&r, log,
                                "%s attention %s hd*1000+n=%lld: log-sum %.9g vs %.9g (tol %g)",
                                level, f16 ? "fp16 cache" : "f32 cache", (long long)hd * 1000 + n,
                                lse2, lse1, tol * (1.0 + fabs((double)lse1)));
                    for (int i = 0; i < hd; i++) {
                        r.checks++;
                        if (!(fabs((double)o1[i] - o2[i]) <= tol)) {
                            kc_fail(&r, log,
                                    "%s attention %s hd*1000+n=%lld: %.9g vs %.9g (tol %g)", level,
                                    f16 ? "fp16 cache" : "f32 cache", (long long)hd * 1000 + n,
                                    o2[i], o1[i], tol);
                            break;
                        }
                    }
                }
    free(k), free(v), free(kh), free(vh);
    return r;
}

/* got[0..n) against want[0..n) within rel·|want| + abs each; the first miss is logged. */
static void kc_compare_rel(struct kc_result *r, FILE *log, const char *level, const char *what,
                           const char *kind, int n, const float *want, const float *got, double rel,
                           double abs) {
    char name[64];
    snprintf(name, sizeof(name), "%s %s", what, kind);
    for (int i = 0; i < n; i++) {
        r->checks++;
        if (!(fabs((double)want[i] - got[i]) <= rel * fabs((double)want[i]) + abs)) {
            kc_fail(r, log, "%s %s n*10000+i=%lld: %.9g vs %.9g (rel tol %g)", level, name,
                    (long long)n * 10000 + i, got[i], want[i], rel);
            return;
        }
    }
}

/* The maximum of level s (the sampler's pass over the logits) against the reference: the same
 * value, equal bit for bit, for lengths around the vector widths with the maximum at every
 * position, NaN around it and in its place, all -inf, all NaN; the copy equal byte for byte
 * (NaN payloads included) and nothing written past it or with no destination. */
static void kc_compare_max(struct kc_result *r, eng_max_fn max, const char *level, FILE *log) {
    static const int ns[] = {1, 7, 8, 9, 31, 32, 33, 63, 64, 65, 256, 1000};
    enum { N = 1000 };
    float x[N], d[N + 1];
    for (size_t ni = 0; ni < sizeof(ns) / sizeof(ns[0]); ni++) {
        int n = ns[ni];
        for (int at = 0; at < n; at++)
            for (int kind = 0; kind < 5; kind++) {
                kc_fill(x, n, 4.0f);
                for (int i = 0; i < n; i++)
                    if (kind >= 1 && i % 5 == 1) x[i] = NAN;
                x[at] = kind == 2 ? NAN : 100.0f; /* kind 2: the maximum elsewhere */
                if (kind == 3)
                    for (int i = 0; i < n; i++) x[i] = i == at ? -INFINITY : NAN;
                if (kind == 4)
                    for (int i = 0; i < n; i++) x[i] = NAN;
                float want = eng_max_ref(NULL, x, n);
                d[n] = 12345.0f;
                float got = max(d, x, n), got0 = max(NULL, x, n);
                r->checks++;
                if (memcmp(&got, &want, sizeof(float)) || memcmp(&got0, &want, sizeof(float)) ||
                    memcmp(d, x, (size_t)n * sizeof(float)) || d[n] != 12345.0f) {
                    kc_fail(r, log, "%s max%s n=%lld at*10+kind %g: %.9g, reference %.9g (or copy)",
                            level, "", n, at * 10.0 + kind, got, want);
                    return;
                }
            }
    }
}

/* RMSNorm and the SwiGLU product of level s against their references: lengths with and without
 * a SIMD-width multiple, magnitudes from tiny to large, the norm in place (out == x) as the pass
 * runs it for q/k norms; SwiGLU over [-100, 100], past both ends of the exponential's range.
 * Every SIMD level must have them, and the maximum (kc_compare_max). */
static struct kc_result kc_compare_vec(enum eng_simd s, const char *level, FILE *log) {
    struct kc_result r = {0, 0};
    struct eng_vec_ops v = eng_vec_ops_for(s);
    r.checks++;
    if (!v.rmsnorm || !v.glu || !v.max) {
        r.failures++;
        if (log) fprintf(log, "%s: no RMSNorm / SwiGLU / maximum kernels\n", level);
        return r;
    }
    kc_compare_max(&r, v.max, level, log);
    static const int ns[] = {1, 3, 8, 15, 16, 31, 33, 64, 100, 768, 2053, 4096};
    static const float mags[] = {1e-4f, 1.0f, 300.0f};
    enum { N = 4096 };
    float *x = malloc(N * sizeof(float)), *w = malloc(N * sizeof(float));
    float *o1 = malloc(N * sizeof(float)), *o2 = malloc(N * sizeof(float));
    if (!x || !w || !o1 || !o2) {
        free(x), free(w), free(o1), free(o2);
        r.failures++;
        return r;
    }
    for (size_t ni = 0; ni < sizeof(ns) / sizeof(ns[0]); ni++)
        for (size_t mi = 0; mi < sizeof(mags) / sizeof(mags[0]); mi++) {
            int n = ns[ni];
            kc_fill(x, n, mags[mi]);
            for (int i = 0; i < n; i++) w[i] = kc_uniform() * 2.0f - 0.5f;
            eng_rmsnorm_ref(o1, x, w, n, 1e-5f);
            memcpy(o2, x, (size_t)n * sizeof(float));
            v.rmsnorm(o2, o2, w, n, 1e-5f); /* in place */
            kc_compare_rel(&r, log, level, "rmsnorm",
                           mi == 0   ? "tiny"
                           : mi == 1 ? "unit"
                                     : "large",
                           n, o1, o2, KC_NORM_REL_TOL, 1e-30);
            for (int i = 0; i < n; i++) {
                x[i] = (kc_uniform() * 2.0f - 1.0f) * (mi == 2 ? 100.0f : mi == 1 ? 8.0f : 0.5f);
                w[i] = kc_gauss();
            }
            memcpy(o1, x, (size_t)n * sizeof(float));
            memcpy(o2, x, (size_t)n * sizeof(float));
            eng_glu_ref(o1, w, n);
            v.glu(o2, w, n);
            kc_compare_rel(&r, log, level, "swiglu",
                           mi == 0   ? "|x|<0.5"
                           : mi == 1 ? "|x|<8"
                                     : "|x|<100",
                           n, o1, o2, KC_GLU_REL_TOL, KC_GLU_ABS_TOL);
        }
    free(x), free(w), free(o1), free(o2);
    return r;
}

/* Batched decode's column kernels of level s: the formats of the bundled and benchmark models
 * (F16, Q8_0, Q4_0, and q4_k / q5_k / q6_k of the K-quant mixes) have one at every SIMD level.
 * Without it a batch falls back to one vec_dot per activation row, with the same results, so no
 * comparison above would notice it missing. */
static struct kc_result kc_check_cols(const struct eng_type_traits *lvl, const char *level,
                                      FILE *log) {
    static const enum eng_type types[] = {ENG_TYPE_F16,  ENG_TYPE_Q8_0, ENG_TYPE_Q4_0,
                                          ENG_TYPE_Q4_K, ENG_TYPE_Q5_K, ENG_TYPE_Q6_K};
    struct kc_result r = {0, 0};
    for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
        r.checks++;
        if (!lvl[types[i]].vec_dot_cols) {
            r.failures++;
            if (log) fprintf(log, "%s: no column kernel for %s\n", level, lvl[types[i]].name);
        }
    }
    return r;
}

/* Builds every supported level and compares it with the references. */
static struct kc_result kc_compare_all(FILE *log, int *n_levels) {
    struct kc_result total = {0, 0};
    static struct eng_type_traits ref[ENG_TYPE_COUNT], lvl[ENG_TYPE_COUNT];
    eng_types_init_ref(ref);
    *n_levels = 0;
    for (int s = 1; s < ENG_SIMD_COUNT; s++) {
        if (!eng_simd_supported((enum eng_simd)s)) continue;
        if (eng_types_build(lvl, (enum eng_simd)s) != 0) continue;
        (*n_levels)++;
        struct kc_result r = kc_compare_tables(ref, lvl, eng_simd_name((enum eng_simd)s), log);
        struct kc_result ra =
            kc_compare_attn((enum eng_simd)s, eng_simd_name((enum eng_simd)s), log);
        struct kc_result rv =
            kc_compare_vec((enum eng_simd)s, eng_simd_name((enum eng_simd)s), log);
        struct kc_result rc = kc_check_cols(lvl, eng_simd_name((enum eng_simd)s), log);
        r.checks += ra.checks + rv.checks + rc.checks;
        r.failures += ra.failures + rv.failures + rc.failures;
        if (log)
            fprintf(log, "level %-8s %d checks, %d failures\n", eng_simd_name((enum eng_simd)s),
                    r.checks, r.failures);
        total.checks += r.checks;
        total.failures += r.failures;
    }
    return total;
}

#endif
