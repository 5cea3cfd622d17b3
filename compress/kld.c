/*
 * kld.c — KL divergence of next-token distributions to a base model's, accumulated per position:
 * mean, 99th percentile and top-1 agreement (the figures `edgellm perplexity --kld-base` and the
 * compression report print), defined as llama.cpp's perplexity tool defines them so the figures
 * compare: KL(P_base || P_model) in nats per position, p99 interpolated between ranks, top-1 =
 * share of positions whose argmax (first index on ties) is the same. It does not run models.
 */
#include "compress.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

struct cmp_kld_acc {
    double *kl; /* (n) per-position divergences */
    int n, cap;
    int top1_same;
};

struct cmp_kld_acc *cmp_kld_acc_new(void) {
    struct cmp_kld_acc *a = calloc(1, sizeof(*a));
    if (!a) eng_fail(ENG_ENOMEM, "out of memory");
    return a;
}

void cmp_kld_acc_free(struct cmp_kld_acc *a) {
    if (!a) return;
    free(a->kl);
    free(a);
}

/* log-sum-exp of x (n), and its argmax */
static double logsumexp(const float *x, int n, int *argmax) {
    float mx = x[0];
    int am = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > mx) mx = x[i], am = i;
    double s = 0.0;
    for (int i = 0; i < n; i++) s += exp((double)x[i] - mx);
    *argmax = am;
    return mx + log(s);
}

double cmp_kld_acc_add(struct cmp_kld_acc *a, const float *base, const float *logits, int n) {
    int ab, am;
    double zb = logsumexp(base, n, &ab), zm = logsumexp(logits, n, &am);
    double kl = 0.0;
    for (int i = 0; i < n; i++) {
        double lb = base[i] - zb, lm = logits[i] - zm;
        kl += exp(lb) * (lb - lm);
    }
    if (kl < 0) kl = 0; /* rounding */
    if (a) {
        if (a->n == a->cap) {
            int cap = a->cap ? 2 * a->cap : 1024;
            double *p = realloc(a->kl, (size_t)cap * sizeof(double));
            if (!p) return kl; /* statistics lose this position; the value is still returned */
            a->kl = p;
            a->cap = cap;
        }
        a->kl[a->n++] = kl;
        a->top1_same += ab == am;
    }
    return kl;
}

static int cmp_double(const void *x, const void *y) {
    double a = *(const double *)x, b = *(const double *)y;
    return a < b ? -1 : a > b;
}

void cmp_kld_acc_stats(const struct cmp_kld_acc *a, struct cmp_kld_stats *out) {
    memset(out, 0, sizeof(*out));
    if (!a || a->n == 0) return;
    double sum = 0.0;
    for (int i = 0; i < a->n; i++) sum += a->kl[i];
    out->mean_kld = sum / a->n;
    out->p99_kld = NAN;
    double *sorted = malloc((size_t)a->n * sizeof(double));
    if (sorted) {
        /* llama.cpp's percentile: linear interpolation between the two nearest ranks of the
         * sorted values, at rank 0.99 * (n - 1) */
        memcpy(sorted, a->kl, (size_t)a->n * sizeof(double));
        qsort(sorted, (size_t)a->n, sizeof(double), cmp_double);
        double r = 0.99 * (a->n - 1);
        int k = (int)r;
        double f = r - k;
        out->p99_kld = k + 1 < a->n ? (1 - f) * sorted[k] + f * sorted[k + 1] : sorted[k];
        free(sorted);
    }
    out->top1_agreement = (double)a->top1_same / a->n;
    out->n_positions = a->n;
}
