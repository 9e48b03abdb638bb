/* sdk/internal/saga_shared.h: the growth helper (doubling from a first
 * size, exact capacities, refusal of sizes that would overflow with the old
 * array kept) and the topic names both libsaga and sagad build (and how a
 * name too long for its buffer shows). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <librdkafka/rdkafka.h>
#include <sys/stat.h>
#include <unistd.h>

#include "saga/error.h"
#include "saga_shared.h"

typedef struct pair {
    int64_t a, b;
} pair;

static void test_grow_doubles_from_first(void **state)
{
    (void)state;
    pair *items = NULL;
    int cap = 0;
    assert_int_equal(saga__grow(&items, &cap, 1, sizeof *items, 4), SAGA_OK);
    assert_non_null(items);
    assert_int_equal(cap, 4);
    for (int i = 0; i < 4; i++)
        items[i] = (pair){i, -i};
    /* Enough room already: nothing moves. */
    pair *before = items;
    assert_int_equal(saga__grow(&items, &cap, 4, sizeof *items, 4), SAGA_OK);
    assert_ptr_equal(items, before);
    assert_int_equal(cap, 4);
    /* One more doubles; a big jump doubles until it fits. */
    assert_int_equal(saga__grow(&items, &cap, 5, sizeof *items, 4), SAGA_OK);
    assert_int_equal(cap, 8);
    assert_int_equal(saga__grow(&items, &cap, 100, sizeof *items, 4), SAGA_OK);
    assert_int_equal(cap, 128);
    for (int i = 0; i < 4; i++) {
        assert_int_equal(items[i].a, i);
        assert_int_equal(items[i].b, -i);
    }
    free(items);
}

static void test_grow_default_first(void **state)
{
    (void)state;
    char *bytes = NULL;
    int cap = 0;
    assert_int_equal(saga__grow(&bytes, &cap, 3, 1, 0), SAGA_OK);
    assert_int_equal(cap, 8);
    free(bytes);
}

static void test_grow_refuses_overflow(void **state)
{
    (void)state;
    int *items = NULL;
    int cap = 0;
    assert_int_equal(saga__grow(&items, &cap, 2, sizeof *items, 2), SAGA_OK);
    items[0] = 42;
    int *before = items;
    /* More than 2^30 elements, or more bytes than size_t holds: refused,
     * the array and its capacity unchanged. */
    assert_int_equal(saga__grow(&items, &cap, 0x40000000, sizeof *items, 2), SAGA_ENOMEM);
    assert_ptr_equal(items, before);
    assert_int_equal(cap, 2);
    assert_int_equal(saga__grow(&items, &cap, 3, SIZE_MAX / 2, 2), SAGA_ENOMEM);
    assert_ptr_equal(items, before);
    assert_int_equal(cap, 2);
    assert_int_equal(items[0], 42);
    free(items);
}

static void test_error_set(void **state)
{
    saga_error err = {0};
    char big[2000];
    (void)state;
    assert_int_equal(saga__error_set(&err, SAGA_EDB, "table %s", "t"), SAGA_EDB);
    assert_int_equal(err.code, SAGA_EDB);
    assert_string_equal(err.message, "table t");
    assert_int_equal(saga__error_set(NULL, SAGA_EIO, "ignored"), SAGA_EIO);
    /* A long message is cut to fit, still terminated. */
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    assert_int_equal(saga__error_set(&err, SAGA_EINVAL, "%s", big), SAGA_EINVAL);
    assert_int_equal(strlen(err.message), sizeof err.message - 1);
}

static void test_topic_names(void **state)
{
    (void)state;
    char buf[64];
    assert_int_equal(saga__topic_cmd(buf, sizeof buf, "saga.", "payment"), 16);
    assert_string_equal(buf, "saga.cmd.payment");
    assert_int_equal(saga__topic_reply(buf, sizeof buf, "acme."), 10);
    assert_string_equal(buf, "acme.reply");
    assert_int_equal(saga__topic_reply(buf, sizeof buf, NULL), 10);
    assert_string_equal(buf, "saga.reply");
    /* Cut: the full length comes back, so callers can tell. */
    assert_int_equal(saga__topic_cmd(buf, 10, "saga.", "payment"), 16);
    assert_string_equal(buf, "saga.cmd.");
}

/* Settings from a file: one key=value a line, commas in values kept,
 * comments and blank lines skipped, errors with the file and line, never a
 * secret's value. */
