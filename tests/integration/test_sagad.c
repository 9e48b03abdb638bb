/* sagad against a real broker and database: bad replies on every partition
 * of a reply topic (payment's) never crash it or block the replies behind them;
 * starting with an idempotency key twice, or from 8 processes at once,
 * gives one saga; a saga deadline compensates a slow step; the history is
 * the saga's story; SIGTERM under load ends cleanly and a restart carries
 * on. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>
#include <librdkafka/rdkafka.h>

#include "harness.h"

enum { ORDER = 0, PAYMENT = 1, INVENTORY = 2 };

static it_proc procs[3], sagad;
static PGconn *db;
static char *prefix;
static int sagad_runs, payment_runs;
/* sagas/ plus tests/integration/sagad_sagas/ (order_deadline, idle). */
static char defs_dir[512];

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* sagad reads one folder: link the shipped and the test definitions into
 * one under the build directory. */
static int make_defs_dir(void)
{
    return it_defs_dir("sagad", "sagas/*.json tests/integration/sagad_sagas/*.json",
                       defs_dir, sizeof defs_dir);
}

static void start_sagad(void)
{
    char name[32];
    const char *args[] = {"--definitions", defs_dir, NULL};
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
    if (make_defs_dir() != 0)
        return -1;
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
    {
        char cmd[600];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", defs_dir);
        if (system(cmd) != 0)
            fprintf(stderr, "could not remove %s\n", defs_dir);
    }
    return 0;
}

static const char order_input[] =
    "{\"customer_id\":\"alice\",\"sku\":\"widget\",\"quantity\":1,\"amount\":10}";

/* sagactl start NAME --input INPUT; the new saga's id (malloc()ed). */
static char *start_saga(const char *name, const char *input)
{
    char out[128];
    const char *args[] = {"start", name, "--input", input, NULL};
    assert_int_equal(it_sagactl(out, sizeof out, args), 0);
    assert_int_equal(strlen(out), 36);
    return strdup(out);
}

static char *start(const char *key)
{
    char out[128];
    const char *with_key[] = {"start", "order", "--input", order_input,
                              "--key", key,     NULL};
    if (key == NULL)
        return start_saga("order", order_input);
    assert_int_equal(it_sagactl(out, sizeof out, with_key), 0);
    assert_int_equal(strlen(out), 36);
    return strdup(out);
}

/* Produce a reply to partition part of the reply topic, whatever its key
 * would choose: the test decides where the bad messages sit. */
static void produce_reply(rd_kafka_t *p, int part, const char *key, const void *buf,
                          size_t len)
{
    char topic[256];
    snprintf(topic, sizeof topic, "%sreply.payment", prefix);
    assert_int_equal(
        rd_kafka_producev(p, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_PARTITION(part),
                          RD_KAFKA_V_KEY(key, strlen(key)),
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

static int file_has(const char *path, const char *needle)
{
    FILE *f = fopen(path, "r");
    char line[8192];
    int found = 0;
    if (f == NULL)
        return 0;
    while (!found && fgets(line, sizeof line, f) != NULL)
        found = strstr(line, needle) != NULL;
    fclose(f);
    return found;
}

static rd_kafka_t *kafka_client(rd_kafka_type_t type)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    char errstr[256], group[128];
    rd_kafka_t *k;
    rd_kafka_conf_set(conf, "bootstrap.servers", it_env("SAGA_KAFKA_BROKERS"), errstr,
                      sizeof errstr);
    if (type == RD_KAFKA_PRODUCER) {
        rd_kafka_conf_set(conf, "message.max.bytes", "4000000", errstr, sizeof errstr);
    } else {
        snprintf(group, sizeof group, "%swatcher", prefix);
        rd_kafka_conf_set(conf, "group.id", group, errstr, sizeof errstr);
        rd_kafka_conf_set(conf, "enable.auto.commit", "false", errstr, sizeof errstr);
        rd_kafka_conf_set(conf, "fetch.message.max.bytes", "4000000", errstr,
                          sizeof errstr);
    }
    k = rd_kafka_new(type, conf, errstr, sizeof errstr);
    assert_non_null(k);
    return k;
}

enum { MAXPART = 64 };

/* The high watermark (next offset) of every partition of the reply topic;
 * returns the number of partitions. */
static int reply_watermarks(rd_kafka_t *k, int64_t *high)
{
    char topic[256];
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_topic_t *t;
    int n;
    snprintf(topic, sizeof topic, "%sreply.payment", prefix);
    t = rd_kafka_topic_new(k, topic, NULL);
    assert_int_equal(rd_kafka_metadata(k, 0, t, &md, 10000), RD_KAFKA_RESP_ERR_NO_ERROR);
    assert_int_equal(md->topic_cnt, 1);
    n = md->topics[0].partition_cnt;
    rd_kafka_metadata_destroy(md);
    rd_kafka_topic_destroy(t);
    assert_true(n >= 2 && n <= MAXPART);
    for (int p = 0; p < n; p++) {
        int64_t low;
        assert_int_equal(
            rd_kafka_query_watermark_offsets(k, topic, p, &low, &high[p], 10000),
            RD_KAFKA_RESP_ERR_NO_ERROR);
    }
    return n;
}

/* Replies that came after offsets from[] on each partition: for each
 * partition, whether one of them belongs to a saga of ids. Waits until all
 * partitions have one or 60 s pass; returns how many partitions do. */
static int partitions_with_later_replies(int nparts, const int64_t *from, char **ids,
                                         int nids, int *seen)
{
    rd_kafka_t *c = kafka_client(RD_KAFKA_CONSUMER);
    rd_kafka_topic_partition_list_t *parts = rd_kafka_topic_partition_list_new(nparts);
    char topic[256];
    int covered = 0;
    snprintf(topic, sizeof topic, "%sreply.payment", prefix);
    for (int p = 0; p < nparts; p++) {
        rd_kafka_topic_partition_list_add(parts, topic, p)->offset = from[p];
        seen[p] = 0;
    }
    assert_int_equal(rd_kafka_assign(c, parts), RD_KAFKA_RESP_ERR_NO_ERROR);
    rd_kafka_topic_partition_list_destroy(parts);
    for (int waited = 0; waited < 60000 && covered < nparts; waited += 200) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(c, 200);
        if (m == NULL)
            continue;
        if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR && m->partition < nparts &&
            !seen[m->partition]) {
            json_t *j = json_loadb(m->payload, m->len, 0, NULL);
            const char *sid = json_string_value(json_object_get(j, "saga_id"));
            for (int i = 0; sid != NULL && i < nids; i++)
                if (strcmp(sid, ids[i]) == 0) {
                    seen[m->partition] = 1;
                    covered++;
                    break;
                }
            json_decref(j);
        }
        rd_kafka_message_destroy(m);
    }
    rd_kafka_consumer_close(c);
    rd_kafka_destroy(c);
    return covered;
}

