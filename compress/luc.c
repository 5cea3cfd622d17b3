/*
 * luc.c — layer-wise unified compression, end to end:
 *   1. calibrate (calib.c): column importance of every weight matrix, KL set with base logits;
 *   2. error table: every weight matrix in every candidate format, importance-weighted squared
 *      reconstruction error on a row sample, and its size;
 *   3. sensitivity: for the two formats bracketing the budget, the measured increase of KL
 *      divergence on the KL set when only that tensor changes (running only the blocks from its
 *      layer on); alpha = KL / weighted error turns every table entry into a predicted KL;
 *   4. allocation (allocate.c): formats minimising the total predicted KL under the budget;
 *   5. output: GGUF streamed tensor by tensor with the decisions in edgellm.luc.* metadata, then
 *      the measured KL of the result and the report.
 * It does not implement quantizers (the engine's type traits do).
 */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define ERR_SAMPLE_ROWS 512 /* rows per tensor for the error table */
#define HEAD_FLOOR_BPW  4.5 /* embedding / output head floor unless allowed lower */

/* Candidate formats, most bits first. Types this build cannot quantize are skipped. */
static const enum eng_type candidates[] = {
    ENG_TYPE_F16,  ENG_TYPE_Q8_0,   ENG_TYPE_Q6_K, ENG_TYPE_Q5_K, ENG_TYPE_Q5_0,
    ENG_TYPE_Q4_K, ENG_TYPE_IQ4_XS, ENG_TYPE_Q4_0, ENG_TYPE_Q3_K, ENG_TYPE_Q2_K,
};

const char *cmp_kind_name(enum cmp_kind k) {
    static const char *const names[CMP_KIND_COUNT] = {"attn_q",      "attn_k",     "attn_v",
                                                      "attn_output", "ffn_gate",   "ffn_up",
                                                      "ffn_down",    "token_embd", "output"};
    return (unsigned)k < CMP_KIND_COUNT ? names[k] : "?";
}

void cmp_params_default(struct cmp_params *p) {
    memset(p, 0, sizeof(*p));
    p->calib_path = "models/heldout.txt";
    p->calib_tokens = 16384;
    p->kl_tokens = 1024;
    p->chunk = 256;
}

static double type_bpw(enum eng_type t) {
    const struct eng_type_traits *tr = eng_type_traits(t);
    return 8.0 * (double)tr->type_size / (double)tr->blck_size;
}

static bool usable(enum eng_type t, int64_t ne0) {
    const struct eng_type_traits *tr = eng_type_traits(t);
    return tr && (tr->from_float || tr->quantize_imp) && tr->vec_dot && tr->to_float &&
           ne0 % tr->blck_size == 0;
}

int cmp_quantize_rows(const struct eng_tensor *src, enum eng_type type, const float *imp,
                      bool plain, int64_t r0, int64_t r1, void *dst) {
    const struct eng_type_traits *st = eng_type_traits(src->type), *tt = eng_type_traits(type);
    int64_t n = src->ne[0];
    size_t srs = eng_row_size(src->type, n), drs = eng_row_size(type, n);
    float *row = malloc(sizeof(float) * (size_t)n);
    if (!row) return eng_fail(ENG_ENOMEM, "out of memory");
    for (int64_t r = r0; r < r1; r++) {
        st->to_float((const uint8_t *)src->data + (size_t)r * srs, row, n);
        uint8_t *out = (uint8_t *)dst + (size_t)(r - r0) * drs;
        if (!plain && tt->quantize_imp)
            tt->quantize_imp(row, out, n, imp);
        else
            tt->from_float(row, out, n);
    }
    free(row);
    return 0;
}

/* ---- the error table ---- */

struct err_job {
    struct cmp_tensor *t;
    int n_t;
    int *pair_t, *pair_c; /* (tensor, candidate) of job i */
    bool plain;
};

