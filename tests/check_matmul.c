/*
 * check_matmul.c — the three matrix-product paths (vec_dot, tile, sgemm) of every weight format
 * against a float64 product of the dequantized weights and the exact activations, for batch sizes
 * on both sides of the path thresholds and row counts that leave partial tiles and chunks; and the
 * SIMD tile kernel against its scalar twin.
 *
 * Bounds: the quantized paths round each activation to 8 bits per block of 32 (Q8_0) or 256
 * (Q8_K) with an fp16 or f32 scale d, so an activation moves by at most 0.5·d plus the scale's own
 * rounding (|q| ≤ 127 times 2⁻¹¹ d for fp16): 0.57·d. An output therefore differs from the exact
 * product by at most Σ |w_i| · 0.57 · d(i) plus float summation error (1e-5 of Σ|w_i x_i|). The
 * float paths (F32/F16/BF16) are bound by summation error alone.
 */
#include "quants.h"

#include <check.h>
#include <dirent.h>
#include <math.h>
#include <semaphore.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static unsigned long long rng_state;
static float frand(void) {
    rng_state ^= rng_state << 13, rng_state ^= rng_state >> 7, rng_state ^= rng_state << 17;
    return (float)((rng_state >> 11) * (1.0 / 9007199254740992.0)) * 2.0f - 1.0f;
}

/* Largest activation-rounding step of the block holding element i, for the activation type act. */
static double act_step(enum eng_type act, const float *x, int64_t n, int64_t i) {
    int64_t bs = act == ENG_TYPE_Q8_K ? 256 : 32, b0 = i / bs * bs;
    double amax = 0;
    for (int64_t k = b0; k < b0 + bs && k < n; k++) amax = fmax(amax, fabs(x[k]));
    return 0.57 * amax / 127.0;
}

/* Runs y = x·Wᵀ through eng_matmul and checks every output against the float64 product. */
static void check_product(enum eng_type type, int64_t in, int out, int B, int n_threads) {
    const struct eng_type_traits *tr = eng_type_traits(type);
    ck_assert_ptr_nonnull(tr);
    size_t wrow = eng_row_size(type, in);
    float *wf = malloc(sizeof(float) * in * out), *wd = malloc(sizeof(float) * in * out);
    float *x = malloc(sizeof(float) * in * B), *y = malloc(sizeof(float) * out * B);
    uint8_t *wq = malloc(wrow * out);
    for (int64_t i = 0; i < in * out; i++) wf[i] = frand() * (1.0f + (i % 7) * 0.3f);
    for (int64_t i = 0; i < in * B; i++) x[i] = frand() * (i % 5 == 0 ? 4.0f : 1.0f);
    for (int r = 0; r < out; r++) {
        tr->from_float(wf + (size_t)r * in, wq + (size_t)r * wrow, in);
        tr->to_float(wq + (size_t)r * wrow, wd + (size_t)r * in, in);
    }
    struct eng_tensor t = {.name = "w",
                           .type = type,
                           .n_dims = 2,
                           .ne = {in, out, 1, 1},
                           .nbytes = wrow * out,
                           .data = wq};
    struct eng_pool *pool = eng_pool_new(n_threads, false);
    struct eng_mm_ws *ws = eng_mm_ws_new(in, B, n_threads);
    ck_assert(pool && ws);
    eng_matmul(pool, ws, &t, x, B, y, out, NULL, 0);
    enum eng_mm_path path = eng_matmul_path(type, B);
    enum eng_type act = tr->vec_dot_type; /* both quantized paths use its codes */
    for (int b = 0; b < B; b++)
        for (int r = 0; r < out; r++) {
            double exact = 0, mag = 0, bound = 0;
            for (int64_t i = 0; i < in; i++) {
                double w = wd[(size_t)r * in + i], xv = x[(size_t)b * in + i];
                exact += w * xv;
                mag += fabs(w * xv);
                if (act != ENG_TYPE_F32)
                    bound += fabs(w) * act_step(act, x + (size_t)b * in, in, i);
            }
            bound += 1e-5 * mag + 1e-6;
            double got = y[(size_t)b * out + r];
            ck_assert_msg(fabs(got - exact) <= bound,
                          "%s B=%d path %d: y[%d][%d] = %.6g, exact %.6g, bound %.3g", tr->name, B,
                          path, b, r, got, exact, bound);
        }
    /* A token's result does not depend on the batch it came in (decode one at a time vs
     * prefill in a batch): the same activation codes, so only float rounding differs. */
    float *y1 = malloc(sizeof(float) * out);
    for (int b = 0; b < B; b++) {
        eng_matmul(pool, ws, &t, x + (size_t)b * in, 1, y1, out, NULL, 0);
        for (int r = 0; r < out; r++) {
            double mag = 0;
            for (int64_t i = 0; i < in; i++)
                mag += fabs(wd[(size_t)r * in + i] * x[(size_t)b * in + i]);
            ck_assert_msg(fabs(y1[r] - y[(size_t)b * out + r]) <= 1e-5 * mag + 1e-6,
                          "%s: batch of %d (path %d) and alone differ at [%d][%d]: %.8g vs %.8g",
                          tr->name, B, path, b, r, y[(size_t)b * out + r], y1[r]);
        }
    }
    free(y1);
    eng_mm_ws_free(ws);
    eng_pool_free(pool);
    free(wf), free(wd), free(x), free(y), free(wq);
}

