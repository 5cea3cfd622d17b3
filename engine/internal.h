/*
 * internal.h — declarations shared between engine/ files and not part of the public API:
 * the model's weight views, the thread pool, the matrix kernels' entry points.
 */
#ifndef EDGELLM_ENGINE_INTERNAL_H
#define EDGELLM_ENGINE_INTERNAL_H

#include "engine.h"

#include <stdatomic.h>

#define ENG_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define ENG_MIN(a, b)    ((a) < (b) ? (a) : (b))
#define ENG_MAX(a, b)    ((a) > (b) ? (a) : (b))

/* ---- blocks of the formats implemented in types.c (the kernels add the others) ---- */
#define ENG_QK8_0 32
struct eng_block_q8_0 {
    uint16_t d;           /* fp16 scale */
    int8_t qs[ENG_QK8_0]; /* x = d * q */
};
_Static_assert(sizeof(struct eng_block_q8_0) == 34, "q8_0 block: 8.5 bits per weight");

#define ENG_QK4_0 32
struct eng_block_q4_0 {
    uint16_t d;                /* fp16 scale */
    uint8_t qs[ENG_QK4_0 / 2]; /* element j: low nibble of qs[j]; j+16: high nibble; x = d*(q-8) */
};
_Static_assert(sizeof(struct eng_block_q4_0) == 18, "q4_0 block: 4.5 bits per weight");

/* Block size and bytes per block of any ggml type id (whether or not this build has kernels
 * for it). Returns 0, or ENG_EUNSUPPORTED for an unknown id. */
int eng_type_block_info(int type, int64_t *blck_size, size_t *type_size);

/* Interleaved layouts (traits row_group > 1): nrows (a multiple of row_group) rows of n
 * elements of the type's row_type at src, contiguous, into that layout at dst (the same number
 * of bytes); and row r of such a tensor at base back into one row of row_type. */
void eng_interleave_rows(enum eng_type type, const void *src, void *dst, int64_t n, int64_t nrows);
void eng_deinterleave_row(enum eng_type type, const void *base, int64_t n, int64_t r, void *row);
/* Blocks b0..b1-1 of that row only. */
void eng_deinterleave_blocks(enum eng_type type, const void *base, int64_t n, int64_t r, int64_t b0,
                             int64_t b1, void *out);

/* Installs the scalar reference kernels of the core formats into the table. Called once. */
void eng_types_init_core(struct eng_type_traits *table);
/* Hook for additional formats and SIMD kernels (kernels code); may replace entries. */
void eng_types_init_extra(struct eng_type_traits *table);
/* Installs the importance-weighted quantizers (quantize_imp) of quants_imp.c. */
void eng_quants_imp_install(struct eng_type_traits *table);
/* Installs the prefill repackers (repack, repack_has_min) of repack.c. */
void eng_repack_install(struct eng_type_traits *table);

/* ---- thread pool ---- */
struct eng_pool;
/* n_threads >= 1 (the calling thread counts as one). With pin, and when the process may run
 * on at least n_threads performance cores (eng_perf_cpus), each thread gets one of them: worker
 * i the (i+1)-th at once, the thread that calls eng_pool_run the first at its first run (its
 * own affinity comes back at eng_pool_free, if that thread frees the pool). NULL on failure. */
struct eng_pool *eng_pool_new(int n_threads, bool pin);
void eng_pool_free(struct eng_pool *p);
int eng_pool_size(const struct eng_pool *p);
/* The CPUs the threads are placed on (pin): the caller's first, then worker i's at i; writes at
 * most max and returns how many there are, 0 without placement. */
int eng_pool_cpus(const struct eng_pool *p, int *cpus, int max);
/* One CPU of each performance core this process may run on, in CPU order: the CPUs of its
 * affinity mask, of the highest cpu_capacity where the kernel reports capacities (big.LITTLE),
 * the first CPU of each (package, core) pair (SMT siblings share a core). Writes at most max of
 * them to cpus (which may be NULL) and returns how many there are. */
