/* saga_api_start.c - POST /v1/sagas: a start request, as libsaga's client
 * writes it, that sagad turns into the saga; the caller's
 * Idempotency-Key and traceparent kept. */
#include <ctype.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>
#include <libpq-fe.h>

#include "saga/protocol.h"
#include "saga/trace.h"
#include "saga_api.h"
#include "saga_api_internal.h"
#include "saga_duration.h"
#include "saga_read.h"
#include "saga_shared.h"

/* ---- POST /v1/sagas ---- */

/* "start_at" (an RFC 3339 time) or "start_in" (a duration from now) into
 * at as a timestamp PostgreSQL reads ("" when neither); -1 with res
 * answered when malformed or both are given. */
static int start_time(const json_t *body, char *at, size_t size,
                      const saga_http_request *req, saga_http_response *res)
{
    const json_t *a = json_object_get(body, "start_at"),
                 *in = json_object_get(body, "start_in");
    int64_t ms;
    at[0] = '\0';
    if (a != NULL && in != NULL) {
        saga__api_problem(res, 422, "invalid_field", "Unprocessable Content", req->path,
                          "/start_in", NULL, "\"start_at\" or \"start_in\", not both");
        return -1;
    }
    if (in != NULL) {
        if (!json_is_string(in) || saga_duration_parse(json_string_value(in), &ms) != 0 ||
            ms < 0 || ms > (int64_t)366 * 24 * 3600 * 1000 * 10) {
            saga__api_problem(res, 422, "invalid_field", "Unprocessable Content",
                              req->path, "/start_in", NULL,
                              "\"start_in\" must be a duration (\"90s\", \"2h\") up to "
                              "ten years");
            return -1;
        }
        {
            int64_t when = saga__wall_ms() + ms;
            time_t t = (time_t)(when / 1000);
            struct tm tm;
            gmtime_r(&t, &tm);
            snprintf(at, size, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                     tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                     (int)(when % 1000));
        }
    } else if (a != NULL) {
        const char *v = json_string_value(a);
        if (v == NULL || strchr(v, 'T') == NULL || (v[0] >= 'a' && v[0] <= 'z') ||
            saga__api_time_arg(v, at, size) != 0) {
            saga__api_problem(res, 422, "invalid_field", "Unprocessable Content",
                              req->path, "/start_at", NULL,
                              "\"start_at\" must be an RFC 3339 time "
                              "(2026-12-24T08:00:00Z)");
            at[0] = '\0';
            return -1;
        }
    }
    return 0;
}

/* The definition must exist now (a request for one that does not would
 * only be rejected later); then insert, answering with the request as GET
 * shows it (one round trip), or find the caller's request with that key;
 * sagad is woken by a NOTIFY only when it cannot be kicked ($8). */
static const char start_sql[] =
    "WITH d AS (SELECT 1 FROM saga.saga_definition WHERE name = $1 LIMIT 1),"
    " ins AS (INSERT INTO saga.start_request (id, name, input, idempotency_key,"
    "  traceparent, requested_by, business_key, start_at) SELECT"
    "  $9::uuid, $1, $2::jsonb, $3, $4, $5, $6, $7::timestamptz"
    "  FROM d ON CONFLICT (requested_by, idempotency_key) DO NOTHING"
    "  RETURNING id, name, input, idempotency_key, business_key, requested_at, start_at)"
    " SELECT id, false, json_build_object('id', id, 'name', name,"
    "  'status', CASE WHEN start_at > now() THEN 'scheduled' ELSE 'pending' END,"
    "  'start_at', saga.iso(start_at), 'input', input,"
    "  'idempotency_key', idempotency_key, 'business_key', business_key,"
    "  'created_at', saga.iso(requested_at), 'error', NULL, 'steps', '[]'::json)::text,"
    "  CASE WHEN $8::bool THEN pg_notify('saga_outbox', 'start') END FROM ins"
    " UNION ALL SELECT id, true, NULL, NULL FROM saga.start_request WHERE"
    "  idempotency_key = $3 AND requested_by = $5 AND NOT EXISTS (SELECT 1 FROM ins)"
    "  AND EXISTS (SELECT 1 FROM d)"
    " UNION ALL SELECT NULL, NULL, NULL, NULL WHERE NOT EXISTS (SELECT 1 FROM d)";

