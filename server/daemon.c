/*
 * daemon.c — edgellmd's life cycle on the loop thread: configuration, the bundled default model,
 * start of the HTTP server and the engine thread, the wake-up from the engine, systemd
 * notifications and watchdog, SIGHUP reloads of live keys, and the SIGTERM drain.
 *
 * It does not handle requests (http.c, api.c) or run the model (sched.c).
 */
#include "internal.h"

#include <errno.h>
#include <limits.h>
#include <microhttpd.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- the model file ---- */

/* Finds the bundled default model next to the binary: installed (<prefix>/bin/edgellmd →
 * <prefix>/share/edgellm/default.gguf) or in a build tree (build[/sub]/edgellmd →
 * models/default.gguf). */
static int default_model(char *out, size_t n, char *tried, size_t tn) {
    char exe[PATH_MAX];
    ssize_t len = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    if (len <= 0) return -1;
    exe[len] = 0;
    char *slash = strrchr(exe, '/');
    if (!slash) return -1;
    *slash = 0;
    static const char *const rel[] = {"/../share/edgellm/default.gguf", "/../models/default.gguf",
                                      "/../../models/default.gguf",
                                      "/../../../models/default.gguf"};
    size_t used = 0;
    tried[0] = 0;
    for (size_t i = 0; i < sizeof(rel) / sizeof(rel[0]); i++) {
        char p[PATH_MAX + 64];
        snprintf(p, sizeof(p), "%s%s", exe, rel[i]);
        char real[PATH_MAX];
        if (realpath(p, real) && access(real, R_OK) == 0) {
            snprintf(out, n, "%s", real);
            return 0;
        }
        used += (size_t)snprintf(tried + used, used < tn ? tn - used : 0, "%s%s", i ? ", " : "", p);
        if (used >= tn) used = tn - 1;
    }
    return -1;
}

static int resolve_model(struct srv_server *s, char *err, size_t errlen) {
    if (s->cfg.model[0]) {
        if (access(s->cfg.model, R_OK) != 0) {
            snprintf(err, errlen, "model: cannot read '%s': %s", s->cfg.model, strerror(errno));
            return ENG_EIO;
        }
        snprintf(s->model_path, sizeof(s->model_path), "%s", s->cfg.model);
    } else {
        char tried[2048];
        if (default_model(s->model_path, sizeof(s->model_path), tried, sizeof(tried))) {
            snprintf(err, errlen,
                     "no model configured and the bundled default model (default.gguf) was not "
                     "found (looked at %.1500s); pass --model FILE.gguf or set model in the "
                     "config",
                     tried);
            return ENG_ENOTFOUND;
        }
    }
    if (s->cfg.model_name[0]) {
        snprintf(s->model_id, sizeof(s->model_id), "%.255s", s->cfg.model_name);
    } else {
        const char *b = strrchr(s->model_path, '/');
        snprintf(s->model_id, sizeof(s->model_id), "%.255s", b ? b + 1 : s->model_path);
        size_t n = strlen(s->model_id);
        if (n > 5 && !strcmp(s->model_id + n - 5, ".gguf")) s->model_id[n - 5] = 0;
    }
    struct stat st;
    s->model_created = stat(s->model_path, &st) == 0 ? (long long)st.st_mtime : 0;
    return 0;
}

/* ---- stopping ---- */

static void close_handle(uv_handle_t *h) {
    if (h->loop && !uv_is_closing(h)) uv_close(h, NULL);
}

static void stop_now(struct srv_server *s) {
    if (s->stopping) return;
    s->stopping = true;
    srv_notify("STOPPING=1");
    srv_http_stop(s);
    if (s->sched) srv_sched_stop(s->sched);
    s->sched = NULL;
    close_handle((uv_handle_t *)&s->mhd_poll);
    close_handle((uv_handle_t *)&s->mhd_timer);
    close_handle((uv_handle_t *)&s->wake_timer);
    close_handle((uv_handle_t *)&s->tick);
    close_handle((uv_handle_t *)&s->watchdog);
    srv_wake_close(&s->wake);
    close_handle((uv_handle_t *)&s->sig_term);
    close_handle((uv_handle_t *)&s->sig_int);
    close_handle((uv_handle_t *)&s->sig_hup);
}

