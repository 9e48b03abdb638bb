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

/* Options of a participant. Caller-allocated, read during
 * saga_participant_new only; new fields are only ever appended (see
 * saga_participant_new_sized for how sizes keep old programs working). */
typedef struct saga_participant_options {
    const char *brokers;      /* required, non-empty: Kafka bootstrap servers */
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
    /* Appended in 0.3.0. optional: a file of librdkafka settings, one
     * key=value a line (values may hold commas; '#' comments), applied
     * after kafka_options: where TLS and SASL settings and their secrets
     * go, off the command line and out of the environment. */
    const char *kafka_options_file;
    /* optional: the service's signing keys (saga/sign.h, saga_keys_load:
     * one hex key a line, the first signs, mode o-rwx). With it every
     * command must carry a valid signature by one of the keys (an unsigned
     * or badly signed one is not handled: it is counted in
     * unauthenticated and dead-lettered), and every reply is signed. */
    const char *key_file;
} saga_participant_options;

/* A handler. cmd and result are valid only during the call. db is the
 * barrier's connection, inside an open transaction (NULL without db_url):
 * write the business effect on it and do not COMMIT or ROLLBACK yourself.
 * On a `failed` or `retry` result the handler's writes are rolled back. */
typedef void (*saga_handler_fn)(const saga_command *cmd, struct pg_conn *db,
                                saga_result *result, void *arg);

/* Create a participant; connects to PostgreSQL (if db_url) and creates the
 * barrier table there if missing, creates the Kafka clients and the command
 * topic if missing (waiting up to 10 s for the broker). *out is owned by
 * the caller: saga_participant_free(). opts and its strings are copied or
 * used only during the call. Thread-safe (no shared state).
 * Errors, each with err saying what and where (*out is then NULL):
 *   SAGA_EINVAL  opts or out NULL; brokers or service NULL or empty;
 *                db_schema not letters, digits and '_'; a kafka_options
 *                (or kafka_options_file) entry that is not key=value or
 *                that librdkafka refuses; key_file holds no valid key
 *   SAGA_EIO     kafka_options_file or key_file cannot be read, or
 *                is readable by others (they hold secrets)
 *   SAGA_EDB     db_url: cannot connect, or the barrier table cannot be
 *                created or its statements prepared
 *   SAGA_EKAFKA  the Kafka clients cannot be created, or the command topic
 *                cannot be created (e.g. no broker answers in 10 s)
 *   SAGA_ENOMEM  allocation failed */
SAGA_API int saga_participant_new_sized(const saga_participant_options *opts,
                                        size_t opts_size, saga_participant **out,
                                        saga_error *err);
/* The call to use: it passes the size of saga_participant_options as this
 * program was built with, so a newer libsaga reads only the fields the
 * program knows (the others keep their defaults), and an older one accepts
 * fields it does not know only when they are unset (zero): a setting it
 * cannot honour is SAGA_EINVAL naming the byte, never ignored. opts_size
 * smaller than libsaga.so.1's first layout is SAGA_EINVAL. */
#define saga_participant_new(opts, out, err)                                             \
    saga_participant_new_sized((opts), sizeof(saga_participant_options), (out), (err))

/* Register fn for an action (phase invoke) or a compensation (phase
 * compensate) named name; fn is called with arg. name is copied. Returns
 * SAGA_OK; SAGA_EEXIST if name is already registered for that phase;
 * SAGA_EINVAL for NULL p or fn, a NULL or empty name, or a phase that is
 * neither SAGA_PHASE_INVOKE nor SAGA_PHASE_COMPENSATE; SAGA_ENOMEM. Call
 * before the first poll; not thread-safe. */
SAGA_API int saga_participant_on(saga_participant *p, saga_phase phase, const char *name,
                                 saga_handler_fn fn, void *arg);

/* Handle the commands that arrive within timeout_ms (at most a batch of
 * 200), reply to each, wait for the replies to be acknowledged by Kafka
 * and only then commit the consumed offsets. Returns the number of
 * commands handled (>= 0) or a negative saga_err: SAGA_EINVAL for NULL p;
 * SAGA_EKAFKA when replies could not be delivered, SAGA_EDB when a group
 * transaction failed (e.g. the database restarted) — in both cases the
 * commands are consumed again, so calling poll again is right — and
 * SAGA_EKAFKA for a fatal consumer error (e.g. a fenced static member:
 * restart the process). After saga_participant_stop() it returns 0 at
 * once, every time, without waiting or consuming anything: a stopped
 * participant cannot be restarted, only freed. Call from one thread. */
SAGA_API int saga_participant_poll(saga_participant *p, int timeout_ms, saga_error *err);

/* Poll until saga_participant_stop(), riding out transient Kafka and
 * database errors. Returns SAGA_OK after a stop, the first fatal error
 * (a fatal Kafka consumer error), or SAGA_EINVAL for NULL p. Call from one
 * thread. */
