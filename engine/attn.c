/*
 * attn.c — attention of one query head over one sequence's cached keys and values:
 * out = softmax(scale · q · K[0..n)ᵀ) · V[0..n). The scalar reference, the generic version
 * (the F32 vec_dot and axpy kernels of the active level, one call per position) and the choice
 * of the fastest for the running CPU; SIMD twins live in attn_<arch>.c. forward.c splits the
 * work over sequences and heads. It does not allocate.
 */
#include "quants.h"

#include <math.h>

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

/* Per position: one F32 vec_dot for the score and one axpy for the value (levels without a
 * kernel of their own). */
static void attn_generic(int hd, int n, const float *q, const float *k, const float *v, size_t ld,
                         float scale, float *att, float *out) {
    void (*dot)(int64_t, float *, const void *, const void *) =
        eng_type_traits(ENG_TYPE_F32)->vec_dot;
    eng_axpy_fn axpy = eng_axpy_kernel();
    float max = -INFINITY;
    for (int p = 0; p < n; p++) {
        float s;
        dot(hd, &s, k + (size_t)p * ld, q);
        att[p] = s * scale;
        if (att[p] > max) max = att[p];
    }
    float sum = 0.0f;
    for (int p = 0; p < n; p++) sum += att[p] = expf(att[p] - max);
    float inv = 1.0f / sum;
    for (int i = 0; i < hd; i++) out[i] = 0.0f;
    for (int p = 0; p < n; p++) axpy(hd, att[p] * inv, v + (size_t)p * ld, out);
}

eng_attn_fn eng_attn_kernel(void) {
#if defined(__x86_64__)
    if (eng_simd_active() >= ENG_SIMD_AVX2 && eng_simd_active() <= ENG_SIMD_AVX512)
        return eng_attn_avx2;
#endif
    return attn_generic;
}
