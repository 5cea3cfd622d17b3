/*
 * check_quants.c — the block formats' scalar references: block sizes and names, dequantization
 * of hand-built blocks against values worked out from the format definitions, quantize →
 * dequantize round trips within per-format error bounds, and quantizers on inputs whose bytes
 * are known. (SIMD kernels are compared with these references in check_kernels.c.)
 */
#include "quants.h"

#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define H_1       0x3C00 /* fp16 1.0 */
#define H_2       0x4000 /* 2.0 */
#define H_HALF    0x3800 /* 0.5 */
#define H_QUARTER 0x3400
#define H_M1      0xBC00 /* -1.0 */

static void dequant(enum eng_type t, const void *blk, float *y, int64_t n) {
    const struct eng_type_traits *tr = eng_type_traits_ref(t);
    ck_assert_ptr_nonnull(tr);
    tr->to_float(blk, y, n);
}

START_TEST(block_sizes_and_names) {
    static const struct {
        enum eng_type t;
        const char *name;
        int64_t blck;
        size_t size;
    } want[] = {
        {ENG_TYPE_Q4_0, "q4_0", 32, 18},     {ENG_TYPE_Q4_1, "q4_1", 32, 20},
        {ENG_TYPE_Q5_0, "q5_0", 32, 22},     {ENG_TYPE_Q5_1, "q5_1", 32, 24},
        {ENG_TYPE_Q8_0, "q8_0", 32, 34},     {ENG_TYPE_Q8_1, "q8_1", 32, 36},
        {ENG_TYPE_Q2_K, "q2_k", 256, 84},    {ENG_TYPE_Q3_K, "q3_k", 256, 110},
        {ENG_TYPE_Q4_K, "q4_k", 256, 144},   {ENG_TYPE_Q5_K, "q5_k", 256, 176},
        {ENG_TYPE_Q6_K, "q6_k", 256, 210},   {ENG_TYPE_Q8_K, "q8_k", 256, 292},
        {ENG_TYPE_IQ4_NL, "iq4_nl", 32, 18}, {ENG_TYPE_IQ4_XS, "iq4_xs", 256, 136},
        {ENG_TYPE_F16, "f16", 1, 2},         {ENG_TYPE_BF16, "bf16", 1, 2},
    };
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        const struct eng_type_traits *tr = eng_type_traits(want[i].t);
        ck_assert_ptr_nonnull(tr);
        ck_assert_str_eq(tr->name, want[i].name);
        ck_assert_int_eq(tr->blck_size, want[i].blck);
        ck_assert_uint_eq(tr->type_size, want[i].size);
        ck_assert_ptr_nonnull(tr->to_float);
        ck_assert_ptr_nonnull(tr->from_float);
        ck_assert_int_eq(eng_type_from_name(want[i].name), want[i].t);
    }
    /* activation-only types cannot be weights */
    ck_assert_ptr_null(eng_type_traits(ENG_TYPE_Q8_K)->vec_dot);
    ck_assert_ptr_null(eng_type_traits(ENG_TYPE_Q8_1)->vec_dot);
}
END_TEST

