/*
 * matmul.c — matrix products of the forward pass: y (B, out) = x (B, in) · Wᵀ for a weight of any
 * type, by one of three paths chosen from the type and the number of activation rows B:
 *
 * - vec_dot (decode, few rows): activations converted once to the weight's vec_dot type, weight
 *   rows handed out to the pool in chunks; each row is read once for all B activations. This is
 *   the memory-bound path: every weight byte is read once per step.
 * - tile (quantized weights, B >= the type's tile_min_b): chunks of weight rows are repacked
 *   (repack.c) into 8-bit codes with per-16 scales and multiplied with the activations' 8-bit
 *   codes — the same quantization as the vec_dot path, so results agree to float rounding — by
 *   the tile kernel (gemm.c), nr rows × nc columns at a time: compute-bound prefill, one kernel
 *   for all formats.
 * - sgemm (F32/F16/BF16 weights, B >= ENG_SGEMM_MIN_B): chunks of rows converted to F32 and
 *   multiplied by OpenBLAS sgemm (single-threaded inside; the pool provides the threads); F16
 *   on the AVX-512 level instead by a 4 × 4 tile kernel reading the fp16 rows in place.
 *
 * The thresholds were measured with tools/bench/kernels.c (BENCHMARKS.md, Kernels). Weights are
 * read in place, from the mapping or from the interleaved copy a model made at load (traits
 * row_group > 1: the vec_dot path takes whole row groups, the others read rows back out into a
 * thread's rowbuf); the repacked / converted chunks are scratch of the workspace, a few hundred
 * kilobytes per thread, never a second copy of the weights. It does not own buffers.
 */
#include "quants.h"

