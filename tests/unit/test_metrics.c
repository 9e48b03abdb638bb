/* Metrics registry: the exact text format 0.0.4 output, escaping,
 * histograms, validation, bounds, a growing buffer, and rendering from
 * another thread while the owner updates. */
#include <math.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "saga/error.h"
#include "saga_metrics.h"

#define L(...) ((const char *[]){__VA_ARGS__, NULL})
#define V(...) ((const char *[]){__VA_ARGS__})

static char *render(saga_metrics *m)
{
    char *buf = NULL;
    size_t cap = 0, len = 0;
    assert_int_equal(saga_metrics_render(m, &buf, &cap, &len), SAGA_OK);
    assert_non_null(buf);
    assert_int_equal(strlen(buf), len);
    assert_true(cap > len);
    return buf;
}

static void test_counters_and_gauges(void **state)
{
    saga_metrics *m;
    saga_metric *sagas, *ticks, *pending;
    char *text;
    double v;
    (void)state;
    assert_int_equal(saga_metrics_new(&m), SAGA_OK);
    assert_int_equal(saga_metrics_counter(m, "saga_sagas_total", "Sagas that ended.",
                                          L("definition", "outcome"), &sagas),
                     SAGA_OK);
    assert_int_equal(saga_metrics_counter(m, "ticks_total", "Loop ticks.", NULL, &ticks),
                     SAGA_OK);
    assert_int_equal(saga_metrics_gauge(m, "pending", "Waiting.", NULL, &pending),
                     SAGA_OK);
    assert_int_equal(saga_metric_add(sagas, V("order", "completed"), 1), SAGA_OK);
    assert_int_equal(saga_metric_add(sagas, V("order", "completed"), 2), SAGA_OK);
    assert_int_equal(saga_metric_add(sagas, V("order", "compensated"), 1), SAGA_OK);
    assert_int_equal(saga_metric_set(pending, NULL, 2.5), SAGA_OK);
    assert_int_equal(saga_metric_add(pending, NULL, -3), SAGA_OK);
    assert_int_equal(saga_metric_value(sagas, V("order", "completed"), &v), SAGA_OK);
    assert_true(v == 3);
    assert_int_equal(saga_metric_value(sagas, V("order", "failed"), &v), SAGA_OK);
    assert_true(v == 0);
    text = render(m);
    assert_string_equal(
        text, "# HELP saga_sagas_total Sagas that ended.\n"
              "# TYPE saga_sagas_total counter\n"
              "saga_sagas_total{definition=\"order\",outcome=\"completed\"} 3\n"
              "saga_sagas_total{definition=\"order\",outcome=\"compensated\"} 1\n"
              "# HELP ticks_total Loop ticks.\n"
              "# TYPE ticks_total counter\n"
              "ticks_total 0\n"
              "# HELP pending Waiting.\n"
              "# TYPE pending gauge\n"
              "pending -0.5\n");
    free(text);
    saga_metrics_free(m);
}

static void test_escaping(void **state)
{
    saga_metrics *m;
    saga_metric *c;
    char *text;
    (void)state;
    assert_int_equal(saga_metrics_new(&m), SAGA_OK);
    assert_int_equal(
        saga_metrics_counter(m, "x_total", "a \\ back\nslash \"quoted\"", L("v"), &c),
        SAGA_OK);
    assert_int_equal(saga_metric_add(c, V("C:\\dir \"q\"\nnext"), 1), SAGA_OK);
    assert_int_equal(saga_metric_add(c, V("caf\xc3\xa9"), 0.1), SAGA_OK);
    text = render(m);
    assert_string_equal(text, "# HELP x_total a \\\\ back\\nslash \"quoted\"\n"
                              "# TYPE x_total counter\n"
                              "x_total{v=\"C:\\\\dir \\\"q\\\"\\nnext\"} 1\n"
                              "x_total{v=\"caf\xc3\xa9\"} 0.1\n");
    free(text);
    saga_metrics_free(m);
}

