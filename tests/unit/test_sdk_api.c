/* libsaga's API contracts that need no server: misuse is refused with an
 * error code, never a crash; NULL is safe where the header says so. The
 * participant's own contracts (registering twice, several outcomes,
 * deferring without a database, polling after a stop) run against
 * librdkafka's in-process mock cluster. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include "saga/saga.h"
#include "saga_shared.h"

#define ID "7a2d3e4f-5b6c-4d7e-8f90-abcdef012345"

static void test_version(void **state)
{
    (void)state;
    /* error.h, which every public header includes, gives the version. */
#if !defined(SAGA_VERSION_NUM) || SAGA_VERSION_NUM < 0x000100
#error "SAGA_VERSION_NUM missing or wrong"
#endif
    /* Against literal numbers, not the expression that defines them: a
     * release changes this test on purpose. */
    assert_int_equal(SAGA_VERSION_MAJOR, 0);
    assert_int_equal(SAGA_VERSION_MINOR, 5);
    assert_int_equal(SAGA_VERSION_PATCH, 1);
    assert_int_equal(SAGA_VERSION_NUM, 0x000501);
    assert_string_equal(SAGA_VERSION_STRING, "0.5.1");
    /* The library linked says the same as these headers. */
    assert_string_equal(saga_version(), "0.5.1");
    assert_int_equal(saga_version_num(), 0x000501);
}

/* The structs a caller allocates can grow: a program built against other
 * headers passes its own size, and libsaga writes exactly that many bytes
 * (here an older, shorter stats struct followed by bytes it must not
 * touch) and refuses options shorter than libsaga.so.1's first layout. */
/* New saga ids: UUID version 7, variant 10, their first 48 bits the
 * wall clock's milliseconds, so ids made later sort after (docs/
 * PERFORMANCE.md: the indexes keyed by saga id then grow at one end). */
static void test_saga_ids(void **state)
{
    char prev[SAGA_ID_LEN + 1] = "", id[SAGA_ID_LEN + 1];
    (void)state;
    for (int i = 0; i < 2000; i++) {
        int64_t before = saga__wall_ms(), after;
        unsigned long long ms;
        char hex[13];
        assert_int_equal(saga__id_new(id, NULL), SAGA_OK);
        after = saga__wall_ms();
        assert_int_equal(strlen(id), 36);
        assert_true(id[8] == '-' && id[13] == '-' && id[18] == '-' && id[23] == '-');
        assert_int_equal(id[14], '7');
        assert_non_null(strchr("89ab", id[19]));
        for (int k = 0; k < 36; k++)
            if (k != 8 && k != 13 && k != 18 && k != 23)
                assert_non_null(strchr("0123456789abcdef", id[k]));
        memcpy(hex, id, 8);
        memcpy(hex + 8, id + 9, 4);
        hex[12] = '\0';
        ms = strtoull(hex, NULL, 16);
        assert_true((int64_t)ms >= before && (int64_t)ms <= after);
        /* Ordered across milliseconds; within one, the random bits decide. */
        if (prev[0] != '\0' && strncmp(prev, id, 13) != 0)
            assert_true(strcmp(prev, id) < 0);
        assert_string_not_equal(prev, id);
        memcpy(prev, id, sizeof id);
    }
}

static void test_structs_can_grow(void **state)
{
    unsigned char buf[sizeof(saga_participant_stats) + 64];
    const size_t old = offsetof(saga_participant_stats, dead_lettered);
    saga_participant_options o = {0};
    saga_participant *p = NULL;
    saga_error err = {0};
    (void)state;
    memset(buf, 0xA5, sizeof buf);
    assert_int_equal(
        saga_participant_get_stats_sized(NULL, (saga_participant_stats *)buf, old),
        SAGA_EINVAL);
    for (size_t i = 0; i < old; i++)
        assert_int_equal(buf[i], 0); /* zeroed, as documented */
    for (size_t i = old; i < sizeof buf; i++)
        assert_int_equal(buf[i], 0xA5); /* and nothing past the caller's size */
    /* A newer program's larger struct: all of it is written. */
    memset(buf, 0xA5, sizeof buf);
    assert_int_equal(
        saga_participant_get_stats_sized(NULL, (saga_participant_stats *)buf, sizeof buf),
        SAGA_EINVAL);
    for (size_t i = 0; i < sizeof buf; i++)
        assert_int_equal(buf[i], 0);
    assert_int_equal(saga_participant_get_stats_sized(NULL, NULL, sizeof buf),
                     SAGA_EINVAL);
    /* Options: shorter than the first layout is refused with both sizes;
     * the macro passes this header's size. */
    o.brokers = "127.0.0.1:1";
    o.service = "x";
    assert_int_equal(saga_participant_new_sized(
                         &o, offsetof(saga_participant_options, tx_ms), &p, &err),
                     SAGA_EINVAL);
    assert_non_null(strstr(err.message, "fewer than the"));
    assert_null(p);
    /* A newer program's struct: unknown fields unset are fine (refused
     * here only for the empty brokers), one set is refused by its byte. */
    {
        unsigned char big[sizeof o + 32];
        memset(big, 0, sizeof big);
        o.brokers = "";
        memcpy(big, &o, sizeof o);
        assert_int_equal(saga_participant_new_sized((saga_participant_options *)big,
                                                    sizeof big, &p, &err),
                         SAGA_EINVAL);
        assert_non_null(strstr(err.message, "brokers is \"\""));
        big[sizeof o + 5] = 1;
        assert_int_equal(saga_participant_new_sized((saga_participant_options *)big,
                                                    sizeof big, &p, &err),
                         SAGA_EINVAL);
        assert_non_null(strstr(err.message, "is set, but this libsaga"));
        assert_null(p);
    }
}

