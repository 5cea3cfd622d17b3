/*
 * cmd_convert.c — `edgellm convert HF_DIR OUT.gguf`: a Hugging Face model directory
 * (config.json, *.safetensors — sharded or not — tokenizer.json, tokenizer_config.json) becomes
 * one GGUF file for llama, qwen2 or qwen3, tokenizer and chat template included.
 *
 * Owns: the mapping of Hugging Face names, layouts and settings onto GGUF's (tensor names, the
 * llama q/k row permutation into GGUF's rotary order, rope scaling keys and the llama3
 * rope_freqs tensor), and of tokenizer.json onto tokenizer.ggml.* (see convert_tokenizer).
 * Does not: quantize beyond f16/bf16 (that is `edgellm compress`), or run anything.
 */
#include "cli.h"
#include "safetensors.h"

#include <dirent.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define CMD "convert"

static void usage(void) {
    printf("usage: edgellm convert HF_DIR OUT.gguf [--type f16|bf16|f32]\n\n"
           "Converts a Hugging Face model directory (config.json, *.safetensors, tokenizer.json,\n"
           "tokenizer_config.json) of a llama, mistral, qwen2 or qwen3 model to GGUF.\n"
           "  --type T   type of the weight matrices (default f16); vectors stay f32\n");
}

/* ---- small helpers ---- */

struct conv {
    const char *dir;
    struct eng_gguf_writer *w;
    json_t *config, *tok, *tok_cfg;
    const char *arch; /* GGUF architecture */
    enum eng_type type;
    int n_vocab; /* rows of the embedding */
    int n_embd, n_head, n_head_kv, head_dim, n_layer;
    float rope_base;
    struct eng_st_file **files;
    int n_files;
    void **bufs; /* converted tensor data, freed after writing */
    int n_bufs, cap_bufs;
};

static void *keep(struct conv *c, void *p) {
    if (!p) return NULL;
    if (c->n_bufs == c->cap_bufs) {
        int cap = c->cap_bufs ? c->cap_bufs * 2 : 64;
        void **nb = realloc(c->bufs, (size_t)cap * sizeof(*nb));
        if (!nb) {
            free(p);
            return NULL;
        }
        c->bufs = nb;
        c->cap_bufs = cap;
    }
    c->bufs[c->n_bufs++] = p;
    return p;
}

static json_t *load_json(const char *dir, const char *name, bool required, int *err) {
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    struct stat st;
    if (stat(path, &st) != 0) {
        if (required) *err = eng_fail(ENG_EIO, "%s: missing", path);
        return NULL;
    }
    json_error_t je;
    json_t *j = json_load_file(path, JSON_ALLOW_NUL, &je);
    if (!j && strstr(je.text, "too big integer")) /* e.g. model_max_length = 1e30 */
        j = json_load_file(path, JSON_ALLOW_NUL | JSON_DECODE_INT_AS_REAL, &je);
    if (!j) *err = eng_fail(ENG_EFORMAT, "%s: line %d: %s", path, je.line, je.text);
    return j;
}

static int jint(json_t *o, const char *key, int def) {
    json_t *v = json_object_get(o, key);
    return json_is_number(v) ? (int)json_number_value(v) : def;
}

static double jnum(json_t *o, const char *key, double def) {
    json_t *v = json_object_get(o, key);
    return json_is_number(v) ? json_number_value(v) : def;
}

static const char *jstr(json_t *o, const char *key) {
    return json_string_value(json_object_get(o, key));
}

/* A token given in tokenizer_config.json as a string or as {"content": ...}. */
static const char *jtoken(json_t *o, const char *key) {
    json_t *v = json_object_get(o, key);
    if (json_is_object(v)) v = json_object_get(v, "content");
    return json_string_value(v);
}

/* ---- tokenizer ---- */

static const char *const RE_LLAMA3 =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| "
    "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
static const char *const RE_QWEN2 =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| "
    "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

/* Flattens a normalizer / pre-tokenizer (a "Sequence" or a single step) into *steps. */
static void flatten(json_t *node, const char *seq_key, json_t **steps, int *n, int max) {
    if (!json_is_object(node)) return;
    const char *type = jstr(node, "type");
    if (type && !strcmp(type, "Sequence")) {
        json_t *arr = json_object_get(node, seq_key), *x;
        size_t i;
        json_array_foreach(arr, i, x) flatten(x, seq_key, steps, n, max);
        return;
    }
    if (*n < max) steps[(*n)++] = node;
}

struct tokinfo {
    bool llama;                /* "llama" (SentencePiece-style) vs "gpt2" (byte-level) */
    const char *pre;           /* gpt2: pre-tokenizer name */
    bool nfc;                  /* NFC normalizer */
    bool prefix, prefix_first; /* llama: "▁" prefix; only at the start of the text */
};

