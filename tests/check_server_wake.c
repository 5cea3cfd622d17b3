/*
 * check_server_wake.c — the engine → loop wake-up (server/wake.c, white-box through
 * server/internal.h): no signal is lost between the loop's callback and a sender on another
 * thread, a burst of signals coalesces into one callback, and closing releases the eventfd;
 * output that may wait (srv_wake_later) is collected on the loop's timer without a write(2)
 * while it keeps coming, none of it is lost when the timer stops, and an interval of 0 or a
 * change to 0 sends at once.
 */
#include "../server/internal.h"

#include <check.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

struct rig {
    uv_loop_t loop;
    struct srv_wake w;
    atomic_int seq; /* set by the sender before each signal */
    int seen;       /* seq as the last callback read it */
    int calls;
    int slow_us; /* the callback's run time after it read seq */
    uv_timer_t deadline;
    bool timed_out;
};

static void on_wake(struct srv_wake *w) {
    struct rig *r = w->data;
    r->calls++;
    atomic_store(&r->seen, atomic_load(&r->seq));
    if (r->slow_us) { /* widen the window in which a signal arrives during the callback */
        struct timespec ts = {0, 1000L * r->slow_us};
        nanosleep(&ts, NULL);
    }
}

static void on_deadline(uv_timer_t *t) {
    struct rig *r = t->data;
    r->timed_out = true;
}

static void rig_init(struct rig *r) {
    memset(r, 0, sizeof(*r));
    ck_assert_int_eq(uv_loop_init(&r->loop), 0);
    ck_assert_int_eq(srv_wake_init(&r->loop, &r->w, on_wake, r), 0);
    atomic_init(&r->seq, 0);
    atomic_init(&r->seen, 0);
}

static void rig_close(struct rig *r) {
    srv_wake_close(&r->w);
    uv_run(&r->loop, UV_RUN_DEFAULT);
    ck_assert_int_eq(r->w.fd, -1);
    ck_assert_int_eq(uv_loop_close(&r->loop), 0);
}

#define N_SIGNALS 2000

/* Ping-pong: each signal is sent only after the loop saw the previous one, so the next signal
 * lands while the callback still runs (it sleeps slow_us after reading seq): exactly the case
 * in which a wake-up could be lost. */
static void *sender(void *arg) {
    struct rig *r = arg;
    for (int i = 1; i <= N_SIGNALS; i++) {
        atomic_store(&r->seq, i);
        srv_wake_send(&r->w);
        struct timespec t0, t;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        while (atomic_load(&r->seen) < i) {
            clock_gettime(CLOCK_MONOTONIC, &t);
            if (t.tv_sec - t0.tv_sec > 2) return NULL; /* lost: the loop's deadline reports it */
        }
    }
    return NULL;
}

START_TEST(no_signal_is_lost) {
    struct rig r;
    rig_init(&r);
    r.slow_us = 50;
    uv_timer_init(&r.loop, &r.deadline);
    r.deadline.data = &r;
    uv_timer_start(&r.deadline, on_deadline, 10000, 0);
    pthread_t th;
    ck_assert_int_eq(pthread_create(&th, NULL, sender, &r), 0);
    while (atomic_load(&r.seen) != N_SIGNALS && !r.timed_out) uv_run(&r.loop, UV_RUN_ONCE);
    pthread_join(th, NULL);
    ck_assert_msg(!r.timed_out, "signal %d not seen", atomic_load(&r.seen) + 1);
    ck_assert_int_ge(r.calls, N_SIGNALS);
    uv_close((uv_handle_t *)&r.deadline, NULL);
    rig_close(&r);
}
END_TEST

START_TEST(burst_coalesces) {
    struct rig r;
    rig_init(&r);
    for (int i = 1; i <= 100; i++) {
        atomic_store(&r.seq, i);
        srv_wake_send(&r.w);
    }
    for (int i = 0; i < 5; i++) uv_run(&r.loop, UV_RUN_NOWAIT);
    ck_assert_int_eq(r.calls, 1);
    ck_assert_int_eq(atomic_load(&r.seen), 100);
    /* and the next signal wakes it again */
    atomic_store(&r.seq, 101);
    srv_wake_send(&r.w);
    for (int i = 0; i < 5; i++) uv_run(&r.loop, UV_RUN_NOWAIT);
    ck_assert_int_eq(r.calls, 2);
    ck_assert_int_eq(atomic_load(&r.seen), 101);
    rig_close(&r);
}
END_TEST

START_TEST(burst_writes_once) {
    struct rig r;
    rig_init(&r);
    for (int i = 0; i < 100; i++) srv_wake_send(&r.w);
    uint64_t v = 0;
    ck_assert_int_eq(read(r.w.fd, &v, sizeof(v)), (int)sizeof(v));
    ck_assert_int_eq((int)v, 1); /* one write(2) for the whole burst */
    rig_close(&r);
}
END_TEST

START_TEST(close_without_signals) {
    struct rig r;
    rig_init(&r);
    ck_assert_int_ge(r.w.fd, 0);
    rig_close(&r);
    ck_assert_int_eq(r.calls, 0);
    srv_wake_close(&r.w); /* closing twice is harmless */
}
END_TEST

/* Like sender, with srv_wake_later, pausing every third signal for 0.5-3 intervals so that the
 * timer stops between signals at every phase (the race between a tick that finds nothing and a
 * new signal). */
