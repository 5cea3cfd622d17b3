/*
 * http.c — libmicrohttpd driven by the libuv loop: MHD runs in external-polling epoll mode, its
 * epoll fd is watched by a uv_poll and its timeouts by a uv_timer. This file owns the request
 * life cycle: routing, method checks, API keys, CORS, body limits, the response helpers, suspend
 * and resume of connections waiting for the engine, disconnect detection while suspended, and the
 * access log.
 *
 * It does not build OpenAI objects or talk to the scheduler beyond cancelling (api.c does).
 */
#include "internal.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <microhttpd.h>
#include <netdb.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---- request objects ---- */

static void req_unref(struct srv_req *r) {
    if (--r->refs > 0) return;
    if (r->job) {
        r->job->req = NULL;
        srv_job_unref(r->job);
    }
    if (r->echo_text) {
        for (int g = 0; r->echo_text[g]; g++) free(r->echo_text[g]);
        free(r->echo_text);
    }
    for (int c = 0; r->ch && c < r->n_choices; c++) {
        srv_buf_free(&r->ch[c].text);
        free(r->ch[c].lp);
    }
    free(r->ch);
    srv_buf_free(&r->body);
    srv_buf_free(&r->out);
    free(r->path);
    free(r->origin_copy);
    free(r);
}

static void on_poll_closed(uv_handle_t *h) {
    req_unref(h->data);
}

static void on_disconnect(uv_poll_t *p, int status, int events) {
    struct srv_req *r = p->data;
    (void)status;
    (void)events;
    /* Any event we asked for (peer closed, error) means the client is gone. */
    uv_poll_stop(p);
    r->poll_active = false;
    r->client_gone = true;
    srv_req_cancel(r);
    /* Let MHD see the closed socket and complete the request. */
    srv_req_resume(r);
    srv_http_kick(r->srv);
}

