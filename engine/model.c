/*
 * model.c — loading a model: architecture and hyperparameters from the standard GGUF metadata
 * keys, every tensor looked up and checked for presence, type and shape, views carved from the
 * read-only mapping. Small vectors (norm weights, biases, rope factors) are copied to F32 once.
 * It does not run anything (forward.c) nor read the tokenizer (tokenizer.c).
 */
#include "internal.h"

#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static const char *const arch_names[ENG_ARCH_COUNT] = {
    [ENG_ARCH_LLAMA] = "llama",
    [ENG_ARCH_QWEN2] = "qwen2",
    [ENG_ARCH_QWEN3] = "qwen3",
};

const char *eng_arch_name(enum eng_arch a) {
    return (unsigned)a < ENG_ARCH_COUNT ? arch_names[a] : "?";
}

const struct eng_hparams *eng_model_hparams(const struct eng_model *m) {
    return &m->hp;
}
const struct eng_gguf *eng_model_gguf(const struct eng_model *m) {
    return m->gguf;
}

int64_t eng_model_n_params(const struct eng_model *m) {
    int64_t n = 0;
    for (int64_t i = 0; i < eng_gguf_n_tensors(m->gguf); i++) {
        const struct eng_tensor *t = eng_gguf_tensor_at(m->gguf, i);
        int64_t e = 1;
        for (int d = 0; d < t->n_dims; d++) e *= t->ne[d];
        n += e;
    }
    return n;
}

size_t eng_model_weight_bytes(const struct eng_model *m) {
    size_t n = 0;
    for (int64_t i = 0; i < eng_gguf_n_tensors(m->gguf); i++)
        n += eng_gguf_tensor_at(m->gguf, i)->nbytes;
    return n;
}

void eng_tensor_row_f32(const struct eng_tensor *t, int64_t r, float *out) {
    const struct eng_type_traits *tr = eng_type_traits(t->type);
    size_t rs = eng_row_size(t->type, t->ne[0]);
    if (tr->row_group <= 1) {
        tr->to_float((const uint8_t *)t->data + (size_t)r * rs, out, t->ne[0]);
        return;
    }
    /* an interleaved layout: read out and converted 64 blocks at a time */
    const struct eng_type_traits *rt = eng_type_traits(tr->row_type);
    const int64_t nb = t->ne[0] / tr->blck_size;
    _Alignas(64) uint8_t part[64 * 64];
    for (int64_t b0 = 0; b0 < nb; b0 += 64) {
        int64_t b1 = ENG_MIN(nb, b0 + 64);
        eng_deinterleave_blocks(t->type, t->data, t->ne[0], r, b0, b1, part);
        rt->to_float(part, out + b0 * tr->blck_size, (b1 - b0) * tr->blck_size);
    }
}

/* ---- hyperparameters ---- */

struct loader {
    const char *path;
    struct eng_gguf *g;
    const char *arch;
};

/* Reads {arch}.<key> as a positive int within [lo, hi]; def < 0 means required. */
static int get_int(struct loader *L, const char *key, int64_t def, int64_t lo, int64_t hi,
                   int *out) {
    char full[128];
    snprintf(full, sizeof(full), "%s.%s", L->arch, key);
    int64_t v;
    int err = eng_gguf_get_i64(L->g, full, &v);
    if (err == ENG_ENOTFOUND) {
        if (def < 0)
            return eng_fail(ENG_EFORMAT, "%s: required metadata %s is missing", L->path, full);
        v = def;
    } else if (err) {
        const struct eng_gguf_value *val = eng_gguf_get(L->g, full);
        if (val && val->type == ENG_GGUF_ARRAY)
            return eng_fail(ENG_EUNSUPPORTED, "%s: per-layer %s (an array) is not supported",
                            L->path, full);
        return err;
    }
    if (v < lo || v > hi)
        return eng_fail(ENG_EFORMAT, "%s: %s = %lld is out of range [%lld, %lld]", L->path, full,
                        (long long)v, (long long)lo, (long long)hi);
    *out = (int)v;
    return 0;
}

