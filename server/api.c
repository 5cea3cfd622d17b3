/*
 * api.c — the OpenAI endpoints and edgellm's own: chat completions and completions (prompt
 * rendering, tokenization, context checks, job submission, streamed chunks and final objects),
 * models, health, metrics, tokenize / detokenize.
 *
 * Object shapes follow OpenAI's: chat.completion / chat.completion.chunk / text_completion, usage,
 * logprobs, errors. Runs on the loop thread; talks to the engine only through jobs. It does not
 * own connections (http.c does).
 */
#include "internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

/* ---- small helpers ---- */

static uint64_t random_u64(void) {
    uint64_t x = 0;
    if (getrandom(&x, sizeof(x), 0) != (ssize_t)sizeof(x)) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        x = (uint64_t)ts.tv_nsec * 0x9e3779b97f4a7c15ull ^ (uint64_t)ts.tv_sec;
    }
    return x;
}

static void make_id(char *out, size_t n, const char *prefix) {
    static const char al[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    size_t p = (size_t)snprintf(out, n, "%s", prefix);
    unsigned char rnd[24];
    if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd))
        for (size_t i = 0; i < sizeof(rnd); i++) rnd[i] = (unsigned char)random_u64();
    for (size_t i = 0; i < sizeof(rnd) && p + 1 < n; i++) out[p++] = al[rnd[i] % 62];
    out[p] = 0;
}

/* A JSON string from bytes that may not be valid UTF-8. */
static json_t *jstr(const char *s, size_t n) {
    size_t m;
    char *clean = srv_utf8_sanitize(s ? s : "", s ? n : 0, &m);
    if (!clean) return NULL;
    json_t *j = json_stringn_nocheck(clean, m);
    free(clean);
    return j;
}

/* Log-probabilities can be -inf, which JSON cannot carry. */
static json_t *jlogprob(float x) {
    return json_real(isfinite(x) ? (double)x : -9999.0);
}

static int error_reply(struct srv_req *r, int status, const char *type, const char *code,
                       const char *param, const char *msg) {
    struct srv_error e;
    srv_err(&e, status, type, code, param, "%s", msg);
    return srv_send_error(r, &e);
}

static int not_loaded(struct srv_req *r) {
    enum srv_sched_state st = r->srv->sched ? srv_sched_state(r->srv->sched) : SRV_SCHED_LOADING;
    return error_reply(r, 503, "server_error", "model_not_ready", NULL,
                       st == SRV_SCHED_FAILED ? "The model failed to load."
                                              : "The model is loading; retry shortly.");
}

/* ---- models, health, metrics ---- */

static json_t *model_object(struct srv_server *s) {
    const struct eng_model *m = srv_sched_model(s->sched);
    const struct eng_hparams *hp = eng_model_hparams(m);
    size_t file_size = eng_gguf_file_size(eng_model_gguf(m));
    return json_pack("{s:s, s:s, s:I, s:s, s:i, s:i, s:I, s:I, s:s, s:s, s:i}", "id", s->model_id,
                     "object", "model", "created", (json_int_t)s->model_created, "owned_by",
                     "edgellm", "context_length", srv_sched_n_ctx(s->sched), "n_ctx_train",
                     hp->n_ctx_train, "parameter_count", (json_int_t)eng_model_n_params(m),
                     "file_size", (json_int_t)file_size, "architecture", eng_arch_name(hp->arch),
                     "chat_template", eng_chat_family_name(s->chat_family), "slots",
                     srv_sched_n_slots(s->sched));
}

int srv_api_models(struct srv_req *r, const char *id) {
    struct srv_server *s = r->srv;
    if (!s->loaded) return not_loaded(r);
    if (id) {
        if (strcmp(id, s->model_id) != 0) {
            struct srv_error e;
            srv_err(&e, 404, "invalid_request_error", "model_not_found", "model",
                    "The model '%.200s' does not exist or you do not have access to it.", id);
            return srv_send_error(r, &e);
        }
        return srv_send_json(r, 200, model_object(s));
    }
    json_t *data = json_array();
    json_array_append_new(data, model_object(s));
    return srv_send_json(r, 200, json_pack("{s:s, s:o}", "object", "list", "data", data));
}

