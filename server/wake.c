/*
 * wake.c — the engine thread's wake-up of the loop thread: an eventfd watched by a uv_poll, and
 * an atomic flag so that a burst of signals costs one write(2).
 *
 * Not uv_async_t: libuv's uv_async_send marks the handle busy, writes to its eventfd and then
 * marks it done; the loop thread, woken by that write, spins on the busy mark and then calls
 * sched_yield until the sender has returned. On a machine whose cores are all running the
 * engine the woken loop thread often preempts the sender itself: it then yields until the
 * scheduler runs the sender again. Measured on a 1500-token stream (L110M Q4_0, 2 engine
 * threads, 2 cores, `perf trace -s`): 955 sched_yield calls in 1141 wake-ups, 1.6 ms each on
 * average. Here the sender only writes, and the loop only reads.
 */
#include "internal.h"

#include <errno.h>
#include <stdint.h>
#include <sys/eventfd.h>
#include <unistd.h>

static void on_readable(uv_poll_t *p, int status, int events) {
    (void)status;
    (void)events;
    struct srv_wake *w = p->data;
    uint64_t v;
    while (read(w->fd, &v, sizeof(v)) < 0 && errno == EINTR) {
    }
    /* Cleared before the callback looks at the shared state: a signal sent after this point
     * writes again, one sent before it is seen by the callback. */
    atomic_store(&w->pending, false);
    w->cb(w);
}

int srv_wake_init(uv_loop_t *loop, struct srv_wake *w, void (*cb)(struct srv_wake *), void *data) {
    w->fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (w->fd < 0) return -1;
    atomic_init(&w->pending, false);
    w->cb = cb;
    w->data = data;
    w->poll.data = w;
    w->open = false;
    if (uv_poll_init(loop, &w->poll, w->fd)) {
        close(w->fd);
        w->fd = -1;
        return -1;
    }
    w->open = true; /* from here srv_wake_close releases the handle and the fd */
    return uv_poll_start(&w->poll, UV_READABLE, on_readable) ? -1 : 0;
}

void srv_wake_send(struct srv_wake *w) {
    if (atomic_exchange(&w->pending, true)) return; /* a wake-up is on its way */
    const uint64_t one = 1;
    while (write(w->fd, &one, sizeof(one)) < 0 && errno == EINTR) {
    }
    /* EAGAIN (counter at its maximum) means the loop has a wake-up to read anyway */
}

static void on_closed(uv_handle_t *h) {
    struct srv_wake *w = h->data;
    close(w->fd);
    w->fd = -1;
}

void srv_wake_close(struct srv_wake *w) {
    if (!w->open) return;
    w->open = false;
    uv_close((uv_handle_t *)&w->poll, on_closed);
}
