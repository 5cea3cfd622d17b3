/*
 * kernels.c — single-thread cost of the matrix kernels, for choosing kernels and thresholds (not
 * a test, not part of BENCHMARKS.md's headline figures). Times are thread CPU time
 * (CLOCK_THREAD_CPUTIME_ID), so they stay meaningful on a machine that other processes load.
 *
 * For every weight format with kernels: vec_dot over a weight matrix small enough to stay in L2
 * (compute cost, ns per 256 weights and the GB/s of weight bytes one core can consume), to_float
 * (dequantization cost), and OpenBLAS sgemm GFLOP/s at a few batch sizes. An interleaved layout
 * (q4_0x16, where the level has its kernels) has only the whole-group figures (rows, cols4).
 *
 * Prints one JSON object per line (tools/bench/kernels.py turns them into BENCHMARKS.md's
 * "Kernels" section); ns figures are per 256 weights (tile and sgemm: per 256 weights per token).
 *
 * With -m MIB (streaming mode) it measures instead how much of one core's memory read rate the
 * decode kernels keep: per type, a weight matrix of MIB MiB (rows of IN weights, far larger than
 * the caches, in 2 MiB pages where the kernel allows, as the engine maps model files) read by
 * vec_dot_rows in blocks of 64 rows, alternated R times with a plain read pass over the same
 * bytes (AVX2 loads, four sums); each round's GB/s of both, wall clock, and the median of the
 * per-round ratios. Pairing each kernel pass with a read pass a moment before it keeps this
 * host's bandwidth drift (tens of percent within a minute) out of the ratio. With -c NC (2..4)
 * the pass is batched decode's instead: vec_dot_cols with NC activation rows over blocks of
 * eight weight rows, as matmul.c's dot_rows calls it, so that the ratio tells how much of the
 * read rate a column kernel keeps when it computes NC times as much per byte.
 *
 * With -a it measures the attention kernels instead (bench_attn).
 *
 * usage: kernels [-t TYPE[,TYPE...]] [-n IN] [-r ROWS] [-m MIB [-R ROUNDS] [-c NC]] | -a
 */
#include "quants.h"

