/*
 * calib.c — calibration: runs the model over calibration text and keeps (1) the mean squared
 * activation of every input column of every weight matrix (importance), (2) for the KL set, the
 * hidden state entering every block and the base model's logits, so the effect of changing one
 * tensor can be measured by running only the blocks from that tensor's layer on.
 * It does not quantize or decide anything.
 */
#include "internal.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CMP_MAX_TEXT (256u << 20)

struct obs_state {
    struct cmp_calib *c;
    double *acc[ENG_OBS_COUNT]; /* sums of squares, (L, cols) or (cols) for the output head */
    float *hidden_dst;          /* during the KL pass: where block outputs of this chunk go */
    size_t hidden_stride;       /* floats between layers in c->hidden */
};

static void observe(void *user, int layer, enum eng_obs_point point, const float *x, int n_rows,
                    int n_cols) {
    struct obs_state *s = user;
    if (point == ENG_OBS_LAYER_OUT) {
        if (s->hidden_dst && layer + 1 < s->c->n_layer)
            memcpy(s->hidden_dst + (size_t)(layer + 1) * s->hidden_stride, x,
                   sizeof(float) * (size_t)n_rows * n_cols);
        return;
    }
    double *acc = s->acc[point];
    if (!acc) return;
    if (layer >= 0) acc += (size_t)layer * n_cols;
    for (int r = 0; r < n_rows; r++) {
        const float *row = x + (size_t)r * n_cols;
        for (int j = 0; j < n_cols; j++) acc[j] += (double)row[j] * row[j];
    }
}

static char *read_text(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        eng_fail(ENG_EIO, "%s: cannot read the calibration text: %s", path, strerror(errno));
        return NULL;
    }
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        if (n == cap) {
            if (cap >= CMP_MAX_TEXT) break;
            char *p = realloc(buf, cap * 2);
            if (!p) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = p;
            cap *= 2;
        }
        size_t k = fread(buf + n, 1, cap - n, f);
        if (k == 0) break;
        n += k;
    }
    bool err = ferror(f);
    fclose(f);
    if (!buf || err) {
        free(buf);
        eng_fail(err ? ENG_EIO : ENG_ENOMEM, "%s: cannot read the calibration text", path);
        return NULL;
    }
    *len = n;
    return buf;
}

/* Builds chunks: each starts with BOS (when the model uses one) followed by text tokens. */
static int32_t *make_chunks(const int32_t *ids, int n_ids, int bos, int chunk, int n_chunks,
                            int *used) {
    int32_t *out = malloc(sizeof(int32_t) * (size_t)chunk * n_chunks);
    if (!out) return NULL;
    int k = *used;
    for (int c = 0; c < n_chunks; c++) {
        int p = 0;
        if (bos >= 0) out[(size_t)c * chunk + p++] = bos;
        for (; p < chunk; p++) out[(size_t)c * chunk + p] = ids[k++ % n_ids];
    }
    *used = k;
    return out;
}

static struct eng_ctx *new_ctx(const struct eng_model *m, int chunk, int n_threads) {
    struct eng_ctx_params cp;
    eng_ctx_params_default(m, &cp);
    cp.n_ctx = chunk;
    cp.n_batch = chunk;
    cp.n_outputs = chunk;
    if (n_threads > 0) cp.n_threads = n_threads;
    return eng_ctx_new(m, &cp);
}

void cmp_calib_free(struct cmp_calib *c) {
    if (!c) return;
    free(c->imp_attn_in);
    free(c->imp_attn_out);
    free(c->imp_ffn_in);
    free(c->imp_ffn_down);
    free(c->imp_output);
    free(c->imp_uniform);
    free(c->kl_tokens);
    free(c->hidden);
    free(c->base_logits);
    free(c);
}

