/*
 * check_kernels.c — the SIMD kernels of every level this CPU supports against their scalar twins
 * (tolerances in tests/simd/kernel_compare.h), and the dispatch rules: the active level is the
 * best supported one, EDGELLM_SIMD caps it, unsupported levels are refused.
 */
#include "simd/kernel_compare.h"

#include <check.h>

START_TEST(simd_levels_match_reference) {
    int n_levels = 0;
    struct kc_result r = kc_compare_all(stderr, &n_levels);
    ck_assert_int_gt(r.checks, 0);
    ck_assert_msg(r.failures == 0, "%d of %d kernel checks failed (see stderr)", r.failures,
                  r.checks);
}
END_TEST

START_TEST(active_level_is_best_supported) {
    enum eng_simd a = eng_simd_active();
    ck_assert(eng_simd_supported(a));
    if (!getenv("EDGELLM_SIMD"))
        for (int s = a + 1; s < ENG_SIMD_COUNT; s++) {
#if defined(__x86_64__)
            if (s > ENG_SIMD_AVX512_GFNI) break;
#endif
            ck_assert_msg(!eng_simd_supported((enum eng_simd)s), "level %s supported but %s active",
                          eng_simd_name((enum eng_simd)s), eng_simd_name(a));
        }
#if defined(__x86_64__) || defined(__aarch64__)
    ck_assert_int_ne(a, ENG_SIMD_SCALAR); /* every x86-64 this runs on in CI has AVX2 */
#endif
}
END_TEST

START_TEST(unsupported_level_is_refused) {
    static struct eng_type_traits t[ENG_TYPE_COUNT];
#if defined(__x86_64__)
    ck_assert_int_eq(eng_types_build(t, ENG_SIMD_NEON), ENG_EUNSUPPORTED);
#else
    ck_assert_int_eq(eng_types_build(t, ENG_SIMD_AVX2), ENG_EUNSUPPORTED);
#endif
    ck_assert_int_eq(eng_types_build(t, ENG_SIMD_SCALAR), 0);
    ck_assert_ptr_nonnull(t[ENG_TYPE_Q4_K].vec_dot);
}
END_TEST

Suite *kernels_suite(void) {
    Suite *s = suite_create("kernels");
    TCase *tc = tcase_create("simd");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, simd_levels_match_reference);
    tcase_add_test(tc, active_level_is_best_supported);
    tcase_add_test(tc, unsupported_level_is_refused);
    suite_add_tcase(s, tc);
    return s;
}
