/* saga_signal.c - saga.saga_signal's statements (see saga_signal.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "saga_pgerr.h"
#include "saga_shared.h"
#include "saga_signal.h"

/* One statement: the saga's status and owner, whether this signal id was
 * sent before (a duplicate is absorbed whatever became of the saga), the
 * row inserted when the saga runs (no lock on the saga: sagad closes a
 * signal whose saga ended meanwhile), and sagad woken. */
static const char send_sql[] =
    "WITH s AS (SELECT status FROM saga.saga WHERE id = $1::uuid"
    "  AND ($8::text IS NULL OR started_by = $8)),"
    " dup AS (SELECT 1 FROM saga.saga_signal WHERE saga_id = $1::uuid AND name = $2"
    "  AND signal_id = $3 AND EXISTS (SELECT 1 FROM s)),"
    " ins AS (INSERT INTO saga.saga_signal (saga_id, name, signal_id, payload, failed,"
    "  reason, sent_by)"
    "  SELECT $1::uuid, $2, coalesce($3, gen_random_uuid()::text),"
    "   coalesce($4::jsonb, '{}'::jsonb), $5::bool, $6, coalesce($7, session_user)"
    "  FROM s WHERE s.status = 'running' AND NOT EXISTS (SELECT 1 FROM dup)"
    "  ON CONFLICT (saga_id, name, signal_id) DO NOTHING RETURNING signal_id)"
    " SELECT (SELECT status FROM s), (SELECT count(*) FROM ins),"
    "  (SELECT count(*) FROM dup), (SELECT pg_notify('saga_outbox', 'signal') FROM ins),"
    "  (SELECT signal_id FROM ins)";

int saga_signal_send(PGconn *db, const char *saga_id, const char *name,
                     const char *signal_id, const char *payload, int failed,
                     const char *reason, const char *sent_by, const char *owner,
                     saga_signal_outcome *out, char status[32], char id_out[201],
                     saga_error *err)
{
    const char *p[8] = {saga_id, name,    signal_id, payload, failed ? "t" : "f",
                        reason,  sent_by, owner};
    PGresult *r = PQexecParams(db, send_sql, 8, NULL, p, NULL, NULL, 0);
    int rc = SAGA_OK;
    status[0] = '\0';
    if (id_out != NULL)
        snprintf(id_out, 201, "%s", signal_id != NULL ? signal_id : "");
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        saga_pgerr_note(r);
        rc = saga__error_set(err, SAGA_EDB, "sending signal %s to saga %s: %s", name,
                             saga_id, PQerrorMessage(db));
    } else if (PQgetisnull(r, 0, 0)) {
        *out = SAGA_SIGNAL_NO_SAGA;
    } else {
        snprintf(status, 32, "%s", PQgetvalue(r, 0, 0));
        *out = strcmp(PQgetvalue(r, 0, 2), "0") != 0 ? SAGA_SIGNAL_DUPLICATE
               : strcmp(status, "running") != 0      ? SAGA_SIGNAL_NOT_RUNNING
               : strcmp(PQgetvalue(r, 0, 1), "1")    ? SAGA_SIGNAL_DUPLICATE
                                                     : SAGA_SIGNAL_ACCEPTED;
        if (id_out != NULL && !PQgetisnull(r, 0, 4)) /* the id it was given */
            snprintf(id_out, 201, "%s", PQgetvalue(r, 0, 4));
    }
    PQclear(r);
    return rc;
}

int saga_signal_claim(PGconn *db, int limit, PGresult **out, saga_error *err)
{
    char sql[900], lim[16];
    const char *p[1] = {lim};
    PGresult *r;
    snprintf(lim, sizeof lim, "%d", limit > 0 ? limit : 1);
    snprintf(
        sql, sizeof sql, "%s",
        "SELECT g.saga_id, g.name, g.signal_id, g.payload::text, g.failed, g.reason"
        " FROM saga.saga_signal g JOIN saga.saga s ON s.id = g.saga_id"
        " WHERE g.consumed_at IS NULL"
        " AND (g.deferred_until IS NULL OR g.deferred_until <= now())"
        " AND (s.status IN ('completed', 'compensated',"
        "  'resolved') OR (s.status = 'running' AND EXISTS (SELECT 1 FROM"
        "  saga.saga_step st WHERE st.saga_id = g.saga_id AND st.waiting_for = g.name"
        "  AND st.status = 'dispatched')))"
        " ORDER BY g.received_at LIMIT $1::int FOR UPDATE OF g SKIP LOCKED");
    r = PQexecParams(db, sql, 1, NULL, p, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        int rc;
        saga_pgerr_note(r);
        rc = saga__error_set(err, SAGA_EDB, "reading signals: %s", PQerrorMessage(db));
        PQclear(r);
        *out = NULL;
        return rc;
    }
    *out = r;
    return SAGA_OK;
}

int saga_signal_defer(PGconn *db, const char *saga_id, const char *name,
                      const char *signal_id, int seconds, saga_error *err)
{
    char secs[16];
    const char *p[4] = {saga_id, name, signal_id, secs};
    PGresult *r;
    int rc = SAGA_OK;
    snprintf(secs, sizeof secs, "%d", seconds);
    r = PQexecParams(db,
                     "UPDATE saga.saga_signal SET deferred_until = now() + $4::int *"
                     " interval '1 second'"
                     " WHERE saga_id = $1::uuid AND name = $2 AND signal_id = $3",
                     4, NULL, p, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
        saga_pgerr_note(r);
        rc = saga__error_set(err, SAGA_EDB, "deferring signal %s of saga %s: %s", name,
                             saga_id, PQerrorMessage(db));
    }
    PQclear(r);
    return rc;
}

int saga_signal_done(PGconn *db, const char *saga_id, const char *name,
                     const char *signal_id, const char *outcome, saga_error *err)
{
    const char *p[4] = {saga_id, name, signal_id, outcome};
    PGresult *r =
        PQexecParams(db,
                     "UPDATE saga.saga_signal SET consumed_at = now(), outcome = $4"
                     " WHERE saga_id = $1::uuid AND name = $2 AND signal_id = $3",
                     4, NULL, p, NULL, NULL, 0);
    int rc = SAGA_OK;
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
        saga_pgerr_note(r);
        rc = saga__error_set(err, SAGA_EDB, "closing signal %s of saga %s: %s", name,
                             saga_id, PQerrorMessage(db));
    }
    PQclear(r);
    return rc;
}
