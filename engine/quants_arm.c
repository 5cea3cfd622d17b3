/*
 * quants_arm.c — aarch64 kernels that use the dot-product extension (SDOT), compiled with
 * -march=armv8.2-a+dotprod+fp16 and installed only when the CPU reports it (level
 * ENG_SIMD_DOTPROD, on top of quants_neon.c).
 */
#include "quants.h"

void eng_simd_install_dotprod(struct eng_type_traits *t) {
    (void)t; /* kernels to come; the NEON ones stay installed */
}
