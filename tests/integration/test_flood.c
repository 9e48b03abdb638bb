/* test_flood.c - a flood of poisoned messages on top of a steady load
 * (issue 11): the order workload (order_workload.h) runs through the real
 * sagad and the example participant services at a steady rate; for 60 s
 * this test also produces a few hundred poisoned messages per second
 *  - to sagad's reply topic: malformed replies (bad JSON, wrong types,
 *    values out of range, strings over 255 bytes, a 5,000-character saga
 *    id, NUL escapes, duplicate keys, more than 1 MiB) and well-formed
 *    replies for sagas that do not exist;
 *  - to the services' command topics: malformed commands and well-formed
 *    ones whose reply_to is not the deployment's reply topic
 * (never an answer to a live saga's command, never a command a participant
 * would execute). Then: every saga ended as the workload expects and the
 * business state is consistent (ow_check); every malformed reply is in
 * saga.dead_letter with its reason and its bytes, every reply for an
 * unknown saga was rejected and counted, not dead-lettered; sagad's
 * metrics and stats say the same; every poisoned command is on its
 * service's dead-letter topic (<prefix>dead.<service>) once, with its
 * reason, topic, partition and offset, as it was sent. Prints the figures:
 * sagas, latency before and during the flood, poison sent and
 * dead-lettered per kind. Size: FLOOD_SECONDS (default 60). */
#include <arpa/inet.h>
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
#include <uuid.h>

#include "harness.h"
#include "order_workload.h"
#include "saga/saga.h"

#define BASELINE_S    8     /* the steady load alone, before the flood */
#define SAGAS_PER_S   5     /* the steady load */
#define REPLY_PER_S   160   /* malformed replies */
#define UNKNOWN_PER_S 40    /* well-formed replies for sagas that do not exist */
#define CMD_PER_S     90    /* poisoned commands, over the three services */
#define HUGE_EVERY    750   /* every this many malformed replies: one over 1 MiB */
#define STORED_MAX    65536 /* saga.dead_letter keeps this much of a payload */
#define MAX_SENT      40000
#define DRAIN_S       60 /* after the flood: for sagas and dead letters */

/* The kinds of poison, and how much of each went out and came back. */
enum {
    R_BAD_JSON,
    R_WRONG_TYPE,
    R_OUT_OF_RANGE,
    R_LONG_STRING,
    R_LONG_SAGA_ID,
    R_NUL,
    R_DUP_KEY,
    R_HUGE,
    R_UNKNOWN_SAGA, /* well-formed: rejected, not dead-lettered */
    C_BAD_JSON,
    C_OUT_OF_RANGE,
    C_LONG,
    C_BAD_TOPIC,
    C_OTHER_TOPIC,
    C_LONG_TOPIC,
    C_DUP_NUL,
    NKINDS
};
#define R_MALFORMED_KINDS 8 /* R_BAD_JSON .. R_HUGE */
#define C_FIRST           C_BAD_JSON
#define C_KINDS           (NKINDS - C_FIRST)

static const char *const kind_names[NKINDS] = {
    "reply: bad JSON",       "reply: wrong type",       "reply: out of range",
    "reply: string > 255 B", "reply: 5,000-char id",    "reply: NUL escape",
    "reply: duplicate key",  "reply: over 1 MiB",       "reply: unknown saga",
    "command: bad JSON",     "command: out of range",   "command: string > 255 B",
    "command: reply_to bad", "command: reply_to other", "command: reply_to 300 chars",
    "command: dup key / NUL"};

/* One poisoned message as sent: its kind, length, the hash of what
 * saga.dead_letter or the dead-letter topic must hold of it, and whether
 * it came back. */
typedef struct sent_msg {
    uint8_t kind;
    uint8_t delivered;
    uint8_t seen;
    uint32_t len;
    uint64_t hash;
} sent_msg;

static PGconn *db;
static char *prefix;
static it_proc svc[OW_NSVC], sagad;
static int http_port;
static rd_kafka_t *producer;
static saga_client *client;
static char reply_topic[256], cmd_topics[OW_NSVC][256], dead_topics[OW_NSVC][256];
static sent_msg *sent;
static int nsent;
static long long delivered[NKINDS], failed_deliveries, came_back[NKINDS];
static long long started_baseline, started_flood;

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static uint64_t fnv(const void *p, size_t n)
{
    const unsigned char *s = p;
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) {
        h ^= s[i];
        h *= 1099511628211ull;
    }
    return h;
}

/* A malloc()ed printf. */
static char *fmt(const char *f, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 1, 2)))
#endif
    ;

static char *fmt(const char *f, ...)
{
    va_list ap;
    int n;
    char *s;
    va_start(ap, f);
    n = vsnprintf(NULL, 0, f, ap);
    va_end(ap);
    s = malloc((size_t)n + 1);
    assert_non_null(s);
    va_start(ap, f);
    vsnprintf(s, (size_t)n + 1, f, ap);
    va_end(ap);
    return s;
}

