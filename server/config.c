/*
 * config.c — edgellmd's configuration: the one declarative table of keys and everything driven
 * by it (config file, flags, EDGELLM_* environment, validation, --help, --print-config).
 *
 * It does not decide what a change means at run time (the loop applies live keys on SIGHUP) and
 * does not read API key files (auth.c does).
 */
#include "server.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#define OFF(f) offsetof(struct srv_config, f)

/* clang-format off */
static const struct cfg_key keys[] = {
    /* name, type, offset, min, max, default, choices, flags, group, help */
    {"model", CFG_STRING, OFF(model), 0, 0, "", NULL, 0, "model",
     "GGUF model file to serve (empty: the bundled default model)"},
    {"model_name", CFG_STRING, OFF(model_name), 0, 0, "", NULL, 0, "model",
     "model id clients use in requests and see in /v1/models (empty: file name without .gguf)"},
    {"threads", CFG_INT, OFF(threads), 0, 1024, "0", NULL, 0, "model",
     "engine threads (0: one per performance core)"},
    {"slots", CFG_INT, OFF(slots), 1, 256, "4", NULL, 0, "model",
     "sequences decoded together (continuous batching); each has its own KV cache, whose memory "
     "is taken as its sequences fill it, 256 positions at a time"},
    {"ctx", CFG_INT, OFF(ctx), 0, 1 << 20, "0", NULL, 0, "model",
     "context length per slot in tokens (0: the model's trained context, at most 4096)"},
    {"batch", CFG_INT, OFF(batch), 16, 1 << 16, "512", NULL, 0, "model",
     "most tokens processed in one engine step (decode tokens plus prefill chunks)"},
    {"prefill_chunk", CFG_INT, OFF(prefill_chunk), 1, 1 << 16, "128", NULL, 0, "model",
     "prompt tokens prefilled per step, so running streams keep flowing during long prompts"},
    {"mlock", CFG_BOOL, OFF(mlock), 0, 0, "false", NULL, 0, "model",
     "lock the model in RAM (needs CAP_IPC_LOCK or a large enough RLIMIT_MEMLOCK)"},
    {"kv_f16", CFG_BOOL, OFF(kv_f16), 0, 0, "true", NULL, 0, "model",
     "cache keys and values as fp16: half the KV memory and half the bytes attention reads per "
     "token (batches and long contexts decode faster), for fp16 rounding of the cached values; "
     "false caches them as f32"},
    {"pin_threads", CFG_BOOL, OFF(pin_threads), 0, 0, "true", NULL, 0, "model",
     "run each engine thread on a performance core of its own when there are enough of them "
     "(the first passes after an idle spell then do not wait for the scheduler to spread the "
     "threads: short replies come sooner), and the loop thread off the engine thread's core; "
     "false leaves placement to the scheduler"},
    {"interleave", CFG_BOOL, OFF(interleave), 0, 0, "true", NULL, 0, "model",
     "lay the weight matrices out for this CPU's kernels at load, where it has such a layout "
     "(q4_0 on AVX-512: rows interleaved in groups of 32, which decode multiplies with half the "
     "instructions or fewer); a copy in memory replaces the mapped weights; false serves them as "
     "the file lays them out"},

    {"host", CFG_STRING, OFF(host), 0, 0, "127.0.0.1", NULL, 0, "network",
     "address to listen on; anything but loopback needs an API key or insecure_no_auth"},
    {"port", CFG_INT, OFF(port), 0, 65535, "8080", NULL, 0, "network",
     "TCP port (0: any free port, logged at start)"},
    {"max_connections", CFG_INT, OFF(max_connections), 1, 65536, "256", NULL, 0, "network",
     "simultaneous HTTP connections; more are refused"},
    {"idle_timeout", CFG_FLOAT, OFF(idle_timeout), 1, 86400, "60", NULL, 0, "network",
     "seconds an idle or stalled connection is kept open"},
    {"insecure_no_auth", CFG_BOOL, OFF(insecure_no_auth), 0, 0, "false", NULL, 0, "network",
     "allow a non-loopback host without any API key (anyone on the network can use the model)"},

    {"queue", CFG_INT, OFF(queue), 0, 65536, "64", NULL, CFG_LIVE, "limits",
     "requests waiting for a slot; when full, new ones get 503 with Retry-After"},
    {"max_tokens", CFG_INT, OFF(max_tokens), 1, 1 << 20, "4096", NULL, CFG_LIVE, "limits",
     "most tokens one request may generate (per choice)"},
    {"max_body", CFG_INT, OFF(max_body), 1024, 1 << 30, "2097152", NULL, CFG_LIVE, "limits",
     "largest request body in bytes; larger ones get 413"},
    {"request_timeout", CFG_FLOAT, OFF(request_timeout), 0.1, 86400, "600", NULL, CFG_LIVE,
     "limits", "seconds a request may take from arrival to its last token"},
    {"keepalive", CFG_FLOAT, OFF(keepalive), 0.05, 3600, "10", NULL, CFG_LIVE, "limits",
     "seconds between SSE keep-alive comments while a stream waits (queue, long prefill)"},
    {"stream_interval", CFG_FLOAT, OFF(stream_interval), 0, 1, "0.01", NULL, CFG_LIVE, "limits",
     "least seconds between two sends of a stream's new tokens: tokens generated faster go out "
     "together in one event, so fast decoding does not spend its cores on one write per token "
     "(0: each token as it comes; a stream's first token and its end are never held back)"},
    {"shutdown_grace", CFG_FLOAT, OFF(shutdown_grace), 0, 3600, "30", NULL, CFG_LIVE, "limits",
     "seconds SIGTERM waits for in-flight requests before cancelling them"},

    {"api_keys", CFG_LIST, OFF(api_keys), 0, 0, "", NULL, CFG_LIVE | CFG_SECRET, "security",
     "comma-separated API keys accepted as 'Authorization: Bearer KEY' or 'x-api-key: KEY'"},
    {"api_key_file", CFG_STRING, OFF(api_key_file), 0, 0, "", NULL, CFG_LIVE, "security",
     "file with one API key per line ('#' comments); read at start and on SIGHUP"},
    {"cors_origins", CFG_LIST, OFF(cors_origins), 0, 0, "", NULL, CFG_LIVE, "security",
     "comma-separated browser origins allowed by CORS ('*' for any; empty: none)"},

    {"log_format", CFG_ENUM, OFF(log_format), 0, 0, "text", "text|json", CFG_LIVE, "logging",
     "log lines as plain text or as JSON objects"},
    {"log_level", CFG_ENUM, OFF(log_level), 0, 0, "info", "error|warn|info|debug", CFG_LIVE,
     "logging", "least severe level logged"},
    {"access_log", CFG_BOOL, OFF(access_log), 0, 0, "true", NULL, CFG_LIVE, "logging",
     "one line per request: method, path, status, tokens, duration"},
};
/* clang-format on */

