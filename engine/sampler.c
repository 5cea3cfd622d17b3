/*
 * sampler.c — choosing the next token from logits, and stop strings across token boundaries.
 *
 * Owns: one sampler per sequence, with its own seeded random stream and token history. The steps,
 * in order:
 *   1. logit_bias is added;
 *   2. penalties over the last repeat_last_n tokens (all if 0): repetition (a logit > 0 is
 *      divided by it, one < 0 multiplied), then OpenAI's presence (−p once a token occurred) and
 *      frequency (−f × count);
 *   3. logprobs are taken here: log-softmax of these logits at temperature 1 over the whole
 *      vocabulary (what OpenAI-style logprobs report, whatever the truncation below);
 *   4. temperature 0 → greedy (argmax, lowest id on ties); else logits / temperature, then top-k,
 *      top-p (smallest set of most likely tokens whose probability reaches p), min-p (tokens at
 *      least min_p × the most likely one), and one draw from what is left.
 * Candidates are ordered by logit, then id, so a seed gives the same tokens on every run and
 * machine. Tokens more than 40 nats below the best are dropped before sorting (their combined
 * probability is below 1e-12 even for 151k vocabularies).
 *
 * Does not: decide when to stop for length or EOS (the caller's loop does), or allocate per token:
 * every buffer is allocated in eng_sampler_new. A sampler takes new parameters without new
 * buffers (eng_sampler_set_params): a daemon keeps one per slot. Its buffers of the vocabulary's
 * size (768 KiB for 32000 tokens) cost a page fault per 4 KiB when new: edgellmd's admission of
 * a request took 700-830 us while other streams ran (L110M, the engine thread's steps waiting
 * meanwhile), 1-3.5 us with the slot's sampler reused.
 */
#include "engine.h"
#include "internal.h"
#include "quants.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define PRUNE_NATS 40.0f

/* The logits are copied in chunks of ENG_LOGITS_CHUNK values, each chunk's maximum taken on the
 * way (one read of the logits, which the pass's threads have just written, half of them in the
 * other core's cache); biases and penalties then change a few values, and only the chunks they
 * touched are searched again. The argmax reads the chunk maxima and one chunk. Given the pass's
 * own chunk maxima (eng_logits_chunk_max), greedy sampling without logprobs copies only the
 * chunks that biases and penalties change. edgellmd's sampling of a step (L110M, 32000 logits,
 * one stream, greedy with logit_bias) took 12-15 us as a copy and then a search, 7-8 us as one
 * pass, and 1.6-1.9 us from the pass's maxima (four streams: 4.4-5.3 us in all). */

struct cand {
    int32_t id;
    float logit;
};

struct eng_sampler {
    struct eng_sampler_params p;
    struct eng_logit_bias *bias; /* (p.n_logit_bias) copied; room for bias_cap */
    int bias_cap;
    int n_vocab;
    int n_chunks;  /* eng_logit_chunks(n_vocab) */
    uint64_t s[4]; /* xoshiro256** state */
    /* history for penalties */
    uint32_t *count;  /* (n_vocab) occurrences in the window */
    int32_t *seen;    /* (n_vocab) distinct tokens in the window */
    int32_t *seen_at; /* (n_vocab) index in seen; valid only where count > 0 */
    int n_seen;
    int32_t *ring; /* (repeat_last_n) the window, when limited; room for ring_cap */
    int ring_cap, ring_head, ring_fill;
    /* scratch */
    float *logits;     /* (n_vocab) biased, penalized */
    float *cmax;       /* (n_chunks) the maximum of each ENG_LOGITS_CHUNK logits */
    bool *stale;       /* (n_chunks) logits changed after cmax was taken */
    struct cand *cand; /* (n_vocab) */
    eng_max_fn max;    /* the active level's eng_vec_ops().max */
};

/* ---- random numbers: splitmix64 seeding, xoshiro256** ---- */

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k) {
    return (x << k) | (x >> (64 - k));
}