static char *repeat(char c, size_t n)
{
    char *s = malloc(n + 1);
    assert_non_null(s);
    memset(s, c, n);
    s[n] = '\0';
    return s;
}

static void new_id(char id[SAGA_ID_LEN + 1])
{
    uuid_t u;
    uuid_generate_random(u);
    uuid_unparse_lower(u, id);
}

/* ---- set-up ---- */

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    int i = (int)(intptr_t)m->_private;
    (void)rk;
    (void)opaque;
    if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        if (failed_deliveries++ < 5)
            fprintf(stderr, "flood: a poisoned message not delivered: %s\n",
                    rd_kafka_err2str(m->err));
        return;
    }
    sent[i].delivered = 1;
    delivered[sent[i].kind]++;
}

static int setup(void **state)
{
    const char *args[] = {"--definitions", "tests/integration/crash_sagas", "--http",
                          "127.0.0.1:0", NULL};
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    char errstr[256];
    saga_error err = {0};
    (void)state;
    if (ow_setup("flood", &db, &prefix) != 0)
        return -1;
    sent = calloc(MAX_SENT, sizeof *sent);
    if (sent == NULL)
        return -1;
    snprintf(reply_topic, sizeof reply_topic, "%sreply", prefix);
    for (int i = 0; i < OW_NSVC; i++) {
        snprintf(cmd_topics[i], sizeof cmd_topics[i], "%scmd.%s", prefix, ow_services[i]);
        snprintf(dead_topics[i], sizeof dead_topics[i], "%sdead.%s", prefix,
                 ow_services[i]);
    }
    if (rd_kafka_conf_set(conf, "bootstrap.servers", it_env("SAGA_KAFKA_BROKERS"), errstr,
                          sizeof errstr) != RD_KAFKA_CONF_OK ||
        rd_kafka_conf_set(conf, "enable.idempotence", "true", errstr, sizeof errstr) !=
            RD_KAFKA_CONF_OK ||
        rd_kafka_conf_set(conf, "message.max.bytes", "2000000", errstr, sizeof errstr) !=
            RD_KAFKA_CONF_OK ||
        rd_kafka_conf_set(conf, "linger.ms", "5", errstr, sizeof errstr) !=
            RD_KAFKA_CONF_OK) {
        fprintf(stderr, "producer config: %s\n", errstr);
        return -1;
    }
    rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
    producer = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
    /* The reply topic with room for the message over 1 MiB (the broker may
     * have the default 1 MB), before sagad creates it its way. */
    if (producer == NULL ||
        it_create_topic(producer, reply_topic, 4, "max.message.bytes", "2097152") != 0)
        return -1;
    for (int i = 0; i < OW_NSVC; i++)
        ow_start_service(&svc[i], i, "flood", 1);
    ow_seed(db);
    if (it_spawn(&sagad, "flood-sagad", "sagad", args) != 0 ||
        it_wait_log(&sagad, "sagad running", 60000) != 0)
        return -1;
    http_port = it_http_port(&sagad);
    if (saga_client_new(it_env("SAGA_PG_URL"), &client, &err) != SAGA_OK) {
        fprintf(stderr, "client: %s\n", err.message);
        return -1;
    }
    return http_port > 0 ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    ow_stop_all(&sagad, 1);
    ow_stop_all(svc, OW_NSVC);
    saga_client_free(client);
    if (producer != NULL)
        rd_kafka_destroy(producer);
    PQfinish(db);
    free(prefix);
    free(sent);
    return 0;
}

/* ---- the steady load ---- */

/* An order as ow_start_wave makes them (one customer in ten short of
 * credit, one order in four for the scarce gadget), started through the
 * client with the key <prefix><phase><k>. */
static void start_order(char phase, long long k)
{
    char key[128], id[SAGA_ID_LEN + 1], customer[32];
    saga_error err = {0};
    json_t *input;
    snprintf(customer, sizeof customer, "crash-c%lld", k % 10 == 9 ? 9 : k % 9);
    input =
        json_pack("{s:s, s:s, s:I, s:I}", "customer_id", customer, "sku",
                  k % 4 == 3 ? "crash-g" : "crash-w", "quantity", (json_int_t)(1 + k % 3),
                  "amount", (json_int_t)(100 + (k * 37) % 400));
    snprintf(key, sizeof key, "%s%c%lld", prefix, phase, k);
    if (saga_client_start(client, "crash_order", input, key, id, NULL, &err) != SAGA_OK)
        fail_msg("starting an order: %s", err.message);
    json_decref(input);
}

/* ---- poison ---- */

static void produce(const char *topic, int kind, char *value, size_t len)
{
    char key[48];
    int i = nsent++;
    rd_kafka_resp_err_t e;
    assert_true(i < MAX_SENT);
    snprintf(key, sizeof key, "flood%d-%d", kind, i);
    sent[i].kind = (uint8_t)kind;
    sent[i].len = (uint32_t)len;
    sent[i].hash = fnv(value, len < STORED_MAX || kind >= C_FIRST ? len : STORED_MAX);
    do {
        e = rd_kafka_producev(
            producer, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_KEY(key, strlen(key)),
            RD_KAFKA_V_VALUE(value, len), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
            RD_KAFKA_V_OPAQUE((void *)(intptr_t)i), RD_KAFKA_V_END);
        if (e == RD_KAFKA_RESP_ERR__QUEUE_FULL)
            rd_kafka_poll(producer, 50);
    } while (e == RD_KAFKA_RESP_ERR__QUEUE_FULL);
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR)
        fail_msg("producing a poisoned message: %s", rd_kafka_err2str(e));
    free(value);
}

