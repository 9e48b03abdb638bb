/* saga_http.c - /metrics, /healthz and /readyz on libmicrohttpd, and the
 * API's requests handed to its handler (held ones included), over TLS
 * when given a certificate. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include <microhttpd.h>

#include "saga_shared.h"
#include "saga_http.h"

#define METRICS_TYPE "text/plain; version=0.0.4; charset=utf-8"
#define TEXT_TYPE    "text/plain; charset=utf-8"

struct saga_http {
    struct MHD_Daemon *daemon;
    saga_http_config cfg;
    int port;
};

static enum MHD_Result reply(struct MHD_Connection *c, unsigned int status,
                             const char *type, char *body, size_t len, int owned)
{
    struct MHD_Response *r;
    enum MHD_Result rc;
    r = MHD_create_response_from_buffer(
        len, body, owned ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_MUST_COPY);
    if (r == NULL) {
        if (owned)
            free(body);
        return MHD_NO; /* MHD closes the connection */
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    /* Health answers change from one second to the next. */
    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    if (status == MHD_HTTP_METHOD_NOT_ALLOWED)
        MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
    rc = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return rc;
}

static enum MHD_Result text(struct MHD_Connection *c, unsigned int status,
                            const char *body)
{
    return reply(c, status, TEXT_TYPE, (char *)body, strlen(body), 0);
}

static enum MHD_Result check(struct MHD_Connection *c, saga_http_check_fn fn, void *arg)
{
    char reason[256] = "", body[300];
    if (fn == NULL || fn(arg, reason, sizeof reason))
        return text(c, MHD_HTTP_OK, "ok\n");
    reason[sizeof reason - 1] = '\0';
    snprintf(body, sizeof body, "%s\n", reason[0] ? reason : "not ok");
    return text(c, MHD_HTTP_SERVICE_UNAVAILABLE, body);
}

/* ---- the API's requests ---- */

/* A request's state between libmicrohttpd's calls: its body so far. */
typedef struct api_call {
    char *body;
    size_t len, cap;
    int too_large;
    void *state; /* the handler's (saga_http_request.state) */
} api_call;

#define MAX_ARGS 32

const char *saga_http_request_header(const saga_http_request *r, const char *name)
{
    return MHD_lookup_connection_value((struct MHD_Connection *)r->conn, MHD_HEADER_KIND,
                                       name);
}

void saga_http_suspend(const saga_http_request *r)
{
    MHD_suspend_connection((struct MHD_Connection *)r->conn);
}

void saga_http_resume(void *conn)
{
    MHD_resume_connection((struct MHD_Connection *)conn);
}

const char *saga_http_request_arg(const saga_http_request *r, const char *name)
{
    return MHD_lookup_connection_value((struct MHD_Connection *)r->conn,
                                       MHD_GET_ARGUMENT_KIND, name);
}

typedef struct arg_names {
    const char *names[MAX_ARGS + 1];
    int n;
} arg_names;

static enum MHD_Result collect_arg(void *cls, enum MHD_ValueKind kind, const char *key,
                                   const char *value)
{
    arg_names *a = cls;
    (void)kind;
    (void)value;
    if (a->n < MAX_ARGS)
        a->names[a->n++] = key;
    return MHD_YES;
}

static enum MHD_Result api_answer(struct MHD_Connection *c, saga_http_response *res)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(
        res->len, res->body != NULL ? res->body : (char *)"",
        res->body != NULL ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_PERSISTENT);
    enum MHD_Result rc;
    if (r == NULL) {
        free(res->body);
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE,
                            res->type != NULL ? res->type : TEXT_TYPE);
    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL,
                            res->cache_control != NULL ? res->cache_control : "no-store");
    /* A browser must take JSON for JSON, never guess it is a page. */
    MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
    if (res->csp != NULL) {
        MHD_add_response_header(r, "Content-Security-Policy", res->csp);
        MHD_add_response_header(r, "X-Frame-Options", "DENY");
        MHD_add_response_header(r, "Referrer-Policy", "no-referrer");
    }
    if (res->set_cookie[0] != '\0')
        MHD_add_response_header(r, MHD_HTTP_HEADER_SET_COOKIE, res->set_cookie);
    if (res->location[0] != '\0')
        MHD_add_response_header(r, MHD_HTTP_HEADER_LOCATION, res->location);
    if (res->allow != NULL)
        MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, res->allow);
    if (res->www_authenticate != NULL)
        MHD_add_response_header(r, MHD_HTTP_HEADER_WWW_AUTHENTICATE,
                                res->www_authenticate);
    rc = MHD_queue_response(c, res->status, r);
    MHD_destroy_response(r);
    return rc;
}

