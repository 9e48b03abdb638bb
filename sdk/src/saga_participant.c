/* The participant runtime: consume commands, run handlers (inside the
 * barrier's transaction when a database is configured), reply, and commit
 * consumed offsets only after the replies are acknowledged by Kafka. */
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <fcntl.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "saga/participant.h"
#include "saga/sign.h"
#include "saga_barrier.h"
#include <librdkafka/rdkafka.h>

#include "saga_shared.h"
#include "saga_participant_internal.h"

#define BATCH_MAX        200
#define FLUSH_TIMEOUT_MS 30000

struct saga_result {
    const saga_command *cmd; /* the command being handled */
    int set;
    int ignored;                    /* outcomes set after the first */
    struct saga_deferred *deferred; /* the handler will reply later */
    saga_reply_status status;
    json_t *output;
    char code[64];
    char message[512];
    int64_t retry_after;
};

typedef struct handler {
    saga_phase phase;
    char *name;
    saga_handler_fn fn;
    void *arg;
} handler;

/* The counters of saga_participant_stats, each atomic so that
 * saga_participant_get_stats() may read them from any thread while the
 * polling thread counts. Relaxed order is enough: every counter is exact on
 * its own, and nothing else is published through them. */
typedef struct stats_counters {
    _Atomic uint64_t handled;
    _Atomic uint64_t duplicates;
    _Atomic uint64_t null_compensations;
    _Atomic uint64_t hanging_refused;
    _Atomic uint64_t malformed;
    _Atomic uint64_t unknown_action;
    _Atomic uint64_t deferred;
    _Atomic uint64_t results_ignored;
    _Atomic uint64_t received;
    _Atomic uint64_t replied_ok;
    _Atomic uint64_t replied_failed;
    _Atomic uint64_t replied_retry;
    _Atomic uint64_t handler_calls;
    _Atomic uint64_t handler_time_ns;
    _Atomic uint64_t dead_lettered;
    _Atomic uint64_t undeliverable;
    _Atomic uint64_t output_too_large;
    _Atomic uint64_t log_suppressed;
    _Atomic uint64_t unauthenticated;
} stats_counters;

/* A command whose reply the broker refused for a reason that cannot heal,
 * with how many times in a row: consumed again up to max_redeliveries
 * times, then dead-lettered instead of handled. */
typedef struct failed_offset {
    int32_t partition;
    int64_t offset;
    int count;
    char why[200];
} failed_offset;

#define FAILED_MAX    256
#define LOG_WINDOW_MS 10000
#define LOG_BURST     20

/* Rides with each produced message (the delivery report's opaque): which
 * consumed command it answers, or -1 for a deferred reply. */
typedef struct delivery_tag {
    int32_t partition;
    int64_t offset;
    int dead;  /* a dead letter, not a reply */
    int alone; /* produced in a request of its own (see produce_reply) */
} delivery_tag;

#define STAT_ADD(p, field, n)                                                            \
    atomic_fetch_add_explicit(&(p)->stats.field, (uint64_t)(n), memory_order_relaxed)

struct saga_participant {
    char *service;
    char *prefix;
    char cmd_topic[256];
    rd_kafka_t *consumer;
    rd_kafka_t *producer;
    PGconn *db;
    handler *handlers;
    int nhandlers;
    /* Set by saga_participant_stop from any thread or a signal handler:
     * lock-free atomics are safe in both (C11 7.14.1.1), a volatile
     * sig_atomic_t only in a handler of the same thread. */
    atomic_int stop;
    atomic_int wake_w;     /* wake[1] once the fd exists, for stop() to wake it */
    int delivery_failures; /* within the current batch */
    rd_kafka_topic_partition_list_t *processed; /* offsets of the current batch */
    int wake[2];                                /* saga_participant_fd's pipe, or -1 */
    stats_counters stats;
    char warning[512];
    /* Group commit: several commands' barrier transactions share one
     * PostgreSQL transaction, each inside its own savepoint, and their
     * replies wait for the shared COMMIT; their barrier rows are inserted
     * together just before it (group_rows). */
    int tx_commands, tx_ms;
    int group_open, group_n, group_failed;
    saga__barrier_batch group_rows;
    /* After a group failed: the next commands (those consumed again) run
     * one transaction each, so that one whose rows cannot be stored fails
     * alone (a retry reply) instead of failing its group again and again. */
    int solo;
    int64_t group_started;
    int in_handler;
    struct pending_reply *pending;
    int npending, cappending;
    rd_kafka_topic_t *feed_rkt; /* saga__participant_feed's topic handle */
    int feeding; /* saga__participant_feed: its message is not librdkafka's */
    /* What a command's reply_to may name: <prefix>reply, <prefix>reply.<service>. */
    char reply_topic[256], own_reply_topic[520];
    char dead_topic[256]; /* "" : none */
    saga_keys *keys;      /* key_file's: verify commands, sign replies */
    int64_t max_output_bytes, max_message_bytes;
    int max_redeliveries;
    failed_offset failed[FAILED_MAX];
    int nfailed;
    saga_participant_log_fn log_fn;
    void *log_arg;
    int64_t log_window;
    int log_lines;
    uint64_t log_left_out; /* in the current window */
};

/* A reply that waits for its group's COMMIT. */
typedef struct pending_reply {
    char *topic, *text, *traceparent;
    char key[SAGA_ID_LEN + 1];
    int32_t partition; /* the command's, or -1 */
    int64_t offset;
} pending_reply;

struct saga_deferred {
    saga_command cmd; /* owned copy: ids, routing and the payload */
};

/* Internal: forget the handler's outcome so that ours replaces it. */
static void result_reset(saga_result *r)
{
    json_decref(r->output);
    r->output = NULL;
    r->set = 0;
}

void saga_result_ok(saga_result *r, json_t *output)
{
    if (r == NULL || r->set) {
        if (r != NULL)
            r->ignored++;
        json_decref(output);
        return;
    }
    json_decref(r->output);
    r->set = 1;
    r->status = SAGA_REPLY_OK;
    r->output = output != NULL ? output : json_object();
}

static void result_error(saga_result *r, saga_reply_status st, const char *code,
                         int64_t after, const char *fmt, va_list ap)
{
    json_decref(r->output);
    r->output = NULL;
    r->set = 1;
    r->status = st;
    /* Cut to fit, but never inside a UTF-8 character: the reply's JSON
     * would not hold it, and the error would be lost. */
    if (snprintf(r->code, sizeof r->code, "%s", code ? code : "error") >=
        (int)sizeof r->code)
        saga__utf8_trim_tail(r->code, sizeof r->code - 1);
    if (vsnprintf(r->message, sizeof r->message, fmt ? fmt : "", ap) >=
        (int)sizeof r->message)
        saga__utf8_trim_tail(r->message, sizeof r->message - 1);
    r->retry_after = after;
}

void saga_result_fail(saga_result *r, const char *code, const char *fmt, ...)
{
    va_list ap;
    if (r == NULL || r->set) {
        if (r != NULL)
            r->ignored++;
        return;
    }
    va_start(ap, fmt);
    result_error(r, SAGA_REPLY_FAILED, code, 0, fmt, ap);
    va_end(ap);
}

void saga_result_retry(saga_result *r, int64_t after_ms, const char *fmt, ...)
{
    va_list ap;
    if (r == NULL || r->set) {
        if (r != NULL)
            r->ignored++;
        return;
    }
    va_start(ap, fmt);
    result_error(r, SAGA_REPLY_RETRY, "retry", after_ms < 0 ? 0 : after_ms, fmt, ap);
    va_end(ap);
}

/* A window that ended with lines left out says how many, once. */
static void log_window_roll(saga_participant *p, int64_t now)
{
    if (now - p->log_window < LOG_WINDOW_MS)
        return;
    if (p->log_left_out > 0 && p->log_fn != NULL) {
        char line[200];
        snprintf(line, sizeof line,
                 "%llu more problem(s) in the last %d s not logged (rate limit; see "
                 "saga_participant_get_stats)",
                 (unsigned long long)p->log_left_out, LOG_WINDOW_MS / 1000);
        p->log_fn(SAGA_PARTICIPANT_LOG_WARN, line, p->log_arg);
    }
    p->log_window = now;
    p->log_lines = 0;
    p->log_left_out = 0;
}

/* Keep the problem as the last warning and pass it to the logger, at most
 * LOG_BURST lines per window. */
