/* Who may answer for a step (issue 13), on the real broker and database
 * with sagad and the example services as processes: payment and inventory
 * sign (payment mid-rotation: it and sagad sign with different keys, each
 * accepting both), order does not. Forged replies (unsigned, signed with
 * another service's key, on another service's topic, on the shared topic)
 * change nothing and are counted and set aside; forged commands are
 * refused by the payment service; a reply on the shared topic is applied
 * only under --shared-replies (an upgrade). */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <librdkafka/rdkafka.h>

#include "harness.h"
#include "saga/saga.h"

#define K_PAY     "1111111111111111111111111111111111111111111111111111111111111111"
#define K_PAY_NEW "2222222222222222222222222222222222222222222222222222222222222222"
#define K_INV     "3333333333333333333333333333333333333333333333333333333333333333"

enum { ORDER, PAYMENT, INVENTORY, SAGAD, NPROCS };
static it_proc procs[NPROCS];
static PGconn *db;
static const char *prefix;
static char keys_dir[512], defs_dir[512];
static rd_kafka_t *producer;
static saga_keys *k_pay, *k_inv;
static int unclean_stop;

static void write_key(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    assert_int_equal(chmod(path, 0600), 0);
}

static int start_sagad(int shared)
{
    const char *args[] = {"--definitions",
                          defs_dir,
                          "--key-dir",
                          keys_dir,
                          "--http",
                          "127.0.0.1:0",
                          "--observe-interval",
                          "1s",
                          shared ? "--shared-replies" : NULL,
                          NULL};
    return it_spawn(&procs[SAGAD], shared ? "trust-sagad-shared" : "trust-sagad", "sagad",
                    args) == 0 &&
                   it_wait_log(&procs[SAGAD], "sagad running", 60000) == 0
               ? 0
               : -1;
}

static int group_setup(void **state)
{
    static const char *const services[] = {"order", "payment", "inventory"};
    const char *migrate[] = {"migrate", "--dir", "migrations", NULL};
    char path[1400], errstr[256], out[256];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    const char *h1[] = {K_PAY}, *h2[] = {K_INV};
    FILE *f;
    (void)state;
    it_isolate_db("trust");
    prefix = strdup(it_prefix("trust"));
    setenv("SAGA_TOPIC_PREFIX", prefix, 1);
    if (it_sagactl(out, sizeof out, migrate) != 0)
        return -1;
    db = it_db();
    /* sagad's keys: payment's old key first (it signs with it), the new
     * one accepted; the payment service has them the other way round. */
    snprintf(keys_dir, sizeof keys_dir, "%s/tests/trust-keys-%ld",
             it_env("SAGA_BUILD_DIR"), (long)getpid());
    snprintf(path, sizeof path, "rm -rf '%s' && mkdir -p '%s'", keys_dir, keys_dir);
    if (system(path) != 0)
        return -1;
    snprintf(path, sizeof path, "%s/payment.key", keys_dir);
    write_key(path, "# payment, rotating\n" K_PAY "\n" K_PAY_NEW "\n");
    snprintf(path, sizeof path, "%s/inventory.key", keys_dir);
    write_key(path, K_INV "\n");
    snprintf(path, sizeof path, "%s/payment-service.key", keys_dir);
    write_key(path, K_PAY_NEW "\n" K_PAY "\n");
    /* A one-step saga of a service nobody runs, with a long timeout: its
     * replies come from this test (an old participant that answers on the
     * shared topic). */
    if (it_defs_dir("trust", "sagas/order.json", defs_dir, sizeof defs_dir) != 0)
        return -1;
    snprintf(path, sizeof path, "%s/legacy.json", defs_dir);
    if ((f = fopen(path, "w")) == NULL)
        return -1;
    fputs("{\"name\": \"legacy\", \"defaults\": {\"timeout\": \"5m\"}, \"steps\": "
          "[{\"name\": "
          "\"work\", \"service\": \"legacy\", \"action\": \"work\", \"compensation\": "
          "null}]}\n",
          f);
    fclose(f);
    for (int i = 0; i < 3; i++) {
        char prog[64], key[1400];
        const char *args[] = {NULL};
        snprintf(prog, sizeof prog, "%s-service", services[i]);
        snprintf(key, sizeof key, "%s/%s", keys_dir,
                 i == PAYMENT     ? "payment-service.key"
                 : i == INVENTORY ? "inventory.key"
                                  : "");
        if (i == ORDER)
            unsetenv("SAGA_KEY_FILE");
        else
            setenv("SAGA_KEY_FILE", key, 1);
        if (it_spawn(&procs[i], services[i], prog, args) != 0 ||
            it_wait_log(&procs[i], "ready", 60000) != 0)
            return -1;
    }
    unsetenv("SAGA_KEY_FILE");
    it_exec_file(db, "examples/seed.sql");
    if (start_sagad(0) != 0)
        return -1;
    rd_kafka_conf_set(conf, "bootstrap.servers", it_env("SAGA_KAFKA_BROKERS"), errstr,
                      sizeof errstr);
    if ((producer = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr)) == NULL)
        return -1;
    if (saga_keys_from_hex(h1, 1, &k_pay, NULL) != SAGA_OK ||
        saga_keys_from_hex(h2, 1, &k_inv, NULL) != SAGA_OK)
        return -1;
    return 0;
}

