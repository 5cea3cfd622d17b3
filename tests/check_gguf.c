/*
 * check_gguf.c — the GGUF reader and writer: every metadata type (nested arrays included) round
 * trips exactly through write → read → write → read, v2 and v3, alignment is honoured, and
 * hostile headers (huge counts, lengths, offsets, overflowing shapes, duplicate names) are refused
 * with a message instead of crashing or allocating unbounded memory.
 */
#include "check_pagecache.h"
#include "engine.h"

#include <check.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

static char tmpdir[64];

static void setup(void) {
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/check_gguf.XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

/* page_cache's folder (check_pagecache.h). */
static char cache_dir[64];
static void cache_dir_make(void) {
    wd_dir_make(cache_dir, sizeof(cache_dir), "check_gguf_cache");
}
static void cache_dir_remove(void) {
    wd_dir_remove(cache_dir);
}

static void teardown(void) {
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
    if (system(cmd) != 0) fprintf(stderr, "cleanup of %s failed\n", tmpdir);
}

static void path_in_tmp(char *out, size_t n, const char *name) {
    snprintf(out, n, "%s/%s", tmpdir, name);
}

/* Writes a file with every metadata type and a few tensors. */
static void write_sample(const char *path, uint32_t version, uint32_t alignment) {
    struct eng_gguf_writer *w = eng_gguf_writer_new();
    ck_assert_ptr_nonnull(w);
    ck_assert_int_eq(eng_gguf_writer_set_version(w, version), 0);
    if (alignment) ck_assert_int_eq(eng_gguf_set_u32(w, "general.alignment", alignment), 0);
    struct eng_gguf_value v;
    const struct {
        const char *key;
        enum eng_gguf_vtype t;
        uint64_t u;
        int64_t i;
        double f;
    } scalars[] = {
        {"t.u8", ENG_GGUF_U8, 255, 0, 0},           {"t.i8", ENG_GGUF_I8, 0, -128, 0},
        {"t.u16", ENG_GGUF_U16, 65535, 0, 0},       {"t.i16", ENG_GGUF_I16, 0, -32768, 0},
        {"t.u32", ENG_GGUF_U32, 4294967295u, 0, 0}, {"t.i32", ENG_GGUF_I32, 0, -2147483647 - 1, 0},
        {"t.f32", ENG_GGUF_F32, 0, 0, 0.1f},        {"t.bool", ENG_GGUF_BOOL, 1, 0, 0},
        {"t.u64", ENG_GGUF_U64, UINT64_MAX, 0, 0},  {"t.i64", ENG_GGUF_I64, 0, INT64_MIN, 0},
        {"t.f64", ENG_GGUF_F64, 0, 0, 1e-300},
    };
    for (size_t k = 0; k < sizeof(scalars) / sizeof(scalars[0]); k++) {
        memset(&v, 0, sizeof(v));
        v.type = scalars[k].t;
        if (v.type == ENG_GGUF_F32 || v.type == ENG_GGUF_F64)
            v.v.f64 = scalars[k].f;
        else if (scalars[k].i)
            v.v.i64 = scalars[k].i;
        else
            v.v.u64 = scalars[k].u;
        ck_assert_int_eq(eng_gguf_set_value(w, scalars[k].key, &v), 0);
    }
    ck_assert_int_eq(eng_gguf_set_str(w, "t.str", "h\xc3\xa9llo \xf0\x9f\x99\x82"), 0);
    /* a string with an embedded NUL */
    memset(&v, 0, sizeof(v));
    v.type = ENG_GGUF_STRING;
    v.v.str.s = "a\0b";
    v.v.str.len = 3;
    ck_assert_int_eq(eng_gguf_set_value(w, "t.nul", &v), 0);
    float fa[3] = {1.5f, -2.0f, 3.25f};
    ck_assert_int_eq(eng_gguf_set_arr(w, "t.arr_f32", ENG_GGUF_F32, fa, 3), 0);
    ck_assert_int_eq(eng_gguf_set_arr(w, "t.arr_empty", ENG_GGUF_I32, NULL, 0), 0);
    const char *sa[] = {"<unk>", "", "\xe2\x96\x81the"};
    ck_assert_int_eq(eng_gguf_set_arr_str(w, "t.arr_str", sa, 3), 0);
    /* nested: [[1,2],[3]] of u16, and [["x"]] */
    uint16_t n1[2] = {1, 2}, n2[1] = {3};
    struct eng_gguf_value inner[2] = {{.type = ENG_GGUF_ARRAY}, {.type = ENG_GGUF_ARRAY}};
    inner[0].v.arr.elem_type = ENG_GGUF_U16;
    inner[0].v.arr.n = 2;
    inner[0].v.arr.data = n1;
    inner[1].v.arr.elem_type = ENG_GGUF_U16;
    inner[1].v.arr.n = 1;
    inner[1].v.arr.data = n2;
    memset(&v, 0, sizeof(v));
    v.type = ENG_GGUF_ARRAY;
    v.v.arr.elem_type = ENG_GGUF_ARRAY;
    v.v.arr.n = 2;
    v.v.arr.data = inner;
    ck_assert_int_eq(eng_gguf_set_value(w, "t.nested", &v), 0);

    static float t0[64];
    static uint16_t t1[2 * 32];
    for (int i = 0; i < 64; i++) t0[i] = (float)i * 0.5f;
    for (int i = 0; i < 64; i++) t1[i] = eng_fp32_to_fp16((float)i);
    int64_t ne0[1] = {64}, ne1[2] = {32, 2}, ne2[3] = {4, 2, 3};
    ck_assert_int_eq(eng_gguf_add_tensor(w, "a.weight", ENG_TYPE_F32, 1, ne0, t0), 0);
    ck_assert_int_eq(eng_gguf_add_tensor(w, "b.weight", ENG_TYPE_F16, 2, ne1, t1), 0);
    ck_assert_int_eq(eng_gguf_add_tensor(w, "zeros", ENG_TYPE_F32, 3, ne2, NULL), 0);
    ck_assert_int_ne(eng_gguf_add_tensor(w, "a.weight", ENG_TYPE_F32, 1, ne0, t0), 0);
    ck_assert_int_eq(eng_gguf_writer_write(w, path), 0);
    eng_gguf_writer_free(w);
}

static bool value_equal(const struct eng_gguf_value *a, const struct eng_gguf_value *b) {
    if (a->type != b->type) return false;
    switch (a->type) {
    case ENG_GGUF_STRING:
        return a->v.str.len == b->v.str.len && !memcmp(a->v.str.s, b->v.str.s, a->v.str.len);
    case ENG_GGUF_ARRAY: {
        if (a->v.arr.elem_type != b->v.arr.elem_type || a->v.arr.n != b->v.arr.n) return false;
        size_t es = eng_gguf_vtype_size(a->v.arr.elem_type);
        if (es) return !a->v.arr.n || !memcmp(a->v.arr.data, b->v.arr.data, es * a->v.arr.n);
        for (uint64_t i = 0; i < a->v.arr.n; i++) {
            if (a->v.arr.elem_type == ENG_GGUF_STRING) {
                const struct eng_gguf_str *x = &((const struct eng_gguf_str *)a->v.arr.data)[i];
                const struct eng_gguf_str *y = &((const struct eng_gguf_str *)b->v.arr.data)[i];
                if (x->len != y->len || memcmp(x->s, y->s, x->len)) return false;
            } else if (!value_equal(&((const struct eng_gguf_value *)a->v.arr.data)[i],
                                    &((const struct eng_gguf_value *)b->v.arr.data)[i])) {
                return false;
            }
        }
        return true;
    }
    case ENG_GGUF_F32:
    case ENG_GGUF_F64:
        return a->v.f64 == b->v.f64;
    default:
        return a->v.u64 == b->v.u64;
    }
}

/* Copies every key and tensor of g into a new file. */
static void copy_file(const struct eng_gguf *g, const char *path) {
    struct eng_gguf_writer *w = eng_gguf_writer_new();
    ck_assert_int_eq(eng_gguf_writer_set_version(w, eng_gguf_version(g)), 0);
    for (int64_t i = 0; i < eng_gguf_n_kv(g); i++) {
        const struct eng_gguf_kv *kv = eng_gguf_kv_at(g, i);
        ck_assert_int_eq(eng_gguf_set_value(w, kv->key.s, &kv->val), 0);
    }
    for (int64_t i = 0; i < eng_gguf_n_tensors(g); i++) {
        const struct eng_tensor *t = eng_gguf_tensor_at(g, i);
        ck_assert_int_eq(eng_gguf_add_tensor(w, t->name, t->type, t->n_dims, t->ne, t->data), 0);
    }
    ck_assert_int_eq(eng_gguf_writer_write(w, path), 0);
    eng_gguf_writer_free(w);
}

static void *slurp(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    ck_assert_ptr_nonnull(f);
    fseek(f, 0, SEEK_END);
    *n = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    void *p = malloc(*n ? *n : 1);
    ck_assert_uint_eq(fread(p, 1, *n, f), *n);
    fclose(f);
    return p;
}

static void check_roundtrip(uint32_t version, uint32_t alignment) {
    char a[128], b[128];
    path_in_tmp(a, sizeof(a), "a.gguf");
    path_in_tmp(b, sizeof(b), "b.gguf");
    write_sample(a, version, alignment);
    struct eng_gguf *ga = eng_gguf_open(a);
    ck_assert_msg(ga != NULL, "%s", eng_last_error());
    ck_assert_uint_eq(eng_gguf_version(ga), version);
    ck_assert_uint_eq(eng_gguf_alignment(ga), alignment ? alignment : 32);
    ck_assert_uint_eq(eng_gguf_data_offset(ga) % eng_gguf_alignment(ga), 0);
    copy_file(ga, b);
    struct eng_gguf *gb = eng_gguf_open(b);
    ck_assert_msg(gb != NULL, "%s", eng_last_error());
    ck_assert_int_eq(eng_gguf_n_kv(ga), eng_gguf_n_kv(gb));
    for (int64_t i = 0; i < eng_gguf_n_kv(ga); i++) {
        const struct eng_gguf_kv *x = eng_gguf_kv_at(ga, i), *y = eng_gguf_kv_at(gb, i);
        ck_assert_str_eq(x->key.s, y->key.s);
        ck_assert_msg(value_equal(&x->val, &y->val), "value of %s differs", x->key.s);
    }
    ck_assert_int_eq(eng_gguf_n_tensors(ga), 3);
    ck_assert_int_eq(eng_gguf_n_tensors(ga), eng_gguf_n_tensors(gb));
    for (int64_t i = 0; i < eng_gguf_n_tensors(ga); i++) {
        const struct eng_tensor *x = eng_gguf_tensor_at(ga, i), *y = eng_gguf_tensor_at(gb, i);
        ck_assert_str_eq(x->name, y->name);
        ck_assert_int_eq(x->type, y->type);
        ck_assert_int_eq(x->n_dims, y->n_dims);
        for (int d = 0; d < 4; d++) ck_assert_int_eq(x->ne[d], y->ne[d]);
        ck_assert_uint_eq(x->nbytes, y->nbytes);
        ck_assert_int_eq(memcmp(x->data, y->data, x->nbytes), 0);
        ck_assert_uint_eq((uintptr_t)x->data % eng_gguf_alignment(ga), 0);
    }
    /* Writing is deterministic: the copy is byte-identical to the original. */
    size_t na, nb;
    void *pa = slurp(a, &na), *pb = slurp(b, &nb);
    ck_assert_uint_eq(na, nb);
    ck_assert_int_eq(memcmp(pa, pb, na), 0);
    free(pa);
    free(pb);

    /* Typed getters */
    uint32_t u32;
    int64_t i64;
    float f32;
    bool bl;
    ck_assert_int_eq(eng_gguf_get_u32(ga, "t.u32", &u32), 0);
    ck_assert_uint_eq(u32, 4294967295u);
    ck_assert_int_eq(eng_gguf_get_u32(ga, "t.u8", &u32), 0);
    ck_assert_uint_eq(u32, 255);
    ck_assert_int_eq(eng_gguf_get_u32(ga, "t.i8", &u32), ENG_EFORMAT); /* negative */
    ck_assert_int_eq(eng_gguf_get_i64(ga, "t.i64", &i64), 0);
    ck_assert(i64 == INT64_MIN);
    ck_assert_int_eq(eng_gguf_get_i64(ga, "t.u64", &i64), ENG_EFORMAT); /* does not fit */
    ck_assert_int_eq(eng_gguf_get_f32(ga, "t.f32", &f32), 0);
    ck_assert(f32 == 0.1f);
    ck_assert_int_eq(eng_gguf_get_bool(ga, "t.bool", &bl), 0);
    ck_assert(bl);
    ck_assert_int_eq(eng_gguf_get_u32(ga, "missing", &u32), ENG_ENOTFOUND);
    ck_assert_int_eq(eng_gguf_get_u32(ga, "t.str", &u32), ENG_EFORMAT);
    ck_assert_str_eq(eng_gguf_get_str(ga, "t.str"), "h\xc3\xa9llo \xf0\x9f\x99\x82");
    const void *arr;
    ck_assert_int_eq(eng_gguf_get_arr(ga, "t.arr_str", ENG_GGUF_STRING, &arr), 3);
    ck_assert_str_eq(((const struct eng_gguf_str *)arr)[2].s, "\xe2\x96\x81the");
    ck_assert_int_eq(eng_gguf_get_arr(ga, "t.arr_str", ENG_GGUF_F32, &arr), -1);
    ck_assert_int_eq(eng_gguf_get_arr(ga, "t.arr_empty", ENG_GGUF_I32, &arr), 0);
    ck_assert_ptr_nonnull(eng_gguf_find_tensor(ga, "b.weight"));
    ck_assert_ptr_null(eng_gguf_find_tensor(ga, "c.weight"));
    const struct eng_tensor *tb = eng_gguf_find_tensor(ga, "b.weight");
    ck_assert(eng_fp16_to_fp32(((const uint16_t *)tb->data)[63]) == 63.0f);
    eng_gguf_close(ga);
    eng_gguf_close(gb);
}

START_TEST(roundtrip_v3) {
    check_roundtrip(3, 0);
}
END_TEST

START_TEST(roundtrip_v2_align64) {
    check_roundtrip(2, 64);
}
END_TEST

/* ---- hostile bytes ---- */

struct buf {
    uint8_t b[4096];
    size_t n;
};

static void b_put(struct buf *b, const void *p, size_t n) {
    ck_assert(b->n + n <= sizeof(b->b));
    memcpy(b->b + b->n, p, n);
    b->n += n;
}
static void b_u32(struct buf *b, uint32_t v) {
    b_put(b, &v, 4);
}
static void b_u64(struct buf *b, uint64_t v) {
    b_put(b, &v, 8);
}
static void b_str(struct buf *b, const char *s) {
    b_u64(b, strlen(s));
    b_put(b, s, strlen(s));
}

static void header(struct buf *b, uint32_t version, uint64_t n_tensors, uint64_t n_kv) {
    b->n = 0;
    b_put(b, "GGUF", 4);
    b_u32(b, version);
    b_u64(b, n_tensors);
    b_u64(b, n_kv);
}

/* Opens the buffer and expects a refusal whose message contains `want`. */
static void expect_refused(const struct buf *b, const char *want) {
    struct eng_gguf *g = eng_gguf_open_memory(b->b, b->n, "hostile.gguf");
    ck_assert_msg(g == NULL, "hostile input accepted (expected: %s)", want);
    ck_assert_msg(strstr(eng_last_error(), want) != NULL, "message '%s' lacks '%s'",
                  eng_last_error(), want);
    ck_assert_msg(strstr(eng_last_error(), "hostile.gguf") != NULL, "message names no file");
}

START_TEST(hostile_headers) {
    struct buf b;
    b.n = 0;
    b_put(&b, "GGU", 3);
    expect_refused(&b, "truncated");
    header(&b, 3, 0, 0);
    memcpy(b.b, "GGML", 4);
    expect_refused(&b, "not a GGUF");
    header(&b, 1, 0, 0);
    expect_refused(&b, "version 1");
    header(&b, 0x03000000, 0, 0);
    expect_refused(&b, "big-endian");
    header(&b, 3, 0, UINT64_MAX);
    expect_refused(&b, "metadata entries");
    header(&b, 3, UINT64_MAX, 0);
    expect_refused(&b, "tensors");
    header(&b, 3, 1u << 30, 0);
    expect_refused(&b, "tensors");

    /* string length far beyond the file */
    header(&b, 3, 0, 1);
    b_u64(&b, 1ull << 40);
    b_put(&b, "k", 1);
    b_u32(&b, ENG_GGUF_U8);
    b_put(&b, "x", 1);
    expect_refused(&b, "absurd length");
    header(&b, 3, 0, 1);
    b_u64(&b, 1000);
    b_put(&b, "key?xxxxxxxxxxx", 15);
    expect_refused(&b, "truncated");

    /* unknown value type, array of absurd count, deep nesting, bad bool */
    header(&b, 3, 0, 1);
    b_str(&b, "k");
    b_u32(&b, 13);
    b_u64(&b, 0);
    expect_refused(&b, "unknown value type");
    header(&b, 3, 0, 1);
    b_str(&b, "k");
    b_u32(&b, ENG_GGUF_ARRAY);
    b_u32(&b, ENG_GGUF_U64);
    b_u64(&b, 1ull << 60);
    expect_refused(&b, "exceeds the file");
    header(&b, 3, 0, 1);
    b_str(&b, "k");
    b_u32(&b, ENG_GGUF_ARRAY);
    b_u32(&b, ENG_GGUF_STRING);
    b_u64(&b, 2);
    b_str(&b, "ok");
    b_u64(&b, 1ull << 50);
    expect_refused(&b, "absurd length");
    header(&b, 3, 0, 1);
    b_str(&b, "k");
    b_u32(&b, ENG_GGUF_ARRAY);
    for (int d = 0; d < 20; d++) {
        b_u32(&b, ENG_GGUF_ARRAY);
        b_u64(&b, 1);
    }
    b_u32(&b, ENG_GGUF_U8);
    b_u64(&b, 0);
    for (int i = 0; i < 300; i++) b_put(&b, "\0", 1);
    expect_refused(&b, "nested deeper");
    header(&b, 3, 0, 1);
    b_str(&b, "k");
    b_u32(&b, ENG_GGUF_BOOL);
    b_put(&b, "\x07", 1);
    expect_refused(&b, "bool");
    header(&b, 3, 0, 2);
    b_str(&b, "k");
    b_u32(&b, ENG_GGUF_U8);
    b_put(&b, "\x01", 1);
    b_str(&b, "k");
    b_u32(&b, ENG_GGUF_U8);
    b_put(&b, "\x01", 1);
    expect_refused(&b, "twice");
    header(&b, 3, 0, 1);
    b_str(&b, "general.alignment");
    b_u32(&b, ENG_GGUF_U32);
    b_u32(&b, 3);
    expect_refused(&b, "alignment");
}
END_TEST

/* One tensor info with the given fields, then padding and `data` bytes of data. */
static void one_tensor(struct buf *b, const char *name, uint32_t n_dims, const uint64_t *ne,
                       uint32_t type, uint64_t offset, size_t data) {
    header(b, 3, 1, 0);
    b_str(b, name);
    b_u32(b, n_dims);
    for (uint32_t d = 0; d < n_dims; d++) b_u64(b, ne[d]);
    b_u32(b, type);
    b_u64(b, offset);
    while (b->n % 32) b_put(b, "\0", 1);
    for (size_t i = 0; i < data; i++) b_put(b, "\0", 1);
}

START_TEST(hostile_tensors) {
    struct buf b;
    uint64_t ne[5] = {32, 2, 1, 1, 1};
    one_tensor(&b, "t", 2, ne, ENG_TYPE_F32, 0, 256);
    struct eng_gguf *g = eng_gguf_open_memory(b.b, b.n, "ok.gguf");
    ck_assert_msg(g != NULL, "%s", eng_last_error());
    eng_gguf_close(g);

    one_tensor(&b, "t", 2, ne, ENG_TYPE_F32, 0, 255);
    expect_refused(&b, "past the end");
    one_tensor(&b, "t", 2, ne, ENG_TYPE_F32, 32, 256);
    expect_refused(&b, "past the end");
    one_tensor(&b, "t", 2, ne, ENG_TYPE_F32, 4, 256);
    expect_refused(&b, "not aligned");
    one_tensor(&b, "t", 2, ne, ENG_TYPE_F32, UINT64_MAX - 31, 256);
    expect_refused(&b, "past the end");
    one_tensor(&b, "t", 5, ne, ENG_TYPE_F32, 0, 256);
    expect_refused(&b, "dimensions");
    one_tensor(&b, "t", 0, ne, ENG_TYPE_F32, 0, 256);
    expect_refused(&b, "dimensions");
    one_tensor(&b, "t", 2, ne, 999, 0, 256);
    expect_refused(&b, "unknown type");
    uint64_t odd[2] = {33, 1};
    one_tensor(&b, "t", 2, odd, ENG_TYPE_Q8_0, 0, 256);
    expect_refused(&b, "block size");
    uint64_t huge[4] = {1ull << 32, 1ull << 32, 1ull << 32, 1};
    one_tensor(&b, "t", 3, huge, ENG_TYPE_F32, 0, 64);
    expect_refused(&b, "overflowing");
    uint64_t big[2] = {1ull << 40, 1};
    one_tensor(&b, "t", 2, big, ENG_TYPE_F32, 0, 64);
    expect_refused(&b, "past the end");
    one_tensor(&b, "", 2, ne, ENG_TYPE_F32, 0, 256);
    expect_refused(&b, "name");

    /* duplicate tensor names */
    header(&b, 3, 2, 0);
    for (int i = 0; i < 2; i++) {
        b_str(&b, "dup");
        b_u32(&b, 1);
        b_u64(&b, 8);
        b_u32(&b, ENG_TYPE_F32);
        b_u64(&b, 0);
    }
    while (b.n % 32) b_put(&b, "\0", 1);
    for (int i = 0; i < 32; i++) b_put(&b, "\0", 1);
    expect_refused(&b, "twice");
}
END_TEST

/* Every prefix of a valid file is refused cleanly (truncation at any byte). */
START_TEST(every_truncation) {
    char a[128];
    path_in_tmp(a, sizeof(a), "t.gguf");
    write_sample(a, 3, 0);
    size_t n;
    uint8_t *p = slurp(a, &n);
    for (size_t k = 0; k < n; k++) {
        /* a private copy of exactly k bytes, so ASan sees any read past it */
        uint8_t *q = malloc(k ? k : 1);
        memcpy(q, p, k);
        struct eng_gguf *g = eng_gguf_open_memory(q, k, "trunc.gguf");
        ck_assert_msg(g == NULL, "prefix of %zu / %zu bytes accepted", k, n);
        ck_assert(strlen(eng_last_error()) > 0);
        free(q);
    }
    free(p);
}
END_TEST

START_TEST(writer_atomic) {
    char a[128];
    path_in_tmp(a, sizeof(a), "missing-dir/x.gguf");
    struct eng_gguf_writer *w = eng_gguf_writer_new();
    ck_assert_int_eq(eng_gguf_writer_write(w, a), ENG_EIO);
    ck_assert(strstr(eng_last_error(), "missing-dir/x.gguf") != NULL);
    eng_gguf_writer_free(w);
    /* a failed write leaves no temporary file behind */
    char cmd[256];
    snprintf(cmd, sizeof(cmd), "test -z \"$(ls -A %s)\"", tmpdir);
    ck_assert_int_eq(system(cmd), 0);
    ck_assert_ptr_null(eng_gguf_open("/nonexistent/file.gguf"));
    ck_assert(strstr(eng_last_error(), "/nonexistent/file.gguf") != NULL);
}
END_TEST

/* begin / put / finish writes the same bytes as write; an incomplete stream leaves nothing. */
START_TEST(writer_streaming) {
    char a[128], b[128], c[128];
    path_in_tmp(a, sizeof(a), "a.gguf");
    path_in_tmp(b, sizeof(b), "b.gguf");
    path_in_tmp(c, sizeof(c), "c.gguf");
    write_sample(a, 3, 64);
    struct eng_gguf *g = eng_gguf_open(a);
    ck_assert_ptr_nonnull(g);
    struct eng_gguf_writer *w = eng_gguf_writer_new();
    for (int64_t i = 0; i < eng_gguf_n_kv(g); i++)
        ck_assert_int_eq(
            eng_gguf_set_value(w, eng_gguf_kv_at(g, i)->key.s, &eng_gguf_kv_at(g, i)->val), 0);
    for (int64_t i = 0; i < eng_gguf_n_tensors(g); i++) {
        const struct eng_tensor *t = eng_gguf_tensor_at(g, i);
        ck_assert_int_eq(eng_gguf_add_tensor(w, t->name, t->type, t->n_dims, t->ne, NULL), 0);
    }
    ck_assert_int_eq(eng_gguf_writer_begin(w, b), 0);
    int64_t ne[1] = {32};
    ck_assert_int_eq(eng_gguf_add_tensor(w, "late", ENG_TYPE_F32, 1, ne, NULL), ENG_EINVAL);
    for (int64_t i = 0; i < eng_gguf_n_tensors(g); i++)
        ck_assert_int_eq(eng_gguf_writer_put(w, eng_gguf_tensor_at(g, i)->data), 0);
    ck_assert_int_eq(eng_gguf_writer_put(w, NULL), ENG_EINVAL); /* one too many */
    eng_gguf_writer_free(w);
    size_t na, nb;
    void *pa = slurp(a, &na);
    ck_assert_int_eq(access(b, F_OK), -1); /* the failed stream left nothing */

    w = eng_gguf_writer_new();
    for (int64_t i = 0; i < eng_gguf_n_kv(g); i++)
        ck_assert_int_eq(
            eng_gguf_set_value(w, eng_gguf_kv_at(g, i)->key.s, &eng_gguf_kv_at(g, i)->val), 0);
    for (int64_t i = 0; i < eng_gguf_n_tensors(g); i++) {
        const struct eng_tensor *t = eng_gguf_tensor_at(g, i);
        ck_assert_int_eq(eng_gguf_add_tensor(w, t->name, t->type, t->n_dims, t->ne, NULL), 0);
    }
    ck_assert_int_eq(eng_gguf_writer_begin(w, b), 0);
    for (int64_t i = 0; i < eng_gguf_n_tensors(g); i++)
        ck_assert_int_eq(eng_gguf_writer_put(w, eng_gguf_tensor_at(g, i)->data), 0);
    ck_assert_int_eq(eng_gguf_writer_finish(w), 0);
    void *pb = slurp(b, &nb);
    ck_assert_uint_eq(na, nb);
    ck_assert_int_eq(memcmp(pa, pb, na), 0);

    /* finish before every tensor was written: error, nothing at the path */
    ck_assert_int_eq(eng_gguf_writer_begin(w, c), 0);
    ck_assert_int_eq(eng_gguf_writer_put(w, eng_gguf_tensor_at(g, 0)->data), 0);
    ck_assert_int_eq(eng_gguf_writer_finish(w), ENG_EINVAL);
    ck_assert_int_eq(access(c, F_OK), -1);
    char cmd[256];
    snprintf(cmd, sizeof(cmd), "test $(ls -A %s | wc -l) -eq 2", tmpdir);
    ck_assert_int_eq(system(cmd), 0); /* a.gguf and b.gguf, no temporaries */
    eng_gguf_writer_free(w);
    eng_gguf_close(g);
    free(pa);
    free(pb);
}
END_TEST

/* The VmFlags line of the mapping in /proc/self/smaps that contains p ("" when none). */
static void vm_flags_of(const void *p, char *out, size_t n) {
    out[0] = 0;
    FILE *f = fopen("/proc/self/smaps", "r");
    ck_assert_ptr_nonnull(f);
    char line[512];
    bool in = false;
    while (fgets(line, sizeof(line), f)) {
        unsigned long lo, hi;
        if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2) /* a mapping's first line */
            in = (uintptr_t)p >= lo && (uintptr_t)p < hi;
        else if (in && !strncmp(line, "VmFlags:", 8)) {
            snprintf(out, n, "%s", line + 8);
            break;
        }
    }
    fclose(f);
}

