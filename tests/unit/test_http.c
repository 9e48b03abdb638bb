/* The HTTP endpoint on an ephemeral port of 127.0.0.1, fetched with a
 * plain socket client: /metrics, /healthz, /readyz, 404, 405; and the
 * health state the engine publishes. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cmocka.h>

#include "saga_http.h"

/* One HTTP/1.0 request (the server closes after answering); the whole
 * response into buf. Returns the status code, or -1. */
static int fetch(int port, const char *method, const char *path, char *buf, size_t size)
{
    struct sockaddr_in a = {0};
    struct timeval tv = {5, 0};
    char req[256];
    size_t got = 0;
    int fd, status = -1;
    ssize_t n;

    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if ((fd = socket(AF_INET, SOCK_STREAM, 0)) < 0)
        return -1;
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return -1;
    }
    snprintf(req, sizeof req, "%s %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n", method, path);
    if (write(fd, req, strlen(req)) != (ssize_t)strlen(req)) {
        close(fd);
        return -1;
    }
    while (got + 1 < size && (n = read(fd, buf + got, size - 1 - got)) > 0)
        got += (size_t)n;
    buf[got] = '\0';
    close(fd);
    if (sscanf(buf, "HTTP/1.%*d %d", &status) != 1)
        return -1;
    return status;
}

static const char *body_of(const char *response)
{
    const char *b = strstr(response, "\r\n\r\n");
    return b != NULL ? b + 4 : "";
}

typedef struct flags {
    int healthy, ready;
} flags;

static int healthy_cb(void *arg, char *reason, size_t size)
{
    flags *f = arg;
    if (!f->healthy)
        snprintf(reason, size, "engine loop stuck");
    return f->healthy;
}

static int ready_cb(void *arg, char *reason, size_t size)
{
    flags *f = arg;
    if (!f->ready)
        snprintf(reason, size, "database unreachable: connection refused");
    return f->ready;
}

static void test_endpoints(void **state)
{
    saga_metrics *m;
    saga_metric *c;
    saga_http *h;
    saga_http_config cfg = {0};
    saga_error err = {0};
    flags f = {1, 0};
    char buf[65536];
    int port;
    (void)state;

    assert_int_equal(saga_metrics_new(&m), SAGA_OK);
    assert_int_equal(saga_metrics_counter(m, "saga_sagas_total", "Sagas that ended.",
                                          (const char *[]){"definition", "outcome", NULL},
                                          &c),
                     SAGA_OK);
    assert_int_equal(saga_metric_add(c, (const char *[]){"order", "completed"}, 2),
                     SAGA_OK);
    cfg.metrics = m;
    cfg.healthy = healthy_cb;
    cfg.healthy_arg = &f;
    cfg.ready = ready_cb;
    cfg.ready_arg = &f;
    assert_int_equal(saga_http_start(&cfg, &h, &err), SAGA_OK);
    port = saga_http_port(h);
    assert_true(port > 0);

    assert_int_equal(fetch(port, "GET", "/metrics", buf, sizeof buf), 200);
    assert_non_null(strstr(buf, "Content-Type: text/plain; version=0.0.4"));
    assert_non_null(strstr(body_of(buf), "# TYPE saga_sagas_total counter\n"
                                         "saga_sagas_total{definition=\"order\","
                                         "outcome=\"completed\"} 2\n"));
    /* Updates show on the next scrape. */
    assert_int_equal(saga_metric_add(c, (const char *[]){"order", "completed"}, 1),
                     SAGA_OK);
    assert_int_equal(fetch(port, "GET", "/metrics", buf, sizeof buf), 200);
    assert_non_null(strstr(body_of(buf), "outcome=\"completed\"} 3\n"));

    assert_int_equal(fetch(port, "GET", "/healthz", buf, sizeof buf), 200);
    assert_string_equal(body_of(buf), "ok\n");
    assert_int_equal(fetch(port, "GET", "/readyz", buf, sizeof buf), 503);
    assert_string_equal(body_of(buf), "database unreachable: connection refused\n");
    f.ready = 1;
    f.healthy = 0;
    assert_int_equal(fetch(port, "GET", "/readyz", buf, sizeof buf), 200);
    assert_int_equal(fetch(port, "GET", "/healthz", buf, sizeof buf), 503);
    assert_string_equal(body_of(buf), "engine loop stuck\n");

    assert_int_equal(fetch(port, "GET", "/", buf, sizeof buf), 404);
    assert_int_equal(fetch(port, "GET", "/metrics/x", buf, sizeof buf), 404);
    assert_int_equal(fetch(port, "GET", "/metrics?x=1", buf, sizeof buf), 200);
    assert_int_equal(fetch(port, "POST", "/metrics", buf, sizeof buf), 405);
    assert_non_null(strstr(buf, "Allow: GET, HEAD"));
    assert_int_equal(fetch(port, "HEAD", "/healthz", buf, sizeof buf), 503);
    assert_string_equal(body_of(buf), "");

    /* The same port cannot be taken twice. */
    {
        saga_http *again = (saga_http *)0x1;
        cfg.port = port;
        assert_int_equal(saga_http_start(&cfg, &again, &err), SAGA_EIO);
        assert_null(again);
        assert_non_null(strstr(err.message, "cannot listen"));
    }
    saga_http_stop(h);
    assert_int_equal(fetch(port, "GET", "/healthz", buf, sizeof buf), -1);
    saga_metrics_free(m);
}

