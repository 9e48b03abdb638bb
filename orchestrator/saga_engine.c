/* sagad's engine loop (see saga_engine.h). Order of effects per batch:
 * PostgreSQL COMMIT, then produce the commands, then commit the Kafka
 * offsets of the replies consumed. A crash between any two of these loses
 * nothing: unsent commands are still in the outbox and are re-sent at
 * start; unconfirmed replies are consumed again and ignored as duplicates. */
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "saga_engine.h"
#include "saga_kafka.h"
#include "saga_log.h"
#include "saga_machine.h"
#include "saga_migrate.h"
#include "saga_store.h"

#define OUTBOX_SCAN_MS    1000
#define OUTBOX_SCAN_LIMIT 2000
#define TIMER_CLAIM_LIMIT 200

/* A set of outbox ids handed to the producer and not yet confirmed, so a
 * scan of the outbox table does not send them a second time. Open
 * addressing; 0 is the empty slot (outbox ids start at 1). */
typedef struct idset {
    int64_t *slots;
    size_t cap, n;
} idset;

static size_t id_hash(int64_t id, size_t cap)
{
    return (size_t)((uint64_t)id * 0x9E3779B97F4A7C15ull) & (cap - 1);
}

static int idset_has(const idset *s, int64_t id)
{
    if (s->cap == 0)
        return 0;
    for (size_t i = id_hash(id, s->cap);; i = (i + 1) & (s->cap - 1)) {
        if (s->slots[i] == id)
            return 1;
        if (s->slots[i] == 0)
            return 0;
    }
}

static int idset_add(idset *s, int64_t id);

static int idset_grow(idset *s)
{
    idset bigger = {calloc(s->cap ? s->cap * 2 : 1024, sizeof(int64_t)),
                    s->cap ? s->cap * 2 : 1024, 0};
    if (bigger.slots == NULL)
        return -1;
    for (size_t i = 0; i < s->cap; i++)
        if (s->slots[i] != 0)
            idset_add(&bigger, s->slots[i]);
    free(s->slots);
    *s = bigger;
    return 0;
}

static int idset_add(idset *s, int64_t id)
{
    if ((s->n + 1) * 2 > s->cap && idset_grow(s) != 0)
        return -1;
    for (size_t i = id_hash(id, s->cap);; i = (i + 1) & (s->cap - 1)) {
        if (s->slots[i] == id)
            return 0;
        if (s->slots[i] == 0) {
            s->slots[i] = id;
            s->n++;
            return 0;
        }
    }
}

static void idset_del(idset *s, int64_t id)
{
    size_t i, j;
    if (s->cap == 0)
        return;
    for (i = id_hash(id, s->cap);; i = (i + 1) & (s->cap - 1)) {
        if (s->slots[i] == 0)
            return;
        if (s->slots[i] == id)
            break;
    }
    s->slots[i] = 0;
    s->n--;
    /* Re-insert the rest of the cluster (backward-shift deletion). */
    for (j = (i + 1) & (s->cap - 1); s->slots[j] != 0; j = (j + 1) & (s->cap - 1)) {
        int64_t v = s->slots[j];
        s->slots[j] = 0;
        s->n--;
        idset_add(s, v);
    }
}

struct saga_engine {
    saga_engine_config cfg;
    char prefix[128];
    char reply_topic[256];
    PGconn *db;
    char *db_url;
    rd_kafka_t *producer;
    rd_kafka_t *consumer;
    saga_defs *defs;
    idset inflight;
    int64_t *delivered; /* confirmed ids waiting to be deleted from the outbox */
    int ndelivered, capdelivered;
    volatile sig_atomic_t stop;
    saga_engine_stats stats;
    uint64_t rng;
};

