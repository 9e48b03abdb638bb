/* sagad_http.h - sagad's HTTP listeners: /metrics, /healthz and /readyz,
 * and the API (/v1) on the same listener or, with --metrics, the probes
 * on a listener of their own; the API's listener over TLS when given a
 * certificate and key. */
#ifndef SAGAD_HTTP_H
#define SAGAD_HTTP_H

#include "saga/error.h"
#include "saga_api.h"
#include "saga_engine.h"
#include "saga_http.h"

typedef struct sagad_http_opts {
    const char *http;     /* ADDR:PORT of the API (and the probes, without metrics) */
    const char *metrics;  /* ADDR:PORT of the probes alone; NULL: on http */
    const char *tls_cert; /* PEM file: the API's listener over TLS */
    const char *tls_key;  /* its key's PEM file (not readable by others) */
    /* The console's link from a trace id to a tracing UI: a URL with
     * {trace_id} in it (NULL: no link). */
    const char *trace_url;
} sagad_http_opts;

typedef struct sagad_http {
    saga_api *api;
    saga_http *server;  /* http's */
    saga_http *metrics; /* metrics' */
} sagad_http;

/* The options are usable (addresses, files readable, both TLS files):
 * SAGA_OK, or SAGA_EINVAL / SAGA_EIO with err saying which. Before
 * connecting to anything. */
int sagad_http_check(const sagad_http_opts *o, saga_error *err);

/* Start what o asks for (nothing when neither address is set). On error
 * nothing is left running. */
int sagad_http_start(const sagad_http_opts *o, saga_engine *e, const char *db_url,
                     sagad_http *out, saga_error *err);

/* Answer held requests, stop the listeners, free the API. */
void sagad_http_stop(sagad_http *s);

#endif
