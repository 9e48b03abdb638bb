/* Limits at every door (issue 11): a 2 MB input is refused by libsaga's
 * client, by `sagactl start --input @FILE` and `--input -`, and by the
 * database itself for a direct INSERT, each time with the size and the
 * limit; an input of exactly the limit is accepted everywhere; a
 * definition over its limit is refused by validate, defs deploy, sagad's
 * definitions folder and the database; limits are changed with `sagactl limits set`; an
 * empty idempotency key is no key; and an id that `sagactl start` printed while sagad was
 * down is shown as requested, not as unknown. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "harness.h"
#include "saga/saga.h"

#define LIMIT    262144
#define TWO_MB   2097152
#define BIG_FILE "/tmp/test_limits.input.json"

static PGconn *db;
static saga_client *client;
static char out[16384];

static int setup(void **state)
{
    const char *migrate[] = {"migrate", "--dir", "migrations", NULL};
    saga_error err = {0};
    (void)state;
    it_isolate_db("limits");
    setenv("SAGA_TOPIC_PREFIX", it_prefix("limits"), 1);
    if (it_sagactl(NULL, 0, migrate) != 0)
        return -1;
    db = it_db();
    if (saga_client_new(it_env("SAGA_PG_URL"), &client, &err) != SAGA_OK) {
        fprintf(stderr, "limits: %s\n", err.message);
        return -1;
    }
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    saga_client_free(client);
    PQfinish(db);
    unlink(BIG_FILE);
    return 0;
}

/* {"blob": "xxx..."}: its JSON text as PostgreSQL stores it is size
 * bytes (10 before the string, 2 after). */
static json_t *input_of(size_t size)
{
    char *blob = malloc(size - 12 + 1);
    json_t *j;
    memset(blob, 'x', size - 12);
    blob[size - 12] = '\0';
    j = json_pack("{s:s}", "blob", blob);
    free(blob);
    return j;
}

static void write_input(const char *path, size_t size)
{
    json_t *j = input_of(size);
    assert_int_equal(json_dump_file(j, path, 0), 0);
    json_decref(j);
}

static long long requests(void)
{
    return it_int(db, "SELECT count(*) FROM saga.start_request", 0, NULL);
}

/* `sagactl ARGS < stdin_path 2>&1`: its exit code, its output in out. */
static int sagactl_stdin(const char *stdin_path, const char *args)
{
    char cmd[1024];
    size_t got;
    FILE *f;
    int status;
    snprintf(cmd, sizeof cmd, "'%s/bin/sagactl' %s < '%s' 2>&1", it_env("SAGA_BUILD_DIR"),
             args, stdin_path);
    f = popen(cmd, "r");
    assert_non_null(f);
    got = fread(out, 1, sizeof out - 1, f);
    out[got] = '\0';
    status = pclose(f);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static void assert_names_size_and_limit(const char *text, const char *size)
{
    if (strstr(text, size) == NULL || strstr(text, "the limit is 262,144") == NULL ||
        strstr(text, "max_input_bytes") == NULL)
        fail_msg("expected the size %s and the limit 262,144 in: %s", size, text);
}

static void test_client_refuses_a_large_input(void **state)
{
    json_t *big = input_of(TWO_MB);
    char id[SAGA_ID_LEN + 1];
    saga_error err = {0};
    long long before = requests();
    (void)state;
    assert_int_equal(
        saga_client_start(client, "order", big, "limits-big", id, NULL, &err),
        SAGA_EINVAL);
    assert_string_equal(err.message, "input of saga \"order\" is 2,097,152 bytes; the "
                                     "limit is 262,144 (saga.limits max_input_bytes)");
    assert_int_equal(requests(), before); /* nothing recorded */
    json_decref(big);
}

static void test_database_refuses_a_large_insert(void **state)
{
    PGresult *r;
    long long before = requests();
    (void)state;
    r = PQexec(db, "INSERT INTO saga.start_request (id, name, input)"
                   " VALUES (gen_random_uuid(), 'order',"
                   " jsonb_build_object('blob', repeat('x', 2097140)))");
    assert_int_equal(PQresultStatus(r), PGRES_FATAL_ERROR);
    assert_string_equal(PQresultErrorField(r, PG_DIAG_SQLSTATE), "54000");
    assert_names_size_and_limit(PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY),
                                "is 2,097,152 bytes");
    PQclear(r);
    assert_int_equal(requests(), before);
}