static int classify_tokenizer(json_t *tok, struct tokinfo *ti) {
    json_t *model = json_object_get(tok, "model");
    const char *mtype = jstr(model, "type");
    if (!mtype || strcmp(mtype, "BPE"))
        return eng_fail(ENG_EUNSUPPORTED, "tokenizer.json: model type '%s' is not supported (BPE)",
                        mtype ? mtype : "?");
    json_t *norm[16], *pre[16];
    int nn = 0, np = 0;
    flatten(json_object_get(tok, "normalizer"), "normalizers", norm, &nn, 16);
    flatten(json_object_get(tok, "pre_tokenizer"), "pretokenizers", pre, &np, 16);
    bool bytelevel = false, metaspace = false;
    const char *regex = NULL;
    for (int i = 0; i < np; i++) {
        const char *t = jstr(pre[i], "type");
        if (t && !strcmp(t, "ByteLevel")) {
            bytelevel = true;
            if (json_is_true(json_object_get(pre[i], "add_prefix_space")))
                return eng_fail(ENG_EUNSUPPORTED,
                                "tokenizer.json: ByteLevel add_prefix_space is not supported");
            json_t *ur = json_object_get(pre[i], "use_regex");
            if (!json_is_false(ur) && !regex) regex = "gpt2";
        } else if (t && !strcmp(t, "Split")) {
            const char *re = jstr(json_object_get(pre[i], "pattern"), "Regex");
            if (!re) return eng_fail(ENG_EUNSUPPORTED, "tokenizer.json: Split without a Regex");
            if (!strcmp(re, RE_LLAMA3))
                regex = "llama3";
            else if (!strcmp(re, RE_QWEN2))
                regex = "qwen2";
            else
                return eng_fail(ENG_EUNSUPPORTED,
                                "tokenizer.json: pre-tokenizer regex is not one edgellm knows "
                                "(gpt2, llama3, qwen2): %s",
                                re);
        } else if (t && !strcmp(t, "Metaspace")) {
            metaspace = true;
            const char *scheme = jstr(pre[i], "prepend_scheme");
            json_t *aps = json_object_get(pre[i], "add_prefix_space");
            ti->prefix = scheme ? strcmp(scheme, "never") != 0 : !json_is_false(aps);
            ti->prefix_first = scheme && !strcmp(scheme, "first");
        } else {
            return eng_fail(ENG_EUNSUPPORTED, "tokenizer.json: pre-tokenizer '%s' is not supported",
                            t ? t : "?");
        }
    }
    for (int i = 0; i < nn; i++) {
        const char *t = jstr(norm[i], "type");
        if (t && !strcmp(t, "NFC")) {
            ti->nfc = true;
        } else if (t && !strcmp(t, "Prepend") && !bytelevel) {
            ti->prefix = true; /* Prepend "▁" to every piece of text */
        } else if (t && !strcmp(t, "Replace") && !bytelevel) {
            /* " " → "▁": what the llama tokenizer does anyway */
        } else {
            return eng_fail(ENG_EUNSUPPORTED, "tokenizer.json: normalizer '%s' is not supported",
                            t ? t : "?");
        }
    }
    ti->llama = !bytelevel;
    if (bytelevel) ti->pre = regex ? regex : "gpt2";
    if (!bytelevel && !metaspace && !json_is_true(json_object_get(model, "byte_fallback")) &&
        nn == 0)
        return eng_fail(ENG_EUNSUPPORTED,
                        "tokenizer.json: neither byte-level nor SentencePiece-style BPE");
    return 0;
}

/* The "left right" form of merge i (strings or two-element arrays). Borrowed or kept. */
static const char *merge_str(struct conv *c, json_t *m, char **tmp) {
    if (json_is_string(m)) return json_string_value(m);
    if (!json_is_array(m) || json_array_size(m) != 2) return NULL;
    const char *a = json_string_value(json_array_get(m, 0));
    const char *b = json_string_value(json_array_get(m, 1));
    if (!a || !b) return NULL;
    size_t n = strlen(a) + strlen(b) + 2;
    *tmp = malloc(n);
    if (*tmp) snprintf(*tmp, n, "%s %s", a, b);
    (void)c;
    return *tmp;
}

static int set_token_id(struct conv *c, const char *key, const char *text, json_t *vocab,
                        const char **toks, int n) {
    if (!text) return 0;
    json_t *v = json_object_get(vocab, text);
    int id = json_is_integer(v) ? (int)json_integer_value(v) : -1;
    if (id < 0)
        for (int i = 0; i < n; i++)
            if (toks[i] && !strcmp(toks[i], text)) id = i;
    if (id < 0) return 0;
    return eng_gguf_set_u32(c->w, key, (uint32_t)id);
}