/* A well-formed reply for saga id (which must not be a live one), with
 * fields replaced: extra is appended inside the object as given. */
static char *reply_text(const char *id, const char *status, const char *extra)
{
    return fmt("{\"v\":1,\"saga_id\":\"%s\",\"step\":0,\"phase\":\"invoke\","
               "\"command_id\":\"%s/0/invoke\",\"attempt\":1,\"status\":\"%s\"%s}",
               id, id, status, extra);
}

/* Malformed reply number seq of kind (an id of a saga that does not exist:
 * these could never be mistaken for a live saga's answer). */
static void poison_reply(int kind, long long seq)
{
    char id[SAGA_ID_LEN + 1];
    char *v = NULL;
    int variant = (int)(seq / (R_MALFORMED_KINDS - 1));
    new_id(id);
    switch (kind) {
    case R_BAD_JSON: {
        char *full = reply_text(id, "ok", ",\"output\":{}");
        switch (variant % 4) {
        case 0: /* cut in the middle */
            full[strlen(full) / 2] = '\0';
            v = fmt("%s", full);
            break;
        case 1:
            v = fmt("not json at all %lld", seq);
            break;
        case 2:
            v = fmt("{\"v\":1,\"saga_id\":\"%s\",}", id);
            break;
        default:
            v = fmt("[%s]", full);
            break;
        }
        free(full);
        break;
    }
    case R_WRONG_TYPE: {
        static const char *const bad[] = {
            "{\"v\":1,\"saga_id\":\"%s\",\"step\":\"0\",\"phase\":\"invoke\","
            "\"command_id\":\"c\",\"attempt\":1,\"status\":\"ok\"}",
            "{\"v\":1,\"saga_id\":\"%s\",\"step\":0,\"phase\":\"invoke\","
            "\"command_id\":\"c\",\"attempt\":\"1\",\"status\":\"ok\"}",
            "{\"v\":1,\"saga_id\":\"%s\",\"step\":0,\"phase\":\"invoke\","
            "\"command_id\":\"c\",\"attempt\":1,\"status\":1}",
            "{\"v\":1,\"saga_id\":\"%s\",\"step\":0,\"phase\":\"invoke\","
            "\"command_id\":\"c\",\"attempt\":1,\"status\":\"ok\",\"output\":[1]}",
            "{\"v\":1,\"saga_id\":\"%s\",\"step\":0,\"phase\":\"invoke\","
            "\"command_id\":\"c\",\"attempt\":1,\"status\":\"failed\",\"error\":\"x\"}",
        };
        v = fmt(bad[variant % 5], id);
        break;
    }
    case R_OUT_OF_RANGE: {
        static const char *const extra[] = {",\"retry_after\":10000000000000000",
                                            ",\"retry_after\":-1",
                                            ",\"attempt\":0",
                                            ",\"attempt\":1000001",
                                            ",\"step\":-1",
                                            ",\"step\":10000",
                                            ",\"v\":2"};
        /* the later key would be a duplicate: build the field list anew */
        const char *e = extra[variant % 7];
        if (strstr(e, "retry_after") != NULL)
            v = reply_text(id, "retry", e);
        else if (strstr(e, "attempt") != NULL)
            v = fmt("{\"v\":1,\"saga_id\":\"%s\",\"step\":0,\"phase\":\"invoke\","
                    "\"command_id\":\"c\"%s,\"status\":\"ok\"}",
                    id, e);
        else if (strstr(e, "step") != NULL)
            v = fmt("{\"v\":1,\"saga_id\":\"%s\"%s,\"phase\":\"invoke\","
                    "\"command_id\":\"c\",\"attempt\":1,\"status\":\"ok\"}",
                    id, e);
        else
            v = fmt("{\"saga_id\":\"%s\",\"step\":0,\"phase\":\"invoke\","
                    "\"command_id\":\"c\",\"attempt\":1,\"status\":\"ok\"%s}",
                    id, e);
        break;
    }
    case R_LONG_STRING: {
        /* a command id or an error code of 256 bytes and more */
        char *s = repeat((char)('a' + variant % 26), 256 + (size_t)(variant % 3) * 22);
        if (variant % 2 == 0)
            v = fmt("{\"v\":1,\"saga_id\":\"%s\",\"step\":0,\"phase\":\"invoke\","
                    "\"command_id\":\"%s\",\"attempt\":1,\"status\":\"ok\"}",
                    id, s);
        else
            v = fmt("{\"v\":1,\"saga_id\":\"%s\",\"step\":0,\"phase\":\"invoke\","
                    "\"command_id\":\"c\",\"attempt\":1,\"status\":\"failed\","
                    "\"error\":{\"code\":\"%s\",\"message\":\"m\"}}",
                    id, s);
        free(s);
        break;
    }
    case R_LONG_SAGA_ID: {
        char *s = repeat('f', 5000);
        v = reply_text(s, "ok", "");
        free(s);
        break;
    }
    case R_NUL: {
        static const char *const extra[] = {
            ",\"error\":{\"code\":\"e\",\"message\":\"a\\u0000b\"}",
            ",\"output\":{\"k\":\"\\u0000\"}", ",\"output\":{\"\\u0000\":1}"};
        v = reply_text(id, variant % 3 == 0 ? "failed" : "ok", extra[variant % 3]);
        break;
    }
    case R_DUP_KEY:
        v = reply_text(id, "ok",
                       variant % 2 ? ",\"status\":\"failed\""
                                   : ",\"output\":{\"a\":1,\"a\":2}");
        break;
    default: /* R_HUGE: a valid reply but for its size */
    {
        char *s = repeat('x', 1100000);
        char *extra = fmt(",\"error\":{\"code\":\"e\",\"message\":\"%s\"}", s);
        v = reply_text(id, "failed", extra);
        free(s);
        free(extra);
        break;
    }
    }
    produce(reply_topic, kind, v, strlen(v));
}

