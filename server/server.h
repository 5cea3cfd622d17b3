/*
 * server.h — the public interface of server/ (edgellmd): the configuration table and its parsers
 * (cfg_), OpenAI request validation, response/SSE framing, and the daemon entry point (srv_).
 *
 * The parts declared here are pure (no sockets, no threads, no model) so unit tests and fuzz
 * targets drive them directly. The loop, HTTP layer, scheduler and metrics are internals
 * (server/internal.h).
 */
#ifndef EDGELLM_SERVER_H
#define EDGELLM_SERVER_H

#include "engine.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define SRV_VERSION "0.1.0"

/* ---------------------------------------------------------------------------------------------
 * Configuration. One table (config.c) defines every key: name, type, range, default, help, and
 * whether SIGHUP can change it live. The same table drives the config file (key = value), the
 * command-line flags (--key-name VALUE), the EDGELLM_KEY_NAME environment variables, validation,
 * --help and --print-config. Precedence: defaults < file < environment < flags.
 */
struct cfg_list {
    int n;
    char **v; /* n owned strings */
};

struct srv_config {
    /* model and engine (restart needed) */
    char *model;      /* GGUF path; "" = the bundled default model */
    char *model_name; /* id served in /v1/models; "" = file name without .gguf */
    long threads;     /* 0 = performance cores */
    long slots;       /* concurrent sequences */
    long ctx;         /* positions per slot; 0 = min(trained context, 4096) */
    long batch;       /* max tokens per engine step */
    long prefill_chunk;
    bool mlock;
    bool kv_f16;
    bool pin_threads;
    bool interleave;
    /* network (restart needed) */
    char *host;
    long port;
    long max_connections;
    double idle_timeout;
    bool insecure_no_auth;
    /* limits (live) */
    long queue;
    long max_tokens;
    long max_body;
    double request_timeout;
    double keepalive;
    double stream_interval;
    double shutdown_grace;
    /* security (live) */
    struct cfg_list api_keys;
    char *api_key_file;
    struct cfg_list cors_origins;
    /* logging (live) */
    char *log_format; /* "text" | "json" */
    char *log_level;  /* "error" | "warn" | "info" | "debug" */
    bool access_log;
};

enum cfg_type {
    CFG_BOOL = 0,
    CFG_INT = 1,
    CFG_FLOAT = 2,
    CFG_STRING = 3,
    CFG_LIST = 4, /* comma-separated strings */
    CFG_ENUM = 5, /* one of choices ("a|b|c") */
    CFG_TYPE_COUNT = 6,
};

enum cfg_flags {
    CFG_LIVE = 1 << 0,   /* SIGHUP applies a new value without restarting */
    CFG_SECRET = 1 << 1, /* never printed */
};

struct cfg_key {
    const char *name; /* file key (snake_case); flag --name-with-dashes; env EDGELLM_NAME */
    enum cfg_type type;
    size_t offset; /* of the field in struct srv_config */
    double min, max;
    const char *def;     /* default, as text */
    const char *choices; /* CFG_ENUM: "text|json" */
    unsigned flags;      /* enum cfg_flags */
    const char *group;   /* heading in --help and the reference */
    const char *help;
};

/* The table (static, n entries). Thread-safe. */
const struct cfg_key *cfg_keys(int *n);
/* Entry for a file key ("api_key_file") or flag name ("api-key-file"), or NULL. */
const struct cfg_key *cfg_find(const char *name, size_t len);

/* Fills c with the defaults. Never fails except on allocation (returns ENG_ENOMEM). */
int cfg_init(struct srv_config *c);
void cfg_free(struct srv_config *c);
/* Deep copy of src into dst (dst uninitialised). 0 or ENG_ENOMEM. */
int cfg_copy(struct srv_config *dst, const struct srv_config *src);

/* Parses and validates value for key k and stores it. On failure returns ENG_EINVAL / ENG_ERANGE
 * and writes "why" (without the key or source) into err. */
int cfg_set(struct srv_config *c, const struct cfg_key *k, const char *value, char *err,
            size_t errlen);

/* Parses config file text (key = value lines; '#' starts a comment line; values may be wrapped
 * in double quotes). label names the source in errors ("edgellmd.conf:12: port: ..."). Returns 0
 * or a negative code with the message in err. Used by cfg_load_file and the fuzz target. */
int cfg_parse_text(struct srv_config *c, const char *text, size_t len, const char *label, char *err,
                   size_t errlen);
int cfg_load_file(struct srv_config *c, const char *path, char *err, size_t errlen);
/* Applies EDGELLM_* variables of envp (NULL-terminated "NAME=value"); unknown names are ignored. */
int cfg_load_env(struct srv_config *c, char *const *envp, char *err, size_t errlen);

enum cfg_action {
    CFG_RUN = 0,
    CFG_HELP = 1,
    CFG_VERSION = 2,
    CFG_PRINT = 3,
    CFG_REFERENCE = 4,
};

/* The whole command line: finds --config FILE (or EDGELLM_CONFIG), loads the file, then the
 * environment, then the flags. *action says what main should do. Returns 0, or a negative code
 * with a one-line message in err. */
int cfg_load_all(struct srv_config *c, int argc, char *const *argv, char *const *envp,
                 enum cfg_action *action, char *err, size_t errlen);
