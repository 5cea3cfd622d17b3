/*
 * check_server_request.c — validation of OpenAI request bodies: what is accepted (and into which
 * values), what is refused with which status, parameter and code, OpenAI error objects, and the
 * UTF-8 helpers used on generated text.
 */
#include "server.h"

#include <check.h>
#include <stdlib.h>
#include <string.h>

#define N_VOCAB 512

static struct srv_gen_request r;
static struct srv_error e;

static int chat(const char *body) {
    memset(&e, 0, sizeof(e));
    return srv_gen_request_parse(SRV_CHAT, body, strlen(body), N_VOCAB, &r, &e);
}

static int comp(const char *body) {
    memset(&e, 0, sizeof(e));
    return srv_gen_request_parse(SRV_COMPLETION, body, strlen(body), N_VOCAB, &r, &e);
}

/* Refused with status and param (NULL: not checked). */
static void refused(int rc, int status, const char *param) {
    ck_assert_int_ne(rc, 0);
    ck_assert_int_eq(e.status, status);
    ck_assert_ptr_nonnull(e.type);
    if (param) ck_assert_str_eq(e.param, param);
    ck_assert_int_gt((int)strlen(e.message), 0);
}

START_TEST(chat_full) {
    ck_assert_int_eq(
        chat("{\"model\":\"m\",\"messages\":[{\"role\":\"developer\",\"content\":\"sys\"},"
             "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"a\"},"
             "{\"type\":\"text\",\"text\":\"b\"}],\"name\":\"x\"},"
             "{\"role\":\"assistant\",\"content\":\"ok\",\"refusal\":null}],"
             "\"max_tokens\":5,\"max_completion_tokens\":7,\"temperature\":0.5,\"top_p\":0.9,"
             "\"n\":2,\"stop\":[\"x\",\"\",\"yy\"],\"seed\":-3,\"presence_penalty\":1,"
             "\"frequency_penalty\":-1,\"logit_bias\":{\"10\":-100,\"11\":5.5},\"logprobs\":true,"
             "\"top_logprobs\":3,\"stream\":true,\"stream_options\":{\"include_usage\":true},"
             "\"user\":\"u\",\"top_k\":40,\"min_p\":0.05,\"repetition_penalty\":1.1,"
             "\"response_format\":{\"type\":\"text\"},\"tools\":[],\"tool_choice\":\"none\","
             "\"metadata\":null}"),
        0);
    ck_assert_str_eq(r.model, "m");
    ck_assert_int_eq(r.n_msgs, 3);
    ck_assert_str_eq(r.msgs[0].role, "system");
    ck_assert_str_eq(r.msgs[1].content, "a\nb");
    ck_assert_str_eq(r.msgs[2].role, "assistant");
    ck_assert_int_eq(r.max_tokens, 7);
    ck_assert_int_eq(r.n, 2);
    ck_assert_int_eq(r.n_stop, 2); /* the empty string is dropped */
    ck_assert_str_eq(r.stop[1], "yy");
    ck_assert(r.has_seed);
    ck_assert_int_eq((int64_t)r.seed, -3);
    ck_assert_int_eq(r.n_bias, 2);
    ck_assert_int_eq(r.sp.logit_bias[1].token, 11);
    ck_assert_float_eq(r.sp.logit_bias[1].bias, 5.5f);
    ck_assert(r.logprobs);
    ck_assert_int_eq(r.sp.n_logprobs, 3);
    ck_assert(r.stream && r.include_usage);
    ck_assert_int_eq(r.sp.top_k, 40);
    ck_assert_float_eq_tol(r.sp.min_p, 0.05f, 1e-6f);
    ck_assert_float_eq_tol(r.sp.repeat_penalty, 1.1f, 1e-6f);
    srv_gen_request_free(&r);
}
END_TEST

START_TEST(chat_defaults) {
    ck_assert_int_eq(chat("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"\"}]}"),
                     0);
    ck_assert_int_eq(r.max_tokens, -1);
    ck_assert_int_eq(r.n, 1);
    ck_assert_float_eq(r.sp.temperature, 1.0f);
    ck_assert_float_eq(r.sp.top_p, 1.0f);
    ck_assert(!r.stream && !r.has_seed && !r.logprobs);
    ck_assert_int_eq(r.n_stop, 0);
    srv_gen_request_free(&r);
    /* top_p 0 means greedy. */
    ck_assert_int_eq(chat("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],"
                          "\"top_p\":0}"),
                     0);
    ck_assert_float_eq(r.sp.temperature, 0.0f);
    srv_gen_request_free(&r);
    /* null is "not given". */
    ck_assert_int_eq(chat("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],"
                          "\"temperature\":null,\"max_tokens\":null,\"stop\":null}"),
                     0);
    ck_assert_float_eq(r.sp.temperature, 1.0f);
    ck_assert_int_eq(r.max_tokens, -1);
    srv_gen_request_free(&r);
}
END_TEST