START_TEST(dequant_32_blocks) {
    float y[32];
    {
        struct eng_block_q4_0 b = {H_1, {0}};
        for (int j = 0; j < 16; j++) b.qs[j] = (uint8_t)(j | ((15 - j) << 4));
        dequant(ENG_TYPE_Q4_0, &b, y, 32);
        for (int j = 0; j < 16; j++) {
            ck_assert_float_eq(y[j], j - 8);
            ck_assert_float_eq(y[j + 16], 7 - j);
        }
    }
    {
        struct eng_block_q4_1 b = {H_2, H_M1, {0}};
        for (int j = 0; j < 16; j++) b.qs[j] = (uint8_t)(j | (j << 4));
        dequant(ENG_TYPE_Q4_1, &b, y, 32);
        for (int j = 0; j < 16; j++) {
            ck_assert_float_eq(y[j], 2 * j - 1);
            ck_assert_float_eq(y[j + 16], 2 * j - 1);
        }
    }
    {
        /* qh = 0x0000FFFF: elements 0..15 have the 5th bit */
        struct eng_block_q5_0 b = {H_HALF, {0xFF, 0xFF, 0, 0}, {0}};
        memset(b.qs, 0x21, 16);
        dequant(ENG_TYPE_Q5_0, &b, y, 32);
        for (int j = 0; j < 16; j++) {
            ck_assert_float_eq(y[j], 0.5f);       /* (1 + 16 - 16) * 0.5 */
            ck_assert_float_eq(y[j + 16], -7.0f); /* (2 - 16) * 0.5 */
        }
    }
    {
        struct eng_block_q5_1 b = {H_1, H_QUARTER, {0, 0, 0xFF, 0xFF}, {0}};
        memset(b.qs, 0x21, 16);
        dequant(ENG_TYPE_Q5_1, &b, y, 32);
        for (int j = 0; j < 16; j++) {
            ck_assert_float_eq(y[j], 1.25f);
            ck_assert_float_eq(y[j + 16], 18.25f);
        }
    }
    {
        struct eng_block_q8_0 b = {H_QUARTER, {0}};
        for (int j = 0; j < 32; j++) b.qs[j] = (int8_t)(j - 16);
        dequant(ENG_TYPE_Q8_0, &b, y, 32);
        for (int j = 0; j < 32; j++) ck_assert_float_eq(y[j], (j - 16) * 0.25f);
    }
    {
        static const float levels[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                                         1,    13,   25,  38,  53,  69,  89,  113};
        struct eng_block_iq4_nl b = {H_1, {0}};
        for (int j = 0; j < 16; j++) b.qs[j] = (uint8_t)(j | ((15 - j) << 4));
        dequant(ENG_TYPE_IQ4_NL, &b, y, 32);
        for (int j = 0; j < 16; j++) {
            ck_assert_float_eq(y[j], levels[j]);
            ck_assert_float_eq(y[j + 16], levels[15 - j]);
        }
    }
}
END_TEST

/* Scales {1,2,3,4,5,6,7,63} and mins {0,2,4,6,8,10,40,14} in the 12-byte k4 packing (the 63 and
 * the 40 exercise the split high bits). */
static const uint8_t k4_scales[12] = {1, 2, 3, 0xC4, 0, 2, 0x84, 6, 0x85, 0xA6, 0x87, 0xEF};
static const int k4_sc[8] = {1, 2, 3, 4, 5, 6, 7, 63}, k4_m[8] = {0, 2, 4, 6, 8, 10, 40, 14};

START_TEST(dequant_q4_k_q5_k) {
    float y[256];
    struct eng_block_q4_k b4 = {H_1, H_HALF, {0}, {0}};
    memcpy(b4.scales, k4_scales, 12);
    memset(b4.qs, 0x3A, sizeof(b4.qs)); /* low nibble 10 (even sub-blocks), high 3 (odd) */
    dequant(ENG_TYPE_Q4_K, &b4, y, 256);
    for (int e = 0; e < 256; e++) {
        int j = e / 32, q = j % 2 ? 3 : 10;
        ck_assert_float_eq(y[e], (float)(k4_sc[j] * q) - 0.5f * k4_m[j]);
    }
    ck_assert_float_eq(y[255], 182.0f); /* 63 * 3 - 0.5 * 14 */

    struct eng_block_q5_k b5 = {H_1, H_1, {0}, {0}, {0}};
    memcpy(b5.scales, k4_scales, 12);
    memset(b5.qs, 0x3A, sizeof(b5.qs));
    memset(b5.qh, 0xAA, sizeof(b5.qh)); /* bit j set for odd sub-blocks j */
    dequant(ENG_TYPE_Q5_K, &b5, y, 256);
    for (int e = 0; e < 256; e++) {
        int j = e / 32, q = j % 2 ? 3 + 16 : 10;
        ck_assert_float_eq(y[e], (float)(k4_sc[j] * q - k4_m[j]));
    }
}
END_TEST

