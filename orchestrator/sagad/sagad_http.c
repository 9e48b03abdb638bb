/* sagad_http.c - sagad's HTTP listeners (see sagad_http.h): options
 * checked, the TLS files read (the key as a secret), the API made, and
 * where each thing is served logged. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "saga_log.h"
#include "saga_shared.h"
#include "sagad_http.h"

#define PEM_MAX (1 << 20)

/* Split "ADDR:PORT" ("[v6]:PORT", ":PORT") into addr (128 bytes) and
 * *port; either may be NULL to only check. opt names the option. */
static int parse_addr(const char *opt, const char *spec, char *addr, int *port_out,
                      saga_error *err)
{
    const char *colon = strrchr(spec, ':');
    char *end;
    long port;
    size_t alen;

    if (colon == NULL)
        return saga__error_set(err, SAGA_EINVAL,
                               "--%s \"%s\": expected ADDRESS:PORT, e.g. 127.0.0.1:9464",
                               opt, spec);
    port = strtol(colon + 1, &end, 10);
    if (*end != '\0' || end == colon + 1 || port < 0 || port > 65535)
        return saga__error_set(err, SAGA_EINVAL,
                               "--%s \"%s\": the port must be 0 to 65535", opt, spec);
    alen = (size_t)(colon - spec);
    if (alen >= 2 && spec[0] == '[' && spec[alen - 1] == ']') {
        spec++;
        alen -= 2;
    }
    if (alen >= 128)
        return saga__error_set(err, SAGA_EINVAL, "--%s \"%s\": address too long", opt,
                               spec);
    if (addr != NULL) {
        memcpy(addr, spec, alen);
        addr[alen] = '\0';
    }
    if (port_out != NULL)
        *port_out = (int)port;
    return SAGA_OK;
}

/* Loopback: where the API takes callers without a token while no token
 * exists (elsewhere every request needs one). */
static int is_loopback(const char *addr)
{
    return *addr == '\0' || strncmp(addr, "127.", 4) == 0 || strcmp(addr, "::1") == 0 ||
           strcmp(addr, "localhost") == 0;
}

/* Connections the API may hold (long polls wait without a thread, but
 * each is a file descriptor): the soft limit on open files raised toward
 * the hard one, less room for Kafka, PostgreSQL and the rest. */
static unsigned int api_connections(void)
{
    struct rlimit rl;
    rlim_t want = 16384, spare = 512;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return 0;
    if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < want) {
        rl.rlim_cur =
            rl.rlim_max != RLIM_INFINITY && rl.rlim_max < want ? rl.rlim_max : want;
        if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
            getrlimit(RLIMIT_NOFILE, &rl);
    }
    if (rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur > want)
        rl.rlim_cur = want;
    /* A low limit still leaves the rest of sagad its descriptors. */
    return rl.rlim_cur > spare + 64
               ? (unsigned int)(rl.rlim_cur - spare)
               : (unsigned int)(rl.rlim_cur > 128 ? rl.rlim_cur / 2 : 16);
}

/* A PEM file's text (new) into *out; the key through saga__open_secret,
 * so that a key others may read is refused. */
static int read_pem(const char *opt, const char *path, int secret, char **out,
                    saga_error *err)
{
    FILE *f;
    size_t n;
    char *buf;
    *out = NULL;
    if (secret) {
        char what[64];
        snprintf(what, sizeof what, "--%s ", opt);
        if ((f = saga__open_secret(path, what, err)) == NULL)
            return SAGA_EIO;
    } else if ((f = fopen(path, "rb")) == NULL) {
        return saga__error_set(err, SAGA_EIO, "--%s %s: cannot be read", opt, path);
    }
    if ((buf = malloc(PEM_MAX + 1)) == NULL) {
        fclose(f);
        return saga__error_set(err, SAGA_ENOMEM, "out of memory");
    }
    n = fread(buf, 1, PEM_MAX + 1, f);
    fclose(f);
    buf[n > PEM_MAX ? PEM_MAX : n] = '\0';
    if (n > PEM_MAX || strstr(buf, "-----BEGIN ") == NULL) {
        free(buf);
        return saga__error_set(err, SAGA_EINVAL, "--%s %s: %s", opt, path,
                               n > PEM_MAX ? "over 1 MiB: not a PEM file"
                                           : "not PEM (no -----BEGIN line)");
    }
    *out = buf;
    return SAGA_OK;
}