static int get_float(struct loader *L, const char *key, float def, float lo, float hi, float *out) {
    char full[128];
    snprintf(full, sizeof(full), "%s.%s", L->arch, key);
    float v;
    int err = eng_gguf_get_f32(L->g, full, &v);
    if (err == ENG_ENOTFOUND)
        v = def;
    else if (err)
        return err;
    if (!(v >= lo && v <= hi))
        return eng_fail(ENG_EFORMAT, "%s: %s = %g is out of range [%g, %g]", L->path, full, v, lo,
                        hi);
    *out = v;
    return 0;
}

static int read_hparams(struct loader *L, struct eng_hparams *hp) {
    int err;
    const char *arch = eng_gguf_get_str(L->g, "general.architecture");
    if (!arch) return eng_fail(ENG_EFORMAT, "%s: general.architecture is missing", L->path);
    int a = -1;
    for (int i = 0; i < ENG_ARCH_COUNT; i++)
        if (strcmp(arch, arch_names[i]) == 0) a = i;
    if (a < 0)
        return eng_fail(ENG_EUNSUPPORTED,
                        "%s: architecture '%s' is not supported (supported: llama, qwen2, qwen3)",
                        L->path, arch);
    L->arch = arch;
    hp->arch = (enum eng_arch)a;
    if ((err = get_int(L, "embedding_length", -1, 1, 65536, &hp->n_embd))) return err;
    if ((err = get_int(L, "block_count", -1, 1, 1024, &hp->n_layer))) return err;
    if ((err = get_int(L, "feed_forward_length", -1, 1, 1 << 20, &hp->n_ff))) return err;
    if ((err = get_int(L, "attention.head_count", -1, 1, 1024, &hp->n_head))) return err;
    if ((err = get_int(L, "attention.head_count_kv", hp->n_head, 1, hp->n_head, &hp->n_head_kv)))
        return err;
    if (hp->n_head % hp->n_head_kv)
        return eng_fail(ENG_EFORMAT, "%s: head_count %d is not a multiple of head_count_kv %d",
                        L->path, hp->n_head, hp->n_head_kv);
    int def_hd = hp->n_embd % hp->n_head == 0 ? hp->n_embd / hp->n_head : -1;
    if ((err = get_int(L, "attention.key_length", def_hd, 1, 4096, &hp->head_dim))) return err;
    int vlen;
    if ((err = get_int(L, "attention.value_length", hp->head_dim, 1, 4096, &vlen))) return err;
    if (vlen != hp->head_dim)
        return eng_fail(ENG_EUNSUPPORTED, "%s: key_length %d != value_length %d", L->path,
                        hp->head_dim, vlen);
    if ((err = get_int(L, "rope.dimension_count", hp->head_dim, 2, hp->head_dim, &hp->n_rot)))
        return err;
    if (hp->n_rot % 2)
        return eng_fail(ENG_EFORMAT, "%s: rope.dimension_count %d is odd", L->path, hp->n_rot);
    if ((err = get_int(L, "context_length", 2048, 1, 1 << 24, &hp->n_ctx_train))) return err;
    float def_eps = hp->arch == ENG_ARCH_LLAMA ? 1e-5f : 1e-6f;
    if ((err = get_float(L, "attention.layer_norm_rms_epsilon", def_eps, 0.0f, 1.0f, &hp->rms_eps)))
        return err;
    if ((err = get_float(L, "rope.freq_base", 10000.0f, 1.0f, 1e12f, &hp->rope_base))) return err;

    hp->rope_scale = 1.0f;
    char key[128];
    snprintf(key, sizeof(key), "%s.rope.scaling.type", arch);
    const char *stype = eng_gguf_get_str(L->g, key);
    float factor = 1.0f;
    if ((err = get_float(L, "rope.scaling.factor", 1.0f, 1e-3f, 1e6f, &factor))) return err;
    if (stype && strcmp(stype, "linear") == 0) {
        hp->rope_scale = 1.0f / factor;
    } else if (stype && strcmp(stype, "none") != 0 && strcmp(stype, "llama3") != 0) {
        return eng_fail(ENG_EUNSUPPORTED, "%s: rope scaling '%s' is not supported", L->path, stype);
    } else if (!stype) {
        float lin; /* older files: rope.scale_linear */
        if ((err = get_float(L, "rope.scale_linear", 1.0f, 1e-3f, 1e6f, &lin))) return err;
        hp->rope_scale = 1.0f / lin;
    }
    hp->rope_mode = hp->arch == ENG_ARCH_LLAMA ? ENG_ROPE_NORM : ENG_ROPE_NEOX;
    return 0;
}