static uint64_t next_u64(struct eng_sampler *s) {
    uint64_t *st = s->s;
    uint64_t r = rotl(st[1] * 5, 7) * 9, t = st[1] << 17;
    st[2] ^= st[0];
    st[3] ^= st[1];
    st[1] ^= st[2];
    st[0] ^= st[3];
    st[2] ^= t;
    st[3] = rotl(st[3], 45);
    return r;
}

/* Uniform in [0, 1) with 53 bits. */
static double next_uniform(struct eng_sampler *s) {
    return (double)(next_u64(s) >> 11) * (1.0 / 9007199254740992.0);
}

static void seed(struct eng_sampler *s, uint64_t sd) {
    for (int i = 0; i < 4; i++) s->s[i] = splitmix64(&sd);
}

/* ---- construction ---- */

void eng_sampler_params_default(struct eng_sampler_params *p) {
    memset(p, 0, sizeof(*p));
    p->temperature = 0.8f;
    p->top_k = 40;
    p->top_p = 0.95f;
    p->min_p = 0.05f;
    p->repeat_penalty = 1.0f;
    p->repeat_last_n = 64;
    p->seed = 0;
}

static bool finite_in(float x, float lo, float hi) {
    return isfinite(x) && x >= lo && x <= hi;
}

/* 0 when p suits a vocabulary of n_vocab tokens; else eng_fail's code, naming what does not. */
static int check_params(const struct eng_sampler_params *p, int n_vocab) {
    if (n_vocab <= 0) return eng_fail(ENG_EINVAL, "sampler: n_vocab %d", n_vocab);
    if (!finite_in(p->temperature, 0, 100))
        return eng_fail(ENG_EINVAL, "sampler: temperature %g is outside [0, 100]", p->temperature);
    if (p->top_k < 0 || !finite_in(p->top_p, 0, 1) || p->top_p <= 0 || !finite_in(p->min_p, 0, 1))
        return eng_fail(ENG_EINVAL,
                        "sampler: top_k %d, top_p %g, min_p %g out of range (top_k >= 0, "
                        "0 < top_p <= 1, 0 <= min_p <= 1)",
                        p->top_k, p->top_p, p->min_p);
    if (!finite_in(p->repeat_penalty, 1e-3f, 1e3f) || p->repeat_last_n < 0 ||
        !finite_in(p->presence_penalty, -2, 2) || !finite_in(p->frequency_penalty, -2, 2))
        return eng_fail(ENG_EINVAL, "sampler: penalties out of range (repeat_penalty > 0, "
                                    "presence/frequency in [-2, 2], repeat_last_n >= 0)");
    if (p->n_logprobs < 0 || p->n_logprobs > 20)
        return eng_fail(ENG_EINVAL, "sampler: n_logprobs %d is outside 0..20", p->n_logprobs);
    if (p->n_logit_bias < 0 || (p->n_logit_bias > 0 && !p->logit_bias))
        return eng_fail(ENG_EINVAL, "sampler: bad logit_bias list");
    for (int i = 0; i < p->n_logit_bias; i++) {
        const struct eng_logit_bias *b = &p->logit_bias[i];
        if (b->token < 0 || b->token >= n_vocab || !(isfinite(b->bias) || b->bias == -INFINITY))
            return eng_fail(ENG_EINVAL, "sampler: logit_bias for token %d (vocabulary %d) value %g",
                            b->token, n_vocab, b->bias);
    }
    return 0;
}

/* Takes checked parameters p: the bias list copied, the window's ring grown if it must be; then
 * the history is forgotten and the random stream seeded. s is unchanged on failure. */
