/* saga_api_session.c - the console's session, /v1/session: log in with
 * an API token (kept in an HttpOnly cookie the page's scripts cannot
 * read), say who is logged in with the CSRF token its changes must
 * carry, log out. The token stays the credential: revoking it ends the
 * session within a second, as for any request. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "saga_api_internal.h"
#include "saga_shared.h"

/* Who is logged in, as the page needs it. */
static void answer_session(saga_api *a, const saga__api_caller *who,
                           saga_http_response *res)
{
    json_t *o = json_pack("{s:s, s:s, s:s?, s:b, s:b, s:s?}", "name", who->name, "role",
                          who->role, "csrf", who->cookie ? who->csrf : NULL, "may_repair",
                          saga__api_may_operate(who), "may_read_all",
                          saga__api_owner(who) == NULL, "trace_url", a->trace_url);
    saga__api_answer(res, 200, JSON_TYPE, o != NULL ? json_dumps(o, JSON_COMPACT) : NULL);
    json_decref(o);
}

/* A token as sagactl tokens create makes them, or close: letters,
 * digits, '_' and '-' only, so that it is a cookie value as it is. */
static int token_ok(const char *t)
{
    size_t n = strlen(t);
    if (n == 0 || n > SAGA_API_TOKEN_MAX)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!((t[i] >= 'a' && t[i] <= 'z') || (t[i] >= 'A' && t[i] <= 'Z') ||
              (t[i] >= '0' && t[i] <= '9') || t[i] == '_' || t[i] == '-'))
            return 0;
    return 1;
}

static void login(saga_api *a, const saga_http_request *req, saga_http_response *res)
{
    static const char *const fields[] = {"token", NULL};
    json_t *body = NULL;
    const char *token;
    saga__api_caller who;
    const char *origin = saga_http_request_header(req, "Origin");
    const char *host = saga_http_request_header(req, "Host");

    /* Another site must not log a browser in either (to a token of its
     * choosing). */
    if (origin != NULL && (host == NULL || strstr(origin, "://") == NULL ||
                           strcmp(strstr(origin, "://") + 3, host) != 0)) {
        saga__api_problem(res, 403, "csrf", "Forbidden", req->path, NULL, "Origin",
                          "a login from another origin is refused");
        return;
    }
    if (saga__api_json_body(req, res, &body) != 0)
        return;
    if (saga__api_known_fields(body, fields, "token", "", req, res) != 0)
        goto out;
    token = json_string_value(json_object_get(body, "token"));
    if (json_object_get(body, "token") == NULL) {
        saga__api_problem(res, 422, "missing_field", "Unprocessable Content", req->path,
                          "/token", NULL, "token is required (sagactl tokens create)");
        goto out;
    }
    if (token == NULL || !token_ok(token)) {
        saga__api_problem(res, 422, "invalid_field", "Unprocessable Content", req->path,
                          "/token", NULL,
                          "token must be a string of 1 to %d letters, digits, '_' or "
                          "'-', as sagactl tokens create prints it",
                          SAGA_API_TOKEN_MAX);
        goto out;
    }
    if (saga__api_login(a, token, req->path, &who, res) != 0)
        goto out;
    /* SameSite=Strict: no other site's page or link sends it; HttpOnly:
     * the page's scripts never see the token. Until the browser closes. */
    snprintf(res->set_cookie, sizeof res->set_cookie,
             SAGA_API_COOKIE "=%s; Path=/; HttpOnly; SameSite=Strict%s", token,
             a->tls ? "; Secure" : "");
    answer_session(a, &who, res);
out:
    json_decref(body);
}

void saga__api_session(saga_api *a, const saga_http_request *req, saga_http_response *res)
{
    const char *m = req->method;
    saga__api_caller who;
    if (strcmp(m, "POST") == 0) {
        login(a, req, res);
    } else if (strcmp(m, "DELETE") == 0) {
        /* Logging out needs no session: a stale cookie is cleared too. */
        snprintf(res->set_cookie, sizeof res->set_cookie,
                 SAGA_API_COOKIE "=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0%s",
                 a->tls ? "; Secure" : "");
        saga__api_answer(res, 204, NULL, NULL);
    } else if (strcmp(m, "GET") == 0 || strcmp(m, "HEAD") == 0) {
        if (saga__api_authenticate(a, req, &who, res) == 0)
            answer_session(a, &who, res);
    } else {
        res->allow = "GET, HEAD, POST, DELETE";
        saga__api_problem(res, 405, "method_not_allowed", "Method Not Allowed", req->path,
                          NULL, NULL, "%s is not allowed on the session (%s)", m,
                          res->allow);
    }
}
