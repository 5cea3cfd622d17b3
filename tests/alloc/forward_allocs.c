/*
 * forward_allocs.c — the forward pass allocates nothing per token: malloc, calloc, realloc and
 * free are wrapped (glibc's __libc_* underneath) and counted around decode steps, a prefill
 * batch of each path (tile for quantized weights, sgemm for F16) and exit logits, after the
 * context exists. Any call during those is a failure.
 *
 * usage: forward_allocs MODEL.gguf...   (exit status 0 when no model's forward allocated)
 * Not built with sanitizers: they replace the allocator this counts.
 */
#include "engine.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void __libc_free(void *);

static atomic_long n_calls;
static atomic_bool counting;

void *malloc(size_t n) {
    if (atomic_load(&counting)) atomic_fetch_add(&n_calls, 1);
    return __libc_malloc(n);
}
void *calloc(size_t a, size_t b) {
    if (atomic_load(&counting)) atomic_fetch_add(&n_calls, 1);
    return __libc_calloc(a, b);
}
void *realloc(void *p, size_t n) {
    if (atomic_load(&counting)) atomic_fetch_add(&n_calls, 1);
    return __libc_realloc(p, n);
}
void free(void *p) {
    if (p && atomic_load(&counting)) atomic_fetch_add(&n_calls, 1);
    __libc_free(p);
}

static int check(const char *path) {
    struct eng_model *m = eng_model_load(path, NULL);
    if (!m) {
        fprintf(stderr, "forward_allocs: %s\n", eng_last_error());
        return 1;
    }
    struct eng_ctx_params p;
    eng_ctx_params_default(m, &p);
    p.n_slots = 2;
    p.n_ctx = 128;
    p.n_batch = 64;
    p.n_threads = 2;
    struct eng_ctx *c = eng_ctx_new(m, &p);
    int exits[1] = {0};
    if (!c || eng_ctx_set_exits(c, exits, 1)) {
        fprintf(stderr, "forward_allocs: %s\n", eng_last_error());
        return 1;
    }
    int32_t tok[64], pos[64], slot[64];
    int8_t out[64];
    struct eng_batch b = {.token = tok, .pos = pos, .slot = slot, .output = out};
    long total = 0;
    for (int round = 0; round < 2; round++) { /* round 0 warms up (first-use initialisation) */
        atomic_store(&n_calls, 0);
        atomic_store(&counting, round == 1);
        /* prefill 40 tokens in slot 0: the tile or sgemm path */
        b.n_tokens = 40;
        for (int t = 0; t < 40; t++)
            tok[t] = (t * 7 + 3) % 200, pos[t] = t, slot[t] = 0, out[t] = t == 39;
        int rc = eng_forward(c, &b);
        /* decode steps, two slots at once: the vec_dot path */
        for (int step = 0; step < 8 && rc == 0; step++) {
            b.n_tokens = 2;
            for (int s = 0; s < 2; s++)
                tok[s] = (step * 13 + s) % 200, pos[s] = 40 + step, slot[s] = s, out[s] = 1;
            rc = eng_forward(c, &b);
        }
        int32_t ids[3] = {1, 5, 9};
        float lg[3];
        if (rc == 0) rc = eng_exit_logits(c, 0, 0, ids, 3, lg);
        atomic_store(&counting, false);
        if (rc) {
            fprintf(stderr, "forward_allocs: %s: %s\n", path, eng_last_error());
            return 1;
        }
        total = atomic_load(&n_calls);
    }
    eng_ctx_free(c);
    eng_model_free(m);
    printf("%s %s: %ld allocator calls during forward passes\n", total ? "FAIL" : "ok  ", path,
           total);
    return total != 0;
}

int main(int argc, char **argv) {
    int fails = 0;
    for (int i = 1; i < argc; i++) fails += check(argv[i]);
    return argc < 2 ? 2 : fails != 0;
}
