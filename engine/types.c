/*
 * types.c — the tensor type traits table, its run-time SIMD level selection, and the scalar
 * reference kernels of the core formats (F32, F16, BF16, Q8_0, Q4_0). The other block formats'
 * references come from quants.c (eng_types_init_extra); SIMD kernels from the architecture files
 * (quants_x86.c, quants_neon.c, quants_arm.c), installed over the references by level. This file
 * does not contain SIMD code.
 */
#if defined(__x86_64__)
#include <cpuid.h>
#endif
#include "quants.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#if defined(__aarch64__) && defined(__linux__)
#include <sys/auxv.h>
#endif

/* ---- half and bfloat ---- */

float eng_fp16_to_fp32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f;
    uint32_t mant = h & 0x3ff;
    uint32_t bits;
    if (exp == 0) {
        if (mant == 0) {
            bits = sign;
        } else { /* subnormal: normalise */
            int e = -1;
            do {
                e++;
                mant <<= 1;
            } while (!(mant & 0x400));
            bits = sign | ((uint32_t)(127 - 15 - e) << 23) | ((mant & 0x3ff) << 13);
        }
    } else if (exp == 0x1f) {
        bits = sign | 0x7f800000 | (mant << 13);
    } else {
        bits = sign | ((exp + 127 - 15) << 23) | (mant << 13);
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

uint16_t eng_fp32_to_fp16(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000;
    uint32_t absx = x & 0x7fffffff;
    if (absx > 0x7f800000) return (uint16_t)(sign | 0x7e00);  /* NaN */
    if (absx >= 0x477ff000) return (uint16_t)(sign | 0x7c00); /* overflow to inf (RNE) */
    if (absx < 0x38800000) {                                  /* subnormal or zero in fp16 */
        if (absx < 0x33000000) return (uint16_t)sign;         /* rounds to zero */
        uint32_t e = absx >> 23;
        uint32_t m = (absx & 0x7fffff) | 0x800000;
        uint32_t shift = 126 - e; /* 14 - (e - 127) + 13 - 1 ... align to fp16 subnormal */
        uint32_t r = m >> (shift - 0);
        /* m * 2^(e-150) expressed in units of 2^-24: m >> (150 - 24 - e) = m >> (126 - e) */
        uint32_t rem = m & ((1u << shift) - 1);
        uint32_t half = 1u << (shift - 1);
        if (rem > half || (rem == half && (r & 1))) r++;
        return (uint16_t)(sign | r);
    }
    uint32_t r = absx - 0x38000000; /* rebias exponent 127 -> 15 */
    uint32_t h = r >> 13;
    uint32_t rem = r & 0x1fff;
    if (rem > 0x1000 || (rem == 0x1000 && (h & 1))) h++;
    return (uint16_t)(sign | h);
}

float eng_bf16_to_fp32(uint16_t h) {
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

uint16_t eng_fp32_to_bf16(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    if ((x & 0x7fffffff) > 0x7f800000) return (uint16_t)((x >> 16) | 64); /* quiet NaN */
    x += 0x7fff + ((x >> 16) & 1);
    return (uint16_t)(x >> 16);
}

/* ---- F32 ---- */

static void f32_to_float(const void *x, float *y, int64_t n) {
    memcpy(y, x, (size_t)n * sizeof(float));
}

static void f32_from_float(const float *x, void *y, int64_t n) {
    memcpy(y, x, (size_t)n * sizeof(float));
}

static void f32_vec_dot_ref(int64_t n, float *s, const void *w, const void *a) {
    const float *x = w, *y = a;
    float sum = 0.0f;
    for (int64_t i = 0; i < n; i++) sum += x[i] * y[i];
    *s = sum;
}

/* ---- F16 / BF16: weights converted on the fly, activations stay F32 ---- */

static void f16_to_float(const void *x, float *y, int64_t n) {
    const uint16_t *h = x;
    for (int64_t i = 0; i < n; i++) y[i] = eng_fp16_to_fp32(h[i]);
}

static void f16_from_float(const float *x, void *y, int64_t n) {
    uint16_t *h = y;
    for (int64_t i = 0; i < n; i++) h[i] = eng_fp32_to_fp16(x[i]);
}

static void f16_vec_dot_ref(int64_t n, float *s, const void *w, const void *a) {
    const uint16_t *x = w;
    const float *y = a;
    float sum = 0.0f;
    for (int64_t i = 0; i < n; i++) sum += eng_fp16_to_fp32(x[i]) * y[i];
    *s = sum;
}

static void bf16_to_float(const void *x, float *y, int64_t n) {
    const uint16_t *h = x;
    for (int64_t i = 0; i < n; i++) y[i] = eng_bf16_to_fp32(h[i]);
}

static void bf16_from_float(const float *x, void *y, int64_t n) {
    uint16_t *h = y;
    for (int64_t i = 0; i < n; i++) h[i] = eng_fp32_to_bf16(x[i]);
}

static void bf16_vec_dot_ref(int64_t n, float *s, const void *w, const void *a) {
    const uint16_t *x = w;
    const float *y = a;
    float sum = 0.0f;
    for (int64_t i = 0; i < n; i++) sum += eng_bf16_to_fp32(x[i]) * y[i];
    *s = sum;
}

/* ---- Q8_0 ---- */

static void q8_0_to_float(const void *x, float *y, int64_t n) {
    const struct eng_block_q8_0 *b = x;
    for (int64_t i = 0; i < n / ENG_QK8_0; i++) {
        float d = eng_fp16_to_fp32(b[i].d);
        for (int j = 0; j < ENG_QK8_0; j++) y[i * ENG_QK8_0 + j] = d * b[i].qs[j];
    }
}

static void q8_0_from_float(const float *x, void *y, int64_t n) {
    struct eng_block_q8_0 *b = y;
    for (int64_t i = 0; i < n / ENG_QK8_0; i++) {
        const float *v = x + i * ENG_QK8_0;
        float amax = 0.0f;
        for (int j = 0; j < ENG_QK8_0; j++) amax = fmaxf(amax, fabsf(v[j]));
        float d = amax / 127.0f;
        float id = d ? 1.0f / d : 0.0f;
        b[i].d = eng_fp32_to_fp16(d);
        for (int j = 0; j < ENG_QK8_0; j++) b[i].qs[j] = (int8_t)roundf(v[j] * id);
    }
}

static void q8_0_vec_dot_ref(int64_t n, float *s, const void *w, const void *a) {
    const struct eng_block_q8_0 *x = w, *y = a;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / ENG_QK8_0; i++) {
        int32_t acc = 0;
        for (int j = 0; j < ENG_QK8_0; j++) acc += x[i].qs[j] * y[i].qs[j];
        sum += (float)acc * eng_fp16_to_fp32(x[i].d) * eng_fp16_to_fp32(y[i].d);
    }
    *s = sum;
}

/* ---- Q8_0X: activations only ----
 * Q8_0's codes and scales, laid out for the SIMD q4_0 kernels: per group of up to eight blocks
 * (r blocks) float d[r] (each block's scale, already rounded through fp16 as Q8_0 stores it),
 * float c[r] (d times the sum of the block's codes), int8 lo[r][16] (codes 0..15 of each block),
 * int8 hi[r][16] (codes 16..31): 40 bytes per 32 values, groups one after the other. A q4_0
 * kernel then loads two or four blocks' low codes in one go and takes the -8 offset off as
 * 8·c per block, once per row instead of once per weight.
 * Q8_0X16, for the Q4_0X16 kernels, is the same but for c: int32 o[r], -8 times the sum of the
 * block's codes, which such a kernel starts its integer sum of a block's products from: the
 * offset then costs it nothing per block and column. */
static void q8_0x_fill(const float *x, void *vy, int64_t n, bool x16) {
    uint8_t *y = vy;
    int64_t nb = n / ENG_QK8_0;
    for (int64_t g = 0; g < nb; g += 8) {
        int r = (int)(nb - g < 8 ? nb - g : 8);
        const struct eng_q8_0x_group o = eng_q8_0x_group(y, g, r);
        for (int k = 0; k < r; k++) {
            struct eng_block_q8_0 b;
            q8_0_from_float(x + (g + k) * ENG_QK8_0, &b, ENG_QK8_0);
            int sum = 0;
            for (int j = 0; j < ENG_QK8_0; j++) sum += b.qs[j];
            o.d[k] = eng_fp16_to_fp32(b.d);
            eng_q8_0x_put_sum(&o.c[k], o.d[k], sum, x16);
            memcpy(o.lo + 16 * k, b.qs, 16);
            memcpy(o.hi + 16 * k, b.qs + 16, 16);
        }
    }
}

static void q8_0x_from_float(const float *x, void *vy, int64_t n) {
    q8_0x_fill(x, vy, n, false);
}

static void q8_0x16_from_float(const float *x, void *vy, int64_t n) {
    q8_0x_fill(x, vy, n, true);
}

static void q8_0x_to_float(const void *vx, float *y, int64_t n) {
    const uint8_t *x = vx;
    int64_t nb = n / ENG_QK8_0;
    for (int64_t g = 0; g < nb; g += 8) {
        int r = (int)(nb - g < 8 ? nb - g : 8);
        const float *d = (const float *)(x + 40 * g);
        const int8_t *lo = (const int8_t *)(d + 2 * r), *hi = lo + 16 * r;
        for (int k = 0; k < r; k++)
            for (int j = 0; j < 16; j++) {
                y[(g + k) * 32 + j] = d[k] * lo[16 * k + j];
                y[(g + k) * 32 + 16 + j] = d[k] * hi[16 * k + j];
            }
    }
}

/* ---- Q4_0X16 (quants.h) ---- */

void eng_interleave_rows(enum eng_type type, const void *src, void *dst, int64_t n, int64_t nrows) {
    (void)type; /* Q4_0X16, the only interleaved layout */
    const int64_t nb = n / ENG_QK4_0;
    const size_t wrow = (size_t)nb * sizeof(struct eng_block_q4_0);
    for (int64_t g = 0; g < nrows / ENG_X16_GROUP; g++) {
        uint8_t *gd = (uint8_t *)dst + (size_t)g * ENG_X16_GROUP * wrow;
        for (int i = 0; i < ENG_X16_GROUP; i++) {
            const struct eng_block_q4_0 *row =
                (const struct eng_block_q4_0 *)((const uint8_t *)src +
                                                (size_t)(g * ENG_X16_GROUP + i) * wrow);
            const int h = i / ENG_X16_ROWS, li = i % ENG_X16_ROWS;
            for (int64_t b = 0; b < nb; b++) {
                memcpy(gd + eng_x16_scales_at(b, nb, h) + 2 * li, &row[b].d, 2);
                uint8_t *cd = gd + eng_x16_codes_at(b, nb, h) + 4 * li;
                for (int k = 0; k < 4; k++) memcpy(cd + 64 * k, row[b].qs + 4 * k, 4);
            }
        }
    }
}

void eng_deinterleave_blocks(enum eng_type type, const void *base, int64_t n, int64_t r, int64_t b0,
                             int64_t b1, void *out) {
    (void)type;
    const int64_t nb = n / ENG_QK4_0;
    const size_t wrow = (size_t)nb * sizeof(struct eng_block_q4_0);
    const uint8_t *gs = (const uint8_t *)base + (size_t)(r / ENG_X16_GROUP) * ENG_X16_GROUP * wrow;
    const int i = (int)(r % ENG_X16_GROUP), h = i / ENG_X16_ROWS, li = i % ENG_X16_ROWS;
    struct eng_block_q4_0 *blk = out;
    for (int64_t b = b0; b < b1; b++, blk++) {
        memcpy(&blk->d, gs + eng_x16_scales_at(b, nb, h) + 2 * li, 2);
        const uint8_t *cd = gs + eng_x16_codes_at(b, nb, h) + 4 * li;
        for (int k = 0; k < 4; k++) memcpy(blk->qs + 4 * k, cd + 64 * k, 4);
    }
}

void eng_deinterleave_row(enum eng_type type, const void *base, int64_t n, int64_t r, void *row) {
    eng_deinterleave_blocks(type, base, n, r, 0, n / ENG_QK4_0, row);
}

/* ---- Q4_0 ---- */

static void q4_0_to_float(const void *x, float *y, int64_t n) {
    const struct eng_block_q4_0 *b = x;
    for (int64_t i = 0; i < n / ENG_QK4_0; i++) {
        float d = eng_fp16_to_fp32(b[i].d);
        for (int j = 0; j < ENG_QK4_0 / 2; j++) {
            y[i * ENG_QK4_0 + j] = d * ((b[i].qs[j] & 0x0f) - 8);
            y[i * ENG_QK4_0 + j + ENG_QK4_0 / 2] = d * ((b[i].qs[j] >> 4) - 8);
        }
    }
}

static void q4_0_from_float(const float *x, void *y, int64_t n) {
    struct eng_block_q4_0 *b = y;
    for (int64_t i = 0; i < n / ENG_QK4_0; i++) {
        const float *v = x + i * ENG_QK4_0;
        float amax = 0.0f, max = 0.0f; /* the value of largest magnitude, with its sign */
        for (int j = 0; j < ENG_QK4_0; j++) {
            if (fabsf(v[j]) > amax) {
                amax = fabsf(v[j]);
                max = v[j];
            }
        }
        float d = max / -8.0f;
        float id = d ? 1.0f / d : 0.0f;
        b[i].d = eng_fp32_to_fp16(d);
        for (int j = 0; j < ENG_QK4_0 / 2; j++) {
            int q0 = (int)(int8_t)(v[j] * id + 8.5f);
            int q1 = (int)(int8_t)(v[j + ENG_QK4_0 / 2] * id + 8.5f);
            q0 = q0 > 15 ? 15 : q0;
            q1 = q1 > 15 ? 15 : q1;
            b[i].qs[j] = (uint8_t)(q0 | (q1 << 4));
        }
    }
}

static void q4_0_vec_dot_ref(int64_t n, float *s, const void *w, const void *a) {
    const struct eng_block_q4_0 *x = w;
    const struct eng_block_q8_0 *y = a;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / ENG_QK4_0; i++) {
        int32_t acc = 0;
        for (int j = 0; j < ENG_QK4_0 / 2; j++) {
            acc += ((x[i].qs[j] & 0x0f) - 8) * y[i].qs[j];
            acc += ((x[i].qs[j] >> 4) - 8) * y[i].qs[j + ENG_QK4_0 / 2];
        }
        sum += (float)acc * eng_fp16_to_fp32(x[i].d) * eng_fp16_to_fp32(y[i].d);
    }
    *s = sum;
}

