/* sagactl against a real PostgreSQL and Kafka with sagad and the example
 * participants running: the on-call story (payment down, a compensation
 * gives up, the saga is stuck, the service comes back, an operator retries
 * it), and each repair and finding command, including their refusals. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>
#include <jansson.h>

#include "harness.h"

enum { ORDER, PAYMENT, INVENTORY };
static const char *const names[] = {"order", "payment", "inventory"};
static it_proc svc[3], sagad;
static int starts[3];
static PGconn *db;
static char *prefix;
static char out[65536];

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static void start_service(int i)
{
    char prog[64], name[64];
    const char *args[] = {NULL};
    snprintf(prog, sizeof prog, "%s-service", names[i]);
    snprintf(name, sizeof name, "ctl-%s-%d", names[i], ++starts[i]);
    /* Inventory is slow (1.5 s, under the 2 s timeout): time to act. */
    if (i == INVENTORY)
        setenv("SAGA_EXAMPLE_DELAY_MS", "1500", 1);
    assert_int_equal(it_spawn(&svc[i], name, prog, args), 0);
    unsetenv("SAGA_EXAMPLE_DELAY_MS");
    assert_int_equal(it_wait_log(&svc[i], "ready", 60000), 0);
}

static int setup(void **state)
{
    const char *migrate[] = {"migrate", "--dir", "migrations", NULL};
    const char *args[] = {"--definitions", "tests/integration/oncall_sagas", NULL};
    (void)state;
    it_isolate_db("ctl");
    prefix = strdup(it_prefix("ctl"));
    setenv("SAGA_TOPIC_PREFIX", prefix, 1);
    if (it_sagactl(NULL, 0, migrate) != 0)
        return -1;
    db = it_db();
    for (int i = 0; i < 3; i++)
        start_service(i);
    it_exec_file(db, "examples/seed.sql");
    it_exec(db, "UPDATE inventory.stock SET available = 1000 WHERE sku = 'widget'");
    if (it_spawn(&sagad, "ctl-sagad", "sagad", args) != 0 ||
        it_wait_log(&sagad, "sagad running", 60000) != 0)
        return -1;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    it_stop(&sagad);
    for (int i = 0; i < 3; i++)
        if (svc[i].pid > 0)
            it_stop(&svc[i]);
    PQfinish(db);
    free(prefix);
    return 0;
}

static char *start(const char *sku, int qty)
{
    char input[256], id[128];
    const char *args[] = {"start", "oncall_order", "--input", input, NULL};
    snprintf(input, sizeof input,
             "{\"customer_id\":\"alice\",\"sku\":\"%s\",\"quantity\":%d,\"amount\":700}",
             sku, qty);
    assert_int_equal(it_sagactl(id, sizeof id, args), 0);
    assert_int_equal(strlen(id), 36);
    return strdup(id);
}

/* Wait until step idx of saga id has status want (or fail after 30 s). */
static void wait_step(const char *id, int idx, const char *want)
{
    char ibuf[16];
    const char *p[2] = {id, ibuf};
    snprintf(ibuf, sizeof ibuf, "%d", idx);
    for (int i = 0; i < 300; i++) {
        char *st = it_value(
            db, "SELECT status FROM saga.saga_step WHERE saga_id = $1 AND idx = $2", 2,
            p);
        int done = st != NULL && strcmp(st, want) == 0;
        free(st);
        if (done)
            return;
        sleep_ms(100);
    }
    fail_msg("step %d of %s never became %s", idx, id, want);
}

static long long reserved(void)
{
    return it_int(db, "SELECT reserved FROM payment.customers WHERE id = 'alice'", 0,
                  NULL);
}

/* Get saga id stuck: its credit reservation cannot be released because
 * the payment service is down when the compensation runs. */
static char *make_stuck_saga(void)
{
    char *id = start("gadget", 5); /* 1 in stock: reserve_stock fails */
    wait_step(id, 1, "succeeded");
    /* The payment service goes down; inventory answers `failed` 1.5 s later. */
    assert_int_equal(it_stop(&svc[PAYMENT]), 0);
    assert_string_equal(it_wait_final(db, id, 60000), "failed");
    return id;
}

