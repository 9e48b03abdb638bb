/* A saga whose stored definition cannot be loaded must not stall the sagas
 * that share its batch: sagad sets it aside (timer cleared, the reason in
 * its history) and carries on with the others. Real PostgreSQL and Kafka;
 * no participant runs, so timers are what moves the sagas. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"

static PGconn *db;
static char both[256], only_parallel[256];

static int setup(void **state)
{
    const char *migrate[] = {"migrate", "--dir", "migrations", NULL};
    char cmd[2048];
    (void)state;
    it_isolate_db("set_aside");
    setenv("SAGA_TOPIC_PREFIX", it_prefix("set_aside"), 1);
    if (it_sagactl(NULL, 0, migrate) != 0)
        return -1;
    snprintf(both, sizeof both, "%s/tests/set-aside-%ld-both", it_env("SAGA_BUILD_DIR"),
             (long)getpid());
    snprintf(only_parallel, sizeof only_parallel, "%s/tests/set-aside-%ld-parallel",
             it_env("SAGA_BUILD_DIR"), (long)getpid());
    snprintf(
        cmd, sizeof cmd,
        "mkdir -p '%s' '%s' && cp sagas/order.json sagas/order_parallel.json '%s' && "
        "cp sagas/order_parallel.json '%s'",
        both, only_parallel, both, only_parallel);
    if (system(cmd) != 0)
        return -1;
    db = it_db();
    return 0;
}

static int teardown(void **state)
{
    char cmd[1024];
    (void)state;
    PQfinish(db);
    snprintf(cmd, sizeof cmd, "rm -rf '%s' '%s'", both, only_parallel);
    return system(cmd) == 0 ? 0 : -1;
}

static char *start(const char *saga)
{
    char out[128];
    const char *args[] = {"start", saga, "--input",
                          "{\"customer_id\":\"alice\",\"sku\":\"widget\",\"quantity\":1,"
                          "\"amount\":100}",
                          NULL};
    assert_int_equal(it_sagactl(out, sizeof out, args), 0);
    assert_int_equal(strlen(out), 36);
    return strdup(out);
}

static long long attempts(const char *id)
{
    const char *p[1] = {id};
    return it_int(db, "SELECT max(attempts) FROM saga.saga_step WHERE saga_id = $1", 1,
                  p);
}

static void test_unloadable_definition_does_not_stall_the_batch(void **state)
{
    it_proc sagad;
    char *a, *b, *why;
    const char *p[1];
    int waited = 0;
    (void)state;

    {
        const char *args[] = {"--definitions", both, NULL};
        assert_int_equal(it_spawn(&sagad, "set-aside-sagad-1", "sagad", args), 0);
        assert_int_equal(it_wait_log(&sagad, "sagad running", 60000), 0);
    }
    a = start("order");
    b = start("order_parallel");
    /* Both dispatched their first command (nobody answers). */
    while ((attempts(a) < 1 || attempts(b) < 1) && waited++ < 100)
        usleep(100 * 1000);
    assert_int_equal(attempts(a), 1);
    assert_int_equal(attempts(b), 1);
    assert_int_equal(it_stop(&sagad), 0);

    /* order's stored body is damaged beyond what the engine can run; the
     * restarted sagad has no order.json to deploy it again. Both sagas'
     * steps are due, so one timer batch claims them together. */
    it_exec(db,
            "UPDATE saga.saga_definition SET body = '{\"name\":\"order\",\"steps\":[]}'"
            " WHERE name = 'order'");
    it_exec(db, "UPDATE saga.saga_step SET due_at = now() - interval '1 second'"
                " WHERE awaiting");
    it_exec(db, "UPDATE saga.saga SET wake_at = now() - interval '1 second'");
    {
        const char *args[] = {"--definitions", only_parallel, NULL};
        assert_int_equal(it_spawn(&sagad, "set-aside-sagad-2", "sagad", args), 0);
        assert_int_equal(it_wait_log(&sagad, "sagad running", 60000), 0);
    }
    /* The good saga moves on: its timed-out members are sent again. */
    waited = 0;
    while (attempts(b) < 2 && waited++ < 100)
        usleep(100 * 1000);
    assert_true(attempts(b) >= 2);
    assert_int_equal(it_wait_log(&sagad, "saga(s) set aside", 10000), 0);
    /* The damaged one is set aside: unchanged, its timer cleared, the reason
     * in its history. */
    p[0] = a;
    assert_int_equal(attempts(a), 1);
    assert_int_equal(
        it_int(db,
               "SELECT count(*) FROM saga.saga WHERE id = $1 AND wake_at IS NULL"
               " AND status = 'running'",
               1, p),
        1);
    why = it_value(db,
                   "SELECT detail->>'error' FROM saga.saga_event WHERE saga_id = $1"
                   " AND kind = 'definition_unavailable' ORDER BY id LIMIT 1",
                   1, p);
    assert_non_null(why);
    assert_non_null(strstr(why, "stored definition order version 1 is invalid"));
    /* Set aside once: no timer claims it again. */
    sleep(2);
    assert_int_equal(it_int(db,
                            "SELECT count(*) FROM saga.saga_event WHERE saga_id = $1"
                            " AND kind = 'definition_unavailable'",
                            1, p),
                     1);
    assert_int_equal(it_stop(&sagad), 0);
    free(why);
    free(a);
    free(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_unloadable_definition_does_not_stall_the_batch),
    };
    return cmocka_run_group_tests_name("set aside (PostgreSQL + Kafka)", tests, setup,
                                       teardown);
}
