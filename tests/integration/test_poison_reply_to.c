/* A command that cannot be answered must not stop its partition (issue 11,
 * item 1), against a real broker, a real sagad and libsaga's participant:
 *  - commands whose reply_to is no topic at all ("bad topic!") or not this
 *    deployment's reply topic sit first on the only partition of the
 *    service's command topic, with sagas behind them: the sagas complete,
 *    the poisoned commands are on the dead-letter topic with their reason,
 *    topic, partition and offset, logged with where they were;
 *  - a reply the broker refuses for good (larger than the reply topic's
 *    max.message.bytes) is tried a bounded number of times, then its command
 *    is dead-lettered, and the sagas behind it complete.
 * The participant runs in this process (no database: the handler counts
 * its calls); sagad and sagactl are the real programs. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <librdkafka/rdkafka.h>

#include "harness.h"
#include "saga/saga.h"

enum { BEHIND = 10, REPLY_TOPIC_MAX = 3000 };

static it_proc sagad;
static PGconn *db;
static char *prefix;
static char defs_dir[512], cmd_topic[256], reply_topic[256], dead_topic[256];
static rd_kafka_t *producer;
static saga_participant *part;
static int big_calls;
static char logged[128][700];
static int nlogged;

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void collect(saga_participant_log_level level, const char *message, void *arg)
{
    (void)arg;
    (void)level;
    if (nlogged < 128)
        snprintf(logged[nlogged++], sizeof logged[0], "%s", message);
}

static int was_logged(const char *a, const char *b)
{
    for (int i = 0; i < nlogged; i++)
        if (strstr(logged[i], a) != NULL && (b == NULL || strstr(logged[i], b) != NULL))
            return 1;
    return 0;
}

/* echo: ok with the input; {"big":true}: an output larger than the reply
 * topic takes (under libsaga's output limit, so only the broker refuses). */
static void echo(const saga_command *cmd, struct pg_conn *conn, saga_result *res,
                 void *arg)
{
    (void)conn;
    (void)arg;
    if (json_is_true(json_object_get(cmd->payload, "big"))) {
        char blob[REPLY_TOPIC_MAX * 2];
        big_calls++;
        memset(blob, 'x', sizeof blob - 1);
        blob[sizeof blob - 1] = '\0';
        saga_result_ok(res, json_pack("{s:s}", "blob", blob));
        return;
    }
    saga_result_ok(res, json_pack("{s:O}", "echoed", cmd->payload));
}

/* Create the command topic with one partition (everything on it queues
 * behind the poisoned command) and the reply topic with a small
 * max.message.bytes, before sagad would create them its way. */
static int create_topics(void)
{
    char max[16];
    snprintf(max, sizeof max, "%d", REPLY_TOPIC_MAX);
    return it_create_topic(producer, cmd_topic, 1, NULL, NULL) == 0 &&
                   it_create_topic(producer, reply_topic, 4, "max.message.bytes", max) ==
                       0
               ? 0
               : -1;
}

static int setup(void **state)
{
    const char *migrate[] = {"migrate", "--dir", "migrations", NULL};
    const char *args[] = {"--definitions", defs_dir, NULL};
    char errstr[256];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    saga_participant_options o = {0};
    saga_error err = {0};
    (void)state;
    it_isolate_db("replyto");
    prefix = strdup(it_prefix("replyto"));
    setenv("SAGA_TOPIC_PREFIX", prefix, 1);
    snprintf(cmd_topic, sizeof cmd_topic, "%scmd.relay", prefix);
    snprintf(reply_topic, sizeof reply_topic, "%sreply.relay", prefix);
    snprintf(dead_topic, sizeof dead_topic, "%sdead.relay", prefix);
    if (it_sagactl(NULL, 0, migrate) != 0 ||
        it_defs_dir("replyto", "tests/integration/relay_sagas/*.json", defs_dir,
                    sizeof defs_dir) != 0)
        return -1;
    db = it_db();
    rd_kafka_conf_set(conf, "bootstrap.servers", it_env("SAGA_KAFKA_BROKERS"), errstr,
                      sizeof errstr);
    producer = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
    if (producer == NULL || create_topics() != 0)
        return -1;
    o.brokers = it_env("SAGA_KAFKA_BROKERS");
    o.service = "relay";
    o.topic_prefix = prefix;
    if (saga_participant_new(&o, &part, &err) != SAGA_OK) {
        fprintf(stderr, "participant: %s\n", err.message);
        return -1;
    }
    saga_participant_set_logger(part, collect, NULL);
    saga_participant_on(part, SAGA_PHASE_INVOKE, "echo", echo, NULL);
    if (it_spawn(&sagad, "replyto-sagad", "sagad", args) != 0 ||
        it_wait_log(&sagad, "sagad running", 60000) != 0)
        return -1;
    return 0;
}

