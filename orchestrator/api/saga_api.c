/* saga_api.c - /v1/sagas: POST starts a saga (a start request sagad turns
 * into the saga, as libsaga's client does), GET /v1/sagas/{id} reads one,
 * GET /v1/sagas searches with keyset pagination. Every error is a problem
 * document naming what was wrong and where. */
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
#include "saga_duration.h"
#include "saga_read.h"
#include "saga_shared.h"

#define PROBLEM_TYPE "application/problem+json"
#define JSON_TYPE    "application/json"

struct saga_api {
    char *db_url, *caller;
    pthread_mutex_t lock;
    pthread_cond_t freed;
    PGconn **idle; /* connections not in use */
    int nidle, nopen, max;
};

int saga_api_new(const saga_api_config *cfg, saga_api **out, saga_error *err)
{
    saga_api *a;
    *out = NULL;
    if (cfg == NULL || cfg->db_url == NULL)
        return saga__error_set(err, SAGA_EINVAL, "api: a database URL is needed");
    if ((a = calloc(1, sizeof *a)) == NULL)
        return saga__error_set(err, SAGA_ENOMEM, "out of memory");
    a->max = cfg->connections > 0 ? cfg->connections : 4;
    a->db_url = strdup(cfg->db_url);
    a->caller = strdup(cfg->caller != NULL && *cfg->caller ? cfg->caller : "http");
    a->idle = calloc((size_t)a->max, sizeof *a->idle);
    if (a->db_url == NULL || a->caller == NULL || a->idle == NULL ||
        pthread_mutex_init(&a->lock, NULL) != 0) {
        free(a->db_url);
        free(a->caller);
        free(a->idle);
        free(a);
        return saga__error_set(err, SAGA_ENOMEM, "out of memory");
    }
    pthread_cond_init(&a->freed, NULL);
    *out = a;
    return SAGA_OK;
}

void saga_api_free(saga_api *a)
{
    if (a == NULL)
        return;
    for (int i = 0; i < a->nidle; i++)
        PQfinish(a->idle[i]);
    pthread_cond_destroy(&a->freed);
    pthread_mutex_destroy(&a->lock);
    free(a->idle);
    free(a->db_url);
    free(a->caller);
    free(a);
}

/* A connection of the pool (waiting for one while all are in use), or
 * NULL when the database cannot be reached. */
static PGconn *take(saga_api *a)
{
    PGconn *db = NULL;
    pthread_mutex_lock(&a->lock);
    while (a->nidle == 0 && a->nopen >= a->max)
        pthread_cond_wait(&a->freed, &a->lock);
    if (a->nidle > 0)
        db = a->idle[--a->nidle];
    else
        a->nopen++;
    pthread_mutex_unlock(&a->lock);
    if (db == NULL) {
        db = PQconnectdb(a->db_url);
        saga__pq_quiet(db);
    } else if (PQstatus(db) != CONNECTION_OK) {
        PQreset(db);
    }
    if (PQstatus(db) != CONNECTION_OK) {
        PQfinish(db);
        pthread_mutex_lock(&a->lock);
        a->nopen--;
        pthread_cond_signal(&a->freed);
        pthread_mutex_unlock(&a->lock);
        return NULL;
    }
    return db;
}

static void give_back(saga_api *a, PGconn *db)
{
    pthread_mutex_lock(&a->lock);
    a->idle[a->nidle++] = db;
    pthread_cond_signal(&a->freed);
    pthread_mutex_unlock(&a->lock);
}

/* ---- answers ---- */

static void answer(saga_http_response *res, unsigned int status, const char *type,
                   char *body)
{
    res->status = status;
    res->type = type;
    res->body = body;
    res->len = body != NULL ? strlen(body) : 0;
}

/* An RFC 9457 problem: code is the stable part (also in type), detail
 * says what and where; pointer (a JSON pointer into the request body) or
 * parameter (a query parameter) says exactly where, when known. */
