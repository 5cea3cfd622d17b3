/*
 * pool.c — the persistent worker pool the forward pass runs on. Threads are created once per
 * context. A job is published by storing a new generation in the pool's state word; workers spin
 * on it for a short while (a few tens of microseconds: back-to-back kernels of one token arrive
 * well within that) and then sleep on a condition variable, so an idle pool costs no CPU. The
 * mutex and the condition variables are only touched when somebody actually sleeps: a pool whose
 * workers are spinning dispatches a job with two atomic operations.
 *
 * A worker takes part in a job only if it joins before the caller has finished its own part:
 * the caller then closes the job and waits for the workers that joined, not for those still
 * asleep or descheduled. Every job function therefore divides its work dynamically (atomic
 * counters, matmul.c's row shares that the other threads take over), so that any subset of the
 * threads completes it; (ith, nth) name a thread's scratch and its first share. On a virtual
 * machine a sleeping thread's wake-up can take milliseconds: the first pass of a request after
 * an idle spell used to wait for it at every job of the pass (one-token passes of 6-15 ms in the
 * daemon against 2 ms with the worker awake).
 *
 * A deferred call (eng_pool_defer) is made by the first worker to leave a job, so that the thread
 * it wakes, if the scheduler runs it on that worker's CPU, preempts a thread that holds no rows
 * of a product: the caller takes the next jobs alone meanwhile, and nobody waits on the worker.
 *
 * Placement: with pin (the context's pin_threads), each thread runs on a performance core of its
 * own. Left to the scheduler, a worker woken after an idle spell was often put on the CPU of the
 * thread that woke it — in a virtual machine an idle virtual CPU counts as busy to the guest's
 * scheduler — and the two took turns on that CPU, job by job, until the load balancer moved one
 * (L110M Q4_0 in edgellmd, 2 threads on 2 cores, requests 0.3 s apart, daemons alternated:
 * 8-token completions 336.9 -> 541.5 tok/s over 30 rounds, 26 of them faster; time to the first
 * token 6.9 -> 4.6 ms).
 */
#include "internal.h"

#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

/* How long a waiting thread polls before it sleeps. Spinning on a shared machine steals cycles
 * from other processes, so this stays short; measured dispatch-to-start latency when spinning is
 * well under a microsecond. The time counts from the first check, descheduled time included.
 * Tried in edgellmd (L110M Q4_0, 2 threads, one stream, daemons in turns with the engine, 30
 * rounds a run, medians against the engine): 200 us 99.0%, 96.2%, 98.8%, 97.2% in four runs
 * against this build's 96.5%, 96.4%, 97.7%, 95.4% (its second copy 98.0%, 95.3%, 96.7%,
 * 96.8%), faster in 26, 17, 17, 18 of 30; 100 us 92.3% and 94.1%; 400 us 95.7% and 96.6%;
 * restarting the time after a gap of over 25 us between checks (the thread was descheduled)
 * 90.3% and 90.5% against 97.1% and 96.5%. None consistently better. */
#ifndef POOL_SPIN_NS
#define POOL_SPIN_NS 50000
#endif

/* The state word: the job generation in the high 32 bits, CLOSED when the caller has finished
 * its part (no more joins), and the number of workers inside the job in the low bits. */
#define ST_CLOSED ((uint64_t)1 << 31)
#define ST_ACTIVE ((uint64_t)ST_CLOSED - 1)
static inline unsigned st_gen(uint64_t v) {
    return (unsigned)(v >> 32);
}

struct eng_pool {
    int n_threads; /* including the caller */
    pthread_t *threads;
    pthread_mutex_t mu;
    pthread_cond_t cv_work; /* guarded by mu: the generation changed or stop */
    pthread_cond_t cv_done; /* guarded by mu: no worker left inside the closed job */
    atomic_ullong st;       /* generation | CLOSED | workers inside */
    atomic_int sleepers;    /* workers waiting (or about to wait) on cv_work */
    atomic_bool caller_sleeps;
    atomic_bool stop;
    void (*fn)(void *arg, int ith, int nth);
    void *arg;
    _Atomic(struct eng_deferred *) deferred; /* eng_pool_defer's call, NULL once made */
    /* placement (eng_pool_new's pin): the caller's CPU, and the caller once pinned, with the
     * affinity it had before */
    bool pin, caller_pinned;
    int cpu0;
    int *cpus; /* with pin: thread i's CPU (the caller's first); NULL otherwise */
    pthread_t caller;
    cpu_set_t caller_mask;
    struct worker {
        struct eng_pool *pool;
        int ith;
    } * workers;
};

