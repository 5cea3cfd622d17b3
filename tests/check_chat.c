/*
 * check_chat.c — chat templates: each family is detected from the markers of its Jinja source,
 * and renders system / user / assistant messages plus the generation prompt to exactly the
 * string the family's template produces; a ChatML template's own default system message is
 * honoured; unknown templates fall back to ChatML and say so; roles a family cannot express are
 * refused with a message.
 */
#include "engine.h"

#include <check.h>
#include <stdlib.h>
#include <string.h>

static const struct eng_chat_msg conv[] = {
    {"system", "You are terse."},
    {"user", "Hi!"},
    {"assistant", " Hello. "},
    {"user", "2+2?"},
};

static void expect(enum eng_chat_family f, const struct eng_chat_msg *m, int n, bool gen,
                   const char *want) {
    char *got = eng_chat_render(f, m, n, gen, "<s>", "</s>");
    ck_assert_msg(got != NULL, "%s: %s", eng_chat_family_name(f), eng_last_error());
    ck_assert_str_eq(got, want);
    free(got);
}

START_TEST(chatml) {
    expect(ENG_CHAT_CHATML, conv, 4, true,
           "<|im_start|>system\nYou are terse.<|im_end|>\n"
           "<|im_start|>user\nHi!<|im_end|>\n"
           "<|im_start|>assistant\n Hello. <|im_end|>\n"
           "<|im_start|>user\n2+2?<|im_end|>\n"
           "<|im_start|>assistant\n");
    expect(ENG_CHAT_CHATML, conv + 1, 1, false, "<|im_start|>user\nHi!<|im_end|>\n");
    /* a template that inserts its own default system message when none is given */
    const char *tmpl =
        "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
        "{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}{% endif %}"
        "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + "
        "'\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}"
        "{% endif %}";
    struct eng_chat_template ct;
    eng_chat_template_parse(&ct, tmpl);
    ck_assert(ct.known);
    ck_assert_int_eq(ct.family, ENG_CHAT_CHATML);
    ck_assert_str_eq(ct.default_system, "You are a helpful assistant.");
    char *got = eng_chat_template_apply(&ct, conv + 1, 1, true, NULL, NULL);
    ck_assert_str_eq(got, "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
                          "<|im_start|>user\nHi!<|im_end|>\n<|im_start|>assistant\n");
    free(got);
    got = eng_chat_template_apply(&ct, conv, 2, false, NULL, NULL);
    ck_assert_str_eq(got, "<|im_start|>system\nYou are terse.<|im_end|>\n"
                          "<|im_start|>user\nHi!<|im_end|>\n");
    free(got);
    /* a template that only writes the system turn from the messages has no default */
    eng_chat_template_parse(&ct, "{{- '<|im_start|>system\\n' + messages[0].content + "
                                 "'<|im_end|>\\n' }}");
    ck_assert_ptr_null(ct.default_system);
}
END_TEST

START_TEST(llama3) {
    expect(ENG_CHAT_LLAMA3, conv, 4, true,
           "<s><|start_header_id|>system<|end_header_id|>\n\nYou are terse.<|eot_id|>"
           "<|start_header_id|>user<|end_header_id|>\n\nHi!<|eot_id|>"
           "<|start_header_id|>assistant<|end_header_id|>\n\nHello.<|eot_id|>"
           "<|start_header_id|>user<|end_header_id|>\n\n2+2?<|eot_id|>"
           "<|start_header_id|>assistant<|end_header_id|>\n\n");
    struct eng_chat_template ct;
    eng_chat_template_parse(&ct, "{{- bos_token }}{{- \"Cutting Knowledge Date: December "
                                 "2023\\n\" }}<|start_header_id|>");
    ck_assert_int_eq(ct.family, ENG_CHAT_LLAMA3);
    ck_assert(ct.llama31);
    char *got = eng_chat_template_apply(&ct, conv + 1, 1, true, "<|begin_of_text|>", NULL);
    ck_assert_str_eq(got, "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n"
                          "Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n"
                          "<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nHi!<|eot_id|>"
                          "<|start_header_id|>assistant<|end_header_id|>\n\n");
    free(got);
}
END_TEST

