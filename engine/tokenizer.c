/*
 * tokenizer.c — text ⇄ token ids for the vocabularies GGUF files carry.
 *
 * Owns: loading tokenizer.ggml.* metadata into hash maps; the two tokenizer models
 *   - "llama": SentencePiece-style — spaces escaped as "▁", a "▁" prefix, pieces merged by score
 *     (highest first), or by merge rank when the file carries tokenizer.ggml.merges (files
 *     converted from a tokenizer.json BPE model: this reproduces its merges exactly), and byte
 *     fallback to <0xXX> tokens for anything the vocabulary lacks;
 *   - "gpt2": byte-level BPE — text split by the pre-tokenizer regex named by tokenizer.ggml.pre
 *     (gpt2, llama3, qwen2; hand-written matchers, no regex engine), bytes mapped to printable
 *     characters, merges applied by rank;
 * special/added tokens found in text, NFC normalization when the tokenizer asks for it,
 * detokenization, and streaming detokenization that never splits a UTF-8 sequence.
 * Both merge loops use a heap over a linked list of symbols: O(n log n) in the text length.
 *
 * Does not: apply chat templates (chat.c) or sample (sampler.c). Immutable after load.
 */
#include "engine.h"
#include "internal.h"
#include "unicode.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum tok_model { TOK_LLAMA, TOK_GPT2 };
enum tok_pre { PRE_NONE, PRE_GPT2, PRE_LLAMA3, PRE_QWEN2 };
enum tok_prefix { PREFIX_NEVER, PREFIX_ALWAYS, PREFIX_FIRST };

struct merge_slot {
    uint64_t key; /* (left << 32 | right) + 1; 0 = empty */
    int32_t rank;
    int32_t result;
};

struct eng_tokenizer {
    enum tok_model model;
    enum tok_pre pre;
    enum tok_prefix prefix; /* when "▁" is prepended to a piece of text (llama) */
    bool nfc;               /* NFC-normalize text before splitting */
    bool ignore_merges;     /* a whole pre-token found in the vocabulary is taken as is */
    bool add_bos, add_eos;
    int n_vocab;
    char *blob;          /* every token's text, then every piece, NUL-separated */
    uint32_t *text_off;  /* (n_vocab) into blob */
    uint32_t *text_len;  /* (n_vocab) */
    uint32_t *piece_off; /* (n_vocab) decoded bytes of each token (specials: their text) */
    uint32_t *piece_len; /* (n_vocab) */
    float *scores;       /* (n_vocab) */
    uint8_t *attr;       /* (n_vocab) enum eng_token_attr */
    uint8_t *eog;        /* (n_vocab) 1 = ends a generation */
    int max_piece;
    /* text → id, open addressing, stores id + 1 */
    int32_t *hmap;
    uint32_t hmask;
    /* (left, right) → (rank, result) */
    struct merge_slot *mmap;
    uint64_t mmask;
    bool has_merges;
    int32_t byte_tok[256]; /* llama: <0xXX>; gpt2: the byte's printable character */
    int32_t bos, eos, unk, eot, eom, pad;
    /* special tokens matched in text, grouped by first byte, longest first */
    int32_t *special;      /* (n_special) */
    int32_t sp_first[257]; /* special[sp_first[b] .. sp_first[b+1]) start with byte b */
    int n_special;
};

/* ---- hashing ---- */

static uint64_t hash_bytes(const char *s, size_t n) {
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 1099511628211ull;
    }
    return h ^ (h >> 29);
}

static uint64_t hash_u64(uint64_t x) {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    return x ^ (x >> 33);
}

static const char *tok_text(const struct eng_tokenizer *t, int32_t id) {
    return t->blob + t->text_off[id];
}

int32_t eng_token_lookup(const struct eng_tokenizer *t, const char *text, size_t len) {
    uint32_t i = (uint32_t)hash_bytes(text, len) & t->hmask;
    for (;; i = (i + 1) & t->hmask) {
        int32_t v = t->hmap[i];
        if (!v) return -1;
        int32_t id = v - 1;
        if (t->text_len[id] == len && memcmp(tok_text(t, id), text, len) == 0) return id;
    }
}

static void hmap_insert(struct eng_tokenizer *t, int32_t id) {
    uint32_t i = (uint32_t)hash_bytes(tok_text(t, id), t->text_len[id]) & t->hmask;
    for (;; i = (i + 1) & t->hmask) {
        int32_t v = t->hmap[i];
        if (!v) {
            t->hmap[i] = id + 1;
            return;
        }
        /* duplicate text: the first id keeps it (as the reference tokenizers do) */
        if (t->text_len[v - 1] == t->text_len[id] &&
            memcmp(tok_text(t, v - 1), tok_text(t, id), t->text_len[id]) == 0)
            return;
    }
}

static const struct merge_slot *merge_find(const struct eng_tokenizer *t, int32_t a, int32_t b) {
    if (!t->has_merges || a < 0 || b < 0) return NULL;
    uint64_t key = (((uint64_t)(uint32_t)a << 32) | (uint32_t)b) + 1;
    for (uint64_t i = hash_u64(key) & t->mmask;; i = (i + 1) & t->mmask) {
        if (t->mmap[i].key == key) return &t->mmap[i];
        if (!t->mmap[i].key) return NULL;
    }
}

/* ---- byte-level (gpt2) character map: bytes ⇄ printable code points ---- */

static uint32_t byte_to_cp(int b) {
    if ((b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF))
        return (uint32_t)b;
    int k = 0; /* the others, in order, map to U+0100.. */
    for (int c = 0; c < b; c++)
        if (!((c >= 0x21 && c <= 0x7E) || (c >= 0xA1 && c <= 0xAC) || (c >= 0xAE && c <= 0xFF)))
            k++;
    return 0x100 + (uint32_t)k;
}

