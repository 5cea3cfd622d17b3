/*
 * check_server_config.c — edgellmd's configuration table and parsers: defaults, the config file
 * (comments, quotes, errors naming key and line), EDGELLM_* variables, flags and precedence,
 * range and type checks, the non-loopback rule, and --print-config output reading back.
 */
#include "server.h"

#include <check.h>
#include <stdlib.h>
#include <string.h>

static struct srv_config c;
static char err[1024];

static void setup(void) {
    ck_assert_int_eq(cfg_init(&c), 0);
    err[0] = 0;
}

static void teardown(void) {
    cfg_free(&c);
}

static int parse(const char *text) {
    return cfg_parse_text(&c, text, strlen(text), "test.conf", err, sizeof(err));
}

START_TEST(defaults_follow_the_table) {
    ck_assert_str_eq(c.host, "127.0.0.1");
    ck_assert_int_eq(c.port, 8080);
    ck_assert_int_eq(c.slots, 4);
    ck_assert_str_eq(c.model, "");
    ck_assert_int_eq(c.api_keys.n, 0);
    ck_assert(c.access_log);
    ck_assert(!c.insecure_no_auth);
    int n;
    const struct cfg_key *k = cfg_keys(&n);
    ck_assert_int_ge(n, 20);
    for (int i = 0; i < n; i++) {
        ck_assert_ptr_nonnull(k[i].help);
        ck_assert_ptr_eq(cfg_find(k[i].name, strlen(k[i].name)), &k[i]);
        /* Every default is valid for its own key. */
        char e[256];
        ck_assert_msg(cfg_set(&c, &k[i], k[i].def, e, sizeof(e)) == 0, "%s: %s", k[i].name, e);
    }
    ck_assert_ptr_nonnull(cfg_find("api-key-file", 12));
    ck_assert_ptr_null(cfg_find("nope", 4));
}
END_TEST

START_TEST(file_syntax) {
    ck_assert_int_eq(parse("# comment\n\n  port = 9000  \r\nhost=\"0.0.0.0\"\n"
                           "api_keys = a, b ,,c\nmodel = \" spaced \"\nlog_format = json\n"),
                     0);
    ck_assert_int_eq(c.port, 9000);
    ck_assert_str_eq(c.host, "0.0.0.0");
    ck_assert_int_eq(c.api_keys.n, 3);
    ck_assert_str_eq(c.api_keys.v[1], "b");
    ck_assert_str_eq(c.model, " spaced ");
    ck_assert_str_eq(c.log_format, "json");
    /* A file without a final newline, and an empty one. */
    ck_assert_int_eq(parse("slots = 2"), 0);
    ck_assert_int_eq(c.slots, 2);
    ck_assert_int_eq(parse(""), 0);
}
END_TEST

START_TEST(errors_name_key_and_line) {
    ck_assert_int_ne(parse("port = 1\n# x\nport = 70000\n"), 0);
    ck_assert_str_eq(err, "test.conf:3: port: 70000 is out of range (0..65535)");
    ck_assert_int_ne(parse("\nslots = many\n"), 0);
    ck_assert_str_eq(err, "test.conf:2: slots: 'many' is not an integer");
    ck_assert_int_ne(parse("keepalive = 1e999\n"), 0);
    ck_assert_ptr_nonnull(strstr(err, "test.conf:1: keepalive:"));
    ck_assert_int_ne(parse("frobnicate = 1\n"), 0);
    ck_assert_str_eq(err, "test.conf:1: unknown key 'frobnicate'");
    ck_assert_int_ne(parse("just words\n"), 0);
    ck_assert_str_eq(err, "test.conf:1: expected 'key = value'");
    ck_assert_int_ne(parse("log_level = loud\n"), 0);
    ck_assert_str_eq(err, "test.conf:1: log_level: 'loud' is not one of error|warn|info|debug");
    ck_assert_int_ne(parse("mlock = maybe\n"), 0);
    ck_assert_ptr_nonnull(strstr(err, "not a boolean"));
    ck_assert_int_ne(parse("host = \"x\n"), 0);
    ck_assert_ptr_nonnull(strstr(err, "unbalanced quote"));
    ck_assert_int_ne(parse("port = 1\x01\n"), 0);
    ck_assert_int_ne(cfg_parse_text(&c, "port = 1\0\n", 10, "t", err, sizeof(err)), 0);
    ck_assert_ptr_nonnull(strstr(err, "NUL"));
    /* A failed parse leaves earlier values of other keys alone. */
    ck_assert_int_eq(c.port, 1);
}
END_TEST

