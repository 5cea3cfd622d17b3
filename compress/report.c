/*
 * report.c — the compression report: PREFIX.json (every tensor's candidates with size, weighted
 * error, measured and predicted KL, the choice; per-layer summaries; totals) and PREFIX.svg (per
 * layer: sensitivity on a log scale, and the chosen bits per weight against the target).
 */
#include "internal.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct layer_sum {
    double params, bits, sens, pred;
};

static double tensor_params(const struct cmp_tensor *t) {
    return (double)t->src->ne[0] * (double)t->src->ne[1];
}

/* The sensitivity of a tensor: its measured KL at the lowest measured format. */
static double tensor_sens(const struct cmp_tensor *t) {
    double best = NAN, bpw = 1e9;
    for (int c = 0; c < t->n_cand; c++) {
        if (isnan(t->kl_meas[c])) continue;
        double b = 8.0 * (double)t->bytes[c] / tensor_params(t);
        if (b < bpw) bpw = b, best = t->kl_meas[c];
    }
    return best;
}

static json_t *num_or_null(double x) {
    return isfinite(x) ? json_real(x) : json_null();
}

static json_t *sparsity_json(const struct cmp_tensor *t, int n, const struct cmp_result *res,
                             const struct cmp_sparse_eval *ev) {
    json_t *o = json_object();
    json_object_set_new(o, "evaluated", json_true());
    json_object_set_new(o, "used", json_false());
    json_object_set_new(
        o, "measured",
        json_string("per weight matrix, on up to 512 sampled rows: Wanda pruning (score "
                    "|W_ij|*||x_j|| within each output row) to 2:4 (two of every four "
                    "consecutive inputs kept) and to 50% unstructured, the kept weights "
                    "quantized to 4 bits with the importance-weighted q4_0 quantizer, and the "
                    "importance-weighted squared error against the dense formats' error at the "
                    "same bits per weight (3.25 for 2:4 and 3.5 for 50%, counting the pattern "
                    "or mask bits and the scales)"));
    json_object_set_new(
        o, "why",
        json_string("not offered: this version has no sparse storage format with its own "
                    "kernels, so pruned weights are never written; these figures say where one "
                    "would have lower error than the dense formats at its size"));
    json_t *formats = json_array();
    for (int k = 0; k < CMP_SPARSE_COUNT; k++) {
        json_t *f = json_object();
        json_object_set_new(f, "name", json_string(cmp_sparse_name((enum cmp_sparse_kind)k)));
        json_object_set_new(f, "bpw", json_real(cmp_sparse_bpw((enum cmp_sparse_kind)k)));
        json_object_set_new(f, "median_error_ratio", num_or_null(res->sparse_ratio[k]));
        json_object_set_new(f, "tensors_where_it_pays", json_integer(res->sparse_pays[k]));
        json_t *per = json_array();
        for (int i = 0; i < n; i++) {
            json_t *e = json_object();
            json_object_set_new(e, "name", json_string(t[i].src->name));
            json_object_set_new(e, "weighted_error", num_or_null(ev[i].err[k]));
            json_object_set_new(e, "dense_error_same_size", num_or_null(ev[i].dense_err[k]));
            json_array_append_new(per, e);
        }
        json_object_set_new(f, "tensors", per);
        json_array_append_new(formats, f);
    }
    json_object_set_new(o, "formats", formats);
    return o;
}