static void test_histogram(void **state)
{
    static const double b[] = {0.005, 0.1, 1, 2.5};
    saga_metrics *m;
    saga_metric *h, *batch;
    char *text;
    double v;
    (void)state;
    assert_int_equal(saga_metrics_new(&m), SAGA_OK);
    assert_int_equal(saga_metrics_histogram(m, "step_seconds", "Step latency.",
                                            L("service"), b, 4, &h),
                     SAGA_OK);
    assert_int_equal(
        saga_metrics_histogram(m, "batch", "Batch size.", NULL, b, 1, &batch), SAGA_OK);
    /* Upper bounds are inclusive: 0.1 lands in le="0.1". */
    const double obs[] = {0.001, 0.1, 0.5, 3, 100};
    for (size_t i = 0; i < 5; i++)
        assert_int_equal(saga_metric_observe(h, V("pay"), obs[i]), SAGA_OK);
    assert_int_equal(saga_metric_value(h, V("pay"), &v), SAGA_OK);
    assert_true(v == 5);
    text = render(m);
    assert_string_equal(text, "# HELP step_seconds Step latency.\n"
                              "# TYPE step_seconds histogram\n"
                              "step_seconds_bucket{service=\"pay\",le=\"0.005\"} 1\n"
                              "step_seconds_bucket{service=\"pay\",le=\"0.1\"} 2\n"
                              "step_seconds_bucket{service=\"pay\",le=\"1\"} 3\n"
                              "step_seconds_bucket{service=\"pay\",le=\"2.5\"} 3\n"
                              "step_seconds_bucket{service=\"pay\",le=\"+Inf\"} 5\n"
                              "step_seconds_sum{service=\"pay\"} 103.601\n"
                              "step_seconds_count{service=\"pay\"} 5\n"
                              "# HELP batch Batch size.\n"
                              "# TYPE batch histogram\n"
                              "batch_bucket{le=\"0.005\"} 0\n"
                              "batch_bucket{le=\"+Inf\"} 0\n"
                              "batch_sum 0\n"
                              "batch_count 0\n");
    free(text);
    saga_metrics_free(m);
}

static void test_validation(void **state)
{
    static const double good[] = {1, 2}, bad[] = {2, 1}, inf[] = {1, INFINITY};
    saga_metrics *m;
    saga_metric *c = NULL, *g, *h;
    (void)state;
    assert_int_equal(saga_metrics_new(NULL), SAGA_EINVAL);
    assert_int_equal(saga_metrics_new(&m), SAGA_OK);
    assert_int_equal(saga_metrics_counter(m, "", "h", NULL, &c), SAGA_EINVAL);
    assert_null(c);
    assert_int_equal(saga_metrics_counter(m, "1abc", "h", NULL, &c), SAGA_EINVAL);
    assert_int_equal(saga_metrics_counter(m, "a-b", "h", NULL, &c), SAGA_EINVAL);
    assert_int_equal(saga_metrics_counter(m, "ns:a_b", "h", NULL, &c), SAGA_OK);
    assert_int_equal(saga_metrics_counter(m, "ns:a_b", "h", NULL, NULL), SAGA_EEXIST);
    assert_int_equal(saga_metrics_gauge(m, "g", "h", L("a:b"), NULL), SAGA_EINVAL);
    assert_int_equal(saga_metrics_gauge(m, "g", "h", L("__x"), NULL), SAGA_EINVAL);
    assert_int_equal(saga_metrics_gauge(m, "g", "h", L("a", "a"), NULL), SAGA_EINVAL);
    assert_int_equal(saga_metrics_gauge(m, "g", "h", L("a", "b", "c", "d", "e"), NULL),
                     SAGA_EINVAL);
    assert_int_equal(saga_metrics_gauge(m, "g", "h", L("le"), &g),
                     SAGA_OK); /* fine here */
    assert_int_equal(saga_metrics_histogram(m, "h", "h", L("le"), good, 2, NULL),
                     SAGA_EINVAL);
    assert_int_equal(saga_metrics_histogram(m, "h", "h", NULL, bad, 2, NULL),
                     SAGA_EINVAL);
    assert_int_equal(saga_metrics_histogram(m, "h", "h", NULL, inf, 2, NULL),
                     SAGA_EINVAL);
    assert_int_equal(saga_metrics_histogram(m, "h", "h", NULL, good, 0, NULL),
                     SAGA_EINVAL);
    assert_int_equal(saga_metrics_histogram(m, "h", "h", NULL, good, 2, &h), SAGA_OK);
    /* Updates of the wrong kind or value. */
    assert_int_equal(saga_metric_add(c, NULL, -1), SAGA_EINVAL);
    assert_int_equal(saga_metric_add(c, NULL, NAN), SAGA_EINVAL);
    assert_int_equal(saga_metric_set(c, NULL, 1), SAGA_EINVAL);
    assert_int_equal(saga_metric_observe(c, NULL, 1), SAGA_EINVAL);
    assert_int_equal(saga_metric_add(h, NULL, 1), SAGA_EINVAL);
    assert_int_equal(saga_metric_observe(h, NULL, NAN), SAGA_EINVAL);
    assert_int_equal(saga_metric_set(g, NULL, 1), SAGA_EINVAL); /* needs its label */
    assert_int_equal(saga_metric_set(g, V((const char *)NULL), 1), SAGA_EINVAL);
    assert_int_equal(saga_metric_add(NULL, NULL, 1), SAGA_EINVAL);
    assert_int_equal(saga_metric_set(g, V("x"), -1), SAGA_OK);
    assert_int_equal(saga_metrics_render(m, NULL, NULL, NULL), SAGA_EINVAL);
    assert_int_equal(saga_metrics_register_std(NULL, NULL), SAGA_EINVAL);
    saga_metrics_free(m);
    saga_metrics_free(NULL);
}

