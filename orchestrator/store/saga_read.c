/* saga_read.c - sagas as JSON, built by PostgreSQL (see saga_read.h). */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "saga_pgerr.h"
#include "saga/protocol.h"
#include "saga_read.h"
#include "saga_shared.h"
#include "saga_tracing.h"

/* A saga with its steps, else its start request, as one JSON object. */
static const char saga_sql[] =
    "SELECT coalesce((SELECT json_build_object('id', s.id, 'name', s.name,"
    " 'version', s.version, 'status', s.status, 'step', s.cursor_step, 'input', s.input,"
    " 'idempotency_key', s.idempotency_key, 'business_key', s.business_key,"
    " 'created_at', saga.iso(s.created_at),"
    " 'updated_at', saga.iso(s.updated_at), 'deadline_at', saga.iso(s.deadline_at),"
    " 'traceparent', s.traceparent, 'trace_id', nullif(split_part(s.traceparent, '-', "
    "2), '')," SAGA_READ_SAGA_LINKS_AND_STEPS
    " FROM saga.saga s WHERE s.id = $1::uuid AND ($2::name IS NULL OR s.started_by = "
    "$2)),"
    " (SELECT json_build_object('id', r.id, 'name', r.name,"
    "  'status', CASE WHEN r.cancelled_at IS NOT NULL THEN 'cancelled'"
    "   WHEN r.error IS NOT NULL THEN 'rejected'"
    "   WHEN r.start_at > now() THEN 'scheduled' ELSE 'pending' END,"
    "  'start_at', saga.iso(r.start_at),"
    "  'input', r.input, 'idempotency_key', r.idempotency_key,"
    "  'business_key', r.business_key,"
    "  'created_at', saga.iso(r.requested_at), 'error', r.error, 'steps', '[]'::json)"
    "  FROM saga.start_request r WHERE r.id = $1::uuid AND ($2::name IS NULL OR"
    "  r.requested_by = $2)))::text";

/* One page of a search, newest first, one more row than asked to tell
 * whether there is a next page. The cursor is the last row's created_at
 * in microseconds since the epoch and its id: exact, and in the order
 * of the index on created_at. */
static const char search_sql[] =
    "WITH page AS (SELECT s.id, s.name, s.version, s.status, s.cursor_step,"
    "  s.created_at, s.updated_at, s.traceparent, s.business_key FROM saga.saga s"
    "  WHERE ($1::text IS NULL OR s.status = $1)"
    "  AND ($2::text IS NULL OR s.name = $2) AND ($9::text IS NULL OR s.business_key = "
    "$9)"
    "  AND ($8::name IS NULL OR s.started_by = $8)"
    "  AND ($3::timestamptz IS NULL OR s.created_at >= $3::timestamptz)"
    "  AND ($4::timestamptz IS NULL OR s.created_at < $4::timestamptz)"
    "  AND ($5::bigint IS NULL OR (s.created_at, s.id) <"
    "   ('epoch'::timestamptz + $5::bigint * interval '1 microsecond', $6::uuid))"
    "  ORDER BY s.created_at DESC, s.id DESC LIMIT $7::int + 1),"
    " shown AS (SELECT * FROM page ORDER BY created_at DESC, id DESC LIMIT $7::int)"
    " SELECT json_build_object('sagas', coalesce((SELECT json_agg(json_build_object("
    "   'id', id, 'name', name, 'version', version, 'status', status, 'step', "
    "cursor_step,"
    "   'business_key', business_key,"
    "   'created_at', saga.iso(created_at), 'updated_at', saga.iso(updated_at),"
    "   'trace_id', nullif(split_part(traceparent, '-', 2), ''))"
    "   ORDER BY created_at DESC, id DESC) FROM shown), '[]'::json),"
    " 'next_cursor', CASE WHEN (SELECT count(*) FROM page) > $7::int THEN"
    "  (SELECT (extract(epoch FROM created_at) * 1000000)::bigint || '_' || id FROM shown"
    "   ORDER BY created_at ASC, id ASC LIMIT 1) END)::text";