#include <cblas.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* Weight rows per work item of the tile and sgemm paths, and activation rows per pass over a
 * repacked chunk (keeps those activations in L2 while the chunk's rows run over them). */
#define TILE_CHUNK  16
#define SGEMM_CHUNK 64
#define COL_BLOCK   64
#define FTILE_COLS  16
/* Decode products of PRIV_MIN_B to PRIV_MAX_B activation rows: each thread converts them itself
 * (convert_private). */
#define PRIV_MIN_B 2
#define PRIV_MAX_B 8

/* ---- workspace ---- */

struct eng_mm_ws {
    int max_b, n_threads;
    int64_t max_in;
    size_t qrow;     /* bytes of the largest converted row */
    void *qbuf;      /* (B, max_in) activations in a vec_dot type, sized for the largest */
    void *qbuf2;     /* (ENG_FUSED_MAX_B, max_in) a second vec_dot type in fused products */
    int8_t *acodes;  /* (B, max_in) activation codes, contiguous (tile path) */
    float *ad;       /* (B, max_in/32) activation scale per 32 codes as floats (tile path) */
    float *ams;      /* (B, max_in/16) scale × sum of each 16 codes (tile path, minimums) */
    int8_t *wq;      /* (T, TILE_CHUNK, max_in) repacked codes */
    float *s16;      /* (T, TILE_CHUNK, max_in/16) repacked scales */
    float *m16;      /* (T, TILE_CHUNK, max_in/16) repacked minimums */
    float *s8;       /* (T, TILE_CHUNK, max_in/4) scales spread to the tile kernel's lanes */
    float *ftile;    /* (T, SGEMM_CHUNK, max_in) rows converted to F32 (sgemm path) */
    uint8_t *rowbuf; /* (T, rowbuf_len) one row read out of an interleaved weight */
    size_t rowbuf_len;
    uint8_t *qpriv; /* (T, 2, PRIV_MAX_B, qrow) each thread's own converted activations */
};

struct eng_mm_ws *eng_mm_ws_new(int64_t max_in, int max_b, int n_threads) {
    /* the largest converted row: Q8_K (292 bytes per 256) and Q8_1 (36 per 32) stay below this */
    size_t qrow = (size_t)max_in * 5 / 4 + 640;
    struct eng_mm_ws *ws = calloc(1, sizeof(*ws));
    if (!ws) return NULL;
    size_t B = (size_t)max_b, T = (size_t)n_threads, in = (size_t)max_in;
    ws->max_b = max_b, ws->n_threads = n_threads, ws->max_in = max_in;
    /* the converted activations 64-byte aligned (a large malloc starts 16 bytes into a page):
     * the kernels' 64-byte activation loads then never straddle two cache lines */
    qrow = (qrow + 63) / 64 * 64;
    ws->qbuf = aligned_alloc(64, qrow * B);
    ws->qbuf2 = aligned_alloc(64, qrow * ENG_FUSED_MAX_B);
    ws->qrow = qrow;
    ws->acodes = malloc(B * in + 32);
    ws->ad = malloc(B * (in / 32 + 1) * sizeof(float));
    ws->ams = malloc(B * (in / 16 + 1) * sizeof(float));
    ws->wq = malloc(T * TILE_CHUNK * in + 1);
    ws->s16 = malloc(T * TILE_CHUNK * (in / 16 + 1) * sizeof(float));
    ws->m16 = malloc(T * TILE_CHUNK * (in / 16 + 1) * sizeof(float));
    ws->s8 = malloc(T * TILE_CHUNK * (in / 4 + 8) * sizeof(float));
    ws->ftile = malloc(T * SGEMM_CHUNK * in * sizeof(float) + 1);
    ws->rowbuf_len = (2 * in + 63) / 64 * 64; /* interleaved row types are below 2 bytes a weight */
    ws->rowbuf = aligned_alloc(64, T * ws->rowbuf_len + 64);
    ws->qpriv = aligned_alloc(64, T * 2 * PRIV_MAX_B * qrow);
    if (!ws->qbuf || !ws->qbuf2 || !ws->acodes || !ws->ad || !ws->ams || !ws->wq || !ws->s16 ||
        !ws->m16 || !ws->s8 || !ws->ftile || !ws->rowbuf || !ws->qpriv) {
        eng_mm_ws_free(ws);
        return NULL;
    }
    return ws;
}

void eng_mm_ws_free(struct eng_mm_ws *ws) {
    if (!ws) return;
    free(ws->qbuf), free(ws->qbuf2), free(ws->acodes), free(ws->ad), free(ws->ams), free(ws->wq),
        free(ws->s16), free(ws->m16);
    free(ws->s8), free(ws->ftile), free(ws->rowbuf), free(ws->qpriv);
    free(ws);
}

size_t eng_mm_ws_bytes(const struct eng_mm_ws *ws) {
    size_t B = (size_t)ws->max_b, T = (size_t)ws->n_threads, in = (size_t)ws->max_in;
    return (B + ENG_FUSED_MAX_B) * ws->qrow + B * in + B * (in / 32 + in / 16 + 2) * sizeof(float) +
           T * TILE_CHUNK * (in + (in / 16 * 2 + in / 4 + 10) * sizeof(float)) +
           T * SGEMM_CHUNK * in * sizeof(float) + T * ws->rowbuf_len +
           T * 2 * PRIV_MAX_B * ws->qrow;
}

/* OpenBLAS runs single-threaded inside our pool threads. */
static pthread_once_t blas_once = PTHREAD_ONCE_INIT;
static void blas_init(void) {
    openblas_set_num_threads(1);
}

/* ---- interleaved weights ---- */

/* The traits that read w's rows one at a time: its row type's for an interleaved layout. */
static const struct eng_type_traits *row_traits(const struct eng_type_traits *tr) {
    return tr->row_group > 1 ? eng_type_traits(tr->row_type) : tr;
}

/* Weight row r of w as a row of its row type: in place, or read out into buf (a thread's
 * rowbuf) from an interleaved layout. */
static const uint8_t *weight_row(const struct eng_type_traits *tr, const struct eng_tensor *w,
                                 int64_t r, size_t wrow, uint8_t *buf) {
    if (tr->row_group <= 1) return (const uint8_t *)w->data + (size_t)r * wrow;
    eng_deinterleave_row(w->type, w->data, w->ne[0], r, buf);
    return buf;
}

static uint8_t *thread_rowbuf(struct eng_mm_ws *ws, int ith) {
    return ws->rowbuf + (size_t)ith * ws->rowbuf_len;
}

/* Batched decode's activations, converted by every thread of a job into its own buffer k (0, 1)
 * as the job starts: B rows of x (in wide) as type vt. A conversion split over the threads took
 * a pool job of its own before each plain product (then every thread read what the others
 * wrote), and the caller's conversion before a fused product kept the other threads waiting;
 * this costs each thread the whole conversion, a few microseconds at most for PRIV_MAX_B rows.
 * Against those (edgellm bench, L110M Q4_0, 2 threads, four sequences, alternated): 2200.5 ->
 * 2229.2 tok/s (7 of 10 rounds). One row stays with the caller (a pool round trip costs more than
 * its conversion): converted by every thread, edgellmd's one stream measured about 4% slower.
 * Nor did converting once within the job pay, each row by whichever thread took it from a
 * counter, into one buffer the threads then read after waiting for the last row: 0.953 of
 * this (3 of 12 rounds faster). A thread's conversion is 4-7% of its samples at four
 * sequences (perf), 40% of those samples on the first load of the floats, which the calling
 * thread or both threads wrote just before. Nor did converting in the job before: the down
 * product's activations converted by the gate/up product's threads as each finished its rows'
 * GLU (claims of 256 rows, one shared buffer the down product then read; bit for bit the same
 * results). L110M Q4_0 tg128 (-r 10), 16 rounds of three builds in turn, the build before twice:
 * one sequence 0.998 of the first copy (faster in 8 of 16), four 1.005 (12 of 16), where the
 * second copy came out 1.001 and 0.988: even, within what identical builds differ by here. */
/* Whether the threads of a product with B activation rows convert them themselves. */
static bool convert_each(int nth, int B) {
    return nth > 1 && B >= PRIV_MIN_B && B <= PRIV_MAX_B;
}
static void convert_to(enum eng_type vt, const float *x, int64_t in, int B, uint8_t *buf) {
    const struct eng_type_traits *vtr = eng_type_traits(vt);
    const size_t row = eng_row_size(vt, in);
    for (int t = 0; t < B; t++) vtr->from_float(x + (size_t)t * in, buf + (size_t)t * row, in);
}
static const uint8_t *convert_private(struct eng_mm_ws *ws, int ith, int k, enum eng_type vt,
                                      const float *x, int64_t in, int B) {
    uint8_t *buf = ws->qpriv + ((size_t)ith * 2 + (size_t)k) * PRIV_MAX_B * ws->qrow;
    convert_to(vt, x, in, B, buf);
    return buf;
}

/* ---- jobs ---- */

/* ---- row split of the decode paths (internal.h) ----
 * One share per thread measured faster than four chunks per thread handed out from one counter
 * (each chunk a new stream) on small models: L110M q4_0 tg 2 threads 545-597 tok/s against
 * 604-611. A share's front and back are one 64-bit word, changed by compare-and-swap. A claim
 * takes an eighth of a share: with a sixteenth the claims' compare-and-swaps, their cache line
 * pulled over by the other thread's scans at a job's end, took 4.3% of edgellmd's cycles on
 * one L110M stream (perf); builds alternated, L110M Q4_0 tg128 722.3 -> 744.6 tok/s (7 of 10)
 * and 763.6 -> 801.2 (6 of 8), four sequences even (0.997), L1B Q4_0 61.7 -> 62.5; a quarter
 * lost on L1B (56.5, 1 of 6).
 * Claims shrink as a share empties: the owner takes a third of what is left of it, never less
 * than that eighth (the step), and a thread that steals takes half of what is left of the
 * other share. The first claims are large and few, the last ones small, so threads still end
 * together, and fewer claims meet the other thread at a share's line. Against claims of one
 * step (builds alternated, edgellm bench, 2 threads): L110M Q4_0 four sequences 1856.2 ->
 * 1992.1 tok/s (6 of 6 rounds), one sequence 809.4 -> 830.6 (6 of 8), pp512 2249.2 -> 2321.3
 * (4 of 4); L1B Q4_0 one sequence 69.8 -> 71.6 (4 of 4), four 251.1 -> 254.4 (4 of 4). In
 * edgellmd (L110M, four pairs of fresh daemons, the order swapped every other pair): one stream
 * +6.8%, +5.7%, +7.3%, +0.5%; four streams +1.7%, 0, 0, +1.1%. Attention's work items
 * (eng_item_split_init) keep one item per claim: shrinking claims there were even in edgellm
 * bench (L110M four sequences 2351.2 / 2355.2 tok/s, one 1134.7 / 1120.5) and in edgellmd one
 * stream 1.7-6% slower in three pairs of four, four streams 0.6-2% in three. */
#define SPLIT_DIV 8
void eng_row_split_init(struct eng_row_split *sp, int64_t rows, int nth, int align) {
    sp->n = nth < ENG_SPLIT_SHARES ? nth : ENG_SPLIT_SHARES;
    const int64_t al = ENG_MAX(1, align);
    int64_t share = ((rows + sp->n - 1) / sp->n + al - 1) / al * al;
    sp->step = (ENG_MAX(8, share / SPLIT_DIV) + al - 1) / al * al;
    sp->align = al;
    sp->shrink = true;
    for (int i = 0; i < sp->n; i++) {
        uint64_t f = (uint64_t)ENG_MIN(rows, share * i),
                 b = (uint64_t)ENG_MIN(rows, share * (i + 1));
        atomic_init(&sp->s[i].fb, f << 32 | b);
    }
}

void eng_item_split_init(struct eng_row_split *sp, int64_t n, int nth) {
    eng_row_split_init(sp, n, nth, 1);
    sp->step = 1;
    sp->shrink = false;
}

bool eng_row_split_claim(struct eng_row_split *sp, int ith, int64_t *r0, int64_t *r1) {
    const uint64_t step = (uint64_t)sp->step;
    atomic_ullong *own = &sp->s[ith % sp->n].fb;
    uint64_t v = atomic_load_explicit(own, memory_order_relaxed);
    for (;;) { /* own share, from the front */
        uint64_t f = v >> 32, b = v & 0xffffffffu;
        if (f >= b) break;
        uint64_t take = sp->shrink ? (b - f) / 3 : 0;
        take = take > step ? (take + sp->align - 1) / sp->align * sp->align : step;
        uint64_t nf = b - f > take ? f + take : b;
        if (atomic_compare_exchange_weak_explicit(own, &v, nf << 32 | b, memory_order_relaxed,
                                                  memory_order_relaxed)) {
            *r0 = (int64_t)f, *r1 = (int64_t)nf;
            return true;
        }
    }
    for (;;) { /* the back of the fullest other share */
        atomic_ullong *best = NULL;
        uint64_t most = 0;
        for (int i = 0; i < sp->n; i++) {
            uint64_t w = atomic_load_explicit(&sp->s[i].fb, memory_order_relaxed);
            uint64_t f = w >> 32, b = w & 0xffffffffu;
            if (b > f && b - f > most) most = b - f, best = &sp->s[i].fb;
        }
        if (!best) return false;
        v = atomic_load_explicit(best, memory_order_relaxed);
        uint64_t f = v >> 32, b = v & 0xffffffffu;
        if (f >= b) continue;
        uint64_t take = sp->shrink && (b - f) / 2 > step ? (b - f) / 2 : step;
        uint64_t nb = b - f > take ? (b - take) / (uint64_t)sp->align * (uint64_t)sp->align : f;
        if (nb < f) nb = f;
        if (atomic_compare_exchange_weak_explicit(best, &v, f << 32 | nb, memory_order_relaxed,
                                                  memory_order_relaxed)) {
            *r0 = (int64_t)nb, *r1 = (int64_t)b;
            return true;
        }
    }
}

/* ---- plain products ---- */

struct matmul_job {
    const struct eng_tensor *w;
    const struct eng_type_traits *tr;
    struct eng_mm_ws *ws;
    const float *x; /* (B, in) */
    const void *xq; /* (B, in) converted activations */
    size_t xq_row;  /* bytes per converted row */
    enum eng_type xq_type;
    int B;
    float *y;            /* (B, out) */
    int64_t ldy;         /* row stride of y */
    const int32_t *rows; /* only these weight rows (NULL: all) */
    int n_rows;
    atomic_llong next;          /* tile / sgemm: first row of the next unclaimed chunk */
    atomic_int next_b;          /* conversion: the next activation row to convert */
    bool conv_private;          /* each thread converts the activations itself (convert_private) */
    struct eng_tile tile;       /* fn NULL: not the tile path */
    struct eng_row_split split; /* vec_dot: the rows' shares */
};

static void convert_rows(struct matmul_job *j, int b0, int b1) {
    const struct eng_type_traits *vt = eng_type_traits(j->xq_type);
    const bool has_min = row_traits(j->tr)->repack_has_min;
    int64_t in = j->w->ne[0], nb = in / 32;
    for (int b = b0; b < b1; b++) {
        uint8_t *row = (uint8_t *)j->xq + (size_t)b * j->xq_row;
        vt->from_float(j->x + (size_t)b * in, row, in);
        if (!j->tile.fn) continue;
        /* The tile path reads the same 8-bit codes the vec_dot path would (so a token's result
         * does not depend on which path its batch took, up to float rounding), laid out
         * contiguously, with a float scale per 32 and, for formats with minimums, scale × sum
         * per 16. */
        int8_t *codes = j->ws->acodes + (size_t)b * in;
        float *ad = j->ws->ad + (size_t)b * nb, *ams = j->ws->ams + (size_t)b * nb * 2;
        for (int64_t k = 0; k < nb; k++) {
            const int8_t *qs;
            switch (j->xq_type) {
            case ENG_TYPE_Q8_K: {
                const struct eng_block_q8_k *blk = (const struct eng_block_q8_k *)row + k / 8;
                ad[k] = blk->d;
                qs = blk->qs + 32 * (k % 8);
                break;
            }
            case ENG_TYPE_Q8_1: {
                const struct eng_block_q8_1 *blk = (const struct eng_block_q8_1 *)row + k;
                ad[k] = eng_fp16_to_fp32(blk->d);
                qs = blk->qs;
                break;
            }
            default: {
                const struct eng_block_q8_0 *blk = (const struct eng_block_q8_0 *)row + k;
                ad[k] = eng_fp16_to_fp32(blk->d);
                qs = blk->qs;
            }
            }
            memcpy(codes + 32 * k, qs, 32);
            if (!has_min) continue;
            if (j->xq_type == ENG_TYPE_Q8_1) { /* its stored sum, rounded as vec_dot uses it */
                ams[2 * k] = eng_fp16_to_fp32(((const struct eng_block_q8_1 *)row + k)->s);
                ams[2 * k + 1] = 0.0f; /* q4_1 / q5_1 minimums are per 32: m·(ams0 + ams1) */
                continue;
            }
            int lo = 0, hi = 0;
            for (int i = 0; i < 16; i++) lo += qs[i], hi += qs[16 + i];
            ams[2 * k] = ad[k] * (float)lo;
            ams[2 * k + 1] = ad[k] * (float)hi;
        }
    }
}

static void matmul_convert(void *arg, int ith, int nth) {
    struct matmul_job *j = arg;
    (void)ith, (void)nth;
    for (int b; (b = atomic_fetch_add_explicit(&j->next_b, 1, memory_order_relaxed)) < j->B;)
        convert_rows(j, b, b + 1);
}

static int64_t n_out_rows(const struct matmul_job *j) {
    return j->rows ? j->n_rows : j->w->ne[1];
}

/* Weight rows per vec_dot_cols call when B > 1: a block that stays in L1 while every group of
 * ENG_DOT_COLS activation rows passes over it, and each group's activations stay in L1 across
 * the block's rows (one row per call read them from L2 again for every row: L1B pp64 137-141 ->
 * 189-192 tok/s on q4_0, 154-158 -> 197-200 on Q4_K_M). 4, 16 and 32 measured no better. */
#define COLS_ROW_BLOCK 8

/* y[b*ldy + r] for weight rows r0..r1-1 and all B activation rows, the rows in order (one
 * vec_dot_rows call for one activation row, blocks of COLS_ROW_BLOCK rows for several): each row
 * is one sequential stream from memory, which the hardware prefetchers follow (several rows
 * interleaved measured much slower in decode). */
static void dot_rows(const struct eng_type_traits *tr, const struct eng_tensor *w, int64_t r0,
                     int64_t r1, int64_t in, int B, const uint8_t *xq, size_t xq_row, float *y,
                     int64_t ldy, uint8_t *rowbuf) {
    size_t wrow = eng_row_size(w->type, in);
    const uint8_t *base = (const uint8_t *)w->data;
    if (B == 1 && tr->vec_dot_rows) {
        tr->vec_dot_rows(in, r1 - r0, &y[r0], base + (size_t)r0 * wrow, wrow, xq);
        return;
    }
    if (B > 1 && tr->vec_dot_cols) {
        /* Up to ENG_DOT_COLS activation rows per pass over a weight row; with more, the groups
         * take turns on a block of rows, which stays in L1 for the next group. With no more,
         * the whole range in one call: a kernel's pipeline then runs across all its rows
         * (L110M Q4_0 4 sequences, builds alternated, medians of 8 and of 10 rounds: blocks of
         * COLS_ROW_BLOCK 1118 and 1127 tok/s, the whole range 1132 and 1190). An interleaved
         * layout's blocks are whole row groups. */
        const int64_t blk = B <= ENG_DOT_COLS ? r1 - r0 : ENG_MAX(COLS_ROW_BLOCK, tr->row_group);
        for (int64_t rb = r0; rb < r1; rb += blk) { /* hot loop */
            int64_t nr = ENG_MIN(blk, r1 - rb);
            for (int b = 0; b < B; b += ENG_DOT_COLS)
                tr->vec_dot_cols(in, ENG_MIN(ENG_DOT_COLS, B - b), nr, &y[(size_t)b * ldy + rb],
                                 (size_t)ldy, base + (size_t)rb * wrow, wrow,
                                 xq + (size_t)b * xq_row, xq_row);
        }
        return;
    }
    /* one row at a time (an interleaved layout without kernels at this level: read out) */
    const struct eng_type_traits *rt = row_traits(tr);
    for (int64_t r = r0; r < r1; r++) { /* hot loop: one weight row, all B activations */
        const uint8_t *wp = weight_row(tr, w, r, wrow, rowbuf);
        for (int b = 0; b < B; b++)
            rt->vec_dot(in, &y[(size_t)b * ldy + r], wp, xq + (size_t)b * xq_row);
    }
}

static void matmul_rows(void *arg, int ith, int nth) {
    struct matmul_job *j = arg;
    int64_t in = j->w->ne[0];
    size_t wrow = eng_row_size(j->w->type, in);
    const uint8_t *xq =
        j->conv_private ? convert_private(j->ws, ith, 0, j->xq_type, j->x, in, j->B) : j->xq;
    int64_t r0, r1;
    uint8_t *rowbuf = thread_rowbuf(j->ws, ith);
    const struct eng_type_traits *rt = row_traits(j->tr);
    while (eng_row_split_claim(&j->split, ith, &r0, &r1)) {
        if (!j->rows) {
            dot_rows(j->tr, j->w, r0, r1, in, j->B, xq, j->xq_row, j->y, j->ldy, rowbuf);
            continue;
        }
        for (int64_t r = r0; r < r1; r++) { /* one weight row, all B activations */
            const uint8_t *wp = weight_row(j->tr, j->w, j->rows[r], wrow, rowbuf);
            for (int b = 0; b < j->B; b++)
                rt->vec_dot(in, &j->y[(size_t)b * j->ldy + r], wp, xq + (size_t)b * j->xq_row);
        }
    }
}

static void matmul_tile(void *arg, int ith, int nth) {
    struct matmul_job *j = arg;
    struct eng_mm_ws *ws = j->ws;
    const int64_t in = j->w->ne[0], nb = in / 32, n = j->w->ne[1];
    const size_t wrow = eng_row_size(j->w->type, in);
    int8_t *wq = ws->wq + (size_t)ith * TILE_CHUNK * ws->max_in;
    float *s16 = ws->s16 + (size_t)ith * TILE_CHUNK * (ws->max_in / 16 + 1);
    float *m16 = ws->m16 + (size_t)ith * TILE_CHUNK * (ws->max_in / 16 + 1);
    float *s8 = ws->s8 + (size_t)ith * TILE_CHUNK * (ws->max_in / 4 + 8);
    const struct eng_type_traits *f32 = eng_type_traits(ENG_TYPE_F32);
    const struct eng_type_traits *rt = row_traits(j->tr); /* repacks rows read out */
    for (;;) {
        int64_t r0 = atomic_fetch_add_explicit(&j->next, TILE_CHUNK, memory_order_relaxed);
        if (r0 >= n) break;
        int nr = (int)ENG_MIN(TILE_CHUNK, n - r0);
        for (int r = 0; r < nr; r++)
            rt->repack(weight_row(j->tr, j->w, r0 + r, wrow, thread_rowbuf(ws, ith)),
                       wq + (size_t)r * in, s16 + (size_t)r * nb * 2, m16 + (size_t)r * nb * 2, in);
        for (int64_t i = 0; i < (int64_t)nr * nb; i++) { /* lanes of the tile kernel */
            float a = s16[2 * i], b = s16[2 * i + 1], *o = s8 + 8 * i;
            o[0] = a, o[1] = a, o[2] = a, o[3] = a, o[4] = b, o[5] = b, o[6] = b, o[7] = b;
        }
        for (int c0 = 0; c0 < j->B; c0 += COL_BLOCK) { /* hot loop */
            int c1 = ENG_MIN(j->B, c0 + COL_BLOCK);
            for (int r = 0; r < nr; r += j->tile.r)
                for (int c = c0; c < c1; c += j->tile.c)
                    j->tile.fn(in, ENG_MIN(j->tile.r, nr - r), ENG_MIN(j->tile.c, c1 - c),
                               wq + (size_t)r * in, s8 + (size_t)r * nb * 8,
                               ws->acodes + (size_t)c * in, (size_t)in, ws->ad + (size_t)c * nb,
                               j->y + (size_t)c * j->ldy + r0 + r, j->ldy);
        }
        if (rt->repack_has_min)
            for (int c = 0; c < j->B; c++)
                for (int r = 0; r < nr; r++) {
                    float mdot;
                    f32->vec_dot(nb * 2, &mdot, m16 + (size_t)r * nb * 2,
                                 ws->ams + (size_t)c * nb * 2);
                    j->y[(size_t)c * j->ldy + r0 + r] += mdot;
                }
    }
}

/* F16 weights on the AVX-512 level: 4 × 4 tiles straight from the mapping (no conversion
 * buffer), columns in blocks that stay in cache while a chunk's rows run over them. */
static void matmul_ftile(void *arg, int ith, int nth) {
    struct matmul_job *j = arg;
    const int64_t in = j->w->ne[0], n = j->w->ne[1];
    for (;;) {
        int64_t r0 = atomic_fetch_add_explicit(&j->next, SGEMM_CHUNK, memory_order_relaxed);
        if (r0 >= n) break;
        int nr = (int)ENG_MIN(SGEMM_CHUNK, n - r0);
        const uint16_t *w = (const uint16_t *)j->w->data + (size_t)r0 * in;
        for (int c0 = 0; c0 < j->B; c0 += FTILE_COLS) { /* hot loop */
            int c1 = ENG_MIN(j->B, c0 + FTILE_COLS);
            for (int r = 0; r < nr; r += 4)
                for (int c = c0; c < c1; c += 4)
                    eng_ftile_f16_avx512(in, ENG_MIN(4, nr - r), ENG_MIN(4, c1 - c),
                                         w + (size_t)r * in, (size_t)in, j->x + (size_t)c * in,
                                         (size_t)in, j->y + (size_t)c * j->ldy + r0 + r, j->ldy);
        }
    }
}

static void matmul_sgemm(void *arg, int ith, int nth) {
    struct matmul_job *j = arg;
    const int64_t in = j->w->ne[0], n = j->w->ne[1];
    const size_t wrow = eng_row_size(j->w->type, in);
    float *ft = j->ws->ftile + (size_t)ith * SGEMM_CHUNK * j->ws->max_in;
    for (;;) {
        int64_t r0 = atomic_fetch_add_explicit(&j->next, SGEMM_CHUNK, memory_order_relaxed);
        if (r0 >= n) break;
        int nr = (int)ENG_MIN(SGEMM_CHUNK, n - r0);
        const uint8_t *wp = (const uint8_t *)j->w->data + (size_t)r0 * wrow;
        const float *wf = (const float *)wp; /* F32 weights are used in place */
        if (j->w->type != ENG_TYPE_F32) {
            for (int r = 0; r < nr; r++)
                j->tr->to_float(wp + (size_t)r * wrow, ft + (size_t)r * in, in);
            wf = ft;
        }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, j->B, nr, (int)in, 1.0f, j->x, (int)in,
                    wf, (int)in, 0.0f, j->y + r0, (int)j->ldy);
    }
}