static const enum eng_type quantized[] = {
    ENG_TYPE_Q4_0, ENG_TYPE_Q4_1, ENG_TYPE_Q5_0, ENG_TYPE_Q5_1, ENG_TYPE_Q8_0, ENG_TYPE_IQ4_NL,
    ENG_TYPE_Q2_K, ENG_TYPE_Q3_K, ENG_TYPE_Q4_K, ENG_TYPE_Q5_K, ENG_TYPE_Q6_K, ENG_TYPE_IQ4_XS,
};

START_TEST(quantized_paths_match_exact_product) {
    rng_state = 0x9E3779B97F4A7C15ull + (unsigned)_i;
    enum eng_type type = quantized[_i];
    const int min_b = eng_type_traits(type)->tile_min_b;
    ck_assert_int_ge(min_b, 2);
    if (min_b > 64) { /* this level serves every batch size without the tile path */
        const int batches[] = {1, 3, 5, 17, 70};
        for (size_t k = 0; k < sizeof(batches) / sizeof(batches[0]); k++) {
            check_product(type, 512, 37, batches[k], 2);
            ck_assert_int_eq(eng_matmul_path(type, batches[k]), ENG_MM_VEC_DOT);
        }
        return;
    }
    const int batches[] = {1, 3, min_b - 1, min_b, min_b + 5, 70};
    for (size_t k = 0; k < sizeof(batches) / sizeof(batches[0]); k++)
        check_product(type, 512, 37, batches[k], 2);
    ck_assert_int_eq(eng_matmul_path(type, min_b), ENG_MM_TILE);
    ck_assert_int_eq(eng_matmul_path(type, min_b - 1), ENG_MM_VEC_DOT);
}
END_TEST

START_TEST(float_paths_match_exact_product) {
    rng_state = 12345;
    const enum eng_type types[] = {ENG_TYPE_F32, ENG_TYPE_F16, ENG_TYPE_BF16};
    const int batches[] = {1, 7, ENG_SGEMM_MIN_B - 1, ENG_SGEMM_MIN_B, 45, 130};
    for (size_t t = 0; t < 3; t++) {
        for (size_t k = 0; k < sizeof(batches) / sizeof(batches[0]); k++)
            check_product(types[t], 96, 70, batches[k], 2);
        ck_assert_int_eq(eng_matmul_path(types[t], ENG_SGEMM_MIN_B), ENG_MM_SGEMM);
    }
    check_product(ENG_TYPE_F16, 100, 70, 45, 2); /* rows whose length is not a multiple of 8 */
}
END_TEST

/* Claims of nth simulated threads in a fixed interleaving (thread t claims `pace[t]` times per
 * round): every row exactly once; each thread's claims inside its own share come front to back,
 * adjacent (one continuous stream) and never growing, and a thread only strays from its share
 * once that share is used up (stealing from the back of another). With items, the split of
 * eng_item_split_init: the same, one item per claim. */
static void check_split(int64_t rows, int nth, const int *pace, bool items) {
    struct eng_row_split sp;
    if (items)
        eng_item_split_init(&sp, rows, nth);
    else
        eng_row_split_init(&sp, rows, nth, 1);
    int *seen = calloc((size_t)(rows > 0 ? rows : 1), sizeof(int));
    int64_t *next_own = calloc((size_t)nth, sizeof(int64_t));
    int64_t *last_size = calloc((size_t)nth, sizeof(int64_t));
    bool *done = calloc((size_t)nth, sizeof(bool)), *stolen = calloc((size_t)nth, sizeof(bool));
    int64_t share = nth < ENG_SPLIT_SHARES ? (rows + nth - 1) / nth
                                           : (rows + ENG_SPLIT_SHARES - 1) / ENG_SPLIT_SHARES;
    int n_done = 0;
    while (n_done < nth) {
        for (int t = 0; t < nth; t++)
            for (int k = 0; k < pace[t] && !done[t]; k++) {
                int64_t r0, r1;
                if (!eng_row_split_claim(&sp, t, &r0, &r1)) {
                    done[t] = true, n_done++;
                    break;
                }
                ck_assert(0 <= r0 && r0 < r1 && r1 <= rows);
                if (items) ck_assert_int_eq(r1 - r0, 1);
                for (int64_t r = r0; r < r1; r++) seen[r]++;
                int own = t % (nth < ENG_SPLIT_SHARES ? nth : ENG_SPLIT_SHARES);
                bool in_own = r0 >= share * own && r1 <= share * (own + 1);
                if (in_own && nth <= ENG_SPLIT_SHARES) {
                    ck_assert_msg(!stolen[t], "thread %d back in its share after stealing", t);
                    if (next_own[t]) ck_assert_int_eq(r0, next_own[t]); /* adjacent */
                    if (last_size[t]) ck_assert_int_le(r1 - r0, last_size[t]);
                    next_own[t] = r1;
                    last_size[t] = r1 - r0;
                } else {
                    stolen[t] = true;
                }
            }
    }
    for (int64_t r = 0; r < rows; r++)
        ck_assert_msg(seen[r] == 1, "rows %lld nth %d: row %lld claimed %d times", (long long)rows,
                      nth, (long long)r, seen[r]);
    free(seen), free(next_own), free(last_size), free(done), free(stolen);
}