static void test_bad_replies_are_counted_and_do_not_block(void **state)
{
    enum { MAXPROBES = 64 };
    rd_kafka_t *p;
    rd_kafka_topic_t *rkt;
    char *done, *idle, *huge, reply[512], topic[256], *probes[MAXPROBES];
    size_t huge_len = 2 * 1024 * 1024;
    int64_t after[MAXPART];
    int nparts, nprobes = 0, covered = 0, by_key[MAXPART] = {0}, seen[MAXPART];
    (void)state;

    /* A finished saga (for a duplicate reply) and a running one that waits
     * for a service nobody runs (for a reply naming a step it lacks). */
    done = start(NULL);
    assert_string_equal(it_wait_final(db, done, 60000), "completed");
    idle = start_saga("idle", "{}");
    {
        const char *q[1] = {idle};
        for (int i = 0; i < 300 && it_int(db,
                                          "SELECT count(*) FROM saga.saga_event WHERE"
                                          " saga_id = $1 AND kind = 'step_dispatched'",
                                          1, q) != 1;
             i++)
            sleep_ms(100);
    }
    p = kafka_client(RD_KAFKA_PRODUCER);
    nparts = reply_watermarks(p, after);
    /* Every kind of bad reply on every partition, explicitly. */
    huge = malloc(huge_len);
    assert_non_null(huge);
    memset(huge, '{', huge_len);
    for (int part = 0; part < nparts; part++) {
        /* Four malformed: not JSON, not an object, wrong types, too big. */
        produce_reply(p, part, done, "this is not json", 16);
        produce_reply(p, part, done, "[1,2,3]", 7);
        snprintf(reply, sizeof reply,
                 "{\"v\":1,\"saga_id\":\"%s\",\"step\":\"zero\",\"phase\":\"invoke\","
                 "\"command_id\":\"x\",\"attempt\":1,\"status\":\"ok\"}",
                 done);
        produce_reply(p, part, done, reply, strlen(reply));
        produce_reply(p, part, done, huge, huge_len);
        /* Three well-formed but not applicable: an unknown saga, a step the
         * running saga does not have, a duplicate of an applied reply. */
        snprintf(reply, sizeof reply,
                 "{\"v\":1,\"saga_id\":\"00000000-0000-4000-8000-000000000000\","
                 "\"step\":0,\"phase\":\"invoke\",\"command_id\":\"x\",\"attempt\":1,"
                 "\"status\":\"ok\"}");
        produce_reply(p, part, "00000000-0000-4000-8000-000000000000", reply,
                      strlen(reply));
        snprintf(reply, sizeof reply,
                 "{\"v\":1,\"saga_id\":\"%s\",\"step\":99,\"phase\":\"invoke\","
                 "\"command_id\":\"%s/99/invoke\",\"attempt\":1,\"status\":\"ok\"}",
                 idle, idle);
        produce_reply(p, part, idle, reply, strlen(reply));
        snprintf(reply, sizeof reply,
                 "{\"v\":1,\"saga_id\":\"%s\",\"step\":1,\"phase\":\"invoke\","
                 "\"command_id\":\"%s/1/invoke\",\"attempt\":1,\"status\":\"ok\","
                 "\"output\":{}}",
                 done, done);
        produce_reply(p, part, done, reply, strlen(reply));
    }
    free(huge);
    assert_int_equal(rd_kafka_flush(p, 30000), 0);
    /* Everything from here on is behind the bad replies. */
    nparts = reply_watermarks(p, after);

    /* Sagas whose replies land behind them on each partition still
     * complete. Participants key replies by saga id with librdkafka's
     * default partitioner: start sagas until every partition should get
     * one; the consumer below checks where the replies really went. */
    snprintf(topic, sizeof topic, "%sreply.payment", prefix);
    rkt = rd_kafka_topic_new(p, topic, NULL);
    while (covered < nparts && nprobes < MAXPROBES) {
        int part;
        probes[nprobes] = start(NULL);
        part = rd_kafka_msg_partitioner_consistent_random(
            rkt, probes[nprobes], strlen(probes[nprobes]), nparts, NULL, NULL);
        if (part >= 0 && part < nparts && !by_key[part]++)
            covered++;
        nprobes++;
    }
    rd_kafka_topic_destroy(rkt);
    rd_kafka_destroy(p);
    for (int i = 0; i < nprobes; i++)
        assert_string_equal(it_wait_final(db, probes[i], 60000), "completed");
    assert_int_equal(partitions_with_later_replies(nparts, after, probes, nprobes, seen),
                     nparts);

    /* The malformed replies were logged with where they were (a burst may
     * be summarised after its first line, so only the first is certain). */
    {
        char needle[300];
        snprintf(needle, sizeof needle, "malformed reply at %sreply.payment[", prefix);
        if (!file_has(sagad.log, needle))
            fail_msg("sagad's log has no \"%s\"", needle);
    }
    assert_true(file_has(sagad.log,
                         "reply for unknown saga 00000000-0000-4000-8000-000000000000"));
    /* The running saga took no harm from the reply naming step 99. */
    {
        const char *q[1] = {idle};
        char *st = it_value(db, "SELECT status FROM saga.saga WHERE id = $1", 1, q);
        assert_string_equal(st, "running");
        free(st);
        assert_int_equal(
            it_int(db, "SELECT count(*) FROM saga.saga_event WHERE saga_id = $1", 1, q),
            2);
    }
    {
        int rc = it_stop(&sagad);
        long long malformed = stat_of(&sagad, "malformed");
        long long rejected = stat_of(&sagad, "rejected");
        long long ignored = stat_of(&sagad, "duplicates ignored");
        start_sagad(); /* for the next tests, whatever happens below */
        assert_int_equal(rc, 0);
        assert_int_equal(malformed, 4 * nparts);
        /* The unknown saga and step 99 of the running saga. */
        assert_int_equal(rejected, 2 * nparts);
        assert_true(ignored >= nparts); /* the duplicates, to a finished saga */
    }
    {
        const char *args[] = {"compensate", idle, "--reason", "test over", NULL};
        assert_int_equal(it_sagactl(NULL, 0, args), 0);
        assert_string_equal(it_wait_final(db, idle, 60000), "compensated");
    }
    for (int i = 0; i < nprobes; i++)
        free(probes[i]);
    free(done);
    free(idle);
}

