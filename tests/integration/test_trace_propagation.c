/* W3C trace context end to end, against a real PostgreSQL and Kafka with
 * sagad and the example services: a saga started with a traceparent keeps
 * its trace id on every command (forward and compensation), each step
 * attempt has its own span, the participants receive and log them, sagad
 * logs them, `sagactl history` names the same spans, and every reply
 * goes back in the span of the command it answers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <librdkafka/rdkafka.h>

#include "harness.h"
#include "order_workload.h"
#include "saga/saga.h"

#define TRACE_OK  "4bf92f3577b34da6a3ce929d0e0e4736"
#define TRACE_BAD "0af7651916cd43dd8448eb211c80319c"

static it_proc svc[OW_NSVC], sagad;
static PGconn *db;
static char *prefix;
static saga_client *client;

static int setup(void **state)
{
    /* Debug and JSON: sagad's lines about steps, with their fields. */
    const char *args[] = {"--definitions", "sagas", "--log-level", "debug",
                          "--log-format",  "json",  NULL};
    saga_error err = {0};
    (void)state;
    if (ow_setup("trace", &db, &prefix) != 0)
        return -1;
    for (int i = 0; i < OW_NSVC; i++)
        ow_start_service(&svc[i], i, "trace", 1);
    it_exec_file(db, "examples/seed.sql");
    if (it_spawn(&sagad, "trace-sagad", "sagad", args) != 0 ||
        it_wait_log(&sagad, "sagad running", 60000) != 0)
        return -1;
    if (saga_client_new(it_env("SAGA_PG_URL"), &client, &err) != SAGA_OK)
        return -1;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    saga_client_free(client);
    ow_stop_all(&sagad, 1);
    ow_stop_all(svc, OW_NSVC);
    PQfinish(db);
    free(prefix);
    return 0;
}

static void start(const char *traceparent, const char *sku, int qty, char id[37])
{
    saga_error err = {0};
    char status[32];
    json_t *input = json_pack("{s:s, s:s, s:i, s:i}", "customer_id", "alice", "sku", sku,
                              "quantity", qty, "amount", 300);
    assert_int_equal(saga_client_start_traced(client, "order", input, NULL, traceparent,
                                              id, NULL, &err),
                     SAGA_OK);
    json_decref(input);
    assert_int_equal(saga_client_wait(client, id, 60000, status, &err), SAGA_OK);
}

/* Counts over the commands the example services handled for saga id
 * (their command_log tables). */
static long long count_of(const char *id, const char *what, const char *where)
{
    char sql[1024];
    const char *p[1] = {id};
    snprintf(sql, sizeof sql,
             "SELECT %s FROM (SELECT * FROM orders.command_log UNION ALL"
             " SELECT * FROM payment.command_log UNION ALL"
             " SELECT * FROM inventory.command_log) c WHERE saga_id = $1 AND %s",
             what, where);
    return it_int(db, sql, 1, p);
}

static long long commands(const char *id, const char *where)
{
    return count_of(id, "count(*)", where);
}

static long long distinct_spans(const char *id)
{
    return count_of(id, "count(DISTINCT span_id)", "true");
}

/* The span sagactl history gives the dispatch of (step, phase, attempt)
 * of a saga (events: its history --json), or NULL. */
static const char *dispatch_span(json_t *events, int step, saga_phase phase, int attempt)
{
    size_t i;
    json_t *ev;
    const char *kind =
        phase == SAGA_PHASE_COMPENSATE ? "compensation_dispatched" : "step_dispatched";
    json_array_foreach(events, i, ev)
    {
        if (strcmp(json_string_value(json_object_get(ev, "kind")), kind) == 0 &&
            json_integer_value(json_object_get(ev, "step")) == step &&
            json_integer_value(json_object_get(ev, "attempt")) == attempt)
            return json_string_value(json_object_get(ev, "span_id"));
    }
    return NULL;
}

/* Read sagad's reply topic from the start and check every reply for saga
 * id: it carries a traceparent header in trace, with the span of the
 * command it answers (the span sagactl history names for that step,
 * phase and attempt; the first test checks those are the spans the
 * participants received). A failed step's command leaves no row in the
 * services' command logs (the handler's transaction is rolled back), so
 * the history is the reference. Returns how many replies were checked. */
