/*
 * sse_client.c — the streaming client of make bench-server: N connections to edgellmd post the
 * same streamed completion at the same moment, and one thread reads them all with poll(2),
 * noting when each SSE event arrives. It parses no JSON: an event whose data holds
 * "\"choices\":[{" is a token's chunk, the one holding "\"usage\":{" gives the completion
 * tokens. A client of a few microseconds per event leaves the two cores of a small machine to
 * the daemon (the Python client it replaces spent 70-90 µs per event, on the same cores).
 *
 * usage: sse_client PORT N BODY_FILE [ROUNDS]
 * ROUNDS (default 1) rounds of the N streams run one after another from this process, each on
 * new connections, the next sent as soon as the last stream of the one before has ended: as an
 * application's requests follow each other, and as `edgellm bench` runs its repetitions back to
 * back. (A client process started for each request runs, with whatever starts it, on the cores
 * the daemon decodes on, between one request and the next.)
 * Prints one JSON object per stream: {"round": r, "stream": i, "send": s, "first": s,
 * "last": s, "end": s, "events": n, "tokens": n} (seconds on CLOCK_MONOTONIC), or
 * {"round": r, "stream": i, "error": "..."}. Exit status 0 when every stream ended with a usage
 * event, 1 otherwise, 2 on bad arguments.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_STREAMS 256
#define BUF_SIZE    (1 << 16)

struct stream {
    int fd;
    char *raw; /* received bytes not yet de-chunked */
    size_t raw_len;
    char *buf; /* de-chunked body bytes not yet parsed (a partial event) */
    size_t len;
    long chunk_left; /* body bytes left in the current chunk; -1: a size line is next */
    bool header_done, done;
    double send, first, last, end;
    long events, tokens;
    const char *error;
};

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int connect_to(int port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return -1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static bool send_all(int fd, const char *p, size_t n) {
    while (n > 0) {
        ssize_t w = send(fd, p, n, 0);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return false;
        p += w, n -= (size_t)w;
    }
    return true;
}

/* One complete SSE event (without its blank line) arrived at time t. */
static void on_event(struct stream *s, const char *ev, size_t n, double t) {
    if (n < 6 || memcmp(ev, "data: ", 6) != 0) return; /* a comment (keep-alive) */
    char tmp[256];
    size_t k = n < sizeof(tmp) - 1 ? n : sizeof(tmp) - 1; /* the markers sit near the start */
    memcpy(tmp, ev, k);
    tmp[k] = 0;
    if (!strcmp(tmp, "data: [DONE]")) {
        s->done = true;
        return;
    }
    const char *u = strstr(tmp, "\"usage\":{");
    if (!u) { /* usage may come after a long text: search the whole event */
        char *whole = strndup(ev, n);
        if (whole) {
            const char *w = strstr(whole, "\"usage\":{");
            const char *c = w ? strstr(w, "\"completion_tokens\":") : NULL;
            if (c) s->tokens = strtol(c + 20, NULL, 10);
            free(whole);
        }
    } else {
        const char *c = strstr(u, "\"completion_tokens\":");
        if (c) s->tokens = strtol(c + 20, NULL, 10);
    }
    if (strstr(tmp, "\"choices\":[{")) { /* a token's chunk (usage-only chunks have []) */
        if (!s->events) s->first = t;
        s->last = t;
        s->events++;
    }
}

/* The complete events in s->buf, then keep the partial rest. */
static void scan_events(struct stream *s, double t) {
    size_t off = 0;
    for (;;) {
        char *e = memmem(s->buf + off, s->len - off, "\n\n", 2);
        if (!e) break;
        on_event(s, s->buf + off, (size_t)(e - (s->buf + off)), t);
        off = (size_t)(e - s->buf) + 2;
    }
    memmove(s->buf, s->buf + off, s->len - off);
    s->len -= off;
}

/* Consume s->raw: the HTTP header first, then the chunked body ("<hex size>\r\n<data>\r\n",
 * size 0 ends it) de-chunked into s->buf, whose events are then scanned. */
static void parse(struct stream *s, double t) {
    size_t off = 0;
    if (!s->header_done) {
        char *e = memmem(s->raw, s->raw_len, "\r\n\r\n", 4);
        if (!e) return;
        if (s->raw_len < 12 || memcmp(s->raw + 9, "200", 3) != 0) {
            s->error = "response status is not 200";
            s->done = true;
            return;
        }
        if (!memmem(s->raw, (size_t)(e - s->raw), "chunked", 7)) {
            s->error = "the response is not chunked";
            s->done = true;
            return;
        }
        s->header_done = true;
        s->chunk_left = -1;
        off = (size_t)(e - s->raw) + 4;
    }
    while (off < s->raw_len && !s->done) {
        if (s->chunk_left < 0) { /* a size line, after the previous chunk's CRLF */
            char *nl = memchr(s->raw + off, '\n', s->raw_len - off);
            if (!nl) break;
            if (s->raw[off] == '\r' || s->raw[off] == '\n') { /* the CRLF after a chunk's data */
                off = (size_t)(nl - s->raw) + 1;
                continue;
            }
            char *end; /* (strtol would skip that CRLF as white space) */
            long size = strtol(s->raw + off, &end, 16);
            if (end == s->raw + off || size < 0) {
                s->error = "bad chunk size line";
                s->done = true;
                break;
            }
            off = (size_t)(nl - s->raw) + 1;
            if (size == 0) {
                s->done = true;
                break;
            }
            s->chunk_left = size;
            continue;
        }
        size_t k =
            s->raw_len - off < (size_t)s->chunk_left ? s->raw_len - off : (size_t)s->chunk_left;
        if (s->len + k > BUF_SIZE) {
            s->error = "event too large";
            s->done = true;
            break;
        }
        memcpy(s->buf + s->len, s->raw + off, k);
        s->len += k, off += k, s->chunk_left -= (long)k;
        if (s->chunk_left == 0) s->chunk_left = -1;
    }
    memmove(s->raw, s->raw + off, s->raw_len - off);
    s->raw_len -= off;
    scan_events(s, t);
}

/* One round: n streams posting req at the same moment, read until each has ended; prints a line
 * per stream. Returns 0 when every stream ended with a usage event. */
static int run_round(int port, int n, const char *req, size_t rlen, int round) {
    static struct stream st[MAX_STREAMS];
    struct pollfd pf[MAX_STREAMS];
    memset(st, 0, sizeof(st));
    for (int i = 0; i < n; i++) { /* connect first, so that the requests leave together */
        st[i].fd = connect_to(port);
        st[i].buf = malloc(BUF_SIZE);
        st[i].raw = malloc(BUF_SIZE);
        if (st[i].fd < 0 || !st[i].buf || !st[i].raw)
            st[i].error = "connect failed", st[i].done = true;
    }
    for (int i = 0; i < n; i++) {
        if (st[i].done) continue;
        st[i].send = now_s();
        if (!send_all(st[i].fd, req, rlen)) st[i].error = "send failed", st[i].done = true;
    }
    int open_n = 0;
    for (int i = 0; i < n; i++) open_n += !st[i].done;
    while (open_n > 0) {
        int m = 0, idx[MAX_STREAMS];
        for (int i = 0; i < n; i++)
            if (!st[i].done) pf[m] = (struct pollfd){st[i].fd, POLLIN, 0}, idx[m++] = i;
        if (poll(pf, (nfds_t)m, 600000) <= 0) {
            for (int k = 0; k < m; k++) st[idx[k]].error = "timeout", st[idx[k]].done = true;
            break;
        }
        for (int k = 0; k < m; k++) {
            if (!pf[k].revents) continue;
            struct stream *s = &st[idx[k]];
            if (s->raw_len == BUF_SIZE) { /* a size line longer than the buffer */
                s->error = "bad chunk framing", s->done = true, open_n--;
                continue;
            }
            ssize_t r = recv(s->fd, s->raw + s->raw_len, BUF_SIZE - s->raw_len, 0);
            double t = now_s();
            if (r < 0 && errno == EINTR) continue;
            if (r <= 0) { /* the server closed the connection: the end of the response */
                s->end = t, s->done = true, open_n--;
                if (!s->tokens && !s->error) s->error = "the stream ended without usage";
                continue;
            }
            s->raw_len += (size_t)r;
            bool was_done = s->done;
            parse(s, t);
            if (s->done && !was_done) s->end = t, open_n--;
        }
    }
    int bad = 0;
    for (int i = 0; i < n; i++) {
        if (st[i].fd >= 0) close(st[i].fd);
        free(st[i].buf);
        free(st[i].raw);
        if (st[i].error || !st[i].events) {
            printf("{\"round\": %d, \"stream\": %d, \"error\": \"%s\"}\n", round, i,
                   st[i].error ? st[i].error : "no token chunks");
            bad = 1;
            continue;
        }
        printf("{\"round\": %d, \"stream\": %d, \"send\": %.6f, \"first\": %.6f, \"last\": %.6f, "
               "\"end\": %.6f, "
               "\"events\": %ld, \"tokens\": %ld}\n",
               round, i, st[i].send, st[i].first, st[i].last, st[i].end, st[i].events,
               st[i].tokens);
    }
    return bad;
}

int main(int argc, char **argv) {
    if (argc != 4 && argc != 5) {
        fprintf(stderr, "usage: sse_client PORT N BODY_FILE [ROUNDS]\n");
        return 2;
    }
    int port = atoi(argv[1]), n = atoi(argv[2]), rounds = argc == 5 ? atoi(argv[4]) : 1;
    if (port <= 0 || port > 65535 || n < 1 || n > MAX_STREAMS || rounds < 1) {
        fprintf(stderr, "sse_client: bad port, stream count or rounds\n");
        return 2;
    }
    FILE *f = fopen(argv[3], "rb");
    if (!f) {
        perror(argv[3]);
        return 2;
    }
    static char body[1 << 16];
    size_t blen = fread(body, 1, sizeof(body), f);
    fclose(f);
    char req[(1 << 16) + 512];
    int rlen = snprintf(req, sizeof(req),
                        "POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
                        "Content-Type: application/json\r\nContent-Length: %zu\r\n"
                        "Connection: close\r\n\r\n%.*s",
                        port, blen, (int)blen, body);
    int bad = 0;
    for (int r = 0; r < rounds; r++) {
        bad |= run_round(port, n, req, (size_t)rlen, r);
        fflush(stdout);
    }
    return bad;
}
