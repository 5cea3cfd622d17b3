/*
 * metrics.c — counters, gauges and histograms of the daemon, rendered in the Prometheus text
 * exposition format for GET /metrics. Both threads update them under one mutex (updates are a
 * few per token, far below contention). Labels have fixed values (routes are bucketed), so a
 * client cannot grow the metric set.
 */
#include "internal.h"

#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define N_STATUS 16

/* Latency histogram buckets, seconds. */
static const double ttft_bounds[] = {0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60};
static const double itl_bounds[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                    0.1,   0.25,   0.5,   1,    2.5};
static const double dur_bounds[] = {0.01, 0.05, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300};
/* Sequences in one engine step (the batch), counts. */
static const double batch_bounds[] = {1, 2, 4, 8, 16, 32, 64, 128, 256};
#define N_TTFT  (sizeof(ttft_bounds) / sizeof(ttft_bounds[0]))
#define N_ITL   (sizeof(itl_bounds) / sizeof(itl_bounds[0]))
#define N_DUR   (sizeof(dur_bounds) / sizeof(dur_bounds[0]))
#define N_BATCH (sizeof(batch_bounds) / sizeof(batch_bounds[0]))

struct hist {
    uint64_t buckets[16]; /* cumulative counts are computed at render time */
    uint64_t count;
    double sum;
};

static struct {
    pthread_mutex_t mu;
    struct {
        int status;
        uint64_t n;
    } requests[SRV_ROUTE_COUNT][N_STATUS];
    uint64_t prompt_tokens, generated_tokens, cancelled, rejected, wakeups;
    struct hist ttft, itl, dur, batch;
    int batch_max; /* most sequences in one step since start */
    int queue, active, slots;
    bool loaded;
    double start;
} m = {.mu = PTHREAD_MUTEX_INITIALIZER};

static const char *const route_labels[] = {
    "/v1/chat/completions",
    "/v1/completions",
    "/v1/models",
    "/v1/models/{id}",
    "/health",
    "/metrics",
    "/tokenize",
    "/detokenize",
    "other",
};

const char *srv_route_label(enum srv_route r) {
    return r < SRV_ROUTE_COUNT ? route_labels[r] : "other";
}

void srv_metrics_request(enum srv_route route, int status) {
    if (route >= SRV_ROUTE_COUNT) route = SRV_ROUTE_OTHER;
    pthread_mutex_lock(&m.mu);
    for (int i = 0; i < N_STATUS; i++) {
        if (m.requests[route][i].status == status || m.requests[route][i].status == 0) {
            m.requests[route][i].status = status;
            m.requests[route][i].n++;
            break;
        }
    }
    pthread_mutex_unlock(&m.mu);
}

void srv_metrics_tokens(int prompt, int generated) {
    pthread_mutex_lock(&m.mu);
    m.prompt_tokens += (uint64_t)prompt;
    m.generated_tokens += (uint64_t)generated;
    pthread_mutex_unlock(&m.mu);
}

void srv_metrics_cancelled(void) {
    pthread_mutex_lock(&m.mu);
    m.cancelled++;
    pthread_mutex_unlock(&m.mu);
}

uint64_t srv_metrics_cancelled_count(void) {
    pthread_mutex_lock(&m.mu);
    uint64_t n = m.cancelled;
    pthread_mutex_unlock(&m.mu);
    return n;
}

void srv_metrics_rejected(void) {
    pthread_mutex_lock(&m.mu);
    m.rejected++;
    pthread_mutex_unlock(&m.mu);
}

void srv_metrics_wakeup(void) {
    pthread_mutex_lock(&m.mu);
    m.wakeups++;
    pthread_mutex_unlock(&m.mu);
}

static void observe(struct hist *h, const double *bounds, size_t nb, double v) {
    pthread_mutex_lock(&m.mu);
    size_t i = 0;
    while (i < nb && v > bounds[i]) i++;
    h->buckets[i]++; /* i == nb: only +Inf */
    h->count++;
    h->sum += v;
    pthread_mutex_unlock(&m.mu);
}

void srv_metrics_ttft(double s) {
    observe(&m.ttft, ttft_bounds, N_TTFT, s);
}
void srv_metrics_itl(double s) {
    observe(&m.itl, itl_bounds, N_ITL, s);
}
void srv_metrics_duration(double s) {
    observe(&m.dur, dur_bounds, N_DUR, s);
}

void srv_metrics_step(int sequences) {
    observe(&m.batch, batch_bounds, N_BATCH, sequences);
    pthread_mutex_lock(&m.mu);
    if (sequences > m.batch_max) m.batch_max = sequences;
    pthread_mutex_unlock(&m.mu);
}

void srv_metrics_set_queue(int depth) {
    pthread_mutex_lock(&m.mu);
    m.queue = depth;
    pthread_mutex_unlock(&m.mu);
}

void srv_metrics_set_active(int in_use, int total) {
    pthread_mutex_lock(&m.mu);
    m.active = in_use;
    m.slots = total;
    pthread_mutex_unlock(&m.mu);
}

void srv_metrics_set_loaded(bool loaded) {
    pthread_mutex_lock(&m.mu);
    m.loaded = loaded;
    if (m.start == 0) m.start = srv_now();
    pthread_mutex_unlock(&m.mu);
}