int srv_api_health(struct srv_req *r) {
    struct srv_server *s = r->srv;
    const char *status = s->draining ? "shutting_down"
                         : s->loaded ? "ok"
                         : s->sched && srv_sched_state(s->sched) == SRV_SCHED_FAILED ? "error"
                                                                                     : "loading";
    int queued = 0, active = 0;
    if (s->sched) srv_sched_counts(s->sched, &queued, &active);
    json_t *j = json_pack("{s:s}", "status", status);
    if (s->loaded) {
        json_object_set_new(j, "slots_idle", json_integer(srv_sched_n_slots(s->sched) - active));
        json_object_set_new(j, "slots_processing", json_integer(active));
        json_object_set_new(j, "queue", json_integer(queued));
    }
    return srv_send_json(r, strcmp(status, "ok") ? 503 : 200, j);
}

int srv_api_metrics(struct srv_req *r) {
    struct srv_buf b = {0};
    if (srv_metrics_render(&b)) {
        srv_buf_free(&b);
        return -1;
    }
    int rc = srv_send_text(r, 200, "text/plain; version=0.0.4; charset=utf-8", b.p, b.len);
    srv_buf_free(&b);
    return rc;
}

/* ---- tokenize / detokenize (llama.cpp's shapes) ---- */

int srv_api_tokenize(struct srv_req *r, bool detok) {
    struct srv_server *s = r->srv;
    if (!s->loaded) return not_loaded(r);
    const struct eng_tokenizer *tok = srv_sched_tokenizer(s->sched);
    json_error_t je;
    json_t *root = json_loadb(r->body.p ? r->body.p : "", r->body.len, JSON_REJECT_DUPLICATES, &je);
    struct srv_error e;
    int rc;
    if (!root || !json_is_object(root)) {
        srv_err(&e, 400, "invalid_request_error", NULL, NULL,
                "We could not parse the JSON body of your request: %s",
                root ? "not an object" : je.text);
        json_decref(root);
        return srv_send_error(r, &e);
    }
    const char *k;
    json_t *v;
    json_object_foreach(root, k, v) {
        bool known = !strcmp(k, "model") ||
                     (detok ? !strcmp(k, "tokens")
                            : (!strcmp(k, "content") || !strcmp(k, "add_special") ||
                               !strcmp(k, "parse_special") || !strcmp(k, "with_pieces")));
        if (!known) {
            srv_err(&e, 400, "invalid_request_error", "unknown_parameter", k,
                    "Unrecognized request argument supplied: %.64s", k);
            goto fail;
        }
        if (!strcmp(k, "model") && !json_is_null(v) &&
            (!json_is_string(v) || strcmp(json_string_value(v), s->model_id) != 0)) {
            srv_err(&e, 404, "invalid_request_error", "model_not_found", "model",
                    "The model does not exist or you do not have access to it.");
            goto fail;
        }
        if ((!strcmp(k, "add_special") || !strcmp(k, "parse_special") ||
             !strcmp(k, "with_pieces")) &&
            !json_is_boolean(v)) {
            srv_err(&e, 400, "invalid_request_error", "invalid_type", k,
                    "Invalid type for '%s': expected a boolean.", k);
            goto fail;
        }
    }
    if (detok) {
        json_t *t = json_object_get(root, "tokens");
        if (!json_is_array(t)) {
            srv_err(&e, 400, "invalid_request_error", "invalid_type", "tokens",
                    "'tokens' must be an array of token ids.");
            goto fail;
        }
        size_t n = json_array_size(t), i;
        int32_t *ids = malloc((n ? n : 1) * sizeof(int32_t));
        int n_vocab = eng_tokenizer_n_vocab(tok);
        if (!ids) goto oom;
        json_array_foreach(t, i, v) {
            long long id = json_is_integer(v) ? json_integer_value(v) : -1;
            if (id < 0 || id >= n_vocab) {
                free(ids);
                srv_err(&e, 400, "invalid_request_error", "invalid_value", "tokens",
                        "tokens[%zu] is not a token id of this model (0..%d).", i, n_vocab - 1);
                goto fail;
            }
            ids[i] = (int32_t)id;
        }
        int len = eng_detokenize(tok, ids, (int)n, NULL, 0, ENG_DETOK_RENDER_SPECIAL);
        char *text = len >= 0 ? malloc((size_t)len + 1) : NULL;
        if (text) eng_detokenize(tok, ids, (int)n, text, len + 1, ENG_DETOK_RENDER_SPECIAL);
        free(ids);
        if (!text) goto oom;
        json_t *out = json_pack("{s:o}", "content", jstr(text, (size_t)len));
        free(text);
        json_decref(root);
        return srv_send_json(r, 200, out);
    }
    json_t *content = json_object_get(root, "content");
    if (!json_is_string(content)) {
        srv_err(&e, 400, "invalid_request_error", "missing_required_parameter", "content",
                "'content' must be a string.");
        goto fail;
    }
    unsigned flags = 0;
    if (json_is_true(json_object_get(root, "add_special"))) flags |= ENG_TOKENIZE_ADD_SPECIAL;
    if (!json_is_false(json_object_get(root, "parse_special"))) flags |= ENG_TOKENIZE_PARSE_SPECIAL;
    bool pieces = json_is_true(json_object_get(root, "with_pieces"));
    const char *text = json_string_value(content);
    size_t len = json_string_length(content);
    int n = eng_tokenize(tok, text, len, NULL, 0, flags);
    int32_t *ids = n >= 0 ? malloc(((size_t)n + 1) * sizeof(int32_t)) : NULL;
    if (!ids) goto oom;
    eng_tokenize(tok, text, len, ids, n, flags);
    json_t *arr = json_array();
    for (int i = 0; i < n; i++) {
        if (!pieces) {
            json_array_append_new(arr, json_integer(ids[i]));
            continue;
        }
        char buf[256];
        int pn = eng_token_to_piece(tok, ids[i], buf, sizeof(buf), ENG_DETOK_RENDER_SPECIAL);
        if (pn < 0) pn = 0;
        if (pn > (int)sizeof(buf)) pn = (int)sizeof(buf);
        json_array_append_new(
            arr, json_pack("{s:i, s:o}", "id", ids[i], "piece", jstr(buf, (size_t)pn)));
    }
    free(ids);
    json_decref(root);
    return srv_send_json(r, 200, json_pack("{s:o}", "tokens", arr));
oom:
    srv_err(&e, 500, "server_error", NULL, NULL, "out of memory");
fail:
    json_decref(root);
    rc = srv_send_error(r, &e);
    return rc;
}

