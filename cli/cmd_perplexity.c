/*
 * cmd_perplexity.c — `edgellm perplexity`: perplexity of a model on a text file, computed the way
 * llama.cpp's perplexity tool does so the figures compare: the file is tokenized once (BOS first
 * if the model adds one), cut into non-overlapping chunks of CTX tokens, each chunk evaluated
 * from an empty cache with its first token replaced by BOS (when the model uses one), and only
 * the second half of each chunk is scored (every scored token sees at least CTX/2 tokens of
 * context). PPL = exp(mean negative log-likelihood over the scored tokens).
 *
 * With --kld-base BASE, BASE runs over exactly the same chunks and, at every scored position,
 * the KL divergence KL(P_base || P_model) and whether both argmaxes agree are accumulated
 * (compress/kld.c): mean and p99 KL divergence and top-1 agreement, as llama.cpp's
 * --kl-divergence reports them. Both models must have the same vocabulary.
 *
 * Does not: sample, or keep state between chunks.
 */
#include "cli.h"
#include "compress.h"

#include <jansson.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define CMD "perplexity"

static void usage(void) {
    printf("usage: edgellm perplexity [-m MODEL] -f TEXT [-c CTX] [-b BATCH] [--chunks N] "
           "[-t THREADS]\n"
           "                          [--kld-base BASE] [--json]\n\n"
           "Perplexity over non-overlapping chunks of CTX tokens, scoring the second half of each\n"
           "chunk (llama.cpp's method). The last line is \"PPL = <value>\".\n"
           "  -m MODEL          GGUF model (default %s)\n"
           "  -f TEXT           text file\n"
           "  -c CTX            tokens per chunk (default 512)\n"
           "  -b BATCH          tokens per forward pass (default min(CTX, 512))\n"
           "  --chunks N        stop after N chunks (default: all)\n"
           "  -t THREADS        threads (default: performance cores)\n"
           "  --kld-base BASE   also compare MODEL's next-token distributions with BASE's (same\n"
           "                    vocabulary) at the scored positions: mean and 99th percentile of\n"
           "                    KL(BASE || MODEL) in nats, and top-1 agreement; printed before\n"
           "                    the PPL line\n"
           "  --json            print one JSON object instead (per-chunk lines go to stderr)\n",
           CLI_DEFAULT_MODEL);
}

static char *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *buf = NULL;
    size_t cap = 0, n = 0;
    for (;;) {
        if (n + 65536 > cap) {
            cap = (n + 65536) * 2;
            char *nb = realloc(buf, cap);
            if (!nb) {
                free(buf);
                fclose(f);
                return NULL;
            }
            buf = nb;
        }
        size_t got = fread(buf + n, 1, cap - n - 1, f);
        n += got;
        if (got == 0) break;
    }
    fclose(f);
    buf[n] = 0;
    *len = n;
    return buf;
}

/* -log softmax(logits)[target] */
static double nll(const float *logits, int n_vocab, int32_t target) {
    float mx = logits[0];
    for (int i = 1; i < n_vocab; i++)
        if (logits[i] > mx) mx = logits[i];
    double z = 0;
    for (int i = 0; i < n_vocab; i++) z += exp((double)(logits[i] - mx));
    return -((double)(logits[target] - mx) - log(z));
}

/* 0 if a and b have the same vocabulary (count and every token's text when both files list
 * them); else prints a one-line error and returns 1. */
static int same_vocab(const char *path, const struct eng_model *m, const char *base_path,
                      const struct eng_model *base) {
    int nv = eng_model_hparams(m)->n_vocab, nb = eng_model_hparams(base)->n_vocab;
    if (nv != nb)
        return cli_fail(CMD,
                        "%s has %d tokens in its vocabulary and %s has %d: KL divergence "
                        "needs the same vocabulary",
                        path, nv, base_path, nb);
    const void *tm, *tb;
    int64_t n_m =
        eng_gguf_get_arr(eng_model_gguf(m), "tokenizer.ggml.tokens", ENG_GGUF_STRING, &tm);
    int64_t n_b =
        eng_gguf_get_arr(eng_model_gguf(base), "tokenizer.ggml.tokens", ENG_GGUF_STRING, &tb);
    if (n_m < 0 || n_b < 0) return 0; /* nothing more to compare */
    if (n_m != n_b)
        return cli_fail(CMD, "%s lists %lld tokens and %s %lld: not the same vocabulary", path,
                        (long long)n_m, base_path, (long long)n_b);
    const struct eng_gguf_str *a = tm, *b = tb;
    for (int64_t i = 0; i < n_m; i++)
        if (a[i].len != b[i].len || memcmp(a[i].s, b[i].s, a[i].len) != 0)
            return cli_fail(CMD, "token %lld differs between %s and %s: not the same vocabulary",
                            (long long)i, path, base_path);
    return 0;
}

