/* libsaga's participant against a real Kafka broker and PostgreSQL: the
 * barrier's three hazards (duplicate, null compensation, hanging action),
 * also per element of a fan-out step (commands of version 2), a barrier
 * table of an earlier release upgraded (by libsaga, or by its owner),
 * failed and retry results, malformed commands and unknown actions,
 * deferred replies (also completed from inside a handler, which is
 * refused), and an event loop driven by the fd alone through more than a
 * batch of commands. The test plays sagad: it produces commands and reads
 * the replies. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <pthread.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <librdkafka/rdkafka.h>
#include <uuid.h>

#include "harness.h"
#include "saga/saga.h"

static PGconn *db;
static saga_participant *part;
static rd_kafka_t *producer, *consumer;
static char prefix[128], cmd_topic[256], reply_topic[256];
static int invoked, compensated;

/* The business effect: a row per action, removed by the compensation. */
static void do_thing(const saga_command *cmd, PGconn *conn, saga_result *res, void *arg)
{
    const char *p[1] = {cmd->saga_id};
    json_t *mode = json_object_get(cmd->payload, "mode");
    (void)arg;
    invoked++;
    PQclear(PQexecParams(conn, "INSERT INTO things (saga_id) VALUES ($1)", 1, NULL, p,
                         NULL, NULL, 0));
    if (json_is_string(mode) && strcmp(json_string_value(mode), "fail") == 0)
        saga_result_fail(res, "no_way", "refused on purpose");
    else if (json_is_string(mode) && strcmp(json_string_value(mode), "retry") == 0)
        saga_result_retry(res, 1500, "busy");
    else if (json_is_string(mode) && strcmp(json_string_value(mode), "nul") == 0)
        /* U+0000: valid JSON, but no jsonb column takes it. */
        saga_result_ok(res, json_pack("{s:s%}", "text", "a\0b", (size_t)3));
    else if (json_is_string(mode) && strcmp(json_string_value(mode), "big") == 0) {
        /* 300,000 bytes of output: over the default limit of 262,144 */
        char *blob = malloc(300001);
        memset(blob, 'b', 300000);
        blob[300000] = '\0';
        saga_result_ok(res, json_pack("{s:s}", "blob", blob));
        free(blob);
    } else
        saga_result_ok(res, json_pack("{s:i}", "n", invoked));
}

static void undo_thing(const saga_command *cmd, PGconn *conn, saga_result *res, void *arg)
{
    const char *p[1] = {cmd->saga_id};
    (void)arg;
    compensated++;
    PQclear(PQexecParams(conn, "DELETE FROM things WHERE saga_id = $1", 1, NULL, p, NULL,
                         NULL, 0));
    saga_result_ok(res, NULL);
}

/* What libsaga logged (its logger), one line each. */
static char logged[64][700];
static int nlogged;

static void collect(saga_participant_log_level level, const char *message, void *arg)
{
    (void)arg;
    (void)level;
    if (nlogged < 64)
        snprintf(logged[nlogged], sizeof logged[0], "%s", message);
    nlogged++;
}

/* Replies later: the test completes it by hand. */
static saga_deferred *pending[4];
static int npending;

static void do_later(const saga_command *cmd, PGconn *conn, saga_result *res, void *arg)
{
    (void)cmd;
    (void)conn;
    (void)arg;
    pending[npending++] = saga_result_defer(res);
    /* A second outcome after deferring is ignored. */
    saga_result_fail(res, "ignored", "too late");
}

/* Defers, then tries to complete from inside the handler: with a database
 * that is refused (it would share this command's transaction). */
static saga_deferred *inside;
static int inside_rc;

static void do_inside(const saga_command *cmd, PGconn *conn, saga_result *res, void *arg)
{
    (void)cmd;
    (void)conn;
    (void)arg;
    inside = saga_result_defer(res);
    /* The output is stolen even though the call fails (ASan checks). */
    inside_rc = saga_deferred_ok(part, inside, json_pack("{s:s}", "from", "handler"));
}

/* Sets two outcomes: the first one counts. */
static void do_twice(const saga_command *cmd, PGconn *conn, saga_result *res, void *arg)
{
    (void)cmd;
    (void)conn;
    (void)arg;
    saga_result_ok(res, json_pack("{s:i}", "first", 1));
    saga_result_fail(res, "second", "ignored");
    saga_result_retry(res, 5, "ignored too");
}

static int setup(void **state)
{
    saga_participant_options o = {0};
    saga_error err = {0};
    rd_kafka_conf_t *conf;
    char errstr[256];
    rd_kafka_topic_partition_list_t *sub;
    (void)state;
    it_isolate_db("participant");

    snprintf(prefix, sizeof prefix, "%s", it_prefix("participant"));
    snprintf(cmd_topic, sizeof cmd_topic, "%scmd.things", prefix);
    snprintf(reply_topic, sizeof reply_topic, "%sreply", prefix);
    db = it_db();
    it_exec(db, "DROP SCHEMA IF EXISTS it_things CASCADE; CREATE SCHEMA it_things;"
                "CREATE TABLE it_things.things (saga_id uuid NOT NULL,"
                " at timestamptz NOT NULL DEFAULT now())");
    o.brokers = it_env("SAGA_KAFKA_BROKERS");
    o.service = "things";
    o.topic_prefix = prefix;
    o.db_url = it_env("SAGA_PG_URL");
    o.db_schema = "it_things";
    if (saga_participant_new(&o, &part, &err) != SAGA_OK) {
        fprintf(stderr, "participant: %s\n", err.message);
        return -1;
    }
    assert_int_equal(saga_participant_set_logger(part, collect, NULL), SAGA_OK);
    assert_int_equal(saga_participant_set_max_output_bytes(part, -1), SAGA_EINVAL);
    assert_int_equal(saga_participant_set_max_redeliveries(NULL, 3), SAGA_EINVAL);
    assert_int_equal(saga_participant_set_dead_letter_topic(part, "bad topic!", &err),
                     SAGA_EINVAL);
    assert_non_null(strstr(err.message, "not a Kafka topic name"));
    assert_int_equal(saga_participant_on(part, SAGA_PHASE_INVOKE, "do", do_thing, NULL),
                     0);
    assert_int_equal(
        saga_participant_on(part, SAGA_PHASE_COMPENSATE, "undo", undo_thing, NULL), 0);
    assert_int_equal(
        saga_participant_on(part, SAGA_PHASE_INVOKE, "later", do_later, NULL), 0);
    assert_int_equal(
        saga_participant_on(part, SAGA_PHASE_INVOKE, "twice", do_twice, NULL), 0);
    assert_int_equal(
        saga_participant_on(part, SAGA_PHASE_INVOKE, "inside", do_inside, NULL), 0);
    /* Registering twice is refused; bad arguments too. */
    assert_int_equal(saga_participant_on(part, SAGA_PHASE_INVOKE, "do", do_thing, NULL),
                     SAGA_EEXIST);
    assert_int_equal(saga_participant_on(part, SAGA_PHASE_INVOKE, NULL, do_thing, NULL),
                     SAGA_EINVAL);
    assert_int_equal(saga_participant_on(part, SAGA_PHASE_INVOKE, "x", NULL, NULL),
                     SAGA_EINVAL);

    conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "bootstrap.servers", it_env("SAGA_KAFKA_BROKERS"), errstr,
                      sizeof errstr);
    producer = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
    conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "bootstrap.servers", it_env("SAGA_KAFKA_BROKERS"), errstr,
                      sizeof errstr);
    rd_kafka_conf_set(conf, "group.id", prefix, errstr, sizeof errstr);
    rd_kafka_conf_set(conf, "auto.offset.reset", "earliest", errstr, sizeof errstr);
    rd_kafka_conf_set(conf, "allow.auto.create.topics", "true", errstr, sizeof errstr);
    consumer = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof errstr);
    rd_kafka_poll_set_consumer(consumer);
    sub = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(sub, reply_topic, RD_KAFKA_PARTITION_UA);
    rd_kafka_subscribe(consumer, sub);
    rd_kafka_topic_partition_list_destroy(sub);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    saga_participant_free(part);
    rd_kafka_consumer_close(consumer);
    rd_kafka_destroy(consumer);
    rd_kafka_flush(producer, 5000);
    rd_kafka_destroy(producer);
    it_exec(db, "DROP SCHEMA IF EXISTS it_things CASCADE");
    PQfinish(db);
    return 0;
}

