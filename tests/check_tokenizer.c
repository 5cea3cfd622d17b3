/*
 * check_tokenizer.c — tokenizer behaviour on small hand-made vocabularies: SentencePiece-style
 * merging by score and by merge rank, byte fallback, the "▁" prefix, BOS/EOS, special tokens
 * with and without parsing, byte-level BPE, detokenization (leading space, hidden control
 * tokens), the streaming detokenizer never emitting broken UTF-8, NFC against Unicode's own
 * conformance file (NormalizationTest.txt from unicode-data), refusal of malformed metadata,
 * and no quadratic blow-up on long inputs. The real Llama-2 and Qwen3 vocabularies are checked
 * against the JavaScript reference by tests/tokenizer/run.py.
 */
#include "engine.h"
#include "unicode.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define SP "\xe2\x96\x81" /* ▁ */

struct vocab {
    const char *text[600];
    float score[600];
    int32_t type[600];
    int n;
    const char *merges[64];
    int n_merges;
};

static int add(struct vocab *v, const char *text, float score, int type) {
    v->text[v->n] = text;
    v->score[v->n] = score;
    v->type[v->n] = type;
    return v->n++;
}

static char byte_names[256][8];

/* <unk> <s> </s> and 256 byte tokens. */
static void llama_base(struct vocab *v) {
    v->n = 0;
    v->n_merges = 0;
    add(v, "<unk>", 0, ENG_TOKEN_UNKNOWN);
    add(v, "<s>", 0, ENG_TOKEN_CONTROL);
    add(v, "</s>", 0, ENG_TOKEN_CONTROL);
    for (int b = 0; b < 256; b++) {
        snprintf(byte_names[b], sizeof(byte_names[b]), "<0x%02X>", b);
        add(v, byte_names[b], 0, ENG_TOKEN_BYTE);
    }
}

/* Writes the vocabulary as a GGUF file and loads its tokenizer. */
static struct eng_tokenizer *load(const struct vocab *v, const char *model, const char *extra_key,
                                  bool extra_val) {
    struct eng_gguf_writer *w = eng_gguf_writer_new();
    ck_assert_ptr_nonnull(w);
    ck_assert_int_eq(eng_gguf_set_str(w, "general.architecture", "llama"), 0);
    ck_assert_int_eq(eng_gguf_set_str(w, "tokenizer.ggml.model", model), 0);
    ck_assert_int_eq(eng_gguf_set_arr_str(w, "tokenizer.ggml.tokens", v->text, (uint64_t)v->n), 0);
    ck_assert_int_eq(
        eng_gguf_set_arr(w, "tokenizer.ggml.scores", ENG_GGUF_F32, v->score, (uint64_t)v->n), 0);
    ck_assert_int_eq(
        eng_gguf_set_arr(w, "tokenizer.ggml.token_type", ENG_GGUF_I32, v->type, (uint64_t)v->n), 0);
    if (v->n_merges)
        ck_assert_int_eq(
            eng_gguf_set_arr_str(w, "tokenizer.ggml.merges", v->merges, (uint64_t)v->n_merges), 0);
    if (!strcmp(model, "llama")) {
        ck_assert_int_eq(eng_gguf_set_u32(w, "tokenizer.ggml.bos_token_id", 1), 0);
        ck_assert_int_eq(eng_gguf_set_u32(w, "tokenizer.ggml.eos_token_id", 2), 0);
    }
    if (extra_key) ck_assert_int_eq(eng_gguf_set_bool(w, extra_key, extra_val), 0);
    char path[] = "/tmp/check_tokenizer.XXXXXX";
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    close(fd);
    ck_assert_int_eq(eng_gguf_writer_write(w, path), 0);
    eng_gguf_writer_free(w);
    struct eng_gguf *g = eng_gguf_open(path);
    ck_assert_ptr_nonnull(g);
    struct eng_tokenizer *t = eng_tokenizer_load(g);
    eng_gguf_close(g);
    unlink(path);
    return t;
}

/* Tokenizes s and compares with the expected ids (terminated by -1). */
static void expect_ids(const struct eng_tokenizer *t, const char *s, unsigned flags,
                       const int32_t *want) {
    int32_t got[256];
    int n = eng_tokenize(t, s, strlen(s), got, 256, flags);
    int nw = 0;
    while (want[nw] >= 0) nw++;
    ck_assert_msg(n == nw, "\"%s\": %d tokens, expected %d", s, n, nw);
    for (int i = 0; i < n; i++)
        ck_assert_msg(got[i] == want[i], "\"%s\": token %d is %d, expected %d", s, i, got[i],
                      want[i]);
}