static void problem(saga_http_response *res, unsigned int status, const char *code,
                    const char *title, const char *instance, const char *pointer,
                    const char *parameter, const char *fmt, ...)
{
    char detail[600], type[96];
    va_list ap;
    json_t *p;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof detail, fmt, ap);
    va_end(ap);
    snprintf(type, sizeof type, "urn:saga:problem:%s", code);
    p = json_pack("{s:s, s:s, s:i, s:s, s:s, s:s}", "type", type, "title", title,
                  "status", (int)status, "detail", detail, "instance", instance, "code",
                  code);
    if (p != NULL && pointer != NULL)
        json_object_set_new(p, "pointer", json_string(pointer));
    if (p != NULL && parameter != NULL)
        json_object_set_new(p, "parameter", json_string(parameter));
    answer(res, status, PROBLEM_TYPE, p != NULL ? json_dumps(p, JSON_COMPACT) : NULL);
    json_decref(p);
}

static void unavailable(saga_http_response *res, const char *path)
{
    problem(res, 503, "database_unavailable", "Service Unavailable", path, NULL, NULL,
            "the orchestrator's database cannot be reached; try again (GET /readyz says "
            "when it is back)");
}

static int is_uuid(const char *s)
{
    if (strlen(s) != SAGA_ID_LEN)
        return 0;
    for (int i = 0; i < SAGA_ID_LEN; i++)
        if ((i == 8 || i == 13 || i == 18 || i == 23) ? s[i] != '-'
                                                      : !isxdigit((unsigned char)s[i]))
            return 0;
    return 1;
}

/* ---- POST /v1/sagas ---- */

static int json_body(const saga_http_request *req, saga_http_response *res, json_t **out)
{
    const char *ct = saga_http_request_header(req, "Content-Type");
    json_error_t je;
    *out = NULL;
    if (ct == NULL || strncmp(ct, JSON_TYPE, strlen(JSON_TYPE)) != 0 ||
        (ct[strlen(JSON_TYPE)] != '\0' && ct[strlen(JSON_TYPE)] != ';')) {
        problem(res, 415, "unsupported_media_type", "Unsupported Media Type", req->path,
                NULL, NULL, "the body must be %s (Content-Type is %s%s%s)", JSON_TYPE,
                ct ? "\"" : "", ct ? ct : "missing", ct ? "\"" : "");
        return -1;
    }
    *out = json_loadb(req->body != NULL ? req->body : "", req->body_len,
                      JSON_REJECT_DUPLICATES, &je);
    if (*out == NULL) {
        problem(res, 400, "malformed_json", "Bad Request", req->path, NULL, NULL,
                "the body is not JSON: %s at line %d, column %d", je.text, je.line,
                je.column);
        return -1;
    }
    if (!json_is_object(*out)) {
        problem(res, 400, "malformed_json", "Bad Request", req->path, "", NULL,
                "the body must be a JSON object");
        json_decref(*out);
        *out = NULL;
        return -1;
    }
    return 0;
}

