/*
 * cmd_run.c — `edgellm run`: generate text from a prompt, or chat, streaming tokens to stdout.
 *
 * Owns: the local generation loop (prefill in batches, sample, detokenize without splitting UTF-8,
 * stop at an end-of-generation token, a stop string or the token limit) and the interactive chat
 * loop (the model's chat template, the conversation re-rendered each turn, the cached prefix of
 * the previous turn reused). Statistics go to stderr, text to stdout.
 *
 * Does not: serve requests (edgellmd does) or keep anything after it exits.
 */
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define CMD       "run"
#define MAX_STOPS 16

static void usage(void) {
    printf(
        "usage: edgellm run [-m MODEL] (-p PROMPT | --chat) [-n N] [--temp T] [--top-k K]\n"
        "                   [--top-p P] [--min-p P] [--repeat-penalty R] [--seed S]\n"
        "                   [--stop TEXT]... [--system TEXT] [-c CTX] [-t THREADS]\n\n"
        "Generates text after PROMPT, or chats (one user message per line of standard input)\n"
        "using the model's chat template; tokens are printed as they are generated.\n"
        "  -m MODEL            GGUF model (default %s)\n"
        "  -p PROMPT           text to continue (special-token text such as <s> is parsed)\n"
        "  --chat              chat through the model's chat template\n"
        "  -n N                at most N new tokens per answer (default 256)\n"
        "  --temp T            temperature, 0 = greedy (default 0.8)\n"
        "  --top-k K           keep the K most likely tokens, 0 = off (default 40)\n"
        "  --top-p P           nucleus sampling, 1 = off (default 0.95)\n"
        "  --min-p P           drop tokens below P x the best one's probability (default 0.05)\n"
        "  --repeat-penalty R  penalize the last 64 tokens, 1 = off (default 1)\n"
        "  --seed S            random seed: the same seed gives the same text (default: random)\n"
        "  --stop TEXT         stop before TEXT (repeatable)\n"
        "  --system TEXT       chat: system message\n"
        "  -c CTX              context size (default min(the model's, 4096))\n"
        "  -t THREADS          threads (default: performance cores)\n",
        CLI_DEFAULT_MODEL);
}

struct gen {
    struct eng_model *m;
    struct eng_tokenizer *t;
    struct eng_ctx *c;
    struct eng_sampler *s;
    int n_ctx, n_batch, n_vocab;
    int32_t *cache; /* (n_ctx) tokens whose keys/values are in slot 0 */
    int n_cache;
    const char *stops[MAX_STOPS];
    int n_stops;
    long n_predict;
    /* statistics */
    long n_prompt, n_gen;
    double t_prompt, t_gen;
};

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Feeds toks[0..n) after the longest prefix already in the cache; leaves the last token's
 * logits as output 0. */
static int prefill(struct gen *g, const int32_t *toks, int n) {
    int keep = 0;
    while (keep < g->n_cache && keep < n - 1 && g->cache[keep] == toks[keep]) keep++;
    double t0 = now();
    for (int b0 = keep; b0 < n; b0 += g->n_batch) {
        int k = n - b0 < g->n_batch ? n - b0 : g->n_batch;
        int32_t pos[k];
        for (int j = 0; j < k; j++) pos[j] = b0 + j;
        struct eng_batch b = {k, toks + b0, pos, NULL, NULL};
        b.logits_max = eng_sampler_uses_chunk_max(g->s);
        if (eng_forward(g->c, &b) != 0) return cli_fail(CMD, "%s", eng_last_error());
    }
    memcpy(g->cache, toks, (size_t)n * sizeof(int32_t));
    g->n_cache = n;
    g->n_prompt += n - keep;
    g->t_prompt += now() - t0;
    return 0;
}

/* Generates after the cached tokens, printing text; appends the answer's text to *answer (if not
 * NULL; caller frees). continues: the text continues the prompt's (prompt mode), so its first
 * piece keeps the leading space that only the start of a text drops (" Paris" after "The capital
 * of France is"); a chat answer starts a text of its own. Returns 0, or 1 on failure. */