enum eng_mm_path eng_matmul_path(enum eng_type type, int B) {
    const struct eng_type_traits *tr = eng_type_traits(type);
    if (!tr) return ENG_MM_VEC_DOT;
    tr = row_traits(tr); /* prefill repacks an interleaved weight's rows read out */
    if (tr->repack && B >= tr->tile_min_b) return ENG_MM_TILE;
    if ((type == ENG_TYPE_F32 || type == ENG_TYPE_F16 || type == ENG_TYPE_BF16) &&
        B >= ENG_SGEMM_MIN_B)
        return ENG_MM_SGEMM;
    return ENG_MM_VEC_DOT;
}

void eng_matmul(struct eng_pool *pool, struct eng_mm_ws *ws, const struct eng_tensor *w,
                const float *x, int B, float *y, int64_t ldy, const int32_t *rows, int n_rows) {
    struct matmul_job j = {.w = w,
                           .tr = eng_type_traits(w->type),
                           .ws = ws,
                           .x = x,
                           .B = B,
                           .y = y,
                           .ldy = ldy,
                           .rows = rows,
                           .n_rows = n_rows};
    int nth = eng_pool_size(pool);
    enum eng_mm_path path = rows ? ENG_MM_VEC_DOT : eng_matmul_path(w->type, B);
#if defined(__x86_64__)
    /* F16 on the AVX-512 level: the tile kernel beats OpenBLAS on converted rows (L1B F16 pp64
     * 43-45 vs 30-31 tok/s in the same runs) */
    if (path == ENG_MM_SGEMM && w->type == ENG_TYPE_F16 && eng_simd_is_avx512(eng_simd_active())) {
        atomic_init(&j.next, 0);
        eng_pool_run(pool, matmul_ftile, &j);
        return;
    }
#endif
    if (path == ENG_MM_SGEMM) {
        pthread_once(&blas_once, blas_init);
        atomic_init(&j.next, 0);
        eng_pool_run(pool, matmul_sgemm, &j);
        return;
    }
    /* a subset of rows is read out of an interleaved layout and dotted by its row type */
    j.xq_type = (rows ? row_traits(j.tr) : j.tr)->vec_dot_type;
    if (path == ENG_MM_TILE && j.xq_type == ENG_TYPE_Q8_0X)
        j.xq_type = ENG_TYPE_Q8_0; /* the same codes, in the layout the tile path reads */
    if (path == ENG_MM_TILE) j.tile = eng_tile_kernel();
    if (j.xq_type == ENG_TYPE_F32) {
        j.xq = x;
        j.xq_row = (size_t)w->ne[0] * sizeof(float);
    } else {
        j.xq = ws->qbuf;
        j.xq_row = eng_row_size(j.xq_type, w->ne[0]);
        if (path == ENG_MM_VEC_DOT && convert_each(nth, B))
            j.conv_private = true; /* by each thread as the job starts */
        else if (B < 2 * nth || nth == 1)
            convert_rows(&j, 0, B); /* cheaper than a pool round trip */
        else {
            atomic_init(&j.next_b, 0);
            eng_pool_run(pool, matmul_convert, &j);
        }
    }
    atomic_init(&j.next, 0);
    if (path == ENG_MM_TILE) {
        eng_pool_run(pool, matmul_tile, &j);
        return;
    }
    eng_row_split_init(&j.split, n_out_rows(&j), nth, rows ? 1 : j.tr->row_group);
    eng_pool_run(pool, matmul_rows, &j);
}