static void send_raw(const char *key, const char *text)
{
    rd_kafka_producev(producer, RD_KAFKA_V_TOPIC(cmd_topic),
                      RD_KAFKA_V_KEY(key, strlen(key)),
                      RD_KAFKA_V_VALUE((void *)text, strlen(text)),
                      RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
    assert_int_equal(rd_kafka_flush(producer, 10000), 0);
}

static void send_action(const char *saga_id, const char *action, int attempt)
{
    saga_command c = {0};
    char cid[128], *text;
    memcpy(c.saga_id, saga_id, sizeof c.saga_id);
    c.saga = "it";
    c.saga_version = 1;
    c.step_name = "thing";
    c.action = (char *)action;
    saga_command_id_format(cid, sizeof cid, saga_id, 0, SAGA_PHASE_INVOKE);
    c.command_id = cid;
    c.attempt = attempt;
    c.reply_to = reply_topic;
    assert_int_equal(saga_command_encode(&c, &text, NULL, NULL), SAGA_OK);
    send_raw(saga_id, text);
    free(text);
}

static void send_cmd(const char *saga_id, saga_phase phase, int attempt, const char *mode)
{
    saga_command c = {0};
    char cid[128], *text;
    memcpy(c.saga_id, saga_id, sizeof c.saga_id);
    c.saga = "it";
    c.saga_version = 1;
    c.step = 0;
    c.step_name = "thing";
    c.phase = phase;
    c.action = phase == SAGA_PHASE_INVOKE ? "do" : "undo";
    saga_command_id_format(cid, sizeof cid, saga_id, 0, phase);
    c.command_id = cid;
    c.attempt = attempt;
    c.reply_to = reply_topic;
    c.payload = mode ? json_pack("{s:s}", "mode", mode) : json_object();
    assert_int_equal(saga_command_encode(&c, &text, NULL, NULL), SAGA_OK);
    send_raw(saga_id, text);
    json_decref(c.payload);
    free(text);
}

/* A command to element `element` of step 0 (version 2), action "do" or
 * compensation "undo". */
static void send_element(const char *saga_id, saga_phase phase, int element, int attempt)
{
    saga_command c = {0};
    char cid[128], *text;
    memcpy(c.saga_id, saga_id, sizeof c.saga_id);
    c.v = SAGA_PROTOCOL_VERSION_ELEMENTS;
    c.element = element;
    c.saga = "it";
    c.saga_version = 1;
    c.step_name = "thing";
    c.phase = phase;
    c.action = phase == SAGA_PHASE_INVOKE ? "do" : "undo";
    saga_command_id_format_element(cid, sizeof cid, saga_id, 0, phase, element);
    c.command_id = cid;
    c.attempt = attempt;
    c.reply_to = reply_topic;
    assert_int_equal(saga_command_encode(&c, &text, NULL, NULL), SAGA_OK);
    send_raw(saga_id, text);
    free(text);
}

/* Poll the participant until it handled one more message, then read one
 * reply (NULL-terminated wait: 30 s). */
static void handle(int expect_reply, saga_reply *out)
{
    saga_error err = {0};
    int n = 0;
    for (int i = 0; i < 300 && n == 0; i++)
        n = saga_participant_poll(part, 100, &err);
    assert_int_equal(n, 1);
    if (!expect_reply)
        return;
    for (int i = 0; i < 300; i++) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(consumer, 100);
        if (m == NULL)
            continue;
        if (m->err) {
            rd_kafka_message_destroy(m);
            continue;
        }
        assert_int_equal(saga_reply_decode(m->payload, m->len, out, &err), SAGA_OK);
        rd_kafka_message_destroy(m);
        return;
    }
    fail_msg("no reply within 30 s");
}

/* No reply arrives within ms. */
static void expect_no_reply(int ms)
{
    rd_kafka_message_t *m = rd_kafka_consumer_poll(consumer, ms);
    if (m != NULL && m->err == 0) {
        rd_kafka_message_destroy(m);
        fail_msg("an unexpected reply arrived");
    }
    if (m != NULL)
        rd_kafka_message_destroy(m);
}

/* The next reply (30 s at most). */
static void next_reply(saga_reply *out)
{
    saga_error err = {0};
    for (int i = 0; i < 300; i++) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(consumer, 100);
        if (m == NULL)
            continue;
        if (m->err) {
            rd_kafka_message_destroy(m);
            continue;
        }
        assert_int_equal(saga_reply_decode(m->payload, m->len, out, &err), SAGA_OK);
        rd_kafka_message_destroy(m);
        return;
    }
    fail_msg("no reply within 30 s");
}

static void new_id(char id[37])
{
    uuid_t u;
    uuid_generate_random(u);
    uuid_unparse_lower(u, id);
}

static long long things(const char *id)
{
    const char *p[1] = {id};
    return it_int(db, "SELECT count(*) FROM it_things.things WHERE saga_id = $1", 1, p);
}

static void test_duplicate_gets_cached_reply_without_second_effect(void **state)
{
    char id[37];
    saga_reply r1, r2;
    saga_participant_stats st;
    int before;
    (void)state;
    new_id(id);
    before = invoked;
    send_cmd(id, SAGA_PHASE_INVOKE, 1, NULL);
    handle(1, &r1);
    send_cmd(id, SAGA_PHASE_INVOKE, 2, NULL); /* redelivery / re-send */
    handle(1, &r2);
    assert_int_equal(invoked, before + 1);
    assert_int_equal(things(id), 1);
    assert_int_equal(r1.status, SAGA_REPLY_OK);
    assert_int_equal(r2.status, SAGA_REPLY_OK);
    assert_true(json_equal(r1.output, r2.output)); /* the same answer */
    assert_int_equal(r2.attempt, 2);               /* to the attempt asked */
    assert_int_equal(saga_participant_get_stats(part, &st), SAGA_OK);
    assert_true(st.duplicates >= 1);
    /* Both were received and answered ok; only the first ran the handler. */
    assert_true(st.received >= 2);
    assert_true(st.replied_ok >= 2);
    assert_true(st.handler_calls >= 1 && st.handler_calls < st.received);
    saga_reply_clear(&r1);
    saga_reply_clear(&r2);
}

static void test_null_compensation(void **state)
{
    char id[37];
    saga_reply r;
    int before = compensated;
    const char *p[1];
    (void)state;
    new_id(id);
    p[0] = id;
    send_cmd(id, SAGA_PHASE_COMPENSATE, 1, NULL);
    handle(1, &r);
    assert_int_equal(r.status, SAGA_REPLY_OK);
    assert_true(json_is_true(json_object_get(r.output, "null_compensation")));
    assert_int_equal(compensated, before); /* the handler never ran */
    assert_int_equal(
        it_int(db,
               "SELECT count(*) FROM it_things.saga_barrier WHERE saga_id = $1"
               " AND phase = 'compensate' AND outcome = 'null_compensation'",
               1, p),
        1);
    saga_reply_clear(&r);
}

static void test_hanging_action_is_refused(void **state)
{
    char id[37];
    saga_reply r;
    int before = invoked;
    (void)state;
    new_id(id);
    /* The compensation overtook the action (the action's command was
     * delayed): then the action arrives. */
    send_cmd(id, SAGA_PHASE_COMPENSATE, 1, NULL);
    handle(1, &r);
    saga_reply_clear(&r);
    send_cmd(id, SAGA_PHASE_INVOKE, 1, NULL);
    handle(1, &r);
    assert_int_equal(r.status, SAGA_REPLY_FAILED);
    assert_string_equal(r.error_code, "hanging_action");
    assert_int_equal(invoked, before);
    assert_int_equal(things(id), 0);
    saga_reply_clear(&r);
}