START_TEST(chat_refusals) {
    refused(chat("{"), 400, NULL);
    refused(chat(""), 400, NULL);
    refused(chat("[1]"), 400, NULL);
    refused(chat("{\"model\":\"m\"}"), 400, "messages");
    ck_assert_str_eq(e.code, "missing_required_parameter");
    refused(chat("{\"messages\":[]}"), 400, "model");
    refused(chat("{\"model\":\"m\",\"messages\":[]}"), 400, "messages");
    ck_assert_str_eq(e.code, "empty_array");
    refused(chat("{\"model\":\"m\",\"messages\":{}}"), 400, "messages");
    ck_assert_str_eq(e.code, "invalid_type");
    refused(chat("{\"model\":\"m\",\"messages\":[{\"role\":\"tool\",\"content\":\"x\"}]}"), 400,
            "messages[0].role");
    refused(chat("{\"model\":\"m\",\"messages\":[{\"role\":\"user\"}]}"), 400,
            "messages[0].content");
    refused(chat("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":5}]}"), 400,
            "messages[0].content");
    refused(chat("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\","
                 "\"tool_calls\":[{}]}]}"),
            400, "messages[0]");
    refused(chat("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":"
                 "\"image_url\"}]}]}"),
            400, "messages[0].content[0]");
    const char *m = "\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]";
    struct {
        const char *extra, *param;
    } bad[] = {
        {"\"temperature\":2.5", "temperature"},
        {"\"temperature\":\"1\"", "temperature"},
        {"\"top_p\":-0.1", "top_p"},
        {"\"n\":0", "n"},
        {"\"n\":1.5", "n"},
        {"\"max_tokens\":0", "max_tokens"},
        {"\"max_tokens\":-7", "max_tokens"},
        {"\"max_tokens\":3000000000", "max_tokens"},
        {"\"max_completion_tokens\":0", "max_completion_tokens"},
        {"\"presence_penalty\":3", "presence_penalty"},
        {"\"frequency_penalty\":-2.5", "frequency_penalty"},
        {"\"stop\":[1]", "stop[0]"},
        {"\"stop\":[\"a\",\"b\",\"c\",\"d\",\"e\"]", "stop"},
        {"\"stop\":{}", "stop"},
        {"\"seed\":1.5", "seed"},
        {"\"logit_bias\":[]", "logit_bias"},
        {"\"logit_bias\":{\"x\":1}", "logit_bias"},
        {"\"logit_bias\":{\"512\":1}", "logit_bias"},
        {"\"logit_bias\":{\"1\":101}", "logit_bias"},
        {"\"logit_bias\":{\"1\":\"a\"}", "logit_bias"},
        {"\"logprobs\":1", "logprobs"},
        {"\"top_logprobs\":21,\"logprobs\":true", "top_logprobs"},
        {"\"top_logprobs\":2", "top_logprobs"},
        {"\"stream\":1", "stream"},
        {"\"stream_options\":{\"include_usage\":true}", "stream_options"},
        {"\"stream\":true,\"stream_options\":{\"x\":1}", "stream_options"},
        {"\"stream\":true,\"stream_options\":{\"include_usage\":1}",
         "stream_options.include_usage"},
        {"\"user\":5", "user"},
        {"\"top_k\":-1", "top_k"},
        {"\"min_p\":2", "min_p"},
        {"\"repetition_penalty\":0", "repetition_penalty"},
        {"\"tools\":[{}]", "tools"},
        {"\"tool_choice\":\"required\"", "tool_choice"},
        {"\"response_format\":{\"type\":\"json_object\"}", "response_format"},
        {"\"prompt\":\"x\"", "prompt"},
        {"\"echo\":true", "echo"},
        {"\"bogus\":1", "bogus"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char body[512];
        snprintf(body, sizeof(body), "{%s,%s}", m, bad[i].extra);
        int rc = chat(body);
        ck_assert_msg(rc != 0, "accepted: %s", bad[i].extra);
        ck_assert_msg(e.status == 400 && !strcmp(e.param, bad[i].param), "%s: status %d param '%s'",
                      bad[i].extra, e.status, e.param);
    }
    /* Duplicate keys, NUL characters and invalid UTF-8 are refused by the JSON reader. */
    refused(chat("{\"model\":\"m\",\"model\":\"m\",\"messages\":[]}"), 400, NULL);
    refused(chat("{\"model\":\"m\\u0000\",\"messages\":[]}"), 400, NULL);
    refused(chat("{\"model\":\"\xff\",\"messages\":[]}"), 400, NULL);
}
END_TEST