static void test_sagactl_start_refuses_a_large_input(void **state)
{
    char arg[64];
    const char *start[] = {"start", "order", "--input", arg, "--no-wait", NULL};
    long long before = requests();
    (void)state;
    write_input(BIG_FILE, TWO_MB);
    snprintf(arg, sizeof arg, "@%s", BIG_FILE);
    assert_int_equal(it_sagactl_all(out, sizeof out, 1, start), 1);
    assert_names_size_and_limit(out, "is 2,097,152 bytes");
    assert_non_null(strstr(out, "sagactl start: refused: input of saga \"order\""));
    assert_int_equal(sagactl_stdin(BIG_FILE, "start order --input - --no-wait"), 1);
    assert_names_size_and_limit(out, "is 2,097,152 bytes");
    assert_int_equal(requests(), before);
}

/* Exactly the limit passes every door; one byte more passes none. */
static void test_the_limit_itself_is_accepted(void **state)
{
    char arg[64], id[SAGA_ID_LEN + 1];
    const char *start[] = {"start", "order", "--input", arg, "--no-wait", NULL};
    json_t *at = input_of(LIMIT), *over = input_of(LIMIT + 1);
    saga_error err = {0};
    PGresult *r;
    char sql[256];
    const char *p[1];
    (void)state;
    assert_int_equal(saga_client_start(client, "order", at, NULL, id, NULL, &err),
                     SAGA_OK);
    p[0] = id;
    assert_int_equal(it_int(db,
                            "SELECT octet_length(input::text) FROM saga.start_request"
                            " WHERE id = $1",
                            1, p),
                     LIMIT);
    assert_int_equal(saga_client_start(client, "order", over, NULL, id, NULL, &err),
                     SAGA_EINVAL);
    assert_names_size_and_limit(err.message, "is 262,145 bytes");
    write_input(BIG_FILE, LIMIT);
    snprintf(arg, sizeof arg, "@%s", BIG_FILE);
    assert_int_equal(it_sagactl_all(out, sizeof out, 1, start), 0);
    assert_int_equal(strlen(out), SAGA_ID_LEN + 1);
    write_input(BIG_FILE, LIMIT + 1);
    assert_int_equal(it_sagactl_all(out, sizeof out, 1, start), 1);
    assert_names_size_and_limit(out, "is 262,145 bytes");
    /* The database counts the same: 262,132 x's are 262,144 bytes. */
    snprintf(sql, sizeof sql,
             "INSERT INTO saga.start_request (id, name, input) VALUES"
             " (gen_random_uuid(), 'order', jsonb_build_object('blob', repeat('x', %d)))",
             LIMIT - 12);
    it_exec(db, sql);
    snprintf(sql, sizeof sql,
             "INSERT INTO saga.start_request (id, name, input) VALUES"
             " (gen_random_uuid(), 'order', jsonb_build_object('blob', repeat('x', %d)))",
             LIMIT - 11);
    r = PQexec(db, sql);
    assert_string_equal(PQresultErrorField(r, PG_DIAG_SQLSTATE), "54000");
    PQclear(r);
    json_decref(at);
    json_decref(over);
}

/* An operator raises the limit: every door follows at once; lowered
 * again, a client that saw the higher one is refused by the database,
 * with the same clear message (not a database error). */