static long rss_bytes(void) {
    FILE *f = fopen("/proc/self/statm", "r");
    long pages = 0, rss = 0;
    if (!f) return 0;
    if (fscanf(f, "%ld %ld", &pages, &rss) != 2) rss = 0;
    fclose(f);
    return rss * sysconf(_SC_PAGESIZE);
}

static void render_hist(struct srv_buf *b, const char *name, const char *help, const struct hist *h,
                        const double *bounds, size_t nb) {
    srv_buf_printf(b, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
    uint64_t cum = 0;
    for (size_t i = 0; i < nb; i++) {
        cum += h->buckets[i];
        srv_buf_printf(b, "%s_bucket{le=\"%g\"} %llu\n", name, bounds[i], (unsigned long long)cum);
    }
    srv_buf_printf(b, "%s_bucket{le=\"+Inf\"} %llu\n%s_sum %.6f\n%s_count %llu\n", name,
                   (unsigned long long)h->count, name, h->sum, name, (unsigned long long)h->count);
}

int srv_metrics_render(struct srv_buf *b) {
    pthread_mutex_lock(&m.mu);
    srv_buf_printf(b, "# HELP edgellm_requests_total HTTP requests by endpoint and status.\n"
                      "# TYPE edgellm_requests_total counter\n");
    for (int r = 0; r < SRV_ROUTE_COUNT; r++)
        for (int i = 0; i < N_STATUS && m.requests[r][i].status; i++)
            srv_buf_printf(b, "edgellm_requests_total{endpoint=\"%s\",status=\"%d\"} %llu\n",
                           route_labels[r], m.requests[r][i].status,
                           (unsigned long long)m.requests[r][i].n);
    srv_buf_printf(b,
                   "# HELP edgellm_prompt_tokens_total Prompt tokens processed.\n"
                   "# TYPE edgellm_prompt_tokens_total counter\n"
                   "edgellm_prompt_tokens_total %llu\n"
                   "# HELP edgellm_generated_tokens_total Tokens generated.\n"
                   "# TYPE edgellm_generated_tokens_total counter\n"
                   "edgellm_generated_tokens_total %llu\n"
                   "# HELP edgellm_requests_cancelled_total Generations cancelled (client gone, "
                   "deadline, shutdown).\n"
                   "# TYPE edgellm_requests_cancelled_total counter\n"
                   "edgellm_requests_cancelled_total %llu\n"
                   "# HELP edgellm_requests_rejected_total Requests refused because the queue was "
                   "full.\n"
                   "# TYPE edgellm_requests_rejected_total counter\n"
                   "edgellm_requests_rejected_total %llu\n"
                   "# HELP edgellm_engine_wakeups_total Times the engine woke the HTTP loop to "
                   "hand over output (a stream's first token, at most one per stream_interval "
                   "while streams run, a request's end; one wake-up serves every request that "
                   "has output).\n"
                   "# TYPE edgellm_engine_wakeups_total counter\n"
                   "edgellm_engine_wakeups_total %llu\n"
                   "# HELP edgellm_queue_depth Requests waiting for a slot.\n"
                   "# TYPE edgellm_queue_depth gauge\n"
                   "edgellm_queue_depth %d\n"
                   "# HELP edgellm_slots_active Sequence slots in use.\n"
                   "# TYPE edgellm_slots_active gauge\n"
                   "edgellm_slots_active %d\n"
                   "# HELP edgellm_slots Sequence slots configured.\n"
                   "# TYPE edgellm_slots gauge\n"
                   "edgellm_slots %d\n"
                   "# HELP edgellm_model_loaded 1 once the model is loaded.\n"
                   "# TYPE edgellm_model_loaded gauge\n"
                   "edgellm_model_loaded %d\n",
                   (unsigned long long)m.prompt_tokens, (unsigned long long)m.generated_tokens,
                   (unsigned long long)m.cancelled, (unsigned long long)m.rejected,
                   (unsigned long long)m.wakeups, m.queue, m.active, m.slots, m.loaded ? 1 : 0);
    render_hist(b, "edgellm_time_to_first_token_seconds",
                "Seconds from request arrival to its first generated token.", &m.ttft, ttft_bounds,
                N_TTFT);
    render_hist(b, "edgellm_inter_token_latency_seconds",
                "Seconds between consecutive tokens of one sequence.", &m.itl, itl_bounds, N_ITL);
    render_hist(b, "edgellm_request_duration_seconds",
                "Seconds from arrival to the end of a generation request.", &m.dur, dur_bounds,
                N_DUR);
    render_hist(b, "edgellm_batch_sequences",
                "Sequences (decoding or prefilling) in one engine step: one pass over the weights.",
                &m.batch, batch_bounds, N_BATCH);
    srv_buf_printf(b,
                   "# HELP edgellm_batch_sequences_max Most sequences in one engine step since "
                   "start.\n"
                   "# TYPE edgellm_batch_sequences_max gauge\n"
                   "edgellm_batch_sequences_max %d\n",
                   m.batch_max);
    pthread_mutex_unlock(&m.mu);
    return srv_buf_printf(b,
                          "# HELP process_resident_memory_bytes Resident memory size in bytes.\n"
                          "# TYPE process_resident_memory_bytes gauge\n"
                          "process_resident_memory_bytes %ld\n",
                          rss_bytes());
}