static void *later_sender(void *arg) {
    struct rig *r = arg;
    for (int i = 1; i <= 300; i++) {
        atomic_store(&r->seq, i);
        srv_wake_later(&r->w);
        struct timespec t0, t;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        while (atomic_load(&r->seen) < i) {
            clock_gettime(CLOCK_MONOTONIC, &t);
            if (t.tv_sec - t0.tv_sec > 2) return NULL;
        }
        if (i % 3 == 0) { /* 0.5-3 ms, across the timer's phases */
            struct timespec ts = {0, 500000L + 1000L * ((i * 397) % 2500)};
            nanosleep(&ts, NULL);
        }
    }
    return NULL;
}

START_TEST(no_later_signal_is_lost) {
    struct rig r;
    rig_init(&r);
    srv_wake_set_interval(&r.w, 0.001);
    uv_timer_init(&r.loop, &r.deadline);
    r.deadline.data = &r;
    uv_timer_start(&r.deadline, on_deadline, 20000, 0);
    pthread_t th;
    ck_assert_int_eq(pthread_create(&th, NULL, later_sender, &r), 0);
    while (atomic_load(&r.seen) != 300 && !r.timed_out) uv_run(&r.loop, UV_RUN_ONCE);
    pthread_join(th, NULL);
    ck_assert_msg(!r.timed_out, "signal %d not seen", atomic_load(&r.seen) + 1);
    uv_close((uv_handle_t *)&r.deadline, NULL);
    rig_close(&r);
}
END_TEST

/* Runs the loop until the callback count reaches calls (or 2 s pass). */
static void run_until_calls(struct rig *r, int calls) {
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    do {
        uv_run(&r->loop, UV_RUN_NOWAIT);
        clock_gettime(CLOCK_MONOTONIC, &t);
    } while (r->calls < calls && t.tv_sec - t0.tv_sec < 2);
}

START_TEST(later_collected_without_writes) {
    struct rig r;
    rig_init(&r);
    srv_wake_set_interval(&r.w, 0.005);
    /* the first one writes: nothing collects yet */
    atomic_store(&r.seq, 1);
    srv_wake_later(&r.w);
    ck_assert(atomic_load(&r.w.pending));
    run_until_calls(&r, 1);
    ck_assert_int_eq(r.calls, 1);
    ck_assert(atomic_load(&r.w.ticking));
    /* while the timer runs: no write, and the next tick delivers; a burst is one callback */
    for (int i = 2; i <= 50; i++) {
        atomic_store(&r.seq, i);
        srv_wake_later(&r.w);
    }
    ck_assert(!atomic_load(&r.w.pending));
    uint64_t v;
    ck_assert_int_lt(read(r.w.fd, &v, sizeof(v)), 0); /* the eventfd holds nothing */
    run_until_calls(&r, 2);
    ck_assert_int_eq(r.calls, 2);
    ck_assert_int_eq(atomic_load(&r.seen), 50);
    /* a tick that finds nothing stops the timer; the next one writes again */
    struct timespec ts = {0, 20000000L};
    for (int k = 0; k < 5 && atomic_load(&r.w.ticking); k++) {
        nanosleep(&ts, NULL);
        uv_run(&r.loop, UV_RUN_NOWAIT);
    }
    ck_assert(!atomic_load(&r.w.ticking));
    ck_assert_int_eq(r.calls, 2);
    atomic_store(&r.seq, 51);
    srv_wake_later(&r.w);
    ck_assert(atomic_load(&r.w.pending));
    run_until_calls(&r, 3);
    ck_assert_int_eq(atomic_load(&r.seen), 51);
    rig_close(&r);
}
END_TEST

START_TEST(later_at_once_with_interval_0) {
    struct rig r;
    rig_init(&r); /* the interval starts at 0 */
    atomic_store(&r.seq, 1);
    srv_wake_later(&r.w);
    ck_assert(atomic_load(&r.w.pending));
    run_until_calls(&r, 1);
    ck_assert(!atomic_load(&r.w.ticking)); /* no timer at 0 */
    /* a change to 0 while output waits for a tick sends it at once */
    srv_wake_set_interval(&r.w, 1.0);
    atomic_store(&r.seq, 2);
    srv_wake_later(&r.w); /* writes: the timer is not running yet */
    run_until_calls(&r, 2);
    ck_assert(atomic_load(&r.w.ticking));
    atomic_store(&r.seq, 3);
    srv_wake_later(&r.w); /* waits for the 1 s tick */
    for (int i = 0; i < 5; i++) uv_run(&r.loop, UV_RUN_NOWAIT);
    ck_assert_int_eq(r.calls, 2);
    srv_wake_set_interval(&r.w, 0);
    ck_assert_int_eq(r.calls, 3);
    ck_assert_int_eq(atomic_load(&r.seen), 3);
    ck_assert(!atomic_load(&r.w.ticking));
    rig_close(&r);
}
END_TEST

Suite *server_wake_suite(void) {
    Suite *s = suite_create("server_wake");
    TCase *tc = tcase_create("wake");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, no_signal_is_lost);
    tcase_add_test(tc, burst_coalesces);
    tcase_add_test(tc, burst_writes_once);
    tcase_add_test(tc, close_without_signals);
    tcase_add_test(tc, no_later_signal_is_lost);
    tcase_add_test(tc, later_collected_without_writes);
    tcase_add_test(tc, later_at_once_with_interval_0);
    suite_add_tcase(s, tc);
    return s;
}