static void test_oncall_story(void **state)
{
    long long before = reserved();
    char *id, line[700];
    const char *stuck[] = {"stuck", NULL};
    const char *stuck_json[] = {"stuck", "--json", NULL};
    const char *history[] = {"history", NULL, "--json", NULL};
    json_t *rows, *events, *ev;
    size_t i;
    int saw_failed = 0, saw_retry = 0;
    (void)state;

    id = make_stuck_saga();
    /* sagactl stuck shows it, with the reason. */
    assert_int_equal(it_sagactl_all(out, sizeof out, 0, stuck), 1);
    assert_non_null(strstr(out, id));
    assert_non_null(
        strstr(out, "compensation of reserve_credit gave up after 2 attempt(s)"));
    assert_int_equal(it_sagactl_all(out, sizeof out, 0, stuck_json), 1);
    rows = json_loads(out, 0, NULL);
    assert_true(json_is_array(rows));
    json_array_foreach(rows, i, ev)
    {
        if (strcmp(json_string_value(json_object_get(ev, "id")), id) == 0) {
            assert_string_equal(json_string_value(json_object_get(ev, "step")),
                                "reserve_credit");
            assert_string_equal(json_string_value(json_object_get(ev, "step_status")),
                                "compensation_failed");
            assert_string_equal(
                json_string_value(json_object_get(json_object_get(ev, "error"), "code")),
                "timeout");
        }
    }
    json_decref(rows);
    assert_int_equal(reserved(), before + 700); /* money still reserved */

    /* The service comes back; the operator retries. */
    start_service(PAYMENT);
    {
        const char *retry[] = {"retry",        id,  "--reason", "payment is back", "--as",
                               "oncall-alice", NULL};
        assert_int_equal(it_sagactl_all(line, sizeof line, 0, retry), 0);
        assert_non_null(strstr(line, "compensating"));
    }
    assert_string_equal(it_wait_final(db, id, 60000), "compensated");
    assert_int_equal(reserved(), before);
    {
        const char *p[1] = {id};
        char *st =
            it_value(db, "SELECT status FROM orders.orders WHERE saga_id = $1", 1, p);
        assert_string_equal(st, "cancelled");
        free(st);
    }
    /* The history tells the whole story, operator and reason included. */
    history[1] = id;
    assert_int_equal(it_sagactl_all(out, sizeof out, 0, history), 0);
    events = json_loads(out, 0, NULL);
    assert_true(json_is_array(events));
    json_array_foreach(events, i, ev)
    {
        const char *kind = json_string_value(json_object_get(ev, "kind"));
        if (strcmp(kind, "saga_failed") == 0) {
            saw_failed = 1;
            assert_int_equal(json_integer_value(json_object_get(
                                 json_object_get(ev, "detail"), "attempts")),
                             2);
        }
        if (strcmp(kind, "operator_retry") == 0) {
            saw_retry = 1;
            assert_string_equal(json_string_value(json_object_get(ev, "actor")),
                                "operator:oncall-alice");
            assert_string_equal(json_string_value(json_object_get(
                                    json_object_get(ev, "detail"), "reason")),
                                "payment is back");
        }
    }
    assert_true(saw_failed);
    assert_true(saw_retry);
    assert_string_equal(json_string_value(json_object_get(
                            json_array_get(events, json_array_size(events) - 1), "kind")),
                        "saga_compensated");
    json_decref(events);
    /* Nothing is stuck any more (of this run). */
    assert_int_equal(it_sagactl_all(out, sizeof out, 0, stuck), 0);
    free(id);
}

static void test_resolve(void **state)
{
    char *id = make_stuck_saga();
    const char *resolve[] = {"resolve", id,    "--reason", "released by hand in the PSP",
                             "--as",    "bob", NULL};
    const char *no_reason[] = {"resolve", id, NULL};
    (void)state;
    start_service(PAYMENT);
    assert_int_equal(it_sagactl_all(out, sizeof out, 1, no_reason), 2);
    assert_non_null(strstr(out, "--reason is required"));
    assert_int_equal(it_sagactl_all(out, sizeof out, 1, resolve), 0);
    assert_string_equal(it_wait_final(db, id, 1000),
                        "timeout"); /* resolved is not those */
    {
        const char *p[1] = {id};
        char *st = it_value(db, "SELECT status FROM saga.saga WHERE id = $1", 1, p);
        assert_string_equal(st, "resolved");
        free(st);
    }
    /* Twice is refused, with the reason. */
    assert_int_equal(it_sagactl_all(out, sizeof out, 1, resolve), 1);
    assert_non_null(strstr(out, "only a failed saga can be resolved"));
    /* Give the money back by hand as the operator said, for the next tests. */
    it_exec(
        db,
        "UPDATE payment.customers SET reserved = (SELECT coalesce(sum(amount), 0)"
        " FROM payment.reservations WHERE customer_id = 'alice' AND status = 'reserved')"
        " WHERE id = 'alice'");
    free(id);
}

