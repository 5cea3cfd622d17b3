/*
 * matmul.c — matrix products of the forward pass: y (B, out) = x (B, in) · Wᵀ for a weight of any
 * type. Activations are converted once to the weight's vec_dot type (on the calling thread for a
 * few rows, across the pool for many), then the weight rows are handed out to the pool's threads
 * in contiguous chunks from a shared counter, so each thread streams its chunks of the weights
 * once for all B rows and the threads finish together even when one core is slowed down.
 *
 * Weights are read in place from the mapping: nothing is repacked or copied. It does not own
 * buffers: the caller passes the pool and the conversion buffer.
 */
#include "internal.h"

struct matmul_job {
    const struct eng_tensor *w;
    const struct eng_type_traits *tr;
    const float *x; /* (B, in) */
    const void *xq; /* (B, in) in vec_dot_type */
    size_t xq_row;  /* bytes per converted row */
    int B;
    float *y;            /* (B, out) */
    int64_t ldy;         /* row stride of y */
    const int32_t *rows; /* only these weight rows (NULL: all) */
    int n_rows;
    int64_t chunk;     /* weight rows per work item */
    atomic_llong next; /* first row of the next unclaimed chunk */
};

static void convert_rows(struct matmul_job *j, int b0, int b1) {
    const struct eng_type_traits *vt = eng_type_traits(j->tr->vec_dot_type);
    int64_t in = j->w->ne[0];
    for (int b = b0; b < b1; b++)
        vt->from_float(j->x + (size_t)b * in, (uint8_t *)j->xq + (size_t)b * j->xq_row, in);
}

static void matmul_convert(void *arg, int ith, int nth) {
    struct matmul_job *j = arg;
    int per = (j->B + nth - 1) / nth, b0 = per * ith, b1 = ENG_MIN(j->B, b0 + per);
    if (b0 < b1) convert_rows(j, b0, b1);
}

static void matmul_rows(void *arg, int ith, int nth) {
    struct matmul_job *j = arg;
    int64_t in = j->w->ne[0];
    int64_t n = j->rows ? j->n_rows : j->w->ne[1];
    size_t wrow = eng_row_size(j->w->type, in);
    const uint8_t *xq = j->xq;
    for (;;) {
        int64_t r0 = atomic_fetch_add_explicit(&j->next, j->chunk, memory_order_relaxed);
        if (r0 >= n) break;
        int64_t r1 = ENG_MIN(n, r0 + j->chunk);
        for (int64_t r = r0; r < r1; r++) { /* hot loop: one weight row, all B activations */
            int64_t wr = j->rows ? j->rows[r] : r;
            const uint8_t *wp = (const uint8_t *)j->w->data + (size_t)wr * wrow;
            for (int b = 0; b < j->B; b++)
                j->tr->vec_dot(in, &j->y[(size_t)b * j->ldy + r], wp, xq + (size_t)b * j->xq_row);
        }
    }
}

void eng_matmul(struct eng_pool *pool, void *qbuf, const struct eng_tensor *w, const float *x,
                int B, float *y, int64_t ldy, const int32_t *rows, int n_rows) {
    struct matmul_job j = {.w = w,
                           .tr = eng_type_traits(w->type),
                           .x = x,
                           .B = B,
                           .y = y,
                           .ldy = ldy,
                           .rows = rows,
                           .n_rows = n_rows};
    int nth = eng_pool_size(pool);
    if (j.tr->vec_dot_type == ENG_TYPE_F32) {
        j.xq = x;
        j.xq_row = (size_t)w->ne[0] * sizeof(float);
    } else {
        j.xq = qbuf;
        j.xq_row = eng_row_size(j.tr->vec_dot_type, w->ne[0]);
        if (B < 2 * nth || nth == 1)
            convert_rows(&j, 0, B); /* cheaper than a pool round trip */
        else
            eng_pool_run(pool, matmul_convert, &j);
    }
    /* About 8 chunks per thread (enough to even out a slow core), at least 16 rows each. */
    int64_t n = rows ? n_rows : w->ne[1];
    j.chunk = ENG_MAX(16, (n + 8 * nth - 1) / (8 * nth));
    atomic_init(&j.next, 0);
    eng_pool_run(pool, matmul_rows, &j);
}
