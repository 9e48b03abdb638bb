/* Batched loads and writes (see saga_batch.h). Rows travel as one JSON
 * array per table and are unpacked by jsonb_to_recordset, so a statement's
 * text and plan do not depend on the batch size and every value is escaped
 * by jansson, not by hand. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "saga_batch.h"
#include "saga_pgerr.h"

/* ---- statements ---- */

/* Times travel as ms since the epoch. The conversions are written out
 * rather than called as saga.ms()/saga.ts(): PostgreSQL does not inline
 * those, and calling them per row tripled the cost of a load. */

static const char load_sagas_sql[] =
    "SELECT id, name, version, status, cursor_step, input::text, (extract(epoch FROM "
    "created_at) * 1000)::bigint,"
    " (extract(epoch FROM updated_at) * 1000)::bigint, (extract(epoch FROM deadline_at) "
    "* 1000)::bigint, (extract(epoch FROM wake_at) * 1000)::bigint, traceparent,"
    " (extract(epoch FROM progressed_at) * 1000)::bigint"
    " FROM saga.saga WHERE id = ANY($1::uuid[]) ORDER BY id FOR UPDATE";

static const char load_steps_sql[] =
    "SELECT saga_id, idx, status, attempts, awaiting, (extract(epoch FROM due_at) * "
    "1000)::bigint,"
    " (extract(epoch FROM started_at) * 1000)::bigint, (extract(epoch FROM finished_at) "
    "* 1000)::bigint, output::text, error::text,"
    " attempt_base FROM saga.saga_step WHERE saga_id = ANY($1::uuid[])"
    " ORDER BY saga_id, idx";

static const char claim_due_sql[] =
    "SELECT id FROM (SELECT id FROM saga.saga WHERE wake_at <= now()"
    " ORDER BY wake_at LIMIT $1 FOR UPDATE SKIP LOCKED) c ORDER BY id";

/* A saga applied several times in one batch appears once per apply; the
 * last row (highest seq) is the state to keep. */
static const char update_sagas_sql[] =
    "UPDATE saga.saga AS s SET status = x.status, cursor_step = x.cursor_step,"
    " wake_at = to_timestamp(x.wake_at / 1000.0), updated_at = to_timestamp(x.updated_at "
    "/ 1000.0),"
    " progressed_at = coalesce(to_timestamp(x.progressed_at / 1000.0), s.progressed_at),"
    " deadline_at = to_timestamp(x.deadline_at / 1000.0)"
    " FROM (SELECT DISTINCT ON (id) * FROM jsonb_to_recordset($1::jsonb)"
    "   AS r(seq int, id uuid, status text, cursor_step int, wake_at bigint,"
    "        updated_at bigint, progressed_at bigint, deadline_at bigint)"
    "   ORDER BY id, seq DESC) AS x"
    " WHERE s.id = x.id";

static const char upsert_steps_sql[] =
    "INSERT INTO saga.saga_step (saga_id, idx, name, status, attempts, attempt_base,"
    " awaiting, due_at, output, error, started_at, finished_at)"
    " SELECT saga_id, idx, name, status, attempts, attempt_base, awaiting,"
    " to_timestamp(due_at / 1000.0), output, error, to_timestamp(started_at / 1000.0), "
    "to_timestamp(finished_at / 1000.0)"
    " FROM (SELECT DISTINCT ON (saga_id, idx) * FROM jsonb_to_recordset($1::jsonb)"
    "   AS r(seq int, saga_id uuid, idx int, name text, status text, attempts int,"
    "        attempt_base int, awaiting bool, due_at bigint, output jsonb, error jsonb,"
    "        started_at bigint, finished_at bigint)"
    "   ORDER BY saga_id, idx, seq DESC) AS x"
    " ON CONFLICT (saga_id, idx) DO UPDATE SET status = EXCLUDED.status,"
    " attempts = EXCLUDED.attempts, attempt_base = EXCLUDED.attempt_base,"
    " awaiting = EXCLUDED.awaiting, due_at = EXCLUDED.due_at, output = EXCLUDED.output,"
    " error = EXCLUDED.error, started_at = EXCLUDED.started_at,"
    " finished_at = EXCLUDED.finished_at";

/* History ids follow the order the machine produced the events in. */
static const char insert_events_sql[] =
    "INSERT INTO saga.saga_event (saga_id, at, kind, step, phase, attempt, detail, actor)"
    " SELECT saga_id, to_timestamp(at / 1000.0), kind, step, phase, attempt, detail, "
    "actor"
    " FROM jsonb_to_recordset($1::jsonb) AS x(seq int, saga_id uuid, at bigint,"
    "   kind text, step int, phase text, attempt int, detail jsonb, actor text)"
    " ORDER BY seq";