static void test_compensate_running_saga(void **state)
{
    long long before = reserved();
    char *id = start("widget", 1);
    const char *comp[] = {"compensate", id, "--reason", "customer called to cancel",
                          NULL};
    (void)state;
    wait_step(id, 2, "dispatched"); /* inventory takes 1.5 s */
    assert_int_equal(it_sagactl_all(out, sizeof out, 1, comp), 0);
    assert_string_equal(it_wait_final(db, id, 60000), "compensated");
    assert_int_equal(reserved(), before);
    {
        const char *p[1] = {id};
        assert_int_equal(it_int(db,
                                "SELECT count(*) FROM inventory.reservations"
                                " WHERE status = 'reserved' AND saga_id = $1",
                                1, p),
                         0);
    }
    /* A finished saga cannot be compensated. */
    assert_int_equal(it_sagactl_all(out, sizeof out, 1, comp), 1);
    assert_non_null(strstr(out, "refused"));
    free(id);
}

static void test_skip_forward(void **state)
{
    char *id;
    const char *skip[] = {"skip",     NULL,
                          "--step",   "reserve_credit",
                          "--output", "{\"reservation_id\":\"manual-77\"}",
                          "--reason", "reserved by phone",
                          NULL};
    const char *wrong[] = {"skip",     NULL, "--step", "approve_order",
                           "--reason", "x",  NULL};
    const char *nostep[] = {"skip", NULL, "--step", "nope", "--reason", "x", NULL};
    (void)state;
    assert_int_equal(it_stop(&svc[PAYMENT]), 0);
    id = start("widget", 1);
    skip[1] = wrong[1] = nostep[1] = id;
    wait_step(id, 1, "dispatched");
    assert_int_equal(it_sagactl_all(out, sizeof out, 1, wrong), 1);
    assert_non_null(strstr(out, "only the saga's current step"));
    assert_int_equal(it_sagactl_all(out, sizeof out, 1, nostep), 1);
    assert_non_null(strstr(out, "has no step \"nope\""));
    assert_int_equal(it_sagactl_all(out, sizeof out, 1, skip), 0);
    assert_string_equal(it_wait_final(db, id, 60000), "completed");
    {
        const char *p[1] = {id};
        char *st = it_value(db,
                            "SELECT status || ' ' || (output->>'reservation_id') FROM"
                            " saga.saga_step WHERE saga_id = $1 AND idx = 1",
                            1, p);
        assert_string_equal(st, "skipped manual-77");
        free(st);
    }
    start_service(PAYMENT);
    /* A finished saga: refused. */
    skip[3] = "approve_order";
    assert_int_equal(it_sagactl_all(out, sizeof out, 1, skip), 1);
    free(id);
}

static void test_show_and_wait(void **state)
{
    char *id = start("widget", 1);
    const char *wait[] = {"wait", NULL, "--timeout", "60s", NULL};
    const char *wait_json[] = {"wait", NULL, "--json", NULL};
    const char *show[] = {"show", NULL, NULL};
    const char *show_json[] = {"show", NULL, "--json", NULL};
    const char *unknown[] = {"show", "00000000-0000-4000-8000-000000000000", NULL};
    json_t *j, *steps;
    (void)state;
    wait[1] = wait_json[1] = show[1] = show_json[1] = id;
    assert_int_equal(it_sagactl_all(out, sizeof out, 0, wait), 0);
    assert_string_equal(out, "completed\n");
    assert_int_equal(it_sagactl_all(out, sizeof out, 0, wait_json), 0);
    j = json_loads(out, 0, NULL);
    assert_string_equal(json_string_value(json_object_get(j, "status")), "completed");
    json_decref(j);
    assert_int_equal(it_sagactl_all(out, sizeof out, 0, show), 0);
    assert_non_null(strstr(out, "oncall_order (version 1)"));
    assert_non_null(strstr(out, "approve_order"));
    assert_int_equal(it_sagactl_all(out, sizeof out, 0, show_json), 0);
    j = json_loads(out, 0, NULL);
    assert_string_equal(json_string_value(json_object_get(j, "status")), "completed");
    steps = json_object_get(j, "steps");
    assert_int_equal(json_array_size(steps), 4);
    assert_string_equal(
        json_string_value(json_object_get(json_array_get(steps, 1), "name")),
        "reserve_credit");
    assert_int_equal(
        json_integer_value(json_object_get(json_array_get(steps, 1), "attempts")), 1);
    assert_true(json_is_object(json_object_get(json_array_get(steps, 1), "output")));
    json_decref(j);
    assert_int_equal(it_sagactl_all(out, sizeof out, 1, unknown), 1);
    assert_non_null(strstr(out, "no saga"));
    free(id);
}

