/*
 * compress.h — the public interface of libcompress: layer-wise unified compression (LUC).
 *
 * Calibrate on text → measure each weight matrix's sensitivity to each candidate format →
 * choose per-tensor formats under a size budget → write a GGUF with the decisions in edgellm.luc.*
 * metadata and a report. Names: cmp_<object>_<action>. Errors: 0 or negative ENG_E* codes with a
 * detail in eng_last_error() (the engine's shared list).
 */
#ifndef EDGELLM_COMPRESS_H
#define EDGELLM_COMPRESS_H

#include "engine.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------------------------------------
 * Allocation: one choice per item (tensor) minimising the summed error under a byte budget.
 */
struct cmp_choice {
    uint64_t bytes; /* size of the tensor in this choice */
    double err;     /* predicted error it adds (>= 0) */
};

struct cmp_alloc_item {
    int n_choices;
    const struct cmp_choice *choices; /* borrowed */
};

/* Picks choice pick[i] for every item so that sum of bytes <= budget and the sum of err is
 * minimal (exact up to a rounding of sizes to budget/2^16, then improved greedily with the exact
 * sizes; never over budget). Returns 0; ENG_ERANGE if even the smallest choices exceed the
 * budget (*min_bytes is then the smallest reachable total); ENG_EINVAL for an item without
 * choices. min_bytes may be NULL. */
int cmp_allocate(const struct cmp_alloc_item *items, int n_items, uint64_t budget, int *pick,
                 uint64_t *min_bytes);

/* ---------------------------------------------------------------------------------------------
 * Compression
 */
enum cmp_sparsity {
    CMP_SPARSITY_OFF = 0,
    /* measure Wanda 2:4 and 50% pruning against the dense formats at the same size and report
     * it; nothing is pruned (no sparse storage format with its own kernels exists yet) */
    CMP_SPARSITY_AUTO = 1,
};

struct cmp_params {
    const char *input;      /* any GGUF model the engine loads */
    const char *output;     /* written atomically */
    double target_bpw;      /* > 0: bits per weight over all tensors of the output */
    uint64_t target_bytes;  /* > 0: size of the output file in bytes (instead of target_bpw) */
    const char *uniform;    /* type name: every weight matrix in this one format (baseline) */
    const char *calib_path; /* calibration text (default: models/heldout.txt) */
    enum cmp_sparsity sparsity;
    const char *report_prefix; /* writes PREFIX.json and PREFIX.svg; NULL: none */
    int n_threads;             /* 0: performance cores */
    int calib_tokens;          /* tokens for column importance (default 16384) */
    int kl_tokens;             /* tokens for end-to-end KL divergence (default 1024) */
    int chunk;                 /* calibration chunk length in tokens (default 256) */
    bool allow_low_head;       /* embedding / output head may go below q4_k */
    bool plain_quant;          /* round-to-nearest reference quantizers, not importance-weighted */
    bool progress;             /* progress bar with ETA on stderr */
};

struct cmp_result {
    uint64_t file_bytes;
    double bpw;           /* bits per weight over all tensors */
    double predicted_kld; /* sum of the chosen tensors' predicted KL increases */
    double measured_kld;  /* mean KL(base || output) on the calibration tokens */
    double seconds;
    uint64_t peak_rss_bytes;
    /* With CMP_SPARSITY_AUTO: for Wanda 2:4 (3.25 bpw) and unstructured 50% (3.5 bpw) pruning
     * with importance-weighted 4-bit kept values, the median over tensors of (its weighted error
     * / the dense formats' error at the same bits per weight), and in how many tensors it would
     * be the better format. Only measured: the output is never pruned. */
    bool sparsity_evaluated;
    double sparse_ratio[2];
    int sparse_pays[2];
    int n_tensors;
};

void cmp_params_default(struct cmp_params *p);
/* Runs the whole pipeline. res may be NULL. On failure nothing is left at p->output. */
int cmp_compress(const struct cmp_params *p, struct cmp_result *res);

/* ---------------------------------------------------------------------------------------------
 * Evaluation: KL divergence of a model's next-token distributions to a base model's.
 */
struct cmp_kld_stats {
    double mean_kld;       /* nats per position */
    double p99_kld;        /* 99th percentile, interpolated between ranks (as llama.cpp) */
    double top1_agreement; /* share of positions where both argmaxes agree */
    int n_positions;
};

/* Accumulates per-position statistics. Borrowed logits, n_vocab each. */
struct cmp_kld_acc;
struct cmp_kld_acc *cmp_kld_acc_new(void);
void cmp_kld_acc_free(struct cmp_kld_acc *a);
/* KL(P_base || P_model) at one position; also recorded in the accumulator. */
double cmp_kld_acc_add(struct cmp_kld_acc *a, const float *base_logits, const float *logits,
                       int n_vocab);
void cmp_kld_acc_stats(const struct cmp_kld_acc *a, struct cmp_kld_stats *out);

#ifdef __cplusplus
}
#endif
#endif
