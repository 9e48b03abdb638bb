/* saga_api.h - the HTTP API under /v1 (docs/API.md): start a saga, read
 * one, search them. It answers requests that obs/saga_http.c hands it, on
 * the HTTP server's threads, with database connections of its own (a
 * small pool), so that no request waits on, or slows, the engine loop.
 * Errors are RFC 9457 problem documents (application/problem+json). */
#ifndef SAGA_API_H
#define SAGA_API_H

#include "saga/error.h"
#include "saga_http.h"

typedef struct saga_api saga_api;

typedef struct saga_api_config {
    const char *db_url; /* required; copied */
    int connections;    /* database connections at most (default 4) */
    /* Served on a loopback address: while no token exists, callers need
     * none (and may do everything). Elsewhere every request needs a
     * token (docs/API.md). */
    int local;
    /* Called (any thread) when a start request was written, to wake the
     * engine in this process (saga_engine_kick); NULL: a NOTIFY wakes
     * whichever sagad listens. */
    void (*kick)(void *arg);
    void *kick_arg;
    /* The console (docs/CONSOLE.md): a tracing UI's URL with "{trace_id}"
     * where the trace id goes (NULL: no links; copied); tls: served over
     * TLS (its cookie is Secure); this sagad's metrics (borrowed, NULL:
     * none), whose per-service counters /v1/services shows. */
    const char *trace_url;
    int tls;
    saga_metrics *metrics;
} saga_api_config;

/* Make the API (no connection is opened until a request needs one).
 * *out is the caller's (saga_api_free) on SAGA_OK; SAGA_EINVAL for a NULL
 * db_url, SAGA_ENOMEM. */
int saga_api_new(const saga_api_config *cfg, saga_api **out, saga_error *err);

/* The saga_http_handler_fn to give saga_http (arg: the saga_api).
 * Thread-safe: any number of server threads may call it at once. */
void saga_api_handle(void *arg, const saga_http_request *req, saga_http_response *res);

/* The saga_http_config.api_done to give saga_http with saga_api_handle:
 * frees what a request left (a long poll's waiter). */
void saga_api_done(void *arg, void *state);

/* Answer every held long poll now, and hold none from now on: call it
 * before stopping the HTTP server (which must not stop while requests
 * are held). NULL: nothing. */
void saga_api_quiesce(saga_api *api);

/* Close the connections and free api (NULL: nothing). Only once the HTTP
 * server that calls it has stopped. */
void saga_api_free(saga_api *api);

#endif