static void test_participant_misuse(void **state)
{
    saga_participant *p = (saga_participant *)0x1;
    saga_participant_options o = {0};
    saga_participant_stats st = {0};
    saga_error err = {0};
    (void)state;
    assert_int_equal(saga_participant_new(NULL, &p, &err), SAGA_EINVAL);
    assert_non_null(strstr(err.message, "brokers and service"));
    o.service = "x";
    o.brokers = ""; /* would fail only after the 10 s topic wait: refused at once */
    assert_int_equal(saga_participant_new(&o, &p, &err), SAGA_EINVAL);
    assert_non_null(strstr(err.message, "brokers is \"\""));
    o.service = NULL;
    o.brokers = "127.0.0.1:1";
    assert_int_equal(saga_participant_new(&o, &p, &err), SAGA_EINVAL); /* no service */
    assert_non_null(strstr(err.message, "service is NULL"));
    o.service = "";
    assert_int_equal(saga_participant_new(&o, &p, &err), SAGA_EINVAL);
    o.service = "x";
    o.kafka_options = "linger.ms"; /* not key=value */
    assert_int_equal(saga_participant_new(&o, &p, &err), SAGA_EINVAL);
    assert_non_null(strstr(err.message, "linger.ms"));
    o.kafka_options = "no.such.setting=1"; /* refused by librdkafka */
    assert_int_equal(saga_participant_new(&o, &p, &err), SAGA_EINVAL);
    assert_int_equal(err.code, SAGA_EINVAL);
    assert_non_null(strstr(err.message, "no.such.setting"));
    o.kafka_options = NULL;
    /* Files that cannot be read are said with their path, before any
     * connection is tried. */
    o.kafka_options_file = "/nonexistent/kafka.conf";
    assert_int_equal(saga_participant_new(&o, &p, &err), SAGA_EIO);
    assert_non_null(strstr(err.message, "/nonexistent/kafka.conf"));
    o.kafka_options_file = NULL;
    o.key_file = "/nonexistent/payment.key";
    assert_int_equal(saga_participant_new(&o, &p, &err), SAGA_EIO);
    assert_non_null(strstr(err.message, "/nonexistent/payment.key"));
    o.key_file = NULL;
    o.db_url = "postgresql://nobody@127.0.0.1:1/none";
    o.db_schema = "bad schema";
    assert_int_equal(saga_participant_new(&o, &p, &err), SAGA_EINVAL);
    assert_non_null(strstr(err.message, "db_schema"));
    assert_int_equal(saga_participant_new(&o, NULL, &err), SAGA_EINVAL);
    assert_int_equal(saga_participant_on(NULL, SAGA_PHASE_INVOKE, "a", NULL, NULL),
                     SAGA_EINVAL);
    assert_int_equal(saga_participant_poll(NULL, 0, &err), SAGA_EINVAL);
    assert_int_equal(saga_participant_run(NULL, &err), SAGA_EINVAL);
    assert_int_equal(saga_participant_fd(NULL), -1);
    saga_participant_stop(NULL);
    assert_int_equal(saga_participant_get_stats(NULL, &st), SAGA_EINVAL);
    assert_string_equal(saga_participant_last_warning(NULL), "");
    saga_participant_free(NULL);
}