START_TEST(environment_and_flags) {
    char *envp[] = {"PATH=/bin",         "EDGELLM_SLOTS=3",      "EDGELLM_QUEUE=7",
                    "EDGELLM_UNKNOWN=1", "EDGELLM_API_KEYS=x,y", NULL};
    char *argv[] = {
        "edgellmd", "--queue", "9", "--insecure-no-auth", "-m", "m.gguf", "--cors-origins=http://a",
        NULL};
    enum cfg_action act;
    ck_assert_int_eq(cfg_load_all(&c, 7, argv, envp, &act, err, sizeof(err)), 0);
    ck_assert_int_eq(act, CFG_RUN);
    ck_assert_int_eq(c.slots, 3);
    ck_assert_int_eq(c.queue, 9); /* flag beats environment */
    ck_assert(c.insecure_no_auth);
    ck_assert_str_eq(c.model, "m.gguf");
    ck_assert_int_eq(c.api_keys.n, 2);
    ck_assert_str_eq(c.cors_origins.v[0], "http://a");

    char *bad_env[] = {"EDGELLM_PORT=-1", NULL};
    char *none[] = {"edgellmd", NULL};
    ck_assert_int_ne(cfg_load_all(&c, 1, none, bad_env, &act, err, sizeof(err)), 0);
    ck_assert_str_eq(err, "EDGELLM_PORT: -1 is out of range (0..65535)");
    char *bad_flag[] = {"edgellmd", "--port", NULL};
    ck_assert_int_ne(cfg_load_all(&c, 2, bad_flag, NULL, &act, err, sizeof(err)), 0);
    ck_assert_str_eq(err, "--port needs a value");
    char *unknown[] = {"edgellmd", "--nope", "1", NULL};
    ck_assert_int_ne(cfg_load_all(&c, 3, unknown, NULL, &act, err, sizeof(err)), 0);
    ck_assert_ptr_nonnull(strstr(err, "unknown option '--nope'"));
    char *stray[] = {"edgellmd", "model.gguf", NULL};
    ck_assert_int_ne(cfg_load_all(&c, 2, stray, NULL, &act, err, sizeof(err)), 0);
    char *help[] = {"edgellmd", "--port", "x", "--help", NULL};
    ck_assert_int_eq(cfg_load_all(&c, 4, help, NULL, &act, err, sizeof(err)), 0);
    ck_assert_int_eq(act, CFG_HELP);
    char *missing[] = {"edgellmd", "--config", "/nonexistent/edgellmd.conf", NULL};
    ck_assert_int_ne(cfg_load_all(&c, 3, missing, NULL, &act, err, sizeof(err)), 0);
    ck_assert_ptr_nonnull(strstr(err, "/nonexistent/edgellmd.conf"));
}
END_TEST

START_TEST(cross_checks) {
    ck_assert_int_eq(cfg_check(&c, 0, err, sizeof(err)), 0);
    free(c.host);
    c.host = strdup("0.0.0.0");
    ck_assert_int_ne(cfg_check(&c, 0, err, sizeof(err)), 0);
    ck_assert_ptr_nonnull(strstr(err, "without an API key"));
    ck_assert_int_eq(cfg_check(&c, 1, err, sizeof(err)), 0);
    c.insecure_no_auth = true;
    ck_assert_int_eq(cfg_check(&c, 0, err, sizeof(err)), 0);
    c.prefill_chunk = c.batch + 1;
    ck_assert_int_ne(cfg_check(&c, 0, err, sizeof(err)), 0);
    ck_assert(cfg_host_is_loopback("127.0.0.1"));
    ck_assert(cfg_host_is_loopback("127.1.2.3"));
    ck_assert(cfg_host_is_loopback("::1"));
    ck_assert(cfg_host_is_loopback("localhost"));
    ck_assert(!cfg_host_is_loopback("127.0.0.1.evil.example"));
    ck_assert(!cfg_host_is_loopback("0.0.0.0"));
    ck_assert(!cfg_host_is_loopback("192.168.1.2"));
    ck_assert(!cfg_host_is_loopback("::"));
}
END_TEST

START_TEST(print_reads_back) {
    ck_assert_int_eq(parse("port = 1234\nkeepalive = 2.5\ncors_origins = http://a, http://b\n"
                           "api_keys = secret1\nmodel = /m/x.gguf\n"),
                     0);
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    cfg_print(&c, f);
    fclose(f);
    ck_assert_ptr_null(strstr(buf, "secret1"));
    struct srv_config d;
    ck_assert_int_eq(cfg_init(&d), 0);
    ck_assert_int_eq(cfg_parse_text(&d, buf, len, "printed", err, sizeof(err)), 0);
    int n;
    const struct cfg_key *k = cfg_keys(&n);
    for (int i = 0; i < n; i++)
        if (!(k[i].flags & CFG_SECRET)) ck_assert_msg(!cfg_differs(&c, &d, &k[i]), "%s", k[i].name);
    struct srv_config e;
    ck_assert_int_eq(cfg_copy(&e, &c), 0);
    for (int i = 0; i < n; i++) ck_assert(!cfg_differs(&c, &e, &k[i]));
    cfg_free(&e);
    cfg_free(&d);
    free(buf);
}
END_TEST

Suite *server_config_suite(void) {
    Suite *s = suite_create("server_config");
    TCase *tc = tcase_create("config");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, defaults_follow_the_table);
    tcase_add_test(tc, file_syntax);
    tcase_add_test(tc, errors_name_key_and_line);
    tcase_add_test(tc, environment_and_flags);
    tcase_add_test(tc, cross_checks);
    tcase_add_test(tc, print_reads_back);
    suite_add_tcase(s, tc);
    return s;
}