static void check_drain(struct srv_server *s) {
    if (!s->draining || s->stopping) return;
    double now = srv_now();
    if (s->n_reqs == 0) {
        srv_log(SRV_LOG_INFO, "drained; exiting");
        stop_now(s);
        return;
    }
    if (!s->drain_cancelled && now >= s->drain_deadline) {
        srv_log(SRV_LOG_WARN, "shutdown_grace over: cancelling %d request(s)", s->n_reqs);
        for (struct srv_req *r = s->reqs; r; r = r->next) srv_req_cancel(r);
        s->drain_cancelled = true;
        s->drain_deadline = now + 5;
    } else if (s->drain_cancelled && now >= s->drain_deadline) {
        stop_now(s);
    }
}

static void begin_drain(struct srv_server *s) {
    if (s->draining) {
        /* A second signal: stop without waiting. */
        for (struct srv_req *r = s->reqs; r; r = r->next) srv_req_cancel(r);
        s->drain_cancelled = true;
        s->drain_deadline = srv_now();
        check_drain(s);
        return;
    }
    s->draining = true;
    s->drain_deadline = srv_now() + s->cfg.shutdown_grace;
    srv_notify("STOPPING=1");
    srv_log(SRV_LOG_INFO, "stopping: no new connections, draining %d request(s) (at most %gs)",
            s->n_reqs, s->cfg.shutdown_grace);
    if (s->mhd) {
        MHD_socket fd = MHD_quiesce_daemon(s->mhd);
        if (fd != MHD_INVALID_SOCKET) close(fd);
    }
    check_drain(s);
}

/* ---- events ---- */

/* With the engine's threads placed on CPUs of their own (pin_threads), the loop thread keeps off
 * the engine thread's: on a CPU the engine does not use where the process has one, else on the
 * workers'. Each delivery wakes the loop, and the scheduler often ran it on the CPU of the thread
 * that woke it, the engine thread, which then waited while the loop sent; the workers can take
 * over the rows of a product but not the order of the pass, so they waited too. On a worker's
 * CPU, the engine thread takes over that worker's rows meanwhile. L110M Q4_0, one stream of
 * 128 tokens: the engine thread's time outside the passes 2.4 -> 1.1 ms per request (a timing
 * build of sched.c), its wait for a CPU 1.9-4.5 -> 0.9-1.6 ms (/proc schedstat); what the
 * client sees was even within this host's noise (two daemons alternated, both port orders: one
 * stream +2.7%, +4.0%, -4.2%, +0.9%; four streams +3.1%, -1.5%, -0.5%, -1.7%). */
static void place_loop(struct srv_server *s) {
    static int cpus[CPU_SETSIZE];
    int n = eng_ctx_cpus(srv_sched_ctx(s->sched), cpus, CPU_SETSIZE);
    cpu_set_t have, off_all, off_first;
    if (n <= 0 || pthread_getaffinity_np(pthread_self(), sizeof(have), &have) != 0) return;
    off_all = off_first = have;
    for (int i = 0; i < n && i < CPU_SETSIZE; i++) CPU_CLR(cpus[i], &off_all);
    CPU_CLR(cpus[0], &off_first);
    cpu_set_t *use = CPU_COUNT(&off_all) ? &off_all : CPU_COUNT(&off_first) ? &off_first : NULL;
    /* one CPU, a worker's: a worker's wake-up of the loop hands it over (wake.c) */
    if (use == &off_first && CPU_COUNT(use) == 1)
        for (int c = 0; c < CPU_SETSIZE; c++)
            if (CPU_ISSET(c, use)) srv_wake_set_handoff_cpu(&s->wake, c);
    if (!use || CPU_EQUAL(use, &have)) return;
    if (pthread_setaffinity_np(pthread_self(), sizeof(*use), use) != 0) {
        srv_wake_set_handoff_cpu(&s->wake, -1);
        srv_log(SRV_LOG_WARN, "cannot move the loop thread off the engine thread's CPU %d",
                cpus[0]);
        return;
    }
    char list[256]; /* ranges: "1", "1-3,6" */
    size_t used = 0;
    for (int c = 0; c < CPU_SETSIZE && used + 24 < sizeof(list); c++) {
        if (!CPU_ISSET(c, use)) continue;
        int last = c;
        while (last + 1 < CPU_SETSIZE && CPU_ISSET(last + 1, use)) last++;
        used += (size_t)(last > c ? snprintf(list + used, 24, "%s%d-%d", used ? "," : "", c, last)
                                  : snprintf(list + used, 24, "%s%d", used ? "," : "", c));
        c = last;
    }
    srv_log(SRV_LOG_INFO, "the loop thread runs on CPU %s, off the engine thread's CPU %d%s", list,
            cpus[0],
            srv_wake_hands_off(&s->wake) ? "; a worker there hands it the CPU when it wakes it"
                                         : "");
}

