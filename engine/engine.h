/*
 * engine.h — the public interface of libengine: GGUF files, tensor formats, models, the forward
 * pass with KV-cache slots and exits, tokenizers, chat templates and sampling.
 *
 * This is the one header other folders (cli/, compress/, server/, tests/) include. Internals
 * shared between engine files live in engine/internal.h. Names: eng_<object>_<action>.
 *
 * Errors: functions return 0 or a negative ENG_E* code; constructors return NULL. Either way a
 * human-readable detail (naming the file and what is wrong) is left in eng_last_error() of the
 * calling thread.
 */
#ifndef EDGELLM_ENGINE_H
#define EDGELLM_ENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------------------------------------
 * Errors (one list shared by engine/, compress/ and server/)
 */
enum eng_err {
    ENG_OK = 0,
    ENG_EIO = -1,          /* open/read/write/mmap failed */
    ENG_EFORMAT = -2,      /* malformed or hostile file contents */
    ENG_ENOMEM = -3,       /* allocation failed */
    ENG_EINVAL = -4,       /* invalid argument */
    ENG_EUNSUPPORTED = -5, /* valid but not supported (architecture, tensor type, ...) */
    ENG_ERANGE = -6,       /* value out of range (token id, position, context) */
    ENG_ENOTFOUND = -7,    /* key, tensor or item does not exist */
    ENG_ECANCELED = -8,    /* operation cancelled by the caller */
    ENG_EBUSY = -9,        /* resource busy (queue full, slot in use) */
    ENG_ERR_COUNT = 10,
};

/* Static string for an error code. Never NULL. */
const char *eng_strerror(int err);

/* The detail message of the last failure on this thread ("" if none). Thread-safe (thread-local).
 * The pointer is valid until the next failing engine call on the same thread. */
const char *eng_last_error(void);

/* Sets the calling thread's detail message (printf format) and returns err, so a failing function
 * can `return eng_fail(ENG_EFORMAT, "%s: bad magic", path);`. */
