/* saga_http.h - sagad's small HTTP endpoint (libmicrohttpd, its own thread):
 *
 *   GET /metrics  200, text/plain; version=0.0.4 (a saga_metrics registry)
 *   GET /healthz  200 "ok" when the healthy callback says so, else 503 + reason
 *   GET /readyz   200 "ok" when the ready callback says so, else 503 + reason
 *   /v1/...       the API's handler (saga_http_config.api), when given
 *   /, /console/  the same handler too, with saga_http_config.console
 *   anything else 404; methods other than GET and HEAD 405
 *
 * Liveness is "the engine loop ticked recently"; readiness is "PostgreSQL
 * and Kafka are reachable". The engine publishes both into a saga_health
 * (below) whose check functions fit the callbacks; any other callback works.
 *
 * The library side never prints: libmicrohttpd's own error log is off. */
#ifndef SAGA_HTTP_H
#define SAGA_HTTP_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "saga/error.h"
#include "saga_metrics.h"

/* A check: return nonzero when fine; otherwise write a one-line reason
 * (NUL-terminated, at most size bytes) into reason and return 0. Called
 * on the HTTP server's thread, so it must be thread-safe; it should be
 * quick (no I/O: read state the engine published). */
typedef int (*saga_http_check_fn)(void *arg, char *reason, size_t size);

/* A request under the API prefix, handed to the API's handler once its
 * body has arrived (whole, up to max_body bytes; a larger one is answered
 * 413 without the handler). Valid during the call only. */
typedef struct saga_http_request {
    const char *method; /* "GET", "POST", ... */
    const char *path;   /* without the query string */
    const char *body;   /* body_len bytes, not NUL-terminated; NULL: none */
    size_t body_len;
    const char *const *args; /* the query parameters' names, NULL-terminated */
    void *conn;              /* the server's (for the calls below) */
    /* The handler's own state for this request, kept across a suspension
     * (NULL at first); config.api_done frees it when the request ends. */
    void **state;
} saga_http_request;

/* A request header's value (the name in any case), or NULL. */
const char *saga_http_request_header(const saga_http_request *r, const char *name);

/* A query parameter's value ("" when given without one), or NULL. */
const char *saga_http_request_arg(const saga_http_request *r, const char *name);

/* Inside the handler only: hold the request without answering (set
 * res->suspended too) until saga_http_resume(req->conn) is called, from
 * any thread; the handler is then called again for it. A held request
 * takes no thread. Every held request must be resumed before
 * saga_http_stop. */
void saga_http_suspend(const saga_http_request *r);
void saga_http_resume(void *conn);

/* What the handler answers: status, a content type (static), a body (the
 * handler's malloc'd text, taken over; NULL: empty), and optionally a
 * Location and an Allow header. */
typedef struct saga_http_response {
    unsigned int status;
    const char *type;
    char *body;
    size_t len;
    char location[300];
    const char *allow;
    const char *www_authenticate; /* static; NULL: none */
    int suspended;                /* saga_http_suspend was called: no answer yet */
    /* The console's pages: a Set-Cookie header ("": none), a
     * Content-Security-Policy (static; NULL: none; with one, framing and
     * referrers are refused too) and a Cache-Control (static; NULL:
     * no-store). */
    char set_cookie[600];
    const char *csp;
    const char *cache_control;
} saga_http_response;

/* Called on one of the server's threads (several at once). */
typedef void (*saga_http_handler_fn)(void *arg, const saga_http_request *req,
                                     saga_http_response *res);

