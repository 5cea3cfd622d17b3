/*
 * quants_neon.c — baseline Advanced SIMD (NEON) kernels for aarch64, compiled with the default
 * flags so they run on every aarch64 CPU. Installed at level ENG_SIMD_NEON. Empty on other
 * architectures. It does not use the dot-product extension (quants_arm.c does).
 */
#include "quants.h"

#if defined(__aarch64__)
void eng_simd_install_neon(struct eng_type_traits *t) {
    (void)t; /* kernels to come; the references stay installed */
}
#endif