START_TEST(dequant_q6_k) {
    float y[256];
    struct eng_block_q6_k b = {{0}, {0}, {0}, H_HALF};
    memset(b.ql, 0x21, sizeof(b.ql)); /* low nibble 1, high nibble 2 */
    memset(b.qh, 0xE4, sizeof(b.qh)); /* 2-bit fields 0, 1, 2, 3 */
    for (int g = 0; g < 16; g++) b.scales[g] = (int8_t)(g % 2 ? -(g + 1) : g + 1);
    dequant(ENG_TYPE_Q6_K, &b, y, 256);
    static const int v[4] = {1 - 32, 17 - 32, 34 - 32, 50 - 32};
    for (int e = 0; e < 256; e++)
        ck_assert_float_eq(y[e], 0.5f * b.scales[e / 16] * v[(e % 128) / 32]);
}
END_TEST

START_TEST(dequant_q3_k_q2_k) {
    float y[256];
    /* q3_k: scale j = j - 8 (stored j + 24); 2-bit fields 3,2,1,0; high bit set in half 0 */
    struct eng_block_q3_k b3 = {
        {0}, {0}, {0x08, 0x19, 0x2A, 0x3B, 0x4C, 0x5D, 0x6E, 0x7F, 0xA5, 0xA5, 0xA5, 0xA5}, H_1};
    memset(b3.qs, 0x1B, sizeof(b3.qs));
    memset(b3.hmask, 0x0F, sizeof(b3.hmask));
    int8_t sc[16];
    eng_q3k_scales(b3.scales, sc);
    for (int j = 0; j < 16; j++) ck_assert_int_eq(sc[j], j - 8);
    dequant(ENG_TYPE_Q3_K, &b3, y, 256);
    for (int e = 0; e < 256; e++) {
        int half = e / 128, k = (e % 128) / 32;
        int v = (3 - k) - (half ? 4 : 0);
        ck_assert_float_eq(y[e], (float)((e / 16 - 8) * v));
    }
    /* q2_k: group g has scale g and min 15 - g */
    struct eng_block_q2_k b2 = {{0}, {0}, H_1, H_HALF};
    for (int g = 0; g < 16; g++) b2.scales[g] = (uint8_t)(g | ((15 - g) << 4));
    memset(b2.qs, 0x1B, sizeof(b2.qs));
    dequant(ENG_TYPE_Q2_K, &b2, y, 256);
    for (int e = 0; e < 256; e++) {
        int g = e / 16, q = 3 - (e % 128) / 32;
        ck_assert_float_eq(y[e], (float)(g * q) - 0.5f * (15 - g));
    }
}
END_TEST

START_TEST(dequant_iq4_xs_q8_k) {
    float y[256];
    /* sub-block scales ls = ib + 28 (value ib - 4) */
    struct eng_block_iq4_xs b = {H_HALF, 0xAA55, {0xDC, 0xFE, 0x10, 0x32}, {0}};
    memset(b.qs, 0x5A, sizeof(b.qs)); /* low nibble 10 → 25, high 5 → -35 */
    dequant(ENG_TYPE_IQ4_XS, &b, y, 256);
    for (int e = 0; e < 256; e++) {
        int ib = e / 32, v = e % 32 < 16 ? 25 : -35;
        ck_assert_float_eq(y[e], 0.5f * (float)((ib - 4) * v));
    }
    static struct eng_block_q8_k a;
    a.d = 0.5f;
    for (int j = 0; j < 256; j++) a.qs[j] = (int8_t)(j % 255 - 127);
    dequant(ENG_TYPE_Q8_K, &a, y, 256);
    for (int j = 0; j < 256; j++) ck_assert_float_eq(y[j], 0.5f * (j % 255 - 127));
}
END_TEST

/* Relative RMS error of quantize → dequantize on a unit gaussian row of 16384 elements. Bounds
 * are the measured values (deterministic input) with about 25% margin; they catch a quantizer
 * that loses precision, not float noise. */