static void on_loaded(struct srv_server *s) {
    const struct eng_model *m = srv_sched_model(s->sched);
    const struct eng_gguf *g = eng_model_gguf(m);
    const char *tmpl = eng_gguf_get_str(g, "tokenizer.chat_template");
    eng_chat_template_parse(&s->chat_tmpl, tmpl);
    s->chat_family = s->chat_tmpl.family;
    if (tmpl && !s->chat_tmpl.known)
        srv_log(SRV_LOG_WARN, "unknown chat template in %s; using %s", s->model_path,
                eng_chat_family_name(s->chat_family));
    /* FNV-1a of what identifies the served weights. */
    uint64_t h = 1469598103934665603ull;
    char key[512];
    snprintf(key, sizeof(key), "%s|%zu|%lld", s->model_id, eng_gguf_file_size(g),
             (long long)eng_model_n_params(m));
    for (const char *p = key; *p; p++) h = (h ^ (unsigned char)*p) * 1099511628211ull;
    snprintf(s->fingerprint, sizeof(s->fingerprint), "fp_%010llx",
             (unsigned long long)(h & 0xffffffffffull));
    s->loaded = true;
    place_loop(s);
    const struct eng_hparams *hp = eng_model_hparams(m);
    srv_log(SRV_LOG_INFO,
            "model %s loaded (%s, %lld parameters, %d slots x %d tokens, %s KV cache, context "
            "up to %.0f MiB, taken as sequences fill the cache, chat template %s); serving at %s",
            s->model_id, eng_arch_name(hp->arch), (long long)eng_model_n_params(m),
            srv_sched_n_slots(s->sched), srv_sched_n_ctx(s->sched),
            eng_ctx_get_params(srv_sched_ctx(s->sched))->kv_f16 ? "fp16" : "f32",
            eng_ctx_memory_bytes(srv_sched_ctx(s->sched)) / 1048576.0,
            eng_chat_family_name(s->chat_family), s->url);
    char st[600];
    snprintf(st, sizeof(st), "READY=1\nSTATUS=serving %.255s at %.299s", s->model_id, s->url);
    srv_notify(st);
}

static void on_wake(struct srv_wake *w) {
    struct srv_server *s = w->data;
    if (s->stopping || !s->sched) return;
    enum srv_sched_state st = srv_sched_state(s->sched);
    if (!s->loaded && st == SRV_SCHED_READY) on_loaded(s);
    if (st == SRV_SCHED_FAILED) {
        srv_log(SRV_LOG_ERROR, "%s", srv_sched_error(s->sched));
        char msg[600];
        snprintf(msg, sizeof(msg), "STATUS=failed: %s", srv_sched_error(s->sched));
        srv_notify(msg);
        s->exit_code = 1;
        stop_now(s);
        return;
    }
    struct srv_job **jobs = NULL;
    int n = srv_sched_take_dirty(s->sched, &jobs);
    if (n > 0) srv_metrics_wakeup();
    for (int i = 0; i < n; i++) {
        struct srv_req *r = jobs[i]->req;
        if (r) {
            r->woken = true;
            srv_req_resume(r);
        }
        srv_job_unref(jobs[i]);
    }
    free(jobs);
    srv_http_kick(s);
    check_drain(s);
}