/* One thread alone: its claims are a third of what is left (rounded up to align), never less
 * than the split's step, until the rest fits in one; with items, one item each; every row once,
 * in order. */
static void check_split_sizes(int64_t rows, int align, bool items) {
    struct eng_row_split sp;
    if (items)
        eng_item_split_init(&sp, rows, 1);
    else
        eng_row_split_init(&sp, rows, 1, align);
    int64_t at = 0, r0, r1, step = sp.step;
    while (eng_row_split_claim(&sp, 0, &r0, &r1)) {
        int64_t left = rows - at, want = items ? 1 : (left / 3 + align - 1) / align * align;
        if (want < step) want = step;
        ck_assert_int_eq(r0, at);
        ck_assert_int_eq(r1 - r0, left > want ? want : left);
        at = r1;
    }
    ck_assert_int_eq(at, rows);
    if (items) ck_assert_int_eq(step, 1);
}

START_TEST(row_split_claims_every_row_once) {
    const int even[70] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
                          1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
                          1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1};
    const int fast0[3] = {5, 1, 1}; /* thread 0 finishes first and steals */
    const int slow0[2] = {1, 7};
    for (int items = 0; items < 2; items++) {
        check_split(1000, 1, even, items);
        check_split(1000, 2, even, items);
        check_split(1000, 3, fast0, items);
        check_split(777, 2, slow0, items);
        check_split(48, 2, slow0, items);  /* attention's items: four L110M tokens */
        check_split(5, 3, fast0, items);   /* fewer rows than a step */
        check_split(2, 3, fast0, items);   /* fewer rows than threads: one share is empty */
        check_split(0, 2, even, items);    /* nothing to claim */
        check_split(300, 70, even, items); /* more threads than shares */
        check_split_sizes(1000, 1, items);
        check_split_sizes(7, 1, items);
    }
    check_split_sizes(2304, 16, false); /* interleaved rows: claims of whole groups */
    /* a thread that never runs has its whole share taken by the others: here one thread alone */
    struct eng_row_split sp;
    eng_row_split_init(&sp, 600, 3, 1);
    int64_t got = 0, r0, r1;
    while (eng_row_split_claim(&sp, 0, &r0, &r1)) got += r1 - r0;
    ck_assert_int_eq(got, 600);
}
END_TEST

START_TEST(single_thread_equals_two_threads) {
    /* Work is split by rows, and each output is computed by one thread in a fixed order, so the
     * thread count changes nothing, bit for bit, on every path. */
    rng_state = 777;
    const enum eng_type types[] = {ENG_TYPE_Q4_K, ENG_TYPE_Q8_0, ENG_TYPE_F16};
    for (size_t t = 0; t < 3; t++)
        for (int B = 1; B <= 64; B += 63) {
            int64_t in = 256;
            int out = 40;
            const struct eng_type_traits *tr = eng_type_traits(types[t]);
            size_t wrow = eng_row_size(types[t], in);
            uint8_t *wq = malloc(wrow * out);
            float *f = malloc(sizeof(float) * in * (out > B ? out : B));
            float *y1 = malloc(sizeof(float) * out * B), *y2 = malloc(sizeof(float) * out * B);
            for (int r = 0; r < out; r++) {
                for (int64_t i = 0; i < in; i++) f[i] = frand();
                tr->from_float(f, wq + (size_t)r * wrow, in);
            }
            for (int64_t i = 0; i < in * B; i++) f[i] = frand();
            struct eng_tensor w = {
                .type = types[t], .n_dims = 2, .ne = {in, out, 1, 1}, .data = wq};
            for (int nth = 1; nth <= 2; nth++) {
                struct eng_pool *pool = eng_pool_new(nth, false);
                struct eng_mm_ws *ws = eng_mm_ws_new(in, B, nth);
                eng_matmul(pool, ws, &w, f, B, nth == 1 ? y1 : y2, out, NULL, 0);
                eng_mm_ws_free(ws);
                eng_pool_free(pool);
            }
            ck_assert_msg(memcmp(y1, y2, sizeof(float) * out * B) == 0, "%s B=%d", tr->name, B);
            free(wq), free(f), free(y1), free(y2);
        }
}
END_TEST