void saga__api_start_saga(saga_api *a, const saga__api_caller *who,
                          const saga_http_request *req, saga_http_response *res)
{
    static const char *const allowed[] = {"definition", "input",    "business_key",
                                          "start_at",   "start_in", NULL};
    json_t *body, *input;
    char start_at[48] = "", new_id[SAGA_ID_LEN + 1];
    saga_error id_err = {0};
    const char *name, *bkey = NULL,
                      *key = saga_http_request_header(req, "Idempotency-Key"),
                      *tp = saga_http_request_header(req, "traceparent");
    char *text = NULL;
    json_t *v;
    PGconn *db;
    PGresult *r;

    if (!saga__api_may_start(who)) {
        saga__api_problem(res, 403, "forbidden", "Forbidden", req->path, NULL, NULL,
                          "caller %s has role %s, which may not start sagas (starter or "
                          "operator may)",
                          who->name, who->role);
        return;
    }
    if (saga__api_json_body(req, res, &body) != 0)
        return;
    if (saga__api_known_fields(body, allowed,
                               "definition, input, business_key, start_at and start_in",
                               "", req, res) != 0) {
        json_decref(body);
        return;
    }
    name = json_string_value(json_object_get(body, "definition"));
    if (name == NULL || *name == '\0') {
        saga__api_problem(
            res, 422, "invalid_field", "Unprocessable Content", req->path, "/definition",
            NULL, "\"definition\" must be the name of a deployed definition (a string)");
        json_decref(body);
        return;
    }
    input = json_object_get(body, "input");
    if (input != NULL && !json_is_object(input) && !json_is_null(input)) {
        saga__api_problem(res, 422, "invalid_field", "Unprocessable Content", req->path,
                          "/input", NULL, "\"input\" must be a JSON object");
        json_decref(body);
        return;
    }
    v = json_object_get(body, "business_key");
    if (v != NULL && !json_is_null(v)) {
        bkey = json_string_value(v);
        if (bkey == NULL || *bkey == '\0' || strlen(bkey) > 200) {
            saga__api_problem(res, 422, "invalid_field", "Unprocessable Content",
                              req->path, "/business_key", NULL,
                              "\"business_key\" must be a string of 1 to 200 bytes");
            json_decref(body);
            return;
        }
    }
    if (start_time(body, start_at, sizeof start_at, req, res) != 0) {
        json_decref(body);
        return;
    }
    if (key != NULL && (*key == '\0' || strlen(key) > 255)) {
        saga__api_problem(res, 400, "invalid_header", "Bad Request", req->path, NULL,
                          "Idempotency-Key", "Idempotency-Key must be 1 to 255 bytes");
        json_decref(body);
        return;
    }
    if (tp != NULL) {
        saga_trace_context ctx;
        if (saga_traceparent_parse(tp, strlen(tp), &ctx) != SAGA_OK) {
            saga__api_problem(
                res, 400, "invalid_header", "Bad Request", req->path, NULL, "traceparent",
                "traceparent \"%.80s\" is not a W3C trace context (00-<32 hex>-<16 "
                "hex>-<2 hex>)",
                tp);
            json_decref(body);
            return;
        }
    }
    text = input != NULL && json_is_object(input) ? json_dumps(input, JSON_COMPACT)
                                                  : strdup("{}");
    if (text == NULL || saga__id_new(new_id, &id_err) != SAGA_OK ||
        (db = saga__api_take(a)) == NULL) {
        if (text == NULL)
            saga__api_problem(res, 500, "internal", "Internal Server Error", req->path,
                              NULL, NULL, "out of memory");
        else if (id_err.code != SAGA_OK)
            saga__api_problem(res, 500, "internal", "Internal Server Error", req->path,
                              NULL, NULL, "%s", id_err.message);
        else
            saga__api_unavailable(res, req->path);
        free(text);
        json_decref(body);
        return;
    }
    {
        /* The definition must exist now (a request for one that does not
         * would only be rejected later); then insert, or find the caller's
         * request with that key, and wake sagad, in one statement. */
        const char *p[9] = {name,
                            text,
                            key,
                            tp,
                            who->name,
                            bkey,
                            start_at[0] ? start_at : NULL,
                            a->kick != NULL ? "f" : "t",
                            new_id};
        r = saga__api_exec(db, "api_start", start_sql, 9, p);
    }
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
        const char *msg = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
        if (state != NULL && strcmp(state, "54000") == 0) /* the input limit */
            saga__api_problem(res, 413, "input_too_large", "Content Too Large", req->path,
                              "/input", NULL, "%s",
                              msg ? msg : "the input is over the limit");
        else if (PQstatus(db) != CONNECTION_OK)
            saga__api_unavailable(res, req->path);
        else if (state != NULL && strncmp(state, "22", 2) == 0) /* e.g. not UTF-8 */
            saga__api_problem(res, 400, "invalid_parameter", "Bad Request", req->path,
                              NULL, NULL, "a value of the request is refused: %s",
                              msg ? msg : "invalid value");
        else
            saga__api_problem(res, 500, "database_error", "Internal Server Error",
                              req->path, NULL, NULL, "starting saga %.100s: %s", name,
                              msg ? msg : "database error");
    } else if (PQntuples(r) != 1) {
        /* ON CONFLICT waited for another request with the same key to
         * commit; its row is visible to a new statement only. */
        saga__api_problem(
            res, 409, "conflict", "Conflict", req->path, NULL, "Idempotency-Key",
            "another request with the same Idempotency-Key was being made: send it "
            "again");
    } else if (PQgetisnull(r, 0, 0)) {
        saga__api_problem(res, 422, "unknown_definition", "Unprocessable Content",
                          req->path, "/definition", NULL,
                          "no definition \"%.100s\" is deployed", name);
    } else {
        const char *id = PQgetvalue(r, 0, 0);
        int existed = strcmp(PQgetvalue(r, 0, 1), "t") == 0;
        char *saga = NULL;
        snprintf(res->location, sizeof res->location, "/v1/sagas/%s", id);
        if (!existed && !PQgetisnull(r, 0, 2)) {
            saga = strdup(PQgetvalue(r, 0, 2)); /* the request just written */
            if (a->kick != NULL)
                a->kick(a->kick_arg);
        } else if (saga_read_saga(db, id, NULL, &saga, NULL) != SAGA_OK) {
            json_t *o = json_pack("{s:s, s:s}", "id", id, "status", "pending");
            saga = o != NULL ? json_dumps(o, JSON_COMPACT) : NULL;
            json_decref(o);
        }
        saga__api_answer(res, existed ? 200 : 201, JSON_TYPE, saga);
    }
    PQclear(r);
    saga__api_give_back(a, db);
    free(text);
    json_decref(body);
}