#include <cblas.h>
#include <immintrin.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/mman.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Seconds on a clock: the thread's CPU time for the in-cache figures, wall time for streaming. */
static double clock_s(clockid_t id) {
    struct timespec ts;
    clock_gettime(id, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}
static double cpu_s(void) {
    return clock_s(CLOCK_THREAD_CPUTIME_ID);
}
static double wall_s(void) {
    return clock_s(CLOCK_MONOTONIC);
}

static unsigned long long rng = 88172645463325252ull;
static float frand(void) {
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (float)((rng >> 11) * (1.0 / 9007199254740992.0)) * 2.0f - 1.0f;
}

static volatile float sink;

/* Passes over a matrix of `weights` weights between two clock reads: the thread CPU clock is a
 * system call in a VM (about a microsecond), so it is read about every 4 M weights, not after
 * every pass over a small matrix (which inflated the per-weight figures by up to 2x). */
static int passes_per_read(int64_t weights) {
    int64_t p = ((int64_t)1 << 22) / (weights > 0 ? weights : 1);
    return p < 1 ? 1 : (int)p;
}

/* rows weight rows of type t from the floats f (rows × in) into w: quantized by the type, or
 * for an interleaved layout by its row type and then interleaved (rows a multiple of its group). */
static void make_weights(enum eng_type t, const float *f, int64_t in, int64_t rows, uint8_t *w) {
    const struct eng_type_traits *tr = eng_type_traits(t);
    const enum eng_type rt = tr->row_group > 1 ? tr->row_type : t;
    const size_t wrow = eng_row_size(rt, in);
    uint8_t *q = tr->row_group > 1 ? malloc(wrow * (size_t)rows) : w;
    for (int64_t r = 0; r < rows; r++)
        eng_type_traits(rt)->from_float(f + (size_t)r * in, q + (size_t)r * wrow, in);
    if (q == w) return;
    eng_interleave_rows(t, q, w, in, rows);
    free(q);
}

/* Whether bench_type and bench_stream can build rows of t: a quantizer, or an interleaved layout
 * whose rows come in whole groups. */
static bool can_make(const struct eng_type_traits *tr, int64_t rows) {
    if (tr->row_group > 1) return rows % tr->row_group == 0 && tr->vec_dot_rows;
    return tr->from_float != NULL;
}

static void bench_type(enum eng_type t, int64_t in, int rows) {
    const struct eng_type_traits *tr = eng_type_traits(t);
    if (!tr || !can_make(tr, rows) || !(tr->vec_dot || tr->row_group > 1)) return;
    const struct eng_type_traits *vt = eng_type_traits(tr->vec_dot_type);
    size_t wrow = eng_row_size(t, in), arow = eng_row_size(tr->vec_dot_type, in);
    float *x = malloc((size_t)in * sizeof(float));
    /* activations 64-byte aligned, as the engine's workspace holds them */
    uint8_t *w = malloc(wrow * (size_t)rows), *a = aligned_alloc(64, (arow + 63) / 64 * 64);
    float *f = malloc((size_t)in * rows * sizeof(float));
    for (int64_t i = 0; i < in; i++) x[i] = frand();
    for (int64_t i = 0; i < in * rows; i++) f[i] = frand();
    make_weights(t, f, in, rows, w);
    if (vt->from_float)
        vt->from_float(x, a, in);
    else
        memcpy(a, x, arow);
    const int per = passes_per_read(in * rows);
    int reps = 0;
    double t0 = cpu_s(), t1;
    float s = 0;
    printf("{\"type\": \"%s\", \"in\": %lld", tr->name, (long long)in);
    /* vec_dot: repeat over the L2-resident matrix (an interleaved layout has only the
     * whole-group kernels below) */
    if (tr->vec_dot) {
        do {
            for (int k = 0; k < per; k++)
                for (int r = 0; r < rows; r++) {
                    float v;
                    tr->vec_dot(in, &v, w + (size_t)r * wrow, a);
                    s += v;
                }
            reps += per;
            t1 = cpu_s();
        } while (t1 - t0 < 0.3);
        double dot_ns = (t1 - t0) * 1e9 / ((double)reps * rows * in / 256);
        double dot_gbs = (double)reps * rows * wrow / (t1 - t0) / 1e9;
        /* to_float */
        reps = 0;
        t0 = cpu_s();
        do {
            for (int k = 0; k < per; k++)
                for (int r = 0; r < rows; r++)
                    tr->to_float(w + (size_t)r * wrow, f + (size_t)r * in, in);
            reps += per;
            t1 = cpu_s();
        } while (t1 - t0 < 0.3);
        double deq_ns = (t1 - t0) * 1e9 / ((double)reps * rows * in / 256);
        sink = s;
        printf(", \"vec_dot_ns\": %.2f, \"vec_dot_gbs\": %.2f, \"to_float_ns\": %.2f", dot_ns,
               dot_gbs, deq_ns);
    }
    if (tr->vec_dot_rows) {
        /* the whole matrix in one vec_dot_rows call, as decode's row ranges go */
        float *v = malloc(sizeof(float) * (size_t)rows);
        reps = 0;
        t0 = cpu_s();
        do {
            for (int k = 0; k < per; k++) {
                tr->vec_dot_rows(in, rows, v, w, wrow, a);
                s += v[0];
            }
            reps += per;
            t1 = cpu_s();
        } while (t1 - t0 < 0.3);
        sink = s;
        printf(", \"rows_ns\": %.2f", (t1 - t0) * 1e9 / ((double)reps * rows * in / 256));
        free(v);
    }
    if (tr->vec_dot_cols) {
        /* batched decode: ENG_DOT_COLS activation rows against each weight row, ns per 256
         * weights and column (vec_dot_ns is the same figure for one column) */
        uint8_t *ac = aligned_alloc(64, (arow * ENG_DOT_COLS + 63) / 64 * 64);
        for (int c = 0; c < ENG_DOT_COLS; c++) memcpy(ac + (size_t)c * arow, a, arow);
        float *v = malloc(sizeof(float) * ENG_DOT_COLS * (size_t)rows);
        reps = 0;
        t0 = cpu_s();
        do {
            for (int k = 0; k < per; k++) {
                tr->vec_dot_cols(in, ENG_DOT_COLS, rows, v, (size_t)rows, w, wrow, ac, arow);
                s += v[0];
            }
            reps += per;
            t1 = cpu_s();
        } while (t1 - t0 < 0.3);
        sink = s;
        printf(", \"cols%d_ns\": %.2f", ENG_DOT_COLS,
               (t1 - t0) * 1e9 / ((double)reps * rows * in / 256 * ENG_DOT_COLS));
        free(ac);
        free(v);
    }
    if (tr->repack) {
        /* repack, then the tile kernel over 64 activation rows */
        int8_t *q = malloc((size_t)in * rows);
        float *s16 = malloc((size_t)in / 16 * rows * sizeof(float));
        float *m16 = malloc((size_t)in / 16 * rows * sizeof(float));
        float *s8 = malloc((size_t)in / 4 * rows * sizeof(float));
        reps = 0;
        t0 = cpu_s();
        do {
            for (int k = 0; k < per; k++)
                for (int r = 0; r < rows; r++)
                    tr->repack(w + (size_t)r * wrow, q + (size_t)r * in, s16 + (size_t)r * in / 16,
                               m16 + (size_t)r * in / 16, in);
            reps += per;
            t1 = cpu_s();
        } while (t1 - t0 < 0.3);
        double rep_ns = (t1 - t0) * 1e9 / ((double)reps * rows * in / 256);
        for (int64_t i = 0; i < in / 32 * rows; i++)
            for (int k = 0; k < 8; k++) s8[i * 8 + k] = s16[2 * i + k / 4];
        enum { NC = 64 };
        int8_t *acts = malloc((size_t)in * NC);
        float *ad = malloc((size_t)in / 32 * NC * sizeof(float)),
              *y = malloc(sizeof(float) * NC * rows);
        for (int64_t i = 0; i < in * NC; i++) acts[i] = (int8_t)(frand() * 127);
        for (int64_t i = 0; i < in / 32 * NC; i++) ad[i] = 0.01f + 0.001f * (float)(i % 7);
        struct eng_tile tile = eng_tile_kernel();
        reps = 0;
        t0 = cpu_s();
        do {
            for (int r = 0; r < rows; r += tile.r)
                for (int c = 0; c < NC; c += tile.c)
                    tile.fn(in, tile.r, tile.c, q + (size_t)r * in, s8 + (size_t)r * in / 4,
                            acts + (size_t)c * in, (size_t)in, ad + (size_t)c * (in / 32),
                            y + (size_t)c * rows + r, rows);
            reps++;
            t1 = cpu_s();
        } while (t1 - t0 < 0.3);
        double tile_ns = (t1 - t0) * 1e9 / ((double)reps * rows * in / 256 * NC);
        printf(", \"repack_ns\": %.2f, \"tile_ns\": %.2f", rep_ns, tile_ns);
        free(q), free(s16), free(m16), free(s8), free(acts), free(ad), free(y);
    }
    printf("}\n");
    free(x), free(w), free(a), free(f);
}

static void bench_sgemm(int64_t in, int rows) {
    int bs[] = {8, 16, 32, 64, 128, 256};
    float *w = malloc((size_t)in * rows * sizeof(float));
    float *x = malloc((size_t)in * 256 * sizeof(float));
    float *y = malloc((size_t)rows * 256 * sizeof(float));
    for (size_t i = 0; i < (size_t)in * rows; i++) w[i] = frand();
    for (size_t i = 0; i < (size_t)in * 256; i++) x[i] = frand();
    for (size_t k = 0; k < sizeof(bs) / sizeof(bs[0]); k++) {
        int B = bs[k], reps = 0;
        double t0 = cpu_s(), t1;
        do {
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, B, rows, (int)in, 1.0f, x, (int)in,
                        w, (int)in, 0.0f, y, rows);
            reps++;
            t1 = cpu_s();
        } while (t1 - t0 < 0.3);
        double gflops = 2.0 * B * rows * in * reps / (t1 - t0) / 1e9;
        printf("{\"sgemm_b\": %d, \"rows\": %d, \"in\": %lld, \"gflops\": %.2f, \"ns\": %.2f}\n", B,
               rows, (long long)in, gflops, 512.0 / gflops);
    }
    free(w), free(x), free(y);
}

