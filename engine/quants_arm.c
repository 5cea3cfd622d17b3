/*
 * quants_arm.c — aarch64 kernels with the dot-product extension (SDOT), compiled with
 * -march=armv8.2-a+dotprod+fp16 and installed only when the CPU reports it (level
 * ENG_SIMD_DOTPROD, over the NEON level). Same kernel bodies as quants_neon.c
 * (quants_neon_body.h) with SDOT as the 8-bit dot product; the float kernels and quantizers of
 * the NEON level stay installed.
 */
#include "quants.h"

#include <math.h>

#define KDOT(acc, x, y) vdotq_s32(acc, x, y)
#define KN(name)        name##_dotprod
#include "quants_neon_body.h"

void eng_simd_install_dotprod(struct eng_type_traits *t) {
    install_int_dotprod(t);
}