static double next_random(saga_engine *e)
{
    /* xorshift64*: jitter only needs to spread retries, not be secret. */
    e->rng ^= e->rng >> 12;
    e->rng ^= e->rng << 25;
    e->rng ^= e->rng >> 27;
    return (double)((e->rng * 0x2545F4914F6CDD1Dull) >> 11) / 9007199254740992.0;
}

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    saga_engine *e = opaque;
    int64_t id = (int64_t)(intptr_t)m->_private;
    (void)rk;
    if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        /* Left in the outbox: the next scan sends it again. */
        e->stats.send_failures++;
        idset_del(&e->inflight, id);
        saga_log(SAGA_LOG_WARN,
                 "command (outbox %lld) to %s not delivered: %s; will resend",
                 (long long)id, rd_kafka_topic_name(m->rkt), rd_kafka_err2str(m->err));
        return;
    }
    e->stats.commands_sent++;
    if (e->ndelivered == e->capdelivered) {
        int cap = e->capdelivered ? e->capdelivered * 2 : 1024;
        int64_t *d = realloc(e->delivered, sizeof *d * (size_t)cap);
        if (d == NULL)
            return; /* the row stays; resent later, absorbed as a duplicate */
        e->delivered = d;
        e->capdelivered = cap;
    }
    e->delivered[e->ndelivered++] = id;
}

/* Hand outbox messages to the producer (not those already in flight). */
static void produce(saga_engine *e, saga_outbox *o)
{
    for (int i = 0; i < o->n; i++) {
        saga_outbox_msg *m = &o->items[i];
        rd_kafka_resp_err_t err;
        if (idset_has(&e->inflight, m->id))
            continue;
        if (strncmp(m->topic, e->prefix, strlen(e->prefix)) != 0)
            saga_log(SAGA_LOG_WARN,
                     "outbox %lld goes to %s, outside this sagad's prefix %s: does the "
                     "program that started saga %s use another SAGA_TOPIC_PREFIX?",
                     (long long)m->id, m->topic, e->prefix, m->key);
        err =
            rd_kafka_producev(e->producer, RD_KAFKA_V_TOPIC(m->topic),
                              RD_KAFKA_V_KEY(m->key, strlen(m->key)),
                              RD_KAFKA_V_VALUE(m->payload, strlen(m->payload)),
                              RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                              RD_KAFKA_V_OPAQUE((void *)(intptr_t)m->id), RD_KAFKA_V_END);
        if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
            rd_kafka_poll(e->producer, 100);
            i--;
            continue;
        }
        if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
            e->stats.send_failures++;
            saga_log(SAGA_LOG_WARN, "producing to %s: %s; will resend", m->topic,
                     rd_kafka_err2str(err));
            continue;
        }
        idset_add(&e->inflight, m->id);
    }
}

static int ensure_db(saga_engine *e)
{
    if (PQstatus(e->db) == CONNECTION_OK)
        return 0;
    PQreset(e->db);
    if (PQstatus(e->db) != CONNECTION_OK) {
        saga_log(SAGA_LOG_ERROR, "PostgreSQL unreachable: %s", PQerrorMessage(e->db));
        return -1;
    }
    saga_log(SAGA_LOG_INFO, "reconnected to PostgreSQL");
    saga_store_exec(e->db, "LISTEN saga_outbox", NULL);
    return 0;
}

/* Delete the outbox rows whose delivery Kafka confirmed. */
static void forget_delivered(saga_engine *e)
{
    saga_error err = {0};
    if (e->ndelivered == 0 || ensure_db(e) != 0)
        return;
    if (saga_store_outbox_delete(e->db, e->delivered, e->ndelivered, &err) != SAGA_OK) {
        saga_log(SAGA_LOG_WARN, "%s", err.message);
        return;
    }
    for (int i = 0; i < e->ndelivered; i++)
        idset_del(&e->inflight, e->delivered[i]);
    e->ndelivered = 0;
}

static void scan_outbox(saga_engine *e)
{
    saga_outbox o = {0};
    saga_error err = {0};
    if (ensure_db(e) != 0)
        return;
    if (saga_store_outbox_read(e->db, OUTBOX_SCAN_LIMIT, &o, &err) != SAGA_OK)
        saga_log(SAGA_LOG_WARN, "%s", err.message);
    else
        produce(e, &o);
    saga_outbox_clear(&o);
}