START_TEST(completion_prompts) {
    ck_assert_int_eq(comp("{\"model\":\"m\",\"prompt\":\"hi\",\"echo\":true,\"logprobs\":2,"
                          "\"best_of\":1,\"suffix\":null}"),
                     0);
    ck_assert_int_eq(r.n_prompts, 1);
    ck_assert_str_eq(r.prompts[0].text, "hi");
    ck_assert(r.echo && r.logprobs);
    ck_assert_int_eq(r.top_logprobs, 2);
    srv_gen_request_free(&r);
    ck_assert_int_eq(comp("{\"model\":\"m\",\"prompt\":[\"a\",\"b\",\"c\"]}"), 0);
    ck_assert_int_eq(r.n_prompts, 3);
    ck_assert_str_eq(r.prompts[2].text, "c");
    srv_gen_request_free(&r);
    ck_assert_int_eq(comp("{\"model\":\"m\",\"prompt\":[1,2,511]}"), 0);
    ck_assert_int_eq(r.n_prompts, 1);
    ck_assert_ptr_null(r.prompts[0].text);
    ck_assert_int_eq(r.prompts[0].n_ids, 3);
    ck_assert_int_eq(r.prompts[0].ids[2], 511);
    srv_gen_request_free(&r);
    ck_assert_int_eq(comp("{\"model\":\"m\",\"prompt\":[[1],[2,3]]}"), 0);
    ck_assert_int_eq(r.n_prompts, 2);
    ck_assert_int_eq(r.prompts[1].n_ids, 2);
    srv_gen_request_free(&r);

    refused(comp("{\"model\":\"m\"}"), 400, "prompt");
    refused(comp("{\"model\":\"m\",\"prompt\":[]}"), 400, "prompt");
    refused(comp("{\"model\":\"m\",\"prompt\":5}"), 400, "prompt");
    refused(comp("{\"model\":\"m\",\"prompt\":[1,512]}"), 400, "prompt");
    refused(comp("{\"model\":\"m\",\"prompt\":[1,-1]}"), 400, "prompt");
    refused(comp("{\"model\":\"m\",\"prompt\":[\"a\",1]}"), 400, "prompt[1]");
    refused(comp("{\"model\":\"m\",\"prompt\":[[1],[]]}"), 400, "prompt[1]");
    refused(comp("{\"model\":\"m\",\"prompt\":\"x\",\"logprobs\":6}"), 400, "logprobs");
    refused(comp("{\"model\":\"m\",\"prompt\":\"x\",\"suffix\":\"y\"}"), 400, "suffix");
    refused(comp("{\"model\":\"m\",\"prompt\":\"x\",\"best_of\":3}"), 400, "best_of");
    refused(comp("{\"model\":\"m\",\"prompt\":\"x\",\"messages\":[]}"), 400, "messages");
}
END_TEST

START_TEST(error_object) {
    struct srv_error x;
    ck_assert_int_eq(srv_err(&x, 404, "invalid_request_error", "model_not_found", "model",
                             "The model '%s' does not exist", "a\xff"),
                     ENG_EINVAL);
    json_t *j = srv_error_json(&x);
    ck_assert_ptr_nonnull(j);
    json_t *in = json_object_get(j, "error");
    ck_assert_str_eq(json_string_value(json_object_get(in, "type")), "invalid_request_error");
    ck_assert_str_eq(json_string_value(json_object_get(in, "code")), "model_not_found");
    ck_assert_str_eq(json_string_value(json_object_get(in, "param")), "model");
    /* Invalid UTF-8 quoted from input is replaced, so the object stays valid JSON. */
    ck_assert_str_eq(json_string_value(json_object_get(in, "message")),
                     "The model 'a\xef\xbf\xbd' does not exist");
    ck_assert_int_eq((int)json_object_size(in), 4);
    json_decref(j);
    srv_err(&x, 400, "invalid_request_error", NULL, NULL, "plain");
    j = srv_error_json(&x);
    in = json_object_get(j, "error");
    ck_assert(json_is_null(json_object_get(in, "param")) &&
              json_is_null(json_object_get(in, "code")));
    json_decref(j);
}
END_TEST

START_TEST(utf8) {
    size_t n;
    char *s = srv_utf8_sanitize("ok \xc3\xa9 \xff \xed\xa0\x80 \xf0\x9f\x98\x80 \xc0\xaf", 19, &n);
    ck_assert_str_eq(s, "ok \xc3\xa9 \xef\xbf\xbd \xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd "
                        "\xf0\x9f\x98\x80 \xef\xbf\xbd\xef\xbf\xbd");
    ck_assert_uint_eq(n, strlen(s));
    free(s);
    ck_assert_uint_eq(srv_utf8_complete_prefix("ab\xc3", 3), 2);
    ck_assert_uint_eq(srv_utf8_complete_prefix("ab\xc3\xa9", 4), 4);
    ck_assert_uint_eq(srv_utf8_complete_prefix("a\xf0\x9f\x98", 4), 1);
    ck_assert_uint_eq(srv_utf8_complete_prefix("a\xf0\x9f\x98\x80", 5), 5);
    ck_assert_uint_eq(srv_utf8_complete_prefix("a\xff", 2), 2); /* invalid, not incomplete */
    ck_assert_uint_eq(srv_utf8_complete_prefix("", 0), 0);
}
END_TEST

Suite *server_request_suite(void) {
    Suite *s = suite_create("server_request");
    TCase *tc = tcase_create("request");
    tcase_add_test(tc, chat_full);
    tcase_add_test(tc, chat_defaults);
    tcase_add_test(tc, chat_refusals);
    tcase_add_test(tc, completion_prompts);
    tcase_add_test(tc, error_object);
    tcase_add_test(tc, utf8);
    suite_add_tcase(s, tc);
    return s;
}