static int teardown(void **state)
{
    char cmd[600];
    (void)state;
    if (sagad.pid > 0)
        it_stop(&sagad);
    saga_participant_free(part);
    rd_kafka_destroy(producer);
    PQfinish(db);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", defs_dir);
    free(prefix);
    return system(cmd) == 0 ? 0 : -1;
}

/* A command for saga id with reply_to as given (raw JSON text), on the
 * command topic's one partition. */
static void poisoned_command(const char *id, const char *reply_to_json)
{
    char msg[1024];
    snprintf(
        msg, sizeof msg,
        "{\"v\":1,\"saga_id\":\"%s\",\"saga\":\"relay\",\"saga_version\":1,\"step\":0,"
        "\"step_name\":\"echo\",\"phase\":\"invoke\",\"action\":\"echo\","
        "\"command_id\":\"%s/0/invoke\",\"attempt\":1,\"reply_to\":%s,"
        "\"payload\":{}}",
        id, id, reply_to_json);
    assert_int_equal(
        rd_kafka_producev(producer, RD_KAFKA_V_TOPIC(cmd_topic), RD_KAFKA_V_PARTITION(0),
                          RD_KAFKA_V_KEY(id, 36), RD_KAFKA_V_VALUE(msg, strlen(msg)),
                          RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END),
        0);
    assert_int_equal(rd_kafka_flush(producer, 10000), 0);
}

static char *start(const char *input)
{
    char out[128];
    const char *args[] = {"start", "relay", "--input", input, NULL};
    assert_int_equal(it_sagactl(out, sizeof out, args), 0);
    assert_int_equal(strlen(out), 36);
    return strdup(out);
}

/* Run the participant until every saga in ids is final (or timeout_ms). */
static void serve_until_final(char **ids, int n, int timeout_ms)
{
    int64_t until = now_ms() + timeout_ms;
    saga_error err = {0};
    int done = 0;
    while (done < n && now_ms() < until) {
        saga_participant_poll(part, 100, &err); /* delivery failures are expected */
        done = 0;
        for (int i = 0; i < n; i++) {
            const char *p[1] = {ids[i]};
            done += it_int(db,
                           "SELECT count(*) FROM saga.saga WHERE id = $1 AND status IN "
                           "('completed', 'compensated', 'failed')",
                           1, p) == 1;
        }
    }
    if (done < n)
        fail_msg("%d of %d sagas final after %d ms", done, n, timeout_ms);
}

/* The dead letters on the participant's dead-letter topic, from the start:
 * how many; reasons[] and offsets[] of the first ones. */
static int read_dead(char reasons[][600], char offsets[][24], int max, int want,
                     int timeout_ms)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_t *c;
    rd_kafka_topic_partition_list_t *sub = rd_kafka_topic_partition_list_new(1);
    char errstr[256], group[300];
    int n = 0;
    int64_t until = now_ms() + timeout_ms;
    snprintf(group, sizeof group, "%sdead-reader-%d", prefix, want);
    rd_kafka_conf_set(conf, "bootstrap.servers", it_env("SAGA_KAFKA_BROKERS"), errstr,
                      sizeof errstr);
    rd_kafka_conf_set(conf, "group.id", group, errstr, sizeof errstr);
    rd_kafka_conf_set(conf, "auto.offset.reset", "earliest", errstr, sizeof errstr);
    c = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof errstr);
    rd_kafka_poll_set_consumer(c);
    rd_kafka_topic_partition_list_add(sub, dead_topic, RD_KAFKA_PARTITION_UA);
    rd_kafka_subscribe(c, sub);
    rd_kafka_topic_partition_list_destroy(sub);
    while (n < want && now_ms() < until) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(c, 200);
        rd_kafka_headers_t *h = NULL;
        const void *v;
        size_t len;
        if (m == NULL)
            continue;
        if (m->err == 0 && n < max && rd_kafka_message_headers(m, &h) == 0) {
            if (rd_kafka_header_get_last(h, "saga-dead-reason", &v, &len) == 0)
                snprintf(reasons[n], 600, "%.*s", (int)len, (const char *)v);
            if (rd_kafka_header_get_last(h, "saga-dead-offset", &v, &len) == 0)
                snprintf(offsets[n], 24, "%.*s", (int)len, (const char *)v);
            if (rd_kafka_header_get_last(h, "saga-dead-topic", &v, &len) == 0)
                assert_memory_equal(v, cmd_topic, strlen(cmd_topic));
        }
        if (m->err == 0)
            n++;
        rd_kafka_message_destroy(m);
    }
    rd_kafka_consumer_close(c);
    rd_kafka_destroy(c);
    return n;
}

