/*
 * forward.c — the inference context and the transformer forward pass for llama, qwen2 and qwen3:
 * RMSNorm, RoPE (normal or NEOX pairing), causal GQA attention over per-slot KV caches, SwiGLU
 * FFN, exits (final norm + output head on any layer's hidden state).
 *
 * Legend for shapes: B tokens in the batch, E n_embd, Q n_head*head_dim, KV n_head_kv*head_dim,
 * F n_ff, V n_vocab, C n_ctx (positions per slot), S n_slots, L n_layer.
 *
 * All memory is allocated in eng_ctx_new; eng_forward allocates nothing. Matrix products go
 * through matmul(), which quantizes the activations to the weight's vec_dot type and splits the
 * weight rows across the pool. It does not tokenize, sample or schedule.
 */
#include "quants.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define ENG_MAX_EXITS 64

struct eng_ctx {
    const struct eng_model *m;
    struct eng_ctx_params p;
    struct eng_pool *pool;
    size_t mem_bytes;

    void *kv;         /* (S, NB, L, 2, KVH, KB, hd) key then value caches in blocks of KB
                       * positions (kv_at); aligned inside kv_mem (kv_alloc), so a head row's
                       * loads never straddle lines */
    void *kv_mem;     /* the allocation: kv_alloc's mapping or calloc block, zeroed */
    size_t kv_map;    /* its length when mapped by kv_alloc, 0 when from calloc */
    size_t kv_bytes;  /* the cache's size: every slot's blocks */
    size_t kv_elt;    /* bytes per cached value: 4 (f32) or 2 (fp16, p.kv_f16) */
    size_t kv_block;  /* KB: positions per cache block (p.kv_block, at most n_ctx) */
    size_t kv_blocks; /* NB: blocks per slot */
    void (*kv_from_float)(const float *x, void *y, int64_t n); /* fp16: F16's from_float */

    /* scratch, (B, ...) rows */
    float *x;               /* (B, E) residual stream */
    float *xb;              /* (B, E) normed input / projection output */
    float *q;               /* (B, Q) */
    float *k;               /* (B, KV) */
    float *v;               /* (B, KV) */
    float *att_out;         /* (B, Q) */
    float *hb;              /* (B, F) */
    float *hb2;             /* (B, F) */
    float *att;             /* (n_threads, C + hd) attention scores and a block's output */
    struct eng_mm_ws *mm;   /* matrix-product scratch (converted activations, weight chunks) */
    struct eng_vec_ops vec; /* RMSNorm and SwiGLU of the active level, set by each pass */
    float *rope_cos;        /* (C, n_rot/2) */
    float *rope_sin;        /* (C, n_rot/2) */

    /* outputs, (n_outputs, ...) */
    float *out_x;       /* (n_outputs, E) final-normed hidden of output tokens */
    float *logits;      /* (n_outputs, V) */
    float *logits_max;  /* (n_outputs, chunks of ENG_LOGITS_CHUNK) the logits' chunk maxima */
    bool logits_max_ok; /* ... taken by this pass */
    float *exits_h;     /* (ENG_MAX_EXITS, n_outputs, E) hidden states at exits */
    int *out_idx;       /* (n_outputs) batch index of each output */
    int n_out;

    void (*obs)(void *user, int layer, enum eng_obs_point point, const float *x, int n_rows,
                int n_cols);
    void *obs_user;

    int exits[ENG_MAX_EXITS];
    int n_exits;
    int last_layer;

    /* the current batch (valid during eng_forward) */
    const struct eng_batch *b;
    int n_tok;
};

/* ---- defaults ---- */

int eng_default_threads(void) {
    int n = eng_perf_cpus(NULL, 0);
    return n < 1 ? 1 : n;
}

void eng_ctx_params_default(const struct eng_model *m, struct eng_ctx_params *p) {
    p->n_slots = 1;
    p->n_ctx = ENG_MIN(m->hp.n_ctx_train, 4096);
    p->n_batch = 512;
    p->n_outputs = 0; /* = n_slots */
    p->n_threads = eng_default_threads();
    p->kv_f16 = false;
    p->pin_threads = true;
    p->kv_block = 0; /* ENG_KV_BLOCK */
}

/* ---- context ---- */

/* The KV cache: zeroed memory in 2 MiB pages where the kernel gives them (Linux transparent huge
 * pages, asked for with MADV_HUGEPAGE: the usual "madvise" setting gives none otherwise). A
 * head's rows are contiguous but every head starts a different 4 KiB page, so with small pages
 * each step's cache writes and attention reads missed the TLB page after page (the weight stream
 * in between evicts the entries): L110M Q4_0 4 sequences, kv_put's 96 row stores per layer took
 * 17.6 us. Falls back to calloc where mapping fails, and takes calloc in AddressSanitizer
 * builds, whose checks of the cache's bounds cover heap blocks, not mappings. */
#if defined(__SANITIZE_ADDRESS__)
#define KV_NO_MAP 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define KV_NO_MAP 1
#endif
#endif
#define KV_HUGE (2u << 20)
/* Returns the cache, 2 MiB aligned when mapped and 64-byte aligned from calloc; *base and
 * *mapped (0 for calloc) are what kv_release takes. */