static void test_a_changed_limit_holds_at_every_door(void **state)
{
    const char *raise[] = {"limits",  "set",      "max_input_bytes",
                           "3000000", "--reason", "a bulk import",
                           "--as",    "ops",      NULL};
    const char *lower[] = {"limits",      "set", "max_input_bytes", "262144", "--reason",
                           "import done", NULL};
    const char *show[] = {"limits", "--json", NULL};
    const char *no_reason[] = {"limits", "set", "max_input_bytes", "1000", NULL};
    const char *unknown[] = {"limits", "set", "max_everything", "1000", "--reason",
                             "x",      NULL};
    const char *zero[] = {"limits", "set", "max_input_bytes", "0", "--reason", "x", NULL};
    json_t *big = input_of(TWO_MB), *rows, *row;
    char id[SAGA_ID_LEN + 1];
    saga_error err = {0};
    size_t i;
    int seen = 0;
    (void)state;
    assert_int_equal(it_sagactl_all(out, sizeof out, 1, raise), 0);
    assert_non_null(strstr(out, "max_input_bytes: 3,000,000 bytes (was 262,144)"));
    assert_int_equal(it_sagactl_all(out, sizeof out, 0, show), 0);
    rows = json_loads(out, 0, NULL);
    json_array_foreach(rows, i, row)
    {
        if (strcmp(json_string_value(json_object_get(row, "name")), "max_input_bytes"))
            continue;
        seen++;
        assert_int_equal(json_integer_value(json_object_get(row, "value")), 3000000);
        /* The database role, and --as beside it. */
        assert_string_equal(json_string_value(json_object_get(row, "updated_by")),
                            "saga (on behalf of ops)");
        assert_string_equal(json_string_value(json_object_get(row, "reason")),
                            "a bulk import");
    }
    assert_int_equal(seen, 1);
    json_decref(rows);
    assert_int_equal(saga_client_start(client, "order", big, NULL, id, NULL, &err),
                     SAGA_OK);
    assert_int_equal(it_sagactl_all(out, sizeof out, 1, lower), 0);
    /* This client last read 3,000,000: the trigger refuses it. */
    memset(&err, 0, sizeof err);
    assert_int_equal(saga_client_start(client, "order", big, NULL, id, NULL, &err),
                     SAGA_EINVAL);
    assert_names_size_and_limit(err.message, "is 2,097,152 bytes");
    /* Refusals: no reason, no such limit, not a positive size. */
    assert_int_equal(it_sagactl_all(out, sizeof out, 1, no_reason), 2);
    assert_non_null(strstr(out, "--reason is required"));
    assert_int_equal(it_sagactl_all(out, sizeof out, 1, unknown), 2);
    assert_non_null(strstr(out, "no limit \"max_everything\""));
    assert_int_equal(it_sagactl_all(out, sizeof out, 1, zero), 2);
    /* Nor can one be deleted, which would lift it. */
    {
        PGresult *r =
            PQexec(db, "DELETE FROM saga.limits WHERE name = 'max_input_bytes'");
        assert_int_equal(PQresultStatus(r), PGRES_FATAL_ERROR);
        PQclear(r);
    }
    json_decref(big);
}

/* A definition of 300,139 bytes as stored: five strings of 60,000. */
static void write_definition(const char *path, const char *name)
{
    char *blob = malloc(60001);
    json_t *d;
    memset(blob, 'x', 60000);
    blob[60000] = '\0';
    d = json_pack("{s:s, s:[{s:s, s:s, s:s, s:{s:s, s:s, s:s, s:s, s:s}}]}", "name", name,
                  "steps", "name", "a", "service", "s", "action", "a", "input", "a", blob,
                  "b", blob, "c", blob, "d", blob, "e", blob);
    assert_int_equal(json_dump_file(d, path, JSON_INDENT(2)), 0);
    json_decref(d);
    free(blob);
}