static void on_tick(uv_timer_t *t) {
    struct srv_server *s = t->data;
    double now = srv_now();
    /* Streams that have been quiet for a keep-alive interval get an SSE comment, so proxies and
     * clients do not time out while the request waits in the queue or in a long prefill. */
    bool woke = false;
    for (struct srv_req *r = s->reqs; r; r = r->next) {
        if (!r->stream || !r->suspended || r->finished) continue;
        if (now - r->last_send >= s->cfg.keepalive) {
            srv_sse_comment(&r->out, "keep-alive");
            r->last_send = now;
            srv_req_resume(r);
            woke = true;
        }
    }
    if (woke) srv_http_kick(s);
    check_drain(s);
}

static void on_watchdog(uv_timer_t *t) {
    (void)t;
    srv_notify("WATCHDOG=1");
}

static void reload(struct srv_server *s) {
    struct srv_config nc;
    char err[1024];
    enum cfg_action act;
    if (cfg_init(&nc)) return;
    struct srv_auth na = {0, NULL};
    if (cfg_load_all(&nc, s->argc, s->argv, s->envp, &act, err, sizeof(err)) ||
        srv_auth_load(&na, &nc, err, sizeof(err)) || cfg_check(&nc, na.n, err, sizeof(err))) {
        srv_log(SRV_LOG_ERROR, "reload: %s; keeping the running configuration", err);
        srv_auth_free(&na);
        cfg_free(&nc);
        return;
    }
    int n;
    const struct cfg_key *keys = cfg_keys(&n);
    for (int i = 0; i < n; i++) {
        const struct cfg_key *k = &keys[i];
        if (!cfg_differs(&s->cfg, &nc, k)) continue;
        if (k->flags & CFG_LIVE) {
            srv_log(SRV_LOG_INFO, "reload: %s changed", k->name);
            continue;
        }
        srv_log(SRV_LOG_WARN, "reload: %s changed but needs a restart; keeping the old value",
                k->name);
        char *old = cfg_value_text(&s->cfg, k);
        if (old) cfg_set(&nc, k, old, err, sizeof(err));
        free(old);
    }
    cfg_free(&s->cfg);
    s->cfg = nc;
    srv_auth_free(&s->auth);
    s->auth = na;
    srv_log_configure(s->cfg.log_format, s->cfg.log_level);
    if (s->sched) srv_sched_set_stream_interval(s->sched, s->cfg.stream_interval);
    srv_log(SRV_LOG_INFO, "configuration reloaded (%d API key(s))", s->auth.n);
}

static void on_signal(uv_signal_t *h, int signum) {
    struct srv_server *s = h->data;
    if (signum == SIGHUP) {
        srv_notify("RELOADING=1");
        reload(s);
        srv_notify("READY=1");
        return;
    }
    if (!s->loaded) {
        srv_log(SRV_LOG_INFO, "stopping before the model finished loading");
        stop_now(s);
        return;
    }
    begin_drain(s);
}

/* ---- main ---- */