START_TEST(tile_kernel_matches_reference) {
    /* The active tile kernel against eng_tile_ref on every tile shape, codes at the ±127 edge. */
    rng_state = 4242;
    struct eng_tile tile = eng_tile_kernel();
    ck_assert(tile.r >= 1 && tile.r <= ENG_TILE_MAX && tile.c >= 1 && tile.c <= ENG_TILE_MAX);
    enum { N = 320, NB = N / 32 };
    int8_t wq[ENG_TILE_MAX * N], a[ENG_TILE_MAX * N];
    float s8[ENG_TILE_MAX * NB * 8], ad[ENG_TILE_MAX * NB];
    for (int i = 0; i < ENG_TILE_MAX * N; i++)
        wq[i] = (int8_t)(i % 3 == 0 ? 127 : -127 + (int)((frand() + 1) * 127));
    for (int i = 0; i < ENG_TILE_MAX * N; i++)
        a[i] = (int8_t)(i % 5 == 0 ? -127 : (int)(frand() * 127));
    for (int i = 0; i < ENG_TILE_MAX * NB; i++)
        for (int k = 0; k < 8; k++) s8[i * 8 + k] = 0.01f * (1 + i % 5) * (k < 4 ? 1.0f : -0.5f);
    for (int i = 0; i < ENG_TILE_MAX * NB; i++) ad[i] = 0.02f * (1 + i % 3);
    for (int nr = 1; nr <= tile.r; nr++)
        for (int nc = 1; nc <= tile.c; nc++) {
            float y1[ENG_TILE_MAX * ENG_TILE_MAX], y2[ENG_TILE_MAX * ENG_TILE_MAX];
            eng_tile_ref(N, nr, nc, wq, s8, a, N, ad, y1, ENG_TILE_MAX);
            tile.fn(N, nr, nc, wq, s8, a, N, ad, y2, ENG_TILE_MAX);
            for (int c = 0; c < nc; c++)
                for (int r = 0; r < nr; r++) {
                    float e = y1[c * ENG_TILE_MAX + r], g = y2[c * ENG_TILE_MAX + r];
                    ck_assert_msg(fabsf(e - g) <= 1e-5f * (1 + fabsf(e)),
                                  "%dx%d [%d][%d]: %g vs %g", nr, nc, r, c, g, e);
                }
        }
}
END_TEST

/* fused_post: what the post step saw. Each row of each part must be handed over once, in
 * ranges aligned to the grain, with its values already final for every activation row. */
struct post_log {
    int grain, B;
    const int *outs;
    float *const *y;    /* the fused outputs */
    float *const *want; /* the separate products */
    atomic_int seen[3][64];
    atomic_int bad;
};
static void post_check(void *arg, int part, int64_t r0, int64_t r1) {
    struct post_log *lg = arg;
    if (r0 % lg->grain || (r1 % lg->grain && r1 != lg->outs[part]) || r0 >= r1)
        atomic_fetch_add(&lg->bad, 1);
    for (int64_t r = r0; r < r1; r++) {
        atomic_fetch_add(&lg->seen[part][r], 1);
        for (int t = 0; t < lg->B; t++) {
            size_t i = (size_t)t * lg->outs[part] + (size_t)r;
            if (memcmp(&lg->y[part][i], &lg->want[part][i], sizeof(float)))
                atomic_fetch_add(&lg->bad, 1);
        }
    }
}

START_TEST(fused_post) {
    /* eng_matmul_fused's post step, on two threads: every output row once, in grain-aligned
     * ranges, computed before the step runs; claims keep the grain even where the weight's row
     * groups are smaller (16 rows against q8_0's 1). */
    rng_state = 5;
    const int64_t in = 256;
    const int outs[3] = {64, 32, 48};
    uint8_t *wq[3];
    struct eng_tensor w[3];
    float *x = malloc(sizeof(float) * in * 4), *f = malloc(sizeof(float) * in);
    for (int64_t i = 0; i < in * 4; i++) x[i] = frand();
    size_t wrow = eng_row_size(ENG_TYPE_Q8_0, in);
    for (int p = 0; p < 3; p++) {
        wq[p] = malloc(wrow * outs[p]);
        for (int r = 0; r < outs[p]; r++) {
            for (int64_t i = 0; i < in; i++) f[i] = frand();
            eng_type_traits(ENG_TYPE_Q8_0)->from_float(f, wq[p] + (size_t)r * wrow, in);
        }
        w[p] = (struct eng_tensor){
            .type = ENG_TYPE_Q8_0, .n_dims = 2, .ne = {in, outs[p], 1, 1}, .data = wq[p]};
    }
    struct eng_pool *pool = eng_pool_new(2, false);
    struct eng_mm_ws *ws = eng_mm_ws_new(in, 64, 2);
    const struct eng_tensor *wp[3] = {&w[0], &w[1], &w[2]};
    for (int B = 1; B <= 4; B += 3)
        for (int round = 0; round < 20; round++) {
            float *want[3], *y[3];
            for (int p = 0; p < 3; p++) {
                want[p] = malloc(sizeof(float) * outs[p] * B);
                y[p] = malloc(sizeof(float) * outs[p] * B);
                eng_matmul(pool, ws, &w[p], x, B, want[p], outs[p], NULL, 0);
            }
            struct post_log lg = {.grain = 16, .B = B, .outs = outs, .y = y, .want = want};
            for (int p = 0; p < 3; p++)
                for (int r = 0; r < 64; r++) atomic_init(&lg.seen[p][r], 0);
            atomic_init(&lg.bad, 0);
            const struct eng_fused_post post = {post_check, &lg, 16};
            ck_assert(eng_matmul_fused(pool, ws, 3, wp, x, B, y, false, &post));
            int bad = atomic_load(&lg.bad);
            ck_assert_msg(bad == 0, "B %d: %d ranges or values wrong at the post step", B, bad);
            for (int p = 0; p < 3; p++)
                for (int r = 0; r < outs[p]; r++)
                    ck_assert_msg(atomic_load(&lg.seen[p][r]) == 1, "part %d row %d seen %d times",
                                  p, r, atomic_load(&lg.seen[p][r]));
            for (int p = 0; p < 3; p++) free(want[p]), free(y[p]);
        }
    eng_mm_ws_free(ws);
    eng_pool_free(pool);
    for (int p = 0; p < 3; p++) free(wq[p]);
    free(x), free(f);
}
END_TEST

