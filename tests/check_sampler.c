/*
 * check_sampler.c — sampling and stop strings: seeded runs reproduce; on fixed logits the
 * observed token frequencies match the distribution temperature / top-k / top-p / min-p define
 * (Pearson chi-square against a 99.9% critical value, fixed seeds: deterministic, not flaky) and
 * truncated tokens never appear; penalties, logit bias and logprobs give the exact values their
 * definitions say; stop strings cut exactly, also when split across pushes.
 */
#include "engine.h"

#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define NV 6
/* probabilities 0.4 0.25 0.15 0.1 0.06 0.04 as logits */
static const double P[NV] = {0.4, 0.25, 0.15, 0.1, 0.06, 0.04};
static float logits[NV];

static void setup(void) {
    for (int i = 0; i < NV; i++) logits[i] = (float)log(P[i]) + 3.0f;
}

static struct eng_sampler *make(float temp, int top_k, float top_p, float min_p, uint64_t sd) {
    struct eng_sampler_params p;
    eng_sampler_params_default(&p);
    p.temperature = temp;
    p.top_k = top_k;
    p.top_p = top_p;
    p.min_p = min_p;
    p.repeat_last_n = 0;
    p.seed = sd;
    struct eng_sampler *s = eng_sampler_new(&p, NV);
    ck_assert_ptr_nonnull(s);
    return s;
}

/* Draws n tokens (history reset each time, so no penalty builds up) into counts. */
static void draw(struct eng_sampler *s, int n, int *counts) {
    memset(counts, 0, NV * sizeof(int));
    for (int i = 0; i < n; i++) {
        struct eng_sample out;
        ck_assert_int_eq(eng_sampler_sample(s, logits, &out), 0);
        ck_assert(out.token >= 0 && out.token < NV);
        counts[out.token]++;
    }
}

/* Chi-square of counts against expected probabilities q (q[i] == 0: count must be 0). */
static void expect_distribution(const int *counts, const double *q, int n) {
    double chi = 0;
    int df = -1;
    for (int i = 0; i < NV; i++) {
        if (q[i] == 0) {
            ck_assert_msg(counts[i] == 0, "token %d was truncated but drawn %d times", i,
                          counts[i]);
            continue;
        }
        double e = q[i] * n;
        chi += (counts[i] - e) * (counts[i] - e) / e;
        df++;
    }
    /* 99.9% critical values of chi-square for df = 1..5 */
    static const double crit[] = {0, 10.83, 13.82, 16.27, 18.47, 20.52};
    ck_assert_msg(df >= 1 && chi < crit[df], "chi-square %.2f with %d degrees of freedom", chi, df);
}

static void normalize(double *q) {
    double z = 0;
    for (int i = 0; i < NV; i++) z += q[i];
    for (int i = 0; i < NV; i++) q[i] /= z;
}

START_TEST(temperature_one_matches_softmax) {
    int c[NV];
    struct eng_sampler *s = make(1.0f, 0, 1.0f, 0.0f, 42);
    draw(s, 20000, c);
    expect_distribution(c, P, 20000);
    eng_sampler_free(s);
}
END_TEST

START_TEST(temperature_scales) {
    int c[NV];
    for (int k = 0; k < 2; k++) {
        double T = k ? 2.0 : 0.5, q[NV];
        for (int i = 0; i < NV; i++) q[i] = pow(P[i], 1.0 / T);
        normalize(q);
        struct eng_sampler *s = make((float)T, 0, 1.0f, 0.0f, 7 + k);
        draw(s, 20000, c);
        expect_distribution(c, q, 20000);
        eng_sampler_free(s);
    }
}
END_TEST

START_TEST(top_k_truncates) {
    int c[NV];
    double q[NV] = {0.4, 0.25, 0.15, 0, 0, 0};
    normalize(q);
    struct eng_sampler *s = make(1.0f, 3, 1.0f, 0.0f, 3);
    draw(s, 20000, c);
    expect_distribution(c, q, 20000);
    eng_sampler_free(s);
}
END_TEST

