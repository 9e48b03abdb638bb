/* sagad's engine loop (see saga_engine.h). Order of effects per batch:
 * PostgreSQL COMMIT, then produce the commands, then commit the Kafka
 * offsets of the replies consumed. A crash between any two of these loses
 * nothing: unsent commands are still in the outbox and are re-sent at
 * start; unconfirmed replies are consumed again and ignored as duplicates. */
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "saga_batch.h"
#include "saga_engine.h"
#include "saga_engine_internal.h"
#include <librdkafka/rdkafka.h>

#include "saga_shared.h"
#include "saga_log.h"
#include "saga_machine.h"
#include "saga_migrate.h"
#include "saga_observe.h"
#include "saga_pgerr.h"
#include "saga_store.h"
#include "saga_tally.h"
#include "saga_tracing.h"

#define OUTBOX_SCAN_MS    1000
#define OUTBOX_SCAN_LIMIT 2000
#define TIMER_CLAIM_LIMIT 200
/* A message, timer or start request that fails its transaction alone this
 * many times in a row is set aside (a dead letter): nothing is retried for
 * ever, nothing waits behind it. */
#define ISOLATE_TRIES 3
/* PostgreSQL unreachable: try to reconnect after 250 ms, doubling up to
 * 5 s, and say so once, then every 30 s while it lasts. */
#define DB_RETRY_MIN_MS 250
#define DB_RETRY_MAX_MS 5000
#define DB_LOG_EVERY_MS 30000
/* A connection lost again within this of its reconnect is the same outage. */
#define DB_STABLE_MS 5000

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

/* A saga that became failed, to be logged once its transaction commits. */
typedef struct failed_note {
    char id[SAGA_ID_LEN + 1];
    char traceparent[SAGA_TRACEPARENT_LEN + 1];
    char step[128];
    int attempt;
    char reason[160];
} failed_note;

typedef struct rate_limit {
    int64_t last_ms;     /* when the last line was written (mono ms); 0: never */
    uint64_t suppressed; /* not written since */
} rate_limit;

/* A reply set aside, to be written to saga.dead_letter with the next
 * transaction that commits (and logged then). */
typedef struct dead_reply {
    const rd_kafka_message_t *m; /* borrowed from the batch being processed */
    int malformed;               /* 1: not a reply at all; 0: failed alone */
    int attempts;
    char ref[SAGA_ID_LEN + 1]; /* its saga, when it could be read */
    char reason[400];
} dead_reply;

/* A command the broker refused as too large: its step fails with
 * message_too_large instead of the command being resent for ever. */
typedef struct refused_cmd {
    int64_t outbox_id;
    char saga_id[SAGA_ID_LEN + 1];
    int step, attempt;
    saga_phase phase;
    size_t bytes;
    char topic[256];
    char why[128];
} refused_cmd;

#define BREAKERS_SEEN 256   /* the gate tracks at most this many services */
#define WARN_EVERY_MS 10000 /* a repeating warning: one line per 10 s */
/* Finished sagas are counted every this many observe intervals (a minute
 * by default): that count grows with the history (saga_observe.h). */
#define FINISHED_EVERY 12

struct saga_engine {
    saga_engine_config cfg;
    char prefix[128];
    char reply_topic[256];
    PGconn *db;
    char *db_url;
    rd_kafka_t *producer;
    rd_kafka_t *consumer;
    saga_defs *defs;
    saga_batch *batch;
    char owner[128];
    int reclaimed; /* outbox rows held under our name before a restart re-taken */
    int wake[2];   /* librdkafka writes here when a queue gets something */
    idset inflight;
    int64_t *delivered; /* confirmed ids waiting to be deleted from the outbox */
    int ndelivered, capdelivered;
    volatile sig_atomic_t stop;
    saga_engine_stats stats;
    uint64_t rng;
    saga_gate *gate;
    saga_metrics *metrics;
    saga_std_metrics m;
    saga_health health;
    int health_ready; /* saga_health_init done */
    saga_tally tally; /* metric updates of the open transaction */
    int batch_events; /* events applied in the open transaction */
    /* Sagas that became failed in the open transaction: one warn line each
     * once it commits (a rollback forgets them; they fail again). */
    failed_note *failed;
    int nfailed, capfailed;
    /* What the breakers were at the last look, by the gate's service order
     * (saga_gate_foreach), to log when one opens or closes. */
    struct {
        int open;
        uint64_t opened;
    } breakers[BREAKERS_SEEN];
    /* Warnings that could come once per message: at most one line per
     * WARN_EVERY_MS each, saying how many were not written. */
    rate_limit unknown_saga, malformed, set_aside;
    /* A batch rolled back for the database's own reasons, per source. */
    rate_limit rolled_replies, rolled_timers, rolled_starts;
    rate_limit big_outputs;   /* replies whose output was over the limit */
    int64_t replies_after_ms; /* consume no replies before (mono ms) */
    int64_t next_finished_ms; /* when to count finished sagas again (mono ms) */
    /* Figures of the open transaction: added to stats when it commits,
     * dropped when it rolls back (a batch consumed again is not counted
     * twice). */
    saga_engine_stats pend;
    /* Replies set aside in this batch (dead_reply), not yet written. */
    dead_reply *dead;
    int ndead, capdead;
    /* Commands the broker refused as too large, to fail their steps. */
    refused_cmd *refused;
    int nrefused, caprefused;
    int unsent; /* applying a refused command's failure: not the service's answer */
    /* saga__engine_feed_replies: messages that came from no consumer (no
     * offsets to store, nothing to rewind); a handle for their topic. */
    int feeding;
    rd_kafka_topic_t *feed_rkt;
    int64_t max_output_bytes; /* saga.limits: a larger output fails its step */
    int limits_read;
    int64_t max_message_bytes; /* the producer's message.max.bytes */
    /* The database connection while it is lost (mono ms; 0: not lost). */
    int64_t db_lost_ms, db_next_try_ms, db_backoff_ms, db_logged_ms;
    int db_tries;
    int db_ready; /* connected with LISTEN and the statements prepared */
    int64_t db_up_ms, db_outage_ms; /* the last reconnect, and when that outage began */
};

/* Write a warning that could repeat once per message at most once per
 * WARN_EVERY_MS, with how many like it were not written since the last
 * one (they are counted in the metrics all the same). */
static void warn_limited(rate_limit *rl, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

static void warn_limited(rate_limit *rl, const char *fmt, ...)
{
    int64_t now = saga__mono_ms();
    char msg[512];
    va_list ap;
    if (rl->last_ms != 0 && now - rl->last_ms < WARN_EVERY_MS) {
        rl->suppressed++;
        return;
    }
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (rl->suppressed > 0)
        saga_log(SAGA_LOG_WARN, "%s (and %llu more like it in the last %lld s)", msg,
                 (unsigned long long)rl->suppressed,
                 (long long)((now - rl->last_ms) / 1000));
    else
        saga_log(SAGA_LOG_WARN, "%s", msg);
    rl->last_ms = now;
    rl->suppressed = 0;
}

/* The count of warnings not written, once the interval is over, so that a
 * burst's tail is not left unsaid until the next one. */
static void warn_flush(rate_limit *rl, const char *what)
{
    int64_t now = saga__mono_ms();
    if (rl->suppressed == 0 || now - rl->last_ms < WARN_EVERY_MS)
        return;
    saga_log(SAGA_LOG_WARN, "%llu more %s in the last %lld s",
             (unsigned long long)rl->suppressed, what,
             (long long)((now - rl->last_ms) / 1000));
    rl->last_ms = now;
    rl->suppressed = 0;
}

static double next_random(saga_engine *e)
{
    /* xorshift64*: jitter only needs to spread retries, not be secret. */
    e->rng ^= e->rng >> 12;
    e->rng ^= e->rng << 25;
    e->rng ^= e->rng >> 27;
    return (double)((e->rng * 0x2545F4914F6CDD1Dull) >> 11) / 9007199254740992.0;
}

static int too_large(rd_kafka_resp_err_t err)
{
    return err == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE ||
           err == RD_KAFKA_RESP_ERR_RECORD_LIST_TOO_LARGE ||
           err == RD_KAFKA_RESP_ERR_INVALID_MSG_SIZE;
}

/* The broker (or librdkafka, against message.max.bytes) refused outbox
 * row id as too large: resending cannot help. The row stays in the
 * in-flight set (no scan sends it again) until fail_refused() has failed
 * its step and deleted it. Returns 0, or -1 when it could not be noted
 * (then the row is resent, and refused again). */
static int note_refused(saga_engine *e, int64_t id, const char *topic,
                        const void *payload, size_t len, rd_kafka_resp_err_t why)
{
    json_t *cmd = json_loadb(payload, len, 0, NULL);
    const char *sid = json_string_value(json_object_get(cmd, "saga_id"));
    const char *phase = json_string_value(json_object_get(cmd, "phase"));
    refused_cmd *r;
    if (sid == NULL || phase == NULL || strlen(sid) != SAGA_ID_LEN) {
        json_decref(cmd);
        return -1;
    }
    if (e->nrefused == e->caprefused) {
        int cap = e->caprefused ? e->caprefused * 2 : 16;
        refused_cmd *n = realloc(e->refused, sizeof *n * (size_t)cap);
        if (n == NULL) {
            json_decref(cmd);
            return -1;
        }
        e->refused = n;
        e->caprefused = cap;
    }
    r = &e->refused[e->nrefused++];
    memset(r, 0, sizeof *r);
    r->outbox_id = id;
    memcpy(r->saga_id, sid, SAGA_ID_LEN + 1);
    r->step = (int)json_integer_value(json_object_get(cmd, "step"));
    r->attempt = (int)json_integer_value(json_object_get(cmd, "attempt"));
    r->phase =
        strcmp(phase, "compensate") == 0 ? SAGA_PHASE_COMPENSATE : SAGA_PHASE_INVOKE;
    r->bytes = len;
    snprintf(r->topic, sizeof r->topic, "%s", topic);
    snprintf(r->why, sizeof r->why, "%s", rd_kafka_err2str(why));
    json_decref(cmd);
    return 0;
}

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    saga_engine *e = opaque;
    int64_t id = (int64_t)(intptr_t)m->_private;
    (void)rk;
    if (too_large(m->err) &&
        note_refused(e, id, rd_kafka_topic_name(m->rkt), m->payload, m->len, m->err) == 0)
        return;
    if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        /* Left in the outbox: the next scan sends it again. */
        e->stats.send_failures++;
        saga_metric_add(e->m.produce_errors, NULL, 1);
        idset_del(&e->inflight, id);
        saga_log(SAGA_LOG_WARN,
                 "command (outbox %lld) to %s not delivered: %s; will resend",
                 (long long)id, rd_kafka_topic_name(m->rkt), rd_kafka_err2str(m->err));
        return;
    }
    e->stats.commands_sent++;
    {
        /* The service is the topic's tail: <prefix>cmd.<service>. */
        const char *t = rd_kafka_topic_name(m->rkt), *svc[1] = {t};
        size_t pl = strlen(e->prefix);
        if (strncmp(t, e->prefix, pl) == 0 && strncmp(t + pl, "cmd.", 4) == 0)
            svc[0] = t + pl + 4;
        saga_metric_add(e->m.commands_sent, svc, 1);
    }
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
        if (m->traceparent[0] != '\0') {
            /* The attempt's span in the saga's trace (saga_tracing.h). */
            err = rd_kafka_producev(e->producer, RD_KAFKA_V_TOPIC(m->topic),
                                    RD_KAFKA_V_KEY(m->key, strlen(m->key)),
                                    RD_KAFKA_V_VALUE(m->payload, strlen(m->payload)),
                                    RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                    RD_KAFKA_V_HEADER("traceparent", m->traceparent, -1),
                                    RD_KAFKA_V_OPAQUE((void *)(intptr_t)m->id),
                                    RD_KAFKA_V_END);
        } else {
            err = rd_kafka_producev(e->producer, RD_KAFKA_V_TOPIC(m->topic),
                                    RD_KAFKA_V_KEY(m->key, strlen(m->key)),
                                    RD_KAFKA_V_VALUE(m->payload, strlen(m->payload)),
                                    RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                    RD_KAFKA_V_OPAQUE((void *)(intptr_t)m->id),
                                    RD_KAFKA_V_END);
        }
        if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
            rd_kafka_poll(e->producer, 100);
            i--;
            continue;
        }
        if (too_large(err) &&
            note_refused(e, m->id, m->topic, m->payload, strlen(m->payload), err) == 0) {
            idset_add(&e->inflight, m->id);
            continue;
        }
        if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
            e->stats.send_failures++;
            saga_metric_add(e->m.produce_errors, NULL, 1);
            saga_log(SAGA_LOG_WARN, "producing to %s: %s; will resend", m->topic,
                     rd_kafka_err2str(err));
            continue;
        }
        idset_add(&e->inflight, m->id);
    }
}