START_TEST(fused_equals_separate) {
    /* q/k/v with mixed types (two activation conversions) and gate/up with silu: bit for bit the
     * separate products, with activations each thread converts (1 and 4 rows) and ones the
     * caller converts (12); and prefill-sized batches are refused (the caller falls back). */
    rng_state = 99;
    const int64_t in = 512;
    const enum eng_type types[3] = {ENG_TYPE_Q4_K, ENG_TYPE_Q6_K, ENG_TYPE_Q8_0};
    const int outs[3] = {64, 32, 48};
    uint8_t *wq[3];
    struct eng_tensor w[3];
    float *x = malloc(sizeof(float) * in * 12), *f = malloc(sizeof(float) * in);
    for (int64_t i = 0; i < in * 12; i++) x[i] = frand();
    for (int p = 0; p < 3; p++) {
        const struct eng_type_traits *tr = eng_type_traits(types[p]);
        size_t wrow = eng_row_size(types[p], in);
        wq[p] = malloc(wrow * outs[p]);
        for (int r = 0; r < outs[p]; r++) {
            for (int64_t i = 0; i < in; i++) f[i] = frand();
            tr->from_float(f, wq[p] + (size_t)r * wrow, in);
        }
        w[p] = (struct eng_tensor){
            .type = types[p], .n_dims = 2, .ne = {in, outs[p], 1, 1}, .data = wq[p]};
    }
    struct eng_pool *pool = eng_pool_new(2, false);
    struct eng_mm_ws *ws = eng_mm_ws_new(in, 64, 2);
    const int batches[3] = {1, 4, 12};
    for (int bi = 0; bi < 3; bi++) {
        const int B = batches[bi];
        float *sep[3], *fus[3];
        const struct eng_tensor *wp[3] = {&w[0], &w[1], &w[2]};
        for (int p = 0; p < 3; p++) {
            sep[p] = malloc(sizeof(float) * outs[p] * B);
            fus[p] = malloc(sizeof(float) * outs[p] * B);
            eng_matmul(pool, ws, &w[p], x, B, sep[p], outs[p], NULL, 0);
        }
        ck_assert(eng_matmul_fused(pool, ws, 3, wp, x, B, fus, false, NULL));
        for (int p = 0; p < 3; p++)
            ck_assert_msg(memcmp(sep[p], fus[p], sizeof(float) * outs[p] * B) == 0, "part %d", p);
        /* gate/up: two weights of one shape */
        const struct eng_tensor *gu[2] = {&w[0], &w[0]};
        float *gu_out[2] = {malloc(sizeof(float) * outs[0] * B),
                            malloc(sizeof(float) * outs[0] * B)};
        ck_assert(eng_matmul_fused(pool, ws, 2, gu, x, B, gu_out, true, NULL));
        /* the GLU the unfused pass applies (the active level's), row by row as fused_rows */
        float *want = malloc(sizeof(float) * outs[0] * B);
        memcpy(want, sep[0], sizeof(float) * outs[0] * B);
        for (int t = 0; t < B; t++)
            eng_vec_ops().glu(want + (size_t)t * outs[0], sep[0] + (size_t)t * outs[0], outs[0]);
        for (int i = 0; i < outs[0] * B; i++) {
            ck_assert_msg(memcmp(&gu_out[0][i], &want[i], sizeof(float)) == 0, "glu %d", i);
            float g = sep[0][i], ref = g / (1.0f + expf(-g)) * g;
            ck_assert_msg(fabsf(gu_out[0][i] - ref) <= 2e-6f * fabsf(ref) + 1e-30f, "glu %d", i);
        }
        free(want);
        free(gu_out[0]), free(gu_out[1]);
        for (int p = 0; p < 3; p++) free(sep[p]), free(fus[p]);
    }
    const struct eng_tensor *wp[3] = {&w[0], &w[1], &w[2]};
    float *dummy[3] = {NULL, NULL, NULL};
    ck_assert(!eng_matmul_fused(pool, ws, 3, wp, x, eng_type_traits(ENG_TYPE_Q4_K)->tile_min_b,
                                dummy, false, NULL));
    const struct eng_tensor *mism[2] = {&w[0], &w[1]};
    ck_assert(!eng_matmul_fused(pool, ws, 2, mism, x, 1, dummy, true, NULL));
    eng_mm_ws_free(ws);
    eng_pool_free(pool);
    for (int p = 0; p < 3; p++) free(wq[p]);
    free(x), free(f);
}
END_TEST