void srv_req_suspend(struct srv_req *r) {
    if (r->suspended || !r->conn) return;
    MHD_suspend_connection(r->conn);
    r->suspended = true;
    if (!r->poll_init) {
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(r->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
        if (ci && uv_poll_init(r->srv->loop, &r->poll, ci->connect_fd) == 0) {
            r->poll.data = r;
            r->poll_init = true;
            r->refs++; /* released in on_poll_closed */
        }
    }
    if (r->poll_init && !r->poll_active && !r->client_gone)
        r->poll_active = uv_poll_start(&r->poll, UV_DISCONNECT, on_disconnect) == 0;
}

/* The disconnect watch stays on while the connection runs (a stream is resumed and suspended
 * once per token; stopping and starting the watch each time cost two epoll_ctl calls per token
 * on the loop thread); it ends with the request or when it fires. */
void srv_req_resume(struct srv_req *r) {
    if (!r->suspended || !r->conn) return;
    r->suspended = false;
    MHD_resume_connection(r->conn);
}

void srv_req_cancel(struct srv_req *r) {
    if (r->job && r->srv->sched) srv_sched_cancel(r->srv->sched, r->job);
}

/* ---- responses ---- */

static void add_common_headers(struct srv_req *r, struct MHD_Response *resp) {
    if (r->origin) {
        MHD_add_response_header(resp, "Access-Control-Allow-Origin", r->origin);
        MHD_add_response_header(resp, "Vary", "Origin");
        MHD_add_response_header(resp, "Access-Control-Expose-Headers", "x-request-id");
    }
    if (r->id[0]) MHD_add_response_header(resp, "x-request-id", r->id);
    if (r->srv->draining) MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
}

static int queue(struct srv_req *r, int status, struct MHD_Response *resp) {
    if (!resp) return -1;
    add_common_headers(r, resp);
    enum MHD_Result ok = MHD_queue_response(r->conn, (unsigned)status, resp);
    MHD_destroy_response(resp);
    if (ok != MHD_YES) return -1;
    r->responded = true;
    r->status = status;
    return 0;
}

int srv_send_text(struct srv_req *r, int status, const char *type, const char *text, size_t n) {
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(n, (void *)text, MHD_RESPMEM_MUST_COPY);
    if (!resp) return -1;
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    return queue(r, status, resp);
}

int srv_send_json(struct srv_req *r, int status, json_t *body) {
    char *s = body ? json_dumps(body, JSON_COMPACT | JSON_REAL_PRECISION(9)) : NULL;
    json_decref(body);
    if (!s) {
        static const char oom[] = "{\"error\":{\"message\":\"out of memory\",\"type\":"
                                  "\"server_error\",\"param\":null,\"code\":null}}";
        return srv_send_text(r, 500, "application/json", oom, sizeof(oom) - 1);
    }
    size_t n = strlen(s);
    struct MHD_Response *resp = MHD_create_response_from_buffer(n, s, MHD_RESPMEM_MUST_FREE);
    if (!resp) {
        free(s);
        return -1;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
    return queue(r, status, resp);
}

int srv_send_error(struct srv_req *r, const struct srv_error *e) {
    json_t *j = srv_error_json(e);
    char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    if (!s) return srv_send_text(r, 500, "application/json", "{}", 2);
    size_t n = strlen(s);
    struct MHD_Response *resp = MHD_create_response_from_buffer(n, s, MHD_RESPMEM_MUST_FREE);
    if (!resp) {
        free(s);
        return -1;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
    if (e->status == 503 || e->status == 429)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_RETRY_AFTER, "1");
    if (e->status == 405) {
        const char *allow = r->route == SRV_ROUTE_CHAT || r->route == SRV_ROUTE_COMPLETIONS ||
                                    r->route == SRV_ROUTE_TOKENIZE ||
                                    r->route == SRV_ROUTE_DETOKENIZE
                                ? "POST, OPTIONS"
                                : "GET, HEAD, OPTIONS";
        MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, allow);
    }
    if (e->status == 401) MHD_add_response_header(resp, "WWW-Authenticate", "Bearer");
    return queue(r, e->status, resp);
}

/* Streaming: MHD pulls SSE bytes from r->out; with nothing to send the connection sleeps until
 * the engine (or the keep-alive tick) wakes it. The job's new text is taken only after a
 * wake-up from the engine (r->woken), which comes at most once per stream_interval while the
 * stream runs. MHD also calls here right after each send, asking for more: taking the text
 * then sent whatever the engine had decoded meanwhile, and while tokens came faster than the
 * loop sent them, sends followed each other whatever the interval (a 4-layer model at about
 * 0.1 ms a token, interval 5 ms: 1.5-1.8 sends per interval). Each send takes the loop thread
 * and the client a core that an engine thread was using. */
static ssize_t sse_reader(void *cls, uint64_t pos, char *buf, size_t max) {
    struct srv_req *r = cls;
    (void)pos;
    if (r->client_gone) return MHD_CONTENT_READER_END_WITH_ERROR;
    if (r->out.len == 0 && r->woken) {
        r->woken = false;
        srv_api_pump(r);
    }
    if (r->out.len > 0) {
        size_t n = r->out.len < max ? r->out.len : max;
        memcpy(buf, r->out.p, n);
        srv_buf_consume(&r->out, n);
        r->last_send = srv_now();
        return (ssize_t)n;
    }
    if (r->finished) return MHD_CONTENT_READER_END_OF_STREAM;
    srv_req_suspend(r);
    return 0;
}

static void sse_free(void *cls) {
    req_unref(cls);
}

int srv_send_stream(struct srv_req *r) {
    struct MHD_Response *resp =
        MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16384, sse_reader, r, sse_free);
    if (!resp) return -1;
    r->refs++; /* released by sse_free */
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "text/event-stream");
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
    MHD_add_response_header(resp, "X-Accel-Buffering", "no");
    r->last_send = srv_now();
    return queue(r, 200, resp);
}

/* ---- routing ---- */

static enum srv_route route_of(const char *path, const char **model_id) {
    *model_id = NULL;
    if (!strcmp(path, "/v1/chat/completions")) return SRV_ROUTE_CHAT;
    if (!strcmp(path, "/v1/completions")) return SRV_ROUTE_COMPLETIONS;
    if (!strcmp(path, "/v1/models")) return SRV_ROUTE_MODELS;
    if (!strncmp(path, "/v1/models/", 11) && path[11]) {
        *model_id = path + 11;
        return SRV_ROUTE_MODEL;
    }
    if (!strcmp(path, "/health")) return SRV_ROUTE_HEALTH;
    if (!strcmp(path, "/metrics")) return SRV_ROUTE_METRICS;
    if (!strcmp(path, "/tokenize")) return SRV_ROUTE_TOKENIZE;
    if (!strcmp(path, "/detokenize")) return SRV_ROUTE_DETOKENIZE;
    return SRV_ROUTE_OTHER;
}