static void say(saga_participant *p, saga_participant_log_level level, const char *fmt,
                va_list ap)
{
    vsnprintf(p->warning, sizeof p->warning, fmt, ap);
    if (p->log_fn == NULL)
        return;
    log_window_roll(p, saga__mono_ms());
    if (p->log_lines >= LOG_BURST) {
        p->log_left_out++;
        STAT_ADD(p, log_suppressed, 1);
        return;
    }
    p->log_lines++;
    p->log_fn(level, p->warning, p->log_arg);
}

static void warn(saga_participant *p, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
static void warn(saga_participant *p, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    say(p, SAGA_PARTICIPANT_LOG_WARN, fmt, ap);
    va_end(ap);
}

static void fail_line(saga_participant *p, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
static void fail_line(saga_participant *p, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    say(p, SAGA_PARTICIPANT_LOG_ERROR, fmt, ap);
    va_end(ap);
}

/* Errors that sending the same message again cannot cure: the message or
 * its topic is wrong. Anything else (no broker, a timeout) heals. */
static int cannot_heal(rd_kafka_resp_err_t e)
{
    switch (e) {
    case RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE:
    case RD_KAFKA_RESP_ERR_INVALID_MSG_SIZE:
    case RD_KAFKA_RESP_ERR_RECORD_LIST_TOO_LARGE:
    case RD_KAFKA_RESP_ERR_INVALID_MSG:
    case RD_KAFKA_RESP_ERR_INVALID_RECORD:
    case RD_KAFKA_RESP_ERR_TOPIC_EXCEPTION:
    case RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED:
    case RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART:
    case RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC:
    case RD_KAFKA_RESP_ERR__INVALID_ARG:
        return 1;
    default:
        return 0;
    }
}

static failed_offset *find_failed(saga_participant *p, int32_t partition, int64_t offset)
{
    for (int i = 0; i < p->nfailed; i++)
        if (p->failed[i].partition == partition && p->failed[i].offset == offset)
            return &p->failed[i];
    return NULL;
}

/* Note a failure that cannot heal for the command at partition/offset;
 * counted only when its reply was alone in its request (alone): the
 * broker refuses a whole batch for one message too large in it, so a
 * failure in company only marks the command to be answered alone next
 * time. Returns the count. */
static int note_failed(saga_participant *p, int32_t partition, int64_t offset,
                       const char *why, int alone)
{
    failed_offset *f = find_failed(p, partition, offset);
    if (f == NULL) {
        if (p->nfailed == FAILED_MAX) { /* forget the oldest */
            memmove(p->failed, p->failed + 1, sizeof *f * (FAILED_MAX - 1));
            p->nfailed--;
        }
        f = &p->failed[p->nfailed++];
        f->partition = partition;
        f->offset = offset;
        f->count = 0;
    }
    f->count += alone;
    snprintf(f->why, sizeof f->why, "%s", why);
    return f->count;
}

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *msg, void *opaque)
{
    saga_participant *p = opaque;
    delivery_tag *t = msg->_private;
    (void)rk;
    if (msg->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        const char *topic = rd_kafka_topic_name(msg->rkt);
        int heals = !cannot_heal(msg->err);
        if (t != NULL && t->dead) {
            /* Nowhere left to put it: said loudly; a failure that heals has
             * the command consumed again. */
            if (heals)
                p->delivery_failures++;
            fail_line(p,
                      "the command at %s[%d]@%lld could not be dead-lettered to %s: %s%s",
                      p->cmd_topic, (int)t->partition, (long long)t->offset, topic,
                      rd_kafka_err2str(msg->err),
                      heals ? "; it will be consumed again" : "; it is skipped");
        } else if (t != NULL) {
            char why[200];
            STAT_ADD(p, undeliverable, 1);
            p->delivery_failures++;
            snprintf(why, sizeof why, "its reply to %.100s was refused: %s", topic,
                     rd_kafka_err2str(msg->err));
            if (heals)
                warn(p,
                     "reply to %s for the command at %s[%d]@%lld not delivered: %s; it "
                     "will be consumed again",
                     topic, p->cmd_topic, (int)t->partition, (long long)t->offset,
                     rd_kafka_err2str(msg->err));
            else if (!t->alone) {
                note_failed(p, t->partition, t->offset, why, 0);
                warn(p,
                     "reply to %s for the command at %s[%d]@%lld not delivered: %s; it "
                     "will be consumed again and answered alone",
                     topic, p->cmd_topic, (int)t->partition, (long long)t->offset,
                     rd_kafka_err2str(msg->err));
            } else
                warn(p,
                     "reply to %s for the command at %s[%d]@%lld not delivered: %s "
                     "(%d of %d; then it is dead-lettered)",
                     topic, p->cmd_topic, (int)t->partition, (long long)t->offset,
                     rd_kafka_err2str(msg->err),
                     note_failed(p, t->partition, t->offset, why, 1),
                     p->max_redeliveries + 1);
        } else {
            STAT_ADD(p, undeliverable, 1);
            warn(p,
                 "deferred reply to %s not delivered: %s; sagad sends the command again "
                 "after the step's timeout",
                 topic, rd_kafka_err2str(msg->err));
        }
    }
    free(t);
}

static char *dup_or(const char *s, const char *dflt)
{
    return strdup(s != NULL && *s != '\0' ? s : dflt);
}

static int participant_new(const saga_participant_options *o, saga_participant **out,
                           saga_error *err)
{
    saga_participant *p;
    rd_kafka_conf_t *conf;
    char errstr[512], group[300], client[300];
    const char *topics[3];
    int rc;

    if (o == NULL || out == NULL || o->brokers == NULL || *o->brokers == '\0' ||
        o->service == NULL || *o->service == '\0')
        return saga__error_set(
            err, SAGA_EINVAL,
            "participant options need brokers and service (non-empty): "
            "brokers is %s, service is %s",
            o == NULL || o->brokers == NULL ? "NULL"
            : *o->brokers == '\0'           ? "\"\""
                                            : "set",
            o == NULL || o->service == NULL ? "NULL"
            : *o->service == '\0'           ? "\"\""
                                            : "set");
    *out = NULL;
    p = calloc(1, sizeof *p);
    if (p == NULL)
        return saga__error_set(err, SAGA_ENOMEM, "out of memory");
    p->wake[0] = p->wake[1] = -1;
    atomic_init(&p->stop, 0);
    atomic_init(&p->wake_w, -1);
    p->tx_commands = o->tx_commands > 0 ? o->tx_commands : 64;
    p->tx_ms = o->tx_ms > 0 ? o->tx_ms : 10;
    p->service = strdup(o->service);
    p->prefix = dup_or(o->topic_prefix, "saga.");
    if (p->service == NULL || p->prefix == NULL) {
        rc = saga__error_set(err, SAGA_ENOMEM, "out of memory");
        goto fail;
    }
    saga__topic_cmd(p->cmd_topic, sizeof p->cmd_topic, p->prefix, p->service);
    saga__topic_reply(p->reply_topic, sizeof p->reply_topic, p->prefix);
    snprintf(p->own_reply_topic, sizeof p->own_reply_topic, "%s.%s", p->reply_topic,
             p->service);
    snprintf(p->dead_topic, sizeof p->dead_topic, "%sdead.%s", p->prefix, p->service);
    p->max_output_bytes = 262144;
    p->max_redeliveries = 3;
    if (o->key_file != NULL && *o->key_file != '\0' &&
        (rc = saga_keys_load(o->key_file, &p->keys, err)) != SAGA_OK)
        goto fail;
    p->log_window = saga__mono_ms();

    if (o->db_url != NULL) {
        /* search_path goes into the connection options, not a SET, so that
         * it survives PQreset() after the server restarts. */
        char options[300] = "";
        const char *keys[] = {"dbname", "options", NULL};
        const char *vals[] = {o->db_url, options, NULL};
        if (o->db_schema != NULL) {
            for (const char *c = o->db_schema; *c; c++)
                if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') ||
                      (*c >= '0' && *c <= '9') || *c == '_')) {
                    rc = saga__error_set(err, SAGA_EINVAL,
                                         "db_schema \"%s\": use letters, digits and '_'",
                                         o->db_schema);
                    goto fail;
                }
            snprintf(options, sizeof options, "-c search_path=%.200s", o->db_schema);
        }
        p->db = PQconnectdbParams(keys, vals, 1);
        if (PQstatus(p->db) != CONNECTION_OK) {
            rc = saga__error_set(err, SAGA_EDB, "cannot connect to PostgreSQL: %s",
                                 PQerrorMessage(p->db));
            goto fail;
        }
        /* libpq prints NOTICEs (CREATE TABLE IF NOT EXISTS, a handler's
         * RAISE NOTICE) to stderr by default; a library must not print. The
         * processor stays with the connection across PQreset(). */
        saga__pq_quiet(p->db);
        if ((rc = saga__barrier_init(p->db, err)) != SAGA_OK ||
            (rc = saga__barrier_prepare(p->db, err)) != SAGA_OK)
            goto fail;
    }

    snprintf(client, sizeof client, "saga-svc-%s", p->service);
    if ((conf = saga__kafka_conf(o->brokers, client, err)) == NULL) {
        rc = err ? err->code : SAGA_EKAFKA;
        goto fail;
    }
    if ((rc = saga__kafka_set(conf, "enable.idempotence", "true", err)) != SAGA_OK ||
        (rc = saga__kafka_set(conf, "linger.ms", "1", err)) != SAGA_OK ||
        (rc = saga__kafka_apply_options(conf, o->kafka_options, o->kafka_options_file,
                                        err)) != SAGA_OK) {
        rd_kafka_conf_destroy(conf);
        goto fail;
    }
    p->max_message_bytes = saga__kafka_conf_int(conf, "message.max.bytes", 1000000);
    rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
    rd_kafka_conf_set_opaque(conf, p);
    p->producer = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
    if (p->producer == NULL) {
        rd_kafka_conf_destroy(conf);
        rc = saga__error_set(err, SAGA_EKAFKA, "creating Kafka producer: %s", errstr);
        goto fail;
    }
    /* Its reply topic too: sagad creates it, but a service may start
     * first. Where the broker lets it create none (ACLs), they exist. */
    topics[0] = p->cmd_topic;
    topics[1] = p->dead_topic;
    topics[2] = p->own_reply_topic;
    if ((rc = saga__kafka_ensure_topics(p->producer, topics, 3, 4, 10000, err)) !=
        SAGA_OK)
        goto fail;

    snprintf(group, sizeof group, "saga-svc-%s", p->service);
    if ((rc = saga__kafka_consumer_new(
             o->brokers, client, o->group_id ? o->group_id : group, o->instance_id,
             p->cmd_topic, o->kafka_options, o->kafka_options_file, NULL, &p->consumer,
             err)) != SAGA_OK)
        goto fail;
    *out = p;
    return SAGA_OK;