static int take_params(struct eng_sampler *s, const struct eng_sampler_params *p) {
    if (p->n_logit_bias > s->bias_cap) {
        struct eng_logit_bias *b = realloc(s->bias, (size_t)p->n_logit_bias * sizeof(*b));
        if (!b) return eng_fail(ENG_ENOMEM, "sampler: out of memory");
        s->bias = b;
        s->bias_cap = p->n_logit_bias;
    }
    if (p->repeat_last_n > s->ring_cap) {
        int32_t *r = realloc(s->ring, (size_t)p->repeat_last_n * sizeof(*r));
        if (!r) return eng_fail(ENG_ENOMEM, "sampler: out of memory");
        s->ring = r;
        s->ring_cap = p->repeat_last_n;
    }
    if (p->n_logit_bias) memcpy(s->bias, p->logit_bias, (size_t)p->n_logit_bias * sizeof(*s->bias));
    s->p = *p;
    s->p.logit_bias = s->bias;
    eng_sampler_reset(s);
    return 0;
}

struct eng_sampler *eng_sampler_new(const struct eng_sampler_params *p, int n_vocab) {
    if (check_params(p, n_vocab)) return NULL;
    struct eng_sampler *s = calloc(1, sizeof(*s));
    if (!s) goto oom;
    s->n_vocab = n_vocab;
    s->count = calloc((size_t)n_vocab, sizeof(uint32_t)); /* zero: eng_sampler_reset keeps it so */
    s->seen = malloc((size_t)n_vocab * sizeof(int32_t));
    s->seen_at = malloc((size_t)n_vocab * sizeof(int32_t));
    s->logits = malloc((size_t)n_vocab * sizeof(float));
    s->cand = malloc((size_t)n_vocab * sizeof(struct cand));
    s->n_chunks = eng_logit_chunks(n_vocab);
    s->cmax = malloc((size_t)s->n_chunks * sizeof(float));
    s->stale = calloc((size_t)s->n_chunks, sizeof(bool));
    s->max = eng_vec_ops().max;
    if (!s->count || !s->seen || !s->seen_at || !s->logits || !s->cand || !s->cmax || !s->stale ||
        take_params(s, p))
        goto oom;
    return s;
oom:
    eng_sampler_free(s);
    eng_fail(ENG_ENOMEM, "sampler: out of memory (vocabulary %d)", n_vocab);
    return NULL;
}

int eng_sampler_set_params(struct eng_sampler *s, const struct eng_sampler_params *p) {
    int err = check_params(p, s->n_vocab);
    return err ? err : take_params(s, p);
}

void eng_sampler_free(struct eng_sampler *s) {
    if (!s) return;
    free(s->bias);
    free(s->count);
    free(s->seen);
    free(s->seen_at);
    free(s->ring);
    free(s->logits);
    free(s->cmax);
    free(s->stale);
    free(s->cand);
    free(s);
}

/* Only the tokens in the history have a count (seen_at is read only where one is). */
void eng_sampler_reset(struct eng_sampler *s) {
    for (int i = 0; i < s->n_seen; i++) s->count[s->seen[i]] = 0;
    s->n_seen = 0;
    s->ring_head = s->ring_fill = 0;
    seed(s, s->p.seed);
}

/* ---- history ---- */

static void count_add(struct eng_sampler *s, int32_t t) {
    if (s->count[t]++ == 0) {
        s->seen_at[t] = s->n_seen;
        s->seen[s->n_seen++] = t;
    }
}

static void count_remove(struct eng_sampler *s, int32_t t) {
    if (--s->count[t] == 0) {
        int32_t i = s->seen_at[t], last = s->seen[--s->n_seen];
        s->seen[i] = last;
        s->seen_at[last] = i;
    }
}

void eng_sampler_accept(struct eng_sampler *s, int32_t token) {
    if (token < 0 || token >= s->n_vocab) return;
    int w = s->p.repeat_last_n;
    if (w > 0) {
        if (s->ring_fill == w) {
            count_remove(s, s->ring[s->ring_head]);
        } else {
            s->ring_fill++;
        }
        s->ring[s->ring_head] = token;
        s->ring_head = (s->ring_head + 1) % w;
    }
    count_add(s, token);
}

