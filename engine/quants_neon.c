/*
 * quants_neon.c — baseline Advanced SIMD (NEON) kernels for aarch64, compiled with the default
 * flags so they run on every aarch64 CPU (level ENG_SIMD_NEON). The 8-bit dot product is
 * SMULL + SADALP. The kernels themselves are in quants_neon_body.h, shared with quants_arm.c.
 * Empty on other architectures.
 */
#include "quants.h"

#if defined(__aarch64__)
#include <arm_neon.h>
#include <math.h>

/* acc += four-way sums of x*y (int8): widening multiplies, pairwise add-accumulate. */
static inline int32x4_t neon_dot(int32x4_t acc, int8x16_t x, int8x16_t y) {
    int16x8_t lo = vmull_s8(vget_low_s8(x), vget_low_s8(y));
    int16x8_t hi = vmull_high_s8(x, y);
    return vpadalq_s16(vpadalq_s16(acc, lo), hi);
}

#define KDOT(acc, x, y) neon_dot(acc, x, y)
#define KN(name)        name##_neon
#include "quants_neon_body.h"

void eng_simd_install_neon(struct eng_type_traits *t) {
    install_float_neon(t);
    install_int_neon(t);
}
#endif