static void err_one(void *arg, int64_t i) {
    struct err_job *j = arg;
    struct cmp_tensor *t = &j->t[j->pair_t[i]];
    int c = j->pair_c[i];
    const struct eng_tensor *src = t->src;
    int64_t n = src->ne[0], rows = src->ne[1];
    int64_t step = rows > ERR_SAMPLE_ROWS ? rows / ERR_SAMPLE_ROWS : 1;
    const struct eng_type_traits *st = eng_type_traits(src->type),
                                 *tt = eng_type_traits(t->cand[c]);
    size_t srs = eng_row_size(src->type, n), qrs = eng_row_size(t->cand[c], n);
    float *x = malloc(sizeof(float) * (size_t)n * 2);
    uint8_t *q = malloc(qrs);
    double err = 0.0;
    int64_t sampled = 0;
    if (x && q) {
        float *y = x + n;
        for (int64_t r = 0; r < rows; r += step, sampled++) {
            st->to_float((const uint8_t *)src->data + (size_t)r * srs, x, n);
            if (!j->plain && tt->quantize_imp)
                tt->quantize_imp(x, q, n, t->imp);
            else
                tt->from_float(x, q, n);
            tt->to_float(q, y, n);
            for (int64_t k = 0; k < n; k++) {
                double d = (double)x[k] - y[k];
                err += t->imp[k] * d * d;
            }
        }
    }
    t->werr[c] = sampled ? err * (double)rows / (double)sampled : INFINITY;
    free(x);
    free(q);
}

static int error_table(struct cmp_tensor *t, int n_t, int n_threads, bool plain,
                       struct cmp_progress *pr) {
    int n_pairs = 0;
    for (int i = 0; i < n_t; i++) n_pairs += t[i].n_cand;
    struct err_job j = {t, n_t, malloc(sizeof(int) * (size_t)n_pairs),
                        malloc(sizeof(int) * (size_t)n_pairs), plain};
    if (!j.pair_t || !j.pair_c) {
        free(j.pair_t);
        free(j.pair_c);
        return eng_fail(ENG_ENOMEM, "out of memory");
    }
    int k = 0;
    for (int i = 0; i < n_t; i++)
        for (int c = 0; c < t[i].n_cand; c++) j.pair_t[k] = i, j.pair_c[k++] = c;
    /* in slices, so the progress bar moves */
    int slice = n_pairs / 20 + 1;
    for (int s = 0; s < n_pairs; s += slice) {
        struct err_job part = j;
        part.pair_t += s;
        part.pair_c += s;
        cmp_parallel_for(n_threads, CMP_MIN(slice, n_pairs - s), err_one, &part);
        cmp_progress_update(pr, (double)CMP_MIN(s + slice, n_pairs) / n_pairs);
    }
    free(j.pair_t);
    free(j.pair_c);
    return 0;
}

/* ---- quantizing a whole tensor in parallel ---- */

struct qjob {
    const struct eng_tensor *src;
    enum eng_type type;
    const float *imp;
    bool plain;
    uint8_t *dst;
    int64_t rows_per;
    int err;
};

static void q_part(void *arg, int64_t i) {
    struct qjob *j = arg;
    int64_t r0 = i * j->rows_per, r1 = CMP_MIN(j->src->ne[1], r0 + j->rows_per);
    size_t drs = eng_row_size(j->type, j->src->ne[0]);
    if (cmp_quantize_rows(j->src, j->type, j->imp, j->plain, r0, r1, j->dst + (size_t)r0 * drs))
        j->err = ENG_ENOMEM;
}

/* Quantizes all of src into a new buffer (caller frees) and fills view. */
static void *quantize_tensor(const struct eng_tensor *src, enum eng_type type, const float *imp,
                             bool plain, int n_threads, struct eng_tensor *view) {
    size_t drs = eng_row_size(type, src->ne[0]);
    uint8_t *buf = malloc(drs * (size_t)src->ne[1]);
    if (!buf) {
        eng_fail(ENG_ENOMEM, "out of memory quantizing %s", src->name);
        return NULL;
    }
    struct qjob j = {src, type, imp, plain, buf, 64, 0};
    cmp_parallel_for(n_threads, (src->ne[1] + j.rows_per - 1) / j.rows_per, q_part, &j);
    if (j.err) {
        free(buf);
        eng_fail(ENG_ENOMEM, "out of memory quantizing %s", src->name);
        return NULL;
    }
    *view = *src;
    view->type = type;
    view->data = buf;
    view->nbytes = drs * (size_t)src->ne[1];
    return buf;
}