int sagad_http_check(const sagad_http_opts *o, saga_error *err)
{
    int rc = SAGA_OK;
    char *pem = NULL;
    if (o->http != NULL && *o->http != '\0')
        rc = parse_addr("http", o->http, NULL, NULL, err);
    if (rc == SAGA_OK && o->metrics != NULL && *o->metrics != '\0')
        rc = parse_addr("metrics", o->metrics, NULL, NULL, err);
    if (rc == SAGA_OK && (o->tls_cert != NULL) != (o->tls_key != NULL))
        rc = saga__error_set(err, SAGA_EINVAL,
                             "--tls-cert and --tls-key go together (%s is missing)",
                             o->tls_cert == NULL ? "--tls-cert" : "--tls-key");
    if (rc == SAGA_OK && o->tls_cert != NULL && (o->http == NULL || *o->http == '\0'))
        rc = saga__error_set(err, SAGA_EINVAL,
                             "--tls-cert is for the API's listener: give --http too");
    if (rc == SAGA_OK && o->tls_cert != NULL) {
        rc = read_pem("tls-cert", o->tls_cert, 0, &pem, err);
        free(pem);
        pem = NULL;
    }
    if (rc == SAGA_OK && o->tls_key != NULL) {
        rc = read_pem("tls-key", o->tls_key, 1, &pem, err);
        free(pem);
    }
    return rc;
}

/* saga_api_config.kick: the API wrote a start request. */
static void kick_engine(void *engine)
{
    saga_engine_kick(engine);
}

static void ops(saga_http_config *hc, saga_engine *e)
{
    hc->metrics = saga_engine_metrics(e);
    hc->healthy = saga_health_check_live;
    hc->healthy_arg = saga_engine_health(e);
    hc->ready = saga_health_check_ready;
    hc->ready_arg = saga_engine_health(e);
}

int sagad_http_start(const sagad_http_opts *o, saga_engine *e, const char *db_url,
                     sagad_http *out, saga_error *err)
{
    char addr[128], maddr[128];
    int rc = SAGA_OK, separate = o->metrics != NULL && *o->metrics != '\0';
    saga_http_config hc = {0}, mc = {0};
    char *cert = NULL, *key = NULL;

    memset(out, 0, sizeof *out);
    if (separate) {
        if ((rc = parse_addr("metrics", o->metrics, maddr, &mc.port, err)) != SAGA_OK)
            return rc;
        mc.address = maddr;
        ops(&mc, e);
        if ((rc = saga_http_start(&mc, &out->metrics, err)) != SAGA_OK)
            return rc;
        /* "/readyz on ADDR:PORT" first: scripts and tests read the port there. */
        saga_log(SAGA_LOG_INFO, "serving /metrics, /healthz, /readyz on %s:%d",
                 maddr[0] ? maddr : "127.0.0.1", saga_http_port(out->metrics));
    }
    if (o->http == NULL || *o->http == '\0')
        return SAGA_OK;
    if ((rc = parse_addr("http", o->http, addr, &hc.port, err)) == SAGA_OK &&
        o->tls_cert != NULL &&
        (rc = read_pem("tls-cert", o->tls_cert, 0, &cert, err)) == SAGA_OK)
        rc = read_pem("tls-key", o->tls_key, 1, &key, err);
    if (rc == SAGA_OK) {
        saga_api_config ac = {.db_url = db_url,
                              .local = is_loopback(addr),
                              .kick = kick_engine,
                              .kick_arg = e,
                              .trace_url = o->trace_url,
                              .tls = o->tls_cert != NULL,
                              .metrics = saga_engine_metrics(e)};
        rc = saga_api_new(&ac, &out->api, err);
    }
    if (rc == SAGA_OK) {
        hc.address = addr;
        hc.api = saga_api_handle;
        hc.api_done = saga_api_done;
        hc.api_arg = out->api;
        hc.max_connections = api_connections();
        hc.tls_cert_pem = cert;
        hc.tls_key_pem = key;
        hc.no_ops = separate;
        hc.console = 1; /* the operator console at / (docs/CONSOLE.md) */
        if (!separate)
            ops(&hc, e);
        rc = saga_http_start(&hc, &out->server, err);
    }
    if (key != NULL) /* the server has its copy */
        memset(key, 0, strlen(key));
    free(key);
    free(cert);
    if (rc != SAGA_OK) {
        sagad_http_stop(out);
        return rc;
    }
    {
        const char *who = is_loopback(addr)
                              ? "a bearer token once tokens exist, none before: loopback"
                              : "a bearer token always: not a loopback address";
        const char *tls = o->tls_cert != NULL ? " over TLS" : "";
        if (separate)
            saga_log(SAGA_LOG_INFO,
                     "serving the API (/v1: %s) and the console (/) on %s:%d%s", who,
                     addr[0] ? addr : "127.0.0.1", saga_http_port(out->server), tls);
        else
            saga_log(
                SAGA_LOG_INFO,
                "serving /metrics, /healthz, /readyz on %s:%d%s, and the API (/v1: %s), "
                "with the console at /",
                addr[0] ? addr : "127.0.0.1", saga_http_port(out->server), tls, who);
    }
    return SAGA_OK;
}

void sagad_http_stop(sagad_http *s)
{
    saga_api_quiesce(s->api); /* held long polls answered: the server may stop */
    saga_http_stop(s->server);
    saga_http_stop(s->metrics);
    saga_api_free(s->api);
    memset(s, 0, sizeof *s);
}