int eng_fail(int err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ---------------------------------------------------------------------------------------------
 * Tensor element types. Values equal ggml's type ids so GGUF files interoperate; append-only.
 * Formats of edgellm's own are added from ENG_TYPE_OWN_FIRST upward.
 */
enum eng_type {
    ENG_TYPE_F32 = 0,
    ENG_TYPE_F16 = 1,
    ENG_TYPE_Q4_0 = 2,
    ENG_TYPE_Q4_1 = 3,
    /* 4 and 5 were Q4_2 / Q4_3, removed from ggml */
    ENG_TYPE_Q5_0 = 6,
    ENG_TYPE_Q5_1 = 7,
    ENG_TYPE_Q8_0 = 8,
    ENG_TYPE_Q8_1 = 9,
    ENG_TYPE_Q2_K = 10,
    ENG_TYPE_Q3_K = 11,
    ENG_TYPE_Q4_K = 12,
    ENG_TYPE_Q5_K = 13,
    ENG_TYPE_Q6_K = 14,
    ENG_TYPE_Q8_K = 15,
    ENG_TYPE_IQ2_XXS = 16,
    ENG_TYPE_IQ2_XS = 17,
    ENG_TYPE_IQ3_XXS = 18,
    ENG_TYPE_IQ1_S = 19,
    ENG_TYPE_IQ4_NL = 20,
    ENG_TYPE_IQ3_S = 21,
    ENG_TYPE_IQ2_S = 22,
    ENG_TYPE_IQ4_XS = 23,
    ENG_TYPE_I8 = 24,
    ENG_TYPE_I16 = 25,
    ENG_TYPE_I32 = 26,
    ENG_TYPE_I64 = 27,
    ENG_TYPE_F64 = 28,
    ENG_TYPE_IQ1_M = 29,
    ENG_TYPE_BF16 = 30,
    ENG_TYPE_OWN_FIRST = 64, /* edgellm's own formats start here */
    ENG_TYPE_Q8_0X = 64,     /* activations only: Q8_0 laid out for the SIMD q4_0 kernels */
    ENG_TYPE_Q4_0X16 = 65,   /* q4_0 weights, rows interleaved by 32 at load; never in a file */
    ENG_TYPE_Q8_0X16 = 66,   /* activations only: Q8_0X for the Q4_0X16 kernels (types.c) */
    ENG_TYPE_COUNT = 96,     /* sentinel: size of the traits table */
};

/* Row kernels for one type. A row of n elements (n a multiple of blck_size) occupies
 * n / blck_size * type_size bytes. */
struct eng_type_traits {
    const char *name;  /* "q4_0", as in GGUF tooling */
    int64_t blck_size; /* elements per block */
    size_t type_size;  /* bytes per block */
    bool is_quantized;
    /* Dequantize n elements (scalar reference unless a faster equal-result one is installed). */
    void (*to_float)(const void *x, float *y, int64_t n);
    /* Quantize n elements (reference; reproduces the format's layout). NULL if not supported. */
    void (*from_float)(const float *x, void *y, int64_t n);
    /* Activations are converted to this type before a dot product with a row of this type. */
    enum eng_type vec_dot_type;
    /* *s = dot(row w of this type, row a of vec_dot_type), n elements. The fastest kernel for the
     * running CPU; NULL if this type cannot be used as a weight. */
    void (*vec_dot)(int64_t n, float *s, const void *w, const void *a);
    /* Quantize n elements minimising sum_i imp[i] * (x[i] - dequant(x)[i])^2, where imp[i] >= 0
     * is the importance of element i (compression passes the mean squared activation of each
     * input column); imp = NULL means all 1. Same layout as from_float. NULL if not provided. */
    void (*quantize_imp)(const float *x, void *y, int64_t n, const float *imp);
    /* Prefill form for the tile kernels: n weights → n signed codes q (|q| <= 127), a scale s and,
     * if repack_has_min, a minimum m per 16 weights, x[i] = s[i/16] * q[i] + m[i/16]. NULL for
     * types that do not use it (F32/F16/BF16 prefill through sgemm). */
    void (*repack)(const void *w, int8_t *q, float *s, float *m, int64_t n);
    bool repack_has_min;
    int tile_min_b; /* prefill takes the tile path from this many activation rows (measured) */
    /* s[c * s_stride + r] = dot(weight row r at w + r * w_stride bytes, activation row c at
     * a + c * a_stride bytes) for nr consecutive weight rows and nc (1..ENG_DOT_COLS) activation
     * rows: batched decode unpacks each weight block once for all of them. Each result equals
     * vec_dot's for that pair bit for bit. NULL where there is no such kernel. */
    void (*vec_dot_cols)(int64_t n, int nc, int64_t nr, float *s, size_t s_stride, const void *w,
                         size_t w_stride, const void *a, size_t a_stride);
    /* s[r] = dot(weight row r at w + r * w_stride bytes, a) for nr rows: vec_dot over
     * consecutive rows in one call (short rows spend a good part of a call outside the loop).
     * Each result equals vec_dot's bit for bit. NULL where there is no such kernel. */
    void (*vec_dot_rows)(int64_t n, int64_t nr, float *s, const void *w, size_t w_stride,
                         const void *a);
    /* Interleaved layouts (row_group > 1): the rows are stored in groups of row_group, each
     * group's blocks interleaved (eng_interleave_rows), so a row is not at w + r * row size;
     * eng_deinterleave_row reads one out as a row of row_type. vec_dot_rows / vec_dot_cols
     * then take nr a multiple of row_group and w at the start of a group; vec_dot, to_float
     * and repack are NULL (they are row_type's, on a row read out). */
    int row_group;
    enum eng_type row_type;
};
#define ENG_DOT_COLS 4

/* Traits of type t, or NULL if t is unknown or has no kernels here. Thread-safe. */
const struct eng_type_traits *eng_type_traits(enum eng_type t);
/* "q4_0" → ENG_TYPE_Q4_0; -1 if unknown. Case-insensitive. */
int eng_type_from_name(const char *name);
/* Name of a type id, "?" if unknown. */
const char *eng_type_name(int t);
/* Bytes of a row of n elements of type t; 0 if t unknown or n not a multiple of the block size. */
size_t eng_row_size(enum eng_type t, int64_t n);

/* Scalar half/bfloat conversions (round-to-nearest-even). */
float eng_fp16_to_fp32(uint16_t h);
uint16_t eng_fp32_to_fp16(float f);
float eng_bf16_to_fp32(uint16_t h);
uint16_t eng_fp32_to_bf16(float f);

/* ---------------------------------------------------------------------------------------------
 * GGUF reader. The file is mmap'd read-only; tensor data is never copied. Every count, offset,
 * length and dimension is validated before use. Metadata is parsed into owned memory.
 */
enum eng_gguf_vtype {
    ENG_GGUF_U8 = 0,
    ENG_GGUF_I8 = 1,
    ENG_GGUF_U16 = 2,
    ENG_GGUF_I16 = 3,
    ENG_GGUF_U32 = 4,
    ENG_GGUF_I32 = 5,
    ENG_GGUF_F32 = 6,
    ENG_GGUF_BOOL = 7,
    ENG_GGUF_STRING = 8,
    ENG_GGUF_ARRAY = 9,
    ENG_GGUF_U64 = 10,
    ENG_GGUF_I64 = 11,
    ENG_GGUF_F64 = 12,
    ENG_GGUF_VTYPE_COUNT = 13,
};

struct eng_gguf_str {
    const char *s; /* NUL-terminated copy; may contain embedded NULs, use len */
    uint64_t len;
};

/* A metadata value. Scalars are widened into the union; arrays hold n elements of elem_type:
 * numeric/bool elements packed natively (elem size = eng_gguf_vtype_size), strings as
 * struct eng_gguf_str, nested arrays as struct eng_gguf_value. */
struct eng_gguf_value {
    enum eng_gguf_vtype type;
    union {
        uint64_t u64; /* U8, U16, U32, U64, BOOL */
        int64_t i64;  /* I8, I16, I32, I64 */
        double f64;   /* F32, F64 */
        struct eng_gguf_str str;
        struct {
            enum eng_gguf_vtype elem_type;
            uint64_t n;
            void *data;
        } arr;
    } v;
};

struct eng_gguf_kv {
    struct eng_gguf_str key;
    struct eng_gguf_value val;
};

#define ENG_GGUF_MAX_DIMS 4

struct eng_tensor {
    const char *name; /* owned by the gguf object */
    enum eng_type type;
    int n_dims;
    int64_t ne[ENG_GGUF_MAX_DIMS]; /* ne[0] is contiguous; unused dims are 1 */
    uint64_t offset;               /* relative to the data section */
    size_t nbytes;
    const void *data; /* into the read-only mapping (NULL for tensors built in memory) */
};

struct eng_gguf; /* an open GGUF file */

/* Opens and validates path. Returns NULL on failure (eng_last_error() names the file and the
 * problem). Caller frees with eng_gguf_close(). Tensor types unknown to this build are accepted
 * here (info can list them); loading a model with them fails later. */
struct eng_gguf *eng_gguf_open(const char *path);
/* Same, from a caller-owned buffer (fuzzing, tests); the buffer must outlive the object. */
struct eng_gguf *eng_gguf_open_memory(const void *buf, size_t size, const char *label);
void eng_gguf_close(struct eng_gguf *g);

uint32_t eng_gguf_version(const struct eng_gguf *g);
size_t eng_gguf_alignment(const struct eng_gguf *g);
size_t eng_gguf_file_size(const struct eng_gguf *g);
size_t eng_gguf_data_offset(const struct eng_gguf *g); /* file offset of the data section */
const char *eng_gguf_path(const struct eng_gguf *g);

int64_t eng_gguf_n_kv(const struct eng_gguf *g);
const struct eng_gguf_kv *eng_gguf_kv_at(const struct eng_gguf *g, int64_t i);
/* Index of key, or -1. */
int64_t eng_gguf_find_key(const struct eng_gguf *g, const char *key);
const struct eng_gguf_value *eng_gguf_get(const struct eng_gguf *g, const char *key);
/* Typed getters: return 0 and set *out, ENG_ENOTFOUND if absent, ENG_EFORMAT if the stored
 * type does not convert exactly (integers of any width convert if the value fits). */
int eng_gguf_get_u32(const struct eng_gguf *g, const char *key, uint32_t *out);
int eng_gguf_get_i64(const struct eng_gguf *g, const char *key, int64_t *out);
int eng_gguf_get_f32(const struct eng_gguf *g, const char *key, float *out);
int eng_gguf_get_bool(const struct eng_gguf *g, const char *key, bool *out);
/* Borrowed string (owned by g), NULL if absent or not a string. */
const char *eng_gguf_get_str(const struct eng_gguf *g, const char *key);
/* Array of elem_type (any elem type if elem_type < 0): returns n and sets *data (borrowed), or -1
 * when absent or of another type. */
int64_t eng_gguf_get_arr(const struct eng_gguf *g, const char *key, int elem_type,
                         const void **data);
size_t eng_gguf_vtype_size(enum eng_gguf_vtype t); /* 0 for STRING/ARRAY */
const char *eng_gguf_vtype_name(enum eng_gguf_vtype t);

int64_t eng_gguf_n_tensors(const struct eng_gguf *g);
const struct eng_tensor *eng_gguf_tensor_at(const struct eng_gguf *g, int64_t i);
const struct eng_tensor *eng_gguf_find_tensor(const struct eng_gguf *g, const char *name);

/* ---------------------------------------------------------------------------------------------
 * GGUF writer. Collects metadata and tensors in memory (tensor data is borrowed until write),
 * then writes the file to a temporary name, fsyncs and renames, so a half-written file is never
 * left at the destination.
 */
struct eng_gguf_writer;

struct eng_gguf_writer *eng_gguf_writer_new(void); /* GGUF v3, alignment 32 */
void eng_gguf_writer_free(struct eng_gguf_writer *w);
int eng_gguf_writer_set_version(struct eng_gguf_writer *w, uint32_t version); /* 2 or 3 */
/* Setting a key that exists replaces its value (keeping its position). Values are copied. */
int eng_gguf_set_u32(struct eng_gguf_writer *w, const char *key, uint32_t v);
int eng_gguf_set_i32(struct eng_gguf_writer *w, const char *key, int32_t v);
int eng_gguf_set_u64(struct eng_gguf_writer *w, const char *key, uint64_t v);
int eng_gguf_set_f32(struct eng_gguf_writer *w, const char *key, float v);
int eng_gguf_set_bool(struct eng_gguf_writer *w, const char *key, bool v);
int eng_gguf_set_str(struct eng_gguf_writer *w, const char *key, const char *v);
/* Numeric array of elem_type, n packed elements. */
int eng_gguf_set_arr(struct eng_gguf_writer *w, const char *key, enum eng_gguf_vtype elem_type,
                     const void *data, uint64_t n);
int eng_gguf_set_arr_str(struct eng_gguf_writer *w, const char *key, const char *const *v,
                         uint64_t n);
/* Any value, deep-copied (used to copy metadata from a reader; nested arrays included). */
int eng_gguf_set_value(struct eng_gguf_writer *w, const char *key,
                       const struct eng_gguf_value *val);
int eng_gguf_writer_remove(struct eng_gguf_writer *w, const char *key);
/* Adds a tensor. data (nbytes = eng_row_size(type, ne[0]) * ne[1] * ne[2] * ne[3]) is borrowed
 * until eng_gguf_writer_write returns; NULL data writes zeros. Names must be unique. */
int eng_gguf_add_tensor(struct eng_gguf_writer *w, const char *name, enum eng_type type, int n_dims,
                        const int64_t *ne, const void *data);
/* Writes path atomically (path.tmp → fsync → rename). general.alignment is honoured. */
int eng_gguf_writer_write(struct eng_gguf_writer *w, const char *path);
/* The same in steps, so tensor data need not all be in memory at once: begin writes metadata
 * and every tensor info added so far (no tensors may be added after); put writes the next
 * tensor's data in order (nbytes of it; NULL writes zeros); finish fsyncs and renames. After
 * an error, or with abort, the temporary file is removed and nothing is left at path. */
int eng_gguf_writer_begin(struct eng_gguf_writer *w, const char *path);
int eng_gguf_writer_put(struct eng_gguf_writer *w, const void *data);
int eng_gguf_writer_finish(struct eng_gguf_writer *w);
void eng_gguf_writer_abort(struct eng_gguf_writer *w);

/* ---------------------------------------------------------------------------------------------
 * Models
 */
enum eng_arch {
    ENG_ARCH_LLAMA = 0,
    ENG_ARCH_QWEN2 = 1,
    ENG_ARCH_QWEN3 = 2,
    ENG_ARCH_COUNT = 3,
};

enum eng_rope_mode {
    ENG_ROPE_NORM = 0, /* rotate adjacent pairs (x[2i], x[2i+1]) — llama GGUF */
    ENG_ROPE_NEOX = 1, /* rotate (x[i], x[i + n_rot/2]) — qwen2, qwen3 */
};

struct eng_hparams {
    enum eng_arch arch;
    int n_vocab;
    int n_ctx_train;
    int n_embd;
    int n_layer;
    int n_head;
    int n_head_kv;
    int head_dim; /* key/value length per head */
    int n_ff;
    int n_rot; /* rotated dims per head */
    float rms_eps;
    float rope_base;
    float rope_scale; /* linear scaling: positions are multiplied by this (1 / factor) */
    enum eng_rope_mode rope_mode;
    bool tied_output; /* output head = token_embd */
    bool has_qkv_bias;
    bool has_qk_norm;
    bool has_rope_freqs; /* rope_freqs.weight present (llama3 scaling) */
};

struct eng_model_params {
    bool use_mlock; /* lock the mapping in RAM */
    bool populate;  /* read the weights in and map them at load, not during the first pass */
    /* lay the weight matrices out for the kernels of the running CPU where it has such a
     * layout (ENG_TYPE_Q4_0X16 on the AVX-512 level): a copy in memory replaces the mapped
     * rows, which are let go; tensors the model returns are then of that type */
    bool interleave;
};

struct eng_model;

/* Loads a model from a GGUF file: validates architecture, hyperparameters, the presence, type
 * and shape of every tensor. Returns NULL with a detail in eng_last_error(). Caller frees with
 * eng_model_free(). params may be NULL. */
struct eng_model *eng_model_load(const char *path, const struct eng_model_params *params);
void eng_model_free(struct eng_model *m);
const struct eng_hparams *eng_model_hparams(const struct eng_model *m);
/* The underlying file (borrowed; tokenizer and chat template read their metadata from it). */
const struct eng_gguf *eng_model_gguf(const struct eng_model *m);
const char *eng_arch_name(enum eng_arch a);
/* The tensor the model currently uses for name (a weight matrix or the token embedding), or
 * NULL if the model has no such weight. Borrowed. */
const struct eng_tensor *eng_model_tensor(const struct eng_model *m, const char *name);
/* Makes the model use t (borrowed: it must outlive its use) instead of the weight called name,
 * e.g. the same matrix in another format. Shape must match and the type must have kernels.
 * Not while a forward pass runs on the model. Returns 0, ENG_ENOTFOUND, ENG_EINVAL. */
int eng_model_replace_tensor(struct eng_model *m, const char *name, const struct eng_tensor *t);
int64_t eng_model_n_params(const struct eng_model *m);
/* Bytes of weights (tensor data) in the file. */
size_t eng_model_weight_bytes(const struct eng_model *m);

/* ---------------------------------------------------------------------------------------------
 * Inference context: KV cache for n_slots independent sequences over one model's weights, the
 * scratch for batches of up to n_batch tokens, and a thread pool. Everything is allocated here;
 * the forward pass allocates nothing. One thread at a time may use a context.
 */
struct eng_ctx_params {
    int n_slots;   /* independent sequences (default 1) */
    int n_ctx;     /* positions per slot (default min(n_ctx_train, 4096)) */
    int n_batch;   /* max tokens per eng_forward call (default 512) */
    int n_outputs; /* max tokens per call that produce logits (default n_batch) */
    int n_threads; /* worker threads (default: performance cores) */
    /* Keys and values cached as fp16 instead of f32 (default false): half the KV memory and
     * half the bytes attention reads per token, for fp16 rounding of the cached values. */
    bool kv_f16;
    /* Each of the n_threads threads on a performance core of its own (default true), when the
     * process may run on that many (eng_default_threads counts them): the thread that calls
     * eng_forward on the first, the pool's workers on the next. Left to the scheduler, a worker
     * woken after an idle spell is often put on the caller's CPU, and the two take turns there
     * for the first passes of a request. false leaves placement to the scheduler. */
    bool pin_threads;
    /* Positions per block of a slot's KV cache (0: ENG_KV_BLOCK; capped at n_ctx): the cache
     * holds each block's positions for every layer and head together, so a short sequence's
     * keys and values lie close together however long the context. Attention takes a
     * sequence's blocks one at a time and merges them; past the first block results differ
     * from one pass over all positions by float rounding only. Blocks of 64 positions, whose
     * heads' rows then lie one after another in decode at short contexts, measured slower
     * (L110M Q4_0, four sequences tg128, 0.966 of 256's, slower in 8 of 8 alternated rounds). */
    int kv_block;
};
#define ENG_KV_BLOCK 256

struct eng_ctx;

/* Fills p with defaults for model m. */
void eng_ctx_params_default(const struct eng_model *m, struct eng_ctx_params *p);
/* m is borrowed and must outlive the context. NULL on failure. */
struct eng_ctx *eng_ctx_new(const struct eng_model *m, const struct eng_ctx_params *p);
void eng_ctx_free(struct eng_ctx *c);
const struct eng_ctx_params *eng_ctx_get_params(const struct eng_ctx *c);
const struct eng_model *eng_ctx_model(const struct eng_ctx *c);
/* Bytes the context reserves (KV cache + scratch). The KV cache's pages are committed as
 * sequences first write its blocks (kv_block positions at a time), so a context whose slots
 * hold short sequences uses much less. */
size_t eng_ctx_memory_bytes(const struct eng_ctx *c);
/* The CPUs the context's threads are placed on (pin_threads): the one of the thread that calls
 * eng_forward first, then the workers'. Writes at most max of them to cpus and returns how many
 * there are; 0 when placement is left to the scheduler. */
int eng_ctx_cpus(const struct eng_ctx *c, int *cpus, int max);
/* A call that a worker thread of the context makes between its parts of a pass (eng_ctx_defer),
 * for work that wakes another thread: a thread woken on a worker's CPU while that worker holds
 * rows of a product makes the pass wait for them, one woken from a worker that has just left
 * its part does not (the pass's other threads take over the rows meanwhile). */
struct eng_deferred {
    void (*fn)(void *arg);
    void *arg;
};
/* Has d->fn(d->arg) called once by the first worker to finish its part of a product or other job
 * of a later pass (d must stay valid until then or until eng_ctx_defer_cancel). Replaces a call
 * still pending. false when the context has no worker thread (n_threads 1): the caller makes
 * the call itself. A call pending when the context is freed is not made. */
bool eng_ctx_defer(struct eng_ctx *c, struct eng_deferred *d);
/* Takes back the pending call, if any: true when there was one (it will not be made). */
bool eng_ctx_defer_cancel(struct eng_ctx *c);

/* A batch of tokens. Tokens of one slot must be at consecutive positions in increasing order;
 * a token at position p attends to its slot's cached positions 0..p, so a slot's positions
 * 0..p-1 must have been filled by earlier calls or earlier tokens of this batch. */
struct eng_batch {
    int n_tokens;
    const int32_t *token; /* (n_tokens) token ids */
    const int32_t *pos;   /* (n_tokens) positions; NULL: 0, 1, 2, ... */
    const int32_t *slot;  /* (n_tokens) slot of each token; NULL: all slot 0 */
    const int8_t *output; /* (n_tokens) nonzero: produce logits; NULL: only the last token */
    /* Start inside the model: the hidden states entering block first_layer, (n_tokens, n_embd),
     * replace the token embeddings (token ids are then only range-checked). Blocks before
     * first_layer are skipped and their KV cache is not written. 0 / NULL: a normal pass. */
    int first_layer;
    const float *embd;
    /* Take the outputs' logits chunk maxima on the threads that compute the logits
     * (eng_logits_chunk_max), for greedy sampling: a read of the logits in the pass, about
     * 0.5 us per output and thread at 32000 logits (AVX2, in cache). false: not taken. */
    bool logits_max;
};

/* Which layers' hidden states are kept for output tokens. L in 0..n_layer-1 is the residual
 * stream after block L; exits = final norm + output head applied to it (n_layer-1 = the normal
 * logits). last_layer < n_layer-1 stops the forward pass after that block (the ordinary logits
 * are then those of that exit). Default: no exits, full depth. */
int eng_ctx_set_exits(struct eng_ctx *c, const int *layers, int n_exits);
int eng_ctx_set_last_layer(struct eng_ctx *c, int last_layer);

/* Points of the forward pass an observer sees (calibration, tuning): the activations entering
 * the listed matrices, and the residual stream after a block. */
enum eng_obs_point {
    ENG_OBS_ATTN_IN = 0,     /* normed input of attn_q / attn_k / attn_v, (B, n_embd) */
    ENG_OBS_ATTN_OUT_IN = 1, /* input of attn_output, (B, n_head*head_dim) */
    ENG_OBS_FFN_IN = 2,      /* normed input of ffn_gate / ffn_up, (B, n_embd) */
    ENG_OBS_FFN_DOWN_IN = 3, /* input of ffn_down, (B, n_ff) */
    ENG_OBS_LAYER_OUT = 4,   /* residual stream after the block, (B, n_embd) */
    ENG_OBS_OUTPUT_IN = 5,   /* final-normed input of the output head, (outputs, n_embd) */
    ENG_OBS_COUNT = 6,
};

/* Calls fn(user, layer, point, x, n_rows, n_cols) synchronously from eng_forward (on the calling
 * thread) at every point; x is borrowed for the call. layer is -1 for ENG_OBS_OUTPUT_IN.
 * fn = NULL removes the observer. */
void eng_ctx_set_observer(struct eng_ctx *c,
                          void (*fn)(void *user, int layer, enum eng_obs_point point,
                                     const float *x, int n_rows, int n_cols),
                          void *user);

/* Runs the batch. Returns 0 or ENG_EINVAL / ENG_ERANGE (bad token id, position, slot, size).
 * On success the outputs are numbered 0..eng_n_outputs()-1 in batch order. */
int eng_forward(struct eng_ctx *c, const struct eng_batch *b);
int eng_n_outputs(const struct eng_ctx *c);
/* Logits of output i (n_vocab floats, borrowed until the next eng_forward). */
const float *eng_logits(const struct eng_ctx *c, int i);
/* The maxima of output i's logits in chunks of ENG_LOGITS_CHUNK (the last may be shorter): the
 * largest value of each that is not NaN, -inf when there is none. The threads that computed
 * the logits take them, so the sampler need not read the whole vocabulary
 * (eng_sampler_sample_chunked). NULL when the pass did not take them: a batch without
 * logits_max, more than 32 outputs, or an output head that goes through the matrix-matrix
 * paths. Borrowed like eng_logits. */
#define ENG_LOGITS_CHUNK 256
const float *eng_logits_chunk_max(const struct eng_ctx *c, int i);
/* Batch index of output i. */
int eng_output_token_index(const struct eng_ctx *c, int i);
/* Hidden state (n_embd floats) of exit e (index into the layers given to eng_ctx_set_exits) for
 * output i, before the final norm. Borrowed until the next eng_forward. */
const float *eng_exit_hidden(const struct eng_ctx *c, int e, int i);
/* Logits of exit e for output i: final norm + output head. Full vocabulary into out (n_vocab),
 * or only the rows listed in ids (n_ids > 0) into out[0..n_ids-1]. Uses the context's threads. */
int eng_exit_logits(struct eng_ctx *c, int e, int i, const int32_t *ids, int n_ids, float *out);

/* Copies positions [0, n_pos) of slot src's KV cache into slot dst (prefix reuse). */
int eng_slot_copy(struct eng_ctx *c, int dst, int src, int n_pos);

/* Llama 3 rope scaling: fills factors[0..n_rot/2) with the divisor of each rotary frequency
 * (stored as the rope_freqs.weight tensor), from rope_scaling {factor, low_freq_factor,
 * high_freq_factor, original_max_position_embeddings}. */
void eng_rope_llama3_factors(float *factors, int n_rot, float base, float factor, float low_freq,
                             float high_freq, int orig_ctx);

/* Number of performance cores this process may run on (the default thread count): of the CPUs
 * in its affinity mask, one per core, only the cores of the highest capacity on big.LITTLE. */
int eng_default_threads(void);
/* The SIMD kernel level in use: "scalar", "avx2", "avx512" (x86-64), "neon", "dotprod" (aarch64).
 * The best one the CPU supports; the environment variable EDGELLM_SIMD=<level> caps it. */
const char *eng_simd_level(void);

/* ---------------------------------------------------------------------------------------------
 * Tokenizer (engine/tokenizer.c). Built from a model's tokenizer.ggml.* metadata: "llama"
 * (SentencePiece with scores and byte fallback) and "gpt2" (byte-level BPE with merges and the
 * pre-tokenizer named by tokenizer.ggml.pre). Immutable after load: thread-safe to share.
 */
enum eng_token_attr {
    ENG_TOKEN_NORMAL = 1,
    ENG_TOKEN_UNKNOWN = 2,
    ENG_TOKEN_CONTROL = 3,
    ENG_TOKEN_USER_DEFINED = 4,
    ENG_TOKEN_UNUSED = 5,
    ENG_TOKEN_BYTE = 6,
};

enum eng_tokenize_flags {
    ENG_TOKENIZE_ADD_SPECIAL = 1 << 0,   /* add BOS (and EOS) as the model's metadata says */
    ENG_TOKENIZE_PARSE_SPECIAL = 1 << 1, /* "<|im_start|>" in text becomes its id */
};

enum eng_detok_flags {
    ENG_DETOK_RENDER_SPECIAL = 1 << 0, /* control tokens are rendered as their text */
};

struct eng_tokenizer;

/* Reads the tokenizer from g (borrowed; only needed during the call). NULL with a detail in
 * eng_last_error() if the metadata is missing or malformed. Caller frees. */
struct eng_tokenizer *eng_tokenizer_load(const struct eng_gguf *g);
void eng_tokenizer_free(struct eng_tokenizer *t);
int eng_tokenizer_n_vocab(const struct eng_tokenizer *t);
int32_t eng_token_bos(const struct eng_tokenizer *t); /* -1 if none */
int32_t eng_token_eos(const struct eng_tokenizer *t); /* -1 if none */
/* True for tokens that end a generation (EOS, EOT, <|im_end|>, <|eot_id|>, ...). */
bool eng_token_is_eog(const struct eng_tokenizer *t, int32_t id);
enum eng_token_attr eng_token_attr(const struct eng_tokenizer *t, int32_t id);
/* The vocabulary entry's text as stored (borrowed), NULL if id is out of range. */
const char *eng_token_text(const struct eng_tokenizer *t, int32_t id);
/* Id of an exact vocabulary entry, or -1. */
int32_t eng_token_lookup(const struct eng_tokenizer *t, const char *text, size_t len);
/* Whether ENG_TOKENIZE_ADD_SPECIAL puts a BOS first (the model's add_bos_token and a BOS id). */
bool eng_tokenizer_add_bos(const struct eng_tokenizer *t);
/* Bytes of the longest piece any token decodes to. */
int eng_tokenizer_max_piece(const struct eng_tokenizer *t);

/* Encodes len bytes of text. Writes at most max ids to out and returns the total number of
 * tokens (which may exceed max: call again with a larger buffer), or a negative error.
 * Without ENG_TOKENIZE_PARSE_SPECIAL only user-defined added tokens are matched in the text
 * (control tokens such as "<|im_start|>" are then tokenized as ordinary text). Thread-safe. */
int eng_tokenize(const struct eng_tokenizer *t, const char *text, size_t len, int32_t *out, int max,
                 unsigned flags);
/* Tokenizes a rendered chat prompt: special tokens are parsed, and BOS is added as the model
 * asks unless the prompt already starts with the BOS text (templates that write bos_token
 * themselves). Returns like eng_tokenize. */
int eng_tokenize_chat(const struct eng_tokenizer *t, const char *prompt, size_t len, int32_t *out,
                      int max);
/* The bytes one token stands for (byte tokens give their byte, "▁" becomes a space, byte-level
 * BPE is mapped back to bytes). Writes at most size bytes; returns the full length, or negative.
 * Control tokens give "" unless ENG_DETOK_RENDER_SPECIAL. */
int eng_token_to_piece(const struct eng_tokenizer *t, int32_t id, char *buf, int size,
                       unsigned flags);
/* Decodes a whole sequence into buf (NUL-terminated when it fits); returns the full length. */
int eng_detokenize(const struct eng_tokenizer *t, const int32_t *ids, int n, char *buf, int size,
                   unsigned flags);

/* Streaming detokenizer: feeds ids one at a time and returns only complete UTF-8 (partial code
 * points are held back until they complete), with the leading-space rule of the first token. */
struct eng_detok {
    const struct eng_tokenizer *t;
    unsigned flags;
    bool at_start;
    int n_pending;
    char pending[8];
};
void eng_detok_init(struct eng_detok *d, const struct eng_tokenizer *t, unsigned flags);
/* Appends the text of id to out (not NUL-terminated) and returns the number of bytes, 0 while a
 * code point is incomplete. Invalid bytes come out as U+FFFD. A buffer of eng_detok_max(t) bytes
 * always suffices; with a smaller one that cannot hold the result, returns ENG_ERANGE and
 * consumes nothing. */
int eng_detok_push(struct eng_detok *d, int32_t id, char *out, int size);
/* Ends the stream: an incomplete sequence still held back comes out as U+FFFD (size >= 3).
 * Returns bytes written. */
int eng_detok_flush(struct eng_detok *d, char *out, int size);
/* Output buffer size that always suffices for eng_detok_push with tokenizer t. */
int eng_detok_max(const struct eng_tokenizer *t);

/* ---------------------------------------------------------------------------------------------
 * Chat templates (engine/chat.c). The family is detected from tokenizer.chat_template; an unknown
 * template falls back to ChatML (and eng_chat_detect reports it).
 */
enum eng_chat_family {
    ENG_CHAT_CHATML = 0, /* also Qwen */
    ENG_CHAT_LLAMA3 = 1,
    ENG_CHAT_LLAMA2 = 2,
    ENG_CHAT_MISTRAL = 3,
    ENG_CHAT_GEMMA = 4,
    ENG_CHAT_PHI3 = 5,
    ENG_CHAT_FAMILY_COUNT = 6,
};

struct eng_chat_msg {
    const char *role;    /* "system", "user", "assistant" */
    const char *content; /* UTF-8 */
};

/* Family of a Jinja chat template string (NULL → ChatML). *known is set false for fallbacks. */
enum eng_chat_family eng_chat_detect(const char *tmpl, bool *known);
const char *eng_chat_family_name(enum eng_chat_family f);
/* Renders messages as the family does, plus the assistant prefix if add_generation_prompt.
 * bos/eos are the model's BOS/EOS texts (may be NULL). Returns a malloc'd string (caller frees),
 * or NULL with eng_last_error() (e.g. a role the family does not support). Same as
 * eng_chat_template_apply with no template-specific details. */
char *eng_chat_render(enum eng_chat_family f, const struct eng_chat_msg *msgs, int n,
                      bool add_generation_prompt, const char *bos, const char *eos);
/* "chatml", "llama3", "llama2", "mistral", "gemma", "phi3" → family; -1 if unknown. */
int eng_chat_family_from_name(const char *name);

/* A model's template: its family plus the details that vary inside a family and can be read off
 * the Jinja source. Plain data; no allocation. */
struct eng_chat_template {
    enum eng_chat_family family;
    bool known;                 /* false: not a known family, rendered as ChatML */
    const char *default_system; /* ChatML: system message inserted when none is given (into
                                 * storage), or NULL */
    bool llama31;               /* Llama 3.1+: system turn with the knowledge-date preamble */
    char storage[512];
};
/* Fills ct from tokenizer.chat_template (NULL → ChatML, known = false). */
void eng_chat_template_parse(struct eng_chat_template *ct, const char *tmpl);
/* Renders like eng_chat_render, honouring ct's details. Caller frees the result. Thread-safe. */
char *eng_chat_template_apply(const struct eng_chat_template *ct, const struct eng_chat_msg *msgs,
                              int n, bool add_generation_prompt, const char *bos, const char *eos);

/* ---------------------------------------------------------------------------------------------
 * Sampling (engine/sampler.c). One sampler per sequence; not thread-safe.
 */
struct eng_logit_bias {
    int32_t token;
    float bias;
};

struct eng_sampler_params {
    float temperature;       /* 0 = greedy */
    int top_k;               /* 0 = off */
    float top_p;             /* 1 = off */
    float min_p;             /* 0 = off */
    float repeat_penalty;    /* 1 = off; divides positive / multiplies negative logits */
    int repeat_last_n;       /* window of recent tokens for all penalties (0 = all) */
    float presence_penalty;  /* 0 = off (OpenAI semantics) */
    float frequency_penalty; /* 0 = off (OpenAI semantics) */
    uint64_t seed;           /* same seed, same logits → same tokens */
    const struct eng_logit_bias *logit_bias; /* copied by eng_sampler_new */
    int n_logit_bias;
    int n_logprobs; /* how many top log-probabilities to report per token (0..20) */
    bool logprob;   /* report the chosen token's log-probability even with n_logprobs 0 (it
                     * costs an exp per vocabulary entry, a visible share of a small model's
                     * token time, so it is computed only when asked for) */
};

struct eng_token_logprob {
    int32_t token;
    float logprob;
};

/* Result of one sampling step. top[] is filled with n_logprobs entries, most likely first. */
struct eng_sample {
    int32_t token;
    float logprob; /* log-probability of token under the final (post-penalty) distribution;
                    * NAN unless params.logprob or n_logprobs > 0 */
    int n_top;
    struct eng_token_logprob top[20];
};

struct eng_sampler;

/* Defaults: temperature 0.8, top_k 40, top_p 0.95, min_p 0.05, no penalties, seed 0. */
void eng_sampler_params_default(struct eng_sampler_params *p);
/* NULL on invalid parameters (eng_last_error() says which). Caller frees. */
struct eng_sampler *eng_sampler_new(const struct eng_sampler_params *p, int n_vocab);
/* Gives s new parameters, as eng_sampler_new would (the same checks), keeping its buffers: the
 * history is forgotten and the random stream starts again from p's seed, so s then samples as
 * a new sampler with p does. 0, or an error code with s unchanged. */
int eng_sampler_set_params(struct eng_sampler *s, const struct eng_sampler_params *p);
void eng_sampler_free(struct eng_sampler *s);
/* Picks the next token from logits (n_vocab; not modified) and records it in the history. */
int eng_sampler_sample(struct eng_sampler *s, const float *logits, struct eng_sample *out);
/* The same with the logits' chunk maxima (eng_logits_chunk_max; NULL: as eng_sampler_sample).
 * Greedy sampling without logprobs then reads the maxima, the chunks that logit_bias and the
 * penalties change, and the chunk of the winner, instead of the whole vocabulary; the token is
 * the same. Other settings read every logit and ignore the maxima. */
int eng_sampler_sample_chunked(struct eng_sampler *s, const float *logits, const float *chunk_max,
                               struct eng_sample *out);
/* Whether s reads chunk maxima (greedy, no logprobs): a pass need only take them then
 * (eng_batch.logits_max). */
bool eng_sampler_uses_chunk_max(const struct eng_sampler *s);
/* Records a token that was not sampled (prompt tokens, for penalties). */
void eng_sampler_accept(struct eng_sampler *s, int32_t token);
void eng_sampler_reset(struct eng_sampler *s);

/* Stop strings across token boundaries: text is pushed as it is generated; the matcher says
 * how much may be emitted now (bytes that cannot start a stop string) and whether a stop string
 * completed (the text before it is emitted, the stop string and after are not). */
struct eng_stop;
struct eng_stop *eng_stop_new(const char *const *stops, int n);
void eng_stop_free(struct eng_stop *st);
/* Appends len bytes; sets *emit to the bytes (borrowed until the next call) safe to output now
 * and *n_emit. Returns true when a stop string matched. */
bool eng_stop_push(struct eng_stop *st, const char *text, size_t len, const char **emit,
                   size_t *n_emit);
/* At the end of generation: the held-back tail that never became a stop string. */
void eng_stop_flush(struct eng_stop *st, const char **emit, size_t *n_emit);

#ifdef __cplusplus
}
#endif
#endif