/* ---- sensitivity ---- */

/* The formats just below and above `bpw` among all candidates (by bits per weight). */
static void bracket(double bpw, enum eng_type *lo, enum eng_type *hi) {
    *lo = *hi = (enum eng_type) - 1;
    double blo = -1, bhi = 1e9;
    for (size_t i = 0; i < sizeof(candidates) / sizeof(candidates[0]); i++) {
        if (!eng_type_traits(candidates[i])) continue;
        double b = type_bpw(candidates[i]);
        if (b <= bpw && b > blo) blo = b, *lo = candidates[i];
        if (b > bpw && b < bhi) bhi = b, *hi = candidates[i];
    }
}

static int measure_one(struct eng_model *m, const struct cmp_calib *cal, struct cmp_tensor *t,
                       int c, const struct cmp_params *p) {
    struct eng_tensor view;
    void *buf = quantize_tensor(t->src, t->cand[c], t->imp, p->plain_quant, p->n_threads, &view);
    if (!buf) return ENG_ENOMEM;
    int err = eng_model_replace_tensor(m, t->src->name, &view);
    if (!err) {
        int first = t->layer >= 0 ? t->layer : t->kind == CMP_KIND_OUTPUT ? cal->n_layer - 1 : 0;
        err = cmp_calib_kld(cal, m, first, p->n_threads, &t->kl_meas[c], NULL);
        eng_model_replace_tensor(m, t->src->name, t->src);
    }
    free(buf);
    return err;
}

static int find_cand(const struct cmp_tensor *t, enum eng_type type) {
    for (int c = 0; c < t->n_cand; c++)
        if (t->cand[c] == type) return c;
    return -1;
}

/* Measures KL at the bracketing formats and derives every candidate's predicted KL. */
static int sensitivity(struct eng_model *m, const struct cmp_calib *cal, struct cmp_tensor *t,
                       int n_t, double mat_bpw, const struct cmp_params *p,
                       struct cmp_progress *pr) {
    enum eng_type lo, hi;
    bracket(mat_bpw, &lo, &hi);
    int total = 0, done = 0;
    for (int i = 0; i < n_t; i++)
        total += (find_cand(&t[i], lo) >= 0) + (find_cand(&t[i], hi) >= 0);
    for (int i = 0; i < n_t; i++) {
        for (int c = 0; c < t[i].n_cand; c++) t[i].kl_meas[c] = NAN;
        enum eng_type which[2] = {lo, hi};
        for (int w = 0; w < 2; w++) {
            int c = find_cand(&t[i], which[w]);
            if (c < 0) continue;
            int err = measure_one(m, cal, &t[i], c, p);
            if (err) return err;
            cmp_progress_update(pr, (double)++done / (total ? total : 1));
        }
        /* alpha from the measured formats; each candidate uses the nearest measured one */
        double alpha_sum = 0.0;
        int n_alpha = 0;
        for (int c = 0; c < t[i].n_cand; c++) {
            if (isnan(t[i].kl_meas[c]) || !(t[i].werr[c] > 0)) continue;
            alpha_sum += t[i].kl_meas[c] / t[i].werr[c];
            n_alpha++;
        }
        t[i].alpha = n_alpha ? alpha_sum / n_alpha : 0.0;
        for (int c = 0; c < t[i].n_cand; c++) {
            double best_d = 1e9, a = t[i].alpha;
            for (int k = 0; k < t[i].n_cand; k++) {
                if (isnan(t[i].kl_meas[k]) || !(t[i].werr[k] > 0)) continue;
                double d = fabs(type_bpw(t[i].cand[k]) - type_bpw(t[i].cand[c]));
                if (d < best_d) best_d = d, a = t[i].kl_meas[k] / t[i].werr[k];
            }
            t[i].pred[c] = !isnan(t[i].kl_meas[c]) ? t[i].kl_meas[c] : a * t[i].werr[c];
            if (t[i].pred[c] < 0) t[i].pred[c] = 0;
        }
    }
    return 0;
}

/* ---- tensors ---- */