static const char insert_outbox_sql[] =
    "INSERT INTO saga.outbox (saga_id, topic, msg_key, payload, traceparent, claimed_by,"
    " claimed_until)"
    " SELECT saga_id, topic, msg_key, payload, traceparent, $2,"
    " now() + make_interval(secs => $3::int)"
    " FROM jsonb_to_recordset($1::jsonb) AS x(seq int, saga_id uuid, topic text,"
    "   msg_key text, payload text, traceparent text) ORDER BY seq"
    " RETURNING id, topic, msg_key, payload, traceparent";

static const char finish_requests_sql[] =
    "UPDATE saga.start_request AS q SET processed_at = now(), error = x.error"
    " FROM jsonb_to_recordset($1::jsonb) AS x(id uuid, error text) WHERE q.id = x.id";

static const char insert_sagas_sql[] =
    "INSERT INTO saga.saga (id, name, version, status, cursor_step, input,"
    " idempotency_key, deadline_at, wake_at, created_at, updated_at, progressed_at,"
    " traceparent)"
    " SELECT id, name, version, status, cursor_step, input, idempotency_key,"
    " to_timestamp(deadline_at / 1000.0), to_timestamp(wake_at / 1000.0), "
    "to_timestamp(created_at / 1000.0), to_timestamp(created_at / 1000.0),"
    " to_timestamp(created_at / 1000.0), traceparent"
    " FROM jsonb_to_recordset($1::jsonb) AS x(seq int, id uuid, name text, version int,"
    "   status text, cursor_step int, input jsonb, idempotency_key text,"
    "   deadline_at bigint, wake_at bigint, created_at bigint, traceparent text)"
    " ORDER BY seq"
    " ON CONFLICT (idempotency_key) DO NOTHING RETURNING id";

/* A message is kept whole up to 64 KiB; bytes travel as hex (a Kafka
 * message may hold NUL or bytes that are not UTF-8). A reply consumed
 * again after a rewind is set aside once. */
static const char insert_dead_sql[] =
    "INSERT INTO saga.dead_letter (source, topic, kafka_partition, kafka_offset, msg_key,"
    " ref, payload, payload_bytes, reason, attempts, created_by)"
    " SELECT source, topic, kafka_partition, kafka_offset, msg_key, ref,"
    " decode(payload, 'hex'), payload_bytes, reason, attempts, $2"
    " FROM jsonb_to_recordset($1::jsonb) AS x(seq int, source text, topic text,"
    "   kafka_partition int, kafka_offset bigint, msg_key text, ref text, payload text,"
    "   payload_bytes int, reason text, attempts int) ORDER BY seq"
    " ON CONFLICT (topic, kafka_partition, kafka_offset) WHERE kafka_offset IS NOT NULL"
    " DO NOTHING";

/* A saga whose timer fails every time it fires is taken off the timers
 * (an operator looks at it, repairs, and replays or retries it). */
static const char set_aside_timers_sql[] =
    "WITH x AS (SELECT * FROM jsonb_to_recordset($1::jsonb) AS r(seq int, id uuid,"
    "   reason text)),"
    " s AS (UPDATE saga.saga AS g SET wake_at = NULL, updated_at = now() FROM x"
    "   WHERE g.id = x.id RETURNING g.id, x.reason, x.seq)"
    " INSERT INTO saga.saga_event (saga_id, at, kind, detail, actor)"
    " SELECT id, clock_timestamp(), 'saga_set_aside', jsonb_build_object('reason', "
    "reason),"
    " $2 FROM s ORDER BY seq";

static const char key_holders_sql[] =
    "SELECT idempotency_key, id FROM saga.saga WHERE idempotency_key IN"
    " (SELECT jsonb_array_elements_text($1::jsonb))";

static const struct {
    const char *name, *sql;
    int nparams;
} statements[] = {
    {"saga_load_sagas", load_sagas_sql, 1},
    {"saga_load_steps", load_steps_sql, 1},
    {"saga_claim_due", claim_due_sql, 1},
    {"saga_update_sagas", update_sagas_sql, 1},
    {"saga_upsert_steps", upsert_steps_sql, 1},
    {"saga_insert_events", insert_events_sql, 1},
    {"saga_insert_outbox", insert_outbox_sql, 3},
    {"saga_finish_requests", finish_requests_sql, 1},
    {"saga_insert_sagas", insert_sagas_sql, 1},
    {"saga_key_holders", key_holders_sql, 1},
    {"saga_insert_dead", insert_dead_sql, 2},
    {"saga_set_aside_timers", set_aside_timers_sql, 2},
};

int saga_batch_prepare(PGconn *db, saga_error *err)
{
    for (size_t i = 0; i < sizeof statements / sizeof statements[0]; i++) {
        PGresult *r = PQprepare(db, statements[i].name, statements[i].sql,
                                statements[i].nparams, NULL);
        int ok = PQresultStatus(r) == PGRES_COMMAND_OK;
        PQclear(r);
        if (!ok)
            return saga_error_set(err, SAGA_EDB, "preparing %s: %s", statements[i].name,
                                  PQerrorMessage(db));
    }
    return SAGA_OK;
}