static int16_t cp_inv[0x144]; /* written once by cp_inv_init */
static pthread_once_t cp_inv_once = PTHREAD_ONCE_INIT;

static void cp_inv_init(void) {
    for (int i = 0; i < 0x144; i++) cp_inv[i] = -1;
    for (int b = 0; b < 256; b++) cp_inv[byte_to_cp(b)] = (int16_t)b;
}

/* Thread-safe: the daemon detokenizes on its loop and engine threads at once. */
static int cp_to_byte(uint32_t cp) {
    pthread_once(&cp_inv_once, cp_inv_init);
    return cp < 0x144 ? cp_inv[cp] : -1;
}

/* ---- loading ---- */

static const char *const eog_texts[] = {
    "<|im_end|>",      "<|eot_id|>", "<|endoftext|>", "<end_of_turn>", "<|end|>", "<|eom_id|>",
    "<|end_of_text|>", "<EOT>",      "<|return|>",    "<|call|>",      "</s>",
};

static int get_id(const struct eng_gguf *g, const char *key, int n_vocab, int32_t *out) {
    uint32_t v;
    int err = eng_gguf_get_u32(g, key, &v);
    if (err == ENG_ENOTFOUND) return 0;
    if (err || v >= (uint32_t)n_vocab) {
        /* out-of-range ids happen in the wild (e.g. a pad id past the vocabulary): ignore */
        *out = -1;
        return 0;
    }
    *out = (int32_t)v;
    return 0;
}

static bool get_flag(const struct eng_gguf *g, const char *key, bool def) {
    bool v;
    return eng_gguf_get_bool(g, key, &v) == 0 ? v : def;
}

static int cmp_special(const void *pa, const void *pb, void *arg) {
    const struct eng_tokenizer *t = arg;
    int32_t a = *(const int32_t *)pa, b = *(const int32_t *)pb;
    unsigned char fa = (unsigned char)tok_text(t, a)[0], fb = (unsigned char)tok_text(t, b)[0];
    if (fa != fb) return fa < fb ? -1 : 1;
    if (t->text_len[a] != t->text_len[b]) return t->text_len[a] > t->text_len[b] ? -1 : 1;
    return a < b ? -1 : a > b;
}

/* Decoded bytes of token id into out (room for 4 * text_len + 8 bytes); returns the length. */
static int make_piece(const struct eng_tokenizer *t, int32_t id, char *out) {
    const char *s = tok_text(t, id);
    int n = (int)t->text_len[id], o = 0;
    enum eng_token_attr a = (enum eng_token_attr)t->attr[id];
    if (a == ENG_TOKEN_CONTROL || a == ENG_TOKEN_UNKNOWN || a == ENG_TOKEN_USER_DEFINED) {
        memcpy(out, s, (size_t)n); /* added tokens are stored as raw text */
        return n;
    }
    if (t->model == TOK_LLAMA) {
        unsigned hx;
        if (a == ENG_TOKEN_BYTE && n == 6 && sscanf(s, "<0x%02X>", &hx) == 1) {
            out[0] = (char)hx;
            return 1;
        }
        for (int i = 0; i < n;) {
            if (i + 3 <= n && memcmp(s + i, "\xe2\x96\x81", 3) == 0) {
                out[o++] = ' ';
                i += 3;
            } else {
                out[o++] = s[i++];
            }
        }
        return o;
    }
    for (int i = 0; i < n;) {
        uint32_t cp;
        int len = eng_utf8_decode(s + i, (size_t)(n - i), &cp);
        int b = cp_to_byte(cp);
        if (b >= 0) {
            out[o++] = (char)b;
        } else { /* not a byte-level character: keep as is */
            memcpy(out + o, s + i, (size_t)len);
            o += len;
        }
        i += len;
    }
    return o;
}

void eng_tokenizer_free(struct eng_tokenizer *t) {
    if (!t) return;
    free(t->blob);
    free(t->text_off);
    free(t->text_len);
    free(t->piece_off);
    free(t->piece_len);
    free(t->scores);
    free(t->attr);
    free(t->eog);
    free(t->hmap);
    free(t->mmap);
    free(t->special);
    free(t);
}

static int load_merges(struct eng_tokenizer *t, const struct eng_gguf *g) {
    const struct eng_gguf_str *mg;
    int64_t nm = eng_gguf_get_arr(g, "tokenizer.ggml.merges", ENG_GGUF_STRING, (const void **)&mg);
    if (nm <= 0) return 0;
    uint64_t cap = 1;
    while (cap < (uint64_t)nm * 2) cap <<= 1;
    t->mmap = calloc(cap, sizeof(*t->mmap));
    if (!t->mmap)
        return eng_fail(ENG_ENOMEM, "tokenizer: out of memory for %lld merges", (long long)nm);
    t->mmask = cap - 1;
    t->has_merges = true;
    char *buf = NULL;
    size_t bufcap = 0;
    for (int64_t r = 0; r < nm; r++) {
        const char *s = mg[r].s;
        size_t n = (size_t)mg[r].len;
        const char *sp = n > 1 ? memchr(s + 1, ' ', n - 1) : NULL;
        if (!sp) {
            free(buf);
            return eng_fail(ENG_EFORMAT, "tokenizer: merge %lld is not \"left right\"",
                            (long long)r);
        }
        size_t nl = (size_t)(sp - s), nr = n - nl - 1;
        int32_t a = eng_token_lookup(t, s, nl), b = eng_token_lookup(t, sp + 1, nr);
        if (nl + nr > bufcap) {
            bufcap = (nl + nr) * 2;
            char *nb = realloc(buf, bufcap);
            if (!nb) {
                free(buf);
                return eng_fail(ENG_ENOMEM, "tokenizer: out of memory");
            }
            buf = nb;
        }
        memcpy(buf, s, nl);
        memcpy(buf + nl, sp + 1, nr);
        int32_t c = eng_token_lookup(t, buf, nl + nr);
        if (a < 0 || b < 0 || c < 0) continue; /* a merge the vocabulary cannot express */
        uint64_t key = (((uint64_t)(uint32_t)a << 32) | (uint32_t)b) + 1;
        for (uint64_t i = hash_u64(key) & t->mmask;; i = (i + 1) & t->mmask) {
            if (t->mmap[i].key == key) break; /* duplicate pair: the first (best) rank stays */
            if (!t->mmap[i].key) {
                t->mmap[i] = (struct merge_slot){key, (int32_t)r, c};
                break;
            }
        }
    }
    free(buf);
    return 0;
}