static int one_json(PGconn *db, const char *sql, int n, const char *const *p, char **json,
                    const char *what, saga_error *err)
{
    PGresult *r = PQexecParams(db, sql, n, NULL, p, NULL, NULL, 0);
    int rc = SAGA_OK;
    *json = NULL;
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        saga_pgerr_note(r);
        rc = saga__error_set(err, SAGA_EDB, "%s: %s", what, PQerrorMessage(db));
    } else if (PQntuples(r) != 1 || PQgetisnull(r, 0, 0)) {
        rc = saga__error_set(err, SAGA_ENOTFOUND, "%s: not found", what);
    } else if ((*json = strdup(PQgetvalue(r, 0, 0))) == NULL) {
        rc = saga__error_set(err, SAGA_ENOMEM, "out of memory");
    }
    PQclear(r);
    return rc;
}

int saga_read_saga(PGconn *db, const char *id, const char *owner, char **json,
                   saga_error *err)
{
    const char *p[2] = {id, owner};
    return one_json(db, saga_sql, 2, p, json, "reading a saga", err);
}

static const char *or_null(const char *s)
{
    return s != NULL && *s != '\0' ? s : NULL;
}

int saga_read_search(PGconn *db, const saga_read_filter *f, char **json, saga_error *err)
{
    char micros[24] = "", id[SAGA_ID_LEN + 1] = "", limit[16];
    const char *p[9];
    *json = NULL;
    if (f->limit < 1 || f->limit > 1000)
        return saga__error_set(err, SAGA_EINVAL, "limit %d: from 1 to 1000", f->limit);
    if (or_null(f->cursor) != NULL) {
        /* <digits>_<uuid>, as next_cursor gives it. */
        const char *u = strchr(f->cursor, '_');
        size_t nd = u != NULL ? (size_t)(u - f->cursor) : 0;
        int ok =
            u != NULL && nd >= 1 && nd < sizeof micros && strlen(u + 1) == SAGA_ID_LEN;
        for (size_t i = 0; ok && i < nd; i++)
            ok = isdigit((unsigned char)f->cursor[i]) != 0;
        for (size_t i = 0; ok && i < SAGA_ID_LEN; i++)
            ok = (i == 8 || i == 13 || i == 18 || i == 23)
                     ? u[1 + i] == '-'
                     : isxdigit((unsigned char)u[1 + i]) != 0;
        if (!ok)
            return saga__error_set(
                err, SAGA_EINVAL, "cursor \"%.60s\" is not one a page gave (next_cursor)",
                f->cursor);
        memcpy(micros, f->cursor, nd);
        micros[nd] = '\0';
        memcpy(id, u + 1, SAGA_ID_LEN + 1);
    }
    snprintf(limit, sizeof limit, "%d", f->limit);
    p[0] = or_null(f->status);
    p[1] = or_null(f->definition);
    p[2] = or_null(f->since);
    p[3] = or_null(f->older_than);
    p[4] = micros[0] ? micros : NULL;
    p[5] = id[0] ? id : NULL;
    p[6] = limit;
    p[7] = or_null(f->owner);
    p[8] = or_null(f->business_key);
    return one_json(db, search_sql, 9, p, json, "searching sagas", err);
}

/* ---- history ---- */

/* Events oldest first, with the time since the previous one. */
static const char history_sql[] =
    "SELECT CASE WHEN EXISTS (SELECT 1 FROM saga.saga WHERE id = $1::uuid AND"
    " ($2::name IS NULL OR started_by = $2)) THEN"
    " (SELECT coalesce(json_agg(x ORDER BY x.seq), '[]') FROM ("
    "  SELECT e.id AS seq,"
    "   saga.iso(e.at) AS at,"
    "   e.kind, e.step, st.name AS step_name, e.phase, e.attempt, e.detail, e.actor,"
    "   round(extract(epoch from e.at - lag(e.at) OVER (ORDER BY e.id)) * 1000)"
    "    AS since_previous_ms"
    "  FROM saga.saga_event e LEFT JOIN saga.saga_step st"
    "   ON st.saga_id = e.saga_id AND st.idx = e.step"
    "  WHERE e.saga_id = $1::uuid) x)"
    /* A start request not yet a saga (GET gives it as pending): no history
     * yet, not "no such saga". */
    " WHEN EXISTS (SELECT 1 FROM saga.start_request WHERE id = $1::uuid AND"
    " ($2::name IS NULL OR requested_by = $2)) THEN '[]'::json END::text";

/* Each event gets the saga's trace id and, when it concerns a step
 * attempt, the attempt's span id (the one its command carried). */