static void test_compensation_after_action_undoes_it_once(void **state)
{
    char id[37];
    saga_reply r;
    int before = compensated;
    (void)state;
    new_id(id);
    send_cmd(id, SAGA_PHASE_INVOKE, 1, NULL);
    handle(1, &r);
    saga_reply_clear(&r);
    assert_int_equal(things(id), 1);
    send_cmd(id, SAGA_PHASE_COMPENSATE, 1, NULL);
    handle(1, &r);
    saga_reply_clear(&r);
    send_cmd(id, SAGA_PHASE_COMPENSATE, 2, NULL);
    handle(1, &r);
    assert_int_equal(r.status, SAGA_REPLY_OK);
    assert_int_equal(compensated, before + 1);
    assert_int_equal(things(id), 0);
    saga_reply_clear(&r);
}

static void test_failed_result_rolls_back_but_is_remembered(void **state)
{
    char id[37];
    saga_reply r;
    int before;
    (void)state;
    new_id(id);
    send_cmd(id, SAGA_PHASE_INVOKE, 1, "fail");
    handle(1, &r);
    assert_int_equal(r.status, SAGA_REPLY_FAILED);
    assert_string_equal(r.error_code, "no_way");
    assert_int_equal(things(id), 0); /* the handler's write was rolled back */
    saga_reply_clear(&r);
    before = invoked;
    send_cmd(id, SAGA_PHASE_INVOKE, 2, NULL); /* same command again */
    handle(1, &r);
    assert_int_equal(r.status, SAGA_REPLY_FAILED); /* same answer, no rerun */
    assert_int_equal(invoked, before);
    saga_reply_clear(&r);
    /* Its compensation has nothing to undo. */
    send_cmd(id, SAGA_PHASE_COMPENSATE, 1, NULL);
    handle(1, &r);
    assert_true(json_is_true(json_object_get(r.output, "null_compensation")));
    saga_reply_clear(&r);
}

static void test_retry_result_leaves_no_trace(void **state)
{
    char id[37];
    saga_reply r;
    int before;
    (void)state;
    new_id(id);
    send_cmd(id, SAGA_PHASE_INVOKE, 1, "retry");
    handle(1, &r);
    assert_int_equal(r.status, SAGA_REPLY_RETRY);
    assert_int_equal(r.retry_after, 1500);
    assert_int_equal(things(id), 0);
    saga_reply_clear(&r);
    before = invoked;
    send_cmd(id, SAGA_PHASE_INVOKE, 2, NULL); /* the next attempt runs */
    handle(1, &r);
    assert_int_equal(r.status, SAGA_REPLY_OK);
    assert_int_equal(invoked, before + 1);
    assert_int_equal(things(id), 1);
    saga_reply_clear(&r);
}

static void test_malformed_and_unknown_do_not_block(void **state)
{
    char id[37];
    saga_reply r;
    saga_participant_stats before, after;
    saga_command c = {0};
    char cid[128], *text;
    (void)state;
    saga_participant_get_stats(part, &before);
    send_raw("k", "this is not json");
    handle(0, NULL);
    assert_non_null(strstr(saga_participant_last_warning(part), "malformed"));
    send_raw("k", "{\"v\":1,\"saga_id\":\"nope\"}");
    handle(0, NULL);
    /* An action nobody registered: a definite failure naming it. */
    new_id(id);
    memcpy(c.saga_id, id, sizeof c.saga_id);
    c.saga = "it";
    c.saga_version = 1;
    c.step_name = "x";
    c.action = "teleport";
    saga_command_id_format(cid, sizeof cid, id, 0, SAGA_PHASE_INVOKE);
    c.command_id = cid;
    c.attempt = 1;
    c.reply_to = reply_topic;
    saga_command_encode(&c, &text, NULL, NULL);
    send_raw(id, text);
    free(text);
    handle(1, &r);
    assert_int_equal(r.status, SAGA_REPLY_FAILED);
    assert_string_equal(r.error_code, "unknown_action");
    assert_non_null(strstr(r.error_message, "teleport"));
    saga_reply_clear(&r);
    /* And the next good command still goes through. */
    new_id(id);
    send_cmd(id, SAGA_PHASE_INVOKE, 1, NULL);
    handle(1, &r);
    assert_int_equal(r.status, SAGA_REPLY_OK);
    saga_reply_clear(&r);
    saga_participant_get_stats(part, &after);
    assert_int_equal(after.malformed, before.malformed + 2);
    assert_int_equal(after.unknown_action, before.unknown_action + 1);
}

/* A malformed command is logged with where it was and why, set aside on
 * the dead-letter topic, and the lines are rate-limited (20 per 10 s, the
 * rest counted). */
static void test_malformed_logged_rate_limited_and_dead_lettered(void **state)
{
    saga_participant_stats before, after;
    saga_error err = {0};
    int lines0 = nlogged, n = 0, found = 0;
    (void)state;
    saga_participant_get_stats(part, &before);
    for (int i = 0; i < 25; i++)
        send_raw("k", "{\"v\":1,\"saga_id\":\"nope\"}");
    for (int i = 0; i < 300 && n < 25; i++) {
        int k = saga_participant_poll(part, 100, &err);
        assert_true(k >= 0);
        n += k;
    }
    assert_int_equal(n, 25);
    saga_participant_get_stats(part, &after);
    assert_int_equal(after.malformed, before.malformed + 25);
    assert_int_equal(after.dead_lettered, before.dead_lettered + 25);
    /* every one either logged or counted as left out */
    assert_int_equal(
        (nlogged - lines0) + (int)(after.log_suppressed - before.log_suppressed), 25);
    assert_true(after.log_suppressed - before.log_suppressed >= 5);
    for (int i = lines0; i < nlogged && i < 64; i++)
        found += strstr(logged[i], "cmd.things[") != NULL &&
                 strstr(logged[i], "dead-lettered to") != NULL &&
                 strstr(logged[i], "not a UUID") != NULL;
    assert_true(found > 0);
}

/* An ok output over max_output_bytes is answered failed with
 * message_too_large, and the handler's writes are rolled back; a duplicate
 * gets the same answer from the barrier. */
static void test_output_over_the_limit_fails_the_step(void **state)
{
    char id[37];
    saga_reply r;
    saga_participant_stats before, after;
    (void)state;
    saga_participant_get_stats(part, &before);
    new_id(id);
    send_cmd(id, SAGA_PHASE_INVOKE, 1, "big");
    handle(1, &r);
    assert_int_equal(r.status, SAGA_REPLY_FAILED);
    assert_string_equal(r.error_code, "message_too_large");
    assert_non_null(strstr(r.error_message, "over the limit of 262144 bytes"));
    saga_reply_clear(&r);
    assert_int_equal(things(id), 0);
    send_cmd(id, SAGA_PHASE_INVOKE, 2, "big");
    handle(1, &r);
    assert_int_equal(r.status, SAGA_REPLY_FAILED);
    assert_string_equal(r.error_code, "message_too_large");
    assert_int_equal(r.attempt, 2);
    saga_reply_clear(&r);
    saga_participant_get_stats(part, &after);
    assert_int_equal(after.output_too_large, before.output_too_large + 1);
    assert_int_equal(after.duplicates, before.duplicates + 1);
    /* raised, the same output goes through */
    assert_int_equal(saga_participant_set_max_output_bytes(part, 400000), SAGA_OK);
    new_id(id);
    send_cmd(id, SAGA_PHASE_INVOKE, 1, "big");
    handle(1, &r);
    assert_int_equal(r.status, SAGA_REPLY_OK);
    saga_reply_clear(&r);
    assert_int_equal(things(id), 1);
    saga_participant_set_max_output_bytes(part, 262144);
}