/* ---- fused products for decode ----
 * Several weights that read the same activations (q/k/v; gate/up) in one pool job: one dispatch
 * and one wait instead of one per weight, and the activations converted once per vec_dot type.
 * With glu, parts 0 and 1 are gate and up of equal shape, handed out by the same row ranges, and
 * each work item finishes its rows with y0 = silu(y0) * y1 — no separate pass over the FFN
 * activations. Only the vec_dot path (few activation rows) is fused; prefill is compute-bound
 * and takes eng_matmul per weight. */

struct fused_job {
    int n, B;
    bool glu;
    const struct eng_tensor *w[ENG_FUSED_MAX];
    float *y[ENG_FUSED_MAX];
    const uint8_t *xq[ENG_FUSED_MAX];
    size_t xq_row[ENG_FUSED_MAX];
    int64_t first[ENG_FUSED_MAX + 1]; /* part i owns joint rows first[i] .. first[i+1]-1 */
    eng_glu_fn glu_fn;                /* glu: the active level's silu(g) · u */
    struct eng_mm_ws *ws;
    const float *x; /* (B, in) the activations as floats */
    bool priv;      /* each thread converts x itself, else the caller into xq */
    int n_conv;     /* the activation types the parts read */
    enum eng_type conv[2];
    int conv_of[ENG_FUSED_MAX]; /* part p reads conversion conv_of[p] (-1: x as floats) */
    const struct eng_fused_post *post;
    struct eng_row_split split;
};

