/*
 * request.c — validation of OpenAI request bodies (chat completions and completions) into
 * struct srv_gen_request, OpenAI error objects, and UTF-8 helpers.
 *
 * Every field is checked for type and range with OpenAI's error wording, status 400 and the
 * offending parameter; unknown fields are refused. It does not look at the model beyond n_vocab
 * (the HTTP layer resolves the model name, renders chat templates and tokenizes).
 */
#include "server.h"

#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

/* ---- errors ---- */

/* Copies client-derived text into a fixed buffer as valid UTF-8: invalid bytes become U+FFFD and
 * a cut never falls inside a code point (jansson refuses invalid UTF-8). */
static void copy_utf8(char *dst, size_t cap, const char *src) {
    size_t n = 0;
    char *clean = srv_utf8_sanitize(src, strlen(src), &n);
    if (!clean) n = 0;
    if (n >= cap) n = srv_utf8_complete_prefix(clean, cap - 1);
    if (n) memcpy(dst, clean, n);
    dst[n] = '\0';
    free(clean);
}

int srv_err(struct srv_error *e, int status, const char *type, const char *code, const char *param,
            const char *fmt, ...) {
    e->status = status;
    e->type = type;
    e->code = code;
    /* Messages and field names quote client input; keep the object valid JSON. */
    copy_utf8(e->param, sizeof(e->param), param ? param : "");
    char msg[2 * sizeof(e->message)];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    copy_utf8(e->message, sizeof(e->message), msg);
    return ENG_EINVAL;
}

json_t *srv_error_json(const struct srv_error *e) {
    json_t *inner = json_pack("{s:s, s:s, s:o, s:o}", "message", e->message, "type",
                              e->type ? e->type : "invalid_request_error", "param",
                              e->param[0] ? json_string(e->param) : json_null(), "code",
                              e->code ? json_string(e->code) : json_null());
    if (!inner) return NULL;
    return json_pack("{s:o}", "error", inner);
}

/* ---- UTF-8 ---- */

/* Length of the valid UTF-8 sequence at s (1..4), 0 if invalid, -1 if truncated by the end. */
static int utf8_seq(const unsigned char *s, size_t n) {
    unsigned c = s[0];
    int len;
    unsigned min;
    if (c < 0x80) return 1;
    if (c >= 0xc2 && c <= 0xdf)
        len = 2, min = 0x80;
    else if (c >= 0xe0 && c <= 0xef)
        len = 3, min = 0x800;
    else if (c >= 0xf0 && c <= 0xf4)
        len = 4, min = 0x10000;
    else
        return 0;
    unsigned cp = c & (0x3f >> (len - 1));
    for (int i = 1; i < len; i++) {
        if ((size_t)i >= n) return -1;
        if ((s[i] & 0xc0) != 0x80) return 0;
        cp = (cp << 6) | (s[i] & 0x3f);
        /* Reject overlongs and surrogates as soon as the second byte decides it. */
        if (i == 1 && len == 3 && ((c == 0xe0 && s[1] < 0xa0) || (c == 0xed && s[1] > 0x9f)))
            return 0;
        if (i == 1 && len == 4 && ((c == 0xf0 && s[1] < 0x90) || (c == 0xf4 && s[1] > 0x8f)))
            return 0;
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return 0;
    return len;
}

char *srv_utf8_sanitize(const char *s, size_t len, size_t *out_len) {
    /* Worst case: every byte becomes 3 bytes (EF BF BD). */
    char *out = malloc(len * 3 + 1);
    if (!out) return NULL;
    size_t o = 0, i = 0;
    const unsigned char *u = (const unsigned char *)s;
    while (i < len) {
        int n = utf8_seq(u + i, len - i);
        if (n > 0) {
            memcpy(out + o, s + i, (size_t)n);
            o += (size_t)n;
            i += (size_t)n;
        } else {
            memcpy(out + o, "\xef\xbf\xbd", 3);
            o += 3;
            i++;
        }
    }
    out[o] = 0;
    if (out_len) *out_len = o;
    return out;
}

size_t srv_utf8_complete_prefix(const char *s, size_t len) {
    /* Look back at most 3 bytes for the start of a sequence that runs past the end. */
    const unsigned char *u = (const unsigned char *)s;
    for (size_t back = 1; back <= 3 && back <= len; back++) {
        unsigned c = u[len - back];
        if ((c & 0xc0) == 0x80) continue; /* continuation byte: keep looking */
        if (c >= 0xc0 && utf8_seq(u + len - back, back) == -1) return len - back;
        break;
    }
    return len;
}

/* ---- field helpers ---- */

/* The value of key, or NULL when absent or JSON null (OpenAI treats null as not given). */
static json_t *opt(json_t *obj, const char *key) {
    json_t *v = json_object_get(obj, key);
    return v && !json_is_null(v) ? v : NULL;
}

static const char *type_word(const json_t *v) {
    if (!v) return "nothing";
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        return "an object";
    case JSON_ARRAY:
        return "an array";
    case JSON_STRING:
        return "a string";
    case JSON_INTEGER:
        return "an integer";
    case JSON_REAL:
        return "a decimal";
    case JSON_TRUE:
    case JSON_FALSE:
        return "a boolean";
    default:
        return "null";
    }
}