/* A written model leaves the page cache (its folios would be the size of the writes), and the
 * reader maps a model with huge-page advice (smaps VmFlags "hg"), so that the weights come back
 * in 2 MiB folios mapped by one entry each. The file is written in the working directory: on a
 * tmpfs /tmp pages cannot leave the page cache. */
START_TEST(page_cache) {
    char path[96];
    snprintf(path, sizeof(path), "%s/m.gguf", cache_dir);
    enum { N = 1 << 20 };
    float *x = malloc(N * sizeof(float));
    ck_assert_ptr_nonnull(x);
    for (int i = 0; i < N; i++) x[i] = (float)i;
    struct eng_gguf_writer *w = eng_gguf_writer_new();
    int64_t ne[2] = {1024, N / 1024};
    ck_assert_int_eq(eng_gguf_add_tensor(w, "w", ENG_TYPE_F32, 2, ne, x), 0);
    ck_assert_int_eq(eng_gguf_writer_write(w, path), 0);
    eng_gguf_writer_free(w);

    size_t pages, resident = cached_pages(path, &pages, false);
    ck_assert_msg(resident == 0, "%zu of %zu pages of the written file still cached", resident,
                  pages);

    struct eng_gguf *g = eng_gguf_open(path);
    ck_assert_ptr_nonnull(g);
    const struct eng_tensor *t = eng_gguf_find_tensor(g, "w");
    ck_assert_ptr_nonnull(t);
    ck_assert(((const float *)t->data)[N - 1] == (float)(N - 1));
    char flags[512];
    vm_flags_of(t->data, flags, sizeof(flags));
    ck_assert_msg(strstr(flags, " hg") != NULL, "weights mapped without huge-page advice: %s",
                  flags);
    eng_gguf_close(g);
    free(x);
    ck_assert_int_eq(unlink(path), 0);
}
END_TEST

Suite *gguf_suite(void) {
    Suite *s = suite_create("gguf");
    TCase *tc = tcase_create("gguf");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_unchecked_fixture(tc, cache_dir_make, cache_dir_remove);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, roundtrip_v3);
    tcase_add_test(tc, roundtrip_v2_align64);
    tcase_add_test(tc, hostile_headers);
    tcase_add_test(tc, hostile_tensors);
    tcase_add_test(tc, every_truncation);
    tcase_add_test(tc, writer_atomic);
    tcase_add_test(tc, writer_streaming);
    tcase_add_test(tc, page_cache);
    suite_add_tcase(s, tc);
    return s;
}