static int group_teardown(void **state)
{
    int rc = 0;
    (void)state;
    for (int i = NPROCS - 1; i >= 0; i--) {
        if (procs[i].pid > 0)
            kill(procs[i].pid, SIGCONT);
        if (procs[i].pid > 0 && it_stop(&procs[i]) != 0) {
            fprintf(stderr, "%s did not exit cleanly on SIGTERM\n", procs[i].name);
            rc = -1;
            unclean_stop = 1;
        }
    }
    if (producer != NULL)
        rd_kafka_destroy(producer);
    saga_keys_free(k_pay);
    saga_keys_free(k_inv);
    PQfinish(db);
    free((void *)prefix);
    return rc;
}

/* Produce value to <prefix><tail> with key, signed with k (NULL: not
 * signed), and wait for the broker's word. */
static void produce(const char *tail, const char *key, const char *value,
                    const saga_keys *k)
{
    char topic[300], sig[SAGA_SIGNATURE_SIZE];
    rd_kafka_headers_t *h = rd_kafka_headers_new(1);
    snprintf(topic, sizeof topic, "%s%s", prefix, tail);
    if (k != NULL) {
        assert_int_equal(saga_sign(k, topic, key, strlen(key), value, strlen(value), sig),
                         SAGA_OK);
        rd_kafka_header_add(h, SAGA_SIGNATURE_HEADER, -1, sig, -1);
    }
    assert_int_equal(
        rd_kafka_producev(producer, RD_KAFKA_V_TOPIC(topic),
                          RD_KAFKA_V_KEY(key, strlen(key)),
                          RD_KAFKA_V_VALUE((void *)(uintptr_t)value, strlen(value)),
                          RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_HEADERS(h),
                          RD_KAFKA_V_END),
        0);
    assert_int_equal(rd_kafka_flush(producer, 15000), 0);
}

/* A reply of status st for step step (invoke, attempt 1) of saga id. */
static char *reply_of(const char *id, int step, saga_reply_status st)
{
    saga_reply r = {0};
    char cmd_id[128], *text = NULL;
    r.v = SAGA_PROTOCOL_VERSION;
    memcpy(r.saga_id, id, SAGA_ID_LEN + 1);
    r.step = step;
    r.phase = SAGA_PHASE_INVOKE;
    saga_command_id_format(cmd_id, sizeof cmd_id, id, step, SAGA_PHASE_INVOKE);
    r.command_id = cmd_id;
    r.attempt = 1;
    r.status = st;
    if (st == SAGA_REPLY_OK)
        r.output = json_pack("{s:s}", "reservation", "forged");
    else
        r.error_code = (char *)(uintptr_t) "no";
    assert_int_equal(saga_reply_encode(&r, &text, NULL, NULL), SAGA_OK);
    json_decref(r.output);
    return text;
}

static char *ok_reply(const char *id, int step)
{
    return reply_of(id, step, SAGA_REPLY_OK);
}

static char *start(const char *saga, const char *input)
{
    char out[128];
    const char *args[] = {"start", saga, "--input", input, NULL};
    assert_int_equal(it_sagactl(out, sizeof out, args), 0);
    assert_int_equal(strlen(out), 36);
    return strdup(out);
}

/* Wait until the query (one $1 = id) gives want; 60 s at most. */
static void wait_int(const char *sql, const char *id, long long want)
{
    const char *p[1] = {id};
    long long got = -1;
    for (int i = 0; i < 600; i++) {
        if ((got = it_int(db, sql, 1, p)) == want)
            return;
        struct timespec ts = {0, 100 * 1000000L};
        nanosleep(&ts, NULL);
    }
    fail_msg("%s with %s: %lld, want %lld", sql, id, got, want);
}

static void wait_dispatched(const char *id, int step)
{
    char sql[200];
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM saga.saga_event WHERE saga_id = $1 AND kind = "
             "'step_dispatched' AND step = %d",
             step);
    wait_int(sql, id, 1);
}

static double metric(const char *series)
{
    static char buf[1 << 20];
    int port = it_http_port(&procs[SAGAD]);
    assert_true(port > 0);
    assert_int_equal(it_http_get(port, "/metrics", buf, sizeof buf), 200);
    return it_sample(buf, series);
}