static void *kv_alloc(size_t bytes, void **base, size_t *mapped) {
    *mapped = 0;
#if defined(MADV_HUGEPAGE) && defined(MAP_ANONYMOUS) && !defined(KV_NO_MAP)
    if (bytes <= SIZE_MAX - KV_HUGE) {
        size_t len = bytes + KV_HUGE;
        void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p != MAP_FAILED) {
            void *a = (void *)(((uintptr_t)p + KV_HUGE - 1) & ~(uintptr_t)(KV_HUGE - 1));
            (void)madvise(a, bytes, MADV_HUGEPAGE); /* advice: fine if refused */
            *base = p, *mapped = len;
            return a;
        }
    }
#endif
    if (!(*base = calloc(bytes + 64, 1))) return NULL;
    return (void *)(((uintptr_t)*base + 63) & ~(uintptr_t)63);
}

static void kv_release(void *base, size_t mapped) {
    if (mapped)
        munmap(base, mapped);
    else
        free(base);
}

static void rope_tables(struct eng_ctx *c) {
    const struct eng_hparams *hp = &c->m->hp;
    int half = hp->n_rot / 2;
    for (int pos = 0; pos < c->p.n_ctx; pos++) {
        for (int i = 0; i < half; i++) {
            double inv = pow((double)hp->rope_base, -2.0 * i / hp->n_rot);
            if (c->m->rope_freqs_f) inv /= c->m->rope_freqs_f[i];
            double theta = (double)pos * hp->rope_scale * inv;
            c->rope_cos[(size_t)pos * half + i] = (float)cos(theta);
            c->rope_sin[(size_t)pos * half + i] = (float)sin(theta);
        }
    }
}

struct eng_ctx *eng_ctx_new(const struct eng_model *m, const struct eng_ctx_params *params) {
    const struct eng_hparams *hp = &m->hp;
    struct eng_ctx_params p;
    eng_ctx_params_default(m, &p);
    if (params) p = *params;
    if (p.n_outputs <= 0) p.n_outputs = p.n_slots;
    if (p.n_slots < 1 || p.n_slots > 4096 || p.n_ctx < 1 || p.n_ctx > (1 << 22) || p.n_batch < 1 ||
        p.n_batch > 65536 || p.n_outputs > p.n_batch || p.n_threads < 1 || p.n_threads > 1024 ||
        p.kv_block < 0) {
        eng_fail(ENG_EINVAL,
                 "invalid context parameters (slots %d, ctx %d, batch %d, outputs %d, threads %d, "
                 "KV block %d)",
                 p.n_slots, p.n_ctx, p.n_batch, p.n_outputs, p.n_threads, p.kv_block);
        return NULL;
    }
    struct eng_ctx *c = calloc(1, sizeof(*c));
    if (!c) goto nomem;
    c->m = m;
    c->p = p;
    c->last_layer = hp->n_layer - 1;
    size_t E = (size_t)hp->n_embd, Q = (size_t)hp->n_head * hp->head_dim;
    size_t KV = (size_t)hp->n_head_kv * hp->head_dim, F = (size_t)hp->n_ff, V = (size_t)hp->n_vocab;
    size_t C = (size_t)p.n_ctx, B = (size_t)p.n_batch, O = (size_t)p.n_outputs;
    size_t half = (size_t)hp->n_rot / 2;

    c->kv_block = (size_t)ENG_MIN(p.kv_block > 0 ? p.kv_block : ENG_KV_BLOCK, p.n_ctx);
    c->kv_blocks = (C + c->kv_block - 1) / c->kv_block;
    size_t kv_floats = (size_t)p.n_slots * hp->n_layer * 2 * c->kv_blocks * c->kv_block * KV;
    size_t n_floats = B * (2 * E + Q + 2 * KV + Q + 2 * F) +
                      (size_t)p.n_threads * (C + (size_t)hp->head_dim) + 2 * C * half +
                      O * (E + V + (size_t)eng_logit_chunks(V)) + (size_t)ENG_MAX_EXITS * O * E;
    int64_t max_in = ENG_MAX(m->output->ne[0], (int64_t)Q);
    for (int l = 0; l < hp->n_layer; l++) max_in = ENG_MAX(max_in, m->layers[l].w_down->ne[0]);
    c->mm = eng_mm_ws_new(ENG_MAX(max_in, (int64_t)E), p.n_batch, p.n_threads);
    c->kv_elt = p.kv_f16 ? sizeof(uint16_t) : sizeof(float);
    c->kv_from_float = p.kv_f16 ? eng_type_traits(ENG_TYPE_F16)->from_float : NULL;
    c->mem_bytes = kv_floats * c->kv_elt + n_floats * sizeof(float) + O * sizeof(int) +
                   (c->mm ? eng_mm_ws_bytes(c->mm) : 0);
    if (kv_floats > (SIZE_MAX - 64) / c->kv_elt) goto nomem;
    c->kv_bytes = kv_floats * c->kv_elt;
    c->kv = kv_alloc(c->kv_bytes, &c->kv_mem, &c->kv_map);
    /* 64-byte aligned like the KV cache: large mallocs start 16 bytes into a page, and a 64-byte
     * vector load that crosses a cache line costs two */
    float *s = aligned_alloc(64, (n_floats * sizeof(float) + 63) / 64 * 64);
    c->out_idx = malloc(O * sizeof(int));
    if (!c->kv || !s || !c->mm || !c->out_idx) {
        free(s);
        goto nomem;
    }
    c->x = s, s += B * E;
    c->xb = s, s += B * E;
    c->q = s, s += B * Q;
    c->k = s, s += B * KV;
    c->v = s, s += B * KV;
    c->att_out = s, s += B * Q;
    c->hb = s, s += B * F;
    c->hb2 = s, s += B * F;
    c->att = s, s += (size_t)p.n_threads * (C + (size_t)hp->head_dim);
    c->rope_cos = s, s += C * half;
    c->rope_sin = s, s += C * half;
    c->out_x = s, s += O * E;
    c->logits = s, s += O * V;
    c->logits_max = s, s += O * (size_t)eng_logit_chunks(V);
    c->exits_h = s;
    rope_tables(c);
    c->pool = eng_pool_new(p.n_threads, p.pin_threads);
    if (!c->pool) goto nomem;
    return c;
nomem:
    eng_ctx_free(c);
    eng_fail(ENG_ENOMEM, "out of memory for the context (KV cache for %d slots x %d positions)",
             p.n_slots, p.n_ctx);
    return NULL;
}