static int check_replies(const char *id, const char *trace)
{
    char errstr[512], topic[256], group[64];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_topic_partition_list_t *subs;
    rd_kafka_t *rk;
    static int groups;
    const char *hist[] = {"history", id, "--json", NULL};
    static char out[1 << 17];
    json_t *events;
    long long want;
    int checked = 0, idle = 0;

    assert_int_equal(it_sagactl_all(out, sizeof out, 0, hist), 0);
    events = json_loads(out, 0, NULL);
    assert_non_null(events);
    want = it_int(db,
                  "SELECT count(*) FROM saga.saga_event WHERE saga_id = $1"
                  " AND kind IN ('step_dispatched', 'compensation_dispatched')",
                  1, (const char *[]){id});

    {
        /* Every service's reply topic: <prefix>reply.<service>, by pattern. */
        size_t n = 0;
        topic[n++] = '^';
        for (const char *c = prefix; *c && n < sizeof topic - 16; c++) {
            if (*c == '.')
                topic[n++] = '\\';
            topic[n++] = *c;
        }
        snprintf(topic + n, sizeof topic - n, "reply\\..+");
    }
    snprintf(group, sizeof group, "trace-replies-%d-%d", (int)getpid(), groups++);
    assert_int_equal(rd_kafka_conf_set(conf, "bootstrap.servers",
                                       it_env("SAGA_KAFKA_BROKERS"), errstr,
                                       sizeof errstr),
                     RD_KAFKA_CONF_OK);
    assert_int_equal(rd_kafka_conf_set(conf, "group.id", group, errstr, sizeof errstr),
                     RD_KAFKA_CONF_OK);
    assert_int_equal(
        rd_kafka_conf_set(conf, "auto.offset.reset", "earliest", errstr, sizeof errstr),
        RD_KAFKA_CONF_OK);
    assert_int_equal(
        rd_kafka_conf_set(conf, "enable.auto.commit", "false", errstr, sizeof errstr),
        RD_KAFKA_CONF_OK);
    rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof errstr);
    assert_non_null(rk);
    rd_kafka_poll_set_consumer(rk);
    subs = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(subs, topic, RD_KAFKA_PARTITION_UA);
    assert_int_equal(rd_kafka_subscribe(rk, subs), RD_KAFKA_RESP_ERR_NO_ERROR);
    rd_kafka_topic_partition_list_destroy(subs);
    /* Until every command's reply was seen and nothing more came for 2 s
     * (a redelivered reply is checked too), or 60 s. */
    for (int i = 0; i < 600 && (checked < want || idle < 20); i++) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 100);
        rd_kafka_headers_t *hdrs = NULL;
        const void *tp = NULL;
        size_t tplen = 0;
        saga_reply r;
        saga_error err = {0};
        char got_trace[33] = "", got_span[17] = "";
        const char *span;
        if (m == NULL) {
            idle++;
            continue;
        }
        if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR ||
            saga_reply_decode(m->payload, m->len, &r, &err) != SAGA_OK) {
            rd_kafka_message_destroy(m);
            continue;
        }
        idle = 0;
        if (strcmp(r.saga_id, id) != 0) {
            saga_reply_clear(&r);
            rd_kafka_message_destroy(m);
            continue;
        }
        if (rd_kafka_message_headers(m, &hdrs) != RD_KAFKA_RESP_ERR_NO_ERROR ||
            rd_kafka_header_get_last(hdrs, "traceparent", &tp, &tplen) !=
                RD_KAFKA_RESP_ERR_NO_ERROR)
            fail_msg("reply to step %d %s attempt %d of saga %s has no traceparent",
                     r.step, saga_phase_name(r.phase), r.attempt, id);
        /* 00-<32 hex trace id>-<16 hex span id>-<flags> */
        assert_int_equal(tplen, 55);
        memcpy(got_trace, (const char *)tp + 3, 32);
        memcpy(got_span, (const char *)tp + 36, 16);
        assert_string_equal(got_trace, trace);
        span = dispatch_span(events, r.step, r.phase, r.attempt);
        if (span == NULL || strcmp(span, got_span) != 0)
            fail_msg("reply to step %d %s attempt %d of saga %s is in span %s, its "
                     "command in %s",
                     r.step, saga_phase_name(r.phase), r.attempt, id, got_span,
                     span ? span : "(none)");
        checked++;
        saga_reply_clear(&r);
        rd_kafka_message_destroy(m);
    }
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    json_decref(events);
    assert_true(checked >= want);
    return checked;
}

static int file_has(const char *path, const char *needle)
{
    FILE *f = fopen(path, "r");
    char line[8192];
    int found = 0;
    while (f != NULL && !found && fgets(line, sizeof line, f) != NULL)
        found = strstr(line, needle) != NULL;
    if (f != NULL)
        fclose(f);
    return found;
}