#define N_KEYS ((int)(sizeof(keys) / sizeof(keys[0])))

const struct cfg_key *cfg_keys(int *n) {
    *n = N_KEYS;
    return keys;
}

/* Compares a file key with a name where '-' and '_' are equal. */
static bool name_eq(const char *key, const char *name, size_t len) {
    size_t i = 0;
    for (; i < len && key[i]; i++) {
        char a = key[i], b = name[i] == '-' ? '_' : name[i];
        if (a != b) return false;
    }
    return i == len && key[i] == 0;
}

const struct cfg_key *cfg_find(const char *name, size_t len) {
    for (int i = 0; i < N_KEYS; i++)
        if (name_eq(keys[i].name, name, len)) return &keys[i];
    return NULL;
}

static void *field(struct srv_config *c, const struct cfg_key *k) {
    return (char *)c + k->offset;
}

static const void *cfield(const struct srv_config *c, const struct cfg_key *k) {
    return (const char *)c + k->offset;
}

static void list_free(struct cfg_list *l) {
    for (int i = 0; i < l->n; i++) free(l->v[i]);
    free(l->v);
    l->v = NULL;
    l->n = 0;
}

static char *trim(char *s) {
    while (*s == ' ' || *s == '\t') s++;
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r')) s[--n] = 0;
    return s;
}