/* One plain read pass over n bytes (n a multiple of 128): GB/s. */
__attribute__((target("avx2"))) static double read_pass(const uint8_t *p, size_t n) {
    __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
    double t0 = wall_s();
    for (size_t i = 0; i < n; i += 128) {
        a0 = _mm256_add_epi64(a0, _mm256_load_si256((const __m256i *)(p + i)));
        a1 = _mm256_add_epi64(a1, _mm256_load_si256((const __m256i *)(p + i + 32)));
        a2 = _mm256_add_epi64(a2, _mm256_load_si256((const __m256i *)(p + i + 64)));
        a3 = _mm256_add_epi64(a3, _mm256_load_si256((const __m256i *)(p + i + 96)));
    }
    double t = wall_s() - t0;
    __m256i a = _mm256_add_epi64(_mm256_add_epi64(a0, a1), _mm256_add_epi64(a2, a3));
    sink = (float)_mm256_extract_epi64(a, 0);
    return (double)n / t / 1e9;
}

static int cmp_double(const void *x, const void *y) {
    double a = *(const double *)x, b = *(const double *)y;
    return (a > b) - (a < b);
}

/* Weight rows per vec_dot_cols call in the -c pass: matmul.c's COLS_ROW_BLOCK. */
#define STREAM_COLS_BLOCK 8

