/* Log lines: the human form as before, JSON lines that jansson parses
 * back to what was logged (whatever the bytes), fields, AUTO, levels. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>
#include <jansson.h>

#include "saga_log.h"

/* 2026-11-24T19:31:27.123Z */
static const struct timespec when = {1795548687, 123456789};

static json_t *parse_line(const char *text)
{
    json_error_t e;
    size_t len = strlen(text);
    json_t *o;
    assert_true(len > 0 && text[len - 1] == '\n');
    assert_null(memchr(text, '\n', len - 1)); /* one line */
    o = json_loadb(text, len, 0, &e);
    if (o == NULL)
        fail_msg("not JSON (%s): %s", e.text, text);
    assert_true(json_is_object(o));
    return o;
}

static void test_human(void **state)
{
    char buf[512];
    saga_log_ctx ctx = {.saga_id = "0b5c3d9e-6a43-4f7e-9a51-2f8d0c1e7b22",
                        .step = "reserve credit",
                        .attempt = 2,
                        .trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"};
    size_t n;
    (void)state;
    n = saga_log_format_line(buf, sizeof buf, SAGA_LOG_FORMAT_HUMAN, SAGA_LOG_INFO, &when,
                             NULL, "sagad running: replies from saga.reply");
    assert_string_equal(buf, "2026-11-24T19:31:27.123Z INFO  sagad running: replies from "
                             "saga.reply\n");
    assert_int_equal(n, strlen(buf));
    saga_log_format_line(buf, sizeof buf, SAGA_LOG_FORMAT_HUMAN, SAGA_LOG_WARN, &when,
                         &ctx, "reply ignored");
    assert_string_equal(buf, "2026-11-24T19:31:27.123Z WARN  reply ignored "
                             "saga_id=0b5c3d9e-6a43-4f7e-9a51-2f8d0c1e7b22 "
                             "step=\"reserve credit\" attempt=2 "
                             "trace_id=4bf92f3577b34da6a3ce929d0e0e4736\n");
}

static void test_json_fields(void **state)
{
    char buf[1024];
    saga_log_ctx ctx = {.saga_id = "0b5c3d9e-6a43-4f7e-9a51-2f8d0c1e7b22",
                        .step = "reserve_credit",
                        .attempt = 3,
                        .trace_id = "4bf92f3577b34da6a3ce929d0e0e4736",
                        .span_id = "00f067aa0ba902b7"};
    json_t *o;
    (void)state;
    saga_log_format_line(buf, sizeof buf, SAGA_LOG_FORMAT_JSON, SAGA_LOG_ERROR, &when,
                         &ctx, "step timed out");
    assert_string_equal(buf, "{\"time\":\"2026-11-24T19:31:27.123Z\",\"level\":\"error\","
                             "\"msg\":\"step timed out\","
                             "\"saga_id\":\"0b5c3d9e-6a43-4f7e-9a51-2f8d0c1e7b22\","
                             "\"step\":\"reserve_credit\",\"attempt\":3,"
                             "\"trace_id\":\"4bf92f3577b34da6a3ce929d0e0e4736\","
                             "\"span_id\":\"00f067aa0ba902b7\"}\n");
    o = parse_line(buf);
    assert_int_equal(json_integer_value(json_object_get(o, "attempt")), 3);
    json_decref(o);
    /* Unset fields are left out. */
    saga_log_format_line(buf, sizeof buf, SAGA_LOG_FORMAT_JSON, SAGA_LOG_DEBUG, &when,
                         &(saga_log_ctx){.trace_id = "t"}, "x");
    o = parse_line(buf);
    assert_int_equal(json_object_size(o), 4);
    assert_string_equal(json_string_value(json_object_get(o, "level")), "debug");
    assert_string_equal(json_string_value(json_object_get(o, "trace_id")), "t");
    json_decref(o);
}

/* Whatever bytes a message holds, the line is valid JSON and says the same
 * (invalid UTF-8 becomes U+FFFD). */
static void test_json_escaping(void **state)
{
    static const struct {
        const char *in, *out;
    } cases[] = {
        {"say \"hi\"", "say \"hi\""},
        {"C:\\dir\\", "C:\\dir\\"},
        {"two\nlines\r\tand\x01\x1f\x7f", "two\nlines\r\tand\x01\x1f\x7f"},
        {"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80",
         "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80"},
        {"bad \xff byte", "bad \xef\xbf\xbd byte"},
        {"cut \xc3", "cut \xef\xbf\xbd"},
        {"overlong \xc0\xaf", "overlong \xef\xbf\xbd\xef\xbf\xbd"},
        {"surrogate \xed\xa0\x80", "surrogate \xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"},
        {"</script>", "</script>"},
        {"", ""},
    };
    char buf[1024];
    (void)state;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        saga_log_ctx ctx = {.saga_id = cases[i].in, .step = cases[i].in};
        json_t *o;
        saga_log_format_line(buf, sizeof buf, SAGA_LOG_FORMAT_JSON, SAGA_LOG_INFO, &when,
                             &ctx, cases[i].in);
        o = parse_line(buf);
        assert_string_equal(json_string_value(json_object_get(o, "msg")), cases[i].out);
        assert_string_equal(json_string_value(json_object_get(o, "saga_id")),
                            cases[i].out);
        json_decref(o);
    }
}