static int generate(struct gen *g, bool continues, char **answer) {
    struct eng_detok d;
    eng_detok_init(&d, g->t, 0);
    d.at_start = !continues;
    struct eng_stop *st = eng_stop_new(g->stops, g->n_stops);
    int cap = eng_detok_max(g->t);
    char *piece = malloc((size_t)cap);
    size_t alen = 0, acap = 256;
    char *ans = answer ? malloc(acap) : NULL;
    if (!st || !piece || (answer && !ans)) {
        eng_stop_free(st);
        free(piece);
        free(ans);
        return cli_fail(CMD, "out of memory");
    }
    int rc = 0;
    bool stopped = false;
    double t0 = now();
    for (long i = 0; i < g->n_predict && !stopped; i++) {
        struct eng_sample smp;
        if (eng_sampler_sample_chunked(g->s, eng_logits(g->c, 0), eng_logits_chunk_max(g->c, 0),
                                       &smp) != 0) {
            rc = cli_fail(CMD, "%s", eng_last_error());
            break;
        }
        g->n_gen++;
        if (eng_token_is_eog(g->t, smp.token)) break;
        int n = eng_detok_push(&d, smp.token, piece, cap);
        const char *emit;
        size_t ne;
        stopped = eng_stop_push(st, piece, n > 0 ? (size_t)n : 0, &emit, &ne);
        fwrite(emit, 1, ne, stdout);
        fflush(stdout);
        if (ans) {
            if (alen + ne + 1 > acap) {
                acap = (alen + ne + 1) * 2;
                char *na = realloc(ans, acap);
                if (!na) break;
                ans = na;
            }
            memcpy(ans + alen, emit, ne);
            alen += ne;
        }
        if (stopped) break;
        if (g->n_cache >= g->n_ctx) {
            fprintf(stderr, "\nedgellm run: context of %d tokens is full\n", g->n_ctx);
            break;
        }
        int32_t pos = g->n_cache;
        struct eng_batch b = {1, &smp.token, &pos, NULL, NULL};
        b.logits_max = eng_sampler_uses_chunk_max(g->s);
        if (eng_forward(g->c, &b) != 0) {
            rc = cli_fail(CMD, "%s", eng_last_error());
            break;
        }
        g->cache[g->n_cache++] = smp.token;
    }
    if (!stopped) {
        const char *emit;
        size_t ne;
        int n = eng_detok_flush(&d, piece, cap);
        if (n > 0) eng_stop_push(st, piece, (size_t)n, &emit, &ne), fwrite(emit, 1, ne, stdout);
        eng_stop_flush(st, &emit, &ne);
        fwrite(emit, 1, ne, stdout);
    }
    g->t_gen += now() - t0;
    fflush(stdout);
    if (ans) {
        ans[alen] = 0;
        *answer = ans;
    }
    eng_stop_free(st);
    free(piece);
    return rc;
}

static int tokenize_alloc(const struct eng_tokenizer *t, const char *s, bool chat, unsigned flags,
                          int32_t **out) {
    int n = chat ? eng_tokenize_chat(t, s, strlen(s), NULL, 0)
                 : eng_tokenize(t, s, strlen(s), NULL, 0, flags);
    if (n < 0) return n;
    *out = malloc((size_t)(n ? n : 1) * sizeof(int32_t));
    if (!*out) return ENG_ENOMEM;
    return chat ? eng_tokenize_chat(t, s, strlen(s), *out, n)
                : eng_tokenize(t, s, strlen(s), *out, n, flags);
}

static int run_prompt(struct gen *g, const char *prompt) {
    int32_t *toks = NULL;
    int n = tokenize_alloc(g->t, prompt, false,
                           ENG_TOKENIZE_ADD_SPECIAL | ENG_TOKENIZE_PARSE_SPECIAL, &toks);
    if (n < 0) return cli_fail(CMD, "%s", eng_last_error());
    if (n == 0) {
        free(toks);
        return cli_usage_error(CMD, "the prompt is empty and the model adds no BOS token");
    }
    if (n >= g->n_ctx) {
        free(toks);
        return cli_fail(CMD, "the prompt has %d tokens; the context holds %d (-c)", n, g->n_ctx);
    }
    for (int i = 0; i < n; i++) eng_sampler_accept(g->s, toks[i]);
    int rc = prefill(g, toks, n);
    free(toks);
    if (!rc) rc = generate(g, true, NULL);
    putchar('\n');
    return rc;
}