/* ---- pipeline helpers ---- */

static int send_prepared(PGconn *db, const char *name, int n, const char *const *params,
                         saga_error *err)
{
    if (PQsendQueryPrepared(db, name, n, params, NULL, NULL, 0) != 1)
        return saga_error_set(err, SAGA_EDB, "sending %s: %s", name, PQerrorMessage(db));
    return SAGA_OK;
}

static int send_plain(PGconn *db, const char *sql, saga_error *err)
{
    if (PQsendQueryParams(db, sql, 0, NULL, NULL, NULL, NULL, 0) != 1)
        return saga_error_set(err, SAGA_EDB, "sending %s: %s", sql, PQerrorMessage(db));
    return SAGA_OK;
}

/* The result of the next statement of the pipeline (the caller PQclear()s
 * it), or NULL with err set when it failed. what names it for the error. */
static PGresult *next_result(PGconn *db, ExecStatusType want, const char *what,
                             saga_error *err)
{
    PGresult *r = PQgetResult(db), *extra;
    if (r == NULL) {
        saga_error_set(err, SAGA_EDB, "%s: no result: %s", what, PQerrorMessage(db));
        return NULL;
    }
    /* Each statement's results end with a NULL. */
    while ((extra = PQgetResult(db)) != NULL)
        PQclear(extra);
    if (PQresultStatus(r) != want) {
        if (PQresultStatus(r) != PGRES_PIPELINE_ABORTED)
            saga_pgerr_note(r);
        if (err != NULL && err->code == SAGA_OK)
            saga_error_set(err, SAGA_EDB, "%s: %s", what,
                           PQresultStatus(r) == PGRES_PIPELINE_ABORTED
                               ? "skipped after an earlier error"
                               : PQresultErrorMessage(r));
        PQclear(r);
        return NULL;
    }
    return r;
}

/* Read up to the pipeline's sync point and leave pipeline mode, whatever
 * state the results were in. synced: PQpipelineSync() was sent. */
static void end_pipeline(PGconn *db, int synced)
{
    PGresult *r;
    if (!synced && PQpipelineSync(db) != 1) {
        PQexitPipelineMode(db);
        return;
    }
    for (;;) {
        r = PQgetResult(db);
        if (r == NULL) {
            if (PQstatus(db) != CONNECTION_OK)
                break;
            continue;
        }
        if (PQresultStatus(r) == PGRES_PIPELINE_SYNC) {
            PQclear(r);
            break;
        }
        PQclear(r);
    }
    PQexitPipelineMode(db);
}

static int64_t get_i64(PGresult *r, int row, int col)
{
    return PQgetisnull(r, row, col) ? 0 : strtoll(PQgetvalue(r, row, col), NULL, 10);
}

static json_t *get_json(PGresult *r, int row, int col)
{
    return PQgetisnull(r, row, col)
               ? NULL
               : json_loads(PQgetvalue(r, row, col), JSON_DECODE_ANY, NULL);
}

/* "{id,id,...}": ids are validated UUIDs, so no quoting is needed. */
static char *uuid_array(char (*ids)[SAGA_ID_LEN + 1], int n)
{
    size_t cap = (size_t)n * (SAGA_ID_LEN + 1) + 3, len = 0;
    char *a = malloc(cap);
    if (a == NULL)
        return NULL;
    a[len++] = '{';
    for (int i = 0; i < n; i++) {
        if (i > 0)
            a[len++] = ',';
        memcpy(a + len, ids[i], SAGA_ID_LEN);
        len += SAGA_ID_LEN;
    }
    a[len++] = '}';
    a[len] = '\0';
    return a;
}

static int find_id(char (*ids)[SAGA_ID_LEN + 1], int n, const char *id)
{
    int lo = 0, hi = n - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2, c = strncmp(ids[mid], id, SAGA_ID_LEN);
        if (c == 0)
            return mid;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid - 1;
    }
    return -1;
}

/* ---- loads ---- */

static int fill_saga(PGconn *db, saga_defs *defs, PGresult *r, int row, saga_state **out,
                     saga_error *err)
{
    const saga_definition *def;
    const char *id = PQgetvalue(r, row, 0);
    json_t *input;
    saga_state *s;
    int rc = saga_store_get_definition(db, defs, PQgetvalue(r, row, 1),
                                       atoi(PQgetvalue(r, row, 2)), &def, err);
    if (rc != SAGA_OK)
        return rc;
    input = get_json(r, row, 5);
    s = saga_state_new(def, id, input);
    json_decref(input);
    if (s == NULL)
        return saga_error_set(err, SAGA_ENOMEM, "out of memory");
    if (saga_status_parse(PQgetvalue(r, row, 3), &s->status) != 0) {
        saga_state_free(s);
        return saga_error_set(err, SAGA_EDB, "saga %s has unknown status", id);
    }
    s->cursor = atoi(PQgetvalue(r, row, 4));
    s->created_at = get_i64(r, row, 6);
    s->updated_at = get_i64(r, row, 7);
    s->deadline_at = get_i64(r, row, 8);
    s->wake_at = get_i64(r, row, 9);
    snprintf(s->traceparent, sizeof s->traceparent, "%s", PQgetvalue(r, row, 10));
    s->progressed_at = get_i64(r, row, 11);
    *out = s;
    return SAGA_OK;
}