/* Apply one event to saga id inside the open transaction. */
static int apply_one(saga_engine *e, const char *id, saga_event *ev, saga_outbox *sent,
                     saga_error *err)
{
    saga_state *s = NULL;
    saga_actions acts = {0};
    const char *reason = NULL;
    saga_store_opts so = {e->prefix, "sagad"};
    int rc;

    rc = saga_store_load(e->db, e->defs, id, 1, &s, err);
    if (rc == SAGA_ENOTFOUND) {
        e->stats.replies_rejected++;
        saga_log(SAGA_LOG_WARN, "reply for unknown saga %s ignored", id);
        return SAGA_OK;
    }
    if (rc != SAGA_OK)
        return rc;
    rc = saga_machine_apply(s, ev, &acts, &reason);
    if (rc == SAGA_APPLIED) {
        rc = saga_store_save(e->db, s, &acts, &so, sent, err);
        if (ev->kind == SAGA_EV_REPLY)
            e->stats.replies_applied++;
        else
            e->stats.timers_fired++;
        saga_log(SAGA_LOG_DEBUG, "saga %s: %s (step %d)", id, saga_status_name(s->status),
                 s->cursor);
    } else if (rc == SAGA_ENOMEM) {
        rc = saga_error_set(err, SAGA_ENOMEM, "out of memory applying an event");
    } else {
        if (ev->kind == SAGA_EV_REPLY) {
            if (rc == SAGA_IGNORED)
                e->stats.replies_ignored++;
            else
                e->stats.replies_rejected++;
            saga_log(
                SAGA_LOG_INFO, "saga %s: reply for step %d %s attempt %d %s: %s", id,
                ev->reply->step, saga_phase_name(ev->reply->phase), ev->reply->attempt,
                rc == SAGA_IGNORED ? "ignored (duplicate or stale)" : "rejected", reason);
        }
        rc = SAGA_OK;
    }
    saga_actions_clear(&acts);
    saga_state_free(s);
    return rc;
}

/* Rewind the reply consumer to its committed offsets so the replies of a
 * rolled-back batch are consumed again. */
static void rewind_consumer(saga_engine *e)
{
    rd_kafka_topic_partition_list_t *parts = NULL;
    if (rd_kafka_assignment(e->consumer, &parts) != RD_KAFKA_RESP_ERR_NO_ERROR)
        return;
    if (rd_kafka_committed(e->consumer, parts, 5000) == RD_KAFKA_RESP_ERR_NO_ERROR) {
        for (int i = 0; i < parts->cnt; i++)
            if (parts->elems[i].offset < 0)
                parts->elems[i].offset = RD_KAFKA_OFFSET_BEGINNING;
        rd_kafka_error_t *ke = rd_kafka_seek_partitions(e->consumer, parts, 5000);
        if (ke != NULL)
            rd_kafka_error_destroy(ke);
    }
    rd_kafka_topic_partition_list_destroy(parts);
}

/* One transaction for a batch of replies. */
static int process_replies(saga_engine *e, rd_kafka_message_t **msgs, int n)
{
    saga_reply *replies = calloc((size_t)n, sizeof *replies);
    saga_outbox sent = {0};
    saga_error err = {0};
    int nvalid = 0, rc = SAGA_OK;

    if (replies == NULL)
        return SAGA_ENOMEM;
    for (int i = 0; i < n; i++) {
        saga_error derr = {0};
        if (saga_reply_decode(msgs[i]->payload, msgs[i]->len, &replies[nvalid], &derr) !=
            SAGA_OK) {
            e->stats.malformed++;
            saga_log(SAGA_LOG_WARN, "malformed reply at %s[%d]@%lld skipped: %s",
                     rd_kafka_topic_name(msgs[i]->rkt), (int)msgs[i]->partition,
                     (long long)msgs[i]->offset, derr.message);
            continue;
        }
        nvalid++;
    }
    if (nvalid > 0) {
        if (ensure_db(e) != 0) {
            /* Consumed again once the database is back. */
            rc = SAGA_EDB;
            rewind_consumer(e);
            usleep(500 * 1000);
            goto out;
        }
        if ((rc = saga_store_exec(e->db, "BEGIN", &err)) != SAGA_OK)
            goto fail;
        for (int i = 0; i < nvalid && rc == SAGA_OK; i++) {
            saga_event ev = {.kind = SAGA_EV_REPLY,
                             .now = saga_now_ms(),
                             .random = next_random(e),
                             .reply = &replies[i]};
            rc = apply_one(e, replies[i].saga_id, &ev, &sent, &err);
        }
        if (rc != SAGA_OK || (rc = saga_store_exec(e->db, "COMMIT", &err)) != SAGA_OK)
            goto fail;
        e->stats.transactions++;
        produce(e, &sent);
    }
    {
        rd_kafka_topic_partition_list_t *done = NULL;
        rd_kafka_resp_err_t ke;
        for (int i = 0; i < n; i++)
            saga__kafka_track(&done, msgs[i]);
        ke = saga__kafka_commit_tracked(e->consumer, &done, 1);
        if (ke != RD_KAFKA_RESP_ERR_NO_ERROR)
            saga_log(SAGA_LOG_WARN, "committing reply offsets: %s", rd_kafka_err2str(ke));
    }
    goto out;
fail:
    saga_log(SAGA_LOG_ERROR, "reply batch rolled back, will be consumed again: %s",
             err.message);
    saga_store_exec(e->db, "ROLLBACK", NULL);
    rewind_consumer(e);
out:
    for (int i = 0; i < nvalid; i++)
        saga_reply_clear(&replies[i]);
    free(replies);
    saga_outbox_clear(&sent);
    return rc;
}