/* ---- tensors ---- */

enum need_kind {
    NEED_MATRIX, /* used in matrix products: needs vec_dot */
    NEED_ROWS,   /* rows read as floats (embeddings, small vectors) */
};

static const struct eng_tensor *get_tensor(struct loader *L, const char *name, int64_t ne0,
                                           int64_t ne1, enum need_kind kind, bool optional,
                                           int *err) {
    const struct eng_tensor *t = eng_gguf_find_tensor(L->g, name);
    if (!t) {
        if (!optional) *err = eng_fail(ENG_EFORMAT, "%s: tensor '%s' is missing", L->path, name);
        return NULL;
    }
    int64_t want_dims = ne1 > 1 ? 2 : 1;
    bool shape_ok = t->ne[0] == ne0 && t->ne[1] == ne1 && t->ne[2] == 1 && t->ne[3] == 1 &&
                    (t->n_dims == want_dims || (t->n_dims == 2 && ne1 == 1));
    if (!shape_ok) {
        *err = eng_fail(ENG_EFORMAT,
                        "%s: tensor '%s' has shape [%lld, %lld, %lld, %lld], expected [%lld, %lld]",
                        L->path, name, (long long)t->ne[0], (long long)t->ne[1],
                        (long long)t->ne[2], (long long)t->ne[3], (long long)ne0, (long long)ne1);
        return NULL;
    }
    const struct eng_type_traits *tr = eng_type_traits(t->type);
    if (!tr || !tr->to_float || (kind == NEED_MATRIX && !tr->vec_dot)) {
        *err =
            eng_fail(ENG_EUNSUPPORTED, "%s: tensor '%s' has type %s, which this build cannot run",
                     L->path, name, eng_type_name(t->type));
        return NULL;
    }
    return t;
}

static int load_tensors(struct loader *L, struct eng_model *m) {
    const struct eng_hparams *hp = &m->hp;
    int err = 0;
    int64_t E = hp->n_embd, V = m->hp.n_vocab, F = hp->n_ff;
    int64_t Q = (int64_t)hp->n_head * hp->head_dim, KV = (int64_t)hp->n_head_kv * hp->head_dim;
    char name[96];

    m->tok_embd = get_tensor(L, "token_embd.weight", E, V, NEED_ROWS, false, &err);
    if (err) return err;
    m->output_norm = get_tensor(L, "output_norm.weight", E, 1, NEED_ROWS, false, &err);
    if (err) return err;
    m->output = get_tensor(L, "output.weight", E, V, NEED_MATRIX, true, &err);
    if (err) return err;
    if (!m->output) {
        m->output = get_tensor(L, "token_embd.weight", E, V, NEED_MATRIX, false, &err);
        if (err) return err;
        m->hp.tied_output = true;
    }
    m->rope_freqs = get_tensor(L, "rope_freqs.weight", hp->n_rot / 2, 1, NEED_ROWS, true, &err);
    if (err) return err;
    m->hp.has_rope_freqs = m->rope_freqs != NULL;

    m->layers = calloc((size_t)hp->n_layer, sizeof(*m->layers));
    if (!m->layers) return eng_fail(ENG_ENOMEM, "%s: out of memory", L->path);
    m->hp.has_qkv_bias = hp->arch == ENG_ARCH_QWEN2;
    m->hp.has_qk_norm = hp->arch == ENG_ARCH_QWEN3;
    for (int l = 0; l < hp->n_layer; l++) {
        struct eng_layer *ly = &m->layers[l];
#define T(field, suffix, n0, n1, kind, opt)                                                        \
    do {                                                                                           \
        snprintf(name, sizeof(name), "blk.%d.%s", l, suffix);                                      \
        ly->field = get_tensor(L, name, n0, n1, kind, opt, &err);                                  \
        if (err) return err;                                                                       \
    } while (0)
        T(attn_norm, "attn_norm.weight", E, 1, NEED_ROWS, false);
        T(wq, "attn_q.weight", E, Q, NEED_MATRIX, false);
        T(wk, "attn_k.weight", E, KV, NEED_MATRIX, false);
        T(wv, "attn_v.weight", E, KV, NEED_MATRIX, false);
        T(wo, "attn_output.weight", Q, E, NEED_MATRIX, false);
        T(ffn_norm, "ffn_norm.weight", E, 1, NEED_ROWS, false);
        T(w_gate, "ffn_gate.weight", E, F, NEED_MATRIX, false);
        T(w_up, "ffn_up.weight", E, F, NEED_MATRIX, false);
        T(w_down, "ffn_down.weight", F, E, NEED_MATRIX, false);
        /* Biases: required for qwen2, honoured when present for the others. */
        bool bias_opt = hp->arch != ENG_ARCH_QWEN2;
        T(bq, "attn_q.bias", Q, 1, NEED_ROWS, bias_opt);
        T(bk, "attn_k.bias", KV, 1, NEED_ROWS, bias_opt);
        T(bv, "attn_v.bias", KV, 1, NEED_ROWS, bias_opt);
        bool norm_opt = hp->arch != ENG_ARCH_QWEN3;
        T(q_norm, "attn_q_norm.weight", hp->head_dim, 1, NEED_ROWS, norm_opt);
        T(k_norm, "attn_k_norm.weight", hp->head_dim, 1, NEED_ROWS, norm_opt);
#undef T
        if (ly->bq || ly->bk || ly->bv) m->hp.has_qkv_bias = true;
        if (ly->q_norm || ly->k_norm) m->hp.has_qk_norm = true;
    }
    return 0;
}