static void fill_step(saga_state *s, PGresult *r, int row)
{
    int idx = atoi(PQgetvalue(r, row, 1));
    saga_step_state *st;
    if (idx < 0 || idx >= s->nsteps)
        return;
    st = &s->steps[idx];
    saga_step_status_parse(PQgetvalue(r, row, 2), &st->status);
    st->attempts = atoi(PQgetvalue(r, row, 3));
    st->awaiting = PQgetvalue(r, row, 4)[0] == 't';
    st->due_at = get_i64(r, row, 5);
    st->started_at = get_i64(r, row, 6);
    st->finished_at = get_i64(r, row, 7);
    json_decref(st->output);
    json_decref(st->error);
    st->output = get_json(r, row, 8);
    st->error = get_json(r, row, 9);
    st->attempt_base = atoi(PQgetvalue(r, row, 10));
}

/* Keep a saga whose definition cannot be loaded out of the timers and say
 * why in its history; an operator repairs the definition, then retries. */
static int set_aside_saga(PGconn *db, const char *id, const char *why, saga_error *err)
{
    const char *p[2] = {id, why};
    PGresult *r = PQexecParams(
        db,
        "WITH s AS (UPDATE saga.saga SET wake_at = NULL WHERE id = $1 RETURNING id)"
        " INSERT INTO saga.saga_event (saga_id, at, kind, detail)"
        " SELECT id, clock_timestamp(), 'definition_unavailable',"
        " jsonb_build_object('error', $2::text) FROM s"
        /* Once in a row: each reply that comes for it would add one. */
        " WHERE (SELECT kind FROM saga.saga_event WHERE saga_id = s.id"
        "  ORDER BY id DESC LIMIT 1) IS DISTINCT FROM 'definition_unavailable'",
        2, NULL, p, NULL, NULL, 0);
    int ok = PQresultStatus(r) == PGRES_COMMAND_OK;
    if (!ok)
        saga_pgerr_note(r);
    PQclear(r);
    if (!ok)
        return saga_error_set(err, SAGA_EDB, "setting saga %s aside: %s", id,
                              PQerrorMessage(db));
    return SAGA_OK;
}

int saga_batch_load(PGconn *db, saga_defs *defs, char (*ids)[SAGA_ID_LEN + 1], int n,
                    int begin, saga_state **out, unsigned char *set_aside,
                    saga_error *err)
{
    PGresult *rs = NULL, *rt = NULL, *rb = NULL;
    char *arr = uuid_array(ids, n);
    const char *p[1] = {arr};
    int rc = SAGA_OK, synced = 0;

    for (int i = 0; i < n; i++)
        out[i] = NULL;
    if (arr == NULL)
        return saga_error_set(err, SAGA_ENOMEM, "out of memory");
    if (PQenterPipelineMode(db) != 1) {
        free(arr);
        return saga_error_set(err, SAGA_EDB, "entering pipeline mode: %s",
                              PQerrorMessage(db));
    }
    if ((begin && (rc = send_plain(db, "BEGIN", err)) != SAGA_OK) ||
        (rc = send_prepared(db, "saga_load_sagas", 1, p, err)) != SAGA_OK ||
        (rc = send_prepared(db, "saga_load_steps", 1, p, err)) != SAGA_OK)
        goto out;
    if (PQpipelineSync(db) != 1) {
        rc = saga_error_set(err, SAGA_EDB, "pipeline sync: %s", PQerrorMessage(db));
        goto out;
    }
    synced = 1;
    if (begin && (rb = next_result(db, PGRES_COMMAND_OK, "BEGIN", err)) == NULL)
        rc = SAGA_EDB;
    rs = next_result(db, PGRES_TUPLES_OK, "loading sagas", err);
    rt = next_result(db, PGRES_TUPLES_OK, "loading saga steps", err);
    if (rs == NULL || rt == NULL)
        rc = SAGA_EDB;
out:
    end_pipeline(db, synced);
    free(arr);
    if (rc == SAGA_OK) {
        /* Definitions missing from the cache are read now, outside the
         * pipeline. */
        for (int i = 0; set_aside != NULL && i < n; i++)
            set_aside[i] = 0;
        for (int i = 0; i < PQntuples(rs) && rc == SAGA_OK; i++) {
            int k = find_id(ids, n, PQgetvalue(rs, i, 0));
            if (k < 0 || out[k] != NULL)
                continue;
            rc = fill_saga(db, defs, rs, i, &out[k], err);
            if ((rc == SAGA_EDEF || rc == SAGA_ENOTFOUND) && set_aside != NULL &&
                err != NULL) {
                char why[sizeof err->message];
                snprintf(why, sizeof why, "%s", err->message);
                memset(err, 0, sizeof *err);
                out[k] = NULL;
                set_aside[k] = 1;
                rc = set_aside_saga(db, ids[k], why, err);
            }
        }
        for (int i = 0; i < PQntuples(rt) && rc == SAGA_OK; i++) {
            int k = find_id(ids, n, PQgetvalue(rt, i, 0));
            if (k >= 0 && out[k] != NULL)
                fill_step(out[k], rt, i);
        }
        if (rc != SAGA_OK)
            for (int i = 0; i < n; i++) {
                saga_state_free(out[i]);
                out[i] = NULL;
            }
    }
    PQclear(rb);
    PQclear(rs);
    PQclear(rt);
    return rc;
}

