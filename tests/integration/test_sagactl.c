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

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>
#include <pthread.h>

#include "harness.h"
#include "saga/saga.h"

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

static char *start_def(const char *def, const char *sku, int qty)
{
    char input[256], id[128];
    const char *args[] = {"start", def, "--input", input, NULL};
    snprintf(input, sizeof input,
             "{\"customer_id\":\"alice\",\"sku\":\"%s\",\"quantity\":%d,\"amount\":700}",
             sku, qty);
    assert_int_equal(it_sagactl(id, sizeof id, args), 0);
    assert_int_equal(strlen(id), 36);
    return strdup(id);
}

static char *start(const char *sku, int qty)
{
    return start_def("oncall_order", sku, qty);
}

/* A sagactl run in the background, its output (stdout and stderr) in a
 * file. It waits until the gate (a pipe; NULL: none) is closed by the
 * parent, then for delay_ms, so several can be let go at the same instant. */
typedef struct bg_ctl {
    pid_t pid;
    char log[128];
} bg_ctl;

static void bg_start(bg_ctl *b, const int *gate, int delay_ms, const char *const *args)
{
    static int seq;
    char prog[512];
    const char *argv[16];
    int n = 0;
    snprintf(prog, sizeof prog, "%s/bin/sagactl", it_env("SAGA_BUILD_DIR"));
    snprintf(b->log, sizeof b->log, "/tmp/test_sagactl.%d.%d.out", (int)getpid(), ++seq);
    argv[n++] = prog;
    for (int i = 0; args[i] != NULL && n < 15; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    b->pid = fork();
    assert_true(b->pid >= 0);
    if (b->pid == 0) {
        char c;
        int fd = open(b->log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (fd < 0)
            _exit(126);
        dup2(fd, STDOUT_FILENO);
        dup2(fd, STDERR_FILENO);
        close(fd);
        if (gate != NULL) {
            /* Its own copy of the write end would keep the pipe open. */
            close(gate[1]);
            while (read(gate[0], &c, 1) > 0)
                ;
            close(gate[0]);
        }
        if (delay_ms > 0)
            sleep_ms(delay_ms);
        execv(prog, (char *const *)argv);
        _exit(127);
    }
}

/* Wait for b; its exit code, its output in buf. */
static int bg_wait(bg_ctl *b, char *buf, size_t size)
{
    int status = 0;
    size_t got = 0;
    FILE *f;
    assert_int_equal(waitpid(b->pid, &status, 0), b->pid);
    f = fopen(b->log, "r");
    assert_non_null(f);
    got = fread(buf, 1, size - 1, f);
    buf[got] = '\0';
    fclose(f);
    unlink(b->log);
    assert_true(WIFEXITED(status));
    return WEXITSTATUS(status);
}

static long long count_events(const char *id, const char *kind)
{
    const char *p[2] = {id, kind};
    return it_int(db,
                  "SELECT count(*) FROM saga.saga_event WHERE saga_id = $1 AND kind = $2",
                  2, p);
}

/* Milliseconds of a saga.iso() time (only differences are compared). */
static long long iso_ms(const char *iso)
{
    int y, mo, d, h, mi, sec, ms;
    struct tm tm = {0};
    assert_int_equal(
        sscanf(iso, "%d-%d-%dT%d:%d:%d.%dZ", &y, &mo, &d, &h, &mi, &sec, &ms), 7);
    tm.tm_year = y - 1900;
    tm.tm_mon = mo - 1;
    tm.tm_mday = d;
    tm.tm_hour = h;
    tm.tm_min = mi;
    tm.tm_sec = sec;
    return (long long)timegm(&tm) * 1000 + ms;
}

/* The column at which needle starts in the line of text that contains
 * key (-1 when there is no such line or needle is not in it). */
static int column_of(const char *text, const char *key, const char *needle)
{
    const char *line = strstr(text, key), *at;
    const char *eol;
    if (line == NULL)
        return -1;
    while (line > text && line[-1] != '\n')
        line--;
    eol = strchr(line, '\n');
    at = strstr(line, needle);
    if (at == NULL || (eol != NULL && at > eol))
        return -1;
    return (int)(at - line);
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
    const char *history_h[] = {"history", NULL, NULL};
    json_t *rows, *events, *ev;
    size_t i;
    int saw_failed = 0, saw_retry = 0, found = 0;
    long long prev_at = 0;
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
            found++;
            assert_string_equal(json_string_value(json_object_get(ev, "step")),
                                "reserve_credit");
            assert_string_equal(json_string_value(json_object_get(ev, "step_status")),
                                "compensation_failed");
            assert_string_equal(
                json_string_value(json_object_get(json_object_get(ev, "error"), "code")),
                "timeout");
        }
    }
    assert_int_equal(found, 1);
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
        long long at = iso_ms(json_string_value(json_object_get(ev, "at")));
        json_t *since = json_object_get(ev, "since_previous_ms");
        /* The first event has no previous one; every other is the gap to
         * the one before (times are kept to the millisecond: +-1 ms). */
        if (i == 0) {
            assert_true(json_is_null(since));
        } else {
            assert_true(json_is_number(since));
            assert_true(json_number_value(since) >= 0);
            assert_true(llabs((long long)json_number_value(since) - (at - prev_at)) <= 1);
        }
        prev_at = at;
        if (strcmp(kind, "saga_failed") == 0) {
            saw_failed = 1;
            assert_int_equal(json_integer_value(json_object_get(
                                 json_object_get(ev, "detail"), "attempts")),
                             2);
        }
        if (strcmp(kind, "operator_retry") == 0) {
            saw_retry = 1;
            /* Who: the database role sagactl logged in as; --as is only
             * "on behalf of", beside it. */
            assert_string_equal(json_string_value(json_object_get(ev, "actor")),
                                "operator:saga");
            assert_string_equal(json_string_value(json_object_get(
                                    json_object_get(ev, "detail"), "operator")),
                                "saga");
            assert_string_equal(json_string_value(json_object_get(
                                    json_object_get(ev, "detail"), "on_behalf_of")),
                                "oncall-alice");
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
    /* The human timeline: the trace, a header, and a line per event with
     * step#attempt, span and actor, in columns that line up. */
    history_h[1] = id;
    assert_int_equal(it_sagactl_all(out, sizeof out, 0, history_h), 0);
    assert_true(strncmp(out, "trace ", 6) == 0);
    assert_non_null(strstr(out, "EVENT"));
    assert_non_null(strstr(out, "SPAN"));
    {
        int lines = 0;
        for (const char *c = out; *c; c++)
            lines += *c == '\n';
        /* trace line + header + one per event */
        assert_int_equal(lines, (int)json_array_size(events) + 2);
    }
    assert_non_null(strstr(out, "operator_retry"));
    assert_non_null(strstr(out, "operator:saga"));
    assert_non_null(strstr(out, "\"on_behalf_of\":\"oncall-alice\""));
    assert_non_null(strstr(out, "reserve_credit#3"));
    assert_non_null(strstr(out, "{\"reason\":\"payment is back\""));
    assert_non_null(strstr(out, " ago)"));
    assert_true(column_of(out, "saga_started", "saga_started") > 0);
    assert_int_equal(column_of(out, "saga_started", "saga_started"),
                     column_of(out, "operator_retry", "operator_retry"));
    assert_int_equal(column_of(out, "AT ", "ACTOR"),
                     column_of(out, "operator_retry", "operator:saga"));
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

/* Saga id holds no credit, and alice's reserved total is the sum of her
 * reservations still held. (Not "as before the test": the commands a
 * stopped payment service missed in earlier tests may be applied when it
 * is back, at any moment.) */
static void assert_credit_released(const char *id)
{
    const char *p[1] = {id};
    assert_int_equal(it_int(db,
                            "SELECT count(*) FROM payment.reservations"
                            " WHERE saga_id = $1 AND status = 'reserved'",
                            1, p),
                     0);
    assert_int_equal(reserved(),
                     it_int(db,
                            "SELECT coalesce(sum(amount), 0) FROM"
                            " payment.reservations WHERE customer_id = 'alice'"
                            " AND status = 'reserved'",
                            0, NULL));
}

static void test_compensate_running_saga(void **state)
{
    char *id = start("widget", 1);
    const char *comp[] = {"compensate", id, "--reason", "customer called to cancel",
                          NULL};
    (void)state;
    wait_step(id, 2, "dispatched"); /* inventory takes 1.5 s */
    assert_int_equal(it_sagactl_all(out, sizeof out, 1, comp), 0);
    assert_string_equal(it_wait_final(db, id, 60000), "compensated");
    assert_credit_released(id);
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
    assert_non_null(strstr(out, "sagactl skip: refused: the saga has ended"));
    assert_non_null(strstr(out, "is completed"));
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

/* list: the status filter, the limit, newest first, and the human table. */
static void test_list(void **state)
{
    const char *all[] = {"list", "--saga", "oncall_order", "--json", NULL};
    const char *completed[] = {"list", "--status", "completed", "--json", NULL};
    const char *limited[] = {"list",   "--saga", "oncall_order", "--limit", "2",
                             "--json", NULL};
    const char *human[] = {"list", "--saga", "oncall_order", NULL};
    json_t *j, *row;
    size_t i;
    long long n_all, n_completed;
    char prev[64] = "";
    (void)state;

    n_all =
        it_int(db, "SELECT count(*) FROM saga.saga WHERE name = 'oncall_order'", 0, NULL);
    n_completed =
        it_int(db, "SELECT count(*) FROM saga.saga WHERE status = 'completed'", 0, NULL);
    assert_true(n_all >= 4);
    assert_true(n_completed >= 2);

    assert_int_equal(it_sagactl_all(out, sizeof out, 0, all), 0);
    j = json_loads(out, 0, NULL);
    assert_int_equal(json_array_size(j), n_all);
    json_array_foreach(j, i, row)
    {
        /* Newest first: saga.iso() times compare as text. */
        const char *c = json_string_value(json_object_get(row, "created_at"));
        assert_non_null(c);
        if (i > 0)
            assert_true(strcmp(c, prev) <= 0);
        snprintf(prev, sizeof prev, "%s", c);
        assert_string_equal(json_string_value(json_object_get(row, "name")),
                            "oncall_order");
    }
    /* The newest is the one the database says is newest. */
    {
        char *newest =
            it_value(db,
                     "SELECT id::text FROM saga.saga WHERE name = 'oncall_order'"
                     " ORDER BY created_at DESC LIMIT 1",
                     0, NULL);
        assert_string_equal(
            json_string_value(json_object_get(json_array_get(j, 0), "id")), newest);
        free(newest);
    }
    json_decref(j);

    assert_int_equal(it_sagactl_all(out, sizeof out, 0, completed), 0);
    j = json_loads(out, 0, NULL);
    assert_int_equal(json_array_size(j), n_completed);
    json_array_foreach(j, i, row) assert_string_equal(
        json_string_value(json_object_get(row, "status")), "completed");
    json_decref(j);

    assert_int_equal(it_sagactl_all(out, sizeof out, 0, limited), 0);
    j = json_loads(out, 0, NULL);
    assert_int_equal(json_array_size(j), 2);
    json_decref(j);

    /* The human table: a header, one line per saga, columns in line. */
    assert_int_equal(it_sagactl_all(out, sizeof out, 0, human), 0);
    assert_true(strncmp(out, "ID ", 3) == 0);
    {
        int lines = 0, status_col = column_of(out, "ID ", "STATUS");
        char *newest =
            it_value(db,
                     "SELECT id::text || '  oncall_order@1  ' || status FROM saga.saga"
                     " WHERE name = 'oncall_order' ORDER BY created_at DESC LIMIT 1",
                     0, NULL);
        for (const char *c = out; *c; c++)
            lines += *c == '\n';
        assert_int_equal(lines, n_all + 1);
        /* The first row is the newest, with its name@version and status
         * under their headers. */
        assert_non_null(newest);
        assert_int_equal(strncmp(out + strcspn(out, "\n") + 1, newest, strlen(newest)),
                         0);
        assert_true(status_col > 36);
        assert_int_equal(column_of(out, "completed", "completed"), status_col);
        assert_int_equal(column_of(out, "resolved", "resolved"), status_col);
        assert_non_null(strstr(out, " ago)"));
        free(newest);
    }
}

/* Several operators resolve the same failed saga at the same instant:
 * the saga's row lock lets exactly one through; the others are refused
 * and the history has one saga_resolved. */
static void test_resolve_race(void **state)
{
    enum { N = 6 };
    char *id = make_stuck_saga();
    bg_ctl ctl[N];
    int gate[2], ok = 0, refused = 0;
    char who[N][16];
    (void)state;
    start_service(PAYMENT);
    assert_int_equal(pipe(gate), 0);
    for (int i = 0; i < N; i++) {
        const char *args[] = {"resolve", id, "--reason", "race", "--as", who[i], NULL};
        snprintf(who[i], sizeof who[i], "op%d", i);
        bg_start(&ctl[i], gate, 0, args);
    }
    close(gate[0]);
    close(gate[1]); /* all go at once */
    for (int i = 0; i < N; i++) {
        int rc = bg_wait(&ctl[i], out, sizeof out);
        if (rc == 0) {
            ok++;
            assert_non_null(strstr(out, "is now resolved"));
        } else {
            refused++;
            assert_int_equal(rc, 1);
            assert_non_null(strstr(out,
                                   "sagactl resolve: refused: only a failed saga can be "
                                   "resolved"));
        }
    }
    assert_int_equal(ok, 1);
    assert_int_equal(refused, N - 1);
    assert_int_equal(count_events(id, "saga_resolved"), 1);
    {
        const char *p[1] = {id};
        char *st = it_value(db, "SELECT status FROM saga.saga WHERE id = $1", 1, p);
        assert_string_equal(st, "resolved");
        free(st);
        /* The one who won is the one the history names. */
        assert_int_equal(it_int(db,
                                "SELECT count(*) FROM saga.saga_event WHERE saga_id = $1"
                                " AND actor = 'operator:saga'"
                                " AND detail->>'on_behalf_of' LIKE 'op%'",
                                1, p),
                         1);
    }
    it_exec(
        db,
        "UPDATE payment.customers SET reserved = (SELECT coalesce(sum(amount), 0)"
        " FROM payment.reservations WHERE customer_id = 'alice' AND status = 'reserved')"
        " WHERE id = 'alice'");
    free(id);
}

/* An operator's compensate lands while sagad applies the saga's replies
 * (each saga at another moment of its run: before, around and after the
 * 1.5 s stock reply and the approval). Whatever the order, the outcome
 * is one of two consistent stories: compensate accepted, the saga
 * compensated, every step undone or never run, nothing left reserved; or
 * refused, the saga completed. One saga at a time: inventory takes 1.5 s
 * a command, and a queue of them would time out the compensations. */
static void test_compensate_while_sagad_applies(void **state)
{
    enum { N = 8 };
    static const int delay[N] = {0, 30, 400, 1400, 1480, 1520, 1560, 1700};
    char *ids[N];
    bg_ctl ctl;
    int accepted = 0;
    (void)state;
    for (int i = 0; i < N; i++) {
        const char *args[] = {"compensate", NULL, "--reason", "race with sagad", NULL};
        const char *p[1];
        const char *final;
        char *last;
        int rc;
        ids[i] = start("widget", 1);
        args[1] = p[0] = ids[i];
        bg_start(&ctl, NULL, delay[i], args);
        rc = bg_wait(&ctl, out, sizeof out);
        final = it_wait_final(db, ids[i], 60000);
        assert_true(rc == 0 || rc == 1);
        assert_int_equal(count_events(ids[i], "operator_compensate"), rc == 0);
        assert_int_equal(count_events(ids[i], "saga_started"), 1);
        if (rc == 0) {
            accepted++;
            assert_string_equal(final, "compensated");
            assert_int_equal(count_events(ids[i], "saga_compensated"), 1);
            assert_int_equal(count_events(ids[i], "saga_completed"), 0);
            /* No step is left done or in flight; the order is cancelled
             * and neither credit nor stock is held for it. */
            assert_int_equal(
                it_int(db,
                       "SELECT count(*) FROM saga.saga_step WHERE saga_id = $1"
                       " AND status NOT IN ('pending', 'compensated', 'failed')",
                       1, p),
                0);
            assert_int_equal(it_int(db,
                                    "SELECT count(*) FROM orders.orders"
                                    " WHERE saga_id = $1 AND status <> 'cancelled'",
                                    1, p),
                             0);
            assert_int_equal(it_int(db,
                                    "SELECT count(*) FROM payment.reservations"
                                    " WHERE saga_id = $1 AND status = 'reserved'",
                                    1, p),
                             0);
            assert_int_equal(it_int(db,
                                    "SELECT count(*) FROM inventory.reservations"
                                    " WHERE saga_id = $1 AND status = 'reserved'",
                                    1, p),
                             0);
            /* Each compensated step was compensated once in the history. */
            assert_int_equal(
                it_int(db,
                       "SELECT count(*) FROM saga.saga_step st WHERE saga_id = $1"
                       " AND status = 'compensated' AND (SELECT count(*) FROM"
                       " saga.saga_event e WHERE e.saga_id = st.saga_id AND"
                       " e.step = st.idx AND e.kind IN ('step_compensated',"
                       " 'compensation_not_needed')) <> 1",
                       1, p),
                0);
        } else {
            assert_non_null(strstr(out, "sagactl compensate: refused"));
            assert_string_equal(final, "completed");
            assert_int_equal(count_events(ids[i], "saga_completed"), 1);
            assert_int_equal(count_events(ids[i], "saga_compensated"), 0);
            assert_int_equal(
                it_int(db,
                       "SELECT count(*) FROM saga.saga_step WHERE saga_id = $1"
                       " AND status <> 'succeeded'",
                       1, p),
                0);
        }
        /* The terminal event is the last one: nothing happened after. */
        last = it_value(db,
                        "SELECT kind FROM saga.saga_event WHERE saga_id = $1"
                        " ORDER BY id DESC LIMIT 1",
                        1, p);
        assert_string_equal(last, rc == 0 ? "saga_compensated" : "saga_completed");
        free(last);
        free(ids[i]);
    }
    /* The early ones cannot have been refused. */
    assert_true(accepted >= 2);
}

/* A running saga that waits on a silent service: stuck --older-than 1s
 * names it, the step, and the attempt. */
static void test_stuck_waiting(void **state)
{
    const char *stuck_json[] = {"stuck", "--older-than", "1s", "--json", NULL};
    const char *stuck_h[] = {"stuck", "--older-than", "1s", NULL};
    json_t *rows, *row;
    size_t i;
    int found = 0;
    char *id;
    (void)state;
    assert_int_equal(it_stop(&svc[PAYMENT]), 0);
    id = start_def("oncall_patient", "widget",
                   1); /* reserve_credit times out after 30 s */
    wait_step(id, 1, "dispatched");
    sleep_ms(1500);
    assert_int_equal(it_sagactl_all(out, sizeof out, 0, stuck_json), 1);
    rows = json_loads(out, 0, NULL);
    assert_true(json_is_array(rows));
    json_array_foreach(rows, i, row)
    {
        if (strcmp(json_string_value(json_object_get(row, "id")), id) != 0)
            continue;
        found++;
        assert_string_equal(json_string_value(json_object_get(row, "status")), "running");
        assert_string_equal(json_string_value(json_object_get(row, "step")),
                            "reserve_credit");
        assert_int_equal(json_integer_value(json_object_get(row, "step_index")), 1);
        assert_string_equal(json_string_value(json_object_get(row, "step_status")),
                            "dispatched");
        assert_int_equal(json_integer_value(json_object_get(row, "attempts")), 1);
        assert_true(json_number_value(json_object_get(row, "idle_seconds")) >= 1);
        assert_true(strncmp(json_string_value(json_object_get(row, "reason")),
                            "waiting on reserve_credit (attempt 1) since ", 44) == 0);
    }
    assert_int_equal(found, 1);
    json_decref(rows);
    assert_int_equal(it_sagactl_all(out, sizeof out, 0, stuck_h), 1);
    {
        int reason_col = column_of(out, "ID ", "REASON");
        assert_true(reason_col > 0);
        assert_int_equal(column_of(out, id, "waiting on reserve_credit (attempt 1)"),
                         reason_col);
        assert_true(column_of(out, id, " ago)") > 0);
        assert_true(column_of(out, id, "oncall_patient@1") > 0);
    }
    /* Payment comes back and answers; the saga goes on. */
    start_service(PAYMENT);
    assert_string_equal(it_wait_final(db, id, 60000), "completed");
    free(id);
}

/* ---- a definite compensation failure, and a step that failed an
 * attempt before it succeeded: a participant of the test's own ---- */

/* "do" answers retry on its first attempt and ok on the next; "boom"
 * fails definitively; "undo" fails definitively when the step's input
 * says {"undo": "fail"}, else it is done. */
static void fail_do(const saga_command *cmd, struct pg_conn *conn, saga_result *result,
                    void *arg)
{
    (void)conn;
    (void)arg;
    if (cmd->attempt == 1)
        saga_result_retry(result, 0, "busy on the first attempt");
    else
        saga_result_ok(result, json_pack("{s:s}", "done", "yes"));
}

static void fail_boom(const saga_command *cmd, struct pg_conn *conn, saga_result *result,
                      void *arg)
{
    (void)cmd;
    (void)conn;
    (void)arg;
    saga_result_fail(result, "boom", "the second step cannot be done");
}

static void fail_undo(const saga_command *cmd, struct pg_conn *conn, saga_result *result,
                      void *arg)
{
    const char *how = json_string_value(
        json_object_get(json_object_get(cmd->payload, "input"), "undo"));
    (void)conn;
    (void)arg;
    if (how != NULL && strcmp(how, "fail") == 0)
        saga_result_fail(result, "undo_refused", "this cannot be undone");
    else
        saga_result_ok(result, NULL);
}

static void *run_participant(void *arg)
{
    saga_error err = {0};
    saga_participant_run(arg, &err);
    return NULL;
}

static char *start_definite(const char *undo)
{
    char input[64], id[128];
    const char *args[] = {"start", "ctl_definite", "--input", input, NULL};
    snprintf(input, sizeof input, "{\"undo\":\"%s\"}", undo);
    assert_int_equal(it_sagactl(id, sizeof id, args), 0);
    assert_int_equal(strlen(id), 36);
    return strdup(id);
}

static void test_definite_failure_and_stale_errors(void **state)
{
    static const char def[] =
        "{\"name\": \"ctl_definite\",\n"
        " \"defaults\": {\"timeout\": \"5s\", \"retry\": {\"max_attempts\": 3, "
        "\"backoff\": \"100ms\", \"jitter\": 0}},\n"
        " \"steps\": [\n"
        "  {\"name\": \"first\", \"service\": \"ctlfail\", \"action\": \"do\",\n"
        "   \"compensation\": \"undo\", \"input\": {\"undo\": \"${input.undo}\"}},\n"
        "  {\"name\": \"second\", \"service\": \"ctlfail\", \"action\": \"boom\"}]}\n";
    char path[] = "/tmp/test_sagactl.def.XXXXXX";
    const char *deploy[] = {"defs", "deploy", path, NULL};
    const char *stuck_json[] = {"stuck", "--json", NULL};
    const char *show[] = {"show", NULL, NULL};
    const char *show_json[] = {"show", NULL, "--json", NULL};
    saga_participant_options o = {0};
    saga_participant *part = NULL;
    saga_error err = {0};
    pthread_t th;
    json_t *rows, *row, *j, *first;
    char *stuck_id, *done_id;
    size_t i;
    int fd, found = 0;
    FILE *f;
    (void)state;

    fd = mkstemp(path);
    assert_true(fd >= 0);
    f = fdopen(fd, "w");
    fputs(def, f);
    fclose(f);
    assert_int_equal(it_sagactl_all(out, sizeof out, 1, deploy), 0);
    unlink(path);
    o.brokers = it_env("SAGA_KAFKA_BROKERS");
    o.topic_prefix = prefix;
    o.service = "ctlfail";
    if (saga_participant_new(&o, &part, &err) != SAGA_OK)
        fail_msg("participant: %s", err.message);
    saga_participant_on(part, SAGA_PHASE_INVOKE, "do", fail_do, NULL);
    saga_participant_on(part, SAGA_PHASE_INVOKE, "boom", fail_boom, NULL);
    saga_participant_on(part, SAGA_PHASE_COMPENSATE, "undo", fail_undo, NULL);
    assert_int_equal(pthread_create(&th, NULL, run_participant, part), 0);

    stuck_id = start_definite("fail");
    done_id = start_definite("ok");
    assert_string_equal(it_wait_final(db, stuck_id, 60000), "failed");
    assert_string_equal(it_wait_final(db, done_id, 60000), "compensated");
    saga_participant_stop(part);
    pthread_join(th, NULL);
    saga_participant_free(part);

    /* The compensation's reply said failed: stuck says so, not that it
     * gave up after retrying (the history says "failed definitively"). */
    assert_int_equal(it_sagactl_all(out, sizeof out, 0, stuck_json), 1);
    rows = json_loads(out, 0, NULL);
    assert_true(json_is_array(rows));
    json_array_foreach(rows, i, row)
    {
        const char *reason = json_string_value(json_object_get(row, "reason"));
        if (strcmp(json_string_value(json_object_get(row, "id")), stuck_id) != 0)
            continue;
        found++;
        assert_string_equal(reason,
                            "compensation of first failed definitively (attempt 1); "
                            "error undo_refused: this cannot be undone");
        assert_null(strstr(reason, "gave up"));
    }
    assert_int_equal(found, 1);
    json_decref(rows);
    assert_int_equal(count_events(stuck_id, "compensation_failed"), 1);

    /* first failed its first attempt, then succeeded, then was
     * compensated: that old error is neither its error nor shown. */
    show[1] = show_json[1] = done_id;
    assert_int_equal(it_sagactl_all(out, sizeof out, 0, show_json), 0);
    j = json_loads(out, 0, NULL);
    first = json_array_get(json_object_get(j, "steps"), 0);
    assert_string_equal(json_string_value(json_object_get(first, "status")),
                        "compensated");
    assert_int_equal(json_integer_value(json_object_get(first, "attempts")), 1);
    assert_true(json_is_null(json_object_get(first, "error")));
    json_decref(j);
    /* Its first attempt answered retry, or, when the participant joined
     * its group slowly (a loaded machine), timed out: either way it failed
     * before the one that succeeded. */
    assert_int_equal(count_events(done_id, "attempt_failed") +
                         count_events(done_id, "attempt_timed_out"),
                     1);
    assert_int_equal(it_sagactl_all(out, sizeof out, 0, show), 0);
    assert_null(strstr(out, "busy on the first attempt"));
    assert_non_null(strstr(out, "{\"done\":\"yes\"}"));
    /* The failed step's own error is shown: it is why it failed. */
    assert_non_null(strstr(out, "the second step cannot be done"));
    {
        const char *resolve[] = {"resolve", stuck_id, "--reason", "undone by hand", NULL};
        assert_int_equal(it_sagactl_all(out, sizeof out, 1, resolve), 0);
    }
    free(stuck_id);
    free(done_id);
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
    {
        /* by_definition.oncall_order: an object with each status's count,
         * as the table has them. */
        json_t *counts =
            json_object_get(json_object_get(j, "by_definition"), "oncall_order");
        const char *status;
        json_t *n;
        long long total = 0;
        assert_true(json_is_object(counts));
        json_object_foreach(counts, status, n)
        {
            const char *p[1] = {status};
            assert_true(json_is_integer(n));
            assert_int_equal(
                json_integer_value(n),
                it_int(db,
                       "SELECT count(*) FROM saga.saga WHERE name = 'oncall_order'"
                       " AND status = $1",
                       1, p));
            total += json_integer_value(n);
        }
        assert_int_equal(
            total,
            it_int(db, "SELECT count(*) FROM saga.saga WHERE name = 'oncall_order'", 0,
                   NULL));
        assert_true(json_integer_value(json_object_get(counts, "resolved")) >= 1);
        assert_true(json_integer_value(json_object_get(counts, "completed")) >= 1);
    }
    assert_true(json_integer_value(
                    json_object_get(json_object_get(j, "started"), "last_hour")) >= 4);
    json_decref(j);
    assert_int_equal(it_sagactl_all(out, sizeof out, 0, stats_h), 0);
    assert_non_null(strstr(out, "oncall_order"));
    assert_int_equal(it_sagactl_all(out, sizeof out, 1, bad_dur), 2);
    assert_non_null(strstr(out, "--since needs a duration"));
    {
        /* Checked before the database sees them: a usage error (2), with
         * the option named, never a query error (3). */
        const char *bad_limit[] = {"list", "--limit", "10abc", NULL};
        const char *huge_limit[] = {"list", "--limit", "99999999999", NULL};
        const char *no_value[] = {"list", "--status", NULL};
        const char *bad_version[] = {"defs",      "show", "oncall_order",
                                     "--version", "2x",   NULL};
        assert_int_equal(it_sagactl_all(out, sizeof out, 1, bad_limit), 2);
        assert_non_null(strstr(out,
                               "list: --limit needs a whole number from 1 to 100000, not "
                               "\"10abc\""));
        assert_int_equal(it_sagactl_all(out, sizeof out, 1, huge_limit), 2);
        assert_non_null(strstr(out, "--limit needs a whole number"));
        assert_int_equal(it_sagactl_all(out, sizeof out, 1, no_value), 2);
        assert_non_null(strstr(out, "list: --status needs a value"));
        assert_int_equal(it_sagactl_all(out, sizeof out, 1, bad_version), 2);
        assert_non_null(strstr(out, "defs show: --version needs a whole number"));
    }
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
        cmocka_unit_test(test_resolve_race),
        cmocka_unit_test(test_compensate_while_sagad_applies),
        cmocka_unit_test(test_stuck_waiting),
        cmocka_unit_test(test_list),
        cmocka_unit_test(test_definite_failure_and_stale_errors),
        cmocka_unit_test(test_finding_and_errors),
    };
    return cmocka_run_group_tests_name("sagactl with sagad running (PostgreSQL + Kafka)",
                                       tests, setup, teardown);
}
