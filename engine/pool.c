/*
 * pool.c — the persistent worker pool the forward pass runs on. Threads are created once per
 * context; a job is published by bumping a generation counter, workers spin briefly on it and
 * then sleep on a condition variable, so back-to-back kernels (one per matmul) pay no thread
 * creation and little wake-up latency. It does not split work: each job's function does.
 */
#include "internal.h"

#include <pthread.h>
#include <sched.h>
#include <stdlib.h>

#define POOL_SPIN 20000 /* polls before a worker sleeps */

struct eng_pool {
    int n_threads; /* including the caller */
    pthread_t *threads;
    pthread_mutex_t mu;
    pthread_cond_t cv_work; /* guarded by mu: gen changed or stop */
    pthread_cond_t cv_done; /* guarded by mu: pending reached 0 */
    atomic_uint gen;        /* job generation */
    atomic_int pending;     /* workers still running the current job */
    atomic_bool stop;
    void (*fn)(void *arg, int ith, int nth);
    void *arg;
    struct worker {
        struct eng_pool *pool;
        int ith;
    } * workers;
};

static void *worker_main(void *p) {
    struct worker *w = p;
    struct eng_pool *pool = w->pool;
    unsigned seen = 0;
    for (;;) {
        unsigned g;
        int spins = 0;
        while ((g = atomic_load_explicit(&pool->gen, memory_order_acquire)) == seen &&
               !atomic_load(&pool->stop)) {
            if (++spins < POOL_SPIN) {
#if defined(__x86_64__)
                __builtin_ia32_pause();
#elif defined(__aarch64__)
                __asm__ __volatile__("yield");
#endif
                continue;
            }
            pthread_mutex_lock(&pool->mu);
            while (atomic_load(&pool->gen) == seen && !atomic_load(&pool->stop))
                pthread_cond_wait(&pool->cv_work, &pool->mu);
            pthread_mutex_unlock(&pool->mu);
        }
        if (atomic_load(&pool->stop)) return NULL;
        seen = g;
        pool->fn(pool->arg, w->ith, pool->n_threads);
        if (atomic_fetch_sub_explicit(&pool->pending, 1, memory_order_acq_rel) == 1) {
            pthread_mutex_lock(&pool->mu);
            pthread_cond_signal(&pool->cv_done);
            pthread_mutex_unlock(&pool->mu);
        }
    }
}

struct eng_pool *eng_pool_new(int n_threads) {
    if (n_threads < 1) n_threads = 1;
    struct eng_pool *p = calloc(1, sizeof(*p));
    if (!p) return NULL;
    p->n_threads = n_threads;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv_work, NULL);
    pthread_cond_init(&p->cv_done, NULL);
    p->threads = calloc((size_t)n_threads, sizeof(*p->threads));
    p->workers = calloc((size_t)n_threads, sizeof(*p->workers));
    if (!p->threads || !p->workers) goto err;
    for (int i = 1; i < n_threads; i++) {
        p->workers[i] = (struct worker){p, i};
        if (pthread_create(&p->threads[i], NULL, worker_main, &p->workers[i]) != 0) {
            p->n_threads = i; /* join only those started */
            goto err;
        }
    }
    return p;
err:
    eng_pool_free(p);
    return NULL;
}

void eng_pool_free(struct eng_pool *p) {
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    atomic_store(&p->stop, true);
    pthread_cond_broadcast(&p->cv_work);
    pthread_mutex_unlock(&p->mu);
    for (int i = 1; i < p->n_threads; i++)
        if (p->threads && p->threads[i]) pthread_join(p->threads[i], NULL);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv_work);
    pthread_cond_destroy(&p->cv_done);
    free(p->threads);
    free(p->workers);
    free(p);
}

int eng_pool_size(const struct eng_pool *p) {
    return p->n_threads;
}

void eng_pool_run(struct eng_pool *p, void (*fn)(void *arg, int ith, int nth), void *arg) {
    if (p->n_threads == 1) {
        fn(arg, 0, 1);
        return;
    }
    p->fn = fn;
    p->arg = arg;
    atomic_store(&p->pending, p->n_threads - 1);
    pthread_mutex_lock(&p->mu);
    atomic_fetch_add_explicit(&p->gen, 1, memory_order_release);
    pthread_cond_broadcast(&p->cv_work);
    pthread_mutex_unlock(&p->mu);
    fn(arg, 0, p->n_threads);
    int spins = 0;
    while (atomic_load_explicit(&p->pending, memory_order_acquire) > 0) {
        if (++spins < POOL_SPIN) continue;
        pthread_mutex_lock(&p->mu);
        while (atomic_load(&p->pending) > 0) pthread_cond_wait(&p->cv_done, &p->mu);
        pthread_mutex_unlock(&p->mu);
    }
}
