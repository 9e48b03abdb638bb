/* saga_engine_state.h - the engine's private state and the functions its
 * files call each other with (not installed, not for sagad_main.c: the
 * public interface is saga_engine.h). Calls go one way: the loop calls the
 * event sources (replies, timers, starts, refused), which call apply,
 * commit and send; those call the helpers (ids, warn, connect). Thread
 * safety: none; one engine loop owns all of it. */
#ifndef SAGA_ENGINE_STATE_H
#define SAGA_ENGINE_STATE_H

#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>
#include <librdkafka/rdkafka.h>

#include "saga/sign.h"
#include "saga_batch.h"
#include "saga_engine.h"
#include "saga_log.h"
#include "saga_machine.h"
#include "saga_migrate.h"
#include "saga_observe.h"
#include "saga_pgerr.h"
#include "saga_shared.h"
#include "saga_store.h"
#include "saga_tally.h"
#include "saga_tracing.h"

#define OUTBOX_SCAN_MS 1000
/* Kicked start scans are at least this far apart (saga_engine_kick). */
#define START_COALESCE_MS 20

#define OUTBOX_SCAN_LIMIT 2000

#define TIMER_CLAIM_LIMIT 200
#define START_BATCH       200

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

/* The fields of a log line about a saga: the context saga_log_fields
 * takes, and the storage its trace and span ids point into. */
typedef struct saga__log_fields {
    saga_log_ctx ctx;
    char trace_id[SAGA_TRACE_ID_HEX_SIZE], span_id[SAGA_SPAN_ID_HEX_SIZE];
} saga__log_fields;

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
    int element; /* a fan-out element's command; -1: none */
    saga_phase phase;
    size_t bytes;
    char topic[256];
    char why[128];
} refused_cmd;

/* A service's signing keys, loaded from <key_dir>/<service>.key the first
 * time the service is met (saga_engine_trust.c). */
typedef struct service_key {
    char service[128];
    saga_keys *keys; /* NULL: not signed (no file), or broken */
    int broken;      /* a file that cannot be used: its replies are refused */
} service_key;

#define BREAKERS_SEEN 256 /* the gate tracks at most this many services */

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
    atomic_int kicked; /* saga_engine_kick: start requests are waiting */
    int children_due;  /* a commit started, asked to undo or ended a child saga */
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
    rate_limit big_outputs;  /* replies whose output was over the limit */
    rate_limit distrusted;   /* replies on the wrong topic or badly signed */
    rate_limit conflicting;  /* a second answer contradicting the first */
    service_key *keys;       /* per service, as met */
    char reply_pattern[600]; /* the reply topics' subscription (a regex) */
    /* Services whose topics this sagad made sure of (those of the
     * definitions it started with; later ones on their first command). */
    char **services;
    int nservices, capservices;
    int nkeys, capkeys;
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

static inline double next_random(saga_engine *e)
{
    /* xorshift64*: jitter only needs to spread retries, not be secret. */
    e->rng ^= e->rng >> 12;
    e->rng ^= e->rng << 25;
    e->rng ^= e->rng >> 27;
    return (double)((e->rng * 0x2545F4914F6CDD1Dull) >> 11) / 9007199254740992.0;
}

/* ---- saga_engine_ids.c ---- */

int saga__idset_has(const idset *s, int64_t id);

int saga__idset_add(idset *s, int64_t id);

void saga__idset_del(idset *s, int64_t id);

int saga__engine_sort_unique(char (*ids)[SAGA_ID_LEN + 1], int n);

int saga__engine_find_id(char (*ids)[SAGA_ID_LEN + 1], int n, const char *id);

/* The service a command topic is for (its tail: <prefix>cmd.<service>),
 * or NULL for a topic outside this sagad's prefix. */
const char *saga__engine_cmd_service(const saga_engine *e, const char *topic);

/* ---- saga_engine_warn.c ---- */

/* Write a warning that could repeat once per message at most once per
 * WARN_EVERY_MS, with how many like it were not written since the last
 * one (they are counted in the metrics all the same). */