START_TEST(round_trip_error_bounds) {
    static const struct {
        enum eng_type t;
        double max_rel_rmse;
    } bounds[] = {
        {ENG_TYPE_F16, 3e-4},     {ENG_TYPE_BF16, 2.2e-3}, {ENG_TYPE_Q8_0, 7e-3},
        {ENG_TYPE_Q8_1, 7e-3},    {ENG_TYPE_Q8_K, 9e-3},   {ENG_TYPE_Q4_0, 0.11},
        {ENG_TYPE_Q4_1, 0.10},    {ENG_TYPE_Q5_0, 0.055},  {ENG_TYPE_Q5_1, 0.048},
        {ENG_TYPE_Q2_K, 0.36},    {ENG_TYPE_Q3_K, 0.19},   {ENG_TYPE_Q4_K, 0.09},
        {ENG_TYPE_Q5_K, 0.046},   {ENG_TYPE_Q6_K, 0.023},  {ENG_TYPE_IQ4_NL, 0.10},
        {ENG_TYPE_IQ4_XS, 0.096},
    };
    const int n = 16384;
    float *x = malloc(n * sizeof(float)), *y = malloc(n * sizeof(float));
    void *q = malloc((size_t)n * 4);
    uint64_t s = 42;
    for (int i = 0; i < n; i++) { /* Box-Muller on a fixed xorshift stream */
        s ^= s << 13, s ^= s >> 7, s ^= s << 17;
        double u = ((s >> 11) + 1.0) / 9007199254740993.0;
        s ^= s << 13, s ^= s >> 7, s ^= s << 17;
        double v = (s >> 11) / 9007199254740992.0;
        x[i] = (float)(sqrt(-2 * log(u)) * cos(6.283185307179586 * v));
    }
    for (size_t b = 0; b < sizeof(bounds) / sizeof(bounds[0]); b++) {
        const struct eng_type_traits *tr = eng_type_traits_ref(bounds[b].t);
        tr->from_float(x, q, n);
        tr->to_float(q, y, n);
        double e2 = 0, x2 = 0;
        for (int i = 0; i < n; i++) e2 += (x[i] - y[i]) * (double)(x[i] - y[i]), x2 += x[i] * x[i];
        double rel = sqrt(e2 / x2);
        ck_assert_msg(rel <= bounds[b].max_rel_rmse, "%s: relative rmse %.5f > %.5f", tr->name, rel,
                      bounds[b].max_rel_rmse);
        ck_assert_msg(rel > bounds[b].max_rel_rmse / 3, "%s: rmse %.5f implausibly small", tr->name,
                      rel);
    }
    free(x);
    free(y);
    free(q);
}
END_TEST

START_TEST(quantizers_known_bytes) {
    float x[32];
    /* q4_0: the element of largest magnitude (-16) maps to level 0, d = -16 / -8 = 2 */
    for (int j = 0; j < 32; j++) x[j] = (float)(j - 16);
    struct eng_block_q4_0 b4;
    eng_type_traits_ref(ENG_TYPE_Q4_0)->from_float(x, &b4, 32);
    ck_assert_uint_eq(b4.d, H_2);
    for (int j = 0; j < 16; j++) {
        int q0 = ENG_MIN(15, (int)(x[j] * 0.5f + 8.5f)),
            q1 = ENG_MIN(15, (int)(x[j + 16] * 0.5f + 8.5f));
        ck_assert_uint_eq(b4.qs[j], (unsigned)(q0 | (q1 << 4)));
    }
    ck_assert_uint_eq(b4.qs[0], 0x80); /* -16 → 0, 0 → 8 */
    /* q8_0: amax 127 → d = 1, values unchanged; 0.5 rounds away from zero */
    for (int j = 0; j < 32; j++) x[j] = (float)(j * 8 - 127);
    x[1] = 0.5f;
    x[2] = -0.5f;
    struct eng_block_q8_0 b8;
    eng_type_traits_ref(ENG_TYPE_Q8_0)->from_float(x, &b8, 32);
    ck_assert_uint_eq(b8.d, H_1);
    ck_assert_int_eq(b8.qs[0], -127);
    ck_assert_int_eq(b8.qs[1], 1);
    ck_assert_int_eq(b8.qs[2], -1);
    ck_assert_int_eq(b8.qs[31], 121);
    /* q8_k: rounds to nearest even, bsums are sums of 16 */
    static float xk[256];
    for (int j = 0; j < 256; j++) xk[j] = (float)(j % 64) - 31.5f;
    xk[0] = -127.0f; /* largest magnitude, negative: scale = -127 / -127 */
    static struct eng_block_q8_k bk;
    eng_type_traits_ref(ENG_TYPE_Q8_K)->from_float(xk, &bk, 256);
    ck_assert_float_eq(bk.d, 1.0f);
    ck_assert_int_eq(bk.qs[0], -127);
    ck_assert_int_eq(bk.qs[1], -30); /* -30.5 → -30 (even) */
    ck_assert_int_eq(bk.qs[2], -30); /* -29.5 → -30 */
    for (int g = 0; g < 16; g++) {
        int sum = 0;
        for (int j = 0; j < 16; j++) sum += bk.qs[16 * g + j];
        ck_assert_int_eq(bk.bsums[g], sum);
    }
}
END_TEST

