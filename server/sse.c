/*
 * sse.c — growable byte buffers and Server-Sent Events framing as OpenAI streams use it:
 * "data: <compact json>\n\n" per event, "data: [DONE]\n\n" at the end, ": text\n\n" comments as
 * keep-alives. It does not decide what goes into events (response.c does).
 */
#include "server.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

/* Makes room for n more bytes plus a NUL. */
static int reserve(struct srv_buf *b, size_t n) {
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1) cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) return ENG_ENOMEM;
        b->p = p;
        b->cap = cap;
    }
    return 0;
}

int srv_buf_append(struct srv_buf *b, const void *data, size_t n) {
    if (reserve(b, n)) return ENG_ENOMEM;
    if (n) memcpy(b->p + b->len, data, n);
    b->len += n;
    b->p[b->len] = 0;
    return 0;
}

int srv_buf_printf(struct srv_buf *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) return ENG_EINVAL;
    if (reserve(b, (size_t)n)) return ENG_ENOMEM;
    va_start(ap, fmt);
    vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return 0;
}

void srv_buf_consume(struct srv_buf *b, size_t n) {
    if (n >= b->len) {
        b->len = 0;
    } else {
        memmove(b->p, b->p + n, b->len - n);
        b->len -= n;
    }
    if (b->p) b->p[b->len] = 0;
}

void srv_buf_free(struct srv_buf *b) {
    free(b->p);
    *b = (struct srv_buf){0};
}

/* Dump callback for json_dump_callback: appends straight into the buffer. */
static int dump_cb(const char *buf, size_t size, void *data) {
    return srv_buf_append(data, buf, size) ? -1 : 0;
}

int srv_sse_json(struct srv_buf *b, const json_t *json) {
    size_t mark = b->len;
    /* JSON_COMPACT output never contains a newline, so one data: line carries the event. */
    if (srv_buf_append(b, "data: ", 6) ||
        json_dump_callback(json, dump_cb, b, JSON_COMPACT | JSON_REAL_PRECISION(9)) ||
        srv_buf_append(b, "\n\n", 2)) {
        b->len = mark;
        if (b->p) b->p[mark] = 0;
        return ENG_ENOMEM;
    }
    return 0;
}

int srv_sse_done(struct srv_buf *b) {
    return srv_buf_append(b, "data: [DONE]\n\n", 14);
}

int srv_sse_comment(struct srv_buf *b, const char *text) {
    size_t mark = b->len;
    if (srv_buf_append(b, ": ", 2)) return ENG_ENOMEM;
    for (const char *p = text; *p; p++) {
        char c = *p == '\n' || *p == '\r' ? ' ' : *p;
        if (srv_buf_append(b, &c, 1)) {
            b->len = mark;
            return ENG_ENOMEM;
        }
    }
    return srv_buf_append(b, "\n\n", 2);
}