fail:
    saga_participant_free(p);
    return rc;
}

int saga_participant_on(saga_participant *p, saga_phase phase, const char *name,
                        saga_handler_fn fn, void *arg)
{
    handler *h;
    if (p == NULL || name == NULL || *name == '\0' || fn == NULL)
        return SAGA_EINVAL;
    /* A handler for no phase would never be called: refuse it loudly. */
    if (phase != SAGA_PHASE_INVOKE && phase != SAGA_PHASE_COMPENSATE)
        return SAGA_EINVAL;
    for (int i = 0; i < p->nhandlers; i++)
        if (p->handlers[i].phase == phase && strcmp(p->handlers[i].name, name) == 0)
            return SAGA_EEXIST;
    h = realloc(p->handlers, sizeof *h * (size_t)(p->nhandlers + 1));
    if (h == NULL)
        return SAGA_ENOMEM;
    p->handlers = h;
    h = &p->handlers[p->nhandlers];
    h->name = strdup(name);
    if (h->name == NULL)
        return SAGA_ENOMEM;
    h->phase = phase;
    h->fn = fn;
    h->arg = arg;
    p->nhandlers++;
    return SAGA_OK;
}

static const handler *find_handler(const saga_participant *p, saga_phase phase,
                                   const char *name)
{
    for (int i = 0; i < p->nhandlers; i++)
        if (p->handlers[i].phase == phase && strcmp(p->handlers[i].name, name) == 0)
            return &p->handlers[i];
    return NULL;
}

static int is_element(const saga_command *cmd)
{
    return cmd->v == SAGA_PROTOCOL_VERSION_ELEMENTS;
}

/* The reply as a JSON object (for the barrier cache), the fields in
 * saga_reply_encode's order: a reply to an element's command is version 2
 * and carries its element, after "status". */
static json_t *reply_object(const saga_command *cmd, const saga_result *r)
{
    json_t *o = json_pack(
        "{s:i, s:s, s:i, s:s, s:s, s:i, s:s}", "v",
        is_element(cmd) ? SAGA_PROTOCOL_VERSION_ELEMENTS : SAGA_PROTOCOL_VERSION,
        "saga_id", cmd->saga_id, "step", cmd->step, "phase", saga_phase_name(cmd->phase),
        "command_id", cmd->command_id, "attempt", cmd->attempt, "status",
        saga_reply_status_name(r->status));
    if (o == NULL)
        return NULL;
    if (is_element(cmd))
        json_object_set_new(o, "element", json_integer(cmd->element));
    if (r->status == SAGA_REPLY_OK)
        json_object_set(o, "output", r->output ? r->output : json_object());
    else
        json_object_set_new(
            o, "error", json_pack("{s:s, s:s}", "code", r->code, "message", r->message));
    if (r->status == SAGA_REPLY_RETRY && r->retry_after > 0)
        json_object_set_new(o, "retry_after", json_integer(r->retry_after));
    return o;
}

/* The answer to an action that came after its compensation. */
static void refuse_hanging(saga_result *res, const saga_command *cmd)
{
    if (is_element(cmd))
        saga_result_fail(res, "hanging_action",
                         "step %d element %d of saga %s was already compensated; action "
                         "refused",
                         cmd->step, cmd->element, cmd->saga_id);
    else
        saga_result_fail(res, "hanging_action",
                         "step %d of saga %s was already compensated; action refused",
                         cmd->step, cmd->saga_id);
}

/* Hand a reply (text is taken) to the producer. partition and offset are
 * the command's (-1: a deferred reply), for the delivery report. */
static void produce_reply(saga_participant *p, const char *topic, const char *key,
                          char *text, const char *tp, size_t tplen, int32_t partition,
                          int64_t offset)
{
    rd_kafka_headers_t *hdrs = NULL;
    rd_kafka_resp_err_t e;
    delivery_tag *tag = NULL;
    if (partition >= 0) {
        tag = malloc(sizeof *tag);
        if (tag == NULL) {
            free(text);
            p->delivery_failures++;
            warn(p, "out of memory sending a reply to %s", topic);
            return;
        }
        tag->partition = partition;
        tag->offset = offset;
        tag->dead = 0;
        /* A command whose reply was refused in company is answered in a
         * request of its own, so that a refusal is its own fault. */
        tag->alone = find_failed(p, partition, offset) != NULL;
        if (tag->alone)
            rd_kafka_flush(p->producer, FLUSH_TIMEOUT_MS);
    }
    if (tp != NULL || p->keys != NULL)
        hdrs = rd_kafka_headers_new(2);
    if (tp != NULL)
        rd_kafka_header_add(hdrs, "traceparent", -1, tp, (ssize_t)tplen);
    if (p->keys != NULL) {
        char sig[SAGA_SIGNATURE_SIZE];
        if (saga_sign(p->keys, topic, key, strlen(key), text, strlen(text), sig) ==
            SAGA_OK)
            rd_kafka_header_add(hdrs, SAGA_SIGNATURE_HEADER, -1, sig, -1);
    }
    /* Two calls: RD_KAFKA_V_HEADERS() is two arguments (a type tag and the
     * list), which cannot be chosen between with ?: in one call. */
    if (hdrs != NULL)
        e = rd_kafka_producev(
            p->producer, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_KEY(key, strlen(key)),
            RD_KAFKA_V_VALUE(text, strlen(text)),
            RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_FREE), RD_KAFKA_V_OPAQUE(tag),
            RD_KAFKA_V_HEADERS(hdrs), RD_KAFKA_V_END);
    else
        e = rd_kafka_producev(p->producer, RD_KAFKA_V_TOPIC(topic),
                              RD_KAFKA_V_KEY(key, strlen(key)),
                              RD_KAFKA_V_VALUE(text, strlen(text)),
                              RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_FREE),
                              RD_KAFKA_V_OPAQUE(tag), RD_KAFKA_V_END);
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
        size_t len = strlen(text);
        free(text);
        free(tag);
        if (hdrs)
            rd_kafka_headers_destroy(hdrs);
        STAT_ADD(p, undeliverable, 1);
        if (partition < 0) {
            warn(p,
                 "deferred reply to %s not sent: %s; sagad sends the command again "
                 "after the step's timeout",
                 topic, rd_kafka_err2str(e));
            return;
        }
        p->delivery_failures++;
        if (cannot_heal(e)) {
            char why[200];
            snprintf(why, sizeof why, "its reply of %zu bytes to %.100s was refused: %s",
                     len, topic, rd_kafka_err2str(e));
            warn(p,
                 "reply of %zu bytes to %s for the command at %s[%d]@%lld not sent: %s "
                 "(%d of %d; then it is dead-lettered)",
                 len, topic, p->cmd_topic, (int)partition, (long long)offset,
                 rd_kafka_err2str(e), note_failed(p, partition, offset, why, 1),
                 p->max_redeliveries + 1);
        } else {
            warn(p,
                 "reply to %s for the command at %s[%d]@%lld not sent: %s; it will be "
                 "consumed again",
                 topic, p->cmd_topic, (int)partition, (long long)offset,
                 rd_kafka_err2str(e));
        }
        return;
    }
    if (tag != NULL && tag->alone)
        rd_kafka_flush(p->producer, FLUSH_TIMEOUT_MS);
}