static void fused_rows(void *arg, int ith, int nth) {
    struct fused_job *j = arg;
    int64_t r0, r1;
    const uint8_t *xq[ENG_FUSED_MAX], *buf[2];
    for (int k = 0; j->priv && k < j->n_conv; k++)
        buf[k] = convert_private(j->ws, ith, k, j->conv[k], j->x, j->w[0]->ne[0], j->B);
    for (int p = 0; p < j->n; p++)
        xq[p] = j->priv && j->conv_of[p] >= 0 ? buf[j->conv_of[p]] : j->xq[p];
    while (eng_row_split_claim(&j->split, ith, &r0, &r1)) {
        for (int p = 0; p < j->n; p++) {
            /* this part's rows within [r0, r1): all of them in glu mode */
            int64_t a = j->glu ? r0 : ENG_MAX(r0, j->first[p]) - j->first[p];
            int64_t b = j->glu ? r1 : ENG_MIN(r1, j->first[p + 1]) - j->first[p];
            const struct eng_tensor *w = j->w[p];
            if (a < b) {
                dot_rows(eng_type_traits(w->type), w, a, b, w->ne[0], j->B, xq[p], j->xq_row[p],
                         j->y[p], w->ne[1], thread_rowbuf(j->ws, ith));
                if (j->post) j->post->fn(j->post->arg, p, a, b);
            }
        }
        if (j->glu) {
            int64_t ldy = j->w[0]->ne[1];
            for (int t = 0; t < j->B; t++)
                j->glu_fn(&j->y[0][(size_t)t * ldy + r0], &j->y[1][(size_t)t * ldy + r0], r1 - r0);
        }
    }
}