/* saga.limits as the database has them now (`sagactl limits set` takes
 * effect here without a restart); on failure the last value stays. */
static void read_limits(saga_engine *e)
{
    saga_error err = {0};
    int64_t v;
    if (saga_store_limit(e->db, "max_output_bytes", &v, &err) != SAGA_OK) {
        saga_log(SAGA_LOG_WARN, "%s; max_output_bytes stays %lld", err.message,
                 (long long)e->max_output_bytes);
        return;
    }
    if (v != e->max_output_bytes && e->limits_read)
        saga_log(SAGA_LOG_INFO, "saga.limits max_output_bytes is now %lld (was %lld)",
                 (long long)v, (long long)e->max_output_bytes);
    e->max_output_bytes = v;
    e->limits_read = 1;
}

/* Is the database there? A lost connection is re-made at most once per
 * back-off (250 ms doubling to 5 s), whoever asks and however often, and
 * the outage is logged once when it starts, every 30 s while it lasts and
 * once when it ends: a restart of PostgreSQL costs a few lines, not one
 * per caller per loop. */
static int ensure_db(saga_engine *e)
{
    int64_t now;
    if (PQstatus(e->db) == CONNECTION_OK && e->db_ready)
        return 0;
    now = saga__mono_ms();
    if (e->db_lost_ms == 0 && e->db_up_ms != 0 && now - e->db_up_ms < DB_STABLE_MS) {
        /* Lost again right after coming back (a server shutting down
         * still accepts a connection now and then): the same outage, its
         * back-off and its log lines go on. */
        e->db_lost_ms = e->db_outage_ms;
    } else if (e->db_lost_ms == 0) {
        e->db_lost_ms = now;
        e->db_next_try_ms = now;
        e->db_backoff_ms = DB_RETRY_MIN_MS;
        e->db_tries = 0;
        e->db_logged_ms = 0;
    }
    if (now < e->db_next_try_ms)
        return -1;
    e->db_tries++;
    if (PQstatus(e->db) != CONNECTION_OK) {
        e->db_ready = 0;
        PQreset(e->db);
    }
    if (PQstatus(e->db) != CONNECTION_OK) {
        char msg[256];
        /* libpq's message ends in a newline and may run to several lines. */
        snprintf(msg, sizeof msg, "%s", PQerrorMessage(e->db));
        msg[strcspn(msg, "\n")] = '\0';
        now = saga__mono_ms();
        if (e->db_logged_ms == 0 || now - e->db_logged_ms >= DB_LOG_EVERY_MS) {
            if (e->db_logged_ms == 0)
                saga_log(SAGA_LOG_ERROR,
                         "PostgreSQL unreachable: %s; trying again every %d-%d ms", msg,
                         DB_RETRY_MIN_MS, DB_RETRY_MAX_MS);
            else
                saga_log(SAGA_LOG_ERROR,
                         "PostgreSQL still unreachable after %lld s (%d tries): %s",
                         (long long)((now - e->db_lost_ms) / 1000), e->db_tries, msg);
            e->db_logged_ms = now;
        }
        saga_health_set_db(&e->health, 0, msg);
        e->db_next_try_ms = now + e->db_backoff_ms;
        e->db_backoff_ms = e->db_backoff_ms * 2 > DB_RETRY_MAX_MS ? DB_RETRY_MAX_MS
                                                                  : e->db_backoff_ms * 2;
        return -1;
    }
    {
        saga_error err = {0};
        if (saga_store_exec(e->db, "LISTEN saga_outbox", &err) != SAGA_OK ||
            saga_batch_prepare(e->db, &err) != SAGA_OK) {
            /* Connected but not usable yet (e.g. the server is still
             * starting): the same back-off, tried again later. */
            now = saga__mono_ms();
            if (e->db_logged_ms == 0 || now - e->db_logged_ms >= DB_LOG_EVERY_MS) {
                saga_log(SAGA_LOG_ERROR, "PostgreSQL reconnected but not usable: %s",
                         err.message);
                e->db_logged_ms = now;
            }
            e->db_next_try_ms = now + e->db_backoff_ms;
            e->db_backoff_ms = e->db_backoff_ms * 2 > DB_RETRY_MAX_MS
                                   ? DB_RETRY_MAX_MS
                                   : e->db_backoff_ms * 2;
            return -1;
        }
    }
    e->db_ready = 1;
    read_limits(e);
    saga_health_set_db(&e->health, 1, NULL);
    if (e->db_up_ms == 0 || now - e->db_up_ms >= DB_STABLE_MS)
        saga_log(SAGA_LOG_INFO, "reconnected to PostgreSQL after %lld ms (%d tries)",
                 (long long)(saga__mono_ms() - e->db_lost_ms), e->db_tries);
    e->db_outage_ms = e->db_lost_ms;
    e->db_up_ms = saga__mono_ms();
    e->db_lost_ms = 0;
    return 0;
}

/* The log fields of a saga's line: its id and, when it has one, its
 * trace id (the saga's own span). */
typedef struct saga_fields {
    saga_log_ctx ctx;
    char trace_id[SAGA_TRACE_ID_HEX_SIZE], span_id[SAGA_SPAN_ID_HEX_SIZE];
} saga_fields;

/* One warn line per saga that became failed in the transaction just
 * committed: it is stuck until an operator acts. */
static void log_failed(saga_engine *e)
{
    for (int i = 0; i < e->nfailed; i++) {
        const failed_note *f = &e->failed[i];
        saga_fields sf;
        memset(&sf, 0, sizeof sf);
        sf.ctx.saga_id = f->id;
        sf.ctx.step = f->step[0] ? f->step : NULL;
        sf.ctx.attempt = f->attempt;
        saga_tracing_ids(f->traceparent, sf.trace_id, sf.span_id);
        sf.ctx.trace_id = sf.trace_id[0] ? sf.trace_id : NULL;
        saga_log_fields(SAGA_LOG_WARN, &sf.ctx,
                        "saga %s failed at step %s: %s; an operator must act (sagactl "
                        "stuck)",
                        f->id, f->step[0] ? f->step : "?", f->reason);
    }
    e->nfailed = 0;
}

typedef struct breaker_look {
    saga_engine *e;
    int index;
} breaker_look;

static void look_at_breaker(const char *service, const saga_gate_info *info, void *arg)
{
    breaker_look *b = arg;
    int i = b->index++;
    int open = info->breaker.state != SAGA_BREAKER_CLOSED;
    if (i >= BREAKERS_SEEN)
        return;
    if (info->breaker.opened_total > b->e->breakers[i].opened)
        saga_log(SAGA_LOG_WARN,
                 "circuit breaker of service %s opened (%s): its commands wait %lld ms, "
                 "then one probe goes",
                 service,
                 b->e->breakers[i].open ? "its probe failed"
                                        : "transient failures in a row",
                 (long long)info->breaker.cooldown_ms);
    else if (!open && b->e->breakers[i].open)
        saga_log(SAGA_LOG_INFO,
                 "circuit breaker of service %s closed: its probe was answered, its "
                 "commands go out again",
                 service);
    b->e->breakers[i].open = open;
    b->e->breakers[i].opened = info->breaker.opened_total;
}

/* A line when a breaker opens (or re-opens after a failed probe) and when
 * it closes: once per cool-down at most, never per command. */
static void log_breakers(saga_engine *e, int64_t now)
{
    breaker_look b = {e, 0};
    saga_gate_foreach(e->gate, now, look_at_breaker, &b);
}

/* Note that s became failed (a saga_failed history action a), for
 * log_failed() after the commit. Out of memory drops the line. */
static void note_failed(saga_engine *e, const saga_state *s, const saga_action *a)
{
    failed_note *f;
    const char *reason = json_string_value(json_object_get(a->detail, "reason"));
    if (e->nfailed == e->capfailed) {
        int cap = e->capfailed ? e->capfailed * 2 : 16;
        failed_note *n = realloc(e->failed, sizeof *n * (size_t)cap);
        if (n == NULL)
            return;
        e->failed = n;
        e->capfailed = cap;
    }
    f = &e->failed[e->nfailed++];
    memset(f, 0, sizeof *f);
    snprintf(f->id, sizeof f->id, "%s", s->id);
    snprintf(f->traceparent, sizeof f->traceparent, "%s", s->traceparent);
    if (a->step >= 0 && a->step < s->nsteps && s->def->steps[a->step].name != NULL)
        snprintf(f->step, sizeof f->step, "%s", s->def->steps[a->step].name);
    f->attempt = a->attempt;
    snprintf(f->reason, sizeof f->reason, "%s", reason ? reason : "stuck");
}