struct cmp_calib *cmp_calib_run(struct eng_model *m, const char *text_path, int imp_tokens,
                                int kl_tokens, int chunk, int n_threads,
                                void (*progress)(void *u, double frac), void *progress_user) {
    const struct eng_hparams *hp = eng_model_hparams(m);
    struct cmp_calib *c = calloc(1, sizeof(*c));
    struct eng_tokenizer *tok = NULL;
    struct eng_ctx *ctx = NULL;
    char *text = NULL;
    int32_t *ids = NULL, *imp_chunks = NULL;
    struct obs_state st = {c};
    if (!c) goto nomem;
    c->n_layer = hp->n_layer;
    c->n_embd = hp->n_embd;
    c->n_q = hp->n_head * hp->head_dim;
    c->n_ff = hp->n_ff;
    c->n_vocab = hp->n_vocab;
    c->tied = hp->tied_output;
    if (chunk > hp->n_ctx_train) chunk = hp->n_ctx_train;
    if (chunk < 16) {
        eng_fail(ENG_EINVAL, "calibration chunk of %d tokens is too short", chunk);
        goto err;
    }
    c->chunk = chunk;

    tok = eng_tokenizer_load(eng_model_gguf(m));
    if (!tok) goto err;
    size_t len;
    text = read_text(text_path, &len);
    if (!text) goto err;
    int n_ids = eng_tokenize(tok, text, len, NULL, 0, 0);
    if (n_ids < 0) goto err;
    if (n_ids < chunk) {
        eng_fail(ENG_EINVAL, "%s: the calibration text has %d tokens; at least %d are needed",
                 text_path, n_ids, chunk);
        goto err;
    }
    ids = malloc(sizeof(int32_t) * (size_t)n_ids);
    if (!ids) goto nomem;
    if (eng_tokenize(tok, text, len, ids, n_ids, 0) != n_ids) goto err;
    int bos = eng_tokenizer_add_bos(tok) ? eng_token_bos(tok) : -1;
    int n_imp = (imp_tokens + chunk - 1) / chunk, used = 0;
    c->n_kl_chunks = (kl_tokens + chunk - 1) / chunk;
    if (n_imp < 1) n_imp = 1;
    if (c->n_kl_chunks < 1) c->n_kl_chunks = 1;
    /* The KL set comes from the text after the importance set when there is enough of it. */
    imp_chunks = make_chunks(ids, n_ids, bos, chunk, n_imp, &used);
    if ((size_t)used + (size_t)c->n_kl_chunks * chunk > (size_t)n_ids) used = 0;
    c->kl_tokens = make_chunks(ids, n_ids, bos, chunk, c->n_kl_chunks, &used);
    size_t L = (size_t)hp->n_layer, E = (size_t)c->n_embd, T = (size_t)c->n_kl_chunks * chunk;
    c->imp_attn_in = calloc(L * E, sizeof(float));
    c->imp_attn_out = calloc(L * (size_t)c->n_q, sizeof(float));
    c->imp_ffn_in = calloc(L * E, sizeof(float));
    c->imp_ffn_down = calloc(L * (size_t)c->n_ff, sizeof(float));
    c->imp_output = calloc(E, sizeof(float));
    c->imp_uniform = malloc(E * sizeof(float));
    c->hidden = malloc(sizeof(float) * L * T * E);
    c->base_logits = malloc(sizeof(float) * T * (size_t)c->n_vocab);
    st.acc[ENG_OBS_ATTN_IN] = calloc(L * E, sizeof(double));
    st.acc[ENG_OBS_ATTN_OUT_IN] = calloc(L * (size_t)c->n_q, sizeof(double));
    st.acc[ENG_OBS_FFN_IN] = calloc(L * E, sizeof(double));
    st.acc[ENG_OBS_FFN_DOWN_IN] = calloc(L * (size_t)c->n_ff, sizeof(double));
    st.acc[ENG_OBS_OUTPUT_IN] = calloc(E, sizeof(double));
    if (!imp_chunks || !c->kl_tokens || !c->imp_attn_in || !c->imp_attn_out || !c->imp_ffn_in ||
        !c->imp_ffn_down || !c->imp_output || !c->imp_uniform || !c->hidden || !c->base_logits ||
        !st.acc[ENG_OBS_ATTN_IN] || !st.acc[ENG_OBS_ATTN_OUT_IN] || !st.acc[ENG_OBS_FFN_IN] ||
        !st.acc[ENG_OBS_FFN_DOWN_IN] || !st.acc[ENG_OBS_OUTPUT_IN])
        goto nomem;

    for (size_t j = 0; j < E; j++) c->imp_uniform[j] = 1.0f;

    ctx = new_ctx(m, chunk, n_threads);
    if (!ctx) goto err;
    eng_ctx_set_observer(ctx, observe, &st);
    int8_t *all = malloc((size_t)chunk);
    if (!all) goto nomem;
    memset(all, 1, (size_t)chunk);
    int total = n_imp + c->n_kl_chunks;
    for (int k = 0; k < n_imp; k++) {
        struct eng_batch b = {chunk, imp_chunks + (size_t)k * chunk, NULL, NULL, all};
        if (eng_forward(ctx, &b) != 0) {
            free(all);
            goto err;
        }
        if (progress) progress(progress_user, (double)(k + 1) / total);
    }
    c->n_imp_tokens = n_imp * chunk;
    /* KL set: keep block inputs and logits (importance is not accumulated here) */
    for (int p = 0; p < ENG_OBS_COUNT; p++) {
        double *a = st.acc[p];
        st.acc[p] = NULL;
        if (!a) continue;
        size_t cols = p == ENG_OBS_ATTN_OUT_IN   ? (size_t)c->n_q
                      : p == ENG_OBS_FFN_DOWN_IN ? (size_t)c->n_ff
                                                 : E;
        size_t n = (p == ENG_OBS_OUTPUT_IN ? 1 : L) * cols;
        float *dst = p == ENG_OBS_ATTN_IN       ? c->imp_attn_in
                     : p == ENG_OBS_ATTN_OUT_IN ? c->imp_attn_out
                     : p == ENG_OBS_FFN_IN      ? c->imp_ffn_in
                     : p == ENG_OBS_FFN_DOWN_IN ? c->imp_ffn_down
                                                : c->imp_output;
        for (size_t i = 0; i < n; i++) dst[i] = (float)(a[i] / c->n_imp_tokens);
        free(a);
    }
    st.hidden_stride = T * E;
    for (int k = 0; k < c->n_kl_chunks; k++) {
        st.hidden_dst = c->hidden + (size_t)k * chunk * E;
        /* block 0's input is the embedding of the tokens */
        struct eng_batch b = {chunk, c->kl_tokens + (size_t)k * chunk, NULL, NULL, all};
        if (eng_forward(ctx, &b) != 0) {
            free(all);
            goto err;
        }
        for (int i = 0; i < chunk; i++)
            memcpy(c->base_logits + ((size_t)k * chunk + i) * c->n_vocab, eng_logits(ctx, i),
                   sizeof(float) * (size_t)c->n_vocab);
        if (progress) progress(progress_user, (double)(n_imp + k + 1) / total);
    }
    free(all);
    eng_ctx_free(ctx);
    eng_tokenizer_free(tok);
    free(text);
    free(ids);
    free(imp_chunks);
    return c;
nomem:
    eng_fail(ENG_ENOMEM, "out of memory during calibration");
err:
    for (int p = 0; p < ENG_OBS_COUNT; p++) free(st.acc[p]);
    eng_ctx_free(ctx);
    eng_tokenizer_free(tok);
    free(text);
    free(ids);
    free(imp_chunks);
    cmp_calib_free(c);
    return NULL;
}