static int convert_tokenizer(struct conv *c) {
    struct tokinfo ti = {0};
    int err = classify_tokenizer(c->tok, &ti);
    if (err) return err;
    json_t *model = json_object_get(c->tok, "model");
    json_t *vocab = json_object_get(model, "vocab");
    json_t *added = json_object_get(c->tok, "added_tokens");
    json_t *merges = json_object_get(model, "merges");
    if (!json_is_object(vocab)) return eng_fail(ENG_EFORMAT, "tokenizer.json: no model.vocab");
    int n = c->n_vocab;
    const char **toks = calloc((size_t)n, sizeof(*toks));
    int32_t *types = calloc((size_t)n, sizeof(int32_t));
    float *scores = calloc((size_t)n, sizeof(float));
    char **pads = calloc((size_t)n, sizeof(char *));
    const char **mstr = NULL;
    char **mtmp = NULL;
    size_t nm = json_array_size(merges);
    if (!toks || !types || !scores || !pads) {
        err = eng_fail(ENG_ENOMEM, "out of memory");
        goto out;
    }
    const char *key;
    json_t *v;
    json_object_foreach(vocab, key, v) {
        json_int_t id = json_integer_value(v);
        if (!json_is_integer(v) || id < 0 || id >= n) {
            err = eng_fail(ENG_EFORMAT,
                           "tokenizer.json: token '%s' has id %lld, outside the model's %d rows",
                           key, (long long)id, n);
            goto out;
        }
        toks[id] = key;
        types[id] = ENG_TOKEN_NORMAL;
        unsigned hx;
        char tail;
        if (ti.llama && strlen(key) == 6 && sscanf(key, "<0x%02X%c", &hx, &tail) == 2 &&
            tail == '>')
            types[id] = ENG_TOKEN_BYTE;
    }
    size_t i;
    json_array_foreach(added, i, v) {
        json_int_t id = json_integer_value(json_object_get(v, "id"));
        const char *content = jstr(v, "content");
        if (!content || id < 0 || id >= n) {
            err = eng_fail(ENG_EFORMAT,
                           "tokenizer.json: added token %zu is malformed or outside "
                           "the model's %d rows",
                           i, n);
            goto out;
        }
        toks[id] = content;
        types[id] = json_is_true(json_object_get(v, "special")) ? ENG_TOKEN_CONTROL
                                                                : ENG_TOKEN_USER_DEFINED;
    }
    const char *unk = jstr(model, "unk_token");
    for (int k = 0; k < n; k++) {
        if (toks[k]) {
            if (unk && !strcmp(toks[k], unk)) types[k] = ENG_TOKEN_UNKNOWN;
            continue;
        }
        pads[k] = malloc(32);
        if (!pads[k]) {
            err = eng_fail(ENG_ENOMEM, "out of memory");
            goto out;
        }
        snprintf(pads[k], 32, "[PAD%d]", k);
        toks[k] = pads[k];
        types[k] = ENG_TOKEN_UNUSED;
    }
    /* merges, and llama scores from them: a token formed by merge r scores -r, so the highest
     * score is the earliest merge; tokens no merge forms rank after every merge. */
    mstr = calloc(nm ? nm : 1, sizeof(*mstr));
    mtmp = calloc(nm ? nm : 1, sizeof(*mtmp));
    if (!mstr || !mtmp) {
        err = eng_fail(ENG_ENOMEM, "out of memory");
        goto out;
    }
    for (int k = 0; k < n; k++) scores[k] = -(float)(nm + (size_t)k);
    char *cat = NULL;
    size_t catcap = 0;
    for (size_t r = 0; r < nm; r++) {
        mstr[r] = merge_str(c, json_array_get(merges, r), &mtmp[r]);
        if (!mstr[r]) {
            free(cat);
            err = eng_fail(ENG_EFORMAT, "tokenizer.json: merge %zu is malformed", r);
            goto out;
        }
        if (!ti.llama) continue;
        const char *sp = strchr(mstr[r] + (mstr[r][0] != 0), ' ');
        if (!sp) continue;
        size_t len = strlen(mstr[r]);
        if (len > catcap) {
            catcap = len * 2;
            char *nc = realloc(cat, catcap);
            if (!nc) {
                free(cat);
                err = eng_fail(ENG_ENOMEM, "out of memory");
                goto out;
            }
            cat = nc;
        }
        size_t nl = (size_t)(sp - mstr[r]);
        memcpy(cat, mstr[r], nl);
        strcpy(cat + nl, sp + 1);
        json_t *id = json_object_get(vocab, cat);
        if (json_is_integer(id)) {
            json_int_t k = json_integer_value(id);
            if (k >= 0 && k < n && scores[k] < -(float)r) scores[k] = -(float)r;
        }
    }
    free(cat);

    struct eng_gguf_writer *w = c->w;
    err = eng_gguf_set_str(w, "tokenizer.ggml.model", ti.llama ? "llama" : "gpt2");
    if (!err && !ti.llama) err = eng_gguf_set_str(w, "tokenizer.ggml.pre", ti.pre);
    if (!err) err = eng_gguf_set_arr_str(w, "tokenizer.ggml.tokens", toks, (uint64_t)n);
    if (!err && ti.llama)
        err = eng_gguf_set_arr(w, "tokenizer.ggml.scores", ENG_GGUF_F32, scores, (uint64_t)n);
    if (!err)
        err = eng_gguf_set_arr(w, "tokenizer.ggml.token_type", ENG_GGUF_I32, types, (uint64_t)n);
    if (!err && nm) err = eng_gguf_set_arr_str(w, "tokenizer.ggml.merges", mstr, (uint64_t)nm);
    if (!err && ti.llama) err = eng_gguf_set_bool(w, "tokenizer.ggml.add_space_prefix", ti.prefix);
    if (!err && ti.llama && ti.prefix_first)
        err = eng_gguf_set_str(w, "edgellm.tokenizer.prepend_scheme", "first");
    if (!err && ti.nfc) err = eng_gguf_set_str(w, "edgellm.tokenizer.normalizer", "nfc");
    if (!err && !ti.llama) /* explicit: the loader's default follows the pre-tokenizer name */
        err = eng_gguf_set_bool(w, "edgellm.tokenizer.ignore_merges",
                                json_is_true(json_object_get(model, "ignore_merges")));
    if (err) goto out;

    /* special tokens and whether they are added */
    json_t *tc = c->tok_cfg;
    const char *bos = jtoken(tc, "bos_token"), *eos = jtoken(tc, "eos_token");
    const char *pad = jtoken(tc, "pad_token");
    if ((err = set_token_id(c, "tokenizer.ggml.bos_token_id", bos, vocab, toks, n))) goto out;
    if ((err = set_token_id(c, "tokenizer.ggml.eos_token_id", eos, vocab, toks, n))) goto out;
    if ((err = set_token_id(c, "tokenizer.ggml.unknown_token_id", unk, vocab, toks, n))) goto out;
    if ((err = set_token_id(c, "tokenizer.ggml.padding_token_id", pad, vocab, toks, n))) goto out;
    if (!bos && json_is_integer(json_object_get(c->config, "bos_token_id")) && ti.llama)
        err = eng_gguf_set_u32(w, "tokenizer.ggml.bos_token_id",
                               (uint32_t)jint(c->config, "bos_token_id", 0));
    if (!eos && json_is_integer(json_object_get(c->config, "eos_token_id")))
        err = eng_gguf_set_u32(w, "tokenizer.ggml.eos_token_id",
                               (uint32_t)jint(c->config, "eos_token_id", 0));
    json_t *ab = json_object_get(tc, "add_bos_token");
    bool add_bos = json_is_boolean(ab) ? json_is_true(ab) : (ti.llama && bos);
    if (!json_is_boolean(ab)) { /* else: a post-processor that starts with BOS adds it */
        json_t *single = json_object_get(json_object_get(c->tok, "post_processor"), "single");
        json_t *first = json_object_get(json_array_get(single, 0), "SpecialToken");
        const char *fid = jstr(first, "id");
        if (fid) add_bos = bos && !strcmp(fid, bos);
    }
    if (!err) err = eng_gguf_set_bool(w, "tokenizer.ggml.add_bos_token", add_bos);
    if (!err)
        err = eng_gguf_set_bool(w, "tokenizer.ggml.add_eos_token",
                                json_is_true(json_object_get(tc, "add_eos_token")));
out:
    for (size_t r = 0; mtmp && r < nm; r++) free(mtmp[r]);
    for (int k = 0; pads && k < n; k++) free(pads[k]);
    free(mtmp);
    free(mstr);
    free(pads);
    free(toks);
    free(types);
    free(scores);
    return err;
}