static enum MHD_Result serve_api(saga_http *h, struct MHD_Connection *c, const char *url,
                                 const char *method, const char *upload_data,
                                 size_t *upload_data_size, api_call *call)
{
    size_t max = h->cfg.max_body > 0 ? h->cfg.max_body : (size_t)1 << 20;
    if (*upload_data_size != 0) {
        /* Kept while it fits; beyond the limit only counted away. */
        if (!call->too_large && call->len + *upload_data_size <= max) {
            if (call->len + *upload_data_size > call->cap) {
                size_t cap = call->cap ? call->cap : 4096;
                char *b;
                while (cap < call->len + *upload_data_size)
                    cap *= 2;
                if ((b = realloc(call->body, cap)) == NULL) {
                    call->too_large = 1;
                } else {
                    call->body = b;
                    call->cap = cap;
                }
            }
            if (!call->too_large) {
                memcpy(call->body + call->len, upload_data, *upload_data_size);
                call->len += *upload_data_size;
            }
        } else {
            call->too_large = 1;
        }
        *upload_data_size = 0;
        return MHD_YES;
    }
    {
        saga_http_response res = {0};
        arg_names args = {{0}, 0};
        saga_http_request req = {.method = method,
                                 .path = url,
                                 .body = call->body,
                                 .body_len = call->len,
                                 .conn = c,
                                 .state = &call->state};
        if (call->too_large) {
            char msg[200];
            snprintf(msg, sizeof msg,
                     "{\"type\":\"urn:saga:problem:body_too_large\",\"title\":\"Content "
                     "Too Large\",\"status\":413,\"code\":\"body_too_large\",\"detail\":"
                     "\"the body is over %zu bytes\"}",
                     max);
            res.status = 413;
            res.type = "application/problem+json";
            res.body = strdup(msg);
            res.len = res.body != NULL ? strlen(res.body) : 0;
            return api_answer(c, &res);
        }
        MHD_get_connection_values(c, MHD_GET_ARGUMENT_KIND, collect_arg, &args);
        req.args = args.names;
        res.status = 500;
        h->cfg.api(h->cfg.api_arg, &req, &res);
        if (res.suspended) {
            free(res.body);
            return MHD_YES;
        }
        return api_answer(c, &res);
    }
}

static void request_done(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    saga_http *h = cls;
    (void)c;
    (void)toe;
    if (*con_cls != NULL && *con_cls != (void *)h) {
        api_call *call = *con_cls;
        if (call->state != NULL && h->cfg.api_done != NULL)
            h->cfg.api_done(h->cfg.api_arg, call->state);
        free(call->body);
        free(call);
    }
    *con_cls = NULL;
}

static int is_api(const saga_http *h, const char *url)
{
    if (h->cfg.api != NULL && h->cfg.console &&
        (strcmp(url, "/") == 0 || strncmp(url, "/console/", 9) == 0))
        return 1;
    return h->cfg.api != NULL && strncmp(url, "/v1", 3) == 0 &&
           (url[3] == '\0' || url[3] == '/');
}

static enum MHD_Result serve(void *cls, struct MHD_Connection *c, const char *url,
                             const char *method, const char *version,
                             const char *upload_data, size_t *upload_data_size,
                             void **con_cls)
{
    saga_http *h = cls;
    (void)version;
    /* The first call for a request only announces its headers; answering
     * then would be premature when a body follows. */
    if (*con_cls == NULL) {
        if (is_api(h, url)) {
            api_call *call = calloc(1, sizeof *call);
            if (call == NULL)
                return MHD_NO;
            *con_cls = call;
        } else {
            *con_cls = h;
        }
        return MHD_YES;
    }
    if (*con_cls != (void *)h)
        return serve_api(h, c, url, method, upload_data, upload_data_size, *con_cls);
    if (*upload_data_size != 0) {
        *upload_data_size = 0; /* a body is read and ignored */
        return MHD_YES;
    }
    if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 &&
        strcmp(method, MHD_HTTP_METHOD_HEAD) != 0)
        return text(c, MHD_HTTP_METHOD_NOT_ALLOWED, "method not allowed\n");
    if (h->cfg.no_ops)
        return text(c, MHD_HTTP_NOT_FOUND, "not found\n");
    if (strcmp(url, "/metrics") == 0) {
        char *buf = NULL;
        size_t cap = 0, len = 0;
        if (h->cfg.metrics == NULL)
            return reply(c, MHD_HTTP_OK, METRICS_TYPE, (char *)"", 0, 0);
        if (saga_metrics_render(h->cfg.metrics, &buf, &cap, &len) != SAGA_OK) {
            free(buf);
            return text(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory\n");
        }
        return reply(c, MHD_HTTP_OK, METRICS_TYPE, buf, len, 1);
    }
    if (strcmp(url, "/healthz") == 0)
        return check(c, h->cfg.healthy, h->cfg.healthy_arg);
    if (strcmp(url, "/readyz") == 0)
        return check(c, h->cfg.ready, h->cfg.ready_arg);
    return text(c, MHD_HTTP_NOT_FOUND, "not found\n");
}