static void test_results_and_deferral_misuse(void **state)
{
    (void)state;
    /* Outcomes on no result are ignored (the output is freed, not leaked). */
    saga_result_ok(NULL, json_object());
    saga_result_fail(NULL, "c", "m");
    saga_result_retry(NULL, 5, "m");
    assert_null(saga_result_defer(NULL));
    assert_int_equal(saga_deferred_ok(NULL, NULL, json_object()), SAGA_EINVAL);
    assert_int_equal(saga_deferred_fail(NULL, NULL, "c", "m"), SAGA_EINVAL);
    assert_int_equal(saga_deferred_retry(NULL, NULL, 1, "m"), SAGA_EINVAL);
}

static void test_client_misuse(void **state)
{
    saga_client *c = NULL;
    saga_error err = {0};
    char id[SAGA_ID_LEN + 1], status[32];
    (void)state;
    assert_int_equal(saga_client_new(NULL, &c, &err), SAGA_EINVAL);
    assert_int_equal(saga_client_new("postgresql://nobody@127.0.0.1:1/none", &c, &err),
                     SAGA_EDB);
    assert_null(c);
    assert_non_null(strstr(err.message, "cannot connect"));
    assert_int_equal(saga_client_start(NULL, "x", NULL, NULL, id, NULL, &err),
                     SAGA_EINVAL);
    assert_int_equal(saga_client_status(NULL, "x", status, &err), SAGA_EINVAL);
    saga_client_free(NULL);
}

static void test_errors(void **state)
{
    (void)state;
    for (int code = SAGA_EAUTH; code <= SAGA_OK; code++)
        assert_string_not_equal(saga_strerror(code), "unknown error");
    assert_string_equal(saga_strerror(-12345), "unknown error");
}

/* ---- against librdkafka's mock cluster ---- */

static rd_kafka_t *mock_rk, *mock_prod, *mock_replies;
static rd_kafka_mock_cluster_t *mock;
static saga_participant *mp;
static saga_deferred *later;
static int twice_calls;

static int mock_setup(void **state)
{
    char errstr[256];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_topic_partition_list_t *parts;
    saga_participant_options o = {0};
    saga_error err = {0};
    (void)state;
    rd_kafka_conf_set(conf, "log_level", "0", errstr, sizeof errstr);
    mock_rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
    if (mock_rk == NULL || (mock = rd_kafka_mock_cluster_new(mock_rk, 1)) == NULL ||
        rd_kafka_mock_topic_create(mock, "saga.cmd.api", 1, 1) != 0 ||
        rd_kafka_mock_topic_create(mock, "saga.dead.api", 1, 1) != 0 ||
        rd_kafka_mock_topic_create(mock, "saga.reply", 1, 1) != 0 ||
        rd_kafka_mock_topic_create(mock, "saga.reply.api", 1, 1) != 0)
        return -1;
    o.brokers = rd_kafka_mock_cluster_bootstraps(mock);
    o.service = "api";
    if (saga_participant_new(&o, &mp, &err) != SAGA_OK) {
        fprintf(stderr, "participant on the mock cluster: %s\n", err.message);
        return -1;
    }
    conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "bootstrap.servers", o.brokers, errstr, sizeof errstr);
    rd_kafka_conf_set(conf, "log_level", "0", errstr, sizeof errstr);
    mock_prod = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
    /* The replies, read by assignment (no group needed). */
    conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "bootstrap.servers", o.brokers, errstr, sizeof errstr);
    rd_kafka_conf_set(conf, "log_level", "0", errstr, sizeof errstr);
    rd_kafka_conf_set(conf, "group.id", "api-test", errstr, sizeof errstr);
    mock_replies = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof errstr);
    if (mock_prod == NULL || mock_replies == NULL)
        return -1;
    parts = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(parts, "saga.reply", 0)->offset =
        RD_KAFKA_OFFSET_BEGINNING;
    rd_kafka_assign(mock_replies, parts);
    rd_kafka_topic_partition_list_destroy(parts);
    return 0;
}

static int mock_teardown(void **state)
{
    (void)state;
    saga_participant_free(mp);
    if (mock_replies != NULL) {
        rd_kafka_consumer_close(mock_replies);
        rd_kafka_destroy(mock_replies);
    }
    if (mock_prod != NULL)
        rd_kafka_destroy(mock_prod);
    if (mock != NULL)
        rd_kafka_mock_cluster_destroy(mock);
    if (mock_rk != NULL)
        rd_kafka_destroy(mock_rk);
    return 0;
}