static void test_a_large_definition_is_refused(void **state)
{
    const char *path = "/tmp/test_limits.big_definition.json";
    const char *validate[] = {"validate", path, NULL};
    const char *validate_more[] = {"validate", "--max-definition-bytes", "400000", path,
                                   NULL};
    const char *deploy[] = {"defs", "deploy", path, NULL};
    const char *want = "the definition is 300,139 bytes (its JSON text as stored); the "
                       "limit is 262,144 (saga.limits max_definition_bytes)";
    PGresult *r;
    (void)state;
    write_definition(path, "big_definition");
    assert_int_equal(it_sagactl_all(out, sizeof out, 1, validate), 1);
    assert_non_null(strstr(out, want));
    /* sagad's folder: the same validation, so sagad does not start. */
    {
        char dir[] = "/tmp/test_limits.defs.XXXXXX", file[128], cmd[512];
        FILE *f;
        size_t got;
        int status;
        assert_non_null(mkdtemp(dir));
        snprintf(file, sizeof file, "%s/big.json", dir);
        write_definition(file, "big_definition");
        snprintf(cmd, sizeof cmd, "'%s/bin/sagad' --definitions '%s' 2>&1",
                 it_env("SAGA_BUILD_DIR"), dir);
        f = popen(cmd, "r");
        assert_non_null(f);
        got = fread(out, 1, sizeof out - 1, f);
        out[got] = '\0';
        status = pclose(f);
        assert_true(WIFEXITED(status) && WEXITSTATUS(status) != 0);
        assert_non_null(strstr(out, want));
        unlink(file);
        rmdir(dir);
    }
    assert_int_equal(it_sagactl_all(out, sizeof out, 1, validate_more), 0);
    assert_int_equal(it_sagactl_all(out, sizeof out, 1, deploy), 1);
    assert_non_null(strstr(out, want));
    assert_non_null(strstr(out, "nothing deployed"));
    assert_int_equal(
        it_int(db,
               "SELECT count(*) FROM saga.saga_definition WHERE name = 'big_definition'",
               0, NULL),
        0);
    /* The database's own door. */
    r = PQexec(db, "INSERT INTO saga.saga_definition (name, version, body, digest)"
                   " VALUES ('big_definition', 1, jsonb_build_object('name',"
                   " 'big_definition', 'blob', repeat('x', 300000)), 'd')");
    assert_string_equal(PQresultErrorField(r, PG_DIAG_SQLSTATE), "54000");
    assert_non_null(strstr(PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY),
                           "definition \"big_definition\" is 300,"));
    assert_non_null(strstr(PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY),
                           "the limit is 262,144 (saga.limits max_definition_bytes)"));
    PQclear(r);
    /* With the limit raised, deploy takes it. */
    {
        const char *raise[] = {"limits", "set",      "max_definition_bytes",
                               "400000", "--reason", "a big one",
                               NULL};
        const char *lower[] = {
            "limits", "set", "max_definition_bytes", "262144", "--reason", "back", NULL};
        assert_int_equal(it_sagactl_all(out, sizeof out, 1, raise), 0);
        assert_int_equal(it_sagactl_all(out, sizeof out, 1, deploy), 0);
        assert_non_null(strstr(out, "big_definition: version 1 (new)"));
        assert_int_equal(it_sagactl_all(out, sizeof out, 1, lower), 0);
    }
    unlink(path);
    /* sagad's folder is held to the database's limit: raised, sagad starts
     * with the same file (it then registers it: last, after the doors
     * above were tried). */
    {
        char dir[] = "/tmp/test_limits.defs.XXXXXX", file[128];
        assert_non_null(mkdtemp(dir));
        snprintf(file, sizeof file, "%s/big.json", dir);
        write_definition(file, "big_definition");
        {
            const char *raise[] = {
                "limits", "set",      "max_definition_bytes",
                "400000", "--reason", "test_limits: the folder of sagad",
                NULL};
            const char *lower[] = {"limits", "set",      "max_definition_bytes",
                                   "262144", "--reason", "test_limits: back",
                                   NULL};
            const char *args[] = {"--definitions", dir, NULL};
            it_proc big_sagad;
            if (it_sagactl_all(out, sizeof out, 1, raise) != 0)
                fail_msg("limits set: %s", out);
            assert_int_equal(it_spawn(&big_sagad, "limits-big-sagad", "sagad", args), 0);
            assert_int_equal(it_wait_log(&big_sagad, "sagad running", 60000), 0);
            it_stop(&big_sagad);
            assert_int_equal(it_sagactl_all(out, sizeof out, 1, lower), 0);
        }
        unlink(file);
        rmdir(dir);
    }
}

/* "" is no key: two starts with it are two sagas (it used to hand the
 * second caller the first one's saga), and the database refuses it. */
static void test_an_empty_key_is_no_key(void **state)
{
    const char *empty[] = {"start", "order", "--key", "", "--no-wait", NULL};
    char a[SAGA_ID_LEN + 1], b[SAGA_ID_LEN + 1];
    saga_error err = {0};
    int existed = -1;
    PGresult *r;
    (void)state;
    assert_int_equal(saga_client_start(client, "order", NULL, "", a, &existed, &err),
                     SAGA_OK);
    assert_int_equal(existed, 0);
    assert_int_equal(saga_client_start(client, "order", NULL, "", b, &existed, &err),
                     SAGA_OK);
    assert_int_equal(existed, 0);
    assert_string_not_equal(a, b);
    {
        const char *p[2] = {a, b};
        assert_int_equal(it_int(db,
                                "SELECT count(*) FROM saga.start_request WHERE id IN"
                                " ($1, $2) AND idempotency_key IS NULL",
                                2, p),
                         2);
    }
    assert_int_equal(it_sagactl_all(out, sizeof out, 1, empty), 2);
    assert_non_null(strstr(out, "--key needs a non-empty key"));
    r = PQexec(db, "INSERT INTO saga.start_request (id, name, input, idempotency_key)"
                   " VALUES (gen_random_uuid(), 'order', '{}', '')");
    assert_string_equal(PQresultErrorField(r, PG_DIAG_SQLSTATE), "23514");
    PQclear(r);
}