static int convert_chat_template(struct conv *c) {
    json_t *ct = json_object_get(c->tok_cfg, "chat_template");
    const char *tmpl = json_string_value(ct);
    if (json_is_array(ct)) { /* [{"name": "default", "template": ...}, ...] */
        size_t i;
        json_t *x;
        json_array_foreach(ct, i, x) if (!tmpl || !strcmp(jstr(x, "name") ? jstr(x, "name") : "",
                                                          "default")) tmpl = jstr(x, "template");
    }
    char *file = NULL;
    if (!tmpl) { /* newer directories keep it in chat_template.jinja */
        char path[4096];
        snprintf(path, sizeof(path), "%s/chat_template.jinja", c->dir);
        FILE *f = fopen(path, "rb");
        if (f) {
            fseek(f, 0, SEEK_END);
            long sz = ftell(f);
            fseek(f, 0, SEEK_SET);
            file = sz >= 0 ? malloc((size_t)sz + 1) : NULL;
            if (file && fread(file, 1, (size_t)sz, f) == (size_t)sz) {
                file[sz] = 0;
                tmpl = file;
            }
            fclose(f);
        }
    }
    int err = tmpl ? eng_gguf_set_str(c->w, "tokenizer.chat_template", tmpl) : 0;
    free(file);
    return err;
}

