/* saga_children.c - saga.saga_child's statements for sagad's delivery
 * (see saga_children.h); the rows are made by the batch writer. */
#include <stdio.h>
#include <stdlib.h>

#include "saga_children.h"
#include "saga_pgerr.h"
#include "saga_shared.h"

#define COLUMNS "child_id, parent_id, parent_step, ended_status, result::text"

static int run(PGconn *db, const char *sql, int n, const char *const *p,
               ExecStatusType want, const char *what, PGresult **out, saga_error *err)
{
    PGresult *r = PQexecParams(db, sql, n, NULL, p, NULL, NULL, 0);
    if (PQresultStatus(r) != want) {
        int rc;
        saga_pgerr_note(r);
        rc = saga__error_set(err, SAGA_EDB, "%s: %s", what, PQerrorMessage(db));
        PQclear(r);
        if (out != NULL)
            *out = NULL;
        return rc;
    }
    if (out != NULL)
        *out = r;
    else
        PQclear(r);
    return SAGA_OK;
}

int saga_children_claim_ended(PGconn *db, int limit, PGresult **out, saga_error *err)
{
    char lim[16];
    const char *p[1] = {lim};
    snprintf(lim, sizeof lim, "%d", limit > 0 ? limit : 1);
    return run(db,
               "SELECT " COLUMNS " FROM saga.saga_child"
               " WHERE ended_at IS NOT NULL AND notified_at IS NULL"
               " AND (retry_at IS NULL OR retry_at <= now())"
               " ORDER BY ended_at LIMIT $1::int FOR UPDATE SKIP LOCKED",
               1, p, PGRES_TUPLES_OK, "reading ended child sagas", out, err);
}

int saga_children_claim_undo(PGconn *db, int limit, PGresult **out, saga_error *err)
{
    char lim[16];
    const char *p[1] = {lim};
    snprintf(lim, sizeof lim, "%d", limit > 0 ? limit : 1);
    return run(db,
               "SELECT " COLUMNS " FROM saga.saga_child"
               " WHERE compensate_at IS NOT NULL AND compensate_done_at IS NULL"
               " AND (retry_at IS NULL OR retry_at <= now())"
               " ORDER BY compensate_at LIMIT $1::int FOR UPDATE SKIP LOCKED",
               1, p, PGRES_TUPLES_OK, "reading child sagas to undo", out, err);
}

int saga_children_told(PGconn *db, const char *child_id, saga_error *err)
{
    const char *p[1] = {child_id};
    return run(db,
               "UPDATE saga.saga_child SET notified_at = now(), retry_at = NULL"
               " WHERE child_id = $1::uuid",
               1, p, PGRES_COMMAND_OK, "marking a child's end told", NULL, err);
}

int saga_children_undo_taken(PGconn *db, const char *child_id, const char *status,
                             const char *result, saga_error *err)
{
    const char *p[3] = {child_id, status, result};
    return run(db,
               "UPDATE saga.saga_child SET compensate_done_at = now(), retry_at = NULL,"
               " ended_status = coalesce($2, ended_status),"
               " result = coalesce($3::jsonb, result),"
               " ended_at = CASE WHEN $2 IS NULL THEN ended_at ELSE now() END,"
               " notified_at = CASE WHEN $2 IS NULL THEN notified_at END"
               " WHERE child_id = $1::uuid",
               3, p, PGRES_COMMAND_OK, "marking a child's undo taken", NULL, err);
}

int saga_children_later(PGconn *db, const char *child_id, int seconds, saga_error *err)
{
    char secs[16];
    const char *p[2] = {child_id, secs};
    snprintf(secs, sizeof secs, "%d", seconds);
    return run(
        db,
        "UPDATE saga.saga_child SET retry_at = now() + make_interval(secs => $2::int)"
        " WHERE child_id = $1::uuid",
        2, p, PGRES_COMMAND_OK, "putting a child's delivery off", NULL, err);
}

int saga_children_failed(PGconn *db, const char *child_id, int seconds, int *failures,
                         saga_error *err)
{
    char secs[16];
    const char *p[2] = {child_id, secs};
    PGresult *r = NULL;
    int rc;
    snprintf(secs, sizeof secs, "%d", seconds);
    rc = run(db,
             "UPDATE saga.saga_child SET failures = failures + 1,"
             " retry_at = now() + make_interval(secs => $2::int)"
             " WHERE child_id = $1::uuid RETURNING failures",
             2, p, PGRES_TUPLES_OK, "counting a child's failed delivery", &r, err);
    if (rc == SAGA_OK)
        *failures = PQntuples(r) == 1 ? atoi(PQgetvalue(r, 0, 0)) : 0;
    PQclear(r);
    return rc;
}

int saga_children_give_up(PGconn *db, const char *child_id, int undo, saga_error *err)
{
    const char *p[1] = {child_id};
    return run(db,
               undo ? "UPDATE saga.saga_child SET compensate_done_at = now()"
                      " WHERE child_id = $1::uuid"
                    : "UPDATE saga.saga_child SET notified_at = now()"
                      " WHERE child_id = $1::uuid",
               1, p, PGRES_COMMAND_OK, "setting a child's delivery aside", NULL, err);
}
