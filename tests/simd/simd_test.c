/*
 * simd_test.c — standalone kernel test (no Check, no other libraries): builds every SIMD level the
 * running CPU supports and compares it with the scalar references (tests/simd/kernel_compare.h).
 * `make test-simd` runs it natively; `make test-aarch64` cross-compiles it with
 * gcc-aarch64-linux-gnu and runs it under qemu-aarch64, once with the CPU model's dot-product
 * extension and once without, so both NEON paths are exercised. Exit status 0 = all agree.
 */
#include "kernel_compare.h"

int main(void) {
    int n_levels = 0;
    struct kc_result r = kc_compare_all(stdout, &n_levels);
    printf("simd_test: %d level(s) besides scalar, %d checks, %d failures\n", n_levels, r.checks,
           r.failures);
    return r.failures ? 1 : 0;
}