struct eng_tokenizer *eng_tokenizer_load(const struct eng_gguf *g) {
    const char *path = eng_gguf_path(g) ? eng_gguf_path(g) : "model";
    const char *model = eng_gguf_get_str(g, "tokenizer.ggml.model");
    if (!model) {
        eng_fail(ENG_EFORMAT, "%s: no tokenizer (tokenizer.ggml.model is missing)", path);
        return NULL;
    }
    enum tok_model tm;
    if (!strcmp(model, "llama"))
        tm = TOK_LLAMA;
    else if (!strcmp(model, "gpt2"))
        tm = TOK_GPT2;
    else {
        eng_fail(ENG_EUNSUPPORTED, "%s: tokenizer model '%s' is not supported (llama, gpt2)", path,
                 model);
        return NULL;
    }
    const struct eng_gguf_str *toks;
    int64_t n = eng_gguf_get_arr(g, "tokenizer.ggml.tokens", ENG_GGUF_STRING, (const void **)&toks);
    if (n <= 0 || n > (1 << 24)) {
        eng_fail(ENG_EFORMAT, "%s: tokenizer.ggml.tokens is missing, empty or too large", path);
        return NULL;
    }
    const float *scores = NULL;
    const int32_t *types = NULL;
    const void *p;
    if (eng_gguf_get_arr(g, "tokenizer.ggml.scores", ENG_GGUF_F32, &p) == n) scores = p;
    if (eng_gguf_get_arr(g, "tokenizer.ggml.token_type", ENG_GGUF_I32, &p) == n) types = p;

    struct eng_tokenizer *t = calloc(1, sizeof(*t));
    if (!t) goto oom;
    t->model = tm;
    t->n_vocab = (int)n;
    size_t total = 0;
    for (int64_t i = 0; i < n; i++) total += (size_t)toks[i].len + 1;
    if (total > UINT32_MAX / 8) {
        eng_fail(ENG_EFORMAT, "%s: tokenizer vocabulary text is too large", path);
        goto err;
    }
    /* text, then pieces (each at most 4x + 8 of its text), in one blob */
    t->blob = malloc(total * 6 + (size_t)n * 8);
    t->text_off = malloc((size_t)n * sizeof(uint32_t));
    t->text_len = malloc((size_t)n * sizeof(uint32_t));
    t->piece_off = malloc((size_t)n * sizeof(uint32_t));
    t->piece_len = malloc((size_t)n * sizeof(uint32_t));
    t->scores = calloc((size_t)n, sizeof(float));
    t->attr = malloc((size_t)n);
    t->eog = calloc((size_t)n, 1);
    uint32_t hcap = 1;
    while (hcap < (uint32_t)n * 2) hcap <<= 1;
    t->hmap = calloc(hcap, sizeof(int32_t));
    t->hmask = hcap - 1;
    if (!t->blob || !t->text_off || !t->text_len || !t->piece_off || !t->piece_len || !t->scores ||
        !t->attr || !t->eog || !t->hmap)
        goto oom;
    size_t off = 0;
    for (int64_t i = 0; i < n; i++) {
        t->text_off[i] = (uint32_t)off;
        t->text_len[i] = (uint32_t)toks[i].len;
        memcpy(t->blob + off, toks[i].s, (size_t)toks[i].len);
        off += (size_t)toks[i].len;
        t->blob[off++] = 0;
        if (scores) t->scores[i] = scores[i];
        int ty = types ? types[i] : ENG_TOKEN_NORMAL;
        if (ty < ENG_TOKEN_NORMAL || ty > ENG_TOKEN_BYTE) ty = ENG_TOKEN_NORMAL;
        t->attr[i] = (uint8_t)ty;
    }
    for (int64_t i = 0; i < n; i++) hmap_insert(t, (int32_t)i);

    t->bos = t->eos = t->unk = t->eot = t->eom = t->pad = -1;
    if (tm == TOK_LLAMA) {
        t->bos = 1, t->eos = 2, t->unk = 0; /* SentencePiece defaults */
        if (t->n_vocab <= 2) t->bos = t->eos = -1;
    }
    get_id(g, "tokenizer.ggml.bos_token_id", t->n_vocab, &t->bos);
    get_id(g, "tokenizer.ggml.eos_token_id", t->n_vocab, &t->eos);
    get_id(g, "tokenizer.ggml.unknown_token_id", t->n_vocab, &t->unk);
    get_id(g, "tokenizer.ggml.padding_token_id", t->n_vocab, &t->pad);
    get_id(g, "tokenizer.ggml.eot_token_id", t->n_vocab, &t->eot);
    get_id(g, "tokenizer.ggml.eom_token_id", t->n_vocab, &t->eom);
    t->add_bos = get_flag(g, "tokenizer.ggml.add_bos_token", tm == TOK_LLAMA);
    t->add_eos = get_flag(g, "tokenizer.ggml.add_eos_token", false);