int saga_http_start(const saga_http_config *cfg, saga_http **out, saga_error *err)
{
    saga_http *h;
    struct sockaddr_storage ss;
    const char *addr;
    const union MHD_DaemonInfo *info;
    unsigned int flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_AUTO;
    unsigned int max_conns;

    if (out == NULL || cfg == NULL)
        return saga__error_set(err, SAGA_EINVAL, "http: no configuration");
    *out = NULL;
    if (cfg->port < 0 || cfg->port > 65535)
        return saga__error_set(err, SAGA_EINVAL, "http: port %d is out of range",
                               cfg->port);
    if ((cfg->tls_cert_pem == NULL) != (cfg->tls_key_pem == NULL))
        return saga__error_set(err, SAGA_EINVAL,
                               "http: TLS needs both a certificate and its key");
    if (cfg->tls_cert_pem != NULL && MHD_is_feature_supported(MHD_FEATURE_TLS) != MHD_YES)
        return saga__error_set(err, SAGA_EIO,
                               "http: this libmicrohttpd was built without TLS");
    addr = cfg->address != NULL && *cfg->address ? cfg->address : "127.0.0.1";
    memset(&ss, 0, sizeof ss);
    {
        struct sockaddr_in *v4 = (struct sockaddr_in *)&ss;
        struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&ss;
        if (inet_pton(AF_INET, addr, &v4->sin_addr) == 1) {
            v4->sin_family = AF_INET;
            v4->sin_port = htons((uint16_t)cfg->port);
        } else if (inet_pton(AF_INET6, addr, &v6->sin6_addr) == 1) {
            v6->sin6_family = AF_INET6;
            v6->sin6_port = htons((uint16_t)cfg->port);
            flags |= MHD_USE_IPv6;
        } else {
            return saga__error_set(err, SAGA_EINVAL,
                                   "http: \"%s\" is not a numeric IPv4 or IPv6 address",
                                   addr);
        }
    }
    max_conns = cfg->max_connections > 0 ? cfg->max_connections
                : cfg->api != NULL       ? 1024
                                         : 32;
    if ((h = calloc(1, sizeof *h)) == NULL)
        return saga__error_set(err, SAGA_ENOMEM, "out of memory");
    if (cfg->api != NULL)
        flags |= MHD_ALLOW_SUSPEND_RESUME; /* long polls: held, threadless */
    if (cfg->tls_cert_pem != NULL)
        flags |= MHD_USE_TLS;
    h->cfg = *cfg;
    h->cfg.address = NULL; /* not kept: the caller's string may go */
    h->cfg.tls_cert_pem = h->cfg.tls_key_pem = NULL;
    /* With the API: a pool of threads (a request waits on the database
     * on its thread), more connections, and each request's state freed
     * when it ends. */
    h->daemon = MHD_start_daemon(
        flags, (uint16_t)cfg->port, NULL, NULL, serve, h, MHD_OPTION_SOCK_ADDR,
        (struct sockaddr *)&ss, MHD_OPTION_CONNECTION_LIMIT, max_conns,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)10, MHD_OPTION_NOTIFY_COMPLETED,
        request_done, h, MHD_OPTION_THREAD_POOL_SIZE,
        (unsigned int)(cfg->api == NULL   ? 1
                       : cfg->threads > 0 ? cfg->threads
                                          : 4),
        /* Without TLS the list ends here (MHD_OPTION_END is 0). */
        cfg->tls_cert_pem != NULL ? MHD_OPTION_HTTPS_MEM_CERT : MHD_OPTION_END,
        cfg->tls_cert_pem, MHD_OPTION_HTTPS_MEM_KEY, cfg->tls_key_pem, MHD_OPTION_END);
    if (h->daemon == NULL) {
        free(h);
        return saga__error_set(
            err, SAGA_EIO,
            "http: cannot listen on %s port %d (in use, or not an address of this "
            "host%s)",
            addr, cfg->port,
            cfg->tls_cert_pem != NULL ? "; or the TLS certificate and key are not a "
                                        "matching PEM pair"
                                      : "");
    }
    info = MHD_get_daemon_info(h->daemon, MHD_DAEMON_INFO_BIND_PORT);
    h->port = info != NULL ? info->port : cfg->port;
    *out = h;
    return SAGA_OK;
}