static struct eng_ctx *new_ctx(const struct eng_model *m, long ctx, long batch, long threads) {
    struct eng_ctx_params cp;
    eng_ctx_params_default(m, &cp);
    cp.n_slots = 1;
    cp.n_ctx = (int)ctx;
    cp.n_batch = (int)batch;
    cp.n_outputs = (int)batch; /* every position of a batch can give logits */
    if (threads) cp.n_threads = (int)threads;
    return eng_ctx_new(m, &cp);
}

int cmd_perplexity(int argc, char **argv) {
    const char *path = NULL, *file = NULL, *base_path = NULL;
    long ctx = 512, batch = 0, chunks = -1, threads = 0;
    bool json = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool v = i + 1 < argc;
        if (cli_is_help(a)) {
            usage();
            return 0;
        } else if (!strcmp(a, "-m") && v) {
            path = argv[++i];
        } else if (!strcmp(a, "-f") && v) {
            file = argv[++i];
        } else if (!strcmp(a, "--kld-base") && v) {
            base_path = argv[++i];
        } else if (!strcmp(a, "--json")) {
            json = true;
        } else if (!strcmp(a, "-c") && v) {
            if (cli_parse_int(argv[++i], 4, 1 << 20, &ctx))
                return cli_usage_error(CMD, "-c takes a context size of at least 4");
        } else if (!strcmp(a, "-b") && v) {
            if (cli_parse_int(argv[++i], 1, 1 << 20, &batch))
                return cli_usage_error(CMD, "-b takes a positive batch size");
        } else if (!strcmp(a, "--chunks") && v) {
            if (cli_parse_int(argv[++i], 1, 1 << 30, &chunks))
                return cli_usage_error(CMD, "--chunks takes a positive count");
        } else if (!strcmp(a, "-t") && v) {
            if (cli_parse_int(argv[++i], 1, 1024, &threads))
                return cli_usage_error(CMD, "-t takes a thread count");
        } else {
            return cli_usage_error(CMD, "unknown or incomplete option '%s'", a);
        }
    }
    if (!file) return cli_usage_error(CMD, "-f TEXT is required");
    if (!(path = cli_model_path(CMD, path))) return 1;
    if (!batch || batch > ctx) batch = ctx < 512 ? ctx : 512;

    int rc = 1;
    size_t len = 0;
    char *text = read_file(file, &len);
    struct eng_model *m = NULL, *base = NULL;
    struct eng_tokenizer *t = NULL;
    struct eng_ctx *c = NULL, *cb = NULL;
    struct cmp_kld_acc *acc = NULL;
    int32_t *tok = NULL, *pos = NULL;
    int8_t *want = NULL;
    FILE *chunk_out = json ? stderr : stdout;
    if (!text) return cli_fail(CMD, "%s: cannot read", file);
    if (!(m = eng_model_load(path, NULL)) || !(t = eng_tokenizer_load(eng_model_gguf(m)))) {
        cli_fail(CMD, "%s", eng_last_error());
        goto out;
    }
    if (base_path) {
        if (!(base = eng_model_load(base_path, NULL))) {
            cli_fail(CMD, "%s", eng_last_error());
            goto out;
        }
        if (same_vocab(path, m, base_path, base)) goto out;
        if (!(acc = cmp_kld_acc_new())) {
            cli_fail(CMD, "out of memory");
            goto out;
        }
    }
    int n_vocab = eng_model_hparams(m)->n_vocab;
    int n_tok = eng_tokenize(t, text, len, NULL, 0, ENG_TOKENIZE_ADD_SPECIAL);
    tok = n_tok > 0 ? malloc((size_t)n_tok * sizeof(int32_t)) : NULL;
    if (n_tok < 0 || !tok || eng_tokenize(t, text, len, tok, n_tok, ENG_TOKENIZE_ADD_SPECIAL) < 0) {
        cli_fail(CMD, "tokenizing %s: %s", file, n_tok < 0 ? eng_last_error() : "out of memory");
        goto out;
    }
    if (n_tok < ctx) {
        cli_fail(CMD, "%s has %d tokens, fewer than one chunk of %ld (use a smaller -c)", file,
                 n_tok, ctx);
        goto out;
    }
    int n_chunk = (int)(n_tok / ctx);
    if (chunks > 0 && chunks < n_chunk) n_chunk = (int)chunks;
    c = new_ctx(m, ctx, batch, threads);
    if (c && base) cb = new_ctx(base, ctx, batch, threads);
    pos = malloc((size_t)batch * sizeof(int32_t));
    want = malloc((size_t)batch);
    if (!c || (base && !cb) || !pos || !want) {
        cli_fail(CMD, "%s", !c || (base && !cb) ? eng_last_error() : "out of memory");
        goto out;
    }
    int32_t bos = eng_tokenizer_add_bos(t) ? eng_token_bos(t) : -1;
    int first = (int)ctx / 2;
    double sum = 0, sum2 = 0, base_sum = 0;
    long count = 0;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    fprintf(stderr, "perplexity: %d tokens, %d chunks of %ld, scoring the last %ld of each\n",
            n_tok, n_chunk, ctx, ctx - 1 - first);
    for (int ch = 0; ch < n_chunk; ch++) {
        int start = ch * (int)ctx;
        int32_t saved = tok[start];
        if (bos >= 0) tok[start] = bos;
        for (int b0 = 0; b0 < ctx; b0 += (int)batch) {
            int n = (int)(ctx - b0 < batch ? ctx - b0 : batch);
            for (int j = 0; j < n; j++) {
                pos[j] = b0 + j;
                want[j] = b0 + j >= first && b0 + j < ctx - 1;
            }
            struct eng_batch b = {n, tok + start + b0, pos, NULL, want};
            if (eng_forward(c, &b) != 0 || (cb && eng_forward(cb, &b) != 0)) {
                cli_fail(CMD, "%s", eng_last_error());
                goto out;
            }
            for (int o = 0; o < eng_n_outputs(c); o++) {
                int p = b0 + eng_output_token_index(c, o);
                int32_t next = tok[start + p + 1];
                double v = nll(eng_logits(c, o), n_vocab, next);
                sum += v;
                sum2 += v * v;
                count++;
                if (cb) { /* the same positions: both contexts ran the same batch */
                    cmp_kld_acc_add(acc, eng_logits(cb, o), eng_logits(c, o), n_vocab);
                    base_sum += nll(eng_logits(cb, o), n_vocab, next);
                }
            }
        }
        tok[start] = saved;
        fprintf(chunk_out, "[%d] %.4f\n", ch + 1, exp(sum / (double)count));
        fflush(chunk_out);
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double secs = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
    double mean = sum / (double)count;
    double var = count > 1 ? (sum2 / (double)count - mean * mean) / (double)(count - 1) : 0;
    double ppl = exp(mean), ppl_err = ppl * sqrt(var > 0 ? var : 0);
    double tps = (double)n_chunk * (double)ctx / (secs > 0 ? secs : 1);
    struct cmp_kld_stats ks;
    cmp_kld_acc_stats(acc, &ks);
    if (acc && ks.n_positions != count) {
        cli_fail(CMD, "out of memory for the KL divergence statistics");
        goto out;
    }
    if (json) {
        json_t *o = json_object();
        json_object_set_new(o, "model", json_string(path));
        json_object_set_new(o, "text", json_string(file));
        json_object_set_new(o, "ctx", json_integer(ctx));
        json_object_set_new(o, "chunks", json_integer(n_chunk));
        json_object_set_new(o, "scored_tokens", json_integer(count));
        json_object_set_new(o, "seconds", json_real(secs));
        json_object_set_new(o, "ppl", json_real(ppl));
        json_object_set_new(o, "ppl_stderr", json_real(ppl_err));
        if (base) {
            json_t *k = json_object();
            json_object_set_new(k, "base", json_string(base_path));
            json_object_set_new(k, "base_ppl", json_real(exp(base_sum / (double)count)));
            json_object_set_new(k, "mean", json_real(ks.mean_kld));
            json_object_set_new(k, "p99", json_real(ks.p99_kld));
            json_object_set_new(k, "top1_agreement", json_real(ks.top1_agreement));
            json_object_set_new(k, "positions", json_integer(ks.n_positions));
            json_object_set_new(o, "kld", k);
        }
        char *str = json_dumps(o, JSON_INDENT(1) | JSON_REAL_PRECISION(10));
        json_decref(o);
        if (!str) {
            cli_fail(CMD, "out of memory");
            goto out;
        }
        printf("%s\n", str);
        free(str);
    } else {
        printf("scored %ld tokens in %.1f s (%.1f tokens/s), +/- %.4f\n", count, secs, tps,
               ppl_err);
        if (base) {
            printf("base model %s: perplexity %.4f\n", base_path, exp(base_sum / (double)count));
            printf("KL divergence to the base: mean %.6f, p99 %.6f (nats, %d positions)\n",
                   ks.mean_kld, ks.p99_kld, ks.n_positions);
            printf("top-1 agreement with the base: %.4f\n", ks.top1_agreement);
        }
        printf("PPL = %.4f\n", ppl);
    }
    rc = 0;
out:
    free(text);
    free(tok);
    free(pos);
    free(want);
    cmp_kld_acc_free(acc);
    eng_ctx_free(cb);
    eng_ctx_free(c);
    eng_tokenizer_free(t);
    eng_model_free(base);
    eng_model_free(m);
    return rc;
}
