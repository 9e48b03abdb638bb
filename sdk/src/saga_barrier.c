/* The barrier: one row per (saga, step, element, phase) in the
 * participant's own database, written in the transaction of the business
 * effect. The classic technique (as in DTM's "sub-transaction barrier"): a
 * compensation that finds no action row inserts a "blocked" action row, so
 * the action, if it ever arrives, conflicts and is refused. A command of
 * version 1 is element 0: a step either fans out or not, so the elements of
 * one step never meet a command without one. */
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

/* The upgrade of a table made before 0.5.0, the text of
 * migrations/participant/barrier_element.sql without its comments (the
 * test of the participant checks that both give the same table). */
static const char upgrade_sql[] =
    "DO $$\n"
    "DECLARE\n"
    "    pk name;\n"
    "BEGIN\n"
    "    IF EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = "
    "'saga_barrier'::regclass\n"
    "               AND attname = 'element' AND NOT attisdropped) THEN\n"
    "        RETURN;\n"
    "    END IF;\n"
    "    LOCK TABLE saga_barrier IN ACCESS EXCLUSIVE MODE;\n"
    "    IF EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = "
    "'saga_barrier'::regclass\n"
    "               AND attname = 'element' AND NOT attisdropped) THEN\n"
    "        RETURN;\n"
    "    END IF;\n"
    "    ALTER TABLE saga_barrier ADD COLUMN element int NOT NULL DEFAULT 0;\n"
    "    SELECT conname INTO pk FROM pg_constraint\n"
    "     WHERE conrelid = 'saga_barrier'::regclass AND contype = 'p';\n"
    "    IF pk IS NOT NULL THEN\n"
    "        EXECUTE format('ALTER TABLE saga_barrier DROP CONSTRAINT %I', pk);\n"
    "    END IF;\n"
    "    ALTER TABLE saga_barrier ADD PRIMARY KEY (saga_id, step, element, phase);\n"
    "END\n"
    "$$";

/* A table of an earlier release keys rows without the element: give it
 * the column and the new key, in one transaction, when this role owns the
 * table; otherwise say who must do what. Running on with the old key would
 * take element 1 of a step for a duplicate of element 0. */
static int upgrade(PGconn *db, saga_error *err)
{
    PGresult *res = PQexec(
        db, "SELECT NOT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = c.oid"
            "  AND attname = 'element' AND NOT attisdropped),"
            " pg_has_role(c.relowner, 'USAGE'), c.relnamespace::regnamespace::text,"
            " current_user::text"
            " FROM pg_class c WHERE c.oid = to_regclass('saga_barrier')");
    int missing, may, rc;
    char schema[128], role[128];
    saga_error e = {0};

    if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
        rc = saga__error_set(err, SAGA_EDB, "reading the barrier table's columns: %s",
                             PQerrorMessage(db));
        PQclear(res);
        return rc;
    }
    missing = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
    may = strcmp(PQgetvalue(res, 0, 1), "t") == 0;
    snprintf(schema, sizeof schema, "%s", PQgetvalue(res, 0, 2));
    snprintf(role, sizeof role, "%s", PQgetvalue(res, 0, 3));
    PQclear(res);
    if (!missing)
        return SAGA_OK;
    if (!may)
        return saga__error_set(
            err, SAGA_EDB,
            "the barrier table %s.saga_barrier predates fan-out elements (it has no "
            "column \"element\") and role %s may not alter it: its owner must run "
            "migrations/participant/barrier_element.sql in schema %s",
            schema, role, schema);
    if (saga__pg_exec(db, "BEGIN", &e) == SAGA_OK) {
        /* Not saga__pg_exec: its message would quote the whole block. */
        res = PQexec(db, upgrade_sql);
        if (PQresultStatus(res) == PGRES_COMMAND_OK)
            rc = saga__pg_exec(db, "COMMIT", &e);
        else
            rc = saga__error_set(&e, SAGA_EDB, "%s", PQerrorMessage(db));
        PQclear(res);
        if (rc == SAGA_OK)
            return SAGA_OK;
        saga__pg_exec(db, "ROLLBACK", NULL);
    }
    return saga__error_set(err, SAGA_EDB,
                           "upgrading the barrier table %s.saga_barrier for fan-out "
                           "elements failed (its owner can run "
                           "migrations/participant/barrier_element.sql): %s",
                           schema, e.message);
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
        return upgrade(db, err);
    return saga__pg_exec(db,
                         "CREATE TABLE IF NOT EXISTS saga_barrier ("
                         " saga_id uuid NOT NULL,"
                         " step int NOT NULL,"
                         " phase text NOT NULL CHECK (phase IN ('invoke','compensate')),"
                         " command_id text NOT NULL,"
                         " outcome text NOT NULL,"
                         " reply jsonb,"
                         " created_at timestamptz NOT NULL DEFAULT clock_timestamp(),"
                         " element int NOT NULL DEFAULT 0,"
                         " PRIMARY KEY (saga_id, step, element, phase))",
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
     "INSERT INTO saga_barrier (saga_id, step, element, phase, command_id, outcome)"
     " VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
     6},
    {"saga_barrier_lookup",
     "SELECT outcome, reply::text FROM saga_barrier"
     " WHERE saga_id = $1 AND step = $2 AND element = $3 AND phase = $4",
     4},
    {"saga_barrier_record_batch",
     "INSERT INTO saga_barrier (saga_id, step, element, phase, command_id, outcome, "
     "reply)"
     " SELECT saga_id, step, element, phase, command_id, outcome, reply"
     " FROM jsonb_to_recordset($1::jsonb) AS x(saga_id uuid, step int, element int,"
     "  phase text, command_id text, outcome text, reply jsonb)"
     " ON CONFLICT DO NOTHING",
     1},
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

