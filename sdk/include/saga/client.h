/* libsaga: the client side — start sagas from a service and follow them.
 *
 * The client talks to the orchestrator's PostgreSQL database: starting a
 * saga records a request that sagad turns into the saga (with the id the
 * client returns) and its first command. */
#ifndef SAGA_CLIENT_H
#define SAGA_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "saga/error.h"
#include "saga/protocol.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct saga_client saga_client;

/* Connect to the orchestrator's database (migrated by `sagactl migrate`).
 * db_url is a libpq connection string or URL, used during the call only.
 * *out is the caller's: saga_client_free(). Not thread-safe: one client
 * per thread (creating clients in several threads at once is fine).
 * Errors (*out is then NULL): SAGA_EINVAL for NULL db_url or out, SAGA_EDB
 * when the connection fails (err has libpq's reason), SAGA_ENOMEM.
 * Every call on the client reconnects first when the connection was lost
 * (a database restart); if that fails too, the call returns SAGA_EDB. */
SAGA_API int saga_client_new(const char *db_url, saga_client **out, saga_error *err);

/* Ask for a saga of the latest version of definition name, with input (a
 * JSON object, borrowed; NULL for {}). With an idempotency key, asking
 * twice gives the same saga (and *existed = 1), also when several clients
 * ask at the same moment (exactly one of them gets *existed = 0). NULL or
 * "" is no key: every call starts a new saga (bindings that cannot pass
 * NULL pass ""). id receives the saga's id at once; sagad creates the
 * saga moments later (an unknown definition shows as status `rejected`).
 * existed may be NULL.
 * The input may be at most saga.limits max_input_bytes (262,144 unless
 * changed) of JSON text as PostgreSQL stores it (docs/DEFINITIONS.md,
 * "Limits"); a larger one is refused before it is sent, or by the
 * database's trigger if the limit was lowered since the client last read
 * it: SAGA_EINVAL either way, with a message that names the size and the
 * limit (`input of saga "order" is 2,097,152 bytes; the limit is 262,144
 * (saga.limits max_input_bytes)`), and nothing is recorded. The limit is
 * read from the database only when an input is over the one last seen.
 * Errors: SAGA_EINVAL for NULL c or id, a NULL or empty name, an input
 * that is not an object or is too large; SAGA_EDB when the statement
 * fails or the connection is lost during it — the request may or may not
 * have been recorded: call again with the same idempotency key to find
 * out (without a key, asking again may start a second saga); SAGA_ENOMEM. */
SAGA_API int saga_client_start(saga_client *c, const char *name, json_t *input,
                               const char *idempotency_key, char id[SAGA_ID_LEN + 1],
                               int *existed, saga_error *err);

/* As saga_client_start, and the saga continues the caller's trace:
 * traceparent is a W3C traceparent (saga/trace.h), e.g. the one of the
 * request being served. The saga keeps its trace id (sagad gives the
 * saga a span of its own under that parent), and every command it sends
 * carries it in the `traceparent` header. NULL or "": a new trace.
 * SAGA_EINVAL, with err saying so, for a traceparent that does not parse
 * (nothing is recorded then); other errors as for saga_client_start. */
SAGA_API int saga_client_start_traced(saga_client *c, const char *name, json_t *input,
                                      const char *idempotency_key,
                                      const char *traceparent, char id[SAGA_ID_LEN + 1],
                                      int *existed, saga_error *err);

/* Options of saga_client_start_with (0.4.0). size says which fields the
 * caller has (fields are only ever appended): start from
 * SAGA_START_OPTIONS_INIT, then set what you need. */
typedef struct saga_start_options {
    size_t size;                 /* sizeof(saga_start_options) */
    const char *idempotency_key; /* as saga_client_start; NULL or "": none */
    const char *traceparent;     /* as saga_client_start_traced; NULL: a new trace */
    const char *business_key;    /* your name for the saga, 1 to 200 bytes, not
                                    unique, searchable (sagactl list --key, the
                                    HTTP API); NULL: none */
    int64_t start_at_ms;         /* start it then (wall clock, ms since 1970; sagad
                                    takes it within about a second of it); until
                                    then its status is "scheduled" and it may be
                                    cancelled (saga_client_cancel). 0 or a time
                                    past: now */
} saga_start_options;