/* ---- generation: request → job ---- */

/* Tokenizes a completions prompt into ids (capacity cap) with BOS as the model asks and special
 * tokens parsed; returns the full count or a negative error. A BOS written in the text and
 * added again by the tokenizer is kept once. */
static int tokenize_prompt(const struct eng_tokenizer *tok, const char *text, int32_t *ids,
                           int cap) {
    int n = eng_tokenize(tok, text, strlen(text), ids, cap,
                         ENG_TOKENIZE_ADD_SPECIAL | ENG_TOKENIZE_PARSE_SPECIAL);
    int32_t bos = eng_token_bos(tok);
    if (n >= 2 && n <= cap && bos >= 0 && ids[0] == bos && ids[1] == bos) {
        memmove(ids, ids + 1, (size_t)(n - 1) * sizeof(int32_t));
        n--;
    }
    return n;
}

static int context_error(struct srv_error *e, int n_ctx, long prompt, long completion) {
    if (completion > 0)
        return srv_err(e, 400, "invalid_request_error", "context_length_exceeded", "messages",
                       "This model's maximum context length is %d tokens. However, you requested "
                       "%ld tokens (%ld in the messages, %ld in the completion). Please reduce the "
                       "length of the messages or completion.",
                       n_ctx, prompt + completion, prompt, completion);
    return srv_err(e, 400, "invalid_request_error", "context_length_exceeded", "messages",
                   "This model's maximum context length is %d tokens. However, your messages "
                   "resulted in %ld tokens. Please reduce the length of the messages.",
                   n_ctx, prompt);
}

