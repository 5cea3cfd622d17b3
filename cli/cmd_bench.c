/*
 * cmd_bench.c — `edgellm bench`: prompt processing (pp) and generation (tg) speed with the meaning
 * of llama-bench's columns. pp N: one forward pass over N prompt tokens from an empty cache, N /
 * seconds. tg N: N forward passes of one token each from an empty cache (logits every step),
 * N / seconds. Each figure is the median of r runs after one warm-up run, with min and max.
 *
 * Per model it also reports the file size, bits per weight, the bytes one generated token reads
 * (every weight used by the pass once, one embedding row, and the KV cache up to the mean
 * position), and the peak RSS of the process while that model was loaded (VmHWM, reset between
 * models). It does not measure memory bandwidth (tools/bench/stream.c) nor write BENCHMARKS.md.
 */
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define BENCH_MAX_THREADS 16

static void usage(void) {
    printf("usage: edgellm bench -m MODEL [-m MODEL ...] [-t 1,2] [-p 64] [-n 32] [-r 5]\n"
           "                     [-s SEQS] [--json] [--mlock] [--kv-f16] [--file-layout]\n\n"
           "  -m MODEL   GGUF model (repeatable)\n"
           "  -t LIST    thread counts (default: the performance cores)\n"
           "  -p N       prompt tokens for the pp test (0 skips it; default 64)\n"
           "  -n N       generated tokens for the tg test (0 skips it; default 32)\n"
           "  -r N       repetitions after one warm-up; the median is reported (default 5)\n"
           "  -s SEQS    tg decodes SEQS sequences at once, one token of each per pass (batched\n"
           "             decoding, as edgellmd does for concurrent requests); tok/s counts all\n"
           "             of them (default 1)\n"
           "  --json     print one JSON array of measurements instead of a table\n"
           "  --mlock    lock the model's pages in RAM\n"
           "  --kv-f16   cache keys and values as fp16 (as edgellmd's kv_f16)\n"
           "  --file-layout  keep the weights as the file lays them out (edgellmd's\n"
           "             interleave = false); by default they are laid out for this CPU's\n"
           "             kernels at load, as edgellmd does\n");
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Peak resident set of the process since the last reset, in bytes (0 if unknown). */
static size_t rss_peak(void) {
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return 0;
    char line[256];
    size_t kb = 0;
    while (fgets(line, sizeof(line), f))
        if (sscanf(line, "VmHWM: %zu kB", &kb) == 1) break;
    fclose(f);
    return kb * 1024;
}

static void rss_peak_reset(void) {
    FILE *f = fopen("/proc/self/clear_refs", "w");
    if (!f) return;
    fputs("5", f); /* resets VmHWM to the current RSS */
    fclose(f);
}

#define BENCH_MAX_SEQS 64

struct measurement {
    const char *test; /* "pp" / "tg" */
    int n_tokens, threads, seqs;
    double med, min, max;
};

/* One pp or tg run from an empty cache; returns tokens per second, or -1 on failure. */
static double run_once(struct eng_ctx *c, int32_t *tok, int32_t *pos, bool pp, int n, int seqs) {
    double t0 = now_s();
    if (pp) {
        for (int i = 0; i < n; i++) pos[i] = i;
        struct eng_batch b = {n, tok, pos, NULL, NULL};
        if (eng_forward(c, &b) != 0) return -1;
        return n / (now_s() - t0);
    }
    int32_t st[BENCH_MAX_SEQS], sp[BENCH_MAX_SEQS], ss[BENCH_MAX_SEQS];
    int8_t so[BENCH_MAX_SEQS];
    for (int i = 0; i < n; i++) { /* one token of each sequence per pass, each in its own slot */
        for (int s = 0; s < seqs; s++)
            st[s] = tok[(i + 7 * s) % n], sp[s] = i, ss[s] = s, so[s] = 1;
        struct eng_batch b = {seqs, st, sp, ss, so};
        if (eng_forward(c, &b) != 0) return -1;
    }
    return (double)n * seqs / (now_s() - t0);
}

/* Bytes read from memory to generate one token at mean position `mean_pos`. */
static double bytes_per_token(const struct eng_model *m, double mean_pos, bool kv16) {
    const struct eng_gguf *g = eng_model_gguf(m);
    const struct eng_hparams *hp = eng_model_hparams(m);
    double bytes = 0;
    for (int64_t i = 0; i < eng_gguf_n_tensors(g); i++) {
        const struct eng_tensor *t = eng_gguf_tensor_at(g, i);
        if (!strcmp(t->name, "token_embd.weight")) {
            bytes += (double)eng_row_size(t->type, t->ne[0]); /* one row per token */
            if (hp->tied_output) bytes += (double)t->nbytes;  /* also the output head */
        } else {
            bytes += (double)t->nbytes;
        }
    }
    double kv = (double)hp->n_layer * 2 * hp->n_head_kv * hp->head_dim *
                (kv16 ? sizeof(uint16_t) : sizeof(float));
    return bytes + kv * (mean_pos + 1);
}

static const char *base_name(const char *p) {
    const char *s = strrchr(p, '/');
    return s ? s + 1 : p;
}

/* Dominant weight type of the model (by bytes), for the table. */
static const char *main_type(const struct eng_model *m) {
    const struct eng_gguf *g = eng_model_gguf(m);
    size_t by_type[ENG_TYPE_COUNT] = {0};
    for (int64_t i = 0; i < eng_gguf_n_tensors(g); i++) {
        const struct eng_tensor *t = eng_gguf_tensor_at(g, i);
        if ((unsigned)t->type < ENG_TYPE_COUNT) by_type[t->type] += t->nbytes;
    }
    int best = 0;
    for (int t = 1; t < ENG_TYPE_COUNT; t++)
        if (by_type[t] > by_type[best]) best = t;
    return eng_type_name(best);
}

static int bench_model(const char *path, const int *threads, int n_threads, int n_prompt, int n_gen,
                       int reps, int seqs, bool json, bool mlock, bool kv16, bool interleave,
                       bool *first_json) {
    rss_peak_reset();
    struct eng_model_params mp = {.use_mlock = mlock, .interleave = interleave};
    struct eng_model *m = eng_model_load(path, &mp);
    if (!m) return cli_fail("bench", "%s", eng_last_error());
    const struct eng_hparams *hp = eng_model_hparams(m);
    size_t size = eng_gguf_file_size(eng_model_gguf(m));
    int64_t n_params = eng_model_n_params(m);
    double bpw = (double)eng_model_weight_bytes(m) * 8.0 / (double)n_params;
    double bpt = bytes_per_token(m, n_gen > 0 ? (n_gen - 1) / 2.0 : 0, kv16);
    int n_max = n_prompt > n_gen ? n_prompt : n_gen;
    int32_t *tok = malloc((size_t)(n_max + 1) * sizeof(int32_t));
    int32_t *pos = malloc((size_t)(n_max + 1) * sizeof(int32_t));
    double *runs = malloc((size_t)reps * sizeof(double));
    struct measurement *ms = calloc((size_t)n_threads * 2, sizeof(*ms));
    int n_ms = 0, rc = 1;
    if (!tok || !pos || !runs || !ms) {
        cli_fail("bench", "out of memory");
        goto out;
    }
    uint32_t seed = 12345;
    for (int i = 0; i <= n_max; i++) {
        seed = seed * 1103515245u + 12345u;
        tok[i] = (int32_t)((seed >> 8) % (uint32_t)hp->n_vocab);
    }
    for (int ti = 0; ti < n_threads; ti++) {
        struct eng_ctx_params cp;
        eng_ctx_params_default(m, &cp);
        cp.n_ctx = n_max + 1;
        cp.n_batch = n_prompt > seqs ? n_prompt : seqs;
        cp.n_slots = seqs;
        cp.kv_f16 = kv16;
        cp.n_outputs = seqs;
        cp.n_threads = threads[ti] > 0 ? threads[ti] : eng_default_threads();
        struct eng_ctx *c = eng_ctx_new(m, &cp);
        if (!c) {
            cli_fail("bench", "%s", eng_last_error());
            goto out;
        }
        for (int test = 0; test < 2; test++) {
            bool pp = test == 0;
            int n = pp ? n_prompt : n_gen;
            if (n <= 0) continue;
            bool ok = run_once(c, tok, pos, pp, n, seqs) > 0; /* warm-up */
            for (int r = 0; ok && r < reps; r++)
                ok = (runs[r] = run_once(c, tok, pos, pp, n, seqs)) > 0;
            if (!ok) {
                cli_fail("bench", "%s", eng_last_error());
                eng_ctx_free(c);
                goto out;
            }
            qsort(runs, (size_t)reps, sizeof(double), cmp_double);
            double med = reps % 2 ? runs[reps / 2] : 0.5 * (runs[reps / 2 - 1] + runs[reps / 2]);
            ms[n_ms++] = (struct measurement){
                pp ? "pp" : "tg", n, cp.n_threads, pp ? 1 : seqs, med, runs[0], runs[reps - 1]};
        }
        eng_ctx_free(c);
    }
    size_t rss = rss_peak();
    for (int i = 0; i < n_ms; i++) {
        const struct measurement *x = &ms[i];
        if (json) {
            printf(
                "%s\n  {\"model\": \"%s\", \"type\": \"%s\", \"test\": \"%s\", \"n_tokens\": %d, "
                "\"threads\": %d, \"tok_per_s\": %.3f, \"tok_per_s_min\": %.3f, "
                "\"tok_per_s_max\": %.3f, \"size_bytes\": %zu, \"n_params\": %lld, "
                "\"bpw\": %.4f, \"rss_peak_bytes\": %zu, \"bytes_per_token\": %.0f, "
                "\"reps\": %d, \"seqs\": %d, \"kv_f16\": %s, \"simd\": \"%s\"}",
                *first_json ? "[" : ",", path, main_type(m), x->test, x->n_tokens, x->threads,
                x->med, x->min, x->max, size, (long long)n_params, bpw, rss,
                x->test[0] == 't' ? bpt : 0.0, reps, x->seqs, kv16 ? "true" : "false",
                eng_simd_level());
            *first_json = false;
        } else {
            char test[32];
            snprintf(test, sizeof(test), x->seqs > 1 ? "%s%dx%d" : "%s%d", x->test, x->n_tokens,
                     x->seqs);
            printf("| %-24s | %-6s | %8.1f MiB | %5.2f | %7.0f MiB | %2d | %-8s | %9.2f | "
                   "%9.2f | %9.2f |\n",
                   base_name(path), main_type(m), size / 1048576.0, bpw, rss / 1048576.0,
                   x->threads, test, x->med, x->min, x->max);
        }
    }
    fflush(stdout);
    rc = 0;
out:
    free(tok);
    free(pos);
    free(runs);
    free(ms);
    eng_model_free(m);
    return rc;
}

int cmd_bench(int argc, char **argv) {
    const char *models[64];
    int n_models = 0, threads[BENCH_MAX_THREADS] = {0}, n_threads = 1;
    long n_prompt = 64, n_gen = 32, reps = 5, seqs = 1;
    bool json = false, mlock = false, kv16 = false, interleave = true;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool has_val = i + 1 < argc;
        if (cli_is_help(a)) {
            usage();
            return 0;
        } else if (!strcmp(a, "-m") && has_val) {
            if (n_models == 64) return cli_usage_error("bench", "at most 64 models");
            models[n_models++] = argv[++i];
        } else if (!strcmp(a, "-t") && has_val) {
            int32_t *ids;
            int n = cli_parse_ids(argv[++i], &ids);
            if (n < 1 || n > BENCH_MAX_THREADS)
                return cli_usage_error("bench", "-t takes a list like 1,2");
            for (int k = 0; k < n; k++) {
                if (ids[k] < 1 || ids[k] > 1024) {
                    free(ids);
                    return cli_usage_error("bench", "thread counts are 1..1024");
                }
                threads[k] = ids[k];
            }
            n_threads = n;
            free(ids);
        } else if (!strcmp(a, "-p") && has_val) {
            if (cli_parse_int(argv[++i], 0, 65536, &n_prompt))
                return cli_usage_error("bench", "-p takes a token count (0..65536)");
        } else if (!strcmp(a, "-n") && has_val) {
            if (cli_parse_int(argv[++i], 0, 65536, &n_gen))
                return cli_usage_error("bench", "-n takes a token count (0..65536)");
        } else if (!strcmp(a, "-r") && has_val) {
            if (cli_parse_int(argv[++i], 1, 1000, &reps))
                return cli_usage_error("bench", "-r takes a repetition count (1..1000)");
        } else if (!strcmp(a, "-s") && has_val) {
            if (cli_parse_int(argv[++i], 1, BENCH_MAX_SEQS, &seqs))
                return cli_usage_error("bench", "-s takes a sequence count (1..%d)",
                                       BENCH_MAX_SEQS);
        } else if (!strcmp(a, "--json")) {
            json = true;
        } else if (!strcmp(a, "--mlock")) {
            mlock = true;
        } else if (!strcmp(a, "--kv-f16")) {
            kv16 = true;
        } else if (!strcmp(a, "--file-layout")) {
            interleave = false;
        } else {
            return cli_usage_error("bench", "unknown or incomplete option '%s'", a);
        }
    }
    if (!n_models) return cli_usage_error("bench", "-m MODEL is required");
    if (!n_prompt && !n_gen) return cli_usage_error("bench", "-p and -n are both 0");
    if (!json) {
        printf("simd: %s, default threads: %d\n\n", eng_simd_level(), eng_default_threads());
        printf("| %-24s | %-6s | %12s | %5s | %11s | %2s | %6s | %9s | %9s | %9s |\n", "model",
               "type", "size", "bpw", "peak RSS", "th", "test", "tok/s", "min", "max");
        printf("|%.26s|%.8s|%.14s|%.7s|%.13s|%.4s|%.8s|%.11s|%.11s|%.11s|\n",
               "--------------------------", "--------", "--------------", "-------",
               "-------------", "----", "--------", "-----------", "-----------", "-----------");
    }
    bool first = true;
    int rc = 0;
    for (int i = 0; i < n_models && rc == 0; i++)
        rc = bench_model(models[i], threads, n_threads, (int)n_prompt, (int)n_gen, (int)reps,
                         (int)seqs, json, mlock, kv16, interleave, &first);
    if (json) printf(first ? "[]\n" : "\n]\n");
    return rc;
}