static int bad_type(struct srv_error *e, const char *param, const char *want, const json_t *v) {
    return srv_err(e, 400, "invalid_request_error", "invalid_type", param,
                   "Invalid type for '%s': expected %s, but got %s instead.", param, want,
                   type_word(v));
}

static int get_number(json_t *root, const char *key, double lo, double hi, double *out,
                      struct srv_error *e) {
    json_t *v = opt(root, key);
    if (!v) return 0;
    if (!json_is_number(v)) return bad_type(e, key, "a decimal", v);
    double x = json_number_value(v);
    if (!isfinite(x) || x < lo)
        return srv_err(e, 400, "invalid_request_error", "decimal_below_min_value", key,
                       "Invalid '%s': decimal below minimum value. Expected a value >= %g, but got "
                       "%g instead.",
                       key, lo, x);
    if (x > hi)
        return srv_err(e, 400, "invalid_request_error", "decimal_above_max_value", key,
                       "Invalid '%s': decimal above maximum value. Expected a value <= %g, but got "
                       "%g instead.",
                       key, hi, x);
    *out = x;
    return 0;
}

static int get_int(json_t *root, const char *key, long long lo, long long hi, long long *out,
                   struct srv_error *e) {
    json_t *v = opt(root, key);
    if (!v) return 0;
    if (!json_is_integer(v)) return bad_type(e, key, "an integer", v);
    long long x = json_integer_value(v);
    if (x < lo)
        return srv_err(e, 400, "invalid_request_error", "integer_below_min_value", key,
                       "Invalid '%s': integer below minimum value. Expected a value >= %lld, but "
                       "got %lld instead.",
                       key, lo, x);
    if (x > hi)
        return srv_err(e, 400, "invalid_request_error", "integer_above_max_value", key,
                       "Invalid '%s': integer above maximum value. Expected a value <= %lld, but "
                       "got %lld instead.",
                       key, hi, x);
    *out = x;
    return 0;
}

static int get_bool(json_t *root, const char *key, bool *out, struct srv_error *e) {
    json_t *v = opt(root, key);
    if (!v) return 0;
    if (!json_is_boolean(v)) return bad_type(e, key, "a boolean", v);
    *out = json_is_true(v);
    return 0;
}

static int dup_string(const json_t *v, char **out, struct srv_error *e) {
    if (!(*out = strndup(json_string_value(v), json_string_length(v))))
        return srv_err(e, 500, "server_error", NULL, NULL, "out of memory");
    return 0;
}

/* ---- fields shared by both endpoints ---- */

static const char *const common_keys[] = {
    "model",       "max_tokens",
    "temperature", "top_p",
    "n",           "stop",
    "seed",        "presence_penalty",
    "stream",      "stream_options",
    "logit_bias",  "frequency_penalty",
    "user",        "top_k",
    "min_p",       "repetition_penalty",
    "logprobs",    NULL,
};
static const char *const chat_keys[] = {
    "messages",    "max_completion_tokens", "top_logprobs", "response_format", "tools",
    "tool_choice", "parallel_tool_calls",   "functions",    "function_call",   "store",
    "metadata",    "service_tier",          NULL,
};
static const char *const completion_keys[] = {"prompt", "suffix", "echo", "best_of", NULL};

static bool in_list(const char *const *list, const char *k) {
    for (; *list; list++)
        if (!strcmp(*list, k)) return true;
    return false;
}

