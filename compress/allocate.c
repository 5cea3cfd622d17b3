/*
 * allocate.c — the budget allocator: one choice (format) per item (tensor) minimising the total
 * predicted error under a byte budget. A multiple-choice knapsack solved exactly by dynamic
 * programming over sizes rounded up to a unit of budget/2^16 (so the result never exceeds the
 * budget), then topped up greedily with the exact sizes. It knows nothing of tensors or formats.
 */
#include "compress.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define CMP_ALLOC_UNITS 65536 /* resolution of the size axis */

/* Spends leftover bytes: repeatedly takes the upgrade with the largest error reduction per byte
 * that still fits. */
static void top_up(const struct cmp_alloc_item *items, int n, uint64_t budget, int *pick) {
    uint64_t used = 0;
    for (int i = 0; i < n; i++) used += items[i].choices[pick[i]].bytes;
    for (;;) {
        int best_i = -1, best_c = -1;
        double best_gain = 0.0;
        for (int i = 0; i < n; i++) {
            const struct cmp_choice *cur = &items[i].choices[pick[i]];
            for (int c = 0; c < items[i].n_choices; c++) {
                const struct cmp_choice *ch = &items[i].choices[c];
                if (ch->err >= cur->err) continue;
                uint64_t extra = ch->bytes > cur->bytes ? ch->bytes - cur->bytes : 0;
                if (used - cur->bytes + ch->bytes > budget) continue;
                double gain = (cur->err - ch->err) / (double)(extra + 1);
                if (gain > best_gain) {
                    best_gain = gain;
                    best_i = i;
                    best_c = c;
                }
            }
        }
        if (best_i < 0) return;
        used =
            used - items[best_i].choices[pick[best_i]].bytes + items[best_i].choices[best_c].bytes;
        pick[best_i] = best_c;
    }
}

int cmp_allocate(const struct cmp_alloc_item *items, int n, uint64_t budget, int *pick,
                 uint64_t *min_bytes) {
    uint64_t min_total = 0;
    for (int i = 0; i < n; i++) {
        if (items[i].n_choices < 1 || items[i].n_choices > 255)
            return eng_fail(ENG_EINVAL, "allocation item %d has %d choices (1..255)", i,
                            items[i].n_choices);
        uint64_t mn = UINT64_MAX;
        int arg = 0;
        for (int c = 0; c < items[i].n_choices; c++) {
            if (items[i].choices[c].bytes < mn ||
                (items[i].choices[c].bytes == mn &&
                 items[i].choices[c].err < items[i].choices[arg].err)) {
                mn = items[i].choices[c].bytes;
                arg = c;
            }
        }
        min_total += mn;
        pick[i] = arg;
    }
    if (min_bytes) *min_bytes = min_total;
    if (min_total > budget)
        return eng_fail(ENG_ERANGE,
                        "the budget of %llu bytes cannot be met: the smallest reachable size is "
                        "%llu bytes",
                        (unsigned long long)budget, (unsigned long long)min_total);
    if (n == 0) return 0;

    uint64_t unit = (budget + CMP_ALLOC_UNITS - 1) / CMP_ALLOC_UNITS;
    if (unit == 0) unit = 1;
    size_t U = (size_t)(budget / unit);
    double *dp = malloc((U + 1) * sizeof(double)), *next = malloc((U + 1) * sizeof(double));
    uint8_t *choice = malloc((size_t)n * (U + 1));
    if (!dp || !next || !choice) {
        free(dp);
        free(next);
        free(choice);
        return eng_fail(ENG_ENOMEM, "out of memory for the allocation table");
    }
    for (size_t u = 0; u <= U; u++) dp[u] = 0.0; /* dp[u]: least error within u units */
    for (int i = 0; i < n; i++) {
        uint8_t *ch = choice + (size_t)i * (U + 1);
        for (size_t u = 0; u <= U; u++) {
            next[u] = INFINITY;
            ch[u] = 0;
        }
        for (int c = 0; c < items[i].n_choices; c++) {
            uint64_t s = (items[i].choices[c].bytes + unit - 1) / unit;
            if (s > U) continue;
            double e = items[i].choices[c].err;
            for (size_t u = (size_t)s; u <= U; u++) {
                double v = dp[u - s] + e;
                if (v < next[u]) {
                    next[u] = v;
                    ch[u] = (uint8_t)c;
                }
            }
        }
        double *t = dp;
        dp = next;
        next = t;
    }
    if (isfinite(dp[U])) {
        size_t u = U;
        for (int i = n - 1; i >= 0; i--) {
            int c = choice[(size_t)i * (U + 1) + u];
            pick[i] = c;
            u -= (size_t)((items[i].choices[c].bytes + unit - 1) / unit);
        }
    }
    /* else: rounding made the table infeasible; pick[] holds the smallest choices, which fit */
    free(dp);
    free(next);
    free(choice);
    top_up(items, n, budget, pick);
    return 0;
}
