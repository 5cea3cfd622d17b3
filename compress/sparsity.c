/*
 * sparsity.c — measures whether pruning would pay; it never prunes the output. For every weight
 * matrix (on the same row sample as the error table) it prunes by Wanda score |W_ij| * ||x_j||
 * (||x_j|| from the column importance, the mean squared activation of input j) — 2:4 (the two
 * highest-scored of every four consecutive inputs kept) and unstructured 50% (the highest-scored
 * half of each row kept) — quantizes the kept weights to 4 bits with the importance-weighted q4_0
 * quantizer (quantize_imp, the same scale search the dense candidates get; pruned weights are 0
 * and stay exactly 0) and computes the importance-weighted squared error against the unpruned
 * row. The bits a real storage format would need are counted honestly:
 *   2:4:          16 kept 4-bit values + 8 groups x 3-bit pattern (6 choices) + fp16 scale
 *                 = 104 bits per 32 weights = 3.25 bits per weight;
 *   unstructured: 1-bit mask + 16 kept 4-bit values + fp16 scale = 112 bits = 3.5 bpw.
 * The result is compared with the dense formats' error at the same bits per weight (log-linear
 * interpolation between the tensor's candidates). Decode is bound by memory bandwidth, so time
 * follows bytes: a sparse format could pay only where its error is below the dense frontier.
 * Even then it is not offered: this version has no sparse storage format with its own kernels,
 * so pruned weights are never written. The figures say whether building one would be worth it.
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

/* Ascending by score; among equal scores the later column first (it is pruned first). */
static int by_score(const void *a, const void *b) {
    const struct scored *x = a, *y = b;
    if (x->score != y->score) return x->score < y->score ? -1 : 1;
    return x->j > y->j ? -1 : x->j < y->j;
}

int cmp_sparse_mask(const float *w, const float *imp, int64_t n, enum cmp_sparse_kind kind,
                    uint8_t *keep) {
    if (kind == CMP_SPARSE_24) {
        for (int64_t g = 0; g < n; g += 4) {
            int64_t m = n - g < 4 ? n - g : 4;
            float sc[4];
            for (int64_t k = 0; k < m; k++) sc[k] = fabsf(w[g + k]) * sqrtf(imp[g + k]);
            /* keep an input when fewer than two in its group outrank it (earlier wins ties) */
            for (int64_t k = 0; k < m; k++) {
                int above = 0;
                for (int64_t o = 0; o < m; o++) above += sc[o] > sc[k] || (sc[o] == sc[k] && o < k);
                keep[g + k] = m < 4 || above < 2;
            }
        }
        return 0;
    }
    struct scored *sc = malloc(sizeof(*sc) * (size_t)(n ? n : 1));
    if (!sc) return eng_fail(ENG_ENOMEM, "out of memory");
    for (int64_t j = 0; j < n; j++) sc[j] = (struct scored){fabsf(w[j]) * sqrtf(imp[j]), j};
    qsort(sc, (size_t)n, sizeof(*sc), by_score);
    for (int64_t k = 0; k < n; k++) keep[sc[k].j] = k >= n / 2;
    free(sc);
    return 0;
}

struct sp_job {
    struct cmp_tensor *t;
    struct cmp_sparse_eval *ev;
    bool plain;
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
    uint8_t *q = malloc(qrs), *keep = malloc((size_t)n);
    for (int k = 0; k < CMP_SPARSE_COUNT; k++) ev->err[k] = INFINITY;
    if (!x || !q || !keep || n % 32) goto out;
    float *p = x + n, *y = x + 2 * n;
    for (int k = 0; k < CMP_SPARSE_COUNT; k++) {
        double err = 0.0;
        int64_t sampled = 0;
        for (int64_t r = 0; r < rows; r += step, sampled++) {
            st->to_float((const uint8_t *)src->data + (size_t)r * srs, x, n);
            if (cmp_sparse_mask(x, t->imp, n, (enum cmp_sparse_kind)k, keep)) goto out;
            for (int64_t c = 0; c < n; c++) p[c] = keep[c] ? x[c] : 0.0f;
            /* the kept values with the same importance-weighted scale search the dense
             * candidates get; a pruned 0 is level 0 of the symmetric grid, exactly 0 */
            if (q4->quantize_imp && !j->plain)
                q4->quantize_imp(p, q, n, t->imp);
            else
                q4->from_float(p, q, n);
            q4->to_float(q, y, n);
            for (int64_t c = 0; c < n; c++) {
                double d = (double)x[c] - (keep[c] ? y[c] : 0.0f);
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
    free(q);
    free(keep);
}

int cmp_sparsity_eval(struct cmp_tensor *t, int n_t, int n_threads, bool plain,
                      struct cmp_sparse_eval *ev) {
    struct sp_job j = {t, ev, plain};
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