/* Fills job prompts from g; sets r->echo_text for completions. 0 or an error in e. */
static int build_prompts(struct srv_req *r, const struct srv_gen_request *g, struct srv_job *job,
                         struct srv_error *e) {
    struct srv_server *s = r->srv;
    const struct eng_tokenizer *tok = srv_sched_tokenizer(s->sched);
    int n_ctx = srv_sched_n_ctx(s->sched);
    int cap = n_ctx + 8;
    if (g->kind == SRV_COMPLETION &&
        !(r->echo_text = calloc((size_t)job->n_groups + 1, sizeof(char *))))
        return srv_err(e, 500, "server_error", NULL, NULL, "out of memory");
    for (int grp = 0; grp < job->n_groups; grp++) {
        int32_t *ids = malloc((size_t)cap * sizeof(int32_t));
        if (!ids) return srv_err(e, 500, "server_error", NULL, NULL, "out of memory");
        job->prompt[grp] = ids;
        int n;
        if (g->kind == SRV_CHAT) {
            int32_t bos = eng_token_bos(tok), eos = eng_token_eos(tok);
            char *text = eng_chat_template_apply(&s->chat_tmpl, g->msgs, g->n_msgs, true,
                                                 bos >= 0 ? eng_token_text(tok, bos) : NULL,
                                                 eos >= 0 ? eng_token_text(tok, eos) : NULL);
            if (!text)
                return srv_err(e, 400, "invalid_request_error", "invalid_value", "messages",
                               "These messages cannot be rendered with the model's chat "
                               "template: %s",
                               eng_last_error());
            n = eng_tokenize_chat(tok, text, strlen(text), ids, cap);
            free(text);
        } else if (g->prompts[grp].text) {
            n = tokenize_prompt(tok, g->prompts[grp].text, ids, cap);
            if (g->echo && !(r->echo_text[grp] = strdup(g->prompts[grp].text)))
                return srv_err(e, 500, "server_error", NULL, NULL, "out of memory");
        } else {
            n = g->prompts[grp].n_ids;
            if (n <= cap) memcpy(ids, g->prompts[grp].ids, (size_t)n * sizeof(int32_t));
            if (g->echo) {
                int len = eng_detokenize(tok, ids, n, NULL, 0, 0);
                char *t = len >= 0 ? malloc((size_t)len + 1) : NULL;
                if (!t) return srv_err(e, 500, "server_error", NULL, NULL, "out of memory");
                eng_detokenize(tok, ids, n, t, len + 1, 0);
                r->echo_text[grp] = t;
            }
        }
        if (n < 0)
            return srv_err(e, 400, "invalid_request_error", "invalid_value",
                           g->kind == SRV_CHAT ? "messages" : "prompt",
                           "The prompt could not be tokenized: %s", eng_last_error());
        if (n == 0)
            return srv_err(e, 400, "invalid_request_error", "invalid_value", "prompt",
                           "The prompt is empty (it has no tokens).");
        if (n >= n_ctx) return context_error(e, n_ctx, n, g->max_tokens > 0 ? g->max_tokens : 0);
        job->n_prompt[grp] = n;
        r->prompt_tokens += n;
    }
    return 0;
}