static bool route_is_post(enum srv_route r) {
    return r == SRV_ROUTE_CHAT || r == SRV_ROUTE_COMPLETIONS || r == SRV_ROUTE_TOKENIZE ||
           r == SRV_ROUTE_DETOKENIZE;
}

/* The configured origin equal to the request's Origin (or "*"), else NULL. */
static const char *allowed_origin(struct srv_server *s, const char *origin) {
    if (!origin) return NULL;
    for (int i = 0; i < s->cfg.cors_origins.n; i++) {
        const char *o = s->cfg.cors_origins.v[i];
        if (!strcmp(o, "*") || !strcmp(o, origin)) return o;
    }
    return NULL;
}

static bool authorized(struct srv_req *r) {
    struct srv_server *s = r->srv;
    if (s->auth.n == 0) return true;
    const char *key = NULL;
    const char *h = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "Authorization");
    if (h && !strncasecmp(h, "Bearer ", 7)) {
        key = h + 7;
        while (*key == ' ') key++;
    }
    if (!key) key = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "x-api-key");
    return key && srv_auth_check(&s->auth, key, strlen(key));
}

static int preflight(struct srv_req *r) {
    const char *origin = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "Origin");
    if (!r->origin) {
        struct srv_error e;
        srv_err(&e, 403, "invalid_request_error", "cors_origin_not_allowed", NULL,
                "Origin %.200s is not allowed (cors_origins).", origin ? origin : "(none)");
        return srv_send_error(r, &e);
    }
    struct MHD_Response *resp = MHD_create_response_from_buffer(0, "", MHD_RESPMEM_PERSISTENT);
    if (!resp) return -1;
    MHD_add_response_header(resp, "Access-Control-Allow-Methods", "GET, POST, OPTIONS");
    const char *hdrs =
        MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "Access-Control-Request-Headers");
    MHD_add_response_header(resp, "Access-Control-Allow-Headers",
                            hdrs ? hdrs : "Authorization, Content-Type, x-api-key");
    MHD_add_response_header(resp, "Access-Control-Max-Age", "600");
    return queue(r, 204, resp);
}

/* Decisions that need only the request line and headers, taken when they arrive. An error is
 * kept in r->early and sent once the body (if any) has been read and discarded: answering before
 * that would make MHD close the connection. Returns false if the request is refused. */
static bool early_check(struct srv_req *r) {
    struct srv_server *s = r->srv;
    struct srv_error *e = &r->early;
    const char *m = r->method;
    bool get = !strcmp(m, "GET") || !strcmp(m, "HEAD"), post = !strcmp(m, "POST");
    if (!strcmp(m, "OPTIONS")) return true;
    if (r->route == SRV_ROUTE_OTHER) {
        srv_err(e, 404, "invalid_request_error", NULL, NULL, "Invalid URL (%.16s %.300s)", m,
                r->path);
        return false;
    }
    if ((route_is_post(r->route) && !post) || (!route_is_post(r->route) && !get)) {
        srv_err(e, 405, "invalid_request_error", "method_not_allowed", NULL,
                "Method %.16s is not allowed for %.200s; use %s.", m, r->path,
                route_is_post(r->route) ? "POST" : "GET");
        return false;
    }
    if (r->route != SRV_ROUTE_HEALTH && !authorized(r)) {
        bool given = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "Authorization") ||
                     MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "x-api-key");
        if (given)
            srv_err(e, 401, "invalid_request_error", "invalid_api_key", NULL,
                    "Incorrect API key provided.");
        else
            srv_err(
                e, 401, "invalid_request_error", NULL, NULL,
                "You didn't provide an API key. You need to provide your API key in an "
                "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).");
        return false;
    }
    if (s->draining && r->route != SRV_ROUTE_HEALTH && r->route != SRV_ROUTE_METRICS) {
        srv_err(e, 503, "server_error", "shutting_down", NULL,
                "The server is shutting down; retry against another instance or after restart.");
        return false;
    }
    return true;
}