static void test_first_outcome_wins(void **state)
{
    char id[37];
    saga_reply r;
    saga_participant_stats before, after;
    (void)state;
    new_id(id);
    assert_int_equal(saga_participant_get_stats(part, &before), SAGA_OK);
    send_action(id, "twice", 1);
    handle(1, &r);
    assert_int_equal(r.status, SAGA_REPLY_OK);
    assert_int_equal(json_integer_value(json_object_get(r.output, "first")), 1);
    assert_int_equal(saga_participant_get_stats(part, &after), SAGA_OK);
    /* The handler set three outcomes: exactly two were ignored. */
    assert_int_equal(after.results_ignored - before.results_ignored, 2);
    saga_reply_clear(&r);
}

static void test_deferred_reply(void **state)
{
    char id[37];
    saga_reply r;
    saga_participant_stats st;
    (void)state;
    new_id(id);
    npending = 0;
    send_action(id, "later", 1);
    handle(0, NULL);
    assert_int_equal(npending, 1);
    assert_non_null(pending[0]);
    expect_no_reply(1500); /* nothing until the service completes it */
    /* A redelivery meanwhile runs the handler again (it defers again). */
    send_action(id, "later", 2);
    handle(0, NULL);
    assert_int_equal(npending, 2);
    assert_int_equal(
        saga_deferred_ok(part, pending[0], json_pack("{s:s}", "done", "later")), SAGA_OK);
    next_reply(&r);
    assert_int_equal(r.status, SAGA_REPLY_OK);
    assert_string_equal(json_string_value(json_object_get(r.output, "done")), "later");
    assert_int_equal(r.attempt, 1);
    saga_reply_clear(&r);
    /* The second completion gets the recorded answer, not its own. */
    assert_int_equal(saga_deferred_fail(part, pending[1], "nope", "too late"), SAGA_OK);
    next_reply(&r);
    assert_int_equal(r.status, SAGA_REPLY_OK);
    assert_string_equal(json_string_value(json_object_get(r.output, "done")), "later");
    saga_reply_clear(&r);
    /* And a later duplicate too, without calling the handler. */
    send_action(id, "later", 3);
    handle(1, &r);
    assert_int_equal(npending, 2);
    assert_int_equal(r.status, SAGA_REPLY_OK);
    assert_int_equal(r.attempt, 3);
    saga_reply_clear(&r);
    saga_participant_get_stats(part, &st);
    assert_true(st.deferred >= 2);
    assert_int_equal(saga_deferred_ok(NULL, NULL, NULL), SAGA_EINVAL);
}

static void test_event_loop_fd(void **state)
{
    char id[37];
    saga_reply r;
    struct pollfd pfd;
    saga_error err = {0};
    int fd = saga_participant_fd(part), n = 0;
    (void)state;
    assert_true(fd >= 0);
    assert_int_equal(saga_participant_fd(part), fd); /* the same one each time */
    new_id(id);
    send_cmd(id, SAGA_PHASE_INVOKE, 1, NULL);
    /* The way an event loop would: wait on the fd, then poll without blocking. */
    for (int i = 0; i < 20 && n == 0; i++) {
        pfd.fd = fd;
        pfd.events = POLLIN;
        pfd.revents = 0;
        if (poll(&pfd, 1, 1000) == 1)
            n = saga_participant_poll(part, 0, &err);
    }
    assert_int_equal(n, 1);
    next_reply(&r);
    assert_int_equal(r.status, SAGA_REPLY_OK);
    saga_reply_clear(&r);
}

/* With a database, completing a deferred reply from inside a handler is
 * refused (SAGA_ESTATE) and the handle stays valid: completed after the
 * handler returned, the reply goes out and is recorded by the barrier. */
static void test_deferred_completed_inside_handler_is_refused(void **state)
{
    char id[37];
    saga_reply r;
    (void)state;
    new_id(id);
    inside = NULL;
    inside_rc = SAGA_OK;
    send_action(id, "inside", 1);
    handle(0, NULL);
    assert_non_null(inside);
    assert_int_equal(inside_rc, SAGA_ESTATE);
    assert_non_null(strstr(saga_participant_last_warning(part), "inside a handler"));
    expect_no_reply(1000); /* the refused completion sent nothing */
    assert_int_equal(saga_deferred_ok(part, inside, json_pack("{s:s}", "from", "later")),
                     SAGA_OK);
    next_reply(&r);
    assert_int_equal(r.status, SAGA_REPLY_OK);
    assert_string_equal(json_string_value(json_object_get(r.output, "from")), "later");
    saga_reply_clear(&r);
    /* Recorded: a duplicate gets it without the handler. */
    inside = NULL;
    send_action(id, "inside", 2);
    handle(1, &r);
    assert_null(inside);
    assert_string_equal(json_string_value(json_object_get(r.output, "from")), "later");
    saga_reply_clear(&r);
}

/* An event loop that only watches the fd: more commands than one poll
 * handles (a batch is 200) all wait in the consumer's queue before the
 * first poll. librdkafka signals the fd only when a message arrives, so
 * after the first batch nothing but the participant itself can make the
 * fd readable again: no new traffic comes to help. */
static void test_event_loop_fd_more_than_a_batch(void **state)
{
    enum { N = 450 };
    static char ids[N][37];
    saga_error err = {0};
    struct pollfd pfd;
    int fd = saga_participant_fd(part), handled = 0, polls = 0, ok = 0;
    (void)state;
    assert_true(fd >= 0);
    for (int i = 0; i < N; i++) {
        saga_command c = {0};
        char cid[128], *text;
        new_id(ids[i]);
        memcpy(c.saga_id, ids[i], sizeof c.saga_id);
        c.saga = "it";
        c.saga_version = 1;
        c.step_name = "thing";
        c.action = "do";
        saga_command_id_format(cid, sizeof cid, ids[i], 0, SAGA_PHASE_INVOKE);
        c.command_id = cid;
        c.attempt = 1;
        c.reply_to = reply_topic;
        assert_int_equal(saga_command_encode(&c, &text, NULL, NULL), SAGA_OK);
        assert_int_equal(rd_kafka_producev(producer, RD_KAFKA_V_TOPIC(cmd_topic),
                                           RD_KAFKA_V_KEY(ids[i], strlen(ids[i])),
                                           RD_KAFKA_V_VALUE(text, strlen(text)),
                                           RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_FREE),
                                           RD_KAFKA_V_END),
                         0);
    }
    assert_int_equal(rd_kafka_flush(producer, 30000), 0);
    /* Let the participant's consumer fetch them all into its queue. */
    sleep(3);
    while (handled < N) {
        int n;
        pfd.fd = fd;
        pfd.events = POLLIN;
        pfd.revents = 0;
        if (poll(&pfd, 1, 10000) != 1)
            fail_msg("the fd stayed unreadable for 10 s with %d of %d commands handled "
                     "(%d polls)",
                     handled, N, polls);
        n = saga_participant_poll(part, 0, &err);
        if (n < 0)
            fail_msg("poll: %s", err.message);
        handled += n;
        polls++;
    }
    assert_int_equal(handled, N);
    print_message("%d commands handled in %d fd-driven polls\n", N, polls);
    for (int i = 0; i < N; i++) {
        saga_reply r;
        next_reply(&r);
        ok += r.status == SAGA_REPLY_OK;
        saga_reply_clear(&r);
    }
    assert_int_equal(ok, N);
}

/* Commands that arrive together share one transaction (group commit), yet
 * each command's effect and barrier row stand or fall together: a failed
 * command's writes are undone, a retry leaves no trace, a duplicate is
 * answered from the cache, and the others commit. */
