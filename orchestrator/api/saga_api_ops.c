/* saga_api_ops.c - what an operator watches, for the console and any
 * dashboard: GET /v1/attention (the sagas that need someone), /v1/stats
 * (counts by status and definition) and /v1/services (each service's
 * breaker and bulkhead as every sagad reported it, and this sagad's
 * counters of commands and replies). Readers and operators: these span
 * every caller's sagas, so a starter may not. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "saga_api_internal.h"
#include "saga_attention.h"
#include "saga_duration.h"
#include "saga_shared.h"

/* 0 when who may see every saga, else -1 with res answered 403. */
static int may_see_all(const saga__api_caller *who, const saga_http_request *req,
                       saga_http_response *res)
{
    if (saga__api_owner(who) == NULL)
        return 0;
    saga__api_problem(
        res, 403, "forbidden", "Forbidden", req->path, NULL, NULL,
        "a starter sees only its own sagas: %s is for readers and operators", req->path);
    return -1;
}

/* 0 when every query parameter is one of known (NULL-terminated), else
 * -1 with res answered 400 naming it. */
static int known_args(const saga_http_request *req, const char *const *known,
                      const char *expected, saga_http_response *res)
{
    for (int i = 0; req->args != NULL && req->args[i] != NULL; i++) {
        int ok = 0;
        for (int k = 0; known[k] != NULL; k++)
            ok |= strcmp(req->args[i], known[k]) == 0;
        if (!ok) {
            saga__api_problem(res, 400, "unknown_parameter", "Bad Request", req->path,
                              NULL, req->args[i],
                              "unknown query parameter \"%.60s\" (expected %s)",
                              req->args[i], expected);
            return -1;
        }
    }
    return 0;
}

/* Run one of saga_attention.h's reads and answer with its JSON. */
static void answer_read(saga_api *a, const saga_http_request *req,
                        saga_http_response *res,
                        int (*read)(PGconn *, void *, char **, saga_error *), void *arg)
{
    PGconn *db;
    char *json = NULL;
    saga_error err = {0};
    if ((db = saga__api_take(a)) == NULL) {
        saga__api_unavailable(res, req->path);
        return;
    }
    if (read(db, arg, &json, &err) == SAGA_OK)
        saga__api_answer(res, 200, JSON_TYPE, json);
    else
        saga__api_db_failed(res, req->path, db, &err);
    saga__api_give_back(a, db);
}

typedef struct attention_args {
    int64_t older_ms;
    int limit;
} attention_args;

static int read_attention(PGconn *db, void *arg, char **json, saga_error *err)
{
    attention_args *x = arg;
    return saga_read_attention(db, x->older_ms, x->limit, json, err);
}

static int read_counts(PGconn *db, void *arg, char **json, saga_error *err)
{
    (void)arg;
    return saga_read_counts(db, json, err);
}

void saga__api_attention(saga_api *a, const saga__api_caller *who,
                         const saga_http_request *req, saga_http_response *res)
{
    static const char *const known[] = {"older_than", "limit", NULL};
    attention_args x = {5 * 60 * 1000, 100};
    const char *v;
    if (may_see_all(who, req, res) != 0 ||
        known_args(req, known, "older_than, limit", res) != 0)
        return;
    /* As sagactl stuck: idle longer than this (default 5m) needs someone. */
    if ((v = saga_http_request_arg(req, "older_than")) != NULL &&
        (strlen(v) > 20 || saga_duration_parse(v, &x.older_ms) != 0 || x.older_ms < 0 ||
         x.older_ms > (int64_t)366 * 24 * 3600 * 1000)) {
        saga__api_problem(res, 400, "invalid_parameter", "Bad Request", req->path, NULL,
                          "older_than",
                          "older_than \"%.40s\" is not a duration (30s, 5m, 2h; at most "
                          "366 days, 20 characters)",
                          v);
        return;
    }
    if ((v = saga_http_request_arg(req, "limit")) != NULL) {
        char *end;
        long n = strtol(v, &end, 10);
        if (*v == '\0' || *end != '\0' || n < 1 || n > 1000) {
            saga__api_problem(res, 400, "invalid_parameter", "Bad Request", req->path,
                              NULL, "limit", "limit \"%.40s\" is not 1 to 1000", v);
            return;
        }
        x.limit = (int)n;
    }
    answer_read(a, req, res, read_attention, &x);
}