static void test_poisoned_reply_to_does_not_block_the_sagas_behind(void **state)
{
    char *ids[BEHIND];
    char reasons[4][600] = {{0}}, offsets[4][24] = {{0}};
    saga_participant_stats st;
    int64_t t0;
    (void)state;
    poisoned_command("0b5c3d9e-6a43-4f7e-9a51-2f8d0c1e7b22", "\"bad topic!\"");
    poisoned_command("1b5c3d9e-6a43-4f7e-9a51-2f8d0c1e7b22", "\"someone.elses.topic\"");
    for (int i = 0; i < BEHIND; i++)
        ids[i] = start("{\"n\":1,\"big\":false}");
    t0 = now_ms();
    serve_until_final(ids, BEHIND, 60000);
    for (int i = 0; i < BEHIND; i++) {
        const char *p[1] = {ids[i]};
        char *s = it_value(db, "SELECT status FROM saga.saga WHERE id = $1", 1, p);
        assert_string_equal(s, "completed");
        free(s);
        free(ids[i]);
    }
    printf(
        "%d sagas behind two poisoned commands on one partition completed in %lld ms\n",
        BEHIND, (long long)(now_ms() - t0));
    saga_participant_get_stats(part, &st);
    assert_int_equal(st.malformed, 2);
    assert_int_equal(st.dead_lettered, 2);
    assert_int_equal(read_dead(reasons, offsets, 4, 2, 30000), 2);
    /* keyed by saga id, so on two partitions of the dead-letter topic: any order */
    for (int i = 0; i < 2; i++) {
        if (strcmp(offsets[i], "0") == 0)
            assert_non_null(strstr(reasons[i], "\"reply_to\" is not a Kafka topic name"));
        else if (strcmp(offsets[i], "1") == 0)
            assert_non_null(
                strstr(reasons[i], "\"someone.elses.topic\", not this deployment's"));
        else
            fail_msg("a dead letter from offset %s", offsets[i]);
    }
    assert_string_not_equal(offsets[0], offsets[1]);
    assert_true(was_logged("cmd.relay[0]@0", "dead-lettered"));
    assert_true(was_logged("cmd.relay[0]@1", "dead-lettered"));
}

/* The broker refuses the reply for good: the command is handled at most
 * 1 + max_redeliveries times per attempt, then dead-lettered; the sagas
 * behind it complete and the big one ends (its step gives up). */
static void test_reply_the_broker_refuses_is_bounded(void **state)
{
    char *ids[BEHIND + 1];
    char reasons[8][600] = {{0}}, offsets[8][24] = {{0}};
    saga_participant_stats before, st;
    int64_t t0;
    (void)state;
    saga_participant_get_stats(part, &before);
    ids[BEHIND] = start("{\"big\":true,\"n\":0}");
    for (int i = 0; i < BEHIND; i++)
        ids[i] = start("{\"n\":2,\"big\":false}");
    t0 = now_ms();
    serve_until_final(ids, BEHIND, 60000);
    printf("%d sagas behind a reply the broker refuses completed in %lld ms\n", BEHIND,
           (long long)(now_ms() - t0));
    for (int i = 0; i < BEHIND; i++) {
        const char *p[1] = {ids[i]};
        char *s = it_value(db, "SELECT status FROM saga.saga WHERE id = $1", 1, p);
        assert_string_equal(s, "completed");
        free(s);
        free(ids[i]);
    }
    serve_until_final(&ids[BEHIND], 1, 60000);
    saga_participant_get_stats(part, &st);
    printf("the big reply: handler called %d time(s), %llu refusal(s), %llu dead "
           "letter(s)\n",
           big_calls, (unsigned long long)(st.undeliverable - before.undeliverable),
           (unsigned long long)(st.dead_lettered - before.dead_lettered));
    /* each attempt sagad sends: 1 + 3 redeliveries, then dead-lettered */
    assert_true(st.dead_lettered - before.dead_lettered >= 1);
    assert_true(st.dead_lettered - before.dead_lettered <= 2); /* 2 attempts */
    /* per attempt: once in company, then alone 1 + 3 times */
    assert_int_equal(big_calls, 5 * (int)(st.dead_lettered - before.dead_lettered));
    /* the two from the first test, then the big saga's: exactly one per
     * attempt sagad sent, none of the small sagas' (checked below: every
     * dead letter since is the big saga's) */
    {
        int n = read_dead(reasons, offsets, 8, (int)st.dead_lettered, 30000), big = 0;
        assert_int_equal(n, (int)st.dead_lettered);
        for (int i = 0; i < n && i < 8; i++)
            big += strstr(reasons[i], "answered 4 time(s) but its reply") != NULL &&
                   strstr(reasons[i], "too large") != NULL;
        assert_int_equal(big, (int)(st.dead_lettered - before.dead_lettered));
    }
    assert_true(was_logged("not delivered", "then it is dead-lettered"));
    {
        const char *p[1] = {ids[BEHIND]};
        char *s = it_value(db, "SELECT status FROM saga.saga WHERE id = $1", 1, p);
        assert_string_not_equal(s, "completed");
        free(s);
    }
    free(ids[BEHIND]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_poisoned_reply_to_does_not_block_the_sagas_behind),
        cmocka_unit_test(test_reply_the_broker_refuses_is_bounded),
    };
    return cmocka_run_group_tests_name("poisoned reply_to (sagad + libsaga + Kafka)",
                                       tests, setup, teardown);
}