void eng_ctx_free(struct eng_ctx *c) {
    if (!c) return;
    eng_pool_free(c->pool);
    kv_release(c->kv_mem, c->kv_map);
    free(c->x); /* start of the scratch allocation */
    eng_mm_ws_free(c->mm);
    free(c->out_idx);
    free(c);
}

const struct eng_ctx_params *eng_ctx_get_params(const struct eng_ctx *c) {
    return &c->p;
}
const struct eng_model *eng_ctx_model(const struct eng_ctx *c) {
    return c->m;
}
int eng_ctx_cpus(const struct eng_ctx *c, int *cpus, int max) {
    return eng_pool_cpus(c->pool, cpus, max);
}
bool eng_ctx_defer(struct eng_ctx *c, struct eng_deferred *d) {
    return eng_pool_defer(c->pool, d);
}
bool eng_ctx_defer_cancel(struct eng_ctx *c) {
    return eng_pool_defer_cancel(c->pool);
}

size_t eng_ctx_memory_bytes(const struct eng_ctx *c) {
    return c->mem_bytes;
}

int eng_ctx_set_exits(struct eng_ctx *c, const int *layers, int n_exits) {
    if (n_exits < 0 || n_exits > ENG_MAX_EXITS)
        return eng_fail(ENG_EINVAL, "at most %d exits", ENG_MAX_EXITS);
    for (int i = 0; i < n_exits; i++)
        if (layers[i] < 0 || layers[i] >= c->m->hp.n_layer)
            return eng_fail(ENG_ERANGE, "exit layer %d is outside 0..%d", layers[i],
                            c->m->hp.n_layer - 1);
    memcpy(c->exits, layers, (size_t)n_exits * sizeof(int));
    c->n_exits = n_exits;
    return 0;
}

int eng_ctx_set_last_layer(struct eng_ctx *c, int last_layer) {
    if (last_layer < 0 || last_layer >= c->m->hp.n_layer)
        return eng_fail(ENG_ERANGE, "last layer %d is outside 0..%d", last_layer,
                        c->m->hp.n_layer - 1);
    c->last_layer = last_layer;
    return 0;
}

void eng_ctx_set_observer(struct eng_ctx *c,
                          void (*fn)(void *user, int layer, enum eng_obs_point point,
                                     const float *x, int n_rows, int n_cols),
                          void *user) {
    c->obs = fn;
    c->obs_user = user;
}

/* Row pos of key/value head g in a slot's cache. A slot's cache is cut into blocks of kv_block
 * positions, each holding every layer's heads for those positions, and within a block each
 * head's rows are contiguous, so attention streams them in order (a block at a time). With each
 * head's n_ctx rows in one run instead, a short sequence touched the start of every run, so
 * every slot a request used committed all of its cache, zeroed 2 MiB page by page while the
 * request waited: edgellmd (L110M Q4_0, 8 slots of 2048 positions, fp16), after three requests of
 * four 128-token streams, RSS 377 -> 129 MiB; the first such request after start, time to first
 * token 327-360 -> 60-85 ms and 879-953 -> 1582-1706 tok/s. Requests on slots already touched
 * ran even (traced q/k/v products and stores over 20 requests; two daemons alternated). */
static void *kv_at(const struct eng_ctx *c, int slot, int layer, int which, int g, int pos) {
    const struct eng_hparams *hp = &c->m->hp;
    size_t hd = (size_t)hp->head_dim, blk = (size_t)pos / c->kv_block;
    size_t head =
        ((((size_t)slot * c->kv_blocks + blk) * hp->n_layer + layer) * 2 + which) * hp->n_head_kv +
        g;
    return (uint8_t *)c->kv + (head * c->kv_block + (size_t)pos % c->kv_block) * hd * c->kv_elt;
}

const void *eng_kv_cache(const struct eng_ctx *c, size_t *bytes) {
    *bytes = c->kv_bytes;
    return c->kv;
}

size_t eng_kv_row_offset(const struct eng_ctx *c, int slot, int layer, int which, int g, int pos) {
    return (size_t)((const uint8_t *)kv_at(c, slot, layer, which, g, pos) - (const uint8_t *)c->kv);
}

/* Stores one key or value row of hd floats at its cache row (fp16: rounded to nearest even by
 * the F16 type's from_float, F16C or NEON where the level has it). */
static void kv_put(const struct eng_ctx *c, void *dst, const float *x, int hd) {
    if (c->kv_from_float)
        c->kv_from_float(x, dst, hd);
    else
        memcpy(dst, x, (size_t)hd * sizeof(float));
}