/* Copies every small vector to F32 in one allocation. */
static int copy_small(struct eng_model *m) {
    const struct eng_hparams *hp = &m->hp;
    size_t n = (size_t)hp->n_embd + (m->rope_freqs ? (size_t)hp->n_rot / 2 : 0);
    for (int l = 0; l < hp->n_layer; l++) {
        const struct eng_layer *ly = &m->layers[l];
        n += 2 * (size_t)hp->n_embd;
        if (ly->bq) n += (size_t)ly->bq->ne[0];
        if (ly->bk) n += (size_t)ly->bk->ne[0];
        if (ly->bv) n += (size_t)ly->bv->ne[0];
        if (ly->q_norm) n += (size_t)hp->head_dim;
        if (ly->k_norm) n += (size_t)hp->head_dim;
    }
    m->small = malloc(n * sizeof(float));
    m->lf = calloc((size_t)hp->n_layer, sizeof(*m->lf));
    if (!m->small || !m->lf) return eng_fail(ENG_ENOMEM, "out of memory");
    float *p = m->small;
#define TAKE(dst, t)                                                                               \
    do {                                                                                           \
        if (t) {                                                                                   \
            dst = p;                                                                               \
            eng_tensor_row_f32(t, 0, p);                                                           \
            p += (t)->ne[0];                                                                       \
        }                                                                                          \
    } while (0)
    TAKE(m->output_norm_f, m->output_norm);
    TAKE(m->rope_freqs_f, m->rope_freqs);
    for (int l = 0; l < hp->n_layer; l++) {
        const struct eng_layer *ly = &m->layers[l];
        struct eng_layer_f *lf = &m->lf[l];
        TAKE(lf->attn_norm, ly->attn_norm);
        TAKE(lf->ffn_norm, ly->ffn_norm);
        TAKE(lf->bq, ly->bq);
        TAKE(lf->bk, ly->bk);
        TAKE(lf->bv, ly->bv);
        TAKE(lf->q_norm, ly->q_norm);
        TAKE(lf->k_norm, ly->k_norm);
    }
#undef TAKE
    if (m->rope_freqs_f) {
        for (int i = 0; i < hp->n_rot / 2; i++)
            if (!(m->rope_freqs_f[i] > 0.0f))
                return eng_fail(ENG_EFORMAT, "rope_freqs.weight has a non-positive factor");
    }
    return 0;
}

