/* saga_api_repair.c - the operator's repairs over HTTP: POST
 * /v1/sagas/{id}/{retry|compensate|skip|resolve} and POST /v1/repairs
 * (every saga a filter matches, or a dry run that counts them), through
 * the same state machine and writer as sagactl (saga_repair.h). The
 * history records the token's name, never a string the caller sends. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <libpq-fe.h>

#include "saga_api_internal.h"
#include "saga_duration.h"
#include "saga_repair.h"
#include "saga_shared.h"

static const struct {
    const char *name;
    saga_event_kind kind;
} actions[] = {{"retry", SAGA_EV_OP_RETRY},
               {"compensate", SAGA_EV_OP_COMPENSATE},
               {"skip", SAGA_EV_OP_SKIP},
               {"resolve", SAGA_EV_OP_RESOLVE}};

static int action_kind(const char *name, saga_event_kind *kind)
{
    for (size_t i = 0; i < sizeof actions / sizeof actions[0]; i++)
        if (strcmp(actions[i].name, name) == 0) {
            *kind = actions[i].kind;
            return 0;
        }
    return -1;
}

static int forbidden(const saga__api_caller *who, const saga_http_request *req,
                     saga_http_response *res)
{
    if (saga__api_may_operate(who))
        return 0;
    saga__api_problem(res, 403, "forbidden", "Forbidden", req->path, NULL, NULL,
                      "caller %s has role %s, which may not repair sagas (operator may)",
                      who->name, who->role);
    return -1;
}

/* A string member that must be there (required) or may be, 1..max bytes;
 * -1 with res answered when it is not. */
static int string_field(const json_t *body, const char *name, int required, size_t max,
                        const char **out, const saga_http_request *req,
                        saga_http_response *res)
{
    const json_t *v = json_object_get(body, name);
    char ptr[64];
    *out = NULL;
    if (v == NULL && !required)
        return 0;
    snprintf(ptr, sizeof ptr, "/%s", name);
    if (!json_is_string(v) || json_string_length(v) == 0 || json_string_length(v) > max ||
        strlen(json_string_value(v)) != json_string_length(v)) {
        saga__api_problem(res, 422, v == NULL ? "missing_field" : "invalid_field",
                          "Unprocessable Content", req->path, ptr, NULL,
                          "\"%s\" %s a string of 1 to %zu bytes%s", name,
                          v == NULL ? "is required:" : "must be", max,
                          strcmp(name, "reason") == 0 ? " (why, for the history)" : "");
        return -1;
    }
    *out = json_string_value(v);
    return 0;
}

/* Who the history names: the token ("token:<name>"), or the local
 * caller without one. */
static void fill_actor(const saga__api_caller *who, saga_repair_req *rq, char *actor,
                       size_t size)
{
    if (strncmp(who->name, "token:", 6) == 0)
        snprintf(actor, size, "%s", who->name);
    else
        snprintf(actor, size, "local:%s", who->name);
    rq->actor = actor;
    rq->operator= actor;
    rq->topic_prefix = getenv("SAGA_TOPIC_PREFIX");
}

/* A repair the database refused for who it is (the token was revoked
 * since it was checked, or this sagad's role may not speak for tokens). */
static int refused_by_db(PGconn *db)
{
    const char *m = PQerrorMessage(db);
    return m != NULL && (strstr(m, "no such live operator token") != NULL ||
                         strstr(m, "may not write history in the name") != NULL);
}

static json_t *result_json(const saga_repair_result *r)
{
    return json_pack("{s:s, s:s, s:s, s:s, s:i}", "id", r->id, "status", r->status,
                     "step", r->step, "step_status", r->step_status, "commands_sent",
                     r->commands_sent);
}

