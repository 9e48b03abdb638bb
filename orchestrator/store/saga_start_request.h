/* saga_start_request.h - reading saga.start_request, the queue the client
 * and sagactl write start requests into (marking them done is the batch
 * writer's: saga_batch_add_request_done). */
#ifndef SAGA_START_REQUEST_H
#define SAGA_START_REQUEST_H

#include <libpq-fe.h>

#include "saga/error.h"

/* The columns of the rows below, by index. */
enum {
    SAGA_SR_ID = 0,
    SAGA_SR_NAME,
    SAGA_SR_INPUT, /* the input's JSON text */
    SAGA_SR_KEY,   /* the idempotency key, NULL when none */
    SAGA_SR_TRACEPARENT,
    SAGA_SR_BY,           /* requested_by: the role that inserted it */
    SAGA_SR_BUSINESS_KEY, /* NULL when none */
    SAGA_SR_PARENT_ID,    /* a child saga's parent (NULL when none) */
    SAGA_SR_PARENT_STEP   /* and the parent's step that started it */
};

/* Inside an open transaction: lock and return up to limit pending requests
 * that are due (a scheduled one once its start_at has come; only only_id
 * when not NULL), the longest due first, skipping those another
 * sagad holds (FOR UPDATE SKIP LOCKED). *out is the caller's (PQclear);
 * SAGA_EDB with err, and the SQLSTATE noted for saga_pgerr, on failure. */
int saga_store_claim_start_requests(PGconn *db, const char *only_id, int limit,
                                    PGresult **out, saga_error *err);

/* Inside an open transaction: lock and return request id if it is still
 * pending and due (no row when it is not), with the same columns. */
int saga_store_lock_start_request(PGconn *db, const char *id, PGresult **out,
                                  saga_error *err);

#endif
