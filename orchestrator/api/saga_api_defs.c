/* saga_api_defs.c - POST /v1/definitions: validate a definition exactly as
 * `sagactl validate` does (the same parser, the same messages, each with
 * where it is, also as a JSON pointer) and deploy it as `sagactl defs
 * deploy` does (its content decides its version). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <libpq-fe.h>

#include "saga_api_internal.h"
#include "saga_definition.h"
#include "saga_pgerr.h"
#include "saga_read.h"
#include "saga_shared.h"
#include "saga_store.h"

/* A problem's place as a JSON pointer: steps[2].retry.max_attempts is
 * /steps/2/retry/max_attempts; "" for the whole document (and for a line
 * and column of malformed JSON, given apart). */
static json_t *pointer_of(const char *where)
{
    char buf[300];
    size_t n = 0;
    if (strncmp(where, "line ", 5) == 0 || strcmp(where, "(definition)") == 0 ||
        strcmp(where, "$") == 0 || *where == '\0')
        return json_string("");
    for (const char *c = where; *c && n + 3 < sizeof buf; c++) {
        if (*c == '.' || *c == '[') {
            buf[n++] = '/';
        } else if (*c == ']') {
            continue;
        } else if (*c == '~') { /* RFC 6901 escapes */
            buf[n++] = '~';
            buf[n++] = '0';
        } else if (*c == '/') {
            buf[n++] = '~';
            buf[n++] = '1';
        } else {
            if (n == 0)
                buf[n++] = '/';
            buf[n++] = *c;
        }
    }
    buf[n] = '\0';
    return json_string(buf);
}

/* "line L, column C" into line and column members. */
static void add_position(json_t *o, const char *where)
{
    int line, column;
    if (sscanf(where, "line %d, column %d", &line, &column) == 2) {
        json_object_set_new(o, "line", json_integer(line));
        json_object_set_new(o, "column", json_integer(column));
    }
}

static void invalid(saga_http_response *res, const saga_http_request *req,
                    const saga_def_problems *probs)
{
    json_t *errors = json_array(), *doc;
    int kept = probs->count < 64 ? probs->count : 64;
    for (int i = 0; i < kept; i++) {
        json_t *e = json_pack("{s:s, s:s}", "message", probs->items[i].message, "where",
                              probs->items[i].where),
               *ptr = pointer_of(probs->items[i].where);
        json_object_set_new(e, "pointer", ptr);
        add_position(e, probs->items[i].where);
        json_array_append_new(errors, e);
    }
    saga__api_problem(res, 422, "invalid_definition", "Unprocessable Content", req->path,
                      NULL, NULL, "%d problem%s: %s: %s%s", probs->count,
                      probs->count == 1 ? "" : "s",
                      kept > 0 ? probs->items[0].where : "(definition)",
                      kept > 0 ? probs->items[0].message : "invalid",
                      probs->count > 1 ? " (all in errors)" : "");
    /* The problem's body, with every problem added. */
    doc = res->body != NULL ? json_loads(res->body, 0, NULL) : NULL;
    if (doc != NULL) {
        json_object_set(doc, "errors", errors);
        if (probs->count > kept)
            json_object_set_new(doc, "more_errors", json_integer(probs->count - kept));
        free(res->body);
        res->body = json_dumps(doc, JSON_COMPACT);
        res->len = res->body != NULL ? strlen(res->body) : 0;
        json_decref(doc);
    }
    json_decref(errors);
}

void saga__api_deploy(saga_api *a, const saga__api_caller *who,
                      const saga_http_request *req, saga_http_response *res)
{
    saga_def_problems probs = {0};
    saga_definition *def = NULL;
    saga_error err = {0};
    saga_defs *cache = NULL;
    json_t *body = NULL, *out = NULL;
    char name[128], *json = NULL;
    int created = 0, version = 0, rc;
    int64_t max_bytes = 0;
    PGconn *db;

    if (!saga__api_may_operate(who)) {
        saga__api_problem(res, 403, "forbidden", "Forbidden", req->path, NULL, NULL,
                          "caller %s has role %s, which may not deploy definitions "
                          "(operator may)",
                          who->name, who->role);
        return;
    }
    /* 415 and 400 as for every body; the definition's own problems 422. */
    if (saga__api_json_body(req, res, &body) != 0)
        return;
    json_decref(body);
    if ((db = saga__api_take(a)) == NULL) {
        saga__api_unavailable(res, req->path);
        return;
    }
    /* The database's limit, so that what validates is what it accepts. */
    if (saga_store_limit(db, "max_definition_bytes", &max_bytes, &err) != SAGA_OK &&
        PQstatus(db) != CONNECTION_OK) {
        saga__api_db_failed(res, req->path, db, &err);
        saga__api_give_back(a, db);
        return;
    }
    probs.max_bytes = max_bytes;
    if (saga_definition_parse(req->body, req->body_len, &def, &probs) != SAGA_OK) {
        if (probs.count == 0)
            saga__api_problem(res, 500, "internal", "Internal Server Error", req->path,
                              NULL, NULL, "out of memory");
        else
            invalid(res, req, &probs);
        saga__api_give_back(a, db);
        return;
    }
    snprintf(name, sizeof name, "%s", def->name);
    saga_pgerr_clear();
    if ((cache = saga_defs_new()) == NULL) {
        saga_definition_free(def);
        rc = saga__error_set(&err, SAGA_ENOMEM, "out of memory");
    } else if ((rc = saga_store_check_children(db, cache, &def, 1, 0, &probs, &err)) ==
               SAGA_EDEF) {
        /* A child that does not exist, or leads back here. */
        saga_definition_free(def);
        saga_defs_free(cache);
        invalid(res, req, &probs);
        saga__api_give_back(a, db);
        return;
    } else if (rc != SAGA_OK) {
        saga_definition_free(def);
    } else if ((rc = saga_store_exec(db, "BEGIN", &err)) != SAGA_OK) {
        saga_definition_free(def);
    } else {
        rc = saga_store_register_definition(db, cache, def, &created, &err);
        /* the cache owns def now, also on failure */
        if (rc == SAGA_OK) {
            version = saga_defs_last_version(cache);
            rc = saga_store_exec(db, "COMMIT", &err);
        } else {
            saga_store_exec(db, "ROLLBACK", NULL);
        }
    }
    if (rc == SAGA_OK)
        rc = saga_read_definition(db, name, version, &json, &err);
    if (rc == SAGA_OK && (out = saga__json_from_pg(json, 0, NULL)) != NULL) {
        json_object_set_new(out, "created", json_boolean(created));
        snprintf(res->location, sizeof res->location,
                 "/v1/definitions/%.200s/versions/%d", name, version);
        saga__api_answer(res, created ? 201 : 200, JSON_TYPE,
                         json_dumps(out, JSON_COMPACT));
    } else if (rc == SAGA_OK) {
        saga__api_problem(res, 500, "internal", "Internal Server Error", req->path, NULL,
                          NULL, "out of memory");
    } else if (strcmp(saga_pgerr_sqlstate(), "54000") == 0) {
        /* The limit's trigger: lowered since it was read above. */
        saga_def_problems over = {.count = 1};
        snprintf(over.items[0].where, sizeof over.items[0].where, "(definition)");
        snprintf(over.items[0].message, sizeof over.items[0].message, "%s", err.message);
        invalid(res, req, &over);
    } else {
        saga__api_db_failed(res, req->path, db, &err);
    }
    saga__api_give_back(a, db);
    json_decref(out);
    free(json);
    saga_defs_free(cache);
}