int saga_batch_claim_due(PGconn *db, int limit, char (*ids)[SAGA_ID_LEN + 1], int *n,
                         saga_error *err)
{
    char lbuf[16];
    const char *p[1] = {lbuf};
    PGresult *r;
    snprintf(lbuf, sizeof lbuf, "%d", limit);
    *n = 0;
    r = PQexecPrepared(db, "saga_claim_due", 1, p, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        saga_pgerr_note(r);
        PQclear(r);
        return saga_error_set(err, SAGA_EDB, "claiming due timers: %s",
                              PQerrorMessage(db));
    }
    *n = PQntuples(r);
    for (int i = 0; i < *n; i++)
        snprintf(ids[i], SAGA_ID_LEN + 1, "%s", PQgetvalue(r, i, 0));
    PQclear(r);
    return SAGA_OK;
}

/* ---- new sagas ---- */

static void set_i64(json_t *o, const char *key, int64_t v)
{
    json_object_set_new(o, key, json_integer((json_int_t)v));
}

/* Times of 0 mean "none": the key stays out and the column NULL. */
static void set_ms(json_t *o, const char *key, int64_t v)
{
    if (v > 0)
        set_i64(o, key, v);
}

static char *dump(json_t *a)
{
    return json_dumps(a, JSON_COMPACT);
}

int saga_batch_insert_new(PGconn *db, saga_state *const *states, const char *const *keys,
                          int n, char (*existing)[SAGA_ID_LEN + 1], saga_error *err)
{
    json_t *rows = json_array(), *keyarr = json_array();
    char *text = NULL, *keytext = NULL;
    PGresult *r = NULL;
    int rc = SAGA_OK, nkeys = 0;

    if (rows == NULL || keyarr == NULL) {
        rc = saga_error_set(err, SAGA_ENOMEM, "out of memory");
        goto out;
    }
    for (int i = 0; i < n; i++) {
        const saga_state *s = states[i];
        json_t *o = json_object();
        existing[i][0] = '\0';
        if (o == NULL) {
            rc = saga_error_set(err, SAGA_ENOMEM, "out of memory");
            goto out;
        }
        set_i64(o, "seq", i);
        json_object_set_new(o, "id", json_string(s->id));
        json_object_set_new(o, "name", json_string(s->def->name));
        set_i64(o, "version", s->def->version);
        json_object_set_new(o, "status", json_string(saga_status_name(s->status)));
        set_i64(o, "cursor_step", s->cursor);
        json_object_set(o, "input", s->input);
        if (keys[i] != NULL) {
            json_object_set_new(o, "idempotency_key", json_string(keys[i]));
            json_array_append_new(keyarr, json_string(keys[i]));
            nkeys++;
        }
        set_ms(o, "deadline_at", s->deadline_at);
        set_ms(o, "wake_at", s->wake_at);
        set_i64(o, "created_at", s->created_at);
        if (s->traceparent[0])
            json_object_set_new(o, "traceparent", json_string(s->traceparent));
        json_array_append_new(rows, o);
    }
    if ((text = dump(rows)) == NULL) {
        rc = saga_error_set(err, SAGA_ENOMEM, "out of memory");
        goto out;
    }
    {
        const char *p[1] = {text};
        r = PQexecPrepared(db, "saga_insert_sagas", 1, p, NULL, NULL, 0);
    }
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        saga_pgerr_note(r);
        rc = saga_error_set(err, SAGA_EDB, "creating sagas: %s", PQerrorMessage(db));
        goto out;
    }
    if (PQntuples(r) == n || nkeys == 0)
        goto out;
    /* Some keys were taken (by earlier sagas, or twice in this batch). */
    {
        int created = PQntuples(r);
        char(*made)[SAGA_ID_LEN + 1] = malloc(sizeof *made * (size_t)(created + 1));
        const char *p[1];
        if (made == NULL || (keytext = dump(keyarr)) == NULL) {
            free(made);
            rc = saga_error_set(err, SAGA_ENOMEM, "out of memory");
            goto out;
        }
        for (int i = 0; i < created; i++)
            snprintf(made[i], SAGA_ID_LEN + 1, "%s", PQgetvalue(r, i, 0));
        PQclear(r);
        p[0] = keytext;
        r = PQexecPrepared(db, "saga_key_holders", 1, p, NULL, NULL, 0);
        if (PQresultStatus(r) != PGRES_TUPLES_OK) {
            saga_pgerr_note(r);
            free(made);
            rc = saga_error_set(err, SAGA_EDB, "finding idempotency keys: %s",
                                PQerrorMessage(db));
            goto out;
        }
        for (int i = 0; i < n; i++) {
            int was_made = 0;
            if (keys[i] == NULL)
                continue;
            for (int k = 0; k < created && !was_made; k++)
                was_made = strcmp(made[k], states[i]->id) == 0;
            if (was_made)
                continue;
            for (int k = 0; k < PQntuples(r); k++)
                if (strcmp(PQgetvalue(r, k, 0), keys[i]) == 0)
                    snprintf(existing[i], SAGA_ID_LEN + 1, "%s", PQgetvalue(r, k, 1));
        }
        free(made);
    }