/* Splits "a, b,,c" into ["a","b","c"] (empty items dropped). */
static int list_parse(const char *value, struct cfg_list *out) {
    struct cfg_list l = {0, NULL};
    char *copy = strdup(value);
    if (!copy) return ENG_ENOMEM;
    int cap = 1;
    for (const char *p = value; *p; p++) cap += *p == ',';
    l.v = calloc((size_t)cap, sizeof(char *));
    if (!l.v) goto nomem;
    char *save = NULL;
    for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        char *t = trim(tok);
        if (!*t) continue;
        if (!(l.v[l.n] = strdup(t))) goto nomem;
        l.n++;
    }
    free(copy);
    *out = l;
    return 0;
nomem:
    free(copy);
    list_free(&l);
    return ENG_ENOMEM;
}

static int fail(char *err, size_t errlen, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int fail(char *err, size_t errlen, int code, const char *fmt, ...) {
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return code;
}

static int parse_bool(const char *v, bool *out) {
    static const char *yes[] = {"true", "yes", "on", "1"}, *no[] = {"false", "no", "off", "0"};
    for (int i = 0; i < 4; i++) {
        if (!strcasecmp(v, yes[i])) return *out = true, 0;
        if (!strcasecmp(v, no[i])) return *out = false, 0;
    }
    return -1;
}

static bool has_control(const char *v) {
    for (const unsigned char *p = (const unsigned char *)v; *p; p++)
        if (*p < 0x20 || *p == 0x7f) return true;
    return false;
}

int cfg_set(struct srv_config *c, const struct cfg_key *k, const char *value, char *err,
            size_t errlen) {
    void *f = field(c, k);
    if (has_control(value))
        return fail(err, errlen, ENG_EINVAL, "control characters are not allowed in values");
    switch (k->type) {
    case CFG_BOOL: {
        bool b;
        if (parse_bool(value, &b))
            return fail(err, errlen, ENG_EINVAL, "'%s' is not a boolean (true/false)", value);
        *(bool *)f = b;
        return 0;
    }
    case CFG_INT: {
        char *end;
        errno = 0;
        long long v = strtoll(value, &end, 10);
        if (end == value || *end || errno == ERANGE)
            return fail(err, errlen, ENG_EINVAL, "'%s' is not an integer", value);
        if ((double)v < k->min || (double)v > k->max)
            return fail(err, errlen, ENG_ERANGE, "%lld is out of range (%.0f..%.0f)", v, k->min,
                        k->max);
        *(long *)f = (long)v;
        return 0;
    }
    case CFG_FLOAT: {
        char *end;
        errno = 0;
        double v = strtod(value, &end);
        if (end == value || *end || errno == ERANGE || !isfinite(v))
            return fail(err, errlen, ENG_EINVAL, "'%s' is not a number", value);
        if (v < k->min || v > k->max)
            return fail(err, errlen, ENG_ERANGE, "%g is out of range (%g..%g)", v, k->min, k->max);
        *(double *)f = v;
        return 0;
    }
    case CFG_STRING: {
        char *s = strdup(value);
        if (!s) return fail(err, errlen, ENG_ENOMEM, "out of memory");
        free(*(char **)f);
        *(char **)f = s;
        return 0;
    }
    case CFG_ENUM: {
        size_t n = strlen(value);
        const char *p = k->choices;
        bool ok = false;
        while (*p && !ok) {
            const char *e = strchr(p, '|');
            size_t len = e ? (size_t)(e - p) : strlen(p);
            ok = len == n && !strncmp(p, value, n);
            p += len + (e != NULL);
        }
        if (!ok) return fail(err, errlen, ENG_EINVAL, "'%s' is not one of %s", value, k->choices);
        char *s = strdup(value);
        if (!s) return fail(err, errlen, ENG_ENOMEM, "out of memory");
        free(*(char **)f);
        *(char **)f = s;
        return 0;
    }
    case CFG_LIST: {
        struct cfg_list l;
        if (list_parse(value, &l)) return fail(err, errlen, ENG_ENOMEM, "out of memory");
        list_free((struct cfg_list *)f);
        *(struct cfg_list *)f = l;
        return 0;
    }
    default:
        return fail(err, errlen, ENG_EINVAL, "bad key type");
    }
}

int cfg_init(struct srv_config *c) {
    memset(c, 0, sizeof(*c));
    char err[256];
    for (int i = 0; i < N_KEYS; i++) {
        if (cfg_set(c, &keys[i], keys[i].def, err, sizeof(err))) {
            cfg_free(c);
            return ENG_ENOMEM;
        }
    }
    return 0;
}

void cfg_free(struct srv_config *c) {
    for (int i = 0; i < N_KEYS; i++) {
        void *f = field(c, &keys[i]);
        if (keys[i].type == CFG_STRING || keys[i].type == CFG_ENUM) {
            free(*(char **)f);
            *(char **)f = NULL;
        } else if (keys[i].type == CFG_LIST) {
            list_free(f);
        }
    }
}

int cfg_copy(struct srv_config *dst, const struct srv_config *src) {
    memcpy(dst, src, sizeof(*dst));
    /* Null the owned pointers first so a partial failure frees only what was copied. */
    for (int i = 0; i < N_KEYS; i++) {
        void *f = field(dst, &keys[i]);
        if (keys[i].type == CFG_STRING || keys[i].type == CFG_ENUM) *(char **)f = NULL;
        if (keys[i].type == CFG_LIST) *(struct cfg_list *)f = (struct cfg_list){0, NULL};
    }
    for (int i = 0; i < N_KEYS; i++) {
        const struct cfg_key *k = &keys[i];
        if (k->type == CFG_STRING || k->type == CFG_ENUM) {
            const char *s = *(char *const *)cfield(src, k);
            if (s && !(*(char **)field(dst, k) = strdup(s))) goto nomem;
        } else if (k->type == CFG_LIST) {
            const struct cfg_list *sl = cfield(src, k);
            struct cfg_list *dl = field(dst, k);
            if (sl->n) {
                if (!(dl->v = calloc((size_t)sl->n, sizeof(char *)))) goto nomem;
                for (; dl->n < sl->n; dl->n++)
                    if (!(dl->v[dl->n] = strdup(sl->v[dl->n]))) goto nomem;
            }
        }
    }
    return 0;
nomem:
    cfg_free(dst);
    return ENG_ENOMEM;
}

int cfg_parse_text(struct srv_config *c, const char *text, size_t len, const char *label, char *err,
                   size_t errlen) {
    int line_no = 0;
    size_t pos = 0;
    while (pos < len) {
        line_no++;
        size_t end = pos;
        while (end < len && text[end] != '\n') end++;
        size_t n = end - pos;
        if (memchr(text + pos, 0, n))
            return fail(err, errlen, ENG_EINVAL, "%s:%d: NUL byte in the line", label, line_no);
        if (n > 65536) return fail(err, errlen, ENG_EINVAL, "%s:%d: line too long", label, line_no);
        char *line = malloc(n + 1);
        if (!line) return fail(err, errlen, ENG_ENOMEM, "out of memory");
        memcpy(line, text + pos, n);
        line[n] = 0;
        pos = end + 1;

        char *s = trim(line);
        if (!*s || *s == '#') {
            free(line);
            continue;
        }
        char *eq = strchr(s, '=');
        if (!eq) {
            free(line);
            return fail(err, errlen, ENG_EINVAL, "%s:%d: expected 'key = value'", label, line_no);
        }
        *eq = 0;
        char *key = trim(s), *val = trim(eq + 1);
        size_t vlen = strlen(val);
        if (vlen >= 2 && val[0] == '"' && val[vlen - 1] == '"') {
            val[vlen - 1] = 0;
            val++;
        } else if (vlen >= 1 && (val[0] == '"' || val[vlen - 1] == '"')) {
            int rc = fail(err, errlen, ENG_EINVAL, "%s:%d: %.64s: unbalanced quote", label, line_no,
                          key);
            free(line);
            return rc;
        }
        const struct cfg_key *k = NULL;
        for (int i = 0; i < N_KEYS && !k; i++)
            if (!strcmp(keys[i].name, key)) k = &keys[i];
        if (!k) {
            int rc =
                fail(err, errlen, ENG_ENOTFOUND, "%s:%d: unknown key '%.64s'", label, line_no, key);
            free(line);
            return rc;
        }
        char why[256];
        int rc = cfg_set(c, k, val, why, sizeof(why));
        if (rc) fail(err, errlen, rc, "%s:%d: %s: %s", label, line_no, k->name, why);
        free(line);
        if (rc) return rc;
    }
    return 0;
}

int cfg_load_file(struct srv_config *c, const char *path, char *err, size_t errlen) {
    FILE *f = fopen(path, "rb");
    if (!f) return fail(err, errlen, ENG_EIO, "%s: %s", path, strerror(errno));
    char *buf = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        if (len + 4096 > cap) {
            if (cap > (16u << 20)) {
                free(buf);
                fclose(f);
                return fail(err, errlen, ENG_EINVAL, "%s: larger than 16 MiB", path);
            }
            cap = cap ? cap * 2 : 8192;
            char *nb = realloc(buf, cap);
            if (!nb) {
                free(buf);
                fclose(f);
                return fail(err, errlen, ENG_ENOMEM, "out of memory");
            }
            buf = nb;
        }
        size_t got = fread(buf + len, 1, cap - len, f);
        len += got;
        if (got == 0) break;
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        free(buf);
        return fail(err, errlen, ENG_EIO, "%s: read error", path);
    }
    int rc = cfg_parse_text(c, buf, len, path, err, errlen);
    free(buf);
    return rc;
}