static int write_json(const char *path, const struct cmp_params *p, const struct cmp_tensor *t,
                      int n, const struct cmp_result *res, const struct layer_sum *ls, int n_cols,
                      uint64_t budget, const char *allocation,
                      const struct cmp_sparse_eval *sparse) {
    json_t *root = json_object();
    json_object_set_new(root, "input", json_string(p->input));
    json_object_set_new(root, "output", json_string(p->output));
    json_object_set_new(root, "allocation", json_string(allocation));
    if (p->target_bpw > 0) json_object_set_new(root, "target_bpw", json_real(p->target_bpw));
    if (p->target_bytes > 0)
        json_object_set_new(root, "target_bytes", json_integer((json_int_t)p->target_bytes));
    if (p->uniform) json_object_set_new(root, "uniform", json_string(p->uniform));
    if (budget != UINT64_MAX)
        json_object_set_new(root, "matrix_budget_bytes", json_integer((json_int_t)budget));
    json_object_set_new(root, "file_bytes", json_integer((json_int_t)res->file_bytes));
    json_object_set_new(root, "bpw", json_real(res->bpw));
    json_object_set_new(root, "predicted_kld", num_or_null(res->predicted_kld));
    json_object_set_new(root, "measured_kld", num_or_null(res->measured_kld));
    json_object_set_new(root, "seconds", json_real(res->seconds));
    json_object_set_new(root, "peak_rss_bytes", json_integer((json_int_t)res->peak_rss_bytes));
    json_object_set_new(root, "calibration_text", json_string(p->calib_path));
    json_object_set_new(root, "importance_weighted", json_boolean(!p->plain_quant));
    json_t *tensors = json_array();
    for (int i = 0; i < n; i++) {
        const struct cmp_tensor *ct = &t[i];
        json_t *o = json_object();
        json_object_set_new(o, "name", json_string(ct->src->name));
        json_object_set_new(o, "kind", json_string(cmp_kind_name(ct->kind)));
        json_object_set_new(o, "layer", json_integer(ct->layer));
        json_object_set_new(o, "cols", json_integer(ct->src->ne[0]));
        json_object_set_new(o, "rows", json_integer(ct->src->ne[1]));
        json_object_set_new(o, "source_type", json_string(eng_type_name(ct->src->type)));
        json_object_set_new(o, "chosen", json_string(eng_type_name(ct->cand[ct->pick])));
        json_object_set_new(o, "bytes", json_integer((json_int_t)ct->bytes[ct->pick]));
        json_object_set_new(o, "sensitivity", num_or_null(ct->alpha));
        json_t *cands = json_array();
        for (int c = 0; c < ct->n_cand; c++) {
            json_t *cj = json_object();
            json_object_set_new(cj, "type", json_string(eng_type_name(ct->cand[c])));
            json_object_set_new(cj, "bpw",
                                json_real(8.0 * (double)ct->bytes[c] / tensor_params(ct)));
            json_object_set_new(cj, "bytes", json_integer((json_int_t)ct->bytes[c]));
            json_object_set_new(cj, "weighted_error", num_or_null(ct->werr[c]));
            json_object_set_new(cj, "measured_kld", num_or_null(ct->kl_meas[c]));
            json_object_set_new(cj, "predicted_kld", num_or_null(ct->pred[c]));
            json_array_append_new(cands, cj);
        }
        json_object_set_new(o, "candidates", cands);
        json_array_append_new(tensors, o);
    }
    json_object_set_new(root, "tensors", tensors);
    json_t *layers = json_array();
    for (int l = 0; l < n_cols; l++) {
        json_t *o = json_object();
        if (l < n_cols - 2)
            json_object_set_new(o, "layer", json_integer(l));
        else
            json_object_set_new(o, "layer", json_string(l == n_cols - 2 ? "token_embd" : "output"));
        json_object_set_new(o, "bpw", num_or_null(ls[l].params ? ls[l].bits / ls[l].params : NAN));
        json_object_set_new(o, "sensitivity", num_or_null(ls[l].sens));
        json_object_set_new(o, "predicted_kld", num_or_null(ls[l].pred));
        json_array_append_new(layers, o);
    }
    json_object_set_new(root, "layers", layers);
    if (sparse) json_object_set_new(root, "sparsity", sparsity_json(t, n, res, sparse));
    int rc = json_dump_file(root, path, JSON_INDENT(1) | JSON_REAL_PRECISION(6));
    json_decref(root);
    return rc == 0 ? 0 : eng_fail(ENG_EIO, "%s: cannot write the report", path);
}

