/* Several sagad share one database and one reply consumer group. Three
 * instances run order sagas; one is killed with SIGKILL and stays dead,
 * another is killed and restarted under its name. Every saga must end,
 * with no effect doubled or lost (order_workload.h checks), the survivors
 * must have carried the dead one's sagas, and the time they took is
 * printed. b is watched through its /metrics until the kill, so the test
 * knows it had work: it applied replies, and sagas were unfinished when it
 * died. Commands it still held in the outbox (if the kill landed between a
 * commit and Kafka's acknowledgement: often there are none) belong to
 * sagas that must end too.
 *
 * Size: SAGA_INSTANCES_SAGAS (default 160) sagas in four waves. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"
#include "order_workload.h"
#include "saga_store.h"

enum { NSVC = OW_NSVC, NSAGAD = 3 };
static const char *const sagad_names[NSAGAD] = {"a", "b", "c"};

static PGconn *db;
static char *prefix;
static it_proc svc[NSVC], sagad[NSAGAD];
static int starts[NSAGAD];

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The port of b's HTTP endpoint (it picks one; its log says which). */
static int b_port;

static void start_sagad(int i)
{
    char log[64];
    /* A short lease so that the dead instance's unsent commands are taken
     * over quickly. */
    const char *args[] = {"--definitions",
                          "tests/integration/crash_sagas",
                          "--name",
                          sagad_names[i],
                          "--outbox-lease",
                          "3",
                          "--http",
                          "127.0.0.1:0",
                          NULL};
    snprintf(log, sizeof log, "inst-sagad-%s-%d", sagad_names[i], ++starts[i]);
    assert_int_equal(it_spawn(&sagad[i], log, "sagad", args), 0);
    assert_int_equal(it_wait_log(&sagad[i], "sagad running", 60000), 0);
    if (i == 1) {
        b_port = it_http_port(&sagad[i]);
        assert_true(b_port > 0);
    }
}

/* GET /metrics from b into buf; returns 0 when it answered 200. */
static int scrape_b(char *buf, size_t size)
{
    return it_http_get(b_port, "/metrics", buf, size) == 200 ? 0 : -1;
}

/* The sum of every sample of the metric family `name` in a scrape. */
static double family_sum(const char *text, const char *name)
{
    double total = 0;
    size_t n = strlen(name);
    for (const char *p = text; p != NULL && *p; p = strchr(p, '\n'), p = p ? p + 1 : p) {
        const char *v;
        if (strncmp(p, name, n) != 0 || (p[n] != '{' && p[n] != ' '))
            continue;
        if ((v = strchr(p, ' ')) != NULL)
            total += strtod(v + 1, NULL);
    }
    return total;
}

static int setup(void **state)
{
    (void)state;
    if (ow_setup("instances", &db, &prefix) != 0)
        return -1;
    for (int i = 0; i < NSVC; i++)
        ow_start_service(&svc[i], i, "inst", 1);
    ow_seed(db); /* the services created their schemas */
    for (int i = 0; i < NSAGAD; i++)
        start_sagad(i);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    ow_stop_all(sagad, NSAGAD);
    ow_stop_all(svc, NSVC);
    PQfinish(db);
    free(prefix);
    return 0;
}

static long long unfinished(void)
{
    const char *p[1] = {prefix};
    return it_int(db,
                  "SELECT count(*) FROM saga.saga WHERE status IN ('running',"
                  " 'compensating') AND idempotency_key LIKE $1 || '%'",
                  1, p);
}