int cfg_load_env(struct srv_config *c, char *const *envp, char *err, size_t errlen) {
    for (; envp && *envp; envp++) {
        const char *e = *envp;
        if (strncmp(e, "EDGELLM_", 8) != 0) continue;
        const char *eq = strchr(e, '=');
        if (!eq) continue;
        const char *name = e + 8;
        size_t n = (size_t)(eq - name);
        char lower[64];
        if (n == 0 || n >= sizeof(lower)) continue;
        for (size_t i = 0; i < n; i++) lower[i] = (char)tolower((unsigned char)name[i]);
        const struct cfg_key *k = cfg_find(lower, n);
        if (!k) continue;
        char why[256];
        int rc = cfg_set(c, k, eq + 1, why, sizeof(why));
        if (rc) return fail(err, errlen, rc, "EDGELLM_%.*s: %s", (int)n, name, why);
    }
    return 0;
}

static bool is_flag(const char *a, const char *name) {
    return !strcmp(a, name);
}

int cfg_load_all(struct srv_config *c, int argc, char *const *argv, char *const *envp,
                 enum cfg_action *action, char *err, size_t errlen) {
    *action = CFG_RUN;
    const char *config_path = NULL;
    for (char *const *e = envp; e && *e; e++)
        if (!strncmp(*e, "EDGELLM_CONFIG=", 15)) config_path = *e + 15;
    /* Pass 1: actions and --config, and a syntax check of every flag. */
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (is_flag(a, "-h") || is_flag(a, "--help")) {
            *action = CFG_HELP;
            return 0;
        }
        if (is_flag(a, "--version")) {
            *action = CFG_VERSION;
            return 0;
        }
        if (is_flag(a, "--print-config")) {
            *action = CFG_PRINT;
            continue;
        }
        if (is_flag(a, "--print-reference")) {
            *action = CFG_REFERENCE;
            return 0;
        }
        if (is_flag(a, "--config") || !strncmp(a, "--config=", 9)) {
            if (a[8] == '=') {
                config_path = a + 9;
            } else if (i + 1 < argc) {
                config_path = argv[++i];
            } else {
                return fail(err, errlen, ENG_EINVAL, "--config needs a file name");
            }
            continue;
        }
        if (strncmp(a, "--", 2) != 0 && !is_flag(a, "-m"))
            return fail(err, errlen, ENG_EINVAL, "unexpected argument '%s'", a);
        const char *name = is_flag(a, "-m") ? "model" : a + 2;
        const char *eq = strchr(name, '=');
        size_t n = eq ? (size_t)(eq - name) : strlen(name);
        const struct cfg_key *k = cfg_find(name, n);
        if (!k) return fail(err, errlen, ENG_EINVAL, "unknown option '%s' (--help lists them)", a);
        if (!eq && k->type != CFG_BOOL) {
            if (i + 1 >= argc) return fail(err, errlen, ENG_EINVAL, "%s needs a value", a);
            i++;
        }
    }
    if (config_path && *config_path) {
        int rc = cfg_load_file(c, config_path, err, errlen);
        if (rc) return rc;
    }
    int rc = cfg_load_env(c, envp, err, errlen);
    if (rc) return rc;
    /* Pass 2: flag values. */
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (is_flag(a, "--print-config")) continue;
        if (is_flag(a, "--config")) {
            i++;
            continue;
        }
        if (!strncmp(a, "--config=", 9)) continue;
        const char *name = is_flag(a, "-m") ? "model" : a + 2;
        const char *eq = strchr(name, '=');
        size_t n = eq ? (size_t)(eq - name) : strlen(name);
        const struct cfg_key *k = cfg_find(name, n);
        const char *val = eq ? eq + 1 : (k->type == CFG_BOOL ? "true" : argv[++i]);
        char why[256];
        const char *a_eq = strchr(a, '=');
        if ((rc = cfg_set(c, k, val, why, sizeof(why))))
            return fail(err, errlen, rc, "%.*s: %s", (int)(a_eq ? a_eq - a : (long)strlen(a)), a,
                        why);
    }
    return 0;
}