static int parse_stop(json_t *root, struct srv_gen_request *r, struct srv_error *e) {
    json_t *v = opt(root, "stop");
    if (!v) return 0;
    if (json_is_string(v)) {
        if (json_string_length(v) == 0) return 0;
        r->n_stop = 1;
        return dup_string(v, &r->stop[0], e);
    }
    if (!json_is_array(v)) return bad_type(e, "stop", "a string or an array of strings", v);
    if (json_array_size(v) > SRV_MAX_STOP)
        return srv_err(e, 400, "invalid_request_error", "array_above_max_length", "stop",
                       "Invalid 'stop': array too long. Expected an array with maximum length %d, "
                       "but got an array with length %zu instead.",
                       SRV_MAX_STOP, json_array_size(v));
    size_t i;
    json_t *s;
    json_array_foreach(v, i, s) {
        char p[32];
        snprintf(p, sizeof(p), "stop[%zu]", i);
        if (!json_is_string(s)) return bad_type(e, p, "a string", s);
        if (json_string_length(s) == 0) continue;
        if (dup_string(s, &r->stop[r->n_stop], e)) return ENG_ENOMEM;
        r->n_stop++;
    }
    return 0;
}

static int parse_logit_bias(json_t *root, int n_vocab, struct srv_gen_request *r,
                            struct srv_error *e) {
    json_t *v = opt(root, "logit_bias");
    if (!v) return 0;
    if (!json_is_object(v)) return bad_type(e, "logit_bias", "an object", v);
    size_t n = json_object_size(v);
    if (n > 1024)
        return srv_err(e, 400, "invalid_request_error", "invalid_value", "logit_bias",
                       "Invalid 'logit_bias': at most 1024 entries are allowed, got %zu.", n);
    if (n == 0) return 0;
    if (!(r->bias = calloc(n, sizeof(*r->bias))))
        return srv_err(e, 500, "server_error", NULL, NULL, "out of memory");
    const char *key;
    json_t *val;
    json_object_foreach(v, key, val) {
        char *end;
        long long id = strtoll(key, &end, 10);
        if (!*key || *end || id < 0 || id >= n_vocab)
            return srv_err(e, 400, "invalid_request_error", "invalid_value", "logit_bias",
                           "Invalid key in 'logit_bias': %.40s. Keys must be token ids in the "
                           "vocabulary (0..%d).",
                           key, n_vocab - 1);
        if (!json_is_number(val)) return bad_type(e, "logit_bias", "a number for each token", val);
        double b = json_number_value(val);
        if (!(b >= -100 && b <= 100))
            return srv_err(e, 400, "invalid_request_error", "invalid_value", "logit_bias",
                           "Invalid value for 'logit_bias': %g for token %lld. Expected a value "
                           "between -100 and 100.",
                           b, id);
        r->bias[r->n_bias++] = (struct eng_logit_bias){(int32_t)id, (float)b};
    }
    r->sp.logit_bias = r->bias;
    r->sp.n_logit_bias = r->n_bias;
    return 0;
}

