/*
 * quants.h — engine-internal: the block layouts of the ggml formats beyond Q8_0 / Q4_0 (those two
 * live in internal.h), the reference traits table, and the SIMD kernel levels with their run-time
 * selection. Shared by types.c, quants.c, the SIMD files (quants_*.c) and the kernel tests.
 *
 * Layouts are the ggml ones byte for byte (GGUF files written by other tools load unchanged).
 * Half-precision fields are stored as raw uint16_t bits. Every block struct has a static assert on
 * its size and says its bits per weight (bpw = 8 * sizeof(block) / elements per block).
 *
 * It does not declare the public traits API (engine.h) nor the matrix products (internal.h).
 */
#ifndef EDGELLM_ENGINE_QUANTS_H
#define EDGELLM_ENGINE_QUANTS_H

#include "internal.h"

/* ---- 32-element blocks ---- */

#define ENG_QK4_1 32
struct eng_block_q4_1 {
    uint16_t d, m;             /* fp16 scale and minimum */
    uint8_t qs[ENG_QK4_1 / 2]; /* nibbles as in q4_0; x = d*q + m */
};
_Static_assert(sizeof(struct eng_block_q4_1) == 20, "q4_1 block: 5.0 bits per weight");

#define ENG_QK5_0 32
struct eng_block_q5_0 {
    uint16_t d;                /* fp16 scale */
    uint8_t qh[4];             /* bit j of this little-endian u32 = 5th bit of element j */
    uint8_t qs[ENG_QK5_0 / 2]; /* low 4 bits, nibbles as in q4_0; x = d*(q-16) */
};
_Static_assert(sizeof(struct eng_block_q5_0) == 22, "q5_0 block: 5.5 bits per weight");

#define ENG_QK5_1 32
struct eng_block_q5_1 {
    uint16_t d, m; /* fp16 scale and minimum */
    uint8_t qh[4];
    uint8_t qs[ENG_QK5_1 / 2]; /* x = d*q + m, q = 5 bits as in q5_0 */
};
_Static_assert(sizeof(struct eng_block_q5_1) == 24, "q5_1 block: 6.0 bits per weight");

#define ENG_QK8_1 32
struct eng_block_q8_1 { /* activations for q4_1 / q5_1 */
    uint16_t d;         /* fp16 scale */
    uint16_t s;         /* fp16 of d * sum(qs) */
    int8_t qs[ENG_QK8_1];
};
_Static_assert(sizeof(struct eng_block_q8_1) == 36, "q8_1 block: 9.0 bits per weight");

#define ENG_QK4_NL 32
struct eng_block_iq4_nl {
    uint16_t d;                 /* fp16 scale */
    uint8_t qs[ENG_QK4_NL / 2]; /* nibbles as in q4_0, index into eng_iq4nl_values; x = d*v[q] */
};
_Static_assert(sizeof(struct eng_block_iq4_nl) == 18, "iq4_nl block: 4.5 bits per weight");

/* The 16 non-linear levels of iq4_nl / iq4_xs. */
extern const int8_t eng_iq4nl_values[16];

/* ---- 256-element super-blocks (k-quants) ---- */

#define ENG_QK_K         256
#define ENG_K_SCALE_SIZE 12

struct eng_block_q2_k {
    uint8_t scales[ENG_QK_K / 16]; /* per 16: low nibble scale, high nibble min */
    uint8_t qs[ENG_QK_K / 4];      /* 2-bit quants */
    uint16_t d;                    /* fp16 super-scale of the scales */
    uint16_t dmin;                 /* fp16 super-scale of the mins */
};
_Static_assert(sizeof(struct eng_block_q2_k) == 84, "q2_k block: 2.625 bits per weight");

struct eng_block_q3_k {
    uint8_t hmask[ENG_QK_K / 8];      /* high bit of each quant */
    uint8_t qs[ENG_QK_K / 4];         /* low 2 bits */
    uint8_t scales[ENG_K_SCALE_SIZE]; /* 16 six-bit scales, stored +32 */
    uint16_t d;                       /* fp16 super-scale */
};
_Static_assert(sizeof(struct eng_block_q3_k) == 110, "q3_k block: 3.4375 bits per weight");