int saga__barrier_element(const saga_command *cmd)
{
    return cmd->v == SAGA_PROTOCOL_VERSION_ELEMENTS ? cmd->element : 0;
}

/* A row's key as text parameters: saga_id, step, element, phase. */
typedef struct row_key {
    const char *saga_id, *phase;
    char step[16], element[16];
} row_key;

static void key_of(row_key *k, const saga_command *cmd, const char *phase)
{
    k->saga_id = cmd->saga_id;
    k->phase = phase;
    snprintf(k->step, sizeof k->step, "%d", cmd->step);
    snprintf(k->element, sizeof k->element, "%d", saga__barrier_element(cmd));
}

/* INSERT ... ON CONFLICT DO NOTHING; *inserted tells whether it was new. */
static int claim(PGconn *db, const row_key *k, const char *command_id,
                 const char *outcome, int *inserted, saga_error *err)
{
    const char *params[6] = {k->saga_id, k->step,    k->element,
                             k->phase,   command_id, outcome};
    PGresult *res;
    int rc = SAGA_OK;

    res = PQexecPrepared(db, "saga_barrier_claim", 6, params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_COMMAND_OK)
        rc = saga__error_set(err, SAGA_EDB, "barrier insert: %s", PQerrorMessage(db));
    else
        *inserted = atoi(PQcmdTuples(res)) == 1;
    PQclear(res);
    return rc;
}

/* Read a row's outcome and reply (NULL when absent). */
static int lookup(PGconn *db, const row_key *k, char **outcome, json_t **reply,
                  saga_error *err)
{
    const char *params[4] = {k->saga_id, k->step, k->element, k->phase};
    PGresult *res;
    int rc = SAGA_OK;

    *outcome = NULL;
    *reply = NULL;
    res = PQexecPrepared(db, "saga_barrier_lookup", 4, params, NULL, NULL, 0);
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

/* A row of the group's batch: its key as text (saga_barrier's columns). */
static json_t *batch_row(const row_key *k, const char *command_id, const char *outcome,
                         json_t *reply)
{
    return json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:O?}", "saga_id", k->saga_id,
                     "step", k->step, "element", k->element, "phase", k->phase,
                     "command_id", command_id, "outcome", outcome, "reply", reply);
}

/* A row the group stored in its batch and has not inserted yet (a
 * duplicate of a command of the same group, or the action of a
 * compensation in it): 1 with *outcome (new) and *reply (a new reference,
 * or NULL), else 0. */
static int batch_lookup(const saga__barrier_batch *b, const row_key *k, char **outcome,
                        json_t **reply)
{
    size_t i;
    json_t *row;
    if (b == NULL)
        return 0;
    json_array_foreach(b->rows, i, row)
    {
        static const char *const f[4] = {"saga_id", "step", "element", "phase"};
        const char *v[4] = {k->saga_id, k->step, k->element, k->phase};
        int same = 1;
        for (int j = 0; j < 4 && same; j++)
            same = strcmp(json_string_value(json_object_get(row, f[j])), v[j]) == 0;
        if (same) {
            json_t *r = json_object_get(row, "reply");
            *outcome = strdup(json_string_value(json_object_get(row, "outcome")));
            *reply = json_is_object(r) ? json_incref(r) : NULL;
            return 1;
        }
    }
    return 0;
}

void saga__barrier_batch_clear(saga__barrier_batch *b)
{
    json_decref(b->rows);
    b->rows = NULL;
}

int saga__barrier_batch_flush(PGconn *db, saga__barrier_batch *b, int *conflicts,
                              saga_error *err)
{
    size_t n = json_array_size(b->rows);
    char *text;
    const char *params[1];
    PGresult *res;
    int rc = SAGA_OK;

    *conflicts = 0;
    if (n == 0)
        return SAGA_OK;
    if ((text = json_dumps(b->rows, JSON_COMPACT)) == NULL)
        return saga__error_set(err, SAGA_ENOMEM, "out of memory");
    params[0] = text;
    res = PQexecPrepared(db, "saga_barrier_record_batch", 1, params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_COMMAND_OK)
        rc = saga__error_set(err, SAGA_EDB, "barrier record (%zu rows): %s", n,
                             PQerrorMessage(db));
    else
        *conflicts = (int)n - atoi(PQcmdTuples(res));
    PQclear(res);
    free(text);
    saga__barrier_batch_clear(b);
    return rc;
}

