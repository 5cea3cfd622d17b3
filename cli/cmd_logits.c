/*
 * cmd_logits.c — `edgellm logits`: runs the forward pass on given token ids and prints logits
 * as one JSON object, for reference checks and debugging. The JSON shape is shared with
 * tools/reference/logits.py: n_vocab, n_layer, exit, positions, logits, greedy.
 */
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(void) {
    printf("usage: edgellm logits -m MODEL --ids 1,2,3 [--all] [--exit L] [--greedy N]\n"
           "                      [--batch N] [-t THREADS] [--summary]\n\n"
           "Prints {\"n_vocab\", \"n_layer\", \"exit\", \"positions\", \"logits\", \"greedy\"} as "
           "JSON.\n"
           "  --all        logits for every position (default: the last one)\n"
           "  --exit L     logits of exit layer L (final norm + output head on block L's output)\n"
           "  --greedy N   also generate N tokens greedily after the ids (final layer)\n"
           "  --batch N    prefill in chunks of N tokens (default: all at once)\n"
           "  -t N         threads (default: performance cores)\n"
           "  --summary    print the top 5 (id, logit) per position instead of all logits\n");
}

static int argmax(const float *x, int n) {
    int best = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[best]) best = i;
    return best;
}

static void print_row(const float *x, int n, bool summary) {
    if (!summary) {
        putchar('[');
        for (int i = 0; i < n; i++) printf(i ? ",%.9g" : "%.9g", x[i]);
        putchar(']');
        return;
    }
    int top[5], k = n < 5 ? n : 5;
    for (int j = 0; j < k; j++) {
        int best = -1;
        for (int i = 0; i < n; i++) {
            bool used = false;
            for (int u = 0; u < j; u++) used |= top[u] == i;
            if (!used && (best < 0 || x[i] > x[best])) best = i;
        }
        top[j] = best;
    }
    putchar('[');
    for (int j = 0; j < k; j++) printf(j ? ",[%d,%.6g]" : "[%d,%.6g]", top[j], x[top[j]]);
    putchar(']');
}