/* ---- the table ---- */

/* Names of every ggml type id, so tools can list tensors of types without kernels here. */
static const char *const type_names[ENG_TYPE_COUNT] = {
    [ENG_TYPE_F32] = "f32",         [ENG_TYPE_F16] = "f16",         [ENG_TYPE_Q4_0] = "q4_0",
    [ENG_TYPE_Q4_1] = "q4_1",       [ENG_TYPE_Q5_0] = "q5_0",       [ENG_TYPE_Q5_1] = "q5_1",
    [ENG_TYPE_Q8_0] = "q8_0",       [ENG_TYPE_Q8_1] = "q8_1",       [ENG_TYPE_Q2_K] = "q2_k",
    [ENG_TYPE_Q3_K] = "q3_k",       [ENG_TYPE_Q4_K] = "q4_k",       [ENG_TYPE_Q5_K] = "q5_k",
    [ENG_TYPE_Q6_K] = "q6_k",       [ENG_TYPE_Q8_K] = "q8_k",       [ENG_TYPE_IQ2_XXS] = "iq2_xxs",
    [ENG_TYPE_IQ2_XS] = "iq2_xs",   [ENG_TYPE_IQ3_XXS] = "iq3_xxs", [ENG_TYPE_IQ1_S] = "iq1_s",
    [ENG_TYPE_IQ4_NL] = "iq4_nl",   [ENG_TYPE_IQ3_S] = "iq3_s",     [ENG_TYPE_IQ2_S] = "iq2_s",
    [ENG_TYPE_IQ4_XS] = "iq4_xs",   [ENG_TYPE_I8] = "i8",           [ENG_TYPE_I16] = "i16",
    [ENG_TYPE_I32] = "i32",         [ENG_TYPE_I64] = "i64",         [ENG_TYPE_F64] = "f64",
    [ENG_TYPE_IQ1_M] = "iq1_m",     [ENG_TYPE_BF16] = "bf16",       [ENG_TYPE_Q8_0X] = "q8_0x",
    [ENG_TYPE_Q4_0X16] = "q4_0x16", [ENG_TYPE_Q8_0X16] = "q8_0x16",
};