static struct srv_job *build_job(struct srv_req *r, const struct srv_gen_request *g,
                                 struct srv_error *e) {
    struct srv_server *s = r->srv;
    int n_groups = g->kind == SRV_CHAT ? 1 : g->n_prompts;
    int n_slots = srv_sched_n_slots(s->sched), n_ctx = srv_sched_n_ctx(s->sched);
    if (strcmp(g->model, s->model_id) != 0) {
        srv_err(e, 404, "invalid_request_error", "model_not_found", "model",
                "The model '%.200s' does not exist or you do not have access to it.", g->model);
        return NULL;
    }
    if ((long)n_groups * g->n > n_slots) {
        srv_err(e, 400, "invalid_request_error", "invalid_value", "n",
                "This server decodes at most %d sequences at once, but the request asks for %ld "
                "(n = %d for %d prompt(s)).",
                n_slots, (long)n_groups * g->n, g->n, n_groups);
        return NULL;
    }
    if (g->max_tokens > s->cfg.max_tokens) {
        srv_err(e, 400, "invalid_request_error", "integer_above_max_value", "max_tokens",
                "max_tokens is too large: %ld. This server supports at most %ld completion tokens "
                "per request.",
                g->max_tokens, s->cfg.max_tokens);
        return NULL;
    }
    if (g->echo && g->logprobs) {
        srv_err(e, 400, "invalid_request_error", "invalid_value", "echo",
                "echo together with logprobs is not supported by this server.");
        return NULL;
    }
    struct srv_job *job = srv_job_new(n_groups, g->n);
    if (!job) {
        srv_err(e, 500, "server_error", NULL, NULL, "out of memory");
        return NULL;
    }
    if (build_prompts(r, g, job, e)) goto err;
    int longest = 0;
    for (int grp = 0; grp < n_groups; grp++)
        if (job->n_prompt[grp] > longest) longest = job->n_prompt[grp];
    if (g->max_tokens > 0) {
        if (longest + g->max_tokens > n_ctx) {
            context_error(e, n_ctx, longest, g->max_tokens);
            goto err;
        }
        job->max_tokens = (int)g->max_tokens;
    } else {
        long room = n_ctx - longest;
        job->max_tokens = (int)(room < s->cfg.max_tokens ? room : s->cfg.max_tokens);
    }
    job->sp = g->sp;
    job->sp.seed = g->has_seed ? g->seed : random_u64();
    if (g->n_bias) {
        if (!(job->bias = malloc((size_t)g->n_bias * sizeof(*job->bias)))) goto oom;
        memcpy(job->bias, g->bias, (size_t)g->n_bias * sizeof(*job->bias));
        job->sp.logit_bias = job->bias;
        job->sp.n_logit_bias = g->n_bias;
    } else {
        job->sp.logit_bias = NULL;
        job->sp.n_logit_bias = 0;
    }
    for (int i = 0; i < g->n_stop; i++) {
        if (!(job->stop[i] = strdup(g->stop[i]))) goto oom;
        job->n_stop++;
    }
    job->want_lp = g->logprobs;
    job->stream = g->stream;
    job->continues = g->kind == SRV_COMPLETION;
    job->t_submit = r->t_start;
    job->deadline = r->t_start + s->cfg.request_timeout;
    return job;
oom:
    srv_err(e, 500, "server_error", NULL, NULL, "out of memory");
err:
    srv_job_unref(job);
    return NULL;
}

int srv_api_generate(struct srv_req *r) {
    struct srv_server *s = r->srv;
    if (!s->loaded) return not_loaded(r);
    r->kind = r->route == SRV_ROUTE_CHAT ? SRV_CHAT : SRV_COMPLETION;
    const struct eng_model *m = srv_sched_model(s->sched);
    struct srv_gen_request g;
    struct srv_error e;
    if (srv_gen_request_parse(r->kind, r->body.p ? r->body.p : "", r->body.len,
                              eng_model_hparams(m)->n_vocab, &g, &e))
        return srv_send_error(r, &e);
    struct srv_job *job = build_job(r, &g, &e);
    if (!job) {
        srv_gen_request_free(&g);
        return srv_send_error(r, &e);
    }
    r->stream = g.stream;
    r->include_usage = g.include_usage;
    r->logprobs = g.logprobs;
    r->top_logprobs = g.top_logprobs;
    r->echo = g.echo;
    srv_gen_request_free(&g);
    r->n_choices = job->n_choices;
    if (!(r->ch = calloc((size_t)r->n_choices, sizeof(*r->ch)))) {
        srv_job_unref(job);
        return error_reply(r, 500, "server_error", NULL, NULL, "out of memory");
    }
    for (int c = 0; c < r->n_choices; c++) {
        const char *echo = r->echo_text ? r->echo_text[c / job->n_per_group] : NULL;
        r->ch[c].text_offset = echo ? (long)strlen(echo) : 0;
    }
    make_id(r->id, sizeof(r->id), r->kind == SRV_CHAT ? "chatcmpl-" : "cmpl-");
    r->created = (long long)time(NULL);
    /* Requests that arrive together start together: while connections opened with this one have
     * not sent their requests yet, an idle engine is woken once they have (or a moment later,
     * srv_http_kick), not for this one alone and then for the others a pass later
     * (burst_starts_together). Otherwise it is woken at once. */
    const bool defer = srv_http_more_arriving(s);
    int rc = srv_sched_submit(s->sched, job, (int)s->cfg.queue, defer);
    s->wake_engine |= defer;
    if (rc) {
        srv_job_unref(job);
        srv_metrics_rejected();
        return error_reply(r, 503, "server_error", "overloaded", NULL,
                           "The server is overloaded (the request queue is full); retry shortly.");
    }
    r->job = job;
    job->req = r;
    r->next = s->reqs;
    if (s->reqs) s->reqs->prev = r;
    s->reqs = r;
    s->n_reqs++;
    if (r->stream) return srv_send_stream(r);
    srv_req_suspend(r);
    return 0;
}