/* Send reply now, or after the open group's COMMIT. */
/* Count a reply handed to Kafka by its status; cached replies carry the
 * status they were recorded with. */
static void count_reply(saga_participant *p, const json_t *reply)
{
    saga_reply_status st;
    if (saga_reply_status_parse(json_string_value(json_object_get(reply, "status")),
                                &st) != SAGA_OK)
        return;
    if (st == SAGA_REPLY_OK)
        STAT_ADD(p, replied_ok, 1);
    else if (st == SAGA_REPLY_FAILED)
        STAT_ADD(p, replied_failed, 1);
    else
        STAT_ADD(p, replied_retry, 1);
}

/* Run the handler, timing it for the stats. */
static void call_handler(saga_participant *p, const handler *h, const saga_command *cmd,
                         PGconn *db, saga_result *res)
{
    uint64_t start = (uint64_t)saga__mono_ns();
    h->fn(cmd, db, res, h->arg);
    STAT_ADD(p, handler_time_ns, (uint64_t)saga__mono_ns() - start);
    STAT_ADD(p, handler_calls, 1);
}

static void send_reply(saga_participant *p, const saga_command *cmd, json_t *reply,
                       const rd_kafka_message_t *in)
{
    char *text;
    rd_kafka_headers_t *inh = NULL;
    const void *tp = NULL;
    size_t tplen = 0;

    /* Replies carry the attempt they answer, even when cached; and the
     * command's version and element (the barrier keys on the element, so a
     * cached reply has them already, unless a row of version 1 was kept
     * for element 0). */
    json_object_set_new(reply, "attempt", json_integer(cmd->attempt));
    json_object_set_new(reply, "v",
                        json_integer(is_element(cmd) ? SAGA_PROTOCOL_VERSION_ELEMENTS
                                                     : SAGA_PROTOCOL_VERSION));
    if (is_element(cmd))
        json_object_set_new(reply, "element", json_integer(cmd->element));
    else
        json_object_del(reply, "element");
    text = json_dumps(reply, JSON_COMPACT | JSON_ENSURE_ASCII);
    if (text == NULL) {
        p->delivery_failures++;
        return;
    }
    count_reply(p, reply);
    if (cmd->traceparent != NULL) {
        /* Kept with the command, so a deferred reply carries it too. */
        tp = cmd->traceparent;
        tplen = strlen(cmd->traceparent);
    } else if (in == NULL || p->feeding ||
               rd_kafka_message_headers(in, &inh) != RD_KAFKA_RESP_ERR_NO_ERROR ||
               rd_kafka_header_get_last(inh, "traceparent", &tp, &tplen) !=
                   RD_KAFKA_RESP_ERR_NO_ERROR) {
        tp = NULL;
    }
    if (p->group_open) {
        pending_reply *r;
        if (saga__grow(&p->pending, &p->cappending, p->npending + 1, sizeof *p->pending,
                       64) != SAGA_OK) {
            free(text);
            p->group_failed = 1; /* redelivered: the barrier answers */
            return;
        }
        r = &p->pending[p->npending];
        r->topic = strdup(cmd->reply_to);
        r->text = text;
        r->traceparent = tp ? strndup(tp, tplen) : NULL;
        snprintf(r->key, sizeof r->key, "%s", cmd->saga_id);
        r->partition = in != NULL ? in->partition : -1;
        r->offset = in != NULL ? in->offset : -1;
        if (r->topic == NULL || (tp != NULL && r->traceparent == NULL)) {
            free(r->topic);
            free(r->text);
            free(r->traceparent);
            p->group_failed = 1;
            return;
        }
        p->npending++;
        return;
    }
    produce_reply(p, cmd->reply_to, cmd->saga_id, text, tp, tplen,
                  in != NULL ? in->partition : -1, in != NULL ? in->offset : -1);
}

static void drop_pending(saga_participant *p, int send)
{
    for (int i = 0; i < p->npending; i++) {
        pending_reply *r = &p->pending[i];
        if (send)
            produce_reply(p, r->topic, r->key, r->text, r->traceparent,
                          r->traceparent ? strlen(r->traceparent) : 0, r->partition,
                          r->offset);
        else
            free(r->text);
        free(r->topic);
        free(r->traceparent);
    }
    p->npending = 0;
}

/* Reconnect after the server went away; prepared statements are per
 * connection, so prepare them again. */
static void db_reset(saga_participant *p)
{
    saga_error e = {0};
    PQreset(p->db);
    if (PQstatus(p->db) == CONNECTION_OK && saga__barrier_prepare(p->db, &e) != SAGA_OK)
        warn(p, "%s", e.message);
}

/* Open a group transaction (commands then run in savepoints). */
static void group_begin(saga_participant *p)
{
    saga_error e = {0};
    if (PQstatus(p->db) != CONNECTION_OK)
        db_reset(p);
    if (saga__pg_exec(p->db, "BEGIN", &e) != SAGA_OK) {
        warn(p, "%s", e.message);
        return; /* commands run in their own transactions */
    }
    p->group_open = 1;
    p->group_n = 0;
    p->group_failed = 0;
    p->group_started = saga__mono_ms();
}

/* COMMIT the group and send its replies; when the group failed, roll it
 * back and return -1: its commands must be consumed again. */
static int group_end(saga_participant *p)
{
    saga_error e = {0};
    int ok, conflicts = 0;
    if (!p->group_open)
        return 0;
    p->group_open = 0;
    ok = !p->group_failed &&
         saga__barrier_batch_flush(p->db, &p->group_rows, &conflicts, &e) == SAGA_OK &&
         conflicts == 0 && saga__pg_exec(p->db, "COMMIT", &e) == SAGA_OK;
    if (!ok) {
        saga__barrier_batch_clear(&p->group_rows);
        saga__pg_exec(p->db, "ROLLBACK", NULL);
        p->solo = BATCH_MAX;
        /* A conflict: another delivery of one of these commands stored its
         * barrier row meanwhile; consumed again, each finds its row. */
        warn(p, "a group of %d command(s) was rolled back (%s); they will be redelivered",
             p->group_n,
             p->group_failed ? "a database error"
             : conflicts > 0 ? "another delivery answered one of them meanwhile"
                             : e.message);
    }
    drop_pending(p, ok);
    return ok ? 0 : -1;
}

/* Per command: a transaction of its own, or a savepoint in the group. */
static int cmd_begin(saga_participant *p, saga_error *e)
{
    if (!p->group_open && PQstatus(p->db) != CONNECTION_OK)
        db_reset(p);
    return saga__pg_exec(p->db, p->group_open ? "SAVEPOINT saga_cmd" : "BEGIN", e);
}

static int cmd_commit(saga_participant *p, saga_error *e)
{
    return saga__pg_exec(p->db, p->group_open ? "RELEASE SAVEPOINT saga_cmd" : "COMMIT",
                         e);
}

static void cmd_rollback(saga_participant *p)
{
    if (!p->group_open) {
        saga__pg_exec(p->db, "ROLLBACK", NULL);
        return;
    }
    /* If even this fails, the connection or transaction is gone: the whole
     * group is rolled back and redelivered. */
    if (saga__pg_exec(p->db, "ROLLBACK TO SAVEPOINT saga_cmd", NULL) != SAGA_OK ||
        saga__pg_exec(p->db, "RELEASE SAVEPOINT saga_cmd", NULL) != SAGA_OK)
        p->group_failed = 1;
}

/* An ok result whose output is over the limit becomes a definite failure
 * (message_too_large): sagad would refuse to store it, and a reply over
 * the broker's size would never leave. Returns 1 when it did. */
