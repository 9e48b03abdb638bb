/* The order saga end to end against a real PostgreSQL and a real Kafka
 * broker: sagad and the three example participants run as processes.
 * Asserts final statuses, the order in which participants handled the
 * commands (from their barrier tables), and their business state. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "harness.h"

static it_proc procs[4];
static PGconn *db;
static const char *prefix;

static int group_setup(void **state)
{
    static const char *const services[] = {"order", "payment", "inventory"};
    const char *migrate[] = {"migrate", "--dir", "migrations", NULL};
    char out[256];
    (void)state;
    it_isolate_db("order");

    it_env("SAGA_KAFKA_BROKERS");
    prefix = strdup(it_prefix("order"));
    /* sagactl start, sagad and the services must agree on it. */
    setenv("SAGA_TOPIC_PREFIX", prefix, 1);
    if (it_sagactl(out, sizeof out, migrate) != 0) {
        fprintf(stderr, "sagactl migrate failed: %s\n", out);
        return -1;
    }
    db = it_db();
    for (int i = 0; i < 3; i++) {
        char prog[64];
        const char *args[] = {NULL};
        snprintf(prog, sizeof prog, "%s-service", services[i]);
        if (it_spawn(&procs[i], services[i], prog, args) != 0 ||
            it_wait_log(&procs[i], "ready", 60000) != 0)
            return -1;
    }
    /* Seed after the services created their tables. */
    it_exec_file(db, "examples/seed.sql");
    {
        const char *args[] = {"--definitions", "sagas", NULL};
        if (it_spawn(&procs[3], "sagad", "sagad", args) != 0 ||
            it_wait_log(&procs[3], "sagad running", 60000) != 0)
            return -1;
    }
    return 0;
}

/* cmocka prints a failed group teardown but does not count it in its exit
 * code, so main adds it: an unclean stop fails the program. */
static int unclean_stop;

static int group_teardown(void **state)
{
    int rc = 0;
    (void)state;
    /* Graceful stops must succeed: a crash here is a bug. */
    for (int i = 3; i >= 0; i--)
        if (procs[i].pid > 0 && it_stop(&procs[i]) != 0) {
            fprintf(stderr, "%s did not exit cleanly on SIGTERM\n", procs[i].name);
            rc = -1;
            unclean_stop = 1;
        }
    PQfinish(db);
    free((void *)prefix);
    return rc;
}

static char *start_saga(const char *saga, const char *customer, const char *sku, int qty,
                        long amount)
{
    char input[256], out[128];
    const char *args[] = {"start", saga, "--input", input, NULL};
    snprintf(input, sizeof input,
             "{\"customer_id\":\"%s\",\"sku\":\"%s\",\"quantity\":%d,\"amount\":%ld}",
             customer, sku, qty, amount);
    assert_int_equal(it_sagactl(out, sizeof out, args), 0);
    assert_int_equal(strlen(out), 36);
    return strdup(out);
}

static char *start_order(const char *customer, const char *sku, int qty, long amount)
{
    return start_saga("order", customer, sku, qty, amount);
}

/* "svc:phase:step,..." in the order the participants handled them. */
static char *handled_order(const char *id)
{
    const char *p[1] = {id};
    return it_value(
        db,
        "SELECT string_agg(svc || ':' || phase || ':' || step, ',' ORDER BY at) FROM ("
        " SELECT 'order' AS svc, phase, step, created_at AS at, outcome"
        "  FROM orders.saga_barrier WHERE saga_id = $1"
        " UNION ALL SELECT 'payment', phase, step, created_at, outcome"
        "  FROM payment.saga_barrier WHERE saga_id = $1"
        " UNION ALL SELECT 'inventory', phase, step, created_at, outcome"
        "  FROM inventory.saga_barrier WHERE saga_id = $1) x"
        " WHERE outcome <> 'blocked'",
        1, p);
}

static long long reserved_credit(const char *customer)
{
    const char *p[1] = {customer};
    return it_int(db, "SELECT reserved FROM payment.customers WHERE id = $1", 1, p);
}

static long long available_stock(const char *sku)
{
    const char *p[1] = {sku};
    return it_int(db, "SELECT available FROM inventory.stock WHERE sku = $1", 1, p);
}

static char *order_status(const char *saga_id)
{
    const char *p[1] = {saga_id};
    return it_value(db, "SELECT status FROM orders.orders WHERE saga_id = $1", 1, p);
}

static void test_order_completes(void **state)
{
    long long credit0 = reserved_credit("alice"), stock0 = available_stock("widget");
    char *id, *order, *st;
    (void)state;

    id = start_order("alice", "widget", 2, 1500);
    assert_string_equal(it_wait_final(db, id, 60000), "completed");
    order = handled_order(id);
    assert_string_equal(
        order, "order:invoke:0,payment:invoke:1,inventory:invoke:2,order:invoke:3");
    st = order_status(id);
    assert_string_equal(st, "approved");
    assert_int_equal(reserved_credit("alice"), credit0 + 1500);
    assert_int_equal(available_stock("widget"), stock0 - 2);
    free(st);
    free(order);
    free(id);
}