/* The weight matrices and their candidate formats (imp is set after calibration). */
static int collect(struct eng_model *m, bool allow_low_head, struct cmp_tensor **out, int *n_out) {
    const struct eng_hparams *hp = eng_model_hparams(m);
    int cap = hp->n_layer * 7 + 2, n = 0;
    struct cmp_tensor *t = calloc((size_t)cap, sizeof(*t));
    if (!t) return eng_fail(ENG_ENOMEM, "out of memory");
    static const char *const suffix[7] = {"attn_q",   "attn_k", "attn_v",  "attn_output",
                                          "ffn_gate", "ffn_up", "ffn_down"};
    char name[96];
    for (int i = -2; i < hp->n_layer * 7; i++) {
        enum cmp_kind kind;
        int layer = -1;
        if (i == -2) {
            kind = CMP_KIND_EMBD;
            snprintf(name, sizeof(name), "token_embd.weight");
        } else if (i == -1) {
            kind = CMP_KIND_OUTPUT;
            snprintf(name, sizeof(name), "output.weight");
        } else {
            layer = i / 7;
            kind = (enum cmp_kind)(i % 7);
            snprintf(name, sizeof(name), "blk.%d.%s.weight", layer, suffix[i % 7]);
        }
        const struct eng_tensor *src = eng_model_tensor(m, name);
        if (!src) continue; /* e.g. no separate output head */
        struct cmp_tensor *ct = &t[n];
        ct->src = src;
        ct->kind = kind;
        ct->layer = layer;
        bool head = kind == CMP_KIND_EMBD || kind == CMP_KIND_OUTPUT;
        for (size_t k = 0; k < sizeof(candidates) / sizeof(candidates[0]); k++) {
            enum eng_type ty = candidates[k];
            if (!usable(ty, src->ne[0])) continue;
            if (head && !allow_low_head && type_bpw(ty) < HEAD_FLOOR_BPW) continue;
            ct->cand[ct->n_cand] = ty;
            ct->bytes[ct->n_cand] = eng_row_size(ty, src->ne[0]) * (uint64_t)src->ne[1];
            ct->n_cand++;
        }
        if (ct->n_cand == 0) {
            free(t);
            return eng_fail(ENG_EUNSUPPORTED, "%s: no candidate format fits rows of %lld", name,
                            (long long)src->ne[0]);
        }
        n++;
    }
    *out = t;
    *n_out = n;
    return 0;
}

/* ---- output ---- */

/* Fails (with what and path named) unless a file can be created next to path and path itself,
 * if it exists, is a writable regular file. Leaves nothing behind. */
static int check_writable(const char *path, const char *what) {
    struct stat sb;
    if (stat(path, &sb) == 0 && (!S_ISREG(sb.st_mode) || access(path, W_OK) != 0))
        return eng_fail(ENG_EIO, "%s: cannot write the %s: %s", path, what,
                        S_ISDIR(sb.st_mode)    ? "is a directory"
                        : !S_ISREG(sb.st_mode) ? "not a regular file"
                                               : strerror(errno));
    char tmp[4096];
    snprintf(tmp, sizeof(tmp), "%s.probe.%d", path, (int)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0)
        return eng_fail(ENG_EIO, "%s: cannot write the %s: %s", path, what, strerror(errno));
    close(fd);
    unlink(tmp);
    return 0;
}

/* The results are staged and renamed into place only when all of them succeeded, so a failure
 * at any step (writing, evaluating, the report) leaves nothing at OUT or PREFIX.*. */
struct staging {
    char out[4096];    /* OUT.<pid>.part */
    char prefix[4096]; /* PREFIX.<pid>.part, giving PREFIX.<pid>.part.json / .svg */
};

static int staging_init(struct staging *st, const struct cmp_params *p) {
    int pid = (int)getpid();
    if ((size_t)snprintf(st->out, sizeof(st->out), "%s.%d.part", p->output, pid) >=
            sizeof(st->out) ||
        (p->report_prefix && (size_t)snprintf(st->prefix, sizeof(st->prefix), "%s.%d.part",
                                              p->report_prefix, pid) >= sizeof(st->prefix)))
        return eng_fail(ENG_EINVAL, "%s: path too long", p->output);
    return 0;
}