static int output_over_limit(saga_participant *p, const saga_command *cmd,
                             saga_result *res)
{
    int64_t limit = p->max_output_bytes;
    int64_t ceiling = p->max_message_bytes > 32768 ? p->max_message_bytes - 16384 : 16384;
    size_t bytes;
    if (!res->set || res->status != SAGA_REPLY_OK || res->output == NULL)
        return 0;
    if (limit <= 0 || limit > ceiling)
        limit = ceiling;
    bytes = json_dumpb(res->output, NULL, 0, 0);
    if ((int64_t)bytes <= limit)
        return 0;
    result_reset(res);
    saga_result_fail(res, "message_too_large",
                     "the output of %zu bytes is over the limit of %lld bytes "
                     "(max_output_bytes)",
                     bytes, (long long)limit);
    STAT_ADD(p, output_too_large, 1);
    warn(p,
         "command %s: the output of %zu bytes is over the limit of %lld bytes; "
         "answered failed with message_too_large",
         cmd->command_id, bytes, (long long)limit);
    return 1;
}

static void run_plain(saga_participant *p, const handler *h, const saga_command *cmd,
                      saga_result *res)
{
    call_handler(p, h, cmd, NULL, res);
}

/* The handler inside BEGIN / barrier / COMMIT (in a group: SAVEPOINT /
 * barrier / RELEASE). The barrier row is written once, after the handler,
 * with its reply. On a database error the result becomes `retry` and
 * nothing is committed. */
static void run_with_barrier(saga_participant *p, const handler *h,
                             const saga_command *cmd, saga_result *res, json_t **cached)
{
    saga_error e = {0};
    saga__barrier_verdict v;
    json_t *reply;
    const char *outcome = "handled";
    int rc;

    if (cmd_begin(p, &e) != SAGA_OK)
        goto dberr;
    if (saga__barrier_enter(p->db, p->group_open ? &p->group_rows : NULL, cmd, &v, cached,
                            &e) != SAGA_OK)
        goto dberr;
    switch (v) {
    case SAGA__BARRIER_DUPLICATE:
    case SAGA__BARRIER_HANGING:
        goto settled;
    case SAGA__BARRIER_NULL_COMP:
        STAT_ADD(p, null_compensations, 1);
        saga_result_ok(res, json_pack("{s:b}", "null_compensation", 1));
        outcome = "null_compensation";
        break;
    case SAGA__BARRIER_PROCEED:
        /* A failed handler's writes are undone, its reply kept: in a group
         * the command's own savepoint does that, alone one more. */
        if (!p->group_open &&
            saga__pg_exec(p->db, "SAVEPOINT saga_handler", &e) != SAGA_OK)
            goto dberr;
        p->in_handler = 1;
        call_handler(p, h, cmd, p->db, res);
        p->in_handler = 0;
        if (res->deferred != NULL) {
            /* Nothing is recorded now: completing runs the barrier. */
            cmd_rollback(p);
            return;
        }
        if (!res->set)
            saga_result_retry(res, 0, "handler for %s set no result", cmd->action);
        if (res->status == SAGA_REPLY_RETRY) {
            cmd_rollback(p);
            return;
        }
        if (PQtransactionStatus(p->db) == PQTRANS_INERROR &&
            res->status == SAGA_REPLY_OK) {
            cmd_rollback(p);
            result_reset(res);
            saga_result_retry(res, 0,
                              "handler for %s reported ok but its transaction failed: %s",
                              cmd->action, PQerrorMessage(p->db));
            return;
        }
        output_over_limit(p, cmd, res);
        if (res->status == SAGA_REPLY_FAILED &&
            saga__pg_exec(p->db,
                          p->group_open ? "ROLLBACK TO SAVEPOINT saga_cmd"
                                        : "ROLLBACK TO SAVEPOINT saga_handler",
                          &e) != SAGA_OK)
            goto dberr;
        break;
    }
    reply = reply_object(cmd, res);
    rc = reply != NULL
             ? saga__barrier_record(p->db, p->group_open ? &p->group_rows : NULL, cmd,
                                    reply, outcome, &v, cached, &e)
             : saga__error_set(&e, SAGA_ENOMEM, "out of memory");
    json_decref(reply);
    if (rc != SAGA_OK)
        goto dberr;
    if (v == SAGA__BARRIER_PROCEED) {
        if (cmd_commit(p, &e) != SAGA_OK)
            goto dberr;
        return;
    }
settled:
    /* Seen before, or while the handler ran (another delivery stored its
     * row first): nothing of this run stays, and the stored answer is
     * given. */
    cmd_rollback(p);
    if (v == SAGA__BARRIER_HANGING) {
        STAT_ADD(p, hanging_refused, 1);
        result_reset(res);
        refuse_hanging(res, cmd);
    } else if (*cached == NULL) {
        /* A row without a reply: not written by this barrier. Ask again
         * later rather than answer with what was just undone. */
        result_reset(res);
        saga_result_retry(res, 1000, "the barrier row of %s holds no reply",
                          cmd->command_id);
    } else {
        STAT_ADD(p, duplicates, 1);
    }
    return;
dberr:
    cmd_rollback(p);
    json_decref(*cached);
    *cached = NULL;
    warn(p, "command %s: %s", cmd->command_id, e.message);
    result_reset(res);
    saga_result_retry(res, 1000, "participant %s database error: %s", p->service,
                      e.message);
}

/* Set the command m aside: to the dead-letter topic with why, or (none
 * configured) only logged. Either way it is not handled, and its offset
 * is committed with the batch's. */
static void dead_letter(saga_participant *p, const rd_kafka_message_t *m, const char *why)
{
    rd_kafka_headers_t *h;
    rd_kafka_resp_err_t e;
    delivery_tag *tag;
    char part[16], off[24], bytes[24];
    size_t len = m->len, room;

    STAT_ADD(p, dead_lettered, 1);
    if (p->dead_topic[0] == '\0') {
        warn(p, "the command at %s[%d]@%lld was skipped (no dead-letter topic): %s",
             p->cmd_topic, (int)m->partition, (long long)m->offset, why);
        return;
    }
    /* Room for the key and the headers: a message as large as the broker
     * takes is kept in part rather than lost. */
    room = p->max_message_bytes > 32768 ? (size_t)p->max_message_bytes - 16384 : 16384;
    if (len > room)
        len = room;
    tag = malloc(sizeof *tag);
    h = rd_kafka_headers_new(6);
    if (tag == NULL || h == NULL) {
        free(tag);
        if (h != NULL)
            rd_kafka_headers_destroy(h);
        fail_line(p, "the command at %s[%d]@%lld was skipped (out of memory): %s",
                  p->cmd_topic, (int)m->partition, (long long)m->offset, why);
        return;
    }
    tag->partition = m->partition;
    tag->offset = m->offset;
    tag->dead = 1;
    snprintf(part, sizeof part, "%d", (int)m->partition);
    snprintf(off, sizeof off, "%lld", (long long)m->offset);
    snprintf(bytes, sizeof bytes, "%zu", m->len);
    rd_kafka_header_add(h, "saga-dead-reason", -1, why, -1);
    rd_kafka_header_add(h, "saga-dead-topic", -1, p->cmd_topic, -1);
    rd_kafka_header_add(h, "saga-dead-partition", -1, part, -1);
    rd_kafka_header_add(h, "saga-dead-offset", -1, off, -1);
    rd_kafka_header_add(h, "saga-dead-service", -1, p->service, -1);
    if (len < m->len)
        rd_kafka_header_add(h, "saga-dead-bytes", -1, bytes, -1);
    e = rd_kafka_producev(
        p->producer, RD_KAFKA_V_TOPIC(p->dead_topic), RD_KAFKA_V_KEY(m->key, m->key_len),
        RD_KAFKA_V_VALUE(m->payload, len), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
        RD_KAFKA_V_OPAQUE(tag), RD_KAFKA_V_HEADERS(h), RD_KAFKA_V_END);
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
        free(tag);
        rd_kafka_headers_destroy(h);
        if (!cannot_heal(e))
            p->delivery_failures++;
        fail_line(
            p, "the command at %s[%d]@%lld could not be dead-lettered to %s: %s; %s: %s",
            p->cmd_topic, (int)m->partition, (long long)m->offset, p->dead_topic,
            rd_kafka_err2str(e),
            cannot_heal(e) ? "it is skipped" : "it will be consumed again", why);
        return;
    }
    warn(p, "the command at %s[%d]@%lld was dead-lettered to %s: %s", p->cmd_topic,
         (int)m->partition, (long long)m->offset, p->dead_topic, why);
}

/* The command at m's offset whose reply could not be delivered too many
 * times: dead-letter it instead of handling it again. */