/* Sets three outcomes: only the first is sent, two are ignored. */
static void on_twice(const saga_command *cmd, struct pg_conn *db, saga_result *r,
                     void *arg)
{
    (void)cmd;
    (void)db;
    (void)arg;
    twice_calls++;
    saga_result_ok(r, json_pack("{s:i}", "first", 1));
    saga_result_fail(r, "second", "ignored");
    saga_result_retry(r, 5, "ignored too");
}

/* Defers; the test completes it after poll returned. */
static void on_later(const saga_command *cmd, struct pg_conn *db, saga_result *r,
                     void *arg)
{
    (void)cmd;
    (void)db;
    (void)arg;
    later = saga_result_defer(r);
    assert_null(saga_result_defer(r)); /* only once */
}

static void on_nothing(const saga_command *cmd, struct pg_conn *db, saga_result *r,
                       void *arg)
{
    (void)cmd;
    (void)db;
    (void)r;
    (void)arg;
}

static void send_command(int step, const char *action)
{
    saga_command c = {0};
    saga_error err = {0};
    char cid[128], *text;
    memcpy(c.saga_id, ID, sizeof c.saga_id);
    c.v = SAGA_PROTOCOL_VERSION;
    c.saga = "api";
    c.saga_version = 1;
    c.step = step;
    c.step_name = (char *)action;
    c.phase = SAGA_PHASE_INVOKE;
    c.action = (char *)action;
    saga_command_id_format(cid, sizeof cid, ID, step, SAGA_PHASE_INVOKE);
    c.command_id = cid;
    c.attempt = 1;
    c.reply_to = "saga.reply";
    assert_int_equal(saga_command_encode(&c, &text, NULL, &err), SAGA_OK);
    assert_int_equal(rd_kafka_producev(mock_prod, RD_KAFKA_V_TOPIC("saga.cmd.api"),
                                       RD_KAFKA_V_KEY(ID, strlen(ID)),
                                       RD_KAFKA_V_VALUE(text, strlen(text)),
                                       RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                       RD_KAFKA_V_END),
                     RD_KAFKA_RESP_ERR_NO_ERROR);
    assert_int_equal(rd_kafka_flush(mock_prod, 10000), RD_KAFKA_RESP_ERR_NO_ERROR);
    free(text);
}

/* Poll until one command was handled (joining the group takes a while). */
static void handle_one(void)
{
    saga_error err = {0};
    int n = 0;
    for (int i = 0; i < 300 && n == 0; i++)
        if ((n = saga_participant_poll(mp, 100, &err)) < 0)
            fail_msg("poll: %s", err.message);
    assert_int_equal(n, 1);
}

static void next_reply(saga_reply *out)
{
    saga_error err = {0};
    for (int i = 0; i < 300; i++) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(mock_replies, 100);
        int rc;
        if (m == NULL)
            continue;
        if (m->err) {
            rd_kafka_message_destroy(m);
            continue;
        }
        rc = saga_reply_decode(m->payload, m->len, out, &err);
        rd_kafka_message_destroy(m);
        if (rc != SAGA_OK)
            fail_msg("reply: %s", err.message);
        return;
    }
    fail_msg("no reply within 30 s");
}

static void test_register(void **state)
{
    (void)state;
    assert_int_equal(saga_participant_on(mp, SAGA_PHASE_INVOKE, "twice", on_twice, NULL),
                     SAGA_OK);
    assert_int_equal(saga_participant_on(mp, SAGA_PHASE_INVOKE, "later", on_later, NULL),
                     SAGA_OK);
    /* The same name in the other phase is another handler. */
    assert_int_equal(
        saga_participant_on(mp, SAGA_PHASE_COMPENSATE, "twice", on_nothing, NULL),
        SAGA_OK);
    /* Registered twice: refused, and the first registration stays. */
    assert_int_equal(
        saga_participant_on(mp, SAGA_PHASE_INVOKE, "twice", on_nothing, NULL),
        SAGA_EEXIST);
    assert_int_equal(
        saga_participant_on(mp, SAGA_PHASE_COMPENSATE, "twice", on_nothing, NULL),
        SAGA_EEXIST);
    assert_int_equal(saga_participant_on(mp, (saga_phase)2, "other", on_nothing, NULL),
                     SAGA_EINVAL);
    assert_int_equal(saga_participant_on(mp, (saga_phase)-1, "other", on_nothing, NULL),
                     SAGA_EINVAL);
    assert_int_equal(saga_participant_on(mp, SAGA_PHASE_INVOKE, "", on_nothing, NULL),
                     SAGA_EINVAL);
    assert_int_equal(saga_participant_on(mp, SAGA_PHASE_INVOKE, NULL, on_nothing, NULL),
                     SAGA_EINVAL);
    assert_int_equal(saga_participant_on(mp, SAGA_PHASE_INVOKE, "x", NULL, NULL),
                     SAGA_EINVAL);
}

