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

/* The caller a token names (NULL: no token, the local caller when the
 * listener is loopback and no token exists). 0, or -1 with res answered. */
static int identify(saga_api *a, const char *token, const char *path,
                    saga__api_caller *who, saga_http_response *res)
{
    PGconn *db;
    PGresult *r;
    char hash[65];
    int rc = 0;

    memset(who, 0, sizeof *who);
    if (token != NULL && saga__sha256_hex(token, strlen(token), hash) != 0) {
        saga__api_problem(res, 500, "internal", "Internal Server Error", path, NULL, NULL,
                          "hashing the token failed");
        return -1;
    }
    if (token == NULL && !a->local) {
        unauthorized(res, path,
                     "a bearer token is needed (sagactl tokens create; this listener is "
                     "not a loopback address)");
        return -1;
    }
    if (token == NULL)
        hash[0] = '\0';
    if (cached(a, hash, who))
        return 0;
    if ((db = saga__api_take(a)) == NULL) {
        saga__api_unavailable(res, path);
        return -1;
    }
    if (token != NULL) {
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
            saga__api_unavailable(res, path);
        else
            saga__api_problem(res, 500, "database_error", "Internal Server Error", path,
                              NULL, NULL, "reading tokens: %s", PQerrorMessage(db));
        rc = -1;
    } else if (PQntuples(r) != 1) {
        unauthorized(res, path,
                     token != NULL ? "the token is unknown or revoked"
                                   : "a bearer token is needed: tokens exist "
                                     "(sagactl tokens list)");
        rc = -1;
    } else if (token != NULL) {
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

int saga__api_authenticate(saga_api *a, const saga_http_request *req,
                           saga__api_caller *who, saga_http_response *res)
{
    const char *h = saga_http_request_header(req, "Authorization");
    char token[SAGA_API_TOKEN_MAX + 1];

    if (h != NULL && strncmp(h, "Bearer ", 7) != 0) {
        memset(who, 0, sizeof *who);
        unauthorized(res, req->path,
                     "the Authorization header must be \"Bearer <token>\"");
        return -1;
    }
    if (h != NULL)
        return identify(a, h + 7, req->path, who, res);
    /* The console's cookie: the same token, sent by the browser. */
    if (saga__api_cookie_token(req, token, sizeof token))
        return saga__api_login(a, token, req->path, who, res);
    return identify(a, NULL, req->path, who, res);
}

int saga__api_login(saga_api *a, const char *token, const char *path,
                    saga__api_caller *who, saga_http_response *res)
{
    char buf[SAGA_API_TOKEN_MAX + 32];
    if (identify(a, token, path, who, res) != 0)
        return -1;
    /* The CSRF token is a hash of the token under a fixed label: the page
     * learns it only from a same-origin answer, another site cannot
     * compute it without the token (an HttpOnly cookie), and every sagad
     * instance agrees on it without shared state. */
    snprintf(buf, sizeof buf, "saga-console-csrf:%s", token);
    if (saga__sha256_hex(buf, strlen(buf), who->csrf) != 0) {
        memset(buf, 0, sizeof buf);
        saga__api_problem(res, 500, "internal", "Internal Server Error", path, NULL, NULL,
                          "deriving the CSRF token failed");
        return -1;
    }
    memset(buf, 0, sizeof buf);
    who->cookie = 1;
    return 0;
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

int saga__api_cookie_token(const saga_http_request *req, char *buf, size_t size)
{
    const char *c = saga_http_request_header(req, "Cookie"), *v, *end;
    size_t n;
    static const char name[] = SAGA_API_COOKIE "=";
    for (v = c; v != NULL && (v = strstr(v, name)) != NULL; v += sizeof name - 1)
        if (v == c || v[-1] == ' ' || v[-1] == ';')
            break;
    if (v == NULL)
        return 0;
    v += sizeof name - 1;
    end = strchr(v, ';');
    n = end != NULL ? (size_t)(end - v) : strlen(v);
    if (n == 0 || n >= size)
        return 0;
    memcpy(buf, v, n);
    buf[n] = '\0';
    return 1;
}

/* Whether value (an Origin) names the host the request was sent to. */
static int same_origin(const saga_http_request *req, const char *origin)
{
    const char *host = saga_http_request_header(req, "Host"), *p;
    if (host == NULL)
        return 0;
    if ((p = strstr(origin, "://")) == NULL)
        return 0;
    return strcmp(p + 3, host) == 0;
}

int saga__api_csrf_check(const saga__api_caller *who, const saga_http_request *req,
                         saga_http_response *res)
{
    const char *m = req->method, *origin, *site, *sent;
    size_t diff = 0;
    if (strcmp(m, "GET") == 0 || strcmp(m, "HEAD") == 0 || !who->cookie)
        return 0;
    /* The browser says where a request comes from; another site's page
     * is refused before its token is even looked at. */
    origin = saga_http_request_header(req, "Origin");
    site = saga_http_request_header(req, "Sec-Fetch-Site");
    if ((origin != NULL && strcmp(origin, "null") != 0 && !same_origin(req, origin)) ||
        (origin != NULL && strcmp(origin, "null") == 0) ||
        (site != NULL && strcmp(site, "same-origin") != 0 && strcmp(site, "none") != 0)) {
        saga__api_problem(res, 403, "csrf", "Forbidden", req->path, NULL, "Origin",
                          "a request from another origin may not use the console's "
                          "session");
        return -1;
    }
    sent = saga_http_request_header(req, SAGA_API_CSRF_HEADER);
    if (sent == NULL || strlen(sent) != 64) {
        saga__api_problem(res, 403, "csrf", "Forbidden", req->path, NULL,
                          SAGA_API_CSRF_HEADER,
                          "the console's session needs the " SAGA_API_CSRF_HEADER
                          " header on every change (GET /v1/session gives it)");
        return -1;
    }
    for (size_t i = 0; i < 64; i++) /* the same time whatever matches */
        diff |= (size_t)(sent[i] ^ who->csrf[i]);
    if (diff != 0) {
        saga__api_problem(
            res, 403, "csrf", "Forbidden", req->path, NULL, SAGA_API_CSRF_HEADER,
            "the " SAGA_API_CSRF_HEADER " header does not belong to this session");
        return -1;
    }
    return 0;
}