START_TEST(llama2) {
    expect(ENG_CHAT_LLAMA2, conv, 4, true,
           "<s>[INST] <<SYS>>\nYou are terse.\n<</SYS>>\n\nHi! [/INST] Hello. </s>"
           "<s>[INST] 2+2? [/INST]");
    expect(ENG_CHAT_LLAMA2, conv + 1, 1, true, "<s>[INST] Hi! [/INST]");
    const struct eng_chat_msg bad[] = {{"user", "a"}, {"user", "b"}};
    ck_assert_ptr_null(eng_chat_render(ENG_CHAT_LLAMA2, bad, 2, true, "<s>", "</s>"));
    ck_assert(strstr(eng_last_error(), "alternate") != NULL);
}
END_TEST

START_TEST(mistral) {
    expect(ENG_CHAT_MISTRAL, conv, 4, true,
           "<s>[INST] You are terse.\n\nHi! [/INST] Hello. </s>[INST] 2+2? [/INST]");
    expect(ENG_CHAT_MISTRAL, conv + 1, 3, true,
           "<s>[INST] Hi! [/INST] Hello. </s>[INST] 2+2? [/INST]");
}
END_TEST

START_TEST(gemma) {
    expect(ENG_CHAT_GEMMA, conv, 4, true,
           "<s><start_of_turn>user\nYou are terse.\n\nHi!<end_of_turn>\n"
           "<start_of_turn>model\nHello.<end_of_turn>\n"
           "<start_of_turn>user\n2+2?<end_of_turn>\n"
           "<start_of_turn>model\n");
    expect(ENG_CHAT_GEMMA, conv + 1, 1, false, "<s><start_of_turn>user\nHi!<end_of_turn>\n");
}
END_TEST

START_TEST(phi3) {
    expect(ENG_CHAT_PHI3, conv, 4, true,
           "<|system|>\nYou are terse.<|end|>\n<|user|>\nHi!<|end|>\n"
           "<|assistant|>\n Hello. <|end|>\n<|user|>\n2+2?<|end|>\n<|assistant|>\n");
    const struct eng_chat_msg tool[] = {{"tool", "42"}};
    ck_assert_ptr_null(eng_chat_render(ENG_CHAT_PHI3, tool, 1, true, NULL, NULL));
}
END_TEST

START_TEST(detection) {
    static const struct {
        const char *tmpl;
        enum eng_chat_family f;
        bool known;
    } cases[] = {
        {"{{ '<|im_start|>' + message['role'] }}", ENG_CHAT_CHATML, true},
        {"{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>' }}", ENG_CHAT_LLAMA3,
         true},
        {"{{ bos_token + '[INST] ' + '<<SYS>>\\n' }}", ENG_CHAT_LLAMA2, true},
        {"{{ bos_token }}{{ '[INST] ' + message['content'] + ' [/INST]' }}", ENG_CHAT_MISTRAL,
         true},
        {"{{ '<start_of_turn>' + role + '\\n' }}", ENG_CHAT_GEMMA, true},
        {"{{ '<|user|>\\n' }}{{ '<|end|>\\n<|assistant|>\\n' }}", ENG_CHAT_PHI3, true},
        {"{{ 'Human: ' + m }}{{ 'Assistant:' }}", ENG_CHAT_CHATML, false},
        {"", ENG_CHAT_CHATML, false},
        {NULL, ENG_CHAT_CHATML, false},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        bool known = !cases[i].known;
        ck_assert_int_eq(eng_chat_detect(cases[i].tmpl, &known), cases[i].f);
        ck_assert_int_eq(known, cases[i].known);
    }
    for (int f = 0; f < ENG_CHAT_FAMILY_COUNT; f++)
        ck_assert_int_eq(eng_chat_family_from_name(eng_chat_family_name(f)), f);
    ck_assert_int_eq(eng_chat_family_from_name("jinja"), -1);
}
END_TEST

Suite *chat_suite(void) {
    Suite *s = suite_create("chat");
    TCase *tc = tcase_create("chat");
    tcase_add_test(tc, chatml);
    tcase_add_test(tc, llama3);
    tcase_add_test(tc, llama2);
    tcase_add_test(tc, mistral);
    tcase_add_test(tc, gemma);
    tcase_add_test(tc, phi3);
    tcase_add_test(tc, detection);
    suite_add_tcase(s, tc);
    return s;
}