START_TEST(top_p_truncates) {
    int c[NV];
    /* cumulative 0.4, 0.65, 0.80: top_p 0.7 keeps the first three */
    double q[NV] = {0.4, 0.25, 0.15, 0, 0, 0};
    normalize(q);
    struct eng_sampler *s = make(1.0f, 0, 0.7f, 0.0f, 11);
    draw(s, 20000, c);
    expect_distribution(c, q, 20000);
    eng_sampler_free(s);
}
END_TEST

START_TEST(min_p_truncates) {
    int c[NV];
    /* min_p 0.3: tokens with p >= 0.12 stay */
    double q[NV] = {0.4, 0.25, 0.15, 0, 0, 0};
    normalize(q);
    struct eng_sampler *s = make(1.0f, 0, 1.0f, 0.3f, 5);
    draw(s, 20000, c);
    expect_distribution(c, q, 20000);
    eng_sampler_free(s);
}
END_TEST

START_TEST(combined_after_temperature) {
    int c[NV];
    /* T = 2 first, then top-k 4, then top-p 0.8 on what top-k left (renormalized) */
    double q[NV];
    for (int i = 0; i < NV; i++) q[i] = i < 4 ? sqrt(P[i]) : 0;
    normalize(q);
    double cum = 0;
    int keep = 0;
    while (keep < 4) {
        cum += q[keep++];
        if (cum >= 0.8) break;
    }
    for (int i = keep; i < NV; i++) q[i] = 0;
    normalize(q);
    struct eng_sampler *s = make(2.0f, 4, 0.8f, 0.0f, 99);
    draw(s, 20000, c);
    expect_distribution(c, q, 20000);
    eng_sampler_free(s);
}
END_TEST

START_TEST(greedy_and_seeds) {
    struct eng_sample a, b;
    struct eng_sampler *g = make(0.0f, 0, 1.0f, 0.0f, 1);
    for (int i = 0; i < 10; i++) {
        ck_assert_int_eq(eng_sampler_sample(g, logits, &a), 0);
        ck_assert_int_eq(a.token, 0);
    }
    eng_sampler_free(g);
    /* same seed, same tokens; another seed, another sequence */
    struct eng_sampler *s1 = make(1.0f, 0, 1.0f, 0.0f, 1234), *s2 = make(1.0f, 0, 1.0f, 0.0f, 1234);
    struct eng_sampler *s3 = make(1.0f, 0, 1.0f, 0.0f, 1235);
    int differ = 0;
    for (int i = 0; i < 200; i++) {
        struct eng_sample c;
        eng_sampler_sample(s1, logits, &a);
        eng_sampler_sample(s2, logits, &b);
        eng_sampler_sample(s3, logits, &c);
        ck_assert_int_eq(a.token, b.token);
        differ += a.token != c.token;
    }
    ck_assert_int_gt(differ, 20);
    /* reset restarts the stream */
    eng_sampler_reset(s1);
    eng_sampler_reset(s2);
    eng_sampler_sample(s2, logits, &b);
    eng_sampler_sample(s1, logits, &a);
    ck_assert_int_eq(a.token, b.token);
    eng_sampler_free(s1);
    eng_sampler_free(s2);
    eng_sampler_free(s3);
}
END_TEST

/* Greedy over a large vocabulary picks the first index of the largest value that is not NaN,
 * wherever it lies (chunk edges of the argmax included), with ties, NaNs and -inf around it;
 * checked against a plain loop on random logits and on edge cases. A vocabulary of only NaN
 * and -inf is an error. */
static int plain_argmax(const float *x, int n) {
    int best = -1;
    for (int i = 0; i < n; i++)
        if (!isnan(x[i]) && (best < 0 || x[i] > x[best])) best = i;
    return best;
}