/* A well-formed reply for a saga that does not exist: rejected. */
static void unknown_reply(long long seq)
{
    char id[SAGA_ID_LEN + 1];
    static const char *const extra[] = {",\"output\":{\"order_id\":1}",
                                        ",\"error\":{\"code\":\"no\",\"message\":\"m\"}",
                                        ",\"retry_after\":100"};
    static const char *const status[] = {"ok", "failed", "retry"};
    char *v;
    new_id(id);
    v = reply_text(id, status[seq % 3], extra[seq % 3]);
    produce(reply_topic, R_UNKNOWN_SAGA, v, strlen(v));
}

/* A command for saga id to service i with reply_to (JSON text) and the
 * fields extra appended: never one a participant executes, since the
 * callers make each one malformed or send its replies elsewhere. */
static char *command_text(int i, const char *id, const char *reply_to, const char *extra)
{
    static const char *const action[OW_NSVC] = {"create_order", "reserve_credit",
                                                "reserve_stock"};
    return fmt("{\"v\":1,\"saga_id\":\"%s\",\"saga\":\"crash_order\",\"saga_version\":1,"
               "\"step\":0,\"step_name\":\"s\",\"phase\":\"invoke\",\"action\":\"%s\","
               "\"command_id\":\"%s/0/invoke\",\"attempt\":1,\"reply_to\":%s,"
               "\"payload\":{}%s}",
               id, action[i], id, reply_to, extra);
}