void saga__api_repair(saga_api *a, const saga__api_caller *who,
                      const saga_http_request *req, const char *id, const char *action,
                      saga_http_response *res)
{
    static const char *const allowed[] = {"reason", "on_behalf_of", NULL};
    static const char *const allowed_skip[] = {"reason", "on_behalf_of", "step", "output",
                                               NULL};
    saga_repair_req rq = {0};
    saga_repair_result r;
    saga_error err = {0};
    char actor[96];
    json_t *body = NULL;
    PGconn *db;
    int rc;

    if (action_kind(action, &rq.kind) != 0) {
        saga__api_problem(res, 404, "not_found", "Not Found", req->path, NULL, NULL,
                          "no action \"%.40s\" (retry, compensate, skip, resolve)",
                          action);
        return;
    }
    if (!saga__api_is_uuid(id)) {
        saga__api_problem(res, 404, "not_found", "Not Found", req->path, NULL, NULL,
                          "no saga \"%.60s\": a saga id is a UUID", id);
        return;
    }
    if (forbidden(who, req, res) != 0 || saga__api_json_body(req, res, &body) != 0)
        return;
    if (saga__api_known_fields(body, rq.kind == SAGA_EV_OP_SKIP ? allowed_skip : allowed,
                               rq.kind == SAGA_EV_OP_SKIP
                                   ? "reason, on_behalf_of, step and output"
                                   : "reason and on_behalf_of (step and output are for "
                                     "skip)",
                               "", req, res) != 0 ||
        string_field(body, "reason", 1, 1000, &rq.reason, req, res) != 0 ||
        string_field(body, "on_behalf_of", 0, 200, &rq.on_behalf_of, req, res) != 0 ||
        (rq.kind == SAGA_EV_OP_SKIP &&
         string_field(body, "step", 1, 128, &rq.step, req, res) != 0)) {
        json_decref(body);
        return;
    }
    rq.output = json_object_get(body, "output");
    if (rq.output != NULL && !json_is_object(rq.output)) {
        saga__api_problem(res, 422, "invalid_field", "Unprocessable Content", req->path,
                          "/output", NULL, "\"output\" must be a JSON object");
        json_decref(body);
        return;
    }
    fill_actor(who, &rq, actor, sizeof actor);
    if ((db = saga__api_take(a)) == NULL) {
        saga__api_unavailable(res, req->path);
        json_decref(body);
        return;
    }
    rc = saga_repair_one(db, &rq, id, &r, &err);
    if (rc != SAGA_OK && refused_by_db(db))
        saga__api_problem(res, 403, "forbidden", "Forbidden", req->path, NULL, NULL, "%s",
                          err.message);
    else if (rc != SAGA_OK)
        saga__api_db_failed(res, req->path, db, &err);
    else if (r.outcome == SAGA_REPAIR_NOT_FOUND)
        saga__api_problem(res, 404, "not_found", "Not Found", req->path, NULL, NULL,
                          "no saga %s", id);
    else if (r.outcome == SAGA_REPAIR_REFUSED)
        saga__api_problem(res, 409, "refused", "Conflict", req->path, NULL, NULL,
                          "%s refused: %s (saga %s is %s at step %s)", action, r.why, id,
                          r.status, r.step);
    else {
        json_t *o = result_json(&r);
        saga__api_answer(res, 200, JSON_TYPE, o ? json_dumps(o, JSON_COMPACT) : NULL);
        json_decref(o);
    }
    saga__api_give_back(a, db);
    json_decref(body);
}

/* ---- POST /v1/repairs ---- */

#define BULK_REFUSED_SHOWN 100

typedef struct bulk {
    json_t *refused;
} bulk;

static void note(void *arg, const saga_repair_result *r)
{
    bulk *b = arg;
    if (r->outcome == SAGA_REPAIR_REFUSED &&
        json_array_size(b->refused) < BULK_REFUSED_SHOWN)
        json_array_append_new(b->refused,
                              json_pack("{s:s, s:s, s:s}", "id", r->id, "reason", r->why,
                                        "status", r->status));
}

/* A time filter: an RFC 3339 time, or a duration back from now. */
static int time_field(const json_t *filter, const char *name, char *buf, size_t size,
                      const char **out, const saga_http_request *req,
                      saga_http_response *res)
{
    const char *v;
    char ptr[64];
    *out = NULL;
    if (json_object_get(filter, name) == NULL)
        return 0;
    v = json_string_value(json_object_get(filter, name));
    snprintf(ptr, sizeof ptr, "/filter/%s", name);
    if (v == NULL || saga__api_time_arg(v, buf, size) != 0) {
        saga__api_problem(res, 422, "invalid_field", "Unprocessable Content", req->path,
                          ptr, NULL,
                          "\"%s\" must be a duration back from now (30m, 2h) or an RFC "
                          "3339 time",
                          name);
        return -1;
    }
    *out = buf;
    return 0;
}

/* The filter member: known fields, strings, a valid status. */
static int read_filter(const json_t *body, saga_repair_filter *f, char *since,
                       char *older, size_t size, const saga_http_request *req,
                       saga_http_response *res)
{
    static const char *const allowed[] = {
        "definition", "status", "step", "business_key", "since", "older_than", NULL};
    static const char *const fields[] = {"definition", "status", "step", "business_key"};
    const char **dst[] = {&f->definition, &f->status, &f->step, &f->business_key};
    const json_t *filter = json_object_get(body, "filter");
    if (!json_is_object(filter) || json_object_size(filter) == 0) {
        saga__api_problem(res, 422, filter ? "invalid_field" : "missing_field",
                          "Unprocessable Content", req->path, "/filter", NULL,
                          "\"filter\" is required: an object with at least one of "
                          "definition, status, step, business_key, since, older_than");
        return -1;
    }
    if (saga__api_known_fields(
            filter, allowed, "definition, status, step, business_key, since, older_than",
            "/filter", req, res) != 0)
        return -1;
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
        const json_t *v = json_object_get(filter, fields[i]);
        char ptr[64];
        if (v == NULL)
            continue;
        snprintf(ptr, sizeof ptr, "/filter/%s", fields[i]);
        if (!json_is_string(v) || json_string_length(v) == 0 ||
            json_string_length(v) > 200) {
            saga__api_problem(res, 422, "invalid_field", "Unprocessable Content",
                              req->path, ptr, NULL,
                              "\"%s\" must be a string of 1 to 200 bytes", fields[i]);
            return -1;
        }
        *dst[i] = json_string_value(v);
    }
    if (f->status != NULL) {
        saga_status st;
        if (saga_status_parse(f->status, &st) != 0 || st == SAGA_ST_NEW) {
            saga__api_problem(res, 422, "invalid_field", "Unprocessable Content",
                              req->path, "/filter/status", NULL,
                              "status \"%.40s\" is not one of running, compensating, "
                              "completed, compensated, failed, resolved",
                              f->status);
            return -1;
        }
    }
    if (time_field(filter, "since", since, size, &f->since, req, res) != 0 ||
        time_field(filter, "older_than", older, size, &f->older_than, req, res) != 0)
        return -1;
    return 0;
}