static void expect_text(const struct eng_tokenizer *t, const int32_t *ids, int n, unsigned flags,
                        const char *want) {
    char buf[256];
    int len = eng_detokenize(t, ids, n, buf, sizeof(buf), flags);
    ck_assert_int_eq(len, (int)strlen(want));
    ck_assert_str_eq(buf, want);
}

START_TEST(spm_scores) {
    struct vocab v;
    llama_base(&v);
    int sp = add(&v, SP, -10, 1), a = add(&v, "a", -11, 1), b = add(&v, "b", -12, 1);
    add(&v, "c", -13, 1);
    int spa = add(&v, SP "a", -1, 1), bc = add(&v, "bc", -2, 1), spabc = add(&v, SP "abc", -3, 1);
    int ab = add(&v, "ab", -5, 1); /* lower score than ▁a: "▁a" wins in "▁ab" */
    struct eng_tokenizer *t = load(&v, "llama", NULL, false);
    ck_assert_ptr_nonnull(t);
    expect_ids(t, "abc", 0, (int32_t[]){spabc, -1});
    expect_ids(t, "abc", ENG_TOKENIZE_ADD_SPECIAL, (int32_t[]){1, spabc, -1});
    expect_ids(t, "ab", 0, (int32_t[]){spa, b, -1});
    expect_ids(t, "bc ab", 0, (int32_t[]){sp, bc, spa, b, -1});
    expect_ids(t, "xab", 0, (int32_t[]){sp, 3 + 'x', ab, -1}); /* x: byte fallback */
    expect_ids(t, "\xc3\xa9", 0, (int32_t[]){sp, 3 + 0xC3, 3 + 0xA9, -1});
    expect_ids(t, "", ENG_TOKENIZE_ADD_SPECIAL, (int32_t[]){1, -1});
    expect_ids(t, "", 0, (int32_t[]){-1});
    /* special-token text: parsed only when asked; the text after it gets its own "▁" */
    expect_ids(t, "a<s>a", ENG_TOKENIZE_PARSE_SPECIAL, (int32_t[]){spa, 1, spa, -1});
    expect_ids(t, "<s>", 0, (int32_t[]){sp, 3 + '<', 3 + 's', 3 + '>', -1});
    ck_assert_int_eq(eng_token_bos(t), 1);
    ck_assert_int_eq(eng_token_eos(t), 2);
    ck_assert(eng_token_is_eog(t, 2));
    ck_assert(!eng_token_is_eog(t, a));
    ck_assert_int_eq(eng_token_lookup(t, SP "abc", strlen(SP "abc")), spabc);
    ck_assert_int_eq(eng_token_lookup(t, "zz", 2), -1);
    /* decoding: the prefix space goes, control tokens are hidden unless rendered */
    expect_text(t, (int32_t[]){1, spabc, sp, bc}, 4, 0, "abc bc");
    expect_text(t, (int32_t[]){1, spabc}, 2, ENG_DETOK_RENDER_SPECIAL, "<s> abc");
    expect_text(t, (int32_t[]){3 + 0xC3, 3 + 0xA9}, 2, 0, "\xc3\xa9");
    char small[4];
    ck_assert_int_eq(eng_detokenize(t, (int32_t[]){spabc, spabc}, 2, small, 4, 0), 7);
    ck_assert_int_eq(eng_token_to_piece(t, 1, small, 4, 0), 0);
    ck_assert_int_eq(eng_token_to_piece(t, 1, small, 4, ENG_DETOK_RENDER_SPECIAL), 3);
    ck_assert_int_lt(eng_token_to_piece(t, 100000, small, 4, 0), 0);
    /* a chat prompt gets one BOS, also when it already starts with the BOS text */
    int32_t ids[8];
    ck_assert_int_eq(eng_tokenize_chat(t, "a", 1, ids, 8), 2);
    ck_assert_int_eq(ids[0], 1);
    ck_assert_int_eq(eng_tokenize_chat(t, "<s>a", 4, ids, 8), 2);
    ck_assert_int_eq(ids[0], 1);
    ck_assert_int_eq(ids[1], spa);
    eng_tokenizer_free(t);
    /* without the prefix */
    t = load(&v, "llama", "tokenizer.ggml.add_space_prefix", false);
    expect_ids(t, "ab", 0, (int32_t[]){ab, -1});
    expect_text(t, (int32_t[]){sp, ab}, 2, 0, " ab");
    eng_tokenizer_free(t);
}
END_TEST