typedef struct saga_http_config {
    const char *address;        /* numeric IPv4 or IPv6; NULL: "127.0.0.1" */
    int port;                   /* 0: an ephemeral port (see saga_http_port) */
    saga_metrics *metrics;      /* borrowed; NULL: /metrics is empty */
    saga_http_check_fn healthy; /* NULL: always healthy */
    void *healthy_arg;
    saga_http_check_fn ready; /* NULL: always ready */
    void *ready_arg;
    /* Requests whose path starts with "/v1/" (or is "/v1"), for the API
     * (NULL: 404 like any unknown path); bodies up to max_body bytes
     * (0: 1 MiB). With a handler the server runs `threads` threads
     * (0: 4), so that a slow request does not hold the others up. */
    saga_http_handler_fn api;
    void *api_arg;
    size_t max_body;
    int threads;
    /* Called when a request whose *state the handler set has ended
     * (answered, or the client went away), to free that state. */
    void (*api_done)(void *arg, void *state);
    /* Connections at once (0: 1024 with the API, else 32); held requests
     * count. */
    unsigned int max_connections;
    /* Set (with api): "/" and paths under "/console/" go to api too, for
     * the operator console's pages. */
    int console;
    /* Set: /metrics, /healthz and /readyz are not served here (another
     * listener has them): 404 like any unknown path. */
    int no_ops;
    /* TLS: the certificate (chain) and its private key, PEM text (not
     * kept: copied by the server); both or neither. */
    const char *tls_cert_pem;
    const char *tls_key_pem;
} saga_http_config;

typedef struct saga_http saga_http;

/* Bind and start serving on a thread of its own. cfg's pointers (metrics,
 * callback args) must outlive the server; the strings are not kept.
 * *out is NULL on failure, owned by the caller on success:
 * saga_http_stop(). Returns SAGA_OK, SAGA_EINVAL (NULL, bad address or
 * port; one of the TLS pair without the other), SAGA_EIO (cannot bind
 * or start, or the TLS certificate and key are unusable: err says why),
 * SAGA_ENOMEM. */
int saga_http_start(const saga_http_config *cfg, saga_http **out, saga_error *err);

/* The port the server listens on (the chosen one when cfg.port was 0). */
int saga_http_port(const saga_http *h);

/* Stop serving (waits for the server's thread) and free h. NULL is a no-op. */
void saga_http_stop(saga_http *h);

/* ---- what the engine publishes for /healthz and /readyz ---- */

/* Thread-safe: the engine thread writes, the HTTP thread reads. Initialise
 * with saga_health_init() (not ticked, database and broker down: not
 * healthy and not ready until the engine says otherwise), destroy with
 * saga_health_cleanup(). */
typedef struct saga_health {
    pthread_mutex_t lock;
    int64_t max_tick_age_ms; /* older than this: not healthy */
    int64_t last_tick_ms;    /* monotonic ms of the last loop tick; 0 = never */
    int db_ok, broker_ok;
    char db_reason[160], broker_reason[160];
} saga_health;

/* max_tick_age_ms <= 0 means 30000. Returns SAGA_OK or SAGA_ENOMEM. */
int saga_health_init(saga_health *h, int64_t max_tick_age_ms);
void saga_health_cleanup(saga_health *h);

/* The engine loop ticked at now_ms (CLOCK_MONOTONIC milliseconds). */
void saga_health_tick(saga_health *h, int64_t now_ms);

/* PostgreSQL (resp. Kafka) is reachable (ok != 0) or not, and why not
 * (reason may be NULL; it is copied, truncated to fit). */
void saga_health_set_db(saga_health *h, int ok, const char *reason);
void saga_health_set_broker(saga_health *h, int ok, const char *reason);

/* Healthy at now_ms (no clock read)? Ticked, no longer than max_tick_age_ms
 * ago. */
int saga_health_is_live(saga_health *h, int64_t now_ms, char *reason, size_t size);
/* Database and broker both reachable? */
int saga_health_is_ready(saga_health *h, char *reason, size_t size);

/* saga_http_check_fn adapters: arg is a saga_health *; the liveness one
 * reads CLOCK_MONOTONIC. */
int saga_health_check_live(void *arg, char *reason, size_t size);
int saga_health_check_ready(void *arg, char *reason, size_t size);

/* CLOCK_MONOTONIC in milliseconds, the clock saga_health_tick expects. */
int64_t saga_health_now_ms(void);

#endif