    /* pre-tokenizer, space prefix, normalizer */
    const char *pre = eng_gguf_get_str(g, "tokenizer.ggml.pre");
    if (tm == TOK_LLAMA) {
        t->pre = PRE_NONE;
        bool asp = get_flag(g, "tokenizer.ggml.add_space_prefix", true);
        t->prefix = asp ? PREFIX_ALWAYS : PREFIX_NEVER;
        const char *ps = eng_gguf_get_str(g, "edgellm.tokenizer.prepend_scheme");
        if (asp && ps && !strcmp(ps, "first")) t->prefix = PREFIX_FIRST;
    } else {
        t->prefix = PREFIX_NEVER;
        if (!pre || !strcmp(pre, "default") || !strcmp(pre, "gpt2") || !strcmp(pre, "gpt-2")) {
            t->pre = PRE_GPT2;
        } else if (!strcmp(pre, "llama3") || !strcmp(pre, "llama-bpe") ||
                   !strcmp(pre, "llama-v3")) {
            t->pre = PRE_LLAMA3;
            t->ignore_merges = true;
        } else if (!strcmp(pre, "qwen2") || !strcmp(pre, "qwen3")) {
            t->pre = PRE_QWEN2;
            t->nfc = true; /* Qwen tokenizers normalize to NFC */
        } else {
            eng_fail(ENG_EUNSUPPORTED,
                     "%s: pre-tokenizer '%s' is not supported (default, gpt2, llama3, qwen2)", path,
                     pre);
            goto err;
        }
    }
    const char *norm = eng_gguf_get_str(g, "edgellm.tokenizer.normalizer");
    if (norm) t->nfc = !strcmp(norm, "nfc");
    bool im;
    if (eng_gguf_get_bool(g, "edgellm.tokenizer.ignore_merges", &im) == 0) t->ignore_merges = im;

    /* byte tokens */
    for (int b = 0; b < 256; b++) {
        char s[8];
        int len;
        if (tm == TOK_LLAMA)
            len = snprintf(s, sizeof(s), "<0x%02X>", b);
        else
            len = eng_utf8_encode(byte_to_cp(b), s);
        t->byte_tok[b] = eng_token_lookup(t, s, (size_t)len);
    }
    if (tm == TOK_LLAMA && !types) /* files without types: recognise <0xXX> */
        for (int b = 0; b < 256; b++)
            if (t->byte_tok[b] >= 0) t->attr[t->byte_tok[b]] = ENG_TOKEN_BYTE;

    int err = load_merges(t, g);
    if (err) goto err;
    if (tm == TOK_GPT2 && !t->has_merges) {
        eng_fail(ENG_EFORMAT, "%s: gpt2 tokenizer without tokenizer.ggml.merges", path);
        goto err;
    }

    /* pieces */
    size_t poff = off;
    for (int64_t i = 0; i < n; i++) {
        int len = make_piece(t, (int32_t)i, t->blob + poff);
        t->piece_off[i] = (uint32_t)poff;
        t->piece_len[i] = (uint32_t)len;
        if (len > t->max_piece) t->max_piece = len;
        poff += (size_t)len;
    }

    /* end-of-generation tokens */
    int32_t eogs[] = {t->eos, t->eot, t->eom};
    for (size_t i = 0; i < ENG_ARRAY_LEN(eogs); i++)
        if (eogs[i] >= 0) t->eog[eogs[i]] = 1;
    for (size_t i = 0; i < ENG_ARRAY_LEN(eog_texts); i++) {
        int32_t id = eng_token_lookup(t, eog_texts[i], strlen(eog_texts[i]));
        if (id >= 0 && (t->attr[id] == ENG_TOKEN_CONTROL || t->attr[id] == ENG_TOKEN_USER_DEFINED))
            t->eog[id] = 1;
    }

    /* special tokens matched in text */
    t->special = malloc((size_t)n * sizeof(int32_t));
    if (!t->special) goto oom;
    for (int64_t i = 0; i < n; i++) {
        enum eng_token_attr a = (enum eng_token_attr)t->attr[i];
        if ((a == ENG_TOKEN_CONTROL || a == ENG_TOKEN_USER_DEFINED || a == ENG_TOKEN_UNKNOWN) &&
            t->text_len[i] > 0)
            t->special[t->n_special++] = (int32_t)i;
    }
    qsort_r(t->special, (size_t)t->n_special, sizeof(int32_t), cmp_special, t);
    for (int b = 0, k = 0; b <= 256; b++) {
        while (k < t->n_special && (unsigned char)tok_text(t, t->special[k])[0] < b) k++;
        t->sp_first[b] = k;
    }
    return t;
oom:
    eng_fail(ENG_ENOMEM, "%s: out of memory loading the tokenizer", path);
err:
    eng_tokenizer_free(t);
    return NULL;
}

/* ---- accessors ---- */

int eng_tokenizer_n_vocab(const struct eng_tokenizer *t) {
    return t->n_vocab;
}
int32_t eng_token_bos(const struct eng_tokenizer *t) {
    return t->bos;
}
int32_t eng_token_eos(const struct eng_tokenizer *t) {
    return t->eos;
}
bool eng_token_is_eog(const struct eng_tokenizer *t, int32_t id) {
    return id >= 0 && id < t->n_vocab && t->eog[id];
}
enum eng_token_attr eng_token_attr(const struct eng_tokenizer *t, int32_t id) {
    if (id < 0 || id >= t->n_vocab) return ENG_TOKEN_UNUSED;
    return (enum eng_token_attr)t->attr[id];
}
const char *eng_token_text(const struct eng_tokenizer *t, int32_t id) {
    if (id < 0 || id >= t->n_vocab) return NULL;
    return tok_text(t, id);
}
int eng_tokenizer_max_piece(const struct eng_tokenizer *t) {
    return t->max_piece;
}
bool eng_tokenizer_add_bos(const struct eng_tokenizer *t) {
    return t->add_bos && t->bos >= 0;
}

/* ---- output vector ---- */

struct ids {
    int32_t *v;
    int n, cap;
    bool oom;
};

