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
#include "saga_pgerr.h"
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
    a->kick = cfg->kick;
    a->kick_arg = cfg->kick_arg;
    a->db_url = strdup(cfg->db_url);
    a->tls = cfg->tls != 0;
    a->metrics = cfg->metrics;
    a->trace_url =
        cfg->trace_url != NULL && *cfg->trace_url ? strdup(cfg->trace_url) : NULL;
    a->idle = calloc((size_t)a->max, sizeof *a->idle);
    if (a->db_url == NULL || a->idle == NULL ||
        (cfg->trace_url != NULL && *cfg->trace_url && a->trace_url == NULL) ||
        pthread_mutex_init(&a->lock, NULL) != 0) {
        free(a->trace_url);
        free(a->db_url);
        free(a->idle);
        free(a);
        return saga__error_set(err, SAGA_ENOMEM, "out of memory");
    }
    pthread_cond_init(&a->freed, NULL);
    if (saga__api_hub_start(a) != SAGA_OK) {
        saga_api_free(a);
        return saga__error_set(err, SAGA_ENOMEM, "api: cannot start its waiting thread");
    }
    *out = a;
    return SAGA_OK;
}

void saga_api_quiesce(saga_api *a)
{
    if (a != NULL)
        saga__api_hub_stop(a);
}

void saga_api_free(saga_api *a)
{
    if (a == NULL)
        return;
    saga__api_hub_free(a);
    for (int i = 0; i < a->nidle; i++)
        PQfinish(a->idle[i]);
    pthread_cond_destroy(&a->freed);
    pthread_mutex_destroy(&a->lock);
    free(a->idle);
    free(a->db_url);
    free(a->trace_url);
    free(a);
}

/* A connection of the pool (waiting for one while all are in use), or
 * NULL when the database cannot be reached. */