bool cfg_host_is_loopback(const char *host) {
    if (!strcmp(host, "localhost") || !strcmp(host, "::1") || !strcmp(host, "[::1]")) return true;
    if (strncmp(host, "127.", 4) != 0) return false;
    int dots = 1;
    for (const char *p = host + 4; *p; p++) {
        if (*p == '.')
            dots++;
        else if (!isdigit((unsigned char)*p))
            return false;
    }
    return dots == 3;
}

int cfg_check(const struct srv_config *c, int nkeys, char *err, size_t errlen) {
    if (!*c->host) return fail(err, errlen, ENG_EINVAL, "host: must not be empty");
    if (!cfg_host_is_loopback(c->host) && nkeys == 0 && !c->insecure_no_auth)
        return fail(err, errlen, ENG_EINVAL,
                    "host: refusing to listen on '%s' without an API key (set api_keys or "
                    "api_key_file, or insecure_no_auth = true to serve anyone on the network)",
                    c->host);
    if (c->prefill_chunk > c->batch)
        return fail(err, errlen, ENG_ERANGE, "prefill_chunk: %ld is larger than batch (%ld)",
                    c->prefill_chunk, c->batch);
    if (c->batch < c->slots)
        return fail(err, errlen, ENG_ERANGE,
                    "batch: %ld is smaller than slots (%ld); each step decodes one token per slot",
                    c->batch, c->slots);
    return 0;
}