/* Claim due timers and fire them, in one transaction. Returns how many. */
static int process_timers(saga_engine *e)
{
    char(*ids)[SAGA_ID_LEN + 1] = malloc(sizeof *ids * TIMER_CLAIM_LIMIT);
    saga_outbox sent = {0};
    saga_error err = {0};
    int n = 0, rc;

    if (ids == NULL || ensure_db(e) != 0) {
        free(ids);
        return 0;
    }
    if ((rc = saga_store_exec(e->db, "BEGIN", &err)) != SAGA_OK)
        goto fail;
    if ((rc = saga_store_claim_due(e->db, TIMER_CLAIM_LIMIT, ids, &n, &err)) != SAGA_OK)
        goto fail;
    for (int i = 0; i < n && rc == SAGA_OK; i++) {
        saga_event ev = {.kind = SAGA_EV_WAKE,
                         .now = saga_now_ms(),
                         .random = next_random(e),
                         .reply = NULL};
        rc = apply_one(e, ids[i], &ev, &sent, &err);
    }
    if (rc != SAGA_OK || (rc = saga_store_exec(e->db, "COMMIT", &err)) != SAGA_OK)
        goto fail;
    if (n > 0)
        e->stats.transactions++;
    produce(e, &sent);
    saga_outbox_clear(&sent);
    free(ids);
    return n;
fail:
    saga_log(SAGA_LOG_ERROR, "timer batch rolled back: %s", err.message);
    saga_store_exec(e->db, "ROLLBACK", NULL);
    saga_outbox_clear(&sent);
    free(ids);
    return 0;
}

/* Mark a start request done, with the reason when it could not start. */
static int finish_request(saga_engine *e, const char *id, const char *error,
                          saga_error *err)
{
    const char *p[2] = {id, error};
    PGresult *r =
        PQexecParams(e->db,
                     "UPDATE saga.start_request SET processed_at = now(), error = $2"
                     " WHERE id = $1",
                     2, NULL, p, NULL, NULL, 0);
    int rc = PQresultStatus(r) == PGRES_COMMAND_OK
                 ? SAGA_OK
                 : saga_error_set(err, SAGA_EDB, "start request %s: %s", id,
                                  PQerrorMessage(e->db));
    PQclear(r);
    return rc;
}

/* Turn pending start requests (libsaga's client) into sagas, each with its
 * first command, in one transaction. Returns how many were taken. */