const float *cmp_calib_importance(const struct cmp_calib *c, enum cmp_kind k, int layer) {
    switch (k) {
    case CMP_KIND_Q:
    case CMP_KIND_K:
    case CMP_KIND_V:
        return c->imp_attn_in + (size_t)layer * c->n_embd;
    case CMP_KIND_O:
        return c->imp_attn_out + (size_t)layer * c->n_q;
    case CMP_KIND_GATE:
    case CMP_KIND_UP:
        return c->imp_ffn_in + (size_t)layer * c->n_embd;
    case CMP_KIND_DOWN:
        return c->imp_ffn_down + (size_t)layer * c->n_ff;
    case CMP_KIND_EMBD:
        /* An untied token embedding is a lookup table: a row is copied into the residual
         * stream, not multiplied by an activation, so every element of a row reaches the
         * output with the same weight and the importance is uniform. (How often a token occurs
         * weighs whole rows, which changes neither a row's best scales nor, since sensitivity
         * is calibrated by measured KL, the ranking of formats.) The output head's importance,
         * used before, describes the head's input columns and means nothing here. Tied, the
         * matrix is also the output head, whose importance it takes. */
        return c->tied ? c->imp_output : c->imp_uniform;
    default:
        return c->imp_output; /* the output head */
    }
}

int cmp_calib_kld(const struct cmp_calib *c, struct eng_model *m, int first_layer, int n_threads,
                  double *mean_kld, struct cmp_kld_acc *acc) {
    struct eng_ctx *ctx = new_ctx(m, c->chunk, n_threads);
    if (!ctx) return ENG_ENOMEM;
    int8_t *all = malloc((size_t)c->chunk);
    if (!all) {
        eng_ctx_free(ctx);
        return eng_fail(ENG_ENOMEM, "out of memory");
    }
    memset(all, 1, (size_t)c->chunk);
    size_t T = (size_t)c->n_kl_chunks * c->chunk, E = (size_t)c->n_embd;
    double sum = 0.0;
    int err = 0;
    for (int k = 0; k < c->n_kl_chunks && !err; k++) {
        struct eng_batch b = {c->chunk, c->kl_tokens + (size_t)k * c->chunk, NULL, NULL, all};
        if (first_layer > 0) {
            b.first_layer = first_layer;
            b.embd = c->hidden + (size_t)first_layer * T * E + (size_t)k * c->chunk * E;
        }
        err = eng_forward(ctx, &b);
        for (int i = 0; i < c->chunk && !err; i++)
            sum += cmp_kld_acc_add(acc, c->base_logits + ((size_t)k * c->chunk + i) * c->n_vocab,
                                   eng_logits(ctx, i), c->n_vocab);
    }
    free(all);
    eng_ctx_free(ctx);
    if (!err) *mean_kld = sum / (double)T;
    return err;
}