#define SAGA_START_OPTIONS_INIT                                                          \
    {                                                                                    \
        sizeof(saga_start_options), NULL, NULL, NULL, 0                                  \
    }

/* As saga_client_start_traced, with the options above. SAGA_EINVAL also
 * for options whose size is too small to be a saga_start_options, a
 * business key empty or over 200 bytes, a negative start_at_ms (nothing
 * is recorded then). opts NULL: no options. */
SAGA_API int saga_client_start_with(saga_client *c, const char *name, json_t *input,
                                    const saga_start_options *opts,
                                    char id[SAGA_ID_LEN + 1], int *existed,
                                    saga_error *err);

/* Cancel a saga that has not started yet (scheduled, or pending), with a
 * reason (1 to 1000 bytes, recorded with the role that cancelled it): its
 * status becomes "cancelled" and sagad never starts it. SAGA_ESTATE when
 * it has started already (compensate it instead: sagactl compensate), or
 * was cancelled or rejected before; SAGA_ENOTFOUND for an unknown id;
 * SAGA_EINVAL for an id that is not a UUID or a missing reason; SAGA_EDB. */
SAGA_API int saga_client_cancel(saga_client *c, const char *id, const char *reason,
                                saga_error *err);

/* Send signal name (1 to 100 letters, digits, '_', '-', '.') to saga id
 * (0.4.0), for its wait step of that signal (docs/DEFINITIONS.md, "Waiting
 * for a signal"): payload (a JSON object, borrowed; NULL: {}) becomes the
 * step's output; failed != 0 is a verdict that fails the step instead,
 * with reason (the saga is then compensated). A signal that comes before
 * the saga waits for it is kept and delivered when it does. signal_id
 * (1 to 200 bytes) makes sending again harmless: a second signal with the
 * same id is absorbed (*duplicate = 1; duplicate may be NULL); NULL: a new
 * id. SAGA_ENOTFOUND for no such saga; SAGA_ESTATE when the saga is not
 * running (it has ended, or is compensating: it waits for no signal);
 * SAGA_EINVAL for a bad name, id, payload or a failed verdict without a
 * reason; SAGA_EDB. */
SAGA_API int saga_client_signal(saga_client *c, const char *id, const char *name,
                                const char *signal_id, json_t *payload, int failed,
                                const char *reason, int *duplicate, saga_error *err);

/* The saga's status: "pending" (requested, not yet created), "scheduled"
 * (to start later), "cancelled" (cancelled before it started), "running",
 * "compensating", "completed", "compensated", "failed", "resolved" or
 * "rejected" (the request could not become a saga). For "rejected" the
 * call returns SAGA_OK and, unlike other successful calls, fills err (if
 * not NULL) with code SAGA_OK and the reason, e.g. the unknown definition.
 * Errors (status is then ""): SAGA_EINVAL for NULL c or status or an id
 * that is not a UUID, SAGA_ENOTFOUND for an unknown id, SAGA_EDB when the
 * query fails (after one reconnection attempt). */
SAGA_API int saga_client_status(saga_client *c, const char *id, char status[32],
                                saga_error *err);

/* Wait up to timeout_ms (measured on the monotonic clock; 0 or negative:
 * look once) for the saga to end (completed, compensated, failed, resolved,
 * rejected or cancelled), checking every 50 ms; status and err as for
 * saga_client_status (SAGA_OK for any of the end states — check status).
 * SAGA_ESTATE on timeout, status then holding the last one seen; other
 * errors as for saga_client_status. Blocks the calling thread. */
SAGA_API int saga_client_wait(saga_client *c, const char *id, int timeout_ms,
                              char status[32], saga_error *err);

/* Close the connection and free c. Safe on NULL. */
SAGA_API void saga_client_free(saga_client *c);

#ifdef __cplusplus
}
#endif

#endif