out:
    PQclear(r);
    free(text);
    free(keytext);
    json_decref(rows);
    json_decref(keyarr);
    return rc;
}

/* ---- the write batch ---- */

struct saga_batch {
    char *actor, *prefix, *owner;
    int lease_s;
    int seq, count;
    json_t *sagas, *steps, *events, *outbox, *requests, *dead, *aside;
};

saga_batch *saga_batch_new(const saga_store_opts *o, const char *owner, int lease_s)
{
    saga_batch *b = calloc(1, sizeof *b);
    if (b == NULL)
        return NULL;
    b->actor = strdup(o && o->actor ? o->actor : "sagad");
    b->prefix = strdup(o && o->topic_prefix ? o->topic_prefix : "saga.");
    b->owner = strdup(owner ? owner : "sagad");
    b->lease_s = lease_s > 0 ? lease_s : 10;
    b->sagas = json_array();
    b->steps = json_array();
    b->events = json_array();
    b->outbox = json_array();
    b->requests = json_array();
    b->dead = json_array();
    b->aside = json_array();
    if (b->actor == NULL || b->prefix == NULL || b->owner == NULL || b->sagas == NULL ||
        b->steps == NULL || b->events == NULL || b->outbox == NULL ||
        b->requests == NULL || b->dead == NULL || b->aside == NULL) {
        saga_batch_free(b);
        return NULL;
    }
    return b;
}

void saga_batch_reset(saga_batch *b)
{
    json_array_clear(b->sagas);
    json_array_clear(b->steps);
    json_array_clear(b->events);
    json_array_clear(b->outbox);
    json_array_clear(b->requests);
    json_array_clear(b->dead);
    json_array_clear(b->aside);
    b->seq = 0;
    b->count = 0;
}

void saga_batch_free(saga_batch *b)
{
    if (b == NULL)
        return;
    free(b->actor);
    free(b->prefix);
    free(b->owner);
    json_decref(b->sagas);
    json_decref(b->steps);
    json_decref(b->events);
    json_decref(b->outbox);
    json_decref(b->requests);
    json_decref(b->dead);
    json_decref(b->aside);
    free(b);
}

int saga_batch_count(const saga_batch *b)
{
    return b->count;
}

static int oom(saga_error *err)
{
    return saga_error_set(err, SAGA_ENOMEM, "out of memory");
}

/* json_array_append_new() that reports failure. */
static int append(json_t *arr, json_t *o, saga_error *err)
{
    if (o == NULL || json_array_append_new(arr, o) != 0)
        return oom(err);
    return SAGA_OK;
}

int saga_batch_add_saga_row(saga_batch *b, const saga_state *s, saga_error *err)
{
    json_t *o = json_object();
    if (o != NULL) {
        set_i64(o, "seq", b->seq++);
        json_object_set_new(o, "id", json_string(s->id));
        json_object_set_new(o, "status", json_string(saga_status_name(s->status)));
        set_i64(o, "cursor_step", s->cursor);
        set_ms(o, "wake_at", s->wake_at);
        set_i64(o, "updated_at", s->updated_at);
        set_ms(o, "progressed_at", s->progressed_at);
        set_ms(o, "deadline_at", s->deadline_at);
    }
    return append(b->sagas, o, err);
}