/* Answers a request whose body (if any) is complete. */
static int dispatch(struct srv_req *r, const char *model_id) {
    if (r->early.status) return srv_send_error(r, &r->early);
    if (!strcmp(r->method, "OPTIONS")) return preflight(r);
    if (r->too_large) {
        struct srv_error e;
        srv_err(&e, 413, "invalid_request_error", "request_too_large", NULL,
                "The request body is larger than the limit of %ld bytes.", r->srv->cfg.max_body);
        return srv_send_error(r, &e);
    }
    switch (r->route) {
    case SRV_ROUTE_MODELS:
        return srv_api_models(r, NULL);
    case SRV_ROUTE_MODEL:
        return srv_api_models(r, model_id);
    case SRV_ROUTE_HEALTH:
        return srv_api_health(r);
    case SRV_ROUTE_METRICS:
        return srv_api_metrics(r);
    case SRV_ROUTE_TOKENIZE:
    case SRV_ROUTE_DETOKENIZE:
        return srv_api_tokenize(r, r->route == SRV_ROUTE_DETOKENIZE);
    default:
        return srv_api_generate(r);
    }
}

/* Connections whose first request has not begun yet (MHD socket contexts), newest first: what
 * may still come with a request that is being submitted (srv_http_more_arriving). */
struct srv_conn {
    struct srv_conn *prev, *next;
    double t_open;
    bool fresh; /* in the server's list */
};

static void conn_unlink(struct srv_server *s, struct srv_conn *c) {
    if (!c->fresh) return;
    if (c->prev)
        c->prev->next = c->next;
    else
        s->fresh = c->next;
    if (c->next) c->next->prev = c->prev;
    c->prev = c->next = NULL;
    c->fresh = false;
}

static void on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
                          enum MHD_ConnectionNotificationCode toe) {
    struct srv_server *s = cls;
    struct srv_conn *c = *socket_context;
    (void)conn;
    if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
        if (!(c = calloc(1, sizeof(*c)))) return; /* then it only goes uncounted */
        c->t_open = srv_now();
        c->fresh = true;
        c->next = s->fresh;
        if (s->fresh) s->fresh->prev = c;
        s->fresh = c;
        *socket_context = c;
    } else if (c) {
        conn_unlink(s, c);
        free(c);
        *socket_context = NULL;
    }
}

/* Connections opened within this many seconds that have not sent a request yet count as requests
 * arriving with the others (a client starting several streams at once opens them together);
 * older ones are idle, or never send. */
#define FRESH_S 0.05

bool srv_http_more_arriving(struct srv_server *s) {
    /* the list is newest first: when its head is older, so are the others */
    return s->fresh && srv_now() - s->fresh->t_open < FRESH_S;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload,
                                  size_t *upload_size, void **con_cls) {
    struct srv_server *s = cls;
    struct srv_req *r = *con_cls;
    (void)version;
    if (!r) {
        const union MHD_ConnectionInfo *sc =
            MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
        if (sc && sc->socket_context) conn_unlink(s, sc->socket_context);
        if (!(r = calloc(1, sizeof(*r)))) return MHD_NO;
        r->refs = 1;
        r->srv = s;
        r->conn = conn;
        r->t_start = srv_now();
        snprintf(r->method, sizeof(r->method), "%s", method);
        r->path = strdup(url);
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
        if (ci && ci->client_addr) {
            const struct sockaddr *sa = ci->client_addr;
            if (sa->sa_family == AF_INET)
                inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, r->client,
                          sizeof(r->client));
            else if (sa->sa_family == AF_INET6)
                inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, r->client,
                          sizeof(r->client));
        }
        *con_cls = r;
        if (!r->path) return MHD_NO;
        const char *model_id;
        r->route = route_of(url, &model_id);
        const char *origin = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Origin");
        const char *allowed = allowed_origin(s, origin);
        /* Echo the caller's origin (also for "*", so credentials keep working); a copy survives
         * a config reload. */
        if (allowed && !(r->origin = r->origin_copy = strdup(origin))) return MHD_NO;
        if (early_check(r)) {
            const char *cl =
                MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
            if (cl && strtoull(cl, NULL, 10) > (unsigned long long)s->cfg.max_body) {
                /* Refuse before reading it; MHD closes the connection afterwards. */
                r->too_large = true;
                return dispatch(r, NULL) ? MHD_NO : MHD_YES;
            }
        }
        return MHD_YES;
    }
    if (r->responded) {
        *upload_size = 0;
        return MHD_YES;
    }
    if (*upload_size > 0) {
        /* A refused request's body is read and dropped. */
        if (!r->early.status && !r->too_large &&
            r->body.len + *upload_size > (size_t)s->cfg.max_body) {
            r->too_large = true;
            srv_buf_free(&r->body);
        }
        if (!r->early.status && !r->too_large && srv_buf_append(&r->body, upload, *upload_size))
            return MHD_NO;
        *upload_size = 0;
        return MHD_YES;
    }
    /* The whole body is here (or the engine woke us). */
    int rc;
    if (r->client_gone) return MHD_NO;
    if (r->job) {
        srv_api_pump(r);
        rc = r->finished ? srv_api_finish(r) : (srv_req_suspend(r), 0);
    } else {
        const char *model_id;
        route_of(url, &model_id);
        rc = dispatch(r, model_id);
    }
    return rc ? MHD_NO : MHD_YES;
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe) {
    struct srv_server *s = cls;
    struct srv_req *r = *con_cls;
    (void)conn;
    if (!r) return;
    *con_cls = NULL;
    bool aborted = toe != MHD_REQUEST_TERMINATED_COMPLETED_OK;
    if (r->job) {
        if (!r->finished) {
            /* The client went away (or the connection broke) before the end. */
            srv_req_cancel(r);
            aborted = true;
        }
        r->job->req = NULL;
    }
    if (r->prev)
        r->prev->next = r->next;
    else if (s->reqs == r)
        s->reqs = r->next;
    if (r->next) r->next->prev = r->prev;
    if (r->job) s->n_reqs--;
    r->prev = r->next = NULL;
    if (r->poll_init) {
        uv_poll_stop(&r->poll);
        uv_close((uv_handle_t *)&r->poll, on_poll_closed);
        r->poll_init = r->poll_active = false;
    }
    int status = r->status ? r->status : 500;
    if (aborted && r->job) status = 499; /* nginx's "client closed request" */
    if (r->status || r->job) {
        srv_metrics_request(r->route, status);
        double dt = srv_now() - r->t_start;
        if (r->job) srv_metrics_duration(dt);
        if (s->cfg.access_log) {
            int comp = 0;
            for (int c = 0; r->ch && c < r->n_choices; c++) comp += r->ch[c].n_tokens;
            struct srv_access a = {r->client,        r->method, r->path, status,
                                   r->prompt_tokens, comp,      dt,      r->id[0] ? r->id : NULL};
            srv_log_access(&a);
        }
    }
    r->conn = NULL;
    r->suspended = false;
    req_unref(r);
}