/* A saga deadline through sagad: a slow participant and steps whose
 * timeout (10 min) cannot end them; only the deadline (2 s) does, and
 * what was done, the slow step included, is undone. */
static void test_deadline_compensates_a_slow_step(void **state)
{
    it_proc slow;
    char *id, name[64];
    const char *args[] = {NULL};
    (void)state;

    it_stop(&procs[PAYMENT]);
    setenv("SAGA_EXAMPLE_DELAY_MS", "3000", 1);
    snprintf(name, sizeof name, "t-payment-slow-%d", ++payment_runs);
    assert_int_equal(it_spawn(&slow, name, "payment-service", args), 0);
    unsetenv("SAGA_EXAMPLE_DELAY_MS");
    assert_int_equal(it_wait_log(&slow, "ready", 60000), 0);

    id = start_saga("order_deadline", order_input);
    assert_string_equal(it_wait_final(db, id, 60000), "compensated");
    {
        const char *q[1] = {id};
#define EVENTS(where)                                                                    \
    it_int(db, "SELECT count(*) FROM saga.saga_event WHERE saga_id = $1 AND " where, 1, q)
        assert_int_equal(EVENTS("kind = 'deadline_exceeded'"), 1);
        assert_int_equal(EVENTS("kind = 'saga_compensated'"), 1);
        /* The deadline, not a timeout, ended the slow step. */
        assert_int_equal(EVENTS("kind = 'attempt_timed_out'"), 0);
        /* It came while reserve_credit (step 1) was being handled. */
        assert_int_equal(EVENTS("kind = 'deadline_exceeded' AND step = 1"), 1);
#undef EVENTS
        /* The slow reservation happened and was released; the order is
         * cancelled. */
        assert_int_equal(it_int(db,
                                "SELECT count(*) FROM payment.reservations WHERE"
                                " saga_id = $1 AND status = 'released'",
                                1, q),
                         1);
        assert_int_equal(
            it_int(db,
                   "SELECT count(*) FROM orders.orders WHERE saga_id = $1 AND status ="
                   " 'cancelled'",
                   1, q),
            1);
    }
    free(id);
    assert_int_equal(it_stop(&slow), 0);
    snprintf(name, sizeof name, "t-payment-%d", ++payment_runs);
    assert_int_equal(it_spawn(&procs[PAYMENT], name, "payment-service", args), 0);
    assert_int_equal(it_wait_log(&procs[PAYMENT], "ready", 60000), 0);
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

/* Read a whole small file into buf; "" when it cannot be read. */
static void read_small(const char *path, char *buf, size_t size)
{
    FILE *f = fopen(path, "r");
    size_t n = 0;
    if (f != NULL) {
        n = fread(buf, 1, size - 1, f);
        fclose(f);
    }
    buf[n] = '\0';
    buf[strcspn(buf, "\n")] = '\0';
}

/* Eight sagactl processes start the same key at the same moment: every one
 * of them prints the one saga's id, and one saga exists. Several rounds,
 * since the processes only overlap for the length of one statement. */
static void test_idempotent_start_race(void **state)
{
    enum { PROCS = 8, ROUNDS = 10 };
    char dir[512], cmd[4096];
    (void)state;
    snprintf(dir, sizeof dir, "%s/tests/logs/start-race", it_env("SAGA_BUILD_DIR"));
    for (int round = 0; round < ROUNDS; round++) {
        char key[96], first[64] = "";
        const char *q[1] = {key};
        snprintf(key, sizeof key, "%srace-%d", prefix, round);
        /* All wait for the go file, then start: they connect and insert
         * within a few milliseconds of each other. */
        snprintf(cmd, sizeof cmd,
                 "d='%s'; rm -rf \"$d\"; mkdir -p \"$d\"; for i in $(seq %d); do"
                 " (while [ ! -e \"$d/go\" ]; do sleep 0.002; done;"
                 " '%s/bin/sagactl' start order --input '%s' --key '%s'"
                 " >\"$d/out.$i\" 2>\"$d/err.$i\"; echo $? >\"$d/rc.$i\") & done;"
                 " sleep 0.3; touch \"$d/go\"; wait",
                 dir, PROCS, it_env("SAGA_BUILD_DIR"), order_input, key);
        assert_int_equal(system(cmd), 0);
        for (int i = 1; i <= PROCS; i++) {
            char path[600], rc[16], out[128], err[1024];
            snprintf(path, sizeof path, "%s/rc.%d", dir, i);
            read_small(path, rc, sizeof rc);
            snprintf(path, sizeof path, "%s/out.%d", dir, i);
            read_small(path, out, sizeof out);
            snprintf(path, sizeof path, "%s/err.%d", dir, i);
            read_small(path, err, sizeof err);
            if (strcmp(rc, "0") != 0 || strlen(out) != 36)
                fail_msg("round %d, process %d of %d starting key %s: exit %s, printed "
                         "\"%s\", said \"%s\"",
                         round, i, PROCS, key, rc, out, err);
            if (first[0] == '\0')
                snprintf(first, sizeof first, "%s", out);
            else if (strcmp(first, out) != 0)
                fail_msg("round %d: one process got saga %s, another %s", round, first,
                         out);
        }
        assert_int_equal(
            it_int(db,
                   "SELECT count(*) FROM saga.start_request WHERE idempotency_key = $1",
                   1, q),
            1);
        assert_string_equal(it_wait_final(db, first, 60000), "completed");
        assert_int_equal(
            it_int(db, "SELECT count(*) FROM saga.saga WHERE idempotency_key = $1", 1, q),
            1);
    }
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
        cmocka_unit_test(test_idempotent_start_race),
        cmocka_unit_test(test_deadline_compensates_a_slow_step),
        cmocka_unit_test(test_history_tells_the_story),
        cmocka_unit_test(test_sigterm_under_load_then_restart),
    };
    return cmocka_run_group_tests_name("sagad (PostgreSQL + Kafka)", tests, setup,
                                       teardown);
}