static void start_saga(saga_api *a, const saga_http_request *req, saga_http_response *res)
{
    static const char *const allowed[] = {"definition", "input", NULL};
    json_t *body, *input;
    const char *name, *key = saga_http_request_header(req, "Idempotency-Key"),
                      *tp = saga_http_request_header(req, "traceparent"), *k;
    char *text = NULL;
    json_t *v;
    PGconn *db;
    PGresult *r;

    if (json_body(req, res, &body) != 0)
        return;
    json_object_foreach(body, k, v)
    {
        int ok = 0;
        for (int i = 0; allowed[i] != NULL; i++)
            ok |= strcmp(k, allowed[i]) == 0;
        if (!ok) {
            char ptr[300];
            snprintf(ptr, sizeof ptr, "/%.250s", k);
            problem(res, 422, "unknown_field", "Unprocessable Content", req->path, ptr,
                    NULL, "unknown field \"%.100s\" (expected definition and input)", k);
            json_decref(body);
            return;
        }
    }
    name = json_string_value(json_object_get(body, "definition"));
    if (name == NULL || *name == '\0') {
        problem(res, 422, "invalid_field", "Unprocessable Content", req->path,
                "/definition", NULL,
                "\"definition\" must be the name of a deployed definition (a string)");
        json_decref(body);
        return;
    }
    input = json_object_get(body, "input");
    if (input != NULL && !json_is_object(input) && !json_is_null(input)) {
        problem(res, 422, "invalid_field", "Unprocessable Content", req->path, "/input",
                NULL, "\"input\" must be a JSON object");
        json_decref(body);
        return;
    }
    if (key != NULL && (*key == '\0' || strlen(key) > 255)) {
        problem(res, 400, "invalid_header", "Bad Request", req->path, NULL,
                "Idempotency-Key", "Idempotency-Key must be 1 to 255 bytes");
        json_decref(body);
        return;
    }
    if (tp != NULL) {
        saga_trace_context ctx;
        if (saga_traceparent_parse(tp, strlen(tp), &ctx) != SAGA_OK) {
            problem(res, 400, "invalid_header", "Bad Request", req->path, NULL,
                    "traceparent",
                    "traceparent \"%.80s\" is not a W3C trace context (00-<32 hex>-<16 "
                    "hex>-<2 hex>)",
                    tp);
            json_decref(body);
            return;
        }
    }
    text = input != NULL && json_is_object(input) ? json_dumps(input, JSON_COMPACT)
                                                  : strdup("{}");
    if (text == NULL || (db = take(a)) == NULL) {
        if (text == NULL)
            problem(res, 500, "internal", "Internal Server Error", req->path, NULL, NULL,
                    "out of memory");
        else
            unavailable(res, req->path);
        free(text);
        json_decref(body);
        return;
    }
    {
        /* The definition must exist now (a request for one that does not
         * would only be rejected later); then insert, or find the caller's
         * request with that key, and wake sagad, in one statement. */
        const char *p[5] = {name, text, key, tp, a->caller};
        r = PQexecParams(
            db,
            "WITH d AS (SELECT 1 FROM saga.saga_definition WHERE name = $1 LIMIT 1),"
            " ins AS (INSERT INTO saga.start_request (id, name, input, idempotency_key,"
            "  traceparent, requested_by) SELECT gen_random_uuid(), $1, $2::jsonb, $3, "
            "$4, $5"
            "  FROM d ON CONFLICT (requested_by, idempotency_key) DO NOTHING RETURNING "
            "id)"
            " SELECT id, false, pg_notify('saga_outbox', 'start') FROM ins"
            " UNION ALL SELECT id, true, NULL FROM saga.start_request WHERE"
            "  idempotency_key = $3 AND requested_by = $5 AND NOT EXISTS (SELECT 1 FROM "
            "ins)"
            "  AND EXISTS (SELECT 1 FROM d)"
            " UNION ALL SELECT NULL, NULL, NULL WHERE NOT EXISTS (SELECT 1 FROM d)",
            5, NULL, p, NULL, NULL, 0);
    }
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
        const char *msg = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
        if (state != NULL && strcmp(state, "54000") == 0) /* the input limit */
            problem(res, 413, "input_too_large", "Content Too Large", req->path, "/input",
                    NULL, "%s", msg ? msg : "the input is over the limit");
        else if (PQstatus(db) != CONNECTION_OK)
            unavailable(res, req->path);
        else
            problem(res, 500, "database_error", "Internal Server Error", req->path, NULL,
                    NULL, "starting saga %.100s: %s", name, msg ? msg : "database error");
    } else if (PQntuples(r) != 1) {
        /* ON CONFLICT waited for another request with the same key to
         * commit; its row is visible to a new statement only. */
        problem(res, 409, "conflict", "Conflict", req->path, NULL, "Idempotency-Key",
                "another request with the same Idempotency-Key was being made: send it "
                "again");
    } else if (PQgetisnull(r, 0, 0)) {
        problem(res, 422, "unknown_definition", "Unprocessable Content", req->path,
                "/definition", NULL, "no definition \"%.100s\" is deployed", name);
    } else {
        const char *id = PQgetvalue(r, 0, 0);
        int existed = strcmp(PQgetvalue(r, 0, 1), "t") == 0;
        char *saga = NULL;
        snprintf(res->location, sizeof res->location, "/v1/sagas/%s", id);
        if (saga_read_saga(db, id, &saga, NULL) != SAGA_OK) {
            json_t *o = json_pack("{s:s, s:s}", "id", id, "status", "pending");
            saga = o != NULL ? json_dumps(o, JSON_COMPACT) : NULL;
            json_decref(o);
        }
        answer(res, existed ? 200 : 201, JSON_TYPE, saga);
    }
    PQclear(r);
    give_back(a, db);
    free(text);
    json_decref(body);
}