static int parse_common(json_t *root, int n_vocab, struct srv_gen_request *r, struct srv_error *e) {
    json_t *v;
    if (!(v = opt(root, "model")))
        return srv_err(e, 400, "invalid_request_error", "missing_required_parameter", "model",
                       "Missing required parameter: 'model'.");
    if (!json_is_string(v)) return bad_type(e, "model", "a string", v);
    if (dup_string(v, &r->model, e)) return ENG_ENOMEM;

    long long ll;
    double d;
    r->max_tokens = -1;
    ll = -1;
    if (get_int(root, "max_tokens", 1, INT32_MAX, &ll, e)) return ENG_EINVAL;
    r->max_tokens = (long)ll;
    if (r->kind == SRV_CHAT) {
        ll = -1;
        if (get_int(root, "max_completion_tokens", 1, INT32_MAX, &ll, e)) return ENG_EINVAL;
        if (ll > 0) r->max_tokens = (long)ll;
    }
    d = 1.0;
    if (get_number(root, "temperature", 0, 2, &d, e)) return ENG_EINVAL;
    r->sp.temperature = (float)d;
    d = 1.0;
    if (get_number(root, "top_p", 0, 1, &d, e)) return ENG_EINVAL;
    r->sp.top_p = (float)d;
    if (d == 0) {
        /* top_p 0 keeps only the most likely token. */
        r->sp.temperature = 0;
        r->sp.top_p = 1;
    }
    ll = 1;
    if (get_int(root, "n", 1, 128, &ll, e)) return ENG_EINVAL;
    r->n = (int)ll;
    d = 0;
    if (get_number(root, "presence_penalty", -2, 2, &d, e)) return ENG_EINVAL;
    r->sp.presence_penalty = (float)d;
    d = 0;
    if (get_number(root, "frequency_penalty", -2, 2, &d, e)) return ENG_EINVAL;
    r->sp.frequency_penalty = (float)d;
    ll = 0;
    if (get_int(root, "top_k", 0, n_vocab, &ll, e)) return ENG_EINVAL;
    r->sp.top_k = (int)ll;
    d = 0;
    if (get_number(root, "min_p", 0, 1, &d, e)) return ENG_EINVAL;
    r->sp.min_p = (float)d;
    d = 1;
    if (get_number(root, "repetition_penalty", 0.01, 10, &d, e)) return ENG_EINVAL;
    r->sp.repeat_penalty = (float)d;

    if ((v = opt(root, "seed"))) {
        if (!json_is_integer(v)) return bad_type(e, "seed", "an integer", v);
        r->has_seed = true;
        r->seed = (uint64_t)json_integer_value(v);
        r->sp.seed = r->seed;
    }
    if (get_bool(root, "stream", &r->stream, e)) return ENG_EINVAL;
    if ((v = opt(root, "stream_options"))) {
        if (!json_is_object(v)) return bad_type(e, "stream_options", "an object", v);
        if (!r->stream)
            return srv_err(e, 400, "invalid_request_error", "invalid_value", "stream_options",
                           "The 'stream_options' parameter is only allowed when 'stream' is "
                           "enabled.");
        const char *k;
        json_t *x;
        json_object_foreach(v, k, x) {
            if (strcmp(k, "include_usage") != 0)
                return srv_err(e, 400, "invalid_request_error", "unknown_parameter",
                               "stream_options", "Unrecognized stream option: '%.64s'.", k);
        }
        if (get_bool(v, "include_usage", &r->include_usage, e)) {
            snprintf(e->param, sizeof(e->param), "stream_options.include_usage");
            return ENG_EINVAL;
        }
    }
    if ((v = opt(root, "user"))) {
        if (!json_is_string(v)) return bad_type(e, "user", "a string", v);
        if (dup_string(v, &r->user, e)) return ENG_ENOMEM;
    }
    if (parse_stop(root, r, e)) return ENG_EINVAL;
    if (parse_logit_bias(root, n_vocab, r, e)) return ENG_EINVAL;
    return 0;
}

/* ---- chat ---- */

static int parse_content(json_t *c, const char *param, char **out, struct srv_error *e) {
    if (json_is_string(c)) return dup_string(c, out, e);
    if (!json_is_array(c)) return bad_type(e, param, "a string or an array of content parts", c);
    /* Text parts are joined with newlines. */
    size_t total = 1, i;
    json_t *part;
    char p[128];
    json_array_foreach(c, i, part) {
        snprintf(p, sizeof(p), "%s[%zu]", param, i);
        if (!json_is_object(part)) return bad_type(e, p, "an object", part);
        json_t *type = json_object_get(part, "type"), *text = json_object_get(part, "text");
        if (!json_is_string(type))
            return srv_err(e, 400, "invalid_request_error", "missing_required_parameter", p,
                           "Missing required parameter: '%s.type'.", p);
        if (strcmp(json_string_value(type), "text") != 0)
            return srv_err(e, 400, "invalid_request_error", "invalid_value", p,
                           "Invalid content part type '%.32s': this server accepts only 'text' "
                           "parts.",
                           json_string_value(type));
        if (!text)
            return srv_err(e, 400, "invalid_request_error", "missing_required_parameter", p,
                           "Missing required parameter: '%s.text'.", p);
        if (!json_is_string(text)) return bad_type(e, p, "a string in 'text'", text);
        total += json_string_length(text) + 1;
    }
    char *s = malloc(total);
    if (!s) return srv_err(e, 500, "server_error", NULL, NULL, "out of memory");
    size_t o = 0;
    json_array_foreach(c, i, part) {
        json_t *text = json_object_get(part, "text");
        if (i) s[o++] = '\n';
        memcpy(s + o, json_string_value(text), json_string_length(text));
        o += json_string_length(text);
    }
    s[o] = 0;
    *out = s;
    return 0;
}