static void test_first_outcome_wins(void **state)
{
    saga_participant_stats before, after;
    saga_reply r;
    (void)state;
    assert_int_equal(saga_participant_get_stats(mp, &before), SAGA_OK);
    send_command(0, "twice");
    handle_one();
    next_reply(&r);
    assert_int_equal(twice_calls, 1); /* the first registration was kept */
    assert_int_equal(r.status, SAGA_REPLY_OK);
    assert_int_equal(json_integer_value(json_object_get(r.output, "first")), 1);
    saga_reply_clear(&r);
    assert_int_equal(saga_participant_get_stats(mp, &after), SAGA_OK);
    assert_int_equal(after.results_ignored - before.results_ignored, 2);
    assert_int_equal(after.handled - before.handled, 1);
    assert_int_equal(after.replied_ok - before.replied_ok, 1);
}

static void test_defer_without_database(void **state)
{
    saga_participant_stats before, after;
    saga_reply r;
    rd_kafka_message_t *m;
    (void)state;
    assert_int_equal(saga_participant_get_stats(mp, &before), SAGA_OK);
    later = NULL;
    send_command(1, "later");
    handle_one();
    assert_non_null(later);
    /* Nothing is sent until the service completes it. */
    m = rd_kafka_consumer_poll(mock_replies, 1000);
    if (m != NULL && m->err == 0)
        fail_msg("a reply arrived before the deferred one was completed");
    if (m != NULL)
        rd_kafka_message_destroy(m);
    assert_int_equal(saga_participant_get_stats(mp, &after), SAGA_OK);
    assert_int_equal(after.deferred - before.deferred, 1);
    assert_int_equal(after.handled - before.handled, 0);
    assert_int_equal(after.replied_ok - before.replied_ok, 0);
    /* Without a database there is no transaction to share: completing
     * outside the handler sends the reply, with the command's routing. */
    assert_int_equal(saga_deferred_ok(mp, later, json_pack("{s:s}", "done", "later")),
                     SAGA_OK);
    next_reply(&r);
    assert_int_equal(r.status, SAGA_REPLY_OK);
    assert_int_equal(r.step, 1);
    assert_string_equal(r.saga_id, ID);
    assert_string_equal(json_string_value(json_object_get(r.output, "done")), "later");
    saga_reply_clear(&r);
    assert_int_equal(saga_participant_get_stats(mp, &after), SAGA_OK);
    assert_int_equal(after.replied_ok - before.replied_ok, 1);
    /* NULL participant: refused, d stays valid and output is freed (ASan
     * would see a leak otherwise). */
    assert_int_equal(saga_deferred_ok(NULL, NULL, json_object()), SAGA_EINVAL);
}

static void test_poll_after_stop(void **state)
{
    saga_error err = {0};
    struct timespec t0, t1;
    long ms;
    (void)state;
    send_command(2, "twice"); /* waiting, but never handled after the stop */
    saga_participant_stop(mp);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int i = 0; i < 3; i++)
        assert_int_equal(saga_participant_poll(mp, 2000, &err), 0);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
    assert_true(ms < 1000); /* three polls of 2 s each, none waited */
    assert_int_equal(saga_participant_run(mp, &err), SAGA_OK);
    assert_int_equal(twice_calls, 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_version),
        cmocka_unit_test(test_saga_ids),
        cmocka_unit_test(test_structs_can_grow),
        cmocka_unit_test(test_participant_misuse),
        cmocka_unit_test(test_results_and_deferral_misuse),
        cmocka_unit_test(test_client_misuse),
        cmocka_unit_test(test_errors),
    };
    const struct CMUnitTest participant[] = {
        cmocka_unit_test(test_register),
        cmocka_unit_test(test_first_outcome_wins),
        cmocka_unit_test(test_defer_without_database),
        cmocka_unit_test(test_poll_after_stop),
    };
    int failed = cmocka_run_group_tests_name("libsaga API contracts", tests, NULL, NULL);
    failed += cmocka_run_group_tests_name("libsaga participant (mock Kafka cluster)",
                                          participant, mock_setup, mock_teardown);
    return failed;
}