int eng_slot_copy(struct eng_ctx *c, int dst, int src, int n_pos) {
    if (dst < 0 || dst >= c->p.n_slots || src < 0 || src >= c->p.n_slots || n_pos < 0 ||
        n_pos > c->p.n_ctx)
        return eng_fail(ENG_ERANGE, "slot copy %d -> %d of %d positions is out of range", src, dst,
                        n_pos);
    if (dst == src || n_pos == 0) return 0;
    const struct eng_hparams *hp = &c->m->hp;
    for (int p0 = 0; p0 < n_pos; p0 += (int)c->kv_block) {
        const size_t rows = (size_t)ENG_MIN((int)c->kv_block, n_pos - p0);
        for (int l = 0; l < hp->n_layer; l++)
            for (int w = 0; w < 2; w++)
                for (int g = 0; g < hp->n_head_kv; g++)
                    memcpy(kv_at(c, dst, l, w, g, p0), kv_at(c, src, l, w, g, p0),
                           rows * hp->head_dim * c->kv_elt);
    }
    return 0;
}

/* A prefetch for writing (GCC emits nothing for __builtin_prefetch(p, 1, ...) on x86-64 without
 * -mprfchw; prefetchw is a no-op on the few x86-64 CPUs without it). */
static inline void prefetch_for_write(const char *p) {
#if defined(__x86_64__)
    __asm__ __volatile__("prefetchw %0" : : "m"(*p));
#else
    __builtin_prefetch(p, 1, 3);
#endif
}

/* Asks for the cache rows that layer l's new keys and values go to, for writing, before the
 * layer's products: the rows lie past everything attention has read, so they are not in cache,
 * and kv_put's stores each waited for its line to arrive: L110M Q4_0, 4 sequences, with the
 * stores on the calling thread, f16_from_float 2.6% of the samples, 0.8% with the prefetch.
 * Since the stores moved into the q/k/v product's post step (qkv_post), on whichever thread
 * computed the head, the prefetch is even (2283.0 tok/s with it, 2262.9 without, 5 of 10
 * alternated rounds). Decode-sized batches only: a prefill's rows would not stay in cache
 * until they are written.
 * Tried: prefetching the rows attention is about to read during the products before it, each
 * thread those of its share of the work items, in step with the rows it had computed (edgellm
 * bench, L110M Q4_0, 2 threads, four sequences, tg128, -r 3, two rounds alternated with the
 * build without). From the q/k/v post step: 2697.0 and 2723.0 against 2814.8 and 2762.1 tok/s.
 * A few lines after every 64 rows of the product: 2561.9 and 2539.4 against 2703.4 and 2678.6;
 * spread over the layer before's gate/up and down products as well: 2490.6 and 2319.4.
 * Attention fell from 11% of the samples to 7-8% (perf), but the prefetching took 3.5-5%, its
 * samples on the instruction after each prefetch: the prefetches wait for free miss buffers,
 * which the products' weight stream and the cache rows share. */
#define KV_PREFETCH_MAX_TOKENS 16
static void kv_prefetch_rows(const struct eng_ctx *c, const struct eng_batch *b, int l) {
    const struct eng_hparams *hp = &c->m->hp;
    const size_t bytes = (size_t)hp->head_dim * c->kv_elt;
    if (b->n_tokens > KV_PREFETCH_MAX_TOKENS) return;
    for (int t = 0; t < b->n_tokens; t++) {
        int pos = b->pos ? b->pos[t] : t, slot = b->slot ? b->slot[t] : 0;
        for (int w = 0; w < 2; w++)
            for (int g = 0; g < hp->n_head_kv; g++) {
                const char *row = kv_at(c, slot, l, w, g, pos);
                for (size_t k = 0; k < bytes; k += 64) prefetch_for_write(row + k);
            }
    }
}

/* ---- kernels of the pass ---- */

/* y += x (the residual adds): in runs of eight, which the compiler turns into vector adds at -O2
 * (a plain loop over y and x stays scalar there, and it runs on the calling thread alone).
 * Tried: the adds as the products' post steps (each thread adding the rows it has just computed)
 * and the norms after them inside the next products (each thread normalizing the rows before
 * converting them), so that the calling thread does neither between the jobs. L110M Q4_0, 2
 * threads, edgellm bench tg128 alternated with the build before: four sequences 0.989 (faster
 * in 4 of 10 rounds), one 1.007 (6 of 10). By rdtsc with four sequences (two runs of each
 * build), the time between a layer's jobs fell from 13.5-14.5 to 7.6-7.7 thousand cycles and
 * the jobs grew by 6.2 and 13.1 thousand (the output product, whose post step did the first
 * add, by 5.3-5.7 thousand in both): the rows cross from one core to the other within the jobs
 * instead of between them. With the norms alone moved, the adds took what the adds and norms
 * had taken together. */
static void add_to(float *restrict y, const float *restrict x, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int k = 0; k < 8; k++) y[i + k] += x[i + k];
    for (; i < n; i++) y[i] += x[i];
}

/* out = x / rms(x) * w, n elements. out may alias x. */
static void rmsnorm(const struct eng_ctx *c, float *out, const float *x, const float *w, int n,
                    float eps) {
    c->vec.rmsnorm(out, x, w, n, eps);
}

/* The output head's post step: the maxima of the logits rows [r0, r1) (whole chunks: the claims
 * are multiples of ENG_LOGITS_CHUNK) of every output, taken while the thread that computed them
 * has them in its cache (eng_logits_chunk_max). */