/* A dot product through the reference kernels equals the dot product of the dequantized rows
 * (up to float rounding), for every weight format: the kernels and the layouts agree. */
START_TEST(vec_dot_matches_dequantized) {
    const int n = 1024;
    float *w = malloc(n * sizeof(float)), *a = malloc(n * sizeof(float));
    float *wf = malloc(n * sizeof(float)), *af = malloc(n * sizeof(float));
    uint8_t *wq = malloc((size_t)n * 4), *aq = malloc((size_t)n * 4);
    for (int i = 0; i < n; i++) {
        w[i] = sinf(0.37f * i) * 0.1f;
        a[i] = cosf(0.11f * i + 1.0f);
    }
    for (int t = 0; t < ENG_TYPE_COUNT; t++) {
        const struct eng_type_traits *tr = eng_type_traits_ref((enum eng_type)t);
        if (!tr || !tr->vec_dot) continue;
        const struct eng_type_traits *vt = eng_type_traits_ref(tr->vec_dot_type);
        tr->from_float(w, wq, n);
        tr->to_float(wq, wf, n);
        vt->from_float(a, aq, n);
        vt->to_float(aq, af, n);
        double want = 0, mag = 0;
        for (int i = 0; i < n; i++)
            want += (double)wf[i] * af[i], mag += fabs((double)wf[i] * af[i]);
        float got;
        tr->vec_dot(n, &got, wq, tr->vec_dot_type == ENG_TYPE_F32 ? (const void *)a : aq);
        /* q4_1/q5_1 use the fp16 block sum of the activations: relative 2^-11 of Σ|a| per block */
        double tol = 1e-5 * mag + 1e-6;
        if (t == ENG_TYPE_Q4_1 || t == ENG_TYPE_Q5_1) tol = 2e-3 * mag;
        ck_assert_msg(fabs(got - want) <= tol, "%s: %.9g vs %.9g", tr->name, got, want);
    }
    free(w);
    free(a);
    free(wf);
    free(af);
    free(wq);
    free(aq);
}
END_TEST

Suite *quants_suite(void) {
    Suite *s = suite_create("quants");
    TCase *tc = tcase_create("formats");
    tcase_add_test(tc, block_sizes_and_names);
    tcase_add_test(tc, dequant_32_blocks);
    tcase_add_test(tc, dequant_q4_k_q5_k);
    tcase_add_test(tc, dequant_q6_k);
    tcase_add_test(tc, dequant_q3_k_q2_k);
    tcase_add_test(tc, dequant_iq4_xs_q8_k);
    tcase_add_test(tc, round_trip_error_bounds);
    tcase_add_test(tc, quantizers_known_bytes);
    tcase_add_test(tc, vec_dot_matches_dequantized);
    suite_add_tcase(s, tc);
    return s;
}