static long long reserved(const char *customer)
{
    const char *p[1] = {customer};
    return it_int(db, "SELECT reserved FROM payment.customers WHERE id = $1", 1, p);
}

/* bob (credit 500) orders 700: payment answers insufficient_credit. Before
 * it does (it is stopped), five forged `ok` replies for that step arrive:
 * none is applied, each is counted and set aside; the real answer then
 * compensates the saga. */
static void test_forged_replies_change_nothing(void **state)
{
    long long bob0 = reserved("bob");
    char *id, *forged;
    const char *p[1];
    (void)state;
    assert_int_equal(kill(procs[PAYMENT].pid, SIGSTOP), 0);
    id = start("order", "{\"customer_id\":\"bob\",\"sku\":\"widget\",\"quantity\":1,"
                        "\"amount\":700}");
    wait_dispatched(id, 1);
    forged = ok_reply(id, 1);
    produce("reply.payment", id, forged, NULL);    /* unsigned */
    produce("reply.payment", id, forged, k_inv);   /* inventory's key */
    produce("reply.inventory", id, forged, k_inv); /* inventory's topic */
    produce("reply.inventory", id, forged, k_pay); /* payment's key, wrong topic */
    produce("reply", id, forged, k_pay);           /* the shared topic */
    wait_int("SELECT count(*) FROM saga.dead_letter WHERE ref = $1 AND source = 'reply'",
             id, 5);
    p[0] = id;
    {
        char *st =
            it_value(db,
                     "SELECT status || '/' || (SELECT status FROM saga.saga_step WHERE"
                     " saga_id = $1 AND idx = 1) FROM saga.saga WHERE id = $1",
                     1, p);
        assert_string_equal(st, "running/dispatched");
        free(st);
    }
    assert_int_equal(it_int(db,
                            "SELECT count(*) FROM saga.dead_letter WHERE ref = $1 AND"
                            " reason LIKE '%bad signature%'",
                            1, p),
                     1);
    assert_int_equal(it_int(db,
                            "SELECT count(*) FROM saga.dead_letter WHERE ref = $1 AND"
                            " reason LIKE '%unsigned%'",
                            1, p),
                     1);
    assert_int_equal(it_int(db,
                            "SELECT count(*) FROM saga.dead_letter WHERE ref = $1 AND"
                            " reason LIKE '%answers on " /* the topic rule */
                            "%'",
                            1, p),
                     3);
    assert_true(metric("saga_replies_dropped_total{reason=\"unauthenticated\"}") >= 2);
    assert_true(metric("saga_replies_dropped_total{reason=\"wrong_topic\"}") >= 3);
    assert_int_equal(it_wait_log(&procs[SAGAD], "rejected (unauthenticated)", 10000), 0);
    assert_int_equal(kill(procs[PAYMENT].pid, SIGCONT), 0);
    assert_string_equal(it_wait_final(db, id, 60000), "compensated");
    assert_int_equal(reserved("bob"), bob0);
    {
        char *st =
            it_value(db, "SELECT status FROM orders.orders WHERE saga_id = $1", 1, p);
        assert_string_equal(st, "cancelled");
        free(st);
    }
    free(forged);
    free(id);
}

/* Signed both ways with different first keys (a rotation half done), the
 * order saga completes. */
static void test_rotation_and_signed_saga_complete(void **state)
{
    long long alice0 = reserved("alice");
    char *id;
    (void)state;
    kill(procs[PAYMENT].pid, SIGCONT); /* if an earlier test failed */
    id = start("order", "{\"customer_id\":\"alice\",\"sku\":\"widget\",\"quantity\":1,"
                        "\"amount\":100}");
    assert_string_equal(it_wait_final(db, id, 60000), "completed");
    assert_int_equal(reserved("alice"), alice0 + 100);
    free(id);
}

/* A command with the fields of a real one, for saga id. */
static char *command(const char *id, int step, saga_phase phase, const char *action,
                     const char *payload)
{
    saga_command c = {0};
    char cmd_id[128], reply_to[300], *text = NULL;
    c.v = SAGA_PROTOCOL_VERSION;
    memcpy(c.saga_id, id, SAGA_ID_LEN + 1);
    c.saga = "order";
    c.saga_version = 1;
    c.step = step;
    c.step_name = "reserve_credit";
    c.phase = phase;
    c.action = (char *)(uintptr_t)action;
    saga_command_id_format(cmd_id, sizeof cmd_id, id, step, phase);
    c.command_id = cmd_id;
    c.attempt = 1;
    snprintf(reply_to, sizeof reply_to, "%sreply.payment", prefix);
    c.reply_to = reply_to;
    c.payload = json_loads(payload, 0, NULL);
    assert_int_equal(saga_command_encode(&c, &text, NULL, NULL), SAGA_OK);
    json_decref(c.payload);
    return text;
}

