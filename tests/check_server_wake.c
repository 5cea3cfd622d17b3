/*
 * check_server_wake.c — the engine → loop wake-up (server/wake.c, white-box through
 * server/internal.h): no signal is lost between the loop's callback and a sender on another
 * thread, a burst of signals coalesces into one callback, closing releases the eventfd, and a
 * worker's wake-up on the loop's CPU waits for the loop's callback, bounded.
 */
#include "../server/internal.h"

#include <check.h>
#include <pthread.h>
#include <sched.h>
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
    int slow_us;         /* the callback's run time after it read seq */
    atomic_int finished; /* callbacks that have returned */
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
    atomic_fetch_add(&r->finished, 1);
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
    atomic_init(&r->finished, 0);
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

/* ---- the handoff (srv_wake_from_worker) ---- */

/* The calling thread onto one CPU it may run on; that CPU. */
static int pin_here(void) {
    cpu_set_t set;
    ck_assert_int_eq(pthread_getaffinity_np(pthread_self(), sizeof(set), &set), 0);
    int cpu = 0;
    while (!CPU_ISSET(cpu, &set)) cpu++;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    ck_assert_int_eq(pthread_setaffinity_np(pthread_self(), sizeof(set), &set), 0);
    ck_assert_int_eq(sched_getcpu(), cpu);
    return cpu;
}

struct worker {
    struct rig *r;
    int handoff; /* 1: the handoff CPU is the worker's; 0: another; -1: none */
    double took;
    int finished_at_return; /* r->finished when srv_wake_from_worker returned */
};

static void *worker_wake(void *arg) {
    struct worker *k = arg;
    int cpu = pin_here();
    srv_wake_set_handoff_cpu(&k->r->w, k->handoff > 0 ? cpu : k->handoff == 0 ? cpu + 1 : -1);
    double t0 = srv_now();
    srv_wake_from_worker(&k->r->w);
    k->took = srv_now() - t0;
    k->finished_at_return = atomic_load(&k->r->finished);
    return NULL;
}

/* On the loop's CPU the worker returns once the loop's callback has returned, not before; a
 * return before the millisecond bound can only come from the loop's count of handled wake-ups.
 * A try in which the loop thread came too late (a loaded machine) waited the whole bound. */
START_TEST(handoff_waits_for_the_callback) {
    int waited_for_it = 0;
    for (int i = 0; i < 10; i++) {
        struct rig r;
        rig_init(&r);
        r.slow_us = 300; /* the worker waits at least this long when it waits for the callback */
        struct worker k = {.r = &r, .handoff = 1};
        pthread_t th;
        ck_assert_int_eq(pthread_create(&th, NULL, worker_wake, &k), 0);
        while (atomic_load(&r.finished) == 0) uv_run(&r.loop, UV_RUN_ONCE);
        pthread_join(th, NULL);
        ck_assert_int_eq(atomic_load(&r.w.waiters), 0);
        if (k.finished_at_return == 1) {
            waited_for_it++;
            ck_assert(k.took >= 300e-6);
        } else {
            ck_assert_int_eq(k.finished_at_return, 0);
            ck_assert_msg(k.took >= 1e-3, "returned after %.3f ms, before the callback",
                          k.took * 1e3);
        }
        rig_close(&r);
    }
    ck_assert_int_gt(waited_for_it, 0);
}
END_TEST

/* Nobody runs the loop: the worker gives up after the bound and the wake-up is still pending
 * for the loop's next turn. */
START_TEST(handoff_is_bounded) {
    struct rig r;
    rig_init(&r);
    struct worker k = {.r = &r, .handoff = 1};
    pthread_t th;
    ck_assert_int_eq(pthread_create(&th, NULL, worker_wake, &k), 0);
    pthread_join(th, NULL);
    ck_assert(k.took >= 1e-3);
    ck_assert_msg(k.took < 5.0, "waited %.3f s", k.took);
    ck_assert_int_eq(k.finished_at_return, 0);
    ck_assert_int_eq(atomic_load(&r.w.waiters), 0);
    for (int i = 0; i < 5; i++) uv_run(&r.loop, UV_RUN_NOWAIT);
    ck_assert_int_eq(r.calls, 1);
    rig_close(&r);
}
END_TEST

/* Off the handoff CPU, or with none, the worker only signals: it never waits for the loop
 * (which nobody runs here). Timed as the fastest of five tries, under the bound. */
START_TEST(no_handoff_elsewhere) {
    for (int handoff = -1; handoff <= 0; handoff++) {
        double fastest = 1e9;
        for (int i = 0; i < 5; i++) {
            struct rig r;
            rig_init(&r);
            struct worker k = {.r = &r, .handoff = handoff};
            pthread_t th;
            ck_assert_int_eq(pthread_create(&th, NULL, worker_wake, &k), 0);
            pthread_join(th, NULL);
            if (k.took < fastest) fastest = k.took;
            ck_assert_int_eq(k.finished_at_return, 0);
            uint64_t v = 0; /* the signal was sent */
            ck_assert_int_eq(read(r.w.fd, &v, sizeof(v)), (int)sizeof(v));
            rig_close(&r);
        }
        ck_assert_msg(fastest < 1e-3, "handoff %d: %.3f ms", handoff, fastest * 1e3);
    }
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
    tcase_add_test(tc, handoff_waits_for_the_callback);
    tcase_add_test(tc, handoff_is_bounded);
    tcase_add_test(tc, no_handoff_elsewhere);
    suite_add_tcase(s, tc);
    return s;
}