SAGA_API int saga_participant_run(saga_participant *p, saga_error *err);

/* Ask run() to return after the current batch (within its 200 ms poll);
 * from then on poll() returns 0 at once. A loop driven by
 * saga_participant_fd() is woken: the fd becomes readable, so it calls
 * poll() and sees the stop. Cannot be undone. Safe on NULL;
 * async-signal-safe and callable from any thread (an atomic store and a
 * write(2)), but not concurrently with saga_participant_free(). */
SAGA_API void saga_participant_stop(saga_participant *p);

/* Counters since creation, for a service's own metrics and logs.
 * New fields are only ever appended; saga_participant_get_stats passes the
 * size the program was built with, and the library writes exactly that
 * many bytes (fields it does not know are zero), so a program built
 * against older or newer headers keeps working. */
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
    /* Appended in 0.1.x. Messages sent to the dead-letter topic (malformed
     * commands and those whose reply could not be delivered), or skipped
     * and logged when there is none. */
    uint64_t dead_lettered;
    /* Replies the broker did not take (each failure counted; the command
     * is consumed again, at most max_redeliveries times for a failure that
     * cannot heal, then dead-lettered). */
    uint64_t undeliverable;
    /* ok results whose output was over max_output_bytes, answered failed
     * with code message_too_large. */
    uint64_t output_too_large;
    /* Log lines not passed to the logger because of the rate limit. */
    uint64_t log_suppressed;
    /* Appended in 0.3.0. Commands refused because key_file is set and
     * their signature was missing or wrong (also counted in
     * dead_lettered). */
    uint64_t unauthenticated;
} saga_participant_stats;

/* Copy the counters of p into *out. Safe from any thread, also while
 * another thread polls (each counter is read atomically; counters that
 * move together, such as received and handled, may be read a message
 * apart). Returns SAGA_OK, or SAGA_EINVAL when p or out is NULL (then
 * *out, if given, is zeroed). */
SAGA_API int saga_participant_get_stats_sized(const saga_participant *p,
                                              saga_participant_stats *out,
                                              size_t out_size);
#define saga_participant_get_stats(p, out)                                               \
    saga_participant_get_stats_sized((p), (out), sizeof(saga_participant_stats))

/* Where libsaga's own problems go. The library never prints; a service
 * that wants them on stderr or in its log sets a logger. */
typedef enum saga_participant_log_level {
    SAGA_PARTICIPANT_LOG_WARN = 1,  /* one message skipped, retried, refused */
    SAGA_PARTICIPANT_LOG_ERROR = 2, /* lost work: could not even be set aside */
} saga_participant_log_level;

/* Called with one line (no newline; at most about 600 bytes: values are
 * quoted only in part, the reason always kept) for each malformed or
 * dead-lettered command, undeliverable reply, output over the limit and
 * failed database transaction, with the command's topic, partition and
 * offset where there is one. Rate-limited: at most 20 lines per 10 s, then
 * one line saying how many were left out (stats.log_suppressed counts
 * them). Called from the thread that polls, inside poll(), run() and the
 * saga_deferred_* calls; must not call back into p. */
typedef void (*saga_participant_log_fn)(saga_participant_log_level level,
                                        const char *message, void *arg);

/* Set (or with fn NULL, remove) the logger; arg is passed to it. Before
 * the first poll or from the polling thread. SAGA_EINVAL for NULL p. */
SAGA_API int saga_participant_set_logger(saga_participant *p, saga_participant_log_fn fn,
                                         void *arg);

/* The dead-letter topic: where a command that cannot be handled goes, so
 * that no partition waits behind it — a malformed one (the reason: which
 * field and why; a reply_to that is not this deployment's reply topic
 * <prefix>reply or <prefix>reply.<service> is malformed), and one whose
 * reply the broker refused max_redeliveries times in a row for a reason
 * that cannot heal (too large, an unknown or forbidden topic). The message
 * goes as it came (its first message.max.bytes - 16 KiB if larger), same
 * key, with headers saga-dead-reason, saga-dead-topic, saga-dead-partition,
 * saga-dead-offset, saga-dead-service and, when cut, saga-dead-bytes (the
 * original size). Default "<topic_prefix>dead.<service>", created by
 * saga_participant_new. topic NULL or "": none — such commands are only
 * logged, counted and skipped. The topic is created if missing (waiting up
 * to 10 s for the broker). Before the first poll. Errors: SAGA_EINVAL (NULL
 * p, a name that is not a Kafka topic name), SAGA_EKAFKA (cannot create
 * it), SAGA_ENOMEM. */
SAGA_API int saga_participant_set_dead_letter_topic(saga_participant *p,
                                                    const char *topic, saga_error *err);