char *cfg_value_text(const struct srv_config *c, const struct cfg_key *k) {
    const void *f = cfield(c, k);
    char buf[64];
    switch (k->type) {
    case CFG_BOOL:
        return strdup(*(const bool *)f ? "true" : "false");
    case CFG_INT:
        snprintf(buf, sizeof(buf), "%ld", *(const long *)f);
        return strdup(buf);
    case CFG_FLOAT:
        snprintf(buf, sizeof(buf), "%g", *(const double *)f);
        return strdup(buf);
    case CFG_STRING:
    case CFG_ENUM:
        return strdup(*(char *const *)f ? *(char *const *)f : "");
    case CFG_LIST: {
        const struct cfg_list *l = f;
        size_t n = 1;
        for (int i = 0; i < l->n; i++) n += strlen(l->v[i]) + 2;
        char *s = malloc(n);
        if (!s) return NULL;
        s[0] = 0;
        for (int i = 0; i < l->n; i++) {
            if (i) strcat(s, ", ");
            strcat(s, l->v[i]);
        }
        return s;
    }
    default:
        return strdup("");
    }
}

bool cfg_differs(const struct srv_config *a, const struct srv_config *b, const struct cfg_key *k) {
    char *x = cfg_value_text(a, k), *y = cfg_value_text(b, k);
    bool d = !x || !y || strcmp(x, y) != 0;
    free(x);
    free(y);
    return d;
}

