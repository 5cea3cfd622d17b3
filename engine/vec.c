/*
 * vec.c — the per-token vector steps: RMSNorm (out = x / rms(x) · w) and the SwiGLU product
 * (g = silu(g) · u) of the forward pass, and the maximum (with a copy) of the sampler's pass
 * over the logits. The scalar references (also what the scalar level runs),
 * the Advanced SIMD versions, and the choice for the running CPU; the AVX2 versions live in
 * vec_x86.c. The SIMD versions sum squares in float lanes (the reference in double) and take
 * e^x from vexp.h's polynomial (the reference from expf): equal to the references up to float
 * rounding (tests/simd names the tolerances). They do not allocate.
 */
#include "quants.h"

#include <math.h>
#include <string.h>

#if defined(__aarch64__)
#include "vexp.h"
#endif

void eng_rmsnorm_ref(float *out, const float *x, const float *w, int n, float eps) {
    double ss = 0.0;
    for (int i = 0; i < n; i++) ss += (double)x[i] * x[i];
    float scale = (float)(1.0 / sqrt(ss / n + eps));
    for (int i = 0; i < n; i++) out[i] = x[i] * scale * w[i];
}

void eng_glu_ref(float *g, const float *u, int64_t n) {
    for (int64_t i = 0; i < n; i++) g[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}

float eng_max_ref(float *dst, const float *x, int64_t n) {
    float m = -INFINITY;
    for (int64_t i = 0; i < n; i++) m = x[i] > m ? x[i] : m; /* NaN never compares greater */
    if (dst) memcpy(dst, x, (size_t)n * sizeof(float));
    return m;
}

#if defined(__aarch64__)
static void rmsnorm_neon(float *out, const float *x, const float *w, int n, float eps) {
    float32x4_t s0 = vdupq_n_f32(0.0f), s1 = s0, s2 = s0, s3 = s0;
    int i = 0;
    for (; i + 16 <= n; i += 16) {
        const float32x4_t a = vld1q_f32(x + i), b = vld1q_f32(x + i + 4);
        const float32x4_t c = vld1q_f32(x + i + 8), d = vld1q_f32(x + i + 12);
        s0 = vfmaq_f32(s0, a, a), s1 = vfmaq_f32(s1, b, b);
        s2 = vfmaq_f32(s2, c, c), s3 = vfmaq_f32(s3, d, d);
    }
    for (; i + 4 <= n; i += 4) {
        const float32x4_t a = vld1q_f32(x + i);
        s0 = vfmaq_f32(s0, a, a);
    }
    float ss = vaddvq_f32(vaddq_f32(vaddq_f32(s0, s1), vaddq_f32(s2, s3)));
    for (; i < n; i++) ss += x[i] * x[i];
    const float scale = 1.0f / sqrtf(ss / (float)n + eps);
    i = 0;
    for (; i + 4 <= n; i += 4)
        vst1q_f32(out + i, vmulq_f32(vmulq_n_f32(vld1q_f32(x + i), scale), vld1q_f32(w + i)));
    for (; i < n; i++) out[i] = x[i] * scale * w[i];
}

static void glu_neon(float *g, const float *u, int64_t n) {
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
        const float32x4_t x = vld1q_f32(g + i);
        const float32x4_t sig = vaddq_f32(vdupq_n_f32(1.0f), vexp4(vnegq_f32(x)));
        vst1q_f32(g + i, vmulq_f32(vdivq_f32(x, sig), vld1q_f32(u + i)));
    }
    if (i < n) eng_glu_ref(g + i, u + i, n - i);
}

/* vmaxnm takes the number when one side is NaN (vmax would take the NaN). */
static float max_neon(float *dst, const float *x, int64_t n) {
    float32x4_t m0 = vdupq_n_f32(-INFINITY), m1 = m0, m2 = m0, m3 = m0;
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        const float32x4_t a = vld1q_f32(x + i), b = vld1q_f32(x + i + 4);
        const float32x4_t c = vld1q_f32(x + i + 8), d = vld1q_f32(x + i + 12);
        m0 = vmaxnmq_f32(m0, a), m1 = vmaxnmq_f32(m1, b), m2 = vmaxnmq_f32(m2, c);
        m3 = vmaxnmq_f32(m3, d);
        if (dst) {
            vst1q_f32(dst + i, a), vst1q_f32(dst + i + 4, b);
            vst1q_f32(dst + i + 8, c), vst1q_f32(dst + i + 12, d);
        }
    }
    float m = vmaxnmvq_f32(vmaxnmq_f32(vmaxnmq_f32(m0, m1), vmaxnmq_f32(m2, m3)));
    float r = eng_max_ref(dst ? dst + i : NULL, x + i, n - i);
    return r > m ? r : m;
}
#endif

struct eng_vec_ops eng_vec_ops_for(enum eng_simd s) {
#if defined(__x86_64__)
    if (s == ENG_SIMD_AVX2 || eng_simd_is_avx512(s))
        return (struct eng_vec_ops){eng_rmsnorm_avx2, eng_glu_avx2, eng_max_avx2};
#elif defined(__aarch64__)
    if (s == ENG_SIMD_NEON || s == ENG_SIMD_DOTPROD)
        return (struct eng_vec_ops){rmsnorm_neon, glu_neon, max_neon};
#endif
    (void)s;
    return (struct eng_vec_ops){NULL, NULL, NULL};
}

struct eng_vec_ops eng_vec_ops(void) {
    struct eng_vec_ops v = eng_vec_ops_for(eng_simd_active());
    if (!v.rmsnorm) v = (struct eng_vec_ops){eng_rmsnorm_ref, eng_glu_ref, eng_max_ref};
    return v;
}
