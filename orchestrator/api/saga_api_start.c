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

void saga__api_start_saga(saga_api *a, const saga__api_caller *who,
                          const saga_http_request *req, saga_http_response *res)
{
    static const char *const allowed[] = {"definition", "input", "business_key", NULL};
    json_t *body, *input;
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
    if (saga__api_known_fields(body, allowed, "definition, input and business_key", "",
                               req, res) != 0) {
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
    if (text == NULL || (db = saga__api_take(a)) == NULL) {
        if (text == NULL)
            saga__api_problem(res, 500, "internal", "Internal Server Error", req->path,
                              NULL, NULL, "out of memory");
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
        const char *p[6] = {name, text, key, tp, who->name, bkey};
        r = PQexecParams(
            db,
            "WITH d AS (SELECT 1 FROM saga.saga_definition WHERE name = $1 LIMIT 1),"
            " ins AS (INSERT INTO saga.start_request (id, name, input, idempotency_key,"
            "  traceparent, requested_by, business_key) SELECT gen_random_uuid(), $1,"
            "  $2::jsonb, $3, $4, $5, $6"
            "  FROM d ON CONFLICT (requested_by, idempotency_key) DO NOTHING RETURNING "
            "id)"
            " SELECT id, false, pg_notify('saga_outbox', 'start') FROM ins"
            " UNION ALL SELECT id, true, NULL FROM saga.start_request WHERE"
            "  idempotency_key = $3 AND requested_by = $5 AND NOT EXISTS (SELECT 1 FROM "
            "ins)"
            "  AND EXISTS (SELECT 1 FROM d)"
            " UNION ALL SELECT NULL, NULL, NULL WHERE NOT EXISTS (SELECT 1 FROM d)",
            6, NULL, p, NULL, NULL, 0);
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
        if (saga_read_saga(db, id, NULL, &saga, NULL) != SAGA_OK) {
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