struct eng_block_q4_k {
    uint16_t d;                       /* fp16 super-scale of the scales */
    uint16_t dmin;                    /* fp16 super-scale of the mins */
    uint8_t scales[ENG_K_SCALE_SIZE]; /* 8 six-bit scales and 8 six-bit mins */
    uint8_t qs[ENG_QK_K / 2];         /* 4-bit quants; x = d*sc*q - dmin*m per 32 */
};
_Static_assert(sizeof(struct eng_block_q4_k) == 144, "q4_k block: 4.5 bits per weight");

struct eng_block_q5_k {
    uint16_t d, dmin;
    uint8_t scales[ENG_K_SCALE_SIZE]; /* as q4_k */
    uint8_t qh[ENG_QK_K / 8];         /* 5th bits */
    uint8_t qs[ENG_QK_K / 2];         /* low 4 bits */
};
_Static_assert(sizeof(struct eng_block_q5_k) == 176, "q5_k block: 5.5 bits per weight");

struct eng_block_q6_k {
    uint8_t ql[ENG_QK_K / 2];     /* low 4 bits */
    uint8_t qh[ENG_QK_K / 4];     /* high 2 bits */
    int8_t scales[ENG_QK_K / 16]; /* 8-bit scales per 16 */
    uint16_t d;                   /* fp16 super-scale; x = d*sc*(q-32) */
};
_Static_assert(sizeof(struct eng_block_q6_k) == 210, "q6_k block: 6.5625 bits per weight");

struct eng_block_q8_k { /* activations for the k-quants and iq4_xs */
    float d;            /* f32 scale (not fp16) */
    int8_t qs[ENG_QK_K];
    int16_t bsums[ENG_QK_K / 16]; /* sum of each 16 quants */
};
_Static_assert(sizeof(struct eng_block_q8_k) == 292, "q8_k block: 9.125 bits per weight");

struct eng_block_iq4_xs {
    uint16_t d;                      /* fp16 super-scale */
    uint16_t scales_h;               /* high 2 bits of the 8 six-bit scales */
    uint8_t scales_l[ENG_QK_K / 64]; /* low 4 bits of the scales, two per byte */
    uint8_t qs[ENG_QK_K / 2];        /* per 32: nibbles as in iq4_nl */
};
_Static_assert(sizeof(struct eng_block_iq4_xs) == 136, "iq4_xs block: 4.25 bits per weight");