/* sagad is down: the id sagactl start prints is a request, not "no saga";
 * once sagad runs it is a saga, and a request it rejects says why. */
static void test_a_requested_saga_is_shown_as_requested(void **state)
{
    const char *start[] = {"start",     "order", "--input", "{\"customer_id\":\"alice\"}",
                           "--no-wait", NULL};
    const char *start_bad[] = {"start", "no_such_saga", "--no-wait", NULL};
    const char *sagad_args[] = {"--definitions", "sagas", NULL};
    char id[64], bad[64];
    const char *show[] = {"show", id, NULL};
    const char *show_json[] = {"show", id, "--json", NULL};
    const char *history[] = {"history", id, NULL};
    const char *wait_short[] = {"wait", id, "--timeout", "300ms", NULL};
    const char *show_bad[] = {"show", bad, NULL};
    const char *wait_bad[] = {"wait", bad, NULL};
    const char *unknown[] = {"show", "00000000-0000-4000-8000-000000000000", NULL};
    json_t *j;
    it_proc sagad;
    (void)state;
    assert_int_equal(it_sagactl(id, sizeof id, start), 0);
    assert_int_equal(strlen(id), SAGA_ID_LEN);
    assert_int_equal(it_sagactl(bad, sizeof bad, start_bad), 0);
    assert_int_equal(it_sagactl_all(out, sizeof out, 1, show), 0);
    assert_non_null(strstr(out, "pending: requested but not started yet"));
    assert_null(strstr(out, "no saga"));
    assert_int_equal(it_sagactl_all(out, sizeof out, 0, show_json), 0);
    j = json_loads(out, 0, NULL);
    assert_string_equal(json_string_value(json_object_get(j, "status")), "pending");
    assert_string_equal(json_string_value(json_object_get(j, "name")), "order");
    json_decref(j);
    assert_int_equal(it_sagactl_all(out, sizeof out, 1, history), 1);
    assert_non_null(strstr(out, "is requested but not started yet (start request for "
                                "order from "));
    assert_non_null(strstr(out, "waiting for sagad)"));
    assert_int_equal(it_sagactl_all(out, sizeof out, 1, wait_short), 1);
    assert_non_null(strstr(out, "still requested but not started"));
    assert_int_equal(it_sagactl_all(out, sizeof out, 1, unknown), 1);
    assert_non_null(strstr(out, "no saga 00000000-0000-4000-8000-000000000000"));

    /* sagad comes: the request becomes the saga, the other is rejected. */
    assert_int_equal(it_spawn(&sagad, "limits-sagad", "sagad", sagad_args), 0);
    assert_int_equal(it_wait_log(&sagad, "sagad running", 60000), 0);
    assert_int_equal(it_sagactl_all(out, sizeof out, 1, wait_bad), 1);
    assert_non_null(strstr(out, "rejected"));
    assert_int_equal(it_sagactl_all(out, sizeof out, 1, show_bad), 1);
    assert_non_null(strstr(out, "rejected: its start request was refused: "));
    assert_non_null(strstr(out, "no_such_saga"));
    {
        const char *p[1] = {id};
        for (int i = 0;
             i < 300 &&
             it_int(db, "SELECT count(*) FROM saga.saga WHERE id = $1", 1, p) == 0;
             i++) {
            struct timespec ts = {0, 100 * 1000000L};
            nanosleep(&ts, NULL);
        }
    }
    assert_int_equal(it_sagactl_all(out, sizeof out, 1, show), 0);
    assert_non_null(strstr(out, "order (version 1)"));
    assert_non_null(strstr(out, "create_order"));
    it_stop(&sagad);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_client_refuses_a_large_input),
        cmocka_unit_test(test_database_refuses_a_large_insert),
        cmocka_unit_test(test_sagactl_start_refuses_a_large_input),
        cmocka_unit_test(test_the_limit_itself_is_accepted),
        cmocka_unit_test(test_a_changed_limit_holds_at_every_door),
        cmocka_unit_test(test_a_large_definition_is_refused),
        cmocka_unit_test(test_an_empty_key_is_no_key),
        cmocka_unit_test(test_a_requested_saga_is_shown_as_requested),
    };
    return cmocka_run_group_tests_name("limits at every door (PostgreSQL + Kafka)", tests,
                                       setup, teardown);
}