void saga__api_bulk_repair(saga_api *a, const saga__api_caller *who,
                           const saga_http_request *req, saga_http_response *res)
{
    static const char *const allowed[] = {
        "action", "reason", "on_behalf_of", "filter", "dry_run", "limit", NULL};
    saga_repair_req rq = {0};
    saga_repair_filter f = {0};
    saga_error err = {0};
    char actor[96], since[48], older[48];
    const char *action = NULL;
    json_t *body = NULL, *v, *out = NULL;
    int dry_run = 0, limit = 1000, rc;
    PGconn *db;

    if (forbidden(who, req, res) != 0 || saga__api_json_body(req, res, &body) != 0)
        return;
    if (saga__api_known_fields(body, allowed,
                               "action, reason, on_behalf_of, filter, dry_run, limit", "",
                               req, res) != 0 ||
        string_field(body, "action", 1, 20, &action, req, res) != 0)
        goto done;
    if (action_kind(action, &rq.kind) != 0 || rq.kind == SAGA_EV_OP_SKIP) {
        saga__api_problem(res, 422, "invalid_field", "Unprocessable Content", req->path,
                          "/action", NULL,
                          "\"action\" is retry, compensate or resolve (skip is for one "
                          "saga at a time), not \"%.40s\"",
                          action);
        goto done;
    }
    if ((v = json_object_get(body, "dry_run")) != NULL) {
        if (!json_is_boolean(v)) {
            saga__api_problem(res, 422, "invalid_field", "Unprocessable Content",
                              req->path, "/dry_run", NULL,
                              "\"dry_run\" must be true or false");
            goto done;
        }
        dry_run = json_is_true(v);
    }
    if ((v = json_object_get(body, "limit")) != NULL) {
        if (!json_is_integer(v) || json_integer_value(v) < 1 ||
            json_integer_value(v) > 10000) {
            saga__api_problem(res, 422, "invalid_field", "Unprocessable Content",
                              req->path, "/limit", NULL,
                              "\"limit\" must be a whole number from 1 to 10000");
            goto done;
        }
        limit = (int)json_integer_value(v);
    }
    if ((!dry_run && string_field(body, "reason", 1, 1000, &rq.reason, req, res) != 0) ||
        string_field(body, "reason", 0, 1000, &rq.reason, req, res) != 0 ||
        string_field(body, "on_behalf_of", 0, 200, &rq.on_behalf_of, req, res) != 0 ||
        read_filter(body, &f, since, older, sizeof since, req, res) != 0)
        goto done;
    fill_actor(who, &rq, actor, sizeof actor);
    if ((db = saga__api_take(a)) == NULL) {
        saga__api_unavailable(res, req->path);
        goto done;
    }
    if (dry_run) {
        long long count;
        char sample[10][SAGA_ID_LEN + 1];
        int ns;
        rc = saga_repair_count(db, &f, &count, sample, 10, &ns, &err);
        if (rc == SAGA_OK) {
            json_t *ids = json_array();
            for (int i = 0; i < ns; i++)
                json_array_append_new(ids, json_string(sample[i]));
            out = json_pack("{s:b, s:s, s:I, s:o, s:b}", "dry_run", 1, "action", action,
                            "matched", (json_int_t)count, "sample", ids, "more",
                            count > limit);
        }
    } else {
        bulk b = {json_array()};
        int repaired = 0, met = 0, more = 0;
        rc = saga_repair_matching(db, &rq, &f, limit, note, &b, &repaired, &met, &more,
                                  &err);
        if (rc == SAGA_OK)
            out = json_pack("{s:b, s:s, s:i, s:i, s:o, s:b}", "dry_run", 0, "action",
                            action, "matched", met, "repaired", repaired, "refused",
                            b.refused, "more", more);
        else
            json_decref(b.refused);
    }
    if (rc != SAGA_OK && refused_by_db(db))
        saga__api_problem(res, 403, "forbidden", "Forbidden", req->path, NULL, NULL, "%s",
                          err.message);
    else if (rc != SAGA_OK)
        saga__api_db_failed(res, req->path, db, &err);
    else
        saga__api_answer(res, 200, JSON_TYPE, out ? json_dumps(out, JSON_COMPACT) : NULL);
    saga__api_give_back(a, db);
done:
    json_decref(out);
    json_decref(body);
}