/* ---- sampling ---- */

static int cmp_cand(const void *pa, const void *pb) {
    const struct cand *a = pa, *b = pb;
    if (a->logit != b->logit) return a->logit > b->logit ? -1 : 1;
    return a->id < b->id ? -1 : a->id > b->id;
}

/* The first index of the maximum from the chunk maxima s->cmax: the first chunk that has it,
 * then the first index in that chunk, searched in s->logits or, for a chunk the sampler did not
 * copy (take_logits), in the pass's logits. Returns -1 when every value is NaN or -inf. */
static int argmax(const struct eng_sampler *s, const float *logits, bool copied_all, float *max) {
    float best = -INFINITY;
    int at = -1;
    for (int c = 0; c < s->n_chunks; c++)
        if (s->cmax[c] > best) best = s->cmax[c], at = c;
    *max = best;
    if (at < 0) return -1;
    const float *x = copied_all || s->stale[at] ? s->logits : logits;
    for (int i = at * ENG_LOGITS_CHUNK; i < ENG_MIN((at + 1) * ENG_LOGITS_CHUNK, s->n_vocab); i++)
        if (x[i] == best) return i;
    return -1;
}

/* This step's logits into s->logits with the biases and penalties applied, and their chunk
 * maxima into s->cmax. s->stale marks the chunks those change (the caller clears it). Without
 * chunk_max every chunk is copied; with it (the pass's maxima of the unchanged logits) only the
 * marked ones are, and the others keep the pass's maxima. */
static void take_logits(struct eng_sampler *s, const float *logits, const float *chunk_max) {
    const struct eng_sampler_params *p = &s->p;
    const int n = s->n_vocab, n_chunks = s->n_chunks;
    const bool penalize = p->repeat_penalty != 1.0f || p->presence_penalty != 0.0f ||
                          p->frequency_penalty != 0.0f; /* (neutral ones leave every value) */
    float *l = s->logits;
    for (int i = 0; i < p->n_logit_bias; i++) s->stale[s->bias[i].token / ENG_LOGITS_CHUNK] = true;
    for (int i = 0; penalize && i < s->n_seen; i++) s->stale[s->seen[i] / ENG_LOGITS_CHUNK] = true;
    for (int c = 0; c < n_chunks; c++) {
        int i = c * ENG_LOGITS_CHUNK;
        s->cmax[c] = chunk_max && !s->stale[c]
                         ? chunk_max[c]
                         : s->max(l + i, logits + i, ENG_MIN(ENG_LOGITS_CHUNK, n - i));
    }
    for (int i = 0; i < p->n_logit_bias; i++) l[s->bias[i].token] += s->bias[i].bias;
    for (int i = 0; penalize && i < s->n_seen; i++) {
        int32_t t = s->seen[i];
        float c = (float)s->count[t];
        if (p->repeat_penalty != 1.0f)
            l[t] = l[t] > 0 ? l[t] / p->repeat_penalty : l[t] * p->repeat_penalty;
        l[t] -= p->presence_penalty + p->frequency_penalty * c;
    }
    for (int c = 0; c < n_chunks; c++)
        if (s->stale[c]) {
            int i = c * ENG_LOGITS_CHUNK;
            s->cmax[c] = s->max(NULL, l + i, ENG_MIN(ENG_LOGITS_CHUNK, n - i));
        }
}

/* Fills the n_top most likely tokens of s->logits into out (log-softmax, temperature 1). */
static void top_logprobs(const struct eng_sampler *s, float max, double log_z,
                         struct eng_sample *out) {
    int k = s->p.n_logprobs;
    out->n_top = 0;
    for (int i = 0; i < s->n_vocab && k > 0; i++) {
        float l = s->logits[i];
        if (out->n_top == k && l <= out->top[k - 1].logprob) continue;
        int j = out->n_top < k ? out->n_top++ : k - 1;
        while (j > 0 && out->top[j - 1].logprob < l) {
            out->top[j] = out->top[j - 1];
            j--;
        }
        out->top[j] = (struct eng_token_logprob){i, l};
    }
    for (int j = 0; j < out->n_top; j++)
        out->top[j].logprob = (float)((double)out->top[j].logprob - max - log_z);
}

