/* saga_api_pool.c - the API's database connections (a small pool, made
 * on demand) and its answers: bodies, RFC 9457 problem documents. */
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

int saga_api_new(const saga_api_config *cfg, saga_api **out, saga_error *err)
{
    saga_api *a;
    *out = NULL;
    if (cfg == NULL || cfg->db_url == NULL)
        return saga__error_set(err, SAGA_EINVAL, "api: a database URL is needed");
    if ((a = calloc(1, sizeof *a)) == NULL)
        return saga__error_set(err, SAGA_ENOMEM, "out of memory");
    a->max = cfg->connections > 0 ? cfg->connections : 4;
    a->local = cfg->local != 0;
    a->db_url = strdup(cfg->db_url);
    a->idle = calloc((size_t)a->max, sizeof *a->idle);
    if (a->db_url == NULL || a->idle == NULL || pthread_mutex_init(&a->lock, NULL) != 0) {
        free(a->db_url);
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
    free(a);
}

/* A connection of the pool (waiting for one while all are in use), or
 * NULL when the database cannot be reached. */
PGconn *saga__api_take(saga_api *a)
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

void saga__api_give_back(saga_api *a, PGconn *db)
{
    pthread_mutex_lock(&a->lock);
    a->idle[a->nidle++] = db;
    pthread_cond_signal(&a->freed);
    pthread_mutex_unlock(&a->lock);
}

/* ---- answers ---- */

void saga__api_answer(saga_http_response *res, unsigned int status, const char *type,
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
void saga__api_problem(saga_http_response *res, unsigned int status, const char *code,
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
    saga__api_answer(res, status, PROBLEM_TYPE,
                     p != NULL ? json_dumps(p, JSON_COMPACT) : NULL);
    json_decref(p);
}

void saga__api_unavailable(saga_http_response *res, const char *path)
{
    saga__api_problem(
        res, 503, "database_unavailable", "Service Unavailable", path, NULL, NULL,
        "the orchestrator's database cannot be reached; try again (GET /readyz says "
        "when it is back)");
}

int saga__api_is_uuid(const char *s)
{
    if (strlen(s) != SAGA_ID_LEN)
        return 0;
    for (int i = 0; i < SAGA_ID_LEN; i++)
        if ((i == 8 || i == 13 || i == 18 || i == 23) ? s[i] != '-'
                                                      : !isxdigit((unsigned char)s[i]))
            return 0;
    return 1;
}

void saga__api_db_failed(saga_http_response *res, const char *path, PGconn *db,
                         const saga_error *err)
{
    if (PQstatus(db) != CONNECTION_OK)
        saga__api_unavailable(res, path);
    else
        saga__api_problem(res, 500, "database_error", "Internal Server Error", path, NULL,
                          NULL, "%s", err->message);
}