/* ---- output: job → request ---- */

/* Token text and bytes for logprobs. */
static json_t *token_entry(const struct eng_tokenizer *tok, int32_t id, float logprob,
                           bool with_bytes) {
    char buf[256];
    int n = eng_token_to_piece(tok, id, buf, sizeof(buf), ENG_DETOK_RENDER_SPECIAL);
    if (n < 0) n = 0;
    if (n > (int)sizeof(buf)) n = (int)sizeof(buf);
    json_t *o = json_object();
    json_object_set_new(o, "token", jstr(buf, (size_t)n));
    json_object_set_new(o, "logprob", jlogprob(logprob));
    if (with_bytes) {
        json_t *b = json_array();
        for (int i = 0; i < n; i++) json_array_append_new(b, json_integer((unsigned char)buf[i]));
        json_object_set_new(o, "bytes", b);
    }
    return o;
}

/* Chat logprobs: {"content": [...], "refusal": null}. */
static json_t *chat_logprobs(struct srv_req *r, const struct srv_tok_lp *lp, int n) {
    const struct eng_tokenizer *tok = srv_sched_tokenizer(r->srv->sched);
    json_t *content = json_array();
    for (int i = 0; i < n; i++) {
        json_t *e = token_entry(tok, lp[i].token, lp[i].logprob, true);
        json_t *top = json_array();
        for (int k = 0; k < lp[i].n_top && k < r->top_logprobs; k++)
            json_array_append_new(top,
                                  token_entry(tok, lp[i].top[k].token, lp[i].top[k].logprob, true));
        json_object_set_new(e, "top_logprobs", top);
        json_array_append_new(content, e);
    }
    return json_pack("{s:o, s:n}", "content", content, "refusal");
}

/* Completions logprobs: parallel arrays tokens / token_logprobs / top_logprobs / text_offset. */
static json_t *completion_logprobs(struct srv_req *r, struct srv_choice_state *c,
                                   const struct srv_tok_lp *lp, int n) {
    const struct eng_tokenizer *tok = srv_sched_tokenizer(r->srv->sched);
    json_t *tokens = json_array(), *lps = json_array(), *tops = json_array(), *offs = json_array();
    for (int i = 0; i < n; i++) {
        char buf[256];
        int pn = eng_token_to_piece(tok, lp[i].token, buf, sizeof(buf), ENG_DETOK_RENDER_SPECIAL);
        if (pn < 0) pn = 0;
        if (pn > (int)sizeof(buf)) pn = (int)sizeof(buf);
        json_array_append_new(tokens, jstr(buf, (size_t)pn));
        json_array_append_new(lps, jlogprob(lp[i].logprob));
        json_t *top = json_object();
        for (int k = 0; k < lp[i].n_top && k < r->top_logprobs; k++) {
            char tb[256];
            int tn = eng_token_to_piece(tok, lp[i].top[k].token, tb, sizeof(tb) - 1,
                                        ENG_DETOK_RENDER_SPECIAL);
            if (tn < 0) tn = 0;
            if (tn > (int)sizeof(tb) - 1) tn = (int)sizeof(tb) - 1;
            size_t m;
            char *key = srv_utf8_sanitize(tb, (size_t)tn, &m);
            /* Tokens that render alike (byte tokens of one incomplete character) share a key;
             * the first, most likely one keeps it. */
            if (key && !json_object_get(top, key))
                json_object_set_new(top, key, jlogprob(lp[i].top[k].logprob));
            free(key);
        }
        json_array_append_new(tops, top);
        json_array_append_new(offs, json_integer(c->text_offset));
        c->text_offset += pn;
    }
    return json_pack("{s:o, s:o, s:o, s:o}", "tokens", tokens, "token_logprobs", lps,
                     "top_logprobs", tops, "text_offset", offs);
}

static json_t *usage_object(struct srv_req *r) {
    int comp = 0;
    for (int c = 0; c < r->n_choices; c++) comp += r->ch[c].n_tokens;
    return json_pack("{s:i, s:i, s:i}", "prompt_tokens", r->prompt_tokens, "completion_tokens",
                     comp, "total_tokens", r->prompt_tokens + comp);
}