static void test_group_commit_keeps_each_command_atomic(void **state)
{
    enum { NOK = 12 };
    char ok[NOK][37], failed[37], retried[37], nullcomp[37], arr[NOK * 40 + 4];
    saga_error err = {0};
    int handled = 0, replies = 0, nok = 0, nfailed = 0, nretry = 0, nnull = 0;
    const char *p[1] = {arr};
    size_t len = 0;
    (void)state;
    for (int i = 0; i < NOK; i++)
        new_id(ok[i]);
    new_id(failed);
    new_id(retried);
    new_id(nullcomp);
    for (int i = 0; i < NOK / 2; i++)
        send_cmd(ok[i], SAGA_PHASE_INVOKE, 1, NULL);
    send_cmd(failed, SAGA_PHASE_INVOKE, 1, "fail");
    send_cmd(retried, SAGA_PHASE_INVOKE, 1, "retry");
    send_cmd(ok[0], SAGA_PHASE_INVOKE, 2, NULL); /* a duplicate */
    send_cmd(nullcomp, SAGA_PHASE_COMPENSATE, 1, NULL);
    for (int i = NOK / 2; i < NOK; i++)
        send_cmd(ok[i], SAGA_PHASE_INVOKE, 1, NULL);
    for (int i = 0; i < 300 && handled < NOK + 4; i++) {
        int n = saga_participant_poll(part, 100, &err);
        assert_true(n >= 0);
        handled += n;
    }
    assert_int_equal(handled, NOK + 4);
    while (replies < NOK + 4) {
        saga_reply r;
        next_reply(&r);
        replies++;
        if (strcmp(r.saga_id, failed) == 0)
            nfailed += r.status == SAGA_REPLY_FAILED;
        else if (strcmp(r.saga_id, retried) == 0)
            nretry += r.status == SAGA_REPLY_RETRY;
        else if (strcmp(r.saga_id, nullcomp) == 0)
            nnull += r.status == SAGA_REPLY_OK;
        else
            nok += r.status == SAGA_REPLY_OK;
        saga_reply_clear(&r);
    }
    assert_int_equal(nok, NOK + 1); /* the duplicate answered ok from the cache */
    assert_int_equal(nfailed, 1);
    assert_int_equal(nretry, 1);
    assert_int_equal(nnull, 1);
    for (int i = 0; i < NOK; i++)
        assert_int_equal(things(ok[i]), 1);
    assert_int_equal(things(failed), 0);
    assert_int_equal(things(retried), 0);
    {
        const char *q[1] = {failed};
        assert_int_equal(
            it_int(db, "SELECT count(*) FROM it_things.saga_barrier WHERE saga_id = $1",
                   1, q),
            1);
        q[0] = retried;
        assert_int_equal(
            it_int(db, "SELECT count(*) FROM it_things.saga_barrier WHERE saga_id = $1",
                   1, q),
            0);
    }
    /* Fewer transactions than commands: now() is the transaction's start. */
    arr[len++] = '{';
    for (int i = 0; i < NOK; i++)
        len += (size_t)snprintf(arr + len, sizeof arr - len, "%s%s", i ? "," : "", ok[i]);
    arr[len++] = '}';
    arr[len] = '\0';
    {
        long long txs = it_int(db,
                               "SELECT count(DISTINCT at) FROM it_things.things"
                               " WHERE saga_id = ANY($1::uuid[])",
                               1, p);
        print_message("%d commands committed in %lld transaction(s)\n", NOK, txs);
        assert_true(txs < NOK);
        /* ... and their barrier rows were inserted together, outside the
         * commands' savepoints: a row written inside one would carry that
         * savepoint's own transaction id. */
        assert_int_equal(
            it_int(db,
                   "SELECT count(DISTINCT xmin::text) FROM it_things.saga_barrier"
                   " WHERE saga_id = ANY($1::uuid[])",
                   1, p),
            txs);
    }
}

/* Rows the group has not inserted yet count for its later commands: the
 * compensation of an action handled earlier in the same group undoes it
 * (it is no null compensation); a compensation ahead of its action in the
 * group blocks it (hanging, refused). */
static void test_group_sees_its_own_pending_rows(void **state)
{
    char both[37], hung[37];
    saga_error err = {0};
    int handled = 0, comp = compensated;
    int both_ok = 0, both_undone = 0, hung_null = 0, hung_refused = 0;
    (void)state;
    new_id(both);
    new_id(hung);
    send_cmd(both, SAGA_PHASE_INVOKE, 1, NULL);
    send_cmd(both, SAGA_PHASE_COMPENSATE, 1, NULL);
    send_cmd(hung, SAGA_PHASE_COMPENSATE, 1, NULL);
    send_cmd(hung, SAGA_PHASE_INVOKE, 1, NULL);
    for (int i = 0; i < 300 && handled < 4; i++) {
        int n = saga_participant_poll(part, 100, &err);
        assert_true(n >= 0);
        handled += n;
    }
    assert_int_equal(handled, 4);
    for (int i = 0; i < 4; i++) {
        saga_reply r;
        json_t *nc;
        next_reply(&r);
        nc = json_object_get(r.output, "null_compensation");
        if (strcmp(r.saga_id, both) == 0 && r.phase == SAGA_PHASE_INVOKE)
            both_ok += r.status == SAGA_REPLY_OK;
        else if (strcmp(r.saga_id, both) == 0)
            both_undone += r.status == SAGA_REPLY_OK && !json_is_true(nc);
        else if (r.phase == SAGA_PHASE_COMPENSATE)
            hung_null += r.status == SAGA_REPLY_OK && json_is_true(nc);
        else
            hung_refused += r.status == SAGA_REPLY_FAILED && r.error_code != NULL &&
                            strcmp(r.error_code, "hanging_action") == 0;
        saga_reply_clear(&r);
    }
    assert_int_equal(both_ok, 1);
    assert_int_equal(both_undone, 1);
    assert_int_equal(hung_null, 1);
    assert_int_equal(hung_refused, 1);
    assert_int_equal(compensated, comp + 1); /* only both's compensation ran */
    assert_int_equal(things(both), 0);
    assert_int_equal(things(hung), 0);
}

/* A reply no barrier row can hold (jsonb refuses U+0000) fails its
 * group's insert; the group is rolled back and consumed again one command
 * per transaction, so that command alone is answered retry (a database
 * error) and the others of its group are answered ok, each once: it does
 * not fail its group again and again. */
static void test_unstorable_reply_fails_alone(void **state)
{
    char ids[3][37];
    const char *modes[3] = {NULL, "nul", NULL};
    int status[3] = {-1, -1, -1}, got = 0;
    saga_error err = {0};
    (void)state;
    for (int i = 0; i < 3; i++) {
        new_id(ids[i]);
        send_cmd(ids[i], SAGA_PHASE_INVOKE, 1, modes[i]);
    }
    for (int i = 0; i < 600 && got < 3; i++) {
        rd_kafka_message_t *m;
        if (saga_participant_poll(part, 50, &err) < 0)
            assert_non_null(strstr(err.message, "redelivered"));
        while ((m = rd_kafka_consumer_poll(consumer, 0)) != NULL) {
            saga_reply r;
            if (m->err == 0 &&
                saga_reply_decode(m->payload, m->len, &r, &err) == SAGA_OK) {
                for (int k = 0; k < 3; k++)
                    if (strcmp(r.saga_id, ids[k]) == 0) {
                        assert_int_equal(status[k], -1); /* answered once */
                        status[k] = (int)r.status;
                        got++;
                    }
                saga_reply_clear(&r);
            }
            rd_kafka_message_destroy(m);
        }
    }
    assert_int_equal(got, 3);
    assert_int_equal(status[0], SAGA_REPLY_OK);
    assert_int_equal(status[1], SAGA_REPLY_RETRY);
    assert_int_equal(status[2], SAGA_REPLY_OK);
    assert_int_equal(things(ids[0]), 1);
    assert_int_equal(things(ids[1]), 0);
    assert_int_equal(things(ids[2]), 1);
}

