/* The barrier: one row per (saga, step, phase) in the participant's own
 * database, written in the transaction of the business effect. The classic
 * technique (as in DTM's "sub-transaction barrier"): a compensation that
 * finds no action row inserts a "blocked" action row, so the action, if it
 * ever arrives, conflicts and is refused. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "saga_barrier.h"
#include "saga_shared.h"

int saga__pg_exec(PGconn *db, const char *sql, saga_error *err)
{
    PGresult *res = PQexec(db, sql);
    ExecStatusType st = PQresultStatus(res);
    int rc = SAGA_OK;
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
        rc = saga__error_set(err, SAGA_EDB, "%s: %s", sql, PQerrorMessage(db));
    PQclear(res);
    return rc;
}

int saga__barrier_init(PGconn *db, saga_error *err)
{
    /* Made once by the service's owner (migrations/participant/barrier.sql)
     * where the service's role may not create tables: a CREATE ... IF NOT
     * EXISTS would still need that right, so look first. */
    PGresult *res = PQexec(db, "SELECT to_regclass('saga_barrier') IS NOT NULL");
    int exists = PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1 &&
                 strcmp(PQgetvalue(res, 0, 0), "t") == 0;
    PQclear(res);
    if (exists)
        return SAGA_OK;
    return saga__pg_exec(db,
                         "CREATE TABLE IF NOT EXISTS saga_barrier ("
                         " saga_id uuid NOT NULL,"
                         " step int NOT NULL,"
                         " phase text NOT NULL CHECK (phase IN ('invoke','compensate')),"
                         " command_id text NOT NULL,"
                         " outcome text NOT NULL,"
                         " reply jsonb,"
                         " created_at timestamptz NOT NULL DEFAULT clock_timestamp(),"
                         " PRIMARY KEY (saga_id, step, phase))",
                         err);
}

/* The barrier's statements, prepared once per connection: they run for
 * every command, and parsing and planning them each time was most of
 * their cost. */
static const struct {
    const char *name, *sql;
    int nparams;
} statements[] = {
    {"saga_barrier_claim",
     "INSERT INTO saga_barrier (saga_id, step, phase, command_id, outcome)"
     " VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
     5},
    {"saga_barrier_lookup",
     "SELECT outcome, reply::text FROM saga_barrier"
     " WHERE saga_id = $1 AND step = $2 AND phase = $3",
     3},
    {"saga_barrier_record",
     "UPDATE saga_barrier SET reply = $4::jsonb, outcome = $5"
     " WHERE saga_id = $1 AND step = $2 AND phase = $3",
     5},
};

int saga__barrier_prepare(PGconn *db, saga_error *err)
{
    for (size_t i = 0; i < sizeof statements / sizeof statements[0]; i++) {
        PGresult *res = PQprepare(db, statements[i].name, statements[i].sql,
                                  statements[i].nparams, NULL);
        int ok = PQresultStatus(res) == PGRES_COMMAND_OK;
        PQclear(res);
        if (!ok)
            return saga__error_set(err, SAGA_EDB, "preparing %s: %s", statements[i].name,
                                   PQerrorMessage(db));
    }
    return SAGA_OK;
}

/* INSERT ... ON CONFLICT DO NOTHING; *inserted tells whether it was new. */
static int claim(PGconn *db, const char *saga_id, int step, const char *phase,
                 const char *command_id, const char *outcome, int *inserted,
                 saga_error *err)
{
    char stepbuf[16];
    const char *params[5] = {saga_id, stepbuf, phase, command_id, outcome};
    PGresult *res;
    int rc = SAGA_OK;

    snprintf(stepbuf, sizeof stepbuf, "%d", step);
    res = PQexecPrepared(db, "saga_barrier_claim", 5, params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_COMMAND_OK)
        rc = saga__error_set(err, SAGA_EDB, "barrier insert: %s", PQerrorMessage(db));
    else
        *inserted = atoi(PQcmdTuples(res)) == 1;
    PQclear(res);
    return rc;
}

