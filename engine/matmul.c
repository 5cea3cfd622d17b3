/*
 * matmul.c — matrix products of the forward pass: y (B, out) = x (B, in) · Wᵀ for a weight of any
 * type. Activations are converted once to the weight's vec_dot type, then the weight rows are
 * split across the pool so each thread streams its share of the weights once for all B rows.
 * It does not own buffers: the caller passes the pool and the conversion buffer.
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
};

static void matmul_convert(void *arg, int ith, int nth) {
    struct matmul_job *j = arg;
    const struct eng_type_traits *vt = eng_type_traits(j->tr->vec_dot_type);
    int64_t in = j->w->ne[0];
    for (int b = ith; b < j->B; b += nth)
        vt->from_float(j->x + (size_t)b * in, (uint8_t *)j->xq + (size_t)b * j->xq_row, in);
}

static void matmul_rows(void *arg, int ith, int nth) {
    struct matmul_job *j = arg;
    int64_t in = j->w->ne[0];
    int64_t n = j->rows ? j->n_rows : j->w->ne[1];
    size_t wrow = eng_row_size(j->w->type, in);
    /* Contiguous ranges, so each thread streams its part of the weights once. */
    int64_t per = (n + nth - 1) / nth, r0 = per * ith, r1 = ENG_MIN(n, r0 + per);
    for (int64_t r = r0; r < r1; r++) {
        int64_t wr = j->rows ? j->rows[r] : r;
        const uint8_t *wp = (const uint8_t *)j->w->data + (size_t)wr * wrow;
        for (int b = 0; b < j->B; b++)
            j->tr->vec_dot(in, &j->y[(size_t)b * j->ldy + r], wp,
                           (const uint8_t *)j->xq + (size_t)b * j->xq_row);
    }
}

void eng_matmul(struct eng_pool *pool, void *qbuf, const struct eng_tensor *w, const float *x,
                int B, float *y, int64_t ldy, const int32_t *rows, int n_rows) {
    struct matmul_job j = {w, eng_type_traits(w->type), x, NULL, 0, B, y, ldy, rows, n_rows};
    if (j.tr->vec_dot_type == ENG_TYPE_F32) {
        j.xq = x;
        j.xq_row = (size_t)w->ne[0] * sizeof(float);
    } else {
        j.xq = qbuf;
        j.xq_row = eng_row_size(j.tr->vec_dot_type, w->ne[0]);
        eng_pool_run(pool, matmul_convert, &j);
    }
    eng_pool_run(pool, matmul_rows, &j);
}