START_TEST(greedy_large_vocab) {
    enum { N = 1000 };
    static float x[N];
    struct eng_sampler_params p;
    eng_sampler_params_default(&p);
    p.temperature = 0;
    p.repeat_last_n = 0;
    struct eng_sampler *g = eng_sampler_new(&p, N);
    ck_assert_ptr_nonnull(g);
    uint64_t r = 88172645463325252ull;
    const int spots[] = {0, 1, 15, 16, 255, 256, 257, 511, 512, 767, 768, 998, 999};
    for (int round = 0; round < 400; round++) {
        for (int i = 0; i < N; i++) {
            r ^= r << 13, r ^= r >> 7, r ^= r << 17;
            x[i] = (float)(r % 64) - 32.0f; /* many ties */
            if (r % 97 == 0) x[i] = NAN;
            if (r % 89 == 0) x[i] = -INFINITY;
        }
        int at = spots[round % 13];
        if (round % 3 == 0) x[at] = 40.0f;    /* a single maximum at a chunk edge */
        if (round % 5 == 0) x[N - 1] = 40.0f; /* a tie with a later one */
        if (round % 7 == 0) x[at] = NAN;      /* NaN where the maximum was */
        struct eng_sample out;
        ck_assert_int_eq(eng_sampler_sample(g, x, &out), 0);
        ck_assert_int_eq(out.token, plain_argmax(x, N));
    }
    /* the only non-NaN value, at the end of a chunk and at the very end */
    for (int k = 0; k < 2; k++) {
        for (int i = 0; i < N; i++) x[i] = NAN;
        int at = k ? N - 1 : 255;
        x[at] = -1e30f;
        struct eng_sample out;
        ck_assert_int_eq(eng_sampler_sample(g, x, &out), 0);
        ck_assert_int_eq(out.token, at);
    }
    /* nothing but NaN and -inf */
    for (int i = 0; i < N; i++) x[i] = i % 2 ? NAN : -INFINITY;
    struct eng_sample out;
    ck_assert_int_ne(eng_sampler_sample(g, x, &out), 0);
    for (int i = 0; i < N; i++) x[i] = NAN;
    ck_assert_int_ne(eng_sampler_sample(g, x, &out), 0);
    eng_sampler_free(g);
}
END_TEST

static uint64_t next_xorshift(uint64_t r) {
    r ^= r << 13, r ^= r >> 7, r ^= r << 17;
    return r;
}

/* Greedy over a large vocabulary with logit biases and penalties: the sampler searches again
 * only the chunks whose values these changed, so the biases and penalised tokens are put where
 * that matters (on the maximum, which they lower or exclude; on a tie before it; at chunk edges;
 * NaN and -inf among them), and the token must be the plain argmax of the values the
 * definitions give, computed here in the same float operations. */
