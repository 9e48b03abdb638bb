/* The participant's counters, against librdkafka's in-process mock
 * cluster (no server, no database): commands received, replies by
 * status, malformed messages, unknown actions, handler time; and that
 * another thread may read them while the polling thread counts. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
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

#define ID "6f1c2f7e-8a1b-4c3d-9e2f-0123456789ab"

static void on_ok(const saga_command *cmd, struct pg_conn *db, saga_result *r, void *arg)
{
    struct timespec pause = {0, 2000000}; /* 2 ms, so the time sum shows */
    (void)cmd;
    (void)db;
    (void)arg;
    nanosleep(&pause, NULL);
    saga_result_ok(r, json_pack("{s:i}", "n", 1));
}

static void on_fail(const saga_command *cmd, struct pg_conn *db, saga_result *r,
                    void *arg)
{
    (void)cmd;
    (void)db;
    (void)arg;
    saga_result_fail(r, "no_stock", "none left");
}

static void on_retry(const saga_command *cmd, struct pg_conn *db, saga_result *r,
                     void *arg)
{
    (void)cmd;
    (void)db;
    (void)arg;
    saga_result_retry(r, 100, "busy");
}

static void produce(rd_kafka_t *rk, const char *topic, const char *text)
{
    assert_int_equal(
        rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_KEY(ID, strlen(ID)),
                          RD_KAFKA_V_VALUE((void *)text, strlen(text)),
                          RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END),
        RD_KAFKA_RESP_ERR_NO_ERROR);
}

static void send_command(rd_kafka_t *rk, int step, const char *action)
{
    saga_command c = {0};
    saga_error err = {0};
    char cid[128], *text;
    memcpy(c.saga_id, ID, sizeof c.saga_id);
    c.v = SAGA_PROTOCOL_VERSION;
    c.saga = "order";
    c.saga_version = 1;
    c.step = step;
    c.step_name = (char *)action;
    c.phase = SAGA_PHASE_INVOKE;
    c.action = (char *)action;
    saga_command_id_format(cid, sizeof cid, ID, step, SAGA_PHASE_INVOKE);
    c.command_id = cid;
    c.attempt = 1;
    c.reply_to = "saga.reply";
    c.payload = json_object();
    assert_int_equal(saga_command_encode(&c, &text, NULL, &err), SAGA_OK);
    produce(rk, "saga.cmd.stats", text);
    free(text);
    json_decref(c.payload);
}

/* A thread that reads the counters while the test polls: every read must
 * succeed and no counter may go back (a torn or unsynchronised read of a
 * counter being written could). */
typedef struct reader {
    const saga_participant *p;
    atomic_int done;
    int reads, went_back, failed;
    saga_participant_stats last;
} reader;

/* Reads the counters from another thread while the test polls: each must
 * be readable and never go backwards. `make check` also runs this program
 * built with ThreadSanitizer (make tsan; build/tsan/tests), which reports
 * an unsynchronised counter as the data race it is: made plain instead of
 * atomic, the counters fail that run at once (tried: "data race" in
 * handle_message against this reader). */
static void *read_stats(void *arg)
{
    reader *r = arg;
    while (!atomic_load(&r->done)) {
        saga_participant_stats st;
        if (saga_participant_get_stats(r->p, &st) != SAGA_OK) {
            r->failed++;
            continue;
        }
        if (st.received < r->last.received || st.handled < r->last.handled ||
            st.handler_calls < r->last.handler_calls ||
            st.handler_time_ns < r->last.handler_time_ns)
            r->went_back++;
        r->last = st;
        r->reads++;
    }
    return NULL;
}

