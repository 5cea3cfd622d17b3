/*
 * check_compress.c — layer-wise compression: the allocator is exact (equals brute force on
 * small problems), never exceeds the budget and reports the smallest reachable size; compress →
 * load → generate works and the edgellm.luc.* metadata describes the file; on a model whose
 * layers differ in sensitivity LUC beats a uniform format of the same size; bad input (budget
 * too small, unreadable calibration text, unwritable output) fails cleanly and leaves nothing.
 *
 * Models come from $BUILD/genmodel; calibration text from models/heldout.txt when present,
 * else a text generated here.
 */
#include "compress.h"
#include "../compress/internal.h" /* the Wanda masks and the sparsity measurement */

#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char dir[64];

static void setup(void) {
    snprintf(dir, sizeof(dir), "/tmp/check_compress.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
}

static void teardown(void) {
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    if (system(cmd) != 0) fprintf(stderr, "cleanup of %s failed\n", dir);
}

/* ---- allocator ---- */

static uint64_t rng = 88172645463325252ull;
static uint64_t next_rand(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

/* Random items: choices with decreasing error as bytes grow (like formats). */
static void random_items(struct cmp_alloc_item *items, struct cmp_choice *ch, int n, int k,
                         uint64_t scale) {
    for (int i = 0; i < n; i++) {
        uint64_t bytes = scale / 4 + next_rand() % scale;
        double err = 1.0 + (double)(next_rand() % 1000);
        for (int c = 0; c < k; c++) {
            ch[i * k + c].bytes = bytes;
            ch[i * k + c].err = err;
            bytes += 1 + next_rand() % scale;
            err *= 0.2 + 0.6 * (double)(next_rand() % 1000) / 1000.0;
        }
        items[i].n_choices = k;
        items[i].choices = ch + i * k;
    }
}

START_TEST(allocate_equals_brute_force) {
    enum { N = 6, K = 4 };
    struct cmp_alloc_item items[N];
    struct cmp_choice ch[N * K];
    for (int trial = 0; trial < 40; trial++) {
        random_items(items, ch, N, K, 1000);
        uint64_t min = 0, max = 0;
        for (int i = 0; i < N; i++) min += ch[i * K].bytes, max += ch[i * K + K - 1].bytes;
        uint64_t budget = min + next_rand() % (max - min + 1);
        int pick[N];
        ck_assert_int_eq(cmp_allocate(items, N, budget, pick, NULL), 0);
        double got = 0;
        uint64_t used = 0;
        for (int i = 0; i < N; i++)
            got += ch[i * K + pick[i]].err, used += ch[i * K + pick[i]].bytes;
        ck_assert_uint_le(used, budget);
        double best = INFINITY;
        for (int code = 0; code < 4096; code++) { /* K^N */
            double e = 0;
            uint64_t b = 0;
            for (int i = 0, c = code; i < N; i++, c /= K)
                e += ch[i * K + c % K].err, b += ch[i * K + c % K].bytes;
            if (b <= budget && e < best) best = e;
        }
        ck_assert_msg(fabs(got - best) <= 1e-9 * best, "trial %d: %g vs optimum %g", trial, got,
                      best);
    }
}
END_TEST

START_TEST(allocate_large_budget_and_errors) {
    enum { N = 200, K = 9 };
    static struct cmp_alloc_item items[N];
    static struct cmp_choice ch[N * K];
    random_items(items, ch, N, K, 3000000);
    uint64_t min = 0, max = 0;
    for (int i = 0; i < N; i++) min += ch[i * K].bytes, max += ch[i * K + K - 1].bytes;
    int pick[N];
    for (int t = 1; t < 10; t++) {
        uint64_t budget = min + (max - min) / 10 * t;
        ck_assert_int_eq(cmp_allocate(items, N, budget, pick, NULL), 0);
        uint64_t used = 0;
        for (int i = 0; i < N; i++) used += ch[i * K + pick[i]].bytes;
        ck_assert_uint_le(used, budget);
        /* nothing is left that would pay for another upgrade */
        for (int i = 0; i < N; i++)
            for (int c = 0; c < K; c++)
                if (ch[i * K + c].err < ch[i * K + pick[i]].err)
                    ck_assert_uint_gt(used - ch[i * K + pick[i]].bytes + ch[i * K + c].bytes,
                                      budget);
    }
    uint64_t smallest = 0;
    ck_assert_int_eq(cmp_allocate(items, N, min - 1, pick, &smallest), ENG_ERANGE);
    ck_assert_uint_eq(smallest, min);
    ck_assert(strstr(eng_last_error(), "smallest") != NULL);
    ck_assert_int_eq(cmp_allocate(items, N, max * 2, pick, NULL), 0);
    for (int i = 0; i < N; i++) ck_assert_int_eq(pick[i], K - 1);
    struct cmp_alloc_item empty = {0, NULL};
    ck_assert_int_eq(cmp_allocate(&empty, 1, 100, pick, NULL), ENG_EINVAL);
}
END_TEST

/* ---- KL divergence statistics ---- */

/* Two tokens, base logits (0, 0) and model logits (0, a): P = (1/2, 1/2), Q = softmax(0, a), so
 * KL(P || Q) = ln cosh(a / 2) exactly; the base argmax is token 0 (first index on ties) and the
 * model's is token 1 when a > 0. */
static double kl_two(float a) {
    return log(cosh((double)a / 2));
}

START_TEST(kld_stats_exact) {
    enum { N = 200 };
    struct cmp_kld_acc *acc = cmp_kld_acc_new();
    ck_assert_ptr_nonnull(acc);
    double kl[N], sum = 0;
    int same = 0;
    for (int i = 0; i < N; i++) {
        /* |a| grows with i (so the sorted order is i); every fourth position disagrees */
        float a = (float)(0.01 * (i + 1)) * (i % 4 == 0 ? 1.0f : -1.0f);
        float base[2] = {0, 0}, model[2] = {0, a};
        kl[i] = kl_two(a);
        sum += kl[i];
        same += a < 0;
        double got = cmp_kld_acc_add(acc, base, model, 2);
        ck_assert_msg(fabs(got - kl[i]) <= 1e-12 + 1e-9 * kl[i], "position %d: %.17g vs %.17g", i,
                      got, kl[i]);
    }
    struct cmp_kld_stats st;
    cmp_kld_acc_stats(acc, &st);
    ck_assert_int_eq(st.n_positions, N);
    ck_assert_int_eq(same, 150);
    ck_assert_double_eq_tol(st.top1_agreement, 0.75, 1e-15);
    ck_assert_double_eq_tol(st.mean_kld, sum / N, 1e-12);
    /* rank 0.99 * 199 = 197.01: 0.99 of the 198th smallest + 0.01 of the 199th */
    double p99 = 0.99 * kl[197] + 0.01 * kl[198];
    ck_assert_msg(fabs(st.p99_kld - p99) <= 1e-9 * p99, "p99 %.17g vs %.17g", st.p99_kld, p99);
    ck_assert(st.p99_kld > kl[197] && st.p99_kld < kl[198]);
    /* one more position at rank exactly 198 of 201: p99 is that value, no interpolation */
    float base[2] = {0, 0}, model[2] = {0, 0.5f};
    cmp_kld_acc_add(acc, base, model, 2);
    cmp_kld_acc_stats(acc, &st);
    ck_assert_int_eq(st.n_positions, N + 1);
    ck_assert_double_eq_tol(st.top1_agreement, 150.0 / 201, 1e-15);
    ck_assert_msg(fabs(st.p99_kld - kl[197]) <= 1e-12 * kl[197], "p99 %.17g vs %.17g", st.p99_kld,
                  kl[197]);
    cmp_kld_acc_free(acc);

    /* identical distributions over a larger vocabulary: zero divergence, full agreement */
    acc = cmp_kld_acc_new();
    float x[300];
    for (int pos = 0; pos < 10; pos++) {
        for (int v = 0; v < 300; v++) x[v] = (float)((v * 37 + pos * 11) % 101) * 0.1f;
        ck_assert(cmp_kld_acc_add(acc, x, x, 300) == 0.0);
    }
    cmp_kld_acc_stats(acc, &st);
    ck_assert(st.mean_kld == 0.0 && st.p99_kld == 0.0);
    ck_assert(st.top1_agreement == 1.0);
    cmp_kld_acc_free(acc);
    /* no positions: all zero */
    cmp_kld_acc_stats(NULL, &st);
    ck_assert_int_eq(st.n_positions, 0);
}
END_TEST

/* ---- sparsity: Wanda masks and the measurement ---- */

static float wanda(const float *w, const float *imp, int j) {
    return fabsf(w[j]) * sqrtf(imp[j]);
}

START_TEST(wanda_masks) {
    enum { N = 512 };
    float w[N], imp[N];
    uint8_t keep[N];
    for (int j = 0; j < N; j++) {
        w[j] = (float)((int64_t)(next_rand() % 2001) - 1000) / 100.0f;
        imp[j] = (float)(next_rand() % 10000) / 100.0f + 0.01f;
    }
    /* 2:4: exactly two of every four consecutive inputs, the two highest scores */
    ck_assert_int_eq(cmp_sparse_mask(w, imp, N, CMP_SPARSE_24, keep), 0);
    for (int g = 0; g < N; g += 4) {
        int kept = 0;
        for (int k = 0; k < 4; k++) kept += keep[g + k];
        ck_assert_int_eq(kept, 2);
        for (int a = 0; a < 4; a++)
            for (int b = 0; b < 4; b++)
                if (keep[g + a] && !keep[g + b])
                    ck_assert(wanda(w, imp, g + a) >= wanda(w, imp, g + b));
    }
    /* unstructured: half of the row, every kept score >= every pruned score */
    ck_assert_int_eq(cmp_sparse_mask(w, imp, N, CMP_SPARSE_UNSTR, keep), 0);
    int kept = 0;
    float min_kept = INFINITY, max_pruned = 0;
    for (int j = 0; j < N; j++) {
        kept += keep[j];
        if (keep[j])
            min_kept = fminf(min_kept, wanda(w, imp, j));
        else
            max_pruned = fmaxf(max_pruned, wanda(w, imp, j));
    }
    ck_assert_int_eq(kept, N / 2);
    ck_assert(min_kept >= max_pruned);
    /* importance decides, not magnitude: scores 4, 2, 3, 4 keep inputs 0 and 3 */
    const float w4[8] = {1, 2, 3, 4, -1, -2, -3, -4}, i4[8] = {16, 1, 1, 1, 16, 1, 1, 1};
    ck_assert_int_eq(cmp_sparse_mask(w4, i4, 8, CMP_SPARSE_24, keep), 0);
    const uint8_t want24[8] = {1, 0, 0, 1, 1, 0, 0, 1};
    ck_assert_mem_eq(keep, want24, 8);
    ck_assert_int_eq(cmp_sparse_mask(w4, i4, 8, CMP_SPARSE_UNSTR, keep), 0);
    ck_assert_mem_eq(keep, want24, 8);
    /* unstructured chooses across groups: here the top half is all in the first group pair */
    const float w8[8] = {5, 6, 7, 8, 1, 1, 1, 1}, ones[8] = {1, 1, 1, 1, 1, 1, 1, 1};
    ck_assert_int_eq(cmp_sparse_mask(w8, ones, 8, CMP_SPARSE_UNSTR, keep), 0);
    const uint8_t want_u[8] = {1, 1, 1, 1, 0, 0, 0, 0};
    ck_assert_mem_eq(keep, want_u, 8);
    ck_assert_int_eq(cmp_sparse_mask(w8, ones, 8, CMP_SPARSE_24, keep), 0);
    const uint8_t want_s[8] = {0, 0, 1, 1, 1, 1, 0, 0}; /* ties: the earlier input stays */
    ck_assert_mem_eq(keep, want_s, 8);
}
END_TEST

/* A constructed tensor where the figures are known exactly: in every group of four inputs two
 * weights are nonzero multiples of 1/4 in [-2, 1.75] with -2 in every block of 32 (so 4-bit
 * q4_0 with scale 1/4 represents them exactly) and two are small (0.01 and -0.02, pruned by either
 * mask). The error of both masks is then the importance-weighted sum of the pruned weights'
 * squares, and the dense frontier is the log-linear interpolation of the candidates' errors. */
START_TEST(sparsity_eval_constructed) {
    enum { COLS = 64, ROWS = 8 };
    static float data[ROWS * COLS];
    float imp[COLS];
    double expect = 0;
    for (int j = 0; j < COLS; j++) imp[j] = 1.0f + (float)(j % 5);
    for (int r = 0; r < ROWS; r++)
        for (int j = 0; j < COLS; j++) {
            float *x = &data[r * COLS + j];
            int k = j % 4;
            if (k == 0)
                *x = j % 32 == 0 ? -2.0f : -0.25f * (float)((r + j) % 7) - 0.25f;
            else if (k == 1)
                *x = 0.25f * (float)((r * 3 + j) % 8) + 0.25f; /* 0.25 .. 2.0, never 0 */
            else
                *x = k == 2 ? 0.01f : -0.02f;
            if (k == 1 && *x > 1.75f) *x = 1.75f;
            if (k >= 2) expect += imp[j] * (double)*x * (double)*x;
        }
    struct eng_tensor src = {.name = "blk.0.ffn_up.weight",
                             .type = ENG_TYPE_F32,
                             .n_dims = 2,
                             .ne = {COLS, ROWS, 1, 1},
                             .nbytes = sizeof(data),
                             .data = data};
    struct cmp_tensor t = {.src = &src, .kind = CMP_KIND_UP, .layer = 0, .imp = imp, .n_cand = 2};
    double params = COLS * ROWS;
    t.cand[0] = ENG_TYPE_Q4_K, t.bytes[0] = (uint64_t)(4.0 * params / 8), t.werr[0] = 2.0;
    t.cand[1] = ENG_TYPE_Q3_K, t.bytes[1] = (uint64_t)(3.0 * params / 8), t.werr[1] = 8.0;
    struct cmp_sparse_eval ev;
    ck_assert_int_eq(cmp_sparsity_eval(&t, 1, 1, false, &ev), 0);
    for (int k = 0; k < CMP_SPARSE_COUNT; k++)
        ck_assert_msg(fabs(ev.err[k] - expect) <= 1e-9 * expect, "%s: error %.17g, expected %.17g",
                      cmp_sparse_name((enum cmp_sparse_kind)k), ev.err[k], expect);
    /* 3.25 bpw: 8^0.75 * 2^0.25 = 2^2.5; 3.5 bpw: 8^0.5 * 2^0.5 = 4 */
    ck_assert_double_eq_tol(ev.dense_err[CMP_SPARSE_24], pow(2.0, 2.5), 1e-12);
    ck_assert_double_eq_tol(ev.dense_err[CMP_SPARSE_UNSTR], 4.0, 1e-12);

    /* the summary: median ratio and the count of tensors where pruning would be the better
     * format, over three tensors */
    struct cmp_sparse_eval three[3] = {
        {{1.0, 3.0}, {2.0, 2.0}}, {{4.0, 1.0}, {2.0, 2.0}}, {{3.0, 6.0}, {2.0, 2.0}}};
    double ratio[CMP_SPARSE_COUNT];
    int pays[CMP_SPARSE_COUNT];
    cmp_sparsity_summary(three, 3, ratio, pays);
    ck_assert_double_eq_tol(ratio[CMP_SPARSE_24], 1.5, 1e-15);
    ck_assert_double_eq_tol(ratio[CMP_SPARSE_UNSTR], 1.5, 1e-15);
    ck_assert_int_eq(pays[CMP_SPARSE_24], 1);
    ck_assert_int_eq(pays[CMP_SPARSE_UNSTR], 1);
}
END_TEST

/* ---- end to end ---- */

static const char *calib_text(void) {
    static char path[128];
    if (access("models/heldout.txt", R_OK) == 0) return "models/heldout.txt";
    snprintf(path, sizeof(path), "%s/calib.txt", dir);
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    static const char *const words[] = {"the",  "man", "said", "unto",  "them", "and",  "of",
                                        "time", "day", "were", "great", "came", "first"};
    for (int i = 0; i < 20000; i++)
        fprintf(f, "%s%s", words[next_rand() % 13], i % 17 == 16 ? ".\n" : " ");
    fclose(f);
    return path;
}

static const char *gen(const char *name, const char *args) {
    static char path[256];
    char cmd[1024];
    const char *build = getenv("BUILD") ? getenv("BUILD") : "build";
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    snprintf(cmd, sizeof(cmd), "%s/genmodel %s -o %s", build, args, path);
    ck_assert_msg(system(cmd) == 0, "genmodel failed: %s", cmd);
    return path;
}

#define SMALL                                                                                      \
    "--arch llama --type f32 --n-embd 256 --n-layer 3 --n-head 4 --n-head-kv 2 "                   \
    "--n-ff 512 --n-vocab 512 --ctx 256"

static void params(struct cmp_params *p, const char *in, const char *out) {
    cmp_params_default(p);
    p->input = in;
    p->output = out;
    p->calib_path = calib_text();
    p->calib_tokens = 1024;
    p->kl_tokens = 256;
    p->chunk = 128;
    p->n_threads = 2;
}

static int count_files(void) {
    char cmd[256];
    snprintf(cmd, sizeof(cmd), "exit $(ls -A %s | wc -l)", dir);
    return WEXITSTATUS(system(cmd));
}

START_TEST(compress_load_generate) {
    char in[256], out[256];
    snprintf(in, sizeof(in), "%s", gen("in.gguf", SMALL " --seed 21"));
    snprintf(out, sizeof(out), "%s/out.gguf", dir);
    struct cmp_params p;
    params(&p, in, out);
    p.target_bpw = 4.0;
    char rep[256];
    snprintf(rep, sizeof(rep), "%s/rep", dir);
    p.report_prefix = rep;
    int before = count_files();
    struct cmp_result r;
    ck_assert_msg(cmp_compress(&p, &r) == 0, "%s", eng_last_error());
    /* OUT, PREFIX.json and PREFIX.svg in place; nothing staged is left */
    ck_assert_int_eq(count_files(), before + 3);
    ck_assert_int_eq(access(out, R_OK), 0);
    snprintf(rep, sizeof(rep), "%s/rep.json", dir);
    ck_assert_int_eq(access(rep, R_OK), 0);
    snprintf(rep, sizeof(rep), "%s/rep.svg", dir);
    ck_assert_int_eq(access(rep, R_OK), 0);
    ck_assert(r.bpw <= 4.0 && r.bpw > 3.6);
    ck_assert(r.measured_kld > 0 && r.measured_kld < 1.0);
    ck_assert(r.predicted_kld > 0.25 * r.measured_kld && r.predicted_kld < 4 * r.measured_kld);

    /* metadata describes the file */
    struct eng_gguf *g = eng_gguf_open(out), *gi = eng_gguf_open(in);
    ck_assert_ptr_nonnull(g);
    const void *names, *types;
    int64_t n = eng_gguf_get_arr(g, "edgellm.luc.tensors", ENG_GGUF_STRING, &names);
    ck_assert_int_eq(n, 3 * 7 + 2);
    ck_assert_int_eq(eng_gguf_get_arr(g, "edgellm.luc.types", ENG_GGUF_STRING, &types), n);
    for (int64_t i = 0; i < n; i++) {
        const struct eng_tensor *t =
            eng_gguf_find_tensor(g, ((const struct eng_gguf_str *)names)[i].s);
        ck_assert_ptr_nonnull(t);
        ck_assert_str_eq(eng_type_name(t->type), ((const struct eng_gguf_str *)types)[i].s);
    }
    for (int64_t i = 0; i < eng_gguf_n_kv(gi); i++) /* every input key survives */
        ck_assert_int_ge(eng_gguf_find_key(g, eng_gguf_kv_at(gi, i)->key.s), 0);
    float f;
    ck_assert_int_eq(eng_gguf_get_f32(g, "edgellm.luc.target_bpw", &f), 0);
    ck_assert(f == 4.0f);
    ck_assert_int_eq(eng_gguf_get_f32(g, "edgellm.luc.predicted_kld", &f), 0);
    ck_assert(fabs(f - r.predicted_kld) < 1e-6 + 1e-5 * r.predicted_kld);
    eng_gguf_close(g);
    eng_gguf_close(gi);

    /* it loads and generates like the input */
    struct eng_model *mi = eng_model_load(in, NULL), *mo = eng_model_load(out, NULL);
    ck_assert_ptr_nonnull(mo);
    struct eng_ctx_params cp;
    eng_ctx_params_default(mo, &cp);
    cp.n_ctx = 32;
    cp.n_threads = 2;
    struct eng_ctx *ci = eng_ctx_new(mi, &cp), *co = eng_ctx_new(mo, &cp);
    int32_t tok_i = 1, tok_o = 1, agree = 0;
    struct cmp_kld_acc *acc = cmp_kld_acc_new();
    for (int pos = 0; pos < 16; pos++) {
        struct eng_batch bi = {1, &tok_i, &pos}, bo = {1, &tok_o, &pos};
        ck_assert_int_eq(eng_forward(ci, &bi), 0);
        ck_assert_int_eq(eng_forward(co, &bo), 0);
        const float *li = eng_logits(ci, 0), *lo = eng_logits(co, 0);
        cmp_kld_acc_add(acc, li, lo, 512);
        int ai = 0, ao = 0;
        for (int v = 1; v < 512; v++) {
            if (li[v] > li[ai]) ai = v;
            if (lo[v] > lo[ao]) ao = v;
        }
        agree += ai == ao;
        tok_i = tok_o = ai; /* follow the input model */
    }
    /* random-weight models have flat distributions: judge by KL, and argmax agreement loosely */
    struct cmp_kld_stats st;
    cmp_kld_acc_stats(acc, &st);
    cmp_kld_acc_free(acc);
    ck_assert_int_eq(st.n_positions, 16);
    ck_assert_msg(st.mean_kld < 3 * r.measured_kld, "generation KL %g vs %g", st.mean_kld,
                  r.measured_kld);
    ck_assert_int_ge(agree, 6);
    eng_ctx_free(ci);
    eng_ctx_free(co);
    eng_model_free(mi);
    eng_model_free(mo);
}
END_TEST

/* Column importance: the mean squared activation per input column for the matrices; uniform
 * for an untied token embedding (a lookup table); the output head's for a tied one. */
START_TEST(calib_importance) {
    for (int tied = 0; tied < 2; tied++) {
        const char *path =
            gen(tied ? "tied.gguf" : "untied.gguf",
                tied ? SMALL " --seed 24 --n-layer 1 --tied" : SMALL " --seed 24 --n-layer 1");
        struct eng_model *m = eng_model_load(path, NULL);
        ck_assert_ptr_nonnull(m);
        ck_assert(eng_model_hparams(m)->tied_output == (bool)tied);
        struct cmp_calib *c = cmp_calib_run(m, calib_text(), 256, 128, 128, 2, NULL, NULL);
        ck_assert_msg(c != NULL, "%s", eng_last_error());
        const float *e = cmp_calib_importance(c, CMP_KIND_EMBD, 0),
                    *o = cmp_calib_importance(c, CMP_KIND_OUTPUT, 0),
                    *q = cmp_calib_importance(c, CMP_KIND_Q, 0);
        bool all_one = true, varies = false;
        for (int j = 0; j < 256; j++) {
            all_one &= e[j] == 1.0f;
            varies |= o[j] != o[0];
            ck_assert(o[j] > 0 && q[j] > 0);
        }
        ck_assert(varies);
        if (tied)
            ck_assert_ptr_eq(e, o);
        else
            ck_assert(all_one);
        cmp_calib_free(c);
        eng_model_free(m);
    }
}
END_TEST

/* A copy of src whose blocks' output projections are scaled (layers differ in sensitivity). */
static void scale_layers(const char *src, const char *dst, const float *scale, int n_layer) {
    struct eng_gguf *g = eng_gguf_open(src);
    ck_assert_ptr_nonnull(g);
    struct eng_gguf_writer *w = eng_gguf_writer_new();
    for (int64_t i = 0; i < eng_gguf_n_kv(g); i++)
        ck_assert_int_eq(
            eng_gguf_set_value(w, eng_gguf_kv_at(g, i)->key.s, &eng_gguf_kv_at(g, i)->val), 0);
    float *bufs[64];
    int nb = 0;
    for (int64_t i = 0; i < eng_gguf_n_tensors(g); i++) {
        const struct eng_tensor *t = eng_gguf_tensor_at(g, i);
        const void *data = t->data;
        int l;
        if (sscanf(t->name, "blk.%d.", &l) == 1 && l < n_layer &&
            (strstr(t->name, "ffn_down.weight") || strstr(t->name, "attn_output.weight"))) {
            size_t n = t->nbytes / 4;
            float *s = malloc(t->nbytes);
            for (size_t k = 0; k < n; k++) s[k] = ((const float *)t->data)[k] * scale[l];
            data = bufs[nb++] = s;
        }
        ck_assert_int_eq(eng_gguf_add_tensor(w, t->name, t->type, t->n_dims, t->ne, data), 0);
    }
    ck_assert_int_eq(eng_gguf_writer_write(w, dst), 0);
    eng_gguf_writer_free(w);
    eng_gguf_close(g);
    for (int i = 0; i < nb; i++) free(bufs[i]);
}

START_TEST(luc_beats_uniform) {
    char base[256], in[256], u[256], l[256];
    snprintf(base, sizeof(base), "%s", gen("base.gguf", SMALL " --seed 22 --n-layer 4"));
    snprintf(in, sizeof(in), "%s/sens.gguf", dir);
    const float scale[4] = {3.0f, 0.3f, 1.0f, 0.3f};
    scale_layers(base, in, scale, 4);
    snprintf(u, sizeof(u), "%s/uniform.gguf", dir);
    snprintf(l, sizeof(l), "%s/luc.gguf", dir);
    struct cmp_params p;
    struct cmp_result ru, rl;
    params(&p, in, u);
    p.uniform = "q4_k";
    ck_assert_msg(cmp_compress(&p, &ru) == 0, "%s", eng_last_error());
    params(&p, in, l);
    p.target_bytes = ru.file_bytes;
    ck_assert_msg(cmp_compress(&p, &rl) == 0, "%s", eng_last_error());
    ck_assert_uint_le(rl.file_bytes, ru.file_bytes);
    ck_assert_msg(rl.measured_kld < 0.8 * ru.measured_kld, "LUC KL %g vs uniform q4_k %g",
                  rl.measured_kld, ru.measured_kld);
    /* uniform: every matrix is q4_k */
    struct eng_gguf *g = eng_gguf_open(u);
    const void *types;
    int64_t n = eng_gguf_get_arr(g, "edgellm.luc.types", ENG_GGUF_STRING, &types);
    for (int64_t i = 0; i < n; i++)
        ck_assert_str_eq(((const struct eng_gguf_str *)types)[i].s, "q4_k");
    ck_assert_str_eq(eng_gguf_get_str(g, "edgellm.luc.allocation"), "uniform");
    eng_gguf_close(g);
}
END_TEST

START_TEST(bad_input) {
    char in[256], out[256];
    snprintf(in, sizeof(in), "%s", gen("in.gguf", SMALL " --seed 23 --n-layer 1"));
    snprintf(out, sizeof(out), "%s/out.gguf", dir);
    int before = count_files(); /* in.gguf (+ calib.txt) */
    struct cmp_params p;
    params(&p, in, out);
    p.target_bpw = 1.5; /* below the smallest format */
    ck_assert_int_eq(cmp_compress(&p, NULL), ENG_ERANGE);
    ck_assert_msg(strstr(eng_last_error(), "the smallest reachable is") != NULL, "%s",
                  eng_last_error());
    p.target_bpw = 0;
    p.target_bytes = 100000; /* below the smallest file, above the header */
    ck_assert_int_eq(cmp_compress(&p, NULL), ENG_ERANGE);
    ck_assert_msg(strstr(eng_last_error(), "a file of 100000 bytes is not reachable: the smallest "
                                           "reachable is about"),
                  "%s", eng_last_error());
    ck_assert_int_eq(count_files(), before);
    ck_assert_int_eq(count_files(), before);

    params(&p, in, out);
    p.target_bpw = 4;
    p.calib_path = "/nonexistent/calib.txt";
    ck_assert_int_ne(cmp_compress(&p, NULL), 0);
    ck_assert(strstr(eng_last_error(), "/nonexistent/calib.txt") != NULL);
    ck_assert_int_eq(count_files(), before);

    params(&p, in, "/nonexistent-dir/out.gguf");
    p.target_bpw = 4;
    ck_assert_int_eq(cmp_compress(&p, NULL), ENG_EIO);
    ck_assert(strstr(eng_last_error(), "/nonexistent-dir/out.gguf") != NULL);

    /* the report cannot be written: refused before any work, nothing left behind */
    char rep[256];
    params(&p, in, out);
    p.target_bpw = 4;
    p.report_prefix = "/nonexistent-dir/report";
    ck_assert_int_eq(cmp_compress(&p, NULL), ENG_EIO);
    ck_assert_msg(strstr(eng_last_error(), "/nonexistent-dir/report.json: cannot write the report"),
                  "%s", eng_last_error());
    ck_assert_int_eq(count_files(), before);
    snprintf(rep, sizeof(rep), "%s/rep.svg", dir); /* PREFIX.svg is a directory */
    ck_assert_int_eq(mkdir(rep, 0755), 0);
    snprintf(rep, sizeof(rep), "%s/rep", dir);
    p.report_prefix = rep;
    ck_assert_int_eq(cmp_compress(&p, NULL), ENG_EIO);
    ck_assert_msg(strstr(eng_last_error(), "rep.svg: cannot write the report: is a directory"),
                  "%s", eng_last_error());
    ck_assert_int_eq(count_files(), before + 1); /* only the directory made here */
    snprintf(rep, sizeof(rep), "%s/rep.svg", dir);
    ck_assert_int_eq(rmdir(rep), 0);

    params(&p, in, out);
    ck_assert_int_eq(cmp_compress(&p, NULL), ENG_EINVAL); /* no target */
    p.uniform = "q9_9";
    ck_assert_int_eq(cmp_compress(&p, NULL), ENG_EINVAL);
    params(&p, "/nonexistent.gguf", out);
    p.target_bpw = 4;
    ck_assert_int_ne(cmp_compress(&p, NULL), 0);
    ck_assert_int_eq(count_files(), before);
}
END_TEST

Suite *compress_suite(void) {
    Suite *s = suite_create("compress");
    TCase *tu = tcase_create("units"); /* CK_RUN_CASE=units: the fast ones */
    tcase_add_checked_fixture(tu, setup, teardown);
    tcase_set_timeout(tu, 120); /* the large allocation is slow under sanitizers */
    tcase_add_test(tu, allocate_equals_brute_force);
    tcase_add_test(tu, allocate_large_budget_and_errors);
    tcase_add_test(tu, kld_stats_exact);
    tcase_add_test(tu, wanda_masks);
    tcase_add_test(tu, sparsity_eval_constructed);
    suite_add_tcase(s, tu);
    TCase *tc = tcase_create("compress");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, calib_importance);
    tcase_add_test(tc, compress_load_generate);
    tcase_add_test(tc, luc_beats_uniform);
    tcase_add_test(tc, bad_input);
    suite_add_tcase(s, tc);
    return s;
}