START_TEST(greedy_large_vocab_bias_penalties) {
    enum { N = 1000, NB = 6 };
    static float x[N], want[N];
    uint64_t r = 2463534242ull;
    for (int round = 0; round < 300; round++) {
        for (int i = 0; i < N; i++) {
            r = next_xorshift(r);
            x[i] = (float)(r % 64) - 32.0f;
            if (r % 97 == 0) x[i] = NAN;
        }
        int top = (int)((r = next_xorshift(r)) % N);
        x[top] = 50.0f;
        x[(top + 300) % N] = 49.0f; /* the runner-up, in another chunk */
        struct eng_logit_bias bias[NB];
        for (int k = 0; k < NB; k++) {
            int t = k == 0   ? top
                    : k == 1 ? (int)((r = next_xorshift(r)) % 4) * 256 + 255
                             : (int)((r = next_xorshift(r)) % N);
            if (t >= N) t = N - 1;
            float b = (float)((r = next_xorshift(r)) % 41) - 20.0f;
            if (k == 0) b = round % 3 == 0 ? -INFINITY : round % 3 == 1 ? -1.0f : -0.5f;
            if (k == 2 && round % 4 == 0) b = 18.0f; /* may tie with or beat the maximum */
            bias[k] = (struct eng_logit_bias){t, b};
        }
        struct eng_sampler_params p;
        eng_sampler_params_default(&p);
        p.temperature = 0;
        p.repeat_last_n = 0;
        p.logit_bias = bias;
        p.n_logit_bias = NB;
        bool pen = round % 2 == 1;
        p.repeat_penalty = pen ? 1.5f : 1.0f;
        p.presence_penalty = pen ? 0.75f : 0.0f;
        p.frequency_penalty = pen ? 0.5f : 0.0f;
        struct eng_sampler *g = eng_sampler_new(&p, N);
        ck_assert_ptr_nonnull(g);
        int seen[4] = {(top + 300) % N, (int)((r = next_xorshift(r)) % N), 511, 512};
        for (int k = 0; k < 4; k++) eng_sampler_accept(g, seen[k]);
        memcpy(want, x, sizeof(x));
        for (int k = 0; k < NB; k++) want[bias[k].token] += bias[k].bias;
        if (pen) {
            int counted[N] = {0};
            for (int k = 0; k < 4; k++) counted[seen[k]]++;
            for (int t = 0; t < N; t++) {
                if (!counted[t]) continue;
                float c = (float)counted[t];
                want[t] = want[t] > 0 ? want[t] / p.repeat_penalty : want[t] * p.repeat_penalty;
                want[t] -= p.presence_penalty + p.frequency_penalty * c;
            }
        }
        struct eng_sample out;
        ck_assert_int_eq(eng_sampler_sample(g, x, &out), 0);
        ck_assert_msg(out.token == plain_argmax(want, N), "round %d: token %d, argmax %d", round,
                      out.token, plain_argmax(want, N));
        /* the same from the chunk maxima of the unchanged logits, as the pass gives them */
        float cmax[(N + ENG_LOGITS_CHUNK - 1) / ENG_LOGITS_CHUNK];
        for (int c = 0; c * ENG_LOGITS_CHUNK < N; c++) {
            cmax[c] = -INFINITY;
            for (int i = c * ENG_LOGITS_CHUNK; i < N && i < (c + 1) * ENG_LOGITS_CHUNK; i++)
                if (x[i] > cmax[c]) cmax[c] = x[i];
        }
        eng_sampler_reset(g);
        for (int k = 0; k < 4; k++) eng_sampler_accept(g, seen[k]);
        ck_assert_int_eq(eng_sampler_sample_chunked(g, x, cmax, &out), 0);
        ck_assert_msg(out.token == plain_argmax(want, N), "round %d chunked: token %d, argmax %d",
                      round, out.token, plain_argmax(want, N));
        ck_assert(isnan(out.logprob));
        eng_sampler_free(g);
    }
}
END_TEST

/* Greedy sampling from chunk maxima reads only the maxima, the chunks that biases and penalties
 * change and the winner's chunk: given maxima that understate one chunk (7 where it holds 100),
 * it picks the first 7 of that chunk, which only a sampler that trusted them would pick; a
 * biased chunk is searched again in the changed values. */
START_TEST(greedy_reads_only_maxima) {
    enum { N = 768 };
    static float x[N];
    for (int i = 0; i < N; i++) x[i] = (float)(i % 3);
    x[10] = 3.0f;
    x[300] = 7.0f, x[400] = 100.0f; /* chunk 1 */
    x[600] = 6.0f;                  /* chunk 2 */
    float cmax[3] = {3.0f, 7.0f, 6.0f};
    struct eng_sampler_params p;
    eng_sampler_params_default(&p);
    p.temperature = 0;
    p.repeat_last_n = 0;
    struct eng_sampler *g = eng_sampler_new(&p, N);
    ck_assert(eng_sampler_uses_chunk_max(g));
    struct eng_sample out;
    ck_assert_int_eq(eng_sampler_sample_chunked(g, x, cmax, &out), 0);
    ck_assert_int_eq(out.token, 300);
    ck_assert_int_eq(eng_sampler_sample(g, x, &out), 0); /* without them: every logit */
    ck_assert_int_eq(out.token, 400);
    eng_sampler_free(g);
    /* a bias in chunk 2 makes it stale: its changed values are searched, 6 + 2 = 8 wins */
    struct eng_logit_bias b = {600, 2.0f};
    p.logit_bias = &b;
    p.n_logit_bias = 1;
    g = eng_sampler_new(&p, N);
    ck_assert_int_eq(eng_sampler_sample_chunked(g, x, cmax, &out), 0);
    ck_assert_int_eq(out.token, 600);
    eng_sampler_free(g);
}
END_TEST