/* The group's barrier rows go in just before it commits; a row another
 * transaction stored meanwhile for one of its commands (a second delivery
 * on another instance) makes the insert conflict: the whole group is
 * rolled back, its commands consumed again, and the command now finds the
 * other delivery's row and answers with its reply; its own effect is
 * gone. */
static PGconn *other;
static void *commit_later(void *arg)
{
    (void)arg;
    usleep(800 * 1000);
    it_exec(other, "COMMIT");
    return NULL;
}

static void test_group_insert_conflict_rolls_the_group_back(void **state)
{
    char id[37], cid[128], reply[512];
    const char *p[3] = {id, cid, reply};
    saga_error err = {0};
    pthread_t t;
    saga_reply r;
    int n = 0, inv = invoked;
    (void)state;
    new_id(id);
    saga_command_id_format(cid, sizeof cid, id, 0, SAGA_PHASE_INVOKE);
    snprintf(reply, sizeof reply,
             "{\"v\":1,\"saga_id\":\"%s\",\"step\":0,\"phase\":\"invoke\","
             "\"command_id\":\"%s\",\"attempt\":1,\"status\":\"ok\","
             "\"output\":{\"from\":\"the other delivery\"}}",
             id, cid);
    other = it_db();
    it_exec(other, "BEGIN");
    {
        PGresult *res = PQexecParams(
            other,
            "INSERT INTO it_things.saga_barrier (saga_id, step, element, phase, "
            "command_id,"
            " outcome, reply) VALUES ($1, 0, 0, 'invoke', $2, 'handled', $3::jsonb)",
            3, NULL, p, NULL, NULL, 0);
        assert_int_equal(PQresultStatus(res), PGRES_COMMAND_OK);
        PQclear(res);
    }
    send_cmd(id, SAGA_PHASE_INVOKE, 1, NULL);
    assert_int_equal(pthread_create(&t, NULL, commit_later, NULL), 0);
    /* The first poll handles it, waits at the insert for the other
     * transaction, then rolls back: an error saying it is redelivered. */
    for (int i = 0; i < 300; i++) {
        int k = saga_participant_poll(part, 100, &err);
        if (k < 0) {
            assert_non_null(strstr(err.message, "redelivered"));
            break;
        }
        assert_int_equal(k, 0);
    }
    assert_int_equal(pthread_join(t, NULL), 0);
    assert_int_equal(invoked, inv + 1);
    for (int i = 0; i < 300 && n == 0; i++)
        n = saga_participant_poll(part, 100, &err);
    assert_int_equal(n, 1);
    next_reply(&r);
    assert_int_equal(r.status, SAGA_REPLY_OK);
    assert_string_equal(json_string_value(json_object_get(r.output, "from")),
                        "the other delivery");
    saga_reply_clear(&r);
    assert_int_equal(invoked, inv + 1); /* not run again: the row answered */
    assert_int_equal(things(id), 0);    /* the rolled back run left nothing */
    PQfinish(other);
    other = NULL;
}

/* A reply to an element's command: version 2, the same element, its
 * command id. */
static void assert_element_reply(const saga_reply *r, const char *id, saga_phase phase,
                                 int element)
{
    char cid[128];
    saga_command_id_format_element(cid, sizeof cid, id, 0, phase, element);
    assert_int_equal(r->v, SAGA_PROTOCOL_VERSION_ELEMENTS);
    assert_int_equal(r->element, element);
    assert_string_equal(r->command_id, cid);
    assert_int_equal(r->phase, phase);
}

/* The elements of one fan-out step are commands of their own: each runs,
 * each has its own barrier row and its own reply; a duplicate of one is
 * absorbed by that element's row; a compensation of one that never ran
 * blocks that element's action only. */
static void test_elements_of_a_step_each_run_once(void **state)
{
    char id[37];
    saga_reply r, r1;
    int inv = invoked, comp = compensated;
    const char *p[1];
    saga_participant_stats before, after;
    (void)state;
    new_id(id);
    p[0] = id;
    saga_participant_get_stats(part, &before);
    /* Elements 0 and 1 both run: the same step, not duplicates. */
    send_element(id, SAGA_PHASE_INVOKE, 0, 1);
    handle(1, &r);
    assert_int_equal(r.status, SAGA_REPLY_OK);
    assert_element_reply(&r, id, SAGA_PHASE_INVOKE, 0);
    saga_reply_clear(&r);
    send_element(id, SAGA_PHASE_INVOKE, 1, 1);
    handle(1, &r1);
    assert_int_equal(r1.status, SAGA_REPLY_OK);
    assert_element_reply(&r1, id, SAGA_PHASE_INVOKE, 1);
    assert_int_equal(invoked, inv + 2);
    assert_int_equal(things(id), 2);
    assert_int_equal(
        it_int(
            db,
            "SELECT count(*) FROM it_things.saga_barrier WHERE saga_id = $1"
            " AND step = 0 AND phase = 'invoke' AND outcome = 'handled'"
            " AND element IN (0, 1) AND command_id = saga_id || '/0/invoke/' || element",
            1, p),
        2);
    /* A duplicate of element 1: its own answer again, no second effect. */
    send_element(id, SAGA_PHASE_INVOKE, 1, 2);
    handle(1, &r);
    assert_int_equal(r.status, SAGA_REPLY_OK);
    assert_element_reply(&r, id, SAGA_PHASE_INVOKE, 1);
    assert_int_equal(r.attempt, 2);
    assert_true(json_equal(r.output, r1.output));
    assert_int_equal(invoked, inv + 2);
    assert_int_equal(things(id), 2);
    saga_reply_clear(&r);
    saga_reply_clear(&r1);
    /* Element 2's compensation overtakes its action: a null compensation
     * that blocks element 2's action, and only that one. */
    send_element(id, SAGA_PHASE_COMPENSATE, 2, 1);
    handle(1, &r);
    assert_int_equal(r.status, SAGA_REPLY_OK);
    assert_element_reply(&r, id, SAGA_PHASE_COMPENSATE, 2);
    assert_true(json_is_true(json_object_get(r.output, "null_compensation")));
    assert_int_equal(compensated, comp);
    saga_reply_clear(&r);
    assert_int_equal(
        it_int(db,
               "SELECT count(*) FROM it_things.saga_barrier WHERE saga_id = $1"
               " AND element = 2 AND phase = 'invoke' AND outcome = 'blocked'"
               " AND command_id = saga_id || '/0/invoke/2'",
               1, p),
        1);
    send_element(id, SAGA_PHASE_INVOKE, 2, 1);
    handle(1, &r);
    assert_int_equal(r.status, SAGA_REPLY_FAILED);
    assert_element_reply(&r, id, SAGA_PHASE_INVOKE, 2);
    assert_string_equal(r.error_code, "hanging_action");
    assert_non_null(strstr(r.error_message, "step 0 element 2 of saga"));
    assert_int_equal(invoked, inv + 2);
    saga_reply_clear(&r);
    /* Element 0's compensation finds its action done: the handler runs. */
    send_element(id, SAGA_PHASE_COMPENSATE, 0, 1);
    handle(1, &r);
    assert_int_equal(r.status, SAGA_REPLY_OK);
    assert_element_reply(&r, id, SAGA_PHASE_COMPENSATE, 0);
    assert_null(json_object_get(r.output, "null_compensation"));
    assert_int_equal(compensated, comp + 1);
    saga_reply_clear(&r);
    saga_participant_get_stats(part, &after);
    assert_int_equal(after.duplicates, before.duplicates + 1);
    assert_int_equal(after.null_compensations, before.null_compensations + 1);
    assert_int_equal(after.hanging_refused, before.hanging_refused + 1);
    /* A command of version 1 to the same saga's step 1 is element 0 there,
     * and its reply is version 1. */
    {
        saga_command c = {0};
        char cid[128], *text;
        memcpy(c.saga_id, id, sizeof c.saga_id);
        c.saga = "it";
        c.saga_version = 1;
        c.step = 1;
        c.step_name = "other";
        c.action = "do";
        saga_command_id_format(cid, sizeof cid, id, 1, SAGA_PHASE_INVOKE);
        c.command_id = cid;
        c.attempt = 1;
        c.reply_to = reply_topic;
        assert_int_equal(saga_command_encode(&c, &text, NULL, NULL), SAGA_OK);
        send_raw(id, text);
        free(text);
        handle(1, &r);
        assert_int_equal(r.v, SAGA_PROTOCOL_VERSION);
        assert_int_equal(r.element, 0);
        assert_int_equal(r.status, SAGA_REPLY_OK);
        saga_reply_clear(&r);
        assert_int_equal(it_int(db,
                                "SELECT count(*) FROM it_things.saga_barrier"
                                " WHERE saga_id = $1 AND step = 1 AND element = 0",
                                1, p),
                         1);
    }
}

