/* saga_api_internal.h - what the API's files share (not installed): the
 * connection pool and the answers (saga_api_pool.c), the handlers
 * (saga_api_start.c, saga_api_read.c) and who asks (saga_api_auth.c),
 * called by the routing in saga_api.c. Calls go one way: routing ->
 * handlers and auth -> pool. */
#ifndef SAGA_API_INTERNAL_H
#define SAGA_API_INTERNAL_H

#include <pthread.h>

#include <jansson.h>
#include <libpq-fe.h>

#include "saga_api.h"

#define PROBLEM_TYPE "application/problem+json"
#define JSON_TYPE    "application/json"

typedef struct saga__api_hub saga__api_hub;
typedef struct saga__api_waiter saga__api_waiter;

/* The longest ?wait= a request may ask for. */
#define SAGA_API_MAX_WAIT_MS (5 * 60 * 1000)

/* Who the database said a token is, kept this long (saga_api_auth.c). */
#define SAGA_API_AUTH_TTL_MS 1000
#define SAGA_API_AUTH_SLOTS  256

typedef struct saga__api_caller saga__api_caller;
/* Who asks: the token's name as the caller recorded on what it starts
 * ("token:<name>"; "http" for a local caller without tokens) and its
 * role: "starter", "operator", "reader", or "local" (no tokens exist,
 * loopback: everything the API has). */
struct saga__api_caller {
    char name[64];
    char role[16];
    int cookie;    /* it came as the console's cookie: changes need csrf */
    char csrf[65]; /* with cookie: the X-CSRF-Token its changes must carry */
};

/* The console's session cookie (the token itself, HttpOnly), the header
 * that carries its CSRF token, and the longest token taken. */
#define SAGA_API_COOKIE      "saga_console"
#define SAGA_API_CSRF_HEADER "X-CSRF-Token"
#define SAGA_API_TOKEN_MAX   200

struct saga_api {
    int local;               /* served on loopback: without tokens, callers need none */
    saga__api_hub *hub;      /* long polls (saga_api_wait.c) */
    void (*kick)(void *arg); /* saga_api_config.kick */
    void *kick_arg;
    char *db_url;
    char *trace_url;       /* saga_api_config.trace_url (NULL: none) */
    int tls;               /* the console's cookie is Secure */
    saga_metrics *metrics; /* this sagad's counters, for /v1/services */
    pthread_mutex_t lock;
    pthread_cond_t freed;
    PGconn **idle; /* connections not in use */
    int nidle, nopen, max;
    struct {
        char hash[65]; /* "": the caller without a token */
        saga__api_caller who;
        int64_t until;           /* monotonic ms */
    } auth[SAGA_API_AUTH_SLOTS]; /* under lock */
};

/* ---- saga_api_pool.c ---- */

/* A connection of the pool (waiting while all are in use), or NULL when
 * the database cannot be reached; give it back after the request. */
PGconn *saga__api_take(saga_api *a);
void saga__api_give_back(saga_api *a, PGconn *db);

/* Run sql as the prepared statement name on db (prepared on first use,
 * and again after a reconnection), n text parameters. The result is the
 * caller's (PQclear). */
PGresult *saga__api_exec(PGconn *db, const char *name, const char *sql, int n,
                         const char *const *params);

/* Answer with body (malloc'd text, taken; NULL: empty). */
void saga__api_answer(saga_http_response *res, unsigned int status, const char *type,
                      char *body);

/* An RFC 9457 problem: code is the stable part (also in type), detail
 * says what; pointer (into the body) or parameter (query or header) says
 * where, when known. */
void saga__api_problem(saga_http_response *res, unsigned int status, const char *code,
                       const char *title, const char *instance, const char *pointer,
                       const char *parameter, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 8, 9)))
#endif
    ;

void saga__api_unavailable(saga_http_response *res, const char *path);

/* A read on db failed with err: 503 when the connection is gone (the
 * database is not there), else 500 with the database's word. */
void saga__api_db_failed(saga_http_response *res, const char *path, PGconn *db,
                         const saga_error *err);

int saga__api_is_uuid(const char *s);

/* The request's body as a JSON object into *out (new), or -1 with res
 * answered: 415 when it is not application/json, 400 when it is not a
 * JSON object. */
int saga__api_json_body(const saga_http_request *req, saga_http_response *res,
                        json_t **out);

/* A time filter: an RFC 3339 time, or a duration back from now ("30m",
 * "2h"), into buf as a timestamp PostgreSQL reads; -1 when it is
 * neither. */
int saga__api_time_arg(const char *v, char *buf, size_t size);

/* 0 when every member of body is one of allowed (NULL-terminated), else
 * -1 with res answered 422 naming the first other (expected lists them;
 * where is body's JSON pointer, "" for the request's body). */
int saga__api_known_fields(const json_t *body, const char *const *allowed,
                           const char *expected, const char *where,
                           const saga_http_request *req, saga_http_response *res);

/* ---- saga_api_auth.c ---- */

/* The caller of req, from its Authorization: Bearer token. 0, or -1 with
 * res answered (401 with WWW-Authenticate, 503). */
int saga__api_authenticate(saga_api *a, const saga_http_request *req,
                           saga__api_caller *who, saga_http_response *res);