static void test_defaults_and_bad_config(void **state)
{
    saga_http_config cfg = {0};
    saga_http *h = NULL;
    saga_error err = {0};
    char buf[4096];
    (void)state;
    /* No metrics, no callbacks: empty metrics, always healthy and ready. */
    cfg.address = "127.0.0.1";
    assert_int_equal(saga_http_start(&cfg, &h, &err), SAGA_OK);
    assert_int_equal(fetch(saga_http_port(h), "GET", "/metrics", buf, sizeof buf), 200);
    assert_string_equal(body_of(buf), "");
    assert_int_equal(fetch(saga_http_port(h), "GET", "/readyz", buf, sizeof buf), 200);
    assert_int_equal(fetch(saga_http_port(h), "GET", "/healthz", buf, sizeof buf), 200);
    saga_http_stop(h);
    saga_http_stop(NULL);

    cfg.address = "localhost"; /* names are not resolved: numeric only */
    assert_int_equal(saga_http_start(&cfg, &h, &err), SAGA_EINVAL);
    assert_non_null(strstr(err.message, "numeric"));
    cfg.address = NULL;
    cfg.port = 70000;
    assert_int_equal(saga_http_start(&cfg, &h, &err), SAGA_EINVAL);
    assert_int_equal(saga_http_start(NULL, &h, &err), SAGA_EINVAL);
    assert_int_equal(saga_http_port(NULL), -1);
}

static void test_health_state(void **state)
{
    saga_health h;
    char why[256] = "";
    (void)state;
    assert_int_equal(saga_health_init(&h, 5000), SAGA_OK);
    assert_false(saga_health_is_live(&h, 1000, why, sizeof why));
    assert_non_null(strstr(why, "not started"));
    saga_health_tick(&h, 1000);
    assert_true(saga_health_is_live(&h, 6000, why, sizeof why));
    assert_false(saga_health_is_live(&h, 6001, why, sizeof why));
    assert_string_equal(why, "engine loop last ticked 5001 ms ago (limit 5000 ms)");

    assert_false(saga_health_is_ready(&h, why, sizeof why));
    assert_string_equal(why, "database not connected yet; broker not connected yet");
    saga_health_set_db(&h, 1, NULL);
    assert_false(saga_health_is_ready(&h, why, sizeof why));
    assert_string_equal(why, "broker not connected yet");
    saga_health_set_broker(&h, 1, NULL);
    assert_true(saga_health_is_ready(&h, why, sizeof why));
    saga_health_set_db(&h, 0, "PostgreSQL unreachable: connection refused");
    assert_false(saga_health_is_ready(&h, why, sizeof why));
    assert_string_equal(why, "PostgreSQL unreachable: connection refused");
    saga_health_set_db(&h, 0, NULL);
    assert_false(saga_health_is_ready(&h, why, sizeof why));
    assert_string_equal(why, "database unreachable");

    /* Through the server, with the adapters. */
    {
        saga_http_config cfg = {0};
        saga_http *srv;
        saga_error err = {0};
        char buf[4096];
        cfg.healthy = saga_health_check_live;
        cfg.healthy_arg = &h;
        cfg.ready = saga_health_check_ready;
        cfg.ready_arg = &h;
        saga_health_tick(&h, saga_health_now_ms());
        assert_int_equal(saga_http_start(&cfg, &srv, &err), SAGA_OK);
        assert_int_equal(fetch(saga_http_port(srv), "GET", "/healthz", buf, sizeof buf),
                         200);
        assert_int_equal(fetch(saga_http_port(srv), "GET", "/readyz", buf, sizeof buf),
                         503);
        assert_string_equal(body_of(buf), "database unreachable\n");
        saga_http_stop(srv);
    }
    saga_health_cleanup(&h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_endpoints),
        cmocka_unit_test(test_defaults_and_bad_config),
        cmocka_unit_test(test_health_state),
    };
    return cmocka_run_group_tests_name("HTTP endpoint", tests, NULL, NULL);
}