int eng_sampler_sample(struct eng_sampler *s, const float *logits, struct eng_sample *out) {
    return eng_sampler_sample_chunked(s, logits, NULL, out);
}

static bool greedy(const struct eng_sampler_params *p) {
    return !(p->temperature > 0 && p->top_k != 1);
}

bool eng_sampler_uses_chunk_max(const struct eng_sampler *s) {
    return greedy(&s->p) && !s->p.logprob && s->p.n_logprobs == 0;
}

int eng_sampler_sample_chunked(struct eng_sampler *s, const float *logits, const float *chunk_max,
                               struct eng_sample *out) {
    const struct eng_sampler_params *p = &s->p;
    const int n = s->n_vocab;
    const float *l = s->logits;
    /* only greedy sampling without logprobs does without the whole vocabulary */
    if (!eng_sampler_uses_chunk_max(s)) chunk_max = NULL;
    take_logits(s, logits, chunk_max);
    /* max, argmax, log partition function at temperature 1 */
    float max;
    int best = argmax(s, logits, !chunk_max, &max);
    memset(s->stale, 0, (size_t)s->n_chunks);
    if (best < 0 || max == -INFINITY)
        return eng_fail(ENG_EINVAL, "sampler: every token is excluded (all logits -inf or NaN)");
    double log_z = NAN;
    if (p->logprob || p->n_logprobs > 0) {
        double z = 0;
        for (int i = 0; i < n; i++) z += exp((double)(l[i] - max));
        log_z = log(z);
    }

    int32_t chosen = best;
    if (!greedy(p)) {
        /* candidates within PRUNE_NATS of the best (at this temperature) */
        float inv_t = 1.0f / p->temperature, floor = max - PRUNE_NATS * p->temperature;
        int m = 0;
        for (int i = 0; i < n; i++)
            if (l[i] >= floor) s->cand[m++] = (struct cand){i, l[i] * inv_t};
        qsort(s->cand, (size_t)m, sizeof(struct cand), cmp_cand);
        if (p->top_k > 0 && p->top_k < m) m = p->top_k;
        /* probabilities of what is left */
        double total = 0, top = s->cand[0].logit;
        for (int i = 0; i < m; i++) total += exp((double)s->cand[i].logit - top);
        if (p->top_p < 1.0f) {
            double cum = 0;
            int keep = m;
            for (int i = 0; i < m; i++) {
                cum += exp((double)s->cand[i].logit - top) / total;
                if (cum >= p->top_p) {
                    keep = i + 1;
                    break;
                }
            }
            m = keep;
        }
        if (p->min_p > 0.0f) {
            double lim = top + log((double)p->min_p);
            int keep = 1;
            while (keep < m && (double)s->cand[keep].logit >= lim) keep++;
            m = keep;
        }
        total = 0;
        for (int i = 0; i < m; i++) total += exp((double)s->cand[i].logit - top);
        double u = next_uniform(s) * total, acc = 0;
        chosen = s->cand[m - 1].id;
        for (int i = 0; i < m; i++) {
            acc += exp((double)s->cand[i].logit - top);
            if (u < acc) {
                chosen = s->cand[i].id;
                break;
            }
        }
    }
    out->token = chosen;
    out->logprob = isnan(log_z) ? NAN : (float)((double)l[chosen] - max - log_z); /* asked for */
    top_logprobs(s, max, log_z, out);
    eng_sampler_accept(s, chosen);
    return 0;
}

/* ---- stop strings ---- */