static void logits_max(void *arg, int part, int64_t r0, int64_t r1) {
    struct eng_ctx *c = arg;
    const int64_t V = c->m->hp.n_vocab;
    const size_t nc = (size_t)eng_logit_chunks(V);
    (void)part;
    for (int i = 0; i < c->n_out; i++)
        for (int64_t r = r0; r < r1; r += ENG_LOGITS_CHUNK)
            c->logits_max[(size_t)i * nc + (size_t)(r / ENG_LOGITS_CHUNK)] =
                c->vec.max(NULL, c->logits + (size_t)i * V + r, ENG_MIN(ENG_LOGITS_CHUNK, r1 - r));
}

/* y (B, out) = x (B, in) · Wᵀ on the context's pool and conversion buffer. */
static void matmul(struct eng_ctx *c, const struct eng_tensor *w, const float *x, int B, float *y) {
    eng_matmul(c->pool, c->mm, w, x, B, y, w->ne[1], NULL, 0);
}

/* Rotates the first n_rot dims of each of n_heads heads (head_dim apart) at position pos. The
 * pairs go in runs of eight, which the compiler turns into vector code at -O2; the plain loop,
 * with the layout chosen per pair, stayed scalar, on the calling thread while the others wait
 * for the attention job (L110M Q4_0 4 sequences: 6.5 us a layer, rope 0.8% of the samples, 0.3%
 * in runs). Each value is the same products and sum as before. */
static void rope_pairs(float *restrict x, const float *restrict cs, const float *restrict sn,
                       int half) { /* (x[2i], x[2i + 1]) */
    int i = 0;
    for (; i + 8 <= half; i += 8) {
        float *restrict xi = x + 2 * i;
        const float *restrict c8 = cs + i, *restrict s8 = sn + i;
        for (int k = 0; k < 8; k++) {
            float a = xi[2 * k], b = xi[2 * k + 1];
            xi[2 * k] = a * c8[k] - b * s8[k];
            xi[2 * k + 1] = a * s8[k] + b * c8[k];
        }
    }
    for (; i < half; i++) {
        float a = x[2 * i], b = x[2 * i + 1];
        x[2 * i] = a * cs[i] - b * sn[i];
        x[2 * i + 1] = a * sn[i] + b * cs[i];
    }
}

static void rope_halves(float *restrict x, float *restrict y, const float *restrict cs,
                        const float *restrict sn, int half) { /* (x[i], y[i] = x[i + half]) */
    int i = 0;
    for (; i + 8 <= half; i += 8)
        for (int k = 0; k < 8; k++) {
            float a = x[i + k], b = y[i + k];
            x[i + k] = a * cs[i + k] - b * sn[i + k];
            y[i + k] = a * sn[i + k] + b * cs[i + k];
        }
    for (; i < half; i++) {
        float a = x[i], b = y[i];
        x[i] = a * cs[i] - b * sn[i];
        y[i] = a * sn[i] + b * cs[i];
    }
}

static void rope(const struct eng_ctx *c, float *v, int n_heads, int pos) {
    const struct eng_hparams *hp = &c->m->hp;
    int half = hp->n_rot / 2;
    const float *cs = c->rope_cos + (size_t)pos * half, *sn = c->rope_sin + (size_t)pos * half;
    for (int h = 0; h < n_heads; h++) {
        float *x = v + (size_t)h * hp->head_dim;
        if (hp->rope_mode == ENG_ROPE_NORM)
            rope_pairs(x, cs, sn, half);
        else
            rope_halves(x, x + half, cs, sn, half);
    }
}

/* What comes between the q/k/v products and attention, for heads [h0, h1) of part (0 q, 1 k,
 * 2 v) and every token of the batch: the biases, the q / k norms, rope, and the keys' and values'
 * cache rows. Each head's values get the same operations in the same order whichever heads are
 * done together. */
static void qkv_heads(struct eng_ctx *c, int l, int part, int h0, int h1) {
    const struct eng_hparams *hp = &c->m->hp;
    const struct eng_layer_f *lf = &c->m->lf[l];
    const struct eng_batch *b = c->b;
    const int hd = hp->head_dim;
    const size_t width = (size_t)(part == 0 ? hp->n_head : hp->n_head_kv) * hd;
    const size_t n = (size_t)(h1 - h0) * hd;
    float *base = part == 0 ? c->q : part == 1 ? c->k : c->v;
    const float *bias = part == 0 ? lf->bq : part == 1 ? lf->bk : lf->bv;
    const float *norm = part == 0 ? lf->q_norm : part == 1 ? lf->k_norm : NULL;
    if (bias) bias += (size_t)h0 * hd;
    for (int t = 0; t < c->n_tok; t++) {
        float *x = base + (size_t)t * width + (size_t)h0 * hd;
        if (bias)
            for (size_t i = 0; i < n; i++) x[i] += bias[i];
        if (norm)
            for (int h = 0; h < h1 - h0; h++)
                rmsnorm(c, x + (size_t)h * hd, x + (size_t)h * hd, norm, hd, hp->rms_eps);
        int pos = b->pos ? b->pos[t] : t, slot = b->slot ? b->slot[t] : 0;
        if (part < 2) rope(c, x, h1 - h0, pos);
        if (part > 0)
            for (int g = h0; g < h1; g++)
                kv_put(c, kv_at(c, slot, l, part - 1, g, pos), x + (size_t)(g - h0) * hd, hd);
    }
}