/* ---- MHD in the uv loop ---- */

static void on_mhd_timer(uv_timer_t *t) {
    srv_http_kick(t->data);
}

static void on_mhd_poll(uv_poll_t *p, int status, int events) {
    (void)status;
    (void)events;
    srv_http_kick(p->data);
}

/* An idle engine whose wake-up a submission deferred (api.c) is woken once the connections
 * opened with it have sent their requests too, or after WAKE_WAIT_MS at the latest. */
#define WAKE_WAIT_MS 1

static void wake_engine_now(struct srv_server *s) {
    s->wake_engine = false;
    uv_timer_stop(&s->wake_timer);
    if (s->sched) srv_sched_wake(s->sched);
}

static void on_wake_timer(uv_timer_t *t) {
    struct srv_server *s = t->data;
    if (s->wake_engine) wake_engine_now(s);
}

void srv_http_kick(struct srv_server *s) {
    if (!s->mhd) return;
    MHD_run(s->mhd);
    if (s->wake_engine) {
        if (!srv_http_more_arriving(s))
            wake_engine_now(s);
        else if (!uv_is_active((uv_handle_t *)&s->wake_timer))
            uv_timer_start(&s->wake_timer, on_wake_timer, WAKE_WAIT_MS, 0);
    }
    MHD_UNSIGNED_LONG_LONG to;
    if (MHD_get_timeout(s->mhd, &to) == MHD_YES)
        uv_timer_start(&s->mhd_timer, on_mhd_timer, to, 0);
    else
        uv_timer_stop(&s->mhd_timer);
}

/* Percent-decoding of the URL path, in place, except %00: a NUL would cut the path short and
 * make "/v1/models%00" look like "/v1/models", so it stays encoded (and matches no route). */
static size_t unescape(void *cls, struct MHD_Connection *c, char *s) {
    (void)cls;
    (void)c;
    char *w = s;
    for (const char *r = s; *r; r++) {
        if (r[0] == '%' && isxdigit((unsigned char)r[1]) && isxdigit((unsigned char)r[2])) {
            char hex[3] = {r[1], r[2], 0};
            char v = (char)strtol(hex, NULL, 16);
            if (v != 0) {
                *w++ = v;
                r += 2;
                continue;
            }
        }
        *w++ = *r;
    }
    *w = 0;
    return (size_t)(w - s);
}

