/* saga_api_auth.c - who asks: the bearer token's name and role (only a
 * SHA-256 of each token is stored, saga.api_token), or, on a loopback
 * listener while no token exists, the local caller "http". */
#include <stdio.h>
#include <string.h>

#include <libpq-fe.h>

#include "saga_api_internal.h"
#include "saga_shared.h"

static void unauthorized(saga_http_response *res, const char *path, const char *why)
{
    res->www_authenticate = "Bearer realm=\"sagad\"";
    saga__api_problem(res, 401, "unauthorized", "Unauthorized", path, NULL,
                      "Authorization", "%s", why);
}

int saga__api_authenticate(saga_api *a, const saga_http_request *req,
                           saga__api_caller *who, saga_http_response *res)
{
    const char *h = saga_http_request_header(req, "Authorization");
    PGconn *db;
    PGresult *r;
    char hash[65];
    int rc = 0;

    memset(who, 0, sizeof *who);
    if (h != NULL && strncmp(h, "Bearer ", 7) != 0) {
        unauthorized(res, req->path,
                     "the Authorization header must be \"Bearer <token>\"");
        return -1;
    }
    if (h != NULL && saga__sha256_hex(h + 7, strlen(h + 7), hash) != 0) {
        saga__api_problem(res, 500, "internal", "Internal Server Error", req->path, NULL,
                          NULL, "hashing the token failed");
        return -1;
    }
    if (h == NULL && !a->local) {
        unauthorized(res, req->path,
                     "a bearer token is needed (sagactl tokens create; this listener is "
                     "not a loopback address)");
        return -1;
    }
    if ((db = saga__api_take(a)) == NULL) {
        saga__api_unavailable(res, req->path);
        return -1;
    }
    if (h != NULL) {
        const char *p[1] = {hash};
        r = PQexecParams(db,
                         "SELECT name, role FROM saga.api_token WHERE hash = $1 AND"
                         " revoked_at IS NULL",
                         1, NULL, p, NULL, NULL, 0);
    } else {
        r = PQexec(db, "SELECT NULL, 'local' WHERE NOT EXISTS (SELECT 1 FROM"
                       " saga.api_token WHERE revoked_at IS NULL)");
    }
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        if (PQstatus(db) != CONNECTION_OK)
            saga__api_unavailable(res, req->path);
        else
            saga__api_problem(res, 500, "database_error", "Internal Server Error",
                              req->path, NULL, NULL, "reading tokens: %s",
                              PQerrorMessage(db));
        rc = -1;
    } else if (PQntuples(r) != 1) {
        unauthorized(res, req->path,
                     h != NULL ? "the token is unknown or revoked"
                               : "a bearer token is needed: tokens exist "
                                 "(sagactl tokens list)");
        rc = -1;
    } else if (h != NULL) {
        snprintf(who->name, sizeof who->name, "token:%s", PQgetvalue(r, 0, 0));
        snprintf(who->role, sizeof who->role, "%s", PQgetvalue(r, 0, 1));
    } else {
        snprintf(who->name, sizeof who->name, "http");
        snprintf(who->role, sizeof who->role, "local");
    }
    PQclear(r);
    saga__api_give_back(a, db);
    return rc;
}

int saga__api_may_start(const saga__api_caller *who)
{
    return strcmp(who->role, "reader") != 0;
}

int saga__api_may_operate(const saga__api_caller *who)
{
    return strcmp(who->role, "operator") == 0 || strcmp(who->role, "local") == 0;
}

const char *saga__api_owner(const saga__api_caller *who)
{
    return strcmp(who->role, "starter") == 0 ? who->name : NULL;
}