/* ---- POST /v1/sagas/{id}/cancel ---- */

void saga__api_cancel(saga_api *a, const saga__api_caller *who,
                      const saga_http_request *req, const char *id,
                      saga_http_response *res)
{
    static const char *const allowed[] = {"reason", NULL};
    const char *reason;
    json_t *body = NULL;
    PGconn *db;
    PGresult *r;
    if (!saga__api_is_uuid(id)) {
        saga__api_problem(res, 404, "not_found", "Not Found", req->path, NULL, NULL,
                          "no saga \"%.60s\": a saga id is a UUID", id);
        return;
    }
    if (!saga__api_may_start(who)) {
        saga__api_problem(res, 403, "forbidden", "Forbidden", req->path, NULL, NULL,
                          "caller %s has role %s, which may not cancel sagas (starter, "
                          "for its own, or operator may)",
                          who->name, who->role);
        return;
    }
    if (saga__api_json_body(req, res, &body) != 0)
        return;
    if (saga__api_known_fields(body, allowed, "reason", "", req, res) != 0) {
        json_decref(body);
        return;
    }
    reason = json_string_value(json_object_get(body, "reason"));
    if (reason == NULL || *reason == '\0' || strlen(reason) > 1000) {
        saga__api_problem(
            res, 422, json_object_get(body, "reason") ? "invalid_field" : "missing_field",
            "Unprocessable Content", req->path, "/reason", NULL,
            "\"reason\" is required: a string of 1 to 1000 bytes (why, "
            "for the record)");
        json_decref(body);
        return;
    }
    if ((db = saga__api_take(a)) == NULL) {
        saga__api_unavailable(res, req->path);
        json_decref(body);
        return;
    }
    {
        /* Closed only while sagad has not taken it (it holds the row while
         * it starts the saga; this UPDATE then finds it processed). A
         * starter cancels only what it asked for. */
        const char *p[4] = {id, reason, who->name, saga__api_owner(who)};
        r = PQexecParams(db,
                         "WITH c AS (UPDATE saga.start_request SET processed_at = now(),"
                         " cancelled_at = now(), cancelled_by = $3,"
                         " error = 'cancelled by ' || $3 || ': ' || $2"
                         " WHERE id = $1::uuid AND processed_at IS NULL"
                         " AND ($4::name IS NULL OR requested_by = $4) RETURNING id)"
                         " SELECT (SELECT count(*) FROM c),"
                         " (SELECT CASE WHEN cancelled_at IS NOT NULL THEN 'cancelled'"
                         "  WHEN error IS NOT NULL THEN 'rejected' ELSE 'started' END"
                         "  FROM saga.start_request WHERE id = $1::uuid"
                         "  AND ($4::name IS NULL OR requested_by = $4))",
                         4, NULL, p, NULL, NULL, 0);
        /* Not cancelled: say why as the request is now. The statement's
         * snapshot predates what sagad committed while the UPDATE waited
         * for its lock (a rejection would read as "started"). */
        if (PQresultStatus(r) == PGRES_TUPLES_OK &&
            strcmp(PQgetvalue(r, 0, 0), "1") != 0) {
            const char *q[2] = {id, saga__api_owner(who)};
            PQclear(r);
            r = PQexecParams(
                db,
                "SELECT 0, (SELECT CASE WHEN cancelled_at IS NOT NULL THEN"
                " 'cancelled' WHEN error IS NOT NULL THEN 'rejected'"
                " ELSE 'started' END FROM saga.start_request WHERE id = $1::uuid"
                " AND ($2::name IS NULL OR requested_by = $2))",
                2, NULL, q, NULL, NULL, 0);
        }
    }
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        saga_error err = {0};
        saga__error_set(&err, SAGA_EDB, "cancelling saga %s: %s", id, PQerrorMessage(db));
        saga__api_db_failed(res, req->path, db, &err);
    } else if (strcmp(PQgetvalue(r, 0, 0), "1") == 0) {
        char *json = NULL;
        if (saga_read_saga(db, id, NULL, &json, NULL) != SAGA_OK)
            json = NULL;
        saga__api_answer(res, 200, JSON_TYPE, json);
    } else if (PQgetisnull(r, 0, 1)) {
        saga__api_problem(res, 404, "not_found", "Not Found", req->path, NULL, NULL,
                          "no saga %s", id);
    } else if (strcmp(PQgetvalue(r, 0, 1), "started") == 0) {
        saga__api_problem(res, 409, "refused", "Conflict", req->path, NULL, NULL,
                          "cancel refused: saga %s has started; only a saga that has not "
                          "started can be cancelled (compensate it instead)",
                          id);
    } else {
        saga__api_problem(res, 409, "refused", "Conflict", req->path, NULL, NULL,
                          "cancel refused: saga %s was %s already", id,
                          PQgetvalue(r, 0, 1));
    }
    PQclear(r);
    saga__api_give_back(a, db);
    json_decref(body);
}
