/* saga_api_read.c - the API's reads: a saga, its history, a search with
 * keyset pagination, the definitions. */
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

/* ---- GET /v1/sagas/{id} and /v1/sagas/{id}/history ---- */

/* One saga (history 0) or its timeline (history 1), or why not. */
static void read_saga(saga_api *a, const saga__api_caller *who,
                      const saga_http_request *req, const char *id, int history,
                      saga_http_response *res)
{
    PGconn *db;
    char *json = NULL;
    json_t *events = NULL;
    saga_error err = {0};
    int rc;
    if (!saga__api_is_uuid(id)) {
        saga__api_problem(res, 404, "not_found", "Not Found", req->path, NULL, NULL,
                          "no saga \"%.60s\": a saga id is a UUID", id);
        return;
    }
    if ((db = saga__api_take(a)) == NULL) {
        saga__api_unavailable(res, req->path);
        return;
    }
    rc = history ? saga_read_history(db, id, saga__api_owner(who), &events, &err)
                 : saga_read_saga(db, id, saga__api_owner(who), &json, &err);
    if (rc == SAGA_OK)
        saga__api_answer(res, 200, JSON_TYPE,
                         history ? json_dumps(events, JSON_COMPACT) : json);
    else if (rc == SAGA_ENOTFOUND)
        saga__api_problem(res, 404, "not_found", "Not Found", req->path, NULL, NULL,
                          "no saga %s", id);
    else
        saga__api_db_failed(res, req->path, db, &err);
    json_decref(events);
    saga__api_give_back(a, db);
}

/* Whether the saga (JSON text) has stopped: ended, stuck for an operator,
 * or its start request refused. */
static int stopped(const char *json)
{
    static const char *const ends[] = {"completed", "compensated", "failed", "resolved",
                                       "rejected",  "cancelled",   NULL};
    json_t *o = saga__json_from_pg(json, 0, NULL);
    const char *st = json_string_value(json_object_get(o, "status"));
    int yes = 0;
    for (int i = 0; st != NULL && ends[i] != NULL; i++)
        yes |= strcmp(st, ends[i]) == 0;
    json_decref(o);
    return yes;
}

/* The saga as JSON into *json, or -1 with res answered (404, 503, 500). */
static int read_one(saga_api *a, const saga__api_caller *who,
                    const saga_http_request *req, const char *id, char **json,
                    saga_http_response *res)
{
    saga_error err = {0};
    PGconn *db;
    int rc;
    if ((db = saga__api_take(a)) == NULL) {
        saga__api_unavailable(res, req->path);
        return -1;
    }
    rc = saga_read_saga(db, id, saga__api_owner(who), json, &err);
    if (rc == SAGA_ENOTFOUND)
        saga__api_problem(res, 404, "not_found", "Not Found", req->path, NULL, NULL,
                          "no saga %s", id);
    else if (rc != SAGA_OK)
        saga__api_db_failed(res, req->path, db, &err);
    saga__api_give_back(a, db);
    return rc == SAGA_OK ? 0 : -1;
}

/* GET /v1/sagas/{id}[?wait=DURATION]: with wait, the request is held
 * (saga_api_wait.c) until the saga stops or the time is up, then
 * answered with the saga as it is. */
void saga__api_get_saga(saga_api *a, const saga__api_caller *who,
                        const saga_http_request *req, const char *id,
                        saga_http_response *res)
{
    saga__api_waiter *w = *req->state;
    char *json = NULL;
    if (w == NULL) {
        const char *wait = saga_http_request_arg(req, "wait");
        int64_t ms = 0;
        for (int i = 0; req->args != NULL && req->args[i] != NULL; i++)
            if (strcmp(req->args[i], "wait") != 0) {
                saga__api_problem(res, 400, "unknown_parameter", "Bad Request", req->path,
                                  NULL, req->args[i],
                                  "unknown query parameter \"%.60s\" (expected wait)",
                                  req->args[i]);
                return;
            }
        if (wait != NULL && (saga_duration_parse(wait, &ms) != 0 || ms < 0 ||
                             ms > SAGA_API_MAX_WAIT_MS)) {
            saga__api_problem(res, 400, "invalid_parameter", "Bad Request", req->path,
                              NULL, "wait",
                              "wait \"%.40s\" must be a duration from 0 to 5m (500ms, "
                              "30s, 2m)",
                              wait);
            return;
        }
        if (!saga__api_is_uuid(id)) {
            saga__api_problem(res, 404, "not_found", "Not Found", req->path, NULL, NULL,
                              "no saga \"%.60s\": a saga id is a UUID", id);
            return;
        }
        /* Listed before the saga is read, so that an end in between is
         * not missed. */
        if (ms > 0)
            *req->state = w = saga__api_wait_list(a, NULL, id, saga__mono_ms() + ms, req);
    } else if (!saga__api_wait_over(a, w)) {
        saga__api_wait_list(a, w, id, 0, req); /* woken early: wait on */
    }
    for (int tries = 0;; tries++) {
        if (read_one(a, who, req, id, &json, res) != 0)
            return;
        if (w == NULL || tries == 2 || stopped(json) || saga__api_wait_over(a, w))
            break;
        if (saga__api_wait_hold(a, w, req)) {
            free(json);
            res->suspended = 1;
            return;
        }
        /* Woken between the read and the hold: read again. */
        free(json);
        json = NULL;
        saga__api_wait_list(a, w, id, 0, req);
    }
    saga__api_answer(res, 200, JSON_TYPE, json);
}