/* The largest output an ok result may carry, in bytes of its JSON text as
 * PostgreSQL prints it (what sagad's saga.limits max_output_bytes
 * measures); default 262,144, sagad's default. A larger one is answered
 * failed with code message_too_large and, with a database, the handler's
 * writes rolled back (without one they stay: the step is not compensated,
 * so prefer a database). 0: only the producer's message.max.bytes bounds
 * it. Negative: SAGA_EINVAL, as for NULL p. Before the first poll. */
SAGA_API int saga_participant_set_max_output_bytes(saga_participant *p, int64_t bytes);

/* How many times a command whose reply the broker refused for a reason
 * that cannot heal is consumed again before it is dead-lettered; default
 * 3, 0 dead-letters at the first such failure. Failures that can heal (no
 * broker, a timeout) are retried without counting. SAGA_EINVAL for NULL p
 * or n < 0. Before the first poll. */
SAGA_API int saga_participant_set_max_redeliveries(saga_participant *p, int n);

/* The text of the last non-fatal problem (a malformed message skipped, a
 * failed handler transaction); "" if none or for NULL p. Owned by p;
 * valid until the next poll. From the polling thread. */
SAGA_API const char *saga_participant_last_warning(const saga_participant *p);

/* Close consumers (leaving the group), flush pending replies (up to 5 s),
 * close the database and the fd, free p. Complete every outstanding
 * saga_deferred first: completing is the only way to free one, and it
 * needs p. Safe on NULL; not while another thread uses p. */
SAGA_API void saga_participant_free(saga_participant *p);

/* A file descriptor that becomes readable when commands wait to be
 * handled: add it to your event loop (poll, epoll, libuv) and call
 * saga_participant_poll(p, 0, ...) when it is readable. poll() drains it,
 * and makes it readable again when it leaves commands waiting (more than
 * one batch had arrived), so the fd alone is enough to drive p. The same
 * fd on every call. Returns -1 for NULL p, or (leaving the participant as
 * it was) if a pipe cannot be made. Owned by the participant: do not close
 * it. From the polling thread. */
SAGA_API int saga_participant_fd(saga_participant *p);

/* Handler outcomes, called from the handler on the result it was given.
 * The first outcome a handler sets is the one sent; later calls are
 * ignored (counted in stats.results_ignored). None can fail; on NULL r
 * they do nothing.
 *
 * Done: output (a JSON object, may be NULL for {}) is the step's output.
 * output is stolen, also when the call is ignored. */
SAGA_API void saga_result_ok(saga_result *r, json_t *output);

/* A definite business failure (sagad does not retry): code (NULL: "error";
 * up to 63 bytes kept) and a printf-style message (up to 511 bytes). */
SAGA_API void saga_result_fail(saga_result *r, const char *code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* A transient problem: sagad tries again, not before after_ms (0 or
 * negative: the step's backoff). The message as for saga_result_fail. */
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
 * Without a database nothing is recorded: completing just sends the reply,
 * and a duplicate runs the handler again. */
typedef struct saga_deferred saga_deferred;

/* Called by a handler instead of an outcome: returns the handle to
 * complete later (owned by the caller until a saga_deferred_* call frees
 * it), or NULL when r is NULL, an outcome was already set (counted in
 * results_ignored), or on allocation failure (the command is then
 * answered `retry`). Later outcomes set on r are ignored. */
SAGA_API saga_deferred *saga_result_defer(saga_result *r);

/* Complete d with ok and output (a JSON object, may be NULL for {}),
 * from the thread that polls p. output is stolen whatever happens, even
 * when the call fails.
 *
 * SAGA_OK means the reply was handed to the Kafka producer (queued), not
 * that it was delivered: delivery happens in the background and during
 * later polls. If it is lost, sagad re-sends the command after the step's
 * timeout, and with a database the barrier answers it with the recorded
 * reply.
 *
 * Errors (d is freed unless said otherwise; nothing is sent):
 *   SAGA_EINVAL  p or d is NULL (d, if given, stays valid)
 *   SAGA_ESTATE  with a database, called from inside a handler (the
 *                completion would share that command's transaction): d
 *                stays valid, complete it after the handler returned
 *   SAGA_EDB     the barrier's transaction failed (the database went away,
 *                say); saga_participant_last_warning says why. sagad
 *                re-sends the command after the step's timeout.
 *   SAGA_ENOMEM  allocation failed */
SAGA_API int saga_deferred_ok(saga_participant *p, saga_deferred *d, json_t *output);

/* Complete d with a definite failure: code and message as for
 * saga_result_fail. Errors, ownership of d and the meaning of SAGA_OK as
 * for saga_deferred_ok. If an earlier completion (of a duplicate) was
 * recorded, its reply is sent instead. */
SAGA_API int saga_deferred_fail(saga_participant *p, saga_deferred *d, const char *code,
                                const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 4, 5)))
#endif
    ;

/* Complete d with retry after after_ms, as saga_result_retry. Nothing is
 * recorded in the barrier: the next attempt runs the handler again.
 * Errors, ownership of d and the meaning of SAGA_OK as for
 * saga_deferred_ok. */
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