/* qkv_heads as the fused q/k/v product's post step (claims then cover whole heads): each thread
 * finishes the heads whose rows it has just computed, while they are in its cache, in parallel
 * with the others. On the calling thread after the product, this work read the rows the other
 * threads had computed from their caches while they waited: L110M Q4_0, 4 sequences, 7.8 us a
 * layer of a 95 us layer (rdtsc around the loop). With it and convert_private (matmul.c), the
 * time between a layer's jobs fell from 13% of a step to 4% (rdtsc around every job), and
 * edgellm bench, four sequences, builds alternated: 2245.1 -> 2279.0 tok/s (6 of 10 rounds). */
struct qkv_post {
    struct eng_ctx *c;
    int layer;
};
static void qkv_post(void *arg, int part, int64_t r0, int64_t r1) {
    const struct qkv_post *p = arg;
    const int hd = p->c->m->hp.head_dim;
    qkv_heads(p->c, p->layer, part, (int)(r0 / hd), (int)((r1 + hd - 1) / hd));
}

struct attn_job {
    struct eng_ctx *c;
    int layer;
    eng_attn_fn attn;
    struct eng_row_split items; /* the work items, one per claim (eng_item_split_init) */
};

/* Query heads per work item: the heads of one item share a key/value head, so its cached rows
 * are read from memory once and then from cache; items of up to this many heads keep enough of
 * them to spread over the pool when a model has few key/value heads. */
#define ATTN_HEADS_PER_ITEM 4

/* Work items per key/value head: its query heads in items of up to ATTN_HEADS_PER_ITEM. */
static int attn_items_per_kv(const struct eng_hparams *hp) {
    return (hp->n_head / hp->n_head_kv + ATTN_HEADS_PER_ITEM - 1) / ATTN_HEADS_PER_ITEM;
}

/* out = attention of query q over positions [0, n) of key/value head g: one kernel call per cache
 * block, the blocks' results merged by their softmax denominators (the kernels return their
 * logs): out = Σ_b e^(lse_b - lse) · out_b with lse = log Σ_b e^(lse_b), taken block by block.
 * A sequence within one block (kv_block positions, 256 by default) is one call, as before the
 * blocks. att: the thread's n_ctx scores and hd floats for a block's output. */
static void attend(const struct eng_ctx *c, eng_attn_fn attn, int slot, int layer, int g, int n,
                   const float *q, float scale, float *att, float *out) {
    const int hd = c->m->hp.head_dim, kb = (int)c->kv_block;
    const bool f16 = c->p.kv_f16;
    float lse = attn(hd, ENG_MIN(n, kb), q, kv_at(c, slot, layer, 0, g, 0),
                     kv_at(c, slot, layer, 1, g, 0), (size_t)hd, f16, scale, att, out);
    float *ob = att + c->p.n_ctx;
    for (int p0 = kb; p0 < n; p0 += kb) {
        const float lb = attn(hd, ENG_MIN(n - p0, kb), q, kv_at(c, slot, layer, 0, g, p0),
                              kv_at(c, slot, layer, 1, g, p0), (size_t)hd, f16, scale, att, ob);
        const float m = fmaxf(lse, lb), wa = expf(lse - m), wb = expf(lb - m),
                    inv = 1.0f / (wa + wb);
        for (int i = 0; i < hd; i++) out[i] = (wa * out[i] + wb * ob[i]) * inv;
        lse = m + logf(wa + wb);
    }
}

/* att_out[b, h] = softmax(q[b,h] · K[slot(b), 0..pos(b)] / sqrt(hd)) · V, split over tokens
 * and key/value heads. The items are split like a product's rows (eng_item_split_init), one at
 * a time: each thread claims from its own share, then from the back of another's, so prefill's
 * longer rows spread evenly and a thread the OS takes off its core (a daemon's loop thread or a
 * client sharing the cores) holds up at most the item it is on. Items handed out from a counter
 * shared by every thread pulled the counter's cache line over from the other core at each claim
 * (144 claims a pass for one L110M sequence, 576 for four); against that (edgellm bench, 2
 * threads, builds alternated):
 * L110M Q4_0 four sequences 1816.2 -> 1912.4 tok/s (7 of 8 rounds) and 1787.8 -> 1956.9 (6 of
 * 6), one sequence 980.2 -> 1026.4 (4 of 6); L1B four sequences and L110M pp512 even.
 * Tried: attention inside the q/k/v product's job, with no job and no wait of its own: claims
 * of whole key/value heads (a head's q, k and v rows, their post steps, then its attention for
 * every token). Against the build before (edgellm bench, L110M Q4_0, 2 threads, tg128, builds
 * alternated): one head per claim four sequences 0.961 (faster in 1 of 8 rounds), one 0.945 (0
 * of 6); a thread's whole share in one claim even (2042.0 and 2087.2 against 2073.1 and 2083.9
 * tok/s). */
static void attention(void *arg, int ith, int nth) {
    struct attn_job *j = arg;
    struct eng_ctx *c = j->c;
    const struct eng_hparams *hp = &c->m->hp;
    const struct eng_batch *b = c->b;
    int hd = hp->head_dim, n_head = hp->n_head, group = hp->n_head / hp->n_head_kv;
    int per_kv = attn_items_per_kv(hp), per_tok = hp->n_head_kv * per_kv;
    size_t Q = (size_t)n_head * hd;
    float scale = 1.0f / sqrtf((float)hd);
    float *att = c->att + (size_t)ith * ((size_t)c->p.n_ctx + (size_t)hd);
    (void)nth;
    int64_t i0, i1;
    while (eng_row_split_claim(&j->items, ith, &i0, &i1))
        for (int task = (int)i0; task < (int)i1; task++) {
            int t = task / per_tok, g = task % per_tok / per_kv, sub = task % per_kv;
            int slot = b->slot ? b->slot[t] : 0;
            int pos = b->pos ? b->pos[t] : t;
            int h0 = g * group + sub * ATTN_HEADS_PER_ITEM;
            int h1 = ENG_MIN(g * group + group, h0 + ATTN_HEADS_PER_ITEM);
            for (int h = h0; h < h1; h++)
                attend(c, j->attn, slot, j->layer, g, pos + 1,
                       c->q + (size_t)t * Q + (size_t)h * hd, scale, att,
                       c->att_out + (size_t)t * Q + (size_t)h * hd);
        }
}

