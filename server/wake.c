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
 *
 * Output that may wait (running streams' tokens, srv_wake_later) is collected by the loop on a
 * timer instead, every interval, for as long as it keeps coming: the sender then only sets a
 * flag. Woken by the engine thread's write, the loop thread often took that thread's own core
 * before the write returned, and the whole step waited for it (throwaway timing in sched.c:
 * 15-35 us a step in such requests, about 90 us per token where every token is sent); the
 * timer's wake-up lands where the loop last ran, and the engine thread makes no system call.
 * edgellmd, L110M Q4_0, one stream, two daemons in both orders: +2.9% and +3.1% (6 of 8 each),
 * +3.4% (7 of 8) and +5.7% (8 of 8); four streams +4.8% and -3.5%.
 */
#include "internal.h"

#include <errno.h>
#include <stdint.h>
#include <sys/eventfd.h>
#include <unistd.h>

/* Every interval while output keeps coming. A tick that finds none stops the timer; the
 * flags are seq_cst on both sides: either srv_wake_later sees ticking cleared and writes, or
 * the second look here sees its output. */
static void on_tick(uv_timer_t *t) {
    struct srv_wake *w = t->data;
    if (!atomic_exchange(&w->later, false)) {
        atomic_store(&w->ticking, false);
        if (!atomic_exchange(&w->later, false)) {
            uv_timer_stop(&w->tick);
            return;
        }
        atomic_store(&w->ticking, true);
    }
    w->cb(w);
}

static void start_ticking(struct srv_wake *w) {
    unsigned ms = atomic_load(&w->interval_ms);
    if (ms == 0 || atomic_load(&w->ticking)) return;
    atomic_store(&w->ticking, true);
    uv_timer_start(&w->tick, on_tick, ms, ms);
}

static void on_readable(uv_poll_t *p, int status, int events) {
    (void)status;
    (void)events;
    struct srv_wake *w = p->data;
    uint64_t v;
    while (read(w->fd, &v, sizeof(v)) < 0 && errno == EINTR) {
    }
    /* Cleared before the callback looks at the shared state: a signal sent after this point
     * writes again (or is collected by the next tick), one sent before it is seen by the
     * callback. */
    atomic_store(&w->pending, false);
    atomic_store(&w->later, false);
    w->cb(w);
    start_ticking(w); /* more output is likely to follow */
}

int srv_wake_init(uv_loop_t *loop, struct srv_wake *w, void (*cb)(struct srv_wake *), void *data) {
    w->fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (w->fd < 0) return -1;
    atomic_init(&w->pending, false);
    atomic_init(&w->later, false);
    atomic_init(&w->ticking, false);
    atomic_init(&w->interval_ms, 0);
    w->cb = cb;
    w->data = data;
    w->poll.data = w;
    w->open = false;
    if (uv_poll_init(loop, &w->poll, w->fd)) {
        close(w->fd);
        w->fd = -1;
        return -1;
    }
    uv_timer_init(loop, &w->tick);
    w->tick.data = w;
    w->open = true; /* from here srv_wake_close releases the handles and the fd */
    return uv_poll_start(&w->poll, UV_READABLE, on_readable) ? -1 : 0;
}

void srv_wake_later(struct srv_wake *w) {
    if (atomic_load(&w->interval_ms) == 0) {
        srv_wake_send(w);
        return;
    }
    atomic_store(&w->later, true);
    if (!atomic_load(&w->ticking)) srv_wake_send(w); /* the loop is not collecting */
}

void srv_wake_set_interval(struct srv_wake *w, double seconds) {
    unsigned ms = seconds > 0 ? (unsigned)(seconds * 1000.0 + 0.5) : 0;
    atomic_store(&w->interval_ms, ms);
    if (!w->open || !atomic_load(&w->ticking)) return;
    if (ms) {
        uv_timer_start(&w->tick, on_tick, ms, ms);
        return;
    }
    /* at once from now on: what waits goes out now */
    uv_timer_stop(&w->tick);
    atomic_store(&w->ticking, false);
    if (atomic_exchange(&w->later, false)) w->cb(w);
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
    uv_close((uv_handle_t *)&w->tick, NULL);
    uv_close((uv_handle_t *)&w->poll, on_closed);
}
