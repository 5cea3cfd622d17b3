/*
 * internal.h — what server/ files share beyond server.h: logging, metrics, API-key checks,
 * systemd notifications, the scheduler (engine thread) and its jobs, and the loop-side server
 * state. Not included outside server/.
 *
 * Threads: the loop thread (libuv + libmicrohttpd) owns connections, config and auth; the engine
 * thread owns the model context and sequences. They share jobs (struct srv_job) whose cross-thread
 * fields are guarded by the scheduler mutex, and meet through the scheduler queue, the dirty list
 * and the wake-up (srv_wake).
 */
#ifndef EDGELLM_SERVER_INTERNAL_H
#define EDGELLM_SERVER_INTERNAL_H

#include "server.h"

#include <pthread.h>
#include <stdatomic.h>
#include <uv.h>

/* ---- engine → loop wake-up (wake.c) ---- */

struct srv_wake {
    uv_poll_t poll; /* on fd */
    int fd;         /* eventfd */
    atomic_bool pending;
    bool open;
    void (*cb)(struct srv_wake *w);
    void *data;
    _Atomic unsigned handled; /* wake-ups the loop has handled: srv_wake_from_worker's futex */
    atomic_int waiters;       /* workers waiting on handled */
    atomic_int handoff_cpu;   /* see srv_wake_set_handoff_cpu; -1 when none */
};
/* Loop thread: cb(w) runs on the loop after one or more srv_wake_send. 0 or -1 (then
 * srv_wake_close, and a loop run, still release what was made). */
int srv_wake_init(uv_loop_t *loop, struct srv_wake *w, void (*cb)(struct srv_wake *), void *data);
/* Any thread: wake the loop (coalesces with a wake-up not yet handled). */
void srv_wake_send(struct srv_wake *w);
/* Loop thread: stop watching; the fd closes with the handle. */
void srv_wake_close(struct srv_wake *w);
/* The loop thread runs on CPU cpu alone, and an engine worker runs there too (-1: it does not). */
void srv_wake_set_handoff_cpu(struct srv_wake *w, int cpu);
/* True if srv_wake_from_worker can hand a worker's CPU over to the loop. */
bool srv_wake_hands_off(struct srv_wake *w);
/* Engine worker, between two jobs: srv_wake_send; on the handoff CPU it then waits until the
 * loop has handled the wake-up (wake.c: at most a millisecond). */
void srv_wake_from_worker(struct srv_wake *w);

/* ---- time ---- */

/* Monotonic seconds. Thread-safe. */
double srv_now(void);

/* ---- logging (log.c). Thread-safe: each line is one write(2) to stderr. ---- */

enum srv_log_level {
    SRV_LOG_ERROR = 0,
    SRV_LOG_WARN = 1,
    SRV_LOG_INFO = 2,
    SRV_LOG_DEBUG = 3,
};

