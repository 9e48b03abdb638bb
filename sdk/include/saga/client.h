/* libsaga: the client side — start sagas from a service and follow them.
 *
 * The client talks to the orchestrator's PostgreSQL database: starting a
 * saga records a request that sagad turns into the saga (with the id the
 * client returns) and its first command. */
#ifndef SAGA_CLIENT_H
#define SAGA_CLIENT_H

#include <stdint.h>

#include <jansson.h>

#include "saga/error.h"
#include "saga/protocol.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct saga_client saga_client;

/* Connect to the orchestrator's database (migrated by `sagactl migrate`).
 * *out is the caller's: saga_client_free(). Not thread-safe: one client
 * per thread. */
SAGA_API int saga_client_new(const char *db_url, saga_client **out, saga_error *err);

/* Ask for a saga of the latest version of definition name, with input (a
 * JSON object, borrowed). With an idempotency key, asking twice gives the
 * same saga (and *existed = 1). id receives the saga's id at once; sagad
 * creates the saga moments later. existed may be NULL. */
SAGA_API int saga_client_start(saga_client *c, const char *name, json_t *input,
                               const char *idempotency_key, char id[SAGA_ID_LEN + 1],
                               int *existed, saga_error *err);

/* As saga_client_start, and the saga continues the caller's trace:
 * traceparent is a W3C traceparent (saga/trace.h), e.g. the one of the
 * request being served. The saga keeps its trace id (sagad gives the
 * saga a span of its own under that parent), and every command it sends
 * carries it in the `traceparent` header. NULL or "": a new trace.
 * SAGA_EINVAL, with err saying so, for a traceparent that does not parse. */
SAGA_API int saga_client_start_traced(saga_client *c, const char *name, json_t *input,
                                      const char *idempotency_key,
                                      const char *traceparent, char id[SAGA_ID_LEN + 1],
                                      int *existed, saga_error *err);

/* The saga's status: "pending" (requested, not yet created), "running",
 * "compensating", "completed", "compensated", "failed", "resolved" or
 * "rejected" (the request could not become a saga: err says why).
 * SAGA_ENOTFOUND for an unknown id. */
SAGA_API int saga_client_status(saga_client *c, const char *id, char status[32],
                                saga_error *err);

/* Wait up to timeout_ms for the saga to end (completed, compensated,
 * failed, resolved or rejected); status as above. SAGA_ESTATE on timeout
 * (status then holds the last one seen). */
SAGA_API int saga_client_wait(saga_client *c, const char *id, int timeout_ms,
                              char status[32], saga_error *err);

/* Close the connection. Safe on NULL. */
SAGA_API void saga_client_free(saga_client *c);

#ifdef __cplusplus
}
#endif

#endif