static void report_path(char *buf, size_t n, const char *prefix, const char *ext) {
    snprintf(buf, n, "%s.%s", prefix, ext);
}

static void staging_abort(const struct staging *st, const struct cmp_params *p) {
    char a[4200];
    unlink(st->out);
    if (!p->report_prefix) return;
    report_path(a, sizeof(a), st->prefix, "json");
    unlink(a);
    report_path(a, sizeof(a), st->prefix, "svg");
    unlink(a);
}

/* Renames the staged report and OUT into place (OUT last). */
static int staging_commit(const struct staging *st, const struct cmp_params *p) {
    static const char *const ext[2] = {"json", "svg"};
    for (int k = 0; p->report_prefix && k < 2; k++) {
        char a[4200], b[4200];
        report_path(a, sizeof(a), st->prefix, ext[k]);
        report_path(b, sizeof(b), p->report_prefix, ext[k]);
        if (rename(a, b) != 0) {
            int e = errno;
            if (k == 1) { /* do not leave half a report */
                report_path(b, sizeof(b), p->report_prefix, ext[0]);
                unlink(b);
            }
            return eng_fail(ENG_EIO, "%s: cannot write the report: %s", b, strerror(e));
        }
    }
    if (rename(st->out, p->output) != 0) {
        int e = errno;
        for (int k = 0; p->report_prefix && k < 2; k++) {
            char b[4200];
            report_path(b, sizeof(b), p->report_prefix, ext[k]);
            unlink(b);
        }
        return eng_fail(ENG_EIO, "%s: cannot write the output: %s", p->output, strerror(e));
    }
    return 0;
}

static struct cmp_tensor *find_by_name(struct cmp_tensor *t, int n, const char *name) {
    for (int i = 0; i < n; i++)
        if (!strcmp(t[i].src->name, name)) return &t[i];
    return NULL;
}

/* Writes the compressed model to path (atomically, through the GGUF writer's temporary). */
static int write_output(const struct cmp_params *p, const char *path, const struct eng_gguf *g,
                        struct cmp_tensor *t, int n_t, const char *allocation, double pred_kld,
                        int calib_tokens, struct cmp_progress *pr) {
    struct eng_gguf_writer *w = eng_gguf_writer_new();
    if (!w) return ENG_ENOMEM;
    int err = 0;
    for (int64_t i = 0; i < eng_gguf_n_kv(g) && !err; i++) {
        const struct eng_gguf_kv *kv = eng_gguf_kv_at(g, i);
        if (!strncmp(kv->key.s, "edgellm.luc.", 12) || !strcmp(kv->key.s, "general.file_type"))
            continue;
        err = eng_gguf_set_value(w, kv->key.s, &kv->val);
    }
    const char **names = calloc((size_t)n_t, sizeof(char *)),
               **types = calloc((size_t)n_t, sizeof(char *));
    float *sens = calloc((size_t)n_t, sizeof(float)), *pred = calloc((size_t)n_t, sizeof(float));
    if (!names || !types || !sens || !pred) err = eng_fail(ENG_ENOMEM, "out of memory");
    for (int i = 0; i < n_t && !err; i++) {
        names[i] = t[i].src->name;
        types[i] = eng_type_name(t[i].cand[t[i].pick]);
        sens[i] = (float)t[i].alpha;
        pred[i] = (float)t[i].pred[t[i].pick];
    }
    if (!err) err = eng_gguf_set_u32(w, "edgellm.luc.version", 1);
    if (!err) err = eng_gguf_set_str(w, "edgellm.luc.allocation", allocation);
    if (!err && p->target_bpw > 0)
        err = eng_gguf_set_f32(w, "edgellm.luc.target_bpw", (float)p->target_bpw);
    if (!err && p->target_bytes > 0)
        err = eng_gguf_set_u64(w, "edgellm.luc.target_bytes", p->target_bytes);
    if (!err) err = eng_gguf_set_u32(w, "edgellm.luc.calibration_tokens", (uint32_t)calib_tokens);
    if (!err) err = eng_gguf_set_f32(w, "edgellm.luc.predicted_kld", (float)pred_kld);
    if (!err) err = eng_gguf_set_bool(w, "edgellm.luc.importance_weighted", !p->plain_quant);
    if (!err) err = eng_gguf_set_arr_str(w, "edgellm.luc.tensors", names, (uint64_t)n_t);
    if (!err) err = eng_gguf_set_arr_str(w, "edgellm.luc.types", types, (uint64_t)n_t);
    if (!err)
        err = eng_gguf_set_arr(w, "edgellm.luc.sensitivity", ENG_GGUF_F32, sens, (uint64_t)n_t);
    if (!err)
        err = eng_gguf_set_arr(w, "edgellm.luc.predicted_kld_per_tensor", ENG_GGUF_F32, pred,
                               (uint64_t)n_t);
    free(names);
    free(types);
    free(sens);
    free(pred);
    for (int64_t i = 0; i < eng_gguf_n_tensors(g) && !err; i++) {
        const struct eng_tensor *src = eng_gguf_tensor_at(g, i);
        struct cmp_tensor *ct = find_by_name(t, n_t, src->name);
        err = eng_gguf_add_tensor(w, src->name, ct ? ct->cand[ct->pick] : src->type, src->n_dims,
                                  src->ne, NULL);
    }
    if (!err) err = eng_gguf_writer_begin(w, path);
    for (int64_t i = 0; i < eng_gguf_n_tensors(g) && !err; i++) {
        const struct eng_tensor *src = eng_gguf_tensor_at(g, i);
        struct cmp_tensor *ct = find_by_name(t, n_t, src->name);
        if (!ct) {
            err = eng_gguf_writer_put(w, src->data);
        } else {
            struct eng_tensor view;
            void *buf = quantize_tensor(src, ct->cand[ct->pick], ct->imp, p->plain_quant,
                                        p->n_threads, &view);
            err = buf ? eng_gguf_writer_put(w, buf) : ENG_ENOMEM;
            free(buf);
        }
        cmp_progress_update(pr, (double)(i + 1) / (double)eng_gguf_n_tensors(g));
    }
    if (!err) err = eng_gguf_writer_finish(w);
    eng_gguf_writer_free(w); /* aborts (removes the temporary) after an error */
    return err;
}