/* Whether cmd's own row exists: *verdict DUPLICATE (*cached its reply,
 * the caller decrefs), HANGING (an action its compensation blocked), or
 * PROCEED when there is none. */
static int seen(PGconn *db, const saga__barrier_batch *batch, const row_key *own,
                const saga_command *cmd, saga__barrier_verdict *verdict, json_t **cached,
                saga_error *err)
{
    char *outcome = NULL;
    json_t *reply = NULL;
    int rc = batch_lookup(batch, own, &outcome, &reply)
                 ? SAGA_OK
                 : lookup(db, own, &outcome, &reply, err);

    *verdict = SAGA__BARRIER_PROCEED;
    *cached = NULL;
    if (rc != SAGA_OK || outcome == NULL)
        return rc;
    if (cmd->phase == SAGA_PHASE_INVOKE && strcmp(outcome, "blocked") == 0) {
        *verdict = SAGA__BARRIER_HANGING;
        json_decref(reply);
    } else {
        *verdict = SAGA__BARRIER_DUPLICATE;
        *cached = reply;
    }
    free(outcome);
    return SAGA_OK;
}

int saga__barrier_enter(PGconn *db, const saga__barrier_batch *batch,
                        const saga_command *cmd, saga__barrier_verdict *verdict,
                        json_t **cached, saga_error *err)
{
    int inserted = 0, rc;
    char *outcome = NULL;
    json_t *reply = NULL;
    row_key own, action;

    *cached = NULL;
    key_of(&own, cmd, saga_phase_name(cmd->phase));
    /* Only read: the row is written once, with the reply, by
     * saga__barrier_record (see saga_barrier.h). */
    if ((rc = seen(db, batch, &own, cmd, verdict, cached, err)) != SAGA_OK ||
        *verdict != SAGA__BARRIER_PROCEED)
        return rc;
    if (cmd->phase == SAGA_PHASE_INVOKE) {
        *verdict = SAGA__BARRIER_PROCEED;
        return SAGA_OK;
    }
    /* A compensation: did the action (of the same element) run? If we can
     * claim its row, it did not, and from now on it never will (the row
     * blocks it). */
    key_of(&action, cmd, "invoke");
    /* The action's row: pending in this very group, or in the table. */
    if (!batch_lookup(batch, &action, &outcome, &reply)) {
        char invoke_id[128];
        saga_command_id_format_element(
            invoke_id, sizeof invoke_id, cmd->saga_id, cmd->step, SAGA_PHASE_INVOKE,
            cmd->v == SAGA_PROTOCOL_VERSION_ELEMENTS ? cmd->element : -1);
        if ((rc = claim(db, &action, invoke_id, "blocked", &inserted, err)) != SAGA_OK)
            return rc;
        if (inserted) {
            *verdict = SAGA__BARRIER_NULL_COMP;
            return SAGA_OK;
        }
        if ((rc = lookup(db, &action, &outcome, &reply, err)) != SAGA_OK)
            return rc;
    }
    /* The action ran. If it ended in a definite failure there is nothing
     * to undo either: its writes were rolled back. */
    {
        json_t *st = json_object_get(reply, "status");
        int ok = json_is_string(st) && strcmp(json_string_value(st), "ok") == 0;
        *verdict = ok ? SAGA__BARRIER_PROCEED : SAGA__BARRIER_NULL_COMP;
    }
    free(outcome);
    json_decref(reply);
    return SAGA_OK;
}

int saga__barrier_record(PGconn *db, saga__barrier_batch *batch, const saga_command *cmd,
                         json_t *reply, const char *outcome,
                         saga__barrier_verdict *verdict, json_t **cached, saga_error *err)
{
    saga__barrier_batch own = {0};
    saga__barrier_batch *b = batch != NULL ? batch : &own;
    json_t *row;
    row_key k;
    int rc, conflicts = 0;

    *verdict = SAGA__BARRIER_PROCEED;
    *cached = NULL;
    key_of(&k, cmd, saga_phase_name(cmd->phase));
    if (b->rows == NULL)
        b->rows = json_array();
    row = batch_row(&k, cmd->command_id, outcome, reply);
    if (row == NULL || b->rows == NULL || json_array_append_new(b->rows, row) != 0) {
        saga__barrier_batch_clear(&own);
        return saga__error_set(err, SAGA_ENOMEM, "out of memory");
    }
    if (batch != NULL)
        return SAGA_OK; /* inserted with the group's others just before it commits */
    /* Alone: now, as a batch of one. Not inserted: another delivery of cmd
     * (or, for an action, its compensation) stored its row while this one
     * ran; the INSERT waited for that to commit, so the row is visible. */
    rc = saga__barrier_batch_flush(db, &own, &conflicts, err);
    if (rc == SAGA_OK && conflicts > 0) {
        rc = seen(db, NULL, &k, cmd, verdict, cached, err);
        if (rc == SAGA_OK && *verdict == SAGA__BARRIER_PROCEED)
            rc = saga__error_set(
                err, SAGA_EDB, "barrier record: the row of %s neither inserted nor found",
                cmd->command_id);
    }
    return rc;
}