/* Forged commands on the payment service's topic: release the credit of a
 * completed saga, reserve credit for a saga that does not exist. The
 * service refuses all three (unsigned, or signed with inventory's key). */
static void test_forged_commands_refused(void **state)
{
    long long alice0;
    char *id, *release, *reserve;
    const char *ghost = "00000000-0000-4000-8000-00000000f00d";
    const char *p[1] = {ghost};
    (void)state;
    kill(procs[PAYMENT].pid, SIGCONT); /* if an earlier test failed */
    id = start("order", "{\"customer_id\":\"alice\",\"sku\":\"widget\",\"quantity\":1,"
                        "\"amount\":50}");
    assert_string_equal(it_wait_final(db, id, 60000), "completed");
    alice0 = reserved("alice");
    release = command(id, 1, SAGA_PHASE_COMPENSATE, "release_credit",
                      "{\"customer_id\":\"alice\",\"amount\":50}");
    reserve = command(ghost, 1, SAGA_PHASE_INVOKE, "reserve_credit",
                      "{\"customer_id\":\"alice\",\"amount\":50,\"order_id\":1}");
    produce("cmd.payment", id, release, NULL);
    produce("cmd.payment", id, release, k_inv);
    produce("cmd.payment", ghost, reserve, NULL);
    for (int i = 0; i < 3; i++)
        assert_int_equal(it_wait_log(&procs[PAYMENT], "unauthenticated", 30000), 0);
    /* All three reached the service and were dead-lettered: its log says
     * so for each, with the reason. */
    {
        char cmd[800];
        snprintf(cmd, sizeof cmd,
                 "for i in $(seq 1 300); do [ $(grep -c 'dead-lettered.*unauthenticated' "
                 "'%s') -ge 3 ] && exit 0; sleep 0.1; done; exit 1",
                 procs[PAYMENT].log);
        assert_int_equal(system(cmd), 0);
    }
    assert_int_equal(reserved("alice"), alice0);
    assert_int_equal(
        it_int(db, "SELECT count(*) FROM payment.saga_barrier WHERE saga_id = $1", 1, p),
        0);
    free(release);
    free(reserve);
    free(id);
}

/* A reply on the shared topic (an old participant) is refused by default
 * and applied under --shared-replies. */
static void test_shared_topic_only_during_an_upgrade(void **state)
{
    char *id, *reply;
    const char *p[1];
    (void)state;
    id = start("legacy", "{}");
    p[0] = id;
    wait_dispatched(id, 0);
    reply = ok_reply(id, 0);
    produce("reply", id, reply, NULL);
    wait_int("SELECT count(*) FROM saga.dead_letter WHERE ref = $1 AND source = 'reply'",
             id, 1);
    assert_int_equal(it_int(db,
                            "SELECT count(*) FROM saga.dead_letter WHERE ref = $1 AND"
                            " reason LIKE '%only with --shared-replies%'",
                            1, p),
                     1);
    {
        char *st = it_value(db, "SELECT status FROM saga.saga WHERE id = $1", 1, p);
        assert_string_equal(st, "running");
        free(st);
    }
    assert_int_equal(it_stop(&procs[SAGAD]), 0);
    assert_int_equal(start_sagad(1), 0);
    produce("reply", id, reply, NULL);
    assert_string_equal(it_wait_final(db, id, 60000), "completed");
    free(reply);
    free(id);
}

/* A service that does not sign has only the topic rule: a forged answer
 * on its own topic that comes first wins. The real one that contradicts
 * it is then not dropped in silence: logged and counted. */
static void test_contradicting_answer_is_said(void **state)
{
    char *id, *failed, *ok;
    (void)state;
    id = start("legacy", "{}");
    wait_dispatched(id, 0);
    failed = reply_of(id, 0, SAGA_REPLY_FAILED);
    ok = ok_reply(id, 0);
    produce("reply.legacy", id, failed, NULL);
    assert_string_equal(it_wait_final(db, id, 60000), "compensated");
    produce("reply.legacy", id, ok, NULL);
    assert_int_equal(it_wait_log(&procs[SAGAD], "was answered failed and now ok", 30000),
                     0);
    assert_true(metric("saga_replies_dropped_total{reason=\"conflicting\"}") >= 1);
    free(failed);
    free(ok);
    free(id);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_forged_replies_change_nothing),
        cmocka_unit_test(test_rotation_and_signed_saga_complete),
        cmocka_unit_test(test_forged_commands_refused),
        cmocka_unit_test(test_shared_topic_only_during_an_upgrade),
        cmocka_unit_test(test_contradicting_answer_is_said),
    };
    int rc = cmocka_run_group_tests(tests, group_setup, group_teardown);
    return rc != 0 ? rc : unclean_stop;
}