int saga_batch_add(saga_batch *b, const saga_state *s, const saga_actions *a, int created,
                   saga_error *err)
{
    int rc;
    b->count++;
    if (!created && (rc = saga_batch_add_saga_row(b, s, err)) != SAGA_OK)
        return rc;
    for (int i = 0; i < s->nsteps; i++) {
        const saga_step_state *st = &s->steps[i];
        json_t *o;
        if (!created && !st->dirty)
            continue;
        if ((o = json_object()) != NULL) {
            set_i64(o, "seq", b->seq++);
            json_object_set_new(o, "saga_id", json_string(s->id));
            set_i64(o, "idx", i);
            json_object_set_new(o, "name", json_string(s->def->steps[i].name));
            json_object_set_new(o, "status",
                                json_string(saga_step_status_name(st->status)));
            set_i64(o, "attempts", st->attempts);
            set_i64(o, "attempt_base", st->attempt_base);
            json_object_set_new(o, "awaiting", json_boolean(st->awaiting));
            set_ms(o, "due_at", st->due_at);
            if (st->output != NULL)
                json_object_set(o, "output", st->output);
            if (st->error != NULL)
                json_object_set(o, "error", st->error);
            set_ms(o, "started_at", st->started_at);
            set_ms(o, "finished_at", st->finished_at);
        }
        if ((rc = append(b->steps, o, err)) != SAGA_OK)
            return rc;
    }
    for (int i = 0; i < a->n; i++) {
        const saga_action *ac = &a->items[i];
        json_t *o = json_object();
        if (o == NULL)
            return oom(err);
        set_i64(o, "seq", b->seq++);
        json_object_set_new(o, "saga_id", json_string(s->id));
        if (ac->kind == SAGA_ACT_HISTORY) {
            set_i64(o, "at", s->updated_at);
            json_object_set_new(o, "kind", json_string(ac->what));
            if (ac->step >= 0) {
                set_i64(o, "step", ac->step);
                json_object_set_new(o, "phase", json_string(saga_phase_name(ac->phase)));
            }
            if (ac->attempt > 0)
                set_i64(o, "attempt", ac->attempt);
            if (ac->detail != NULL)
                json_object_set(o, "detail", ac->detail);
            json_object_set_new(o, "actor", json_string(b->actor));
            if ((rc = append(b->events, o, err)) != SAGA_OK)
                return rc;
        } else {
            char topic[256], *text = NULL, tp[SAGA_TRACEPARENT_LEN + 1];
            if ((rc = saga_store_encode_command(s, ac, b->prefix, &text, topic, tp,
                                                err)) != SAGA_OK) {
                json_decref(o);
                return rc;
            }
            json_object_set_new(o, "topic", json_string(topic));
            json_object_set_new(o, "msg_key", json_string(s->id));
            json_object_set_new(o, "payload", json_string(text));
            if (tp[0])
                json_object_set_new(o, "traceparent", json_string(tp));
            free(text);
            if ((rc = append(b->outbox, o, err)) != SAGA_OK)
                return rc;
        }
    }
    return SAGA_OK;
}

int saga_batch_add_request_done(saga_batch *b, const char *request_id, const char *error,
                                saga_error *err)
{
    json_t *o = json_object();
    if (o != NULL) {
        json_object_set_new(o, "id", json_string(request_id));
        if (error != NULL)
            json_object_set_new(o, "error", json_string(error));
    }
    return append(b->requests, o, err);
}

/* Text that PostgreSQL and jansson both take: printable ASCII kept, any
 * other byte as '?', at most max bytes (then "..."). Reasons and keys
 * come from outside and may hold anything. */
static json_t *clean_text(const char *s, size_t len, size_t max)
{
    char buf[1100];
    size_t k = 0;
    if (s == NULL)
        return json_null();
    if (max > sizeof buf - 4)
        max = sizeof buf - 4;
    for (size_t i = 0; i < len && k < max; i++)
        buf[k++] = s[i] >= 0x20 && s[i] < 0x7f ? s[i] : s[i] == '\n' ? ' ' : '?';
    while (k > 0 && buf[k - 1] == ' ') /* libpq's messages end in a newline */
        k--;
    if (len > max)
        memcpy(buf + k, "...", 3), k += 3;
    return json_stringn(buf, k);
}

int saga_batch_add_dead_letter(saga_batch *b, const saga_dead_letter *d, saga_error *err)
{
    static const char hex[] = "0123456789abcdef";
    size_t keep =
        d->payload_len < SAGA_DEAD_PAYLOAD_MAX ? d->payload_len : SAGA_DEAD_PAYLOAD_MAX;
    json_t *o = json_object();
    char *h = malloc(keep * 2 + 1);
    if (o == NULL || h == NULL) {
        json_decref(o);
        free(h);
        return oom(err);
    }
    for (size_t i = 0; i < keep; i++) {
        unsigned char c = ((const unsigned char *)d->payload)[i];
        h[2 * i] = hex[c >> 4];
        h[2 * i + 1] = hex[c & 15];
    }
    h[keep * 2] = '\0';
    set_i64(o, "seq", b->seq++);
    json_object_set_new(o, "source", json_string(d->source));
    if (d->topic != NULL) {
        json_object_set_new(o, "topic", clean_text(d->topic, strlen(d->topic), 255));
        set_i64(o, "kafka_partition", d->partition);
        set_i64(o, "kafka_offset", d->offset);
    }
    if (d->key != NULL)
        json_object_set_new(o, "msg_key", clean_text(d->key, d->key_len, 128));
    if (d->ref != NULL)
        json_object_set_new(o, "ref", clean_text(d->ref, strlen(d->ref), 128));
    json_object_set_new(o, "payload", json_string(h));
    set_i64(o, "payload_bytes", (int64_t)d->payload_len);
    json_object_set_new(o, "reason",
                        clean_text(d->reason, strlen(d->reason ? d->reason : ""), 1024));
    set_i64(o, "attempts", d->attempts > 0 ? d->attempts : 1);
    free(h);
    return append(b->dead, o, err);
}