static void test_failure_at_second_step(void **state)
{
    long long credit0 = reserved_credit("bob"), stock0 = available_stock("widget");
    char *id, *order, *st;
    (void)state;

    /* bob's credit limit is 500: reserve_credit fails definitively. */
    id = start_order("bob", "widget", 1, 1000);
    assert_string_equal(it_wait_final(db, id, 60000), "compensated");
    order = handled_order(id);
    assert_string_equal(order, "order:invoke:0,payment:invoke:1,order:compensate:0");
    st = order_status(id);
    assert_string_equal(st, "cancelled");
    assert_int_equal(reserved_credit("bob"), credit0);
    assert_int_equal(available_stock("widget"), stock0);
    free(st);
    free(order);
    free(id);
}

static void test_failure_at_third_step(void **state)
{
    long long credit0 = reserved_credit("alice"), stock0 = available_stock("gadget");
    char *id, *order, *st;
    (void)state;

    /* One gadget in stock, five ordered: reserve_stock fails; credit is
     * released, then the order cancelled (reverse order). */
    id = start_order("alice", "gadget", 5, 700);
    assert_string_equal(it_wait_final(db, id, 60000), "compensated");
    order = handled_order(id);
    assert_string_equal(order, "order:invoke:0,payment:invoke:1,inventory:invoke:2,"
                               "payment:compensate:1,order:compensate:0");
    st = order_status(id);
    assert_string_equal(st, "cancelled");
    assert_int_equal(reserved_credit("alice"), credit0);
    assert_int_equal(available_stock("gadget"), stock0);
    {
        /* The saga's own record agrees: steps compensated in reverse. */
        const char *p[1] = {id};
        char *steps =
            it_value(db,
                     "SELECT string_agg(name || '=' || status, ',' ORDER BY idx)"
                     " FROM saga.saga_step WHERE saga_id = $1",
                     1, p);
        assert_string_equal(steps, "create_order=compensated,reserve_credit=compensated,"
                                   "reserve_stock=failed,approve_order=pending");
        free(steps);
    }
    free(st);
    free(order);
    free(id);
}

/* Credit and stock reserved at the same time (sagas/order_parallel.json). */
static void test_parallel_group(void **state)
{
    long long credit0 = reserved_credit("alice"), gadget0 = available_stock("gadget");
    long long widget0 = available_stock("widget");
    char *ok, *no, *st;
    const char *p[1];
    (void)state;
    ok = start_saga("order_parallel", "alice", "widget", 1, 300);
    assert_string_equal(it_wait_final(db, ok, 60000), "completed");
    assert_int_equal(reserved_credit("alice"), credit0 + 300);
    assert_int_equal(available_stock("widget"), widget0 - 1);
    /* Both members were sent before either answered. */
    p[0] = ok;
    assert_int_equal(
        it_int(db,
               "SELECT count(*) FROM saga.saga_event a JOIN saga.saga_event b"
               " ON a.saga_id = b.saga_id WHERE a.saga_id = $1"
               " AND a.kind = 'step_dispatched' AND a.step = 1"
               " AND b.kind = 'step_dispatched' AND b.step = 2 AND a.at = b.at",
               1, p),
        1);
    /* Stock runs out: the credit reserved in parallel is released, the order
     * cancelled. */
    no = start_saga("order_parallel", "alice", "gadget", 5, 400);
    assert_string_equal(it_wait_final(db, no, 60000), "compensated");
    assert_int_equal(reserved_credit("alice"), credit0 + 300);
    assert_int_equal(available_stock("gadget"), gadget0);
    st = order_status(no);
    assert_string_equal(st, "cancelled");
    p[0] = no;
    {
        char *steps =
            it_value(db,
                     "SELECT string_agg(name || '=' || status, ',' ORDER BY idx)"
                     " FROM saga.saga_step WHERE saga_id = $1",
                     1, p);
        /* reserve_credit ran (compensated) or never acted (unknown, compensated
         * as a no-op): either way it ends compensated. */
        assert_string_equal(steps, "create_order=compensated,reserve_credit=compensated,"
                                   "reserve_stock=failed,approve_order=pending");
        free(steps);
    }
    free(st);
    free(ok);
    free(no);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_order_completes),
        cmocka_unit_test(test_failure_at_second_step),
        cmocka_unit_test(test_failure_at_third_step),
        cmocka_unit_test(test_parallel_group),
    };
    int failed = cmocka_run_group_tests_name("order saga (PostgreSQL + Kafka)", tests,
                                             group_setup, group_teardown);
    return failed != 0 || unclean_stop ? 1 : 0;
}