static void ids_push(struct ids *o, int32_t id) {
    if (o->n == o->cap) {
        int cap = o->cap ? o->cap * 2 : 256;
        int32_t *nv = realloc(o->v, (size_t)cap * sizeof(int32_t));
        if (!nv) {
            o->oom = true;
            return;
        }
        o->v = nv;
        o->cap = cap;
    }
    o->v[o->n++] = id;
}

/* ---- the merge loop (shared by both models) ---- */

struct sym {
    int32_t start, len; /* bytes of the word */
    int32_t id;         /* vocabulary id of the symbol's text, -1 if none */
    int32_t prev, next;
    uint32_t ver;
};

struct cand {
    double prio; /* lower merges first */
    int32_t left, right, result;
    uint32_t lver, rver;
};

struct bpe {
    struct sym *sym;
    struct cand *heap;
    int n_sym, cap_sym, n_heap, cap_heap;
    bool oom;
};

static bool cand_before(const struct cand *a, const struct cand *b, const struct sym *s) {
    if (a->prio != b->prio) return a->prio < b->prio;
    return s[a->left].start < s[b->left].start; /* ties: leftmost first */
}

static void heap_push(struct bpe *w, struct cand c) {
    if (w->n_heap == w->cap_heap) {
        int cap = w->cap_heap ? w->cap_heap * 2 : 64;
        struct cand *nh = realloc(w->heap, (size_t)cap * sizeof(*nh));
        if (!nh) {
            w->oom = true;
            return;
        }
        w->heap = nh;
        w->cap_heap = cap;
    }
    int i = w->n_heap++;
    while (i > 0) {
        int p = (i - 1) / 2;
        if (!cand_before(&c, &w->heap[p], w->sym)) break;
        w->heap[i] = w->heap[p];
        i = p;
    }
    w->heap[i] = c;
}

static struct cand heap_pop(struct bpe *w) {
    struct cand top = w->heap[0], last = w->heap[--w->n_heap];
    int i = 0, n = w->n_heap;
    for (;;) {
        int c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && cand_before(&w->heap[c + 1], &w->heap[c], w->sym)) c++;
        if (!cand_before(&w->heap[c], &last, w->sym)) break;
        w->heap[i] = w->heap[c];
        i = c;
    }
    if (n) w->heap[i] = last;
    return top;
}

/* May symbols a and b merge? Fills the candidate. */
static bool pair_cand(const struct eng_tokenizer *t, struct bpe *w, const char *word, int a, int b,
                      struct cand *c) {
    const struct sym *s = w->sym;
    if (t->has_merges) {
        const struct merge_slot *m = merge_find(t, s[a].id, s[b].id);
        if (!m) return false;
        *c = (struct cand){(double)m->rank, a, b, m->result, s[a].ver, s[b].ver};
        return true;
    }
    /* scores: the concatenation must be a normal or user-defined piece */
    if (s[b].start != s[a].start + s[a].len) return false;
    int32_t id = eng_token_lookup(t, word + s[a].start, (size_t)(s[a].len + s[b].len));
    if (id < 0) return false;
    uint8_t at = t->attr[id];
    if (at != ENG_TOKEN_NORMAL && at != ENG_TOKEN_USER_DEFINED) return false;
    *c = (struct cand){-(double)t->scores[id], a, b, id, s[a].ver, s[b].ver};
    return true;
}

static void try_pair(const struct eng_tokenizer *t, struct bpe *w, const char *word, int a, int b) {
    struct cand c;
    if (a >= 0 && b >= 0 && pair_cand(t, w, word, a, b, &c)) heap_push(w, c);
}

/* Emits the symbol's bytes as byte tokens (or <unk>). */
static void emit_fallback(const struct eng_tokenizer *t, const char *s, int n, struct ids *out) {
    bool all = true;
    for (int i = 0; i < n; i++) all &= t->byte_tok[(unsigned char)s[i]] >= 0;
    if (all) {
        for (int i = 0; i < n; i++) ids_push(out, t->byte_tok[(unsigned char)s[i]]);
    } else if (t->unk >= 0) {
        ids_push(out, t->unk);
    }
}

/* Tokenizes one word (llama: one escaped piece of text; gpt2: one pre-token, raw bytes). */
static void bpe_word(const struct eng_tokenizer *t, struct bpe *w, const char *word, int n,
                     struct ids *out) {
    if (n <= 0) return;
    bool bytelevel = t->model == TOK_GPT2;
    if (bytelevel && t->ignore_merges) {
        /* whole pre-token as one vocabulary entry (its byte-level spelling) */
        char buf[256];
        if (n * 2 <= (int)sizeof(buf)) {
            int o = 0;
            for (int i = 0; i < n; i++)
                o += eng_utf8_encode(byte_to_cp((unsigned char)word[i]), buf + o);
            int32_t id = eng_token_lookup(t, buf, (size_t)o);
            if (id >= 0) {
                ids_push(out, id);
                return;
            }
        }
    }
    if (w->cap_sym < n) {
        struct sym *ns = realloc(w->sym, (size_t)n * sizeof(*ns));
        if (!ns) {
            w->oom = true;
            return;
        }
        w->sym = ns;
        w->cap_sym = n;
    }
    w->n_sym = 0;
    w->n_heap = 0;
    for (int i = 0; i < n;) {
        int len = 1;
        int32_t id;
        if (bytelevel) {
            id = t->byte_tok[(unsigned char)word[i]];
        } else {
            uint32_t cp;
            len = eng_utf8_decode(word + i, (size_t)(n - i), &cp);
            id = eng_token_lookup(t, word + i, (size_t)len);
            if (id >= 0 && !t->has_merges && t->attr[id] != ENG_TOKEN_NORMAL &&
                t->attr[id] != ENG_TOKEN_USER_DEFINED && t->attr[id] != ENG_TOKEN_UNUSED)
                id = -1;
        }
        int k = w->n_sym++;
        w->sym[k] = (struct sym){i, len, id, k - 1, -1, 0};
        if (k > 0) w->sym[k - 1].next = k;
        i += len;
    }
    for (int k = 0; k + 1 < w->n_sym; k++) try_pair(t, w, word, k, k + 1);
    while (w->n_heap > 0 && !w->oom) {
        struct cand c = heap_pop(w);
        struct sym *a = &w->sym[c.left], *b = &w->sym[c.right];
        if (a->len == 0 || b->len == 0 || a->ver != c.lver || b->ver != c.rver ||
            a->next != c.right)
            continue; /* stale */
        a->len += b->len;
        a->id = c.result;
        a->ver++;
        a->next = b->next;
        if (b->next >= 0) w->sym[b->next].prev = c.left;
        b->len = 0;
        b->ver++;
        try_pair(t, w, word, a->prev, c.left);
        try_pair(t, w, word, c.left, a->next);
    }
    for (int k = 0; k >= 0 && k < w->n_sym; k = w->sym[k].next) {
        const struct sym *s = &w->sym[k];
        if (s->id >= 0)
            ids_push(out, s->id);
        else if (bytelevel) {
            if (t->unk >= 0) ids_push(out, t->unk);
        } else
            emit_fallback(t, word + s->start, s->len, out);
    }
}