/* ---- weights ---- */

static int open_weights(struct conv *c) {
    char path[4096];
    int err = 0;
    json_t *index = load_json(c->dir, "model.safetensors.index.json", false, &err);
    if (err) return err;
    char **names = NULL;
    int n = 0;
    if (index) {
        json_t *wm = json_object_get(index, "weight_map");
        const char *k;
        json_t *v;
        names = calloc(json_object_size(wm) + 1, sizeof(char *));
        json_object_foreach(wm, k, v) {
            const char *fn = json_string_value(v);
            bool dup = false;
            for (int i = 0; fn && i < n; i++) dup |= !strcmp(names[i], fn);
            if (fn && !dup && !strchr(fn, '/')) names[n++] = strdup(fn);
        }
        json_decref(index);
    } else {
        DIR *d = opendir(c->dir);
        if (!d) return eng_fail(ENG_EIO, "%s: cannot read the directory", c->dir);
        struct dirent *de;
        int cap = 0;
        while ((de = readdir(d))) {
            size_t l = strlen(de->d_name);
            if (l < 12 || strcmp(de->d_name + l - 12, ".safetensors")) continue;
            if (n == cap) {
                cap = cap ? cap * 2 : 8;
                char **nn = realloc(names, (size_t)cap * sizeof(char *));
                if (!nn) break;
                names = nn;
            }
            names[n++] = strdup(de->d_name);
        }
        closedir(d);
    }
    if (n == 0) {
        free(names);
        return eng_fail(ENG_EIO, "%s: no .safetensors files", c->dir);
    }
    c->files = calloc((size_t)n, sizeof(*c->files));
    for (int i = 0; i < n && !err; i++) {
        snprintf(path, sizeof(path), "%s/%s", c->dir, names[i]);
        if (!c->files || !names[i]) {
            err = eng_fail(ENG_ENOMEM, "out of memory");
        } else if (!(c->files[i] = eng_st_open(path))) {
            err = ENG_EFORMAT;
        } else {
            c->n_files = i + 1;
        }
    }
    for (int i = 0; i < n; i++) free(names[i]);
    free(names);
    return err;
}

static const struct eng_st_tensor *find_weight(struct conv *c, const char *name) {
    for (int i = 0; i < c->n_files; i++) {
        const struct eng_st_tensor *t = eng_st_find(c->files[i], name);
        if (t) return t;
    }
    return NULL;
}

static float st_get(const struct eng_st_tensor *t, int64_t i) {
    const uint8_t *p = t->data;
    switch (t->dtype) {
    case ENG_ST_F32: {
        float f;
        memcpy(&f, p + 4 * i, 4);
        return f;
    }
    case ENG_ST_F16: {
        uint16_t h;
        memcpy(&h, p + 2 * i, 2);
        return eng_fp16_to_fp32(h);
    }
    case ENG_ST_BF16: {
        uint16_t h;
        memcpy(&h, p + 2 * i, 2);
        return eng_bf16_to_fp32(h);
    }
    case ENG_ST_F64: {
        double d;
        memcpy(&d, p + 8 * i, 8);
        return (float)d;
    }
    default:
        return 0;
    }
}

/* Adds tensor `src` as `gname`. perm_heads > 0: llama q/k rows are reordered per head from
 * Hugging Face's (half, half) rotary layout to GGUF's interleaved one. */