static void bench_stream(enum eng_type t, int64_t in, size_t mib, int rounds, int nc) {
    const struct eng_type_traits *tr = eng_type_traits(t);
    if (!tr || !tr->vec_dot_rows || !can_make(tr, 64) || (nc > 1 && !tr->vec_dot_cols)) return;
    const struct eng_type_traits *vt = eng_type_traits(tr->vec_dot_type);
    size_t wrow = eng_row_size(t, in), arow = eng_row_size(tr->vec_dot_type, in);
    int64_t rows = (int64_t)(mib * 1048576 / wrow) / 64 * 64;
    if (rows < 64) return;
    size_t bytes = (size_t)rows * wrow, map = (bytes + (2u << 20) - 1) / (2u << 20) * (2u << 20);
    uint8_t *w = mmap(NULL, map, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (w == MAP_FAILED) return;
    madvise(w, map, MADV_HUGEPAGE);
    float *x = malloc((size_t)in * sizeof(float)), *v = malloc(64 * ENG_DOT_COLS * sizeof(float));
    size_t astride = (arow + 63) / 64 * 64; /* the NC activation rows, 64-byte aligned each */
    uint8_t *a = aligned_alloc(64, astride * ENG_DOT_COLS);
    /* 64 distinct rows, repeated: the bytes, not the values, matter; x ends as the activations */
    float *f = malloc((size_t)in * 64 * sizeof(float));
    for (int64_t i = 0; i < in * 64; i++) f[i] = frand();
    make_weights(t, f, in, 64, w);
    free(f);
    for (int64_t r = 64; r < rows; r += 64) memcpy(w + (size_t)r * wrow, w, 64 * wrow);
    for (int c = 0; c < nc; c++) {
        for (int64_t i = 0; i < in; i++) x[i] = frand();
        if (vt->from_float)
            vt->from_float(x, a + (size_t)c * astride, in);
        else
            memcpy(a + (size_t)c * astride, x, arow);
    }
    /* an interleaved layout's blocks are whole row groups, as in dot_rows */
    const int blk = STREAM_COLS_BLOCK > tr->row_group ? STREAM_COLS_BLOCK : tr->row_group;
    double *ratio = malloc(sizeof(double) * (size_t)rounds), rd_sum = 0, kn_sum = 0;
    read_pass(w, map / 128 * 128); /* warm-up: pages mapped, TLB entries */
    for (int k = 0; k < rounds; k++) {
        double rd = read_pass(w, bytes / 128 * 128);
        double t0 = wall_s();
        for (int64_t r = 0; r < rows; r += 64) {
            if (nc == 1) {
                tr->vec_dot_rows(in, 64, v, w + (size_t)r * wrow, wrow, a);
                continue;
            }
            for (int rb = 0; rb < 64; rb += blk)
                tr->vec_dot_cols(in, nc, blk, v + rb, 64, w + (size_t)(r + rb) * wrow, wrow, a,
                                 astride);
        }
        double kn = (double)bytes / (wall_s() - t0) / 1e9;
        ratio[k] = kn / rd, rd_sum += rd, kn_sum += kn;
    }
    qsort(ratio, (size_t)rounds, sizeof(double), cmp_double);
    printf("{\"type\": \"%s\", \"in\": %lld, \"stream_mib\": %zu, \"rounds\": %d, "
           "\"cols\": %d, \"read_gbs_mean\": %.2f, \"rows_gbs_mean\": %.2f, "
           "\"ratio_median\": %.3f, \"ratio_min\": %.3f, \"ratio_max\": %.3f}\n",
           tr->name, (long long)in, mib, rounds, nc, rd_sum / rounds, kn_sum / rounds,
           ratio[rounds / 2], ratio[0], ratio[rounds - 1]);
    fflush(stdout);
    free(ratio), free(x), free(v), free(a);
    munmap(w, map);
}

/* Attention of one query head (eng_attn_fn) over n cached fp16 positions, head size hd, with
 * the kernel of each SIMD level up to the active one (x86: avx2, then the AVX-512 levels, whose
 * kernels are the same): ns per position, in cache (one head's keys and values again and again,
 * thread CPU time) and from memory (a 256 MiB cache of heads read one after the other, each once
 * per sweep, wall clock), as decode reads a head's rows for every token. */
static void bench_attn(void) {
    static const int hds[] = {64, 128}, ns[] = {128, 512, 2048};
    const size_t mem_bytes = (size_t)256 << 20;
    uint16_t *kv = malloc(mem_bytes);
    float q[128], att[2048], out[128];
    if (!kv) return;
    for (size_t i = 0; i < mem_bytes / 2; i++) kv[i] = eng_fp32_to_fp16(frand());
    for (int i = 0; i < 128; i++) q[i] = frand();
    for (int s = 0; s < ENG_SIMD_COUNT; s++) {
        if (s == ENG_SIMD_AVX512_GFNI || s > (int)eng_simd_active() || !eng_simd_supported(s))
            continue;
        eng_attn_fn f = eng_attn_kernel_for((enum eng_simd)s);
        if (!f) continue;
        for (size_t hi = 0; hi < sizeof(hds) / sizeof(hds[0]); hi++)
            for (size_t ni = 0; ni < sizeof(ns) / sizeof(ns[0]); ni++) {
                const int hd = hds[hi], n = ns[ni];
                const size_t head = (size_t)n * hd; /* values of one head's keys */
                const float scale = 1.0f / sqrtf((float)hd);
                int reps = 0, per = passes_per_read(2 * (int64_t)head);
                double t0 = cpu_s(), t1;
                do {
                    for (int k = 0; k < per; k++)
                        f(hd, n, q, kv, kv + head, hd, true, scale, att, out);
                    reps += per;
                    t1 = cpu_s();
                } while (t1 - t0 < 0.2);
                const double cache_ns = (t1 - t0) / reps / n * 1e9;
                const size_t n_heads = mem_bytes / 2 / (2 * head);
                double w0 = wall_s();
                int sweeps = 0;
                do {
                    for (size_t h = 0; h < n_heads; h++) {
                        const uint16_t *k = kv + h * 2 * head;
                        f(hd, n, q, k, k + head, hd, true, scale, att, out);
                    }
                    sweeps++;
                } while (wall_s() - w0 < 0.5);
                const double mem_ns = (wall_s() - w0) / ((double)sweeps * n_heads) / n * 1e9;
                sink += out[0];
                printf("{\"attn\": \"%s\", \"hd\": %d, \"n\": %d, \"cache_ns\": %.2f, "
                       "\"memory_ns\": %.2f}\n",
                       eng_simd_name((enum eng_simd)s), hd, n, cache_ns, mem_ns);
                fflush(stdout);
            }
    }
    free(kv);
}

int main(int argc, char **argv) {
    int64_t in = 2048;
    int rows = 64, rounds = 9, nc = 1;
    size_t stream_mib = 0;
    bool attn = false;
    const char *types =
        "f32,f16,bf16,q8_0,q4_0,q4_0x16,q4_1,q5_0,q5_1,iq4_nl,q2_k,q3_k,q4_k,q5_k,q6_k,iq4_xs";
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-t") && i + 1 < argc)
            types = argv[++i];
        else if (!strcmp(argv[i], "-n") && i + 1 < argc)
            in = atoll(argv[++i]);
        else if (!strcmp(argv[i], "-r") && i + 1 < argc)
            rows = atoi(argv[++i]);
        else if (!strcmp(argv[i], "-m") && i + 1 < argc)
            stream_mib = (size_t)atoll(argv[++i]);
        else if (!strcmp(argv[i], "-R") && i + 1 < argc)
            rounds = atoi(argv[++i]);
        else if (!strcmp(argv[i], "-c") && i + 1 < argc)
            nc = atoi(argv[++i]);
        else if (!strcmp(argv[i], "-a"))
            attn = true;
        else {
            fprintf(stderr, "usage: kernels [-t TYPE,...] [-n IN] [-r ROWS] [-m MIB [-R ROUNDS] "
                            "[-c NC]] | -a\n");
            return 2;
        }
    }
    if (in % 256 || rows < 1 || rounds < 1 || nc < 1 || nc > ENG_DOT_COLS) {
        fprintf(stderr, "kernels: -n must be a multiple of 256, -r and -R at least 1, -c 1..%d\n",
                ENG_DOT_COLS);
        return 2;
    }
    openblas_set_num_threads(1);
    if (attn) {
        bench_attn();
        return 0;
    }
    printf("{\"simd\": \"%s\", \"in\": %lld, \"rows\": %d}\n", eng_simd_level(), (long long)in,
           rows);
    char buf[512];
    snprintf(buf, sizeof(buf), "%s", types);
    for (char *tok = strtok(buf, ","); tok; tok = strtok(NULL, ",")) {
        int t = eng_type_from_name(tok);
        if (t < 0) {
            fprintf(stderr, "kernels: unknown type '%s'\n", tok);
            return 2;
        }
        if (stream_mib)
            bench_stream((enum eng_type)t, in, stream_mib, rounds, nc);
        else
            bench_type((enum eng_type)t, in, rows);
    }
    if (!stream_mib) bench_sgemm(in, rows);
    return 0;
}