static void test_a_traced_saga_keeps_its_trace_everywhere(void **state)
{
    char id[37], out[65536], needle[128];
    const char *hist[] = {"history", id, "--json", NULL};
    long long total;
    json_t *events, *ev;
    size_t i;
    int checked = 0;
    (void)state;
    start("00-" TRACE_OK "-00f067aa0ba902b7-01", "widget", 1, id);
    assert_string_equal(it_wait_final(db, id, 60000), "completed");
    /* The saga keeps the trace, with a span of its own. */
    {
        const char *p[1] = {id};
        char *tp = it_value(db, "SELECT traceparent FROM saga.saga WHERE id = $1", 1, p);
        assert_non_null(tp);
        assert_memory_equal(tp, "00-" TRACE_OK "-", 36);
        assert_string_not_equal(tp + 36, "00f067aa0ba902b7-01");
        free(tp);
    }
    /* Every command the participants received carried it; four steps,
     * four distinct spans. */
    total = commands(id, "true");
    assert_int_equal(total, 4);
    assert_int_equal(commands(id, "trace_id = '" TRACE_OK "'"), total);
    assert_int_equal(commands(id, "span_id IS NOT NULL"), total);
    assert_int_equal(distinct_spans(id), 4);
    /* sagactl history names the spans the participants received. */
    assert_int_equal(it_sagactl_all(out, sizeof out, 0, hist), 0);
    events = json_loads(out, 0, NULL);
    assert_non_null(events);
    json_array_foreach(events, i, ev)
    {
        const char *span = json_string_value(json_object_get(ev, "span_id"));
        assert_string_equal(json_string_value(json_object_get(ev, "trace_id")), TRACE_OK);
        if (strcmp(json_string_value(json_object_get(ev, "kind")), "step_dispatched") ==
            0) {
            char where[128];
            assert_non_null(span);
            snprintf(where, sizeof where, "span_id = '%s' AND step = %lld", span,
                     (long long)json_integer_value(json_object_get(ev, "step")));
            assert_int_equal(commands(id, where), 1);
            checked++;
        }
    }
    assert_int_equal(checked, 4);
    json_decref(events);
    /* The participants' log lines and sagad's carry the trace id. */
    snprintf(needle, sizeof needle, "saga=%s step=create_order attempt=1 trace_id=%s", id,
             TRACE_OK);
    assert_true(file_has(svc[OW_ORDER].log, needle));
    snprintf(needle, sizeof needle, "trace_id=%s", TRACE_OK);
    assert_true(file_has(svc[OW_PAYMENT].log, needle));
    assert_true(file_has(svc[OW_INVENTORY].log, needle));
    assert_true(file_has(sagad.log, "\"trace_id\":\"" TRACE_OK "\""));
    /* The replies went back in the same trace, each in its command's span. */
    assert_true(check_replies(id, TRACE_OK) >= 4);
}

static void test_compensations_stay_in_the_trace(void **state)
{
    char id[37];
    (void)state;
    /* Five gadgets, one in stock: reserve_stock fails, credit and order
     * are undone. */
    start("00-" TRACE_BAD "-b7ad6b7169203331-00", "gadget", 5, id);
    assert_string_equal(it_wait_final(db, id, 60000), "compensated");
    assert_int_equal(commands(id, "phase = 'compensate'"), 2);
    assert_int_equal(commands(id, "trace_id = '" TRACE_BAD "'"), commands(id, "true"));
    /* A compensation is a span of its own, not the action's. */
    assert_int_equal(distinct_spans(id), commands(id, "true"));
    /* The replies too, the failed step's and the compensations'. */
    assert_true(check_replies(id, TRACE_BAD) >= 5);
}

static void test_untraced_and_bad_contexts(void **state)
{
    char id[37], line[256], want[64];
    const char *show[] = {"show", id, "--json", NULL};
    const char *bad[] = {"start", "order", "--traceparent", "00-nope", NULL};
    saga_error err = {0};
    json_t *shown;
    char out[16384];
    (void)state;
    /* Without a context: a fresh trace, the same for all its commands, and
     * the one sagactl show reports. */
    start(NULL, "widget", 1, id);
    assert_string_equal(it_wait_final(db, id, 60000), "completed");
    assert_int_equal(it_sagactl_all(out, sizeof out, 0, show), 0);
    shown = json_loads(out, 0, NULL);
    assert_non_null(shown);
    assert_int_equal(json_string_length(json_object_get(shown, "trace_id")), 32);
    snprintf(want, sizeof want, "trace_id = '%s'",
             json_string_value(json_object_get(shown, "trace_id")));
    assert_int_equal(commands(id, want), 4);
    json_decref(shown);
    /* A malformed traceparent is refused, saying what is expected. */
    assert_int_equal(
        saga_client_start_traced(client, "order", NULL, NULL, "00-nope", id, NULL, &err),
        SAGA_EINVAL);
    assert_non_null(strstr(err.message, "W3C traceparent"));
    assert_int_equal(it_sagactl(line, sizeof line, bad), 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_a_traced_saga_keeps_its_trace_everywhere),
        cmocka_unit_test(test_compensations_stay_in_the_trace),
        cmocka_unit_test(test_untraced_and_bad_contexts),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