/* Sets format ("text"/"json") and the least severe level logged ("error".."debug"). */
void srv_log_configure(const char *format, const char *level);
void srv_log(enum srv_log_level lvl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

struct srv_access {
    const char *client; /* address */
    const char *method;
    const char *path;
    int status;
    int prompt_tokens;
    int completion_tokens;
    double seconds;
    const char *id; /* completion id or NULL */
};
void srv_log_access(const struct srv_access *a);

/* ---- metrics (metrics.c). Thread-safe. ---- */

enum srv_route {
    SRV_ROUTE_CHAT = 0,
    SRV_ROUTE_COMPLETIONS = 1,
    SRV_ROUTE_MODELS = 2,
    SRV_ROUTE_MODEL = 3,
    SRV_ROUTE_HEALTH = 4,
    SRV_ROUTE_METRICS = 5,
    SRV_ROUTE_TOKENIZE = 6,
    SRV_ROUTE_DETOKENIZE = 7,
    SRV_ROUTE_OTHER = 8,
    SRV_ROUTE_COUNT = 9,
};
const char *srv_route_label(enum srv_route r);

void srv_metrics_request(enum srv_route route, int status);
void srv_metrics_tokens(int prompt, int generated);
void srv_metrics_cancelled(void);
void srv_metrics_rejected(void); /* queue full */
void srv_metrics_wakeup(void);   /* the engine woke the loop to hand over output */
void srv_metrics_ttft(double seconds);
void srv_metrics_itl(double seconds);
void srv_metrics_duration(double seconds);
/* One engine step over `sequences` sequences (batch size histogram and peak). */
void srv_metrics_step(int sequences);
/* Gauges owned by the scheduler. */
void srv_metrics_set_queue(int depth);
void srv_metrics_set_active(int slots_in_use, int slots_total);
void srv_metrics_set_loaded(bool loaded);
/* Prometheus text exposition (version 0.0.4) into b. */
int srv_metrics_render(struct srv_buf *b);
/* Current cancellation count (tests and logs). */
uint64_t srv_metrics_cancelled_count(void);

/* ---- API keys (auth.c). Loop thread only. ---- */

struct srv_auth {
    int n;
    char **keys;
};
/* Loads keys from the config list and the key file. 0, or a negative code with err filled. On
 * failure a is unchanged. */
int srv_auth_load(struct srv_auth *a, const struct srv_config *c, char *err, size_t errlen);
void srv_auth_free(struct srv_auth *a);
/* True if no keys are configured, or key (len bytes) equals one of them. The comparison time
 * does not depend on where the first difference is. */
bool srv_auth_check(const struct srv_auth *a, const char *key, size_t len);

/* ---- systemd notifications (notify.c): sd_notify's datagram protocol on $NOTIFY_SOCKET. ---- */

/* Sends state ("READY=1", "STATUS=...", "WATCHDOG=1", "STOPPING=1"); no-op without systemd. */
void srv_notify(const char *state);
/* Watchdog interval in seconds from $WATCHDOG_USEC (for this pid), or 0. */
double srv_watchdog_interval(void);

/* ---- jobs and the scheduler (sched.c) ---- */

/* One token's log-probabilities, as sampled. */
struct srv_tok_lp {
    int32_t token;
    float logprob;
    int n_top;
    struct eng_token_logprob top[SRV_MAX_LOGPROBS];
};

/* Output of one choice, produced by the engine thread, taken by the loop thread. */
struct srv_choice_out {
    struct srv_buf text;   /* generated UTF-8 not yet taken */
    struct srv_tok_lp *lp; /* sampled tokens not yet taken (logprobs requested) */
    int n_lp, cap_lp;
    const char *finish; /* "stop" / "length" once the choice has finished; NULL before */
    int n_tokens;       /* tokens generated so far */
};

struct srv_job {
    atomic_int refs;

    /* Immutable after srv_sched_submit. Owned by the job. */
    int n_groups;     /* prompts */
    int n_per_group;  /* choices per prompt (n) */
    int n_choices;    /* n_groups * n_per_group; choice c belongs to group c / n_per_group */
    int32_t **prompt; /* (n_groups) token ids */
    int *n_prompt;    /* (n_groups) */
    int max_tokens;   /* per choice */
    struct eng_sampler_params sp;
    struct eng_logit_bias *bias; /* sp.logit_bias points here */
    char *stop[SRV_MAX_STOP];
    int n_stop;
    bool want_lp;
    bool stream;    /* the loop sends output as it comes; otherwise it takes the job only once
                     * it is done (or failed): a non-stream job's tokens do not wake the loop */
    bool continues; /* the output continues the prompt's text (completions): its first token
                     * keeps its leading space, which only the start of a text drops */
    double t_submit;
    double deadline; /* srv_now() time */

    /* Cross-thread. */
    atomic_bool cancel; /* set by the loop: client gone or server draining */

    /* Guarded by the scheduler mutex. */
    struct srv_choice_out *out; /* (n_choices) */
    bool done;
    int err_status; /* nonzero: failed (504 timeout, 500 engine error, 499 cancelled) */
    char err_msg[256];
    bool dirty;
    struct srv_job *next_dirty;
    struct srv_job *next_queued;

    /* Loop thread only. */
    void *req; /* the HTTP request waiting on this job, NULL once it went away */
};

/* A new job with n_choices output slots and refs = 1 (the caller's). NULL on allocation failure. */
struct srv_job *srv_job_new(int n_groups, int n_per_group);
void srv_job_ref(struct srv_job *j);
/* Drops a reference; the last one frees. Thread-safe. */
void srv_job_unref(struct srv_job *j);

enum srv_sched_state {
    SRV_SCHED_LOADING = 0,
    SRV_SCHED_READY = 1,
    SRV_SCHED_FAILED = 2,
};

struct srv_sched;

struct srv_sched_params {
    const char *model_path; /* copied */
    int threads, slots, ctx, batch, prefill_chunk;
    bool mlock, kv_f16, pin_threads, interleave;
    double stream_interval; /* seconds; see srv_sched_set_stream_interval */
};

/* Starts the engine thread, which loads the model and then serves jobs. wake is signalled (from
 * the engine thread) whenever the state changes or jobs have new output. NULL on failure. */
struct srv_sched *srv_sched_start(const struct srv_sched_params *p, struct srv_wake *wake);
/* Cancels everything, stops and joins the engine thread, frees the model. */
void srv_sched_stop(struct srv_sched *s);

/* Thread-safe. Model objects are valid once the state is READY and until srv_sched_stop. */
enum srv_sched_state srv_sched_state(struct srv_sched *s);
const char *srv_sched_error(struct srv_sched *s); /* after FAILED */
const struct eng_model *srv_sched_model(struct srv_sched *s);
const struct eng_tokenizer *srv_sched_tokenizer(struct srv_sched *s);
int srv_sched_n_ctx(struct srv_sched *s);
const struct eng_ctx *srv_sched_ctx(struct srv_sched *s); /* its parameters and memory */
int srv_sched_n_slots(struct srv_sched *s);

/* Queues job (takes a reference). ENG_EBUSY if max_queue jobs already wait, ENG_EINVAL if the
 * scheduler is not ready. Thread-safe. An idle engine is woken at once, or with defer_wake
 * (more requests that came with this one are being read) by the caller's srv_sched_wake once
 * they are queued too, so that they all start in its first step, unless the queued jobs already
 * fill the free slots. */
int srv_sched_submit(struct srv_sched *s, struct srv_job *job, int max_queue, bool defer_wake);
void srv_sched_wake(struct srv_sched *s);
/* Asks for job to be cancelled before the next step. Thread-safe. */
void srv_sched_cancel(struct srv_sched *s, struct srv_job *job);
/* Takes the jobs with new output: *out = malloc'd array (caller frees) of n jobs, each carrying
 * one reference for the caller. Returns n. Thread-safe. */
int srv_sched_take_dirty(struct srv_sched *s, struct srv_job ***out);
/* The scheduler mutex, for reading job outputs. */
void srv_sched_lock(struct srv_sched *s);
void srv_sched_unlock(struct srv_sched *s);
/* Least seconds between two wake-ups for new tokens of running streams (the config key
 * stream_interval); a job's first token and its end wake the loop at once. Thread-safe. */
void srv_sched_set_stream_interval(struct srv_sched *s, double seconds);
/* Jobs waiting and slots in use. Thread-safe. */
void srv_sched_counts(struct srv_sched *s, int *queued, int *active);

/* ---- the loop side (daemon.c, http.c, api.c). Loop thread only. ---- */

struct MHD_Daemon;
struct MHD_Connection;

struct srv_server {
    uv_loop_t *loop;
    struct MHD_Daemon *mhd;
    uv_poll_t mhd_poll;    /* MHD's epoll fd */
    uv_timer_t mhd_timer;  /* MHD's next timeout */
    uv_timer_t wake_timer; /* a deferred engine wake-up at the latest (srv_http_kick) */
    uv_timer_t tick;       /* keep-alive comments, drain progress */
    uv_timer_t watchdog;   /* WATCHDOG=1 */
    struct srv_wake wake;  /* engine → loop */
    uv_signal_t sig_term, sig_int, sig_hup;

    struct srv_config cfg; /* live keys change on SIGHUP */
    int argc;
    char **argv, **envp; /* for reloads */
    struct srv_auth auth;
    struct srv_sched *sched;

    /* model facts, valid once loaded */
    char model_path[4096];
    char model_id[256];
    char fingerprint[32];
    long long model_created; /* file mtime */
    enum eng_chat_family chat_family;
    struct eng_chat_template chat_tmpl;
    bool loaded;

    char url[300]; /* http://host:port */
    int port;
    struct srv_req *reqs; /* generation requests in flight (doubly linked) */
    int n_reqs;
    bool wake_engine; /* a job was queued with defer_wake: the engine is to be woken (http.c) */
    struct srv_conn *fresh; /* connections without a request yet (http.c), newest first */
    bool draining;
    double drain_deadline;
    bool drain_cancelled;
    bool stopping; /* handles are being closed */
    int exit_code;
};

struct srv_choice_state {
    struct srv_buf text;   /* stream: not yet sent; otherwise everything so far */
    struct srv_tok_lp *lp; /* same, for logprobs */
    int n_lp, cap_lp;
    const char *finish;
    bool role_sent, finish_sent;
    int n_tokens;
    long text_offset; /* completions logprobs: bytes of text before the next token */
};

struct srv_req {
    int refs; /* the MHD connection, the streaming response, the disconnect watcher */
    struct srv_server *srv;
    struct MHD_Connection *conn; /* NULL once MHD completed the request */
    enum srv_route route;
    char method[16];
    char *path;
    char client[64];
    const char *origin; /* allowed Origin to echo back (= origin_copy), or NULL */
    char *origin_copy;
    double t_start;
    struct srv_buf body;
    struct srv_error early; /* refusal decided from the headers (status 0: none) */
    bool too_large;
    bool responded; /* a response was queued */
    int status;

    /* generation */
    enum srv_kind kind;
    struct srv_job *job;
    bool stream, include_usage, logprobs, echo;
    int top_logprobs;
    char **echo_text; /* (n_groups) prompt text for echo */
    char id[48];
    long long created;
    int prompt_tokens;
    int n_choices;
    struct srv_choice_state *ch; /* (n_choices) */
    bool finished;               /* everything (or an error) is in out */
    bool client_gone;
    int err_status;
    char err_msg[256];
    struct srv_buf out; /* SSE bytes ready for MHD */
    bool woken;         /* the engine delivered output since the stream last took any */
    double last_send;
    bool suspended;
    bool poll_init;
    bool poll_active; /* watching for the client's disconnect (from the first suspend on) */
    uv_poll_t poll;   /* disconnect watcher, from the first suspend to the end of the request */
    struct srv_req *prev, *next;
};

/* api.c: endpoint handlers. Each queues exactly one response or suspends (generation). */
int srv_api_generate(struct srv_req *r);
int srv_api_models(struct srv_req *r, const char *id);
int srv_api_health(struct srv_req *r);
int srv_api_metrics(struct srv_req *r);
int srv_api_tokenize(struct srv_req *r, bool detokenize);
/* Moves new job output into r (stream: SSE bytes in r->out). */
void srv_api_pump(struct srv_req *r);
/* The non-stream response of a finished job. */
int srv_api_finish(struct srv_req *r);

/* http.c: MHD plumbing used by api.c and daemon.c. */
int srv_http_start(struct srv_server *s, char *err, size_t errlen);
void srv_http_kick(struct srv_server *s); /* MHD_run + timer update */
/* Whether connections opened a moment ago have not sent their request yet: requests that
 * may be arriving with the one being submitted. */
bool srv_http_more_arriving(struct srv_server *s);
void srv_http_stop(struct srv_server *s);
int srv_send_json(struct srv_req *r, int status, json_t *body); /* steals body */
int srv_send_error(struct srv_req *r, const struct srv_error *e);
int srv_send_text(struct srv_req *r, int status, const char *type, const char *text, size_t n);
int srv_send_stream(struct srv_req *r);
void srv_req_suspend(struct srv_req *r);
void srv_req_resume(struct srv_req *r);
void srv_req_cancel(struct srv_req *r);

#endif