static void poison_command(int kind, long long seq)
{
    char id[SAGA_ID_LEN + 1], ours[300];
    int i = (int)(seq % OW_NSVC), variant = (int)(seq / C_KINDS);
    char *v = NULL;
    new_id(id);
    snprintf(ours, sizeof ours, "\"%s\"", reply_topic);
    switch (kind) {
    case C_BAD_JSON: {
        char *full = command_text(i, id, ours, "");
        if (variant % 3 == 0)
            full[strlen(full) * 2 / 3] = '\0';
        v = variant % 3 == 1 ? fmt("{{{ %lld", seq) : fmt("%s", full);
        if (variant % 3 == 2) {
            free(v);
            v = fmt("\"%lld\"", seq);
        }
        free(full);
        break;
    }
    case C_OUT_OF_RANGE: {
        /* each an extra key that repeats none of command_text's */
        static const char *const bad[] = {
            "{\"v\":1,\"saga_id\":\"%s\",\"saga\":\"crash_order\",\"saga_version\":1,"
            "\"step\":0,\"step_name\":\"s\",\"phase\":\"invoke\",\"action\":\"a\","
            "\"command_id\":\"c\",\"attempt\":0,\"reply_to\":%s,\"payload\":{}}",
            "{\"v\":1,\"saga_id\":\"%s\",\"saga\":\"crash_order\",\"saga_version\":1,"
            "\"step\":0,\"step_name\":\"s\",\"phase\":\"invoke\",\"action\":\"a\","
            "\"command_id\":\"c\",\"attempt\":1,\"deadline\":253402300800000,"
            "\"reply_to\":%s,\"payload\":{}}",
            "{\"v\":1,\"saga_id\":\"%s\",\"saga\":\"crash_order\",\"saga_version\":1,"
            "\"step\":-1,\"step_name\":\"s\",\"phase\":\"invoke\",\"action\":\"a\","
            "\"command_id\":\"c\",\"attempt\":1,\"reply_to\":%s,\"payload\":{}}",
            "{\"v\":1,\"saga_id\":\"%s\",\"saga\":\"crash_order\",\"saga_version\":0,"
            "\"step\":0,\"step_name\":\"s\",\"phase\":\"invoke\",\"action\":\"a\","
            "\"command_id\":\"c\",\"attempt\":1,\"reply_to\":%s,\"payload\":{}}",
            "{\"v\":1,\"saga_id\":\"%s\",\"saga\":\"crash_order\",\"saga_version\":1,"
            "\"step\":0,\"step_name\":\"s\",\"phase\":\"invoke\",\"action\":\"a\","
            "\"command_id\":\"c\",\"attempt\":1,\"reply_to\":%s,\"payload\":[]}",
            "{\"v\":2,\"saga_id\":\"%s\",\"saga\":\"crash_order\",\"saga_version\":1,"
            "\"step\":0,\"step_name\":\"s\",\"phase\":\"invoke\",\"action\":\"a\","
            "\"command_id\":\"c\",\"attempt\":1,\"reply_to\":%s,\"payload\":{}}",
        };
        v = fmt(bad[variant % 6], id, ours);
        break;
    }
    case C_LONG: {
        char *s = repeat('f', variant % 2 ? 5000 : 300);
        if (variant % 2) {
            v = command_text(i, s, ours, ""); /* a 5,000-character saga id */
        } else {
            free(s);
            s = repeat('a', 256);
            v = fmt("{\"v\":1,\"saga_id\":\"%s\",\"saga\":\"crash_order\","
                    "\"saga_version\":1,\"step\":0,\"step_name\":\"s\",\"phase\":"
                    "\"invoke\",\"action\":\"%s\",\"command_id\":\"c\",\"attempt\":1,"
                    "\"reply_to\":%s,\"payload\":{}}",
                    id, s, ours);
        }
        free(s);
        break;
    }
    case C_BAD_TOPIC:
        v = command_text(i, id, "\"bad topic!\"", "");
        break;
    case C_OTHER_TOPIC:
        v = command_text(i, id, "\"other.topic\"", "");
        break;
    case C_LONG_TOPIC: {
        char *s = repeat('t', 300), *q = fmt("\"%s\"", s);
        v = command_text(i, id, q, "");
        free(s);
        free(q);
        break;
    }
    default: /* C_DUP_NUL */
        v = variant % 2 ? command_text(i, id, ours, ",\"reply_to\":\"other.topic\"")
                        : command_text(i, id, ours, ",\"step_name\":\"a\\u0000b\"");
        break;
    }
    produce(cmd_topics[i], kind, v, strlen(v));
}

/* ---- reading back ---- */

/* The value of the sample `series` (name{labels}) in a scrape; -1 if absent. */
static char *scrape(void)
{
    static char buf[1 << 20];
    assert_int_equal(it_http_get(http_port, "/metrics", buf, sizeof buf), 200);
    return buf;
}

static long long sent_of(int from, int to)
{
    long long n = 0;
    for (int k = from; k < to; k++)
        n += delivered[k];
    return n;
}

/* The key flood<kind>-<i> of a message: its index, or -1. */
static int index_of(const void *key, size_t len)
{
    char buf[64];
    int kind, i;
    if (key == NULL || len == 0 || len >= sizeof buf)
        return -1;
    memcpy(buf, key, len);
    buf[len] = '\0';
    if (sscanf(buf, "flood%d-%d", &kind, &i) != 2 || i < 0 || i >= nsent ||
        sent[i].kind != kind)
        return -1;
    return i;
}

/* Every malformed reply is in saga.dead_letter once, from the reply
 * topic, with a reason and its bytes (the first 64 KiB of a larger one):
 * counts them by kind (came_back) and returns how many rows are not so
 * (each of the first few said on stderr). */
static int check_dead_replies(void)
{
    PGresult *r = PQexecParams(db,
                               "SELECT msg_key, payload, payload_bytes, reason,"
                               " coalesce(topic, ''), source"
                               " FROM saga.dead_letter",
                               0, NULL, NULL, NULL, NULL, 1);
    int stray = 0, wrong = 0, twice = 0;
    assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
    for (int row = 0; row < PQntuples(r); row++) {
        int i = index_of(PQgetvalue(r, row, 0), (size_t)PQgetlength(r, row, 0));
        uint32_t bytes;
        memcpy(&bytes, PQgetvalue(r, row, 2), 4);
        bytes = ntohl(bytes);
        if (i < 0 || sent[i].kind >= R_MALFORMED_KINDS) {
            if (stray++ < 3)
                fprintf(stderr,
                        "a dead letter that is not a malformed reply sent: %.*s "
                        "(%s)\n",
                        PQgetlength(r, row, 0), PQgetvalue(r, row, 0),
                        PQgetvalue(r, row, 3));
            continue;
        }
        if (sent[i].seen++)
            twice++;
        came_back[sent[i].kind]++;
        if (PQgetlength(r, row, 3) == 0 ||
            strcmp(PQgetvalue(r, row, 4), reply_topic) != 0 ||
            strcmp(PQgetvalue(r, row, 5), "reply") != 0 || bytes != sent[i].len ||
            fnv(PQgetvalue(r, row, 1), (size_t)PQgetlength(r, row, 1)) != sent[i].hash) {
            if (wrong++ < 3)
                fprintf(stderr,
                        "dead letter of %s #%d: reason \"%.*s\", topic %s, source %s, "
                        "%u bytes (sent %u), %d stored\n",
                        kind_names[sent[i].kind], i, PQgetlength(r, row, 3),
                        PQgetvalue(r, row, 3), PQgetvalue(r, row, 4),
                        PQgetvalue(r, row, 5), bytes, sent[i].len,
                        PQgetlength(r, row, 1));
        }
    }
    PQclear(r);
    if (stray > 0 || wrong > 0 || twice > 0)
        fprintf(stderr, "sagad's dead letters: %d not ours, %d wrong, %d twice\n", stray,
                wrong, twice);
    return stray + wrong + twice;
}