/* The weight matrices of a layer: GGUF name part and slot in struct eng_layer. */
static const struct {
    const char *kind;
    size_t off;
} kinds[] = {
    {"attn_q", offsetof(struct eng_layer, wq)},
    {"attn_k", offsetof(struct eng_layer, wk)},
    {"attn_v", offsetof(struct eng_layer, wv)},
    {"attn_output", offsetof(struct eng_layer, wo)},
    {"ffn_gate", offsetof(struct eng_layer, w_gate)},
    {"ffn_up", offsetof(struct eng_layer, w_up)},
    {"ffn_down", offsetof(struct eng_layer, w_down)},
};
#define N_KINDS ((int)(sizeof(kinds) / sizeof(kinds[0])))

/* Faults the pages of the tensor data in now (MADV_POPULATE_READ, Linux 5.14): what the file
 * system has not cached is read, and the page tables are filled, so that the first forward pass
 * does not wait for the file. edgellmd asks for it, so that reading the model is part of its
 * loading (/health answers 503 meanwhile) and not of its first request (L1B Q4_0 out of the
 * page cache: first token of the first request 144-150 ms after sending it, against 66-75 ms
 * with this, the next requests' 24-44 ms; the load 0.13 s against 0.25-0.27 s). Advice only: an
 * older kernel or a failure leaves the pages to be faulted in on first use. */
static int matrix_slots(struct eng_model *m, const struct eng_tensor ***slots);
static void populate(struct eng_model *m) {
#ifdef MADV_POPULATE_READ
    /* the tensors passes read from the mapping: the matrices and the embedding, not the small
     * vectors (copied to F32 at load: with 2 MiB entries each of those would map the 2 MiB
     * around it, in between interleaved copies' released originals, 57 MiB of L110M's 73) */
    const uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    const struct eng_tensor ***slots =
        malloc(sizeof(*slots) * ((size_t)N_KINDS * m->hp.n_layer + 1));
    if (!slots) return; /* advice only */
    int n = matrix_slots(m, slots);
    for (int i = 0; i <= n; i++) {
        const struct eng_tensor *t = i < n ? *slots[i] : m->tok_embd;
        if (!t->nbytes || eng_type_traits(t->type)->row_group > 1) continue; /* a copy in RAM */
        uintptr_t lo = (uintptr_t)t->data & ~(page - 1), hi = (uintptr_t)t->data + t->nbytes;
        (void)madvise((void *)lo, hi - lo, MADV_POPULATE_READ);
    }
    free(slots);
#else
    (void)m;
#endif
}

/* Whether the model reads t (a tensor of the file) from an interleaved copy instead. */
static bool replaced(const struct eng_model *m, const struct eng_tensor *t) {
    for (int k = 0; k < m->n_xt; k++)
        if (m->xt[k].name == t->name) return true;
    return false;
}

/* The layout a weight takes for this CPU's kernels, or -1 to keep the file's: q4_0 matrices
 * whose rows come in whole groups become Q4_0X16 where the level has kernels for it. */
static int interleaved_type(const struct eng_tensor *t) {
    const struct eng_type_traits *x = eng_type_traits(ENG_TYPE_Q4_0X16);
    if (t->type != ENG_TYPE_Q4_0 || !x || !x->vec_dot_cols || !x->vec_dot_rows) return -1;
    if (t->ne[0] % ENG_QK4_0 || t->ne[1] % x->row_group || t->ne[2] != 1 || t->ne[3] != 1)
        return -1;
    return ENG_TYPE_Q4_0X16;
}

/* Every weight matrix slot of the model (N_KINDS per layer, then the output; the output once
 * when tied to the embedding). slots holds N_KINDS · n_layer + 1. */
static int matrix_slots(struct eng_model *m, const struct eng_tensor ***slots) {
    int n = 0;
    for (int l = 0; l < m->hp.n_layer; l++)
        for (int i = 0; i < N_KINDS; i++)
            slots[n++] = (const struct eng_tensor **)((char *)&m->layers[l] + kinds[i].off);
    slots[n++] = &m->output;
    return n;
}

/* Lays the weights out for the kernels (eng_model_params.interleave): one allocation holds the
 * converted matrices (2 MiB aligned, huge pages advised, as the mapping's), the model's slots
 * point at tensors of the new type, and the mapped pages of the originals are let go (the file
 * stays in the page cache; they are mapped again only if something reads them). Called before
 * any pass. */