static int process_start_requests(saga_engine *e)
{
    saga_outbox sent = {0};
    saga_error err = {0};
    saga_store_opts so = {e->prefix, "client"};
    PGresult *r = NULL;
    int n = 0, rc;

    if (ensure_db(e) != 0)
        return 0;
    if ((rc = saga_store_exec(e->db, "BEGIN", &err)) != SAGA_OK)
        goto fail;
    r = PQexec(e->db,
               "SELECT id, name, input::text, idempotency_key FROM saga.start_request"
               " WHERE processed_at IS NULL ORDER BY requested_at LIMIT 200"
               " FOR UPDATE SKIP LOCKED");
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        rc = saga_error_set(&err, SAGA_EDB, "reading start requests: %s",
                            PQerrorMessage(e->db));
        goto fail;
    }
    n = PQntuples(r);
    for (int i = 0; i < n && rc == SAGA_OK; i++) {
        const char *id = PQgetvalue(r, i, 0), *name = PQgetvalue(r, i, 1);
        const char *key = PQgetisnull(r, i, 3) ? NULL : PQgetvalue(r, i, 3);
        const saga_definition *def;
        saga_error derr = {0};
        char problem[600] = "", existing[SAGA_ID_LEN + 1];
        int existed = 0;

        if (saga_store_get_definition(e->db, e->defs, name, 0, &def, &derr) != SAGA_OK) {
            snprintf(problem, sizeof problem, "%s", derr.message);
        } else {
            json_t *input = json_loads(PQgetvalue(r, i, 2), 0, NULL);
            saga_state *s = saga_state_new(def, id, input);
            saga_actions acts = {0};
            saga_event ev = {
                .kind = SAGA_EV_START, .now = saga_now_ms(), .random = next_random(e)};
            json_decref(input);
            if (s == NULL || saga_machine_apply(s, &ev, &acts, NULL) != SAGA_APPLIED)
                rc = saga_error_set(&err, SAGA_ENOMEM, "out of memory starting saga %s",
                                    id);
            else
                rc = saga_store_create(e->db, s, &acts, key, &so, &existed, existing,
                                       &sent, &err);
            if (rc == SAGA_OK && existed)
                snprintf(problem, sizeof problem,
                         "idempotency key already used by saga %s", existing);
            saga_actions_clear(&acts);
            saga_state_free(s);
        }
        if (rc == SAGA_OK)
            rc = finish_request(e, id, problem[0] ? problem : NULL, &err);
        if (rc == SAGA_OK && problem[0])
            saga_log(SAGA_LOG_WARN, "start request %s (%s) rejected: %s", id, name,
                     problem);
    }
    if (rc != SAGA_OK || (rc = saga_store_exec(e->db, "COMMIT", &err)) != SAGA_OK)
        goto fail;
    PQclear(r);
    produce(e, &sent);
    saga_outbox_clear(&sent);
    return n;
fail:
    saga_log(SAGA_LOG_ERROR, "start requests rolled back: %s", err.message);
    saga_store_exec(e->db, "ROLLBACK", NULL);
    PQclear(r);
    saga_outbox_clear(&sent);
    return 0;
}