static void add_spans(json_t *events, const char *saga_tp)
{
    char trace_id[SAGA_TRACE_ID_HEX_SIZE], span_id[SAGA_SPAN_ID_HEX_SIZE];
    size_t i;
    json_t *ev;
    saga_tracing_ids(saga_tp, trace_id, span_id);
    json_array_foreach(events, i, ev)
    {
        json_t *step = json_object_get(ev, "step"),
               *attempt = json_object_get(ev, "attempt");
        char tp[SAGA_TRACEPARENT_LEN + 1] = "", t2[SAGA_TRACE_ID_HEX_SIZE];
        json_object_set_new(ev, "trace_id",
                            trace_id[0] ? json_string(trace_id) : json_null());
        if (json_is_integer(step) && json_is_integer(attempt) &&
            json_integer_value(attempt) > 0)
            saga_tracing_element(
                saga_tp, (int)json_integer_value(step),
                json_is_string(json_object_get(ev, "phase")) &&
                        strcmp(json_string_value(json_object_get(ev, "phase")),
                               "compensate") == 0
                    ? SAGA_PHASE_COMPENSATE
                    : SAGA_PHASE_INVOKE,
                (int)json_integer_value(attempt),
                /* An element's line: that element's span. */
                json_is_integer(json_object_get(json_object_get(ev, "detail"), "element"))
                    ? (int)json_integer_value(
                          json_object_get(json_object_get(ev, "detail"), "element"))
                    : -1,
                tp, sizeof tp);
        saga_tracing_ids(tp, t2, span_id);
        json_object_set_new(ev, "span_id",
                            span_id[0] ? json_string(span_id) : json_null());
    }
}

int saga_read_history(PGconn *db, const char *id, const char *owner, json_t **events,
                      saga_error *err)
{
    const char *p[2] = {id, owner};
    char *text = NULL;
    char tp[SAGA_TRACEPARENT_LEN + 1] = "";
    PGresult *r;
    int rc;
    *events = NULL;
    if ((rc = one_json(db, history_sql, 2, p, &text, "reading a saga's history", err)) !=
        SAGA_OK)
        return rc;
    r = PQexecParams(db, "SELECT traceparent FROM saga.saga WHERE id = $1::uuid", 1, NULL,
                     p, NULL, NULL, 0);
    if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1 &&
        !PQgetisnull(r, 0, 0))
        snprintf(tp, sizeof tp, "%s", PQgetvalue(r, 0, 0));
    PQclear(r);
    *events = saga__json_from_pg(text, 0, NULL);
    free(text);
    if (*events == NULL)
        return saga__error_set(err, SAGA_ENOMEM, "out of memory");
    add_spans(*events, tp);
    return SAGA_OK;
}

/* ---- definitions ---- */

static const char definitions_sql[] =
    "SELECT coalesce(json_agg(x ORDER BY x.name), '[]')::text FROM ("
    " SELECT d.name, max(d.version) AS latest, count(*) AS versions,"
    "  saga.iso(max(d.created_at)) AS deployed_at,"
    "  (SELECT count(*) FROM saga.saga s WHERE s.name = d.name"
    "   AND s.status IN ('running', 'compensating')) AS active_sagas"
    " FROM saga.saga_definition d GROUP BY d.name) x";

static const char definition_sql[] =
    "SELECT json_build_object('name', d.name, 'version', d.version, 'digest', d.digest,"
    " 'deployed_at', saga.iso(d.created_at),"
    " 'versions', (SELECT json_agg(v.version ORDER BY v.version) FROM"
    "  saga.saga_definition v WHERE v.name = d.name), 'definition', d.body)::text"
    " FROM saga.saga_definition d WHERE d.name = $1 AND"
    " d.version = CASE WHEN $2::int > 0 THEN $2::int ELSE (SELECT max(version) FROM"
    "  saga.saga_definition WHERE name = $1) END";

int saga_read_definitions(PGconn *db, char **json, saga_error *err)
{
    return one_json(db, definitions_sql, 0, NULL, json, "reading definitions", err);
}

int saga_read_definition(PGconn *db, const char *name, int version, char **json,
                         saga_error *err)
{
    char v[16];
    const char *p[2] = {name, v};
    snprintf(v, sizeof v, "%d", version);
    return one_json(db, definition_sql, 2, p, json, "reading a definition", err);
}