static int interleave(struct eng_model *m, const char *path) {
    const int max_slots = N_KINDS * m->hp.n_layer + 1;
    const struct eng_tensor ***slots = malloc(sizeof(*slots) * (size_t)max_slots);
    if (!slots) return eng_fail(ENG_ENOMEM, "%s: out of memory", path);
    int n = matrix_slots(m, slots), n_x = 0;
    size_t total = 0;
    for (int i = 0; i < n; i++)
        if (interleaved_type(*slots[i]) >= 0) total += ((*slots[i])->nbytes + 63) / 64 * 64, n_x++;
    if (n_x == 0) {
        free(slots);
        return 0;
    }
    const size_t huge = (size_t)2 << 20;
    void *buf = NULL;
    m->xt = calloc((size_t)n_x, sizeof(*m->xt));
    if (!m->xt || posix_memalign(&buf, huge, (total + huge - 1) / huge * huge) != 0) {
        free(slots);
        return eng_fail(ENG_ENOMEM, "%s: out of memory laying out the weights (%zu bytes)", path,
                        total);
    }
    m->xbuf = buf;
    (void)madvise(buf, (total + huge - 1) / huge * huge, MADV_HUGEPAGE);
    const uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    uint8_t *p = buf;
    for (int i = 0; i < n; i++) {
        const struct eng_tensor *t = *slots[i];
        int type = interleaved_type(t);
        if (type < 0) continue;
        struct eng_tensor *x = &m->xt[m->n_xt++];
        *x = *t;
        x->type = (enum eng_type)type;
        x->data = p;
        eng_interleave_rows(x->type, t->data, p, t->ne[0], t->ne[1]);
        p += (t->nbytes + 63) / 64 * 64;
        /* the whole pages inside the original, as it goes (the peak stays near one copy;
         * model/interleave_releases_mapping) */
        uintptr_t lo = ((uintptr_t)t->data + page - 1) & ~(page - 1);
        uintptr_t hi = ((uintptr_t)t->data + t->nbytes) & ~(page - 1);
        if (hi > lo) (void)madvise((void *)lo, hi - lo, MADV_DONTNEED);
        if (m->tok_embd == t) m->tok_embd = x; /* tied output: the embedding reads the same */
        *slots[i] = x;
    }
    free(slots);
    return 0;
}

struct eng_model *eng_model_load(const char *path, const struct eng_model_params *params) {
    struct eng_model *m = calloc(1, sizeof(*m));
    if (!m) {
        eng_fail(ENG_ENOMEM, "%s: out of memory", path);
        return NULL;
    }
    m->gguf = eng_gguf_open(path);
    if (!m->gguf) goto err;
    struct loader L = {path, m->gguf, NULL};
    if (read_hparams(&L, &m->hp) != 0) goto err;
    const struct eng_tensor *te = eng_gguf_find_tensor(m->gguf, "token_embd.weight");
    if (!te) {
        eng_fail(ENG_EFORMAT, "%s: tensor 'token_embd.weight' is missing", path);
        goto err;
    }
    if (te->ne[1] < 1 || te->ne[1] > (1 << 24)) {
        eng_fail(ENG_EFORMAT, "%s: token_embd.weight has %lld rows", path, (long long)te->ne[1]);
        goto err;
    }
    m->hp.n_vocab = (int)te->ne[1];
    int vocab_key;
    if (get_int(&L, "vocab_size", m->hp.n_vocab, 1, 1 << 24, &vocab_key) != 0) goto err;
    if (vocab_key != m->hp.n_vocab) {
        eng_fail(ENG_EFORMAT, "%s: vocab_size %d does not match token_embd.weight rows %d", path,
                 vocab_key, m->hp.n_vocab);
        goto err;
    }
    if (load_tensors(&L, m) != 0) goto err;
    if (copy_small(m) != 0) goto err;
    if (params && params->interleave && interleave(m, path) != 0) goto err;
    if (params && params->populate && !params->use_mlock) populate(m);
    if (params && params->use_mlock) {
        if (m->xbuf && m->n_xt > 0) {
            const struct eng_tensor *last = &m->xt[m->n_xt - 1];
            size_t len =
                (size_t)((const uint8_t *)last->data - (const uint8_t *)m->xbuf) + last->nbytes;
            if (mlock(m->xbuf, len) != 0) {
                eng_fail(ENG_EIO, "%s: mlock failed: %s (raise RLIMIT_MEMLOCK or drop --mlock)",
                         path, strerror(errno));
                goto err;
            }
        }
        for (int64_t i = 0; i < eng_gguf_n_tensors(m->gguf); i++) {
            const struct eng_tensor *t = eng_gguf_tensor_at(m->gguf, i);
            if (replaced(m, t)) continue; /* by an interleaved copy, locked above */
            if (mlock(t->data, t->nbytes) != 0) {
                eng_fail(ENG_EIO, "%s: mlock failed: %s (raise RLIMIT_MEMLOCK or drop --mlock)",
                         path, strerror(errno));
                goto err;
            }
        }
    }
    return m;
err:
    eng_model_free(m);
    return NULL;
}