PGconn *saga__api_take(saga_api *a)
{
    saga_pgerr_clear(); /* what a failure on it notes is this request's */
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

PGresult *saga__api_exec(PGconn *db, const char *name, const char *sql, int n,
                         const char *const *params)
{
    PGresult *r = PQexecPrepared(db, name, n, params, NULL, NULL, 0);
    const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
    /* 26000: not prepared on this connection (new, or reset) yet. */
    if (PQresultStatus(r) == PGRES_FATAL_ERROR && state != NULL &&
        strcmp(state, "26000") == 0) {
        PQclear(r);
        r = PQprepare(db, name, sql, n, NULL);
        if (PQresultStatus(r) != PGRES_COMMAND_OK)
            return r;
        PQclear(r);
        r = PQexecPrepared(db, name, n, params, NULL, NULL, 0);
    }
    return r;
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
/* s as valid UTF-8 in buf: a byte that does not start or continue a
 * well-formed sequence (a caller's bytes, or a character cut by %.200s)
 * becomes '?', so that the problem can always be written as JSON. */
static const char *utf8_clean(const char *s, char *buf, size_t size)
{
    size_t n = 0;
    const unsigned char *c = (const unsigned char *)s;
    while (*c && n + 1 < size) {
        int len = *c < 0x80             ? 1
                  : (*c & 0xE0) == 0xC0 ? 2
                  : (*c & 0xF0) == 0xE0 ? 3
                  : (*c & 0xF8) == 0xF0 ? 4
                                        : 0;
        int ok = len > 0 && n + (size_t)len < size;
        for (int i = 1; ok && i < len; i++)
            ok = (c[i] & 0xC0) == 0x80;
        /* Overlong forms and surrogates are not UTF-8 either. */
        if (ok && len == 2)
            ok = *c >= 0xC2;
        if (ok && len == 3)
            ok = !(*c == 0xE0 && c[1] < 0xA0) && !(*c == 0xED && c[1] >= 0xA0);
        if (ok && len == 4)
            ok = !(*c == 0xF0 && c[1] < 0x90) && !(*c == 0xF4 && c[1] >= 0x90) &&
                 *c <= 0xF4;
        if (!ok) {
            buf[n++] = '?';
            c++;
            continue;
        }
        memcpy(buf + n, c, (size_t)len);
        n += (size_t)len;
        c += len;
    }
    buf[n] = '\0';
    return buf;
}

void saga__api_problem(saga_http_response *res, unsigned int status, const char *code,
                       const char *title, const char *instance, const char *pointer,
                       const char *parameter, const char *fmt, ...)
{
    char detail[600], type[96], d[600], in[300], ptr[300], par[300];
    va_list ap;
    json_t *p;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof detail, fmt, ap);
    va_end(ap);
    snprintf(type, sizeof type, "urn:saga:problem:%s", code);
    p = json_pack("{s:s, s:s, s:i, s:s, s:s, s:s}", "type", type, "title", title,
                  "status", (int)status, "detail", utf8_clean(detail, d, sizeof d),
                  "instance", utf8_clean(instance, in, sizeof in), "code", code);
    if (p != NULL && pointer != NULL)
        json_object_set_new(p, "pointer",
                            json_string(utf8_clean(pointer, ptr, sizeof ptr)));
    if (p != NULL && parameter != NULL)
        json_object_set_new(p, "parameter",
                            json_string(utf8_clean(parameter, par, sizeof par)));
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
    else if (strncmp(saga_pgerr_sqlstate(), "22", 2) == 0)
        /* A data exception: a value the caller gave that PostgreSQL will
         * not take (a date that does not exist, a number out of range,
         * bytes that are not UTF-8). */
        saga__api_problem(res, 400, "invalid_parameter", "Bad Request", path, NULL, NULL,
                          "a value of the request is refused: %s", err->message);
    else
        saga__api_problem(res, 500, "database_error", "Internal Server Error", path, NULL,
                          NULL, "%s", err->message);
}

int saga__api_json_body(const saga_http_request *req, saga_http_response *res,
                        json_t **out)
{
    const char *ct = saga_http_request_header(req, "Content-Type");
    json_error_t je;
    *out = NULL;
    if (ct == NULL || strncmp(ct, JSON_TYPE, strlen(JSON_TYPE)) != 0 ||
        (ct[strlen(JSON_TYPE)] != '\0' && ct[strlen(JSON_TYPE)] != ';')) {
        saga__api_problem(res, 415, "unsupported_media_type", "Unsupported Media Type",
                          req->path, NULL, NULL,
                          "the body must be %s (Content-Type is %s%s%s)", JSON_TYPE,
                          ct ? "\"" : "", ct ? ct : "missing", ct ? "\"" : "");
        return -1;
    }
    *out = json_loadb(req->body != NULL ? req->body : "", req->body_len,
                      JSON_REJECT_DUPLICATES, &je);
    if (*out == NULL) {
        saga__api_problem(res, 400, "malformed_json", "Bad Request", req->path, NULL,
                          NULL, "the body is not JSON: %s at line %d, column %d", je.text,
                          je.line, je.column);
        return -1;
    }
    if (!json_is_object(*out)) {
        saga__api_problem(res, 400, "malformed_json", "Bad Request", req->path, "", NULL,
                          "the body must be a JSON object");
        json_decref(*out);
        *out = NULL;
        return -1;
    }
    return 0;
}

int saga__api_known_fields(const json_t *body, const char *const *allowed,
                           const char *expected, const char *where,
                           const saga_http_request *req, saga_http_response *res)
{
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)body, k, v)
    {
        int ok = 0;
        for (int i = 0; allowed[i] != NULL; i++)
            ok |= strcmp(k, allowed[i]) == 0;
        if (!ok) {
            char ptr[300];
            snprintf(ptr, sizeof ptr, "%s/%.250s", where, k);
            saga__api_problem(res, 422, "unknown_field", "Unprocessable Content",
                              req->path, ptr, NULL,
                              "unknown field \"%.100s\" (expected %s)", k, expected);
            return -1;
        }
    }
    return 0;
}

/* A time filter: an RFC 3339 timestamp, or a duration back from now
 * ("30m", "2h"). Into buf as a timestamp PostgreSQL reads. */
int saga__api_time_arg(const char *v, char *buf, size_t size)
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