/* Chunk maxima are only read by greedy sampling without logprobs; other settings give the same
 * tokens and log-probabilities with them as without (here: maxima that are wrong on purpose,
 * which only a sampler that used them would notice). */
START_TEST(chunk_max_ignored_when_not_greedy) {
    enum { N = 600 };
    static float x[N];
    float cmax[(N + ENG_LOGITS_CHUNK - 1) / ENG_LOGITS_CHUNK] = {-1e30f, -1e30f, -1e30f};
    uint64_t r = 88172645463325252ull;
    for (int i = 0; i < N; i++) {
        r = next_xorshift(r);
        x[i] = (float)(r % 1000) / 100.0f;
    }
    for (int mode = 0; mode < 3; mode++) {
        struct eng_sampler_params p;
        eng_sampler_params_default(&p);
        p.seed = 99;
        if (mode == 1) p.temperature = 0, p.logprob = true;
        if (mode == 2) p.temperature = 0, p.n_logprobs = 3;
        struct eng_sampler *a = eng_sampler_new(&p, N), *b = eng_sampler_new(&p, N);
        for (int k = 0; k < 50; k++) {
            struct eng_sample oa, ob;
            ck_assert_int_eq(eng_sampler_sample(a, x, &oa), 0);
            ck_assert_int_eq(eng_sampler_sample_chunked(b, x, cmax, &ob), 0);
            ck_assert_int_eq(oa.token, ob.token);
            ck_assert(memcmp(&oa.logprob, &ob.logprob, sizeof(float)) == 0);
            ck_assert_int_eq(oa.n_top, ob.n_top);
        }
        eng_sampler_free(a);
        eng_sampler_free(b);
    }
}
END_TEST

START_TEST(logprob_only_when_asked) {
    /* The chosen token's log-probability costs an exp per vocabulary entry: it is computed when
     * asked for (alone or with top log-probabilities) and NAN otherwise; the token is the same. */
    struct eng_sampler_params p;
    eng_sampler_params_default(&p);
    p.temperature = 0;
    double mx = -1e9, z = 0;
    int arg = 0;
    for (int i = 0; i < NV; i++)
        if (logits[i] > mx) mx = logits[i], arg = i;
    for (int i = 0; i < NV; i++) z += exp(logits[i] - mx);
    for (int mode = 0; mode < 3; mode++) {
        p.logprob = mode == 1;
        p.n_logprobs = mode == 2 ? 2 : 0;
        struct eng_sampler *s = eng_sampler_new(&p, NV);
        struct eng_sample out;
        ck_assert_int_eq(eng_sampler_sample(s, logits, &out), 0);
        ck_assert_int_eq(out.token, arg);
        if (mode == 0)
            ck_assert(isnan(out.logprob));
        else
            ck_assert_double_eq_tol(out.logprob, logits[arg] - mx - log(z), 1e-5);
        ck_assert_int_eq(out.n_top, mode == 2 ? 2 : 0);
        eng_sampler_free(s);
    }
}
END_TEST

