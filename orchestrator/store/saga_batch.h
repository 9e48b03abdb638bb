/* Batched persistence for sagad's hot path: many sagas loaded with two
 * statements, every change of a batch written with five, all sent in libpq
 * pipeline mode as prepared statements, so a batch costs two or three round
 * trips and one COMMIT however many replies or timers it holds.
 *
 * It is the one writer of saga, step, history and outbox rows: sagad's
 * engine and sagactl's repairs both go through it. */
#ifndef SAGA_BATCH_H
#define SAGA_BATCH_H

#include <libpq-fe.h>

#include "saga/error.h"
#include "saga_machine.h"
#include "saga_store.h"

/* Prepare the batch statements on db that it does not have yet; needed
 * once per connection (again after PQreset), harmless again. */
int saga_batch_prepare(PGconn *db, saga_error *err);

/* BEGIN (when begin is set), then load the sagas ids[0..n) (distinct, lower-case, sorted
 * ascending so that concurrent sagad lock rows in the same order) with
 * their steps, locking them FOR UPDATE. out[i] is the state of ids[i], or
 * NULL when there is no such saga; the states are the caller's
 * (saga_state_free). The transaction stays open, also on error (the caller
 * rolls back).
 * A saga whose definition cannot be loaded (missing or unreadable in the
 * store) fails the load, unless set_aside (n flags) is given: then it is
 * set aside so that it cannot stall the sagas loaded with it — out[i]
 * stays NULL, set_aside[i] is 1, its timer is cleared and its history
 * records definition_unavailable with the reason (once in a row), in the
 * caller's transaction; err is untouched then. */
int saga_batch_load(PGconn *db, saga_defs *defs, char (*ids)[SAGA_ID_LEN + 1], int n,
                    int begin, saga_state **out, unsigned char *set_aside,
                    saga_error *err);

/* Claim up to limit sagas whose timer is due (FOR UPDATE SKIP LOCKED, so
 * several sagad share them), inside an open transaction; their ids go to
 * ids (room for limit), sorted ascending. */
int saga_batch_claim_due(PGconn *db, int limit, char (*ids)[SAGA_ID_LEN + 1], int *n,
                         saga_error *err);

/* Insert sagas just started (START applied) inside an open transaction.
 * keys[i] is the idempotency key of states[i] or NULL; callers[i] the
 * role that asked for it (its start request's requested_by: a key is its
 * caller's), NULL (or callers NULL) for the role writing;
 * business_keys[i] its business key, NULL (or business_keys NULL) for
 * none. On return
 * existing[i] is "" when states[i] was created, else the id of the saga
 * that already holds its caller's key (nothing written for it). */
int saga_batch_insert_new(PGconn *db, saga_state *const *states, const char *const *keys,
                          const char *const *callers, const char *const *business_keys,
                          int n, char (*existing)[SAGA_ID_LEN + 1], saga_error *err);

/* The writes of one batch, accumulated in memory. */
typedef struct saga_batch saga_batch;

/* actor and topic_prefix are copied. owner names this sagad on the outbox
 * rows it writes, which it then sends itself: other instances leave them
 * alone for lease_s seconds. owner NULL (sagactl): the rows are nobody's,
 * and whichever sagad sees them first sends them. */
saga_batch *saga_batch_new(const saga_store_opts *o, const char *owner, int lease_s);
void saga_batch_free(saga_batch *b);

/* Record s's saga row as it is now (status, cursor, timer): for a saga
 * created in this transaction whose state changed after
 * saga_batch_insert_new wrote it (a command held back by the gate), or
 * whose stored timer fired early (nothing was due) and is set to
 * s->wake_at. */
int saga_batch_add_saga_row(saga_batch *b, const saga_state *s, saga_error *err);

/* Record what one apply changed: the saga row (unless created, for a saga
 * inserted by saga_batch_insert_new: then every step is written), its dirty
 * steps, and its actions (history, commands). When one saga is applied
 * several times in a batch, its last row wins. */
int saga_batch_add(saga_batch *b, const saga_state *s, const saga_actions *actions,
                   int created, saga_error *err);

/* Mark a start request processed, with error (NULL when it started). */
int saga_batch_add_request_done(saga_batch *b, const char *request_id, const char *error,
                                saga_error *err);

/* Something sagad set aside (saga.dead_letter). Strings are copied,
 * cleaned (non-printable bytes as '?') and bounded; the payload is kept
 * up to SAGA_DEAD_PAYLOAD_MAX bytes. topic NULL: not a Kafka message
 * (partition and offset unused). */
#define SAGA_DEAD_PAYLOAD_MAX 65536
typedef struct saga_dead_letter {
    const char *source; /* "reply", "timer" or "start_request" */
    const char *topic;
    int partition;
    int64_t offset;
    const char *key; /* may be NULL; key_len bytes */
    size_t key_len;
    const char *ref; /* the saga or request it concerns, NULL: unknown */
    const void *payload;
    size_t payload_len;
    const char *reason;
    int attempts;
} saga_dead_letter;

/* Record a dead letter (written at commit; a reply already set aside
 * under its topic, partition and offset is not written twice). */
int saga_batch_add_dead_letter(saga_batch *b, const saga_dead_letter *d, saga_error *err);

/* Take saga_id off the timers (wake_at NULL) with a saga_set_aside
 * history line saying reason: its timer fails every time it fires. */
int saga_batch_add_timer_set_aside(saga_batch *b, const char *saga_id, const char *reason,
                                   saga_error *err);

/* Forget everything recorded (after a rollback). */
void saga_batch_reset(saga_batch *b);

/* Number of sagas recorded since the last reset. */
int saga_batch_count(const saga_batch *b);

/* Whether the batch starts, asks to undo or ends a child saga (sagad then
 * delivers soon, not at its next scan). */
int saga_batch_has_children(const saga_batch *b);

/* Write everything recorded and COMMIT, in one round trip. The commands
 * written are appended to sent with their outbox ids. The batch is reset
 * whatever the outcome; on error the transaction is left for the caller
 * to roll back. */
int saga_batch_commit(PGconn *db, saga_batch *b, saga_outbox *sent, saga_error *err);

#endif