/* Read a row's outcome and reply (NULL when absent). */
static int lookup(PGconn *db, const char *saga_id, int step, const char *phase,
                  char **outcome, json_t **reply, saga_error *err)
{
    char stepbuf[16];
    const char *params[3] = {saga_id, stepbuf, phase};
    PGresult *res;
    int rc = SAGA_OK;

    *outcome = NULL;
    *reply = NULL;
    snprintf(stepbuf, sizeof stepbuf, "%d", step);
    res = PQexecPrepared(db, "saga_barrier_lookup", 3, params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        rc = saga__error_set(err, SAGA_EDB, "barrier lookup: %s", PQerrorMessage(db));
    } else if (PQntuples(res) == 1) {
        *outcome = strdup(PQgetvalue(res, 0, 0));
        if (!PQgetisnull(res, 0, 1))
            *reply = saga__json_from_pg(PQgetvalue(res, 0, 1), 0, NULL);
    }
    PQclear(res);
    return rc;
}

int saga__barrier_enter(PGconn *db, const saga_command *cmd,
                        saga__barrier_verdict *verdict, json_t **cached, saga_error *err)
{
    int inserted = 0, rc;
    char *outcome = NULL;
    json_t *reply = NULL;

    *cached = NULL;
    rc = claim(db, cmd->saga_id, cmd->step, saga_phase_name(cmd->phase), cmd->command_id,
               "handled", &inserted, err);
    if (rc != SAGA_OK)
        return rc;
    if (!inserted) {
        if ((rc = lookup(db, cmd->saga_id, cmd->step, saga_phase_name(cmd->phase),
                         &outcome, &reply, err)) != SAGA_OK)
            return rc;
        if (cmd->phase == SAGA_PHASE_INVOKE && outcome != NULL &&
            strcmp(outcome, "blocked") == 0) {
            *verdict = SAGA__BARRIER_HANGING;
            json_decref(reply);
        } else {
            *verdict = SAGA__BARRIER_DUPLICATE;
            *cached = reply;
        }
        free(outcome);
        return SAGA_OK;
    }
    if (cmd->phase == SAGA_PHASE_INVOKE) {
        *verdict = SAGA__BARRIER_PROCEED;
        return SAGA_OK;
    }
    /* A compensation: did the action run? If we can claim its row, it did
     * not, and from now on it never will (the row blocks it). */
    {
        char invoke_id[128];
        saga_command_id_format(invoke_id, sizeof invoke_id, cmd->saga_id, cmd->step,
                               SAGA_PHASE_INVOKE);
        rc = claim(db, cmd->saga_id, cmd->step, "invoke", invoke_id, "blocked", &inserted,
                   err);
    }
    if (rc != SAGA_OK)
        return rc;
    if (inserted) {
        *verdict = SAGA__BARRIER_NULL_COMP;
        return SAGA_OK;
    }
    /* The action ran. If it ended in a definite failure there is nothing
     * to undo either: its writes were rolled back. */
    if ((rc = lookup(db, cmd->saga_id, cmd->step, "invoke", &outcome, &reply, err)) !=
        SAGA_OK)
        return rc;
    {
        json_t *st = json_object_get(reply, "status");
        int ok = json_is_string(st) && strcmp(json_string_value(st), "ok") == 0;
        *verdict = ok ? SAGA__BARRIER_PROCEED : SAGA__BARRIER_NULL_COMP;
    }
    free(outcome);
    json_decref(reply);
    return SAGA_OK;
}

int saga__barrier_record(PGconn *db, const saga_command *cmd, json_t *reply,
                         const char *outcome, saga_error *err)
{
    char stepbuf[16];
    char *text = json_dumps(reply, JSON_COMPACT);
    const char *params[5] = {cmd->saga_id, stepbuf, saga_phase_name(cmd->phase), text,
                             outcome};
    PGresult *res;
    int rc = SAGA_OK;

    if (text == NULL)
        return saga__error_set(err, SAGA_ENOMEM, "out of memory");
    snprintf(stepbuf, sizeof stepbuf, "%d", cmd->step);
    res = PQexecPrepared(db, "saga_barrier_record", 5, params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_COMMAND_OK)
        rc = saga__error_set(err, SAGA_EDB, "barrier record: %s", PQerrorMessage(db));
    PQclear(res);
    free(text);
    return rc;
}