START_TEST(penalties_and_bias) {
    struct eng_sampler_params p;
    eng_sampler_params_default(&p);
    p.temperature = 0;
    p.n_logprobs = NV;
    p.logprob = true;
    p.repeat_last_n = 2;
    p.repeat_penalty = 2.0f;
    p.presence_penalty = 0.5f;
    p.frequency_penalty = 0.25f;
    struct eng_sampler *s = eng_sampler_new(&p, NV);
    ck_assert_ptr_nonnull(s);
    eng_sampler_accept(s, 0);
    eng_sampler_accept(s, 0);
    struct eng_sample out;
    ck_assert_int_eq(eng_sampler_sample(s, logits, &out), 0);
    /* token 0: (l / 2) - 0.5 - 0.25 * 2 */
    double l[NV], z = 0;
    for (int i = 0; i < NV; i++) l[i] = logits[i];
    l[0] = l[0] / 2 - 0.5 - 0.5;
    double mx = -1e9;
    int arg = 0;
    for (int i = 0; i < NV; i++)
        if (l[i] > mx) mx = l[i], arg = i;
    for (int i = 0; i < NV; i++) z += exp(l[i] - mx);
    ck_assert_int_eq(out.token, arg);
    ck_assert_double_eq_tol(out.logprob, l[arg] - mx - log(z), 1e-5);
    ck_assert_int_eq(out.n_top, NV);
    for (int j = 0; j < NV; j++) {
        int t = out.top[j].token;
        ck_assert_double_eq_tol(out.top[j].logprob, l[t] - mx - log(z), 1e-5);
        if (j) ck_assert(out.top[j].logprob <= out.top[j - 1].logprob);
    }
    /* the window is 2: after two more tokens, token 0 is no longer penalized */
    eng_sampler_accept(s, 3);
    eng_sampler_accept(s, 4);
    ck_assert_int_eq(eng_sampler_sample(s, logits, &out), 0);
    ck_assert_int_eq(out.token, 0);
    eng_sampler_free(s);

    /* logit bias: -inf excludes, a large bias forces */
    struct eng_logit_bias bias[2] = {{0, -INFINITY}, {5, 100.0f}};
    eng_sampler_params_default(&p);
    p.temperature = 1.0f;
    p.top_k = 0;
    p.top_p = 1.0f;
    p.min_p = 0;
    p.logit_bias = bias;
    p.n_logit_bias = 1;
    s = eng_sampler_new(&p, NV);
    for (int i = 0; i < 2000; i++) {
        eng_sampler_sample(s, logits, &out);
        ck_assert_int_ne(out.token, 0);
    }
    eng_sampler_free(s);
    p.logit_bias = bias + 1;
    s = eng_sampler_new(&p, NV);
    for (int i = 0; i < 100; i++) {
        eng_sampler_sample(s, logits, &out);
        ck_assert_int_eq(out.token, 5);
    }
    eng_sampler_free(s);
}
END_TEST

/* eng_sampler_set_params: a sampler used with other parameters (penalties over a window, biases,
 * a history) samples, after taking new ones, exactly as a new sampler with them: the same tokens,
 * logprobs and top lists, over a window and a bias list larger than it had. Invalid parameters
 * are refused and leave it as it was. */
