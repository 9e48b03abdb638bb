/* saga_start_request.c - reading the start request queue (see
 * saga_start_request.h). */
#include <stdio.h>

#include "saga_pgerr.h"
#include "saga_shared.h"
#include "saga_start_request.h"

#define COLUMNS                                                                          \
    "id, name, input::text, idempotency_key, traceparent, requested_by, business_key,"   \
    " parent_id, parent_step"

static int query(PGconn *db, const char *sql, const char *param, const char *what,
                 PGresult **out, saga_error *err)
{
    const char *p[1] = {param};
    PGresult *r = PQexecParams(db, sql, 1, NULL, p, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        int rc;
        saga_pgerr_note(r);
        rc = saga__error_set(err, SAGA_EDB, "%s: %s", what, PQerrorMessage(db));
        PQclear(r);
        *out = NULL;
        return rc;
    }
    *out = r;
    return SAGA_OK;
}

int saga_store_claim_start_requests(PGconn *db, const char *only_id, int limit,
                                    PGresult **out, saga_error *err)
{
    char sql[512];
    snprintf(sql, sizeof sql,
             "SELECT " COLUMNS " FROM saga.start_request"
             " WHERE processed_at IS NULL AND coalesce(start_at, requested_at) <= now()"
             " AND ($1::uuid IS NULL OR id = $1::uuid)"
             " ORDER BY coalesce(start_at, requested_at) LIMIT %d FOR UPDATE SKIP LOCKED",
             limit > 0 ? limit : 1);
    return query(db, sql, only_id, "reading start requests", out, err);
}

int saga_store_lock_start_request(PGconn *db, const char *id, PGresult **out,
                                  saga_error *err)
{
    char what[96];
    snprintf(what, sizeof what, "reading start request %s", id);
    return query(db,
                 "SELECT " COLUMNS " FROM saga.start_request"
                 " WHERE id = $1 AND processed_at IS NULL"
                 " AND coalesce(start_at, requested_at) <= now() FOR UPDATE",
                 id, what, out, err);
}