static void mhd_log(void *cls, const char *fmt, va_list ap) {
    char msg[512];
    (void)cls;
    vsnprintf(msg, sizeof(msg), fmt, ap);
    size_t n = strlen(msg);
    while (n && msg[n - 1] == '\n') msg[--n] = 0;
    srv_log(SRV_LOG_DEBUG, "http: %s", msg);
}

int srv_http_start(struct srv_server *s, char *err, size_t errlen) {
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE};
    struct addrinfo *ai = NULL;
    const char *host = s->cfg.host;
    char h6[256];
    size_t hl = strlen(host);
    if (hl > 2 && host[0] == '[' && host[hl - 1] == ']' && hl < sizeof(h6)) {
        memcpy(h6, host + 1, hl - 2);
        h6[hl - 2] = 0;
        host = h6;
    }
    int gai = getaddrinfo(host, NULL, &hints, &ai);
    if (gai || !ai) {
        snprintf(err, errlen, "host: cannot resolve '%s': %s", s->cfg.host, gai_strerror(gai));
        return ENG_EINVAL;
    }
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    memcpy(&ss, ai->ai_addr, ai->ai_addrlen);
    bool v6 = ai->ai_family == AF_INET6;
    freeaddrinfo(ai);
    if (v6)
        ((struct sockaddr_in6 *)&ss)->sin6_port = htons((uint16_t)s->cfg.port);
    else
        ((struct sockaddr_in *)&ss)->sin_port = htons((uint16_t)s->cfg.port);

    unsigned flags = MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;
    if (v6) flags |= MHD_USE_IPv6;
    s->mhd =
        MHD_start_daemon(flags, (uint16_t)s->cfg.port, NULL, NULL, on_request, s,
                         MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss, MHD_OPTION_NOTIFY_COMPLETED,
                         on_completed, s, MHD_OPTION_NOTIFY_CONNECTION, on_connection, s,
                         MHD_OPTION_CONNECTION_LIMIT, (unsigned)s->cfg.max_connections,
                         MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)(s->cfg.idle_timeout + 0.999),
                         MHD_OPTION_EXTERNAL_LOGGER, mhd_log, s, MHD_OPTION_UNESCAPE_CALLBACK,
                         unescape, s, MHD_OPTION_LISTEN_BACKLOG_SIZE, 128u, MHD_OPTION_END);
    if (!s->mhd) {
        snprintf(err, errlen, "cannot listen on %s port %ld (address in use, or not permitted)",
                 s->cfg.host, s->cfg.port);
        return ENG_EIO;
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(s->mhd, MHD_DAEMON_INFO_BIND_PORT);
    s->port = di ? di->port : (int)s->cfg.port;
    snprintf(s->url, sizeof(s->url), "http://%s%s%s:%d", v6 && s->cfg.host[0] != '[' ? "[" : "",
             s->cfg.host, v6 && s->cfg.host[0] != '[' ? "]" : "", s->port);
    di = MHD_get_daemon_info(s->mhd, MHD_DAEMON_INFO_EPOLL_FD);
    if (!di) {
        snprintf(err, errlen, "libmicrohttpd has no epoll support");
        MHD_stop_daemon(s->mhd);
        s->mhd = NULL;
        return ENG_EUNSUPPORTED;
    }
    uv_poll_init(s->loop, &s->mhd_poll, di->epoll_fd);
    s->mhd_poll.data = s;
    uv_poll_start(&s->mhd_poll, UV_READABLE, on_mhd_poll);
    uv_timer_init(s->loop, &s->mhd_timer);
    s->mhd_timer.data = s;
    uv_timer_init(s->loop, &s->wake_timer);
    s->wake_timer.data = s;
    srv_http_kick(s);
    return 0;
}

void srv_http_stop(struct srv_server *s) {
    if (!s->mhd) return;
    /* MHD must not be stopped with suspended connections. */
    for (struct srv_req *r = s->reqs; r; r = r->next) {
        r->client_gone = true;
        srv_req_resume(r);
    }
    MHD_run(s->mhd);
    if (s->wake_engine) wake_engine_now(s);
    uv_poll_stop(&s->mhd_poll);
    uv_timer_stop(&s->mhd_timer);
    MHD_stop_daemon(s->mhd);
    s->mhd = NULL;
}