/* Did anyone NOTIFY saga_outbox (a saga started, an operator action)? */
static int notified(saga_engine *e)
{
    PGnotify *n;
    int any = 0;
    if (PQconsumeInput(e->db) == 0)
        return 0;
    while ((n = PQnotifies(e->db)) != NULL) {
        any = 1;
        PQfreemem(n);
    }
    return any;
}

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int saga_engine_run(saga_engine *e, saga_error *err)
{
    rd_kafka_message_t **msgs = calloc((size_t)e->cfg.batch_max, sizeof *msgs);
    int64_t next_timer = 0, next_scan = 0;

    if (msgs == NULL)
        return saga_error_set(err, SAGA_ENOMEM, "out of memory");
    saga_log(SAGA_LOG_INFO, "sagad running: replies from %s", e->reply_topic);
    while (!e->stop) {
        int n = 0;
        int64_t now;
        /* Take what is there; when idle, wait up to 50 ms for the first
         * reply only (a batch call would wait for a full batch). */
        {
            rd_kafka_queue_t *cq = rd_kafka_queue_get_consumer(e->consumer);
            ssize_t k =
                rd_kafka_consume_batch_queue(cq, 0, msgs, (size_t)e->cfg.batch_max);
            if (k <= 0) {
                rd_kafka_message_t *first = rd_kafka_consumer_poll(e->consumer, 50);
                k = 0;
                if (first != NULL) {
                    msgs[0] = first;
                    k = rd_kafka_consume_batch_queue(cq, 0, msgs + 1,
                                                     (size_t)e->cfg.batch_max - 1);
                    k = k < 0 ? 1 : k + 1;
                }
            }
            rd_kafka_queue_destroy(cq);
            n = (int)k;
        }
        if (n > 0) {
            int valid = 0;
            for (int i = 0; i < n; i++) {
                if (msgs[i]->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
                    msgs[valid++] = msgs[i];
                    continue;
                }
                if (msgs[i]->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
                    saga_log(SAGA_LOG_WARN, "reply consumer: %s",
                             rd_kafka_message_errstr(msgs[i]));
                rd_kafka_message_destroy(msgs[i]);
            }
            if (valid > 0)
                process_replies(e, msgs, valid);
            for (int i = 0; i < valid; i++)
                rd_kafka_message_destroy(msgs[i]);
        }
        now = mono_ms();
        if (PQstatus(e->db) == CONNECTION_OK && notified(e))
            next_scan = 0;
        if (now >= next_timer) {
            while (process_timers(e) == TIMER_CLAIM_LIMIT && !e->stop)
                ;
            next_timer = now + e->cfg.timer_interval_ms;
        }
        if (now >= next_scan) {
            while (process_start_requests(e) == 200 && !e->stop)
                ;
            scan_outbox(e);
            next_scan = now + OUTBOX_SCAN_MS;
        }
        rd_kafka_poll(e->producer, 0);
        forget_delivered(e);
        {
            char why[256];
            if (rd_kafka_fatal_error(e->consumer, why, sizeof why) ||
                rd_kafka_fatal_error(e->producer, why, sizeof why)) {
                /* Nothing more can be consumed or sent safely: stop, and
                 * let the supervisor start a fresh process. */
                free(msgs);
                rd_kafka_flush(e->producer, 10000);
                forget_delivered(e);
                return saga_error_set(err, SAGA_EKAFKA, "fatal Kafka error: %s", why);
            }
        }
    }
    free(msgs);
    saga_log(SAGA_LOG_INFO, "stopping: waiting for %zu command(s) in flight",
             e->inflight.n);
    rd_kafka_flush(e->producer, 10000);
    forget_delivered(e);
    rd_kafka_commit(e->consumer, NULL, 0);
    return SAGA_OK;
}

void saga_engine_stop(saga_engine *e)
{
    if (e != NULL)
        e->stop = 1;
}

void saga_engine_get_stats(const saga_engine *e, saga_engine_stats *out)
{
    if (e != NULL && out != NULL)
        *out = e->stats;
}

static void kafka_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    (void)rk;
    saga_log(level <= 3 ? SAGA_LOG_WARN : SAGA_LOG_DEBUG, "kafka %s: %s", fac, buf);
}

static int setup_kafka(saga_engine *e, saga_error *err)
{
    rd_kafka_conf_t *conf;
    char errstr[512];
    int rc;

    if ((conf = saga__kafka_conf(e->cfg.brokers, "sagad", err)) == NULL)
        return SAGA_EKAFKA;
    rd_kafka_conf_set_log_cb(conf, kafka_log);
    /* Idempotent: a retried produce is written once; per-key order kept. */
    if ((rc = saga__kafka_set(conf, "enable.idempotence", "true", err)) != SAGA_OK ||
        (rc = saga__kafka_set(conf, "linger.ms", "2", err)) != SAGA_OK) {
        rd_kafka_conf_destroy(conf);
        return rc;
    }
    rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
    rd_kafka_conf_set_opaque(conf, e);
    e->producer = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
    if (e->producer == NULL) {
        rd_kafka_conf_destroy(conf);
        return saga_error_set(err, SAGA_EKAFKA, "creating the Kafka producer: %s",
                              errstr);
    }
    return SAGA_OK;
}