/* ---- pre-tokenizers (gpt2 model) ---- */

struct cps {
    uint32_t *cp;
    uint8_t *cls;
    int32_t *off; /* byte offset of each code point; off[n] = byte length */
    int n, cap;
};

static bool is_rn(uint32_t c) {
    return c == '\r' || c == '\n';
}

/* End (code point index) of the pre-token that starts at i. */
static int pre_match(enum tok_pre pre, const struct cps *c, int i) {
    const uint32_t *cp = c->cp;
    const uint8_t *cl = c->cls;
    int n = c->n;
#define IS_L(k)     ((k) < n && (cl[k] & ENG_UCD_L))
#define IS_N(k)     ((k) < n && (cl[k] & ENG_UCD_N))
#define IS_S(k)     ((k) < n && (cl[k] & ENG_UCD_SPACE))
#define IS_OTHER(k) ((k) < n && !(cl[k] & (ENG_UCD_L | ENG_UCD_N | ENG_UCD_SPACE)))
    bool fold = pre != PRE_GPT2; /* (?i:...) contractions */
    if (cp[i] == '\'' && i + 1 < n) {
        uint32_t a = cp[i + 1], b = i + 2 < n ? cp[i + 2] : 0;
        if (fold && a < 128) a = (uint32_t)(a | 0x20);
        if (fold && b < 128 && b >= 'A') b = (uint32_t)(b | 0x20);
        if (a == 's' || a == 't' || a == 'm' || a == 'd') return i + 2;
        if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l'))
            return i + 3;
    }
    int j;
    if (pre == PRE_GPT2) {
        j = i + (cp[i] == ' ');
        if (IS_L(j)) {
            while (IS_L(j)) j++;
            return j;
        }
        if (IS_N(j)) {
            while (IS_N(j)) j++;
            return j;
        }
        if (IS_OTHER(j)) {
            while (IS_OTHER(j)) j++;
            return j;
        }
    } else {
        /* [^\r\n\p{L}\p{N}]?\p{L}+ */
        if (IS_L(i) || (!is_rn(cp[i]) && !IS_N(i) && IS_L(i + 1))) {
            j = i + 1;
            while (IS_L(j)) j++;
            return j;
        }
        /* \p{N}{1,3} (llama3) or \p{N} (qwen2) */
        if (IS_N(i)) {
            int max = pre == PRE_LLAMA3 ? 3 : 1;
            j = i;
            while (IS_N(j) && j - i < max) j++;
            return j;
        }
        /*  ?[^\s\p{L}\p{N}]+[\r\n]* */
        j = i + (cp[i] == ' ');
        if (IS_OTHER(j)) {
            while (IS_OTHER(j)) j++;
            while (j < n && is_rn(cp[j])) j++;
            return j;
        }
    }
    if (IS_S(i)) {
        int k = i;
        while (IS_S(k)) k++;
        if (pre != PRE_GPT2) { /* \s*[\r\n]+ */
            int last = -1;
            for (int q = i; q < k; q++)
                if (is_rn(cp[q])) last = q;
            if (last >= 0) return last + 1;
        }
        if (k == n) return k;        /* \s+(?!\S) at the end */
        if (k - i > 1) return k - 1; /* \s+(?!\S): leave one space for the next word */
        return k;                    /* \s+ */
    }
    return i + 1;
#undef IS_L
#undef IS_N
#undef IS_S
#undef IS_OTHER
}

static bool cps_fill(struct cps *c, const char *s, int n) {
    if (c->cap < n + 1) {
        int cap = n + 1;
        uint32_t *a = realloc(c->cp, (size_t)cap * sizeof(uint32_t));
        if (a) c->cp = a;
        uint8_t *b = realloc(c->cls, (size_t)cap);
        if (b) c->cls = b;
        int32_t *o = realloc(c->off, (size_t)cap * sizeof(int32_t));
        if (o) c->off = o;
        if (!a || !b || !o) return false;
        c->cap = cap;
    }
    c->n = 0;
    for (int i = 0; i < n;) {
        uint32_t cp;
        int len = eng_utf8_decode(s + i, (size_t)(n - i), &cp);
        c->cp[c->n] = cp;
        c->cls[c->n] = (uint8_t)eng_ucd_class(cp);
        c->off[c->n++] = i;
        i += len;
    }
    c->off[c->n] = n;
    return true;
}

/* ---- encoding ---- */