/* Q4_0X16, q4_0 rows interleaved by 16 (quants.h): reading rows back gives the file's bytes;
 * every path (the level's kernels, or rows read out where it has none; prefill; a subset of
 * rows; fused) agrees with the same weights in the file's layout up to float rounding; and a
 * column's result does not depend on how many were computed together, bit for bit, wherever
 * the product stays on the vec_dot path. */
static void check_interleaved(int64_t in, int out) {
    const struct eng_type_traits *q4 = eng_type_traits(ENG_TYPE_Q4_0);
    const struct eng_type_traits *x16 = eng_type_traits(ENG_TYPE_Q4_0X16);
    ck_assert_ptr_nonnull(x16);
    ck_assert_int_eq(x16->row_group, ENG_X16_GROUP);
    /* its own activations where the level has kernels for it, else its rows read out: q4_0's */
    ck_assert_int_eq(x16->vec_dot_type,
                     x16->vec_dot_rows ? ENG_TYPE_Q8_0X16 : (int)q4->vec_dot_type);
    const size_t wrow = eng_row_size(ENG_TYPE_Q4_0, in);
    ck_assert_uint_eq(eng_row_size(ENG_TYPE_Q4_0X16, in), wrow);
    float *f = malloc(sizeof(float) * in * 70), *g = malloc(sizeof(float) * in);
    uint8_t *wq = malloc(wrow * out), *wx = malloc(wrow * out), *row = malloc(wrow);
    for (int r = 0; r < out; r++) {
        for (int64_t i = 0; i < in; i++) f[i] = frand() * (1.0f + (r % 5) * 0.5f);
        q4->from_float(f, wq + (size_t)r * wrow, in);
    }
    eng_interleave_rows(ENG_TYPE_Q4_0X16, wq, wx, in, out);
    ck_assert(memcmp(wq, wx, wrow * out) != 0);
    struct eng_tensor tp = {.name = "p",
                            .type = ENG_TYPE_Q4_0,
                            .n_dims = 2,
                            .ne = {in, out, 1, 1},
                            .nbytes = wrow * out,
                            .data = wq};
    struct eng_tensor tx = tp;
    tx.type = ENG_TYPE_Q4_0X16, tx.data = wx;
    for (int r = 0; r < out; r++) {
        eng_deinterleave_row(ENG_TYPE_Q4_0X16, wx, in, r, row);
        ck_assert_msg(memcmp(row, wq + (size_t)r * wrow, wrow) == 0, "in %lld row %d",
                      (long long)in, r);
        eng_tensor_row_f32(&tx, r, f);
        eng_tensor_row_f32(&tp, r, g);
        ck_assert(memcmp(f, g, sizeof(float) * in) == 0);
    }
    struct eng_pool *pool = eng_pool_new(2, false);
    struct eng_mm_ws *ws = eng_mm_ws_new(in, 70, 2);
    float *x = malloc(sizeof(float) * in * 70);
    for (int64_t i = 0; i < in * 70; i++) x[i] = frand() * (i % 5 == 0 ? 4.0f : 1.0f);
    float *yp = malloc(sizeof(float) * out * 70), *yx = malloc(sizeof(float) * out * 70);
    float *y1 = malloc(sizeof(float) * out);
    const int batches[] = {1, 2, 3, 4, 5, 9, 70};
    for (size_t k = 0; k < sizeof(batches) / sizeof(batches[0]); k++) {
        const int B = batches[k];
        eng_matmul(pool, ws, &tp, x, B, yp, out, NULL, 0);
        eng_matmul(pool, ws, &tx, x, B, yx, out, NULL, 0);
        const bool vec_dot = eng_matmul_path(ENG_TYPE_Q4_0X16, B) == ENG_MM_VEC_DOT;
        for (int b = 0; b < B; b++) {
            eng_matmul(pool, ws, &tx, x + (size_t)b * in, 1, y1, out, NULL, 0);
            for (int r = 0; r < out; r++) {
                eng_tensor_row_f32(&tp, r, f);
                double mag = 0;
                for (int64_t i = 0; i < in; i++) mag += fabs(f[i] * x[(size_t)b * in + i]);
                const float got = yx[(size_t)b * out + r];
                ck_assert_msg(fabs(got - yp[(size_t)b * out + r]) <= 1e-5 * mag + 1e-6,
                              "in %lld B=%d y[%d][%d]: %.8g vs file layout %.8g", (long long)in, B,
                              b, r, got, yp[(size_t)b * out + r]);
                if (vec_dot)
                    ck_assert_msg(memcmp(&got, &y1[r], sizeof(float)) == 0,
                                  "in %lld B=%d y[%d][%d]: %.9g, alone %.9g", (long long)in, B, b,
                                  r, got, y1[r]);
            }
        }
    }
    /* a subset of the rows (exit logits of chosen tokens) */
    const int32_t ids[4] = {5, 0, out - 1, 17};
    float sub[4];
    eng_matmul(pool, ws, &tx, x, 1, yx, out, NULL, 0);
    eng_matmul(pool, ws, &tx, x, 1, sub, 4, ids, 4);
    for (int k = 0; k < 4; k++) ck_assert_float_le(fabsf(sub[k] - yx[ids[k]]), 1e-4f);
    /* fused with the same weight twice (gate/up): bit for bit the separate products */
    for (int B = 1; B <= 4; B += 3) {
        const struct eng_tensor *gu[2] = {&tx, &tx};
        float *o[2] = {malloc(sizeof(float) * out * B), malloc(sizeof(float) * out * B)};
        float *want = malloc(sizeof(float) * out * B);
        eng_matmul(pool, ws, &tx, x, B, want, out, NULL, 0);
        ck_assert(eng_matmul_fused(pool, ws, 2, gu, x, B, o, false, NULL));
        ck_assert(memcmp(o[0], want, sizeof(float) * out * B) == 0);
        ck_assert(memcmp(o[1], want, sizeof(float) * out * B) == 0);
        free(o[0]), free(o[1]), free(want);
    }
    /* a part whose rows do not come in whole groups cannot share the split: refused */
    struct eng_tensor odd = tp;
    odd.ne[1] = 40;
    const struct eng_tensor *mixed[2] = {&odd, &tx};
    float *dummy[2] = {NULL, NULL};
    ck_assert(!eng_matmul_fused(pool, ws, 2, mixed, x, 1, dummy, false, NULL));
    eng_mm_ws_free(ws);
    eng_pool_free(pool);
    free(f), free(g), free(wq), free(wx), free(row), free(x), free(yp), free(yx), free(y1);
}