/* Whether who may start sagas (not a reader), and the owner its reads are
 * limited to (a starter: its own; NULL: everyone's). */
int saga__api_may_start(const saga__api_caller *who);
/* Whether who may repair sagas and deploy definitions (an operator). */
int saga__api_may_operate(const saga__api_caller *who);
const char *saga__api_owner(const saga__api_caller *who);

/* The console's token from its cookie into buf: 1, or 0 when there is
 * none (or it does not fit). */
int saga__api_cookie_token(const saga_http_request *req, char *buf, size_t size);
/* Who token is, as the console's session (cookie set, csrf derived): 0,
 * or -1 with res answered (401, 503). */
int saga__api_login(saga_api *a, const char *token, const char *path,
                    saga__api_caller *who, saga_http_response *res);
/* A change asked with the console's cookie must come from the same
 * origin and carry its X-CSRF-Token: 0, or -1 with res answered 403
 * "csrf". Bearer tokens and reads pass. */
int saga__api_csrf_check(const saga__api_caller *who, const saga_http_request *req,
                         saga_http_response *res);

/* ---- saga_api_session.c ---- */

/* /v1/session: GET (who am I, the CSRF token), POST (log in with a
 * token: the cookie), DELETE (log out). Authenticates by itself. */
void saga__api_session(saga_api *a, const saga_http_request *req,
                       saga_http_response *res);

/* ---- saga_api_console.c ---- */

/* GET / and /console/...: the console's embedded files, public (they
 * hold no data: the data come from /v1 with the session). */
void saga__api_console(const saga_http_request *req, saga_http_response *res);

/* ---- saga_api_ops.c ---- */

/* GET /v1/attention, /v1/stats, /v1/services (readers and operators). */
void saga__api_attention(saga_api *a, const saga__api_caller *who,
                         const saga_http_request *req, saga_http_response *res);
void saga__api_stats(saga_api *a, const saga__api_caller *who,
                     const saga_http_request *req, saga_http_response *res);
void saga__api_services(saga_api *a, const saga__api_caller *who,
                        const saga_http_request *req, saga_http_response *res);

/* ---- saga_api_start.c ---- */

void saga__api_start_saga(saga_api *a, const saga__api_caller *who,
                          const saga_http_request *req, saga_http_response *res);
/* POST /v1/sagas/{id}/cancel: a saga not started yet (scheduled). */
void saga__api_cancel(saga_api *a, const saga__api_caller *who,
                      const saga_http_request *req, const char *id,
                      saga_http_response *res);

/* ---- saga_api_repair.c ---- */

/* POST /v1/sagas/{id}/{action} (retry, compensate, skip, resolve). */
void saga__api_repair(saga_api *a, const saga__api_caller *who,
                      const saga_http_request *req, const char *id, const char *action,
                      saga_http_response *res);
/* POST /v1/repairs: every saga a filter matches, or a dry run. */
void saga__api_bulk_repair(saga_api *a, const saga__api_caller *who,
                           const saga_http_request *req, saga_http_response *res);

/* ---- saga_api_wait.c ---- */

/* The thread that wakes long polls: start (SAGA_OK or SAGA_ENOMEM), stop
 * (every held request resumed; later ones are answered at once), free. */
int saga__api_hub_start(saga_api *a);
void saga__api_hub_stop(saga_api *a);
void saga__api_hub_free(saga_api *a);

/* List req as waiting for saga id until deadline (monotonic ms): a new
 * waiter when w is NULL (NULL back when nothing would wake it: the hub
 * is not listening; answer at once), or w again after a wake. */
saga__api_waiter *saga__api_wait_list(saga_api *a, saga__api_waiter *w, const char *id,
                                      int64_t deadline, const saga_http_request *req);
/* Hold req (saga_http_suspend) unless w was woken since it was listed:
 * 1 when held (answer nothing now), 0 when woken (look again). */
int saga__api_wait_hold(saga_api *a, saga__api_waiter *w, const saga_http_request *req);
/* Whether w's time is up (or the hub stopped, or does not listen). */
int saga__api_wait_over(saga_api *a, const saga__api_waiter *w);
/* Requests waiting now. */
int saga__api_waiting(saga_api *a);

/* ---- saga_api_signal.c ---- */

/* POST /v1/sagas/{id}/signals/{name}. */
void saga__api_signal(saga_api *a, const saga__api_caller *who,
                      const saga_http_request *req, const char *id, const char *name,
                      saga_http_response *res);

/* ---- saga_api_defs.c ---- */

/* POST /v1/definitions: validate and deploy one definition. */
void saga__api_deploy(saga_api *a, const saga__api_caller *who,
                      const saga_http_request *req, saga_http_response *res);

/* ---- saga_api_read.c ---- */

void saga__api_get_saga(saga_api *a, const saga__api_caller *who,
                        const saga_http_request *req, const char *id,
                        saga_http_response *res);
void saga__api_history(saga_api *a, const saga__api_caller *who,
                       const saga_http_request *req, const char *id,
                       saga_http_response *res);
void saga__api_definitions(saga_api *a, const saga__api_caller *who,
                           const saga_http_request *req, const char *rest,
                           saga_http_response *res);
void saga__api_search(saga_api *a, const saga__api_caller *who,
                      const saga_http_request *req, saga_http_response *res);

#endif