START_TEST(spm_merges) {
    /* with tokenizer.ggml.merges, ranks decide (not scores), and only listed pairs merge */
    struct vocab v;
    llama_base(&v);
    int sp = add(&v, SP, 0, 1), a = add(&v, "a", 0, 1), b = add(&v, "b", 0, 1);
    int c = add(&v, "c", 0, 1), ab = add(&v, "ab", -9, 1), bc = add(&v, "bc", -1, 1);
    int spab = add(&v, SP "ab", -9, 1);
    v.merges[v.n_merges++] = "a b";
    v.merges[v.n_merges++] = SP " ab";
    v.merges[v.n_merges++] = "b c";
    struct eng_tokenizer *t = load(&v, "llama", NULL, false);
    ck_assert_ptr_nonnull(t);
    expect_ids(t, "abc", 0, (int32_t[]){spab, c, -1}); /* "a b" ranks before "b c" */
    expect_ids(t, "bc", 0, (int32_t[]){sp, bc, -1});
    expect_ids(t, "ca", 0, (int32_t[]){sp, c, a, -1}); /* no "▁ c" merge listed */
    (void)ab;
    (void)b;
    eng_tokenizer_free(t);
}
END_TEST

/* The printable character GPT-2's byte-level encoding uses for byte b, as UTF-8. */
static void bytechar(int b, char *out) {
    int cp = b;
    if (!((b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF))) {
        int k = 0;
        for (int c = 0; c < b; c++)
            if (!((c >= 0x21 && c <= 0x7E) || (c >= 0xA1 && c <= 0xAC) || (c >= 0xAE && c <= 0xFF)))
                k++;
        cp = 0x100 + k;
    }
    out[eng_utf8_encode((uint32_t)cp, out)] = 0;
}

START_TEST(byte_level) {
    static char chars[256][4];
    struct vocab v;
    v.n = 0;
    v.n_merges = 0;
    for (int b = 0; b < 256; b++) {
        bytechar(b, chars[b]);
        add(&v, chars[b], 0, 1);
    }
    int he = add(&v, "he", 0, 1), ll = add(&v, "ll", 0, 1), hell = add(&v, "hell", 0, 1);
    int hello = add(&v, "hello", 0, 1), gw = add(&v, "\xc4\xa0w", 0, 1); /* "Ġw" */
    int eot = add(&v, "<|endoftext|>", 0, ENG_TOKEN_CONTROL);
    int tool = add(&v, "<tool>", 0, ENG_TOKEN_USER_DEFINED);
    v.merges[v.n_merges++] = "h e";
    v.merges[v.n_merges++] = "l l";
    v.merges[v.n_merges++] = "he ll";
    v.merges[v.n_merges++] = "hell o";
    v.merges[v.n_merges++] = "\xc4\xa0 w";
    struct eng_tokenizer *t = load(&v, "gpt2", NULL, false);
    ck_assert_ptr_nonnull(t);
    expect_ids(t, "hello world", ENG_TOKENIZE_ADD_SPECIAL,
               (int32_t[]){hello, gw, 'o', 'r', 'l', 'd', -1});
    expect_ids(t, "hell", 0, (int32_t[]){hell, -1});
    /* control tokens only when parsing specials; user-defined ones always */
    expect_ids(t, "he<|endoftext|>", ENG_TOKENIZE_PARSE_SPECIAL, (int32_t[]){he, eot, -1});
    int32_t ids[64];
    ck_assert_int_eq(eng_tokenize(t, "<|endoftext|>", 13, ids, 64, 0), 13);
    expect_ids(t, "<tool>ll", 0, (int32_t[]){tool, ll, -1});
    ck_assert(eng_token_is_eog(t, eot));
    /* bytes come back exactly, invalid UTF-8 included */
    const char raw[] = "caf\xc3\xa9 \xff\xfe \t\n";
    int n = eng_tokenize(t, raw, sizeof(raw) - 1, ids, 64, 0);
    ck_assert_int_eq(n, (int)sizeof(raw) - 1);
    char back[64];
    ck_assert_int_eq(eng_detokenize(t, ids, n, back, sizeof(back), 0), (int)sizeof(raw) - 1);
    ck_assert(!memcmp(back, raw, sizeof(raw) - 1));
    expect_text(t, (int32_t[]){hello, eot, gw}, 3, 0, "hello w");
    expect_text(t, (int32_t[]){hello, eot, gw}, 3, ENG_DETOK_RENDER_SPECIAL,
                "hello<|endoftext|> w");
    eng_tokenizer_free(t);
}
END_TEST