static inline void cpu_relax(void) {
#if defined(__x86_64__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Spin-wait helpers: poll until the condition holds or POOL_SPIN_NS pass; true if it held. */
static bool spin_for_job(struct eng_pool *p, unsigned seen) {
    uint64_t t0 = 0;
    for (int i = 0;; i++) {
        if (st_gen(atomic_load_explicit(&p->st, memory_order_acquire)) != seen ||
            atomic_load_explicit(&p->stop, memory_order_relaxed))
            return true;
        cpu_relax();
        if ((i & 255) == 255) {
            uint64_t t = now_ns();
            if (!t0)
                t0 = t;
            else if (t - t0 > POOL_SPIN_NS)
                return false;
        }
    }
}

static bool spin_for_done(struct eng_pool *p) {
    uint64_t t0 = 0;
    for (int i = 0;; i++) {
        if (!(atomic_load_explicit(&p->st, memory_order_acquire) & ST_ACTIVE)) return true;
        cpu_relax();
        if ((i & 255) == 255) {
            uint64_t t = now_ns();
            if (!t0)
                t0 = t;
            else if (t - t0 > POOL_SPIN_NS)
                return false;
        }
    }
}

static void *worker_main(void *p) {
    struct worker *w = p;
    struct eng_pool *pool = w->pool;
    unsigned seen = 0;
    for (;;) {
        if (!spin_for_job(pool, seen)) {
            pthread_mutex_lock(&pool->mu);
            atomic_fetch_add(&pool->sleepers, 1); /* seq_cst: ordered before the state load */
            while (st_gen(atomic_load(&pool->st)) == seen && !atomic_load(&pool->stop))
                pthread_cond_wait(&pool->cv_work, &pool->mu);
            atomic_fetch_sub(&pool->sleepers, 1);
            pthread_mutex_unlock(&pool->mu);
        }
        if (atomic_load(&pool->stop)) return NULL;
        /* join the newest job unless the caller has closed it */
        uint64_t v = atomic_load_explicit(&pool->st, memory_order_acquire);
        for (;;) {
            seen = st_gen(v);
            if (v & ST_CLOSED) break; /* finished without us */
            if (atomic_compare_exchange_weak_explicit(&pool->st, &v, v + 1, memory_order_acq_rel,
                                                      memory_order_acquire)) {
                pool->fn(pool->arg, w->ith, pool->n_threads);
                uint64_t left = atomic_fetch_sub(&pool->st, 1) - 1; /* seq_cst: see eng_pool_run */
                if (!(left & ST_ACTIVE) && atomic_load(&pool->caller_sleeps)) {
                    pthread_mutex_lock(&pool->mu);
                    pthread_cond_signal(&pool->cv_done);
                    pthread_mutex_unlock(&pool->mu);
                }
                /* out of the job: a thread this call wakes here waits for no rows of ours */
                if (atomic_load_explicit(&pool->deferred, memory_order_relaxed)) {
                    struct eng_deferred *d = atomic_exchange(&pool->deferred, NULL);
                    if (d) d->fn(d->arg);
                }
                break;
            }
        }
    }
}

/* A number from a sysfs file of CPU c; def when it cannot be read. */
static long cpu_attr(int c, const char *name, long def) {
    char path[128];
    snprintf(path, sizeof(path), "/sys/devices/system/cpu/cpu%d/%s", c, name);
    FILE *f = fopen(path, "r");
    long v = def;
    if (f) {
        if (fscanf(f, "%ld", &v) != 1) v = def;
        fclose(f);
    }
    return v;
}

int eng_perf_cpus(int *cpus, int max) {
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof(set), &set) != 0) { /* every online CPU */
        CPU_ZERO(&set);
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        for (int c = 0; c < n && c < CPU_SETSIZE; c++) CPU_SET(c, &set);
    }
    int n_set = CPU_COUNT(&set), n = 0, count = 0;
    struct cand {
        int cpu;
        long core, cap;
    } *cand = malloc(sizeof(*cand) * (size_t)(n_set > 0 ? n_set : 1));
    long *taken = malloc(sizeof(long) * (size_t)(n_set > 0 ? n_set : 1));
    if (!cand || !taken) {
        free(cand), free(taken);
        return n_set > 0 ? n_set : 1;
    }
    long max_cap = -1;
    for (int c = 0; c < CPU_SETSIZE && n < n_set; c++) {
        if (!CPU_ISSET(c, &set)) continue;
        long core = cpu_attr(c, "topology/core_id", -1);
        /* a CPU without a core id counts as a core of its own */
        core = core < 0 ? -1 - c : cpu_attr(c, "topology/physical_package_id", 0) * 100000 + core;
        cand[n] = (struct cand){c, core, cpu_attr(c, "cpu_capacity", -1)};
        if (cand[n].cap > max_cap) max_cap = cand[n].cap;
        n++;
    }
    for (int i = 0; i < n; i++) {
        if (cand[i].cap != max_cap) continue;
        bool dup = false;
        for (int k = 0; k < count; k++) dup |= taken[k] == cand[i].core;
        if (dup) continue;
        if (cpus && count < max) cpus[count] = cand[i].cpu;
        taken[count++] = cand[i].core;
    }
    free(cand), free(taken);
    return count;
}