static json_t *object_head(struct srv_req *r, const char *object) {
    return json_pack("{s:s, s:s, s:I, s:s, s:s}", "id", r->id, "object", object, "created",
                     (json_int_t)r->created, "model", r->srv->model_id, "system_fingerprint",
                     r->srv->fingerprint);
}

/* One streamed chunk carrying a single choice (or none, for the usage chunk). */
static void emit_chunk(struct srv_req *r, json_t *choice) {
    json_t *o = object_head(r, r->kind == SRV_CHAT ? "chat.completion.chunk" : "text_completion");
    json_t *choices = json_array();
    if (choice) json_array_append_new(choices, choice);
    json_object_set_new(o, "choices", choices);
    if (r->include_usage) json_object_set_new(o, "usage", json_null());
    srv_sse_json(&r->out, o);
    json_decref(o);
}

static void emit_choice(struct srv_req *r, int idx, const char *role, const char *text, size_t n,
                        json_t *logprobs, const char *finish) {
    json_t *c;
    if (r->kind == SRV_CHAT) {
        json_t *delta = json_object();
        if (role) {
            json_object_set_new(delta, "role", json_string(role));
            json_object_set_new(delta, "content", json_string(""));
            json_object_set_new(delta, "refusal", json_null());
        } else if (text) {
            json_object_set_new(delta, "content", jstr(text, n));
        }
        c = json_pack("{s:i, s:o, s:o, s:o}", "index", idx, "delta", delta, "logprobs",
                      logprobs ? logprobs : json_null(), "finish_reason",
                      finish ? json_string(finish) : json_null());
    } else {
        c = json_pack("{s:o, s:i, s:o, s:o}", "text", jstr(text ? text : "", text ? n : 0), "index",
                      idx, "logprobs", logprobs ? logprobs : json_null(), "finish_reason",
                      finish ? json_string(finish) : json_null());
    }
    emit_chunk(r, c);
}

static void emit_error_event(struct srv_req *r) {
    struct srv_error e;
    int st = r->err_status;
    srv_err(&e, st,
            st == 503   ? "server_error"
            : st == 504 ? "timeout"
                        : "server_error",
            st == 504   ? "timeout"
            : st == 503 ? "shutting_down"
                        : NULL,
            NULL, "%s", r->err_msg);
    json_t *j = srv_error_json(&e);
    srv_sse_json(&r->out, j);
    json_decref(j);
}