void eng_model_free(struct eng_model *m) {
    if (!m) return;
    free(m->layers);
    free(m->small);
    free(m->lf);
    free(m->xt);
    free(m->xbuf);
    eng_gguf_close(m->gguf);
    free(m);
}

void eng_rope_llama3_factors(float *factors, int n_rot, float base, float factor, float low_freq,
                             float high_freq, int orig_ctx) {
    const double pi = 3.14159265358979323846;
    double low_wavelen = orig_ctx / (double)low_freq, high_wavelen = orig_ctx / (double)high_freq;
    for (int i = 0; i < n_rot / 2; i++) {
        double freq = pow((double)base, -2.0 * i / n_rot);
        double wavelen = 2 * pi / freq, scaled;
        if (wavelen < high_wavelen) {
            scaled = freq;
        } else if (wavelen > low_wavelen) {
            scaled = freq / factor;
        } else {
            double smooth = (orig_ctx / wavelen - low_freq) / (high_freq - low_freq);
            scaled = (1 - smooth) * freq / factor + smooth * freq;
        }
        factors[i] = (float)(freq / scaled);
    }
}

/* The model's pointer slot holding the weight called name, or NULL. */
static const struct eng_tensor **tensor_slot(struct eng_model *m, const char *name) {
    if (!strcmp(name, "token_embd.weight")) return &m->tok_embd;
    if (!strcmp(name, "output.weight")) return m->hp.tied_output ? NULL : &m->output;
    int l, n = 0;
    char kind[64];
    if (sscanf(name, "blk.%d.%63[a-z_].weight%n", &l, kind, &n) != 2 || name[n] != 0 || l < 0 ||
        l >= m->hp.n_layer)
        return NULL;
    struct eng_layer *ly = &m->layers[l];
    for (int i = 0; i < N_KINDS; i++)
        if (!strcmp(kind, kinds[i].kind))
            return (const struct eng_tensor **)((char *)ly + kinds[i].off);
    return NULL;
}

const struct eng_tensor *eng_model_tensor(const struct eng_model *m, const char *name) {
    const struct eng_tensor **slot = tensor_slot((struct eng_model *)m, name);
    return slot ? *slot : NULL;
}

int eng_model_replace_tensor(struct eng_model *m, const char *name, const struct eng_tensor *t) {
    const struct eng_tensor **slot = tensor_slot(m, name);
    if (!slot) return eng_fail(ENG_ENOTFOUND, "the model has no weight '%s'", name);
    const struct eng_tensor *old = *slot;
    if (t->ne[0] != old->ne[0] || t->ne[1] != old->ne[1] || t->ne[2] != 1 || t->ne[3] != 1)
        return eng_fail(ENG_EINVAL, "replacement for '%s' has another shape", name);
    const struct eng_type_traits *tr = eng_type_traits(t->type);
    if (!tr || !tr->to_float || !tr->vec_dot || eng_row_size(t->type, t->ne[0]) == 0)
        return eng_fail(ENG_EINVAL, "replacement for '%s' has type %s without kernels", name,
                        eng_type_name(t->type));
    if (slot == &m->tok_embd && m->hp.tied_output) m->output = t;
    *slot = t;
    return 0;
}