START_TEST(interleaved_weights_match_file_layout) {
    rng_state = 4242;
    check_interleaved(96, 96);  /* three blocks a row: the last one alone; three groups */
    check_interleaved(512, 64); /* two activation groups */
    check_interleaved(800, 32); /* 25 blocks: a last activation group of one */
    /* claims of an aligned split start on group boundaries and end on one or at the end */
    struct eng_row_split sp;
    for (int nth = 1; nth <= 3; nth++) {
        eng_row_split_init(&sp, 800, nth, 16);
        int64_t got = 0, r0, r1;
        for (int t = 0; eng_row_split_claim(&sp, t % nth, &r0, &r1); t++) {
            ck_assert_int_eq(r0 % 16, 0);
            ck_assert(r1 % 16 == 0 || r1 == 800);
            got += r1 - r0;
        }
        ck_assert_int_eq(got, 800);
    }
}
END_TEST

/* The pool: every item of every job is done exactly once whichever threads take part; no job
 * function runs after eng_pool_run has returned; and the caller does not wait for a worker
 * that has not joined: with every worker held where it sleeps (in a signal handler, as a
 * descheduled thread would be), jobs finish on the caller alone, and the workers, let go,
 * skip the jobs that closed meanwhile and take part again. Holding the workers makes this
 * deterministic: counting one-item jobs that happened to finish before a sleeping worker woke
 * failed on a loaded machine, where the woken worker was put on the caller's CPU and ran first. */
struct pool_probe {
    atomic_int next, n_items, joined, late;
    atomic_bool returned;
    unsigned char done[512];
};
static void pool_probe_fn(void *arg, int ith, int nth) {
    struct pool_probe *j = arg;
    ck_assert_int_lt(ith, nth);
    if (atomic_load(&j->returned)) atomic_fetch_add(&j->late, 1);
    if (ith) atomic_fetch_add(&j->joined, 1);
    for (int i; (i = atomic_fetch_add(&j->next, 1)) < atomic_load(&j->n_items);) j->done[i]++;
    if (atomic_load(&j->returned)) atomic_fetch_add(&j->late, 1);
}
/* One job of n items; checks each was done once and nothing ran after the return. Returns
 * how many workers joined. */