int eng_perf_cpus(int *cpus, int max);
/* Calls fn(arg, ith, nth) on every thread (ith = 0 runs on the caller) and returns when all
 * are done. */
void eng_pool_run(struct eng_pool *p, void (*fn)(void *arg, int ith, int nth), void *arg);
/* eng_ctx_defer and eng_ctx_defer_cancel of the pool: the first worker to leave a job makes the
 * call. */
bool eng_pool_defer(struct eng_pool *p, struct eng_deferred *d);
bool eng_pool_defer_cancel(struct eng_pool *p);

/* ---- matrix products ---- */
/* Scratch of the matrix products for weights of up to max_in columns and up to max_b activation
 * rows on n_threads threads: converted activations and per-thread repacked / converted weight
 * chunks. NULL when out of memory. Caller frees with eng_mm_ws_free. */
struct eng_mm_ws;
struct eng_mm_ws *eng_mm_ws_new(int64_t max_in, int max_b, int n_threads);
void eng_mm_ws_free(struct eng_mm_ws *ws);
size_t eng_mm_ws_bytes(const struct eng_mm_ws *ws);

/* Which kernels multiply B activation rows with a weight of this type (matmul.c). Thresholds
 * measured with tools/bench/kernels.c (BENCHMARKS.md, Kernels): below them the repacking or
 * conversion costs more than it saves. ENG_TILE_MIN_B is the default of the traits' tile_min_b
 * (scalar repacking); SIMD levels lower it where their repacking is fast. */
#define ENG_TILE_MIN_B  32
#define ENG_SGEMM_MIN_B 32
enum eng_mm_path { ENG_MM_VEC_DOT = 0, ENG_MM_TILE = 1, ENG_MM_SGEMM = 2 };
enum eng_mm_path eng_matmul_path(enum eng_type type, int B);

/* y (B, ldy) = x (B, w->ne[0]) · Wᵀ. With rows (n_rows > 0) only those weight rows are used and
 * y has n_rows meaningful columns (always the vec_dot path). B <= the workspace's max_b. */
void eng_matmul(struct eng_pool *pool, struct eng_mm_ws *ws, const struct eng_tensor *w,
                const float *x, int B, float *y, int64_t ldy, const int32_t *rows, int n_rows);

/* The rows of a decode product split over the pool (matmul.c): each thread owns a contiguous
 * share and claims it front to back, a third of what is left at a time but never less than a
 * step, so it reads one continuous stream; a thread whose share is done takes half of what is
 * left of the share with the most rows left, from its back, so threads still finish together
 * when one core is slowed. Every row is claimed exactly once. Threads beyond
 * ENG_SPLIT_SHARES share shares (claims stay correct). With align > 1 every claim starts at a
 * multiple of align and ends at one or at rows (interleaved weights: whole row groups). */
#define ENG_SPLIT_SHARES 64
struct eng_row_split {
    int n;         /* shares */
    int64_t step;  /* rows per claim */
    int64_t align; /* claims' starts are multiples of this */
    bool shrink;   /* claims shrink as a share empties (rows); else one step each (items) */
    struct {
        _Alignas(64) atomic_ullong fb; /* front << 32 | back */
    } s[ENG_SPLIT_SHARES];
};
void eng_row_split_init(struct eng_row_split *sp, int64_t rows, int nth, int align);
/* The same split over n work items whose costs differ, claimed one item at a time: a thread the
 * OS takes off its core holds up only the item it is on. */
void eng_item_split_init(struct eng_row_split *sp, int64_t n, int nth);
/* The next rows [*r0, *r1) for thread ith (0 <= ith < nth); false when every share is done. */
bool eng_row_split_claim(struct eng_row_split *sp, int ith, int64_t *r0, int64_t *r1);

/* Chunks of ENG_LOGITS_CHUNK logits in a vocabulary of n_vocab (eng_logits_chunk_max). */
static inline int eng_logit_chunks(int64_t n_vocab) {
    return (int)((n_vocab + ENG_LOGITS_CHUNK - 1) / ENG_LOGITS_CHUNK);
}

