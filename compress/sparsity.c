/*
 * sparsity.c — measures whether pruning would pay. For every weight matrix (on the same row
 * sample as the error table) it prunes by Wanda score |W_ij| * ||x_j|| — 2:4 (two of every four
 * consecutive inputs kept) and unstructured 50% — quantizes the kept weights to 4 bits (q4_0
 * values, fp16 scale per 32) and computes the importance-weighted error. The bits a real storage
 * format needs are counted honestly:
 *   2:4:          16 kept 4-bit values + 8 groups x 3-bit pattern (6 choices) + fp16 scale
 *                 = 104 bits per 32 weights = 3.25 bits per weight;
 *   unstructured: 1-bit mask + 16 kept 4-bit values + fp16 scale = 112 bits = 3.5 bpw.
 * The result is compared with the dense formats' error at the same bits per weight (log-linear
 * interpolation between the tensor's candidates). Decode is bound by memory bandwidth, so time
 * follows bytes: a sparse format pays only where its error is below the dense frontier.
 * It does not write sparse tensors: no format is offered unless this measurement says it pays.
 */
#include "internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define SPARSE_SAMPLE_ROWS 512

static const double sparse_bpw[CMP_SPARSE_COUNT] = {3.25, 3.5};

const char *cmp_sparse_name(enum cmp_sparse_kind k) {
    return k == CMP_SPARSE_24 ? "2:4" : "unstructured-50%";
}

double cmp_sparse_bpw(enum cmp_sparse_kind k) {
    return sparse_bpw[k];
}

struct scored {
    float score;
    int64_t j;
};

static int by_score(const void *a, const void *b) {
    float x = ((const struct scored *)a)->score, y = ((const struct scored *)b)->score;
    return x < y ? -1 : x > y;
}

/* Zeroes the lower-scored half: the two lowest of every group of 4 (2:4), or the lowest 50% of
 * the row (unstructured). */
static void prune(float *x, const float *imp, int64_t n, enum cmp_sparse_kind kind,
                  struct scored *sc) {
    for (int64_t j = 0; j < n; j++) sc[j] = (struct scored){fabsf(x[j]) * sqrtf(imp[j]), j};
    if (kind == CMP_SPARSE_24) {
        for (int64_t g = 0; g + 4 <= n; g += 4) {
            int64_t lo = g, lo2 = g + 1; /* lowest and second lowest */
            if (sc[lo2].score < sc[lo].score) lo = g + 1, lo2 = g;
            for (int64_t j = g + 2; j < g + 4; j++) {
                if (sc[j].score < sc[lo].score)
                    lo2 = lo, lo = j;
                else if (sc[j].score < sc[lo2].score)
                    lo2 = j;
            }
            x[lo] = x[lo2] = 0.0f;
        }
        return;
    }
    qsort(sc, (size_t)n, sizeof(*sc), by_score);
    for (int64_t j = 0; j < n / 2; j++) x[sc[j].j] = 0.0f;
}

struct sp_job {
    struct cmp_tensor *t;
    struct cmp_sparse_eval *ev;
};

static void eval_one(void *arg, int64_t i) {
    struct sp_job *j = arg;
    struct cmp_tensor *t = &j->t[i];
    struct cmp_sparse_eval *ev = &j->ev[i];
    const struct eng_tensor *src = t->src;
    int64_t n = src->ne[0], rows = src->ne[1];
    int64_t step = rows > SPARSE_SAMPLE_ROWS ? rows / SPARSE_SAMPLE_ROWS : 1;
    const struct eng_type_traits *st = eng_type_traits(src->type),
                                 *q4 = eng_type_traits(ENG_TYPE_Q4_0);
    size_t srs = eng_row_size(src->type, n), qrs = eng_row_size(ENG_TYPE_Q4_0, n);
    float *x = malloc(sizeof(float) * (size_t)n * 3);
    struct scored *sc = malloc(sizeof(*sc) * (size_t)n);
    uint8_t *q = malloc(qrs);
    for (int k = 0; k < CMP_SPARSE_COUNT; k++) ev->err[k] = INFINITY;
    if (!x || !sc || !q || n % 32) goto out;
    float *p = x + n, *y = x + 2 * n;
    for (int k = 0; k < CMP_SPARSE_COUNT; k++) {
        double err = 0.0;
        int64_t sampled = 0;
        for (int64_t r = 0; r < rows; r += step, sampled++) {
            st->to_float((const uint8_t *)src->data + (size_t)r * srs, x, n);
            memcpy(p, x, sizeof(float) * (size_t)n);
            prune(p, t->imp, n, (enum cmp_sparse_kind)k, sc);
            q4->from_float(p, q, n);
            q4->to_float(q, y, n);
            for (int64_t c = 0; c < n; c++) {
                double d = (double)x[c] - y[c];
                err += t->imp[c] * d * d;
            }
        }
        ev->err[k] = err * (double)rows / (double)sampled;
    }
out:
    /* the dense frontier at each sparse format's size */
    for (int k = 0; k < CMP_SPARSE_COUNT; k++) {
        double b = sparse_bpw[k], params = (double)n * (double)rows;
        int below = -1, above = -1;
        for (int c = 0; c < t->n_cand; c++) {
            double bc = 8.0 * (double)t->bytes[c] / params;
            if (!(t->werr[c] > 0)) continue;
            if (bc <= b && (below < 0 || bc > 8.0 * (double)t->bytes[below] / params)) below = c;
            if (bc >= b && (above < 0 || bc < 8.0 * (double)t->bytes[above] / params)) above = c;
        }
        double dense = NAN;
        if (below >= 0 && above >= 0 && below != above) {
            double b0 = 8.0 * (double)t->bytes[below] / params,
                   b1 = 8.0 * (double)t->bytes[above] / params;
            double w = (b - b0) / (b1 - b0);
            dense = exp((1 - w) * log(t->werr[below]) + w * log(t->werr[above]));
        } else if (below >= 0 || above >= 0) {
            dense = t->werr[below >= 0 ? below : above];
        }
        ev->dense_err[k] = dense;
    }
    free(x);
    free(sc);
    free(q);
}

int cmp_sparsity_eval(struct cmp_tensor *t, int n_t, int n_threads, struct cmp_sparse_eval *ev) {
    struct sp_job j = {t, ev};
    cmp_parallel_for(n_threads, n_t, eval_one, &j);
    return 0;
}

void cmp_sparsity_summary(const struct cmp_sparse_eval *ev, int n_t, double *median_ratio,
                          int *n_pays) {
    double *r = malloc(sizeof(double) * (size_t)(n_t ? n_t : 1));
    for (int k = 0; k < CMP_SPARSE_COUNT; k++) {
        int m = 0;
        n_pays[k] = 0;
        for (int i = 0; i < n_t && r; i++) {
            if (!isfinite(ev[i].err[k]) || !(ev[i].dense_err[k] > 0)) continue;
            r[m++] = ev[i].err[k] / ev[i].dense_err[k];
            n_pays[k] += ev[i].err[k] < ev[i].dense_err[k];
        }
        /* median by selection sort of the small array */
        for (int a = 0; a < m; a++)
            for (int b = a + 1; b < m; b++)
                if (r[b] < r[a]) {
                    double tmp = r[a];
                    r[a] = r[b];
                    r[b] = tmp;
                }
        median_ratio[k] = m ? r[m / 2] : NAN;
    }
    free(r);
}
