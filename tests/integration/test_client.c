/* libsaga's client API against a real PostgreSQL and Kafka, with sagad and
 * the example participants running: start (idempotent with a key, also
 * when many clients race with one key; "" is no key), status, wait (and
 * its timeout), a request for an unknown saga, and misuse. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>
#include <pthread.h>

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

/* "" is no key: a program that passes "" for "none" (a binding that
 * cannot pass NULL) gets a new saga each time, never another caller's. */
static void test_empty_key_is_no_key(void **state)
{
    json_t *input = json_pack("{s:s, s:s, s:i, s:i}", "customer_id", "alice", "sku",
                              "widget", "quantity", 1, "amount", 10);
    char a[SAGA_ID_LEN + 1], b[SAGA_ID_LEN + 1], status[32];
    saga_error err = {0};
    int existed = -1;
    (void)state;
    assert_int_equal(saga_client_start(client, "order", input, "", a, &existed, &err),
                     SAGA_OK);
    assert_int_equal(existed, 0);
    existed = -1;
    assert_int_equal(saga_client_start(client, "order", input, "", b, &existed, &err),
                     SAGA_OK);
    assert_int_equal(existed, 0);
    assert_string_not_equal(a, b);
    assert_int_equal(saga_client_wait(client, a, 60000, status, &err), SAGA_OK);
    assert_string_equal(status, "completed");
    assert_int_equal(saga_client_wait(client, b, 60000, status, &err), SAGA_OK);
    assert_string_equal(status, "completed");
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
    /* SAGA_OK, yet err says why (client.h documents this one exception). */
    assert_int_equal(err.code, SAGA_OK);
    assert_non_null(strstr(err.message, "no_such_saga"));
    memset(&err, 0, sizeof err);
    assert_int_equal(saga_client_status(client, id, status, &err), SAGA_OK);
    assert_string_equal(status, "rejected");
    assert_int_equal(err.code, SAGA_OK);
    assert_non_null(strstr(err.message, "no_such_saga"));
}

/* Several clients start a saga with one idempotency key at the same
 * moment: all get the same id and exactly one of them created it. (The
 * losers of the insert race used to see no row in their statement's
 * snapshot and fail with "no id returned".) */
enum { RACERS = 8, ROUNDS = 15 };

typedef struct racer {
    saga_client *c;
    pthread_barrier_t *go;
    const char *key;
    char id[SAGA_ID_LEN + 1];
    int existed, rc;
    saga_error err;
} racer;

static void *race(void *arg)
{
    racer *r = arg;
    json_t *input = json_pack("{s:s, s:s, s:i, s:i}", "customer_id", "alice", "sku",
                              "widget", "quantity", 1, "amount", 1);
    pthread_barrier_wait(r->go);
    r->rc = saga_client_start(r->c, "order", input, r->key, r->id, &r->existed, &r->err);
    json_decref(input);
    return NULL;
}

static void test_concurrent_starts_with_one_key(void **state)
{
    racer rs[RACERS];
    pthread_t th[RACERS];
    pthread_barrier_t go;
    saga_error err = {0};
    (void)state;
    memset(rs, 0, sizeof rs);
    for (int i = 0; i < RACERS; i++)
        if (saga_client_new(it_env("SAGA_PG_URL"), &rs[i].c, &err) != SAGA_OK)
            fail_msg("client %d: %s", i, err.message);
    for (int round = 0; round < ROUNDS; round++) {
        char key[64];
        int created = 0;
        snprintf(key, sizeof key, "client-race-%d-%ld", round, (long)time(NULL));
        pthread_barrier_init(&go, NULL, RACERS);
        for (int i = 0; i < RACERS; i++) {
            rs[i].go = &go;
            rs[i].key = key;
            rs[i].existed = -1;
            assert_int_equal(pthread_create(&th[i], NULL, race, &rs[i]), 0);
        }
        for (int i = 0; i < RACERS; i++)
            pthread_join(th[i], NULL);
        pthread_barrier_destroy(&go);
        for (int i = 0; i < RACERS; i++) {
            if (rs[i].rc != SAGA_OK)
                fail_msg("round %d, client %d: %s", round, i, rs[i].err.message);
            assert_string_equal(rs[i].id, rs[0].id);
            created += rs[i].existed == 0;
        }
        assert_int_equal(created, 1);
    }
    for (int i = 0; i < RACERS; i++)
        saga_client_free(rs[i].c);
}

/* A saga that cannot end soon (the trip saga: no travel service runs
 * here, and its steps time out after 10 s): wait gives up after the
 * timeout, measured by the clock, saying what it last saw. */
static void test_wait_times_out(void **state)
{
    json_t *input = json_pack("{s:s, s:s, s:s, s:s, s:i, s:i, s:i}", "customer_id",
                              "alice", "flight", "LH100", "hotel", "ritz", "car", "mini",
                              "rooms", 1, "travellers", 1, "amount", 100);
    char id[SAGA_ID_LEN + 1], status[32] = "x";
    saga_error err = {0};
    struct timespec t0, t1;
    long ms;
    (void)state;
    assert_int_equal(saga_client_start(client, "trip", input, NULL, id, NULL, &err),
                     SAGA_OK);
    json_decref(input);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    assert_int_equal(saga_client_wait(client, id, 700, status, &err), SAGA_ESTATE);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
    print_message("wait(700 ms) returned after %ld ms, status %s\n", ms, status);
    assert_true(ms >= 700);
    assert_true(ms < 700 + 2000); /* a status query or two, even on a loaded machine */
    assert_true(strcmp(status, "pending") == 0 || strcmp(status, "running") == 0);
    assert_int_equal(err.code, SAGA_ESTATE);
    assert_non_null(strstr(err.message, id));
    assert_non_null(strstr(err.message, "after 700 ms"));
    /* A zero timeout looks once. */
    assert_int_equal(saga_client_wait(client, id, 0, status, &err), SAGA_ESTATE);
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
        cmocka_unit_test(test_empty_key_is_no_key),
        cmocka_unit_test(test_unknown_saga_is_rejected),
        cmocka_unit_test(test_concurrent_starts_with_one_key),
        cmocka_unit_test(test_wait_times_out),
        cmocka_unit_test(test_status_and_misuse),
    };
    return cmocka_run_group_tests_name("libsaga client (PostgreSQL + Kafka)", tests,
                                       setup, teardown);
}
