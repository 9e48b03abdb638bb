/* saga_api_signal.c - POST /v1/sagas/{id}/signals/{name}: a signal for a
 * saga's wait step (store/saga_signal.h), kept until the saga waits for
 * it, absorbed when its id was sent before. */
#include <stdio.h>
#include <string.h>

#include <jansson.h>
#include <libpq-fe.h>

#include "saga_api_internal.h"
#include "saga_shared.h"
#include "saga_signal.h"

static int name_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 100)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
              (s[i] >= '0' && s[i] <= '9') || strchr("_-.", s[i]) != NULL))
            return 0;
    return 1;
}

void saga__api_signal(saga_api *a, const saga__api_caller *who,
                      const saga_http_request *req, const char *id, const char *name,
                      saga_http_response *res)
{
    static const char *const allowed[] = {"payload", "id", "verdict", "reason", NULL};
    const char *signal_id = NULL, *verdict = NULL, *reason = NULL;
    json_t *body = NULL, *payload, *v, *out;
    char *text = NULL, status[32], given[201];
    saga_signal_outcome outcome;
    saga_error err = {0};
    PGconn *db;
    int rc;

    if (!saga__api_is_uuid(id)) {
        saga__api_problem(res, 404, "not_found", "Not Found", req->path, NULL, NULL,
                          "no saga \"%.60s\": a saga id is a UUID", id);
        return;
    }
    if (!name_ok(name)) {
        saga__api_problem(res, 404, "not_found", "Not Found", req->path, NULL, NULL,
                          "\"%.100s\" is not a signal name (1 to 100 letters, digits, "
                          "'_', '-', '.')",
                          name);
        return;
    }
    if (!saga__api_may_start(who)) {
        saga__api_problem(res, 403, "forbidden", "Forbidden", req->path, NULL, NULL,
                          "caller %s has role %s, which may not signal sagas (starter, "
                          "for its own, or operator may)",
                          who->name, who->role);
        return;
    }
    if (saga__api_json_body(req, res, &body) != 0)
        return;
    if (saga__api_known_fields(body, allowed, "payload, id, verdict and reason", "", req,
                               res) != 0)
        goto done;
    payload = json_object_get(body, "payload");
    if (payload != NULL && !json_is_object(payload)) {
        saga__api_problem(
            res, 422, "invalid_field", "Unprocessable Content", req->path, "/payload",
            NULL, "\"payload\" must be a JSON object (the waiting step's output)");
        goto done;
    }
    if ((v = json_object_get(body, "id")) != NULL &&
        (!json_is_string(v) || json_string_length(v) == 0 ||
         json_string_length(v) > 200)) {
        saga__api_problem(res, 422, "invalid_field", "Unprocessable Content", req->path,
                          "/id", NULL,
                          "\"id\" must be a string of 1 to 200 bytes (sending again with "
                          "the same id is harmless)");
        goto done;
    }
    signal_id = json_string_value(v);
    verdict = json_string_value(json_object_get(body, "verdict"));
    if (json_object_get(body, "verdict") != NULL &&
        (verdict == NULL ||
         (strcmp(verdict, "ok") != 0 && strcmp(verdict, "failed") != 0))) {
        saga__api_problem(res, 422, "invalid_field", "Unprocessable Content", req->path,
                          "/verdict", NULL,
                          "\"verdict\" is \"ok\" (the default) or \"failed\" (the step "
                          "fails: the saga is compensated)");
        goto done;
    }
    reason = json_string_value(json_object_get(body, "reason"));
    if ((json_object_get(body, "reason") != NULL &&
         (reason == NULL || *reason == '\0' || strlen(reason) > 1000)) ||
        (verdict != NULL && strcmp(verdict, "failed") == 0 && reason == NULL)) {
        saga__api_problem(
            res, 422, json_object_get(body, "reason") ? "invalid_field" : "missing_field",
            "Unprocessable Content", req->path, "/reason", NULL,
            "\"reason\" is a string of 1 to 1000 bytes, required with "
            "\"verdict\": \"failed\" (it becomes the step's error)");
        goto done;
    }
    if (payload != NULL && (text = json_dumps(payload, JSON_COMPACT)) == NULL) {
        saga__api_problem(res, 500, "internal", "Internal Server Error", req->path, NULL,
                          NULL, "out of memory");
        goto done;
    }
    if ((db = saga__api_take(a)) == NULL) {
        saga__api_unavailable(res, req->path);
        goto done;
    }
    rc = saga_signal_send(db, id, name, signal_id, text,
                          verdict != NULL && strcmp(verdict, "failed") == 0, reason,
                          who->name, saga__api_owner(who), &outcome, status, given, &err);
    if (rc != SAGA_OK)
        saga__api_db_failed(res, req->path, db, &err);
    else if (outcome == SAGA_SIGNAL_NO_SAGA)
        saga__api_problem(res, 404, "not_found", "Not Found", req->path, NULL, NULL,
                          "no saga %s (a saga not started yet takes no signal)", id);
    else if (outcome == SAGA_SIGNAL_NOT_RUNNING)
        saga__api_problem(res, 409, "refused", "Conflict", req->path, NULL, NULL,
                          "saga %s is %s: it waits for no signal any more", id, status);
    else {
        out = json_pack("{s:s, s:s, s:s?, s:b}", "saga_id", id, "name", name, "id",
                        given[0] ? given : NULL, "duplicate",
                        outcome == SAGA_SIGNAL_DUPLICATE);
        saga__api_answer(res, outcome == SAGA_SIGNAL_DUPLICATE ? 200 : 202, JSON_TYPE,
                         out != NULL ? json_dumps(out, JSON_COMPACT) : NULL);
        json_decref(out);
    }
    saga__api_give_back(a, db);
done:
    free(text);
    json_decref(body);
}