static int write_svg(const char *path, const struct cmp_params *p, const struct layer_sum *ls,
                     int n_cols, const struct cmp_result *res) {
    FILE *f = fopen(path, "w");
    if (!f) return eng_fail(ENG_EIO, "%s: cannot write the plot", path);
    const int W = 960, H = 520, x0 = 70, x1 = W - 20, top0 = 40, top1 = 230, bot0 = 290, bot1 = 480;
    double colw = (double)(x1 - x0) / n_cols;
    double smin = 1e300, smax = 0, bmax = 0;
    for (int l = 0; l < n_cols; l++) {
        if (ls[l].sens > 0) smin = fmin(smin, ls[l].sens), smax = fmax(smax, ls[l].sens);
        if (ls[l].params) bmax = fmax(bmax, ls[l].bits / ls[l].params);
    }
    if (smax <= 0) smin = 1e-6, smax = 1e-5;
    double lmin = floor(log10(smin)), lmax = ceil(log10(smax));
    if (lmax <= lmin) lmax = lmin + 1;
    bmax = ceil(fmax(bmax, p->target_bpw) + 0.5);
    fprintf(f,
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
            "font-family=\"sans-serif\" font-size=\"12\">\n",
            W, H);
    fprintf(f, "<rect width=\"%d\" height=\"%d\" fill=\"white\"/>\n", W, H);
    fprintf(f,
            "<text x=\"%d\" y=\"22\" font-size=\"15\">Layer-wise compression: %.2f bits per "
            "weight, KL %.4g (measured)</text>\n",
            x0, res->bpw, res->measured_kld);
    fprintf(f,
            "<text x=\"%d\" y=\"%d\">sensitivity: KL increase at the lower measured format "
            "(log scale)</text>\n",
            x0, top0 + 8);
    fprintf(f, "<text x=\"%d\" y=\"%d\">chosen bits per weight%s</text>\n", x0, bot0 - 6,
            p->target_bpw > 0 ? " (line: target)" : "");
    for (int e = (int)lmin; e <= (int)lmax; e++) {
        double y = top1 - (e - lmin) / (lmax - lmin) * (top1 - top0 - 20);
        fprintf(f,
                "<line x1=\"%d\" x2=\"%d\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"#ddd\"/>"
                "<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\">1e%d</text>\n",
                x0, x1, y, y, x0 - 4, y + 4, e);
    }
    for (int b = 0; b <= (int)bmax; b += 2) {
        double y = bot1 - b / bmax * (bot1 - bot0);
        fprintf(f,
                "<line x1=\"%d\" x2=\"%d\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"#ddd\"/>"
                "<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\">%d</text>\n",
                x0, x1, y, y, x0 - 4, y + 4, b);
    }
    for (int l = 0; l < n_cols; l++) {
        double x = x0 + l * colw + colw * 0.15, w = colw * 0.7;
        if (ls[l].sens > 0) {
            double y = top1 - (log10(ls[l].sens) - lmin) / (lmax - lmin) * (top1 - top0 - 20);
            fprintf(f,
                    "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" "
                    "fill=\"#c0504d\"/>\n",
                    x, y, w, top1 - y);
        }
        if (ls[l].params) {
            double bpw = ls[l].bits / ls[l].params, y = bot1 - bpw / bmax * (bot1 - bot0);
            fprintf(f,
                    "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" "
                    "fill=\"#4f81bd\"/>\n",
                    x, y, w, bot1 - y);
        }
        const char *lab = l < n_cols - 2 ? NULL : l == n_cols - 2 ? "embd" : "out";
        if (lab)
            fprintf(f, "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">%s</text>\n", x + w / 2,
                    bot1 + 16, lab);
        else if (n_cols <= 40 || l % 2 == 0)
            fprintf(f, "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">%d</text>\n", x + w / 2,
                    bot1 + 16, l);
    }
    if (p->target_bpw > 0) {
        double y = bot1 - p->target_bpw / bmax * (bot1 - bot0);
        fprintf(f,
                "<line x1=\"%d\" x2=\"%d\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"black\" "
                "stroke-dasharray=\"6,4\"/>\n",
                x0, x1, y, y);
    }
    fprintf(f, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">layer</text>\n", (x0 + x1) / 2,
            H - 8);
    fprintf(f, "</svg>\n");
    int bad = ferror(f);
    if (fclose(f) != 0 || bad) return eng_fail(ENG_EIO, "%s: cannot write the plot", path);
    return 0;
}

int cmp_report_write(const char *prefix, const struct cmp_params *p, const struct cmp_tensor *t,
                     int n, const struct cmp_result *res, int n_layer, uint64_t budget,
                     const char *allocation, const struct cmp_sparse_eval *sparse) {
    int n_cols = n_layer + 2; /* layers, token_embd, output */
    struct layer_sum *ls = calloc((size_t)n_cols, sizeof(*ls));
    if (!ls) return eng_fail(ENG_ENOMEM, "out of memory");
    for (int i = 0; i < n; i++) {
        int col = t[i].layer >= 0 ? t[i].layer : t[i].kind == CMP_KIND_EMBD ? n_layer : n_layer + 1;
        ls[col].params += tensor_params(&t[i]);
        ls[col].bits += 8.0 * (double)t[i].bytes[t[i].pick];
        double s = tensor_sens(&t[i]);
        if (isfinite(s)) ls[col].sens += s;
        if (isfinite(t[i].pred[t[i].pick])) ls[col].pred += t[i].pred[t[i].pick];
    }
    size_t len = strlen(prefix) + 8;
    char *path = malloc(len);
    int err = path ? 0 : eng_fail(ENG_ENOMEM, "out of memory");
    if (!err) {
        snprintf(path, len, "%s.json", prefix);
        err = write_json(path, p, t, n, res, ls, n_cols, budget, allocation, sparse);
    }
    if (!err) {
        snprintf(path, len, "%s.svg", prefix);
        err = write_svg(path, p, ls, n_cols, res);
    }
    free(path);
    free(ls);
    return err;
}