int srv_main(int argc, char **argv, char **envp) {
    static struct srv_server server;
    struct srv_server *s = &server;
    char err[2048];
    enum cfg_action act;
    int rc = 2;
    signal(SIGPIPE, SIG_IGN);
    if (cfg_init(&s->cfg)) {
        fprintf(stderr, "edgellmd: out of memory\n");
        return 1;
    }
    s->argc = argc;
    s->argv = argv;
    s->envp = envp;
    if (cfg_load_all(&s->cfg, argc, argv, envp, &act, err, sizeof(err))) {
        fprintf(stderr, "edgellmd: %s\n", err);
        goto out_cfg;
    }
    if (act == CFG_HELP) {
        cfg_help(stdout, "edgellmd");
        rc = 0;
        goto out_cfg;
    }
    if (act == CFG_REFERENCE) {
        cfg_reference(stdout);
        rc = 0;
        goto out_cfg;
    }
    if (act == CFG_VERSION) {
        printf("edgellmd %s\n", SRV_VERSION);
        rc = 0;
        goto out_cfg;
    }
    srv_log_configure(s->cfg.log_format, s->cfg.log_level);
    if (srv_auth_load(&s->auth, &s->cfg, err, sizeof(err)) ||
        cfg_check(&s->cfg, s->auth.n, err, sizeof(err))) {
        fprintf(stderr, "edgellmd: %s\n", err);
        goto out_auth;
    }
    if (act == CFG_PRINT) {
        cfg_print(&s->cfg, stdout);
        rc = 0;
        goto out_auth;
    }
    rc = 1;
    if (resolve_model(s, err, sizeof(err))) {
        fprintf(stderr, "edgellmd: %s\n", err);
        goto out_auth;
    }

    s->loop = malloc(sizeof(uv_loop_t));
    if (!s->loop || uv_loop_init(s->loop)) {
        fprintf(stderr, "edgellmd: cannot create the event loop\n");
        free(s->loop);
        goto out_auth;
    }
    if (srv_wake_init(s->loop, &s->wake, on_wake, s)) {
        fprintf(stderr, "edgellmd: cannot create the engine wake-up: %s\n", strerror(errno));
        srv_wake_close(&s->wake);
        uv_run(s->loop, UV_RUN_DEFAULT);
        uv_loop_close(s->loop);
        free(s->loop);
        goto out_auth;
    }
    if (srv_http_start(s, err, sizeof(err))) {
        fprintf(stderr, "edgellmd: %s\n", err);
        srv_wake_close(&s->wake);
        uv_run(s->loop, UV_RUN_DEFAULT);
        goto out_loop;
    }
    srv_log(SRV_LOG_INFO, "edgellmd %s listening on %s; loading %s", SRV_VERSION, s->url,
            s->model_path);
    if (s->auth.n == 0 && !cfg_host_is_loopback(s->cfg.host))
        srv_log(SRV_LOG_WARN,
                "no API key and a non-loopback host: anyone who can reach %s can "
                "use the model (insecure_no_auth)",
                s->url);
    snprintf(err, sizeof(err), "STATUS=loading %.2000s", s->model_path);
    srv_notify(err);

    struct srv_sched_params sp = {
        .model_path = s->model_path,
        .threads = (int)s->cfg.threads,
        .slots = (int)s->cfg.slots,
        .ctx = (int)s->cfg.ctx,
        .batch = (int)s->cfg.batch,
        .prefill_chunk = (int)s->cfg.prefill_chunk,
        .mlock = s->cfg.mlock,
        .kv_f16 = s->cfg.kv_f16,
        .pin_threads = s->cfg.pin_threads,
        .interleave = s->cfg.interleave,
        .stream_interval = s->cfg.stream_interval,
    };
    uv_timer_init(s->loop, &s->tick);
    s->tick.data = s;
    uint64_t tick_ms = (uint64_t)(s->cfg.keepalive * 500);
    if (tick_ms < 20) tick_ms = 20;
    if (tick_ms > 500) tick_ms = 500;
    uv_timer_start(&s->tick, on_tick, tick_ms, tick_ms);
    uv_timer_init(s->loop, &s->watchdog);
    s->watchdog.data = s;
    double wd = srv_watchdog_interval();
    if (wd > 0) {
        uint64_t ms = (uint64_t)(wd * 500);
        uv_timer_start(&s->watchdog, on_watchdog, ms ? ms : 1, ms ? ms : 1);
    }
    uv_signal_t *sigs[] = {&s->sig_term, &s->sig_int, &s->sig_hup};
    int signums[] = {SIGTERM, SIGINT, SIGHUP};
    for (int i = 0; i < 3; i++) {
        uv_signal_init(s->loop, sigs[i]);
        sigs[i]->data = s;
        uv_signal_start(sigs[i], on_signal, signums[i]);
    }
    if (!(s->sched = srv_sched_start(&sp, &s->wake))) {
        srv_log(SRV_LOG_ERROR, "cannot start the engine thread");
        s->exit_code = 1;
        stop_now(s);
    }
    uv_run(s->loop, UV_RUN_DEFAULT);
    rc = s->exit_code;
out_loop:
    uv_loop_close(s->loop);
    free(s->loop);
out_auth:
    srv_auth_free(&s->auth);
out_cfg:
    cfg_free(&s->cfg);
    return rc;
}
