/* sagad against a real broker and database: bad replies never crash it or
 * block the replies behind them; starting with an idempotency key twice
 * gives one saga; the history is the saga's story; SIGTERM under load ends
 * cleanly and a restart carries on. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>
#include <librdkafka/rdkafka.h>

#include "harness.h"

static it_proc procs[3], sagad;
static PGconn *db;
static char *prefix;
static int sagad_runs;

static void start_sagad(void)
{
    char name[32];
    const char *args[] = {"--definitions", "sagas", NULL};
    snprintf(name, sizeof name, "sagad-t%d", ++sagad_runs);
    assert_int_equal(it_spawn(&sagad, name, "sagad", args), 0);
    assert_int_equal(it_wait_log(&sagad, "sagad running", 60000), 0);
}

static int setup(void **state)
{
    static const char *const services[] = {"order", "payment", "inventory"};
    const char *migrate[] = {"migrate", "--dir", "migrations", NULL};
    (void)state;
    it_isolate_db("sagad");
    prefix = strdup(it_prefix("sagad"));
    setenv("SAGA_TOPIC_PREFIX", prefix, 1);
    if (it_sagactl(NULL, 0, migrate) != 0)
        return -1;
    db = it_db();
    for (int i = 0; i < 3; i++) {
        char prog[64], name[64];
        const char *args[] = {NULL};
        snprintf(prog, sizeof prog, "%s-service", services[i]);
        snprintf(name, sizeof name, "t-%s", services[i]);
        if (it_spawn(&procs[i], name, prog, args) != 0 ||
            it_wait_log(&procs[i], "ready", 60000) != 0)
            return -1;
    }
    it_exec_file(db, "examples/seed.sql");
    it_exec(db, "UPDATE inventory.stock SET available = 100000 WHERE sku = 'widget'");
    start_sagad();
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    if (sagad.pid > 0)
        it_stop(&sagad);
    for (int i = 0; i < 3; i++)
        it_stop(&procs[i]);
    PQfinish(db);
    free(prefix);
    return 0;
}

static char *start(const char *key)
{
    char out[128];
    const char *input =
        "{\"customer_id\":\"alice\",\"sku\":\"widget\",\"quantity\":1,\"amount\":10}";
    const char *with_key[] = {"start", "order", "--input", input, "--key", key, NULL};
    const char *without[] = {"start", "order", "--input", input, NULL};
    assert_int_equal(it_sagactl(out, sizeof out, key ? with_key : without), 0);
    assert_int_equal(strlen(out), 36);
    return strdup(out);
}

static void produce_reply(rd_kafka_t *p, const char *key, const void *buf, size_t len)
{
    char topic[256];
    snprintf(topic, sizeof topic, "%sreply", prefix);
    assert_int_equal(
        rd_kafka_producev(p, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_KEY(key, strlen(key)),
                          RD_KAFKA_V_VALUE((void *)buf, len),
                          RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END),
        0);
}

/* The last "stopped:" figure before word in the log of p. */
static long long stat_of(const it_proc *p, const char *word)
{
    char cmd[1024], line[64];
    FILE *f;
    long long v = -1;
    snprintf(cmd, sizeof cmd, "grep -o '[0-9]* %s' '%s' | tail -n 1 | cut -d' ' -f1",
             word, p->log);
    f = popen(cmd, "r");
    if (f != NULL && fgets(line, sizeof line, f) != NULL)
        v = atoll(line);
    if (f != NULL)
        pclose(f);
    return v;
}

