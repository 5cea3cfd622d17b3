/*
 * stream.c — STREAM-like memory bandwidth test for BENCHMARKS.md: "read" (sum of one array, the
 * access pattern of decoding: every weight read once) and "triad" (a = b + s·c, STREAM's
 * triad counting 24 bytes per element) on arrays far larger than the caches, split over T
 * threads that start together. Prints one JSON object per thread count: the best and the median
 * GB/s (10^9 bytes per second) of R repetitions.
 *
 * usage: stream-bw [-t 1,2] [-r 10] [-m MiB per array (default 256)] [-o read]
 * -o read measures the read test alone (its triad figures are then 0): a short pass to pair
 * with a single decode run.
 * It does not use the engine; plain C with vector extensions, so it builds anywhere.
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef double v4d __attribute__((vector_size(32)));

struct shared {
    int n_threads, op; /* op 0 = read, 1 = triad */
    size_t n;          /* doubles per array */
    double *a, *b, *c;
    pthread_barrier_t start, end;
    double sink[64];
};

struct targ {
    struct shared *s;
    int ith;
};

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void work(struct shared *s, int ith) {
    size_t per = s->n / (size_t)s->n_threads / 16 * 16;
    size_t i0 = per * (size_t)ith, i1 = ith == s->n_threads - 1 ? s->n : i0 + per;
    if (s->op == 0) {
        v4d acc0 = {0}, acc1 = {0}, acc2 = {0}, acc3 = {0};
        const v4d *p = (const v4d *)(s->a + i0);
        size_t nv = (i1 - i0) / 4;
        for (size_t i = 0; i + 4 <= nv; i += 4) {
            acc0 += p[i];
            acc1 += p[i + 1];
            acc2 += p[i + 2];
            acc3 += p[i + 3];
        }
        v4d t = acc0 + acc1 + acc2 + acc3;
        s->sink[ith] = t[0] + t[1] + t[2] + t[3];
    } else {
        v4d *a = (v4d *)(s->a + i0);
        const v4d *b = (const v4d *)(s->b + i0), *c = (const v4d *)(s->c + i0);
        const v4d k = {3.0, 3.0, 3.0, 3.0};
        size_t nv = (i1 - i0) / 4;
        for (size_t i = 0; i < nv; i++) a[i] = b[i] + k * c[i];
    }
}

static void *thread_main(void *p) {
    struct targ *t = p;
    for (;;) {
        pthread_barrier_wait(&t->s->start);
        if (t->s->op < 0) return NULL;
        work(t->s, t->ith);
        pthread_barrier_wait(&t->s->end);
    }
}

static int cmp(const void *x, const void *y) {
    double a = *(const double *)x, b = *(const double *)y;
    return (a > b) - (a < b);
}

int main(int argc, char **argv) {
    int threads[16] = {1, 2}, n_t = 2, reps = 10, n_ops = 2;
    size_t mib = 256;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "-t")) {
            n_t = 0;
            for (char *p = argv[i + 1]; *p && n_t < 16;) {
                threads[n_t++] = (int)strtol(p, &p, 10);
                if (*p == ',') p++;
            }
        } else if (!strcmp(argv[i], "-r")) {
            reps = atoi(argv[i + 1]);
        } else if (!strcmp(argv[i], "-m")) {
            mib = (size_t)atol(argv[i + 1]);
        } else if (!strcmp(argv[i], "-o")) {
            n_ops = !strcmp(argv[i + 1], "read") ? 1 : 0;
        }
    }
    if (reps < 1 || mib < 16 || !n_ops) {
        fprintf(stderr, "usage: stream-bw [-t 1,2] [-r 10] [-m MiB] [-o read]\n");
        return 2;
    }
    struct shared s = {0};
    s.n = mib * 1048576 / sizeof(double);
    s.a = aligned_alloc(64, s.n * sizeof(double));
    if (n_ops > 1) { /* the triad's other two arrays */
        s.b = aligned_alloc(64, s.n * sizeof(double));
        s.c = aligned_alloc(64, s.n * sizeof(double));
    }
    if (!s.a || (n_ops > 1 && (!s.b || !s.c))) {
        fprintf(stderr, "stream-bw: out of memory\n");
        return 1;
    }
    for (size_t i = 0; i < s.n; i++) s.a[i] = 1.0;
    for (size_t i = 0; n_ops > 1 && i < s.n; i++) s.b[i] = 2.0, s.c[i] = 0.5;
    printf("[");
    for (int ti = 0; ti < n_t; ti++) {
        int T = threads[ti] < 1 ? 1 : threads[ti] > 64 ? 64 : threads[ti];
        s.n_threads = T;
        pthread_barrier_init(&s.start, NULL, (unsigned)T);
        pthread_barrier_init(&s.end, NULL, (unsigned)T);
        pthread_t th[64];
        struct targ ta[64];
        for (int i = 1; i < T; i++) {
            ta[i] = (struct targ){&s, i};
            pthread_create(&th[i], NULL, thread_main, &ta[i]);
        }
        double res[2][1000] = {{0}};
        for (int op = 0; op < n_ops; op++) {
            for (int r = 0; r < reps + 1 && r < 1000; r++) { /* first run warms up */
                s.op = op;
                pthread_barrier_wait(&s.start);
                double t0 = now_s();
                work(&s, 0);
                pthread_barrier_wait(&s.end);
                double dt = now_s() - t0;
                double bytes = (double)s.n * sizeof(double) * (op == 0 ? 1 : 3);
                if (r > 0) res[op][r - 1] = bytes / dt / 1e9;
            }
            qsort(res[op], (size_t)reps, sizeof(double), cmp);
        }
        s.op = -1;
        pthread_barrier_wait(&s.start);
        for (int i = 1; i < T; i++) pthread_join(th[i], NULL);
        pthread_barrier_destroy(&s.start);
        pthread_barrier_destroy(&s.end);
        printf("%s\n  {\"threads\": %d, \"mib_per_array\": %zu, \"reps\": %d, \"read_gbs\": %.2f, "
               "\"read_gbs_median\": %.2f, \"triad_gbs\": %.2f, \"triad_gbs_median\": %.2f}",
               ti ? "," : "", T, mib, reps, res[0][reps - 1], res[0][reps / 2], res[1][reps - 1],
               res[1][reps / 2]);
        fflush(stdout);
    }
    printf("\n]\n");
    return 0;
}