/* ---- GET /v1/sagas/{id} ---- */

static void get_saga(saga_api *a, const saga_http_request *req, const char *id,
                     saga_http_response *res)
{
    PGconn *db;
    char *json = NULL;
    saga_error err = {0};
    int rc;
    if (!is_uuid(id)) {
        problem(res, 404, "not_found", "Not Found", req->path, NULL, NULL,
                "no saga \"%.60s\": a saga id is a UUID", id);
        return;
    }
    if ((db = take(a)) == NULL) {
        unavailable(res, req->path);
        return;
    }
    rc = saga_read_saga(db, id, &json, &err);
    if (rc == SAGA_OK)
        answer(res, 200, JSON_TYPE, json);
    else if (rc == SAGA_ENOTFOUND)
        problem(res, 404, "not_found", "Not Found", req->path, NULL, NULL, "no saga %s",
                id);
    else if (PQstatus(db) != CONNECTION_OK)
        unavailable(res, req->path);
    else
        problem(res, 500, "database_error", "Internal Server Error", req->path, NULL,
                NULL, "%s", err.message);
    give_back(a, db);
}

/* ---- GET /v1/sagas ---- */

/* A time filter: an RFC 3339 timestamp, or a duration back from now
 * ("30m", "2h"). Into buf as a timestamp PostgreSQL reads. */
static int time_arg(const char *v, char *buf, size_t size)
{
    int64_t ms;
    if (saga_duration_parse(v, &ms) == 0) {
        time_t t = (time_t)((saga__wall_ms() - ms) / 1000);
        struct tm tm;
        gmtime_r(&t, &tm);
        strftime(buf, size, "%Y-%m-%dT%H:%M:%SZ", &tm);
        return 0;
    }
    /* YYYY-MM-DDTHH:MM:SS with an optional fraction and a zone. */
    if (strlen(v) < 20 || strlen(v) > 40)
        return -1;
    for (const char *c = v; *c; c++)
        if (!isdigit((unsigned char)*c) && strchr("-:T.Z+", *c) == NULL)
            return -1;
    if (v[4] != '-' || v[7] != '-' || v[10] != 'T' || v[13] != ':' || v[16] != ':')
        return -1;
    snprintf(buf, size, "%s", v);
    return 0;
}