#define NVB 3000
static void step_logits(float *l, int step) {
    uint32_t x = 2463534242u + (uint32_t)step * 7919u;
    for (int i = 0; i < NVB; i++) {
        x ^= x << 13, x ^= x >> 17, x ^= x << 5;
        l[i] = (float)(x % 10000) / 1000.0f;
    }
}
static int32_t sampled[256]; /* a's tokens from same_samples, in order */
static int n_sampled;
static void same_samples(struct eng_sampler *a, struct eng_sampler *b, int n, int first_step) {
    static float l[NVB];
    for (int i = 0; i < n; i++) {
        step_logits(l, first_step + i);
        struct eng_sample x, y;
        ck_assert_int_eq(eng_sampler_sample(a, l, &x), 0);
        ck_assert_int_eq(eng_sampler_sample(b, l, &y), 0);
        ck_assert_int_eq(x.token, y.token);
        if (n_sampled < 256) sampled[n_sampled++] = x.token;
        ck_assert(x.logprob == y.logprob || (isnan(x.logprob) && isnan(y.logprob)));
        ck_assert_int_eq(x.n_top, y.n_top);
        for (int k = 0; k < x.n_top; k++) {
            ck_assert_int_eq(x.top[k].token, y.top[k].token);
            ck_assert(x.top[k].logprob == y.top[k].logprob);
        }
    }
}
START_TEST(set_params_as_new) {
    struct eng_logit_bias b1[1] = {{7, 2.0f}}, b2[3] = {{11, 5.0f}, {12, -INFINITY}, {2999, 1.5f}};
    struct eng_sampler_params p1, p2;
    eng_sampler_params_default(&p1);
    p1.temperature = 0.7f;
    p1.repeat_last_n = 8;
    p1.repeat_penalty = 1.3f;
    p1.frequency_penalty = 0.4f;
    p1.logit_bias = b1;
    p1.n_logit_bias = 1;
    p1.seed = 1;
    eng_sampler_params_default(&p2);
    p2.temperature = 0.9f;
    p2.top_k = 0;
    p2.top_p = 0.9f;
    p2.repeat_last_n = 32;
    p2.presence_penalty = 0.6f;
    p2.frequency_penalty = -0.3f;
    p2.n_logprobs = 5;
    p2.logprob = true;
    p2.logit_bias = b2;
    p2.n_logit_bias = 3;
    p2.seed = 2;
    n_sampled = 0;
    struct eng_sampler *a = eng_sampler_new(&p1, NVB), *ref = eng_sampler_new(&p1, NVB);
    ck_assert_ptr_nonnull(a);
    ck_assert_ptr_nonnull(ref);
    for (int t = 0; t < 20; t++) eng_sampler_accept(a, (t * 37) % NVB); /* a history */
    for (int t = 0; t < 20; t++) eng_sampler_accept(ref, (t * 37) % NVB);
    same_samples(a, ref, 60, 0);
    eng_sampler_free(ref);

    /* refused: a bias past the vocabulary; a keeps p1 and its history */
    struct eng_sampler_params bad = p2;
    struct eng_logit_bias oob = {NVB, 1.0f};
    bad.logit_bias = &oob;
    bad.n_logit_bias = 1;
    struct eng_sampler *twin = eng_sampler_new(&p1, NVB);
    for (int t = 0; t < 20; t++) eng_sampler_accept(twin, (t * 37) % NVB);
    {
        static float l[NVB];
        for (int i = 0; i < 60; i++) { /* twin catches up with a's history */
            step_logits(l, i);
            struct eng_sample x;
            ck_assert_int_eq(eng_sampler_sample(twin, l, &x), 0);
        }
    }
    ck_assert_int_ne(eng_sampler_set_params(a, &bad), 0);
    ck_assert(strstr(eng_last_error(), "logit_bias") != NULL);
    same_samples(a, twin, 30, 60);
    eng_sampler_free(twin);

    /* new parameters: as a new sampler with them. The prompt both accept is what a sampled
     * before, so that any count left from that history would change a penalty. */
    ck_assert_int_eq(eng_sampler_set_params(a, &p2), 0);
    struct eng_sampler *fresh = eng_sampler_new(&p2, NVB);
    ck_assert_ptr_nonnull(fresh);
    ck_assert_int_eq(n_sampled, 90);
    for (int t = 0; t < n_sampled; t++) {
        eng_sampler_accept(a, sampled[t]);
        eng_sampler_accept(fresh, sampled[t]);
    }
    same_samples(a, fresh, 100, 1000);
    /* and back to p1's smaller window and single bias */
    ck_assert_int_eq(eng_sampler_set_params(a, &p1), 0);
    eng_sampler_free(fresh);
    fresh = eng_sampler_new(&p1, NVB);
    same_samples(a, fresh, 50, 2000);
    eng_sampler_free(fresh);
    eng_sampler_free(a);
}
END_TEST

START_TEST(invalid_params) {
    struct eng_sampler_params p;
    eng_sampler_params_default(&p);
    p.top_p = 0;
    ck_assert_ptr_null(eng_sampler_new(&p, NV));
    eng_sampler_params_default(&p);
    p.temperature = -1;
    ck_assert_ptr_null(eng_sampler_new(&p, NV));
    eng_sampler_params_default(&p);
    struct eng_logit_bias b = {NV, 1.0f};
    p.logit_bias = &b;
    p.n_logit_bias = 1;
    ck_assert_ptr_null(eng_sampler_new(&p, NV));
    ck_assert(strstr(eng_last_error(), "logit_bias") != NULL);
}
END_TEST