static struct eng_type_traits table[ENG_TYPE_COUNT];
static struct eng_type_traits ref_table[ENG_TYPE_COUNT];
static enum eng_simd active_simd = ENG_SIMD_SCALAR;
static pthread_once_t table_once = PTHREAD_ONCE_INIT;

void eng_types_init_core(struct eng_type_traits *t) {
    t[ENG_TYPE_F32] = (struct eng_type_traits){
        "f32", 1, 4, false, f32_to_float, f32_from_float, ENG_TYPE_F32, f32_vec_dot_ref};
    t[ENG_TYPE_F16] = (struct eng_type_traits){
        "f16", 1, 2, false, f16_to_float, f16_from_float, ENG_TYPE_F32, f16_vec_dot_ref};
    t[ENG_TYPE_BF16] = (struct eng_type_traits){
        "bf16", 1, 2, false, bf16_to_float, bf16_from_float, ENG_TYPE_F32, bf16_vec_dot_ref};
    t[ENG_TYPE_Q8_0] =
        (struct eng_type_traits){"q8_0",        ENG_QK8_0,       sizeof(struct eng_block_q8_0),
                                 true,          q8_0_to_float,   q8_0_from_float,
                                 ENG_TYPE_Q8_0, q8_0_vec_dot_ref};
    t[ENG_TYPE_Q8_0X] = (struct eng_type_traits){
        "q8_0x", ENG_QK8_0, 40, true, q8_0x_to_float, q8_0x_from_float, ENG_TYPE_Q8_0X, NULL};
    t[ENG_TYPE_Q8_0X16] = (struct eng_type_traits){
        "q8_0x16", ENG_QK8_0, 40, true, q8_0x_to_float, q8_0x16_from_float, ENG_TYPE_Q8_0X16, NULL};
    t[ENG_TYPE_Q4_0] =
        (struct eng_type_traits){"q4_0",        ENG_QK4_0,       sizeof(struct eng_block_q4_0),
                                 true,          q4_0_to_float,   q4_0_from_float,
                                 ENG_TYPE_Q8_0, q4_0_vec_dot_ref};
    /* kernels only where a level installs them; activations as q4_0's (eng_types_build) */
    t[ENG_TYPE_Q4_0X16] = (struct eng_type_traits){
        .name = "q4_0x16",
        .blck_size = ENG_QK4_0,
        .type_size = sizeof(struct eng_block_q4_0),
        .is_quantized = true,
        .vec_dot_type = ENG_TYPE_Q8_0,
        .row_group = ENG_X16_GROUP,
        .row_type = ENG_TYPE_Q4_0,
    };
}