static int run_chat(struct gen *g, const char *system) {
    const struct eng_gguf *gg = eng_model_gguf(g->m);
    struct eng_chat_template ct;
    eng_chat_template_parse(&ct, eng_gguf_get_str(gg, "tokenizer.chat_template"));
    if (!ct.known)
        fprintf(stderr, "edgellm run: warning: the model's chat template is %s; using ChatML\n",
                eng_gguf_get_str(gg, "tokenizer.chat_template") ? "not one edgellm knows"
                                                                : "missing");
    const char *bos = eng_token_text(g->t, eng_token_bos(g->t));
    const char *eos = eng_token_text(g->t, eng_token_eos(g->t));
    struct eng_chat_msg *msgs = NULL;
    char **owned = NULL;
    int n = 0, cap = 0, rc = 0;
    bool tty = isatty(STDIN_FILENO);
    char *line = NULL;
    size_t lcap = 0;
    if (system && *system) {
        cap = 16;
        msgs = malloc((size_t)cap * sizeof(*msgs));
        owned = calloc((size_t)cap, sizeof(char *));
        if (!msgs || !owned) return cli_fail(CMD, "out of memory");
        msgs[n++] = (struct eng_chat_msg){"system", system};
    }
    for (;;) {
        if (tty) fprintf(stderr, "> ");
        ssize_t got = getline(&line, &lcap, stdin);
        if (got < 0) break;
        while (got > 0 && (line[got - 1] == '\n' || line[got - 1] == '\r')) line[--got] = 0;
        if (got == 0) continue;
        if (n + 2 > cap) {
            cap = cap ? cap * 2 : 16;
            struct eng_chat_msg *nm = realloc(msgs, (size_t)cap * sizeof(*msgs));
            char **no = realloc(owned, (size_t)cap * sizeof(char *));
            if (nm) msgs = nm;
            if (no) owned = no;
            if (!nm || !no) {
                rc = cli_fail(CMD, "out of memory");
                break;
            }
        }
        owned[n] = strdup(line);
        msgs[n] = (struct eng_chat_msg){"user", owned[n]};
        n++;
        char *prompt = eng_chat_template_apply(&ct, msgs, n, true, bos, eos);
        if (!prompt) {
            rc = cli_fail(CMD, "%s", eng_last_error());
            break;
        }
        int32_t *toks = NULL;
        int nt = tokenize_alloc(g->t, prompt, true, 0, &toks);
        free(prompt);
        if (nt < 0 || nt >= g->n_ctx) {
            free(toks);
            rc = cli_fail(CMD, nt < 0 ? "%s" : "the conversation no longer fits the context (-c)",
                          eng_last_error());
            break;
        }
        eng_sampler_reset(g->s);
        for (int i = 0; i < nt; i++) eng_sampler_accept(g->s, toks[i]);
        rc = prefill(g, toks, nt);
        free(toks);
        char *answer = NULL;
        if (!rc) rc = generate(g, false, &answer);
        putchar('\n');
        fflush(stdout);
        if (rc) {
            free(answer);
            break;
        }
        owned[n] = answer;
        msgs[n] = (struct eng_chat_msg){"assistant", answer ? answer : ""};
        n++;
    }
    for (int i = 0; owned && i < n; i++) free(owned[i]);
    free(owned);
    free(msgs);
    free(line);
    return rc;
}