static void test_bad_replies_are_counted_and_do_not_block(void **state)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_t *p;
    char errstr[256], *id, *huge, reply[512];
    size_t huge_len = 2 * 1024 * 1024;
    (void)state;

    id = start(NULL);
    assert_string_equal(it_wait_final(db, id, 60000), "completed");
    rd_kafka_conf_set(conf, "bootstrap.servers", it_env("SAGA_KAFKA_BROKERS"), errstr,
                      sizeof errstr);
    rd_kafka_conf_set(conf, "message.max.bytes", "4000000", errstr, sizeof errstr);
    p = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
    assert_non_null(p);
    /* Four malformed: not JSON, not an object, wrong types, too big. */
    produce_reply(p, id, "this is not json", 16);
    produce_reply(p, id, "[1,2,3]", 7);
    snprintf(reply, sizeof reply,
             "{\"v\":1,\"saga_id\":\"%s\",\"step\":\"zero\",\"phase\":\"invoke\","
             "\"command_id\":\"x\",\"attempt\":1,\"status\":\"ok\"}",
             id);
    produce_reply(p, id, reply, strlen(reply));
    huge = malloc(huge_len);
    memset(huge, '{', huge_len);
    produce_reply(p, id, huge, huge_len);
    free(huge);
    /* Two well-formed but impossible: an unknown saga, an unknown step. */
    snprintf(
        reply, sizeof reply,
        "{\"v\":1,\"saga_id\":\"00000000-0000-4000-8000-000000000000\",\"step\":0,"
        "\"phase\":\"invoke\",\"command_id\":\"x\",\"attempt\":1,\"status\":\"ok\"}");
    produce_reply(p, "00000000-0000-4000-8000-000000000000", reply, strlen(reply));
    snprintf(reply, sizeof reply,
             "{\"v\":1,\"saga_id\":\"%s\",\"step\":99,\"phase\":\"invoke\","
             "\"command_id\":\"x\",\"attempt\":1,\"status\":\"ok\"}",
             id);
    produce_reply(p, id, reply, strlen(reply));
    /* And a duplicate of a reply already applied. */
    snprintf(
        reply, sizeof reply,
        "{\"v\":1,\"saga_id\":\"%s\",\"step\":3,\"phase\":\"invoke\","
        "\"command_id\":\"%s/3/invoke\",\"attempt\":1,\"status\":\"ok\",\"output\":{}}",
        id, id);
    produce_reply(p, id, reply, strlen(reply));
    assert_int_equal(rd_kafka_flush(p, 10000), 0);
    rd_kafka_destroy(p);
    free(id);

    /* A saga after them on the same partition still completes. */
    id = start(NULL);
    assert_string_equal(it_wait_final(db, id, 60000), "completed");
    free(id);
    {
        int rc = it_stop(&sagad);
        long long malformed = stat_of(&sagad, "malformed");
        long long rejected = stat_of(&sagad, "rejected");
        long long ignored = stat_of(&sagad, "duplicates ignored");
        start_sagad(); /* for the next tests, whatever happens below */
        assert_int_equal(rc, 0);
        assert_int_equal(malformed, 4);
        assert_true(rejected >= 1); /* the unknown saga */
        assert_true(ignored >= 2);  /* step 99 and the duplicate, to a finished saga */
    }
}

static void test_idempotent_start(void **state)
{
    char key[64], out[256];
    char *a, *b;
    const char *args[] = {"--json", "start", "order", "--input",
                          "{}",     "--key", key,     NULL};
    (void)state;
    snprintf(key, sizeof key, "%sorder-42", prefix);
    a = start(key);
    b = start(key);
    assert_string_equal(a, b);
    assert_int_equal(it_sagactl(out, sizeof out, args), 0);
    assert_non_null(strstr(out, a));
    assert_non_null(strstr(out, "\"existed\": true"));
    {
        const char *p[1] = {key};
        assert_int_equal(
            it_int(db, "SELECT count(*) FROM saga.saga WHERE idempotency_key = $1", 1, p),
            1);
    }
    assert_string_equal(it_wait_final(db, a, 60000), "completed");
    free(a);
    free(b);
}

