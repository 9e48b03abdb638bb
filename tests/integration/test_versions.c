/* Definition versions against a real PostgreSQL and Kafka with sagad
 * running: version 2 is deployed while version 1 sagas are in flight, and
 * each saga finishes by its own definition. Also sagactl defs list, show,
 * an unchanged redeploy and a refused invalid one. */
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
#include <jansson.h>

#include "harness.h"

static it_proc procs[4];
static PGconn *db;
static char dir[256], v2[300], bad[300];
static char out[65536];

/* order.json renamed "versioned", optionally without reserve_stock. */
static void write_def(const char *path, int without_stock)
{
    json_t *def = json_load_file("sagas/order.json", 0, NULL), *steps;
    assert_non_null(def);
    json_object_set_new(def, "name", json_string("versioned"));
    if (without_stock) {
        steps = json_object_get(def, "steps");
        json_array_remove(steps, 2);
    }
    assert_int_equal(json_dump_file(def, path, JSON_INDENT(2)), 0);
    json_decref(def);
}

static int setup(void **state)
{
    static const char *const services[] = {"order", "payment", "inventory"};
    const char *migrate[] = {"migrate", "--dir", "migrations", NULL};
    char v1[300];
    (void)state;
    it_isolate_db("versions");
    setenv("SAGA_TOPIC_PREFIX", it_prefix("versions"), 1);
    if (it_sagactl(NULL, 0, migrate) != 0)
        return -1;
    snprintf(dir, sizeof dir, "%s/tests/versions-%ld", it_env("SAGA_BUILD_DIR"),
             (long)getpid());
    mkdir(dir, 0755);
    snprintf(v1, sizeof v1, "%s/versioned.json", dir);
    snprintf(v2, sizeof v2, "%s/../versioned-v2-%ld.json", dir, (long)getpid());
    snprintf(bad, sizeof bad, "%s/../versioned-bad-%ld.json", dir, (long)getpid());
    write_def(v1, 0);
    write_def(v2, 1);
    for (int i = 0; i < 3; i++) {
        char prog[64], name[64];
        const char *args[] = {NULL};
        snprintf(prog, sizeof prog, "%s-service", services[i]);
        snprintf(name, sizeof name, "versions-%s", services[i]);
        /* A slow inventory keeps version 1 sagas in flight. */
        if (i == 2)
            setenv("SAGA_EXAMPLE_DELAY_MS", "2000", 1);
        if (it_spawn(&procs[i], name, prog, args) != 0 ||
            it_wait_log(&procs[i], "ready", 60000) != 0)
            return -1;
        unsetenv("SAGA_EXAMPLE_DELAY_MS");
    }
    db = it_db();
    it_exec_file(db, "examples/seed.sql");
    it_exec(db, "UPDATE inventory.stock SET available = 1000 WHERE sku = 'widget'");
    {
        const char *args[] = {"--definitions", dir, NULL};
        if (it_spawn(&procs[3], "versions-sagad", "sagad", args) != 0 ||
            it_wait_log(&procs[3], "sagad running", 60000) != 0)
            return -1;
    }
    return 0;
}

static int teardown(void **state)
{
    char path[300];
    (void)state;
    for (int i = 3; i >= 0; i--)
        it_stop(&procs[i]);
    PQfinish(db);
    snprintf(path, sizeof path, "%s/versioned.json", dir);
    unlink(path);
    rmdir(dir);
    unlink(v2);
    unlink(bad);
    return 0;
}

static char *start(void)
{
    char id[128];
    const char *args[] = {"start", "versioned", "--input",
                          "{\"customer_id\":\"alice\",\"sku\":\"widget\",\"quantity\":1,"
                          "\"amount\":100}",
                          NULL};
    assert_int_equal(it_sagactl(id, sizeof id, args), 0);
    assert_int_equal(strlen(id), 36);
    return strdup(id);
}