/* The layout of it_things.saga_barrier, against another schema's. */
#define BARRIER_LAYOUT                                                                   \
    "WITH d AS (SELECT c.relnamespace::regnamespace::text AS s,"                         \
    "  a.attname || ' ' || format_type(a.atttypid, a.atttypmod) || ' '"                  \
    "  || a.attnotnull || ' ' || coalesce(pg_get_expr(ad.adbin, ad.adrelid), '')"        \
    "  AS what FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid"                \
    "  LEFT JOIN pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum"       \
    "  WHERE c.relname = 'saga_barrier' AND a.attnum > 0 AND NOT a.attisdropped"         \
    " UNION ALL SELECT c.relnamespace::regnamespace::text,"                              \
    "  pg_get_constraintdef(k.oid) FROM pg_constraint k"                                 \
    "  JOIN pg_class c ON c.oid = k.conrelid WHERE c.relname = 'saga_barrier'),"         \
    " one AS (SELECT what FROM d WHERE s = 'it_things'),"                                \
    " two AS (SELECT what FROM d WHERE s = $1)"

/* How many columns and constraints of schema's barrier table differ from
 * the one libsaga made in it_things. */
static long long layout_differs(const char *schema)
{
    const char *p[1] = {schema};
    assert_int_equal(it_int(db, BARRIER_LAYOUT " SELECT count(*) FROM two", 1, p), 10);
    return it_int(db,
                  BARRIER_LAYOUT " SELECT count(*) FROM ((TABLE one EXCEPT TABLE two)"
                                 " UNION ALL (TABLE two EXCEPT TABLE one)) x",
                  1, p);
}

/* The barrier table as libsaga 0.4 and the SDKs of its time made it. */
#define OLD_BARRIER                                                                      \
    "CREATE TABLE saga_barrier (saga_id uuid NOT NULL, step int NOT NULL,"               \
    " phase text NOT NULL CHECK (phase IN ('invoke','compensate')),"                     \
    " command_id text NOT NULL, outcome text NOT NULL, reply jsonb,"                     \
    " created_at timestamptz NOT NULL DEFAULT clock_timestamp(),"                        \
    " PRIMARY KEY (saga_id, step, phase));"                                              \
    "INSERT INTO saga_barrier (saga_id, step, phase, command_id, outcome, reply)"        \
    " VALUES ('" OLD_ID "', 0, 'invoke', '" OLD_ID "/0/invoke', 'handled',"              \
    " '{\"v\":1,\"status\":\"ok\",\"output\":{\"kept\":true}}');"
#define OLD_ID "7a1d0c8e-5b7f-4a21-9c3e-2b7d8e9f0a1b"

/* A barrier table made by an earlier release has no element column and
 * keys rows on (saga_id, step, phase). A participant whose role owns it
 * upgrades it at start, in one transaction, keeping its rows (element 0);
 * one whose role does not is refused with the script to run, and its
 * owner's run of migrations/participant/barrier_element.sql (idempotent)
 * makes the same table. */
static void test_old_barrier_table_is_upgraded(void **state)
{
    char role[64], url[600], sql[1400];
    const char *base = it_env("SAGA_PG_URL"), *at = strchr(base, '@'), *scheme;
    saga_participant_options o = {0};
    saga_participant *p = NULL;
    saga_error err = {0};
    const char *old[1] = {OLD_ID};
    (void)state;
    it_exec(db, "DROP SCHEMA IF EXISTS it_old CASCADE; CREATE SCHEMA it_old;"
                " SET search_path = it_old; " OLD_BARRIER " RESET search_path");
    o.brokers = it_env("SAGA_KAFKA_BROKERS");
    o.service = "old";
    o.topic_prefix = prefix;
    o.db_url = it_env("SAGA_PG_URL");
    o.db_schema = "it_old";
    /* The test's role owns it: libsaga upgrades it. */
    assert_int_equal(saga_participant_new(&o, &p, &err), SAGA_OK);
    saga_participant_free(p);
    p = NULL;
    assert_int_equal(layout_differs("it_old"), 0);
    assert_int_equal(it_int(db,
                            "SELECT count(*) FROM it_old.saga_barrier WHERE saga_id = $1"
                            " AND element = 0 AND reply->'output'->>'kept' = 'true'",
                            1, old),
                     1);
    /* Again: nothing left to do. */
    assert_int_equal(saga_participant_new(&o, &p, &err), SAGA_OK);
    saga_participant_free(p);
    p = NULL;

    /* A role that may only use the table: refused, the table untouched. */
    snprintf(role, sizeof role, "it_oldsvc_%ld", (long)getpid());
    scheme = strstr(base, "://");
    assert_non_null(scheme);
    assert_non_null(at);
    snprintf(url, sizeof url, "%.*s%s%s", (int)(scheme + 3 - base), base, role, at);
    snprintf(sql, sizeof sql,
             "DROP SCHEMA IF EXISTS it_old2 CASCADE; CREATE SCHEMA it_old2;"
             " SET search_path = it_old2; " OLD_BARRIER " RESET search_path;"
             " DROP ROLE IF EXISTS %s; CREATE ROLE %s LOGIN;"
             " GRANT USAGE ON SCHEMA it_old2 TO %s;"
             " GRANT SELECT, INSERT, UPDATE ON it_old2.saga_barrier TO %s",
             role, role, role, role);
    it_exec(db, sql);
    o.db_url = url;
    o.db_schema = "it_old2";
    assert_int_equal(saga_participant_new(&o, &p, &err), SAGA_EDB);
    assert_null(p);
    assert_non_null(
        strstr(err.message, "it_old2.saga_barrier predates fan-out elements"));
    assert_non_null(strstr(err.message, role));
    assert_non_null(strstr(err.message, "migrations/participant/barrier_element.sql"));
    assert_int_equal(it_int(db,
                            "SELECT count(*) FROM pg_attribute WHERE attname = 'element'"
                            " AND attrelid = 'it_old2.saga_barrier'::regclass",
                            0, NULL),
                     0);
    /* Its owner runs the script (twice: it is idempotent); then the
     * service starts, on the same table libsaga makes. */
    it_exec(db, "SET search_path = it_old2");
    it_exec_file(db, "migrations/participant/barrier_element.sql");
    it_exec_file(db, "migrations/participant/barrier_element.sql");
    it_exec(db, "RESET search_path");
    assert_int_equal(layout_differs("it_old2"), 0);
    assert_int_equal(saga_participant_new(&o, &p, &err), SAGA_OK);
    saga_participant_free(p);
    assert_int_equal(it_int(db,
                            "SELECT count(*) FROM it_old2.saga_barrier WHERE saga_id = $1"
                            " AND element = 0",
                            1, old),
                     1);
    snprintf(sql, sizeof sql,
             "DROP SCHEMA it_old CASCADE; DROP SCHEMA it_old2 CASCADE;"
             " DROP OWNED BY %s; DROP ROLE %s",
             role, role);
    it_exec(db, sql);
}
#undef OLD_BARRIER
#undef OLD_ID
#undef BARRIER_LAYOUT