static void test_history_tells_the_story(void **state)
{
    char *id, path[600], cmd[1024];
    json_t *events;
    const char *want[] = {"saga_started",    "step_dispatched", "step_succeeded",
                          "step_dispatched", "step_succeeded",  "step_dispatched",
                          "step_succeeded",  "step_dispatched", "step_succeeded",
                          "saga_completed"};
    size_t i;
    json_t *ev;
    (void)state;
    id = start(NULL);
    assert_string_equal(it_wait_final(db, id, 60000), "completed");
    snprintf(path, sizeof path, "%s/tests/logs/history.json", it_env("SAGA_BUILD_DIR"));
    snprintf(cmd, sizeof cmd, "%s/bin/sagactl history %s --json > %s",
             it_env("SAGA_BUILD_DIR"), id, path);
    assert_int_equal(system(cmd), 0);
    events = json_load_file(path, 0, NULL);
    assert_true(json_is_array(events));
    assert_int_equal(json_array_size(events), sizeof want / sizeof want[0]);
    json_array_foreach(events, i, ev)
    {
        assert_string_equal(json_string_value(json_object_get(ev, "kind")), want[i]);
        assert_non_null(json_string_value(json_object_get(ev, "at")));
        assert_non_null(json_string_value(json_object_get(ev, "actor")));
    }
    assert_string_equal(
        json_string_value(json_object_get(json_array_get(events, 1), "step_name")),
        "create_order");
    /* Started through a start request: sagad created it. */
    assert_string_equal(
        json_string_value(json_object_get(json_array_get(events, 0), "actor")), "sagad");
    /* One trace for all; an attempt's events share its span; steps differ. */
    {
        const char *trace =
            json_string_value(json_object_get(json_array_get(events, 0), "trace_id"));
        const char *span1 =
            json_string_value(json_object_get(json_array_get(events, 1), "span_id"));
        const char *span1b =
            json_string_value(json_object_get(json_array_get(events, 2), "span_id"));
        const char *span2 =
            json_string_value(json_object_get(json_array_get(events, 3), "span_id"));
        assert_non_null(trace);
        assert_int_equal(strlen(trace), 32);
        json_array_foreach(events, i, ev) assert_string_equal(
            json_string_value(json_object_get(ev, "trace_id")), trace);
        assert_true(json_is_null(json_object_get(json_array_get(events, 0), "span_id")));
        assert_non_null(span1);
        assert_non_null(span2);
        assert_int_equal(strlen(span1), 16);
        assert_string_equal(span1, span1b);
        assert_string_not_equal(span1, span2);
    }
    json_decref(events);
    /* Unknown ids and bad ids: exit 1 and 2. */
    snprintf(cmd, sizeof cmd,
             "%s/bin/sagactl history 00000000-0000-4000-8000-000000000000 2>/dev/null",
             it_env("SAGA_BUILD_DIR"));
    assert_int_equal(WEXITSTATUS(system(cmd)), 1);
    snprintf(cmd, sizeof cmd, "%s/bin/sagactl history nope 2>/dev/null",
             it_env("SAGA_BUILD_DIR"));
    assert_int_equal(WEXITSTATUS(system(cmd)), 2);
    free(id);
}

static void test_sigterm_under_load_then_restart(void **state)
{
    enum { N = 30 };
    char *ids[N];
    (void)state;
    for (int i = 0; i < N; i++)
        ids[i] = start(NULL);
    usleep(300 * 1000);
    /* Graceful stop in the middle of the work: exit status 0. */
    assert_int_equal(it_stop(&sagad), 0);
    start_sagad();
    for (int i = 0; i < N; i++) {
        assert_string_equal(it_wait_final(db, ids[i], 60000), "completed");
        free(ids[i]);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_replies_are_counted_and_do_not_block),
        cmocka_unit_test(test_idempotent_start),
        cmocka_unit_test(test_history_tells_the_story),
        cmocka_unit_test(test_sigterm_under_load_then_restart),
    };
    return cmocka_run_group_tests_name("sagad (PostgreSQL + Kafka)", tests, setup,
                                       teardown);
}
