/*
 * attn.c — attention of one query head over one sequence's cached keys and values:
 * out = softmax(scale · q · K[0..n)ᵀ) · V[0..n). The scalar reference (also what the scalar
 * level runs), the aarch64 kernel, and the choice for the running CPU; the x86 kernel lives in
 * attn_x86.c. forward.c splits the work over sequences and heads. It does not allocate.
 */
#include "quants.h"

#include <math.h>

#if defined(__aarch64__)
#include <arm_neon.h>
#endif

void eng_attn_ref(int hd, int n, const float *q, const float *k, const float *v, size_t ld,
                  float scale, float *att, float *out) {
    float max = -INFINITY;
    for (int p = 0; p < n; p++) {
        float s = 0.0f;
        for (int i = 0; i < hd; i++) s += q[i] * k[(size_t)p * ld + i];
        att[p] = s * scale;
        if (att[p] > max) max = att[p];
    }
    float sum = 0.0f;
    for (int p = 0; p < n; p++) sum += att[p] = expf(att[p] - max);
    for (int i = 0; i < hd; i++) out[i] = 0.0f;
    for (int p = 0; p < n; p++)
        for (int i = 0; i < hd; i++) out[i] += att[p] * v[(size_t)p * ld + i];
    for (int i = 0; i < hd; i++) out[i] /= sum;
}

#if defined(__aarch64__)
/* Advanced SIMD twin of eng_attn_avx2 (attn_x86.c): four positions' scores per pairwise-add
 * tree, the same exponential polynomial over four lanes, the output in registers 64 values at
 * a time. Every aarch64 CPU has it, so it is not in a file of its own. */
static inline float32x4_t exp_neg_neon(float32x4_t x) {
    x = vmaxq_f32(x, vdupq_n_f32(-87.0f));
    float32x4_t n = vrndnq_f32(vmulq_n_f32(x, 1.44269504f));
    float32x4_t r = vfmsq_f32(x, n, vdupq_n_f32(0.693359375f));
    r = vfmsq_f32(r, n, vdupq_n_f32(-2.12194440e-4f));
    float32x4_t p = vdupq_n_f32(1.9875691500e-4f);
    p = vfmaq_f32(vdupq_n_f32(1.3981999507e-3f), p, r);
    p = vfmaq_f32(vdupq_n_f32(8.3334519073e-3f), p, r);
    p = vfmaq_f32(vdupq_n_f32(4.1665795894e-2f), p, r);
    p = vfmaq_f32(vdupq_n_f32(1.6666665459e-1f), p, r);
    p = vfmaq_f32(vdupq_n_f32(5.0000001201e-1f), p, r);
    float32x4_t y = vfmaq_f32(vaddq_f32(r, vdupq_n_f32(1.0f)), vmulq_f32(p, r), r);
    int32x4_t e = vshlq_n_s32(vaddq_s32(vcvtq_s32_f32(n), vdupq_n_s32(127)), 23);
    return vmulq_f32(y, vreinterpretq_f32_s32(e));
}

static inline __attribute__((always_inline)) void weighted_neon(const int W, int n,
                                                                const float *att, const float *v,
                                                                size_t ld, float inv, float *out) {
    float32x4_t o[16];
#pragma GCC unroll 16
    for (int j = 0; j < W; j++) o[j] = vdupq_n_f32(0.0f);
    for (int p = 0; p < n; p++) { /* hot loop */
        const float a = att[p];
        const float *vp = v + (size_t)p * ld;
#pragma GCC unroll 16
        for (int j = 0; j < W; j++) o[j] = vfmaq_n_f32(o[j], vld1q_f32(vp + 4 * j), a);
    }
#pragma GCC unroll 16
    for (int j = 0; j < W; j++) vst1q_f32(out + 4 * j, vmulq_n_f32(o[j], inv));
}

static void attn_neon(int hd, int n, const float *q, const float *k, const float *v, size_t ld,
                      float scale, float *att, float *out) {
    if (hd % 4) {
        eng_attn_ref(hd, n, q, k, v, ld, scale, att, out);
        return;
    }
    float32x4_t vmax = vdupq_n_f32(-INFINITY);
    int p = 0;
    for (; p + 4 <= n; p += 4) { /* hot loop: four positions' scores */
        const float *kp = k + (size_t)p * ld;
        float32x4_t a0 = vdupq_n_f32(0.0f), a1 = a0, a2 = a0, a3 = a0;
        for (int i = 0; i < hd; i += 4) {
            const float32x4_t qv = vld1q_f32(q + i);
            a0 = vfmaq_f32(a0, vld1q_f32(kp + i), qv);
            a1 = vfmaq_f32(a1, vld1q_f32(kp + ld + i), qv);
            a2 = vfmaq_f32(a2, vld1q_f32(kp + 2 * ld + i), qv);
            a3 = vfmaq_f32(a3, vld1q_f32(kp + 3 * ld + i), qv);
        }
        const float32x4_t s =
            vmulq_n_f32(vpaddq_f32(vpaddq_f32(a0, a1), vpaddq_f32(a2, a3)), scale);
        vst1q_f32(att + p, s);
        vmax = vmaxq_f32(vmax, s);
    }
    float max = vmaxvq_f32(vmax);
    for (; p < n; p++) {
        const float *kp = k + (size_t)p * ld;
        float32x4_t a = vdupq_n_f32(0.0f);
        for (int i = 0; i < hd; i += 4) a = vfmaq_f32(a, vld1q_f32(kp + i), vld1q_f32(q + i));
        att[p] = vaddvq_f32(a) * scale;
        max = fmaxf(max, att[p]);
    }
    const float32x4_t vm = vdupq_n_f32(max);
    float32x4_t vsum = vdupq_n_f32(0.0f);
    for (p = 0; p + 4 <= n; p += 4) {
        const float32x4_t e = exp_neg_neon(vsubq_f32(vld1q_f32(att + p), vm));
        vst1q_f32(att + p, e);
        vsum = vaddq_f32(vsum, e);
    }
    float sum = vaddvq_f32(vsum);
    for (; p < n; p++) sum += att[p] = expf(att[p] - max);
    const float inv = 1.0f / sum;
    int i0 = 0;
    for (; i0 + 64 <= hd; i0 += 64) weighted_neon(16, n, att, v + i0, ld, inv, out + i0);
    for (; i0 + 16 <= hd; i0 += 16) weighted_neon(4, n, att, v + i0, ld, inv, out + i0);
    for (; i0 < hd; i0 += 4) weighted_neon(1, n, att, v + i0, ld, inv, out + i0);
}
#endif

eng_attn_fn eng_attn_kernel_for(enum eng_simd s) {
#if defined(__x86_64__)
    if (s == ENG_SIMD_AVX2 || eng_simd_is_avx512(s)) return eng_attn_avx2;
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
