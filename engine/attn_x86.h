/*
 * attn_x86.h — what the x86-64 attention kernels share (attn_x86.c for AVX2, attn_avx512_x86.c
 * for AVX-512): the software prefetch of a head's cached rows and the softmax's exponentials.
 * Only for files compiled with at least AVX2/FMA enabled.
 */
#ifndef EDGELLM_ENGINE_ATTN_X86_H
#define EDGELLM_ENGINE_ATTN_X86_H

#include "quants_x86.h"
#include "vexp.h"

#include <immintrin.h>
#include <math.h>
#include <stddef.h>

/* Software prefetch of the cache rows ATTN_PF_ROWS positions ahead of the ones being read (row
 * bytes apart, bytes of each): a head's rows stream from memory, and the hardware prefetchers
 * stop at every 4 KiB page, which an f32 head of 64 values crosses every 16 positions.
 * prefetcht0: the other query heads of a key/value group read the same rows next. L110M Q4_0,
 * 2 threads, builds interleaved (edgellm bench -p 0 -r 3): tg128 with 4 sequences faster in 7
 * of 8 rounds, by up to 12% (the eighth 2% slower; 819-941 / 842-957 tok/s without / with), tg1024
 * 326-361 / 343-367; tg32 even within this host's noise. 8 and 32 rows ahead measured no better.
 * Rows past the last one are not prefetched (at short contexts they would be most of what is
 * fetched). The L2 hints instead (prefetcht1, prefetcht2; prefetcht1 32 rows ahead) no faster from
 * memory (bench-kernels -a, head 64 at 128 positions: 10.0-11.3 ns against 9.3-10.7). Every key
 * row of the work item after the current one prefetched as an item starts (prefetcht2,
 * forward.c's attention), keys and values: L110M Q4_0 four sequences tg128 0.994 and 0.980 of
 * the build without (faster in 3 and 2 of 8 alternated rounds); only the first 8 or 16 rows
 * of the next item's keys and values (prefetcht0, -r 10, twelve rounds of four builds in turn):
 * 0.985 and 0.997, where a second copy of the build before came out 1.003. prefetchnta instead of
 * prefetcht0 (so that the rows, read once a pass, need not take room in L3 from the weights):
 * L110M Q4_0 tg128 (-r 10), twelve rounds of three builds in turn, the build before twice: four
 * sequences 0.985 of the first copy, where the second came out 0.986; one 0.994 and 0.993. */
#define ATTN_PF_ROWS 16
static inline __attribute__((always_inline)) void pf_range(const void *p, size_t bytes) {
    const char *q = (const char *)p;
    for (size_t k = 0; k < bytes; k += 64) __asm__ __volatile__("prefetcht0 %0" : : "m"(q[k]));
}
static inline __attribute__((always_inline)) void pf_rows(const void *row, size_t ld_bytes,
                                                          size_t bytes) {
    pf_range((const char *)row + ATTN_PF_ROWS * ld_bytes, bytes);
}

/* att[p] = e^(att[p] - max) for p < n, eight at a time by vexp.h's polynomial (the rest by
 * expf); returns their sum. */
static inline float exp_scores(float *att, int n, float max) {
    const __m256 vm = _mm256_set1_ps(max);
    __m256 vsum = _mm256_setzero_ps();
    int p = 0;
    for (; p + 8 <= n; p += 8) {
        const __m256 e = vexp8(_mm256_sub_ps(_mm256_loadu_ps(att + p), vm));
        _mm256_storeu_ps(att + p, e);
        vsum = _mm256_add_ps(vsum, e);
    }
    float sum = hsum_ps(vsum);
    for (; p < n; p++) sum += att[p] = expf(att[p] - max);
    return sum;
}

#endif