static int parse_messages(json_t *root, struct srv_gen_request *r, struct srv_error *e) {
    json_t *msgs = opt(root, "messages");
    if (!msgs)
        return srv_err(e, 400, "invalid_request_error", "missing_required_parameter", "messages",
                       "Missing required parameter: 'messages'.");
    if (!json_is_array(msgs)) return bad_type(e, "messages", "an array", msgs);
    size_t n = json_array_size(msgs);
    if (n == 0)
        return srv_err(e, 400, "invalid_request_error", "empty_array", "messages",
                       "Invalid 'messages': empty array. Expected an array with minimum length 1, "
                       "but got an empty array instead.");
    if (!(r->msgs = calloc(n, sizeof(*r->msgs))))
        return srv_err(e, 500, "server_error", NULL, NULL, "out of memory");
    size_t i;
    json_t *m;
    json_array_foreach(msgs, i, m) {
        char p[64];
        snprintf(p, sizeof(p), "messages[%zu]", i);
        if (!json_is_object(m)) return bad_type(e, p, "an object", m);
        const char *k;
        json_t *x;
        json_object_foreach(m, k, x) {
            if (strcmp(k, "role") && strcmp(k, "content") && strcmp(k, "name") &&
                !(!strcmp(k, "refusal") && json_is_null(x)) &&
                !(!strcmp(k, "tool_calls") && json_is_array(x) && json_array_size(x) == 0))
                return srv_err(e, 400, "invalid_request_error", "unknown_parameter", p,
                               "Invalid '%s': unsupported property '%.64s'.", p, k);
        }
        json_t *role = json_object_get(m, "role");
        char pr[80];
        snprintf(pr, sizeof(pr), "%s.role", p);
        if (!role)
            return srv_err(e, 400, "invalid_request_error", "missing_required_parameter", pr,
                           "Missing required parameter: '%s'.", pr);
        if (!json_is_string(role)) return bad_type(e, pr, "a string", role);
        const char *rs = json_string_value(role);
        const char *canon = !strcmp(rs, "system") || !strcmp(rs, "developer") ? "system"
                            : !strcmp(rs, "user")                             ? "user"
                            : !strcmp(rs, "assistant")                        ? "assistant"
                                                                              : NULL;
        if (!canon)
            return srv_err(e, 400, "invalid_request_error", "invalid_value", pr,
                           "Invalid value: '%.32s'. Supported values are: 'system', 'developer', "
                           "'user' and 'assistant'.",
                           rs);
        r->msgs[r->n_msgs].role = canon;
        json_t *name = opt(m, "name");
        if (name && !json_is_string(name)) {
            snprintf(pr, sizeof(pr), "%s.name", p);
            return bad_type(e, pr, "a string", name);
        }
        json_t *content = opt(m, "content");
        snprintf(pr, sizeof(pr), "%s.content", p);
        if (!content)
            return srv_err(e, 400, "invalid_request_error", "missing_required_parameter", pr,
                           "Missing required parameter: '%s'.", pr);
        char *text = NULL;
        if (parse_content(content, pr, &text, e)) return ENG_EINVAL;
        r->msgs[r->n_msgs++].content = text;
    }
    return 0;
}

/* Accepts OpenAI fields this server does not implement only with their no-op values. */
static int parse_chat_noops(json_t *root, struct srv_error *e) {
    json_t *v;
    if ((v = opt(root, "response_format"))) {
        json_t *t = json_is_object(v) ? json_object_get(v, "type") : NULL;
        if (!json_is_string(t) || strcmp(json_string_value(t), "text") != 0)
            return srv_err(e, 400, "invalid_request_error", "invalid_value", "response_format",
                           "Invalid 'response_format': only {\"type\": \"text\"} is supported.");
    }
    static const char *const lists[] = {"tools", "functions"};
    for (int i = 0; i < 2; i++)
        if ((v = opt(root, lists[i])) && !(json_is_array(v) && json_array_size(v) == 0))
            return srv_err(e, 400, "invalid_request_error", "invalid_value", lists[i],
                           "Invalid '%s': tool and function calling are not supported by this "
                           "server.",
                           lists[i]);
    static const char *const choices[] = {"tool_choice", "function_call"};
    for (int i = 0; i < 2; i++)
        if ((v = opt(root, choices[i])) &&
            !(json_is_string(v) &&
              (!strcmp(json_string_value(v), "none") || !strcmp(json_string_value(v), "auto"))))
            return srv_err(e, 400, "invalid_request_error", "invalid_value", choices[i],
                           "Invalid '%s': tool and function calling are not supported by this "
                           "server.",
                           choices[i]);
    if ((v = opt(root, "parallel_tool_calls")) && !json_is_boolean(v))
        return bad_type(e, "parallel_tool_calls", "a boolean", v);
    if ((v = opt(root, "store")) && !json_is_boolean(v))
        return bad_type(e, "store", "a boolean", v);
    if ((v = opt(root, "metadata")) && !json_is_object(v))
        return bad_type(e, "metadata", "an object", v);
    if ((v = opt(root, "service_tier")) && !json_is_string(v))
        return bad_type(e, "service_tier", "a string", v);
    return 0;
}

