/*
 * quants_avx512gfni_x86.c — the avx512gfni level: quants_avx512_x86.c built again with GFNI
 * (compiled with -mgfni as well), installed only on CPUs that have it (eng_simd_supported).
 */
#define ENG_GFNI 1
#include "quants_avx512_x86.c"