static void test_series_bound_and_growing_buffer(void **state)
{
    saga_metrics *m;
    saga_metric *c;
    char id[32], *buf = malloc(1);
    size_t cap = 1, len = 0, lines = 0;
    (void)state;
    assert_int_equal(saga_metrics_new(&m), SAGA_OK);
    assert_int_equal(saga_metrics_counter(m, "ids_total", "h", L("id"), &c), SAGA_OK);
    for (int i = 0; i < SAGA_METRIC_MAX_SERIES; i++) {
        snprintf(id, sizeof id, "%d", i);
        assert_int_equal(saga_metric_add(c, V(id), 1), SAGA_OK);
    }
    assert_int_equal(saga_metric_add(c, V("one-too-many"), 1), SAGA_ENOMEM);
    assert_int_equal(saga_metric_add(c, V("0"), 1), SAGA_OK); /* existing: fine */
    assert_int_equal(saga_metrics_render(m, &buf, &cap, &len), SAGA_OK);
    assert_true(cap > len);
    for (size_t i = 0; i < len; i++)
        lines += buf[i] == '\n';
    assert_int_equal(lines, SAGA_METRIC_MAX_SERIES + 2);
    assert_non_null(strstr(buf, "ids_total{id=\"0\"} 2\n"));
    assert_non_null(strstr(buf, "ids_total{id=\"1999\"} 1\n"));
    free(buf);
    saga_metrics_free(m);
}

static void test_standard_families(void **state)
{
    saga_metrics *m;
    saga_std_metrics s;
    char *text;
    (void)state;
    assert_int_equal(saga_metrics_new(&m), SAGA_OK);
    assert_int_equal(saga_metrics_register_std(m, &s), SAGA_OK);
    assert_int_equal(saga_metrics_register_std(m, &s), SAGA_EEXIST);
    assert_int_equal(saga_metric_add(s.sagas_finished, V("order", "completed"), 1),
                     SAGA_OK);
    assert_int_equal(
        saga_metric_observe(s.step_latency, V("payment", "charge", "invoke"), 0.012),
        SAGA_OK);
    assert_int_equal(saga_metric_observe(s.pg_commit, NULL, 0.0007), SAGA_OK);
    assert_int_equal(saga_metric_observe(s.batch_size, NULL, 37), SAGA_OK);
    assert_int_equal(saga_metric_set(s.breaker_state, V("payment", "open"), 1), SAGA_OK);
    text = render(m);
    assert_non_null(
        strstr(text, "# TYPE saga_sagas_total counter\n"
                     "saga_sagas_total{definition=\"order\",outcome=\"completed\"} 1\n"));
    assert_non_null(strstr(text, "saga_step_latency_seconds_bucket{service=\"payment\","
                                 "action=\"charge\",phase=\"invoke\",le=\"0.025\"} 1\n"));
    assert_non_null(strstr(text, "saga_pg_commit_seconds_bucket{le=\"0.001\"} 1\n"));
    assert_non_null(strstr(text, "saga_engine_batch_size_bucket{le=\"50\"} 1\n"));
    assert_non_null(strstr(text, "saga_outbox_pending 0\n"));
    free(text);
    saga_metrics_free(m);
}