static void *stop_later(void *arg)
{
    struct timespec ts = {0, 100 * 1000000L};
    (void)arg;
    nanosleep(&ts, NULL);
    saga_participant_stop(part);
    return NULL;
}

/* Last (a stop cannot be undone): saga_participant_stop from another
 * thread wakes a loop asleep on the fd, and poll() then returns 0. */
static void test_stop_from_another_thread_wakes_the_fd(void **state)
{
    struct pollfd pfd = {.events = POLLIN};
    pthread_t t;
    saga_error err = {0};
    int n;
    (void)state;
    pfd.fd = saga_participant_fd(part);
    assert_true(pfd.fd >= 0);
    while (saga_participant_poll(part, 0, &err) > 0) /* drain: nothing waits */
        ;
    assert_int_equal(pthread_create(&t, NULL, stop_later, NULL), 0);
    n = poll(&pfd, 1, 10000);
    assert_int_equal(n, 1); /* woken by the stop, not by the 10 s timeout */
    {
        /* A stopped participant's poll returns at once, not after its 5 s. */
        struct timespec a, b;
        clock_gettime(CLOCK_MONOTONIC, &a);
        assert_int_equal(saga_participant_poll(part, 5000, &err), 0);
        clock_gettime(CLOCK_MONOTONIC, &b);
        assert_true((b.tv_sec - a.tv_sec) * 1000 + (b.tv_nsec - a.tv_nsec) / 1000000 <
                    1000);
    }
    assert_int_equal(pthread_join(t, NULL), 0);
}

/* A service's role needs no right to create tables: its owner made the
 * barrier table once (migrations/participant/barrier.sql), and libsaga
 * only uses it. Where it is missing, the same role is refused, with the
 * database's reason; given the right, it makes the same table. */
static void test_barrier_made_by_the_owner_needs_no_ddl_right(void **state)
{
    char role[64], url[600], sql[600];
    const char *base = it_env("SAGA_PG_URL"), *at = strchr(base, '@'), *scheme;
    saga_participant_options o = {0};
    saga_participant *p = NULL;
    saga_error err = {0};
    (void)state;
    snprintf(role, sizeof role, "it_noddl_%ld", (long)getpid());
    scheme = strstr(base, "://");
    assert_non_null(scheme);
    assert_non_null(at);
    snprintf(url, sizeof url, "%.*s%s%s", (int)(scheme + 3 - base), base, role, at);
    snprintf(
        sql, sizeof sql,
        "DROP SCHEMA IF EXISTS it_noddl CASCADE; DROP SCHEMA IF EXISTS it_noddl2 "
        "CASCADE; CREATE SCHEMA it_noddl; CREATE SCHEMA it_noddl2;"
        " DROP ROLE IF EXISTS %s; CREATE ROLE %s LOGIN;"
        " GRANT USAGE ON SCHEMA it_noddl, it_noddl2 TO %s; SET search_path = it_noddl",
        role, role, role);
    it_exec(db, sql);
    it_exec_file(db, "migrations/participant/barrier.sql");
    snprintf(
        sql, sizeof sql,
        "RESET search_path; GRANT SELECT, INSERT, UPDATE ON it_noddl.saga_barrier TO %s",
        role);
    it_exec(db, sql);
    o.brokers = it_env("SAGA_KAFKA_BROKERS");
    o.service = "noddl";
    o.topic_prefix = prefix;
    o.db_url = url;
    o.db_schema = "it_noddl";
    assert_int_equal(saga_participant_new(&o, &p, &err), SAGA_OK);
    saga_participant_free(p);
    p = NULL;
    o.db_schema = "it_noddl2"; /* no barrier table there, and no right to make one */
    assert_int_equal(saga_participant_new(&o, &p, &err), SAGA_EDB);
    assert_null(p);
    assert_non_null(strstr(err.message, "permission denied"));
    /* With the right, libsaga still makes the table itself, and it is the
     * table barrier.sql makes: the same columns and constraints. */
    snprintf(sql, sizeof sql, "GRANT CREATE ON SCHEMA it_noddl2 TO %s", role);
    it_exec(db, sql);
    assert_int_equal(saga_participant_new(&o, &p, &err), SAGA_OK);
    saga_participant_free(p);
    p = NULL;
    /* Each schema's columns (name type not-null default) and constraints. */
#define BARRIER_DEFS                                                                     \
    "WITH d AS (SELECT c.relnamespace::regnamespace::text AS s,"                         \
    "  a.attname || ' ' || format_type(a.atttypid, a.atttypmod) || ' '"                  \
    "  || a.attnotnull || ' ' || coalesce(pg_get_expr(ad.adbin, ad.adrelid), '')"        \
    "  AS what FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid"                \
    "  LEFT JOIN pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum"       \
    "  WHERE c.relname = 'saga_barrier' AND a.attnum > 0 AND NOT a.attisdropped"         \
    " UNION ALL SELECT c.relnamespace::regnamespace::text,"                              \
    "  pg_get_constraintdef(k.oid) FROM pg_constraint k"                                 \
    "  JOIN pg_class c ON c.oid = k.conrelid WHERE c.relname = 'saga_barrier'),"         \
    " one AS (SELECT what FROM d WHERE s = 'it_noddl'),"                                 \
    " two AS (SELECT what FROM d WHERE s = 'it_noddl2')"
    /* 8 columns, the phase check, the primary key */
    assert_int_equal(it_int(db, BARRIER_DEFS " SELECT count(*) FROM one", 0, NULL), 10);
    assert_int_equal(it_int(db,
                            BARRIER_DEFS
                            " SELECT count(*) FROM ((TABLE one EXCEPT TABLE two)"
                            " UNION ALL (TABLE two EXCEPT TABLE one)) x",
                            0, NULL),
                     0);
#undef BARRIER_DEFS
    snprintf(sql, sizeof sql,
             "DROP SCHEMA it_noddl CASCADE; DROP SCHEMA it_noddl2 CASCADE;"
             " DROP OWNED BY %s; DROP ROLE %s",
             role, role);
    it_exec(db, sql);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_duplicate_gets_cached_reply_without_second_effect),
        cmocka_unit_test(test_null_compensation),
        cmocka_unit_test(test_hanging_action_is_refused),
        cmocka_unit_test(test_compensation_after_action_undoes_it_once),
        cmocka_unit_test(test_failed_result_rolls_back_but_is_remembered),
        cmocka_unit_test(test_retry_result_leaves_no_trace),
        cmocka_unit_test(test_malformed_and_unknown_do_not_block),
        cmocka_unit_test(test_malformed_logged_rate_limited_and_dead_lettered),
        cmocka_unit_test(test_output_over_the_limit_fails_the_step),
        cmocka_unit_test(test_first_outcome_wins),
        cmocka_unit_test(test_deferred_reply),
        cmocka_unit_test(test_deferred_completed_inside_handler_is_refused),
        cmocka_unit_test(test_event_loop_fd),
        cmocka_unit_test(test_event_loop_fd_more_than_a_batch),
        cmocka_unit_test(test_group_commit_keeps_each_command_atomic),
        cmocka_unit_test(test_group_sees_its_own_pending_rows),
        cmocka_unit_test(test_group_insert_conflict_rolls_the_group_back),
        cmocka_unit_test(test_unstorable_reply_fails_alone),
        cmocka_unit_test(test_elements_of_a_step_each_run_once),
        cmocka_unit_test(test_old_barrier_table_is_upgraded),
        cmocka_unit_test(test_stop_from_another_thread_wakes_the_fd),
        cmocka_unit_test(test_barrier_made_by_the_owner_needs_no_ddl_right),
    };
    return cmocka_run_group_tests_name("participant and barrier (PostgreSQL + Kafka)",
                                       tests, setup, teardown);
}