START_TEST(streaming_detok) {
    struct vocab v;
    llama_base(&v);
    int sp = add(&v, SP, 0, 1), a = add(&v, "a", 0, 1), spa = add(&v, SP "a", 0, 1);
    struct eng_tokenizer *t = load(&v, "llama", NULL, false);
    ck_assert_ptr_nonnull(t);
    struct eng_detok d;
    char out[64];
    int max = eng_detok_max(t);
    ck_assert_int_le(max, (int)sizeof(out));
    /* é split over two byte tokens: nothing, then the whole character */
    eng_detok_init(&d, t, 0);
    ck_assert_int_eq(eng_detok_push(&d, spa, out, max), 1); /* leading space dropped */
    ck_assert(!memcmp(out, "a", 1));
    ck_assert_int_eq(eng_detok_push(&d, 3 + 0xC3, out, max), 0);
    ck_assert_int_eq(eng_detok_push(&d, 3 + 0xA9, out, max), 2);
    ck_assert(!memcmp(out, "\xc3\xa9", 2));
    ck_assert_int_eq(eng_detok_push(&d, spa, out, max), 2);
    ck_assert(!memcmp(out, " a", 2));
    /* a 4-byte emoji over four tokens */
    const unsigned char emoji[] = {0xF0, 0x9F, 0x98, 0x80};
    for (int i = 0; i < 3; i++) ck_assert_int_eq(eng_detok_push(&d, 3 + emoji[i], out, max), 0);
    ck_assert_int_eq(eng_detok_push(&d, 3 + emoji[3], out, max), 4);
    ck_assert(!memcmp(out, emoji, 4));
    /* a broken sequence becomes U+FFFD, the following text is kept */
    ck_assert_int_eq(eng_detok_push(&d, 3 + 0xC3, out, max), 0);
    ck_assert_int_eq(eng_detok_push(&d, a, out, max), 4);
    ck_assert(!memcmp(out,
                      "\xef\xbf\xbd"
                      "a",
                      4));
    ck_assert_int_eq(eng_detok_push(&d, 3 + 0xFF, out, max), 3);
    /* an incomplete tail at the end comes out as U+FFFD */
    ck_assert_int_eq(eng_detok_push(&d, 3 + 0xE2, out, max), 0);
    ck_assert_int_eq(eng_detok_push(&d, 3 + 0x96, out, max), 0);
    ck_assert_int_eq(eng_detok_flush(&d, out, max), 3);
    ck_assert_int_eq(eng_detok_flush(&d, out, max), 0);
    /* too small a buffer: refused, nothing consumed */
    eng_detok_init(&d, t, 0);
    ck_assert_int_eq(eng_detok_push(&d, spa, out, 1), ENG_ERANGE);
    ck_assert_int_eq(eng_detok_push(&d, spa, out, max), 1);
    /* the stream equals the whole decode for any split of a text into tokens */
    const char *text = "x \xc3\xa9t\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac a";
    int32_t ids[64];
    int n = eng_tokenize(t, text, strlen(text), ids, 64, 0);
    char whole[128], streamed[256];
    int wn = eng_detokenize(t, ids, n, whole, sizeof(whole), 0), sn = 0;
    eng_detok_init(&d, t, 0);
    for (int i = 0; i < n; i++) sn += eng_detok_push(&d, ids[i], streamed + sn, max);
    sn += eng_detok_flush(&d, streamed + sn, max);
    ck_assert_int_eq(sn, wn);
    ck_assert(!memcmp(whole, streamed, (size_t)wn));
    ck_assert_int_eq(wn, (int)strlen(text));
    (void)sp;
    eng_tokenizer_free(t);
}
END_TEST