static int dead_after_failures(saga_participant *p, const rd_kafka_message_t *m)
{
    for (int i = 0; i < p->nfailed; i++) {
        failed_offset *f = &p->failed[i];
        if (f->partition == m->partition && f->offset == m->offset) {
            char why[300];
            if (f->count <= p->max_redeliveries)
                return 0;
            snprintf(why, sizeof why, "answered %d time(s) but %s", f->count, f->why);
            memmove(f, f + 1, sizeof *f * (size_t)(p->nfailed - i - 1));
            p->nfailed--;
            dead_letter(p, m, why);
            return 1;
        }
    }
    return 0;
}

/* A command's reply_to must be this deployment's reply topic: a command
 * sending replies anywhere else would have them refused, or read by
 * nobody, for ever. */
static int reply_to_ours(const saga_participant *p, const char *topic)
{
    return strcmp(topic, p->reply_topic) == 0 || strcmp(topic, p->own_reply_topic) == 0;
}

/* With key_file: the command must carry a signature made with one of the
 * service's keys over this topic, key and value; one that does not is
 * counted, dead-lettered (with why) and not handled. A forged command
 * would otherwise run its action: release credit, reserve stock. */
static int signed_by_sagad(saga_participant *p, const rd_kafka_message_t *m)
{
    rd_kafka_headers_t *hdrs = NULL;
    const void *sig = NULL;
    size_t siglen = 0;
    saga_error e = {0};
    char why[600];
    /* A message made by saga__participant_feed has no headers. */
    if (!p->feeding && rd_kafka_message_headers(m, &hdrs) == RD_KAFKA_RESP_ERR_NO_ERROR &&
        rd_kafka_header_get_last(hdrs, SAGA_SIGNATURE_HEADER, &sig, &siglen) !=
            RD_KAFKA_RESP_ERR_NO_ERROR)
        sig = NULL;
    if (saga_verify(p->keys, rd_kafka_topic_name(m->rkt), m->key, m->key_len, m->payload,
                    m->len, sig, siglen, &e) == SAGA_OK)
        return 1;
    STAT_ADD(p, unauthenticated, 1);
    snprintf(why, sizeof why, "unauthenticated: %s", e.message);
    dead_letter(p, m, why);
    return 0;
}

static void handle_message(saga_participant *p, const rd_kafka_message_t *m)
{
    saga_command cmd;
    saga_error e = {0};
    saga_result res = {0};
    json_t *reply = NULL, *cached = NULL;
    const handler *h;

    STAT_ADD(p, received, 1);
    if (p->nfailed > 0 && dead_after_failures(p, m))
        return;
    if (p->keys != NULL && !signed_by_sagad(p, m))
        return;
    if (saga_command_decode(m->payload, m->len, &cmd, &e) != SAGA_OK) {
        char why[1200];
        STAT_ADD(p, malformed, 1);
        snprintf(why, sizeof why, "malformed: %s", e.message);
        dead_letter(p, m, why);
        return;
    }
    if (!reply_to_ours(p, cmd.reply_to)) {
        char why[1200];
        STAT_ADD(p, malformed, 1);
        snprintf(why, sizeof why,
                 "malformed: field \"reply_to\" is \"%.60s\", not this deployment's "
                 "reply topic (%s or %s)",
                 cmd.reply_to, p->reply_topic, p->own_reply_topic);
        dead_letter(p, m, why);
        saga_command_clear(&cmd);
        return;
    }
    {
        /* The trace context travels beside the payload, in a header. */
        rd_kafka_headers_t *hdrs = NULL;
        const void *tp = NULL;
        size_t tplen = 0;
        /* A message made by saga__participant_feed has no headers for
         * librdkafka to read (it is not one of librdkafka's). */
        if (!p->feeding &&
            rd_kafka_message_headers(m, &hdrs) == RD_KAFKA_RESP_ERR_NO_ERROR &&
            rd_kafka_header_get_last(hdrs, "traceparent", &tp, &tplen) ==
                RD_KAFKA_RESP_ERR_NO_ERROR &&
            tp != NULL)
            cmd.traceparent = strndup(tp, tplen);
    }
    res.cmd = &cmd;
    h = find_handler(p, cmd.phase, cmd.action);
    if (h == NULL) {
        STAT_ADD(p, unknown_action, 1);
        saga_result_fail(
            &res, "unknown_action", "service %s has no handler for %s %s", p->service,
            cmd.phase == SAGA_PHASE_INVOKE ? "action" : "compensation", cmd.action);
    } else if (p->db != NULL) {
        run_with_barrier(p, h, &cmd, &res, &cached);
    } else {
        run_plain(p, h, &cmd, &res);
        if (!res.set)
            saga_result_retry(&res, 0, "handler for %s set no result", cmd.action);
        output_over_limit(p, &cmd, &res);
    }
    STAT_ADD(p, results_ignored, res.ignored);
    if (res.deferred != NULL) {
        STAT_ADD(p, deferred, 1);
        json_decref(res.output);
        saga_command_clear(&cmd);
        return;
    }
    reply = cached != NULL ? cached : reply_object(&cmd, &res);
    if (reply != NULL) {
        send_reply(p, &cmd, reply, m);
        STAT_ADD(p, handled, 1);
    }
    json_decref(reply);
    json_decref(res.output);
    saga_command_clear(&cmd);
}

/* After a failed reply delivery: the affected commands are consumed again
 * (the barrier makes that safe). */
static void rewind_to_committed(saga_participant *p)
{
    saga__kafka_rewind(p->consumer);
}

/* After a batch whose replies were all delivered: its commands' earlier
 * failures no longer count (a failure that cannot heal counts only in a
 * row). */
static void forget_failed(saga_participant *p)
{
    const rd_kafka_topic_partition_list_t *l = p->processed;
    if (l == NULL || p->nfailed == 0)
        return;
    for (int i = 0; i < p->nfailed;) {
        int done = 0;
        for (int k = 0; k < l->cnt && !done; k++)
            done = l->elems[k].partition == p->failed[i].partition &&
                   p->failed[i].offset < l->elems[k].offset;
        if (done) {
            memmove(&p->failed[i], &p->failed[i + 1],
                    sizeof p->failed[0] * (size_t)(p->nfailed - i - 1));
            p->nfailed--;
        } else {
            i++;
        }
    }
}

int saga_participant_fd(saga_participant *p)
{
    rd_kafka_queue_t *q;
    if (p == NULL)
        return -1;
    if (p->wake[0] >= 0)
        return p->wake[0];
    if (pipe(p->wake) != 0)
        return p->wake[0] = p->wake[1] = -1;
    for (int i = 0; i < 2; i++) {
        fcntl(p->wake[i], F_SETFL, fcntl(p->wake[i], F_GETFL) | O_NONBLOCK);
        fcntl(p->wake[i], F_SETFD, FD_CLOEXEC);
    }
    /* librdkafka writes a byte when the consumer queue becomes non-empty. */
    q = rd_kafka_queue_get_consumer(p->consumer);
    rd_kafka_queue_io_event_enable(q, p->wake[1], "1", 1);
    atomic_store(&p->wake_w, p->wake[1]);
    rd_kafka_queue_destroy(q);
    return p->wake[0];
}

