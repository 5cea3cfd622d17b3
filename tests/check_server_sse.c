/*
 * check_server_sse.c — the SSE framing OpenAI clients parse: one "data: <json>\n\n" event per
 * object with the JSON on one line (also when strings contain newlines), "data: [DONE]\n\n",
 * keep-alive comments that cannot break out of their line, and the byte buffer beneath.
 */
#include "server.h"

#include <check.h>
#include <stdlib.h>
#include <string.h>

START_TEST(json_event_is_one_line) {
    struct srv_buf b = {0};
    json_t *o = json_pack("{s:s, s:i, s:s}", "content", "two\nlines\r\nand \"quotes\"", "n", 3, "u",
                          "\xc3\xa9");
    ck_assert_int_eq(srv_sse_json(&b, o), 0);
    json_decref(o);
    ck_assert_str_eq(b.p, "data: {\"content\":\"two\\nlines\\r\\nand \\\"quotes\\\"\",\"n\":3,"
                          "\"u\":\"\xc3\xa9\"}\n\n");
    /* Exactly one event: one blank-line terminator at the end. */
    ck_assert_ptr_eq(strstr(b.p, "\n\n"), b.p + b.len - 2);
    json_t *back = json_loads(b.p + 6, JSON_DISABLE_EOF_CHECK, NULL);
    ck_assert_ptr_nonnull(back);
    ck_assert_str_eq(json_string_value(json_object_get(back, "content")),
                     "two\nlines\r\nand \"quotes\"");
    json_decref(back);
    srv_buf_free(&b);
}
END_TEST

START_TEST(done_and_comments) {
    struct srv_buf b = {0};
    ck_assert_int_eq(srv_sse_comment(&b, "keep-alive"), 0);
    ck_assert_int_eq(srv_sse_comment(&b, "evil\n\ndata: [DONE]"), 0);
    ck_assert_int_eq(srv_sse_done(&b), 0);
    ck_assert_str_eq(b.p, ": keep-alive\n\n: evil  data: [DONE]\n\ndata: [DONE]\n\n");
    srv_buf_free(&b);
}
END_TEST

START_TEST(buffer) {
    struct srv_buf b = {0};
    for (int i = 0; i < 1000; i++) ck_assert_int_eq(srv_buf_printf(&b, "%d,", i), 0);
    ck_assert_uint_eq(b.len, strlen(b.p));
    ck_assert(!strncmp(b.p, "0,1,2,", 6));
    srv_buf_consume(&b, 4);
    ck_assert(!strncmp(b.p, "2,3,", 4));
    srv_buf_consume(&b, b.len + 10);
    ck_assert_uint_eq(b.len, 0);
    ck_assert_str_eq(b.p, "");
    ck_assert_int_eq(srv_buf_append(&b, "x", 1), 0);
    ck_assert_str_eq(b.p, "x");
    srv_buf_free(&b);
    ck_assert_ptr_null(b.p);
}
END_TEST

Suite *server_sse_suite(void) {
    Suite *s = suite_create("server_sse");
    TCase *tc = tcase_create("sse");
    tcase_add_test(tc, json_event_is_one_line);
    tcase_add_test(tc, done_and_comments);
    tcase_add_test(tc, buffer);
    suite_add_tcase(s, tc);
    return s;
}