int cmd_logits(int argc, char **argv) {
    const char *path = NULL, *ids_arg = NULL;
    int32_t *ids = NULL;
    int n_ids = 0;
    long exit_layer = -1, greedy = 0, threads = 0, batch = 0;
    bool all = false, summary = false;
    int rc = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool has_val = i + 1 < argc;
        if (cli_is_help(a)) {
            usage();
            return 0;
        } else if (!strcmp(a, "-m") && has_val) {
            path = argv[++i];
        } else if (!strcmp(a, "--ids") && has_val) {
            ids_arg = argv[++i]; /* parsed after the options: nothing to free on a usage error */
        } else if (!strcmp(a, "--all")) {
            all = true;
        } else if (!strcmp(a, "--summary")) {
            summary = true;
        } else if (!strcmp(a, "--exit") && has_val) {
            if (cli_parse_int(argv[++i], 0, 1 << 20, &exit_layer))
                return cli_usage_error("logits", "--exit takes a layer index");
        } else if (!strcmp(a, "--greedy") && has_val) {
            if (cli_parse_int(argv[++i], 0, 1 << 20, &greedy))
                return cli_usage_error("logits", "--greedy takes a token count");
        } else if (!strcmp(a, "--batch") && has_val) {
            if (cli_parse_int(argv[++i], 1, 1 << 16, &batch))
                return cli_usage_error("logits", "--batch takes a positive count");
        } else if ((!strcmp(a, "-t") || !strcmp(a, "--threads")) && has_val) {
            if (cli_parse_int(argv[++i], 1, 1024, &threads))
                return cli_usage_error("logits", "-t takes a thread count");
        } else {
            return cli_usage_error("logits", "unknown or incomplete option '%s'", a);
        }
    }
    if (!path || !ids_arg) return cli_usage_error("logits", "-m MODEL and --ids are required");
    n_ids = cli_parse_ids(ids_arg, &ids);
    if (n_ids < 1) return cli_usage_error("logits", "--ids takes a list like 1,2,3");

    struct eng_model *m = eng_model_load(path, NULL);
    struct eng_ctx *c = NULL;
    float *row = NULL;
    if (!m) {
        cli_fail("logits", "%s", eng_last_error());
        goto out;
    }
    const struct eng_hparams *hp = eng_model_hparams(m);
    if (exit_layer >= hp->n_layer) {
        rc = cli_usage_error("logits", "--exit %ld: the model has layers 0..%d", exit_layer,
                             hp->n_layer - 1);
        goto out;
    }
    struct eng_ctx_params cp;
    eng_ctx_params_default(m, &cp);
    cp.n_ctx = n_ids + (int)greedy + 1;
    cp.n_batch = batch ? (int)batch : n_ids;
    if (cp.n_batch > n_ids) cp.n_batch = n_ids;
    cp.n_outputs = all ? cp.n_batch : 1;
    if (threads) cp.n_threads = (int)threads;
    c = eng_ctx_new(m, &cp);
    if (!c) {
        cli_fail("logits", "%s", eng_last_error());
        goto out;
    }
    int exit_idx = -1;
    if (exit_layer >= 0) {
        int l = (int)exit_layer;
        if (eng_ctx_set_exits(c, &l, 1) != 0) {
            cli_fail("logits", "%s", eng_last_error());
            goto out;
        }
        exit_idx = 0;
    }
    row = malloc((size_t)hp->n_vocab * sizeof(float));
    int8_t *want = malloc((size_t)cp.n_batch);
    int32_t *pos = malloc((size_t)cp.n_batch * sizeof(int32_t));
    if (!row || !want || !pos) {
        free(want);
        free(pos);
        cli_fail("logits", "out of memory");
        goto out;
    }
    printf("{\"n_vocab\":%d,\"n_layer\":%d,\"exit\":%ld,\"positions\":[", hp->n_vocab, hp->n_layer,
           exit_layer >= 0 ? exit_layer : hp->n_layer - 1);
    for (int p = all ? 0 : n_ids - 1, first = 1; p < n_ids; p++, first = 0)
        printf(first ? "%d" : ",%d", p);
    printf("],\"%s\":[", summary ? "top" : "logits");
    int last_tok = 0, printed = 0;
    for (int start = 0; start < n_ids; start += cp.n_batch) {
        int n = n_ids - start < cp.n_batch ? n_ids - start : cp.n_batch;
        for (int t = 0; t < n; t++) {
            pos[t] = start + t;
            want[t] = all || start + t == n_ids - 1;
        }
        struct eng_batch b = {n, ids + start, pos, NULL, want};
        if (eng_forward(c, &b) != 0) {
            printf("]}\n");
            cli_fail("logits", "%s", eng_last_error());
            free(want);
            free(pos);
            goto out;
        }
        for (int o = 0; o < eng_n_outputs(c); o++) {
            const float *lg = eng_logits(c, o);
            if (exit_idx >= 0) {
                eng_exit_logits(c, exit_idx, o, NULL, 0, row);
                lg = row;
            }
            if (printed++) putchar(',');
            print_row(lg, hp->n_vocab, summary);
            if (start + eng_output_token_index(c, o) == n_ids - 1)
                last_tok = argmax(eng_logits(c, o), hp->n_vocab);
        }
    }
    printf("]");
    if (greedy > 0) {
        printf(",\"greedy\":[");
        int32_t tok = last_tok;
        for (int g = 0; g < greedy; g++) {
            printf(g ? ",%d" : "%d", tok);
            if (g == greedy - 1) break;
            int32_t p = n_ids + g;
            struct eng_batch b = {1, &tok, &p, NULL, NULL};
            if (eng_forward(c, &b) != 0) {
                printf("]}\n");
                cli_fail("logits", "%s", eng_last_error());
                free(want);
                free(pos);
                goto out;
            }
            tok = argmax(eng_logits(c, 0), hp->n_vocab);
        }
        printf("]");
    }
    printf("}\n");
    free(want);
    free(pos);
    rc = 0;
out:
    free(row);
    free(ids);
    eng_ctx_free(c);
    eng_model_free(m);
    return rc;
}