struct enc {
    const struct eng_tokenizer *t;
    struct bpe w;
    struct cps c;
    char *esc; /* llama: escaped text */
    size_t esc_cap;
    struct ids out;
};

/* Encodes a piece of text that contains no special token. first: it starts the input. */
static void encode_text(struct enc *e, const char *s, size_t n, bool first) {
    const struct eng_tokenizer *t = e->t;
    char *norm = NULL;
    if (t->nfc && eng_nfc_needed(s, n)) {
        size_t nn;
        norm = eng_nfc(s, n, &nn);
        if (!norm) {
            e->out.oom = true;
            return;
        }
        s = norm, n = nn;
    }
    if (t->model == TOK_LLAMA) {
        bool prefix = t->prefix == PREFIX_ALWAYS || (t->prefix == PREFIX_FIRST && first);
        size_t need = 3 * n + 4;
        if (need > e->esc_cap) {
            char *ne = realloc(e->esc, need);
            if (!ne) {
                e->out.oom = true;
                free(norm);
                return;
            }
            e->esc = ne;
            e->esc_cap = need;
        }
        size_t o = 0;
        if (prefix) {
            memcpy(e->esc, "\xe2\x96\x81", 3);
            o = 3;
        }
        for (size_t i = 0; i < n; i++) {
            if (s[i] == ' ') {
                memcpy(e->esc + o, "\xe2\x96\x81", 3);
                o += 3;
            } else {
                e->esc[o++] = s[i];
            }
        }
        if (o > INT32_MAX / 2) {
            e->out.oom = true;
        } else {
            bpe_word(t, &e->w, e->esc, (int)o, &e->out);
        }
        free(norm);
        return;
    }
    if (n > INT32_MAX / 2 || !cps_fill(&e->c, s, (int)n)) {
        e->out.oom = true;
        free(norm);
        return;
    }
    for (int i = 0; i < e->c.n;) {
        int j = pre_match(t->pre, &e->c, i);
        bpe_word(t, &e->w, s + e->c.off[i], e->c.off[j] - e->c.off[i], &e->out);
        i = j;
    }
    free(norm);
}

/* Longest special token matching text at s (n bytes left), or -1. */
static int32_t match_special(const struct eng_tokenizer *t, const char *s, size_t n,
                             bool parse_special) {
    unsigned char b = (unsigned char)s[0];
    for (int k = t->sp_first[b]; k < t->sp_first[b + 1]; k++) {
        int32_t id = t->special[k];
        if (!parse_special && t->attr[id] != ENG_TOKEN_USER_DEFINED) continue;
        size_t len = t->text_len[id];
        if (len <= n && memcmp(s, tok_text(t, id), len) == 0) return id;
    }
    return -1;
}

int eng_tokenize(const struct eng_tokenizer *t, const char *text, size_t len, int32_t *out, int max,
                 unsigned flags) {
    struct enc e = {.t = t};
    bool parse_special = flags & ENG_TOKENIZE_PARSE_SPECIAL;
    if ((flags & ENG_TOKENIZE_ADD_SPECIAL) && t->add_bos && t->bos >= 0) ids_push(&e.out, t->bos);
    size_t start = 0;
    for (size_t i = 0; i < len;) {
        int32_t id = t->sp_first[(unsigned char)text[i]] < t->sp_first[(unsigned char)text[i] + 1]
                         ? match_special(t, text + i, len - i, parse_special)
                         : -1;
        if (id < 0) {
            i++;
            continue;
        }
        if (i > start) encode_text(&e, text + start, i - start, start == 0);
        ids_push(&e.out, id);
        i += t->text_len[id];
        start = i;
    }
    if (len > start) encode_text(&e, text + start, len - start, start == 0);
    if ((flags & ENG_TOKENIZE_ADD_SPECIAL) && t->add_eos && t->eos >= 0) ids_push(&e.out, t->eos);
    free(e.w.sym);
    free(e.w.heap);
    free(e.c.cp);
    free(e.c.cls);
    free(e.c.off);
    free(e.esc);
    int total = e.out.n;
    bool oom = e.out.oom || e.w.oom;
    if (!oom && out && max > 0 && total > 0)
        memcpy(out, e.out.v, (size_t)ENG_MIN(total, max) * sizeof(int32_t));
    free(e.out.v);
    if (oom) return eng_fail(ENG_ENOMEM, "tokenize: out of memory");
    return total;
}

int eng_tokenize_chat(const struct eng_tokenizer *t, const char *prompt, size_t len, int32_t *out,
                      int max) {
    bool add = t->add_bos && t->bos >= 0 &&
               !(t->text_len[t->bos] > 0 && len >= t->text_len[t->bos] &&
                 memcmp(prompt, tok_text(t, t->bos), t->text_len[t->bos]) == 0);
    int n = eng_tokenize(t, prompt, len, add && max > 0 ? out + 1 : out, add ? max - 1 : max,
                         ENG_TOKENIZE_PARSE_SPECIAL);
    if (n < 0 || !add) return n;
    if (max > 0) out[0] = t->bos;
    return n + 1;
}

/* ---- decoding ---- */

static bool piece_hidden(const struct eng_tokenizer *t, int32_t id, unsigned flags) {
    uint8_t a = t->attr[id];
    if (a == ENG_TOKEN_UNUSED) return true;
    if (a == ENG_TOKEN_CONTROL || a == ENG_TOKEN_UNKNOWN)
        return !(flags & ENG_DETOK_RENDER_SPECIAL);
    return false;
}

int eng_token_to_piece(const struct eng_tokenizer *t, int32_t id, char *buf, int size,
                       unsigned flags) {
    if (id < 0 || id >= t->n_vocab) return eng_fail(ENG_ERANGE, "token id %d out of range", id);
    if (piece_hidden(t, id, flags)) {
        if (size > 0) buf[0] = 0;
        return 0;
    }
    int n = (int)t->piece_len[id];
    if (size > 0) {
        int k = ENG_MIN(n, size);
        memcpy(buf, t->blob + t->piece_off[id], (size_t)k);
        if (n < size) buf[n] = 0;
    }
    return n;
}