int saga_participant_poll(saga_participant *p, int timeout_ms, saga_error *err)
{
    int n = 0, group_lost = 0;
    if (p == NULL)
        return saga__error_set(err, SAGA_EINVAL, "participant is NULL");
    if (p->wake[0] >= 0) {
        char buf[64];
        while (read(p->wake[0], buf, sizeof buf) > 0)
            ;
    }
    p->warning[0] = '\0';
    p->delivery_failures = 0;
    if (p->log_left_out > 0)
        log_window_roll(p, saga__mono_ms());
    while (n < BATCH_MAX && !p->stop) {
        rd_kafka_message_t *m =
            rd_kafka_consumer_poll(p->consumer, n == 0 ? timeout_ms : 0);
        if (m == NULL)
            break;
        if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
            if (m->err == RD_KAFKA_RESP_ERR__FATAL) {
                /* E.g. a static member fenced: this consumer will never get
                 * another message. Say so; the process should restart. */
                char why[256];
                rd_kafka_fatal_error(p->consumer, why, sizeof why);
                rd_kafka_message_destroy(m);
                return saga__error_set(err, SAGA_EKAFKA, "fatal Kafka consumer error: %s",
                                       why);
            }
            if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
                warn(p, "consumer: %s", rd_kafka_message_errstr(m));
            rd_kafka_message_destroy(m);
            if (n == 0)
                break;
            continue;
        }
        if (p->db != NULL && p->tx_commands > 1 && !p->group_open && p->solo == 0)
            group_begin(p);
        else if (p->solo > 0 && !p->group_open)
            p->solo--;
        handle_message(p, m);
        saga__kafka_track(&p->processed, m);
        rd_kafka_message_destroy(m);
        n++;
        if (p->group_open &&
            (++p->group_n >= p->tx_commands ||
             saga__mono_ms() - p->group_started >= p->tx_ms) &&
            group_end(p) != 0) {
            group_lost = 1;
            break; /* what follows is consumed again after the rewind */
        }
    }
    if (group_end(p) != 0)
        group_lost = 1;
    rd_kafka_poll(p->producer, 0);
    if (p->wake[1] >= 0 && !p->stop) {
        /* librdkafka writes to the pipe only when a message lands on an
         * empty queue, and we drained the pipe above: commands left waiting
         * (a full batch taken, more queued) would never make the fd
         * readable again. Wake the event loop ourselves. */
        rd_kafka_queue_t *q = rd_kafka_queue_get_consumer(p->consumer);
        if (n >= BATCH_MAX || (q != NULL && rd_kafka_queue_length(q) > 0)) {
            ssize_t w = write(p->wake[1], "1", 1);
            (void)w; /* a full pipe is readable already */
        }
        if (q != NULL)
            rd_kafka_queue_destroy(q);
    }
    if (n == 0)
        return 0;
    if (group_lost) {
        rd_kafka_topic_partition_list_destroy(p->processed);
        p->processed = NULL;
        rd_kafka_flush(p->producer, FLUSH_TIMEOUT_MS);
        rewind_to_committed(p);
        return saga__error_set(err, SAGA_EDB,
                               "a database transaction failed; the commands will be "
                               "redelivered: %s",
                               p->warning);
    }
    if (rd_kafka_flush(p->producer, FLUSH_TIMEOUT_MS) != RD_KAFKA_RESP_ERR_NO_ERROR ||
        p->delivery_failures > 0) {
        rd_kafka_topic_partition_list_destroy(p->processed);
        p->processed = NULL;
        rewind_to_committed(p);
        return saga__error_set(err, SAGA_EKAFKA,
                               "%d replies not delivered; will redeliver: %s",
                               p->delivery_failures, p->warning);
    }
    forget_failed(p);
    {
        rd_kafka_resp_err_t e = saga__kafka_store_tracked(p->consumer, &p->processed);
        if (e != RD_KAFKA_RESP_ERR_NO_ERROR)
            warn(p, "storing offsets: %s (commands may be redelivered)",
                 rd_kafka_err2str(e));
    }
    return n;
}

int saga_participant_run(saga_participant *p, saga_error *err)
{
    if (p == NULL)
        return saga__error_set(err, SAGA_EINVAL, "participant is NULL");
    while (!p->stop) {
        int n = saga_participant_poll(p, 200, err);
        /* Delivery problems and a lost group transaction are transient
         * (the batch is redelivered); a fatal consumer error is not. */
        if (n == SAGA_EDB) {
            struct timespec ts = {0, 500 * 1000000L}; /* the database may be restarting */
            nanosleep(&ts, NULL);
            continue;
        }
        if (n < 0 && (n != SAGA_EKAFKA || rd_kafka_fatal_error(p->consumer, NULL, 0)))
            return n;
    }
    return SAGA_OK;
}

void saga_participant_stop(saga_participant *p)
{
    int w;
    if (p == NULL)
        return;
    atomic_store(&p->stop, 1);
    /* An fd-driven loop may be asleep in poll(2): make it readable, so it
     * calls saga_participant_poll and sees the stop (write(2) is
     * async-signal-safe; a full pipe is readable already). */
    w = atomic_load(&p->wake_w);
    if (w >= 0) {
        ssize_t r = write(w, "1", 1);
        (void)r;
    }
}

#define STAT_GET(field)                                                                  \
    out->field = atomic_load_explicit(&p->stats.field, memory_order_relaxed)

/* The first layout of the options under libsaga.so.1: what every program
 * built for it passes at least. */
#define OPTIONS_V1_SIZE (offsetof(saga_participant_options, tx_ms) + sizeof(int))

int saga_participant_new_sized(const saga_participant_options *opts, size_t opts_size,
                               saga_participant **out, saga_error *err)
{
    saga_participant_options o;
    if (opts == NULL)
        return participant_new(NULL, out, err);
    if (opts_size < OPTIONS_V1_SIZE)
        return saga__error_set(
            err, SAGA_EINVAL,
            "participant options of %zu bytes, fewer than the %zu of "
            "libsaga.so.1's first layout: built against other headers?",
            opts_size, (size_t)OPTIONS_V1_SIZE);
    /* Fields the program does not know keep their zero defaults. A newer
     * program's fields this library does not know must be unset: a setting
     * is never ignored in silence. */
    for (size_t i = sizeof o; i < opts_size; i++)
        if (((const unsigned char *)opts)[i] != 0)
            return saga__error_set(
                err, SAGA_EINVAL,
                "participant options: byte %zu of %zu is set, but this "
                "libsaga (%s) knows only the first %zu: upgrade libsaga",
                i, opts_size, saga_version(), sizeof o);
    memset(&o, 0, sizeof o);
    memcpy(&o, opts, opts_size < sizeof o ? opts_size : sizeof o);
    return participant_new(&o, out, err);
}

static void stats_fill(const saga_participant *p, saga_participant_stats *out)
{
    STAT_GET(handled);
    STAT_GET(duplicates);
    STAT_GET(null_compensations);
    STAT_GET(hanging_refused);
    STAT_GET(malformed);
    STAT_GET(unknown_action);
    STAT_GET(deferred);
    STAT_GET(results_ignored);
    STAT_GET(received);
    STAT_GET(replied_ok);
    STAT_GET(replied_failed);
    STAT_GET(replied_retry);
    STAT_GET(handler_calls);
    STAT_GET(handler_time_ns);
    STAT_GET(dead_lettered);
    STAT_GET(undeliverable);
    STAT_GET(output_too_large);
    STAT_GET(log_suppressed);
    STAT_GET(unauthenticated);
}

int saga_participant_get_stats_sized(const saga_participant *p,
                                     saga_participant_stats *out, size_t out_size)
{
    saga_participant_stats st;
    if (out == NULL)
        return SAGA_EINVAL;
    /* Exactly out_size bytes are written: the caller's struct may be older
     * (smaller) or newer (larger: its extra fields are zero) than ours. */
    memset(out, 0, out_size);
    if (p == NULL)
        return SAGA_EINVAL;
    memset(&st, 0, sizeof st);
    stats_fill(p, &st);
    memcpy(out, &st, out_size < sizeof st ? out_size : sizeof st);
    return SAGA_OK;
}

int saga_participant_set_logger(saga_participant *p, saga_participant_log_fn fn,
                                void *arg)
{
    if (p == NULL)
        return SAGA_EINVAL;
    p->log_fn = fn;
    p->log_arg = arg;
    return SAGA_OK;
}

int saga_participant_set_dead_letter_topic(saga_participant *p, const char *topic,
                                           saga_error *err)
{
    const char *topics[1];
    int rc;
    if (p == NULL)
        return saga__error_set(err, SAGA_EINVAL, "participant is NULL");
    if (topic == NULL || *topic == '\0') {
        p->dead_topic[0] = '\0';
        return SAGA_OK;
    }
    if (!saga_topic_name_valid(topic))
        return saga__error_set(err, SAGA_EINVAL,
                               "dead-letter topic \"%.60s\" is not a Kafka topic name "
                               "(1 to 249 letters, digits, '.', '_', '-')",
                               topic);
    topics[0] = topic;
    if ((rc = saga__kafka_ensure_topics(p->producer, topics, 1, 4, 10000, err)) !=
        SAGA_OK)
        return rc;
    snprintf(p->dead_topic, sizeof p->dead_topic, "%s", topic);
    return SAGA_OK;
}

int saga_participant_set_max_output_bytes(saga_participant *p, int64_t bytes)
{
    if (p == NULL || bytes < 0)
        return SAGA_EINVAL;
    p->max_output_bytes = bytes;
    return SAGA_OK;
}

int saga_participant_set_max_redeliveries(saga_participant *p, int n)
{
    if (p == NULL || n < 0)
        return SAGA_EINVAL;
    p->max_redeliveries = n;
    return SAGA_OK;
}

const char *saga_participant_last_warning(const saga_participant *p)
{
    return p != NULL ? p->warning : "";
}

static char *dup_str(const char *s)
{
    return s != NULL ? strdup(s) : NULL;
}