static int probe_job(struct eng_pool *pool, int n) {
    struct pool_probe *j = calloc(1, sizeof(*j));
    ck_assert_ptr_nonnull(j);
    atomic_init(&j->n_items, n);
    eng_pool_run(pool, pool_probe_fn, j);
    atomic_store(&j->returned, true);
    for (int i = 0; i < n; i++) ck_assert_msg(j->done[i] == 1, "item %d of %d", i, n);
    int joined = atomic_load(&j->joined);
    ck_assert_int_eq(atomic_load(&j->late), 0);
    free(j);
    return joined;
}
/* The ids of this process's threads, at most max. */
static int thread_ids(pid_t *out, int max) {
    DIR *d = opendir("/proc/self/task");
    ck_assert_ptr_nonnull(d);
    int n = 0;
    for (struct dirent *e; (e = readdir(d)) && n < max;)
        if (atoi(e->d_name) > 0) out[n++] = (pid_t)atoi(e->d_name);
    closedir(d);
    return n;
}
/* The state letter of thread tid (/proc: 'S' sleeping, 'R' running, ...). */
static char thread_state(pid_t tid) {
    char path[64], buf[512];
    snprintf(path, sizeof(path), "/proc/self/task/%d/stat", (int)tid);
    FILE *f = fopen(path, "r");
    ck_assert_ptr_nonnull(f);
    size_t len = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[len] = 0;
    const char *p = strrchr(buf, ')');
    ck_assert_ptr_nonnull(p);
    return p[2];
}
static sem_t hold_sem;
static atomic_int n_held;
static void hold_here(int sig) {
    (void)sig;
    atomic_fetch_add(&n_held, 1);
    while (sem_wait(&hold_sem) != 0) {
    }
    atomic_fetch_sub(&n_held, 1);
}
START_TEST(pool_jobs_complete_without_late_workers) {
    struct sigaction sa = {.sa_handler = hold_here}, old;
    sigemptyset(&sa.sa_mask);
    ck_assert_int_eq(sigaction(SIGUSR1, &sa, &old), 0);
    ck_assert_int_eq(sem_init(&hold_sem, 0, 0), 0);
    for (int nth = 2; nth <= 4; nth++) {
        pid_t before[64], after[64], workers[4];
        int nb = thread_ids(before, 64);
        struct eng_pool *pool = eng_pool_new(nth, false);
        ck_assert_ptr_nonnull(pool);
        int na = thread_ids(after, 64), nw = 0;
        for (int a = 0; a < na; a++) {
            bool old_thread = false;
            for (int b = 0; b < nb; b++) old_thread |= after[a] == before[b];
            if (!old_thread && nw < 4) workers[nw++] = after[a];
        }
        ck_assert_int_eq(nw, nth - 1);
        /* all together, sometimes after the workers fell asleep */
        for (int k = 0; k < 600; k++) {
            if (k % 6 == 0) usleep(2000); /* the workers stop spinning and sleep */
            probe_job(pool, k % 3 == 0 ? 1 : 1 + (k * 37) % 512);
        }
        /* every worker asleep (state S: not inside the pool's mutex, which it holds only
         * running), then held in the signal handler */
        for (int w = 0; w < nw; w++) {
            for (int tries = 0; thread_state(workers[w]) != 'S'; tries++) {
                ck_assert_int_lt(tries, 10000);
                usleep(1000);
            }
            ck_assert_int_eq(syscall(SYS_tgkill, getpid(), workers[w], SIGUSR1), 0);
        }
        for (int tries = 0; atomic_load(&n_held) < nw; tries++) {
            ck_assert_int_lt(tries, 10000);
            usleep(1000);
        }
        /* the caller alone, without waiting (a pool that waited for the held workers would
         * never return: SIGALRM ends the run instead) */
        alarm(60);
        for (int k = 0; k < 50; k++) ck_assert_int_eq(probe_job(pool, 1 + (k * 53) % 512), 0);
        alarm(0);
        for (int w = 0; w < nw; w++) sem_post(&hold_sem);
        for (int tries = 0; atomic_load(&n_held) > 0; tries++) {
            ck_assert_int_lt(tries, 10000);
            usleep(1000);
        }
        /* let go: they skip the closed jobs and join new ones, once awake (jobs of many items
         * back to back for up to 30 s: a woken virtual CPU can take milliseconds) */
        int joined = 0;
        struct timespec t0, t;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        do {
            for (int k = 0; k < 100 && joined == 0; k++) joined += probe_job(pool, 512);
            clock_gettime(CLOCK_MONOTONIC, &t);
        } while (joined == 0 && t.tv_sec - t0.tv_sec < 30);
        ck_assert_int_gt(joined, 0);
        eng_pool_free(pool);
    }
    sem_destroy(&hold_sem);
    ck_assert_int_eq(sigaction(SIGUSR1, &old, NULL), 0);
}
END_TEST

START_TEST(axpy_matches_reference) {
    /* attention's weighted sum of values: the active kernel against the scalar one, with tails */
    rng_state = 31337;
    eng_axpy_fn axpy = eng_axpy_kernel();
    for (int n = 1; n <= 77; n += 19) {
        float x[80], y1[80], y2[80];
        for (int i = 0; i < n; i++) x[i] = frand(), y1[i] = y2[i] = frand();
        eng_axpy_ref(n, 0.37f, x, y1);
        axpy(n, 0.37f, x, y2);
        for (int i = 0; i < n; i++)
            ck_assert_msg(fabsf(y1[i] - y2[i]) <= 1e-6f, "n=%d [%d]: %g vs %g", n, i, y2[i], y1[i]);
    }
}
END_TEST

Suite *matmul_suite(void) {
    Suite *s = suite_create("matmul");
    TCase *tc = tcase_create("paths");
    tcase_set_timeout(tc, 120);
    tcase_add_loop_test(tc, quantized_paths_match_exact_product, 0,
                        (int)(sizeof(quantized) / sizeof(quantized[0])));
    tcase_add_test(tc, float_paths_match_exact_product);
    tcase_add_test(tc, single_thread_equals_two_threads);
    tcase_add_test(tc, row_split_claims_every_row_once);
    tcase_add_test(tc, tile_kernel_matches_reference);
    tcase_add_test(tc, fused_equals_separate);
    tcase_add_test(tc, fused_post);
    tcase_add_test(tc, interleaved_weights_match_file_layout);
    tcase_add_test(tc, axpy_matches_reference);
    tcase_add_test(tc, pool_jobs_complete_without_late_workers);
    suite_add_tcase(s, tc);
    return s;
}