void cfg_print(const struct srv_config *c, FILE *f) {
    fprintf(f, "# edgellmd effective configuration\n");
    const char *group = "";
    for (int i = 0; i < N_KEYS; i++) {
        const struct cfg_key *k = &keys[i];
        if (strcmp(group, k->group)) {
            group = k->group;
            fprintf(f, "\n# %s\n", group);
        }
        if (k->flags & CFG_SECRET) {
            const struct cfg_list *l = cfield(c, k);
            fprintf(f, "# %s = (%d hidden)\n", k->name, k->type == CFG_LIST ? l->n : 1);
            continue;
        }
        char *v = cfg_value_text(c, k);
        /* Quoted when the file syntax would otherwise trim or unwrap the value. */
        size_t n = v ? strlen(v) : 0;
        bool quote = n && (strchr(" \t\"", v[0]) || strchr(" \t\"", v[n - 1]));
        fprintf(f, quote ? "%s = \"%s\"\n" : "%s = %s\n", k->name, v ? v : "");
        free(v);
    }
}

static const char *type_hint(const struct cfg_key *k) {
    switch (k->type) {
    case CFG_BOOL:
        return "[=BOOL]";
    case CFG_INT:
        return "N";
    case CFG_FLOAT:
        return "SECONDS";
    case CFG_LIST:
        return "A,B,...";
    case CFG_ENUM:
        return k->choices;
    default:
        return "TEXT";
    }
}

/* "[0..65535, default 8080]" and the like. */
static void range_text(const struct cfg_key *k, char *buf, size_t n) {
    if (k->type == CFG_INT)
        snprintf(buf, n, "%.0f..%.0f, default %s", k->min, k->max, k->def);
    else if (k->type == CFG_FLOAT)
        snprintf(buf, n, "%g..%g, default %s", k->min, k->max, k->def);
    else if (*k->def)
        snprintf(buf, n, "default %s", k->def);
    else
        snprintf(buf, n, "default empty");
}