/* Read the participants' dead-letter topics until every poisoned command
 * came back (or timeout_ms), checking each: counts them by kind
 * (came_back) and returns how many are not as sent (or came twice, or
 * are not ours). */
static long long read_dead_commands(int timeout_ms)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_topic_partition_list_t *sub = rd_kafka_topic_partition_list_new(OW_NSVC);
    rd_kafka_t *c;
    char errstr[256], group[300];
    long long got = 0, want = sent_of(C_FIRST, NKINDS), wrong = 0, stray = 0, twice = 0;
    int64_t until = now_ms() + timeout_ms;
    snprintf(group, sizeof group, "%sdead-reader", prefix);
    rd_kafka_conf_set(conf, "bootstrap.servers", it_env("SAGA_KAFKA_BROKERS"), errstr,
                      sizeof errstr);
    rd_kafka_conf_set(conf, "group.id", group, errstr, sizeof errstr);
    rd_kafka_conf_set(conf, "auto.offset.reset", "earliest", errstr, sizeof errstr);
    c = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof errstr);
    assert_non_null(c);
    rd_kafka_poll_set_consumer(c);
    for (int s = 0; s < OW_NSVC; s++)
        rd_kafka_topic_partition_list_add(sub, dead_topics[s], RD_KAFKA_PARTITION_UA);
    assert_int_equal(rd_kafka_subscribe(c, sub), 0);
    rd_kafka_topic_partition_list_destroy(sub);
    /* Until all came back, and a little longer for any that comes twice:
     * a poll that returns nothing for 1 s once the count is reached. */
    while (now_ms() < until) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(c, 1000);
        rd_kafka_headers_t *h = NULL;
        const void *reason = NULL, *topic = NULL, *part = NULL, *off = NULL;
        size_t rlen = 0, tlen = 0, plen = 0, olen = 0;
        int i;
        if (m == NULL) {
            if (got >= want)
                break;
            continue;
        }
        if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
            rd_kafka_message_destroy(m);
            continue;
        }
        i = index_of(m->key, m->key_len);
        if (i < 0 || sent[i].kind < C_FIRST) {
            stray++;
            rd_kafka_message_destroy(m);
            continue;
        }
        got++;
        came_back[sent[i].kind]++;
        if (sent[i].seen++)
            twice++;
        if (rd_kafka_message_headers(m, &h) == RD_KAFKA_RESP_ERR_NO_ERROR) {
            rd_kafka_header_get_last(h, "saga-dead-reason", &reason, &rlen);
            rd_kafka_header_get_last(h, "saga-dead-topic", &topic, &tlen);
            rd_kafka_header_get_last(h, "saga-dead-partition", &part, &plen);
            rd_kafka_header_get_last(h, "saga-dead-offset", &off, &olen);
        }
        {
            /* the topic it came from is the service's whose dead-letter
             * topic this is */
            const char *dt = rd_kafka_topic_name(m->rkt);
            int s = 0;
            while (s < OW_NSVC && strcmp(dt, dead_topics[s]) != 0)
                s++;
            if (reason == NULL || rlen == 0 || topic == NULL || s == OW_NSVC ||
                tlen != strlen(cmd_topics[s]) ||
                memcmp(topic, cmd_topics[s], tlen) != 0 || part == NULL || plen == 0 ||
                off == NULL || olen == 0 || m->len != sent[i].len ||
                fnv(m->payload, m->len) != sent[i].hash) {
                if (wrong++ < 3)
                    fprintf(stderr,
                            "dead letter of %s #%d on %s: reason \"%.*s\", topic "
                            "\"%.*s\", partition \"%.*s\", offset \"%.*s\", %zu bytes "
                            "(sent %u)\n",
                            kind_names[sent[i].kind], i, dt, (int)rlen,
                            reason ? (const char *)reason : "", (int)tlen,
                            topic ? (const char *)topic : "", (int)plen,
                            part ? (const char *)part : "", (int)olen,
                            off ? (const char *)off : "", m->len, sent[i].len);
            }
        }
        rd_kafka_message_destroy(m);
    }
    rd_kafka_consumer_close(c);
    rd_kafka_destroy(c);
    if (stray > 0 || wrong > 0 || twice > 0)
        fprintf(stderr,
                "participants' dead letters: %lld not ours, %lld wrong, %lld twice\n",
                stray, wrong, twice);
    (void)got;
    return stray + wrong + twice;
}