static void test_truncation(void **state)
{
    char small[16], big[256];
    size_t need;
    (void)state;
    need = saga_log_format_line(big, sizeof big, SAGA_LOG_FORMAT_JSON, SAGA_LOG_INFO,
                                &when, NULL, "hello");
    memset(small, 'x', sizeof small);
    assert_int_equal(saga_log_format_line(small, sizeof small, SAGA_LOG_FORMAT_JSON,
                                          SAGA_LOG_INFO, &when, NULL, "hello"),
                     need);
    assert_int_equal(strlen(small), sizeof small - 1);
    assert_memory_equal(small, big, sizeof small - 1);
    assert_int_equal(saga_log_format_line(NULL, 0, SAGA_LOG_FORMAT_JSON, SAGA_LOG_INFO,
                                          &when, NULL, "hello"),
                     need);
}

/* Read what was logged to f since the start. */
static char *slurp(FILE *f)
{
    long n;
    char *text;
    fflush(f);
    n = ftell(f);
    text = calloc(1, (size_t)n + 1);
    rewind(f);
    assert_int_equal(fread(text, 1, (size_t)n, f), (size_t)n);
    return text;
}

static void test_logging_to_a_file(void **state)
{
    FILE *f = tmpfile();
    char *text, *line, *save = NULL;
    char big[6000];
    int n = 0;
    (void)state;
    assert_non_null(f);
    saga_log_set_output(f);
    saga_log_set_format(SAGA_LOG_FORMAT_AUTO);
    /* A file is not a terminal: AUTO means JSON. */
    assert_int_equal(saga_log_effective_format(), SAGA_LOG_FORMAT_JSON);
    saga_log_set_level(SAGA_LOG_INFO);
    saga_log(SAGA_LOG_DEBUG, "not shown %d", 1);
    saga_log(SAGA_LOG_INFO, "stopped: %d replies applied, %d duplicates ignored", 7, 2);
    saga_log_fields(SAGA_LOG_WARN, &(saga_log_ctx){.saga_id = "abc", .attempt = 4},
                    "reply for step %d ignored", 1);
    saga_log_fields(SAGA_LOG_ERROR, NULL, "no ctx");
    /* A message longer than the stack buffer is cut, but the line is whole. */
    memset(big, '"', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    saga_log(SAGA_LOG_INFO, "%s", big);
    text = slurp(f);
    for (line = strtok_r(text, "\n", &save); line != NULL;
         line = strtok_r(NULL, "\n", &save), n++) {
        char with_nl[20000];
        json_t *o;
        snprintf(with_nl, sizeof with_nl, "%s\n", line);
        o = parse_line(with_nl);
        if (n == 0) {
            assert_string_equal(json_string_value(json_object_get(o, "msg")),
                                "stopped: 7 replies applied, 2 duplicates ignored");
            assert_string_equal(json_string_value(json_object_get(o, "level")), "info");
        } else if (n == 1) {
            assert_string_equal(json_string_value(json_object_get(o, "saga_id")), "abc");
            assert_int_equal(json_integer_value(json_object_get(o, "attempt")), 4);
        } else if (n == 3) {
            assert_true(strlen(json_string_value(json_object_get(o, "msg"))) > 4000);
        }
        json_decref(o);
    }
    assert_int_equal(n, 4);
    free(text);
    fclose(f);

    /* Explicit human, the old shape: time, padded level, message. */
    f = tmpfile();
    saga_log_set_output(f);
    saga_log_set_format(SAGA_LOG_FORMAT_HUMAN);
    saga_log(SAGA_LOG_WARN, "refusing to start: %s", "unknown key \"acton\"");
    text = slurp(f);
    assert_non_null(strstr(text, "Z WARN  refusing to start: unknown key \"acton\"\n"));
    assert_int_equal(text[4], '-');
    free(text);
    fclose(f);
    saga_log_set_output(NULL);
    saga_log_set_format(SAGA_LOG_FORMAT_AUTO);
}

static void test_parse(void **state)
{
    (void)state;
    assert_int_equal(saga_log_parse_format("auto"), SAGA_LOG_FORMAT_AUTO);
    assert_int_equal(saga_log_parse_format("human"), SAGA_LOG_FORMAT_HUMAN);
    assert_int_equal(saga_log_parse_format("json"), SAGA_LOG_FORMAT_JSON);
    assert_int_equal(saga_log_parse_format("JSON"), -1);
    assert_int_equal(saga_log_parse_format(NULL), -1);
    assert_int_equal(saga_log_parse_level("warn"), SAGA_LOG_WARN);
    assert_int_equal(saga_log_parse_level("loud"), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_human),
        cmocka_unit_test(test_json_fields),
        cmocka_unit_test(test_json_escaping),
        cmocka_unit_test(test_truncation),
        cmocka_unit_test(test_logging_to_a_file),
        cmocka_unit_test(test_parse),
    };
    return cmocka_run_group_tests_name("log lines", tests, NULL, NULL);
}