void saga__engine_warn_limited(rate_limit *rl, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

void saga__engine_warn_flush(rate_limit *rl, const char *what);

/* ---- saga_engine_trust.c ---- */

/* Load service's keys now (at start, so a bad key file stops sagad rather
 * than its replies). SAGA_OK also when it has no key file. */
int saga__engine_load_keys(saga_engine *e, const char *service, saga_error *err);

void saga__engine_free_keys(saga_engine *e);

/* Sign a command to topic for service (NULL: none) when the service has
 * keys: 1 and sig filled, else 0. */
int saga__engine_sign(saga_engine *e, const char *service, const char *topic,
                      const char *key, const char *payload,
                      char sig[SAGA_SIGNATURE_SIZE]);

/* Whether reply r (message m) may be applied to s: NULL if so, else the
 * reason's label for the metrics ("wrong_topic", "unauthenticated") and
 * why[] says it in words. */
const char *saga__engine_distrust(saga_engine *e, const saga_state *s,
                                  const saga_reply *r, const rd_kafka_message_t *m,
                                  char *why, size_t size);

/* ---- saga_engine_topics.c ---- */

/* Note service as one whose topics exist (at start). 0, or -1 (no memory). */
int saga__engine_know_service(saga_engine *e, const char *service);

/* Before the first command to a service this sagad has not met (its
 * definition was deployed after the start): create its reply and
 * dead-letter topics and subscribe again, so that its replies are read
 * at once rather than after the next metadata refresh. */
void saga__engine_meet_service(saga_engine *e, const char *service);

void saga__engine_free_services(saga_engine *e);

/* ---- saga_engine_send.c ---- */

int saga__engine_note_refused(saga_engine *e, int64_t id, const char *topic,
                              const void *payload, size_t len, rd_kafka_resp_err_t why);

void saga__engine_on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque);

void saga__engine_produce(saga_engine *e, saga_outbox *o);

void saga__engine_forget_delivered(saga_engine *e);

void saga__engine_scan_outbox(saga_engine *e);

/* ---- saga_engine_connect.c ---- */

void saga__engine_read_limits(saga_engine *e);

int saga__engine_ensure_db(saga_engine *e);

/* ---- saga_engine_commit.c ---- */

void saga__engine_log_breakers(saga_engine *e, int64_t now);

void saga__engine_note_failed(saga_engine *e, const saga_state *s, const saga_action *a);

void saga__engine_rollback(saga_engine *e);

int saga__engine_commit_batch(saga_engine *e, saga_outbox *sent, saga_error *err);

/* ---- saga_engine_apply.c ---- */

int saga__engine_gate_and_count(saga_engine *e, saga_state *s, saga_actions *acts,
                                int64_t now, saga_error *err);

int saga__engine_apply_one(saga_engine *e, saga_state *s, saga_event *ev,
                           saga_error *err);

/* ---- saga_engine_replies.c ---- */

void saga__engine_log_set_aside(char (*ids)[SAGA_ID_LEN + 1], const unsigned char *aside,
                                int n, const char *what);

int saga__engine_process_replies(saga_engine *e, rd_kafka_message_t **msgs, int n);

/* ---- saga_engine_timers.c ---- */

void saga__engine_wake_early(saga_engine *e);

int saga__engine_process_timers(saga_engine *e);

/* ---- saga_engine_starts.c ---- */

int saga__engine_process_start_requests(saga_engine *e);

/* ---- saga_engine_signals.c ---- */

/* Deliver the signals sagas wait for now; close those of ended sagas. */
void saga__engine_process_signals(saga_engine *e);

/* ---- saga_engine_children.c ---- */

/* Tell parents their children's ends, and children their parents' undo
 * requests. */
void saga__engine_process_children(saga_engine *e);

/* ---- saga_engine_refused.c ---- */

void saga__engine_fail_refused(saga_engine *e);

/* ---- saga_engine_loop.c ---- */

void saga__engine_observe(saga_engine *e);

#endif