/* "N word" in the "stopped:" line of the log at path (-1: no such line). */
static long long stopped_figure(const char *path, const char *word)
{
    FILE *f = fopen(path, "r");
    char line[4096];
    long long v = -1;
    while (f != NULL && fgets(line, sizeof line, f) != NULL) {
        char *at = strstr(line, "stopped: "), *w;
        if (at == NULL)
            continue;
        for (w = strstr(at, word); w != NULL && w > at; w = strstr(w + 1, word)) {
            char *d = w - 1;
            if (*d != ' ')
                continue;
            while (d > at && d[-1] >= '0' && d[-1] <= '9')
                d--;
            if (*d >= '0' && *d <= '9') {
                v = strtoll(d, NULL, 10);
                break;
            }
        }
    }
    if (f != NULL)
        fclose(f);
    return v;
}

typedef struct latency {
    long long n;
    double p50, max;
} latency;

static latency latency_of(char phase)
{
    char like[160];
    const char *p[1] = {like};
    latency l = {0, 0, 0};
    PGresult *r;
    snprintf(like, sizeof like, "%s%c%%", prefix, phase);
    r = PQexecParams(db,
                     "SELECT count(*), coalesce(percentile_cont(0.5) WITHIN GROUP"
                     " (ORDER BY ms), 0), coalesce(max(ms), 0) FROM (SELECT"
                     " extract(epoch FROM s.updated_at - q.requested_at) * 1000 AS ms"
                     " FROM saga.saga s JOIN saga.start_request q ON q.id = s.id"
                     " WHERE s.idempotency_key LIKE $1"
                     " AND s.status IN ('completed', 'compensated')) x",
                     1, NULL, p, NULL, NULL, 0);
    assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
    l.n = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    l.p50 = strtod(PQgetvalue(r, 0, 1), NULL);
    l.max = strtod(PQgetvalue(r, 0, 2), NULL);
    PQclear(r);
    return l;
}

/* The pause between two looks at a condition. */
static void poll_pause(void)
{
    struct timespec ts = {0, 100 * 1000000L};
    nanosleep(&ts, NULL);
}

/* Wait up to timeout_ms for sql (no parameters) to give want; returns
 * the last value. */
static long long wait_count(const char *sql, long long want, int timeout_ms)
{
    int64_t until = now_ms() + timeout_ms;
    long long v;
    while ((v = it_int(db, sql, 0, NULL)) != want && now_ms() < until)
        poll_pause();
    return v;
}

/* Wait up to timeout_ms for the metrics sample series to reach want;
 * returns the last scrape. */
static char *wait_sample(const char *series, long long want, int timeout_ms)
{
    int64_t until = now_ms() + timeout_ms;
    char *m;
    while ((long long)it_sample(m = scrape(), series) < want && now_ms() < until)
        poll_pause();
    return m;
}