saga_deferred *saga_result_defer(saga_result *r)
{
    saga_deferred *d;
    const saga_command *c;
    if (r == NULL || r->set || r->cmd == NULL) {
        if (r != NULL)
            r->ignored++;
        return NULL;
    }
    c = r->cmd;
    d = calloc(1, sizeof *d);
    if (d == NULL)
        return NULL;
    d->cmd = *c;
    d->cmd.saga = dup_str(c->saga);
    d->cmd.step_name = dup_str(c->step_name);
    d->cmd.action = dup_str(c->action);
    d->cmd.command_id = dup_str(c->command_id);
    d->cmd.reply_to = dup_str(c->reply_to);
    d->cmd.payload = c->payload != NULL ? json_deep_copy(c->payload) : NULL;
    d->cmd.traceparent = c->traceparent != NULL ? dup_str(c->traceparent) : NULL;
    if (d->cmd.saga == NULL || d->cmd.step_name == NULL || d->cmd.action == NULL ||
        d->cmd.command_id == NULL || d->cmd.reply_to == NULL ||
        (c->traceparent != NULL && d->cmd.traceparent == NULL)) {
        saga_command_clear(&d->cmd);
        free(d);
        return NULL;
    }
    r->set = 1;
    r->deferred = d;
    return d;
}

/* Send the outcome res for d (through the barrier when there is a
 * database), free d. */
static int complete(saga_participant *p, saga_deferred *d, saga_result *res)
{
    saga_error e = {0};
    json_t *reply = NULL, *cached = NULL;
    saga__barrier_verdict v = SAGA__BARRIER_PROCEED;
    int rc = SAGA_OK, recorded = 0;

    if (p->db != NULL && (p->in_handler || p->group_open)) {
        /* Its barrier write would land in another command's transaction. */
        warn(p,
             "deferred %s completed inside a handler: complete it after the handler "
             "returned",
             d->cmd.command_id);
        json_decref(res->output);
        return SAGA_ESTATE;
    }
    output_over_limit(p, &d->cmd, res);
    if (p->db != NULL) {
        if (PQstatus(p->db) != CONNECTION_OK)
            db_reset(p);
        rc = saga__pg_exec(p->db, "BEGIN", &e);
        if (rc == SAGA_OK)
            rc = saga__barrier_enter(p->db, NULL, &d->cmd, &v, &cached, &e);
        if (rc == SAGA_OK && v == SAGA__BARRIER_HANGING) {
            result_reset(res);
            refuse_hanging(res, &d->cmd);
        } else if (rc == SAGA_OK && v == SAGA__BARRIER_NULL_COMP) {
            result_reset(res);
            saga_result_ok(res, json_pack("{s:b}", "null_compensation", 1));
        }
        if (rc == SAGA_OK && v != SAGA__BARRIER_DUPLICATE && v != SAGA__BARRIER_HANGING &&
            res->status != SAGA_REPLY_RETRY) {
            reply = reply_object(&d->cmd, res);
            rc = reply
                     ? saga__barrier_record(
                           p->db, NULL, &d->cmd, reply,
                           v == SAGA__BARRIER_NULL_COMP ? "null_compensation" : "handled",
                           &v, &cached, &e)
                     : SAGA_ENOMEM;
            recorded = rc == SAGA_OK && v == SAGA__BARRIER_PROCEED;
            if (rc == SAGA_OK && v == SAGA__BARRIER_HANGING) {
                /* Its compensation came first, while it was pending. */
                json_decref(reply);
                reply = NULL;
                result_reset(res);
                refuse_hanging(res, &d->cmd);
            }
        }
        /* Keep the barrier row only with its reply: a retry leaves no trace. */
        if (rc == SAGA_OK)
            rc = saga__pg_exec(p->db, recorded ? "COMMIT" : "ROLLBACK", &e);
        else
            saga__pg_exec(p->db, "ROLLBACK", NULL);
    }
    if (rc == SAGA_OK) {
        if (cached != NULL) {
            json_decref(reply);
            reply = cached; /* an earlier completion's answer stands */
            cached = NULL;
        } else if (reply == NULL) {
            reply = reply_object(&d->cmd, res);
        }
        if (reply != NULL)
            send_reply(p, &d->cmd, reply, NULL);
        else
            rc = SAGA_ENOMEM;
        rd_kafka_poll(p->producer, 0);
    } else {
        warn(p, "completing deferred %s: %s", d->cmd.command_id, e.message);
    }
    json_decref(reply);
    json_decref(cached);
    json_decref(res->output);
    saga_command_clear(&d->cmd);
    free(d);
    return rc;
}

int saga_deferred_ok(saga_participant *p, saga_deferred *d, json_t *output)
{
    saga_result res = {0};
    if (p == NULL || d == NULL) {
        json_decref(output);
        return SAGA_EINVAL;
    }
    saga_result_ok(&res, output);
    return complete(p, d, &res);
}

int saga_deferred_fail(saga_participant *p, saga_deferred *d, const char *code,
                       const char *fmt, ...)
{
    saga_result res = {0};
    va_list ap;
    if (p == NULL || d == NULL)
        return SAGA_EINVAL;
    va_start(ap, fmt);
    result_error(&res, SAGA_REPLY_FAILED, code, 0, fmt, ap);
    va_end(ap);
    return complete(p, d, &res);
}

int saga_deferred_retry(saga_participant *p, saga_deferred *d, int64_t after_ms,
                        const char *fmt, ...)
{
    saga_result res = {0};
    va_list ap;
    if (p == NULL || d == NULL)
        return SAGA_EINVAL;
    va_start(ap, fmt);
    result_error(&res, SAGA_REPLY_RETRY, "retry", after_ms < 0 ? 0 : after_ms, fmt, ap);
    va_end(ap);
    return complete(p, d, &res);
}

int saga__participant_feed(saga_participant *p, const char *buf, size_t len,
                           int64_t offset, saga_error *err)
{
    rd_kafka_message_t m = {0};
    int lost;
    if (p->feed_rkt == NULL &&
        (p->feed_rkt = rd_kafka_topic_new(p->producer, p->cmd_topic, NULL)) == NULL)
        return saga__error_set(err, SAGA_EKAFKA, "no topic handle for %s", p->cmd_topic);
    m.rkt = p->feed_rkt;
    m.partition = 0;
    m.offset = offset;
    m.payload = (void *)(uintptr_t)buf;
    m.len = len;
    p->warning[0] = '\0';
    p->delivery_failures = 0;
    if (p->db != NULL && p->tx_commands > 1)
        group_begin(p);
    p->feeding = 1;
    handle_message(p, &m);
    p->feeding = 0;
    lost = group_end(p) != 0;
    if (rd_kafka_flush(p->producer, FLUSH_TIMEOUT_MS) != RD_KAFKA_RESP_ERR_NO_ERROR)
        return saga__error_set(err, SAGA_EKAFKA, "replies not flushed: %s", p->warning);
    if (lost)
        return saga__error_set(err, SAGA_EDB, "the group transaction failed: %s",
                               p->warning);
    if (p->db != NULL && PQtransactionStatus(p->db) != PQTRANS_IDLE)
        return saga__error_set(err, SAGA_EDB, "a transaction was left open: %s",
                               p->warning);
    if (p->delivery_failures > 0)
        return saga__error_set(err, SAGA_EKAFKA, "%d replies not delivered: %s",
                               p->delivery_failures, p->warning);
    return SAGA_OK;
}

void saga_participant_free(saga_participant *p)
{
    if (p == NULL)
        return;
    if (p->processed != NULL)
        rd_kafka_topic_partition_list_destroy(p->processed);
    drop_pending(p, 0);
    saga__barrier_batch_clear(&p->group_rows);
    free(p->pending);
    if (p->wake[0] >= 0 && p->consumer != NULL) {
        rd_kafka_queue_t *q = rd_kafka_queue_get_consumer(p->consumer);
        rd_kafka_queue_io_event_enable(q, -1, NULL, 0);
        rd_kafka_queue_destroy(q);
    }
    atomic_store(&p->wake_w, -1);
    for (int i = 0; i < 2; i++)
        if (p->wake[i] >= 0)
            close(p->wake[i]);
    if (p->consumer != NULL) {
        rd_kafka_commit(p->consumer, NULL, 0);
        rd_kafka_consumer_close(p->consumer);
        rd_kafka_destroy(p->consumer);
    }
    if (p->feed_rkt != NULL)
        rd_kafka_topic_destroy(p->feed_rkt);
    if (p->producer != NULL) {
        rd_kafka_flush(p->producer, 5000);
        rd_kafka_destroy(p->producer);
    }
    if (p->db != NULL)
        PQfinish(p->db);
    for (int i = 0; i < p->nhandlers; i++)
        free(p->handlers[i].name);
    free(p->handlers);
    saga_keys_free(p->keys);
    free(p->service);
    free(p->prefix);
    free(p);
}