struct eng_stop {
    char **stops;
    size_t *len;
    int n;
    size_t max_len;
    char *buf; /* text not yet released: [0, emitted) was handed out last call */
    size_t n_buf, cap, emitted;
    bool done;
};

struct eng_stop *eng_stop_new(const char *const *stops, int n) {
    struct eng_stop *st = calloc(1, sizeof(*st));
    if (!st) goto oom;
    st->stops = calloc((size_t)(n > 0 ? n : 1), sizeof(char *));
    st->len = calloc((size_t)(n > 0 ? n : 1), sizeof(size_t));
    if (!st->stops || !st->len) goto oom;
    for (int i = 0; i < n; i++) {
        if (!stops[i] || !stops[i][0]) continue; /* empty stop strings never match */
        st->stops[st->n] = strdup(stops[i]);
        if (!st->stops[st->n]) goto oom;
        st->len[st->n] = strlen(stops[i]);
        if (st->len[st->n] > st->max_len) st->max_len = st->len[st->n];
        st->n++;
    }
    return st;
oom:
    eng_stop_free(st);
    eng_fail(ENG_ENOMEM, "stop strings: out of memory");
    return NULL;
}

void eng_stop_free(struct eng_stop *st) {
    if (!st) return;
    for (int i = 0; i < st->n; i++) free(st->stops[i]);
    free(st->stops);
    free(st->len);
    free(st->buf);
    free(st);
}

/* Length of the longest suffix of buf[0..n) that is a proper prefix of some stop string. */
static size_t held_suffix(const struct eng_stop *st, const char *buf, size_t n) {
    size_t best = 0;
    for (int i = 0; i < st->n; i++) {
        size_t k = ENG_MIN(st->len[i] - 1, n);
        for (; k > best; k--)
            if (memcmp(buf + n - k, st->stops[i], k) == 0) {
                best = k;
                break;
            }
    }
    return best;
}

bool eng_stop_push(struct eng_stop *st, const char *text, size_t len, const char **emit,
                   size_t *n_emit) {
    *emit = "";
    *n_emit = 0;
    if (st->done) return true;
    /* release what the previous call handed out */
    if (st->emitted) memmove(st->buf, st->buf + st->emitted, st->n_buf - st->emitted);
    st->n_buf -= st->emitted;
    st->emitted = 0;
    if (st->n_buf + len + 1 > st->cap) {
        size_t cap = (st->n_buf + len + 1) * 2;
        char *nb = realloc(st->buf, cap);
        if (!nb) { /* cannot hold text back: pass it through unchecked */
            *emit = text;
            *n_emit = len;
            return false;
        }
        st->buf = nb;
        st->cap = cap;
    }
    memcpy(st->buf + st->n_buf, text, len);
    size_t old = st->n_buf;
    st->n_buf += len;
    /* earliest stop string that ends in the new bytes (earlier ones were found before) */
    size_t first = SIZE_MAX;
    for (int i = 0; i < st->n; i++) {
        size_t from = old >= st->len[i] ? old - st->len[i] + 1 : 0;
        for (size_t j = from; j + st->len[i] <= st->n_buf && j < first; j++)
            if (memcmp(st->buf + j, st->stops[i], st->len[i]) == 0) {
                first = j;
                break;
            }
    }
    if (first != SIZE_MAX) {
        st->done = true;
        *emit = st->buf;
        *n_emit = first;
        st->emitted = st->n_buf; /* the rest is dropped */
        return true;
    }
    size_t keep = held_suffix(st, st->buf, st->n_buf);
    *emit = st->buf;
    *n_emit = st->n_buf - keep;
    st->emitted = *n_emit;
    return false;
}

void eng_stop_flush(struct eng_stop *st, const char **emit, size_t *n_emit) {
    if (st->done) {
        *emit = "";
        *n_emit = 0;
        return;
    }
    *emit = st->buf ? st->buf + st->emitted : "";
    *n_emit = st->n_buf - st->emitted;
    st->emitted = st->n_buf;
}