static void test_instances_share_and_take_over(void **state)
{
    const char *v = getenv("SAGA_INSTANCES_SAGAS");
    int total = v && atoi(v) >= 4 ? atoi(v) : 160, per = total / 4;
    saga_defs *defs = saga_defs_new();
    int64_t killed_at, done_at;
    long long in_flight, applied_a, applied_c, held_by_b, held_open;
    double b_replies, b_started;
    static char metrics[1 << 20];
    ow_counts counts;
    char reply_topic[256];
    (void)state;
    /* One of the reply topics sagad reads (one per service). */
    snprintf(reply_topic, sizeof reply_topic, "%sreply.payment", prefix);

    /* Wave 0: all three share the load, once the reply group has given
     * each its partitions (joins within the first seconds rebalance it). */
    assert_int_equal(it_wait_group("sagad", reply_topic, 3, 60000), 0);
    ow_start_wave(db, defs, prefix, per, 0);
    sleep_ms(1500);
    /* b has applied replies of wave 0 before it is killed in wave 1. */
    for (int i = 0; i < 100; i++) {
        assert_int_equal(scrape_b(metrics, sizeof metrics), 0);
        if (family_sum(metrics, "saga_replies_total") > 0)
            break;
        sleep_ms(200);
    }
    /* Wave 1, then b dies for good in the middle of it. */
    ow_start_wave(db, defs, prefix, per, 1);
    sleep_ms(100);
    /* What b had done by now (its counters die with it). */
    assert_int_equal(scrape_b(metrics, sizeof metrics), 0);
    b_replies = family_sum(metrics, "saga_replies_total");
    b_started = family_sum(metrics, "saga_sagas_started_total");
    it_kill9(&sagad[1]);
    killed_at = now_ms();
    in_flight = unfinished();
    /* Commands b committed and Kafka had not confirmed: their sagas wait
     * for another instance to take them over once the lease runs out. */
    it_exec(db, "CREATE TEMP TABLE held_by_b AS SELECT DISTINCT saga_id FROM saga.outbox"
                " WHERE claimed_by = 'b'");
    held_by_b = it_int(db, "SELECT count(*) FROM held_by_b", 0, NULL);
    print_message("killed sagad b (it had applied %.0f replies and started %.0f sagas)"
                  " with %lld sagas unfinished, %lld of them with commands b held\n",
                  b_replies, b_started, in_flight, held_by_b);
    assert_true(b_replies > 0);
    assert_true(in_flight > 0);
    /* Wave 2 while c is killed and restarted under its name. */
    ow_start_wave(db, defs, prefix, per, 2);
    sleep_ms(100);
    it_kill9(&sagad[2]);
    sleep_ms(500);
    start_sagad(2);
    /* Wave 3 once the restarted c has its share of the reply partitions
     * (b is gone: two members). */
    assert_int_equal(it_wait_group("sagad", reply_topic, 2, 60000), 0);
    ow_start_wave(db, defs, prefix, per, 3);
    assert_int_equal(ow_wait_all(db, prefix, 120), 0);
    done_at = now_ms();
    print_message("all sagas ended %.1f s after sagad b was killed (session timeout 6 s,"
                  " outbox lease 3 s; includes waiting for the group before wave 3)\n",
                  (double)(done_at - killed_at) / 1000.0);
    ow_check(db, prefix, per * 4, &counts);
    held_open =
        it_int(db,
               "SELECT count(*) FROM held_by_b h JOIN saga.saga s ON s.id = h.saga_id"
               " WHERE s.status NOT IN ('completed', 'compensated')",
               0, NULL);
    assert_int_equal(held_open, 0);
    assert_true(counts.completed > 0);
    assert_true(counts.compensated > 0);
    /* Stop the survivors to read their figures: both did work. */
    assert_int_equal(it_stop(&sagad[0]), 0);
    assert_int_equal(it_stop(&sagad[2]), 0);
    applied_a = ow_sum_stat("inst-sagad-a-*.log", "replies applied");
    applied_c = ow_sum_stat("inst-sagad-c-2.log", "replies applied");
    print_message("replies applied: a %lld, c after its restart %lld\n", applied_a,
                  applied_c);
    assert_true(applied_a > 0);
    assert_true(applied_c > 0);
    saga_defs_free(defs);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_instances_share_and_take_over),
    };
    return cmocka_run_group_tests_name("several sagad instances (PostgreSQL + Kafka)",
                                       tests, setup, teardown);
}