static void search(saga_api *a, const saga_http_request *req, saga_http_response *res)
{
    static const char *const statuses[] = {"running",     "compensating", "completed",
                                           "compensated", "failed",       "resolved",
                                           NULL};
    static const char *const known[] = {"status", "definition", "since", "older_than",
                                        "limit",  "cursor",     NULL};
    saga_read_filter f = {.limit = 50};
    char since[48], older[48], *json = NULL;
    const char *v;
    saga_error err = {0};
    PGconn *db;
    int rc;

    for (int i = 0; req->args != NULL && req->args[i] != NULL; i++) {
        int ok = 0;
        for (int k = 0; known[k] != NULL; k++)
            ok |= strcmp(req->args[i], known[k]) == 0;
        if (!ok) {
            problem(res, 400, "unknown_parameter", "Bad Request", req->path, NULL,
                    req->args[i],
                    "unknown query parameter \"%.60s\" (expected status, definition, "
                    "since, older_than, limit, cursor)",
                    req->args[i]);
            return;
        }
    }
    if ((v = saga_http_request_arg(req, "status")) != NULL) {
        int ok = 0;
        for (int i = 0; statuses[i] != NULL; i++)
            ok |= strcmp(v, statuses[i]) == 0;
        if (!ok) {
            problem(res, 400, "invalid_parameter", "Bad Request", req->path, NULL,
                    "status",
                    "status \"%.40s\" is not one of running, compensating, completed, "
                    "compensated, failed, resolved",
                    v);
            return;
        }
        f.status = v;
    }
    f.definition = saga_http_request_arg(req, "definition");
    if ((v = saga_http_request_arg(req, "since")) != NULL) {
        if (time_arg(v, since, sizeof since) != 0) {
            problem(
                res, 400, "invalid_parameter", "Bad Request", req->path, NULL, "since",
                "since \"%.40s\" is neither a duration (30m, 2h) nor an RFC 3339 time",
                v);
            return;
        }
        f.since = since;
    }
    if ((v = saga_http_request_arg(req, "older_than")) != NULL) {
        if (time_arg(v, older, sizeof older) != 0) {
            problem(
                res, 400, "invalid_parameter", "Bad Request", req->path, NULL,
                "older_than",
                "older_than \"%.40s\" is neither a duration (30m, 2h) nor an RFC 3339 "
                "time",
                v);
            return;
        }
        f.older_than = older;
    }
    if ((v = saga_http_request_arg(req, "limit")) != NULL) {
        char *end;
        long n = strtol(v, &end, 10);
        if (*v == '\0' || *end != '\0' || n < 1 || n > 1000) {
            problem(res, 400, "invalid_parameter", "Bad Request", req->path, NULL,
                    "limit", "limit \"%.40s\": a whole number from 1 to 1000", v);
            return;
        }
        f.limit = (int)n;
    }
    f.cursor = saga_http_request_arg(req, "cursor");
    if ((db = take(a)) == NULL) {
        unavailable(res, req->path);
        return;
    }
    rc = saga_read_search(db, &f, &json, &err);
    if (rc == SAGA_OK)
        answer(res, 200, JSON_TYPE, json);
    else if (rc == SAGA_EINVAL)
        problem(res, 400, "invalid_parameter", "Bad Request", req->path, NULL, "cursor",
                "%s", err.message);
    else if (PQstatus(db) != CONNECTION_OK)
        unavailable(res, req->path);
    else
        problem(res, 500, "database_error", "Internal Server Error", req->path, NULL,
                NULL, "%s", err.message);
    give_back(a, db);
}

/* ---- routing ---- */

void saga_api_handle(void *arg, const saga_http_request *req, saga_http_response *res)
{
    saga_api *a = arg;
    const char *p = req->path, *m = req->method;
    if (strcmp(p, "/v1/sagas") == 0) {
        if (strcmp(m, "POST") == 0)
            start_saga(a, req, res);
        else if (strcmp(m, "GET") == 0 || strcmp(m, "HEAD") == 0)
            search(a, req, res);
        else {
            res->allow = "GET, HEAD, POST";
            problem(res, 405, "method_not_allowed", "Method Not Allowed", p, NULL, NULL,
                    "%s is not allowed on /v1/sagas (GET, HEAD, POST)", m);
        }
        return;
    }
    if (strncmp(p, "/v1/sagas/", 10) == 0 && strchr(p + 10, '/') == NULL && p[10]) {
        if (strcmp(m, "GET") == 0 || strcmp(m, "HEAD") == 0)
            get_saga(a, req, p + 10, res);
        else {
            res->allow = "GET, HEAD";
            problem(res, 405, "method_not_allowed", "Method Not Allowed", p, NULL, NULL,
                    "%s is not allowed on a saga (GET, HEAD)", m);
        }
        return;
    }
    problem(res, 404, "not_found", "Not Found", p, NULL, NULL,
            "no resource %.200s (see docs/API.md)", p);
}