void srv_api_pump(struct srv_req *r) {
    struct srv_job *j = r->job;
    if (!j || r->finished) return;
    struct srv_sched *s = r->srv->sched;
    bool done;
    srv_sched_lock(s);
    for (int c = 0; c < r->n_choices; c++) {
        struct srv_choice_out *o = &j->out[c];
        struct srv_choice_state *st = &r->ch[c];
        size_t take = o->text.len;
        if (!o->finish && !j->done) take = srv_utf8_complete_prefix(o->text.p, o->text.len);
        if (take) {
            srv_buf_append(&st->text, o->text.p, take);
            srv_buf_consume(&o->text, take);
        }
        if (o->n_lp) {
            if (st->n_lp + o->n_lp > st->cap_lp) {
                int cap = st->n_lp + o->n_lp + 16;
                struct srv_tok_lp *lp = realloc(st->lp, (size_t)cap * sizeof(*lp));
                if (lp) {
                    st->lp = lp;
                    st->cap_lp = cap;
                }
            }
            int n = st->cap_lp - st->n_lp < o->n_lp ? st->cap_lp - st->n_lp : o->n_lp;
            memcpy(st->lp + st->n_lp, o->lp, (size_t)n * sizeof(*o->lp));
            st->n_lp += n;
            o->n_lp = 0;
        }
        st->finish = o->finish;
        st->n_tokens = o->n_tokens;
    }
    done = j->done;
    if (done && j->err_status) {
        r->err_status = j->err_status;
        snprintf(r->err_msg, sizeof(r->err_msg), "%s", j->err_msg);
    }
    srv_sched_unlock(s);
    if (r->err_status == 499 && !r->client_gone && r->srv->drain_cancelled) {
        /* Cancelled by the shutdown, not by the client, who is still there to be told why. */
        r->err_status = 503;
        snprintf(r->err_msg, sizeof(r->err_msg),
                 "The server is shutting down and stopped this request before it finished.");
    }

    if (!r->stream) {
        r->finished = done;
        return;
    }
    for (int c = 0; c < r->n_choices; c++) {
        struct srv_choice_state *st = &r->ch[c];
        if (!st->role_sent) {
            st->role_sent = true;
            if (r->kind == SRV_CHAT) {
                emit_choice(r, c, "assistant", NULL, 0, NULL, NULL);
            } else if (r->echo_text && r->echo_text[c / j->n_per_group]) {
                const char *t = r->echo_text[c / j->n_per_group];
                emit_choice(r, c, NULL, t, strlen(t), NULL, NULL);
            }
        }
        if (st->text.len || st->n_lp) {
            json_t *lp = NULL;
            if (r->logprobs && st->n_lp)
                lp = r->kind == SRV_CHAT ? chat_logprobs(r, st->lp, st->n_lp)
                                         : completion_logprobs(r, st, st->lp, st->n_lp);
            emit_choice(r, c, NULL, st->text.p ? st->text.p : "", st->text.len, lp, NULL);
            srv_buf_consume(&st->text, st->text.len);
            st->n_lp = 0;
        }
        if (st->finish && !st->finish_sent && !r->err_status) {
            st->finish_sent = true;
            emit_choice(r, c, NULL, r->kind == SRV_CHAT ? NULL : "", 0, NULL, st->finish);
        }
    }
    if (!done) return;
    if (r->err_status) {
        if (r->err_status != 499) emit_error_event(r);
    } else {
        if (r->include_usage) {
            json_t *o =
                object_head(r, r->kind == SRV_CHAT ? "chat.completion.chunk" : "text_completion");
            json_object_set_new(o, "choices", json_array());
            json_object_set_new(o, "usage", usage_object(r));
            srv_sse_json(&r->out, o);
            json_decref(o);
        }
        srv_sse_done(&r->out);
    }
    r->finished = true;
}

int srv_api_finish(struct srv_req *r) {
    if (r->err_status) {
        if (r->err_status == 499) return -1; /* nobody to answer */
        struct srv_error e;
        srv_err(&e, r->err_status, r->err_status == 504 ? "timeout" : "server_error",
                r->err_status == 504   ? "timeout"
                : r->err_status == 503 ? "shutting_down"
                                       : NULL,
                NULL, "%s", r->err_msg);
        return srv_send_error(r, &e);
    }
    json_t *o = object_head(r, r->kind == SRV_CHAT ? "chat.completion" : "text_completion");
    json_t *choices = json_array();
    for (int c = 0; c < r->n_choices; c++) {
        struct srv_choice_state *st = &r->ch[c];
        json_t *lp = NULL;
        if (r->logprobs)
            lp = r->kind == SRV_CHAT ? chat_logprobs(r, st->lp, st->n_lp)
                                     : completion_logprobs(r, st, st->lp, st->n_lp);
        const char *text = st->text.p ? st->text.p : "";
        json_t *choice;
        if (r->kind == SRV_CHAT) {
            json_t *msg = json_pack("{s:s, s:o, s:n}", "role", "assistant", "content",
                                    jstr(text, st->text.len), "refusal");
            choice =
                json_pack("{s:i, s:o, s:o, s:s}", "index", c, "message", msg, "logprobs",
                          lp ? lp : json_null(), "finish_reason", st->finish ? st->finish : "stop");
        } else {
            const char *echo = r->echo_text ? r->echo_text[c / r->job->n_per_group] : NULL;
            struct srv_buf full = {0};
            if (echo) srv_buf_append(&full, echo, strlen(echo));
            srv_buf_append(&full, text, st->text.len);
            choice = json_pack("{s:o, s:i, s:o, s:s}", "text", jstr(full.p, full.len), "index", c,
                               "logprobs", lp ? lp : json_null(), "finish_reason",
                               st->finish ? st->finish : "stop");
            srv_buf_free(&full);
        }
        json_array_append_new(choices, choice);
    }
    json_object_set_new(o, "choices", choices);
    json_object_set_new(o, "usage", usage_object(r));
    return srv_send_json(r, 200, o);
}