static void test_kafka_options_file(void **state)
{
    char path[] = "/tmp/saga-test-kafkaXXXXXX", v[64];
    size_t vlen = sizeof v;
    saga_error err = {0};
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    FILE *f;
    int fd = mkstemp(path);
    (void)state;
    assert_true(fd >= 0);
    f = fdopen(fd, "w");
    fputs("# TLS and SASL\n\n  client.id = a,b=c\r\nlinger.ms=7\n", f);
    fclose(f);
    /* It holds passwords: readable by others, it is refused. */
    assert_int_equal(chmod(path, 0644), 0);
    assert_int_equal(saga__kafka_apply_options(conf, NULL, path, &err), SAGA_EIO);
    assert_non_null(strstr(err.message, "readable or writable by others"));
    assert_int_equal(chmod(path, 0640), 0);
    assert_int_equal(saga__kafka_apply_options(conf, "linger.ms=1", path, &err), SAGA_OK);
    assert_int_equal(rd_kafka_conf_get(conf, "client.id", v, &vlen), RD_KAFKA_CONF_OK);
    /* The value runs to the end of the line, commas and '=' and all. */
    assert_string_equal(v, "a,b=c");
    vlen = sizeof v;
    assert_int_equal(rd_kafka_conf_get(conf, "linger.ms", v, &vlen), RD_KAFKA_CONF_OK);
    assert_string_equal(v, "7"); /* the file comes after the string */

    f = fopen(path, "w");
    fputs("linger.ms=1\nsasl.password\n", f);
    fclose(f);
    assert_int_equal(saga__kafka_apply_options(conf, NULL, path, &err), SAGA_EINVAL);
    assert_non_null(strstr(err.message, ":2: not of the form key=value"));
    f = fopen(path, "w");
    fputs("sasl.mechanisms=SCRAM-SHA-512\nssl.key.password=hunter2\nno.such=hunter2\n",
          f);
    fclose(f);
    assert_int_equal(saga__kafka_apply_options(conf, NULL, path, &err), SAGA_EINVAL);
    assert_non_null(strstr(err.message, ":3: Kafka setting no.such"));
    /* A refused secret setting is named, its value is not shown. */
    assert_int_equal(
        saga__kafka_apply_options(conf, "sasl.password.nope=hunter2", NULL, &err),
        SAGA_EINVAL);
    assert_null(strstr(err.message, "hunter2"));
    assert_non_null(strstr(err.message, "sasl.password.nope"));
    unlink(path);
    assert_int_equal(saga__kafka_apply_options(conf, NULL, path, &err), SAGA_EIO);
    assert_non_null(strstr(err.message, path));
    rd_kafka_conf_destroy(conf);
}

/* A secret file: its first line that is not a comment, trimmed; refused
 * when others may read it. */
static void test_read_secret(void **state)
{
    char path[] = "/tmp/saga-test-secretXXXXXX", *out = NULL;
    saga_error err = {0};
    int fd = mkstemp(path);
    FILE *f = fdopen(fd, "w");
    (void)state;
    fputs("# the orchestrator's database\n\n  postgresql://u:pw@h/db  \n", f);
    fclose(f);
    assert_int_equal(chmod(path, 0640), 0);
    assert_int_equal(saga__read_secret(path, &out, &err), SAGA_OK);
    assert_string_equal(out, "postgresql://u:pw@h/db");
    free(out);
    assert_int_equal(chmod(path, 0604), 0);
    assert_int_equal(saga__read_secret(path, &out, &err), SAGA_EIO);
    assert_null(out);
    assert_non_null(strstr(err.message, "chmod o-rwx"));
    assert_null(strstr(err.message, "pw@"));
    f = fopen(path, "w");
    fputs("# nothing\n", f);
    fclose(f);
    assert_int_equal(chmod(path, 0600), 0);
    assert_int_equal(saga__read_secret(path, &out, &err), SAGA_EINVAL);
    unlink(path);
    assert_int_equal(saga__read_secret(path, &out, &err), SAGA_EIO);
}

/* JSON as PostgreSQL prints it: an integer literal too long for jansson
 * (1e300 printed with all its digits) is read as a real; strings and
 * ordinary integers stay as they are; what is not JSON stays refused. */
static void test_json_from_pg(void **state)
{
    json_error_t jerr;
    char text[600];
    json_t *j;
    (void)state;
    snprintf(text, sizeof text,
             "{\"big\": -1%0300d, \"s\": \"12345678901234567890123\\\" 9\", \"n\": 5,"
             " \"a\": [12345678901234567890, 1.5]}",
             0);
    j = saga__json_from_pg(text, 0, &jerr);
    assert_non_null(j);
    assert_true(json_is_real(json_object_get(j, "big")));
    assert_true(json_real_value(json_object_get(j, "big")) == -1e300);
    assert_string_equal(json_string_value(json_object_get(j, "s")),
                        "12345678901234567890123\" 9");
    assert_int_equal(json_integer_value(json_object_get(j, "n")), 5);
    assert_true(json_is_real(json_array_get(json_object_get(j, "a"), 0)));
    json_decref(j);
    j = saga__json_from_pg("{\"n\": 123456789012345678}", 0, &jerr);
    assert_true(json_is_integer(json_object_get(j, "n")));
    json_decref(j);
    assert_null(saga__json_from_pg("{\"n\": 1234567890123456789012", 0, &jerr));
    assert_null(saga__json_from_pg("not json", 0, &jerr));
}

/* A text cut inside a UTF-8 character ends before it; one cut between
 * characters stays whole. */
static void test_utf8_trim_tail(void **state)
{
    char a[] = "ab\xc3\xa9\xe2\x82"; /* "abé" and 2 of the 3 bytes of "€" */
    char b[] = "ab\xc3\xa9";         /* "abé": whole */
    char c[] = "\xf0\x9f\x98";       /* 3 of the 4 bytes of an emoji */
    char d[] = "plain";
    (void)state;
    saga__utf8_trim_tail(a, strlen(a));
    assert_string_equal(a, "ab\xc3\xa9");
    saga__utf8_trim_tail(b, strlen(b));
    assert_string_equal(b, "ab\xc3\xa9");
    saga__utf8_trim_tail(c, strlen(c));
    assert_string_equal(c, "");
    saga__utf8_trim_tail(d, strlen(d));
    assert_string_equal(d, "plain");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_grow_doubles_from_first),
        cmocka_unit_test(test_grow_default_first),
        cmocka_unit_test(test_grow_refuses_overflow),
        cmocka_unit_test(test_error_set),
        cmocka_unit_test(test_topic_names),
        cmocka_unit_test(test_kafka_options_file),
        cmocka_unit_test(test_read_secret),
        cmocka_unit_test(test_json_from_pg),
        cmocka_unit_test(test_utf8_trim_tail),
    };
    return cmocka_run_group_tests_name("saga_shared.h", tests, NULL, NULL);
}
