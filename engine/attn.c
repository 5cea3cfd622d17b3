/*
 * attn.c — attention of one query head over one sequence's cached keys and values:
 * out = softmax(scale · q · K[0..n)ᵀ) · V[0..n). The scalar reference (also what the scalar
 * level runs), the aarch64 kernel, and the choice for the running CPU; the x86 kernels live in
 * attn_x86.c (AVX2) and attn_avx512_x86.c. forward.c splits the work over sequences and heads. It
 * does not allocate.
 */
#include "quants.h"

#include <math.h>

#if defined(__aarch64__)
#include "vexp.h"
#endif

/* Element i of a cache row block: a float, or an fp16 value widened exactly. */
static inline float kv_get(const void *p, size_t i, bool f16) {
    return f16 ? eng_fp16_to_fp32(((const uint16_t *)p)[i]) : ((const float *)p)[i];
}

float eng_attn_ref(int hd, int n, const float *q, const void *k, const void *v, size_t ld, bool f16,
                   float scale, float *att, float *out) {
    float max = -INFINITY;
    for (int p = 0; p < n; p++) {
        float s = 0.0f;
        for (int i = 0; i < hd; i++) s += q[i] * kv_get(k, (size_t)p * ld + i, f16);
        att[p] = s * scale;
        if (att[p] > max) max = att[p];
    }
    float sum = 0.0f;
    for (int p = 0; p < n; p++) sum += att[p] = expf(att[p] - max);
    for (int i = 0; i < hd; i++) out[i] = 0.0f;
    for (int p = 0; p < n; p++)
        for (int i = 0; i < hd; i++) out[i] += att[p] * kv_get(v, (size_t)p * ld + i, f16);
    for (int i = 0; i < hd; i++) out[i] /= sum;
    return max + logf(sum);
}

#if defined(__aarch64__)
/* Advanced SIMD twin of eng_attn_avx2 (attn_x86.c): four positions' scores per pairwise-add
 * tree, the same exponential polynomial over four lanes, the output in registers 64 values at
 * a time. Every aarch64 CPU has it, so it is not in a file of its own. */
/* Four elements of a cache row block from element i: floats, or fp16 values widened. */
static inline float32x4_t ld4(const void *p, size_t i, const bool h) {
    return h ? vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16((const uint16_t *)p + i)))
             : vld1q_f32((const float *)p + i);
}

static inline __attribute__((always_inline)) void weighted_neon(const int W, const bool h, int n,
                                                                const float *att, const void *v,
                                                                size_t i0, size_t ld, float inv,
                                                                float *out) {
    float32x4_t o[16];
#pragma GCC unroll 16
    for (int j = 0; j < W; j++) o[j] = vdupq_n_f32(0.0f);
    for (int p = 0; p < n; p++) { /* hot loop */
        const float a = att[p];
        const size_t vp = (size_t)p * ld + i0;
#pragma GCC unroll 16
        for (int j = 0; j < W; j++) o[j] = vfmaq_n_f32(o[j], ld4(v, vp + 4 * j, h), a);
    }
#pragma GCC unroll 16
    for (int j = 0; j < W; j++) vst1q_f32(out + 4 * j, vmulq_n_f32(o[j], inv));
}

static inline __attribute__((always_inline)) float
attn_neon_t(const bool h, int hd, int n, const float *q, const void *k, const void *v, size_t ld,
            float scale, float *att, float *out) {
    float32x4_t vmax = vdupq_n_f32(-INFINITY);
    int p = 0;
    for (; p + 4 <= n; p += 4) { /* hot loop: four positions' scores */
        const size_t kp = (size_t)p * ld;
        float32x4_t a0 = vdupq_n_f32(0.0f), a1 = a0, a2 = a0, a3 = a0;
        for (int i = 0; i < hd; i += 4) {
            const float32x4_t qv = vld1q_f32(q + i);
            a0 = vfmaq_f32(a0, ld4(k, kp + i, h), qv);
            a1 = vfmaq_f32(a1, ld4(k, kp + ld + i, h), qv);
            a2 = vfmaq_f32(a2, ld4(k, kp + 2 * ld + i, h), qv);
            a3 = vfmaq_f32(a3, ld4(k, kp + 3 * ld + i, h), qv);
        }
        const float32x4_t s =
            vmulq_n_f32(vpaddq_f32(vpaddq_f32(a0, a1), vpaddq_f32(a2, a3)), scale);
        vst1q_f32(att + p, s);
        vmax = vmaxq_f32(vmax, s);
    }
    float max = vmaxvq_f32(vmax);
    for (; p < n; p++) {
        const size_t kp = (size_t)p * ld;
        float32x4_t a = vdupq_n_f32(0.0f);
        for (int i = 0; i < hd; i += 4) a = vfmaq_f32(a, ld4(k, kp + i, h), vld1q_f32(q + i));
        att[p] = vaddvq_f32(a) * scale;
        max = fmaxf(max, att[p]);
    }
    const float32x4_t vm = vdupq_n_f32(max);
    float32x4_t vsum = vdupq_n_f32(0.0f);
    for (p = 0; p + 4 <= n; p += 4) {
        const float32x4_t e = vexp4(vsubq_f32(vld1q_f32(att + p), vm));
        vst1q_f32(att + p, e);
        vsum = vaddq_f32(vsum, e);
    }
    float sum = vaddvq_f32(vsum);
    for (; p < n; p++) sum += att[p] = expf(att[p] - max);
    const float inv = 1.0f / sum;
    int i0 = 0;
    for (; i0 + 64 <= hd; i0 += 64) weighted_neon(16, h, n, att, v, (size_t)i0, ld, inv, out + i0);
    for (; i0 + 16 <= hd; i0 += 16) weighted_neon(4, h, n, att, v, (size_t)i0, ld, inv, out + i0);
    for (; i0 < hd; i0 += 4) weighted_neon(1, h, n, att, v, (size_t)i0, ld, inv, out + i0);
    return max + logf(sum);
}

static float attn_neon(int hd, int n, const float *q, const void *k, const void *v, size_t ld,
                       bool f16, float scale, float *att, float *out) {
    if (hd % 4) return eng_attn_ref(hd, n, q, k, v, ld, f16, scale, att, out);
    if (f16) return attn_neon_t(true, hd, n, q, k, v, ld, scale, att, out);
    return attn_neon_t(false, hd, n, q, k, v, ld, scale, att, out);
}
#endif

eng_attn_fn eng_attn_kernel_for(enum eng_simd s) {
#if defined(__x86_64__)
    if (eng_simd_is_avx512(s)) return eng_attn_avx512;
    if (s == ENG_SIMD_AVX2) return eng_attn_avx2;
#elif defined(__aarch64__)
    if (s == ENG_SIMD_NEON || s == ENG_SIMD_DOTPROD) return attn_neon;
#endif
    (void)s;
    return NULL;
}

eng_attn_fn eng_attn_kernel(void) {
    eng_attn_fn f = eng_attn_kernel_for(eng_simd_active());
    return f ? f : eng_attn_ref;
}
