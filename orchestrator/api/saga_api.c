/* saga_api.c - the API's routes: which handler answers which method on
 * which path, 404 and 405 (with Allow) for the rest. */
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
#include "saga_api_openapi.h"
#include "saga_duration.h"
#include "saga_read.h"
#include "saga_shared.h"

/* ---- routing ---- */

/* 405 with the methods the resource has. */
static void not_allowed(saga_http_response *res, const char *path, const char *method,
                        const char *allow, const char *what)
{
    res->allow = allow;
    saga__api_problem(res, 405, "method_not_allowed", "Method Not Allowed", path, NULL,
                      NULL, "%s is not allowed on %s (%s)", method, what, allow);
}

static int is_get(const char *m)
{
    return strcmp(m, "GET") == 0 || strcmp(m, "HEAD") == 0;
}

void saga_api_handle(void *arg, const saga_http_request *req, saga_http_response *res)
{
    saga_api *a = arg;
    const char *p = req->path, *m = req->method;
    saga__api_caller who;
    /* The API's description is public: a client reads it before it has
     * a token. */
    if (strcmp(p, "/v1/openapi.json") == 0) {
        saga__api_openapi(req, res);
        return;
    }
    /* The console's files hold no data; its session authenticates itself
     * (a login has no session yet, a logout may have a stale one). */
    if (strcmp(p, "/") == 0 || strncmp(p, "/console/", 9) == 0) {
        saga__api_console(req, res);
        return;
    }
    if (strcmp(p, "/v1/session") == 0) {
        saga__api_session(a, req, res);
        return;
    }
    if (saga__api_authenticate(a, req, &who, res) != 0 ||
        saga__api_csrf_check(&who, req, res) != 0)
        return;
    if (strcmp(p, "/v1/attention") == 0 || strcmp(p, "/v1/stats") == 0 ||
        strcmp(p, "/v1/services") == 0) {
        if (!is_get(m))
            not_allowed(res, p, m, "GET, HEAD", p);
        else if (p[4] == 'a')
            saga__api_attention(a, &who, req, res);
        else if (p[5] == 't')
            saga__api_stats(a, &who, req, res);
        else
            saga__api_services(a, &who, req, res);
    } else if (strcmp(p, "/v1/sagas") == 0) {
        if (strcmp(m, "POST") == 0)
            saga__api_start_saga(a, &who, req, res);
        else if (is_get(m))
            saga__api_search(a, &who, req, res);
        else
            not_allowed(res, p, m, "GET, HEAD, POST", "/v1/sagas");
    } else if (strncmp(p, "/v1/sagas/", 10) == 0 && strchr(p + 10, '/') == NULL &&
               p[10]) {
        if (is_get(m))
            saga__api_get_saga(a, &who, req, p + 10, res);
        else
            not_allowed(res, p, m, "GET, HEAD", "a saga");
    } else if (strncmp(p, "/v1/sagas/", 10) == 0 && strlen(p) > 10 + SAGA_ID_LEN + 1 &&
               p[10 + SAGA_ID_LEN] == '/' && strchr(p + 11 + SAGA_ID_LEN, '/') == NULL) {
        /* /v1/sagas/{id}/{what} */
        char id[SAGA_ID_LEN + 1];
        const char *what = p + 11 + SAGA_ID_LEN;
        memcpy(id, p + 10, SAGA_ID_LEN);
        id[SAGA_ID_LEN] = '\0';
        if (strcmp(what, "history") == 0) {
            if (is_get(m))
                saga__api_history(a, &who, req, id, res);
            else
                not_allowed(res, p, m, "GET, HEAD", "a saga's history");
        } else if (strcmp(what, "cancel") == 0) {
            if (strcmp(m, "POST") == 0)
                saga__api_cancel(a, &who, req, id, res);
            else
                not_allowed(res, p, m, "POST", "a cancel");
        } else if (strcmp(what, "retry") == 0 || strcmp(what, "compensate") == 0 ||
                   strcmp(what, "skip") == 0 || strcmp(what, "resolve") == 0) {
            if (strcmp(m, "POST") == 0)
                saga__api_repair(a, &who, req, id, what, res);
            else
                not_allowed(res, p, m, "POST", "a repair");
        } else {
            saga__api_problem(res, 404, "not_found", "Not Found", p, NULL, NULL,
                              "no resource %.200s (a saga has history, retry, "
                              "compensate, skip, resolve, cancel)",
                              p);
        }
    } else if (strncmp(p, "/v1/sagas/", 10) == 0 && strlen(p) > 10 + SAGA_ID_LEN + 9 &&
               strncmp(p + 10 + SAGA_ID_LEN, "/signals/", 9) == 0 &&
               strchr(p + 10 + SAGA_ID_LEN + 9, '/') == NULL) {
        char id[SAGA_ID_LEN + 1];
        memcpy(id, p + 10, SAGA_ID_LEN);
        id[SAGA_ID_LEN] = '\0';
        if (strcmp(m, "POST") == 0)
            saga__api_signal(a, &who, req, id, p + 10 + SAGA_ID_LEN + 9, res);
        else
            not_allowed(res, p, m, "POST", "a signal");
    } else if (strcmp(p, "/v1/repairs") == 0) {
        if (strcmp(m, "POST") == 0)
            saga__api_bulk_repair(a, &who, req, res);
        else
            not_allowed(res, p, m, "POST", "bulk repairs");
    } else if (strcmp(p, "/v1/definitions") == 0 ||
               strncmp(p, "/v1/definitions/", 16) == 0) {
        if (is_get(m))
            saga__api_definitions(a, &who, req, p[15] == '/' ? p + 16 : "", res);
        else if (strcmp(m, "POST") == 0 && p[15] == '\0')
            saga__api_deploy(a, &who, req, res);
        else if (p[15] == '\0')
            not_allowed(res, p, m, "GET, HEAD, POST", "definitions");
        else
            not_allowed(res, p, m, "GET, HEAD", "a definition");
    } else {
        saga__api_problem(res, 404, "not_found", "Not Found", p, NULL, NULL,
                          "no resource %.200s (see docs/API.md)", p);
    }
}