/* ---- the pipeline ---- */

/* The error for a target below the smallest reachable size: every matrix in its smallest
 * candidate (mat_min bytes) plus the fixed tensors (and the header, for a file size). */
static int fail_unreachable(const struct cmp_params *p, uint64_t mat_min, uint64_t fixed,
                            uint64_t header, uint64_t n_params) {
    const char *why = p->allow_low_head ? "every weight matrix in its smallest format"
                                        : "every weight matrix in its smallest format, the "
                                          "embedding and output head at 4.5 bits or more";
    if (p->target_bytes > 0)
        return eng_fail(ENG_ERANGE,
                        "a file of %llu bytes is not reachable: the smallest reachable is about "
                        "%llu bytes (%s)",
                        (unsigned long long)p->target_bytes,
                        (unsigned long long)(mat_min + fixed + header), why);
    return eng_fail(ENG_ERANGE,
                    "%.3g bits per weight is not reachable: the smallest reachable is %.3f bits "
                    "per weight (%s)",
                    p->target_bpw, 8.0 * (double)(mat_min + fixed) / (double)n_params, why);
}

int cmp_compress(const struct cmp_params *params, struct cmp_result *res) {
    struct cmp_params p = *params;
    struct cmp_result r = {0};
    double t0 = cmp_now();
    int modes = (p.target_bpw > 0) + (p.target_bytes > 0) + (p.uniform != NULL);
    if (modes != 1)
        return eng_fail(ENG_EINVAL, "give exactly one of a target bits per weight, a target size "
                                    "or a uniform format");
    if (p.target_bpw > 0 && (p.target_bpw < 1.0 || p.target_bpw > 32.0))
        return eng_fail(ENG_ERANGE, "target of %g bits per weight is outside 1..32", p.target_bpw);
    enum eng_type uniform_type = ENG_TYPE_COUNT;
    if (p.uniform) {
        int ty = eng_type_from_name(p.uniform);
        if (ty < 0 || !eng_type_traits((enum eng_type)ty))
            return eng_fail(ENG_EINVAL, "unknown format '%s'", p.uniform);
        uniform_type = (enum eng_type)ty;
    }
    if (p.n_threads <= 0) p.n_threads = eng_default_threads();
    if (p.sparsity != CMP_SPARSITY_OFF && p.sparsity != CMP_SPARSITY_AUTO)
        return eng_fail(ENG_EINVAL, "unknown sparsity mode");
    struct staging stage;
    int err = staging_init(&stage, &p);
    if (!err) err = check_writable(p.output, "output");
    if (!err && p.report_prefix) {
        char path[4200];
        report_path(path, sizeof(path), p.report_prefix, "json");
        err = check_writable(path, "report");
        report_path(path, sizeof(path), p.report_prefix, "svg");
        if (!err) err = check_writable(path, "report");
    }
    if (err) return err;

    struct cmp_progress pr = {.on = p.progress && isatty(2)};
    struct eng_model *m = eng_model_load(p.input, NULL);
    if (!m) return ENG_EFORMAT;
    const struct eng_gguf *g = eng_model_gguf(m);
    struct cmp_calib *cal = NULL;
    struct cmp_tensor *t = NULL;
    struct cmp_alloc_item *items = NULL;
    struct cmp_choice *choices = NULL;
    int *pick = NULL, n_t = 0;
    struct cmp_sparse_eval *sparse = NULL;

    if ((err = collect(m, p.allow_low_head || p.uniform, &t, &n_t))) goto out;

    /* Fixed bytes: everything that is not a weight matrix, plus alignment padding. */
    uint64_t fixed = 0, n_params = 0, mat_params = 0, mat_min = 0;
    for (int64_t i = 0; i < eng_gguf_n_tensors(g); i++) {
        const struct eng_tensor *s = eng_gguf_tensor_at(g, i);
        uint64_t ne = (uint64_t)(s->ne[0] * s->ne[1] * s->ne[2] * s->ne[3]);
        n_params += ne;
        if (!find_by_name(t, n_t, s->name))
            fixed += s->nbytes;
        else
            mat_params += ne;
        fixed += eng_gguf_alignment(g); /* padding, at most */
    }
    for (int i = 0; i < n_t; i++) {
        uint64_t mn = t[i].bytes[0];
        for (int c = 1; c < t[i].n_cand; c++) mn = t[i].bytes[c] < mn ? t[i].bytes[c] : mn;
        mat_min += mn;
    }
    uint64_t header = eng_gguf_data_offset(g) + 64 * (uint64_t)n_t + 4096; /* + luc metadata */
    uint64_t budget = UINT64_MAX;
    if (p.target_bytes > 0)
        budget = p.target_bytes > header + fixed ? p.target_bytes - header - fixed : 0;
    else if (p.target_bpw > 0) {
        uint64_t all = (uint64_t)(p.target_bpw * (double)n_params / 8.0);
        budget = all > fixed ? all - fixed : 0;
    }
    /* before any work: a budget below every matrix in its smallest format cannot be met */
    if (!p.uniform && budget < mat_min) {
        err = fail_unreachable(&p, mat_min, fixed, header, n_params);
        goto out;
    }

    cmp_progress_phase(&pr, "calibrating");
    cal = cmp_calib_run(m, p.calib_path, p.calib_tokens, p.kl_tokens, p.chunk, p.n_threads,
                        cmp_progress_update, &pr);
    if (!cal) {
        err = ENG_EINVAL;
        goto out;
    }
    for (int i = 0; i < n_t; i++)
        t[i].imp = cmp_calib_importance(cal, t[i].kind, t[i].layer < 0 ? 0 : t[i].layer);

    cmp_progress_phase(&pr, "measuring errors");
    if ((err = error_table(t, n_t, p.n_threads, p.plain_quant, &pr))) goto out;
    r.n_tensors = n_t;
    if (p.sparsity == CMP_SPARSITY_AUTO) {
        cmp_progress_phase(&pr, "evaluating sparsity");
        sparse = calloc((size_t)n_t, sizeof(*sparse));
        if (!sparse) {
            err = eng_fail(ENG_ENOMEM, "out of memory");
            goto out;
        }
        cmp_sparsity_eval(t, n_t, p.n_threads, p.plain_quant, sparse);
        cmp_sparsity_summary(sparse, n_t, r.sparse_ratio, r.sparse_pays);
        r.sparsity_evaluated = true;
        /* Measured and reported only: this version has no sparse storage format with kernels
         * of its own, so pruned weights are never written (see sparsity.c). */
    }

    const char *allocation = p.uniform ? "uniform" : "luc";
    double pred_total = 0.0;
    if (p.uniform) {
        for (int i = 0; i < n_t; i++) {
            /* the format itself; where its blocks do not fit the rows, the nearest larger one */
            int best = find_cand(&t[i], uniform_type);
            for (int c = 0; c < t[i].n_cand && find_cand(&t[i], uniform_type) < 0; c++) {
                double b = type_bpw(t[i].cand[c]);
                if (b >= type_bpw(uniform_type) && (best < 0 || b < type_bpw(t[i].cand[best])))
                    best = c;
            }
            t[i].pick = best >= 0 ? best : 0; /* candidates are sorted, most bits first */
            for (int c = 0; c < t[i].n_cand; c++) t[i].kl_meas[c] = NAN, t[i].pred[c] = NAN;
        }
    } else {
        double mat_bpw = 8.0 * (double)budget / (double)(mat_params ? mat_params : 1);
        cmp_progress_phase(&pr, "measuring sensitivity");
        if ((err = sensitivity(m, cal, t, n_t, mat_bpw, &p, &pr))) goto out;
        items = calloc((size_t)n_t, sizeof(*items));
        choices = calloc((size_t)n_t * CMP_MAX_CAND, sizeof(*choices));
        pick = calloc((size_t)n_t, sizeof(int));
        if (!items || !choices || !pick) {
            err = eng_fail(ENG_ENOMEM, "out of memory");
            goto out;
        }
        for (int i = 0; i < n_t; i++) {
            items[i].n_choices = t[i].n_cand;
            items[i].choices = choices + (size_t)i * CMP_MAX_CAND;
            for (int c = 0; c < t[i].n_cand; c++)
                choices[(size_t)i * CMP_MAX_CAND + c] =
                    (struct cmp_choice){t[i].bytes[c], t[i].pred[c]};
        }
        uint64_t min_bytes;
        err = cmp_allocate(items, n_t, budget, pick, &min_bytes);
        if (err == ENG_ERANGE) {
            err = fail_unreachable(&p, min_bytes, fixed, header, n_params);
            goto out;
        }
        if (err) goto out;
        for (int i = 0; i < n_t; i++) {
            t[i].pick = pick[i];
            pred_total += t[i].pred[pick[i]];
        }
    }

    cmp_progress_phase(&pr, "writing");
    if ((err = write_output(&p, stage.out, g, t, n_t, allocation, pred_total, cal->n_imp_tokens,
                            &pr)))
        goto out;

    /* measured KL of the result on the KL set */
    cmp_progress_phase(&pr, "evaluating");
    struct eng_model *outm = eng_model_load(stage.out, NULL);
    if (!outm) {
        err = ENG_EFORMAT;
        goto out;
    }
    r.file_bytes = eng_gguf_file_size(eng_model_gguf(outm));
    r.bpw = 8.0 * (double)eng_model_weight_bytes(outm) / (double)eng_model_n_params(outm);
    err = cmp_calib_kld(cal, outm, 0, p.n_threads, &r.measured_kld, NULL);
    eng_model_free(outm);
    cmp_progress_update(&pr, 1.0);
    cmp_progress_done(&pr);
    if (err) goto out;
    r.predicted_kld = p.uniform ? NAN : pred_total;
    r.seconds = cmp_now() - t0;
    r.peak_rss_bytes = cmp_peak_rss();
    if (p.report_prefix)
        err = cmp_report_write(stage.prefix, &p, t, n_t, &r, eng_model_hparams(m)->n_layer, budget,
                               allocation, sparse);
    if (!err) err = staging_commit(&stage, &p);
    if (!err && res) *res = r;
out:
    if (err) staging_abort(&stage, &p);
    cmp_progress_done(&pr);
    free(sparse);
    free(items);
    free(choices);
    free(pick);
    free(t);
    cmp_calib_free(cal);
    eng_model_free(m);
    return err;
}