static void test_counters(void **state)
{
    char errstr[256];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_t *rk;
    rd_kafka_mock_cluster_t *mc;
    saga_participant *p = NULL;
    saga_participant_options o = {0};
    saga_participant_stats st;
    saga_error err = {0};
    int total = 0;
    (void)state;

    rd_kafka_conf_set(conf, "log_level", "0", errstr, sizeof errstr);
    rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
    assert_non_null(rk);
    mc = rd_kafka_mock_cluster_new(rk, 1);
    assert_non_null(mc);
    assert_int_equal(rd_kafka_mock_topic_create(mc, "saga.cmd.stats", 1, 1),
                     RD_KAFKA_RESP_ERR_NO_ERROR);
    /* the dead-letter topic too: the mock cluster cannot create topics */
    assert_int_equal(rd_kafka_mock_topic_create(mc, "saga.dead.stats", 1, 1),
                     RD_KAFKA_RESP_ERR_NO_ERROR);
    assert_int_equal(rd_kafka_mock_topic_create(mc, "saga.reply", 1, 1),
                     RD_KAFKA_RESP_ERR_NO_ERROR);
    assert_int_equal(rd_kafka_mock_topic_create(mc, "saga.reply.stats", 1, 1),
                     RD_KAFKA_RESP_ERR_NO_ERROR);
    o.brokers = rd_kafka_mock_cluster_bootstraps(mc);
    o.service = "stats";
    if (saga_participant_new(&o, &p, &err) != SAGA_OK)
        fail_msg("participant on the mock cluster: %s", err.message);
    assert_int_equal(saga_participant_on(p, SAGA_PHASE_INVOKE, "ok", on_ok, NULL),
                     SAGA_OK);
    assert_int_equal(saga_participant_on(p, SAGA_PHASE_INVOKE, "fail", on_fail, NULL),
                     SAGA_OK);
    assert_int_equal(saga_participant_on(p, SAGA_PHASE_INVOKE, "retry", on_retry, NULL),
                     SAGA_OK);

    /* A producer of our own on the same mock cluster sends the commands. */
    {
        rd_kafka_conf_t *pc = rd_kafka_conf_new();
        rd_kafka_t *prod;
        rd_kafka_conf_set(pc, "bootstrap.servers", o.brokers, errstr, sizeof errstr);
        rd_kafka_conf_set(pc, "log_level", "0", errstr, sizeof errstr);
        prod = rd_kafka_new(RD_KAFKA_PRODUCER, pc, errstr, sizeof errstr);
        assert_non_null(prod);
        send_command(prod, 0, "ok");
        send_command(prod, 1, "ok");
        send_command(prod, 2, "fail");
        send_command(prod, 3, "retry");
        send_command(prod, 4, "nobody_handles_this");
        produce(prod, "saga.cmd.stats", "{not json");
        assert_int_equal(rd_kafka_flush(prod, 10000), RD_KAFKA_RESP_ERR_NO_ERROR);
        rd_kafka_destroy(prod);
    }

    /* Joining the group and fetching take a few polls; another thread
     * reads the counters all the while. */
    {
        reader rd = {.p = p};
        pthread_t t;
        atomic_init(&rd.done, 0);
        assert_int_equal(pthread_create(&t, NULL, read_stats, &rd), 0);
        for (int i = 0; i < 300 && total < 6; i++) {
            int n = saga_participant_poll(p, 100, &err);
            if (n < 0)
                fail_msg("poll: %s", err.message);
            total += n;
        }
        atomic_store(&rd.done, 1);
        assert_int_equal(pthread_join(t, NULL), 0);
        assert_int_equal(rd.failed, 0);
        assert_int_equal(rd.went_back, 0);
        assert_true(rd.reads > 0);
        /* Its last read may be a message behind, never ahead. */
        assert_true(rd.last.received <= 6);
    }
    assert_int_equal(total, 6);
    assert_int_equal(saga_participant_get_stats(p, &st), SAGA_OK);
    assert_int_equal(st.received, 6);
    assert_int_equal(st.malformed, 1);
    assert_int_equal(st.unknown_action, 1);
    assert_int_equal(st.handled, 5);
    assert_int_equal(st.replied_ok, 2);
    assert_int_equal(st.replied_failed, 2); /* fail, and the unknown action */
    assert_int_equal(st.replied_retry, 1);
    assert_int_equal(st.handler_calls, 4); /* no handler for the unknown action */
    assert_true(st.handler_time_ns >= 4000000);
    assert_int_equal(st.duplicates, 0); /* no database, no barrier */

    saga_participant_free(p);
    rd_kafka_mock_cluster_destroy(mc);
    rd_kafka_destroy(rk);
}

static void test_misuse(void **state)
{
    saga_participant_stats st;
    (void)state;
    memset(&st, 0xff, sizeof st);
    assert_int_equal(saga_participant_get_stats(NULL, &st), SAGA_EINVAL);
    assert_int_equal(st.received, 0);
    assert_int_equal(st.handler_time_ns, 0);
    assert_int_equal(saga_participant_get_stats(NULL, NULL), SAGA_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_misuse),
        cmocka_unit_test(test_counters),
    };
    return cmocka_run_group_tests_name("participant counters", tests, NULL, NULL);
}