void saga__api_history(saga_api *a, const saga__api_caller *who,
                       const saga_http_request *req, const char *id,
                       saga_http_response *res)
{
    read_saga(a, who, req, id, 1, res);
}

/* ---- GET /v1/definitions... ---- */

/* GET /v1/definitions, /v1/definitions/{name}, .../{name}/versions/{v}. */
void saga__api_definitions(saga_api *a, const saga__api_caller *who,
                           const saga_http_request *req, const char *rest,
                           saga_http_response *res)
{
    char name[128] = "";
    int version = 0;
    (void)who; /* every role reads definitions */
    char *json = NULL;
    saga_error err = {0};
    PGconn *db;
    int rc;
    if (*rest != '\0') {
        const char *slash = strchr(rest, '/');
        size_t n = slash ? (size_t)(slash - rest) : strlen(rest);
        if (n == 0 || n >= sizeof name) {
            saga__api_problem(res, 404, "not_found", "Not Found", req->path, NULL, NULL,
                              "no resource %.200s", req->path);
            return;
        }
        memcpy(name, rest, n);
        if (slash != NULL) {
            char *end;
            long v;
            if (strncmp(slash, "/versions/", 10) != 0 ||
                (v = strtol(slash + 10, &end, 10)) < 1 || *end != '\0' || v > 1000000) {
                saga__api_problem(
                    res, 404, "not_found", "Not Found", req->path, NULL, NULL,
                    "no resource %.200s (a version is /versions/N, N from 1)", req->path);
                return;
            }
            version = (int)v;
        }
    }
    if ((db = saga__api_take(a)) == NULL) {
        saga__api_unavailable(res, req->path);
        return;
    }
    rc = name[0] ? saga_read_definition(db, name, version, &json, &err)
                 : saga_read_definitions(db, &json, &err);
    if (rc == SAGA_OK)
        saga__api_answer(res, 200, JSON_TYPE, json);
    else if (rc == SAGA_ENOTFOUND && version > 0)
        saga__api_problem(res, 404, "not_found", "Not Found", req->path, NULL, NULL,
                          "no version %d of definition \"%.100s\"", version, name);
    else if (rc == SAGA_ENOTFOUND)
        saga__api_problem(res, 404, "not_found", "Not Found", req->path, NULL, NULL,
                          "no definition \"%.100s\"", name);
    else
        saga__api_db_failed(res, req->path, db, &err);
    saga__api_give_back(a, db);
}

/* ---- GET /v1/sagas ---- */

void saga__api_search(saga_api *a, const saga__api_caller *who,
                      const saga_http_request *req, saga_http_response *res)
{
    static const char *const statuses[] = {"running",     "compensating", "completed",
                                           "compensated", "failed",       "resolved",
                                           NULL};
    static const char *const known[] = {"status", "definition", "business_key",
                                        "since",  "older_than", "limit",
                                        "cursor", NULL};
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
            saga__api_problem(
                res, 400, "unknown_parameter", "Bad Request", req->path, NULL,
                req->args[i],
                "unknown query parameter \"%.60s\" (expected status, definition, "
                "business_key, since, older_than, limit, cursor)",
                req->args[i]);
            return;
        }
    }
    if ((v = saga_http_request_arg(req, "status")) != NULL) {
        int ok = 0;
        for (int i = 0; statuses[i] != NULL; i++)
            ok |= strcmp(v, statuses[i]) == 0;
        if (!ok) {
            saga__api_problem(
                res, 400, "invalid_parameter", "Bad Request", req->path, NULL, "status",
                "status \"%.40s\" is not one of running, compensating, completed, "
                "compensated, failed, resolved",
                v);
            return;
        }
        f.status = v;
    }
    f.definition = saga_http_request_arg(req, "definition");
    f.business_key = saga_http_request_arg(req, "business_key");
    if ((v = saga_http_request_arg(req, "since")) != NULL) {
        if (saga__api_time_arg(v, since, sizeof since) != 0) {
            saga__api_problem(
                res, 400, "invalid_parameter", "Bad Request", req->path, NULL, "since",
                "since \"%.40s\" is neither a duration (30m, 2h) nor an RFC 3339 time",
                v);
            return;
        }
        f.since = since;
    }
    if ((v = saga_http_request_arg(req, "older_than")) != NULL) {
        if (saga__api_time_arg(v, older, sizeof older) != 0) {
            saga__api_problem(
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
            saga__api_problem(res, 400, "invalid_parameter", "Bad Request", req->path,
                              NULL, "limit",
                              "limit \"%.40s\": a whole number from 1 to 1000", v);
            return;
        }
        f.limit = (int)n;
    }
    f.cursor = saga_http_request_arg(req, "cursor");
    f.owner = saga__api_owner(who);
    if ((db = saga__api_take(a)) == NULL) {
        saga__api_unavailable(res, req->path);
        return;
    }
    rc = saga_read_search(db, &f, &json, &err);
    if (rc == SAGA_OK)
        saga__api_answer(res, 200, JSON_TYPE, json);
    else if (rc == SAGA_EINVAL)
        saga__api_problem(res, 400, "invalid_parameter", "Bad Request", req->path, NULL,
                          "cursor", "%s", err.message);
    else
        saga__api_db_failed(res, req->path, db, &err);
    saga__api_give_back(a, db);
}