void saga__api_stats(saga_api *a, const saga__api_caller *who,
                     const saga_http_request *req, saga_http_response *res)
{
    static const char *const known[] = {NULL};
    if (may_see_all(who, req, res) != 0 || known_args(req, known, "none", res) != 0)
        return;
    answer_read(a, req, res, read_counts, NULL);
}

/* ---- /v1/services ---- */

/* The value of label name in a Prometheus line's labels (from '{' to
 * '}') into buf, or 0 when it has none. */
static int label(const char *labels, const char *name, char *buf, size_t size)
{
    char key[40];
    const char *p, *end;
    size_t n;
    snprintf(key, sizeof key, "%s=\"", name);
    for (p = labels; (p = strstr(p, key)) != NULL; p++)
        if (p[-1] == '{' || p[-1] == ',')
            break;
    if (p == NULL)
        return 0;
    p += strlen(key);
    if ((end = strchr(p, '"')) == NULL || (n = (size_t)(end - p)) >= size)
        return 0;
    memcpy(buf, p, n);
    buf[n] = '\0';
    return 1;
}

/* Add value to counters[service][field]. */
static void add(json_t *counters, const char *service, const char *field, double value)
{
    json_t *svc = json_object_get(counters, service), *cur;
    if (svc == NULL) {
        svc = json_pack("{s:i, s:i, s:i, s:i, s:i}", "dispatched", 0, "ok", 0, "failed",
                        0, "retry", 0, "timeouts", 0);
        if (svc == NULL || json_object_set_new(counters, service, svc) != 0)
            return;
    }
    cur = json_object_get(svc, field);
    json_object_set_new(svc, field,
                        json_integer(json_integer_value(cur) + (json_int_t)value));
}

/* This sagad's per-service counters, read back from its metrics as
 * /metrics shows them: the one place they are kept. */
static json_t *counters_of(saga_metrics *m)
{
    static const struct {
        const char *metric, *field; /* field NULL: the status label */
    } wanted[] = {{"saga_steps_dispatched_total{", "dispatched"},
                  {"saga_step_timeouts_total{", "timeouts"},
                  {"saga_replies_total{", NULL}};
    json_t *counters = json_object();
    char *buf = NULL, *line, *save = NULL;
    size_t cap = 0, len = 0;
    if (counters == NULL || m == NULL ||
        saga_metrics_render(m, &buf, &cap, &len) != SAGA_OK) {
        free(buf);
        return counters;
    }
    for (line = strtok_r(buf, "\n", &save); line != NULL;
         line = strtok_r(NULL, "\n", &save)) {
        for (size_t i = 0; i < sizeof wanted / sizeof wanted[0]; i++) {
            char service[200], status[20];
            const char *close, *field = wanted[i].field;
            size_t n = strlen(wanted[i].metric);
            if (strncmp(line, wanted[i].metric, n) != 0 ||
                (close = strrchr(line, '}')) == NULL ||
                !label(line + n - 1, "service", service, sizeof service))
                continue;
            if (field == NULL) {
                if (!label(line + n - 1, "status", status, sizeof status) ||
                    (strcmp(status, "ok") != 0 && strcmp(status, "failed") != 0 &&
                     strcmp(status, "retry") != 0))
                    continue;
                field = status;
            }
            add(counters, service, field, strtod(close + 1, NULL));
        }
    }
    free(buf);
    return counters;
}

static int read_health(PGconn *db, void *arg, char **json, saga_error *err)
{
    char *rows = NULL;
    json_t *o;
    int rc = saga_read_service_health(db, &rows, err);
    *json = NULL;
    if (rc != SAGA_OK)
        return rc;
    o = json_pack("{s:o, s:o, s:s}", "health", saga__json_from_pg(rows, 0, NULL),
                  "counters", counters_of(arg), "counters_from",
                  "this sagad instance, since it started");
    free(rows);
    if (o == NULL || (*json = json_dumps(o, JSON_COMPACT)) == NULL)
        rc = saga__error_set(err, SAGA_ENOMEM, "out of memory");
    json_decref(o);
    return rc;
}

void saga__api_services(saga_api *a, const saga__api_caller *who,
                        const saga_http_request *req, saga_http_response *res)
{
    static const char *const known[] = {NULL};
    if (may_see_all(who, req, res) != 0 || known_args(req, known, "none", res) != 0)
        return;
    answer_read(a, req, res, read_health, a->metrics);
}