static int add_weight(struct conv *c, const char *gname, const struct eng_st_tensor *t,
                      int perm_heads) {
    if (t->dtype != ENG_ST_F32 && t->dtype != ENG_ST_F16 && t->dtype != ENG_ST_BF16 &&
        t->dtype != ENG_ST_F64)
        return eng_fail(ENG_EUNSUPPORTED, "%s: dtype %s cannot be converted", t->name,
                        eng_st_dtype_name(t->dtype));
    if (t->n_dims < 1 || t->n_dims > 2 || t->n_elem == 0)
        return eng_fail(ENG_EFORMAT, "%s: expected a vector or a matrix", t->name);
    int64_t rows = t->n_dims == 2 ? t->shape[0] : 1, cols = t->shape[t->n_dims - 1];
    enum eng_type type = t->n_dims == 2 ? c->type : ENG_TYPE_F32;
    int64_t hd = 0;
    if (perm_heads > 0) {
        if (rows % perm_heads || (rows / perm_heads) % 2)
            return eng_fail(ENG_EFORMAT, "%s: %lld rows do not split into %d heads", t->name,
                            (long long)rows, perm_heads);
        hd = rows / perm_heads;
    }
    size_t esz = type == ENG_TYPE_F32 ? 4 : 2;
    uint8_t *out = keep(c, malloc((size_t)(rows * cols) * esz));
    if (!out) return eng_fail(ENG_ENOMEM, "%s: out of memory", t->name);
    for (int64_t r = 0; r < rows; r++) {
        int64_t src = r;
        if (hd) { /* row 2i+j of a head comes from row j*hd/2 + i */
            int64_t h = r / hd, k = r % hd, i = k / 2, j = k % 2;
            src = h * hd + j * (hd / 2) + i;
        }
        uint8_t *dst = out + (size_t)(r * cols) * esz;
        bool same = (type == ENG_TYPE_F32 && t->dtype == ENG_ST_F32) ||
                    (type == ENG_TYPE_F16 && t->dtype == ENG_ST_F16) ||
                    (type == ENG_TYPE_BF16 && t->dtype == ENG_ST_BF16);
        if (same) {
            memcpy(dst, (const uint8_t *)t->data + (size_t)(src * cols) * esz, (size_t)cols * esz);
            continue;
        }
        for (int64_t k = 0; k < cols; k++) {
            float f = st_get(t, src * cols + k);
            if (type == ENG_TYPE_F32) {
                memcpy(dst + 4 * k, &f, 4);
            } else {
                uint16_t h = type == ENG_TYPE_F16 ? eng_fp32_to_fp16(f) : eng_fp32_to_bf16(f);
                memcpy(dst + 2 * k, &h, 2);
            }
        }
    }
    int64_t ne[2] = {cols, rows};
    return eng_gguf_add_tensor(c->w, gname, type, t->n_dims, ne, out);
}

static const struct {
    const char *hf, *gguf;
    bool optional;
} layer_names[] = {
    {"input_layernorm.weight", "attn_norm.weight", false},
    {"self_attn.q_proj.weight", "attn_q.weight", false},
    {"self_attn.k_proj.weight", "attn_k.weight", false},
    {"self_attn.v_proj.weight", "attn_v.weight", false},
    {"self_attn.o_proj.weight", "attn_output.weight", false},
    {"self_attn.q_proj.bias", "attn_q.bias", true},
    {"self_attn.k_proj.bias", "attn_k.bias", true},
    {"self_attn.v_proj.bias", "attn_v.bias", true},
    {"self_attn.q_norm.weight", "attn_q_norm.weight", true},
    {"self_attn.k_norm.weight", "attn_k_norm.weight", true},
    {"post_attention_layernorm.weight", "ffn_norm.weight", false},
    {"mlp.gate_proj.weight", "ffn_gate.weight", false},
    {"mlp.up_proj.weight", "ffn_up.weight", false},
    {"mlp.down_proj.weight", "ffn_down.weight", false},
};

static int convert_weights(struct conv *c) {
    char hf[256], gg[256];
    bool llama = !strcmp(c->arch, "llama");
    const struct eng_st_tensor *emb = find_weight(c, "model.embed_tokens.weight");
    if (!emb || emb->n_dims != 2)
        return eng_fail(ENG_EFORMAT, "%s: model.embed_tokens.weight is missing or not a matrix",
                        c->dir);
    int err = add_weight(c, "token_embd.weight", emb, 0);
    const struct eng_st_tensor *t = find_weight(c, "model.norm.weight");
    if (!err && !t) err = eng_fail(ENG_EFORMAT, "%s: model.norm.weight is missing", c->dir);
    if (!err) err = add_weight(c, "output_norm.weight", t, 0);
    bool tied = json_is_true(json_object_get(c->config, "tie_word_embeddings"));
    t = find_weight(c, "lm_head.weight");
    if (!err && t && !tied) err = add_weight(c, "output.weight", t, 0);
    if (!err && !t && !tied)
        err = eng_fail(ENG_EFORMAT, "%s: lm_head.weight is missing (and embeddings not tied)",
                       c->dir);
    for (int l = 0; l < c->n_layer && !err; l++) {
        for (size_t k = 0; k < sizeof(layer_names) / sizeof(layer_names[0]) && !err; k++) {
            snprintf(hf, sizeof(hf), "model.layers.%d.%s", l, layer_names[k].hf);
            snprintf(gg, sizeof(gg), "blk.%d.%s", l, layer_names[k].gguf);
            t = find_weight(c, hf);
            if (!t) {
                if (!layer_names[k].optional)
                    err = eng_fail(ENG_EFORMAT, "%s: tensor %s is missing", c->dir, hf);
                continue;
            }
            int perm = 0;
            if (llama && k == 1) perm = c->n_head;
            if (llama && k == 2) perm = c->n_head_kv;
            err = add_weight(c, gg, t, perm);
        }
    }
    return err;
}