typedef struct race {
    saga_metrics *m;
    int stop;
    pthread_mutex_t lock;
    int renders, bad, most_series;
} race;

/* How many lat series text holds whose +Inf bucket equals their _count;
 * -1 when one does not. */
static int histograms_whole(const char *text)
{
    const char *p = text;
    int n = 0;
    while ((p = strstr(p, "lat_bucket{svc=\"")) != NULL) {
        char svc[32], want[96];
        const char *inf, *cnt;
        double a, b;
        if (sscanf(p, "lat_bucket{svc=\"%31[^\"]\",le=\"+Inf\"} %lf", svc, &a) == 2) {
            snprintf(want, sizeof want, "lat_count{svc=\"%s\"} ", svc);
            if ((cnt = strstr(text, want)) == NULL ||
                sscanf(cnt + strlen(want), "%lf", &b) != 1 || a != b)
                return -1;
            n++;
        }
        inf = strchr(p, '\n');
        if (inf == NULL)
            break;
        p = inf + 1;
    }
    return n;
}

static void *renderer(void *arg)
{
    race *r = arg;
    char *buf = NULL;
    size_t cap = 0, len;
    for (;;) {
        pthread_mutex_lock(&r->lock);
        int stop = r->stop;
        pthread_mutex_unlock(&r->lock);
        if (stop)
            break;
        /* Whole: rendered, ends its last line, and every histogram's
         * +Inf bucket equals its _count (a render torn by an update would
         * show one without the other). */
        int whole;
        if (saga_metrics_render(r->m, &buf, &cap, &len) != SAGA_OK || len == 0 ||
            buf[len - 1] != '\n' || (whole = histograms_whole(buf)) < 0) {
            r->bad++;
        } else {
            r->renders++;
            if (whole > r->most_series)
                r->most_series = whole;
        }
    }
    free(buf);
    return NULL;
}

/* The HTTP thread renders while the engine thread updates: every render
 * is whole, and the final counts are exact. */
static void test_render_while_updating(void **state)
{
    race r = {0};
    saga_metric *c, *h;
    pthread_t t;
    char svc[16];
    double v;
    (void)state;
    assert_int_equal(saga_metrics_new(&r.m), SAGA_OK);
    pthread_mutex_init(&r.lock, NULL);
    assert_int_equal(saga_metrics_counter(r.m, "n_total", "h", L("svc"), &c), SAGA_OK);
    assert_int_equal(saga_metrics_histogram(r.m, "lat", "h", L("svc"),
                                            saga_metrics_latency_buckets,
                                            saga_metrics_latency_nbuckets, &h),
                     SAGA_OK);
    assert_int_equal(pthread_create(&t, NULL, renderer, &r), 0);
    for (int i = 0; i < 20000; i++) {
        snprintf(svc, sizeof svc, "s%d", i % 50);
        assert_int_equal(saga_metric_add(c, V(svc), 1), SAGA_OK);
        assert_int_equal(saga_metric_observe(h, V(svc), i * 0.001), SAGA_OK);
    }
    pthread_mutex_lock(&r.lock);
    r.stop = 1;
    pthread_mutex_unlock(&r.lock);
    pthread_join(t, NULL);
    assert_true(r.renders > 0);
    assert_int_equal(r.bad, 0);
    {
        /* The check reads what the registry writes: all 50 series, whole. */
        char *buf = NULL;
        size_t cap = 0, len;
        assert_int_equal(saga_metrics_render(r.m, &buf, &cap, &len), SAGA_OK);
        assert_int_equal(histograms_whole(buf), 50);
        free(buf);
    }
    assert_int_equal(saga_metric_value(c, V("s7"), &v), SAGA_OK);
    assert_true(v == 400);
    pthread_mutex_destroy(&r.lock);
    saga_metrics_free(r.m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_counters_and_gauges),
        cmocka_unit_test(test_escaping),
        cmocka_unit_test(test_histogram),
        cmocka_unit_test(test_validation),
        cmocka_unit_test(test_series_bound_and_growing_buffer),
        cmocka_unit_test(test_standard_families),
        cmocka_unit_test(test_render_while_updating),
    };
    return cmocka_run_group_tests_name("metrics registry", tests, NULL, NULL);
}