/* Undo the open transaction and forget what the batch recorded, the
 * gate's admissions and the metric updates. */
static void rollback(saga_engine *e)
{
    saga_batch_reset(e->batch);
    saga_store_exec(e->db, "ROLLBACK", NULL);
    saga_gate_abort(e->gate, saga_now_ms());
    saga_tally_reset(&e->tally);
    memset(&e->pend, 0, sizeof e->pend);
    e->batch_events = 0;
    e->nfailed = 0;
}

/* Write the batch and COMMIT; on success the gate's admissions and the
 * metric updates count. The caller rolls back on failure. */
static int commit_batch(saga_engine *e, saga_outbox *sent, saga_error *err)
{
    int64_t t0 = saga__mono_ns();
    int rc = saga_batch_commit(e->db, e->batch, sent, err);
    if (rc != SAGA_OK)
        return rc;
    saga_metric_observe(e->m.pg_commit, NULL, (double)(saga__mono_ns() - t0) / 1e9);
    saga_metric_observe(e->m.batch_size, NULL, e->batch_events);
    e->batch_events = 0;
    saga_gate_commit(e->gate, saga_now_ms());
    saga_tally_commit(&e->tally);
    e->stats.replies_applied += e->pend.replies_applied;
    e->stats.replies_ignored += e->pend.replies_ignored;
    e->stats.replies_rejected += e->pend.replies_rejected;
    e->stats.malformed += e->pend.malformed;
    e->stats.timers_fired += e->pend.timers_fired;
    e->stats.dead_letters += e->pend.dead_letters;
    e->stats.commands_refused += e->pend.commands_refused;
    memset(&e->pend, 0, sizeof e->pend);
    e->stats.transactions++;
    log_failed(e);
    log_breakers(e, saga_now_ms());
    return SAGA_OK;
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

/* Send what the outbox holds that nobody else is sending, page by page
 * (a cursor on the id, so rows still waiting for Kafka's confirmation are
 * not claimed again and again). */
static void scan_outbox(saga_engine *e)
{
    int64_t after = 0;
    int total = 0;
    if (ensure_db(e) != 0)
        return;
    while (!e->stop) {
        saga_outbox o = {0};
        saga_error err = {0};
        int n;
        if (saga_store_outbox_claim(e->db, e->owner, e->cfg.outbox_lease_s, !e->reclaimed,
                                    after, OUTBOX_SCAN_LIMIT, &o, &err) != SAGA_OK) {
            saga_log(SAGA_LOG_WARN, "%s", err.message);
            saga_outbox_clear(&o);
            return;
        }
        produce(e, &o);
        n = o.n;
        for (int i = 0; i < o.n; i++)
            if (o.items[i].id > after)
                after = o.items[i].id;
        saga_outbox_clear(&o);
        total += n;
        rd_kafka_poll(e->producer, 0);
        if (n < OUTBOX_SCAN_LIMIT)
            break;
    }
    if (!e->reclaimed && total > 0)
        saga_log(SAGA_LOG_INFO, "%d command(s) committed but not confirmed sent: sent",
                 total);
    e->reclaimed = 1;
}

/* Count and log an event the machine did not apply. */
/* Log fields for a line about s (and a step attempt of it, step >= 0):
 * the saga, the step's name, the attempt, the trace and the span. */
typedef struct log_fields {
    saga_log_ctx ctx;
    char trace_id[SAGA_TRACE_ID_HEX_SIZE], span_id[SAGA_SPAN_ID_HEX_SIZE];
} log_fields;

static const saga_log_ctx *fields_of(log_fields *f, const saga_state *s, int step,
                                     saga_phase phase, int attempt)
{
    char tp[SAGA_TRACEPARENT_LEN + 1] = "";
    memset(f, 0, sizeof *f);
    f->ctx.saga_id = s->id;
    if (step >= 0 && step < s->nsteps) {
        f->ctx.step = s->def->steps[step].name;
        f->ctx.attempt = attempt;
        if (attempt > 0)
            saga_tracing_step(s->traceparent, step, phase, attempt, tp, sizeof tp);
    }
    saga_tracing_ids(tp[0] ? tp : s->traceparent, f->trace_id, f->span_id);
    f->ctx.trace_id = f->trace_id[0] ? f->trace_id : NULL;
    f->ctx.span_id = f->span_id[0] ? f->span_id : NULL;
    return &f->ctx;
}

static void not_applied(saga_engine *e, const saga_state *s, const saga_event *ev, int rc,
                        const char *reason)
{
    log_fields lf;
    if (ev->kind != SAGA_EV_REPLY)
        return;
    if (rc == SAGA_IGNORED)
        e->pend.replies_ignored++;
    else
        e->pend.replies_rejected++;
    saga_tally_note(&e->tally, e->m.replies_dropped, 0, 1,
                    rc == SAGA_IGNORED ? "duplicate" : "rejected", NULL, NULL);
    if (!saga_log_enabled(SAGA_LOG_DEBUG))
        return;
    /* Debug, not info: duplicates are routine under redelivery, and a line
     * per message would flood the log under load; they are counted. */
    saga_log_fields(
        SAGA_LOG_DEBUG,
        fields_of(&lf, s, ev->reply->step, ev->reply->phase, ev->reply->attempt),
        "saga %s: reply for step %d %s attempt %d %s: %s", s->id, ev->reply->step,
        saga_phase_name(ev->reply->phase), ev->reply->attempt,
        rc == SAGA_IGNORED ? "ignored (duplicate or stale)" : "rejected", reason);
}

/* The n-th SEND action of acts, or -1. */
static int nth_send(const saga_actions *acts, int n)
{
    for (int i = 0; i < acts->n; i++)
        if (acts->items[i].kind == SAGA_ACT_SEND && n-- == 0)
            return i;
    return -1;
}

static const char *action_of(const saga_step_def *sd, saga_phase phase)
{
    return phase == SAGA_PHASE_COMPENSATE ? sd->compensation : sd->action;
}

/* Pass every command the transition of s wants to send through the gate
 * (held ones become waits: saga_machine_hold) and note what the
 * transition did for the metrics: commands dispatched and retried,
 * attempts timed out (also settled with the gate), sagas finished. */
static int gate_and_count(saga_engine *e, saga_state *s, saga_actions *acts, int64_t now,
                          saga_error *err)
{
    int kept = 0, i;
    while ((i = nth_send(acts, kept)) >= 0) {
        const saga_action *a = &acts->items[i];
        const saga_step_def *sd = &s->def->steps[a->step];
        const char *phase = saga_phase_name(a->phase), *action = action_of(sd, a->phase);
        char cid[128];
        int64_t until = 0;
        saga_gate_verdict v;
        saga_command_id_format(cid, sizeof cid, s->id, a->step, a->phase);
        v = saga_gate_admit(e->gate, sd->service, cid, a->deadline, now, next_random(e),
                            &until);
        if (v == SAGA_GATE_SEND) {
            saga_tally_note(&e->tally, e->m.steps_dispatched, 0, 1, sd->service, action,
                            phase);
            if (a->attempt > 1)
                saga_tally_note(&e->tally, e->m.steps_retried, 0, 1, sd->service, action,
                                phase);
            kept++;
            continue;
        }
        {
            int breaker = v == SAGA_GATE_HOLD_BREAKER;
            const char *why = NULL;
            json_t *detail = NULL;
            int rc;
            saga_tally_note(&e->tally, e->m.commands_held, 0, 1, sd->service,
                            breaker ? "breaker" : "bulkhead", NULL);
            if (!breaker)
                saga_gate_note_held(e->gate, sd->service, s->id, until);
            if (breaker) {
                /* Once per cool-down per saga: worth a history line. Bulkhead
                 * holds repeat every second and are only counted. */
                why =
                    a->phase == SAGA_PHASE_COMPENSATE ? "compensation_held" : "step_held";
                detail = json_pack("{s:s}", "reason", "circuit breaker open");
            }
            rc = saga_machine_hold(s, acts, i, until, why, detail);
            if (rc == SAGA_ENOMEM)
                return saga_error_set(err, rc, "out of memory holding a command");
            if (rc != SAGA_OK)
                return saga_error_set(err, rc, "saga %s: cannot hold step %d", s->id,
                                      a->step);
        }
    }
    for (i = 0; i < acts->n; i++) {
        const saga_action *a = &acts->items[i];
        if (a->kind != SAGA_ACT_HISTORY)
            continue;
        if (strcmp(a->what, "attempt_timed_out") == 0 && a->step >= 0) {
            const saga_step_def *sd = &s->def->steps[a->step];
            char cid[128];
            saga_command_id_format(cid, sizeof cid, s->id, a->step, a->phase);
            saga_gate_settle(e->gate, sd->service, cid, SAGA_GATE_TIMEOUT, now);
            saga_tally_note(&e->tally, e->m.step_timeouts, 0, 1, sd->service,
                            action_of(sd, a->phase), saga_phase_name(a->phase));
        } else if (strcmp(a->what, "saga_completed") == 0) {
            saga_tally_note(&e->tally, e->m.sagas_finished, 0, 1, s->def->name,
                            "completed", NULL);
            /* Between two counts of the finished sagas (every
             * FINISHED_EVERY observe intervals) the gauge moves with what
             * this instance finished. */
            saga_tally_note(&e->tally, e->m.sagas_by_status, 0, 1, "completed", NULL,
                            NULL);
        } else if (strcmp(a->what, "saga_compensated") == 0) {
            saga_tally_note(&e->tally, e->m.sagas_finished, 0, 1, s->def->name,
                            "compensated", NULL);
            saga_tally_note(&e->tally, e->m.sagas_by_status, 0, 1, "compensated", NULL,
                            NULL);
        } else if (strcmp(a->what, "saga_failed") == 0) {
            saga_tally_note(&e->tally, e->m.sagas_finished, 0, 1, s->def->name, "failed",
                            NULL);
            note_failed(e, s, a);
        }
    }
    return SAGA_OK;
}

/* A reply was applied: it settles its command with the gate (the breaker
 * learns whether the service works; the bulkhead slot is freed) and
 * counts. latency < 0: not known. */
static void settle_reply(saga_engine *e, const saga_state *s, const saga_reply *r,
                         double latency, int64_t now)
{
    const saga_step_def *sd;
    static const char *const statuses[] = {"ok", "failed", "retry"};
    if (r->step < 0 || r->step >= s->nsteps)
        return;
    sd = &s->def->steps[r->step];
    if (e->unsent) {
        /* The broker refused the command: the service never saw it. */
        saga_gate_settle(e->gate, sd->service, r->command_id, SAGA_GATE_UNSENT, now);
        return;
    }
    saga_gate_settle(e->gate, sd->service, r->command_id,
                     r->status == SAGA_REPLY_RETRY ? SAGA_GATE_RETRY : SAGA_GATE_ANSWERED,
                     now);
    if ((int)r->status >= 0 && (int)r->status < 3)
        saga_tally_note(&e->tally, e->m.replies, 0, 1, sd->service, statuses[r->status],
                        NULL);
    if (latency >= 0)
        saga_tally_note(&e->tally, e->m.step_latency, 1, latency, sd->service,
                        action_of(sd, r->phase), saga_phase_name(r->phase));
}

/* Apply ev to s (loaded in the open transaction) and record the change in
 * the batch. */
static int apply_one(saga_engine *e, saga_state *s, saga_event *ev, saga_error *err)
{
    saga_actions acts = {0};
    const char *reason = NULL;
    double latency = -1;
    int rc;

    if (ev->kind == SAGA_EV_REPLY && ev->reply->step >= 0 &&
        ev->reply->step < s->nsteps) {
        /* Before the machine moves on: when was the answered attempt sent? */
        const saga_step_state *st = &s->steps[ev->reply->step];
        if (st->awaiting && st->attempts == ev->reply->attempt)
            latency = (double)(ev->now -
                               (st->due_at - s->def->steps[ev->reply->step].timeout_ms)) /
                      1000.0;
    }
    rc = saga_machine_apply(s, ev, &acts, &reason);
    if (rc == SAGA_APPLIED) {
        if (ev->kind == SAGA_EV_REPLY)
            settle_reply(e, s, ev->reply, latency, ev->now);
        rc = gate_and_count(e, s, &acts, ev->now, err);
        if (rc == SAGA_OK)
            rc = saga_batch_add(e->batch, s, &acts, 0, err);
        e->batch_events++;
        if (ev->kind == SAGA_EV_REPLY && e->unsent)
            e->pend.commands_refused++;
        else if (ev->kind == SAGA_EV_REPLY)
            e->pend.replies_applied++;
        else
            e->pend.timers_fired++;
        if (saga_log_enabled(SAGA_LOG_DEBUG)) {
            log_fields lf;
            int c = s->cursor >= 0 && s->cursor < s->nsteps ? s->cursor : -1;
            saga_log_fields(
                SAGA_LOG_DEBUG,
                fields_of(&lf, s, c,
                          s->status == SAGA_ST_COMPENSATING ? SAGA_PHASE_COMPENSATE
                                                            : SAGA_PHASE_INVOKE,
                          c >= 0 ? s->steps[c].attempts : 0),
                "saga %s: %s (step %d)", s->id, saga_status_name(s->status), s->cursor);
        }
    } else if (rc == SAGA_ENOMEM) {
        rc = saga_error_set(err, SAGA_ENOMEM, "out of memory applying an event");
    } else {
        not_applied(e, s, ev, rc, reason);
        rc = SAGA_OK;
    }
    saga_actions_clear(&acts);
    return rc;
}

/* The replies of a rolled-back batch are consumed again. */
static void rewind_consumer(saga_engine *e)
{
    saga__kafka_rewind(e->consumer);
}

static int cmp_id(const void *a, const void *b)
{
    return strcmp((const char *)a, (const char *)b);
}

/* Sort ids and drop repeats; returns the new count. */
static int sort_unique(char (*ids)[SAGA_ID_LEN + 1], int n)
{
    int k = 0;
    qsort(ids, (size_t)n, sizeof *ids, cmp_id);
    for (int i = 0; i < n; i++)
        if (k == 0 || strcmp(ids[k - 1], ids[i]) != 0)
            memmove(ids[k++], ids[i], sizeof *ids);
    return k;
}

static int find_id(char (*ids)[SAGA_ID_LEN + 1], int n, const char *id)
{
    char(*hit)[SAGA_ID_LEN + 1] = bsearch(id, ids, (size_t)n, sizeof *ids, cmp_id);
    return hit ? (int)(hit - ids) : -1;
}

/* One transaction for a batch of replies: load every saga they touch with
 * two statements, apply the replies in the order they came, write it all
 * with one pipeline that ends in COMMIT. */
/* After the commit that set them aside (see saga_batch_load): one line. */
static void log_set_aside(char (*ids)[SAGA_ID_LEN + 1], const unsigned char *aside, int n,
                          const char *what)
{
    int count = 0, first = -1;
    for (int i = 0; i < n; i++)
        if (aside[i] && count++ == 0)
            first = i;
    if (count > 0)
        saga_log(SAGA_LOG_ERROR,
                 "%d saga(s) set aside, %s: definition unavailable (saga %s%s; see "
                 "their history)",
                 count, what, ids[first], count > 1 ? " and others" : "");
}

/* Set the reply msg aside: it is written to saga.dead_letter with the
 * next transaction that commits (add_dead_replies), and logged then. */
static void queue_dead(saga_engine *e, const rd_kafka_message_t *m, int malformed,
                       int attempts, const char *ref, const char *reason)
{
    dead_reply *d;
    if (e->ndead == e->capdead) {
        int cap = e->capdead ? e->capdead * 2 : 16;
        dead_reply *n = realloc(e->dead, sizeof *n * (size_t)cap);
        if (n == NULL) {
            /* Skipped without a row; still counted and logged. */
            saga_log(SAGA_LOG_ERROR,
                     "reply at %s[%d]@%lld skipped (out of memory for its dead letter): "
                     "%s",
                     rd_kafka_topic_name(m->rkt), (int)m->partition, (long long)m->offset,
                     reason);
            return;
        }
        e->dead = n;
        e->capdead = cap;
    }
    d = &e->dead[e->ndead++];
    d->m = m;
    d->malformed = malformed;
    d->attempts = attempts;
    snprintf(d->ref, sizeof d->ref, "%s", ref ? ref : "");
    snprintf(d->reason, sizeof d->reason, "%s", reason);
}

/* Record the replies set aside (dead[from..to)) in the open transaction,
 * with their counts. */
static int add_dead_replies(saga_engine *e, int from, int to, saga_error *err)
{
    for (int i = from; i < to; i++) {
        const dead_reply *d = &e->dead[i];
        saga_dead_letter dl = {
            .source = "reply",
            .topic = rd_kafka_topic_name(d->m->rkt),
            .partition = (int)d->m->partition,
            .offset = d->m->offset,
            .key = d->m->key,
            .key_len = d->m->key_len,
            .ref = d->ref[0] ? d->ref : NULL,
            .payload = d->m->payload,
            .payload_len = d->m->len,
            .reason = d->reason,
            .attempts = d->attempts,
        };
        int rc = saga_batch_add_dead_letter(e->batch, &dl, err);
        if (rc != SAGA_OK)
            return rc;
        if (d->malformed)
            e->pend.malformed++;
        else
            e->pend.replies_rejected++;
        e->pend.dead_letters++;
        saga_tally_note(&e->tally, e->m.replies_dropped, 0, 1,
                        d->malformed ? "malformed" : "set_aside", NULL, NULL);
        saga_tally_note(&e->tally, e->m.dead_letters, 0, 1, "reply", NULL, NULL);
    }
    return SAGA_OK;
}

/* After the commit that wrote them: one line per reply set aside (a burst
 * of malformed ones: one line per 10 s, with how many more). */
static void log_dead_replies(saga_engine *e, int from, int to)
{
    for (int i = from; i < to; i++) {
        const dead_reply *d = &e->dead[i];
        const char *topic = rd_kafka_topic_name(d->m->rkt);
        if (d->malformed)
            warn_limited(&e->malformed,
                         "malformed reply at %s[%d]@%lld set aside (sagactl dead list): "
                         "%s",
                         topic, (int)d->m->partition, (long long)d->m->offset, d->reason);
        else /* rare: a line each, always */
            saga_log(SAGA_LOG_WARN,
                     "reply at %s[%d]@%lld for saga %s set aside after %d failed "
                     "transactions (sagactl dead list): %s",
                     topic, (int)d->m->partition, (long long)d->m->offset,
                     d->ref[0] ? d->ref : "?", d->attempts, d->reason);
    }
}

/* One transaction: load the sagas of replies[idx[0..n)], apply the
 * replies in order, write it all (with the dead letters dead[from..to))
 * and COMMIT, then send the commands. On failure it is rolled back and
 * err says why. */
static int apply_replies(saga_engine *e, saga_reply *replies, const int *idx, int n,
                         int dead_from, int dead_to, saga_error *err)
{
    char(*ids)[SAGA_ID_LEN + 1] = malloc(sizeof *ids * (size_t)(n > 0 ? n : 1));
    saga_state **states = calloc((size_t)(n > 0 ? n : 1), sizeof *states);
    unsigned char *aside = calloc((size_t)(n > 0 ? n : 1), 1);
    saga_outbox sent = {0};
    int nids = 0, rc = SAGA_OK;

    if (ids == NULL || states == NULL || aside == NULL) {
        rc = saga_error_set(err, SAGA_ENOMEM, "out of memory");
        goto out;
    }
    for (int k = 0; k < n; k++)
        memcpy(ids[nids++], replies[idx[k]].saga_id, SAGA_ID_LEN + 1);
    nids = n > 0 ? sort_unique(ids, nids) : 0;
    saga_pgerr_clear();
    if (nids > 0)
        rc = saga_batch_load(e->db, e->defs, ids, nids, 1, states, aside, err);
    else
        rc = saga_store_exec(e->db, "BEGIN", err);
    for (int k = 0; k < n && rc == SAGA_OK; k++) {
        saga_reply *r = &replies[idx[k]];
        saga_event ev = {.kind = SAGA_EV_REPLY,
                         .now = saga_now_ms(),
                         .random = next_random(e),
                         .reply = r};
        int j = find_id(ids, nids, r->saga_id);
        if (j >= 0 && aside[j]) {
            /* Its definition cannot be loaded: counted, not applied; a
             * retry once it is repaired re-sends the command. */
            e->pend.replies_rejected++;
            saga_tally_note(&e->tally, e->m.replies_dropped, 0, 1,
                            "definition_unavailable", NULL, NULL);
            continue;
        }
        if (j < 0 || states[j] == NULL) {
            e->pend.replies_rejected++;
            saga_tally_note(&e->tally, e->m.replies_dropped, 0, 1, "unknown_saga", NULL,
                            NULL);
            warn_limited(&e->unknown_saga, "reply for unknown saga %s rejected",
                         r->saga_id);
            continue;
        }
        rc = apply_one(e, states[j], &ev, err);
    }
    if (rc == SAGA_OK)
        rc = add_dead_replies(e, dead_from, dead_to, err);
    if (rc == SAGA_OK)
        rc = commit_batch(e, &sent, err);
    if (rc != SAGA_OK) {
        rollback(e);
        goto out;
    }
    log_set_aside(ids, aside, nids, "their replies not applied");
    log_dead_replies(e, dead_from, dead_to);
    produce(e, &sent);
out:
    for (int i = 0; i < nids; i++)
        saga_state_free(states[i]);
    free(ids);
    free(states);
    free(aside);
    saga_outbox_clear(&sent);
    return rc;
}

/* The dead letters dead[0..ndead) alone, when the transaction that was to
 * carry them failed: together, else one by one, and one that cannot be
 * written even alone is logged and dropped (bounded: never a loop).
 * Returns SAGA_OK, or an error that is not theirs (the database is gone:
 * the caller consumes the batch again). */
static int write_dead_alone(saga_engine *e, saga_error *err)
{
    int rc = apply_replies(e, NULL, NULL, 0, 0, e->ndead, err);
    if (rc == SAGA_OK || !saga_pgerr_blames_data(e->db, rc))
        return rc;
    for (int i = 0; i < e->ndead; i++) {
        const dead_reply *d = &e->dead[i];
        if ((rc = apply_replies(e, NULL, NULL, 0, i, i + 1, err)) == SAGA_OK)
            continue;
        if (!saga_pgerr_blames_data(e->db, rc))
            return rc;
        saga_log(SAGA_LOG_ERROR,
                 "reply at %s[%d]@%lld skipped: %s; its dead letter could not be written "
                 "either: %s",
                 rd_kafka_topic_name(d->m->rkt), (int)d->m->partition,
                 (long long)d->m->offset, d->reason, err->message);
        memset(err, 0, sizeof *err);
    }
    return SAGA_OK;
}

/* One batch of replies. Malformed ones and ones whose output is over the
 * limit are set aside at once. The rest is applied in one transaction;
 * when that fails because of what it holds (saga_pgerr_blames_data), each
 * reply is applied alone, and one that fails alone ISOLATE_TRIES times is
 * set aside with the database's reason: the others are applied, the batch
 * is never rolled back and consumed again in a loop. When the database is
 * not there (or the failure is the server's), the batch is consumed again
 * later and nobody is blamed. */
static int process_replies(saga_engine *e, rd_kafka_message_t **msgs, int n)
{
    saga_reply *replies = calloc((size_t)n, sizeof *replies);
    int *idx = malloc(sizeof *idx * (size_t)n);
    saga_error err = {0};
    int nvalid = 0, rc = SAGA_OK;

    e->ndead = 0;
    if (replies == NULL || idx == NULL) {
        free(replies);
        free(idx);
        return SAGA_ENOMEM;
    }
    for (int i = 0; i < n; i++) {
        saga_error derr = {0};
        saga_reply *r = &replies[i];
        if (saga_reply_decode(msgs[i]->payload, msgs[i]->len, r, &derr) != SAGA_OK) {
            queue_dead(e, msgs[i], 1, 1, NULL, derr.message);
            continue;
        }
        /* PostgreSQL prints UUIDs in lower case; match them that way. */
        for (char *c = r->saga_id; *c; c++)
            if (*c >= 'A' && *c <= 'F')
                *c = (char)(*c - 'A' + 'a');
        /* The output is part of the message: only a message longer than
         * the limit can hold an output over it (no dump per reply). It is
         * measured as PostgreSQL prints it, as every door measures. A
         * larger one is the participant's definite answer that it cannot
         * be stored: the step fails with message_too_large. */
        if (r->status == SAGA_REPLY_OK && r->output != NULL && e->max_output_bytes > 0 &&
            (int64_t)msgs[i]->len > e->max_output_bytes) {
            size_t bytes = json_dumpb(r->output, NULL, 0, 0);
            if ((int64_t)bytes > e->max_output_bytes) {
                char why[200];
                snprintf(why, sizeof why,
                         "the step's output of %zu bytes is over the limit of %lld bytes "
                         "(saga.limits max_output_bytes)",
                         bytes, (long long)e->max_output_bytes);
                warn_limited(&e->big_outputs,
                             "reply at %s[%d]@%lld for saga %s step %d: %s; the step "
                             "fails with message_too_large",
                             rd_kafka_topic_name(msgs[i]->rkt), (int)msgs[i]->partition,
                             (long long)msgs[i]->offset, r->saga_id, r->step, why);
                json_decref(r->output);
                r->output = NULL;
                free(r->error_code);
                free(r->error_message);
                r->status = SAGA_REPLY_FAILED;
                r->error_code = strdup("message_too_large");
                r->error_message = strdup(why);
                if (r->error_code == NULL || r->error_message == NULL) {
                    queue_dead(e, msgs[i], 0, 1, r->saga_id, why);
                    continue;
                }
            }
        }
        idx[nvalid++] = i;
    }
    if (nvalid == 0 && e->ndead == 0)
        goto offsets;
    if (ensure_db(e) != 0) {
        rc = SAGA_EDB;
        goto again;
    }
    rc = apply_replies(e, replies, idx, nvalid, 0, e->ndead, &err);
    if (rc == SAGA_OK)
        goto offsets;
    if (!saga_pgerr_blames_data(e->db, rc)) {
        warn_limited(&e->rolled_replies,
                     "reply batch rolled back, will be consumed again: %s", err.message);
        goto again;
    }
    /* Something in the batch makes the transaction fail: find it. */
    saga_log(SAGA_LOG_WARN,
             "reply batch of %d rolled back (%s); applying its replies one by one",
             nvalid, err.message);
    for (int k = 0; k < nvalid; k++) {
        int tries = 0;
        do {
            memset(&err, 0, sizeof err);
            rc = apply_replies(e, replies, &idx[k], 1, 0, 0, &err);
            if (rc != SAGA_OK && !saga_pgerr_blames_data(e->db, rc)) {
                warn_limited(&e->rolled_replies,
                             "reply batch rolled back, will be consumed again: %s",
                             err.message);
                goto again;
            }
        } while (rc != SAGA_OK && ++tries < ISOLATE_TRIES);
        if (rc != SAGA_OK)
            queue_dead(e, msgs[idx[k]], 0, tries, replies[idx[k]].saga_id, err.message);
    }
    if (e->ndead > 0 && (rc = write_dead_alone(e, &err)) != SAGA_OK) {
        warn_limited(&e->rolled_replies,
                     "reply batch rolled back, will be consumed again: %s", err.message);
        goto again;
    }
offsets : {
    rd_kafka_topic_partition_list_t *done = NULL;
    rd_kafka_resp_err_t ke;
    if (e->feeding) {
        rc = SAGA_OK;
        goto out;
    }
    for (int i = 0; i < n; i++)
        saga__kafka_track(&done, msgs[i]);
    ke = saga__kafka_store_tracked(e->consumer, &done);
    if (ke != RD_KAFKA_RESP_ERR_NO_ERROR)
        saga_log(SAGA_LOG_WARN, "storing reply offsets: %s", rd_kafka_err2str(ke));
    rc = SAGA_OK;
    goto out;
}
again:
    /* Consumed again once the database answers (not before half a second:
     * a full disk or a server shutting down is not retried in a tight
     * loop): what was applied is then a duplicate, what was set aside is
     * not set aside twice. */
    if (!e->feeding) {
        rewind_consumer(e);
        e->replies_after_ms = saga__mono_ms() + 500;
    }
out:
    for (int i = 0; i < n; i++)
        saga_reply_clear(&replies[i]);
    e->ndead = 0;
    free(replies);
    free(idx);
    return rc;
}

/* Sagas held by a bulkhead whose service has free slots again are woken
 * now rather than at the end of their hold. */
static void wake_early(saga_engine *e)
{
    char ids[64][37];
    int64_t untils[64];
    saga_error err = {0};
    int n = saga_gate_take_wakeable(e->gate, ids, untils, 64);
    if (n > 0 && ensure_db(e) == 0 &&
        saga_store_wake_early(e->db, ids, untils, n, &err) != SAGA_OK)
        saga_log(SAGA_LOG_WARN, "%s", err.message);
}

/* Set saga_id aside in its own transaction: its timer fails every time it
 * fires (tries times alone, last with reason). Taken off the timers, with
 * a saga_set_aside history line and a dead letter; `sagactl dead replay`
 * or `sagactl retry` puts it back once the cause is repaired. */
static void set_timer_aside(saga_engine *e, const char *saga_id, int tries,
                            const char *reason)
{
    saga_error err = {0};
    saga_outbox none = {0};
    saga_dead_letter dl = {
        .source = "timer", .ref = saga_id, .reason = reason, .attempts = tries};
    int rc = saga_store_exec(e->db, "BEGIN", &err);
    if (rc == SAGA_OK)
        rc = saga_batch_add_timer_set_aside(e->batch, saga_id, reason, &err);
    if (rc == SAGA_OK)
        rc = saga_batch_add_dead_letter(e->batch, &dl, &err);
    if (rc == SAGA_OK) {
        e->pend.dead_letters++;
        saga_tally_note(&e->tally, e->m.dead_letters, 0, 1, "timer", NULL, NULL);
        rc = commit_batch(e, &none, &err);
    }
    saga_outbox_clear(&none);
    if (rc != SAGA_OK) {
        rollback(e);
        warn_limited(&e->set_aside,
                     "saga %s: its timer fails (%s) and it could not be set "
                     "aside: %s",
                     saga_id, reason, err.message);
        return;
    }
    saga_log(SAGA_LOG_WARN,
             "saga %s set aside: its timer failed %d transactions alone: %s (sagactl "
             "dead list)",
             saga_id, tries, reason);
}

/* One transaction of timers: with claim, BEGIN and claim the due ones
 * (ids gets them, *n how many); else load ids[0..*n) (locking them) and
 * fire what is due. Rolled back on failure (err says why). */
static int timers_tx(saga_engine *e, char (*ids)[SAGA_ID_LEN + 1], int *n, int claim,
                     saga_error *err)
{
    saga_state *states[TIMER_CLAIM_LIMIT] = {0};
    unsigned char aside[TIMER_CLAIM_LIMIT];
    saga_outbox sent = {0};
    int rc = SAGA_OK;

    saga_pgerr_clear();
    if (claim) {
        *n = 0;
        if ((rc = saga_store_exec(e->db, "BEGIN", err)) == SAGA_OK &&
            (rc = saga_batch_claim_due(e->db, TIMER_CLAIM_LIMIT, ids, n, err)) ==
                SAGA_OK &&
            *n == 0)
            return saga_store_exec(e->db, "COMMIT", err);
    }
    if (rc == SAGA_OK)
        rc = saga_batch_load(e->db, e->defs, ids, *n, !claim, states, aside, err);
    for (int i = 0; i < *n && rc == SAGA_OK; i++) {
        saga_event ev = {.kind = SAGA_EV_WAKE,
                         .now = saga_now_ms(),
                         .random = next_random(e),
                         .reply = NULL};
        if (states[i] != NULL)
            rc = apply_one(e, states[i], &ev, err);
    }
    if (rc == SAGA_OK)
        rc = commit_batch(e, &sent, err);
    if (rc != SAGA_OK)
        rollback(e);
    else {
        log_set_aside(ids, aside, *n, "their timers cleared");
        produce(e, &sent);
    }
    for (int i = 0; i < TIMER_CLAIM_LIMIT; i++)
        saga_state_free(states[i]);
    saga_outbox_clear(&sent);
    return rc;
}

/* Claim due timers and fire them, in one transaction. When that fails
 * because of a saga in it, each is fired alone, and one that fails alone
 * ISOLATE_TRIES times is set aside (set_timer_aside): the timers of the
 * others are not held up, nor retried in a loop. Returns how many were
 * claimed. */
static int process_timers(saga_engine *e)
{
    char(*ids)[SAGA_ID_LEN + 1] = malloc(sizeof *ids * TIMER_CLAIM_LIMIT);
    saga_error err = {0};
    int n = 0, rc;

    if (ids == NULL || ensure_db(e) != 0) {
        free(ids);
        return 0;
    }
    rc = timers_tx(e, ids, &n, 1, &err);
    if (rc != SAGA_OK && (n == 0 || !saga_pgerr_blames_data(e->db, rc))) {
        warn_limited(&e->rolled_timers, "timer batch rolled back: %s", err.message);
        n = 0;
    } else if (rc != SAGA_OK) {
        saga_log(SAGA_LOG_WARN,
                 "timer batch of %d rolled back (%s); firing them one by one", n,
                 err.message);
        for (int k = 0; k < n; k++) {
            int one = 1, tries = 0;
            do {
                memset(&err, 0, sizeof err);
                rc = timers_tx(e, &ids[k], &one, 0, &err);
                if (rc != SAGA_OK && !saga_pgerr_blames_data(e->db, rc)) {
                    warn_limited(&e->rolled_timers, "timer batch rolled back: %s",
                                 err.message);
                    free(ids);
                    return 0;
                }
            } while (rc != SAGA_OK && ++tries < ISOLATE_TRIES);
            if (rc != SAGA_OK)
                set_timer_aside(e, ids[k], tries, err.message);
        }
    }
    free(ids);
    return n;
}

/* A start request that cannot be started without failing its transaction
 * (tries times alone, last with reason): marked processed with the
 * reason, and a dead letter with its input, in its own transaction. */
static void set_request_aside(saga_engine *e, const char *id, int tries,
                              const char *reason)
{
    saga_error err = {0};
    saga_outbox none = {0};
    char why[600];
    const char *p[1] = {id};
    PGresult *r;
    int rc = saga_store_exec(e->db, "BEGIN", &err);
    snprintf(why, sizeof why, "set aside after %d failed transactions: %s", tries,
             reason);
    r = rc == SAGA_OK ? PQexecParams(e->db,
                                     "SELECT name, input::text FROM saga.start_request"
                                     " WHERE id = $1 AND processed_at IS NULL FOR UPDATE",
                                     1, NULL, p, NULL, NULL, 0)
                      : NULL;
    if (rc == SAGA_OK && PQresultStatus(r) != PGRES_TUPLES_OK)
        rc = saga_error_set(&err, SAGA_EDB, "reading start request %s: %s", id,
                            PQerrorMessage(e->db));
    if (rc == SAGA_OK && PQntuples(r) == 1) {
        const char *input = PQgetvalue(r, 0, 1);
        saga_dead_letter dl = {.source = "start_request",
                               .ref = id,
                               .payload = input,
                               .payload_len = strlen(input),
                               .reason = reason,
                               .attempts = tries};
        rc = saga_batch_add_request_done(e->batch, id, why, &err);
        if (rc == SAGA_OK)
            rc = saga_batch_add_dead_letter(e->batch, &dl, &err);
        if (rc == SAGA_OK) {
            e->pend.dead_letters++;
            saga_tally_note(&e->tally, e->m.dead_letters, 0, 1, "start_request", NULL,
                            NULL);
        }
    }
    if (rc == SAGA_OK)
        rc = commit_batch(e, &none, &err);
    PQclear(r);
    saga_outbox_clear(&none);
    if (rc != SAGA_OK) {
        rollback(e);
        warn_limited(&e->set_aside,
                     "start request %s fails (%s) and could not be set aside: %s", id,
                     reason, err.message);
        return;
    }
    saga_log(SAGA_LOG_WARN, "start request %s %s (sagactl dead list)", id, why);
}

#define START_BATCH 200

/* What one transaction of start requests works on (on the heap: with the
 * problems' text it is too big for the stack). */
typedef struct start_work {
    saga_state *states[START_BATCH];
    const char *keys[START_BATCH];
    char problems[START_BATCH][600];
    char existing[START_BATCH][SAGA_ID_LEN + 1];
    int which[START_BATCH];                     /* request row of states[i] */
    const saga_definition *latest[START_BATCH]; /* definition of request row i */
    saga_actions acts_of[START_BATCH];
    char taken[START_BATCH][SAGA_ID_LEN + 1]; /* the request ids read */
} start_work;

/* One transaction: turn pending start requests (only only_id, unless
 * NULL) into sagas, each with its first command. *n is how many requests
 * were read (their ids in w->taken). Rolled back on failure. */
static int start_tx(saga_engine *e, start_work *w, const char *only_id, int *n,
                    saga_error *err)
{
    saga_outbox sent = {0};
    PGresult *r = NULL;
    int nstates = 0, rc;
    const char *p[1] = {only_id};

    *n = 0;
    saga_pgerr_clear();
    if ((rc = saga_store_exec(e->db, "BEGIN", err)) != SAGA_OK)
        goto out;
    r = PQexecParams(e->db,
                     "SELECT id, name, input::text, idempotency_key, traceparent"
                     " FROM saga.start_request"
                     " WHERE processed_at IS NULL AND ($1::uuid IS NULL OR id = $1::uuid)"
                     " ORDER BY requested_at LIMIT 200"
                     " FOR UPDATE SKIP LOCKED",
                     1, NULL, p, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        saga_pgerr_note(r);
        rc = saga_error_set(err, SAGA_EDB, "reading start requests: %s",
                            PQerrorMessage(e->db));
        goto out;
    }
    *n = PQntuples(r);
    if (*n == 0) {
        rc = saga_store_exec(e->db, "COMMIT", err);
        goto out;
    }
    for (int i = 0; i < *n; i++)
        snprintf(w->taken[i], sizeof w->taken[i], "%s", PQgetvalue(r, i, 0));
    for (int i = 0; i < *n && rc == SAGA_OK; i++) {
        const char *id = PQgetvalue(r, i, 0), *name = PQgetvalue(r, i, 1);
        const saga_definition *def = NULL;
        saga_error derr = {0};
        w->problems[i][0] = '\0';
        /* The latest version of each name once per batch, not per request. */
        for (int k = 0; k < i && def == NULL; k++)
            if (w->latest[k] != NULL && strcmp(PQgetvalue(r, k, 1), name) == 0)
                def = w->latest[k];
        if (def == NULL &&
            saga_store_get_definition(e->db, e->defs, name, 0, &def, &derr) != SAGA_OK) {
            def = NULL;
            snprintf(w->problems[i], sizeof w->problems[i], "%s", derr.message);
        }
        w->latest[i] = def;
        if (def != NULL) {
            json_t *input = json_loads(PQgetvalue(r, i, 2), 0, NULL);
            saga_state *s = saga_state_new(def, id, input);
            saga_actions acts = {0};
            saga_event ev = {
                .kind = SAGA_EV_START, .now = saga_now_ms(), .random = next_random(e)};
            json_decref(input);
            /* The caller's trace goes on; without one, a new trace. */
            if (s != NULL)
                saga_tracing_start(PQgetisnull(r, i, 4) ? NULL : PQgetvalue(r, i, 4),
                                   s->traceparent, sizeof s->traceparent);
            if (s == NULL || saga_machine_apply(s, &ev, &acts, NULL) != SAGA_APPLIED) {
                saga_state_free(s);
                saga_actions_clear(&acts);
                rc = saga_error_set(err, SAGA_ENOMEM, "out of memory starting saga %s",
                                    id);
            } else {
                /* The actions are recorded once we know the saga is new. */
                w->acts_of[nstates] = acts;
                w->keys[nstates] = PQgetisnull(r, i, 3) ? NULL : PQgetvalue(r, i, 3);
                w->which[nstates] = i;
                w->states[nstates++] = s;
            }
        }
    }
    if (rc == SAGA_OK && nstates > 0)
        rc = saga_batch_insert_new(e->db, w->states, w->keys, nstates, w->existing, err);
    for (int k = 0; k < nstates && rc == SAGA_OK; k++) {
        if (w->existing[k][0] != '\0') {
            snprintf(w->problems[w->which[k]], sizeof w->problems[w->which[k]],
                     "idempotency key already used by saga %s", w->existing[k]);
            continue;
        }
        saga_tally_note(&e->tally, e->m.sagas_started, 0, 1, w->states[k]->def->name,
                        NULL, NULL);
        {
            int64_t wake = w->states[k]->wake_at;
            rc = gate_and_count(e, w->states[k], &w->acts_of[k], saga_now_ms(), err);
            if (rc == SAGA_OK)
                rc = saga_batch_add(e->batch, w->states[k], &w->acts_of[k], 1, err);
            /* Held by the gate: the row inserted above has the old timer. */
            if (rc == SAGA_OK && w->states[k]->wake_at != wake)
                rc = saga_batch_add_saga_row(e->batch, w->states[k], err);
        }
        e->batch_events++;
    }
    for (int i = 0; i < *n && rc == SAGA_OK; i++)
        rc = saga_batch_add_request_done(e->batch, PQgetvalue(r, i, 0),
                                         w->problems[i][0] ? w->problems[i] : NULL, err);
    if (rc == SAGA_OK)
        rc = commit_batch(e, &sent, err);
    if (rc == SAGA_OK) {
        for (int i = 0; i < *n; i++)
            if (w->problems[i][0])
                saga_log(SAGA_LOG_WARN, "start request %s (%s) rejected: %s",
                         PQgetvalue(r, i, 0), PQgetvalue(r, i, 1), w->problems[i]);
        produce(e, &sent);
    }
out:
    if (rc != SAGA_OK)
        rollback(e);
    for (int k = 0; k < nstates; k++) {
        saga_state_free(w->states[k]);
        saga_actions_clear(&w->acts_of[k]);
    }
    PQclear(r);
    saga_outbox_clear(&sent);
    return rc;
}

/* Turn pending start requests (libsaga's client, sagactl) into sagas in
 * one transaction; when that fails because of a request in it, each is
 * tried alone, and one that fails alone ISOLATE_TRIES times is set aside
 * (set_request_aside). Returns how many requests were read. */
static int process_start_requests(saga_engine *e)
{
    start_work *w = calloc(1, sizeof *w);
    saga_error err = {0};
    int n = 0, rc;

    if (w == NULL || ensure_db(e) != 0) {
        free(w);
        return 0;
    }
    rc = start_tx(e, w, NULL, &n, &err);
    if (rc != SAGA_OK && (n == 0 || !saga_pgerr_blames_data(e->db, rc))) {
        warn_limited(&e->rolled_starts, "start requests rolled back: %s", err.message);
        n = 0;
    } else if (rc != SAGA_OK) {
        char(*taken)[SAGA_ID_LEN + 1] = malloc(sizeof *taken * (size_t)n);
        int total = n;
        saga_log(
            SAGA_LOG_WARN,
            "start requests: a batch of %d rolled back (%s); starting them one by one", n,
            err.message);
        if (taken == NULL) {
            free(w);
            return 0;
        }
        memcpy(taken, w->taken, sizeof *taken * (size_t)n);
        for (int k = 0; k < total; k++) {
            int one = 0, tries = 0;
            do {
                memset(&err, 0, sizeof err);
                memset(w, 0, sizeof *w);
                rc = start_tx(e, w, taken[k], &one, &err);
                if (rc != SAGA_OK && !saga_pgerr_blames_data(e->db, rc)) {
                    warn_limited(&e->rolled_starts, "start requests rolled back: %s",
                                 err.message);
                    free(taken);
                    free(w);
                    return 0;
                }
            } while (rc != SAGA_OK && ++tries < ISOLATE_TRIES);
            if (rc != SAGA_OK)
                set_request_aside(e, taken[k], tries, err.message);
        }
        free(taken);
    }
    free(w);
    return n;
}

/* One refused command in one transaction: its step fails with
 * message_too_large (a definite failure: the participant never saw the
 * command, so nothing of it remains; the saga compensates the steps
 * before, or stops as failed when it was a compensation), and its outbox
 * row goes. The gate settles it as UNSENT: a service that never saw the
 * command is not judged by it. A saga that moved on meanwhile only loses
 * the row. */
static int fail_one_refused(saga_engine *e, const refused_cmd *c, saga_error *err)
{
    char ids[1][SAGA_ID_LEN + 1];
    saga_state *states[1] = {NULL};
    unsigned char aside[1] = {0};
    saga_outbox sent = {0};
    char cid[128], msg[700];
    saga_reply r;
    int rc;

    memcpy(ids[0], c->saga_id, SAGA_ID_LEN + 1);
    saga_command_id_format(cid, sizeof cid, c->saga_id, c->step, c->phase);
    snprintf(msg, sizeof msg,
             "the %s command of %zu bytes to %s was refused by Kafka (%s; sagad's "
             "message.max.bytes is %lld): the step's input is too large to send",
             saga_phase_name(c->phase), c->bytes, c->topic, c->why,
             (long long)e->max_message_bytes);
    memset(&r, 0, sizeof r);
    r.v = 1;
    memcpy(r.saga_id, c->saga_id, SAGA_ID_LEN + 1);
    r.step = c->step;
    r.phase = c->phase;
    r.command_id = cid;
    r.attempt = c->attempt;
    r.status = SAGA_REPLY_FAILED;
    r.error_code = (char *)"message_too_large";
    r.error_message = msg;
    saga_pgerr_clear();
    rc = saga_batch_load(e->db, e->defs, ids, 1, 1, states, aside, err);
    if (rc == SAGA_OK && states[0] != NULL) {
        saga_event ev = {.kind = SAGA_EV_REPLY,
                         .now = saga_now_ms(),
                         .random = next_random(e),
                         .reply = &r};
        if (c->step >= 0 && c->step < states[0]->nsteps)
            saga_tally_note(&e->tally, e->m.commands_refused, 0, 1,
                            states[0]->def->steps[c->step].service, NULL, NULL);
        e->unsent = 1;
        rc = apply_one(e, states[0], &ev, err);
        e->unsent = 0;
    }
    if (rc == SAGA_OK)
        rc = saga_store_outbox_delete(e->db, &c->outbox_id, 1, err);
    if (rc == SAGA_OK)
        rc = commit_batch(e, &sent, err);
    if (rc != SAGA_OK)
        rollback(e);
    else {
        saga_log(SAGA_LOG_WARN,
                 "saga %s step %d (%s): %s; the step failed with "
                 "message_too_large",
                 c->saga_id, c->step, saga_phase_name(c->phase), msg);
        produce(e, &sent);
    }
    saga_state_free(states[0]);
    saga_outbox_clear(&sent);
    return rc;
}

/* The commands the broker refused as too large (note_refused), oldest
 * first. One that cannot be failed without failing its transaction
 * (ISOLATE_TRIES times) has its outbox row deleted alone: its step then
 * times out and runs out of attempts like any command that gets no
 * answer — bounded, never resent for ever. */
static void fail_refused(saga_engine *e)
{
    while (e->nrefused > 0 && !e->stop && ensure_db(e) == 0) {
        refused_cmd c = e->refused[0];
        saga_error err = {0};
        int rc, tries = 0;
        do {
            memset(&err, 0, sizeof err);
            rc = fail_one_refused(e, &c, &err);
        } while (rc != SAGA_OK && saga_pgerr_blames_data(e->db, rc) &&
                 ++tries < ISOLATE_TRIES);
        if (rc != SAGA_OK && !saga_pgerr_blames_data(e->db, rc))
            return; /* the database's trouble: again later */
        if (rc != SAGA_OK) {
            saga_error derr = {0};
            saga_log(SAGA_LOG_ERROR,
                     "saga %s step %d: the command of %zu bytes to %s is too large to "
                     "send and its step could not be failed (%s): the command is dropped",
                     c.saga_id, c.step, c.bytes, c.topic, err.message);
            if (saga_store_outbox_delete(e->db, &c.outbox_id, 1, &derr) != SAGA_OK &&
                !saga_pgerr_blames_data(e->db, SAGA_EDB))
                return;
        }
        idset_del(&e->inflight, c.outbox_id);
        memmove(e->refused, e->refused + 1, sizeof *e->refused * (size_t)--e->nrefused);
    }
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

/* Every few seconds: free bulkhead slots whose time ran out, read the
 * gauges that come from the database, publish the services' breaker and
 * bulkhead state, and check the broker answers (for /readyz). */
static void observe(saga_engine *e)
{
    saga_error err = {0};
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_resp_err_t ke;
    int64_t now = saga_now_ms();

    int with_finished = saga__mono_ms() >= e->next_finished_ms;

    saga_gate_expire(e->gate, now);
    /* An open breaker turns half-open by the clock alone, a probe may
     * have been lost: look at them here too, not only after commits. */
    log_breakers(e, now);
    warn_flush(&e->unknown_saga, "replies for unknown sagas rejected");
    warn_flush(&e->malformed, "malformed replies set aside");
    warn_flush(&e->set_aside, "items that could not be set aside");
    warn_flush(&e->rolled_replies, "reply batches rolled back");
    warn_flush(&e->rolled_timers, "timer batches rolled back");
    warn_flush(&e->rolled_starts, "start request batches rolled back");
    warn_flush(&e->big_outputs, "outputs over max_output_bytes");
    if (ensure_db(e) == 0) {
        read_limits(e);
        if (with_finished)
            e->next_finished_ms =
                saga__mono_ms() + (int64_t)FINISHED_EVERY * e->cfg.observe_interval_ms;
        if (saga_observe_sagas(e->db, with_finished, &e->m, &err) != SAGA_OK ||
            saga_observe_services(e->db, e->owner, e->gate, now, &e->m, &err) !=
                SAGA_OK) {
            saga_log(SAGA_LOG_WARN, "%s", err.message);
            saga_health_set_db(&e->health, 0, err.message);
        } else {
            saga_health_set_db(&e->health, 1, NULL);
        }
    }
    /* Brokers only (no topic list): a small request, 1 s at most. */
    ke = rd_kafka_metadata(e->producer, 0, NULL, &md, 1000);
    if (ke == RD_KAFKA_RESP_ERR_NO_ERROR) {
        rd_kafka_metadata_destroy(md);
        saga_health_set_broker(&e->health, 1, NULL);
    } else {
        saga_health_set_broker(&e->health, 0, rd_kafka_err2str(ke));
    }
}

/* Sleep until a reply or a delivery report arrives (librdkafka writes to
 * the wake pipe), PostgreSQL sends a notification, or timeout_ms pass. */
static void wait_for_work(saga_engine *e, int timeout_ms)
{
    struct pollfd fds[2] = {{.fd = e->wake[0], .events = POLLIN},
                            {.fd = PQsocket(e->db), .events = POLLIN}};
    char buf[64];
    if (timeout_ms <= 0)
        return;
    if (poll(fds, fds[1].fd >= 0 ? 2 : 1, timeout_ms) > 0 && (fds[0].revents & POLLIN))
        while (read(e->wake[0], buf, sizeof buf) > 0)
            ;
}

int saga_engine_run(saga_engine *e, saga_error *err)
{
    rd_kafka_message_t **msgs = calloc((size_t)e->cfg.batch_max, sizeof *msgs);
    rd_kafka_queue_t *cq = rd_kafka_queue_get_consumer(e->consumer);
    int64_t next_timer = 0, next_scan = 0, next_observe = 0;

    if (msgs == NULL || cq == NULL) {
        free(msgs);
        if (cq != NULL)
            rd_kafka_queue_destroy(cq);
        return saga_error_set(err, SAGA_ENOMEM, "out of memory");
    }
    saga_log(SAGA_LOG_INFO, "sagad running as %s: replies from %s", e->owner,
             e->reply_topic);
    while (!e->stop) {
        int n, full, db_ok;
        int64_t now, wait;
        /* Take what has arrived, up to a batch, without waiting: replies
         * that come in while a batch is being committed make the next one. */
        ssize_t k;
        saga_health_tick(&e->health, saga_health_now_ms());
        saga_metric_add(e->m.loop_ticks, NULL, 1);
        /* No database, no replies: they stay in Kafka until it is back. */
        db_ok = ensure_db(e) == 0;
        k = db_ok && saga__mono_ms() >= e->replies_after_ms
                ? rd_kafka_consume_batch_queue(cq, 0, msgs, (size_t)e->cfg.batch_max)
                : 0;
        n = k > 0 ? (int)k : 0;
        full = n == e->cfg.batch_max;
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
        now = saga__mono_ms();
        if (PQstatus(e->db) == CONNECTION_OK && notified(e))
            next_scan = 0;
        if (now >= next_timer) {
            wake_early(e);
            while (process_timers(e) == TIMER_CLAIM_LIMIT && !e->stop)
                ;
            next_timer = now + e->cfg.timer_interval_ms;
        }
        if (now >= next_scan) {
            while (process_start_requests(e) == START_BATCH && !e->stop)
                ;
            scan_outbox(e);
            next_scan = now + OUTBOX_SCAN_MS;
        }
        rd_kafka_poll(e->producer, 0);
        forget_delivered(e);
        fail_refused(e);
        if (now >= next_observe) {
            observe(e);
            next_observe = saga__mono_ms() + e->cfg.observe_interval_ms;
        }
        {
            char why[256];
            if (rd_kafka_fatal_error(e->consumer, why, sizeof why) ||
                rd_kafka_fatal_error(e->producer, why, sizeof why)) {
                /* Nothing more can be consumed or sent safely: stop, and
                 * let the supervisor start a fresh process. */
                free(msgs);
                rd_kafka_queue_destroy(cq);
                rd_kafka_flush(e->producer, 10000);
                forget_delivered(e);
                return saga_error_set(err, SAGA_EKAFKA, "fatal Kafka error: %s", why);
            }
        }
        if (full)
            continue;
        now = saga__mono_ms();
        wait = (next_timer < next_scan ? next_timer : next_scan) - now;
        if (next_observe - now < wait)
            wait = next_observe - now;
        if (!db_ok || saga__mono_ms() < e->replies_after_ms)
            wait = wait < 250 ? wait : 250;
        wait_for_work(e, (int)(wait > 0 ? wait : 0));
    }
    free(msgs);
    rd_kafka_queue_destroy(cq);
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

saga_metrics *saga_engine_metrics(saga_engine *e)
{
    return e != NULL ? e->metrics : NULL;
}

saga_health *saga_engine_health(saga_engine *e)
{
    return e != NULL ? &e->health : NULL;
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
        (rc = saga__kafka_set(conf, "linger.ms", "1", err)) != SAGA_OK ||
        /* Back-pressure instead of memory: when Kafka falls behind, produce()
         * waits for deliveries rather than queueing every command started. */
        (rc = saga__kafka_set(conf, "queue.buffering.max.messages", "10000", err)) !=
            SAGA_OK ||
        (rc = saga__kafka_apply_options(conf, e->cfg.kafka_options, err)) != SAGA_OK) {
        rd_kafka_conf_destroy(conf);
        return rc;
    }
    /* What librdkafka refuses locally as too large, to say so. */
    e->max_message_bytes = saga__kafka_conf_int(conf, "message.max.bytes", 0);
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
    if (e->cfg.outbox_lease_s <= 0)
        e->cfg.outbox_lease_s = 10;
    e->wake[0] = e->wake[1] = -1;
    if (e->cfg.observe_interval_ms <= 0)
        e->cfg.observe_interval_ms = 5000;
    e->max_output_bytes = 262144;
    e->cfg.gate.service_limits = NULL; /* parsed below, not kept */
    if (saga_metrics_new(&e->metrics) != SAGA_OK ||
        saga_metrics_register_std(e->metrics, &e->m) != SAGA_OK ||
        saga_health_init(&e->health, 0) != SAGA_OK) {
        rc = saga_error_set(err, SAGA_ENOMEM, "out of memory");
        goto fail_defs;
    }
    e->health_ready = 1;
    if ((rc = saga_gate_new(&cfg->gate, &e->gate, err)) != SAGA_OK)
        goto fail_defs;
    if (cfg->name != NULL && *cfg->name != '\0')
        snprintf(e->owner, sizeof e->owner, "%s", cfg->name);
    else if (gethostname(e->owner, sizeof e->owner - 1) != 0 || e->owner[0] == '\0')
        snprintf(e->owner, sizeof e->owner, "sagad");
    e->wake[0] = e->wake[1] = -1;
    snprintf(e->prefix, sizeof e->prefix, "%s",
             cfg->topic_prefix ? cfg->topic_prefix : "saga.");
    saga__topic_reply(e->reply_topic, sizeof e->reply_topic, e->prefix);
    e->rng = (uint64_t)saga_now_ms() * 2654435761u + (uint64_t)getpid();
    e->defs = saga_defs_new();
    {
        saga_store_opts so = {e->prefix, "sagad"};
        e->batch = saga_batch_new(&so, e->owner, e->cfg.outbox_lease_s);
    }
    if (e->defs == NULL || e->batch == NULL) {
        rc = saga_error_set(err, SAGA_ENOMEM, "out of memory");
        goto fail_defs;
    }
    e->db = PQconnectdb(cfg->db_url);
    if (PQstatus(e->db) != CONNECTION_OK) {
        rc = saga_error_set(err, SAGA_EDB, "cannot connect to PostgreSQL: %s",
                            PQerrorMessage(e->db));
        goto fail_defs;
    }
    saga__pq_quiet(e->db);
    saga_health_set_db(&e->health, 1, NULL);
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
            /* Every outcome series exists from the start, at 0, so that
             * increase() sees the first failure (a series that appears at 1
             * has no earlier sample to increase from). */
            {
                static const char *const outcomes[] = {"completed", "compensated",
                                                       "failed"};
                for (size_t k = 0; k < sizeof outcomes / sizeof outcomes[0]; k++)
                    saga_metric_add(e->m.sagas_finished,
                                    (const char *[]){name, outcomes[k]}, 0);
                saga_metric_add(e->m.sagas_started, (const char *[]){name}, 0);
            }
        }
    }
    if ((rc = saga_store_exec(e->db, "LISTEN saga_outbox", err)) != SAGA_OK ||
        (rc = saga_batch_prepare(e->db, err)) != SAGA_OK)
        goto fail;
    e->db_ready = 1;
    read_limits(e);
    if (pipe(e->wake) != 0 || fcntl(e->wake[0], F_SETFL, O_NONBLOCK) != 0 ||
        fcntl(e->wake[1], F_SETFL, O_NONBLOCK) != 0) {
        rc = saga_error_set(err, SAGA_EIO, "creating the wake-up pipe failed");
        goto fail;
    }
    if ((rc = setup_kafka(e, err)) != SAGA_OK)
        goto fail;
    if ((rc = saga__kafka_ensure_topics(e->producer, topics, ntopics, 4, 10000, err)) !=
        SAGA_OK)
        goto fail;
    saga_health_set_broker(&e->health, 1, NULL);
    /* Subscribe once the reply topic surely exists. */
    if ((rc = saga__kafka_consumer_new(
             e->cfg.brokers, "sagad", e->cfg.group_id, e->cfg.instance_id, e->reply_topic,
             e->cfg.kafka_options, kafka_log, &e->consumer, err)) != SAGA_OK)
        goto fail;
    {
        /* Wake the loop's poll() when a reply or a delivery report comes. */
        rd_kafka_queue_t *cq = rd_kafka_queue_get_consumer(e->consumer);
        rd_kafka_queue_t *pq = rd_kafka_queue_get_main(e->producer);
        rd_kafka_queue_io_event_enable(cq, e->wake[1], "1", 1);
        rd_kafka_queue_io_event_enable(pq, e->wake[1], "1", 1);
        rd_kafka_queue_destroy(cq);
        rd_kafka_queue_destroy(pq);
    }
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

int saga__engine_turn(saga_engine *e)
{
    if (ensure_db(e) != 0)
        return SAGA_EDB;
    wake_early(e);
    while (process_timers(e) == TIMER_CLAIM_LIMIT && !e->stop)
        ;
    while (process_start_requests(e) == START_BATCH && !e->stop)
        ;
    scan_outbox(e);
    rd_kafka_poll(e->producer, 0);
    forget_delivered(e);
    fail_refused(e);
    return SAGA_OK;
}

int saga__engine_feed_replies(saga_engine *e, const char *const *bufs, const size_t *lens,
                              int n, int64_t first_offset)
{
    rd_kafka_message_t *m, **msgs;
    int rc;
    if (n <= 0)
        return SAGA_OK;
    if (e->feed_rkt == NULL &&
        (e->feed_rkt = rd_kafka_topic_new(e->producer, e->reply_topic, NULL)) == NULL)
        return SAGA_EKAFKA;
    m = calloc((size_t)n, sizeof *m);
    msgs = calloc((size_t)n, sizeof *msgs);
    if (m == NULL || msgs == NULL) {
        free(m);
        free(msgs);
        return SAGA_ENOMEM;
    }
    for (int i = 0; i < n; i++) {
        m[i].rkt = e->feed_rkt;
        m[i].partition = 0;
        m[i].offset = first_offset + i;
        m[i].payload = (void *)(uintptr_t)bufs[i];
        m[i].len = lens[i];
        msgs[i] = &m[i];
    }
    if (ensure_db(e) != 0) {
        free(m);
        free(msgs);
        return SAGA_EDB;
    }
    e->feeding = 1;
    rc = process_replies(e, msgs, n);
    e->feeding = 0;
    rd_kafka_poll(e->producer, 0);
    free(m);
    free(msgs);
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
    if (e->feed_rkt != NULL)
        rd_kafka_topic_destroy(e->feed_rkt);
    if (e->producer != NULL) {
        rd_kafka_flush(e->producer, 5000);
        rd_kafka_destroy(e->producer);
    }
    if (e->db != NULL)
        PQfinish(e->db);
    saga_defs_free(e->defs);
    saga_batch_free(e->batch);
    if (e->wake[0] >= 0)
        close(e->wake[0]);
    if (e->wake[1] >= 0)
        close(e->wake[1]);
    free(e->inflight.slots);
    free(e->delivered);
    saga_gate_free(e->gate);
    saga_tally_free(&e->tally);
    free(e->failed);
    free(e->dead);
    free(e->refused);
    saga_metrics_free(e->metrics);
    if (e->health_ready)
        saga_health_cleanup(&e->health);
    free(e);
}
