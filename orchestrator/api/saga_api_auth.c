/* saga_api_auth.c - who asks: the bearer token's name and role (only a
 * SHA-256 of each token is stored, saga.api_token), or, on a loopback
 * listener while no token exists, the local caller "http". What the
 * database said is kept for a second (SAGA_API_AUTH_TTL_MS), so that a
 * request costs one round trip, not two: a revoked token stops working
 * within that second (a repair is checked again as it is written). */
#include <stdio.h>
#include <stdlib.h>
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

/* The cache: a slot by the hash's first two hex digits; "" as hash is
 * the answer for no token (whether none exists). */
static unsigned slot_of(const char *hash)
{
    unsigned v = 0;
    for (int i = 0; i < 2 && hash[i]; i++)
        v = v * 16 + (unsigned)(hash[i] <= '9' ? hash[i] - '0' : hash[i] - 'a' + 10);
    return v % SAGA_API_AUTH_SLOTS;
}

static int cached(saga_api *a, const char *hash, saga__api_caller *who)
{
    unsigned slot = slot_of(hash);
    int hit = 0;
    pthread_mutex_lock(&a->lock);
    if (a->auth[slot].until > saga__mono_ms() && strcmp(a->auth[slot].hash, hash) == 0) {
        *who = a->auth[slot].who;
        hit = 1;
    }
    pthread_mutex_unlock(&a->lock);
    return hit;
}

static void remember(saga_api *a, const char *hash, const saga__api_caller *who)
{
    unsigned slot = slot_of(hash);
    pthread_mutex_lock(&a->lock);
    snprintf(a->auth[slot].hash, sizeof a->auth[slot].hash, "%s", hash);
    a->auth[slot].who = *who;
    a->auth[slot].until = saga__mono_ms() + SAGA_API_AUTH_TTL_MS;
    pthread_mutex_unlock(&a->lock);
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
    if (h == NULL)
        hash[0] = '\0';
    if (cached(a, hash, who))
        return 0;
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
        remember(a, hash, who);
    } else {
        snprintf(who->name, sizeof who->name, "http");
        snprintf(who->role, sizeof who->role, "local");
        remember(a, hash, who);
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