START_TEST(nfc_conformance) {
    /* Unicode's NormalizationTest.txt: NFC(c1..c3) == c2 and NFC(c4..c5) == c4 on every line */
    FILE *f = popen("bzcat /usr/share/unicode/NormalizationTest.txt.bz2 2>/dev/null", "r");
    ck_assert_ptr_nonnull(f);
    char line[2048];
    int n = 0, bad = 0;
    while (fgets(line, sizeof(line), f)) {
        if (line[0] == '#' || line[0] == '@' || line[0] == '\n') continue;
        char col[5][256];
        int len[5];
        char *p = line;
        for (int c = 0; c < 5; c++) {
            len[c] = 0;
            while (*p && *p != ';') {
                char *end;
                unsigned long cp = strtoul(p, &end, 16);
                if (end == p) {
                    p++;
                    continue;
                }
                len[c] += eng_utf8_encode((uint32_t)cp, col[c] + len[c]);
                p = end;
            }
            if (*p == ';') p++;
        }
        static const int src[5] = {0, 1, 2, 3, 4}, want[5] = {1, 1, 1, 3, 3};
        for (int k = 0; k < 5; k++) {
            size_t on;
            char *o = eng_nfc(col[src[k]], (size_t)len[src[k]], &on);
            ck_assert_ptr_nonnull(o);
            bad += on != (size_t)len[want[k]] || memcmp(o, col[want[k]], on) != 0;
            /* the quick check never calls a changing string stable */
            if (!eng_nfc_needed(col[src[k]], (size_t)len[src[k]]))
                bad += on != (size_t)len[src[k]] || memcmp(o, col[src[k]], on) != 0;
            free(o);
        }
        n++;
    }
    pclose(f);
    ck_assert_msg(n > 18000, "NormalizationTest.txt: only %d lines (is unicode-data installed?)",
                  n);
    ck_assert_int_eq(bad, 0);
}
END_TEST

START_TEST(malformed) {
    struct vocab v;
    llama_base(&v);
    struct eng_tokenizer *t = load(&v, "bert", NULL, false);
    ck_assert_ptr_null(t);
    ck_assert(strstr(eng_last_error(), "bert") != NULL);
    v.merges[0] = "nospace";
    v.n_merges = 1;
    t = load(&v, "llama", NULL, false);
    ck_assert_ptr_null(t);
    ck_assert(strstr(eng_last_error(), "merge") != NULL);
    v.n_merges = 0;
    v.type[5] = 99; /* unknown token type: treated as normal */
    t = load(&v, "llama", NULL, false);
    ck_assert_ptr_nonnull(t);
    ck_assert_int_eq(eng_token_attr(t, 5), ENG_TOKEN_NORMAL);
    eng_tokenizer_free(t);
    /* gpt2 needs merges */
    t = load(&v, "gpt2", NULL, false);
    ck_assert_ptr_null(t);
}
END_TEST

START_TEST(long_inputs_are_not_quadratic) {
    struct vocab v;
    llama_base(&v);
    add(&v, SP, -1, 1);
    add(&v, "a", -1, 1);
    add(&v, "aa", -2, 1);
    add(&v, "aaaa", -3, 1);
    struct eng_tokenizer *t = load(&v, "llama", NULL, false);
    size_t n = 400000;
    char *s = malloc(n + 1);
    for (size_t i = 0; i < n; i++) s[i] = i % 1000 == 999 ? ' ' : 'a';
    s[n] = 0;
    clock_t c0 = clock();
    int k = eng_tokenize(t, s, n, NULL, 0, 0);
    double secs = (double)(clock() - c0) / CLOCKS_PER_SEC;
    ck_assert_int_gt(k, (int)(n / 4));
    /* a quadratic merge loop would need minutes here */
    ck_assert_msg(secs < 5.0, "400 kB took %.2f s", secs);
    free(s);
    eng_tokenizer_free(t);
}
END_TEST

Suite *tokenizer_suite(void) {
    Suite *s = suite_create("tokenizer");
    TCase *tc = tcase_create("tokenizer");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, spm_scores);
    tcase_add_test(tc, spm_merges);
    tcase_add_test(tc, byte_level);
    tcase_add_test(tc, streaming_detok);
    tcase_add_test(tc, nfc_conformance);
    tcase_add_test(tc, malformed);
    tcase_add_test(tc, long_inputs_are_not_quadratic);
    suite_add_tcase(s, tc);
    return s;
}