int saga_http_port(const saga_http *h)
{
    return h != NULL ? h->port : -1;
}

void saga_http_stop(saga_http *h)
{
    if (h == NULL)
        return;
    MHD_stop_daemon(h->daemon);
    free(h);
}

/* ---- health ---- */

int saga_health_init(saga_health *h, int64_t max_tick_age_ms)
{
    memset(h, 0, sizeof *h);
    if (pthread_mutex_init(&h->lock, NULL) != 0)
        return SAGA_ENOMEM;
    h->max_tick_age_ms = max_tick_age_ms > 0 ? max_tick_age_ms : 30000;
    snprintf(h->db_reason, sizeof h->db_reason, "database not connected yet");
    snprintf(h->broker_reason, sizeof h->broker_reason, "broker not connected yet");
    return SAGA_OK;
}

void saga_health_cleanup(saga_health *h)
{
    if (h != NULL)
        pthread_mutex_destroy(&h->lock);
}

void saga_health_tick(saga_health *h, int64_t now_ms)
{
    pthread_mutex_lock(&h->lock);
    h->last_tick_ms = now_ms;
    pthread_mutex_unlock(&h->lock);
}

static void set_dep(saga_health *h, int *flag, char *dst, size_t size, int ok,
                    const char *reason)
{
    pthread_mutex_lock(&h->lock);
    *flag = ok != 0;
    snprintf(dst, size, "%s", ok || reason == NULL ? "" : reason);
    pthread_mutex_unlock(&h->lock);
}

void saga_health_set_db(saga_health *h, int ok, const char *reason)
{
    set_dep(h, &h->db_ok, h->db_reason, sizeof h->db_reason, ok,
            reason ? reason : "database unreachable");
}

void saga_health_set_broker(saga_health *h, int ok, const char *reason)
{
    set_dep(h, &h->broker_ok, h->broker_reason, sizeof h->broker_reason, ok,
            reason ? reason : "broker unreachable");
}

int saga_health_is_live(saga_health *h, int64_t now_ms, char *reason, size_t size)
{
    int64_t last, max;
    pthread_mutex_lock(&h->lock);
    last = h->last_tick_ms;
    max = h->max_tick_age_ms;
    pthread_mutex_unlock(&h->lock);
    if (last == 0) {
        snprintf(reason, size, "engine loop has not started");
        return 0;
    }
    if (now_ms - last > max) {
        snprintf(reason, size, "engine loop last ticked %lld ms ago (limit %lld ms)",
                 (long long)(now_ms - last), (long long)max);
        return 0;
    }
    return 1;
}

int saga_health_is_ready(saga_health *h, char *reason, size_t size)
{
    int ok;
    pthread_mutex_lock(&h->lock);
    ok = h->db_ok && h->broker_ok;
    if (!h->db_ok && !h->broker_ok)
        snprintf(reason, size, "%s; %s", h->db_reason, h->broker_reason);
    else if (!ok)
        snprintf(reason, size, "%s", h->db_ok ? h->broker_reason : h->db_reason);
    pthread_mutex_unlock(&h->lock);
    return ok;
}

int64_t saga_health_now_ms(void)
{
    return saga__mono_ms();
}

int saga_health_check_live(void *arg, char *reason, size_t size)
{
    return saga_health_is_live(arg, saga_health_now_ms(), reason, size);
}

int saga_health_check_ready(void *arg, char *reason, size_t size)
{
    return saga_health_is_ready(arg, reason, size);
}