static void test_finding_and_errors(void **state)
{
    const char *list[] = {"list",   "--saga", "oncall_order", "--since", "1h",
                          "--json", NULL};
    const char *older[] = {"list", "--older-than", "1h", "--saga", "oncall_order", NULL};
    const char *stats[] = {"stats", "--json", NULL};
    const char *stats_h[] = {"stats", NULL};
    const char *bad_dur[] = {"list", "--since", "yesterday", NULL};
    const char *bad_cmd[] = {"frobnicate", NULL};
    const char *unreachable[] = {"--db", "postgresql://saga@127.0.0.1:1/saga", "list",
                                 NULL};
    json_t *j;
    (void)state;
    assert_int_equal(it_sagactl_all(out, sizeof out, 0, list), 0);
    j = json_loads(out, 0, NULL);
    assert_true(json_array_size(j) >= 4);
    json_decref(j);
    assert_int_equal(it_sagactl_all(out, sizeof out, 0, older), 0);
    assert_non_null(strstr(out, "(no sagas)"));
    assert_int_equal(it_sagactl_all(out, sizeof out, 0, stats), 0);
    j = json_loads(out, 0, NULL);
    assert_true(json_integer_value(json_object_get(json_object_get(j, "by_definition"),
                                                   "oncall_order")) == 0);
    assert_true(json_integer_value(json_object_get(
                    json_object_get(json_object_get(j, "by_definition"), "oncall_order"),
                    "resolved")) >= 1);
    assert_true(json_integer_value(
                    json_object_get(json_object_get(j, "started"), "last_hour")) >= 4);
    json_decref(j);
    assert_int_equal(it_sagactl_all(out, sizeof out, 0, stats_h), 0);
    assert_non_null(strstr(out, "oncall_order"));
    assert_int_equal(it_sagactl_all(out, sizeof out, 1, bad_dur), 2);
    assert_non_null(strstr(out, "--since needs a duration"));
    assert_int_equal(it_sagactl_all(out, sizeof out, 1, bad_cmd), 2);
    assert_int_equal(it_sagactl_all(out, sizeof out, 1, unreachable), 3);
    assert_non_null(strstr(out, "cannot reach the database"));
    /* A database without the schema: a clear message, exit 3. */
    it_exec(db, "DROP DATABASE IF EXISTS saga_unmigrated");
    it_exec(db, "CREATE DATABASE saga_unmigrated");
    {
        char url[512];
        const char *args[] = {"--db", url, "list", NULL};
        const char *base = it_env("SAGA_PG_URL");
        const char *slash = strrchr(base, '/');
        snprintf(url, sizeof url, "%.*s/saga_unmigrated", (int)(slash - base), base);
        assert_int_equal(it_sagactl_all(out, sizeof out, 1, args), 3);
        assert_non_null(strstr(out, "sagactl migrate"));
    }
    it_exec(db, "DROP DATABASE saga_unmigrated");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_oncall_story),
        cmocka_unit_test(test_resolve),
        cmocka_unit_test(test_compensate_running_saga),
        cmocka_unit_test(test_skip_forward),
        cmocka_unit_test(test_show_and_wait),
        cmocka_unit_test(test_finding_and_errors),
    };
    return cmocka_run_group_tests_name("sagactl with sagad running (PostgreSQL + Kafka)",
                                       tests, setup, teardown);
}