/* Writes text wrapped at width, each line starting with prefix. */
static void wrap(FILE *f, const char *prefix, const char *text, int width) {
    int col = 0, plen = (int)strlen(prefix);
    const char *p = text;
    while (*p) {
        const char *w = p;
        while (*w && *w != ' ') w++;
        int wl = (int)(w - p);
        if (col == 0) {
            fputs(prefix, f);
            col = plen;
        } else if (col + 1 + wl > width) {
            fputc('\n', f);
            fputs(prefix, f);
            col = plen;
        } else {
            fputc(' ', f);
            col++;
        }
        fwrite(p, 1, (size_t)wl, f);
        col += wl;
        p = *w ? w + 1 : w;
    }
    fputc('\n', f);
}

void cfg_help(FILE *f, const char *argv0) {
    fprintf(f,
            "usage: %s [--config FILE] [--OPTION VALUE ...]\n\n"
            "edgellmd serves a GGUF model over an OpenAI-compatible HTTP API.\n"
            "Every option is also a config file key (key_name = value) and an environment\n"
            "variable (EDGELLM_KEY_NAME). Precedence: defaults < config file < environment < "
            "flags.\n"
            "Options marked (reload) change on SIGHUP; the others need a restart.\n\n"
            "  --config FILE        config file (also EDGELLM_CONFIG)\n"
            "  --print-config       print the effective configuration and exit\n"
            "  --print-reference    print the documented reference of every key and exit\n"
            "  --version            print the version and exit\n"
            "  -h, --help           this text\n",
            argv0);
    const char *group = "";
    for (int i = 0; i < N_KEYS; i++) {
        const struct cfg_key *k = &keys[i];
        if (strcmp(group, k->group)) {
            group = k->group;
            fprintf(f, "\n%s:\n", group);
        }
        char flag[96];
        snprintf(flag, sizeof(flag), "--%s %s", k->name, type_hint(k));
        for (char *p = flag + 2; *p && *p != ' '; p++)
            if (*p == '_') *p = '-';
        if (!strcmp(k->name, "model")) strcat(flag, ", -m");
        char range[96], text[512];
        range_text(k, range, sizeof(range));
        snprintf(text, sizeof(text), "%s [%s]%s", k->help, range,
                 k->flags & CFG_LIVE ? " (reload)" : "");
        fprintf(f, "  %s\n", flag);
        wrap(f, "        ", text, 96);
    }
}

void cfg_reference(FILE *f) {
    fprintf(f,
            "# edgellmd.conf — the configuration of edgellmd (reference of every key).\n"
            "#\n"
            "# One 'key = value' per line; lines starting with '#' are comments; a value may be\n"
            "# wrapped in double quotes. Every key is also a command-line flag (--key-name "
            "VALUE)\n"
            "# and an environment variable (EDGELLM_KEY_NAME). Precedence: defaults < this "
            "file <\n"
            "# environment < flags. Keys marked 'reload' take effect on SIGHUP (systemctl "
            "reload\n"
            "# edgellmd); the others need a restart. An invalid value stops the daemon with "
            "the key\n"
            "# and line named. `edgellmd --print-config` shows the effective values.\n"
            "#\n"
            "# Generated by `edgellmd --print-reference`; the defaults are shown commented "
            "out.\n");
    const char *group = "";
    for (int i = 0; i < N_KEYS; i++) {
        const struct cfg_key *k = &keys[i];
        if (strcmp(group, k->group)) {
            group = k->group;
            fprintf(f, "\n# ---- %s ----\n", group);
        }
        char range[96], text[512];
        range_text(k, range, sizeof(range));
        snprintf(text, sizeof(text), "%s. [%s%s%s]%s", k->help,
                 k->type == CFG_ENUM ? k->choices : "", k->type == CFG_ENUM ? "; " : "", range,
                 k->flags & CFG_LIVE ? " (reload)" : "");
        fputc('\n', f);
        wrap(f, "# ", text, 96);
        bool quote = !*k->def && k->type == CFG_STRING;
        fprintf(f, quote ? "#%s = \"\"\n" : "#%s = %s\n", k->name, k->def);
    }
}
