/* libsaga's client API against a real PostgreSQL and Kafka, with sagad and
 * the example participants running: start (idempotent with a key), status,
 * wait, a request for an unknown saga, and misuse. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "harness.h"
#include "saga/saga.h"

static it_proc procs[4];
static saga_client *client;

static int setup(void **state)
{
    static const char *const services[] = {"order", "payment", "inventory"};
    const char *migrate[] = {"migrate", "--dir", "migrations", NULL};
    const char *sagad_args[] = {"--definitions", "sagas", NULL};
    saga_error err = {0};
    PGconn *db;
    (void)state;
    it_isolate_db("client");
    setenv("SAGA_TOPIC_PREFIX", it_prefix("client"), 1);
    if (it_sagactl(NULL, 0, migrate) != 0)
        return -1;
    for (int i = 0; i < 3; i++) {
        char prog[64], name[64];
        const char *args[] = {NULL};
        snprintf(prog, sizeof prog, "%s-service", services[i]);
        snprintf(name, sizeof name, "client-%s", services[i]);
        if (it_spawn(&procs[i], name, prog, args) != 0 ||
            it_wait_log(&procs[i], "ready", 60000) != 0)
            return -1;
    }
    db = it_db();
    it_exec_file(db, "examples/seed.sql");
    PQfinish(db);
    if (it_spawn(&procs[3], "client-sagad", "sagad", sagad_args) != 0 ||
        it_wait_log(&procs[3], "sagad running", 60000) != 0)
        return -1;
    if (saga_client_new(it_env("SAGA_PG_URL"), &client, &err) != SAGA_OK) {
        fprintf(stderr, "client: %s\n", err.message);
        return -1;
    }
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    saga_client_free(client);
    for (int i = 3; i >= 0; i--)
        it_stop(&procs[i]);
    return 0;
}

static void test_start_wait_idempotent(void **state)
{
    json_t *input = json_pack("{s:s, s:s, s:i, s:i}", "customer_id", "alice", "sku",
                              "widget", "quantity", 1, "amount", 250);
    char a[SAGA_ID_LEN + 1], b[SAGA_ID_LEN + 1], c[SAGA_ID_LEN + 1], status[32];
    saga_error err = {0};
    int existed = -1;
    (void)state;
    assert_int_equal(
        saga_client_start(client, "order", input, "client-order-1", a, &existed, &err),
        SAGA_OK);
    assert_int_equal(existed, 0);
    assert_int_equal(
        saga_client_start(client, "order", input, "client-order-1", b, &existed, &err),
        SAGA_OK);
    assert_int_equal(existed, 1);
    assert_string_equal(a, b);
    assert_int_equal(saga_client_start(client, "order", input, NULL, c, NULL, &err),
                     SAGA_OK);
    assert_string_not_equal(a, c);
    assert_int_equal(saga_client_wait(client, a, 60000, status, &err), SAGA_OK);
    assert_string_equal(status, "completed");
    assert_int_equal(saga_client_wait(client, c, 60000, status, &err), SAGA_OK);
    assert_string_equal(status, "completed");
    /* Asking again later still gives the same saga, not a new one. */
    assert_int_equal(
        saga_client_start(client, "order", input, "client-order-1", b, &existed, &err),
        SAGA_OK);
    assert_string_equal(a, b);
    assert_int_equal(existed, 1);
    json_decref(input);
}

static void test_unknown_saga_is_rejected(void **state)
{
    char id[SAGA_ID_LEN + 1], status[32];
    saga_error err = {0};
    (void)state;
    assert_int_equal(
        saga_client_start(client, "no_such_saga", NULL, NULL, id, NULL, &err), SAGA_OK);
    assert_int_equal(saga_client_wait(client, id, 30000, status, &err), SAGA_OK);
    assert_string_equal(status, "rejected");
    assert_non_null(strstr(err.message, "no_such_saga"));
}

static void test_status_and_misuse(void **state)
{
    char id[SAGA_ID_LEN + 1], status[32];
    saga_error err = {0};
    saga_client *bad = NULL;
    json_t *arr = json_array();
    (void)state;
    assert_int_equal(
        saga_client_status(client, "00000000-0000-4000-8000-000000000000", status, &err),
        SAGA_ENOTFOUND);
    assert_int_equal(saga_client_status(client, "not-a-uuid", status, &err), SAGA_EINVAL);
    assert_non_null(strstr(err.message, "not a saga id"));
    assert_int_equal(saga_client_start(client, NULL, NULL, NULL, id, NULL, &err),
                     SAGA_EINVAL);
    assert_int_equal(saga_client_start(client, "order", arr, NULL, id, NULL, &err),
                     SAGA_EINVAL);
    assert_int_equal(saga_client_start(NULL, "order", NULL, NULL, id, NULL, NULL),
                     SAGA_EINVAL);
    assert_int_equal(saga_client_new("postgresql://saga@127.0.0.1:1/saga", &bad, &err),
                     SAGA_EDB);
    assert_null(bad);
    assert_non_null(strstr(err.message, "cannot connect"));
    saga_client_free(NULL);
    json_decref(arr);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_start_wait_idempotent),
        cmocka_unit_test(test_unknown_saga_is_rejected),
        cmocka_unit_test(test_status_and_misuse),
    };
    return cmocka_run_group_tests_name("libsaga client (PostgreSQL + Kafka)", tests,
                                       setup, teardown);
}