/* Cross-key checks after loading (a non-loopback host needs an API key unless insecure_no_auth).
 * nkeys = keys from api_keys plus api_key_file. */
int cfg_check(const struct srv_config *c, int nkeys, char *err, size_t errlen);

/* Writes the effective configuration in config-file syntax (secrets replaced by a comment). */
void cfg_print(const struct srv_config *c, FILE *f);
/* Writes the --help text generated from the table. */
void cfg_help(FILE *f, const char *argv0);
/* Writes the documented reference of every key in config-file syntax (conf/edgellmd.conf). */
void cfg_reference(FILE *f);
/* The value of key k in c as text (malloc'd, caller frees; lists comma-joined). */
char *cfg_value_text(const struct srv_config *c, const struct cfg_key *k);
/* True if key k differs between a and b. */
bool cfg_differs(const struct srv_config *a, const struct srv_config *b, const struct cfg_key *k);
/* True for 127.0.0.0/8, ::1 and "localhost". */
bool cfg_host_is_loopback(const char *host);

/* ---------------------------------------------------------------------------------------------
 * OpenAI errors: {"error": {"message", "type", "param", "code"}} with an HTTP status.
 */
struct srv_error {
    int status;       /* 400, 401, 404, 405, 413, 429, 500, 503, ... */
    const char *type; /* static: "invalid_request_error", "authentication_error", ... */
    const char *code; /* static or NULL */
    char param[64];   /* offending field ("" = null) */
    char message[512];
};

/* Sets e and returns ENG_EINVAL (so validators can `return srv_err(...)`). */
int srv_err(struct srv_error *e, int status, const char *type, const char *code, const char *param,
            const char *fmt, ...) __attribute__((format(printf, 6, 7)));
/* The error object as a new JSON value (caller decrefs). NULL on allocation failure. */
json_t *srv_error_json(const struct srv_error *e);

/* ---------------------------------------------------------------------------------------------
 * Generation requests (POST /v1/chat/completions and /v1/completions), validated. Every string is
 * owned by the struct; free with srv_gen_request_free().
 */
enum srv_kind {
    SRV_CHAT = 0,
    SRV_COMPLETION = 1,
};

#define SRV_MAX_STOP     4
#define SRV_MAX_LOGPROBS 20

struct srv_prompt {
    char *text;   /* UTF-8 text, or NULL when given as token ids */
    int32_t *ids; /* token ids (when given as ids) */
    int n_ids;
};

struct srv_gen_request {
    enum srv_kind kind;
    char *model;
    /* chat */
    struct eng_chat_msg *msgs; /* role and content owned (content of text-part arrays joined) */
    int n_msgs;
    /* completions */
    struct srv_prompt *prompts;
    int n_prompts;
    bool echo;
    /* common */
    long max_tokens; /* -1 = not given */
    int n;
    char *stop[SRV_MAX_STOP];
    int n_stop;
    bool stream;
    bool include_usage;
    bool logprobs;    /* chat: logprobs; completions: logprobs given */
    int top_logprobs; /* chat: top_logprobs; completions: the logprobs value */
    bool has_seed;
    uint64_t seed;
    struct eng_sampler_params sp; /* logit_bias points into bias[] */
    struct eng_logit_bias *bias;
    int n_bias;
    char *user;
};

/* Validates a request body of kind. n_vocab bounds token ids (logit_bias keys, token prompts).
 * Returns 0 and fills r, or a negative code with an OpenAI error (status 400) in e; r is then
 * already freed. Never crashes on any input. */
int srv_gen_request_parse(enum srv_kind kind, const char *body, size_t len, int n_vocab,
                          struct srv_gen_request *r, struct srv_error *e);
void srv_gen_request_free(struct srv_gen_request *r);

/* Replaces invalid UTF-8 in s (len bytes) with U+FFFD; returns a new NUL-terminated string
 * (caller frees) and its length in *out_len, or NULL on allocation failure. */
char *srv_utf8_sanitize(const char *s, size_t len, size_t *out_len);
/* Length of the longest prefix of s that does not end inside an incomplete UTF-8 sequence. */
size_t srv_utf8_complete_prefix(const char *s, size_t len);

/* ---------------------------------------------------------------------------------------------
 * SSE framing: "data: <compact json>\n\n", "data: [DONE]\n\n", ": comment\n\n".
 */
struct srv_buf {
    char *p;
    size_t len, cap;
};

int srv_buf_append(struct srv_buf *b, const void *data, size_t n); /* 0 or ENG_ENOMEM */
int srv_buf_printf(struct srv_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void srv_buf_consume(struct srv_buf *b, size_t n); /* drops the first n bytes */
void srv_buf_free(struct srv_buf *b);

/* Appends one SSE event carrying json (borrowed). 0 or ENG_ENOMEM. */
int srv_sse_json(struct srv_buf *b, const json_t *json);
int srv_sse_done(struct srv_buf *b);
/* A comment line (keep-alive); text must not contain newlines (they are replaced by spaces). */
int srv_sse_comment(struct srv_buf *b, const char *text);

/* ---------------------------------------------------------------------------------------------
 * The daemon. Returns the process exit status (0 after a clean SIGTERM drain).
 */
int srv_main(int argc, char **argv, char **envp);

#endif