static int convert_hparams(struct conv *c) {
    json_t *hc = c->config;
    const char *mt = jstr(hc, "model_type");
    if (!mt) return eng_fail(ENG_EFORMAT, "%s/config.json: no model_type", c->dir);
    if (!strcmp(mt, "llama") || !strcmp(mt, "mistral"))
        c->arch = "llama";
    else if (!strcmp(mt, "qwen2"))
        c->arch = "qwen2";
    else if (!strcmp(mt, "qwen3"))
        c->arch = "qwen3";
    else
        return eng_fail(ENG_EUNSUPPORTED,
                        "%s: model_type '%s' is not supported (llama, mistral, qwen2, qwen3)",
                        c->dir, mt);
    c->n_embd = jint(hc, "hidden_size", 0);
    c->n_layer = jint(hc, "num_hidden_layers", 0);
    c->n_head = jint(hc, "num_attention_heads", 0);
    c->n_head_kv = jint(hc, "num_key_value_heads", c->n_head);
    int n_ff = jint(hc, "intermediate_size", 0);
    if (c->n_embd <= 0 || c->n_layer <= 0 || c->n_head <= 0 || c->n_head_kv <= 0 || n_ff <= 0)
        return eng_fail(ENG_EFORMAT,
                        "%s/config.json: hidden_size, num_hidden_layers, num_attention_heads, "
                        "intermediate_size must be positive",
                        c->dir);
    json_t *hdj = json_object_get(hc, "head_dim");
    c->head_dim = json_is_integer(hdj) ? (int)json_integer_value(hdj) : c->n_embd / c->n_head;
    c->rope_base = (float)jnum(hc, "rope_theta", 10000.0);
    char key[128];
    struct eng_gguf_writer *w = c->w;
#define K(k) (snprintf(key, sizeof(key), "%s.%s", c->arch, k), key)
    int err = eng_gguf_set_str(w, "general.architecture", c->arch);
    const char *name = jstr(hc, "_name_or_path");
    if (!name) {
        name = strrchr(c->dir, '/') ? strrchr(c->dir, '/') + 1 : c->dir;
        if (!*name) name = c->dir;
    }
    if (!err) err = eng_gguf_set_str(w, "general.name", name);
    uint32_t ftype = c->type == ENG_TYPE_F32 ? 0 : c->type == ENG_TYPE_F16 ? 1 : 32;
    if (!err) err = eng_gguf_set_u32(w, "general.file_type", ftype);
    if (!err)
        err = eng_gguf_set_u32(w, K("context_length"),
                               (uint32_t)jint(hc, "max_position_embeddings", 2048));
    if (!err) err = eng_gguf_set_u32(w, K("embedding_length"), (uint32_t)c->n_embd);
    if (!err) err = eng_gguf_set_u32(w, K("block_count"), (uint32_t)c->n_layer);
    if (!err) err = eng_gguf_set_u32(w, K("feed_forward_length"), (uint32_t)n_ff);
    if (!err) err = eng_gguf_set_u32(w, K("attention.head_count"), (uint32_t)c->n_head);
    if (!err) err = eng_gguf_set_u32(w, K("attention.head_count_kv"), (uint32_t)c->n_head_kv);
    if (!err)
        err = eng_gguf_set_f32(w, K("attention.layer_norm_rms_epsilon"),
                               (float)jnum(hc, "rms_norm_eps", 1e-6));
    if (!err) err = eng_gguf_set_f32(w, K("rope.freq_base"), c->rope_base);
    if (!err) err = eng_gguf_set_u32(w, K("rope.dimension_count"), (uint32_t)c->head_dim);
    if (!err && c->head_dim * c->n_head != c->n_embd) {
        err = eng_gguf_set_u32(w, K("attention.key_length"), (uint32_t)c->head_dim);
        if (!err) err = eng_gguf_set_u32(w, K("attention.value_length"), (uint32_t)c->head_dim);
    }
    if (!err) err = eng_gguf_set_u32(w, K("vocab_size"), (uint32_t)c->n_vocab);
    json_t *rs = json_object_get(hc, "rope_scaling");
    if (!err && json_is_object(rs)) {
        const char *rt = jstr(rs, "rope_type") ? jstr(rs, "rope_type") : jstr(rs, "type");
        double factor = jnum(rs, "factor", 1.0);
        if (!rt || !strcmp(rt, "default")) {
        } else if (!strcmp(rt, "linear")) {
            err = eng_gguf_set_str(w, K("rope.scaling.type"), "linear");
            if (!err) err = eng_gguf_set_f32(w, K("rope.scaling.factor"), (float)factor);
        } else if (!strcmp(rt, "llama3")) {
            float *f = keep(c, malloc((size_t)c->head_dim / 2 * sizeof(float)));
            if (!f) return eng_fail(ENG_ENOMEM, "out of memory");
            eng_rope_llama3_factors(f, c->head_dim, c->rope_base, (float)factor,
                                    (float)jnum(rs, "low_freq_factor", 1.0),
                                    (float)jnum(rs, "high_freq_factor", 4.0),
                                    (int)jnum(rs, "original_max_position_embeddings", 8192));
            int64_t ne[1] = {c->head_dim / 2};
            err = eng_gguf_add_tensor(w, "rope_freqs.weight", ENG_TYPE_F32, 1, ne, f);
        } else {
            err = eng_fail(ENG_EUNSUPPORTED, "%s: rope_scaling type '%s' is not supported", c->dir,
                           rt);
        }
    }
#undef K
    return err;
}