int cmd_run(int argc, char **argv) {
    const char *path = NULL, *prompt = NULL, *system = NULL;
    bool chat = false, seeded = false;
    long n_predict = 256, top_k = -1, ctx = 0, threads = 0;
    double temp = -1, top_p = -1, min_p = -1, rep = -1;
    unsigned long long seed = 0;
    struct gen g = {0};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        bool v = i + 1 < argc;
        if (cli_is_help(a)) {
            usage();
            return 0;
        } else if (!strcmp(a, "-m") && v) {
            path = argv[++i];
        } else if (!strcmp(a, "-p") && v) {
            prompt = argv[++i];
        } else if (!strcmp(a, "--chat")) {
            chat = true;
        } else if (!strcmp(a, "--system") && v) {
            system = argv[++i];
        } else if (!strcmp(a, "--stop") && v) {
            if (g.n_stops == MAX_STOPS)
                return cli_usage_error(CMD, "at most %d --stop strings", MAX_STOPS);
            g.stops[g.n_stops++] = argv[++i];
        } else if (!strcmp(a, "-n") && v) {
            if (cli_parse_int(argv[++i], 0, 1 << 24, &n_predict))
                return cli_usage_error(CMD, "-n takes a token count");
        } else if (!strcmp(a, "--top-k") && v) {
            if (cli_parse_int(argv[++i], 0, 1 << 24, &top_k))
                return cli_usage_error(CMD, "--top-k takes a count >= 0");
        } else if (!strcmp(a, "-c") && v) {
            if (cli_parse_int(argv[++i], 8, 1 << 24, &ctx))
                return cli_usage_error(CMD, "-c takes a context size >= 8");
        } else if (!strcmp(a, "-t") && v) {
            if (cli_parse_int(argv[++i], 1, 1024, &threads))
                return cli_usage_error(CMD, "-t takes a thread count");
        } else if (!strcmp(a, "--temp") && v) {
            if (cli_parse_float(argv[++i], 0, 100, &temp))
                return cli_usage_error(CMD, "--temp takes a temperature in [0, 100]");
        } else if (!strcmp(a, "--top-p") && v) {
            if (cli_parse_float(argv[++i], 1e-9, 1, &top_p))
                return cli_usage_error(CMD, "--top-p takes a probability in (0, 1]");
        } else if (!strcmp(a, "--min-p") && v) {
            if (cli_parse_float(argv[++i], 0, 1, &min_p))
                return cli_usage_error(CMD, "--min-p takes a probability in [0, 1]");
        } else if (!strcmp(a, "--repeat-penalty") && v) {
            if (cli_parse_float(argv[++i], 1e-3, 1e3, &rep))
                return cli_usage_error(CMD, "--repeat-penalty takes a factor > 0");
        } else if (!strcmp(a, "--seed") && v) {
            char *end;
            const char *s = argv[++i];
            seed = strtoull(s, &end, 10);
            if (!*s || *end || *s == '-')
                return cli_usage_error(CMD, "--seed takes an integer >= 0");
            seeded = true;
        } else {
            return cli_usage_error(CMD, "unknown or incomplete option '%s'", a);
        }
    }
    if (!prompt == !chat) return cli_usage_error(CMD, "give either -p PROMPT or --chat");
    if (!(path = cli_model_path(CMD, path))) return 1;

    struct eng_sampler_params sp;
    eng_sampler_params_default(&sp);
    if (temp >= 0) sp.temperature = (float)temp;
    if (top_k >= 0) sp.top_k = (int)top_k;
    if (top_p > 0) sp.top_p = (float)top_p;
    if (min_p >= 0) sp.min_p = (float)min_p;
    if (rep > 0) sp.repeat_penalty = (float)rep;
    sp.seed = seeded ? seed : (unsigned long long)time(NULL) ^ ((unsigned long long)getpid() << 32);
    g.n_predict = n_predict;

    int rc = 1;
    if (!(g.m = eng_model_load(path, NULL)) || !(g.t = eng_tokenizer_load(eng_model_gguf(g.m)))) {
        cli_fail(CMD, "%s", eng_last_error());
        goto out;
    }
    const struct eng_hparams *hp = eng_model_hparams(g.m);
    g.n_vocab = hp->n_vocab;
    if (eng_tokenizer_n_vocab(g.t) > g.n_vocab) {
        cli_fail(CMD, "%s: the tokenizer has %d tokens but the model only %d", path,
                 eng_tokenizer_n_vocab(g.t), g.n_vocab);
        goto out;
    }
    struct eng_ctx_params cp;
    eng_ctx_params_default(g.m, &cp);
    cp.n_slots = 1;
    if (ctx) cp.n_ctx = (int)ctx;
    cp.n_outputs = 1;
    if (threads) cp.n_threads = (int)threads;
    g.n_ctx = cp.n_ctx;
    g.n_batch = cp.n_batch;
    if (!(g.c = eng_ctx_new(g.m, &cp)) || !(g.s = eng_sampler_new(&sp, g.n_vocab))) {
        cli_fail(CMD, "%s", eng_last_error());
        goto out;
    }
    g.cache = malloc((size_t)g.n_ctx * sizeof(int32_t));
    if (!g.cache) {
        cli_fail(CMD, "out of memory");
        goto out;
    }
    rc = chat ? run_chat(&g, system) : run_prompt(&g, prompt);
    fprintf(stderr,
            "edgellm run: prompt %ld tokens (%.1f tok/s), generated %ld tokens (%.1f tok/s)\n",
            g.n_prompt, g.t_prompt > 0 ? (double)g.n_prompt / g.t_prompt : 0.0, g.n_gen,
            g.t_gen > 0 ? (double)g.n_gen / g.t_gen : 0.0);
out:
    free(g.cache);
    eng_sampler_free(g.s);
    eng_ctx_free(g.c);
    eng_tokenizer_free(g.t);
    eng_model_free(g.m);
    return rc;
}
