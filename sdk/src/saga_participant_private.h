/* saga_participant_private.h - the participant's state and the internal
 * functions its files share (saga_participant.c, _poll.c, _tx.c, _reply.c,
 * _result.c, _log.c). Private to sdk/src. All of it runs on the polling
 * thread, but the counters (read by saga_participant_get_stats from any
 * thread) and the stop flag and wake fd (set by saga_participant_stop). */
#ifndef SAGA_PARTICIPANT_PRIVATE_H
#define SAGA_PARTICIPANT_PRIVATE_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>
#include <libpq-fe.h>
#include <librdkafka/rdkafka.h>

#include "saga/participant.h"
#include "saga/sign.h"
#include "saga_barrier.h"
#include "saga_participant_internal.h"
#include "saga_shared.h"

#if defined(__GNUC__)
#define SAGA__PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define SAGA__PRINTF(f, a)
#endif

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

/* ---- saga_participant_log.c ---- */

/* Keep the problem as the last warning and log it (rate-limited), as a
 * warning or an error. */
void saga__participant_warn(saga_participant *p, const char *fmt, ...) SAGA__PRINTF(2, 3);
void saga__participant_fail(saga_participant *p, const char *fmt, ...) SAGA__PRINTF(2, 3);
/* End the log window when it is over (now: saga__mono_ms()), saying how
 * many lines it left out. */
void saga__participant_log_roll(saga_participant *p, int64_t now);

/* ---- saga_participant_reply.c ---- */

/* librdkafka's delivery report callback (opaque: the participant). */
void saga__participant_on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *msg,
                                   void *opaque);
/* The reply to cmd for the outcome r, as a new JSON object (NULL: out of
 * memory). */
json_t *saga__participant_reply_object(const saga_command *cmd, const saga_result *r);
/* Set res to the refusal of an action that came after its compensation. */
void saga__participant_refuse_hanging(saga_result *res, const saga_command *cmd);
/* Send reply (borrowed) to cmd's reply topic now, or after the open
 * group's COMMIT; in: the consumed command (NULL: a deferred reply). */
void saga__participant_send_reply(saga_participant *p, const saga_command *cmd,
                                  json_t *reply, const rd_kafka_message_t *in);
/* Send (send != 0) or drop the replies waiting for the group's COMMIT. */
void saga__participant_drop_pending(saga_participant *p, int send);
/* Set the command m aside (dead-letter topic, or only logged) with why. */
void saga__participant_dead_letter(saga_participant *p, const rd_kafka_message_t *m,
                                   const char *why);
/* 1 when m's reply failed more than max_redeliveries times: then it has
 * been dead-lettered instead of handled. */
int saga__participant_dead_after_failures(saga_participant *p,
                                          const rd_kafka_message_t *m);

/* ---- saga_participant_tx.c ---- */

/* Reconnect to PostgreSQL and prepare the barrier's statements again. */
void saga__participant_db_reset(saga_participant *p);
/* Open a group transaction (on failure commands run one transaction each). */
void saga__participant_group_begin(saga_participant *p);
/* COMMIT the open group and send its replies; 0, or -1 when it was rolled
 * back (its commands must be consumed again). 0 when none is open. */
int saga__participant_group_end(saga_participant *p);
/* Turn an ok result whose output is over the limit into a definite
 * failure (message_too_large); 1 when it did. */
int saga__participant_output_over_limit(saga_participant *p, const saga_command *cmd,
                                        saga_result *res);
/* Run handler h for cmd without a database. */
void saga__participant_run_plain(saga_participant *p, const handler *h,
                                 const saga_command *cmd, saga_result *res);
/* Run handler h for cmd inside the barrier's transaction; *cached gets an
 * earlier delivery's reply (owned) when there is one. */
void saga__participant_run_with_barrier(saga_participant *p, const handler *h,
                                        const saga_command *cmd, saga_result *res,
                                        json_t **cached);

/* ---- saga_participant_result.c ---- */

/* Forget the handler's outcome so that ours replaces it. */
void saga__participant_result_reset(saga_result *r);

#endif