/* g = silu(g) * u over n elements, split across the pool (prefill: B·F elements per layer). */
struct glu_job {
    eng_glu_fn glu;
    float *g;
    const float *u;
    int64_t n;
    atomic_llong next; /* first element of the next unclaimed chunk */
};
#define GLU_CHUNK 4096
static void glu_rows(void *arg, int ith, int nth) {
    struct glu_job *j = arg;
    (void)ith, (void)nth;
    for (int64_t a;
         (a = atomic_fetch_add_explicit(&j->next, GLU_CHUNK, memory_order_relaxed)) < j->n;) {
        int64_t b = ENG_MIN(j->n, a + GLU_CHUNK);
        j->glu(j->g + a, j->u + a, b - a);
    }
}

static int validate_batch(const struct eng_ctx *c, const struct eng_batch *b, int *n_out) {
    if (!b || b->n_tokens < 1 || b->n_tokens > c->p.n_batch || !b->token)
        return eng_fail(ENG_EINVAL, "batch of %d tokens (1..%d allowed)", b ? b->n_tokens : 0,
                        c->p.n_batch);
    int outs = 0;
    for (int t = 0; t < b->n_tokens; t++) {
        if (b->token[t] < 0 || b->token[t] >= c->m->hp.n_vocab)
            return eng_fail(ENG_ERANGE, "token id %d is outside the vocabulary (0..%d)",
                            b->token[t], c->m->hp.n_vocab - 1);
        int pos = b->pos ? b->pos[t] : t;
        if (pos < 0 || pos >= c->p.n_ctx)
            return eng_fail(ENG_ERANGE, "position %d is outside the context (0..%d)", pos,
                            c->p.n_ctx - 1);
        int slot = b->slot ? b->slot[t] : 0;
        if (slot < 0 || slot >= c->p.n_slots)
            return eng_fail(ENG_ERANGE, "slot %d is outside 0..%d", slot, c->p.n_slots - 1);
        if (b->output ? b->output[t] != 0 : t == b->n_tokens - 1) outs++;
    }
    if (outs > c->p.n_outputs)
        return eng_fail(ENG_ERANGE, "%d outputs requested, the context holds %d", outs,
                        c->p.n_outputs);
    if (b->first_layer < 0 || b->first_layer > c->last_layer)
        return eng_fail(ENG_ERANGE, "first layer %d is outside 0..%d", b->first_layer,
                        c->last_layer);
    if (b->first_layer > 0 && !b->embd)
        return eng_fail(ENG_EINVAL, "a batch starting at layer %d needs its hidden states",
                        b->first_layer);
    *n_out = outs;
    return 0;
}

