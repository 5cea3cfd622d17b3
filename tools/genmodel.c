/*
 * genmodel.c — writes small random-weight GGUF models of each architecture and tensor type for
 * tests and benchmarks, through the engine's GGUF writer. Seeded: the same arguments give the
 * same file. The vocabulary is a byte-fallback SentencePiece-style ("llama") tokenizer when
 * n_vocab >= 259, so tokenizer and daemon tests can use the models too. Never committed: models
 * are generated into build/.
 */
#include "engine.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct opts {
    const char *arch, *out, *rope_scaling, *type_name;
    enum eng_type type;
    unsigned long long seed;
    int n_embd, n_layer, n_head, n_head_kv, head_dim, n_ff, n_vocab, ctx;
    bool tied;
    const char *mix; /* "q4_k_m": per-tensor type mix, else NULL */
};

/* ---- deterministic random numbers ---- */

static unsigned long long rng_state;

static unsigned long long rng_next(void) {
    /* xorshift64* */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 2685821657736338717ull;
}

static double rng_uniform(void) {
    return (double)(rng_next() >> 11) / 9007199254740992.0;
}

static float rng_normal(void) {
    double u1 = rng_uniform(), u2 = rng_uniform();
    if (u1 < 1e-300) u1 = 1e-300;
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

/* ---- tensors ---- */

struct tensor_buf {
    void *data;
};

static struct tensor_buf bufs[4096];
static int n_bufs;

static void *keep(void *p) {
    if (n_bufs < (int)(sizeof(bufs) / sizeof(bufs[0]))) bufs[n_bufs++].data = p;
    return p;
}

static int add(struct eng_gguf_writer *w, const char *name, enum eng_type type, int64_t ne0,
               int64_t ne1, float std, float mean) {
    int64_t n = ne0 * ne1;
    float *f = malloc((size_t)n * sizeof(float));
    if (!f) return ENG_ENOMEM;
    for (int64_t i = 0; i < n; i++) f[i] = mean + std * rng_normal();
    int64_t ne[2] = {ne0, ne1};
    int n_dims = ne1 > 1 ? 2 : 1;
    if (type == ENG_TYPE_F32) return eng_gguf_add_tensor(w, name, type, n_dims, ne, keep(f));
    const struct eng_type_traits *tr = eng_type_traits(type);
    if (!tr || !tr->from_float) {
        free(f);
        fprintf(stderr, "genmodel: type %s cannot be quantized by this build\n",
                eng_type_name(type));
        return ENG_EUNSUPPORTED;
    }
    size_t rs = eng_row_size(type, ne0);
    if (!rs) {
        free(f);
        fprintf(stderr, "genmodel: %s: row of %lld is not a multiple of the %s block\n", name,
                (long long)ne0, tr->name);
        return ENG_EINVAL;
    }
    void *q = malloc(rs * (size_t)ne1);
    if (!q) return ENG_ENOMEM;
    for (int64_t r = 0; r < ne1; r++)
        tr->from_float(f + r * ne0, (uint8_t *)q + (size_t)r * rs, ne0);
    free(f);
    return eng_gguf_add_tensor(w, name, type, n_dims, ne, keep(q));
}

/* Tokenizer metadata: <unk> <s> </s>, 256 byte tokens, then word pieces. */
static int add_tokenizer(struct eng_gguf_writer *w, int n_vocab) {
    static const char *const words[] = {
        "the",     "and",     "of",      "to",    "in",     "is",    "it",     "that",   "was",
        "for",     "on",      "are",     "with",  "as",     "he",    "be",     "at",     "by",
        "this",    "had",     "not",     "but",   "from",   "or",    "have",   "an",     "they",
        "which",   "one",     "you",     "were",  "all",    "we",    "her",    "she",    "there",
        "would",   "their",   "will",    "when",  "who",    "him",   "been",   "has",    "more",
        "if",      "no",      "out",     "so",    "said",   "what",  "up",     "its",    "about",
        "than",    "into",    "them",    "can",   "only",   "other", "time",   "new",    "some",
        "could",   "these",   "two",     "may",   "first",  "then",  "do",     "any",    "like",
        "my",      "now",     "over",    "such",  "our",    "man",   "me",     "even",   "most",
        "made",    "after",   "also",    "did",   "many",   "off",   "before", "must",   "well",
        "back",    "through", "years",   "much",  "where",  "your",  "way",    "down",   "should",
        "because", "long",    "each",    "just",  "people", "how",   "too",    "little", "state",
        "good",    "very",    "make",    "world", "still",  "see",   "own",    "men",    "work",
        "here",    "day",     "between", "both",  "life",   "being", "under",  "never",  "same",
        "another", "know",    "while",   "last",  "might",  "us",    "great",  "old",    "year",
        "come",    "since",   "against", "go",    "came",   "right", "used",   "take",   "three"};
    char **tok = calloc((size_t)n_vocab, sizeof(char *));
    float *scores = calloc((size_t)n_vocab, sizeof(float));
    int32_t *types = calloc((size_t)n_vocab, sizeof(int32_t));
    if (!tok || !scores || !types) return ENG_ENOMEM;
    int n = 0;
    const char *specials[] = {"<unk>", "<s>", "</s>"};
    for (int i = 0; i < 3; i++) {
        tok[n] = strdup(specials[i]);
        types[n++] = i == 0 ? 2 : 3;
    }
    for (int b = 0; b < 256; b++) {
        char s[8];
        snprintf(s, sizeof(s), "<0x%02X>", b);
        tok[n] = strdup(s);
        types[n++] = 6;
    }
    /* single letters, then "▁x" pieces, then whole words "▁word" */
    for (int pass = 0; pass < 3 && n < n_vocab; pass++) {
        int count = pass < 2 ? 26 : (int)(sizeof(words) / sizeof(words[0]));
        for (int i = 0; i < count && n < n_vocab; i++) {
            char s[64];
            if (pass == 0)
                snprintf(s, sizeof(s), "%c", 'a' + i);
            else if (pass == 1)
                snprintf(s, sizeof(s), "\xe2\x96\x81%c", 'a' + i);
            else
                snprintf(s, sizeof(s), "\xe2\x96\x81%s", words[i]);
            tok[n] = strdup(s);
            types[n] = 1;
            scores[n] = -(float)(n - 259);
            n++;
        }
    }
    for (int i = 0; n < n_vocab; i++) { /* filler, never produced by the merges above */
        char s[32];
        snprintf(s, sizeof(s), "<extra_%d>", i);
        tok[n] = strdup(s);
        types[n] = 5;
        scores[n] = -1e9f;
        n++;
    }
    int err = eng_gguf_set_str(w, "tokenizer.ggml.model", "llama");
    err = err ? err
              : eng_gguf_set_arr_str(w, "tokenizer.ggml.tokens", (const char *const *)tok,
                                     (uint64_t)n);
    err =
        err ? err : eng_gguf_set_arr(w, "tokenizer.ggml.scores", ENG_GGUF_F32, scores, (uint64_t)n);
    err = err ? err
              : eng_gguf_set_arr(w, "tokenizer.ggml.token_type", ENG_GGUF_I32, types, (uint64_t)n);
    err = err ? err : eng_gguf_set_u32(w, "tokenizer.ggml.unknown_token_id", 0);
    err = err ? err : eng_gguf_set_u32(w, "tokenizer.ggml.bos_token_id", 1);
    err = err ? err : eng_gguf_set_u32(w, "tokenizer.ggml.eos_token_id", 2);
    err = err ? err : eng_gguf_set_bool(w, "tokenizer.ggml.add_bos_token", true);
    for (int i = 0; i < n; i++) free(tok[i]);
    free(tok);
    free(scores);
    free(types);
    return err;
}

/* Type of tensor `name` in layer l under the mix (Q4_K_M-style: Q6_K for the output head and
 * half of attn_v / ffn_down, Q4_K elsewhere). */
static enum eng_type mix_type(const struct opts *o, const char *kind, int l) {
    if (!o->mix) return o->type;
    if (!strcmp(kind, "output")) return ENG_TYPE_Q6_K;
    if ((!strcmp(kind, "attn_v") || !strcmp(kind, "ffn_down")) &&
        (l < o->n_layer / 8 || l >= 7 * o->n_layer / 8 || (l - o->n_layer / 8) % 3 == 2))
        return ENG_TYPE_Q6_K;
    return ENG_TYPE_Q4_K;
}

static int generate(const struct opts *o) {
    struct eng_gguf_writer *w = eng_gguf_writer_new();
    if (!w) return 1;
    char key[128], name[128];
    int E = o->n_embd, F = o->n_ff, V = o->n_vocab, H = o->n_head, HKV = o->n_head_kv;
    int hd = o->head_dim ? o->head_dim : E / H;
    int Q = H * hd, KV = HKV * hd;
    int err = 0;
#define KEY(k) (snprintf(key, sizeof(key), "%s.%s", o->arch, k), key)
#define CHECK(x)                                                                                   \
    do {                                                                                           \
        if ((err = (x)) != 0) goto out;                                                            \
    } while (0)
    CHECK(eng_gguf_set_str(w, "general.architecture", o->arch));
    snprintf(name, sizeof(name), "random %s %s seed %llu", o->arch, o->type_name, o->seed);
    CHECK(eng_gguf_set_str(w, "general.name", name));
    CHECK(eng_gguf_set_u32(w, KEY("context_length"), (uint32_t)o->ctx));
    CHECK(eng_gguf_set_u32(w, KEY("embedding_length"), (uint32_t)E));
    CHECK(eng_gguf_set_u32(w, KEY("block_count"), (uint32_t)o->n_layer));
    CHECK(eng_gguf_set_u32(w, KEY("feed_forward_length"), (uint32_t)F));
    CHECK(eng_gguf_set_u32(w, KEY("attention.head_count"), (uint32_t)H));
    CHECK(eng_gguf_set_u32(w, KEY("attention.head_count_kv"), (uint32_t)HKV));
    CHECK(eng_gguf_set_f32(w, KEY("attention.layer_norm_rms_epsilon"), 1e-5f));
    float base = strcmp(o->arch, "llama") ? 1000000.0f : 10000.0f;
    CHECK(eng_gguf_set_f32(w, KEY("rope.freq_base"), base));
    if (o->head_dim) {
        CHECK(eng_gguf_set_u32(w, KEY("attention.key_length"), (uint32_t)hd));
        CHECK(eng_gguf_set_u32(w, KEY("attention.value_length"), (uint32_t)hd));
    }
    CHECK(eng_gguf_set_u32(w, KEY("vocab_size"), (uint32_t)V));
    if (!strcmp(o->rope_scaling, "linear")) {
        CHECK(eng_gguf_set_str(w, KEY("rope.scaling.type"), "linear"));
        CHECK(eng_gguf_set_f32(w, KEY("rope.scaling.factor"), 4.0f));
    }
    if (V >= 259) CHECK(add_tokenizer(w, V));

    float wstd_e = 1.0f / sqrtf((float)E);
    enum eng_type emb_type = o->mix ? ENG_TYPE_Q4_K : o->type;
    CHECK(add(w, "token_embd.weight", emb_type, E, V, 1.0f, 0.0f));
    CHECK(add(w, "output_norm.weight", ENG_TYPE_F32, E, 1, 0.1f, 1.0f));
    if (!o->tied)
        CHECK(add(w, "output.weight", mix_type(o, "output", 0), E, V, 2.0f * wstd_e, 0.0f));
    if (!strcmp(o->rope_scaling, "llama3")) {
        float *fac = keep(malloc((size_t)hd / 2 * sizeof(float)));
        if (!fac) CHECK(ENG_ENOMEM);
        eng_rope_llama3_factors(fac, hd, base, 8.0f, 1.0f, 4.0f, 64);
        int64_t ne[1] = {hd / 2};
        CHECK(eng_gguf_add_tensor(w, "rope_freqs.weight", ENG_TYPE_F32, 1, ne, fac));
    }
    for (int l = 0; l < o->n_layer; l++) {
#define ADD(suffix, kind, n0, n1, std, mean)                                                       \
    do {                                                                                           \
        snprintf(name, sizeof(name), "blk.%d.%s", l, suffix);                                      \
        CHECK(add(w, name, n1 > 1 ? mix_type(o, kind, l) : ENG_TYPE_F32, n0, n1, std, mean));      \
    } while (0)
        ADD("attn_norm.weight", "norm", E, 1, 0.1f, 1.0f);
        ADD("attn_q.weight", "attn_q", E, Q, wstd_e, 0.0f);
        ADD("attn_k.weight", "attn_k", E, KV, wstd_e, 0.0f);
        ADD("attn_v.weight", "attn_v", E, KV, wstd_e, 0.0f);
        ADD("attn_output.weight", "attn_output", Q, E, 1.0f / sqrtf((float)Q), 0.0f);
        if (!strcmp(o->arch, "qwen2")) {
            ADD("attn_q.bias", "bias", Q, 1, 0.1f, 0.0f);
            ADD("attn_k.bias", "bias", KV, 1, 0.1f, 0.0f);
            ADD("attn_v.bias", "bias", KV, 1, 0.1f, 0.0f);
        }
        if (!strcmp(o->arch, "qwen3")) {
            ADD("attn_q_norm.weight", "norm", hd, 1, 0.1f, 1.0f);
            ADD("attn_k_norm.weight", "norm", hd, 1, 0.1f, 1.0f);
        }
        ADD("ffn_norm.weight", "norm", E, 1, 0.1f, 1.0f);
        ADD("ffn_gate.weight", "ffn_gate", E, F, wstd_e, 0.0f);
        ADD("ffn_up.weight", "ffn_up", E, F, wstd_e, 0.0f);
        ADD("ffn_down.weight", "ffn_down", F, E, 1.0f / sqrtf((float)F), 0.0f);
#undef ADD
    }
    err = eng_gguf_writer_write(w, o->out);
out:
    if (err) fprintf(stderr, "genmodel: %s\n", eng_last_error());
    eng_gguf_writer_free(w);
    for (int i = 0; i < n_bufs; i++) free(bufs[i].data);
    return err ? 1 : 0;
#undef KEY
#undef CHECK
}

static void usage(FILE *f) {
    fprintf(f,
            "usage: genmodel --arch llama|qwen2|qwen3 --type f32|f16|bf16|q8_0|q4_0|...|q4_k_m\n"
            "                [--seed N] [--n-embd 64] [--n-layer 3] [--n-head 4] [--n-head-kv 2]\n"
            "                [--head-dim D] [--n-ff 96] [--n-vocab 320] [--ctx 256] [--tied]\n"
            "                [--rope-scaling none|linear|llama3] -o FILE.gguf\n");
}

int main(int argc, char **argv) {
    struct opts o = {"llama", NULL, "none", "f32", ENG_TYPE_F32, 1,   64,    3,
                     4,       2,    0,      96,    320,          256, false, NULL};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int *ip = NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--tied")) {
            o.tied = true;
            continue;
        }
        if (!v) {
            usage(stderr);
            return 2;
        }
        i++;
        if (!strcmp(a, "--arch"))
            o.arch = v;
        else if (!strcmp(a, "--type"))
            o.type_name = v;
        else if (!strcmp(a, "-o"))
            o.out = v;
        else if (!strcmp(a, "--rope-scaling"))
            o.rope_scaling = v;
        else if (!strcmp(a, "--seed"))
            o.seed = strtoull(v, NULL, 10);
        else if (!strcmp(a, "--n-embd"))
            ip = &o.n_embd;
        else if (!strcmp(a, "--n-layer"))
            ip = &o.n_layer;
        else if (!strcmp(a, "--n-head"))
            ip = &o.n_head;
        else if (!strcmp(a, "--n-head-kv"))
            ip = &o.n_head_kv;
        else if (!strcmp(a, "--head-dim"))
            ip = &o.head_dim;
        else if (!strcmp(a, "--n-ff"))
            ip = &o.n_ff;
        else if (!strcmp(a, "--n-vocab"))
            ip = &o.n_vocab;
        else if (!strcmp(a, "--ctx"))
            ip = &o.ctx;
        else {
            fprintf(stderr, "genmodel: unknown option %s\n", a);
            return 2;
        }
        if (ip) {
            char *end;
            long x = strtol(v, &end, 10);
            if (*end || x < 0 || x > 1000000) {
                fprintf(stderr, "genmodel: bad value for %s: %s\n", a, v);
                return 2;
            }
            *ip = (int)x;
        }
    }
    if (!o.out) {
        usage(stderr);
        return 2;
    }
    if (strcmp(o.arch, "llama") && strcmp(o.arch, "qwen2") && strcmp(o.arch, "qwen3")) {
        fprintf(stderr, "genmodel: unknown arch %s\n", o.arch);
        return 2;
    }
    if (strcmp(o.rope_scaling, "none") && strcmp(o.rope_scaling, "linear") &&
        strcmp(o.rope_scaling, "llama3")) {
        fprintf(stderr, "genmodel: unknown rope scaling %s\n", o.rope_scaling);
        return 2;
    }
    if (!strcmp(o.type_name, "q4_k_m")) {
        o.mix = "q4_k_m";
        o.type = ENG_TYPE_Q4_K;
    } else {
        int t = eng_type_from_name(o.type_name);
        if (t < 0) {
            fprintf(stderr, "genmodel: unknown type %s\n", o.type_name);
            return 2;
        }
        o.type = (enum eng_type)t;
    }
    if (!o.n_head || !o.n_head_kv || o.n_head % o.n_head_kv ||
        (!o.head_dim && o.n_embd % o.n_head)) {
        fprintf(stderr, "genmodel: inconsistent head counts\n");
        return 2;
    }
    rng_state = o.seed * 0x9E3779B97F4A7C15ull + 0x2545F4914F6CDD1Dull;
    if (!rng_state) rng_state = 1;
    return generate(&o);
}
