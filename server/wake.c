/*
 * wake.c — the engine's wake-up of the loop thread: an eventfd watched by a uv_poll, and an
 * atomic flag so that a burst of signals costs one write(2); and the handoff, in which an engine
 * worker that shares the loop's CPU sleeps until the loop has handled its wake-up (a futex on
 * the count of handled wake-ups).
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
#include <limits.h>
#include <linux/futex.h>
#include <sched.h>
#include <stdint.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

/* How long a worker that has handed its CPU to the loop waits for it (srv_wake_from_worker):
 * the loop's handling of one wake-up takes 0.1-0.2 ms here; past this the worker goes back to
 * the pass and the loop is left to preempt it, as without the handoff. */
#define SRV_HANDOFF_S 0.001

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
    /* seq_cst: a worker either sees the new count before it sleeps or is counted in waiters */
    atomic_fetch_add(&w->handled, 1);
    if (atomic_load(&w->waiters) > 0)
        syscall(SYS_futex, &w->handled, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);
}

int srv_wake_init(uv_loop_t *loop, struct srv_wake *w, void (*cb)(struct srv_wake *), void *data) {
    w->fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (w->fd < 0) return -1;
    atomic_init(&w->pending, false);
    atomic_init(&w->handled, 0);
    atomic_init(&w->waiters, 0);
    atomic_init(&w->handoff_cpu, -1);
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

void srv_wake_set_handoff_cpu(struct srv_wake *w, int cpu) {
    atomic_store(&w->handoff_cpu, cpu);
}

bool srv_wake_hands_off(struct srv_wake *w) {
    return atomic_load_explicit(&w->handoff_cpu, memory_order_relaxed) >= 0;
}

/* The handoff. When every CPU runs an engine thread, the loop thread shares a worker's CPU
 * (daemon.c place_loop). A wake-up made there used to leave the worker runnable, and the
 * scheduler ran the loop only when it preempted the worker: 1-4 ms late in about one wake-up of
 * eight. A worker that sleeps until the loop has handled the wake-up gives the loop its CPU at
 * once; the engine thread takes the jobs alone meanwhile (pool.c), as it did while the loop
 * preempted the worker. Measured in sched.c (deliver). */
void srv_wake_from_worker(struct srv_wake *w) {
    int cpu = atomic_load_explicit(&w->handoff_cpu, memory_order_relaxed);
    if (cpu < 0 || sched_getcpu() != cpu) {
        srv_wake_send(w);
        return;
    }
    unsigned seen = atomic_load(&w->handled);
    atomic_fetch_add(&w->waiters, 1);
    srv_wake_send(w);
    double end = srv_now() + SRV_HANDOFF_S;
    while (atomic_load(&w->handled) == seen) {
        double left = end - srv_now(); /* a wait cut short by a signal goes on to the end */
        if (left <= 0) break;
        struct timespec ts = {0, (long)(left * 1e9)};
        syscall(SYS_futex, &w->handled, FUTEX_WAIT_PRIVATE, seen, &ts, NULL, 0);
    }
    atomic_fetch_sub(&w->waiters, 1);
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