static int convert(struct conv *c, const char *out) {
    int err = 0;
    c->config = load_json(c->dir, "config.json", true, &err);
    if (err) return err;
    c->tok = load_json(c->dir, "tokenizer.json", true, &err);
    if (err) return err;
    c->tok_cfg = load_json(c->dir, "tokenizer_config.json", false, &err);
    if (err) return err;
    if (!c->tok_cfg) c->tok_cfg = json_object();
    if ((err = open_weights(c))) return err;
    const struct eng_st_tensor *emb = find_weight(c, "model.embed_tokens.weight");
    if (!emb || emb->n_dims != 2 || emb->shape[0] <= 0 || emb->shape[0] > (1 << 24))
        return eng_fail(ENG_EFORMAT, "%s: model.embed_tokens.weight is missing or malformed",
                        c->dir);
    c->n_vocab = (int)emb->shape[0];
    if (!(c->w = eng_gguf_writer_new())) return eng_fail(ENG_ENOMEM, "out of memory");
    if ((err = convert_hparams(c))) return err;
    if ((err = convert_tokenizer(c))) return err;
    if ((err = convert_chat_template(c))) return err;
    if ((err = convert_weights(c))) return err;
    return eng_gguf_writer_write(c->w, out);
}

int cmd_convert(int argc, char **argv) {
    const char *dir = NULL, *out = NULL, *type = "f16";
    for (int i = 1; i < argc; i++) {
        if (cli_is_help(argv[i])) {
            usage();
            return 0;
        } else if (!strcmp(argv[i], "--type") && i + 1 < argc) {
            type = argv[++i];
        } else if (argv[i][0] == '-') {
            return cli_usage_error(CMD, "unknown or incomplete option '%s'", argv[i]);
        } else if (!dir) {
            dir = argv[i];
        } else if (!out) {
            out = argv[i];
        } else {
            return cli_usage_error(CMD, "unexpected argument '%s'", argv[i]);
        }
    }
    if (!dir || !out) return cli_usage_error(CMD, "HF_DIR and OUT.gguf are required");
    struct conv c = {.dir = dir};
    if (!strcmp(type, "f16"))
        c.type = ENG_TYPE_F16;
    else if (!strcmp(type, "bf16"))
        c.type = ENG_TYPE_BF16;
    else if (!strcmp(type, "f32"))
        c.type = ENG_TYPE_F32;
    else
        return cli_usage_error(CMD, "--type must be f16, bf16 or f32 (not '%s')", type);
    struct stat st;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
        return cli_usage_error(CMD, "%s is not a directory", dir);
    int err = convert(&c, out);
    int rc = 0;
    if (err)
        rc = cli_fail(CMD, "%s", eng_last_error());
    else
        fprintf(stderr, "edgellm convert: wrote %s (%s, %d layers, %d tokens, %s)\n", out, c.arch,
                c.n_layer, c.n_vocab, eng_type_name(c.type));
    eng_gguf_writer_free(c.w);
    for (int i = 0; i < c.n_files; i++) eng_st_close(c.files[i]);
    free(c.files);
    for (int i = 0; i < c.n_bufs; i++) free(c.bufs[i]);
    free(c.bufs);
    json_decref(c.config);
    json_decref(c.tok);
    json_decref(c.tok_cfg);
    return rc;
}