/* Pushes pieces through a stop matcher; returns the emitted text (static) and *stopped. */
static const char *run_stop(const char *const *stops, int n, const char *const *pieces, int np,
                            bool *stopped) {
    static char out[512];
    size_t o = 0;
    struct eng_stop *st = eng_stop_new(stops, n);
    ck_assert_ptr_nonnull(st);
    *stopped = false;
    const char *e;
    size_t ne;
    for (int i = 0; i < np && !*stopped; i++) {
        *stopped = eng_stop_push(st, pieces[i], strlen(pieces[i]), &e, &ne);
        memcpy(out + o, e, ne);
        o += ne;
    }
    if (!*stopped) {
        eng_stop_flush(st, &e, &ne);
        memcpy(out + o, e, ne);
        o += ne;
    }
    out[o] = 0;
    eng_stop_free(st);
    return out;
}

START_TEST(stop_strings) {
    bool stopped;
    const char *stops[] = {"\nUser:", "###", "END"};
    const char *p1[] = {"Hello", " world", "\nUs", "er", ": more"};
    ck_assert_str_eq(run_stop(stops, 3, p1, 5, &stopped), "Hello world");
    ck_assert(stopped);
    const char *p2[] = {"a#", "#b", "##", "#c"}; /* "###" split over three pushes */
    ck_assert_str_eq(run_stop(stops, 3, p2, 4, &stopped), "a##b");
    ck_assert(stopped);
    const char *p3[] = {"EN", "D"};
    ck_assert_str_eq(run_stop(stops, 3, p3, 2, &stopped), "");
    ck_assert(stopped);
    const char *p4[] = {"no stop E", "N here", " ##"}; /* prefixes that never complete */
    ck_assert_str_eq(run_stop(stops, 3, p4, 3, &stopped), "no stop EN here ##");
    ck_assert(!stopped);
    const char *p5[] = {"xEND", "after"};
    ck_assert_str_eq(run_stop(stops, 3, p5, 2, &stopped), "x");
    /* a held-back prefix is released as soon as it cannot start a stop string */
    struct eng_stop *st = eng_stop_new(stops, 3);
    const char *e;
    size_t ne;
    ck_assert(!eng_stop_push(st, "abc#", 4, &e, &ne));
    ck_assert_int_eq((int)ne, 3);
    ck_assert(!eng_stop_push(st, "x", 1, &e, &ne));
    ck_assert_int_eq((int)ne, 2);
    ck_assert(!memcmp(e, "#x", 2));
    eng_stop_free(st);
    /* the earliest of two overlapping stop strings wins */
    const char *s2[] = {"cde", "bcdx"};
    const char *p6[] = {"abcd", "ex"};
    ck_assert_str_eq(run_stop(s2, 2, p6, 2, &stopped), "ab");
    /* no stop strings: everything passes straight through */
    const char *p7[] = {"one ", "two"};
    ck_assert_str_eq(run_stop(NULL, 0, p7, 2, &stopped), "one two");
}
END_TEST

Suite *sampler_suite(void) {
    Suite *s = suite_create("sampler");
    TCase *tc = tcase_create("sampler");
    tcase_add_checked_fixture(tc, setup, NULL);
    tcase_add_test(tc, temperature_one_matches_softmax);
    tcase_add_test(tc, temperature_scales);
    tcase_add_test(tc, top_k_truncates);
    tcase_add_test(tc, top_p_truncates);
    tcase_add_test(tc, min_p_truncates);
    tcase_add_test(tc, combined_after_temperature);
    tcase_add_test(tc, greedy_and_seeds);
    tcase_add_test(tc, greedy_large_vocab);
    tcase_add_test(tc, greedy_large_vocab_bias_penalties);
    tcase_add_test(tc, greedy_reads_only_maxima);
    tcase_add_test(tc, chunk_max_ignored_when_not_greedy);
    tcase_add_test(tc, penalties_and_bias);
    tcase_add_test(tc, logprob_only_when_asked);
    tcase_add_test(tc, invalid_params);
    tcase_add_test(tc, set_params_as_new);
    tcase_add_test(tc, stop_strings);
    suite_add_tcase(s, tc);
    return s;
}