int eng_forward(struct eng_ctx *c, const struct eng_batch *b) {
    int n_out, err;
    if ((err = validate_batch(c, b, &n_out))) return err;
    const struct eng_model *m = c->m;
    const struct eng_hparams *hp = &m->hp;
    const int B = b->n_tokens, E = hp->n_embd, hd = hp->head_dim;
    const size_t Q = (size_t)hp->n_head * hd, F = (size_t)hp->n_ff;
    c->b = b;
    c->vec = eng_vec_ops();
    c->logits_max_ok = false;
    c->n_tok = B;
    c->n_out = 0;
    for (int t = 0; t < B; t++)
        if (b->output ? b->output[t] != 0 : t == B - 1) c->out_idx[c->n_out++] = t;

    if (b->embd)
        memcpy(c->x, b->embd, (size_t)B * E * sizeof(float));
    else
        for (int t = 0; t < B; t++)
            eng_tensor_row_f32(m->tok_embd, b->token[t], c->x + (size_t)t * E);

#define OBSERVE(layer, point, x, rows, cols)                                                       \
    do {                                                                                           \
        if (c->obs) c->obs(c->obs_user, layer, point, x, rows, (int)(cols));                       \
    } while (0)

    for (int l = b->first_layer; l <= c->last_layer; l++) {
        const struct eng_layer *ly = &m->layers[l];
        const struct eng_layer_f *lf = &m->lf[l];

        /* attention */
        kv_prefetch_rows(c, b, l);
        for (int t = 0; t < B; t++)
            rmsnorm(c, c->xb + (size_t)t * E, c->x + (size_t)t * E, lf->attn_norm, E, hp->rms_eps);
        OBSERVE(l, ENG_OBS_ATTN_IN, c->xb, B, E);
        const struct eng_tensor *qkv[3] = {ly->wq, ly->wk, ly->wv};
        float *qkv_out[3] = {c->q, c->k, c->v};
        struct qkv_post qp = {c, l};
        const struct eng_fused_post post = {qkv_post, &qp, hd};
        if (!eng_matmul_fused(c->pool, c->mm, 3, qkv, c->xb, B, qkv_out, false, &post)) {
            matmul(c, ly->wq, c->xb, B, c->q);
            matmul(c, ly->wk, c->xb, B, c->k);
            matmul(c, ly->wv, c->xb, B, c->v);
            qkv_heads(c, l, 0, 0, hp->n_head);
            qkv_heads(c, l, 1, 0, hp->n_head_kv);
            qkv_heads(c, l, 2, 0, hp->n_head_kv);
        }
        struct attn_job aj = {.c = c, .layer = l, .attn = eng_attn_kernel()};
        eng_item_split_init(&aj.items, (int64_t)B * hp->n_head_kv * attn_items_per_kv(hp),
                            eng_pool_size(c->pool));
        eng_pool_run(c->pool, attention, &aj);
        OBSERVE(l, ENG_OBS_ATTN_OUT_IN, c->att_out, B, Q);
        matmul(c, ly->wo, c->att_out, B, c->xb);
        add_to(c->x, c->xb, (size_t)B * E);

        /* feed-forward */
        for (int t = 0; t < B; t++)
            rmsnorm(c, c->xb + (size_t)t * E, c->x + (size_t)t * E, lf->ffn_norm, E, hp->rms_eps);
        OBSERVE(l, ENG_OBS_FFN_IN, c->xb, B, E);
        const struct eng_tensor *gu[2] = {ly->w_gate, ly->w_up};
        float *gu_out[2] = {c->hb, c->hb2};
        if (!eng_matmul_fused(c->pool, c->mm, 2, gu, c->xb, B, gu_out, true, NULL)) {
            matmul(c, ly->w_gate, c->xb, B, c->hb);
            matmul(c, ly->w_up, c->xb, B, c->hb2);
            struct glu_job gj = {c->vec.glu, c->hb, c->hb2, (int64_t)B * (int64_t)F, 0};
            eng_pool_run(c->pool, glu_rows, &gj);
        }
        OBSERVE(l, ENG_OBS_FFN_DOWN_IN, c->hb, B, F);
        matmul(c, ly->w_down, c->hb, B, c->xb);
        add_to(c->x, c->xb, (size_t)B * E);
        OBSERVE(l, ENG_OBS_LAYER_OUT, c->x, B, E);

        for (int e = 0; e < c->n_exits; e++) {
            if (c->exits[e] != l) continue;
            for (int i = 0; i < c->n_out; i++)
                memcpy(c->exits_h + ((size_t)e * c->p.n_outputs + i) * E,
                       c->x + (size_t)c->out_idx[i] * E, (size_t)E * sizeof(float));
        }
    }

    for (int i = 0; i < c->n_out; i++)
        rmsnorm(c, c->out_x + (size_t)i * E, c->x + (size_t)c->out_idx[i] * E, m->output_norm_f, E,
                hp->rms_eps);
    if (c->n_out > 0) {
        OBSERVE(-1, ENG_OBS_OUTPUT_IN, c->out_x, c->n_out, E);
        const struct eng_tensor *head = m->output;
        float *y = c->logits;
        struct eng_fused_post post = {logits_max, c, ENG_LOGITS_CHUNK};
        c->logits_max_ok = b->logits_max && eng_matmul_fused(c->pool, c->mm, 1, &head, c->out_x,
                                                             c->n_out, &y, false, &post);
        if (!c->logits_max_ok) matmul(c, m->output, c->out_x, c->n_out, c->logits);
    }
#undef OBSERVE
    c->b = NULL;
    return 0;
}

int eng_n_outputs(const struct eng_ctx *c) {
    return c->n_out;
}

const float *eng_logits(const struct eng_ctx *c, int i) {
    if (i < 0 || i >= c->n_out) return NULL;
    return c->logits + (size_t)i * c->m->hp.n_vocab;
}

const float *eng_logits_chunk_max(const struct eng_ctx *c, int i) {
    if (i < 0 || i >= c->n_out || !c->logits_max_ok) return NULL;
    return c->logits_max + (size_t)i * (size_t)eng_logit_chunks(c->m->hp.n_vocab);
}

int eng_output_token_index(const struct eng_ctx *c, int i) {
    return i >= 0 && i < c->n_out ? c->out_idx[i] : -1;
}

const float *eng_exit_hidden(const struct eng_ctx *c, int e, int i) {
    if (e < 0 || e >= c->n_exits || i < 0 || i >= c->n_out) return NULL;
    return c->exits_h + ((size_t)e * c->p.n_outputs + i) * c->m->hp.n_embd;
}

int eng_exit_logits(struct eng_ctx *c, int e, int i, const int32_t *ids, int n_ids, float *out) {
    const float *h = eng_exit_hidden(c, e, i);
    if (!h) return eng_fail(ENG_ERANGE, "exit %d / output %d does not exist", e, i);
    const struct eng_model *m = c->m;
    int E = m->hp.n_embd;
    for (int k = 0; k < n_ids; k++)
        if (ids[k] < 0 || ids[k] >= m->hp.n_vocab)
            return eng_fail(ENG_ERANGE, "token id %d is outside the vocabulary", ids[k]);
    /* c->xb row 0 is free between forward calls. */
    c->vec = eng_vec_ops();
    rmsnorm(c, c->xb, h, m->output_norm_f, E, m->hp.rms_eps);
    if (n_ids > 0)
        eng_matmul(c->pool, c->mm, m->output, c->xb, 1, out, n_ids, ids, n_ids);
    else
        matmul(c, m->output, c->xb, 1, out);
    return 0;
}