/* ---- completions ---- */

static int parse_ids(json_t *arr, const char *param, int n_vocab, struct srv_prompt *p,
                     struct srv_error *e) {
    size_t n = json_array_size(arr), i;
    if (n == 0)
        return srv_err(e, 400, "invalid_request_error", "empty_array", param,
                       "Invalid '%s': empty array of tokens.", param);
    if (!(p->ids = malloc(n * sizeof(int32_t))))
        return srv_err(e, 500, "server_error", NULL, NULL, "out of memory");
    json_t *t;
    json_array_foreach(arr, i, t) {
        if (!json_is_integer(t)) return bad_type(e, param, "an array of integers (token ids)", t);
        long long id = json_integer_value(t);
        if (id < 0 || id >= n_vocab)
            return srv_err(e, 400, "invalid_request_error", "invalid_value", param,
                           "Invalid '%s': token id %lld is outside the vocabulary (0..%d).", param,
                           id, n_vocab - 1);
        p->ids[p->n_ids++] = (int32_t)id;
    }
    return 0;
}

static int parse_prompt(json_t *root, int n_vocab, struct srv_gen_request *r, struct srv_error *e) {
    json_t *v = opt(root, "prompt");
    if (!v)
        return srv_err(e, 400, "invalid_request_error", "missing_required_parameter", "prompt",
                       "Missing required parameter: 'prompt'.");
    const char *want = "a string, an array of strings, an array of integers or an array of "
                       "arrays of integers";
    if (json_is_string(v)) {
        if (!(r->prompts = calloc(1, sizeof(*r->prompts))))
            return srv_err(e, 500, "server_error", NULL, NULL, "out of memory");
        r->n_prompts = 1;
        return dup_string(v, &r->prompts[0].text, e);
    }
    if (!json_is_array(v)) return bad_type(e, "prompt", want, v);
    size_t n = json_array_size(v);
    if (n == 0)
        return srv_err(e, 400, "invalid_request_error", "empty_array", "prompt",
                       "Invalid 'prompt': empty array. Expected an array with minimum length 1, "
                       "but got an empty array instead.");
    json_t *first = json_array_get(v, 0);
    if (json_is_integer(first)) {
        if (!(r->prompts = calloc(1, sizeof(*r->prompts))))
            return srv_err(e, 500, "server_error", NULL, NULL, "out of memory");
        r->n_prompts = 1;
        return parse_ids(v, "prompt", n_vocab, &r->prompts[0], e);
    }
    if (n > 128)
        return srv_err(e, 400, "invalid_request_error", "array_above_max_length", "prompt",
                       "Invalid 'prompt': at most 128 prompts per request, got %zu.", n);
    if (!(r->prompts = calloc(n, sizeof(*r->prompts))))
        return srv_err(e, 500, "server_error", NULL, NULL, "out of memory");
    bool strings = json_is_string(first);
    size_t i;
    json_t *x;
    json_array_foreach(v, i, x) {
        char p[32];
        snprintf(p, sizeof(p), "prompt[%zu]", i);
        r->n_prompts++;
        if (strings) {
            if (!json_is_string(x)) return bad_type(e, p, "a string", x);
            if (dup_string(x, &r->prompts[i].text, e)) return ENG_ENOMEM;
        } else {
            if (!json_is_array(x)) return bad_type(e, p, "an array of integers", x);
            if (parse_ids(x, p, n_vocab, &r->prompts[i], e)) return ENG_EINVAL;
        }
    }
    return 0;
}