/* Runs thread t on CPU c only. */
static void pin_thread(pthread_t t, int c) {
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(c, &one);
    pthread_setaffinity_np(t, sizeof(one), &one); /* a refusal leaves it to the scheduler */
}

struct eng_pool *eng_pool_new(int n_threads, bool pin) {
    if (n_threads < 1) n_threads = 1;
    int *cpus = NULL;
    if (pin && n_threads > 1) {
        cpus = malloc(sizeof(int) * (size_t)n_threads);
        if (cpus && eng_perf_cpus(cpus, n_threads) < n_threads) free(cpus), cpus = NULL;
    }
    struct eng_pool *p = calloc(1, sizeof(*p));
    if (!p) {
        free(cpus);
        return NULL;
    }
    p->pin = cpus != NULL;
    p->cpu0 = cpus ? cpus[0] : 0;
    p->cpus = cpus;
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
        if (cpus) pin_thread(p->threads[i], cpus[i]);
    }
    return p;
err:
    eng_pool_free(p); /* frees cpus */
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
    if (p->caller_pinned && pthread_equal(p->caller, pthread_self()))
        pthread_setaffinity_np(p->caller, sizeof(p->caller_mask), &p->caller_mask);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv_work);
    pthread_cond_destroy(&p->cv_done);
    free(p->threads);
    free(p->workers);
    free(p->cpus);
    free(p);
}

int eng_pool_size(const struct eng_pool *p) {
    return p->n_threads;
}

int eng_pool_cpus(const struct eng_pool *p, int *cpus, int max) {
    if (!p->cpus) return 0;
    for (int i = 0; i < p->n_threads && i < max; i++) cpus[i] = p->cpus[i];
    return p->n_threads;
}

bool eng_pool_defer(struct eng_pool *p, struct eng_deferred *d) {
    if (p->n_threads < 2) return false;
    atomic_store(&p->deferred, d);
    return true;
}

bool eng_pool_defer_cancel(struct eng_pool *p) {
    return atomic_exchange(&p->deferred, NULL) != NULL;
}

void eng_pool_run(struct eng_pool *p, void (*fn)(void *arg, int ith, int nth), void *arg) {
    if (p->n_threads == 1) {
        fn(arg, 0, 1);
        return;
    }
    if (p->pin && !p->caller_pinned) { /* the first run: the caller onto its CPU */
        p->caller = pthread_self();
        cpu_set_t *m = &p->caller_mask;
        /* a caller already on that CPU alone (another pool of its placed it) is left as it is,
         * so that only the pool that pinned it gives the caller its affinity back */
        if (pthread_getaffinity_np(p->caller, sizeof(*m), m) == 0 &&
            !(CPU_COUNT(m) == 1 && CPU_ISSET(p->cpu0, m))) {
            pin_thread(p->caller, p->cpu0);
            p->caller_pinned = true;
        } else {
            p->pin = false;
        }
    }
    p->fn = fn;
    p->arg = arg;
    /* a new generation, open, nobody inside: publishes fn and arg (seq_cst: ordered before the
     * sleepers load) */
    unsigned gen = st_gen(atomic_load_explicit(&p->st, memory_order_relaxed)) + 1;
    atomic_store(&p->st, (uint64_t)gen << 32);
    if (atomic_load(&p->sleepers) > 0) {
        pthread_mutex_lock(&p->mu);
        pthread_cond_broadcast(&p->cv_work);
        pthread_mutex_unlock(&p->mu);
    }
    fn(arg, 0, p->n_threads);
    /* close the job: workers that have not joined skip it; wait for those inside */
    if (!(atomic_fetch_or(&p->st, ST_CLOSED) & ST_ACTIVE)) return;
    if (!spin_for_done(p)) {
        pthread_mutex_lock(&p->mu);
        /* seq_cst on both sides: either the last worker out sees caller_sleeps and signals, or
         * this load sees its decrement */
        atomic_store(&p->caller_sleeps, true);
        while (atomic_load(&p->st) & ST_ACTIVE) pthread_cond_wait(&p->cv_done, &p->mu);
        atomic_store(&p->caller_sleeps, false);
        pthread_mutex_unlock(&p->mu);
    }
}