void eng_types_init_ref(struct eng_type_traits *t) {
    memset(t, 0, sizeof(*t) * ENG_TYPE_COUNT);
    eng_types_init_core(t);
    eng_types_init_extra(t);
    eng_quants_imp_install(t);
    eng_repack_install(t);
}

/* ---- SIMD levels ---- */

static const char *const simd_names[ENG_SIMD_COUNT] = {
    [ENG_SIMD_SCALAR] = "scalar",          [ENG_SIMD_AVX2] = "avx2", [ENG_SIMD_AVX512] = "avx512",
    [ENG_SIMD_AVX512_GFNI] = "avx512gfni", [ENG_SIMD_NEON] = "neon", [ENG_SIMD_DOTPROD] = "dotprod",
};

const char *eng_simd_name(enum eng_simd s) {
    return (unsigned)s < ENG_SIMD_COUNT ? simd_names[s] : "?";
}

#if defined(__x86_64__)
/* CPU features read with cpuid and xgetbv directly: not every compiler's __builtin_cpu_supports
 * knows "f16c" or "avx512vnni". The OS must save the registers too (XCR0). */
static bool x86_has(enum eng_simd s) {
    unsigned a, b, c, d;
    if (!__get_cpuid_count(1, 0, &a, &b, &c, &d)) return false;
    bool osxsave = c & (1u << 27), fma = c & (1u << 12), avx = c & (1u << 28),
         f16c = c & (1u << 29);
    if (!osxsave || !fma || !avx || !f16c) return false;
    unsigned lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    if ((lo & 0x6) != 0x6) return false; /* SSE and AVX state */
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return false;
    if (!(b & (1u << 5))) return false; /* AVX2 */
    if (s == ENG_SIMD_AVX2) return true;
    if ((lo & 0xe0) != 0xe0) return false; /* opmask, ZMM_Hi256, Hi16_ZMM state */
    bool f = b & (1u << 16), bw = b & (1u << 30), vl = b & (1u << 31), vnni = c & (1u << 11);
    if (s == ENG_SIMD_AVX512) return f && bw && vl && vnni;
    return f && bw && vl && vnni && (c & (1u << 8)); /* GFNI */
}
#endif