/* Fused decode products: y[p] (B, w[p]->ne[1]) = x · w[p]ᵀ for n <= ENG_FUSED_MAX weights of
 * equal input width in one pool job; with glu (n = 2, gate and up of equal shape) y[0] becomes
 * silu(y[0]) * y[1]. Returns false, doing nothing, when the shapes or the batch size call for
 * separate eng_matmul calls (prefill). Same results as the separate calls, bit for bit. */
#define ENG_FUSED_MAX   3
#define ENG_FUSED_MAX_B 32 /* most activation rows a fused product takes */
/* Work on a fused product's output rows right after they are computed, by the thread that
 * computed them (in its cache then): fn(arg, p, r0, r1) for rows [r0, r1) of part p and all B
 * activation rows, r0 and r1 multiples of grain (r1 may also be the part's end). */
struct eng_fused_post {
    void (*fn)(void *arg, int part, int64_t r0, int64_t r1);
    void *arg;
    int grain;
};
bool eng_matmul_fused(struct eng_pool *pool, struct eng_mm_ws *ws, int n,
                      const struct eng_tensor *const *w, const float *x, int B, float *const *y,
                      bool glu, const struct eng_fused_post *post);

/* ---- weights ---- */
struct eng_layer {
    const struct eng_tensor *attn_norm;       /* (n_embd) */
    const struct eng_tensor *wq;              /* (n_embd -> n_head*head_dim) */
    const struct eng_tensor *wk;              /* (n_embd -> n_head_kv*head_dim) */
    const struct eng_tensor *wv;              /* (n_embd -> n_head_kv*head_dim) */
    const struct eng_tensor *wo;              /* (n_head*head_dim -> n_embd) */
    const struct eng_tensor *bq, *bk, *bv;    /* qwen2 biases or NULL */
    const struct eng_tensor *q_norm, *k_norm; /* qwen3 (head_dim) or NULL */
    const struct eng_tensor *ffn_norm;        /* (n_embd) */
    const struct eng_tensor *w_gate;          /* (n_embd -> n_ff) */
    const struct eng_tensor *w_up;            /* (n_embd -> n_ff) */
    const struct eng_tensor *w_down;          /* (n_ff -> n_embd) */
};

struct eng_model {
    struct eng_gguf *gguf; /* owns the mapping */
    struct eng_hparams hp;
    const struct eng_tensor *tok_embd;    /* (n_embd, n_vocab) */
    const struct eng_tensor *output_norm; /* (n_embd) */
    const struct eng_tensor *output;      /* (n_embd -> n_vocab), = tok_embd when tied */
    const struct eng_tensor *rope_freqs;  /* (n_rot/2) or NULL */
    struct eng_layer *layers;             /* (n_layer) */
    /* F32 copies of the small vectors (norm weights, biases, rope factors), one allocation. */
    float *small;
    float *output_norm_f; /* (n_embd) */
    float *rope_freqs_f;  /* (n_rot/2) or NULL */
    struct eng_layer_f {
        float *attn_norm, *ffn_norm; /* (n_embd) */
        float *bq, *bk, *bv;         /* biases or NULL */
        float *q_norm, *k_norm;      /* (head_dim) or NULL */
    } * lf;                          /* (n_layer) */
    /* weights laid out for this CPU's kernels at load (eng_model_params.interleave): the
     * tensors, which the slots above then point at, and their data, one allocation */
    struct eng_tensor *xt;
    int n_xt;
    void *xbuf;
};

/* Reads a tensor's row r (of ne[0] elements) as floats. */
void eng_tensor_row_f32(const struct eng_tensor *t, int64_t r, float *out);

/* Where forward.c keeps the cache row of position pos of key/value head g (which: 0 keys, 1
 * values) of a slot's layer: its byte offset from the start of the context's KV cache. For
 * tests of the cache's layout. */
struct eng_ctx;
size_t eng_kv_row_offset(const struct eng_ctx *c, int slot, int layer, int which, int g, int pos);
/* The start of the context's KV cache and its size in bytes (every slot's), for tests of the
 * memory it commits. */
const void *eng_kv_cache(const struct eng_ctx *c, size_t *bytes);

#endif
