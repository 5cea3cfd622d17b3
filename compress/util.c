/*
 * util.c — small shared pieces of the compressor: a parallel for-loop over pthreads, the
 * progress bar with ETA, clocks and peak RSS.
 */
#include "internal.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

double cmp_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

uint64_t cmp_peak_rss(void) {
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0) return 0;
    return (uint64_t)ru.ru_maxrss * 1024;
}

struct pfor {
    void (*fn)(void *arg, int64_t i);
    void *arg;
    int64_t n;
    atomic_llong next;
};

static void *pfor_worker(void *p) {
    struct pfor *f = p;
    for (;;) {
        int64_t i = atomic_fetch_add(&f->next, 1);
        if (i >= f->n) return NULL;
        f->fn(f->arg, i);
    }
}

void cmp_parallel_for(int n_threads, int64_t n, void (*fn)(void *arg, int64_t i), void *arg) {
    struct pfor f = {fn, arg, n, 0};
    if (n_threads < 1) n_threads = 1;
    if (n_threads > 64) n_threads = 64;
    pthread_t th[64];
    int started = 0;
    for (int t = 1; t < n_threads && t < n; t++)
        if (pthread_create(&th[started], NULL, pfor_worker, &f) == 0) started++;
    pfor_worker(&f);
    for (int t = 0; t < started; t++) pthread_join(th[t], NULL);
}

void cmp_progress_phase(struct cmp_progress *p, const char *phase) {
    if (p->on && p->phase) fputc('\n', stderr);
    p->phase = phase;
    p->t_phase = cmp_now();
    if (!p->t_start) p->t_start = p->t_phase;
    cmp_progress_update(p, 0.0);
}

void cmp_progress_update(void *user, double frac) {
    struct cmp_progress *p = user;
    if (!p || !p->on) return;
    if (frac < 0) frac = 0;
    if (frac > 1) frac = 1;
    double el = cmp_now() - p->t_phase;
    char eta[32] = "--:--";
    if (frac > 0.01) {
        int s = (int)(el / frac - el);
        snprintf(eta, sizeof(eta), "%d:%02d", s / 60, s % 60);
    }
    int w = 30, filled = (int)(frac * w);
    char bar[64];
    for (int i = 0; i < w; i++) bar[i] = i < filled ? '#' : '.';
    bar[w] = 0;
    fprintf(stderr, "\r%-22s [%s] %3d%%  ETA %s   ", p->phase, bar, (int)(frac * 100), eta);
    fflush(stderr);
}

void cmp_progress_done(struct cmp_progress *p) {
    if (p->on && p->phase) fprintf(stderr, "\n");
    p->phase = NULL;
}