bool eng_matmul_fused(struct eng_pool *pool, struct eng_mm_ws *ws, int n,
                      const struct eng_tensor *const *w, const float *x, int B, float *const *y,
                      bool glu, const struct eng_fused_post *post) {
    if (n < 1 || n > ENG_FUSED_MAX || B > ENG_FUSED_MAX_B || (glu && n != 2)) return false;
    for (int p = 0; p < n; p++)
        if (eng_matmul_path(w[p]->type, B) != ENG_MM_VEC_DOT || w[p]->ne[0] != w[0]->ne[0] ||
            (glu && w[p]->ne[1] != w[0]->ne[1]))
            return false;
    /* interleaved parts take whole row groups: every part's rows a multiple of the largest */
    int align = 1;
    for (int p = 0; p < n; p++) align = ENG_MAX(align, eng_type_traits(w[p]->type)->row_group);
    for (int p = 0; p < n; p++)
        if (w[p]->ne[1] % align) return false;
    struct fused_job j = {
        .n = n, .B = B, .glu = glu, .glu_fn = eng_vec_ops().glu, .ws = ws, .x = x, .post = post};
    /* few activation rows on several threads: each thread converts them (convert_private) */
    j.priv = convert_each(eng_pool_size(pool), B);
    int64_t in = w[0]->ne[0];
    j.first[0] = 0;
    for (int p = 0; p < n; p++) {
        j.w[p] = w[p], j.y[p] = y[p];
        j.first[p + 1] = j.first[p] + w[p]->ne[1];
        enum eng_type vt = eng_type_traits(w[p]->type)->vec_dot_type;
        if (vt == ENG_TYPE_F32) {
            j.xq[p] = (const uint8_t *)x;
            j.xq_row[p] = (size_t)in * sizeof(float);
            j.conv_of[p] = -1;
            continue;
        }
        int k = 0;
        while (k < j.n_conv && j.conv[k] != vt) k++;
        if (k == 2) return false; /* a third activation type: not worth a buffer */
        uint8_t *buf = k == 0 ? ws->qbuf : ws->qbuf2;
        size_t row = eng_row_size(vt, in);
        if (k == j.n_conv) {
            j.conv[j.n_conv++] = vt;
            if (!j.priv) convert_to(vt, x, in, B, buf);
        }
        j.conv_of[p] = k;
        j.xq[p] = buf, j.xq_row[p] = row;
    }
    int nth = eng_pool_size(pool);
    int64_t total = glu ? w[0]->ne[1] : j.first[n];
    /* glu: the vector GLU kernels take 8 (AVX2) or 4 (NEON) values at a time and the rest
     * with scalar code, so claims start at multiples of 16 (and of the row groups): each value
     * gets the arithmetic of a whole row's pass whichever thread claims it, and outputs do not
     * depend on timing. A post step's claims cover whole multiples of its grain. */
    int grain = align;
    while ((glu && grain % 16) || (post && grain % post->grain)) grain += align;
    eng_row_split_init(&j.split, total, nth, grain);
    eng_pool_run(pool, fused_rows, &j);
    return true;
}