static void test_v2_while_v1_in_flight(void **state)
{
    enum { N = 3 };
    char *old[N], *new_[N];
    const char *deploy[] = {"defs", "deploy", v2, NULL};
    (void)state;
    for (int i = 0; i < N; i++)
        old[i] = start();
    /* Wait until they are in flight at reserve_stock (inventory is slow). */
    for (int i = 0; i < N; i++) {
        const char *p[1] = {old[i]};
        int at_stock = 0;
        for (int k = 0; k < 200 && !at_stock; k++) {
            at_stock =
                it_int(db, "SELECT cursor_step FROM saga.saga WHERE id = $1", 1, p) == 2;
            if (!at_stock)
                usleep(100 * 1000);
        }
        assert_true(at_stock);
    }
    assert_int_equal(it_sagactl_all(out, sizeof out, 0, deploy), 0);
    assert_non_null(strstr(out, "versioned: version 2 (new)"));
    for (int i = 0; i < N; i++)
        new_[i] = start();
    for (int i = 0; i < N; i++) {
        const char *p1[1] = {old[i]}, *p2[1] = {new_[i]};
        assert_string_equal(it_wait_final(db, old[i], 60000), "completed");
        assert_string_equal(it_wait_final(db, new_[i], 60000), "completed");
        /* Version 1: four steps, stock reserved. Version 2: three, none. */
        assert_int_equal(it_int(db, "SELECT version FROM saga.saga WHERE id = $1", 1, p1),
                         1);
        assert_int_equal(
            it_int(db, "SELECT count(*) FROM saga.saga_step WHERE saga_id = $1", 1, p1),
            4);
        assert_int_equal(
            it_int(db,
                   "SELECT count(*) FROM inventory.reservations WHERE saga_id = $1"
                   " AND status = 'reserved'",
                   1, p1),
            1);
        assert_int_equal(it_int(db, "SELECT version FROM saga.saga WHERE id = $1", 1, p2),
                         2);
        assert_int_equal(
            it_int(db, "SELECT count(*) FROM saga.saga_step WHERE saga_id = $1", 1, p2),
            3);
        assert_int_equal(
            it_int(db, "SELECT count(*) FROM inventory.reservations WHERE saga_id = $1",
                   1, p2),
            0);
        free(old[i]);
        free(new_[i]);
    }
}

static void test_defs_commands(void **state)
{
    const char *deploy_again[] = {"defs", "deploy", v2, NULL};
    const char *deploy_bad[] = {"defs", "deploy", bad, NULL};
    const char *list[] = {"defs", "list", "--json", NULL};
    const char *show1[] = {"defs", "show", "versioned", "--version", "1", "--json", NULL};
    const char *show_missing[] = {"defs", "show", "versioned", "--version", "9", NULL};
    json_t *j, *row;
    size_t i;
    int found = 0;
    FILE *f;
    (void)state;
    assert_int_equal(it_sagactl_all(out, sizeof out, 0, deploy_again), 0);
    assert_non_null(strstr(out, "versioned: version 2 (unchanged)"));
    f = fopen(bad, "w");
    fputs("{\"name\": \"versioned\", \"steps\": []}", f);
    fclose(f);
    assert_int_equal(it_sagactl_all(out, sizeof out, 1, deploy_bad), 1);
    assert_non_null(strstr(out, "nothing deployed"));
    assert_int_equal(it_sagactl_all(out, sizeof out, 0, list), 0);
    j = json_loads(out, 0, NULL);
    json_array_foreach(j, i, row)
    {
        if (strcmp(json_string_value(json_object_get(row, "name")), "versioned") == 0) {
            found++;
            assert_int_equal(json_integer_value(json_object_get(row, "latest")), 2);
            assert_int_equal(json_integer_value(json_object_get(row, "versions")), 2);
        }
    }
    assert_int_equal(found, 1); /* the row is there, once */
    json_decref(j);
    assert_int_equal(it_sagactl_all(out, sizeof out, 0, show1), 0);
    j = json_loads(out, 0, NULL);
    assert_int_equal(
        json_array_size(json_object_get(json_object_get(j, "body"), "steps")), 4);
    json_decref(j);
    assert_int_equal(it_sagactl_all(out, sizeof out, 1, show_missing), 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_v2_while_v1_in_flight),
        cmocka_unit_test(test_defs_commands),
    };
    return cmocka_run_group_tests_name("definition versions (PostgreSQL + Kafka)", tests,
                                       setup, teardown);
}