static int parse_completion_extras(json_t *root, struct srv_gen_request *r, struct srv_error *e) {
    json_t *v;
    if (get_bool(root, "echo", &r->echo, e)) return ENG_EINVAL;
    if ((v = opt(root, "suffix"))) {
        if (!json_is_string(v)) return bad_type(e, "suffix", "a string", v);
        if (json_string_length(v) > 0)
            return srv_err(e, 400, "invalid_request_error", "invalid_value", "suffix",
                           "Invalid 'suffix': insertion (suffix) is not supported by this model.");
    }
    long long ll = 0;
    if (get_int(root, "best_of", 1, 128, &ll, e)) return ENG_EINVAL;
    if (ll > 0 && ll != 1 && ll != r->n)
        return srv_err(e, 400, "invalid_request_error", "invalid_value", "best_of",
                       "Invalid 'best_of': only best_of = 1 or best_of = n is supported.");
    ll = -1;
    if (get_int(root, "logprobs", 0, 5, &ll, e)) return ENG_EINVAL;
    if (ll >= 0) {
        r->logprobs = true;
        r->top_logprobs = (int)ll;
    }
    return 0;
}

/* ---- entry ---- */

int srv_gen_request_parse(enum srv_kind kind, const char *body, size_t len, int n_vocab,
                          struct srv_gen_request *r, struct srv_error *e) {
    memset(r, 0, sizeof(*r));
    r->kind = kind;
    r->max_tokens = -1;
    r->n = 1;
    /* Sampler defaults (OpenAI's: temperature 1, no truncation, no penalties). */
    r->sp.temperature = 1.0f;
    r->sp.top_k = 0;
    r->sp.top_p = 1.0f;
    r->sp.min_p = 0.0f;
    r->sp.repeat_penalty = 1.0f;
    r->sp.repeat_last_n = 64;

    json_error_t je;
    json_t *root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &je);
    int rc = ENG_EINVAL;
    if (!root) {
        srv_err(e, 400, "invalid_request_error", NULL, NULL,
                "We could not parse the JSON body of your request: %s (line %d, column %d). The "
                "API expects a JSON object.",
                je.text, je.line, je.column);
        goto out;
    }
    if (!json_is_object(root)) {
        srv_err(e, 400, "invalid_request_error", NULL, NULL,
                "The request body must be a JSON object, not %s.", type_word(root));
        goto out;
    }
    const char *k;
    json_t *x;
    json_object_foreach(root, k, x) {
        if (!in_list(common_keys, k) &&
            !in_list(kind == SRV_CHAT ? chat_keys : completion_keys, k)) {
            srv_err(e, 400, "invalid_request_error", "unknown_parameter", k,
                    "Unrecognized request argument supplied: %.64s", k);
            goto out;
        }
    }
    if (parse_common(root, n_vocab, r, e)) goto out;
    if (kind == SRV_CHAT) {
        json_t *lp = opt(root, "logprobs");
        if (lp && !json_is_boolean(lp)) {
            bad_type(e, "logprobs", "a boolean", lp);
            goto out;
        }
        r->logprobs = lp && json_is_true(lp);
        long long tl = 0;
        if (get_int(root, "top_logprobs", 0, SRV_MAX_LOGPROBS, &tl, e)) goto out;
        if (tl > 0 && !r->logprobs) {
            srv_err(e, 400, "invalid_request_error", "invalid_value", "top_logprobs",
                    "Invalid 'top_logprobs': 'logprobs' must be set to true when 'top_logprobs' "
                    "is used.");
            goto out;
        }
        r->top_logprobs = (int)tl;
        if (parse_chat_noops(root, e)) goto out;
        if (parse_messages(root, r, e)) goto out;
    } else {
        if (parse_completion_extras(root, r, e)) goto out;
        if (parse_prompt(root, n_vocab, r, e)) goto out;
    }
    r->sp.n_logprobs = r->logprobs ? r->top_logprobs : 0;
    r->sp.logprob = r->logprobs;
    rc = 0;
out:
    json_decref(root);
    if (rc) srv_gen_request_free(r);
    return rc;
}

void srv_gen_request_free(struct srv_gen_request *r) {
    free(r->model);
    for (int i = 0; i < r->n_msgs; i++) free((char *)r->msgs[i].content);
    free(r->msgs);
    for (int i = 0; i < r->n_prompts; i++) {
        free(r->prompts[i].text);
        free(r->prompts[i].ids);
    }
    free(r->prompts);
    for (int i = 0; i < r->n_stop; i++) free(r->stop[i]);
    free(r->bias);
    free(r->user);
    memset(r, 0, sizeof(*r));
}