/* Six-bit scale j (0..7) and min of a q4_k / q5_k scales array. */
static inline void eng_k4_scale_min(int j, const uint8_t *q, uint8_t *sc, uint8_t *m) {
    if (j < 4) {
        *sc = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *sc = (uint8_t)((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
        *m = (uint8_t)((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
    }
}

/* The 16 signed six-bit scales of a q3_k block, already minus 32. */
void eng_q3k_scales(const uint8_t packed[ENG_K_SCALE_SIZE], int8_t out[16]);

/* Round to nearest, ties to even (|x| < 2^22), as the format definitions specify. */
static inline int eng_nearest_int(float x) {
    float v = x + 12582912.f;
    int32_t i;
    __builtin_memcpy(&i, &v, sizeof(i));
    return (i & 0x007fffff) - 0x00400000;
}

/* ---- Q4_0X16: q4_0 rows interleaved in groups of 32, two halves of 16 ----
 * A group of 32 rows of nb blocks keeps its 32 · nb · 18 bytes, laid out block pair by block
 * pair, 1152 bytes each, in the order the kernel reads them, so that it reads one sequential
 * stream and its 64-byte loads stay within cache lines: the scales of the first half's two
 * blocks and of the second's (64 bytes each), then block 1's codes of each half, then block 2's
 * (256 bytes each). A half's block scales are 16 fp16 (row i of the half at 2i), its codes four
 * 64-byte chunks, chunk k holding bytes 4k..4k+3 of every row's qs (row i's at 4i): one 32-bit
 * lane per row, the layout vpdpbusd multiplies with four broadcast activation codes. A row with
 * an odd number of blocks ends with one block alone (both halves' scales, then their codes: 576
 * bytes). The offsets below are half h's block b's within its group. eng_interleave_rows /
 * eng_deinterleave_row convert. */
/* Q8_0X's per-block field c (types.c): d times the block's code sum, or for Q8_0X16 -8 times
 * the sum as an int32. */
static inline void eng_q8_0x_put_sum(float *c, float d, int sum, bool x16) {
    if (x16) {
        const int32_t o = -8 * sum;
        __builtin_memcpy(c, &o, sizeof(o));
    } else {
        *c = d * (float)sum;
    }
}

/* Where group g of a Q8_0X / Q8_0X16 row (types.c) keeps its r blocks (8, fewer in the last
 * group): the scales d[r], the fields c[r], and the blocks' first and last 16 codes, lo[16 r]
 * and hi[16 r]. The converters write a group through this; the kernels read the layout in
 * place. */
struct eng_q8_0x_group {
    float *d, *c;
    int8_t *lo, *hi;
};
static inline struct eng_q8_0x_group eng_q8_0x_group(void *row, int64_t g, int r) {
    float *d = (float *)((uint8_t *)row + 40 * g);
    int8_t *lo = (int8_t *)(d + 2 * r);
    return (struct eng_q8_0x_group){d, d + r, lo, lo + 16 * r};
}

#define ENG_X16_ROWS  16 /* rows of a half: one register's lanes */
#define ENG_X16_GROUP 32 /* rows interleaved together: the type's row_group */
static inline size_t eng_x16_scales_at(int64_t b, int64_t nb, int h) {
    return 1152 * (size_t)(b >> 1) +
           ((b | 1) < nb ? 64 * (size_t)h + 32 * (size_t)(b & 1) : 32 * (size_t)h);
}
static inline size_t eng_x16_codes_at(int64_t b, int64_t nb, int h) {
    return 1152 * (size_t)(b >> 1) +
           ((b | 1) < nb ? 128 + 512 * (size_t)(b & 1) + 256 * (size_t)h : 64 + 256 * (size_t)h);
}

/* ---- reference table ---- */

/* Fills t with the scalar reference kernels of every supported format (core + quants.c). */
void eng_types_init_ref(struct eng_type_traits *t);
/* The reference traits of type t (scalar kernels only), NULL if unsupported. Thread-safe. */
const struct eng_type_traits *eng_type_traits_ref(enum eng_type t);

/* ---- SIMD levels ----
 * A level replaces some table entries with faster kernels that give the same results as the
 * reference (quantizers bit-identical, dot products equal up to float summation order).
 * Levels of one architecture stack: the table is built as ref, then each available level up to
 * the chosen one is installed in order. EDGELLM_SIMD=<name> caps the level (e.g. "scalar"). */
enum eng_simd {
    ENG_SIMD_SCALAR = 0,
    ENG_SIMD_AVX2 = 1,        /* x86-64: AVX2 + FMA + F16C */
    ENG_SIMD_AVX512 = 2,      /* x86-64: AVX-512 F/BW/VL + VNNI, on top of AVX2 */
    ENG_SIMD_AVX512_GFNI = 3, /* x86-64: the AVX-512 kernels built with GFNI as well */
    ENG_SIMD_NEON = 4,        /* aarch64: baseline Advanced SIMD */
    ENG_SIMD_DOTPROD = 5,     /* aarch64: SDOT/UDOT, on top of NEON */
    ENG_SIMD_COUNT = 6,
};

/* The two AVX-512 levels share everything but the nibble split of the 4-bit formats. */
static inline bool eng_simd_is_avx512(enum eng_simd s) {
    return s == ENG_SIMD_AVX512 || s == ENG_SIMD_AVX512_GFNI;
}

const char *eng_simd_name(enum eng_simd s);
/* True if this build has the level and the running CPU (and OS) supports it. */
bool eng_simd_supported(enum eng_simd s);
/* The level the traits table was built with (after the EDGELLM_SIMD cap). */
enum eng_simd eng_simd_active(void);
/* Builds a table at level s (ref + each level of the same architecture up to s). Returns 0, or
 * ENG_EUNSUPPORTED when s is not supported here. Used by the table and by the tests. */
int eng_types_build(struct eng_type_traits *t, enum eng_simd s);

/* ---- prefill tile kernels (gemm.c) ----
 * For r < nr (1..the kernel's r), c < nc (1..its c): y[c*ldy + r] = sum over the n weights of
 * (scale * d) * code * a, where row r's codes are wq + r*n, its scales s8 + r*(n/32)*8 (per 32
 * weights 8 floats: four copies of the first 16's scale, four of the second's), column c's
 * activation codes a + c*a_ld (8-bit, as the weight's vec_dot type quantized them) and their
 * scale per 32 as floats ad + c*(n/32). */
#define ENG_TILE_MAX 4 /* the largest tile side of any kernel */
typedef void (*eng_tile_fn)(int64_t n, int nr, int nc, const int8_t *wq, const float *s8,
                            const int8_t *a, size_t a_ld, const float *ad, float *y, int64_t ldy);
struct eng_tile {
    eng_tile_fn fn;
    int r, c; /* the tile it computes at most: r weight rows × c activation rows */
};
void eng_tile_ref(int64_t n, int nr, int nc, const int8_t *wq, const float *s8, const int8_t *a,
                  size_t a_ld, const float *ad, float *y, int64_t ldy);
void eng_tile_avx2(int64_t n, int nr, int nc, const int8_t *wq, const float *s8, const int8_t *a,
                   size_t a_ld, const float *ad, float *y, int64_t ldy);
void eng_tile_avx512(int64_t n, int nr, int nc, const int8_t *wq, const float *s8, const int8_t *a,
                     size_t a_ld, const float *ad, float *y, int64_t ldy);
/* F16 weight rows (w + r*w_ld) · F32 activation rows (x + c*x_ld) for r < nr, c < nc (<= 4):
 * y[c*ldy + r] (prefill of F16 models on the AVX-512 level; AVX2 machines keep OpenBLAS, whose
 * own kernels measured faster here than a 2 × 4 tile in 16 registers). */
void eng_ftile_f16_avx512(int64_t n, int nr, int nc, const uint16_t *w, size_t w_ld, const float *x,
                          size_t x_ld, float *y, int64_t ldy);

/* The fastest tile kernel for the active SIMD level, and its tile. */
struct eng_tile eng_tile_kernel(void);

/* y += a·x over n floats (attention's weighted sum of values), and its fastest version. */
typedef void (*eng_axpy_fn)(int64_t n, float a, const float *x, float *y);
void eng_axpy_ref(int64_t n, float a, const float *x, float *y);
void eng_axpy_avx2(int64_t n, float a, const float *x, float *y);
eng_axpy_fn eng_axpy_kernel(void);

/* Attention of one query head over n cached positions (attn.c): out[0..hd) = softmax(scale ·
 * q · k_pᵀ) · V with key and value rows at elements p·ld of k and v, which hold floats, or fp16
 * values when f16 (the context's kv_f16); att holds n scores (scratch). Returns the log of the
 * softmax's denominator, log Σ_p e^(scores_p) (taken as max + log Σ e^(score - max)), with which
 * forward.c merges the results of a sequence's cache blocks. The scalar reference, the AVX2 and
 * AVX-512 kernels (NEON's is private to attn.c), and the fastest for the active level. */
typedef float (*eng_attn_fn)(int hd, int n, const float *q, const void *k, const void *v, size_t ld,
                             bool f16, float scale, float *att, float *out);
float eng_attn_ref(int hd, int n, const float *q, const void *k, const void *v, size_t ld, bool f16,
                   float scale, float *att, float *out);
float eng_attn_avx2(int hd, int n, const float *q, const void *k, const void *v, size_t ld,
                    bool f16, float scale, float *att, float *out);
float eng_attn_avx512(int hd, int n, const float *q, const void *k, const void *v, size_t ld,
                      bool f16, float scale, float *att, float *out);
eng_attn_fn eng_attn_kernel(void);
/* The SIMD kernel of level s; NULL for the scalar level (which runs eng_attn_ref). */
eng_attn_fn eng_attn_kernel_for(enum eng_simd s);

/* The per-token vector steps (vec.c): rmsnorm: out = x / sqrt(mean(x²) + eps) · w over n floats
 * (out may alias x); glu: g = silu(g) · u over n floats (SwiGLU); max: the largest of x[0..n)
 * that is not NaN (-inf when there is none), copying x to dst on the way unless dst is NULL
 * (the sampler's pass over the logits). The scalar references, the AVX2 versions (NEON's are
 * private to vec.c), the versions of level s (NULL members for the scalar level) and those for
 * the active level. */
typedef void (*eng_rmsnorm_fn)(float *out, const float *x, const float *w, int n, float eps);
typedef void (*eng_glu_fn)(float *g, const float *u, int64_t n);
typedef float (*eng_max_fn)(float *dst, const float *x, int64_t n);
struct eng_vec_ops {
    eng_rmsnorm_fn rmsnorm;
    eng_glu_fn glu;
    eng_max_fn max;
};
void eng_rmsnorm_ref(float *out, const float *x, const float *w, int n, float eps);
void eng_glu_ref(float *g, const float *u, int64_t n);
float eng_max_ref(float *dst, const float *x, int64_t n);
void eng_rmsnorm_avx2(float *out, const float *x, const float *w, int n, float eps);
void eng_glu_avx2(float *g, const float *u, int64_t n);
float eng_max_avx2(float *dst, const float *x, int64_t n);
struct eng_vec_ops eng_vec_ops_for(enum eng_simd s);
struct eng_vec_ops eng_vec_ops(void);

/* Installers, one per level, defined in the architecture files (absent on other builds). */
void eng_simd_install_avx2(struct eng_type_traits *t);
void eng_simd_install_avx512(struct eng_type_traits *t);
void eng_simd_install_avx512_gfni(struct eng_type_traits *t);
void eng_simd_install_neon(struct eng_type_traits *t);
void eng_simd_install_dotprod(struct eng_type_traits *t);

/* ---- kernel entry points from one column template (every SIMD file) ----
 * ENG_COLS_FNS(dot, rows, cols, tmpl) defines from an always-inline column template
 * tmpl(NC, n, s, s_stride, w, a, a_stride) (NC activation rows per pass over a weight row):
 * dot, the vec_dot (NC = 1); rows, its vec_dot_rows (the one-row kernel inlined into the loop
 * over the rows by flatten, so that its setup is hoisted out of it); cols, the vec_dot_cols,
 * up to four columns per pass. ENG_COLS2_FNS is the same with at most two columns per pass (four
 * as two passes, the weight row in L1 for the second) for templates whose four columns would
 * not fit the registers. Names are whole (the NEON files add a suffix per level). */
#define ENG_ROWS_FN(dot, rows)                                                                     \
    __attribute__((flatten)) static void rows(int64_t n, int64_t nr, float *s, const void *vw,     \
                                              size_t w_stride, const void *va) {                   \
        for (int64_t r = 0; r < nr; r++) /* hot loop */                                            \
            dot(n, s + r, (const uint8_t *)vw + (size_t)r * w_stride, va);                         \
    }
#define ENG_COL1_FNS(dot, rows, tmpl)                                                              \
    static void dot(int64_t n, float *s, const void *vw, const void *va) {                         \
        tmpl(1, n, s, 0, vw, va, 0);                                                               \
    }                                                                                              \
    ENG_ROWS_FN(dot, rows)
/* NC columns of tmpl over the nr rows of a vec_dot_cols call. */
#define ENG_COLS_ROWS(tmpl, NC)                                                                    \
    for (int64_t r = 0; r < nr; r++) /* hot loop */                                                \
    tmpl(NC, n, s + r, s_stride, (const void *)((const uint8_t *)vw + (size_t)r * w_stride), va,   \
         a_stride)
#define ENG_COLS_SIG(cols)                                                                         \
    static void cols(int64_t n, int nc, int64_t nr, float *s, size_t s_stride, const void *vw,     \
                     size_t w_stride, const void *va, size_t a_stride)
#define ENG_COLS_FNS(dot, rows, cols, tmpl)                                                        \
    ENG_COL1_FNS(dot, rows, tmpl)                                                                  \
    ENG_COLS_SIG(cols) {                                                                           \
        switch (nc) {                                                                              \
        case 1:                                                                                    \
            ENG_COLS_ROWS(tmpl, 1);                                                                \
            return;                                                                                \
        case 2:                                                                                    \
            ENG_COLS_ROWS(tmpl, 2);                                                                \
            return;                                                                                \
        case 3:                                                                                    \
            ENG_COLS_ROWS(tmpl, 3);                                                                \
            return;                                                                                \
        default:                                                                                   \
            ENG_COLS_ROWS(tmpl, 4);                                                                \
        }                                                                                          \
    }
#define ENG_COLS2_FNS(dot, rows, cols, tmpl)                                                       \
    ENG_COL1_FNS(dot, rows, tmpl)                                                                  \
    ENG_COLS_SIG(cols) {                                                                           \
        for (int64_t r = 0; r < nr; r++) /* hot loop */                                            \
            for (int c = 0; c < nc; c += 2) {                                                      \
                const void *wr = (const uint8_t *)vw + (size_t)r * w_stride;                       \
                const void *ac = (const uint8_t *)va + (size_t)c * a_stride;                       \
                if (nc - c >= 2)                                                                   \
                    tmpl(2, n, s + (size_t)c * s_stride + r, s_stride, wr, ac, a_stride);          \
                else                                                                               \
                    tmpl(1, n, s + (size_t)c * s_stride + r, s_stride, wr, ac, a_stride);          \
            }                                                                                      \
    }

#endif
