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
     * timeout (10 s). Unique per running process of one service. */
    const char *instance_id;
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
 * (>= 0) or a negative saga_err. Call from one thread. */
SAGA_API int saga_participant_poll(saga_participant *p, int timeout_ms, saga_error *err);

/* Poll until saga_participant_stop(). Returns SAGA_OK after a stop, or the
 * first fatal error. */
SAGA_API int saga_participant_run(saga_participant *p, saga_error *err);

/* Ask run() to return after the current batch. Async-signal-safe. */
SAGA_API void saga_participant_stop(saga_participant *p);

/* Counters since creation. */
typedef struct saga_participant_stats {
    uint64_t handled;    /* handler calls that produced a reply */
    uint64_t duplicates; /* commands answered from the barrier's cache */
    uint64_t null_compensations;
    uint64_t hanging_refused;
    uint64_t malformed;      /* messages that were not valid commands */
    uint64_t unknown_action; /* commands with no registered handler */
} saga_participant_stats;

SAGA_API void saga_participant_get_stats(const saga_participant *p,
                                         saga_participant_stats *out);

/* The text of the last non-fatal problem (a malformed message skipped, a
 * failed handler transaction); "" if none. Valid until the next poll. */
SAGA_API const char *saga_participant_last_warning(const saga_participant *p);

/* Close consumers (leaving the group), flush pending replies, close the
 * database. Safe on NULL. */
SAGA_API void saga_participant_free(saga_participant *p);

/* Handler outcomes. saga_result_ok steals output (may be NULL = {}). */
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

#ifdef __cplusplus
}
#endif

#endif
