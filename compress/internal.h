/*
 * internal.h — declarations shared between compress/ files: the calibration data, the per-tensor
 * candidate tables, the parallel loop, the progress bar and the report writer.
 */
#ifndef EDGELLM_COMPRESS_INTERNAL_H
#define EDGELLM_COMPRESS_INTERNAL_H

#include "compress.h"

#define CMP_MAX_CAND  16
#define CMP_MIN(a, b) ((a) < (b) ? (a) : (b))

enum cmp_kind {
    CMP_KIND_Q = 0,
    CMP_KIND_K = 1,
    CMP_KIND_V = 2,
    CMP_KIND_O = 3,
    CMP_KIND_GATE = 4,
    CMP_KIND_UP = 5,
    CMP_KIND_DOWN = 6,
    CMP_KIND_EMBD = 7,
    CMP_KIND_OUTPUT = 8,
    CMP_KIND_COUNT = 9,
};

const char *cmp_kind_name(enum cmp_kind k);

/* Calibration: column importance of every weight matrix's input, and the tokens, hidden states
 * and base logits of the KL set. */
struct cmp_calib {
    int n_layer, n_embd, n_q, n_ff, n_vocab;
    /* mean squared activation of each input column */
    float *imp_attn_in;  /* (L, E) input of q, k, v */
    float *imp_attn_out; /* (L, Q) input of attn_output */
    float *imp_ffn_in;   /* (L, E) input of gate, up */
    float *imp_ffn_down; /* (L, F) input of down */
    float *imp_output;   /* (E) input of the output head */
    float *imp_uniform;  /* (E) all 1: an untied token embedding (see cmp_calib_importance) */
    bool tied;           /* token_embd is also the output head */
    int n_imp_tokens;
    /* the KL set: n_kl_chunks chunks of chunk tokens */
    int chunk, n_kl_chunks;
    int32_t *kl_tokens; /* (n_kl_chunks, chunk) */
    float *hidden;      /* (L, n_kl_chunks*chunk, E): hidden state entering block l */
    float *base_logits; /* (n_kl_chunks*chunk, V) */
};

/* Runs the model over the calibration text. NULL with eng_last_error() on failure. */
struct cmp_calib *cmp_calib_run(struct eng_model *m, const char *text_path, int imp_tokens,
                                int kl_tokens, int chunk, int n_threads,
                                void (*progress)(void *u, double frac), void *progress_user);
void cmp_calib_free(struct cmp_calib *c);
/* Importance vector (ne0 floats, borrowed) for the input of a tensor kind in layer l. */
const float *cmp_calib_importance(const struct cmp_calib *c, enum cmp_kind k, int layer);

/* Mean KL(base || model) over the KL set, running from block first_layer (0: from the tokens).
 * Statistics into acc when not NULL. */
int cmp_calib_kld(const struct cmp_calib *c, struct eng_model *m, int first_layer, int n_threads,
                  double *mean_kld, struct cmp_kld_acc *acc);

/* One compressible weight matrix. */
struct cmp_tensor {
    const struct eng_tensor *src; /* in the input file (borrowed) */
    enum cmp_kind kind;
    int layer;        /* -1 for token_embd / output */
    const float *imp; /* (ne0) column importance (borrowed from the calibration) */
    int n_cand;
    enum eng_type cand[CMP_MAX_CAND];
    uint64_t bytes[CMP_MAX_CAND];
    double werr[CMP_MAX_CAND];    /* importance-weighted squared error */
    double kl_meas[CMP_MAX_CAND]; /* measured KL increase, NAN when not measured */
    double pred[CMP_MAX_CAND];    /* predicted KL increase */
    double alpha;                 /* KL per unit of weighted error (sensitivity) */
    int pick;
};

/* Sparsity evaluation (sparsity.c): would a pruned format beat the dense ones at its size? */
enum cmp_sparse_kind {
    CMP_SPARSE_24 = 0,    /* 2:4 with 4-bit kept values, 3.25 bits per weight */
    CMP_SPARSE_UNSTR = 1, /* 50% unstructured with a bitmap, 3.5 bits per weight */
    CMP_SPARSE_COUNT = 2,
};

struct cmp_sparse_eval {
    double err[CMP_SPARSE_COUNT];       /* importance-weighted error of prune + quantize */
    double dense_err[CMP_SPARSE_COUNT]; /* the dense formats' error at the same size */
};

const char *cmp_sparse_name(enum cmp_sparse_kind k);
double cmp_sparse_bpw(enum cmp_sparse_kind k);
/* Wanda mask of one output row w (n inputs) with column importance imp (mean squared
 * activation, so the score of w[j] is |w[j]| * sqrt(imp[j])): keep[j] = 1 for the inputs kept.
 * 2:4 keeps the two highest-scored of every four consecutive inputs (a shorter last group is
 * kept whole); unstructured keeps the highest-scored n - n/2. Ties keep the earlier input.
 * Borrows everything. 0 or ENG_ENOMEM. */
int cmp_sparse_mask(const float *w, const float *imp, int64_t n, enum cmp_sparse_kind kind,
                    uint8_t *keep);
/* Fills ev[i] for every tensor t[i] (needs its imp, candidates, bytes and werr: the error
 * table). Kept values are quantized like the dense candidates were: importance-weighted, or the
 * plain reference quantizer when plain. A tensor whose rows are not a multiple of 32 (or on
 * running out of memory) gets err = INFINITY. */
int cmp_sparsity_eval(struct cmp_tensor *t, int n_t, int n_threads, bool plain,
                      struct cmp_sparse_eval *ev);
/* Median of err / dense_err per kind, and how many tensors a sparse format would beat. */
void cmp_sparsity_summary(const struct cmp_sparse_eval *ev, int n_t, double *median_ratio,
                          int *n_pays);

/* Quantizes rows [r0, r1) of src into dst (row_size(type) each) with importance imp (or the
 * plain reference quantizer). Thread-safe. */
int cmp_quantize_rows(const struct eng_tensor *src, enum eng_type type, const float *imp,
                      bool plain, int64_t r0, int64_t r1, void *dst);

/* Runs fn(arg, i) for i in [0, n) on n_threads threads. */
void cmp_parallel_for(int n_threads, int64_t n, void (*fn)(void *arg, int64_t i), void *arg);

/* Progress bar on stderr (no-op when disabled or stderr is not a terminal). */
struct cmp_progress {
    bool on;
    const char *phase;
    double t_start, t_phase;
};
void cmp_progress_phase(struct cmp_progress *p, const char *phase);
void cmp_progress_update(void *p, double frac);
void cmp_progress_done(struct cmp_progress *p);

double cmp_now(void);
uint64_t cmp_peak_rss(void);

/* PREFIX.json and PREFIX.svg. */
int cmp_report_write(const char *prefix, const struct cmp_params *p, const struct cmp_tensor *t,
                     int n, const struct cmp_result *res, int n_layer, uint64_t budget,
                     const char *allocation, const struct cmp_sparse_eval *sparse);

#endif