bool eng_simd_supported(enum eng_simd s) {
    switch (s) {
    case ENG_SIMD_SCALAR:
        return true;
#if defined(__x86_64__)
    case ENG_SIMD_AVX2:
    case ENG_SIMD_AVX512:
    case ENG_SIMD_AVX512_GFNI:
        return x86_has(s);
#endif
#if defined(__aarch64__)
    case ENG_SIMD_NEON:
        return true; /* Advanced SIMD is part of the aarch64 baseline */
    case ENG_SIMD_DOTPROD:
#if defined(__linux__) && defined(HWCAP_ASIMDDP)
        return (getauxval(AT_HWCAP) & HWCAP_ASIMDDP) != 0;
#else
        return false;
#endif
#endif
    default:
        return false;
    }
}

int eng_types_build(struct eng_type_traits *t, enum eng_simd s) {
    if (!eng_simd_supported(s))
        return eng_fail(ENG_EUNSUPPORTED, "SIMD level %s is not supported on this CPU/build",
                        eng_simd_name(s));
    eng_types_init_ref(t);
#if defined(__x86_64__)
    if (s >= ENG_SIMD_AVX2) eng_simd_install_avx2(t);
    if (s >= ENG_SIMD_AVX512) eng_simd_install_avx512(t);
    if (s >= ENG_SIMD_AVX512_GFNI) eng_simd_install_avx512_gfni(t);
#endif
#if defined(__aarch64__)
    if (s >= ENG_SIMD_NEON) eng_simd_install_neon(t);
    if (s >= ENG_SIMD_DOTPROD) eng_simd_install_dotprod(t);
#endif
    /* an interleaved row read out (no kernels for the layout at this level) is dotted by its row
     * type's vec_dot: the row type's activations */
    for (int k = 0; k < ENG_TYPE_COUNT; k++)
        if (t[k].row_group > 1 && !t[k].vec_dot_rows)
            t[k].vec_dot_type = t[t[k].row_type].vec_dot_type;
    return 0;
}