int saga_batch_add_timer_set_aside(saga_batch *b, const char *saga_id, const char *reason,
                                   saga_error *err)
{
    json_t *o = json_object();
    if (o != NULL) {
        set_i64(o, "seq", b->seq++);
        json_object_set_new(o, "id", json_string(saga_id));
        json_object_set_new(o, "reason", clean_text(reason, strlen(reason), 1024));
    }
    return append(b->aside, o, err);
}

int saga_batch_commit(PGconn *db, saga_batch *b, saga_outbox *sent, saga_error *err)
{
    struct {
        json_t *rows;
        const char *stmt, *what;
        ExecStatusType want;
        int nparams; /* $1 the rows; $2 b->owner; $3 the lease */
        char *text;
    } parts[] = {
        {b->sagas, "saga_update_sagas", "saving sagas", PGRES_COMMAND_OK, 1, NULL},
        {b->steps, "saga_upsert_steps", "saving steps", PGRES_COMMAND_OK, 1, NULL},
        {b->events, "saga_insert_events", "writing history", PGRES_COMMAND_OK, 1, NULL},
        {b->requests, "saga_finish_requests", "finishing start requests",
         PGRES_COMMAND_OK, 1, NULL},
        {b->aside, "saga_set_aside_timers", "setting timers aside", PGRES_COMMAND_OK, 2,
         NULL},
        {b->dead, "saga_insert_dead", "writing dead letters", PGRES_COMMAND_OK, 2, NULL},
        {b->outbox, "saga_insert_outbox", "writing the outbox", PGRES_TUPLES_OK, 3, NULL},
    };
    const int nparts = (int)(sizeof parts / sizeof parts[0]);
    char lease[16];
    int rc = SAGA_OK, synced = 0;
    PGresult *r;

    snprintf(lease, sizeof lease, "%d", b->lease_s);
    for (int i = 0; i < nparts; i++)
        if (json_array_size(parts[i].rows) > 0 &&
            (parts[i].text = dump(parts[i].rows)) == NULL)
            rc = oom(err);
    if (rc != SAGA_OK)
        goto out;
    if (PQenterPipelineMode(db) != 1) {
        rc = saga_error_set(err, SAGA_EDB, "entering pipeline mode: %s",
                            PQerrorMessage(db));
        goto out;
    }
    for (int i = 0; i < nparts && rc == SAGA_OK; i++) {
        const char *p[3] = {parts[i].text, b->owner, lease};
        if (parts[i].text == NULL)
            continue;
        rc = send_prepared(db, parts[i].stmt, parts[i].nparams, p, err);
    }
    if (rc == SAGA_OK)
        rc = send_plain(db, "COMMIT", err);
    if (rc == SAGA_OK) {
        if (PQpipelineSync(db) != 1)
            rc = saga_error_set(err, SAGA_EDB, "pipeline sync: %s", PQerrorMessage(db));
        else
            synced = 1;
    }
    if (rc == SAGA_OK) {
        for (int i = 0; i < nparts; i++) {
            if (parts[i].text == NULL)
                continue;
            if ((r = next_result(db, parts[i].want, parts[i].what, err)) == NULL) {
                rc = SAGA_EDB;
                continue;
            }
            for (int k = 0; parts[i].want == PGRES_TUPLES_OK && k < PQntuples(r); k++) {
                char *payload = strdup(PQgetvalue(r, k, 3));
                if (payload == NULL ||
                    saga_outbox_push(sent, get_i64(r, k, 0), PQgetvalue(r, k, 1),
                                     PQgetvalue(r, k, 2), payload,
                                     PQgetvalue(r, k, 4)) != SAGA_OK)
                    rc = oom(err);
            }
            PQclear(r);
        }
        /* An aborted transaction answers COMMIT with ROLLBACK: not a commit. */
        r = next_result(db, PGRES_COMMAND_OK, "COMMIT", err);
        if (r == NULL) {
            rc = SAGA_EDB; /* err holds the server's reason */
        } else if (strcmp(PQcmdStatus(r), "COMMIT") != 0) {
            if (rc == SAGA_OK)
                rc = saga_error_set(err, SAGA_EDB,
                                    "COMMIT: the transaction was rolled back");
            else
                rc = SAGA_EDB;
        }
        PQclear(r);
    }
    end_pipeline(db, synced);
out:
    for (int i = 0; i < nparts; i++)
        free(parts[i].text);
    saga_batch_reset(b);
    return rc;
}
