/* libsaga: the participant side. A service registers a handler per action
 * and per compensation, then consumes its command topic and replies.
 *
 * When the service gives a PostgreSQL URL, every command runs inside one
 * transaction on that database together with a *barrier* row, so that:
 *   - a redelivered (duplicate) command gets the cached reply and no second
 *     effect;
 *   - a compensation for an action that never ran (null compensation)
 *     succeeds without calling the handler, and the barrier records it;
 *   - an action arriving after its compensation (hanging action) is refused
 *     without calling the handler.
 * The handler's writes commit atomically with the barrier row. */
#ifndef SAGA_PARTICIPANT_H
#define SAGA_PARTICIPANT_H

#include <stdint.h>

#include <jansson.h>

#include "saga/error.h"
#include "saga/protocol.h"

#ifdef __cplusplus
extern "C" {
#endif

struct pg_conn; /* libpq's PGconn */

typedef struct saga_participant saga_participant;

/* The outcome a handler fills in. Opaque; set with the saga_result_*()
 * calls. A handler that sets nothing is answered with `retry`. */
typedef struct saga_result saga_result;

typedef struct saga_participant_options {
    const char *brokers;      /* required: Kafka bootstrap servers */
    const char *service;      /* required: consumes <topic_prefix>cmd.<service> */
    const char *topic_prefix; /* default "saga." */
    const char *group_id;     /* default "saga-svc-<service>" */
    const char *db_url;       /* optional: PostgreSQL for the barrier */
    /* optional: search_path on db_url (the barrier table lives there) */
    const char *db_schema;
    /* optional: Kafka static group membership. A restarted process with the
     * same id gets its partitions back at once instead of after the session
     * timeout (6 s). Unique per running process of one service. */
    const char *instance_id;
    /* optional: librdkafka settings "key=value,key=value" for this
     * participant's producer and consumer, applied after the defaults
     * (e.g. "linger.ms=0,fetch.wait.max.ms=10"). */
    const char *kafka_options;
    /* optional, with db_url: group commit. Up to tx_commands commands
     * (default 64; 1 turns grouping off) received together share one
     * PostgreSQL transaction for at most tx_ms milliseconds (default 10).
     * Each command's barrier row and handler writes still sit in a
     * savepoint of their own, so they stand or fall together exactly as
     * with a transaction per command; the replies leave after the shared
     * COMMIT. What changes: one commit (one WAL flush) for many commands,
     * and a handler's row locks are held until the group commits. */
    int tx_commands;
    int tx_ms;
} saga_participant_options;

/* A handler. cmd and result are valid only during the call. db is the
 * barrier's connection, inside an open transaction (NULL without db_url):
 * write the business effect on it and do not COMMIT or ROLLBACK yourself.
 * On a `failed` or `retry` result the handler's writes are rolled back. */
typedef void (*saga_handler_fn)(const saga_command *cmd, struct pg_conn *db,
                                saga_result *result, void *arg);

/* Create a participant; connects to PostgreSQL (if db_url) and creates the
 * barrier table there if missing, creates the Kafka clients and the command
 * topic if missing. *out is owned by the caller: saga_participant_free(). */
SAGA_API int saga_participant_new(const saga_participant_options *opts,
                                  saga_participant **out, saga_error *err);

/* Register fn for an action (phase invoke) or a compensation (phase
 * compensate) named name. SAGA_EEXIST if already registered. Call before
 * the first poll; not thread-safe. */
SAGA_API int saga_participant_on(saga_participant *p, saga_phase phase, const char *name,
                                 saga_handler_fn fn, void *arg);

/* Handle the commands that arrive within timeout_ms (at most a batch),
 * reply to each, wait for the replies to be acknowledged by Kafka and only
 * then commit the consumed offsets. Returns the number of commands handled
 * (>= 0) or a negative saga_err: SAGA_EKAFKA when replies could not be
 * delivered, SAGA_EDB when a group transaction failed (e.g. the database
 * restarted); in both cases the commands are consumed again, so calling
 * poll again is right. Call from one thread. */
SAGA_API int saga_participant_poll(saga_participant *p, int timeout_ms, saga_error *err);

/* Poll until saga_participant_stop(), riding out transient Kafka and
 * database errors. Returns SAGA_OK after a stop, or the first fatal error. */
SAGA_API int saga_participant_run(saga_participant *p, saga_error *err);

/* Ask run() to return after the current batch. Async-signal-safe. */
SAGA_API void saga_participant_stop(saga_participant *p);

/* Counters since creation, for a service's own metrics and logs.
 * New fields are appended at the end (callers compile against the size
 * they see; recompile after upgrading libsaga 0.x). */
typedef struct saga_participant_stats {
    /* Replies sent for consumed commands as they were handled, whatever
     * produced them: a handler, the barrier's cache (duplicates), an
     * unknown action, a refused hanging action, a database error (retry).
     * Not included: commands whose reply was deferred (counted in deferred;
     * their replies later count in replied_*). */
    uint64_t handled;
    uint64_t duplicates; /* commands answered from the barrier's cache */
    uint64_t null_compensations;
    uint64_t hanging_refused;
    uint64_t malformed;       /* messages that were not valid commands */
    uint64_t unknown_action;  /* commands with no registered handler */
    uint64_t deferred;        /* replies deferred by handlers */
    uint64_t results_ignored; /* outcomes set after the first, ignored */
    uint64_t received;        /* messages consumed from the command topic */
    /* Replies handed to Kafka, by status: fresh, cached (duplicates) and
     * deferred ones alike. A reply whose delivery fails is redelivered and
     * counted again. */
    uint64_t replied_ok;
    uint64_t replied_failed;
    uint64_t replied_retry;
    /* Handler calls timed (monotonic clock) and their total duration; the
     * mean is handler_time_ns / handler_calls. Barrier and reply time are
     * not included. */
    uint64_t handler_calls;
    uint64_t handler_time_ns;
} saga_participant_stats;

/* Copy the counters of p into *out. Safe from any thread, also while
 * another thread polls (each counter is read atomically; counters that
 * move together, such as received and handled, may be read a message
 * apart). Returns SAGA_OK, or SAGA_EINVAL when p or out is NULL (then
 * *out, if given, is zeroed). */
SAGA_API int saga_participant_get_stats(const saga_participant *p,
                                        saga_participant_stats *out);

/* The text of the last non-fatal problem (a malformed message skipped, a
 * failed handler transaction); "" if none. Valid until the next poll. */
SAGA_API const char *saga_participant_last_warning(const saga_participant *p);

/* Close consumers (leaving the group), flush pending replies, close the
 * database. Safe on NULL. */
SAGA_API void saga_participant_free(saga_participant *p);

/* A file descriptor that becomes readable when commands wait to be
 * handled: add it to your event loop (poll, epoll, libuv) and call
 * saga_participant_poll(p, 0, ...) when it is readable. poll() drains it.
 * Returns -1 (and leaves the participant as it was) if a pipe cannot be
 * made. Owned by the participant. */
SAGA_API int saga_participant_fd(saga_participant *p);

/* Handler outcomes. The first outcome a handler sets is the one sent;
 * later calls are ignored (counted in stats.results_ignored).
 * saga_result_ok steals output (may be NULL = {}). */
SAGA_API void saga_result_ok(saga_result *r, json_t *output);
SAGA_API void saga_result_fail(saga_result *r, const char *code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
SAGA_API void saga_result_retry(saga_result *r, int64_t after_ms, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* Replying later. A handler that cannot answer at once calls
 * saga_result_defer() and returns; the reply is sent when the service calls
 * one of saga_deferred_ok/fail/retry, from the thread that polls, at any
 * later time. Each frees d; the participant must still exist.
 *
 * With a database (db_url), the handler's transaction is rolled back when
 * it defers (do the work elsewhere); completing runs the barrier then: the
 * reply is recorded and a redelivered command gets it. A duplicate that
 * arrives while the reply is deferred runs the handler again (which may
 * defer again); only the first completion's reply is recorded, and sent for
 * both. If the process dies before completing, sagad re-sends the command
 * after the step's timeout.
 *
 * saga_result_defer returns NULL when an outcome was already set or on
 * allocation failure (the command is then answered `retry`).
 *
 * With a database, complete outside handlers: called from inside a handler
 * the completion would share that command's transaction, so it is refused
 * with SAGA_ESTATE and d stays valid (complete it after the handler
 * returned). */
typedef struct saga_deferred saga_deferred;

SAGA_API saga_deferred *saga_result_defer(saga_result *r);
SAGA_API int saga_deferred_ok(saga_participant *p, saga_deferred *d, json_t *output);
SAGA_API int saga_deferred_fail(saga_participant *p, saga_deferred *d, const char *code,
                                const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 4, 5)))
#endif
    ;
SAGA_API int saga_deferred_retry(saga_participant *p, saga_deferred *d, int64_t after_ms,
                                 const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 4, 5)))
#endif
    ;

#ifdef __cplusplus
}
#endif

#endif