/* Whether a leading space of the first decoded piece is dropped (the "▁" prefix). */
static bool strips_prefix(const struct eng_tokenizer *t) {
    return t->model == TOK_LLAMA && t->prefix != PREFIX_NEVER;
}

int eng_detokenize(const struct eng_tokenizer *t, const int32_t *ids, int n, char *buf, int size,
                   unsigned flags) {
    int o = 0;
    bool at_start = true;
    for (int i = 0; i < n; i++) {
        int32_t id = ids[i];
        if (id < 0 || id >= t->n_vocab) return eng_fail(ENG_ERANGE, "token id %d out of range", id);
        if (piece_hidden(t, id, flags)) continue;
        const char *p = t->blob + t->piece_off[id];
        int len = (int)t->piece_len[id];
        if (at_start && len > 0 && strips_prefix(t) && p[0] == ' ') p++, len--;
        if (len > 0 || t->piece_len[id] > 0) at_start = false;
        if (o < size) memcpy(buf + o, p, (size_t)ENG_MIN(len, size - o));
        o += len;
    }
    if (o < size) buf[o] = 0;
    return o;
}

void eng_detok_init(struct eng_detok *d, const struct eng_tokenizer *t, unsigned flags) {
    memset(d, 0, sizeof(*d));
    d->t = t;
    d->flags = flags;
    d->at_start = true;
}

int eng_detok_max(const struct eng_tokenizer *t) {
    return 3 * (t->max_piece + 8) + 8;
}

/* Length of a complete, valid UTF-8 sequence at s (n bytes available); 0 if s holds a valid but
 * incomplete prefix; -1 if s[0] starts no valid sequence. */
static int utf8_complete(const unsigned char *s, int n) {
    int need = s[0] < 0x80                      ? 1
               : (s[0] >= 0xC2 && s[0] <= 0xDF) ? 2
               : (s[0] & 0xF0) == 0xE0          ? 3
               : (s[0] >= 0xF0 && s[0] <= 0xF4) ? 4
                                                : -1;
    if (need < 0) return -1;
    for (int i = 1; i < need; i++) {
        if (i >= n) return 0;
        if ((s[i] & 0xC0) != 0x80) return -1;
        /* reject overlong / surrogate / out-of-range second bytes */
        if (i == 1 && ((s[0] == 0xE0 && s[1] < 0xA0) || (s[0] == 0xED && s[1] > 0x9F) ||
                       (s[0] == 0xF0 && s[1] < 0x90) || (s[0] == 0xF4 && s[1] > 0x8F)))
            return -1;
    }
    return need;
}

/* Moves complete sequences of src (n bytes) to out, invalid bytes as U+FFFD; returns bytes
 * written, and leaves an incomplete tail in d->pending. */
static int detok_emit(struct eng_detok *d, const unsigned char *src, int n, char *out) {
    int o = 0, i = 0;
    while (i < n) {
        int k = utf8_complete(src + i, n - i);
        if (k > 0) {
            memcpy(out + o, src + i, (size_t)k);
            o += k;
            i += k;
        } else if (k < 0) {
            memcpy(out + o, "\xef\xbf\xbd", 3);
            o += 3;
            i++;
        } else {
            d->n_pending = n - i;
            memcpy(d->pending, src + i, (size_t)d->n_pending);
            return o;
        }
    }
    d->n_pending = 0;
    return o;
}

int eng_detok_push(struct eng_detok *d, int32_t id, char *out, int size) {
    const struct eng_tokenizer *t = d->t;
    if (id < 0 || id >= t->n_vocab) return eng_fail(ENG_ERANGE, "token id %d out of range", id);
    if (piece_hidden(t, id, d->flags)) return 0;
    const unsigned char *p = (const unsigned char *)t->blob + t->piece_off[id];
    int len = (int)t->piece_len[id];
    if (d->at_start && len > 0 && strips_prefix(t) && p[0] == ' ') p++, len--;
    if (3 * (len + d->n_pending) > size)
        return eng_fail(ENG_ERANGE, "detok: output buffer of %d bytes is too small", size);
    if (t->piece_len[id] > 0) d->at_start = false;
    unsigned char tmp[8 + 4];
    int o = 0;
    /* complete the held-back sequence with the first bytes of this piece */
    while (d->n_pending > 0 && len > 0) {
        int np = d->n_pending;
        memcpy(tmp, d->pending, (size_t)np);
        int take = ENG_MIN(len, 4);
        memcpy(tmp + np, p, (size_t)take);
        int k = utf8_complete(tmp, np + take);
        if (k == 0) { /* still incomplete: everything fits in pending */
            memcpy(d->pending + np, p, (size_t)take);
            d->n_pending = np + take;
            return o;
        }
        if (k < 0) { /* the held bytes were a dead end: emit U+FFFD for the first */
            memcpy(out + o, "\xef\xbf\xbd", 3);
            o += 3;
            memmove(d->pending, d->pending + 1, (size_t)(np - 1));
            d->n_pending = np - 1;
            continue;
        }
        memcpy(out + o, tmp, (size_t)k);
        o += k;
        p += k - np;
        len -= k - np;
        d->n_pending = 0;
    }
    if (d->n_pending > 0) return o; /* empty piece */
    o += detok_emit(d, p, len, out + o);
    return o;
}

int eng_detok_flush(struct eng_detok *d, char *out, int size) {
    int o = 0;
    if (d->n_pending > 0 && size >= 3) {
        memcpy(out, "\xef\xbf\xbd", 3);
        o = 3;
    }
    d->n_pending = 0;
    return o;
}