/* The best supported level, capped by EDGELLM_SIMD=<level name> if set. */
static enum eng_simd choose_simd(void) {
    const char *cap_name = getenv("EDGELLM_SIMD");
    int cap = ENG_SIMD_COUNT - 1;
    if (cap_name && *cap_name)
        for (int s = 0; s < ENG_SIMD_COUNT; s++)
            if (strcasecmp(cap_name, simd_names[s]) == 0) cap = s;
    enum eng_simd best = ENG_SIMD_SCALAR;
    for (int s = 1; s <= cap; s++)
        if (eng_simd_supported((enum eng_simd)s)) best = (enum eng_simd)s;
    return best;
}

static void table_init(void) {
    eng_types_init_ref(ref_table);
    active_simd = choose_simd();
    if (eng_types_build(table, active_simd) != 0) {
        active_simd = ENG_SIMD_SCALAR;
        eng_types_init_ref(table);
    }
}

const struct eng_type_traits *eng_type_traits(enum eng_type t) {
    if ((unsigned)t >= ENG_TYPE_COUNT) return NULL;
    pthread_once(&table_once, table_init);
    return table[t].name ? &table[t] : NULL;
}

const struct eng_type_traits *eng_type_traits_ref(enum eng_type t) {
    if ((unsigned)t >= ENG_TYPE_COUNT) return NULL;
    pthread_once(&table_once, table_init);
    return ref_table[t].name ? &ref_table[t] : NULL;
}