static void test_flood_on_steady_load(void **state)
{
    const char *env = getenv("FLOOD_SECONDS");
    int flood_s = env != NULL && atoi(env) > 0 ? atoi(env) : 60;
    long long r_seq = 0, u_seq = 0, c_seq = 0, k = 0, malformed_sent, unknown_sent, cmds;
    long long unfinished, dead_rows, m_unknown, m_malformed, m_dead, bad_replies,
        bad_commands, s_malformed, s_rejected, s_dead, p_malformed = 0, p_dead = 0;
    int64_t t0, t1, end;
    latency before, during;
    ow_counts counts;
    char *metrics;
    (void)state;

    /* The steady load alone. */
    t0 = now_ms();
    end = t0 + BASELINE_S * 1000;
    while (now_ms() < end) {
        while (k < (now_ms() - t0) * SAGAS_PER_S / 1000)
            start_order('b', k++);
        rd_kafka_poll(producer, 20);
    }
    started_baseline = k;
    /* The flood on top. */
    t1 = now_ms();
    end = t1 + (int64_t)flood_s * 1000;
    k = 0;
    while (now_ms() < end) {
        int64_t el = now_ms() - t1;
        while (k < el * SAGAS_PER_S / 1000)
            start_order('f', k++);
        while (r_seq < el * REPLY_PER_S / 1000) {
            int kind = r_seq % HUGE_EVERY == HUGE_EVERY / 2
                           ? R_HUGE
                           : (int)(r_seq % (R_MALFORMED_KINDS - 1));
            poison_reply(kind, r_seq++);
        }
        while (u_seq < el * UNKNOWN_PER_S / 1000)
            unknown_reply(u_seq++);
        while (c_seq < el * CMD_PER_S / 1000) {
            poison_command(C_FIRST + (int)(c_seq % C_KINDS), c_seq);
            c_seq++;
        }
        rd_kafka_poll(producer, 5);
    }
    started_flood = k;
    assert_int_equal(rd_kafka_flush(producer, 60000), 0);
    assert_int_equal(failed_deliveries, 0);
    malformed_sent = sent_of(0, R_MALFORMED_KINDS);
    unknown_sent = delivered[R_UNKNOWN_SAGA];
    cmds = sent_of(C_FIRST, NKINDS);
    print_message("flood of %d s: %lld malformed replies, %lld replies for unknown "
                  "sagas, %lld poisoned commands sent (%lld sagas before, %lld during)\n",
                  flood_s, malformed_sent, unknown_sent, cmds, started_baseline,
                  started_flood);

    /* Every saga ends, every malformed reply is set aside, every reply for
     * an unknown saga is counted: sagad has read the whole flood. Then
     * the participants' dead letters, and what everybody says when it
     * stops. The figures are printed before anything is asserted. */
    {
        char sql[200];
        snprintf(
            sql, sizeof sql,
            "SELECT count(*) FROM saga.start_request WHERE idempotency_key LIKE '%s%%'"
            " AND processed_at IS NULL",
            prefix);
        assert_int_equal(wait_count(sql, 0, DRAIN_S * 1000), 0);
    }
    unfinished = ow_wait_all(db, prefix, DRAIN_S);
    dead_rows = wait_count("SELECT count(*) FROM saga.dead_letter", malformed_sent,
                           DRAIN_S * 1000);
    metrics = wait_sample("saga_replies_dropped_total{reason=\"unknown_saga\"}",
                          unknown_sent, DRAIN_S * 1000);
    m_unknown = (long long)it_sample(
        metrics, "saga_replies_dropped_total{reason=\"unknown_saga\"}");
    m_malformed =
        (long long)it_sample(metrics, "saga_replies_dropped_total{reason=\"malformed\"}");
    m_dead = (long long)it_sample(metrics, "saga_dead_letters_total{source=\"reply\"}");
    bad_replies = check_dead_replies();
    bad_commands = read_dead_commands(DRAIN_S * 1000);
    before = latency_of('b');
    during = latency_of('f');
    assert_int_equal(it_stop(&sagad), 0);
    for (int i = 0; i < OW_NSVC; i++)
        assert_int_equal(it_stop(&svc[i]), 0);
    s_malformed = stopped_figure(sagad.log, "malformed");
    s_rejected = stopped_figure(sagad.log, "rejected");
    s_dead = stopped_figure(sagad.log, "set aside");
    for (int i = 0; i < OW_NSVC; i++) {
        p_malformed += stopped_figure(svc[i].log, "malformed");
        p_dead += stopped_figure(svc[i].log, "dead-lettered");
    }

    print_message(
        "saga latency (start request to end): before the flood p50 %.0f ms, max %.0f ms "
        "(%lld sagas); during p50 %.0f ms, max %.0f ms (%lld sagas)\n",
        before.p50, before.max, before.n, during.p50, during.max, during.n);
    print_message("%-28s %8s %14s\n", "poison", "sent", "dead-lettered");
    for (int kd = 0; kd < NKINDS; kd++)
        print_message("%-28s %8lld %14lld%s\n", kind_names[kd], delivered[kd],
                      came_back[kd],
                      kd == R_UNKNOWN_SAGA ? "  (rejected, not set aside)" : "");
    print_message("sagad: %lld rows in saga.dead_letter; metrics: %lld malformed, %lld "
                  "unknown saga, %lld dead letters; stopped with %lld malformed, %lld "
                  "rejected, %lld set aside\n",
                  dead_rows, m_malformed, m_unknown, m_dead, s_malformed, s_rejected,
                  s_dead);
    print_message("services: stopped with %lld malformed, %lld dead-lettered\n",
                  p_malformed, p_dead);

    /* Every saga ended as the workload expects, the business state is
     * what the statuses say. */
    assert_int_equal(unfinished, 0);
    ow_check(db, prefix, started_baseline + started_flood, &counts);
    /* sagad: each malformed reply set aside once, with its reason and
     * bytes; each reply for an unknown saga rejected, not set aside;
     * metrics and stats agree. */
    assert_int_equal(bad_replies, 0);
    assert_int_equal(dead_rows, malformed_sent);
    for (int kd = 0; kd < R_MALFORMED_KINDS; kd++)
        assert_int_equal(came_back[kd], delivered[kd]);
    assert_int_equal(m_malformed, malformed_sent);
    assert_int_equal(m_dead, malformed_sent);
    assert_int_equal(m_unknown, unknown_sent);
    assert_int_equal(s_malformed, malformed_sent);
    assert_int_equal(s_dead, malformed_sent);
    assert_int_equal(s_rejected, unknown_sent);
    /* The participants: each poisoned command on its dead-letter topic
     * once, as it was sent, with reason, topic, partition and offset. */
    assert_int_equal(bad_commands, 0);
    for (int kd = C_FIRST; kd < NKINDS; kd++)
        assert_int_equal(came_back[kd], delivered[kd]);
    assert_int_equal(p_malformed, cmds);
    assert_int_equal(p_dead, cmds);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_flood_on_steady_load),
    };
    return cmocka_run_group_tests_name("flood of poisoned messages on a steady load",
                                       tests, setup, teardown);
}
