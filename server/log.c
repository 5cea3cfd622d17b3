/*
 * log.c — edgellmd's log lines on stderr (journald under systemd): plain text or JSON objects,
 * a level filter, the access-log line, and the monotonic clock the server uses. Each line is
 * written with one write(2), so lines from the loop and engine threads never interleave. It does
 * not rotate or open files.
 */
#include "internal.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static _Atomic int log_json;
static _Atomic int log_level = SRV_LOG_INFO;
static _Atomic int log_journal = -1; /* stderr is the journal: prefix <N> priorities */

static const char *const level_names[] = {"error", "warn", "info", "debug"};
static const int syslog_prio[] = {3, 4, 6, 7};

void srv_log_configure(const char *format, const char *level) {
    if (format) log_json = !strcmp(format, "json");
    for (int i = 0; level && i < 4; i++)
        if (!strcmp(level, level_names[i])) log_level = i;
}

static bool to_journal(void) {
    int j = log_journal;
    if (j < 0) {
        /* JOURNAL_STREAM is "dev:ino" of the journal's stream socket. */
        j = getenv("JOURNAL_STREAM") != NULL;
        log_journal = j;
    }
    return j;
}

static void timestamp(char *buf, size_t n) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    size_t k = strftime(buf, n, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf + k, n - k, ".%03ldZ", ts.tv_nsec / 1000000);
}

static void write_line(struct srv_buf *b) {
    if (!b->p) return;
    size_t off = 0;
    while (off < b->len) {
        ssize_t w = write(STDERR_FILENO, b->p + off, b->len - off);
        if (w <= 0) break;
        off += (size_t)w;
    }
}

/* JSON string escaping for log values (the text is sanitised to UTF-8 first). */
static void put_json_str(struct srv_buf *b, const char *s) {
    size_t n;
    char *clean = srv_utf8_sanitize(s, strlen(s), &n);
    json_t *j = clean ? json_stringn(clean, n) : NULL;
    char *d = j ? json_dumps(j, JSON_ENCODE_ANY) : NULL;
    srv_buf_append(b, d ? d : "\"\"", d ? strlen(d) : 2);
    free(d);
    json_decref(j);
    free(clean);
}

void srv_log(enum srv_log_level lvl, const char *fmt, ...) {
    if ((int)lvl > log_level) return;
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    struct srv_buf b = {0};
    char ts[40];
    timestamp(ts, sizeof(ts));
    if (log_json) {
        srv_buf_printf(&b, "{\"ts\":\"%s\",\"level\":\"%s\",\"msg\":", ts, level_names[lvl]);
        put_json_str(&b, msg);
        srv_buf_append(&b, "}\n", 2);
    } else if (to_journal()) {
        srv_buf_printf(&b, "<%d>%s\n", syslog_prio[lvl], msg);
    } else {
        srv_buf_printf(&b, "%s edgellmd %s: %s\n", ts, level_names[lvl], msg);
    }
    write_line(&b);
    srv_buf_free(&b);
}

void srv_log_access(const struct srv_access *a) {
    if (SRV_LOG_INFO > log_level) return;
    struct srv_buf b = {0};
    char ts[40];
    timestamp(ts, sizeof(ts));
    if (log_json) {
        srv_buf_printf(&b, "{\"ts\":\"%s\",\"level\":\"info\",\"msg\":\"access\",\"client\":", ts);
        put_json_str(&b, a->client ? a->client : "-");
        srv_buf_append(&b, ",\"method\":", 10);
        put_json_str(&b, a->method ? a->method : "-");
        srv_buf_append(&b, ",\"path\":", 8);
        put_json_str(&b, a->path ? a->path : "-");
        srv_buf_printf(&b,
                       ",\"status\":%d,\"prompt_tokens\":%d,\"completion_tokens\":%d,"
                       "\"duration_ms\":%.1f",
                       a->status, a->prompt_tokens, a->completion_tokens, a->seconds * 1e3);
        if (a->id) {
            srv_buf_append(&b, ",\"id\":", 6);
            put_json_str(&b, a->id);
        }
        srv_buf_append(&b, "}\n", 2);
    } else {
        /* The path is client input: quote it and drop control bytes so a line stays a line. */
        char path[256];
        size_t k = 0;
        for (const char *p = a->path ? a->path : "-"; *p && k + 1 < sizeof(path); p++)
            path[k++] = (unsigned char)*p < 0x20 || *p == '"' || *p == 0x7f ? '?' : *p;
        path[k] = 0;
        if (to_journal())
            srv_buf_printf(&b, "<6>");
        else
            srv_buf_printf(&b, "%s edgellmd access: ", ts);
        srv_buf_printf(&b, "%s %s \"%s\" %d prompt=%d completion=%d %.1fms%s%s\n",
                       a->client ? a->client : "-", a->method ? a->method : "-", path, a->status,
                       a->prompt_tokens, a->completion_tokens, a->seconds * 1e3, a->id ? " " : "",
                       a->id ? a->id : "");
    }
    write_line(&b);
    srv_buf_free(&b);
}

double srv_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}