enum eng_simd eng_simd_active(void) {
    pthread_once(&table_once, table_init);
    return active_simd;
}

const char *eng_simd_level(void) {
    return eng_simd_name(eng_simd_active());
}

const char *eng_type_name(int t) {
    if (t < 0 || t >= ENG_TYPE_COUNT) return "?";
    const struct eng_type_traits *tr = eng_type_traits((enum eng_type)t);
    if (tr) return tr->name;
    return type_names[t] ? type_names[t] : "?";
}

int eng_type_from_name(const char *name) {
    for (int t = 0; t < ENG_TYPE_COUNT; t++) {
        const char *n = eng_type_name(t);
        if (strcmp(n, "?") != 0 && strcasecmp(n, name) == 0) return t;
    }
    return -1;
}

size_t eng_row_size(enum eng_type t, int64_t n) {
    const struct eng_type_traits *tr = eng_type_traits(t);
    if (!tr || n < 0 || n % tr->blck_size) return 0;
    return (size_t)(n / tr->blck_size) * tr->type_size;
}

/* Layout of every ggml type id, from the format definitions (elements per block, bytes). */
static const struct {
    int64_t blck;
    size_t size;
} type_layout[ENG_TYPE_COUNT] = {
    [ENG_TYPE_F32] = {1, 4},        [ENG_TYPE_F16] = {1, 2},        [ENG_TYPE_Q4_0] = {32, 18},
    [ENG_TYPE_Q4_1] = {32, 20},     [ENG_TYPE_Q5_0] = {32, 22},     [ENG_TYPE_Q5_1] = {32, 24},
    [ENG_TYPE_Q8_0] = {32, 34},     [ENG_TYPE_Q8_1] = {32, 36},     [ENG_TYPE_Q2_K] = {256, 84},
    [ENG_TYPE_Q3_K] = {256, 110},   [ENG_TYPE_Q4_K] = {256, 144},   [ENG_TYPE_Q5_K] = {256, 176},
    [ENG_TYPE_Q6_K] = {256, 210},   [ENG_TYPE_Q8_K] = {256, 292},   [ENG_TYPE_IQ2_XXS] = {256, 66},
    [ENG_TYPE_IQ2_XS] = {256, 74},  [ENG_TYPE_IQ3_XXS] = {256, 98}, [ENG_TYPE_IQ1_S] = {256, 50},
    [ENG_TYPE_IQ4_NL] = {32, 18},   [ENG_TYPE_IQ3_S] = {256, 110},  [ENG_TYPE_IQ2_S] = {256, 82},
    [ENG_TYPE_IQ4_XS] = {256, 136}, [ENG_TYPE_I8] = {1, 1},         [ENG_TYPE_I16] = {1, 2},
    [ENG_TYPE_I32] = {1, 4},        [ENG_TYPE_I64] = {1, 8},        [ENG_TYPE_F64] = {1, 8},
    [ENG_TYPE_IQ1_M] = {256, 56},   [ENG_TYPE_BF16] = {1, 2},
};

int eng_type_block_info(int type, int64_t *blck_size, size_t *type_size) {
    if (type < 0 || type >= ENG_TYPE_COUNT) return ENG_EUNSUPPORTED;
    const struct eng_type_traits *tr = eng_type_traits((enum eng_type)type);
    if (tr) {
        *blck_size = tr->blck_size;
        *type_size = tr->type_size;
        return 0;
    }
    if (!type_layout[type].blck) return ENG_EUNSUPPORTED;
    *blck_size = type_layout[type].blck;
    *type_size = type_layout[type].size;
    return 0;
}