int saga_engine_new(const saga_engine_config *cfg, saga_definition **defs, int ndefs,
                    saga_engine **out, saga_error *err)
{
    saga_engine *e;
    const char *topics[64];
    char svc_topics[64][256];
    int ntopics = 0, rc, version = 0;

    *out = NULL;
    e = calloc(1, sizeof *e);
    if (e == NULL) {
        for (int i = 0; i < ndefs; i++)
            saga_definition_free(defs[i]);
        return saga_error_set(err, SAGA_ENOMEM, "out of memory");
    }
    e->cfg = *cfg;
    if (e->cfg.batch_max <= 0)
        e->cfg.batch_max = 500;
    if (e->cfg.timer_interval_ms <= 0)
        e->cfg.timer_interval_ms = 100;
    if (e->cfg.group_id == NULL)
        e->cfg.group_id = "sagad";
    snprintf(e->prefix, sizeof e->prefix, "%s",
             cfg->topic_prefix ? cfg->topic_prefix : "saga.");
    saga__topic_reply(e->reply_topic, sizeof e->reply_topic, e->prefix);
    e->rng = (uint64_t)saga_now_ms() * 2654435761u + (uint64_t)getpid();
    e->defs = saga_defs_new();
    if (e->defs == NULL) {
        rc = saga_error_set(err, SAGA_ENOMEM, "out of memory");
        goto fail_defs;
    }
    e->db = PQconnectdb(cfg->db_url);
    if (PQstatus(e->db) != CONNECTION_OK) {
        rc = saga_error_set(err, SAGA_EDB, "cannot connect to PostgreSQL: %s",
                            PQerrorMessage(e->db));
        goto fail_defs;
    }
    if ((rc = saga_migrate_current(e->db, &version, err)) != SAGA_OK)
        goto fail_defs;
    if (version < SAGA_SCHEMA_VERSION) {
        rc = saga_error_set(err, SAGA_ESTATE,
                            "the database schema is at version %d, sagad needs %d: run "
                            "`sagactl migrate`",
                            version, SAGA_SCHEMA_VERSION);
        goto fail_defs;
    }
    topics[ntopics++] = e->reply_topic;
    for (int i = 0; i < ndefs; i++) {
        saga_definition *d = defs[i];
        int created = 0;
        defs[i] = NULL;
        for (int s = 0; s < d->nsteps; s++) {
            int dup = 0;
            char t[256];
            saga__topic_cmd(t, sizeof t, e->prefix, d->steps[s].service);
            for (int k = 1; k < ntopics; k++)
                dup |= strcmp(topics[k], t) == 0;
            if (!dup && ntopics < 64) {
                memcpy(svc_topics[ntopics], t, sizeof t);
                topics[ntopics] = svc_topics[ntopics];
                ntopics++;
            }
        }
        {
            char name[128];
            snprintf(name, sizeof name, "%s", d->name);
            if ((rc = saga_store_register_definition(e->db, e->defs, d, &created, err)) !=
                SAGA_OK) {
                for (int k = i + 1; k < ndefs; k++)
                    saga_definition_free(defs[k]);
                goto fail;
            }
            saga_log(SAGA_LOG_INFO, "definition %s: %s", name,
                     created ? "new version stored" : "unchanged");
        }
    }
    if ((rc = saga_store_exec(e->db, "LISTEN saga_outbox", err)) != SAGA_OK)
        goto fail;
    if ((rc = setup_kafka(e, err)) != SAGA_OK)
        goto fail;
    if ((rc = saga__kafka_ensure_topics(e->producer, topics, ntopics, 4, 10000, err)) !=
        SAGA_OK)
        goto fail;
    /* Subscribe once the reply topic surely exists. */
    if ((rc = saga__kafka_consumer_new(e->cfg.brokers, "sagad", e->cfg.group_id,
                                       e->cfg.instance_id, e->reply_topic, kafka_log,
                                       &e->consumer, err)) != SAGA_OK)
        goto fail;
    *out = e;
    return SAGA_OK;
fail_defs:
    for (int i = 0; i < ndefs; i++) {
        saga_definition_free(defs[i]);
        defs[i] = NULL;
    }
fail:
    saga_engine_free(e);
    return rc;
}

void saga_engine_free(saga_engine *e)
{
    if (e == NULL)
        return;
    if (e->consumer != NULL) {
        rd_kafka_consumer_close(e->consumer);
        rd_kafka_destroy(e->consumer);
    }
    if (e->producer != NULL) {
        rd_kafka_flush(e->producer, 5000);
        rd_kafka_destroy(e->producer);
    }
    if (e->db != NULL)
        PQfinish(e->db);
    saga_defs_free(e->defs);
    free(e->inflight.slots);
    free(e->delivered);
    free(e);
}
